#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! `POST /v1/messages`, `POST /v1/messages/batch` and `send-worker` end to end: the real
//! send-api handler from the fixture, the real worker from SQS records, the emulator's tables
//! and queues, and two local servers answering as SendGrid (`POST /v3/mail/send`) and Postmark
//! (`POST /email`) do per PROVIDERS.md, configured through the functions' own lookup.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::Request as AxumRequest;
use axum::http::{HeaderValue as AxumHeaderValue, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response as AxumResponse};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_aws::{DynamoDbApiKeys, DynamoDbSuppressionList, SendQueueMessage};
use mailgate_core::{
    ApiKeyLabel, ApiKeyRecord, ApiKeySecret, EmailAddress, KeyEnvironment, Scopes, Suppression,
    SuppressionReason,
};
use mailgate_tests::{TestStack, fixture};
use send_api::{SendApi, SendApiConfig};
use serde_json::{Value, json};
use time::OffsetDateTime;

const SENDGRID_KEY: &str = "SG.test-key";
const POSTMARK_TOKEN: &str = "pm-server-token";

/// A local provider: its answer (status, delay) can be switched; it counts requests.
#[derive(Clone)]
struct FakeProvider {
    base_url: String,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    hits: Arc<AtomicU32>,
}

impl FakeProvider {
    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    fn hits(&self) -> u32 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// SendGrid: 202 with `X-Message-Id`; 401 with its auth error; 429 with `Retry-After: 5`;
/// other statuses with an `errors` body.
fn sendgrid_answer(request: &AxumRequest, status: u16, n: u32) -> AxumResponse {
    if request.uri().path() != "/v3/mail/send" {
        return AxumStatus::NOT_FOUND.into_response();
    }
    let authorised = request.headers().get("authorization")
        == Some(&AxumHeaderValue::from_static("Bearer SG.test-key"));
    if !authorised || status == 401 {
        let body = r#"{"errors":[{"field":null,"message":"The provided authorization grant is invalid, expired, or revoked","help":null}]}"#;
        return (AxumStatus::UNAUTHORIZED, body).into_response();
    }
    match status {
        202 => {
            let mut response = AxumStatus::ACCEPTED.into_response();
            response.headers_mut().insert(
                "x-message-id",
                AxumHeaderValue::from_str(&format!("sg-{n}")).unwrap(),
            );
            response
        }
        429 => {
            let body = r#"{"errors":[{"field":null,"message":"too many requests","help":null}]}"#;
            let mut response = (AxumStatus::TOO_MANY_REQUESTS, body).into_response();
            response
                .headers_mut()
                .insert("retry-after", AxumHeaderValue::from_static("5"));
            response
        }
        other => {
            let body =
                r#"{"errors":[{"field":null,"message":"Internal server error","help":null}]}"#;
            (AxumStatus::from_u16(other).unwrap(), body).into_response()
        }
    }
}

/// Postmark: 200 with `ErrorCode` 0 and a `MessageID`, or an error body.
fn postmark_answer(request: &AxumRequest, status: u16, n: u32) -> AxumResponse {
    if request.uri().path() != "/email" {
        return AxumStatus::NOT_FOUND.into_response();
    }
    let authorised = request.headers().get("x-postmark-server-token")
        == Some(&AxumHeaderValue::from_static(POSTMARK_TOKEN));
    let (status, body) = if !authorised {
        (401, r#"{"ErrorCode":10,"Message":"The Server Token you provided in the X-Postmark-Server-Token request header was invalid."}"#.to_owned())
    } else if status == 200 {
        (
            200,
            format!(
                r#"{{"To":"jane@example.org","SubmittedAt":"2026-11-23T10:00:00.0000000-05:00","MessageID":"pm-{n}","ErrorCode":0,"Message":"OK"}}"#
            ),
        )
    } else {
        (
            status,
            r#"{"ErrorCode":0,"Message":"Server error"}"#.to_owned(),
        )
    };
    let mut response = (AxumStatus::from_u16(status).unwrap(), body).into_response();
    response.headers_mut().insert(
        "content-type",
        AxumHeaderValue::from_static("application/json"),
    );
    response
}

async fn serve(answer: fn(&AxumRequest, u16, u32) -> AxumResponse, status: u16) -> FakeProvider {
    let status = Arc::new(AtomicU16::new(status));
    let delay_ms = Arc::new(AtomicU64::new(0));
    let hits = Arc::new(AtomicU32::new(0));
    let (s, d, h) = (status.clone(), delay_ms.clone(), hits.clone());
    let app = axum::Router::new().fallback(move |request: AxumRequest| {
        let n = h.fetch_add(1, Ordering::SeqCst) + 1;
        let response = answer(&request, s.load(Ordering::SeqCst), n);
        let delay = d.load(Ordering::SeqCst);
        async move {
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeProvider {
        base_url: format!("http://{addr}"),
        status,
        delay_ms,
        hits,
    }
}

/// One test's world: the stack, both fake providers, and keys.
struct World {
    t: TestStack,
    sendgrid: FakeProvider,
    postmark: FakeProvider,
    send_key: String,
}

impl World {
    async fn new() -> Self {
        let t = TestStack::new().await;
        let sendgrid = serve(sendgrid_answer, 202).await;
        let postmark = serve(postmark_answer, 200).await;
        let send_key = key(&t, "send,read").await;
        Self {
            t,
            sendgrid,
            postmark,
            send_key,
        }
    }

    /// The function environment of `binary` from the template, with `providers` and the fake
    /// providers' settings over it.
    fn env(&self, binary: &str, providers: &str) -> impl Fn(&str) -> Option<String> + use<> {
        let base = self.t.function_env(binary);
        let vars: HashMap<&'static str, String> = HashMap::from([
            ("MAILGATE_PROVIDERS", providers.to_owned()),
            ("SENDGRID_API_KEY", SENDGRID_KEY.to_owned()),
            ("SENDGRID_BASE_URL", self.sendgrid.base_url.clone()),
            ("POSTMARK_SERVER_TOKEN", POSTMARK_TOKEN.to_owned()),
            ("POSTMARK_BASE_URL", self.postmark.base_url.clone()),
            ("SEND_TIMEOUT_MS", "1000".to_owned()),
            ("SEND_BUDGET_MS", "2500".to_owned()),
        ]);
        move |k| vars.get(k).cloned().or_else(|| base(k))
    }

    fn api(&self, providers: &str) -> SendApi {
        self.api_with(providers, self.t.clients.clone())
    }

    /// The send API on `clients` (e.g. through a fault proxy).
    fn api_with(&self, providers: &str, clients: mailgate_aws::AwsClients) -> SendApi {
        let config = SendApiConfig::from_lookup(self.env("send-api", providers)).unwrap();
        SendApi::new(config, clients).unwrap()
    }

    fn worker(&self, clients: mailgate_aws::AwsClients) -> send_worker::Function {
        let config = send_worker::Config::from_lookup(self.env("send-worker", "sendgrid")).unwrap();
        send_worker::Function::new(config, clients).unwrap()
    }

    async fn get(&self, api: &SendApi, id: &str) -> Value {
        let response = api
            .handle(request(
                &self.send_key,
                "GET",
                &format!("/v1/messages/{id}"),
                None,
                None,
            ))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        json_body(&response)
    }

    /// Every message on the send queue within `wait`.
    async fn queued(&self, wait_secs: i32) -> Vec<aws_sdk_sqs::types::Message> {
        self.t
            .clients
            .sqs
            .receive_message()
            .queue_url(self.t.queue_url("SendQueue"))
            .max_number_of_messages(10)
            .wait_time_seconds(wait_secs)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
    }
}

/// A stored key with `scopes`: its `Authorization` header value.
async fn key(t: &TestStack, scopes: &str) -> String {
    let secret = ApiKeySecret::generate(KeyEnvironment::Live);
    let record = ApiKeyRecord::new(
        &secret,
        ApiKeyLabel::parse("send test").unwrap(),
        KeyEnvironment::Live,
        Scopes::parse_list(scopes).unwrap(),
        OffsetDateTime::now_utc(),
    );
    DynamoDbApiKeys::new(t.clients.dynamodb.clone(), t.table("ApiKeysTable"))
        .create(&record)
        .await
        .unwrap();
    format!("Bearer {}", secret.expose())
}

/// A request from the POST fixture: `method` on `path`, with `body` and `Idempotency-Key`.
fn request(
    authorization: &str,
    method: &str,
    path: &str,
    body: Option<String>,
    idempotency_key: Option<&str>,
) -> Request {
    let mut event: Value = serde_json::from_str(&fixture("send-api/post-message.json")).unwrap();
    event["requestContext"]["http"]["method"] = json!(method);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["body"] = body.map_or(Value::Null, Value::String);
    event["headers"]
        .as_object_mut()
        .unwrap()
        .remove("idempotency-key");
    event["headers"]
        .as_object_mut()
        .unwrap()
        .remove("content-length");
    let mut request = lambda_http::request::from_str(&event.to_string()).unwrap();
    if authorization.is_empty() {
        request.headers_mut().remove(header::AUTHORIZATION);
    } else {
        request.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
    }
    if let Some(k) = idempotency_key {
        request
            .headers_mut()
            .insert("idempotency-key", HeaderValue::from_str(k).unwrap());
    }
    request
}

fn post(authorization: &str, body: &Value, idempotency_key: Option<&str>) -> Request {
    request(
        authorization,
        "POST",
        "/v1/messages",
        Some(body.to_string()),
        idempotency_key,
    )
}

fn json_body(r: &Response<Body>) -> Value {
    match r.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

fn message() -> Value {
    json!({
        "from": {"email": "hello@example.com", "name": "Example"},
        "to": ["jane@example.org"],
        "subject": "Your receipt",
        "text": "Thanks for your order.",
    })
}

#[tokio::test]
async fn fails_over_to_postmark_when_sendgrid_answers_500() {
    let w = World::new().await;
    w.sendgrid.answer(500);
    let api = w.api("sendgrid,postmark");
    let response = api.handle(post(&w.send_key, &message(), None)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body = json_body(&response);
    assert_eq!(body["status"], "sent");
    assert_eq!(body["provider"], "postmark");
    assert_eq!(body["provider_message_id"], "pm-1");
    assert_eq!(body["suppressed"], json!([]));

    let got = w.get(&api, body["id"].as_str().unwrap()).await;
    assert_eq!(got["state"], "sent");
    let attempts = got["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{got}");
    assert_eq!(attempts[0]["provider"], "sendgrid");
    assert_eq!(attempts[0]["outcome"], "failed");
    assert_eq!(attempts[1]["provider"], "postmark");
    assert_eq!(attempts[1]["outcome"], "accepted");
    assert_eq!(attempts[1]["provider_message_id"], "pm-1");
}

#[tokio::test]
async fn a_provider_401_fails_over_and_is_recorded_as_authentication() {
    let w = World::new().await;
    w.sendgrid.answer(401);
    let api = w.api("sendgrid,postmark");
    let response = api.handle(post(&w.send_key, &message(), None)).await;
    let body = json_body(&response);
    assert_eq!(body["provider"], "postmark", "{body}");
    let got = w.get(&api, body["id"].as_str().unwrap()).await;
    assert_eq!(
        got["attempts"][0]["error_category"], "authentication",
        "{got}"
    );
    assert_eq!(got["attempts"][1]["outcome"], "accepted");
}

#[tokio::test]
async fn a_throttled_only_provider_defers_the_message_to_the_send_queue() {
    let w = World::new().await;
    w.sendgrid.answer(429);
    let api = w.api("sendgrid");
    let response = api.handle(post(&w.send_key, &message(), None)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body = json_body(&response);
    assert_eq!(body["status"], "queued", "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let got = w.get(&api, &id).await;
    assert_eq!(got["state"], "queued");
    assert_eq!(got["attempts"][0]["error_category"], "rate_limit", "{got}");

    // Delayed by Retry-After (5 s), then visible as the documented pointer.
    let mut found = Vec::new();
    for _ in 0..3 {
        found = w.queued(5).await;
        if !found.is_empty() {
            break;
        }
    }
    assert_eq!(found.len(), 1);
    let pointer = SendQueueMessage::parse(found[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(pointer.message_id.as_str(), id);
    assert_eq!(
        found[0].body.as_deref().unwrap(),
        format!(r#"{{"v":1,"message_id":"{id}"}}"#)
    );
}

#[tokio::test]
async fn a_timeout_after_the_request_left_is_unknown_and_no_second_provider_is_called() {
    let w = World::new().await;
    w.sendgrid.delay(2_000); // longer than SEND_TIMEOUT_MS
    let api = w.api("sendgrid,postmark");
    let response = api.handle(post(&w.send_key, &message(), None)).await;
    let body = json_body(&response);
    assert_eq!(body["status"], "unknown", "{body}");
    assert_eq!(body["provider"], "sendgrid");
    assert_eq!(w.postmark.hits(), 0);
    let got = w.get(&api, body["id"].as_str().unwrap()).await;
    assert_eq!(got["state"], "unknown");
    assert_eq!(got["attempts"][0]["outcome"], "unknown");
}

#[tokio::test]
async fn an_explicit_provider_never_falls_back() {
    let w = World::new().await;
    w.sendgrid.answer(500);
    let api = w.api("sendgrid,postmark");
    let mut m = message();
    m["provider"] = json!("sendgrid");
    let response = api.handle(post(&w.send_key, &m, None)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body = json_body(&response);
    assert_ne!(body["status"], "sent", "{body}");
    assert!(w.sendgrid.hits() >= 1);
    assert_eq!(w.postmark.hits(), 0);
}

#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_reach_the_provider_once() {
    let w = World::new().await;
    w.sendgrid.delay(300);
    let api = w.api("sendgrid,postmark");
    let responses = futures::future::join_all(
        (0..20).map(|_| api.handle(post(&w.send_key, &message(), Some("concurrent-1")))),
    )
    .await;
    assert_eq!(w.sendgrid.hits() + w.postmark.hits(), 1);
    let accepted = responses
        .iter()
        .filter(|r| r.status() == StatusCode::ACCEPTED)
        .count();
    assert!(accepted >= 1);
    for r in &responses {
        match r.status() {
            StatusCode::ACCEPTED => {}
            StatusCode::CONFLICT => assert!(r.headers().contains_key(header::RETRY_AFTER)),
            other => panic!("unexpected {other}"),
        }
    }
}

#[tokio::test]
async fn a_repeat_replays_the_stored_response_and_a_different_body_is_refused() {
    let w = World::new().await;
    let api = w.api("sendgrid");
    let first = api
        .handle(post(&w.send_key, &message(), Some("replay-1")))
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert!(!first.headers().contains_key("idempotency-replayed"));

    let again = api
        .handle(post(&w.send_key, &message(), Some("replay-1")))
        .await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert_eq!(json_body(&again), json_body(&first));
    assert_eq!(w.sendgrid.hits(), 1);

    let mut other = message();
    other["subject"] = json!("Something else");
    let mismatch = api
        .handle(post(&w.send_key, &other, Some("replay-1")))
        .await;
    assert_eq!(mismatch.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        json_body(&mismatch)["error"]["code"],
        "idempotency_key_mismatch"
    );

    // A validation failure releases the key: the corrected request proceeds.
    let mut bad = message();
    bad["to"] = json!(["not an address"]);
    let refused = api.handle(post(&w.send_key, &bad, Some("fix-1"))).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let fixed = api
        .handle(post(&w.send_key, &message(), Some("fix-1")))
        .await;
    assert_eq!(fixed.status(), StatusCode::ACCEPTED);
    assert!(!fixed.headers().contains_key("idempotency-replayed"));
}

#[tokio::test]
async fn a_retry_after_success_replays_the_202_even_once_the_recipient_is_suppressed() {
    let w = World::new().await;
    let api = w.api("sendgrid");
    let first = api
        .handle(post(&w.send_key, &message(), Some("after-bounce-1")))
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    // The address bounces and is suppressed before the client's retry (say, after a timeout).
    DynamoDbSuppressionList::new(w.t.clients.dynamodb.clone(), w.t.table("SuppressionsTable"))
        .put(&Suppression::new(
            &EmailAddress::parse("jane@example.org").unwrap(),
            SuppressionReason::HardBounce,
            OffsetDateTime::now_utc(),
        ))
        .await
        .unwrap();
    let again = api
        .handle(post(&w.send_key, &message(), Some("after-bounce-1")))
        .await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert_eq!(json_body(&again), json_body(&first));
    assert_eq!(w.sendgrid.hits(), 1);
    // Without the key it is a new request, and refused.
    let fresh = api.handle(post(&w.send_key, &message(), None)).await;
    assert_eq!(fresh.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn suppressed_recipients_are_dropped_or_refuse_the_send() {
    let w = World::new().await;
    let list =
        DynamoDbSuppressionList::new(w.t.clients.dynamodb.clone(), w.t.table("SuppressionsTable"));
    let now = OffsetDateTime::now_utc();
    for (a, reason) in [
        ("jane@example.org", SuppressionReason::HardBounce),
        ("cc@example.org", SuppressionReason::Complaint),
    ] {
        let address = EmailAddress::parse(a).unwrap();
        list.put(&Suppression::new(&address, reason, now))
            .await
            .unwrap();
    }
    let api = w.api("sendgrid");

    let all = api.handle(post(&w.send_key, &message(), None)).await;
    assert_eq!(all.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = json_body(&all);
    assert_eq!(body["error"]["code"], "all_recipients_suppressed");
    assert_eq!(
        body["error"]["suppressed"],
        json!([{"address": "jane@example.org", "reason": "hard_bounce"}])
    );
    assert_eq!(w.sendgrid.hits(), 0);

    let mut partial = message();
    partial["to"] = json!(["joe@example.org"]);
    partial["cc"] = json!(["cc@example.org"]);
    let response = api.handle(post(&w.send_key, &partial, None)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body = json_body(&response);
    assert_eq!(body["status"], "sent");
    assert_eq!(
        body["suppressed"],
        json!([{"address": "cc@example.org", "reason": "complaint"}])
    );
    let got = w.get(&api, body["id"].as_str().unwrap()).await;
    let cc = got["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "cc@example.org")
        .unwrap()
        .clone();
    assert_eq!(cc["status"], "suppressed");
}

#[tokio::test]
async fn invalid_requests_are_refused_with_the_field_at_fault() {
    let w = World::new().await;
    let api = w.api("sendgrid");
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            json!({"headers": {"X-Note": "a\r\nBcc: victim@example.org"}}),
            422,
            "header_injection",
            "headers.X-Note",
        ),
        (
            json!({"to": ["jane@", "ok@example.org"]}),
            422,
            "invalid_address",
            "to[0]",
        ),
        (
            json!({"attachments": [{"filename": "a.pdf", "content_type": "application/pdf", "content": "%%%not base64"}]}),
            422,
            "invalid_base64",
            "attachments[0].content",
        ),
        (
            json!({"send_at": "2020-01-01T00:00:00Z"}),
            422,
            "send_at_in_past",
            "send_at",
        ),
        (json!({"to": "jane@example.org"}), 400, "invalid_type", "to"),
    ];
    for (patch, status, code, field) in cases {
        let mut m = message();
        for (k, v) in patch.as_object().unwrap() {
            m[k] = v.clone();
        }
        let response = api.handle(post(&w.send_key, &m, None)).await;
        assert_eq!(response.status().as_u16(), status, "{patch}");
        let body = json_body(&response);
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(body["error"]["field"], field, "{body}");
        assert!(!body["errors"].as_array().unwrap().is_empty());
    }
    // Every error at once, the first one also as `error`.
    let response = api
        .handle(post(
            &w.send_key,
            &json!({"to": ["jane@"], "subject": "x"}),
            None,
        ))
        .await;
    let body = json_body(&response);
    assert!(body["errors"].as_array().unwrap().len() >= 2, "{body}");
    assert_eq!(body["error"], body["errors"][0]);

    let huge = "a".repeat(send_api::send::MAX_BODY_BYTES + 1);
    let response = api
        .handle(request(
            &w.send_key,
            "POST",
            "/v1/messages",
            Some(huge),
            None,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json_body(&response)["error"]["code"], "payload_too_large");
    assert_eq!(w.sendgrid.hits(), 0);
}

#[tokio::test]
async fn provider_control_headers_are_refused_as_reserved_headers() {
    let w = World::new().await;
    let api = w.api("sendgrid");
    let names = [
        "X-SES-CONFIGURATION-SET",
        "x-ses-message-tags",
        "X-SMTPAPI",
        "X-Mailgun-Variables",
        "X-PM-Message-Stream",
        "X-Mailgate-Message-Id",
    ];
    let mut m = message();
    m["headers"] = Value::Object(
        names
            .iter()
            .map(|n| ((*n).to_owned(), json!("spoofed")))
            .collect(),
    );
    let response = api.handle(post(&w.send_key, &m, None)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = json_body(&response);
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), names.len(), "{body}");
    for name in names {
        let error = errors
            .iter()
            .find(|e| e["field"] == format!("headers.{name}"))
            .unwrap_or_else(|| panic!("no error for {name}: {body}"));
        assert_eq!(error["code"], "reserved_header", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(name) && message.contains("reserved"),
            "{message}"
        );
    }
    assert_eq!(body["error"]["code"], "reserved_header");
    assert_eq!(w.sendgrid.hits(), 0);
}

#[tokio::test]
async fn a_suppressed_address_is_screened_in_every_spelling() {
    let w = World::new().await;
    let list =
        DynamoDbSuppressionList::new(w.t.clients.dynamodb.clone(), w.t.table("SuppressionsTable"));
    let now = OffsetDateTime::now_utc();
    for a in ["jane@example.org", "jäne@xn--bcher-kva.example"] {
        let address = EmailAddress::parse(a).unwrap();
        list.put(&Suppression::new(
            &address,
            SuppressionReason::Complaint,
            now,
        ))
        .await
        .unwrap();
    }
    let api = w.api("sendgrid");
    for variant in [
        "\"jane\"@example.org",
        "JANE@Example.ORG",
        "JÄNE@bücher.example",
        "jäne@BÜCHER.example",
    ] {
        let mut m = message();
        m["to"] = json!([variant]);
        let response = api.handle(post(&w.send_key, &m, None)).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{variant}: {:?}",
            response.body()
        );
        let body = json_body(&response);
        assert_eq!(body["error"]["code"], "all_recipients_suppressed", "{body}");
    }
    assert_eq!(w.sendgrid.hits(), 0);
}

#[tokio::test]
async fn sending_needs_a_key_with_the_send_scope() {
    let w = World::new().await;
    let api = w.api("sendgrid");
    let missing = api.handle(post("", &message(), None)).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let read_only = key(&w.t, "read").await;
    let refused = api.handle(post(&read_only, &message(), None)).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(w.sendgrid.hits(), 0);
}

#[tokio::test]
async fn a_send_recorded_by_ses_in_the_emulator_is_visible_with_its_ses_message_id() {
    let w = World::new().await;
    // The template's default provider list (`ses`), sending from the verified example.com.
    let config = SendApiConfig::from_lookup(w.t.function_env("send-api")).unwrap();
    assert_eq!(config.providers.order.to_string(), "ses");
    let api = SendApi::new(config, w.t.clients.clone()).unwrap();
    let response = api.handle(post(&w.send_key, &message(), None)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body = json_body(&response);
    assert_eq!(body["status"], "sent", "{body}");
    assert_eq!(body["provider"], "ses");
    let ses_id = body["provider_message_id"].as_str().unwrap().to_owned();
    assert!(!ses_id.is_empty());
    let got = w.get(&api, body["id"].as_str().unwrap()).await;
    assert_eq!(got["state"], "sent");
    assert_eq!(got["provider_message_id"], ses_id.as_str());
    assert_eq!(got["attempts"][0]["provider"], "ses");
}

#[tokio::test]
async fn a_batch_answers_per_item_and_queues_the_valid_messages() {
    let w = World::new().await;
    let api = w.api("sendgrid");
    let mut invalid = message();
    invalid["to"] = json!(["nope"]);
    let batch = json!({"messages": [message(), invalid, message()]});
    let response = api
        .handle(request(
            &w.send_key,
            "POST",
            "/v1/messages/batch",
            Some(batch.to_string()),
            Some("batch-1"),
        ))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body = json_body(&response);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["index"], 0);
    assert_eq!(results[0]["status"], "queued");
    assert_eq!(results[1]["error"]["code"], "invalid_address");
    assert_eq!(results[1]["error"]["field"], "messages[1].to[0]");
    assert!(results[1].get("id").is_none());
    assert_eq!(w.sendgrid.hits(), 0, "a batch is sent by the worker");
    let got = w.get(&api, results[2]["id"].as_str().unwrap()).await;
    assert_eq!(got["state"], "queued");
    let queued = w.queued(1).await;
    assert_eq!(queued.len(), 2);

    let none_valid = json!({"messages": [invalid]});
    let response = api
        .handle(request(
            &w.send_key,
            "POST",
            "/v1/messages/batch",
            Some(none_valid.to_string()),
            None,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_correlation_id_is_stored_echoed_and_part_of_the_idempotency_fingerprint() {
    let w = World::new().await;
    let api = w.api("sendgrid");
    let mut body = message();
    body["correlation_id"] = json!("order-42");
    body["tags"] = json!(["receipt"]);
    let sent = api.handle(post(&w.send_key, &body, Some("corr-1"))).await;
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let id = json_body(&sent)["id"].as_str().unwrap().to_owned();
    let got = w.get(&api, &id).await;
    assert_eq!(got["correlation_id"], "order-42");
    assert_eq!(got["tags"], json!(["receipt"]));

    // The same key with another correlation id is another request.
    body["correlation_id"] = json!("order-43");
    let mismatch = api.handle(post(&w.send_key, &body, Some("corr-1"))).await;
    assert_eq!(mismatch.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        json_body(&mismatch)["error"]["code"],
        "idempotency_key_mismatch"
    );

    // Without one, the field is null; a bad one is refused with the field named.
    let plain = api.handle(post(&w.send_key, &message(), None)).await;
    let got = w.get(&api, json_body(&plain)["id"].as_str().unwrap()).await;
    assert!(got["correlation_id"].is_null());
    body["correlation_id"] = json!("caf\u{e9}");
    let refused = api.handle(post(&w.send_key, &body, None)).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error = &json_body(&refused)["errors"][0];
    assert_eq!(
        (error["code"].as_str(), error["field"].as_str()),
        (Some("invalid_correlation_id"), Some("correlation_id"))
    );

    // Each batch item carries its own.
    let mut first = message();
    first["correlation_id"] = json!("batch-a");
    let batch = json!({"messages": [first, message()]});
    let response = api
        .handle(request(
            &w.send_key,
            "POST",
            "/v1/messages/batch",
            Some(batch.to_string()),
            None,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let results = json_body(&response)["results"].as_array().unwrap().clone();
    let a = w.get(&api, results[0]["id"].as_str().unwrap()).await;
    let b = w.get(&api, results[1]["id"].as_str().unwrap()).await;
    assert_eq!(a["correlation_id"], "batch-a");
    assert!(b["correlation_id"].is_null());
}

/// An SQS event holding `messages` as received.
fn sqs_event(messages: &[&aws_sdk_sqs::types::Message]) -> aws_lambda_events::event::sqs::SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "eventSource": "aws:sqs",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

#[tokio::test]
async fn a_message_accepted_onto_the_async_path_is_sent_once_after_a_worker_crash() {
    let w = World::new().await;
    let api = w.api("sendgrid");
    let batch = json!({"messages": [message(), message()]});
    let response = api
        .handle(request(
            &w.send_key,
            "POST",
            "/v1/messages/batch",
            Some(batch.to_string()),
            None,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mut received = w.queued(1).await;
    if received.len() < 2 {
        received.extend(w.queued(1).await);
    }
    assert_eq!(received.len(), 2);

    // A worker whose DynamoDB is unreachable fails the first record before sending.
    let dead = mailgate_tests::sdk_config("http://127.0.0.1:9").await;
    let broken = w.worker(mailgate_aws::AwsClients::new(&dead));
    let crashed = broken.handle(sqs_event(&[&received[0]])).await;
    assert_eq!(crashed.batch_item_failures.len(), 1);
    assert_eq!(
        crashed.batch_item_failures[0].item_identifier,
        received[0].message_id().unwrap()
    );
    assert_eq!(w.sendgrid.hits(), 0);

    // A healthy worker gets the redelivered record with its batch-mate: both are sent.
    let healthy = w.worker(w.t.clients.clone());
    let event = sqs_event(&[&received[0], &received[1]]);
    let done = healthy.handle(event).await;
    assert!(done.batch_item_failures.is_empty());
    assert_eq!(w.sendgrid.hits(), 2);

    // SQS delivers at least once: the same records again send nothing.
    let again = healthy
        .handle(sqs_event(&[&received[0], &received[1]]))
        .await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(w.sendgrid.hits(), 2);
    for r in &received {
        let id = SendQueueMessage::parse(r.body().unwrap())
            .unwrap()
            .message_id;
        let got = w.get(&api, id.as_str()).await;
        assert_eq!(got["state"], "sent");
        assert_eq!(got["attempts"].as_array().unwrap().len(), 1);
    }

    // A malformed record is acknowledged, not retried.
    let poison: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(
        json!({"Records": [{"messageId": "p-1", "body": "{\"message_id\": 5}"}]}),
    )
    .unwrap();
    assert!(healthy.handle(poison).await.batch_item_failures.is_empty());
}

#[tokio::test]
async fn a_pointer_that_arrives_before_its_release_is_recorded_stays_on_the_queue() {
    let w = World::new().await;
    let api = w.api("sendgrid");
    let mut scheduled = message();
    let at = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    scheduled["send_at"] = json!(
        at.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    let response = api.handle(post(&w.send_key, &scheduled, None)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = json_body(&response)["id"].as_str().unwrap().to_owned();
    assert_eq!(json_body(&response)["status"], "scheduled");

    // The sweeper enqueues first and marks the release after: the worker may see the pointer
    // while the message is still `scheduled`. It must neither send nor drop it.
    let pointer = SendQueueMessage::new(id.parse().unwrap()).to_body();
    w.t.clients
        .sqs
        .send_message()
        .queue_url(w.t.queue_url("SendQueue"))
        .message_body(&pointer)
        .send()
        .await
        .unwrap();
    let received = w.queued(1).await;
    assert_eq!(received.len(), 1);
    let worker = w.worker(w.t.clients.clone());
    let early = worker.handle(sqs_event(&[&received[0]])).await;
    assert_eq!(early.batch_item_failures.len(), 1, "left on the queue");
    assert_eq!(w.sendgrid.hits(), 0);
    assert_eq!(w.get(&api, &id).await["state"], "scheduled");

    let messages = mailgate_aws::DynamoDbMessages::new(
        w.t.clients.dynamodb.clone(),
        w.t.table("MessagesTable"),
    );
    assert!(
        messages
            .mark_released(
                &id.parse().unwrap(),
                mailgate_core::unix_time::UnixMillis::from_datetime(OffsetDateTime::now_utc())
            )
            .await
            .unwrap()
    );
    let later = worker.handle(sqs_event(&[&received[0]])).await;
    assert!(later.batch_item_failures.is_empty());
    assert_eq!(w.sendgrid.hits(), 1);
    assert_eq!(w.get(&api, &id).await["state"], "sent");
}

/// One logged DynamoDB request: the operation, the table, the provider's hits when it left.
type LoggedRequest = (String, Option<String>, u32);

/// A DynamoDB interceptor logging every request the client transmits (retries included): the
/// operation, the table (when the request names one) and how many calls the fake provider had
/// received by then, which splits the requests into before and after the provider call.
#[derive(Debug, Clone)]
struct DynamoDbRequestLog {
    provider_hits: Arc<AtomicU32>,
    log: Arc<Mutex<Vec<LoggedRequest>>>,
}

impl DynamoDbRequestLog {
    fn new(provider: &FakeProvider) -> Self {
        Self {
            provider_hits: provider.hits.clone(),
            log: Arc::default(),
        }
    }

    fn take(&self) -> Vec<LoggedRequest> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl aws_sdk_dynamodb::config::Intercept for DynamoDbRequestLog {
    fn name(&self) -> &'static str {
        "DynamoDbRequestLog"
    }

    fn read_before_transmit(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request();
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("?")
            .to_owned();
        let table = request
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
            .and_then(|v| v["TableName"].as_str().map(str::to_owned));
        let hits = self.provider_hits.load(Ordering::SeqCst);
        self.log.lock().unwrap().push((operation, table, hits));
        Ok(())
    }
}

/// The DynamoDB requests of one send through `api`, split at the provider call: before, after,
/// and the breaker's reads (the control table's, read only when this instance's health cache
/// is cold: counted apart so that the figure does not depend on timing).
async fn round_trips(
    w: &World,
    api: &SendApi,
    log: &DynamoDbRequestLog,
    body: &Value,
    idempotency_key: Option<&str>,
) -> (Vec<String>, Vec<String>, Vec<LoggedRequest>) {
    let control = w.t.table("ControlTable");
    log.take();
    let hits = w.sendgrid.hits();
    let response = api.handle(post(&w.send_key, body, idempotency_key)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(json_body(&response)["status"], "sent");
    assert_eq!(w.sendgrid.hits(), hits + 1);
    let requests = log.take();
    let (health, send): (Vec<_>, Vec<_>) = requests
        .into_iter()
        .partition(|(_, table, _)| table.as_deref() == Some(control.as_str()));
    assert!(
        health
            .iter()
            .all(|(op, _, h)| op == "GetItem" && *h == hits),
        "{health:?}"
    );
    assert!(health.len() <= 1, "{health:?}");
    let before = send
        .iter()
        .filter(|(_, _, h)| *h == hits)
        .map(|(op, _, _)| op.clone())
        .collect();
    let after = send
        .iter()
        .filter(|(_, _, h)| *h > hits)
        .map(|(op, _, _)| op.clone())
        .collect();
    (before, after, health)
}

/// The send API on clients whose DynamoDB requests `log` records.
fn logged_api(w: &World, log: &DynamoDbRequestLog) -> SendApi {
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&w.t.sdk)
            .interceptor(log.clone())
            .build(),
    );
    let clients = mailgate_aws::AwsClients {
        dynamodb,
        ..w.t.clients.clone()
    };
    let config = SendApiConfig::from_lookup(w.env("send-api", "sendgrid")).unwrap();
    SendApi::new(config, clients).unwrap()
}

#[tokio::test]
async fn a_synchronous_send_makes_one_dynamodb_round_trip_before_the_provider_call_and_one_after() {
    let w = World::new().await;
    let log = DynamoDbRequestLog::new(&w.sendgrid);
    let api = logged_api(&w, &log);
    let write = vec!["TransactWriteItems".to_owned()];

    // Cold: this container reads the key once, then caches it.
    let (before, after, _) = round_trips(&w, &api, &log, &message(), Some("count-0")).await;
    eprintln!(
        "bench dynamodb_round_trips cold key: before {} {before:?}, after {} {after:?}",
        before.len(),
        after.len()
    );
    assert_eq!(
        before,
        vec!["GetItem".to_owned(), "TransactWriteItems".to_owned()]
    );
    assert_eq!(after, write);

    // Warm, nothing suppressed: one transaction claims the key, records the message and checks
    // the recipients' suppressions and the key itself; one records the outcome.
    let mut many = message();
    many["cc"] = json!(["cc@example.org", "other@example.org"]);
    many["bcc"] = json!(["audit@example.org"]);
    for (body, idempotency_key, case) in [
        (message(), Some("count-1"), "with a key"),
        (message(), None, "without a key"),
        (many, Some("count-2"), "four recipients"),
    ] {
        let (before, after, health) = round_trips(&w, &api, &log, &body, idempotency_key).await;
        eprintln!(
            "bench dynamodb_round_trips {case}: before {} {before:?}, after {} {after:?}, breaker reads {}",
            before.len(),
            after.len(),
            health.len()
        );
        assert_eq!(before, write, "{case}");
        assert_eq!(after, write, "{case}");
    }

    // The response stored with the outcome is replayed.
    let again = api
        .handle(post(&w.send_key, &message(), Some("count-1")))
        .await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert_eq!(json_body(&again)["status"], "sent");
    assert_eq!(w.sendgrid.hits(), 4);
}

#[tokio::test]
async fn a_recipient_suppressed_after_the_key_was_cached_falls_back_to_the_reads_and_is_screened() {
    let w = World::new().await;
    let log = DynamoDbRequestLog::new(&w.sendgrid);
    let api = logged_api(&w, &log);
    round_trips(&w, &api, &log, &message(), None).await;
    let list =
        DynamoDbSuppressionList::new(w.t.clients.dynamodb.clone(), w.t.table("SuppressionsTable"));
    let now = OffsetDateTime::now_utc();
    list.put(&Suppression::new(
        &EmailAddress::parse("cc@example.org").unwrap(),
        SuppressionReason::HardBounce,
        now,
    ))
    .await
    .unwrap();
    let mut partial = message();
    partial["cc"] = json!(["cc@example.org"]);
    let (before, after, _) = round_trips(&w, &api, &log, &partial, Some("partial-1")).await;
    // The guarded write is cancelled; the suppressions are read and the write made again.
    assert_eq!(
        before,
        ["TransactWriteItems", "BatchGetItem", "TransactWriteItems"].map(str::to_owned)
    );
    assert_eq!(after, vec!["TransactWriteItems".to_owned()]);
    let replay = api
        .handle(post(&w.send_key, &partial, Some("partial-1")))
        .await;
    assert_eq!(
        json_body(&replay)["suppressed"],
        json!([{"address": "cc@example.org", "reason": "hard_bounce"}])
    );

    // An unsubscribe does not stop transactional mail, and an expired entry stops nothing:
    // both pass the guarded write's checks with no read.
    list.put(&Suppression::new(
        &EmailAddress::parse("jane@example.org").unwrap(),
        SuppressionReason::Unsubscribe,
        now,
    ))
    .await
    .unwrap();
    let expiring = Suppression::new(
        &EmailAddress::parse("soft@example.org").unwrap(),
        SuppressionReason::HardBounce,
        now,
    )
    .expiring_at(now + time::Duration::seconds(2))
    .unwrap();
    list.put(&expiring).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let mut passing = message();
    passing["cc"] = json!(["soft@example.org"]);
    let (before, _, _) = round_trips(&w, &api, &log, &passing, None).await;
    assert_eq!(before, vec!["TransactWriteItems".to_owned()]);
}

#[tokio::test]
async fn a_cached_key_revoked_is_refused_at_once_and_nothing_is_sent() {
    let w = World::new().await;
    let api = w.api("sendgrid");
    let first = api
        .handle(post(&w.send_key, &message(), Some("revoked-1")))
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let this = api
        .handle(request(&w.send_key, "GET", "/v1/keys/self", None, None))
        .await;
    let id = json_body(&this)["id"].as_str().unwrap().parse().unwrap();
    DynamoDbApiKeys::new(w.t.clients.dynamodb.clone(), w.t.table("ApiKeysTable"))
        .revoke(&id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    // A new message, a replay of the first and an invalid body: all refused as unauthorised.
    let mut bad = message();
    bad["to"] = json!([]);
    for (body, idempotency_key) in [
        (message(), None),
        (message(), Some("revoked-2")),
        (message(), Some("revoked-1")),
        (bad, None),
    ] {
        let refused = api.handle(post(&w.send_key, &body, idempotency_key)).await;
        assert_eq!(
            refused.status(),
            StatusCode::UNAUTHORIZED,
            "{idempotency_key:?}"
        );
        assert_eq!(json_body(&refused)["error"]["code"], "invalid_api_key");
    }
    assert_eq!(w.sendgrid.hits(), 1);
}

/// Stores `count` messages through the batch endpoint and returns their pointers as received.
async fn queued_pointers(
    w: &World,
    api: &SendApi,
    count: usize,
) -> Vec<aws_sdk_sqs::types::Message> {
    let batch = json!({"messages": vec![message(); count]});
    let response = api
        .handle(request(
            &w.send_key,
            "POST",
            "/v1/messages/batch",
            Some(batch.to_string()),
            None,
        ))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mut received = Vec::new();
    for _ in 0..5 {
        received.extend(w.queued(1).await);
        if received.len() >= count {
            break;
        }
    }
    assert_eq!(received.len(), count);
    received
}

#[tokio::test]
async fn two_workers_handed_the_same_pointer_at_once_send_it_once() {
    let w = World::new().await;
    w.sendgrid.delay(300);
    let api = w.api("sendgrid");
    let received = queued_pointers(&w, &api, 1).await;
    let (a, b) = (w.worker(w.t.clients.clone()), w.worker(w.t.clients.clone()));
    let (first, second) = tokio::join!(
        a.handle(sqs_event(&[&received[0]])),
        b.handle(sqs_event(&[&received[0]]))
    );
    assert!(first.batch_item_failures.is_empty());
    assert!(second.batch_item_failures.is_empty());
    assert_eq!(w.sendgrid.hits(), 1);
    let id = SendQueueMessage::parse(received[0].body().unwrap())
        .unwrap()
        .message_id;
    let got = w.get(&api, id.as_str()).await;
    assert_eq!(got["state"], "sent", "{got}");
    assert_eq!(got["attempts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_message_left_sending_under_an_expired_lease_becomes_unknown_and_is_not_sent() {
    let w = World::new().await;
    let api = w.api("sendgrid");
    let received = queued_pointers(&w, &api, 2).await;
    let ids: Vec<mailgate_core::MessageId> = received
        .iter()
        .map(|r| {
            SendQueueMessage::parse(r.body().unwrap())
                .unwrap()
                .message_id
        })
        .collect();
    let messages = mailgate_aws::DynamoDbMessages::new(
        w.t.clients.dynamodb.clone(),
        w.t.table("MessagesTable"),
    );
    let now = mailgate_core::UnixMillis::from(OffsetDateTime::now_utc());
    // A worker took the first a while ago and died (its lease has lapsed); another holds the
    // second right now.
    assert_eq!(
        messages
            .start_sending(
                &ids[0],
                mailgate_core::UnixMillis(now.as_i64() - 120_000),
                mailgate_core::UnixMillis(now.as_i64() - 60_000)
            )
            .await
            .unwrap(),
        mailgate_aws::SendingClaim::Taken
    );
    assert_eq!(
        messages
            .start_sending(
                &ids[1],
                now,
                mailgate_core::UnixMillis(now.as_i64() + 60_000)
            )
            .await
            .unwrap(),
        mailgate_aws::SendingClaim::Taken
    );

    let worker = w.worker(w.t.clients.clone());
    let done = worker
        .handle(sqs_event(&[&received[0], &received[1]]))
        .await;
    assert!(done.batch_item_failures.is_empty(), "both acknowledged");
    assert_eq!(w.sendgrid.hits(), 0);
    assert_eq!(w.get(&api, ids[0].as_str()).await["state"], "unknown");
    assert_eq!(w.get(&api, ids[1].as_str()).await["state"], "sending");
}

// ---- Nothing accepted is lost or sent twice when a write or the queue fails mid-request ----

/// The stack's sweeper, its clock at `at`, run once.
async fn sweep_at(w: &World, at: OffsetDateTime) -> sweeper::SweepReport {
    sweeper::Sweeper::with_clock(
        sweeper::Config::from_lookup(w.t.function_env("sweeper")).unwrap(),
        w.t.clients.clone(),
        Arc::new(mailgate_core::FixedClock::new(at)),
    )
    .handle(sweeper::ScheduledTick {
        detail_type: "Scheduled Event".to_owned(),
        time: "2026-12-04T12:00:00Z".to_owned(),
    })
    .await
    .unwrap()
}

fn moved(report: &sweeper::SweepReport, job: &str) -> u64 {
    report
        .jobs
        .iter()
        .find(|(name, _)| name == job)
        .map(|(_, n)| *n)
        .unwrap_or_else(|| panic!("no job {job} in {report:?}"))
}

/// Every pointer on the send queue now (received and deleted), as message ids.
async fn drain_pointers(w: &World) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let got = w.queued(0).await;
        if got.is_empty() {
            return ids;
        }
        for m in got {
            ids.push(
                SendQueueMessage::parse(m.body().unwrap())
                    .unwrap()
                    .message_id
                    .as_str()
                    .to_owned(),
            );
            w.t.clients
                .sqs
                .delete_message()
                .queue_url(w.t.queue_url("SendQueue"))
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// Clients through `proxy`, retrying quickly (three attempts, as the SDK's default).
async fn proxied(proxy: &mailgate_fault_proxy::FaultProxy) -> mailgate_aws::AwsClients {
    mailgate_aws::AwsClients::new(&mailgate_tests::sdk_config(&proxy.url()).await)
}

#[tokio::test]
async fn a_batch_whose_enqueue_fails_is_accepted_and_the_sweeper_enqueues_each_message_once() {
    use mailgate_fault_proxy::{Fault, FaultProxy, Op, When};
    let w = World::new().await;
    let proxy = FaultProxy::start(&w.t.endpoint).await.unwrap();
    let api = w.api_with("sendgrid", proxied(&proxy).await);
    proxy.fail(Op::sqs("SendMessageBatch"), Fault::Status503, When::Always);
    let batch = json!({"messages": [message(), message()]}).to_string();
    let post_batch = || {
        request(
            &w.send_key,
            "POST",
            "/v1/messages/batch",
            Some(batch.clone()),
            Some("batch-1"),
        )
    };
    let response = api.handle(post_batch()).await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{:?}",
        response.body()
    );
    assert!(proxy.faults(&Op::sqs("SendMessageBatch")) >= 1);
    let answer = json_body(&response);
    let mut ids: Vec<String> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids.len(), 2);
    assert!(
        drain_pointers(&w).await.is_empty(),
        "nothing reached the queue"
    );

    // The client's retry with the key gets the same ids and creates nothing new.
    proxy.clear_rules();
    let again = api.handle(post_batch()).await;
    assert_eq!(json_body(&again), answer);
    assert!(drain_pointers(&w).await.is_empty());

    // The sweeper, once the check is due, puts each on the send queue once; a second sweep at
    // the same time finds them renewed.
    let later = OffsetDateTime::now_utc() + time::Duration::minutes(6);
    assert_eq!(moved(&sweep_at(&w, later).await, "requeue_stalled"), 2);
    assert_eq!(moved(&sweep_at(&w, later).await, "requeue_stalled"), 0);
    let mut pointers = drain_pointers(&w).await;
    pointers.sort();
    assert_eq!(pointers, ids);
}

#[tokio::test]
async fn a_deferred_send_whose_enqueue_fails_is_accepted_queued_and_enqueued_by_the_sweeper() {
    use mailgate_fault_proxy::{Fault, FaultProxy, Op, When};
    let w = World::new().await;
    w.sendgrid.answer(429);
    let proxy = FaultProxy::start(&w.t.endpoint).await.unwrap();
    let api = w.api_with("sendgrid", proxied(&proxy).await);
    proxy.fail(Op::sqs("SendMessage"), Fault::Status503, When::Always);
    let response = api.handle(post(&w.send_key, &message(), Some("k-1"))).await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{:?}",
        response.body()
    );
    let body = json_body(&response);
    assert_eq!(body["status"], "queued");
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(drain_pointers(&w).await.is_empty());
    proxy.clear_rules();
    // A retry with the key is the same answer: one message.
    let again = api.handle(post(&w.send_key, &message(), Some("k-1"))).await;
    assert_eq!(json_body(&again)["id"], id.as_str());
    // Past the longest queue delay, the sweeper puts it on the queue.
    let later = OffsetDateTime::now_utc() + time::Duration::minutes(21);
    assert_eq!(moved(&sweep_at(&w, later).await, "requeue_stalled"), 1);
    assert_eq!(drain_pointers(&w).await, vec![id]);
}

#[tokio::test]
async fn a_sync_send_whose_function_dies_after_the_provider_call_ends_unknown_and_is_never_resent()
{
    use mailgate_fault_proxy::{Fault, FaultProxy, Service, When};
    let w = World::new().await;
    w.sendgrid.delay(400);
    let proxy = FaultProxy::start(&w.t.endpoint).await.unwrap();
    let api = w.api_with("sendgrid", proxied(&proxy).await);
    // DynamoDB goes away while the provider holds the call: nothing after it is recorded,
    // as when the function dies there.
    let first = {
        let send = api.handle(post(&w.send_key, &message(), Some("k-dies")));
        let cut = async {
            while w.sendgrid.hits() == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            proxy.fail(Service::DynamoDb, Fault::Status503, When::Always);
        };
        tokio::join!(send, cut).0
    };
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let id = json_body(&first)["id"].as_str().unwrap().to_owned();
    proxy.clear_rules();
    assert_eq!(w.get(&api, &id).await["state"], "sending");

    // The key's claim lapses (its record is gone); the client retries with the key.
    let table = w.t.table("IdempotencyTable");
    let items =
        w.t.clients
            .dynamodb
            .scan()
            .table_name(&table)
            .send()
            .await
            .unwrap();
    for item in items.items() {
        w.t.clients
            .dynamodb
            .delete_item()
            .table_name(&table)
            .key("pk", item["pk"].clone())
            .send()
            .await
            .unwrap();
    }
    let retry = api
        .handle(post(&w.send_key, &message(), Some("k-dies")))
        .await;
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    assert_eq!(json_body(&retry)["id"], id.as_str(), "the same message");
    assert_eq!(w.sendgrid.hits(), 1, "never sent twice");

    // Once its lease lapsed, the sweeper makes it visibly unknown, counted as such.
    let later = OffsetDateTime::now_utc() + time::Duration::minutes(2);
    assert_eq!(moved(&sweep_at(&w, later).await, "abandon_lapsed"), 1);
    let got = w.get(&api, &id).await;
    assert_eq!(got["state"], "unknown");
    assert!(
        got["state_reason"]
            .as_str()
            .is_some_and(|r| r.contains("lease")),
        "the API says why: {got}"
    );
    assert_eq!(moved(&sweep_at(&w, later).await, "abandon_lapsed"), 0);
    assert!(drain_pointers(&w).await.is_empty());
    assert_eq!(w.sendgrid.hits(), 1);
}

/// Every item of the messages table whose key starts with `prefix`.
async fn message_items(
    w: &World,
    prefix: &str,
) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let out =
        w.t.clients
            .dynamodb
            .scan()
            .table_name(w.t.table("MessagesTable"))
            .send()
            .await
            .unwrap();
    out.items()
        .iter()
        .filter(|i| i["pk"].as_s().unwrap().starts_with(prefix))
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_item_of_a_message_expires_with_its_retention_and_a_lost_claim_leaves_no_parts() {
    let w = World::new().await;
    let api = w.api("sendgrid");
    // Over the inline limit: the content is stored in parts.
    let mut big = message();
    big["text"] = json!("x".repeat(400 * 1024));
    let response = api.handle(post(&w.send_key, &big, Some("big-1"))).await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "{:?}",
        response.body()
    );
    let id = json_body(&response)["id"].as_str().unwrap().to_owned();
    let items = message_items(&w, &format!("msg#{id}")).await;
    assert!(
        items.len() >= 4,
        "summary, content, parts, attempt: {}",
        items.len()
    );
    let created = OffsetDateTime::now_utc().unix_timestamp();
    for item in &items {
        let expires: i64 = item
            .get("expires_at")
            .unwrap_or_else(|| panic!("no expires_at on {:?}", item["sk"]))
            .as_n()
            .unwrap()
            .parse()
            .unwrap();
        let days = (expires - created) as f64 / 86_400.0;
        assert!(
            (89.9..=90.1).contains(&days),
            "{:?}: {days} days",
            item["sk"]
        );
    }

    // The same key with another large body: refused (422), and the parts it wrote first are
    // taken back.
    let before = message_items(&w, "msg#").await.len();
    let mut other = big.clone();
    other["subject"] = json!("Another");
    let refused = api.handle(post(&w.send_key, &other, Some("big-1"))).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        message_items(&w, "msg#").await.len(),
        before,
        "no orphaned parts"
    );
}
