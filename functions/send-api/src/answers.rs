//! The answers every route module gives the same way: a refused method, a refused field, a
//! store that failed, and the request body as bytes.

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use mailgate_core::{StoreError, StoreErrorKind};
use mailgate_lambda::http::ApiError;

/// Whether `path` (without a trailing slash) is `collection` or one of its sub-paths.
pub(crate) fn under(path: &str, collection: &str) -> bool {
    path == collection
        || path
            .strip_prefix(collection)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// 405 `method_not_allowed`: "use `allowed`".
pub(crate) fn not_allowed(allowed: &str) -> Response<Body> {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("use {allowed}"),
    )
    .into_response()
}

/// 422 with a machine-readable `code` naming the refused `field`.
pub(crate) fn unprocessable(
    code: &'static str,
    field: &str,
    message: impl Into<String>,
) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_field(field)
}

/// A store failed: the cause is logged (`context`), the caller gets an opaque answer. An item
/// that cannot be read, or a write the store refused, is 500 (not the caller's to retry);
/// anything else is 503 "`what` is unavailable; try again".
pub(crate) fn store_failed(err: &StoreError, context: &str, what: &str) -> Response<Body> {
    tracing::error!(error = %err, "{context}");
    match err.kind() {
        StoreErrorKind::Corrupt | StoreErrorKind::ConditionFailed => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error",
        ),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            format!("{what} is unavailable; try again"),
        ),
    }
    .into_response()
}

/// The request body's bytes (empty when there is none).
pub(crate) fn body_bytes(request: &Request) -> &[u8] {
    match request.body() {
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}
