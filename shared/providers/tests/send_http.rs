#![allow(clippy::unwrap_used)]
//! The provider send clients against local HTTP servers that answer as PROVIDERS.md documents:
//! success bodies, error bodies, 429 with `Retry-After`, 5xx, a server that accepts the request
//! and then sleeps past the client timeout, and a closed port.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Bytes, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mailgate_core::{
    Attachment, EmailAddress, ErrorCategory, Mailbox, MessageId, OutboundEmail, OutcomeClass,
    ProviderId, SendFailure, TransportFault,
};
use mailgate_providers::mailgun::send::{MailgunConfig, MailgunRegion, MailgunSender};
use mailgate_providers::postmark::send::{PostmarkConfig, PostmarkSender};
use mailgate_providers::send::{EmailProvider, HttpTimeouts, Secret};
use mailgate_providers::sendgrid::send::{SendgridConfig, SendgridSender};
use mailgate_providers::ses::send::{SesConfig, SesSender};
use mailgate_providers::smtp2go::send::{Smtp2goConfig, Smtp2goSender};
use serde_json::Value;

const KEY: &str = "test-key-123";

/// What the fake provider answers.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
    delay: Duration,
}

fn reply(status: u16, body: &'static str) -> Reply {
    Reply {
        status,
        headers: vec![("content-type", "application/json")],
        body,
        delay: Duration::ZERO,
    }
}

/// A request the fake provider received.
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Serves `reply` to every request on 127.0.0.1:0; returns the base URL and the request log.
async fn serve(reply: Reply) -> (String, Log) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let reply = reply.clone();
        let seen = seen.clone();
        async move {
            let path = req.uri().path().to_owned();
            let headers = req.headers().clone();
            let body = to_bytes(req.into_body(), usize::MAX).await.unwrap();
            seen.lock().unwrap().push(Seen {
                path,
                headers,
                body,
            });
            tokio::time::sleep(reply.delay).await;
            let mut response: Response = (
                StatusCode::from_u16(reply.status).unwrap(),
                reply.body.to_owned(),
            )
                .into_response();
            for (k, v) in reply.headers {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(k), HeaderValue::from_static(v));
            }
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), log)
}

/// A base URL nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn timeouts() -> HttpTimeouts {
    HttpTimeouts {
        connect: Duration::from_secs(2),
        request: Duration::from_millis(400),
    }
}

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

fn email() -> OutboundEmail {
    let mut e = OutboundEmail::new(
        MessageId::generate(),
        Mailbox::named(addr("news@example.com"), "Example News"),
        addr("jane@example.org"),
        "Hello",
    );
    e.text = Some("Hi Jane".into());
    e.metadata.insert("order".into(), "42".into());
    e
}

fn sender(provider: ProviderId, base_url: &str) -> Box<dyn EmailProvider> {
    match provider {
        ProviderId::Sendgrid => Box::new(
            SendgridSender::new(SendgridConfig {
                base_url: base_url.to_owned(),
                api_key: Secret::new(KEY),
                timeouts: timeouts(),
            })
            .unwrap(),
        ),
        ProviderId::Mailgun => {
            let mut config =
                MailgunConfig::new(MailgunRegion::Us, "mg.example.com", Secret::new(KEY));
            config.base_url = base_url.to_owned();
            config.timeouts = timeouts();
            Box::new(MailgunSender::new(config).unwrap())
        }
        ProviderId::Postmark => {
            let mut config = PostmarkConfig::new(Secret::new(KEY));
            config.base_url = base_url.to_owned();
            config.timeouts = timeouts();
            Box::new(PostmarkSender::new(config).unwrap())
        }
        ProviderId::Smtp2go => {
            let mut config = Smtp2goConfig::new(Secret::new(KEY));
            config.base_url = base_url.to_owned();
            config.timeouts = timeouts();
            Box::new(Smtp2goSender::new(config).unwrap())
        }
        ProviderId::Ses => Box::new(SesSender::new(ses_client(base_url), SesConfig::default())),
        ProviderId::Simulator => unreachable!("the simulator sends nothing over HTTP"),
    }
}

fn ses_client(base_url: &str) -> aws_sdk_sesv2::Client {
    use aws_sdk_sesv2::config::timeout::TimeoutConfig;
    use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_sesv2::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(base_url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeouts().connect)
                .read_timeout(timeouts().request)
                .build(),
        )
        .build();
    aws_sdk_sesv2::Client::from_conf(config)
}

async fn send(provider: ProviderId, reply: Reply) -> (Result<String, SendFailure>, Log) {
    let (url, log) = serve(reply).await;
    let result = sender(provider, &url).send(&email()).await;
    (result.map(|a| a.provider_message_id), log)
}

/// The documented success answer of each provider.
fn success(provider: ProviderId) -> Reply {
    match provider {
        ProviderId::Sendgrid => Reply {
            status: 202,
            headers: vec![("x-message-id", "sg-abc123")],
            body: "",
            delay: Duration::ZERO,
        },
        ProviderId::Mailgun => reply(
            200,
            r#"{"id": "<20111114174239.25659.5817@samples.mailgun.org>", "message": "Queued. Thank you."}"#,
        ),
        ProviderId::Postmark => reply(
            200,
            r#"{"To": "jane@example.org", "SubmittedAt": "2014-02-17T07:25:01.4178645-05:00", "MessageID": "0a129aee-e1cd-480d-b08d-4f48548ff48d", "ErrorCode": 0, "Message": "OK"}"#,
        ),
        ProviderId::Smtp2go => reply(
            200,
            r#"{"request_id": "aa253464-0bd0-467a-b24b-6159dcd7be60", "data": {"succeeded": 1, "failed": 0, "failures": [], "email_id": "1er8bV-6Tw0Mi-7h"}}"#,
        ),
        ProviderId::Ses => reply(200, r#"{"MessageId": "ses-1"}"#),
        ProviderId::Simulator => unreachable!("the simulator sends nothing over HTTP"),
    }
}

/// Each provider's documented 400-class error for a bad request, and the category it means.
fn bad_request(provider: ProviderId) -> (Reply, ErrorCategory) {
    match provider {
        ProviderId::Sendgrid => (
            reply(
                400,
                r#"{"errors": [{"message": "Does not contain a valid address.", "field": "personalizations.0.to.0.email", "help": null}]}"#,
            ),
            ErrorCategory::InvalidRecipient,
        ),
        ProviderId::Mailgun => (
            reply(
                400,
                r#"{"message": "'from' parameter is not a valid address. please check documentation"}"#,
            ),
            ErrorCategory::ContentRejected,
        ),
        ProviderId::Postmark => (
            reply(
                422,
                r#"{"ErrorCode": 300, "Message": "Invalid email request"}"#,
            ),
            ErrorCategory::ContentRejected,
        ),
        ProviderId::Smtp2go => (
            reply(
                400,
                r#"{"request_id": "r1", "data": {"error": "Invalid value", "error_code": "E_ApiResponseCodes.NON_VALIDATING_IN_PAYLOAD", "field_validation_errors": {"fieldname": "sender"}}}"#,
            ),
            ErrorCategory::ContentRejected,
        ),
        ProviderId::Ses => unreachable!("SES errors are tested against moto"),
        ProviderId::Simulator => unreachable!("the simulator sends nothing over HTTP"),
    }
}

const HTTP_PROVIDERS: [ProviderId; 4] = [
    ProviderId::Sendgrid,
    ProviderId::Mailgun,
    ProviderId::Postmark,
    ProviderId::Smtp2go,
];

#[tokio::test]
async fn every_provider_returns_its_message_id_on_success() {
    let expected = [
        (ProviderId::Sendgrid, "sg-abc123"),
        (
            ProviderId::Mailgun,
            "20111114174239.25659.5817@samples.mailgun.org",
        ),
        (ProviderId::Postmark, "0a129aee-e1cd-480d-b08d-4f48548ff48d"),
        (ProviderId::Smtp2go, "1er8bV-6Tw0Mi-7h"),
    ];
    for (provider, id) in expected {
        let (result, log) = send(provider, success(provider)).await;
        assert_eq!(result.unwrap(), id, "{provider}");
        assert_eq!(log.lock().unwrap().len(), 1, "{provider}");
    }
}

#[tokio::test]
async fn sendgrid_request_carries_bearer_key_and_our_id() {
    let (url, log) = serve(success(ProviderId::Sendgrid)).await;
    let e = email();
    sender(ProviderId::Sendgrid, &url).send(&e).await.unwrap();
    let log = log.lock().unwrap();
    let seen = &log[0];
    assert_eq!(seen.path, "/v3/mail/send");
    assert_eq!(seen.headers["authorization"], format!("Bearer {KEY}"));
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body["custom_args"]["mailgate_message_id"],
        e.message_id.as_str()
    );
    assert_eq!(
        body["headers"]["X-Mailgate-Message-Id"],
        e.message_id.as_str()
    );
}

#[tokio::test]
async fn mailgun_request_is_a_multipart_form_with_basic_auth() {
    let (url, log) = serve(success(ProviderId::Mailgun)).await;
    let mut e = email();
    e.attachments.push(Attachment {
        filename: "report.csv".into(),
        content_type: "text/csv".into(),
        content: b"a,b\n1,2\n".to_vec(),
    });
    sender(ProviderId::Mailgun, &url).send(&e).await.unwrap();
    let log = log.lock().unwrap();
    let seen = &log[0];
    assert_eq!(seen.path, "/v3/mg.example.com/messages");
    // base64("api:test-key-123")
    assert_eq!(
        seen.headers["authorization"],
        "Basic YXBpOnRlc3Qta2V5LTEyMw=="
    );
    let content_type = seen.headers["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("multipart/form-data"),
        "{content_type}"
    );
    let body = String::from_utf8_lossy(&seen.body);
    for needle in [
        "name=\"v:mailgate_message_id\"",
        "name=\"h:X-Mailgate-Message-Id\"",
        e.message_id.as_str(),
        "name=\"attachment\"; filename=\"report.csv\"",
        "a,b\n1,2\n",
    ] {
        assert!(body.contains(needle), "{needle} in {body}");
    }
}

#[tokio::test]
async fn postmark_request_carries_server_token_and_metadata() {
    let (url, log) = serve(success(ProviderId::Postmark)).await;
    let e = email();
    sender(ProviderId::Postmark, &url).send(&e).await.unwrap();
    let log = log.lock().unwrap();
    let seen = &log[0];
    assert_eq!(seen.path, "/email");
    assert_eq!(seen.headers["x-postmark-server-token"], KEY);
    assert_eq!(seen.headers["accept"], "application/json");
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body["Metadata"]["mailgate_message_id"],
        e.message_id.as_str()
    );
    assert_eq!(body["Metadata"]["order"], "42");
}

#[tokio::test]
async fn smtp2go_request_carries_api_key_header_and_our_id_header() {
    let (url, log) = serve(success(ProviderId::Smtp2go)).await;
    let e = email();
    sender(ProviderId::Smtp2go, &url).send(&e).await.unwrap();
    let log = log.lock().unwrap();
    let seen = &log[0];
    assert_eq!(seen.path, "/v3/email/send");
    assert_eq!(seen.headers["x-smtp2go-api-key"], KEY);
    let body: Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        body["custom_headers"][0],
        serde_json::json!({"header": "X-Mailgate-Message-Id", "value": e.message_id.as_str()})
    );
}

#[tokio::test]
async fn unauthorized_is_an_authentication_failure_that_fails_over() {
    let bodies = [
        (
            ProviderId::Sendgrid,
            r#"{"errors": [{"message": "The provided authorization grant is invalid, expired, or revoked", "field": null, "help": null}]}"#,
        ),
        (ProviderId::Mailgun, "Forbidden"),
        (
            ProviderId::Postmark,
            r#"{"ErrorCode": 10, "Message": "No Account or Server API tokens were supplied in the HTTP headers."}"#,
        ),
        (
            ProviderId::Smtp2go,
            r#"{"request_id": "r", "data": {"error": "Invalid API key", "error_code": "E_ApiResponseCodes.API_KEY_INVALID"}}"#,
        ),
    ];
    for (provider, body) in bodies {
        let (result, _) = send(provider, reply(401, body)).await;
        let c = result.unwrap_err().classify();
        assert_eq!(c.category, ErrorCategory::Authentication, "{provider}");
        assert_eq!(c.outcome, OutcomeClass::Failover, "{provider}");
    }
}

#[tokio::test]
async fn too_many_requests_is_throttled_with_retry_after() {
    for provider in HTTP_PROVIDERS {
        let mut r = reply(429, r#"{"message": "rate limited", "ErrorCode": 429}"#);
        r.headers.push(("retry-after", "17"));
        let (result, _) = send(provider, r).await;
        let c = result.unwrap_err().classify();
        assert_eq!(c.category, ErrorCategory::RateLimit, "{provider}");
        assert_eq!(c.outcome, OutcomeClass::Throttled, "{provider}");
        assert_eq!(c.retry_after, Some(Duration::from_secs(17)), "{provider}");
    }
}

#[tokio::test]
async fn a_server_error_fails_over() {
    for provider in HTTP_PROVIDERS {
        let (result, _) = send(provider, reply(500, "Internal Server Error")).await;
        let c = result.unwrap_err().classify();
        assert_eq!(c.category, ErrorCategory::ServiceUnavailable, "{provider}");
        assert_eq!(c.outcome, OutcomeClass::Failover, "{provider}");
    }
}

#[tokio::test]
async fn a_documented_bad_request_is_permanent() {
    for provider in HTTP_PROVIDERS {
        let (r, category) = bad_request(provider);
        let (result, _) = send(provider, r).await;
        let c = result.unwrap_err().classify();
        assert_eq!(c.category, category, "{provider}");
        assert_eq!(c.outcome, OutcomeClass::Permanent, "{provider}");
    }
}

#[tokio::test]
async fn a_timeout_after_the_request_left_is_ambiguous() {
    for provider in HTTP_PROVIDERS.into_iter().chain([ProviderId::Ses]) {
        let mut r = success(provider);
        r.delay = Duration::from_secs(3);
        let (result, log) = send(provider, r).await;
        let failure = result.unwrap_err();
        assert_eq!(
            failure.transport,
            Some(TransportFault::TimeoutAfterSend),
            "{provider}: {failure:?}"
        );
        let c = failure.classify();
        assert_eq!(c.category, ErrorCategory::Unknown, "{provider}");
        assert_eq!(c.outcome, OutcomeClass::Ambiguous, "{provider}");
        // The provider did receive it: exactly once (no client-side retry).
        assert_eq!(log.lock().unwrap().len(), 1, "{provider}");
    }
}

#[tokio::test]
async fn a_closed_port_is_a_connect_failure_that_fails_over() {
    for provider in HTTP_PROVIDERS.into_iter().chain([ProviderId::Ses]) {
        let failure = sender(provider, &closed_port())
            .send(&email())
            .await
            .unwrap_err();
        assert_eq!(
            failure.transport,
            Some(TransportFault::Connect),
            "{provider}: {failure:?}"
        );
        let c = failure.classify();
        assert_eq!(c.category, ErrorCategory::NetworkError, "{provider}");
        assert_eq!(c.outcome, OutcomeClass::Failover, "{provider}");
    }
}

#[tokio::test]
async fn smtp2go_200_with_a_failed_recipient_is_a_failure() {
    let (result, _) = send(
        ProviderId::Smtp2go,
        reply(
            200,
            r#"{"request_id": "r", "data": {"succeeded": 0, "failed": 1, "failures": ["jane@example.org"], "email_id": "1er8bV-6Tw0Mi-7h"}}"#,
        ),
    )
    .await;
    let c = result.unwrap_err().classify();
    assert_eq!(c.category, ErrorCategory::InvalidRecipient);
    assert_eq!(c.outcome, OutcomeClass::Permanent);
}

#[tokio::test]
async fn postmark_inactive_recipient_is_invalid_recipient() {
    let (result, _) = send(
        ProviderId::Postmark,
        reply(
            422,
            r#"{"ErrorCode": 406, "Message": "You tried to send to recipients that have all been marked as inactive. Inactive recipients are ones that have generated a hard bounce or a spam complaint."}"#,
        ),
    )
    .await;
    let failure = result.unwrap_err();
    assert_eq!(failure.status, Some(422));
    assert_eq!(failure.provider_code.as_deref(), Some("406"));
    let c = failure.classify();
    assert_eq!(c.category, ErrorCategory::InvalidRecipient);
    assert_eq!(c.outcome, OutcomeClass::Permanent);
}

#[tokio::test]
async fn ses_throttling_from_the_wire_is_a_rate_limit() {
    let mut r = reply(429, r#"{"message": "Maximum sending rate exceeded."}"#);
    r.headers
        .push(("x-amzn-errortype", "TooManyRequestsException"));
    let (result, log) = send(ProviderId::Ses, r).await;
    let failure = result.unwrap_err();
    assert_eq!(
        failure.provider_code.as_deref(),
        Some("TooManyRequestsException")
    );
    assert_eq!(failure.classify().outcome, OutcomeClass::Throttled);
    // SDK retries are off: the send path owns retries.
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn secrets_do_not_leak_through_debug() {
    let config = SendgridConfig::new(Secret::new(KEY));
    let sender = SendgridSender::new(config).unwrap();
    assert!(!format!("{sender:?}").contains(KEY));
}
