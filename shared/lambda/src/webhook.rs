//! The front door shared by the five `webhook-<provider>` functions (function URLs).
//!
//! Each delivery is size-checked, verified on its raw bytes with the provider's scheme (failing
//! closed: a missing secret stops the function at cold start), persisted as a receipt, enqueued
//! and only then answered 200. Forgeries get 401 with no detail and are counted; anything
//! transient gets 503 so the provider retries (SNS takes 4xx as delivered, Mailgun stops on
//! 406, so neither is ever used for a fault of ours).
//!
//! An authentic body that cannot be read is stored as a `failed` receipt and answered 200: SNS,
//! SendGrid, Mailgun, Postmark and SMTP2GO would otherwise retry the same unreadable body for
//! hours to days, and the receipt keeps it for audit.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use mailgate_aws::{AwsClients, ConfigError, Queue, ResourceNames, Table};
use mailgate_core::{AuthVerdicts, InboundSource};
use mailgate_core::{Clock, ProviderId, SystemClock};
use mailgate_providers::inbound::InboundDelivery;
use mailgate_providers::ses::sns::{ReqwestSnsHttp, SnsHttp};
use mailgate_providers::verify::WebhookRejection;
use mailgate_providers::webhook::{
    Handshake, Intake, Verified, VerifierSettings, VerifyFailure, WebhookDelivery, WebhookVerifier,
    header as header_text, webhook_provider,
};
use mailgate_services::inbound::{Inbound, InboundReceived};
use mailgate_services::ingest::{Accepted, IngestError, Ingestion};
use serde_json::json;

use crate::http::ApiError;
use crate::metrics;

/// The default body limit: Lambda function URLs accept at most 6 MB; SendGrid batches are far
/// below 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How long receipts are kept by default (`WEBHOOK_RECEIPT_RETENTION_DAYS`).
pub const DEFAULT_RETENTION_DAYS: i64 = 30;

/// The tables a webhook function writes.
pub const TABLES: &[Table] = &[Table::Receipts, Table::Dedupe];
/// The queues a webhook function writes.
pub const QUEUES: &[Queue] = &[Queue::Events];

/// The configuration names of `provider`'s verification secrets and allowlists.
pub fn secret_variables(provider: ProviderId) -> &'static [&'static str] {
    webhook_provider(provider).secret_variables()
}

/// Typed configuration of a webhook function.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Which provider's webhooks this function receives.
    pub provider: ProviderId,
    /// Bodies longer than this are refused with 413 (`WEBHOOK_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Timestamp window either way (`WEBHOOK_TIMESTAMP_TOLERANCE_SECS`, else per provider).
    pub tolerance_secs: i64,
    /// How long receipts are kept (`WEBHOOK_RECEIPT_RETENTION_DAYS`), in seconds.
    pub retention_secs: i64,
    /// The provider's verification.
    pub verifier: Arc<dyn WebhookVerifier>,
    /// Tables and queues.
    pub names: ResourceNames,
    /// Where received mail goes, for a provider with an inbound source (`/inbound`).
    pub inbound: Option<crate::inbound::InboundSettings>,
    /// The verification of inbound deliveries (`POST /inbound`), for a provider with an inbound
    /// webhook.
    pub inbound_verifier: Option<Arc<dyn WebhookVerifier>>,
}

/// The path under which a webhook function receives inbound email.
pub const INBOUND_PATH: &str = "/inbound";

/// Reads an optional positive integer setting.
pub fn positive_setting(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: i64,
) -> Result<i64, String> {
    // Blank counts as unset, so a template parameter left empty keeps the default.
    match lookup(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name} must be a positive integer, got {v:?}")),
    }
}

impl WebhookConfig {
    /// Reads the configuration of `provider`'s webhook function from the environment.
    pub fn from_env(provider: ProviderId) -> Result<Self, ConfigError> {
        Self::from_lookup(provider, |k| std::env::var(k).ok())
    }

    /// Reads the configuration through `lookup`; SNS certificates are fetched over HTTPS.
    pub fn from_lookup(
        provider: ProviderId,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::with_sns_http(provider, lookup, || {
            ReqwestSnsHttp::new()
                .map(|h| Arc::new(h) as Arc<dyn SnsHttp>)
                .map_err(|e| e.to_string())
        })
    }

    /// Reads the configuration through `lookup`, with SNS fetches going through `sns_http`
    /// (tests serve certificates locally; the SNS host rule still applies).
    pub fn with_sns_http(
        provider: ProviderId,
        lookup: impl Fn(&str) -> Option<String>,
        sns_http: impl FnOnce() -> Result<Arc<dyn SnsHttp>, String>,
    ) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let names = ResourceNames::from_lookup(TABLES, QUEUES, &lookup)
            .map_err(|e| problems.extend(e.problems))
            .ok();
        let mut setting = |name: &str, default: i64| {
            positive_setting(&lookup, name, default)
                .map_err(|e| problems.push(e))
                .unwrap_or(default)
        };
        let max_body_bytes = setting("WEBHOOK_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES as i64);
        let webhooks = webhook_provider(provider);
        // A provider whose deliveries carry no timestamp has no window to configure.
        let tolerance_secs = match webhooks.default_tolerance_secs() {
            0 => 0,
            default => setting("WEBHOOK_TIMESTAMP_TOLERANCE_SECS", default),
        };
        let retention_days = setting("WEBHOOK_RECEIPT_RETENTION_DAYS", DEFAULT_RETENTION_DAYS);
        let inbound = if mailgate_providers::inbound::has_inbound(provider) {
            crate::inbound::InboundSettings::from_lookup(&lookup, &mut problems)
        } else {
            None
        };
        let verifier = webhooks
            .verifier(VerifierSettings {
                tolerance_secs,
                lookup: &lookup,
                sns_http: Box::new(sns_http),
            })
            .map_err(|e| problems.extend(e))
            .ok();
        let inbound_verifier = match (
            mailgate_providers::inbound::inbound_webhook(provider),
            &verifier,
        ) {
            (Some(inbound), Some(webhooks)) => {
                let settings = VerifierSettings {
                    tolerance_secs,
                    lookup: &lookup,
                    sns_http: Box::new(|| Err("inbound deliveries fetch nothing".to_owned())),
                };
                inbound
                    .verifier(&settings, webhooks)
                    .map_err(|e| problems.extend(e))
                    .ok()
            }
            _ => None,
        };
        match (names, verifier) {
            (Some(names), Some(verifier)) if problems.is_empty() => Ok(Self {
                provider,
                max_body_bytes: max_body_bytes as usize,
                tolerance_secs,
                retention_secs: retention_days * 86_400,
                verifier,
                names,
                inbound,
                inbound_verifier,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// Counters of one function instance (also emitted as EMF metrics).
#[derive(Debug, Default)]
pub struct WebhookStats {
    verification_failures: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
}

impl WebhookStats {
    /// Deliveries refused by verification (401).
    pub fn verification_failures(&self) -> u64 {
        self.verification_failures.load(Ordering::Relaxed)
    }
    /// Deliveries accepted as new (200).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    /// Redeliveries of a known delivery (200, nothing enqueued again).
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
}

/// One webhook function: its configuration and clients, built once per cold start.
#[derive(Clone)]
pub struct WebhookFunction {
    config: WebhookConfig,
    health: Arc<crate::health::HealthCheck>,
    ingestion: Ingestion,
    inbound: Option<Inbound>,
    clock: Arc<dyn Clock>,
    stats: Arc<WebhookStats>,
}

impl std::fmt::Debug for WebhookFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookFunction")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WebhookFunction {
    /// Wires a webhook function on the system clock.
    pub fn new(config: WebhookConfig, clients: AwsClients) -> Self {
        Self::with_clock(config, clients, Arc::new(SystemClock))
    }

    /// Wires a webhook function on `clock` (timestamp windows, receipt times).
    pub fn with_clock(config: WebhookConfig, clients: AwsClients, clock: Arc<dyn Clock>) -> Self {
        // Tokens are remembered for both sides of the timestamp window, plus a margin.
        let replay_window = 2 * config.tolerance_secs.max(1) + 60;
        let ingestion = crate::wiring::ingestion(
            &clients,
            &config.names,
            config.retention_secs,
            replay_window,
        );
        let inbound = config.inbound.as_ref().map(|settings| {
            crate::inbound::inbound_service(
                &clients,
                settings,
                config.names.queue_url(Queue::Events),
            )
        });
        let health = Arc::new(crate::health::HealthCheck::new(
            clients.clone(),
            config.names.clone(),
        ));
        Self {
            config,
            health,
            ingestion,
            inbound,
            clock,
            stats: Arc::default(),
        }
    }

    /// The Lambda function name, e.g. `webhook-sendgrid`.
    pub fn function_name(&self) -> String {
        format!("webhook-{}", self.config.provider)
    }

    /// This instance's counters.
    pub fn stats(&self) -> &WebhookStats {
        &self.stats
    }

    /// Answers one function URL request.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        match *request.method() {
            // Function URLs are public and carry no API key: the verdict alone (the report
            // would name tables and queue URLs, which carry the account id), from a check
            // cached for a few seconds so polling costs no AWS calls per request.
            Method::GET | Method::HEAD => {
                let report = self.health.report().await;
                crate::health::public_health_response(&report)
            }
            // SES notifications (sending events, received mail, subscription handshakes)
            // take one path, whichever URL the topic was subscribed with.
            Method::POST
                if self.config.provider != ProviderId::Ses
                    && request.uri().path().trim_end_matches('/') == INBOUND_PATH =>
            {
                self.receive_inbound(&request).await
            }
            Method::POST => self.receive(&request).await,
            _ => ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "webhooks are delivered with POST",
            )
            .into_response(),
        }
    }

    /// Size-checks and verifies a delivery on its raw bytes: what passed, or the answer to give.
    async fn verified(&self, request: &Request) -> Result<Verified, Response<Body>> {
        self.verified_by(request, self.config.verifier.as_ref())
            .await
    }

    /// As [`Self::verified`], with `verifier`.
    async fn verified_by(
        &self,
        request: &Request,
        verifier: &dyn WebhookVerifier,
    ) -> Result<Verified, Response<Body>> {
        let provider = self.config.provider;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let body: &[u8] = request.body().as_ref();
        if declared.unwrap_or(0).max(body.len()) > self.config.max_body_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "webhook bodies are limited to {} bytes",
                    self.config.max_body_bytes
                ),
            )
            .into_response());
        }
        let source = source_ip(request);
        let received = WebhookDelivery {
            headers: request.headers(),
            body,
            source,
        };
        match verifier.verify(received, self.clock.as_ref()).await {
            Ok(v) => Ok(v),
            Err(VerifyFailure::Rejected(reason)) => Err(self.reject(reason)),
            Err(VerifyFailure::Unavailable(detail)) => {
                tracing::warn!(%provider, %detail, "verification could not complete; asking the provider to retry");
                Err(unavailable("verification could not complete; retry later"))
            }
        }
    }

    async fn receive(&self, request: &Request) -> Response<Body> {
        let provider = self.config.provider;
        let body: &[u8] = request.body().as_ref();
        let verified = match self.verified(request).await {
            Ok(v) => v,
            Err(answer) => return answer,
        };
        match verified.handshake {
            Some(Handshake::Subscribe { topic, confirm }) => match confirm.await {
                Ok(()) => tracing::info!(%provider, topic, "SNS subscription confirmed"),
                Err(VerifyFailure::Rejected(reason)) => return self.reject(reason),
                Err(VerifyFailure::Unavailable(e)) => {
                    tracing::warn!(%provider, topic, error = %e, "subscription confirmation failed; SNS will retry");
                    return unavailable("the subscription could not be confirmed; retry later");
                }
            },
            Some(Handshake::Unsubscribed { topic }) => {
                tracing::error!(%provider, topic, "SNS says this endpoint was unsubscribed: SES events will stop arriving");
                metrics::count("SnsUnsubscribed", 1, &[("Provider", provider.as_str())]);
            }
            None => {}
        }
        if let Some(answer) = self.ses_received(&verified.intake).await {
            return answer;
        }
        let delivery = crate::wiring::delivery(
            provider,
            &verified.intake,
            body,
            header_text(request.headers(), "content-type"),
        );
        match self.ingestion.accept(&delivery, self.clock.as_ref()).await {
            Ok(accepted) => self.acknowledge(&accepted),
            Err(IngestError::Replayed) => self.reject(WebhookRejection::Replayed),
            Err(e) => {
                tracing::error!(%provider, error = %e, "webhook not accepted; the provider will retry");
                metrics::count(
                    "WebhookIngestFailures",
                    1,
                    &[("Provider", provider.as_str())],
                );
                unavailable("the delivery could not be stored; retry later")
            }
        }
    }

    /// Records the message an SES `Received` notification announces (its raw MIME already in
    /// the inbound bucket); `None` when the delivery is anything else, for the usual ingestion.
    async fn ses_received(&self, intake: &Intake) -> Option<Response<Body>> {
        let inbound = self.inbound.as_ref()?;
        let settings = self.config.inbound.as_ref()?;
        let envelope = match intake.payload.events.as_deref() {
            Ok([envelope]) => envelope,
            _ => return None,
        };
        let received = mailgate_providers::ses::inbound::received(envelope)?;
        if received.bucket != settings.bucket {
            // Not ours to read: kept as an ordinary receipt for audit.
            tracing::warn!(bucket = %received.bucket, "SES received mail in a bucket other than INBOUND_BUCKET; not recorded as inbound");
            return None;
        }
        let outcome = inbound
            .receive_stored(&received.object_key, &received.source, self.clock.as_ref())
            .await;
        Some(self.inbound_answer(outcome))
    }

    /// The answer to an inbound delivery: 200 once stored and queued, else 503 so it is retried.
    fn inbound_answer(
        &self,
        outcome: Result<InboundReceived, mailgate_services::inbound::InboundError>,
    ) -> Response<Body> {
        let provider = self.config.provider;
        match outcome {
            Ok(received) => {
                let (status, id) = match &received {
                    InboundReceived::Queued(id) => ("received", id),
                    InboundReceived::Duplicate(id) => ("duplicate", id),
                };
                tracing::info!(%provider, inbound = %id, status, "inbound message stored");
                metrics::count("InboundReceived", 1, &[("Provider", provider.as_str())]);
                crate::http::json_response(
                    StatusCode::OK,
                    &json!({"status": status, "inbound": id}),
                )
            }
            Err(e) => {
                tracing::error!(%provider, error = %e, "inbound message not stored; the provider will retry");
                metrics::count(
                    "WebhookIngestFailures",
                    1,
                    &[("Provider", provider.as_str())],
                );
                unavailable("the message could not be stored; retry later")
            }
        }
    }

    /// Receives one inbound message: verified like the provider's webhooks, its raw MIME stored
    /// and recorded before the 200, parsing queued.
    async fn receive_inbound(&self, request: &Request) -> Response<Body> {
        let provider = self.config.provider;
        let no_inbound = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("webhook-{provider} receives no inbound email"),
            )
            .into_response()
        };
        let (Some(inbound), Some(source), Some(verifier)) = (
            &self.inbound,
            mailgate_providers::inbound::inbound_webhook(provider),
            &self.config.inbound_verifier,
        ) else {
            return no_inbound();
        };
        if let Err(answer) = self.verified_by(request, verifier.as_ref()).await {
            return answer;
        }
        let body: &[u8] = request.body().as_ref();
        let content_type = header_text(request.headers(), "content-type");
        let delivery = match source.delivery(body, content_type).await {
            Ok(delivery) => delivery,
            // Authentic but not the documented shape: the body itself is kept as the raw
            // message (it will be `parse_failed`), never dropped, and the provider not made
            // to retry it for days.
            Err(e) => {
                tracing::warn!(%provider, error = %e, "inbound body unreadable; kept as received");
                InboundDelivery {
                    raw: body.to_vec(),
                    source: InboundSource {
                        provider,
                        source_id: mailgate_providers::webhook::body_key(body),
                        recipient: String::new(),
                        message_id: None,
                        auth: AuthVerdicts::default(),
                    },
                }
            }
        };
        let outcome = inbound
            .receive(&delivery.raw, &delivery.source, self.clock.as_ref())
            .await;
        self.inbound_answer(outcome)
    }

    fn reject(&self, reason: WebhookRejection) -> Response<Body> {
        let provider = self.config.provider;
        self.stats
            .verification_failures
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%provider, reason = reason.code(), "webhook verification failed");
        metrics::count(
            "WebhookVerificationFailures",
            1,
            &[("Provider", provider.as_str()), ("Reason", reason.code())],
        );
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the delivery could not be verified",
        )
        .into_response()
    }

    fn acknowledge(&self, accepted: &Accepted) -> Response<Body> {
        let provider = self.config.provider;
        let body = match accepted {
            Accepted::Queued {
                receipt,
                events,
                calls,
            } => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%provider, %receipt, events, sqs_calls = calls, "webhook queued");
                metrics::count(
                    "WebhookEventsQueued",
                    *events as u64,
                    &[("Provider", provider.as_str())],
                );
                json!({"status": "queued", "receipt": receipt, "events": events})
            }
            Accepted::Recorded { receipt, status } => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%provider, %receipt, %status, "webhook recorded");
                json!({"status": status.as_str(), "receipt": receipt, "events": 0})
            }
            Accepted::Duplicate {
                receipt,
                status,
                in_flight,
            } => {
                self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%provider, %receipt, %status, in_flight, "duplicate webhook delivery");
                metrics::count("WebhookDuplicates", 1, &[("Provider", provider.as_str())]);
                json!({"status": "duplicate", "receipt": receipt, "receipt_status": status.as_str()})
            }
        };
        crate::http::json_response(StatusCode::OK, &body)
    }
}

fn unavailable(message: &'static str) -> Response<Body> {
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "ingestion_unavailable",
        message,
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    response
}

/// The caller's address as the function URL (or API Gateway) saw it.
fn source_ip(request: &Request) -> Option<IpAddr> {
    let ip = match request.request_context_ref()? {
        // Function URLs use the HTTP API v2 payload, so they arrive as `ApiGatewayV2`.
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.clone(),
        _ => None,
    }?;
    ip.parse().ok()
}

/// Runs `provider`'s webhook function: secrets (literal, or `ssm:`/`secretsmanager:` references
/// resolved once here), configuration and clients, then the Lambda loop.
pub async fn run(provider: ProviderId) -> Result<(), lambda_http::Error> {
    crate::init_tracing();
    let sdk = mailgate_aws::function_sdk_config();
    let secrets = mailgate_aws::resolve_from_env(
        &mailgate_aws::SsmClient::new(&sdk),
        secret_variables(provider),
    )
    .await?;
    let config = WebhookConfig::from_lookup(provider, secrets.lookup_or_env())?;
    let function = WebhookFunction::new(config, AwsClients::new(&sdk));
    let function = &function;
    lambda_http::run(lambda_http::service_fn(
        move |request: Request| async move {
            Ok::<_, lambda_http::Error>(function.handle(request).await)
        },
    ))
    .await
}
