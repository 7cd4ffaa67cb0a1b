//! The pure domain of mailgate: validated and canonical email addresses, prefixed ids, provider
//! identities and the clock; the send path's rules (request validation, error classification,
//! circuit breaker, token bucket, failover, backoff, idempotency keys); API keys and scopes;
//! messages and state precedence; suppressions; delivery events, bounce classification and their
//! effects; Standard Webhooks; the events-queue envelope; and the ports ([`ports`]) the
//! application services are written against. No AWS SDK, no Lambda runtime, no HTTP client and
//! no async runtime live here, so every rule in this crate is unit-testable in microseconds (CI
//! checks this with `cargo tree`).

pub mod address;
pub mod clock;
pub mod id;
pub mod provider;
pub mod queue;
pub mod receipt;

pub use address::{AddressError, EmailAddress};
pub use clock::{Clock, FixedClock, SystemClock};
pub use id::{EndpointId, EventId, IdError, InboundId, MessageId, TemplateId};
pub use provider::{ProviderId, UnknownProvider};
pub use queue::{QueuedEvent, queue_messages, sqs_safe};
pub use receipt::{
    DeliveryKind, ExistingReceipt, NewReceipt, ReceiptStatus, RecordError, Recorded, ReplayGuard,
    StoredReceipt, UnknownReceiptStatus, receipt_key,
};

// The pure pieces of the send path: error classification, breaker, rate limit, failover,
// backoff and idempotency.
pub mod backoff;
pub mod breaker;
pub mod failover;
pub mod idempotency;
pub mod rate_limit;
pub mod send_error;
pub mod unix_time;

pub use backoff::Backoff;
pub use breaker::{Admission, BreakerConfig, BreakerState, CircuitStatus};
pub use failover::{
    Availability, FailedAttempt, FailoverPolicy, NextStep, ProviderOrder, ProviderOrderError,
    Selection, SkipReason, Skipped,
};
pub use idempotency::{
    Claim, ClaimOutcome, IdempotencyDecision, IdempotencyKey, IdempotencyKeyError,
    IdempotencyRecord, IdempotencyState, MalformedFingerprint, RequestFingerprint, StoredResponse,
};
pub use rate_limit::{RateLimit, RateLimitError, TakeDenied, TokenBucket};
pub use send_error::{
    CategoryPolicy, Classification, ErrorCategory, OutcomeClass, SendFailure, Severity,
    TransportFault, UnknownErrorCategory,
};
pub use unix_time::UnixMillis;

// The provider-neutral message a provider sends.
pub mod outbound;

pub use outbound::{
    Attachment, CORRELATION_ID_METADATA_KEY, MESSAGE_ID_HEADER, MESSAGE_ID_METADATA_KEY, Mailbox,
    MessageCategory, OutboundEmail,
};

// API keys: scopes, ids, the secret format, the stored hash and the authorization decision.
pub mod api_key;

pub use api_key::{
    ApiKeyId, ApiKeyLabel, ApiKeyRecord, ApiKeySecret, AuthFailure, AuthenticatedKey,
    InvalidApiKeyId, InvalidKeyHash, InvalidLabel, KeyEnvironment, KeyHash, MalformedKey,
    Requirement, Scope, Scopes, ScopesError, UnknownKeyEnvironment, UnknownScope,
};

// The suppression list: reasons, entries and the "active at now" rule.
pub mod suppression;

pub use suppression::{
    Suppression, SuppressionError, SuppressionOrigin, SuppressionReason, UnknownSuppressionReason,
    normalise_address, suppression_key,
};

// The send API's request bodies and their validation into an `OutboundEmail`.
pub mod send_request;

pub use send_request::{
    BatchSendRequest, FieldError, SendLimits, SendRequest, SendValidation, ValidatedSend,
};

// Test keys: the simulator's domain, reserved for them.
pub mod sandbox;

// One-click unsubscribe (RFC 8058): signed tokens, the headers that carry them, topics.
pub mod unsubscribe;

pub use unsubscribe::{ReplyAddresses, UnsubscribeKeys, UnsubscribeLinks, UnsubscribeToken};

// The message record: states, recipient statuses, send attempts and their precedence rules.
pub mod message;

pub use message::{
    AttemptOutcome, DEFERRED_CHECK_AFTER_MS, MAX_REQUEUES, MessageRecord, MessageState,
    QUEUED_CHECK_AFTER_MS, Recipient, RecipientKind, RecipientStatus, ReleaseQueue, SendAttempt,
    UnknownStatus, initial_state,
};

// Bounce classification: kind, cause and the suppression decision from a bounce's evidence.
pub mod bounce;

pub use bounce::{
    BounceCause, BounceClassification, BounceEvidence, BounceKind, EnhancedStatus, MalformedStatus,
    classify as classify_bounce, find_reply_code,
};

// Delivery events: every provider's events in one shape, and what they do.
pub mod event;

pub use event::{
    BounceReport, ComplaintFeedback, DeliveryEvent, EventEffect, EventKind, EventSource,
    HistoryEntry, SoftBounceRule, UnknownEventKind,
};

// Webhooks to the team's own app: Standard Webhooks v1 signing, bodies, ids, endpoints.
// Finding messages without their id: filters, the index serving them, the recipient hash.
pub mod search;

pub mod standard_webhooks;

pub use standard_webhooks::{
    CorrelatedMessage, Endpoint, EndpointFilter, EndpointSecret, EndpointUrl, InvalidEndpointUrl,
    InvalidWebhookSecret, UnknownEventType, WebhookSecret, app_event_key, app_webhook_body,
    signature_header, webhook_message_id,
};

// Inbound email: the received-message record and MIME parsing (DSNs, auto-replies, threading).
pub mod inbound;

pub use inbound::{
    AttachmentPart, AuthVerdicts, DsnRecipient, DsnReport, InboundAddress, InboundAttachment,
    InboundKind, InboundMessage, InboundSource, InboundStatus, InboundSummary, MalformedMime,
    ParsedMail, parse_mime, provider_assigned_id,
};

// The ports the application services are written against (adapters implement them).
pub mod ports;

// Message templates: versions, rendering with data.
/// Sender domains: validation, the DNS records SES needs, and the DNS check's verdict.
pub mod sender_domain;
pub mod template;

pub use ports::{BoxFuture, StoreError, StoreErrorKind};

// Delivery statistics: counters per hour bucket, the stats query and its arithmetic.
pub mod stats;

pub use stats::{DeliveryCounts, Granularity, GroupBy, StatsQuery, StatsQueryError};

// Reputation guardrails: rolling rates per provider and sending domain from the counters.
pub mod guardrail;

pub use guardrail::{GuardrailPolicy, GuardrailRate, GuardrailTrip};
