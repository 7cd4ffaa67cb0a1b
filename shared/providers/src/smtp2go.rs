//! SMTP2GO (/v3/email/send; webhooks authenticated by HTTP Basic credentials, since SMTP2GO does
//! not sign them).
//!
//! A webhook is one event per POST, as JSON or as `application/x-www-form-urlencoded` (a
//! per-webhook setting); form bodies are turned into the same JSON object so everything after
//! ingestion sees one shape. SMTP2GO documents no event id, so the dedupe key is the composite
//! of `email_id`, `event`, `rcpt` and `time` (hashed, so no address is stored in a key), or a
//! hash of the body when none of them is present.

use std::sync::Arc;

use mailgate_core::{DeliveryEvent, ProviderId};

use crate::events::{EventOrigin, NormaliseError};
use crate::verify::BasicAuthVerifier;
use crate::webhook::{
    Payload, PayloadError, VerifierSettings, WebhookProvider, WebhookVerifier, body_key,
    composite_key, field, single_object,
};

pub mod events;
pub mod send;

/// The provider this module covers.
pub const PROVIDER: ProviderId = ProviderId::Smtp2go;

/// A verified webhook body: one event (as a JSON object) and its dedupe key.
pub fn payload(body: &[u8], content_type: Option<&str>) -> Payload {
    let is_form = content_type
        .map(|c| {
            c.trim()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
        .unwrap_or(false);
    let map = if is_form {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .map(|pairs| {
                pairs
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect::<serde_json::Map<_, _>>()
            })
            .map_err(|e| PayloadError::new(format!("the form body is not readable: {e}")))
    } else {
        single_object(body)
    };
    let map = match map {
        Ok(map) => map,
        Err(e) => {
            return Payload {
                dedupe_key: body_key(body),
                events: Err(e),
            };
        }
    };
    let parts = ["email_id", "event", "rcpt", "time"].map(|k| field(&map, k));
    let dedupe_key = if parts.iter().all(|p| p.is_empty()) {
        body_key(body)
    } else {
        composite_key("event", &parts.each_ref().map(|p| p.as_ref()))
    };
    let event = serde_json::Value::Object(map).to_string();
    Payload {
        dedupe_key,
        events: Ok(vec![event]),
    }
}

/// SMTP2GO's webhooks, authenticated by HTTP Basic credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct Smtp2goWebhooks;

impl WebhookProvider for Smtp2goWebhooks {
    fn id(&self) -> ProviderId {
        PROVIDER
    }

    fn secret_variables(&self) -> &'static [&'static str] {
        &["SMTP2GO_WEBHOOK_CREDENTIALS", "SMTP2GO_WEBHOOK_ALLOWED_IPS"]
    }

    // SMTP2GO sends no timestamp.
    fn default_tolerance_secs(&self) -> i64 {
        0
    }

    fn verifier(
        &self,
        settings: VerifierSettings<'_>,
    ) -> Result<Arc<dyn WebhookVerifier>, Vec<String>> {
        BasicAuthVerifier::from_settings(
            &settings,
            "SMTP2GO_WEBHOOK_CREDENTIALS",
            "SMTP2GO_WEBHOOK_ALLOWED_IPS",
            payload,
        )
    }

    fn split(&self, body: &[u8], content_type: Option<&str>) -> Result<Vec<String>, PayloadError> {
        payload(body, content_type).events
    }

    fn normalise(
        &self,
        event: &str,
        origin: &EventOrigin<'_>,
    ) -> Result<Vec<DeliveryEvent>, NormaliseError> {
        events::normalise(event, origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = r#"{"event":"bounce","time":"2024-01-01T00:00:05Z","email_id":"1er8bV-6Tw0Mi-7h","rcpt":"user@example.com","bounce":"hard"}"#;

    #[test]
    fn json_and_form_bodies_give_the_same_event_and_key() {
        let json = payload(JSON.as_bytes(), Some("application/json"));
        let form = payload(
            b"event=bounce&time=2024-01-01T00%3A00%3A05Z&email_id=1er8bV-6Tw0Mi-7h&rcpt=user%40example.com&bounce=hard",
            Some("application/x-www-form-urlencoded; charset=utf-8"),
        );
        assert_eq!(json.dedupe_key, form.dedupe_key);
        assert!(json.dedupe_key.starts_with("event:"));
        assert!(!json.dedupe_key.contains("example.com"));
        let a: serde_json::Value = serde_json::from_str(&json.events.unwrap()[0]).unwrap();
        let b: serde_json::Value = serde_json::from_str(&form.events.unwrap()[0]).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn another_event_for_the_same_message_keys_differently() {
        let delivered = JSON.replace("\"bounce\",\"time\"", "\"delivered\",\"time\"");
        assert_ne!(
            payload(delivered.as_bytes(), None).dedupe_key,
            payload(JSON.as_bytes(), None).dedupe_key
        );
        assert!(payload(b"{}", None).dedupe_key.starts_with("sha256:"));
        assert!(payload(b"[]", None).events.is_err());
    }
}
