//! Loading the AWS SDK configuration and building clients once per cold start, and turning an
//! SDK error into a classified [`StoreError`].

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use mailgate_core::{StoreError, StoreErrorKind};

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

/// An SDK call that failed: its full error context as text (what logs need: code, message,
/// request id) and the SDK error itself as the source.
#[derive(Debug)]
struct SdkFailure<E> {
    detail: String,
    source: E,
}

impl<E> std::fmt::Display for SdkFailure<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl<E: std::error::Error + 'static> std::error::Error for SdkFailure<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Service error codes that say the table or queue does not exist.
const MISSING_RESOURCE_CODES: &[&str] = &[
    "ResourceNotFoundException",
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
];
/// Service error codes that say the call was throttled.
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
];
/// Service error codes that say the service failed on its side.
const TRANSIENT_CODES: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
];

/// What kind of failure an SDK error is: a missing table or queue, a failed condition,
/// throttling, a transient fault (timeout, dispatch/IO failure, 5xx), or anything else.
pub fn error_kind<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> StoreErrorKind {
    match err {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or_default();
            let status = ctx.raw().status().as_u16();
            if MISSING_RESOURCE_CODES.contains(&code) {
                StoreErrorKind::MissingResource
            } else if code.starts_with("ConditionalCheckFailed") {
                StoreErrorKind::ConditionFailed
            } else if THROTTLING_CODES.contains(&code) || status == 429 {
                StoreErrorKind::Throttled
            } else if TRANSIENT_CODES.contains(&code) || (500..600).contains(&status) {
                StoreErrorKind::Transient
            } else {
                StoreErrorKind::Other
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreErrorKind::Transient
        }
        _ => StoreErrorKind::Other,
    }
}

/// An SDK error of `operation` as a classified [`StoreError`] (see [`error_kind`]), keeping the
/// SDK error as its source and its full context as the message.
pub fn store_error<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let kind = error_kind(&err);
    store_error_as(kind, operation, err)
}

/// An SDK error of `operation` as a [`StoreError`] of `kind`, for callers that know better than
/// the error's code (e.g. a cancelled transaction's per-item reasons).
pub fn store_error_as<E>(
    kind: StoreErrorKind,
    operation: &'static str,
    err: SdkError<E, HttpResponse>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = DisplayErrorContext(&err).to_string();
    StoreError::new(
        kind,
        operation,
        SdkFailure {
            detail,
            source: err,
        },
    )
}
