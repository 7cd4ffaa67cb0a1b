//! `send-api`: the HTTP API behind API Gateway. Today it serves `GET /v1/health`; the send,
//! status and suppression routes arrive with the send issue.

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use mailgate_aws::{AwsClients, ConfigError, Queue, ResourceNames, Table, check_resources};
use mailgate_lambda::health::health_response;
use mailgate_lambda::http::ApiError;

/// The Lambda function name.
pub const FUNCTION_NAME: &str = "send-api";
/// The tables the send API reads and writes.
pub const TABLES: &[Table] = &[
    Table::Messages,
    Table::Idempotency,
    Table::Suppressions,
    Table::ApiKeys,
    Table::Control,
];
/// The queues the send API writes.
pub const QUEUES: &[Queue] = &[Queue::Send];

/// Typed configuration of the send API, loaded once per cold start.
#[derive(Debug, Clone)]
pub struct SendApiConfig {
    /// Tables and queues.
    pub names: ResourceNames,
}

impl SendApiConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            names: ResourceNames::from_lookup(TABLES, QUEUES, lookup)?,
        })
    }
}

/// The send API with its clients.
#[derive(Debug, Clone)]
pub struct SendApi {
    config: SendApiConfig,
    clients: AwsClients,
}

impl SendApi {
    /// Wires the API.
    pub fn new(config: SendApiConfig, clients: AwsClients) -> Self {
        Self { config, clients }
    }

    /// Routes one request.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let path = request.uri().path().trim_end_matches('/');
        match (request.method(), path) {
            (&Method::GET | &Method::HEAD, "/v1/health") => self.health().await,
            (_, "/v1/health") => ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET /v1/health",
            )
            .into_response(),
            _ => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route for {} {}", request.method(), request.uri().path()),
            )
            .into_response(),
        }
    }

    async fn health(&self) -> Response<Body> {
        let report = check_resources(
            &self.clients.dynamodb,
            &self.clients.sqs,
            &self.config.names,
        )
        .await;
        health_response(FUNCTION_NAME, &report)
    }
}
