//! `DynamoDbSendControls`: operator switches for sending, in the control table.
//!
//! Item (`pk`):
//! - `setting#bulk_paused`: `paused` (BOOL), `updated_at_ms` (Unix ms of the last change) — the
//!   pause switch of bulk sends. A missing item means not paused.
//! - `setting#guardrail#<sending domain>`: the reputation guardrails' scoped pauses of bulk
//!   mail from that domain, one pair of attributes per provider: `paused_<provider>` (S, the
//!   trip as JSON: rate, value, threshold, volume, events, window; present while paused) and
//!   `resumed_<provider>` (N, Unix ms of the last resume). Tripped by the event processor with a
//!   conditional `UpdateItem` (`attribute_not_exists(paused_<provider>)`: the first trip wins and
//!   alone fires the webhook); lifted by `mailgate-admin sends resume`.
//!
//! Reads are strongly consistent, so a switch turned by `mailgate-admin` is seen by the next
//! request of every instance. A write is conditioned on the stored `updated_at_ms` not being
//! later than the writer's `now`, so an operator whose clock lags cannot silently undo a newer
//! change; such a write reports [`ControlsError::Superseded`].

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use mailgate_core::UnixMillis;
use time::OffsetDateTime;

use mailgate_core::StoreError;

use crate::dynamodb::ConditionalWrite;

/// The item key of the bulk pause switch.
pub const BULK_PAUSED_PK: &str = "setting#bulk_paused";
/// The key prefix of the guardrails' scoped pauses (`setting#guardrail#<sending domain>`).
pub const GUARDRAIL_PREFIX: &str = "setting#guardrail#";

/// The item key of a sending domain's guardrail pauses.
pub fn guardrail_pk(sending_domain: &str) -> String {
    format!("{GUARDRAIL_PREFIX}{}", sending_domain.to_lowercase())
}

/// One route paused by a guardrail, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardrailPause {
    /// The sending domain.
    pub sending_domain: String,
    /// The provider.
    pub provider: mailgate_core::ProviderId,
    /// The trip that paused it (JSON: `rate`, `value`, `threshold`, `volume`, `events`,
    /// `window_sends`, `window_from_hour`, `window_to_hour`, `tripped_at`).
    pub reason: serde_json::Value,
}

fn paused_attribute(provider: mailgate_core::ProviderId) -> String {
    format!("paused_{provider}")
}

fn resumed_attribute(provider: mailgate_core::ProviderId) -> String {
    format!("resumed_{provider}")
}

/// Why a control could not be read or written.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ControlsError {
    /// The table does not exist (wrong name, or the stack is not provisioned).
    #[error("the control table {0:?} does not exist")]
    TableNotFound(String),
    /// The stored setting was changed at a later time than this write's `now`.
    #[error("the setting {0:?} was changed later than this write")]
    Superseded(String),
    /// A stored item cannot be read.
    #[error("the stored control item {pk} cannot be read: {reason}")]
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

/// The bulk pause switch as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkPause {
    /// Whether bulk messages are held as `paused`.
    pub paused: bool,
    /// When it was last changed; `None` when it never was.
    pub updated_at: Option<UnixMillis>,
}

type Item = HashMap<String, AttributeValue>;

fn bulk_pause_of(item: &Item) -> Result<BulkPause, ControlsError> {
    let corrupt = |reason: &str| ControlsError::Corrupt {
        pk: BULK_PAUSED_PK.to_owned(),
        reason: reason.to_owned(),
    };
    let paused = item
        .get("paused")
        .and_then(|v| v.as_bool().ok())
        .copied()
        .ok_or_else(|| corrupt("paused is missing or not a boolean"))?;
    let updated_at = match item.get("updated_at_ms") {
        None => None,
        Some(v) => Some(UnixMillis(
            v.as_n()
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| corrupt("updated_at_ms is not a number"))?,
        )),
    };
    Ok(BulkPause { paused, updated_at })
}

fn bulk_pause_item(paused: bool, now: UnixMillis) -> Item {
    HashMap::from([
        (
            "pk".to_owned(),
            AttributeValue::S(BULK_PAUSED_PK.to_owned()),
        ),
        ("paused".to_owned(), AttributeValue::Bool(paused)),
        (
            "updated_at_ms".to_owned(),
            AttributeValue::N(now.as_i64().to_string()),
        ),
    ])
}

/// Sending switches on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbSendControls {
    table: crate::dynamodb::TableHandle,
}

impl DynamoDbSendControls {
    /// Switches in `control_table` (the `CONTROL_TABLE`).
    pub fn new(client: Client, control_table: impl Into<String>) -> Self {
        Self::on(crate::TableHandle::new(client, control_table))
    }

    /// The same adapter on a table handle of the function's DynamoDB foundation.
    pub fn on(table: crate::TableHandle) -> Self {
        Self { table }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        self.table.name()
    }

    fn failed<E>(&self, operation: &'static str, err: SdkError<E, HttpResponse>) -> ControlsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match crate::sdk::unless_table_missing(operation, err) {
            Some(e) => e.into(),
            None => ControlsError::TableNotFound(self.table.name().to_owned()),
        }
    }

    /// The bulk pause switch as stored (one consistent `GetItem`).
    pub async fn bulk_pause(&self) -> Result<BulkPause, ControlsError> {
        let output = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .key("pk", AttributeValue::S(BULK_PAUSED_PK.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.failed("GetItem", e))?;
        match output.item {
            Some(item) => bulk_pause_of(&item),
            None => Ok(BulkPause {
                paused: false,
                updated_at: None,
            }),
        }
    }

    /// Whether bulk messages are held as `paused` now (a missing item is not paused).
    pub async fn bulk_paused(&self) -> Result<bool, ControlsError> {
        Ok(self.bulk_pause().await?.paused)
    }

    /// Turns the bulk pause switch on or off at `now` (one conditional `PutItem`). Setting the
    /// state it already has is fine.
    pub async fn set_bulk_paused(
        &self,
        paused: bool,
        now: OffsetDateTime,
    ) -> Result<(), ControlsError> {
        let now = UnixMillis::from(now);
        let result = self
            .table
            .client()
            .put_item()
            .table_name(self.table.name())
            .set_item(Some(bulk_pause_item(paused, now)))
            .condition_expression("attribute_not_exists(updated_at_ms) OR updated_at_ms <= :now")
            .expression_attribute_values(":now", AttributeValue::N(now.as_i64().to_string()))
            .send()
            .await;
        match result.condition_held() {
            Ok(true) => Ok(()),
            Ok(false) => Err(ControlsError::Superseded(BULK_PAUSED_PK.to_owned())),
            Err(err) => Err(self.failed("PutItem", err)),
        }
    }
}

impl DynamoDbSendControls {
    async fn guardrail_item(&self, sending_domain: &str) -> Result<Option<Item>, ControlsError> {
        Ok(self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .key("pk", AttributeValue::S(guardrail_pk(sending_domain)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.failed("GetItem", e))?
            .item)
    }

    /// Whether a guardrail holds bulk mail from `sending_domain` through `provider` (any
    /// provider when `None`): one consistent `GetItem`.
    pub async fn guardrail_paused(
        &self,
        sending_domain: &str,
        provider: Option<mailgate_core::ProviderId>,
    ) -> Result<bool, ControlsError> {
        let Some(item) = self.guardrail_item(sending_domain).await? else {
            return Ok(false);
        };
        Ok(match provider {
            Some(p) => item.contains_key(&paused_attribute(p)),
            None => item.keys().any(|k| k.starts_with("paused_")),
        })
    }

    /// The route's switch: paused or not, and when it was last resumed.
    pub async fn route_guard(
        &self,
        provider: mailgate_core::ProviderId,
        sending_domain: &str,
    ) -> Result<mailgate_core::ports::RouteGuard, ControlsError> {
        let item = self
            .guardrail_item(sending_domain)
            .await?
            .unwrap_or_default();
        Ok(mailgate_core::ports::RouteGuard {
            paused: item.contains_key(&paused_attribute(provider)),
            resumed_at: item
                .get(&resumed_attribute(provider))
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .map(UnixMillis),
        })
    }

    /// Pauses bulk through the trip's route (one conditional `UpdateItem`); `false` when it was
    /// paused already.
    pub async fn trip_guardrail(
        &self,
        trip: &mailgate_core::GuardrailTrip,
        now: UnixMillis,
    ) -> Result<bool, ControlsError> {
        let mut reason = serde_json::to_value(trip).unwrap_or_default();
        reason["tripped_at_ms"] = serde_json::json!(now.as_i64());
        let result = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .key("pk", AttributeValue::S(guardrail_pk(&trip.sending_domain)))
            .update_expression("SET #paused = :reason, updated_at_ms = :now")
            .condition_expression("attribute_not_exists(#paused)")
            .expression_attribute_names("#paused", paused_attribute(trip.provider))
            .expression_attribute_values(":reason", AttributeValue::S(reason.to_string()))
            .expression_attribute_values(":now", AttributeValue::N(now.as_i64().to_string()))
            .send()
            .await;
        result
            .condition_held()
            .map_err(|err| self.failed("UpdateItem", err))
    }

    /// Every route a guardrail holds paused (one `Scan` of the small control table).
    pub async fn guardrail_pauses(&self) -> Result<Vec<GuardrailPause>, ControlsError> {
        let mut pauses = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .table
                .client()
                .scan()
                .table_name(self.table.name())
                .filter_expression("begins_with(pk, :prefix)")
                .expression_attribute_values(":prefix", AttributeValue::S(GUARDRAIL_PREFIX.into()))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| self.failed("Scan", e))?;
            for item in out.items() {
                let Some(domain) = item
                    .get("pk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|pk| pk.strip_prefix(GUARDRAIL_PREFIX))
                else {
                    continue;
                };
                for (name, value) in item {
                    let Some(provider) = name
                        .strip_prefix("paused_")
                        .and_then(|p| p.parse::<mailgate_core::ProviderId>().ok())
                    else {
                        continue;
                    };
                    let reason = value
                        .as_s()
                        .ok()
                        .and_then(|text| serde_json::from_str(text).ok())
                        .ok_or_else(|| ControlsError::Corrupt {
                            pk: guardrail_pk(domain),
                            reason: format!("{name} is not a JSON string"),
                        })?;
                    pauses.push(GuardrailPause {
                        sending_domain: domain.to_owned(),
                        provider,
                        reason,
                    });
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        pauses.sort_by(|a, b| {
            (&a.sending_domain, a.provider.as_str()).cmp(&(&b.sending_domain, b.provider.as_str()))
        });
        Ok(pauses)
    }

    /// Lifts the guardrail pause of one route at `now` (the route's window starts afresh);
    /// `false` when it was not paused.
    pub async fn resume_guardrail(
        &self,
        provider: mailgate_core::ProviderId,
        sending_domain: &str,
        now: UnixMillis,
    ) -> Result<bool, ControlsError> {
        let result = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .key("pk", AttributeValue::S(guardrail_pk(sending_domain)))
            .update_expression("SET #resumed = :now, updated_at_ms = :now REMOVE #paused")
            .condition_expression("attribute_exists(#paused)")
            .expression_attribute_names("#paused", paused_attribute(provider))
            .expression_attribute_names("#resumed", resumed_attribute(provider))
            .expression_attribute_values(":now", AttributeValue::N(now.as_i64().to_string()))
            .send()
            .await;
        result
            .condition_held()
            .map_err(|err| self.failed("UpdateItem", err))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn bulk_pause_items_round_trip() {
        let item = bulk_pause_item(true, UnixMillis(1_750_000_000_000));
        assert_eq!(item["pk"].as_s().unwrap(), "setting#bulk_paused");
        assert_eq!(
            bulk_pause_of(&item).unwrap(),
            BulkPause {
                paused: true,
                updated_at: Some(UnixMillis(1_750_000_000_000)),
            }
        );
    }

    #[test]
    fn an_item_without_a_boolean_is_corrupt() {
        let item = HashMap::from([("paused".to_owned(), AttributeValue::S("yes".to_owned()))]);
        assert!(matches!(
            bulk_pause_of(&item),
            Err(ControlsError::Corrupt { .. })
        ));
    }
}
