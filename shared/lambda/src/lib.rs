//! Lambda glue shared by mailgate's functions: one tracing setup, JSON responses with the error
//! shape every endpoint uses, an SQS batch driver that reports partial batch failures, EMF
//! metrics, the webhook front door, and the wiring of the services on the real adapters.

pub mod app_webhook_http;
pub mod events;
pub mod health;
pub mod http;
pub mod inbound;
pub mod metrics;
pub mod poison;
pub mod sqs;
pub mod webhook;
pub mod wiring;

/// Installs JSON logging (level from `RUST_LOG`, default `info`) for a function's process.
pub fn init_tracing() {
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Whatever RUST_LOG says, no trace lines from the AWS SDK and the Lambda runtime: at trace
    // they log whole DynamoDB items and raw invocation events (addresses, content, secrets).
    let no_raw_payloads = filter_fn(|meta| {
        *meta.level() != tracing::Level::TRACE
            || !RAW_PAYLOAD_TARGETS
                .iter()
                .any(|t| meta.target().starts_with(t))
    });
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .with_filter(filter)
        .with_filter(no_raw_payloads);
    // `try_init` so a test binary that already installed a subscriber keeps it.
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Log targets whose trace-level lines carry raw requests, responses or events.
const RAW_PAYLOAD_TARGETS: &[&str] = &["aws_smithy", "aws_sdk_", "lambda_runtime", "lambda_http"];
