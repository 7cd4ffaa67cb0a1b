//! The suppression endpoints of the send API:
//!
//! - `GET /v1/suppressions?reason=&cursor=&limit=` (scope `read`): one page of active
//!   suppressions, `{"data": [...], "next_cursor": "..." | null}`; `limit` 1 to 100 (default 50).
//! - `GET /v1/suppressions/{address}` (`read`): the entry, or 404 `not_found` when the address is
//!   not suppressed (absent, or past its expiry).
//! - `PUT /v1/suppressions/{address}` (`suppressions:write`): body
//!   `{"reason": "...", "expires_at": "<RFC 3339>"?, "note": "..."?}`; stores (replaces) the entry
//!   and answers 200 with it.
//! - `DELETE /v1/suppressions/{address}` (`suppressions:write`): 204, or 404 when the address was
//!   not suppressed.
//!
//! The three address routes take `?topic=<topic>` to address the entry scoped to that
//! subscription topic (an unsubscribe from mail on it, which stops bulk mail on that topic only)
//! instead of the unscoped one; a topic that is not `[a-z0-9_-]{1,64}` is 422 `invalid_topic`.
//!
//! `{address}` is one percent-encoded path segment (`jane%40example.com`; a literal `@` works
//! too). Addresses are matched case-insensitively and reported lower-cased (see
//! [`mailgate_core::suppression`]). Entries are `{"address", "reason", "created_at",
//! "expires_at", "note", "topic"}` with RFC 3339 times (`expires_at`, `note` and `topic` may be
//! null).

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use mailgate_core::{
    EmailAddress, Requirement, Scope, Suppression, SuppressionError, SuppressionReason,
};
use mailgate_lambda::http::{ApiError, json_response};
use mailgate_services::suppressions::SuppressionAdminError;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::SendApi;
use crate::answers::{not_allowed, store_failed, under, unprocessable};

/// The collection path.
const COLLECTION: &str = "/v1/suppressions";
/// The page size when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;
/// The largest `limit`.
const MAX_LIMIT: usize = 100;

/// Whether `path` (without a trailing slash) is one of the suppression routes.
pub(crate) fn is_suppressions_path(path: &str) -> bool {
    under(path, COLLECTION)
}

/// The service's refusal or failure: a test key's change to an event's entry is 403, a foreign
/// cursor 422; a store failure is logged and the caller gets an opaque answer.
fn refused(err: &SuppressionAdminError) -> Response<Body> {
    match err {
        SuppressionAdminError::LiveKeyRequired(_) => {
            ApiError::new(StatusCode::FORBIDDEN, "live_key_required", err.to_string())
                .with_field("address")
        }
        SuppressionAdminError::InvalidCursor => {
            unprocessable("invalid_cursor", "cursor", err.to_string())
        }
        SuppressionAdminError::Store(e) => {
            return store_failed(
                e,
                "suppression list operation failed",
                "the suppression list",
            );
        }
    }
    .into_response()
}

fn rfc3339(at: OffsetDateTime) -> Value {
    at.format(&Rfc3339).map_or(Value::Null, Value::String)
}

/// The JSON form of an entry.
pub fn suppression_json(entry: &Suppression) -> Value {
    json!({
        "address": entry.address.as_str(),
        "reason": entry.reason.as_str(),
        "created_at": rfc3339(entry.created_at),
        "expires_at": entry.expires_at.map_or(Value::Null, rfc3339),
        "note": entry.note,
        "topic": entry.topic,
    })
}

/// Decodes `%XX` escapes of a path segment (`+` stays a plus, as in paths).
/// Strict by hand: `percent_encoding` passes a malformed `%zz` through unchanged, and `%` is
/// legal in a local part, so a mistyped escape would name another address instead of a 422.
pub(crate) fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The address of the path segment, or the 422 answering a bad one.
fn path_address(segment: &str) -> Result<EmailAddress, ApiError> {
    let decoded = percent_decode(segment).ok_or_else(|| {
        unprocessable(
            "invalid_address",
            "address",
            "the address in the path is not valid percent-encoded UTF-8",
        )
    })?;
    EmailAddress::parse(&decoded)
        .map_err(|e| unprocessable("invalid_address", "address", e.to_string()))
}

/// The body of a PUT, validated into the entry to store.
/// The largest `PUT /v1/suppressions/{address}` body: a reason, a time and a note fit in far less.
pub const MAX_SUPPRESSION_BODY_BYTES: usize = 16 * 1024;

fn entry_from_body(
    address: &EmailAddress,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Suppression, ApiError> {
    if body.len() > MAX_SUPPRESSION_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {MAX_SUPPRESSION_BODY_BYTES} bytes"),
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let Value::Object(fields) = value else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body must be a JSON object",
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "reason" | "expires_at" | "note"))
    {
        return Err(unprocessable(
            "unknown_field",
            unknown,
            format!("unknown field {unknown:?}; expected reason, expires_at, note"),
        ));
    }
    let text = |fields: &Map<String, Value>, name: &str| -> Result<Option<String>, ApiError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(unprocessable(
                "invalid_type",
                name,
                format!("{name} must be a string"),
            )),
        }
    };
    let reason = text(&fields, "reason")?.ok_or_else(|| {
        unprocessable(
            "missing_field",
            "reason",
            "reason is required: hard_bounce, complaint, unsubscribe, soft_bounce_threshold or manual",
        )
    })?;
    let reason = reason
        .parse::<SuppressionReason>()
        .map_err(|e| unprocessable("invalid_reason", "reason", e.to_string()))?;
    let mut entry = Suppression::new(address, reason, now);
    if let Some(expires_at) = text(&fields, "expires_at")? {
        let at = OffsetDateTime::parse(&expires_at, &Rfc3339).map_err(|e| {
            unprocessable(
                "invalid_expires_at",
                "expires_at",
                format!("expires_at must be an RFC 3339 time: {e}"),
            )
        })?;
        entry = entry.expiring_at(at).map_err(|e| match e {
            SuppressionError::ExpiryNotInFuture => unprocessable(
                "invalid_expires_at",
                "expires_at",
                "expires_at must be in the future",
            ),
            other => unprocessable("invalid_expires_at", "expires_at", other.to_string()),
        })?;
    }
    if let Some(note) = text(&fields, "note")? {
        entry = entry
            .with_note(note)
            .map_err(|e| unprocessable("invalid_note", "note", e.to_string()))?;
    }
    Ok(entry)
}

fn not_suppressed(address: &EmailAddress) -> Response<Body> {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{address} is not suppressed"),
    )
    .into_response()
}

impl SendApi {
    /// Routes a request whose path [`is_suppressions_path`].
    pub(crate) async fn suppressions(&self, request: &Request, path: &str) -> Response<Body> {
        let segment = path
            .strip_prefix(COLLECTION)
            .and_then(|rest| rest.strip_prefix('/'));
        let method = request.method();
        let scope = match (segment, method) {
            (None, &Method::GET) | (Some(_), &Method::GET) => Scope::Read,
            (Some(_), &Method::PUT | &Method::DELETE) => Scope::SuppressionsWrite,
            (None, _) => {
                return not_allowed("GET /v1/suppressions");
            }
            (Some(_), _) => {
                return not_allowed("GET, PUT or DELETE /v1/suppressions/{address}");
            }
        };
        let key = match self.authenticate(request, Requirement::Scope(scope)).await {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        let now = OffsetDateTime::now_utc();
        let Some(segment) = segment else {
            return self.list_suppressions(request, now).await;
        };
        let address = match path_address(segment) {
            Ok(address) => address,
            Err(error) => return error.into_response(),
        };
        let query = request.query_string_parameters();
        let topic = match query.first("topic") {
            None => None,
            Some(t) if mailgate_core::unsubscribe::is_valid_topic(t) => Some(t.to_owned()),
            Some(_) => {
                return unprocessable(
                    "invalid_topic",
                    "topic",
                    "`topic` is 1 to 64 characters of a-z, 0-9, `_` and `-`",
                )
                .into_response();
            }
        };
        let topic = topic.as_deref();
        let admin = &self.suppressions;
        match *method {
            Method::PUT => {
                let decode = || entry_from_body(&address, request.body().as_ref(), now);
                match admin
                    .put(&address, topic, key.environment, now, decode)
                    .await
                {
                    Ok(Ok(entry)) => json_response(StatusCode::OK, &suppression_json(&entry)),
                    Ok(Err(invalid)) => invalid.into_response(),
                    Err(e) => refused(&e),
                }
            }
            Method::DELETE => match admin.delete(&address, topic, key.environment, now).await {
                Ok(Some(_)) => {
                    let mut response = Response::new(Body::Empty);
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    response
                }
                Ok(None) => not_suppressed(&address),
                Err(e) => refused(&e),
            },
            _ => match admin.get(&address, topic, now).await {
                Ok(Some(entry)) => json_response(StatusCode::OK, &suppression_json(&entry)),
                Ok(None) => not_suppressed(&address),
                Err(e) => refused(&e),
            },
        }
    }

    async fn list_suppressions(&self, request: &Request, now: OffsetDateTime) -> Response<Body> {
        let query = request.query_string_parameters();
        let param = |name: &str| query.first(name).filter(|v| !v.is_empty());
        let reason = match param("reason").map(str::parse::<SuppressionReason>) {
            None => None,
            Some(Ok(reason)) => Some(reason),
            Some(Err(e)) => {
                return unprocessable("invalid_reason", "reason", e.to_string()).into_response();
            }
        };
        let limit = match param("limit").map(str::parse::<usize>) {
            None => DEFAULT_LIMIT,
            Some(Ok(limit)) if (1..=MAX_LIMIT).contains(&limit) => limit,
            Some(_) => {
                return unprocessable(
                    "invalid_limit",
                    "limit",
                    format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                )
                .into_response();
            }
        };
        match self
            .suppressions
            .list(reason, param("cursor"), limit, now)
            .await
        {
            Ok(page) => json_response(
                StatusCode::OK,
                &json!({
                    "data": page.items.iter().map(suppression_json).collect::<Vec<_>>(),
                    "next_cursor": page.next_cursor,
                }),
            ),
            Err(e) => refused(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn addr() -> EmailAddress {
        EmailAddress::parse("jane@example.com").unwrap()
    }

    fn error_of(error: ApiError) -> Value {
        match error.into_response().body() {
            Body::Text(t) => serde_json::from_str::<Value>(t).unwrap()["error"].clone(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn recognises_only_suppression_paths() {
        assert!(is_suppressions_path("/v1/suppressions"));
        assert!(is_suppressions_path("/v1/suppressions/a%40example.com"));
        assert!(!is_suppressions_path("/v1/suppressionsx"));
        assert!(!is_suppressions_path("/v1/messages"));
    }

    #[test]
    fn path_segments_are_percent_decoded_but_plus_is_kept() {
        assert_eq!(
            path_address("Jane%2Btag%40Example.com").unwrap().as_str(),
            "Jane+tag@example.com"
        );
        assert_eq!(
            path_address("a+b@example.com").unwrap().as_str(),
            "a+b@example.com"
        );
        for bad in [
            "%4",
            "%zz@example.com",
            "%ff%fe@example.com",
            "not-an-address",
        ] {
            let error = path_address(bad).unwrap_err();
            assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
            assert_eq!(error_of(error)["field"], "address");
        }
    }

    #[test]
    fn bodies_are_validated_field_by_field() {
        let now = datetime!(2026-01-01 0:00 UTC);
        let entry = entry_from_body(
            &addr(),
            br#"{"reason":"manual","expires_at":"2026-02-01T00:00:00Z","note":"hi"}"#,
            now,
        )
        .unwrap();
        assert_eq!(entry.reason, SuppressionReason::Manual);
        assert_eq!(entry.expires_at, Some(datetime!(2026-02-01 0:00 UTC)));
        assert_eq!(entry.note.as_deref(), Some("hi"));

        for (body, status, code, field) in [
            (
                &br#"{"reason":"bounced"}"#[..],
                422,
                "invalid_reason",
                "reason",
            ),
            (br#"{}"#, 422, "missing_field", "reason"),
            (br#"{"reason":1}"#, 422, "invalid_type", "reason"),
            (
                br#"{"reason":"manual","expires_at":"2025-12-31T23:59:59Z"}"#,
                422,
                "invalid_expires_at",
                "expires_at",
            ),
            (
                br#"{"reason":"manual","expires_at":"tomorrow"}"#,
                422,
                "invalid_expires_at",
                "expires_at",
            ),
            (
                br#"{"reason":"manual","expiry":"x"}"#,
                422,
                "unknown_field",
                "expiry",
            ),
        ] {
            let error = entry_from_body(&addr(), body, now).unwrap_err();
            assert_eq!(error.status.as_u16(), status);
            let error = error_of(error);
            assert_eq!(error["code"], code);
            assert_eq!(error["field"], field);
        }
        let big = format!(r#"{{"reason":"manual","note":"{}"}}"#, "x".repeat(20_000));
        let error = entry_from_body(&addr(), big.as_bytes(), now).unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        let error = entry_from_body(&addr(), b"[1]", now).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
    }
}
