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

/// A message for the events queue that becomes visible only after `delay` (the simulator's
/// events: SQS `DelaySeconds`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayedEvent {
    /// The events-queue message (the envelope of [`crate::queue_messages`]).
    pub body: String,
    /// How long it stays invisible (at most 15 minutes).
    pub delay: Duration,
}

/// What the simulator does with one message sent with a `test` key: the answer a provider
/// would give at send time, and the provider-shaped events it will post afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Simulation {
    /// Accepted (with the simulator's message id), or the failure a provider would report.
    pub answer: Result<Accepted, SendFailure>,
    /// The events to post once the outcome is recorded (none unless accepted).
    pub events: Vec<DelayedEvent>,
}

/// The built-in stand-in for every provider, for messages of `test` keys. Pure: it decides;
/// posting its events is the [`DelayedEventQueue`]'s job.
pub trait EventSimulator: Send + Sync {
    /// Simulates sending `email` at `now`.
    fn simulate(&self, email: &OutboundEmail, now: OffsetDateTime) -> Simulation;
}

/// The events queue as the simulator posts to it: each message with its own delay.
pub trait DelayedEventQueue: Send + Sync {
    /// Puts every message on the queue, or reports that it could not (some may have been put:
    /// the event processor dedupes).
    fn post<'a>(&'a self, events: &'a [DelayedEvent]) -> BoxFuture<'a, Result<(), StoreError>>;
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

/// The caller's API key as this container last read it, to be confirmed by the transaction
/// that records the message instead of by a read before it: the key must still be stored
/// unrevoked with this id, environment and scope, so a revocation takes effect at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGuard {
    /// The hash the key is stored under.
    pub hash: crate::KeyHash,
    /// Its id.
    pub id: crate::ApiKeyId,
    /// Its environment.
    pub environment: crate::KeyEnvironment,
    /// The scope the route needs.
    pub scope: crate::Scope,
}

/// What the transaction recording a message checks besides its own writes, so that the reads
/// it replaces (the API key's lookup, the suppression check) need not come before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptGuards {
    /// The cached API key to confirm, when the request was authenticated from the cache.
    pub api_key: Option<KeyGuard>,
    /// Recipients none of whom may hold an active unscoped suppression (empty: none checked).
    pub recipients: Vec<EmailAddress>,
    /// Bulk mail's topic: the recipients' entries scoped to it are checked too.
    pub topic: Option<String>,
    /// Whether an unsubscribe lets the message through (transactional mail: only bounces,
    /// complaints and the like stop it).
    pub unsubscribe_passes: bool,
    /// The time suppressions are judged at (an expired one suppresses nothing).
    pub now: OffsetDateTime,
}

impl AcceptGuards {
    /// How many item checks the guards add to the transaction: one per distinct recipient
    /// (two with a topic) and one for the key, the addresses counted as the suppression list
    /// keys them.
    pub fn item_checks(&self) -> usize {
        let distinct: std::collections::HashSet<String> =
            self.recipients.iter().map(crate::suppression_key).collect();
        distinct.len() * (1 + usize::from(self.topic.is_some()))
            + usize::from(self.api_key.is_some())
    }
}

/// What a guarded create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardedCreate {
    /// Recorded, and the key claimed when one was given (its claim). Every guard held.
    Recorded(Option<Claim>),
    /// The idempotency key is held (nothing was written): see what holds it.
    KeyHeld,
    /// A guard did not hold, or this store cannot check guards: nothing was written; check
    /// with reads.
    Unconfirmed,
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

    /// Records a newly accepted message, claiming `key` when given, in ONE write that also
    /// checks `guards`: nothing is written unless the claim and every guard hold. A store that
    /// cannot check guards answers [`GuardedCreate::Unconfirmed`] (the caller then reads).
    fn create_guarded<'a>(
        &'a self,
        record: &'a MessageRecord,
        content: &'a OutboundEmail,
        requested_provider: Option<ProviderId>,
        key: Option<&'a KeyClaimRequest>,
        guards: &'a AcceptGuards,
    ) -> BoxFuture<'a, Result<GuardedCreate, StoreError>> {
        let _ = (record, content, requested_provider, key, guards);
        Box::pin(async { Ok(GuardedCreate::Unconfirmed) })
    }

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
