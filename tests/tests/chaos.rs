#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! The chaos test (issue 13): sends and webhook events through the real handlers (send-api,
//! send-worker, the SendGrid webhook function, event-processor, the sweeper on a clock moved
//! forward) and the real SDK, against the emulator behind the fault proxy failing a share of
//! every DynamoDB and SQS call at random, and a local SendGrid failing a share of its calls.
//! Clients retry as clients do (the same `Idempotency-Key` on a 5xx, SendGrid redelivering a
//! webhook batch it did not get a 2xx for), queues are worked and the sweeper ticks until
//! nothing moves, then the promises are checked:
//!
//! - every accepted message ends in a visible state (never `queued`, `sending` or `scheduled`);
//! - at most one provider call per message was accepted (counted by our id at the fake);
//! - every accepted webhook event is in its message's history exactly once;
//! - no address is suppressed that was not bounced hard, complained or unsubscribed for.
//!
//! The seed is `MAILGATE_CHAOS_SEED` (default 13); the figures are printed as `chaos …` lines.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use axum::http::StatusCode;
use lambda_http::Request;
use mailgate_aws::AwsClients;
use mailgate_core::{FixedClock, ProviderId, SystemClock};
use mailgate_fault_proxy::{Fault, FaultProxy, Service, When};
use mailgate_lambda::webhook::WebhookFunction;
use mailgate_tests::TestStack;
use mailgate_tests::api::{ApiRequest, bearer, json_or_null, send_api_on};
use mailgate_tests::providers::{FakeProvider, sendgrid};
use mailgate_tests::webhooks::{post, sendgrid_headers, sendgrid_key, webhook_config};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use send_api::SendApi;
use serde_json::{Value, json};
use sweeper::{ScheduledTick, Sweeper};
use time::OffsetDateTime;

const SENDGRID_KEY: &str = "SG.test-key";
/// Send operations (single, batch, scheduled; with and without keys). With the fault rates
/// below this still meets a few hundred injected faults on every path (measured: ~450 at 120
/// operations and 250 events, against ~870 at 200 and 500, for about half the time).
const SEND_OPERATIONS: usize = 120;
/// Webhook events posted (before SendGrid's redeliveries).
const WEBHOOK_EVENTS: usize = 250;

fn seed() -> u64 {
    std::env::var("MAILGATE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(13)
}

/// A local SendGrid failing `fail_percent` of its calls (500 or 429), counting the accepted
/// calls per mailgate message id.
struct Sendgrid {
    api: FakeProvider,
    accepted: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Sendgrid {
    async fn start(seed: u64, fail_percent: u32) -> Self {
        let rng = Mutex::new(StdRng::seed_from_u64(seed ^ 0x5e9d));
        let accepted: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
        let counted = accepted.clone();
        let api = FakeProvider::serve(move |call| {
            let id = call.json()["custom_args"]["mailgate_message_id"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let draw: u32 = rng.lock().unwrap().random_range(0..100);
            if draw < fail_percent / 2 {
                return sendgrid::server_error(StatusCode::INTERNAL_SERVER_ERROR);
            }
            if draw < fail_percent {
                return sendgrid::throttled(1);
            }
            *counted.lock().unwrap().entry(id.clone()).or_default() += 1;
            sendgrid::accepted(&format!("sg-{id}"))
        })
        .await;
        Self { api, accepted }
    }
}

struct World {
    t: TestStack,
    proxy: FaultProxy,
    /// Through the proxy, with few SDK retries, so faults reach the handlers.
    clients: AwsClients,
    sendgrid: Sendgrid,
    key: String,
}

impl World {
    fn env(&self, binary: &str) -> impl Fn(&str) -> Option<String> + use<> {
        let base = self.t.function_env(binary);
        let vars: HashMap<&'static str, String> = HashMap::from([
            ("MAILGATE_PROVIDERS", "sendgrid".to_owned()),
            ("SENDGRID_API_KEY", SENDGRID_KEY.to_owned()),
            ("SENDGRID_BASE_URL", self.sendgrid.api.base_url.clone()),
            ("SEND_TIMEOUT_MS", "1000".to_owned()),
            ("SEND_BUDGET_MS", "1500".to_owned()),
        ]);
        move |k| vars.get(k).cloned().or_else(|| base(k))
    }

    fn api(&self, clients: &AwsClients) -> SendApi {
        send_api_on(&self.t, clients, self.env("send-api"))
    }

    fn worker(&self) -> send_worker::Function {
        let config = send_worker::Config::from_lookup(self.env("send-worker")).unwrap();
        send_worker::Function::new(config, self.clients.clone()).unwrap()
    }

    fn processor(&self, clock: Arc<FixedClock>) -> event_processor::EventProcessor {
        let config =
            event_processor::Config::from_lookup(self.t.function_env("event-processor")).unwrap();
        event_processor::EventProcessor::with_clock(config, self.clients.clone(), clock)
    }

    /// Records on `queue`, visible or in flight (unfaulted).
    async fn depth(&self, queue: &str) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .t
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(self.t.queue_url(queue))
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .unwrap();
        out.attributes()
            .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
            .unwrap_or(0)
    }

    fn webhook(&self) -> WebhookFunction {
        WebhookFunction::with_clock(
            webhook_config(&self.t, ProviderId::Sendgrid, None, &[]),
            self.clients.clone(),
            Arc::new(SystemClock),
        )
    }

    fn sweeper(&self, at: OffsetDateTime) -> Sweeper {
        Sweeper::with_clock(
            sweeper::Config::from_lookup(self.t.function_env("sweeper")).unwrap(),
            self.clients.clone(),
            Arc::new(FixedClock::new(at)),
        )
    }

    /// Receives up to ten records of `queue` (briefly invisible), unfaulted.
    async fn receive(&self, queue: &str) -> Vec<aws_sdk_sqs::types::Message> {
        self.t
            .clients
            .sqs
            .receive_message()
            .queue_url(self.t.queue_url(queue))
            .max_number_of_messages(10)
            .visibility_timeout(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
    }

    /// Deletes what Lambda would: every record not reported as failed.
    async fn ack(
        &self,
        queue: &str,
        got: &[aws_sdk_sqs::types::Message],
        failed: &BTreeSet<String>,
    ) {
        for m in got {
            if failed.contains(m.message_id().unwrap_or_default()) {
                continue;
            }
            self.t
                .clients
                .sqs
                .delete_message()
                .queue_url(self.t.queue_url(queue))
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

fn sqs_payload(messages: &[aws_sdk_sqs::types::Message]) -> Value {
    json!({"Records": messages.iter().map(|m| json!({
        "messageId": m.message_id(),
        "receiptHandle": m.receipt_handle(),
        "body": m.body(),
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0",
                       "SenderId": "x", "ApproximateFirstReceiveTimestamp": "0"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q",
        "awsRegion": "us-east-1",
    })).collect::<Vec<_>>()})
}

fn request(
    key: &str,
    method: &str,
    path: &str,
    body: Option<String>,
    idem: Option<&str>,
) -> Request {
    let mut request = ApiRequest::new(method, path).authorization(key);
    if let Some(body) = body {
        request = request.body(body);
    }
    if let Some(key) = idem {
        request = request.idempotency_key(key);
    }
    request.build()
}

fn message(to: &str, send_at: Option<&str>) -> Value {
    let mut m = json!({
        "from": "hello@example.com",
        "to": [to],
        "subject": "Chaos",
        "text": "Hello",
    });
    if let Some(at) = send_at {
        m["send_at"] = json!(at);
    }
    m
}

/// The ids a 202 (or a replay) names.
fn accepted_ids(body: &Value) -> Vec<String> {
    if let Some(results) = body["results"].as_array() {
        return results
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect();
    }
    body["id"].as_str().map(str::to_owned).into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_nothing_lost_nothing_sent_twice_nothing_wrongly_suppressed() {
    let seed = seed();
    let t = TestStack::new().await;
    let proxy = FaultProxy::start(&t.endpoint).await.unwrap();
    let sdk = mailgate_tests::sdk_config(&proxy.url())
        .await
        .into_builder()
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(2)
                .with_initial_backoff(Duration::from_millis(5)),
        )
        .build();
    let clients = AwsClients::new(&sdk);
    let sendgrid = Sendgrid::start(seed, 10).await;
    let key = bearer(&t, "send,read").await;
    let w = World {
        t,
        proxy,
        clients,
        sendgrid,
        key,
    };
    let faults = || {
        for (service, salt) in [(Service::DynamoDb, 1u64), (Service::Sqs, 2u64)] {
            w.proxy.fail(
                service.clone(),
                Fault::Status503,
                When::Random {
                    percent: 5,
                    seed: seed ^ salt,
                },
            );
            w.proxy.fail(
                service,
                Fault::Throttle,
                When::Random {
                    percent: 5,
                    seed: seed ^ (salt << 8),
                },
            );
        }
    };
    faults();
    let mut rng = StdRng::seed_from_u64(seed);
    let api = w.api(&w.clients);
    // Reads for the checks go around the proxy.
    let reader = w.api(&w.t.clients);

    // Seconds spent per phase, printed with the figures (where the test's time goes).
    let mut phases: Vec<(&str, f64)> = Vec::new();
    let mut phase_started = Instant::now();
    let mut phase = |name: &'static str| {
        phases.push((name, phase_started.elapsed().as_secs_f64()));
        phase_started = Instant::now();
    };

    // --- Sends -------------------------------------------------------------------------------
    let mut accepted: BTreeSet<String> = BTreeSet::new();
    let mut recipient_of: BTreeMap<String, String> = BTreeMap::new();
    let mut client_retries = 0u64;
    let mut refused = 0u64;
    let soon = (OffsetDateTime::now_utc() + time::Duration::minutes(3))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for op in 0..SEND_OPERATIONS {
        let kind = rng.random_range(0..10);
        let keyed = rng.random_bool(0.6);
        let idem = keyed.then(|| format!("chaos-{seed}-{op}"));
        let (path, body, recipients) = match kind {
            0..=5 => {
                let to = format!("r{op}@example.org");
                ("/v1/messages", message(&to, None), vec![to])
            }
            6..=7 => {
                let to: Vec<String> = (0..3).map(|i| format!("r{op}x{i}@example.org")).collect();
                let messages: Vec<Value> = to.iter().map(|a| message(a, None)).collect();
                ("/v1/messages/batch", json!({ "messages": messages }), to)
            }
            _ => {
                let to = format!("r{op}@example.org");
                ("/v1/messages", message(&to, Some(&soon)), vec![to])
            }
        };
        let mut tries = 0;
        loop {
            tries += 1;
            let response = api
                .handle(request(
                    &w.key,
                    "POST",
                    path,
                    Some(body.to_string()),
                    idem.as_deref(),
                ))
                .await;
            let status = response.status().as_u16();
            let answer = json_or_null(&response);
            if status == 202 {
                let ids = accepted_ids(&answer);
                for (id, to) in ids.iter().zip(&recipients) {
                    recipient_of.insert(id.clone(), to.clone());
                }
                accepted.extend(ids);
                break;
            }
            // A client retries a 5xx or a 409 with its key; without one it gives up (a new
            // request would be a new message).
            if idem.is_some() && (status >= 500 || status == 409) && tries < 8 {
                client_retries += 1;
                tokio::time::sleep(Duration::from_millis(if status == 409 { 300 } else { 20 }))
                    .await;
                continue;
            }
            assert!(status >= 500 || status == 409, "{status}: {answer}");
            refused += 1;
            break;
        }
    }

    phase("sends");

    // --- Work the queues and tick the sweeper until nothing is in flight ----------------------
    let worker = w.worker();
    let started = OffsetDateTime::now_utc();
    let mut rounds = 0;
    let mut faulted = true;
    loop {
        rounds += 1;
        for _ in 0..40 {
            let got = w.receive("SendQueue").await;
            if got.is_empty() {
                break;
            }
            let event: aws_lambda_events::event::sqs::SqsEvent =
                serde_json::from_value(sqs_payload(&got)).unwrap();
            let response = worker.handle(event).await;
            let failed: BTreeSet<String> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone())
                .collect();
            w.ack("SendQueue", &got, &failed).await;
        }
        // The sweeper's clock runs ahead: scheduled messages come due, checks fall due.
        let at = started + time::Duration::minutes(i64::from(rounds) * 5);
        let _ = w
            .sweeper(at)
            .handle(ScheduledTick {
                detail_type: "Scheduled Event".to_owned(),
                time: "2026-11-23T12:00:00Z".to_owned(),
            })
            .await;
        if w.depth("SendQueue").await > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        if faulted && rounds >= 6 {
            // The faults stop: what is left must now settle.
            w.proxy.clear_rules();
            faulted = false;
            continue;
        }
        if faulted {
            continue;
        }
        let mut in_flight = 0;
        for id in &accepted {
            let got = json_or_null(
                &reader
                    .handle(request(
                        &w.key,
                        "GET",
                        &format!("/v1/messages/{id}"),
                        None,
                        None,
                    ))
                    .await,
            );
            if matches!(
                got["state"].as_str(),
                Some("queued" | "sending" | "scheduled" | "paused")
            ) {
                in_flight += 1;
            }
        }
        if in_flight == 0 {
            break;
        }
        assert!(
            rounds < 40,
            "{in_flight} messages still in flight after {rounds} rounds"
        );
    }

    phase("send queue");

    // --- Webhook events for what was sent ------------------------------------------------------
    faults();
    let mut states: BTreeMap<String, Value> = BTreeMap::new();
    for id in &accepted {
        let got = json_or_null(
            &reader
                .handle(request(
                    &w.key,
                    "GET",
                    &format!("/v1/messages/{id}"),
                    None,
                    None,
                ))
                .await,
        );
        states.insert(id.clone(), got);
    }
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for m in states.values() {
        *by_state
            .entry(m["state"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    println!("chaos states after sending: {by_state:?}");
    let sent: Vec<&String> = states
        .iter()
        .filter(|(_, m)| m["provider_message_id"].is_string())
        .map(|(id, _)| id)
        .collect();
    assert!(!sent.is_empty());
    let mut events: Vec<Value> = Vec::new();
    let mut should_suppress: BTreeSet<String> = BTreeSet::new();
    let mut per_message: BTreeMap<String, usize> = BTreeMap::new();
    let mut kinds_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 0..WEBHOOK_EVENTS {
        let id = sent[n % sent.len()];
        let to = recipient_of[id].clone();
        let kind = match rng.random_range(0..20) {
            0 => "bounce",
            1 => "spamreport",
            2 => "unsubscribe",
            3..=4 => "deferred",
            5..=9 => "delivered",
            _ => "open",
        };
        let mut e = json!({
            "email": to,
            "timestamp": 1_790_000_000 + n as i64,
            "event": kind,
            "sg_event_id": format!("chaos-{seed}-evt-{n:05}"),
            "sg_message_id": format!("sg-{id}.filterdrecv-1"),
            "mailgate_message_id": id,
        });
        if kind == "bounce" {
            e["type"] = json!("bounce");
            e["status"] = json!("5.1.1");
            e["reason"] =
                json!("550 5.1.1 The email account that you tried to reach does not exist");
        }
        if kind == "deferred" {
            e["response"] = json!("451 4.7.1 Try again later");
        }
        if matches!(kind, "bounce" | "spamreport" | "unsubscribe") {
            should_suppress.insert(to);
        }
        *per_message.entry(id.clone()).or_default() += 1;
        kinds_of
            .entry(id.clone())
            .or_default()
            .push(format!("{n}:{kind}"));
        events.push(e);
    }
    let webhook = w.webhook();
    let signer = sendgrid_key(7);
    let mut deliveries = 0u64;
    let mut redeliveries = 0u64;
    for chunk in events.chunks(25) {
        let body = serde_json::to_vec(chunk).unwrap();
        let mut tries = 0;
        loop {
            tries += 1;
            deliveries += 1;
            let ts = OffsetDateTime::now_utc().unix_timestamp();
            let response = webhook
                .handle(post(
                    ProviderId::Sendgrid,
                    &body,
                    &sendgrid_headers(&signer, ts, &body),
                ))
                .await;
            if response.status().is_success() {
                break;
            }
            assert!(
                response.status().is_server_error(),
                "{:?}",
                response.status()
            );
            assert!(tries < 10, "SendGrid gave up on a batch");
            redeliveries += 1;
        }
    }
    phase("webhooks");
    let clock = Arc::new(FixedClock::new(OffsetDateTime::now_utc()));
    let processor = w.processor(clock.clone());
    let mut rounds = 0;
    let mut faulted = true;
    loop {
        rounds += 1;
        let got = w.receive("EventsQueue").await;
        if got.is_empty() {
            // Receipts the ingestion could not enqueue are the sweeper's; claims of events
            // whose recording failed lapse with time.
            clock.advance(time::Duration::minutes(2));
            let _ = w
                .sweeper(OffsetDateTime::now_utc() + time::Duration::minutes(10))
                .handle(ScheduledTick {
                    detail_type: "Scheduled Event".to_owned(),
                    time: "2026-11-23T12:00:00Z".to_owned(),
                })
                .await;
            if w.depth("EventsQueue").await == 0 {
                if !faulted {
                    break;
                }
                w.proxy.clear_rules();
                faulted = false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let response = processor.handle(sqs_payload(&got)).await;
        let failed: BTreeSet<String> = match response {
            Ok(event_processor::ProcessorResponse::Batch(r)) => r
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone())
                .collect(),
            _ => got
                .iter()
                .filter_map(|m| m.message_id().map(str::to_owned))
                .collect(),
        };
        w.ack("EventsQueue", &got, &failed).await;
        if !failed.is_empty() {
            // The queue hands a failed record out again after its visibility timeout, which
            // in the stack outlasts the claim lease of an event whose recording failed.
            clock.advance(time::Duration::minutes(2));
        }
        assert!(rounds < 600, "the events queue does not drain");
    }

    phase("events queue");

    // --- The promises --------------------------------------------------------------------------
    let mut lost = 0;
    let mut unknown = 0;
    let mut wrong_history = 0;
    for id in &accepted {
        let got = json_or_null(
            &reader
                .handle(request(
                    &w.key,
                    "GET",
                    &format!("/v1/messages/{id}"),
                    None,
                    None,
                ))
                .await,
        );
        let state = got["state"].as_str().unwrap_or("?").to_owned();
        if matches!(
            state.as_str(),
            "queued" | "sending" | "scheduled" | "paused" | "?"
        ) {
            lost += 1;
            eprintln!("chaos lost {id}: {got}");
        }
        unknown += u64::from(state == "unknown");
        let history = got["events"].as_array().map_or(0, Vec::len);
        let posted = per_message.get(id).copied().unwrap_or(0);
        if history != posted {
            wrong_history += 1;
            let seen: Vec<&str> = got["events"]
                .as_array()
                .map(|a| a.iter().filter_map(|e| e["type"].as_str()).collect())
                .unwrap_or_default();
            eprintln!(
                "chaos history {id} ({state}): {history} entries {seen:?} for {posted} events posted {:?}",
                kinds_of.get(id)
            );
        }
    }
    let duplicates: u64 = w
        .sendgrid
        .accepted
        .lock()
        .unwrap()
        .values()
        .map(|n| u64::from(n.saturating_sub(1)))
        .sum();
    let suppressed: Vec<String> =
        w.t.clients
            .dynamodb
            .scan()
            .table_name(w.t.table("SuppressionsTable"))
            .send()
            .await
            .unwrap()
            .items()
            .iter()
            .filter_map(|i| i.get("address").and_then(|v| v.as_s().ok()).cloned())
            .collect();
    let wrong_suppressions: Vec<&String> = suppressed
        .iter()
        .filter(|a| !should_suppress.contains(*a))
        .collect();
    let events_dlq = w.depth("EventsDeadLetterQueue").await;
    let stats = w.proxy.stats();
    let operations: u64 = stats.values().map(|s| s.calls).sum();
    let injected: u64 = stats.values().map(|s| s.faults).sum();
    println!(
        "chaos seed {seed}: operations {operations}, faults injected {injected}, send operations {SEND_OPERATIONS} (client retries {client_retries}, given up {refused}), messages {}, provider calls {} (accepted {}), unknown {unknown}, events {WEBHOOK_EVENTS} (deliveries {deliveries}, redeliveries {redeliveries}), suppressed {}, lost {lost}, duplicate provider calls {duplicates}, wrong histories {wrong_history}, events DLQ {events_dlq}, wrong suppressions {}",
        accepted.len(),
        w.sendgrid.api.calls(),
        w.sendgrid.accepted.lock().unwrap().values().sum::<u32>(),
        suppressed.len(),
        wrong_suppressions.len(),
    );
    let phases: Vec<String> = phases
        .iter()
        .map(|(name, secs)| format!("{name} {secs:.1}s"))
        .collect();
    println!("chaos phases: {}", phases.join(", "));
    assert!(injected > 0, "the proxy injected faults");
    assert_eq!(lost, 0, "accepted messages left in flight");
    assert_eq!(
        duplicates, 0,
        "a message was accepted by the provider twice"
    );
    assert_eq!(events_dlq, 0, "events parked on the dead-letter queue");
    assert_eq!(wrong_history, 0, "events applied other than once");
    assert!(wrong_suppressions.is_empty(), "{wrong_suppressions:?}");
}
