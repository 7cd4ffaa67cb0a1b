//! What the queues carry, independent of the queue service: the size and delay limits every
//! queue message meets, and the events-queue envelope the webhook ingestion writes and the event
//! processor reads; and [`sqs_safe`], which keeps every body within the characters SQS accepts.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;

use crate::ProviderId;

/// The largest message body, and the largest sum of bodies in one batch call (SQS's classic
/// 256 KiB limit, which every region and the local emulator accept).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// The longest delay a queue accepts on one message (15 minutes).
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// A delay as the queue takes it: whole seconds, rounded up, at most 900.
pub fn delay_seconds(delay: Duration) -> i32 {
    let capped = delay.min(MAX_DELAY);
    let secs = capped.as_secs() + u64::from(capped.subsec_nanos() > 0);
    i32::try_from(secs.min(MAX_DELAY.as_secs())).unwrap_or(900)
}

/// Whether SQS accepts `c` in a message body: `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD |
/// #x10000-#x10FFFF` (surrogates never occur in a `str`).
fn sqs_accepts(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The byte offset of the first character SQS refuses in `body`. A byte scan: the refused
/// characters are the ASCII controls other than tab, LF and CR, and U+FFFE / U+FFFF (UTF-8
/// `EF BF BE` / `EF BF BF`), so no decoding is needed, and every hit is a char boundary.
fn first_refused(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    // Whole 16-byte chunks with no control byte and no 0xEF (the common case: compact JSON of
    // Latin text) are passed over with a branch-free test the compiler vectorises; a chunk that
    // may hold a hit, and the tail, are read byte by byte. The chunk holding the first hit is
    // always read exactly, so the result is the same as the byte scan's.
    let clean = |chunk: &[u8]| {
        chunk
            .iter()
            .fold(true, |ok, &b| ok & (b >= 0x20) & (b != 0xEF))
    };
    let mut start = 0;
    while let Some(chunk) = bytes.get(start..start + 16) {
        if !clean(chunk) {
            break;
        }
        start += 16;
    }
    bytes.iter().enumerate().skip(start).find_map(|(i, &b)| {
        let refused = match b {
            b'\t' | b'\n' | b'\r' => false,
            0..0x20 => true,
            0xEF => {
                bytes.get(i + 1) == Some(&0xBF) && matches!(bytes.get(i + 2), Some(0xBE | 0xBF))
            }
            _ => false,
        };
        refused.then_some(i)
    })
}

/// `body` (a JSON text) with every character SQS refuses in a message body replaced by its
/// `\uXXXX` JSON escape; borrowed, after one byte scan, when there is none (the common case).
///
/// SQS rejects a message holding such a character (e.g. U+FFFE or U+FFFF, which JSON allows
/// unescaped in a string and a provider may echo back); moto does not check. In a JSON text
/// they can only stand inside strings (raw controls are not even valid there), where the escape
/// means the same character, so the body parses to the same value. All of them lie in the Basic
/// Multilingual Plane: four hex digits always suffice.
pub fn sqs_safe(body: &str) -> Cow<'_, str> {
    let Some(start) = first_refused(body) else {
        return Cow::Borrowed(body);
    };
    let mut safe = String::with_capacity(body.len() + 16);
    safe.push_str(&body[..start]);
    for c in body[start..].chars() {
        if sqs_accepts(c) {
            safe.push(c);
        } else {
            let _ = write!(safe, "\\u{:04x}", u32::from(c));
        }
    }
    Cow::Owned(safe)
}

/// One event on the events queue, as the event processor reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct QueuedEvent {
    /// Envelope version.
    pub v: u32,
    /// Whose event it is.
    pub provider: ProviderId,
    /// The receipt it came from.
    pub receipt: String,
    /// Its position in the delivery.
    pub index: usize,
    /// How many events the delivery holds.
    pub count: usize,
    /// Receipt time, Unix milliseconds.
    pub received_at: i64,
    /// The provider's event, exactly as it arrived; absent when too large for a queue message
    /// (`oversize`), in which case the processor reads it from the receipt.
    pub event: Option<Box<serde_json::value::RawValue>>,
    /// Set when the event was left in the receipt.
    #[serde(default)]
    pub oversize: bool,
}

/// Builds the queue messages of a receipt's events. The events are JSON already (raw slices of
/// the verified body, or objects built from it), so they are placed without re-serialising,
/// made [`sqs_safe`] first so the size check counts what SQS will hold. Each message is one
/// allocation of its final size; the envelope's head is the same for every event but `index`.
pub fn queue_messages<E: AsRef<str>>(
    provider: ProviderId,
    receipt: &str,
    received_at_ms: i64,
    events: &[E],
) -> Vec<String> {
    let receipt = serde_json::Value::String(receipt.to_owned()).to_string();
    let count = events.len();
    let before_index = format!(r#"{{"v":1,"provider":"{provider}","receipt":{receipt},"index":"#);
    let after_index = format!(r#","count":{count},"received_at":{received_at_ms},"#);
    events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let event = sqs_safe(event.as_ref());
            let digits = index.checked_ilog10().map_or(1, |d| d as usize + 1);
            let head = before_index.len() + digits + after_index.len();
            let fits = head + event.len() + 10 < MAX_MESSAGE_BYTES;
            let mut message =
                String::with_capacity(head + if fits { event.len() + 10 } else { 32 });
            message.push_str(&before_index);
            let _ = write!(message, "{index}");
            message.push_str(&after_index);
            if fits {
                message.push_str(r#""event":"#);
                message.push_str(&event);
                message.push('}');
            } else {
                message.push_str(r#""event":null,"oversize":true}"#);
            }
            message
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_messages_wrap_each_event_and_read_back() {
        let events = vec![
            r#"{"event":"open","sg_event_id":"a"}"#.to_owned(),
            r#"{"event":"click"}"#.to_owned(),
        ];
        let msgs = queue_messages(ProviderId::Sendgrid, "sendgrid#k\"1", 1_700, &events);
        assert_eq!(msgs.len(), 2);
        let first: QueuedEvent = serde_json::from_str(&msgs[0]).unwrap();
        assert_eq!(first.provider, ProviderId::Sendgrid);
        assert_eq!(first.receipt, "sendgrid#k\"1");
        assert_eq!((first.index, first.count, first.received_at), (0, 2, 1_700));
        assert_eq!(first.event.unwrap().get(), events[0]);
        assert!(!first.oversize);
    }

    #[test]
    fn an_event_too_large_for_a_message_is_left_in_the_receipt() {
        let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(MAX_MESSAGE_BYTES));
        let msgs = queue_messages(ProviderId::Postmark, "postmark#k", 1, &[huge]);
        assert!(msgs[0].len() < 300);
        let read: QueuedEvent = serde_json::from_str(&msgs[0]).unwrap();
        assert!(read.oversize);
        assert!(read.event.is_none());
    }

    #[test]
    fn noncharacters_fffe_and_ffff_become_json_escapes() {
        let body = "{\"subject\":\"a\u{FFFE}b\u{FFFF}\",\"k\u{FFFF}\":1}";
        assert_eq!(
            sqs_safe(body),
            r#"{"subject":"a\ufffeb\uffff","k\uffff":1}"#
        );
    }

    #[test]
    fn raw_controls_are_escaped_and_tab_lf_cr_are_kept() {
        for c in (0u8..0x20).map(char::from) {
            let body = format!("\"x{c}y\"");
            let safe = sqs_safe(&body);
            if matches!(c, '\t' | '\n' | '\r') {
                assert!(matches!(safe, Cow::Borrowed(_)), "{c:?} kept");
            } else {
                assert_eq!(safe, format!("\"x\\u{:04x}y\"", u32::from(c)), "{c:?}");
            }
        }
        assert_eq!(
            sqs_safe("\u{1}\u{2}\u{3}\u{4}\u{5}\u{6}\u{7}\u{8}"),
            r"\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008"
        );
    }

    #[test]
    fn a_body_with_nothing_to_escape_is_borrowed() {
        let body = "{\"s\":\"caf\u{E9} \u{D7FF}\u{E000}\u{FFFD}\u{10000}\u{1F600}\u{10FFFF} \\uffff\"}\n\t\r";
        assert!(matches!(sqs_safe(body), Cow::Borrowed(b) if b == body));
        assert!(matches!(sqs_safe(""), Cow::Borrowed("")));
    }

    #[test]
    fn every_character_is_either_accepted_as_is_or_escaped() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            let body = format!("a{c}b");
            match sqs_safe(&body) {
                Cow::Borrowed(_) => assert!(sqs_accepts(c), "{:04x} passed through", u32::from(c)),
                Cow::Owned(safe) => {
                    assert!(!sqs_accepts(c), "{:04x} escaped needlessly", u32::from(c));
                    assert_eq!(safe, format!("a\\u{:04x}b", u32::from(c)));
                }
            }
        }
    }

    #[test]
    fn an_escaped_body_parses_to_the_same_value() {
        let original = serde_json::json!({
            "subject": "Re: \u{FFFF}offer\u{FFFE}",
            "metadata": {"tag\u{FFFF}": ["\u{FFFE}", "plain", 1, null]},
            "emoji": "\u{1F600}",
        });
        let body = original.to_string();
        assert!(body.contains('\u{FFFF}'), "serde_json leaves it raw");
        let safe = sqs_safe(&body);
        assert!(!safe.contains(['\u{FFFE}', '\u{FFFF}']));
        let parsed: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(parsed, original);
        // Raw controls make a text that is not JSON; escaped, it parses with the controls kept.
        let escaped: serde_json::Value =
            serde_json::from_str(&sqs_safe("\"a\u{1}\u{8}\"")).unwrap();
        assert_eq!(escaped, "a\u{1}\u{8}");
        assert!(serde_json::from_str::<serde_json::Value>("\"a\u{1}\"").is_err());
    }

    #[test]
    fn queue_messages_are_sqs_safe_and_read_back_the_same_event() {
        let event = "{\"RecordType\":\"Open\",\"Metadata\":{\"note\":\"x\u{FFFF}\"}}".to_owned();
        let msgs = queue_messages(
            ProviderId::Postmark,
            "postmark#k",
            1,
            std::slice::from_ref(&event),
        );
        assert!(!msgs[0].contains('\u{FFFF}'));
        assert!(matches!(sqs_safe(&msgs[0]), Cow::Borrowed(_)));
        let read: QueuedEvent = serde_json::from_str(&msgs[0]).unwrap();
        let got: serde_json::Value = serde_json::from_str(read.event.unwrap().get()).unwrap();
        let want: serde_json::Value = serde_json::from_str(&event).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn delays_are_whole_seconds_capped_at_fifteen_minutes() {
        assert_eq!(delay_seconds(Duration::ZERO), 0);
        assert_eq!(delay_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(delay_seconds(Duration::from_secs(3600)), 900);
    }

    #[test]
    fn a_refused_character_is_found_wherever_it_falls_in_a_long_body() {
        for refused in ["\u{1}", "\u{FFFE}", "\u{FFFF}"] {
            for at in 0..48 {
                let body = format!(
                    "{}{refused}{}",
                    "é".repeat(at / 2) + &"x".repeat(at % 2),
                    "y".repeat(40)
                );
                let expected = format!(
                    "{}\\u{:04x}{}",
                    "é".repeat(at / 2) + &"x".repeat(at % 2),
                    u32::from(refused.chars().next().unwrap()),
                    "y".repeat(40)
                );
                assert_eq!(sqs_safe(&body), expected, "{refused:?} after {at} chars");
            }
        }
        let clean = format!("{}\u{EFBF}\u{FFFD}\t\n", "z".repeat(37));
        assert!(matches!(sqs_safe(&clean), Cow::Borrowed(_)));
    }
}
