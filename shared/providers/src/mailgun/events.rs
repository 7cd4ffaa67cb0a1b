//! Mailgun webhook events → [`DeliveryEvent`]s (PROVIDERS.md §3.4–3.5).
//!
//! The queued event is the `event-data` object ([`super::payload`]); a full webhook body
//! (`signature` + `event-data`) is accepted too, so a body stored before the split still reads.
//!
//! | `event` | kind | notes |
//! |---|---|---|
//! | `accepted` | sent | |
//! | `delivered` | delivered | |
//! | `failed`, `severity: temporary` | deferred | `delivery-status` as the bounce report |
//! | `failed`, `severity: permanent` | bounced | |
//! | `failed` with `reason` `suppress-*` or code 605 | dropped | `provider_suppressed` |
//! | `rejected` | dropped | `reject.reason` as detail |
//! | `complained`, `unsubscribed` | complained, unsubscribed | |
//! | `opened`, `clicked` | opened, clicked | `url` for clicks |
//! | `stored`, `list_member_uploaded`, `list_member_upload_error`, `list_uploaded` | account notice | no recipient |
//! | anything else | unknown | |
//!
//! The dedupe key is `id`. The provider message id is `message.headers.message-id` without angle
//! brackets (the form [`super::send`] stores); our id is `user-variables.mailgate_message_id`.

use mailgate_core::{BounceCause, BounceKind, DeliveryEvent, EventKind, MESSAGE_ID_METADATA_KEY};
use serde_json::Value;

use crate::events::{
    EventOrigin, NormaliseError, address, blank, content_key, epoch_time, our_id, parse_object,
    report, text,
};

use super::PROVIDER;
use super::send::strip_angle_brackets;

/// Mailgun's own code for "not delivering to a previously bounced/unsubscribed/complained
/// address": a suppression, not an SMTP reply.
const SUPPRESSED_CODE: u64 = 605;

/// Normalises one queued Mailgun event (`event-data`).
pub fn normalise(
    event: &str,
    origin: &EventOrigin<'_>,
) -> Result<Vec<DeliveryEvent>, NormaliseError> {
    let mut map = parse_object(PROVIDER, event)?;
    let value = match map.remove("event-data") {
        Some(inner @ Value::Object(_)) => inner,
        Some(_) => {
            return Err(NormaliseError::shape(
                PROVIDER,
                "event-data is not an object",
            ));
        }
        None => Value::Object(map),
    };
    let name = text(&value, &["event"])
        .ok_or_else(|| NormaliseError::shape(PROVIDER, "the event has no `event` name"))?;
    let kind = kind_of(name, &value);
    let key = text(&value, &["id"])
        .map(str::to_owned)
        .unwrap_or_else(|| content_key("mailgun", &value));
    let mut out = blank(PROVIDER, key, kind, name, origin, 0);
    if kind != EventKind::AccountNotice {
        // `rejected` names no recipient: Mailgun refused the whole message, and guessing one
        // from the `To` header would miss Bcc recipients and misname display-name forms.
        out.recipient = address(text(&value, &["recipient"]));
    }
    out.provider_message_id = text(&value, &["message", "headers", "message-id"])
        .map(strip_angle_brackets)
        .filter(|id| !id.is_empty());
    out.message_id = our_id(text(&value, &["user-variables", MESSAGE_ID_METADATA_KEY]));
    out.occurred_at = value.get("timestamp").and_then(epoch_time);
    match kind {
        EventKind::Deferred | EventKind::Bounced | EventKind::Dropped if name == "failed" => {
            let reason = text(&value, &["reason"]);
            let severity = text(&value, &["severity"]);
            let mut bounce = delivery_status(&value);
            bounce.provider_type = severity.map(str::to_owned);
            bounce.provider_kind = match severity {
                Some("permanent") => Some(BounceKind::Hard),
                Some("temporary") => Some(BounceKind::Soft),
                _ => None,
            };
            bounce.provider_cause = reason.and_then(cause_of);
            out.bounce = Some(bounce);
            if kind == EventKind::Dropped {
                out.provider_suppressed = true;
                out.detail = text(&value, &["delivery-status", "description"])
                    .or(reason)
                    .map(str::to_owned);
            } else {
                out.detail = reason.map(str::to_owned);
            }
        }
        EventKind::Dropped => {
            out.detail = text(&value, &["reject", "reason"])
                .or_else(|| text(&value, &["reject", "description"]))
                .map(str::to_owned);
        }
        EventKind::Clicked => out.url = text(&value, &["url"]).map(str::to_owned),
        EventKind::AccountNotice => {
            out.detail = text(&value, &["error", "message"]).map(str::to_owned);
        }
        _ => {}
    }
    Ok(vec![out])
}

fn kind_of(name: &str, value: &Value) -> EventKind {
    match name {
        "accepted" => EventKind::Sent,
        "delivered" => EventKind::Delivered,
        "failed" if is_suppression(value) => EventKind::Dropped,
        "failed" if text(value, &["severity"]) == Some("temporary") => EventKind::Deferred,
        "failed" => EventKind::Bounced,
        "rejected" => EventKind::Dropped,
        "complained" => EventKind::Complained,
        "unsubscribed" => EventKind::Unsubscribed,
        "opened" => EventKind::Opened,
        "clicked" => EventKind::Clicked,
        "stored" | "list_member_uploaded" | "list_member_upload_error" | "list_uploaded" => {
            EventKind::AccountNotice
        }
        _ => EventKind::Unknown,
    }
}

/// A `failed` event that Mailgun never tried to deliver because the address is on one of its
/// suppression lists.
fn is_suppression(value: &Value) -> bool {
    text(value, &["reason"]).is_some_and(|r| r.starts_with("suppress-"))
        || value
            .get("delivery-status")
            .and_then(|d| d.get("code"))
            .and_then(Value::as_u64)
            == Some(SUPPRESSED_CODE)
}

/// The `delivery-status` object as a bounce report: `message` (else `description`) is the
/// diagnostic, `enhanced-code` (else `bounce-code`) the status, `code` the reply code when it is
/// an SMTP one.
fn delivery_status(value: &Value) -> mailgate_core::BounceReport {
    let diagnostic = text(value, &["delivery-status", "message"])
        .or_else(|| text(value, &["delivery-status", "description"]));
    let status = text(value, &["delivery-status", "enhanced-code"])
        .or_else(|| text(value, &["delivery-status", "bounce-code"]));
    let mut bounce = report(diagnostic, status);
    if let Some(code) = value
        .get("delivery-status")
        .and_then(|d| d.get("code"))
        .and_then(Value::as_u64)
    {
        // Mailgun-internal codes such as 605 are not SMTP replies; leave those to the text.
        bounce.reply_code = u16::try_from(code)
            .ok()
            .filter(|c| (400..600).contains(c))
            .or(bounce.reply_code);
    }
    bounce
}

/// `failed.reason` → a cause, where it names one (`generic`, `bounce`, `old`, `hardfail` and
/// the suppressions do not).
fn cause_of(reason: &str) -> Option<BounceCause> {
    Some(match reason {
        "greylisted" => BounceCause::Deferred,
        "espblock" => BounceCause::ReputationBlock,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::{EnhancedStatus, MessageId, UnixMillis};

    const ORIGIN: EventOrigin<'static> = EventOrigin {
        receipt: "mailgun#event:x",
        index: 0,
        received_at: UnixMillis(1),
    };

    fn one(event: &str) -> DeliveryEvent {
        let mut events = normalise(event, &ORIGIN).unwrap();
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    #[test]
    fn a_permanent_failure_is_a_bounce_with_its_delivery_status() {
        let e = one(
            r#"{"severity":"permanent","timestamp":1666214138.4046676,"delivery-status":{"bounce-code":"5.1.1","message":"smtp; 550-5.1.1 The email account that you tried to reach does not exist.","code":550,"description":"I'm sorry","enhanced-code":"5.1.1"},"id":"ZDMqRgjLTDi6rQcy7K60aA","reason":"generic","message":{"headers":{"message-id":"<20221019211537.93011d31ea99c5a8@test.com>"}},"recipient":"christest123@test.com","event":"failed"}"#,
        );
        assert_eq!(e.kind, EventKind::Bounced);
        assert_eq!(e.key, "ZDMqRgjLTDi6rQcy7K60aA");
        assert_eq!(e.occurred_at, Some(UnixMillis(1_666_214_138_405)));
        // The angle brackets some payloads carry are stripped, as the send path strips them.
        assert_eq!(
            e.provider_message_id.as_deref(),
            Some("20221019211537.93011d31ea99c5a8@test.com")
        );
        let b = e.bounce.unwrap();
        assert_eq!(b.status, EnhancedStatus::parse("5.1.1").ok());
        assert_eq!(b.reply_code, Some(550));
        assert_eq!(b.provider_kind, Some(BounceKind::Hard));
        assert_eq!(b.provider_type.as_deref(), Some("permanent"));
        assert!(b.diagnostic.unwrap().contains("does not exist"));
    }

    #[test]
    fn a_temporary_failure_is_a_deferral() {
        let e = one(
            r#"{"event":"failed","severity":"temporary","id":"x","recipient":"a@example.com","reason":"greylisted","delivery-status":{"code":451,"message":"4.7.1 greylisted"}}"#,
        );
        assert_eq!(e.kind, EventKind::Deferred);
        let b = e.bounce.unwrap();
        assert_eq!(b.provider_kind, Some(BounceKind::Soft));
        assert_eq!(b.provider_cause, Some(BounceCause::Deferred));
        assert_eq!(b.reply_code, Some(451));
    }

    #[test]
    fn suppressed_failures_are_provider_drops() {
        for body in [
            r#"{"event":"failed","severity":"permanent","id":"x","recipient":"a@example.com","reason":"suppress-unsubscribe","delivery-status":{"code":605}}"#,
            r#"{"event":"failed","severity":"permanent","id":"x","recipient":"a@example.com","reason":"generic","delivery-status":{"code":605,"description":"Not delivering to previously bounced address"}}"#,
            r#"{"event":"failed","severity":"permanent","id":"x","recipient":"a@example.com","reason":"suppress-complaint"}"#,
        ] {
            let e = one(body);
            assert_eq!(e.kind, EventKind::Dropped, "{body}");
            assert!(e.provider_suppressed);
            // 605 is Mailgun's own code, not an SMTP reply.
            assert_eq!(e.bounce.unwrap().reply_code, None);
        }
    }

    #[test]
    fn our_id_comes_from_user_variables_and_a_full_body_is_unwrapped() {
        let id = MessageId::generate();
        let e = one(&format!(
            r#"{{"signature":{{"token":"t"}},"event-data":{{"event":"delivered","id":"d","recipient":"a@example.com","user-variables":{{"mailgate_message_id":"{id}"}}}}}}"#
        ));
        assert_eq!(e.kind, EventKind::Delivered);
        assert_eq!(e.message_id, Some(id));
        assert!(normalise(r#"{"event-data":[]}"#, &ORIGIN).is_err());
    }

    #[test]
    fn unknown_events_are_kept_and_list_events_are_notices() {
        let e = one(r#"{"event":"bounced-later","id":"u"}"#);
        assert_eq!(e.kind, EventKind::Unknown);
        assert_eq!(e.provider_type, "bounced-later");
        let e = one(
            r#"{"event":"list_member_upload_error","id":"k","error":{"message":"Invalid format"}}"#,
        );
        assert_eq!(e.kind, EventKind::AccountNotice);
        assert_eq!(e.detail.as_deref(), Some("Invalid format"));
        let no_id = one(r#"{"event":"opened","recipient":"a@example.com"}"#);
        assert!(no_id.key.starts_with("mailgun:"));
        assert!(!no_id.key.contains("example.com"));
    }

    #[test]
    fn malformed_events_are_errors() {
        assert!(normalise("{", &ORIGIN).is_err());
        assert!(normalise(r#"{"id":"x"}"#, &ORIGIN).is_err());
    }
}
