#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! The fault proxy proven through the real AWS SDK clients against the emulator `make test` starts
//! (`MAILGATE_TEST_AWS_ENDPOINT`): each fault is seen by the SDK as the real service's would be.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::Client as Dynamo;
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TransactWriteItem,
};
use aws_sdk_sqs::Client as Sqs;
use aws_sdk_sqs::operation::send_message::SendMessageError;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use mailgate_fault_proxy::{Fault, FaultProxy, Op, Service, When};

fn emulator() -> String {
    std::env::var("MAILGATE_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("MAILGATE_TEST_AWS_ENDPOINT is not set: run these tests with `make test`, which starts the emulator (see docs/testing.md)")
    })
}

/// SDK configuration for `endpoint` with the given attempts (1 = no retry) and a short backoff so
/// retries do not slow the tests.
async fn sdk(endpoint: &str, max_attempts: u32) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "fault-proxy"))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(max_attempts)
                .with_initial_backoff(Duration::from_millis(10))
                .with_max_backoff(Duration::from_millis(50)),
        )
        .load()
        .await
}

/// A fresh table (`pk` string key) created directly in the emulator, not through the proxy.
async fn table() -> String {
    let name = format!("fp-{}", uuid::Uuid::new_v4().simple());
    Dynamo::new(&sdk(&emulator(), 1).await)
        .create_table()
        .table_name(&name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    name
}

/// Whether the item `pk` is in `table`, asked of the emulator directly.
async fn item_exists(table: &str, pk: &str) -> bool {
    Dynamo::new(&sdk(&emulator(), 1).await)
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .is_some()
}

async fn put(client: &Dynamo, table: &str, pk: &str) -> Result<(), SdkError<PutItemError>> {
    client
        .put_item()
        .table_name(table)
        .item("pk", AttributeValue::S(pk.to_owned()))
        .send()
        .await
        .map(|_| ())
}

async fn proxied_dynamo(max_attempts: u32) -> (FaultProxy, Dynamo) {
    let proxy = FaultProxy::start(&emulator()).await.unwrap();
    let client = Dynamo::new(&sdk(&proxy.url(), max_attempts).await);
    (proxy, client)
}

#[tokio::test]
async fn put_item_answered_503_succeeds_on_the_sdk_retry() {
    let table = table().await;
    let (proxy, client) = proxied_dynamo(3).await;
    proxy.fail(Op::dynamodb("PutItem"), Fault::Status503, When::Nth(1));

    put(&client, &table, "a")
        .await
        .expect("the SDK retries the 503");

    let put_item = Op::dynamodb("PutItem");
    assert_eq!(proxy.calls(&put_item), 2, "one failed attempt, one retry");
    assert_eq!(proxy.faults(&put_item), 1);
    assert!(item_exists(&table, "a").await);
}

#[tokio::test]
async fn a_500_without_retries_reaches_the_caller_and_writes_nothing() {
    let table = table().await;
    let (proxy, client) = proxied_dynamo(1).await;
    proxy.fail(Op::dynamodb("PutItem"), Fault::Status500, When::Always);

    let err = put(&client, &table, "a").await.unwrap_err();

    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(500));
    assert_eq!(err.code(), Some("InternalServerError"));
    assert!(matches!(
        err.into_service_error(),
        PutItemError::InternalServerError(_)
    ));
    assert!(!item_exists(&table, "a").await);
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_and_surfaces_when_it_persists() {
    let table = table().await;
    let (proxy, client) = proxied_dynamo(2).await;
    let put_item = Op::dynamodb("PutItem");
    proxy.fail(put_item.clone(), Fault::Throttle, When::FirstN(2));

    let err = put(&client, &table, "a").await.unwrap_err();
    assert!(
        matches!(
            err.into_service_error(),
            PutItemError::ProvisionedThroughputExceededException(_)
        ),
        "the SDK parses the throttling error"
    );
    assert_eq!(
        proxy.calls(&put_item),
        2,
        "the SDK classified it as retryable"
    );
    assert!(!item_exists(&table, "a").await);

    // ThrottlingException is retried too; the rule above is spent.
    proxy.fail(put_item.clone(), Fault::ThrottlingException, When::Nth(1));
    put(&client, &table, "b")
        .await
        .expect("retried after ThrottlingException");
    assert_eq!(proxy.calls(&put_item), 4);
    assert_eq!(proxy.faults(&put_item), 3);
    assert!(item_exists(&table, "b").await);
}

#[tokio::test]
async fn a_conditional_check_failure_is_the_sdk_s_typed_error() {
    let table = table().await;
    let (proxy, client) = proxied_dynamo(3).await;
    proxy.fail(
        Op::dynamodb("PutItem"),
        Fault::ConditionalCheckFailed,
        When::Always,
    );

    let err = put(&client, &table, "a").await.unwrap_err();

    assert!(matches!(
        err.into_service_error(),
        PutItemError::ConditionalCheckFailedException(_)
    ));
    assert_eq!(
        proxy.calls(&Op::dynamodb("PutItem")),
        1,
        "not a retryable error"
    );
    assert!(!item_exists(&table, "a").await);
}

#[tokio::test]
async fn a_cancelled_transaction_carries_one_reason_per_item() {
    let table = table().await;
    let (proxy, client) = proxied_dynamo(3).await;
    let transact = Op::dynamodb("TransactWriteItems");
    proxy.fail(
        transact.clone(),
        Fault::transaction_condition_failed(1),
        When::Nth(1),
    );
    let item = |pk: &str| {
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&table)
                    .item("pk", AttributeValue::S(pk.to_owned()))
                    .build()
                    .unwrap(),
            )
            .build()
    };

    let err = client
        .transact_write_items()
        .transact_items(item("a"))
        .transact_items(item("b"))
        .send()
        .await
        .unwrap_err();

    let TransactWriteItemsError::TransactionCanceledException(cancelled) = err.into_service_error()
    else {
        panic!("expected TransactionCanceledException");
    };
    let codes: Vec<_> = cancelled
        .cancellation_reasons()
        .iter()
        .map(|r| r.code().unwrap_or_default())
        .collect();
    assert_eq!(codes, ["None", "ConditionalCheckFailed"]);
    assert_eq!(proxy.calls(&transact), 1, "cancellations are not retried");
    assert!(!item_exists(&table, "a").await);

    // The rule fired once: the same transaction now goes through.
    client
        .transact_write_items()
        .transact_items(item("a"))
        .transact_items(item("b"))
        .send()
        .await
        .unwrap();
    assert!(item_exists(&table, "a").await && item_exists(&table, "b").await);
    assert_eq!(proxy.calls(&transact), 2);
}

#[tokio::test]
async fn a_forwarded_then_dropped_put_item_is_written_while_the_client_sees_a_transport_error() {
    let table = table().await;
    let (proxy, client) = proxied_dynamo(1).await;
    let put_item = Op::dynamodb("PutItem");
    proxy.fail(put_item.clone(), Fault::ForwardThenDrop, When::Nth(1));

    let err = put(&client, &table, "a").await.unwrap_err();

    assert!(
        matches!(err, SdkError::DispatchFailure(_)),
        "a transport error, got {err:?}"
    );
    assert!(
        item_exists(&table, "a").await,
        "the emulator applied the write"
    );
    assert_eq!(proxy.calls(&put_item), 1);
}

#[tokio::test]
async fn the_sdk_retries_a_dropped_connection() {
    let table = table().await;
    let (proxy, client) = proxied_dynamo(3).await;
    let put_item = Op::dynamodb("PutItem");
    proxy.fail(put_item.clone(), Fault::ForwardThenDrop, When::Nth(1));

    put(&client, &table, "a")
        .await
        .expect("the retry is answered");

    assert_eq!(
        proxy.calls(&put_item),
        2,
        "the write reached the emulator twice"
    );
    assert!(item_exists(&table, "a").await);
}

#[tokio::test]
async fn a_delay_longer_than_the_attempt_timeout_times_the_call_out() {
    let table = table().await;
    let proxy = FaultProxy::start(&emulator()).await.unwrap();
    let config = sdk(&proxy.url(), 1)
        .await
        .into_builder()
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_millis(300))
                .build(),
        )
        .build();
    let client = Dynamo::new(&config);
    let get_item = Op::dynamodb("GetItem");
    let get = || {
        client
            .get_item()
            .table_name(&table)
            .key("pk", AttributeValue::S("a".to_owned()))
            .send()
    };
    proxy.fail(
        get_item.clone(),
        Fault::Delay(Duration::from_secs(2)),
        When::Nth(1),
    );
    proxy.fail(
        get_item.clone(),
        Fault::Delay(Duration::from_millis(20)),
        When::Nth(2),
    );

    let err = get().await.unwrap_err();
    assert!(
        matches!(err, SdkError::TimeoutError(_)),
        "timed out, got {err:?}"
    );
    get().await.expect("a short delay is answered");

    assert_eq!(proxy.calls(&get_item), 2);
    assert_eq!(proxy.faults(&get_item), 2);
}

#[tokio::test]
async fn a_seeded_random_rate_fails_the_same_calls_on_every_run() {
    let table = table().await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (proxy, client) = proxied_dynamo(1).await;
        proxy.fail(
            Service::DynamoDb,
            Fault::Status500,
            When::Random {
                percent: 20,
                seed: 1234,
            },
        );
        let mut outcomes = Vec::new();
        for i in 0..40 {
            outcomes.push(put(&client, &table, &format!("k{i}")).await.is_ok());
        }
        let stats = proxy.op_stats(&Op::dynamodb("PutItem"));
        assert_eq!(stats.calls, 40);
        assert_eq!(
            stats.faults,
            outcomes.iter().filter(|ok| !**ok).count() as u64
        );
        runs.push(outcomes);
    }
    assert_eq!(runs[0], runs[1], "same seed, same faults");
    let failed = runs[0].iter().filter(|ok| !**ok).count();
    assert!(
        (1..40).contains(&failed),
        "20 % of 40 calls failed {failed}"
    );
}

async fn queue(client: &Sqs) -> String {
    client
        .create_queue()
        .queue_name(format!("fp-{}", uuid::Uuid::new_v4().simple()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

async fn received_bodies(client: &Sqs, queue_url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let out = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            break;
        }
        bodies.extend(out.messages().iter().filter_map(|m| m.body.clone()));
    }
    bodies.sort();
    bodies
}

async fn proxied_sqs(max_attempts: u32) -> (FaultProxy, Sqs, Sqs) {
    let proxy = FaultProxy::start(&emulator()).await.unwrap();
    let through = Sqs::new(&sdk(&proxy.url(), max_attempts).await);
    let direct = Sqs::new(&sdk(&emulator(), 1).await);
    (proxy, through, direct)
}

#[tokio::test]
async fn sqs_refuses_a_body_with_a_non_character_as_sqs_does() {
    let (proxy, client, direct) = proxied_sqs(3).await;
    let queue_url = queue(&direct).await;

    let err = client
        .send_message()
        .queue_url(&queue_url)
        .message_body("bad \u{FFFE} body")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
    let err = err.into_service_error();
    assert!(
        matches!(err, SendMessageError::InvalidMessageContents(_)),
        "got {err:?}"
    );
    assert!(err.message().unwrap_or_default().contains("#xFFFE"));

    client
        .send_message()
        .queue_url(&queue_url)
        .message_body("good body, tabs\tand émoji 📨")
        .send()
        .await
        .expect("an acceptable body passes");

    assert_eq!(
        received_bodies(&direct, &queue_url).await,
        ["good body, tabs\tand émoji 📨"]
    );
    let stats = proxy.op_stats(&Op::sqs("SendMessage"));
    assert_eq!((stats.calls, stats.rejected), (2, 1));
}

#[tokio::test]
async fn a_batch_with_one_bad_entry_fails_that_entry_only() {
    let (proxy, client, direct) = proxied_sqs(3).await;
    let queue_url = queue(&direct).await;
    let entry = |id: &str, body: &str| {
        SendMessageBatchRequestEntry::builder()
            .id(id)
            .message_body(body)
            .build()
            .unwrap()
    };

    let out = client
        .send_message_batch()
        .queue_url(&queue_url)
        .entries(entry("one", "first"))
        .entries(entry("two", "control \u{1} char"))
        .entries(entry("three", "third"))
        .send()
        .await
        .expect("a per-entry failure is not a request failure");

    let mut ok: Vec<_> = out.successful().iter().map(|s| s.id().to_owned()).collect();
    ok.sort();
    assert_eq!(ok, ["one", "three"]);
    let [failed] = out.failed() else {
        panic!("one failed entry, got {:?}", out.failed());
    };
    assert_eq!(failed.id(), "two");
    assert_eq!(failed.code(), "InvalidMessageContents");
    assert!(failed.sender_fault());
    assert!(failed.message().unwrap_or_default().contains("#x1"));
    assert_eq!(
        received_bodies(&direct, &queue_url).await,
        ["first", "third"]
    );

    // Every entry bad: nothing reaches the emulator, every entry fails.
    let out = client
        .send_message_batch()
        .queue_url(&queue_url)
        .entries(entry("x", "\u{FFFF}"))
        .send()
        .await
        .unwrap();
    assert!(out.successful().is_empty());
    assert_eq!(out.failed().len(), 1);
    assert_eq!(proxy.op_stats(&Op::sqs("SendMessageBatch")).rejected, 2);
}

#[tokio::test]
async fn sqs_throttling_is_the_sdk_s_request_throttled_and_retried() {
    let (proxy, client, direct) = proxied_sqs(1).await;
    let queue_url = queue(&direct).await;
    let send = Op::sqs("SendMessage");
    proxy.fail(send.clone(), Fault::Throttle, When::Nth(1));

    let err = client
        .send_message()
        .queue_url(&queue_url)
        .message_body("m")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, SendMessageError::RequestThrottled(_)),
        "got {err:?}"
    );

    let retrying = Sqs::new(&sdk(&proxy.url(), 3).await);
    proxy.fail(send.clone(), Fault::Status500, When::Nth(1));
    retrying
        .send_message()
        .queue_url(&queue_url)
        .message_body("m")
        .send()
        .await
        .expect("retried after the 500");
    assert_eq!(proxy.calls(&send), 3);
    assert_eq!(proxy.faults(&send), 2);
    assert_eq!(received_bodies(&direct, &queue_url).await, ["m"]);
}

#[test]
#[should_panic(expected = "cannot be answered by sqs")]
fn a_dynamodb_only_fault_for_sqs_is_refused_at_setup() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let proxy = runtime
        .block_on(FaultProxy::start("http://127.0.0.1:9"))
        .unwrap();
    proxy.fail(
        Op::sqs("SendMessage"),
        Fault::ConditionalCheckFailed,
        When::Always,
    );
}

#[tokio::test]
async fn ses_v2_send_email_is_identified_by_its_route_and_throttled_with_429() {
    use aws_sdk_sesv2::operation::send_email::SendEmailError;
    use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

    let proxy = FaultProxy::start(&emulator()).await.unwrap();
    let client = aws_sdk_sesv2::Client::new(&sdk(&proxy.url(), 2).await);
    let send_email = Op::sesv2("SendEmail");
    proxy.fail(send_email.clone(), Fault::Throttle, When::Always);
    let text = |s: &str| Content::builder().data(s).build().unwrap();

    let err = client
        .send_email()
        .from_email_address("news@example.com")
        .destination(
            Destination::builder()
                .to_addresses("jane@example.org")
                .build(),
        )
        .content(
            EmailContent::builder()
                .simple(
                    Message::builder()
                        .subject(text("Hello"))
                        .body(Body::builder().text(text("Hi Jane")).build())
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap_err();

    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(429));
    let err = err.into_service_error();
    assert!(
        matches!(err, SendEmailError::TooManyRequestsException(_)),
        "got {err:?}"
    );
    assert_eq!(proxy.calls(&send_email), 2, "the SDK retried the 429");
    assert_eq!(proxy.faults(&send_email), 2);
}
