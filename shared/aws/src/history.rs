//! The event history on DynamoDB: per-event dedupe, the message's history and its state, with
//! exactly-once effects.
//!
//! Each [`DeliveryEvent`] costs two writes:
//! 1. **claim** — a conditional put of `event#<provider>#<digest>` in the dedupe table
//!    (`processing`, with a lease). A `done` claim is a duplicate: nothing happens again. A live
//!    `processing` claim belongs to another invocation: the record is retried later. An expired
//!    one (its invocation died) is taken over.
//! 2. **record** — one `TransactWriteItems`: the history entry (`msg#<id>` / `event#<time>#<digest>`
//!    in the messages table, or an orphan partition for events of unknown messages), the
//!    summary's state and recipient status (conditional on the values they were computed from, so
//!    a concurrent change makes the caller re-read instead of regressing the state), and the claim
//!    set to `done`, and the delivery-statistics counters the event adds (`crate::stats`:
//!    4 + tags items for a counted event of our message, none for an orphan). All or nothing: a crash before it leaves the claim to expire and the event to
//!    be processed again; after it, the event is a duplicate.
//!
//! Side effects outside the transaction (suppression, soft-bounce count, app webhooks) happen
//! between the two writes and are idempotent, so a retry after a crash repeats them harmlessly.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use mailgate_core::{
    DeliveryEvent, MessageRecord, ProviderId, StoreError, StoreErrorKind, UnixMillis,
    suppression_key,
};

use crate::dynamodb::cancellation_codes;
use crate::message_items::{SUMMARY, message_pk};

/// The sort-key prefix of history entries in a message's partition.
pub const EVENT_PREFIX: &str = "event#";
/// How long a claim stays `processing` before another invocation may take it over: twice the
/// processor's timeout.
pub const CLAIM_LEASE_MS: i64 = 60_000;
/// How long a `done` claim is kept to recognise duplicates: longer than any provider retries
/// (SendGrid 72 h, SNS and EventBridge 24 h) and than a DLQ keeps a message (14 days).
pub const DEDUPE_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;
/// How long orphan events (for messages we do not know) are kept.
pub const ORPHAN_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

const PROCESSING: &str = "processing";
const DONE: &str = "done";

/// A failure of the history store.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A DynamoDB call failed (classified when it was made).
    #[error("the event history: {0}")]
    Unavailable(#[from] StoreError),
    /// A stored history entry is not readable.
    #[error("history entry {sk} of {pk} is not readable: {detail}")]
    Corrupt {
        /// Its partition.
        pk: String,
        /// Its sort key.
        sk: String,
        /// What is wrong.
        detail: String,
    },
}

impl HistoryError {
    fn sdk<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        HistoryError::Unavailable(crate::sdk::store_error(operation, err))
    }
}

pub use mailgate_core::ports::{EventClaim, EventRecorded};

pub use mailgate_core::HistoryEntry;

/// The event history and dedupe claims on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbEventHistory {
    messages: crate::TableHandle,
    dedupe: crate::TableHandle,
    retention_ms: i64,
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The dedupe-table key of an event's claim.
pub fn claim_key(event: &DeliveryEvent) -> String {
    format!("event#{}#{}", event.provider, event.key_digest())
}

/// The sort key of an event in a history partition: time order, then the event.
pub fn history_sk(event: &DeliveryEvent) -> String {
    format!(
        "{EVENT_PREFIX}{:015}#{}",
        event.at().as_i64().max(0),
        event.key_digest()
    )
}

/// The partition holding events of a message we do not know, by the provider's id for it.
pub fn orphan_pk(event: &DeliveryEvent) -> String {
    format!(
        "orphan#{}#{}",
        event.provider,
        event.provider_message_id.as_deref().unwrap_or("-")
    )
}

/// The history item of `event` under `pk`.
fn history_item(pk: String, event: &DeliveryEvent, expires_at: Option<i64>) -> Item {
    let mut item = HashMap::from([
        ("pk".to_owned(), s(pk)),
        ("sk".to_owned(), s(history_sk(event))),
        ("kind".to_owned(), s(event.kind.as_str())),
        ("provider".to_owned(), s(event.provider.as_str())),
        ("at".to_owned(), n(event.at().as_i64())),
        (
            "event".to_owned(),
            // A DeliveryEvent is plain data: serialising it cannot fail.
            s(serde_json::to_string(event).unwrap_or_default()),
        ),
    ]);
    if let Some(verdict) = event.bounce_classification() {
        item.insert(
            "classification".to_owned(),
            s(serde_json::to_string(&verdict).unwrap_or_default()),
        );
    }
    if let Some(at) = expires_at {
        item.insert("expires_at".to_owned(), n(at));
    }
    item
}

/// Reads a history item back.
pub(crate) fn history_entry(pk: &str, item: &Item) -> Result<HistoryEntry, HistoryError> {
    let sk = item
        .get("sk")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let corrupt = |detail: String| HistoryError::Corrupt {
        pk: pk.to_owned(),
        sk: sk.clone(),
        detail,
    };
    let text = item
        .get("event")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| corrupt("no event".to_owned()))?;
    let event: DeliveryEvent =
        serde_json::from_str(text).map_err(|e| corrupt(format!("event: {e}")))?;
    let classification = match item.get("classification").and_then(|v| v.as_s().ok()) {
        Some(text) => {
            Some(serde_json::from_str(text).map_err(|e| corrupt(format!("classification: {e}")))?)
        }
        None => None,
    };
    Ok(HistoryEntry {
        event,
        classification,
    })
}

impl DynamoDbEventHistory {
    /// The history over the messages table and claims over the dedupe table.
    pub fn new(client: Client, messages_table: String, dedupe_table: String) -> Self {
        let messages = crate::TableHandle::new(client, messages_table);
        let dedupe = messages.sibling(dedupe_table);
        Self::on(messages, dedupe)
    }

    /// The same history on table handles of the function's DynamoDB foundation (one client).
    pub fn on(messages: crate::TableHandle, dedupe: crate::TableHandle) -> Self {
        Self {
            messages,
            dedupe,
            retention_ms: i64::try_from(crate::config::DEFAULT_MESSAGE_RETENTION_DAYS)
                .unwrap_or(90)
                * 86_400_000,
        }
    }

    /// The same history keeping each entry of a message for `retention`, like the message's
    /// other items (`MESSAGE_RETENTION_DAYS`).
    pub fn with_retention(mut self, retention: std::time::Duration) -> Self {
        self.retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Claims `event` for processing (write 1 of 2): a conditional put that succeeds when the
    /// event was never seen or its earlier claim's lease expired.
    pub async fn claim(
        &self,
        event: &DeliveryEvent,
        now: UnixMillis,
    ) -> Result<EventClaim, HistoryError> {
        let result = self
            .messages
            .client()
            .put_item()
            .table_name(self.dedupe.name())
            .item("pk", s(claim_key(event)))
            .item("status", s(PROCESSING))
            .item("lease_until", n(now.as_i64() + CLAIM_LEASE_MS))
            .item("provider", s(event.provider.as_str()))
            .item("kind", s(event.kind.as_str()))
            .item(
                "expires_at",
                n((now.as_i64() + DEDUPE_RETENTION_MS).div_euclid(1000)),
            )
            .condition_expression(
                "attribute_not_exists(pk) OR (#status = :processing AND lease_until < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":processing", s(PROCESSING))
            .expression_attribute_values(":now", n(now.as_i64()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(EventClaim::New),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                let old = match e.err() {
                    PutItemError::ConditionalCheckFailedException(c) => c.item.clone(),
                    _ => None,
                };
                let status = old
                    .as_ref()
                    .and_then(|i| i.get("status"))
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str);
                Ok(if status == Some(DONE) {
                    EventClaim::Done
                } else {
                    EventClaim::Busy
                })
            }
            Err(e) => Err(HistoryError::sdk("PutItem", e)),
        }
    }

    /// Records a claimed event (write 2 of 2, one transaction): its history entry, the state it
    /// moves `message` to (when it is ours), and the claim `done`.
    pub async fn record(
        &self,
        event: &DeliveryEvent,
        message: Option<&MessageRecord>,
        now: UnixMillis,
    ) -> Result<EventRecorded, HistoryError> {
        // A request we cannot build is a bug: retrying cannot fix it.
        let build = |e| {
            HistoryError::Unavailable(StoreError::new(
                StoreErrorKind::Other,
                "TransactWriteItems",
                e,
            ))
        };
        let mut items = Vec::with_capacity(3);
        let (pk, expires_at) = match message {
            Some(record) => (
                message_pk(&record.id),
                Some(
                    now.as_i64()
                        .saturating_add(self.retention_ms)
                        .div_euclid(1000),
                ),
            ),
            None => (
                orphan_pk(event),
                Some((now.as_i64() + ORPHAN_RETENTION_MS).div_euclid(1000)),
            ),
        };
        items.push(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(self.messages.name())
                        .set_item(Some(history_item(pk, event, expires_at)))
                        .build()
                        .map_err(build)?,
                )
                .build(),
        );

        let mut states = None;
        if let Some(record) = message {
            let before = record.state;
            let mut after = before;
            let mut update = Update::builder()
                .table_name(self.messages.name())
                .key("pk", s(message_pk(&record.id)))
                .key("sk", s(SUMMARY))
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":before", s(before.as_str()))
                .expression_attribute_values(":now", n(now.as_i64()));
            let mut set = vec!["updated_at = :now"];
            let mut conditions = vec!["#state = :before"];
            let mut changed = false;
            if let Some(incoming) = event.kind.message_state() {
                after = record.state_after_event(event.recipient.as_ref(), incoming);
                if after != before {
                    set.push("#state = :after");
                    update = update.expression_attribute_values(":after", s(after.as_str()));
                    changed = true;
                }
            }
            if let (Some(incoming), Some(address)) = (event.recipient_status(), &event.recipient) {
                let key = suppression_key(address);
                if let Some(recipient) = record.recipients.iter().find(|r| r.key() == key) {
                    let next = recipient.status.after_event(incoming);
                    if next != recipient.status {
                        set.push("recipients.#rk.#rs = :rnext");
                        conditions.push("recipients.#rk.#rs = :rbefore");
                        update = update
                            .expression_attribute_names("#rk", key)
                            .expression_attribute_names("#rs", "status")
                            .expression_attribute_values(":rnext", s(next.as_str()))
                            .expression_attribute_values(":rbefore", s(recipient.status.as_str()));
                        changed = true;
                    }
                }
            }
            if changed {
                let update = update
                    // A new state outdates the sweeper's reason for the old one.
                    .update_expression(if after != before {
                        format!("SET {} REMOVE state_reason", set.join(", "))
                    } else {
                        format!("SET {}", set.join(", "))
                    })
                    .condition_expression(conditions.join(" AND "))
                    .build()
                    .map_err(build)?;
                items.push(TransactWriteItem::builder().update(update).build());
            }
            states = Some((before, after));
        }

        let mut done = Update::builder()
            .table_name(self.dedupe.name())
            .key("pk", s(claim_key(event)))
            .update_expression("SET #status = :done, done_at = :now REMOVE lease_until")
            .condition_expression("#status = :processing")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":done", s(DONE))
            .expression_attribute_values(":processing", s(PROCESSING))
            .expression_attribute_values(":now", n(now.as_i64()));
        if let Some(record) = message {
            done = done
                .update_expression(
                    "SET #status = :done, done_at = :now, message_id = :mid REMOVE lease_until",
                )
                .expression_attribute_values(":mid", s(record.id.as_str()));
        }
        let done_index = items.len();
        items.push(
            TransactWriteItem::builder()
                .update(done.build().map_err(build)?)
                .build(),
        );
        // The delivery statistics, in the same transaction as the claim's `done`: a duplicate
        // event (refused at the claim) never counts twice.
        if let Some(record) = message {
            let classification = event.bounce_classification();
            let counters: Vec<_> =
                mailgate_core::stats::event_counters(event.kind, classification.as_ref())
                    .into_iter()
                    .map(|c| (c, 1))
                    .collect();
            items.extend(
                crate::stats::counter_writes(
                    self.messages.name(),
                    &crate::stats::StatsScope::of(record, Some(event.provider)),
                    event.at(),
                    &counters,
                )
                .map_err(build)?,
            );
        }

        let result = self
            .messages
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(match states {
                Some((before, after)) => EventRecorded::Applied { before, after },
                None => EventRecorded::Orphaned,
            }),
            Err(err) => {
                let reasons = cancellation_codes(&err);
                let failed = |i: usize| {
                    reasons
                        .get(i)
                        .is_some_and(|c| c == "ConditionalCheckFailed")
                };
                if failed(done_index) {
                    Ok(EventRecorded::Duplicate)
                } else if (1..done_index).any(failed)
                    || reasons.iter().any(|c| c == "TransactionConflict")
                {
                    Ok(EventRecorded::Conflict)
                } else {
                    Err(HistoryError::Unavailable(crate::sdk::transaction_error(
                        err,
                    )))
                }
            }
        }
    }

    /// Orphan events recorded for a provider's message id, oldest first.
    pub async fn orphans(
        &self,
        provider: ProviderId,
        provider_message_id: &str,
    ) -> Result<Vec<HistoryEntry>, HistoryError> {
        let pk = format!("orphan#{provider}#{provider_message_id}");
        let mut entries = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .messages
                .client()
                .query()
                .table_name(self.messages.name())
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| HistoryError::sdk("Query", e))?;
            for item in out.items() {
                entries.push(history_entry(&pk, item)?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(entries),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::{EmailAddress, EventKind, EventSource};

    fn event(key: &str, at: i64) -> DeliveryEvent {
        DeliveryEvent {
            key: key.into(),
            kind: EventKind::Delivered,
            provider_type: "Delivery".into(),
            provider: ProviderId::Ses,
            recipient: Some(EmailAddress::parse("a@example.com").unwrap()),
            provider_message_id: Some("p-1".into()),
            message_id: None,
            occurred_at: Some(UnixMillis(at)),
            received_at: UnixMillis(at + 5),
            bounce: None,
            url: None,
            detail: None,
            provider_suppressed: false,
            complaint_feedback: None,
            source: EventSource {
                receipt: "ses#x".into(),
                index: 0,
                recipient_index: 0,
            },
        }
    }

    #[test]
    fn history_keys_sort_by_time_and_hide_the_address() {
        assert!(history_sk(&event("a", 99)) < history_sk(&event("a", 100)));
        assert_ne!(claim_key(&event("a", 1)), claim_key(&event("b", 1)));
        assert_eq!(claim_key(&event("a", 1)), claim_key(&event("a", 2)));
        assert!(!claim_key(&event("a@example.com", 1)).contains("example.com"));
        assert_eq!(orphan_pk(&event("a", 1)), "orphan#ses#p-1");
    }

    #[test]
    fn a_history_item_reads_back() {
        let e = event("a", 7);
        let item = history_item("msg#x".into(), &e, None);
        let back = history_entry("msg#x", &item).unwrap();
        assert_eq!(back.event, e);
        assert_eq!(back.classification, None);
    }
}
