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

use mailgate_core::{BounceCause, BounceKind, DeliveryEvent, EventKind, MESSAGE_ID_METADATA_KEY};
use serde_json::Value;

use crate::events::{
    EventOrigin, NormaliseError, address, blank, content_key, epoch_time, our_id, parse_object,
    report, text,
};

use super::PROVIDER;

/// Normalises one queued SendGrid event (an element of the batch array).
pub fn normalise(
    event: &str,
    origin: &EventOrigin<'_>,
) -> Result<Vec<DeliveryEvent>, NormaliseError> {
    let value = Value::Object(parse_object(PROVIDER, event)?);
    let name = text(&value, &["event"])
        .ok_or_else(|| NormaliseError::shape(PROVIDER, "the event has no `event` name"))?;
    let kind = kind_of(name);
    let key = text(&value, &["sg_event_id"])
        .map(str::to_owned)
        .unwrap_or_else(|| content_key("sendgrid", &value));
    let mut out = blank(PROVIDER, key, kind, name, origin, 0);
    if kind != EventKind::AccountNotice {
        out.recipient = address(text(&value, &["email"]));
    }
    out.provider_message_id = provider_message_id(&value);
    out.message_id = our_id(text(&value, &[MESSAGE_ID_METADATA_KEY]));
    out.occurred_at = value.get("timestamp").and_then(epoch_time);
    match kind {
        EventKind::Deferred => {
            let diagnostic = text(&value, &["response"]).or_else(|| text(&value, &["reason"]));
            let mut bounce = report(diagnostic, text(&value, &["status"]));
            bounce.provider_type = Some(name.to_owned());
            bounce.provider_kind = Some(BounceKind::Soft);
            out.bounce = Some(bounce);
        }
        EventKind::Bounced => {
            let bounce_type = text(&value, &["type"]).unwrap_or("bounce");
            let mut bounce = report(text(&value, &["reason"]), text(&value, &["status"]));
            bounce.provider_type = Some(bounce_type.to_owned());
            // A block is the receiver refusing the message rather than the address (§8 lists
            // it with the soft failures); a `bounce` is SendGrid's hard bounce.
            bounce.provider_kind = Some(if bounce_type == "blocked" {
                BounceKind::Soft
            } else {
                BounceKind::Hard
            });
            bounce.provider_cause = text(&value, &["bounce_classification"]).and_then(cause_of);
            out.bounce = Some(bounce);
        }
        EventKind::Dropped => {
            let reason = text(&value, &["reason"]);
            out.detail = reason.map(str::to_owned);
            out.provider_suppressed = reason.is_some_and(is_suppression_reason);
            if let Some(status) = text(&value, &["status"]) {
                let mut bounce = report(None, Some(status));
                bounce.provider_type = Some(name.to_owned());
                out.bounce = Some(bounce);
            }
        }
        EventKind::Clicked => out.url = text(&value, &["url"]).map(str::to_owned),
        EventKind::AccountNotice => out.detail = text(&value, &["type"]).map(str::to_owned),
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
fn provider_message_id(value: &Value) -> Option<String> {
    let prefix = |id: &str| id.split('.').next().map(str::trim).map(str::to_owned);
    if let Some(id) = text(value, &["sg_message_id"]) {
        return prefix(id).filter(|p| !p.is_empty());
    }
    let smtp_id = text(value, &["smtp-id"])?;
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
}
