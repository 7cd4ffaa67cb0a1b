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
    /// S3 (inbound email), path-style when an endpoint override is set.
    pub s3: aws_sdk_s3::Client,
}

impl AwsClients {
    /// Builds every client from one shared configuration.
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            ses: aws_sdk_sesv2::Client::new(config),
            s3: crate::inbound::S3InboundObjects::client(config),
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

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::error::ErrorMetadata;
    use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;

    use super::*;

    fn service(code: &str, status: u16) -> SdkError<SendMessageBatchError, HttpResponse> {
        let err = SendMessageBatchError::generic(ErrorMetadata::builder().code(code).build());
        let raw = HttpResponse::new(status.try_into().unwrap(), "".into());
        SdkError::service_error(err, raw)
    }

    #[test]
    fn service_errors_are_classified_by_code_then_status() {
        for (code, status, kind) in [
            (
                "ResourceNotFoundException",
                400,
                StoreErrorKind::MissingResource,
            ),
            ("QueueDoesNotExist", 400, StoreErrorKind::MissingResource),
            (
                "AWS.SimpleQueueService.NonExistentQueue",
                400,
                StoreErrorKind::MissingResource,
            ),
            (
                "ConditionalCheckFailedException",
                400,
                StoreErrorKind::ConditionFailed,
            ),
            (
                "ProvisionedThroughputExceededException",
                400,
                StoreErrorKind::Throttled,
            ),
            ("ThrottlingException", 400, StoreErrorKind::Throttled),
            ("RequestLimitExceeded", 400, StoreErrorKind::Throttled),
            ("RequestThrottled", 403, StoreErrorKind::Throttled),
            ("SomethingNew", 429, StoreErrorKind::Throttled),
            ("InternalServerError", 500, StoreErrorKind::Transient),
            ("SomethingNew", 503, StoreErrorKind::Transient),
            ("ValidationException", 400, StoreErrorKind::Other),
            ("AccessDeniedException", 400, StoreErrorKind::Other),
        ] {
            assert_eq!(error_kind(&service(code, status)), kind, "{code} {status}");
        }
    }

    #[test]
    fn timeouts_and_dispatch_failures_are_transient_and_a_bad_request_is_not() {
        let timeout: SdkError<SendMessageBatchError, HttpResponse> =
            SdkError::timeout_error("took too long");
        assert_eq!(error_kind(&timeout), StoreErrorKind::Transient);
        let io: SdkError<SendMessageBatchError, HttpResponse> = SdkError::dispatch_failure(
            aws_sdk_sqs::error::ConnectorError::io("connection reset".into()),
        );
        assert_eq!(error_kind(&io), StoreErrorKind::Transient);
        let built: SdkError<SendMessageBatchError, HttpResponse> =
            SdkError::construction_failure("missing queue url");
        assert_eq!(error_kind(&built), StoreErrorKind::Other);
    }

    #[test]
    fn the_store_error_keeps_the_sdk_error_as_its_source_and_its_context_as_text() {
        use std::error::Error;
        let err = store_error("SendMessageBatch", service("ThrottlingException", 400));
        assert_eq!(err.kind(), StoreErrorKind::Throttled);
        assert_eq!(err.operation(), "SendMessageBatch");
        assert!(err.to_string().contains("ThrottlingException"), "{err}");
        let sdk = err.source().and_then(|s| s.source()).unwrap();
        assert!(
            sdk.downcast_ref::<SdkError<SendMessageBatchError, HttpResponse>>()
                .is_some()
        );
    }
}
