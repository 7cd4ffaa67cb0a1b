//! The ports of the send flow: accepting a message (message store, idempotency keys, the
//! suppression check, the bulk pause switch, the send queue) and delivering it (providers,
//! their shared health, waiting and randomness).

use std::collections::HashMap;
use std::time::Duration;

use time::OffsetDateTime;

use super::{BoxFuture, StoreError};
use crate::event::HistoryEntry;
use crate::idempotency::{Claim, ClaimOutcome, RequestFingerprint, StoredResponse};
use crate::{
    Admission, CircuitStatus, EmailAddress, MessageId, MessageRecord, MessageState, OutboundEmail,
    ProviderId, SendAttempt, SendFailure, Suppression, TakeDenied, UnixMillis,
};

/// Waiting between retries, as a port so tests do not wait.
pub trait Sleeper: Send + Sync {
    /// Resolves after `duration`.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// A source of random numbers in `[0, 1)`: the weighted draw and the backoff jitter.
pub trait RandomSource: Send + Sync {
    /// The next number in `[0, 1)`.
    fn unit(&self) -> f64;
}

/// The provider took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The provider's id for the message, as its webhooks report it (Mailgun's without `<>`).
    pub provider_message_id: String,
}

/// One email provider, able to send an [`OutboundEmail`].
pub trait EmailProvider: Send + Sync {
    /// Which provider this is.
    fn id(&self) -> ProviderId;

    /// Sends one message. On failure the evidence is returned for
    /// [`SendFailure::classify`]; nothing is retried here (the send path decides).
    fn send<'a>(&'a self, email: &'a OutboundEmail)
    -> BoxFuture<'a, Result<Accepted, SendFailure>>;
}

/// The shared health of the providers: each one's circuit breaker and rate budget.
pub trait ProviderHealth: Send + Sync {
    /// Whether a call may go to `provider` at `now` (a half-open circuit's probe slot is taken).
    fn admit(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Admission, StoreError>>;

    /// Records a call that the provider answered properly; the circuit's status after it.
    fn record_success(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<CircuitStatus, StoreError>>;

    /// Records a failure that counts against the provider; the circuit's status after it.
    fn record_failure(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<CircuitStatus, StoreError>>;

    /// Takes one token of the provider's rate budget, or says when one will be available.
    fn take_token(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Result<(), TakeDenied>, StoreError>>;
}

/// A message's summary with its send attempts and history, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The summary.
    pub record: MessageRecord,
    /// Every recorded provider call, in order.
    pub attempts: Vec<SendAttempt>,
    /// The only provider the caller allowed (`provider` in the request), if any: every later
    /// attempt (the send worker's) goes through it alone.
    pub requested_provider: Option<ProviderId>,
    /// Its delivery-event history, in event-time order.
    pub events: Vec<HistoryEntry>,
}

/// What taking a stored message for a provider call found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendingClaim {
    /// The message was `queued` and is now `sending` under this caller's lease.
    Taken,
    /// The message is not `queued`: another worker holds its lease (`sending`), or it is past
    /// sending, or held (`scheduled`/`paused`). Its state.
    Elsewhere(MessageState),
    /// Its `sending` lease had expired (the worker holding it died, possibly after the provider
    /// call): the message is now `unknown` and must not be sent again blindly.
    Abandoned,
    /// There is no such message.
    Missing,
}

/// An `Idempotency-Key` claim to make together with a message write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyClaimRequest {
    /// The scoped key (`<api key id>#<Idempotency-Key>`).
    pub scoped_key: String,
    /// The request body's fingerprint.
    pub fingerprint: RequestFingerprint,
    /// The claim's time.
    pub now: OffsetDateTime,
    /// How long the claim holds the key.
    pub lease: Duration,
    /// When the answer is known already (nothing left to call): the response to store
    /// completed at once, and how long to keep it.
    pub completed: Option<(StoredResponse, Duration)>,
}

/// Completing a claimed key with the response it replays, written with a message outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCompletion {
    /// The claim this request holds.
    pub claim: Claim,
    /// The response to replay.
    pub response: StoredResponse,
    /// The completion's time.
    pub now: OffsetDateTime,
    /// How long the response replays.
    pub retention: Duration,
}

/// Messages: records, content, send attempts and the sending lease.
pub trait MessageStore: Send + Sync {
    /// The message's summary, attempts and history; `None` when there is no such message.
    fn get<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<StoredMessage>, StoreError>>;

    /// The message's content; `None` when it is missing.
    fn load_content<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<OutboundEmail>, StoreError>>;

    /// Takes a `queued` message for a provider call: `queued` → `sending` under a lease until
    /// `lease_until`; an expired lease found is turned into `unknown` (`Abandoned`).
    fn start_sending<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> BoxFuture<'a, Result<SendingClaim, StoreError>>;

    /// Records a newly accepted message with its content (and the only provider it may use).
    fn create<'a>(
        &'a self,
        record: &'a MessageRecord,
        content: &'a OutboundEmail,
        requested_provider: Option<ProviderId>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Records a newly accepted message and claims its idempotency key in ONE write: both or
    /// neither. `Ok(None)` when the key is held (nothing was written).
    fn create_and_claim<'a>(
        &'a self,
        record: &'a MessageRecord,
        content: &'a OutboundEmail,
        requested_provider: Option<ProviderId>,
        key: &'a KeyClaimRequest,
    ) -> BoxFuture<'a, Result<Option<Claim>, StoreError>>;

    /// Records every provider call of one delivery and moves the message `record` to `state`
    /// (the sending lease is lifted), with the key's completion in the same write when given;
    /// a `sent`, `failed` or `unknown` outcome adds to the delivery statistics in that write,
    /// once per message.
    /// Returns whether the completion was written (a lapsed claim is refused; the outcome is
    /// recorded without it).
    fn record_outcome<'a>(
        &'a self,
        record: &'a MessageRecord,
        attempts: &'a [SendAttempt],
        state: MessageState,
        now: UnixMillis,
        completion: Option<&'a KeyCompletion>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// `Idempotency-Key` records on their own.
pub trait IdempotencyStore: Send + Sync {
    /// Claims `scoped_key` for `lease`, or says what holds it.
    fn claim<'a>(
        &'a self,
        scoped_key: &'a str,
        fingerprint: &'a RequestFingerprint,
        now: OffsetDateTime,
        lease: Duration,
    ) -> BoxFuture<'a, Result<ClaimOutcome, StoreError>>;

    /// What a refused claim ran into; `None` when the key is free again.
    fn refused<'a>(
        &'a self,
        scoped_key: &'a str,
        fingerprint: &'a RequestFingerprint,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Option<ClaimOutcome>, StoreError>>;

    /// Completes this request's claim with `response`, replayed for `retention`.
    fn complete<'a>(
        &'a self,
        claim: &'a Claim,
        response: &'a StoredResponse,
        now: OffsetDateTime,
        retention: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Releases this request's claim (nothing was accepted); whether it was still held.
    fn release<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Forgets a completed response of this claim; whether it was still there.
    fn discard<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// The suppression list, as the send path reads it.
pub trait SuppressionCheck: Send + Sync {
    /// The active suppressions among `addresses` at `now`.
    fn check<'a>(
        &'a self,
        addresses: &'a [EmailAddress],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<HashMap<EmailAddress, Suppression>, StoreError>>;

    /// The active suppressions among `addresses` scoped to subscription `topic` (unsubscribes
    /// from mail on that topic), which stop bulk mail on that topic.
    fn check_topic<'a>(
        &'a self,
        addresses: &'a [EmailAddress],
        topic: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<HashMap<EmailAddress, Suppression>, StoreError>>;
}

/// The operator's switches over sending.
pub trait SendControls: Send + Sync {
    /// Whether bulk mail is held as `paused` now.
    fn bulk_paused(&self) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Whether a reputation guardrail holds bulk mail from `sending_domain`: through
    /// `provider` when the message may use only that one, else through any provider (the one a
    /// message will use is chosen at send time, with failover, so any paused route holds it).
    fn bulk_paused_for<'a>(
        &'a self,
        sending_domain: &'a str,
        provider: Option<ProviderId>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// The send queue: pointers to messages for the send worker.
pub trait SendQueue: Send + Sync {
    /// Puts `id` on the queue, invisible for `delay` (at most the queue's maximum).
    fn enqueue<'a>(
        &'a self,
        id: &'a MessageId,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Puts every one of `ids` on the queue without delay; fails unless every one is on it.
    fn enqueue_all<'a>(&'a self, ids: &'a [MessageId]) -> BoxFuture<'a, Result<(), StoreError>>;
}
