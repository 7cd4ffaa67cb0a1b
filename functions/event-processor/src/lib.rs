//! `event-processor`: turns provider events into message state, history, suppressions, metrics
//! and app webhooks.
//!
//! Triggers: SQS batches from the events queue (one webhook event per message, queued by the
//! webhook functions; or an SES event an EventBridge rule put on the queue), and an EventBridge
//! event when a rule targets the function itself — that one is forwarded onto the events queue,
//! so every path ends in the same SQS processing, with its buffering, retries and DLQ.
//!
//! Per event (see `mailgate_aws::history` for the writes): normalise → claim (dedupe) →
//! correlate to our message (our id echoed by the provider, else the provider's id through the
//! `by-provider-message-id` index; unknown messages become orphans) → suppression effects (each
//! idempotent) → app webhooks (one outbound-queue delivery per matching endpoint) → history and
//! state in one transaction. A record that fails (a
//! receipt that cannot be loaded, an event that cannot be read, AWS down) is reported in
//! `batchItemFailures` alone and reaches the DLQ after the redrive count.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use mailgate_aws::{
    AwsClients, ConfigError, DynamoDbEndpoints, DynamoDbEventHistory, DynamoDbMessages,
    DynamoDbSuppressionList, DynamoDbWebhookReceipts, EventClaim, EventRecorded, Queue,
    ResourceNames, SqsOutboundQueue, Table,
};
use mailgate_core::QueuedEvent;
use mailgate_core::{
    Clock, DeliveryEvent, EventEffect, EventKind, MessageCategory, MessageRecord, SoftBounceRule,
    Suppression, SystemClock, UnixMillis,
};
use mailgate_lambda::app_webhooks::AppWebhookFanOut;
use mailgate_lambda::sqs::RecordOutcome;
use mailgate_providers::events::{EventOrigin, normalise, normalise_eventbridge};
use serde::Serialize;
use serde_json::Value;

/// The Lambda function name.
pub const FUNCTION_NAME: &str = "event-processor";

/// How often a state update is retried when the summary changed under it.
const STATE_RETRIES: usize = 5;

/// Typed configuration, loaded once per cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tables and queues.
    pub names: ResourceNames,
    /// When soft bounces suppress an address (`SOFT_BOUNCE_THRESHOLD`, default 5;
    /// `SOFT_BOUNCE_WINDOW_DAYS`, default 30).
    pub soft_bounce: SoftBounceRule,
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let names = ResourceNames::from_lookup(
            &[
                Table::Messages,
                Table::Receipts,
                Table::Dedupe,
                Table::Suppressions,
                Table::Endpoints,
            ],
            &[Queue::Events, Queue::Outbound],
            &lookup,
        )?;
        let mut problems = Vec::new();
        let threshold =
            mailgate_lambda::webhook::positive_setting(&lookup, "SOFT_BOUNCE_THRESHOLD", 5)
                .map_err(|e| problems.push(e))
                .unwrap_or(5);
        let days =
            mailgate_lambda::webhook::positive_setting(&lookup, "SOFT_BOUNCE_WINDOW_DAYS", 30)
                .map_err(|e| problems.push(e))
                .unwrap_or(30);
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Ok(Self {
            names,
            soft_bounce: SoftBounceRule {
                threshold: u32::try_from(threshold).unwrap_or(u32::MAX),
                window_ms: days.saturating_mul(24 * 3600 * 1000),
            },
        })
    }
}

/// Why an invocation failed as a whole (the trigger retries it).
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// The payload is neither an SQS batch nor an EventBridge event.
    #[error("unrecognised trigger payload: {0}")]
    UnknownTrigger(String),
    /// Forwarding an EventBridge event onto the events queue failed.
    #[error("could not forward the EventBridge event to the events queue: {0}")]
    Forward(String),
}

/// The two trigger shapes the function accepts.
#[derive(Debug)]
pub enum Trigger {
    /// A batch from the events queue.
    Sqs(SqsEvent),
    /// One event from an EventBridge rule targeting the function directly.
    EventBridge(Value),
}

impl Trigger {
    /// Tells the shapes apart: an SQS batch has `Records`, an EventBridge event `detail-type`.
    pub fn from_payload(payload: Value) -> Result<Self, ProcessorError> {
        if payload.get("Records").is_some() {
            serde_json::from_value(payload)
                .map(Trigger::Sqs)
                .map_err(|e| ProcessorError::UnknownTrigger(format!("bad SQS batch: {e}")))
        } else if payload.get("detail-type").is_some() && payload.get("source").is_some() {
            Ok(Trigger::EventBridge(payload))
        } else {
            Err(ProcessorError::UnknownTrigger(
                "expected an SQS batch (Records) or an EventBridge event (detail-type, source)"
                    .to_owned(),
            ))
        }
    }
}

/// What the function answers.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ProcessorResponse {
    /// For an SQS batch: the records to retry.
    Batch(SqsBatchResponse),
    /// For an EventBridge event: the SQS message id it was forwarded as.
    Forwarded {
        /// The SQS message id.
        forwarded_message_id: String,
    },
}

/// Why one event could not be processed (its record is retried).
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The queue message is not one of ours.
    #[error("unreadable queue message: {0}")]
    Envelope(String),
    /// The oversize event's receipt cannot be loaded.
    #[error("receipt {receipt} cannot be loaded: {detail}")]
    Receipt {
        /// The receipt key.
        receipt: String,
        /// Why.
        detail: String,
    },
    /// The provider's event is not the documented shape.
    #[error("the {provider} event cannot be read: {detail}")]
    Normalise {
        /// Whose event.
        provider: String,
        /// Why.
        detail: String,
    },
    /// Another invocation is processing the same event.
    #[error("event is being processed by another invocation")]
    Busy,
    /// A store failed.
    #[error("{0}")]
    Store(String),
    /// The message kept changing under the state update.
    #[error("message {0} kept changing; state update retried {STATE_RETRIES} times")]
    Contended(String),
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Applied to one of our messages.
    Applied,
    /// Stored as an orphan.
    Orphaned,
    /// A duplicate: nothing done.
    Duplicate,
}

/// Counts per metric and dimension, emitted once per invocation as EMF lines.
#[derive(Debug, Default)]
pub struct Tally(Mutex<BTreeMap<(&'static str, String, String), u64>>);

impl Tally {
    fn add(&self, metric: &'static str, provider: &str, category: &str) {
        if let Ok(mut counts) = self.0.lock() {
            *counts
                .entry((metric, provider.to_owned(), category.to_owned()))
                .or_default() += 1;
        }
    }

    /// The counts so far: (metric, provider, category) → count.
    pub fn snapshot(&self) -> BTreeMap<(&'static str, String, String), u64> {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn emit(&self) {
        for ((metric, provider, category), count) in self.snapshot() {
            mailgate_lambda::metrics::count(
                metric,
                count,
                &[("Provider", &provider), ("Category", &category)],
            );
        }
    }
}

/// The metric an applied event counts toward, by kind (bounces are counted by their class).
fn kind_metric(kind: EventKind) -> Option<&'static str> {
    Some(match kind {
        EventKind::Sent => "Sent",
        EventKind::Delivered => "Delivered",
        EventKind::Deferred => "Deferred",
        EventKind::Dropped => "Dropped",
        EventKind::Complained => "Complaints",
        EventKind::Unsubscribed => "Unsubscribes",
        EventKind::Opened => "Opens",
        EventKind::Clicked => "Clicks",
        EventKind::RenderingFailed => "RenderingFailures",
        EventKind::Unknown => "UnknownEvents",
        EventKind::Bounced | EventKind::Resubscribed | EventKind::AccountNotice => return None,
    })
}

/// The function with its stores.
#[derive(Clone)]
pub struct EventProcessor {
    config: Config,
    clients: AwsClients,
    history: DynamoDbEventHistory,
    messages: DynamoDbMessages,
    suppressions: DynamoDbSuppressionList,
    receipts: DynamoDbWebhookReceipts,
    app_webhooks: Arc<AppWebhookFanOut>,
    clock: Arc<dyn Clock>,
    tally: Arc<Tally>,
}

impl std::fmt::Debug for EventProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProcessor")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EventProcessor {
    /// Wires the function.
    pub fn new(config: Config, clients: AwsClients) -> Self {
        let names = &config.names;
        let dynamodb = clients.dynamodb.clone();
        Self {
            history: DynamoDbEventHistory::new(
                dynamodb.clone(),
                names.table(Table::Messages).to_owned(),
                names.table(Table::Dedupe).to_owned(),
            ),
            messages: DynamoDbMessages::new(
                dynamodb.clone(),
                names.table(Table::Messages).to_owned(),
            ),
            suppressions: DynamoDbSuppressionList::new(
                dynamodb.clone(),
                names.table(Table::Suppressions),
            ),
            receipts: DynamoDbWebhookReceipts::new(
                dynamodb.clone(),
                names.table(Table::Receipts).to_owned(),
                names.table(Table::Dedupe).to_owned(),
            ),
            app_webhooks: Arc::new(AppWebhookFanOut::new(
                DynamoDbEndpoints::new(dynamodb, names.table(Table::Endpoints)),
                SqsOutboundQueue::new(clients.sqs.clone(), names.queue_url(Queue::Outbound)),
            )),
            clock: Arc::new(SystemClock),
            tally: Arc::new(Tally::default()),
            config,
            clients,
        }
    }

    /// The same function reading time from `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The metric counts of this instance so far (tests and benchmarks read them).
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    fn now(&self) -> UnixMillis {
        UnixMillis::from_datetime(self.clock.now())
    }

    /// Handles one invocation of either shape.
    pub async fn handle(&self, payload: Value) -> Result<ProcessorResponse, ProcessorError> {
        match Trigger::from_payload(payload)? {
            Trigger::Sqs(batch) => {
                let before = self.tally.snapshot();
                let response =
                    mailgate_lambda::sqs::drive_batch(batch, |record| self.process_record(record))
                        .await;
                self.emit_since(&before);
                Ok(ProcessorResponse::Batch(response))
            }
            Trigger::EventBridge(event) => self.forward(event).await,
        }
    }

    /// Emits the counts added since `before` (one EMF line per metric and dimension).
    fn emit_since(&self, before: &BTreeMap<(&'static str, String, String), u64>) {
        let delta = Tally::default();
        for (key, count) in self.tally.snapshot() {
            let added = count - before.get(&key).copied().unwrap_or_default();
            if added > 0
                && let Ok(mut counts) = delta.0.lock()
            {
                counts.insert(key, added);
            }
        }
        delta.emit();
    }

    /// Processes one queue message: every event in it, or a retry.
    pub async fn process_record(&self, record: SqsMessage) -> RecordOutcome {
        let body = record.body.unwrap_or_default();
        match self.process_body(&body).await {
            Ok(_) => RecordOutcome::Done,
            Err(err) => {
                let provider = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("provider").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| "ses".to_owned());
                self.tally.add("ProcessingFailures", &provider, "none");
                tracing::error!(error = %err, "event left on the queue for retry");
                RecordOutcome::Retry(err.to_string())
            }
        }
    }

    /// Processes the body of one queue message; returns what became of each event in it.
    pub async fn process_body(&self, body: &str) -> Result<Vec<EventOutcome>, EventError> {
        let now = self.now();
        let events = self.events_of(body, now).await?;
        let mut outcomes = Vec::with_capacity(events.len());
        for event in &events {
            outcomes.push(self.process_event(event).await?);
        }
        Ok(outcomes)
    }

    /// The normalised events of a queue message: a webhook event (inline or in its receipt)
    /// or an SES event from EventBridge.
    async fn events_of(
        &self,
        body: &str,
        now: UnixMillis,
    ) -> Result<Vec<DeliveryEvent>, EventError> {
        let value: Value =
            serde_json::from_str(body).map_err(|e| EventError::Envelope(e.to_string()))?;
        if value.get("detail-type").is_some() {
            return normalise_eventbridge(body, now).map_err(|e| EventError::Normalise {
                provider: "ses".to_owned(),
                detail: e.to_string(),
            });
        }
        let queued: QueuedEvent =
            serde_json::from_value(value).map_err(|e| EventError::Envelope(e.to_string()))?;
        let origin = EventOrigin {
            receipt: &queued.receipt,
            index: queued.index,
            received_at: UnixMillis(queued.received_at),
        };
        let normalised = match &queued.event {
            Some(raw) if !queued.oversize => normalise(queued.provider, raw.get(), &origin),
            _ => {
                let event = self.oversize_event(&queued).await?;
                normalise(queued.provider, &event, &origin)
            }
        };
        normalised.map_err(|e| EventError::Normalise {
            provider: queued.provider.to_string(),
            detail: e.to_string(),
        })
    }

    /// Reads an event too large for the queue from its stored receipt.
    async fn oversize_event(&self, queued: &QueuedEvent) -> Result<String, EventError> {
        let failed = |detail: String| EventError::Receipt {
            receipt: queued.receipt.clone(),
            detail,
        };
        let receipt = self
            .receipts
            .load(&queued.receipt)
            .await
            .map_err(|e| failed(e.to_string()))?
            .ok_or_else(|| failed("no such receipt".to_owned()))?;
        let events = mailgate_providers::webhook::events_of(
            receipt.provider,
            &receipt.body,
            receipt.content_type.as_deref(),
        )
        .map_err(|e| failed(e.to_string()))?;
        events
            .into_iter()
            .nth(queued.index)
            .ok_or_else(|| failed(format!("it holds no event {}", queued.index)))
    }

    /// Processes one normalised event exactly once.
    pub async fn process_event(&self, event: &DeliveryEvent) -> Result<EventOutcome, EventError> {
        let store = |e: &dyn std::fmt::Display| EventError::Store(e.to_string());
        let provider = event.provider.as_str();
        match self
            .history
            .claim(event, self.now())
            .await
            .map_err(|e| store(&e))?
        {
            EventClaim::Done => {
                self.tally.add("DedupeHits", provider, "none");
                return Ok(EventOutcome::Duplicate);
            }
            EventClaim::Busy => return Err(EventError::Busy),
            EventClaim::New => {}
        }

        let mut message = self.correlate(event).await?;
        let category = message.as_ref().map_or("unknown", |m| match m.category {
            MessageCategory::Transactional => "transactional",
            MessageCategory::Bulk => "bulk",
        });
        self.apply_effects(event, category).await?;
        // Before the history write, so a crash in between repeats the fan-out rather than
        // losing it; the app dedupes a repeat by its stable `webhook-id`.
        self.app_webhooks
            .fan_out(&[(event.clone(), message.as_ref().map(|m| m.id.clone()))])
            .await
            .map_err(|e| store(&e))?;

        for _ in 0..STATE_RETRIES {
            let recorded = self
                .history
                .record(event, message.as_ref(), self.now())
                .await
                .map_err(|e| store(&e))?;
            match recorded {
                EventRecorded::Applied { .. } => {
                    if let Some(metric) = kind_metric(event.kind) {
                        self.tally.add(metric, provider, category);
                    }
                    // How late providers report: from the provider's event time to receipt.
                    if let Some(at) = event.occurred_at {
                        let lag = (event.received_at.as_i64() - at.as_i64()).max(0);
                        mailgate_lambda::metrics::measure(
                            "EventLagMs",
                            "Milliseconds",
                            lag as f64,
                            &[("Provider", provider)],
                        );
                    }
                    return Ok(EventOutcome::Applied);
                }
                EventRecorded::Orphaned => {
                    self.tally.add("OrphanEvents", provider, category);
                    tracing::info!(provider, kind = event.kind.as_str(), "orphan event stored");
                    return Ok(EventOutcome::Orphaned);
                }
                EventRecorded::Duplicate => {
                    self.tally.add("DedupeHits", provider, category);
                    return Ok(EventOutcome::Duplicate);
                }
                EventRecorded::Conflict => {
                    // The summary changed since it was read: read it again.
                    message = self.correlate(event).await?;
                }
            }
        }
        Err(EventError::Contended(
            message.map(|m| m.id.to_string()).unwrap_or_default(),
        ))
    }

    /// Our message the event is about: by our id when the provider echoed it, else by the
    /// provider's id; `None` for an orphan.
    async fn correlate(&self, event: &DeliveryEvent) -> Result<Option<MessageRecord>, EventError> {
        let store = |e: mailgate_aws::MessageStoreError| EventError::Store(e.to_string());
        if let Some(id) = &event.message_id
            && let Some(record) = self.messages.summary(id).await.map_err(store)?
        {
            return Ok(Some(record));
        }
        let Some(pmid) = &event.provider_message_id else {
            return Ok(None);
        };
        match self
            .messages
            .find_by_provider_message_id(event.provider, pmid)
            .await
            .map_err(store)?
        {
            Some(id) => self.messages.summary(&id).await.map_err(store),
            None => Ok(None),
        }
    }

    /// The suppression-list effects of an event. Each is idempotent, so a retry after a crash
    /// repeats them harmlessly: a suppression is stored only when none is active, and a soft
    /// bounce is counted once per distinct event.
    async fn apply_effects(&self, event: &DeliveryEvent, category: &str) -> Result<(), EventError> {
        let provider = event.provider.as_str();
        let store = |e: mailgate_aws::SuppressionStoreError| EventError::Store(e.to_string());
        let effect = event.effect();
        if let Some(verdict) = event.bounce_classification() {
            // Every bounce counts once toward `Bounces` (the rate alarms) and once toward its
            // class: sender-side first (it says nothing about the address), then hard or soft.
            self.tally.add("Bounces", provider, category);
            let class = if verdict.cause.is_sender_side() {
                "SenderSideBounces"
            } else if verdict.kind == mailgate_core::BounceKind::Hard {
                "HardBounces"
            } else {
                "SoftBounces"
            };
            self.tally.add(class, provider, category);
        }
        match effect {
            EventEffect::SenderSideBounce(cause) => {
                // An operator alert: our sending has a problem, the recipient does not.
                tracing::error!(
                    provider,
                    cause = cause.as_str(),
                    alert = "sender_side_bounce",
                    "a receiving server refused our mail for a sender-side reason; the address is not suppressed"
                );
            }
            EventEffect::Suppress(_) | EventEffect::CountSoftBounce | EventEffect::None => {}
        }
        let Some(address) = &event.recipient else {
            return Ok(());
        };
        let now = self.clock.now();
        match effect {
            EventEffect::Suppress(reason) => {
                let mut entry = Suppression::new(address, reason, now);
                entry.note = Some(format!("{} {} event", event.provider, event.provider_type));
                self.suppressions
                    .put_unless_active(&entry, now)
                    .await
                    .map_err(store)?;
            }
            EventEffect::CountSoftBounce => {
                let recent = self
                    .suppressions
                    .count_soft_bounce(
                        address,
                        &event.key_digest(),
                        event.at(),
                        self.config.soft_bounce.window_ms,
                        self.now(),
                    )
                    .await
                    .map_err(store)?;
                if self.config.soft_bounce.reached(&recent, self.now()) {
                    let mut entry = Suppression::new(
                        address,
                        mailgate_core::SuppressionReason::SoftBounceThreshold,
                        now,
                    );
                    entry.note = Some(format!(
                        "{} soft bounces within {} days",
                        recent.len(),
                        self.config.soft_bounce.window_ms / (24 * 3600 * 1000)
                    ));
                    self.suppressions
                        .put_unless_active(&entry, now)
                        .await
                        .map_err(store)?;
                }
            }
            EventEffect::SenderSideBounce(_) | EventEffect::None => {}
        }
        Ok(())
    }

    async fn forward(&self, event: Value) -> Result<ProcessorResponse, ProcessorError> {
        let out = self
            .clients
            .sqs
            .send_message()
            .queue_url(self.config.names.queue_url(Queue::Events))
            .message_body(event.to_string())
            .send()
            .await
            .map_err(|e| {
                ProcessorError::Forward(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
            })?;
        Ok(ProcessorResponse::Forwarded {
            forwarded_message_id: out.message_id.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!(
            "{}/../../events/event-processor/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn recognises_both_trigger_fixtures() {
        assert!(matches!(
            Trigger::from_payload(fixture("sqs-batch.json")).unwrap(),
            Trigger::Sqs(b) if b.records.len() == 2
        ));
        assert!(matches!(
            Trigger::from_payload(fixture("eventbridge-ses-bounce.json")).unwrap(),
            Trigger::EventBridge(_)
        ));
    }

    #[test]
    fn refuses_other_payloads() {
        assert!(Trigger::from_payload(serde_json::json!({"hello": "world"})).is_err());
    }

    #[test]
    fn soft_bounce_settings_are_read_and_checked() {
        let env = |extra: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                if let Some((_, v)) = extra.iter().find(|(name, _)| *name == k) {
                    Some((*v).to_owned())
                } else if k.starts_with("SOFT_BOUNCE") {
                    None
                } else if k.ends_with("_URL") {
                    Some(format!("http://127.0.0.1:1/{k}"))
                } else {
                    Some(format!("table-{k}"))
                }
            }
        };
        let config = Config::from_lookup(env(&[])).unwrap();
        assert_eq!(config.soft_bounce, SoftBounceRule::default());
        let config = Config::from_lookup(env(&[
            ("SOFT_BOUNCE_THRESHOLD", "3"),
            ("SOFT_BOUNCE_WINDOW_DAYS", "7"),
        ]))
        .unwrap();
        assert_eq!(config.soft_bounce.threshold, 3);
        assert_eq!(config.soft_bounce.window_ms, 7 * 24 * 3600 * 1000);
        let err = Config::from_lookup(env(&[("SOFT_BOUNCE_THRESHOLD", "zero")])).unwrap_err();
        assert!(err.to_string().contains("SOFT_BOUNCE_THRESHOLD"));
    }
}
