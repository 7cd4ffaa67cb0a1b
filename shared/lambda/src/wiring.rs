//! Cold-start wiring of the services on the real adapters (the send flow, webhook ingestion,
//! the sweeper's release jobs), and the metrics of a send report (the services count nothing
//! themselves).

use std::sync::Arc;

use mailgate_aws::{
    AwsClients, DynamoDbIdempotencyStore, DynamoDbMessages, DynamoDbProviderHealth,
    DynamoDbSendControls, DynamoDbSuppressionList, DynamoDbWebhookReceipts, ProviderHealthConfig,
    Queue, ResourceNames, SqsEventQueue, SqsSendQueue, Table,
};
use mailgate_core::ports::ReceiptEvents;
use mailgate_core::{AttemptOutcome, ProviderId, SystemClock};
use mailgate_providers::config::ProvidersConfig;
use mailgate_providers::simulator::Simulator;
use mailgate_providers::webhook::Intake;
use mailgate_services::accept::{AcceptPorts, AcceptSettings, MessageIntake};
use mailgate_services::delivery::{MessageDelivery, Sandbox};
use mailgate_services::ingest::{Delivery, Ingestion};
use mailgate_services::release::Release;
use mailgate_services::send::{
    SendReport, SendService, SendServiceError, ThreadRandom, TokioSleeper,
};

/// Why the send path could not be wired at cold start.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// A provider's HTTP client could not be built.
    #[error(transparent)]
    HttpClient(#[from] mailgate_providers::send::HttpClientError),
    /// The send service is inconsistent with the provider order.
    #[error(transparent)]
    Service(#[from] SendServiceError),
}

/// The shared-health configuration implied by the provider configuration: its rate limits, with
/// the default breaker and cache.
pub fn provider_health_config(config: &ProvidersConfig) -> ProviderHealthConfig {
    ProviderHealthConfig {
        rate_limits: config.rate_limits.clone(),
        ..ProviderHealthConfig::default()
    }
}

/// The message store of the send path: the messages table, claiming and completing
/// `Idempotency-Key`s in the idempotency table when `names` has one.
pub fn message_store(clients: &AwsClients, names: &ResourceNames) -> DynamoDbMessages {
    let tables = clients.dynamodb_tables(names);
    let messages = DynamoDbMessages::on(tables.table(Table::Messages))
        .with_retention(names.message_retention());
    if names.tables().any(|(t, _)| t == Table::Idempotency) {
        messages.with_idempotency(DynamoDbIdempotencyStore::on(
            tables.table(Table::Idempotency),
        ))
    } else {
        messages
    }
}

/// Wires delivery as `send-api` and `send-worker` both need it at cold start: the configured
/// providers behind a `SendService` on the shared provider health (control table), the
/// messages table and the send queue; and, for `test` keys, the event simulator posting to the
/// events queue (so `names` must hold the send and events queues).
pub fn message_delivery(
    clients: &AwsClients,
    names: &ResourceNames,
    providers: &ProvidersConfig,
) -> Result<MessageDelivery, WiringError> {
    let health = DynamoDbProviderHealth::on(
        clients.dynamodb_tables(names).table(Table::Control),
        provider_health_config(providers),
    );
    let service = SendService::new(
        providers.senders(|| clients.ses.clone())?,
        providers.order.clone(),
        providers.failover_policy(),
        Arc::new(health),
    )?;
    let sandbox = Sandbox {
        simulator: Arc::new(Simulator::new(providers.simulator_event_delay)),
        events: Arc::new(SqsEventQueue::new(
            clients.sqs.clone(),
            names.queue_url(Queue::Events).to_owned(),
        )),
    };
    Ok(MessageDelivery::new(
        Arc::new(message_store(clients, names)),
        Arc::new(SqsSendQueue::new(
            clients.sqs.clone(),
            names.queue_url(Queue::Send),
        )),
        Arc::new(service),
    )
    .with_sandbox(sandbox))
}

/// Emits the metrics of one send: `SendAttempts` per provider call (by outcome), `Failovers`
/// and `BreakerOpened` per provider.
pub fn count_send(report: &SendReport) {
    for call in &report.attempts {
        let outcome = match call.outcome {
            AttemptOutcome::Accepted => "accepted",
            AttemptOutcome::Failed | AttemptOutcome::Unknown => "failed",
        };
        crate::metrics::count(
            "SendAttempts",
            1,
            &[("Provider", call.provider.as_str()), ("Outcome", outcome)],
        );
    }
    for provider in &report.failovers {
        crate::metrics::count("Failovers", 1, &[("Provider", provider.as_str())]);
    }
    for provider in &report.breakers_opened {
        crate::metrics::count("BreakerOpened", 1, &[("Provider", provider.as_str())]);
    }
}

/// Wires the accept service of `send-api`: messages (with the idempotency table), keys,
/// suppressions, the pause switch and the send queue, delivering through `delivery`.
pub fn message_intake(
    clients: &AwsClients,
    names: &ResourceNames,
    delivery: Arc<MessageDelivery>,
    settings: AcceptSettings,
) -> MessageIntake {
    let tables = clients.dynamodb_tables(names);
    // The accept path checks the API key and the recipients' suppressions inside the write
    // that records the message (one round trip before the provider on the warm path).
    let messages = message_store(clients, names).with_guards(
        names.table(Table::Suppressions),
        names.table(Table::ApiKeys),
    );
    let ports = AcceptPorts {
        messages: Arc::new(messages),
        idempotency: Arc::new(DynamoDbIdempotencyStore::on(
            tables.table(Table::Idempotency),
        )),
        suppressions: Arc::new(DynamoDbSuppressionList::on(
            tables.table(Table::Suppressions),
        )),
        controls: Arc::new(DynamoDbSendControls::on(tables.table(Table::Control))),
        queue: Arc::new(SqsSendQueue::new(
            clients.sqs.clone(),
            names.queue_url(Queue::Send),
        )),
        templates: Arc::new(mailgate_aws::DynamoDbTemplates::on(
            tables.table(Table::Templates),
        )),
        clock: Arc::new(SystemClock),
        sleeper: Arc::new(TokioSleeper),
        random: Arc::new(ThreadRandom),
    };
    MessageIntake::new(ports, delivery, settings)
}

/// Reads a stored webhook body into its events again with the provider's own parser (the
/// sweeper's re-enqueue).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProviderReceiptEvents;

impl ReceiptEvents for ProviderReceiptEvents {
    fn events_of(
        &self,
        provider: ProviderId,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<Vec<String>, String> {
        mailgate_providers::webhook::events_of(provider, body, content_type).map_err(|e| e.0)
    }
}

/// Wires webhook ingestion on the receipts and dedupe tables and the events queue named in
/// `names`; receipts expire after `retention_secs`, Mailgun tokens after `replay_window_secs`.
pub fn ingestion(
    clients: &AwsClients,
    names: &ResourceNames,
    retention_secs: i64,
    replay_window_secs: i64,
) -> Ingestion {
    let tables = clients.dynamodb_tables(names);
    let receipts =
        DynamoDbWebhookReceipts::on(tables.table(Table::Receipts), tables.table(Table::Dedupe));
    let queue = SqsEventQueue::new(
        clients.sqs.clone(),
        names.queue_url(Queue::Events).to_owned(),
    );
    Ingestion::new(
        Arc::new(receipts),
        Arc::new(queue),
        Arc::new(ProviderReceiptEvents),
        retention_secs,
        replay_window_secs,
    )
}

/// The ingestion service's view of a verified delivery: `provider`'s `intake` with its raw
/// `body` and `Content-Type`.
pub fn delivery<'a>(
    provider: ProviderId,
    intake: &'a Intake,
    body: &'a [u8],
    content_type: Option<&'a str>,
) -> Delivery<'a> {
    Delivery {
        provider,
        dedupe_key: &intake.payload.dedupe_key,
        kind: intake.kind,
        events: match &intake.payload.events {
            Ok(events) => Ok(events.as_slice()),
            Err(e) => Err(e.0.as_str()),
        },
        verification: intake.verification,
        replay_token: intake.replay_token.as_deref(),
        body,
        content_type,
    }
}

/// Wires the release jobs of the sweeper: held messages in the messages table, the pause switch
/// in the control table, pointers onto the send queue.
pub fn release(clients: &AwsClients, names: &ResourceNames) -> Release {
    let tables = clients.dynamodb_tables(names);
    let messages = Arc::new(DynamoDbMessages::on(tables.table(Table::Messages)));
    Release::new(
        messages.clone(),
        Arc::new(DynamoDbSendControls::on(tables.table(Table::Control))),
        Arc::new(SqsSendQueue::new(
            clients.sqs.clone(),
            names.queue_url(Queue::Send),
        )),
        messages,
    )
}
