//! `sweeper`: runs on an EventBridge schedule. Its jobs (re-enqueue webhook receipts stuck in
//! `received`, release due scheduled and resumed sends) arrive with the webhook and send issues;
//! each tick reports which jobs ran.

use mailgate_aws::{AwsClients, ConfigError, Queue, ResourceNames, Table};
use serde::{Deserialize, Serialize};

/// The Lambda function name.
pub const FUNCTION_NAME: &str = "sweeper";

/// Typed configuration, loaded once per cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tables and queues.
    pub names: ResourceNames,
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            names: ResourceNames::from_env(
                &[Table::Messages, Table::Receipts],
                &[Queue::Send, Queue::Events],
            )?,
        })
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
#[derive(Debug, Clone)]
pub struct Sweeper {
    #[allow(dead_code)] // read by the jobs that land with the webhook and send issues
    config: Config,
    #[allow(dead_code)]
    clients: AwsClients,
}

impl Sweeper {
    /// Wires the function.
    pub fn new(config: Config, clients: AwsClients) -> Self {
        Self { config, clients }
    }

    /// Runs every registered job once.
    pub async fn handle(&self, tick: ScheduledTick) -> SweepReport {
        tracing::info!(detail_type = %tick.detail_type, time = %tick.time, "sweep tick");
        SweepReport {
            tick: tick.time,
            jobs: Vec::new(),
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
