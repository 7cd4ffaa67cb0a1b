//! The template routes of the send API (the logic is `mailgate_services::templates`):
//!
//! - `POST /v1/templates` (`templates:write`): `{"name", "subject", "html"?, "text"?}` → 201 with
//!   the template (version 1, published).
//! - `GET /v1/templates?limit=&cursor=` (`read`): one page of the key's environment's templates.
//! - `GET /v1/templates/{id}` (`read`): the template with its published version's content.
//! - `PUT /v1/templates/{id}` (`templates:write`): a new immutable version (`name`?, `subject`,
//!   `html`?, `text`?, `publish`? default true) → 200.
//! - `DELETE /v1/templates/{id}` (`templates:write`): 204.
//! - `POST /v1/templates/{id}/render` (`read`): `{"version"?, "data"?}` → the rendering.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use mailgate_core::{Requirement, Scope};
use mailgate_lambda::http::{ApiError, json_response};
use mailgate_services::templates::TemplateFailure;

use crate::SendApi;
use crate::answers::{body_bytes, not_allowed, under};

const COLLECTION: &str = "/v1/templates";
const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 100;

/// Whether `path` (without a trailing slash) is one of the template routes.
pub(crate) fn is_templates_path(path: &str) -> bool {
    under(path, COLLECTION)
}

fn failed(f: &TemplateFailure) -> Response<Body> {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &f.to_json())
}

fn answer(
    status: StatusCode,
    result: Result<serde_json::Value, TemplateFailure>,
) -> Response<Body> {
    match result {
        Ok(v) => json_response(status, &v),
        Err(f) => failed(&f),
    }
}

impl SendApi {
    /// Routes `/v1/templates…`.
    pub(crate) async fn templates(&self, request: &Request, path: &str) -> Response<Body> {
        let rest = path.strip_prefix(COLLECTION).unwrap_or_default();
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let scope = match (request.method(), segments.as_slice()) {
            (&Method::GET, [] | [_]) | (&Method::POST, [_, "render"]) => Scope::Read,
            (&Method::POST, []) | (&Method::PUT | &Method::DELETE, [_]) => Scope::TemplatesWrite,
            (_, []) => return not_allowed("GET or POST /v1/templates"),
            (_, [_]) => return not_allowed("GET, PUT or DELETE /v1/templates/{id}"),
            (_, [_, "render"]) => return not_allowed("POST /v1/templates/{id}/render"),
            _ => {
                return ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no route for {} {}", request.method(), request.uri().path()),
                )
                .into_response();
            }
        };
        let key = match self.authenticate(request, Requirement::Scope(scope)).await {
            Ok(key) => key,
            Err(refused) => return refused,
        };
        let env = key.environment;
        let templates = &self.templates;
        match (request.method(), segments.as_slice()) {
            (&Method::POST, []) => answer(
                StatusCode::CREATED,
                templates.create(env, body_bytes(request)).await,
            ),
            (&Method::GET, []) => {
                let query = request.query_string_parameters();
                let limit = match query.first("limit").map(str::parse::<u32>) {
                    None => DEFAULT_LIMIT,
                    Some(Ok(n @ 1..=MAX_LIMIT)) => n,
                    Some(_) => {
                        return ApiError::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_limit",
                            format!("`limit` must be a whole number from 1 to {MAX_LIMIT}"),
                        )
                        .with_field("limit")
                        .into_response();
                    }
                };
                answer(
                    StatusCode::OK,
                    templates.list(env, limit, query.first("cursor")).await,
                )
            }
            (_, []) => not_allowed("GET or POST /v1/templates"),
            (&Method::GET, [id]) => answer(StatusCode::OK, templates.get(env, id).await),
            (&Method::PUT, [id]) => answer(
                StatusCode::OK,
                templates.update(env, id, body_bytes(request)).await,
            ),
            (&Method::DELETE, [id]) => match templates.delete(env, id).await {
                Ok(()) => Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(Body::Empty)
                    .unwrap_or_default(),
                Err(f) => failed(&f),
            },
            (_, [_]) => not_allowed("GET, PUT or DELETE /v1/templates/{id}"),
            (&Method::POST, [id, "render"]) => answer(
                StatusCode::OK,
                templates.preview(env, id, body_bytes(request)).await,
            ),
            (_, [_, "render"]) => not_allowed("POST /v1/templates/{id}/render"),
            _ => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route for {} {}", request.method(), request.uri().path()),
            )
            .into_response(),
        }
    }
}
