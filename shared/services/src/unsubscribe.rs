//! One-click unsubscribe (RFC 8058): the service behind the `unsubscribe` function.
//!
//! A `POST` of `List-Unsubscribe=One-Click` to the link in a message's `List-Unsubscribe`
//! header verifies the token, finds the recipient it names in the stored message, and applies an
//! `unsubscribed` event (provider type `one_click`) through the same [`EventApplier`] as every
//! provider event: deduped, suppressing, fanned out to app webhooks, in the message's history.
//! Its dedupe key is the message and recipient, so a repeat is a duplicate and changes nothing.
//!
//! | situation | outcome |
//! |---|---|
//! | token malformed, tampered or signed by no listed key | `BadToken` (400), nothing read or written |
//! | token valid, message gone (retention) or never handed to a provider, or no such recipient | `BadToken` (400), nothing written |
//! | first unsubscribe of this recipient of this message | `Unsubscribed` (200) |
//! | a repeat | `AlreadyDone` (200) |
//! | a store failed | `Unavailable` (503; the mailbox provider retries) |

use std::sync::Arc;

use mailgate_core::{
    Clock, DeliveryEvent, EventKind, EventSource, StoreError, UnixMillis, UnsubscribeKeys,
};

use crate::events::{EventApplier, EventError, EventOutcome, EventReport};
use mailgate_core::ports::MessageLookup;

/// The provider type of a one-click unsubscribe in the history (its `source`).
pub const ONE_CLICK: &str = "one_click";

/// What became of one unsubscribe request.
#[derive(Debug)]
pub enum UnsubscribeOutcome {
    /// Recorded now.
    Unsubscribed(EventReport),
    /// Recorded before: nothing changed.
    AlreadyDone(EventReport),
    /// The token is not one we signed, or names nothing we can unsubscribe.
    BadToken,
    /// A store failed; try again.
    Unavailable(String),
}

impl UnsubscribeOutcome {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Unsubscribed(_) | Self::AlreadyDone(_) => 200,
            Self::BadToken => 400,
            Self::Unavailable(_) => 503,
        }
    }
}

/// Verifies unsubscribe tokens and records unsubscribes as events.
#[derive(Clone)]
pub struct OneClickUnsubscribe {
    keys: UnsubscribeKeys,
    messages: Arc<dyn MessageLookup>,
    applier: EventApplier,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for OneClickUnsubscribe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneClickUnsubscribe")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl OneClickUnsubscribe {
    /// The service verifying with `keys`, reading `messages` and applying through `applier`.
    pub fn new(
        keys: UnsubscribeKeys,
        messages: Arc<dyn MessageLookup>,
        applier: EventApplier,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            keys,
            messages,
            applier,
            clock,
        }
    }

    /// Whether `token` is one of ours (the `GET` page shows its button only then).
    pub fn verifies(&self, token: &str) -> bool {
        self.keys.verify(token).is_ok()
    }

    /// Records the unsubscribe `token` names.
    pub async fn unsubscribe(&self, token: &str) -> UnsubscribeOutcome {
        let Ok(named) = self.keys.verify(token) else {
            return UnsubscribeOutcome::BadToken;
        };
        let record = match self.messages.summary(&named.message_id).await {
            Ok(Some(record)) => record,
            Ok(None) => return UnsubscribeOutcome::BadToken,
            Err(err) => return unavailable(&err),
        };
        let (Some(provider), Some(recipient)) = (
            record.provider,
            record.recipients.get(usize::from(named.recipient_index)),
        ) else {
            return UnsubscribeOutcome::BadToken;
        };
        let now = UnixMillis::from_datetime(self.clock.now());
        let event = DeliveryEvent {
            // One per recipient of one message: a repeat is a duplicate.
            key: format!(
                "{ONE_CLICK}#{}#{}",
                record.id.as_str(),
                named.recipient_index
            ),
            kind: EventKind::Unsubscribed,
            provider_type: ONE_CLICK.to_owned(),
            provider,
            recipient: Some(recipient.address.clone()),
            provider_message_id: record.provider_message_id.clone(),
            message_id: Some(record.id.clone()),
            occurred_at: Some(now),
            received_at: now,
            bounce: None,
            url: None,
            detail: Some(ONE_CLICK.to_owned()),
            provider_suppressed: false,
            complaint_feedback: None,
            source: EventSource {
                receipt: format!("{ONE_CLICK}#{}", record.id.as_str()),
                index: 0,
                recipient_index: usize::from(named.recipient_index),
            },
        };
        let (report, result) = self.applier.apply_event(&event).await;
        match result {
            Ok(EventOutcome::Duplicate) => UnsubscribeOutcome::AlreadyDone(report),
            Ok(_) => UnsubscribeOutcome::Unsubscribed(report),
            // Another request for the same link is applying it right now: the same result.
            Err(EventError::Busy) => UnsubscribeOutcome::AlreadyDone(report),
            Err(err) => UnsubscribeOutcome::Unavailable(err.to_string()),
        }
    }
}

fn unavailable(err: &StoreError) -> UnsubscribeOutcome {
    UnsubscribeOutcome::Unavailable(err.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;
    use crate::events::EventPorts;
    use crate::fan_out::AppWebhookFanOut;
    use crate::testing::{
        MemoryEndpoints, MemoryEventForwarder, MemoryHistory, MemoryMessageLookup, MemoryOutbound,
        MemoryReceiptReader, MemorySuppressionWrites, ScriptedDecoder,
    };
    use mailgate_core::{
        ApiKeyId, EmailAddress, FixedClock, KeyEnvironment, Mailbox, MessageCategory, MessageId,
        MessageRecord, MessageState, OutboundEmail, ProviderId, SoftBounceRule, SuppressionReason,
    };

    const KEY: &str = "test-only-unsubscribe-signing-key-0123456789";

    struct Harness {
        service: OneClickUnsubscribe,
        messages: Arc<MemoryMessageLookup>,
        suppressions: Arc<MemorySuppressionWrites>,
        history: Arc<MemoryHistory>,
        keys: UnsubscribeKeys,
    }

    fn harness() -> Harness {
        let clock = Arc::new(FixedClock::at_unix(1_795_000_000));
        let messages = Arc::new(MemoryMessageLookup::default());
        let suppressions = Arc::new(MemorySuppressionWrites::default());
        let history = Arc::new(MemoryHistory::default());
        let ports = EventPorts {
            history: history.clone(),
            messages: messages.clone(),
            suppressions: suppressions.clone(),
            receipts: Arc::new(MemoryReceiptReader::default()),
            decoder: Arc::new(ScriptedDecoder::default()),
            events_queue: Arc::new(MemoryEventForwarder::default()),
            fan_out: Arc::new(AppWebhookFanOut::new(
                Arc::new(MemoryEndpoints::default()),
                Arc::new(MemoryOutbound::default()),
            )),
            clock: clock.clone(),
        };
        let keys = UnsubscribeKeys::parse(KEY).unwrap();
        let applier = EventApplier::new(ports, SoftBounceRule::default());
        Harness {
            service: OneClickUnsubscribe::new(keys.clone(), messages.clone(), applier, clock),
            messages,
            suppressions,
            history,
            keys,
        }
    }

    fn sent_bulk(h: &Harness) -> MessageId {
        let mut email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(EmailAddress::parse("news@example.com").unwrap()),
            EmailAddress::parse("jane@example.org").unwrap(),
            "News",
        );
        email.category = MessageCategory::Bulk;
        let mut record = MessageRecord::new(
            &email,
            ApiKeyId::generate(),
            KeyEnvironment::Test,
            MessageState::Sent,
            UnixMillis(1),
            None,
            &[],
        );
        record.provider = Some(ProviderId::Ses);
        h.messages.insert(record, ProviderId::Ses, "ses-1");
        email.message_id
    }

    #[tokio::test]
    async fn a_valid_token_unsubscribes_its_recipient_once() {
        let h = harness();
        let id = sent_bulk(&h);
        let token = h.keys.sign(&id, 0);
        let first = h.service.unsubscribe(&token).await;
        assert!(
            matches!(first, UnsubscribeOutcome::Unsubscribed(_)),
            "{first:?}"
        );
        assert_eq!(first.status(), 200);
        let address = EmailAddress::parse("jane@example.org").unwrap();
        assert_eq!(
            h.suppressions.entries.lock().unwrap()[&address].reason,
            SuppressionReason::Unsubscribe
        );
        let again = h.service.unsubscribe(&token).await;
        assert!(
            matches!(again, UnsubscribeOutcome::AlreadyDone(_)),
            "{again:?}"
        );
        assert_eq!(again.status(), 200);
    }

    #[tokio::test]
    async fn a_tampered_or_foreign_token_changes_nothing() {
        let h = harness();
        let id = sent_bulk(&h);
        let token = h.keys.sign(&id, 0);
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        let other = UnsubscribeKeys::parse("another-test-only-key-abcdefghijklmnopqrstuvwxyz")
            .unwrap()
            .sign(&id, 0);
        for bad in [tampered.as_str(), other.as_str(), "garbage", ""] {
            let outcome = h.service.unsubscribe(bad).await;
            assert_eq!(outcome.status(), 400, "{bad}");
        }
        // A recipient the message does not have, or a message we do not have.
        assert_eq!(
            h.service.unsubscribe(&h.keys.sign(&id, 1)).await.status(),
            400
        );
        let unknown = h.keys.sign(&MessageId::generate(), 0);
        assert_eq!(h.service.unsubscribe(&unknown).await.status(), 400);
        assert!(h.suppressions.entries.lock().unwrap().is_empty());
        assert!(h.history.recorded.lock().unwrap().is_empty());
        // The valid link still works afterwards, and lands in the message's history.
        assert_eq!(h.service.unsubscribe(&token).await.status(), 200);
        assert_eq!(
            *h.history.recorded.lock().unwrap(),
            vec![(format!("ses#one_click#{id}#0"), Some(id.clone()))]
        );
    }
}
