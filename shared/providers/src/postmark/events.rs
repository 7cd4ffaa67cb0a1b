//! Postmark webhook events → [`DeliveryEvent`]s (PROVIDERS.md §4.4).
//!
//! The queued event is the body object, branching on `RecordType`:
//!
//! | `RecordType` | kind | notes |
//! |---|---|---|
//! | `Delivery` | delivered | |
//! | `Bounce` | by `Type`/`TypeCode`, see [`BOUNCE_TYPES`] | `Details` as the diagnostic |
//! | `SpamComplaint` | complained | |
//! | `Open`, `Click` | opened, clicked | `OriginalLink` for clicks |
//! | `SubscriptionChange` | `SuppressSending` true → unsubscribed, false → resubscribed | `SuppressionReason` as detail |
//! | anything else | unknown | |
//!
//! The dedupe key is `<RecordType>:<ID>` for bounces and spam complaints, else the documented
//! composite of [`super::payload`] (hashed, no address in the clear), else a hash of the content.
//! The recipient is `Recipient`, or `Email` on bounces and complaints; our id is
//! `Metadata.mailgate_message_id`.

use mailgate_core::{BounceCause, BounceKind, DeliveryEvent, EventKind, MESSAGE_ID_METADATA_KEY};
use serde_json::Value;

use crate::events::{
    EventOrigin, NormaliseError, address, blank, content_key, our_id, parse_object, report, text,
    text_time,
};

use super::PROVIDER;

/// What one Postmark bounce type means: (`Type`, `TypeCode`, kind, provider kind, cause).
pub type BounceType = (
    &'static str,
    u64,
    EventKind,
    Option<BounceKind>,
    Option<BounceCause>,
);

/// Every bounce type Postmark documents (postmark.js `BounceType`), mapped.
///
/// Not everything Postmark reports as a "bounce" is one: an auto-responder proves the message
/// arrived (counting it as a soft bounce would suppress people on holiday), unsubscribe and
/// subscribe requests are subscription changes, an open-relay test and an inbound error are not
/// about our message, a manual deactivation or an unconfirmed address is Postmark refusing to
/// send, and a template failure is a rendering failure.
pub const BOUNCE_TYPES: &[BounceType] = &[
    (
        "HardBounce",
        1,
        EventKind::Bounced,
        Some(BounceKind::Hard),
        None,
    ),
    (
        "Transient",
        2,
        EventKind::Bounced,
        Some(BounceKind::Soft),
        None,
    ),
    ("Unsubscribe", 16, EventKind::Unsubscribed, None, None),
    ("Subscribe", 32, EventKind::Resubscribed, None, None),
    ("AutoResponder", 64, EventKind::Delivered, None, None),
    (
        "AddressChange",
        128,
        EventKind::Bounced,
        Some(BounceKind::Hard),
        Some(BounceCause::MailboxMoved),
    ),
    (
        "DnsError",
        256,
        EventKind::Bounced,
        Some(BounceKind::Soft),
        Some(BounceCause::Network),
    ),
    (
        "SpamNotification",
        512,
        EventKind::Bounced,
        Some(BounceKind::Hard),
        Some(BounceCause::SpamContent),
    ),
    ("OpenRelayTest", 1024, EventKind::AccountNotice, None, None),
    ("Unknown", 2048, EventKind::Bounced, None, None),
    (
        "SoftBounce",
        4096,
        EventKind::Bounced,
        Some(BounceKind::Soft),
        None,
    ),
    (
        "VirusNotification",
        8192,
        EventKind::Bounced,
        Some(BounceKind::Hard),
        Some(BounceCause::SpamContent),
    ),
    (
        "ChallengeVerification",
        16384,
        EventKind::Bounced,
        Some(BounceKind::Soft),
        Some(BounceCause::Policy),
    ),
    (
        "BadEmailAddress",
        100000,
        EventKind::Bounced,
        Some(BounceKind::Hard),
        Some(BounceCause::UserUnknown),
    ),
    ("SpamComplaint", 100001, EventKind::Complained, None, None),
    (
        "ManuallyDeactivated",
        100002,
        EventKind::Dropped,
        None,
        None,
    ),
    ("Unconfirmed", 100003, EventKind::Dropped, None, None),
    (
        "Blocked",
        100006,
        EventKind::Bounced,
        Some(BounceKind::Soft),
        Some(BounceCause::ReputationBlock),
    ),
    ("SMTPApiError", 100007, EventKind::Dropped, None, None),
    ("InboundError", 100008, EventKind::AccountNotice, None, None),
    (
        "DMARCPolicy",
        100009,
        EventKind::Bounced,
        Some(BounceKind::Hard),
        Some(BounceCause::AuthenticationFailure),
    ),
    (
        "TemplateRenderingFailed",
        100010,
        EventKind::RenderingFailed,
        None,
        None,
    ),
];

/// Normalises one queued Postmark event (the body object).
pub fn normalise(
    event: &str,
    origin: &EventOrigin<'_>,
) -> Result<Vec<DeliveryEvent>, NormaliseError> {
    let value = Value::Object(parse_object(PROVIDER, event)?);
    let record = text(&value, &["RecordType"])
        .ok_or_else(|| NormaliseError::shape(PROVIDER, "the event has no RecordType"))?;
    let bounce_type = (record == "Bounce").then(|| bounce_type(&value));
    let kind = match (record, bounce_type) {
        ("Delivery", _) => EventKind::Delivered,
        ("Bounce", Some(Some(t))) => t.2,
        // A bounce type Postmark added later is still a bounce; the diagnostic decides.
        ("Bounce", _) => EventKind::Bounced,
        ("SpamComplaint", _) => EventKind::Complained,
        ("Open", _) => EventKind::Opened,
        ("Click", _) => EventKind::Clicked,
        ("SubscriptionChange", _) => match value.get("SuppressSending").and_then(Value::as_bool) {
            Some(false) => EventKind::Resubscribed,
            _ => EventKind::Unsubscribed,
        },
        _ => EventKind::Unknown,
    };
    let raw_type = text(&value, &["Type"]);
    // A bounce's own name (`HardBounce`, …) says more than `Bounce`.
    let provider_type = match record {
        "Bounce" => raw_type.unwrap_or(record),
        _ => record,
    };
    let mut out = blank(PROVIDER, key(&value), kind, provider_type, origin, 0);
    out.recipient = address(text(&value, &["Recipient"]).or_else(|| text(&value, &["Email"])));
    out.provider_message_id = text(&value, &["MessageID"]).map(str::to_owned);
    out.message_id = our_id(text(&value, &["Metadata", MESSAGE_ID_METADATA_KEY]));
    out.occurred_at = ["DeliveredAt", "BouncedAt", "ReceivedAt", "ChangedAt"]
        .iter()
        .find_map(|field| text(&value, &[field]))
        .and_then(text_time);
    match (record, kind) {
        ("Bounce", EventKind::Bounced | EventKind::Dropped) => {
            let mut bounce = report(text(&value, &["Details"]), None);
            bounce.provider_type = raw_type.map(str::to_owned);
            if let Some(Some(t)) = bounce_type {
                bounce.provider_kind = t.3;
                bounce.provider_cause = t.4;
            }
            out.bounce = Some(bounce);
            if kind == EventKind::Dropped {
                // A manual deactivation is Postmark's own suppression list at work.
                out.provider_suppressed =
                    matches!(bounce_type, Some(Some(("ManuallyDeactivated", ..))));
                out.detail = text(&value, &["Description"])
                    .or(raw_type)
                    .map(str::to_owned);
            }
        }
        ("Bounce", EventKind::RenderingFailed) => {
            out.detail = text(&value, &["Details"])
                .or_else(|| text(&value, &["Description"]))
                .map(str::to_owned);
        }
        ("Click", _) => out.url = text(&value, &["OriginalLink"]).map(str::to_owned),
        ("SubscriptionChange", _) => {
            out.detail = text(&value, &["SuppressionReason"]).map(str::to_owned);
        }
        _ => {}
    }
    Ok(vec![out])
}

/// The documented bounce type of a `Bounce` record, by `Type` or else `TypeCode`.
fn bounce_type(value: &Value) -> Option<&'static BounceType> {
    let name = text(value, &["Type"]);
    let code = value.get("TypeCode").and_then(Value::as_u64);
    BOUNCE_TYPES
        .iter()
        .find(|t| Some(t.0) == name)
        .or_else(|| BOUNCE_TYPES.iter().find(|t| Some(t.1) == code))
}

/// The per-event dedupe key: [`super::event_key`], the same key as the delivery's, so an event
/// and its delivery agree.
fn key(value: &Value) -> String {
    value
        .as_object()
        .and_then(super::event_key)
        .unwrap_or_else(|| content_key("postmark", value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::{MessageId, UnixMillis};

    const ORIGIN: EventOrigin<'static> = EventOrigin {
        receipt: "postmark#Bounce:1",
        index: 0,
        received_at: UnixMillis(1),
    };

    fn one(event: &str) -> DeliveryEvent {
        let mut events = normalise(event, &ORIGIN).unwrap();
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    fn bounce(type_name: &str, code: u64) -> DeliveryEvent {
        one(&format!(
            r#"{{"RecordType":"Bounce","ID":7,"Type":"{type_name}","TypeCode":{code},"MessageID":"m","Email":"john@example.com","BouncedAt":"2019-11-05T16:33:54.9070259Z","Details":"smtp;550 5.1.1 The email account that you tried to reach does not exist","Description":"d"}}"#
        ))
    }

    #[test]
    fn every_documented_bounce_type_maps_by_name_and_by_code() {
        for t in BOUNCE_TYPES {
            let by_name = bounce(t.0, t.1);
            assert_eq!(by_name.kind, t.2, "{}", t.0);
            assert_eq!(by_name.provider_type, t.0);
            let by_code = one(&format!(
                r#"{{"RecordType":"Bounce","ID":7,"TypeCode":{},"Email":"john@example.com"}}"#,
                t.1
            ));
            assert_eq!(by_code.kind, t.2, "{}", t.1);
            if t.2 == EventKind::Bounced {
                let b = by_name.bounce.unwrap();
                assert_eq!((b.provider_kind, b.provider_cause), (t.3, t.4), "{}", t.0);
            }
        }
    }

    #[test]
    fn a_hard_bounce_reads_its_details() {
        let e = bounce("HardBounce", 1);
        assert_eq!(e.key, "Bounce:7");
        assert_eq!(e.recipient.unwrap().as_str(), "john@example.com");
        assert_eq!(e.occurred_at, Some(UnixMillis(1_572_971_634_907)));
        let b = e.bounce.unwrap();
        assert_eq!(b.reply_code, Some(550));
        assert_eq!(b.status.unwrap().to_string(), "5.1.1");
        assert!(!e.provider_suppressed);
    }

    #[test]
    fn a_manual_deactivation_is_a_provider_suppression() {
        let e = bounce("ManuallyDeactivated", 100002);
        assert_eq!(e.kind, EventKind::Dropped);
        assert!(e.provider_suppressed);
        assert_eq!(e.detail.as_deref(), Some("d"));
        assert!(!bounce("Unconfirmed", 100003).provider_suppressed);
    }

    #[test]
    fn an_unlisted_bounce_type_is_still_a_bounce() {
        let e = bounce("QuantumBounce", 999);
        assert_eq!(e.kind, EventKind::Bounced);
        assert_eq!(e.provider_type, "QuantumBounce");
        assert_eq!(e.bounce.unwrap().provider_kind, None);
    }

    #[test]
    fn subscription_changes_follow_suppress_sending() {
        let change = |s: bool| {
            one(&format!(
                r#"{{"RecordType":"SubscriptionChange","MessageID":null,"Recipient":"a@example.com","ChangedAt":"2020-02-01T10:53:34.416071Z","SuppressSending":{s},"SuppressionReason":"ManualSuppression"}}"#
            ))
        };
        let off = change(true);
        assert_eq!(off.kind, EventKind::Unsubscribed);
        assert_eq!(off.provider_message_id, None);
        assert_eq!(off.detail.as_deref(), Some("ManualSuppression"));
        assert_eq!(change(false).kind, EventKind::Resubscribed);
        assert_ne!(change(false).key, off.key);
    }

    #[test]
    fn keys_match_the_delivery_keys_and_our_id_comes_from_metadata() {
        let id = MessageId::generate();
        for body in [
            format!(
                r#"{{"RecordType":"Delivery","MessageID":"m","Recipient":"john@example.com","DeliveredAt":"2019-11-05T16:33:54Z","Metadata":{{"mailgate_message_id":"{id}"}}}}"#
            ),
            r#"{"RecordType":"Click","MessageID":"m","Recipient":"john@example.com","ReceivedAt":"2019-11-05T16:33:54Z","OriginalLink":"https://example.com"}"#.into(),
            r#"{"RecordType":"SpamComplaint","ID":42,"Email":"john@example.com"}"#.into(),
        ] {
            let e = one(&body);
            assert_eq!(e.key, super::super::payload(body.as_bytes()).dedupe_key);
            assert!(!e.key.contains("example.com"));
        }
        let e = one(&format!(
            r#"{{"RecordType":"Open","MessageID":"m","Recipient":"john@example.com","Metadata":{{"mailgate_message_id":"{id}"}}}}"#
        ));
        assert_eq!(e.message_id, Some(id));
    }

    #[test]
    fn unknown_records_are_kept_and_malformed_ones_are_errors() {
        let e = one(r#"{"RecordType":"Inbound","MessageID":"m"}"#);
        assert_eq!(e.kind, EventKind::Unknown);
        assert_eq!(e.provider_type, "Inbound");
        assert!(e.key.starts_with("postmark:"));
        assert!(normalise(r#"{"MessageID":"m"}"#, &ORIGIN).is_err());
        assert!(normalise("nope", &ORIGIN).is_err());
    }
}
