//! Releasing held messages onto the send queue: scheduled messages whose `send_at` is at most
//! [`LOOKAHEAD`] away (SQS `DelaySeconds` covers the rest of the wait), and bulk messages held
//! by the pause switch once it is off.
//!
//! **Order: enqueue first, then mark released.** A message is put on the send queue
//! (`{"v":1,"message_id":…}`) and only then moved `scheduled`/`paused` → `queued` with the
//! conditional `mark_released`. A crash or failure between the two leaves the message held and
//! due, so the next tick enqueues it again: the worker sees one or two pointers and acts on the
//! message once, ignoring pointers to messages already past `queued`, and leaving a pointer to a
//! message it finds still `scheduled`/`paused` (not yet marked) on the queue to be retried.
//! The other order could lose a message: marked `queued` but never enqueued, and no index finds
//! it again. A message cancelled between the two steps fails the conditional mark, and the
//! worker ignores its pointer because it is `cancelled`.
//!
//! A scheduled bulk message due while the pause switch is on is not released but moved to the
//! `paused#bulk` queue (`mark_paused`), where it waits for the switch to turn off.

use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use mailgate_aws::send_queue::delay_seconds;
use mailgate_aws::{
    ControlsError, DynamoDbMessages, DynamoDbSendControls, MessageStoreError, SendQueueMessage,
};
use mailgate_core::{MessageCategory, MessageId, MessageRecord, ReleaseQueue, UnixMillis};

/// How far ahead scheduled messages are released: the longest SQS delay (15 minutes).
pub const LOOKAHEAD: Duration = Duration::from_secs(900);
/// Messages read from the release index per query.
pub const RELEASE_BATCH: i32 = 100;
/// Queries per job and tick at most, so one tick stays well inside the function's timeout.
pub const MAX_ROUNDS: usize = 10;
/// Entries per `SendMessageBatch` call (the API's limit).
const BATCH_ENTRIES: usize = 10;

/// Why a release job stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReleaseError {
    /// The messages table could not be read or written.
    #[error(transparent)]
    Messages(#[from] MessageStoreError),
    /// The pause switch could not be read.
    #[error(transparent)]
    Controls(#[from] ControlsError),
    /// The send queue refused a call or entries; those messages stay held for the next tick.
    #[error("SQS {operation} failed: {detail}")]
    SendQueue {
        /// The API operation.
        operation: &'static str,
        /// What went wrong.
        detail: String,
    },
}

/// What one release job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReleaseReport {
    /// Messages put on the send queue and marked `queued`.
    pub released: u64,
    /// Scheduled bulk messages moved to `paused` because the switch is on.
    pub paused: u64,
    /// Due messages that were no longer held (cancelled or released by another tick).
    pub skipped: u64,
    /// `SendMessageBatch` calls made.
    pub enqueue_calls: u64,
    /// Of the released messages, how many were enqueued with a delay.
    pub delayed: u64,
}

/// The `DelaySeconds` for a message to be sent at `send_at`, released at `now`: the whole
/// seconds until then, rounded up, 0 when due, at most 900.
pub fn delay_until(send_at: Option<UnixMillis>, now: UnixMillis) -> i32 {
    send_at.map_or(0, |at| delay_seconds(at.saturating_duration_since(now)))
}

/// The release jobs' adapters.
#[derive(Debug, Clone)]
pub struct Release {
    messages: DynamoDbMessages,
    controls: DynamoDbSendControls,
    sqs: aws_sdk_sqs::Client,
    send_queue_url: String,
}

impl Release {
    /// Releases from `messages` onto the queue at `send_queue_url`, reading the switch from
    /// `controls`.
    pub fn new(
        messages: DynamoDbMessages,
        controls: DynamoDbSendControls,
        sqs: aws_sdk_sqs::Client,
        send_queue_url: impl Into<String>,
    ) -> Self {
        Self {
            messages,
            controls,
            sqs,
            send_queue_url: send_queue_url.into(),
        }
    }

    /// Releases scheduled messages due by `now + LOOKAHEAD`, each with the delay left until its
    /// `send_at`; scheduled bulk messages meet the pause switch here.
    pub async fn release_scheduled(&self, now: UnixMillis) -> Result<ReleaseReport, ReleaseError> {
        let bulk_paused = self.controls.bulk_paused().await?;
        self.release(ReleaseQueue::Scheduled, now, bulk_paused)
            .await
    }

    /// Releases bulk messages held by the pause switch, when it is off (a paused message with a
    /// `send_at` still waits for it, like a scheduled one). Does nothing while it is on.
    pub async fn release_paused(&self, now: UnixMillis) -> Result<ReleaseReport, ReleaseError> {
        if self.controls.bulk_paused().await? {
            return Ok(ReleaseReport::default());
        }
        self.release(ReleaseQueue::PausedBulk, now, false).await
    }

    async fn release(
        &self,
        queue: ReleaseQueue,
        now: UnixMillis,
        bulk_paused: bool,
    ) -> Result<ReleaseReport, ReleaseError> {
        let mut report = ReleaseReport::default();
        let horizon = now.saturating_add(LOOKAHEAD);
        for _ in 0..MAX_ROUNDS {
            let before = report.released + report.paused;
            let due = self.messages.due(queue, horizon, RELEASE_BATCH).await?;
            let mut to_send: Vec<(MessageId, i32)> = Vec::new();
            for id in &due {
                // The index is eventually consistent and holds keys only: the record says
                // whether the message is still held, its category and its `send_at`.
                let Some(stored) = self.messages.get(id).await? else {
                    report.skipped += 1;
                    continue;
                };
                let record: &MessageRecord = &stored.record;
                if record.release_queue() != Some(queue) {
                    report.skipped += 1;
                } else if bulk_paused
                    && queue == ReleaseQueue::Scheduled
                    && record.category == MessageCategory::Bulk
                {
                    if self.messages.mark_paused(id, now).await? {
                        report.paused += 1;
                    } else {
                        report.skipped += 1;
                    }
                } else {
                    to_send.push((id.clone(), delay_until(record.send_at, now)));
                }
            }
            for batch in to_send.chunks(BATCH_ENTRIES) {
                self.enqueue(batch).await?;
                report.enqueue_calls += 1;
                for (id, delay) in batch {
                    if self.messages.mark_released(id, now).await? {
                        report.released += 1;
                        report.delayed += u64::from(*delay > 0);
                    } else {
                        // Cancelled (or released by a concurrent tick) after it was read: the
                        // worker ignores the pointer just enqueued.
                        report.skipped += 1;
                    }
                }
            }
            let moved = report.released + report.paused - before;
            if due.len() < usize::try_from(RELEASE_BATCH).unwrap_or(usize::MAX) || moved == 0 {
                break;
            }
        }
        Ok(report)
    }

    /// Puts up to ten pointers on the send queue in one call; fails unless every entry was
    /// accepted (then none is marked released, and a later tick sends them all again).
    async fn enqueue(&self, batch: &[(MessageId, i32)]) -> Result<(), ReleaseError> {
        let failed = |detail: String| ReleaseError::SendQueue {
            operation: "SendMessageBatch",
            detail,
        };
        let entries = batch
            .iter()
            .enumerate()
            .map(|(i, (id, delay))| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(SendQueueMessage::new(id.clone()).to_body())
                    .delay_seconds(*delay)
                    .build()
                    .map_err(|e| failed(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .sqs
            .send_message_batch()
            .queue_url(&self.send_queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| failed(DisplayErrorContext(e).to_string()))?;
        match out.failed().first() {
            None => Ok(()),
            Some(f) => Err(failed(format!(
                "{} of {} entries refused, e.g. {} {}",
                out.failed().len(),
                batch.len(),
                f.code(),
                f.message().unwrap_or("")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_cover_the_time_left_up_to_fifteen_minutes() {
        let now = UnixMillis(1_750_000_000_000);
        assert_eq!(delay_until(None, now), 0);
        assert_eq!(delay_until(Some(UnixMillis(now.as_i64() - 5_000)), now), 0);
        assert_eq!(
            delay_until(Some(now.saturating_add(Duration::from_secs(600))), now),
            600
        );
        assert_eq!(delay_until(Some(UnixMillis(now.as_i64() + 1_500)), now), 2);
        assert_eq!(
            delay_until(Some(now.saturating_add(Duration::from_secs(7_200))), now),
            900
        );
    }
}
