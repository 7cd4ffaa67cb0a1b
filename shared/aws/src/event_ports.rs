//! The event flow's ports (`mailgate_core::ports::events`) on DynamoDB and SQS: the adapters'
//! own methods behind the port traits, their errors classified into [`StoreError`]; and the
//! events queue as the event processor forwards EventBridge events onto it.

use std::time::Duration;

use aws_sdk_sqs::error::DisplayErrorContext;
use mailgate_core::ports::{
    BoxFuture, EndpointDirectory, EventClaim, EventForwarder, EventHistory, EventRecorded,
    MessageLookup, OutboundDelivery, OutboundQueue, ReceiptBody, ReceiptReader, SuppressionWrites,
};
use mailgate_core::{
    DeliveryEvent, EmailAddress, Endpoint, EndpointId, MessageId, MessageRecord, ProviderId,
    StoreError, StoreErrorKind, Suppression, SuppressionReason, UnixMillis,
};
use time::OffsetDateTime;

use crate::{
    DynamoDbEndpoints, DynamoDbEventHistory, DynamoDbMessages, DynamoDbSuppressionList,
    DynamoDbWebhookReceipts, EndpointStoreError, HistoryError, OutboundQueueError,
    SqsOutboundQueue,
};

/// SQS refuses a visibility timeout that would end more than 12 h after the message was
/// received; a minute of margin covers the time spent in the invocation.
pub const MAX_VISIBILITY_SECS: u64 = 12 * 3600 - 60;

/// A delay as an SQS visibility timeout: whole seconds rounded up, within SQS's limit.
pub fn visibility_seconds(delay: Duration) -> i32 {
    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    i32::try_from(secs.min(MAX_VISIBILITY_SECS)).unwrap_or(0)
}

impl From<HistoryError> for StoreError {
    fn from(e: HistoryError) -> Self {
        match &e {
            HistoryError::Unavailable(inner) => inner.clone(),
            HistoryError::Corrupt { .. } => {
                StoreError::new(StoreErrorKind::Corrupt, "history", e.to_string())
            }
        }
    }
}

impl From<EndpointStoreError> for StoreError {
    fn from(e: EndpointStoreError) -> Self {
        let kind = match &e {
            EndpointStoreError::Unavailable(inner) => return inner.clone(),
            EndpointStoreError::TableNotFound(_) => StoreErrorKind::MissingResource,
            EndpointStoreError::UnknownId(_) | EndpointStoreError::Conflict(_) => {
                StoreErrorKind::ConditionFailed
            }
            EndpointStoreError::Corrupt { .. } => StoreErrorKind::Corrupt,
            EndpointStoreError::InvalidUrl(_) => StoreErrorKind::Other,
        };
        StoreError::new(kind, "endpoints", e.to_string())
    }
}

/// An outbound-queue call that failed, as the adapter classified it.
fn outbound(e: OutboundQueueError) -> StoreError {
    e
}

impl EventHistory for DynamoDbEventHistory {
    fn claim<'a>(
        &'a self,
        event: &'a DeliveryEvent,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<EventClaim, StoreError>> {
        Box::pin(async move { Ok(DynamoDbEventHistory::claim(self, event, now).await?) })
    }

    fn record<'a>(
        &'a self,
        event: &'a DeliveryEvent,
        message: Option<&'a MessageRecord>,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<EventRecorded, StoreError>> {
        Box::pin(async move { Ok(DynamoDbEventHistory::record(self, event, message, now).await?) })
    }
}

impl MessageLookup for DynamoDbMessages {
    fn summary<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<MessageRecord>, StoreError>> {
        Box::pin(async move { Ok(DynamoDbMessages::summary(self, id).await?) })
    }

    fn find_by_provider_message_id<'a>(
        &'a self,
        provider: ProviderId,
        provider_message_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<MessageId>, StoreError>> {
        Box::pin(async move {
            Ok(
                DynamoDbMessages::find_by_provider_message_id(self, provider, provider_message_id)
                    .await?,
            )
        })
    }
}

impl SuppressionWrites for DynamoDbSuppressionList {
    fn put_unless_active<'a>(
        &'a self,
        entry: &'a Suppression,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(
            async move { Ok(DynamoDbSuppressionList::put_unless_active(self, entry, now).await?) },
        )
    }

    fn lift<'a>(
        &'a self,
        address: &'a EmailAddress,
        reason: SuppressionReason,
        topic: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(
            async move { Ok(DynamoDbSuppressionList::lift(self, address, reason, topic).await?) },
        )
    }

    fn count_soft_bounce<'a>(
        &'a self,
        address: &'a EmailAddress,
        event_digest: &'a str,
        at: UnixMillis,
        window_ms: i64,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Vec<UnixMillis>, StoreError>> {
        Box::pin(async move {
            Ok(DynamoDbSuppressionList::count_soft_bounce(
                self,
                address,
                event_digest,
                at,
                window_ms,
                now,
            )
            .await?)
        })
    }
}

impl EndpointDirectory for DynamoDbEndpoints {
    fn list_enabled(&self, now: UnixMillis) -> BoxFuture<'_, Result<Vec<Endpoint>, StoreError>> {
        Box::pin(async move { Ok(DynamoDbEndpoints::list_enabled(self, now).await?) })
    }

    fn get<'a>(
        &'a self,
        id: &'a EndpointId,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Option<Endpoint>, StoreError>> {
        Box::pin(async move { Ok(DynamoDbEndpoints::get(self, id, now).await?) })
    }

    fn disable<'a>(
        &'a self,
        id: &'a EndpointId,
        reason: &'a str,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { Ok(DynamoDbEndpoints::disable(self, id, reason, now).await?) })
    }
}

impl OutboundQueue for SqsOutboundQueue {
    fn enqueue<'a>(
        &'a self,
        deliveries: &'a [OutboundDelivery],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            SqsOutboundQueue::enqueue(self, deliveries)
                .await
                .map_err(outbound)
        })
    }

    fn retry_after<'a>(
        &'a self,
        receipt_handle: &'a str,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            SqsOutboundQueue::retry_after(self, receipt_handle, visibility_seconds(delay))
                .await
                .map_err(outbound)
        })
    }
}

impl ReceiptReader for DynamoDbWebhookReceipts {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<ReceiptBody>, StoreError>> {
        Box::pin(async move {
            // The receipts adapter classifies its errors already.
            Ok(DynamoDbWebhookReceipts::load(self, key)
                .await?
                .map(|r| ReceiptBody {
                    provider: r.provider,
                    body: r.body,
                    content_type: r.content_type,
                }))
        })
    }
}

/// The events queue on SQS, one message at a time: where the event processor forwards an
/// EventBridge event that targeted it directly.
#[derive(Debug, Clone)]
pub struct SqsEventForwarder {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsEventForwarder {
    /// The events queue at `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl EventForwarder for SqsEventForwarder {
    fn forward<'a>(&'a self, body: &'a str) -> BoxFuture<'a, Result<String, StoreError>> {
        Box::pin(async move {
            let out = self
                .client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(mailgate_core::queue::sqs_safe(body))
                .send()
                .await
                .map_err(|e| {
                    StoreError::new(
                        StoreErrorKind::Transient,
                        "SendMessage",
                        DisplayErrorContext(&e).to_string(),
                    )
                })?;
            Ok(out.message_id.unwrap_or_default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_is_whole_seconds_within_the_sqs_limit() {
        assert_eq!(visibility_seconds(Duration::from_millis(1_500)), 2);
        assert_eq!(visibility_seconds(Duration::ZERO), 0);
        assert_eq!(visibility_seconds(Duration::from_secs(12 * 3600)), 43_140);
    }
}
