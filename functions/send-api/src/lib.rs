//! `send-api`: the HTTP API behind API Gateway. Today it serves `GET /v1/health`
//! (unauthenticated) and `GET /v1/keys/self` (any valid API key); the send, status and
//! suppression routes arrive with the send issue.

pub mod auth;
mod messages;
mod suppressions;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use mailgate_aws::{
    AwsClients, ConfigError, DynamoDbApiKeys, Queue, ResourceNames, Table, check_resources,
};
use mailgate_core::{AuthenticatedKey, Requirement};
use mailgate_lambda::health::health_response;
use mailgate_lambda::http::{ApiError, json_response};

use crate::auth::Authenticator;

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
    auth: Authenticator,
}

impl SendApi {
    /// Wires the API.
    pub fn new(config: SendApiConfig, clients: AwsClients) -> Self {
        let auth = Authenticator::new(DynamoDbApiKeys::new(
            clients.dynamodb.clone(),
            config.names.table(Table::ApiKeys),
        ));
        Self {
            config,
            clients,
            auth,
        }
    }

    /// Authenticates the request's `Authorization: Bearer <key>` for a route with
    /// `requirement`: the caller's key, or the 401/403 (or 503) response to answer with.
    pub async fn authenticate(
        &self,
        request: &Request,
        requirement: Requirement,
    ) -> Result<AuthenticatedKey, Response<Body>> {
        self.auth.authenticate(request, requirement).await
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
            (&Method::GET, "/v1/keys/self") => self.key_self(&request).await,
            (_, "/v1/keys/self") => ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET /v1/keys/self",
            )
            .into_response(),
            (_, p) if suppressions::is_suppressions_path(p) => self.suppressions(&request, p).await,
            (_, p) if messages::is_message_path(p) => self.message(&request, p).await,
            _ => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no route for {} {}", request.method(), request.uri().path()),
            )
            .into_response(),
        }
    }

    /// `GET /v1/keys/self`: the calling key's id, label, environment and scopes.
    async fn key_self(&self, request: &Request) -> Response<Body> {
        match self.authenticate(request, Requirement::AnyKey).await {
            Ok(key) => json_response(StatusCode::OK, &key),
            Err(refused) => refused,
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
