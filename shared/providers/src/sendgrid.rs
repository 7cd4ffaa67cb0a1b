//! Twilio SendGrid (v3 mail/send; signed Event Webhook).
//!
//! Event Webhook signatures are ECDSA P-256 / SHA-256 over `timestamp header ‖ raw body`, sent as
//! base64 DER in `X-Twilio-Email-Event-Webhook-Signature`, with the timestamp in
//! `X-Twilio-Email-Event-Webhook-Timestamp`. High-S signatures are genuine (SendGrid's own python
//! vector is one), so they are not normalised away.

use std::sync::Arc;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ParsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use mailgate_core::{Clock, DeliveryEvent, DeliveryKind, ProviderId};
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use sha2::{Digest, Sha256};

use crate::events::{EventOrigin, NormaliseError};
use crate::verify::{WebhookRejection, check_timestamp};
use crate::webhook::{
    Intake, Payload, PayloadError, Verified, VerifierSettings, VerifyFailure, WebhookDelivery,
    WebhookProvider, WebhookVerifier, body_key, header,
};

pub mod events;
pub mod inbound;
pub mod send;

/// The provider this module covers.
pub const PROVIDER: ProviderId = ProviderId::Sendgrid;
/// The header carrying the base64 DER signature.
pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
/// The header carrying the decimal Unix timestamp.
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// SendGrid's Event Webhook.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendgridWebhooks;

impl WebhookProvider for SendgridWebhooks {
    fn id(&self) -> ProviderId {
        PROVIDER
    }

    fn secret_variables(&self) -> &'static [&'static str] {
        &[
            "SENDGRID_WEBHOOK_PUBLIC_KEYS",
            inbound::CREDENTIALS_VARIABLE,
            inbound::ALLOWED_IPS_VARIABLE,
        ]
    }

    // SendGrid does not say whether retries are re-signed and retries for 24 h, so the window is
    // a day; a replayed batch is an exact duplicate, caught by the body-hash dedupe.
    fn default_tolerance_secs(&self) -> i64 {
        86_400
    }

    fn verifier(
        &self,
        settings: VerifierSettings<'_>,
    ) -> Result<Arc<dyn WebhookVerifier>, Vec<String>> {
        settings.keyed("SENDGRID_WEBHOOK_PUBLIC_KEYS", SendgridWebhookVerifier::new)
    }

    fn split(&self, body: &[u8], _content_type: Option<&str>) -> Result<Vec<String>, PayloadError> {
        events(body)
    }

    fn normalise(
        &self,
        event: &str,
        origin: &EventOrigin<'_>,
    ) -> Result<Vec<DeliveryEvent>, NormaliseError> {
        events::normalise(event, origin)
    }

    fn inbound(&self) -> Option<&'static dyn crate::inbound::InboundWebhook> {
        Some(&inbound::SendgridInbound)
    }
}

impl WebhookVerifier for SendgridWebhookVerifier {
    fn verify<'a>(
        &'a self,
        delivery: WebhookDelivery<'a>,
        clock: &'a dyn Clock,
    ) -> BoxFuture<'a, Result<Verified, VerifyFailure>> {
        Verified::settled(self.verify_delivery(delivery.headers, delivery.body, clock))
    }
}

/// A configured verification key that is not a base64 DER P-256 public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SendGrid webhook key #{index} is not a base64 DER P-256 public key")]
pub struct InvalidKey {
    /// The key's position in the configured list (0-based).
    pub index: usize,
}

/// Verifies Event Webhook deliveries against one or more public keys (several during rotation).
///
/// Keys are read and validated with RustCrypto's p256 (SubjectPublicKeyInfo, point on the
/// curve) and verified with AWS-LC, whose assembly P-256 makes the per-request ECDSA check
/// about a third of p256's (issue 14); both accept SendGrid's high-S signatures.
#[derive(Debug, Clone)]
pub struct SendgridWebhookVerifier {
    keys: Vec<ParsedPublicKey>,
    tolerance_secs: i64,
}

impl SendgridWebhookVerifier {
    /// Builds a verifier from base64 SubjectPublicKeyInfo keys, as SendGrid shows them. An empty
    /// list is an error: verification never silently turns off.
    pub fn new(keys_base64: &[&str], tolerance_secs: i64) -> Result<Self, InvalidKey> {
        if keys_base64.is_empty() {
            return Err(InvalidKey { index: 0 });
        }
        let keys = keys_base64
            .iter()
            .enumerate()
            .map(|(index, k)| {
                let der = STANDARD
                    .decode(k.trim())
                    .map_err(|_| InvalidKey { index })?;
                let key =
                    VerifyingKey::from_public_key_der(&der).map_err(|_| InvalidKey { index })?;
                let point = key.to_encoded_point(false);
                ParsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point.as_bytes())
                    .map_err(|_| InvalidKey { index })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            keys,
            tolerance_secs,
        })
    }

    /// Verifies a delivery on its raw body bytes; the timestamp must be within the tolerance.
    pub fn verify(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        clock: &dyn Clock,
    ) -> Result<(), WebhookRejection> {
        self.signed_digest(signature, timestamp, body, clock)
            .map(|_| ())
    }

    /// Verifies a delivery like [`Self::verify`] and returns the SHA-256 of `timestamp ‖ body`
    /// it checked the signature against (hashed at the SHA extensions' speed where the CPU has
    /// them: sha2 detects SHA-NI / ARMv8 SHA2 at run time).
    fn signed_digest(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
        clock: &dyn Clock,
    ) -> Result<[u8; 32], WebhookRejection> {
        let (signature, timestamp) = match (signature, timestamp) {
            (Some(s), Some(t)) if !s.trim().is_empty() && !t.trim().is_empty() => {
                (s.trim(), t.trim())
            }
            _ => return Err(WebhookRejection::Missing),
        };
        let der = STANDARD
            .decode(signature)
            .map_err(|_| WebhookRejection::Malformed)?;
        // Only to tell a malformed signature from a wrong one; AWS-LC verifies the DER itself.
        Signature::from_der(&der).map_err(|_| WebhookRejection::Malformed)?;
        check_timestamp(timestamp, self.tolerance_secs, clock)?;
        // Hash `timestamp ‖ body` once, without copying the body, and try each key on the digest.
        let digest: [u8; 32] = Sha256::new()
            .chain_update(timestamp.as_bytes())
            .chain_update(body)
            .finalize()
            .into();
        let signed =
            aws_lc_rs::digest::Digest::import_less_safe(&digest, &aws_lc_rs::digest::SHA256)
                .map_err(|_| WebhookRejection::BadSignature)?;
        if self
            .keys
            .iter()
            .any(|k| k.verify_digest_sig(&signed, &der).is_ok())
        {
            Ok(digest)
        } else {
            Err(WebhookRejection::BadSignature)
        }
    }
}

impl SendgridWebhookVerifier {
    /// Verifies a delivery from its headers and raw body, then reads its events.
    pub fn verify_delivery(
        &self,
        headers: &http::HeaderMap,
        body: &[u8],
        clock: &dyn Clock,
    ) -> Result<Intake, WebhookRejection> {
        self.signed_digest(
            header(headers, SIGNATURE_HEADER),
            header(headers, TIMESTAMP_HEADER),
            body,
            clock,
        )?;
        Ok(Intake {
            kind: DeliveryKind::Events,
            verification: "ecdsa-p256-sha256",
            payload: Payload {
                // SendGrid re-signs a retry with a new timestamp, so the key is the body's own
                // hash (a second pass over the body), not the signed digest.
                dedupe_key: body_key(body),
                events: events(body),
            },
            replay_token: None,
        })
    }
}

/// The events of a batch, each as its raw JSON text (never re-serialised).
pub fn events(body: &[u8]) -> Result<Vec<String>, PayloadError> {
    Ok(event_slices(body)?.into_iter().map(str::to_owned).collect())
}

/// The events of a batch as borrowed slices of `body`: one pass over the bytes that finds where
/// each top-level element of the array starts and ends, building no JSON tree.
///
/// Hand-written because serde_json, even deserialising `&RawValue`s, tokenises every key and
/// value of every event (about 1.5× this scan plus a copy per event, issue 14), and no
/// well-kept crate splits an array into raw elements without that. It checks what the split
/// relies on: UTF-8, an array of objects, strings closed (escapes honoured), brackets and braces
/// balanced and matched, nothing after the array. It does not check the scalars inside an
/// event (numbers, `true`…): the body is already authenticated as SendGrid's, and the event
/// processor parses each event in full (an event it cannot read is reported there, with the
/// verified body kept in the receipt).
pub fn event_slices(body: &[u8]) -> Result<Vec<&str>, PayloadError> {
    let not_array =
        |why: &str| PayloadError::new(format!("the body is not a JSON array of events: {why}"));
    let text = std::str::from_utf8(body).map_err(|e| not_array(&e.to_string()))?;
    let b = text.as_bytes();
    let mut at = skip_whitespace(b, 0);
    if b.get(at) != Some(&b'[') {
        return Err(not_array("it does not start with `[`"));
    }
    at = skip_whitespace(b, at + 1);
    // SendGrid's events are a few hundred bytes each.
    let mut events = Vec::with_capacity(b.len() / 256 + 1);
    if b.get(at) == Some(&b']') {
        return match skip_whitespace(b, at + 1) == b.len() {
            true => Ok(events),
            false => Err(not_array("text follows the array")),
        };
    }
    let mut open: Vec<u8> = Vec::with_capacity(8);
    loop {
        if b.get(at) != Some(&b'{') {
            return Err(PayloadError::new(format!(
                "event [{}] is not a JSON object",
                events.len()
            )));
        }
        let start = at;
        loop {
            match b.get(at) {
                None => return Err(not_array("it ends inside an event")),
                Some(b'"') => {
                    at =
                        string_end(b, at + 1).ok_or_else(|| not_array("a string is not closed"))?;
                }
                Some(&c @ (b'{' | b'[')) => {
                    open.push(c);
                    at += 1;
                }
                Some(&c @ (b'}' | b']')) => {
                    let opener = if c == b'}' { b'{' } else { b'[' };
                    if open.pop() != Some(opener) {
                        return Err(not_array("brackets do not match"));
                    }
                    at += 1;
                    if open.is_empty() {
                        break;
                    }
                }
                Some(_) => at += 1,
            }
        }
        // `start` and `at` sit on ASCII bytes, so both are char boundaries.
        events.push(&text[start..at]);
        at = skip_whitespace(b, at);
        match b.get(at) {
            Some(b',') => at = skip_whitespace(b, at + 1),
            Some(b']') if skip_whitespace(b, at + 1) == b.len() => return Ok(events),
            Some(b']') => return Err(not_array("text follows the array")),
            _ => return Err(not_array("events are not separated by `,`")),
        }
    }
}

/// The first index at or after `at` that is not JSON whitespace.
fn skip_whitespace(b: &[u8], mut at: usize) -> usize {
    while matches!(b.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The index just past the `"` closing the string whose content starts at `at`, skipping
/// escaped characters; eight bytes at a time while they hold neither `"` nor `\\` (most of an
/// event's bytes are string content).
fn string_end(b: &[u8], mut at: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Flags the bytes of `word` equal to `c` (exact for the lowest one, which is all we read).
    let flag = |word: u64, c: u8| {
        let x = word ^ (ONES * u64::from(c));
        x.wrapping_sub(ONES) & !x & HIGHS
    };
    loop {
        while let Some(chunk) = b.get(at..at + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let word = u64::from_le_bytes(word);
            let hits = flag(word, b'"') | flag(word, b'\\');
            if hits != 0 {
                at += (hits.trailing_zeros() / 8) as usize;
                break;
            }
            at += 8;
        }
        match *b.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => at += 2,
            _ => at += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::FixedClock;

    // PROVIDERS.md §9.1: sendgrid-nodejs eventwebhook.spec.js.
    const NODE_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    const NODE_SIG: &str = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
    const NODE_TS: &str = "1588788367";
    const NODE_BODY: &str =
        r#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;
    const WRONG_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==";
    // PROVIDERS.md §9.2: sendgrid-python test_eventwebhook.py (high-S, body ends in CRLF).
    const PY_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
    const PY_SIG: &str = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
    const PY_TS: &str = "1600112502";
    const PY_BODY: &str = "[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";

    fn at(ts: &str) -> FixedClock {
        FixedClock::at_unix(ts.parse().unwrap())
    }

    /// Verifies a vector at the moment it was signed.
    fn verify_at_signing(
        v: &SendgridWebhookVerifier,
        sig: &str,
        ts: &str,
        body: &[u8],
    ) -> Result<(), WebhookRejection> {
        v.verify(Some(sig), Some(ts), body, &at(ts))
    }

    #[test]
    fn the_official_nodejs_vector_verifies() {
        let v = SendgridWebhookVerifier::new(&[NODE_KEY], 600).unwrap();
        assert_eq!(
            verify_at_signing(&v, NODE_SIG, NODE_TS, NODE_BODY.as_bytes()),
            Ok(())
        );
    }

    #[test]
    fn the_official_python_vector_verifies_with_its_high_s_signature_and_crlf() {
        let v = SendgridWebhookVerifier::new(&[PY_KEY], 600).unwrap();
        assert_eq!(
            verify_at_signing(&v, PY_SIG, PY_TS, PY_BODY.as_bytes()),
            Ok(())
        );
        let without_crlf = PY_BODY.trim_end().as_bytes();
        assert_eq!(
            verify_at_signing(&v, PY_SIG, PY_TS, without_crlf),
            Err(WebhookRejection::BadSignature)
        );
    }

    #[test]
    fn the_official_negative_cases_are_rejected() {
        let wrong = SendgridWebhookVerifier::new(&[WRONG_KEY], 600).unwrap();
        assert_eq!(
            verify_at_signing(&wrong, NODE_SIG, NODE_TS, NODE_BODY.as_bytes()),
            Err(WebhookRejection::BadSignature)
        );
        let v = SendgridWebhookVerifier::new(&[NODE_KEY], 600).unwrap();
        let tampered = NODE_SIG.replace("NH2j/0=", "NH3j/0=");
        assert!(verify_at_signing(&v, &tampered, NODE_TS, NODE_BODY.as_bytes()).is_err());
        let body = NODE_BODY.replace("example_payload", "example_payloaD");
        assert_eq!(
            verify_at_signing(&v, NODE_SIG, NODE_TS, body.as_bytes()),
            Err(WebhookRejection::BadSignature)
        );
        assert_eq!(
            v.verify(
                Some(NODE_SIG),
                Some("1588788368"),
                NODE_BODY.as_bytes(),
                &at(NODE_TS)
            ),
            Err(WebhookRejection::BadSignature)
        );
    }

    #[test]
    fn any_key_of_a_rotation_verifies() {
        let v = SendgridWebhookVerifier::new(&[WRONG_KEY, PY_KEY, NODE_KEY], 600).unwrap();
        assert_eq!(
            verify_at_signing(&v, NODE_SIG, NODE_TS, NODE_BODY.as_bytes()),
            Ok(())
        );
        assert_eq!(
            verify_at_signing(&v, PY_SIG, PY_TS, PY_BODY.as_bytes()),
            Ok(())
        );
    }

    #[test]
    fn stale_future_missing_and_malformed_are_told_apart() {
        let v = SendgridWebhookVerifier::new(&[NODE_KEY], 600).unwrap();
        let body = NODE_BODY.as_bytes();
        let late = FixedClock::at_unix(1_588_788_367 + 601);
        assert_eq!(
            v.verify(Some(NODE_SIG), Some(NODE_TS), body, &late),
            Err(WebhookRejection::Stale)
        );
        let early = FixedClock::at_unix(1_588_788_367 - 601);
        assert_eq!(
            v.verify(Some(NODE_SIG), Some(NODE_TS), body, &early),
            Err(WebhookRejection::Future)
        );
        assert_eq!(
            v.verify(None, Some(NODE_TS), body, &at(NODE_TS)),
            Err(WebhookRejection::Missing)
        );
        assert_eq!(
            v.verify(Some(NODE_SIG), Some(" "), body, &at(NODE_TS)),
            Err(WebhookRejection::Missing)
        );
        assert_eq!(
            verify_at_signing(&v, "%%%", NODE_TS, body),
            Err(WebhookRejection::Malformed)
        );
    }

    #[test]
    fn keys_must_be_configured_and_valid() {
        assert!(SendgridWebhookVerifier::new(&[], 600).is_err());
        assert_eq!(
            SendgridWebhookVerifier::new(&[NODE_KEY, "bm90IGEga2V5"], 600).unwrap_err(),
            InvalidKey { index: 1 }
        );
    }

    #[test]
    fn a_batch_splits_into_its_raw_events_and_keys_by_body() {
        let v = SendgridWebhookVerifier::new(&[PY_KEY], 600).unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, PY_SIG.parse().unwrap());
        headers.insert(TIMESTAMP_HEADER, PY_TS.parse().unwrap());
        let intake = v
            .verify_delivery(&headers, PY_BODY.as_bytes(), &at(PY_TS))
            .unwrap();
        assert_eq!(
            intake.payload.dedupe_key,
            crate::webhook::body_key(PY_BODY.as_bytes())
        );
        let split = intake.payload.events.unwrap();
        assert_eq!(split.len(), 1);
        assert!(split[0].starts_with("{\"email\""));
        assert!(split[0].ends_with('}'));
        assert!(events(b"{\"event\":\"open\"}").is_err());
        assert!(events(b"[1]").is_err());
        assert_eq!(events(b"[]").unwrap().len(), 0);
    }

    #[test]
    fn the_split_agrees_with_serde_json_on_every_element_and_refuses_what_is_not_an_array() {
        let body = " [ {\"a\":\"x\\\"}]{[\",\"n\":[1,{\"b\":[]}],\"u\":\"caf\\u00e9 \u{e9}\"} ,\n            {\"event\":\"open\",\"s\":\"\\\\\"}]\n  "
            .as_bytes();
        let raw: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body).unwrap();
        let ours = event_slices(body).unwrap();
        assert_eq!(ours, raw.iter().map(|r| r.get()).collect::<Vec<_>>());
        assert_eq!(ours.len(), 2);
        assert!(event_slices(b"  [ ]  ").unwrap().is_empty());
        for bad in [
            &b""[..],
            b"{}",
            b"[{}",
            b"[{}]x",
            b"[{},]",
            b"[{}{}]",
            b"[{\"a\":\"x}]",
            b"[{\"a\":[}]",
            b"[{\"a\":1]]",
            b"[\"s\"]",
            b"[{\"a\":\"\xff\"}]",
        ] {
            assert!(
                event_slices(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
