//! The record of one accepted message: its state, its recipients' statuses and its send
//! attempts, with the pure rules over them.
//!
//! A [`MessageRecord`] is the summary the status API shows and every function updates; it holds
//! no bodies (those are the stored [`OutboundEmail`], kept apart so reading the status never
//! reads the content). [`SendAttempt`]s are kept one per provider call.
//!
//! Two kinds of change move a message:
//! - **the send path** moves it directly: `scheduled`/`paused` → `queued` (released) or
//!   `cancelled`; `queued` → `sending` → `sent`, `unknown` (ambiguous outcome) or `failed`;
//! - **delivery events** move it only forward, by [`MessageState::after_event`]: a state replaces
//!   the current one only when it has a higher precedence, so events arriving out of order can
//!   never regress it (a late `delivered` never overwrites `bounced` or `complained`). The same
//!   rule, [`RecipientStatus::after_event`], applies per recipient, and a message's state is the
//!   highest-precedence state any of its recipients reached.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::suppression::suppression_key;
use crate::{
    ApiKeyId, EmailAddress, ErrorCategory, KeyEnvironment, Mailbox, MessageCategory, MessageId,
    OutboundEmail, ProviderId, UnixMillis,
};

/// A state or status name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind}: {value:?}")]
pub struct UnknownStatus {
    /// What was being parsed (`message state`, `recipient status`, `attempt outcome`, …).
    pub kind: &'static str,
    /// The text that did not parse.
    pub value: String,
}

macro_rules! named_enum {
    ($name:ident, $kind:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The snake_case name used in the API and in storage.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownStatus { kind: $kind, value: s.to_owned() }),
                }
            }
        }
    };
}

/// Where a message is in its life.
///
/// Before a provider accepted it: `queued`, `scheduled`, `paused`, `sending`. After a provider
/// call: `sent`, `unknown` (the call's outcome is ambiguous: it may have been accepted) or
/// `failed` (refused, nothing left to try). From delivery events: `deferred`, `delivered`,
/// `bounced`, `complained`. And `cancelled` by the owner before it was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Accepted and waiting on the asynchronous path (send queue).
    Queued,
    /// Held until its `send_at`.
    Scheduled,
    /// A bulk message held by the pause switch until sending resumes.
    Paused,
    /// A provider call is in progress.
    Sending,
    /// A provider accepted it.
    Sent,
    /// The provider call's outcome is ambiguous (e.g. a timeout after the request left).
    Unknown,
    /// A provider accepted it and reported a temporary delivery delay.
    Deferred,
    /// Delivered to the recipient's server.
    Delivered,
    /// No provider accepted it and nothing is left to try, or the provider dropped it.
    Failed,
    /// The recipient's server refused it.
    Bounced,
    /// The recipient reported it as spam.
    Complained,
    /// Cancelled by its owner before it was released.
    Cancelled,
}

named_enum!(MessageState, "message state", {
    Queued => "queued",
    Scheduled => "scheduled",
    Paused => "paused",
    Sending => "sending",
    Sent => "sent",
    Unknown => "unknown",
    Deferred => "deferred",
    Delivered => "delivered",
    Failed => "failed",
    Bounced => "bounced",
    Complained => "complained",
    Cancelled => "cancelled",
});

impl MessageState {
    /// Whether the owner may still cancel it: only while it waits to be released
    /// (`scheduled` or `paused`). Once queued, a send may already be under way.
    pub fn is_cancellable(self) -> bool {
        matches!(self, MessageState::Scheduled | MessageState::Paused)
    }

    /// Whether no provider has accepted it yet and no provider call is ambiguous.
    pub fn is_before_send(self) -> bool {
        matches!(
            self,
            MessageState::Queued
                | MessageState::Scheduled
                | MessageState::Paused
                | MessageState::Sending
        )
    }

    /// The precedence of the state for event ordering (higher wins).
    fn precedence(self) -> u8 {
        match self {
            MessageState::Queued
            | MessageState::Scheduled
            | MessageState::Paused
            | MessageState::Sending => 0,
            // Any definite evidence replaces "we do not know".
            MessageState::Unknown => 1,
            MessageState::Sent => 2,
            MessageState::Deferred => 3,
            // Equal: neither a late delivery nor a late drop overrides the other.
            MessageState::Delivered | MessageState::Failed => 4,
            MessageState::Bounced => 5,
            MessageState::Complained => 6,
            // Never sent: no event applies.
            MessageState::Cancelled => 7,
        }
    }

    /// Whether an event can report this state (the others are set by the send path only).
    pub fn is_event_state(self) -> bool {
        !self.is_before_send() && self != MessageState::Cancelled
    }

    /// The state after an event reporting `incoming`: `incoming` if it is a state events report
    /// and takes precedence over `self`, else `self` unchanged.
    pub fn after_event(self, incoming: MessageState) -> MessageState {
        if incoming.is_event_state() && incoming.precedence() > self.precedence() {
            incoming
        } else {
            self
        }
    }

    /// Whether no later event can change the state (`complained`, `cancelled`).
    pub fn is_terminal(self) -> bool {
        Self::ALL.iter().all(|s| self.after_event(*s) == self)
    }
}

/// The state a newly accepted message starts in: `scheduled` when `send_at` is in the future,
/// else `paused` for a bulk message while the pause switch is on, else `queued`.
/// Transactional mail is never paused. A scheduled bulk message meets the switch when it is
/// released.
pub fn initial_state(
    category: MessageCategory,
    send_at: Option<UnixMillis>,
    now: UnixMillis,
    bulk_paused: bool,
) -> MessageState {
    match send_at {
        Some(at) if at > now => MessageState::Scheduled,
        _ if bulk_paused && category == MessageCategory::Bulk => MessageState::Paused,
        _ => MessageState::Queued,
    }
}

/// The queue of the `by-release` index a held message waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseQueue {
    /// Scheduled messages, released at their `send_at`.
    Scheduled,
    /// Bulk messages held by the pause switch, released on resume.
    PausedBulk,
    /// Messages that must have moved on by their `release_at`: a `queued` one taken by a
    /// worker (else its pointer is missing and the sweeper enqueues it again), a `sending` one
    /// past its lease (its sender died; the sweeper marks it `unknown`).
    Watch,
}

named_enum!(ReleaseQueue, "release queue", {
    Scheduled => "scheduled",
    PausedBulk => "paused#bulk",
    Watch => "watch",
});

/// How long a `queued` message may wait for a worker before the sweeper first looks at it.
pub const QUEUED_CHECK_AFTER_MS: i64 = 5 * 60 * 1000;
/// How long a message put on the send queue (deferred, released, or re-enqueued by the
/// sweeper) may wait for a worker: the longest queue delay (15 minutes) plus
/// [`QUEUED_CHECK_AFTER_MS`]. A longer backlog costs a duplicate pointer now and then, which is
/// harmless: a worker takes a message once.
pub const DEFERRED_CHECK_AFTER_MS: i64 = 15 * 60 * 1000 + QUEUED_CHECK_AFTER_MS;
/// How many times the sweeper puts a `queued` message back on the send queue before it gives
/// up and marks it `failed` (no provider was called: it is not sent, and says so).
pub const MAX_REQUEUES: u32 = 5;

/// How a recipient was addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientKind {
    /// `to`.
    To,
    /// `cc`.
    Cc,
    /// `bcc`.
    Bcc,
}

named_enum!(RecipientKind, "recipient kind", {
    To => "to",
    Cc => "cc",
    Bcc => "bcc",
});

/// What is known about one recipient.
///
/// Stored statuses are `pending` until something happens to that recipient in particular
/// (an event, or suppression at send time); [`MessageRecord::recipient_status`] shows a pending
/// recipient with its message's send outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientStatus {
    /// Nothing about this recipient yet.
    Pending,
    /// The message was handed to a provider for this recipient.
    Sent,
    /// The provider call's outcome is ambiguous.
    Unknown,
    /// Delivery is delayed and being retried by the provider.
    Deferred,
    /// Delivered to the recipient's server.
    Delivered,
    /// Not sent to this recipient (refused by the provider, dropped, or the send failed).
    Failed,
    /// The recipient's server refused it.
    Bounced,
    /// The recipient reported it as spam.
    Complained,
    /// Never sent: the message was cancelled.
    Cancelled,
    /// Never sent: the address is on the suppression list.
    Suppressed,
}

named_enum!(RecipientStatus, "recipient status", {
    Pending => "pending",
    Sent => "sent",
    Unknown => "unknown",
    Deferred => "deferred",
    Delivered => "delivered",
    Failed => "failed",
    Bounced => "bounced",
    Complained => "complained",
    Cancelled => "cancelled",
    Suppressed => "suppressed",
});

impl RecipientStatus {
    fn precedence(self) -> u8 {
        match self {
            RecipientStatus::Pending => 0,
            RecipientStatus::Unknown => 1,
            RecipientStatus::Sent => 2,
            RecipientStatus::Deferred => 3,
            RecipientStatus::Delivered | RecipientStatus::Failed => 4,
            RecipientStatus::Bounced => 5,
            RecipientStatus::Complained => 6,
            RecipientStatus::Cancelled | RecipientStatus::Suppressed => 7,
        }
    }

    /// The status after an event reporting `incoming` for this recipient: `incoming` if it takes
    /// precedence (same order as [`MessageState::after_event`]), else `self`. `pending`,
    /// `cancelled` and `suppressed` are never reported by events and change nothing.
    pub fn after_event(self, incoming: RecipientStatus) -> RecipientStatus {
        let reported = !matches!(
            incoming,
            RecipientStatus::Pending | RecipientStatus::Cancelled | RecipientStatus::Suppressed
        );
        if reported && incoming.precedence() > self.precedence() {
            incoming
        } else {
            self
        }
    }

    /// The message state this recipient status implies, for folding recipients into the
    /// message's state; `None` for statuses that say nothing about sending (`pending`,
    /// `suppressed`).
    pub fn message_state(self) -> Option<MessageState> {
        Some(match self {
            RecipientStatus::Pending | RecipientStatus::Suppressed => return None,
            RecipientStatus::Sent => MessageState::Sent,
            RecipientStatus::Unknown => MessageState::Unknown,
            RecipientStatus::Deferred => MessageState::Deferred,
            RecipientStatus::Delivered => MessageState::Delivered,
            RecipientStatus::Failed => MessageState::Failed,
            RecipientStatus::Bounced => MessageState::Bounced,
            RecipientStatus::Complained => MessageState::Complained,
            RecipientStatus::Cancelled => MessageState::Cancelled,
        })
    }
}

/// One recipient of a message and its stored status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address as the caller wrote it (domain lower-cased).
    pub address: EmailAddress,
    /// How it was addressed.
    pub kind: RecipientKind,
    /// What is known about it in particular.
    pub status: RecipientStatus,
}

impl Recipient {
    /// A recipient with nothing known yet.
    pub fn pending(address: EmailAddress, kind: RecipientKind) -> Self {
        Self {
            address,
            kind,
            status: RecipientStatus::Pending,
        }
    }

    /// The key events find this recipient by: the address lower-cased, as suppressions key it.
    pub fn key(&self) -> String {
        suppression_key(&self.address)
    }
}

/// How one provider call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The provider accepted the message.
    Accepted,
    /// The provider refused it, or the request never reached it.
    Failed,
    /// The request may have reached the provider; the outcome is not known.
    Unknown,
}

named_enum!(AttemptOutcome, "attempt outcome", {
    Accepted => "accepted",
    Failed => "failed",
    Unknown => "unknown",
});

/// One provider call for a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendAttempt {
    /// The attempt's position among the message's attempts (1-based). With `at` it orders the
    /// attempts, including several made within one millisecond; a later run (e.g. the
    /// send worker) continues from [`MessageRecord::attempt_count`].
    pub number: u32,
    /// The provider called.
    pub provider: ProviderId,
    /// When the call was made.
    pub at: UnixMillis,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The provider's id for the message, when it gave one.
    pub provider_message_id: Option<String>,
    /// What went wrong, for failed and unknown outcomes.
    pub error_category: Option<ErrorCategory>,
    /// The provider's own error code, when it gave one.
    pub error_code: Option<String>,
}

/// The summary of one accepted message: what the status API shows and every function updates.
/// It holds no subject or bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    /// Our id.
    pub id: MessageId,
    /// The API key that sent it.
    pub api_key_id: ApiKeyId,
    /// The environment of that key; only keys of the same environment see the message.
    pub environment: KeyEnvironment,
    /// Transactional or bulk.
    pub category: MessageCategory,
    /// The subscription topic it was sent on, if any.
    pub topic: Option<String>,
    /// The sender (`Debug` masks it).
    pub from: Mailbox,
    /// Every recipient, to then cc then bcc, once per distinct (case-insensitive) address.
    pub recipients: Vec<Recipient>,
    /// The overall state.
    pub state: MessageState,
    /// When it was accepted.
    pub created_at: UnixMillis,
    /// When it last changed.
    pub updated_at: UnixMillis,
    /// When it is to be sent, if it was scheduled.
    pub send_at: Option<UnixMillis>,
    /// The provider that accepted it (or was last tried).
    pub provider: Option<ProviderId>,
    /// That provider's id for it.
    pub provider_message_id: Option<String>,
    /// How many provider calls were recorded.
    pub attempt_count: u32,
    /// While `sending`: until when its sender holds it (a lapsed lease means the sender died,
    /// perhaps after the provider took the message).
    pub sending_until: Option<UnixMillis>,
    /// The template it was rendered from, if any.
    pub template: Option<crate::template::TemplateRef>,
    /// Its tags (the delivery statistics count under each).
    pub tags: Vec<String>,
}

impl MessageRecord {
    /// The record of a newly accepted `email`, sent with the key `api_key_id` of `environment`,
    /// starting in `state`. Recipients are taken from the email (to, cc, bcc), each distinct
    /// address once; `suppressed` recipients (dropped before sending) are listed with that status.
    pub fn new(
        email: &OutboundEmail,
        api_key_id: ApiKeyId,
        environment: KeyEnvironment,
        state: MessageState,
        created_at: UnixMillis,
        send_at: Option<UnixMillis>,
        suppressed: &[EmailAddress],
    ) -> Self {
        let mut recipients: Vec<Recipient> = Vec::new();
        let addressed = email
            .to
            .iter()
            .map(|a| (a, RecipientKind::To))
            .chain(email.cc.iter().map(|a| (a, RecipientKind::Cc)))
            .chain(email.bcc.iter().map(|a| (a, RecipientKind::Bcc)))
            .map(|(a, kind)| (a.clone(), kind, RecipientStatus::Pending))
            .chain(
                suppressed
                    .iter()
                    .map(|a| (a.clone(), RecipientKind::To, RecipientStatus::Suppressed)),
            );
        for (address, kind, status) in addressed {
            let key = suppression_key(&address);
            if let Some(existing) = recipients.iter_mut().find(|r| r.key() == key) {
                if status == RecipientStatus::Suppressed {
                    existing.status = status;
                }
            } else {
                recipients.push(Recipient {
                    address,
                    kind,
                    status,
                });
            }
        }
        Self {
            id: email.message_id.clone(),
            api_key_id,
            environment,
            category: email.category,
            topic: email.topic.clone(),
            from: email.from.clone(),
            recipients,
            state,
            created_at,
            updated_at: created_at,
            send_at,
            provider: None,
            provider_message_id: None,
            attempt_count: 0,
            sending_until: None,
            template: None,
            tags: email.tags.clone(),
        }
    }

    /// Whether `address` is one of its recipients (compared canonically).
    pub fn has_recipient(&self, address: &EmailAddress) -> bool {
        let key = suppression_key(address);
        self.recipients.iter().any(|r| r.key() == key)
    }

    /// Its state after an event reporting `incoming` about `recipient`: by precedence, and
    /// unchanged when the event names an address that is not one of its recipients (a
    /// stranger's event, forged or misrouted, never moves our message).
    pub fn state_after_event(
        &self,
        recipient: Option<&EmailAddress>,
        incoming: MessageState,
    ) -> MessageState {
        match recipient {
            Some(address) if !self.has_recipient(address) => self.state,
            _ => self.state.after_event(incoming),
        }
    }

    /// Whether a key of `environment` may see this message: only keys of its own environment
    /// (a test key never sees live mail, nor the reverse).
    pub fn visible_to(&self, environment: KeyEnvironment) -> bool {
        self.environment == environment
    }

    /// The `by-release` queue this message waits in: held ones until their release, `queued`
    /// and `sending` ones on [`ReleaseQueue::Watch`] until they move on.
    pub fn release_queue(&self) -> Option<ReleaseQueue> {
        match self.state {
            MessageState::Scheduled => Some(ReleaseQueue::Scheduled),
            MessageState::Paused => Some(ReleaseQueue::PausedBulk),
            MessageState::Queued | MessageState::Sending => Some(ReleaseQueue::Watch),
            _ => None,
        }
    }

    /// When a held message becomes due: its `send_at`, or (paused without one) its acceptance
    /// time, so resumed bulk mail goes out oldest first and a paused scheduled message still
    /// waits for its time. A watched one is due when it should have moved on: a `sending` one
    /// at the end of its lease, a `queued` one [`QUEUED_CHECK_AFTER_MS`] after its last change.
    pub fn release_at(&self) -> UnixMillis {
        match self.state {
            MessageState::Sending => self
                .sending_until
                .unwrap_or_else(|| self.updated_at.saturating_add_ms(QUEUED_CHECK_AFTER_MS)),
            MessageState::Queued => self.updated_at.saturating_add_ms(QUEUED_CHECK_AFTER_MS),
            _ => self.send_at.unwrap_or(self.created_at),
        }
    }

    /// The status to show for `recipient`: its own if anything happened to it in particular,
    /// else what the message's state says about every recipient.
    pub fn recipient_status(&self, recipient: &Recipient) -> RecipientStatus {
        if recipient.status != RecipientStatus::Pending {
            return recipient.status;
        }
        match self.state {
            MessageState::Queued
            | MessageState::Scheduled
            | MessageState::Paused
            | MessageState::Sending => RecipientStatus::Pending,
            MessageState::Unknown => RecipientStatus::Unknown,
            MessageState::Failed => RecipientStatus::Failed,
            MessageState::Cancelled => RecipientStatus::Cancelled,
            // Accepted by a provider; events for this recipient have not arrived yet.
            MessageState::Sent
            | MessageState::Deferred
            | MessageState::Delivered
            | MessageState::Bounced
            | MessageState::Complained => RecipientStatus::Sent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    fn email() -> OutboundEmail {
        let mut e = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::named(addr("sender@example.com"), "Sender"),
            addr("Jane@example.com"),
            "Hi",
        );
        e.cc.push(addr("jane@EXAMPLE.com"));
        e.cc.push(addr("cc@example.com"));
        e.bcc.push(addr("bcc@example.com"));
        e
    }

    fn record(state: MessageState) -> MessageRecord {
        MessageRecord::new(
            &email(),
            ApiKeyId::generate(),
            KeyEnvironment::Test,
            state,
            UnixMillis(1_000),
            None,
            &[],
        )
    }

    #[test]
    fn only_held_messages_can_be_cancelled() {
        let cancellable: Vec<_> = MessageState::ALL
            .iter()
            .copied()
            .filter(|s| s.is_cancellable())
            .collect();
        assert_eq!(
            cancellable,
            vec![MessageState::Scheduled, MessageState::Paused]
        );
    }

    #[test]
    fn a_late_delivery_never_overwrites_a_bounce_or_a_complaint() {
        use MessageState::*;
        assert_eq!(Bounced.after_event(Delivered), Bounced);
        assert_eq!(Complained.after_event(Delivered), Complained);
        assert_eq!(Delivered.after_event(Bounced), Bounced);
        assert_eq!(Delivered.after_event(Complained), Complained);
        assert_eq!(Delivered.after_event(Deferred), Delivered);
        assert_eq!(Delivered.after_event(Sent), Delivered);
        assert_eq!(Sent.after_event(Deferred), Deferred);
        assert_eq!(Deferred.after_event(Delivered), Delivered);
        assert_eq!(Unknown.after_event(Sent), Sent);
        assert_eq!(Queued.after_event(Delivered), Delivered);
        // Neither a late delivery nor a late drop overrides the other.
        assert_eq!(Failed.after_event(Delivered), Failed);
        assert_eq!(Delivered.after_event(Failed), Delivered);
        // A cancelled message was never sent.
        assert_eq!(Cancelled.after_event(Delivered), Cancelled);
    }

    #[test]
    fn precedence_never_regresses_whatever_the_order() {
        let events: Vec<_> = MessageState::ALL
            .iter()
            .copied()
            .filter(|s| s.is_event_state())
            .collect();
        for &a in &events {
            for &b in &events {
                let ab = a.after_event(b);
                let ba = b.after_event(a);
                assert_eq!(ab.after_event(a), ab);
                assert_eq!(ab.after_event(b), ab);
                // Two events give the same state in either order, except between equals.
                if a.precedence() != b.precedence() {
                    assert_eq!(ab, ba, "{a} then {b}");
                }
            }
        }
        let terminal: Vec<_> = MessageState::ALL
            .iter()
            .copied()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(
            terminal,
            vec![MessageState::Complained, MessageState::Cancelled]
        );
    }

    #[test]
    fn recipient_statuses_follow_the_same_precedence() {
        use RecipientStatus::*;
        assert_eq!(Bounced.after_event(Delivered), Bounced);
        assert_eq!(Delivered.after_event(Complained), Complained);
        assert_eq!(Pending.after_event(Deferred), Deferred);
        assert_eq!(Suppressed.after_event(Delivered), Suppressed);
        for &status in RecipientStatus::ALL {
            if let Some(state) = status.message_state() {
                for &other in RecipientStatus::ALL {
                    if let Some(other_state) = other.message_state() {
                        assert_eq!(
                            status.after_event(other).message_state(),
                            Some(state.after_event(other_state)),
                            "{status} then {other}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn new_messages_start_scheduled_paused_or_queued() {
        let now = UnixMillis(10_000);
        let later = Some(UnixMillis(20_000));
        let past = Some(UnixMillis(5_000));
        use MessageCategory::*;
        assert_eq!(
            initial_state(Transactional, later, now, true),
            MessageState::Scheduled
        );
        assert_eq!(
            initial_state(Bulk, later, now, true),
            MessageState::Scheduled
        );
        assert_eq!(initial_state(Bulk, None, now, true), MessageState::Paused);
        assert_eq!(initial_state(Bulk, past, now, true), MessageState::Paused);
        assert_eq!(
            initial_state(Transactional, None, now, true),
            MessageState::Queued
        );
        assert_eq!(initial_state(Bulk, None, now, false), MessageState::Queued);
    }

    #[test]
    fn recipients_are_listed_once_in_order_with_suppressed_ones_marked() {
        let e = email();
        let r = MessageRecord::new(
            &e,
            ApiKeyId::generate(),
            KeyEnvironment::Live,
            MessageState::Queued,
            UnixMillis(1),
            None,
            &[addr("CC@example.com"), addr("gone@example.com")],
        );
        let listed: Vec<_> = r
            .recipients
            .iter()
            .map(|r| (r.address.as_str(), r.kind, r.status))
            .collect();
        assert_eq!(
            listed,
            vec![
                (
                    "Jane@example.com",
                    RecipientKind::To,
                    RecipientStatus::Pending
                ),
                (
                    "cc@example.com",
                    RecipientKind::Cc,
                    RecipientStatus::Suppressed
                ),
                (
                    "bcc@example.com",
                    RecipientKind::Bcc,
                    RecipientStatus::Pending
                ),
                (
                    "gone@example.com",
                    RecipientKind::To,
                    RecipientStatus::Suppressed
                ),
            ]
        );
        assert_eq!(r.id, e.message_id);
        assert!(r.visible_to(KeyEnvironment::Live));
        assert!(!r.visible_to(KeyEnvironment::Test));
    }

    #[test]
    fn pending_recipients_show_the_message_outcome() {
        let mut r = record(MessageState::Sent);
        r.recipients[1].status = RecipientStatus::Bounced;
        let shown: Vec<_> = r.recipients.iter().map(|x| r.recipient_status(x)).collect();
        assert_eq!(
            shown,
            vec![
                RecipientStatus::Sent,
                RecipientStatus::Bounced,
                RecipientStatus::Sent
            ]
        );
        for (state, status) in [
            (MessageState::Scheduled, RecipientStatus::Pending),
            (MessageState::Unknown, RecipientStatus::Unknown),
            (MessageState::Failed, RecipientStatus::Failed),
            (MessageState::Cancelled, RecipientStatus::Cancelled),
        ] {
            let r = record(state);
            assert_eq!(r.recipient_status(&r.recipients[0]), status);
        }
    }

    #[test]
    fn held_messages_name_their_release_queue_and_time() {
        let mut r = record(MessageState::Scheduled);
        r.send_at = Some(UnixMillis(9_000));
        assert_eq!(r.release_queue(), Some(ReleaseQueue::Scheduled));
        assert_eq!(r.release_at(), UnixMillis(9_000));
        let r = record(MessageState::Paused);
        assert_eq!(
            r.release_queue().map(ReleaseQueue::as_str),
            Some("paused#bulk")
        );
        assert_eq!(r.release_at(), UnixMillis(1_000));
        // Queued and sending messages are watched until they move on.
        let r = record(MessageState::Queued);
        assert_eq!(r.release_queue(), Some(ReleaseQueue::Watch));
        assert_eq!(
            r.release_at(),
            UnixMillis(r.updated_at.as_i64() + QUEUED_CHECK_AFTER_MS)
        );
        let mut r = record(MessageState::Sending);
        r.sending_until = Some(UnixMillis(77_000));
        assert_eq!(r.release_queue(), Some(ReleaseQueue::Watch));
        assert_eq!(r.release_at(), UnixMillis(77_000));
        assert_eq!(record(MessageState::Sent).release_queue(), None);
    }

    #[test]
    fn a_strangers_event_never_moves_the_message() {
        let mut r = record(MessageState::Sent);
        r.recipients = vec![Recipient::pending(
            addr("jane@example.org"),
            RecipientKind::To,
        )];
        let stranger = addr("victim@example.net");
        assert_eq!(
            r.state_after_event(Some(&stranger), MessageState::Bounced),
            MessageState::Sent
        );
        let jane = addr("\"Jane\"@Example.ORG");
        assert_eq!(
            r.state_after_event(Some(&jane), MessageState::Bounced),
            MessageState::Bounced
        );
        assert_eq!(
            r.state_after_event(None, MessageState::Delivered),
            MessageState::Delivered
        );
    }

    #[test]
    fn names_round_trip() {
        for &s in MessageState::ALL {
            assert_eq!(s.as_str().parse::<MessageState>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for &s in RecipientStatus::ALL {
            assert_eq!(s.as_str().parse::<RecipientStatus>(), Ok(s));
        }
        for &o in AttemptOutcome::ALL {
            assert_eq!(o.as_str().parse::<AttemptOutcome>(), Ok(o));
        }
        assert!("lost".parse::<MessageState>().is_err());
    }

    #[test]
    fn debug_masks_the_sender_and_recipients() {
        let text = format!("{:?}", record(MessageState::Queued));
        assert!(
            !text.contains("sender@") && !text.contains("Sender"),
            "{text}"
        );
        assert!(!text.contains("Jane@"), "{text}");
    }
}
