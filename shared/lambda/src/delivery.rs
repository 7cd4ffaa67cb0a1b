//! `MessageDelivery`: one accepted message through the send service, with its outcome recorded.
//!
//! Both send paths use it: `send-api` right after recording a new message (synchronously, within
//! the request budget) and `send-worker` for a message id taken from the send queue. It runs
//! [`SendService::send`] (an explicit provider is honoured: never another), writes every provider
//! call as a send attempt (one `record_attempt` each, which also moves the message to the
//! resulting state), and for a deferred send puts the message back on the send queue, invisible
//! until the retry time (SQS delays at most 15 minutes; a longer wait is covered by the worker
//! deferring again).
//!
//! | send outcome | message state |
//! |---|---|
//! | a provider accepted | `sent` |
//! | ambiguous (timeout after the request left) | `unknown` |
//! | refused, nothing left to try | `failed` |
//! | deferred | `queued`, and on the send queue |

use std::sync::Arc;
use std::time::Duration;

use mailgate_aws::{DynamoDbMessages, MessageStoreError, SendQueueError, SqsSendQueue};
use mailgate_core::{
    Clock, MessageId, MessageRecord, MessageState, OutboundEmail, ProviderId, SystemClock,
    UnixMillis,
};
use time::OffsetDateTime;

use crate::send::{self, SendOutcome, SendReport, SendService};

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
}

/// Why a delivery did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// No such message, or its content is missing.
    #[error("message {0} or its content does not exist")]
    NotFound(MessageId),
    /// The messages table failed before any provider was called: nothing was sent.
    #[error("loading the message failed: {0}")]
    Load(#[source] MessageStoreError),
    /// Recording the outcome failed after the service ran. `provider_called` says whether a
    /// provider may have the message (then the message must not be sent again blindly).
    #[error("recording the send outcome failed: {source}")]
    Record {
        /// Whether any provider was called.
        provider_called: bool,
        /// The store's error.
        #[source]
        source: MessageStoreError,
        /// What the send did.
        delivery: Box<Delivery>,
    },
    /// The send was deferred but could not be put on the send queue.
    #[error("putting the deferred message on the send queue failed: {0}")]
    Enqueue(#[source] SendQueueError),
}

/// Sends accepted messages and records what happened.
pub struct MessageDelivery {
    messages: DynamoDbMessages,
    queue: SqsSendQueue,
    service: Arc<SendService>,
    clock: Arc<dyn Clock>,
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
    pub fn new(messages: DynamoDbMessages, queue: SqsSendQueue, service: Arc<SendService>) -> Self {
        Self {
            messages,
            queue,
            service,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same delivery reading time from `clock` (for the deferral delay).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The message store.
    pub fn messages(&self) -> &DynamoDbMessages {
        &self.messages
    }

    /// The send queue.
    pub fn queue(&self) -> &SqsSendQueue {
        &self.queue
    }

    /// Delivers the stored message `id` if it is still `queued`: loads its record and content
    /// (one Query each), then [`deliver`](Self::deliver)s it through the provider it was
    /// restricted to, if any.
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
        if stored.record.state != MessageState::Queued {
            return Ok(StoredDelivery::NotQueued(stored.record.state));
        }
        let content = self
            .messages
            .load_content(id)
            .await
            .map_err(DeliveryError::Load)?
            .ok_or_else(|| DeliveryError::NotFound(id.clone()))?;
        let delivery = self
            .deliver(&stored.record, &content, stored.requested_provider, budget)
            .await?;
        Ok(StoredDelivery::Delivered(Box::new(delivery)))
    }

    /// Sends `email` (whose record is `record`, already stored) through `requested` only, if
    /// given, otherwise through the configured order, within `budget`; records every attempt
    /// (one write each, numbered after the attempts already recorded) and the resulting state,
    /// and puts a deferred message on the send queue.
    pub async fn deliver(
        &self,
        record: &MessageRecord,
        email: &OutboundEmail,
        requested: Option<ProviderId>,
        budget: Duration,
    ) -> Result<Delivery, DeliveryError> {
        let report = self.service.send(email, requested, budget).await;
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
        if let Err(source) = self.record(record, &delivery).await {
            return Err(DeliveryError::Record {
                provider_called,
                source,
                delivery: Box::new(delivery),
            });
        }
        if let Some(retry_at) = retry_at {
            let wait = retry_at - self.clock.now();
            let delay = Duration::try_from(wait).unwrap_or(Duration::ZERO);
            self.queue
                .enqueue(&record.id, delay)
                .await
                .map_err(DeliveryError::Enqueue)?;
            tracing::info!(message_id = %record.id, delay_ms = delay.as_millis() as u64, "send deferred to the send queue");
        }
        Ok(delivery)
    }

    /// Writes the attempts, each moving the message to the final state; a send without any
    /// attempt that ends other than `queued` sets the state on its own.
    async fn record(
        &self,
        record: &MessageRecord,
        delivery: &Delivery,
    ) -> Result<(), MessageStoreError> {
        let attempts = &delivery.report.attempts;
        for (i, attempt) in attempts.iter().enumerate() {
            let number = record
                .attempt_count
                .saturating_add(u32::try_from(i).unwrap_or(u32::MAX))
                .saturating_add(1);
            self.messages
                .record_attempt(&record.id, &stored_attempt(number, attempt), delivery.state)
                .await?;
        }
        if attempts.is_empty() && delivery.state != record.state {
            self.messages
                .set_state(
                    &record.id,
                    delivery.state,
                    UnixMillis::from(self.clock.now()),
                )
                .await?;
        }
        Ok(())
    }
}

/// A service attempt as the message record keeps it.
fn stored_attempt(number: u32, attempt: &send::SendAttempt) -> mailgate_core::SendAttempt {
    mailgate_core::SendAttempt {
        number,
        provider: attempt.provider,
        at: UnixMillis::from(attempt.started_at),
        outcome: match attempt.outcome {
            send::AttemptOutcome::Accepted => mailgate_core::AttemptOutcome::Accepted,
            send::AttemptOutcome::Failed => mailgate_core::AttemptOutcome::Failed,
            send::AttemptOutcome::Unknown => mailgate_core::AttemptOutcome::Unknown,
        },
        provider_message_id: attempt.provider_message_id.clone(),
        error_category: attempt.category,
        error_code: attempt
            .provider_code
            .clone()
            .or_else(|| attempt.status.map(|s| s.to_string())),
    }
}
