//! The ports of the event flow: turning provider events into history, state, suppressions and
//! app-webhook deliveries (event processor), and delivering those app webhooks (dispatcher).

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{BoxFuture, StoreError};
use crate::{
    DeliveryEvent, EmailAddress, Endpoint, EndpointId, EndpointUrl, MessageId, MessageRecord,
    MessageState, ProviderId, Suppression, SuppressionReason, UnixMillis,
};

/// What claiming an event for processing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventClaim {
    /// First sight (or a dead invocation's expired claim): process it.
    New,
    /// Already processed: a duplicate.
    Done,
    /// Another invocation is processing it now: retry later.
    Busy,
}

/// What recording a claimed event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventRecorded {
    /// Appended to the message's history; the state moved from the first to the second value
    /// (equal when the event did not change it).
    Applied {
        /// The state before.
        before: MessageState,
        /// The state after.
        after: MessageState,
    },
    /// Stored as an orphan (no message of ours).
    Orphaned,
    /// The summary changed since it was read: read it again and retry.
    Conflict,
    /// Another invocation finished the event first.
    Duplicate,
}

/// The event history and its dedupe claims.
pub trait EventHistory: Send + Sync {
    /// Claims `event` for processing (write 1 of 2): succeeds when the event was never seen or
    /// its earlier claim's lease expired.
    fn claim<'a>(
        &'a self,
        event: &'a DeliveryEvent,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<EventClaim, StoreError>>;

    /// Records a claimed event (write 2 of 2, one write): its history entry, the state it moves
    /// `message` to (when it is ours), and the claim done.
    fn record<'a>(
        &'a self,
        event: &'a DeliveryEvent,
        message: Option<&'a MessageRecord>,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<EventRecorded, StoreError>>;
}

/// Messages, as correlation reads them.
pub trait MessageLookup: Send + Sync {
    /// The message's summary; `None` when there is no such message.
    fn summary<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<MessageRecord>, StoreError>>;

    /// Our message the provider knows as `provider_message_id`, if any.
    fn find_by_provider_message_id<'a>(
        &'a self,
        provider: ProviderId,
        provider_message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<MessageId>, StoreError>>;
}

/// The suppression list, as event effects write it.
pub trait SuppressionWrites: Send + Sync {
    /// Stores `entry` unless an active suppression of the address exists; whether it was stored.
    fn put_unless_active<'a>(
        &'a self,
        entry: &'a Suppression,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Deletes the event-written entry of `address` scoped to `topic` if its reason is `reason`;
    /// whether one was deleted. An entry the API wrote (the app's or an operator's decision)
    /// stays.
    fn lift<'a>(
        &'a self,
        address: &'a EmailAddress,
        reason: SuppressionReason,
        topic: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Counts a soft bounce of `address` once per distinct event (`event_digest`) at `at`; the
    /// times of its soft bounces within `window_ms` before `now`.
    fn count_soft_bounce<'a>(
        &'a self,
        address: &'a EmailAddress,
        event_digest: &'a str,
        at: UnixMillis,
        window_ms: i64,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Vec<UnixMillis>, StoreError>>;
}

/// The team's webhook endpoints.
pub trait EndpointDirectory: Send + Sync {
    /// Every enabled endpoint, without the secrets expired at `now`.
    fn list_enabled(&self, now: UnixMillis) -> BoxFuture<'_, Result<Vec<Endpoint>, StoreError>>;

    /// The endpoint with id `id` (a consistent read), without expired secrets.
    fn get<'a>(
        &'a self,
        id: &'a EndpointId,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Option<Endpoint>, StoreError>>;

    /// Turns the endpoint off, recording why and when.
    fn disable<'a>(
        &'a self,
        id: &'a EndpointId,
        reason: &'a str,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// The version of the outbound-queue message format.
pub const OUTBOUND_MESSAGE_VERSION: u8 = 1;

/// One delivery of an app webhook to one endpoint: an outbound-queue message, exactly
/// `{"v":1,"endpoint_id":"ep_…","webhook_id":"msg_…","body":"<the JSON body as a string>"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundDelivery {
    /// The endpoint to deliver to.
    pub endpoint_id: EndpointId,
    /// The `webhook-id` header: stable across retries.
    pub webhook_id: String,
    /// The exact body to sign and send.
    pub body: String,
}

/// The wire form, with its version first.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutboundWire {
    v: u8,
    endpoint_id: EndpointId,
    webhook_id: String,
    body: String,
}

/// A body that is not an outbound-queue message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not an outbound-queue message: {0}")]
pub struct MalformedOutboundMessage(pub String);

impl OutboundDelivery {
    /// The queue message body.
    pub fn to_body(&self) -> String {
        let wire = OutboundWire {
            v: OUTBOUND_MESSAGE_VERSION,
            endpoint_id: self.endpoint_id.clone(),
            webhook_id: self.webhook_id.clone(),
            body: self.body.clone(),
        };
        // A struct of strings always serialises.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Reads a queue message body; any other version or shape is malformed.
    pub fn parse(body: &str) -> Result<Self, MalformedOutboundMessage> {
        let wire: OutboundWire =
            serde_json::from_str(body).map_err(|e| MalformedOutboundMessage(e.to_string()))?;
        if wire.v != OUTBOUND_MESSAGE_VERSION {
            return Err(MalformedOutboundMessage(format!(
                "unsupported version {}",
                wire.v
            )));
        }
        if wire.webhook_id.is_empty() || wire.webhook_id.contains('.') {
            return Err(MalformedOutboundMessage(
                "webhook_id must be non-empty and contain no '.'".to_owned(),
            ));
        }
        Ok(Self {
            endpoint_id: wire.endpoint_id,
            webhook_id: wire.webhook_id,
            body: wire.body,
        })
    }
}

/// The outbound queue: app-webhook deliveries for the dispatcher.
pub trait OutboundQueue: Send + Sync {
    /// Puts every one of `deliveries` on the queue; fails unless every one is on it.
    fn enqueue<'a>(
        &'a self,
        deliveries: &'a [OutboundDelivery],
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Hides a received message (by its receipt handle) for `delay` from now, so the queue
    /// redelivers it then.
    fn retry_after<'a>(
        &'a self,
        receipt_handle: &'a str,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A stored webhook delivery, as the event processor reads an oversize event back from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptBody {
    /// Whose webhook it is.
    pub provider: ProviderId,
    /// The raw body.
    pub body: Vec<u8>,
    /// The request's `Content-Type`.
    pub content_type: Option<String>,
}

/// The stored webhook receipts.
pub trait ReceiptReader: Send + Sync {
    /// The receipt `key`; `None` when there is none.
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ReceiptBody>, StoreError>>;
}

/// Where the event of an events-queue message too large to carry it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizeEvent {
    /// Whose event it is.
    pub provider: ProviderId,
    /// The receipt key.
    pub receipt: String,
    /// Its position in the receipt's delivery.
    pub index: usize,
    /// When the delivery was received.
    pub received_at: UnixMillis,
}

/// What an events-queue message holds.
#[derive(Debug, Clone, PartialEq)]
pub enum QueuedEvents {
    /// Its events, normalised.
    Events(Vec<DeliveryEvent>),
    /// An event to read from its stored receipt.
    Oversize(OversizeEvent),
}

/// Why an events-queue message or an event in it cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message is not one of ours (or a version this build does not read): retrying
    /// cannot fix it.
    #[error("unreadable queue message: {0}")]
    Envelope(String),
    /// The provider's event is not the documented shape.
    #[error("the {provider} event cannot be read: {detail}")]
    Normalise {
        /// Whose event.
        provider: String,
        /// Why.
        detail: String,
    },
    /// The stored receipt does not hold the event.
    #[error("{0}")]
    Receipt(String),
}

/// Reading events-queue messages and provider events (the providers' knowledge, pure).
pub trait EventDecoder: Send + Sync {
    /// Reads one events-queue message received at `now`.
    fn decode(&self, body: &str, now: UnixMillis) -> Result<QueuedEvents, DecodeError>;

    /// The oversize event `event`, read from its stored receipt and normalised.
    fn decode_stored(
        &self,
        receipt: &ReceiptBody,
        event: &OversizeEvent,
    ) -> Result<Vec<DeliveryEvent>, DecodeError>;
}

/// The events queue, as the event processor forwards an EventBridge event onto it.
pub trait EventForwarder: Send + Sync {
    /// Puts `body` on the queue; the queue's id for the message.
    fn forward<'a>(&'a self, body: &'a str) -> BoxFuture<'a, Result<String, StoreError>>;
}

/// A queue's dead-letter queue, where a record that can never succeed is parked at once.
pub trait DeadLetterQueue: Send + Sync {
    /// Puts `body` on the dead-letter queue with `reason` attached.
    fn park<'a>(&'a self, body: &'a str, reason: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A signed app-webhook request, ready to POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedWebhook {
    /// Where to POST it.
    pub url: EndpointUrl,
    /// The `webhook-id` header.
    pub webhook_id: String,
    /// The `webhook-timestamp` header (Unix seconds).
    pub timestamp: i64,
    /// The `webhook-signature` header.
    pub signature: String,
    /// The JSON body.
    pub body: String,
}

/// What one POST's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAnswer {
    /// 2xx: delivered.
    Delivered,
    /// 410: the app says the endpoint is gone for good.
    Gone,
    /// 429 or 503 with a `Retry-After`: come back after this long.
    RetryAfter(Duration),
    /// Anything else: retry with backoff. The reason names the status or transport failure.
    Failed(String),
}

/// POSTs signed app webhooks to the team's endpoints.
pub trait AppWebhookSender: Send + Sync {
    /// POSTs `request` once (no redirects followed) and reads the answer at `now`.
    fn post<'a>(
        &'a self,
        request: &'a SignedWebhook,
        now: SystemTime,
    ) -> BoxFuture<'a, WebhookAnswer>;
}
