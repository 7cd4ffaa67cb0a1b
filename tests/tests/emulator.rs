//! The AWS building blocks the functions rely on, exercised through the real SDK against the
//! local emulator and a stack provisioned from the template.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use aws_sdk_sqs::types::{MessageSystemAttributeName, SendMessageBatchRequestEntry};
use mailgate_tests::TestStack;

#[tokio::test]
async fn a_conditional_put_is_rejected_the_second_time_with_the_typed_error() {
    let t = TestStack::new().await;
    let table = t.table("DedupeTable");
    let put = || {
        t.clients
            .dynamodb
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S("sendgrid#evt-1".into()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
    };
    put().await.expect("the first put succeeds");
    let err = put().await.expect_err("the second put must be rejected");
    let service = err.as_service_error().expect("a modelled service error");
    assert!(
        service.is_conditional_check_failed_exception(),
        "expected ConditionalCheckFailedException, got {service:?}"
    );
}

#[tokio::test]
async fn an_sqs_batch_is_sent_received_and_deleted() {
    let t = TestStack::new().await;
    let url = t.queue_url("SendQueue");
    let entries: Vec<_> = (0..3)
        .map(|i| {
            SendMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message_body(format!("{{\"n\":{i}}}"))
                .build()
                .unwrap()
        })
        .collect();
    let sent = t
        .clients
        .sqs
        .send_message_batch()
        .queue_url(&url)
        .set_entries(Some(entries))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.successful.len(), 3);
    assert!(sent.failed.is_empty());

    let mut bodies = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..5 {
        let got = t
            .clients
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in got.messages.unwrap_or_default() {
            bodies.push(m.body.unwrap());
            handles.push(m.receipt_handle.unwrap());
        }
        if bodies.len() == 3 {
            break;
        }
    }
    bodies.sort();
    assert_eq!(bodies, vec!["{\"n\":0}", "{\"n\":1}", "{\"n\":2}"]);

    for h in handles {
        t.clients
            .sqs
            .delete_message()
            .queue_url(&url)
            .receipt_handle(h)
            .send()
            .await
            .unwrap();
    }
    let attrs = t
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    use aws_sdk_sqs::types::QueueAttributeName as A;
    assert_eq!(attrs[&A::ApproximateNumberOfMessages], "0");
    assert_eq!(attrs[&A::ApproximateNumberOfMessagesNotVisible], "0");
}

#[tokio::test]
async fn a_message_that_is_not_deleted_returns_after_its_visibility_timeout() {
    let t = TestStack::new().await;
    let url = t.queue_url("EventsQueue");
    t.clients
        .sqs
        .send_message()
        .queue_url(&url)
        .message_body("receipt-1")
        .send()
        .await
        .unwrap();
    let receive = |visibility: i32| {
        t.clients
            .sqs
            .receive_message()
            .queue_url(&url)
            .visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
    };
    let first = receive(1).await.unwrap().messages.unwrap_or_default();
    assert_eq!(first.len(), 1);
    let hidden = receive(1).await.unwrap().messages.unwrap_or_default();
    assert!(
        hidden.is_empty(),
        "the message must be invisible while in flight"
    );

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let again = receive(30).await.unwrap().messages.unwrap_or_default();
    assert_eq!(again.len(), 1, "the undeleted message must come back");
    assert_eq!(again[0].body.as_deref(), Some("receipt-1"));
    assert_eq!(again[0].message_id, first[0].message_id);
    let count = again[0]
        .attributes
        .as_ref()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .cloned();
    assert_eq!(count.as_deref(), Some("2"));
}

fn simple_email(subject: &str) -> EmailContent {
    EmailContent::builder()
        .simple(
            Message::builder()
                .subject(Content::builder().data(subject).build().unwrap())
                .body(
                    Body::builder()
                        .text(
                            Content::builder()
                                .data("hello from the tests")
                                .build()
                                .unwrap(),
                        )
                        .build(),
                )
                .build(),
        )
        .build()
}

#[tokio::test]
async fn an_ses_send_is_recorded_by_the_emulator() {
    let t = TestStack::new().await;
    let subject = format!("foundation test {}", uuid::Uuid::new_v4());
    let sent = t
        .clients
        .ses
        .send_email()
        .from_email_address("sender@example.com")
        .destination(
            Destination::builder()
                .to_addresses("recipient@example.net")
                .build(),
        )
        .content(simple_email(&subject))
        .send()
        .await
        .expect("the verified example.com identity can send");
    let message_id = sent.message_id.expect("SES returns a message id");

    let data: serde_json::Value = reqwest::get(format!("{}/moto-api/data.json", t.endpoint))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let recorded = data["ses"]["Message"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|m| m["id"] == message_id.as_str() && m.to_string().contains(&subject));
    assert!(
        recorded,
        "moto recorded no message {message_id} with the subject"
    );
}

#[tokio::test]
async fn an_ses_send_from_an_unverified_domain_is_rejected() {
    let t = TestStack::new().await;
    let err = t
        .clients
        .ses
        .send_email()
        .from_email_address("sender@not-verified.example")
        .destination(
            Destination::builder()
                .to_addresses("recipient@example.net")
                .build(),
        )
        .content(simple_email("rejected"))
        .send()
        .await
        .expect_err("sending from an unverified identity must fail");
    let service = err.as_service_error().expect("a modelled service error");
    assert!(
        service.is_message_rejected(),
        "expected MessageRejected, got {service:?}"
    );
}

#[tokio::test]
async fn the_batch_sender_packs_large_bodies_by_size_and_delays_each_entry_as_asked() {
    use mailgate_aws::sqs_batch::{BatchEntry, send_batches};
    let t = TestStack::new().await;
    let url = t.queue_url("SendQueue");
    // Five 100 KiB bodies: two fit in one 256 KiB call, so three calls.
    let entries: Vec<BatchEntry> = (0..5)
        .map(|i| BatchEntry::new(format!("{i}{}", "x".repeat(100 * 1024))))
        .chain([BatchEntry::new("later").delayed(60)])
        .collect();
    let sent = send_batches(&t.clients.sqs, &url, &entries).await.unwrap();
    assert!(sent.failed.is_empty(), "{:?}", sent.failed);
    assert_eq!(sent.calls, 3);

    let mut bodies = Vec::new();
    for _ in 0..5 {
        let got = t
            .clients
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        bodies.extend(
            got.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_owned)),
        );
        if bodies.len() >= 5 {
            break;
        }
    }
    assert_eq!(bodies.len(), 5, "the delayed entry is not visible yet");
    assert!(bodies.iter().all(|b| b.len() == 100 * 1024 + 1));
}

#[tokio::test]
async fn the_batch_sender_reports_every_entry_of_a_queue_that_does_not_exist_as_a_missing_resource()
{
    use mailgate_aws::sqs_batch::{BatchEntry, send_batches};
    use mailgate_core::StoreErrorKind;
    let t = TestStack::new().await;
    let url = format!(
        "{}-does-not-exist",
        t.queue_url("SendQueue").trim_end_matches('/')
    );
    let entries: Vec<BatchEntry> = (0..12).map(|i| BatchEntry::new(format!("{i}"))).collect();
    let sent = send_batches(&t.clients.sqs, &url, &entries).await.unwrap();
    assert_eq!(sent.failed.len(), 12);
    assert_eq!(sent.calls, 2);
    let err = sent.all_sent(entries.len()).unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::MissingResource, "{err}");
    assert!(!err.is_retryable());
}

/// Every body on `url`, waiting up to a few seconds for `n`.
async fn receive_bodies(t: &TestStack, url: &str, n: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let got = t
            .clients
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        bodies.extend(
            got.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_owned)),
        );
        if bodies.len() >= n {
            break;
        }
    }
    bodies
}

/// SQS clients whose calls pass the fault proxy, which refuses what SQS refuses.
async fn through_proxy(t: &TestStack) -> (mailgate_fault_proxy::FaultProxy, aws_sdk_sqs::Client) {
    let proxy = mailgate_fault_proxy::FaultProxy::start(&t.endpoint)
        .await
        .unwrap();
    let sdk = mailgate_tests::sdk_config(&proxy.url()).await;
    (proxy, aws_sdk_sqs::Client::new(&sdk))
}

#[tokio::test]
async fn the_batch_sender_escapes_characters_sqs_refuses_and_the_bodies_read_back_the_same() {
    use mailgate_aws::sqs_batch::{BatchEntry, send_batches};
    use mailgate_fault_proxy::Op;
    let t = TestStack::new().await;
    let url = t.queue_url("SendQueue");
    let (proxy, sqs) = through_proxy(&t).await;
    let values = [
        serde_json::json!({"subject": "plain"}),
        serde_json::json!({"subject": "odd \u{FFFF} one", "tag\u{FFFE}": 1}),
        serde_json::json!({"control": "bell\u{7} backspace\u{8} nul\u{0}"}),
    ];
    // Bodies as a provider might send them: U+FFFE/U+FFFF raw (JSON allows it), and raw
    // controls (which only a text that is not quite JSON holds).
    let bodies = [
        values[0].to_string(),
        values[1].to_string(),
        "{\"control\":\"bell\u{7} backspace\u{8} nul\u{0}\"}".to_owned(),
    ];
    assert!(bodies[1].contains('\u{FFFF}'));
    let entries: Vec<BatchEntry> = bodies.iter().map(BatchEntry::new).collect();
    let sent = send_batches(&sqs, &url, &entries).await.unwrap();
    assert!(sent.failed.is_empty(), "{:?}", sent.failed);
    let stats = proxy.op_stats(&Op::sqs("SendMessageBatch"));
    assert_eq!((stats.calls, stats.rejected), (1, 0));

    let got = receive_bodies(&t, &url, 3).await;
    assert_eq!(got.len(), 3);
    let mut read: Vec<serde_json::Value> = got
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    read.sort_by_key(|v| v.to_string());
    let mut want = values.to_vec();
    want.sort_by_key(|v| v.to_string());
    assert_eq!(read, want);
}

#[tokio::test]
async fn app_webhook_deliveries_and_single_sends_with_characters_sqs_refuses_are_accepted() {
    use mailgate_aws::{OutboundDelivery, SqsDeadLetterQueue, SqsEventForwarder, SqsOutboundQueue};
    use mailgate_core::EndpointId;
    use mailgate_core::ports::{DeadLetterQueue, EventForwarder};
    use mailgate_fault_proxy::Op;
    let t = TestStack::new().await;
    let (proxy, sqs) = through_proxy(&t).await;

    // An app webhook: the signed body (itself JSON, as a string in the message) keeps its bytes.
    let delivery = OutboundDelivery {
        endpoint_id: EndpointId::parse("ep_01jd5x3q7r8s9t0v1w2x3y4z5a").unwrap(),
        webhook_id: "msg_01jd5x3q7r8s9t0v1w2x3y4z5a_ep".to_owned(),
        body: serde_json::json!({"type": "email.delivered", "subject": "x\u{FFFF}y"}).to_string(),
    };
    let outbound = t.queue_url("OutboundQueue");
    SqsOutboundQueue::new(sqs.clone(), &outbound)
        .enqueue(std::slice::from_ref(&delivery))
        .await
        .unwrap();
    let got = receive_bodies(&t, &outbound, 1).await;
    assert_eq!(got.len(), 1);
    let read = OutboundDelivery::parse(&got[0]).unwrap();
    assert_eq!(read.body, delivery.body, "the exact bytes to sign");

    // The single SendMessage paths: an EventBridge event forwarded, a record parked.
    let event =
        serde_json::json!({"detail-type": "Email Delivered", "detail": {"subject": "\u{FFFE}"}});
    let events = t.queue_url("EventsQueue");
    SqsEventForwarder::new(sqs.clone(), &events)
        .forward(&event.to_string())
        .await
        .unwrap();
    let parked = "{\"v\":1,\"note\":\"\u{FFFF}\"}";
    let dead = t.queue_url("EventsDeadLetterQueue");
    SqsDeadLetterQueue::new(sqs.clone(), &dead)
        .park(parked, "unreadable \u{FFFF}")
        .await
        .unwrap();
    let stats = proxy.op_stats(&Op::sqs("SendMessage"));
    assert_eq!((stats.calls, stats.rejected), (2, 0));
    let forwarded = receive_bodies(&t, &events, 1).await;
    let value: serde_json::Value = serde_json::from_str(&forwarded[0]).unwrap();
    assert_eq!(value, event);
    let kept = receive_bodies(&t, &dead, 1).await;
    let value: serde_json::Value = serde_json::from_str(&kept[0]).unwrap();
    assert_eq!(value["note"], "\u{FFFF}");
}
