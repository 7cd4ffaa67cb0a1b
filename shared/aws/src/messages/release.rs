//! Held messages: cancelling, the `by-release` index (due, released, paused) and its counts.

use super::*;
use crate::dynamodb::ConditionalWrite;

impl DynamoDbMessages {
    /// Cancels a held (`scheduled` or `paused`) message of `environment`, taking it out of the
    /// release index, in one conditional update.
    pub async fn cancel(
        &self,
        id: &MessageId,
        environment: KeyEnvironment,
        now: UnixMillis,
    ) -> Result<Cancellation, MessageStoreError> {
        let result = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .update_expression(
                "SET #state = :cancelled, updated_at = :now REMOVE release_queue, release_at",
            )
            .condition_expression(
                "attribute_exists(pk) AND environment = :env \
                 AND #state IN (:scheduled, :paused)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":cancelled", s(MessageState::Cancelled.as_str()))
            .expression_attribute_values(":scheduled", s(MessageState::Scheduled.as_str()))
            .expression_attribute_values(":paused", s(MessageState::Paused.as_str()))
            .expression_attribute_values(":env", s(environment.as_str()))
            .expression_attribute_values(":now", n(now.as_i64()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                Ok(Cancellation::Cancelled(Box::new(record_from(&item)?)))
            }
            Err(err) if is_conditional_failure(&err) => {
                let old = match err.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                    _ => None,
                };
                let Some(old) = old.filter(|i| i.contains_key("pk")) else {
                    return Ok(Cancellation::NotFound);
                };
                let old = record_from(&old)?;
                if !old.visible_to(environment) {
                    return Ok(Cancellation::NotFound);
                }
                Ok(Cancellation::NotCancellable(old.state))
            }
            Err(err) => Err(MessageStoreError::sdk("UpdateItem", err)),
        }
    }

    /// Ids of messages in `queue` due at `now` (`release_at ≤ now`), oldest first, at most
    /// `limit` (one Query on `by-release`).
    pub async fn due(
        &self,
        queue: ReleaseQueue,
        now: UnixMillis,
        limit: i32,
    ) -> Result<Vec<MessageId>, MessageStoreError> {
        let out = self
            .table
            .client()
            .query()
            .table_name(self.table.name())
            .index_name("by-release")
            .key_condition_expression("release_queue = :queue AND release_at <= :now")
            .expression_attribute_values(":queue", s(queue.as_str()))
            .expression_attribute_values(":now", s(release_key(now)))
            .limit(limit)
            .send()
            .await
            .map_err(|e| MessageStoreError::sdk("Query", e))?;
        Ok(out
            .items()
            .iter()
            .filter_map(|i| get_s(i, "pk")?.strip_prefix("msg#"))
            .filter_map(|id| MessageId::parse(id).ok())
            .collect())
    }

    /// Releases a held message: `scheduled`/`paused` → `queued`, onto the watch queue.
    /// `false` when it is no longer held (cancelled, or released by another sweeper), in which
    /// case the caller must not send it.
    pub async fn mark_released(
        &self,
        id: &MessageId,
        now: UnixMillis,
    ) -> Result<bool, MessageStoreError> {
        let result = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .update_expression(
                "SET #state = :queued, updated_at = :now, release_queue = :watch, release_at = :due",
            )
            .condition_expression("#state IN (:scheduled, :paused)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":queued", s(MessageState::Queued.as_str()))
            .expression_attribute_values(":watch", s(ReleaseQueue::Watch.as_str()))
            // Its pointer may wait out the longest queue delay before a worker sees it.
            .expression_attribute_values(
                ":due",
                s(release_key(now.saturating_add_ms(DEFERRED_CHECK_AFTER_MS))),
            )
            .expression_attribute_values(":scheduled", s(MessageState::Scheduled.as_str()))
            .expression_attribute_values(":paused", s(MessageState::Paused.as_str()))
            .expression_attribute_values(":now", n(now.as_i64()))
            .send()
            .await;
        result
            .condition_held()
            .map_err(|err| MessageStoreError::sdk("UpdateItem", err))
    }

    /// Holds a scheduled message by the pause switch: `scheduled` → `paused`, moving it from the
    /// `scheduled` to the `paused#bulk` release queue with the same `release_at` (its
    /// `send_at`). `false` when it is no longer scheduled (cancelled or released meanwhile).
    pub async fn mark_paused(
        &self,
        id: &MessageId,
        now: UnixMillis,
    ) -> Result<bool, MessageStoreError> {
        let result = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .update_expression("SET #state = :paused, release_queue = :queue, updated_at = :now")
            .condition_expression("#state = :scheduled")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":paused", s(MessageState::Paused.as_str()))
            .expression_attribute_values(":scheduled", s(MessageState::Scheduled.as_str()))
            .expression_attribute_values(":queue", s(ReleaseQueue::PausedBulk.as_str()))
            .expression_attribute_values(":now", n(now.as_i64()))
            .send()
            .await;
        result
            .condition_held()
            .map_err(|err| MessageStoreError::sdk("UpdateItem", err))
    }

    /// Moves a message of `queue` to `release_at = until` (its next look), conditionally on it
    /// still being in `queue`: `false` when it is not.
    pub async fn hold_until(
        &self,
        id: &MessageId,
        queue: ReleaseQueue,
        until: UnixMillis,
    ) -> Result<bool, MessageStoreError> {
        let result = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .update_expression("SET release_at = :until")
            .condition_expression("release_queue = :queue")
            .expression_attribute_values(":queue", s(queue.as_str()))
            .expression_attribute_values(":until", s(release_key(until)))
            .send()
            .await;
        result
            .condition_held()
            .map_err(|err| MessageStoreError::sdk("UpdateItem", err))
    }

    /// How many messages wait in `queue`, due or not (a `Select=COUNT` Query on `by-release`,
    /// following pages: it reads the index's keys only, about 1 MB per request).
    pub async fn count_held(&self, queue: ReleaseQueue) -> Result<u64, MessageStoreError> {
        let mut count = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .table
                .client()
                .query()
                .table_name(self.table.name())
                .index_name("by-release")
                .key_condition_expression("release_queue = :queue")
                .expression_attribute_values(":queue", s(queue.as_str()))
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| MessageStoreError::sdk("Query", e))?;
            count += u64::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(count),
            }
        }
    }

    /// A `queued` message on the watch queue due at `now` gets its next check at `next_check`
    /// and one more counted re-enqueue, in one conditional update: the new count, or `None`
    /// when it is no longer queued and due (taken by a worker, or by another sweep).
    pub async fn renew_queued(
        &self,
        id: &MessageId,
        now: UnixMillis,
        next_check: UnixMillis,
    ) -> Result<Option<u32>, MessageStoreError> {
        let result = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .update_expression(
                "SET release_at = :next, requeues = if_not_exists(requeues, :zero) + :one",
            )
            .condition_expression(
                "#state = :queued AND release_queue = :watch AND release_at <= :now",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":queued", s(MessageState::Queued.as_str()))
            .expression_attribute_values(":watch", s(ReleaseQueue::Watch.as_str()))
            .expression_attribute_values(":now", s(release_key(now)))
            .expression_attribute_values(":next", s(release_key(next_check)))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(
                out.attributes
                    .as_ref()
                    .and_then(|a| get_n(a, "requeues"))
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(1),
            )),
            Err(err) if is_conditional_failure(&err) => Ok(None),
            Err(err) => Err(MessageStoreError::sdk("UpdateItem", err)),
        }
    }

    /// A watched message in `from` (and, for `sending`, with its lease lapsed by `now`) →
    /// `to` with `reason`, off the watch queue; `false` when the condition no longer holds.
    /// The summary is read first (one consistent GetItem: the sweeper's path, not a request's)
    /// so the outcome's statistics counter is added in the same transaction as the change.
    async fn give_up(
        &self,
        id: &MessageId,
        from: MessageState,
        to: MessageState,
        now: UnixMillis,
        reason: &str,
    ) -> Result<bool, MessageStoreError> {
        let Some(record) = self.summary(id).await? else {
            return Ok(false);
        };
        let mut condition = "#state = :from AND release_queue = :watch".to_owned();
        if from == MessageState::Sending {
            // A lease never written (a record from before leases) counts as lapsed.
            condition
                .push_str(" AND (attribute_not_exists(sending_until) OR sending_until <= :now)");
        }
        let update = Update::builder()
            .table_name(self.table.name())
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .update_expression(
                "SET #state = :to, state_reason = :reason, updated_at = :now \
                 REMOVE sending_until, release_queue, release_at",
            )
            .condition_expression(condition)
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":from", s(from.as_str()))
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":watch", s(ReleaseQueue::Watch.as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":now", n(now.as_i64()));
        self.update_counted(update, &record, to, now).await
    }

    /// A watched `queued` message the sweeper gave up on → `failed` with `reason`.
    pub async fn fail_queued(
        &self,
        id: &MessageId,
        now: UnixMillis,
        reason: &str,
    ) -> Result<bool, MessageStoreError> {
        self.give_up(id, MessageState::Queued, MessageState::Failed, now, reason)
            .await
    }

    /// A `sending` message whose lease lapsed by `now` → `unknown` with `reason`.
    pub async fn abandon_lapsed(
        &self,
        id: &MessageId,
        now: UnixMillis,
        reason: &str,
    ) -> Result<bool, MessageStoreError> {
        self.give_up(
            id,
            MessageState::Sending,
            MessageState::Unknown,
            now,
            reason,
        )
        .await
    }

    /// Takes a message that is neither `queued` nor `sending` off the watch queue.
    pub async fn unwatch(&self, id: &MessageId) -> Result<bool, MessageStoreError> {
        let result = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .update_expression("REMOVE release_queue, release_at")
            .condition_expression("release_queue = :watch AND NOT (#state IN (:queued, :sending))")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":watch", s(ReleaseQueue::Watch.as_str()))
            .expression_attribute_values(":queued", s(MessageState::Queued.as_str()))
            .expression_attribute_values(":sending", s(MessageState::Sending.as_str()))
            .send()
            .await;
        result
            .condition_held()
            .map_err(|err| MessageStoreError::sdk("UpdateItem", err))
    }
}
