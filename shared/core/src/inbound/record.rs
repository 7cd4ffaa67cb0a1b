//! The stored record of one received email ([`InboundMessage`]), its storage keys and its dedupe
//! keys. The raw MIME lives in object storage under [`raw_key`], attachments under
//! [`attachment_key`]; the record holds what was parsed from them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    AuthVerdicts, DsnReport, InboundAddress, InboundAttachment, InboundKind, MalformedMime,
    ParsedMail,
};
use crate::{InboundId, MessageId, ProviderId, UnixMillis};

/// The largest text or html body kept on the record, in bytes (a DynamoDB item holds 400 KB);
/// longer bodies are cut at a character boundary, flagged, and whole in the raw message.
pub const MAX_STORED_BODY_BYTES: usize = 128 * 1024;

/// Where a received message is in its processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboundStatus {
    /// The raw message is stored; parsing has not run yet.
    Received,
    /// Parsed: the summary, bodies and attachments are on the record.
    Parsed,
    /// The raw message is not readable MIME; it is kept, never dropped.
    ParseFailed,
}

impl InboundStatus {
    /// The `snake_case` name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Parsed => "parsed",
            Self::ParseFailed => "parse_failed",
        }
    }
}

/// What parsing found, as the record keeps it (attachment bytes live in object storage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundSummary {
    /// Message, auto-reply or DSN.
    pub kind: InboundKind,
    /// `From`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<InboundAddress>,
    /// `To`.
    #[serde(default)]
    pub to: Vec<InboundAddress>,
    /// `Cc`.
    #[serde(default)]
    pub cc: Vec<InboundAddress>,
    /// `Reply-To`.
    #[serde(default)]
    pub reply_to: Vec<InboundAddress>,
    /// `Subject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `Date`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<UnixMillis>,
    /// `Message-ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// `In-Reply-To`.
    #[serde(default)]
    pub in_reply_to: Vec<String>,
    /// `References`.
    #[serde(default)]
    pub references: Vec<String>,
    /// The text body (at most [`MAX_STORED_BODY_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The html body (at most [`MAX_STORED_BODY_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Whether a body was cut to fit the record (the raw message has it whole).
    #[serde(default)]
    pub bodies_truncated: bool,
    /// Attachments and inline parts.
    #[serde(default)]
    pub attachments: Vec<InboundAttachment>,
    /// What a DSN reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsn: Option<DsnReport>,
}

impl InboundSummary {
    /// The summary of a parsed message, bodies cut to [`MAX_STORED_BODY_BYTES`].
    pub fn of(mail: &ParsedMail) -> Self {
        let (text, cut_text) = cut(mail.text.as_deref());
        let (html, cut_html) = cut(mail.html.as_deref());
        Self {
            kind: mail.kind,
            from: mail.from.clone(),
            to: mail.to.clone(),
            cc: mail.cc.clone(),
            reply_to: mail.reply_to.clone(),
            subject: mail.subject.clone(),
            date: mail.date,
            message_id: mail.message_id.clone(),
            in_reply_to: mail.in_reply_to.clone(),
            references: mail.references.clone(),
            text,
            html,
            bodies_truncated: cut_text || cut_html,
            attachments: mail.attachments.iter().map(|a| a.meta.clone()).collect(),
            dsn: mail.dsn.clone(),
        }
    }
}

fn cut(body: Option<&str>) -> (Option<String>, bool) {
    match body {
        None => (None, false),
        Some(b) if b.len() <= MAX_STORED_BODY_BYTES => (Some(b.to_owned()), false),
        Some(b) => {
            let mut end = MAX_STORED_BODY_BYTES;
            while !b.is_char_boundary(end) {
                end -= 1;
            }
            (Some(b[..end].to_owned()), true)
        }
    }
}

/// One received email as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// Our id (`inb_…`).
    pub id: InboundId,
    /// The provider whose source delivered it.
    pub provider: ProviderId,
    /// The source's own id of the message (SES `mail.messageId`, Postmark `MessageID`, …).
    pub source_id: String,
    /// The envelope recipient it was received for.
    pub recipient: String,
    /// When the source's delivery was accepted.
    pub received_at: UnixMillis,
    /// The object key of the raw MIME.
    pub raw_key: String,
    /// Size of the raw MIME in bytes.
    pub raw_size: u64,
    /// Where processing is.
    pub status: InboundStatus,
    /// Why parsing failed (a [`MalformedMime::code`]), for `parse_failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
    /// The verdicts the source gave.
    #[serde(default, skip_serializing_if = "AuthVerdicts::is_empty")]
    pub auth: AuthVerdicts,
    /// What parsing found (for `parsed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<InboundSummary>,
    /// The message of ours it answers, when threading found one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<MessageId>,
}

impl InboundMessage {
    /// A record of a message whose raw bytes were just stored, not yet parsed.
    pub fn received(
        id: InboundId,
        source: &InboundSource,
        received_at: UnixMillis,
        raw_size: u64,
    ) -> Self {
        Self {
            raw_key: raw_key(&id),
            id,
            provider: source.provider,
            source_id: source.source_id.clone(),
            recipient: source.recipient.clone(),
            received_at,
            raw_size,
            status: InboundStatus::Received,
            parse_error: None,
            auth: source.auth.clone(),
            summary: None,
            thread: None,
        }
    }

    /// The record after parsing succeeded.
    pub fn parsed(mut self, mail: &ParsedMail, thread: Option<MessageId>) -> Self {
        self.status = InboundStatus::Parsed;
        self.parse_error = None;
        self.summary = Some(InboundSummary::of(mail));
        self.thread = thread;
        self
    }

    /// The record after parsing failed: kept, with the reason.
    pub fn parse_failed(mut self, error: &MalformedMime) -> Self {
        self.status = InboundStatus::ParseFailed;
        self.parse_error = Some(error.code().to_owned());
        self.summary = None;
        self
    }
}

/// What a source knows about a message before it is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSource {
    /// The provider whose source delivered it.
    pub provider: ProviderId,
    /// The source's own id of the message.
    pub source_id: String,
    /// The envelope recipient.
    pub recipient: String,
    /// The `Message-ID` header, when the source reports it (a second dedupe key).
    pub message_id: Option<String>,
    /// The verdicts the source gave.
    pub auth: AuthVerdicts,
}

impl InboundSource {
    /// The keys under which this message is recorded once: the source's own id, and the
    /// `Message-ID` with the recipient (the same message arriving through two sources). Hashed
    /// so no address appears in a key.
    pub fn dedupe_keys(&self) -> Vec<String> {
        let mut keys = vec![hashed(
            "inbound-source",
            &[self.provider.as_str(), &self.source_id],
        )];
        if let Some(message_id) = self.message_id.as_deref().filter(|m| !m.is_empty()) {
            let message_id = message_id.trim_matches(|c| c == '<' || c == '>');
            keys.push(hashed(
                "inbound-message-id",
                &[message_id, &self.recipient.to_ascii_lowercase()],
            ));
        }
        keys
    }
}

fn hashed(label: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0u8]);
        }
        hasher.update(part.as_bytes());
    }
    format!("{label}:{}", hex::encode(hasher.finalize()))
}

/// The object key of a received message's raw MIME.
pub fn raw_key(id: &InboundId) -> String {
    format!("inbound/{id}/raw.eml")
}

/// The object key of attachment `index` of a received message.
pub fn attachment_key(id: &InboundId, index: u32) -> String {
    format!("inbound/{id}/attachments/{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(message_id: Option<&str>) -> InboundSource {
        InboundSource {
            provider: ProviderId::Postmark,
            source_id: "a8c1040e".into(),
            recipient: "Support@Example.com".into(),
            message_id: message_id.map(str::to_owned),
            auth: AuthVerdicts::default(),
        }
    }

    #[test]
    fn dedupe_keys_cover_the_source_id_and_message_id_with_recipient_without_addresses() {
        let keys = source(Some("<abc@example.org>")).dedupe_keys();
        assert_eq!(keys.len(), 2);
        assert!(keys[0].starts_with("inbound-source:"));
        assert!(keys[1].starts_with("inbound-message-id:"));
        assert!(keys.iter().all(|k| !k.contains("example")));
        // Brackets and the recipient's case do not matter.
        let mut other = source(Some("abc@example.org"));
        other.recipient = "support@example.com".into();
        other.source_id = "another-delivery".into();
        let other_keys = other.dedupe_keys();
        assert_eq!(other_keys[1], keys[1]);
        assert_ne!(other_keys[0], keys[0]);
        assert_eq!(source(None).dedupe_keys().len(), 1);
    }

    #[test]
    fn long_bodies_are_cut_at_a_character_boundary_and_flagged() {
        let long = "é".repeat(MAX_STORED_BODY_BYTES);
        let (cut_body, truncated) = cut(Some(&long));
        let cut_body = cut_body.unwrap();
        assert!(truncated);
        assert!(cut_body.len() <= MAX_STORED_BODY_BYTES);
        assert!(cut_body.len() > MAX_STORED_BODY_BYTES - 2);
        assert_eq!(cut(Some("short")), (Some("short".to_owned()), false));
    }

    #[test]
    fn a_record_moves_from_received_to_parsed_or_parse_failed_keeping_the_raw_key() {
        let id = InboundId::generate();
        let record = InboundMessage::received(id.clone(), &source(None), UnixMillis(5), 10);
        assert_eq!(record.status, InboundStatus::Received);
        assert_eq!(record.raw_key, format!("inbound/{id}/raw.eml"));
        let failed = record.clone().parse_failed(&MalformedMime::NotAMessage);
        assert_eq!(failed.status, InboundStatus::ParseFailed);
        assert_eq!(failed.parse_error.as_deref(), Some("not_a_message"));
        assert_eq!(failed.raw_key, record.raw_key);
        let mail =
            crate::parse_mime(b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n").unwrap();
        let parsed = record.parsed(&mail, None);
        assert_eq!(parsed.status, InboundStatus::Parsed);
        let json = serde_json::to_value(&parsed).unwrap();
        assert_eq!(json["status"], "parsed");
        assert_eq!(json["summary"]["subject"], "hi");
        assert_eq!(json["summary"]["kind"], "message");
        let back: InboundMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, parsed);
    }
}

/// The events a parsed record adds to the history of the message of ours it threads to: a
/// `replied` event for a human reply (never for an auto-reply), the bounces of a DSN (see
/// [`dsn_bounce_events`]); nothing for anything else. Keys derive from the inbound id, so
/// reprocessing yields the same events.
pub fn thread_events(record: &InboundMessage) -> Vec<crate::DeliveryEvent> {
    use crate::{DeliveryEvent, EmailAddress, EventKind, EventSource};
    let (Some(summary), Some(thread)) = (&record.summary, &record.thread) else {
        return Vec::new();
    };
    match summary.kind {
        InboundKind::Dsn => dsn_bounce_events(record),
        InboundKind::AutoReply => Vec::new(),
        InboundKind::Message => vec![DeliveryEvent {
            key: format!("inbound-reply:{}", record.id),
            kind: EventKind::Replied,
            provider_type: "reply".to_owned(),
            provider: record.provider,
            recipient: summary
                .from
                .as_ref()
                .and_then(|f| EmailAddress::parse(&f.address).ok()),
            provider_message_id: None,
            message_id: Some(thread.clone()),
            occurred_at: summary.date,
            received_at: record.received_at,
            bounce: None,
            url: None,
            // The received message, for `GET /v1/inbound/{id}`.
            detail: Some(record.id.to_string()),
            provider_suppressed: false,
            complaint_feedback: None,
            source: EventSource {
                receipt: format!("inbound#{}", record.id),
                index: 0,
                recipient_index: 0,
            },
        }],
    }
}

/// The bounce events a parsed DSN reports about a message of ours: one per recipient block whose
/// action is `failed`, classified by the same rules as provider bounces. Keys are derived from
/// the inbound id and the block's position, so reprocessing the record yields the same events
/// (the event processor applies each once). Empty for anything but a DSN about our message.
pub fn dsn_bounce_events(record: &InboundMessage) -> Vec<crate::DeliveryEvent> {
    use crate::{BounceReport, DeliveryEvent, EmailAddress, EventKind, EventSource};
    let Some(summary) = &record.summary else {
        return Vec::new();
    };
    let (InboundKind::Dsn, Some(dsn)) = (summary.kind, &summary.dsn) else {
        return Vec::new();
    };
    let Some(original) = &dsn.original else {
        return Vec::new();
    };
    dsn.recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_failure())
        .map(|(i, r)| DeliveryEvent {
            key: format!("inbound-dsn:{}:{i}", record.id),
            kind: EventKind::Bounced,
            provider_type: "dsn".to_owned(),
            provider: record.provider,
            recipient: EmailAddress::parse(&r.recipient).ok(),
            provider_message_id: None,
            message_id: Some(original.clone()),
            occurred_at: summary.date,
            received_at: record.received_at,
            bounce: Some(BounceReport {
                status: r.enhanced_status(),
                reply_code: r
                    .diagnostic
                    .as_deref()
                    .and_then(crate::bounce::find_reply_code),
                diagnostic: r.diagnostic.clone(),
                provider_type: Some("dsn".to_owned()),
                provider_kind: None,
                provider_cause: None,
            }),
            url: None,
            detail: None,
            provider_suppressed: false,
            complaint_feedback: None,
            source: EventSource {
                receipt: format!("inbound#{}", record.id),
                index: 0,
                recipient_index: i,
            },
        })
        .collect()
}

#[cfg(test)]
mod dsn_tests {
    use super::*;
    use crate::{BounceKind, EventKind, ProviderId};

    const DSN: &[u8] = b"From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@example.com\r\nSubject: Undelivered\r\nDate: Fri, 04 Dec 2026 09:12:00 +0000\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\nFinal-Recipient: rfc822; slow@example.net\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n--r\r\nContent-Type: text/rfc822-headers\r\n\r\nX-Mailgate-Message-Id: msg_0123456789abcdefghjkmnpqrs\r\n\r\n--r--\r\n";

    fn record(raw: &[u8]) -> InboundMessage {
        let source = InboundSource {
            provider: ProviderId::Postmark,
            source_id: "pm-dsn".into(),
            recipient: "bounces@example.com".into(),
            message_id: None,
            auth: AuthVerdicts::default(),
        };
        let mail = crate::parse_mime(raw).unwrap();
        let thread = mail.dsn.as_ref().and_then(|d| d.original.clone());
        InboundMessage::received(InboundId::generate(), &source, UnixMillis(7), 1)
            .parsed(&mail, thread)
    }

    #[test]
    fn a_dsn_about_our_message_bounces_each_failed_recipient_only() {
        let record = record(DSN);
        let events = dsn_bounce_events(&record);
        assert_eq!(events.len(), 1);
        let e = &events[0];
        assert_eq!(e.kind, EventKind::Bounced);
        assert_eq!(e.recipient.as_ref().unwrap().as_str(), "gone@example.net");
        assert_eq!(
            e.message_id.as_ref().unwrap().as_str(),
            "msg_0123456789abcdefghjkmnpqrs"
        );
        let classification = e.bounce.as_ref().unwrap().classification();
        assert_eq!(classification.kind, BounceKind::Hard);
        assert!(classification.suppress);
        assert!(!e.key.contains("example"));
        // The same record yields the same keys: applied once however often it is processed.
        assert_eq!(dsn_bounce_events(&record)[0].key, e.key);
    }

    #[test]
    fn a_human_reply_to_ours_is_a_replied_event_and_an_auto_reply_is_none() {
        let reply = b"From: Ana <ana@example.org>\r\nSubject: Re: hi\r\nIn-Reply-To: <msg_0123456789abcdefghjkmnpqrs@example.com>\r\n\r\nthanks\r\n";
        let mail = crate::parse_mime(reply).unwrap();
        let thread = mail.our_message_ids().into_iter().next();
        let source = InboundSource {
            provider: ProviderId::Ses,
            source_id: "s".into(),
            recipient: "support@example.com".into(),
            message_id: None,
            auth: AuthVerdicts::default(),
        };
        let record = InboundMessage::received(InboundId::generate(), &source, UnixMillis(9), 1)
            .parsed(&mail, thread);
        let events = thread_events(&record);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Replied);
        assert_eq!(
            events[0].recipient.as_ref().unwrap().as_str(),
            "ana@example.org"
        );
        assert_eq!(events[0].detail.as_deref(), Some(record.id.as_str()));
        assert_eq!(
            events[0].message_id.as_ref().unwrap().as_str(),
            "msg_0123456789abcdefghjkmnpqrs"
        );

        let auto = String::from_utf8_lossy(reply)
            .replace("Subject:", "Auto-Submitted: auto-replied\r\nSubject:");
        let mail = crate::parse_mime(auto.as_bytes()).unwrap();
        let thread = mail.our_message_ids().into_iter().next();
        let record = InboundMessage::received(InboundId::generate(), &source, UnixMillis(9), 1)
            .parsed(&mail, thread);
        assert!(thread_events(&record).is_empty());
        assert_eq!(thread_events(&self::dsn_record()).len(), 1);
    }

    fn dsn_record() -> InboundMessage {
        record(DSN)
    }

    #[test]
    fn anything_but_a_dsn_about_our_message_bounces_nothing() {
        let plain = record(b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n");
        assert!(dsn_bounce_events(&plain).is_empty());
        let foreign = String::from_utf8_lossy(DSN).replace(
            "X-Mailgate-Message-Id: msg_0123456789abcdefghjkmnpqrs",
            "Message-ID: <someone-else@example.org>",
        );
        assert!(dsn_bounce_events(&record(foreign.as_bytes())).is_empty());
    }
}
