//! The send endpoints (scope `send`):
//!
//! - `POST /v1/messages`: one message, sent synchronously within the send budget. 202
//!   `{"id", "status", "provider", "provider_message_id", "suppressed": [{"address", "reason"}]}`
//!   where `status` is `sent`, `unknown` (the provider call's outcome is ambiguous), `failed`
//!   (refused, nothing left to try), `queued` (deferred to the send queue), `scheduled`
//!   (`send_at`) or `paused` (bulk while the pause switch is on).
//! - `POST /v1/messages/batch`: up to 100 messages, each stored and put on the send queue (the
//!   asynchronous path); 202 `{"results": [{"index", "id", "status"} | {"index", "error",
//!   "errors"}]}`, or 422 with the same body when no message was valid.
//!
//! The order of work: authenticate, cap the body size (413 `payload_too_large`), claim the
//! `Idempotency-Key` (before anything else: a concurrent duplicate stops here with 409 and never
//! reaches a provider), validate (400/422: the first error as `error`, all of them as `errors`),
//! check suppressions, record the message, send. A 202 is stored under the key and replayed
//! with `Idempotency-Replayed: true`; any other answer releases the key so a corrected retry
//! proceeds at once.

use std::collections::HashMap;
use std::time::Duration;

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_aws::{
    ClaimOutcome, DynamoDbIdempotencyStore, DynamoDbSendControls, DynamoDbSuppressionList, Table,
};
use mailgate_core::idempotency::{IdempotencyKey, RequestFingerprint, StoredResponse};
use mailgate_core::send_request::{FieldError, response_status};
use mailgate_core::{
    AuthenticatedKey, BatchSendRequest, EmailAddress, MessageCategory, MessageId, MessageRecord,
    MessageState, OutboundEmail, ProviderId, Requirement, Scope, SendLimits, SendRequest,
    Suppression, UnixMillis, ValidatedSend, initial_state,
};
use mailgate_lambda::delivery::DeliveryError;
use mailgate_lambda::http::{ApiError, json_response};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::SendApi;

/// The largest request body: 10 MiB of attachments in base64 (4/3) plus 1 MiB for the rest.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024 / 3 * 4 + 1024 * 1024;
/// The request header carrying the idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The response header marking a replayed response.
pub const IDEMPOTENCY_REPLAYED_HEADER: &str = "idempotency-replayed";
/// How long a claim holds the key beyond the send budget: the function's remaining time after
/// the send (the template's function timeout is 30 s).
const LEASE_MARGIN: Duration = Duration::from_secs(20);

fn request_body(request: &Request) -> &[u8] {
    match request.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// The validation failure answer: the first error as `error`, every error as `errors`.
fn validation_failed(errors: &[FieldError]) -> Response<Body> {
    let status =
        StatusCode::from_u16(response_status(errors)).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    json_response(
        status,
        &json!({
            "error": errors.first().map(field_error_json),
            "errors": errors.iter().map(field_error_json).collect::<Vec<_>>(),
        }),
    )
}

fn field_error_json(e: &FieldError) -> Value {
    let mut v = json!({"code": e.code, "message": e.message});
    if let Some(field) = e.field_path() {
        v["field"] = json!(field);
    }
    v
}

fn unavailable(what: &str, err: &dyn std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %err, "{what} failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        format!("the {what} is unavailable; try again"),
    )
    .into_response()
}

fn suppressed_json(list: &[(EmailAddress, Suppression)]) -> Vec<Value> {
    list.iter()
        .map(|(a, s)| json!({"address": a.as_str(), "reason": s.reason.as_str()}))
        .collect()
}

/// A message after the suppression check: what is left to send and what was dropped.
enum Screened {
    /// At least one `to` recipient remains.
    Send {
        email: Box<OutboundEmail>,
        suppressed: Vec<(EmailAddress, Suppression)>,
    },
    /// Every `to` recipient is suppressed.
    AllSuppressed(Vec<(EmailAddress, Suppression)>),
}

/// Drops suppressed recipients from `email` (found is the check's answer).
fn screen(mut email: OutboundEmail, found: &HashMap<EmailAddress, Suppression>) -> Screened {
    let mut suppressed = Vec::new();
    let mut keep = |list: &mut Vec<EmailAddress>| {
        list.retain(|a| match found.get(a) {
            Some(s) => {
                suppressed.push((a.clone(), s.clone()));
                false
            }
            None => true,
        })
    };
    keep(&mut email.to);
    keep(&mut email.cc);
    keep(&mut email.bcc);
    if email.to.is_empty() {
        Screened::AllSuppressed(suppressed)
    } else {
        Screened::Send {
            email: Box::new(email),
            suppressed,
        }
    }
}

fn all_suppressed_error(list: &[(EmailAddress, Suppression)]) -> Value {
    json!({
        "code": "all_recipients_suppressed",
        "message": "every `to` recipient is on the suppression list; nothing was sent",
        "field": "to",
        "suppressed": suppressed_json(list),
    })
}

impl SendApi {
    /// Whether bulk mail is held now; an unreadable switch holds it (fails safe: a paused
    /// message is released later, a sent one cannot be recalled).
    async fn bulk_paused(&self) -> bool {
        let controls = DynamoDbSendControls::new(
            self.clients.dynamodb.clone(),
            self.config.names.table(Table::Control),
        );
        match controls.bulk_paused().await {
            Ok(paused) => paused,
            Err(err) => {
                tracing::error!(error = %err, "could not read the bulk pause switch; holding bulk mail");
                true
            }
        }
    }

    /// `POST /v1/messages`.
    pub(crate) async fn send(&self, request: &Request) -> Response<Body> {
        self.idempotent(request, |key, body| self.send_one(key, body))
            .await
    }

    /// `POST /v1/messages/batch`.
    pub(crate) async fn send_batch(&self, request: &Request) -> Response<Body> {
        self.idempotent(request, |key, body| self.send_many(key, body))
            .await
    }

    /// Authentication, the size cap and the `Idempotency-Key` protocol around `process`.
    async fn idempotent<'a, F, Fut>(&'a self, request: &'a Request, process: F) -> Response<Body>
    where
        F: FnOnce(AuthenticatedKey, &'a [u8]) -> Fut,
        Fut: std::future::Future<Output = Response<Body>>,
    {
        let key = match self
            .authenticate(request, Requirement::Scope(Scope::Send))
            .await
        {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        let body = request_body(request);
        if body.len() > MAX_BODY_BYTES {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            )
            .into_response();
        }
        let Some(raw_key) = request.headers().get(IDEMPOTENCY_KEY_HEADER) else {
            return process(key, body).await;
        };
        let idempotency_key = match raw_key
            .to_str()
            .map_err(|_| "the idempotency key may contain only visible ASCII characters".to_owned())
            .and_then(|k| IdempotencyKey::parse(k).map_err(|e| e.to_string()))
        {
            Ok(k) => k,
            Err(message) => {
                return ApiError::new(StatusCode::BAD_REQUEST, "invalid_idempotency_key", message)
                    .with_field("Idempotency-Key")
                    .into_response();
            }
        };
        // A body that is not JSON cannot be fingerprinted; it is refused by validation below
        // without claiming anything.
        let Ok(fingerprint) = RequestFingerprint::of_body(body) else {
            return process(key, body).await;
        };
        let store = DynamoDbIdempotencyStore::new(
            self.clients.dynamodb.clone(),
            self.config.names.table(Table::Idempotency),
        );
        let scoped = idempotency_key.scoped(key.id.as_str());
        let lease = self.config.providers.send_budget + LEASE_MARGIN;
        let claim = match store
            .claim(&scoped, &fingerprint, OffsetDateTime::now_utc(), lease)
            .await
        {
            Ok(ClaimOutcome::Claimed(claim)) => claim,
            Ok(ClaimOutcome::Replay(stored)) => return replayed(&stored),
            Ok(ClaimOutcome::Mismatch) => {
                return ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_mismatch",
                    "this Idempotency-Key was used with a different request body",
                )
                .with_field("Idempotency-Key")
                .into_response();
            }
            Ok(ClaimOutcome::InFlight { retry_after_secs }) => {
                let mut response = ApiError::new(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_use",
                    "a request with this Idempotency-Key is in progress; retry later",
                )
                .with_field("Idempotency-Key")
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return response;
            }
            Err(err) => return unavailable("idempotency store", &err),
        };
        let response = process(key, body).await;
        if response.status() == StatusCode::ACCEPTED {
            let stored = StoredResponse {
                status: response.status().as_u16(),
                body: match response.body() {
                    Body::Text(t) => t.clone(),
                    _ => String::new(),
                },
                headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            };
            let retention = self.config.idempotency_retention;
            if let Err(err) = store
                .complete(&claim, &stored, OffsetDateTime::now_utc(), retention)
                .await
            {
                // The send happened; the record lapses with its lease and a retry after that
                // sends again. Logged for the operator.
                tracing::error!(error = %err, "could not store the idempotent response");
            }
        } else if let Err(err) = store.release(&claim).await {
            tracing::warn!(error = %err, "could not release an idempotency claim; it lapses with its lease");
        }
        response
    }

    /// Suppression check of every recipient of `emails` at once.
    async fn check_suppressions<'e>(
        &self,
        emails: impl Iterator<Item = &'e OutboundEmail>,
        now: OffsetDateTime,
    ) -> Result<HashMap<EmailAddress, Suppression>, Response<Body>> {
        let addresses: Vec<EmailAddress> = emails.flat_map(|e| e.recipients().cloned()).collect();
        DynamoDbSuppressionList::new(
            self.clients.dynamodb.clone(),
            self.config.names.table(Table::Suppressions),
        )
        .check(&addresses, now)
        .await
        .map_err(|e| unavailable("suppression list", &e))
    }

    /// The state a valid message starts in (the pause switch is read for bulk mail only).
    async fn start_state(&self, valid: &ValidatedSend, now: UnixMillis) -> MessageState {
        let send_at = valid.send_at.map(UnixMillis::from);
        let bulk_now =
            valid.email.category == MessageCategory::Bulk && send_at.is_none_or(|at| at <= now);
        let paused = bulk_now && self.bulk_paused().await;
        initial_state(valid.email.category, send_at, now, paused)
    }

    /// One message: validate, screen, record, send.
    async fn send_one(&self, key: AuthenticatedKey, body: &[u8]) -> Response<Body> {
        let now = OffsetDateTime::now_utc();
        let request = match SendRequest::from_json(body) {
            Ok(r) => r,
            Err(e) => return validation_failed(&[e]),
        };
        let valid = match request.validate(&SendLimits::default(), now, MessageId::generate()) {
            Ok(v) => v,
            Err(errors) => return validation_failed(&errors),
        };
        let found = match self
            .check_suppressions(std::iter::once(&valid.email), now)
            .await
        {
            Ok(found) => found,
            Err(response) => return response,
        };
        let now_ms = UnixMillis::from(now);
        let state = self.start_state(&valid, now_ms).await;
        let ValidatedSend {
            email,
            send_at,
            provider,
        } = valid;
        let (email, suppressed) = match screen(email, &found) {
            Screened::Send { email, suppressed } => (email, suppressed),
            Screened::AllSuppressed(list) => {
                return json_response(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &json!({"error": all_suppressed_error(&list)}),
                );
            }
        };
        let dropped: Vec<EmailAddress> = suppressed.iter().map(|(a, _)| a.clone()).collect();
        let record = MessageRecord::new(
            &email,
            key.id.clone(),
            key.environment,
            state,
            now_ms,
            send_at.map(UnixMillis::from),
            &dropped,
        );
        if let Err(err) = self
            .delivery
            .messages()
            .create_for(&record, &email, provider)
            .await
        {
            return unavailable("message store", &err);
        }
        let answer = |status: MessageState, provider: Option<ProviderId>, pmid: Option<String>| {
            json_response(
                StatusCode::ACCEPTED,
                &json!({
                    "id": record.id.as_str(),
                    "status": status.as_str(),
                    "provider": provider.map(|p| p.as_str()),
                    "provider_message_id": pmid,
                    "suppressed": suppressed_json(&suppressed),
                }),
            )
        };
        if state != MessageState::Queued {
            return answer(state, None, None);
        }
        let budget = self.config.providers.send_budget;
        match self
            .delivery
            .deliver(&record, &email, provider, budget)
            .await
        {
            Ok(d) => answer(d.state, d.provider, d.provider_message_id),
            Err(DeliveryError::Record {
                source, delivery, ..
            }) => {
                // The provider call happened: answering an error would invite a second send.
                tracing::error!(message_id = %record.id, error = %source, "could not record the send outcome");
                answer(
                    delivery.state,
                    delivery.provider,
                    delivery.provider_message_id,
                )
            }
            Err(err) => unavailable("send queue", &err),
        }
    }

    /// A batch: validate each message, screen, record and put every queued one on the send
    /// queue.
    async fn send_many(&self, key: AuthenticatedKey, body: &[u8]) -> Response<Body> {
        let now = OffsetDateTime::now_utc();
        let request = match BatchSendRequest::from_json(body) {
            Ok(r) => r,
            Err(e) => return validation_failed(&[e]),
        };
        let items = match request.validate_batch(&SendLimits::default(), now, MessageId::generate) {
            Ok(items) => items,
            Err(errors) => return validation_failed(&errors),
        };
        let found = match self
            .check_suppressions(items.iter().flatten().map(|v| &v.email), now)
            .await
        {
            Ok(found) => found,
            Err(response) => return response,
        };
        let now_ms = UnixMillis::from(now);
        let mut results: Vec<Value> = Vec::with_capacity(items.len());
        let mut accepted: Vec<(usize, MessageRecord, Box<OutboundEmail>, Option<ProviderId>)> =
            Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let valid = match item {
                Ok(v) => v,
                Err(errors) => {
                    results.push(json!({
                        "index": index,
                        "error": errors.first().map(field_error_json),
                        "errors": errors.iter().map(field_error_json).collect::<Vec<_>>(),
                    }));
                    continue;
                }
            };
            let state = self.start_state(&valid, now_ms).await;
            let ValidatedSend {
                email,
                send_at,
                provider,
            } = valid;
            match screen(email, &found) {
                Screened::AllSuppressed(list) => {
                    let mut error = all_suppressed_error(&list);
                    error["field"] = json!(format!("messages[{index}].to"));
                    results.push(json!({"index": index, "error": error}));
                }
                Screened::Send { email, suppressed } => {
                    let dropped: Vec<EmailAddress> =
                        suppressed.iter().map(|(a, _)| a.clone()).collect();
                    let record = MessageRecord::new(
                        &email,
                        key.id.clone(),
                        key.environment,
                        state,
                        now_ms,
                        send_at.map(UnixMillis::from),
                        &dropped,
                    );
                    results.push(json!({
                        "index": index,
                        "id": record.id.as_str(),
                        "status": state.as_str(),
                        "suppressed": suppressed_json(&suppressed),
                    }));
                    accepted.push((index, record, email, provider));
                }
            }
        }
        let store = self.delivery.messages();
        let created = futures::future::join_all(
            accepted
                .iter()
                .map(|(_, record, email, provider)| store.create_for(record, email, *provider)),
        )
        .await;
        let mut queued: Vec<MessageId> = Vec::new();
        for ((index, record, _, _), outcome) in accepted.iter().zip(created) {
            match outcome {
                Ok(()) if record.state == MessageState::Queued => queued.push(record.id.clone()),
                Ok(()) => {}
                Err(err) => {
                    tracing::error!(message_id = %record.id, error = %err, "could not record a batch message");
                    if let Some(slot) = results.get_mut(*index) {
                        *slot = json!({"index": index, "error": {
                            "code": "service_unavailable",
                            "message": "the message could not be recorded; send it again",
                        }});
                    }
                }
            }
        }
        if let Err(err) = self.delivery.queue().enqueue_all(&queued).await {
            return unavailable("send queue", &err);
        }
        let any_accepted = results.iter().any(|r| r.get("id").is_some());
        let status = if any_accepted {
            StatusCode::ACCEPTED
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        json_response(status, &json!({ "results": results }))
    }
}

/// The stored response of a completed key, marked as replayed.
fn replayed(stored: &StoredResponse) -> Response<Body> {
    let mut response = Response::new(Body::Text(stored.body.clone()));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::ACCEPTED);
    for (name, value) in &stored.headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response.headers_mut().insert(
        IDEMPOTENCY_REPLAYED_HEADER,
        HeaderValue::from_static("true"),
    );
    response
}
