//! `DynamoDbProviderHealth`: every provider's circuit breaker and token bucket in the control
//! table, shared by all Lambda instances, behind a short in-process cache.
//!
//! Items (`pk`):
//! - `breaker#<provider>`: `provider`, `status` (`closed`, `open`, `half_open`), `failures`,
//!   `window_started_at_ms`, `opened_at_ms`, `probes_in_flight`, `probe_started_at_ms` (Unix ms;
//!   absent when unset), `version`, `updated_at_ms` — a stored [`BreakerState`].
//! - `bucket#<provider>`: `provider`, `milli_tokens`, `refilled_at_ms`, `version`,
//!   `updated_at_ms` — a stored [`TokenBucket`]; the rate and burst come from configuration.
//!
//! A missing item is a closed breaker / full bucket at version 0. The state machines are the
//! core's; this adapter reads a state (from its cache while that is younger than
//! [`ProviderHealthConfig::cache_ttl`], otherwise a consistent `GetItem`), computes the next state
//! and writes it with `PutItem` conditioned on `version` still being the one read (or the item
//! still being absent). On a conflict it re-reads, bypassing the cache, and tries again a few
//! times. So the cache can only delay what an instance *sees* (an open circuit opened elsewhere
//! is seen within the TTL, at once when the cache is cold); it never lets two instances take the
//! same probe slot or spend the same token, because every change is a conditional write.
//!
//! Cache age is measured with the `now` each operation is given, so tests inject time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use mailgate_core::{
    Admission, BreakerConfig, BreakerState, CircuitStatus, ProviderId, RateLimit, TakeDenied,
    TokenBucket, UnixMillis,
};
use time::OffsetDateTime;

use mailgate_core::StoreError;

use crate::dynamodb::ConditionalWrite;

/// Configuration of the shared provider health.
#[derive(Debug, Clone)]
pub struct ProviderHealthConfig {
    /// Breaker thresholds and timeouts (the same for every provider).
    pub breaker: BreakerConfig,
    /// Rate limits by provider; a provider without one is never limited (and costs no call).
    pub rate_limits: HashMap<ProviderId, RateLimit>,
    /// How long a read state is used before it is read again.
    pub cache_ttl: Duration,
    /// How many times a conflicting write is retried after re-reading.
    pub conflict_retries: u32,
}

impl Default for ProviderHealthConfig {
    /// The default breaker, no rate limits, a 2 s cache and 5 retries.
    fn default() -> Self {
        Self {
            breaker: BreakerConfig::default(),
            rate_limits: HashMap::new(),
            cache_ttl: Duration::from_secs(2),
            conflict_retries: 5,
        }
    }
}

/// Why a provider-health operation did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderHealthError {
    /// The table does not exist (wrong name, or the stack is not provisioned).
    #[error("the control table {0:?} does not exist")]
    TableNotFound(String),
    /// Every retry of the conditional write met a newer version.
    #[error("the control item {0:?} kept changing under concurrent writers")]
    Contended(String),
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

/// The item key of a provider's breaker.
pub fn breaker_pk(provider: ProviderId) -> String {
    format!("breaker#{provider}")
}

/// The item key of a provider's token bucket.
pub fn bucket_pk(provider: ProviderId) -> String {
    format!("bucket#{provider}")
}

type Item = HashMap<String, AttributeValue>;

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn status_name(status: CircuitStatus) -> &'static str {
    match status {
        CircuitStatus::Closed => "closed",
        CircuitStatus::Open => "open",
        CircuitStatus::HalfOpen => "half_open",
    }
}

/// Reads numbers and strings of one item, naming the item in errors.
struct Reader<'a> {
    pk: &'a str,
    item: &'a Item,
}

impl Reader<'_> {
    fn corrupt(&self, reason: String) -> ProviderHealthError {
        ProviderHealthError::Corrupt {
            pk: self.pk.to_owned(),
            reason,
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ProviderHealthError> {
        match self.item.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_n()
                .ok()
                .and_then(|v| v.parse::<T>().ok())
                .map(Some)
                .ok_or_else(|| self.corrupt(format!("{name} is not a number in range"))),
        }
    }

    fn required<T: std::str::FromStr>(&self, name: &str) -> Result<T, ProviderHealthError> {
        self.number(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }
}

fn breaker_item(provider: ProviderId, state: &BreakerState, now: UnixMillis) -> Item {
    let mut item = HashMap::from([
        ("pk".to_owned(), s(breaker_pk(provider))),
        ("provider".to_owned(), s(provider.as_str())),
        ("status".to_owned(), s(status_name(state.status))),
        ("failures".to_owned(), n(state.failures)),
        ("probes_in_flight".to_owned(), n(state.probes_in_flight)),
        ("version".to_owned(), n(state.version)),
        ("updated_at_ms".to_owned(), n(now.as_i64())),
    ]);
    for (name, value) in [
        ("window_started_at_ms", state.window_started_at),
        ("opened_at_ms", state.opened_at),
        ("probe_started_at_ms", state.probe_started_at),
    ] {
        if let Some(at) = value {
            item.insert(name.to_owned(), n(at.as_i64()));
        }
    }
    item
}

fn breaker_of(pk: &str, item: &Item) -> Result<BreakerState, ProviderHealthError> {
    let r = Reader { pk, item };
    let status = match item
        .get("status")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
    {
        Some("closed") => CircuitStatus::Closed,
        Some("open") => CircuitStatus::Open,
        Some("half_open") => CircuitStatus::HalfOpen,
        other => return Err(r.corrupt(format!("unknown status {other:?}"))),
    };
    Ok(BreakerState {
        status,
        failures: r.required("failures")?,
        window_started_at: r.number("window_started_at_ms")?.map(UnixMillis),
        opened_at: r.number("opened_at_ms")?.map(UnixMillis),
        probes_in_flight: r.required("probes_in_flight")?,
        probe_started_at: r.number("probe_started_at_ms")?.map(UnixMillis),
        version: r.required("version")?,
    })
}

fn bucket_item(provider: ProviderId, bucket: &TokenBucket, now: UnixMillis) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(bucket_pk(provider))),
        ("provider".to_owned(), s(provider.as_str())),
        ("milli_tokens".to_owned(), n(bucket.milli_tokens)),
        ("refilled_at_ms".to_owned(), n(bucket.refilled_at.as_i64())),
        ("version".to_owned(), n(bucket.version)),
        ("updated_at_ms".to_owned(), n(now.as_i64())),
    ])
}

fn bucket_of(pk: &str, item: &Item) -> Result<TokenBucket, ProviderHealthError> {
    let r = Reader { pk, item };
    Ok(TokenBucket {
        milli_tokens: r.required("milli_tokens")?,
        refilled_at: UnixMillis(r.required("refilled_at_ms")?),
        version: r.required("version")?,
    })
}

/// A state read at some instant.
#[derive(Debug, Clone)]
struct Cached<T> {
    read_at: UnixMillis,
    value: T,
}

type Cache<T> = Arc<Mutex<HashMap<ProviderId, Cached<T>>>>;

/// Where a read may come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The cache if it is fresh enough.
    Cached,
    /// DynamoDB, always.
    Fresh,
}

/// Shared provider health on DynamoDB. Clones share one cache (one per Lambda instance).
#[derive(Debug, Clone)]
pub struct DynamoDbProviderHealth {
    table: crate::dynamodb::TableHandle,
    config: Arc<ProviderHealthConfig>,
    breakers: Cache<BreakerState>,
    buckets: Cache<TokenBucket>,
}

impl DynamoDbProviderHealth {
    /// Provider health in `table` (the `CONTROL_TABLE`).
    pub fn new(client: Client, table: impl Into<String>, config: ProviderHealthConfig) -> Self {
        Self::on(crate::TableHandle::new(client, table), config)
    }

    /// The same adapter on a table handle of the function's DynamoDB foundation.
    pub fn on(table: crate::TableHandle, config: ProviderHealthConfig) -> Self {
        Self {
            table,
            config: Arc::new(config),
            breakers: Arc::default(),
            buckets: Arc::default(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        self.table.name()
    }

    /// The configuration.
    pub fn config(&self) -> &ProviderHealthConfig {
        &self.config
    }

    /// Classifies an SDK error: a missing table is named, anything else is `Unavailable`.
    fn failed<E>(
        &self,
        operation: &'static str,
        err: SdkError<E, HttpResponse>,
    ) -> ProviderHealthError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match crate::sdk::unless_table_missing(operation, err) {
            Some(e) => e.into(),
            None => ProviderHealthError::TableNotFound(self.table.name().to_owned()),
        }
    }

    fn cached<T: Clone>(
        &self,
        cache: &Cache<T>,
        provider: ProviderId,
        now: UnixMillis,
    ) -> Option<T> {
        let cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        let entry = cache.get(&provider)?;
        let fresh = now >= entry.read_at
            && now.saturating_duration_since(entry.read_at) < self.config.cache_ttl;
        fresh.then(|| entry.value.clone())
    }

    fn remember<T>(cache: &Cache<T>, provider: ProviderId, now: UnixMillis, value: T) {
        cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
            provider,
            Cached {
                read_at: now,
                value,
            },
        );
    }

    async fn get_item(&self, pk: &str) -> Result<Option<Item>, ProviderHealthError> {
        let output = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .key("pk", s(pk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.failed("GetItem", e))?;
        Ok(output.item)
    }

    /// Writes `item` if the stored version is still `expected` (or, for version 0, nothing is
    /// stored yet). Returns false on a conflict.
    async fn put_if_version(&self, item: Item, expected: u64) -> Result<bool, ProviderHealthError> {
        let condition = if expected == 0 {
            "attribute_not_exists(pk) OR #version = :expected"
        } else {
            "#version = :expected"
        };
        let result = self
            .table
            .client()
            .put_item()
            .table_name(self.table.name())
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":expected", n(expected))
            .send()
            .await;
        result
            .condition_held()
            .map_err(|err| self.failed("PutItem", err))
    }

    async fn read_breaker(
        &self,
        provider: ProviderId,
        now: UnixMillis,
        read: Read,
    ) -> Result<BreakerState, ProviderHealthError> {
        if read == Read::Cached
            && let Some(state) = self.cached(&self.breakers, provider, now)
        {
            return Ok(state);
        }
        let pk = breaker_pk(provider);
        let state = match self.get_item(&pk).await? {
            Some(item) => breaker_of(&pk, &item)?,
            None => BreakerState::new(),
        };
        Self::remember(&self.breakers, provider, now, state.clone());
        Ok(state)
    }

    /// The breaker state of `provider` as this instance sees it at `now` (cached).
    pub async fn breaker(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> Result<BreakerState, ProviderHealthError> {
        self.read_breaker(provider, UnixMillis::from(now), Read::Cached)
            .await
    }

    /// Applies `step` to the breaker with optimistic concurrency: the state it returns is
    /// written if its version moved, and `step` runs again on a fresh read after a conflict.
    /// Returns what `step` produced for the state that was finally stored (or left alone).
    async fn update_breaker<T>(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
        step: impl Fn(&BreakerState) -> (BreakerState, T),
    ) -> Result<T, ProviderHealthError> {
        let now_ms = UnixMillis::from(now);
        let mut state = self.read_breaker(provider, now_ms, Read::Cached).await?;
        for _ in 0..=self.config.conflict_retries {
            let (next, outcome) = step(&state);
            if next.version == state.version {
                return Ok(outcome);
            }
            if self
                .put_if_version(breaker_item(provider, &next, now_ms), state.version)
                .await?
            {
                Self::remember(&self.breakers, provider, now_ms, next);
                return Ok(outcome);
            }
            state = self.read_breaker(provider, now_ms, Read::Fresh).await?;
        }
        Err(ProviderHealthError::Contended(breaker_pk(provider)))
    }

    /// Whether a call may go to `provider` at `now`. A probe slot of a half-open circuit is
    /// taken with a conditional write, so only one instance gets each slot.
    pub async fn admit(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> Result<Admission, ProviderHealthError> {
        let config = self.config.breaker;
        self.update_breaker(provider, now, |state| match state.admit(&config, now) {
            Admission::Probe(next) => (next.clone(), Admission::Probe(next)),
            other => (state.clone(), other),
        })
        .await
    }

    /// Records a successful call through `provider` (a probe's success closes the circuit).
    /// Returns the breaker state now stored.
    pub async fn record_success(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> Result<BreakerState, ProviderHealthError> {
        let config = self.config.breaker;
        self.update_breaker(provider, now, |state| {
            let next = state.on_success(&config, now);
            (next.clone(), next)
        })
        .await
    }

    /// Records a failure that counts against `provider` (see
    /// `OutcomeClass::counts_against_provider`). Returns the breaker state now stored.
    pub async fn record_failure(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> Result<BreakerState, ProviderHealthError> {
        let config = self.config.breaker;
        self.update_breaker(provider, now, |state| {
            let next = state.on_failure(&config, now);
            (next.clone(), next)
        })
        .await
    }

    async fn read_bucket(
        &self,
        provider: ProviderId,
        limit: &RateLimit,
        now: OffsetDateTime,
        read: Read,
    ) -> Result<TokenBucket, ProviderHealthError> {
        let now_ms = UnixMillis::from(now);
        if read == Read::Cached
            && let Some(bucket) = self.cached(&self.buckets, provider, now_ms)
        {
            return Ok(bucket);
        }
        let pk = bucket_pk(provider);
        let bucket = match self.get_item(&pk).await? {
            Some(item) => bucket_of(&pk, &item)?,
            None => TokenBucket::full(limit, now),
        };
        Self::remember(&self.buckets, provider, now_ms, bucket.clone());
        Ok(bucket)
    }

    /// Takes one token of `provider`'s shared budget at `now`: `Ok(Ok(()))` when taken,
    /// `Ok(Err(TakeDenied::RetryAt(at)))` when the budget is spent until `at`. A provider with no
    /// configured limit always gets its token, without a call. A cached bucket can only show more
    /// tokens than are stored (other instances only take), so a refusal read from the cache is
    /// final and a grant is confirmed by the conditional write.
    pub async fn take_token(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> Result<Result<(), TakeDenied>, ProviderHealthError> {
        let Some(limit) = self.config.rate_limits.get(&provider).copied() else {
            return Ok(Ok(()));
        };
        let now_ms = UnixMillis::from(now);
        let mut bucket = self
            .read_bucket(provider, &limit, now, Read::Cached)
            .await?;
        for _ in 0..=self.config.conflict_retries {
            let next = match bucket.try_take(&limit, now, 1) {
                Ok(next) => next,
                Err(denied) => return Ok(Err(denied)),
            };
            if self
                .put_if_version(bucket_item(provider, &next, now_ms), bucket.version)
                .await?
            {
                Self::remember(&self.buckets, provider, now_ms, next);
                return Ok(Ok(()));
            }
            bucket = self.read_bucket(provider, &limit, now, Read::Fresh).await?;
        }
        Err(ProviderHealthError::Contended(bucket_pk(provider)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_items_round_trip() {
        let state = BreakerState {
            status: CircuitStatus::HalfOpen,
            failures: 5,
            window_started_at: Some(UnixMillis(1_000)),
            opened_at: Some(UnixMillis(2_000)),
            probes_in_flight: 1,
            probe_started_at: Some(UnixMillis(3_000)),
            version: 7,
        };
        let item = breaker_item(ProviderId::Sendgrid, &state, UnixMillis(4_000));
        assert_eq!(item["pk"].as_s().unwrap(), "breaker#sendgrid");
        assert_eq!(item["status"].as_s().unwrap(), "half_open");
        assert_eq!(breaker_of("breaker#sendgrid", &item).unwrap(), state);

        let closed = BreakerState::new();
        let item = breaker_item(ProviderId::Ses, &closed, UnixMillis(0));
        assert!(!item.contains_key("opened_at_ms"));
        assert_eq!(breaker_of("breaker#ses", &item).unwrap(), closed);
    }

    #[test]
    fn bucket_items_round_trip() {
        let bucket = TokenBucket {
            milli_tokens: 2_500,
            refilled_at: UnixMillis(1_750_000_000_000),
            version: 3,
        };
        let item = bucket_item(ProviderId::Mailgun, &bucket, UnixMillis(0));
        assert_eq!(item["pk"].as_s().unwrap(), "bucket#mailgun");
        assert_eq!(bucket_of("bucket#mailgun", &item).unwrap(), bucket);
    }

    #[test]
    fn unreadable_items_are_corrupt() {
        let item = HashMap::from([("status".to_owned(), s("ajar"))]);
        assert!(matches!(
            breaker_of("breaker#ses", &item),
            Err(ProviderHealthError::Corrupt { .. })
        ));
    }
}
