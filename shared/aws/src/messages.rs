//! `DynamoDbMessages`: message records, send attempts and stored content in the messages table.
//!
//! Item layout (see `infra/README.md`, the `messages` row):
//! - `pk = msg#<id>`, `sk = summary`: the [`MessageRecord`] (no subject, no bodies) with
//!   `provider_message_key = <provider>#<provider message id>` once a provider accepted it (the
//!   `by-provider-message-id` index), and `release_queue` + `release_at` while it is held (the
//!   sparse `by-release` index; the template declares `release_at` a string, so it is the epoch
//!   milliseconds zero-padded to 15 digits, which sorts like the number), and `sending_until`
//!   (epoch ms) while a worker holds it `sending` ([`DynamoDbMessages::start_sending`]);
//! - `pk = msg#<id>`, `sk = attempt#<epoch ms, 15 digits>#<number, 4 digits>`: one item per
//!   provider call, so the summary Query returns them in order;
//! - `pk = msg#<id>#content`, `sk = content`: the validated [`OutboundEmail`] as JSON (attachments
//!   in base64), inline up to [`INLINE_CONTENT_LIMIT`], else split into `sk = content#NNNN` parts
//!   that the `content` item counts. Content lives in a partition of its own so that reading a
//!   message's status never reads (or pays for) its bodies.
//!
//! Round trips: `create` is one TransactWriteItems (summary + content) when the content fits,
//! plus one BatchWriteItem per 25 parts (written first) when it does not, and `create_linked`
//! adds a linked write (the idempotency claim) to that transaction; `record_outcome` (every
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
    ApiKeyId, AttemptOutcome, EmailAddress, ErrorCategory, KeyEnvironment, Mailbox,
    MessageCategory, MessageId, MessageRecord, MessageState, OutboundEmail, ProviderId, Recipient,
    RecipientKind, RecipientStatus, ReleaseQueue, SendAttempt, UnixMillis,
};

/// Content up to this many bytes of JSON is stored in the `content` item itself (DynamoDB items
/// are at most 400 KB); larger content is split into parts of this size.
pub const INLINE_CONTENT_LIMIT: usize = 350 * 1024;

/// Attempts per `record_outcome` transaction: the summary update and a linked write make the
/// rest of TransactWriteItems' 100 items (attempt items are small, far from its 4 MB).
pub const ATTEMPTS_PER_TRANSACTION: usize = 90;

/// Parts per BatchWriteItem request (the API's limit).
const PARTS_PER_BATCH: usize = 25;

pub(crate) const SUMMARY: &str = "summary";
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

/// What `cancel` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancellation {
    /// The message is now `cancelled`; its record as stored.
    Cancelled(MessageRecord),
    /// The message is past cancelling; its current state.
    NotCancellable(MessageState),
    /// No such message visible to the caller's environment.
    NotFound,
}

/// The partition key of a message's summary and attempts.
pub fn message_pk(id: &MessageId) -> String {
    format!("msg#{id}")
}

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

/// The cancellation reason codes of a cancelled transaction, one per item (`"None"` for the
/// items that were not at fault); empty for any other error.
pub(crate) fn cancellation_codes(
    err: &aws_sdk_dynamodb::error::SdkError<TransactWriteItemsError>,
) -> Vec<String> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or("None").to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

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
    if let Some(queue) = record.release_queue() {
        item.insert("release_queue".to_owned(), s(queue.as_str()));
        item.insert("release_at".to_owned(), s(release_key(record.release_at())));
    }
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
    })
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
    client: Client,
    table: String,
    idempotency: Option<crate::DynamoDbIdempotencyStore>,
}

impl DynamoDbMessages {
    /// Messages in `table`.
    pub fn new(client: Client, table: String) -> Self {
        Self {
            client,
            table,
            idempotency: None,
        }
    }

    /// The same store, claiming and completing `Idempotency-Key`s in `idempotency` within its
    /// own transactions (the `MessageStore` port's `create_and_claim` and completions).
    pub fn with_idempotency(mut self, idempotency: crate::DynamoDbIdempotencyStore) -> Self {
        self.idempotency = Some(idempotency);
        self
    }

    /// The idempotency store linked to this one, if any.
    pub fn idempotency(&self) -> Option<&crate::DynamoDbIdempotencyStore> {
        self.idempotency.as_ref()
    }

    /// Records a newly accepted message and its content, unless a message with this id exists
    /// (`AlreadyExists`). Content that fits is written in the same transaction as the summary,
    /// so a message is never visible without it; larger content is written first as parts.
    pub async fn create(
        &self,
        record: &MessageRecord,
        content: &OutboundEmail,
    ) -> Result<(), MessageStoreError> {
        self.create_for(record, content, None).await
    }

    /// [`create`](Self::create), remembering the only provider the caller allowed (stored as
    /// `requested_provider` on the summary and returned by `get`).
    pub async fn create_for(
        &self,
        record: &MessageRecord,
        content: &OutboundEmail,
        requested_provider: Option<ProviderId>,
    ) -> Result<(), MessageStoreError> {
        self.create_linked(record, content, requested_provider, None)
            .await
    }

    /// [`create_for`](Self::create_for) with `linked` (e.g. an idempotency claim) written first
    /// in the same transaction: nothing is written unless every condition holds. A refused
    /// linked write is `LinkedRefused`; an existing message is `AlreadyExists`. Content parts
    /// (content over [`INLINE_CONTENT_LIMIT`]) are written before, outside the transaction, as
    /// for `create`; the transaction holds at most three items (linked, summary, content head).
    pub async fn create_linked(
        &self,
        record: &MessageRecord,
        content: &OutboundEmail,
        requested_provider: Option<ProviderId>,
        linked: Option<LinkedWrite>,
    ) -> Result<(), MessageStoreError> {
        let json =
            serde_json::to_vec(content).map_err(|e| MessageStoreError::Content(e.to_string()))?;
        let pk = content_pk(&record.id);
        let mut content_item = HashMap::from([
            ("pk".to_owned(), s(&pk)),
            ("sk".to_owned(), s(CONTENT)),
            ("bytes".to_owned(), n(json.len() as i64)),
        ]);
        if json.len() <= INLINE_CONTENT_LIMIT {
            content_item.insert("body".to_owned(), AttributeValue::B(Blob::new(json)));
        } else {
            let parts = self.write_parts(&pk, &json).await?;
            content_item.insert("parts".to_owned(), n(parts as i64));
        }
        let build = |e| MessageStoreError::built("TransactWriteItems", e);
        let mut summary_item = summary_item(record);
        if let Some(provider) = requested_provider {
            summary_item.insert("requested_provider".to_owned(), s(provider.as_str()));
        }
        let summary = Put::builder()
            .table_name(&self.table)
            .set_item(Some(summary_item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build)?;
        let content = Put::builder()
            .table_name(&self.table)
            .set_item(Some(content_item))
            .build()
            .map_err(build)?;
        let offset = usize::from(linked.is_some());
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(
                linked
                    .map(|l| l.0)
                    .into_iter()
                    .chain([
                        TransactWriteItem::builder().put(summary).build(),
                        TransactWriteItem::builder().put(content).build(),
                    ])
                    .collect(),
            ))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let reasons = cancellation_codes(&err);
                if offset == 1 && reasons.first().is_some_and(|c| refused_or_conflict(c)) {
                    Err(MessageStoreError::LinkedRefused)
                } else if reasons
                    .get(offset)
                    .is_some_and(|code| code == CONDITION_FAILED)
                {
                    Err(MessageStoreError::AlreadyExists(record.id.clone()))
                } else {
                    Err(MessageStoreError::sdk("TransactWriteItems", err))
                }
            }
        }
    }

    /// Writes `json` as `content#NNNN` parts; returns how many.
    async fn write_parts(&self, pk: &str, json: &[u8]) -> Result<usize, MessageStoreError> {
        let requests: Vec<WriteRequest> = json
            .chunks(INLINE_CONTENT_LIMIT)
            .enumerate()
            .map(|(i, chunk)| {
                let item = HashMap::from([
                    ("pk".to_owned(), s(pk)),
                    ("sk".to_owned(), s(format!("{CONTENT}#{i:04}"))),
                    ("body".to_owned(), AttributeValue::B(Blob::new(chunk))),
                ]);
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|p| WriteRequest::builder().put_request(p).build())
                    .map_err(|e| MessageStoreError::built("BatchWriteItem", e))
            })
            .collect::<Result<_, _>>()?;
        let count = requests.len();
        for batch in requests.chunks(PARTS_PER_BATCH) {
            let mut pending = batch.to_vec();
            for attempt in 0..5u32 {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| MessageStoreError::sdk("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.table))
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
            if !pending.is_empty() {
                // DynamoDB leaves items unprocessed when the table's throughput is exceeded.
                return Err(MessageStoreError::Unavailable {
                    operation: "BatchWriteItem",
                    kind: mailgate_core::StoreErrorKind::Throttled,
                    detail: "content parts stayed unprocessed after 5 attempts".to_owned(),
                });
            }
        }
        Ok(count)
    }

    /// Records one provider call and moves the message to `new_state`, in one transaction: the
    /// attempt item, and on the summary the state, the provider, the attempt count and (when
    /// the attempt carries one) the provider's message id and its `by-provider-message-id` key.
    /// `NotFound` when there is no such message.
    pub async fn record_attempt(
        &self,
        id: &MessageId,
        attempt: &SendAttempt,
        new_state: MessageState,
    ) -> Result<(), MessageStoreError> {
        self.record_outcome(
            id,
            std::slice::from_ref(attempt),
            new_state,
            attempt.at,
            None,
        )
        .await
        .map(|_| ())
    }

    /// Records every provider call of one delivery and moves the message to `new_state`, with
    /// `linked` (e.g. the idempotency completion), in ONE transaction when there are at most
    /// [`ATTEMPTS_PER_TRANSACTION`] attempts (one more per further batch; `linked` goes with
    /// the last): the attempt items, and on the summary the state, `updated_at = now`, the
    /// attempt count, the last provider, the provider's message id (and its
    /// `by-provider-message-id` key) when an attempt carries one; the `sending` lease
    /// (`sending_until`) is removed. Without attempts only the summary is updated.
    ///
    /// Returns whether `linked` was written: when its condition is refused the outcome is
    /// written again without it (the message's record must not be lost to a lapsed idempotency
    /// claim). `NotFound` when there is no such message.
    pub async fn record_outcome(
        &self,
        id: &MessageId,
        attempts: &[SendAttempt],
        new_state: MessageState,
        now: UnixMillis,
        linked: Option<LinkedWrite>,
    ) -> Result<bool, MessageStoreError> {
        let chunks: Vec<&[SendAttempt]> = if attempts.is_empty() {
            vec![&[]]
        } else {
            attempts.chunks(ATTEMPTS_PER_TRANSACTION).collect()
        };
        let last = chunks.len() - 1;
        let mut linked = linked;
        let mut linked_written = false;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let with = if i == last { linked.take() } else { None };
            let had_linked = with.is_some();
            match self
                .record_chunk_by_precedence(id, chunk, new_state, now, with)
                .await
            {
                Ok(()) => linked_written = had_linked,
                Err(MessageStoreError::LinkedRefused) => {
                    self.record_chunk_by_precedence(id, chunk, new_state, now, None)
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(linked_written)
    }

    /// One transaction of [`record_outcome`](Self::record_outcome) that moves the state only
    /// over a state the outcome outranks: the send path's `sent`/`unknown`/`failed`/`queued`
    /// never overwrites what an event that arrived first (a fast webhook) said. When the state
    /// has moved on, the attempts, the provider's id and `linked` are written without it.
    async fn record_chunk_by_precedence(
        &self,
        id: &MessageId,
        attempts: &[SendAttempt],
        new_state: MessageState,
        now: UnixMillis,
        linked: Option<LinkedWrite>,
    ) -> Result<(), MessageStoreError> {
        match self
            .record_chunk(id, attempts, Some(new_state), now, linked.clone())
            .await
        {
            // The condition names the states the outcome outranks; refused, either the state
            // moved on or there is no such message, which the second try tells apart.
            Err(MessageStoreError::NotFound(_)) => {
                self.record_chunk(id, attempts, None, now, linked).await
            }
            other => other,
        }
    }

    /// One transaction of [`record_outcome`](Self::record_outcome).
    async fn record_chunk(
        &self,
        id: &MessageId,
        attempts: &[SendAttempt],
        new_state: Option<MessageState>,
        now: UnixMillis,
        linked: Option<LinkedWrite>,
    ) -> Result<(), MessageStoreError> {
        let build = |e| MessageStoreError::built("TransactWriteItems", e);
        let mut items = Vec::with_capacity(attempts.len() + 2);
        for attempt in attempts {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(attempt_item(id, attempt)))
                .build()
                .map_err(build)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let mut set = vec!["updated_at = :now"];
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .expression_attribute_values(":now", n(now.as_i64()));
        match new_state {
            Some(state) => {
                // Only from a state the outcome outranks (see `outranked_by`).
                let outranked = outranked_by(state);
                let names: Vec<String> =
                    (0..outranked.len()).map(|i| format!(":from{i}")).collect();
                set.push("#state = :state");
                update = update
                    .condition_expression(format!(
                        "attribute_exists(pk) AND #state IN ({})",
                        names.join(", ")
                    ))
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_values(":state", s(state.as_str()));
                for (name, from) in names.iter().zip(outranked) {
                    update = update.expression_attribute_values(name, s(from.as_str()));
                }
            }
            None => update = update.condition_expression("attribute_exists(pk)"),
        }
        if let Some(last) = attempts.last() {
            set.push("provider = :provider");
            set.push("attempt_count = if_not_exists(attempt_count, :zero) + :count");
            update = update
                .expression_attribute_values(":provider", s(last.provider.as_str()))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":count", n(attempts.len() as i64));
        }
        if let Some(accepted) = attempts
            .iter()
            .rev()
            .find(|a| a.provider_message_id.is_some())
            && let Some(pmid) = &accepted.provider_message_id
        {
            set.push("provider_message_id = :pmid");
            set.push("provider_message_key = :pmkey");
            update = update
                .expression_attribute_values(":pmid", s(pmid))
                .expression_attribute_values(
                    ":pmkey",
                    s(provider_message_key(accepted.provider, pmid)),
                );
        }
        let update = update
            .update_expression(format!("SET {} REMOVE sending_until", set.join(", ")))
            .build()
            .map_err(build)?;
        let summary_index = items.len();
        items.push(TransactWriteItem::builder().update(update).build());
        let has_linked = linked.is_some();
        items.extend(linked.map(|l| l.0));
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let reasons = cancellation_codes(&err);
                if reasons
                    .get(summary_index)
                    .is_some_and(|c| c == CONDITION_FAILED)
                {
                    Err(MessageStoreError::NotFound(id.clone()))
                } else if has_linked
                    && reasons
                        .get(summary_index + 1)
                        .is_some_and(|c| refused_or_conflict(c))
                {
                    Err(MessageStoreError::LinkedRefused)
                } else {
                    Err(MessageStoreError::sdk("TransactWriteItems", err))
                }
            }
        }
    }

    /// Takes a `queued` message for a provider call: `queued` → `sending` with the lease
    /// `sending_until = lease_until`, in one conditional update. What it finds otherwise:
    /// another worker's live lease, an expired lease (marked `unknown` here: the worker holding
    /// it died after possibly calling a provider, so the message must not be sent blindly), or
    /// any other state.
    pub async fn start_sending(
        &self,
        id: &MessageId,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> Result<SendingClaim, MessageStoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .update_expression("SET #state = :sending, sending_until = :until, updated_at = :now")
            .condition_expression("#state = :queued")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":sending", s(MessageState::Sending.as_str()))
            .expression_attribute_values(":queued", s(MessageState::Queued.as_str()))
            .expression_attribute_values(":until", n(lease_until.as_i64()))
            .expression_attribute_values(":now", n(now.as_i64()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match result {
            Ok(_) => return Ok(SendingClaim::Taken),
            Err(err) if is_conditional_failure(&err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                _ => None,
            },
            Err(err) => return Err(MessageStoreError::sdk("UpdateItem", err)),
        };
        let Some(old) = old.filter(|i| i.contains_key("pk")) else {
            return Err(MessageStoreError::NotFound(id.clone()));
        };
        let state = record_from(&old)?.state;
        let until = get_n(&old, "sending_until").map(UnixMillis);
        match (state, until) {
            (MessageState::Sending, Some(until)) if until <= now => {
                if self.abandon(id, until, now).await? {
                    Ok(SendingClaim::Abandoned)
                } else {
                    // The earlier worker recorded its outcome meanwhile.
                    Ok(SendingClaim::Elsewhere(MessageState::Sending))
                }
            }
            (state, _) => Ok(SendingClaim::Elsewhere(state)),
        }
    }

    /// `sending` with the expired lease `until` → `unknown`; `false` when the lease changed.
    async fn abandon(
        &self,
        id: &MessageId,
        until: UnixMillis,
        now: UnixMillis,
    ) -> Result<bool, MessageStoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .update_expression("SET #state = :unknown, updated_at = :now REMOVE sending_until")
            .condition_expression("#state = :sending AND sending_until = :until")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":unknown", s(MessageState::Unknown.as_str()))
            .expression_attribute_values(":sending", s(MessageState::Sending.as_str()))
            .expression_attribute_values(":until", n(until.as_i64()))
            .expression_attribute_values(":now", n(now.as_i64()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_failure(&err) => Ok(false),
            Err(err) => Err(MessageStoreError::sdk("UpdateItem", err)),
        }
    }

    /// Every item of a partition, following pages (strongly consistent: a message just
    /// written is read back).
    async fn query_partition(&self, pk: String) -> Result<Vec<Item>, MessageStoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| MessageStoreError::sdk("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// The message's summary alone (one consistent GetItem), or `None`.
    pub async fn summary(
        &self,
        id: &MessageId,
    ) -> Result<Option<MessageRecord>, MessageStoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| MessageStoreError::sdk("GetItem", e))?;
        out.item.as_ref().map(record_from).transpose()
    }

    /// The message's summary and attempts (one Query on its partition), or `None`.
    pub async fn get(&self, id: &MessageId) -> Result<Option<StoredMessage>, MessageStoreError> {
        let items = self.query_partition(message_pk(id)).await?;
        let mut record = None;
        let mut requested_provider = None;
        let mut attempts = Vec::new();
        let mut events = Vec::new();
        let pk = message_pk(id);
        // Items come sorted by `sk`, so attempts and events are each in time order.
        for item in &items {
            match get_s(item, "sk") {
                Some(SUMMARY) => {
                    record = Some(record_from(item)?);
                    requested_provider = get_s(item, "requested_provider")
                        .and_then(|p| p.parse::<ProviderId>().ok());
                }
                Some(sk) if sk.starts_with(ATTEMPT_PREFIX) => {
                    attempts.push(attempt_from(id, item)?)
                }
                Some(sk) if sk.starts_with(crate::history::EVENT_PREFIX) => {
                    events.push(crate::history::history_entry(&pk, item).map_err(|e| {
                        MessageStoreError::Corrupt {
                            id: id.to_string(),
                            what: e.to_string(),
                        }
                    })?)
                }
                _ => {}
            }
        }
        Ok(record.map(|record| StoredMessage {
            record,
            attempts,
            requested_provider,
            events,
        }))
    }

    /// The message's content as accepted, or `None` when there is no such message.
    pub async fn load_content(
        &self,
        id: &MessageId,
    ) -> Result<Option<OutboundEmail>, MessageStoreError> {
        let items = self.query_partition(content_pk(id)).await?;
        let corrupt = |what: &str| MessageStoreError::Corrupt {
            id: id.to_string(),
            what: what.to_owned(),
        };
        let Some(head) = items.iter().find(|i| get_s(i, "sk") == Some(CONTENT)) else {
            return Ok(None);
        };
        let json = match (head.get("body"), get_n(head, "parts")) {
            (Some(AttributeValue::B(body)), _) => body.as_ref().to_vec(),
            (_, Some(parts)) => {
                let mut json = Vec::new();
                for i in 0..parts {
                    let sk = format!("{CONTENT}#{i:04}");
                    let part = items
                        .iter()
                        .find(|item| get_s(item, "sk") == Some(sk.as_str()))
                        .and_then(|item| match item.get("body") {
                            Some(AttributeValue::B(b)) => Some(b.as_ref()),
                            _ => None,
                        })
                        .ok_or_else(|| corrupt("content part"))?;
                    json.extend_from_slice(part);
                }
                json
            }
            _ => return Err(corrupt("content")),
        };
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| MessageStoreError::Content(e.to_string()))
    }

    /// Cancels a held (`scheduled` or `paused`) message of `environment`, taking it out of the
    /// release index, in one conditional update.
    pub async fn cancel(
        &self,
        id: &MessageId,
        environment: KeyEnvironment,
        now: UnixMillis,
    ) -> Result<Cancellation, MessageStoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .update_expression(
                "SET #state = :cancelled, updated_at = :now REMOVE release_queue, release_at",
            )
            .condition_expression(
                "attribute_exists(pk) AND environment = :env \
                 AND #state IN (:scheduled, :paused)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":cancelled", s(MessageState::Cancelled.as_str()))
            .expression_attribute_values(":scheduled", s(MessageState::Scheduled.as_str()))
            .expression_attribute_values(":paused", s(MessageState::Paused.as_str()))
            .expression_attribute_values(":env", s(environment.as_str()))
            .expression_attribute_values(":now", n(now.as_i64()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                Ok(Cancellation::Cancelled(record_from(&item)?))
            }
            Err(err) if is_conditional_failure(&err) => {
                let old = match err.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                    _ => None,
                };
                let Some(old) = old.filter(|i| i.contains_key("pk")) else {
                    return Ok(Cancellation::NotFound);
                };
                let old = record_from(&old)?;
                if !old.visible_to(environment) {
                    return Ok(Cancellation::NotFound);
                }
                Ok(Cancellation::NotCancellable(old.state))
            }
            Err(err) => Err(MessageStoreError::sdk("UpdateItem", err)),
        }
    }

    /// Ids of messages in `queue` due at `now` (`release_at ≤ now`), oldest first, at most
    /// `limit` (one Query on `by-release`).
    pub async fn due(
        &self,
        queue: ReleaseQueue,
        now: UnixMillis,
        limit: i32,
    ) -> Result<Vec<MessageId>, MessageStoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by-release")
            .key_condition_expression("release_queue = :queue AND release_at <= :now")
            .expression_attribute_values(":queue", s(queue.as_str()))
            .expression_attribute_values(":now", s(release_key(now)))
            .limit(limit)
            .send()
            .await
            .map_err(|e| MessageStoreError::sdk("Query", e))?;
        Ok(out
            .items()
            .iter()
            .filter_map(|i| get_s(i, "pk")?.strip_prefix("msg#"))
            .filter_map(|id| MessageId::parse(id).ok())
            .collect())
    }

    /// Releases a held message: `scheduled`/`paused` → `queued`, out of the release index.
    /// `false` when it is no longer held (cancelled, or released by another sweeper), in which
    /// case the caller must not send it.
    pub async fn mark_released(
        &self,
        id: &MessageId,
        now: UnixMillis,
    ) -> Result<bool, MessageStoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .update_expression(
                "SET #state = :queued, updated_at = :now REMOVE release_queue, release_at",
            )
            .condition_expression("#state IN (:scheduled, :paused)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":queued", s(MessageState::Queued.as_str()))
            .expression_attribute_values(":scheduled", s(MessageState::Scheduled.as_str()))
            .expression_attribute_values(":paused", s(MessageState::Paused.as_str()))
            .expression_attribute_values(":now", n(now.as_i64()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_failure(&err) => Ok(false),
            Err(err) => Err(MessageStoreError::sdk("UpdateItem", err)),
        }
    }

    /// Holds a scheduled message by the pause switch: `scheduled` → `paused`, moving it from the
    /// `scheduled` to the `paused#bulk` release queue with the same `release_at` (its
    /// `send_at`). `false` when it is no longer scheduled (cancelled or released meanwhile).
    pub async fn mark_paused(
        &self,
        id: &MessageId,
        now: UnixMillis,
    ) -> Result<bool, MessageStoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .update_expression("SET #state = :paused, release_queue = :queue, updated_at = :now")
            .condition_expression("#state = :scheduled")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":paused", s(MessageState::Paused.as_str()))
            .expression_attribute_values(":scheduled", s(MessageState::Scheduled.as_str()))
            .expression_attribute_values(":queue", s(ReleaseQueue::PausedBulk.as_str()))
            .expression_attribute_values(":now", n(now.as_i64()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_failure(&err) => Ok(false),
            Err(err) => Err(MessageStoreError::sdk("UpdateItem", err)),
        }
    }

    /// How many messages wait in `queue`, due or not (a `Select=COUNT` Query on `by-release`,
    /// following pages: it reads the index's keys only, about 1 MB per request).
    pub async fn count_held(&self, queue: ReleaseQueue) -> Result<u64, MessageStoreError> {
        let mut count = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("by-release")
                .key_condition_expression("release_queue = :queue")
                .expression_attribute_values(":queue", s(queue.as_str()))
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| MessageStoreError::sdk("Query", e))?;
            count += u64::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(count),
            }
        }
    }

    /// The message a provider's id belongs to (one Query on `by-provider-message-id`).
    pub async fn find_by_provider_message_id(
        &self,
        provider: ProviderId,
        provider_message_id: &str,
    ) -> Result<Option<MessageId>, MessageStoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("by-provider-message-id")
            .key_condition_expression("provider_message_key = :key")
            .expression_attribute_values(
                ":key",
                s(provider_message_key(provider, provider_message_id)),
            )
            .limit(1)
            .send()
            .await
            .map_err(|e| MessageStoreError::sdk("Query", e))?;
        Ok(out
            .items()
            .iter()
            .filter_map(|i| get_s(i, "pk")?.strip_prefix("msg#"))
            .find_map(|id| MessageId::parse(id).ok()))
    }
}

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
