//! `dispatcher`: consumes the outbound queue and delivers each app webhook to the team's own
//! endpoint, signed per Standard Webhooks v1. The delivery logic is
//! [`mailgate_services::app_delivery::AppWebhookDelivery`]; this crate decodes the records,
//! POSTs through [`HttpWebhookSender`], answers `batchItemFailures` and emits metrics.
//!
//! Each record is `{"v":1,"endpoint_id","webhook_id","body"}` (see
//! [`mailgate_core::ports::OutboundDelivery`]). Per record:
//! - malformed body or unknown version → moved to the outbound DLQ at once with the reason
//!   (`mailgate_poison_reason`) and acknowledged (poison: a retry cannot fix it);
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
    AwsClients, ConfigError, DynamoDbEndpoints, Queue, ResourceNames, SqsDeadLetterQueue,
    SqsOutboundQueue, Table, visibility_seconds,
};
use mailgate_core::ports::OutboundDelivery;
use mailgate_lambda::poison::{Verdict, drive_batch_with_dlq};
use mailgate_services::app_delivery::{AppDeliveryPorts, AppWebhookDelivery, DispatchOutcome};
use mailgate_services::send::ThreadRandom;

pub use mailgate_lambda::app_webhook_http::{
    HttpWebhookSender, REQUEST_TIMEOUT, WiringError, classify_answer,
};
pub use mailgate_services::app_delivery::{DEFAULT_RETRY_BASE, MAX_RETRY_DELAY, backoff_delay};

/// The Lambda function name.
pub const FUNCTION_NAME: &str = "dispatcher";
/// The tables the dispatcher reads and writes.
pub const TABLES: &[Table] = &[Table::Endpoints];
/// The queues it reads and writes.
pub const QUEUES: &[Queue] = &[Queue::Outbound];
/// The variable holding the first retry's ceiling in seconds (default 30).
pub const RETRY_BASE_VAR: &str = "DISPATCHER_RETRY_BASE_SECS";
/// The variable holding the outbound queue's dead-letter queue URL.
pub const DLQ_VAR: &str = "OUTBOUND_DLQ_URL";
/// The metric counting delivery attempts by `Outcome`.
pub const METRIC: &str = "AppWebhookDeliveries";

/// Typed configuration, loaded once per cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tables and queues.
    pub names: ResourceNames,
    /// The ceiling of the first retry's wait; each further receive doubles it.
    pub retry_base: Duration,
    /// Where poison records go (`OUTBOUND_DLQ_URL`).
    pub dlq_url: String,
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
            Some(v) => v
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| {
                    problems.push(format!(
                        "{RETRY_BASE_VAR} must be a whole number of seconds, got {v:?}"
                    ));
                })
                .ok(),
        };
        let dlq_url = lookup(DLQ_VAR).filter(|v| !v.trim().is_empty());
        if dlq_url.is_none() {
            problems.push(format!("{DLQ_VAR} is not set"));
        }
        match (names, retry_base, dlq_url) {
            (Some(names), Some(retry_base), Some(dlq_url)) if problems.is_empty() => Ok(Self {
                names,
                retry_base,
                dlq_url,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// The function with its service.
#[derive(Debug, Clone)]
pub struct Function {
    delivery: Arc<AppWebhookDelivery>,
    dlq: Arc<SqsDeadLetterQueue>,
}

fn metric(outcome: &str) {
    mailgate_lambda::metrics::count(METRIC, 1, &[("Outcome", outcome)]);
}

impl Function {
    /// Wires the function.
    pub fn new(config: Config, clients: AwsClients) -> Result<Self, WiringError> {
        let ports = AppDeliveryPorts {
            endpoints: Arc::new(DynamoDbEndpoints::on(
                clients
                    .dynamodb_tables(&config.names)
                    .table(Table::Endpoints),
            )),
            sender: Arc::new(HttpWebhookSender::new()?),
            queue: Arc::new(SqsOutboundQueue::new(
                clients.sqs.clone(),
                config.names.queue_url(Queue::Outbound),
            )),
            random: Arc::new(ThreadRandom),
        };
        Ok(Self {
            delivery: Arc::new(AppWebhookDelivery::new(ports, config.retry_base)),
            dlq: Arc::new(SqsDeadLetterQueue::new(clients.sqs, config.dlq_url)),
        })
    }

    /// Handles one SQS batch, reporting the records to retry.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        drive_batch_with_dlq(event, self.dlq.as_ref(), |record| self.process(record)).await
    }

    /// One record.
    async fn process(&self, record: SqsMessage) -> Verdict {
        let delivery = match OutboundDelivery::parse(record.body.as_deref().unwrap_or_default()) {
            Ok(d) => d,
            Err(err) => {
                metric("malformed");
                return Verdict::Poison(err.to_string());
            }
        };
        let receive_count: u32 = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let (endpoint_id, webhook_id) = (&delivery.endpoint_id, &delivery.webhook_id);
        let outcome = self
            .delivery
            .dispatch(
                &delivery,
                record.receipt_handle.as_deref(),
                receive_count,
                SystemTime::now(),
            )
            .await;
        metric(outcome.as_str());
        let later = |wait: Duration| format!("next attempt in {}s", visibility_seconds(wait));
        match outcome {
            DispatchOutcome::Delivered => {
                tracing::info!(%endpoint_id, webhook_id, receive_count, "app webhook delivered");
                Verdict::Done
            }
            DispatchOutcome::Gone => Verdict::Done,
            DispatchOutcome::Dropped(why) => {
                tracing::warn!(%endpoint_id, webhook_id, reason = why, "app webhook dropped");
                Verdict::Done
            }
            DispatchOutcome::Throttled { wait } => Verdict::Retry(format!(
                "endpoint {endpoint_id} asked to retry after {}s; {}",
                wait.as_secs(),
                later(wait)
            )),
            DispatchOutcome::Failed { reason, wait } => Verdict::Retry(format!(
                "delivery to {endpoint_id} failed: {reason}; {}",
                later(wait)
            )),
            DispatchOutcome::NotAttempted(err) => {
                Verdict::Retry(format!("delivery to {endpoint_id} not attempted: {err}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            let base = [
                ("ENDPOINTS_TABLE", "mailgate-dev-endpoints"),
                (
                    "OUTBOUND_QUEUE_URL",
                    "http://127.0.0.1:4566/1/mailgate-dev-outbound",
                ),
                (DLQ_VAR, "http://127.0.0.1:4566/1/mailgate-dev-outbound-dlq"),
            ];
            extra
                .iter()
                .chain(base.iter())
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
        let err = Config::from_lookup(env(&[(DLQ_VAR, " ")])).unwrap_err();
        assert!(err.problems[0].contains(DLQ_VAR));
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
