//! `send-api`: the HTTP API behind API Gateway: `GET /v1/health` (the verdict for anyone, the
//! full report for a key with the `read` scope),
//! `GET /v1/keys/self` (any valid API key), `POST /v1/messages` and `POST /v1/messages/batch`
//! (scope `send`), `GET|DELETE /v1/messages/{id}`, `GET /v1/messages` (search) and
//! `GET /v1/recipients/{address}`, the suppression routes, the template routes
//! (`/v1/templates…`), `GET /v1/stats` (scope `read`), the sender-domain routes
//! (`/v1/domains…`) and the read API of received email (`/v1/inbound…`, scope `inbound:read`).
//!
//! Each route module only decodes the request, calls one service of `mailgate-services`
//! (authentication, accept, message reads, suppression administration, templates) and encodes
//! its answer; [`SendApi::new`] picks the DynamoDB and SQS adapters behind the services' ports.

mod answers;
pub mod auth;
mod domains;
mod inbound;
mod messages;
pub mod search;
pub mod send;
mod stats;
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
use mailgate_services::domains::{SenderDomainGate, SenderDomains};
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
pub const QUEUES: &[Queue] = &[Queue::Send, Queue::Events];

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
    /// The DNS server the domain check asks (`DNS_RESOLVER`); `None`: the system's.
    pub dns_resolver: Option<std::net::SocketAddr>,
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
        let dns_resolver =
            mailgate_aws::parse_resolver(lookup(mailgate_aws::DNS_RESOLVER_VAR).as_deref())
                .map_err(|e| problems.push(e.to_string()))
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
                dns_resolver,
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
    let sdk = mailgate_aws::function_sdk_config();
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
    domains: SenderDomains,
    messages: MessageReads,
    finder: mailgate_services::search::MessageFinder,
    suppressions: SuppressionAdministration,
    stats: mailgate_services::stats::DeliveryStatistics,
    inbound: mailgate_services::inbound::InboundReads,
    health: Arc<HealthCheck>,
}

impl SendApi {
    /// Wires the API: the key check, and the send path over the configured providers.
    pub fn new(config: SendApiConfig, clients: AwsClients) -> Result<Self, SendApiError> {
        let db = clients.dynamodb_tables(&config.names);
        let auth = Authentication::new(Arc::new(DynamoDbApiKeys::on(db.table(Table::ApiKeys))));
        let delivery = message_delivery(&clients, &config.names, &config.providers)?;
        let settings = AcceptSettings {
            send_budget: config.providers.send_budget,
            idempotency_retention: config.idempotency_retention,
            limits: mailgate_core::SendLimits::default(),
            unsubscribe: config.unsubscribe.clone(),
            replies: config.replies.clone(),
        };
        let identities = Arc::new(mailgate_aws::SesIdentities::new(clients.ses.clone()));
        let gate = SenderDomainGate::new(
            identities.clone(),
            config.providers.order.providers(),
            Arc::new(mailgate_core::SystemClock),
        );
        let intake = message_intake(&clients, &config.names, Arc::new(delivery), settings)
            .with_sender_gate(Arc::new(gate));
        let dns = mailgate_aws::HickoryDns::new(config.dns_resolver);
        let region = clients
            .ses
            .config()
            .region()
            .map_or_else(|| "us-east-1".to_owned(), |r| r.to_string());
        let domains = SenderDomains::new(identities, Arc::new(dns), region);
        let health = Arc::new(HealthCheck::new(clients.clone(), config.names.clone()));
        let templates = mailgate_services::templates::Templates::new(
            Arc::new(mailgate_aws::DynamoDbTemplates::on(
                db.table(Table::Templates),
            )),
            Arc::new(mailgate_core::SystemClock),
        );
        let suppressions = SuppressionAdministration::new(Arc::new(
            mailgate_aws::DynamoDbSuppressionList::on(db.table(Table::Suppressions)),
        ));
        let message_table = mailgate_aws::DynamoDbMessages::on(db.table(Table::Messages));
        let finder = mailgate_services::search::MessageFinder::new(Arc::new(
            mailgate_aws::DynamoDbMessageSearch::new(
                message_table.clone(),
                mailgate_aws::DynamoDbSuppressionList::on(db.table(Table::Suppressions)),
            ),
        ));
        let messages = MessageReads::new(Arc::new(message_table));
        let stats = mailgate_services::stats::DeliveryStatistics::new(Arc::new(
            mailgate_aws::DynamoDbDeliveryStats::on(db.table(Table::Messages)),
        ));
        let inbound = mailgate_lambda::inbound::inbound_reads(&clients, &config.inbound);
        Ok(Self {
            auth,
            intake: Arc::new(intake),
            templates,
            domains,
            messages,
            finder,
            suppressions,
            stats,
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
            (_, "/v1/health") => answers::not_allowed("GET /v1/health"),
            (&Method::GET, "/v1/keys/self") => self.key_self(&request).await,
            (_, "/v1/keys/self") => answers::not_allowed("GET /v1/keys/self"),
            (&Method::POST, "/v1/messages") => self.send(&request).await,
            (&Method::POST, "/v1/messages/batch") => self.send_batch(&request).await,
            (&Method::GET, "/v1/messages") => self.find_messages(&request).await,
            (_, "/v1/messages") => answers::not_allowed("POST or GET /v1/messages"),
            (_, "/v1/messages/batch") => answers::not_allowed("POST /v1/messages/batch"),
            (_, stats::PATH) => self.stats(&request).await,
            (_, p) if suppressions::is_suppressions_path(p) => self.suppressions(&request, p).await,
            (_, p) if templates::is_templates_path(p) => self.templates(&request, p).await,
            (_, p) if domains::is_domains_path(p) => self.domains(&request, p).await,
            (_, p) if messages::is_message_path(p) => self.message(&request, p).await,
            (_, p) if search::is_recipient_path(p) => self.recipient(&request, p).await,
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
