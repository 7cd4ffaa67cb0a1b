//! `DynamoDbEndpoints`: the team's own webhook endpoints in the endpoints table.
//!
//! One item per endpoint, `pk = endpoint#<id>`, holding `endpoint_id`, `url`, `events` (a list
//! of `email.<kind>` names; empty means every message event), `secrets` (a list of maps
//! `{secret: "whsec_…", created_at, expires_at?}` newest first; the signing keys themselves,
//! because a dispatcher must sign with them), `enabled` (BOOL), `disabled_reason` and
//! `disabled_at` once a `410 Gone` turned it off, `created_at` (epoch ms) and `version` (N, bumped
//! by every rotation so two concurrent rotations cannot both win). Expired secrets are left out
//! whenever an item is read and dropped from the item when it is rotated. Listing is a Scan: a
//! team has a handful of endpoints.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use mailgate_core::{
    Endpoint, EndpointFilter, EndpointId, EndpointSecret, EndpointUrl, InvalidEndpointUrl,
    UnixMillis, WebhookSecret,
};

use mailgate_core::StoreError;

use crate::dynamodb::ConditionalWrite;

/// Why an endpoint operation did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EndpointStoreError {
    /// The table does not exist (wrong name, or the stack is not provisioned).
    #[error("the endpoints table {0:?} does not exist")]
    TableNotFound(String),
    /// No endpoint has this id.
    #[error("no webhook endpoint has the id {0}")]
    UnknownId(EndpointId),
    /// The URL is not accepted.
    #[error(transparent)]
    InvalidUrl(#[from] InvalidEndpointUrl),
    /// The endpoint changed between the read and the write of a rotation (another rotation).
    #[error("the endpoint {0} changed while its secret was being rotated; try again")]
    Conflict(EndpointId),
    /// A stored item cannot be read as an endpoint.
    #[error("the stored endpoint item {pk} cannot be read: {reason}")]
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

/// The item key of an endpoint: `endpoint#<id>`.
pub fn endpoint_pk(id: &EndpointId) -> String {
    format!("endpoint#{id}")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn secrets_value(secrets: &[EndpointSecret]) -> AttributeValue {
    AttributeValue::L(
        secrets
            .iter()
            .map(|sec| {
                let mut m = HashMap::from([
                    ("secret".to_owned(), s(sec.secret.expose())),
                    ("created_at".to_owned(), n(sec.created_at.as_i64())),
                ]);
                if let Some(end) = sec.expires_at {
                    m.insert("expires_at".to_owned(), n(end.as_i64()));
                }
                AttributeValue::M(m)
            })
            .collect(),
    )
}

fn item_of(endpoint: &Endpoint) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        ("pk".to_owned(), s(endpoint_pk(&endpoint.id))),
        ("endpoint_id".to_owned(), s(endpoint.id.as_str())),
        ("url".to_owned(), s(endpoint.url.as_str())),
        (
            "events".to_owned(),
            AttributeValue::L(endpoint.filter.type_names().into_iter().map(s).collect()),
        ),
        ("secrets".to_owned(), secrets_value(&endpoint.secrets)),
        ("enabled".to_owned(), AttributeValue::Bool(endpoint.enabled)),
        ("created_at".to_owned(), n(endpoint.created_at.as_i64())),
        ("version".to_owned(), n(0)),
    ]);
    if let Some(reason) = &endpoint.disabled_reason {
        item.insert("disabled_reason".to_owned(), s(reason));
    }
    item
}

/// An endpoint read from its item, with its version.
fn endpoint_of(
    item: &HashMap<String, AttributeValue>,
) -> Result<(Endpoint, i64), EndpointStoreError> {
    let pk = item
        .get("pk")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let corrupt = |reason: String| EndpointStoreError::Corrupt {
        pk: pk.clone(),
        reason,
    };
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| corrupt(format!("{name} is missing or not a string")))
    };
    let number = |v: &AttributeValue, name: &str| {
        v.as_n()
            .ok()
            .and_then(|n| n.parse::<i64>().ok())
            .ok_or_else(|| corrupt(format!("{name} is not a number")))
    };
    let id = EndpointId::parse(text("endpoint_id")?).map_err(|e| corrupt(e.to_string()))?;
    let url = EndpointUrl::parse(text("url")?).map_err(|e| corrupt(e.to_string()))?;
    let names = item
        .get("events")
        .and_then(|v| v.as_l().ok())
        .ok_or_else(|| corrupt("events is missing or not a list".to_owned()))?;
    let kinds = names
        .iter()
        .map(|v| {
            v.as_s()
                .map_err(|_| corrupt("events holds a non-string".to_owned()))
                .and_then(|n| EndpointFilter::parse_type(n).map_err(|e| corrupt(e.to_string())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let secrets = item
        .get("secrets")
        .and_then(|v| v.as_l().ok())
        .ok_or_else(|| corrupt("secrets is missing or not a list".to_owned()))?
        .iter()
        .map(|v| {
            let m = v
                .as_m()
                .map_err(|_| corrupt("secrets holds a non-map".to_owned()))?;
            let secret = m
                .get("secret")
                .and_then(|v| v.as_s().ok())
                .ok_or_else(|| corrupt("a secret is missing its key".to_owned()))
                .and_then(|k| WebhookSecret::parse(k).map_err(|e| corrupt(e.to_string())))?;
            let created_at = m
                .get("created_at")
                .map(|v| number(v, "secrets.created_at"))
                .transpose()?
                .unwrap_or_default();
            let expires_at = m
                .get("expires_at")
                .map(|v| number(v, "secrets.expires_at"))
                .transpose()?;
            Ok(EndpointSecret {
                secret,
                created_at: UnixMillis(created_at),
                expires_at: expires_at.map(UnixMillis),
            })
        })
        .collect::<Result<Vec<_>, EndpointStoreError>>()?;
    let enabled = item
        .get("enabled")
        .and_then(|v| v.as_bool().ok())
        .copied()
        .ok_or_else(|| corrupt("enabled is missing or not a boolean".to_owned()))?;
    let created_at = item
        .get("created_at")
        .map(|v| number(v, "created_at"))
        .transpose()?
        .unwrap_or_default();
    let version = item
        .get("version")
        .map(|v| number(v, "version"))
        .transpose()?
        .unwrap_or_default();
    let endpoint = Endpoint {
        id,
        url,
        filter: EndpointFilter::of(kinds),
        secrets,
        enabled,
        disabled_reason: item
            .get("disabled_reason")
            .and_then(|v| v.as_s().ok())
            .cloned(),
        created_at: UnixMillis(created_at),
    };
    Ok((endpoint, version))
}

/// Webhook endpoints on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbEndpoints {
    table: crate::dynamodb::TableHandle,
}

impl DynamoDbEndpoints {
    /// Endpoints in `table` (the `ENDPOINTS_TABLE`).
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

    fn failed<E>(
        &self,
        operation: &'static str,
        err: SdkError<E, HttpResponse>,
    ) -> EndpointStoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match crate::sdk::unless_table_missing(operation, err) {
            Some(e) => e.into(),
            None => EndpointStoreError::TableNotFound(self.table.name().to_owned()),
        }
    }

    /// Creates an enabled endpoint for `url` (https, or http to a loopback host) with `filter`
    /// and a new secret, which is returned so the caller can show it once.
    pub async fn add(
        &self,
        url: &str,
        filter: EndpointFilter,
        now: UnixMillis,
    ) -> Result<(Endpoint, WebhookSecret), EndpointStoreError> {
        let url = EndpointUrl::parse(url)?;
        let (endpoint, secret) = Endpoint::new(url, filter, now);
        self.table
            .client()
            .put_item()
            .table_name(self.table.name())
            .set_item(Some(item_of(&endpoint)))
            // A random 128-bit id never collides; the condition only guards against a bug.
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| self.failed("PutItem", e))?;
        Ok((endpoint, secret))
    }

    async fn get_versioned(
        &self,
        id: &EndpointId,
    ) -> Result<Option<(Endpoint, i64)>, EndpointStoreError> {
        let output = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .key("pk", s(endpoint_pk(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.failed("GetItem", e))?;
        output.item.as_ref().map(endpoint_of).transpose()
    }

    /// The endpoint with id `id`, without the secrets expired at `now` (a strongly consistent
    /// read, so a disable or rotation is seen at once).
    pub async fn get(
        &self,
        id: &EndpointId,
        now: UnixMillis,
    ) -> Result<Option<Endpoint>, EndpointStoreError> {
        Ok(self
            .get_versioned(id)
            .await?
            .map(|(e, _)| e.without_expired_secrets(now)))
    }

    /// Every endpoint, oldest first, without expired secrets.
    pub async fn list(&self, now: UnixMillis) -> Result<Vec<Endpoint>, EndpointStoreError> {
        let mut endpoints = Vec::new();
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
                endpoints.push(endpoint_of(item)?.0.without_expired_secrets(now));
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        endpoints.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(endpoints)
    }

    /// Every enabled endpoint.
    pub async fn list_enabled(&self, now: UnixMillis) -> Result<Vec<Endpoint>, EndpointStoreError> {
        let mut all = self.list(now).await?;
        all.retain(|e| e.enabled);
        Ok(all)
    }

    /// Deletes the endpoint; deliveries already queued for it are dropped by the dispatcher.
    pub async fn remove(&self, id: &EndpointId) -> Result<(), EndpointStoreError> {
        let result = self
            .table
            .client()
            .delete_item()
            .table_name(self.table.name())
            .key("pk", s(endpoint_pk(id)))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match result.condition_held() {
            Ok(true) => Ok(()),
            Ok(false) => Err(EndpointStoreError::UnknownId(id.clone())),
            Err(err) => Err(self.failed("DeleteItem", err)),
        }
    }

    /// Gives the endpoint a new secret, which signs first from now on; the secrets valid until
    /// now keep signing for 24 h ([`mailgate_core::standard_webhooks::ROTATION_GRACE`]), and
    /// expired ones are dropped. Returns the new secret so it can be shown once.
    pub async fn rotate_secret(
        &self,
        id: &EndpointId,
        now: UnixMillis,
    ) -> Result<WebhookSecret, EndpointStoreError> {
        let (current, version) = self
            .get_versioned(id)
            .await?
            .ok_or_else(|| EndpointStoreError::UnknownId(id.clone()))?;
        let secret = WebhookSecret::generate();
        let rotated = current.rotated(secret.clone(), now);
        let result = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .key("pk", s(endpoint_pk(id)))
            .update_expression("SET secrets = :secrets, version = :next")
            .condition_expression("attribute_exists(pk) AND version = :version")
            .expression_attribute_values(":secrets", secrets_value(&rotated.secrets))
            .expression_attribute_values(":next", n(version + 1))
            .expression_attribute_values(":version", n(version))
            .send()
            .await;
        match result.condition_held() {
            Ok(true) => Ok(secret),
            Ok(false) => Err(EndpointStoreError::Conflict(id.clone())),
            Err(err) => Err(self.failed("UpdateItem", err)),
        }
    }

    /// Turns the endpoint off (the app answered `410 Gone`), recording why and when.
    pub async fn disable(
        &self,
        id: &EndpointId,
        reason: &str,
        now: UnixMillis,
    ) -> Result<(), EndpointStoreError> {
        let result = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .key("pk", s(endpoint_pk(id)))
            .update_expression("SET enabled = :off, disabled_reason = :reason, disabled_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":off", AttributeValue::Bool(false))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", n(now.as_i64()))
            .send()
            .await;
        match result.condition_held() {
            Ok(true) => Ok(()),
            Ok(false) => Err(EndpointStoreError::UnknownId(id.clone())),
            Err(err) => Err(self.failed("UpdateItem", err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip() {
        let (mut endpoint, _) = Endpoint::new(
            EndpointUrl::parse("https://app.example.com/hooks").unwrap(),
            EndpointFilter::parse_list("email.delivered,email.bounced").unwrap(),
            UnixMillis(1_000),
        );
        endpoint = endpoint.rotated(WebhookSecret::generate(), UnixMillis(2_000));
        endpoint.enabled = false;
        endpoint.disabled_reason = Some("410 Gone".to_owned());
        let item = item_of(&endpoint);
        assert_eq!(
            item["pk"].as_s().unwrap(),
            &format!("endpoint#{}", endpoint.id)
        );
        let (back, version) = endpoint_of(&item).unwrap();
        assert_eq!(back, endpoint);
        assert_eq!(version, 0);
    }

    #[test]
    fn an_empty_filter_is_stored_as_an_empty_list() {
        let (endpoint, _) = Endpoint::new(
            EndpointUrl::parse("http://127.0.0.1:9/x").unwrap(),
            EndpointFilter::all(),
            UnixMillis(1),
        );
        let item = item_of(&endpoint);
        assert!(item["events"].as_l().unwrap().is_empty());
        assert!(endpoint_of(&item).unwrap().0.filter.is_all());
    }

    #[test]
    fn unreadable_items_are_reported_with_their_key() {
        let item = HashMap::from([
            ("pk".to_owned(), s("endpoint#x")),
            ("endpoint_id".to_owned(), s("ep_x")),
        ]);
        match endpoint_of(&item) {
            Err(EndpointStoreError::Corrupt { pk, .. }) => assert_eq!(pk, "endpoint#x"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
