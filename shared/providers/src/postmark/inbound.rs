//! Postmark inbound webhooks (`POST /inbound` on `webhook-postmark`): the JSON Postmark posts for
//! each message received on an inbound stream, verified like its other webhooks (Basic
//! credentials in the webhook URL, `POSTMARK_WEBHOOK_CREDENTIALS`).
//!
//! What it gives: `MessageID` (Postmark's id: the dedupe key), `OriginalRecipient` (envelope),
//! `FromFull`/`ToFull`/`CcFull`, `Subject`, `Date`, `Headers` (including `Message-ID`,
//! `In-Reply-To`, `References`, and the `Received-SPF` and `X-Spam-Status` Postmark adds),
//! `TextBody`, `HtmlBody`, `Attachments` (base64 `Content`, `ContentType`, `ContentID`), and with
//! "Include raw email content" enabled on the stream, `RawEmail`: the message as received.
//!
//! What it lacks: DKIM and DMARC verdicts, and (without `RawEmail`) the original MIME structure,
//! which is then rebuilt from the JSON with mail-builder so every source stores raw MIME.
//! Postmark caps inbound messages at 35 MB (attachments included); the function URL's 6 MB
//! request limit and `WEBHOOK_MAX_BODY_BYTES` are the tighter bound here.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use mailgate_core::{AuthVerdicts, InboundSource};
use serde::Deserialize;

use super::PROVIDER;
use crate::inbound::{InboundDelivery, InboundWebhook};
use crate::webhook::{PayloadError, VerifierSettings, WebhookVerifier};

/// Postmark's inbound webhook: authenticated like its other webhooks.
#[derive(Debug, Clone, Copy, Default)]
pub struct PostmarkInbound;

impl InboundWebhook for PostmarkInbound {
    fn verifier(
        &self,
        _settings: &VerifierSettings<'_>,
        webhooks: &Arc<dyn WebhookVerifier>,
    ) -> Result<Arc<dyn WebhookVerifier>, Vec<String>> {
        Ok(webhooks.clone())
    }

    fn delivery<'a>(
        &'a self,
        body: &'a [u8],
        _content_type: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<InboundDelivery, PayloadError>> {
        Box::pin(async move { inbound_delivery(body) })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InboundJson {
    #[serde(rename = "MessageID")]
    message_id: String,
    #[serde(default)]
    original_recipient: String,
    #[serde(default)]
    from_full: Option<Mailbox>,
    #[serde(default)]
    to_full: Vec<Mailbox>,
    #[serde(default)]
    cc_full: Vec<Mailbox>,
    #[serde(default)]
    reply_to: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    date: String,
    #[serde(default)]
    headers: Vec<Header>,
    #[serde(default)]
    text_body: String,
    #[serde(default)]
    html_body: String,
    #[serde(default)]
    attachments: Vec<Attachment>,
    #[serde(default)]
    raw_email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Mailbox {
    email: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Header {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Attachment {
    #[serde(default)]
    name: String,
    content: String,
    #[serde(default)]
    content_type: String,
    #[serde(rename = "ContentID", default)]
    content_id: String,
}

impl InboundJson {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim())
            .filter(|v| !v.is_empty())
    }
}

/// Reads a verified Postmark inbound body into its raw MIME and what the source says about it.
pub fn inbound_delivery(body: &[u8]) -> Result<InboundDelivery, PayloadError> {
    let json: InboundJson = serde_json::from_slice(body)
        .map_err(|e| PayloadError::new(format!("not a Postmark inbound message: {e}")))?;
    if json.message_id.trim().is_empty() {
        return Err(PayloadError::new("the inbound message has no MessageID"));
    }
    let raw = match json.raw_email.as_deref().filter(|r| !r.trim().is_empty()) {
        Some(raw) => raw.as_bytes().to_vec(),
        None => rebuild(&json)?,
    };
    let recipient = if json.original_recipient.trim().is_empty() {
        json.to_full
            .first()
            .map(|m| m.email.clone())
            .unwrap_or_default()
    } else {
        json.original_recipient.trim().to_owned()
    };
    // Postmark adds `Received-SPF: Pass (...)` and SpamAssassin's `X-Spam-Status: No, score=…`.
    let first_word = |name: &str| {
        json.header(name)
            .and_then(|v| v.split([' ', ',']).next())
            .map(str::to_owned)
    };
    let auth = AuthVerdicts {
        spf: first_word("Received-SPF"),
        spam: first_word("X-Spam-Status"),
        ..AuthVerdicts::default()
    };
    Ok(InboundDelivery {
        source: InboundSource {
            provider: PROVIDER,
            source_id: json.message_id.trim().to_owned(),
            recipient,
            message_id: json.header("Message-ID").map(str::to_owned),
            auth,
        },
        raw,
    })
}

/// The message as MIME, rebuilt from the JSON: the headers threading needs are copied as
/// received; bodies and attachments are re-encoded.
fn rebuild(json: &InboundJson) -> Result<Vec<u8>, PayloadError> {
    let mailbox = |m: &Mailbox| {
        let name = Some(m.name.trim()).filter(|n| !n.is_empty());
        Address::new_address(name.map(str::to_owned), m.email.clone())
    };
    let list = |l: &[Mailbox]| Address::new_list(l.iter().map(mailbox).collect());
    let mut builder = MessageBuilder::new().subject(json.subject.as_str());
    if let Some(from) = &json.from_full {
        builder = builder.from(mailbox(from));
    }
    if !json.to_full.is_empty() {
        builder = builder.to(list(&json.to_full));
    }
    if !json.cc_full.is_empty() {
        builder = builder.cc(list(&json.cc_full));
    }
    if !json.reply_to.trim().is_empty() {
        builder = builder.header("Reply-To", Raw::new(json.reply_to.trim().to_owned()));
    }
    if !json.date.trim().is_empty() {
        builder = builder.header("Date", Raw::new(json.date.trim().to_owned()));
    }
    for (name, canonical) in [
        ("Message-ID", "Message-ID"),
        ("In-Reply-To", "In-Reply-To"),
        ("References", "References"),
        ("Auto-Submitted", "Auto-Submitted"),
        ("X-Autoreply", "X-Autoreply"),
        ("Precedence", "Precedence"),
    ] {
        if let Some(value) = json.header(name) {
            builder = builder.header(canonical, Raw::new(value.to_owned()));
        }
    }
    if !json.text_body.is_empty() {
        builder = builder.text_body(json.text_body.as_str());
    }
    if !json.html_body.is_empty() {
        builder = builder.html_body(json.html_body.as_str());
    }
    for a in &json.attachments {
        let bytes = STANDARD.decode(a.content.as_bytes()).map_err(|e| {
            PayloadError::new(format!("attachment {:?} is not base64: {e}", a.name))
        })?;
        let content_type = if a.content_type.trim().is_empty() {
            "application/octet-stream".to_owned()
        } else {
            a.content_type.trim().to_owned()
        };
        builder = if a.content_id.trim().is_empty() {
            builder.attachment(content_type, a.name.clone(), bytes)
        } else {
            let cid = a
                .content_id
                .trim_matches(|c| c == '<' || c == '>')
                .to_owned();
            builder.inline(content_type, cid, bytes)
        };
    }
    builder
        .write_to_vec()
        .map_err(|e| PayloadError::new(format!("the message could not be rebuilt: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::{InboundKind, MessageId, ProviderId, parse_mime};

    /// The body of the function URL event `events/webhook-postmark/inbound-reply.json`.
    fn fixture() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/webhook-postmark/inbound-reply.json"
        );
        let event: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        event["body"].as_str().unwrap().as_bytes().to_vec()
    }

    #[test]
    fn a_reply_without_raw_email_is_rebuilt_as_mime_that_parses_back_to_the_same_message() {
        let delivery = inbound_delivery(&fixture()).unwrap();
        assert_eq!(delivery.source.provider, ProviderId::Postmark);
        assert_eq!(
            delivery.source.source_id,
            "22c74902-a0c1-4511-804f-341342852c90"
        );
        assert_eq!(delivery.source.recipient, "support@inbound.example.com");
        assert_eq!(
            delivery.source.message_id.as_deref(),
            Some("<CAF=reply-9@mail.example.org>")
        );
        assert_eq!(delivery.source.auth.spf.as_deref(), Some("Pass"));
        assert_eq!(delivery.source.auth.spam.as_deref(), Some("No"));
        assert_eq!(delivery.source.auth.dkim, None);

        let mail = parse_mime(&delivery.raw).unwrap();
        assert_eq!(mail.kind, InboundKind::Message);
        let from = mail.from.clone().unwrap();
        assert_eq!(from.address, "ana@example.org");
        assert_eq!(from.name.as_deref(), Some("Ana María"));
        assert_eq!(mail.to[0].address, "support@inbound.example.com");
        assert_eq!(mail.cc[0].address, "lead@example.org");
        assert_eq!(mail.subject.as_deref(), Some("Re: Your order — shipped"));
        assert_eq!(
            mail.message_id.as_deref(),
            Some("CAF=reply-9@mail.example.org")
        );
        assert_eq!(
            mail.our_message_ids(),
            [MessageId::parse("msg_0123456789abcdefghjkmnpqrs").unwrap()]
        );
        assert_eq!(
            mail.text.as_deref().map(str::trim),
            Some("Thanks, it arrived.")
        );
        assert_eq!(
            mail.html.as_deref().map(str::trim),
            Some("<p>Thanks, it arrived.</p>")
        );
        assert_eq!(mail.attachments.len(), 2);
        let pdf = &mail.attachments[0];
        assert_eq!(pdf.meta.filename.as_deref(), Some("receipt.pdf"));
        assert_eq!(pdf.meta.content_type, "application/pdf");
        assert_eq!(pdf.content, b"%PDF-1.4\n");
        assert!(!pdf.meta.inline);
        let logo = &mail.attachments[1];
        assert!(logo.meta.inline);
        assert_eq!(logo.meta.content_id.as_deref(), Some("logo@example.org"));
    }

    #[test]
    fn raw_email_when_included_is_stored_as_received() {
        let mut json: serde_json::Value = serde_json::from_slice(&fixture()).unwrap();
        let raw = "From: a@example.org\r\nSubject: raw\r\n\r\nas received\r\n";
        json["RawEmail"] = raw.into();
        let delivery = inbound_delivery(json.to_string().as_bytes()).unwrap();
        assert_eq!(delivery.raw, raw.as_bytes());
    }

    #[test]
    fn a_body_that_is_not_an_inbound_message_is_refused_with_a_reason() {
        assert!(inbound_delivery(b"[]").is_err());
        assert!(inbound_delivery(br#"{"MessageID":"  "}"#).is_err());
        let err = inbound_delivery(
            br#"{"MessageID":"x","Attachments":[{"Name":"a","Content":"%%%","ContentType":"text/plain"}]}"#,
        )
        .unwrap_err();
        assert!(err.0.contains("base64"), "{err}");
    }
}
