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
use mailgate_aws::{AwsClients, Queue, SqsDeadLetterQueue};
use mailgate_core::inbound::inbound_of_queue_message;
use mailgate_core::{Clock, InboundId, SystemClock};
use mailgate_lambda::events::Tally;
use mailgate_lambda::poison::{Verdict, drive_batch_with_dlq};
use mailgate_services::events::{EventApplier, MessageReport};
use mailgate_services::received::ReceivedMail;
use serde_json::Value;

pub use mailgate_lambda::events::{
    DLQ_VAR, ProcessorConfig as Config, ProcessorError, ProcessorResponse, SUPPRESS_UNMATCHED_VAR,
    Trigger,
};
pub use mailgate_services::events::{EventError, EventOutcome};

/// The Lambda function name.
pub const FUNCTION_NAME: &str = "event-processor";
/// The metric counting received messages kept as `parse_failed` (no dimensions).
pub const INBOUND_PARSE_FAILURES: &str = "InboundParseFailures";

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
