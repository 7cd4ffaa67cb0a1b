//! How received mail is handed to the team: the listing query of `GET /v1/inbound` (which
//! index it reads, its time window, its opaque cursor), the JSON of a record as the API shows
//! it, and the body of the `email.received` app webhook with its short-lived download links.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use super::record::{InboundMessage, InboundSummary};
use crate::{EventKind, InboundId, MessageId, UnixMillis};

/// Which received messages a listing reads, each through its own index (never a scan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundListing {
    /// Everything, newest first (index `by-received`).
    All,
    /// Received for one envelope recipient, compared lower-cased (index `by-recipient`).
    Recipient(String),
    /// Threaded to one of our messages (index `by-thread`), optionally only for one recipient.
    Thread {
        /// Our message the replies answer.
        thread: MessageId,
        /// Only those received for this recipient (lower-cased), when given.
        recipient: Option<String>,
    },
}

/// Where the previous page of a listing stopped: the last record's time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundCursor {
    /// `received_at` of the last record returned.
    pub received_at: UnixMillis,
    /// Its id.
    pub id: InboundId,
}

/// A cursor that is not one this API handed out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cursor is not one this API returned; start again without it")]
pub struct InvalidInboundCursor;

impl InboundCursor {
    /// The opaque form handed to the caller.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}.{}", self.received_at.as_i64(), self.id))
    }

    /// Reads a cursor this API handed out.
    pub fn decode(text: &str) -> Result<Self, InvalidInboundCursor> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| InvalidInboundCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| InvalidInboundCursor)?;
        let (at, id) = text.split_once('.').ok_or(InvalidInboundCursor)?;
        Ok(Self {
            received_at: UnixMillis(at.parse().map_err(|_| InvalidInboundCursor)?),
            id: InboundId::parse(id).map_err(|_| InvalidInboundCursor)?,
        })
    }
}

impl fmt::Display for InboundCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// One page request of a listing, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundQuery {
    /// Which index.
    pub listing: InboundListing,
    /// Only messages received strictly after this instant.
    pub after: Option<UnixMillis>,
    /// Only messages received strictly before this instant.
    pub before: Option<UnixMillis>,
    /// At most this many records.
    pub limit: usize,
    /// Continue after this record.
    pub cursor: Option<InboundCursor>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundPage {
    /// The records, newest first.
    pub items: Vec<InboundMessage>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<InboundCursor>,
}

/// A download link and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadLink {
    /// The presigned URL (no credentials needed until it expires).
    pub url: String,
    /// When it expires.
    pub expires_at: UnixMillis,
}

/// The links the `email.received` webhook carries: the raw message and each attachment (by
/// index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedLinks {
    /// The raw MIME.
    pub raw: DownloadLink,
    /// Attachment links, in the order of the summary's attachments.
    pub attachments: Vec<DownloadLink>,
}

/// The largest text or html body the `email.received` webhook carries, in bytes: the app
/// webhook travels through SQS (256 KiB a message), so bodies are cut here and flagged; the
/// record (`GET /v1/inbound/{id}`) and the raw message have more.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 32 * 1024;

fn rfc3339(at: UnixMillis) -> Value {
    at.to_datetime()
        .format(&Rfc3339)
        .map_or_else(|_| json!(at.as_i64()), Value::String)
}

fn cut(body: Option<&str>, max: usize) -> (Option<String>, bool) {
    match body {
        None => (None, false),
        Some(b) if b.len() <= max => (Some(b.to_owned()), false),
        Some(b) => {
            let mut end = max;
            while !b.is_char_boundary(end) {
                end -= 1;
            }
            (Some(b[..end].to_owned()), true)
        }
    }
}

fn summary_fields(map: &mut serde_json::Map<String, Value>, summary: Option<&InboundSummary>) {
    let Some(s) = summary else {
        for field in [
            "kind",
            "from",
            "subject",
            "date",
            "message_id",
            "text",
            "html",
            "dsn",
        ] {
            map.insert(field.to_owned(), Value::Null);
        }
        for field in ["to", "cc", "reply_to", "in_reply_to", "references"] {
            map.insert(field.to_owned(), json!([]));
        }
        map.insert("bodies_truncated".to_owned(), json!(false));
        map.insert("attachments".to_owned(), json!([]));
        return;
    };
    map.insert("kind".to_owned(), json!(s.kind.as_str()));
    map.insert("from".to_owned(), json!(s.from));
    map.insert("to".to_owned(), json!(s.to));
    map.insert("cc".to_owned(), json!(s.cc));
    map.insert("reply_to".to_owned(), json!(s.reply_to));
    map.insert("subject".to_owned(), json!(s.subject));
    map.insert("date".to_owned(), s.date.map_or(Value::Null, rfc3339));
    map.insert("message_id".to_owned(), json!(s.message_id));
    map.insert("in_reply_to".to_owned(), json!(s.in_reply_to));
    map.insert("references".to_owned(), json!(s.references));
    map.insert("text".to_owned(), json!(s.text));
    map.insert("html".to_owned(), json!(s.html));
    map.insert("bodies_truncated".to_owned(), json!(s.bodies_truncated));
    map.insert("attachments".to_owned(), json!(s.attachments));
    map.insert("dsn".to_owned(), json!(s.dsn));
}

/// A received message as the API shows it: `id`, `status`, `provider`, `source_id`,
/// `recipient`, `received_at`, `raw_size`, `parse_error`, `auth`, `thread`, and the parsed
/// summary flattened (`kind`, `from`, `to`, `cc`, `reply_to`, `subject`, `date`, `message_id`,
/// `in_reply_to`, `references`, `text`, `html`, `bodies_truncated`, `attachments`, `dsn`; null or
/// empty until parsed). With `with_bodies` false, `text` and `html` are left out (listings).
pub fn inbound_json(record: &InboundMessage, with_bodies: bool) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("id".to_owned(), json!(record.id.as_str()));
    map.insert("status".to_owned(), json!(record.status.as_str()));
    map.insert("provider".to_owned(), json!(record.provider.as_str()));
    map.insert("source_id".to_owned(), json!(record.source_id));
    map.insert("recipient".to_owned(), json!(record.recipient));
    map.insert("received_at".to_owned(), rfc3339(record.received_at));
    map.insert("raw_size".to_owned(), json!(record.raw_size));
    map.insert("parse_error".to_owned(), json!(record.parse_error));
    map.insert("auth".to_owned(), json!(record.auth));
    map.insert(
        "thread".to_owned(),
        json!(record.thread.as_ref().map(MessageId::as_str)),
    );
    summary_fields(&mut map, record.summary.as_ref());
    if !with_bodies {
        map.remove("text");
        map.remove("html");
    }
    Value::Object(map)
}

/// The key of the `email.received` delivery of `record`: the same for every redelivery of its
/// parse request, so the app sees one `webhook-id` per received message.
pub fn received_event_key(record: &InboundMessage) -> String {
    format!("inbound#{}", record.id)
}

/// The body of the `email.received` app webhook:
/// `{"type": "email.received", "timestamp": <received_at>, "data": {...}}` where `data` is
/// [`inbound_json`] with bodies cut to [`MAX_WEBHOOK_BODY_BYTES`] (`bodies_truncated` then
/// true), `raw_url`, each attachment's `url`, and `links_expire_at`.
pub fn received_webhook_body(record: &InboundMessage, links: &ReceivedLinks) -> String {
    let mut data = inbound_json(record, true);
    if let Value::Object(map) = &mut data {
        let mut truncated = map
            .get("bodies_truncated")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        for field in ["text", "html"] {
            let (body, was_cut) = cut(
                map.get(field).and_then(Value::as_str),
                MAX_WEBHOOK_BODY_BYTES,
            );
            truncated |= was_cut;
            map.insert(field.to_owned(), json!(body));
        }
        map.insert("bodies_truncated".to_owned(), json!(truncated));
        map.insert("raw_url".to_owned(), json!(links.raw.url));
        map.insert("links_expire_at".to_owned(), rfc3339(links.raw.expires_at));
        if let Some(Value::Array(attachments)) = map.get_mut("attachments") {
            for (attachment, link) in attachments.iter_mut().zip(&links.attachments) {
                if let Value::Object(a) = attachment {
                    a.insert("url".to_owned(), json!(link.url));
                }
            }
        }
    }
    json!({
        "type": EventKind::Received.webhook_type(),
        "timestamp": rfc3339(record.received_at),
        "data": data,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbound::InboundSource;
    use crate::{AuthVerdicts, ProviderId};

    fn parsed() -> InboundMessage {
        let source = InboundSource {
            provider: ProviderId::Postmark,
            source_id: "pm-1".into(),
            recipient: "support@example.com".into(),
            message_id: None,
            auth: AuthVerdicts::default(),
        };
        let raw = format!(
            "From: Ana <ana@example.org>\r\nSubject: Re: hi\r\nIn-Reply-To: <msg_0123456789abcdefghjkmnpqrs@example.com>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n{}\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n",
            "x".repeat(MAX_WEBHOOK_BODY_BYTES + 10)
        );
        let mail = crate::parse_mime(raw.as_bytes()).unwrap();
        let thread = mail.our_message_ids().into_iter().next();
        InboundMessage::received(InboundId::generate(), &source, UnixMillis(1_000), 9)
            .parsed(&mail, thread)
    }

    #[test]
    fn cursors_round_trip_and_foreign_text_is_refused() {
        let cursor = InboundCursor {
            received_at: UnixMillis(1_764_800_000_123),
            id: InboundId::generate(),
        };
        assert_eq!(InboundCursor::decode(&cursor.encode()).unwrap(), cursor);
        assert_eq!(InboundCursor::decode("bm9wZQ"), Err(InvalidInboundCursor));
        assert_eq!(InboundCursor::decode("!!"), Err(InvalidInboundCursor));
    }

    #[test]
    fn the_received_webhook_carries_the_summary_thread_and_links_with_bodies_cut() {
        let record = parsed();
        let links = ReceivedLinks {
            raw: DownloadLink {
                url: "http://127.0.0.1/raw?sig".into(),
                expires_at: UnixMillis(3_600_000),
            },
            attachments: vec![DownloadLink {
                url: "http://127.0.0.1/att0?sig".into(),
                expires_at: UnixMillis(3_600_000),
            }],
        };
        let body: Value = serde_json::from_str(&received_webhook_body(&record, &links)).unwrap();
        assert_eq!(body["type"], "email.received");
        let data = &body["data"];
        assert_eq!(data["id"], record.id.as_str());
        assert_eq!(data["thread"], "msg_0123456789abcdefghjkmnpqrs");
        assert_eq!(data["kind"], "message");
        assert_eq!(data["from"]["address"], "ana@example.org");
        assert_eq!(data["raw_url"], "http://127.0.0.1/raw?sig");
        assert_eq!(data["attachments"][0]["url"], "http://127.0.0.1/att0?sig");
        assert_eq!(data["attachments"][0]["content_type"], "application/pdf");
        assert_eq!(data["links_expire_at"], "1970-01-01T01:00:00Z");
        assert!(data["text"].as_str().unwrap().len() <= MAX_WEBHOOK_BODY_BYTES);
        assert_eq!(data["bodies_truncated"], true);
        // The listing form leaves the bodies out.
        let listed = inbound_json(&record, false);
        assert!(listed.get("text").is_none());
        assert_eq!(listed["subject"], "Re: hi");
    }
}
