//! Twilio SendGrid (v3 mail/send; signed Event Webhook).
//!
//! Event Webhook signatures are ECDSA P-256 / SHA-256 over `timestamp header ‖ raw body`, sent as
//! base64 DER in `X-Twilio-Email-Event-Webhook-Signature`, with the timestamp in
//! `X-Twilio-Email-Event-Webhook-Timestamp`. High-S signatures are genuine (SendGrid's own python
//! vector is one), so they are not normalised away.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mailgate_core::{Clock, ProviderId};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;

use crate::verify::{WebhookRejection, check_timestamp};

/// The provider this module covers.
pub const PROVIDER: ProviderId = ProviderId::Sendgrid;
/// The header carrying the base64 DER signature.
pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
/// The header carrying the decimal Unix timestamp.
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// A configured verification key that is not a base64 DER P-256 public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SendGrid webhook key #{index} is not a base64 DER P-256 public key")]
pub struct InvalidKey {
    /// The key's position in the configured list (0-based).
    pub index: usize,
}

/// Verifies Event Webhook deliveries against one or more public keys (several during rotation).
#[derive(Debug, Clone)]
pub struct SendgridWebhookVerifier {
    keys: Vec<VerifyingKey>,
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
                VerifyingKey::from_public_key_der(&der).map_err(|_| InvalidKey { index })
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
        let (signature, timestamp) = match (signature, timestamp) {
            (Some(s), Some(t)) if !s.trim().is_empty() && !t.trim().is_empty() => {
                (s.trim(), t.trim())
            }
            _ => return Err(WebhookRejection::Missing),
        };
        let der = STANDARD
            .decode(signature)
            .map_err(|_| WebhookRejection::Malformed)?;
        let signature = Signature::from_der(&der).map_err(|_| WebhookRejection::Malformed)?;
        check_timestamp(timestamp, self.tolerance_secs, clock)?;
        let mut message = Vec::with_capacity(timestamp.len() + body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.extend_from_slice(body);
        if self
            .keys
            .iter()
            .any(|k| k.verify(&message, &signature).is_ok())
        {
            Ok(())
        } else {
            Err(WebhookRejection::BadSignature)
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

    #[test]
    fn the_official_nodejs_vector_verifies() {
        let v = SendgridWebhookVerifier::new(&[NODE_KEY], 600).unwrap();
        assert_eq!(
            v.verify(
                Some(NODE_SIG),
                Some(NODE_TS),
                NODE_BODY.as_bytes(),
                &at(NODE_TS)
            ),
            Ok(())
        );
    }

    #[test]
    fn the_official_python_vector_verifies_with_its_high_s_signature_and_crlf() {
        let v = SendgridWebhookVerifier::new(&[PY_KEY], 600).unwrap();
        assert_eq!(
            v.verify(Some(PY_SIG), Some(PY_TS), PY_BODY.as_bytes(), &at(PY_TS)),
            Ok(())
        );
        let without_crlf = PY_BODY.trim_end().as_bytes();
        assert_eq!(
            v.verify(Some(PY_SIG), Some(PY_TS), without_crlf, &at(PY_TS)),
            Err(WebhookRejection::BadSignature)
        );
    }

    #[test]
    fn the_official_negative_cases_are_rejected() {
        let wrong = SendgridWebhookVerifier::new(&[WRONG_KEY], 600).unwrap();
        assert_eq!(
            wrong.verify(
                Some(NODE_SIG),
                Some(NODE_TS),
                NODE_BODY.as_bytes(),
                &at(NODE_TS)
            ),
            Err(WebhookRejection::BadSignature)
        );
        let v = SendgridWebhookVerifier::new(&[NODE_KEY], 600).unwrap();
        let tampered = NODE_SIG.replace("NH2j/0=", "NH3j/0=");
        assert!(
            v.verify(
                Some(&tampered),
                Some(NODE_TS),
                NODE_BODY.as_bytes(),
                &at(NODE_TS)
            )
            .is_err()
        );
        let body = NODE_BODY.replace("example_payload", "example_payloaD");
        assert_eq!(
            v.verify(Some(NODE_SIG), Some(NODE_TS), body.as_bytes(), &at(NODE_TS)),
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
            v.verify(
                Some(NODE_SIG),
                Some(NODE_TS),
                NODE_BODY.as_bytes(),
                &at(NODE_TS)
            ),
            Ok(())
        );
        assert_eq!(
            v.verify(Some(PY_SIG), Some(PY_TS), PY_BODY.as_bytes(), &at(PY_TS)),
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
            v.verify(Some("%%%"), Some(NODE_TS), body, &at(NODE_TS)),
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
}
