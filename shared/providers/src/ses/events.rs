//! Amazon SES notifications → [`DeliveryEvent`]s (PROVIDERS.md §1.5–1.7), from SNS or EventBridge.
//!
//! Through SNS the queued event is the whole envelope; its `Message` is a JSON string holding an
//! identity notification (`notificationType`) or an event-publishing record (`eventType`).
//! Through EventBridge, `detail` is the event-publishing record. One notification may list
//! several recipients, so it becomes one event per recipient (`recipient_index` = position),
//! taken from `bounce.bouncedRecipients`, `complaint.complainedRecipients`, `delivery.recipients`
//! or `deliveryDelay.delayedRecipients`, else `mail.destination` (for `Subscription`, whose
//! object names no recipient, only when the destination is a single address).
//!
//! | type | kind | notes |
//! |---|---|---|
//! | `Send` | sent | |
//! | `Delivery` | delivered | |
//! | `DeliveryDelay` | deferred | recipient `status`/`diagnosticCode` as the report, `delayType` as detail |
//! | `Bounce` | bounced | `bounceType`/`bounceSubType` → provider kind and cause |
//! | `Bounce` with sub-type `OnAccountSuppressionList`/`Suppressed` | dropped | `provider_suppressed` |
//! | `Complaint` | complained | `complaintFeedbackType` as detail and `complaint_feedback`; `not-spam`/`auth-failure` do not suppress |
//! | `Complaint` with sub-type `OnAccountSuppressionList` | dropped | `provider_suppressed` (SES never sent it) |
//! | `Reject` | dropped | `reject.reason` as detail |
//! | `Open`, `Click` | opened, clicked | `click.link` as the URL |
//! | `Rendering Failure` | rendering failed | `failure.errorMessage` as detail |
//! | `Subscription` | unsubscribed if `unsubscribeAll` or a topic is `OptOut`, else resubscribed | recipient only when `mail.destination` has exactly one |
//! | anything else | unknown | |
//!
//! The dedupe key of each recipient's event is a composite of the SNS `MessageId` (or the
//! EventBridge `id`) and the recipient, hashed. The provider message id is `mail.messageId`; our
//! id is the `mailgate_message_id` tag, else the `X-Mailgate-Message-Id` header.

use mailgate_core::{
    BounceCause, BounceKind, ComplaintFeedback, DeliveryEvent, EventKind, MESSAGE_ID_HEADER,
    MESSAGE_ID_METADATA_KEY, MessageId, UnixMillis,
};
use serde_json::Value;

use crate::events::{
    EventOrigin, NormaliseError, address, blank, content_key, our_id, parse_object, report, text,
    text_time,
};
use crate::webhook::composite_key;

use super::PROVIDER;

/// The longest free-text notice kept in `detail`.
const MAX_NOTICE_LEN: usize = 500;

/// Normalises one queued SNS notification envelope.
pub fn normalise(
    event: &str,
    origin: &EventOrigin<'_>,
) -> Result<Vec<DeliveryEvent>, NormaliseError> {
    let envelope = Value::Object(parse_object(PROVIDER, event)?);
    match text(&envelope, &["Type"]) {
        Some("Notification") => {}
        Some(other) => {
            return Err(NormaliseError::shape(
                PROVIDER,
                format!("an SNS {other} carries no SES event"),
            ));
        }
        None => {
            return Err(NormaliseError::shape(
                PROVIDER,
                "not an SNS envelope (no `Type`)",
            ));
        }
    }
    let message = envelope
        .get("Message")
        .and_then(Value::as_str)
        .ok_or_else(|| NormaliseError::shape(PROVIDER, "the SNS envelope has no `Message`"))?;
    let id = text(&envelope, &["MessageId"])
        .map(str::to_owned)
        .unwrap_or_else(|| content_key("sns", &envelope));
    let envelope_time = text(&envelope, &["Timestamp"]).and_then(text_time);
    let record = match serde_json::from_str::<Value>(message) {
        Ok(record @ Value::Object(_)) => record,
        // SES publishes a plain-text "Successfully validated SNS topic…" when a topic is set up:
        // an account notice, not an error.
        _ => {
            let mut notice = blank(
                PROVIDER,
                composite_key("sns", &[&id]),
                EventKind::AccountNotice,
                "Notification",
                origin,
                0,
            );
            notice.occurred_at = envelope_time;
            notice.detail = Some(message.trim().chars().take(MAX_NOTICE_LEN).collect());
            return Ok(vec![notice]);
        }
    };
    let name = record_type(&record)
        .ok_or_else(|| NormaliseError::shape(PROVIDER, "the SES record names no event type"))?;
    Ok(record_events(
        &record,
        name,
        Transport {
            label: "sns",
            id: &id,
            time: envelope_time,
        },
        origin,
    ))
}

/// Normalises an SES event delivered by EventBridge; see [`crate::events::normalise_eventbridge`].
pub fn normalise_eventbridge(
    envelope: &str,
    received_at: UnixMillis,
) -> Result<Vec<DeliveryEvent>, NormaliseError> {
    let envelope = Value::Object(parse_object(PROVIDER, envelope)?);
    if text(&envelope, &["source"]) != Some("aws.ses") {
        return Err(NormaliseError::shape(
            PROVIDER,
            "the EventBridge event's source is not aws.ses",
        ));
    }
    let id = text(&envelope, &["id"])
        .map(str::to_owned)
        .unwrap_or_else(|| content_key("eventbridge", &envelope));
    let receipt = format!("eventbridge#{id}");
    let origin = EventOrigin {
        receipt: &receipt,
        index: 0,
        received_at,
    };
    let detail_type = text(&envelope, &["detail-type"]);
    let time = text(&envelope, &["time"]).and_then(text_time);
    let detail = envelope.get("detail").filter(|d| d.is_object());
    let name = detail
        .and_then(record_type)
        .or_else(|| detail_type.and_then(type_of_detail_type));
    match (detail, name) {
        (Some(record), Some(name)) => Ok(record_events(
            record,
            name,
            Transport {
                label: "eventbridge",
                id: &id,
                time,
            },
            &origin,
        )),
        // Account-level events (sending status, advisor) and detail types we do not know.
        _ => {
            let detail_type = detail_type.ok_or_else(|| {
                NormaliseError::shape(PROVIDER, "the EventBridge event has no detail-type")
            })?;
            let kind = if detail_type.starts_with("Email ") {
                EventKind::Unknown
            } else {
                EventKind::AccountNotice
            };
            let mut out = blank(
                PROVIDER,
                composite_key("eventbridge", &[&id]),
                kind,
                detail_type,
                &origin,
                0,
            );
            out.occurred_at = time;
            Ok(vec![out])
        }
    }
}

/// Normalises an SES event-publishing record that reached the events queue by another road
/// than SNS or EventBridge (the simulator's events, `crate::simulator`): `label` and `id` make
/// each recipient's dedupe key, `time` is the fallback event time. `None` when the record names
/// no event type. The events carry SES as their provider; the caller restamps them.
pub(crate) fn normalise_record(
    record: &Value,
    label: &'static str,
    id: &str,
    time: Option<UnixMillis>,
    origin: &EventOrigin<'_>,
) -> Option<Vec<DeliveryEvent>> {
    let name = record_type(record)?;
    Some(record_events(
        record,
        name,
        Transport { label, id, time },
        origin,
    ))
}

/// Where the record came from, for its keys and its fallback time.
struct Transport<'a> {
    /// `sns` or `eventbridge`: the key label.
    label: &'static str,
    /// The SNS `MessageId` or EventBridge `id`.
    id: &'a str,
    /// The envelope's own time, used when the record has none.
    time: Option<UnixMillis>,
}

/// `eventType` (event publishing) or `notificationType` (identity notifications).
fn record_type(record: &Value) -> Option<&str> {
    text(record, &["eventType"]).or_else(|| text(record, &["notificationType"]))
}

/// The record type an EventBridge `detail-type` stands for.
fn type_of_detail_type(detail_type: &str) -> Option<&'static str> {
    Some(match detail_type {
        "Email Sent" => "Send",
        "Email Delivered" => "Delivery",
        "Email Bounced" => "Bounce",
        "Email Complaint Received" => "Complaint",
        "Email Rejected" => "Reject",
        "Email Opened" => "Open",
        "Email Clicked" => "Click",
        "Email Rendering Failed" => "Rendering Failure",
        "Email Delivery Delayed" => "DeliveryDelay",
        "Email Subscribed" => "Subscription",
        _ => return None,
    })
}

/// The per-type object of a record (`bounce`, `deliveryDelay`, …).
fn type_object(name: &str) -> Option<&'static str> {
    Some(match name {
        "Bounce" => "bounce",
        "Complaint" => "complaint",
        "Delivery" => "delivery",
        "Send" => "send",
        "Reject" => "reject",
        "Open" => "open",
        "Click" => "click",
        "Rendering Failure" => "failure",
        "DeliveryDelay" => "deliveryDelay",
        "Subscription" => "subscription",
        _ => return None,
    })
}

/// One recipient of a record: its address as written and, for bounces and delays, its own
/// object (`status`, `diagnosticCode`).
struct Recipient<'a> {
    address: Option<&'a str>,
    report: Option<&'a Value>,
}

fn recipients<'a>(record: &'a Value, name: &str) -> Vec<Recipient<'a>> {
    let list = |path: &[&str]| -> Vec<Recipient<'a>> {
        let mut at = record;
        for key in path {
            match at.get(key) {
                Some(next) => at = next,
                None => return Vec::new(),
            }
        }
        at.as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Recipient {
                            address: Some(s.as_str()),
                            report: None,
                        },
                        other => Recipient {
                            address: text(other, &["emailAddress"]),
                            report: Some(other),
                        },
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let own = match name {
        "Bounce" => list(&["bounce", "bouncedRecipients"]),
        "Complaint" => list(&["complaint", "complainedRecipients"]),
        "Delivery" => list(&["delivery", "recipients"]),
        "DeliveryDelay" => list(&["deliveryDelay", "delayedRecipients"]),
        _ => Vec::new(),
    };
    let mut all = if !own.is_empty() {
        own
    } else if name == "Subscription" {
        // The subscription object names no recipient. With one destination the change is that
        // recipient's; with several SES does not say whose it is, and naming them all would
        // unsubscribe every recipient of the message, so the event names no one.
        let destination = list(&["mail", "destination"]);
        if destination.len() == 1 {
            destination
        } else {
            Vec::new()
        }
    } else {
        list(&["mail", "destination"])
    };
    if all.is_empty() {
        // No recipient named anywhere: still one event, so nothing is dropped.
        all.push(Recipient {
            address: None,
            report: None,
        });
    }
    all
}

fn record_events(
    record: &Value,
    name: &str,
    transport: Transport<'_>,
    origin: &EventOrigin<'_>,
) -> Vec<DeliveryEvent> {
    let object = type_object(name);
    let body = object.and_then(|o| record.get(o)).unwrap_or(&Value::Null);
    let occurred_at = text(body, &["timestamp"])
        .or_else(|| text(record, &["mail", "timestamp"]))
        .and_then(text_time)
        .or(transport.time);
    let provider_message_id = text(record, &["mail", "messageId"]).map(str::to_owned);
    let message_id = message_id(record);
    let kind = kind_of(name, body);
    recipients(record, name)
        .into_iter()
        .enumerate()
        .map(|(index, recipient)| {
            let index_text = index.to_string();
            let key = composite_key(
                transport.label,
                &[transport.id, recipient.address.unwrap_or(&index_text)],
            );
            let mut out = blank(PROVIDER, key, kind, name, origin, index);
            out.recipient = address(recipient.address);
            out.provider_message_id = provider_message_id.clone();
            out.message_id = message_id.clone();
            out.occurred_at = occurred_at;
            details(&mut out, name, body, recipient.report);
            out
        })
        .collect()
}

fn kind_of(name: &str, body: &Value) -> EventKind {
    match name {
        "Send" => EventKind::Sent,
        "Delivery" => EventKind::Delivered,
        "DeliveryDelay" => EventKind::Deferred,
        "Bounce" if is_suppressed_bounce(body) => EventKind::Dropped,
        "Bounce" => EventKind::Bounced,
        "Complaint" if is_suppressed_complaint(body) => EventKind::Dropped,
        "Complaint" => EventKind::Complained,
        "Reject" => EventKind::Dropped,
        "Open" => EventKind::Opened,
        "Click" => EventKind::Clicked,
        "Rendering Failure" => EventKind::RenderingFailed,
        "Subscription" if is_unsubscribe(body) => EventKind::Unsubscribed,
        "Subscription" => EventKind::Resubscribed,
        _ => EventKind::Unknown,
    }
}

/// A bounce SES made up itself because the address is on its suppression list (account-level,
/// or the old global one): it never tried to deliver.
fn is_suppressed_bounce(bounce: &Value) -> bool {
    matches!(
        text(bounce, &["bounceSubType"]),
        Some("OnAccountSuppressionList" | "Suppressed")
    )
}

/// A complaint sub-type `OnAccountSuppressionList`: SES accepted the message but did not send it
/// because the address is on the account suppression list for a complaint.
fn is_suppressed_complaint(complaint: &Value) -> bool {
    text(complaint, &["complaintSubType"]) == Some("OnAccountSuppressionList")
}

/// Whether the new preferences opt out of everything or of any topic.
fn is_unsubscribe(subscription: &Value) -> bool {
    let new = subscription.get("newTopicPreferences");
    let all = new
        .and_then(|p| p.get("unsubscribeAll"))
        .and_then(Value::as_bool)
        == Some(true);
    let topic = new
        .and_then(|p| p.get("topicSubscriptionStatus"))
        .and_then(Value::as_array)
        .is_some_and(|topics| {
            topics
                .iter()
                .any(|t| text(t, &["subscriptionStatus"]) == Some("OptOut"))
        });
    all || topic
}

fn details(out: &mut DeliveryEvent, name: &str, body: &Value, recipient: Option<&Value>) {
    let recipient = recipient.unwrap_or(&Value::Null);
    let diagnostic = text(recipient, &["diagnosticCode"]);
    let status = text(recipient, &["status"]);
    match name {
        "Bounce" => {
            let bounce_type = text(body, &["bounceType"]);
            let sub_type = text(body, &["bounceSubType"]);
            let mut bounce = report(diagnostic, status);
            bounce.provider_type = match (bounce_type, sub_type) {
                (Some(t), Some(s)) => Some(format!("{t}/{s}")),
                (t, s) => t.or(s).map(str::to_owned),
            };
            bounce.provider_kind = match bounce_type {
                Some("Permanent") => Some(BounceKind::Hard),
                Some("Transient") => Some(BounceKind::Soft),
                _ => None,
            };
            bounce.provider_cause = bounce_cause(bounce_type, sub_type);
            out.bounce = Some(bounce);
            if out.kind == EventKind::Dropped {
                out.provider_suppressed = true;
                out.detail = sub_type.map(str::to_owned);
            }
        }
        "Complaint" if out.kind == EventKind::Dropped => {
            out.provider_suppressed = true;
            out.detail = text(body, &["complaintSubType"]).map(str::to_owned);
        }
        "Complaint" => {
            let feedback_type = text(body, &["complaintFeedbackType"]);
            out.detail = feedback_type.map(str::to_owned);
            // `not-spam` and `auth-failure` reports do not suppress (ComplaintFeedback::suppresses).
            out.complaint_feedback = feedback_type.map(ComplaintFeedback::parse);
        }
        "Reject" => out.detail = text(body, &["reason"]).map(str::to_owned),
        "Click" => out.url = text(body, &["link"]).map(str::to_owned),
        "Rendering Failure" => out.detail = text(body, &["errorMessage"]).map(str::to_owned),
        "DeliveryDelay" => {
            let delay_type = text(body, &["delayType"]);
            let mut bounce = report(diagnostic, status);
            bounce.provider_type = delay_type.map(str::to_owned);
            bounce.provider_kind = Some(BounceKind::Soft);
            bounce.provider_cause = delay_type.and_then(delay_cause);
            out.bounce = Some(bounce);
            out.detail = delay_type.map(str::to_owned);
        }
        "Subscription" => out.detail = text(body, &["contactList"]).map(str::to_owned),
        _ => {}
    }
}

/// `bounceType`/`bounceSubType` → a cause, where SES names one (`General` and `Undetermined`
/// leave it to the diagnostic).
fn bounce_cause(bounce_type: Option<&str>, sub_type: Option<&str>) -> Option<BounceCause> {
    Some(match (bounce_type?, sub_type?) {
        ("Permanent", "NoEmail") => BounceCause::UserUnknown,
        ("Transient", "MailboxFull") => BounceCause::MailboxFull,
        ("Transient", "MessageTooLarge") => BounceCause::Policy,
        ("Transient", "ContentRejected") => BounceCause::SpamContent,
        ("Transient", "AttachmentRejected") => BounceCause::Policy,
        _ => return None,
    })
}

/// `delayType` → a cause, where it names one.
fn delay_cause(delay_type: &str) -> Option<BounceCause> {
    Some(match delay_type {
        "MailboxFull" => BounceCause::MailboxFull,
        "SpamDetected" => BounceCause::SpamContent,
        "TransientCommunicationFailure" => BounceCause::Network,
        "IPFailure" => BounceCause::ReputationBlock,
        "SendingDeferral" => BounceCause::Deferred,
        "RecipientServerError" | "InternalFailure" | "BYOIPHostNameLookupUnavailable" => {
            BounceCause::Other
        }
        _ => return None,
    })
}

/// Our id: the `mailgate_message_id` tag (event publishing), else our header (when headers are
/// included in notifications).
fn message_id(record: &Value) -> Option<MessageId> {
    let from_tag = record
        .get("mail")
        .and_then(|m| m.get("tags"))
        .and_then(|t| t.get(MESSAGE_ID_METADATA_KEY))
        .and_then(Value::as_array)
        .and_then(|values| values.first())
        .and_then(|v| our_id(v.as_str()));
    from_tag.or_else(|| {
        record
            .get("mail")
            .and_then(|m| m.get("headers"))
            .and_then(Value::as_array)?
            .iter()
            .filter(|h| {
                text(h, &["name"]).is_some_and(|n| n.eq_ignore_ascii_case(MESSAGE_ID_HEADER))
            })
            .find_map(|h| our_id(text(h, &["value"])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::EnhancedStatus;
    use serde_json::json;

    const ORIGIN: EventOrigin<'static> = EventOrigin {
        receipt: "ses#message:x",
        index: 0,
        received_at: UnixMillis(1),
    };

    fn sns(message: &Value) -> String {
        json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses",
            "Message": message.to_string(),
            "Timestamp": "2016-01-27T15:00:00.000Z",
        })
        .to_string()
    }

    fn bounce(sub_type: &str, recipients: Value) -> Value {
        json!({
            "notificationType": "Bounce",
            "bounce": {"bounceType": "Permanent", "bounceSubType": sub_type,
                       "bouncedRecipients": recipients, "timestamp": "2016-01-27T14:59:38.237Z"},
            "mail": {"timestamp": "2016-01-27T14:59:00Z", "messageId": "0000-ses-id",
                     "destination": ["jane@example.com", "mary@example.com", "richard@example.com"]},
        })
    }

    #[test]
    fn a_bounce_for_two_recipients_gives_two_events_with_their_own_keys() {
        let events = normalise(
            &sns(&bounce(
                "NoEmail",
                json!([
                    {"emailAddress": "jane@example.com", "status": "5.1.1",
                     "diagnosticCode": "smtp; 550 5.1.1 <jane@example.com>... User"},
                    {"emailAddress": "richard@example.com"}
                ]),
            )),
            &ORIGIN,
        )
        .unwrap();
        assert_eq!(events.len(), 2);
        assert_ne!(events[0].key, events[1].key);
        assert!(events.iter().all(|e| !e.key.contains("example.com")));
        assert_eq!(events[1].source.recipient_index, 1);
        assert_eq!(
            events[1].recipient.as_ref().unwrap().as_str(),
            "richard@example.com"
        );
        let b = events[0].bounce.as_ref().unwrap();
        assert_eq!(b.status, EnhancedStatus::parse("5.1.1").ok());
        assert_eq!(b.reply_code, Some(550));
        assert_eq!(b.provider_type.as_deref(), Some("Permanent/NoEmail"));
        assert_eq!(b.provider_kind, Some(BounceKind::Hard));
        assert_eq!(b.provider_cause, Some(BounceCause::UserUnknown));
        assert_eq!(events[0].occurred_at, text_time("2016-01-27T14:59:38.237Z"));
        assert_eq!(
            events[0].provider_message_id.as_deref(),
            Some("0000-ses-id")
        );
        // Redelivery of the same SNS message keys the same.
        let again = normalise(
            &sns(&bounce(
                "NoEmail",
                json!([{"emailAddress": "jane@example.com"}, {"emailAddress": "richard@example.com"}]),
            )),
            &ORIGIN,
        )
        .unwrap();
        assert_eq!(again[0].key, events[0].key);
    }

    #[test]
    fn suppression_list_bounces_and_complaints_are_provider_drops() {
        for sub_type in ["OnAccountSuppressionList", "Suppressed"] {
            let events = normalise(
                &sns(&bounce(
                    sub_type,
                    json!([{"emailAddress": "jane@example.com"}]),
                )),
                &ORIGIN,
            )
            .unwrap();
            assert_eq!(events[0].kind, EventKind::Dropped);
            assert!(events[0].provider_suppressed);
            assert_eq!(events[0].detail.as_deref(), Some(sub_type));
        }
        let complaint = json!({"eventType": "Complaint",
            "complaint": {"complaintSubType": "OnAccountSuppressionList",
                          "complainedRecipients": [{"emailAddress": "a@example.com"}]},
            "mail": {"messageId": "m"}});
        let e = &normalise(&sns(&complaint), &ORIGIN).unwrap()[0];
        assert_eq!(e.kind, EventKind::Dropped);
        assert!(e.provider_suppressed);
    }

    fn complaint(feedback_type: Option<&str>) -> Value {
        let mut complaint = json!({"complainedRecipients": [{"emailAddress": "jane@example.com"}],
            "timestamp": "2016-01-27T14:59:38.237Z", "feedbackId": "f-1"});
        if let Some(t) = feedback_type {
            complaint["complaintFeedbackType"] = json!(t);
            complaint["userAgent"] = json!("Mail Feedback Reporter");
        }
        json!({"notificationType": "Complaint", "complaint": complaint,
               "mail": {"messageId": "m", "destination": ["jane@example.com"]}})
    }

    #[test]
    fn complaints_suppress_by_their_rfc_5965_feedback_type() {
        use mailgate_core::{EventEffect, RecipientStatus, SuppressionReason};
        let suppress = EventEffect::Suppress(SuppressionReason::Complaint);
        for (feedback_type, effect) in [
            (None, suppress),
            (Some("abuse"), suppress),
            (Some("fraud"), suppress),
            (Some("virus"), suppress),
            (Some("other"), suppress),
            (Some("a-type-from-the-future"), suppress),
            (Some("not-spam"), EventEffect::None),
            (Some("auth-failure"), EventEffect::None),
        ] {
            let e = &normalise(&sns(&complaint(feedback_type)), &ORIGIN).unwrap()[0];
            assert_eq!(e.kind, EventKind::Complained, "{feedback_type:?}");
            assert_eq!(e.effect(), effect, "{feedback_type:?}");
            // The feedback type is recorded in the event.
            assert_eq!(e.detail.as_deref(), feedback_type, "{feedback_type:?}");
            assert_eq!(
                e.complaint_feedback,
                feedback_type.map(mailgate_core::ComplaintFeedback::parse),
                "{feedback_type:?}"
            );
            let complained = (effect == suppress).then_some(RecipientStatus::Complained);
            assert_eq!(e.recipient_status(), complained, "{feedback_type:?}");
        }
    }

    fn subscription(destination: Value) -> Value {
        json!({"eventType": "Subscription",
            "mail": {"messageId": "m", "destination": destination},
            "subscription": {"contactList": "News", "timestamp": "2022-01-12T01:00:17.910Z",
                "source": "UnsubscribeHeader",
                "newTopicPreferences": {"unsubscribeAll": true, "topicSubscriptionStatus": []},
                "oldTopicPreferences": {"unsubscribeAll": false, "topicSubscriptionStatus": []}}})
    }

    #[test]
    fn a_subscription_event_names_only_the_recipient_ses_names() {
        // One destination: the documented shape; the change is that recipient's.
        let events = normalise(&sns(&subscription(json!(["jane@example.com"]))), &ORIGIN).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Unsubscribed);
        assert_eq!(
            events[0].recipient.as_ref().map(|r| r.as_str()),
            Some("jane@example.com")
        );
        assert_eq!(events[0].detail.as_deref(), Some("News"));
        // Several destinations: the subscription object does not say whose change it is, so no
        // recipient is named (nobody is unsubscribed), and the event is still kept.
        let events = normalise(
            &sns(&subscription(json!([
                "jane@example.com",
                "mary@example.com",
                "richard@example.com"
            ]))),
            &ORIGIN,
        )
        .unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, EventKind::Unsubscribed);
        assert_eq!(events[0].recipient, None);
    }

    #[test]
    fn our_id_comes_from_the_tag_or_the_header() {
        let id = MessageId::generate();
        let tagged = json!({"eventType": "Send", "send": {},
            "mail": {"messageId": "m", "destination": ["a@example.com"],
                     "tags": {"mailgate_message_id": [id.as_str()]}}});
        assert_eq!(
            normalise(&sns(&tagged), &ORIGIN).unwrap()[0].message_id,
            Some(id.clone())
        );
        let headed = json!({"notificationType": "Delivery",
            "delivery": {"recipients": ["a@example.com"], "timestamp": "2018-10-08T14:05:45 +0000"},
            "mail": {"messageId": "m", "headers": [{"name": "x-mailgate-message-id", "value": id.as_str()}]}});
        let e = &normalise(&sns(&headed), &ORIGIN).unwrap()[0];
        assert_eq!(e.message_id, Some(id));
        assert_eq!(e.occurred_at, Some(UnixMillis(1_539_007_545_000)));
    }

    #[test]
    fn unknown_types_and_text_notices_are_kept() {
        let e = &normalise(
            &sns(&json!({"eventType": "Teleport", "mail": {"destination": ["a@example.com"]}})),
            &ORIGIN,
        )
        .unwrap()[0];
        assert_eq!(e.kind, EventKind::Unknown);
        assert_eq!(e.provider_type, "Teleport");
        let text_notice = json!({"Type": "Notification", "MessageId": "x",
            "Message": "Successfully validated SNS topic for Amazon SES event publishing."})
        .to_string();
        let e = &normalise(&text_notice, &ORIGIN).unwrap()[0];
        assert_eq!(e.kind, EventKind::AccountNotice);
        assert!(e.detail.as_deref().unwrap().starts_with("Successfully"));
    }

    #[test]
    fn envelopes_that_are_not_notifications_are_errors() {
        assert!(normalise("{", &ORIGIN).is_err());
        assert!(normalise(r#"{"Type":"SubscriptionConfirmation"}"#, &ORIGIN).is_err());
        assert!(normalise(r#"{"Type":"Notification"}"#, &ORIGIN).is_err());
        assert!(normalise(r#"{"Type":"Notification","Message":"{}"}"#, &ORIGIN).is_err());
        assert!(normalise(r#"{"eventType":"Bounce"}"#, &ORIGIN).is_err());
    }

    #[test]
    fn eventbridge_events_key_by_their_id() {
        let envelope = json!({
            "version": "0", "id": "c3d4e5f6-a7b8-9012-cdef-123456789012",
            "detail-type": "Email Bounced", "source": "aws.ses",
            "time": "2025-01-15T10:30:02Z",
            "detail": bounce("General", json!([
                {"emailAddress": "invalid@example.com", "status": "5.1.1",
                 "diagnosticCode": "smtp; 550 5.1.1 user unknown"}])),
        })
        .to_string();
        let events = normalise_eventbridge(&envelope, UnixMillis(9)).unwrap();
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(
            e.source.receipt,
            "eventbridge#c3d4e5f6-a7b8-9012-cdef-123456789012"
        );
        assert_eq!(
            e.key,
            composite_key(
                "eventbridge",
                &[
                    "c3d4e5f6-a7b8-9012-cdef-123456789012",
                    "invalid@example.com"
                ]
            )
        );
        assert_eq!(e.kind, EventKind::Bounced);
        assert_eq!(e.received_at, UnixMillis(9));
        let account = json!({"id": "a", "source": "aws.ses",
            "detail-type": "Sending Status Disabled", "detail": {}})
        .to_string();
        let e = &normalise_eventbridge(&account, UnixMillis(9)).unwrap()[0];
        assert_eq!(e.kind, EventKind::AccountNotice);
        assert_eq!(e.provider_type, "Sending Status Disabled");
        assert!(normalise_eventbridge(r#"{"source":"aws.sns"}"#, UnixMillis(0)).is_err());
        assert!(normalise_eventbridge("[]", UnixMillis(0)).is_err());
    }
}
