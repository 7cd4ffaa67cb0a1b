//! The local trigger runner: what AWS's event source mappings and EventBridge schedules do in the
//! cloud, done against the local stack. `cargo lambda watch` serves functions but polls no queue
//! and fires no schedule, and moto runs no Lambda, so this closes the loop for `make dev` and the
//! end-to-end tests.
//!
//! For every SQS event source in the template it long-polls the queue, delivers the messages to
//! the function's invoke API as a real SQS event, and deletes only the records the function did
//! not list in `batchItemFailures`; the rest reappear after their visibility timeout and reach the
//! dead-letter queue through the queue's own redrive policy. Schedules fire as real EventBridge
//! scheduled events.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use serde_json::{Value, json};

use crate::provision::{LOCAL_ACCOUNT_ID, LocalStack, ScheduleSource};

/// A failure delivering a trigger.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// Talking to SQS failed.
    #[error("sqs: {0}")]
    Sqs(String),
    /// The invoke API could not be reached or answered with an error.
    #[error("invoke {function}: {detail}")]
    Invoke {
        /// The function invoked.
        function: String,
        /// What went wrong.
        detail: String,
    },
}

/// Invokes functions through the Lambda invoke API (`cargo lambda watch` serves it).
#[derive(Debug, Clone)]
pub struct Invoker {
    http: reqwest::Client,
    base_url: String,
}

impl Invoker {
    /// An invoker for the API at `base_url`, e.g. `http://127.0.0.1:9000`.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            // The first invocation of a function compiles it under `cargo lambda watch`.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(900))
                .build()
                .unwrap_or_default(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
        }
    }

    /// Invokes `function` synchronously with `payload` and returns its result.
    pub async fn invoke(&self, function: &str, payload: &Value) -> Result<Value, TriggerError> {
        let err = |detail: String| TriggerError::Invoke {
            function: function.to_owned(),
            detail,
        };
        let url = format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.base_url
        );
        let response = self
            .http
            .post(url)
            .json(payload)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = response.status();
        let function_error = response.headers().contains_key("x-amz-function-error");
        let text = response.text().await.map_err(|e| err(e.to_string()))?;
        let body: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        let reported_error = body.get("errorType").is_some() && body.get("errorMessage").is_some();
        if !status.is_success() || function_error || reported_error {
            return Err(err(format!("status {status}: {body}")));
        }
        Ok(body)
    }
}

/// One queue → function subscription.
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The function's binary name.
    pub function: String,
    /// The queue URL.
    pub queue_url: String,
    /// The queue ARN.
    pub queue_arn: String,
    /// Records per invocation (SQS allows at most 10 per receive).
    pub batch_size: i32,
    /// Whether the function reports partial batch failures.
    pub report_batch_item_failures: bool,
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// Messages received and delivered.
    pub received: usize,
    /// Messages deleted after the function finished them.
    pub deleted: usize,
    /// Messages left on the queue for a retry.
    pub retried: usize,
}

/// Delivers SQS batches and schedules of a local stack to its functions.
#[derive(Debug, Clone)]
pub struct TriggerRunner {
    sqs: aws_sdk_sqs::Client,
    invoker: Invoker,
    region: String,
    subscriptions: Vec<Subscription>,
    schedules: Vec<(String, ScheduleSource)>,
    wait_seconds: i32,
}

impl TriggerRunner {
    /// A runner for every SQS and schedule event source of `stack`.
    pub fn new(sqs: aws_sdk_sqs::Client, invoker: Invoker, stack: &LocalStack) -> Self {
        let mut subscriptions = Vec::new();
        let mut schedules = Vec::new();
        for f in &stack.functions {
            for s in &f.sqs_sources {
                if let Some(q) = stack.queues.get(&s.queue) {
                    subscriptions.push(Subscription {
                        function: f.binary.clone(),
                        queue_url: q.url.clone(),
                        queue_arn: q.arn.clone(),
                        batch_size: s.batch_size.clamp(1, 10),
                        report_batch_item_failures: s.report_batch_item_failures,
                    });
                }
            }
            for s in &f.schedules {
                schedules.push((f.binary.clone(), s.clone()));
            }
        }
        Self {
            sqs,
            invoker,
            region: stack.region.clone(),
            subscriptions,
            schedules,
            wait_seconds: 20,
        }
    }

    /// Sets the long-poll wait (0–20 s); tests use short waits.
    pub fn with_wait_seconds(mut self, seconds: i32) -> Self {
        self.wait_seconds = seconds.clamp(0, 20);
        self
    }

    /// The queue subscriptions, from the template's SQS event sources.
    pub fn subscriptions(&self) -> &[Subscription] {
        &self.subscriptions
    }

    /// The schedules, from the template's schedule event sources, with their functions.
    pub fn schedules(&self) -> &[(String, ScheduleSource)] {
        &self.schedules
    }

    /// Receives one batch for `subscription`, delivers it, and deletes what the function finished.
    ///
    /// If the invocation fails as a whole, nothing is deleted: every record returns after its
    /// visibility timeout, exactly as with a real event source mapping.
    pub async fn poll_once(
        &self,
        subscription: &Subscription,
    ) -> Result<PollOutcome, TriggerError> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&subscription.queue_url)
            .max_number_of_messages(subscription.batch_size)
            .wait_time_seconds(self.wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| {
                TriggerError::Sqs(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
            })?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(PollOutcome::default());
        }
        let event = sqs_event(&messages, subscription, &self.region);
        let retry: HashSet<String> = match self.invoker.invoke(&subscription.function, &event).await
        {
            Ok(result) => {
                if subscription.report_batch_item_failures {
                    failed_ids(&result)
                } else {
                    HashSet::new()
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "invocation failed; the whole batch will be retried");
                messages
                    .iter()
                    .filter_map(|m| m.message_id.clone())
                    .collect()
            }
        };
        let done: Vec<_> = messages
            .iter()
            .filter(|m| m.message_id.as_ref().is_some_and(|id| !retry.contains(id)))
            .collect();
        for chunk in done.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle.clone().unwrap_or_default())
                        .build()
                        .map_err(|e| TriggerError::Sqs(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .sqs
                .delete_message_batch()
                .queue_url(&subscription.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    TriggerError::Sqs(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
                })?;
            if !out.failed.is_empty() {
                return Err(TriggerError::Sqs(format!(
                    "{} deletes failed",
                    out.failed.len()
                )));
            }
        }
        Ok(PollOutcome {
            received: messages.len(),
            deleted: done.len(),
            retried: messages.len() - done.len(),
        })
    }

    /// Fires one schedule as an EventBridge scheduled event.
    pub async fn fire_schedule(
        &self,
        function: &str,
        schedule: &ScheduleSource,
    ) -> Result<Value, TriggerError> {
        let event = scheduled_event(function, schedule, &self.region);
        self.invoker.invoke(function, &event).await
    }

    /// Runs every subscription and schedule until `shutdown` completes.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tasks = tokio::task::JoinSet::new();
        for sub in self.subscriptions.clone() {
            let runner = self.clone();
            tasks.spawn(async move {
                loop {
                    match runner.poll_once(&sub).await {
                        Ok(o) if o.received > 0 => tracing::info!(
                            function = %sub.function, received = o.received, deleted = o.deleted,
                            retried = o.retried, "delivered SQS batch"
                        ),
                        Ok(_) => {}
                        Err(err) => {
                            tracing::warn!(function = %sub.function, error = %err, "poll failed");
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                    }
                }
            });
        }
        for (function, schedule) in self.schedules.clone() {
            let runner = self.clone();
            let Some(period) = schedule.period() else {
                tracing::warn!(%function, expression = %schedule.expression, "only rate() schedules run locally");
                continue;
            };
            tasks.spawn(async move {
                let mut ticker = tokio::time::interval(period);
                loop {
                    ticker.tick().await;
                    match runner.fire_schedule(&function, &schedule).await {
                        Ok(result) => tracing::info!(%function, %result, "fired schedule"),
                        Err(err) => tracing::warn!(%function, error = %err, "schedule failed"),
                    }
                }
            });
        }
        shutdown.await;
        tasks.shutdown().await;
    }
}

fn failed_ids(result: &Value) -> HashSet<String> {
    result
        .get("batchItemFailures")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| f.get("itemIdentifier").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

/// The SQS event Lambda's event source mapping would send for `messages`.
pub fn sqs_event(
    messages: &[aws_sdk_sqs::types::Message],
    sub: &Subscription,
    region: &str,
) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                .collect();
            let message_attributes: serde_json::Map<String, Value> = m
                .message_attributes
                .iter()
                .flatten()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!({
                            "stringValue": v.string_value,
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": v.data_type,
                        }),
                    )
                })
                .collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": sub.queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The EventBridge scheduled event a `rate()` rule would send.
pub fn scheduled_event(function: &str, schedule: &ScheduleSource, region: &str) -> Value {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    let time = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": LOCAL_ACCOUNT_ID,
        "time": time,
        "region": region,
        "resources": [format!("arn:aws:events:{region}:{LOCAL_ACCOUNT_ID}:rule/{function}-{}", schedule.name)],
        "detail": {}
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_events_deserialize_as_lambda_would_see_them() {
        let m = aws_sdk_sqs::types::Message::builder()
            .message_id("m1")
            .receipt_handle("rh")
            .body("{\"a\":1}")
            .build();
        let sub = Subscription {
            function: "event-processor".into(),
            queue_url: "http://q".into(),
            queue_arn: "arn:aws:sqs:us-east-1:123456789012:q".into(),
            batch_size: 10,
            report_batch_item_failures: true,
        };
        let event: aws_lambda_events::event::sqs::SqsEvent =
            serde_json::from_value(sqs_event(&[m], &sub, "us-east-1")).unwrap();
        assert_eq!(event.records[0].message_id.as_deref(), Some("m1"));
        assert_eq!(
            event.records[0].event_source_arn.as_deref(),
            Some(sub.queue_arn.as_str())
        );

        let s = ScheduleSource {
            name: "Sweep".into(),
            expression: "rate(1 minute)".into(),
        };
        let e: aws_lambda_events::event::eventbridge::EventBridgeEvent<Value> =
            serde_json::from_value(scheduled_event("sweeper", &s, "us-east-1")).unwrap();
        assert_eq!(e.detail_type, "Scheduled Event");
    }

    #[test]
    fn reads_batch_item_failures() {
        let ids = failed_ids(
            &json!({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "b"}]}),
        );
        assert_eq!(ids, HashSet::from(["a".to_owned(), "b".to_owned()]));
        assert!(failed_ids(&Value::Null).is_empty());
    }
}
