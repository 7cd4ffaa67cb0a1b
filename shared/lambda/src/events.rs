//! Cold-start wiring of the event flow on the real adapters, the providers' event knowledge
//! behind the core's [`EventDecoder`] port (the services know no provider), and the metrics of
//! the event reports (the services count nothing themselves).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use mailgate_aws::{
    AwsClients, ConfigError, DynamoDbEndpoints, DynamoDbEventHistory, DynamoDbMessages,
    DynamoDbSuppressionList, DynamoDbWebhookReceipts, Queue, ResourceNames, SqsEventForwarder,
    SqsOutboundQueue, Table,
};
use mailgate_core::ports::{DecodeError, EventDecoder, OversizeEvent, QueuedEvents, ReceiptBody};
use mailgate_core::{Clock, DeliveryEvent, EventKind, GuardrailPolicy, SoftBounceRule, UnixMillis};
use mailgate_providers::events::{EventOrigin, normalise, normalise_eventbridge};
use mailgate_services::events::{BounceClass, EventApplier, EventOutcome, EventPorts, EventReport};
use mailgate_services::fan_out::AppWebhookFanOut;
use serde::Serialize;
use serde_json::Value;

use mailgate_core::QueuedEvent;

/// The envelope version the webhook functions write and this build reads.
pub const QUEUED_EVENT_VERSION: u32 = 1;

/// Reads events-queue messages with the providers' normalisers: a webhook event (inline, or a
/// pointer to its stored receipt) or an SES event an EventBridge rule put on the queue.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProviderEventDecoder;

impl EventDecoder for ProviderEventDecoder {
    fn decode(&self, body: &str, now: UnixMillis) -> Result<QueuedEvents, DecodeError> {
        let value: Value =
            serde_json::from_str(body).map_err(|e| DecodeError::Envelope(e.to_string()))?;
        if value.get("detail-type").is_some() {
            return normalise_eventbridge(body, now)
                .map(QueuedEvents::Events)
                .map_err(|e| DecodeError::Normalise {
                    provider: "ses".to_owned(),
                    detail: e.to_string(),
                });
        }
        let queued: QueuedEvent =
            serde_json::from_value(value).map_err(|e| DecodeError::Envelope(e.to_string()))?;
        if queued.v != QUEUED_EVENT_VERSION {
            return Err(DecodeError::Envelope(format!(
                "unsupported envelope version {}",
                queued.v
            )));
        }
        match &queued.event {
            Some(raw) if !queued.oversize => {
                let origin = EventOrigin {
                    receipt: &queued.receipt,
                    index: queued.index,
                    received_at: UnixMillis(queued.received_at),
                };
                normalise(queued.provider, raw.get(), &origin)
                    .map(QueuedEvents::Events)
                    .map_err(|e| DecodeError::Normalise {
                        provider: queued.provider.to_string(),
                        detail: e.to_string(),
                    })
            }
            _ => Ok(QueuedEvents::Oversize(OversizeEvent {
                provider: queued.provider,
                receipt: queued.receipt,
                index: queued.index,
                received_at: UnixMillis(queued.received_at),
            })),
        }
    }

    fn decode_stored(
        &self,
        receipt: &ReceiptBody,
        event: &OversizeEvent,
    ) -> Result<Vec<DeliveryEvent>, DecodeError> {
        let events = mailgate_providers::webhook::events_of(
            receipt.provider,
            &receipt.body,
            receipt.content_type.as_deref(),
        )
        .map_err(|e| DecodeError::Receipt(e.to_string()))?;
        let raw = events
            .into_iter()
            .nth(event.index)
            .ok_or_else(|| DecodeError::Receipt(format!("it holds no event {}", event.index)))?;
        let origin = EventOrigin {
            receipt: &event.receipt,
            index: event.index,
            received_at: event.received_at,
        };
        normalise(event.provider, &raw, &origin).map_err(|e| DecodeError::Normalise {
            provider: event.provider.to_string(),
            detail: e.to_string(),
        })
    }
}

/// The app-webhook fan-out on the endpoints table and the outbound queue.
pub fn app_webhook_fan_out(clients: &AwsClients, names: &ResourceNames) -> AppWebhookFanOut {
    AppWebhookFanOut::new(
        Arc::new(DynamoDbEndpoints::on(
            clients.dynamodb_tables(names).table(Table::Endpoints),
        )),
        Arc::new(SqsOutboundQueue::new(
            clients.sqs.clone(),
            names.queue_url(Queue::Outbound),
        )),
    )
}

/// Wires the event pipeline of `event-processor`: history and dedupe (messages and dedupe
/// tables), messages, suppressions, receipts, the events queue and the app-webhook fan-out.
pub fn event_applier(
    clients: &AwsClients,
    names: &ResourceNames,
    soft_bounce: SoftBounceRule,
    clock: Arc<dyn Clock>,
) -> EventApplier {
    let tables = clients.dynamodb_tables(names);
    let ports = EventPorts {
        history: Arc::new(
            DynamoDbEventHistory::on(tables.table(Table::Messages), tables.table(Table::Dedupe))
                .with_retention(names.message_retention()),
        ),
        messages: Arc::new(
            DynamoDbMessages::on(tables.table(Table::Messages))
                .with_retention(names.message_retention()),
        ),
        suppressions: Arc::new(DynamoDbSuppressionList::on(
            tables.table(Table::Suppressions),
        )),
        receipts: Arc::new(DynamoDbWebhookReceipts::on(
            tables.table(Table::Receipts),
            tables.table(Table::Dedupe),
        )),
        decoder: Arc::new(ProviderEventDecoder),
        events_queue: Arc::new(SqsEventForwarder::new(
            clients.sqs.clone(),
            names.queue_url(Queue::Events),
        )),
        fan_out: Arc::new(app_webhook_fan_out(clients, names)),
        clock,
    };
    EventApplier::new(ports, soft_bounce)
}

/// Messages as inbound threading reads them: by the provider message id recorded at send time.
pub fn message_lookup(
    clients: &AwsClients,
    names: &ResourceNames,
) -> Arc<dyn mailgate_core::ports::MessageLookup> {
    Arc::new(DynamoDbMessages::on(
        clients.dynamodb_tables(names).table(Table::Messages),
    ))
}

/// The reputation guardrails' port: route counters in the messages table, the switch in the
/// control table.
pub fn reputation_guard(
    clients: &AwsClients,
    names: &ResourceNames,
) -> Arc<dyn mailgate_core::ports::ReputationGuard> {
    let db = clients.dynamodb_tables(names);
    Arc::new(mailgate_aws::DynamoDbReputationGuard::new(
        mailgate_aws::DynamoDbDeliveryStats::on(db.table(Table::Messages)),
        mailgate_aws::DynamoDbSendControls::on(db.table(Table::Control)),
    ))
}

/// Counts per (metric, provider, category), emitted once per batch as EMF lines.
#[derive(Debug, Default)]
pub struct Tally(Mutex<BTreeMap<(&'static str, String, String), u64>>);

impl Tally {
    /// Adds one to `metric` for `provider` and `category`.
    pub fn add(&self, metric: &'static str, provider: &str, category: &str) {
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

    /// Emits the counts added since `before` (one EMF line per metric and dimension).
    pub fn emit_since(&self, before: &BTreeMap<(&'static str, String, String), u64>) {
        for (key, count) in self.snapshot() {
            let added = count - before.get(&key).copied().unwrap_or_default();
            if added > 0 {
                let (metric, provider, category) = key;
                let dims = [
                    ("Provider", provider.as_str()),
                    ("Category", category.as_str()),
                ];
                crate::metrics::count(metric, added, &dims);
            }
        }
    }

    /// Counts one event's report (and measures its lag when it was applied).
    pub fn count(&self, e: &EventReport) {
        let (provider, category) = (e.provider.as_str(), e.category.as_str());
        if let Some(class) = e.bounce {
            self.add("Bounces", provider, category);
            let metric = match class {
                BounceClass::SenderSide => "SenderSideBounces",
                BounceClass::Hard => "HardBounces",
                BounceClass::Soft => "SoftBounces",
            };
            self.add(metric, provider, category);
        }
        if e.guardrail_tripped {
            self.add("GuardrailTripped", provider, category);
        }
        match e.outcome {
            Some(EventOutcome::Applied) => {
                if let Some(metric) = kind_metric(e.kind) {
                    self.add(metric, provider, category);
                }
                if let Some(lag) = e.lag_ms {
                    let dims = [("Provider", provider)];
                    crate::metrics::measure("EventLagMs", "Milliseconds", lag as f64, &dims);
                }
            }
            Some(EventOutcome::Orphaned) => self.add("OrphanEvents", provider, category),
            Some(EventOutcome::Duplicate) => self.add("DedupeHits", provider, category),
            None => {}
        }
        if e.unmatched {
            self.add("UnmatchedEffects", provider, category);
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
        EventKind::Replied => "Replies",
        EventKind::Bounced
        | EventKind::Resubscribed
        | EventKind::AccountNotice
        | EventKind::Received => return None,
    })
}

/// When soft bounces suppress an address: `SOFT_BOUNCE_THRESHOLD` (default 5) bounces within
/// `SOFT_BOUNCE_WINDOW_DAYS` (default 30). Each problem is added to `problems`.
pub fn soft_bounce_rule(
    lookup: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> mailgate_core::SoftBounceRule {
    let mut setting = |name: &str, default: i64| {
        crate::webhook::positive_setting(lookup, name, default)
            .map_err(|e| problems.push(e))
            .unwrap_or(default)
    };
    let threshold = setting("SOFT_BOUNCE_THRESHOLD", 5);
    let days = setting("SOFT_BOUNCE_WINDOW_DAYS", 30);
    mailgate_core::SoftBounceRule {
        threshold: u32::try_from(threshold).unwrap_or(u32::MAX),
        window_ms: days.saturating_mul(24 * 3600 * 1000),
    }
}

/// The reputation guardrails: `GUARDRAIL_WINDOW_SENDS` (default 10000), `GUARDRAIL_MIN_SENDS`
/// (default 1000), `GUARDRAIL_COMPLAINT_RATE` (default 0.001) and `GUARDRAIL_HARD_BOUNCE_RATE`
/// (default 0.04). Each problem is added to `problems`.
pub fn guardrail_policy(
    lookup: &impl Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> mailgate_core::GuardrailPolicy {
    let defaults = mailgate_core::GuardrailPolicy::default();
    let mut count = |name: &str, default: u64| {
        let default = i64::try_from(default).unwrap_or(i64::MAX);
        let value = crate::webhook::positive_setting(lookup, name, default)
            .map_err(|e| problems.push(e))
            .unwrap_or(default);
        u64::try_from(value).unwrap_or(u64::MAX)
    };
    let window_sends = count("GUARDRAIL_WINDOW_SENDS", defaults.window_sends);
    let min_sends = count("GUARDRAIL_MIN_SENDS", defaults.min_sends);
    mailgate_core::GuardrailPolicy {
        window_sends,
        min_sends,
        complaint_rate: rate_setting(
            lookup,
            "GUARDRAIL_COMPLAINT_RATE",
            defaults.complaint_rate,
            problems,
        ),
        hard_bounce_rate: rate_setting(
            lookup,
            "GUARDRAIL_HARD_BOUNCE_RATE",
            defaults.hard_bounce_rate,
            problems,
        ),
        ..defaults
    }
}

/// Reads a rate setting: a number in (0, 1].
fn rate_setting(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: f64,
    problems: &mut Vec<String>,
) -> f64 {
    match lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
    {
        None => default,
        Some(v) => match v.parse::<f64>() {
            Ok(rate) if rate > 0.0 && rate <= 1.0 => rate,
            _ => {
                problems.push(format!(
                    "{name} must be a rate above 0 and at most 1 (0.001 is 0.1 %), got {v:?}"
                ));
                default
            }
        },
    }
}

/// Reads an optional `true`/`false` setting (unset or blank: `false`).
pub fn flag_setting(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    problems: &mut Vec<String>,
) -> bool {
    match lookup(name)
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(other) => {
            problems.push(format!("{name} must be true or false, got {other:?}"));
            false
        }
    }
}

// The event processor's configuration.

/// The variable holding the events queue's dead-letter queue URL (the event processor's).
pub const DLQ_VAR: &str = "EVENTS_DLQ_URL";

/// Whether orphan events (about mail we did not send) still suppress (default `false`).
pub const SUPPRESS_UNMATCHED_VAR: &str = "SUPPRESS_UNMATCHED_EVENTS";

/// The event processor's configuration, loaded once per cold start.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// Tables and queues.
    pub names: ResourceNames,
    /// When soft bounces suppress an address (`SOFT_BOUNCE_THRESHOLD`, default 5;
    /// `SOFT_BOUNCE_WINDOW_DAYS`, default 30).
    pub soft_bounce: SoftBounceRule,
    /// Where poison records go (`EVENTS_DLQ_URL`).
    pub dlq_url: String,
    /// Whether orphan events (about mail we did not send) still suppress
    /// (`SUPPRESS_UNMATCHED_EVENTS`, default `false`: only for a provider account shared with
    /// other senders). A stranger named on our message never suppresses.
    pub suppress_unmatched: bool,
    /// Where received mail is stored (`INBOUND_TABLE`, `INBOUND_BUCKET`,
    /// `INBOUND_RETENTION_DAYS`).
    pub inbound: crate::inbound::InboundSettings,
    /// Reply addresses that thread what they receive (`INBOUND_DOMAIN`, verified with
    /// `UNSUBSCRIBE_SIGNING_KEYS`), when both are set.
    pub replies: Option<mailgate_core::ReplyAddresses>,
    /// The reputation guardrails (`GUARDRAIL_WINDOW_SENDS`, default 10000;
    /// `GUARDRAIL_MIN_SENDS`, default 1000; `GUARDRAIL_COMPLAINT_RATE`, default 0.001;
    /// `GUARDRAIL_HARD_BOUNCE_RATE`, default 0.04), over the counters in `MESSAGES_TABLE` and
    /// the switch in `CONTROL_TABLE`.
    pub guardrails: GuardrailPolicy,
}

impl ProcessorConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `lookup` (tests pass a map); every problem at once.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let tables = [
            Table::Messages,
            Table::Receipts,
            Table::Dedupe,
            Table::Suppressions,
            Table::Endpoints,
            Table::Control,
        ];
        let names = ResourceNames::from_lookup(&tables, &[Queue::Events, Queue::Outbound], &lookup)
            .map_err(|e| problems.extend(e.problems))
            .ok();
        let soft_bounce = soft_bounce_rule(&lookup, &mut problems);
        let guardrails = guardrail_policy(&lookup, &mut problems);
        let suppress_unmatched = flag_setting(&lookup, SUPPRESS_UNMATCHED_VAR, &mut problems);
        let dlq_url = lookup(DLQ_VAR).filter(|v| !v.trim().is_empty());
        if dlq_url.is_none() {
            problems.push(format!("{DLQ_VAR} is not set"));
        }
        let inbound = crate::inbound::InboundSettings::from_lookup(&lookup, &mut problems);
        let replies = mailgate_core::unsubscribe::reply_addresses_from_lookup(&lookup)
            .map_err(|e| problems.push(e))
            .ok()
            .flatten();
        match (names, dlq_url, inbound) {
            (Some(names), Some(dlq_url), Some(inbound)) if problems.is_empty() => Ok(Self {
                names,
                soft_bounce,
                dlq_url,
                suppress_unmatched,
                inbound,
                replies,
                guardrails,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

// The event processor's two trigger shapes and its answers.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_envelope_or_an_unknown_version_is_an_envelope_error() {
        let decoder = ProviderEventDecoder;
        assert!(matches!(
            decoder.decode("not json", UnixMillis(0)),
            Err(DecodeError::Envelope(_))
        ));
        assert!(matches!(
            decoder.decode(r#"{"hello":"world"}"#, UnixMillis(0)),
            Err(DecodeError::Envelope(_))
        ));
        let v2 = r#"{"v":2,"provider":"ses","receipt":"ses#k","index":0,"count":1,"received_at":1,"event":{}}"#;
        assert_eq!(
            decoder.decode(v2, UnixMillis(0)),
            Err(DecodeError::Envelope(
                "unsupported envelope version 2".to_owned()
            ))
        );
        let oversize = r#"{"v":1,"provider":"sendgrid","receipt":"sendgrid#k","index":3,"count":4,"received_at":7,"event":null,"oversize":true}"#;
        assert_eq!(
            decoder.decode(oversize, UnixMillis(0)),
            Ok(QueuedEvents::Oversize(OversizeEvent {
                provider: mailgate_core::ProviderId::Sendgrid,
                receipt: "sendgrid#k".to_owned(),
                index: 3,
                received_at: UnixMillis(7),
            }))
        );
    }

    #[test]
    fn a_report_counts_its_bounce_class_and_its_outcome_by_provider_and_category() {
        use mailgate_core::{MessageCategory, ProviderId};
        use mailgate_services::events::EventCategory;
        let tally = Tally::default();
        let report = |kind, category, bounce, outcome| EventReport {
            provider: ProviderId::Ses,
            kind,
            category,
            bounce,
            outcome,
            lag_ms: None,
            unmatched: false,
            guardrail_tripped: false,
        };
        let ours = EventCategory::Message(MessageCategory::Transactional);
        tally.count(&report(
            EventKind::Bounced,
            ours,
            Some(BounceClass::Hard),
            Some(EventOutcome::Applied),
        ));
        // A failure after the effects still counts the bounce, and nothing else.
        tally.count(&report(
            EventKind::Bounced,
            ours,
            Some(BounceClass::SenderSide),
            None,
        ));
        tally.count(&report(
            EventKind::Delivered,
            ours,
            None,
            Some(EventOutcome::Applied),
        ));
        tally.count(&report(
            EventKind::Opened,
            EventCategory::Orphan,
            None,
            Some(EventOutcome::Orphaned),
        ));
        tally.count(&report(
            EventKind::Opened,
            EventCategory::Uncorrelated,
            None,
            Some(EventOutcome::Duplicate),
        ));
        let key = |m: &'static str, c: &str| (m, "ses".to_owned(), c.to_owned());
        let expected = BTreeMap::from([
            (key("Bounces", "transactional"), 2),
            (key("HardBounces", "transactional"), 1),
            (key("SenderSideBounces", "transactional"), 1),
            (key("Delivered", "transactional"), 1),
            (key("OrphanEvents", "unknown"), 1),
            (key("DedupeHits", "none"), 1),
        ]);
        assert_eq!(tally.snapshot(), expected);
    }

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
    fn soft_bounce_and_dead_letter_settings_are_read_and_checked() {
        let env = |extra: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                if let Some((_, v)) = extra.iter().find(|(name, _)| *name == k) {
                    Some((*v).to_owned())
                } else if k.starts_with("SOFT_BOUNCE")
                    || k.starts_with("GUARDRAIL_")
                    || k == SUPPRESS_UNMATCHED_VAR
                    || k == "INBOUND_RETENTION_DAYS"
                {
                    None
                } else if k.ends_with("_URL") {
                    Some(format!("http://127.0.0.1:1/{k}"))
                } else if k.ends_with("_TABLE") || k == "INBOUND_BUCKET" {
                    Some(format!("table-{k}"))
                } else {
                    None
                }
            }
        };
        let config = ProcessorConfig::from_lookup(env(&[])).unwrap();
        assert_eq!(config.soft_bounce, SoftBounceRule::default());
        assert!(!config.suppress_unmatched);
        assert!(
            ProcessorConfig::from_lookup(env(&[(SUPPRESS_UNMATCHED_VAR, "TRUE")]))
                .unwrap()
                .suppress_unmatched
        );
        let err =
            ProcessorConfig::from_lookup(env(&[(SUPPRESS_UNMATCHED_VAR, "yes")])).unwrap_err();
        assert!(err.to_string().contains(SUPPRESS_UNMATCHED_VAR));
        assert_eq!(config.dlq_url, "http://127.0.0.1:1/EVENTS_DLQ_URL");
        let config = ProcessorConfig::from_lookup(env(&[
            ("SOFT_BOUNCE_THRESHOLD", "3"),
            ("SOFT_BOUNCE_WINDOW_DAYS", "7"),
        ]))
        .unwrap();
        assert_eq!(config.soft_bounce.threshold, 3);
        assert_eq!(config.soft_bounce.window_ms, 7 * 24 * 3600 * 1000);
        let err =
            ProcessorConfig::from_lookup(env(&[("SOFT_BOUNCE_THRESHOLD", "zero")])).unwrap_err();
        assert!(err.to_string().contains("SOFT_BOUNCE_THRESHOLD"));
        let err = ProcessorConfig::from_lookup(env(&[(DLQ_VAR, "")])).unwrap_err();
        assert!(err.to_string().contains(DLQ_VAR));
    }
}
