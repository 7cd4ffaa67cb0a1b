//! `send-api`: the HTTP API behind API Gateway: `GET /v1/health` (the verdict for anyone, the
//! full report for a key with the `read` scope),
//! `GET /v1/keys/self` (any valid API key), `POST /v1/messages` and `POST /v1/messages/batch`
//! (scope `send`), `GET|DELETE /v1/messages/{id}`, the suppression routes, the template
//! routes (`/v1/templates…`) and the read API of received email (`/v1/inbound…`, scope
//! `inbound:read`).
//!
//! Each route module only decodes the request, calls one service of `mailgate-services`
//! (authentication, accept, message reads, suppression administration, templates) and encodes
//! its answer; [`SendApi::new`] picks the DynamoDB and SQS adapters behind the services' ports.

pub mod auth;
mod inbound;
mod messages;
pub mod send;
mod suppressions;
mod templates;

use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use mailgate_aws::{AwsClients, ConfigError, DynamoDbApiKeys, Queue, ResourceNames, Table};
use mailgate_core::unsubscribe::{self, UnsubscribeLinks};
use mailgate_core::{AuthenticatedKey, Requirement};
use mailgate_lambda::health::{HealthCheck, health_response, public_health_response};
use mailgate_lambda::http::{ApiError, json_response};
use mailgate_lambda::wiring::{WiringError, message_delivery, message_intake};
use mailgate_providers::config::{ProvidersConfig, SECRET_VARIABLES};
use mailgate_services::accept::{AcceptSettings, MessageIntake};
use mailgate_services::auth::Authentication;
use mailgate_services::messages::MessageReads;
use mailgate_services::suppressions::SuppressionAdministration;

/// The Lambda function name.
pub const FUNCTION_NAME: &str = "send-api";
/// The tables the send API reads and writes.
pub const TABLES: &[Table] = &[
    Table::Messages,
    Table::Idempotency,
    Table::Suppressions,
    Table::ApiKeys,
    Table::Control,
    Table::Templates,
];
/// The queues the send API writes.
pub const QUEUES: &[Queue] = &[Queue::Send];

/// How long a completed idempotency record is replayed, in hours (default 24).
pub const IDEMPOTENCY_RETENTION_VAR: &str = "IDEMPOTENCY_RETENTION_HOURS";
/// The default idempotency retention.
pub const DEFAULT_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Typed configuration of the send API, loaded once per cold start.
#[derive(Debug, Clone)]
pub struct SendApiConfig {
    /// Tables and queues.
    pub names: ResourceNames,
    /// The providers to send through, their credentials and the send budget.
    pub providers: ProvidersConfig,
    /// How long a completed `Idempotency-Key` replays its response.
    pub idempotency_retention: Duration,
    /// One-click unsubscribe links, when configured.
    pub unsubscribe: Option<UnsubscribeLinks>,
    /// Where received mail is stored (`INBOUND_TABLE`, `INBOUND_BUCKET`).
    pub inbound: mailgate_lambda::inbound::InboundSettings,
    /// Reply addresses for `"track_replies": true` (`INBOUND_DOMAIN`, signed with
    /// `UNSUBSCRIBE_SIGNING_KEYS`), when both are set.
    pub replies: Option<mailgate_core::ReplyAddresses>,
}

impl SendApiConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `lookup`; every problem is reported at once.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let names = ResourceNames::from_lookup(TABLES, QUEUES, &lookup)
            .map_err(|e| problems.extend(e.problems))
            .ok();
        let providers = ProvidersConfig::from_lookup(&lookup)
            .map_err(|e| problems.extend(e.problems))
            .ok();
        let idempotency_retention = match lookup(IDEMPOTENCY_RETENTION_VAR)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        {
            None => DEFAULT_IDEMPOTENCY_RETENTION,
            Some(v) => match v.parse::<u64>() {
                Ok(hours @ 1..=8760) => Duration::from_secs(hours * 3600),
                _ => {
                    problems.push(format!(
                        "{IDEMPOTENCY_RETENTION_VAR} must be a whole number of hours from 1 to 8760, got {v:?}"
                    ));
                    DEFAULT_IDEMPOTENCY_RETENTION
                }
            },
        };
        let unsubscribe = unsubscribe::links_from_lookup(&lookup)
            .map_err(|e| problems.push(e))
            .ok()
            .flatten();
        let inbound =
            mailgate_lambda::inbound::InboundSettings::from_lookup(&lookup, &mut problems);
        let replies = unsubscribe::reply_addresses_from_lookup(&lookup)
            .map_err(|e| problems.push(e))
            .ok()
            .flatten();
        match (names, providers, inbound) {
            (Some(names), Some(providers), Some(inbound)) if problems.is_empty() => Ok(Self {
                names,
                providers,
                idempotency_retention,
                unsubscribe,
                inbound,
                replies,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// The send API cannot be wired from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum SendApiError {
    /// The providers or the send service could not be wired.
    #[error(transparent)]
    Wiring(#[from] WiringError),
}

/// Cold start: resolves the provider secrets (`ssm:`/`secretsmanager:` references when
/// deployed), loads the configuration, wires the API and serves requests.
pub async fn run() -> Result<(), lambda_http::Error> {
    mailgate_lambda::init_tracing();
    let sdk = mailgate_aws::load_sdk_config().await;
    let variables: Vec<&str> = SECRET_VARIABLES
        .iter()
        .copied()
        .chain([unsubscribe::SIGNING_KEYS_VAR])
        .collect();
    let secrets =
        mailgate_aws::resolve_from_env(&mailgate_aws::SsmClient::new(&sdk), &variables).await?;
    let config = SendApiConfig::from_lookup(secrets.lookup_or_env())?;
    let api = SendApi::new(config, AwsClients::new(&sdk))?;
    let api = &api;
    lambda_http::run(lambda_http::service_fn(move |request: Request| async move {
        Ok::<_, lambda_http::Error>(api.handle(request).await)
    }))
    .await
}

/// The send API with its clients.
#[derive(Debug, Clone)]
pub struct SendApi {
    auth: Authentication,
    intake: Arc<MessageIntake>,
    templates: mailgate_services::templates::Templates,
    messages: MessageReads,
    suppressions: SuppressionAdministration,
    inbound: mailgate_services::inbound::InboundReads,
    health: Arc<HealthCheck>,
}

impl SendApi {
    /// Wires the API: the key check, and the send path over the configured providers.
    pub fn new(config: SendApiConfig, clients: AwsClients) -> Result<Self, SendApiError> {
        let auth = Authentication::new(Arc::new(DynamoDbApiKeys::new(
            clients.dynamodb.clone(),
            config.names.table(Table::ApiKeys),
        )));
        let delivery = message_delivery(&clients, &config.names, &config.providers)?;
        let settings = AcceptSettings {
            send_budget: config.providers.send_budget,
            idempotency_retention: config.idempotency_retention,
            limits: mailgate_core::SendLimits::default(),
            unsubscribe: config.unsubscribe.clone(),
            replies: config.replies.clone(),
        };
        let intake = message_intake(&clients, &config.names, Arc::new(delivery), settings);
        let health = Arc::new(HealthCheck::new(clients.clone(), config.names.clone()));
        let templates = mailgate_services::templates::Templates::new(
            Arc::new(mailgate_aws::DynamoDbTemplates::new(
                clients.dynamodb.clone(),
                config.names.table(Table::Templates),
            )),
            Arc::new(mailgate_core::SystemClock),
        );
        let suppressions =
            SuppressionAdministration::new(Arc::new(mailgate_aws::DynamoDbSuppressionList::new(
                clients.dynamodb.clone(),
                config.names.table(Table::Suppressions),
            )));
        let messages = MessageReads::new(Arc::new(mailgate_aws::DynamoDbMessages::new(
            clients.dynamodb.clone(),
            config.names.table(Table::Messages).to_owned(),
        )));
        let inbound = mailgate_lambda::inbound::inbound_reads(&clients, &config.inbound);
        Ok(Self {
            auth,
            intake: Arc::new(intake),
            templates,
            messages,
            suppressions,
            inbound,
            health,
        })
    }

    /// Authenticates the request's `Authorization: Bearer <key>` for a route with
    /// `requirement`: the caller's key, or the 401/403 (or 503) response to answer with.
    pub async fn authenticate(
        &self,
        request: &Request,
        requirement: Requirement,
    ) -> Result<AuthenticatedKey, Response<Body>> {
        auth::authenticate(&self.auth, request, requirement).await
    }

    /// Routes one request.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let path = request.uri().path().trim_end_matches('/');
        match (request.method(), path) {
            (&Method::GET | &Method::HEAD, "/v1/health") => self.health(&request).await,
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
            (&Method::POST, "/v1/messages") => self.send(&request).await,
            (&Method::POST, "/v1/messages/batch") => self.send_batch(&request).await,
            (_, "/v1/messages") => ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use POST /v1/messages",
            )
            .into_response(),
            (_, "/v1/messages/batch") => ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use POST /v1/messages/batch",
            )
            .into_response(),
            (_, p) if suppressions::is_suppressions_path(p) => self.suppressions(&request, p).await,
            (_, p) if templates::is_templates_path(p) => self.templates(&request, p).await,
            (_, p) if messages::is_message_path(p) => self.message(&request, p).await,
            (_, p) if inbound::is_inbound_path(p) => self.inbound(&request, p).await,
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

    /// `GET /v1/health`: the verdict for anyone; with an `Authorization` header, the full
    /// report for a key with the `read` scope (any other key is refused as on every route).
    async fn health(&self, request: &Request) -> Response<Body> {
        if request
            .headers()
            .contains_key(lambda_http::http::header::AUTHORIZATION)
        {
            if let Err(refused) = self
                .authenticate(request, Requirement::Scope(mailgate_core::Scope::Read))
                .await
            {
                return refused;
            }
            let report = self.health.report().await;
            return health_response(FUNCTION_NAME, &report);
        }
        let report = self.health.report().await;
        public_health_response(&report)
    }
}
