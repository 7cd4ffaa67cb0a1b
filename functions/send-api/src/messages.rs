//! The status endpoints of one message:
//!
//! - `GET /v1/messages/{id}` (scope `read`): `{"id", "state", "category", "provider",
//!   "provider_message_id", "created_at", "send_at", "recipients": [{"address", "type",
//!   "status"}], "attempts": [{"provider", "at", "outcome", "provider_message_id",
//!   "error_category", "error_code"}], "events": [{"type", "provider", "provider_type",
//!   "recipient", "occurred_at", "received_at", "bounce"?, "url"?, "detail"?}]}` with RFC 3339
//!   times; `events` is the event processor's history in event-time order.
//! - `DELETE /v1/messages/{id}` (scope `send`): cancels a `scheduled` or `paused` message and
//!   answers 200 with its summary (state `cancelled`); 409 `not_cancellable` with the current
//!   `state` otherwise.
//!
//! Both answer 404 `not_found` for an id that is unknown, malformed, or belongs to the other
//! environment: every key sees every message of its own environment (keys are rotated, and the
//! team reads what any of its keys sent) and nothing of the other one, so a `test` key never
//! learns that a `live` message exists.
//!
//! Only paths `/v1/messages/msg_…` are routed here; the collection routes live elsewhere.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use mailgate_core::ports::{Cancellation, StoredMessage};
use mailgate_core::{
    HistoryEntry, MessageId, MessageRecord, Requirement, Scope, SendAttempt, UnixMillis,
};
use mailgate_lambda::http::{ApiError, json_response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::SendApi;
use crate::answers::{not_allowed, store_failed};

const PREFIX: &str = "/v1/messages/";

/// Whether `path` (without a trailing slash) is one message's path, `/v1/messages/msg_…`.
pub(crate) fn is_message_path(path: &str) -> bool {
    path.strip_prefix(PREFIX)
        .is_some_and(|id| id.starts_with(MessageId::PREFIX) && !id.contains('/'))
}

fn time_json(at: UnixMillis) -> Value {
    at.to_datetime()
        .format(&Rfc3339)
        .map_or(Value::Null, Value::String)
}

/// The summary of a message as the API shows it (without attempts and events).
fn summary_json(record: &MessageRecord) -> Value {
    json!({
        "id": record.id.as_str(),
        "state": record.state.as_str(),
        "category": record.category.as_str(),
        "topic": record.topic,
        "provider": record.provider.map(|p| p.as_str()),
        "provider_message_id": record.provider_message_id,
        "created_at": time_json(record.created_at),
        "send_at": record.send_at.map_or(Value::Null, time_json),
        "tags": record.tags,
        "correlation_id": record.correlation_id,
        "recipients": record.recipients.iter().map(|r| json!({
            "address": r.address.as_str(),
            "type": r.kind.as_str(),
            "status": record.recipient_status(r).as_str(),
        })).collect::<Vec<_>>(),
        "template": record.template.as_ref().map(|t| json!({"id": t.id.as_str(), "version": t.version})),
        "state_reason": record.state_reason,
    })
}

fn attempt_json(attempt: &SendAttempt) -> Value {
    json!({
        "provider": attempt.provider.as_str(),
        "at": time_json(attempt.at),
        "outcome": attempt.outcome.as_str(),
        "provider_message_id": attempt.provider_message_id,
        "error_category": attempt.error_category.map(|c| c.as_str()),
        "error_code": attempt.error_code,
    })
}

/// One history entry as the API shows it: what happened, to whom, when the provider says it
/// happened and when we heard, and for bounces the server's words with our verdict.
fn event_json(entry: &HistoryEntry) -> Value {
    let e = &entry.event;
    let mut body = json!({
        "type": e.kind.as_str(),
        "provider": e.provider.as_str(),
        "provider_type": e.provider_type,
        "recipient": e.recipient.as_ref().map(|r| r.as_str()),
        "occurred_at": e.occurred_at.map_or(Value::Null, time_json),
        "received_at": time_json(e.received_at),
    });
    if let Some(report) = &e.bounce {
        body["bounce"] = json!({
            "status": report.status.map(|s| s.to_string()),
            "reply_code": report.reply_code,
            "diagnostic": report.diagnostic,
            "provider_type": report.provider_type,
            "kind": entry.classification.map(|c| c.kind),
            "cause": entry.classification.map(|c| c.cause.as_str()),
            "suppress": entry.classification.map(|c| c.suppress),
        });
    }
    if let Some(url) = &e.url {
        body["url"] = json!(url);
    }
    if let Some(detail) = &e.detail {
        body["detail"] = json!(detail);
    }
    if e.provider_suppressed {
        body["provider_suppressed"] = json!(true);
    }
    body
}

/// The full JSON of `GET /v1/messages/{id}`.
pub fn message_json(message: &StoredMessage) -> Value {
    let mut body = summary_json(&message.record);
    body["attempts"] = message.attempts.iter().map(attempt_json).collect();
    body["events"] = message.events.iter().map(event_json).collect();
    body
}

fn not_found(id: &str) -> Response<Body> {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no message {id}"),
    )
    .into_response()
}

impl SendApi {
    /// Routes a request whose path [`is_message_path`].
    pub(crate) async fn message(&self, request: &Request, path: &str) -> Response<Body> {
        let raw_id = path.strip_prefix(PREFIX).unwrap_or_default();
        let scope = match *request.method() {
            Method::GET => Scope::Read,
            Method::DELETE => Scope::Send,
            _ => {
                return not_allowed("GET or DELETE /v1/messages/{id}");
            }
        };
        let key = match self.authenticate(request, Requirement::Scope(scope)).await {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        let Ok(id) = MessageId::parse(raw_id) else {
            return not_found(raw_id);
        };
        if scope == Scope::Read {
            match self.messages.get(&id, key.environment).await {
                Ok(Some(message)) => json_response(StatusCode::OK, &message_json(&message)),
                Ok(None) => not_found(raw_id),
                Err(e) => store_failed(&e, "message store operation failed", "the message store"),
            }
        } else {
            let now = UnixMillis::from(OffsetDateTime::now_utc());
            match self.messages.cancel(&id, key.environment, now).await {
                Ok(Cancellation::Cancelled(record)) => {
                    json_response(StatusCode::OK, &summary_json(&record))
                }
                Ok(Cancellation::NotCancellable(state)) => json_response(
                    StatusCode::CONFLICT,
                    &json!({"error": {
                        "code": "not_cancellable",
                        "message": format!(
                            "only scheduled or paused messages can be cancelled; this one is {state}"
                        ),
                        "state": state.as_str(),
                    }}),
                ),
                Ok(Cancellation::NotFound) => not_found(raw_id),
                Err(e) => store_failed(&e, "message store operation failed", "the message store"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_only_single_message_paths() {
        assert!(is_message_path(
            "/v1/messages/msg_0123456789abcdefghjkmnpqrs"
        ));
        assert!(is_message_path("/v1/messages/msg_short"));
        assert!(!is_message_path("/v1/messages"));
        assert!(!is_message_path("/v1/messages/batch"));
        assert!(!is_message_path("/v1/messages/msg_x/events"));
        assert!(!is_message_path("/v1/messagesmsg_x"));
    }
}
