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

/// The item key of a receipt: `<provider>#<dedupe key>`.
pub fn receipt_key(provider: crate::ProviderId, dedupe_key: &str) -> String {
    format!("{provider}#{dedupe_key}")
}

/// A Mailgun token to remember, so a captured signature cannot carry other event data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayGuard<'a> {
    /// The signed token.
    pub token: &'a str,
    /// When the cache entry may expire (Unix seconds): beyond the timestamp window.
    pub expires_at: i64,
}

/// One receipt to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReceipt<'a> {
    /// Whose webhook it is.
    pub provider: crate::ProviderId,
    /// The delivery-level dedupe key.
    pub dedupe_key: &'a str,
    /// What the delivery carries.
    pub kind: DeliveryKind,
    /// `received` for events still to enqueue; `failed` or `processed` when there is nothing to
    /// enqueue.
    pub status: ReceiptStatus,
    /// The raw body, exactly as received.
    pub body: &'a [u8],
    /// The request's `Content-Type`, needed to read the body again.
    pub content_type: Option<&'a str>,
    /// Which scheme verified it (e.g. `ecdsa-p256`, `sns-v2`, `hmac-sha256`, `basic`).
    pub verification: &'a str,
    /// How many events the body holds.
    pub event_count: usize,
    /// Why an authentic body could not be read (`failed` receipts).
    pub error: Option<&'a str>,
    /// Receipt time, Unix milliseconds.
    pub received_at_ms: i64,
    /// Until when this request holds the right to enqueue (Unix milliseconds).
    pub lease_until_ms: i64,
    /// When the store may delete the receipt (Unix seconds).
    pub expires_at: i64,
    /// Mailgun's token, recorded in the same write.
    pub replay_guard: Option<ReplayGuard<'a>>,
}

/// What recording found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// This is the first delivery: the receipt was written.
    New,
    /// A receipt with this key exists already.
    Duplicate(ExistingReceipt),
}

/// The state of an earlier receipt for the same delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingReceipt {
    /// Its status.
    pub status: ReceiptStatus,
    /// Until when another request holds its enqueue lease (Unix ms), if any.
    pub lease_until_ms: Option<i64>,
}

/// A stored receipt, with its body reassembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceipt {
    /// The item key.
    pub key: String,
    /// Whose webhook it is.
    pub provider: crate::ProviderId,
    /// Its status.
    pub status: ReceiptStatus,
    /// The raw body.
    pub body: Vec<u8>,
    /// The request's `Content-Type`.
    pub content_type: Option<String>,
    /// Receipt time, Unix milliseconds.
    pub received_at_ms: i64,
    /// How many times its enqueue lease was taken (the first enqueue and the sweeper's).
    pub attempts: u32,
}

/// Why a receipt was not recorded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordError {
    /// The Mailgun token was already used for another delivery.
    #[error("the webhook token was already used for another delivery")]
    Replayed,
    /// The store could not be written.
    #[error(transparent)]
    Unavailable(#[from] crate::StoreError),
}
