//! Mailgun (v3 messages; HMAC-signed webhooks).
//!
//! A webhook carries `signature.{timestamp, token, signature}` in its JSON body, where the
//! signature is hex HMAC-SHA256 of `timestamp ‖ token` under the webhook signing key. The
//! `event-data` is not covered, so callers must also refuse a token seen before (replay cache).

use std::sync::Arc;

use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use mailgate_core::{Clock, DeliveryEvent, DeliveryKind, ProviderId};
use sha2::Sha256;

use crate::events::{EventOrigin, NormaliseError};
use crate::verify::{WebhookRejection, check_timestamp};
use crate::webhook::{
    Intake, Payload, PayloadError, Verified, VerifierSettings, VerifyFailure, WebhookDelivery,
    WebhookProvider, WebhookVerifier, body_key,
};

pub mod events;
pub mod inbound;
pub mod send;

/// The provider this module covers.
pub const PROVIDER: ProviderId = ProviderId::Mailgun;

/// Mailgun's signed webhooks.
#[derive(Debug, Clone, Copy, Default)]
pub struct MailgunWebhooks;

impl WebhookProvider for MailgunWebhooks {
    fn id(&self) -> ProviderId {
        PROVIDER
    }

    fn secret_variables(&self) -> &'static [&'static str] {
        &["MAILGUN_WEBHOOK_SIGNING_KEYS"]
    }

    // A short window, backed by the token replay cache.
    fn default_tolerance_secs(&self) -> i64 {
        300
    }

    fn verifier(
        &self,
        settings: VerifierSettings<'_>,
    ) -> Result<Arc<dyn WebhookVerifier>, Vec<String>> {
        settings.keyed("MAILGUN_WEBHOOK_SIGNING_KEYS", MailgunWebhookVerifier::new)
    }

    fn split(&self, body: &[u8], _content_type: Option<&str>) -> Result<Vec<String>, PayloadError> {
        payload(body).events
    }

    fn normalise(
        &self,
        event: &str,
        origin: &EventOrigin<'_>,
    ) -> Result<Vec<DeliveryEvent>, NormaliseError> {
        events::normalise(event, origin)
    }

    fn inbound(&self) -> Option<&'static dyn crate::inbound::InboundWebhook> {
        Some(&inbound::MailgunInbound)
    }
}

impl WebhookVerifier for MailgunWebhookVerifier {
    fn verify<'a>(
        &'a self,
        delivery: WebhookDelivery<'a>,
        clock: &'a dyn Clock,
    ) -> BoxFuture<'a, Result<Verified, VerifyFailure>> {
        Verified::settled(self.verify_delivery(delivery.body, clock))
    }
}

/// A webhook signing key. `Debug` never shows it.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// Wraps a signing key as configured.
    pub fn new(key: &str) -> Self {
        Self(key.trim().as_bytes().to_vec())
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Verifies Mailgun webhook signatures against one or more signing keys (several during rotation).
#[derive(Debug, Clone)]
pub struct MailgunWebhookVerifier {
    keys: Vec<SigningKey>,
    tolerance_secs: i64,
}

/// No signing key was configured: verification never silently turns off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at least one Mailgun webhook signing key is required")]
pub struct NoSigningKey;

impl MailgunWebhookVerifier {
    /// A verifier for the given keys; empty keys are ignored, and none at all is an error.
    pub fn new(keys: &[&str], tolerance_secs: i64) -> Result<Self, NoSigningKey> {
        let keys: Vec<_> = keys
            .iter()
            .filter(|k| !k.trim().is_empty())
            .map(|k| SigningKey::new(k))
            .collect();
        if keys.is_empty() {
            return Err(NoSigningKey);
        }
        Ok(Self {
            keys,
            tolerance_secs,
        })
    }

    /// Verifies the signature object of one webhook; the comparison is constant-time.
    pub fn verify(
        &self,
        timestamp: &str,
        token: &str,
        signature_hex: &str,
        clock: &dyn Clock,
    ) -> Result<(), WebhookRejection> {
        if timestamp.trim().is_empty() || token.is_empty() || signature_hex.is_empty() {
            return Err(WebhookRejection::Missing);
        }
        let expected =
            hex::decode(signature_hex.trim()).map_err(|_| WebhookRejection::Malformed)?;
        if expected.len() != 32 {
            return Err(WebhookRejection::Malformed);
        }
        check_timestamp(timestamp, self.tolerance_secs, clock)?;
        let ok = self.keys.iter().any(|key| {
            // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
            Hmac::<Sha256>::new_from_slice(&key.0).is_ok_and(|mut mac| {
                mac.update(timestamp.trim().as_bytes());
                mac.update(token.as_bytes());
                mac.verify_slice(&expected).is_ok()
            })
        });
        if ok {
            Ok(())
        } else {
            Err(WebhookRejection::BadSignature)
        }
    }
}

/// The `signature` object of a webhook body. Mailgun signs only these fields, so they are read
/// from the body before anything else; `event-data` stays unread until they verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFields {
    /// Decimal Unix seconds (sent as a string or a number).
    pub timestamp: String,
    /// A random token, unique per delivery: the replay-cache key.
    pub token: String,
    /// Hex HMAC-SHA256 of `timestamp ‖ token`.
    pub signature: String,
}

#[derive(serde::Deserialize)]
struct SignatureOnly {
    signature: Option<SignatureObject>,
}

#[derive(serde::Deserialize)]
struct SignatureObject {
    timestamp: Option<serde_json::Value>,
    token: Option<String>,
    signature: Option<String>,
}

/// Reads the `signature` object of a JSON webhook body.
pub fn signature_fields(body: &[u8]) -> Result<SignatureFields, WebhookRejection> {
    let parsed: SignatureOnly =
        serde_json::from_slice(body).map_err(|_| WebhookRejection::Malformed)?;
    let sig = parsed.signature.ok_or(WebhookRejection::Missing)?;
    let timestamp = match sig.timestamp {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(_) => return Err(WebhookRejection::Malformed),
        None => return Err(WebhookRejection::Missing),
    };
    match (sig.token, sig.signature) {
        (Some(token), Some(signature)) => Ok(SignatureFields {
            timestamp,
            token,
            signature,
        }),
        _ => Err(WebhookRejection::Missing),
    }
}

impl MailgunWebhookVerifier {
    /// Verifies a webhook body's signature object, then reads its event. The caller must still
    /// refuse the returned token if it was used before.
    pub fn verify_delivery(
        &self,
        body: &[u8],
        clock: &dyn Clock,
    ) -> Result<Intake, WebhookRejection> {
        let fields = signature_fields(body)?;
        self.verify(&fields.timestamp, &fields.token, &fields.signature, clock)?;
        Ok(Intake {
            kind: DeliveryKind::Events,
            verification: "hmac-sha256",
            payload: payload(body),
            replay_token: Some(fields.token),
        })
    }
}

/// A verified webhook: one `event-data` object keyed by its `id` ("unique within a day"; the
/// receipt keeps it far shorter than that matters). A body without an id keys by its hash.
pub fn payload(body: &[u8]) -> Payload {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(rename = "event-data", borrow)]
        event_data: Option<&'a serde_json::value::RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct EventId {
        id: Option<String>,
    }
    let envelope = match serde_json::from_slice::<Envelope<'_>>(body) {
        Ok(e) => e,
        Err(e) => {
            return Payload {
                dedupe_key: body_key(body),
                events: Err(PayloadError::new(format!("the body is not JSON: {e}"))),
            };
        }
    };
    let Some(raw) = envelope.event_data else {
        return Payload {
            dedupe_key: body_key(body),
            events: Err(PayloadError::new("the body has no event-data object")),
        };
    };
    match serde_json::from_str::<EventId>(raw.get()) {
        Ok(EventId { id: Some(id) }) if !id.is_empty() => Payload {
            dedupe_key: format!("event:{id}"),
            events: Ok(vec![raw.get().to_owned()]),
        },
        Ok(_) => Payload {
            dedupe_key: body_key(body),
            events: Err(PayloadError::new("event-data has no id")),
        },
        Err(e) => Payload {
            dedupe_key: body_key(body),
            events: Err(PayloadError::new(format!(
                "event-data is not an object: {e}"
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::FixedClock;

    // PROVIDERS.md §9.6 (self-generated; Mailgun publishes no static vector).
    const KEY: &str = "key-test-signing-key";
    const TS: &str = "1529006854";
    const TOKEN: &str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0";
    const SIG: &str = "303e584516337cf7db2ef44d700b0eb875f4f4bb88452aee18be47a60926f7c6";

    fn clock() -> FixedClock {
        FixedClock::at_unix(1_529_006_854)
    }

    #[test]
    fn the_vector_verifies() {
        let v = MailgunWebhookVerifier::new(&[KEY], 300).unwrap();
        assert_eq!(v.verify(TS, TOKEN, SIG, &clock()), Ok(()));
        assert_eq!(v.verify(TS, TOKEN, &SIG.to_uppercase(), &clock()), Ok(()));
    }

    #[test]
    fn a_signature_made_here_with_another_key_verifies_only_under_that_key() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"rotated-key").unwrap();
        mac.update(format!("{TS}{TOKEN}").as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        let old = MailgunWebhookVerifier::new(&[KEY], 300).unwrap();
        assert_eq!(
            old.verify(TS, TOKEN, &sig, &clock()),
            Err(WebhookRejection::BadSignature)
        );
        let rotating = MailgunWebhookVerifier::new(&[KEY, "rotated-key"], 300).unwrap();
        assert_eq!(rotating.verify(TS, TOKEN, &sig, &clock()), Ok(()));
        assert_eq!(rotating.verify(TS, TOKEN, SIG, &clock()), Ok(()));
    }

    #[test]
    fn tampering_and_bad_input_are_rejected() {
        let v = MailgunWebhookVerifier::new(&[KEY], 300).unwrap();
        assert_eq!(
            v.verify(TS, "another-token", SIG, &clock()),
            Err(WebhookRejection::BadSignature)
        );
        assert_eq!(
            v.verify("1529006855", TOKEN, SIG, &clock()),
            Err(WebhookRejection::BadSignature)
        );
        assert_eq!(
            v.verify(TS, TOKEN, "zz", &clock()),
            Err(WebhookRejection::Malformed)
        );
        assert_eq!(
            v.verify(TS, TOKEN, &SIG[..62], &clock()),
            Err(WebhookRejection::Malformed)
        );
        assert_eq!(
            v.verify("", TOKEN, SIG, &clock()),
            Err(WebhookRejection::Missing)
        );
        let late = FixedClock::at_unix(1_529_006_854 + 301);
        assert_eq!(
            v.verify(TS, TOKEN, SIG, &late),
            Err(WebhookRejection::Stale)
        );
    }

    #[test]
    fn keys_are_required_and_never_printed() {
        assert_eq!(
            MailgunWebhookVerifier::new(&[" "], 300).unwrap_err(),
            NoSigningKey
        );
        let v = MailgunWebhookVerifier::new(&[KEY], 300).unwrap();
        assert!(!format!("{v:?}").contains(KEY));
    }

    #[test]
    fn the_signature_object_is_read_before_the_event() {
        let body = format!(
            r#"{{"signature":{{"timestamp":{TS},"token":"{TOKEN}","signature":"{SIG}"}},"event-data":{{"id":"abc","event":"delivered"}}}}"#
        );
        let fields = signature_fields(body.as_bytes()).unwrap();
        assert_eq!(fields.timestamp, TS);
        assert_eq!(fields.token, TOKEN);
        assert_eq!(fields.signature, SIG);
        let p = payload(body.as_bytes());
        assert_eq!(p.dedupe_key, "event:abc");
        assert_eq!(
            p.events.unwrap(),
            vec![r#"{"id":"abc","event":"delivered"}"#]
        );
        assert_eq!(
            signature_fields(br#"{"event-data":{}}"#),
            Err(WebhookRejection::Missing)
        );
        assert_eq!(
            signature_fields(b"token=x"),
            Err(WebhookRejection::Malformed)
        );
    }

    #[test]
    fn an_event_without_an_id_is_an_error_keyed_by_the_body() {
        let body = br#"{"signature":{},"event-data":{"event":"opened"}}"#;
        let p = payload(body);
        assert!(p.dedupe_key.starts_with("sha256:"));
        assert!(p.events.is_err());
        assert!(payload(br#"{"signature":{}}"#).events.is_err());
    }
}
