//! The send API's request bodies (`POST /v1/messages`, `POST /v1/messages/batch`) and their pure
//! validation into an [`OutboundEmail`].
//!
//! Validation happens in two steps:
//!
//! 1. **Shape** — [`SendRequest::from_json`] / [`BatchSendRequest::from_json`] deserialize the raw
//!    body. A body that is not JSON, or whose values have the wrong JSON type, is rejected with a
//!    single [`FieldError`] whose `field` is the JSON path serde reached (`to[2]`,
//!    `headers.X-Foo`), and the status hint **400**.
//! 2. **Values** — [`SendRequest::validate`] checks every rule and collects **all** failures, each
//!    with the JSON path of the value at fault. Failures of values are **422**, except unknown
//!    fields, which are shape errors (**400**) but are collected here together with the rest so a
//!    client sees every problem at once.
//!
//! The status rule: 400 when the body is not JSON, a value has the wrong JSON type, or a field is
//! unknown; 422 when the body has the right shape but a value is not acceptable (including a
//! missing required field and an unknown `provider` or `category` name). [`response_status`]
//! applies it to a list of errors; errors are ordered with the 400 ones first.
//!
//! Decisions worth knowing:
//! - **Unknown fields are rejected** (`unknown_field`), at every level, so a typo such as `"bc"`
//!   for `"bcc"` cannot silently drop recipients. They are captured during deserialization rather
//!   than with serde's `deny_unknown_fields`, so they are reported together with the other errors.
//! - `null` is the same as an absent field.
//! - **Duplicate recipients are removed**, comparing canonical forms (the suppression key:
//!   unquoted, Unicode lower case, punycode domain) across `to`,
//!   `cc` and `bcc` in that order; the first occurrence wins (so an address in both `to` and `bcc`
//!   stays in `to`). The recipient cap counts the entries as sent, before duplicates are removed.
//! - A **display name is accepted only on `from`**. [`OutboundEmail`] carries bare addresses for
//!   recipients and `reply_to`, so a `name` there is rejected (`unsupported_display_name`) rather
//!   than silently dropped.
//! - When a list is over its cap (recipients, headers, tags) only the cap error is reported for
//!   that list, not one error per entry.
//! - Attachment `content` is standard base64 with padding; ASCII whitespace (line wrapping, as
//!   MIME tools produce) is ignored.
//! - Duplicate tags are removed (first occurrence wins); the tag cap counts tags as sent.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use base64::Engine as _;
use serde::de::{self, DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::outbound::{Attachment, MESSAGE_ID_HEADER, MESSAGE_ID_METADATA_KEY};
use crate::suppression::suppression_key;
use crate::{EmailAddress, Mailbox, MessageCategory, MessageId, OutboundEmail, ProviderId};

/// The longest subject accepted, in characters (RFC 5322's line length limit).
pub const MAX_SUBJECT_CHARS: usize = 998;
/// The longest display name accepted on `from`, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 256;
/// The longest attachment file name accepted, in characters.
pub const MAX_FILENAME_CHARS: usize = 255;

/// Header names a caller may not set, compared case-insensitively: mailgate or the provider
/// writes them. Every name starting with `X-Mailgate-` is reserved as well.
pub const RESERVED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Bcc",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "Content-Type",
    "Content-Transfer-Encoding",
    "MIME-Version",
    "Return-Path",
    "Sender",
    "DKIM-Signature",
    "Received",
    MESSAGE_ID_HEADER,
];

/// Prefixes of header names a caller may not set, compared case-insensitively, each with whose
/// they are. Providers read their control headers from the MIME headers we pass through (SES from
/// raw MIME, Mailgun and Postmark over SMTP and from the API's custom headers); a caller setting
/// one could switch the configuration set (and with it event publishing), forge tags or our id
/// (so events would be matched to another message), pick a sending identity or IP pool, turn
/// tracking on or off, or silently drop the message in test mode, all behind mailgate's back.
/// Whole namespaces are reserved because each provider adds names to its own over time.
/// (PROVIDERS.md lists no SMTP2GO control headers and SMTP2GO documents none.)
pub const RESERVED_HEADER_PREFIXES: &[(&str, &str)] = &[
    // Ours: `X-Mailgate-Message-Id` carries our message id, which events are matched by.
    ("X-Mailgate-", "mailgate"),
    // Amazon SES: `X-SES-CONFIGURATION-SET`, `X-SES-MESSAGE-TAGS`, `X-SES-SOURCE-ARN`,
    // `X-SES-FROM-ARN`, `X-SES-RETURN-PATH-ARN`, `X-SES-LIST-MANAGEMENT-OPTIONS`.
    ("X-SES-", "Amazon SES"),
    // Mailgun's SMTP options (`X-Mailgun-Variables`, `-Tag`, `-Drop-Message`, `-Track`,
    // `-Sending-Ip-Pool`, `-Require-TLS`, `-Deliver-By`, …), honoured as `h:` headers too.
    ("X-Mailgun-", "Mailgun"),
    // Postmark's SMTP controls (`X-PM-Message-Stream`, `X-PM-Tag`, `X-PM-Metadata-<key>`,
    // `X-PM-TrackOpens`, `X-PM-KeepID`, …).
    ("X-PM-", "Postmark"),
];

/// Whole header names a provider reads as instructions, compared case-insensitively.
pub const PROVIDER_CONTROL_HEADERS: &[(&str, &str)] = &[
    // SendGrid's SMTP API header: JSON that sets categories, unique args (our id), filters
    // (tracking, bypassing suppressions), ASM groups and scheduling.
    ("X-SMTPAPI", "SendGrid"),
];
/// The prefix of metadata keys reserved for mailgate (our message id travels under one).
const RESERVED_METADATA_PREFIX: &str = "mailgate_";

/// The machine-readable error codes of this module.
pub mod code {
    /// 422: `subject`, `html` or `text` given together with `template`.
    pub const TEMPLATE_CONFLICT: &str = "template_conflict";
    /// 400: the body is not valid JSON (syntax error, truncated, trailing characters).
    pub const MALFORMED_JSON: &str = "malformed_json";
    /// 400: a value has the wrong JSON type (or a key is repeated).
    pub const INVALID_TYPE: &str = "invalid_type";
    /// 400: a field this API does not know.
    pub const UNKNOWN_FIELD: &str = "unknown_field";
    /// 422: a required field is absent, null or empty.
    pub const REQUIRED: &str = "required";
    /// 422: a value is longer than allowed.
    pub const TOO_LONG: &str = "too_long";
    /// 422: an address is not a valid email address.
    pub const INVALID_ADDRESS: &str = "invalid_address";
    /// 422: a display name on a recipient or `reply_to` (only `from` carries one).
    pub const UNSUPPORTED_DISPLAY_NAME: &str = "unsupported_display_name";
    /// 422: more recipients in to + cc + bcc than allowed.
    pub const TOO_MANY_RECIPIENTS: &str = "too_many_recipients";
    /// 422: a CR, LF or NUL in a value that ends up in a header.
    pub const HEADER_INJECTION: &str = "header_injection";
    /// 422: neither `html` nor `text` has content.
    pub const MISSING_BODY: &str = "missing_body";
    /// 422: a header name that is not RFC 5322 field-name characters.
    pub const INVALID_HEADER_NAME: &str = "invalid_header_name";
    /// 422: a header value with a control character other than tab.
    pub const INVALID_HEADER_VALUE: &str = "invalid_header_value";
    /// 422: a header mailgate or the provider sets.
    pub const RESERVED_HEADER: &str = "reserved_header";
    /// 422: the same header name twice (case-insensitively).
    pub const DUPLICATE_HEADER: &str = "duplicate_header";
    /// 422: more custom headers than allowed.
    pub const TOO_MANY_HEADERS: &str = "too_many_headers";
    /// 422: an attachment file name with a path separator, control character or dot-only name.
    pub const INVALID_FILENAME: &str = "invalid_filename";
    /// 422: an attachment content type that is not `type/subtype`.
    pub const INVALID_CONTENT_TYPE: &str = "invalid_content_type";
    /// 422: attachment content that is not standard base64.
    pub const INVALID_BASE64: &str = "invalid_base64";
    /// 422: the attachments together are larger than allowed.
    pub const ATTACHMENT_TOO_LARGE: &str = "attachment_too_large";
    /// 422: more tags than allowed.
    pub const TOO_MANY_TAGS: &str = "too_many_tags";
    /// 422: a tag that is empty or has a character outside `A-Z a-z 0-9 _ -`.
    pub const INVALID_TAG: &str = "invalid_tag";
    /// 422: a metadata key that is empty or has a character outside `A-Z a-z 0-9 _ - .`.
    pub const INVALID_METADATA_KEY: &str = "invalid_metadata_key";
    /// 422: a metadata value with a control character.
    pub const INVALID_METADATA_VALUE: &str = "invalid_metadata_value";
    /// 422: a metadata key starting with `mailgate_`.
    pub const RESERVED_METADATA_KEY: &str = "reserved_metadata_key";
    /// 422: the metadata serializes to more bytes than allowed.
    pub const METADATA_TOO_LARGE: &str = "metadata_too_large";
    /// 422: `send_at` is not an RFC 3339 date-time.
    pub const INVALID_DATETIME: &str = "invalid_datetime";
    /// 422: `send_at` is not in the future.
    pub const SEND_AT_IN_PAST: &str = "send_at_in_past";
    /// 422: `send_at` is further ahead than the scheduling horizon.
    pub const SEND_AT_TOO_FAR: &str = "send_at_too_far";
    /// 422: `provider` names no provider mailgate knows.
    pub const UNKNOWN_PROVIDER: &str = "unknown_provider";
    /// 422: a `live` key sent to the event simulator's domain (`crate::sandbox`).
    pub const SIMULATOR_REQUIRES_TEST_KEY: &str = "simulator_requires_test_key";
    /// 422: `category` is neither `transactional` nor `bulk`.
    pub const INVALID_CATEGORY: &str = "invalid_category";
    /// 422: a batch with more messages than allowed.
    pub const TOO_MANY_MESSAGES: &str = "too_many_messages";
    /// 422: `topic` is not `[a-z0-9_-]{1,64}`.
    pub const INVALID_TOPIC: &str = "invalid_topic";
    /// 422: a `List-Unsubscribe` header without its `List-Unsubscribe-Post:
    /// List-Unsubscribe=One-Click` (or the other way round): mailbox providers require both.
    pub const LIST_UNSUBSCRIBE_WITHOUT_POST: &str = "list_unsubscribe_without_post";
    /// 422: `"unsubscribe": false` on a bulk message: bulk mail always carries one-click
    /// unsubscribe.
    pub const UNSUBSCRIBE_REQUIRED: &str = "unsubscribe_required";
    /// 422: a message carrying mailgate's one-click link has more than one recipient; the link
    /// is per recipient, so send one message per recipient (a batch).
    pub const UNSUBSCRIBE_ONE_RECIPIENT: &str = "unsubscribe_one_recipient";
    /// 422: a message needs a one-click unsubscribe link (bulk, or `"unsubscribe": true`) and
    /// this deployment has no signing keys (checked by the accept service, not here).
    pub const UNSUBSCRIBE_NOT_CONFIGURED: &str = "unsubscribe_not_configured";
    /// 422: `correlation_id` is empty or has a character outside printable ASCII
    /// (`!` to `~` and space).
    pub const INVALID_CORRELATION_ID: &str = "invalid_correlation_id";
    /// 422: `"track_replies": true` and this deployment sets no `INBOUND_DOMAIN` (or no
    /// `UNSUBSCRIBE_SIGNING_KEYS` to sign reply addresses; checked by the accept service).
    pub const TRACK_REPLIES_NOT_CONFIGURED: &str = "track_replies_not_configured";
    /// 422: `"track_replies": true` with a `reply_to`: the reply address is the `Reply-To`.
    pub const TRACK_REPLIES_WITH_REPLY_TO: &str = "track_replies_with_reply_to";
}

/// The codes answered with 400; every other code is 422.
const BAD_REQUEST_CODES: &[&str] = &[
    code::MALFORMED_JSON,
    code::INVALID_TYPE,
    code::UNKNOWN_FIELD,
];

/// One problem with a request, pointing at the JSON value at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// A stable, snake_case code for programs (see [`code`]).
    pub code: &'static str,
    /// A sentence for people. It never repeats an address from the request.
    pub message: String,
    /// The JSON path of the value at fault (`to[2]`, `headers.X-Foo`,
    /// `attachments[0].content`, `messages[3].to[0]`); empty when the fault is the body as a
    /// whole.
    pub field: String,
}

impl FieldError {
    /// An error at `field`.
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: field.into(),
        }
    }

    /// The HTTP status this error asks for: 400 for malformed JSON, wrong types and unknown
    /// fields, 422 for everything else.
    pub fn status(&self) -> u16 {
        if BAD_REQUEST_CODES.contains(&self.code) {
            400
        } else {
            422
        }
    }

    /// The field, or `None` when the error is about the body as a whole.
    pub fn field_path(&self) -> Option<&str> {
        (!self.field.is_empty()).then_some(self.field.as_str())
    }

    /// The error from deserializing a body with `serde_path_to_error`, pointing at the path
    /// serde reached: `malformed_json` for syntax errors, `invalid_type` for the rest.
    pub fn from_json_error(err: &serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = err.path().to_string();
        let field = if path == "." { String::new() } else { path };
        let mut error = Self::from(err.inner());
        error.field = field;
        error
    }

    /// The same error inside a larger body: `to[0]` under `messages[3]` is `messages[3].to[0]`.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// A plain `serde_json` error knows only a line and column, so the field is empty; prefer
/// [`FieldError::from_json_error`] (or [`parse_json`]), which knows the path.
impl From<&serde_json::Error> for FieldError {
    fn from(err: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let code = match err.classify() {
            Category::Data => code::INVALID_TYPE,
            Category::Syntax | Category::Eof | Category::Io => code::MALFORMED_JSON,
        };
        let message = match err.classify() {
            Category::Eof if err.line() <= 1 && err.column() == 0 => {
                "the request body is empty; expected a JSON object".to_owned()
            }
            _ => err.to_string(),
        };
        Self::new(code, String::new(), message)
    }
}

/// The status for a list of errors: 400 if any of them is a shape error, else 422.
pub fn response_status(errors: &[FieldError]) -> u16 {
    if errors.iter().any(|e| e.status() == 400) {
        400
    } else {
        422
    }
}

/// Deserializes a JSON body, reporting the first shape error with its JSON path.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, FieldError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| FieldError::from_json_error(&e))?;
    deserializer.end().map_err(|e| FieldError::from(&e))?;
    Ok(value)
}

/// The limits validation applies; the defaults are the documented API limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendLimits {
    /// Recipients in to + cc + bcc, as sent (default 50).
    pub max_recipients: usize,
    /// Decoded bytes of all attachments together (default 10 MiB).
    pub max_attachment_bytes: usize,
    /// Custom headers (default 50).
    pub max_headers: usize,
    /// Tags (default 10).
    pub max_tags: usize,
    /// Characters in one tag (default 64).
    pub max_tag_chars: usize,
    /// Bytes of the metadata serialized as compact JSON (default 2 KiB).
    pub max_metadata_bytes: usize,
    /// Characters in one metadata key (default 64).
    pub max_metadata_key_chars: usize,
    /// Characters in one metadata value (default 512).
    pub max_metadata_value_chars: usize,
    /// How far ahead `send_at` may be (default 30 days).
    pub max_schedule_horizon: Duration,
    /// Messages in one batch (default 100).
    pub max_batch_messages: usize,
}

impl Default for SendLimits {
    fn default() -> Self {
        Self {
            max_recipients: 50,
            max_attachment_bytes: 10 * 1024 * 1024,
            max_headers: 50,
            max_tags: 10,
            max_tag_chars: 64,
            max_metadata_bytes: 2 * 1024,
            max_metadata_key_chars: 64,
            max_metadata_value_chars: 512,
            max_schedule_horizon: Duration::days(30),
            max_batch_messages: 100,
        }
    }
}

/// A request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedSend {
    /// The message, ready for any provider.
    pub email: OutboundEmail,
    /// When to send it (UTC), if scheduled; always in the future at validation time.
    pub send_at: Option<OffsetDateTime>,
    /// The only provider to send through (never fall back), if the caller chose one.
    pub provider: Option<ProviderId>,
    /// `"track_replies": true`: the accept service sets a signed reply address as `Reply-To`.
    pub track_replies: bool,
}

/// The outcome of validating one message.
pub type SendValidation = Result<ValidatedSend, Vec<FieldError>>;

/// An address as the API accepts it: `"a@b.c"` or `{"email": "a@b.c", "name": "A"}`.
#[derive(Clone, PartialEq, Eq)]
enum AddressInput {
    Bare(String),
    Object {
        email: Option<String>,
        name: Option<String>,
        unknown: Vec<String>,
    },
}

impl<'de> Deserialize<'de> for AddressInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AddressVisitor;

        impl<'de> Visitor<'de> for AddressVisitor {
            type Value = AddressInput;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an email address string or an object with `email` and optional `name`")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(AddressInput::Bare(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(AddressInput::Bare(v))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let (mut email, mut name, mut unknown) = (None, None, Vec::new());
                let (mut seen_email, mut seen_name) = (false, false);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "email" if seen_email => return Err(de::Error::duplicate_field("email")),
                        "email" => {
                            seen_email = true;
                            email = map.next_value()?;
                        }
                        "name" if seen_name => return Err(de::Error::duplicate_field("name")),
                        "name" => {
                            seen_name = true;
                            name = map.next_value()?;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            unknown.push(key);
                        }
                    }
                }
                Ok(AddressInput::Object {
                    email,
                    name,
                    unknown,
                })
            }
        }

        deserializer.deserialize_any(AddressVisitor)
    }
}

/// `Debug` masks the address like [`EmailAddress`] does and hides the name.
impl fmt::Debug for AddressInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (email, name) = match self {
            AddressInput::Bare(email) => (Some(email), &None),
            AddressInput::Object { email, name, .. } => (email.as_ref(), name),
        };
        f.debug_struct("Address")
            .field("email", &email.map(|e| masked_raw(e)))
            .field("name", &name.as_ref().map(|_| "<set>"))
            .finish()
    }
}

fn masked_raw(raw: &str) -> String {
    EmailAddress::parse(raw).map_or_else(|_| "<invalid>".to_owned(), |a| a.masked())
}

/// Custom headers as a JSON object, kept in request order (a map would sort them and hide
/// duplicates).
#[derive(Clone, Default, PartialEq, Eq)]
struct HeaderInput(Vec<(String, String)>);

impl<'de> Deserialize<'de> for HeaderInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeaderVisitor;

        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = HeaderInput;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of header names to string values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut headers = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, String>()? {
                    headers.push((name, value));
                }
                Ok(HeaderInput(headers))
            }
        }

        deserializer.deserialize_map(HeaderVisitor)
    }
}

/// One attachment as the API accepts it.
#[derive(Clone, Deserialize)]
struct AttachmentInput {
    filename: Option<String>,
    content_type: Option<String>,
    content: Option<String>,
    #[serde(flatten)]
    unknown: BTreeMap<String, IgnoredAny>,
}

impl fmt::Debug for AttachmentInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("filename", &self.filename)
            .field("content_type", &self.content_type)
            .field("content_chars", &self.content.as_ref().map(String::len))
            .finish()
    }
}

/// The body of `POST /v1/messages`, as sent; only [`SendRequest::validate`] makes it usable.
///
/// `Debug` masks every address and shows only the size of bodies and attachments.
#[derive(Clone, Deserialize)]
pub struct SendRequest {
    from: Option<AddressInput>,
    to: Option<Vec<AddressInput>>,
    cc: Option<Vec<AddressInput>>,
    bcc: Option<Vec<AddressInput>>,
    reply_to: Option<AddressInput>,
    subject: Option<String>,
    html: Option<String>,
    text: Option<String>,
    headers: Option<HeaderInput>,
    attachments: Option<Vec<AttachmentInput>>,
    tags: Option<Vec<String>>,
    metadata: Option<BTreeMap<String, String>>,
    send_at: Option<String>,
    provider: Option<String>,
    category: Option<String>,
    template: Option<crate::template::TemplateUse>,
    topic: Option<String>,
    unsubscribe: Option<bool>,
    correlation_id: Option<String>,
    track_replies: Option<bool>,
    #[serde(flatten)]
    unknown: BTreeMap<String, IgnoredAny>,
}

impl fmt::Debug for SendRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendRequest")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("cc", &self.cc)
            .field("bcc", &self.bcc)
            .field("reply_to", &self.reply_to)
            .field("subject_chars", &self.subject.as_ref().map(String::len))
            .field("html_chars", &self.html.as_ref().map(String::len))
            .field("text_chars", &self.text.as_ref().map(String::len))
            .field(
                "header_names",
                &self
                    .headers
                    .as_ref()
                    .map(|h| h.0.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()),
            )
            .field("attachments", &self.attachments)
            .field("tags", &self.tags)
            .field(
                "metadata_keys",
                &self.metadata.as_ref().map(|m| m.keys().collect::<Vec<_>>()),
            )
            .field("send_at", &self.send_at)
            .field("provider", &self.provider)
            .field("category", &self.category)
            .field("topic", &self.topic)
            .field("unsubscribe", &self.unsubscribe)
            .field("correlation_id", &self.correlation_id)
            .field("track_replies", &self.track_replies)
            .field("unknown_fields", &self.unknown.keys().collect::<Vec<_>>())
            .finish()
    }
}

const SEND_REQUEST_FIELDS: &str = "from, to, cc, bcc, reply_to, subject, html, text, headers, \
     attachments, tags, metadata, send_at, provider, category, template, topic, unsubscribe, \
     correlation_id, track_replies";

impl SendRequest {
    /// Deserializes a `POST /v1/messages` body; a shape error is one 400 [`FieldError`].
    pub fn from_json(body: &[u8]) -> Result<Self, FieldError> {
        parse_json(body)
    }

    /// The template the request sends with, if any.
    pub fn template(&self) -> Option<&crate::template::TemplateUse> {
        self.template.as_ref()
    }

    /// Fills the subject and bodies from a rendered template. A request that names a template
    /// and also gives `subject`, `html` or `text` is refused: which one would be sent is not
    /// for us to guess.
    pub fn apply_template(
        &mut self,
        rendered: crate::template::TemplateContent,
    ) -> Result<(), FieldError> {
        for (given, name) in [
            (self.subject.is_some(), "subject"),
            (self.html.is_some(), "html"),
            (self.text.is_some(), "text"),
        ] {
            if given {
                return Err(FieldError::new(
                    code::TEMPLATE_CONFLICT,
                    name,
                    format!("`{name}` cannot be given with `template`; the template renders it"),
                ));
            }
        }
        self.subject = Some(rendered.subject);
        self.html = rendered.html;
        self.text = rendered.text;
        Ok(())
    }

    /// Checks every rule against `limits` and the injected `now`, and builds the message under
    /// `message_id`. All failures are returned, 400-class ones first, then in field order.
    pub fn validate(
        self,
        limits: &SendLimits,
        now: OffsetDateTime,
        message_id: MessageId,
    ) -> SendValidation {
        self.validate_with(limits, now, || message_id)
    }

    fn validate_with(
        self,
        limits: &SendLimits,
        now: OffsetDateTime,
        message_id: impl FnOnce() -> MessageId,
    ) -> SendValidation {
        let mut errors = Errors::default();
        for key in self.unknown.keys() {
            errors.unknown_field(key, "", SEND_REQUEST_FIELDS);
        }
        let parts = Parts::check(self, limits, now, &mut errors);
        match (parts, errors.finish()) {
            (Some(parts), None) => Ok(parts.into_validated(message_id())),
            (_, Some(errors)) => Err(errors),
            // Parts are only missing when an error was recorded.
            (None, None) => Err(vec![FieldError::new(
                code::REQUIRED,
                "",
                "the request is incomplete",
            )]),
        }
    }
}

/// The body of `POST /v1/messages/batch`: `{"messages": [ … ]}`.
#[derive(Clone, Deserialize)]
pub struct BatchSendRequest {
    messages: Option<Vec<SendRequest>>,
    #[serde(flatten)]
    unknown: BTreeMap<String, IgnoredAny>,
}

impl BatchSendRequest {
    /// The batch's messages, to fill their templates before validation.
    pub fn messages_mut(&mut self) -> &mut [SendRequest] {
        self.messages.as_deref_mut().unwrap_or_default()
    }
}

impl fmt::Debug for BatchSendRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchSendRequest")
            .field("messages", &self.messages)
            .field("unknown_fields", &self.unknown.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl BatchSendRequest {
    /// Deserializes a batch body; a shape error anywhere (e.g. `messages[3].to[0]`) is one 400
    /// [`FieldError`].
    pub fn from_json(body: &[u8]) -> Result<Self, FieldError> {
        parse_json(body)
    }

    /// Validates each message on its own. The outer error is the batch as a whole (unknown
    /// fields, no messages, more than `limits.max_batch_messages`); otherwise there is one result
    /// per message, in order, with fields prefixed `messages[i]`. `next_id` is called once per
    /// valid message.
    pub fn validate_batch(
        self,
        limits: &SendLimits,
        now: OffsetDateTime,
        mut next_id: impl FnMut() -> MessageId,
    ) -> Result<Vec<SendValidation>, Vec<FieldError>> {
        let mut errors = Errors::default();
        for key in self.unknown.keys() {
            errors.unknown_field(key, "", "messages");
        }
        let messages = self.messages.unwrap_or_default();
        if messages.is_empty() {
            errors.push(
                code::REQUIRED,
                "messages".into(),
                "`messages` must hold at least one message",
            );
        } else if messages.len() > limits.max_batch_messages {
            errors.push(
                code::TOO_MANY_MESSAGES,
                "messages".into(),
                format!(
                    "a batch holds at most {} messages; this one has {}",
                    limits.max_batch_messages,
                    messages.len()
                ),
            );
        }
        if let Some(errors) = errors.finish() {
            return Err(errors);
        }
        Ok(messages
            .into_iter()
            .enumerate()
            .map(|(i, message)| {
                let prefix = format!("messages[{i}]");
                message
                    .validate_with(limits, now, &mut next_id)
                    .map_err(|errors| errors.into_iter().map(|e| e.prefixed(&prefix)).collect())
            })
            .collect())
    }
}

/// Collects errors, keeping shape (400) errors ahead of value (422) errors.
#[derive(Default)]
struct Errors {
    shape: Vec<FieldError>,
    values: Vec<FieldError>,
}

impl Errors {
    fn push(&mut self, code: &'static str, field: String, message: impl Into<String>) {
        let error = FieldError::new(code, field, message);
        if error.status() == 400 {
            self.shape.push(error);
        } else {
            self.values.push(error);
        }
    }

    fn unknown_field(&mut self, key: &str, parent: &str, expected: &str) {
        self.push(
            code::UNKNOWN_FIELD,
            join(parent, key),
            format!("unknown field `{}`; expected {expected}", printable(key)),
        );
    }

    fn finish(mut self) -> Option<Vec<FieldError>> {
        self.shape.append(&mut self.values);
        (!self.shape.is_empty()).then_some(self.shape)
    }
}

/// `parent.key`, or `key` at the top level; control characters in keys are escaped.
fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        printable(key)
    } else {
        format!("{parent}.{}", printable(key))
    }
}

/// The text with control characters escaped, safe to echo in a path or message.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn has_line_break_or_nul(s: &str) -> bool {
    s.contains(['\r', '\n', '\0'])
}

/// Everything a valid request yields except the id.
struct Parts {
    from: Mailbox,
    to: Vec<EmailAddress>,
    cc: Vec<EmailAddress>,
    bcc: Vec<EmailAddress>,
    reply_to: Option<EmailAddress>,
    subject: String,
    html: Option<String>,
    text: Option<String>,
    headers: Vec<(String, String)>,
    attachments: Vec<Attachment>,
    tags: Vec<String>,
    metadata: BTreeMap<String, String>,
    send_at: Option<OffsetDateTime>,
    provider: Option<ProviderId>,
    category: MessageCategory,
    topic: Option<String>,
    one_click: bool,
    correlation_id: Option<String>,
    track_replies: bool,
}

impl Parts {
    /// Checks every field, recording each failure; `None` when anything failed.
    fn check(
        request: SendRequest,
        limits: &SendLimits,
        now: OffsetDateTime,
        errors: &mut Errors,
    ) -> Option<Self> {
        let from = check_from(request.from, errors);
        let (to, cc, bcc) = check_recipients(request.to, request.cc, request.bcc, limits, errors);
        let reply_to_given = request.reply_to.is_some();
        let reply_to = match request.reply_to {
            None => Some(None),
            Some(input) => check_bare_address(input, "reply_to".into(), errors).map(Some),
        };
        let subject = check_subject(request.subject, errors);
        let (html, text) = check_body(request.html, request.text, errors);
        let headers = check_headers(request.headers.unwrap_or_default().0, limits, errors);
        let attachments =
            check_attachments(request.attachments.unwrap_or_default(), limits, errors);
        let tags = check_tags(request.tags.unwrap_or_default(), limits, errors);
        let metadata = check_metadata(request.metadata.unwrap_or_default(), limits, errors);
        let send_at = check_send_at(request.send_at, limits, now, errors);
        let provider = check_provider(request.provider, errors);
        let category = check_category(request.category, errors);
        let topic = check_topic(request.topic, errors);
        let track_replies = request.track_replies.unwrap_or(false);
        if track_replies && reply_to_given {
            errors.push(
                code::TRACK_REPLIES_WITH_REPLY_TO,
                "track_replies".into(),
                "`track_replies` sets the Reply-To to a reply address of this message; leave \
                 `reply_to` out",
            );
        }
        let one_click = check_unsubscribe(
            request.unsubscribe,
            category,
            headers.as_deref(),
            to.as_ref()
                .zip(cc.as_ref())
                .zip(bcc.as_ref())
                .map(|((to, cc), bcc)| to.len() + cc.len() + bcc.len()),
            errors,
        );
        let correlation_id = check_correlation_id(request.correlation_id, errors);
        Some(Self {
            from: from?,
            to: to?,
            cc: cc?,
            bcc: bcc?,
            reply_to: reply_to?,
            subject: subject?,
            html,
            text,
            headers: headers?,
            attachments: attachments?,
            tags: tags?,
            metadata: metadata?,
            send_at: send_at?,
            provider: provider?,
            category: category?,
            topic: topic?,
            one_click: one_click?,
            correlation_id: correlation_id?,
            track_replies,
        })
    }

    fn into_validated(self, message_id: MessageId) -> ValidatedSend {
        ValidatedSend {
            email: OutboundEmail {
                message_id,
                from: self.from,
                to: self.to,
                cc: self.cc,
                bcc: self.bcc,
                reply_to: self.reply_to,
                subject: self.subject,
                text: self.text,
                html: self.html,
                headers: self.headers,
                attachments: self.attachments,
                tags: self.tags,
                metadata: self.metadata,
                category: self.category,
                topic: self.topic,
                one_click: self.one_click,
                correlation_id: self.correlation_id,
            },
            send_at: self.send_at,
            provider: self.provider,
            track_replies: self.track_replies,
        }
    }
}

/// The address and name of an address input, with the path of the address value. Unknown keys
/// are recorded; `None` when the address is missing.
fn split_address(
    input: AddressInput,
    field: &str,
    errors: &mut Errors,
) -> Option<(String, String, Option<String>)> {
    match input {
        AddressInput::Bare(email) => Some((email, field.to_owned(), None)),
        AddressInput::Object {
            email,
            name,
            unknown,
        } => {
            for key in &unknown {
                errors.unknown_field(key, field, "email, name");
            }
            let path = format!("{field}.email");
            match email {
                Some(email) => Some((email, path, name)),
                None => {
                    errors.push(code::REQUIRED, path, "`email` is required");
                    None
                }
            }
        }
    }
}

fn parse_address(raw: &str, field: String, errors: &mut Errors) -> Option<EmailAddress> {
    match EmailAddress::parse(raw) {
        Ok(address) => Some(address),
        Err(err) => {
            errors.push(code::INVALID_ADDRESS, field, err.to_string());
            None
        }
    }
}

fn check_from(input: Option<AddressInput>, errors: &mut Errors) -> Option<Mailbox> {
    let Some(input) = input else {
        errors.push(code::REQUIRED, "from".into(), "`from` is required");
        return None;
    };
    let (raw, path, name) = split_address(input, "from", errors)?;
    let address = parse_address(&raw, path, errors);
    let name_ok = match &name {
        Some(name) if has_line_break_or_nul(name) => {
            errors.push(
                code::HEADER_INJECTION,
                "from.name".into(),
                "the display name may not contain CR, LF or NUL",
            );
            false
        }
        Some(name) if name.chars().count() > MAX_DISPLAY_NAME_CHARS => {
            errors.push(
                code::TOO_LONG,
                "from.name".into(),
                format!("the display name is longer than {MAX_DISPLAY_NAME_CHARS} characters"),
            );
            false
        }
        _ => true,
    };
    let address = address.filter(|_| name_ok)?;
    Some(match name {
        Some(name) => Mailbox::named(address, name),
        None => Mailbox::new(address),
    })
}

/// An address that may not carry a display name (recipients and `reply_to`).
fn check_bare_address(
    input: AddressInput,
    field: String,
    errors: &mut Errors,
) -> Option<EmailAddress> {
    let (raw, path, name) = split_address(input, &field, errors)?;
    let address = parse_address(&raw, path, errors);
    if name.is_some_and(|n| !n.trim().is_empty()) {
        errors.push(
            code::UNSUPPORTED_DISPLAY_NAME,
            format!("{field}.name"),
            "a display name is supported on `from` only; send the bare address",
        );
        return None;
    }
    address
}

type Recipients = (
    Option<Vec<EmailAddress>>,
    Option<Vec<EmailAddress>>,
    Option<Vec<EmailAddress>>,
);

fn check_recipients(
    to: Option<Vec<AddressInput>>,
    cc: Option<Vec<AddressInput>>,
    bcc: Option<Vec<AddressInput>>,
    limits: &SendLimits,
    errors: &mut Errors,
) -> Recipients {
    let lists = [
        ("to", to.unwrap_or_default()),
        ("cc", cc.unwrap_or_default()),
        ("bcc", bcc.unwrap_or_default()),
    ];
    let mut failed = false;
    if lists[0].1.is_empty() {
        errors.push(
            code::REQUIRED,
            "to".into(),
            "at least one `to` recipient is required",
        );
        failed = true;
    }
    let total: usize = lists.iter().map(|(_, list)| list.len()).sum();
    if total > limits.max_recipients {
        // Point at the first entry over the cap.
        let mut remaining = limits.max_recipients;
        let mut field = String::from("to");
        for (name, list) in &lists {
            if remaining < list.len() {
                field = format!("{name}[{remaining}]");
                break;
            }
            remaining -= list.len();
        }
        errors.push(
            code::TOO_MANY_RECIPIENTS,
            field,
            format!(
                "a message has at most {} recipients across to, cc and bcc; this one has {total}",
                limits.max_recipients
            ),
        );
        return (None, None, None);
    }
    let mut seen = HashSet::new();
    let mut out: [Vec<EmailAddress>; 3] = Default::default();
    for ((name, list), kept) in lists.into_iter().zip(out.iter_mut()) {
        for (i, input) in list.into_iter().enumerate() {
            match check_bare_address(input, format!("{name}[{i}]"), errors) {
                Some(address) => {
                    if seen.insert(suppression_key(&address)) {
                        kept.push(address);
                    }
                }
                None => failed = true,
            }
        }
    }
    if failed {
        return (None, None, None);
    }
    let [to, cc, bcc] = out;
    (Some(to), Some(cc), Some(bcc))
}

fn check_subject(subject: Option<String>, errors: &mut Errors) -> Option<String> {
    let subject = subject.unwrap_or_default();
    if subject.trim().is_empty() {
        errors.push(code::REQUIRED, "subject".into(), "`subject` is required");
        None
    } else if has_line_break_or_nul(&subject) {
        errors.push(
            code::HEADER_INJECTION,
            "subject".into(),
            "the subject may not contain CR, LF or NUL",
        );
        None
    } else if subject.chars().count() > MAX_SUBJECT_CHARS {
        errors.push(
            code::TOO_LONG,
            "subject".into(),
            format!("the subject is longer than {MAX_SUBJECT_CHARS} characters"),
        );
        None
    } else {
        Some(subject)
    }
}

/// Empty bodies count as absent; at least one must remain.
fn check_body(
    html: Option<String>,
    text: Option<String>,
    errors: &mut Errors,
) -> (Option<String>, Option<String>) {
    let html = html.filter(|h| !h.trim().is_empty());
    let text = text.filter(|t| !t.trim().is_empty());
    if html.is_none() && text.is_none() {
        errors.push(
            code::MISSING_BODY,
            "text".into(),
            "a message needs `html`, `text` or both, with content",
        );
    }
    (html, text)
}

/// RFC 5322 field-name: one or more printable ASCII characters except the colon.
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| matches!(b, 33..=57 | 59..=126))
}

/// Who reserves the header `name`, if anyone: `"mailgate"` or the provider it steers.
fn header_reserved_by(name: &str) -> Option<&'static str> {
    if RESERVED_HEADERS
        .iter()
        .any(|r| r.eq_ignore_ascii_case(name))
    {
        return Some("mailgate");
    }
    PROVIDER_CONTROL_HEADERS
        .iter()
        .find(|(reserved, _)| reserved.eq_ignore_ascii_case(name))
        .or_else(|| {
            RESERVED_HEADER_PREFIXES.iter().find(|(prefix, _)| {
                name.get(..prefix.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
            })
        })
        .map(|(_, owner)| *owner)
}

fn check_headers(
    headers: Vec<(String, String)>,
    limits: &SendLimits,
    errors: &mut Errors,
) -> Option<Vec<(String, String)>> {
    if headers.len() > limits.max_headers {
        errors.push(
            code::TOO_MANY_HEADERS,
            "headers".into(),
            format!(
                "a message has at most {} custom headers; this one has {}",
                limits.max_headers,
                headers.len()
            ),
        );
        return None;
    }
    let mut failed = false;
    let mut seen = HashSet::new();
    for (name, value) in &headers {
        let field = join("headers", name);
        let problem = if has_line_break_or_nul(name) || has_line_break_or_nul(value) {
            Some((
                code::HEADER_INJECTION,
                "header names and values may not contain CR, LF or NUL".to_owned(),
            ))
        } else if !is_field_name(name) {
            Some((
                code::INVALID_HEADER_NAME,
                "a header name is printable ASCII without spaces or colons".to_owned(),
            ))
        } else if let Some(owner) = header_reserved_by(name) {
            let why = if owner == "mailgate" {
                "mailgate sets it".to_owned()
            } else {
                format!("it is a {owner} control header, which steers the provider")
            };
            Some((
                code::RESERVED_HEADER,
                format!("the {name} header is reserved and may not be set: {why}"),
            ))
        } else if !seen.insert(name.to_ascii_lowercase()) {
            Some((
                code::DUPLICATE_HEADER,
                format!("the {name} header is given more than once"),
            ))
        } else if value.chars().any(|c| c.is_control() && c != '\t') {
            Some((
                code::INVALID_HEADER_VALUE,
                "a header value may not contain control characters other than tab".to_owned(),
            ))
        } else {
            None
        };
        if let Some((code, message)) = problem {
            errors.push(code, field, message);
            failed = true;
        }
    }
    (!failed).then_some(headers)
}

/// RFC 2045 token: printable ASCII except space and tspecials.
fn is_mime_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
}

fn check_filename(filename: Option<String>, field: String, errors: &mut Errors) -> Option<String> {
    let Some(filename) = filename.filter(|f| !f.trim().is_empty()) else {
        errors.push(code::REQUIRED, field, "`filename` is required");
        return None;
    };
    let problem = if has_line_break_or_nul(&filename) {
        Some((
            code::HEADER_INJECTION,
            "the file name may not contain CR, LF or NUL".to_owned(),
        ))
    } else if filename.contains(['/', '\\'])
        || filename.chars().any(char::is_control)
        || filename.trim_matches('.').is_empty()
    {
        Some((
            code::INVALID_FILENAME,
            "the file name may not contain path separators or control characters, nor be only dots"
                .to_owned(),
        ))
    } else if filename.chars().count() > MAX_FILENAME_CHARS {
        Some((
            code::TOO_LONG,
            format!("the file name is longer than {MAX_FILENAME_CHARS} characters"),
        ))
    } else {
        None
    };
    match problem {
        Some((code, message)) => {
            errors.push(code, field, message);
            None
        }
        None => Some(filename),
    }
}

fn check_content_type(
    content_type: Option<String>,
    field: String,
    errors: &mut Errors,
) -> Option<String> {
    let Some(content_type) = content_type.filter(|c| !c.trim().is_empty()) else {
        errors.push(code::REQUIRED, field, "`content_type` is required");
        return None;
    };
    let valid = content_type
        .split_once('/')
        .is_some_and(|(kind, subtype)| is_mime_token(kind) && is_mime_token(subtype));
    if valid {
        Some(content_type)
    } else if has_line_break_or_nul(&content_type) {
        errors.push(
            code::HEADER_INJECTION,
            field,
            "the content type may not contain CR, LF or NUL",
        );
        None
    } else {
        errors.push(
            code::INVALID_CONTENT_TYPE,
            field,
            "the content type must be `type/subtype`, e.g. `application/pdf`, without parameters",
        );
        None
    }
}

fn check_attachments(
    inputs: Vec<AttachmentInput>,
    limits: &SendLimits,
    errors: &mut Errors,
) -> Option<Vec<Attachment>> {
    let mut failed = false;
    let mut total: usize = 0;
    let mut over_cap_reported = false;
    let mut attachments = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        let at = format!("attachments[{i}]");
        for key in input.unknown.keys() {
            errors.unknown_field(key, &at, "filename, content_type, content");
        }
        let filename = check_filename(input.filename, format!("{at}.filename"), errors);
        let content_type =
            check_content_type(input.content_type, format!("{at}.content_type"), errors);
        let content_field = format!("{at}.content");
        let content = match input.content {
            None => {
                errors.push(code::REQUIRED, content_field, "`content` is required");
                None
            }
            Some(encoded) => {
                let compact: Vec<u8> = encoded
                    .bytes()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                match base64::engine::general_purpose::STANDARD.decode(compact) {
                    Ok(bytes) => {
                        total = total.saturating_add(bytes.len());
                        if total > limits.max_attachment_bytes && !over_cap_reported {
                            over_cap_reported = true;
                            errors.push(
                                code::ATTACHMENT_TOO_LARGE,
                                content_field,
                                format!(
                                    "attachments may total at most {} bytes once decoded",
                                    limits.max_attachment_bytes
                                ),
                            );
                        }
                        Some(bytes)
                    }
                    Err(err) => {
                        errors.push(
                            code::INVALID_BASE64,
                            content_field,
                            format!("the content is not standard base64: {err}"),
                        );
                        None
                    }
                }
            }
        };
        match (filename, content_type, content) {
            (Some(filename), Some(content_type), Some(content)) if input.unknown.is_empty() => {
                attachments.push(Attachment {
                    filename,
                    content_type,
                    content,
                });
            }
            _ => failed = true,
        }
    }
    (!failed && !over_cap_reported).then_some(attachments)
}

pub(crate) fn is_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn check_tags(tags: Vec<String>, limits: &SendLimits, errors: &mut Errors) -> Option<Vec<String>> {
    if tags.len() > limits.max_tags {
        errors.push(
            code::TOO_MANY_TAGS,
            "tags".into(),
            format!(
                "a message has at most {} tags; this one has {}",
                limits.max_tags,
                tags.len()
            ),
        );
        return None;
    }
    let mut failed = false;
    let mut kept: Vec<String> = Vec::with_capacity(tags.len());
    for (i, tag) in tags.into_iter().enumerate() {
        let field = format!("tags[{i}]");
        if tag.is_empty() || !tag.chars().all(is_tag_char) {
            errors.push(
                code::INVALID_TAG,
                field,
                "a tag is one or more of the characters A-Z, a-z, 0-9, `_` and `-`",
            );
            failed = true;
        } else if tag.len() > limits.max_tag_chars {
            errors.push(
                code::TOO_LONG,
                field,
                format!("a tag is at most {} characters", limits.max_tag_chars),
            );
            failed = true;
        } else if !kept.contains(&tag) {
            kept.push(tag);
        }
    }
    (!failed).then_some(kept)
}

fn is_metadata_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

fn check_metadata(
    metadata: BTreeMap<String, String>,
    limits: &SendLimits,
    errors: &mut Errors,
) -> Option<BTreeMap<String, String>> {
    let mut failed = false;
    for (key, value) in &metadata {
        let field = join("metadata", key);
        if key.is_empty() || !key.chars().all(is_metadata_key_char) {
            errors.push(
                code::INVALID_METADATA_KEY,
                field,
                "a metadata key is one or more of the characters A-Z, a-z, 0-9, `_`, `-` and `.`",
            );
            failed = true;
        } else if key.len() > limits.max_metadata_key_chars {
            errors.push(
                code::TOO_LONG,
                field,
                format!(
                    "a metadata key is at most {} characters",
                    limits.max_metadata_key_chars
                ),
            );
            failed = true;
        } else if key.starts_with(RESERVED_METADATA_PREFIX) || key == MESSAGE_ID_METADATA_KEY {
            errors.push(
                code::RESERVED_METADATA_KEY,
                field,
                format!("metadata keys starting with `{RESERVED_METADATA_PREFIX}` are reserved"),
            );
            failed = true;
        } else if value.chars().any(char::is_control) {
            errors.push(
                code::INVALID_METADATA_VALUE,
                field,
                "a metadata value may not contain control characters",
            );
            failed = true;
        } else if value.chars().count() > limits.max_metadata_value_chars {
            errors.push(
                code::TOO_LONG,
                field,
                format!(
                    "a metadata value is at most {} characters",
                    limits.max_metadata_value_chars
                ),
            );
            failed = true;
        }
    }
    // Serializing a map of strings cannot fail; if it did, count it as over the cap.
    let size = serde_json::to_string(&metadata).map_or(usize::MAX, |json| json.len());
    if size > limits.max_metadata_bytes {
        errors.push(
            code::METADATA_TOO_LARGE,
            "metadata".into(),
            format!(
                "metadata may be at most {} bytes as JSON; this is {size}",
                limits.max_metadata_bytes
            ),
        );
        failed = true;
    }
    (!failed).then_some(metadata)
}

fn check_send_at(
    send_at: Option<String>,
    limits: &SendLimits,
    now: OffsetDateTime,
    errors: &mut Errors,
) -> Option<Option<OffsetDateTime>> {
    let Some(raw) = send_at else {
        return Some(None);
    };
    let field = String::from("send_at");
    let at = match OffsetDateTime::parse(&raw, &Rfc3339) {
        Ok(at) => at.to_offset(UtcOffset::UTC),
        Err(_) => {
            errors.push(
                code::INVALID_DATETIME,
                field,
                "`send_at` must be an RFC 3339 date-time, e.g. 2030-01-31T09:00:00Z",
            );
            return None;
        }
    };
    if at <= now {
        errors.push(
            code::SEND_AT_IN_PAST,
            field,
            "`send_at` must be in the future",
        );
        return None;
    }
    // An unrepresentable horizon is no cap at all.
    if now
        .checked_add(limits.max_schedule_horizon)
        .is_some_and(|latest| at > latest)
    {
        errors.push(
            code::SEND_AT_TOO_FAR,
            field,
            format!(
                "`send_at` may be at most {} hours ahead",
                limits.max_schedule_horizon.whole_hours()
            ),
        );
        return None;
    }
    Some(Some(at))
}

fn check_provider(provider: Option<String>, errors: &mut Errors) -> Option<Option<ProviderId>> {
    let Some(raw) = provider else {
        return Some(None);
    };
    match raw.parse::<ProviderId>() {
        // The simulator is chosen by a `test` key, never named in a request.
        Ok(ProviderId::Simulator) => {
            errors.push(
                code::UNKNOWN_PROVIDER,
                "provider".into(),
                "the simulator cannot be chosen; messages sent with a test API key go to it"
                    .to_owned(),
            );
            None
        }
        Ok(provider) => Some(Some(provider)),
        Err(err) => {
            errors.push(code::UNKNOWN_PROVIDER, "provider".into(), err.to_string());
            None
        }
    }
}

fn check_topic(topic: Option<String>, errors: &mut Errors) -> Option<Option<String>> {
    match topic {
        None => Some(None),
        Some(t) if crate::unsubscribe::is_valid_topic(&t) => Some(Some(t)),
        Some(_) => {
            errors.push(
                code::INVALID_TOPIC,
                "topic".into(),
                "`topic` is 1 to 64 characters of a-z, 0-9, `_` and `-`",
            );
            None
        }
    }
}

/// Whether mailgate adds its one-click headers: for every bulk message and for transactional
/// ones with `"unsubscribe": true`, unless the caller brings its own `List-Unsubscribe` (which
/// must come with `List-Unsubscribe-Post: List-Unsubscribe=One-Click`: Gmail and Yahoo require
/// one-click). `recipients` is the deduplicated count, `None` when the recipients were invalid.
fn check_unsubscribe(
    unsubscribe: Option<bool>,
    category: Option<MessageCategory>,
    headers: Option<&[(String, String)]>,
    recipients: Option<usize>,
    errors: &mut Errors,
) -> Option<bool> {
    use crate::unsubscribe::{LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST, ONE_CLICK_POST_VALUE};
    let category = category?;
    let find = |name: &str| {
        headers
            .unwrap_or_default()
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    let own_link = find(LIST_UNSUBSCRIBE);
    let own_post = find(LIST_UNSUBSCRIBE_POST);
    let mut ok = true;
    match (own_link, own_post) {
        (Some(_), None) => {
            errors.push(
                code::LIST_UNSUBSCRIBE_WITHOUT_POST,
                join("headers", LIST_UNSUBSCRIBE),
                "a List-Unsubscribe header is accepted only together with \
                 `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058); or leave both \
                 out and mailgate adds its own one-click link",
            );
            ok = false;
        }
        (None, Some((name, _))) => {
            errors.push(
                code::LIST_UNSUBSCRIBE_WITHOUT_POST,
                join("headers", name),
                "List-Unsubscribe-Post needs the List-Unsubscribe header it applies to",
            );
            ok = false;
        }
        (Some(_), Some((name, value))) if value.trim() != ONE_CLICK_POST_VALUE => {
            errors.push(
                code::INVALID_HEADER_VALUE,
                join("headers", name),
                format!("List-Unsubscribe-Post must be `{ONE_CLICK_POST_VALUE}`"),
            );
            ok = false;
        }
        _ => {}
    }
    if category == MessageCategory::Bulk && unsubscribe == Some(false) {
        errors.push(
            code::UNSUBSCRIBE_REQUIRED,
            "unsubscribe".into(),
            "bulk mail always carries one-click unsubscribe; leave `unsubscribe` out or set it true",
        );
        ok = false;
    }
    let wanted = category == MessageCategory::Bulk || unsubscribe == Some(true);
    let one_click = wanted && own_link.is_none();
    if one_click && recipients.is_some_and(|n| n > 1) {
        errors.push(
            code::UNSUBSCRIBE_ONE_RECIPIENT,
            "to".into(),
            "a message with mailgate's one-click unsubscribe link has one recipient (the link \
             names them); send one message per recipient, e.g. with POST /v1/messages/batch",
        );
        ok = false;
    }
    ok.then_some(one_click)
}

/// The longest `correlation_id` accepted, in characters.
pub const MAX_CORRELATION_ID_CHARS: usize = 128;

/// A correlation id is 1–[`MAX_CORRELATION_ID_CHARS`] printable ASCII characters, so it fits
/// provider metadata, index keys and log lines as it is.
fn check_correlation_id(
    correlation_id: Option<String>,
    errors: &mut Errors,
) -> Option<Option<String>> {
    let Some(id) = correlation_id else {
        return Some(None);
    };
    if id.is_empty() || !id.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        errors.push(
            code::INVALID_CORRELATION_ID,
            "correlation_id".into(),
            "`correlation_id` is one or more printable ASCII characters",
        );
        None
    } else if id.len() > MAX_CORRELATION_ID_CHARS {
        errors.push(
            code::TOO_LONG,
            "correlation_id".into(),
            format!("`correlation_id` is at most {MAX_CORRELATION_ID_CHARS} characters"),
        );
        None
    } else {
        Some(Some(id))
    }
}

fn check_category(category: Option<String>, errors: &mut Errors) -> Option<MessageCategory> {
    match category.as_deref() {
        None | Some("transactional") => Some(MessageCategory::Transactional),
        Some("bulk") => Some(MessageCategory::Bulk),
        Some(_) => {
            errors.push(
                code::INVALID_CATEGORY,
                "category".into(),
                "`category` is `transactional` or `bulk`",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn minimal() -> Value {
        json!({
            "from": "sender@example.com",
            "to": ["a@example.com"],
            "subject": "Hi",
            "text": "Hello"
        })
    }

    /// The minimal request with `patch`'s fields set (a `null` removes the field).
    fn with(patch: Value) -> Value {
        let mut request = minimal();
        let (Value::Object(base), Value::Object(patch)) = (&mut request, patch) else {
            panic!("objects only");
        };
        for (key, value) in patch {
            if value.is_null() {
                base.remove(&key);
            } else {
                base.insert(key, value);
            }
        }
        request
    }

    fn parse(body: &Value) -> SendRequest {
        SendRequest::from_json(body.to_string().as_bytes()).expect("the shape is valid")
    }

    fn validate_with_limits(body: Value, limits: &SendLimits) -> SendValidation {
        parse(&body).validate(limits, NOW, MessageId::generate())
    }

    fn validate(body: Value) -> SendValidation {
        validate_with_limits(body, &SendLimits::default())
    }

    fn accepted(body: Value) -> ValidatedSend {
        validate(body).expect("the request is valid")
    }

    fn rejected_with_limits(body: Value, limits: &SendLimits) -> Vec<(&'static str, String)> {
        validate_with_limits(body, limits)
            .expect_err("the request is invalid")
            .into_iter()
            .map(|e| (e.code, e.field))
            .collect()
    }

    fn rejected(body: Value) -> Vec<(&'static str, String)> {
        rejected_with_limits(body, &SendLimits::default())
    }

    fn one(code: &'static str, field: &str) -> Vec<(&'static str, String)> {
        vec![(code, field.to_owned())]
    }

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    fn shape_error(body: &str) -> FieldError {
        SendRequest::from_json(body.as_bytes()).expect_err("the shape is invalid")
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    // --- the happy paths ---

    #[test]
    fn a_minimal_request_becomes_a_transactional_email() {
        let id = MessageId::generate();
        let validated = parse(&minimal())
            .validate(&SendLimits::default(), NOW, id.clone())
            .unwrap();
        let email = &validated.email;
        assert_eq!(email.message_id, id);
        assert_eq!(email.from, Mailbox::new(addr("sender@example.com")));
        assert_eq!(email.to, vec![addr("a@example.com")]);
        assert!(email.cc.is_empty() && email.bcc.is_empty());
        assert_eq!(email.subject, "Hi");
        assert_eq!(email.text.as_deref(), Some("Hello"));
        assert_eq!(email.html, None);
        assert_eq!(email.category, MessageCategory::Transactional);
        assert_eq!(validated.send_at, None);
        assert_eq!(validated.provider, None);
    }

    #[test]
    fn a_full_request_maps_every_field() {
        // A raw body: `json!` would sort the header names.
        let body = r#"{
            "from": {"email": "news@Example.COM", "name": "Example News"},
            "to": ["a@example.com", {"email": "b@example.com"}],
            "cc": ["c@example.com"],
            "bcc": [{"email": "d@example.com", "name": ""}],
            "reply_to": "replies@example.com",
            "subject": "Spring sale",
            "html": "<p>Hi</p>",
            "text": "Hi",
            "headers": {"X-Campaign": "spring", "List-Unsubscribe": "<https://example.com/u>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click", "A-First": "1"},
            "attachments": [{"filename": "a.txt", "content_type": "text/plain", "content": "aGVsbG8="}],
            "tags": ["spring", "sale-2026"],
            "metadata": {"user_id": "42", "plan": "pro"},
            "send_at": "2026-03-02T09:30:00+02:00",
            "provider": "Postmark",
            "category": "bulk"
        }"#;
        let validated = SendRequest::from_json(body.as_bytes())
            .unwrap()
            .validate(&SendLimits::default(), NOW, MessageId::generate())
            .unwrap();
        let email = &validated.email;
        assert_eq!(
            email.from,
            Mailbox::named(addr("news@example.com"), "Example News")
        );
        assert_eq!(email.to, vec![addr("a@example.com"), addr("b@example.com")]);
        assert_eq!(email.cc, vec![addr("c@example.com")]);
        assert_eq!(email.bcc, vec![addr("d@example.com")]);
        assert_eq!(email.reply_to, Some(addr("replies@example.com")));
        assert_eq!(email.html.as_deref(), Some("<p>Hi</p>"));
        assert_eq!(
            email.headers,
            vec![
                ("X-Campaign".to_owned(), "spring".to_owned()),
                (
                    "List-Unsubscribe".to_owned(),
                    "<https://example.com/u>".to_owned()
                ),
                (
                    "List-Unsubscribe-Post".to_owned(),
                    "List-Unsubscribe=One-Click".to_owned()
                ),
                ("A-First".to_owned(), "1".to_owned()),
            ],
            "headers keep request order"
        );
        assert_eq!(
            email.attachments,
            vec![Attachment {
                filename: "a.txt".into(),
                content_type: "text/plain".into(),
                content: b"hello".to_vec(),
            }]
        );
        assert_eq!(email.tags, vec!["spring", "sale-2026"]);
        assert_eq!(email.metadata["user_id"], "42");
        assert_eq!(email.category, MessageCategory::Bulk);
        // The caller brought its own one-click pair, so mailgate adds none.
        assert!(!email.one_click);
        assert_eq!(validated.send_at, Some(datetime!(2026-03-02 07:30 UTC)));
        assert_eq!(validated.send_at.unwrap().offset(), UtcOffset::UTC);
        assert_eq!(validated.provider, Some(ProviderId::Postmark));
    }

    #[test]
    fn null_is_the_same_as_an_absent_field() {
        let mut body = minimal();
        for key in [
            "cc",
            "bcc",
            "reply_to",
            "html",
            "headers",
            "attachments",
            "tags",
            "metadata",
            "send_at",
            "provider",
            "category",
        ] {
            body[key] = Value::Null;
        }
        let validated = accepted(body);
        assert_eq!(validated.email.category, MessageCategory::Transactional);
        assert_eq!(
            rejected(json!({"from": null, "to": null, "subject": null, "text": null})),
            vec![
                (code::REQUIRED, "from".to_owned()),
                (code::REQUIRED, "to".to_owned()),
                (code::REQUIRED, "subject".to_owned()),
                (code::MISSING_BODY, "text".to_owned()),
            ]
        );
    }

    // --- required fields and the body ---

    #[test]
    fn from_to_and_subject_are_required() {
        assert_eq!(
            rejected(with(json!({"from": null}))),
            one(code::REQUIRED, "from")
        );
        assert_eq!(
            rejected(with(json!({"to": null}))),
            one(code::REQUIRED, "to")
        );
        assert_eq!(rejected(with(json!({"to": []}))), one(code::REQUIRED, "to"));
        assert_eq!(
            rejected(with(json!({"to": [], "cc": ["c@example.com"]}))),
            one(code::REQUIRED, "to"),
            "cc alone is not enough"
        );
        assert_eq!(
            rejected(with(json!({"subject": null}))),
            one(code::REQUIRED, "subject")
        );
        assert_eq!(
            rejected(with(json!({"subject": "  "}))),
            one(code::REQUIRED, "subject")
        );
    }

    #[test]
    fn a_message_needs_html_or_text_with_content() {
        assert_eq!(
            rejected(with(json!({"text": null}))),
            one(code::MISSING_BODY, "text")
        );
        assert_eq!(
            rejected(with(json!({"text": "", "html": " "}))),
            one(code::MISSING_BODY, "text")
        );
        let html_only = accepted(with(json!({"text": "", "html": "<b>x</b>"})));
        assert_eq!(html_only.email.text, None);
        assert_eq!(html_only.email.html.as_deref(), Some("<b>x</b>"));
    }

    #[test]
    fn the_subject_has_no_line_breaks_and_a_length_cap() {
        assert_eq!(
            rejected(with(json!({"subject": "Hi\r\nBcc: x@y.z"}))),
            one(code::HEADER_INJECTION, "subject")
        );
        assert_eq!(
            rejected(with(json!({"subject": "Hi\nthere"}))),
            one(code::HEADER_INJECTION, "subject")
        );
        let longest = "é".repeat(MAX_SUBJECT_CHARS);
        assert_eq!(
            accepted(with(json!({"subject": longest.clone()})))
                .email
                .subject,
            longest
        );
        assert_eq!(
            rejected(with(json!({"subject": format!("{longest}x")}))),
            one(code::TOO_LONG, "subject")
        );
    }

    // --- addresses ---

    #[test]
    fn a_bad_address_is_reported_at_its_index() {
        let errors = validate(with(json!({
            "to": ["a@example.com", "b@example.com", "not-an-address"]
        })))
        .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, code::INVALID_ADDRESS);
        assert_eq!(errors[0].field, "to[2]");
        assert_eq!(errors[0].status(), 422);
        assert!(
            !errors[0].message.contains("not-an-address"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn every_bad_address_is_reported_with_the_path_of_its_form() {
        assert_eq!(
            rejected(with(json!({
                "from": {"email": "nope"},
                "to": ["a@example.com", {"email": "x@y@z"}],
                "cc": ["a@example.com\r\nBcc: evil@example.com"],
                "bcc": ["Jane <jane@example.com>"],
                "reply_to": ""
            }))),
            vec![
                (code::INVALID_ADDRESS, "from.email".to_owned()),
                (code::INVALID_ADDRESS, "to[1].email".to_owned()),
                (code::INVALID_ADDRESS, "cc[0]".to_owned()),
                (code::INVALID_ADDRESS, "bcc[0]".to_owned()),
                (code::INVALID_ADDRESS, "reply_to".to_owned()),
            ]
        );
    }

    #[test]
    fn the_object_form_needs_an_email() {
        assert_eq!(
            rejected(with(json!({"to": [{"name": "Jane"}]}))),
            vec![(code::REQUIRED, "to[0].email".to_owned()),]
        );
        assert_eq!(
            rejected(with(json!({"from": {"name": "Jane"}}))),
            one(code::REQUIRED, "from.email")
        );
    }

    #[test]
    fn a_display_name_is_accepted_on_from_only() {
        assert_eq!(
            rejected(with(
                json!({"to": [{"email": "a@example.com", "name": "A"}]})
            )),
            one(code::UNSUPPORTED_DISPLAY_NAME, "to[0].name")
        );
        assert_eq!(
            rejected(with(
                json!({"reply_to": {"email": "r@example.com", "name": "R"}})
            )),
            one(code::UNSUPPORTED_DISPLAY_NAME, "reply_to.name")
        );
        let blank = accepted(with(
            json!({"reply_to": {"email": "r@example.com", "name": " "}}),
        ));
        assert_eq!(blank.email.reply_to, Some(addr("r@example.com")));
    }

    #[test]
    fn the_from_display_name_cannot_inject_headers_or_run_long() {
        assert_eq!(
            rejected(with(
                json!({"from": {"email": "s@example.com", "name": "Eve\r\nBcc: x@y.z"}})
            )),
            one(code::HEADER_INJECTION, "from.name")
        );
        assert_eq!(
            rejected(with(
                json!({"from": {"email": "s@example.com", "name": "n".repeat(MAX_DISPLAY_NAME_CHARS + 1)}})
            )),
            one(code::TOO_LONG, "from.name")
        );
        assert_eq!(
            rejected(with(json!({"from": {"email": "bad", "name": "Eve\nX"}}))),
            vec![
                (code::INVALID_ADDRESS, "from.email".to_owned()),
                (code::HEADER_INJECTION, "from.name".to_owned()),
            ]
        );
    }

    #[test]
    fn fifty_recipients_pass_and_fifty_one_do_not() {
        let list = |n: usize, prefix: &str| -> Vec<String> {
            (0..n).map(|i| format!("{prefix}{i}@example.com")).collect()
        };
        let fifty = accepted(with(
            json!({"to": list(20, "t"), "cc": list(20, "c"), "bcc": list(10, "b")}),
        ));
        assert_eq!(fifty.email.recipients().count(), 50);
        assert_eq!(
            rejected(with(
                json!({"to": list(20, "t"), "cc": list(20, "c"), "bcc": list(11, "b")})
            )),
            one(code::TOO_MANY_RECIPIENTS, "bcc[10]")
        );
        assert_eq!(
            rejected(with(json!({"to": list(51, "t")}))),
            one(code::TOO_MANY_RECIPIENTS, "to[50]")
        );
        // Only the cap is reported, not each entry of an oversized list.
        let mut bad = list(50, "t");
        bad.push("bad".into());
        bad.push("worse".into());
        assert_eq!(
            rejected(with(json!({"to": bad}))),
            one(code::TOO_MANY_RECIPIENTS, "to[50]")
        );
    }

    #[test]
    fn the_recipient_cap_is_configurable() {
        let limits = SendLimits {
            max_recipients: 2,
            ..SendLimits::default()
        };
        assert_eq!(
            rejected_with_limits(
                with(json!({"to": ["a@example.com"], "cc": ["b@example.com", "c@example.com"]})),
                &limits
            ),
            one(code::TOO_MANY_RECIPIENTS, "cc[1]")
        );
    }

    #[test]
    fn duplicate_recipients_are_removed_and_the_first_occurrence_wins() {
        let validated = accepted(with(json!({
            "to": ["a@example.com", "A@EXAMPLE.COM", "b@example.com"],
            "cc": ["b@Example.com", "c@example.com"],
            "bcc": ["a@example.com", "c@example.com", "d@example.com"]
        })));
        assert_eq!(
            validated.email.to,
            vec![addr("a@example.com"), addr("b@example.com")]
        );
        assert_eq!(validated.email.cc, vec![addr("c@example.com")]);
        assert_eq!(validated.email.bcc, vec![addr("d@example.com")]);
    }

    #[test]
    fn recipients_that_are_the_same_mailbox_in_canonical_form_are_duplicates() {
        let validated = accepted(with(json!({
            "to": ["jane@example.com", "\"jane\"@example.com", "JÄNE@bücher.example"],
            "cc": ["jäne@xn--bcher-kva.example"]
        })));
        assert_eq!(
            validated.email.to,
            vec![addr("jane@example.com"), addr("JÄNE@bücher.example")]
        );
        assert!(validated.email.cc.is_empty());
    }

    // --- headers ---

    #[test]
    fn a_header_value_with_a_line_break_is_header_injection() {
        let errors = validate(with(json!({"headers": {"X-Ok": "a\r\nBcc: x@y.z"}}))).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, code::HEADER_INJECTION);
        assert_eq!(errors[0].field, "headers.X-Ok");
        assert_eq!(errors[0].status(), 422);
        for value in ["a\nb", "a\rb", "a\0b"] {
            assert_eq!(
                rejected(with(json!({"headers": {"X-Ok": value}}))),
                one(code::HEADER_INJECTION, "headers.X-Ok"),
                "{value:?}"
            );
        }
    }

    #[test]
    fn a_header_name_with_a_line_break_is_header_injection_with_an_escaped_path() {
        assert_eq!(
            rejected(with(json!({"headers": {"X-A\r\nBcc": "x@y.z"}}))),
            one(code::HEADER_INJECTION, "headers.X-A\\r\\nBcc")
        );
    }

    #[test]
    fn reserved_headers_are_refused_in_any_case() {
        for name in [
            "content-type",
            "From",
            "TO",
            "cc",
            "bcc",
            "reply-to",
            "SUBJECT",
            "date",
            "message-id",
            "Content-Transfer-Encoding",
            "mime-version",
            "return-path",
            "sender",
            "dkim-signature",
            "received",
            "x-mailgate-message-id",
            "X-Mailgate-Anything",
        ] {
            assert_eq!(
                rejected(with(json!({"headers": {name: "v"}}))),
                one(code::RESERVED_HEADER, &format!("headers.{name}")),
                "{name}"
            );
        }
        assert!(
            validate(with(
                json!({"headers": {"X-Mailgate": "v", "X-Content-Type": "v"}})
            ))
            .is_ok()
        );
    }

    #[test]
    fn provider_control_headers_are_reserved_in_any_case() {
        for name in [
            // Amazon SES
            "X-SES-CONFIGURATION-SET",
            "x-ses-message-tags",
            "X-SES-SOURCE-ARN",
            "X-SES-FROM-ARN",
            "X-SES-RETURN-PATH-ARN",
            "X-SES-LIST-MANAGEMENT-OPTIONS",
            // SendGrid
            "X-SMTPAPI",
            "X-Smtpapi",
            // Mailgun: the whole namespace
            "X-Mailgun-Variables",
            "x-mailgun-tag",
            "X-Mailgun-Sending-Ip-Pool",
            "X-MAILGUN-DROP-MESSAGE",
            // Postmark: the whole namespace
            "X-PM-Message-Stream",
            "x-pm-tag",
            "X-PM-Metadata-order",
            // Our own id
            "X-Mailgate-Message-Id",
        ] {
            let errors = validate(with(json!({"headers": {name: "v"}}))).unwrap_err();
            assert_eq!(errors.len(), 1, "{name}: {errors:?}");
            assert_eq!(errors[0].code, code::RESERVED_HEADER, "{name}");
            assert_eq!(errors[0].field, format!("headers.{name}"), "{name}");
            assert!(
                errors[0].message.contains(name) && errors[0].message.contains("reserved"),
                "{name}: {}",
                errors[0].message
            );
        }
        // Names that only resemble a provider's namespace stay the caller's.
        assert!(
            validate(with(json!({"headers": {
                "X-SESSION": "v", "X-Mailgunner": "v", "X-PMO": "v", "X-SMTPAPIx": "v"
            }})))
            .is_ok()
        );
    }

    #[test]
    fn header_names_are_rfc_5322_field_names() {
        for name in ["X Space", "X:Colon", "", "Ünicode", "X-Tab\t"] {
            assert_eq!(
                rejected(with(json!({"headers": {name: "v"}}))),
                one(code::INVALID_HEADER_NAME, &join("headers", name)),
                "{name:?}"
            );
        }
        assert!(validate(with(json!({"headers": {"X-Weird!#$%&'*+.^_`|~": "v"}}))).is_ok());
    }

    #[test]
    fn header_values_refuse_control_characters_but_allow_tabs_and_unicode() {
        assert_eq!(
            rejected(with(json!({"headers": {"X-Esc": "a\u{1b}b"}}))),
            one(code::INVALID_HEADER_VALUE, "headers.X-Esc")
        );
        assert!(validate(with(json!({"headers": {"X-Ok": "a\tb — ünïcode"}}))).is_ok());
    }

    #[test]
    fn a_header_given_twice_in_different_case_is_a_duplicate() {
        let body = r#"{"from":"s@example.com","to":["a@example.com"],"subject":"Hi","text":"x",
                       "headers":{"X-Tag":"1","x-tag":"2"}}"#;
        let errors = SendRequest::from_json(body.as_bytes())
            .unwrap()
            .validate(&SendLimits::default(), NOW, MessageId::generate())
            .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].code, errors[0].field.as_str()),
            (code::DUPLICATE_HEADER, "headers.x-tag")
        );
    }

    #[test]
    fn the_header_count_is_capped() {
        let limits = SendLimits {
            max_headers: 2,
            ..SendLimits::default()
        };
        assert_eq!(
            rejected_with_limits(
                with(json!({"headers": {"X-A": "1", "X-B": "2", "X-C": "3"}})),
                &limits
            ),
            one(code::TOO_MANY_HEADERS, "headers")
        );
    }

    // --- attachments ---

    fn attachment(filename: &str, content_type: &str, content: &str) -> Value {
        json!({"filename": filename, "content_type": content_type, "content": content})
    }

    #[test]
    fn attachment_content_must_be_standard_base64() {
        for bad in ["not base64!", "aGVsbG8", "aGVsbG8-", "aGV sbG8=x"] {
            let errors = validate(with(
                json!({"attachments": [attachment("a.txt", "text/plain", bad)]}),
            ))
            .unwrap_err();
            assert_eq!(errors.len(), 1, "{bad:?}");
            assert_eq!(errors[0].code, code::INVALID_BASE64, "{bad:?}");
            assert_eq!(errors[0].field, "attachments[0].content");
        }
    }

    #[test]
    fn line_wrapped_base64_is_accepted() {
        let wrapped = "aGVs\r\nbG8g\nd29y bGQ=";
        let validated = accepted(with(
            json!({"attachments": [attachment("a.txt", "text/plain", wrapped)]}),
        ));
        assert_eq!(validated.email.attachments[0].content, b"hello world");
    }

    #[test]
    fn attachments_over_the_total_cap_are_refused_at_the_one_that_crosses_it() {
        let limits = SendLimits {
            max_attachment_bytes: 10,
            ..SendLimits::default()
        };
        let six = b64(&[7u8; 6]);
        let four = b64(&[7u8; 4]);
        assert!(
            validate_with_limits(
                with(json!({"attachments": [attachment("a.bin", "application/octet-stream", &six), attachment("b.bin", "application/octet-stream", &four)]})),
                &limits
            )
            .is_ok(),
            "exactly at the cap"
        );
        assert_eq!(
            rejected_with_limits(
                with(json!({"attachments": [
                    attachment("a.bin", "application/octet-stream", &six),
                    attachment("b.bin", "application/octet-stream", &six),
                    attachment("c.bin", "application/octet-stream", &six)
                ]})),
                &limits
            ),
            one(code::ATTACHMENT_TOO_LARGE, "attachments[1].content")
        );
    }

    #[test]
    fn the_default_attachment_cap_is_ten_mebibytes() {
        let big = b64(&vec![0u8; 10 * 1024 * 1024 + 1]);
        assert_eq!(
            rejected(with(
                json!({"attachments": [attachment("big.bin", "application/octet-stream", &big)]})
            )),
            one(code::ATTACHMENT_TOO_LARGE, "attachments[0].content")
        );
    }

    #[test]
    fn attachment_file_names_have_no_paths_or_line_breaks() {
        for (name, expected) in [
            ("../etc/passwd", code::INVALID_FILENAME),
            ("dir\\file.txt", code::INVALID_FILENAME),
            ("..", code::INVALID_FILENAME),
            ("a\u{7}.txt", code::INVALID_FILENAME),
            ("a.txt\r\nContent-Type: text/html", code::HEADER_INJECTION),
            ("", code::REQUIRED),
        ] {
            assert_eq!(
                rejected(with(
                    json!({"attachments": [attachment(name, "text/plain", "aGk=")]})
                )),
                one(expected, "attachments[0].filename"),
                "{name:?}"
            );
        }
        let long = format!("{}.txt", "a".repeat(MAX_FILENAME_CHARS));
        assert_eq!(
            rejected(with(
                json!({"attachments": [attachment(&long, "text/plain", "aGk=")]})
            )),
            one(code::TOO_LONG, "attachments[0].filename")
        );
        assert!(validate(with(json!({"attachments": [attachment("Rapport été 2026.pdf", "application/pdf", "aGk=")]}))).is_ok());
    }

    #[test]
    fn attachment_content_types_are_type_slash_subtype() {
        for bad in [
            "pdf",
            "application/",
            "/pdf",
            "text/plain; charset=utf-8",
            "a b/c",
            "text/html/x",
        ] {
            assert_eq!(
                rejected(with(json!({"attachments": [attachment("a", bad, "aGk=")]}))),
                one(code::INVALID_CONTENT_TYPE, "attachments[0].content_type"),
                "{bad:?}"
            );
        }
        assert_eq!(
            rejected(with(
                json!({"attachments": [attachment("a", "text/plain\r\nX: y", "aGk=")]})
            )),
            one(code::HEADER_INJECTION, "attachments[0].content_type")
        );
        assert!(
            validate(with(
                json!({"attachments": [attachment("a", "application/vnd.ms-excel+xml", "aGk=")]})
            ))
            .is_ok()
        );
    }

    #[test]
    fn every_attachment_field_is_required_and_checked() {
        assert_eq!(
            rejected(with(
                json!({"attachments": [{}, attachment("ok.txt", "text/plain", "@@")]})
            )),
            vec![
                (code::REQUIRED, "attachments[0].filename".to_owned()),
                (code::REQUIRED, "attachments[0].content_type".to_owned()),
                (code::REQUIRED, "attachments[0].content".to_owned()),
                (code::INVALID_BASE64, "attachments[1].content".to_owned()),
            ]
        );
    }

    // --- tags and metadata ---

    #[test]
    fn tags_have_a_count_a_length_and_a_safe_charset() {
        let eleven: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        assert_eq!(
            rejected(with(json!({"tags": eleven}))),
            one(code::TOO_MANY_TAGS, "tags")
        );
        assert_eq!(
            rejected(with(json!({"tags": ["ok", "t".repeat(65)]}))),
            one(code::TOO_LONG, "tags[1]")
        );
        assert!(validate(with(json!({"tags": ["t".repeat(64)]}))).is_ok());
        assert_eq!(
            rejected(with(
                json!({"tags": ["", "has space", "semi;colon", "ünï", "ok_1-2"]})
            )),
            vec![
                (code::INVALID_TAG, "tags[0]".to_owned()),
                (code::INVALID_TAG, "tags[1]".to_owned()),
                (code::INVALID_TAG, "tags[2]".to_owned()),
                (code::INVALID_TAG, "tags[3]".to_owned()),
            ]
        );
    }

    #[test]
    fn duplicate_tags_are_removed() {
        assert_eq!(
            accepted(with(json!({"tags": ["a", "b", "a"]}))).email.tags,
            vec!["a", "b"]
        );
    }

    #[test]
    fn metadata_over_the_size_cap_is_refused() {
        let mut metadata = serde_json::Map::new();
        for i in 0..10 {
            metadata.insert(format!("key{i}"), Value::String("v".repeat(200)));
        }
        assert_eq!(
            rejected(with(json!({"metadata": metadata}))),
            one(code::METADATA_TOO_LARGE, "metadata")
        );
        let limits = SendLimits {
            max_metadata_bytes: 9,
            ..SendLimits::default()
        };
        // {"a":"b"} is 9 bytes.
        assert!(validate_with_limits(with(json!({"metadata": {"a": "b"}})), &limits).is_ok());
        assert_eq!(
            rejected_with_limits(with(json!({"metadata": {"a": "bc"}})), &limits),
            one(code::METADATA_TOO_LARGE, "metadata")
        );
    }

    #[test]
    fn metadata_keys_and_values_are_checked() {
        assert_eq!(
            rejected(with(json!({"metadata": {
                "": "x",
                "bad key": "x",
                "k".repeat(65): "x",
                "mailgate_message_id": "msg_x",
                "mailgate_other": "x",
                "newline": "a\nb",
                "long": "v".repeat(513),
                "ok.key-1_2": "fine"
            }}))),
            vec![
                (code::INVALID_METADATA_KEY, "metadata.".to_owned()),
                (code::INVALID_METADATA_KEY, "metadata.bad key".to_owned()),
                (code::TOO_LONG, format!("metadata.{}", "k".repeat(65))),
                (code::TOO_LONG, "metadata.long".to_owned()),
                (
                    code::RESERVED_METADATA_KEY,
                    "metadata.mailgate_message_id".to_owned()
                ),
                (
                    code::RESERVED_METADATA_KEY,
                    "metadata.mailgate_other".to_owned()
                ),
                (code::INVALID_METADATA_VALUE, "metadata.newline".to_owned()),
            ]
        );
    }

    // --- scheduling, provider and category ---

    #[test]
    fn send_at_must_be_in_the_future() {
        assert_eq!(
            rejected(with(json!({"send_at": "2026-03-01T11:59:59Z"}))),
            one(code::SEND_AT_IN_PAST, "send_at")
        );
        assert_eq!(
            rejected(with(json!({"send_at": "2026-03-01T12:00:00Z"}))),
            one(code::SEND_AT_IN_PAST, "send_at"),
            "now is not the future"
        );
        assert_eq!(
            rejected(with(json!({"send_at": "2026-03-01T13:30:00+02:00"}))),
            one(code::SEND_AT_IN_PAST, "send_at"),
            "offsets count"
        );
        assert_eq!(
            accepted(with(json!({"send_at": "2026-03-01T12:00:01Z"}))).send_at,
            Some(datetime!(2026-03-01 12:00:01 UTC))
        );
    }

    #[test]
    fn send_at_is_capped_by_the_horizon() {
        assert!(
            validate(with(json!({"send_at": "2026-03-31T12:00:00Z"}))).is_ok(),
            "exactly 30 days"
        );
        assert_eq!(
            rejected(with(json!({"send_at": "2026-03-31T12:00:01Z"}))),
            one(code::SEND_AT_TOO_FAR, "send_at")
        );
        let limits = SendLimits {
            max_schedule_horizon: Duration::hours(1),
            ..SendLimits::default()
        };
        assert_eq!(
            rejected_with_limits(with(json!({"send_at": "2026-03-01T13:00:01Z"})), &limits),
            one(code::SEND_AT_TOO_FAR, "send_at")
        );
        let unbounded = SendLimits {
            max_schedule_horizon: Duration::MAX,
            ..SendLimits::default()
        };
        assert!(
            validate_with_limits(with(json!({"send_at": "2999-01-01T00:00:00Z"})), &unbounded)
                .is_ok()
        );
    }

    #[test]
    fn send_at_must_be_rfc_3339() {
        for bad in [
            "tomorrow",
            "2026-03-02",
            "2026-03-02 10:00:00",
            "2026-03-02T10:00:00",
            "1767225600",
        ] {
            assert_eq!(
                rejected(with(json!({"send_at": bad}))),
                one(code::INVALID_DATETIME, "send_at"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn provider_names_a_known_provider() {
        assert_eq!(
            accepted(with(json!({"provider": "ses"}))).provider,
            Some(ProviderId::Ses)
        );
        assert_eq!(
            rejected(with(json!({"provider": "sparkpost"}))),
            one(code::UNKNOWN_PROVIDER, "provider")
        );
    }

    #[test]
    fn correlation_id_is_one_to_128_printable_ascii_characters() {
        assert_eq!(accepted(minimal()).email.correlation_id, None);
        assert_eq!(
            accepted(with(json!({"correlation_id": "order-42 / #7"})))
                .email
                .correlation_id
                .as_deref(),
            Some("order-42 / #7")
        );
        let longest = "x".repeat(MAX_CORRELATION_ID_CHARS);
        assert_eq!(
            accepted(with(json!({"correlation_id": longest})))
                .email
                .correlation_id,
            Some(longest)
        );
        for bad in ["", "order\n42", "tab\there", "caf\u{e9}", "del\u{7f}"] {
            assert_eq!(
                rejected(with(json!({"correlation_id": bad}))),
                one(code::INVALID_CORRELATION_ID, "correlation_id"),
                "{bad:?}"
            );
        }
        assert_eq!(
            rejected(with(
                json!({"correlation_id": "x".repeat(MAX_CORRELATION_ID_CHARS + 1)})
            )),
            one(code::TOO_LONG, "correlation_id")
        );
        let error = shape_error(r#"{"correlation_id": 42}"#);
        assert_eq!(
            (error.code, error.field.as_str(), error.status()),
            (code::INVALID_TYPE, "correlation_id", 400)
        );
    }

    #[test]
    fn a_batch_item_carries_its_own_correlation_id() {
        let results = batch(vec![
            with(json!({"correlation_id": "a-1"})),
            minimal(),
            with(json!({"correlation_id": ""})),
        ])
        .validate_batch(&SendLimits::default(), NOW, MessageId::generate)
        .unwrap();
        assert_eq!(
            results[0].as_ref().unwrap().email.correlation_id.as_deref(),
            Some("a-1")
        );
        assert_eq!(results[1].as_ref().unwrap().email.correlation_id, None);
        let errors = results[2].as_ref().unwrap_err();
        assert_eq!(
            (errors[0].code, errors[0].field.as_str()),
            (code::INVALID_CORRELATION_ID, "messages[2].correlation_id")
        );
    }

    #[test]
    fn category_is_transactional_or_bulk() {
        assert_eq!(
            accepted(with(json!({"category": "transactional"})))
                .email
                .category,
            MessageCategory::Transactional
        );
        for bad in ["Bulk", "marketing", ""] {
            assert_eq!(
                rejected(with(json!({"category": bad}))),
                one(code::INVALID_CATEGORY, "category"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn topic_is_a_lower_case_name() {
        assert_eq!(
            accepted(with(json!({"topic": "product-news"})))
                .email
                .topic
                .as_deref(),
            Some("product-news")
        );
        for bad in ["News", "", "a b", "x".repeat(65).as_str()] {
            assert_eq!(
                rejected(with(json!({"topic": bad}))),
                one(code::INVALID_TOPIC, "topic"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bulk_mail_and_asked_for_transactional_mail_get_mailgate_s_one_click_link() {
        assert!(accepted(with(json!({"category": "bulk"}))).email.one_click);
        assert!(!accepted(minimal()).email.one_click);
        assert!(accepted(with(json!({"unsubscribe": true}))).email.one_click);
        assert!(
            !accepted(with(json!({"unsubscribe": false})))
                .email
                .one_click
        );
        assert_eq!(
            rejected(with(json!({"category": "bulk", "unsubscribe": false}))),
            one(code::UNSUBSCRIBE_REQUIRED, "unsubscribe")
        );
        // The link names one recipient.
        assert_eq!(
            rejected(with(
                json!({"category": "bulk", "to": ["a@example.com"], "bcc": ["b@example.com"]})
            )),
            one(code::UNSUBSCRIBE_ONE_RECIPIENT, "to")
        );
        // A duplicate is not a second recipient.
        assert!(
            accepted(with(
                json!({"category": "bulk", "to": ["a@example.com"], "cc": ["A@example.com"]})
            ))
            .email
            .one_click
        );
    }

    #[test]
    fn a_caller_s_own_list_unsubscribe_needs_its_one_click_post() {
        assert_eq!(
            rejected(with(
                json!({"category": "bulk", "headers": {"List-Unsubscribe": "<https://a.example/u>"}})
            )),
            one(
                code::LIST_UNSUBSCRIBE_WITHOUT_POST,
                "headers.List-Unsubscribe"
            )
        );
        assert_eq!(
            rejected(with(
                json!({"headers": {"list-unsubscribe-post": "List-Unsubscribe=One-Click"}})
            )),
            one(
                code::LIST_UNSUBSCRIBE_WITHOUT_POST,
                "headers.list-unsubscribe-post"
            )
        );
        assert_eq!(
            rejected(with(json!({"headers": {
                "List-Unsubscribe": "<https://a.example/u>",
                "List-Unsubscribe-Post": "yes"
            }}))),
            one(code::INVALID_HEADER_VALUE, "headers.List-Unsubscribe-Post")
        );
        let own = accepted(with(
            json!({"category": "bulk", "to": ["a@example.com", "b@example.com"], "headers": {
                "List-Unsubscribe": "<https://a.example/u>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"
            }}),
        ));
        assert!(!own.email.one_click);
        assert_eq!(own.email.headers.len(), 2);
    }

    // --- shape errors and error collection ---

    #[test]
    fn unknown_fields_are_400_and_reported_with_the_rest() {
        let errors = validate(with(json!({"bc": ["x@example.com"], "subject": null}))).unwrap_err();
        assert_eq!(
            errors
                .iter()
                .map(|e| (e.code, e.field.as_str()))
                .collect::<Vec<_>>(),
            vec![(code::UNKNOWN_FIELD, "bc"), (code::REQUIRED, "subject")]
        );
        assert_eq!(errors[0].status(), 400);
        assert!(errors[0].message.contains("bcc"), "lists the known fields");
        assert_eq!(response_status(&errors), 400);
    }

    #[test]
    fn unknown_fields_inside_addresses_and_attachments_are_reported() {
        assert_eq!(
            rejected(with(json!({
                "to": [{"email": "a@example.com", "nmae": "A"}],
                "attachments": [{"filename": "a", "content_type": "text/plain", "content": "aGk=", "cid": "x"}]
            }))),
            vec![
                (code::UNKNOWN_FIELD, "to[0].nmae".to_owned()),
                (code::UNKNOWN_FIELD, "attachments[0].cid".to_owned()),
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_in_field_order() {
        let errors = validate(json!({
            "from": "bad",
            "to": ["a@example.com", "also bad"],
            "subject": "x\ny",
            "headers": {"Subject": "sneaky", "X-Ok": "a\r\nBcc: x@y.z"},
            "attachments": [attachment("a.txt", "text/plain", "***")],
            "tags": ["no spaces"],
            "metadata": {"mailgate_x": "1"},
            "send_at": "2020-01-01T00:00:00Z",
            "provider": "nope",
            "category": "urgent"
        }))
        .unwrap_err();
        assert_eq!(
            errors
                .iter()
                .map(|e| (e.code, e.field.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (code::INVALID_ADDRESS, "from"),
                (code::INVALID_ADDRESS, "to[1]"),
                (code::HEADER_INJECTION, "subject"),
                (code::MISSING_BODY, "text"),
                (code::RESERVED_HEADER, "headers.Subject"),
                (code::HEADER_INJECTION, "headers.X-Ok"),
                (code::INVALID_BASE64, "attachments[0].content"),
                (code::INVALID_TAG, "tags[0]"),
                (code::RESERVED_METADATA_KEY, "metadata.mailgate_x"),
                (code::SEND_AT_IN_PAST, "send_at"),
                (code::UNKNOWN_PROVIDER, "provider"),
                (code::INVALID_CATEGORY, "category"),
            ]
        );
        assert_eq!(response_status(&errors), 422);
    }

    #[test]
    fn a_wrong_type_is_400_with_its_path() {
        for (body, field) in [
            (r#"{"to": "a@example.com"}"#, "to"),
            (r#"{"to": ["a@example.com", 5]}"#, "to[1]"),
            (r#"{"from": true}"#, "from"),
            (r#"{"to": [{"email": 5}]}"#, "to[0].email"),
            (r#"{"headers": {"X-Foo": 1}}"#, "headers.X-Foo"),
            (r#"{"headers": ["X-Foo"]}"#, "headers"),
            (
                r#"{"attachments": [{"content": ["a"]}]}"#,
                "attachments[0].content",
            ),
            (r#"{"metadata": {"plan": 3}}"#, "metadata.plan"),
            (r#"{"tags": [1]}"#, "tags[0]"),
            (r#"{"send_at": 1767225600}"#, "send_at"),
            (r#"{"subject": {"text": "x"}}"#, "subject"),
        ] {
            let error = shape_error(body);
            assert_eq!(error.code, code::INVALID_TYPE, "{body}");
            assert_eq!(error.field, field, "{body}");
            assert_eq!(error.status(), 400);
        }
    }

    #[test]
    fn a_repeated_key_in_an_address_is_a_shape_error() {
        let error =
            shape_error(r#"{"from": {"email": "a@example.com", "email": "b@example.com"}}"#);
        assert_eq!(
            (error.code, error.field.as_str()),
            (code::INVALID_TYPE, "from")
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_malformed() {
        for body in ["", "{", r#"{"to": [}"#, "{} trailing", "nul"] {
            let error = shape_error(body);
            assert_eq!(error.code, code::MALFORMED_JSON, "{body:?}");
            assert_eq!(error.status(), 400);
        }
        assert_eq!(shape_error("").field_path(), None);
        assert!(shape_error("").message.contains("empty"));
        let not_object = shape_error("[1, 2]");
        assert_eq!(
            (not_object.code, not_object.field_path()),
            (code::INVALID_TYPE, None)
        );
    }

    #[test]
    fn a_plain_serde_json_error_becomes_a_field_error_without_a_path() {
        let err = serde_json::from_str::<Value>("{").unwrap_err();
        let error = FieldError::from(&err);
        assert_eq!(error.code, code::MALFORMED_JSON);
        assert_eq!(error.field, "");
        assert!(error.message.contains("line 1"));
    }

    #[test]
    fn field_errors_serialize_in_the_api_shape() {
        let error = FieldError::new(code::INVALID_ADDRESS, "to[2]", "bad");
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            json!({"code": "invalid_address", "message": "bad", "field": "to[2]"})
        );
        assert_eq!(response_status(&[error]), 422);
        assert_eq!(FieldError::new(code::MALFORMED_JSON, "", "x").status(), 400);
        assert_eq!(FieldError::new(code::UNKNOWN_FIELD, "x", "x").status(), 400);
        assert_eq!(FieldError::new(code::INVALID_TYPE, "x", "x").status(), 400);
    }

    // --- batches ---

    fn batch(messages: Vec<Value>) -> BatchSendRequest {
        BatchSendRequest::from_json(json!({"messages": messages}).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn a_batch_of_101_is_one_error() {
        let errors = batch(vec![minimal(); 101])
            .validate_batch(&SendLimits::default(), NOW, MessageId::generate)
            .unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].code, errors[0].field.as_str()),
            (code::TOO_MANY_MESSAGES, "messages")
        );
        assert_eq!(errors[0].status(), 422);
        let results = batch(vec![minimal(); 100])
            .validate_batch(&SendLimits::default(), NOW, MessageId::generate)
            .unwrap();
        assert_eq!(results.len(), 100);
        assert!(results.iter().all(Result::is_ok));
    }

    #[test]
    fn an_empty_batch_or_one_with_unknown_fields_is_refused() {
        let errors = batch(vec![])
            .validate_batch(&SendLimits::default(), NOW, MessageId::generate)
            .unwrap_err();
        assert_eq!(
            (errors[0].code, errors[0].field.as_str()),
            (code::REQUIRED, "messages")
        );
        let errors = BatchSendRequest::from_json(br#"{"mesages": []}"#)
            .unwrap()
            .validate_batch(&SendLimits::default(), NOW, MessageId::generate)
            .unwrap_err();
        assert_eq!(
            errors
                .iter()
                .map(|e| (e.code, e.field.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (code::UNKNOWN_FIELD, "mesages"),
                (code::REQUIRED, "messages")
            ]
        );
    }

    #[test]
    fn a_mixed_batch_has_a_result_per_message_with_prefixed_fields() {
        let mut ids_issued = 0;
        let results = batch(vec![
            minimal(),
            with(json!({"to": ["bad"], "headers": {"X-Ok": "a\r\nb"}})),
            with(json!({"provider": "mailgun"})),
            with(json!({"from": null, "typo": 1})),
        ])
        .validate_batch(&SendLimits::default(), NOW, || {
            ids_issued += 1;
            MessageId::generate()
        })
        .unwrap();
        assert_eq!(results.len(), 4);
        assert!(results[0].is_ok());
        assert_eq!(
            results[1]
                .as_ref()
                .unwrap_err()
                .iter()
                .map(|e| (e.code, e.field.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (code::INVALID_ADDRESS, "messages[1].to[0]"),
                (code::HEADER_INJECTION, "messages[1].headers.X-Ok"),
            ]
        );
        assert_eq!(
            results[2].as_ref().unwrap().provider,
            Some(ProviderId::Mailgun)
        );
        let third = results[3].as_ref().unwrap_err();
        assert_eq!(
            third
                .iter()
                .map(|e| (e.code, e.field.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (code::UNKNOWN_FIELD, "messages[3].typo"),
                (code::REQUIRED, "messages[3].from")
            ]
        );
        assert_eq!(response_status(third), 400);
        assert_eq!(ids_issued, 2, "ids are issued to valid messages only");
        let first = &results[0].as_ref().unwrap().email.message_id;
        assert_ne!(first, &results[2].as_ref().unwrap().email.message_id);
    }

    #[test]
    fn a_shape_error_in_a_batch_points_into_the_message() {
        let body = json!({"messages": [minimal(), minimal(), minimal(), {"to": [42]}]}).to_string();
        let error = BatchSendRequest::from_json(body.as_bytes()).unwrap_err();
        assert_eq!(
            (error.code, error.field.as_str()),
            (code::INVALID_TYPE, "messages[3].to[0]")
        );
        assert_eq!(error.status(), 400);
    }

    #[test]
    fn prefixing_handles_whole_body_errors() {
        assert_eq!(
            FieldError::new(code::REQUIRED, "", "x")
                .prefixed("messages[0]")
                .field,
            "messages[0]"
        );
        assert_eq!(
            FieldError::new(code::REQUIRED, "to", "x")
                .prefixed("messages[0]")
                .field,
            "messages[0].to"
        );
    }

    // --- masking ---

    #[test]
    fn debug_output_never_shows_full_addresses() {
        let body = with(json!({
            "from": {"email": "sender@example.com", "name": "Secret Sender"},
            "to": ["alice@example.com", "not-valid-bob"],
            "cc": [{"email": "carol@example.com"}],
            "reply_to": "dave@example.com",
            "attachments": [attachment("a.txt", "text/plain", &b64(b"top secret"))]
        }));
        let request = parse(&body);
        let batch = batch(vec![body.clone()]);
        let validated = accepted(with(
            json!({"to": ["alice@example.com"], "bcc": ["erin@example.com"]}),
        ));
        for text in [
            format!("{request:?}"),
            format!("{batch:?}"),
            format!("{validated:?}"),
        ] {
            for secret in [
                "sender@",
                "Secret Sender",
                "alice@",
                "bob",
                "carol@",
                "dave@",
                "erin@",
                "dG9w",
            ] {
                assert!(!text.contains(secret), "{secret} leaked in {text}");
            }
            assert!(text.contains("***@example.com"), "{text}");
        }
    }

    #[test]
    fn the_default_limits_are_the_documented_ones() {
        let limits = SendLimits::default();
        assert_eq!(limits.max_recipients, 50);
        assert_eq!(limits.max_attachment_bytes, 10 * 1024 * 1024);
        assert_eq!(limits.max_metadata_bytes, 2048);
        assert_eq!((limits.max_tags, limits.max_tag_chars), (10, 64));
        assert_eq!(limits.max_schedule_horizon, Duration::days(30));
        assert_eq!(limits.max_batch_messages, 100);
    }
}
