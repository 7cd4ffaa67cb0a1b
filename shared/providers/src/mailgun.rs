//! Mailgun (v3 messages; HMAC-signed webhooks).
//!
//! A webhook carries `signature.{timestamp, token, signature}` in its JSON body, where the
//! signature is hex HMAC-SHA256 of `timestamp ‖ token` under the webhook signing key. The
//! `event-data` is not covered, so callers must also refuse a token seen before (replay cache).

use hmac::{Hmac, Mac};
use mailgate_core::{Clock, ProviderId};
use sha2::Sha256;

use crate::verify::{WebhookRejection, check_timestamp};

/// The provider this module covers.
pub const PROVIDER: ProviderId = ProviderId::Mailgun;

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
}
