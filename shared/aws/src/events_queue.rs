//! `SqsEventQueue`: puts messages on an SQS queue in as few calls as SQS allows — up to ten
//! entries per `SendMessageBatch`, within its per-message and per-call size limits — with a few
//! calls in flight at once, so a 1,000-event batch is enqueued in about a hundred calls.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::{StreamExt, TryStreamExt, stream};

/// The largest message body, and the largest sum of bodies in one batch call (SQS's classic
/// 256 KiB limit, which every region and the local emulator accept).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Entries per `SendMessageBatch` call.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Batch calls in flight at once.
const CONCURRENT_CALLS: usize = 8;

/// Why messages were not all enqueued. Some may have been: callers must treat the whole set as
/// not enqueued and may send it again (consumers dedupe).
#[derive(Debug, Clone, thiserror::Error)]
pub enum EnqueueError {
    /// A message is larger than SQS accepts; callers send a pointer instead.
    #[error("message {index} is {bytes} bytes, over the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge {
        /// Its position in the input.
        index: usize,
        /// Its size.
        bytes: usize,
    },
    /// A call failed, or entries were refused.
    #[error("SQS {operation} failed: {detail}")]
    Unavailable {
        /// The API operation.
        operation: &'static str,
        /// What went wrong.
        detail: String,
    },
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

/// Groups messages into batch calls: at most ten entries and `MAX_MESSAGE_BYTES` per call, in
/// order. Fails on a single message over the limit.
pub fn plan_batches(messages: &[String]) -> Result<Vec<Vec<usize>>, EnqueueError> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for (index, m) in messages.iter().enumerate() {
        if m.len() > MAX_MESSAGE_BYTES {
            return Err(EnqueueError::TooLarge {
                index,
                bytes: m.len(),
            });
        }
        if current.len() == MAX_BATCH_ENTRIES || bytes + m.len() > MAX_MESSAGE_BYTES {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(index);
        bytes += m.len();
    }
    if !current.is_empty() {
        batches.push(current);
    }
    Ok(batches)
}

impl SqsEventQueue {
    /// The queue at `queue_url`.
    pub fn new(client: Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }

    /// Enqueues every message or reports that it could not. Entries SQS refuses for a
    /// transient reason are sent once more before giving up.
    pub async fn enqueue(&self, messages: &[String]) -> Result<EnqueueStats, EnqueueError> {
        let batches = plan_batches(messages)?;
        let calls: Vec<usize> = stream::iter(batches)
            .map(|batch| self.send_batch(messages, batch))
            .buffer_unordered(CONCURRENT_CALLS)
            .try_collect()
            .await?;
        Ok(EnqueueStats {
            messages: messages.len(),
            calls: calls.into_iter().sum(),
        })
    }

    async fn send_batch(
        &self,
        messages: &[String],
        batch: Vec<usize>,
    ) -> Result<usize, EnqueueError> {
        let mut pending = batch;
        let mut calls = 0;
        for _ in 0..2 {
            let entries = pending
                .iter()
                .map(|&i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&messages[i])
                        .build()
                        .map_err(|e| EnqueueError::Unavailable {
                            operation: "SendMessageBatch",
                            detail: e.to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            calls += 1;
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| EnqueueError::Unavailable {
                    operation: "SendMessageBatch",
                    detail: DisplayErrorContext(e).to_string(),
                })?;
            let failed = out.failed();
            if failed.is_empty() {
                return Ok(calls);
            }
            if let Some(f) = failed.iter().find(|f| f.sender_fault()) {
                return Err(EnqueueError::Unavailable {
                    operation: "SendMessageBatch",
                    detail: format!("entry refused: {} {}", f.code(), f.message().unwrap_or("")),
                });
            }
            pending = failed.iter().filter_map(|f| f.id().parse().ok()).collect();
        }
        Err(EnqueueError::Unavailable {
            operation: "SendMessageBatch",
            detail: format!("{} entries still refused after a retry", pending.len()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(n: usize) -> String {
        "x".repeat(n)
    }

    #[test]
    fn batches_hold_ten_entries_and_stay_under_the_size_limit() {
        let small: Vec<String> = (0..1000).map(|_| sized(300)).collect();
        let plan = plan_batches(&small).unwrap();
        assert_eq!(plan.len(), 100);
        assert!(plan.iter().all(|b| b.len() == 10));

        let big: Vec<String> = (0..5).map(|_| sized(100 * 1024)).collect();
        let plan = plan_batches(&big).unwrap();
        assert_eq!(plan, vec![vec![0, 1], vec![2, 3], vec![4]]);

        let edge = vec![sized(MAX_MESSAGE_BYTES), sized(1)];
        assert_eq!(plan_batches(&edge).unwrap(), vec![vec![0], vec![1]]);
        assert!(plan_batches(&[]).unwrap().is_empty());
    }

    #[test]
    fn a_message_over_the_limit_is_refused_by_position() {
        let msgs = vec![sized(10), sized(MAX_MESSAGE_BYTES + 1)];
        assert!(matches!(
            plan_batches(&msgs),
            Err(EnqueueError::TooLarge { index: 1, .. })
        ));
    }
}
