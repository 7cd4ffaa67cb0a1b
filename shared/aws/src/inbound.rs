//! Inbound email on AWS: raw messages and attachments in S3 ([`S3InboundObjects`], downloads
//! through presigned GET links), and the records in the inbound table
//! ([`DynamoDbInboundRecords`]).
//!
//! Item layout of the inbound table (`pk` only):
//!
//! | item        | `pk`                   | attributes                                                      |
//! |-------------|------------------------|-----------------------------------------------------------------|
//! | record      | `inb_…`                | `record` (JSON), `status`, `received_at`, `feed`, `recipient_key`, `thread`?, `expires_at` |
//! | dedupe key  | `inbound-source:<h>` / `inbound-message-id:<h>` | `inbound_id`, `expires_at`             |
//!
//! A record and its dedupe keys are written in one transaction, each conditional on its key
//! being new, so a redelivery (same source id) or the same message through another source (same
//! `Message-ID` and recipient) is recorded once. Everything expires with the raw message
//! (`INBOUND_RETENTION_DAYS`).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use mailgate_core::inbound::{InboundCursor, InboundListing, InboundPage, InboundQuery};
use mailgate_core::ports::{
    BoxFuture, InboundDownloads, InboundObjects, InboundRecorded, InboundRecords,
};
use mailgate_core::{InboundId, InboundMessage, StoreError, StoreErrorKind, UnixMillis};

use crate::sdk::store_error;

/// The `feed` attribute of every record: the partition of the `by-received` index that lists
/// all received mail newest first.
pub const INBOUND_FEED: &str = "inbound";

/// Raw messages and attachments in the stack's inbound bucket.
#[derive(Debug, Clone)]
pub struct S3InboundObjects {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3InboundObjects {
    /// Objects in `bucket` through `client`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    /// An S3 client for `sdk`. Path-style addressing when an endpoint override is set (the local
    /// emulator on a loopback address has no per-bucket host names).
    pub fn client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(sdk.endpoint_url().is_some())
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

impl InboundObjects for S3InboundObjects {
    fn put<'a>(
        &'a self,
        key: &'a str,
        content_type: &'a str,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(bytes.to_vec()))
                .send()
                .await
                .map_err(|e| store_error("PutObject", e))?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        Box::pin(async move {
            let out = match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                    return Ok(None);
                }
                Err(e) => return Err(store_error("GetObject", e)),
            };
            let bytes = out
                .body
                .collect()
                .await
                .map_err(|e| StoreError::new(StoreErrorKind::Transient, "GetObject", e))?;
            Ok(Some(bytes.into_bytes().to_vec()))
        })
    }
}

impl InboundDownloads for S3InboundObjects {
    fn download_link<'a>(
        &'a self,
        key: &'a str,
        valid_for: Duration,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        Box::pin(async move {
            let presigning = PresigningConfig::expires_in(valid_for)
                .map_err(|e| StoreError::new(StoreErrorKind::Other, "PresignGetObject", e))?;
            let request = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .presigned(presigning)
                .await
                .map_err(|e| store_error("PresignGetObject", e))?;
            Ok(request.uri().to_owned())
        })
    }
}

/// Records of received messages in the inbound table.
#[derive(Debug, Clone)]
pub struct DynamoDbInboundRecords {
    table: crate::dynamodb::TableHandle,
    retention_secs: i64,
}

impl DynamoDbInboundRecords {
    /// Records in `table`, expiring `retention_secs` after they were received.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        retention_secs: i64,
    ) -> Self {
        Self::on(crate::TableHandle::new(client, table), retention_secs)
    }

    /// The same adapter on a table handle of the function's DynamoDB foundation.
    pub fn on(table: crate::TableHandle, retention_secs: i64) -> Self {
        Self {
            table,
            retention_secs,
        }
    }

    fn expires_at(&self, message: &InboundMessage) -> i64 {
        message.received_at.unix_seconds_ceil() + self.retention_secs
    }

    fn item(
        &self,
        message: &InboundMessage,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        let json = serde_json::to_string(message)
            .map_err(|e| StoreError::new(StoreErrorKind::Other, "PutItem", e))?;
        let mut item = HashMap::from([
            ("pk".to_owned(), s(message.id.as_str())),
            ("record".to_owned(), s(&json)),
            ("status".to_owned(), s(message.status.as_str())),
            ("feed".to_owned(), s(INBOUND_FEED)),
            ("received_at".to_owned(), n(message.received_at.as_i64())),
            ("expires_at".to_owned(), n(self.expires_at(message))),
        ]);
        // An index key cannot be empty: a message kept without a known recipient (an
        // unreadable body) is listed in the feed only.
        if !message.recipient.trim().is_empty() {
            item.insert(
                "recipient_key".to_owned(),
                s(&message.recipient.trim().to_ascii_lowercase()),
            );
        }
        if let Some(thread) = &message.thread {
            item.insert("thread".to_owned(), s(thread.as_str()));
        }
        Ok(item)
    }

    async fn holder(&self, key: &str) -> Result<Option<InboundId>, StoreError> {
        let out = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .key("pk", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out
            .item
            .as_ref()
            .and_then(|i| i.get("inbound_id"))
            .and_then(|v| v.as_s().ok())
            .and_then(|v| InboundId::parse(v).ok()))
    }
}

/// The record in an item's `record` attribute.
fn record_of(item: &HashMap<String, AttributeValue>) -> Result<InboundMessage, StoreError> {
    let json = item
        .get("record")
        .and_then(|v| v.as_s().ok())
        .ok_or_else(|| corrupt("no record attribute"))?;
    serde_json::from_str(json).map_err(|e| corrupt(&e.to_string()))
}

/// The index, its partition attribute and value for a listing.
fn index_of(listing: &InboundListing) -> (&'static str, &'static str, String) {
    match listing {
        InboundListing::All => ("by-received", "feed", INBOUND_FEED.to_owned()),
        InboundListing::Recipient(to) => ("by-recipient", "recipient_key", to.clone()),
        InboundListing::Thread { thread, .. } => ("by-thread", "thread", thread.to_string()),
    }
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn corrupt(detail: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        "GetItem",
        format!("inbound record: {detail}"),
    )
}

fn put(
    table: &str,
    item: HashMap<String, AttributeValue>,
) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|e| StoreError::new(StoreErrorKind::Other, "TransactWriteItems", e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn cancellation_codes(err: &SdkError<TransactWriteItemsError>) -> Vec<String> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => c
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or("None").to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

impl InboundRecords for DynamoDbInboundRecords {
    fn record<'a>(
        &'a self,
        message: &'a InboundMessage,
        dedupe_keys: &'a [String],
    ) -> BoxFuture<'a, Result<InboundRecorded, StoreError>> {
        Box::pin(async move {
            let expires_at = n(self.expires_at(message));
            let mut items = vec![put(self.table.name(), self.item(message)?)?];
            for key in dedupe_keys {
                let item = HashMap::from([
                    ("pk".to_owned(), s(key)),
                    ("inbound_id".to_owned(), s(message.id.as_str())),
                    ("expires_at".to_owned(), expires_at.clone()),
                ]);
                items.push(put(self.table.name(), item)?);
            }
            let result = self
                .table
                .client()
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(InboundRecorded::New),
                Err(err) => err,
            };
            let reasons = cancellation_codes(&err);
            // Index 0 is the record itself; a taken dedupe key names the message holding it.
            let taken = reasons
                .iter()
                .enumerate()
                .skip(1)
                .find(|(_, c)| *c == "ConditionalCheckFailed")
                .map(|(i, _)| i - 1);
            match taken {
                Some(i) => match self.holder(&dedupe_keys[i]).await? {
                    Some(holder) => Ok(InboundRecorded::Duplicate(holder)),
                    None => Err(crate::sdk::transaction_error(err)),
                },
                None => Err(crate::sdk::transaction_error(err)),
            }
        })
    }

    fn update<'a>(&'a self, message: &'a InboundMessage) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.table
                .client()
                .put_item()
                .table_name(self.table.name())
                .set_item(Some(self.item(message)?))
                .condition_expression("attribute_exists(pk)")
                .send()
                .await
                .map_err(|e| store_error("PutItem", e))?;
            Ok(())
        })
    }

    fn get<'a>(
        &'a self,
        id: &'a InboundId,
    ) -> BoxFuture<'a, Result<Option<InboundMessage>, StoreError>> {
        Box::pin(async move {
            let out = self
                .table
                .client()
                .get_item()
                .table_name(self.table.name())
                .key("pk", s(id.as_str()))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| store_error("GetItem", e))?;
            out.item.as_ref().map(record_of).transpose()
        })
    }

    fn list<'a>(
        &'a self,
        query: &'a InboundQuery,
    ) -> BoxFuture<'a, Result<InboundPage, StoreError>> {
        Box::pin(async move {
            let (index, hash, value) = index_of(&query.listing);
            let mut request = self
                .table
                .client()
                .query()
                .table_name(self.table.name())
                .index_name(index)
                .scan_index_forward(false)
                .limit(i32::try_from(query.limit).unwrap_or(i32::MAX))
                .expression_attribute_names("#h", hash)
                .expression_attribute_values(":h", s(&value));
            // Both bounds are exclusive; BETWEEN is inclusive, hence the millisecond steps.
            let condition = match (query.after, query.before) {
                (None, None) => "#h = :h",
                (Some(after), None) => {
                    request = request.expression_attribute_values(":a", n(after.as_i64()));
                    "#h = :h AND received_at > :a"
                }
                (None, Some(before)) => {
                    request = request.expression_attribute_values(":b", n(before.as_i64()));
                    "#h = :h AND received_at < :b"
                }
                (Some(after), Some(before)) => {
                    request = request
                        .expression_attribute_values(":a", n(after.as_i64().saturating_add(1)))
                        .expression_attribute_values(":b", n(before.as_i64().saturating_sub(1)));
                    "#h = :h AND received_at BETWEEN :a AND :b"
                }
            };
            request = request.key_condition_expression(condition);
            if let InboundListing::Thread {
                recipient: Some(to),
                ..
            } = &query.listing
            {
                request = request
                    .filter_expression("recipient_key = :r")
                    .expression_attribute_values(":r", s(to));
            }
            if let Some(cursor) = &query.cursor {
                request = request.set_exclusive_start_key(Some(HashMap::from([
                    ("pk".to_owned(), s(cursor.id.as_str())),
                    ("received_at".to_owned(), n(cursor.received_at.as_i64())),
                    (hash.to_owned(), s(&value)),
                ])));
            }
            let out = request.send().await.map_err(|e| store_error("Query", e))?;
            let items = out
                .items()
                .iter()
                .map(record_of)
                .collect::<Result<Vec<_>, _>>()?;
            let next_cursor = out.last_evaluated_key().and_then(|key| {
                let id = key.get("pk")?.as_s().ok()?;
                let at = key.get("received_at")?.as_n().ok()?.parse().ok()?;
                Some(InboundCursor {
                    received_at: UnixMillis(at),
                    id: InboundId::parse(id).ok()?,
                })
            });
            Ok(InboundPage { items, next_cursor })
        })
    }
}
