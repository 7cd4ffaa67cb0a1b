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
///
/// `RUST_LOG` is read as `Targets` directives (`info`, `warn,mailgate_aws=debug`): levels per
/// target prefix, no span or field filters. `EnvFilter`'s regex engine would add about 300 KB
/// to every bootstrap for syntax the functions' `LogLevel` never uses. An unreadable value falls
/// back to `info` and says so.
pub fn init_tracing() {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, unreadable) = log_filter(std::env::var("RUST_LOG").ok().as_deref());
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
    if let Some(error) = unreadable {
        tracing::warn!(%error, "RUST_LOG is not a list of level directives; logging at info");
    }
}

/// The filter `RUST_LOG` (`value`) asks for, and why it was not readable if it was not (then
/// everything at `info` and above).
fn log_filter(value: Option<&str>) -> (tracing_subscriber::filter::Targets, Option<String>) {
    use tracing_subscriber::filter::Targets;
    let info = || Targets::new().with_default(tracing::Level::INFO);
    match value
        .filter(|v| !v.trim().is_empty())
        .map(str::parse::<Targets>)
    {
        Some(Ok(targets)) => (targets, None),
        Some(Err(e)) => (info(), Some(e.to_string())),
        None => (info(), None),
    }
}

/// Log targets whose trace-level lines carry raw requests, responses or events.
const RAW_PAYLOAD_TARGETS: &[&str] = &["aws_smithy", "aws_sdk_", "lambda_runtime", "lambda_http"];

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;
    use tracing_subscriber::filter::LevelFilter;

    #[test]
    fn rust_log_reads_as_level_directives_and_anything_else_falls_back_to_info() {
        let (targets, error) = log_filter(Some("warn,mailgate_aws=debug"));
        assert_eq!(error, None);
        assert!(targets.would_enable("mailgate_aws::messages", &Level::DEBUG));
        assert!(!targets.would_enable("send_api", &Level::INFO));
        let (targets, error) = log_filter(None);
        assert_eq!(
            (targets.default_level(), error),
            (Some(LevelFilter::INFO), None)
        );
        let (targets, error) = log_filter(Some("info,mailgate=loud"));
        assert_eq!(targets.default_level(), Some(LevelFilter::INFO));
        assert!(error.is_some());
    }
}
