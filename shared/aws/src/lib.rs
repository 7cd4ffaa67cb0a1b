//! AWS adapters for mailgate: SDK configuration, the names of the tables and queues a function
//! uses, a resource health check, webhook receipts on DynamoDB, the queues on SQS (one batch
//! sender for all of them), and the core's ports implemented on them.

pub mod config;
pub mod dynamodb;
pub mod events_queue;
pub mod health;
pub mod message_items;
pub mod receipts;
pub mod sdk;
pub mod secrets;
pub mod sqs_batch;

pub use config::{ConfigError, Queue, ResourceNames, Table};
pub use dynamodb::{ConditionalWrite, DynamoDb, TableHandle};
pub use events_queue::{EnqueueError, EnqueueStats, SqsEventQueue};
pub use health::{HealthReport, ResourceCheck, ResourceState, check_resources};
pub use mailgate_core::{StoreError, StoreErrorKind};
pub use receipts::{
    DynamoDbWebhookReceipts, ExistingReceipt, NewReceipt, RecordError, Recorded, ReplayGuard,
    StoredReceipt, receipt_key,
};
pub use sdk::{
    AwsClients, function_sdk_config, function_sdk_config_from, load_sdk_config, shared_https_client,
};
pub use secrets::{
    FailureReason, Reference, ReferenceFailure, Resolved, SecretError, SsmClient, resolve_from_env,
    resolve_references,
};
pub mod api_keys;
pub use api_keys::{ApiKeyStoreError, DynamoDbApiKeys, Revocation, Seeded, api_key_pk};
pub mod suppressions;
pub use suppressions::{DynamoDbSuppressionList, SuppressionPage, SuppressionStoreError};
pub mod idempotency;
pub use idempotency::{
    Claim, ClaimOutcome, DynamoDbIdempotencyStore, IdempotencyStoreError, LinkedWrite,
};
pub mod provider_health;
pub use provider_health::{DynamoDbProviderHealth, ProviderHealthConfig, ProviderHealthError};
pub mod api_ports;
pub mod messages;
pub mod search_ports;
pub use search_ports::DynamoDbMessageSearch;
pub mod send_ports;
pub mod sweep_ports;
pub mod webhook_ports;
pub use messages::{
    ATTEMPTS_PER_TRANSACTION, Cancellation, DynamoDbMessages, INLINE_CONTENT_LIMIT,
    MessageStoreError, SendingClaim, StoredMessage, message_pk, provider_message_key,
};
pub mod controls;
pub use controls::{
    BULK_PAUSED_PK, BulkPause, ControlsError, DynamoDbSendControls, GuardrailPause, guardrail_pk,
};
pub mod send_queue;
pub use send_queue::{MalformedSendMessage, SendQueueMessage, SqsSendQueue};
pub mod stats;
pub use stats::{DynamoDbDeliveryStats, DynamoDbReputationGuard, StatsScope};
pub mod history;
pub use history::{DynamoDbEventHistory, EventClaim, EventRecorded, HistoryEntry, HistoryError};
pub mod templates;
pub use templates::DynamoDbTemplates;
pub mod endpoints;
pub use endpoints::{DynamoDbEndpoints, EndpointStoreError, endpoint_pk};
pub mod outbound_queue;
pub use outbound_queue::{
    MalformedOutboundMessage, OutboundDelivery, OutboundQueueError, SqsOutboundQueue,
};
pub mod event_ports;
pub use event_ports::{SqsEventForwarder, visibility_seconds};
pub mod download_links;
pub mod inbound;
pub use download_links::S3DownloadLinks;
pub use inbound::{DynamoDbInboundRecords, INBOUND_FEED, S3InboundObjects};
pub mod dead_letters;
pub use dead_letters::{POISON_REASON_ATTRIBUTE, SqsDeadLetterQueue};
pub mod identities;
pub use identities::SesIdentities;
pub mod dns;
pub use dns::{DNS_RESOLVER_VAR, HickoryDns, parse_resolver};
