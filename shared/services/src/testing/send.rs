//! Fakes of the send flow's ports, and the failure injection every fake uses ([`Faults`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mailgate_core::idempotency::decide;
use mailgate_core::ports::{
    AcceptGuards, Accepted, BoxFuture, EmailProvider, GuardedCreate, IdempotencyStore,
    KeyClaimRequest, KeyCompletion, MessageStore, ProviderHealth, RandomSource, SendControls,
    SendQueue, SendingClaim, Sleeper, StoredMessage, SuppressionCheck,
};
use mailgate_core::{
    Admission, BreakerConfig, BreakerState, CircuitStatus, Claim, ClaimOutcome, EmailAddress,
    FixedClock, IdempotencyDecision, IdempotencyRecord, IdempotencyState, MessageId, MessageRecord,
    MessageState, OutboundEmail, ProviderId, RateLimit, RequestFingerprint, SendAttempt,
    SendFailure, StoreError, StoreErrorKind, StoredResponse, Suppression, TakeDenied, TokenBucket,
    UnixMillis,
};
use time::OffsetDateTime;

/// Breakers and buckets in memory, with the core's state machines.
pub struct MemoryHealth {
    breaker: BreakerConfig,
    limits: HashMap<ProviderId, RateLimit>,
    breakers: Mutex<HashMap<ProviderId, BreakerState>>,
    buckets: Mutex<HashMap<ProviderId, TokenBucket>>,
}

impl MemoryHealth {
    pub fn new(limits: HashMap<ProviderId, RateLimit>, failure_threshold: u32) -> Self {
        Self {
            breaker: BreakerConfig {
                failure_threshold,
                ..BreakerConfig::default()
            },
            limits,
            breakers: Mutex::default(),
            buckets: Mutex::default(),
        }
    }

    pub fn breaker(&self, provider: ProviderId) -> BreakerState {
        self.breakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&provider)
            .cloned()
            .unwrap_or_default()
    }

    fn update(&self, provider: ProviderId, f: impl FnOnce(&BreakerState) -> BreakerState) {
        let mut breakers = self.breakers.lock().unwrap_or_else(PoisonError::into_inner);
        let next = f(breakers.get(&provider).unwrap_or(&BreakerState::new()));
        breakers.insert(provider, next);
    }
}

impl ProviderHealth for MemoryHealth {
    fn admit(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Admission, StoreError>> {
        let admission = self.breaker(provider).admit(&self.breaker, now);
        if let Admission::Probe(next) = &admission {
            self.update(provider, |_| next.clone());
        }
        Box::pin(async move { Ok(admission) })
    }

    fn record_success(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<CircuitStatus, StoreError>> {
        self.update(provider, |s| s.on_success(&self.breaker, now));
        let status = self.breaker(provider).status;
        Box::pin(async move { Ok(status) })
    }

    fn record_failure(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<CircuitStatus, StoreError>> {
        self.update(provider, |s| s.on_failure(&self.breaker, now));
        let status = self.breaker(provider).status;
        Box::pin(async move { Ok(status) })
    }

    fn take_token(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Result<(), TakeDenied>, StoreError>> {
        let result = match self.limits.get(&provider) {
            None => Ok(()),
            Some(limit) => {
                let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
                let bucket = buckets
                    .entry(provider)
                    .or_insert_with(|| TokenBucket::full(limit, now));
                bucket.try_take(limit, now, 1).map(|next| *bucket = next)
            }
        };
        Box::pin(async move { Ok(result) })
    }
}

/// One scripted answer: how long the call takes, and what it returns.
pub type Step = (Duration, Result<Accepted, SendFailure>);

/// A provider that answers from a script (then accepts), moving the clock by each call's time.
pub struct ScriptedProvider {
    /// Which provider it plays.
    pub id: ProviderId,
    /// The clock each call advances.
    pub clock: Arc<FixedClock>,
    /// The answers still to give.
    pub script: Mutex<VecDeque<Step>>,
    /// How many calls it took.
    pub calls: AtomicU32,
    /// Run at the start of every call (to look at the stores as the provider is called).
    before: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl ScriptedProvider {
    /// Runs `check` at the start of every call.
    pub fn before_call(&self, check: impl Fn() + Send + Sync + 'static) {
        *self.before.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(check));
    }

    /// A provider answering `script`, then accepting every call.
    pub fn new(id: ProviderId, clock: Arc<FixedClock>, script: Vec<Step>) -> Self {
        Self {
            id,
            clock,
            script: Mutex::new(script.into()),
            calls: AtomicU32::new(0),
            before: Mutex::new(None),
        }
    }

    /// How many calls it took.
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl EmailProvider for ScriptedProvider {
    fn id(&self) -> ProviderId {
        self.id
    }

    fn send<'a>(
        &'a self,
        _email: &'a OutboundEmail,
    ) -> BoxFuture<'a, Result<Accepted, SendFailure>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(check) = &*self.before.lock().unwrap_or_else(PoisonError::into_inner) {
            check();
        }
        let (takes, result) = self
            .script
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
            .unwrap_or((Duration::ZERO, Ok(accepted(&format!("{}-id", self.id)))));
        self.clock
            .advance(time::Duration::try_from(takes).unwrap_or(time::Duration::ZERO));
        Box::pin(async move { result })
    }
}

pub fn accepted(id: &str) -> Accepted {
    Accepted {
        provider_message_id: id.to_owned(),
    }
}

pub fn fails(failure: SendFailure) -> Step {
    (Duration::ZERO, Err(failure))
}

/// Records the waits and moves the clock instead of waiting.
pub struct RecordingSleeper {
    /// The clock it moves.
    pub clock: Arc<FixedClock>,
    /// Every wait asked for.
    pub waits: Mutex<Vec<Duration>>,
}

impl RecordingSleeper {
    /// A sleeper moving `clock`.
    pub fn new(clock: Arc<FixedClock>) -> Self {
        Self {
            clock,
            waits: Mutex::default(),
        }
    }

    /// Every wait asked for so far.
    pub fn waits(&self) -> Vec<Duration> {
        self.waits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Sleeper for RecordingSleeper {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.waits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(duration);
        self.clock
            .advance(time::Duration::try_from(duration).unwrap_or(time::Duration::ZERO));
        Box::pin(async {})
    }
}

pub struct FixedRandom(pub f64);

impl RandomSource for FixedRandom {
    fn unit(&self) -> f64 {
        self.0
    }
}

/// Failures queued for a fake's operations: the next call of an operation takes the first one
/// queued for it, so a test can make a port fail at any step.
#[derive(Debug, Default)]
pub struct Faults(Mutex<HashMap<&'static str, VecDeque<StoreError>>>);

impl Faults {
    /// Makes the next call of `operation` fail with `kind`.
    pub fn fail_next(&self, operation: &'static str, kind: StoreErrorKind) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(operation)
            .or_default()
            .push_back(StoreError::new(kind, operation, "injected by the test"));
    }

    /// The failure queued for this call of `operation`, if any.
    pub fn take(&self, operation: &'static str) -> Result<(), StoreError> {
        match self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_mut(operation)
            .and_then(VecDeque::pop_front)
        {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `Idempotency-Key` records in memory, decided by the core's rules.
#[derive(Debug, Default)]
pub struct MemoryIdempotency {
    records: Mutex<HashMap<String, (IdempotencyRecord, String)>>,
    next_claim: AtomicU32,
    /// Failures to inject, by operation (`claim`, `refused`, `complete`, `release`, `discard`).
    pub faults: Faults,
}

impl MemoryIdempotency {
    /// Forgets `scoped_key`'s record, as when its claim lapsed (or its retention ended).
    pub fn forget(&self, scoped_key: &str) {
        lock(&self.records).remove(scoped_key);
    }

    /// The stored record of `scoped_key`, if any.
    pub fn record(&self, scoped_key: &str) -> Option<IdempotencyRecord> {
        lock(&self.records).get(scoped_key).map(|(r, _)| r.clone())
    }

    /// Whether `key` is free or lapsed (a claim would succeed); nothing changes.
    pub fn would_claim(&self, key: &KeyClaimRequest) -> bool {
        let records = lock(&self.records);
        matches!(
            decide(
                records.get(&key.scoped_key).map(|(r, _)| r),
                &key.fingerprint,
                key.now,
            ),
            IdempotencyDecision::Proceed { .. }
        )
    }

    /// Claims `key` if it is free or lapsed; the claim, or what holds the key.
    pub fn try_claim(&self, key: &KeyClaimRequest) -> Result<Claim, ClaimOutcome> {
        let mut records = lock(&self.records);
        let decision = decide(
            records.get(&key.scoped_key).map(|(r, _)| r),
            &key.fingerprint,
            key.now,
        );
        let reclaimed = match decision {
            IdempotencyDecision::Proceed { reclaim } => reclaim,
            IdempotencyDecision::Replay(response) => return Err(ClaimOutcome::Replay(response)),
            IdempotencyDecision::Mismatch => return Err(ClaimOutcome::Mismatch),
            IdempotencyDecision::InFlight { retry_after_secs } => {
                return Err(ClaimOutcome::InFlight { retry_after_secs });
            }
        };
        let claim_id = format!("claim-{}", self.next_claim.fetch_add(1, Ordering::SeqCst));
        let mut record = IdempotencyRecord::claim(key.fingerprint.clone(), key.now, key.lease);
        if let Some((response, retention)) = &key.completed {
            record.state = IdempotencyState::Completed {
                response: response.clone(),
                expires_at: UnixMillis::from(key.now).saturating_add(*retention),
            };
        }
        let claim = Claim {
            scoped_key: key.scoped_key.clone(),
            claim_id: claim_id.clone(),
            fingerprint: key.fingerprint.clone(),
            lease_expires_at: key.now + key.lease,
            reclaimed,
        };
        records.insert(key.scoped_key.clone(), (record, claim_id));
        Ok(claim)
    }

    /// Completes `claim` if it is still held and in progress; whether it was.
    pub fn try_complete(
        &self,
        claim: &Claim,
        response: &StoredResponse,
        now: OffsetDateTime,
        retention: Duration,
    ) -> bool {
        let mut records = lock(&self.records);
        match records.get_mut(&claim.scoped_key) {
            Some((record, id))
                if *id == claim.claim_id
                    && matches!(record.state, IdempotencyState::InProgress { .. }) =>
            {
                record.state = IdempotencyState::Completed {
                    response: response.clone(),
                    expires_at: UnixMillis::from(now).saturating_add(retention),
                };
                true
            }
            _ => false,
        }
    }
}

impl IdempotencyStore for MemoryIdempotency {
    fn claim<'a>(
        &'a self,
        scoped_key: &'a str,
        fingerprint: &'a RequestFingerprint,
        now: OffsetDateTime,
        lease: Duration,
    ) -> BoxFuture<'a, Result<ClaimOutcome, StoreError>> {
        let result = self.faults.take("claim").map(|()| {
            let key = KeyClaimRequest {
                scoped_key: scoped_key.to_owned(),
                fingerprint: fingerprint.clone(),
                now,
                lease,
                completed: None,
            };
            match self.try_claim(&key) {
                Ok(claim) => ClaimOutcome::Claimed(claim),
                Err(outcome) => outcome,
            }
        });
        Box::pin(async move { result })
    }

    fn refused<'a>(
        &'a self,
        scoped_key: &'a str,
        fingerprint: &'a RequestFingerprint,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Option<ClaimOutcome>, StoreError>> {
        let result = self.faults.take("refused").map(|()| {
            let records = lock(&self.records);
            match decide(records.get(scoped_key).map(|(r, _)| r), fingerprint, now) {
                IdempotencyDecision::Proceed { .. } => None,
                IdempotencyDecision::Replay(response) => Some(ClaimOutcome::Replay(response)),
                IdempotencyDecision::Mismatch => Some(ClaimOutcome::Mismatch),
                IdempotencyDecision::InFlight { retry_after_secs } => {
                    Some(ClaimOutcome::InFlight { retry_after_secs })
                }
            }
        });
        Box::pin(async move { result })
    }

    fn complete<'a>(
        &'a self,
        claim: &'a Claim,
        response: &'a StoredResponse,
        now: OffsetDateTime,
        retention: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.faults.take("complete").and_then(|()| {
            if self.try_complete(claim, response, now, retention) {
                Ok(())
            } else {
                Err(StoreError::new(
                    StoreErrorKind::ConditionFailed,
                    "complete",
                    "the claim is no longer held",
                ))
            }
        });
        Box::pin(async move { result })
    }

    fn release<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<bool, StoreError>> {
        let result = self.faults.take("release").map(|()| {
            let mut records = lock(&self.records);
            let held = records.get(&claim.scoped_key).is_some_and(|(r, id)| {
                *id == claim.claim_id && matches!(r.state, IdempotencyState::InProgress { .. })
            });
            if held {
                records.remove(&claim.scoped_key);
            }
            held
        });
        Box::pin(async move { result })
    }

    fn discard<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<bool, StoreError>> {
        let result = self.faults.take("discard").map(|()| {
            let mut records = lock(&self.records);
            let held = records
                .get(&claim.scoped_key)
                .is_some_and(|(_, id)| *id == claim.claim_id);
            if held {
                records.remove(&claim.scoped_key);
            }
            held
        });
        Box::pin(async move { result })
    }
}

/// One message as the in-memory store keeps it.
#[derive(Debug, Clone)]
pub struct MemoryMessage {
    /// The summary.
    pub record: MessageRecord,
    /// The content.
    pub content: OutboundEmail,
    /// The only provider it may use.
    pub requested_provider: Option<ProviderId>,
    /// Every recorded attempt.
    pub attempts: Vec<SendAttempt>,
    /// The sending lease, while `sending`.
    pub sending_until: Option<UnixMillis>,
}

/// Messages in memory; claims and completions go to the linked [`MemoryIdempotency`], in the
/// same step (as one DynamoDB transaction does).
#[derive(Debug, Default)]
pub struct MemoryMessages {
    messages: Mutex<HashMap<MessageId, MemoryMessage>>,
    /// The idempotency records written together with messages.
    pub idempotency: Arc<MemoryIdempotency>,
    /// Failures to inject, by operation (`get`, `load_content`, `start_sending`, `create`,
    /// `create_and_claim`, `create_guarded`, `record_outcome`).
    pub faults: Faults,
    /// The suppressions and keys a guarded create checks (as the DynamoDB store checks their
    /// items in its transaction); without them every guarded create is `Unconfirmed`.
    guarded_by: Mutex<Option<(Arc<MemorySuppressions>, Arc<super::MemoryApiKeys>)>>,
    /// How many guarded creates were asked for.
    pub guarded_creates: AtomicU32,
}

impl MemoryMessages {
    /// A store claiming keys in `idempotency`.
    pub fn with_idempotency(idempotency: Arc<MemoryIdempotency>) -> Self {
        Self {
            idempotency,
            ..Self::default()
        }
    }

    /// Checks the guards of `create_guarded` against `suppressions` and `keys`.
    pub fn guard_with(
        &self,
        suppressions: Arc<MemorySuppressions>,
        keys: Arc<super::MemoryApiKeys>,
    ) {
        *lock(&self.guarded_by) = Some((suppressions, keys));
    }

    /// Whether every guard holds; `None` when no guard store is linked.
    fn guards_hold(&self, guards: &AcceptGuards) -> Option<bool> {
        let (suppressions, keys) = lock(&self.guarded_by).clone()?;
        let unscoped = suppressions.active(&guards.recipients, None, guards.now);
        let recipients_pass = unscoped.values().all(|s| {
            guards.unsubscribe_passes && s.reason == mailgate_core::SuppressionReason::Unsubscribe
        }) && guards.topic.as_deref().is_none_or(|topic| {
            suppressions
                .active(&guards.recipients, Some(topic), guards.now)
                .is_empty()
        });
        let key_passes = guards.api_key.as_ref().is_none_or(|k| {
            keys.record(&k.hash).is_some_and(|r| {
                !r.is_revoked()
                    && r.id == k.id
                    && r.environment == k.environment
                    && r.scopes.contains(k.scope)
            })
        });
        Some(recipients_pass && key_passes)
    }

    /// The stored message, if any.
    pub fn message(&self, id: &MessageId) -> Option<MemoryMessage> {
        lock(&self.messages).get(id).cloned()
    }

    /// Every stored message.
    pub fn all(&self) -> Vec<MemoryMessage> {
        lock(&self.messages).values().cloned().collect()
    }

    fn insert(
        &self,
        record: &MessageRecord,
        content: &OutboundEmail,
        requested_provider: Option<ProviderId>,
    ) -> Result<(), StoreError> {
        let mut messages = lock(&self.messages);
        if messages.contains_key(&record.id) {
            return Err(StoreError::new(
                StoreErrorKind::ConditionFailed,
                "create",
                "the message exists already",
            ));
        }
        messages.insert(
            record.id.clone(),
            MemoryMessage {
                record: record.clone(),
                content: content.clone(),
                requested_provider,
                attempts: Vec::new(),
                sending_until: None,
            },
        );
        Ok(())
    }
}

impl MessageStore for MemoryMessages {
    fn get<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<StoredMessage>, StoreError>> {
        let result = self.faults.take("get").map(|()| {
            self.message(id).map(|m| StoredMessage {
                record: m.record,
                attempts: m.attempts,
                requested_provider: m.requested_provider,
                events: Vec::new(),
            })
        });
        Box::pin(async move { result })
    }

    fn load_content<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<OutboundEmail>, StoreError>> {
        let result = self
            .faults
            .take("load_content")
            .map(|()| self.message(id).map(|m| m.content));
        Box::pin(async move { result })
    }

    fn start_sending<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> BoxFuture<'a, Result<SendingClaim, StoreError>> {
        let result = self.faults.take("start_sending").map(|()| {
            let mut messages = lock(&self.messages);
            let Some(m) = messages.get_mut(id) else {
                return SendingClaim::Missing;
            };
            match m.record.state {
                MessageState::Queued => {
                    m.record.state = MessageState::Sending;
                    m.sending_until = Some(lease_until);
                    SendingClaim::Taken
                }
                MessageState::Sending if m.sending_until.is_some_and(|until| until <= now) => {
                    m.record.state = MessageState::Unknown;
                    m.sending_until = None;
                    SendingClaim::Abandoned
                }
                state => SendingClaim::Elsewhere(state),
            }
        });
        Box::pin(async move { result })
    }

    fn create<'a>(
        &'a self,
        record: &'a MessageRecord,
        content: &'a OutboundEmail,
        requested_provider: Option<ProviderId>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self
            .faults
            .take("create")
            .and_then(|()| self.insert(record, content, requested_provider));
        Box::pin(async move { result })
    }

    fn create_and_claim<'a>(
        &'a self,
        record: &'a MessageRecord,
        content: &'a OutboundEmail,
        requested_provider: Option<ProviderId>,
        key: &'a KeyClaimRequest,
    ) -> BoxFuture<'a, Result<Option<Claim>, StoreError>> {
        let result = self.faults.take("create_and_claim").and_then(|()| {
            if lock(&self.messages).contains_key(&record.id) {
                // One transaction: a refused claim is reported first (as the adapter reads
                // the cancellation reasons), else the existing message; nothing is written.
                return if self.idempotency.would_claim(key) {
                    Err(StoreError::new(
                        StoreErrorKind::ConditionFailed,
                        "create_and_claim",
                        "the message exists already",
                    ))
                } else {
                    Ok(None)
                };
            }
            match self.idempotency.try_claim(key) {
                Ok(claim) => self
                    .insert(record, content, requested_provider)
                    .map(|()| Some(claim)),
                Err(_) => Ok(None),
            }
        });
        Box::pin(async move { result })
    }

    fn create_guarded<'a>(
        &'a self,
        record: &'a MessageRecord,
        content: &'a OutboundEmail,
        requested_provider: Option<ProviderId>,
        key: Option<&'a KeyClaimRequest>,
        guards: &'a AcceptGuards,
    ) -> BoxFuture<'a, Result<GuardedCreate, StoreError>> {
        self.guarded_creates.fetch_add(1, Ordering::SeqCst);
        let result = self.faults.take("create_guarded").and_then(|()| {
            let Some(hold) = self.guards_hold(guards) else {
                return Ok(GuardedCreate::Unconfirmed);
            };
            // One transaction: the claim is judged first, then the message, then the guards
            // (as the adapter reads the cancellation reasons); nothing is written unless all
            // hold.
            if let Some(key) = key
                && !self.idempotency.would_claim(key)
            {
                return Ok(GuardedCreate::KeyHeld);
            }
            if lock(&self.messages).contains_key(&record.id) {
                return Err(StoreError::new(
                    StoreErrorKind::ConditionFailed,
                    "create_guarded",
                    "the message exists already",
                ));
            }
            if !hold {
                return Ok(GuardedCreate::Unconfirmed);
            }
            let claim = match key {
                Some(key) => match self.idempotency.try_claim(key) {
                    Ok(claim) => Some(claim),
                    Err(_) => return Ok(GuardedCreate::KeyHeld),
                },
                None => None,
            };
            self.insert(record, content, requested_provider)
                .map(|()| GuardedCreate::Recorded(claim))
        });
        Box::pin(async move { result })
    }

    fn record_outcome<'a>(
        &'a self,
        record: &'a MessageRecord,
        attempts: &'a [SendAttempt],
        state: MessageState,
        _now: UnixMillis,
        completion: Option<&'a KeyCompletion>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let id = &record.id;
        let result = self.faults.take("record_outcome").and_then(|()| {
            let mut messages = lock(&self.messages);
            let Some(m) = messages.get_mut(id) else {
                return Err(StoreError::new(
                    StoreErrorKind::ConditionFailed,
                    "record_outcome",
                    "no such message",
                ));
            };
            m.attempts.extend_from_slice(attempts);
            m.record.attempt_count = m
                .record
                .attempt_count
                .saturating_add(u32::try_from(attempts.len()).unwrap_or(u32::MAX));
            // As the adapter: the outcome never overwrites a state it does not outrank.
            let from = m.record.state;
            if from == state || from.is_before_send() || from.after_event(state) == state {
                m.record.state = state;
            }
            m.sending_until = None;
            Ok(completion.is_some_and(|c| {
                self.idempotency
                    .try_complete(&c.claim, &c.response, c.now, c.retention)
            }))
        });
        Box::pin(async move { result })
    }
}

/// The send queue in memory: what was enqueued, with its delay.
#[derive(Debug, Default)]
pub struct MemorySendQueue {
    entries: Mutex<Vec<(MessageId, Duration)>>,
    /// Failures to inject, by operation (`enqueue`, `enqueue_all`).
    pub faults: Faults,
}

impl MemorySendQueue {
    /// Every pointer enqueued so far, in order, with its delay.
    pub fn entries(&self) -> Vec<(MessageId, Duration)> {
        lock(&self.entries).clone()
    }
}

impl SendQueue for MemorySendQueue {
    fn enqueue<'a>(
        &'a self,
        id: &'a MessageId,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self
            .faults
            .take("enqueue")
            .map(|()| lock(&self.entries).push((id.clone(), delay)));
        Box::pin(async move { result })
    }

    fn enqueue_all<'a>(&'a self, ids: &'a [MessageId]) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.faults.take("enqueue_all").map(|()| {
            lock(&self.entries).extend(ids.iter().map(|id| (id.clone(), Duration::ZERO)));
        });
        Box::pin(async move { result })
    }
}

/// Suppressions in memory.
#[derive(Debug, Default)]
pub struct MemorySuppressions {
    pub(super) entries: Mutex<HashMap<(EmailAddress, Option<String>), Suppression>>,
    /// Failures to inject (`check`, `check_topic`; and `get`, `put`, `delete`, `list` of the
    /// administration port).
    pub faults: Faults,
}

impl MemorySuppressions {
    /// Suppresses `entry.address` (on `entry.topic`, when scoped).
    pub fn put(&self, entry: Suppression) {
        lock(&self.entries).insert((entry.address.clone(), entry.topic.clone()), entry);
    }

    fn active(
        &self,
        addresses: &[EmailAddress],
        topic: Option<&str>,
        now: OffsetDateTime,
    ) -> HashMap<EmailAddress, Suppression> {
        let entries = lock(&self.entries);
        addresses
            .iter()
            .filter_map(|a| {
                entries
                    .get(&(a.clone(), topic.map(str::to_owned)))
                    .filter(|s| s.is_active_at(now))
                    .map(|s| (a.clone(), s.clone()))
            })
            .collect()
    }

    /// The stored unscoped entry of `address` (lapsed or not), if any.
    pub fn entry(&self, address: &EmailAddress) -> Option<Suppression> {
        self.entry_in(address, None)
    }

    /// The stored entry of `address` scoped to `topic` (`None`: the unscoped one), if any.
    pub fn entry_in(&self, address: &EmailAddress, topic: Option<&str>) -> Option<Suppression> {
        lock(&self.entries)
            .get(&(address.clone(), topic.map(str::to_owned)))
            .cloned()
    }
}

impl SuppressionCheck for MemorySuppressions {
    fn check<'a>(
        &'a self,
        addresses: &'a [EmailAddress],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<HashMap<EmailAddress, Suppression>, StoreError>> {
        let result = self
            .faults
            .take("check")
            .map(|()| self.active(addresses, None, now));
        Box::pin(async move { result })
    }

    fn check_topic<'a>(
        &'a self,
        addresses: &'a [EmailAddress],
        topic: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<HashMap<EmailAddress, Suppression>, StoreError>> {
        let result = self
            .faults
            .take("check_topic")
            .map(|()| self.active(addresses, Some(topic), now));
        Box::pin(async move { result })
    }
}

/// The operator's switches in memory.
#[derive(Debug, Default)]
pub struct MemoryControls {
    /// Whether bulk mail is paused.
    pub bulk_paused: AtomicBool,
    /// Routes paused by a reputation guardrail: (provider, sending domain).
    pub guardrail_paused: Mutex<Vec<(ProviderId, String)>>,
    /// Failures to inject (`bulk_paused`, `bulk_paused_for`).
    pub faults: Faults,
}

impl SendControls for MemoryControls {
    fn bulk_paused(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        let result = self
            .faults
            .take("bulk_paused")
            .map(|()| self.bulk_paused.load(Ordering::SeqCst));
        Box::pin(async move { result })
    }

    fn bulk_paused_for<'a>(
        &'a self,
        sending_domain: &'a str,
        provider: Option<ProviderId>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let result = self.faults.take("bulk_paused_for").map(|()| {
            lock(&self.guardrail_paused).iter().any(|(p, d)| {
                d.eq_ignore_ascii_case(sending_domain) && provider.is_none_or(|want| want == *p)
            })
        });
        Box::pin(async move { result })
    }
}
