//! `event-processor`: consumes the events queue (webhook receipts and SES events) and accepts SES
//! events straight from an EventBridge rule.
//!
//! An EventBridge event is forwarded onto the events queue, so every path ends in the same SQS
//! processing, with its buffering, retries and dead-letter queue. Normalisation, dedupe, history
//! and state arrive with the processor issue; until then SQS records stay on the queue.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use mailgate_aws::{AwsClients, ConfigError, Queue, ResourceNames, Table};
use serde::Serialize;
use serde_json::Value;

/// The Lambda function name.
pub const FUNCTION_NAME: &str = "event-processor";

/// Typed configuration, loaded once per cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tables and queues.
    pub names: ResourceNames,
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            names: ResourceNames::from_env(
                &[
                    Table::Messages,
                    Table::Receipts,
                    Table::Dedupe,
                    Table::Suppressions,
                ],
                &[Queue::Events, Queue::Outbound],
            )?,
        })
    }
}

/// Why an invocation failed as a whole (the trigger retries it).
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The payload is neither an SQS batch nor an EventBridge event.
    #[error("unrecognised trigger payload: {0}")]
    UnknownTrigger(String),
    /// Forwarding an EventBridge event onto the events queue failed.
    #[error("could not forward the EventBridge event to the events queue: {0}")]
    Forward(String),
}

/// The two trigger shapes the function accepts.
#[derive(Debug)]
pub enum Trigger {
    /// A batch from the events queue.
    Sqs(SqsEvent),
    /// One event from an EventBridge rule targeting the function directly.
    EventBridge(Value),
}

impl Trigger {
    /// Tells the shapes apart: an SQS batch has `Records`, an EventBridge event `detail-type`.
    pub fn from_payload(payload: Value) -> Result<Self, ProcessorError> {
        if payload.get("Records").is_some() {
            serde_json::from_value(payload)
                .map(Trigger::Sqs)
                .map_err(|e| ProcessorError::UnknownTrigger(format!("bad SQS batch: {e}")))
        } else if payload.get("detail-type").is_some() && payload.get("source").is_some() {
            Ok(Trigger::EventBridge(payload))
        } else {
            Err(ProcessorError::UnknownTrigger(
                "expected an SQS batch (Records) or an EventBridge event (detail-type, source)"
                    .to_owned(),
            ))
        }
    }
}

/// What the function answers.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ProcessorResponse {
    /// For an SQS batch: the records to retry.
    Batch(SqsBatchResponse),
    /// For an EventBridge event: the SQS message id it was forwarded as.
    Forwarded {
        /// The SQS message id.
        forwarded_message_id: String,
    },
}

/// The function with its clients.
#[derive(Debug, Clone)]
pub struct EventProcessor {
    config: Config,
    clients: AwsClients,
}

impl EventProcessor {
    /// Wires the function.
    pub fn new(config: Config, clients: AwsClients) -> Self {
        Self { config, clients }
    }

    /// Handles one invocation of either shape.
    pub async fn handle(&self, payload: Value) -> Result<ProcessorResponse, ProcessorError> {
        match Trigger::from_payload(payload)? {
            Trigger::Sqs(batch) => Ok(ProcessorResponse::Batch(
                mailgate_lambda::sqs::hold_batch(FUNCTION_NAME, batch).await,
            )),
            Trigger::EventBridge(event) => self.forward(event).await,
        }
    }

    async fn forward(&self, event: Value) -> Result<ProcessorResponse, ProcessorError> {
        let out = self
            .clients
            .sqs
            .send_message()
            .queue_url(self.config.names.queue_url(Queue::Events))
            .message_body(event.to_string())
            .send()
            .await
            .map_err(|e| {
                ProcessorError::Forward(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
            })?;
        Ok(ProcessorResponse::Forwarded {
            forwarded_message_id: out.message_id.unwrap_or_default(),
        })
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
}
