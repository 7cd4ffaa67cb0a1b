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
//! The order of work for one message: authenticate, cap the body size (413
//! `payload_too_large`), validate (400/422: the first error as `error`, all of them as
//! `errors`), check suppressions, then record the message and claim the `Idempotency-Key` in ONE
//! transaction, send, and record the outcome and the key's stored response in ONE transaction.
//! Validation and the suppression check only read, so running them before the claim changes
//! nothing a duplicate could observe; the claim is still the one conditional write that decides
//! between concurrent duplicates (a refused claim never reaches a provider: 409 in flight, the
//! stored 202 replayed, or 422 mismatch). Only accepted sends (202) are remembered: a refused
//! request never claims the key, so a corrected retry proceeds at once.
//!
//! DynamoDB round trips of a synchronous send with a key: the API key `GetItem`, the
//! suppression `BatchGetItem` and the create-and-claim `TransactWriteItems` before the provider
//! call; the record-and-complete `TransactWriteItems` after it (plus the breaker's `GetItem` when
//! this instance's health cache is cold). The batch endpoint keeps the claim-first protocol (one
//! key for many message creations): claim, process, then complete (202) or release.

use std::collections::HashMap;
use std::time::Duration;

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_aws::{
    Claim, ClaimOutcome, DynamoDbIdempotencyStore, DynamoDbSendControls, DynamoDbSuppressionList,
    MessageStoreError, Table,
};
use mailgate_core::idempotency::{IdempotencyKey, RequestFingerprint, StoredResponse};
use mailgate_core::send_request::{FieldError, response_status};
use mailgate_core::{
    AuthenticatedKey, BatchSendRequest, EmailAddress, MessageCategory, MessageId, MessageRecord,
    MessageState, OutboundEmail, ProviderId, Requirement, Scope, SendLimits, SendRequest,
    Suppression, UnixMillis, ValidatedSend, initial_state,
};
use mailgate_lambda::delivery::{Delivery, DeliveryError};
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
/// How many times the create-and-claim transaction is tried when the claim was refused by a
/// record that is gone by the time it is read (released, lapsed, or a transaction conflict).
const CLAIM_ATTEMPTS: u32 = 5;

/// An `Idempotency-Key` request: the scoped key and the body's fingerprint.
struct Keyed {
    scoped: String,
    fingerprint: RequestFingerprint,
}

/// The answer to a request whose claim was refused by a live record.
fn refused_claim(outcome: ClaimOutcome) -> Response<Body> {
    match outcome {
        ClaimOutcome::Replay(stored) => replayed(&stored),
        ClaimOutcome::Mismatch => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_mismatch",
            "this Idempotency-Key was used with a different request body",
        )
        .with_field("Idempotency-Key")
        .into_response(),
        ClaimOutcome::InFlight { retry_after_secs } => {
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
            response
        }
        // Not a refusal; never passed here.
        ClaimOutcome::Claimed(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "the idempotency store is unavailable; try again",
        )
        .into_response(),
    }
}

/// The response as stored under its key for replay.
fn stored_of(response: &Response<Body>) -> StoredResponse {
    StoredResponse {
        status: response.status().as_u16(),
        body: match response.body() {
            Body::Text(t) => t.clone(),
            _ => String::new(),
        },
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
    }
}

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
        match self.admit(request).await {
            Ok((key, body, keyed)) => self.send_one(key, body, keyed).await,
            Err(refused) => refused,
        }
    }

    /// `POST /v1/messages/batch`.
    pub(crate) async fn send_batch(&self, request: &Request) -> Response<Body> {
        let (key, body, keyed) = match self.admit(request).await {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        };
        let Some(keyed) = keyed else {
            return self.send_many(key, body).await;
        };
        let store = self.idempotency_store();
        let lease = self.config.providers.send_budget + LEASE_MARGIN;
        let claim = match store
            .claim(
                &keyed.scoped,
                &keyed.fingerprint,
                OffsetDateTime::now_utc(),
                lease,
            )
            .await
        {
            Ok(ClaimOutcome::Claimed(claim)) => claim,
            Ok(refused) => return refused_claim(refused),
            Err(err) => return unavailable("idempotency store", &err),
        };
        let response = self.send_many(key, body).await;
        if response.status() == StatusCode::ACCEPTED {
            let retention = self.config.idempotency_retention;
            if let Err(err) = store
                .complete(
                    &claim,
                    &stored_of(&response),
                    OffsetDateTime::now_utc(),
                    retention,
                )
                .await
            {
                // The messages are accepted; the record lapses with its lease and a retry after
                // that sends again. Logged for the operator.
                tracing::error!(error = %err, "could not store the idempotent response");
            }
        } else if let Err(err) = store.release(&claim).await {
            tracing::warn!(error = %err, "could not release an idempotency claim; it lapses with its lease");
        }
        response
    }

    fn idempotency_store(&self) -> DynamoDbIdempotencyStore {
        DynamoDbIdempotencyStore::new(
            self.clients.dynamodb.clone(),
            self.config.names.table(Table::Idempotency),
        )
    }

    /// Authentication, the size cap and the `Idempotency-Key` header: the key, the body and the
    /// scoped idempotency key with the body's fingerprint (none without the header, or for a
    /// body that is not JSON: validation refuses it without claiming anything).
    async fn admit<'r>(
        &self,
        request: &'r Request,
    ) -> Result<(AuthenticatedKey, &'r [u8], Option<Keyed>), Response<Body>> {
        let key = self
            .authenticate(request, Requirement::Scope(Scope::Send))
            .await?;
        let body = request_body(request);
        if body.len() > MAX_BODY_BYTES {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
            )
            .into_response());
        }
        let Some(raw_key) = request.headers().get(IDEMPOTENCY_KEY_HEADER) else {
            return Ok((key, body, None));
        };
        let idempotency_key = raw_key
            .to_str()
            .map_err(|_| "the idempotency key may contain only visible ASCII characters".to_owned())
            .and_then(|k| IdempotencyKey::parse(k).map_err(|e| e.to_string()))
            .map_err(|message| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_idempotency_key", message)
                    .with_field("Idempotency-Key")
                    .into_response()
            })?;
        let keyed = RequestFingerprint::of_body(body)
            .ok()
            .map(|fingerprint| Keyed {
                scoped: idempotency_key.scoped(key.id.as_str()),
                fingerprint,
            });
        Ok((key, body, keyed))
    }

    /// Records the message, claiming the key in the same transaction when there is one (the
    /// claim stored completed with `known` when the answer is known already). `Ok(None)` when
    /// recorded without a key; `Err` is the answer (a refused claim, or 503).
    async fn create(
        &self,
        record: &MessageRecord,
        email: &OutboundEmail,
        provider: Option<ProviderId>,
        keyed: Option<&Keyed>,
        known: Option<&StoredResponse>,
    ) -> Result<Option<Claim>, Response<Body>> {
        let messages = self.delivery.messages();
        let Some(keyed) = keyed else {
            return match messages.create_for(record, email, provider).await {
                Ok(()) => Ok(None),
                Err(err) => Err(unavailable("message store", &err)),
            };
        };
        let store = self.idempotency_store();
        let lease = self.config.providers.send_budget + LEASE_MARGIN;
        let retention = self.config.idempotency_retention;
        for attempt in 0..CLAIM_ATTEMPTS {
            let now = OffsetDateTime::now_utc();
            let (write, claim) = store
                .claim_write(
                    &keyed.scoped,
                    &keyed.fingerprint,
                    now,
                    lease,
                    known.map(|k| (k, retention)),
                )
                .map_err(|e| unavailable("idempotency store", &e))?;
            match messages
                .create_linked(record, email, provider, Some(write))
                .await
            {
                Ok(()) => return Ok(Some(claim)),
                Err(MessageStoreError::LinkedRefused) => {}
                Err(err) => return Err(unavailable("message store", &err)),
            }
            // The slow path: what holds the key?
            match store
                .refused(&keyed.scoped, &keyed.fingerprint, OffsetDateTime::now_utc())
                .await
            {
                Ok(Some(outcome)) => return Err(refused_claim(outcome)),
                // Gone meanwhile (or a conflict with a claim that did not land): claim again
                // after a short, growing, jittered pause.
                Ok(None) => {
                    let jitter = u64::from(OffsetDateTime::now_utc().nanosecond() % 20);
                    let pause = 10 * u64::from(attempt + 1) + jitter;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(err) => return Err(unavailable("idempotency store", &err)),
            }
        }
        Err(unavailable(
            "idempotency store",
            &"the idempotency key kept changing",
        ))
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

    /// One message: validate, screen, record (and claim the key), send (and record the outcome
    /// with the key's response).
    async fn send_one(
        &self,
        key: AuthenticatedKey,
        body: &[u8],
        keyed: Option<Keyed>,
    ) -> Response<Body> {
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
        let of_delivery = |d: &Delivery| answer(d.state, d.provider, d.provider_message_id.clone());
        // A held message's answer is known now: its key is stored completed with the message.
        let held = (state != MessageState::Queued).then(|| answer(state, None, None));
        let claim = match self
            .create(
                &record,
                &email,
                provider,
                keyed.as_ref(),
                held.as_ref().map(stored_of).as_ref(),
            )
            .await
        {
            Ok(claim) => claim,
            Err(response) => return response,
        };
        if let Some(held) = held {
            return held;
        }
        let store = self.idempotency_store();
        let retention = self.config.idempotency_retention;
        let link = |d: &Delivery| {
            let claim = claim.as_ref()?;
            let stored = stored_of(&of_delivery(d));
            store
                .complete_write(claim, &stored, OffsetDateTime::now_utc(), retention)
                .map_err(|err| tracing::error!(error = %err, "could not build the idempotency completion"))
                .ok()
        };
        let budget = self.config.providers.send_budget;
        match self
            .delivery
            .deliver_linked(&record, &email, provider, budget, Some(&link))
            .await
        {
            Ok(d) => of_delivery(&d),
            Err(DeliveryError::Record {
                source, delivery, ..
            }) => {
                // The provider call happened: answering an error would invite a second send.
                tracing::error!(message_id = %record.id, error = %source, "could not record the send outcome");
                let response = of_delivery(&delivery);
                if let Some(claim) = &claim
                    && let Err(err) = store
                        .complete(
                            claim,
                            &stored_of(&response),
                            OffsetDateTime::now_utc(),
                            retention,
                        )
                        .await
                {
                    tracing::error!(error = %err, "could not store the idempotent response");
                }
                response
            }
            Err(err) => {
                // Recorded (with the key's response) but not on the send queue: forget the
                // response so a retry with the key is not answered `queued` for a message no
                // worker will see.
                if let Some(claim) = &claim
                    && let Err(e) = store.discard(claim).await
                {
                    tracing::error!(error = %e, "could not discard the idempotent response");
                }
                unavailable("send queue", &err)
            }
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
