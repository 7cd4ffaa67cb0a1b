//! What a verified webhook delivery becomes before it is stored: its delivery-level dedupe key
//! and the events inside it, one queue message each.
//!
//! Each provider module implements [`WebhookProvider`] once (its configuration names, default
//! timestamp window, verification, splitting a body into events, normalising one event), and
//! [`webhook_provider`] is the one place a [`ProviderId`] picks its implementation: adding a
//! provider touches its module, its function crate and the template. This module also holds the
//! shapes every provider shares.

use std::net::IpAddr;
use std::sync::Arc;

use futures::future::BoxFuture;
use mailgate_core::{Clock, DeliveryEvent, DeliveryKind, ProviderId};
use sha2::{Digest, Sha256};

use crate::events::{EventOrigin, NormaliseError};
use crate::ses::sns::SnsHttp;
use crate::verify::WebhookRejection;

/// Everything mailgate knows about one provider's webhooks, implemented once in its module.
pub trait WebhookProvider: Send + Sync {
    /// The provider.
    fn id(&self) -> ProviderId;

    /// The configuration names of its verification secrets and allowlists (literal values, or
    /// `ssm:`/`secretsmanager:` references resolved once at cold start).
    fn secret_variables(&self) -> &'static [&'static str];

    /// The timestamp window either way, in seconds, when `WEBHOOK_TIMESTAMP_TOLERANCE_SECS` is
    /// not set; 0 for a provider whose deliveries carry no timestamp (the setting is then not
    /// read).
    fn default_tolerance_secs(&self) -> i64;

    /// Builds its verification once at cold start; every problem names the variable at fault.
    /// A missing secret is a problem: verification never turns off.
    fn verifier(
        &self,
        settings: VerifierSettings<'_>,
    ) -> Result<Arc<dyn WebhookVerifier>, Vec<String>>;

    /// The events of a stored, already-verified body, exactly as the webhook function queued
    /// them (used for oversize events and when the sweeper re-enqueues a receipt).
    /// `content_type` matters only where the provider posts more than one encoding.
    fn split(&self, body: &[u8], content_type: Option<&str>) -> Result<Vec<String>, PayloadError>;

    /// Normalises one queued event into one [`DeliveryEvent`] per recipient (see
    /// [`crate::events::normalise`]).
    fn normalise(
        &self,
        event: &str,
        origin: &EventOrigin<'_>,
    ) -> Result<Vec<DeliveryEvent>, NormaliseError>;

    /// Its inbound email webhook (`POST /inbound`), if it has one.
    fn inbound(&self) -> Option<&'static dyn crate::inbound::InboundWebhook> {
        None
    }
}

/// The webhook side of `provider`: the one place a provider id picks its implementation.
pub fn webhook_provider(provider: ProviderId) -> &'static dyn WebhookProvider {
    match provider {
        ProviderId::Ses => &crate::ses::SesWebhooks,
        ProviderId::Sendgrid => &crate::sendgrid::SendgridWebhooks,
        ProviderId::Mailgun => &crate::mailgun::MailgunWebhooks,
        ProviderId::Postmark => &crate::postmark::PostmarkWebhooks,
        ProviderId::Smtp2go => &crate::smtp2go::Smtp2goWebhooks,
        ProviderId::Simulator => &crate::simulator::SimulatorWebhooks,
    }
}

/// What a provider's verification is built from.
pub struct VerifierSettings<'a> {
    /// The timestamp window either way, in seconds (0 where deliveries carry no timestamp).
    pub tolerance_secs: i64,
    /// The function's configuration by name, secrets already resolved.
    pub lookup: &'a dyn Fn(&str) -> Option<String>,
    /// Makes the client that fetches SNS signing certificates and `SubscribeURL`s; only SES
    /// calls it, so the other functions never build one.
    pub sns_http: Box<dyn FnOnce() -> Result<Arc<dyn SnsHttp>, String> + 'a>,
}

impl VerifierSettings<'_> {
    /// The comma-separated list `name`, entries trimmed, blanks dropped; unset is empty.
    pub fn list(&self, name: &str) -> Vec<String> {
        (self.lookup)(name)
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The list `name`, which must hold at least one entry.
    pub fn required(&self, name: &str) -> Result<Vec<String>, Vec<String>> {
        let values = self.list(name);
        if values.is_empty() {
            Err(vec![format!(
                "{name} is not set: webhook verification never turns off"
            )])
        } else {
            Ok(values)
        }
    }

    /// Builds a verifier with `new` from the required key list `name` and the window; its error
    /// names `name`.
    pub(crate) fn keyed<V, E>(
        &self,
        name: &str,
        new: impl FnOnce(&[&str], i64) -> Result<V, E>,
    ) -> Result<Arc<dyn WebhookVerifier>, Vec<String>>
    where
        V: WebhookVerifier + 'static,
        E: std::fmt::Display,
    {
        let keys = self.required(name)?;
        new(&refs(&keys), self.tolerance_secs)
            .map(|v| Arc::new(v) as Arc<dyn WebhookVerifier>)
            .map_err(|e| vec![format!("{name}: {e}")])
    }
}

/// The entries of a configured list as the verifiers' constructors take them.
pub(crate) fn refs(values: &[String]) -> Vec<&str> {
    values.iter().map(String::as_str).collect()
}

/// One webhook delivery as the front door received it.
#[derive(Debug, Clone, Copy)]
pub struct WebhookDelivery<'a> {
    /// The request headers.
    pub headers: &'a http::HeaderMap,
    /// The raw body, exactly as received (signatures cover these bytes).
    pub body: &'a [u8],
    /// The caller's address, when the platform reports it.
    pub source: Option<IpAddr>,
}

/// A provider's verification, built once at cold start from its configuration.
pub trait WebhookVerifier: Send + Sync + std::fmt::Debug {
    /// Verifies one delivery on its raw bytes, then reads it.
    fn verify<'a>(
        &'a self,
        delivery: WebhookDelivery<'a>,
        clock: &'a dyn Clock,
    ) -> BoxFuture<'a, Result<Verified, VerifyFailure>>;
}

/// Why verification did not accept a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyFailure {
    /// Not authentic, or not acceptable: answer 401 without detail and count the reason.
    Rejected(WebhookRejection),
    /// Could not be decided now (a fetch from the provider failed): answer 503 so it retries.
    Unavailable(String),
}

/// A delivery that passed verification.
pub struct Verified {
    /// What it is and what it carries.
    pub intake: Intake,
    /// The subscription handshake it carries, if any (SNS confirmations).
    pub handshake: Option<Handshake>,
}

impl Verified {
    /// The outcome of a verification that needs no network: an intake, or why there is none.
    pub(crate) fn settled<'a>(
        verified: Result<Intake, WebhookRejection>,
    ) -> BoxFuture<'a, Result<Verified, VerifyFailure>> {
        let outcome = verified
            .map(|intake| Verified {
                intake,
                handshake: None,
            })
            .map_err(VerifyFailure::Rejected);
        Box::pin(std::future::ready(outcome))
    }
}

/// A provider starting or ending a subscription to this endpoint.
pub enum Handshake {
    /// It asks us to confirm a subscription; `confirm` does so (before the delivery is
    /// acknowledged, so a failed confirmation is retried).
    Subscribe {
        /// What is subscribed (the SNS topic ARN), for logs.
        topic: String,
        /// Confirms the subscription.
        confirm: BoxFuture<'static, Result<(), VerifyFailure>>,
    },
    /// It tells us the subscription ended: events will stop arriving.
    Unsubscribed {
        /// What was subscribed (the SNS topic ARN), for logs.
        topic: String,
    },
}

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
/// Shorthand for [`WebhookProvider::split`].
pub fn events_of(
    provider: ProviderId,
    body: &[u8],
    content_type: Option<&str>,
) -> Result<Vec<String>, PayloadError> {
    webhook_provider(provider).split(body, content_type)
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
    fn every_provider_has_its_webhook_implementation() {
        for provider in ProviderId::ALL {
            let webhooks = webhook_provider(provider);
            assert_eq!(webhooks.id(), provider);
            assert!(!webhooks.secret_variables().is_empty(), "{provider}");
            assert!(webhooks.default_tolerance_secs() >= 0, "{provider}");
        }
    }

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
