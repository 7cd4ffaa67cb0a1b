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
//! This module authenticates, caps the body size (413 `payload_too_large`), reads the
//! `Idempotency-Key` header (400 `invalid_idempotency_key`), calls the accept service
//! ([`mailgate_services::accept`], which holds the order of work and its guarantees) and
//! encodes its outcome.
//!
//! DynamoDB round trips of a synchronous send on the warm path (the key cached by this
//! container, nothing suppressed): ONE before the provider call, the `TransactWriteItems` that
//! claims the `Idempotency-Key`, records the message and checks (`ConditionCheck`) each
//! recipient's suppression items and the API key still being valid; and one after it, the
//! record-and-complete `TransactWriteItems` (plus the breaker's `GetItem` when this instance's
//! health cache is cold). A key not cached yet adds its `GetItem`; a check that fails falls
//! back to the reads (the suppression `BatchGetItem`, the key's `GetItem`) and the write again. The batch endpoint keeps the claim-first protocol (one
//! key for many message creations): claim, process, then complete (202) or release.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_core::idempotency::{IdempotencyKey, RequestFingerprint, StoredResponse};
use mailgate_core::{AuthenticatedKey, Requirement, Scope};
use mailgate_lambda::http::{ApiError, json_response};
use mailgate_lambda::wiring::count_send;
use mailgate_services::accept::{AcceptOutcome, KeyedRequest, all_suppressed_json, invalid_json};
use serde_json::json;

use crate::SendApi;

/// The largest request body: 10 MiB of attachments in base64 (4/3) plus 1 MiB for the rest.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024 / 3 * 4 + 1024 * 1024;
/// The request header carrying the idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The response header marking a replayed response.
pub const IDEMPOTENCY_REPLAYED_HEADER: &str = "idempotency-replayed";

/// The HTTP answer to an outcome of the accept service.
fn respond(outcome: AcceptOutcome) -> Response<Body> {
    let status =
        StatusCode::from_u16(outcome.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match outcome {
        AcceptOutcome::Accepted(accepted) => {
            if let Some(report) = &accepted.report {
                count_send(report);
            }
            json_response(status, &accepted.to_json())
        }
        AcceptOutcome::Batch { body, .. } => json_response(status, &body),
        AcceptOutcome::Invalid(errors) => json_response(status, &invalid_json(&errors)),
        AcceptOutcome::AllSuppressed(list) => {
            json_response(status, &json!({"error": all_suppressed_json(&list)}))
        }
        AcceptOutcome::Replayed(stored) => replayed(&stored),
        AcceptOutcome::KeyMismatch => ApiError::new(
            status,
            "idempotency_key_mismatch",
            "this Idempotency-Key was used with a different request body",
        )
        .with_field("Idempotency-Key")
        .into_response(),
        AcceptOutcome::KeyInFlight { retry_after_secs } => {
            let mut response = ApiError::new(
                status,
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
        // Never answered as such (the key is read first); a refusal if it were.
        AcceptOutcome::KeyUnconfirmed => {
            crate::auth::denied(&mailgate_core::AuthFailure::InvalidApiKey)
        }
        AcceptOutcome::Unavailable { what, error } => {
            tracing::error!(error = %error, "{what} failed");
            ApiError::new(
                status,
                "service_unavailable",
                format!("the {what} is unavailable; try again"),
            )
            .into_response()
        }
    }
}

impl SendApi {
    /// `POST /v1/messages`. The key may come from this container's cache: the write that
    /// records the message confirms it; any other outcome reads the key before it is answered.
    pub(crate) async fn send(&self, request: &Request) -> Response<Body> {
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        let (key, guard) = match self.auth.authenticate_cached(header, Scope::Send).await {
            Ok(found) => found,
            Err(e) => return crate::auth::refusal(e),
        };
        let (body, keyed) = match admit_body(request, &key) {
            Ok(admitted) => admitted,
            Err(refused) if guard.is_none() => return refused,
            // A cached key is read before anything is answered to it.
            Err(refused) => {
                return match self
                    .authenticate(request, Requirement::Scope(Scope::Send))
                    .await
                {
                    Ok(_) => refused,
                    Err(denied) => denied,
                };
            }
        };
        let accepting = self
            .intake
            .accept_with_cached_key(&key, guard.as_ref(), body, keyed)
            .await;
        if guard.is_none() || accepting.key_confirmed {
            return respond(accepting.outcome);
        }
        // The cached key was not confirmed by a write: read it, as every other route does.
        match accepting.outcome {
            // Gone, revoked or changed since it was cached: the read answers (a refusal, or
            // the key as it is now, which the request is accepted under).
            AcceptOutcome::KeyUnconfirmed => match self.admit(request).await {
                Ok((key, body, keyed)) => respond(self.intake.accept(&key, body, keyed).await),
                Err(refused) => refused,
            },
            outcome => match self
                .authenticate(request, Requirement::Scope(Scope::Send))
                .await
            {
                Ok(_) => respond(outcome),
                Err(refused) => refused,
            },
        }
    }

    /// `POST /v1/messages/batch`.
    pub(crate) async fn send_batch(&self, request: &Request) -> Response<Body> {
        match self.admit(request).await {
            Ok((key, body, keyed)) => respond(self.intake.accept_batch(&key, body, keyed).await),
            Err(refused) => refused,
        }
    }

    /// Authentication, the size cap and the `Idempotency-Key` header: the key, the body and the
    /// scoped idempotency key with the body's fingerprint (none without the header, or for a
    /// body that is not JSON: validation refuses it without claiming anything).
    async fn admit<'r>(
        &self,
        request: &'r Request,
    ) -> Result<(AuthenticatedKey, &'r [u8], Option<KeyedRequest>), Response<Body>> {
        let key = self
            .authenticate(request, Requirement::Scope(Scope::Send))
            .await?;
        let (body, keyed) = admit_body(request, &key)?;
        Ok((key, body, keyed))
    }
}

/// The size cap and the `Idempotency-Key` header of a request authenticated as `key`: the body
/// and the scoped idempotency key with the body's fingerprint (none without the header, or
/// for a body that is not JSON: validation refuses it without claiming anything). The error is
/// the response to answer with.
#[allow(clippy::result_large_err)]
fn admit_body<'r>(
    request: &'r Request,
    key: &AuthenticatedKey,
) -> Result<(&'r [u8], Option<KeyedRequest>), Response<Body>> {
    let body = crate::answers::body_bytes(request);
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
        .into_response());
    }
    let Some(raw_key) = request.headers().get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok((body, None));
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
        .map(|fingerprint| KeyedRequest {
            scoped_key: idempotency_key.scoped(key.id.as_str()),
            fingerprint,
        });
    Ok((body, keyed))
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
