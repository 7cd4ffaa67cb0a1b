//! Each function answers its trigger fixtures from `events/` through its real handler.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use lambda_http::Body;
use lambda_http::http::StatusCode;
use mailgate_core::ProviderId;
use mailgate_lambda::webhook::WebhookFunction;
use mailgate_tests::{TestStack, fixture, webhooks};
use serde_json::Value;

fn body(r: &lambda_http::Response<Body>) -> Value {
    match r.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

#[tokio::test]
async fn every_webhook_function_reports_ready_and_refuses_unsigned_fixture_deliveries() {
    let t = TestStack::new().await;
    for provider in ProviderId::ALL {
        let name = format!("webhook-{provider}");
        let config = webhooks::webhook_config(&t, provider, None, &[]);
        let function = WebhookFunction::new(config, t.clients.clone());

        let get =
            lambda_http::request::from_str(&fixture(&format!("{name}/function-url-get.json")))
                .unwrap();
        let ready = function.handle(get).await;
        assert_eq!(ready.status(), StatusCode::OK, "{name}");
        // Public: the verdict alone, nothing that names a table or a queue URL.
        assert_eq!(
            body(&ready),
            serde_json::json!({"status": "healthy"}),
            "{name}"
        );

        // The committed fixtures carry no signature (SES, SendGrid, Mailgun) or only the
        // local.env credentials (Postmark, SMTP2GO), which the test configuration does not use.
        let post =
            lambda_http::request::from_str(&fixture(&format!("{name}/function-url-post.json")))
                .unwrap();
        let refused = function.handle(post).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{name}");
        assert_eq!(body(&refused)["error"]["code"], "unauthorized");
        assert_eq!(function.stats().verification_failures(), 1, "{name}");
    }
}

#[tokio::test]
async fn the_event_processor_forwards_an_eventbridge_ses_event_onto_the_events_queue() {
    let t = TestStack::new().await;
    let config = event_processor::Config::from_lookup(t.function_env("event-processor")).unwrap();
    let processor = event_processor::EventProcessor::new(config, t.clients.clone());
    let event: Value =
        serde_json::from_str(&fixture("event-processor/eventbridge-ses-bounce.json")).unwrap();
    let out = processor.handle(event.clone()).await.unwrap();
    let id = match out {
        event_processor::ProcessorResponse::Forwarded {
            forwarded_message_id,
        } => forwarded_message_id,
        other => panic!("expected a forward, got {other:?}"),
    };
    let got = t
        .clients
        .sqs
        .receive_message()
        .queue_url(t.queue_url("EventsQueue"))
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id.as_deref(), Some(id.as_str()));
    let forwarded: Value = serde_json::from_str(got[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(forwarded, event);
}

#[tokio::test]
async fn the_send_worker_acknowledges_a_fixture_record_for_a_message_it_does_not_have() {
    let t = TestStack::new().await;
    let config = send_worker::Config::from_lookup(t.function_env("send-worker")).unwrap();
    let worker = send_worker::Function::new(config, t.clients.clone()).unwrap();
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_str(&fixture("send-worker/sqs-batch.json")).unwrap();
    let response = worker.handle(event).await;
    assert!(response.batch_item_failures.is_empty());
}
