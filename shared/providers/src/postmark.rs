//! Postmark (/email; webhooks authenticated by HTTP Basic credentials, since Postmark does not
//! sign them).
//!
//! A webhook is one JSON object per POST, branching on `RecordType`. Bounces and spam complaints
//! carry a numeric `ID`; the other records have none, so their dedupe key is a documented
//! composite of the fields that identify the event (hashed, so no address is stored in a key):
//!
//! | RecordType | dedupe key |
//! |---|---|
//! | `Bounce`, `SpamComplaint` | `<RecordType>:<ID>` |
//! | `Delivery` | hash of `MessageID`, `Recipient`, `DeliveredAt` |
//! | `Open` | hash of `MessageID`, `Recipient`, `ReceivedAt` |
//! | `Click` | hash of `MessageID`, `Recipient`, `ReceivedAt`, `OriginalLink` |
//! | `SubscriptionChange` | hash of `MessageID`, `Recipient`, `ChangedAt`, `SuppressSending` |
//! | anything else | hash of the body |

use std::sync::Arc;

use mailgate_core::{DeliveryEvent, ProviderId};

use crate::events::{EventOrigin, NormaliseError};
use crate::verify::BasicAuthVerifier;
use crate::webhook::{
    Payload, PayloadError, VerifierSettings, WebhookProvider, WebhookVerifier, body_key,
    composite_key, field, single_object,
};

pub mod events;
pub mod inbound;
pub mod send;

/// The provider this module covers.
pub const PROVIDER: ProviderId = ProviderId::Postmark;

/// A verified webhook body: one event and its dedupe key.
pub fn payload(body: &[u8]) -> Payload {
    let map = match single_object(body) {
        Ok(map) => map,
        Err(e) => {
            return Payload {
                dedupe_key: body_key(body),
                events: Err(e),
            };
        }
    };
    let dedupe_key = event_key(&map).unwrap_or_else(|| body_key(body));
    let text = String::from_utf8_lossy(body).into_owned();
    Payload {
        dedupe_key,
        events: Ok(vec![text]),
    }
}

/// The dedupe key of one Postmark event by its documented identity: `ID` for bounces and spam
/// complaints, else a composite of the message, the recipient and the event's time; `None` for
/// a record type with no documented identity (callers fall back to hashing the content). Both the
/// delivery key and the per-event key use it, so they always agree.
pub(crate) fn event_key(map: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let record = field(map, "RecordType");
    let f = |name: &str| field(map, name);
    Some(match record.as_ref() {
        "Bounce" | "SpamComplaint" if !f("ID").is_empty() => format!("{record}:{}", f("ID")),
        "Delivery" => composite_key(
            "Delivery",
            &[&f("MessageID"), &f("Recipient"), &f("DeliveredAt")],
        ),
        "Open" => composite_key(
            "Open",
            &[&f("MessageID"), &f("Recipient"), &f("ReceivedAt")],
        ),
        "Click" => composite_key(
            "Click",
            &[
                &f("MessageID"),
                &f("Recipient"),
                &f("ReceivedAt"),
                &f("OriginalLink"),
            ],
        ),
        "SubscriptionChange" => {
            let suppress = map
                .get("SuppressSending")
                .map(|v| v.to_string())
                .unwrap_or_default();
            composite_key(
                "SubscriptionChange",
                &[&f("MessageID"), &f("Recipient"), &f("ChangedAt"), &suppress],
            )
        }
        _ => return None,
    })
}

/// Postmark's webhooks, authenticated by HTTP Basic credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct PostmarkWebhooks;

impl WebhookProvider for PostmarkWebhooks {
    fn id(&self) -> ProviderId {
        PROVIDER
    }

    fn secret_variables(&self) -> &'static [&'static str] {
        &[
            "POSTMARK_WEBHOOK_CREDENTIALS",
            "POSTMARK_WEBHOOK_ALLOWED_IPS",
        ]
    }

    // Postmark sends no timestamp.
    fn default_tolerance_secs(&self) -> i64 {
        0
    }

    fn verifier(
        &self,
        settings: VerifierSettings<'_>,
    ) -> Result<Arc<dyn WebhookVerifier>, Vec<String>> {
        BasicAuthVerifier::from_settings(
            &settings,
            "POSTMARK_WEBHOOK_CREDENTIALS",
            "POSTMARK_WEBHOOK_ALLOWED_IPS",
            |body, _| payload(body),
        )
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
        Some(&inbound::PostmarkInbound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounces_key_by_id_and_the_rest_by_their_documented_composites() {
        let bounce =
            br#"{"RecordType":"Bounce","ID":4323372036854775807,"Email":"john@example.com"}"#;
        assert_eq!(payload(bounce).dedupe_key, "Bounce:4323372036854775807");
        let delivery = br#"{"RecordType":"Delivery","MessageID":"m","Recipient":"john@example.com","DeliveredAt":"2019-11-05T16:33:54Z"}"#;
        let key = payload(delivery).dedupe_key;
        assert!(key.starts_with("Delivery:"));
        assert!(!key.contains("example.com"));
        let later = br#"{"RecordType":"Delivery","MessageID":"m","Recipient":"john@example.com","DeliveredAt":"2019-11-05T16:33:55Z"}"#;
        assert_ne!(payload(later).dedupe_key, key);
        // Field order and whitespace do not change a composite key.
        let reordered = br#"{ "DeliveredAt":"2019-11-05T16:33:54Z", "Recipient":"john@example.com", "MessageID":"m", "RecordType":"Delivery" }"#;
        assert_eq!(payload(reordered).dedupe_key, key);
        let unknown = br#"{"RecordType":"Inbound"}"#;
        assert!(payload(unknown).dedupe_key.starts_with("sha256:"));
        assert_eq!(payload(unknown).events.unwrap().len(), 1);
    }

    #[test]
    fn a_body_that_is_not_an_object_is_an_error() {
        assert!(payload(b"[1,2]").events.is_err());
        assert!(payload(b"not json").events.is_err());
    }
}
