//! What a verified webhook delivery becomes before it is stored: its delivery-level dedupe key
//! and the events inside it, one queue message each. Each provider module parses its own body;
//! this module holds the shared shapes and the dispatch used to split a stored body again.

use mailgate_core::{DeliveryKind, ProviderId};
use sha2::{Digest, Sha256};

/// A delivery that passed verification: what it is, how it was verified, and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intake {
    /// Events, or an SNS subscription handshake.
    pub kind: DeliveryKind,
    /// The scheme that verified it, as stored on the receipt (e.g. `ecdsa-p256`).
    pub verification: &'static str,
    /// Its dedupe key and events.
    pub payload: Payload,
    /// A signed single-use token to remember (Mailgun), if the scheme has one.
    pub replay_token: Option<String>,
}

/// The value of header `name` as text, if present and readable.
pub fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A verified delivery's dedupe key and its events (raw JSON, one string per event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The delivery-level dedupe key: equal for every redelivery of the same delivery.
    pub dedupe_key: String,
    /// The events, or why the (authentic) body could not be read.
    pub events: Result<Vec<String>, PayloadError>,
}

/// An authentic body that is not the shape the provider documents. It is kept for audit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

impl PayloadError {
    /// Wraps a description of what is wrong.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// `sha256:<hex>` of the whole body: the dedupe key of a body with no id of its own.
pub fn body_key(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// `<label>:<hex sha256 of the parts joined by NUL>`: a documented composite key that carries no
/// address in the clear (keys end up in tables and logs).
pub fn composite_key(label: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0u8]);
        }
        hasher.update(part.as_bytes());
    }
    format!("{label}:{}", hex::encode(hasher.finalize()))
}

/// Splits a stored, already-verified body into its events again (used when a receipt is
/// re-enqueued by the sweeper). `content_type` matters only for SMTP2GO's form encoding.
pub fn events_of(
    provider: ProviderId,
    body: &[u8],
    content_type: Option<&str>,
) -> Result<Vec<String>, PayloadError> {
    match provider {
        ProviderId::Ses => crate::ses::notification_events(body),
        ProviderId::Sendgrid => crate::sendgrid::events(body),
        ProviderId::Mailgun => crate::mailgun::payload(body).events,
        ProviderId::Postmark => crate::postmark::payload(body).events,
        ProviderId::Smtp2go => crate::smtp2go::payload(body, content_type).events,
    }
}

/// Reads a JSON object body (the one-event-per-POST providers).
pub(crate) fn single_object(
    body: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, PayloadError> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(PayloadError::new("the body is JSON but not an object")),
        Err(e) => Err(PayloadError::new(format!("the body is not JSON: {e}"))),
    }
}

/// A string field of an event, or "" (numbers are rendered, so ids stored as numbers still key).
pub(crate) fn field<'a>(
    map: &'a serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> std::borrow::Cow<'a, str> {
    match map.get(name) {
        Some(serde_json::Value::String(s)) => std::borrow::Cow::Borrowed(s.as_str()),
        Some(serde_json::Value::Number(n)) => std::borrow::Cow::Owned(n.to_string()),
        _ => std::borrow::Cow::Borrowed(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_keys_are_stable_and_hide_their_parts() {
        let a = composite_key("Delivery", &["m1", "john@example.com", "t"]);
        assert_eq!(
            a,
            composite_key("Delivery", &["m1", "john@example.com", "t"])
        );
        assert!(a.starts_with("Delivery:"));
        assert!(!a.contains("example.com"));
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(
            composite_key("x", &["ab", "c"]),
            composite_key("x", &["a", "bc"])
        );
        assert_eq!(body_key(b"[]").len(), "sha256:".len() + 64);
    }
}
