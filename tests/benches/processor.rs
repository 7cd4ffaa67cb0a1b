//! Figure D of `make bench`: the event processor against the local emulator.
//!
//! Messages are sent through the real `send-api` (SES in moto, not counted), then their events
//! are processed by the real `EventProcessor::handle` as 10-record SQS batches, with DynamoDB
//! and SQS clients that count every call on the wire. Cases, each over `ROUNDS` batches of 10
//! new events for 10 new messages:
//!
//! - `delivered`: SES event-publishing `Delivery` records carrying our id in `mail.tags` (how
//!   mailgate sends through SES): correlation by our id;
//! - `delivered_by_provider_id`: SES identity `Delivery` notifications (no tags): correlation
//!   through the `by-provider-message-id` index;
//! - `hard_bounce`: `Bounce` records (5.1.1 user unknown) that also suppress the address.
//!
//! Printed per case: `bench processor_dynamodb_writes_per_event_<case>`,
//! `bench processor_dynamodb_reads_per_event_<case>` and, for `delivered`,
//! `bench processor_events_per_second_10_message_batch` (median batch) — moto's speed, a single
//! Python process: it compares runs of this benchmark, not production.

// Shared with the webhook benches; only `figure` is used here.
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use event_processor::{Config, EventProcessor, ProcessorResponse};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request};
use mailgate_aws::DynamoDbApiKeys;
use mailgate_core::{ApiKeyLabel, ApiKeyRecord, ApiKeySecret, KeyEnvironment, Scopes};
use mailgate_tests::calls::{Calls, counted_clients};
use mailgate_tests::{ENDPOINT_VAR, TestStack, fixture};
use send_api::{SendApi, SendApiConfig};
use serde_json::{Value, json};
use support::figure;
use time::OffsetDateTime;

/// Batches measured per case.
const ROUNDS: usize = 8;
/// Records per SQS batch (the event source's batch size).
const BATCH: usize = 10;

struct Bench {
    /// Kept alive for the run.
    _stack: TestStack,
    api: SendApi,
    auth: String,
    sent: usize,
}

impl Bench {
    fn request(&self, body: &Value) -> anyhow::Result<Request> {
        let mut event: Value = serde_json::from_str(&fixture("send-api/post-message.json"))?;
        event["body"] = json!(body.to_string());
        let headers = event["headers"]
            .as_object_mut()
            .context("fixture headers")?;
        headers.remove("idempotency-key");
        headers.remove("content-length");
        let mut request = lambda_http::request::from_str(&event.to_string())?;
        request
            .headers_mut()
            .insert(header::AUTHORIZATION, HeaderValue::from_str(&self.auth)?);
        Ok(request)
    }

    /// Sends one message; its recipient, our id and SES's id.
    async fn send(&mut self) -> anyhow::Result<(String, String, String)> {
        self.sent += 1;
        let to = format!("customer.{}@example.org", self.sent);
        let body = json!({
            "from": {"email": "hello@example.com"},
            "to": [to],
            "subject": "Your receipt",
            "text": "Thanks for your order.",
        });
        let response = self.api.handle(self.request(&body)?).await;
        let answer: Value = match response.body() {
            Body::Text(t) => serde_json::from_str(t)?,
            _ => Value::Null,
        };
        if response.status() != StatusCode::ACCEPTED || answer["status"] != "sent" {
            bail!("send failed: {} {answer}", response.status());
        }
        Ok((
            to,
            answer["id"].as_str().unwrap_or_default().to_owned(),
            answer["provider_message_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ))
    }
}

/// The queue body webhook-ses enqueues for an SNS notification carrying `message`.
fn queued(sns_id: &str, message: &Value) -> String {
    json!({
        "v": 1, "provider": "ses", "receipt": format!("ses#message:{sns_id}"),
        "index": 0, "count": 1, "received_at": 1_795_000_000_000i64,
        "event": {
            "Type": "Notification", "MessageId": sns_id,
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:mailgate-bench",
            "Message": message.to_string(), "Timestamp": "2026-11-23T10:00:06.000Z",
        },
    })
    .to_string()
}

fn event_for(case: &str, to: &str, id: &str, ses_id: &str) -> Value {
    let mail = json!({
        "timestamp": "2026-11-23T10:00:00.000Z", "source": "hello@example.com",
        "messageId": ses_id, "destination": [to],
        "tags": {"mailgate_message_id": [id]},
    });
    match case {
        "delivered" => json!({
            "eventType": "Delivery", "mail": mail,
            "delivery": {"timestamp": "2026-11-23T10:00:02.000Z", "recipients": [to],
                         "smtpResponse": "250 2.0.0 OK", "processingTimeMillis": 900},
        }),
        "delivered_by_provider_id" => json!({
            "notificationType": "Delivery",
            "mail": {"timestamp": "2026-11-23T10:00:00.000Z", "source": "hello@example.com",
                     "messageId": ses_id, "destination": [to]},
            "delivery": {"timestamp": "2026-11-23T10:00:02.000Z", "recipients": [to],
                         "smtpResponse": "250 2.0.0 OK", "processingTimeMillis": 900},
        }),
        _ => json!({
            "eventType": "Bounce", "mail": mail,
            "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                       "bouncedRecipients": [{"emailAddress": to, "action": "failed", "status": "5.1.1",
                                              "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                       "timestamp": "2026-11-23T10:00:03.000Z", "feedbackId": "0100-f"},
        }),
    }
}

fn batch(bodies: &[String]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({"messageId": format!("m-{i}"), "receiptHandle": "h", "body": b,
                             "eventSource": "aws:sqs"})
        })
        .collect();
    json!({ "Records": records })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os(ENDPOINT_VAR).is_none() {
        bail!("{ENDPOINT_VAR} is not set: run `make bench`, which starts the local AWS stack");
    }
    let stack = TestStack::new().await;
    let secret = ApiKeySecret::generate(KeyEnvironment::Test);
    let record = ApiKeyRecord::new(
        &secret,
        ApiKeyLabel::parse("processor bench")?,
        KeyEnvironment::Test,
        Scopes::parse_list("send,read")?,
        OffsetDateTime::now_utc(),
    );
    DynamoDbApiKeys::new(stack.clients.dynamodb.clone(), stack.table("ApiKeysTable"))
        .create(&record)
        .await?;
    let api = SendApi::new(
        SendApiConfig::from_lookup(stack.function_env("send-api"))?,
        stack.clients.clone(),
    )?;
    let (clients, calls) = counted_clients(&stack.sdk);
    let processor = EventProcessor::new(
        Config::from_lookup(stack.function_env("event-processor"))?,
        clients,
    );
    let mut bench = Bench {
        _stack: stack,
        api,
        auth: format!("Bearer {}", secret.expose()),
        sent: 0,
    };

    let mut sns = 0;
    for case in ["delivered", "delivered_by_provider_id", "hard_bounce"] {
        let mut times: Vec<Duration> = Vec::new();
        let mut total = Calls::default();
        // Round 0 warms up (connections, caches) and is not counted.
        for round in 0..=ROUNDS {
            let mut bodies = Vec::with_capacity(BATCH);
            for _ in 0..BATCH {
                let (to, id, ses_id) = bench.send().await?;
                sns += 1;
                bodies.push(queued(
                    &format!("bench-{sns}"),
                    &event_for(case, &to, &id, &ses_id),
                ));
            }
            calls.take();
            let started = Instant::now();
            let response = processor.handle(batch(&bodies)).await?;
            let elapsed = started.elapsed();
            let counted = calls.take();
            match &response {
                ProcessorResponse::Batch(b) if b.batch_item_failures.is_empty() => {}
                other => bail!("the {case} batch failed: {other:?}"),
            }
            if round > 0 {
                times.push(elapsed);
                for (op, n) in counted.0 {
                    *total.0.entry(op).or_default() += n;
                }
            }
        }
        let events = (times.len() * BATCH) as f64;
        let writes = total.dynamodb_writes() as f64 / events;
        let reads = (total.total("dynamodb") - total.dynamodb_writes()) as f64 / events;
        println!("# {case}: {} per {} events", total.describe(), events);
        figure(
            &format!("processor_dynamodb_writes_per_event_{case}"),
            format!("{writes:.2}"),
            "calls",
        );
        figure(
            &format!("processor_dynamodb_reads_per_event_{case}"),
            format!("{reads:.2}"),
            "calls",
        );
        if case == "delivered" {
            times.sort();
            let median = times[times.len() / 2];
            figure(
                "processor_events_per_second_10_message_batch",
                format!("{:.0}", BATCH as f64 / median.as_secs_f64()),
                "events/s",
            );
        }
    }
    Ok(())
}
