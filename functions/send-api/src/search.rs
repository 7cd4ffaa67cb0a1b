//! Finding messages without their id (scope `read`, the key's environment only):
//!
//! - `GET /v1/messages?recipient=&correlation_id=&tag=&state=&category=&provider=&after=&before=&limit=&cursor=`:
//!   `{"data": [{"id", "state", "category", "created_at", "from", "recipients": [{"address",
//!   "type", "status"}], "tags", "correlation_id", "provider", "last_event": {"type", "at"} |
//!   null}], "next_cursor": "…" | null, "truncated": bool}`, newest first; `truncated` says the
//!   page stopped short because its read budget ran out (`next_cursor` continues it). A bad
//!   filter is 400 naming it (`error.field`).
//! - `GET /v1/recipients/{address}` (`{address}` one percent-encoded segment):
//!   `{"address", "suppressions": [{"address", "reason", "created_at", "expires_at", "note",
//!   "topic"}], "counts": {"<recipient status>": n, …}, "counts_since", "counts_complete",
//!   "messages": [<item as above> + "status" (this address's own)]}`.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use mailgate_core::ports::SearchError;
use mailgate_core::search::{MessageQuery, QueryError};
use mailgate_core::{EmailAddress, Requirement, Scope, UnixMillis};
use mailgate_lambda::http::{ApiError, json_response};
use mailgate_services::search::{listing_json, page_json, time_json};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::SendApi;
use crate::answers::{not_allowed, store_failed};
use crate::suppressions::{percent_decode, suppression_json};

const RECIPIENTS_PREFIX: &str = "/v1/recipients/";

/// Whether `path` is one recipient's path, `/v1/recipients/{address}`.
pub(crate) fn is_recipient_path(path: &str) -> bool {
    path.strip_prefix(RECIPIENTS_PREFIX)
        .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
}

fn bad_query(err: &QueryError) -> Response<Body> {
    ApiError::new(StatusCode::BAD_REQUEST, err.code, err.message.clone())
        .with_field(err.field.clone())
        .into_response()
}

fn failed(err: &SearchError) -> Response<Body> {
    match err {
        SearchError::InvalidCursor => bad_query(&QueryError::invalid_cursor()),
        SearchError::Store(e) => store_failed(e, "message search failed", "message search"),
    }
}

impl SendApi {
    /// `GET /v1/messages`: one page of the key's environment's messages matching the filters.
    pub(crate) async fn find_messages(&self, request: &Request) -> Response<Body> {
        let key = match self
            .authenticate(request, Requirement::Scope(Scope::Read))
            .await
        {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        let params: Vec<(String, String)> = request
            .query_string_parameters()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let query = match MessageQuery::parse(key.environment, &params) {
            Ok(query) => query,
            Err(e) => return bad_query(&e),
        };
        match self.finder.find(&query).await {
            Ok(page) => json_response(StatusCode::OK, &page_json(&page)),
            Err(e) => failed(&e),
        }
    }

    /// `GET /v1/recipients/{address}`: the recipient view.
    pub(crate) async fn recipient(&self, request: &Request, path: &str) -> Response<Body> {
        if request.method() != Method::GET {
            return not_allowed("GET /v1/recipients/{address}");
        }
        let key = match self
            .authenticate(request, Requirement::Scope(Scope::Read))
            .await
        {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        let segment = path.strip_prefix(RECIPIENTS_PREFIX).unwrap_or_default();
        let Some(address) = percent_decode(segment)
            .as_deref()
            .and_then(|a| EmailAddress::parse(a).ok())
        else {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_address",
                "the path names one email address (percent-encoded)",
            )
            .with_field("address")
            .into_response();
        };
        let now = UnixMillis::from(OffsetDateTime::now_utc());
        match self.finder.recipient(key.environment, &address, now).await {
            Ok(view) => {
                let messages: Vec<Value> = view
                    .messages
                    .iter()
                    .map(|m| {
                        let mut item = listing_json(m);
                        item["status"] = json!(view.status_in(&m.record).as_str());
                        item
                    })
                    .collect();
                json_response(
                    StatusCode::OK,
                    &json!({
                        "address": view.address.as_str(),
                        "suppressions": view.suppressions.iter().map(suppression_json).collect::<Vec<_>>(),
                        "counts": view.counts,
                        "counts_since": time_json(now.saturating_add_ms(
                            -mailgate_services::search::COUNT_WINDOW_DAYS * 24 * 60 * 60 * 1000,
                        )),
                        "counts_complete": view.counts_complete,
                        "messages": messages,
                    }),
                )
            }
            Err(e) => failed(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_only_single_recipient_paths() {
        assert!(is_recipient_path("/v1/recipients/jane%40example.com"));
        assert!(!is_recipient_path("/v1/recipients/"));
        assert!(!is_recipient_path("/v1/recipients/a/b"));
        assert!(!is_recipient_path("/v1/messages"));
    }
}
