//! Classified store failures on the real wire: the queue consumers (`send-worker`,
//! `event-processor`) run against the emulator behind the fault proxy with the SDK's own retries
//! off, so each answer the proxy injects reaches the adapters as it would after the SDK gave up.
//! A throttled or 5xx store call leaves the record on its queue (`batchItemFailures`), and the
//! retry succeeds once the store answers; a record whose stored data can never be read is moved
//! to the dead-letter queue at once with the reason, and not retried.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use mailgate_aws::{AwsClients, message_pk};
use mailgate_core::{
    ApiKeyId, EmailAddress, KeyEnvironment, Mailbox, MessageId, MessageRecord, MessageState,
    OutboundEmail, UnixMillis,
};
use mailgate_fault_proxy::{Fault, FaultProxy, Op, When};
use mailgate_tests::TestStack;
use mailgate_tests::queues::{parked, retried, sqs_batch, sqs_records};
use serde_json::json;
use time::OffsetDateTime;

/// A stack, and clients that reach it through a fault proxy without SDK retries.
async fn stack_behind_proxy() -> (TestStack, FaultProxy, AwsClients) {
    let t = TestStack::new().await;
    let proxy = FaultProxy::start(&t.endpoint).await.unwrap();
    let sdk = mailgate_tests::sdk_config(&proxy.url())
        .await
        .into_builder()
        .retry_config(RetryConfig::disabled())
        .build();
    let clients = AwsClients::new(&sdk);
    (t, proxy, clients)
}

/// A `queued` message stored in the messages table; its send-queue pointer.
async fn queued_message(t: &TestStack) -> (MessageId, String) {
    let messages =
        mailgate_aws::DynamoDbMessages::new(t.clients.dynamodb.clone(), t.table("MessagesTable"));
    let mut email = OutboundEmail::new(
        MessageId::generate(),
        Mailbox::new(EmailAddress::parse("news@example.com").unwrap()),
        EmailAddress::parse("jane@example.org").unwrap(),
        "Queued",
    );
    email.text = Some("Hi".into());
    let record = MessageRecord::new(
        &email,
        ApiKeyId::generate(),
        KeyEnvironment::Test,
        MessageState::Queued,
        UnixMillis::from(OffsetDateTime::now_utc()),
        None,
        &[],
    );
    messages.create_for(&record, &email, None).await.unwrap();
    let pointer = json!({"v": 1, "message_id": record.id.to_string()}).to_string();
    (record.id, pointer)
}

async fn state_of(t: &TestStack, id: &MessageId) -> MessageState {
    mailgate_aws::DynamoDbMessages::new(t.clients.dynamodb.clone(), t.table("MessagesTable"))
        .summary(id)
        .await
        .unwrap()
        .unwrap()
        .state
}

#[tokio::test]
async fn the_send_worker_retries_a_throttled_or_failing_store_and_parks_an_unreadable_message() {
    let (t, proxy, clients) = stack_behind_proxy().await;
    let config = send_worker::Config::from_lookup(t.function_env("send-worker")).unwrap();
    let worker = send_worker::Function::new(config, clients).unwrap();
    let (id, pointer) = queued_message(&t).await;

    // The message load (a Query on its partition) is throttled, then fails with a 500: each
    // time the record stays on the queue and nothing is parked or sent.
    for fault in [Fault::Throttle, Fault::Status500] {
        proxy.fail(Op::dynamodb("Query"), fault, When::FirstN(1));
        let response = worker.handle(sqs_batch(&[&pointer])).await;
        assert_eq!(retried(&response), vec!["m-0".to_owned()]);
        assert_eq!(state_of(&t, &id).await, MessageState::Queued);
        proxy.clear_rules();
    }
    assert!(parked(&t, "SendDeadLetterQueue").await.is_empty());

    // The redelivery, with the store answering, sends it.
    let response = worker.handle(sqs_batch(&[&pointer])).await;
    assert!(retried(&response).is_empty());
    assert_eq!(state_of(&t, &id).await, MessageState::Sent);

    // A message whose stored summary cannot be read: parked at once with the reason, not
    // reported for a retry.
    let (broken, broken_pointer) = queued_message(&t).await;
    t.clients
        .dynamodb
        .update_item()
        .table_name(t.table("MessagesTable"))
        .key("pk", AttributeValue::S(message_pk(&broken)))
        .key("sk", AttributeValue::S("summary".into()))
        .update_expression("SET #state = :bogus")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":bogus", AttributeValue::S("exploded".into()))
        .send()
        .await
        .unwrap();
    let response = worker.handle(sqs_batch(&[&broken_pointer])).await;
    assert!(retried(&response).is_empty(), "{response:?}");
    let dlq = parked(&t, "SendDeadLetterQueue").await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].0, broken_pointer);
    let reason = dlq[0].1.clone().unwrap();
    assert!(
        reason.starts_with(&format!("message {broken} cannot be loaded: ")),
        "{reason}"
    );
    assert!(reason.contains("(corrupt)"), "{reason}");
}

/// An events-queue message pointing at the stored receipt `receipt` (an oversize event).
fn oversize_pointer(receipt: &str) -> String {
    json!({"v": 1, "provider": "sendgrid", "receipt": receipt, "index": 0, "count": 1,
        "received_at": 1_795_000_000_000i64, "event": null, "oversize": true})
    .to_string()
}

#[tokio::test]
async fn the_event_processor_retries_a_throttled_or_failing_store_and_parks_an_unreadable_receipt()
{
    let (t, proxy, clients) = stack_behind_proxy().await;
    let config = event_processor::Config::from_lookup(t.function_env("event-processor")).unwrap();
    let p = event_processor::EventProcessor::new(config, clients);
    let handle = |bodies: Vec<String>| {
        let p = &p;
        async move {
            let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
            match p.handle(sqs_records(&bodies)).await.unwrap() {
                event_processor::ProcessorResponse::Batch(response) => response,
                other => panic!("expected a batch response, got {other:?}"),
            }
        }
    };

    // A readable receipt whose read is throttled, then fails with a 503: retried each time.
    let receipts = t.table("ReceiptsTable");
    let event = json!([{"event": "delivered", "email": "jane@example.org",
        "sg_event_id": "ev-store-faults-1", "sg_message_id": "sg-1", "timestamp": 1_795_000_000}]);
    t.clients
        .dynamodb
        .put_item()
        .table_name(&receipts)
        .item("pk", AttributeValue::S("sendgrid#sha256:good".into()))
        .item("provider", AttributeValue::S("sendgrid".into()))
        .item("status", AttributeValue::S("queued".into()))
        .item(
            "body",
            AttributeValue::B(event.to_string().into_bytes().into()),
        )
        .item("content_type", AttributeValue::S("application/json".into()))
        .send()
        .await
        .unwrap();
    let good = oversize_pointer("sendgrid#sha256:good");
    for fault in [Fault::Throttle, Fault::Status503] {
        proxy.fail(Op::dynamodb("GetItem"), fault, When::FirstN(1));
        let response = handle(vec![good.clone()]).await;
        assert_eq!(retried(&response), vec!["m-0".to_owned()]);
        proxy.clear_rules();
    }
    assert!(parked(&t, "EventsDeadLetterQueue").await.is_empty());
    // With the store answering, the same record is applied (an orphan: no message of ours).
    let response = handle(vec![good.clone()]).await;
    assert!(retried(&response).is_empty(), "{response:?}");

    // A receipt stored without a body can never be read: parked with the reason at once.
    t.clients
        .dynamodb
        .put_item()
        .table_name(&receipts)
        .item("pk", AttributeValue::S("sendgrid#sha256:broken".into()))
        .item("provider", AttributeValue::S("sendgrid".into()))
        .item("status", AttributeValue::S("queued".into()))
        .send()
        .await
        .unwrap();
    let broken = oversize_pointer("sendgrid#sha256:broken");
    let response = handle(vec![broken.clone()]).await;
    assert!(retried(&response).is_empty(), "{response:?}");
    let dlq = parked(&t, "EventsDeadLetterQueue").await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].0, broken);
    let reason = dlq[0].1.clone().unwrap();
    assert!(
        reason.starts_with("receipt sendgrid#sha256:broken cannot be loaded: "),
        "{reason}"
    );
    assert!(reason.contains("(corrupt)"), "{reason}");
}
