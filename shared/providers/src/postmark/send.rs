//! Sending through Postmark `POST /email`: the request mapping and the error mapping.
//!
//! The body is PascalCase JSON authenticated by `X-Postmark-Server-Token`. Our id travels in
//! `Metadata.mailgate_message_id` (echoed in every webhook) and as the `X-Mailgate-Message-Id`
//! header. Success is `200 {"MessageID": …, "ErrorCode": 0, "Message": "OK"}`; every answer is
//! checked for a non-zero `ErrorCode`, whatever its status. No `Message-ID` of ours is sent:
//! Postmark generates its own and ignores a caller's, so replies to Postmark sends thread by
//! `track_replies` reply addresses (docs/inbound.md).
//!
//! | `ErrorCode` (any status) | meaning | category | outcome |
//! |---|---|---|---|
//! | 10 | bad or missing server token | authentication | failover |
//! | 100 | maintenance | service_unavailable | failover |
//! | 300, 402, 403, 409, 410, 411 | invalid request / JSON, forbidden attachment type | content_rejected | permanent |
//! | 400, 401 | sender signature not found / not confirmed | configuration_error | failover |
//! | 412, 413 | account pending / may not send | configuration_error | failover |
//! | 405 | not allowed to send (credits used up) | quota_exceeded | failover |
//! | 406 | inactive recipient (bounced, complained, unsubscribed) | invalid_recipient | permanent |
//! | 429 | rate limit exceeded | rate_limit | throttled |
//! | none or other | — | by HTTP status (401 authentication, 422 content_rejected, 429 rate_limit, 5xx service_unavailable; a non-JSON edge 403 is authentication) | |

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use mailgate_core::{
    CORRELATION_ID_METADATA_KEY, ErrorCategory, MESSAGE_ID_METADATA_KEY, MessageCategory,
    OutboundEmail, ProviderId, SendFailure,
};
use serde_json::{Map, Value, json};

use crate::send::{
    Accepted, Answer, EmailProvider, HttpClientError, HttpTimeouts, Secret, endpoint, execute,
    http_client,
};

/// Postmark's API host.
pub const DEFAULT_BASE_URL: &str = "https://api.postmarkapp.com";
/// The header carrying the server token.
pub const SERVER_TOKEN_HEADER: &str = "X-Postmark-Server-Token";

/// How to reach Postmark.
#[derive(Debug, Clone)]
pub struct PostmarkConfig {
    /// `https://api.postmarkapp.com` or a local test server.
    pub base_url: String,
    /// The server token.
    pub server_token: Secret,
    /// The message stream for `bulk` messages (a broadcast stream); `None` sends everything
    /// through the server's default transactional stream.
    pub bulk_message_stream: Option<String>,
    /// Connect and request timeouts.
    pub timeouts: HttpTimeouts,
}

impl PostmarkConfig {
    /// Postmark's host with default timeouts and the default stream.
    pub fn new(server_token: Secret) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            server_token,
            bulk_message_stream: None,
            timeouts: HttpTimeouts::default(),
        }
    }
}

/// Sends through Postmark's Email API.
#[derive(Debug, Clone)]
pub struct PostmarkSender {
    client: crate::http_client::LazyHttpClient,
    config: PostmarkConfig,
}

impl PostmarkSender {
    /// A sender with its own HTTP client built from the configured timeouts.
    pub fn new(config: PostmarkConfig) -> Result<Self, HttpClientError> {
        Ok(Self {
            client: http_client(&config.timeouts)?,
            config,
        })
    }

    async fn send_email(&self, email: &OutboundEmail) -> Result<Accepted, SendFailure> {
        let body = request_body(email, self.config.bulk_message_stream.as_deref());
        let request = crate::send::ready(&self.client)?
            .post(endpoint(&self.config.base_url, "/email"))
            .header(SERVER_TOKEN_HEADER, self.config.server_token.expose())
            .header(http::header::ACCEPT, "application/json")
            .json(&body);
        let answer = execute(request).await?;
        interpret(&answer)
    }
}

impl EmailProvider for PostmarkSender {
    fn id(&self) -> ProviderId {
        ProviderId::Postmark
    }

    fn send<'a>(
        &'a self,
        email: &'a OutboundEmail,
    ) -> BoxFuture<'a, Result<Accepted, SendFailure>> {
        Box::pin(self.send_email(email))
    }
}

fn joined(list: &[mailgate_core::EmailAddress]) -> String {
    list.iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The JSON body of `POST /email` for `email`; `bulk_stream` is used for bulk messages.
pub fn request_body(email: &OutboundEmail, bulk_stream: Option<&str>) -> Value {
    let mut body = Map::new();
    body.insert("From".into(), email.from.to_header_value().into());
    body.insert("To".into(), joined(&email.to).into());
    if !email.cc.is_empty() {
        body.insert("Cc".into(), joined(&email.cc).into());
    }
    if !email.bcc.is_empty() {
        body.insert("Bcc".into(), joined(&email.bcc).into());
    }
    body.insert("Subject".into(), email.subject.as_str().into());
    if let Some(html) = &email.html {
        body.insert("HtmlBody".into(), html.as_str().into());
    }
    if let Some(text) = &email.text {
        body.insert("TextBody".into(), text.as_str().into());
    }
    if let Some(reply_to) = &email.reply_to {
        body.insert("ReplyTo".into(), reply_to.as_str().into());
    }
    let headers = email
        .headers_with_message_id()
        .into_iter()
        .map(|(name, value)| json!({ "Name": name, "Value": value }))
        .collect();
    body.insert("Headers".into(), Value::Array(headers));
    // Postmark takes one tag per message.
    if let Some(tag) = email.tags.first() {
        body.insert("Tag".into(), tag.as_str().into());
    }
    let mut metadata: Map<String, Value> = email
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().into()))
        .collect();
    metadata.insert(
        MESSAGE_ID_METADATA_KEY.to_owned(),
        email.message_id.as_str().into(),
    );
    if let Some(correlation_id) = &email.correlation_id {
        metadata.insert(
            CORRELATION_ID_METADATA_KEY.to_owned(),
            correlation_id.as_str().into(),
        );
    }
    body.insert("Metadata".into(), Value::Object(metadata));
    if !email.attachments.is_empty() {
        let attachments = email
            .attachments
            .iter()
            .map(|a| {
                json!({
                    "Name": a.filename,
                    "Content": STANDARD.encode(&a.content),
                    "ContentType": a.content_type,
                })
            })
            .collect();
        body.insert("Attachments".into(), Value::Array(attachments));
    }
    if let (MessageCategory::Bulk, Some(stream)) = (email.category, bulk_stream) {
        body.insert("MessageStream".into(), stream.into());
    }
    Value::Object(body)
}

/// Reads Postmark's answer: the `MessageID` of a success, or the evidence of a failure.
pub(crate) fn interpret(answer: &Answer) -> Result<Accepted, SendFailure> {
    let body = serde_json::from_slice::<Value>(&answer.body).ok();
    let error_code = body
        .as_ref()
        .and_then(|b| b.get("ErrorCode"))
        .and_then(Value::as_i64);
    if answer.status.is_success() && error_code.unwrap_or(0) == 0 {
        let id = body
            .as_ref()
            .and_then(|b| b.get("MessageID"))
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        return match id {
            Some(id) => Ok(Accepted {
                provider_message_id: id.to_owned(),
            }),
            None => Err(SendFailure::http(answer.status.as_u16())),
        };
    }
    let mut failure = answer.failure();
    if let Some(code) = error_code {
        failure = failure.with_provider_code(code.to_string());
        if let Some(category) = error_category(code) {
            failure = failure.with_category(category);
        }
    }
    Err(failure)
}

/// Postmark's documented `ErrorCode`s, as categories; `None` leaves the HTTP status to decide.
pub fn error_category(code: i64) -> Option<ErrorCategory> {
    use ErrorCategory as C;
    Some(match code {
        10 => C::Authentication,
        100 => C::ServiceUnavailable,
        300 | 402 | 403 | 409 | 410 | 411 => C::ContentRejected,
        400 | 401 | 412 | 413 => C::ConfigurationError,
        405 => C::QuotaExceeded,
        406 => C::InvalidRecipient,
        429 => C::RateLimit,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, StatusCode};
    use mailgate_core::{Attachment, EmailAddress, Mailbox, MessageId, OutcomeClass};

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn the_body_is_pascal_case_with_metadata_and_headers() {
        let id = MessageId::generate();
        let mut e = OutboundEmail::new(
            id.clone(),
            Mailbox::named(addr("news@example.com"), "News"),
            addr("a@example.org"),
            "Hello",
        );
        e.to.push(addr("b@example.org"));
        e.cc.push(addr("c@example.org"));
        e.text = Some("plain".into());
        e.html = Some("<p>hi</p>".into());
        e.reply_to = Some(addr("support@example.com"));
        e.tags = vec!["welcome".into(), "ignored".into()];
        e.metadata.insert("order".into(), "42".into());
        e.correlation_id = Some("order 42".into());
        e.attachments.push(Attachment {
            filename: "a.txt".into(),
            content_type: "text/plain".into(),
            content: b"hello".to_vec(),
        });
        let body = request_body(&e, Some("broadcast"));
        assert_eq!(
            body,
            json!({
                "From": "News <news@example.com>",
                "To": "a@example.org, b@example.org",
                "Cc": "c@example.org",
                "Subject": "Hello",
                "HtmlBody": "<p>hi</p>",
                "TextBody": "plain",
                "ReplyTo": "support@example.com",
                "Headers": [{"Name": "X-Mailgate-Message-Id", "Value": id.as_str()}],
                "Tag": "welcome",
                "Metadata": {
                    "order": "42",
                    "mailgate_message_id": id.as_str(),
                    "mailgate_correlation_id": "order 42",
                },
                "Attachments": [{"Name": "a.txt", "Content": "aGVsbG8=", "ContentType": "text/plain"}],
            })
        );
        e.category = MessageCategory::Bulk;
        assert_eq!(
            request_body(&e, Some("broadcast"))["MessageStream"],
            "broadcast"
        );
        assert!(request_body(&e, None).get("MessageStream").is_none());
    }

    #[test]
    fn a_success_yields_the_message_id() {
        let ok = answer(
            200,
            r#"{"To": "receiver@example.com", "SubmittedAt": "2014-02-17T07:25:01.4178645-05:00", "MessageID": "0a129aee-e1cd-480d-b08d-4f48548ff48d", "ErrorCode": 0, "Message": "OK"}"#,
        );
        assert_eq!(
            interpret(&ok).unwrap().provider_message_id,
            "0a129aee-e1cd-480d-b08d-4f48548ff48d"
        );
    }

    #[test]
    fn a_non_zero_error_code_fails_even_with_200() {
        let f =
            interpret(&answer(200, r#"{"ErrorCode": 406, "Message": "inactive"}"#)).unwrap_err();
        assert_eq!(f.provider_code.as_deref(), Some("406"));
        assert_eq!(f.classify().category, ErrorCategory::InvalidRecipient);
    }

    #[test]
    fn error_codes_map_to_categories() {
        let cases = [
            (
                401,
                Some(10),
                ErrorCategory::Authentication,
                OutcomeClass::Failover,
            ),
            (
                422,
                Some(300),
                ErrorCategory::ContentRejected,
                OutcomeClass::Permanent,
            ),
            (
                422,
                Some(400),
                ErrorCategory::ConfigurationError,
                OutcomeClass::Failover,
            ),
            (
                422,
                Some(401),
                ErrorCategory::ConfigurationError,
                OutcomeClass::Failover,
            ),
            (
                422,
                Some(405),
                ErrorCategory::QuotaExceeded,
                OutcomeClass::Failover,
            ),
            (
                422,
                Some(406),
                ErrorCategory::InvalidRecipient,
                OutcomeClass::Permanent,
            ),
            (
                422,
                Some(411),
                ErrorCategory::ContentRejected,
                OutcomeClass::Permanent,
            ),
            (
                422,
                Some(412),
                ErrorCategory::ConfigurationError,
                OutcomeClass::Failover,
            ),
            (
                429,
                Some(429),
                ErrorCategory::RateLimit,
                OutcomeClass::Throttled,
            ),
            (
                422,
                Some(1101),
                ErrorCategory::ContentRejected,
                OutcomeClass::Permanent,
            ),
            (
                500,
                None,
                ErrorCategory::ServiceUnavailable,
                OutcomeClass::Failover,
            ),
            (
                503,
                Some(100),
                ErrorCategory::ServiceUnavailable,
                OutcomeClass::Failover,
            ),
        ];
        for (status, code, category, outcome) in cases {
            let body = match code {
                Some(code) => json!({"ErrorCode": code, "Message": "…"}).to_string(),
                None => "Internal Server Error".to_owned(),
            };
            let c = interpret(&answer(status, &body)).unwrap_err().classify();
            assert_eq!(
                (c.category, c.outcome),
                (category, outcome),
                "{status} {code:?}"
            );
        }
    }

    #[test]
    fn an_html_403_from_the_edge_is_read_by_status() {
        let c = interpret(&answer(403, "<html><body>Forbidden</body></html>"))
            .unwrap_err()
            .classify();
        assert_eq!(c.category, ErrorCategory::Authentication);
    }
}
