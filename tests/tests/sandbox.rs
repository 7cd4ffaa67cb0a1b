#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Test keys and the event simulator end to end against the emulator's stack from the template:
//! messages of a `test` key through the real send-api (synchronous) and send-worker (the batch
//! path), the simulator's events through the real events queue and event processor, the app's
//! webhooks through the real dispatcher to a local server that verifies every request with the
//! independent `standardwebhooks` crate; and SES in the emulator records none of them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use event_processor::{Config as ProcessorConfig, EventProcessor, ProcessorResponse};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_aws::{DynamoDbApiKeys, DynamoDbEndpoints, DynamoDbSuppressionList};
use mailgate_core::{
    ApiKeyLabel, ApiKeyRecord, ApiKeySecret, EmailAddress, EndpointFilter, KeyEnvironment, Scopes,
    SuppressionReason, UnixMillis,
};
use mailgate_tests::{TestStack, fixture};
use send_api::{SendApi, SendApiConfig};
use serde_json::{Value, json};
use time::OffsetDateTime;

/// The variable naming the simulator's delay.
const DELAY_VAR: &str = "SIMULATOR_EVENT_DELAY_SECONDS";

/// `env` with the simulator's delay set to `delay_secs`.
fn with_delay(
    env: impl Fn(&str) -> Option<String> + 'static,
    delay_secs: &'static str,
) -> impl Fn(&str) -> Option<String> + 'static {
    move |k| {
        if k == DELAY_VAR {
            Some(delay_secs.to_owned())
        } else {
            env(k)
        }
    }
}

fn api(t: &TestStack, delay_secs: &'static str) -> SendApi {
    let env = with_delay(t.function_env("send-api"), delay_secs);
    SendApi::new(SendApiConfig::from_lookup(env).unwrap(), t.clients.clone()).unwrap()
}

fn worker(t: &TestStack, delay_secs: &'static str) -> send_worker::Function {
    let env = with_delay(t.function_env("send-worker"), delay_secs);
    send_worker::Function::new(
        send_worker::Config::from_lookup(env).unwrap(),
        t.clients.clone(),
    )
    .unwrap()
}

fn processor(t: &TestStack) -> EventProcessor {
    let config = ProcessorConfig::from_lookup(t.function_env("event-processor")).unwrap();
    EventProcessor::new(config, t.clients.clone())
}

fn dispatcher(t: &TestStack) -> dispatcher::Function {
    let env = t.function_env("dispatcher");
    let config = dispatcher::Config::from_lookup(move |k| {
        if k == dispatcher::RETRY_BASE_VAR {
            Some("0".to_owned())
        } else {
            env(k)
        }
    })
    .unwrap();
    dispatcher::Function::new(config, t.clients.clone()).unwrap()
}

/// A stored key of `environment` with `scopes`; its `Authorization` header value.
async fn key(t: &TestStack, environment: KeyEnvironment, scopes: &str) -> String {
    let secret = ApiKeySecret::generate(environment);
    let record = ApiKeyRecord::new(
        &secret,
        ApiKeyLabel::parse("sandbox test").unwrap(),
        environment,
        Scopes::parse_list(scopes).unwrap(),
        OffsetDateTime::now_utc(),
    );
    DynamoDbApiKeys::new(t.clients.dynamodb.clone(), t.table("ApiKeysTable"))
        .create(&record)
        .await
        .unwrap();
    format!("Bearer {}", secret.expose())
}

fn request(authorization: &str, method: &str, path: &str, body: Option<Value>) -> Request {
    let mut event: Value = serde_json::from_str(&fixture("send-api/post-message.json")).unwrap();
    event["requestContext"]["http"]["method"] = json!(method);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["body"] = body.map_or(Value::Null, |b| Value::String(b.to_string()));
    let headers = event["headers"].as_object_mut().unwrap();
    headers.remove("idempotency-key");
    headers.remove("content-length");
    let mut request = lambda_http::request::from_str(&event.to_string()).unwrap();
    request.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(authorization).unwrap(),
    );
    request
}

fn json_body(r: &Response<Body>) -> Value {
    match r.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

fn message(to: &str) -> Value {
    json!({
        "from": {"email": "hello@example.com", "name": "Example"},
        "to": [to],
        "subject": "Your receipt",
        "text": "Thanks for your order.",
    })
}

/// Sends one message to `to` synchronously: the 202 body.
async fn send(api: &SendApi, auth: &str, to: &str) -> Value {
    let r = api
        .handle(request(auth, "POST", "/v1/messages", Some(message(to))))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.body());
    json_body(&r)
}

async fn get(api: &SendApi, auth: &str, id: &str) -> Value {
    let r = api
        .handle(request(auth, "GET", &format!("/v1/messages/{id}"), None))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    json_body(&r)
}

/// Receives (and deletes) what is visible on the queue `logical_id`, waiting up to `wait_secs`
/// for the first message.
async fn drain(t: &TestStack, logical_id: &str, wait_secs: i32) -> Vec<Message> {
    let url = t.queue_url(logical_id);
    let mut got = Vec::new();
    loop {
        let out = t
            .clients
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .visibility_timeout(120)
            .wait_time_seconds(if got.is_empty() { wait_secs } else { 0 })
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return got;
        }
        for m in &messages {
            t.clients
                .sqs
                .delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        got.extend(messages);
    }
}

/// The SQS event Lambda's event source mapping would send for `messages`.
fn sqs_json(messages: &[Message]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            json!({
                "messageId": m.message_id().map_or_else(|| format!("m-{i}"), str::to_owned),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": {"ApproximateReceiveCount": "1"},
                "eventSource": "aws:sqs",
            })
        })
        .collect();
    json!({ "Records": records })
}

fn sqs_event(messages: &[Message]) -> aws_lambda_events::event::sqs::SqsEvent {
    serde_json::from_value(sqs_json(messages)).unwrap()
}

/// Runs every simulator event on the events queue through the event processor, then every app
/// webhook on the outbound queue through the dispatcher; the events processed.
async fn process_events(t: &TestStack) -> usize {
    let events = drain(t, "EventsQueue", 1).await;
    for chunk in events.chunks(10) {
        match processor(t).handle(sqs_json(chunk)).await.unwrap() {
            ProcessorResponse::Batch(b) => assert!(
                b.batch_item_failures.is_empty(),
                "{:?}",
                b.batch_item_failures
            ),
            other => panic!("expected a batch response, got {other:?}"),
        }
    }
    let outbound = drain(t, "OutboundQueue", 1).await;
    for chunk in outbound.chunks(10) {
        let response = dispatcher(t).handle(sqs_event(chunk)).await;
        assert!(response.batch_item_failures.is_empty());
    }
    events.len()
}

/// One request the app received: its body, and whether `standardwebhooks` verified it.
#[derive(Debug, Clone)]
struct Received {
    body: Value,
    verified: bool,
}

/// The team's app: verifies every request with the `standardwebhooks` crate.
struct App {
    secret: Mutex<String>,
    received: Mutex<Vec<Received>>,
}

async fn hook(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let secret = app.secret.lock().unwrap().clone();
    let verified = standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&body, &headers)
        .is_ok();
    app.received.lock().unwrap().push(Received {
        body: serde_json::from_slice(&body).unwrap(),
        verified,
    });
    StatusCode::NO_CONTENT
}

/// Starts the app on 127.0.0.1 and registers it as an endpoint for every event type.
async fn start_app(t: &TestStack) -> Arc<App> {
    let app = Arc::new(App {
        secret: Mutex::new(String::new()),
        received: Mutex::new(Vec::new()),
    });
    let router = axum::Router::new()
        .route("/hooks/mailgate", axum::routing::post(hook))
        .with_state(Arc::clone(&app));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/mailgate", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let (_, secret) = DynamoDbEndpoints::new(t.clients.dynamodb.clone(), t.table("EndpointsTable"))
        .add(
            &url,
            EndpointFilter::all(),
            UnixMillis::from(OffsetDateTime::now_utc()),
        )
        .await
        .unwrap();
    *app.secret.lock().unwrap() = secret.expose();
    app
}

impl App {
    /// The verified webhooks about message `id`, as (type, recipient).
    fn about(&self, id: &str) -> Vec<(String, String)> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter(|r| r.body["data"]["message_id"] == id)
            .map(|r| {
                assert!(r.verified, "standardwebhooks verifies every request: {r:?}");
                (
                    r.body["type"].as_str().unwrap().to_owned(),
                    r.body["data"]["recipient"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                )
            })
            .collect()
    }
}

/// Every entry SES in the emulator stored, as text.
async fn moto_ses(t: &TestStack) -> String {
    let data: Value = reqwest::get(format!("{}/moto-api/data.json", t.endpoint))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    data["ses"].to_string()
}

async fn suppression(t: &TestStack, address: &str) -> Option<SuppressionReason> {
    DynamoDbSuppressionList::new(t.clients.dynamodb.clone(), t.table("SuppressionsTable"))
        .get(&EmailAddress::parse(address).unwrap())
        .await
        .unwrap()
        .map(|s| s.reason)
}

fn event_types(message: &Value) -> Vec<&str> {
    message["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_test_key_gets_every_outcome_through_the_real_pipeline_and_nothing_reaches_ses() {
    let t = TestStack::new().await;
    let app = start_app(&t).await;
    let auth = key(&t, KeyEnvironment::Test, "send,read").await;
    let api = api(&t, "0");
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let at = |outcome: &str| format!("{outcome}+{tag}@simulator.mailgate.invalid");

    // Sent synchronously: the simulator answers at send time.
    let mut sent = Vec::new();
    for outcome in [
        "bounced",
        "blocked",
        "complained",
        "deferred",
        "soft-bounced",
    ] {
        let body = send(&api, &auth, &at(outcome)).await;
        assert_eq!(body["status"], "sent", "{outcome}: {body}");
        assert_eq!(body["provider"], "simulator", "{outcome}: {body}");
        sent.push((outcome, body["id"].as_str().unwrap().to_owned()));
    }
    let rejected = send(&api, &auth, &at("rejected")).await;
    assert_eq!(rejected["status"], "failed", "{rejected}");
    assert_eq!(rejected["provider"], "simulator");
    let timeout = send(&api, &auth, &at("timeout")).await;
    assert_eq!(timeout["status"], "unknown", "{timeout}");
    assert_eq!(timeout["provider"], "simulator");

    // The batch path: queued, then sent by the worker from the send queue.
    let batch = api
        .handle(request(
            &auth,
            "POST",
            "/v1/messages/batch",
            Some(
                json!({"messages": [message(&at("unsubscribed")), message("anyone@example.org")]}),
            ),
        ))
        .await;
    assert_eq!(batch.status(), StatusCode::ACCEPTED, "{:?}", batch.body());
    let results = json_body(&batch)["results"].as_array().unwrap().clone();
    let unsubscribed = results[0]["id"].as_str().unwrap().to_owned();
    let elsewhere = results[1]["id"].as_str().unwrap().to_owned();
    let pointers = drain(&t, "SendQueue", 1).await;
    assert_eq!(pointers.len(), 2);
    let response = worker(&t, "0").handle(sqs_event(&pointers)).await;
    assert!(response.batch_item_failures.is_empty());

    // Nothing left for SES: every message went to the simulator.
    assert!(
        !moto_ses(&t).await.contains(&tag),
        "SES in the emulator recorded a simulator message"
    );
    assert!(!moto_ses(&t).await.contains("anyone@example.org"));

    // Events: bounced, blocked, soft-bounced (1 each), complained, deferred, unsubscribed (2
    // each), anyone@ (1 delivery); rejected and timeout have none.
    let mut processed = 0;
    for _ in 0..10 {
        processed += process_events(&t).await;
        if processed >= 10 {
            break;
        }
    }
    assert_eq!(processed, 10);

    let id = |outcome: &str| {
        sent.iter()
            .find(|(o, _)| *o == outcome)
            .map(|(_, id)| id.clone())
            .unwrap()
    };

    // bounced+x@: bounced, a hard user-unknown bounce in the history, suppressed.
    let bounced = get(&api, &auth, &id("bounced")).await;
    assert_eq!(bounced["state"], "bounced", "{bounced}");
    assert_eq!(bounced["provider"], "simulator");
    assert_eq!(event_types(&bounced), vec!["bounced"]);
    let bounce = &bounced["events"][0]["bounce"];
    assert_eq!(bounce["kind"], "hard", "{bounce}");
    assert_eq!(bounce["cause"], "user_unknown", "{bounce}");
    assert_eq!(bounced["events"][0]["provider"], "simulator");
    assert_eq!(
        suppression(&t, &at("bounced")).await,
        Some(SuppressionReason::HardBounce)
    );

    // blocked+y@: bounced, sender-side, never suppressed.
    let blocked = get(&api, &auth, &id("blocked")).await;
    assert_eq!(blocked["state"], "bounced", "{blocked}");
    let verdict = &blocked["events"][0]["bounce"];
    assert_eq!(verdict["suppress"], false, "{verdict}");
    assert!(
        ["reputation_block", "policy"].contains(&verdict["cause"].as_str().unwrap()),
        "{verdict}"
    );
    assert_eq!(suppression(&t, &at("blocked")).await, None);

    // soft-bounced@: a soft bounce, counted, not suppressed.
    let soft = get(&api, &auth, &id("soft-bounced")).await;
    assert_eq!(soft["state"], "bounced", "{soft}");
    assert_eq!(soft["events"][0]["bounce"]["kind"], "soft", "{soft}");
    assert_eq!(suppression(&t, &at("soft-bounced")).await, None);

    // complained+z@: delivered, then complained; suppressed for the complaint.
    let complained = get(&api, &auth, &id("complained")).await;
    assert_eq!(complained["state"], "complained", "{complained}");
    assert_eq!(event_types(&complained), vec!["delivered", "complained"]);
    assert_eq!(
        suppression(&t, &at("complained")).await,
        Some(SuppressionReason::Complaint)
    );

    // deferred@: deferred, then delivered.
    let deferred = get(&api, &auth, &id("deferred")).await;
    assert_eq!(deferred["state"], "delivered", "{deferred}");
    assert_eq!(event_types(&deferred), vec!["deferred", "delivered"]);

    // unsubscribed@ (through the worker): delivered, then unsubscribed.
    let unsub = get(&api, &auth, &unsubscribed).await;
    assert_eq!(unsub["provider"], "simulator", "{unsub}");
    assert_eq!(unsub["state"], "delivered", "{unsub}");
    assert_eq!(event_types(&unsub), vec!["delivered", "unsubscribed"]);
    assert_eq!(
        suppression(&t, &at("unsubscribed")).await,
        Some(SuppressionReason::Unsubscribe)
    );

    // Any other address with a test key: delivered, by the simulator.
    let other = get(&api, &auth, &elsewhere).await;
    assert_eq!(other["state"], "delivered", "{other}");
    assert_eq!(other["provider"], "simulator");

    // rejected@ failed and timeout@ unknown, each with its one simulator attempt, no events.
    let failed = get(&api, &auth, rejected["id"].as_str().unwrap()).await;
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["attempts"][0]["provider"], "simulator");
    assert_eq!(failed["attempts"][0]["error_code"], "MessageRejected");
    assert!(event_types(&failed).is_empty());
    let unknown = get(&api, &auth, timeout["id"].as_str().unwrap()).await;
    assert_eq!(unknown["state"], "unknown");
    assert!(event_types(&unknown).is_empty());

    // The app got a signed webhook for every event, naming the simulator's recipient.
    let b = at("bounced");
    assert_eq!(
        app.about(&id("bounced")),
        vec![("email.bounced".to_owned(), b)]
    );
    assert_eq!(
        app.about(&id("blocked")),
        vec![("email.bounced".to_owned(), at("blocked"))]
    );
    let mut complaint = app.about(&id("complained"));
    complaint.sort();
    assert_eq!(
        complaint,
        vec![
            ("email.complained".to_owned(), at("complained")),
            ("email.delivered".to_owned(), at("complained")),
        ]
    );
    let mut deferral = app.about(&id("deferred"));
    deferral.sort();
    assert_eq!(
        deferral,
        vec![
            ("email.deferred".to_owned(), at("deferred")),
            ("email.delivered".to_owned(), at("deferred")),
        ]
    );
    assert!(app.about(rejected["id"].as_str().unwrap()).is_empty());
}

#[tokio::test]
async fn a_live_key_sending_to_the_simulator_domain_is_refused_422_and_nothing_is_sent() {
    let t = TestStack::new().await;
    let auth = key(&t, KeyEnvironment::Live, "send,read").await;
    let api = api(&t, "0");
    let r = api
        .handle(request(
            &auth,
            "POST",
            "/v1/messages",
            Some(message("bounced+live@simulator.mailgate.invalid")),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = json_body(&r);
    assert_eq!(
        body["error"]["code"], "simulator_requires_test_key",
        "{body}"
    );
    assert_eq!(body["error"]["field"], "to[0]");
    assert!(!moto_ses(&t).await.contains("bounced+live"));
    assert!(drain(&t, "EventsQueue", 0).await.is_empty());

    // The same live key still sends anywhere else, through SES in the emulator.
    let sent = send(&api, &auth, "jane@example.org").await;
    assert_eq!(sent["provider"], "ses", "{sent}");
}

#[tokio::test]
async fn the_simulator_events_wait_out_the_configured_delay_on_the_events_queue() {
    let t = TestStack::new().await;
    let auth = key(&t, KeyEnvironment::Test, "send,read").await;
    let api = api(&t, "2");
    let body = send(&api, &auth, "delivered@simulator.mailgate.invalid").await;
    assert_eq!(body["status"], "sent");

    // Posted with DelaySeconds: on the queue, not yet visible.
    let attributes = t
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(t.queue_url("EventsQueue"))
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    let delayed = attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessagesDelayed))
        .cloned()
        .unwrap_or_default();
    assert_eq!(delayed, "1");
    assert!(drain(&t, "EventsQueue", 0).await.is_empty());

    // Visible once the delay has passed, and it delivers the message.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut processed = 0;
    for _ in 0..5 {
        processed += process_events(&t).await;
        if processed > 0 {
            break;
        }
    }
    assert_eq!(processed, 1);
    let message = get(&api, &auth, body["id"].as_str().unwrap()).await;
    assert_eq!(message["state"], "delivered", "{message}");
}
