//! SMTP2GO webhook events → [`DeliveryEvent`]s (PROVIDERS.md §5.2, a third-party reproduction of
//! SMTP2GO's docs: no official sample payload exists, so the mapping reads only the documented
//! field names and tolerates their absence).
//!
//! The queued event is the body as a JSON object (form posts are converted at intake).
//!
//! | `event` | kind | notes |
//! |---|---|---|
//! | `processed` | sent | |
//! | `delivered` | delivered | |
//! | `open`, `click` | opened, clicked | `url` for clicks |
//! | `bounce` | bounced | `bounce` `hard`/`soft` → provider kind; `message` as the diagnostic |
//! | `spam` | complained | |
//! | `unsubscribe`, `resubscribe` | unsubscribed, resubscribed | |
//! | `reject` | dropped | `message` as detail |
//! | anything else | unknown | |
//!
//! The dedupe key is the composite of `email_id`, `event`, `rcpt` and `time` that
//! [`super::payload`] uses (SMTP2GO has no event id); the provider message id is `email_id`. Our
//! id is read from an echoed `X-Mailgate-Message-Id` header or a `mailgate_message_id` field when
//! the payload carries one.

use mailgate_core::{
    BounceKind, DeliveryEvent, EventKind, MESSAGE_ID_HEADER, MESSAGE_ID_METADATA_KEY, MessageId,
};
use serde_json::Value;

use crate::events::{
    EventOrigin, NormaliseError, address, any_time, blank, content_key, id_text, our_id,
    parse_object, report, text,
};
use crate::webhook::composite_key;

use super::PROVIDER;

/// Normalises one queued SMTP2GO event (the body as a JSON object).
pub fn normalise(
    event: &str,
    origin: &EventOrigin<'_>,
) -> Result<Vec<DeliveryEvent>, NormaliseError> {
    let value = Value::Object(parse_object(PROVIDER, event)?);
    let name = text(&value, &["event"])
        .ok_or_else(|| NormaliseError::shape(PROVIDER, "the event has no `event` name"))?;
    let kind = kind_of(name);
    let mut out = blank(PROVIDER, key(&value), kind, name, origin, 0);
    out.recipient = address(text(&value, &["rcpt"]));
    out.provider_message_id = text(&value, &["email_id"]).map(str::to_owned);
    out.message_id = message_id(&value);
    out.occurred_at = value.get("time").and_then(any_time);
    let message = text(&value, &["message"]);
    match kind {
        EventKind::Bounced => {
            let severity = text(&value, &["bounce"]);
            let mut bounce = report(message, None);
            bounce.provider_type = severity.map(str::to_owned);
            bounce.provider_kind = match severity.map(str::to_ascii_lowercase).as_deref() {
                Some("hard") => Some(BounceKind::Hard),
                Some("soft") => Some(BounceKind::Soft),
                _ => None,
            };
            out.bounce = Some(bounce);
        }
        EventKind::Dropped => {
            out.detail = message
                .or_else(|| text(&value, &["context"]))
                .map(str::to_owned);
            // SMTP2GO rejects sends to addresses on its suppression list; its wording is not
            // documented, so only an explicit mention counts.
            out.provider_suppressed = out
                .detail
                .as_deref()
                .is_some_and(|d| d.to_ascii_lowercase().contains("suppress"));
            if let Some(text) = message {
                out.bounce = Some(report(Some(text), None));
            }
        }
        EventKind::Clicked => out.url = text(&value, &["url"]).map(str::to_owned),
        _ => {}
    }
    Ok(vec![out])
}

fn kind_of(name: &str) -> EventKind {
    match name {
        "processed" => EventKind::Sent,
        "delivered" => EventKind::Delivered,
        "open" => EventKind::Opened,
        "click" => EventKind::Clicked,
        "bounce" => EventKind::Bounced,
        "spam" => EventKind::Complained,
        "unsubscribe" => EventKind::Unsubscribed,
        "resubscribe" => EventKind::Resubscribed,
        "reject" => EventKind::Dropped,
        _ => EventKind::Unknown,
    }
}

/// The composite key of [`super::payload`], so an event and its delivery agree; a hash of the
/// content when only the event name is there (two such events would otherwise share a key).
fn key(value: &Value) -> String {
    let parts =
        ["email_id", "event", "rcpt", "time"].map(|k| id_text(value, &[k]).unwrap_or_default());
    if [&parts[0], &parts[2], &parts[3]]
        .iter()
        .all(|p| p.is_empty())
    {
        content_key("smtp2go", value)
    } else {
        composite_key("event", &parts.each_ref().map(String::as_str))
    }
}

/// Our id, from whatever the payload echoes: a top-level field named like our header or
/// metadata key (any case), or a `headers` object or `[{header|name, value}]` list.
fn message_id(value: &Value) -> Option<MessageId> {
    let wanted = |k: &str| {
        k.eq_ignore_ascii_case(MESSAGE_ID_HEADER) || k.eq_ignore_ascii_case(MESSAGE_ID_METADATA_KEY)
    };
    let from_map = |map: &serde_json::Map<String, Value>| {
        map.iter()
            .find(|(k, _)| wanted(k))
            .and_then(|(_, v)| our_id(v.as_str()))
    };
    let map = value.as_object()?;
    from_map(map).or_else(|| match map.get("headers") {
        Some(Value::Object(headers)) => from_map(headers),
        Some(Value::Array(headers)) => headers.iter().find_map(|h| {
            let name = text(h, &["header"]).or_else(|| text(h, &["name"]))?;
            wanted(name).then(|| our_id(text(h, &["value"]))).flatten()
        }),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::{EnhancedStatus, UnixMillis};

    const ORIGIN: EventOrigin<'static> = EventOrigin {
        receipt: "smtp2go#event:x",
        index: 0,
        received_at: UnixMillis(1),
    };

    const BOUNCE: &str = r#"{"event":"bounce","time":"2024-01-01T00:00:05Z","sendtime":"2024-01-01T00:00:00Z","email_id":"1er8bV-6Tw0Mi-7h","rcpt":"user@example.com","sender":"noreply@example.org","bounce":"hard","host":"mx.example.com [192.0.2.1]","message":"550 5.1.1 user unknown","message-id":"<abc@example.org>","subject":"Hello"}"#;

    fn one(event: &str) -> DeliveryEvent {
        let mut events = normalise(event, &ORIGIN).unwrap();
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    #[test]
    fn a_hard_bounce_reads_its_message() {
        let e = one(BOUNCE);
        assert_eq!(e.kind, EventKind::Bounced);
        assert_eq!(e.provider_message_id.as_deref(), Some("1er8bV-6Tw0Mi-7h"));
        assert_eq!(e.recipient.unwrap().as_str(), "user@example.com");
        assert_eq!(e.occurred_at, Some(UnixMillis(1_704_067_205_000)));
        let b = e.bounce.unwrap();
        assert_eq!(b.provider_kind, Some(BounceKind::Hard));
        assert_eq!(b.status, EnhancedStatus::parse("5.1.1").ok());
        assert_eq!(b.reply_code, Some(550));
        // The same key as the delivery.
        assert_eq!(
            e.key,
            super::super::payload(BOUNCE.as_bytes(), None).dedupe_key
        );
    }

    #[test]
    fn every_documented_event_maps() {
        for (name, kind) in [
            ("processed", EventKind::Sent),
            ("delivered", EventKind::Delivered),
            ("open", EventKind::Opened),
            ("click", EventKind::Clicked),
            ("spam", EventKind::Complained),
            ("unsubscribe", EventKind::Unsubscribed),
            ("resubscribe", EventKind::Resubscribed),
            ("reject", EventKind::Dropped),
            ("sms_delivered", EventKind::Unknown),
        ] {
            let e = one(&format!(
                r#"{{"event":"{name}","email_id":"i","rcpt":"a@example.com","time":"1704067205","url":"https://example.com/x"}}"#
            ));
            assert_eq!(e.kind, kind, "{name}");
            assert_eq!(e.provider_type, name);
            assert_eq!(e.occurred_at, Some(UnixMillis(1_704_067_205_000)));
        }
    }

    #[test]
    fn soft_bounces_rejects_and_our_id_are_read() {
        let id = MessageId::generate();
        let soft = one(&format!(
            r#"{{"event":"bounce","bounce":"soft","rcpt":"a@example.com","X-Mailgate-Message-Id":"{id}"}}"#
        ));
        assert_eq!(soft.bounce.unwrap().provider_kind, Some(BounceKind::Soft));
        assert_eq!(soft.message_id, Some(id.clone()));
        let listed = one(&format!(
            r#"{{"event":"reject","rcpt":"a@example.com","message":"Recipient is on the suppression list","headers":[{{"header":"X-Mailgate-Message-Id","value":"{id}"}}]}}"#
        ));
        assert_eq!(listed.kind, EventKind::Dropped);
        assert!(listed.provider_suppressed);
        assert_eq!(listed.message_id, Some(id));
        // Without the identifying fields the whole content keys the event.
        let bare = one(r#"{"event":"open","client":"a"}"#);
        assert!(bare.key.starts_with("smtp2go:"));
        assert_ne!(bare.key, one(r#"{"event":"open","client":"b"}"#).key);
    }

    #[test]
    fn malformed_events_are_errors() {
        assert!(normalise("", &ORIGIN).is_err());
        assert!(normalise(r#"{"rcpt":"a@example.com"}"#, &ORIGIN).is_err());
    }
}
