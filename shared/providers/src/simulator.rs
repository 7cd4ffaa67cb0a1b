//! The built-in event simulator: the "provider" of every message sent with a `test` API key.
//! It never sends mail. At send time it answers as a provider would (accepted with its own
//! message id, refused permanently, or an ambiguous timeout); once the outcome is recorded the
//! delivery service posts its provider-shaped events on the real events queue, each invisible for
//! a configurable delay (`SIMULATOR_EVENT_DELAY_SECONDS`, SQS `DelaySeconds`), and the event
//! processor normalises, classifies, correlates and applies them like any provider's.
//!
//! The outcome follows each recipient's local part at [`SIMULATOR_DOMAIN`], a `+tag` ignored and
//! case ignored; any other address is delivered:
//!
//! | recipient | at send | events (D = the delay; 2D is at least D + 1 s) |
//! |---|---|---|
//! | `delivered@`, any other address | accepted | `Delivery` at D |
//! | `bounced@` | accepted | `Bounce` at D: `550 5.1.1` user unknown (hard: suppresses) |
//! | `soft-bounced@` | accepted | `Bounce` at D: `452 4.2.2` mailbox over quota (soft) |
//! | `blocked@` | accepted | `Bounce` at D: `554 5.7.1` client host on a blocklist (sender-side: never suppresses) |
//! | `complained@` | accepted | `Delivery` at D, `Complaint` (`abuse` feedback report) at 2D |
//! | `unsubscribed@` | accepted | `Delivery` at D, `Subscription` (unsubscribe all) at 2D |
//! | `deferred@` | accepted | `DeliveryDelay` at D (`421 4.4.1` timed out), `Delivery` at 2D |
//! | `rejected@` | refused: 400 `MessageRejected`, permanent (the message `failed`) | none |
//! | `timeout@` | timed out after the request left: ambiguous (the message `unknown`) | none |
//!
//! A message with several recipients is refused when any of them is `rejected@`, else ambiguous
//! when any is `timeout@` (a provider answers for the whole message); otherwise each recipient
//! gets its own events.
//!
//! The events are SES event-publishing records (PROVIDERS.md §1.6), each wrapped as EventBridge
//! delivers them (`id`, `detail-type`, `time`, `detail`) with `source: mailgate.simulator`, and
//! queued in the events-queue envelope as provider `simulator`. They carry the server's evidence
//! (SMTP reply code, enhanced status, diagnostic text) and SES's `General` sub-type only, so the
//! bounce classifier — not this module — decides hard, soft or sender-side. They correlate by
//! our message id (the `mailgate_message_id` tag, and the `X-Mailgate-Message-Id` header), and
//! each has a stable id (message id and position), so posting them twice changes nothing.

use std::sync::Arc;
use std::time::Duration;

use mailgate_core::ports::{Accepted, DelayedEvent, EventSimulator, Simulation};
use mailgate_core::sandbox::{SIMULATOR_DOMAIN, is_simulator_address};
use mailgate_core::{
    DeliveryEvent, EmailAddress, ErrorCategory, MESSAGE_ID_HEADER, MESSAGE_ID_METADATA_KEY,
    OutboundEmail, ProviderId, SendFailure, TransportFault, UnixMillis, queue_messages,
};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::events::{EventOrigin, NormaliseError, parse_object, text, text_time};
use crate::webhook::{PayloadError, VerifierSettings, WebhookProvider, WebhookVerifier};

/// The provider this module covers.
pub const PROVIDER: ProviderId = ProviderId::Simulator;

/// The variable holding the delay before the simulator's (first) events are visible.
pub const EVENT_DELAY_VAR: &str = "SIMULATOR_EVENT_DELAY_SECONDS";

/// The delay when [`EVENT_DELAY_VAR`] is not set.
pub const DEFAULT_EVENT_DELAY: Duration = Duration::from_secs(5);

/// The longest delay: a follow-up event comes at twice the delay, and SQS delays at most 900 s.
pub const MAX_EVENT_DELAY: Duration = Duration::from_secs(450);

/// The `source` of the simulator's EventBridge-shaped events.
pub const EVENT_SOURCE: &str = "mailgate.simulator";

/// What the simulator does for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimulatedOutcome {
    /// Delivered.
    Delivered,
    /// Hard bounce: the user is unknown.
    Bounced,
    /// Soft bounce: the mailbox is full.
    SoftBounced,
    /// Refused by the receiver for a sender-side reason (a blocklisted sending IP).
    Blocked,
    /// Delivered, then reported as spam.
    Complained,
    /// Delivered, then the recipient unsubscribed.
    Unsubscribed,
    /// Deferred, then delivered.
    Deferred,
    /// Refused at send time, permanently.
    Rejected,
    /// The send timed out after the request left: ambiguous.
    Timeout,
}

impl SimulatedOutcome {
    /// The outcome for `address`: its local part at the simulator's domain, a `+tag` and case
    /// ignored; `Delivered` for any other address or local part.
    pub fn of(address: &EmailAddress) -> Self {
        if !is_simulator_address(address) {
            return Self::Delivered;
        }
        let local = address.local_part().trim_matches('"');
        let base = local
            .split('+')
            .next()
            .unwrap_or(local)
            .to_ascii_lowercase();
        match base.as_str() {
            "bounced" => Self::Bounced,
            "soft-bounced" => Self::SoftBounced,
            "blocked" => Self::Blocked,
            "complained" => Self::Complained,
            "unsubscribed" => Self::Unsubscribed,
            "deferred" => Self::Deferred,
            "rejected" => Self::Rejected,
            "timeout" => Self::Timeout,
            _ => Self::Delivered,
        }
    }
}

/// Reads [`EVENT_DELAY_VAR`]: whole seconds from 0 to 450 (unset or blank: 5).
pub fn event_delay_from_lookup(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Duration, String> {
    let Some(raw) = lookup(EVENT_DELAY_VAR).filter(|v| !v.trim().is_empty()) else {
        return Ok(DEFAULT_EVENT_DELAY);
    };
    let max = MAX_EVENT_DELAY.as_secs();
    match raw.trim().parse::<u64>() {
        Ok(secs) if secs <= max => Ok(Duration::from_secs(secs)),
        _ => Err(format!(
            "{EVENT_DELAY_VAR} must be whole seconds from 0 to {max}, got {raw:?}"
        )),
    }
}

/// The simulator, posting its first events after `delay` and follow-ups after twice that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simulator {
    delay: Duration,
}

impl Default for Simulator {
    fn default() -> Self {
        Self::new(DEFAULT_EVENT_DELAY)
    }
}

impl Simulator {
    /// A simulator whose events come `delay` after the send (capped at [`MAX_EVENT_DELAY`]).
    pub fn new(delay: Duration) -> Self {
        Self {
            delay: delay.min(MAX_EVENT_DELAY),
        }
    }

    /// When follow-up events come: twice the delay, and always at least a second after the first
    /// event, so the history orders them even with no delay.
    fn follow_up(&self) -> Duration {
        (self.delay * 2).max(self.delay + Duration::from_secs(1))
    }

    /// The simulator's id for a message it accepted.
    pub fn provider_message_id(email: &OutboundEmail) -> String {
        format!("{}@{SIMULATOR_DOMAIN}", email.message_id)
    }
}

impl EventSimulator for Simulator {
    fn simulate(&self, email: &OutboundEmail, now: OffsetDateTime) -> Simulation {
        let outcomes: Vec<(&EmailAddress, SimulatedOutcome)> = email
            .recipients()
            .map(|a| (a, SimulatedOutcome::of(a)))
            .collect();
        let any = |o: SimulatedOutcome| outcomes.iter().any(|(_, x)| *x == o);
        if any(SimulatedOutcome::Rejected) {
            // As SES refuses a message: 400 `MessageRejected`, a refusal of the message itself.
            let failure = SendFailure::http(400)
                .with_provider_code("MessageRejected")
                .with_category(ErrorCategory::ContentRejected);
            return Simulation {
                answer: Err(failure),
                events: Vec::new(),
            };
        }
        if any(SimulatedOutcome::Timeout) {
            return Simulation {
                answer: Err(SendFailure::transport(TransportFault::TimeoutAfterSend)),
                events: Vec::new(),
            };
        }
        let pmid = Self::provider_message_id(email);
        let mut planned: Vec<(Duration, Value)> = Vec::new();
        for (address, outcome) in &outcomes {
            let record = Record {
                email,
                pmid: &pmid,
                recipient: address.as_str(),
                sent_at: now,
            };
            let first = now + self.delay;
            let second = now + self.follow_up();
            let mut at = |delay: Duration, when: OffsetDateTime, detail: Value| {
                planned.push((delay, record.eventbridge(when, detail)));
            };
            match outcome {
                SimulatedOutcome::Delivered => at(self.delay, first, record.delivery(first)),
                SimulatedOutcome::Bounced => at(
                    self.delay,
                    first,
                    record.bounce(
                        first,
                        "Permanent",
                        "5.1.1",
                        &format!(
                            "smtp; 550 5.1.1 <{}>: Recipient address rejected: User unknown in \
                             virtual mailbox table",
                            address.as_str()
                        ),
                    ),
                ),
                SimulatedOutcome::SoftBounced => at(
                    self.delay,
                    first,
                    record.bounce(
                        first,
                        "Transient",
                        "4.2.2",
                        "smtp; 452 4.2.2 The email account that you tried to reach is over \
                         quota: mailbox full",
                    ),
                ),
                SimulatedOutcome::Blocked => at(
                    self.delay,
                    first,
                    record.bounce(
                        first,
                        "Permanent",
                        "5.7.1",
                        "smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked \
                         using zen.spamhaus.org",
                    ),
                ),
                SimulatedOutcome::Complained => {
                    at(self.delay, first, record.delivery(first));
                    at(self.follow_up(), second, record.complaint(second));
                }
                SimulatedOutcome::Unsubscribed => {
                    at(self.delay, first, record.delivery(first));
                    at(self.follow_up(), second, record.unsubscribe(second));
                }
                SimulatedOutcome::Deferred => {
                    at(self.delay, first, record.delay(first));
                    at(self.follow_up(), second, record.delivery(second));
                }
                // Decided above for the whole message.
                SimulatedOutcome::Rejected | SimulatedOutcome::Timeout => {}
            }
        }
        let events = planned
            .into_iter()
            .enumerate()
            .map(|(index, (delay, mut event))| {
                let id = format!("{}-{index}", email.message_id);
                event["id"] = Value::String(id.clone());
                let visible_at = UnixMillis::from(now + delay);
                let body = queue_messages(
                    PROVIDER,
                    &format!("{PROVIDER}#{id}"),
                    visible_at.as_i64(),
                    &[event.to_string()],
                )
                .remove(0);
                DelayedEvent { body, delay }
            })
            .collect();
        Simulation {
            answer: Ok(Accepted {
                provider_message_id: pmid,
            }),
            events,
        }
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

/// The pieces every event about one recipient shares.
struct Record<'a> {
    email: &'a OutboundEmail,
    pmid: &'a str,
    recipient: &'a str,
    sent_at: OffsetDateTime,
}

impl Record<'_> {
    /// The event as EventBridge delivers SES events: the record as `detail`.
    fn eventbridge(&self, at: OffsetDateTime, detail: Value) -> Value {
        let detail_type = match detail["eventType"].as_str() {
            Some("Delivery") => "Email Delivered",
            Some("Bounce") => "Email Bounced",
            Some("Complaint") => "Email Complaint Received",
            Some("DeliveryDelay") => "Email Delivery Delayed",
            Some("Subscription") => "Email Subscribed",
            _ => "Email Event",
        };
        json!({
            "version": "0",
            "id": "",
            "detail-type": detail_type,
            "source": EVENT_SOURCE,
            "time": rfc3339(at),
            "resources": [],
            "detail": detail,
        })
    }

    /// The `mail` object: the message as sent to this recipient, with our id as tag and header.
    fn mail(&self) -> Value {
        json!({
            "timestamp": rfc3339(self.sent_at),
            "source": self.email.from.address.as_str(),
            "messageId": self.pmid,
            "destination": [self.recipient],
            "headersTruncated": false,
            "headers": [
                {"name": MESSAGE_ID_HEADER, "value": self.email.message_id.as_str()},
            ],
            "commonHeaders": {"subject": self.email.subject},
            "tags": {MESSAGE_ID_METADATA_KEY: [self.email.message_id.as_str()]},
        })
    }

    fn delivery(&self, at: OffsetDateTime) -> Value {
        json!({
            "eventType": "Delivery",
            "mail": self.mail(),
            "delivery": {
                "timestamp": rfc3339(at),
                "processingTimeMillis": 0,
                "recipients": [self.recipient],
                "smtpResponse": "250 2.0.0 OK: queued as simulated",
                "reportingMTA": SIMULATOR_DOMAIN,
            },
        })
    }

    /// A bounce with the server's own evidence and SES's `General` sub-type, which names no cause.
    fn bounce(
        &self,
        at: OffsetDateTime,
        bounce_type: &str,
        status: &str,
        diagnostic: &str,
    ) -> Value {
        json!({
            "eventType": "Bounce",
            "mail": self.mail(),
            "bounce": {
                "bounceType": bounce_type,
                "bounceSubType": "General",
                "timestamp": rfc3339(at),
                "feedbackId": format!("{}-bounce", self.pmid),
                "reportingMTA": format!("dns; {SIMULATOR_DOMAIN}"),
                "bouncedRecipients": [{
                    "emailAddress": self.recipient,
                    "action": "failed",
                    "status": status,
                    "diagnosticCode": diagnostic,
                }],
            },
        })
    }

    fn complaint(&self, at: OffsetDateTime) -> Value {
        json!({
            "eventType": "Complaint",
            "mail": self.mail(),
            "complaint": {
                "timestamp": rfc3339(at),
                "feedbackId": format!("{}-complaint", self.pmid),
                "complaintFeedbackType": "abuse",
                "userAgent": "mailgate simulator",
                "arrivalDate": rfc3339(at),
                "complainedRecipients": [{"emailAddress": self.recipient}],
            },
        })
    }

    fn unsubscribe(&self, at: OffsetDateTime) -> Value {
        json!({
            "eventType": "Subscription",
            "mail": self.mail(),
            "subscription": {
                "contactList": "mailgate-simulator",
                "timestamp": rfc3339(at),
                "source": "UnsubscribeHeader",
                "newTopicPreferences": {"unsubscribeAll": true},
                "oldTopicPreferences": {"unsubscribeAll": false},
            },
        })
    }

    fn delay(&self, at: OffsetDateTime) -> Value {
        json!({
            "eventType": "DeliveryDelay",
            "mail": self.mail(),
            "deliveryDelay": {
                "timestamp": rfc3339(at),
                "delayType": "TransientCommunicationFailure",
                "expirationTime": rfc3339(at + Duration::from_secs(24 * 3600)),
                "reportingMTA": SIMULATOR_DOMAIN,
                "delayedRecipients": [{
                    "emailAddress": self.recipient,
                    "status": "4.4.1",
                    "diagnosticCode": "smtp; 421 4.4.1 Connection timed out; will retry",
                }],
            },
        })
    }
}

/// Normalises one simulator event (an EventBridge-shaped SES record) into [`DeliveryEvent`]s of
/// provider `simulator`, through SES's record mapping; keys are `simulator:` composites of the
/// event id and the recipient.
pub fn normalise(
    event: &str,
    origin: &EventOrigin<'_>,
) -> Result<Vec<DeliveryEvent>, NormaliseError> {
    let envelope = Value::Object(parse_object(PROVIDER, event)?);
    if text(&envelope, &["source"]) != Some(EVENT_SOURCE) {
        return Err(NormaliseError::shape(
            PROVIDER,
            format!("the event's source is not {EVENT_SOURCE}"),
        ));
    }
    let id = text(&envelope, &["id"])
        .ok_or_else(|| NormaliseError::shape(PROVIDER, "the event has no id"))?;
    let time = text(&envelope, &["time"]).and_then(text_time);
    let detail = envelope
        .get("detail")
        .filter(|d| d.is_object())
        .ok_or_else(|| NormaliseError::shape(PROVIDER, "the event has no detail"))?;
    let mut events = crate::ses::events::normalise_record(detail, "simulator", id, time, origin)
        .ok_or_else(|| NormaliseError::shape(PROVIDER, "the record names no event type"))?;
    for event in &mut events {
        event.provider = PROVIDER;
    }
    Ok(events)
}

/// The simulator's side of [`WebhookProvider`]: it posts no webhooks (its events go straight
/// onto the events queue), so it has no verifier and no body to split; it only normalises.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimulatorWebhooks;

impl WebhookProvider for SimulatorWebhooks {
    fn id(&self) -> ProviderId {
        PROVIDER
    }

    fn secret_variables(&self) -> &'static [&'static str] {
        &[]
    }

    fn default_tolerance_secs(&self) -> i64 {
        0
    }

    fn verifier(
        &self,
        _settings: VerifierSettings<'_>,
    ) -> Result<Arc<dyn WebhookVerifier>, Vec<String>> {
        Err(vec![
            "the simulator has no webhook endpoint: its events go straight onto the events queue"
                .to_owned(),
        ])
    }

    fn split(
        &self,
        _body: &[u8],
        _content_type: Option<&str>,
    ) -> Result<Vec<String>, PayloadError> {
        Err(PayloadError::new(
            "the simulator stores no webhook receipts: its events are queued whole",
        ))
    }

    fn normalise(
        &self,
        event: &str,
        origin: &EventOrigin<'_>,
    ) -> Result<Vec<DeliveryEvent>, NormaliseError> {
        normalise(event, origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::{
        BounceCause, BounceKind, EventEffect, EventKind, Mailbox, MessageId, OutcomeClass,
        QueuedEvent, SuppressionReason,
    };
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-04 12:00 UTC);

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    fn email(to: &[&str]) -> OutboundEmail {
        let mut email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(addr("app@example.com")),
            addr(to[0]),
            "hello",
        );
        email.to.extend(to[1..].iter().map(|a| addr(a)));
        email
    }

    /// The simulation of a message to `to`, and its events as the processor normalises them,
    /// with each event's delay.
    fn run(simulator: Simulator, to: &[&str]) -> (Simulation, Vec<(Duration, DeliveryEvent)>) {
        let email = email(to);
        let simulation = simulator.simulate(&email, NOW);
        let mut events = Vec::new();
        for delayed in &simulation.events {
            let queued: QueuedEvent = serde_json::from_str(&delayed.body).unwrap();
            assert_eq!(queued.provider, ProviderId::Simulator);
            let origin = EventOrigin {
                receipt: &queued.receipt,
                index: queued.index,
                received_at: UnixMillis(queued.received_at),
            };
            let normalised = crate::events::normalise(
                queued.provider,
                queued.event.as_ref().unwrap().get(),
                &origin,
            )
            .unwrap();
            for event in normalised {
                assert_eq!(event.provider, ProviderId::Simulator);
                assert_eq!(event.message_id.as_ref(), Some(&email.message_id));
                assert_eq!(
                    event.provider_message_id.as_deref(),
                    Some(Simulator::provider_message_id(&email).as_str())
                );
                events.push((delayed.delay, event));
            }
        }
        (simulation, events)
    }

    fn one_kind(to: &str) -> Vec<(Duration, EventKind)> {
        let (_, events) = run(Simulator::new(Duration::from_secs(3)), &[to]);
        events.into_iter().map(|(d, e)| (d, e.kind)).collect()
    }

    #[test]
    fn the_outcome_follows_the_local_part_with_tag_and_case_ignored() {
        let cases = [
            (
                "delivered@simulator.mailgate.invalid",
                SimulatedOutcome::Delivered,
            ),
            (
                "bounced+x@simulator.mailgate.invalid",
                SimulatedOutcome::Bounced,
            ),
            (
                "Soft-Bounced@SIMULATOR.mailgate.invalid",
                SimulatedOutcome::SoftBounced,
            ),
            (
                "blocked+a+b@simulator.mailgate.invalid",
                SimulatedOutcome::Blocked,
            ),
            (
                "complained@simulator.mailgate.invalid",
                SimulatedOutcome::Complained,
            ),
            (
                "unsubscribed+1@simulator.mailgate.invalid",
                SimulatedOutcome::Unsubscribed,
            ),
            (
                "deferred@simulator.mailgate.invalid",
                SimulatedOutcome::Deferred,
            ),
            (
                "rejected@simulator.mailgate.invalid",
                SimulatedOutcome::Rejected,
            ),
            (
                "timeout@simulator.mailgate.invalid",
                SimulatedOutcome::Timeout,
            ),
            (
                "anyone@simulator.mailgate.invalid",
                SimulatedOutcome::Delivered,
            ),
            ("bounced@example.com", SimulatedOutcome::Delivered),
            (
                "xbounced@simulator.mailgate.invalid",
                SimulatedOutcome::Delivered,
            ),
        ];
        for (address, expected) in cases {
            assert_eq!(SimulatedOutcome::of(&addr(address)), expected, "{address}");
        }
    }

    #[test]
    fn a_hard_bounce_is_classified_user_unknown_by_its_diagnostic_and_suppresses() {
        let (simulation, events) = run(
            Simulator::new(Duration::from_secs(2)),
            &["bounced+x@simulator.mailgate.invalid"],
        );
        assert!(simulation.answer.is_ok());
        let [(delay, event)] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(*delay, Duration::from_secs(2));
        assert_eq!(event.kind, EventKind::Bounced);
        assert_eq!(
            event.recipient.as_ref().map(EmailAddress::as_str),
            Some("bounced+x@simulator.mailgate.invalid")
        );
        let verdict = event.bounce_classification().unwrap();
        assert_eq!(verdict.kind, BounceKind::Hard);
        assert_eq!(verdict.cause, BounceCause::UserUnknown);
        assert_eq!(
            event.effect(),
            EventEffect::Suppress(SuppressionReason::HardBounce)
        );
    }

    #[test]
    fn a_block_is_sender_side_and_never_suppresses() {
        let (_, events) = run(
            Simulator::default(),
            &["blocked+y@simulator.mailgate.invalid"],
        );
        let [(_, event)] = events.as_slice() else {
            panic!("{events:?}")
        };
        let verdict = event.bounce_classification().unwrap();
        assert!(verdict.cause.is_sender_side(), "{verdict:?}");
        assert!(!verdict.suppress);
        assert!(matches!(event.effect(), EventEffect::SenderSideBounce(_)));
    }

    #[test]
    fn a_full_mailbox_is_a_soft_bounce_counted_not_suppressed() {
        let (_, events) = run(
            Simulator::default(),
            &["soft-bounced@simulator.mailgate.invalid"],
        );
        let [(_, event)] = events.as_slice() else {
            panic!("{events:?}")
        };
        let verdict = event.bounce_classification().unwrap();
        assert_eq!(verdict.kind, BounceKind::Soft);
        assert_eq!(verdict.cause, BounceCause::MailboxFull);
        assert_eq!(event.effect(), EventEffect::CountSoftBounce);
    }

    #[test]
    fn follow_up_events_come_after_the_delivery_at_twice_the_delay() {
        let d = Duration::from_secs(3);
        assert_eq!(
            one_kind("complained+z@simulator.mailgate.invalid"),
            vec![(d, EventKind::Delivered), (d * 2, EventKind::Complained)]
        );
        assert_eq!(
            one_kind("unsubscribed@simulator.mailgate.invalid"),
            vec![(d, EventKind::Delivered), (d * 2, EventKind::Unsubscribed)]
        );
        assert_eq!(
            one_kind("deferred@simulator.mailgate.invalid"),
            vec![(d, EventKind::Deferred), (d * 2, EventKind::Delivered)]
        );
        assert_eq!(
            one_kind("jane@example.com"),
            vec![(d, EventKind::Delivered)]
        );
        let (_, events) = run(
            Simulator::default(),
            &["complained@simulator.mailgate.invalid"],
        );
        assert_eq!(
            events[1].1.effect(),
            EventEffect::Suppress(SuppressionReason::Complaint)
        );
        let (_, events) = run(
            Simulator::default(),
            &["unsubscribed@simulator.mailgate.invalid"],
        );
        assert_eq!(
            events[1].1.effect(),
            EventEffect::Suppress(SuppressionReason::Unsubscribe)
        );
    }

    #[test]
    fn rejected_is_a_permanent_refusal_and_timeout_is_ambiguous_with_no_events() {
        let (simulation, events) = run(
            Simulator::default(),
            &["jane@example.com", "rejected@simulator.mailgate.invalid"],
        );
        let failure = simulation.answer.unwrap_err();
        assert_eq!(failure.classify().outcome, OutcomeClass::Permanent);
        assert!(events.is_empty());
        let (simulation, events) = run(
            Simulator::default(),
            &["timeout+1@simulator.mailgate.invalid"],
        );
        assert_eq!(
            simulation.answer.unwrap_err().classify().outcome,
            OutcomeClass::Ambiguous
        );
        assert!(events.is_empty());
    }

    #[test]
    fn each_recipient_gets_its_own_events_with_stable_distinct_keys() {
        let simulator = Simulator::default();
        let email = email(&[
            "bounced@simulator.mailgate.invalid",
            "delivered@simulator.mailgate.invalid",
        ]);
        let first = simulator.simulate(&email, NOW);
        assert_eq!(first.events.len(), 2);
        assert_ne!(first.events[0].body, first.events[1].body);
        // The same message simulated again posts the same events: the processor dedupes them.
        assert_eq!(first, simulator.simulate(&email, NOW));
    }

    #[test]
    fn the_delay_is_read_in_whole_seconds_within_bounds() {
        let lookup = |v: Option<&'static str>| move |_: &str| v.map(str::to_owned);
        assert_eq!(
            event_delay_from_lookup(&lookup(None)),
            Ok(DEFAULT_EVENT_DELAY)
        );
        assert_eq!(
            event_delay_from_lookup(&lookup(Some("0"))),
            Ok(Duration::ZERO)
        );
        assert_eq!(
            event_delay_from_lookup(&lookup(Some(" 30 "))),
            Ok(Duration::from_secs(30))
        );
        for bad in ["-1", "451", "soon", "1.5"] {
            let err = event_delay_from_lookup(&lookup(Some(bad))).unwrap_err();
            assert!(err.contains(EVENT_DELAY_VAR), "{err}");
        }
    }

    #[test]
    fn events_of_another_source_are_refused() {
        let origin = EventOrigin {
            receipt: "simulator#x",
            index: 0,
            received_at: UnixMillis(0),
        };
        let err = normalise(
            r#"{"id":"1","source":"aws.ses","detail":{"eventType":"Delivery"}}"#,
            &origin,
        )
        .unwrap_err();
        assert!(matches!(err, NormaliseError::Shape { .. }));
    }
}
