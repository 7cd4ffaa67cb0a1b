//! Webhook receipts: the durable record of one verified provider delivery, written before the
//! provider is answered, and the life it goes through until its events are processed.

use std::fmt;
use std::str::FromStr;

/// Where a receipt is in its life. It only moves forward: `received` → `queued` →
/// `processed`, or straight to `failed` when an authentic body cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Persisted; its events are not yet known to be on the events queue.
    Received,
    /// Every event is on the events queue.
    Queued,
    /// The event processor has applied its events (or nothing was to be enqueued).
    Processed,
    /// Authentic but unreadable: kept for audit, never enqueued.
    Failed,
}

impl ReceiptStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::Received => "received",
            ReceiptStatus::Queued => "queued",
            ReceiptStatus::Processed => "processed",
            ReceiptStatus::Failed => "failed",
        }
    }

    /// Whether a redelivery of this receipt must still be enqueued.
    pub fn needs_enqueue(self) -> bool {
        self == ReceiptStatus::Received
    }
}

impl fmt::Display for ReceiptStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored status name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown receipt status {0:?}")]
pub struct UnknownReceiptStatus(pub String);

impl FromStr for ReceiptStatus {
    type Err = UnknownReceiptStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "received" => Ok(ReceiptStatus::Received),
            "queued" => Ok(ReceiptStatus::Queued),
            "processed" => Ok(ReceiptStatus::Processed),
            "failed" => Ok(ReceiptStatus::Failed),
            other => Err(UnknownReceiptStatus(other.to_owned())),
        }
    }
}

/// What a verified delivery carries, as far as ingestion is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// Delivery events for the event processor.
    Events,
    /// An SNS subscription handshake, confirmed by the webhook itself.
    SubscriptionConfirmation,
    /// SNS says the subscription was removed: recorded and alerted, nothing enqueued.
    UnsubscribeConfirmation,
}

impl DeliveryKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Events => "events",
            DeliveryKind::SubscriptionConfirmation => "subscription_confirmation",
            DeliveryKind::UnsubscribeConfirmation => "unsubscribe_confirmation",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_only_received_needs_enqueue() {
        for s in [
            ReceiptStatus::Received,
            ReceiptStatus::Queued,
            ReceiptStatus::Processed,
            ReceiptStatus::Failed,
        ] {
            assert_eq!(s.as_str().parse::<ReceiptStatus>(), Ok(s));
            assert_eq!(s.needs_enqueue(), s == ReceiptStatus::Received);
        }
        assert!("lost".parse::<ReceiptStatus>().is_err());
    }
}
