//! `send-worker`: consumes the send queue (messages accepted onto the asynchronous send path). The processing of its messages
//! arrives with a later issue; until then every record stays on the queue so nothing is lost.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use mailgate_aws::{AwsClients, ConfigError, Queue, ResourceNames, Table};

/// The Lambda function name.
pub const FUNCTION_NAME: &str = "send-worker";

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
            names: ResourceNames::from_env(&[Table::Messages], &[Queue::Send])?,
        })
    }
}

/// The function with its clients.
#[derive(Debug, Clone)]
pub struct Function {
    #[allow(dead_code)] // read by the processing that lands with the later issue
    config: Config,
    #[allow(dead_code)]
    clients: AwsClients,
}

impl Function {
    /// Wires the function.
    pub fn new(config: Config, clients: AwsClients) -> Self {
        Self { config, clients }
    }

    /// Handles one SQS batch, reporting the records to retry.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        mailgate_lambda::sqs::hold_batch(FUNCTION_NAME, event).await
    }
}
