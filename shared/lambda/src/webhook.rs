//! The front door shared by the five `webhook-<provider>` functions (function URLs).
//!
//! Today it enforces the body-size limit and serves a readiness check on `GET`. Deliveries are
//! refused with 503 and `Retry-After` until signature verification and receipt persistence land:
//! every provider retries a 5xx, so nothing is lost, and nothing unverified is ever accepted.

use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_aws::{AwsClients, ConfigError, Queue, ResourceNames, Table, check_resources};
use mailgate_core::ProviderId;

use crate::http::ApiError;

/// The default body limit: Lambda function URLs accept at most 6 MB; SendGrid batches are far
/// below 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The tables a webhook function writes.
pub const TABLES: &[Table] = &[Table::Receipts, Table::Dedupe];
/// The queues a webhook function writes.
pub const QUEUES: &[Queue] = &[Queue::Events];

/// Typed configuration of a webhook function.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Which provider's webhooks this function receives.
    pub provider: ProviderId,
    /// Bodies longer than this are refused with 413 (`WEBHOOK_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Tables and queues.
    pub names: ResourceNames,
}

impl WebhookConfig {
    /// Reads the configuration of `provider`'s webhook function from the environment.
    pub fn from_env(provider: ProviderId) -> Result<Self, ConfigError> {
        Self::from_lookup(provider, |k| std::env::var(k).ok())
    }

    /// Reads the configuration through `lookup`.
    pub fn from_lookup(
        provider: ProviderId,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let names = ResourceNames::from_lookup(TABLES, QUEUES, &lookup);
        let max = match lookup("WEBHOOK_MAX_BODY_BYTES") {
            None => Ok(DEFAULT_MAX_BODY_BYTES),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!("WEBHOOK_MAX_BODY_BYTES must be a positive integer, got {v:?}")
                }),
        };
        match (names, max) {
            (Ok(names), Ok(max_body_bytes)) => Ok(Self {
                provider,
                max_body_bytes,
                names,
            }),
            (names, max) => {
                let mut problems = names.err().map(|e| e.problems).unwrap_or_default();
                problems.extend(max.err());
                Err(ConfigError { problems })
            }
        }
    }
}

/// One webhook function: its configuration and clients, built once per cold start.
#[derive(Debug, Clone)]
pub struct WebhookFunction {
    config: WebhookConfig,
    clients: AwsClients,
}

impl WebhookFunction {
    /// Wires a webhook function.
    pub fn new(config: WebhookConfig, clients: AwsClients) -> Self {
        Self { config, clients }
    }

    /// The Lambda function name, e.g. `webhook-sendgrid`.
    pub fn function_name(&self) -> String {
        format!("webhook-{}", self.config.provider)
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
            Method::POST => self.receive(&request),
            _ => ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "webhooks are delivered with POST",
            )
            .into_response(),
        }
    }

    fn receive(&self, request: &Request) -> Response<Body> {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let actual = request.body().len();
        if declared.unwrap_or(0).max(actual) > self.config.max_body_bytes {
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
        tracing::warn!(
            provider = %self.config.provider,
            bytes = actual,
            "webhook refused: verification is not available in this build; the provider will retry"
        );
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ingestion_unavailable",
            "this endpoint cannot verify deliveries yet; retry later",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("300"));
        response
    }
}

/// Runs `provider`'s webhook function: configuration and clients once, then the Lambda loop.
pub async fn run(provider: ProviderId) -> Result<(), lambda_http::Error> {
    crate::init_tracing();
    let config = WebhookConfig::from_env(provider)?;
    let function = WebhookFunction::new(config, AwsClients::from_env().await);
    let function = &function;
    lambda_http::run(lambda_http::service_fn(
        move |request: Request| async move {
            Ok::<_, lambda_http::Error>(function.handle(request).await)
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reports_a_bad_body_limit_with_the_missing_names() {
        let err = WebhookConfig::from_lookup(ProviderId::Sendgrid, |k| {
            (k == "WEBHOOK_MAX_BODY_BYTES").then(|| "lots".to_owned())
        })
        .unwrap_err();
        assert!(
            err.problems
                .contains(&"RECEIPTS_TABLE is not set".to_owned())
        );
        assert!(
            err.problems
                .iter()
                .any(|p| p.starts_with("WEBHOOK_MAX_BODY_BYTES"))
        );
    }
}
