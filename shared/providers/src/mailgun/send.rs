//! Sending through Mailgun `POST /v3/<domain>/messages`: the form mapping and the error mapping.
//!
//! The request is `multipart/form-data` with HTTP Basic `api:<key>`. Recipients are repeated
//! `to`/`cc`/`bcc` fields; custom headers (and Reply-To) are `h:<Name>` fields; our id travels as
//! `v:mailgate_message_id` (echoed in webhooks as `user-variables`) and as
//! `h:X-Mailgate-Message-Id`. Success is `200 {"id": "<…>", "message": "Queued. Thank you."}`;
//! the id is returned without its angle brackets, as webhooks report it.
//!
//! | answer | category | outcome |
//! |---|---|---|
//! | 200 with `id` | accepted | — |
//! | 2xx without a readable `id` | unknown | ambiguous |
//! | 400 | content_rejected | permanent |
//! | 401, 403 | authentication | failover |
//! | 402 | quota_exceeded | failover |
//! | 404 (`Domain not found`), 405 | configuration_error | failover |
//! | 413 | content_rejected | failover |
//! | 429 (`Retry-After`, else the documented `try again after <RFC 1123 date>`) | rate_limit | throttled |
//! | 5xx | service_unavailable | failover (504: ambiguous) |

use futures::future::BoxFuture;
use http::StatusCode;
use mailgate_core::{
    CORRELATION_ID_METADATA_KEY, MESSAGE_ID_METADATA_KEY, OutboundEmail, ProviderId, SendFailure,
};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use std::time::SystemTime;

use crate::send::{
    Accepted, Answer, EmailProvider, HttpClientError, HttpTimeouts, Secret, endpoint, execute,
    http_client, parse_http_date, until,
};

/// Mailgun accepts at most this many `o:tag` values per message.
pub const MAX_TAGS: usize = 3;

/// Which Mailgun region the sending domain lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MailgunRegion {
    /// `https://api.mailgun.net`.
    #[default]
    Us,
    /// `https://api.eu.mailgun.net`.
    Eu,
}

impl MailgunRegion {
    /// The API base URL of the region.
    pub fn base_url(self) -> &'static str {
        match self {
            MailgunRegion::Us => "https://api.mailgun.net",
            MailgunRegion::Eu => "https://api.eu.mailgun.net",
        }
    }
}

/// How to reach Mailgun.
#[derive(Debug, Clone)]
pub struct MailgunConfig {
    /// The region's base URL (see [`MailgunRegion::base_url`]) or a local test server.
    pub base_url: String,
    /// The sending domain, e.g. `mg.example.com`.
    pub domain: String,
    /// The private API key or a domain sending key (Basic auth password, user `api`).
    pub api_key: Secret,
    /// Connect and request timeouts.
    pub timeouts: HttpTimeouts,
}

impl MailgunConfig {
    /// The region's host with default timeouts.
    pub fn new(region: MailgunRegion, domain: impl Into<String>, api_key: Secret) -> Self {
        Self {
            base_url: region.base_url().to_owned(),
            domain: domain.into(),
            api_key,
            timeouts: HttpTimeouts::default(),
        }
    }
}

/// Sends through Mailgun's Messages API.
#[derive(Debug, Clone)]
pub struct MailgunSender {
    client: crate::http_client::LazyHttpClient,
    config: MailgunConfig,
}

impl MailgunSender {
    /// A sender with its own HTTP client built from the configured timeouts.
    pub fn new(config: MailgunConfig) -> Result<Self, HttpClientError> {
        Ok(Self {
            client: http_client(&config.timeouts)?,
            config,
        })
    }

    async fn send_email(&self, email: &OutboundEmail) -> Result<Accepted, SendFailure> {
        let mut form = Form::new();
        for (name, value) in form_fields(email) {
            form = form.text(name, value);
        }
        for attachment in &email.attachments {
            let part =
                Part::bytes(attachment.content.clone()).file_name(attachment.filename.clone());
            // A content type that is not a MIME type is sent as the default octet-stream.
            let part = match part.mime_str(&attachment.content_type) {
                Ok(part) => part,
                Err(_) => {
                    Part::bytes(attachment.content.clone()).file_name(attachment.filename.clone())
                }
            };
            form = form.part("attachment", part);
        }
        let path = format!("/v3/{}/messages", self.config.domain);
        let request = crate::send::ready(&self.client)?
            .post(endpoint(&self.config.base_url, &path))
            .basic_auth("api", Some(self.config.api_key.expose()))
            .multipart(form);
        let answer = execute(request).await?;
        interpret(&answer, SystemTime::now())
    }
}

impl EmailProvider for MailgunSender {
    fn id(&self) -> ProviderId {
        ProviderId::Mailgun
    }

    fn send<'a>(
        &'a self,
        email: &'a OutboundEmail,
    ) -> BoxFuture<'a, Result<Accepted, SendFailure>> {
        Box::pin(self.send_email(email))
    }
}

/// The text fields of the form for `email`, in order (attachments are added as file parts).
pub fn form_fields(email: &OutboundEmail) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = vec![("from".into(), email.from.to_header_value())];
    for (name, list) in [("to", &email.to), ("cc", &email.cc), ("bcc", &email.bcc)] {
        fields.extend(
            list.iter()
                .map(|a| (name.to_owned(), a.as_str().to_owned())),
        );
    }
    fields.push(("subject".into(), email.subject.clone()));
    if let Some(text) = &email.text {
        fields.push(("text".into(), text.clone()));
    }
    if let Some(html) = &email.html {
        fields.push(("html".into(), html.clone()));
    }
    if let Some(reply_to) = &email.reply_to {
        fields.push(("h:Reply-To".into(), reply_to.as_str().to_owned()));
    }
    for (name, value) in email.headers_with_message_id() {
        fields.push((format!("h:{name}"), value.to_owned()));
    }
    // Mailgun honours `h:Message-Id` (its FAQ on tracking replies): replies thread by it.
    fields.push(("h:Message-Id".into(), email.rfc_message_id()));
    fields.extend(
        email
            .tags
            .iter()
            .take(MAX_TAGS)
            .map(|t| ("o:tag".to_owned(), t.clone())),
    );
    fields.extend(
        email
            .metadata
            .iter()
            .filter(|(k, _)| k.as_str() != MESSAGE_ID_METADATA_KEY)
            .map(|(k, v)| (format!("v:{k}"), v.clone())),
    );
    fields.push((
        format!("v:{MESSAGE_ID_METADATA_KEY}"),
        email.message_id.as_str().to_owned(),
    ));
    if let Some(correlation_id) = &email.correlation_id {
        fields.push((
            format!("v:{CORRELATION_ID_METADATA_KEY}"),
            correlation_id.clone(),
        ));
    }
    fields
}

/// Reads Mailgun's answer: the message id (without `<>`) of a success, or the evidence of a
/// failure.
pub(crate) fn interpret(answer: &Answer, now: SystemTime) -> Result<Accepted, SendFailure> {
    if answer.status.is_success() {
        let id = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| {
                v.get("id")
                    .and_then(Value::as_str)
                    .map(strip_angle_brackets)
            });
        return match id {
            Some(id) if !id.is_empty() => Ok(Accepted {
                provider_message_id: id,
            }),
            _ => Err(SendFailure::http(answer.status.as_u16())),
        };
    }
    Err(failure(answer, now))
}

/// Mailgun's error mapping: the documented status table (Mailgun has no error codes, only
/// `{"message": …}`), with a 429's retry time read from `Retry-After` or, failing that, from the
/// documented message format `… try again after Mon, 20 Dec 2021 20:33:21 UTC`.
pub(crate) fn failure(answer: &Answer, now: SystemTime) -> SendFailure {
    let failure = answer.failure();
    if answer.status != StatusCode::TOO_MANY_REQUESTS || failure.retry_after.is_some() {
        return failure;
    }
    match documented_retry_time(&answer.body) {
        Some(at) => failure.with_retry_after(until(at, now)),
        None => failure,
    }
}

/// The date after `try again after` in a 429's `message`.
fn documented_retry_time(body: &[u8]) -> Option<SystemTime> {
    const MARKER: &str = "try again after ";
    let body = serde_json::from_slice::<Value>(body).ok()?;
    let message = body.get("message")?.as_str()?;
    let start = message.find(MARKER)? + MARKER.len();
    parse_http_date(&message[start..])
}

/// `<id@host>` → `id@host`, as Mailgun's webhooks report it.
pub fn strip_angle_brackets(id: &str) -> String {
    let id = id.trim();
    id.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(id)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};
    use mailgate_core::{EmailAddress, ErrorCategory, Mailbox, MessageId, OutcomeClass};
    use std::time::{Duration, UNIX_EPOCH};

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
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
    fn the_form_repeats_recipients_and_carries_our_id() {
        let id = MessageId::generate();
        let mut e = OutboundEmail::new(
            id.clone(),
            Mailbox::named(addr("news@example.com"), "Example, Inc."),
            addr("a@example.org"),
            "Hello",
        );
        e.to.push(addr("b@example.org"));
        e.bcc.push(addr("c@example.org"));
        e.reply_to = Some(addr("support@example.com"));
        e.text = Some("plain".into());
        e.headers.push(("X-Campaign".into(), "spring".into()));
        e.tags = vec!["a".into(), "b".into(), "c".into(), "d".into()];
        e.metadata.insert("order".into(), "42".into());
        e.correlation_id = Some("order 42".into());
        let fields = form_fields(&e);
        let message_id_header = format!("<{id}@example.com>");
        let expected: Vec<(String, String)> = [
            ("from", "\"Example, Inc.\" <news@example.com>"),
            ("to", "a@example.org"),
            ("to", "b@example.org"),
            ("bcc", "c@example.org"),
            ("subject", "Hello"),
            ("text", "plain"),
            ("h:Reply-To", "support@example.com"),
            ("h:X-Campaign", "spring"),
            ("h:X-Mailgate-Message-Id", id.as_str()),
            ("h:Message-Id", message_id_header.as_str()),
            ("o:tag", "a"),
            ("o:tag", "b"),
            ("o:tag", "c"),
            ("v:order", "42"),
            ("v:mailgate_message_id", id.as_str()),
            ("v:mailgate_correlation_id", "order 42"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(fields, expected);
    }

    #[test]
    fn the_id_loses_its_angle_brackets() {
        let a = answer(
            200,
            &[],
            r#"{"id": "<20111114174239.25659.5817@samples.mailgun.org>", "message": "Queued. Thank you."}"#,
        );
        assert_eq!(
            interpret(&a, SystemTime::now())
                .unwrap()
                .provider_message_id,
            "20111114174239.25659.5817@samples.mailgun.org"
        );
        let unreadable = interpret(&answer(200, &[], "<html>"), SystemTime::now()).unwrap_err();
        assert_eq!(unreadable.classify().outcome, OutcomeClass::Ambiguous);
    }

    #[test]
    fn statuses_map_to_categories() {
        let cases = [
            (
                400,
                "'to' parameter is missing",
                ErrorCategory::ContentRejected,
                OutcomeClass::Permanent,
            ),
            (
                401,
                "Forbidden",
                ErrorCategory::Authentication,
                OutcomeClass::Failover,
            ),
            (
                402,
                "Request Failed",
                ErrorCategory::QuotaExceeded,
                OutcomeClass::Failover,
            ),
            (
                404,
                "Domain not found: example.com",
                ErrorCategory::ConfigurationError,
                OutcomeClass::Failover,
            ),
            (
                413,
                "request size exceeds 52.4MiB limit",
                ErrorCategory::ContentRejected,
                OutcomeClass::Failover,
            ),
            (
                503,
                "unavailable",
                ErrorCategory::ServiceUnavailable,
                OutcomeClass::Failover,
            ),
        ];
        for (status, message, category, outcome) in cases {
            let body = serde_json::json!({ "message": message }).to_string();
            let c = failure(&answer(status, &[], &body), SystemTime::now()).classify();
            assert_eq!((c.category, c.outcome), (category, outcome), "{status}");
        }
    }

    #[test]
    fn a_429_reads_the_documented_retry_time() {
        let now = UNIX_EPOCH + Duration::from_secs(1_640_032_401 - 60);
        let body = r#"{"message": "Domain example.com is not allowed to send: recipient limit exceeded, try again after Mon, 20 Dec 2021 20:33:21 UTC"}"#;
        let c = failure(&answer(429, &[], body), now).classify();
        assert_eq!(c.category, ErrorCategory::RateLimit);
        assert_eq!(c.outcome, OutcomeClass::Throttled);
        assert_eq!(c.retry_after, Some(Duration::from_secs(60)));
        let c = failure(&answer(429, &[("retry-after", "5")], body), now).classify();
        assert_eq!(c.retry_after, Some(Duration::from_secs(5)));
    }

    #[test]
    fn regions_have_their_hosts() {
        assert_eq!(
            MailgunRegion::default().base_url(),
            "https://api.mailgun.net"
        );
        assert_eq!(MailgunRegion::Eu.base_url(), "https://api.eu.mailgun.net");
        let c = MailgunConfig::new(MailgunRegion::Eu, "mg.example.com", Secret::new("key-1"));
        assert!(!format!("{c:?}").contains("key-1"));
    }
}
