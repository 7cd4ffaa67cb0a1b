//! The ports of webhook ingestion: the receipts store (record a verified delivery, hold the
//! right to enqueue it, mark it queued, find the stuck ones, read one back), the events queue,
//! and reading a stored body into its events again.

use super::{BoxFuture, StoreError};
use crate::{NewReceipt, ProviderId, RecordError, Recorded, StoredReceipt};

/// Webhook receipts: the durable record of each verified delivery.
pub trait WebhookReceipts: Send + Sync {
    /// Records a receipt unless one with the same key exists (then reports it). A replay guard
    /// (Mailgun's token) is recorded in the same write; a token already used for another
    /// delivery fails with [`RecordError::Replayed`] and nothing is written.
    fn record<'a>(
        &'a self,
        receipt: &'a NewReceipt<'a>,
    ) -> BoxFuture<'a, Result<Recorded, RecordError>>;

    /// Takes the enqueue lease of a `received` receipt whose lease has lapsed, until
    /// `lease_until_ms`, counting the attempt ([`StoredReceipt::attempts`]). `false` when the
    /// receipt moved on or another request holds a live lease.
    fn claim<'a>(
        &'a self,
        key: &'a str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Moves a `received` receipt to `queued`; one already past `received` is left as it is.
    fn mark_queued<'a>(
        &'a self,
        key: &'a str,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Leaves a `received` receipt whose re-enqueue failed alone until `retry_at_ms` (its lease
    /// becomes the backoff), so later sweeps pass over it to newer ones meanwhile.
    fn retry_later<'a>(
        &'a self,
        key: &'a str,
        retry_at_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Gives up on a `received` receipt: `failed` with `reason`, out of the sweeper's index
    /// (kept for audit and an operator). `false` when it had moved on.
    fn mark_failed<'a>(
        &'a self,
        key: &'a str,
        now_ms: i64,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Keys of `provider`'s receipts still `received` that arrived before `before_ms`, oldest
    /// first, at most `limit`.
    fn stale(
        &self,
        provider: ProviderId,
        before_ms: i64,
        limit: i32,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>>;

    /// A receipt with its body reassembled; `None` when there is no such receipt.
    fn load<'a>(&'a self, key: &'a str)
    -> BoxFuture<'a, Result<Option<StoredReceipt>, StoreError>>;
}

/// How a set of messages went onto a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Messages enqueued.
    pub messages: usize,
    /// Calls made to the queue (retries included).
    pub calls: usize,
}

/// The events queue: one message per provider event, for the event processor.
pub trait EventsQueue: Send + Sync {
    /// Puts every message on the queue, or fails. On failure some may be on it already:
    /// callers treat the whole set as not enqueued and may send it again (consumers dedupe).
    fn enqueue<'a>(&'a self, messages: &'a [String])
    -> BoxFuture<'a, Result<Enqueued, StoreError>>;
}

/// Reads a stored, already-verified body into its events again (each event's raw JSON), as the
/// provider's webhook format says; the error says why it no longer reads.
pub trait ReceiptEvents: Send + Sync {
    /// The events of `body`, a `provider` delivery with `content_type`.
    fn events_of(
        &self,
        provider: ProviderId,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<Vec<String>, String>;
}
