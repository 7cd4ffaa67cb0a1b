//! `DynamoDbMessages`: message records, send attempts and stored content in the messages table.
//! This module holds the item layout and its mapping; the operations sit by concern in
//! `create`, `outcome` (the send path's writes and the lease), `read` and `release`.
//!
//! Item layout (see `infra/README.md`, the `messages` row):
//! - `pk = msg#<id>`, `sk = summary`: the [`MessageRecord`] (no subject, no bodies) with
//!   `provider_message_key = <provider>#<provider message id>` once a provider accepted it (the
//!   `by-provider-message-id` index), and `release_queue` + `release_at` while it is held (the
//!   sparse `by-release` index; the template declares `release_at` a string, so it is the epoch
//!   milliseconds zero-padded to 15 digits, which sorts like the number), and `sending_until`
//!   (epoch ms) while a worker holds it `sending` ([`DynamoDbMessages::start_sending`]). A
//!   `queued` or `sending` message is on the `watch` release queue, due when it should have
//!   moved on (see [`ReleaseQueue::Watch`]), with `requeues` counting the sweeper's re-enqueues
//!   and `state_reason` saying why the sweeper gave up on it;
//! - `pk = msg#<id>`, `sk = attempt#<epoch ms, 15 digits>#<number, 4 digits>`: one item per
//!   provider call, so the summary Query returns them in order;
//! - `pk = msg#<id>#content`, `sk = content`: the validated [`OutboundEmail`] as JSON (attachments
//!   in base64), inline up to [`INLINE_CONTENT_LIMIT`], else split into `sk = content#NNNN` parts
//!   that the `content` item counts. Content lives in a partition of its own so that reading a
//!   message's status never reads (or pays for) its bodies.
//!
//! - `pk = msg#<id>#search`, `sk = rcpt#<hash>` / `tag#<tag>`: the message's search entries, and
//!   on the summary `created_key` and `recipient_keys` (see [`search`]).
//!
//! Every item of a message carries `expires_at` (epoch seconds, the table's TTL attribute): the
//! message's acceptance time plus its retention (`MESSAGE_RETENTION_DAYS`, default 90) on the
//! summary, the content and its parts; the call's time plus the retention on each attempt (and,
//! through `DynamoDbEventHistory`, on each history entry).
//!
//! Round trips: `create` is one TransactWriteItems (summary + content + search entries) when the content fits,
//! plus one BatchWriteItem per 25 parts (written first) when it does not, and `create_linked`
//! adds a linked write (the idempotency claim) to that transaction, and `create_checked` its
//! guards (a `ConditionCheck` per recipient's suppression item and one on the API key); `record_outcome` (every
//! attempt of a delivery, the state, and a linked write such as the idempotency completion),
//! `record_attempt`, `start_sending`, `cancel`, `mark_released`, `due` and
//! `find_by_provider_message_id` are one request each;
//! `get` and `load_content` are one Query (more pages only past 1 MB).

use std::collections::HashMap;

use crate::idempotency::LinkedWrite;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, PutRequest, ReturnValue, ReturnValuesOnConditionCheckFailure, Select,
    TransactWriteItem, Update, WriteRequest,
};
use mailgate_core::{
    ApiKeyId, AttemptOutcome, DEFERRED_CHECK_AFTER_MS, EmailAddress, ErrorCategory, KeyEnvironment,
    Mailbox, MessageCategory, MessageId, MessageRecord, MessageState, OutboundEmail, ProviderId,
    Recipient, RecipientKind, RecipientStatus, ReleaseQueue, SendAttempt, UnixMillis,
};

/// Content up to this many bytes of JSON is stored in the `content` item itself (DynamoDB items
/// are at most 400 KB); larger content is split into parts of this size.
pub const INLINE_CONTENT_LIMIT: usize = 350 * 1024;

/// DynamoDB's limit on the items of one `TransactWriteItems`.
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// Attempts per `record_outcome` transaction: the summary update, a linked write and the
/// outcome's statistics counters (at most 4 + 10 tags) make the rest of TransactWriteItems'
/// 100 items (attempt items are small, far from its 4 MB).
pub const ATTEMPTS_PER_TRANSACTION: usize = 80;

/// Parts per BatchWriteItem request (the API's limit).
const PARTS_PER_BATCH: usize = 25;

const CONTENT: &str = "content";
const ATTEMPT_PREFIX: &str = "attempt#";

/// Why a message operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MessageStoreError {
    /// `create` found a message with this id already.
    #[error("message {0} exists already")]
    AlreadyExists(MessageId),
    /// The write linked into the transaction (an idempotency claim or completion) had its
    /// condition refused, or conflicted with a concurrent transaction on its item: nothing of
    /// the transaction was written.
    #[error("the linked write was refused")]
    LinkedRefused,
    /// A check of the transaction (the API key still valid, a recipient not suppressed) did
    /// not hold, or conflicted with a concurrent write to its item: nothing was written.
    #[error("a check of the transaction did not hold")]
    CheckRefused,
    /// The message does not exist (`record_attempt`).
    #[error("message {0} does not exist")]
    NotFound(MessageId),
    /// A stored item could not be read back.
    #[error("message {id} has an unreadable {what}")]
    Corrupt {
        /// The message.
        id: String,
        /// What could not be read.
        what: String,
    },
    /// The content could not be serialized or parsed.
    #[error("message content could not be encoded: {0}")]
    Content(String),
    /// DynamoDB could not be reached or refused the request.
    #[error("DynamoDB {operation} failed: {detail}")]
    Unavailable {
        /// The API operation.
        operation: &'static str,
        /// What kind of failure it was (throttled, transient, a missing table, …).
        kind: mailgate_core::StoreErrorKind,
        /// The SDK error with its context.
        detail: String,
    },
}

impl MessageStoreError {
    fn sdk<E>(
        operation: &'static str,
        err: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> Self
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        Self::Unavailable {
            operation,
            kind: crate::sdk::error_kind(&err),
            detail: DisplayErrorContext(err).to_string(),
        }
    }

    /// A failed `TransactWriteItems` (see [`crate::sdk::transaction_error_kind`]).
    fn transaction(
        err: aws_sdk_dynamodb::error::SdkError<
            TransactWriteItemsError,
            aws_sdk_dynamodb::config::http::HttpResponse,
        >,
    ) -> Self {
        Self::Unavailable {
            operation: "TransactWriteItems",
            kind: crate::sdk::transaction_error_kind(&err),
            detail: DisplayErrorContext(err).to_string(),
        }
    }

    /// A request that could not even be built: a bug, not worth a retry.
    fn built(operation: &'static str, err: aws_sdk_dynamodb::error::BuildError) -> Self {
        Self::Unavailable {
            operation,
            kind: mailgate_core::StoreErrorKind::Other,
            detail: DisplayErrorContext(err).to_string(),
        }
    }
}

pub use mailgate_core::ports::{SendingClaim, StoredMessage};

pub use mailgate_core::ports::Cancellation;

pub(crate) use crate::dynamodb::cancellation_codes;
pub(crate) use crate::message_items::SUMMARY;
pub use crate::message_items::message_pk;

fn content_pk(id: &MessageId) -> String {
    format!("msg#{id}#content")
}

/// The `by-provider-message-id` key of a provider's id for a message.
pub fn provider_message_key(provider: ProviderId, provider_message_id: &str) -> String {
    format!("{provider}#{provider_message_id}")
}

/// The `release_at` key of an instant: epoch milliseconds, zero-padded to sort as text.
fn release_key(at: UnixMillis) -> String {
    format!("{:015}", at.as_i64().max(0))
}

/// The states a send outcome `state` may replace: those before a send (`queued`, `sending`,
/// held), and those it takes precedence over as an event would.
fn outranked_by(state: MessageState) -> Vec<MessageState> {
    MessageState::ALL
        .iter()
        .copied()
        .filter(|from| *from == state || from.is_before_send() || from.after_event(state) == state)
        .collect()
}

fn attempt_sk(attempt: &SendAttempt) -> String {
    format!(
        "{ATTEMPT_PREFIX}{:015}#{:04}",
        attempt.at.as_i64().max(0),
        attempt.number
    )
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

type Item = HashMap<String, AttributeValue>;

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

const CONDITION_FAILED: &str = "ConditionalCheckFailed";
const TRANSACTION_CONFLICT: &str = "TransactionConflict";

fn refused_or_conflict(code: &str) -> bool {
    code == CONDITION_FAILED || code == TRANSACTION_CONFLICT
}

fn is_conditional_failure(err: &aws_sdk_dynamodb::error::SdkError<UpdateItemError>) -> bool {
    err.as_service_error()
        .is_some_and(UpdateItemError::is_conditional_check_failed_exception)
}

fn summary_item(record: &MessageRecord) -> Item {
    let mut item = HashMap::from([
        ("pk".to_owned(), s(message_pk(&record.id))),
        ("sk".to_owned(), s(SUMMARY)),
        ("id".to_owned(), s(record.id.as_str())),
        ("api_key_id".to_owned(), s(record.api_key_id.as_str())),
        ("environment".to_owned(), s(record.environment.as_str())),
        ("category".to_owned(), s(record.category.as_str())),
        ("from_address".to_owned(), s(record.from.address.as_str())),
        ("state".to_owned(), s(record.state.as_str())),
        ("created_at".to_owned(), n(record.created_at.as_i64())),
        ("updated_at".to_owned(), n(record.updated_at.as_i64())),
        (
            "attempt_count".to_owned(),
            n(i64::from(record.attempt_count)),
        ),
        (
            "recipients".to_owned(),
            AttributeValue::M(
                record
                    .recipients
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let entry = HashMap::from([
                            ("address".to_owned(), s(r.address.as_str())),
                            ("kind".to_owned(), s(r.kind.as_str())),
                            ("status".to_owned(), s(r.status.as_str())),
                            ("idx".to_owned(), n(i as i64)),
                        ]);
                        (r.key(), AttributeValue::M(entry))
                    })
                    .collect(),
            ),
        ),
    ]);
    if let Some(name) = &record.from.name {
        item.insert("from_name".to_owned(), s(name));
    }
    if let Some(topic) = &record.topic {
        item.insert("topic".to_owned(), s(topic));
    }
    if let Some(at) = record.send_at {
        item.insert("send_at".to_owned(), n(at.as_i64()));
    }
    if let Some(provider) = record.provider {
        item.insert("provider".to_owned(), s(provider.as_str()));
        if let Some(pmid) = &record.provider_message_id {
            item.insert("provider_message_id".to_owned(), s(pmid));
            item.insert(
                "provider_message_key".to_owned(),
                s(provider_message_key(provider, pmid)),
            );
        }
    }
    if let Some(template) = &record.template {
        item.insert("template_id".to_owned(), s(template.id.as_str()));
        item.insert(
            "template_version".to_owned(),
            n(i64::from(template.version)),
        );
    }
    if let (MessageState::Sending, Some(until)) = (record.state, record.sending_until) {
        item.insert("sending_until".to_owned(), n(until.as_i64()));
    }
    if !record.tags.is_empty() {
        item.insert(
            "tags".to_owned(),
            AttributeValue::L(record.tags.iter().map(s).collect()),
        );
    }
    if let Some(correlation_id) = &record.correlation_id {
        item.insert("correlation_id".to_owned(), s(correlation_id));
    }
    if let Some(queue) = record.release_queue() {
        item.insert("release_queue".to_owned(), s(queue.as_str()));
        item.insert("release_at".to_owned(), s(release_key(record.release_at())));
    }
    search::add_summary_search_attributes(record, &mut item);
    item
}

fn record_from(item: &Item) -> Result<MessageRecord, MessageStoreError> {
    let id_text = get_s(item, "id").unwrap_or_default().to_owned();
    let corrupt = |what: &str| MessageStoreError::Corrupt {
        id: id_text.clone(),
        what: what.to_owned(),
    };
    let id = MessageId::parse(&id_text).map_err(|_| corrupt("id"))?;
    let api_key_id = get_s(item, "api_key_id")
        .and_then(|v| ApiKeyId::parse(v).ok())
        .ok_or_else(|| corrupt("api_key_id"))?;
    let environment: KeyEnvironment = get_s(item, "environment")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt("environment"))?;
    let category = match get_s(item, "category") {
        Some("transactional") => MessageCategory::Transactional,
        Some("bulk") => MessageCategory::Bulk,
        _ => return Err(corrupt("category")),
    };
    let from_address = get_s(item, "from_address")
        .and_then(|v| EmailAddress::parse(v).ok())
        .ok_or_else(|| corrupt("from_address"))?;
    let from = match get_s(item, "from_name") {
        Some(name) => Mailbox::named(from_address, name),
        None => Mailbox::new(from_address),
    };
    let state: MessageState = get_s(item, "state")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt("state"))?;
    let mut recipients: Vec<(i64, Recipient)> = Vec::new();
    if let Some(map) = item.get("recipients").and_then(|v| v.as_m().ok()) {
        for entry in map.values() {
            let entry = entry.as_m().map_err(|_| corrupt("recipient"))?;
            let address = get_s(entry, "address")
                .and_then(|v| EmailAddress::parse(v).ok())
                .ok_or_else(|| corrupt("recipient address"))?;
            let kind: RecipientKind = get_s(entry, "kind")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| corrupt("recipient kind"))?;
            let status: RecipientStatus = get_s(entry, "status")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| corrupt("recipient status"))?;
            let idx = get_n(entry, "idx").unwrap_or(i64::MAX);
            recipients.push((
                idx,
                Recipient {
                    address,
                    kind,
                    status,
                },
            ));
        }
    }
    recipients.sort_by_key(|(idx, _)| *idx);
    let provider = match get_s(item, "provider") {
        Some(p) => Some(p.parse::<ProviderId>().map_err(|_| corrupt("provider"))?),
        None => None,
    };
    Ok(MessageRecord {
        id,
        api_key_id,
        environment,
        category,
        topic: get_s(item, "topic").map(str::to_owned),
        from,
        recipients: recipients.into_iter().map(|(_, r)| r).collect(),
        state,
        created_at: UnixMillis(get_n(item, "created_at").ok_or_else(|| corrupt("created_at"))?),
        updated_at: UnixMillis(get_n(item, "updated_at").unwrap_or_default()),
        send_at: get_n(item, "send_at").map(UnixMillis),
        provider,
        provider_message_id: get_s(item, "provider_message_id").map(str::to_owned),
        attempt_count: get_n(item, "attempt_count")
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or_default(),
        sending_until: get_n(item, "sending_until").map(UnixMillis),
        template: match (get_s(item, "template_id"), get_n(item, "template_version")) {
            (Some(id), Some(version)) => Some(mailgate_core::template::TemplateRef {
                id: mailgate_core::TemplateId::parse(id).map_err(|_| corrupt("template_id"))?,
                version: u32::try_from(version).map_err(|_| corrupt("template_version"))?,
            }),
            _ => None,
        },
        state_reason: get_s(item, "state_reason").map(str::to_owned),
        tags: tags_of(item),
        correlation_id: get_s(item, "correlation_id").map(str::to_owned),
    })
}

/// The stored tags, in the order sent (a list, not a set, to keep that order).
fn tags_of(item: &Item) -> Vec<String> {
    item.get("tags")
        .and_then(|v| v.as_l().ok())
        .map(|list| list.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

fn attempt_item(id: &MessageId, attempt: &SendAttempt) -> Item {
    let mut item = HashMap::from([
        ("pk".to_owned(), s(message_pk(id))),
        ("sk".to_owned(), s(attempt_sk(attempt))),
        ("number".to_owned(), n(i64::from(attempt.number))),
        ("provider".to_owned(), s(attempt.provider.as_str())),
        ("at".to_owned(), n(attempt.at.as_i64())),
        ("outcome".to_owned(), s(attempt.outcome.as_str())),
    ]);
    if let Some(pmid) = &attempt.provider_message_id {
        item.insert("provider_message_id".to_owned(), s(pmid));
    }
    if let Some(category) = attempt.error_category {
        item.insert("error_category".to_owned(), s(category.as_str()));
    }
    if let Some(code) = &attempt.error_code {
        item.insert("error_code".to_owned(), s(code));
    }
    item
}

fn attempt_from(id: &MessageId, item: &Item) -> Result<SendAttempt, MessageStoreError> {
    let corrupt = |what: &str| MessageStoreError::Corrupt {
        id: id.to_string(),
        what: format!("attempt {what}"),
    };
    Ok(SendAttempt {
        number: get_n(item, "number")
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| corrupt("number"))?,
        provider: get_s(item, "provider")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt("provider"))?,
        at: UnixMillis(get_n(item, "at").ok_or_else(|| corrupt("time"))?),
        outcome: get_s(item, "outcome")
            .and_then(|v| v.parse::<AttemptOutcome>().ok())
            .ok_or_else(|| corrupt("outcome"))?,
        provider_message_id: get_s(item, "provider_message_id").map(str::to_owned),
        error_category: match get_s(item, "error_category") {
            Some(c) => Some(
                c.parse::<ErrorCategory>()
                    .map_err(|_| corrupt("error category"))?,
            ),
            None => None,
        },
        error_code: get_s(item, "error_code").map(str::to_owned),
    })
}

/// Messages on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbMessages {
    table: crate::dynamodb::TableHandle,
    idempotency: Option<crate::DynamoDbIdempotencyStore>,
    guard_tables: Option<GuardTables>,
    retention_secs: i64,
}

/// The tables a guarded create checks items of (the port's `create_guarded`).
#[derive(Debug, Clone)]
struct GuardTables {
    suppressions: String,
    api_keys: String,
}

impl DynamoDbMessages {
    /// Messages in `table`, kept [`DEFAULT_MESSAGE_RETENTION_DAYS`](crate::config::DEFAULT_MESSAGE_RETENTION_DAYS).
    pub fn new(client: Client, table: String) -> Self {
        Self::on(crate::TableHandle::new(client, table))
    }

    /// The same store on a table handle of the function's DynamoDB foundation.
    pub fn on(table: crate::TableHandle) -> Self {
        Self {
            table,
            idempotency: None,
            guard_tables: None,
            retention_secs: i64::try_from(crate::config::DEFAULT_MESSAGE_RETENTION_DAYS)
                .unwrap_or(90)
                * 86_400,
        }
    }

    /// The same store keeping every item it writes for `retention` (`expires_at`, the table's
    /// TTL attribute, on the summary, the content and its parts, and each attempt).
    pub fn with_retention(mut self, retention: std::time::Duration) -> Self {
        self.retention_secs = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// The `expires_at` (epoch seconds) of an item written for a message at `at`.
    fn expires_at(&self, at: UnixMillis) -> AttributeValue {
        n(at.unix_seconds_ceil().saturating_add(self.retention_secs))
    }

    /// The same store, claiming and completing `Idempotency-Key`s in `idempotency` within its
    /// own transactions (the `MessageStore` port's `create_and_claim` and completions).
    pub fn with_idempotency(mut self, idempotency: crate::DynamoDbIdempotencyStore) -> Self {
        self.idempotency = Some(idempotency);
        self
    }

    /// The same store, able to check a new message's guards (the API key in `api_keys_table`
    /// still valid, no recipient suppressed in `suppressions_table`) in the transaction that
    /// records it, so the send path needs no reads before it (the port's `create_guarded`).
    pub fn with_guards(
        mut self,
        suppressions_table: impl Into<String>,
        api_keys_table: impl Into<String>,
    ) -> Self {
        self.guard_tables = Some(GuardTables {
            suppressions: suppressions_table.into(),
            api_keys: api_keys_table.into(),
        });
        self
    }

    /// The idempotency store linked to this one, if any.
    pub fn idempotency(&self) -> Option<&crate::DynamoDbIdempotencyStore> {
        self.idempotency.as_ref()
    }
}

// The store's operations, by concern.
mod create;
mod outcome;
mod read;
mod release;
pub mod search;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_order_like_the_numbers_they_hold() {
        assert!(release_key(UnixMillis(999)) < release_key(UnixMillis(1_000)));
        assert_eq!(release_key(UnixMillis(-5)), "000000000000000");
        let attempt = |at, number| SendAttempt {
            number,
            provider: ProviderId::Ses,
            at: UnixMillis(at),
            outcome: AttemptOutcome::Accepted,
            provider_message_id: None,
            error_category: None,
            error_code: None,
        };
        assert!(attempt_sk(&attempt(99, 9)) < attempt_sk(&attempt(100, 1)));
        assert!(attempt_sk(&attempt(100, 1)) < attempt_sk(&attempt(100, 2)));
    }
}
