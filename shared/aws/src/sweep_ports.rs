//! The sweeper's release ports (`mailgate_core::ports::sweep`) on DynamoDB and SQS: held
//! messages in the messages table and delayed pointers on the send queue.

use std::time::Duration;

use mailgate_core::ports::{BoxFuture, HeldMessages, ReleaseSendQueue};
use mailgate_core::{MessageId, MessageRecord, ReleaseQueue, StoreError, UnixMillis};

use crate::{DynamoDbMessages, SqsSendQueue};

impl HeldMessages for DynamoDbMessages {
    fn due(
        &self,
        queue: ReleaseQueue,
        at: UnixMillis,
        limit: i32,
    ) -> BoxFuture<'_, Result<Vec<MessageId>, StoreError>> {
        Box::pin(async move { Ok(DynamoDbMessages::due(self, queue, at, limit).await?) })
    }

    fn record<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<MessageRecord>, StoreError>> {
        // The whole message, as the release jobs always read it (one consistent Query).
        Box::pin(async move { Ok(DynamoDbMessages::get(self, id).await?.map(|m| m.record)) })
    }

    fn mark_released<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(DynamoDbMessages::mark_released(self, id, now).await?) })
    }

    fn mark_paused<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(DynamoDbMessages::mark_paused(self, id, now).await?) })
    }
}

impl ReleaseSendQueue for SqsSendQueue {
    fn enqueue_delayed<'a>(
        &'a self,
        batch: &'a [(MessageId, Duration)],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SqsSendQueue::enqueue_delayed(self, batch))
    }
}
