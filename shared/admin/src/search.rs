//! `mailgate-admin messages find` (the same search and JSON as `GET /v1/messages`) and
//! `mailgate-admin normalise` (one webhook body as a provider posts it, normalised by the same
//! code as the event processor, no AWS needed).

use std::io::{Read, Write};
use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use clap::{Args, Subcommand};
use mailgate_aws::{DynamoDbMessageSearch, DynamoDbMessages, DynamoDbSuppressionList};
use mailgate_core::search::{MessagePage, MessageQuery};
use mailgate_core::{DeliveryEvent, KeyEnvironment, ProviderId, UnixMillis};
use mailgate_providers::events::{EventOrigin, normalise, normalise_eventbridge};
use mailgate_providers::webhook::events_of;
use mailgate_services::search::{MessageFinder, page_json, time_json};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::AdminError;

/// `mailgate-admin messages …`.
#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// Finds messages without their id, newest first: a table, or `--json` for the API's page.
    Find(FindArgs),
}

/// The filters and output of `messages find` (the query parameters of `GET /v1/messages`).
#[derive(Debug, Args)]
pub struct FindArgs {
    /// Any of to/cc/bcc (compared canonically).
    #[arg(long)]
    pub recipient: Option<String>,
    /// The `correlation_id` given at send time.
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// One of the message's tags.
    #[arg(long)]
    pub tag: Option<String>,
    /// The message's current state.
    #[arg(long)]
    pub state: Option<String>,
    /// `transactional` or `bulk`.
    #[arg(long)]
    pub category: Option<String>,
    /// The provider that took it.
    #[arg(long)]
    pub provider: Option<String>,
    /// Created at or after (RFC 3339).
    #[arg(long)]
    pub after: Option<String>,
    /// Created before (RFC 3339).
    #[arg(long)]
    pub before: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[arg(long)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Whose messages: `live` (default) or `test`.
    #[arg(long, default_value = "live")]
    pub environment: KeyEnvironment,
    /// Print the API's JSON page instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The messages table.
    #[arg(long, value_name = "TABLE", env = "MESSAGES_TABLE")]
    pub table: String,
}

impl FindArgs {
    /// The flags as the query parameters of `GET /v1/messages`, validated by the same code.
    pub fn query(&self) -> Result<MessageQuery, AdminError> {
        let params: Vec<(String, String)> = [
            ("recipient", &self.recipient),
            ("correlation_id", &self.correlation_id),
            ("tag", &self.tag),
            ("state", &self.state),
            ("category", &self.category),
            ("provider", &self.provider),
            ("after", &self.after),
            ("before", &self.before),
            ("limit", &self.limit),
            ("cursor", &self.cursor),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| (name.to_owned(), v.clone())))
        .collect();
        MessageQuery::parse(self.environment, &params).map_err(AdminError::InvalidFilter)
    }
}

/// Runs `messages …`.
pub async fn run_messages(
    command: MessagesCommand,
    dynamodb: &Client,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    match command {
        MessagesCommand::Find(args) => {
            let query = args.query()?;
            let messages = DynamoDbMessages::new(dynamodb.clone(), args.table.clone());
            // `find` reads no suppression entry; the recipient view does.
            let suppressions = DynamoDbSuppressionList::new(dynamodb.clone(), "");
            let finder =
                MessageFinder::new(Arc::new(DynamoDbMessageSearch::new(messages, suppressions)));
            let page = finder.find(&query).await.map_err(AdminError::Search)?;
            if args.json {
                writeln!(out, "{}", page_json(&page))?;
            } else {
                write_table(&page, out)?;
            }
            Ok(())
        }
    }
}

/// The page as a table for people: one line per message.
pub fn write_table(page: &MessagePage, out: &mut impl Write) -> Result<(), AdminError> {
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    writeln!(
        out,
        "{:<24} {:<30} {:<10} {:<9} {:<20} LAST EVENT / RECIPIENTS",
        "CREATED", "ID", "STATE", "PROVIDER", "CORRELATION ID"
    )?;
    for listing in &page.messages {
        let item = mailgate_services::search::listing_json(listing);
        let last = match listing.last_event {
            Some(e) => format!("{} {}", e.kind.as_str(), text(&time_json(e.at))),
            None => "-".to_owned(),
        };
        let recipients: Vec<String> = item["recipients"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|r| format!("{} ({})", text(&r["address"]), text(&r["status"])))
                    .collect()
            })
            .unwrap_or_default();
        writeln!(
            out,
            "{:<24} {:<30} {:<10} {:<9} {:<20} {} / {}",
            text(&item["created_at"]),
            text(&item["id"]),
            text(&item["state"]),
            text(&item["provider"]),
            text(&item["correlation_id"]),
            last,
            recipients.join(", ")
        )?;
    }
    writeln!(out, "{} message(s)", page.messages.len())?;
    if page.truncated {
        writeln!(
            out,
            "the page stopped at its read budget; continue with --cursor below"
        )?;
    }
    if let Some(cursor) = &page.next_cursor {
        writeln!(out, "next page: --cursor {cursor}")?;
    }
    Ok(())
}

/// `mailgate-admin normalise` arguments.
#[derive(Debug, Args)]
pub struct NormaliseArgs {
    /// The provider that posted the body: ses, sendgrid, mailgun, postmark, smtp2go.
    #[arg(long)]
    pub provider: ProviderId,
    /// The request's `Content-Type`, when it matters (SMTP2GO posts forms).
    #[arg(long)]
    pub content_type: Option<String>,
}

/// The events of one webhook body exactly as `provider` posted it (for SES: the SNS envelope,
/// or the EventBridge event), through the processor's own code: the webhook functions' split
/// into events, then each event's normalisation, as if received `now`.
pub fn normalise_body(
    provider: ProviderId,
    body: &[u8],
    content_type: Option<&str>,
    now: UnixMillis,
) -> Result<Vec<DeliveryEvent>, String> {
    let is_eventbridge = serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.get("detail-type").is_some());
    if provider == ProviderId::Ses && is_eventbridge {
        let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
        return normalise_eventbridge(text, now).map_err(|e| e.to_string());
    }
    let raw_events = events_of(provider, body, content_type).map_err(|e| e.to_string())?;
    let receipt = format!("{provider}#stdin");
    let mut events = Vec::new();
    for (index, raw) in raw_events.iter().enumerate() {
        let origin = EventOrigin {
            receipt: &receipt,
            index,
            received_at: now,
        };
        events.extend(normalise(provider, raw, &origin).map_err(|e| e.to_string())?);
    }
    Ok(events)
}

/// One normalised event as a JSON line: `{"type", "recipient", "occurred_at",
/// "provider_message_id", "message_id", "provider_type", "bounce"?, "complaint"?, "url"?}`;
/// `bounce` carries the evidence and the classification the processor acts on.
pub fn event_json(event: &DeliveryEvent) -> Value {
    let mut line = json!({
        "type": event.kind.as_str(),
        "recipient": event.recipient.as_ref().map(|r| r.as_str()),
        "occurred_at": event.occurred_at.map_or(Value::Null, time_json),
        "provider_message_id": event.provider_message_id,
        "message_id": event.message_id.as_ref().map(|m| m.as_str()),
        "provider_type": event.provider_type,
    });
    if let Some(report) = &event.bounce {
        let verdict = event.bounce_classification();
        line["bounce"] = json!({
            "status": report.status.map(|s| s.to_string()),
            "reply_code": report.reply_code,
            "diagnostic": report.diagnostic,
            "provider_type": report.provider_type,
            "kind": verdict.map(|v| v.kind),
            "cause": verdict.map(|v| v.cause.as_str()),
            "suppress": verdict.map(|v| v.suppress),
        });
    }
    if event.kind == mailgate_core::EventKind::Complained {
        line["complaint"] = json!({
            "feedback_type": event.complaint_feedback,
            "detail": event.detail,
        });
    }
    if let Some(url) = &event.url {
        line["url"] = json!(url);
    }
    line
}

/// Runs `normalise`: the body on `input`, one JSON line per event on `out`.
pub fn run_normalise(
    args: &NormaliseArgs,
    mut input: impl Read,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let mut body = Vec::new();
    input.read_to_end(&mut body)?;
    let now = UnixMillis::from(OffsetDateTime::now_utc());
    let events = normalise_body(args.provider, &body, args.content_type.as_deref(), now)
        .map_err(AdminError::Normalise)?;
    for event in &events {
        writeln!(out, "{}", event_json(event))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: UnixMillis = UnixMillis(1_795_000_000_000);

    fn ses_bounce_notification() -> String {
        json!({
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": "Permanent", "bounceSubType": "General",
                "bouncedRecipients": [{"emailAddress": "jane@example.org", "action": "failed",
                                       "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                "timestamp": "2026-11-23T10:00:05.000Z", "feedbackId": "0100-feedback",
            },
            "mail": {"timestamp": "2026-11-23T10:00:00.000Z", "source": "hello@example.com",
                     "messageId": "ses-1", "destination": ["jane@example.org"]},
        })
        .to_string()
    }

    #[test]
    fn an_ses_bounce_in_its_sns_envelope_is_one_hard_bounce_line() {
        let envelope = json!({
            "Type": "Notification", "MessageId": "sns-1",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:mailgate-ses-events",
            "Message": ses_bounce_notification(), "Timestamp": "2026-11-23T10:00:06.000Z",
            "SignatureVersion": "1", "Signature": "x",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem",
        })
        .to_string();
        let events = normalise_body(ProviderId::Ses, envelope.as_bytes(), None, NOW).unwrap();
        assert_eq!(events.len(), 1);
        let line = event_json(&events[0]);
        assert_eq!(line["type"], "bounced");
        assert_eq!(line["recipient"], "jane@example.org");
        assert_eq!(line["provider_message_id"], "ses-1");
        assert_eq!(line["occurred_at"], "2026-11-23T10:00:05Z");
        assert_eq!(line["bounce"]["status"], "5.1.1");
        assert_eq!(line["bounce"]["suppress"], true);
        assert!(line.get("url").is_none());
    }

    #[test]
    fn an_ses_event_from_eventbridge_is_normalised_too() {
        let mut event: Value = serde_json::from_str(&ses_bounce_notification()).unwrap();
        event["eventType"] = json!("Bounce");
        let bridge = json!({
            "version": "0", "id": "eb-1", "detail-type": "Email Bounced",
            "source": "aws.ses", "account": "123456789012",
            "time": "2026-11-23T10:00:06Z", "region": "us-east-1", "resources": [],
            "detail": event,
        })
        .to_string();
        let events = normalise_body(ProviderId::Ses, bridge.as_bytes(), None, NOW).unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(event_json(&events[0])["type"], "bounced");
    }

    #[test]
    fn a_body_that_is_not_the_providers_is_an_error() {
        assert!(normalise_body(ProviderId::Postmark, b"not json", None, NOW).is_err());
    }

    #[test]
    fn find_flags_are_validated_as_the_api_validates_its_parameters() {
        let args = |state: &str| FindArgs {
            recipient: Some("jane@example.org".into()),
            correlation_id: None,
            tag: None,
            state: Some(state.into()),
            category: None,
            provider: None,
            after: None,
            before: None,
            limit: None,
            cursor: None,
            environment: KeyEnvironment::Test,
            json: true,
            table: "t".into(),
        };
        let query = args("bounced").query().unwrap();
        assert_eq!(query.environment, KeyEnvironment::Test);
        assert_eq!(query.limit, 20);
        match args("lost").query() {
            Err(AdminError::InvalidFilter(e)) => assert_eq!(e.field, "state"),
            other => panic!("expected an invalid filter, got {other:?}"),
        }
    }
}
