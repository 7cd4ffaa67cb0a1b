//! `SqsEventQueue`: puts messages on the events queue in as few calls as SQS allows, through the
//! one batch sender ([`crate::sqs_batch`]): up to ten entries per `SendMessageBatch`, within its
//! per-message and per-call size limits, with a few calls in flight at once, so a 1,000-event
//! batch is enqueued in about a hundred calls.

use aws_sdk_sqs::Client;
use mailgate_core::StoreError;
use mailgate_core::ports::DelayedEvent;
use mailgate_core::queue::delay_seconds;

use crate::sqs_batch::{BatchEntry, TooLarge, send_batches};
pub use crate::sqs_batch::{MAX_BATCH_ENTRIES, MAX_MESSAGE_BYTES, plan_batches};

/// Why messages were not all enqueued. Some may have been: callers must treat the whole set as
/// not enqueued and may send it again (consumers dedupe).
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnqueueError {
    /// A message is larger than SQS accepts; callers send a pointer instead. Nothing was sent.
    #[error("message {index} is {bytes} bytes, over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge {
        /// Its position in the input.
        index: usize,
        /// Its size.
        bytes: usize,
    },
    /// A call failed, or entries were refused.
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

impl From<TooLarge> for EnqueueError {
    fn from(e: TooLarge) -> Self {
        EnqueueError::TooLarge {
            index: e.index,
            bytes: e.bytes,
        }
    }
}

/// How the messages went out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnqueueStats {
    /// Messages enqueued.
    pub messages: usize,
    /// `SendMessageBatch` calls made (retries of refused entries included).
    pub calls: usize,
}

/// A queue of messages on SQS.
#[derive(Debug, Clone)]
pub struct SqsEventQueue {
    client: Client,
    queue_url: String,
}

impl SqsEventQueue {
    /// The queue at `queue_url`.
    pub fn new(client: Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }

    /// Enqueues every message or reports that it could not. Entries SQS refuses for a
    /// transient reason are sent again a few times before giving up.
    pub async fn enqueue(&self, messages: &[String]) -> Result<EnqueueStats, EnqueueError> {
        let entries: Vec<BatchEntry> = messages.iter().map(BatchEntry::new).collect();
        self.send(entries).await
    }

    /// [`enqueue`](Self::enqueue) with a delay per message (SQS `DelaySeconds`, whole seconds
    /// rounded up, at most 15 minutes): the event simulator's events.
    pub async fn enqueue_delayed(
        &self,
        events: &[DelayedEvent],
    ) -> Result<EnqueueStats, EnqueueError> {
        let entries: Vec<BatchEntry> = events
            .iter()
            .map(|e| BatchEntry::new(e.body.as_str()).delayed(delay_seconds(e.delay)))
            .collect();
        self.send(entries).await
    }

    async fn send(&self, entries: Vec<BatchEntry>) -> Result<EnqueueStats, EnqueueError> {
        let sent = send_batches(&self.client, &self.queue_url, &entries).await?;
        let calls = sent.all_sent(entries.len())?;
        Ok(EnqueueStats {
            messages: entries.len(),
            calls,
        })
    }
}
