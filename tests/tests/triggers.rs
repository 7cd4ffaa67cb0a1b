//! The local trigger runner against a stack from the template and a local Lambda invoke API.
//!
//! The invoke API is served here by a small axum server speaking the Lambda invoke wire format;
//! it answers each batch by listing as failed the records whose body says `fail`, or with a
//! function error when the body says `crash`.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::{Arc, Mutex};

use aws_sdk_sqs::types::QueueAttributeName;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use mailgate_local::{Invoker, TriggerRunner};
use mailgate_tests::TestStack;
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Invocations(Arc<Mutex<Vec<(String, Value)>>>);

async fn invoke(
    State(seen): State<Invocations>,
    Path(function): Path<String>,
    Json(event): Json<Value>,
) -> (StatusCode, HeaderMap, Json<Value>) {
    seen.0.lock().unwrap().push((function, event.clone()));
    let records = event["Records"].as_array().cloned().unwrap_or_default();
    let mut headers = HeaderMap::new();
    if records.iter().any(|r| r["body"] == "crash") {
        headers.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
        return (
            StatusCode::OK,
            headers,
            Json(json!({"errorType": "Panic", "errorMessage": "boom"})),
        );
    }
    let failures: Vec<_> = records
        .iter()
        .filter(|r| r["body"] == "fail")
        .map(|r| json!({"itemIdentifier": r["messageId"]}))
        .collect();
    (
        StatusCode::OK,
        headers,
        Json(json!({"batchItemFailures": failures})),
    )
}

async fn invoke_api() -> (String, Invocations) {
    let seen = Invocations::default();
    let app = Router::new()
        .route("/2015-03-31/functions/{function}/invocations", post(invoke))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

async fn send(t: &TestStack, queue: &str, body: &str) {
    t.clients
        .sqs
        .send_message()
        .queue_url(t.queue_url(queue))
        .message_body(body)
        .send()
        .await
        .unwrap();
}

async fn depth(t: &TestStack, queue: &str) -> (u32, u32) {
    let attrs = t
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(t.queue_url(queue))
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let n = |a: QueueAttributeName| attrs[&a].parse::<u32>().unwrap();
    (
        n(QueueAttributeName::ApproximateNumberOfMessages),
        n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

async fn runner(t: &TestStack) -> (TriggerRunner, Invocations) {
    let (url, seen) = invoke_api().await;
    let runner =
        TriggerRunner::new(t.clients.sqs.clone(), Invoker::new(url), &t.stack).with_wait_seconds(1);
    (runner, seen)
}

#[tokio::test]
async fn subscriptions_and_schedules_come_from_the_template() {
    let t = TestStack::new().await;
    let (runner, _) = runner(&t).await;
    let mut subs: Vec<_> = runner
        .subscriptions()
        .iter()
        .map(|s| {
            (
                s.queue_url.clone(),
                s.function.clone(),
                s.batch_size,
                s.report_batch_item_failures,
            )
        })
        .collect();
    subs.sort();
    let mut want = vec![
        (
            t.queue_url("EventsQueue"),
            "event-processor".to_owned(),
            10,
            true,
        ),
        (t.queue_url("SendQueue"), "send-worker".to_owned(), 10, true),
        (
            t.queue_url("OutboundQueue"),
            "dispatcher".to_owned(),
            10,
            true,
        ),
    ];
    want.sort();
    assert_eq!(subs, want);
    let schedules: Vec<_> = runner
        .schedules()
        .iter()
        .map(|(f, s)| (f.as_str(), s.expression.as_str()))
        .collect();
    assert_eq!(schedules, [("sweeper", "rate(1 minute)")]);
}

#[tokio::test]
async fn delivers_a_real_sqs_event_and_deletes_only_the_records_not_reported_as_failed() {
    let t = TestStack::new().await;
    let (runner, seen) = runner(&t).await;
    for body in ["ok-1", "fail", "ok-2"] {
        send(&t, "EventsQueue", body).await;
    }
    let sub = runner
        .subscriptions()
        .iter()
        .find(|s| s.function == "event-processor")
        .unwrap()
        .clone();
    let mut total = mailgate_local::triggers::PollOutcome::default();
    while total.received < 3 {
        let o = runner.poll_once(&sub).await.unwrap();
        assert!(
            o.received > 0,
            "the queue ran dry before three messages were delivered"
        );
        total.received += o.received;
        total.deleted += o.deleted;
        total.retried += o.retried;
    }
    assert_eq!((total.received, total.deleted, total.retried), (3, 2, 1));

    let invocations = seen.0.lock().unwrap().clone();
    assert!(invocations.iter().all(|(f, _)| f == "event-processor"));
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_value(invocations[0].1.clone()).unwrap();
    let record = &event.records[0];
    assert_eq!(record.event_source.as_deref(), Some("aws:sqs"));
    assert_eq!(
        record.event_source_arn.as_deref(),
        Some(t.stack.queues["EventsQueue"].arn.as_str())
    );
    assert_eq!(record.aws_region.as_deref(), Some("us-east-1"));
    assert!(record.attributes.contains_key("ApproximateReceiveCount"));
    // Only the failed record is still on the queue (in flight until its visibility timeout).
    assert_eq!(depth(&t, "EventsQueue").await, (0, 1));
}

#[tokio::test]
async fn a_record_that_keeps_failing_reaches_the_dead_letter_queue_by_the_redrive_policy() {
    let t = TestStack::new().await;
    // The template's 180 s visibility timeout is shortened on this private queue so retries
    // happen within the test; the redrive policy (5 receives) is the template's own.
    t.clients
        .sqs
        .set_queue_attributes()
        .queue_url(t.queue_url("SendQueue"))
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .unwrap();
    let (runner, seen) = runner(&t).await;
    send(&t, "SendQueue", "fail").await;
    let sub = runner
        .subscriptions()
        .iter()
        .find(|s| s.function == "send-worker")
        .unwrap()
        .clone();
    for _ in 0..40 {
        runner.poll_once(&sub).await.unwrap();
        if depth(&t, "SendDeadLetterQueue").await.0 == 1 {
            break;
        }
    }
    assert_eq!(
        depth(&t, "SendDeadLetterQueue").await.0,
        1,
        "the message must end in the DLQ"
    );
    assert_eq!(depth(&t, "SendQueue").await, (0, 0));
    let deliveries = seen.0.lock().unwrap().len();
    assert_eq!(deliveries, 5, "maxReceiveCount in the template is 5");
}

#[tokio::test]
async fn a_failed_invocation_deletes_nothing() {
    let t = TestStack::new().await;
    let (runner, _) = runner(&t).await;
    send(&t, "OutboundQueue", "crash").await;
    let sub = runner
        .subscriptions()
        .iter()
        .find(|s| s.function == "dispatcher")
        .unwrap()
        .clone();
    let o = runner.poll_once(&sub).await.unwrap();
    assert_eq!((o.received, o.deleted, o.retried), (1, 0, 1));
    assert_eq!(depth(&t, "OutboundQueue").await, (0, 1));
}

#[tokio::test]
async fn an_unreachable_function_deletes_nothing() {
    let t = TestStack::new().await;
    let runner = TriggerRunner::new(
        t.clients.sqs.clone(),
        Invoker::new("http://127.0.0.1:9"),
        &t.stack,
    )
    .with_wait_seconds(1);
    send(&t, "EventsQueue", "ok").await;
    let sub = runner
        .subscriptions()
        .iter()
        .find(|s| s.function == "event-processor")
        .unwrap()
        .clone();
    let o = runner.poll_once(&sub).await.unwrap();
    assert_eq!((o.received, o.deleted), (1, 0));
    assert_eq!(depth(&t, "EventsQueue").await, (0, 1));
}

#[tokio::test]
async fn fires_the_sweeper_schedule_as_an_eventbridge_scheduled_event() {
    let t = TestStack::new().await;
    let (runner, seen) = runner(&t).await;
    let (function, schedule) = runner.schedules()[0].clone();
    runner.fire_schedule(&function, &schedule).await.unwrap();
    let invocations = seen.0.lock().unwrap().clone();
    assert_eq!(invocations.len(), 1);
    assert_eq!(invocations[0].0, "sweeper");
    let tick: sweeper::ScheduledTick = serde_json::from_value(invocations[0].1.clone()).unwrap();
    assert_eq!(tick.detail_type, "Scheduled Event");
    assert_eq!(invocations[0].1["source"], "aws.events");
}
