//! Delivery events: what a provider reported about one message and one recipient, in one shape
//! for every provider.
//!
//! Each provider module (in `mailgate-providers`) turns its own webhook or notification payload
//! into [`DeliveryEvent`]s; the event processor correlates them to our messages, dedupes them by
//! [`DeliveryEvent::key`], appends them to the message's history and moves its state by the
//! precedence rule of [`MessageState::after_event`](crate::MessageState::after_event).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::bounce::{
    BounceCause, BounceClassification, BounceEvidence, BounceKind, EnhancedStatus, classify,
};
use crate::message::{MessageState, RecipientStatus};
use crate::suppression::SuppressionReason;
use crate::{EmailAddress, MessageId, ProviderId, UnixMillis};

/// What happened, in provider-neutral terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The provider accepted the message for delivery (SendGrid `processed`, Mailgun `accepted`,
    /// SES `Send`).
    Sent,
    /// The receiving server accepted it.
    Delivered,
    /// Delivery is delayed; the provider keeps trying.
    Deferred,
    /// The receiving server refused it (see [`DeliveryEvent::bounce`]).
    Bounced,
    /// The provider refused or dropped it without trying (suppressed address, virus, invalid).
    Dropped,
    /// The recipient reported it as spam.
    Complained,
    /// The recipient unsubscribed.
    Unsubscribed,
    /// The recipient subscribed again (list or group resubscribe).
    Resubscribed,
    /// The recipient opened it.
    Opened,
    /// The recipient clicked a link (see [`DeliveryEvent::url`]).
    Clicked,
    /// The provider could not render its template.
    RenderingFailed,
    /// A recipient answered (a received message threaded to ours that is not an auto-reply):
    /// recorded in the history, no change of state.
    Replied,
    /// An email was received (inbound): sent to app endpoints as `email.received` with the
    /// parsed summary; never applied to a message's state or history.
    Received,
    /// A documented event that is not about one message (account status, list uploads, stored
    /// inbound mail): kept for audit, never applied to a message.
    AccountNotice,
    /// An event type we do not know; its raw name is in [`DeliveryEvent::provider_type`].
    Unknown,
}

impl EventKind {
    /// Every kind, in a stable order.
    pub const ALL: &'static [EventKind] = &[
        EventKind::Sent,
        EventKind::Delivered,
        EventKind::Deferred,
        EventKind::Bounced,
        EventKind::Dropped,
        EventKind::Complained,
        EventKind::Unsubscribed,
        EventKind::Resubscribed,
        EventKind::Opened,
        EventKind::Clicked,
        EventKind::RenderingFailed,
        EventKind::Replied,
        EventKind::Received,
        EventKind::AccountNotice,
        EventKind::Unknown,
    ];

    /// The `snake_case` name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Sent => "sent",
            EventKind::Delivered => "delivered",
            EventKind::Deferred => "deferred",
            EventKind::Bounced => "bounced",
            EventKind::Dropped => "dropped",
            EventKind::Complained => "complained",
            EventKind::Unsubscribed => "unsubscribed",
            EventKind::Resubscribed => "resubscribed",
            EventKind::Opened => "opened",
            EventKind::Clicked => "clicked",
            EventKind::RenderingFailed => "rendering_failed",
            EventKind::Replied => "replied",
            EventKind::Received => "received",
            EventKind::AccountNotice => "account_notice",
            EventKind::Unknown => "unknown",
        }
    }

    /// The app-webhook type of the event (`email.<kind>`).
    pub fn webhook_type(self) -> String {
        format!("email.{}", self.as_str())
    }

    /// The recipient status an event of this kind reports, if it reports one. `opened` and
    /// `clicked` imply the message was delivered; engagement and subscription changes after
    /// that say nothing more about delivery.
    pub fn recipient_status(self) -> Option<RecipientStatus> {
        Some(match self {
            EventKind::Sent => RecipientStatus::Sent,
            EventKind::Delivered | EventKind::Opened | EventKind::Clicked => {
                RecipientStatus::Delivered
            }
            EventKind::Deferred => RecipientStatus::Deferred,
            EventKind::Bounced => RecipientStatus::Bounced,
            EventKind::Dropped | EventKind::RenderingFailed => RecipientStatus::Failed,
            EventKind::Complained => RecipientStatus::Complained,
            EventKind::Unsubscribed
            | EventKind::Resubscribed
            | EventKind::Replied
            | EventKind::Received
            | EventKind::AccountNotice
            | EventKind::Unknown => return None,
        })
    }

    /// The message state an event of this kind reports, if any (see [`Self::recipient_status`]).
    pub fn message_state(self) -> Option<MessageState> {
        self.recipient_status()
            .and_then(RecipientStatus::message_state)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an [`EventKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind {0:?}")]
pub struct UnknownEventKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownEventKind(s.to_owned()))
    }
}

/// What the provider itself said about a bounce (its own type and subtype, and its verdict).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BounceReport {
    /// The RFC 3463 enhanced status code, when reported.
    pub status: Option<EnhancedStatus>,
    /// The SMTP reply code, when reported.
    pub reply_code: Option<u16>,
    /// The diagnostic text of the receiving server.
    pub diagnostic: Option<String>,
    /// The provider's own bounce type, e.g. `Permanent/General` (SES), `HardBounce` (Postmark),
    /// `blocked` (SendGrid), `permanent` (Mailgun severity).
    pub provider_type: Option<String>,
    /// The provider's own verdict on permanence, when it gives one.
    pub provider_kind: Option<BounceKind>,
    /// A cause the provider names outright (e.g. SES `NoEmail` → user unknown, Postmark
    /// `SpamNotification` → spam content), used when the diagnostic names none.
    pub provider_cause: Option<BounceCause>,
}

impl BounceReport {
    /// The classification of this bounce. The server's own evidence (diagnostic, status, reply
    /// code) is weighed by [`classify`]; the provider's verdict fills in only what that evidence
    /// leaves open, and never turns a sender-side cause into a suppression.
    pub fn classification(&self) -> BounceClassification {
        let evidence = BounceEvidence {
            diagnostic: self.diagnostic.as_deref(),
            status: self.status,
            reply_code: self.reply_code,
        };
        let mut verdict = classify(&evidence);
        if verdict.cause == BounceCause::Unknown
            && let Some(cause) = self.provider_cause
        {
            verdict.cause = cause;
        }
        if verdict.kind == BounceKind::Undetermined
            && let Some(kind) = self.provider_kind
        {
            verdict.kind = kind;
        }
        // Suppress only for a permanent, address-level failure; a provider's "permanent" with
        // no cause of its own is believed only when the server named a recipient problem.
        verdict.suppress = verdict.kind == BounceKind::Hard
            && matches!(
                verdict.cause,
                BounceCause::UserUnknown | BounceCause::HostUnknown | BounceCause::MailboxMoved
            );
        verdict
    }
}

/// What a complaint's feedback report says it is: the ARF `Feedback-Type` of RFC 5965 §3.5/§7.3,
/// which SES passes on as `complaintFeedbackType`. Whether a complaint suppresses depends on it
/// ([`ComplaintFeedback::suppresses`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComplaintFeedback {
    /// `abuse`: unsolicited email or some other kind of email abuse.
    Abuse,
    /// `auth-failure`: the message failed an authentication check (SPF, DKIM, DMARC; RFC 6591).
    AuthFailure,
    /// `fraud`: some kind of fraud or phishing.
    Fraud,
    /// `not-spam`: the reporter does NOT consider the message spam (it corrects a misfiling).
    NotSpam,
    /// `other`, or a type registered after RFC 5965 that we do not know (raw name in `detail`).
    Other,
    /// `virus`: a virus was found in the message.
    Virus,
}

impl ComplaintFeedback {
    /// The feedback type named `name` (case-insensitive); unknown names are [`Self::Other`], as
    /// RFC 5965 §7.3 lets the registry grow.
    pub fn parse(name: &str) -> Self {
        match name.trim().to_ascii_lowercase().as_str() {
            "abuse" => Self::Abuse,
            "auth-failure" => Self::AuthFailure,
            "fraud" => Self::Fraud,
            "not-spam" => Self::NotSpam,
            "virus" => Self::Virus,
            _ => Self::Other,
        }
    }

    /// Whether a complaint of this type stops mail to the recipient:
    /// - `abuse`, `fraud`, `virus`: the recipient's side reports our message as harmful to them;
    ///   sending again costs reputation and the recipient's trust, so suppress.
    /// - `other` and unknown types: a negative report we cannot read further; SES counts it as a
    ///   complaint, so suppress (a missed mailbox costs less than mailing a complainant).
    /// - `not-spam`: by definition the opposite of a complaint (RFC 5965 §7.3: the message is
    ///   not spam); never suppress.
    /// - `auth-failure`: about our SPF/DKIM/DMARC, not the recipient's wishes (RFC 6591); the
    ///   sender must fix it, so do not suppress.
    ///
    /// A complaint with no feedback report at all (no type) suppresses: SES documents it as a
    /// complaint like any other.
    pub fn suppresses(self) -> bool {
        match self {
            Self::Abuse | Self::Fraud | Self::Virus | Self::Other => true,
            Self::NotSpam | Self::AuthFailure => false,
        }
    }
}

/// Where an event came from, to find its raw form again: the webhook receipt (or EventBridge
/// event id), the event's position in that delivery and, for a multi-recipient notification,
/// the recipient's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSource {
    /// The receipt key (`<provider>#<dedupe key>`) or `eventbridge#<id>`.
    pub receipt: String,
    /// The event's position in the delivery.
    pub index: usize,
    /// The recipient's position within the event (0 for single-recipient events).
    pub recipient_index: usize,
}

/// One provider event about one recipient of one message, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryEvent {
    /// The per-event dedupe key, unique per provider: SendGrid `sg_event_id`, Mailgun `id`, SNS
    /// `MessageId` or EventBridge `id` plus the recipient, Postmark `ID` or a documented
    /// composite. Never contains an address in the clear.
    pub key: String,
    /// What happened.
    pub kind: EventKind,
    /// The provider's own name for the event (`bounce`, `failed`, `HardBounce`, `Bounce`, …).
    pub provider_type: String,
    /// Whose event it is.
    pub provider: ProviderId,
    /// The recipient it is about; `None` for events about no one (account notices).
    pub recipient: Option<EmailAddress>,
    /// The provider's id for the message, normalised to the form its send API returned (no
    /// Mailgun angle brackets, no SendGrid filter suffix).
    pub provider_message_id: Option<String>,
    /// Our id, when the provider echoed it (metadata, custom args, tags, header).
    pub message_id: Option<MessageId>,
    /// When the provider says it happened.
    pub occurred_at: Option<UnixMillis>,
    /// When we received it.
    pub received_at: UnixMillis,
    /// Bounce and deferral details (also set for `deferred` and provider drops that carry a
    /// status or diagnostic).
    pub bounce: Option<BounceReport>,
    /// The clicked URL.
    pub url: Option<String>,
    /// Free-text detail the provider gives: drop reason, complaint feedback type, rendering
    /// error, delay type.
    pub detail: Option<String>,
    /// The provider dropped it because the address is on the provider's own suppression list
    /// (SendGrid `dropped` of a bounced/unsubscribed/spam-reported address, Mailgun 605,
    /// Postmark 406, SES `OnAccountSuppressionList`).
    pub provider_suppressed: bool,
    /// The feedback type of a `complained` event, when the provider reports one (SES); absent
    /// means no feedback report, which counts as a complaint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complaint_feedback: Option<ComplaintFeedback>,
    /// Where the raw event is.
    pub source: EventSource,
}

impl DeliveryEvent {
    /// The time to order history by: the provider's time, else the receipt time.
    pub fn at(&self) -> UnixMillis {
        self.occurred_at.unwrap_or(self.received_at)
    }

    /// A short, fixed-length digest of the provider and [`Self::key`] (32 hex characters), for
    /// sort keys and sets where the key itself may be long.
    pub fn key_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(self.provider.as_str().as_bytes());
        hasher.update([0u8]);
        hasher.update(self.key.as_bytes());
        hex::encode(&hasher.finalize()[..16])
    }

    /// The recipient status this event reports, if any. A complaint that is not one (a
    /// `not-spam` or `auth-failure` report, see [`ComplaintFeedback::suppresses`]) reports none.
    pub fn recipient_status(&self) -> Option<RecipientStatus> {
        if self.kind == EventKind::Complained && !self.is_suppressing_complaint() {
            return None;
        }
        self.kind.recipient_status()
    }

    /// Whether a `complained` event is a complaint that suppresses: no feedback type, or one that
    /// [suppresses](ComplaintFeedback::suppresses).
    fn is_suppressing_complaint(&self) -> bool {
        self.complaint_feedback
            .is_none_or(ComplaintFeedback::suppresses)
    }

    /// The bounce classification of a `bounced` event.
    pub fn bounce_classification(&self) -> Option<BounceClassification> {
        (self.kind == EventKind::Bounced)
            .then(|| self.bounce.clone().unwrap_or_default().classification())
    }

    /// What the event does to the suppression list, by the rules: a recipient-caused hard
    /// bounce, a complaint or an unsubscribe suppresses; soft bounces only count toward the
    /// threshold ([`EventEffect::CountSoftBounce`]); sender-side causes never suppress and are
    /// raised to the operator ([`EventEffect::SenderSideBounce`]).
    pub fn effect(&self) -> EventEffect {
        match self.kind {
            EventKind::Complained if self.is_suppressing_complaint() => {
                EventEffect::Suppress(SuppressionReason::Complaint)
            }
            EventKind::Unsubscribed => EventEffect::Suppress(SuppressionReason::Unsubscribe),
            // The recipient asked for mail again: lift an unsubscribe (never a bounce or a
            // complaint, which say nothing about wanting mail).
            EventKind::Resubscribed => EventEffect::Lift(SuppressionReason::Unsubscribe),
            EventKind::Bounced => {
                let verdict = self
                    .bounce_classification()
                    .unwrap_or(BounceClassification {
                        kind: BounceKind::Undetermined,
                        cause: BounceCause::Unknown,
                        suppress: false,
                    });
                if verdict.suppress {
                    EventEffect::Suppress(SuppressionReason::HardBounce)
                } else if verdict.cause.is_sender_side() {
                    EventEffect::SenderSideBounce(verdict.cause)
                } else {
                    // Soft, undetermined, or permanent but not about the address (a disabled
                    // mailbox): counts toward the threshold rather than suppressing at once.
                    EventEffect::CountSoftBounce
                }
            }
            _ => EventEffect::None,
        }
    }
}

/// What an event does beyond history and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventEffect {
    /// Nothing more.
    None,
    /// Put the recipient on the suppression list for this reason.
    Suppress(SuppressionReason),
    /// Take the recipient's event-written entry off the list if it is for this reason.
    Lift(SuppressionReason),
    /// Count a soft bounce for the recipient (distinct events), suppressing at the threshold.
    CountSoftBounce,
    /// A sender-side bounce: never suppress; count it and alert the operator.
    SenderSideBounce(BounceCause),
}

/// How many soft bounces within how long suppress an address (`soft_bounce_threshold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftBounceRule {
    /// Distinct soft-bounce events that trigger suppression.
    pub threshold: u32,
    /// The counting window.
    pub window_ms: i64,
}

impl Default for SoftBounceRule {
    /// 5 soft bounces in 30 days.
    fn default() -> Self {
        Self {
            threshold: 5,
            window_ms: 30 * 24 * 3600 * 1000,
        }
    }
}

impl SoftBounceRule {
    /// Whether the soft bounces at `times` (one per distinct event) reach the threshold within
    /// the window ending at `now`.
    pub fn reached(&self, times: &[UnixMillis], now: UnixMillis) -> bool {
        let since = now.as_i64() - self.window_ms;
        let recent = times.iter().filter(|t| t.as_i64() > since).count();
        recent >= self.threshold as usize
    }
}

/// One entry of a message's history, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The event.
    pub event: DeliveryEvent,
    /// Its bounce classification, for bounces.
    pub classification: Option<BounceClassification>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, bounce: Option<BounceReport>) -> DeliveryEvent {
        DeliveryEvent {
            key: "k".into(),
            kind,
            provider_type: kind.as_str().into(),
            provider: ProviderId::Ses,
            recipient: Some(EmailAddress::parse("a@example.com").unwrap()),
            provider_message_id: Some("p".into()),
            message_id: None,
            occurred_at: None,
            received_at: UnixMillis(5),
            bounce,
            url: None,
            detail: None,
            provider_suppressed: false,
            complaint_feedback: None,
            source: EventSource {
                receipt: "r".into(),
                index: 0,
                recipient_index: 0,
            },
        }
    }

    #[test]
    fn only_complaints_that_are_complaints_suppress() {
        let complaint = |feedback: Option<ComplaintFeedback>| DeliveryEvent {
            complaint_feedback: feedback,
            ..event(EventKind::Complained, None)
        };
        let suppress = EventEffect::Suppress(SuppressionReason::Complaint);
        assert_eq!(complaint(None).effect(), suppress);
        for name in ["abuse", "fraud", "virus", "other", "ABUSE", "something-new"] {
            assert_eq!(
                complaint(Some(ComplaintFeedback::parse(name))).effect(),
                suppress,
                "{name}"
            );
        }
        for name in ["not-spam", "auth-failure", "Not-Spam"] {
            let e = complaint(Some(ComplaintFeedback::parse(name)));
            assert_eq!(e.effect(), EventEffect::None, "{name}");
            assert_eq!(e.recipient_status(), None, "{name}");
        }
        let json = serde_json::to_value(complaint(Some(ComplaintFeedback::NotSpam))).unwrap();
        assert_eq!(json["complaint_feedback"], "not-spam");
        // Events stored before the field existed still read, as complaints.
        let mut old = serde_json::to_value(complaint(None)).unwrap();
        assert!(old.get("complaint_feedback").is_none());
        old.as_object_mut().unwrap().remove("complaint_feedback");
        let back: DeliveryEvent = serde_json::from_value(old).unwrap();
        assert_eq!(back.effect(), suppress);
    }

    #[test]
    fn kinds_round_trip_and_name_their_webhook_type() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>().unwrap(), *kind);
        }
        assert_eq!(EventKind::Bounced.webhook_type(), "email.bounced");
        assert!("nope".parse::<EventKind>().is_err());
    }

    #[test]
    fn engagement_implies_delivery_and_notices_report_nothing() {
        assert_eq!(
            EventKind::Opened.message_state(),
            Some(MessageState::Delivered)
        );
        assert_eq!(
            EventKind::Clicked.recipient_status(),
            Some(RecipientStatus::Delivered)
        );
        assert_eq!(EventKind::Unknown.message_state(), None);
        assert_eq!(EventKind::AccountNotice.message_state(), None);
        assert_eq!(EventKind::Unsubscribed.message_state(), None);
    }

    #[test]
    fn effects_follow_the_suppression_rules() {
        let hard = BounceReport {
            status: Some(EnhancedStatus::parse("5.1.1").unwrap()),
            diagnostic: Some("smtp; 550 5.1.1 user unknown".into()),
            ..Default::default()
        };
        assert_eq!(
            event(EventKind::Bounced, Some(hard)).effect(),
            EventEffect::Suppress(SuppressionReason::HardBounce)
        );
        let blocked = BounceReport {
            status: Some(EnhancedStatus::parse("5.7.1").unwrap()),
            diagnostic: Some(
                "550 5.7.1 Service unavailable; client host blocked using Spamhaus".into(),
            ),
            ..Default::default()
        };
        assert!(matches!(
            event(EventKind::Bounced, Some(blocked)).effect(),
            EventEffect::SenderSideBounce(_)
        ));
        let full = BounceReport {
            status: Some(EnhancedStatus::parse("4.2.2").unwrap()),
            diagnostic: Some("452 4.2.2 mailbox full".into()),
            ..Default::default()
        };
        assert_eq!(
            event(EventKind::Bounced, Some(full)).effect(),
            EventEffect::CountSoftBounce
        );
        assert_eq!(
            event(EventKind::Complained, None).effect(),
            EventEffect::Suppress(SuppressionReason::Complaint)
        );
        assert_eq!(
            event(EventKind::Delivered, None).effect(),
            EventEffect::None
        );
    }

    #[test]
    fn a_provider_verdict_alone_does_not_suppress_a_sender_side_cause() {
        let report = BounceReport {
            provider_kind: Some(BounceKind::Hard),
            provider_cause: Some(BounceCause::SpamContent),
            ..Default::default()
        };
        let verdict = report.classification();
        assert_eq!(verdict.kind, BounceKind::Hard);
        assert!(!verdict.suppress);
        let no_email = BounceReport {
            provider_kind: Some(BounceKind::Hard),
            provider_cause: Some(BounceCause::UserUnknown),
            ..Default::default()
        };
        assert!(no_email.classification().suppress);
    }

    #[test]
    fn the_soft_bounce_rule_counts_within_its_window() {
        let rule = SoftBounceRule {
            threshold: 3,
            window_ms: 100,
        };
        let t = |v| UnixMillis(v);
        assert!(!rule.reached(&[t(10), t(20)], t(50)));
        assert!(rule.reached(&[t(10), t(20), t(30)], t(50)));
        // The first one fell out of the window.
        assert!(!rule.reached(&[t(10), t(120), t(130)], t(150)));
    }
}
