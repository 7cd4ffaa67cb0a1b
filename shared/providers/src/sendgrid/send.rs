//! Sending through SendGrid v3 `POST /v3/mail/send`: the request mapping and the error mapping.
//!
//! One personalization carries every recipient; our id travels as `custom_args.mailgate_message_id`
//! (echoed in every event) and as the `X-Mailgate-Message-Id` header. Success is `202 Accepted`
//! with an empty body and the provider id in the `X-Message-Id` header.
//!
//! | answer | category | outcome |
//! |---|---|---|
//! | 2xx with `X-Message-Id` | accepted | — |
//! | 2xx without `X-Message-Id` | unknown | ambiguous (accepted, but uncorrelatable) |
//! | 400 whose `errors[].field` is a recipient (`personalizations…to/cc/bcc…`) | invalid_recipient | permanent |
//! | other 400 | content_rejected | permanent |
//! | 401, 403 | authentication | failover |
//! | 404, 405 | configuration_error | failover |
//! | 413 | content_rejected | failover |
//! | 429 (`Retry-After`, else `X-RateLimit-Reset`) | rate_limit | throttled |
//! | 5xx | service_unavailable | failover (504: ambiguous) |

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use http::StatusCode;
use mailgate_core::{
    CORRELATION_ID_METADATA_KEY, ErrorCategory, MESSAGE_ID_METADATA_KEY, OutboundEmail, ProviderId,
    SendFailure,
};
use serde_json::{Map, Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::send::{
    Accepted, Answer, EmailProvider, HttpClientError, HttpTimeouts, Secret, endpoint, execute,
    header_str, http_client, until,
};

/// The global API host.
pub const DEFAULT_BASE_URL: &str = "https://api.sendgrid.com";
/// The host for EU-pinned subusers.
pub const EU_BASE_URL: &str = "https://api.eu.sendgrid.com";
/// The response header carrying SendGrid's message id.
pub const MESSAGE_ID_RESPONSE_HEADER: &str = "x-message-id";
/// SendGrid accepts at most this many categories per message.
pub const MAX_CATEGORIES: usize = 10;

/// How to reach SendGrid.
#[derive(Debug, Clone)]
pub struct SendgridConfig {
    /// `https://api.sendgrid.com`, the EU host, or a local test server.
    pub base_url: String,
    /// The API key (`SG.…`), sent as a Bearer token.
    pub api_key: Secret,
    /// Connect and request timeouts.
    pub timeouts: HttpTimeouts,
}

impl SendgridConfig {
    /// The global host with default timeouts.
    pub fn new(api_key: Secret) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key,
            timeouts: HttpTimeouts::default(),
        }
    }
}

/// Sends through SendGrid's v3 Mail Send API.
#[derive(Debug, Clone)]
pub struct SendgridSender {
    client: crate::http_client::LazyHttpClient,
    config: SendgridConfig,
}

impl SendgridSender {
    /// A sender with its own HTTP client built from the configured timeouts.
    pub fn new(config: SendgridConfig) -> Result<Self, HttpClientError> {
        Ok(Self {
            client: http_client(&config.timeouts)?,
            config,
        })
    }

    async fn send_email(&self, email: &OutboundEmail) -> Result<Accepted, SendFailure> {
        let request = crate::send::ready(&self.client)?
            .post(endpoint(&self.config.base_url, "/v3/mail/send"))
            .bearer_auth(self.config.api_key.expose())
            .json(&request_body(email));
        let answer = execute(request).await?;
        interpret(&answer, SystemTime::now())
    }
}

impl EmailProvider for SendgridSender {
    fn id(&self) -> ProviderId {
        ProviderId::Sendgrid
    }

    fn send<'a>(
        &'a self,
        email: &'a OutboundEmail,
    ) -> BoxFuture<'a, Result<Accepted, SendFailure>> {
        Box::pin(self.send_email(email))
    }
}

fn address(email: &str) -> Value {
    json!({ "email": email })
}

/// The JSON body of `POST /v3/mail/send` for `email`.
pub fn request_body(email: &OutboundEmail) -> Value {
    let mut personalization = Map::new();
    for (key, list) in [("to", &email.to), ("cc", &email.cc), ("bcc", &email.bcc)] {
        if !list.is_empty() {
            personalization.insert(
                key.to_owned(),
                list.iter().map(|a| address(a.as_str())).collect(),
            );
        }
    }

    let mut from = Map::new();
    from.insert("email".into(), email.from.address.as_str().into());
    if let Some(name) = &email.from.name {
        from.insert("name".into(), name.as_str().into());
    }

    // text/plain must come before text/html.
    let mut content = Vec::new();
    if let Some(text) = &email.text {
        content.push(json!({ "type": "text/plain", "value": text }));
    }
    if let Some(html) = &email.html {
        content.push(json!({ "type": "text/html", "value": html }));
    }

    let mut headers: Map<String, Value> = email
        .headers_with_message_id()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into()))
        .collect();
    // SendGrid keeps a caller's Message-ID in the delivered mail: replies thread by it.
    headers.insert("Message-ID".into(), email.rfc_message_id().into());

    // Caller metadata first, so our id wins a clash.
    let mut custom_args: Map<String, Value> = email
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().into()))
        .collect();
    custom_args.insert(
        MESSAGE_ID_METADATA_KEY.to_owned(),
        email.message_id.as_str().into(),
    );
    if let Some(correlation_id) = &email.correlation_id {
        custom_args.insert(
            CORRELATION_ID_METADATA_KEY.to_owned(),
            correlation_id.as_str().into(),
        );
    }

    let mut body = Map::new();
    body.insert(
        "personalizations".into(),
        Value::Array(vec![Value::Object(personalization)]),
    );
    body.insert("from".into(), Value::Object(from));
    if let Some(reply_to) = &email.reply_to {
        body.insert("reply_to".into(), address(reply_to.as_str()));
    }
    body.insert("subject".into(), email.subject.as_str().into());
    body.insert("content".into(), Value::Array(content));
    if !email.attachments.is_empty() {
        let attachments = email
            .attachments
            .iter()
            .map(|a| {
                json!({
                    "content": STANDARD.encode(&a.content),
                    "type": a.content_type,
                    "filename": a.filename,
                    "disposition": "attachment",
                })
            })
            .collect();
        body.insert("attachments".into(), Value::Array(attachments));
    }
    body.insert("headers".into(), Value::Object(headers));
    if !email.tags.is_empty() {
        let categories = email
            .tags
            .iter()
            .take(MAX_CATEGORIES)
            .map(|t| Value::from(t.as_str()))
            .collect();
        body.insert("categories".into(), Value::Array(categories));
    }
    body.insert("custom_args".into(), Value::Object(custom_args));
    Value::Object(body)
}

/// Reads SendGrid's answer: the message id of a success, or the evidence of a failure.
pub(crate) fn interpret(answer: &Answer, now: SystemTime) -> Result<Accepted, SendFailure> {
    if answer.status.is_success() {
        return match header_str(&answer.headers, MESSAGE_ID_RESPONSE_HEADER) {
            Some(id) if !id.is_empty() => Ok(Accepted {
                provider_message_id: id.to_owned(),
            }),
            // Accepted, but we cannot correlate it: the generic rule makes it ambiguous.
            _ => Err(SendFailure::http(answer.status.as_u16())),
        };
    }
    Err(failure(answer, now))
}

/// SendGrid's error mapping: the documented status table, refined by the `errors[].field` of a
/// 400, and `X-RateLimit-Reset` (epoch seconds) when a 429 has no `Retry-After`.
pub(crate) fn failure(answer: &Answer, now: SystemTime) -> SendFailure {
    let mut failure = answer.failure();
    let fields = error_fields(&answer.body);
    if let Some(first) = fields.first() {
        failure = failure.with_provider_code(first.clone());
    }
    if answer.status == StatusCode::BAD_REQUEST && fields.iter().any(|f| is_recipient_field(f)) {
        failure = failure.with_category(ErrorCategory::InvalidRecipient);
    }
    if answer.status == StatusCode::TOO_MANY_REQUESTS
        && failure.retry_after.is_none()
        && let Some(reset) =
            header_str(&answer.headers, "x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok())
    {
        failure = failure.with_retry_after(until(UNIX_EPOCH + Duration::from_secs(reset), now));
    }
    failure
}

/// The `field` of every entry of `{"errors": [{"message", "field", "help"}]}`.
fn error_fields(body: &[u8]) -> Vec<String> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("errors").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.get("field").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// `personalizations.0.to.1.email`, `personalizations.0.bcc`, …: a recipient field.
fn is_recipient_field(field: &str) -> bool {
    let mut parts = field.split('.');
    parts.next() == Some("personalizations") && parts.any(|p| matches!(p, "to" | "cc" | "bcc"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};
    use mailgate_core::{Attachment, EmailAddress, Mailbox, MessageId, OutcomeClass};

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
        e.cc.push(addr("cc@example.org"));
        e.reply_to = Some(addr("support@example.com"));
        e.text = Some("plain".into());
        e.html = Some("<p>html</p>".into());
        e.headers.push(("X-Campaign".into(), "spring".into()));
        e.attachments.push(Attachment {
            filename: "a.txt".into(),
            content_type: "text/plain".into(),
            content: b"hello".to_vec(),
        });
        e.tags = (0..12).map(|i| format!("t{i}")).collect();
        e.metadata.insert("order".into(), "42".into());
        e
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: h,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_body_carries_recipients_content_and_our_id() {
        let mut e = email();
        e.correlation_id = Some("order 42".into());
        let body = request_body(&e);
        let id = e.message_id.as_str();
        assert_eq!(
            body["personalizations"],
            json!([{ "to": [{"email": "jane@example.org"}], "cc": [{"email": "cc@example.org"}] }])
        );
        assert_eq!(
            body["from"],
            json!({"email": "news@example.com", "name": "Example News"})
        );
        assert_eq!(body["reply_to"], json!({"email": "support@example.com"}));
        assert_eq!(body["subject"], "Hello");
        assert_eq!(
            body["content"],
            json!([{"type": "text/plain", "value": "plain"}, {"type": "text/html", "value": "<p>html</p>"}])
        );
        assert_eq!(
            body["attachments"],
            json!([{"content": "aGVsbG8=", "type": "text/plain", "filename": "a.txt", "disposition": "attachment"}])
        );
        assert_eq!(
            body["headers"],
            json!({
                "X-Campaign": "spring",
                "X-Mailgate-Message-Id": id,
                "Message-ID": format!("<{id}@example.com>"),
            })
        );
        assert_eq!(
            body["custom_args"],
            json!({"order": "42", "mailgate_message_id": id, "mailgate_correlation_id": "order 42"})
        );
        assert_eq!(body["categories"].as_array().unwrap().len(), MAX_CATEGORIES);
    }

    #[test]
    fn a_minimal_message_omits_empty_lists() {
        let mut e = email();
        e.cc.clear();
        e.attachments.clear();
        e.tags.clear();
        e.reply_to = None;
        e.html = None;
        let body = request_body(&e);
        assert!(body["personalizations"][0].get("cc").is_none());
        assert!(body.get("attachments").is_none());
        assert!(body.get("categories").is_none());
        assert!(body.get("reply_to").is_none());
        assert_eq!(body["content"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_202_yields_the_x_message_id() {
        let a = answer(202, &[("x-message-id", "abc123")], "");
        assert_eq!(
            interpret(&a, SystemTime::now())
                .unwrap()
                .provider_message_id,
            "abc123"
        );
        let missing = interpret(&answer(202, &[], ""), SystemTime::now()).unwrap_err();
        assert_eq!(missing.classify().outcome, OutcomeClass::Ambiguous);
    }

    #[test]
    fn error_codes_map_to_categories() {
        let now = SystemTime::now();
        let cases = [
            (
                400,
                r#"{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email"}]}"#,
                ErrorCategory::InvalidRecipient,
                OutcomeClass::Permanent,
            ),
            (
                400,
                r#"{"errors":[{"message":"The subject is required.","field":"subject"}]}"#,
                ErrorCategory::ContentRejected,
                OutcomeClass::Permanent,
            ),
            (
                401,
                r#"{"errors":[{"message":"The provided authorization grant is invalid, expired, or revoked","field":null}]}"#,
                ErrorCategory::Authentication,
                OutcomeClass::Failover,
            ),
            (
                403,
                r#"{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from"}]}"#,
                ErrorCategory::Authentication,
                OutcomeClass::Failover,
            ),
            (
                413,
                "",
                ErrorCategory::ContentRejected,
                OutcomeClass::Failover,
            ),
            (
                500,
                "oops",
                ErrorCategory::ServiceUnavailable,
                OutcomeClass::Failover,
            ),
        ];
        for (status, body, category, outcome) in cases {
            let c = failure(&answer(status, &[], body), now).classify();
            assert_eq!(
                (c.category, c.outcome),
                (category, outcome),
                "{status} {body}"
            );
        }
    }

    #[test]
    fn a_429_waits_for_the_rate_limit_reset() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let f = failure(&answer(429, &[("x-ratelimit-reset", "1012")], ""), now);
        let c = f.classify();
        assert_eq!(c.category, ErrorCategory::RateLimit);
        assert_eq!(c.retry_after, Some(Duration::from_secs(12)));
        // Retry-After wins when both are present.
        let f = failure(
            &answer(
                429,
                &[("retry-after", "3"), ("x-ratelimit-reset", "1012")],
                "",
            ),
            now,
        );
        assert_eq!(f.retry_after, Some(Duration::from_secs(3)));
    }

    #[test]
    fn recipient_fields_are_recognised() {
        assert!(is_recipient_field("personalizations.0.to.0.email"));
        assert!(is_recipient_field("personalizations.0.bcc"));
        assert!(!is_recipient_field("personalizations.0.subject"));
        assert!(!is_recipient_field("from.email"));
    }
}
