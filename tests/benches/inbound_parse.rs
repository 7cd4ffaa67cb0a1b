//! Figure E of `make bench` (pure: no AWS): inbound MIME parsing on the corpus of real-world
//! shapes (`shared/core/tests/mime/*.eml`), the same files the parser's tests check.
//!
//! - `inbound_parse_throughput`: messages parsed per second on one core (release profile), over
//!   many passes of the whole corpus, malformed ones included (they are stored too);
//! - `inbound_parse_bandwidth`: the same run in MiB of raw MIME per second.

// Shared with the webhook benches; only `figure` is used here.
#[allow(dead_code)]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use mailgate_core::parse_mime;
use support::figure;

/// How long the throughput is measured for (after a warm-up of a quarter of that).
const MEASURE: Duration = Duration::from_secs(3);

fn main() -> anyhow::Result<()> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/core/tests/mime");
    let mut corpus = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| dir.to_owned())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "eml") {
            corpus.push(std::fs::read(&path).with_context(|| path.display().to_string())?);
        }
    }
    ensure!(!corpus.is_empty(), "the MIME corpus in {dir} is empty");
    let bytes: usize = corpus.iter().map(Vec::len).sum();
    println!(
        "# inbound MIME corpus: {} messages, {bytes} bytes",
        corpus.len()
    );

    let pass = || {
        for raw in &corpus {
            let _ = black_box(parse_mime(black_box(raw)));
        }
    };
    let warm_up = Instant::now();
    while warm_up.elapsed() < MEASURE / 4 {
        pass();
    }
    let (started, mut passes) = (Instant::now(), 0usize);
    while started.elapsed() < MEASURE {
        pass();
        passes += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    figure(
        "inbound_parse_throughput",
        format!("{:.0}", (passes * corpus.len()) as f64 / secs),
        "messages/s",
    );
    figure(
        "inbound_parse_bandwidth",
        format!("{:.1}", (passes * bytes) as f64 / secs / (1024.0 * 1024.0)),
        "MiB/s",
    );
    Ok(())
}
