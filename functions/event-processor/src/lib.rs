//! `event-processor`: turns provider events into message state, history, suppressions, metrics
//! and app webhooks. The pipeline is [`mailgate_services::events::EventApplier`]; this crate
//! decodes the trigger, calls it, answers `batchItemFailures` and emits the metrics.
//!
//! Triggers: SQS batches from the events queue (one webhook event per message, or an SES event
//! an EventBridge rule put on the queue), and an EventBridge event when a rule targets the
//! function itself — that one is forwarded onto the events queue, so every path ends in the
//! same SQS processing, with its buffering, retries and DLQ.
//!
//! The events queue also carries parse requests for received (inbound) email
//! (`{"v":1,"inbound":"inb_…"}`, queued by the webhook functions' `/inbound`): those go to
//! [`mailgate_services::inbound::Inbound::process`] with the same retry and poison rules; each
//! processed message goes to the app endpoints as `email.received`, and each one kept as
//! `parse_failed` counts toward `InboundParseFailures` (no dimensions; alarmed in the template).
//!
//! Per record: a message that can never be read (not JSON, not our envelope, an unknown
//! version) is moved to the events DLQ at once with the reason (`mailgate_poison_reason`) and
//! acknowledged; any other failure (a receipt that cannot be loaded, an event that cannot be
//! read, AWS down) is reported in `batchItemFailures` alone and reaches the DLQ after the
//! redrive count.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsMessage;
use mailgate_aws::{AwsClients, ConfigError, Queue, ResourceNames, SqsDeadLetterQueue, Table};
use mailgate_core::inbound::inbound_of_queue_message;
use mailgate_core::{Clock, InboundId, SoftBounceRule, SystemClock};
use mailgate_lambda::events::Tally;
use mailgate_lambda::poison::{Verdict, drive_batch_with_dlq};
use mailgate_services::events::{EventApplier, MessageReport};
use mailgate_services::received::ReceivedMail;
use serde_json::Value;

use mailgate_core::GuardrailPolicy;
pub use mailgate_lambda::events::{ProcessorError, ProcessorResponse, Trigger};
pub use mailgate_services::events::{EventError, EventOutcome};

/// The Lambda function name.
pub const FUNCTION_NAME: &str = "event-processor";
/// The variable holding the events queue's dead-letter queue URL.
pub const DLQ_VAR: &str = "EVENTS_DLQ_URL";

/// The metric counting received messages kept as `parse_failed` (no dimensions).
pub const INBOUND_PARSE_FAILURES: &str = "InboundParseFailures";

/// Whether orphan events (about mail we did not send) still suppress (default `false`).
pub const SUPPRESS_UNMATCHED_VAR: &str = "SUPPRESS_UNMATCHED_EVENTS";

/// Typed configuration, loaded once per cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tables and queues.
    pub names: ResourceNames,
    /// When soft bounces suppress an address (`SOFT_BOUNCE_THRESHOLD`, default 5;
    /// `SOFT_BOUNCE_WINDOW_DAYS`, default 30).
    pub soft_bounce: SoftBounceRule,
    /// Where poison records go (`EVENTS_DLQ_URL`).
    pub dlq_url: String,
    /// Whether orphan events (about mail we did not send) still suppress
    /// (`SUPPRESS_UNMATCHED_EVENTS`, default `false`: only for a provider account shared with
    /// other senders). A stranger named on our message never suppresses.
    pub suppress_unmatched: bool,
    /// Where received mail is stored (`INBOUND_TABLE`, `INBOUND_BUCKET`,
    /// `INBOUND_RETENTION_DAYS`).
    pub inbound: mailgate_lambda::inbound::InboundSettings,
    /// Reply addresses that thread what they receive (`INBOUND_DOMAIN`, verified with
    /// `UNSUBSCRIBE_SIGNING_KEYS`), when both are set.
    pub replies: Option<mailgate_core::ReplyAddresses>,
    /// The reputation guardrails (`GUARDRAIL_WINDOW_SENDS`, default 10000;
    /// `GUARDRAIL_MIN_SENDS`, default 1000; `GUARDRAIL_COMPLAINT_RATE`, default 0.001;
    /// `GUARDRAIL_HARD_BOUNCE_RATE`, default 0.04), over the counters in `MESSAGES_TABLE` and
    /// the switch in `CONTROL_TABLE`.
    pub guardrails: GuardrailPolicy,
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `lookup` (tests pass a map); every problem at once.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let tables = [
            Table::Messages,
            Table::Receipts,
            Table::Dedupe,
            Table::Suppressions,
            Table::Endpoints,
            Table::Control,
        ];
        let names = ResourceNames::from_lookup(&tables, &[Queue::Events, Queue::Outbound], &lookup)
            .map_err(|e| problems.extend(e.problems))
            .ok();
        let soft_bounce = mailgate_lambda::events::soft_bounce_rule(&lookup, &mut problems);
        let guardrails = mailgate_lambda::events::guardrail_policy(&lookup, &mut problems);
        let suppress_unmatched =
            mailgate_lambda::events::flag_setting(&lookup, SUPPRESS_UNMATCHED_VAR, &mut problems);
        let dlq_url = lookup(DLQ_VAR).filter(|v| !v.trim().is_empty());
        if dlq_url.is_none() {
            problems.push(format!("{DLQ_VAR} is not set"));
        }
        let inbound =
            mailgate_lambda::inbound::InboundSettings::from_lookup(&lookup, &mut problems);
        let replies = mailgate_core::unsubscribe::reply_addresses_from_lookup(&lookup)
            .map_err(|e| problems.push(e))
            .ok()
            .flatten();
        match (names, dlq_url, inbound) {
            (Some(names), Some(dlq_url), Some(inbound)) if problems.is_empty() => Ok(Self {
                names,
                soft_bounce,
                dlq_url,
                suppress_unmatched,
                inbound,
                replies,
                guardrails,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// The function with its service.
#[derive(Debug, Clone)]
pub struct EventProcessor {
    applier: EventApplier,
    received: ReceivedMail,
    dlq: Arc<SqsDeadLetterQueue>,
    tally: Arc<Tally>,
}

impl EventProcessor {
    /// Wires the function.
    pub fn new(config: Config, clients: AwsClients) -> Self {
        Self::with_clock(config, clients, Arc::new(SystemClock))
    }

    /// The same function reading time from `clock` (tests).
    pub fn with_clock(config: Config, clients: AwsClients, clock: Arc<dyn Clock>) -> Self {
        let applier = mailgate_lambda::events::event_applier(
            &clients,
            &config.names,
            config.soft_bounce,
            clock.clone(),
        )
        .with_effects_for_unmatched(config.suppress_unmatched)
        .with_guardrails(
            mailgate_lambda::events::reputation_guard(&clients, &config.names),
            config.guardrails,
        );
        let inbound = mailgate_lambda::inbound::inbound_service(
            &clients,
            &config.inbound,
            config.names.queue_url(Queue::Events),
        )
        .with_reply_addresses(config.replies.clone())
        .with_message_lookup(mailgate_lambda::events::message_lookup(
            &clients,
            &config.names,
        ))
        .with_hand_off(
            Arc::new(mailgate_lambda::events::app_webhook_fan_out(
                &clients,
                &config.names,
            )),
            clock,
        );
        Self {
            received: ReceivedMail::new(inbound, applier.clone()),
            applier,
            dlq: Arc::new(SqsDeadLetterQueue::new(clients.sqs, config.dlq_url)),
            tally: Arc::new(Tally::default()),
        }
    }

    /// The metric counts of this instance so far (tests and benchmarks read them).
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Handles one invocation of either shape.
    pub async fn handle(&self, payload: Value) -> Result<ProcessorResponse, ProcessorError> {
        match Trigger::from_payload(payload)? {
            Trigger::Sqs(batch) => {
                let before = self.tally.snapshot();
                let response =
                    drive_batch_with_dlq(batch, self.dlq.as_ref(), |r| self.process_record(r))
                        .await;
                self.tally.emit_since(&before);
                Ok(ProcessorResponse::Batch(response))
            }
            Trigger::EventBridge(event) => {
                let id = self.applier.forward(&event.to_string()).await;
                let forwarded_message_id =
                    id.map_err(|e| ProcessorError::Forward(e.to_string()))?;
                Ok(ProcessorResponse::Forwarded {
                    forwarded_message_id,
                })
            }
        }
    }

    /// Processes one queue message: done, retried, or parked as poison. Every failure counts
    /// toward `ProcessingFailures`, poison included.
    pub async fn process_record(&self, record: SqsMessage) -> Verdict {
        let body = record.body.unwrap_or_default();
        if let Some(id) = inbound_of_queue_message(&body) {
            return self.process_inbound(&id).await;
        }
        let Some(err) = self.apply(&body).await.failure else {
            return Verdict::Done;
        };
        let provider = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("provider").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| "ses".to_owned());
        self.tally.add("ProcessingFailures", &provider, "none");
        if err.is_poison() {
            return Verdict::Poison(err.to_string());
        }
        tracing::error!(error = %err, "event left on the queue for retry");
        Verdict::Retry(err.to_string())
    }

    /// Parses one received message and applies what it adds to our messages' histories: done,
    /// retried, or parked as poison.
    pub async fn process_inbound(&self, id: &InboundId) -> Verdict {
        let (report, result) = self.received.process(id).await;
        if report.parse_failed {
            mailgate_lambda::metrics::count(INBOUND_PARSE_FAILURES, 1, &[]);
        }
        report.events.iter().for_each(|e| self.tally.count(e));
        match result {
            Ok(()) => {
                tracing::info!(inbound = %id, events = report.events.len(), "inbound message processed");
                Verdict::Done
            }
            Err(err) => {
                self.tally.add("ProcessingFailures", "inbound", "none");
                if err.is_poison() {
                    return Verdict::Poison(err.to_string());
                }
                tracing::error!(inbound = %id, error = %err, "inbound message left on the queue for retry");
                Verdict::Retry(err.to_string())
            }
        }
    }

    /// Processes the body of one queue message; returns what became of each event in it.
    pub async fn process_body(&self, body: &str) -> Result<Vec<EventOutcome>, EventError> {
        self.apply(body).await.result()
    }

    async fn apply(&self, body: &str) -> MessageReport {
        let report = self.applier.apply_message(body).await;
        report.events.iter().for_each(|e| self.tally.count(e));
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../../events/event-processor/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn recognises_both_trigger_fixtures() {
        assert!(matches!(
            Trigger::from_payload(fixture("sqs-batch.json")).unwrap(),
            Trigger::Sqs(b) if b.records.len() == 2
        ));
        assert!(matches!(
            Trigger::from_payload(fixture("eventbridge-ses-bounce.json")).unwrap(),
            Trigger::EventBridge(_)
        ));
    }

    #[test]
    fn refuses_other_payloads() {
        assert!(Trigger::from_payload(serde_json::json!({"hello": "world"})).is_err());
    }

    #[test]
    fn soft_bounce_and_dead_letter_settings_are_read_and_checked() {
        let env = |extra: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                if let Some((_, v)) = extra.iter().find(|(name, _)| *name == k) {
                    Some((*v).to_owned())
                } else if k.starts_with("SOFT_BOUNCE")
                    || k.starts_with("GUARDRAIL_")
                    || k == SUPPRESS_UNMATCHED_VAR
                    || k == "INBOUND_RETENTION_DAYS"
                {
                    None
                } else if k.ends_with("_URL") {
                    Some(format!("http://127.0.0.1:1/{k}"))
                } else if k.ends_with("_TABLE") || k == "INBOUND_BUCKET" {
                    Some(format!("table-{k}"))
                } else {
                    None
                }
            }
        };
        let config = Config::from_lookup(env(&[])).unwrap();
        assert_eq!(config.soft_bounce, SoftBounceRule::default());
        assert!(!config.suppress_unmatched);
        assert!(
            Config::from_lookup(env(&[(SUPPRESS_UNMATCHED_VAR, "TRUE")]))
                .unwrap()
                .suppress_unmatched
        );
        let err = Config::from_lookup(env(&[(SUPPRESS_UNMATCHED_VAR, "yes")])).unwrap_err();
        assert!(err.to_string().contains(SUPPRESS_UNMATCHED_VAR));
        assert_eq!(config.dlq_url, "http://127.0.0.1:1/EVENTS_DLQ_URL");
        let config = Config::from_lookup(env(&[
            ("SOFT_BOUNCE_THRESHOLD", "3"),
            ("SOFT_BOUNCE_WINDOW_DAYS", "7"),
        ]))
        .unwrap();
        assert_eq!(config.soft_bounce.threshold, 3);
        assert_eq!(config.soft_bounce.window_ms, 7 * 24 * 3600 * 1000);
        let err = Config::from_lookup(env(&[("SOFT_BOUNCE_THRESHOLD", "zero")])).unwrap_err();
        assert!(err.to_string().contains("SOFT_BOUNCE_THRESHOLD"));
        let err = Config::from_lookup(env(&[(DLQ_VAR, "")])).unwrap_err();
        assert!(err.to_string().contains(DLQ_VAR));
    }
}
