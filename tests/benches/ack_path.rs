//! Figure B of `make bench`: the AWS calls on the webhook ack path, counted on the wire.
//!
//! The real `WebhookFunction::handle` of `webhook-sendgrid` runs against a stack of its own on
//! the local emulator (`MAILGATE_TEST_AWS_ENDPOINT`, set by `benches/bench.sh` the way
//! `make test` sets it), with DynamoDB and SQS clients that carry an interceptor counting every
//! HTTP request by operation (retries would count too: they are calls). Requests are built from
//! `events/webhook-sendgrid/function-url-post.json` with a generated batch as body, signed with
//! the bench key. Three deliveries are measured:
//!
//! - `1_event`: a new one-event batch;
//! - `1000_events`: a new 1,000-event batch (about 500 KB);
//! - `duplicate_1000_events`: the same 1,000-event batch delivered again, byte for byte.
//!
//! For each: `bench ack_path_dynamodb_calls_<case> N calls`, `bench ack_path_sqs_calls_<case> N
//! calls` and `bench ack_path_moto_wall_<case> T ms_per_request` (median over a few requests,
//! each with a new batch; the first request of the process is a warm-up and is not counted).
//! Each request goes to an events queue of its own, created empty for it (the function is
//! wired to it as at a cold start; receipts share the stack's tables, so the duplicate case
//! finds its earlier receipt), and afterwards the queue must hold exactly the events the
//! request acknowledged, none for a duplicate. Setup and checks are neither timed nor counted.
//!
//! The wall time is moto's, a single Python process on this machine: its latency is not AWS's,
//! so the figure compares runs of this benchmark with each other, not with production. moto
//! 5.2.5 recomputes every queue attribute, walking all messages, for each message sent, so a
//! `SendMessageBatch` costs time in proportion to the queue's depth: a fresh queue per request
//! keeps the figure from depending on earlier requests (within a 1,000-event request the depth
//! still grows to 1,000, which is most of that figure).

// Shared with the other webhook benches; `median_ns` is not used here.
#[allow(dead_code)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use aws_sdk_sqs::types::QueueAttributeName;
use lambda_http::Request;
use lambda_http::http::StatusCode;
use mailgate_aws::AwsClients;
use mailgate_core::ProviderId;
use mailgate_lambda::webhook::{WebhookConfig, WebhookFunction};
use mailgate_tests::calls::{CallLog, Calls, counted_clients};
use mailgate_tests::webhooks::{post, sendgrid_headers, sendgrid_key, sendgrid_public_key};
use mailgate_tests::{ENDPOINT_VAR, TestStack};
use p256::ecdsa::SigningKey;
use serde_json::Value;
use support::figure;

/// New one-event deliveries measured.
const SMALL_RUNS: u64 = 10;
/// New 1,000-event deliveries measured (each then delivered again as the duplicate case).
const LARGE_RUNS: u64 = 3;
/// Events in a large delivery.
const LARGE_EVENTS: usize = 1_000;

/// A configuration lookup, as `WebhookConfig::from_lookup` takes it.
type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// One delivery ready to send again and again.
struct Delivery {
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

struct Bench {
    /// The function's clients, counted.
    clients: AwsClients,
    /// The function's environment from the template, with the bench key.
    env: Lookup,
    calls: CallLog,
    /// An uncounted client for the per-request queues.
    sqs: aws_sdk_sqs::Client,
    /// Per-request queues are named `<events queue name>-<n>`.
    queue_prefix: String,
    requests: u32,
}

impl Bench {
    fn take_calls(&self) -> Calls {
        self.calls.take()
    }

    fn request(&self, delivery: &Delivery) -> anyhow::Result<Request> {
        Ok(post(
            ProviderId::Sendgrid,
            &delivery.body,
            &delivery.headers,
        ))
    }

    /// Sends one delivery through the real handler, wired to a new empty events queue; checks
    /// the answer is `expected` and that exactly `events` events reached the queue; returns
    /// the calls the handler made and its wall time.
    async fn send(
        &mut self,
        delivery: &Delivery,
        expected: &str,
        events: usize,
    ) -> anyhow::Result<(Calls, Duration)> {
        self.requests += 1;
        let queue_url = self
            .sqs
            .create_queue()
            .queue_name(format!("{}-{}", self.queue_prefix, self.requests))
            .send()
            .await?
            .queue_url
            .context("CreateQueue returns the queue URL")?;
        let env = self.env.clone();
        let events_queue = queue_url.clone();
        let config = WebhookConfig::from_lookup(ProviderId::Sendgrid, move |k| {
            if k == "EVENTS_QUEUE_URL" {
                Some(events_queue.clone())
            } else {
                env(k)
            }
        })?;
        let function = WebhookFunction::new(config, self.clients.clone());
        let request = self.request(delivery)?;

        self.take_calls();
        let started = Instant::now();
        let response = function.handle(request).await;
        let elapsed = started.elapsed();
        let calls = self.take_calls();

        let answer: Value = serde_json::from_slice(response.body().as_ref()).unwrap_or_default();
        if response.status() != StatusCode::OK || answer["status"] != expected {
            bail!(
                "expected 200 {expected}, got {} {answer}",
                response.status()
            );
        }
        if expected == "queued" && answer["events"] != events {
            bail!("expected {events} events queued, got {answer}");
        }
        let depth = self.queue_depth(&queue_url).await?;
        if depth != events {
            bail!(
                "the events queue holds {depth} messages after a {expected} answer, expected {events}"
            );
        }
        self.sqs.delete_queue().queue_url(&queue_url).send().await?;
        Ok((calls, elapsed))
    }

    async fn queue_depth(&self, queue_url: &str) -> anyhow::Result<usize> {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await?;
        attributes
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|n| n.parse().ok())
            .context("the queue reports its depth")
    }
}

fn unix_now() -> anyhow::Result<i64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() as i64)
}

fn delivery(key: &SigningKey, seed: u64, events: usize) -> anyhow::Result<Delivery> {
    let now = unix_now()?;
    let body = support::sendgrid_batch(seed, events, now)?;
    let headers = sendgrid_headers(key, now, &body);
    Ok(Delivery { body, headers })
}

/// Prints the figures of one case: calls per request (they must not vary) and median wall time.
fn report(case: &str, runs: &[(Calls, Duration)]) -> anyhow::Result<()> {
    let (first, _) = runs.first().context("no runs")?;
    if let Some((other, _)) = runs.iter().find(|(c, _)| c != first) {
        bail!(
            "{case}: calls differ between requests: [{}] vs [{}]",
            first.describe(),
            other.describe()
        );
    }
    let mut times: Vec<Duration> = runs.iter().map(|(_, t)| *t).collect();
    times.sort();
    let median = times[times.len() / 2];
    println!(
        "# ack_path {case}: {} per request; wall {:.1}..{:.1} ms over {} requests",
        first.describe(),
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
    figure(
        &format!("ack_path_dynamodb_calls_{case}"),
        first.total("dynamodb"),
        "calls",
    );
    figure(
        &format!("ack_path_sqs_calls_{case}"),
        first.total("sqs"),
        "calls",
    );
    figure(
        &format!("ack_path_moto_wall_{case}"),
        format!("{:.1}", median.as_secs_f64() * 1e3),
        "ms_per_request",
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os(ENDPOINT_VAR).is_none() {
        bail!("{ENDPOINT_VAR} is not set: run `make bench`, which starts the local AWS stack");
    }
    let stack = TestStack::new().await;
    let (clients, calls) = counted_clients(&stack.sdk);

    let key = sendgrid_key(7);
    let public_key = sendgrid_public_key(&key);
    let template_env = stack.function_env("webhook-sendgrid");
    let queue_prefix = template_env("EVENTS_QUEUE_URL")
        .and_then(|url| url.rsplit('/').next().map(str::to_owned))
        .context("the template gives EVENTS_QUEUE_URL")?;
    let env = move |k: &str| {
        if k == "SENDGRID_WEBHOOK_PUBLIC_KEYS" {
            Some(public_key.clone())
        } else {
            template_env(k)
        }
    };
    let mut bench = Bench {
        clients,
        env: Arc::new(env),
        calls,
        sqs: stack.clients.sqs.clone(),
        queue_prefix,
        requests: 0,
    };

    // Warm-up: connection pools, credentials and the function's first request.
    bench.send(&delivery(&key, 0, 1)?, "queued", 1).await?;

    let mut small = Vec::new();
    for seed in 1..=SMALL_RUNS {
        let d = delivery(&key, seed, 1)?;
        small.push(bench.send(&d, "queued", 1).await?);
    }
    let mut large = Vec::new();
    let mut large_deliveries = Vec::new();
    for seed in 1..=LARGE_RUNS {
        let d = delivery(&key, 1_000 + seed, LARGE_EVENTS)?;
        large.push(bench.send(&d, "queued", LARGE_EVENTS).await?);
        large_deliveries.push(d);
    }
    println!(
        "# ack_path 1000_events body: {} bytes",
        large_deliveries[0].body.len()
    );
    let mut duplicates = Vec::new();
    for d in &large_deliveries {
        duplicates.push(bench.send(d, "duplicate", 0).await?);
    }

    report("1_event", &small)?;
    report("1000_events", &large)?;
    report("duplicate_1000_events", &duplicates)?;
    Ok(())
}
