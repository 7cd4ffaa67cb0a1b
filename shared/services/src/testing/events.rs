//! Fakes of the event flow's ports: history with dedupe claims, message lookup, the
//! suppression list, endpoints, the outbound and events queues, receipts, a scripted decoder,
//! a scripted app-webhook sender and a dead-letter queue. Failures are injected per operation
//! through [`Faults`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use mailgate_core::ports::{
    AppWebhookSender, BoxFuture, DeadLetterQueue, DecodeError, EndpointDirectory, EventClaim,
    EventDecoder, EventForwarder, EventHistory, EventRecorded, MessageLookup, OutboundDelivery,
    OutboundQueue, OversizeEvent, QueuedEvents, ReceiptBody, ReceiptReader, SignedWebhook,
    SuppressionWrites, WebhookAnswer,
};
use mailgate_core::{
    DeliveryEvent, EmailAddress, Endpoint, EndpointId, MessageId, MessageRecord, ProviderId,
    StoreError, Suppression, SuppressionOrigin, SuppressionReason, UnixMillis,
};
use time::OffsetDateTime;

use super::Faults;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn claim_key(event: &DeliveryEvent) -> String {
    format!("{}#{}", event.provider, event.key)
}

/// Where a claimed event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimState {
    /// Claimed, not yet recorded.
    Processing,
    /// Recorded.
    Done,
}

/// The event history in memory: claims by event, and what each recorded event did.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    claims: Mutex<HashMap<String, ClaimState>>,
    /// Every recorded event: its key and the message it was applied to (`None`: an orphan).
    pub recorded: Mutex<Vec<(String, Option<MessageId>)>>,
    /// How many `record` calls answer `Conflict` before one goes through.
    pub conflicts: AtomicU32,
    /// Makes `record` find the event finished by another invocation.
    pub finished_elsewhere: AtomicBool,
    /// Failures to inject (`claim`, `record`).
    pub faults: Faults,
}

impl MemoryHistory {
    /// Sets the claim of `event` as another invocation left it.
    pub fn set_claim(&self, event: &DeliveryEvent, state: ClaimState) {
        lock(&self.claims).insert(claim_key(event), state);
    }

    /// Forgets the claim of `event`, as when its lease lapsed and DynamoDB let it be taken.
    pub fn claims_forget(&self, event: &DeliveryEvent) {
        lock(&self.claims).remove(&claim_key(event));
    }

    /// The claim of `event`, if any.
    pub fn claim_of(&self, event: &DeliveryEvent) -> Option<ClaimState> {
        lock(&self.claims).get(&claim_key(event)).copied()
    }
}

impl EventHistory for MemoryHistory {
    fn claim<'a>(
        &'a self,
        event: &'a DeliveryEvent,
        _now: UnixMillis,
    ) -> BoxFuture<'a, Result<EventClaim, StoreError>> {
        let result = self.faults.take("claim").map(|()| {
            let mut claims = lock(&self.claims);
            match claims.get(&claim_key(event)) {
                Some(ClaimState::Done) => EventClaim::Done,
                Some(ClaimState::Processing) => EventClaim::Busy,
                None => {
                    claims.insert(claim_key(event), ClaimState::Processing);
                    EventClaim::New
                }
            }
        });
        Box::pin(async move { result })
    }

    fn record<'a>(
        &'a self,
        event: &'a DeliveryEvent,
        message: Option<&'a MessageRecord>,
        _now: UnixMillis,
    ) -> BoxFuture<'a, Result<EventRecorded, StoreError>> {
        let result = self.faults.take("record").map(|()| {
            if self
                .conflicts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return EventRecorded::Conflict;
            }
            let mut claims = lock(&self.claims);
            if self.finished_elsewhere.load(Ordering::SeqCst)
                || claims.get(&claim_key(event)) == Some(&ClaimState::Done)
            {
                return EventRecorded::Duplicate;
            }
            claims.insert(claim_key(event), ClaimState::Done);
            lock(&self.recorded).push((claim_key(event), message.map(|m| m.id.clone())));
            match message {
                Some(m) => {
                    let after = event.kind.message_state().map_or(m.state, |incoming| {
                        m.state_after_event(event.recipient.as_ref(), incoming)
                    });
                    EventRecorded::Applied {
                        before: m.state,
                        after,
                    }
                }
                None => EventRecorded::Orphaned,
            }
        });
        Box::pin(async move { result })
    }
}

/// Message summaries in memory, findable by the provider's id.
#[derive(Debug, Default)]
pub struct MemoryMessageLookup {
    /// The summaries by id.
    pub records: Mutex<HashMap<MessageId, MessageRecord>>,
    /// Our ids by (provider, provider's id).
    pub by_provider_id: Mutex<HashMap<(ProviderId, String), MessageId>>,
    /// Failures to inject (`summary`, `find_by_provider_message_id`).
    pub faults: Faults,
}

impl MemoryMessageLookup {
    /// Stores `record`, known to `provider` as `provider_message_id`.
    pub fn insert(&self, record: MessageRecord, provider: ProviderId, provider_message_id: &str) {
        lock(&self.by_provider_id).insert(
            (provider, provider_message_id.to_owned()),
            record.id.clone(),
        );
        lock(&self.records).insert(record.id.clone(), record);
    }
}

impl MessageLookup for MemoryMessageLookup {
    fn summary<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<MessageRecord>, StoreError>> {
        let result = self
            .faults
            .take("summary")
            .map(|()| lock(&self.records).get(id).cloned());
        Box::pin(async move { result })
    }

    fn find_by_provider_message_id<'a>(
        &'a self,
        provider: ProviderId,
        provider_message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<MessageId>, StoreError>> {
        let result = self.faults.take("find_by_provider_message_id").map(|()| {
            lock(&self.by_provider_id)
                .get(&(provider, provider_message_id.to_owned()))
                .cloned()
        });
        Box::pin(async move { result })
    }
}

/// The suppression list in memory: entries by address, soft bounces by address and event.
#[derive(Debug, Default)]
pub struct MemorySuppressionWrites {
    /// The stored unscoped suppressions.
    pub entries: Mutex<HashMap<EmailAddress, Suppression>>,
    /// The stored topic-scoped suppressions, by address and topic.
    pub topic_entries: Mutex<HashMap<(EmailAddress, String), Suppression>>,
    /// The counted soft bounces: (address, event digest, time).
    pub soft_bounces: Mutex<BTreeSet<(String, String, i64)>>,
    /// Failures to inject (`put_unless_active`, `count_soft_bounce`).
    pub faults: Faults,
}

impl SuppressionWrites for MemorySuppressionWrites {
    fn put_unless_active<'a>(
        &'a self,
        entry: &'a Suppression,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        if let Some(topic) = &entry.topic {
            let result = self.faults.take("put_unless_active").map(|()| {
                let mut entries = lock(&self.topic_entries);
                let key = (entry.address.clone(), topic.clone());
                match entries.get(&key) {
                    Some(existing) if existing.is_active_at(now) => false,
                    _ => {
                        let mut entry = entry.clone();
                        entry.origin = SuppressionOrigin::Event;
                        entries.insert(key, entry);
                        true
                    }
                }
            });
            return Box::pin(async move { result });
        }
        let result = self.faults.take("put_unless_active").map(|()| {
            let mut entries = lock(&self.entries);
            match entries.get(&entry.address) {
                Some(existing) if existing.is_active_at(now) => false,
                _ => {
                    // As the store does: entries written here are event-written.
                    let mut entry = entry.clone();
                    entry.origin = SuppressionOrigin::Event;
                    entries.insert(entry.address.clone(), entry);
                    true
                }
            }
        });
        Box::pin(async move { result })
    }

    fn lift<'a>(
        &'a self,
        address: &'a EmailAddress,
        reason: SuppressionReason,
        topic: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let lifts = |e: &Suppression| e.reason == reason && e.origin == SuppressionOrigin::Event;
        let result = self.faults.take("lift").map(|()| match topic {
            None => {
                let mut entries = lock(&self.entries);
                let matches = entries.get(address).is_some_and(lifts);
                if matches {
                    entries.remove(address);
                }
                matches
            }
            Some(topic) => {
                let mut entries = lock(&self.topic_entries);
                let key = (address.clone(), topic.to_owned());
                let matches = entries.get(&key).is_some_and(lifts);
                if matches {
                    entries.remove(&key);
                }
                matches
            }
        });
        Box::pin(async move { result })
    }

    fn count_soft_bounce<'a>(
        &'a self,
        address: &'a EmailAddress,
        event_digest: &'a str,
        at: UnixMillis,
        window_ms: i64,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Vec<UnixMillis>, StoreError>> {
        let result = self.faults.take("count_soft_bounce").map(|()| {
            let mut bounces = lock(&self.soft_bounces);
            let address = address.as_str().to_owned();
            if !bounces
                .iter()
                .any(|(a, d, _)| *a == address && d == event_digest)
            {
                bounces.insert((address.clone(), event_digest.to_owned(), at.as_i64()));
            }
            bounces
                .iter()
                .filter(|(a, _, t)| *a == address && *t > now.as_i64() - window_ms)
                .map(|(_, _, t)| UnixMillis(*t))
                .collect()
        });
        Box::pin(async move { result })
    }
}

/// Endpoints in memory; counts its `list_enabled` reads (the fan-out caches them).
#[derive(Debug, Default)]
pub struct MemoryEndpoints {
    /// The endpoints, in creation order.
    pub endpoints: Mutex<Vec<Endpoint>>,
    /// How many times the enabled endpoints were listed.
    pub lists: AtomicU32,
    /// Failures to inject (`list_enabled`, `get`, `disable`).
    pub faults: Faults,
}

impl MemoryEndpoints {
    /// The endpoint `id` as stored.
    pub fn endpoint(&self, id: &EndpointId) -> Option<Endpoint> {
        lock(&self.endpoints).iter().find(|e| e.id == *id).cloned()
    }
}

impl EndpointDirectory for MemoryEndpoints {
    fn list_enabled(&self, _now: UnixMillis) -> BoxFuture<'_, Result<Vec<Endpoint>, StoreError>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        let result = self.faults.take("list_enabled").map(|()| {
            lock(&self.endpoints)
                .iter()
                .filter(|e| e.enabled)
                .cloned()
                .collect()
        });
        Box::pin(async move { result })
    }

    fn get<'a>(
        &'a self,
        id: &'a EndpointId,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Option<Endpoint>, StoreError>> {
        let result = self
            .faults
            .take("get")
            .map(|()| self.endpoint(id).map(|e| e.without_expired_secrets(now)));
        Box::pin(async move { result })
    }

    fn disable<'a>(
        &'a self,
        id: &'a EndpointId,
        reason: &'a str,
        _now: UnixMillis,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.faults.take("disable").map(|()| {
            if let Some(e) = lock(&self.endpoints).iter_mut().find(|e| e.id == *id) {
                e.enabled = false;
                e.disabled_reason = Some(reason.to_owned());
            }
        });
        Box::pin(async move { result })
    }
}

/// The outbound queue in memory: what was enqueued, and the retry delays set.
#[derive(Debug, Default)]
pub struct MemoryOutbound {
    /// Every delivery enqueued, in order.
    pub deliveries: Mutex<Vec<OutboundDelivery>>,
    /// Every retry delay set: (receipt handle, delay).
    pub retries: Mutex<Vec<(String, Duration)>>,
    /// Failures to inject (`enqueue`, `retry_after`).
    pub faults: Faults,
}

impl OutboundQueue for MemoryOutbound {
    fn enqueue<'a>(
        &'a self,
        deliveries: &'a [OutboundDelivery],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self
            .faults
            .take("enqueue")
            .map(|()| lock(&self.deliveries).extend_from_slice(deliveries));
        Box::pin(async move { result })
    }

    fn retry_after<'a>(
        &'a self,
        receipt_handle: &'a str,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self
            .faults
            .take("retry_after")
            .map(|()| lock(&self.retries).push((receipt_handle.to_owned(), delay)));
        Box::pin(async move { result })
    }
}

/// Stored receipts in memory.
#[derive(Debug, Default)]
pub struct MemoryReceiptReader {
    /// The receipts by key.
    pub receipts: Mutex<HashMap<String, ReceiptBody>>,
    /// Failures to inject (`load`).
    pub faults: Faults,
}

impl ReceiptReader for MemoryReceiptReader {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ReceiptBody>, StoreError>> {
        let result = self
            .faults
            .take("load")
            .map(|()| lock(&self.receipts).get(key).cloned());
        Box::pin(async move { result })
    }
}

/// A decoder that answers from a script: what each queue message body holds, and the events
/// of each stored receipt (by receipt key and index).
#[derive(Debug, Default)]
pub struct ScriptedDecoder {
    /// What each body decodes to; an unknown body is a malformed envelope.
    pub messages: Mutex<HashMap<String, Result<QueuedEvents, DecodeError>>>,
    /// The normalised events of each (receipt, index).
    pub stored: Mutex<HashMap<(String, usize), Vec<DeliveryEvent>>>,
}

impl ScriptedDecoder {
    /// Makes `body` decode to `events`.
    pub fn script(&self, body: &str, events: Result<QueuedEvents, DecodeError>) {
        lock(&self.messages).insert(body.to_owned(), events);
    }
}

impl EventDecoder for ScriptedDecoder {
    fn decode(&self, body: &str, _now: UnixMillis) -> Result<QueuedEvents, DecodeError> {
        lock(&self.messages)
            .get(body)
            .cloned()
            .unwrap_or_else(|| Err(DecodeError::Envelope("not an events-queue message".into())))
    }

    fn decode_stored(
        &self,
        _receipt: &ReceiptBody,
        event: &OversizeEvent,
    ) -> Result<Vec<DeliveryEvent>, DecodeError> {
        lock(&self.stored)
            .get(&(event.receipt.clone(), event.index))
            .cloned()
            .ok_or_else(|| DecodeError::Receipt(format!("it holds no event {}", event.index)))
    }
}

/// The events queue in memory.
#[derive(Debug, Default)]
pub struct MemoryEventForwarder {
    /// Every body forwarded, in order.
    pub forwarded: Mutex<Vec<String>>,
    /// Failures to inject (`forward`).
    pub faults: Faults,
}

impl EventForwarder for MemoryEventForwarder {
    fn forward<'a>(&'a self, body: &'a str) -> BoxFuture<'a, Result<String, StoreError>> {
        let result = self.faults.take("forward").map(|()| {
            let mut forwarded = lock(&self.forwarded);
            forwarded.push(body.to_owned());
            format!("sqs-{}", forwarded.len())
        });
        Box::pin(async move { result })
    }
}

/// A dead-letter queue in memory.
#[derive(Debug, Default)]
pub struct MemoryDeadLetters {
    /// Every parked record: (body, reason).
    pub parked: Mutex<Vec<(String, String)>>,
    /// Failures to inject (`park`).
    pub faults: Faults,
}

impl DeadLetterQueue for MemoryDeadLetters {
    fn park<'a>(&'a self, body: &'a str, reason: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self
            .faults
            .take("park")
            .map(|()| lock(&self.parked).push((body.to_owned(), reason.to_owned())));
        Box::pin(async move { result })
    }
}

/// An app-webhook sender that answers from a script (then `Delivered`) and keeps every request.
#[derive(Debug, Default)]
pub struct ScriptedSender {
    /// The answers to give, in order.
    pub answers: Mutex<VecDeque<WebhookAnswer>>,
    /// Every request POSTed, with its time.
    pub requests: Mutex<Vec<(SignedWebhook, SystemTime)>>,
}

impl ScriptedSender {
    /// A sender giving `answers` in order.
    pub fn answering(answers: impl IntoIterator<Item = WebhookAnswer>) -> Self {
        Self {
            answers: Mutex::new(answers.into_iter().collect()),
            requests: Mutex::default(),
        }
    }
}

impl AppWebhookSender for ScriptedSender {
    fn post<'a>(
        &'a self,
        request: &'a SignedWebhook,
        now: SystemTime,
    ) -> BoxFuture<'a, WebhookAnswer> {
        lock(&self.requests).push((request.clone(), now));
        let answer = lock(&self.answers)
            .pop_front()
            .unwrap_or(WebhookAnswer::Delivered);
        Box::pin(async move { answer })
    }
}
