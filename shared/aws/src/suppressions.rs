//! `DynamoDbSuppressionList`: suppressed addresses in the suppressions table.
//!
//! One item per suppressed address: `pk` = the address's
//! [`suppression_key`](mailgate_core::suppression_key) (the whole address lower-cased), `sk` =
//! `SUPPRESSION`, with `address`, `reason`, `created_at` (RFC 3339 in UTC with exactly three
//! fractional digits, so it sorts as text in the `by-reason` index), optional `expires_at` (Unix
//! seconds, the table's TTL attribute) and optional `note`. Other items of the same partition
//! (`SOFT#<event key>` soft-bounce tallies) carry no `reason`, so the index holds suppressions
//! only. An entry scoped to a subscription topic (an unsubscribe from mail on that topic) is the
//! item `sk` = `SUPPRESSION#<topic>` with a `topic` attribute, beside the unscoped one.
//!
//! The send path checks its recipients with one consistent `BatchGetItem` per 100 addresses;
//! `GET /v1/suppressions?reason=` queries `by-reason` (newest first) and the unfiltered listing
//! scans. Entries past their expiry are not suppressions, whether or not TTL has deleted them
//! yet: every read leaves them out.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailgate_core::{
    EmailAddress, StoreErrorKind, Suppression, SuppressionOrigin, SuppressionReason, UnixMillis,
    suppression_key,
};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use mailgate_core::StoreError;

use crate::dynamodb::ConditionalWrite;

/// The sort key of a suppression item.
pub const SUPPRESSION_SK: &str = "SUPPRESSION";
/// The sort key of an address's soft-bounce count, beside its suppression.
pub const SOFT_BOUNCES_SK: &str = "SOFT_BOUNCES";
/// The index that lists suppressions by reason, newest first.
pub const BY_REASON_INDEX: &str = "by-reason";
/// The most keys one `BatchGetItem` may ask for.
pub const BATCH_GET_LIMIT: usize = 100;
/// The largest page [`DynamoDbSuppressionList::list`] returns.
pub const MAX_PAGE: usize = 1_000;
/// How many times unprocessed keys of a batch get are asked for again.
const UNPROCESSED_RETRIES: u32 = 5;
/// The most round trips one listing page makes while filling itself.
const LIST_ROUND_TRIPS: usize = 5;
/// The longest cursor accepted.
const MAX_CURSOR_LEN: usize = 4_096;

/// Why a suppression-list operation did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SuppressionStoreError {
    /// The table does not exist (wrong name, or the stack is not provisioned).
    #[error("the suppressions table {0:?} does not exist")]
    TableNotFound(String),
    /// The listing cursor was not made by this listing.
    #[error("the cursor is not one this listing returned")]
    InvalidCursor,
    /// A stored item cannot be read as a suppression.
    #[error("the stored suppression item {pk} cannot be read: {reason}")]
    Corrupt {
        /// The item's key.
        pk: String,
        /// What is wrong with it.
        reason: String,
    },
    /// DynamoDB could not be reached or refused the call.
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

/// One page of a listing (the core's type: the listing port returns it).
pub use mailgate_core::ports::SuppressionPage;

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// The sort key of an entry: `SUPPRESSION`, or `SUPPRESSION#<topic>` for a topic-scoped one
/// (topics are `[a-z0-9_-]`, so the separator is unambiguous).
fn sk_of(topic: Option<&str>) -> String {
    match topic {
        None => SUPPRESSION_SK.to_owned(),
        Some(topic) => format!("{SUPPRESSION_SK}#{topic}"),
    }
}

fn key_in(address: &EmailAddress, topic: Option<&str>) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(suppression_key(address))),
        ("sk".to_owned(), s(sk_of(topic))),
    ])
}

/// A transaction's check that `address` holds no active entry (scoped to `topic`, when given):
/// the item is absent, or expired at `now` (`expires_at` is whole seconds: an entry suppresses
/// while `now < expires_at`), or - when `unsubscribe_passes` (transactional mail) - an
/// unsubscribe. The same judgement as [`DynamoDbSuppressionList::check_in`] followed by the
/// send path's screening, made by DynamoDB inside the write that records the message.
pub(crate) fn not_suppressed_check(
    table: &str,
    address: &EmailAddress,
    topic: Option<&str>,
    unsubscribe_passes: bool,
    now: OffsetDateTime,
) -> Result<aws_sdk_dynamodb::types::ConditionCheck, aws_sdk_dynamodb::error::BuildError> {
    let mut condition = "attribute_not_exists(pk) OR expires_at <= :now".to_owned();
    let mut check = aws_sdk_dynamodb::types::ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(key_in(address, topic)))
        .expression_attribute_values(":now", AttributeValue::N(now.unix_timestamp().to_string()));
    if unsubscribe_passes {
        condition.push_str(" OR #reason = :unsubscribe");
        check = check
            .expression_attribute_names("#reason", "reason")
            .expression_attribute_values(
                ":unsubscribe",
                s(SuppressionReason::Unsubscribe.as_str()),
            );
    }
    check.condition_expression(condition).build()
}

/// `created_at` as stored: UTC, three fractional digits, so text order is time order.
fn sortable_time(at: OffsetDateTime) -> Result<String, SuppressionStoreError> {
    at.to_offset(UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .map_err(|e| SuppressionStoreError::Corrupt {
            pk: String::new(),
            reason: format!("timestamp {at} cannot be stored: {e}"),
        })
}

fn item_of(entry: &Suppression) -> Result<Item, SuppressionStoreError> {
    let mut item = key_in(&entry.address, entry.topic.as_deref());
    item.insert("address".to_owned(), s(entry.address.as_str()));
    if let Some(topic) = &entry.topic {
        item.insert("topic".to_owned(), s(topic));
    }
    item.insert("reason".to_owned(), s(entry.reason.as_str()));
    item.insert("created_at".to_owned(), s(sortable_time(entry.created_at)?));
    if let Some(expires_at) = entry.expires_at {
        item.insert(
            "expires_at".to_owned(),
            AttributeValue::N(expires_at.unix_timestamp().to_string()),
        );
    }
    if let Some(note) = &entry.note {
        item.insert("note".to_owned(), s(note));
    }
    item.insert("origin".to_owned(), s(entry.origin.as_str()));
    Ok(item)
}

fn suppression_of(item: &Item) -> Result<Suppression, SuppressionStoreError> {
    let pk = item
        .get("pk")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let corrupt = |reason: String| SuppressionStoreError::Corrupt {
        pk: pk.clone(),
        reason,
    };
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| corrupt(format!("{name} is missing or not a string")))
    };
    let address = EmailAddress::parse(text("address")?).map_err(|e| corrupt(e.to_string()))?;
    let reason = text("reason")?
        .parse::<SuppressionReason>()
        .map_err(|e| corrupt(e.to_string()))?;
    let created_at = OffsetDateTime::parse(text("created_at")?, &Rfc3339)
        .map_err(|e| corrupt(format!("created_at: {e}")))?;
    let expires_at = match item.get("expires_at") {
        None => None,
        Some(value) => {
            let seconds = value
                .as_n()
                .ok()
                .and_then(|n| n.parse::<i64>().ok())
                .ok_or_else(|| corrupt("expires_at is not a whole number".to_owned()))?;
            Some(
                OffsetDateTime::from_unix_timestamp(seconds)
                    .map_err(|e| corrupt(format!("expires_at: {e}")))?,
            )
        }
    };
    let note = match item.get("note") {
        None => None,
        Some(_) => Some(text("note")?.clone()),
    };
    // Entries from before `origin` was stored: those with an event's reason count as
    // event-written (the safe reading: only a live key lifts them).
    let origin = match item
        .get("origin")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
    {
        Some("event") => SuppressionOrigin::Event,
        Some("api") => SuppressionOrigin::Api,
        Some(other) => return Err(corrupt(format!("unknown origin {other:?}"))),
        None if reason == SuppressionReason::Manual => SuppressionOrigin::Api,
        None => SuppressionOrigin::Event,
    };
    Ok(Suppression {
        address,
        reason,
        created_at,
        expires_at,
        note,
        origin,
        topic: item
            .get("topic")
            .and_then(|v| v.as_s().ok())
            .map(String::to_owned),
    })
}

/// The attributes a listing cursor holds: the table's keys, plus the index's on a query.
fn cursor_attributes(reason: Option<SuppressionReason>) -> &'static [&'static str] {
    match reason {
        Some(_) => &["created_at", "pk", "reason", "sk"],
        None => &["pk", "sk"],
    }
}

/// The opaque cursor for `LastEvaluatedKey`: URL-safe base64 of a JSON object of strings.
fn encode_cursor(key: &Item) -> Option<String> {
    let object: serde_json::Map<String, serde_json::Value> = key
        .iter()
        .map(|(k, v)| Some((k.clone(), serde_json::Value::String(v.as_s().ok()?.clone()))))
        .collect::<Option<_>>()?;
    let json = serde_json::to_vec(&object).ok()?;
    Some(URL_SAFE_NO_PAD.encode(json))
}

/// The `ExclusiveStartKey` of a cursor, checked to be one the same listing made.
fn decode_cursor(
    cursor: &str,
    reason: Option<SuppressionReason>,
) -> Result<Item, SuppressionStoreError> {
    if cursor.len() > MAX_CURSOR_LEN {
        return Err(SuppressionStoreError::InvalidCursor);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| SuppressionStoreError::InvalidCursor)?;
    let object: HashMap<String, String> =
        serde_json::from_slice(&bytes).map_err(|_| SuppressionStoreError::InvalidCursor)?;
    let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
    names.sort_unstable();
    let same_reason = match reason {
        Some(reason) => object.get("reason").map(String::as_str) == Some(reason.as_str()),
        None => true,
    };
    if names != cursor_attributes(reason)
        || !same_reason
        || !object
            .get("sk")
            .is_some_and(|sk| sk.starts_with(SUPPRESSION_SK))
    {
        return Err(SuppressionStoreError::InvalidCursor);
    }
    Ok(object.into_iter().map(|(k, v)| (k, s(v))).collect())
}

/// The suppression list on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbSuppressionList {
    table: crate::dynamodb::TableHandle,
}

impl DynamoDbSuppressionList {
    /// Suppressions in `table` (the `SUPPRESSIONS_TABLE`).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self::on(crate::TableHandle::new(client, table))
    }

    /// The same adapter on a table handle of the function's DynamoDB foundation.
    pub fn on(table: crate::TableHandle) -> Self {
        Self { table }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        self.table.name()
    }

    /// Classifies an SDK error: a missing table is named, anything else is `Unavailable`.
    fn failed<E>(
        &self,
        operation: &'static str,
        err: SdkError<E, HttpResponse>,
    ) -> SuppressionStoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match crate::sdk::unless_table_missing(operation, err) {
            Some(e) => e.into(),
            None => SuppressionStoreError::TableNotFound(self.table.name().to_owned()),
        }
    }

    /// Stores `entry`, replacing any suppression of the same address (upsert).
    pub async fn put(&self, entry: &Suppression) -> Result<(), SuppressionStoreError> {
        self.table
            .client()
            .put_item()
            .table_name(self.table.name())
            .set_item(Some(item_of(entry)?))
            .send()
            .await
            .map_err(|e| self.failed("PutItem", e))?;
        Ok(())
    }

    /// Stores `entry` unless the address already has an active suppression (which is kept, with
    /// its original reason and time), marked event-written. Returns whether it was stored. Used by
    /// the event processor,
    /// which must never overwrite an operator's entry or restart an existing one.
    pub async fn put_unless_active(
        &self,
        entry: &Suppression,
        now: OffsetDateTime,
    ) -> Result<bool, SuppressionStoreError> {
        // Only delivery events suppress this way: the entry is stored as event-written.
        let entry = Suppression {
            origin: SuppressionOrigin::Event,
            ..entry.clone()
        };
        let result = self
            .table
            .client()
            .put_item()
            .table_name(self.table.name())
            .set_item(Some(item_of(&entry)?))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(
                ":now",
                AttributeValue::N(now.unix_timestamp().to_string()),
            )
            .send()
            .await;
        result
            .condition_held()
            .map_err(|e| self.failed("PutItem", e))
    }

    /// Deletes the entry of `address` if a delivery event wrote it for `reason` (a conditional
    /// delete, so an entry the API wrote, or one for another reason, stays); whether one was
    /// deleted.
    pub async fn lift(
        &self,
        address: &EmailAddress,
        reason: SuppressionReason,
        topic: Option<&str>,
    ) -> Result<bool, SuppressionStoreError> {
        let result = self
            .table
            .client()
            .delete_item()
            .table_name(self.table.name())
            .set_key(Some(key_in(address, topic)))
            .condition_expression("reason = :reason AND origin = :event")
            .expression_attribute_values(":reason", s(reason.as_str()))
            .expression_attribute_values(":event", s(SuppressionOrigin::Event.as_str()))
            .send()
            .await;
        result
            .condition_held()
            .map_err(|e| self.failed("DeleteItem", e))
    }

    /// Counts one soft bounce of `address`, once per distinct event (`event_digest`), and returns
    /// the times of the soft bounces on record within `window_ms` of `now`. The set of
    /// `<time>#<digest>` entries lives beside the suppression (`sk` `SOFT_BOUNCES`); adding an
    /// entry twice changes nothing, so a redelivered event is never counted twice. Entries older
    /// than the window are removed as they are seen, and the item expires a window after the last
    /// bounce.
    pub async fn count_soft_bounce(
        &self,
        address: &EmailAddress,
        event_digest: &str,
        at: UnixMillis,
        window_ms: i64,
        now: UnixMillis,
    ) -> Result<Vec<UnixMillis>, SuppressionStoreError> {
        let key = HashMap::from([
            ("pk".to_owned(), s(suppression_key(address))),
            ("sk".to_owned(), s(SOFT_BOUNCES_SK)),
        ]);
        let entry = format!("{:015}#{event_digest}", at.as_i64().max(0));
        let out = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .set_key(Some(key.clone()))
            .update_expression("ADD bounces :entry SET expires_at = :expires")
            .expression_attribute_values(":entry", AttributeValue::Ss(vec![entry]))
            .expression_attribute_values(
                ":expires",
                AttributeValue::N(((now.as_i64() + window_ms) / 1000).to_string()),
            )
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| self.failed("UpdateItem", e))?;
        let since = now.as_i64() - window_ms;
        let mut recent = Vec::new();
        let mut stale = Vec::new();
        for entry in out
            .attributes
            .as_ref()
            .and_then(|a| a.get("bounces"))
            .and_then(|v| v.as_ss().ok())
            .into_iter()
            .flatten()
        {
            match entry.split('#').next().and_then(|t| t.parse::<i64>().ok()) {
                Some(t) if t > since => recent.push(UnixMillis(t)),
                _ => stale.push(entry.clone()),
            }
        }
        if !stale.is_empty() {
            self.table
                .client()
                .update_item()
                .table_name(self.table.name())
                .set_key(Some(key))
                .update_expression("DELETE bounces :stale")
                .expression_attribute_values(":stale", AttributeValue::Ss(stale))
                .send()
                .await
                .map_err(|e| self.failed("UpdateItem", e))?;
        }
        recent.sort();
        Ok(recent)
    }

    /// The stored entry for `address`, if any, lapsed or not (check
    /// [`Suppression::is_active_at`]). A strongly consistent read.
    pub async fn get(
        &self,
        address: &EmailAddress,
    ) -> Result<Option<Suppression>, SuppressionStoreError> {
        self.get_in(address, None).await
    }

    /// The entry for `address` scoped to `topic` (`None`: the unscoped one), as [`Self::get`].
    pub async fn get_in(
        &self,
        address: &EmailAddress,
        topic: Option<&str>,
    ) -> Result<Option<Suppression>, SuppressionStoreError> {
        let output = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .set_key(Some(key_in(address, topic)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.failed("GetItem", e))?;
        output.item.as_ref().map(suppression_of).transpose()
    }

    /// Every entry of `address` (the unscoped one and those per topic), lapsed or not: one
    /// Query on its partition (the soft-bounce tally beside them is left out).
    pub async fn entries_of(
        &self,
        address: &EmailAddress,
    ) -> Result<Vec<Suppression>, SuppressionStoreError> {
        let output = self
            .table
            .client()
            .query()
            .table_name(self.table.name())
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(suppression_key(address)))
            .expression_attribute_values(":prefix", s(SUPPRESSION_SK))
            .send()
            .await
            .map_err(|e| self.failed("Query", e))?;
        output.items().iter().map(suppression_of).collect()
    }

    /// Deletes the entry for `address`; returns what was stored (lapsed or not), if anything.
    pub async fn delete(
        &self,
        address: &EmailAddress,
    ) -> Result<Option<Suppression>, SuppressionStoreError> {
        self.delete_in(address, None).await
    }

    /// Deletes the entry for `address` scoped to `topic` (`None`: the unscoped one).
    pub async fn delete_in(
        &self,
        address: &EmailAddress,
        topic: Option<&str>,
    ) -> Result<Option<Suppression>, SuppressionStoreError> {
        let output = self
            .table
            .client()
            .delete_item()
            .table_name(self.table.name())
            .set_key(Some(key_in(address, topic)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.failed("DeleteItem", e))?;
        match output.attributes {
            Some(item) if !item.is_empty() => suppression_of(&item).map(Some),
            _ => Ok(None),
        }
    }

    /// The addresses among `addresses` that are suppressed at `now`, keyed by the address as
    /// given, with their entries. One consistent `BatchGetItem` per 100 distinct addresses;
    /// unprocessed keys are asked for again a few times with a short backoff.
    pub async fn check(
        &self,
        addresses: &[EmailAddress],
        now: OffsetDateTime,
    ) -> Result<HashMap<EmailAddress, Suppression>, SuppressionStoreError> {
        self.check_in(addresses, None, now).await
    }

    /// As [`Self::check`], for the entries scoped to `topic` (`None`: the unscoped ones).
    pub async fn check_in(
        &self,
        addresses: &[EmailAddress],
        topic: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<HashMap<EmailAddress, Suppression>, SuppressionStoreError> {
        let mut keys: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        for address in addresses {
            let key = suppression_key(address);
            if seen.insert(key.clone()) {
                keys.push(key);
            }
        }
        let mut found: HashMap<String, Suppression> = HashMap::new();
        for chunk in keys.chunks(BATCH_GET_LIMIT) {
            for entry in self.batch_get(chunk, &sk_of(topic)).await? {
                if entry.is_active_at(now) {
                    found.insert(entry.key(), entry);
                }
            }
        }
        Ok(addresses
            .iter()
            .filter_map(|a| Some((a.clone(), found.get(&suppression_key(a))?.clone())))
            .collect())
    }

    /// The stored entries for up to 100 keys.
    async fn batch_get(
        &self,
        keys: &[String],
        sk: &str,
    ) -> Result<Vec<Suppression>, SuppressionStoreError> {
        let request = |keys: Vec<Item>| {
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| {
                    // A request we cannot build is a bug: retrying cannot fix it.
                    SuppressionStoreError::Unavailable(StoreError::new(
                        StoreErrorKind::Other,
                        "BatchGetItem",
                        e,
                    ))
                })
        };
        let mut pending = request(
            keys.iter()
                .map(|k| HashMap::from([("pk".to_owned(), s(k)), ("sk".to_owned(), s(sk))]))
                .collect(),
        )?;
        let mut entries = Vec::new();
        let mut attempt = 0;
        loop {
            let output = self
                .table
                .client()
                .batch_get_item()
                .request_items(self.table.name(), pending)
                .send()
                .await
                .map_err(|e| self.failed("BatchGetItem", e))?;
            if let Some(items) = output
                .responses
                .as_ref()
                .and_then(|r| r.get(self.table.name()))
            {
                for item in items {
                    entries.push(suppression_of(item)?);
                }
            }
            let unprocessed = output
                .unprocessed_keys
                .and_then(|mut u| u.remove(self.table.name()))
                .filter(|k| !k.keys().is_empty());
            let Some(unprocessed) = unprocessed else {
                return Ok(entries);
            };
            attempt += 1;
            if attempt > UNPROCESSED_RETRIES {
                // Unprocessed keys are DynamoDB throttling the read.
                return Err(StoreError::new(
                    StoreErrorKind::Throttled,
                    "BatchGetItem",
                    format!(
                        "{} keys still unprocessed after {UNPROCESSED_RETRIES} retries",
                        unprocessed.keys().len()
                    ),
                )
                .into());
            }
            // Unprocessed keys mean throttling: back off before asking again.
            tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
            pending = unprocessed;
        }
    }

    /// One page of the active suppressions, newest first when filtered by `reason` (through
    /// `by-reason`), in table order otherwise (a Scan). `cursor` is the `next_cursor` of the
    /// previous page of the same listing; `limit` is clamped to 1..=1000. A page may hold fewer
    /// than `limit` entries and still have a next cursor (expired entries are skipped).
    pub async fn list(
        &self,
        reason: Option<SuppressionReason>,
        cursor: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<SuppressionPage, SuppressionStoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut start = cursor.map(|c| decode_cursor(c, reason)).transpose()?;
        let now_s = AttributeValue::N(now.unix_timestamp().to_string());
        let mut items = Vec::new();
        for _ in 0..LIST_ROUND_TRIPS {
            let want = i32::try_from(limit - items.len()).unwrap_or(i32::MAX);
            let (page, last) = match reason {
                Some(reason) => {
                    let output = self
                        .table
                        .client()
                        .query()
                        .table_name(self.table.name())
                        .index_name(BY_REASON_INDEX)
                        .key_condition_expression("reason = :reason")
                        .filter_expression("attribute_not_exists(expires_at) OR expires_at > :now")
                        .expression_attribute_values(":reason", s(reason.as_str()))
                        .expression_attribute_values(":now", now_s.clone())
                        .scan_index_forward(false)
                        .limit(want)
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .map_err(|e| self.failed("Query", e))?;
                    (output.items, output.last_evaluated_key)
                }
                None => {
                    let output = self
                        .table
                        .client()
                        .scan()
                        .table_name(self.table.name())
                        .filter_expression(
                            "begins_with(sk, :sk) AND (attribute_not_exists(expires_at) OR expires_at > :now)",
                        )
                        .expression_attribute_values(":sk", s(SUPPRESSION_SK))
                        .expression_attribute_values(":now", now_s.clone())
                        .limit(want)
                        .set_exclusive_start_key(start.take())
                        .send()
                        .await
                        .map_err(|e| self.failed("Scan", e))?;
                    (output.items, output.last_evaluated_key)
                }
            };
            for item in page.unwrap_or_default() {
                let entry = suppression_of(&item)?;
                if entry.is_active_at(now) {
                    items.push(entry);
                }
            }
            start = last.filter(|k| !k.is_empty());
            if start.is_none() || items.len() >= limit {
                break;
            }
        }
        Ok(SuppressionPage {
            items,
            next_cursor: start.as_ref().and_then(encode_cursor),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn entry() -> Suppression {
        Suppression::new(
            &EmailAddress::parse("Jane@Example.com").unwrap(),
            SuppressionReason::Complaint,
            datetime!(2026-03-01 12:00:00.5 UTC),
        )
        .expiring_at(datetime!(2026-04-01 00:00:00 UTC))
        .unwrap()
        .with_note("asked by support")
        .unwrap()
    }

    #[test]
    fn items_round_trip_with_a_sortable_creation_time() {
        let entry = entry();
        let item = item_of(&entry).unwrap();
        assert_eq!(item["pk"].as_s().unwrap(), "jane@example.com");
        assert_eq!(item["sk"].as_s().unwrap(), "SUPPRESSION");
        assert_eq!(item["reason"].as_s().unwrap(), "complaint");
        assert_eq!(
            item["created_at"].as_s().unwrap(),
            "2026-03-01T12:00:00.500Z"
        );
        assert_eq!(item["expires_at"].as_n().unwrap(), "1775001600");
        assert_eq!(suppression_of(&item).unwrap(), entry);
    }

    #[test]
    fn cursors_round_trip_and_belong_to_their_listing() {
        let key: Item = HashMap::from([
            ("pk".to_owned(), s("a@example.com")),
            ("sk".to_owned(), s(SUPPRESSION_SK)),
            ("reason".to_owned(), s("manual")),
            ("created_at".to_owned(), s("2026-03-01T12:00:00.500Z")),
        ]);
        let cursor = encode_cursor(&key).unwrap();
        assert_eq!(
            decode_cursor(&cursor, Some(SuppressionReason::Manual)).unwrap(),
            key
        );
        for (cursor, reason) in [
            (cursor.as_str(), Some(SuppressionReason::Complaint)),
            (cursor.as_str(), None),
            ("not base64!", None),
            ("e30", None),
        ] {
            assert!(
                matches!(
                    decode_cursor(cursor, reason),
                    Err(SuppressionStoreError::InvalidCursor)
                ),
                "{cursor} {reason:?}"
            );
        }
    }
}
