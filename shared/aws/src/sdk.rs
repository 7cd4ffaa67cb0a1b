//! Loading the AWS SDK configuration and building clients once per cold start, and turning an
//! SDK error into a classified [`StoreError`].

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use mailgate_core::{StoreError, StoreErrorKind};

/// The SDK configuration of a Lambda function, read from what Lambda sets in every function's
/// environment: `AWS_REGION` (else `AWS_DEFAULT_REGION`), the role's credentials in
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, and `AWS_ENDPOINT_URL`
/// when set (the local emulator). Unlike [`load_sdk_config`]'s default chain it probes nothing
/// at init (no profile files, no instance metadata, no STS) and links none of it: about 400 KB
/// of every bootstrap (issue 14). Retries, timeouts and the sleep come from each client's
/// defaults, as they do under the default chain; the HTTPS client is the SDK's default one,
/// shared by every client ([`shared_https_client`]).
pub fn function_sdk_config() -> SdkConfig {
    function_sdk_config_from(|name| std::env::var(name).ok())
}

/// [`function_sdk_config`] with the settings read through `lookup` (credentials always come
/// from the process environment, when a request is signed).
pub fn function_sdk_config_from(lookup: impl Fn(&str) -> Option<String>) -> SdkConfig {
    let setting = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(shared_https_client())
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_config::environment::EnvironmentVariableCredentialsProvider::new(),
            ),
        );
    if let Some(region) = setting("AWS_REGION").or_else(|| setting("AWS_DEFAULT_REGION")) {
        builder = builder.region(aws_config::Region::new(region.trim().to_owned()));
    }
    if let Some(endpoint) = setting("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(endpoint.trim());
    }
    builder.build()
}

/// The HTTPS client the SDK gives each client by default (hyper 1, rustls on aws-lc, proxy
/// settings from the environment), built once for all of a function's clients and with its TLS
/// set up on the first request.
///
/// Left to its defaults, every client gets a client of its own, and each one reads and parses
/// the system's root certificates when it is built, to check its configuration, and throws the
/// result away: three or four parses of ~150 roots at every cold start, before the first
/// `invocation/next`, plus one more on each client's first request. Shared and lazy, a process
/// parses them once, when it first talks to AWS, and the clients share one connection pool.
pub fn shared_https_client() -> SharedHttpClient {
    use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig, tls};
    let client = Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    SharedHttpClient::new(ConnectOnFirstRequest(client))
}

/// An HTTP client whose connectors (and so its TLS configuration) are built when a request
/// needs one, never to validate a client's configuration (see [`shared_https_client`]).
#[derive(Debug)]
struct ConnectOnFirstRequest(SharedHttpClient);

impl HttpClient for ConnectOnFirstRequest {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        // The inner client caches one connector per distinct settings.
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// Loads region, credentials and endpoint from the standard chain (the admin tool, run by
/// people with profiles and SSO).
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
    /// The configuration they were built from, for the clients only some functions need (S3 for
    /// inbound email: `S3InboundObjects::client`, or `S3DownloadLinks` to sign links without
    /// one), so the others do not link them.
    pub sdk: SdkConfig,
}

impl AwsClients {
    /// Builds every client from one shared configuration.
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            ses: aws_sdk_sesv2::Client::new(config),
            sdk: config.clone(),
        }
    }

    /// The DynamoDB foundation of a function: the one client and the tables in `names`.
    pub fn dynamodb_tables(&self, names: &crate::ResourceNames) -> crate::DynamoDb {
        crate::DynamoDb::new(self.dynamodb.clone(), names.clone())
    }

    /// Reads a function's configuration from the environment ([`function_sdk_config`]) and
    /// builds every client.
    pub async fn from_env() -> Self {
        Self::new(&function_sdk_config())
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

/// What kind of failure a `TransactWriteItems` error is. A cancelled transaction names its
/// cause per item: throttling and conflicting transactions pass (retry), a failed condition is
/// a condition, anything else is classified as any other SDK error.
pub fn transaction_error_kind(
    err: &SdkError<TransactWriteItemsError, HttpResponse>,
) -> StoreErrorKind {
    let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        err.as_service_error()
    else {
        return error_kind(err);
    };
    let cause = |codes: &[&str]| {
        cancelled
            .cancellation_reasons()
            .iter()
            .filter_map(|r| r.code())
            .any(|c| codes.contains(&c))
    };
    if cause(&["ThrottlingError", "ProvisionedThroughputExceeded"]) {
        StoreErrorKind::Throttled
    } else if cause(&["TransactionConflict"]) {
        StoreErrorKind::Transient
    } else if cause(&["ConditionalCheckFailed"]) {
        StoreErrorKind::ConditionFailed
    } else {
        error_kind(err)
    }
}

/// A `TransactWriteItems` error as a classified [`StoreError`] (see [`transaction_error_kind`]).
pub fn transaction_error(err: SdkError<TransactWriteItemsError, HttpResponse>) -> StoreError {
    store_error_as(transaction_error_kind(&err), "TransactWriteItems", err)
}

/// An SDK error of `operation` as a classified [`StoreError`], or `None` when it says the table
/// or queue does not exist, which the adapters report by name (their `TableNotFound`).
pub(crate) fn unless_table_missing<E>(
    operation: &'static str,
    err: SdkError<E, HttpResponse>,
) -> Option<StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match error_kind(&err) {
        StoreErrorKind::MissingResource => None,
        kind => Some(store_error_as(kind, operation, err)),
    }
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
    fn a_functions_configuration_takes_region_and_endpoint_from_its_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let sdk = function_sdk_config_from(env(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ]));
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:4566"));
        assert!(sdk.credentials_provider().is_some());
        let sdk = function_sdk_config_from(env(&[("AWS_DEFAULT_REGION", "us-east-2")]));
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("us-east-2"));
        assert_eq!(sdk.endpoint_url(), None);
        assert_eq!(function_sdk_config_from(env(&[])).region(), None);
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

    fn cancelled(codes: &[&str]) -> SdkError<TransactWriteItemsError, HttpResponse> {
        use aws_sdk_dynamodb::types::CancellationReason;
        use aws_sdk_dynamodb::types::error::TransactionCanceledException;
        let reasons = codes
            .iter()
            .map(|c| CancellationReason::builder().code(*c).build())
            .collect();
        let err = TransactionCanceledException::builder()
            .set_cancellation_reasons(Some(reasons))
            .meta(
                ErrorMetadata::builder()
                    .code("TransactionCanceledException")
                    .build(),
            )
            .build();
        let raw = HttpResponse::new(400.try_into().unwrap(), "".into());
        SdkError::service_error(
            TransactWriteItemsError::TransactionCanceledException(err),
            raw,
        )
    }

    #[test]
    fn a_cancelled_transaction_is_classified_by_its_items_reasons() {
        for (codes, kind) in [
            (&["None", "ThrottlingError"][..], StoreErrorKind::Throttled),
            (
                &["ProvisionedThroughputExceeded", "None"][..],
                StoreErrorKind::Throttled,
            ),
            (
                &["TransactionConflict", "None"][..],
                StoreErrorKind::Transient,
            ),
            (
                &["None", "ConditionalCheckFailed"][..],
                StoreErrorKind::ConditionFailed,
            ),
            (&["ValidationError", "None"][..], StoreErrorKind::Other),
        ] {
            let err = transaction_error(cancelled(codes));
            assert_eq!(err.kind(), kind, "{codes:?}");
            assert_eq!(err.operation(), "TransactWriteItems");
        }
        let throttled: SdkError<TransactWriteItemsError, HttpResponse> = SdkError::service_error(
            TransactWriteItemsError::generic(
                ErrorMetadata::builder()
                    .code("ProvisionedThroughputExceededException")
                    .build(),
            ),
            HttpResponse::new(400.try_into().unwrap(), "".into()),
        );
        assert_eq!(
            transaction_error_kind(&throttled),
            StoreErrorKind::Throttled
        );
    }

    #[test]
    fn a_missing_table_is_left_for_the_adapter_to_name_and_anything_else_is_classified() {
        assert!(
            unless_table_missing(
                "SendMessageBatch",
                service("ResourceNotFoundException", 400)
            )
            .is_none()
        );
        for (code, status, kind) in [
            ("ThrottlingException", 400, StoreErrorKind::Throttled),
            ("InternalServerError", 500, StoreErrorKind::Transient),
            ("ValidationException", 400, StoreErrorKind::Other),
        ] {
            let err = unless_table_missing("PutItem", service(code, status)).unwrap();
            assert_eq!(err.kind(), kind, "{code}");
            assert_eq!(err.is_retryable(), kind != StoreErrorKind::Other, "{code}");
        }
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
