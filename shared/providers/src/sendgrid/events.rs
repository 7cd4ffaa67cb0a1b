//! SendGrid Event Webhook events → [`DeliveryEvent`]s (PROVIDERS.md §2.3–2.4).
//!
//! One queued event is one element of the batch array. The mapping:
//!
//! | `event` | kind | notes |
//! |---|---|---|
//! | `processed` | sent | |
//! | `delivered` | delivered | |
//! | `deferred` | deferred | `response` as the diagnostic |
//! | `bounce` | bounced | `type` `bounce` = hard, `blocked` = soft; `bounce_classification` → cause |
//! | `dropped` | dropped | `reason` as detail; suppression-list reasons set `provider_suppressed` |
//! | `spamreport` | complained | |
//! | `unsubscribe`, `group_unsubscribe` | unsubscribed | |
//! | `group_resubscribe` | resubscribed | |
//! | `open`, `click` | opened, clicked | `url` for clicks |
//! | `account_status_change` | account notice | `type` as detail, no recipient |
//! | anything else | unknown | |
//!
//! The dedupe key is `sg_event_id`. The provider message id is the `X-Message-Id` our send got
//! back, which is the part of `sg_message_id` before the first `.` (the rest is a filter/server
//! suffix); events without `sg_message_id` (async bounces) fall back to the local part of
//! `smtp-id`. Our id is the top-level `mailgate_message_id` custom arg.

use std::borrow::Cow;

use mailgate_core::{BounceCause, BounceKind, DeliveryEvent, EventKind, MESSAGE_ID_METADATA_KEY};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::events::{
    EventOrigin, NormaliseError, address, blank, content_key, epoch_time, our_id, parse_object,
    report, text,
};

use super::PROVIDER;

/// Normalises one queued SendGrid event (an element of the batch array).
///
/// The fields the mapping reads are borrowed from the event's text (strings without escapes
/// are not even copied), so no JSON tree is built for the other fields (categories, user
/// agents, custom args). An event that is not an object, not JSON, or that the borrowed read
/// does not take (a repeated key, where a full parse keeps the last) goes through the full
/// parse, which decides as it always did.
pub fn normalise(
    event: &str,
    origin: &EventOrigin<'_>,
) -> Result<Vec<DeliveryEvent>, NormaliseError> {
    if event.trim_start().starts_with('{')
        && let Ok(fields) = serde_json::from_str::<Fields<'_>>(event)
    {
        return map(&Texts::borrowed(&fields), event, origin);
    }
    let value = Value::Object(parse_object(PROVIDER, event)?);
    map(&Texts::parsed(&value), event, origin)
}

/// The top-level fields the mapping reads, as raw JSON borrowed from the event.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    sg_event_id: Option<&'a RawValue>,
    #[serde(borrow)]
    email: Option<&'a RawValue>,
    #[serde(borrow)]
    sg_message_id: Option<&'a RawValue>,
    #[serde(borrow, rename = "smtp-id")]
    smtp_id: Option<&'a RawValue>,
    // `MESSAGE_ID_METADATA_KEY` (serde needs the literal).
    #[serde(borrow)]
    mailgate_message_id: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    response: Option<&'a RawValue>,
    #[serde(borrow)]
    reason: Option<&'a RawValue>,
    #[serde(borrow)]
    status: Option<&'a RawValue>,
    #[serde(borrow, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow)]
    bounce_classification: Option<&'a RawValue>,
    #[serde(borrow)]
    url: Option<&'a RawValue>,
}

/// The fields as the mapping reads them: non-blank strings, trimmed (as [`text`] reads them),
/// and the event time.
struct Texts<'a> {
    event: Option<Cow<'a, str>>,
    sg_event_id: Option<Cow<'a, str>>,
    email: Option<Cow<'a, str>>,
    sg_message_id: Option<Cow<'a, str>>,
    smtp_id: Option<Cow<'a, str>>,
    our_id: Option<Cow<'a, str>>,
    occurred_at: Option<mailgate_core::UnixMillis>,
    response: Option<Cow<'a, str>>,
    reason: Option<Cow<'a, str>>,
    status: Option<Cow<'a, str>>,
    kind: Option<Cow<'a, str>>,
    bounce_classification: Option<Cow<'a, str>>,
    url: Option<Cow<'a, str>>,
}

impl<'a> Texts<'a> {
    fn borrowed(f: &Fields<'a>) -> Self {
        Self {
            event: raw_text(f.event),
            sg_event_id: raw_text(f.sg_event_id),
            email: raw_text(f.email),
            sg_message_id: raw_text(f.sg_message_id),
            smtp_id: raw_text(f.smtp_id),
            our_id: raw_text(f.mailgate_message_id),
            occurred_at: f
                .timestamp
                .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok())
                .and_then(|v| epoch_time(&v)),
            response: raw_text(f.response),
            reason: raw_text(f.reason),
            status: raw_text(f.status),
            kind: raw_text(f.kind),
            bounce_classification: raw_text(f.bounce_classification),
            url: raw_text(f.url),
        }
    }

    fn parsed(value: &'a Value) -> Self {
        let get = |key: &str| text(value, &[key]).map(Cow::Borrowed);
        Self {
            event: get("event"),
            sg_event_id: get("sg_event_id"),
            email: get("email"),
            sg_message_id: get("sg_message_id"),
            smtp_id: get("smtp-id"),
            our_id: get(MESSAGE_ID_METADATA_KEY),
            occurred_at: value.get("timestamp").and_then(epoch_time),
            response: get("response"),
            reason: get("reason"),
            status: get("status"),
            kind: get("type"),
            bounce_classification: get("bounce_classification"),
            url: get("url"),
        }
    }
}

/// A raw JSON value as [`text`] reads it: a non-blank string, trimmed; borrowed unless it holds
/// escapes; anything else absent.
fn raw_text(raw: Option<&RawValue>) -> Option<Cow<'_, str>> {
    let raw = raw?.get();
    if !raw.starts_with('"') {
        return None;
    }
    // A raw value is valid JSON: a string without a backslash is exactly the text between its
    // quotes, so only a string with escapes is decoded (and copied).
    let text = if raw.contains('\\') {
        Cow::Owned(serde_json::from_str::<String>(raw).ok()?.trim().to_owned())
    } else {
        Cow::Borrowed(raw[1..raw.len() - 1].trim())
    };
    (!text.is_empty()).then_some(text)
}

/// The mapping, on the fields however they were read.
fn map(
    t: &Texts<'_>,
    event: &str,
    origin: &EventOrigin<'_>,
) -> Result<Vec<DeliveryEvent>, NormaliseError> {
    let name = t
        .event
        .as_deref()
        .ok_or_else(|| NormaliseError::shape(PROVIDER, "the event has no `event` name"))?;
    let kind = kind_of(name);
    let key = match &t.sg_event_id {
        Some(id) => id.clone().into_owned(),
        None => content_key("sendgrid", &Value::Object(parse_object(PROVIDER, event)?)),
    };
    let mut out = blank(PROVIDER, key, kind, name, origin, 0);
    if kind != EventKind::AccountNotice {
        out.recipient = address(t.email.as_deref());
    }
    out.provider_message_id = provider_message_id(t);
    out.message_id = our_id(t.our_id.as_deref());
    out.occurred_at = t.occurred_at;
    let status = t.status.as_deref();
    let reason = t.reason.as_deref();
    match kind {
        EventKind::Deferred => {
            let diagnostic = t.response.as_deref().or(reason);
            let mut bounce = report(diagnostic, status);
            bounce.provider_type = Some(name.to_owned());
            bounce.provider_kind = Some(BounceKind::Soft);
            out.bounce = Some(bounce);
        }
        EventKind::Bounced => {
            let bounce_type = t.kind.as_deref().unwrap_or("bounce");
            let mut bounce = report(reason, status);
            bounce.provider_type = Some(bounce_type.to_owned());
            // A block is the receiver refusing the message rather than the address (§8 lists
            // it with the soft failures); a `bounce` is SendGrid's hard bounce.
            bounce.provider_kind = Some(if bounce_type == "blocked" {
                BounceKind::Soft
            } else {
                BounceKind::Hard
            });
            bounce.provider_cause = t.bounce_classification.as_deref().and_then(cause_of);
            out.bounce = Some(bounce);
        }
        EventKind::Dropped => {
            out.detail = reason.map(str::to_owned);
            out.provider_suppressed = reason.is_some_and(is_suppression_reason);
            if let Some(status) = status {
                let mut bounce = report(None, Some(status));
                bounce.provider_type = Some(name.to_owned());
                out.bounce = Some(bounce);
            }
        }
        EventKind::Clicked => out.url = t.url.as_deref().map(str::to_owned),
        EventKind::AccountNotice => out.detail = t.kind.as_deref().map(str::to_owned),
        _ => {}
    }
    Ok(vec![out])
}

fn kind_of(name: &str) -> EventKind {
    match name {
        "processed" => EventKind::Sent,
        "delivered" => EventKind::Delivered,
        "deferred" => EventKind::Deferred,
        "bounce" => EventKind::Bounced,
        "dropped" => EventKind::Dropped,
        "spamreport" => EventKind::Complained,
        "unsubscribe" | "group_unsubscribe" => EventKind::Unsubscribed,
        "group_resubscribe" => EventKind::Resubscribed,
        "open" => EventKind::Opened,
        "click" => EventKind::Clicked,
        "account_status_change" => EventKind::AccountNotice,
        _ => EventKind::Unknown,
    }
}

/// `bounce_classification` → a cause. `Technical Failure` and `Unclassified` name none; the
/// diagnostic decides those.
fn cause_of(classification: &str) -> Option<BounceCause> {
    Some(match classification {
        "Invalid Address" => BounceCause::UserUnknown,
        "Mailbox Unavailable" => BounceCause::MailboxDisabled,
        "Reputation" => BounceCause::ReputationBlock,
        "Content" => BounceCause::SpamContent,
        "Frequency or Volume Too High" => BounceCause::RateLimited,
        _ => return None,
    })
}

/// Whether a `dropped` reason says the address is on one of SendGrid's own suppression lists
/// (bounces, blocks, spam reports, global or group unsubscribes), as opposed to a content or
/// request problem.
fn is_suppression_reason(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    [
        "bounced address",
        "unsubscribed address",
        "spam reporting address",
        "blocked address",
        "group unsubscribe",
        "global unsubscribe",
    ]
    .iter()
    .any(|r| reason.contains(r))
}

/// The `X-Message-Id` of the send: `sg_message_id` up to its first `.` (the doc's deferred
/// example has a leading space, hence the trim), else the local part of `smtp-id`.
fn provider_message_id(t: &Texts<'_>) -> Option<String> {
    let prefix = |id: &str| id.split('.').next().map(str::trim).map(str::to_owned);
    if let Some(id) = t.sg_message_id.as_deref() {
        return prefix(id).filter(|p| !p.is_empty());
    }
    let smtp_id = t.smtp_id.as_deref()?;
    let inner = smtp_id.trim_start_matches('<').trim_end_matches('>');
    let local = inner.split('@').next()?;
    prefix(local).filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::{EnhancedStatus, MessageId, UnixMillis};

    const ORIGIN: EventOrigin<'static> = EventOrigin {
        receipt: "sendgrid#sha256:x",
        index: 3,
        received_at: UnixMillis(7),
    };

    fn one(event: &str) -> DeliveryEvent {
        let mut events = normalise(event, &ORIGIN).unwrap();
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    #[test]
    fn a_hard_bounce_carries_its_status_reason_and_classification() {
        let e = one(
            r#"{"email":"Example@Test.com","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","bounce_classification":"Invalid Address","event":"bounce","sg_event_id":"6g4ZI7SA-xmRDv57GoPIPw==","sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0","reason":"500 unknown recipient","status":"5.0.0","type":"bounce"}"#,
        );
        assert_eq!(e.kind, EventKind::Bounced);
        assert_eq!(e.key, "6g4ZI7SA-xmRDv57GoPIPw==");
        assert_eq!(
            e.provider_message_id.as_deref(),
            Some("LRzXl_NHStOGhQ4kofSm_A")
        );
        assert_eq!(e.recipient.unwrap().as_str(), "Example@test.com");
        assert_eq!(e.occurred_at, Some(UnixMillis(1_513_299_569_000)));
        assert_eq!(e.source.index, 3);
        assert_eq!(e.received_at, UnixMillis(7));
        let b = e.bounce.unwrap();
        assert_eq!(b.status, EnhancedStatus::parse("5.0.0").ok());
        assert_eq!(b.reply_code, Some(500));
        assert_eq!(b.diagnostic.as_deref(), Some("500 unknown recipient"));
        assert_eq!(b.provider_type.as_deref(), Some("bounce"));
        assert_eq!(b.provider_kind, Some(BounceKind::Hard));
        assert_eq!(b.provider_cause, Some(BounceCause::UserUnknown));
    }

    #[test]
    fn a_block_is_a_soft_bounce() {
        let e = one(
            r#"{"email":"a@example.com","event":"bounce","type":"blocked","sg_event_id":"e","reason":"550 5.7.1 blocked using Spamhaus","bounce_classification":"Reputation"}"#,
        );
        let b = e.bounce.unwrap();
        assert_eq!(b.provider_kind, Some(BounceKind::Soft));
        assert_eq!(b.provider_type.as_deref(), Some("blocked"));
        assert_eq!(b.provider_cause, Some(BounceCause::ReputationBlock));
        assert_eq!(b.status, EnhancedStatus::parse("5.7.1").ok());
    }

    #[test]
    fn drops_of_listed_addresses_are_provider_suppressions() {
        for (reason, suppressed) in [
            ("Bounced Address", true),
            ("Unsubscribed Address", true),
            ("Spam Reporting Address", true),
            ("Spam Content", false),
            ("Invalid SMTPAPI header", false),
        ] {
            let e = one(&format!(
                r#"{{"email":"a@example.com","event":"dropped","sg_event_id":"e","reason":"{reason}"}}"#
            ));
            assert_eq!(e.kind, EventKind::Dropped);
            assert_eq!(e.provider_suppressed, suppressed, "{reason}");
            assert_eq!(e.detail.as_deref(), Some(reason));
        }
    }

    #[test]
    fn the_message_id_is_the_x_message_id_prefix() {
        let e = one(
            r#"{"email":"a@example.com","event":"deferred","sg_event_id":"e","sg_message_id":" 14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0","response":"400 try again later"}"#,
        );
        assert_eq!(e.provider_message_id.as_deref(), Some("14c5d75ce93"));
        assert_eq!(e.bounce.unwrap().reply_code, Some(400));
        // An async bounce has no sg_message_id: the smtp-id local part stands in.
        let e = one(
            r#"{"email":"a@example.com","event":"bounce","sg_event_id":"e","smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>"}"#,
        );
        assert_eq!(
            e.provider_message_id.as_deref(),
            Some("LRzXl_NHStOGhQ4kofSm_A")
        );
    }

    #[test]
    fn our_id_comes_from_the_custom_arg() {
        let id = MessageId::generate();
        let e = one(&format!(
            r#"{{"email":"a@example.com","event":"open","sg_event_id":"e","mailgate_message_id":"{id}"}}"#
        ));
        assert_eq!(e.message_id, Some(id));
        let e = one(
            r#"{"email":"a@example.com","event":"open","sg_event_id":"e","mailgate_message_id":"nope"}"#,
        );
        assert_eq!(e.message_id, None);
    }

    #[test]
    fn unknown_events_are_kept_and_missing_ids_key_by_content() {
        let raw = r#"{"email":"not an address","event":"machine_learning_open","timestamp":"x"}"#;
        let e = one(raw);
        assert_eq!(e.kind, EventKind::Unknown);
        assert_eq!(e.provider_type, "machine_learning_open");
        assert_eq!(e.recipient, None);
        assert_eq!(e.occurred_at, None);
        assert!(e.key.starts_with("sendgrid:"));
        let reordered =
            r#"{"timestamp":"x","event":"machine_learning_open","email":"not an address"}"#;
        assert_eq!(one(reordered).key, e.key);
    }

    #[test]
    fn account_notices_name_no_recipient() {
        let e = one(
            r#"{"event":"account_status_change","sg_event_id":"MjEz","timestamp":1709142428,"type":"compliance_suspend","email":"ops@example.com"}"#,
        );
        assert_eq!(e.kind, EventKind::AccountNotice);
        assert_eq!(e.recipient, None);
        assert_eq!(e.detail.as_deref(), Some("compliance_suspend"));
    }

    #[test]
    fn malformed_events_are_errors() {
        assert!(matches!(
            normalise("[1", &ORIGIN),
            Err(NormaliseError::NotJson { .. })
        ));
        assert!(matches!(
            normalise("[]", &ORIGIN),
            Err(NormaliseError::Shape { .. })
        ));
        assert!(matches!(
            normalise(r#"{"email":"a@example.com"}"#, &ORIGIN),
            Err(NormaliseError::Shape { .. })
        ));
    }

    #[test]
    fn the_borrowed_read_maps_every_event_as_the_full_parse_does() {
        let events = [
            r#"{"email":" Example@Test.com ","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","bounce_classification":"Invalid Address","event":"bounce","sg_event_id":"6g4ZI7SA-xmRDv57GoPIPw==","sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filter-9.0","reason":"500 unknown recipient","status":"5.0.0","type":"bounce","category":["a","b"],"extra":{"n":[1,2.5,null,true]}}"#,
            r#"{"email":"a@example.com","event":"deferred","response":"421 4.7.0 Try \"again\" later \u00e9","sg_event_id":"d","timestamp":"1513299569.626","attempt":"2"}"#,
            r#"{"email":"a@example.com","event":"dropped","reason":"Bounced Address","status":"5.1.1","sg_event_id":"x"}"#,
            r#"{"email":"a@example.com","event":"click","url":"https://example.com/?a=1&b=\/2","smtp-id":"<abc.def@host>","mailgate_message_id":"msg_00000000000000000000000000","sg_event_id":"  "}"#,
            r#"{"event":"account_status_change","type":"compliance_suspend","sg_event_id":7,"email":5,"timestamp":1e3}"#,
            r#"{"event":"group_resubscribe","email":"a@example.com","timestamp":1700000000123}"#,
        ];
        for event in events {
            let fields: Fields<'_> = serde_json::from_str(event).unwrap();
            let value = Value::Object(parse_object(PROVIDER, event).unwrap());
            let borrowed = map(&Texts::borrowed(&fields), event, &ORIGIN).unwrap();
            let parsed = map(&Texts::parsed(&value), event, &ORIGIN).unwrap();
            assert_eq!(borrowed, parsed, "{event}");
            assert_eq!(normalise(event, &ORIGIN).unwrap(), parsed, "{event}");
        }
        // A repeated key: the full parse keeps the last, as before.
        let twice = r#"{"event":"open","event":"click","sg_event_id":"r","url":"u"}"#;
        assert_eq!(one(twice).kind, EventKind::Clicked);
    }
}
