//! Received mail as the integration tests read it: the inbound table and bucket through the
//! real adapters, and the event processor run over the events queue as its SQS trigger would.

use mailgate_aws::{DynamoDbInboundRecords, S3InboundObjects};
use mailgate_core::InboundId;
use serde_json::Value;

use crate::webhooks::drain_events;
use crate::{TestStack, fixture};

/// The event processor with the template's environment.
pub fn processor(t: &TestStack) -> event_processor::EventProcessor {
    let config = event_processor::Config::from_lookup(t.function_env("event-processor"))
        .expect("the template configures the event processor");
    event_processor::EventProcessor::new(config, t.clients.clone())
}

/// The inbound records of `t`.
pub fn records(t: &TestStack) -> DynamoDbInboundRecords {
    DynamoDbInboundRecords::new(t.clients.dynamodb.clone(), t.table("InboundTable"), 86_400)
}

/// The inbound bucket of `t`.
pub fn objects(t: &TestStack) -> S3InboundObjects {
    S3InboundObjects::new(S3InboundObjects::client(&t.sdk), t.bucket("InboundBucket"))
}

/// Runs the event processor on every message of the events queue, as its SQS trigger would;
/// returns the inbound ids whose parse requests it saw. Every record must succeed.
pub async fn process_queue(t: &TestStack) -> Vec<InboundId> {
    let processor = processor(t);
    let template: Value = serde_json::from_str(&fixture("event-processor/sqs-inbound-parse.json"))
        .expect("the fixture parses");
    let mut seen = Vec::new();
    for message in drain_events(t).await {
        if let Some(id) = message.get("inbound").and_then(Value::as_str) {
            seen.push(InboundId::parse(id).expect("an inbound id"));
        }
        let mut batch = template.clone();
        batch["Records"][0]["body"] = Value::String(message.to_string());
        let out = processor
            .handle(batch)
            .await
            .expect("the processor answers");
        let out = serde_json::to_value(out).expect("serialises");
        assert_eq!(out["batchItemFailures"], Value::Array(vec![]), "{message}");
    }
    seen
}
