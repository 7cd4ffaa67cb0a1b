//! `dispatcher`: consumes the outbound queue and delivers each app webhook to the team's own
//! endpoint, signed per Standard Webhooks v1.
//!
//! Each record is `{"v":1,"endpoint_id","webhook_id","body"}` (see
//! [`mailgate_aws::OutboundDelivery`]). Per record (reported through `batchItemFailures`):
//! - malformed body → logged and acknowledged (poison: a retry cannot fix it);
//! - the endpoint was removed or is disabled → logged and acknowledged (`dropped`);
//! - POST answered 2xx → acknowledged (`delivered`);
//! - `410 Gone` → the endpoint is disabled and the record acknowledged (`gone`);
//! - `429`/`503` with `Retry-After` → hidden for that long (capped) and left on the queue
//!   (`throttled`);
//! - anything else (3xx — redirects are not followed —, other 4xx/5xx, timeout, refused
//!   connection) → hidden for an exponential backoff with full jitter by the record's
//!   `ApproximateReceiveCount` and left on the queue (`failed`). After the redrive policy's
//!   `maxReceiveCount` receives SQS moves it to the dead-letter queue, from which
//!   `mailgate-admin dlq replay outbound` puts it back.
//!
//! Every attempt carries the same `webhook-id`, a fresh `webhook-timestamp` and one `v1`
//! signature per currently valid secret (two during a rotation).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use mailgate_aws::{
    AwsClients, ConfigError, DynamoDbEndpoints, EndpointStoreError, OutboundDelivery, Queue,
    ResourceNames, SqsOutboundQueue, Table,
};
use mailgate_core::{Backoff, UnixMillis, signature_header};
use mailgate_lambda::sqs::{RecordOutcome, drive_batch};
use reqwest::StatusCode;

/// The Lambda function name.
pub const FUNCTION_NAME: &str = "dispatcher";
/// The tables the dispatcher reads and writes.
pub const TABLES: &[Table] = &[Table::Endpoints];
/// The queues it reads and writes.
pub const QUEUES: &[Queue] = &[Queue::Outbound];
/// The variable holding the first retry's ceiling in seconds (default 30).
pub const RETRY_BASE_VAR: &str = "DISPATCHER_RETRY_BASE_SECS";
/// The metric counting delivery attempts by `Outcome`.
pub const METRIC: &str = "AppWebhookDeliveries";

/// The first retry's ceiling unless configured.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(30);
/// The longest wait before a retry, whatever the backoff or `Retry-After` says.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(12 * 3600);
/// How long one POST may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// SQS refuses a visibility timeout that would end more than 12 h after the message was
/// received; a minute of margin covers the time spent in this invocation.
const MAX_VISIBILITY_SECS: u64 = 12 * 3600 - 60;

/// Typed configuration, loaded once per cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tables and queues.
    pub names: ResourceNames,
    /// The ceiling of the first retry's wait; each further receive doubles it.
    pub retry_base: Duration,
}

impl Config {
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
        let retry_base = match lookup(RETRY_BASE_VAR).map(|v| v.trim().to_owned()) {
            None => Some(DEFAULT_RETRY_BASE),
            Some(v) if v.is_empty() => Some(DEFAULT_RETRY_BASE),
            Some(v) => match v.parse::<u64>() {
                Ok(secs) => Some(Duration::from_secs(secs)),
                Err(_) => {
                    problems.push(format!(
                        "{RETRY_BASE_VAR} must be a whole number of seconds, got {v:?}"
                    ));
                    None
                }
            },
        };
        match (names, retry_base) {
            (Some(names), Some(retry_base)) if problems.is_empty() => {
                Ok(Self { names, retry_base })
            }
            _ => Err(ConfigError { problems }),
        }
    }
}

/// The wait before the next attempt after receive number `receive_count` (1 for the first)
/// failed: uniformly random in `[0, min(12 h, base · 2^(receive_count − 1))]` ("full jitter"),
/// where `unit` is a random number in `[0, 1)`.
pub fn backoff_delay(base: Duration, receive_count: u32, unit: f64) -> Duration {
    let backoff = Backoff {
        base,
        cap: MAX_RETRY_DELAY,
        reserve: Duration::ZERO,
    };
    backoff
        .delay(receive_count.saturating_sub(1), Duration::MAX, unit)
        .unwrap_or(MAX_RETRY_DELAY)
}

/// A delay as an SQS visibility timeout: whole seconds rounded up, within SQS's limit.
pub fn visibility_seconds(delay: Duration) -> i32 {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    i32::try_from(secs.min(MAX_VISIBILITY_SECS)).unwrap_or(0)
}

/// What one POST's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 2xx: delivered.
    Delivered,
    /// 410: the app says the endpoint is gone for good.
    Gone,
    /// 429 or 503 with a `Retry-After`: come back after this long.
    RetryAfter(Duration),
    /// Anything else: retry with backoff. The reason names the status or transport failure.
    Failed(String),
}

/// Reads an HTTP answer: success is 2xx only (3xx is a failure: redirects are not followed).
pub fn classify_answer(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    now: SystemTime,
) -> Answer {
    if status.is_success() {
        return Answer::Delivered;
    }
    if status == StatusCode::GONE {
        return Answer::Gone;
    }
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) && let Some(wait) = mailgate_providers::send::retry_after(headers, now)
    {
        return Answer::RetryAfter(wait.min(MAX_RETRY_DELAY));
    }
    Answer::Failed(format!("HTTP {}", status.as_u16()))
}

/// A transport failure, named without the URL (it may carry tokens).
fn transport_reason(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatch {
    /// The endpoint is removed, disabled or has no valid secret: nothing was sent.
    Dropped(&'static str),
    /// The app answered; see [`Answer`].
    Answered(Answer),
}

/// Why a delivery could not even be attempted (retried with the queue's own timeout).
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The endpoint could not be read, or a 410 could not be recorded.
    #[error(transparent)]
    Endpoints(#[from] EndpointStoreError),
}

/// The function cannot be wired.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Signs and POSTs deliveries to the endpoints in the endpoints table.
#[derive(Debug, Clone)]
pub struct AppWebhookSender {
    endpoints: DynamoDbEndpoints,
    http: reqwest::Client,
}

impl AppWebhookSender {
    /// A sender reading `endpoints`, with a 10 s timeout and no redirects.
    pub fn new(endpoints: DynamoDbEndpoints) -> Result<Self, WiringError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mailgate-dispatcher/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WiringError::HttpClient)?;
        Ok(Self { endpoints, http })
    }

    /// Delivers once: loads the endpoint, signs the body with every valid secret at `now` and
    /// POSTs it; a `410 Gone` disables the endpoint.
    pub async fn deliver(
        &self,
        delivery: &OutboundDelivery,
        now: SystemTime,
    ) -> Result<Dispatch, DispatchError> {
        let now_ms = UnixMillis::from(time::OffsetDateTime::from(now));
        let Some(endpoint) = self.endpoints.get(&delivery.endpoint_id, now_ms).await? else {
            return Ok(Dispatch::Dropped("endpoint removed"));
        };
        if !endpoint.enabled {
            return Ok(Dispatch::Dropped("endpoint disabled"));
        }
        let secrets = endpoint.signing_secrets(now_ms);
        if secrets.is_empty() {
            return Ok(Dispatch::Dropped("endpoint has no valid secret"));
        }
        let timestamp = now_ms.as_i64().div_euclid(1000);
        let signature = signature_header(
            secrets,
            &delivery.webhook_id,
            timestamp,
            delivery.body.as_bytes(),
        );
        let sent = self
            .http
            .post(endpoint.url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &delivery.webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.body.clone())
            .send()
            .await;
        let answer = match sent {
            Ok(response) => classify_answer(response.status(), response.headers(), now),
            Err(err) => Answer::Failed(transport_reason(&err)),
        };
        if answer == Answer::Gone {
            self.endpoints
                .disable(&endpoint.id, "the endpoint answered 410 Gone", now_ms)
                .await?;
            tracing::warn!(endpoint_id = %endpoint.id, host = %endpoint.url.redacted(), "endpoint answered 410 Gone; disabled");
        }
        Ok(Dispatch::Answered(answer))
    }
}

/// The function with its clients.
#[derive(Debug, Clone)]
pub struct Function {
    config: Config,
    sender: Arc<AppWebhookSender>,
    queue: SqsOutboundQueue,
}

fn metric(outcome: &str) {
    mailgate_lambda::metrics::count(METRIC, 1, &[("Outcome", outcome)]);
}

impl Function {
    /// Wires the function.
    pub fn new(config: Config, clients: AwsClients) -> Result<Self, WiringError> {
        let endpoints =
            DynamoDbEndpoints::new(clients.dynamodb, config.names.table(Table::Endpoints));
        let queue = SqsOutboundQueue::new(clients.sqs, config.names.queue_url(Queue::Outbound));
        Ok(Self {
            sender: Arc::new(AppWebhookSender::new(endpoints)?),
            queue,
            config,
        })
    }

    /// Handles one SQS batch, reporting the records to retry.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        drive_batch(event, |record| self.process(record)).await
    }

    /// Hides the record for `delay` so SQS redelivers it then, and reports it for a retry.
    async fn retry_later(
        &self,
        record: &SqsMessage,
        delay: Duration,
        reason: String,
    ) -> RecordOutcome {
        if let Some(handle) = record.receipt_handle.as_deref()
            && let Err(err) = self
                .queue
                .retry_after(handle, visibility_seconds(delay))
                .await
        {
            // The record still comes back, after the queue's own visibility timeout.
            tracing::warn!(error = %err, "could not set the retry delay");
        }
        RecordOutcome::Retry(format!(
            "{reason}; next attempt in {}s",
            visibility_seconds(delay)
        ))
    }

    /// One record.
    async fn process(&self, record: SqsMessage) -> RecordOutcome {
        let sqs_id = record.message_id.as_deref().unwrap_or("-");
        let delivery = match OutboundDelivery::parse(record.body.as_deref().unwrap_or_default()) {
            Ok(d) => d,
            Err(err) => {
                tracing::error!(sqs_message_id = sqs_id, error = %err, "poison record acknowledged");
                metric("malformed");
                return RecordOutcome::Done;
            }
        };
        let receive_count: u32 = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let endpoint_id = &delivery.endpoint_id;
        let webhook_id = &delivery.webhook_id;
        match self.sender.deliver(&delivery, SystemTime::now()).await {
            Ok(Dispatch::Answered(Answer::Delivered)) => {
                tracing::info!(%endpoint_id, webhook_id, receive_count, "app webhook delivered");
                metric("delivered");
                RecordOutcome::Done
            }
            Ok(Dispatch::Answered(Answer::Gone)) => {
                metric("gone");
                RecordOutcome::Done
            }
            Ok(Dispatch::Dropped(why)) => {
                tracing::warn!(%endpoint_id, webhook_id, reason = why, "app webhook dropped");
                metric("dropped");
                RecordOutcome::Done
            }
            Ok(Dispatch::Answered(Answer::RetryAfter(wait))) => {
                metric("throttled");
                self.retry_later(
                    &record,
                    wait,
                    format!(
                        "endpoint {endpoint_id} asked to retry after {}s",
                        wait.as_secs()
                    ),
                )
                .await
            }
            Ok(Dispatch::Answered(Answer::Failed(reason))) => {
                metric("failed");
                let delay =
                    backoff_delay(self.config.retry_base, receive_count, rand::random::<f64>());
                self.retry_later(
                    &record,
                    delay,
                    format!("delivery to {endpoint_id} failed: {reason}"),
                )
                .await
            }
            Err(err) => {
                metric("error");
                RecordOutcome::Retry(format!("delivery to {endpoint_id} not attempted: {err}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
    use std::time::UNIX_EPOCH;

    fn headers(retry_after: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_2xx_is_success_and_410_is_gone() {
        let now = SystemTime::now();
        assert_eq!(
            classify_answer(StatusCode::NO_CONTENT, &headers(None), now),
            Answer::Delivered
        );
        assert_eq!(
            classify_answer(StatusCode::FOUND, &headers(None), now),
            Answer::Failed("HTTP 302".into())
        );
        assert_eq!(
            classify_answer(StatusCode::GONE, &headers(None), now),
            Answer::Gone
        );
        assert_eq!(
            classify_answer(StatusCode::BAD_REQUEST, &headers(Some("5")), now),
            Answer::Failed("HTTP 400".into())
        );
    }

    #[test]
    fn retry_after_is_honoured_on_429_and_503_in_seconds_or_as_a_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(
            classify_answer(StatusCode::SERVICE_UNAVAILABLE, &headers(Some("7")), now),
            Answer::RetryAfter(Duration::from_secs(7))
        );
        assert_eq!(
            classify_answer(
                StatusCode::TOO_MANY_REQUESTS,
                &headers(Some("Sun, 06 Nov 1994 08:49:47 GMT")),
                now
            ),
            Answer::RetryAfter(Duration::from_secs(10))
        );
        assert_eq!(
            classify_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                &headers(Some("999999")),
                now
            ),
            Answer::RetryAfter(MAX_RETRY_DELAY)
        );
        assert_eq!(
            classify_answer(StatusCode::SERVICE_UNAVAILABLE, &headers(None), now),
            Answer::Failed("HTTP 503".into())
        );
    }

    #[test]
    fn backoff_doubles_per_receive_with_full_jitter_under_a_12_hour_cap() {
        let base = Duration::from_secs(30);
        assert_eq!(
            backoff_delay(base, 1, 0.999_999),
            Duration::from_secs(30).mul_f64(0.999_999)
        );
        assert_eq!(backoff_delay(base, 3, 0.5), Duration::from_secs(60));
        assert_eq!(backoff_delay(base, 4, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(base, 40, 1.0), MAX_RETRY_DELAY);
        assert_eq!(backoff_delay(Duration::ZERO, 3, 0.7), Duration::ZERO);
    }

    #[test]
    fn visibility_is_whole_seconds_within_the_sqs_limit() {
        assert_eq!(visibility_seconds(Duration::from_millis(1_500)), 2);
        assert_eq!(visibility_seconds(Duration::ZERO), 0);
        assert_eq!(visibility_seconds(MAX_RETRY_DELAY), 43_140);
    }

    fn env(extra: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            let base = [
                ("ENDPOINTS_TABLE", "mailgate-dev-endpoints"),
                (
                    "OUTBOUND_QUEUE_URL",
                    "http://127.0.0.1:4566/1/mailgate-dev-outbound",
                ),
            ];
            base.iter()
                .chain(extra)
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn config_reads_the_retry_base_and_reports_a_bad_one() {
        assert_eq!(
            Config::from_lookup(env(&[])).unwrap().retry_base,
            DEFAULT_RETRY_BASE
        );
        assert_eq!(
            Config::from_lookup(env(&[(RETRY_BASE_VAR, "1")]))
                .unwrap()
                .retry_base,
            Duration::from_secs(1)
        );
        let err = Config::from_lookup(env(&[(RETRY_BASE_VAR, "soon")])).unwrap_err();
        assert!(err.problems[0].contains(RETRY_BASE_VAR));
    }

    #[test]
    fn the_fixture_is_an_outbound_delivery() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/dispatcher/sqs-batch.json"
        ))
        .unwrap();
        let event: SqsEvent = serde_json::from_str(&text).unwrap();
        let delivery = OutboundDelivery::parse(event.records[0].body.as_deref().unwrap()).unwrap();
        assert!(delivery.webhook_id.starts_with("msg_"));
    }
}
