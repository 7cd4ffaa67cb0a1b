//! `send-worker`: consumes the send queue (messages accepted onto the asynchronous send path:
//! batch sends, deferred retries, released scheduled and paused mail). Each record is the
//! pointer `{"v":1,"message_id":"msg_…"}`; the message is loaded from the messages table and
//! delivered by the same [`MessageDelivery`] the API uses.
//!
//! Per record (reported through `batchItemFailures`):
//! - malformed body or unknown version → moved to the send DLQ at once with the reason
//!   (`mailgate_poison_reason`) and acknowledged (poison: a retry cannot fix it);
//! - unknown message or missing content → logged and acknowledged;
//! - the message is no longer `queued` (sent, failed, cancelled, …) → acknowledged without a
//!   send: SQS delivers at least once, so a redelivered pointer must not send twice;
//! - another worker holds the message (`sending` under a live lease: SQS handed the same pointer
//!   to two workers) → acknowledged without a send;
//! - the message is `sending` under an EXPIRED lease (its worker died, maybe after calling the
//!   provider) → marked `unknown` and acknowledged: it is never sent again blindly;
//! - the message is still `scheduled`/`paused` (the sweeper enqueues before it marks the
//!   release) → left on the queue until the mark lands;
//! - DynamoDB throttled or unreachable before any provider call, or a deferral that could not
//!   be enqueued → left on the queue (retried, then the dead-letter queue);
//! - the message cannot be loaded for a reason a retry cannot fix (its stored item is
//!   unreadable, the call is refused) → moved to the send DLQ at once with the reason and
//!   acknowledged, as the event processor does with the same store failure;
//! - the outcome could not be recorded after a provider was called → logged and acknowledged
//!   (sending again could deliver twice).

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use mailgate_aws::{
    AwsClients, ConfigError, Queue, ResourceNames, SendQueueMessage, SqsDeadLetterQueue, Table,
};
use mailgate_core::MessageState;
use mailgate_lambda::poison::{Verdict, drive_batch_with_dlq};
use mailgate_lambda::sqs::RecordOutcome;
use mailgate_lambda::wiring::{WiringError, count_send, message_delivery};
use mailgate_providers::config::{ProvidersConfig, SECRET_VARIABLES};
use mailgate_services::delivery::{DeliveryError, MessageDelivery, StoredDelivery};

/// The Lambda function name.
pub const FUNCTION_NAME: &str = "send-worker";
/// The tables the worker reads and writes.
pub const TABLES: &[Table] = &[Table::Messages, Table::Control];
/// The queues it reads and writes.
pub const QUEUES: &[Queue] = &[Queue::Send, Queue::Events];
/// The variable holding the send queue's dead-letter queue URL.
pub const DLQ_VAR: &str = "SEND_DLQ_URL";

/// Typed configuration, loaded once per cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tables and queues.
    pub names: ResourceNames,
    /// The providers to send through.
    pub providers: ProvidersConfig,
    /// Where poison records go (`SEND_DLQ_URL`).
    pub dlq_url: String,
}

impl Config {
    /// Reads the configuration from the environment (secrets as literals).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `lookup`; every problem is reported at once.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let names = ResourceNames::from_lookup(TABLES, QUEUES, &lookup)
            .map_err(|e| problems.extend(e.problems))
            .ok();
        let providers = ProvidersConfig::from_lookup(&lookup)
            .map_err(|e| problems.extend(e.problems))
            .ok();
        let dlq_url = lookup(DLQ_VAR).filter(|v| !v.trim().is_empty());
        if dlq_url.is_none() {
            problems.push(format!("{DLQ_VAR} is not set"));
        }
        match (names, providers, dlq_url) {
            (Some(names), Some(providers), Some(dlq_url)) => Ok(Self {
                names,
                providers,
                dlq_url,
            }),
            _ => Err(ConfigError { problems }),
        }
    }
}

/// The worker cannot be wired from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The providers or the send service could not be wired.
    #[error(transparent)]
    Wiring(#[from] WiringError),
}

/// The function with its clients.
#[derive(Debug, Clone)]
pub struct Function {
    config: Config,
    delivery: Arc<MessageDelivery>,
    dlq: Arc<SqsDeadLetterQueue>,
}

impl Function {
    /// Wires the function.
    pub fn new(config: Config, clients: AwsClients) -> Result<Self, WorkerError> {
        let delivery = message_delivery(&clients, &config.names, &config.providers)?;
        Ok(Self {
            dlq: Arc::new(SqsDeadLetterQueue::new(
                clients.sqs.clone(),
                config.dlq_url.clone(),
            )),
            config,
            delivery: Arc::new(delivery),
        })
    }

    /// Handles one SQS batch, reporting the records to retry.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        drive_batch_with_dlq(event, self.dlq.as_ref(), |record| self.process(record)).await
    }

    /// One record.
    async fn process(&self, record: SqsMessage) -> Verdict {
        let body = record.body.as_deref().unwrap_or_default();
        match SendQueueMessage::parse(body) {
            Ok(message) => self.deliver(&message).await,
            Err(err) => Verdict::Poison(err.to_string()),
        }
    }

    /// Delivers the message a record points to.
    async fn deliver(&self, message: &SendQueueMessage) -> Verdict {
        let id = &message.message_id;
        match self.attempt(message).await {
            // Nothing was sent and a retry cannot fix the store's answer: park it now.
            Err(DeliveryError::Load(err)) if !err.is_retryable() => {
                tracing::error!(message_id = %id, error = %err, "message cannot be loaded; parked");
                Verdict::Poison(format!("message {id} cannot be loaded: {err}"))
            }
            Err(err) => Verdict::Retry(err.to_string()),
            Ok(outcome) => outcome.into(),
        }
    }

    /// Delivers the message a record points to; the failures [`Self::deliver`] decides on.
    async fn attempt(&self, message: &SendQueueMessage) -> Result<RecordOutcome, DeliveryError> {
        let id = &message.message_id;
        let budget = self.config.providers.send_budget;
        Ok(match self.delivery.deliver_stored(id, budget).await {
            Ok(StoredDelivery::Delivered(d)) => {
                count_send(&d.report);
                tracing::info!(message_id = %id, state = d.state.as_str(), provider = d.provider.map_or("-", |p| p.as_str()), "message delivered");
                RecordOutcome::Done
            }
            // The sweeper enqueues a released message before it marks it `queued` (so a crash
            // between the two cannot lose it): a pointer can arrive first. Leave it on the
            // queue; it comes back after the visibility timeout, by when the mark has landed.
            Ok(StoredDelivery::NotQueued(
                state @ (MessageState::Scheduled | MessageState::Paused),
            )) => RecordOutcome::Retry(format!(
                "message {id} is still {} (release not yet recorded)",
                state.as_str()
            )),
            Ok(StoredDelivery::Abandoned) => {
                tracing::warn!(message_id = %id, "an earlier worker's send lapsed mid-call; marked unknown, not sent again");
                RecordOutcome::Done
            }
            Ok(StoredDelivery::NotQueued(state)) => {
                tracing::info!(message_id = %id, state = state.as_str(), "message is no longer queued; not sent again");
                RecordOutcome::Done
            }
            Err(DeliveryError::NotFound(_)) => {
                tracing::error!(message_id = %id, "no such message (or no content); record acknowledged");
                RecordOutcome::Done
            }
            Err(DeliveryError::Record {
                provider_called: true,
                source,
                delivery,
            }) => {
                count_send(&delivery.report);
                tracing::error!(message_id = %id, error = %source, "provider called but the outcome was not recorded; not retried to avoid a second send");
                RecordOutcome::Done
            }
            Err(err) => return Err(err),
        })
    }
}

/// Cold start: resolves the provider secrets, loads the configuration, wires the worker and
/// serves batches.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    mailgate_lambda::init_tracing();
    let sdk = mailgate_aws::function_sdk_config();
    let secrets =
        mailgate_aws::resolve_from_env(&mailgate_aws::SsmClient::new(&sdk), SECRET_VARIABLES)
            .await?;
    let config = Config::from_lookup(secrets.lookup_or_env())?;
    let function = Function::new(config, AwsClients::new(&sdk))?;
    let function = &function;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<SqsEvent>| async move {
            Ok::<_, lambda_runtime::Error>(function.handle(event.payload).await)
        },
    ))
    .await
}
