//! Normalising queued provider events into [`DeliveryEvent`]s, one per recipient.
//!
//! What is queued per provider is what [`crate::webhook::events_of`] returns: the whole SNS
//! envelope (SES), one element of the batch array (SendGrid), the `event-data` object (Mailgun),
//! the body object (Postmark) and the body as a JSON object (SMTP2GO, form posts included). Each
//! provider's mapping lives in its own module (`<provider>/events.rs`, reached through
//! [`crate::webhook::webhook_provider`]); this module holds the error and the small readers
//! every mapping shares (times, addresses, ids, keys), so that "lenient" means the same thing
//! for every provider.

use mailgate_core::{
    BounceReport, DeliveryEvent, EmailAddress, EnhancedStatus, EventKind, EventSource, MessageId,
    ProviderId, UnixMillis, find_reply_code,
};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

/// Where the raw event came from and when we received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventOrigin<'a> {
    /// The receipt key of the webhook delivery that carried the event (`<provider>#<key>`).
    pub receipt: &'a str,
    /// The event's position in that delivery.
    pub index: usize,
    /// When we received the delivery.
    pub received_at: UnixMillis,
}

/// A queued event that cannot be normalised: it is not JSON, or not the shape the provider
/// documents. The raw event stays on its receipt for audit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormaliseError {
    /// The text is not JSON at all.
    #[error("the {provider} event is not JSON: {reason}")]
    NotJson {
        /// Whose event it was meant to be.
        provider: ProviderId,
        /// The parser's complaint.
        reason: String,
    },
    /// The JSON is not the documented shape (not an object, no event type, …).
    #[error("the {provider} event is not the documented shape: {reason}")]
    Shape {
        /// Whose event it was meant to be.
        provider: ProviderId,
        /// What is missing or wrong.
        reason: String,
    },
}

impl NormaliseError {
    /// A shape error for `provider`.
    pub(crate) fn shape(provider: ProviderId, reason: impl Into<String>) -> Self {
        Self::Shape {
            provider,
            reason: reason.into(),
        }
    }
}

/// Normalises one event exactly as the webhook function queued it (see the module docs) into one
/// [`DeliveryEvent`] per recipient. Unknown event types become [`EventKind::Unknown`], never an
/// error; only text that is not the documented shape is an error. Shorthand for
/// [`crate::webhook::WebhookProvider::normalise`].
pub fn normalise(
    provider: ProviderId,
    event: &str,
    origin: &EventOrigin<'_>,
) -> Result<Vec<DeliveryEvent>, NormaliseError> {
    crate::webhook::webhook_provider(provider).normalise(event, origin)
}

/// Normalises an SES event that arrived through EventBridge (envelope with `id`, `detail-type`,
/// `source: aws.ses`, `time`, `detail` = the SES event-publishing record). The receipt is
/// `eventbridge#<id>` and each recipient's dedupe key is a composite of `id` and the recipient.
pub fn normalise_eventbridge(
    envelope: &str,
    received_at: UnixMillis,
) -> Result<Vec<DeliveryEvent>, NormaliseError> {
    crate::ses::events::normalise_eventbridge(envelope, received_at)
}

/// Parses `text` as a JSON object.
pub(crate) fn parse_object(
    provider: ProviderId,
    text: &str,
) -> Result<Map<String, Value>, NormaliseError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(NormaliseError::shape(
            provider,
            "the event is not a JSON object",
        )),
        Err(e) => Err(NormaliseError::NotJson {
            provider,
            reason: e.to_string(),
        }),
    }
}

/// An event with only its identity filled in; the mappings set the rest.
pub(crate) fn blank(
    provider: ProviderId,
    key: String,
    kind: EventKind,
    provider_type: &str,
    origin: &EventOrigin<'_>,
    recipient_index: usize,
) -> DeliveryEvent {
    DeliveryEvent {
        key,
        kind,
        provider_type: provider_type.to_owned(),
        provider,
        recipient: None,
        provider_message_id: None,
        message_id: None,
        occurred_at: None,
        received_at: origin.received_at,
        bounce: None,
        url: None,
        detail: None,
        provider_suppressed: false,
        complaint_feedback: None,
        source: EventSource {
            receipt: origin.receipt.to_owned(),
            index: origin.index,
            recipient_index,
        },
    }
}

/// The non-blank string at `path` (object keys) below `value`, trimmed.
pub(crate) fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut at = value;
    for key in path {
        at = at.get(key)?;
    }
    at.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// The value at `path` as key material: strings as they are, numbers rendered (Postmark's `ID`
/// is a 64-bit integer), anything else absent.
pub(crate) fn id_text(value: &Value, path: &[&str]) -> Option<String> {
    let mut at = value;
    for key in path {
        at = at.get(key)?;
    }
    match at {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A recipient address; one we cannot parse is dropped from the event, not the event itself.
pub(crate) fn address(raw: Option<&str>) -> Option<EmailAddress> {
    raw.and_then(|r| EmailAddress::parse(r).ok())
}

/// Our message id, if the provider echoed a valid one.
pub(crate) fn our_id(raw: Option<&str>) -> Option<MessageId> {
    raw.and_then(|r| MessageId::parse(r.trim()).ok())
}

/// A bounce report built from a diagnostic text and an optional status field: the status field
/// wins, else the first enhanced status quoted in the text; the reply code comes from the text.
pub(crate) fn report(diagnostic: Option<&str>, status: Option<&str>) -> BounceReport {
    let status = status
        .and_then(|s| EnhancedStatus::parse(s).ok())
        .or_else(|| diagnostic.and_then(EnhancedStatus::find_in));
    BounceReport {
        status,
        reply_code: diagnostic.and_then(find_reply_code),
        diagnostic: diagnostic.map(str::to_owned),
        ..BounceReport::default()
    }
}

/// A dedupe key over an event's whole content, for events whose documented id is missing: the
/// JSON is canonicalised (object keys sorted) so the key does not depend on field order.
pub(crate) fn content_key(label: &str, value: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(value, &mut canonical);
    crate::webhook::composite_key(label, &[&canonical])
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Above this, a Unix timestamp is taken for milliseconds (10^11 s is the year 5138, 10^11 ms is
/// 1973): SendGrid documents seconds but its Single Send events carry milliseconds.
const MILLIS_THRESHOLD: f64 = 1e11;

/// A Unix timestamp in seconds (integer or fractional, as a number or numeric string), or in
/// milliseconds when it is too large to be seconds.
pub(crate) fn epoch_time(value: &Value) -> Option<UnixMillis> {
    let number = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !number.is_finite() || number < 0.0 {
        return None;
    }
    let millis = if number > MILLIS_THRESHOLD {
        number
    } else {
        // Rounded, not truncated: 1529692199.626 s is 1529692199625.9998 ms in binary.
        (number * 1000.0).round()
    };
    // Far beyond any real event time; refusing it keeps the cast below exact.
    if millis > 1e15 {
        return None;
    }
    Some(UnixMillis(millis as i64))
}

/// An event time written as text: ISO 8601 / RFC 3339 read leniently (a space before the offset,
/// `+0000` offsets, a space for `T`, no offset meaning UTC, up to 9 fractional digits), RFC 2822,
/// or a numeric Unix timestamp.
pub(crate) fn text_time(raw: &str) -> Option<UnixMillis> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    if let Ok(at) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Some(UnixMillis::from_datetime(at));
    }
    if raw.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return epoch_time(&Value::String(raw.to_owned()));
    }
    if let Some(fixed) = lenient_rfc3339(raw)
        && let Ok(at) = OffsetDateTime::parse(&fixed, &Rfc3339)
    {
        return Some(UnixMillis::from_datetime(at));
    }
    OffsetDateTime::parse(raw, &Rfc2822)
        .ok()
        .map(UnixMillis::from_datetime)
}

/// An event time given as a number or as text (see [`epoch_time`] and [`text_time`]).
pub(crate) fn any_time(value: &Value) -> Option<UnixMillis> {
    match value {
        Value::String(s) => text_time(s),
        other => epoch_time(other),
    }
}

/// Rewrites the near-RFC 3339 forms providers send (`2018-10-08T14:05:45 +0000`,
/// `2024-01-01 00:00:05`, `…+0530`, `… UTC`) into RFC 3339.
fn lenient_rfc3339(raw: &str) -> Option<String> {
    if !raw.is_ascii() || raw.len() < 19 {
        return None;
    }
    let mut s = raw.to_ascii_uppercase();
    if s.as_bytes().get(10) == Some(&b' ') {
        s.replace_range(10..11, "T");
    }
    if s.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    if let Some(stripped) = s.strip_suffix("UTC").or_else(|| s.strip_suffix("GMT")) {
        s = format!("{}Z", stripped.trim_end());
    }
    s.retain(|c| c != ' ');
    // The offset sign, if any, comes after the date's own dashes.
    match s[11..].rfind(['+', '-']).map(|i| i + 11) {
        Some(sign) => {
            let offset = &s[sign + 1..];
            let fixed = match offset.len() {
                4 if offset.bytes().all(|b| b.is_ascii_digit()) => {
                    format!("{}:{}", &offset[..2], &offset[2..])
                }
                2 if offset.bytes().all(|b| b.is_ascii_digit()) => format!("{offset}:00"),
                _ => offset.to_owned(),
            };
            s.replace_range(sign + 1.., &fixed);
        }
        None if !s.ends_with('Z') => s.push('Z'),
        None => {}
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text_time(text)
            .unwrap_or_else(|| panic!("{text} parses"))
            .as_i64()
    }

    #[test]
    fn iso_times_are_read_leniently() {
        let base = 1_539_007_545_000; // 2018-10-08T14:05:45Z
        assert_eq!(ms("2018-10-08T14:05:45Z"), base);
        assert_eq!(ms("2018-10-08T14:05:45 +0000"), base);
        assert_eq!(ms("2018-10-08T14:05:45+0000"), base);
        assert_eq!(ms("2018-10-08 14:05:45"), base);
        assert_eq!(ms("2018-10-08T14:05:45 UTC"), base);
        assert_eq!(ms("2018-10-08T16:05:45+02"), base);
        assert_eq!(ms("2018-10-08T10:05:45-0400"), base);
        assert_eq!(ms("Mon, 08 Oct 2018 14:05:45 +0000"), base);
        // Postmark's seven fractional digits.
        assert_eq!(ms("2019-11-05T16:33:54.9070259Z"), 1_572_971_634_907);
        assert_eq!(ms("2014-08-01T13:28:10.2735393-04:00"), 1_406_914_090_273);
        assert_eq!(ms("1539007545"), base);
        assert_eq!(text_time("yesterday"), None);
        assert_eq!(text_time(""), None);
        assert_eq!(text_time("2018-10-08T14:05:45 +zz"), None);
        assert_eq!(text_time("ünïcödé-10-08T14:05:45"), None);
    }

    #[test]
    fn epoch_times_take_seconds_fractions_and_milliseconds() {
        assert_eq!(
            epoch_time(&serde_json::json!(1513299569)),
            Some(UnixMillis(1_513_299_569_000))
        );
        assert_eq!(
            epoch_time(&serde_json::json!(1591726752372_i64)),
            Some(UnixMillis(1_591_726_752_372))
        );
        assert_eq!(
            epoch_time(&serde_json::json!(1529692199.626182)),
            Some(UnixMillis(1_529_692_199_626))
        );
        assert_eq!(epoch_time(&serde_json::json!(-5)), None);
        assert_eq!(epoch_time(&serde_json::json!(1e300)), None);
        assert_eq!(epoch_time(&serde_json::json!("soon")), None);
        assert_eq!(epoch_time(&serde_json::json!(null)), None);
    }

    #[test]
    fn content_keys_ignore_field_order_and_hide_addresses() {
        let a = serde_json::json!({"a": 1, "b": {"y": [1, "x@example.com"], "x": null}});
        let b: Value =
            serde_json::from_str(r#"{"b":{"x":null,"y":[1,"x@example.com"]},"a":1}"#).unwrap();
        assert_eq!(content_key("l", &a), content_key("l", &b));
        assert!(!content_key("l", &a).contains("example.com"));
        assert_ne!(
            content_key("l", &a),
            content_key("l", &serde_json::json!({"a": 2}))
        );
    }

    #[test]
    fn reports_prefer_the_status_field_and_read_the_reply_code_from_the_text() {
        let r = report(Some("smtp; 550 5.1.1 user unknown"), Some("5.1.2"));
        assert_eq!(r.status, EnhancedStatus::parse("5.1.2").ok());
        assert_eq!(r.reply_code, Some(550));
        let r = report(Some("smtp; 550 5.1.1 user unknown"), Some("bogus"));
        assert_eq!(r.status, EnhancedStatus::parse("5.1.1").ok());
        assert_eq!(report(None, None), BounceReport::default());
    }

    #[test]
    fn text_ignores_blanks_and_non_strings() {
        let v = serde_json::json!({"a": {"b": " x "}, "c": "  ", "d": 5});
        assert_eq!(text(&v, &["a", "b"]), Some("x"));
        assert_eq!(text(&v, &["c"]), None);
        assert_eq!(text(&v, &["d"]), None);
        assert_eq!(id_text(&v, &["d"]).as_deref(), Some("5"));
        assert_eq!(text(&v, &["missing", "b"]), None);
    }
}
