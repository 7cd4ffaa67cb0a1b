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
    /// Receipts that could not be re-enqueued this time (retried after a backoff).
    pub failed: u64,
    /// Receipts given up on: unreadable, or failing [`Ingestion::max_attempts`] times; marked
    /// `failed` with the reason, out of the sweeper's way (counted and alarmed).
    pub gave_up: u64,
}

/// How many attempts to enqueue a receipt (the first and the sweeper's) before it is marked
/// `failed` (`RECEIPT_MAX_ATTEMPTS`).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// How many stuck receipts a sweep looks at per provider to find the ones to re-enqueue: those
/// waiting out a backoff are passed over, so newer receipts behind them are never starved.
pub const STALE_SCAN: i32 = 1000;

/// The backoff after a failed re-enqueue: the enqueue lease doubled per attempt, at most an
/// hour.
pub fn requeue_backoff_ms(attempts: u32) -> i64 {
    (ENQUEUE_LEASE_MS << attempts.min(6)).min(3_600_000)
}

/// Ingestion: receipts, the events queue, and reading a stored body again.
#[derive(Clone)]
pub struct Ingestion {
    receipts: Arc<dyn WebhookReceipts>,
    queue: Arc<dyn EventsQueue>,
    parser: Arc<dyn ReceiptEvents>,
    retention_secs: i64,
    replay_window_secs: i64,
    max_attempts: u32,
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
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// The same ingestion giving a receipt up after `attempts` failed enqueues (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// How many enqueue attempts a receipt gets before it is marked `failed`.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
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
        // More keys than it will take: receipts waiting out a backoff refuse the claim and are
        // passed over, so a head of failing receipts never hides the newer ones behind it.
        let keys = self
            .receipts
            .stale(
                provider,
                now_ms - older_than_secs * 1000,
                STALE_SCAN.max(limit),
            )
            .await?;
        let mut report = RequeueReport::default();
        let mut taken = 0i32;
        for key in keys {
            if taken >= limit {
                break;
            }
            if !self
                .receipts
                .claim(&key, now_ms, now_ms + ENQUEUE_LEASE_MS)
                .await?
            {
                continue;
            }
            taken += 1;
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
                    // It was verified, so it is kept; no retry can make it readable.
                    tracing::error!(receipt = %key, error = %e, "a stored receipt no longer parses; marked failed");
                    let reason = format!("the stored body no longer parses: {e}");
                    if self.receipts.mark_failed(&key, now_ms, &reason).await? {
                        report.gave_up += 1;
                    }
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
                Err(e) if stored.attempts >= self.max_attempts => {
                    tracing::error!(receipt = %key, attempts = stored.attempts, error = %e, "gave up re-enqueueing a receipt; marked failed");
                    let reason = format!(
                        "not enqueued after {} attempts; last error: {e}",
                        stored.attempts
                    );
                    if self.receipts.mark_failed(&key, now_ms, &reason).await? {
                        report.gave_up += 1;
                    }
                }
                Err(e) => {
                    let retry_at = now_ms + requeue_backoff_ms(stored.attempts);
                    tracing::warn!(receipt = %key, attempts = stored.attempts, error = %e, "re-enqueue failed; retried after a backoff");
                    self.receipts.retry_later(&key, retry_at).await?;
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use mailgate_core::{FixedClock, QueuedEvent, StoreErrorKind};

    use super::*;
    use crate::testing::{JsonArrayEvents, MemoryEventsQueue, MemoryReceipt, MemoryReceipts};

    const T0: i64 = 1_750_000_000;

    struct Harness {
        ingestion: Ingestion,
        receipts: Arc<MemoryReceipts>,
        queue: Arc<MemoryEventsQueue>,
        clock: FixedClock,
    }

    fn harness() -> Harness {
        let receipts = Arc::new(MemoryReceipts::default());
        let queue = Arc::new(MemoryEventsQueue::default());
        Harness {
            ingestion: Ingestion::new(
                receipts.clone(),
                queue.clone(),
                Arc::new(JsonArrayEvents),
                86_400,
                660,
            ),
            receipts,
            queue,
            clock: FixedClock::at_unix(T0),
        }
    }

    fn events(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!(r#"{{"sg_event_id":"e{i}"}}"#))
            .collect()
    }

    fn body(events: &[String]) -> Vec<u8> {
        format!("[{}]", events.join(",")).into_bytes()
    }

    fn delivery<'a>(key: &'a str, events: &'a [String], body: &'a [u8]) -> Delivery<'a> {
        Delivery {
            provider: ProviderId::Sendgrid,
            dedupe_key: key,
            kind: DeliveryKind::Events,
            events: Ok(events),
            verification: "ecdsa-p256",
            replay_token: None,
            body,
            content_type: Some("application/json"),
        }
    }

    fn secs(n: i64) -> time::Duration {
        time::Duration::seconds(n)
    }

    #[tokio::test]
    async fn a_new_delivery_is_recorded_then_enqueued_then_marked_queued() {
        let h = harness();
        let evs = events(12);
        let b = body(&evs);
        let accepted = h
            .ingestion
            .accept(&delivery("k1", &evs, &b), &h.clock)
            .await
            .unwrap();
        assert_eq!(
            accepted,
            Accepted::Queued {
                receipt: "sendgrid#k1".into(),
                events: 12,
                calls: 2
            }
        );
        let receipt = h.receipts.receipt("sendgrid#k1").unwrap();
        assert_eq!(receipt.status, ReceiptStatus::Queued);
        assert_eq!(receipt.event_count, 12);
        assert_eq!(receipt.body, b);
        assert_eq!(receipt.lease_until_ms, None);
        let messages = h.queue.messages();
        assert_eq!(messages.len(), 12);
        let third: QueuedEvent = serde_json::from_str(&messages[2]).unwrap();
        assert_eq!(
            (third.receipt.as_str(), third.index, third.count),
            ("sendgrid#k1", 2, 12)
        );
        assert_eq!(third.received_at, T0 * 1000);
        assert_eq!(third.event.unwrap().get(), evs[2]);
    }

    #[tokio::test]
    async fn a_duplicate_of_a_queued_delivery_enqueues_nothing() {
        let h = harness();
        let evs = events(2);
        let b = body(&evs);
        let d = delivery("k1", &evs, &b);
        h.ingestion.accept(&d, &h.clock).await.unwrap();
        let again = h.ingestion.accept(&d, &h.clock).await.unwrap();
        assert_eq!(
            again,
            Accepted::Duplicate {
                receipt: "sendgrid#k1".into(),
                status: ReceiptStatus::Queued,
                in_flight: false
            }
        );
        assert_eq!(h.queue.messages().len(), 2);
    }

    #[tokio::test]
    async fn a_stuck_duplicate_is_enqueued_again_once_its_lease_has_lapsed() {
        let h = harness();
        let evs = events(3);
        let b = body(&evs);
        let d = delivery("k1", &evs, &b);
        h.queue
            .faults
            .fail_next("enqueue", StoreErrorKind::Transient);
        let err = h.ingestion.accept(&d, &h.clock).await.unwrap_err();
        assert!(matches!(err, IngestError::Queue { ref receipt, .. } if receipt == "sendgrid#k1"));
        assert_eq!(
            h.receipts.receipt("sendgrid#k1").unwrap().status,
            ReceiptStatus::Received
        );

        // Within the first request's lease: another request is (as far as anyone knows) busy.
        h.clock.advance(secs(10));
        let busy = h.ingestion.accept(&d, &h.clock).await.unwrap();
        assert_eq!(
            busy,
            Accepted::Duplicate {
                receipt: "sendgrid#k1".into(),
                status: ReceiptStatus::Received,
                in_flight: true
            }
        );
        assert!(h.queue.messages().is_empty());

        // Past the lease: this redelivery takes it over and enqueues.
        h.clock.advance(secs(ENQUEUE_LEASE_MS / 1000));
        let taken = h.ingestion.accept(&d, &h.clock).await.unwrap();
        assert!(matches!(taken, Accepted::Queued { events: 3, .. }));
        assert_eq!(h.queue.messages().len(), 3);
        let first: QueuedEvent = serde_json::from_str(&h.queue.messages()[0]).unwrap();
        assert_eq!(
            first.received_at,
            (T0 + 10 + ENQUEUE_LEASE_MS / 1000) * 1000,
            "the envelope carries the time of the request that enqueued it"
        );
        assert_eq!(
            h.receipts.receipt("sendgrid#k1").unwrap().status,
            ReceiptStatus::Queued
        );
    }

    #[tokio::test]
    async fn an_unreadable_body_is_kept_as_failed_and_an_empty_one_as_processed() {
        let h = harness();
        let b = b"not json".to_vec();
        let mut d = delivery("bad", &[], &b);
        d.events = Err("expected an array");
        let accepted = h.ingestion.accept(&d, &h.clock).await.unwrap();
        assert_eq!(
            accepted,
            Accepted::Recorded {
                receipt: "sendgrid#bad".into(),
                status: ReceiptStatus::Failed
            }
        );
        let stored = h.receipts.receipt("sendgrid#bad").unwrap();
        assert_eq!(stored.error.as_deref(), Some("expected an array"));
        assert_eq!((stored.event_count, stored.lease_until_ms), (0, None));

        let empty = body(&[]);
        let accepted = h
            .ingestion
            .accept(&delivery("empty", &[], &empty), &h.clock)
            .await
            .unwrap();
        assert_eq!(
            accepted,
            Accepted::Recorded {
                receipt: "sendgrid#empty".into(),
                status: ReceiptStatus::Processed
            }
        );

        let evs = events(1);
        let mut handshake = delivery("sns", &evs, &empty);
        handshake.kind = DeliveryKind::SubscriptionConfirmation;
        let accepted = h.ingestion.accept(&handshake, &h.clock).await.unwrap();
        assert!(matches!(
            accepted,
            Accepted::Recorded {
                status: ReceiptStatus::Processed,
                ..
            }
        ));
        assert!(h.queue.messages().is_empty());

        // A redelivery of the failed one is a duplicate, not in flight, never enqueued.
        let again = h.ingestion.accept(&d, &h.clock).await.unwrap();
        assert_eq!(
            again,
            Accepted::Duplicate {
                receipt: "sendgrid#bad".into(),
                status: ReceiptStatus::Failed,
                in_flight: false
            }
        );
        assert!(h.queue.messages().is_empty());
    }

    #[tokio::test]
    async fn a_mailgun_token_reused_for_other_content_is_a_replay() {
        let h = harness();
        let evs = events(1);
        let b = body(&evs);
        let mut first = delivery("a", &evs, &b);
        first.provider = ProviderId::Mailgun;
        first.replay_token = Some("tok");
        h.ingestion.accept(&first, &h.clock).await.unwrap();

        // The same delivery again is a plain duplicate.
        let again = h.ingestion.accept(&first, &h.clock).await.unwrap();
        assert!(matches!(again, Accepted::Duplicate { .. }));

        let mut forged = first;
        forged.dedupe_key = "b";
        let err = h.ingestion.accept(&forged, &h.clock).await.unwrap_err();
        assert!(matches!(err, IngestError::Replayed));
        assert!(h.receipts.receipt("mailgun#b").is_none(), "nothing written");
        assert_eq!(h.queue.messages().len(), 1);
    }

    #[tokio::test]
    async fn a_receipt_that_cannot_be_written_accepts_nothing() {
        let h = harness();
        let evs = events(2);
        let b = body(&evs);
        h.receipts
            .faults
            .fail_next("record", StoreErrorKind::Throttled);
        let err = h
            .ingestion
            .accept(&delivery("k1", &evs, &b), &h.clock)
            .await
            .unwrap_err();
        assert!(matches!(err, IngestError::Store(ref e) if e.kind() == StoreErrorKind::Throttled));
        assert!(h.receipts.receipt("sendgrid#k1").is_none());
        assert!(h.queue.messages().is_empty());
    }

    #[tokio::test]
    async fn a_queue_failing_partway_leaves_the_receipt_received_for_the_sweeper() {
        let h = harness();
        let evs = events(25);
        let b = body(&evs);
        h.queue.fail_next_after(10);
        let err = h
            .ingestion
            .accept(&delivery("k1", &evs, &b), &h.clock)
            .await
            .unwrap_err();
        let IngestError::Queue { receipt, error } = err else {
            panic!("expected a queue failure, got {err:?}");
        };
        assert_eq!(receipt, "sendgrid#k1");
        assert!(error.is_retryable());
        assert_eq!(h.queue.messages().len(), 10);
        let stored = h.receipts.receipt("sendgrid#k1").unwrap();
        assert_eq!(stored.status, ReceiptStatus::Received);

        // The sweeper, once the receipt is old enough and its lease lapsed, enqueues it whole.
        h.clock.advance(secs(301));
        let report = h
            .ingestion
            .requeue_stale(ProviderId::Sendgrid, 300, 100, &h.clock)
            .await
            .unwrap();
        assert_eq!(
            report,
            RequeueReport {
                requeued: 1,
                events: 25,
                failed: 0,
                gave_up: 0,
            }
        );
        assert_eq!(h.queue.messages().len(), 35);
        assert_eq!(
            h.receipts.receipt("sendgrid#k1").unwrap().status,
            ReceiptStatus::Queued
        );
    }

    #[tokio::test]
    async fn events_on_the_queue_but_not_marked_stay_received_and_the_error_says_so() {
        let h = harness();
        let evs = events(2);
        let b = body(&evs);
        h.receipts
            .faults
            .fail_next("mark_queued", StoreErrorKind::Transient);
        let err = h
            .ingestion
            .accept(&delivery("k1", &evs, &b), &h.clock)
            .await
            .unwrap_err();
        assert!(matches!(err, IngestError::Store(_)));
        assert_eq!(h.queue.messages().len(), 2);
        assert_eq!(
            h.receipts.receipt("sendgrid#k1").unwrap().status,
            ReceiptStatus::Received
        );
    }

    fn stuck(h: &Harness, key: &str, body: &[u8], received_at_s: i64) {
        h.receipts.put(
            key,
            MemoryReceipt {
                provider: ProviderId::Sendgrid,
                status: ReceiptStatus::Received,
                body: body.to_vec(),
                content_type: None,
                event_count: 0,
                error: None,
                received_at_ms: received_at_s * 1000,
                lease_until_ms: Some(received_at_s * 1000 + ENQUEUE_LEASE_MS),
                queued_at_ms: None,
                attempts: 1,
            },
        );
    }

    #[tokio::test]
    async fn requeue_takes_only_old_received_receipts_of_the_provider_with_a_lapsed_lease() {
        let h = harness();
        let evs = events(2);
        let b = body(&evs);
        stuck(&h, "sendgrid#old", &b, T0 - 600);
        stuck(&h, "sendgrid#young", &b, T0 - 60);
        let mut leased = b.clone();
        leased.push(b' ');
        stuck(&h, "sendgrid#leased", &leased, T0 - 900);
        // A live lease taken by a request still running.
        assert!(
            h.receipts
                .claim("sendgrid#leased", T0 * 1000, T0 * 1000 + 30_000)
                .await
                .unwrap()
        );
        let report = h
            .ingestion
            .requeue_stale(ProviderId::Sendgrid, 300, 100, &h.clock)
            .await
            .unwrap();
        assert_eq!(
            report,
            RequeueReport {
                requeued: 1,
                events: 2,
                failed: 0,
                gave_up: 0,
            }
        );
        let first: QueuedEvent = serde_json::from_str(&h.queue.messages()[0]).unwrap();
        assert_eq!(first.receipt, "sendgrid#old");
        assert_eq!(
            first.received_at,
            (T0 - 600) * 1000,
            "the receipt's own time"
        );
        assert_eq!(
            h.receipts.receipt("sendgrid#young").unwrap().status,
            ReceiptStatus::Received
        );
        assert_eq!(
            h.receipts.receipt("sendgrid#leased").unwrap().status,
            ReceiptStatus::Received
        );
        let other = h
            .ingestion
            .requeue_stale(ProviderId::Postmark, 300, 100, &h.clock)
            .await
            .unwrap();
        assert_eq!(other, RequeueReport::default());
    }

    #[tokio::test]
    async fn requeue_counts_unparseable_and_unenqueueable_receipts_as_failed_and_goes_on() {
        let h = harness();
        let evs = events(1);
        let b = body(&evs);
        stuck(&h, "sendgrid#a-garbled", b"garbled", T0 - 900);
        stuck(&h, "sendgrid#b-queue-down", &b, T0 - 800);
        stuck(&h, "sendgrid#c-fine", &b, T0 - 700);
        h.queue
            .faults
            .fail_next("enqueue", StoreErrorKind::Throttled);
        let report = h
            .ingestion
            .requeue_stale(ProviderId::Sendgrid, 300, 100, &h.clock)
            .await
            .unwrap();
        assert_eq!(
            report,
            RequeueReport {
                requeued: 1,
                events: 1,
                failed: 1,
                gave_up: 1,
            }
        );
        // The unreadable one is given up at once, with the reason; the one the queue refused
        // waits out a backoff.
        for (key, status) in [
            ("sendgrid#a-garbled", ReceiptStatus::Failed),
            ("sendgrid#b-queue-down", ReceiptStatus::Received),
            ("sendgrid#c-fine", ReceiptStatus::Queued),
        ] {
            assert_eq!(h.receipts.receipt(key).unwrap().status, status, "{key}");
        }
        assert!(
            h.receipts
                .receipt("sendgrid#a-garbled")
                .unwrap()
                .error
                .unwrap()
                .contains("no longer parses")
        );
    }

    #[tokio::test]
    async fn a_receipt_failing_every_attempt_is_given_up_and_never_starves_newer_ones() {
        let h = harness();
        let evs = events(1);
        let b = body(&evs);
        // Many old receipts the queue refuses, then a newer one behind them.
        for i in 0..5 {
            stuck(&h, &format!("sendgrid#a-poison-{i}"), &b, T0 - 900 + i);
        }
        stuck(&h, "sendgrid#z-newer", &b, T0 - 400);
        *h.queue.refuse_containing.lock().unwrap() = Some("a-poison".to_owned());
        let mut clock = FixedClock::at_unix(T0);
        let mut newer_queued_at = None;
        // A sweep a minute, for two hours.
        for tick in 0..120 {
            h.ingestion
                .requeue_stale(ProviderId::Sendgrid, 300, 3, &clock)
                .await
                .unwrap();
            if newer_queued_at.is_none()
                && h.receipts.receipt("sendgrid#z-newer").unwrap().status == ReceiptStatus::Queued
            {
                newer_queued_at = Some(tick);
            }
            clock = FixedClock::at_unix(T0 + 60 * (tick + 1));
        }
        // Three per tick are taken; the poisoned ones wait out a backoff after each failure,
        // so the newer receipt is reached on the next tick, not after the poison is given up.
        assert_eq!(newer_queued_at, Some(1));
        for i in 0..5 {
            let r = h
                .receipts
                .receipt(&format!("sendgrid#a-poison-{i}"))
                .unwrap();
            assert_eq!(r.status, ReceiptStatus::Failed, "poison {i}");
            assert!(r.error.unwrap().contains("attempts"));
        }
    }

    #[tokio::test]
    async fn requeue_stops_with_the_error_when_the_receipts_store_fails() {
        for operation in ["stale", "claim", "load"] {
            let h = harness();
            let evs = events(1);
            stuck(&h, "sendgrid#k", &body(&evs), T0 - 900);
            h.receipts
                .faults
                .fail_next(operation, StoreErrorKind::Transient);
            let err = h
                .ingestion
                .requeue_stale(ProviderId::Sendgrid, 300, 100, &h.clock)
                .await
                .unwrap_err();
            assert_eq!(err.operation(), operation);
            assert!(h.queue.messages().is_empty(), "{operation}");
            assert_eq!(
                h.receipts.receipt("sendgrid#k").unwrap().status,
                ReceiptStatus::Received,
                "{operation}"
            );
        }
    }
}
