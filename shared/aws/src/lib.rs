//! AWS adapters for mailgate: SDK configuration, the names of the tables and queues a function
//! uses, and a resource health check. Later modules implement the core crate's ports (stores and
//! queues) on DynamoDB and SQS.

pub mod config;
pub mod health;
pub mod sdk;

pub use config::{ConfigError, Queue, ResourceNames, Table};
pub use health::{HealthReport, ResourceCheck, ResourceState, check_resources};
pub use sdk::{AwsClients, load_sdk_config};
