//! Applying provider events: the event processor's pipeline, below its Lambda glue.
//!
//! Per events-queue message: decode (the envelope, the event inline or read back from its
//! stored receipt, normalised) → per event: claim (dedupe) → correlate to our message (our id
//! echoed by the provider, else the provider's id; unknown messages become orphans) →
//! suppression effects (each idempotent) → app-webhook fan-out (one outbound-queue delivery
//! per matching endpoint) → history and state in one write.
//!
//! The service counts nothing: each event's [`EventReport`] says what happened (its
//! correlation, its bounce class, its outcome, its lag) and the caller emits the metrics.

use std::sync::Arc;

use mailgate_core::guardrail::{self, GuardrailPolicy, GuardrailTrip};
use mailgate_core::ports::{
    DecodeError, EventClaim, EventDecoder, EventForwarder, EventHistory, EventRecorded,
    MessageLookup, OversizeEvent, QueuedEvents, ReceiptReader, ReputationGuard, SuppressionWrites,
};
use mailgate_core::stats::hour_of;
use mailgate_core::{
    BounceKind, Clock, CorrelatedMessage, DeliveryEvent, EmailAddress, EventEffect, EventKind,
    MessageCategory, MessageRecord, ProviderId, SoftBounceRule, StoreError, Suppression,
    SuppressionReason, UnixMillis, suppression_key,
};

use crate::fan_out::{AppWebhookFanOut, FanOutError};

/// How often a state update is retried when the summary changed under it.
pub const STATE_RETRIES: usize = 5;

/// Why one events-queue message could not be processed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EventError {
    /// The message or its event cannot be read.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The oversize event's receipt cannot be loaded.
    #[error("receipt {receipt} cannot be loaded: {detail}")]
    Receipt {
        /// The receipt key.
        receipt: String,
        /// Why.
        detail: String,
        /// The receipt store's failure, when that is why (its kind decides retry or park).
        store: Option<StoreError>,
    },
    /// Another invocation is processing the same event.
    #[error("event is being processed by another invocation")]
    Busy,
    /// A store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The app-webhook deliveries could not be enqueued.
    #[error("{0}")]
    FanOut(#[from] FanOutError),
    /// The message kept changing under the state update.
    #[error("message {0} kept changing; state update retried {STATE_RETRIES} times")]
    Contended(String),
}

impl EventError {
    /// Whether retrying can never succeed (the queue message is not one this build reads, or a
    /// store answered with a failure that is not worth a retry, e.g. an unreadable item): the
    /// record belongs on the dead-letter queue at once. Throttling and transient store faults
    /// are retried.
    pub fn is_poison(&self) -> bool {
        match self {
            Self::Decode(DecodeError::Envelope(_)) => true,
            Self::Store(e) | Self::Receipt { store: Some(e), .. } => !e.is_retryable(),
            Self::FanOut(FanOutError::Endpoints(e) | FanOutError::Queue(e)) => !e.is_retryable(),
            _ => false,
        }
    }
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

/// What an event was correlated to, as metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventCategory {
    /// Not correlated (a duplicate found at the claim): `none`.
    Uncorrelated,
    /// No message of ours: `unknown`.
    Orphan,
    /// One of our messages, of this category.
    Message(MessageCategory),
}

impl EventCategory {
    /// The metrics' `Category` dimension.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uncorrelated => "none",
            Self::Orphan => "unknown",
            Self::Message(MessageCategory::Transactional) => "transactional",
            Self::Message(MessageCategory::Bulk) => "bulk",
        }
    }
}

/// How a bounce counts: sender-side first (it says nothing about the address), then hard or
/// soft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceClass {
    /// A receiving server refused our mail for a sender-side reason.
    SenderSide,
    /// A permanent failure of the address.
    Hard,
    /// A temporary failure.
    Soft,
}

/// What happened to one event, for the caller's metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventReport {
    /// Whose event.
    pub provider: ProviderId,
    /// Its kind.
    pub kind: EventKind,
    /// What it was correlated to.
    pub category: EventCategory,
    /// Its bounce class, once its effects were reached (counted even if a later step failed).
    pub bounce: Option<BounceClass>,
    /// What became of it; `None` when a step failed.
    pub outcome: Option<EventOutcome>,
    /// For an applied event with an event time: how late the provider reported it (receipt
    /// time minus event time, never negative).
    pub lag_ms: Option<i64>,
    /// Its suppression effect was withheld: it names no recipient of a message we sent.
    pub unmatched: bool,
    /// It tripped a reputation guardrail: bulk through its provider and sending domain paused.
    pub guardrail_tripped: bool,
}

/// What became of one events-queue message.
#[derive(Debug, Clone)]
pub struct MessageReport {
    /// One report per event reached, in order.
    pub events: Vec<EventReport>,
    /// Why processing stopped, if it did (the record is retried, or parked when poison).
    pub failure: Option<EventError>,
}

impl MessageReport {
    /// The outcomes of every event, or the failure.
    pub fn result(&self) -> Result<Vec<EventOutcome>, EventError> {
        match &self.failure {
            Some(err) => Err(err.clone()),
            None => Ok(self.events.iter().filter_map(|e| e.outcome).collect()),
        }
    }
}

/// The ports the event pipeline uses.
#[derive(Clone)]
pub struct EventPorts {
    /// Dedupe claims, history and state.
    pub history: Arc<dyn EventHistory>,
    /// Our messages, for correlation.
    pub messages: Arc<dyn MessageLookup>,
    /// The suppression list.
    pub suppressions: Arc<dyn SuppressionWrites>,
    /// Stored webhook receipts (oversize events).
    pub receipts: Arc<dyn ReceiptReader>,
    /// Reading queue messages and provider events.
    pub decoder: Arc<dyn EventDecoder>,
    /// The events queue (forwarded EventBridge events).
    pub events_queue: Arc<dyn EventForwarder>,
    /// The app-webhook fan-out.
    pub fan_out: Arc<AppWebhookFanOut>,
    /// The time.
    pub clock: Arc<dyn Clock>,
}

/// Applies provider events to our messages, once each.
#[derive(Clone)]
pub struct EventApplier {
    ports: EventPorts,
    soft_bounce: SoftBounceRule,
    effects_for_unmatched: bool,
    guardrails: Option<(Arc<dyn ReputationGuard>, GuardrailPolicy)>,
}

impl std::fmt::Debug for EventApplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventApplier")
            .field("soft_bounce", &self.soft_bounce)
            .finish_non_exhaustive()
    }
}

impl EventApplier {
    /// The pipeline on `ports`, suppressing an address after soft bounces per `soft_bounce`.
    pub fn new(ports: EventPorts, soft_bounce: SoftBounceRule) -> Self {
        Self {
            ports,
            soft_bounce,
            effects_for_unmatched: false,
            guardrails: None,
        }
    }

    /// The same pipeline, evaluating the reputation guardrails of `policy` through `guard`
    /// after each applied complaint or hard bounce of one of our messages (see
    /// [`Self::check_guardrail`]).
    pub fn with_guardrails(
        mut self,
        guard: Arc<dyn ReputationGuard>,
        policy: GuardrailPolicy,
    ) -> Self {
        self.guardrails = Some((guard, policy));
        self
    }

    /// The same pipeline, applying suppression effects also to orphan events, which match none
    /// of our messages (`SUPPRESS_UNMATCHED_EVENTS`: a provider account shared with other
    /// senders). Off by default: such an event is unauthenticated as far as its `recipient` goes
    /// (Mailgun signs only timestamp and token; leaked Basic credentials post anything). An
    /// event about our message naming someone it was not sent to never suppresses.
    pub fn with_effects_for_unmatched(mut self, on: bool) -> Self {
        self.effects_for_unmatched = on;
        self
    }

    fn now(&self) -> UnixMillis {
        UnixMillis::from_datetime(self.ports.clock.now())
    }

    /// Puts an EventBridge event that targeted the function onto the events queue; the queue's
    /// id for it.
    pub async fn forward(&self, event: &str) -> Result<String, StoreError> {
        self.ports.events_queue.forward(event).await
    }

    /// Processes one events-queue message: every event in it, stopping at the first failure.
    pub async fn apply_message(&self, body: &str) -> MessageReport {
        let mut report = MessageReport {
            events: Vec::new(),
            failure: None,
        };
        let events = match self.events_of(body, self.now()).await {
            Ok(events) => events,
            Err(err) => {
                report.failure = Some(err);
                return report;
            }
        };
        for event in &events {
            let (event_report, result) = self.apply_event(event).await;
            report.events.push(event_report);
            if let Err(err) = result {
                report.failure = Some(err);
                break;
            }
        }
        report
    }

    /// The normalised events of a queue message.
    async fn events_of(
        &self,
        body: &str,
        now: UnixMillis,
    ) -> Result<Vec<DeliveryEvent>, EventError> {
        match self.ports.decoder.decode(body, now)? {
            QueuedEvents::Events(events) => Ok(events),
            QueuedEvents::Oversize(oversize) => self.oversize_events(&oversize).await,
        }
    }

    /// Reads an event too large for the queue from its stored receipt.
    async fn oversize_events(
        &self,
        oversize: &OversizeEvent,
    ) -> Result<Vec<DeliveryEvent>, EventError> {
        let failed = |detail: String, store: Option<StoreError>| EventError::Receipt {
            receipt: oversize.receipt.clone(),
            detail,
            store,
        };
        let receipt = self
            .ports
            .receipts
            .load(&oversize.receipt)
            .await
            .map_err(|e| failed(e.to_string(), Some(e)))?
            .ok_or_else(|| failed("no such receipt".to_owned(), None))?;
        match self.ports.decoder.decode_stored(&receipt, oversize) {
            Ok(events) => Ok(events),
            Err(DecodeError::Receipt(detail)) => Err(failed(detail, None)),
            Err(err) => Err(err.into()),
        }
    }

    /// Processes one normalised event exactly once: its report, and its outcome or failure.
    pub async fn apply_event(
        &self,
        event: &DeliveryEvent,
    ) -> (EventReport, Result<EventOutcome, EventError>) {
        let mut report = EventReport {
            provider: event.provider,
            kind: event.kind,
            category: EventCategory::Uncorrelated,
            bounce: None,
            outcome: None,
            lag_ms: None,
            unmatched: false,
            guardrail_tripped: false,
        };
        let result = self.apply(event, &mut report).await;
        report.outcome = result.as_ref().ok().copied();
        (report, result)
    }

    async fn apply(
        &self,
        event: &DeliveryEvent,
        report: &mut EventReport,
    ) -> Result<EventOutcome, EventError> {
        match self.ports.history.claim(event, self.now()).await? {
            EventClaim::Done => return Ok(EventOutcome::Duplicate),
            EventClaim::Busy => return Err(EventError::Busy),
            EventClaim::New => {}
        }

        let mut message = self.correlate(event).await?;
        report.category = message.as_ref().map_or(EventCategory::Orphan, |m| {
            EventCategory::Message(m.category)
        });
        self.apply_effects(event, message.as_ref(), report).await?;
        // Before the history write, so a crash in between repeats the fan-out rather than
        // losing it; the app dedupes a repeat by its stable `webhook-id`.
        self.ports
            .fan_out
            .fan_out(&[(
                event.clone(),
                message.as_ref().map(|m| CorrelatedMessage {
                    id: m.id.clone(),
                    correlation_id: m.correlation_id.clone(),
                }),
            )])
            .await?;

        for _ in 0..STATE_RETRIES {
            match self
                .ports
                .history
                .record(event, message.as_ref(), self.now())
                .await?
            {
                EventRecorded::Applied { .. } => {
                    // How late providers report: from the provider's event time to receipt.
                    report.lag_ms = event
                        .occurred_at
                        .map(|at| (event.received_at.as_i64() - at.as_i64()).max(0));
                    let counted_against = event.kind == EventKind::Complained
                        || report.bounce == Some(BounceClass::Hard);
                    if counted_against && let Some(record) = &message {
                        report.guardrail_tripped = self.check_guardrail(event, record).await;
                    }
                    return Ok(EventOutcome::Applied);
                }
                EventRecorded::Orphaned => {
                    tracing::info!(
                        provider = event.provider.as_str(),
                        kind = event.kind.as_str(),
                        "orphan event stored"
                    );
                    return Ok(EventOutcome::Orphaned);
                }
                EventRecorded::Duplicate => return Ok(EventOutcome::Duplicate),
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

    /// Evaluates the guardrails of the event's route (its provider and the message's sending
    /// domain) now that its complaint or hard bounce is counted: when a rate reaches its
    /// threshold over the window, pauses bulk through the route and fans out
    /// `mailgate.guardrail_tripped`. Whether this call tripped it. A failure is logged and
    /// not retried (the event is recorded; the next counted one evaluates again).
    async fn check_guardrail(&self, event: &DeliveryEvent, record: &MessageRecord) -> bool {
        let Some((guard, policy)) = &self.guardrails else {
            return false;
        };
        let domain = record.from.address.domain().to_lowercase();
        let now = self.now();
        let result: Result<bool, EventError> = async {
            let state = guard.route_guard(event.provider, &domain).await?;
            if state.paused {
                return Ok(false);
            }
            let current = hour_of(now);
            // A resume starts a fresh window from the next whole hour.
            let not_before = state.resumed_at.map_or(i64::MIN, |at| hour_of(at) + 1);
            let first = (current - policy.lookback_hours + 1).max(not_before);
            if first > current {
                return Ok(false);
            }
            let rows = guard
                .route_hours(record.environment, event.provider, &domain, first..current + 1)
                .await?;
            let Some(trip) =
                guardrail::evaluate(policy, event.provider, &domain, &rows, current, not_before)
            else {
                return Ok(false);
            };
            // Notified before the switch is written: a crash in between notifies again on the
            // next counted event, with the same `webhook-id` (the app dedupes it).
            self.ports
                .fan_out
                .notify(&guardrail_key(&trip), &guardrail_body(&trip, now))
                .await?;
            let tripped = guard.trip(&trip, now).await?;
            if tripped {
                tracing::error!(
                    provider = trip.provider.as_str(),
                    sending_domain = %trip.sending_domain,
                    rate = trip.rate.as_str(),
                    value = trip.value,
                    threshold = trip.threshold,
                    volume = trip.volume,
                    alert = "guardrail_tripped",
                    "a reputation guardrail tripped: bulk mail through this provider and domain is paused"
                );
            }
            Ok(tripped)
        }
        .await;
        result.unwrap_or_else(|err| {
            tracing::error!(error = %err, provider = event.provider.as_str(), "could not evaluate the reputation guardrail");
            false
        })
    }

    /// Our message the event is about: by our id when the provider echoed it, else by the
    /// provider's id; `None` for an orphan.
    async fn correlate(&self, event: &DeliveryEvent) -> Result<Option<MessageRecord>, StoreError> {
        let messages = &self.ports.messages;
        if let Some(id) = &event.message_id
            && let Some(record) = messages.summary(id).await?
        {
            return Ok(Some(record));
        }
        let Some(pmid) = &event.provider_message_id else {
            return Ok(None);
        };
        match messages
            .find_by_provider_message_id(event.provider, pmid)
            .await?
        {
            Some(id) => messages.summary(&id).await,
            None => Ok(None),
        }
    }

    /// The suppression-list effects of an event. Each is idempotent, so a retry after a crash
    /// repeats them harmlessly: a suppression is stored only when none is active, and a soft
    /// bounce is counted once per distinct event.
    async fn apply_effects(
        &self,
        event: &DeliveryEvent,
        message: Option<&MessageRecord>,
        report: &mut EventReport,
    ) -> Result<(), StoreError> {
        let provider = event.provider.as_str();
        let effect = event.effect();
        if let Some(verdict) = event.bounce_classification() {
            report.bounce = Some(if verdict.cause.is_sender_side() {
                BounceClass::SenderSide
            } else if verdict.kind == BounceKind::Hard {
                BounceClass::Hard
            } else {
                BounceClass::Soft
            });
        }
        if let EventEffect::SenderSideBounce(cause) = effect {
            // An operator alert: our sending has a problem, the recipient does not.
            tracing::error!(
                provider,
                cause = cause.as_str(),
                alert = "sender_side_bounce",
                "a receiving server refused our mail for a sender-side reason; the address is not suppressed"
            );
        }
        let Some(address) = &event.recipient else {
            return Ok(());
        };
        // An event about our message must name one of its recipients; the opt-in covers only
        // orphans (mail another sender sent through a shared account), never a stranger named
        // on our message, which can only be forged or misrouted.
        let allowed = match message {
            Some(_) => names_a_recipient(message, address),
            None => self.effects_for_unmatched,
        };
        if matches!(
            effect,
            EventEffect::Suppress(_) | EventEffect::Lift(_) | EventEffect::CountSoftBounce
        ) && !allowed
        {
            // Recorded (as an orphan, or in the message's history) and counted, but it changes
            // no suppression: nothing ties the address it names to mail we sent.
            report.unmatched = true;
            tracing::warn!(
                provider,
                kind = event.kind.as_str(),
                address = %address.masked(),
                "event names no recipient of a message we sent; its suppression effect is withheld"
            );
            return Ok(());
        }
        let now = self.ports.clock.now();
        let suppressions = &self.ports.suppressions;
        match effect {
            EventEffect::Suppress(reason) => {
                // An unsubscribe from mail on a topic stops that topic only.
                let topic = topic_of(reason, message);
                let mut entry = Suppression::new(address, reason, now).on_topic(topic);
                entry.note = Some(format!("{} {} event", event.provider, event.provider_type));
                suppressions.put_unless_active(&entry, now).await?;
            }
            EventEffect::CountSoftBounce => {
                let recent = suppressions
                    .count_soft_bounce(
                        address,
                        &event.key_digest(),
                        event.at(),
                        self.soft_bounce.window_ms,
                        self.now(),
                    )
                    .await?;
                if self.soft_bounce.reached(&recent, self.now()) {
                    let mut entry =
                        Suppression::new(address, SuppressionReason::SoftBounceThreshold, now);
                    entry.note = Some(format!(
                        "{} soft bounces within {} days",
                        recent.len(),
                        self.soft_bounce.window_ms / (24 * 3600 * 1000)
                    ));
                    suppressions.put_unless_active(&entry, now).await?;
                }
            }
            EventEffect::Lift(reason) => {
                let topic = topic_of(reason, message);
                if suppressions.lift(address, reason, topic.as_deref()).await? {
                    tracing::info!(
                        provider,
                        kind = event.kind.as_str(),
                        address = %address.masked(),
                        "resubscribed: the unsubscribe suppression was lifted"
                    );
                }
            }
            EventEffect::SenderSideBounce(_) | EventEffect::None => {}
        }
        Ok(())
    }
}

/// The topic an unsubscribe (or resubscribe) applies to: the message's, when it was sent on one.
/// Other reasons are never scoped.
fn topic_of(reason: SuppressionReason, message: Option<&MessageRecord>) -> Option<String> {
    (reason == SuppressionReason::Unsubscribe)
        .then(|| message.and_then(|m| m.topic.clone()))
        .flatten()
}

/// Whether `address` is a recipient (to, cc or bcc) of `message`, compared in canonical form.
fn names_a_recipient(message: Option<&MessageRecord>, address: &EmailAddress) -> bool {
    let key = suppression_key(address);
    message.is_some_and(|m| {
        m.recipients
            .iter()
            .any(|r| suppression_key(&r.address) == key)
    })
}

/// The stable identity of a trip's notice: its route and the hour its window ends.
fn guardrail_key(trip: &GuardrailTrip) -> String {
    format!(
        "guardrail#{}#{}#{}",
        trip.provider, trip.sending_domain, trip.window_to_hour
    )
}

/// The `mailgate.guardrail_tripped` app-webhook body: `{"type", "timestamp", "data": {"provider",
/// "sending_domain", "rate", "value", "threshold", "volume", "events", "window": {"sends",
/// "from", "to"}, "paused": "bulk"}}`.
pub fn guardrail_body(trip: &GuardrailTrip, now: UnixMillis) -> String {
    let time = |at: UnixMillis| {
        at.to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let hour = |h: i64| time(UnixMillis(h.saturating_mul(mailgate_core::stats::HOUR_MS)));
    serde_json::json!({
        "type": "mailgate.guardrail_tripped",
        "timestamp": time(now),
        "data": {
            "provider": trip.provider.as_str(),
            "sending_domain": trip.sending_domain,
            "rate": trip.rate.as_str(),
            "value": trip.value,
            "threshold": trip.threshold,
            "volume": trip.volume,
            "events": trip.events,
            "window": {
                "sends": trip.window_sends,
                "from": hour(trip.window_from_hour),
                "to": hour(trip.window_to_hour),
            },
            "paused": "bulk",
        },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        ClaimState, MemoryEndpoints, MemoryEventForwarder, MemoryHistory, MemoryMessageLookup,
        MemoryOutbound, MemoryReceiptReader, MemorySuppressionWrites, ScriptedDecoder,
    };
    use mailgate_core::ports::ReceiptBody;
    use mailgate_core::{
        ApiKeyId, BounceReport, EmailAddress, Endpoint, EndpointFilter, EndpointUrl, EventSource,
        FixedClock, KeyEnvironment, Mailbox, MessageId, MessageState, OutboundEmail,
        StoreErrorKind,
    };
    use std::sync::atomic::Ordering;

    const PMID: &str = "0100018c-example";

    struct Harness {
        history: Arc<MemoryHistory>,
        messages: Arc<MemoryMessageLookup>,
        suppressions: Arc<MemorySuppressionWrites>,
        receipts: Arc<MemoryReceiptReader>,
        decoder: Arc<ScriptedDecoder>,
        events_queue: Arc<MemoryEventForwarder>,
        endpoints: Arc<MemoryEndpoints>,
        outbound: Arc<MemoryOutbound>,
        clock: Arc<FixedClock>,
        applier: EventApplier,
    }

    fn harness(rule: SoftBounceRule) -> Harness {
        let h = (
            Arc::new(MemoryHistory::default()),
            Arc::new(MemoryMessageLookup::default()),
            Arc::new(MemorySuppressionWrites::default()),
            Arc::new(MemoryReceiptReader::default()),
            Arc::new(ScriptedDecoder::default()),
            Arc::new(MemoryEventForwarder::default()),
            Arc::new(MemoryEndpoints::default()),
            Arc::new(MemoryOutbound::default()),
            Arc::new(FixedClock::at_unix(1_795_000_000)),
        );
        let ports = EventPorts {
            history: h.0.clone(),
            messages: h.1.clone(),
            suppressions: h.2.clone(),
            receipts: h.3.clone(),
            decoder: h.4.clone(),
            events_queue: h.5.clone(),
            fan_out: Arc::new(AppWebhookFanOut::new(h.6.clone(), h.7.clone())),
            clock: h.8.clone(),
        };
        Harness {
            applier: EventApplier::new(ports, rule),
            history: h.0,
            messages: h.1,
            suppressions: h.2,
            receipts: h.3,
            decoder: h.4,
            events_queue: h.5,
            endpoints: h.6,
            outbound: h.7,
            clock: h.8,
        }
    }

    fn default_harness() -> Harness {
        harness(SoftBounceRule::default())
    }

    fn now(h: &Harness) -> UnixMillis {
        UnixMillis::from_datetime(h.clock.now())
    }

    fn event(h: &Harness, key: &str, kind: EventKind) -> DeliveryEvent {
        DeliveryEvent {
            key: key.into(),
            kind,
            provider_type: kind.as_str().into(),
            provider: ProviderId::Ses,
            recipient: Some(EmailAddress::parse("jane@example.org").unwrap()),
            provider_message_id: Some(PMID.into()),
            message_id: None,
            occurred_at: Some(UnixMillis(now(h).as_i64() - 1_500)),
            received_at: now(h),
            bounce: None,
            complaint_feedback: None,
            url: None,
            detail: None,
            provider_suppressed: false,
            source: EventSource {
                receipt: "ses#r".into(),
                index: 0,
                recipient_index: 0,
            },
        }
    }

    fn bounce(h: &Harness, key: &str, status: &str, diagnostic: &str) -> DeliveryEvent {
        let mut e = event(h, key, EventKind::Bounced);
        e.bounce = Some(BounceReport {
            status: Some(mailgate_core::EnhancedStatus::parse(status).unwrap()),
            diagnostic: Some(diagnostic.into()),
            ..Default::default()
        });
        e
    }

    /// Stores one of our messages of `category`, known to SES as [`PMID`].
    fn ours(h: &Harness, category: MessageCategory) -> MessageRecord {
        let mut email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(EmailAddress::parse("news@example.com").unwrap()),
            EmailAddress::parse("jane@example.org").unwrap(),
            "Hello",
        );
        email.text = Some("Hi".into());
        let mut record = MessageRecord::new(
            &email,
            ApiKeyId::generate(),
            KeyEnvironment::Test,
            MessageState::Sent,
            now(h),
            None,
            &[],
        );
        record.category = category;
        h.messages.insert(record.clone(), ProviderId::Ses, PMID);
        record
    }

    fn endpoint(h: &Harness, filter: &str) -> Endpoint {
        let e = Endpoint::new(
            EndpointUrl::parse("https://app.example.com/hook").unwrap(),
            EndpointFilter::parse_list(filter).unwrap(),
            now(h),
        )
        .0;
        h.endpoints.endpoints.lock().unwrap().push(e.clone());
        e
    }

    fn message_of(h: &Harness, body: &str, events: Vec<DeliveryEvent>) {
        h.decoder.script(body, Ok(QueuedEvents::Events(events)));
    }

    #[tokio::test]
    async fn an_event_about_our_message_is_applied_fanned_out_and_recorded() {
        let h = default_harness();
        let record = ours(&h, MessageCategory::Transactional);
        let all = endpoint(&h, "");
        endpoint(&h, "email.opened");
        let e = event(&h, "d-1", EventKind::Delivered);
        let (report, result) = h.applier.apply_event(&e).await;
        assert_eq!(result.unwrap(), EventOutcome::Applied);
        assert_eq!(
            report,
            EventReport {
                provider: ProviderId::Ses,
                kind: EventKind::Delivered,
                category: EventCategory::Message(MessageCategory::Transactional),
                bounce: None,
                outcome: Some(EventOutcome::Applied),
                lag_ms: Some(1_500),
                unmatched: false,
                guardrail_tripped: false,
            }
        );
        assert_eq!(
            *h.history.recorded.lock().unwrap(),
            vec![("ses#d-1".to_owned(), Some(record.id.clone()))]
        );
        let deliveries = h.outbound.deliveries.lock().unwrap().clone();
        assert_eq!(
            deliveries.len(),
            1,
            "only the endpoint whose filter matches"
        );
        assert_eq!(deliveries[0].endpoint_id, all.id);
        assert!(deliveries[0].body.contains(record.id.as_str()));
        assert_eq!(h.history.claim_of(&e), Some(ClaimState::Done));
    }

    #[tokio::test]
    async fn our_id_echoed_by_the_provider_wins_over_the_providers_id() {
        let h = default_harness();
        let by_pmid = ours(&h, MessageCategory::Transactional);
        let mut echoed = by_pmid.clone();
        echoed.id = MessageId::generate();
        echoed.category = MessageCategory::Bulk;
        h.messages
            .records
            .lock()
            .unwrap()
            .insert(echoed.id.clone(), echoed.clone());
        let mut e = event(&h, "d-2", EventKind::Delivered);
        e.message_id = Some(echoed.id.clone());
        let (report, _) = h.applier.apply_event(&e).await;
        assert_eq!(
            report.category,
            EventCategory::Message(MessageCategory::Bulk)
        );
        assert_eq!(
            h.history.recorded.lock().unwrap()[0].1,
            Some(echoed.id.clone())
        );
    }

    #[tokio::test]
    async fn an_event_about_no_message_of_ours_is_an_orphan() {
        let h = default_harness();
        let (report, result) = h
            .applier
            .apply_event(&event(&h, "o-1", EventKind::Delivered))
            .await;
        assert_eq!(result.unwrap(), EventOutcome::Orphaned);
        assert_eq!(report.category, EventCategory::Orphan);
        assert_eq!(report.category.as_str(), "unknown");
        assert_eq!(report.lag_ms, None, "only applied events measure lag");
        assert_eq!(h.history.recorded.lock().unwrap()[0].1, None);
    }

    #[tokio::test]
    async fn a_processed_event_is_a_duplicate_and_does_nothing() {
        let h = default_harness();
        ours(&h, MessageCategory::Transactional);
        endpoint(&h, "");
        let e = event(&h, "dup-1", EventKind::Delivered);
        assert_eq!(
            h.applier.apply_event(&e).await.1.unwrap(),
            EventOutcome::Applied
        );
        let (report, result) = h.applier.apply_event(&e).await;
        assert_eq!(result.unwrap(), EventOutcome::Duplicate);
        assert_eq!(report.category.as_str(), "none");
        assert_eq!(h.history.recorded.lock().unwrap().len(), 1);
        assert_eq!(h.outbound.deliveries.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn an_event_another_invocation_holds_is_busy() {
        let h = default_harness();
        let e = event(&h, "busy-1", EventKind::Delivered);
        h.history.set_claim(&e, ClaimState::Processing);
        let (report, result) = h.applier.apply_event(&e).await;
        assert!(matches!(result, Err(EventError::Busy)));
        assert_eq!(report.outcome, None);
        assert!(h.history.recorded.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_event_finished_elsewhere_meanwhile_is_a_duplicate_with_its_category() {
        let h = default_harness();
        ours(&h, MessageCategory::Bulk);
        h.history.finished_elsewhere.store(true, Ordering::SeqCst);
        let (report, result) = h
            .applier
            .apply_event(&event(&h, "race-1", EventKind::Delivered))
            .await;
        assert_eq!(result.unwrap(), EventOutcome::Duplicate);
        assert_eq!(report.category.as_str(), "bulk");
    }

    #[tokio::test]
    async fn a_changed_summary_is_read_again_until_the_write_lands_or_gives_up() {
        let h = default_harness();
        let record = ours(&h, MessageCategory::Transactional);
        h.history
            .conflicts
            .store(STATE_RETRIES as u32 - 1, Ordering::SeqCst);
        let (_, result) = h
            .applier
            .apply_event(&event(&h, "c-1", EventKind::Delivered))
            .await;
        assert_eq!(result.unwrap(), EventOutcome::Applied);

        h.history
            .conflicts
            .store(STATE_RETRIES as u32, Ordering::SeqCst);
        let (report, result) = h
            .applier
            .apply_event(&event(&h, "c-2", EventKind::Delivered))
            .await;
        match result {
            Err(EventError::Contended(id)) => assert_eq!(id, record.id.to_string()),
            other => panic!("expected contention, got {other:?}"),
        }
        assert_eq!(report.outcome, None);
    }

    #[tokio::test]
    async fn a_hard_bounce_suppresses_the_address_once() {
        let h = default_harness();
        ours(&h, MessageCategory::Transactional);
        let (report, _) = h
            .applier
            .apply_event(&bounce(&h, "hb-1", "5.1.1", "550 5.1.1 user unknown"))
            .await;
        assert_eq!(report.bounce, Some(BounceClass::Hard));
        let address = EmailAddress::parse("jane@example.org").unwrap();
        let entry = h.suppressions.entries.lock().unwrap()[&address].clone();
        assert_eq!(entry.reason, SuppressionReason::HardBounce);
        assert_eq!(entry.note.as_deref(), Some("ses bounced event"));
        // A second hard bounce finds the suppression active and leaves it as it is.
        h.applier
            .apply_event(&bounce(&h, "hb-2", "5.1.1", "550 5.1.1 gone"))
            .await
            .1
            .unwrap();
        assert_eq!(h.suppressions.entries.lock().unwrap()[&address], entry);
    }

    #[tokio::test]
    async fn complaints_and_unsubscribes_suppress_and_a_delivery_does_not() {
        let h = default_harness();
        ours(&h, MessageCategory::Bulk);
        h.applier
            .apply_event(&event(&h, "d-9", EventKind::Delivered))
            .await
            .1
            .unwrap();
        assert!(h.suppressions.entries.lock().unwrap().is_empty());
        h.applier
            .apply_event(&event(&h, "c-9", EventKind::Complained))
            .await
            .1
            .unwrap();
        let address = EmailAddress::parse("jane@example.org").unwrap();
        assert_eq!(
            h.suppressions.entries.lock().unwrap()[&address].reason,
            SuppressionReason::Complaint
        );
    }

    #[tokio::test]
    async fn a_resubscribe_lifts_an_unsubscribe_and_nothing_else() {
        let h = default_harness();
        ours(&h, MessageCategory::Bulk);
        let address = EmailAddress::parse("jane@example.org").unwrap();
        let entry = |h: &Harness| {
            h.suppressions
                .entries
                .lock()
                .unwrap()
                .get(&address)
                .cloned()
        };
        h.applier
            .apply_event(&event(&h, "u-1", EventKind::Unsubscribed))
            .await
            .1
            .unwrap();
        assert_eq!(entry(&h).unwrap().reason, SuppressionReason::Unsubscribe);
        h.applier
            .apply_event(&event(&h, "r-1", EventKind::Resubscribed))
            .await
            .1
            .unwrap();
        assert!(entry(&h).is_none(), "the unsubscribe is lifted");

        // A complaint is not lifted by a resubscribe.
        h.applier
            .apply_event(&event(&h, "c-1", EventKind::Complained))
            .await
            .1
            .unwrap();
        h.applier
            .apply_event(&event(&h, "r-2", EventKind::Resubscribed))
            .await
            .1
            .unwrap();
        assert_eq!(entry(&h).unwrap().reason, SuppressionReason::Complaint);

        // Nor is an unsubscribe the API wrote (the app's own decision).
        let h = default_harness();
        ours(&h, MessageCategory::Bulk);
        h.suppressions.entries.lock().unwrap().insert(
            address.clone(),
            Suppression::new(&address, SuppressionReason::Unsubscribe, h.clock.now()),
        );
        h.applier
            .apply_event(&event(&h, "r-3", EventKind::Resubscribed))
            .await
            .1
            .unwrap();
        assert!(entry(&h).is_some());
    }

    #[tokio::test]
    async fn an_unsubscribe_from_mail_on_a_topic_is_scoped_to_it_and_a_resubscribe_lifts_it() {
        let h = default_harness();
        let mut record = ours(&h, MessageCategory::Bulk);
        record.topic = Some("news".into());
        h.messages.insert(record, ProviderId::Ses, PMID);
        let address = EmailAddress::parse("jane@example.org").unwrap();
        h.applier
            .apply_event(&event(&h, "u-t", EventKind::Unsubscribed))
            .await
            .1
            .unwrap();
        assert!(h.suppressions.entries.lock().unwrap().is_empty());
        let key = (address.clone(), "news".to_owned());
        assert_eq!(
            h.suppressions.topic_entries.lock().unwrap()[&key].reason,
            SuppressionReason::Unsubscribe
        );
        h.applier
            .apply_event(&event(&h, "r-t", EventKind::Resubscribed))
            .await
            .1
            .unwrap();
        assert!(h.suppressions.topic_entries.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_sender_side_bounce_never_suppresses_the_recipient() {
        let h = default_harness();
        let (report, result) = h
            .applier
            .apply_event(&bounce(
                &h,
                "ss-1",
                "5.7.1",
                "550 5.7.1 Message rejected as spam by content filtering",
            ))
            .await;
        result.unwrap();
        assert_eq!(report.bounce, Some(BounceClass::SenderSide));
        assert!(h.suppressions.entries.lock().unwrap().is_empty());
        assert!(h.suppressions.soft_bounces.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn soft_bounces_suppress_at_the_threshold_each_event_counted_once() {
        let h = harness(SoftBounceRule {
            threshold: 2,
            window_ms: 24 * 3600 * 1000,
        });
        ours(&h, MessageCategory::Transactional);
        let soft = |key: &str| bounce(&h, key, "4.2.2", "452 4.2.2 mailbox full");
        let (report, _) = h.applier.apply_event(&soft("s-1")).await;
        assert_eq!(report.bounce, Some(BounceClass::Soft));
        assert!(h.suppressions.entries.lock().unwrap().is_empty());
        // The same event again (a redelivery after its claim lapsed) counts once.
        h.history.claims_forget(&soft("s-1"));
        h.applier.apply_event(&soft("s-1")).await.1.unwrap();
        assert!(h.suppressions.entries.lock().unwrap().is_empty());
        h.applier.apply_event(&soft("s-2")).await.1.unwrap();
        let address = EmailAddress::parse("jane@example.org").unwrap();
        let entry = h.suppressions.entries.lock().unwrap()[&address].clone();
        assert_eq!(entry.reason, SuppressionReason::SoftBounceThreshold);
        assert_eq!(entry.note.as_deref(), Some("2 soft bounces within 1 days"));
    }

    #[tokio::test]
    async fn a_port_failing_at_each_step_fails_the_event_and_reports_what_was_reached() {
        // (port, operation, whether the bounce class was reached)
        let steps: [(&str, &'static str, bool); 7] = [
            ("history", "claim", false),
            ("messages", "find_by_provider_message_id", false),
            ("messages", "summary", false),
            ("suppressions", "put_unless_active", true),
            ("endpoints", "list_enabled", true),
            ("outbound", "enqueue", true),
            ("history", "record", true),
        ];
        for (port, operation, reached) in steps {
            let h = default_harness();
            ours(&h, MessageCategory::Transactional);
            endpoint(&h, "");
            let faults = match port {
                "history" => &h.history.faults,
                "messages" => &h.messages.faults,
                "suppressions" => &h.suppressions.faults,
                "endpoints" => &h.endpoints.faults,
                _ => &h.outbound.faults,
            };
            faults.fail_next(operation, StoreErrorKind::Transient);
            let e = bounce(&h, "f-1", "5.1.1", "550 5.1.1 user unknown");
            let (report, result) = h.applier.apply_event(&e).await;
            let err = result.expect_err(operation);
            assert!(!err.is_poison(), "{operation}");
            assert_eq!(report.outcome, None, "{operation}");
            assert_eq!(report.bounce.is_some(), reached, "{operation}");
            assert!(h.history.recorded.lock().unwrap().is_empty(), "{operation}");
            // The claim is left processing (it lapses), so the retry applies it exactly once.
            if operation != "claim" {
                assert_eq!(h.history.claim_of(&e), Some(ClaimState::Processing));
            }
        }
        let h = harness(SoftBounceRule::default());
        ours(&h, MessageCategory::Transactional);
        h.suppressions
            .faults
            .fail_next("count_soft_bounce", StoreErrorKind::Throttled);
        let (_, result) = h
            .applier
            .apply_event(&bounce(&h, "f-2", "4.2.2", "452 4.2.2 mailbox full"))
            .await;
        assert!(matches!(result, Err(EventError::Store(e)) if e.is_retryable()));
    }

    #[tokio::test]
    async fn a_store_failure_a_retry_cannot_fix_is_poison_and_a_throttled_or_transient_one_is_not()
    {
        for (kind, poison) in [
            (StoreErrorKind::Throttled, false),
            (StoreErrorKind::Transient, false),
            (StoreErrorKind::Corrupt, true),
            (StoreErrorKind::Other, true),
        ] {
            // At the claim, at the fan-out, and reading an oversize event's receipt.
            let h = default_harness();
            ours(&h, MessageCategory::Transactional);
            endpoint(&h, "");
            h.history.faults.fail_next("claim", kind);
            let e = bounce(&h, "p-1", "5.1.1", "550 5.1.1 user unknown");
            let err = h.applier.apply_event(&e).await.1.unwrap_err();
            assert_eq!(err.is_poison(), poison, "claim {kind:?}");
            h.outbound.faults.fail_next("enqueue", kind);
            let err = h.applier.apply_event(&e).await.1.unwrap_err();
            assert!(matches!(err, EventError::FanOut(_)), "{err}");
            assert_eq!(err.is_poison(), poison, "fan-out {kind:?}");
            let oversize = OversizeEvent {
                provider: ProviderId::Sendgrid,
                receipt: "sendgrid#big".into(),
                index: 0,
                received_at: now(&h),
            };
            h.decoder
                .script("big", Ok(QueuedEvents::Oversize(oversize)));
            h.receipts.faults.fail_next("load", kind);
            let err = h.applier.apply_message("big").await.failure.unwrap();
            assert!(matches!(err, EventError::Receipt { .. }), "{err}");
            assert_eq!(err.is_poison(), poison, "receipt {kind:?}");
        }
    }

    #[tokio::test]
    async fn a_message_is_processed_event_by_event_stopping_at_the_first_failure() {
        let h = default_harness();
        let (a, b, c) = (
            event(&h, "m-a", EventKind::Delivered),
            event(&h, "m-b", EventKind::Opened),
            event(&h, "m-c", EventKind::Clicked),
        );
        h.history.set_claim(&b, ClaimState::Processing);
        message_of(&h, "three", vec![a, b, c]);
        let report = h.applier.apply_message("three").await;
        assert_eq!(report.events.len(), 2);
        assert_eq!(report.events[0].outcome, Some(EventOutcome::Orphaned));
        assert!(matches!(report.failure, Some(EventError::Busy)));
        assert!(report.result().is_err());
    }

    #[tokio::test]
    async fn an_unreadable_envelope_is_poison_and_an_unreadable_event_is_not() {
        let h = default_harness();
        let report = h.applier.apply_message("{not ours").await;
        assert!(report.failure.as_ref().is_some_and(EventError::is_poison));
        h.decoder.script(
            "odd",
            Err(DecodeError::Normalise {
                provider: "sendgrid".into(),
                detail: "no event field".into(),
            }),
        );
        let report = h.applier.apply_message("odd").await;
        let err = report.failure.unwrap();
        assert!(!err.is_poison());
        assert_eq!(
            err.to_string(),
            "the sendgrid event cannot be read: no event field"
        );
    }

    #[tokio::test]
    async fn an_oversize_event_is_read_from_its_receipt() {
        let h = default_harness();
        let oversize = OversizeEvent {
            provider: ProviderId::Sendgrid,
            receipt: "sendgrid#big".into(),
            index: 1,
            received_at: now(&h),
        };
        h.decoder
            .script("big", Ok(QueuedEvents::Oversize(oversize.clone())));
        // No receipt: retried (it may be a replica lag), not poison.
        let err = h.applier.apply_message("big").await.failure.unwrap();
        assert_eq!(
            err.to_string(),
            "receipt sendgrid#big cannot be loaded: no such receipt"
        );
        assert!(!err.is_poison());
        h.receipts.receipts.lock().unwrap().insert(
            "sendgrid#big".into(),
            ReceiptBody {
                provider: ProviderId::Sendgrid,
                body: b"[{},{}]".to_vec(),
                content_type: Some("application/json".into()),
            },
        );
        h.receipts
            .faults
            .fail_next("load", StoreErrorKind::Transient);
        assert!(matches!(
            h.applier.apply_message("big").await.failure,
            Some(EventError::Receipt { .. })
        ));
        let err = h.applier.apply_message("big").await.failure.unwrap();
        assert_eq!(
            err.to_string(),
            "receipt sendgrid#big cannot be loaded: it holds no event 1"
        );
        h.decoder.stored.lock().unwrap().insert(
            ("sendgrid#big".into(), 1),
            vec![event(&h, "big-1", EventKind::Delivered)],
        );
        let report = h.applier.apply_message("big").await;
        assert_eq!(report.result().unwrap(), vec![EventOutcome::Orphaned]);
    }

    #[tokio::test]
    async fn an_eventbridge_event_is_forwarded_onto_the_events_queue() {
        let h = default_harness();
        assert_eq!(
            h.applier.forward("{\"detail-type\":1}").await.unwrap(),
            "sqs-1"
        );
        assert_eq!(h.events_queue.forwarded.lock().unwrap().len(), 1);
        h.events_queue
            .faults
            .fail_next("forward", StoreErrorKind::Transient);
        assert!(h.applier.forward("{}").await.is_err());
    }

    #[tokio::test]
    async fn an_orphan_hard_bounce_is_recorded_and_counted_but_suppresses_nothing() {
        let h = default_harness();
        let (report, result) = h
            .applier
            .apply_event(&bounce(&h, "o-1", "5.1.1", "550 5.1.1 user unknown"))
            .await;
        assert_eq!(result.unwrap(), EventOutcome::Orphaned);
        assert!(report.unmatched);
        assert!(h.suppressions.entries.lock().unwrap().is_empty());
        // The same for a complaint and for soft bounces past the threshold.
        h.applier
            .apply_event(&event(&h, "o-2", EventKind::Complained))
            .await
            .1
            .unwrap();
        for key in ["o-3", "o-4", "o-5", "o-6", "o-7", "o-8"] {
            h.applier
                .apply_event(&bounce(&h, key, "4.2.2", "452 4.2.2 mailbox full"))
                .await
                .1
                .unwrap();
        }
        assert!(h.suppressions.entries.lock().unwrap().is_empty());
        assert!(h.suppressions.soft_bounces.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_bounce_on_our_message_naming_someone_else_suppresses_nothing() {
        let h = default_harness();
        ours(&h, MessageCategory::Transactional);
        let mut e = bounce(&h, "x-1", "5.1.1", "550 5.1.1 user unknown");
        e.recipient = Some(EmailAddress::parse("victim@example.net").unwrap());
        let (report, result) = h.applier.apply_event(&e).await;
        assert_eq!(result.unwrap(), EventOutcome::Applied);
        assert!(report.unmatched);
        assert!(h.suppressions.entries.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_bounce_naming_a_recipient_in_another_spelling_suppresses_it() {
        let h = default_harness();
        ours(&h, MessageCategory::Transactional);
        let mut e = bounce(&h, "x-2", "5.1.1", "550 5.1.1 user unknown");
        e.recipient = Some(EmailAddress::parse("\"Jane\"@Example.ORG").unwrap());
        let (report, result) = h.applier.apply_event(&e).await;
        assert_eq!(result.unwrap(), EventOutcome::Applied);
        assert!(!report.unmatched);
        let address = EmailAddress::parse("jane@example.org").unwrap();
        assert_eq!(
            h.suppressions.entries.lock().unwrap()[&address].reason,
            SuppressionReason::HardBounce
        );
    }

    #[tokio::test]
    async fn with_the_opt_in_an_orphan_hard_bounce_suppresses() {
        let mut h = default_harness();
        h.applier = h.applier.clone().with_effects_for_unmatched(true);
        let (report, result) = h
            .applier
            .apply_event(&bounce(&h, "o-9", "5.1.1", "550 5.1.1 user unknown"))
            .await;
        assert_eq!(result.unwrap(), EventOutcome::Orphaned);
        assert!(!report.unmatched);
        let address = EmailAddress::parse("jane@example.org").unwrap();
        assert_eq!(
            h.suppressions.entries.lock().unwrap()[&address].reason,
            SuppressionReason::HardBounce
        );
        // The opt-in covers orphans only: a stranger named on our message still suppresses nobody.
        ours(&h, MessageCategory::Transactional);
        let mut e = bounce(&h, "x-9", "5.1.1", "550 5.1.1 user unknown");
        e.recipient = Some(EmailAddress::parse("stranger@example.net").unwrap());
        let (report, result) = h.applier.apply_event(&e).await;
        assert_eq!(result.unwrap(), EventOutcome::Applied);
        assert!(report.unmatched);
        let stranger = EmailAddress::parse("stranger@example.net").unwrap();
        assert!(
            !h.suppressions
                .entries
                .lock()
                .unwrap()
                .contains_key(&stranger)
        );
    }
}
