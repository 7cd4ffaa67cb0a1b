//! The send path's writes on a stored message: provider calls with the resulting state (by
//! precedence, with an optional linked completion) and the sending lease.

use super::*;

impl DynamoDbMessages {
    /// Records one provider call and moves the message to `new_state`, in one transaction: the
    /// attempt item, and on the summary the state, the provider, the attempt count and (when
    /// the attempt carries one) the provider's message id and its `by-provider-message-id` key.
    /// `NotFound` when there is no such message.
    pub async fn record_attempt(
        &self,
        id: &MessageId,
        attempt: &SendAttempt,
        new_state: MessageState,
    ) -> Result<(), MessageStoreError> {
        self.record_outcome(
            id,
            std::slice::from_ref(attempt),
            new_state,
            attempt.at,
            None,
        )
        .await
        .map(|_| ())
    }

    /// Records every provider call of one delivery and moves the message to `new_state`, with
    /// `linked` (e.g. the idempotency completion), in ONE transaction when there are at most
    /// [`ATTEMPTS_PER_TRANSACTION`] attempts (one more per further batch; `linked` goes with
    /// the last): the attempt items, and on the summary the state, `updated_at = now`, the
    /// attempt count, the last provider, the provider's message id (and its
    /// `by-provider-message-id` key) when an attempt carries one; the `sending` lease
    /// (`sending_until`) is removed. Without attempts only the summary is updated.
    ///
    /// Returns whether `linked` was written: when its condition is refused the outcome is
    /// written again without it (the message's record must not be lost to a lapsed idempotency
    /// claim). `NotFound` when there is no such message.
    pub async fn record_outcome(
        &self,
        id: &MessageId,
        attempts: &[SendAttempt],
        new_state: MessageState,
        now: UnixMillis,
        linked: Option<LinkedWrite>,
    ) -> Result<bool, MessageStoreError> {
        self.record_outcome_counted(id, None, attempts, new_state, now, linked)
            .await
    }

    /// [`record_outcome`](Self::record_outcome) of `record`, adding the delivery-statistics
    /// counter of the outcome (`sent` with `sent_recipients`, `failed`, `unknown`; see
    /// `crate::stats`) in the last chunk's transaction, once per message and outcome: the
    /// summary keeps the outcomes counted (`counted`, a string set) and the counted write is
    /// conditioned on the outcome not being in it. When the state has moved on (an event
    /// arrived first), the outcome is still counted, without the state.
    pub async fn record_outcome_of(
        &self,
        record: &MessageRecord,
        attempts: &[SendAttempt],
        new_state: MessageState,
        now: UnixMillis,
        linked: Option<LinkedWrite>,
    ) -> Result<bool, MessageStoreError> {
        self.record_outcome_counted(&record.id, Some(record), attempts, new_state, now, linked)
            .await
    }

    async fn record_outcome_counted(
        &self,
        id: &MessageId,
        record: Option<&MessageRecord>,
        attempts: &[SendAttempt],
        new_state: MessageState,
        now: UnixMillis,
        linked: Option<LinkedWrite>,
    ) -> Result<bool, MessageStoreError> {
        let counting = record.and_then(|r| Counting::of(r, attempts, new_state));
        let chunks: Vec<&[SendAttempt]> = if attempts.is_empty() {
            vec![&[]]
        } else {
            attempts.chunks(ATTEMPTS_PER_TRANSACTION).collect()
        };
        let last = chunks.len() - 1;
        let mut linked = linked;
        let mut linked_written = false;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let with = if i == last { linked.take() } else { None };
            let count = if i == last { counting.as_ref() } else { None };
            let had_linked = with.is_some();
            match self
                .record_chunk_by_precedence(id, chunk, new_state, now, with, count)
                .await
            {
                Ok(()) => linked_written = had_linked,
                Err(MessageStoreError::LinkedRefused) => {
                    self.record_chunk_by_precedence(id, chunk, new_state, now, None, count)
                        .await?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(linked_written)
    }

    /// One transaction of [`record_outcome`](Self::record_outcome) that moves the state only
    /// over a state the outcome outranks: the send path's `sent`/`unknown`/`failed`/`queued`
    /// never overwrites what an event that arrived first (a fast webhook) said. When the state
    /// has moved on, the attempts, the provider's id and `linked` are written without it.
    async fn record_chunk_by_precedence(
        &self,
        id: &MessageId,
        attempts: &[SendAttempt],
        new_state: MessageState,
        now: UnixMillis,
        linked: Option<LinkedWrite>,
        count: Option<&Counting>,
    ) -> Result<(), MessageStoreError> {
        // Counted first (refused when the outcome was counted already), then as before.
        let counted = count.map(Some).into_iter().chain([None]);
        for count in counted {
            match self
                .record_chunk(id, attempts, Some(new_state), now, linked.clone(), count)
                .await
            {
                // The condition names the states the outcome outranks (and, counted, that the
                // outcome was not counted); refused, either the state moved on, or it was
                // counted, or there is no such message, which the next tries tell apart.
                Err(MessageStoreError::NotFound(_)) => {}
                other => return other,
            }
            match self
                .record_chunk(id, attempts, None, now, linked.clone(), count)
                .await
            {
                Err(MessageStoreError::NotFound(_)) if count.is_some() => {}
                other => return other,
            }
        }
        Err(MessageStoreError::NotFound(id.clone()))
    }

    /// One transaction of [`record_outcome`](Self::record_outcome).
    async fn record_chunk(
        &self,
        id: &MessageId,
        attempts: &[SendAttempt],
        new_state: Option<MessageState>,
        now: UnixMillis,
        linked: Option<LinkedWrite>,
        count: Option<&Counting>,
    ) -> Result<(), MessageStoreError> {
        let build = |e| MessageStoreError::built("TransactWriteItems", e);
        let mut items = Vec::with_capacity(attempts.len() + 2);
        for attempt in attempts {
            let mut item = attempt_item(id, attempt);
            item.insert("expires_at".to_owned(), self.expires_at(attempt.at));
            let put = Put::builder()
                .table_name(self.table.name())
                .set_item(Some(item))
                .build()
                .map_err(build)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let mut set = vec!["updated_at = :now"];
        let mut update = Update::builder()
            .table_name(self.table.name())
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .expression_attribute_values(":now", n(now.as_i64()));
        // Counted once: the outcome joins the summary's `counted` set, unless it is in it.
        let (not_counted, add) = match count {
            Some(c) => {
                update = update
                    .expression_attribute_values(
                        ":counted",
                        AttributeValue::Ss(vec![c.marker.to_owned()]),
                    )
                    .expression_attribute_values(":marker", s(c.marker));
                (
                    " AND (attribute_not_exists(counted) OR NOT contains(counted, :marker))",
                    " ADD counted :counted",
                )
            }
            None => ("", ""),
        };
        match new_state {
            Some(state) => {
                // Only from a state the outcome outranks (see `outranked_by`).
                let outranked = outranked_by(state);
                let names: Vec<String> =
                    (0..outranked.len()).map(|i| format!(":from{i}")).collect();
                set.push("#state = :state");
                update = update
                    .condition_expression(format!(
                        "attribute_exists(pk) AND #state IN ({}){not_counted}",
                        names.join(", ")
                    ))
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_values(":state", s(state.as_str()));
                for (name, from) in names.iter().zip(outranked) {
                    update = update.expression_attribute_values(name, s(from.as_str()));
                }
            }
            None => {
                update = update.condition_expression(format!("attribute_exists(pk){not_counted}"))
            }
        }
        if let Some(last) = attempts.last() {
            set.push("provider = :provider");
            set.push("attempt_count = if_not_exists(attempt_count, :zero) + :count");
            update = update
                .expression_attribute_values(":provider", s(last.provider.as_str()))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":count", n(attempts.len() as i64));
        }
        if let Some(accepted) = attempts
            .iter()
            .rev()
            .find(|a| a.provider_message_id.is_some())
            && let Some(pmid) = &accepted.provider_message_id
        {
            set.push("provider_message_id = :pmid");
            set.push("provider_message_key = :pmkey");
            update = update
                .expression_attribute_values(":pmid", s(pmid))
                .expression_attribute_values(
                    ":pmkey",
                    s(provider_message_key(accepted.provider, pmid)),
                );
        }
        // A deferred message stays watched (due when its pointer should have been taken);
        // any other outcome takes it off the watch queue.
        let remove = if new_state == Some(MessageState::Queued) {
            set.push("release_queue = :watch");
            set.push("release_at = :due");
            update = update
                .expression_attribute_values(":watch", s(ReleaseQueue::Watch.as_str()))
                .expression_attribute_values(
                    ":due",
                    s(release_key(now.saturating_add_ms(DEFERRED_CHECK_AFTER_MS))),
                );
            "sending_until"
        } else {
            "sending_until, release_queue, release_at"
        };
        let update = update
            .update_expression(format!("SET {} REMOVE {remove}{add}", set.join(", ")))
            .build()
            .map_err(build)?;
        let summary_index = items.len();
        items.push(TransactWriteItem::builder().update(update).build());
        let has_linked = linked.is_some();
        items.extend(linked.map(|l| l.0));
        if let Some(c) = count {
            items.extend(
                crate::stats::counter_writes(self.table.name(), &c.scope, now, &c.counters)
                    .map_err(build)?,
            );
        }
        let result = self
            .table
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let reasons = cancellation_codes(&err);
                if reasons
                    .get(summary_index)
                    .is_some_and(|c| c == CONDITION_FAILED)
                {
                    Err(MessageStoreError::NotFound(id.clone()))
                } else if has_linked
                    && reasons
                        .get(summary_index + 1)
                        .is_some_and(|c| refused_or_conflict(c))
                {
                    Err(MessageStoreError::LinkedRefused)
                } else {
                    Err(MessageStoreError::transaction(err))
                }
            }
        }
    }

    /// Takes a `queued` message for a provider call: `queued` → `sending` with the lease
    /// `sending_until = lease_until`, in one conditional update. What it finds otherwise:
    /// another worker's live lease, an expired lease (marked `unknown` here: the worker holding
    /// it died after possibly calling a provider, so the message must not be sent blindly), or
    /// any other state.
    pub async fn start_sending(
        &self,
        id: &MessageId,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> Result<SendingClaim, MessageStoreError> {
        let result = self
            .table
            .client()
            .update_item()
            .table_name(self.table.name())
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .update_expression(
                "SET #state = :sending, sending_until = :until, updated_at = :now, \
                 release_queue = :watch, release_at = :due",
            )
            .condition_expression("#state = :queued")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":sending", s(MessageState::Sending.as_str()))
            .expression_attribute_values(":watch", s(ReleaseQueue::Watch.as_str()))
            .expression_attribute_values(":due", s(release_key(lease_until)))
            .expression_attribute_values(":queued", s(MessageState::Queued.as_str()))
            .expression_attribute_values(":until", n(lease_until.as_i64()))
            .expression_attribute_values(":now", n(now.as_i64()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match result {
            Ok(_) => return Ok(SendingClaim::Taken),
            Err(err) if is_conditional_failure(&err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                _ => None,
            },
            Err(err) => return Err(MessageStoreError::sdk("UpdateItem", err)),
        };
        let Some(old) = old.filter(|i| i.contains_key("pk")) else {
            return Err(MessageStoreError::NotFound(id.clone()));
        };
        let record = record_from(&old)?;
        let state = record.state;
        let until = get_n(&old, "sending_until").map(UnixMillis);
        match (state, until) {
            (MessageState::Sending, Some(until)) if until <= now => {
                if self.abandon(&record, until, now).await? {
                    Ok(SendingClaim::Abandoned)
                } else {
                    // The earlier worker recorded its outcome meanwhile.
                    Ok(SendingClaim::Elsewhere(MessageState::Sending))
                }
            }
            (state, _) => Ok(SendingClaim::Elsewhere(state)),
        }
    }

    /// Applies `update` (a conditional change of `record`'s summary to `state`) in one
    /// transaction with the statistics counter of `state` (`failed`, `unknown`), marking it
    /// counted on the summary; `false` when the update's condition was refused.
    pub(super) async fn update_counted(
        &self,
        update: aws_sdk_dynamodb::types::builders::UpdateBuilder,
        record: &MessageRecord,
        state: MessageState,
        now: UnixMillis,
    ) -> Result<bool, MessageStoreError> {
        let build = |e| MessageStoreError::built("TransactWriteItems", e);
        let counting = Counting::of(record, &[], state);
        let mut update = update;
        let mut counters = Vec::new();
        if let Some(c) = &counting {
            // The expression gains the marker: `counted` says the outcome was counted.
            let expression = update
                .get_update_expression()
                .as_ref()
                .map(|e| format!("{e} ADD counted :counted"));
            update = update
                .set_update_expression(expression)
                .expression_attribute_values(
                    ":counted",
                    AttributeValue::Ss(vec![c.marker.to_owned()]),
                );
            counters = crate::stats::counter_writes(self.table.name(), &c.scope, now, &c.counters)
                .map_err(build)?;
        }
        let items: Vec<TransactWriteItem> = std::iter::once(
            TransactWriteItem::builder()
                .update(update.build().map_err(build)?)
                .build(),
        )
        .chain(counters)
        .collect();
        match self
            .table
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) => {
                if cancellation_codes(&err)
                    .first()
                    .is_some_and(|c| c == CONDITION_FAILED)
                {
                    Ok(false)
                } else {
                    Err(MessageStoreError::sdk("TransactWriteItems", err))
                }
            }
        }
    }

    /// `sending` with the expired lease `until` → `unknown` (counted); `false` when the lease
    /// changed.
    async fn abandon(
        &self,
        record: &MessageRecord,
        until: UnixMillis,
        now: UnixMillis,
    ) -> Result<bool, MessageStoreError> {
        let id = &record.id;
        let update = Update::builder()
            .table_name(self.table.name())
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .update_expression(
                "SET #state = :unknown, updated_at = :now \
                 REMOVE sending_until, release_queue, release_at",
            )
            .condition_expression("#state = :sending AND sending_until = :until")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":unknown", s(MessageState::Unknown.as_str()))
            .expression_attribute_values(":sending", s(MessageState::Sending.as_str()))
            .expression_attribute_values(":until", n(until.as_i64()))
            .expression_attribute_values(":now", n(now.as_i64()));
        self.update_counted(update, record, MessageState::Unknown, now)
            .await
    }
}

/// The delivery-statistics counters a send outcome adds, and its marker in the summary's
/// `counted` set.
#[derive(Debug, Clone)]
pub(super) struct Counting {
    scope: crate::stats::StatsScope,
    counters: Vec<(mailgate_core::stats::Counter, u64)>,
    marker: &'static str,
}

impl Counting {
    /// The counting of `record` reaching `state` after `attempts`; `None` for a state that is
    /// not a counted outcome (`queued` for a retry).
    fn of(record: &MessageRecord, attempts: &[SendAttempt], state: MessageState) -> Option<Self> {
        use mailgate_core::stats::Counter;
        let counters = match state {
            MessageState::Sent => {
                let recipients = record
                    .recipients
                    .iter()
                    .filter(|r| r.status != RecipientStatus::Suppressed)
                    .count();
                vec![
                    (Counter::Sent, 1),
                    (Counter::SentRecipients, recipients as u64),
                ]
            }
            MessageState::Failed => vec![(Counter::Failed, 1)],
            MessageState::Unknown => vec![(Counter::Unknown, 1)],
            _ => return None,
        };
        let provider = attempts.last().map(|a| a.provider).or(record.provider);
        Some(Self {
            scope: crate::stats::StatsScope::of(record, provider),
            marker: counters[0].0.as_str(),
            counters,
        })
    }
}
