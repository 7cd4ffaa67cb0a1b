//! Delivery-statistics counters on DynamoDB: hour-bucket items in the messages table, added to
//! by `ADD` inside the transactions that change what they count.
//!
//! Item layout (messages table):
//! - `pk = stats#<environment>#<dimension>` (`all`, `provider`, `category`, `tag`), and for the
//!   guardrails' `route` dimension `pk = stats#<environment>#route#<provider>#<domain>` (one
//!   partition per provider and sending domain, read alone);
//! - `sk = <hour, 9 digits>#<value>#<shard>`: the hour since the epoch (UTC), the dimension's
//!   value (`-` for the totals), and a shard 0–3 taken from the message id;
//! - one number attribute per counter (`accepted`, `sent`, … see `mailgate_core::stats`), plus
//!   `expires_at` (the TTL: the hour plus [`STATS_RETENTION_DAYS`]).
//!
//! Why shards: every transaction of an environment adds to the same `all` item of the hour,
//! and DynamoDB cancels a transaction that meets another one in progress on an item
//! (`TransactionConflict`). Four shards per (hour, value) spread the concurrent writers; a
//! read adds the shards up (a Query reads them together, they sort next to each other).
//!
//! Cost: each counter item in a transaction is one `Update` of a small item (< 1 KB), 2 write
//! units (transactional). See [`counter_writes`] for how many items each write adds.

use std::collections::HashMap;
use std::ops::Range;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use mailgate_core::stats::{Counter, DeliveryCounts, HourCounts, StatsDimension, hour_of};
use mailgate_core::{
    BoxFuture, KeyEnvironment, MessageCategory, MessageRecord, ProviderId, StoreError, UnixMillis,
    ports::DeliveryStats,
};

/// How many shards each (hour, value) counter is split into.
pub const STATS_SHARDS: u32 = 4;
/// How long an hour bucket is kept after its hour.
pub const STATS_RETENTION_DAYS: i64 = 400;
/// The value of the totals.
pub const ALL_VALUE: &str = "-";

/// Whose counters a write adds to: the message's environment, category, tags, sending domain
/// and (once known) provider.
#[derive(Debug, Clone)]
pub struct StatsScope {
    /// The environment of the key that sent the message.
    pub environment: KeyEnvironment,
    /// Its category.
    pub category: MessageCategory,
    /// Its tags.
    pub tags: Vec<String>,
    /// The provider the counted fact happened at, when there is one.
    pub provider: Option<ProviderId>,
    /// The domain of its `from` address (lower case).
    pub sending_domain: String,
    /// The shard of its counters.
    pub shard: u32,
}

impl StatsScope {
    /// The scope of `record`'s counters, at `provider` when given.
    pub fn of(record: &MessageRecord, provider: Option<ProviderId>) -> Self {
        let mut tags = record.tags.clone();
        // One item may be touched once per transaction: a repeated tag would be a second.
        tags.sort();
        tags.dedup();
        Self {
            environment: record.environment,
            category: record.category,
            tags,
            provider,
            sending_domain: record.from.address.domain().to_lowercase(),
            shard: shard_of(record.id.as_str()),
        }
    }

    /// The (partition, value) of every counter item this scope adds to: the totals, the
    /// category, each tag, and with a provider the provider and the route.
    pub(crate) fn targets(&self) -> Vec<(String, String)> {
        let env = self.environment.as_str();
        let pk = |dim: StatsDimension| format!("stats#{env}#{}", dim.as_str());
        let mut targets = vec![
            (pk(StatsDimension::All), ALL_VALUE.to_owned()),
            (
                pk(StatsDimension::Category),
                self.category.as_str().to_owned(),
            ),
        ];
        for tag in &self.tags {
            targets.push((pk(StatsDimension::Tag), tag.clone()));
        }
        if let Some(provider) = self.provider {
            targets.push((pk(StatsDimension::Provider), provider.as_str().to_owned()));
            let route = route_value(provider, &self.sending_domain);
            targets.push((route_pk(self.environment, &route), route));
        }
        targets
    }
}

/// The `route` value of a provider and sending domain.
pub fn route_value(provider: ProviderId, sending_domain: &str) -> String {
    format!("{provider}#{}", sending_domain.to_lowercase())
}

/// The partition of one route's counters.
pub fn route_pk(environment: KeyEnvironment, route: &str) -> String {
    format!("stats#{}#route#{route}", environment.as_str())
}

/// A stable shard from a message id (FNV-1a: any stable spread will do).
fn shard_of(id: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in id.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % STATS_SHARDS
}

fn hour_sk(hour: i64, value: &str, shard: u32) -> String {
    format!("{:09}#{value}#{shard}", hour.max(0))
}

/// The transaction items adding `counters` for `scope` in the hour of `at`, one `Update` per
/// target item: 2 + tags without a provider (`accepted`), 4 + tags with one (sends and events).
pub fn counter_writes(
    table: &str,
    scope: &StatsScope,
    at: UnixMillis,
    counters: &[(Counter, u64)],
) -> Result<Vec<TransactWriteItem>, BuildError> {
    if counters.is_empty() {
        return Ok(Vec::new());
    }
    let hour = hour_of(at);
    let expires_at = (hour + 1) * 3600 + STATS_RETENTION_DAYS * 86_400;
    let adds: Vec<String> = (0..counters.len())
        .map(|i| format!("#c{i} :c{i}"))
        .collect();
    let expression = format!(
        "SET #hour = :hour, #value = :value, expires_at = :exp ADD {}",
        adds.join(", ")
    );
    scope
        .targets()
        .into_iter()
        .map(|(pk, value)| {
            let mut update = Update::builder()
                .table_name(table)
                .key("pk", AttributeValue::S(pk))
                .key("sk", AttributeValue::S(hour_sk(hour, &value, scope.shard)))
                .update_expression(&expression)
                .expression_attribute_names("#hour", "hour")
                .expression_attribute_names("#value", "value")
                .expression_attribute_values(":hour", AttributeValue::N(hour.to_string()))
                .expression_attribute_values(":value", AttributeValue::S(value))
                .expression_attribute_values(":exp", AttributeValue::N(expires_at.to_string()));
            for (i, (counter, by)) in counters.iter().enumerate() {
                update = update
                    .expression_attribute_names(format!("#c{i}"), counter.as_str())
                    .expression_attribute_values(
                        format!(":c{i}"),
                        AttributeValue::N(by.to_string()),
                    );
            }
            update
                .build()
                .map(|u| TransactWriteItem::builder().update(u).build())
        })
        .collect()
}

fn counts_of(item: &HashMap<String, AttributeValue>) -> DeliveryCounts {
    let mut counts = DeliveryCounts::default();
    for counter in Counter::ALL {
        if let Some(v) = item
            .get(counter.as_str())
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
        {
            counts.add(counter, v);
        }
    }
    counts
}

/// The hour and value of a counter item's sort key.
fn parse_sk(sk: &str) -> Option<(i64, String)> {
    let (hour, rest) = sk.split_once('#')?;
    let (value, _shard) = rest.rsplit_once('#')?;
    Some((hour.parse().ok()?, value.to_owned()))
}

/// Reading the counters.
#[derive(Debug, Clone)]
pub struct DynamoDbDeliveryStats {
    client: Client,
    table: String,
}

impl DynamoDbDeliveryStats {
    /// The counters in the messages table `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The same counters on a table handle of the function's DynamoDB foundation.
    pub fn on(table: crate::TableHandle) -> Self {
        Self::new(table.client().clone(), table.name())
    }

    /// Every counter item of partition `pk` in `hours` (all pages).
    pub async fn query(&self, pk: &str, hours: Range<i64>) -> Result<Vec<HourCounts>, StoreError> {
        if hours.is_empty() {
            return Ok(Vec::new());
        }
        let mut rows = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .expression_attribute_values(
                    ":from",
                    AttributeValue::S(format!("{:09}#", hours.start.max(0))),
                )
                // `$` sorts right after `#`: every item of the last hour is below it.
                .expression_attribute_values(
                    ":to",
                    AttributeValue::S(format!("{:09}$", (hours.end - 1).max(0))),
                )
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| {
                    StoreError::new(
                        crate::sdk::error_kind(&e),
                        "Query",
                        DisplayErrorContext(&e).to_string(),
                    )
                })?;
            for item in out.items() {
                if let Some((hour, value)) = item
                    .get("sk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|sk| parse_sk(sk))
                {
                    rows.push(HourCounts {
                        hour,
                        value,
                        counts: counts_of(item),
                    });
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(rows),
            }
        }
    }

    /// The hour buckets of one route (provider and sending domain) in `environment`.
    pub async fn route_hours(
        &self,
        environment: KeyEnvironment,
        route: &str,
        hours: Range<i64>,
    ) -> Result<Vec<HourCounts>, StoreError> {
        self.query(&route_pk(environment, route), hours).await
    }
}

impl DeliveryStats for DynamoDbDeliveryStats {
    fn hours<'a>(
        &'a self,
        environment: KeyEnvironment,
        dimension: StatsDimension,
        hours: Range<i64>,
    ) -> BoxFuture<'a, Result<Vec<HourCounts>, StoreError>> {
        Box::pin(async move {
            let pk = format!("stats#{}#{}", environment.as_str(), dimension.as_str());
            self.query(&pk, hours).await
        })
    }
}

/// The reputation guardrails' port: route counters from the messages table, the switch in the
/// control table.
#[derive(Debug, Clone)]
pub struct DynamoDbReputationGuard {
    stats: DynamoDbDeliveryStats,
    controls: crate::DynamoDbSendControls,
}

impl DynamoDbReputationGuard {
    /// Counters from `stats`, the switch in `controls`.
    pub fn new(stats: DynamoDbDeliveryStats, controls: crate::DynamoDbSendControls) -> Self {
        Self { stats, controls }
    }
}

impl mailgate_core::ports::ReputationGuard for DynamoDbReputationGuard {
    fn route_hours<'a>(
        &'a self,
        environment: KeyEnvironment,
        provider: ProviderId,
        sending_domain: &'a str,
        hours: Range<i64>,
    ) -> BoxFuture<'a, Result<Vec<HourCounts>, StoreError>> {
        Box::pin(async move {
            self.stats
                .route_hours(environment, &route_value(provider, sending_domain), hours)
                .await
        })
    }

    fn route_guard<'a>(
        &'a self,
        provider: ProviderId,
        sending_domain: &'a str,
    ) -> BoxFuture<'a, Result<mailgate_core::ports::RouteGuard, StoreError>> {
        Box::pin(async move { Ok(self.controls.route_guard(provider, sending_domain).await?) })
    }

    fn trip<'a>(
        &'a self,
        trip: &'a mailgate_core::GuardrailTrip,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(self.controls.trip_guardrail(trip, now).await?) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn sort_keys_read_back_with_values_holding_the_separator() {
        assert_eq!(
            parse_sk(&hour_sk(490_000, "ses#example.com", 3)),
            Some((490_000, "ses#example.com".to_owned()))
        );
        assert!(hour_sk(9, "-", 0) < hour_sk(10, "-", 0));
        assert!(format!("{:09}#", 10) < hour_sk(10, "zzz", 3));
        assert!(hour_sk(10, "zzz", 3) < format!("{:09}$", 10));
        assert!(shard_of("msg_abc") < STATS_SHARDS);
    }
}
