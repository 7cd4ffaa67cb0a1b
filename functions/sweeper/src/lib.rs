//! `sweeper`: runs on an EventBridge schedule. Its jobs: re-enqueue webhook receipts left
//! `received` for longer than `WEBHOOK_REQUEUE_AFTER_SECS` (the enqueue after persisting
//! failed, or the function died between the two); `release_scheduled`, which puts scheduled
//! messages due within 15 minutes on the send queue; and `release_paused`, which releases bulk
//! messages held by the pause switch once it is off (see [`release`] for the order of the steps).
//! Each tick reports what every job moved. The jobs live in `mailgate_services::sweep`; this
//! crate decodes the tick, calls them and encodes the report.

use std::sync::Arc;

use mailgate_aws::{AwsClients, ConfigError, Queue, ResourceNames, Table};
use mailgate_core::{Clock, SystemClock};
use mailgate_lambda::webhook::positive_setting;
use mailgate_lambda::wiring;
pub use mailgate_services::release;
use mailgate_services::sweep::Sweep;
pub use mailgate_services::sweep::{REQUEUE_BATCH, SweepError};
use serde::{Deserialize, Serialize};

/// The Lambda function name.
pub const FUNCTION_NAME: &str = "sweeper";
/// Receipts still `received` after this long are re-enqueued (`WEBHOOK_REQUEUE_AFTER_SECS`).
pub const DEFAULT_REQUEUE_AFTER_SECS: i64 = 300;

/// Enqueue attempts of a receipt before it is marked `failed` (`RECEIPT_MAX_ATTEMPTS`).
pub const DEFAULT_RECEIPT_MAX_ATTEMPTS: i64 = 5;

/// Typed configuration, loaded once per cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tables and queues.
    pub names: ResourceNames,
    /// Age after which a `received` receipt counts as stuck.
    pub requeue_after_secs: i64,
    /// Enqueue attempts of a receipt before it is marked `failed`.
    pub receipt_max_attempts: u32,
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
        let attempts = positive_setting(
            &lookup,
            "RECEIPT_MAX_ATTEMPTS",
            DEFAULT_RECEIPT_MAX_ATTEMPTS,
        );
        match (names, age, attempts) {
            (Ok(names), Ok(requeue_after_secs), Ok(attempts)) => Ok(Self {
                names,
                requeue_after_secs,
                receipt_max_attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            }),
            (names, age, attempts) => {
                let mut problems = names.err().map(|e| e.problems).unwrap_or_default();
                problems.extend(age.err());
                problems.extend(attempts.err());
                Err(ConfigError { problems })
            }
        }
    }
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
    sweep: Sweep,
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
        let ingestion = wiring::ingestion(&clients, &config.names, 0, 0)
            .with_max_attempts(config.receipt_max_attempts);
        let release = wiring::release(&clients, &config.names);
        let sweep = Sweep::new(ingestion, release, config.requeue_after_secs, clock);
        Self { config, sweep }
    }

    /// Runs every job once. A job (or a provider's receipts) that failed is reported as an error
    /// after the others ran, so the invocation fails visibly and EventBridge retries it.
    pub async fn handle(&self, tick: ScheduledTick) -> Result<SweepReport, SweepError> {
        tracing::info!(detail_type = %tick.detail_type, time = %tick.time, "sweep tick");
        let jobs = self.sweep.run().await?;
        count_stalled(&jobs);
        Ok(SweepReport {
            tick: tick.time,
            jobs,
        })
    }
}

/// The stalled messages' and receipts' figures as metrics: `StalledMessagesRequeued` (a pointer was missing),
/// `StalledMessagesFailed` and `LapsedSendsUnknown` (each alarmed in the template).
fn count_stalled(jobs: &[(String, u64)]) {
    use mailgate_services::sweep::{
        JOB_ABANDON_LAPSED, JOB_FAIL_RECEIPTS, JOB_FAIL_STALLED, JOB_REQUEUE_STALLED,
    };
    // `WebhookReceiptsFailed` per provider (alarmed): receipts given up on.
    for (job, n) in jobs {
        if let Some(provider) = job
            .strip_prefix(JOB_FAIL_RECEIPTS)
            .and_then(|rest| rest.strip_prefix(':'))
            && *n > 0
        {
            mailgate_lambda::metrics::count("WebhookReceiptsFailed", *n, &[("Provider", provider)]);
        }
    }
    for (job, metric) in [
        (JOB_REQUEUE_STALLED, "StalledMessagesRequeued"),
        (JOB_FAIL_STALLED, "StalledMessagesFailed"),
        (JOB_ABANDON_LAPSED, "LapsedSendsUnknown"),
    ] {
        if let Some((_, n)) = jobs.iter().find(|(j, _)| j == job)
            && *n > 0
        {
            mailgate_lambda::metrics::count(metric, *n, &[]);
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
