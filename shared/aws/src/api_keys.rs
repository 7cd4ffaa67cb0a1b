//! `DynamoDbApiKeys`: API keys in the api-keys table, stored only as the SHA-256 of the key.
//!
//! One item per key, `pk = key#<sha256 hex>`, with `key_id`, `label`, `environment`, `scopes`
//! (a string set), `created_at` and, once revoked, `revoked_at` (RFC 3339). Authentication is one
//! strongly consistent GetItem on the hash, so a revocation takes effect at once; revocation
//! finds the item through the `by-key-id` index and sets `revoked_at` with a conditional update;
//! listing is a Scan (one small item per key, an operator command).

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use mailgate_core::{
    ApiKeyId, ApiKeyLabel, ApiKeyRecord, ApiKeySecret, KeyEnvironment, KeyHash, Scope, Scopes,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use mailgate_core::StoreError;

use crate::dynamodb::ConditionalWrite;

/// The index that finds a key by its id.
pub const BY_KEY_ID_INDEX: &str = "by-key-id";

/// Why an API key operation did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiKeyStoreError {
    /// The table does not exist (wrong name, or the stack is not provisioned).
    #[error("the API keys table {0:?} does not exist")]
    TableNotFound(String),
    /// No key has this id.
    #[error("no API key has the id {0}")]
    UnknownId(ApiKeyId),
    /// A key with the same hash is stored already.
    #[error("an API key with the same hash is stored already")]
    AlreadyExists,
    /// A stored item cannot be read as a key.
    #[error("the stored API key item {pk} cannot be read: {reason}")]
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

/// What seeding a known key did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeded {
    /// The key was not stored; it is now.
    Created(ApiKeyRecord),
    /// The key was stored with another label, environment or scopes, or revoked; it now has
    /// the requested ones and is not revoked. Its id and creation time are kept.
    Updated(ApiKeyRecord),
    /// The key was stored exactly as requested.
    Unchanged(ApiKeyRecord),
}

impl Seeded {
    /// The key as stored now.
    pub fn record(&self) -> &ApiKeyRecord {
        match self {
            Seeded::Created(r) | Seeded::Updated(r) | Seeded::Unchanged(r) => r,
        }
    }
}

/// What revoking a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// The key is revoked now.
    Revoked(ApiKeyRecord),
    /// The key had been revoked before; nothing changed.
    AlreadyRevoked(ApiKeyRecord),
}

/// The item key of a stored key: `key#<sha256 hex>`.
pub fn api_key_pk(hash: &KeyHash) -> String {
    format!("key#{}", hash.to_hex())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn rfc3339(at: OffsetDateTime) -> Result<String, ApiKeyStoreError> {
    at.format(&Rfc3339).map_err(|e| ApiKeyStoreError::Corrupt {
        pk: String::new(),
        reason: format!("timestamp {at} cannot be written as RFC 3339: {e}"),
    })
}

fn scopes_value(scopes: &Scopes) -> AttributeValue {
    AttributeValue::Ss(scopes.iter().map(|s| s.as_str().to_owned()).collect())
}

fn item_of(record: &ApiKeyRecord) -> Result<HashMap<String, AttributeValue>, ApiKeyStoreError> {
    let mut item = HashMap::from([
        ("pk".to_owned(), s(api_key_pk(&record.hash))),
        ("key_id".to_owned(), s(record.id.as_str())),
        ("label".to_owned(), s(record.label.as_str())),
        ("environment".to_owned(), s(record.environment.as_str())),
        ("scopes".to_owned(), scopes_value(&record.scopes)),
        ("created_at".to_owned(), s(rfc3339(record.created_at)?)),
    ]);
    if let Some(revoked_at) = record.revoked_at {
        item.insert("revoked_at".to_owned(), s(rfc3339(revoked_at)?));
    }
    Ok(item)
}

fn record_of(item: &HashMap<String, AttributeValue>) -> Result<ApiKeyRecord, ApiKeyStoreError> {
    let pk = item
        .get("pk")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let corrupt = |reason: String| ApiKeyStoreError::Corrupt {
        pk: pk.clone(),
        reason,
    };
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| corrupt(format!("{name} is missing or not a string")))
    };
    let time = |name: &str, value: &str| {
        OffsetDateTime::parse(value, &Rfc3339).map_err(|e| corrupt(format!("{name}: {e}")))
    };
    let hash = pk
        .strip_prefix("key#")
        .ok_or_else(|| corrupt("pk does not start with key#".to_owned()))
        .and_then(|hex| KeyHash::from_hex(hex).map_err(|e| corrupt(e.to_string())))?;
    let scopes = item
        .get("scopes")
        .and_then(|v| v.as_ss().ok())
        .ok_or_else(|| corrupt("scopes is missing or not a string set".to_owned()))?
        .iter()
        .map(|s| s.parse::<Scope>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| corrupt(e.to_string()))?;
    Ok(ApiKeyRecord {
        id: ApiKeyId::parse(text("key_id")?).map_err(|e| corrupt(e.to_string()))?,
        hash,
        label: ApiKeyLabel::parse(text("label")?).map_err(|e| corrupt(e.to_string()))?,
        environment: text("environment")?
            .parse::<KeyEnvironment>()
            .map_err(|e| corrupt(e.to_string()))?,
        scopes: Scopes::new(scopes).map_err(|e| corrupt(e.to_string()))?,
        created_at: time("created_at", text("created_at")?)?,
        revoked_at: match item.get("revoked_at") {
            None => None,
            Some(_) => Some(time("revoked_at", text("revoked_at")?)?),
        },
    })
}

/// A transaction's check that the key `guard` names is still stored unrevoked, with the id,
/// environment and scope the caller's cached copy has: a revocation (or a scope taken away)
/// refuses the write it is part of, so a key cached per container is never trusted past it.
pub(crate) fn key_valid_check(
    table: &str,
    guard: &mailgate_core::ports::KeyGuard,
) -> Result<aws_sdk_dynamodb::types::ConditionCheck, aws_sdk_dynamodb::error::BuildError> {
    aws_sdk_dynamodb::types::ConditionCheck::builder()
        .table_name(table)
        .key("pk", s(api_key_pk(&guard.hash)))
        .condition_expression(
            "attribute_exists(pk) AND attribute_not_exists(revoked_at) AND key_id = :id \
             AND #environment = :environment AND contains(#scopes, :scope)",
        )
        .expression_attribute_names("#environment", "environment")
        .expression_attribute_names("#scopes", "scopes")
        .expression_attribute_values(":id", s(guard.id.as_str()))
        .expression_attribute_values(":environment", s(guard.environment.as_str()))
        .expression_attribute_values(":scope", s(guard.scope.as_str()))
        .build()
}

/// API keys on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbApiKeys {
    table: crate::dynamodb::TableHandle,
}

impl DynamoDbApiKeys {
    /// Keys in `table` (the `API_KEYS_TABLE`).
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
    fn failed<E>(&self, operation: &'static str, err: SdkError<E, HttpResponse>) -> ApiKeyStoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match crate::sdk::unless_table_missing(operation, err) {
            Some(e) => e.into(),
            None => ApiKeyStoreError::TableNotFound(self.table.name().to_owned()),
        }
    }

    /// Stores a new key; fails with `AlreadyExists` when its hash is stored already.
    pub async fn create(&self, record: &ApiKeyRecord) -> Result<(), ApiKeyStoreError> {
        let result = self
            .table
            .client()
            .put_item()
            .table_name(self.table.name())
            .set_item(Some(item_of(record)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result.condition_held() {
            Ok(true) => Ok(()),
            Ok(false) => Err(ApiKeyStoreError::AlreadyExists),
            Err(err) => Err(self.failed("PutItem", err)),
        }
    }

    /// The key stored under `hash`, if any (revoked ones included: the caller decides). A
    /// strongly consistent read, so a revocation is seen by the next request.
    pub async fn find(&self, hash: &KeyHash) -> Result<Option<ApiKeyRecord>, ApiKeyStoreError> {
        let output = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .key("pk", s(api_key_pk(hash)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.failed("GetItem", e))?;
        output.item.as_ref().map(record_of).transpose()
    }

    /// The key stored for `secret`, if any.
    pub async fn find_secret(
        &self,
        secret: &ApiKeySecret,
    ) -> Result<Option<ApiKeyRecord>, ApiKeyStoreError> {
        self.find(&secret.hash()).await
    }

    /// The key with id `id`, if any (through `by-key-id`, eventually consistent).
    pub async fn find_by_id(
        &self,
        id: &ApiKeyId,
    ) -> Result<Option<ApiKeyRecord>, ApiKeyStoreError> {
        let output = self
            .table
            .client()
            .query()
            .table_name(self.table.name())
            .index_name(BY_KEY_ID_INDEX)
            .key_condition_expression("key_id = :id")
            .expression_attribute_values(":id", s(id.as_str()))
            .send()
            .await
            .map_err(|e| self.failed("Query", e))?;
        output.items().first().map(record_of).transpose()
    }

    /// Every stored key, oldest first (a Scan of the whole table, page by page).
    pub async fn list(&self) -> Result<Vec<ApiKeyRecord>, ApiKeyStoreError> {
        let mut records = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .table
                .client()
                .scan()
                .table_name(self.table.name())
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.failed("Scan", e))?;
            for item in output.items() {
                records.push(record_of(item)?);
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        records.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(records)
    }

    /// Revokes the key with id `id` at `now`. Revoking a revoked key changes nothing and says so.
    pub async fn revoke(
        &self,
        id: &ApiKeyId,
        now: OffsetDateTime,
    ) -> Result<Revocation, ApiKeyStoreError> {
        let found = self
            .find_by_id(id)
            .await?
            .ok_or_else(|| ApiKeyStoreError::UnknownId(id.clone()))?;
        if found.is_revoked() {
            return Ok(Revocation::AlreadyRevoked(found));
        }
        let result = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .key("pk", s(api_key_pk(&found.hash)))
            .update_expression("SET revoked_at = :now")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(revoked_at)")
            .expression_attribute_values(":now", s(rfc3339(now)?))
            .send()
            .await;
        match result.condition_held() {
            Ok(true) => Ok(Revocation::Revoked(ApiKeyRecord {
                revoked_at: Some(now),
                ..found
            })),
            Ok(false) => {
                // Revoked (or deleted) since the index was read.
                match self.find(&found.hash).await? {
                    Some(current) => Ok(Revocation::AlreadyRevoked(current)),
                    None => Err(ApiKeyStoreError::UnknownId(id.clone())),
                }
            }
            Err(err) => Err(self.failed("UpdateItem", err)),
        }
    }

    /// Makes sure `secret` is stored with this label, environment and scopes and is not revoked
    /// (idempotent: used to seed a fixed development key). An existing key keeps its id and
    /// creation time.
    pub async fn seed(
        &self,
        secret: &ApiKeySecret,
        label: ApiKeyLabel,
        environment: KeyEnvironment,
        scopes: Scopes,
        now: OffsetDateTime,
    ) -> Result<Seeded, ApiKeyStoreError> {
        let wanted = ApiKeyRecord::new(secret, label, environment, scopes, now);
        // One retry covers a concurrent seed of the same key between the read and the put.
        for _ in 0..2 {
            let Some(existing) = self.find(&wanted.hash).await? else {
                match self.create(&wanted).await {
                    Ok(()) => return Ok(Seeded::Created(wanted)),
                    Err(ApiKeyStoreError::AlreadyExists) => continue,
                    Err(other) => return Err(other),
                }
            };
            let desired = ApiKeyRecord {
                label: wanted.label.clone(),
                environment: wanted.environment,
                scopes: wanted.scopes.clone(),
                revoked_at: None,
                ..existing.clone()
            };
            if desired == existing {
                return Ok(Seeded::Unchanged(existing));
            }
            self.table
                .client()
                .update_item()
                .table_name(self.table.name())
                .key("pk", s(api_key_pk(&desired.hash)))
                .update_expression(
                    "SET #label = :label, environment = :environment, scopes = :scopes \
                     REMOVE revoked_at",
                )
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_names("#label", "label")
                .expression_attribute_values(":label", s(desired.label.as_str()))
                .expression_attribute_values(":environment", s(desired.environment.as_str()))
                .expression_attribute_values(":scopes", scopes_value(&desired.scopes))
                .send()
                .await
                .map_err(|e| self.failed("UpdateItem", e))?;
            return Ok(Seeded::Updated(desired));
        }
        Err(ApiKeyStoreError::AlreadyExists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn items_round_trip_and_hold_only_the_hash() {
        let secret = ApiKeySecret::parse("mg_live_roundtrip").unwrap();
        let mut record = ApiKeyRecord::new(
            &secret,
            ApiKeyLabel::parse("ci").unwrap(),
            KeyEnvironment::Test,
            Scopes::parse_list("send,suppressions:write").unwrap(),
            datetime!(2026-01-02 03:04:05.123 UTC),
        );
        record.revoked_at = Some(datetime!(2026-02-01 00:00:00 UTC));
        let item = item_of(&record).unwrap();
        assert_eq!(
            item["pk"].as_s().unwrap(),
            &format!("key#{}", secret.hash().to_hex())
        );
        assert!(
            item.values()
                .all(|v| !format!("{v:?}").contains("mg_live_roundtrip"))
        );
        assert_eq!(record_of(&item).unwrap(), record);
    }

    #[test]
    fn unreadable_items_are_reported_with_their_key() {
        let item = HashMap::from([
            ("pk".to_owned(), s("key#nothex")),
            ("key_id".to_owned(), s("key_x")),
        ]);
        match record_of(&item) {
            Err(ApiKeyStoreError::Corrupt { pk, .. }) => assert_eq!(pk, "key#nothex"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
