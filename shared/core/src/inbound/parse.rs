//! Raw MIME to [`ParsedMail`] through `mail-parser`, plus the checks it does not make: a
//! multipart whose boundary never occurs (mail-parser reads it as an empty body without
//! complaint, which would silently lose the content), and auto-reply recognition.

use std::borrow::Cow;

use mail_parser::{
    Address, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};
use sha2::{Digest, Sha256};

use super::{
    AttachmentPart, InboundAddress, InboundAttachment, InboundKind, MalformedMime, ParsedMail, dsn,
};
use crate::UnixMillis;

/// Parses a received message. Lenient where real mail is sloppy (a missing closing boundary,
/// unknown charsets decoded as best it can), strict where content would otherwise vanish.
pub fn parse_mime(raw: &[u8]) -> Result<ParsedMail, MalformedMime> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(MalformedMime::NotAMessage)?;
    // mail-parser takes any first line as a header; a message needs at least one of the
    // fields every real message has.
    let has_message_header = message.from().is_some()
        || message.date().is_some()
        || message.message_id().is_some()
        || message.to().is_some()
        || message.subject().is_some();
    if !has_message_header {
        return Err(MalformedMime::NotAMessage);
    }
    check_boundaries(&message, raw)?;

    let kind = if dsn::is_delivery_report(&message) {
        InboundKind::Dsn
    } else if is_auto_reply(&message) {
        InboundKind::AutoReply
    } else {
        InboundKind::Message
    };
    let dsn = match kind {
        InboundKind::Dsn => Some(dsn::report(&message)),
        _ => None,
    };
    let (text, html, orphans) = bodies(&message);
    Ok(ParsedMail {
        from: addresses(message.from()).into_iter().next(),
        to: addresses(message.to()),
        cc: addresses(message.cc()),
        reply_to: addresses(message.reply_to()),
        subject: message.subject().map(str::to_owned),
        date: message
            .date()
            .map(|d| UnixMillis(d.to_timestamp().saturating_mul(1000))),
        message_id: message.message_id().map(str::to_owned),
        in_reply_to: ids(message.in_reply_to()),
        references: ids(message.references()),
        text,
        html,
        attachments: attachments(&message, &orphans),
        kind,
        dsn,
    })
}

/// Every multipart part must find its boundary in its own bytes.
fn check_boundaries(message: &Message<'_>, raw: &[u8]) -> Result<(), MalformedMime> {
    for part in &message.parts {
        let Some(ct) = part.content_type() else {
            continue;
        };
        if !ct.ctype().eq_ignore_ascii_case("multipart") {
            continue;
        }
        let Some(boundary) = ct.attribute("boundary") else {
            return Err(MalformedMime::BoundaryNotFound(String::new()));
        };
        let start = (part.offset_body as usize).min(raw.len());
        let end = (part.offset_end as usize).clamp(start, raw.len());
        let delimiter = format!("--{boundary}");
        if !contains(&raw[start..end], delimiter.as_bytes()) {
            return Err(MalformedMime::BoundaryNotFound(boundary.to_owned()));
        }
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// RFC 3834 `Auto-Submitted` (anything but `no`), and the vacation headers common responders
/// add without it (`X-Autoreply`, `X-Autorespond`, `Precedence: auto_reply`).
fn is_auto_reply(message: &Message<'_>) -> bool {
    let raw = |name: &'static str| message.header_raw(name).map(str::trim);
    if let Some(value) = raw("Auto-Submitted") {
        let keyword = value.split(';').next().unwrap_or("").trim();
        if !keyword.eq_ignore_ascii_case("no") {
            return true;
        }
    }
    if ["X-Autoreply", "X-Autorespond", "X-Autoresponder"]
        .iter()
        .any(|h| raw(h).is_some_and(|v| !v.eq_ignore_ascii_case("no")))
    {
        return true;
    }
    ["Precedence", "X-Precedence"]
        .iter()
        .any(|h| raw(h).is_some_and(|v| v.eq_ignore_ascii_case("auto_reply")))
}

fn addresses(address: Option<&Address<'_>>) -> Vec<InboundAddress> {
    address
        .map(|a| {
            a.iter()
                .filter_map(|addr| {
                    Some(InboundAddress {
                        name: addr
                            .name()
                            .map(str::trim)
                            .filter(|n| !n.is_empty())
                            .map(str::to_owned),
                        address: addr.address()?.trim().to_owned(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(list) => list.iter().map(Cow::to_string).collect(),
        _ => Vec::new(),
    }
}

/// The text and html bodies, and the attachment positions taken as bodies. When a multipart
/// lacks its closing boundary mail-parser files its parts as attachments, so an undisposed,
/// unnamed text part among them stands in for a missing body rather than vanishing from it.
fn bodies(message: &Message<'_>) -> (Option<String>, Option<String>, Vec<u32>) {
    let mut text = first_body(message, false);
    let mut html = first_body(message, true);
    let mut orphans = Vec::new();
    for &id in &message.attachments {
        let Some(part) = message.parts.get(id as usize) else {
            continue;
        };
        let undisposed = part.content_disposition().is_none() && part.attachment_name().is_none();
        match &part.body {
            PartType::Text(body) if undisposed && text.is_none() => {
                text = Some(body.to_string());
                orphans.push(id);
            }
            PartType::Html(body) if undisposed && html.is_none() => {
                html = Some(body.to_string());
                orphans.push(id);
            }
            _ => {}
        }
    }
    (text, html, orphans)
}

/// The first body part of the wanted type. mail-parser lists an HTML part among the text
/// bodies when there is no plain alternative (and converts it); we keep only genuine parts.
fn first_body(message: &Message<'_>, html: bool) -> Option<String> {
    let parts = if html {
        message.html_bodies().collect::<Vec<_>>()
    } else {
        message.text_bodies().collect::<Vec<_>>()
    };
    parts.into_iter().find_map(|part| match (&part.body, html) {
        (PartType::Html(body), true) | (PartType::Text(body), false) => Some(body.to_string()),
        _ => None,
    })
}

fn attachments(message: &Message<'_>, orphans: &[u32]) -> Vec<AttachmentPart> {
    message
        .attachments
        .iter()
        .filter(|id| !orphans.contains(id))
        .filter_map(|&id| message.parts.get(id as usize))
        .enumerate()
        .map(|(index, part)| {
            let content = content_of(part);
            let content_type = part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_owned(),
                })
                .unwrap_or_else(|| "application/octet-stream".to_owned())
                .to_ascii_lowercase();
            let disposition = part.content_disposition();
            let inline = match disposition {
                Some(d) if d.is_attachment() => false,
                Some(d) if d.is_inline() => true,
                _ => matches!(part.body, PartType::InlineBinary(_)) || part.content_id().is_some(),
            };
            AttachmentPart {
                meta: InboundAttachment {
                    index: u32::try_from(index).unwrap_or(u32::MAX),
                    filename: part.attachment_name().map(str::to_owned),
                    content_type,
                    size: content.len() as u64,
                    sha256: hex::encode(Sha256::digest(&content)),
                    inline,
                    content_id: part
                        .content_id()
                        .map(|id| id.trim_matches(|c| c == '<' || c == '>').to_owned()),
                },
                content,
            }
        })
        .collect()
}

/// The decoded bytes of a part; a forwarded message is kept as its raw bytes.
fn content_of(part: &MessagePart<'_>) -> Vec<u8> {
    match &part.body {
        PartType::Message(nested) => nested.raw_message().to_vec(),
        _ => part.contents().to_vec(),
    }
}
