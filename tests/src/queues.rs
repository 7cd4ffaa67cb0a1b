//! Queue consumers as the integration tests drive them: SQS events built from bodies (as Lambda
//! hands them over), the records a handler reported for a retry, and what a dead-letter queue
//! holds with the poison reason each message was parked with.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use mailgate_aws::POISON_REASON_ATTRIBUTE;
use serde_json::{Value, json};

use crate::TestStack;

/// An SQS trigger payload of `bodies`: record `i` has message id `m-<i>` and receipt handle
/// `h-<i>`, received once.
pub fn sqs_records(bodies: &[&str]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "messageId": format!("m-{i}"),
                "receiptHandle": format!("h-{i}"),
                "body": b,
                "eventSource": "aws:sqs",
                "attributes": {"ApproximateReceiveCount": "1"},
            })
        })
        .collect();
    json!({ "Records": records })
}

/// [`sqs_records`] as the typed event.
pub fn sqs_batch(bodies: &[&str]) -> SqsEvent {
    serde_json::from_value(sqs_records(bodies)).expect("an SQS event")
}

/// The message ids a handler reported in `batchItemFailures` (to be retried).
pub fn retried(response: &SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// Everything on the dead-letter queue with logical id `dlq`: (body, poison reason).
pub async fn parked(t: &TestStack, dlq: &str) -> Vec<(String, Option<String>)> {
    let out = t
        .clients
        .sqs
        .receive_message()
        .queue_url(t.queue_url(dlq))
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .message_attribute_names("All")
        .send()
        .await
        .expect("the dead-letter queue is readable");
    out.messages()
        .iter()
        .map(|m| {
            let reason = m
                .message_attributes()
                .and_then(|a| a.get(POISON_REASON_ATTRIBUTE))
                .and_then(|v| v.string_value())
                .map(str::to_owned);
            (m.body().unwrap_or_default().to_owned(), reason)
        })
        .collect()
}
