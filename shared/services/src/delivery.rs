//! `MessageDelivery`: one accepted message through the send service, with its outcome recorded.
//!
//! Both send paths use it: `send-api` right after recording a new message (synchronously, within
//! the request budget) and `send-worker` for a message id taken from the send queue. It runs
//! [`SendService::send`] (an explicit provider is honoured: never another), writes every provider
//! call as a send attempt with the resulting state (`record_outcome`), and for a deferred send puts the message back on the send queue, invisible
//! until the retry time (SQS delays at most 15 minutes; a longer wait is covered by the worker
//! deferring again).
//!
//! | send outcome | message state |
//! |---|---|
//! | a provider accepted | `sent` |
//! | ambiguous (timeout after the request left) | `unknown` |
//! | refused, nothing left to try | `failed` |
//! | deferred | `queued`, and on the send queue |
//!
//! Every provider call of one delivery is recorded in ONE write with the resulting state,
//! together with an optional key completion built from the outcome (the send API's
//! `Idempotency-Key` response), so a synchronous send makes one round trip after the provider
//! call.
//!
//! A message of a `test` API key never reaches a provider, whichever path it takes: it goes to
//! the event simulator ([`EventSimulator`]) instead of the send service, as one call with no
//! failover, breaker, rate limit or provider health, recorded like any attempt (provider
//! `simulator`); once the outcome is recorded, the simulator's provider-shaped events are
//! posted on the events queue with their delays ([`DelayedEventQueue`]). A failure to post them
//! is logged (`alert = "simulator_events_lost"`): the message keeps its recorded state, as when
//! a provider never sends its webhooks.
//!
//! A stored message (the send worker's path) is first taken with a lease: `queued` → `sending`
//! with `sending_until` = now + [`DEFAULT_SENDING_LEASE`], conditioned on `queued`, so of two
//! workers handed the same pointer at once only one calls a provider. The other finds the live
//! lease and acknowledges; one that finds an EXPIRED lease (its holder died, maybe after calling
//! the provider) marks the message `unknown` and acknowledges. Recording the outcome removes the
//! lease.

use std::sync::Arc;
use std::time::Duration;

use mailgate_core::ports::{
    DelayedEvent, DelayedEventQueue, EventSimulator, KeyCompletion, MessageStore, SendQueue,
    SendingClaim,
};
use mailgate_core::{
    Clock, KeyEnvironment, MessageId, MessageRecord, MessageState, OutboundEmail, ProviderId,
    SendAttempt, StoreError, SystemClock, UnixMillis,
};
use time::OffsetDateTime;

use crate::send::{ProviderCall, SendOutcome, SendReport, SendService};

/// How long a worker holds a message it is sending: twice the functions' timeout (30 s), so a
/// live worker never loses it and a dead one's lease has lapsed before SQS hands the pointer
/// out again (the send queue's visibility timeout is 180 s).
pub const DEFAULT_SENDING_LEASE: Duration = Duration::from_secs(60);

/// Builds the key completion written with the outcome from the delivery (the idempotency
/// response the delivery implies); `None` for none.
pub type CompleteKey<'a> = dyn Fn(&Delivery) -> Option<KeyCompletion> + Send + Sync + 'a;

/// What a delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message's state now.
    pub state: MessageState,
    /// The provider that accepted it, may have it, or was tried last.
    pub provider: Option<ProviderId>,
    /// That provider's id for the message, when it accepted it.
    pub provider_message_id: Option<String>,
    /// When the send queue hands it out again, if it was deferred.
    pub retry_at: Option<OffsetDateTime>,
    /// The service's full report.
    pub report: SendReport,
}

/// What delivering a stored message found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredDelivery {
    /// The message was queued and went through the send service.
    Delivered(Box<Delivery>),
    /// The message is no longer `queued` (sent, failed, cancelled, …): nothing was sent. This is
    /// the answer to a redelivered queue message.
    NotQueued(MessageState),
    /// The message was `sending` under a lease that had expired: its worker died, possibly
    /// after the provider call. It is now `unknown`; nothing was sent.
    Abandoned,
}

/// Why a delivery did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// No such message, or its content is missing.
    #[error("message {0} or its content does not exist")]
    NotFound(MessageId),
    /// The message store failed before any provider was called: nothing was sent.
    #[error("loading the message failed: {0}")]
    Load(#[source] StoreError),
    /// Recording the outcome failed after the service ran. `provider_called` says whether a
    /// provider may have the message (then the message must not be sent again blindly).
    #[error("recording the send outcome failed: {source}")]
    Record {
        /// Whether any provider was called.
        provider_called: bool,
        /// The store's error.
        #[source]
        source: StoreError,
        /// What the send did.
        delivery: Box<Delivery>,
    },
    /// A message of a `test` key, and no simulator wired: nothing was sent or recorded.
    #[error("message {0} was sent with a test key and no event simulator is configured")]
    NoSimulator(MessageId),
    /// The send was deferred and recorded `queued` (watched: the sweeper enqueues it when no
    /// worker takes it) but could not be put on the send queue.
    #[error("putting the deferred message on the send queue failed: {source}")]
    Enqueue {
        /// The queue's error.
        #[source]
        source: StoreError,
        /// What the send did.
        delivery: Box<Delivery>,
    },
}

/// Where messages of `test` keys go: the simulator and the events queue it posts to.
#[derive(Clone)]
pub struct Sandbox {
    /// Decides the send answer and the events.
    pub simulator: Arc<dyn EventSimulator>,
    /// Carries the events, delayed, to the event processor.
    pub events: Arc<dyn DelayedEventQueue>,
}

/// Sends accepted messages and records what happened.
pub struct MessageDelivery {
    messages: Arc<dyn MessageStore>,
    queue: Arc<dyn SendQueue>,
    service: Arc<SendService>,
    sandbox: Option<Sandbox>,
    clock: Arc<dyn Clock>,
    sending_lease: Duration,
}

impl std::fmt::Debug for MessageDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageDelivery")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl MessageDelivery {
    /// Delivery through `service`, recording in `messages` and deferring onto `queue`.
    pub fn new(
        messages: Arc<dyn MessageStore>,
        queue: Arc<dyn SendQueue>,
        service: Arc<SendService>,
    ) -> Self {
        Self {
            messages,
            queue,
            service,
            sandbox: None,
            clock: Arc::new(SystemClock),
            sending_lease: DEFAULT_SENDING_LEASE,
        }
    }

    /// The same delivery sending the messages of `test` keys to `sandbox`'s simulator (without
    /// one, such a message is refused with [`DeliveryError::NoSimulator`], never sent).
    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// The same delivery holding a stored message for `lease` while sending it.
    pub fn with_sending_lease(mut self, lease: Duration) -> Self {
        self.sending_lease = lease;
        self
    }

    /// The same delivery reading time from `clock` (for the deferral delay).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The message store.
    pub fn messages(&self) -> &Arc<dyn MessageStore> {
        &self.messages
    }

    /// The send queue.
    pub fn queue(&self) -> &Arc<dyn SendQueue> {
        &self.queue
    }

    /// The send service.
    pub fn service(&self) -> &SendService {
        &self.service
    }

    /// Delivers the stored message `id` if it is still `queued`: loads its record and content
    /// (one Query each), takes it with a lease (`queued` → `sending`, one conditional update),
    /// then [`deliver`](Self::deliver)s it through the provider it was restricted to, if any.
    /// A message another worker holds is `NotQueued(Sending)`; one whose lease expired is
    /// marked `unknown` (`Abandoned`).
    pub async fn deliver_stored(
        &self,
        id: &MessageId,
        budget: Duration,
    ) -> Result<StoredDelivery, DeliveryError> {
        let stored = self
            .messages
            .get(id)
            .await
            .map_err(DeliveryError::Load)?
            .ok_or_else(|| DeliveryError::NotFound(id.clone()))?;
        if !matches!(
            stored.record.state,
            MessageState::Queued | MessageState::Sending
        ) {
            return Ok(StoredDelivery::NotQueued(stored.record.state));
        }
        // The content is loaded before the lease is taken: nothing may fail between taking it
        // and calling the provider, or the message would wait for the lease to lapse and then
        // be taken for an abandoned send.
        let content = self
            .messages
            .load_content(id)
            .await
            .map_err(DeliveryError::Load)?
            .ok_or_else(|| DeliveryError::NotFound(id.clone()))?;
        let now = UnixMillis::from(self.clock.now());
        match self
            .messages
            .start_sending(id, now, now.saturating_add(self.sending_lease))
            .await
        {
            Ok(SendingClaim::Taken) => {}
            Ok(SendingClaim::Elsewhere(state)) => return Ok(StoredDelivery::NotQueued(state)),
            Ok(SendingClaim::Abandoned) => {
                tracing::warn!(message_id = %id, "an expired sending lease: the earlier worker may have sent it; marked unknown");
                return Ok(StoredDelivery::Abandoned);
            }
            Ok(SendingClaim::Missing) => return Err(DeliveryError::NotFound(id.clone())),
            Err(err) => return Err(DeliveryError::Load(err)),
        }
        let record = MessageRecord {
            state: MessageState::Sending,
            ..stored.record
        };
        let delivery = self
            .deliver(&record, &content, stored.requested_provider, budget)
            .await?;
        Ok(StoredDelivery::Delivered(Box::new(delivery)))
    }

    /// Sends `email` (whose record is `record`, already stored) through `requested` only, if
    /// given, otherwise through the configured order, within `budget`; records every attempt
    /// (numbered after the attempts already recorded) and the resulting state in one
    /// transaction, and puts a deferred message on the send queue.
    pub async fn deliver(
        &self,
        record: &MessageRecord,
        email: &OutboundEmail,
        requested: Option<ProviderId>,
        budget: Duration,
    ) -> Result<Delivery, DeliveryError> {
        self.deliver_linked(record, email, requested, budget, None)
            .await
    }

    /// [`deliver`](Self::deliver), writing the key completion `complete` builds from the
    /// delivery with the outcome (when the completion is refused, the outcome is still
    /// recorded, without it, and the refusal logged).
    pub async fn deliver_linked(
        &self,
        record: &MessageRecord,
        email: &OutboundEmail,
        requested: Option<ProviderId>,
        budget: Duration,
        complete: Option<&CompleteKey<'_>>,
    ) -> Result<Delivery, DeliveryError> {
        let (report, simulated) = if record.environment == KeyEnvironment::Test {
            let sandbox = self
                .sandbox
                .as_ref()
                .ok_or_else(|| DeliveryError::NoSimulator(record.id.clone()))?;
            let started_at = self.clock.now();
            let simulation = sandbox.simulator.simulate(email, started_at);
            let report =
                SendReport::of_one_call(ProviderId::Simulator, started_at, simulation.answer);
            (report, simulation.events)
        } else {
            (
                self.service.send(email, requested, budget).await,
                Vec::new(),
            )
        };
        let (state, retry_at) = match &report.outcome {
            SendOutcome::Sent { .. } => (MessageState::Sent, None),
            SendOutcome::Unknown { .. } => (MessageState::Unknown, None),
            SendOutcome::Failed { .. } => (MessageState::Failed, None),
            SendOutcome::Deferred { retry_at, .. } => (MessageState::Queued, Some(*retry_at)),
        };
        let (provider, provider_message_id) = match &report.outcome {
            SendOutcome::Sent {
                provider,
                provider_message_id,
            } => (Some(*provider), Some(provider_message_id.clone())),
            SendOutcome::Unknown { provider } => (Some(*provider), None),
            _ => (report.attempts.last().map(|a| a.provider), None),
        };
        let provider_called = !report.attempts.is_empty();
        let delivery = Delivery {
            state,
            provider,
            provider_message_id,
            retry_at,
            report,
        };
        let completion = complete.and_then(|build| build(&delivery));
        if let Err(source) = self.record(record, &delivery, completion.as_ref()).await {
            return Err(DeliveryError::Record {
                provider_called,
                source,
                delivery: Box::new(delivery),
            });
        }
        if let Some(retry_at) = retry_at {
            let wait = retry_at - self.clock.now();
            let delay = Duration::try_from(wait).unwrap_or(Duration::ZERO);
            if let Err(source) = self.queue.enqueue(&record.id, delay).await {
                return Err(DeliveryError::Enqueue {
                    source,
                    delivery: Box::new(delivery),
                });
            }
            tracing::info!(message_id = %record.id, delay_ms = delay.as_millis() as u64, "send deferred to the send queue");
        }
        self.post_simulated(&record.id, &simulated).await;
        Ok(delivery)
    }

    /// Posts the simulator's events, after the outcome they follow is recorded (so an event
    /// never finds the message still `sending`).
    async fn post_simulated(&self, id: &MessageId, events: &[DelayedEvent]) {
        let Some(sandbox) = self.sandbox.as_ref().filter(|_| !events.is_empty()) else {
            return;
        };
        match sandbox.events.post(events).await {
            Ok(()) => {
                tracing::info!(message_id = %id, events = events.len(), "simulator events posted")
            }
            Err(err) => tracing::error!(
                message_id = %id,
                error = %err,
                alert = "simulator_events_lost",
                "could not post the simulator's events; the message keeps its recorded state"
            ),
        }
    }

    /// Writes the attempts and the final state with `completion`, in one write; a send
    /// without any attempt writes the state only if it changes or there is a completion.
    async fn record(
        &self,
        record: &MessageRecord,
        delivery: &Delivery,
        linked: Option<&KeyCompletion>,
    ) -> Result<(), StoreError> {
        let attempts: Vec<SendAttempt> = delivery
            .report
            .attempts
            .iter()
            .enumerate()
            .map(|(i, attempt)| {
                let number = record
                    .attempt_count
                    .saturating_add(u32::try_from(i).unwrap_or(u32::MAX))
                    .saturating_add(1);
                stored_attempt(number, attempt)
            })
            .collect();
        if attempts.is_empty() && delivery.state == record.state && linked.is_none() {
            return Ok(());
        }
        let with_link = linked.is_some();
        let now = attempts
            .last()
            .map_or_else(|| UnixMillis::from(self.clock.now()), |a| a.at);
        let written = self
            .messages
            .record_outcome(record, &attempts, delivery.state, now, linked)
            .await?;
        if with_link && !written {
            // The idempotency claim lapsed and was taken by a retry: the outcome is recorded,
            // the response is not stored under the key.
            tracing::error!(message_id = %record.id, "the linked write was refused; the outcome was recorded without it");
        }
        Ok(())
    }
}

/// A provider call as the message record keeps it.
fn stored_attempt(number: u32, attempt: &ProviderCall) -> SendAttempt {
    SendAttempt {
        number,
        provider: attempt.provider,
        at: UnixMillis::from(attempt.started_at),
        outcome: attempt.outcome,
        provider_message_id: attempt.provider_message_id.clone(),
        error_category: attempt.category,
        error_code: attempt
            .provider_code
            .clone()
            .or_else(|| attempt.status.map(|s| s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use std::collections::HashMap;

    use mailgate_core::{
        ApiKeyId, EmailAddress, FailoverPolicy, FixedClock, KeyEnvironment, Mailbox, SendFailure,
        StoreErrorKind,
    };

    use super::*;
    use crate::testing::{
        FixedRandom, MemoryHealth, MemoryMessages, MemorySendQueue, RecordingSleeper,
        ScriptedProvider, Step, fails,
    };
    use mailgate_core::ports::Simulation;

    const T0: i64 = 1_790_000_000;

    struct Harness {
        delivery: MessageDelivery,
        messages: Arc<MemoryMessages>,
        queue: Arc<MemorySendQueue>,
        provider: Arc<ScriptedProvider>,
        clock: Arc<FixedClock>,
    }

    fn harness(script: Vec<Step>) -> Harness {
        let clock = Arc::new(FixedClock::at_unix(T0));
        let messages = Arc::new(MemoryMessages::default());
        let queue = Arc::new(MemorySendQueue::default());
        let provider = Arc::new(ScriptedProvider::new(
            ProviderId::Postmark,
            clock.clone(),
            script,
        ));
        let service = SendService::new(
            vec![provider.clone() as Arc<dyn mailgate_core::ports::EmailProvider>],
            "postmark".parse().unwrap(),
            FailoverPolicy::default(),
            Arc::new(MemoryHealth::new(HashMap::new(), 5)),
        )
        .unwrap()
        .with_clock(clock.clone())
        .with_sleeper(Arc::new(RecordingSleeper::new(clock.clone())))
        .with_random(Arc::new(FixedRandom(0.5)));
        let delivery = MessageDelivery::new(messages.clone(), queue.clone(), Arc::new(service))
            .with_clock(clock.clone());
        Harness {
            delivery,
            messages,
            queue,
            provider,
            clock,
        }
    }

    /// Stores a queued message; its id.
    async fn stored(h: &Harness, state: MessageState) -> MessageId {
        let mut email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(EmailAddress::parse("news@example.com").unwrap()),
            EmailAddress::parse("jane@example.org").unwrap(),
            "Hello",
        );
        email.text = Some("Hi".into());
        let record = MessageRecord::new(
            &email,
            ApiKeyId::generate(),
            KeyEnvironment::Live,
            state,
            UnixMillis::from(h.clock.now()),
            None,
            &[],
        );
        h.messages.create(&record, &email, None).await.unwrap();
        record.id
    }

    const BUDGET: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_queued_message_is_taken_sent_and_recorded() {
        let h = harness(vec![]);
        let id = stored(&h, MessageState::Queued).await;
        let StoredDelivery::Delivered(d) = h.delivery.deliver_stored(&id, BUDGET).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(d.state, MessageState::Sent);
        let m = h.messages.message(&id).unwrap();
        assert_eq!(m.record.state, MessageState::Sent);
        assert_eq!(m.attempts[0].number, 1);
        assert!(m.sending_until.is_none());
        // A redelivered pointer finds it sent: nothing is sent twice.
        assert_eq!(
            h.delivery.deliver_stored(&id, BUDGET).await.unwrap(),
            StoredDelivery::NotQueued(MessageState::Sent)
        );
        assert_eq!(h.provider.calls(), 1);
    }

    #[tokio::test]
    async fn a_live_lease_is_left_alone_and_an_expired_one_becomes_unknown() {
        let h = harness(vec![]);
        let id = stored(&h, MessageState::Queued).await;
        let now = UnixMillis::from(h.clock.now());
        h.messages
            .start_sending(&id, now, now.saturating_add(Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(
            h.delivery.deliver_stored(&id, BUDGET).await.unwrap(),
            StoredDelivery::NotQueued(MessageState::Sending)
        );
        h.clock.advance(time::Duration::seconds(61));
        assert_eq!(
            h.delivery.deliver_stored(&id, BUDGET).await.unwrap(),
            StoredDelivery::Abandoned
        );
        assert_eq!(
            h.messages.message(&id).unwrap().record.state,
            MessageState::Unknown
        );
        assert_eq!(h.provider.calls(), 0);
    }

    #[tokio::test]
    async fn a_missing_message_is_not_found_and_a_failing_load_sends_nothing() {
        let h = harness(vec![]);
        assert!(matches!(
            h.delivery
                .deliver_stored(&MessageId::generate(), BUDGET)
                .await,
            Err(DeliveryError::NotFound(_))
        ));
        for operation in ["get", "load_content", "start_sending"] {
            let id = stored(&h, MessageState::Queued).await;
            h.messages
                .faults
                .fail_next(operation, StoreErrorKind::Transient);
            assert!(
                matches!(
                    h.delivery.deliver_stored(&id, BUDGET).await,
                    Err(DeliveryError::Load(_))
                ),
                "{operation}"
            );
        }
        assert_eq!(h.provider.calls(), 0);
    }

    #[tokio::test]
    async fn an_outcome_that_cannot_be_recorded_says_a_provider_was_called() {
        let h = harness(vec![]);
        let id = stored(&h, MessageState::Queued).await;
        h.messages
            .faults
            .fail_next("record_outcome", StoreErrorKind::Transient);
        let Err(DeliveryError::Record {
            provider_called,
            delivery,
            ..
        }) = h.delivery.deliver_stored(&id, BUDGET).await
        else {
            panic!()
        };
        assert!(provider_called);
        assert_eq!(delivery.state, MessageState::Sent);
    }

    #[tokio::test]
    async fn a_deferred_send_goes_back_on_the_queue_with_its_delay_or_fails_to() {
        let h = harness(vec![fails(SendFailure::http(503)); 8]);
        let id = stored(&h, MessageState::Queued).await;
        let StoredDelivery::Delivered(d) = h.delivery.deliver_stored(&id, BUDGET).await.unwrap()
        else {
            panic!()
        };
        assert_eq!(d.state, MessageState::Queued);
        let entries = h.queue.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, id);

        let id = stored(&h, MessageState::Queued).await;
        h.queue
            .faults
            .fail_next("enqueue", StoreErrorKind::Transient);
        assert!(matches!(
            h.delivery.deliver_stored(&id, BUDGET).await,
            Err(DeliveryError::Enqueue { .. })
        ));
    }

    /// A simulator that answers `answer` and plans one event.
    struct OneEvent(Result<mailgate_core::ports::Accepted, SendFailure>);

    impl EventSimulator for OneEvent {
        fn simulate(&self, email: &OutboundEmail, _now: OffsetDateTime) -> Simulation {
            Simulation {
                answer: self.0.clone(),
                events: vec![DelayedEvent {
                    body: format!("event of {}", email.message_id),
                    delay: Duration::from_secs(5),
                }],
            }
        }
    }

    /// The events queue in memory, noting the message's state when each post happens.
    #[derive(Default)]
    struct Posted {
        messages: Option<Arc<MemoryMessages>>,
        posts: std::sync::Mutex<Vec<(Vec<DelayedEvent>, Vec<MessageState>)>>,
        fail: bool,
    }

    impl DelayedEventQueue for Posted {
        fn post<'a>(
            &'a self,
            events: &'a [DelayedEvent],
        ) -> mailgate_core::BoxFuture<'a, Result<(), StoreError>> {
            let states = self
                .messages
                .iter()
                .flat_map(|m| m.all())
                .map(|m| m.record.state)
                .collect();
            self.posts.lock().unwrap().push((events.to_vec(), states));
            let fail = self.fail;
            Box::pin(async move {
                if fail {
                    Err(StoreError::new(StoreErrorKind::Transient, "post", "down"))
                } else {
                    Ok(())
                }
            })
        }
    }

    async fn stored_test(h: &Harness) -> (MessageRecord, OutboundEmail) {
        let mut email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(EmailAddress::parse("news@example.com").unwrap()),
            EmailAddress::parse("bounced@simulator.mailgate.invalid").unwrap(),
            "Hello",
        );
        email.text = Some("Hi".into());
        let record = MessageRecord::new(
            &email,
            ApiKeyId::generate(),
            KeyEnvironment::Test,
            MessageState::Sending,
            UnixMillis::from(h.clock.now()),
            None,
            &[],
        );
        h.messages.create(&record, &email, None).await.unwrap();
        (record, email)
    }

    #[tokio::test]
    async fn a_test_key_message_goes_to_the_simulator_never_a_provider_and_its_events_follow_the_record()
     {
        let h = harness(vec![]);
        let posted = Arc::new(Posted {
            messages: Some(h.messages.clone()),
            ..Posted::default()
        });
        let accepted = mailgate_core::ports::Accepted {
            provider_message_id: "sim-1".into(),
        };
        let delivery = MessageDelivery::new(
            h.messages.clone(),
            h.queue.clone(),
            h.delivery.service.clone(),
        )
        .with_sandbox(Sandbox {
            simulator: Arc::new(OneEvent(Ok(accepted))),
            events: posted.clone(),
        });
        let (record, email) = stored_test(&h).await;
        let d = delivery
            .deliver(&record, &email, Some(ProviderId::Postmark), BUDGET)
            .await
            .unwrap();
        assert_eq!(d.state, MessageState::Sent);
        assert_eq!(d.provider, Some(ProviderId::Simulator));
        assert_eq!(d.provider_message_id.as_deref(), Some("sim-1"));
        assert!(d.report.failovers.is_empty() && d.report.breakers_opened.is_empty());
        // Not the provider, even when the request named one.
        assert_eq!(h.provider.calls(), 0);
        let m = h.messages.message(&record.id).unwrap();
        assert_eq!(m.attempts.len(), 1);
        assert_eq!(m.attempts[0].provider, ProviderId::Simulator);
        // Posted once, after the outcome was recorded.
        let posts = posted.posts.lock().unwrap();
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0].0.len(), 1);
        assert_eq!(posts[0].1, vec![MessageState::Sent]);
    }

    #[tokio::test]
    async fn a_simulated_refusal_fails_an_ambiguity_is_unknown_and_neither_posts_events() {
        for (failure, state) in [
            (
                SendFailure::http(400).with_provider_code("MessageRejected"),
                MessageState::Failed,
            ),
            (
                SendFailure::transport(mailgate_core::TransportFault::TimeoutAfterSend),
                MessageState::Unknown,
            ),
        ] {
            let h = harness(vec![]);
            let posted = Arc::new(Posted::default());
            let delivery = MessageDelivery::new(
                h.messages.clone(),
                h.queue.clone(),
                h.delivery.service.clone(),
            )
            .with_sandbox(Sandbox {
                simulator: Arc::new(NoEvents(Err(failure))),
                events: posted.clone(),
            });
            let (record, email) = stored_test(&h).await;
            let d = delivery
                .deliver(&record, &email, None, BUDGET)
                .await
                .unwrap();
            assert_eq!(d.state, state);
            assert_eq!(h.messages.message(&record.id).unwrap().record.state, state);
            assert!(posted.posts.lock().unwrap().is_empty());
            assert!(h.queue.entries().is_empty());
        }
    }

    /// A simulator that answers `answer` and plans no event.
    struct NoEvents(Result<mailgate_core::ports::Accepted, SendFailure>);

    impl EventSimulator for NoEvents {
        fn simulate(&self, _email: &OutboundEmail, _now: OffsetDateTime) -> Simulation {
            Simulation {
                answer: self.0.clone(),
                events: Vec::new(),
            }
        }
    }

    #[tokio::test]
    async fn a_test_key_message_without_a_simulator_is_refused_and_never_sent() {
        let h = harness(vec![]);
        let (record, email) = stored_test(&h).await;
        let err = h
            .delivery
            .deliver(&record, &email, None, BUDGET)
            .await
            .unwrap_err();
        assert!(matches!(err, DeliveryError::NoSimulator(id) if id == record.id));
        assert_eq!(h.provider.calls(), 0);
        assert_eq!(
            h.messages.message(&record.id).unwrap().record.state,
            MessageState::Sending
        );
    }

    #[tokio::test]
    async fn events_that_cannot_be_posted_leave_the_recorded_outcome() {
        let h = harness(vec![]);
        let posted = Arc::new(Posted {
            fail: true,
            ..Posted::default()
        });
        let delivery = MessageDelivery::new(
            h.messages.clone(),
            h.queue.clone(),
            h.delivery.service.clone(),
        )
        .with_sandbox(Sandbox {
            simulator: Arc::new(OneEvent(Ok(mailgate_core::ports::Accepted {
                provider_message_id: "sim-2".into(),
            }))),
            events: posted.clone(),
        });
        let (record, email) = stored_test(&h).await;
        let d = delivery
            .deliver(&record, &email, None, BUDGET)
            .await
            .unwrap();
        assert_eq!(d.state, MessageState::Sent);
        assert_eq!(posted.posts.lock().unwrap().len(), 1);
        assert_eq!(
            h.messages.message(&record.id).unwrap().record.state,
            MessageState::Sent
        );
    }
}
