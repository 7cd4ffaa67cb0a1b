//! `DynamoDbIdempotencyStore`: the claim protocol of `Idempotency-Key` over the idempotency
//! table, deciding with the core's [`decide`](mailgate_core::idempotency::decide).
//!
//! One item per scoped key (`pk` = `<api key id>#<Idempotency-Key>`): `state` (`in_progress` or
//! `completed`), `fingerprint`, `claim_id` (a random id of the request holding the claim),
//! `expires_at_ms` (when the lease or the retention lapses, Unix ms), `expires_at` (the same in
//! Unix seconds rounded up: the TTL attribute), `claimed_at_ms`, and once completed `response`
//! (the [`StoredResponse`] as JSON) and `completed_at_ms`.
//!
//! Claiming is ONE conditional `PutItem` in every case where the key is free: the condition
//! `attribute_not_exists(pk) OR expires_at_ms <= :now` admits both a new key and a lapsed record
//! (TTL deletes lazily), and DynamoDB evaluates it atomically, so of any number of concurrent
//! claims exactly one succeeds. When the condition fails the existing record comes back with the
//! failure (`ReturnValuesOnConditionCheckFailure = ALL_OLD`); only if it does not is a consistent
//! `GetItem` made. Completing and releasing are conditioned on the claim still being this
//! request's (`claim_id`) and in progress, so a request whose lease lapsed and was reclaimed
//! cannot overwrite its successor.
//!
//! The same claim and completion are also available as [`LinkedWrite`]s, to be written inside
//! another transaction (the send API claims in the message-create transaction and completes in
//! the transaction that records the provider call): [`claim_write`](DynamoDbIdempotencyStore::claim_write),
//! [`complete_write`](DynamoDbIdempotencyStore::complete_write), and
//! [`refused`](DynamoDbIdempotencyStore::refused) to tell what a refused linked claim ran into.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use mailgate_core::idempotency::decide;
use mailgate_core::{
    IdempotencyDecision, IdempotencyRecord, IdempotencyState, RequestFingerprint, StoredResponse,
    UnixMillis,
};
use time::OffsetDateTime;

use mailgate_core::StoreError;

use crate::dynamodb::ConditionalWrite;

/// A conditional write on another table, made in the same DynamoDB transaction as a message
/// write (see `DynamoDbMessages::create_linked` and `record_outcome`): either both happen or
/// neither. Opaque: built by the store that owns the item.
#[derive(Debug, Clone)]
pub struct LinkedWrite(pub(crate) TransactWriteItem);

/// How many times a claim is attempted when the record it collided with vanished meanwhile
/// (released, or deleted by TTL).
const CLAIM_ATTEMPTS: usize = 3;

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";

/// Why an idempotency operation did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IdempotencyStoreError {
    /// The table does not exist (wrong name, or the stack is not provisioned).
    #[error("the idempotency table {0:?} does not exist")]
    TableNotFound(String),
    /// The claim is no longer this request's: it lapsed and another request reclaimed the key,
    /// or it was completed or released already.
    #[error("the idempotency claim on {0:?} is no longer held by this request")]
    ClaimLost(String),
    /// The key kept changing under the claim (claimed and released repeatedly).
    #[error("the idempotency key {0:?} kept changing; try again")]
    Contended(String),
    /// A stored item cannot be read as a record.
    #[error("the stored idempotency item {pk} cannot be read: {reason}")]
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

pub use mailgate_core::idempotency::{Claim, ClaimOutcome};

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn record_of(item: &Item) -> Result<IdempotencyRecord, IdempotencyStoreError> {
    let pk = item
        .get("pk")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let corrupt = |reason: String| IdempotencyStoreError::Corrupt {
        pk: pk.clone(),
        reason,
    };
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| corrupt(format!("{name} is missing or not a string")))
    };
    let fingerprint =
        RequestFingerprint::parse(text("fingerprint")?).map_err(|e| corrupt(e.to_string()))?;
    let expires_at = item
        .get("expires_at_ms")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .map(UnixMillis)
        .ok_or_else(|| corrupt("expires_at_ms is missing or not a whole number".to_owned()))?;
    let state = match text("state")?.as_str() {
        IN_PROGRESS => IdempotencyState::InProgress { expires_at },
        COMPLETED => IdempotencyState::Completed {
            response: serde_json::from_str(text("response")?)
                .map_err(|e| corrupt(format!("response: {e}")))?,
            expires_at,
        },
        other => return Err(corrupt(format!("unknown state {other:?}"))),
    };
    Ok(IdempotencyRecord { fingerprint, state })
}

/// Idempotency records on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbIdempotencyStore {
    table: crate::dynamodb::TableHandle,
}

impl DynamoDbIdempotencyStore {
    /// Records in `table` (the `IDEMPOTENCY_TABLE`).
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
    ) -> IdempotencyStoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match crate::sdk::unless_table_missing(operation, err) {
            Some(e) => e.into(),
            None => IdempotencyStoreError::TableNotFound(self.table.name().to_owned()),
        }
    }

    /// The claim of `scoped_key` as a write inside another transaction, conditioned exactly as
    /// [`claim`](Self::claim)'s `PutItem` (the key is free or its record lapsed). With
    /// `completed` (the response and its retention) the record is stored completed at once: for
    /// a request whose answer is known before the transaction (nothing left to call).
    pub fn claim_write(
        &self,
        scoped_key: &str,
        fingerprint: &RequestFingerprint,
        now: OffsetDateTime,
        lease: Duration,
        completed: Option<(&StoredResponse, Duration)>,
    ) -> Result<(LinkedWrite, Claim), IdempotencyStoreError> {
        let now_ms = UnixMillis::from(now);
        let lease_ends = now_ms.saturating_add(lease);
        let claim_id = uuid::Uuid::new_v4().simple().to_string();
        let mut item: Item = HashMap::from([
            ("pk".to_owned(), s(scoped_key)),
            ("state".to_owned(), s(IN_PROGRESS)),
            ("fingerprint".to_owned(), s(fingerprint.as_str())),
            ("claim_id".to_owned(), s(&claim_id)),
            ("claimed_at_ms".to_owned(), n(now_ms.as_i64())),
            ("expires_at_ms".to_owned(), n(lease_ends.as_i64())),
            ("expires_at".to_owned(), n(lease_ends.unix_seconds_ceil())),
        ]);
        if let Some((response, retention)) = completed {
            let expires_at = now_ms.saturating_add(retention);
            item.insert("state".to_owned(), s(COMPLETED));
            item.insert(
                "response".to_owned(),
                s(self.response_json(scoped_key, response)?),
            );
            item.insert("completed_at_ms".to_owned(), n(now_ms.as_i64()));
            item.insert("expires_at_ms".to_owned(), n(expires_at.as_i64()));
            item.insert("expires_at".to_owned(), n(expires_at.unix_seconds_ceil()));
        }
        let put = Put::builder()
            .table_name(self.table.name())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR expires_at_ms <= :now")
            .expression_attribute_values(":now", n(now_ms.as_i64()))
            .build()
            .map_err(|e| self.unbuildable(scoped_key, &e))?;
        let claim = Claim {
            scoped_key: scoped_key.to_owned(),
            claim_id,
            fingerprint: fingerprint.clone(),
            lease_expires_at: lease_ends.to_datetime(),
            reclaimed: false,
        };
        Ok((
            LinkedWrite(TransactWriteItem::builder().put(put).build()),
            claim,
        ))
    }

    /// [`complete`](Self::complete) as a write inside another transaction, with the same
    /// condition (the claim is still this request's and in progress).
    pub fn complete_write(
        &self,
        claim: &Claim,
        response: &StoredResponse,
        now: OffsetDateTime,
        retention: Duration,
    ) -> Result<LinkedWrite, IdempotencyStoreError> {
        let now_ms = UnixMillis::from(now);
        let expires_at = now_ms.saturating_add(retention);
        let body = self.response_json(&claim.scoped_key, response)?;
        let update = Update::builder()
            .table_name(self.table.name())
            .key("pk", s(&claim.scoped_key))
            .update_expression(
                "SET #state = :completed, #response = :response, completed_at_ms = :now, \
                 expires_at_ms = :expires_ms, expires_at = :expires_s",
            )
            .condition_expression("claim_id = :claim AND #state = :in_progress")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#response", "response")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":response", s(body))
            .expression_attribute_values(":now", n(now_ms.as_i64()))
            .expression_attribute_values(":expires_ms", n(expires_at.as_i64()))
            .expression_attribute_values(":expires_s", n(expires_at.unix_seconds_ceil()))
            .expression_attribute_values(":claim", s(&claim.claim_id))
            .build()
            .map_err(|e| self.unbuildable(&claim.scoped_key, &e))?;
        Ok(LinkedWrite(
            TransactWriteItem::builder().update(update).build(),
        ))
    }

    /// What a refused [`claim_write`](Self::claim_write) ran into, from a consistent read of
    /// the record: `None` when the key is free (the record vanished or lapsed meanwhile, or the
    /// refusal was a transaction conflict with a claim that did not land): claim again.
    pub async fn refused(
        &self,
        scoped_key: &str,
        fingerprint: &RequestFingerprint,
        now: OffsetDateTime,
    ) -> Result<Option<ClaimOutcome>, IdempotencyStoreError> {
        let existing = self.get(scoped_key).await?;
        Ok(match decide(existing.as_ref(), fingerprint, now) {
            IdempotencyDecision::Proceed { .. } => None,
            IdempotencyDecision::Replay(response) => Some(ClaimOutcome::Replay(response)),
            IdempotencyDecision::Mismatch => Some(ClaimOutcome::Mismatch),
            IdempotencyDecision::InFlight { retry_after_secs } => {
                Some(ClaimOutcome::InFlight { retry_after_secs })
            }
        })
    }

    fn response_json(
        &self,
        scoped_key: &str,
        response: &StoredResponse,
    ) -> Result<String, IdempotencyStoreError> {
        serde_json::to_string(response).map_err(|e| IdempotencyStoreError::Corrupt {
            pk: scoped_key.to_owned(),
            reason: format!("the response cannot be stored: {e}"),
        })
    }

    fn unbuildable(&self, scoped_key: &str, e: &dyn std::fmt::Display) -> IdempotencyStoreError {
        IdempotencyStoreError::Corrupt {
            pk: scoped_key.to_owned(),
            reason: format!("the write cannot be built: {e}"),
        }
    }

    /// Claims `scoped_key` for a request with `fingerprint` at `now`, for `lease` (tie it to the
    /// function's remaining time). One conditional write when the key is free or lapsed; when it
    /// is not, what the stored record says: replay, mismatch or in flight.
    pub async fn claim(
        &self,
        scoped_key: &str,
        fingerprint: &RequestFingerprint,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<ClaimOutcome, IdempotencyStoreError> {
        let now_ms = UnixMillis::from(now);
        let lease_ends = now_ms.saturating_add(lease);
        for _ in 0..CLAIM_ATTEMPTS {
            let claim_id = uuid::Uuid::new_v4().simple().to_string();
            let item: Item = HashMap::from([
                ("pk".to_owned(), s(scoped_key)),
                ("state".to_owned(), s(IN_PROGRESS)),
                ("fingerprint".to_owned(), s(fingerprint.as_str())),
                ("claim_id".to_owned(), s(&claim_id)),
                ("claimed_at_ms".to_owned(), n(now_ms.as_i64())),
                ("expires_at_ms".to_owned(), n(lease_ends.as_i64())),
                ("expires_at".to_owned(), n(lease_ends.unix_seconds_ceil())),
            ]);
            let result = self
                .table
                .client()
                .put_item()
                .table_name(self.table.name())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk) OR expires_at_ms <= :now")
                .expression_attribute_values(":now", n(now_ms.as_i64()))
                .return_values(ReturnValue::AllOld)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let existing = match result {
                Ok(output) => {
                    return Ok(ClaimOutcome::Claimed(Claim {
                        scoped_key: scoped_key.to_owned(),
                        claim_id,
                        fingerprint: fingerprint.clone(),
                        lease_expires_at: lease_ends.to_datetime(),
                        reclaimed: output.attributes.is_some_and(|old| !old.is_empty()),
                    }));
                }
                Err(err) => match err.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                        match failed.item().filter(|item| !item.is_empty()) {
                            Some(item) => Some(record_of(item)?),
                            None => self.get(scoped_key).await?,
                        }
                    }
                    _ => return Err(self.failed("PutItem", err)),
                },
            };
            match decide(existing.as_ref(), fingerprint, now) {
                // The record vanished or lapsed since the write was refused: claim again.
                IdempotencyDecision::Proceed { .. } => continue,
                IdempotencyDecision::Replay(response) => return Ok(ClaimOutcome::Replay(response)),
                IdempotencyDecision::Mismatch => return Ok(ClaimOutcome::Mismatch),
                IdempotencyDecision::InFlight { retry_after_secs } => {
                    return Ok(ClaimOutcome::InFlight { retry_after_secs });
                }
            }
        }
        Err(IdempotencyStoreError::Contended(scoped_key.to_owned()))
    }

    /// Stores the response of the request holding `claim`, replayed for `retention` from `now`.
    /// Fails with `ClaimLost` if the claim is no longer this request's.
    pub async fn complete(
        &self,
        claim: &Claim,
        response: &StoredResponse,
        now: OffsetDateTime,
        retention: Duration,
    ) -> Result<(), IdempotencyStoreError> {
        let now_ms = UnixMillis::from(now);
        let expires_at = now_ms.saturating_add(retention);
        let body = serde_json::to_string(response).map_err(|e| IdempotencyStoreError::Corrupt {
            pk: claim.scoped_key.clone(),
            reason: format!("the response cannot be stored: {e}"),
        })?;
        let result = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .key("pk", s(&claim.scoped_key))
            .update_expression(
                "SET #state = :completed, #response = :response, completed_at_ms = :now, \
                 expires_at_ms = :expires_ms, expires_at = :expires_s",
            )
            .condition_expression("claim_id = :claim AND #state = :in_progress")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#response", "response")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":response", s(body))
            .expression_attribute_values(":now", n(now_ms.as_i64()))
            .expression_attribute_values(":expires_ms", n(expires_at.as_i64()))
            .expression_attribute_values(":expires_s", n(expires_at.unix_seconds_ceil()))
            .expression_attribute_values(":claim", s(&claim.claim_id))
            .send()
            .await;
        match result.condition_held() {
            Ok(true) => Ok(()),
            Ok(false) => Err(IdempotencyStoreError::ClaimLost(claim.scoped_key.clone())),
            Err(err) => Err(self.failed("UpdateItem", err)),
        }
    }

    /// Gives up `claim` after a failed attempt, so a retry with the same key proceeds at once.
    /// Returns whether it was still held (a lapsed and reclaimed claim is left alone).
    pub async fn release(&self, claim: &Claim) -> Result<bool, IdempotencyStoreError> {
        let result = self
            .table
            .client()
            .delete_item()
            .table_name(self.table.name())
            .key("pk", s(&claim.scoped_key))
            .condition_expression("claim_id = :claim AND #state = :in_progress")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":claim", s(&claim.claim_id))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .send()
            .await;
        result
            .condition_held()
            .map_err(|err| self.failed("DeleteItem", err))
    }

    /// Deletes the record of `claim` whatever its state (a response stored with an outcome that
    /// turned out not to hold), so a retry with the key proceeds. Returns whether it was still
    /// this request's.
    pub async fn discard(&self, claim: &Claim) -> Result<bool, IdempotencyStoreError> {
        let result = self
            .table
            .client()
            .delete_item()
            .table_name(self.table.name())
            .key("pk", s(&claim.scoped_key))
            .condition_expression("claim_id = :claim")
            .expression_attribute_values(":claim", s(&claim.claim_id))
            .send()
            .await;
        result
            .condition_held()
            .map_err(|err| self.failed("DeleteItem", err))
    }

    /// The stored record of `scoped_key`, lapsed or not (a strongly consistent read).
    pub async fn get(
        &self,
        scoped_key: &str,
    ) -> Result<Option<IdempotencyRecord>, IdempotencyStoreError> {
        let output = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .key("pk", s(scoped_key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.failed("GetItem", e))?;
        output.item.as_ref().map(record_of).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_items_read_back_as_records() {
        let fingerprint = RequestFingerprint::of_body(b"{}").unwrap();
        let response = StoredResponse {
            status: 202,
            body: r#"{"id":"msg_1"}"#.to_owned(),
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        };
        let item: Item = HashMap::from([
            ("pk".to_owned(), s("key_1#k")),
            ("state".to_owned(), s(COMPLETED)),
            ("fingerprint".to_owned(), s(fingerprint.as_str())),
            ("expires_at_ms".to_owned(), n(1_000)),
            (
                "response".to_owned(),
                s(serde_json::to_string(&response).unwrap()),
            ),
        ]);
        assert_eq!(
            record_of(&item).unwrap(),
            IdempotencyRecord {
                fingerprint,
                state: IdempotencyState::Completed {
                    response,
                    expires_at: UnixMillis(1_000),
                },
            }
        );
    }

    #[test]
    fn unknown_states_are_corrupt() {
        let item: Item = HashMap::from([
            ("pk".to_owned(), s("key_1#k")),
            ("state".to_owned(), s("maybe")),
            (
                "fingerprint".to_owned(),
                s(RequestFingerprint::of_body(b"{}").unwrap().as_str()),
            ),
            ("expires_at_ms".to_owned(), n(1_000)),
        ]);
        assert!(matches!(
            record_of(&item),
            Err(IdempotencyStoreError::Corrupt { .. })
        ));
    }
}
