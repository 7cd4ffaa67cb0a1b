//! What the queues carry, independent of the queue service: the size and delay limits every
//! queue message meets, and the events-queue envelope the webhook ingestion writes and the event
//! processor reads.

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
/// the verified body, or objects built from it), so they are placed without re-serialising.
pub fn queue_messages(
    provider: ProviderId,
    receipt: &str,
    received_at_ms: i64,
    events: &[String],
) -> Vec<String> {
    let receipt = serde_json::Value::String(receipt.to_owned()).to_string();
    let count = events.len();
    events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let head = format!(
                r#"{{"v":1,"provider":"{provider}","receipt":{receipt},"index":{index},"count":{count},"received_at":{received_at_ms},"#
            );
            if head.len() + event.len() + 10 < MAX_MESSAGE_BYTES {
                format!(r#"{head}"event":{event}}}"#)
            } else {
                format!(r#"{head}"event":null,"oversize":true}}"#)
            }
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
    fn delays_are_whole_seconds_capped_at_fifteen_minutes() {
        assert_eq!(delay_seconds(Duration::ZERO), 0);
        assert_eq!(delay_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(delay_seconds(Duration::from_secs(3600)), 900);
    }
}
