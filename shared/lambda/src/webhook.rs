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
use mailgate_aws::{AwsClients, ConfigError, Queue, ResourceNames, Table, check_resources};
use mailgate_core::{Clock, ProviderId, SystemClock};
use mailgate_providers::mailgun::MailgunWebhookVerifier;
use mailgate_providers::sendgrid::SendgridWebhookVerifier;
use mailgate_providers::ses::sns::{
    ReqwestSnsHttp, SnsHttp, SnsMessageType, SnsVerifier, SnsVerifyError,
};
use mailgate_providers::verify::{
    BasicAuthWebhook, BasicCredentials, SourceAllowlist, WebhookRejection,
};
use mailgate_providers::webhook::{Intake, header as header_text};
use mailgate_providers::{postmark, smtp2go};
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

/// The default timestamp tolerance per provider, when `WEBHOOK_TIMESTAMP_TOLERANCE_SECS` is not
/// set. SNS re-sends with the original `Timestamp` for up to an hour; SendGrid does not say
/// whether retries are re-signed and retries for 24 h, so its window is a day (a replayed batch
/// is an exact duplicate, caught by the body-hash dedupe); Mailgun's token cache backs a short
/// window. Postmark and SMTP2GO send no timestamp.
pub fn default_tolerance_secs(provider: ProviderId) -> i64 {
    match provider {
        ProviderId::Ses => 3_900,
        ProviderId::Sendgrid => 86_400,
        ProviderId::Mailgun => 300,
        ProviderId::Postmark | ProviderId::Smtp2go => 0,
    }
}

/// The configuration names of each provider's verification secrets and allowlists.
pub fn secret_variables(provider: ProviderId) -> &'static [&'static str] {
    match provider {
        ProviderId::Ses => &["SNS_ALLOWED_TOPIC_ARNS"],
        ProviderId::Sendgrid => &["SENDGRID_WEBHOOK_PUBLIC_KEYS"],
        ProviderId::Mailgun => &["MAILGUN_WEBHOOK_SIGNING_KEYS"],
        ProviderId::Postmark => &[
            "POSTMARK_WEBHOOK_CREDENTIALS",
            "POSTMARK_WEBHOOK_ALLOWED_IPS",
        ],
        ProviderId::Smtp2go => &["SMTP2GO_WEBHOOK_CREDENTIALS", "SMTP2GO_WEBHOOK_ALLOWED_IPS"],
    }
}

fn refs(values: &[String]) -> Vec<&str> {
    values.iter().map(String::as_str).collect()
}

/// A provider's verification, built once at cold start from its configuration.
#[derive(Clone)]
pub enum WebhookVerifier {
    /// SNS signatures, topic allowlist, certificate cache.
    Ses(Arc<SnsVerifier>),
    /// ECDSA over `timestamp ‖ body`.
    Sendgrid(SendgridWebhookVerifier),
    /// HMAC over `timestamp ‖ token`, plus the token replay cache.
    Mailgun(MailgunWebhookVerifier),
    /// Basic credentials and an optional source allowlist.
    Postmark(BasicAuthWebhook),
    /// Basic credentials and an optional source allowlist.
    Smtp2go(BasicAuthWebhook),
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WebhookVerifier::Ses(v) => v.fmt(f),
            WebhookVerifier::Sendgrid(v) => v.fmt(f),
            WebhookVerifier::Mailgun(v) => v.fmt(f),
            WebhookVerifier::Postmark(v) | WebhookVerifier::Smtp2go(v) => v.fmt(f),
        }
    }
}

/// Why verification did not accept a delivery.
enum VerifyFailure {
    Rejected(WebhookRejection),
    Unavailable(String),
}

impl WebhookVerifier {
    /// Builds `provider`'s verifier from its configuration; SNS fetches go through `sns_http`.
    pub fn from_lookup(
        provider: ProviderId,
        tolerance_secs: i64,
        lookup: &impl Fn(&str) -> Option<String>,
        sns_http: impl FnOnce() -> Result<Arc<dyn SnsHttp>, String>,
    ) -> Result<Self, Vec<String>> {
        let list = |name: &str| -> Vec<String> {
            lookup(name)
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let required = |name: &str| -> Result<Vec<String>, Vec<String>> {
            let values = list(name);
            if values.is_empty() {
                Err(vec![format!(
                    "{name} is not set: webhook verification never turns off"
                )])
            } else {
                Ok(values)
            }
        };
        let basic = |creds: &str, ips: &str| -> Result<BasicAuthWebhook, Vec<String>> {
            let pairs = required(creds)?;
            let credentials =
                BasicCredentials::new(&refs(&pairs)).map_err(|e| vec![format!("{creds}: {e}")])?;
            let sources =
                SourceAllowlist::new(&refs(&list(ips))).map_err(|e| vec![format!("{ips}: {e}")])?;
            Ok(BasicAuthWebhook::new(credentials, sources))
        };
        match provider {
            ProviderId::Ses => {
                let topics = required("SNS_ALLOWED_TOPIC_ARNS")?;
                let http = sns_http().map_err(|e| vec![format!("SNS HTTP client: {e}")])?;
                SnsVerifier::new(&refs(&topics), tolerance_secs, http)
                    .map(|v| WebhookVerifier::Ses(Arc::new(v)))
                    .map_err(|e| vec![format!("SNS_ALLOWED_TOPIC_ARNS: {e}")])
            }
            ProviderId::Sendgrid => {
                let keys = required("SENDGRID_WEBHOOK_PUBLIC_KEYS")?;
                SendgridWebhookVerifier::new(&refs(&keys), tolerance_secs)
                    .map(WebhookVerifier::Sendgrid)
                    .map_err(|e| vec![format!("SENDGRID_WEBHOOK_PUBLIC_KEYS: {e}")])
            }
            ProviderId::Mailgun => {
                let keys = required("MAILGUN_WEBHOOK_SIGNING_KEYS")?;
                MailgunWebhookVerifier::new(&refs(&keys), tolerance_secs)
                    .map(WebhookVerifier::Mailgun)
                    .map_err(|e| vec![format!("MAILGUN_WEBHOOK_SIGNING_KEYS: {e}")])
            }
            ProviderId::Postmark => basic(
                "POSTMARK_WEBHOOK_CREDENTIALS",
                "POSTMARK_WEBHOOK_ALLOWED_IPS",
            )
            .map(WebhookVerifier::Postmark),
            ProviderId::Smtp2go => {
                basic("SMTP2GO_WEBHOOK_CREDENTIALS", "SMTP2GO_WEBHOOK_ALLOWED_IPS")
                    .map(WebhookVerifier::Smtp2go)
            }
        }
    }

    async fn verify(
        &self,
        headers: &lambda_http::http::HeaderMap,
        body: &[u8],
        source: Option<IpAddr>,
        clock: &dyn Clock,
    ) -> Result<Verified, VerifyFailure> {
        let plain = |r: Result<Intake, WebhookRejection>| {
            r.map(|intake| Verified { intake, sns: None })
                .map_err(VerifyFailure::Rejected)
        };
        match self {
            WebhookVerifier::Sendgrid(v) => plain(v.verify_delivery(headers, body, clock)),
            WebhookVerifier::Mailgun(v) => plain(v.verify_delivery(body, clock)),
            WebhookVerifier::Postmark(a) => {
                plain(postmark::verify_delivery(a, headers, body, source))
            }
            WebhookVerifier::Smtp2go(a) => {
                plain(smtp2go::verify_delivery(a, headers, body, source))
            }
            WebhookVerifier::Ses(v) => {
                let verified = v.verify(body, clock).await.map_err(|e| match e {
                    SnsVerifyError::Rejected(r) => VerifyFailure::Rejected(r),
                    other => VerifyFailure::Unavailable(other.to_string()),
                })?;
                let intake = mailgate_providers::ses::intake(&verified, body);
                Ok(Verified {
                    intake,
                    sns: Some((v.clone(), verified)),
                })
            }
        }
    }
}

struct Verified {
    intake: Intake,
    sns: Option<(Arc<SnsVerifier>, mailgate_providers::ses::sns::VerifiedSns)>,
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
    pub verifier: WebhookVerifier,
    /// Tables and queues.
    pub names: ResourceNames,
}

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
        let tolerance_secs = match provider {
            ProviderId::Postmark | ProviderId::Smtp2go => 0,
            _ => setting(
                "WEBHOOK_TIMESTAMP_TOLERANCE_SECS",
                default_tolerance_secs(provider),
            ),
        };
        let retention_days = setting("WEBHOOK_RECEIPT_RETENTION_DAYS", DEFAULT_RETENTION_DAYS);
        let verifier = WebhookVerifier::from_lookup(provider, tolerance_secs, &lookup, sns_http)
            .map_err(|e| problems.extend(e))
            .ok();
        match (names, verifier) {
            (Some(names), Some(verifier)) if problems.is_empty() => Ok(Self {
                provider,
                max_body_bytes: max_body_bytes as usize,
                tolerance_secs,
                retention_secs: retention_days * 86_400,
                verifier,
                names,
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
    clients: AwsClients,
    ingestion: Ingestion,
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
        Self {
            config,
            clients,
            ingestion,
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
            Method::GET | Method::HEAD => {
                let report = check_resources(
                    &self.clients.dynamodb,
                    &self.clients.sqs,
                    &self.config.names,
                )
                .await;
                crate::health::health_response(&self.function_name(), &report)
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

    async fn receive(&self, request: &Request) -> Response<Body> {
        let provider = self.config.provider;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let body: &[u8] = request.body().as_ref();
        if declared.unwrap_or(0).max(body.len()) > self.config.max_body_bytes {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "webhook bodies are limited to {} bytes",
                    self.config.max_body_bytes
                ),
            )
            .into_response();
        }
        let source = source_ip(request);
        let verified = match self
            .config
            .verifier
            .verify(request.headers(), body, source, self.clock.as_ref())
            .await
        {
            Ok(v) => v,
            Err(VerifyFailure::Rejected(reason)) => return self.reject(reason),
            Err(VerifyFailure::Unavailable(detail)) => {
                tracing::warn!(%provider, %detail, "verification could not complete; asking the provider to retry");
                return unavailable("verification could not complete; retry later");
            }
        };
        if let Some((sns, message)) = &verified.sns {
            match message.message_type() {
                SnsMessageType::SubscriptionConfirmation => {
                    if let Err(e) = sns.confirm_subscription(message).await {
                        if let Some(reason) = e.rejection() {
                            return self.reject(reason);
                        }
                        tracing::warn!(%provider, topic = message.topic_arn(), error = %e, "subscription confirmation failed; SNS will retry");
                        return unavailable("the subscription could not be confirmed; retry later");
                    }
                    tracing::info!(%provider, topic = message.topic_arn(), "SNS subscription confirmed");
                }
                SnsMessageType::UnsubscribeConfirmation => {
                    tracing::error!(%provider, topic = message.topic_arn(), "SNS says this endpoint was unsubscribed: SES events will stop arriving");
                    metrics::count("SnsUnsubscribed", 1, &[("Provider", provider.as_str())]);
                }
                SnsMessageType::Notification => {}
            }
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
    let sdk = mailgate_aws::load_sdk_config().await;
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
