//! The read API of received (inbound) email, scope `inbound:read`:
//!
//! - `GET /v1/inbound?recipient=&thread=&after=&before=&limit=&cursor=`: one page, newest
//!   first, `{"data": [...], "next_cursor": "..." | null}` (records without `text`/`html`);
//!   `thread` is our `msg_…` id (its replies), `recipient` the envelope recipient, `after` /
//!   `before` RFC 3339 instants (both exclusive), `limit` 1 to 100 (default 50). Each filter
//!   reads its own index of the inbound table (`by-thread`, `by-recipient`, `by-received`).
//! - `GET /v1/inbound/{id}`: the whole record, bodies included.
//! - `GET /v1/inbound/{id}/raw`: `{"url", "expires_at"}`, a presigned S3 link to the raw MIME.
//! - `GET /v1/inbound/{id}/attachments/{index}`: the attachment's metadata with `url` and
//!   `expires_at`, a presigned S3 link to its bytes.
//!
//! Links are answered as JSON rather than as a redirect: a client that follows a redirect with
//! the API key's `Authorization` header still attached (some keep it across origins) would send
//! it to S3, which refuses a request carrying two authentication mechanisms.
//!
//! Received mail belongs to no key environment (it comes from outside): every key holding
//! `inbound:read` reads all of it, so grant that scope only to keys that may read customer mail.
//! An unknown or malformed id is 404 `not_found`; a bad query parameter is 422 with its field.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use mailgate_core::inbound::{
    DownloadLink, InboundCursor, InboundListing, InboundQuery, inbound_json,
};
use mailgate_core::{InboundId, MessageId, Requirement, Scope, UnixMillis};
use mailgate_lambda::http::{ApiError, json_response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::SendApi;
use crate::answers::{not_allowed, store_failed, under, unprocessable};

/// The collection path.
const COLLECTION: &str = "/v1/inbound";
/// The page size when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;
/// The largest `limit`.
const MAX_LIMIT: usize = 100;

/// Whether `path` (without a trailing slash) is one of the inbound routes.
pub(crate) fn is_inbound_path(path: &str) -> bool {
    under(path, COLLECTION)
}

/// The route a path names.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    List,
    One(&'a str),
    Raw(&'a str),
    Attachment(&'a str, &'a str),
    Unknown,
}

fn route(path: &str) -> Route<'_> {
    let Some(rest) = path.strip_prefix(COLLECTION) else {
        return Route::Unknown;
    };
    let parts: Vec<&str> = rest.split('/').skip(1).collect();
    match parts.as_slice() {
        [] => Route::List,
        [id] => Route::One(id),
        [id, "raw"] => Route::Raw(id),
        [id, "attachments", index] => Route::Attachment(id, index),
        _ => Route::Unknown,
    }
}

fn not_found(what: &str) -> Response<Body> {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}")).into_response()
}

/// The store failed: the cause is logged, the caller gets an opaque answer.
fn rfc3339(at: UnixMillis) -> Value {
    at.to_datetime()
        .format(&Rfc3339)
        .map_or(Value::Null, Value::String)
}

fn link_json(link: &DownloadLink) -> Value {
    json!({"url": link.url, "expires_at": rfc3339(link.expires_at)})
}

/// An RFC 3339 query parameter, or `refusal` (the 422 naming it).
fn instant(
    value: Option<&str>,
    refusal: impl Fn() -> ApiError,
) -> Result<Option<UnixMillis>, ApiError> {
    value
        .map(|v| {
            OffsetDateTime::parse(v, &Rfc3339)
                .map(UnixMillis::from)
                .map_err(|_| refusal())
        })
        .transpose()
}

const INSTANT_HELP: &str = "must be an RFC 3339 date-time such as 2026-12-04T10:00:00Z";

/// The listing a request asks for, or the 422 for its first bad parameter.
fn list_query(request: &Request) -> Result<InboundQuery, ApiError> {
    let params = request.query_string_parameters();
    let param = |name: &str| {
        params
            .first(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let recipient = param("recipient").map(|r| r.trim().to_ascii_lowercase());
    let thread = param("thread")
        .map(|t| {
            MessageId::parse(&t).map_err(|_| {
                unprocessable(
                    "invalid_thread",
                    "thread",
                    "thread must be one of our message ids (msg_…)",
                )
            })
        })
        .transpose()?;
    let after = instant(param("after").as_deref(), || {
        unprocessable("invalid_after", "after", format!("after {INSTANT_HELP}"))
    })?;
    let before = instant(param("before").as_deref(), || {
        unprocessable("invalid_before", "before", format!("before {INSTANT_HELP}"))
    })?;
    let limit = match param("limit").map(|l| l.parse::<usize>()) {
        None => DEFAULT_LIMIT,
        Some(Ok(limit)) if (1..=MAX_LIMIT).contains(&limit) => limit,
        Some(_) => {
            return Err(unprocessable(
                "invalid_limit",
                "limit",
                format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
            ));
        }
    };
    let cursor = param("cursor")
        .map(|c| {
            InboundCursor::decode(&c)
                .map_err(|e| unprocessable("invalid_cursor", "cursor", e.to_string()))
        })
        .transpose()?;
    let listing = match (thread, recipient) {
        (Some(thread), recipient) => InboundListing::Thread { thread, recipient },
        (None, Some(recipient)) => InboundListing::Recipient(recipient),
        (None, None) => InboundListing::All,
    };
    Ok(InboundQuery {
        listing,
        after,
        before,
        limit,
        cursor,
    })
}

impl SendApi {
    /// Routes a request whose path [`is_inbound_path`].
    pub(crate) async fn inbound(&self, request: &Request, path: &str) -> Response<Body> {
        let route = route(path);
        if route == Route::Unknown {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route for {} {}", request.method(), path),
            )
            .into_response();
        }
        if request.method() != Method::GET {
            return not_allowed(&format!("GET {path}"));
        }
        if let Err(refused) = self
            .authenticate(request, Requirement::Scope(Scope::InboundRead))
            .await
        {
            return refused;
        }
        let reads = &self.inbound;
        let id_of = |raw: &str| InboundId::parse(raw).ok();
        match route {
            Route::List => {
                let query = match list_query(request) {
                    Ok(query) => query,
                    Err(refused) => return refused.into_response(),
                };
                match reads.list(&query).await {
                    Ok(page) => json_response(
                        StatusCode::OK,
                        &json!({
                            "data": page.items.iter().map(|r| inbound_json(r, false)).collect::<Vec<_>>(),
                            "next_cursor": page.next_cursor.map(|c| c.encode()),
                        }),
                    ),
                    Err(e) => store_failed(&e, "inbound store operation failed", "received mail"),
                }
            }
            Route::One(raw) => {
                let Some(id) = id_of(raw) else {
                    return not_found(&format!("received message {raw}"));
                };
                match reads.get(&id).await {
                    Ok(Some(record)) => json_response(StatusCode::OK, &inbound_json(&record, true)),
                    Ok(None) => not_found(&format!("received message {raw}")),
                    Err(e) => store_failed(&e, "inbound store operation failed", "received mail"),
                }
            }
            Route::Raw(raw) => {
                let Some(id) = id_of(raw) else {
                    return not_found(&format!("received message {raw}"));
                };
                match reads.raw_link(&id).await {
                    Ok(Some(link)) => json_response(StatusCode::OK, &link_json(&link)),
                    Ok(None) => not_found(&format!("received message {raw}")),
                    Err(e) => store_failed(&e, "inbound store operation failed", "received mail"),
                }
            }
            Route::Attachment(raw, index) => {
                let (Some(id), Ok(index)) = (id_of(raw), index.parse::<u32>()) else {
                    return not_found(&format!("attachment {index} of {raw}"));
                };
                match reads.attachment_link(&id, index).await {
                    Ok(Some((attachment, link))) => {
                        let mut body = json!(attachment);
                        body["url"] = json!(link.url);
                        body["expires_at"] = rfc3339(link.expires_at);
                        json_response(StatusCode::OK, &body)
                    }
                    Ok(None) => not_found(&format!("attachment {index} of {raw}")),
                    Err(e) => store_failed(&e, "inbound store operation failed", "received mail"),
                }
            }
            Route::Unknown => not_found(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_the_collection_a_record_its_raw_message_and_its_attachments() {
        assert!(is_inbound_path("/v1/inbound"));
        assert!(is_inbound_path("/v1/inbound/inb_x"));
        assert!(!is_inbound_path("/v1/inboundx"));
        assert_eq!(route("/v1/inbound"), Route::List);
        assert_eq!(route("/v1/inbound/inb_x"), Route::One("inb_x"));
        assert_eq!(route("/v1/inbound/inb_x/raw"), Route::Raw("inb_x"));
        assert_eq!(
            route("/v1/inbound/inb_x/attachments/2"),
            Route::Attachment("inb_x", "2")
        );
        assert_eq!(route("/v1/inbound/inb_x/other"), Route::Unknown);
    }
}
