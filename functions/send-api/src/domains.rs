//! The sender-domain routes of the send API (the logic is `mailgate_services::domains`):
//!
//! - `POST /v1/domains` (`domains:write`): `{"domain", "mail_from_subdomain"?}` → 201 with the
//!   SES identity's status and the DNS records to publish.
//! - `GET /v1/domains` (`read`): the domain identities.
//! - `GET /v1/domains/{domain}` (`read`): SES's verification and DKIM status and a live DNS
//!   check of every record, in words.
//! - `DELETE /v1/domains/{domain}` (`domains:write`): 204.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use mailgate_core::{Requirement, Scope};
use mailgate_lambda::http::{ApiError, json_response};
use mailgate_services::domains::DomainFailure;

use crate::SendApi;
use crate::answers::{body_bytes, not_allowed};

const COLLECTION: &str = "/v1/domains";

/// Whether `path` (without a trailing slash) is one of the domain routes.
pub(crate) fn is_domains_path(path: &str) -> bool {
    path == COLLECTION
        || path
            .strip_prefix(COLLECTION)
            .is_some_and(|rest| rest.starts_with('/'))
}

fn failed(f: &DomainFailure) -> Response<Body> {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &f.to_json())
}

fn answer(status: StatusCode, result: Result<serde_json::Value, DomainFailure>) -> Response<Body> {
    match result {
        Ok(v) => json_response(status, &v),
        Err(f) => failed(&f),
    }
}

impl SendApi {
    /// Routes `/v1/domains…`.
    pub(crate) async fn domains(&self, request: &Request, path: &str) -> Response<Body> {
        let rest = path.strip_prefix(COLLECTION).unwrap_or_default();
        let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let scope = match (request.method(), segments.as_slice()) {
            (&Method::GET, [] | [_]) => Scope::Read,
            (&Method::POST, []) | (&Method::DELETE, [_]) => Scope::DomainsWrite,
            (_, []) => return not_allowed("GET or POST /v1/domains"),
            (_, [_]) => return not_allowed("GET or DELETE /v1/domains/{domain}"),
            _ => {
                return ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("no route for {} {}", request.method(), request.uri().path()),
                )
                .into_response();
            }
        };
        if let Err(refused) = self.authenticate(request, Requirement::Scope(scope)).await {
            return refused;
        }
        let domains = &self.domains;
        match (request.method(), segments.as_slice()) {
            (&Method::POST, []) => answer(
                StatusCode::CREATED,
                domains.create(body_bytes(request)).await,
            ),
            (&Method::GET, []) => answer(StatusCode::OK, domains.list().await),
            (&Method::GET, [domain]) => answer(StatusCode::OK, domains.check(domain).await),
            (&Method::DELETE, [domain]) => match domains.delete(domain).await {
                Ok(()) => Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(Body::Empty)
                    .unwrap_or_default(),
                Err(f) => failed(&f),
            },
            _ => not_allowed("GET, POST or DELETE /v1/domains[/{domain}]"),
        }
    }
}
