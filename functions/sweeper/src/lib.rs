//! `sweeper`: runs on an EventBridge schedule. Its jobs: re-enqueue webhook receipts left
//! `received` for longer than `WEBHOOK_REQUEUE_AFTER_SECS` (the enqueue after persisting
//! failed, or the function died between the two); `release_scheduled`, which puts scheduled
//! messages due within 15 minutes on the send queue; and `release_paused`, which releases bulk
//! messages held by the pause switch once it is off (see [`release`] for the order of the steps).
//! Each tick reports what every job moved.

pub mod release;

use std::sync::Arc;

use mailgate_aws::{
    AwsClients, ConfigError, DynamoDbMessages, DynamoDbSendControls, Queue, ResourceNames,
    StoreError, Table,
};
use mailgate_core::{Clock, ProviderId, SystemClock, UnixMillis};
use mailgate_lambda::ingest::Ingestion;
use mailgate_lambda::webhook::positive_setting;
use release::{Release, ReleaseError};
use serde::{Deserialize, Serialize};

/// The Lambda function name.
pub const FUNCTION_NAME: &str = "sweeper";
/// Receipts still `received` after this long are re-enqueued (`WEBHOOK_REQUEUE_AFTER_SECS`).
pub const DEFAULT_REQUEUE_AFTER_SECS: i64 = 300;
/// Receipts re-enqueued per provider per tick at most.
pub const REQUEUE_BATCH: i32 = 100;

/// Typed configuration, loaded once per cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tables and queues.
    pub names: ResourceNames,
    /// Age after which a `received` receipt counts as stuck.
    pub requeue_after_secs: i64,
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let names = ResourceNames::from_lookup(
            &[
                Table::Messages,
                Table::Receipts,
                Table::Dedupe,
                Table::Control,
            ],
            &[Queue::Send, Queue::Events],
            &lookup,
        );
        let age = positive_setting(
            &lookup,
            "WEBHOOK_REQUEUE_AFTER_SECS",
            DEFAULT_REQUEUE_AFTER_SECS,
        );
        match (names, age) {
            (Ok(names), Ok(requeue_after_secs)) => Ok(Self {
                names,
                requeue_after_secs,
            }),
            (names, age) => {
                let mut problems = names.err().map(|e| e.problems).unwrap_or_default();
                problems.extend(age.err());
                Err(ConfigError { problems })
            }
        }
    }
}

/// Why a tick failed (after every job ran).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SweepError {
    /// Webhook receipts could not be read or re-enqueued.
    #[error(transparent)]
    Receipts(#[from] StoreError),
    /// Held messages could not be released.
    #[error(transparent)]
    Release(#[from] ReleaseError),
}

/// The fields of an EventBridge scheduled event the sweeper reads.
#[derive(Debug, Deserialize)]
pub struct ScheduledTick {
    /// Always `Scheduled Event` for a schedule.
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    /// When EventBridge fired the schedule.
    pub time: String,
}

/// What one tick did.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    /// The tick's time, as sent by EventBridge.
    pub tick: String,
    /// The jobs that ran, with how many items each moved.
    pub jobs: Vec<(String, u64)>,
}

/// The function with its clients.
#[derive(Clone)]
pub struct Sweeper {
    config: Config,
    ingestion: Ingestion,
    release: Release,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Sweeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweeper")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Sweeper {
    /// Wires the function on the system clock.
    pub fn new(config: Config, clients: AwsClients) -> Self {
        Self::with_clock(config, clients, Arc::new(SystemClock))
    }

    /// Wires the function on `clock`.
    pub fn with_clock(config: Config, clients: AwsClients, clock: Arc<dyn Clock>) -> Self {
        // Retention and replay windows only matter when recording; the sweeper never records.
        let ingestion = Ingestion::on(&clients, &config.names, 0, 0);
        let release = Release::new(
            DynamoDbMessages::new(
                clients.dynamodb.clone(),
                config.names.table(Table::Messages).to_owned(),
            ),
            DynamoDbSendControls::new(clients.dynamodb.clone(), config.names.table(Table::Control)),
            clients.sqs.clone(),
            config.names.queue_url(Queue::Send),
        );
        Self {
            config,
            ingestion,
            release,
            clock,
        }
    }

    /// Runs every job once. A job (or a provider's receipts) that failed is reported as an error
    /// after the others ran, so the invocation fails visibly and EventBridge retries it.
    pub async fn handle(&self, tick: ScheduledTick) -> Result<SweepReport, SweepError> {
        tracing::info!(detail_type = %tick.detail_type, time = %tick.time, "sweep tick");
        let mut jobs = Vec::new();
        let mut first_error = None;
        for provider in ProviderId::ALL {
            let result = self
                .ingestion
                .requeue_stale(
                    provider,
                    self.config.requeue_after_secs,
                    REQUEUE_BATCH,
                    self.clock.as_ref(),
                )
                .await;
            match result {
                Ok(report) => {
                    if report.requeued > 0 || report.failed > 0 {
                        tracing::warn!(%provider, requeued = report.requeued, events = report.events, failed = report.failed, "re-enqueued stuck webhook receipts");
                    }
                    jobs.push((format!("requeue_receipts:{provider}"), report.requeued));
                }
                Err(e) => {
                    tracing::error!(%provider, error = %e, "could not sweep webhook receipts");
                    first_error.get_or_insert(SweepError::from(e));
                }
            }
        }
        let now = UnixMillis::from(self.clock.now());
        for (job, result) in [
            (
                "release_scheduled",
                self.release.release_scheduled(now).await,
            ),
            ("release_paused", self.release.release_paused(now).await),
        ] {
            match result {
                Ok(report) => {
                    if report.released > 0 || report.paused > 0 {
                        tracing::info!(
                            job,
                            released = report.released,
                            delayed = report.delayed,
                            paused = report.paused,
                            skipped = report.skipped,
                            "released held messages"
                        );
                    }
                    jobs.push((job.to_owned(), report.released));
                }
                Err(e) => {
                    tracing::error!(job, error = %e, "could not release held messages");
                    first_error.get_or_insert(SweepError::from(e));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(SweepReport {
                tick: tick.time,
                jobs,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scheduled_event_fixture() {
        let path = format!(
            "{}/../../events/sweeper/scheduled.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let tick: ScheduledTick =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(tick.detail_type, "Scheduled Event");
    }
}
