//! Ports: the narrow traits the application services (`mailgate-services`) are written against.
//! Adapters in `mailgate-aws` and `mailgate-providers` implement them for the real stores,
//! queues and providers; in-memory fakes (`mailgate-services`, feature `testing`) implement them
//! for the services' unit tests. No AWS, HTTP or runtime type appears in any signature.
//!
//! Every store and queue failure is a [`StoreError`]: what kind of failure it is (the decision a
//! caller makes: retry, park, or report) and the adapter's own error as its source.

pub mod api;
pub mod domains;
pub mod events;
pub mod inbound;
pub mod search;
pub mod send;
pub mod stats;
pub mod sweep;
pub mod templates;
pub mod webhooks;

pub use api::{
    ApiKeys, Cancellation, MessageDesk, SuppressionAdmin, SuppressionListError, SuppressionPage,
};
pub use domains::{DnsLookup, IdentityStatus, IdentitySummary, MailFromError, SenderIdentities};
pub use events::{
    AppWebhookSender, DeadLetterQueue, DecodeError, EndpointDirectory, EventClaim, EventDecoder,
    EventForwarder, EventHistory, EventRecorded, MalformedOutboundMessage, MessageLookup,
    OUTBOUND_MESSAGE_VERSION, OutboundDelivery, OutboundQueue, OversizeEvent, QueuedEvents,
    ReceiptBody, ReceiptReader, SignedWebhook, SuppressionWrites, WebhookAnswer,
};

pub use inbound::{InboundDownloads, InboundObjects, InboundRecorded, InboundRecords};
pub use search::{FoundMessages, MessageSearch, SearchError};
pub use send::{
    AcceptGuards, Accepted, DelayedEvent, DelayedEventQueue, EmailProvider, EventSimulator,
    GuardedCreate, IdempotencyStore, KeyClaimRequest, KeyCompletion, KeyGuard, MessageStore,
    ProviderHealth, RandomSource, SendControls, SendQueue, SendingClaim, Simulation, Sleeper,
    StoredMessage, SuppressionCheck,
};
pub use stats::{DeliveryStats, ReputationGuard, RouteGuard};
pub use sweep::{HeldMessages, ReleaseSendQueue, StalledMessages};
pub use templates::{TemplatePage, TemplateRecord, TemplateStore, TemplateVersion};
pub use webhooks::{Enqueued, EventsQueue, ReceiptEvents, WebhookReceipts};

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed, sendable future: what every async port method returns, so ports stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What kind of failure a store or queue call met: the decision it implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// The table or queue does not exist (wrong name, stack not provisioned): an operator's
    /// problem; retrying does not help until it is fixed.
    MissingResource,
    /// A condition the write depended on did not hold (and the port has no more specific
    /// answer for it).
    ConditionFailed,
    /// The service throttled the call: retry later, slower.
    Throttled,
    /// A transient fault (5xx, timeout, connection reset, dispatch failure): retry.
    Transient,
    /// A stored item or message cannot be read back: retrying cannot fix it.
    Corrupt,
    /// Anything else the service refused (validation, access denied, limits): not retryable.
    Other,
}

impl StoreErrorKind {
    /// The kind's name, as logs and metrics show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingResource => "missing_resource",
            Self::ConditionFailed => "condition_failed",
            Self::Throttled => "throttled",
            Self::Transient => "transient",
            Self::Corrupt => "corrupt",
            Self::Other => "other",
        }
    }
}

/// A store or queue call that failed: its kind, the operation, and the adapter's error.
#[derive(Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
    operation: &'static str,
    source: Arc<dyn Error + Send + Sync>,
}

impl StoreError {
    /// A failure of `operation` of `kind`, keeping `source` (e.g. the SDK error).
    pub fn new(
        kind: StoreErrorKind,
        operation: &'static str,
        source: impl Into<Box<dyn Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            operation,
            source: Arc::from(source.into()),
        }
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The operation that failed (e.g. `TransactWriteItems`, `SendMessageBatch`).
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// Whether trying again later may succeed (throttled or transient).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            StoreErrorKind::Throttled | StoreErrorKind::Transient
        )
    }
}

impl fmt::Debug for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreError")
            .field("kind", &self.kind)
            .field("operation", &self.operation)
            .field("source", &self.source.to_string())
            .finish()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed ({}): {}",
            self.operation,
            self.kind.as_str(),
            self.source
        )
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_adapter_error_as_its_source_and_says_whether_to_retry() {
        let err = StoreError::new(StoreErrorKind::Throttled, "PutItem", "slow down");
        assert!(err.is_retryable());
        assert_eq!(
            err.source().map(|s| s.to_string()).as_deref(),
            Some("slow down")
        );
        assert_eq!(err.to_string(), "PutItem failed (throttled): slow down");
        let err = StoreError::new(StoreErrorKind::Corrupt, "GetItem", "bad item");
        assert!(!err.is_retryable());
    }
}
