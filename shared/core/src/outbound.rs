//! The provider-neutral message a provider sends.
//!
//! An [`OutboundEmail`] is already validated (the API request validation produces it): addresses
//! are [`EmailAddress`]es, custom headers are free of line breaks and reserved names, and
//! attachments are decoded bytes. Provider modules only translate it into their own request
//! shape; they do not validate it again.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{EmailAddress, MessageId};

/// The header every send carries with our message id, so webhooks and bounces correlate.
pub const MESSAGE_ID_HEADER: &str = "X-Mailgate-Message-Id";

/// The key our message id is stored under in a provider's metadata, custom args, variables or
/// tags.
pub const MESSAGE_ID_METADATA_KEY: &str = "mailgate_message_id";

/// The key the caller's `correlation_id` is sent under in a provider's metadata, custom args or
/// variables (where the provider has them).
pub const CORRELATION_ID_METADATA_KEY: &str = "mailgate_correlation_id";

/// An address with an optional display name, e.g. `Jane Doe <jane@example.com>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    /// The address.
    pub address: EmailAddress,
    /// The display name, if any (free of line breaks: validated upstream).
    pub name: Option<String>,
}

impl Mailbox {
    /// A mailbox without a display name.
    pub fn new(address: EmailAddress) -> Self {
        Self {
            address,
            name: None,
        }
    }

    /// A mailbox with a display name; an empty name is no name.
    pub fn named(address: EmailAddress, name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            address,
            name: (!name.trim().is_empty()).then_some(name),
        }
    }

    /// The mailbox as an RFC 5322 `name-addr` (`"Doe, Jane" <jane@example.com>`), quoting the
    /// display name when it holds characters that are special in a header, or the bare address
    /// when there is no name.
    pub fn to_header_value(&self) -> String {
        match &self.name {
            None => self.address.as_str().to_owned(),
            Some(name) => {
                const SPECIALS: &[char] = &[
                    '(', ')', '<', '>', '[', ']', ':', ';', '@', '\\', ',', '.', '"',
                ];
                if name.contains(SPECIALS) {
                    let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
                    format!("\"{escaped}\" <{}>", self.address)
                } else {
                    format!("{name} <{}>", self.address)
                }
            }
        }
    }
}

/// `Debug` keeps the address masked (see [`EmailAddress`]).
impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("address", &self.address)
            .field("name", &self.name.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// A file attached to a message, as decoded bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The file name shown to the recipient.
    pub filename: String,
    /// The MIME type, e.g. `application/pdf`.
    pub content_type: String,
    /// The decoded content (serialized as standard base64, so stored content stays compact).
    #[serde(with = "base64_bytes")]
    pub content: Vec<u8>,
}

/// Serde for bytes as one standard base64 string.
mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("bytes", &self.content.len())
            .finish()
    }
}

/// What kind of mail a message is; bulk mail can be paused, transactional mail never is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageCategory {
    /// Mail a person is waiting for (receipts, password resets). The default.
    #[default]
    Transactional,
    /// Newsletters and campaigns.
    Bulk,
}

impl MessageCategory {
    /// The snake_case name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageCategory::Transactional => "transactional",
            MessageCategory::Bulk => "bulk",
        }
    }
}

/// A validated message, ready for any provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundEmail {
    /// Our id; every provider request carries it (header and provider metadata).
    pub message_id: MessageId,
    /// The sender.
    pub from: Mailbox,
    /// Primary recipients.
    pub to: Vec<EmailAddress>,
    /// Carbon-copy recipients.
    pub cc: Vec<EmailAddress>,
    /// Blind carbon-copy recipients.
    pub bcc: Vec<EmailAddress>,
    /// Where replies go, if not to the sender.
    pub reply_to: Option<EmailAddress>,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: Option<String>,
    /// The HTML body.
    pub html: Option<String>,
    /// Custom headers only (no From/To/Subject/Content-Type …), in request order.
    pub headers: Vec<(String, String)>,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// Caller metadata, echoed by providers that support it.
    pub metadata: BTreeMap<String, String>,
    /// Transactional or bulk.
    pub category: MessageCategory,
    /// The subscription topic (`[a-z0-9_-]{1,64}`): a one-click unsubscribe from this message
    /// stops bulk mail on this topic only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Whether mailgate adds its own one-click `List-Unsubscribe` headers to this message (every
    /// bulk message, and transactional ones sent with `"unsubscribe": true`, unless the caller
    /// gave its own pair).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_click: bool,
    /// The caller's own id for the message (an order, a ticket), 1–128 printable ASCII
    /// characters; absent from content stored before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl OutboundEmail {
    /// A transactional message with one recipient and nothing optional; set the other fields
    /// directly.
    pub fn new(
        message_id: MessageId,
        from: Mailbox,
        to: EmailAddress,
        subject: impl Into<String>,
    ) -> Self {
        Self {
            message_id,
            from,
            to: vec![to],
            cc: Vec::new(),
            bcc: Vec::new(),
            reply_to: None,
            subject: subject.into(),
            text: None,
            html: None,
            headers: Vec::new(),
            attachments: Vec::new(),
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            category: MessageCategory::Transactional,
            topic: None,
            one_click: false,
            correlation_id: None,
        }
    }

    /// Every recipient: to, then cc, then bcc.
    pub fn recipients(&self) -> impl Iterator<Item = &EmailAddress> {
        self.to.iter().chain(&self.cc).chain(&self.bcc)
    }

    /// The `Message-ID` we give the message, `<msg_…@sender-domain>`: a reply names it in
    /// `In-Reply-To`/`References`, and its local part threads the reply to this message. SES
    /// and Postmark replace it with their own (see `inbound::provider_assigned_id`).
    pub fn rfc_message_id(&self) -> String {
        format!("<{}@{}>", self.message_id, self.from.address.domain())
    }

    /// The custom headers followed by our [`MESSAGE_ID_HEADER`], as every provider sends them.
    pub fn headers_with_message_id(&self) -> Vec<(&str, &str)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(std::iter::once((
                MESSAGE_ID_HEADER,
                self.message_id.as_str(),
            )))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[test]
    fn a_mailbox_without_a_name_is_the_bare_address() {
        assert_eq!(
            Mailbox::new(addr("a@example.com")).to_header_value(),
            "a@example.com"
        );
        assert_eq!(
            Mailbox::named(addr("a@example.com"), "  ").to_header_value(),
            "a@example.com"
        );
    }

    #[test]
    fn display_names_with_specials_are_quoted_and_escaped() {
        assert_eq!(
            Mailbox::named(addr("a@example.com"), "Jane Doe").to_header_value(),
            "Jane Doe <a@example.com>"
        );
        assert_eq!(
            Mailbox::named(addr("a@example.com"), "Doe, Jane").to_header_value(),
            "\"Doe, Jane\" <a@example.com>"
        );
        assert_eq!(
            Mailbox::named(addr("a@example.com"), r#"The "Best" \ Co."#).to_header_value(),
            r#""The \"Best\" \\ Co." <a@example.com>"#
        );
    }

    #[test]
    fn our_id_header_comes_after_the_custom_headers() {
        let id = MessageId::generate();
        let mut email = OutboundEmail::new(
            id.clone(),
            Mailbox::new(addr("from@example.com")),
            addr("to@example.com"),
            "Hi",
        );
        email.headers.push(("X-Campaign".into(), "spring".into()));
        email.cc.push(addr("cc@example.com"));
        email.bcc.push(addr("bcc@example.com"));
        assert_eq!(
            email.headers_with_message_id(),
            vec![("X-Campaign", "spring"), (MESSAGE_ID_HEADER, id.as_str())]
        );
        assert_eq!(email.recipients().count(), 3);
        assert_eq!(email.category, MessageCategory::Transactional);
    }

    #[test]
    fn debug_hides_addresses_names_and_attachment_bytes() {
        let mailbox = Mailbox::named(addr("jane@example.com"), "Jane");
        let text = format!("{mailbox:?}");
        assert!(!text.contains("jane@") && !text.contains("Jane"), "{text}");
        let attachment = Attachment {
            filename: "a.txt".into(),
            content_type: "text/plain".into(),
            content: b"secret".to_vec(),
        };
        assert!(!format!("{attachment:?}").contains("secret"));
    }

    #[test]
    fn an_email_round_trips_through_json_with_base64_attachments() {
        let mut email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::named(addr("from@example.com"), "From"),
            addr("to@example.com"),
            "Hi",
        );
        email.attachments.push(Attachment {
            filename: "a.bin".into(),
            content_type: "application/octet-stream".into(),
            content: vec![0, 1, 2, 255],
        });
        let json = serde_json::to_value(&email).unwrap();
        assert_eq!(json["attachments"][0]["content"], "AAEC/w==");
        let back: OutboundEmail = serde_json::from_value(json).unwrap();
        assert_eq!(back, email);
    }

    #[test]
    fn categories_serialize_in_snake_case() {
        assert_eq!(
            serde_json::to_string(&MessageCategory::Bulk).unwrap(),
            "\"bulk\""
        );
        assert_eq!(MessageCategory::default().as_str(), "transactional");
    }

    #[test]
    fn a_reply_naming_our_message_id_threads_to_the_message() {
        let id = MessageId::parse("msg_0123456789abcdefghjkmnpqrs").unwrap();
        let email = OutboundEmail::new(
            id.clone(),
            Mailbox::new(addr("news@example.com")),
            addr("ana@example.org"),
            "Hello",
        );
        assert_eq!(
            email.rfc_message_id(),
            "<msg_0123456789abcdefghjkmnpqrs@example.com>"
        );
        let reply = format!(
            "From: ana@example.org\r\nIn-Reply-To: {}\r\nSubject: Re: Hello\r\n\r\nthanks\r\n",
            email.rfc_message_id()
        );
        let parsed = crate::parse_mime(reply.as_bytes()).unwrap();
        assert_eq!(parsed.our_message_ids(), vec![id]);
    }
}
