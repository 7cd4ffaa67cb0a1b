//! Mailgun routes (`forward("https://…/inbound")`, `POST /inbound` on `webhook-mailgun`): each
//! message a route matches, posted as a form (`multipart/form-data` with attachments, else
//! `application/x-www-form-urlencoded`).
//!
//! It is signed like Mailgun's webhooks: `timestamp`, `token` and `signature` (hex HMAC-SHA256 of
//! `timestamp ‖ token` under a key of `MAILGUN_WEBHOOK_SIGNING_KEYS`) are form fields. Mailgun
//! retries a route POST that is not answered 200 or 406 for 8 hours (10 min, 15 min, 30 min,
//! 1 h, 2 h, 4 h); whether a retry is signed afresh is not documented, so the signature is
//! accepted up to [`ROUTE_TOLERANCE_SECS`] old. A replayed POST costs nothing: the message is
//! recorded once (its content is its dedupe key).
//!
//! What it gives: when the forward URL ends in `mime` (`https://…/inbound?format=mime`),
//! `body-mime`, the message as received; otherwise the parsed fields `message-headers` (JSON list of `[name, value]`),
//! `body-plain`, `body-html`, files `attachment-1…N` and `content-id-map` (inline parts), from
//! which the MIME is rebuilt. Always `recipient` (envelope), `sender`, `from`, `subject`; the
//! verdicts are Mailgun's `X-Mailgun-Spf`, `X-Mailgun-Dkim-Check-Result` and `X-Mailgun-Sflag`
//! headers. It lacks a DMARC and a virus verdict. Mailgun accepts messages up to 25 MB; the
//! function URL's 6 MB request and `WEBHOOK_MAX_BODY_BYTES` are the tighter bound here.

use std::sync::Arc;

use futures::future::BoxFuture;
use mailgate_core::{AuthVerdicts, Clock, DeliveryKind, InboundSource};

use super::{MailgunWebhookVerifier, PROVIDER};
use crate::form::{Form, is_form, read_form};
use crate::inbound::{
    InboundDelivery, InboundWebhook, PostedFile, PostedMessage, field_value, message_header_fields,
};
use crate::verify::WebhookRejection;
use crate::webhook::{
    Intake, Payload, PayloadError, Verified, VerifierSettings, VerifyFailure, WebhookDelivery,
    WebhookVerifier, body_key, header,
};

/// How old a route POST's signature may be: Mailgun's 8 hours of retries and an hour's slack.
pub const ROUTE_TOLERANCE_SECS: i64 = 9 * 3600;

/// Mailgun's route forwarding.
#[derive(Debug, Clone, Copy, Default)]
pub struct MailgunInbound;

impl InboundWebhook for MailgunInbound {
    fn verifier(
        &self,
        settings: &VerifierSettings<'_>,
        _webhooks: &Arc<dyn WebhookVerifier>,
    ) -> Result<Arc<dyn WebhookVerifier>, Vec<String>> {
        let keys = settings.required("MAILGUN_WEBHOOK_SIGNING_KEYS")?;
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let window = settings.tolerance_secs.max(ROUTE_TOLERANCE_SECS);
        let verifier = MailgunWebhookVerifier::new(&keys, window)
            .map_err(|e| vec![format!("MAILGUN_WEBHOOK_SIGNING_KEYS: {e}")])?;
        Ok(Arc::new(RouteVerifier(verifier)))
    }

    fn delivery<'a>(
        &'a self,
        body: &'a [u8],
        content_type: Option<&'a str>,
    ) -> BoxFuture<'a, Result<InboundDelivery, PayloadError>> {
        Box::pin(async move { inbound_delivery(&read_form(body, content_type).await?) })
    }
}

/// Checks the signature fields of a route's form.
#[derive(Debug, Clone)]
struct RouteVerifier(MailgunWebhookVerifier);

impl WebhookVerifier for RouteVerifier {
    fn verify<'a>(
        &'a self,
        delivery: WebhookDelivery<'a>,
        clock: &'a dyn Clock,
    ) -> BoxFuture<'a, Result<Verified, VerifyFailure>> {
        Box::pin(async move {
            let content_type = header(delivery.headers, "content-type");
            if !is_form(content_type) {
                return Err(VerifyFailure::Rejected(WebhookRejection::Malformed));
            }
            let form = read_form(delivery.body, content_type)
                .await
                .map_err(|_| VerifyFailure::Rejected(WebhookRejection::Malformed))?;
            let signed = |name| form.get(name).unwrap_or_default();
            self.0
                .verify(
                    signed("timestamp"),
                    signed("token"),
                    signed("signature"),
                    clock,
                )
                .map_err(VerifyFailure::Rejected)?;
            Ok(Verified {
                intake: Intake {
                    kind: DeliveryKind::Events,
                    verification: "hmac-sha256",
                    // Read again (as a message) once verified; nothing is queued from here.
                    payload: Payload {
                        dedupe_key: body_key(delivery.body),
                        events: Ok(Vec::new()),
                    },
                    replay_token: None,
                },
                handshake: None,
            })
        })
    }
}

/// Reads a verified route form into the raw MIME and what Mailgun says about it.
pub fn inbound_delivery(form: &Form) -> Result<InboundDelivery, PayloadError> {
    let (raw, headers, source_id) = match form.get("body-mime") {
        Some(mime) => (
            mime.as_bytes().to_vec(),
            message_header_fields(mime.as_bytes()),
            body_key(mime.as_bytes()),
        ),
        None => {
            let listed = form.get("message-headers").ok_or_else(|| {
                PayloadError::new(
                    "not a Mailgun route POST: neither `body-mime` nor `message-headers`",
                )
            })?;
            let pairs: Vec<(String, String)> = serde_json::from_str(listed).map_err(|e| {
                PayloadError::new(format!("message-headers is not a JSON list of pairs: {e}"))
            })?;
            let posted = PostedMessage {
                headers: pairs.clone(),
                text: form.get("body-plain").map(str::to_owned),
                html: form.get("body-html").map(str::to_owned),
                files: files(form),
            };
            (posted.rebuild()?, pairs, body_key(listed.as_bytes()))
        }
    };
    let verdict = |name: &str| {
        form.get(name)
            .or_else(|| field_value(&headers, name))
            .map(|v| v.trim().to_owned())
    };
    let recipient = form
        .get("recipient")
        .map(|r| r.split(',').next().unwrap_or_default().trim().to_owned())
        .unwrap_or_default();
    Ok(InboundDelivery {
        source: InboundSource {
            provider: PROVIDER,
            source_id,
            recipient,
            message_id: form
                .get("Message-Id")
                .or_else(|| field_value(&headers, "Message-ID"))
                .map(str::to_owned),
            auth: AuthVerdicts {
                spf: verdict("X-Mailgun-Spf"),
                dkim: verdict("X-Mailgun-Dkim-Check-Result"),
                spam: verdict("X-Mailgun-Sflag"),
                ..AuthVerdicts::default()
            },
        },
        raw,
    })
}

/// The posted files; `content-id-map` (`{"<cid>": "attachment-1"}`) marks the inline ones.
fn files(form: &Form) -> Vec<PostedFile> {
    let cids: std::collections::HashMap<String, String> = form
        .get("content-id-map")
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    form.files
        .iter()
        .map(|file| PostedFile {
            content_type: file.content_type.clone().unwrap_or_default(),
            filename: file.filename.clone().unwrap_or_else(|| file.field.clone()),
            content_id: cids
                .iter()
                .find(|(_, field)| **field == file.field)
                .map(|(cid, _)| cid.clone()),
            content: file.content.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form::FormFile;
    use mailgate_core::{FixedClock, parse_mime};
    use time::macros::datetime;

    fn field(name: &str, value: &str) -> (String, String) {
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn body_mime_is_stored_as_received_with_mailguns_verdicts() {
        let mime = "X-Mailgun-Spf: Pass\r\nX-Mailgun-Dkim-Check-Result: Pass\r\nX-Mailgun-Sflag: No\r\nFrom: ana@example.org\r\nTo: support@mg.example.com\r\nMessage-Id: <r3@example.org>\r\nSubject: Re: hi\r\n\r\nthanks\r\n";
        let form = Form {
            fields: vec![
                field("recipient", "support@mg.example.com"),
                field("body-mime", mime),
            ],
            files: Vec::new(),
        };
        let delivery = inbound_delivery(&form).unwrap();
        assert_eq!(delivery.raw, mime.as_bytes());
        assert_eq!(delivery.source.recipient, "support@mg.example.com");
        assert_eq!(
            delivery.source.message_id.as_deref(),
            Some("<r3@example.org>")
        );
        assert_eq!(delivery.source.auth.spf.as_deref(), Some("Pass"));
        assert_eq!(delivery.source.auth.dkim.as_deref(), Some("Pass"));
        assert_eq!(delivery.source.auth.spam.as_deref(), Some("No"));
    }

    #[test]
    fn parsed_fields_are_rebuilt_as_mime_with_inline_parts_marked() {
        let form = Form {
            fields: vec![
                field("recipient", "support@mg.example.com"),
                field(
                    "message-headers",
                    r#"[["From","Ana <ana@example.org>"],["To","support@mg.example.com"],["Subject","Re: hi"],["Message-Id","<r4@example.org>"],["In-Reply-To","<msg_0123456789abcdefghjkmnpqrs@example.com>"],["Auto-Submitted","auto-replied"]]"#,
                ),
                field("body-plain", "away"),
                field("content-id-map", r#"{"<logo>":"attachment-2"}"#),
            ],
            files: vec![
                FormFile {
                    field: "attachment-1".into(),
                    filename: Some("r.pdf".into()),
                    content_type: Some("application/pdf".into()),
                    content: b"%PDF".to_vec(),
                },
                FormFile {
                    field: "attachment-2".into(),
                    filename: Some("logo.png".into()),
                    content_type: Some("image/png".into()),
                    content: vec![1],
                },
            ],
        };
        let delivery = inbound_delivery(&form).unwrap();
        assert_eq!(
            delivery.source.message_id.as_deref(),
            Some("<r4@example.org>")
        );
        let mail = parse_mime(&delivery.raw).unwrap();
        assert_eq!(mail.kind, mailgate_core::InboundKind::AutoReply);
        assert_eq!(mail.our_message_ids().len(), 1);
        assert_eq!(mail.attachments.len(), 2);
        assert!(!mail.attachments[0].meta.inline);
        assert!(mail.attachments[1].meta.inline);
        assert!(
            inbound_delivery(&Form {
                fields: vec![field("message-headers", "not json")],
                files: Vec::new()
            })
            .is_err()
        );
    }

    async fn verify(
        verifier: &RouteVerifier,
        headers: &http::HeaderMap,
        clock: &FixedClock,
        body: String,
    ) -> Result<(), WebhookRejection> {
        let delivery = WebhookDelivery {
            headers,
            body: body.as_bytes(),
            source: None,
        };
        match verifier.verify(delivery, clock).await {
            Ok(_) => Ok(()),
            Err(VerifyFailure::Rejected(r)) => Err(r),
            Err(VerifyFailure::Unavailable(e)) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn the_route_form_is_verified_by_its_signature_fields_within_mailguns_retry_window() {
        use hmac::Mac;
        let key = "route-test-signing-key";
        let verifier =
            RouteVerifier(MailgunWebhookVerifier::new(&[key], ROUTE_TOLERANCE_SECS).unwrap());
        let clock = FixedClock::new(datetime!(2026-12-05 10:00 UTC));
        let signed_at = clock.unix_seconds() - 8 * 3600;
        let sign = |timestamp: i64, token: &str| {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
            mac.update(format!("{timestamp}{token}").as_bytes());
            hex::encode(mac.finalize().into_bytes())
        };
        let form = |timestamp: i64, signature: &str| {
            serde_urlencoded::to_string([
                ("timestamp", timestamp.to_string()),
                ("token", "t0k3n".to_owned()),
                ("signature", signature.to_owned()),
                ("recipient", "support@mg.example.com".to_owned()),
            ])
            .unwrap()
        };
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        // Signed 8 hours ago (Mailgun's last retry): accepted.
        assert_eq!(
            verify(
                &verifier,
                &headers,
                &clock,
                form(signed_at, &sign(signed_at, "t0k3n"))
            )
            .await,
            Ok(())
        );
        // Forged with another key, or signed too long ago: refused.
        assert_eq!(
            verify(
                &verifier,
                &headers,
                &clock,
                form(signed_at, &"ab".repeat(32))
            )
            .await,
            Err(WebhookRejection::BadSignature)
        );
        let stale = clock.unix_seconds() - ROUTE_TOLERANCE_SECS - 60;
        assert!(
            verify(
                &verifier,
                &headers,
                &clock,
                form(stale, &sign(stale, "t0k3n"))
            )
            .await
            .is_err()
        );
        // A JSON body is not a route POST.
        headers.insert("content-type", "application/json".parse().unwrap());
        assert_eq!(
            verify(&verifier, &headers, &clock, "{}".to_owned()).await,
            Err(WebhookRejection::Malformed)
        );
    }
}
