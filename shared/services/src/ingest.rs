//! Webhook ingestion after verification: persist the receipt, enqueue its events, mark it
//! queued — and the sweeper's re-enqueue of receipts left `received`.
//!
//! The order is the guarantee: a receipt is durable before anything is enqueued and before the
//! provider hears 2xx; an enqueue failure leaves it `received` (the provider gets 5xx and
//! retries, and the sweeper re-enqueues it); once `queued`, nothing enqueues it again.

use std::sync::Arc;

use mailgate_core::ports::{EventsQueue, ReceiptEvents, WebhookReceipts};
use mailgate_core::{
    Clock, DeliveryKind, NewReceipt, ProviderId, ReceiptStatus, RecordError, Recorded, ReplayGuard,
    StoreError, queue_messages, receipt_key,
};

/// How long a request holds the right to enqueue a receipt: twice the function timeout, so a
/// request that is still running is never overtaken by the sweeper or a duplicate.
pub const ENQUEUE_LEASE_MS: i64 = 60_000;

/// What happened to a verified delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// New (or an earlier copy was stuck): its events are on the queue now.
    Queued {
        /// The receipt key.
        receipt: String,
        /// Events enqueued.
        events: usize,
        /// Queue calls made.
        calls: usize,
    },
    /// Recorded with nothing to enqueue (`processed` or `failed`).
    Recorded {
        /// The receipt key.
        receipt: String,
        /// The status it was recorded with.
        status: ReceiptStatus,
    },
    /// A copy of a delivery already received.
    Duplicate {
        /// The receipt key.
        receipt: String,
        /// The earlier receipt's status.
        status: ReceiptStatus,
        /// Whether another request is enqueueing it right now (it stays safe: that request, or
        /// the sweeper, finishes the job).
        in_flight: bool,
    },
}

/// Why a verified delivery was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    /// A Mailgun token reused for other content.
    #[error("replayed token")]
    Replayed,
    /// The receipt could not be written (nothing was accepted), or marking it queued failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The receipt is stored but its events are not all on the queue; it stays `received`.
    #[error("receipt {receipt} stored but not enqueued: {error}")]
    Queue {
        /// The receipt key.
        receipt: String,
        /// The queue's failure.
        error: StoreError,
    },
}

/// A verified delivery and the request facts the receipt keeps.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// Whose webhook it is.
    pub provider: ProviderId,
    /// The delivery-level dedupe key: equal for every redelivery of the same delivery.
    pub dedupe_key: &'a str,
    /// Events, or an SNS subscription handshake.
    pub kind: DeliveryKind,
    /// The events (raw JSON, one string each), or why the authentic body could not be read.
    pub events: Result<&'a [String], &'a str>,
    /// The scheme that verified it, as stored on the receipt (e.g. `ecdsa-p256`).
    pub verification: &'a str,
    /// A signed single-use token to remember (Mailgun), if the scheme has one.
    pub replay_token: Option<&'a str>,
    /// The raw body.
    pub body: &'a [u8],
    /// The request's `Content-Type`.
    pub content_type: Option<&'a str>,
}

/// What one sweep of one provider's stuck receipts did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequeueReport {
    /// Receipts re-enqueued and marked `queued`.
    pub requeued: u64,
    /// Events those receipts held.
    pub events: u64,
    /// Receipts that could not be re-enqueued this time (left for the next sweep).
    pub failed: u64,
}

/// Ingestion: receipts, the events queue, and reading a stored body again.
#[derive(Clone)]
pub struct Ingestion {
    receipts: Arc<dyn WebhookReceipts>,
    queue: Arc<dyn EventsQueue>,
    parser: Arc<dyn ReceiptEvents>,
    retention_secs: i64,
    replay_window_secs: i64,
}

impl std::fmt::Debug for Ingestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingestion")
            .field("retention_secs", &self.retention_secs)
            .field("replay_window_secs", &self.replay_window_secs)
            .finish_non_exhaustive()
    }
}

impl Ingestion {
    /// Wires ingestion; receipts expire after `retention_secs`, Mailgun tokens after
    /// `replay_window_secs`. `parser` reads a stored body into its events again (re-enqueue).
    pub fn new(
        receipts: Arc<dyn WebhookReceipts>,
        queue: Arc<dyn EventsQueue>,
        parser: Arc<dyn ReceiptEvents>,
        retention_secs: i64,
        replay_window_secs: i64,
    ) -> Self {
        Self {
            receipts,
            queue,
            parser,
            retention_secs,
            replay_window_secs,
        }
    }

    /// Persists a verified delivery and, when it carries events not yet queued, enqueues them.
    pub async fn accept(
        &self,
        delivery: &Delivery<'_>,
        clock: &dyn Clock,
    ) -> Result<Accepted, IngestError> {
        let now = clock.now();
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let key = receipt_key(delivery.provider, delivery.dedupe_key);
        let (status, events, error) = match (delivery.kind, delivery.events) {
            (DeliveryKind::Events, Ok(events)) if !events.is_empty() => {
                (ReceiptStatus::Received, events, None)
            }
            (DeliveryKind::Events, Err(e)) => (ReceiptStatus::Failed, &[][..], Some(e)),
            // An empty batch, or an SNS handshake the webhook handled itself.
            _ => (ReceiptStatus::Processed, &[][..], None),
        };
        let receipt = NewReceipt {
            provider: delivery.provider,
            dedupe_key: delivery.dedupe_key,
            kind: delivery.kind,
            status,
            body: delivery.body,
            content_type: delivery.content_type,
            verification: delivery.verification,
            event_count: delivery.events.map_or(0, <[String]>::len),
            error,
            received_at_ms: now_ms,
            lease_until_ms: now_ms + ENQUEUE_LEASE_MS,
            expires_at: now.unix_timestamp() + self.retention_secs,
            replay_guard: delivery.replay_token.map(|token| ReplayGuard {
                token,
                expires_at: now.unix_timestamp() + self.replay_window_secs,
            }),
        };
        let recorded = self.receipts.record(&receipt).await.map_err(|e| match e {
            RecordError::Replayed => IngestError::Replayed,
            RecordError::Unavailable(e) => IngestError::Store(e),
        })?;
        match recorded {
            Recorded::New if status == ReceiptStatus::Received => {
                self.enqueue_and_mark(delivery.provider, &key, now_ms, events, clock)
                    .await
            }
            Recorded::New => Ok(Accepted::Recorded {
                receipt: key,
                status,
            }),
            Recorded::Duplicate(existing) => {
                let stuck = existing.status.needs_enqueue() && status == ReceiptStatus::Received;
                if stuck
                    && self
                        .receipts
                        .claim(&key, now_ms, now_ms + ENQUEUE_LEASE_MS)
                        .await?
                {
                    return self
                        .enqueue_and_mark(delivery.provider, &key, now_ms, events, clock)
                        .await;
                }
                Ok(Accepted::Duplicate {
                    receipt: key,
                    status: existing.status,
                    in_flight: existing.status.needs_enqueue(),
                })
            }
        }
    }

    async fn enqueue_and_mark(
        &self,
        provider: ProviderId,
        key: &str,
        received_at_ms: i64,
        events: &[String],
        clock: &dyn Clock,
    ) -> Result<Accepted, IngestError> {
        let messages = queue_messages(provider, key, received_at_ms, events);
        let enqueued = self
            .queue
            .enqueue(&messages)
            .await
            .map_err(|error| IngestError::Queue {
                receipt: key.to_owned(),
                error,
            })?;
        let done_ms = (clock.now().unix_timestamp_nanos() / 1_000_000) as i64;
        // The events are on the queue; if this write fails the receipt stays `received` and
        // the sweeper enqueues it again later, which the processor's per-event dedupe absorbs.
        self.receipts.mark_queued(key, done_ms).await?;
        Ok(Accepted::Queued {
            receipt: key.to_owned(),
            events: enqueued.messages,
            calls: enqueued.calls,
        })
    }

    /// Re-enqueues `provider`'s receipts left `received` for longer than `older_than_secs`
    /// (at most `limit` per call), each exactly once: a receipt is claimed with a conditional
    /// write before it is enqueued, and marked `queued` after.
    pub async fn requeue_stale(
        &self,
        provider: ProviderId,
        older_than_secs: i64,
        limit: i32,
        clock: &dyn Clock,
    ) -> Result<RequeueReport, StoreError> {
        let now_ms = (clock.now().unix_timestamp_nanos() / 1_000_000) as i64;
        let keys = self
            .receipts
            .stale(provider, now_ms - older_than_secs * 1000, limit)
            .await?;
        let mut report = RequeueReport::default();
        for key in keys {
            if !self
                .receipts
                .claim(&key, now_ms, now_ms + ENQUEUE_LEASE_MS)
                .await?
            {
                continue;
            }
            let Some(stored) = self.receipts.load(&key).await? else {
                continue;
            };
            let events = match self.parser.events_of(
                stored.provider,
                &stored.body,
                stored.content_type.as_deref(),
            ) {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!(receipt = %key, error = %e, "a stored receipt no longer parses; left for an operator");
                    report.failed += 1;
                    continue;
                }
            };
            match self
                .enqueue_and_mark(provider, &key, stored.received_at_ms, &events, clock)
                .await
            {
                Ok(_) => {
                    report.requeued += 1;
                    report.events += events.len() as u64;
                }
                Err(e) => {
                    tracing::warn!(receipt = %key, error = %e, "re-enqueue failed; the next sweep retries");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }
}
