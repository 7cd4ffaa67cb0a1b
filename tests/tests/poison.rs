//! One policy for poison records on every queue consumer (`event-processor`, `dispatcher`,
//! `send-worker`): a record that can never succeed is moved to its queue's dead-letter queue at
//! once, with the reason in the `mailgate_poison_reason` attribute, and is not reported in
//! `batchItemFailures`; a transient failure in the same batch is reported there. Then
//! `mailgate-admin dlq replay` names each parked message with its reason.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use mailgate_core::{
    ApiKeyId, EmailAddress, EndpointFilter, KeyEnvironment, Mailbox, MessageId, MessageRecord,
    MessageState, OutboundEmail, UnixMillis,
};
use mailgate_tests::TestStack;
use mailgate_tests::queues::{parked, retried, sqs_batch, sqs_records};
use serde_json::json;
use time::OffsetDateTime;

#[tokio::test]
async fn the_event_processor_parks_an_unreadable_envelope_and_retries_a_missing_receipt() {
    let t = TestStack::new().await;
    let config = event_processor::Config::from_lookup(t.function_env("event-processor")).unwrap();
    let p = event_processor::EventProcessor::new(config, t.clients.clone());
    let not_json = "{\"v\":1,\"provider\":";
    let future = json!({"v": 9, "provider": "sendgrid", "receipt": "sendgrid#sha256:x",
        "index": 0, "count": 1, "received_at": 1_795_000_000_000i64, "event": {}})
    .to_string();
    let missing_receipt = json!({"v": 1, "provider": "sendgrid", "receipt": "sendgrid#sha256:gone",
        "index": 0, "count": 1, "received_at": 1_795_000_000_000i64, "event": null, "oversize": true})
    .to_string();
    let response = p
        .handle(sqs_records(&[not_json, &future, &missing_receipt]))
        .await
        .unwrap();
    let event_processor::ProcessorResponse::Batch(response) = response else {
        panic!("expected a batch response");
    };
    assert_eq!(retried(&response), vec!["m-2".to_owned()]);
    // Parked or retried, every failure still counts toward `ProcessingFailures`.
    let tally = p.tally().snapshot();
    assert_eq!(
        tally[&("ProcessingFailures", "ses".into(), "none".into())],
        1
    );
    assert_eq!(
        tally[&("ProcessingFailures", "sendgrid".into(), "none".into())],
        2
    );
    let mut dlq = parked(&t, "EventsDeadLetterQueue").await;
    dlq.sort();
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    let reason_of = |body: &str| {
        dlq.iter()
            .find(|(b, _)| b == body)
            .and_then(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("{body} not parked with a reason: {dlq:?}"))
    };
    assert!(reason_of(not_json).starts_with("unreadable queue message: "));
    assert_eq!(
        reason_of(&future),
        "unreadable queue message: unsupported envelope version 9"
    );

    // `dlq replay` moves them back and names each with its reason.
    let mut out = Vec::new();
    mailgate_admin::run_dlq(
        mailgate_admin::DlqCommand::Replay {
            queue: mailgate_admin::QueueRole::Events,
            queue_url: Some(t.queue_url("EventsQueue")),
        },
        &t.clients.sqs,
        |_| None,
        &mut out,
    )
    .await
    .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("parked as poison: unreadable queue message: unsupported envelope version 9"),
        "{out}"
    );
    assert!(out.contains("replayed 2 message(s)"), "{out}");
}

#[tokio::test]
async fn the_dispatcher_parks_a_malformed_delivery_and_retries_a_refused_connection() {
    let t = TestStack::new().await;
    let endpoints =
        mailgate_aws::DynamoDbEndpoints::new(t.clients.dynamodb.clone(), t.table("EndpointsTable"));
    let now = UnixMillis::from(OffsetDateTime::now_utc());
    let (endpoint, _) = endpoints
        .add(
            "http://127.0.0.1:9/hooks",
            EndpointFilter::parse_list("").unwrap(),
            now,
        )
        .await
        .unwrap();
    let good = mailgate_aws::OutboundDelivery {
        endpoint_id: endpoint.id.clone(),
        webhook_id: "msg_0123456789abcdef0123456789abcdef".into(),
        body: "{}".into(),
    }
    .to_body();
    let v2 = good.replace("\"v\":1", "\"v\":2");
    let config = dispatcher::Config::from_lookup(t.function_env("dispatcher")).unwrap();
    let dispatcher = dispatcher::Function::new(config, t.clients.clone()).unwrap();
    let response = dispatcher.handle(sqs_batch(&[&v2, &good])).await;
    assert_eq!(retried(&response), vec!["m-1".to_owned()]);
    assert_eq!(
        parked(&t, "OutboundDeadLetterQueue").await,
        vec![(
            v2.clone(),
            Some("not an outbound-queue message: unsupported version 2".to_owned())
        )]
    );
}

#[tokio::test]
async fn the_send_worker_parks_a_malformed_pointer_and_retries_a_message_not_yet_released() {
    let t = TestStack::new().await;
    let messages =
        mailgate_aws::DynamoDbMessages::new(t.clients.dynamodb.clone(), t.table("MessagesTable"));
    let mut email = OutboundEmail::new(
        MessageId::generate(),
        Mailbox::new(EmailAddress::parse("news@example.com").unwrap()),
        EmailAddress::parse("jane@example.org").unwrap(),
        "Later",
    );
    email.text = Some("Hi".into());
    let now = UnixMillis::from(OffsetDateTime::now_utc());
    let record = MessageRecord::new(
        &email,
        ApiKeyId::generate(),
        KeyEnvironment::Test,
        MessageState::Scheduled,
        now,
        Some(UnixMillis(now.as_i64() + 3_600_000)),
        &[],
    );
    messages.create_for(&record, &email, None).await.unwrap();
    let pointer = json!({"v": 1, "message_id": record.id.to_string()}).to_string();
    let garbage = "not a pointer";
    let config = send_worker::Config::from_lookup(t.function_env("send-worker")).unwrap();
    let worker = send_worker::Function::new(config, t.clients.clone()).unwrap();
    let response = worker.handle(sqs_batch(&[garbage, &pointer])).await;
    assert_eq!(retried(&response), vec!["m-1".to_owned()]);
    let dlq = parked(&t, "SendDeadLetterQueue").await;
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    assert_eq!(dlq[0].0, garbage);
    let reason = dlq[0].1.clone().unwrap();
    assert!(!reason.is_empty(), "{reason}");
}
