//! `DynamoDbWebhookReceipts`: webhook receipts in the receipts table, and the Mailgun token
//! replay cache in the dedupe table.
//!
//! One item per delivery, keyed `<provider>#<dedupe key>`, written with a conditional put so a
//! redelivery finds the earlier receipt instead of making a second one. While a receipt is
//! `received` it carries `pending = <provider>` (the sparse `by-pending` index the sweeper reads)
//! and an enqueue lease, so two deliveries of the same batch never both enqueue it. Bodies larger
//! than an item can hold are written first as `<key>#part#NNNN` items and the receipt points to
//! them (`body_parts`).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, PutRequest, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    WriteRequest,
};
pub use mailgate_core::receipt::{
    ExistingReceipt, NewReceipt, RecordError, Recorded, ReplayGuard, StoredReceipt, receipt_key,
};
use mailgate_core::{ProviderId, ReceiptStatus, StoreError, StoreErrorKind};

use crate::dynamodb::ConditionalWrite;
use crate::sdk::store_error;

/// Bodies up to this size are stored inside the receipt item (DynamoDB items are at most 400 KB,
/// and the receipt's other attributes need room).
pub const INLINE_BODY_LIMIT: usize = 350 * 1024;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn read_status(item: &HashMap<String, AttributeValue>) -> Option<ReceiptStatus> {
    item.get("status")?.as_s().ok()?.parse().ok()
}

fn read_n(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

/// Webhook receipts on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbWebhookReceipts {
    receipts: crate::TableHandle,
    dedupe: crate::TableHandle,
}

impl DynamoDbWebhookReceipts {
    /// Receipts in `receipts_table`, Mailgun tokens in `dedupe_table`.
    pub fn new(client: Client, receipts_table: String, dedupe_table: String) -> Self {
        let receipts = crate::TableHandle::new(client, receipts_table);
        let dedupe = receipts.sibling(dedupe_table);
        Self::on(receipts, dedupe)
    }

    /// The same adapter on table handles of the function's DynamoDB foundation (one client).
    pub fn on(receipts: crate::TableHandle, dedupe: crate::TableHandle) -> Self {
        Self { receipts, dedupe }
    }

    /// Records a receipt unless one with the same key exists (then reports it). A Mailgun token
    /// is recorded in the same transaction; a token already used for another delivery fails
    /// with `Replayed` and nothing is written.
    pub async fn record(&self, receipt: &NewReceipt<'_>) -> Result<Recorded, RecordError> {
        let key = receipt_key(receipt.provider, receipt.dedupe_key);
        let inline = receipt.body.len() <= INLINE_BODY_LIMIT;
        if !inline {
            // A redelivery of a large body must not rewrite its parts (hundreds of KB of writes
            // per provider retry): one consistent read first. Two first deliveries racing here
            // both write identical parts, and the conditional put below picks one receipt.
            if let Some(item) = self.get(&key).await? {
                return Ok(Recorded::Duplicate(existing_from(&item)));
            }
            self.write_parts(&key, receipt.body, receipt.expires_at)
                .await?;
        }
        let item = receipt_item(&key, receipt, inline);
        match receipt.replay_guard {
            None => self.put_new(&key, item).await,
            Some(guard) => self.put_with_token(&key, item, guard).await,
        }
    }

    async fn put_new(
        &self,
        key: &str,
        item: HashMap<String, AttributeValue>,
    ) -> Result<Recorded, RecordError> {
        let result = self
            .receipts
            .client()
            .put_item()
            .table_name(self.receipts.name())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Recorded::New),
            Err(err) => {
                let old = err
                    .as_service_error()
                    .filter(|e| e.is_conditional_check_failed_exception())
                    .map(|e| match e {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => c.item().cloned(),
                        _ => None,
                    });
                match old {
                    Some(Some(item)) => Ok(Recorded::Duplicate(existing_from(&item))),
                    Some(None) => self.existing(key).await.map_err(RecordError::from),
                    None => Err(store_error("PutItem", err).into()),
                }
            }
        }
    }

    async fn put_with_token(
        &self,
        key: &str,
        item: HashMap<String, AttributeValue>,
        guard: ReplayGuard<'_>,
    ) -> Result<Recorded, RecordError> {
        let token_item = HashMap::from([
            ("pk".to_owned(), s(format!("mailgun-token#{}", guard.token))),
            ("receipt".to_owned(), s(key)),
            ("expires_at".to_owned(), n(guard.expires_at)),
        ]);
        let token_put = Put::builder()
            .table_name(self.dedupe.name())
            .set_item(Some(token_item))
            .condition_expression("attribute_not_exists(pk) OR receipt = :receipt")
            .expression_attribute_values(":receipt", s(key))
            .build()
            .map_err(|e| StoreError::new(StoreErrorKind::Other, "TransactWriteItems", e))?;
        let receipt_put = Put::builder()
            .table_name(self.receipts.name())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(|e| StoreError::new(StoreErrorKind::Other, "TransactWriteItems", e))?;
        let result = self
            .receipts
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(token_put).build())
            .transact_items(TransactWriteItem::builder().put(receipt_put).build())
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Recorded::New),
            Err(err) => err,
        };
        let reasons: Vec<Option<String>> = match err.as_service_error() {
            Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => c
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().map(str::to_owned))
                .collect(),
            _ => return Err(crate::sdk::transaction_error(err).into()),
        };
        let failed = |i: usize| {
            reasons
                .get(i)
                .and_then(|r| r.as_deref())
                .is_some_and(|c| c == "ConditionalCheckFailed")
        };
        if failed(0) {
            Err(RecordError::Replayed)
        } else if failed(1) {
            self.existing(key).await.map_err(RecordError::from)
        } else {
            Err(crate::sdk::transaction_error(err).into())
        }
    }

    async fn existing(&self, key: &str) -> Result<Recorded, StoreError> {
        let item = self.get(key).await?;
        // The item existed a moment ago; receipts are never deleted before their TTL.
        let item = item.unwrap_or_default();
        Ok(Recorded::Duplicate(existing_from(&item)))
    }

    async fn get(&self, key: &str) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .receipts
            .client()
            .get_item()
            .table_name(self.receipts.name())
            .key("pk", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item)
    }

    async fn write_parts(&self, key: &str, body: &[u8], expires_at: i64) -> Result<(), StoreError> {
        let requests: Vec<WriteRequest> = body
            .chunks(INLINE_BODY_LIMIT)
            .enumerate()
            .map(|(i, chunk)| {
                let item = HashMap::from([
                    ("pk".to_owned(), s(format!("{key}#part#{i:04}"))),
                    ("body".to_owned(), AttributeValue::B(Blob::new(chunk))),
                    ("expires_at".to_owned(), n(expires_at)),
                ]);
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|p| WriteRequest::builder().put_request(p).build())
                    .map_err(|e| StoreError::new(StoreErrorKind::Other, "BatchWriteItem", e))
            })
            .collect::<Result<_, _>>()?;
        // Parts are written one request at a time: each is up to 350 KB and a batch call is
        // limited to 16 MB, but small batches keep a throttled retry cheap.
        for request in requests {
            let mut pending = vec![request];
            for attempt in 0..5 {
                let out = self
                    .receipts
                    .client()
                    .batch_write_item()
                    .request_items(self.receipts.name(), pending.clone())
                    .send()
                    .await
                    .map_err(|e| store_error("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(self.receipts.name()))
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                tokio_sleep_ms(50 << attempt).await;
            }
            if !pending.is_empty() {
                // DynamoDB leaves items unprocessed when the table's throughput is exceeded.
                return Err(StoreError::new(
                    StoreErrorKind::Throttled,
                    "BatchWriteItem",
                    "body parts stayed unprocessed after 5 attempts",
                ));
            }
        }
        Ok(())
    }

    /// Takes the enqueue lease of a `received` receipt whose lease has lapsed. `false` when the
    /// receipt moved on or another request holds a live lease.
    pub async fn claim(
        &self,
        key: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError> {
        let result = self
            .receipts
            .client()
            .update_item()
            .table_name(self.receipts.name())
            .key("pk", s(key))
            .update_expression(
                "SET lease_until = :until, attempts = if_not_exists(attempts, :zero) + :one",
            )
            .condition_expression(
                "#status = :received AND (attribute_not_exists(lease_until) OR lease_until < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":received", s(ReceiptStatus::Received.as_str()))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":until", n(lease_until_ms))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .send()
            .await;
        result
            .condition_held()
            .map_err(|e| store_error("UpdateItem", e))
    }

    /// Moves a `received` receipt to `queued` and out of the sweeper's index. A receipt already
    /// past `received` is left as it is.
    pub async fn mark_queued(&self, key: &str, now_ms: i64) -> Result<(), StoreError> {
        let result = self
            .receipts
            .client()
            .update_item()
            .table_name(self.receipts.name())
            .key("pk", s(key))
            .update_expression(
                "SET #status = :queued, queued_at = :now REMOVE pending, lease_until",
            )
            .condition_expression("#status = :received")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":received", s(ReceiptStatus::Received.as_str()))
            .expression_attribute_values(":queued", s(ReceiptStatus::Queued.as_str()))
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await;
        match result.condition_held() {
            Ok(true) => Ok(()),
            Ok(false) => Ok(()),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }

    /// Keys of `provider`'s receipts still `received` that arrived before `before_ms`, oldest
    /// first, at most `limit`.
    pub async fn stale(
        &self,
        provider: ProviderId,
        before_ms: i64,
        limit: i32,
    ) -> Result<Vec<String>, StoreError> {
        let out = self
            .receipts
            .client()
            .query()
            .table_name(self.receipts.name())
            .index_name("by-pending")
            .key_condition_expression("pending = :provider AND received_at < :before")
            .expression_attribute_values(":provider", s(provider.as_str()))
            .expression_attribute_values(":before", n(before_ms))
            .limit(limit)
            .send()
            .await
            .map_err(|e| store_error("Query", e))?;
        Ok(out
            .items()
            .iter()
            .filter_map(|i| i.get("pk").and_then(|v| v.as_s().ok()).cloned())
            .collect())
    }

    /// Reads a receipt and reassembles its body.
    pub async fn load(&self, key: &str) -> Result<Option<StoredReceipt>, StoreError> {
        let Some(item) = self.get(key).await? else {
            return Ok(None);
        };
        let corrupt = |what: &str| {
            StoreError::new(
                StoreErrorKind::Corrupt,
                "GetItem",
                format!("receipt {key} has no readable {what}"),
            )
        };
        let provider: ProviderId = item
            .get("provider")
            .and_then(|v| v.as_s().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt("provider"))?;
        let status = read_status(&item).ok_or_else(|| corrupt("status"))?;
        let body = match (item.get("body"), read_n(&item, "body_parts")) {
            (Some(AttributeValue::B(b)), _) => b.as_ref().to_vec(),
            (_, Some(parts)) => {
                let mut body = Vec::new();
                for i in 0..parts {
                    let part = self
                        .get(&format!("{key}#part#{i:04}"))
                        .await?
                        .and_then(|p| match p.get("body") {
                            Some(AttributeValue::B(b)) => Some(b.as_ref().to_vec()),
                            _ => None,
                        })
                        .ok_or_else(|| corrupt("body part"))?;
                    body.extend_from_slice(&part);
                }
                body
            }
            _ => return Err(corrupt("body")),
        };
        Ok(Some(StoredReceipt {
            key: key.to_owned(),
            provider,
            status,
            body,
            content_type: item
                .get("content_type")
                .and_then(|v| v.as_s().ok())
                .cloned(),
            received_at_ms: read_n(&item, "received_at").unwrap_or_default(),
            attempts: read_n(&item, "attempts")
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or_default(),
        }))
    }

    /// Leaves a `received` receipt alone until `retry_at_ms` (its lease becomes the backoff).
    pub async fn retry_later(&self, key: &str, retry_at_ms: i64) -> Result<(), StoreError> {
        let result = self
            .receipts
            .client()
            .update_item()
            .table_name(self.receipts.name())
            .key("pk", s(key))
            .update_expression("SET lease_until = :until")
            .condition_expression("#status = :received")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":received", s(ReceiptStatus::Received.as_str()))
            .expression_attribute_values(":until", n(retry_at_ms))
            .send()
            .await;
        match result.condition_held() {
            Ok(true) => Ok(()),
            Ok(false) => Ok(()),
            Err(e) => Err(store_error("UpdateItem", e)),
        }
    }

    /// Gives up on a `received` receipt: `failed` with `reason` and `failed_at`, out of the
    /// `by-pending` index. `false` when it had moved on.
    pub async fn mark_failed(
        &self,
        key: &str,
        now_ms: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .receipts
            .client()
            .update_item()
            .table_name(self.receipts.name())
            .key("pk", s(key))
            .update_expression(
                "SET #status = :failed, #error = :reason, failed_at = :now REMOVE pending, lease_until",
            )
            .condition_expression("#status = :received")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":received", s(ReceiptStatus::Received.as_str()))
            .expression_attribute_values(":failed", s(ReceiptStatus::Failed.as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await;
        result
            .condition_held()
            .map_err(|e| store_error("UpdateItem", e))
    }
}

fn existing_from(item: &HashMap<String, AttributeValue>) -> ExistingReceipt {
    ExistingReceipt {
        // An unreadable status is treated as still `received`: re-enqueueing is safe (the
        // processor dedupes per event), dropping is not.
        status: read_status(item).unwrap_or(ReceiptStatus::Received),
        lease_until_ms: read_n(item, "lease_until"),
    }
}

fn receipt_item(key: &str, r: &NewReceipt<'_>, inline: bool) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("pk".to_owned(), s(key)),
        ("provider".to_owned(), s(r.provider.as_str())),
        ("dedupe_key".to_owned(), s(r.dedupe_key)),
        ("kind".to_owned(), s(r.kind.as_str())),
        ("status".to_owned(), s(r.status.as_str())),
        ("verification".to_owned(), s(r.verification)),
        ("event_count".to_owned(), n(r.event_count as i64)),
        ("received_at".to_owned(), n(r.received_at_ms)),
        ("body_bytes".to_owned(), n(r.body.len() as i64)),
        ("expires_at".to_owned(), n(r.expires_at)),
    ]);
    if inline {
        item.insert("body".to_owned(), AttributeValue::B(Blob::new(r.body)));
    } else {
        let parts = r.body.len().div_ceil(INLINE_BODY_LIMIT);
        item.insert("body_parts".to_owned(), n(parts as i64));
    }
    if let Some(ct) = r.content_type {
        item.insert("content_type".to_owned(), s(ct));
    }
    if let Some(error) = r.error {
        item.insert("error".to_owned(), s(error));
    }
    if r.status == ReceiptStatus::Received {
        item.insert("pending".to_owned(), s(r.provider.as_str()));
        item.insert("lease_until".to_owned(), n(r.lease_until_ms));
    }
    item
}

async fn tokio_sleep_ms(ms: u64) {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}
