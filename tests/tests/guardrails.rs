#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Reputation guardrails end to end against the emulator: bulk mail sent through the real
//! send-api (SES in moto), a complaint burst through the real event processor, the route's
//! counters in the messages table, the scoped pause in the control table, the signed
//! `mailgate.guardrail_tripped` webhook delivered by the real dispatcher to a local app (verified
//! with the independent `standardwebhooks` crate), and `mailgate-admin sends status|resume`.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use clap::Parser;
use event_processor::{Config, EventProcessor, ProcessorResponse};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_aws::{DynamoDbApiKeys, DynamoDbEndpoints, DynamoDbSendControls};
use mailgate_core::{
    ApiKeyLabel, ApiKeyRecord, ApiKeySecret, EndpointFilter, KeyEnvironment, ProviderId, Scopes,
    UnixMillis,
};
use mailgate_tests::{TestStack, fixture};
use send_api::{SendApi, SendApiConfig};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A test-only unsubscribe signing key (bulk mail needs one-click links; never a real secret).
const KEYS: &str = "test-only-unsubscribe-signing-key-0123456789";

fn api(t: &TestStack) -> SendApi {
    let env = t.function_env("send-api");
    let config = SendApiConfig::from_lookup(move |k| match k {
        "UNSUBSCRIBE_SIGNING_KEYS" => Some(KEYS.to_owned()),
        other => env(other),
    })
    .unwrap();
    SendApi::new(config, t.clients.clone()).unwrap()
}

/// The processor with a small window: 3 recipients sent make a window, N = 100.
fn processor(t: &TestStack) -> EventProcessor {
    let env = t.function_env("event-processor");
    let config = Config::from_lookup(move |k| match k {
        "GUARDRAIL_MIN_SENDS" => Some("3".to_owned()),
        "GUARDRAIL_WINDOW_SENDS" => Some("100".to_owned()),
        other => env(other),
    })
    .unwrap();
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

async fn key(t: &TestStack) -> String {
    let secret = ApiKeySecret::generate(KeyEnvironment::Live);
    let record = ApiKeyRecord::new(
        &secret,
        ApiKeyLabel::parse("guardrail test").unwrap(),
        KeyEnvironment::Live,
        Scopes::parse_list("send,read").unwrap(),
        OffsetDateTime::now_utc(),
    );
    DynamoDbApiKeys::new(t.clients.dynamodb.clone(), t.table("ApiKeysTable"))
        .create(&record)
        .await
        .unwrap();
    format!("Bearer {}", secret.expose())
}

fn request(authorization: &str, body: &Value) -> Request {
    let mut event: Value = serde_json::from_str(&fixture("send-api/post-message.json")).unwrap();
    event["body"] = json!(body.to_string());
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

/// Sends one message of `category` from news@example.com; the answer's body.
async fn send(api: &SendApi, auth: &str, category: &str, to: &str) -> Value {
    let body = json!({
        "from": "news@example.com",
        "to": [to],
        "subject": "This week",
        "text": "News.",
        "category": category,
    });
    let r = api.handle(request(auth, &body)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.body());
    json_body(&r)
}

/// The events-queue body of an SES complaint notification for `ses_id`, happening now.
fn complaint(sns_id: &str, ses_id: &str, to: &str) -> String {
    let at = OffsetDateTime::now_utc().format(&Rfc3339).unwrap();
    let message = json!({
        "notificationType": "Complaint",
        "mail": {"timestamp": at, "source": "news@example.com", "messageId": ses_id,
                 "destination": [to]},
        "complaint": {"complainedRecipients": [{"emailAddress": to}], "timestamp": at,
                      "feedbackId": format!("cf-{sns_id}"), "complaintFeedbackType": "abuse"},
    });
    let envelope = json!({
        "Type": "Notification", "MessageId": sns_id, "TopicArn": mailgate_tests::webhooks::TOPIC,
        "Message": message.to_string(), "Timestamp": at,
        "SignatureVersion": "1", "Signature": "x",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem",
    });
    json!({
        "v": 1, "provider": "ses", "receipt": format!("ses#message:{sns_id}"),
        "index": 0, "count": 1,
        "received_at": OffsetDateTime::now_utc().unix_timestamp() * 1000,
        "event": envelope,
    })
    .to_string()
}

async fn process(p: &EventProcessor, bodies: &[String]) {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({"messageId": format!("m-{i}"), "receiptHandle": format!("h-{i}"), "body": b,
                   "eventSource": "aws:sqs", "attributes": {"ApproximateReceiveCount": "1"}})
        })
        .collect();
    match p.handle(json!({ "Records": records })).await.unwrap() {
        ProcessorResponse::Batch(b) => assert!(b.batch_item_failures.is_empty()),
        other => panic!("expected a batch response, got {other:?}"),
    }
}

/// The team's app: keeps every request with whether `standardwebhooks` verified it.
#[derive(Default)]
struct App {
    secret: Mutex<String>,
    received: Mutex<Vec<(Value, bool, HeaderMap)>>,
}

async fn hook(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let secret = app.secret.lock().unwrap().clone();
    let verified = standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&body, &headers)
        .is_ok();
    let json = serde_json::from_slice(&body).unwrap();
    app.received.lock().unwrap().push((json, verified, headers));
    StatusCode::NO_CONTENT
}

async fn start_app() -> (Arc<App>, String) {
    let app = Arc::new(App::default());
    let router = axum::Router::new()
        .route("/hooks/mailgate", axum::routing::post(hook))
        .with_state(Arc::clone(&app));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/mailgate", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (app, url)
}

/// Runs the dispatcher over everything on the outbound queue.
async fn dispatch_all(t: &TestStack) {
    loop {
        let out = t
            .clients
            .sqs
            .receive_message()
            .queue_url(t.queue_url("OutboundQueue"))
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                json!({"messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                       "body": m.body(), "eventSource": "aws:sqs",
                       "attributes": {"ApproximateReceiveCount": "1"}})
            })
            .collect();
        let event = serde_json::from_value(json!({ "Records": records })).unwrap();
        let response = dispatcher(t).handle(event).await;
        assert!(response.batch_item_failures.is_empty());
        for m in &messages {
            t.clients
                .sqs
                .delete_message()
                .queue_url(t.queue_url("OutboundQueue"))
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

async fn admin(t: &TestStack, args: &[&str]) -> String {
    let table = t.table("ControlTable");
    let cli = mailgate_admin::Cli::try_parse_from(
        ["mailgate-admin", "sends"]
            .into_iter()
            .chain(args.iter().copied())
            .chain(["--table", table.as_str()]),
    )
    .unwrap();
    let mut out = Vec::new();
    mailgate_admin::run(cli, &t.clients.dynamodb, &mut out)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn a_complaint_burst_pauses_bulk_on_its_route_fires_the_webhook_and_resume_lifts_it() {
    let t = TestStack::new().await;
    let (api, auth) = (api(&t), key(&t).await);
    let (app, url) = start_app().await;
    let (_, secret) = DynamoDbEndpoints::new(t.clients.dynamodb.clone(), t.table("EndpointsTable"))
        .add(
            &url,
            EndpointFilter::all(),
            UnixMillis::from(OffsetDateTime::now_utc()),
        )
        .await
        .unwrap();
    *app.secret.lock().unwrap() = secret.expose();

    // Four bulk messages through SES: the route ses + example.com has 4 recipients sent.
    let mut sent = Vec::new();
    for i in 0..4 {
        let to = format!("reader{i}@example.org");
        let body = send(&api, &auth, "bulk", &to).await;
        assert_eq!(body["status"], "sent", "{body}");
        sent.push((to, body["provider_message_id"].as_str().unwrap().to_owned()));
    }

    // A complaint burst: two readers complain (2 of 4 ≥ 0.1 %, volume 4 ≥ the minimum 3).
    let p = processor(&t);
    process(&p, &[complaint("sns-c0", &sent[0].1, &sent[0].0)]).await;
    let controls = DynamoDbSendControls::new(t.clients.dynamodb.clone(), t.table("ControlTable"));
    assert!(
        controls
            .guardrail_paused("example.com", Some(ProviderId::Ses))
            .await
            .unwrap()
    );
    assert_eq!(
        p.tally().snapshot()[&("GuardrailTripped", "ses".into(), "bulk".into())],
        1
    );
    // The second complaint finds the route paused already: no second trip, no second webhook.
    process(&p, &[complaint("sns-c1", &sent[1].1, &sent[1].0)]).await;
    assert_eq!(
        p.tally().snapshot()[&("GuardrailTripped", "ses".into(), "bulk".into())],
        1
    );
    assert!(
        !controls.bulk_paused().await.unwrap(),
        "the global switch is untouched"
    );

    // The app receives the signed webhook saying which rate, what window and what volume.
    dispatch_all(&t).await;
    let received = app.received.lock().unwrap().clone();
    let trips: Vec<&(Value, bool, HeaderMap)> = received
        .iter()
        .filter(|(body, _, _)| body["type"] == "mailgate.guardrail_tripped")
        .collect();
    assert_eq!(trips.len(), 1, "{received:?}");
    let (body, verified, headers) = trips[0];
    assert!(verified, "standardwebhooks verifies it");
    assert!(headers.get("webhook-id").is_some());
    let data = &body["data"];
    assert_eq!(data["provider"], "ses");
    assert_eq!(data["sending_domain"], "example.com");
    assert_eq!(data["rate"], "complaint");
    assert_eq!(data["value"], 0.25);
    assert_eq!(data["threshold"], 0.001);
    assert_eq!(data["volume"], 4);
    assert_eq!(data["events"], 1);
    assert_eq!(data["window"]["sends"], 100);
    assert_eq!(data["paused"], "bulk");
    assert!(
        received
            .iter()
            .any(|(b, ok, _)| b["type"] == "email.complained" && *ok)
    );

    // Bulk through the route is held; transactional mail still goes.
    let held = send(&api, &auth, "bulk", "reader9@example.org").await;
    assert_eq!(held["status"], "paused", "{held}");
    let transactional = send(&api, &auth, "transactional", "buyer@example.org").await;
    assert_eq!(transactional["status"], "sent", "{transactional}");

    // The operator sees the reason; resume lifts it and bulk goes again.
    let status = admin(&t, &["status"]).await;
    assert!(
        status.contains("guardrail: bulk via ses from example.com paused since"),
        "{status}"
    );
    assert!(
        status.contains("complaint rate 25.000% >= 0.100% (1 of 4 recipients sent"),
        "{status}"
    );
    let resumed = admin(&t, &["resume", "--domain", "example.com"]).await;
    assert!(
        resumed.contains("guardrail lifted: bulk via ses from example.com"),
        "{resumed}"
    );
    assert!(
        !controls
            .guardrail_paused("example.com", None)
            .await
            .unwrap()
    );
    assert!(!admin(&t, &["status"]).await.contains("guardrail:"));
    let again = send(&api, &auth, "bulk", "reader10@example.org").await;
    assert_eq!(again["status"], "sent", "{again}");
}
