//! `GET /v1/stats` (scope `read`): the delivery statistics of the key's environment.
//!
//! Query: `after`, `before` (RFC 3339; widened to whole buckets, UTC; default the last day by
//! hour or the last 7 days by day), `granularity` (`hour` | `day`, default `hour`), `group_by`
//! (`provider` | `category` | `tag`). The range is at most 31 days. A bad or unknown parameter
//! is 400 with the parameter in `error.field`. The answer is
//! [`report_json`](mailgate_services::stats::report_json).

use lambda_http::RequestExt;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use mailgate_core::{Requirement, Scope, StatsQuery, UnixMillis};
use mailgate_lambda::http::{ApiError, json_response};
use mailgate_services::stats::report_json;
use time::OffsetDateTime;

use crate::SendApi;

/// The route's path.
pub(crate) const PATH: &str = "/v1/stats";

impl SendApi {
    /// `GET /v1/stats`.
    pub(crate) async fn stats(&self, request: &Request) -> Response<Body> {
        if request.method() != Method::GET {
            return crate::answers::not_allowed("GET /v1/stats");
        }
        let key = match self
            .authenticate(request, Requirement::Scope(Scope::Read))
            .await
        {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        let params = request.query_string_parameters();
        let now = UnixMillis::from(OffsetDateTime::now_utc());
        let query = match StatsQuery::parse(params.iter(), now) {
            Ok(query) => query,
            Err(e) => {
                return ApiError::new(StatusCode::BAD_REQUEST, e.code, e.message)
                    .with_field(e.field)
                    .into_response();
            }
        };
        match self.stats.report(key.environment, &query).await {
            Ok(series) => json_response(StatusCode::OK, &report_json(&query, &series)),
            Err(err) => {
                tracing::error!(error = %err, "reading the delivery statistics failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    "the statistics are unavailable; try again",
                )
                .into_response()
            }
        }
    }
}
