//! What every inbound email source hands on once its delivery is verified: the raw MIME to
//! store and what the source says about the message (its id, envelope recipient, `Message-ID`
//! and authentication verdicts). Each provider's module reads its own format and says how its
//! deliveries are authenticated ([`InboundWebhook`]).

use std::sync::Arc;

use futures::future::BoxFuture;
use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use mailgate_core::{InboundSource, ProviderId};

use crate::webhook::{PayloadError, VerifierSettings, WebhookVerifier, webhook_provider};

/// A verified inbound delivery: raw MIME and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundDelivery {
    /// The message as MIME (as received, or rebuilt where the source sends parsed fields only).
    pub raw: Vec<u8>,
    /// What the source says about it.
    pub source: InboundSource,
}

/// A provider's inbound webhook (`POST /inbound` on its webhook function).
pub trait InboundWebhook: Send + Sync {
    /// Builds the verification of its inbound deliveries at cold start (each problem names its
    /// variable); `webhooks` is the provider's webhook verification, for a provider that
    /// authenticates both the same way.
    fn verifier(
        &self,
        settings: &VerifierSettings<'_>,
        webhooks: &Arc<dyn WebhookVerifier>,
    ) -> Result<Arc<dyn WebhookVerifier>, Vec<String>>;

    /// Reads a verified body (of `content_type`) into its raw MIME and source; an error means
    /// the body is not the documented shape.
    fn delivery<'a>(
        &'a self,
        body: &'a [u8],
        content_type: Option<&'a str>,
    ) -> BoxFuture<'a, Result<InboundDelivery, PayloadError>>;
}

/// `provider`'s inbound webhook, if it has one.
pub fn inbound_webhook(provider: ProviderId) -> Option<&'static dyn InboundWebhook> {
    webhook_provider(provider).inbound()
}

/// Whether `provider`'s webhook function receives inbound email: under `/inbound` for a
/// webhook source, or as SES `Received` notifications on any path of `webhook-ses` (whose SNS
/// subscription handshakes go through the same path as its other notifications).
pub fn has_inbound(provider: ProviderId) -> bool {
    provider == ProviderId::Ses || inbound_webhook(provider).is_some()
}

/// The headers a rebuilt message keeps as received: addressing, subject and date, and what
/// threading and auto-reply detection read.
pub(crate) const KEPT_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "X-Autoreply",
    "X-Autorespond",
    "Precedence",
];

/// One file of a message a source posted as parsed fields.
#[derive(Debug, Clone)]
pub(crate) struct PostedFile {
    pub content_type: String,
    pub filename: String,
    /// Set for an inline part (referenced from the HTML as `cid:`).
    pub content_id: Option<String>,
    pub content: Vec<u8>,
}

/// A message a source posted as parsed fields (SendGrid without raw mode, Mailgun without
/// `mime`): its headers as received (name, raw value), bodies and files.
#[derive(Debug, Clone, Default)]
pub(crate) struct PostedMessage {
    pub headers: Vec<(String, String)>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub files: Vec<PostedFile>,
}

impl PostedMessage {
    /// The message as MIME: the [`KEPT_HEADERS`] copied as received (already RFC 2047 encoded
    /// where needed), the bodies and files re-encoded by mail-builder.
    pub fn rebuild(&self) -> Result<Vec<u8>, PayloadError> {
        let mut builder = MessageBuilder::new();
        for kept in KEPT_HEADERS {
            if let Some((_, value)) = self
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(kept))
            {
                builder = builder.header(*kept, Raw::new(value.trim().to_owned()));
            }
        }
        if let Some(text) = self.text.as_deref().filter(|t| !t.is_empty()) {
            builder = builder.text_body(text);
        }
        if let Some(html) = self.html.as_deref().filter(|h| !h.is_empty()) {
            builder = builder.html_body(html);
        }
        for file in &self.files {
            let content_type = if file.content_type.trim().is_empty() {
                "application/octet-stream".to_owned()
            } else {
                file.content_type.trim().to_owned()
            };
            builder = match &file.content_id {
                Some(cid) => builder.inline(
                    content_type,
                    cid.trim_matches(|c| c == '<' || c == '>').to_owned(),
                    file.content.clone(),
                ),
                None => {
                    builder.attachment(content_type, file.filename.clone(), file.content.clone())
                }
            };
        }
        builder
            .write_to_vec()
            .map_err(|e| PayloadError::new(format!("the message could not be rebuilt: {e}")))
    }
}

/// The header fields of a raw header block (`Name: value` lines, folded lines joined), in order;
/// read with mail-parser so encodings and folding follow RFC 5322.
pub(crate) fn header_fields(block: &[u8]) -> Vec<(String, String)> {
    let mut block = block.to_vec();
    // A header block alone: end it so it parses as a message without a body.
    if !block.ends_with(b"\r\n\r\n") && !block.ends_with(b"\n\n") {
        block.extend_from_slice(b"\r\n\r\n");
    }
    let Some(message) = mail_parser::MessageParser::default().parse_headers(&block[..]) else {
        return Vec::new();
    };
    message
        .headers_raw()
        .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
        .collect()
}

/// The first field `name` of `fields` (case-insensitive), if not blank.
pub(crate) fn field_value<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The header fields of a raw message (its header section only).
pub(crate) fn message_header_fields(raw: &[u8]) -> Vec<(String, String)> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
        .unwrap_or(raw.len());
    header_fields(&raw[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::parse_mime;

    #[test]
    fn a_posted_message_rebuilds_with_its_threading_headers_bodies_and_files() {
        let headers = header_fields(
            b"Received: from mx.example.org\r\nFrom: =?utf-8?q?Ana_Mar=C3=ADa?= <ana@example.org>\r\nTo: support@in.example.com\r\nSubject: Re: order\r\nMessage-ID: <r1@example.org>\r\nIn-Reply-To:\r\n <msg_0123456789abcdefghjkmnpqrs@example.com>\r\nContent-Type: multipart/alternative; boundary=zzz\r\n",
        );
        assert_eq!(
            field_value(&headers, "in-reply-to"),
            Some("<msg_0123456789abcdefghjkmnpqrs@example.com>")
        );
        let posted = PostedMessage {
            headers,
            text: Some("thanks".into()),
            html: Some("<p>thanks <img src=\"cid:logo\"></p>".into()),
            files: vec![
                PostedFile {
                    content_type: "application/pdf".into(),
                    filename: "r.pdf".into(),
                    content_id: None,
                    content: b"%PDF".to_vec(),
                },
                PostedFile {
                    content_type: "image/png".into(),
                    filename: "logo.png".into(),
                    content_id: Some("<logo>".into()),
                    content: vec![1, 2, 3],
                },
            ],
        };
        let mail = parse_mime(&posted.rebuild().unwrap()).unwrap();
        assert_eq!(
            mail.from.as_ref().unwrap().name.as_deref(),
            Some("Ana María")
        );
        assert_eq!(mail.subject.as_deref(), Some("Re: order"));
        assert_eq!(mail.message_id.as_deref(), Some("r1@example.org"));
        assert_eq!(mail.our_message_ids().len(), 1);
        assert_eq!(mail.text.as_deref().map(str::trim), Some("thanks"));
        assert_eq!(mail.attachments.len(), 2);
        assert!(!mail.attachments[0].meta.inline);
        assert!(mail.attachments[1].meta.inline);
        assert_eq!(mail.attachments[1].meta.content_id.as_deref(), Some("logo"));
    }

    #[test]
    fn header_fields_of_a_message_stop_at_its_body() {
        let fields =
            message_header_fields(b"Subject: a\r\nX-Mailgun-Spf: Pass\r\n\r\nX-Not: body\r\n");
        assert_eq!(field_value(&fields, "x-mailgun-spf"), Some("Pass"));
        assert_eq!(field_value(&fields, "X-Not"), None);
    }
}
