//! Figure A of `make bench` (pure: no AWS). A realistic, signed 1,000-event SendGrid batch is
//! generated, written to `target/tmp/`, read back, and then the CPU work a webhook request does
//! on it before any AWS call is measured with criterion:
//!
//! - `sendgrid_batch_1000_verify_split_queue_messages`: what `webhook-sendgrid` does per
//!   request — `SendgridWebhookVerifier::verify_delivery` (ECDSA P-256 over the SHA-256 of
//!   `timestamp ‖ body`, then the body's own hash that keys the receipt and `sendgrid::events`:
//!   the split into raw events) and `mailgate_core::queue_messages` (one queue message per
//!   event);
//! - the same three steps measured alone (`_verify_signature`: ECDSA over the hash of
//!   `timestamp ‖ body`; `_split_events`: the body hash and the raw events, as
//!   `verify_delivery` reads them;
//!   `_queue_messages`), to show where the time goes;
//! - `sendgrid_batch_1000_normalise`: the event processor's share, every event normalised
//!   into a `DeliveryEvent` from its raw text;
//! - `sendgrid_batch_1000_sha256`: SHA-256 of the body alone (sha2 in the shipped profile),
//!   next to `make bench`'s OpenSSL floor on the same file; with
//!   `sha256_cpu_extensions` (1 when the CPU has SHA-NI / ARMv8 SHA2, which sha2 detects at
//!   run time and then uses: its figure then matches OpenSSL's instead of being ~4× slower).
//!
//! Each figure is criterion's median time per batch, read back from the `estimates.json` it
//! writes under `target/criterion/`, and printed as `bench <name> <ns> ns_per_event` (plus the
//! whole batch in `ms_per_batch` for the end-to-end figure). The signature, timestamp and public
//! key are written next to the batch (`sendgrid_batch_1000.sig.json`) for the seed's Node path
//! (`benches/seed_sendgrid.mjs`), which `make bench` runs on the same file.

mod support;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use criterion::Criterion;
use lambda_http::http::{HeaderMap, HeaderName, HeaderValue};
use mailgate_aws::receipt_key;
use mailgate_core::UnixMillis;
use mailgate_core::queue_messages;
use mailgate_core::{FixedClock, ProviderId};
use mailgate_providers::events::EventOrigin;
use mailgate_providers::sendgrid::{self, SendgridWebhookVerifier};
use mailgate_tests::webhooks::{sendgrid_headers, sendgrid_key, sendgrid_public_key};
use sha2::{Digest, Sha256};
use support::{figure, median_ns};

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
const NORMALISE: &str = "sendgrid_batch_1000_normalise";
const SHA256: &str = "sendgrid_batch_1000_sha256";

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
    let sidecar = tmp.join("sendgrid_batch_1000.sig.json");
    std::fs::write(
        &sidecar,
        serde_json::json!({
            "timestamp": timestamp,
            "signature": signature,
            "public_key": sendgrid_public_key(&key),
        })
        .to_string(),
    )
    .with_context(|| format!("writing {}", sidecar.display()))?;
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
    let origin = |index| EventOrigin {
        receipt: &receipt,
        index,
        received_at: UnixMillis(received_at_ms),
    };
    for (i, event) in events.iter().enumerate() {
        sendgrid::events::normalise(event, &origin(i))
            .map_err(|e| anyhow::anyhow!("bench event [{i}] does not normalise: {e}"))?;
    }
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
    c.bench_function(SPLIT, |b| {
        b.iter(|| {
            (
                mailgate_providers::webhook::body_key(black_box(&body)),
                sendgrid::events(black_box(&body)),
            )
        })
    });
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
    c.bench_function(NORMALISE, |b| {
        b.iter(|| {
            events
                .iter()
                .enumerate()
                .filter_map(|(i, e)| sendgrid::events::normalise(black_box(e), &origin(i)).ok())
                .map(|normalised| black_box(normalised).len())
                .sum::<usize>()
        })
    });
    c.bench_function(SHA256, |b| b.iter(|| Sha256::digest(black_box(&body))));
    c.final_summary();

    for name in [FULL, VERIFY, SPLIT, MESSAGES, NORMALISE, SHA256] {
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
    figure("sendgrid_batch_1000_body_bytes", body.len(), "bytes");
    figure("sha256_cpu_extensions", u8::from(sha_extensions()), "bool");
    Ok(())
}

/// Whether this CPU has the SHA-256 instructions sha2 selects at run time (`cpufeatures`:
/// SHA-NI with SSE4.1 on x86_64, the `sha2` feature on aarch64).
fn sha_extensions() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha") && std::arch::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}
