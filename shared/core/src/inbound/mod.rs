//! Inbound email: what a received message is once parsed, independent of the source that
//! delivered it (SES receiving, Postmark inbound, SendGrid Inbound Parse, Mailgun routes).
//!
//! [`parse_mime`] turns raw RFC 5322 bytes into a [`ParsedMail`] with the MIME crate
//! `mail-parser` (charsets, transfer encodings, nested multiparts). It never drops a message:
//! bytes that are not a message at all, or a multipart whose boundary never occurs, come back as
//! [`MalformedMime`] so the caller stores the record as `parse_failed` with the raw kept.
//!
//! | raw message                                   | [`InboundKind`]  | what follows                      |
//! |-----------------------------------------------|------------------|-----------------------------------|
//! | `multipart/report; report-type=delivery-status` | `Dsn`          | a bounce of the original (classifier) |
//! | `Auto-Submitted` other than `no`, vacation headers | `AutoReply` | marked, never a human reply       |
//! | anything else                                  | `Message`       | a reply when it threads to ours   |

mod dsn;
mod parse;
mod record;
mod view;

use serde::{Deserialize, Serialize};

use crate::MessageId;
use crate::bounce::{BounceClassification, EnhancedStatus};

pub use parse::parse_mime;
pub use record::{
    InboundMessage, InboundSource, InboundStatus, InboundSummary, MAX_STORED_BODY_BYTES,
    attachment_key, dsn_bounce_events, raw_key, thread_events,
};
pub use view::{
    DownloadLink, InboundCursor, InboundListing, InboundPage, InboundQuery, InvalidInboundCursor,
    MAX_WEBHOOK_BODY_BYTES, ReceivedLinks, inbound_json, received_event_key, received_webhook_body,
};

/// One mailbox of a header (`Name <local@domain>`), as written by the sender (not validated:
/// inbound mail may carry addresses our send-side rules would refuse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundAddress {
    /// The display name, decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The address.
    pub address: String,
}

/// What kind of message was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundKind {
    /// A message written by a person (or at least not declared automatic).
    Message,
    /// An automatic reply (`Auto-Submitted`, vacation or out-of-office headers): marked, and
    /// never counted as a human reply.
    AutoReply,
    /// A delivery status notification (`multipart/report; report-type=delivery-status`).
    Dsn,
}

impl InboundKind {
    /// The `snake_case` name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::AutoReply => "auto_reply",
            Self::Dsn => "dsn",
        }
    }
}

/// The metadata of one attachment or inline part (its bytes are stored apart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundAttachment {
    /// Position among the message's attachments, from 0 (the download path uses it).
    pub index: u32,
    /// The file name the sender gave, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// `type/subtype` as declared (`application/octet-stream` when absent).
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the decoded bytes.
    pub sha256: String,
    /// Whether the part is shown inside the body (`Content-Disposition: inline`, or an image of
    /// a `multipart/related` referenced by `Content-ID`) rather than offered as a file.
    pub inline: bool,
    /// The `Content-ID` without angle brackets, for `cid:` references from the HTML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_id: Option<String>,
}

/// An attachment's metadata with its decoded bytes, as the parser hands it to storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentPart {
    /// What is recorded about it.
    pub meta: InboundAttachment,
    /// The decoded bytes.
    pub content: Vec<u8>,
}

/// One recipient block of a delivery status notification (RFC 3464).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsnRecipient {
    /// `Final-Recipient` (or `Original-Recipient`) without its `rfc822;` type.
    pub recipient: String,
    /// `Action`: `failed`, `delayed`, `delivered`, `relayed` or `expanded`.
    pub action: String,
    /// `Status`, when it is a valid enhanced status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// `Diagnostic-Code` without its `smtp;` type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostic: Option<String>,
    /// The bounce classifier's verdict on this recipient's evidence.
    pub classification: BounceClassification,
}

impl DsnRecipient {
    /// Whether this block reports a final failure (the only action that is a bounce).
    pub fn is_failure(&self) -> bool {
        self.action.eq_ignore_ascii_case("failed")
    }

    /// The enhanced status, parsed.
    pub fn enhanced_status(&self) -> Option<EnhancedStatus> {
        self.status
            .as_deref()
            .and_then(|s| EnhancedStatus::parse(s).ok())
    }
}

/// What a delivery status notification says and which sent message it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DsnReport {
    /// The `Message-ID` of the returned original, if the report carries its headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_message_id: Option<String>,
    /// Our id, from the returned original's `X-Mailgate-Message-Id` or `Message-ID`, or the
    /// report's `Original-Envelope-Id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<MessageId>,
    /// The per-recipient blocks.
    pub recipients: Vec<DsnRecipient>,
}

/// Authentication verdicts as the source reports them (SES gives all five; webhooks give what
/// their provider adds). Values are the source's own words, e.g. `PASS`, `FAIL`, `GRAY`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthVerdicts {
    /// SPF result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spf: Option<String>,
    /// DKIM result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim: Option<String>,
    /// DMARC result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc: Option<String>,
    /// Spam verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spam: Option<String>,
    /// Virus verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virus: Option<String>,
}

impl AuthVerdicts {
    /// Whether the source gave no verdict at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A received message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMail {
    /// `From` (the first mailbox).
    pub from: Option<InboundAddress>,
    /// `To`.
    pub to: Vec<InboundAddress>,
    /// `Cc`.
    pub cc: Vec<InboundAddress>,
    /// `Reply-To`.
    pub reply_to: Vec<InboundAddress>,
    /// `Subject`, decoded.
    pub subject: Option<String>,
    /// `Date`, as Unix milliseconds.
    pub date: Option<crate::UnixMillis>,
    /// `Message-ID` without angle brackets.
    pub message_id: Option<String>,
    /// `In-Reply-To` ids without angle brackets.
    pub in_reply_to: Vec<String>,
    /// `References` ids without angle brackets, oldest first.
    pub references: Vec<String>,
    /// The first `text/plain` body, charset-decoded.
    pub text: Option<String>,
    /// The first `text/html` body, charset-decoded.
    pub html: Option<String>,
    /// Attachments and inline parts, in order.
    pub attachments: Vec<AttachmentPart>,
    /// Message, auto-reply or DSN.
    pub kind: InboundKind,
    /// What a DSN reports (only for [`InboundKind::Dsn`]).
    pub dsn: Option<DsnReport>,
}

impl ParsedMail {
    /// The ids of our messages this one answers: `In-Reply-To` first, then `References` newest
    /// first, keeping each `Message-ID` whose local part is one of our `msg_…` ids (SendGrid,
    /// Mailgun and SMTP2GO deliver the `<msg_…@sender-domain>` we set). Ids appear once.
    pub fn our_message_ids(&self) -> Vec<MessageId> {
        let mut found: Vec<MessageId> = Vec::new();
        let candidates = self.in_reply_to.iter().chain(self.references.iter().rev());
        for id in candidates {
            if let Some(ours) = our_id_in(id)
                && !found.contains(&ours)
            {
                found.push(ours);
            }
        }
        found
    }

    /// The provider-assigned ids among its ancestors ([`provider_assigned_id`]), nearest first,
    /// for threading by the provider message id we recorded at send time.
    pub fn provider_ancestors(&self) -> Vec<(crate::ProviderId, &str)> {
        self.ancestor_ids()
            .into_iter()
            .filter_map(provider_assigned_id)
            .collect()
    }

    /// Every `Message-ID` this message names as its parent or ancestor (`In-Reply-To`, then
    /// `References` newest first), for matching provider-assigned ids of what we sent.
    pub fn ancestor_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = Vec::new();
        for id in self.in_reply_to.iter().chain(self.references.iter().rev()) {
            if !ids.contains(&id.as_str()) {
                ids.push(id);
            }
        }
        ids
    }
}

/// The provider and its message id, if `message_id` is one a provider assigned in place of ours.
///
/// SES replaces the `Message-ID` of every message it sends (simple and raw alike) with
/// `<ses-message-id@<region>.amazonses.com>` (`email.amazonses.com` in us-east-1), where the local
/// part is the `MessageId` its send call returned: the provider message id we recorded. Postmark
/// documents no format for the id it assigns; its sends thread by reply addresses.
pub fn provider_assigned_id(message_id: &str) -> Option<(crate::ProviderId, &str)> {
    let (local, domain) = message_id
        .trim_matches(|c| c == '<' || c == '>')
        .rsplit_once('@')?;
    let domain = domain.to_ascii_lowercase();
    let ses = domain == "amazonses.com" || domain.ends_with(".amazonses.com");
    (ses && !local.is_empty()).then_some((crate::ProviderId::Ses, local))
}

/// Our message id, if `message_id` (`local@domain`, brackets already removed) has one of our
/// `msg_…` ids as its local part.
pub fn our_id_in(message_id: &str) -> Option<MessageId> {
    let local = message_id
        .trim_matches(|c| c == '<' || c == '>')
        .split('@')
        .next()?;
    MessageId::parse(&local.to_ascii_lowercase()).ok()
}

/// Why raw bytes could not be read as a message. The raw bytes are kept all the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedMime {
    /// Nothing that reads as a header section.
    #[error("no header section: the bytes are not an RFC 5322 message")]
    NotAMessage,
    /// A multipart whose declared boundary never occurs in the body.
    #[error("the multipart boundary {0:?} never occurs in the body")]
    BoundaryNotFound(String),
}

impl MalformedMime {
    /// A short machine-readable reason, as stored on a `parse_failed` record.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAMessage => "not_a_message",
            Self::BoundaryNotFound(_) => "boundary_not_found",
        }
    }
}

/// The events-queue message that asks for a received message to be parsed:
/// `{"v":1,"inbound":"inb_…"}` (told apart from provider events by its `inbound` field).
pub fn inbound_queue_message(id: &crate::InboundId) -> String {
    format!(r#"{{"v":1,"inbound":"{id}"}}"#)
}

/// The received message an events-queue message asks to parse, if it is such a message.
pub fn inbound_of_queue_message(body: &str) -> Option<crate::InboundId> {
    #[derive(Deserialize)]
    struct Envelope {
        v: u32,
        inbound: crate::InboundId,
    }
    serde_json::from_str::<Envelope>(body)
        .ok()
        .filter(|e| e.v == 1)
        .map(|e| e.inbound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProviderId;

    #[test]
    fn an_ses_assigned_message_id_names_the_ses_message_id_in_every_region() {
        let id = "0100019a7e4c2b1f-3d0c5a8e-1b2c-4d5e-8f90-123456789abc-000000";
        assert_eq!(
            provider_assigned_id(&format!("<{id}@email.amazonses.com>")),
            Some((ProviderId::Ses, id))
        );
        assert_eq!(
            provider_assigned_id(&format!("{id}@eu-west-1.AmazonSES.com")),
            Some((ProviderId::Ses, id))
        );
    }

    #[test]
    fn other_message_ids_name_no_provider() {
        for id in [
            "msg_0123456789abcdefghjkmnpqrs@example.com",
            "abc@amazonses.com.example.org",
            "abc@notamazonses.com",
            "@email.amazonses.com",
            "no-domain",
        ] {
            assert_eq!(provider_assigned_id(id), None, "{id}");
        }
    }
}
