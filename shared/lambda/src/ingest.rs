//! Webhook ingestion after verification: persist the receipt, enqueue its events, mark it
//! queued — and the sweeper's re-enqueue of receipts left `received`.
//!
//! The order is the guarantee: a receipt is durable before anything is enqueued and before the
//! provider hears 2xx; an enqueue failure leaves it `received` (the provider gets 5xx and
//! retries, and the sweeper re-enqueues it); once `queued`, nothing enqueues it again.

use mailgate_aws::events_queue::MAX_MESSAGE_BYTES;
use mailgate_aws::{
    DynamoDbWebhookReceipts, EnqueueError, NewReceipt, RecordError, Recorded, ReplayGuard,
    SqsEventQueue, StoreError, receipt_key,
};
use mailgate_core::{Clock, DeliveryKind, ProviderId, ReceiptStatus};
use mailgate_providers::webhook::{Intake, events_of};
use serde::Deserialize;

/// How long a request holds the right to enqueue a receipt: twice the function timeout, so a
/// request that is still running is never overtaken by the sweeper or a duplicate.
pub const ENQUEUE_LEASE_MS: i64 = 60_000;

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

/// What happened to a verified delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// New (or an earlier copy was stuck): its events are on the queue now.
    Queued {
        /// The receipt key.
        receipt: String,
        /// Events enqueued.
        events: usize,
        /// SQS calls made.
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
    /// The receipt could not be written: nothing was accepted.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The receipt is stored but its events are not all on the queue; it stays `received`.
    #[error("receipt {receipt} stored but not enqueued: {error}")]
    Queue {
        /// The receipt key.
        receipt: String,
        /// The SQS failure.
        error: EnqueueError,
    },
}

/// A verified delivery and the request facts the receipt keeps.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    /// Whose webhook it is.
    pub provider: ProviderId,
    /// What verification produced.
    pub intake: &'a Intake,
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

/// Ingestion: receipts on DynamoDB, events on SQS.
#[derive(Debug, Clone)]
pub struct Ingestion {
    receipts: DynamoDbWebhookReceipts,
    queue: SqsEventQueue,
    retention_secs: i64,
    replay_window_secs: i64,
}

impl Ingestion {
    /// Wires ingestion; receipts expire after `retention_secs`, Mailgun tokens after
    /// `replay_window_secs`.
    pub fn new(
        receipts: DynamoDbWebhookReceipts,
        queue: SqsEventQueue,
        retention_secs: i64,
        replay_window_secs: i64,
    ) -> Self {
        Self {
            receipts,
            queue,
            retention_secs,
            replay_window_secs,
        }
    }

    /// Ingestion on the receipts and dedupe tables and the events queue named in `names`.
    pub fn on(
        clients: &mailgate_aws::AwsClients,
        names: &mailgate_aws::ResourceNames,
        retention_secs: i64,
        replay_window_secs: i64,
    ) -> Self {
        use mailgate_aws::{Queue, Table};
        let receipts = DynamoDbWebhookReceipts::new(
            clients.dynamodb.clone(),
            names.table(Table::Receipts).to_owned(),
            names.table(Table::Dedupe).to_owned(),
        );
        let queue = SqsEventQueue::new(
            clients.sqs.clone(),
            names.queue_url(Queue::Events).to_owned(),
        );
        Self::new(receipts, queue, retention_secs, replay_window_secs)
    }

    /// Persists a verified delivery and, when it carries events not yet queued, enqueues them.
    pub async fn accept(
        &self,
        delivery: &Delivery<'_>,
        clock: &dyn Clock,
    ) -> Result<Accepted, IngestError> {
        let now = clock.now();
        let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as i64;
        let intake = delivery.intake;
        let key = receipt_key(delivery.provider, &intake.payload.dedupe_key);
        let (status, events, error) = match (intake.kind, &intake.payload.events) {
            (DeliveryKind::Events, Ok(events)) if !events.is_empty() => {
                (ReceiptStatus::Received, events.as_slice(), None)
            }
            (DeliveryKind::Events, Err(e)) => (ReceiptStatus::Failed, &[][..], Some(e.0.as_str())),
            // An empty batch, or an SNS handshake the webhook handled itself.
            _ => (ReceiptStatus::Processed, &[][..], None),
        };
        let receipt = NewReceipt {
            provider: delivery.provider,
            dedupe_key: &intake.payload.dedupe_key,
            kind: intake.kind,
            status,
            body: delivery.body,
            content_type: delivery.content_type,
            verification: intake.verification,
            event_count: intake.payload.events.as_ref().map_or(0, Vec::len),
            error,
            received_at_ms: now_ms,
            lease_until_ms: now_ms + ENQUEUE_LEASE_MS,
            expires_at: now.unix_timestamp() + self.retention_secs,
            replay_guard: intake.replay_token.as_deref().map(|token| ReplayGuard {
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
        let stats = self
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
            events: stats.messages,
            calls: stats.calls,
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
            let events = match events_of(
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
}
