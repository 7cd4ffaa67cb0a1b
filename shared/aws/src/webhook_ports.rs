//! The webhook ingestion's ports (`mailgate_core::ports::webhooks`) on DynamoDB and SQS: the
//! receipts table and the events queue behind the port traits.

use mailgate_core::ports::{
    BoxFuture, DelayedEvent, DelayedEventQueue, Enqueued, EventsQueue, WebhookReceipts,
};
use mailgate_core::{
    NewReceipt, ProviderId, RecordError, Recorded, StoreError, StoreErrorKind, StoredReceipt,
};

use crate::{DynamoDbWebhookReceipts, EnqueueError, SqsEventQueue};

impl WebhookReceipts for DynamoDbWebhookReceipts {
    fn record<'a>(
        &'a self,
        receipt: &'a NewReceipt<'a>,
    ) -> BoxFuture<'a, Result<Recorded, RecordError>> {
        Box::pin(DynamoDbWebhookReceipts::record(self, receipt))
    }

    fn claim<'a>(
        &'a self,
        key: &'a str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(DynamoDbWebhookReceipts::claim(
            self,
            key,
            now_ms,
            lease_until_ms,
        ))
    }

    fn mark_queued<'a>(
        &'a self,
        key: &'a str,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(DynamoDbWebhookReceipts::mark_queued(self, key, now_ms))
    }

    fn retry_later<'a>(
        &'a self,
        key: &'a str,
        retry_at_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(DynamoDbWebhookReceipts::retry_later(self, key, retry_at_ms))
    }

    fn mark_failed<'a>(
        &'a self,
        key: &'a str,
        now_ms: i64,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(DynamoDbWebhookReceipts::mark_failed(
            self, key, now_ms, reason,
        ))
    }

    fn stale(
        &self,
        provider: ProviderId,
        before_ms: i64,
        limit: i32,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(DynamoDbWebhookReceipts::stale(
            self, provider, before_ms, limit,
        ))
    }

    fn load<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredReceipt>, StoreError>> {
        Box::pin(DynamoDbWebhookReceipts::load(self, key))
    }
}

impl From<EnqueueError> for StoreError {
    fn from(e: EnqueueError) -> Self {
        match e {
            EnqueueError::Unavailable(e) => e,
            // Retrying the same message cannot make it smaller.
            too_large @ EnqueueError::TooLarge { .. } => {
                StoreError::new(StoreErrorKind::Other, "SendMessageBatch", too_large)
            }
        }
    }
}

impl EventsQueue for SqsEventQueue {
    fn enqueue<'a>(
        &'a self,
        messages: &'a [String],
    ) -> BoxFuture<'a, Result<Enqueued, StoreError>> {
        Box::pin(async move {
            let stats = SqsEventQueue::enqueue(self, messages).await?;
            Ok(Enqueued {
                messages: stats.messages,
                calls: stats.calls,
            })
        })
    }
}

impl DelayedEventQueue for SqsEventQueue {
    fn post<'a>(&'a self, events: &'a [DelayedEvent]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            SqsEventQueue::enqueue_delayed(self, events).await?;
            Ok(())
        })
    }
}
