//! Lambda glue shared by mailgate's functions: one tracing setup, JSON responses with the error
//! shape every endpoint uses, an SQS batch driver that reports partial batch failures, EMF
//! metrics, and webhook ingestion (the front door and the receipt → queue pipeline).

pub mod app_webhooks;
pub mod delivery;
pub mod health;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod send;
pub mod sqs;
pub mod webhook;

/// Installs JSON logging (level from `RUST_LOG`, default `info`) for a function's process.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // `try_init` so a test binary that already installed a subscriber keeps it.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_target(false)
        .without_time()
        .try_init();
}
