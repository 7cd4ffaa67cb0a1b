//! Figure A of `make bench` (pure: no AWS). A realistic, signed 1,000-event SendGrid batch is
//! generated, written to `target/tmp/`, read back, and then the CPU work a webhook request does
//! on it before any AWS call is measured with criterion:
//!
//! - `sendgrid_batch_1000_verify_split_queue_messages`: what `webhook-sendgrid` does per
//!   request — `SendgridWebhookVerifier::verify_delivery` (ECDSA P-256 over `timestamp ‖ body`,
//!   then `sendgrid::payload`: the body hash that keys the receipt and the split into raw
//!   events) and `mailgate_core::queue_messages` (one queue message per event);
//! - the same three steps measured alone (`_verify_signature`, `_split_events`,
//!   `_queue_messages`), to show where the time goes.
//!
//! Events are not normalised into `DeliveryEvent` here (a later issue). Each figure is
//! criterion's median time per batch, read back from the `estimates.json` it writes under
//! `target/criterion/`, and printed as `bench <name> <ns> ns_per_event` (plus the whole batch
//! in `ms_per_batch` for the end-to-end figure).

mod support;

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use criterion::Criterion;
use lambda_http::http::{HeaderMap, HeaderName, HeaderValue};
use mailgate_aws::receipt_key;
use mailgate_core::queue_messages;
use mailgate_core::{FixedClock, ProviderId};
use mailgate_providers::sendgrid::{self, SendgridWebhookVerifier};
use mailgate_tests::webhooks::{sendgrid_headers, sendgrid_key, sendgrid_public_key};
use support::figure;

/// Events in the batch.
const EVENTS: usize = 1_000;
/// When the batch was signed (and where the verifier's clock stands).
const SIGNED_AT: i64 = 1_795_442_400;
/// SendGrid's default window in `webhook-sendgrid`.
const TOLERANCE_SECS: i64 = 86_400;

const FULL: &str = "sendgrid_batch_1000_verify_split_queue_messages";
const VERIFY: &str = "sendgrid_batch_1000_verify_signature";
const SPLIT: &str = "sendgrid_batch_1000_split_events";
const MESSAGES: &str = "sendgrid_batch_1000_queue_messages";

fn main() -> anyhow::Result<()> {
    let started = SystemTime::now();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let criterion_dir = tmp
        .parent()
        .context("CARGO_TARGET_TMPDIR has a parent (the target directory)")?
        .join("criterion");

    // The batch goes through a file, as a captured delivery would.
    let key = sendgrid_key(7);
    let file = tmp.join("sendgrid_batch_1000.json");
    std::fs::create_dir_all(tmp)?;
    std::fs::write(&file, support::sendgrid_batch(1, EVENTS, SIGNED_AT)?)
        .with_context(|| format!("writing {}", file.display()))?;
    let body = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let signed = sendgrid_headers(&key, SIGNED_AT, &body);
    let value = |name: &str| {
        signed
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .context("the signer sets both SendGrid headers")
    };
    let signature = value(sendgrid::SIGNATURE_HEADER)?;
    let timestamp = value(sendgrid::TIMESTAMP_HEADER)?;
    let mut headers = HeaderMap::new();
    for (name, value) in signed {
        headers.insert(
            HeaderName::from_bytes(name.as_bytes())?,
            HeaderValue::from_str(&value)?,
        );
    }
    let verifier =
        SendgridWebhookVerifier::new(&[sendgrid_public_key(&key).as_str()], TOLERANCE_SECS)?;
    let clock = FixedClock::at_unix(SIGNED_AT);

    // What is measured must be what a request does: the batch verifies and splits in full.
    let intake = verifier
        .verify_delivery(&headers, &body, &clock)
        .map_err(|r| anyhow::anyhow!("the bench batch does not verify: {}", r.code()))?;
    let events = intake
        .payload
        .events
        .map_err(|e| anyhow::anyhow!("the bench batch does not split: {}", e.0))?;
    if events.len() != EVENTS {
        bail!("the bench batch split into {} events", events.len());
    }
    let receipt = receipt_key(ProviderId::Sendgrid, &intake.payload.dedupe_key);
    let received_at_ms = SIGNED_AT * 1_000;
    eprintln!(
        "# sendgrid batch: {} events, {} bytes, {}",
        EVENTS,
        body.len(),
        file.display()
    );

    // Criterion's output directory is set explicitly so the estimates are found again below.
    let mut c = Criterion::default()
        .output_directory(&criterion_dir)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6))
        .sample_size(50);
    c.bench_function(FULL, |b| {
        b.iter(|| {
            let intake = verifier
                .verify_delivery(black_box(&headers), black_box(&body), &clock)
                .ok()?;
            let events = intake.payload.events.ok()?;
            let receipt = receipt_key(ProviderId::Sendgrid, &intake.payload.dedupe_key);
            Some(queue_messages(
                ProviderId::Sendgrid,
                &receipt,
                received_at_ms,
                &events,
            ))
        })
    });
    c.bench_function(VERIFY, |b| {
        b.iter(|| {
            verifier.verify(
                Some(black_box(signature.as_str())),
                Some(timestamp.as_str()),
                black_box(&body),
                &clock,
            )
        })
    });
    c.bench_function(SPLIT, |b| b.iter(|| sendgrid::payload(black_box(&body))));
    c.bench_function(MESSAGES, |b| {
        b.iter(|| {
            queue_messages(
                ProviderId::Sendgrid,
                black_box(&receipt),
                received_at_ms,
                black_box(&events),
            )
        })
    });
    c.final_summary();

    figure("sendgrid_batch_1000_body_bytes", body.len(), "bytes");
    for name in [FULL, VERIFY, SPLIT, MESSAGES] {
        let per_batch = median_ns(&criterion_dir, name, started)?;
        figure(
            name,
            format!("{:.0}", per_batch / EVENTS as f64),
            "ns_per_event",
        );
        if name == FULL {
            figure(
                &format!("{FULL}_total"),
                format!("{:.3}", per_batch / 1e6),
                "ms_per_batch",
            );
        }
    }
    Ok(())
}

/// Criterion's median time per iteration (ns) of benchmark `name`, from this run only.
fn median_ns(dir: &Path, name: &str, started: SystemTime) -> anyhow::Result<f64> {
    let path: PathBuf = dir.join(name).join("new").join("estimates.json");
    let written = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .with_context(|| format!("criterion wrote no {}", path.display()))?;
    if written < started {
        bail!("{} is from an earlier run", path.display());
    }
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    estimates["median"]["point_estimate"]
        .as_f64()
        .with_context(|| format!("no median in {}", path.display()))
}
