#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Log hygiene: the logs of a full end-to-end flow hold no address, API key, webhook secret,
//! provider credential, subject or body.
//!
//! `a_full_flow_through_every_entry_point` drives every kind of entry point against the
//! emulator with distinctive test values: `mailgate-admin` creates an API key and an app
//! endpoint; `send-api` refuses an unknown key, sends through SES in moto (synchronously and on
//! the batch path, which `send-worker` then sends), suppresses and un-suppresses an address and
//! answers the status; `webhook-ses` takes a signed SNS bounce, `webhook-sendgrid` a signed
//! batch, `webhook-mailgun` a signed and a forged delivery, `webhook-postmark` one with the
//! right and one with a wrong password; the event processor applies every event and fans them
//! out; the dispatcher POSTs them to a local app. It passes on its own.
//!
//! `logs_of_a_full_flow_hold_no_address_secret_or_content` runs that test again in a child
//! process of this test binary with the functions' own logging (`init_tracing`: JSON on stdout;
//! `trace` for mailgate's crates, `debug` for the rest) and captures the child's stdout and
//! stderr, so the EMF metric lines (`println!`) are inspected with the log lines and the test
//! crate needs no subscriber of its own. It fails if any raw value appears, and also if the
//! capture saw too few log lines, no debug line, no EMF line, or not the masked address the send
//! API logs on a suppression (so a broken capture cannot pass).

use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::SqsEvent;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::Parser;
use event_processor::{Config, EventProcessor, ProcessorResponse};
use hmac::{Hmac, Mac};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_core::{Clock, ProviderId, SystemClock};
use mailgate_lambda::webhook::WebhookFunction;
use mailgate_providers::ses::sns::testing::SnsTestMessage;
use mailgate_tests::webhooks::{
    TOPIC, drain_events, post, sendgrid_headers, sendgrid_key, sns_signer, webhook_config,
};
use mailgate_tests::{TestStack, fixture};
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;

/// Set in the child process: install the functions' logging before the flow.
const CHILD_VAR: &str = "MAILGATE_LOG_HYGIENE_CHILD";
/// Every level of mailgate's own crates, `debug` for everything else (the AWS SDK, hyper, the
/// Lambda runtime). Not `trace` for those: at `trace` the AWS SDK logs whole responses (items with
/// addresses, stored secrets) and `lambda_runtime` the raw invocation event, which is why
/// `LogLevel` must never be `trace` in production. `MAILGATE_LOG_HYGIENE_FILTER` replaces this
/// filter, e.g. `=trace` to watch the test catch exactly that.
const FILTER_VAR: &str = "MAILGATE_LOG_HYGIENE_FILTER";
const CHILD_LOG_FILTER: &str = "debug,mailgate_core=trace,mailgate_aws=trace,\
    mailgate_providers=trace,mailgate_lambda=trace,mailgate_admin=trace,send_api=trace,\
    send_worker=trace,event_processor=trace,dispatcher=trace,sweeper=trace";

const RECIPIENT: &str = "hygiene.recipient@example.org";
const BATCH_RECIPIENT: &str = "hygiene.batch@example.org";
const SUPPRESSED: &str = "hygiene.suppressed@example.org";
const SENDER: &str = "hygiene.sender@example.com";
const SENDER_NAME: &str = "Hygiene Sender Name";
const SUBJECT: &str = "Hygiene subject 7f3a";
const TEXT_BODY: &str = "Hygiene body text 9c2e";
const HTML_BODY: &str = "<p>Hygiene html body 41d0</p>";
const NOTE: &str = "hygiene suppression note 2b7c";
const UNKNOWN_API_KEY: &str = "mg_test_hygieneunknownkey0000000000000000";
const MAILGUN_SIGNING_KEY: &str = "hygiene-mailgun-signing-key-5d1e";
const FORGED_MAILGUN_KEY: &str = "hygiene-forged-mailgun-key-77aa";
const POSTMARK_PAIR: &str = "hygiene-user:hygiene-password-8b4c";
const WRONG_POSTMARK_PAIR: &str = "hygiene-user:hygiene-wrong-password-c3d2";
const APP_URL_TOKEN: &str = "hygiene-url-token-3e9a";

fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Runs `mailgate-admin` with `args` against the stack, returning what it printed.
async fn admin(t: &TestStack, args: &[&str]) -> String {
    let cli = mailgate_admin::Cli::try_parse_from(
        std::iter::once("mailgate-admin").chain(args.iter().copied()),
    )
    .unwrap();
    let mut out = Vec::new();
    mailgate_admin::run_with_sqs(cli, &t.clients.dynamodb, Some(&t.clients.sqs), &mut out)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn field(output: &str, name: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in the admin output"))
        .trim()
        .to_owned()
}

/// An HTTP API request to send-api.
fn request(authorization: &str, method: &str, path: &str, body: Option<String>) -> Request {
    let mut event: Value = serde_json::from_str(&fixture("send-api/post-message.json")).unwrap();
    event["requestContext"]["http"]["method"] = json!(method);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["body"] = body.map_or(Value::Null, Value::String);
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
        Body::Empty => Value::Null,
        other => panic!("expected a text body, got {other:?}"),
    }
}

fn message(to: &str) -> Value {
    json!({
        "from": {"email": SENDER, "name": SENDER_NAME},
        "to": [to],
        "subject": SUBJECT,
        "text": TEXT_BODY,
        "html": HTML_BODY,
    })
}

/// An SQS event holding `bodies` (ids `m-0`, `m-1`, …).
fn batch(bodies: &[String]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "messageId": format!("m-{i}"), "receiptHandle": format!("h-{i}"), "body": b,
                "eventSource": "aws:sqs", "attributes": {"ApproximateReceiveCount": "1"},
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Receives (and deletes) every message visible on the queue `logical_id`, as an SQS event.
async fn take(t: &TestStack, logical_id: &str) -> SqsEvent {
    let url = t.queue_url(logical_id);
    let mut records = Vec::new();
    loop {
        let out = t
            .clients
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        let messages = out.messages();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            records.push(json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(),
                "body": m.body(), "eventSource": "aws:sqs",
                "attributes": {"ApproximateReceiveCount": "1"},
            }));
            t.clients
                .sqs
                .delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// Applies every queued webhook event with the processor; none may fail.
async fn process_events(t: &TestStack, p: &EventProcessor) -> usize {
    let queued: Vec<String> = drain_events(t).await.iter().map(Value::to_string).collect();
    let response = p.handle(batch(&queued)).await.unwrap();
    match response {
        ProcessorResponse::Batch(b) => assert!(b.batch_item_failures.is_empty()),
        other => panic!("expected a batch response, got {other:?}"),
    }
    queued.len()
}

fn webhook(t: &TestStack, provider: ProviderId, extra: &[(&str, &str)]) -> WebhookFunction {
    WebhookFunction::with_clock(
        webhook_config(t, provider, None, extra),
        t.clients.clone(),
        system(),
    )
}

fn basic(pair: &str) -> (String, String) {
    (
        "authorization".to_owned(),
        format!("Basic {}", STANDARD.encode(pair)),
    )
}

fn mailgun_body(key: &str, token: &str, event_id: &str, message_id: &str) -> Vec<u8> {
    let timestamp = OffsetDateTime::now_utc().unix_timestamp();
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{timestamp}{token}").as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    serde_json::to_vec(&json!({
        "signature": {"timestamp": timestamp.to_string(), "token": token, "signature": signature},
        "event-data": {
            "id": event_id, "event": "opened", "timestamp": timestamp as f64 + 0.5,
            "recipient": RECIPIENT,
            "message": {"headers": {"message-id": "hygiene.mailgun@mg.example.org"}},
            "user-variables": {"mailgate_message_id": message_id},
        }
    }))
    .unwrap()
}

/// The team's app: records every request it receives and answers 204.
#[derive(Default)]
struct App {
    received: Mutex<Vec<(axum::http::HeaderMap, axum::body::Bytes)>>,
}

async fn start_app() -> (Arc<App>, String) {
    async fn hook(
        axum::extract::State(app): axum::extract::State<Arc<App>>,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> StatusCode {
        app.received.lock().unwrap().push((headers, body));
        StatusCode::NO_CONTENT
    }
    let app = Arc::new(App::default());
    let router = axum::Router::new()
        .route("/hooks/mailgate", axum::routing::post(hook))
        .with_state(Arc::clone(&app));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hooks/mailgate?token={APP_URL_TOKEN}",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    (app, url)
}

/// The secrets of one run that are only known once it has started.
#[derive(Debug, Default)]
struct RunSecrets {
    api_key: String,
    endpoint_secret: String,
}

/// The whole flow; returns the secrets it generated. Asserts the outcomes on the way, so the
/// logs it produces are those of a working system.
async fn full_flow() -> RunSecrets {
    let t = TestStack::new().await;

    // Operator: an API key and an app endpoint, through mailgate-admin.
    let created = admin(
        &t,
        &[
            "keys",
            "create",
            "--label",
            "log hygiene",
            "--scopes",
            "all",
            "--table",
            &t.table("ApiKeysTable"),
        ],
    )
    .await;
    let api_key = field(&created, "key");
    let auth = format!("Bearer {api_key}");
    let (app, app_url) = start_app().await;
    let added = admin(
        &t,
        &[
            "endpoints",
            "add",
            "--url",
            &app_url,
            "--table",
            &t.table("EndpointsTable"),
        ],
    )
    .await;
    let endpoint_secret = field(&added, "secret");

    // send-api: an unknown key, a send, a batch, a suppression set and lifted.
    let config = send_api::SendApiConfig::from_lookup(t.function_env("send-api")).unwrap();
    let api = send_api::SendApi::new(config, t.clients.clone()).unwrap();
    let refused = api
        .handle(request(
            &format!("Bearer {UNKNOWN_API_KEY}"),
            "POST",
            "/v1/messages",
            Some(message(RECIPIENT).to_string()),
        ))
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let sent = api
        .handle(request(
            &auth,
            "POST",
            "/v1/messages",
            Some(message(RECIPIENT).to_string()),
        ))
        .await;
    assert_eq!(sent.status(), StatusCode::ACCEPTED, "{:?}", sent.body());
    let sent = json_body(&sent);
    assert_eq!(sent["status"], "sent");
    let id = sent["id"].as_str().unwrap().to_owned();
    let ses_id = sent["provider_message_id"].as_str().unwrap().to_owned();

    let queued = api
        .handle(request(
            &auth,
            "POST",
            "/v1/messages/batch",
            Some(json!({"messages": [message(BATCH_RECIPIENT)]}).to_string()),
        ))
        .await;
    assert_eq!(queued.status(), StatusCode::ACCEPTED, "{:?}", queued.body());
    assert_eq!(json_body(&queued)["results"][0]["status"], "queued");
    let config = send_worker::Config::from_lookup(t.function_env("send-worker")).unwrap();
    let worker = send_worker::Function::new(config, t.clients.clone()).unwrap();
    let pointers = take(&t, "SendQueue").await;
    assert_eq!(pointers.records.len(), 1);
    assert!(worker.handle(pointers).await.batch_item_failures.is_empty());

    let path = format!("/v1/suppressions/{}", SUPPRESSED.replace('@', "%40"));
    let put = api
        .handle(request(
            &auth,
            "PUT",
            &path,
            Some(json!({"reason": "manual", "note": NOTE}).to_string()),
        ))
        .await;
    assert_eq!(put.status(), StatusCode::OK, "{:?}", put.body());
    let deleted = api.handle(request(&auth, "DELETE", &path, None)).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    // webhook-ses: a signed SNS hard bounce for the message.
    let (signer, http) = sns_signer();
    let bounce = json!({
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent", "bounceSubType": "General",
            "bouncedRecipients": [{
                "emailAddress": RECIPIENT, "action": "failed", "status": "5.1.1",
                "diagnosticCode": format!("smtp; 550 5.1.1 <{RECIPIENT}>: Recipient address rejected: User unknown"),
            }],
            "timestamp": "2026-11-23T10:00:05.000Z", "feedbackId": "0100-hygiene",
        },
        "mail": {
            "timestamp": "2026-11-23T10:00:00.000Z", "source": SENDER, "messageId": ses_id,
            "destination": [RECIPIENT],
            "commonHeaders": {"from": [SENDER], "to": [RECIPIENT], "subject": SUBJECT},
        },
    });
    let ses = WebhookFunction::with_clock(
        webhook_config(&t, ProviderId::Ses, Some(http), &[]),
        t.clients.clone(),
        system(),
    );
    let signed =
        SnsTestMessage::notification(TOPIC, &bounce.to_string(), OffsetDateTime::now_utc())
            .with_message_id("sns-hygiene-1");
    let r = ses
        .handle(post(ProviderId::Ses, &signer.sign(&signed), &[]))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let config = Config::from_lookup(t.function_env("event-processor")).unwrap();
    let processor = EventProcessor::new(config, t.clients.clone());
    assert_eq!(process_events(&t, &processor).await, 1);

    // webhook-sendgrid: a signed batch (an open and a click) for the message.
    let key = sendgrid_key(7);
    let events = serde_json::to_vec(&json!([
        {"email": RECIPIENT, "timestamp": 1_795_000_000, "event": "open",
         "sg_event_id": "hygiene-sg-1", "sg_message_id": "hygiene.sendgrid.1",
         "mailgate_message_id": id, "useragent": "Mozilla/5.0", "ip": "203.0.113.9"},
        {"email": RECIPIENT, "timestamp": 1_795_000_001, "event": "click",
         "url": "https://example.org/hygiene-click-path", "sg_event_id": "hygiene-sg-2",
         "sg_message_id": "hygiene.sendgrid.1", "mailgate_message_id": id},
    ]))
    .unwrap();
    let timestamp = OffsetDateTime::now_utc().unix_timestamp();
    let r = webhook(&t, ProviderId::Sendgrid, &[])
        .handle(post(
            ProviderId::Sendgrid,
            &events,
            &sendgrid_headers(&key, timestamp, &events),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    // webhook-mailgun: a signed delivery, then a forgery.
    let mailgun = webhook(
        &t,
        ProviderId::Mailgun,
        &[("MAILGUN_WEBHOOK_SIGNING_KEYS", MAILGUN_SIGNING_KEY)],
    );
    let body = mailgun_body(MAILGUN_SIGNING_KEY, "hygienetoken0001", "hygiene-mg-1", &id);
    let r = mailgun.handle(post(ProviderId::Mailgun, &body, &[])).await;
    assert_eq!(r.status(), StatusCode::OK);
    let forged = mailgun_body(FORGED_MAILGUN_KEY, "hygienetoken0002", "hygiene-mg-2", &id);
    let r = mailgun
        .handle(post(ProviderId::Mailgun, &forged, &[]))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // webhook-postmark: Basic credentials, right and wrong.
    let postmark = webhook(
        &t,
        ProviderId::Postmark,
        &[("POSTMARK_WEBHOOK_CREDENTIALS", POSTMARK_PAIR)],
    );
    let body = serde_json::to_vec(&json!({
        "RecordType": "Delivery", "MessageID": "hygiene-postmark-1", "Recipient": RECIPIENT,
        "DeliveredAt": "2026-11-23T10:00:01Z", "Details": "smtp;250 2.0.0 OK",
        "Metadata": {"mailgate_message_id": id}, "MessageStream": "outbound",
    }))
    .unwrap();
    let r = postmark
        .handle(post(ProviderId::Postmark, &body, &[basic(POSTMARK_PAIR)]))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = postmark
        .handle(post(
            ProviderId::Postmark,
            &body,
            &[basic(WRONG_POSTMARK_PAIR)],
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(process_events(&t, &processor).await, 4);

    // The history answers "did this person get this email?".
    let got = api
        .handle(request(&auth, "GET", &format!("/v1/messages/{id}"), None))
        .await;
    assert_eq!(got.status(), StatusCode::OK);
    let got = json_body(&got);
    assert_eq!(got["state"], "bounced", "{got}");
    assert_eq!(got["events"].as_array().unwrap().len(), 5, "{got}");
    // The recipient is suppressed now: a second send is refused.
    let again = api
        .handle(request(
            &auth,
            "POST",
            "/v1/messages",
            Some(message(RECIPIENT).to_string()),
        ))
        .await;
    assert_eq!(again.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // The dispatcher delivers the fanned-out events to the app.
    let config = dispatcher::Config::from_lookup(t.function_env("dispatcher")).unwrap();
    let dispatcher = dispatcher::Function::new(config, t.clients.clone()).unwrap();
    let deliveries = take(&t, "OutboundQueue").await;
    assert!(!deliveries.records.is_empty());
    let n = deliveries.records.len();
    assert!(
        dispatcher
            .handle(deliveries)
            .await
            .batch_item_failures
            .is_empty()
    );
    assert_eq!(app.received.lock().unwrap().len(), n);

    RunSecrets {
        api_key,
        endpoint_secret,
    }
}

#[tokio::test]
async fn a_full_flow_through_every_entry_point() {
    if std::env::var_os(CHILD_VAR).is_some() {
        mailgate_lambda::init_tracing();
    }
    let secrets = full_flow().await;
    if std::env::var_os(CHILD_VAR).is_some() {
        // Handed to the parent on stderr, never through the logs it inspects.
        eprintln!("hygiene-secret api_key {}", secrets.api_key);
        eprintln!("hygiene-secret endpoint_secret {}", secrets.endpoint_secret);
    }
}

#[test]
fn logs_of_a_full_flow_hold_no_address_secret_or_content() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "a_full_flow_through_every_entry_point",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_VAR, "1")
        .env(
            "RUST_LOG",
            std::env::var(FILTER_VAR).unwrap_or_else(|_| CHILD_LOG_FILTER.to_owned()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the flow failed in the child process:\n{stderr}"
    );

    let mut secrets: Vec<(String, String)> = Vec::new();
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("hygiene-secret ") {
            let (name, value) = rest.split_once(' ').unwrap();
            secrets.push((name.to_owned(), value.to_owned()));
        }
    }
    assert_eq!(secrets.len(), 2, "the child reports its generated secrets");
    // What the inspection reads: every line but the two hand-over lines.
    let logs: String = stdout
        .lines()
        .chain(stderr.lines().filter(|l| !l.starts_with("hygiene-secret ")))
        .collect::<Vec<_>>()
        .join("\n");

    let log_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.starts_with('{') && l.contains("\"level\""))
        .collect();
    let emf_lines = logs
        .lines()
        .filter(|l| l.contains("CloudWatchMetrics"))
        .count();
    assert!(
        log_lines.len() >= 10,
        "the capture saw {} log lines: is the subscriber installed?\n{logs}",
        log_lines.len()
    );
    assert!(emf_lines > 0, "the capture saw no EMF metric line:\n{logs}");
    assert!(
        log_lines
            .iter()
            .any(|l| l.contains("\"level\":\"DEBUG\"") || l.contains("\"level\":\"TRACE\"")),
        "debug lines are captured too"
    );
    // Where the code logs an address it logs it masked: proof that the capture saw those lines.
    assert!(
        logs.contains("h***@example.org"),
        "the masked address of the suppression is logged:\n{logs}"
    );

    let basic_b64 = |pair: &str| STANDARD.encode(pair);
    let mut forbidden: Vec<(String, String)> = vec![
        ("recipient".into(), RECIPIENT.into()),
        ("batch recipient".into(), BATCH_RECIPIENT.into()),
        ("suppressed address".into(), SUPPRESSED.into()),
        ("sender".into(), SENDER.into()),
        (
            "percent-encoded address".into(),
            SUPPRESSED.replace('@', "%40"),
        ),
        ("a local part".into(), "hygiene.recipient".into()),
        ("a local part".into(), "hygiene.batch".into()),
        ("a local part".into(), "hygiene.suppressed".into()),
        ("a local part".into(), "hygiene.sender".into()),
        ("sender name".into(), SENDER_NAME.into()),
        ("subject".into(), SUBJECT.into()),
        ("text body".into(), TEXT_BODY.into()),
        ("html body".into(), "Hygiene html body".into()),
        ("suppression note".into(), NOTE.into()),
        ("unknown API key".into(), UNKNOWN_API_KEY.into()),
        ("Mailgun signing key".into(), MAILGUN_SIGNING_KEY.into()),
        ("forged Mailgun key".into(), FORGED_MAILGUN_KEY.into()),
        ("Basic credentials".into(), POSTMARK_PAIR.into()),
        ("Basic password".into(), "hygiene-password-8b4c".into()),
        ("Basic header".into(), basic_b64(POSTMARK_PAIR)),
        (
            "wrong Basic password".into(),
            "hygiene-wrong-password".into(),
        ),
        ("wrong Basic header".into(), basic_b64(WRONG_POSTMARK_PAIR)),
        ("app URL token".into(), APP_URL_TOKEN.into()),
        ("clicked URL".into(), "hygiene-click-path".into()),
    ];
    for (name, value) in &secrets {
        forbidden.push((name.clone(), value.clone()));
        // The random part alone too (`mg_test_…`, `whsec_…`).
        let random = value
            .trim_start_matches("mg_test_")
            .trim_start_matches("mg_live_")
            .trim_start_matches("whsec_");
        assert!(random.len() >= 16, "{name} has a random part");
        forbidden.push((format!("{name} (random part)"), random.to_owned()));
    }
    let lower = logs.to_lowercase();
    let leaks: Vec<String> = forbidden
        .iter()
        .filter(|(_, value)| lower.contains(&value.to_lowercase()))
        .map(|(name, value)| {
            let line = logs
                .lines()
                .find(|l| l.to_lowercase().contains(&value.to_lowercase()))
                .unwrap_or_default();
            format!("{name} ({value}) in: {line}")
        })
        .collect();
    assert!(leaks.is_empty(), "the logs leak:\n{}", leaks.join("\n"));
}
