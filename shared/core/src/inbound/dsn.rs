//! Delivery status notifications (RFC 3464 inside an RFC 6522 `multipart/report`): which of our
//! messages bounced, for whom, and the bounce classifier's verdict.
//!
//! mail-parser hands `message/delivery-status` over as opaque bytes; its fields are header
//! blocks (one per message, then one per recipient), so each block is read with mail-parser's
//! own header parser (folding, comments) rather than by hand.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use super::{DsnRecipient, DsnReport, our_id_in};
use crate::bounce::{BounceEvidence, EnhancedStatus, classify, find_reply_code};
use crate::{MESSAGE_ID_HEADER, MessageId};

/// Whether the message is a delivery report: `multipart/report` with
/// `report-type=delivery-status`, or any `message/delivery-status` part.
pub(super) fn is_delivery_report(message: &Message<'_>) -> bool {
    let root_is_report = message.root_part().content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct
                .attribute("report-type")
                .is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"))
    });
    root_is_report || message.parts.iter().any(is_status_part)
}

fn is_status_part(part: &mail_parser::MessagePart<'_>) -> bool {
    part.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("message")
            && ct.subtype().is_some_and(|s| {
                s.eq_ignore_ascii_case("delivery-status")
                    || s.eq_ignore_ascii_case("global-delivery-status")
            })
    })
}

/// Reads the report: per-recipient blocks, each classified, and the original it is about.
pub(super) fn report(message: &Message<'_>) -> DsnReport {
    let mut recipients = Vec::new();
    let mut envelope_id = None;
    if let Some(part) = message.parts.iter().find(|p| is_status_part(p)) {
        let text = String::from_utf8_lossy(part.contents()).replace("\r\n", "\n");
        for (i, block) in text.split("\n\n").enumerate() {
            let block = block.trim_matches('\n');
            if block.is_empty() {
                continue;
            }
            let with_end = format!("{block}\n\n");
            let Some(fields) = MessageParser::default().parse_headers(with_end.as_bytes()) else {
                continue;
            };
            let field = |name: &str| fields.header_raw(name).map(unfold);
            if i == 0 {
                envelope_id = field("Original-Envelope-Id");
            }
            let Some(recipient) = field("Final-Recipient").or_else(|| field("Original-Recipient"))
            else {
                continue;
            };
            let action = field("Action").unwrap_or_default().to_ascii_lowercase();
            let status = field("Status")
                .and_then(|s| s.split_whitespace().next().map(str::to_owned))
                .filter(|s| EnhancedStatus::parse(s).is_ok());
            let diagnostic = field("Diagnostic-Code").map(|d| strip_type(&d));
            let evidence = BounceEvidence {
                diagnostic: diagnostic.as_deref(),
                status: status
                    .as_deref()
                    .and_then(|s| EnhancedStatus::parse(s).ok()),
                reply_code: diagnostic.as_deref().and_then(find_reply_code),
            };
            recipients.push(DsnRecipient {
                recipient: strip_type(&recipient),
                action,
                classification: classify(&evidence),
                status,
                diagnostic,
            });
        }
    }

    let returned = returned_headers(message);
    let original_message_id = returned
        .as_ref()
        .and_then(|m| m.message_id().map(str::to_owned));
    let original = returned
        .as_ref()
        .and_then(|m| m.header_raw(MESSAGE_ID_HEADER))
        .and_then(|v| MessageId::parse(v.trim()).ok())
        .or_else(|| original_message_id.as_deref().and_then(our_id_in))
        .or_else(|| {
            envelope_id
                .as_deref()
                .and_then(|e| MessageId::parse(e.trim()).ok())
        });
    DsnReport {
        original_message_id,
        original,
        recipients,
    }
}

/// The returned original's headers: a `text/rfc822-headers` part, or a `message/rfc822` one.
fn returned_headers<'x>(message: &'x Message<'x>) -> Option<Message<'x>> {
    message.parts.iter().find_map(|part| {
        let ct = part.content_type()?;
        let sub = ct.subtype()?.to_ascii_lowercase();
        match (
            &part.body,
            ct.ctype().to_ascii_lowercase().as_str(),
            sub.as_str(),
        ) {
            (PartType::Message(nested), _, _) => {
                MessageParser::default().parse_headers(nested.raw_message())
            }
            (_, "text", "rfc822-headers") | (_, "message", "rfc822-headers") => {
                MessageParser::default().parse_headers(part.contents())
            }
            _ => None,
        }
    })
}

fn unfold(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `rfc822; a@b` → `a@b`, `smtp; 550 …` → `550 …`.
fn strip_type(value: &str) -> String {
    match value.split_once(';') {
        Some((kind, rest)) if !kind.contains(' ') && kind.len() < 16 => rest.trim().to_owned(),
        _ => value.trim().to_owned(),
    }
}
