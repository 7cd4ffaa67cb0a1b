//! A parse request off the events queue, end to end: the received message is parsed
//! ([`Inbound::process`]), then the events it adds to the history of the message it threads to
//! (a reply's `replied`, a DSN's bounces) go through the same pipeline as provider events
//! ([`EventApplier::apply_event`]: dedupe by key, state, suppression, app webhooks).
//!
//! | step | outcome | the queue message |
//! |---|---|---|
//! | parse | parsed or already done, every event applied | done |
//! | parse | kept as `parse_failed` | done (`parse_failed: true`, for the alarm's metric) |
//! | parse | failed ([`InboundError`]) | poison when it never can succeed, else retried |
//! | apply | an event failed ([`EventError`]) | poison when it never can succeed, else retried (applied events dedupe on the retry) |

use crate::events::{EventApplier, EventError, EventReport};
use crate::inbound::{Inbound, InboundError, InboundProcessed};
use mailgate_core::InboundId;

/// Parsing received mail and applying what it says about our messages.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    inbound: Inbound,
    applier: EventApplier,
}

/// How a parse request went: for the caller's metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedReport {
    /// The message was kept as `parse_failed`.
    pub parse_failed: bool,
    /// One report per event applied (or attempted), in order.
    pub events: Vec<EventReport>,
}

/// Why a parse request did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ReceivedError {
    /// Parsing or storing the message failed.
    #[error(transparent)]
    Inbound(#[from] InboundError),
    /// Applying one of its events failed.
    #[error(transparent)]
    Event(#[from] EventError),
}

impl ReceivedError {
    /// Whether the queue message can never succeed (park it) rather than may on a retry.
    pub fn is_poison(&self) -> bool {
        match self {
            Self::Inbound(e) => e.is_poison(),
            Self::Event(e) => e.is_poison(),
        }
    }
}

impl ReceivedMail {
    /// Parses with `inbound` and applies events with `applier`.
    pub fn new(inbound: Inbound, applier: EventApplier) -> Self {
        Self { inbound, applier }
    }

    /// Processes the parse request for `id`. The report holds what was applied even when a
    /// later step failed, so the caller counts every event it saw.
    pub async fn process(&self, id: &InboundId) -> (ReceivedReport, Result<(), ReceivedError>) {
        let mut report = ReceivedReport {
            parse_failed: false,
            events: Vec::new(),
        };
        let processed = match self.inbound.process(id).await {
            Ok(processed) => processed,
            Err(e) => return (report, Err(e.into())),
        };
        let events = match processed {
            InboundProcessed::Parsed { events, .. }
            | InboundProcessed::AlreadyDone { events, .. } => events,
            InboundProcessed::ParseFailed(_) => {
                report.parse_failed = true;
                Vec::new()
            }
        };
        for event in &events {
            let (applied, result) = self.applier.apply_event(event).await;
            report.events.push(applied);
            if let Err(e) = result {
                return (report, Err(e.into()));
            }
        }
        (report, Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::events::{EventOutcome, EventPorts};
    use crate::fan_out::AppWebhookFanOut;
    use crate::inbound::{InboundPorts, InboundReceived};
    use crate::testing::{
        MemoryEndpoints, MemoryEventForwarder, MemoryEventsQueue, MemoryHistory,
        MemoryInboundObjects, MemoryInboundRecords, MemoryMessageLookup, MemoryOutbound,
        MemoryReceiptReader, MemorySuppressionWrites, ScriptedDecoder,
    };
    use mailgate_core::{
        ApiKeyId, AuthVerdicts, Clock, EmailAddress, FixedClock, InboundSource, KeyEnvironment,
        Mailbox, MessageId, MessageRecord, MessageState, OutboundEmail, ProviderId, SoftBounceRule,
        StoreErrorKind,
    };

    struct Harness {
        received: ReceivedMail,
        inbound: Inbound,
        history: Arc<MemoryHistory>,
        ours: MessageId,
        clock: FixedClock,
    }

    /// One message of ours on record; parsing and applying on in-memory ports.
    fn harness() -> Harness {
        let clock = FixedClock::at_unix(1_796_461_200);
        let inbound = Inbound::new(InboundPorts {
            objects: Arc::new(MemoryInboundObjects::default()),
            records: Arc::new(MemoryInboundRecords::default()),
            queue: Arc::new(MemoryEventsQueue::default()),
        });
        let messages = Arc::new(MemoryMessageLookup::default());
        let email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(EmailAddress::parse("hello@example.com").unwrap()),
            EmailAddress::parse("ana@example.org").unwrap(),
            "Your order",
        );
        let record = MessageRecord::new(
            &email,
            ApiKeyId::generate(),
            KeyEnvironment::Live,
            MessageState::Sent,
            clock.now().into(),
            None,
            &[],
        );
        let ours = record.id.clone();
        messages.insert(record, ProviderId::Ses, "ses-id-1");
        let history = Arc::new(MemoryHistory::default());
        let applier = EventApplier::new(
            EventPorts {
                history: history.clone(),
                messages,
                suppressions: Arc::new(MemorySuppressionWrites::default()),
                receipts: Arc::new(MemoryReceiptReader::default()),
                decoder: Arc::new(ScriptedDecoder::default()),
                events_queue: Arc::new(MemoryEventForwarder::default()),
                fan_out: Arc::new(AppWebhookFanOut::new(
                    Arc::new(MemoryEndpoints::default()),
                    Arc::new(MemoryOutbound::default()),
                )),
                clock: Arc::new(FixedClock::at_unix(1_796_461_200)),
            },
            SoftBounceRule::default(),
        );
        Harness {
            received: ReceivedMail::new(inbound.clone(), applier),
            inbound,
            history,
            ours,
            clock,
        }
    }

    async fn receive(h: &Harness, raw: &str, source_id: &str) -> InboundId {
        let source = InboundSource {
            provider: ProviderId::Postmark,
            source_id: source_id.into(),
            recipient: "support@example.com".into(),
            message_id: None,
            auth: AuthVerdicts::default(),
        };
        match h
            .inbound
            .receive(raw.as_bytes(), &source, &h.clock)
            .await
            .unwrap()
        {
            InboundReceived::Queued(id) => id,
            other => panic!("expected a new message, got {other:?}"),
        }
    }

    fn reply(h: &Harness) -> String {
        format!(
            "From: ana@example.org\r\nTo: support@example.com\r\nSubject: Re: Your order\r\nIn-Reply-To: <{}@example.com>\r\n\r\nthanks\r\n",
            h.ours
        )
    }

    #[tokio::test]
    async fn a_reply_is_parsed_and_its_replied_event_applied_once() {
        let h = harness();
        let id = receive(&h, &reply(&h), "r1").await;
        let (report, result) = h.received.process(&id).await;
        result.unwrap();
        assert!(!report.parse_failed);
        assert_eq!(report.events.len(), 1);
        assert_eq!(report.events[0].outcome, Some(EventOutcome::Applied));
        let recorded = h.history.recorded.lock().unwrap().clone();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].1.as_ref(), Some(&h.ours));
        // A redelivered request applies nothing twice.
        let (again, result) = h.received.process(&id).await;
        result.unwrap();
        assert_eq!(again.events[0].outcome, Some(EventOutcome::Duplicate));
        assert_eq!(h.history.recorded.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn unreadable_mime_is_reported_as_parse_failed_with_nothing_applied() {
        let h = harness();
        let id = receive(&h, "not a message at all", "r2").await;
        let (report, result) = h.received.process(&id).await;
        result.unwrap();
        assert!(report.parse_failed);
        assert!(report.events.is_empty());
    }

    #[tokio::test]
    async fn a_missing_record_is_poison_and_a_failing_history_is_retried() {
        let h = harness();
        let (_, result) = h.received.process(&InboundId::generate()).await;
        assert!(result.unwrap_err().is_poison());

        let id = receive(&h, &reply(&h), "r3").await;
        h.history
            .faults
            .fail_next("claim", StoreErrorKind::Transient);
        let (report, result) = h.received.process(&id).await;
        let error = result.unwrap_err();
        assert!(!error.is_poison(), "{error}");
        assert_eq!(report.events.len(), 1);
        assert_eq!(report.events[0].outcome, None);
        // The retry applies it.
        let (report, result) = h.received.process(&id).await;
        result.unwrap();
        assert_eq!(report.events[0].outcome, Some(EventOutcome::Applied));
    }
}
