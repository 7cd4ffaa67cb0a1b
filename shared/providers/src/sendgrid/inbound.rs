//! SendGrid Inbound Parse (`POST /inbound` on `webhook-sendgrid`): each message received for
//! the parse hostname, posted as `multipart/form-data`.
//!
//! SendGrid signs nothing here (its signed event webhook does not cover Inbound Parse), so the
//! Parse URL carries Basic credentials (`https://user:password@…/inbound`), checked in constant
//! time against `SENDGRID_INBOUND_CREDENTIALS` (and the source against the optional
//! `SENDGRID_INBOUND_ALLOWED_IPS`).
//!
//! What it gives: with "POST the raw, full MIME message" on, `email` (the message as received);
//! otherwise `headers` (the raw header block), `text`, `html`, files `attachment1…N` with
//! `attachment-info` and `content-ids` (inline parts), from which the MIME is rebuilt. Always
//! `envelope` (JSON: `to` list, `from`), `SPF`, `dkim`, `spam_score` (with spam checking on),
//! `charsets`, `sender_ip`.
//!
//! What it lacks: an id of its own (the dedupe key is a SHA-256 of the message as received, or
//! of its header block; `Message-ID` + recipient is the second key), DMARC and virus verdicts.
//! SendGrid caps a message at 30 MB; the function URL's 6 MB request and
//! `WEBHOOK_MAX_BODY_BYTES` are the tighter bound here (413 above). SendGrid retries a POST
//! answered 4xx or 5xx for up to 3 days.

use std::sync::Arc;

use futures::future::BoxFuture;
use mailgate_core::{AuthVerdicts, InboundSource};

use super::PROVIDER;
use crate::form::{Form, read_form};
use crate::inbound::{
    InboundDelivery, InboundWebhook, PostedFile, PostedMessage, field_value, header_fields,
    message_header_fields,
};
use crate::verify::BasicAuthVerifier;
use crate::webhook::{Payload, PayloadError, VerifierSettings, WebhookVerifier, body_key};

/// The Basic `user:password` pairs of the Parse URL (several while rotating).
pub const CREDENTIALS_VARIABLE: &str = "SENDGRID_INBOUND_CREDENTIALS";
/// The optional source allowlist of Inbound Parse POSTs.
pub const ALLOWED_IPS_VARIABLE: &str = "SENDGRID_INBOUND_ALLOWED_IPS";

/// SendGrid's Inbound Parse webhook.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendgridInbound;

impl InboundWebhook for SendgridInbound {
    fn verifier(
        &self,
        settings: &VerifierSettings<'_>,
        _webhooks: &Arc<dyn WebhookVerifier>,
    ) -> Result<Arc<dyn WebhookVerifier>, Vec<String>> {
        // The intake's payload is not used on this path: the form is read after verification.
        BasicAuthVerifier::from_settings(
            settings,
            CREDENTIALS_VARIABLE,
            ALLOWED_IPS_VARIABLE,
            |body, _| Payload {
                dedupe_key: body_key(body),
                events: Ok(Vec::new()),
            },
        )
    }

    fn delivery<'a>(
        &'a self,
        body: &'a [u8],
        content_type: Option<&'a str>,
    ) -> BoxFuture<'a, Result<InboundDelivery, PayloadError>> {
        Box::pin(async move { inbound_delivery(&read_form(body, content_type).await?) })
    }
}

/// Reads a verified Inbound Parse form into the raw MIME and what SendGrid says about it.
pub fn inbound_delivery(form: &Form) -> Result<InboundDelivery, PayloadError> {
    let (raw, headers, source_id) = match form.get("email") {
        Some(email) => (
            email.as_bytes().to_vec(),
            message_header_fields(email.as_bytes()),
            body_key(email.as_bytes()),
        ),
        None => {
            let block = form.get("headers").ok_or_else(|| {
                PayloadError::new("not an Inbound Parse message: neither `email` nor `headers`")
            })?;
            let headers = header_fields(block.as_bytes());
            let posted = PostedMessage {
                headers: headers.clone(),
                text: form.get("text").map(str::to_owned),
                html: form.get("html").map(str::to_owned),
                files: files(form)?,
            };
            (posted.rebuild()?, headers, body_key(block.as_bytes()))
        }
    };
    #[derive(serde::Deserialize)]
    struct Envelope {
        #[serde(default)]
        to: Vec<String>,
    }
    let envelope_to = form
        .get("envelope")
        .and_then(|e| serde_json::from_str::<Envelope>(e).ok())
        .and_then(|e| e.to.into_iter().find(|t| !t.trim().is_empty()));
    let recipient = envelope_to
        .or_else(|| form.get("to").map(str::to_owned))
        .unwrap_or_default();
    Ok(InboundDelivery {
        source: InboundSource {
            provider: PROVIDER,
            source_id,
            recipient: recipient.trim().to_owned(),
            message_id: field_value(&headers, "Message-ID").map(str::to_owned),
            auth: AuthVerdicts {
                spf: form.get("SPF").map(|v| v.trim().to_owned()),
                dkim: form.get("dkim").map(|v| v.trim().to_owned()),
                spam: form.get("spam_score").map(|v| v.trim().to_owned()),
                ..AuthVerdicts::default()
            },
        },
        raw,
    })
}

/// The posted files with their names, types and `cid`s from `attachment-info` and `content-ids`.
fn files(form: &Form) -> Result<Vec<PostedFile>, PayloadError> {
    #[derive(serde::Deserialize, Default)]
    struct Info {
        filename: Option<String>,
        name: Option<String>,
        #[serde(rename = "type")]
        content_type: Option<String>,
        #[serde(rename = "content-id")]
        content_id: Option<String>,
    }
    let info: std::collections::HashMap<String, Info> = match form.get("attachment-info") {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| PayloadError::new(format!("attachment-info is not JSON: {e}")))?,
        None => Default::default(),
    };
    // `content-ids`: {"<cid>": "attachment1"}: the inline parts.
    let cids: std::collections::HashMap<String, String> = form
        .get("content-ids")
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    Ok(form
        .files
        .iter()
        .map(|file| {
            let meta = info.get(&file.field);
            let content_id = cids
                .iter()
                .find(|(_, field)| **field == file.field)
                .map(|(cid, _)| cid.clone())
                .or_else(|| meta.and_then(|m| m.content_id.clone()));
            PostedFile {
                content_type: meta
                    .and_then(|m| m.content_type.clone())
                    .or_else(|| file.content_type.clone())
                    .unwrap_or_default(),
                filename: meta
                    .and_then(|m| m.filename.clone().or_else(|| m.name.clone()))
                    .or_else(|| file.filename.clone())
                    .unwrap_or_else(|| file.field.clone()),
                content_id,
                content: file.content.clone(),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::FormFile;
    use mailgate_core::{InboundKind, parse_mime};

    fn field(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn raw_mode_stores_the_message_as_received_with_the_envelope_recipient_and_verdicts() {
        let email = "From: Ana <ana@example.org>\r\nTo: support@parse.example.com\r\nSubject: Re: hi\r\nMessage-ID: <r1@example.org>\r\nIn-Reply-To: <msg_0123456789abcdefghjkmnpqrs@example.com>\r\n\r\nthanks\r\n";
        let form = Form {
            fields: vec![
                field("email", email),
                field(
                    "envelope",
                    r#"{"to":["support@parse.example.com"],"from":"ana@example.org"}"#,
                ),
                field("SPF", "pass"),
                field("dkim", "{@example.org : pass}"),
                field("spam_score", "0.1"),
            ],
            files: Vec::new(),
        };
        let delivery = inbound_delivery(&form).unwrap();
        assert_eq!(delivery.raw, email.as_bytes());
        assert_eq!(delivery.source.provider, PROVIDER);
        assert_eq!(delivery.source.recipient, "support@parse.example.com");
        assert_eq!(
            delivery.source.message_id.as_deref(),
            Some("<r1@example.org>")
        );
        assert_eq!(delivery.source.source_id, body_key(email.as_bytes()));
        assert_eq!(delivery.source.auth.spf.as_deref(), Some("pass"));
        assert_eq!(
            delivery.source.auth.dkim.as_deref(),
            Some("{@example.org : pass}")
        );
        assert_eq!(delivery.source.auth.spam.as_deref(), Some("0.1"));
    }

    #[test]
    fn parsed_mode_is_rebuilt_from_the_header_block_bodies_and_files() {
        let form = Form {
            fields: vec![
                field(
                    "headers",
                    "Received: by mx.sendgrid.net\nFrom: Ana <ana@example.org>\nTo: support@parse.example.com\nSubject: Re: hi\nMessage-ID: <r2@example.org>\nIn-Reply-To: <msg_0123456789abcdefghjkmnpqrs@example.com>\nContent-Type: multipart/mixed; boundary=x\n",
                ),
                field("text", "thanks"),
                field("html", "<p>thanks</p>"),
                field("to", "support@parse.example.com"),
                field("attachments", "2"),
                field(
                    "attachment-info",
                    r#"{"attachment1":{"filename":"r.pdf","name":"r.pdf","type":"application/pdf"},"attachment2":{"filename":"logo.png","type":"image/png","content-id":"logo"}}"#,
                ),
                field("content-ids", r#"{"logo":"attachment2"}"#),
            ],
            files: vec![
                FormFile {
                    field: "attachment1".into(),
                    filename: Some("r.pdf".into()),
                    content_type: Some("application/pdf".into()),
                    content: b"%PDF".to_vec(),
                },
                FormFile {
                    field: "attachment2".into(),
                    filename: Some("logo.png".into()),
                    content_type: Some("image/png".into()),
                    content: vec![1, 2],
                },
            ],
        };
        let delivery = inbound_delivery(&form).unwrap();
        // No envelope: the `to` field names the recipient.
        assert_eq!(delivery.source.recipient, "support@parse.example.com");
        assert_eq!(
            delivery.source.message_id.as_deref(),
            Some("<r2@example.org>")
        );
        let mail = parse_mime(&delivery.raw).unwrap();
        assert_eq!(mail.kind, InboundKind::Message);
        assert_eq!(mail.our_message_ids().len(), 1);
        assert_eq!(mail.html.as_deref().map(str::trim), Some("<p>thanks</p>"));
        assert_eq!(mail.attachments.len(), 2);
        assert_eq!(mail.attachments[0].meta.filename.as_deref(), Some("r.pdf"));
        assert!(mail.attachments[1].meta.inline);
    }

    #[test]
    fn a_form_that_is_not_an_inbound_parse_post_is_refused_with_a_reason() {
        let err = inbound_delivery(&Form::default()).unwrap_err();
        assert!(err.0.contains("neither"), "{err}");
    }
}
