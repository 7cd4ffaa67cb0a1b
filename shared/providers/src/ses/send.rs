//! Sending through Amazon SES (`aws-sdk-sesv2` `SendEmail`): the request mapping and the error
//! mapping.
//!
//! A message without attachments or custom headers goes as `Simple` content (with our
//! `X-Mailgate-Message-Id` in its `Headers`); anything else goes as `Raw` MIME built with
//! `mail-builder`; SES replaces the raw `Message-ID` with its own (`<MessageId@….amazonses.com>`),
//! which is how replies thread to SES sends. Our id also travels as the `mailgate_message_id` email tag (it becomes
//! `mail.tags` in SES events when a configuration set publishes them). The SDK's own retries are
//! turned off for this call: a retry after a timeout could send twice, and the send path owns
//! retries and failover.
//!
//! | SDK error | category | outcome |
//! |---|---|---|
//! | `MessageRejected` (content, or an unverified sender identity) | content_rejected | permanent |
//! | `BadRequestException` | content_rejected | permanent |
//! | `TooManyRequestsException`, unmodelled `Throttling`/`ThrottlingException` | rate_limit | throttled |
//! | `LimitExceededException` (sending quota) | quota_exceeded | failover |
//! | `AccountSuspendedException`, unmodelled credential errors (`AccessDenied…`, `UnrecognizedClientException`, `InvalidClientTokenId`, `SignatureDoesNotMatch`, `ExpiredToken…`) | authentication | failover |
//! | `SendingPausedException`, `MailFromDomainNotVerifiedException`, `NotFoundException` (configuration set) | configuration_error | failover |
//! | other service errors | by HTTP status | |
//! | request not built (`ConstructionFailure`) | configuration_error | failover |
//! | dispatch failure before a connection was made (`is_io`) | network_error (`Connect`) | failover |
//! | dispatch timeout, SDK timeout, failure on an open connection | unknown (`TimeoutAfterSend`/`Other`) | ambiguous |
//! | unreadable answer | by HTTP status (2xx: ambiguous) | |

use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{
    Body, Content, Destination, EmailContent, Message, MessageHeader, MessageTag, RawMessage,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use mail_builder::MessageBuilder;
use mail_builder::headers::HeaderType;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mailgate_core::{
    CORRELATION_ID_METADATA_KEY, ErrorCategory, MESSAGE_ID_HEADER, MESSAGE_ID_METADATA_KEY,
    Mailbox, OutboundEmail, ProviderId, SendFailure, TransportFault,
};

use crate::send::{Accepted, EmailProvider};

/// The email tag carrying the message category.
pub const CATEGORY_TAG: &str = "mailgate_category";
const UTF_8: &str = "UTF-8";

/// How to send through SES (region, endpoint, credentials and timeouts come from the SDK
/// configuration the client was built with).
#[derive(Debug, Clone, Default)]
pub struct SesConfig {
    /// The configuration set that publishes events; without one SES publishes none.
    pub configuration_set_name: Option<String>,
}

/// Sends through SES API v2.
#[derive(Debug, Clone)]
pub struct SesSender {
    client: Client,
    config: SesConfig,
}

impl SesSender {
    /// A sender over an SDK client (built once at cold start).
    pub fn new(client: Client, config: SesConfig) -> Self {
        Self { client, config }
    }

    async fn send_email(&self, email: &OutboundEmail) -> Result<Accepted, SendFailure> {
        let mut request = self
            .client
            .send_email()
            .from_email_address(from_address(&email.from))
            .destination(destination(email))
            .content(content(email)?)
            .set_email_tags(Some(email_tags(email)?))
            .set_configuration_set_name(self.config.configuration_set_name.clone());
        // Raw MIME carries Reply-To as a header.
        if !uses_raw(email)
            && let Some(reply_to) = &email.reply_to
        {
            request = request.reply_to_addresses(reply_to.as_str());
        }
        let output = request
            .customize()
            .config_override(aws_sdk_sesv2::Config::builder().retry_config(RetryConfig::disabled()))
            .send()
            .await
            .map_err(|e| failure(&e))?;
        match output.message_id() {
            Some(id) if !id.is_empty() => Ok(Accepted {
                provider_message_id: id.to_owned(),
            }),
            // A 200 without an id: accepted but uncorrelatable, so ambiguous.
            _ => Err(SendFailure::http(200)),
        }
    }
}

impl EmailProvider for SesSender {
    fn id(&self) -> ProviderId {
        ProviderId::Ses
    }

    fn send<'a>(
        &'a self,
        email: &'a OutboundEmail,
    ) -> BoxFuture<'a, Result<Accepted, SendFailure>> {
        Box::pin(self.send_email(email))
    }
}

/// Whether `email` needs raw MIME: attachments or custom headers.
pub fn uses_raw(email: &OutboundEmail) -> bool {
    !email.attachments.is_empty() || !email.headers.is_empty()
}

/// The sender as SES wants it: a non-ASCII display name as an RFC 2047 encoded word.
pub fn from_address(from: &Mailbox) -> String {
    match &from.name {
        Some(name) if !name.is_ascii() => {
            format!("=?UTF-8?B?{}?= <{}>", STANDARD.encode(name), from.address)
        }
        _ => from.to_header_value(),
    }
}

fn destination(email: &OutboundEmail) -> Destination {
    let list = |l: &[mailgate_core::EmailAddress]| {
        (!l.is_empty()).then(|| l.iter().map(|a| a.as_str().to_owned()).collect())
    };
    Destination::builder()
        .set_to_addresses(list(&email.to))
        .set_cc_addresses(list(&email.cc))
        .set_bcc_addresses(list(&email.bcc))
        .build()
}

/// A request that could not be built: nothing left, and it will not build next time either.
fn not_built() -> SendFailure {
    SendFailure::stated(ErrorCategory::ConfigurationError)
}

fn text(data: &str) -> Result<Content, SendFailure> {
    Content::builder()
        .data(data)
        .charset(UTF_8)
        .build()
        .map_err(|_| not_built())
}

/// The `Content` of `email`: simple, or raw MIME (see [`uses_raw`]).
pub fn content(email: &OutboundEmail) -> Result<EmailContent, SendFailure> {
    if uses_raw(email) {
        let raw = RawMessage::builder()
            .data(Blob::new(raw_mime(email)?))
            .build()
            .map_err(|_| not_built())?;
        return Ok(EmailContent::builder().raw(raw).build());
    }
    let mut body = Body::builder();
    if let Some(t) = &email.text {
        body = body.text(text(t)?);
    }
    if let Some(h) = &email.html {
        body = body.html(text(h)?);
    }
    let header = MessageHeader::builder()
        .name(MESSAGE_ID_HEADER)
        .value(email.message_id.as_str())
        .build()
        .map_err(|_| not_built())?;
    let message = Message::builder()
        .subject(text(&email.subject)?)
        .body(body.build())
        .headers(header)
        .build();
    Ok(EmailContent::builder().simple(message).build())
}

/// The message as MIME: headers (no `Bcc`: bcc recipients are in the destination only), our id
/// header, bodies and attachments, with a `Message-ID` derived from our id.
pub fn raw_mime(email: &OutboundEmail) -> Result<Vec<u8>, SendFailure> {
    let addresses = |l: &[mailgate_core::EmailAddress]| {
        Address::new_list(
            l.iter()
                .map(|a| Address::new_address(None::<&str>, a.as_str().to_owned()))
                .collect(),
        )
    };
    let mut builder = MessageBuilder::new()
        .message_id(format!(
            "{}@{}",
            email.message_id.as_str(),
            email.from.address.domain()
        ))
        .from(Address::new_address(
            email.from.name.clone(),
            email.from.address.as_str().to_owned(),
        ))
        .subject(email.subject.as_str());
    if !email.to.is_empty() {
        builder = builder.to(addresses(&email.to));
    }
    if !email.cc.is_empty() {
        builder = builder.cc(addresses(&email.cc));
    }
    if let Some(reply_to) = &email.reply_to {
        builder = builder.reply_to(reply_to.as_str());
    }
    for (name, value) in email.headers_with_message_id() {
        // A printable-ASCII value goes as written (folded only at whitespace): as an RFC 2047
        // encoded word, a long value without spaces such as `List-Unsubscribe: <https://…>`
        // would be split into `=?us-ascii?Q?…?=` pieces no mail client reads as a URL. Only
        // other values are encoded.
        let header = if value
            .bytes()
            .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        {
            HeaderType::Raw(Raw::new(value.to_owned()))
        } else {
            HeaderType::Text(Text::new(value.to_owned()))
        };
        builder = builder.header(name.to_owned(), header);
    }
    if let Some(t) = &email.text {
        builder = builder.text_body(t.as_str());
    }
    if let Some(h) = &email.html {
        builder = builder.html_body(h.as_str());
    }
    for a in &email.attachments {
        builder = builder.attachment(
            a.content_type.as_str(),
            a.filename.as_str(),
            a.content.as_slice(),
        );
    }
    builder.write_to_vec().map_err(|_| not_built())
}

/// The email tags: our id, the message category, and the caller's `correlation_id` when it fits
/// SES's tag value alphabet (`[A-Za-z0-9_.@-]`, at most 256 characters; caller tags, metadata
/// and other correlation ids are free text, so they are not sent as SES tags).
pub fn email_tags(email: &OutboundEmail) -> Result<Vec<MessageTag>, SendFailure> {
    let correlation_id = email
        .correlation_id
        .as_deref()
        .filter(|id| fits_ses_tag_value(id))
        .map(|id| (CORRELATION_ID_METADATA_KEY, id));
    [
        (MESSAGE_ID_METADATA_KEY, email.message_id.as_str()),
        (CATEGORY_TAG, email.category.as_str()),
    ]
    .into_iter()
    .chain(correlation_id)
    .map(|(name, value)| {
        MessageTag::builder()
            .name(name)
            .value(value)
            .build()
            .map_err(|_| not_built())
    })
    .collect()
}

/// Whether SES accepts `value` as a message tag value.
fn fits_ses_tag_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

/// SES's error mapping: the modelled `SendEmail` errors, the codes of unmodelled ones, and the
/// SDK's dispatch and timeout evidence.
pub fn failure<R>(error: &SdkError<SendEmailError, R>) -> SendFailure
where
    R: RawStatus,
{
    match error {
        SdkError::ServiceError(ctx) => {
            let err = ctx.err();
            let mut failure = SendFailure::http(ctx.raw().status_code());
            if let Some(code) = err.code() {
                failure = failure.with_provider_code(code);
            }
            match error_category(err) {
                Some(category) => failure.with_category(category),
                None => failure,
            }
        }
        SdkError::DispatchFailure(dispatch) => {
            let connected = dispatch
                .as_connector_error()
                .is_some_and(|c| c.connection_metadata().is_some());
            let fault = if dispatch.is_timeout() {
                TransportFault::TimeoutAfterSend
            } else if dispatch.is_io() && !connected {
                TransportFault::Connect
            } else {
                TransportFault::Other
            };
            SendFailure::transport(fault)
        }
        SdkError::TimeoutError(_) => SendFailure::transport(TransportFault::TimeoutAfterSend),
        SdkError::ResponseError(ctx) => SendFailure::http(ctx.raw().status_code()),
        SdkError::ConstructionFailure(_) => not_built(),
        // Future SDK variants: nothing is known, so the attempt may have been sent.
        _ => SendFailure::default(),
    }
}

/// The category of a `SendEmail` service error; `None` leaves the HTTP status to decide.
pub fn error_category(error: &SendEmailError) -> Option<ErrorCategory> {
    use ErrorCategory as C;
    Some(match error {
        SendEmailError::MessageRejected(_) | SendEmailError::BadRequestException(_) => {
            C::ContentRejected
        }
        SendEmailError::TooManyRequestsException(_) => C::RateLimit,
        SendEmailError::LimitExceededException(_) => C::QuotaExceeded,
        SendEmailError::AccountSuspendedException(_) => C::Authentication,
        SendEmailError::SendingPausedException(_)
        | SendEmailError::MailFromDomainNotVerifiedException(_)
        | SendEmailError::NotFoundException(_) => C::ConfigurationError,
        other => match other.code()? {
            "Throttling" | "ThrottlingException" => C::RateLimit,
            "AccessDenied"
            | "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "ExpiredTokenException" => C::Authentication,
            _ => return None,
        },
    })
}

/// The HTTP status of a raw SDK response (implemented for the SDK's response type, so the
/// mapping can be tested with it).
pub trait RawStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl RawStatus for aws_sdk_sesv2::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sesv2::error::ErrorMetadata;
    use aws_sdk_sesv2::types::error::{
        AccountSuspendedException, BadRequestException, LimitExceededException,
        MailFromDomainNotVerifiedException, MessageRejected, NotFoundException,
        SendingPausedException, TooManyRequestsException,
    };
    use mailgate_core::{Attachment, EmailAddress, MessageCategory, MessageId, OutcomeClass};

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    fn email() -> OutboundEmail {
        let mut e = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::named(addr("news@example.com"), "Example News"),
            addr("a@example.org"),
            "Hello",
        );
        e.bcc.push(addr("hidden@example.org"));
        e.text = Some("plain".into());
        e.html = Some("<p>html</p>".into());
        e
    }

    /// A raw response with only a status, standing in for the SDK's.
    #[derive(Debug)]
    struct Raw(u16);

    impl RawStatus for Raw {
        fn status_code(&self) -> u16 {
            self.0
        }
    }

    fn service_error(status: u16, err: SendEmailError) -> SdkError<SendEmailError, Raw> {
        SdkError::service_error(err, Raw(status))
    }

    #[test]
    fn a_plain_message_is_simple_content_with_our_header() {
        let e = email();
        assert!(!uses_raw(&e));
        let content = content(&e).unwrap();
        let simple = content.simple().unwrap();
        assert_eq!(simple.subject().unwrap().data(), "Hello");
        assert_eq!(simple.body().unwrap().text().unwrap().data(), "plain");
        assert_eq!(simple.body().unwrap().html().unwrap().data(), "<p>html</p>");
        let header = &simple.headers()[0];
        assert_eq!(header.name(), MESSAGE_ID_HEADER);
        assert_eq!(header.value(), e.message_id.as_str());
        let d = destination(&e);
        assert_eq!(d.to_addresses(), ["a@example.org"]);
        assert_eq!(d.bcc_addresses(), ["hidden@example.org"]);
        assert!(d.cc_addresses().is_empty());
    }

    #[test]
    fn attachments_or_custom_headers_make_raw_mime() {
        let mut e = email();
        e.headers.push(("X-Campaign".into(), "spring".into()));
        e.reply_to = Some(addr("support@example.com"));
        e.attachments.push(Attachment {
            filename: "report.txt".into(),
            content_type: "text/plain".into(),
            content: b"attached bytes".to_vec(),
        });
        assert!(uses_raw(&e));
        let mime = String::from_utf8(raw_mime(&e).unwrap()).unwrap();
        let id = e.message_id.as_str();
        assert!(
            mime.contains(&format!("Message-ID: <{id}@example.com>")),
            "{mime}"
        );
        assert!(
            mime.contains("From: \"Example News\" <news@example.com>"),
            "{mime}"
        );
        assert!(mime.contains("To: <a@example.org>"), "{mime}");
        assert!(mime.contains("Reply-To:"), "{mime}");
        assert!(
            mime.contains(&format!("X-Mailgate-Message-Id: {id}")),
            "{mime}"
        );
        assert!(mime.contains("X-Campaign: spring"), "{mime}");
        // A long URL-valued header stays one unencoded value (failed before: encoded words).
        {
            let mut e = email();
            let link = format!("<https://u.example.com/{}>", "A".repeat(90));
            e.headers.push(("List-Unsubscribe".into(), link.clone()));
            let mime = String::from_utf8(raw_mime(&e).unwrap()).unwrap();
            assert!(
                mime.contains(&format!("List-Unsubscribe: {link}\r\n")),
                "{mime}"
            );
            assert!(!mime.contains("=?us-ascii?"), "{mime}");
        }
        assert!(mime.contains("multipart/mixed"), "{mime}");
        assert!(mime.contains("report.txt"), "{mime}");
        assert!(
            !mime.contains("hidden@example.org"),
            "bcc must not be a header: {mime}"
        );
        assert!(content(&e).unwrap().raw().is_some());
    }

    #[test]
    fn tags_carry_our_id_and_category() {
        let mut e = email();
        e.category = MessageCategory::Bulk;
        let tags = email_tags(&e).unwrap();
        assert_eq!(tags[0].name(), MESSAGE_ID_METADATA_KEY);
        assert_eq!(tags[0].value(), e.message_id.as_str());
        assert_eq!((tags[1].name(), tags[1].value()), (CATEGORY_TAG, "bulk"));
    }

    #[test]
    fn a_correlation_id_is_a_tag_only_when_ses_accepts_its_characters() {
        let mut e = email();
        e.correlation_id = Some("order-42.a@b_c".into());
        let tags = email_tags(&e).unwrap();
        assert_eq!(
            (tags[2].name(), tags[2].value()),
            (CORRELATION_ID_METADATA_KEY, "order-42.a@b_c")
        );
        e.correlation_id = Some("order #42".into());
        assert_eq!(email_tags(&e).unwrap().len(), 2);
    }

    #[test]
    fn non_ascii_sender_names_are_encoded_words() {
        let m = Mailbox::named(addr("a@example.com"), "Zoë");
        assert_eq!(from_address(&m), "=?UTF-8?B?Wm/Dqw==?= <a@example.com>");
        assert_eq!(
            from_address(&Mailbox::named(addr("a@example.com"), "Zoe")),
            "Zoe <a@example.com>"
        );
    }

    #[test]
    fn modelled_errors_map_to_categories() {
        let m = |s: &str| ErrorMetadata::builder().code(s).message("m").build();
        let cases = [
            (
                SendEmailError::MessageRejected(
                    MessageRejected::builder()
                        .meta(m("MessageRejected"))
                        .build(),
                ),
                400,
                ErrorCategory::ContentRejected,
                OutcomeClass::Permanent,
            ),
            (
                SendEmailError::BadRequestException(BadRequestException::builder().build()),
                400,
                ErrorCategory::ContentRejected,
                OutcomeClass::Permanent,
            ),
            (
                SendEmailError::TooManyRequestsException(
                    TooManyRequestsException::builder().build(),
                ),
                429,
                ErrorCategory::RateLimit,
                OutcomeClass::Throttled,
            ),
            (
                SendEmailError::LimitExceededException(LimitExceededException::builder().build()),
                400,
                ErrorCategory::QuotaExceeded,
                OutcomeClass::Failover,
            ),
            (
                SendEmailError::AccountSuspendedException(
                    AccountSuspendedException::builder().build(),
                ),
                400,
                ErrorCategory::Authentication,
                OutcomeClass::Failover,
            ),
            (
                SendEmailError::SendingPausedException(SendingPausedException::builder().build()),
                400,
                ErrorCategory::ConfigurationError,
                OutcomeClass::Failover,
            ),
            (
                SendEmailError::MailFromDomainNotVerifiedException(
                    MailFromDomainNotVerifiedException::builder().build(),
                ),
                400,
                ErrorCategory::ConfigurationError,
                OutcomeClass::Failover,
            ),
            (
                SendEmailError::NotFoundException(NotFoundException::builder().build()),
                404,
                ErrorCategory::ConfigurationError,
                OutcomeClass::Failover,
            ),
            (
                SendEmailError::generic(m("ThrottlingException")),
                400,
                ErrorCategory::RateLimit,
                OutcomeClass::Throttled,
            ),
            (
                SendEmailError::generic(m("UnrecognizedClientException")),
                403,
                ErrorCategory::Authentication,
                OutcomeClass::Failover,
            ),
            (
                SendEmailError::generic(m("InternalFailure")),
                500,
                ErrorCategory::ServiceUnavailable,
                OutcomeClass::Failover,
            ),
        ];
        for (err, status, category, outcome) in cases {
            let name = format!("{err:?}");
            let f = failure(&service_error(status, err));
            assert_eq!(f.status, Some(status));
            let c = f.classify();
            assert_eq!((c.category, c.outcome), (category, outcome), "{name}");
        }
        let f = failure(&service_error(
            400,
            SendEmailError::MessageRejected(
                MessageRejected::builder()
                    .meta(m("MessageRejected"))
                    .build(),
            ),
        ));
        assert_eq!(f.provider_code.as_deref(), Some("MessageRejected"));
    }

    #[test]
    fn sdk_timeouts_are_ambiguous() {
        let e: SdkError<SendEmailError, Raw> = SdkError::timeout_error("attempt timeout");
        assert_eq!(
            failure(&e).transport,
            Some(TransportFault::TimeoutAfterSend)
        );
        assert_eq!(failure(&e).classify().outcome, OutcomeClass::Ambiguous);
        let e: SdkError<SendEmailError, Raw> = SdkError::construction_failure("missing field");
        assert_eq!(
            failure(&e).classify().category,
            ErrorCategory::ConfigurationError
        );
    }
}
