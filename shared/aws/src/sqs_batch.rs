//! The one SQS batch sender every queue adapter uses: bodies (each with an optional delay and
//! message attributes) packed into as few `SendMessageBatch` calls as SQS allows — at most ten
//! entries and [`MAX_MESSAGE_BYTES`] per call — with a few calls in flight at once. Entries SQS
//! refuses for a reason of its own (`SenderFault == false`) are sent again a few times with a
//! growing pause; what is still refused, and every entry of a call that failed, is reported per
//! entry so the caller decides (retry the set, keep a dead letter, fail the request).
//!
//! Every body goes out [`sqs_safe`]: characters SQS refuses (raw controls, U+FFFE, U+FFFF,
//! which a provider may echo in JSON) become their `\uXXXX` JSON escapes, sizes counted after.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use futures::{StreamExt, stream};
pub use mailgate_core::queue::MAX_MESSAGE_BYTES;
use mailgate_core::queue::sqs_safe;
use mailgate_core::{StoreError, StoreErrorKind};

/// Entries per `SendMessageBatch` call (the API's limit).
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Batch calls in flight at once.
const CONCURRENT_CALLS: usize = 8;
/// Calls per entry at most: the first and two retries of entries SQS refused on its side.
const ATTEMPTS: u32 = 3;
/// The pause before the first retry; doubled before each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The operation every failure names.
const OPERATION: &str = "SendMessageBatch";

/// One message to send.
#[derive(Debug, Clone, Default)]
pub struct BatchEntry {
    /// The body.
    pub body: String,
    /// Seconds the message stays invisible (0–900); the queue's default when `None`.
    pub delay_seconds: Option<i32>,
    /// Message attributes, sent as given.
    pub attributes: Option<HashMap<String, MessageAttributeValue>>,
}

impl BatchEntry {
    /// A message with `body`, no delay and no attributes.
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// The same message, invisible for `seconds`.
    pub fn delayed(mut self, seconds: i32) -> Self {
        self.delay_seconds = Some(seconds);
        self
    }

    /// The same message with `attributes`.
    pub fn with_attributes(
        mut self,
        attributes: Option<HashMap<String, MessageAttributeValue>>,
    ) -> Self {
        self.attributes = attributes;
        self
    }

    /// The bytes SQS counts against its size limit: the body, and each attribute's name, type
    /// and value.
    pub fn size(&self) -> usize {
        let attributes: usize = self
            .attributes
            .iter()
            .flatten()
            .map(|(name, value)| {
                name.len()
                    + value.data_type().len()
                    + value.string_value().map_or(0, str::len)
                    + value.binary_value().map_or(0, |b| b.as_ref().len())
            })
            .sum();
        self.body.len() + attributes
    }
}

/// An entry that is not on the queue.
#[derive(Debug, Clone)]
pub struct EntryFailure {
    /// Its position in the input.
    pub index: usize,
    /// Why: the refusal (kind `Other` when SQS blames the entry, `Transient` when it stayed
    /// refused on SQS's side after the retries) or the failed call's classified error.
    pub error: StoreError,
}

/// What sending did.
#[derive(Debug, Clone, Default)]
pub struct BatchSent {
    /// `SendMessageBatch` calls made (retries included).
    pub calls: usize,
    /// The entries not on the queue, by position.
    pub failed: Vec<EntryFailure>,
}

impl BatchSent {
    /// Ok with the calls made when every entry is on the queue; otherwise the first failure,
    /// saying how many of `total` entries are not on it.
    pub fn all_sent(self, total: usize) -> Result<usize, StoreError> {
        let Some(first) = self.failed.iter().min_by_key(|f| f.index) else {
            return Ok(self.calls);
        };
        Err(StoreError::new(
            first.error.kind(),
            OPERATION,
            format!(
                "{} of {total} entries not enqueued, e.g. entry {}: {}",
                self.failed.len(),
                first.index,
                first.error
            ),
        ))
    }
}

/// An entry larger than one message may be; nothing was sent.
#[derive(Debug, Clone, thiserror::Error)]
#[error("message {index} is {bytes} bytes, over the {MAX_MESSAGE_BYTES}-byte limit")]
pub struct TooLarge {
    /// Its position in the input.
    pub index: usize,
    /// Its size.
    pub bytes: usize,
}

/// Groups entries of `sizes` into batch calls: at most ten entries and [`MAX_MESSAGE_BYTES`]
/// per call, in order. Fails on a single entry over the limit.
pub fn plan_batches(sizes: &[usize]) -> Result<Vec<Vec<usize>>, TooLarge> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for (index, &size) in sizes.iter().enumerate() {
        if size > MAX_MESSAGE_BYTES {
            return Err(TooLarge { index, bytes: size });
        }
        if current.len() == MAX_BATCH_ENTRIES || bytes + size > MAX_MESSAGE_BYTES {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(index);
        bytes += size;
    }
    if !current.is_empty() {
        batches.push(current);
    }
    Ok(batches)
}

/// Sends every entry to the queue at `queue_url`, each body [`sqs_safe`]. An entry over the size
/// limit (escapes counted) stops it before anything is sent; otherwise every entry is tried and
/// those not on the queue are reported.
pub async fn send_batches(
    client: &Client,
    queue_url: &str,
    entries: &[BatchEntry],
) -> Result<BatchSent, TooLarge> {
    let bodies: Vec<Cow<'_, str>> = entries.iter().map(|e| sqs_safe(&e.body)).collect();
    let sizes: Vec<usize> = entries
        .iter()
        .zip(&bodies)
        .map(|(entry, body)| entry.size() - entry.body.len() + body.len())
        .collect();
    let batches = plan_batches(&sizes)?;
    let results: Vec<BatchSent> = stream::iter(batches)
        .map(|batch| send_one_batch(client, queue_url, entries, &bodies, batch))
        .buffer_unordered(CONCURRENT_CALLS)
        .collect()
        .await;
    let mut sent = BatchSent::default();
    for result in results {
        sent.calls += result.calls;
        sent.failed.extend(result.failed);
    }
    sent.failed.sort_by_key(|f| f.index);
    Ok(sent)
}

/// One batch: a call, then calls for the entries SQS refused on its side, with backoff.
/// `bodies` are the entries' bodies as sent.
async fn send_one_batch(
    client: &Client,
    queue_url: &str,
    entries: &[BatchEntry],
    bodies: &[Cow<'_, str>],
    batch: Vec<usize>,
) -> BatchSent {
    let mut sent = BatchSent::default();
    let mut pending = batch;
    let mut pause = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let request = pending
            .iter()
            .map(|&i| {
                let entry = &entries[i];
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(bodies[i].as_ref())
                    .set_delay_seconds(entry.delay_seconds)
                    .set_message_attributes(entry.attributes.clone())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>();
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                let error = StoreError::new(StoreErrorKind::Other, OPERATION, e);
                sent.failed
                    .extend(pending.iter().map(|&index| EntryFailure {
                        index,
                        error: error.clone(),
                    }));
                return sent;
            }
        };
        sent.calls += 1;
        let out = client
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(request))
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => {
                let error = crate::sdk::store_error(OPERATION, e);
                sent.failed
                    .extend(pending.iter().map(|&index| EntryFailure {
                        index,
                        error: error.clone(),
                    }));
                return sent;
            }
        };
        let mut retry = Vec::new();
        for refused in out.failed() {
            let Some(index) = refused
                .id()
                .parse::<usize>()
                .ok()
                .filter(|i| pending.contains(i))
            else {
                continue;
            };
            let reason = format!(
                "entry refused: {} {}",
                refused.code(),
                refused.message().unwrap_or("")
            );
            if refused.sender_fault() {
                sent.failed.push(EntryFailure {
                    index,
                    error: StoreError::new(StoreErrorKind::Other, OPERATION, reason),
                });
            } else if attempt == ATTEMPTS {
                sent.failed.push(EntryFailure {
                    index,
                    error: StoreError::new(StoreErrorKind::Transient, OPERATION, reason),
                });
            } else {
                retry.push(index);
            }
        }
        if retry.is_empty() {
            break;
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
        pending = retry;
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_ten_entries_and_stay_under_the_size_limit() {
        let plan = plan_batches(&[300; 1000]).unwrap();
        assert_eq!(plan.len(), 100);
        assert!(plan.iter().all(|b| b.len() == 10));

        let plan = plan_batches(&[100 * 1024; 5]).unwrap();
        assert_eq!(plan, vec![vec![0, 1], vec![2, 3], vec![4]]);

        assert_eq!(
            plan_batches(&[MAX_MESSAGE_BYTES, 1]).unwrap(),
            vec![vec![0], vec![1]]
        );
        assert!(plan_batches(&[]).unwrap().is_empty());
    }

    #[test]
    fn an_entry_over_the_limit_is_refused_by_position() {
        let err = plan_batches(&[10, MAX_MESSAGE_BYTES + 1]).unwrap_err();
        assert_eq!((err.index, err.bytes), (1, MAX_MESSAGE_BYTES + 1));
    }

    #[test]
    fn attributes_count_against_the_size_limit() {
        let attribute = MessageAttributeValue::builder()
            .data_type("String")
            .string_value("abcd")
            .build()
            .unwrap();
        let entry = BatchEntry::new("body")
            .with_attributes(Some(HashMap::from([("name".to_owned(), attribute)])));
        assert_eq!(entry.size(), 4 + 4 + 6 + 4);
    }

    #[test]
    fn a_body_grown_over_the_limit_by_its_escapes_is_refused_before_sending() {
        // 80 000 U+FFFF (3 bytes each, under the limit) escape to 480 000 bytes (over it).
        let entries = [BatchEntry::new("\u{FFFF}".repeat(80_000))];
        assert!(entries[0].size() < MAX_MESSAGE_BYTES);
        // No call is made: the client points nowhere and is never used.
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .build();
        let client = Client::from_conf(config);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = runtime
            .block_on(send_batches(&client, "http://127.0.0.1:9/q", &entries))
            .unwrap_err();
        assert_eq!((err.index, err.bytes), (0, 480_000));
    }

    #[test]
    fn all_sent_reports_the_first_failure_and_how_many_failed() {
        assert_eq!(BatchSent::default().all_sent(3).unwrap(), 0);
        let sent = BatchSent {
            calls: 2,
            failed: vec![
                EntryFailure {
                    index: 4,
                    error: StoreError::new(StoreErrorKind::Transient, OPERATION, "later"),
                },
                EntryFailure {
                    index: 1,
                    error: StoreError::new(StoreErrorKind::Throttled, OPERATION, "slow down"),
                },
            ],
        };
        let err = sent.all_sent(5).unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Throttled);
        assert!(
            err.to_string()
                .contains("2 of 5 entries not enqueued, e.g. entry 1")
        );
    }
}
