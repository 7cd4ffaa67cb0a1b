//! The sweeper's release ports (`mailgate_core::ports::sweep`) on DynamoDB and SQS: held
//! messages in the messages table and delayed pointers on the send queue.

use std::time::Duration;

use mailgate_core::ports::{BoxFuture, HeldMessages, ReleaseSendQueue, StalledMessages};
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

    fn hold_until<'a>(
        &'a self,
        id: &'a MessageId,
        queue: ReleaseQueue,
        until: UnixMillis,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(DynamoDbMessages::hold_until(self, id, queue, until).await?) })
    }
}

impl StalledMessages for DynamoDbMessages {
    fn renew_queued<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
        next_check: UnixMillis,
    ) -> BoxFuture<'a, Result<Option<u32>, StoreError>> {
        Box::pin(
            async move { Ok(DynamoDbMessages::renew_queued(self, id, now, next_check).await?) },
        )
    }

    fn fail_queued<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(DynamoDbMessages::fail_queued(self, id, now, reason).await?) })
    }

    fn abandon_lapsed<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(DynamoDbMessages::abandon_lapsed(self, id, now, reason).await?) })
    }

    fn unwatch<'a>(&'a self, id: &'a MessageId) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(DynamoDbMessages::unwatch(self, id).await?) })
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
