//! Sending through SMTP2GO `POST /v3/email/send`: the request mapping and the error mapping.
//!
//! The body is JSON authenticated by the `X-Smtp2go-Api-Key` header. SMTP2GO has no metadata
//! field, so our id travels as the `X-Mailgate-Message-Id` custom header (Reply-To is a custom
//! header too). Success is `200 {"data": {"succeeded": n, "failed": 0, "failures": [], "email_id": …}}`;
//! a 200 can still report failed recipients, so `data.failed`/`data.failures` are always checked.
//!
//! | answer | category | outcome |
//! |---|---|---|
//! | 2xx, `failed` 0, no `failures`, `email_id` present | accepted | — |
//! | 2xx with `failed` > 0 or non-empty `failures` | invalid_recipient | permanent (some recipients may have been accepted: never resend elsewhere) |
//! | 2xx without a readable `email_id` | unknown | ambiguous |
//! | 400 | content_rejected | permanent |
//! | 401, 403 | authentication | failover |
//! | 402 (account issue) | quota_exceeded | failover |
//! | 404 | configuration_error | failover |
//! | 429 (`Retry-After` if sent) | rate_limit | throttled |
//! | 5xx | service_unavailable | failover (504: ambiguous) |
//!
//! `data.error_code` (`E_ApiResponseCodes.<NAME>`) is kept as the provider code; its names are
//! not documented in a form we could verify, so the status decides the category.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use mailgate_core::{ErrorCategory, OutboundEmail, ProviderId, SendFailure};
use serde_json::{Map, Value, json};

use crate::send::{
    Accepted, Answer, EmailProvider, HttpClientError, HttpTimeouts, Secret, endpoint, execute,
    http_client,
};

/// SMTP2GO's global API host (regional hosts: `us-api.`, `eu-api.`, `au-api.smtp2go.com`).
pub const DEFAULT_BASE_URL: &str = "https://api.smtp2go.com";
/// The header carrying the API key.
pub const API_KEY_HEADER: &str = "X-Smtp2go-Api-Key";
/// The provider code recorded when a 200 reports failed recipients.
pub const FAILED_RECIPIENTS_CODE: &str = "data.failed";

/// How to reach SMTP2GO.
#[derive(Debug, Clone)]
pub struct Smtp2goConfig {
    /// `https://api.smtp2go.com`, a regional host, or a local test server.
    pub base_url: String,
    /// The API key.
    pub api_key: Secret,
    /// Connect and request timeouts.
    pub timeouts: HttpTimeouts,
}

impl Smtp2goConfig {
    /// The global host with default timeouts.
    pub fn new(api_key: Secret) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key,
            timeouts: HttpTimeouts::default(),
        }
    }
}

/// Sends through SMTP2GO's email API.
#[derive(Debug, Clone)]
pub struct Smtp2goSender {
    client: crate::http_client::LazyHttpClient,
    config: Smtp2goConfig,
}

impl Smtp2goSender {
    /// A sender with its own HTTP client built from the configured timeouts.
    pub fn new(config: Smtp2goConfig) -> Result<Self, HttpClientError> {
        Ok(Self {
            client: http_client(&config.timeouts)?,
            config,
        })
    }

    async fn send_email(&self, email: &OutboundEmail) -> Result<Accepted, SendFailure> {
        let request = crate::send::ready(&self.client)?
            .post(endpoint(&self.config.base_url, "/v3/email/send"))
            .header(API_KEY_HEADER, self.config.api_key.expose())
            .header(http::header::ACCEPT, "application/json")
            .json(&request_body(email));
        let answer = execute(request).await?;
        interpret(&answer)
    }
}

impl EmailProvider for Smtp2goSender {
    fn id(&self) -> ProviderId {
        ProviderId::Smtp2go
    }

    fn send<'a>(
        &'a self,
        email: &'a OutboundEmail,
    ) -> BoxFuture<'a, Result<Accepted, SendFailure>> {
        Box::pin(self.send_email(email))
    }
}

/// The JSON body of `POST /v3/email/send` for `email`.
pub fn request_body(email: &OutboundEmail) -> Value {
    let mut body = Map::new();
    body.insert("sender".into(), email.from.to_header_value().into());
    for (key, list) in [("to", &email.to), ("cc", &email.cc), ("bcc", &email.bcc)] {
        if !list.is_empty() {
            body.insert(
                key.to_owned(),
                list.iter().map(|a| Value::from(a.as_str())).collect(),
            );
        }
    }
    body.insert("subject".into(), email.subject.as_str().into());
    if let Some(html) = &email.html {
        body.insert("html_body".into(), html.as_str().into());
    }
    if let Some(text) = &email.text {
        body.insert("text_body".into(), text.as_str().into());
    }
    let reply_to = email
        .reply_to
        .as_ref()
        .map(|r| json!({ "header": "Reply-To", "value": r.as_str() }));
    let custom_headers = reply_to
        .into_iter()
        .chain(
            email
                .headers_with_message_id()
                .into_iter()
                .map(|(name, value)| json!({ "header": name, "value": value })),
        )
        // Our Message-ID, for replies to thread by (SMTP2GO documents custom headers but not
        // whether it keeps this one: `track_replies` threads regardless).
        .chain(std::iter::once(
            json!({ "header": "Message-ID", "value": email.rfc_message_id() }),
        ))
        .collect();
    body.insert("custom_headers".into(), Value::Array(custom_headers));
    if !email.attachments.is_empty() {
        let attachments = email
            .attachments
            .iter()
            .map(|a| {
                json!({
                    "filename": a.filename,
                    "fileblob": STANDARD.encode(&a.content),
                    "mimetype": a.content_type,
                })
            })
            .collect();
        body.insert("attachments".into(), Value::Array(attachments));
    }
    Value::Object(body)
}

/// Reads SMTP2GO's answer: the `email_id` of a success, or the evidence of a failure.
pub(crate) fn interpret(answer: &Answer) -> Result<Accepted, SendFailure> {
    let body = serde_json::from_slice::<Value>(&answer.body).ok();
    let data = body.as_ref().and_then(|b| b.get("data"));
    if answer.status.is_success() {
        let failed = data
            .and_then(|d| d.get("failed"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let failures = data
            .and_then(|d| d.get("failures"))
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if failed > 0 || failures {
            return Err(SendFailure::http(answer.status.as_u16())
                .with_provider_code(FAILED_RECIPIENTS_CODE)
                .with_category(ErrorCategory::InvalidRecipient));
        }
        let id = data
            .and_then(|d| d.get("email_id"))
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
    if let Some(code) = data
        .and_then(|d| d.get("error_code"))
        .and_then(Value::as_str)
    {
        failure = failure.with_provider_code(code);
    }
    Err(failure)
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
    fn the_body_carries_our_id_as_a_custom_header() {
        let id = MessageId::generate();
        let mut e = OutboundEmail::new(
            id.clone(),
            Mailbox::named(addr("news@example.com"), "News"),
            addr("a@example.org"),
            "Hello",
        );
        e.bcc.push(addr("b@example.org"));
        e.text = Some("plain".into());
        e.reply_to = Some(addr("support@example.com"));
        e.headers.push(("X-Campaign".into(), "spring".into()));
        e.attachments.push(Attachment {
            filename: "a.txt".into(),
            content_type: "text/plain".into(),
            content: b"hello".to_vec(),
        });
        assert_eq!(
            request_body(&e),
            json!({
                "sender": "News <news@example.com>",
                "to": ["a@example.org"],
                "bcc": ["b@example.org"],
                "subject": "Hello",
                "text_body": "plain",
                "custom_headers": [
                    {"header": "Reply-To", "value": "support@example.com"},
                    {"header": "X-Campaign", "value": "spring"},
                    {"header": "X-Mailgate-Message-Id", "value": id.as_str()},
                    {"header": "Message-ID", "value": format!("<{id}@example.com>")},
                ],
                "attachments": [{"filename": "a.txt", "fileblob": "aGVsbG8=", "mimetype": "text/plain"}],
            })
        );
    }

    #[test]
    fn a_clean_200_yields_the_email_id() {
        let ok = answer(
            200,
            r#"{"request_id": "aa253464-0bd0-467a-b24b-6159dcd7be60", "data": {"succeeded": 1, "failed": 0, "failures": [], "email_id": "1er8bV-6Tw0Mi-7h"}}"#,
        );
        assert_eq!(
            interpret(&ok).unwrap().provider_message_id,
            "1er8bV-6Tw0Mi-7h"
        );
    }

    #[test]
    fn a_200_with_failed_recipients_is_a_permanent_failure() {
        for body in [
            r#"{"data": {"succeeded": 0, "failed": 1, "failures": ["a@example.org"], "email_id": "x"}}"#,
            r#"{"data": {"succeeded": 1, "failed": 0, "failures": [{"email": "b@example.org"}], "email_id": "x"}}"#,
        ] {
            let f = interpret(&answer(200, body)).unwrap_err();
            assert_eq!(f.provider_code.as_deref(), Some(FAILED_RECIPIENTS_CODE));
            let c = f.classify();
            assert_eq!(c.category, ErrorCategory::InvalidRecipient);
            assert_eq!(c.outcome, OutcomeClass::Permanent);
        }
    }

    #[test]
    fn a_200_without_an_email_id_is_ambiguous() {
        let f = interpret(&answer(200, r#"{"data": {"succeeded": 1, "failed": 0}}"#)).unwrap_err();
        assert_eq!(f.classify().outcome, OutcomeClass::Ambiguous);
    }

    #[test]
    fn errors_keep_the_error_code_and_map_by_status() {
        let cases = [
            (400, ErrorCategory::ContentRejected, OutcomeClass::Permanent),
            (401, ErrorCategory::Authentication, OutcomeClass::Failover),
            (402, ErrorCategory::QuotaExceeded, OutcomeClass::Failover),
            (403, ErrorCategory::Authentication, OutcomeClass::Failover),
            (429, ErrorCategory::RateLimit, OutcomeClass::Throttled),
            (
                500,
                ErrorCategory::ServiceUnavailable,
                OutcomeClass::Failover,
            ),
        ];
        for (status, category, outcome) in cases {
            let body = r#"{"request_id": "r", "data": {"error": "nope", "error_code": "E_ApiResponseCodes.API_EXCEPTION"}}"#;
            let f = interpret(&answer(status, body)).unwrap_err();
            assert_eq!(
                f.provider_code.as_deref(),
                Some("E_ApiResponseCodes.API_EXCEPTION")
            );
            let c = f.classify();
            assert_eq!((c.category, c.outcome), (category, outcome), "{status}");
        }
    }
}
