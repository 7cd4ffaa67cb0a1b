//! Loading the AWS SDK configuration and building clients once per cold start.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads region, credentials and endpoint from the standard chain.
///
/// `AWS_ENDPOINT_URL` (and the per-service `AWS_ENDPOINT_URL_<SERVICE>`) is honoured by the SDK
/// itself, which is how functions talk to the local emulator without a code path of their own.
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// The SDK clients a mailgate function may use, built once and shared by every invocation.
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// SES (API v2).
    pub ses: aws_sdk_sesv2::Client,
}

impl AwsClients {
    /// Builds every client from one shared configuration.
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            ses: aws_sdk_sesv2::Client::new(config),
        }
    }

    /// Loads the configuration from the environment and builds every client.
    pub async fn from_env() -> Self {
        Self::new(&load_sdk_config().await)
    }
}
