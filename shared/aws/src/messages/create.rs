//! Recording a newly accepted message: the summary, its content (inline or in parts) and an
//! optional linked write (the idempotency claim), in one transaction.

use super::*;
use mailgate_core::ports::AcceptGuards;

impl DynamoDbMessages {
    /// Records a newly accepted message and its content, unless a message with this id exists
    /// (`AlreadyExists`). Content that fits is written in the same transaction as the summary,
    /// so a message is never visible without it; larger content is written first as parts.
    pub async fn create(
        &self,
        record: &MessageRecord,
        content: &OutboundEmail,
    ) -> Result<(), MessageStoreError> {
        self.create_for(record, content, None).await
    }

    /// [`create`](Self::create), remembering the only provider the caller allowed (stored as
    /// `requested_provider` on the summary and returned by `get`).
    pub async fn create_for(
        &self,
        record: &MessageRecord,
        content: &OutboundEmail,
        requested_provider: Option<ProviderId>,
    ) -> Result<(), MessageStoreError> {
        self.create_linked(record, content, requested_provider, None)
            .await
    }

    /// [`create_for`](Self::create_for) with `linked` (e.g. an idempotency claim) written first
    /// in the same transaction: nothing is written unless every condition holds. A refused
    /// linked write is `LinkedRefused`; an existing message is `AlreadyExists`. Content parts
    /// (content over [`INLINE_CONTENT_LIMIT`]) are written before, outside the transaction, as
    /// for `create`; the transaction holds the linked write, the summary, the content head and
    /// the `accepted` counters (2 + tags items, see `crate::stats`) and one search entry per
    /// distinct recipient and per tag (see `search`): at most 75 items with the default limits
    /// of 50 recipients and 10 tags, under TransactWriteItems' 100.
    pub async fn create_linked(
        &self,
        record: &MessageRecord,
        content: &OutboundEmail,
        requested_provider: Option<ProviderId>,
        linked: Option<LinkedWrite>,
    ) -> Result<(), MessageStoreError> {
        self.create_checked(record, content, requested_provider, linked, Vec::new())
            .await
    }

    /// How many items the create transaction of `record` writes before any checks: the linked
    /// write, the summary, the content head, the search entries and the `accepted` counters.
    /// Checks fit only within DynamoDB's limit of [`MAX_TRANSACTION_ITEMS`] with these.
    pub fn create_items(&self, record: &MessageRecord, linked: bool) -> usize {
        let expires_at = self.expires_at(record.created_at);
        usize::from(linked)
            + 2
            + search::search_entries(record, &expires_at).len()
            + crate::stats::StatsScope::of(record, None).targets().len()
    }

    /// [`create_linked`](Self::create_linked) with `checks` (condition checks on other items,
    /// e.g. [`Self::guard_checks`]) after the message's writes in the same transaction: a
    /// refused check is `CheckRefused` (after `LinkedRefused` and `AlreadyExists`, which win).
    pub async fn create_checked(
        &self,
        record: &MessageRecord,
        content: &OutboundEmail,
        requested_provider: Option<ProviderId>,
        linked: Option<LinkedWrite>,
        checks: Vec<TransactWriteItem>,
    ) -> Result<(), MessageStoreError> {
        let json =
            serde_json::to_vec(content).map_err(|e| MessageStoreError::Content(e.to_string()))?;
        let pk = content_pk(&record.id);
        let expires_at = self.expires_at(record.created_at);
        let mut content_item = HashMap::from([
            ("pk".to_owned(), s(&pk)),
            ("sk".to_owned(), s(CONTENT)),
            ("bytes".to_owned(), n(json.len() as i64)),
            ("expires_at".to_owned(), expires_at.clone()),
        ]);
        let mut parts_written = 0;
        if json.len() <= INLINE_CONTENT_LIMIT {
            content_item.insert("body".to_owned(), AttributeValue::B(Blob::new(json)));
        } else {
            parts_written = self.write_parts(&pk, &json, &expires_at).await?;
            content_item.insert("parts".to_owned(), n(parts_written as i64));
        }
        let build = |e| MessageStoreError::built("TransactWriteItems", e);
        let mut summary_item = summary_item(record);
        summary_item.insert("expires_at".to_owned(), expires_at.clone());
        if let Some(provider) = requested_provider {
            summary_item.insert("requested_provider".to_owned(), s(provider.as_str()));
        }
        let summary = Put::builder()
            .table_name(self.table.name())
            .set_item(Some(summary_item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(build)?;
        let content = Put::builder()
            .table_name(self.table.name())
            .set_item(Some(content_item))
            .build()
            .map_err(build)?;
        // The search entries (one per distinct recipient and per tag) go in the same
        // transaction: a message is never findable by its id but not by its recipient.
        let mut search_entries = Vec::new();
        for entry in search::search_entries(record, &expires_at) {
            search_entries.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(self.table.name())
                            .set_item(Some(entry))
                            .build()
                            .map_err(build)?,
                    )
                    .build(),
            );
        }
        // The `accepted` counters, in the same transaction: counted once, with the message.
        let counters = crate::stats::counter_writes(
            self.table.name(),
            &crate::stats::StatsScope::of(record, None),
            record.created_at,
            &[(mailgate_core::stats::Counter::Accepted, 1)],
        )
        .map_err(build)?;
        let offset = usize::from(linked.is_some());
        let result = self
            .table
            .client()
            .transact_write_items()
            .set_transact_items(Some(
                linked
                    .map(|l| l.0)
                    .into_iter()
                    .chain([
                        TransactWriteItem::builder().put(summary).build(),
                        TransactWriteItem::builder().put(content).build(),
                    ])
                    .chain(search_entries)
                    .chain(counters)
                    .chain(checks)
                    .collect(),
            ))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let reasons = cancellation_codes(&err);
                // A cancelled transaction wrote nothing of the message but the parts: take them
                // back, unless the message exists already (then they are its own, rewritten
                // alike). Any other error may have committed (an answer lost on the way back),
                // so the parts stay; whatever is left expires with its `expires_at`.
                let cancelled = !reasons.is_empty();
                let exists = reasons
                    .get(offset)
                    .is_some_and(|code| code == CONDITION_FAILED);
                if parts_written > 0 && cancelled && !exists {
                    self.delete_parts(&pk, parts_written).await;
                }
                if offset == 1 && reasons.first().is_some_and(|c| refused_or_conflict(c)) {
                    Err(MessageStoreError::LinkedRefused)
                } else if reasons
                    .get(offset)
                    .is_some_and(|code| code == CONDITION_FAILED)
                {
                    Err(MessageStoreError::AlreadyExists(record.id.clone()))
                } else if reasons
                    .iter()
                    .skip(offset + 2)
                    .any(|c| refused_or_conflict(c))
                {
                    Err(MessageStoreError::CheckRefused)
                } else {
                    Err(MessageStoreError::transaction(err))
                }
            }
        }
    }

    /// The condition checks of `guards` for [`create_checked`](Self::create_checked): one per
    /// distinct recipient on its unscoped suppression item (and one on its `topic` item), one
    /// on the API key; `None` when this store was wired without the guard tables.
    pub fn guard_checks(
        &self,
        guards: &AcceptGuards,
    ) -> Option<Result<Vec<TransactWriteItem>, MessageStoreError>> {
        let tables = self.guard_tables.as_ref()?;
        let build = |e| MessageStoreError::built("TransactWriteItems", e);
        let mut checks = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for address in &guards.recipients {
            if !seen.insert(mailgate_core::suppression_key(address)) {
                continue;
            }
            let scoped = guards.topic.as_deref().map(Some);
            for topic in std::iter::once(None).chain(scoped) {
                let passes = guards.unsubscribe_passes && topic.is_none();
                let check = crate::suppressions::not_suppressed_check(
                    &tables.suppressions,
                    address,
                    topic,
                    passes,
                    guards.now,
                )
                .map_err(build);
                match check {
                    Ok(c) => checks.push(TransactWriteItem::builder().condition_check(c).build()),
                    Err(e) => return Some(Err(e)),
                }
            }
        }
        if let Some(key) = &guards.api_key {
            match crate::api_keys::key_valid_check(&tables.api_keys, key).map_err(build) {
                Ok(c) => checks.push(TransactWriteItem::builder().condition_check(c).build()),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(checks))
    }

    /// Deletes `count` `content#NNNN` parts of a message that was not recorded (best effort:
    /// what is left expires with its `expires_at`).
    async fn delete_parts(&self, pk: &str, count: usize) {
        let requests: Vec<WriteRequest> = (0..count)
            .filter_map(|i| {
                aws_sdk_dynamodb::types::DeleteRequest::builder()
                    .key("pk", s(pk))
                    .key("sk", s(format!("{CONTENT}#{i:04}")))
                    .build()
                    .ok()
                    .map(|d| WriteRequest::builder().delete_request(d).build())
            })
            .collect();
        for batch in requests.chunks(PARTS_PER_BATCH) {
            if let Err(e) = self
                .table
                .client()
                .batch_write_item()
                .request_items(self.table.name(), batch.to_vec())
                .send()
                .await
            {
                tracing::warn!(error = %DisplayErrorContext(&e), "could not delete the content parts of a message that was not recorded; they expire with their TTL");
                return;
            }
        }
    }

    /// Writes `json` as `content#NNNN` parts, each expiring at `expires_at`; returns how many.
    async fn write_parts(
        &self,
        pk: &str,
        json: &[u8],
        expires_at: &AttributeValue,
    ) -> Result<usize, MessageStoreError> {
        let requests: Vec<WriteRequest> = json
            .chunks(INLINE_CONTENT_LIMIT)
            .enumerate()
            .map(|(i, chunk)| {
                let item = HashMap::from([
                    ("pk".to_owned(), s(pk)),
                    ("sk".to_owned(), s(format!("{CONTENT}#{i:04}"))),
                    ("body".to_owned(), AttributeValue::B(Blob::new(chunk))),
                    ("expires_at".to_owned(), expires_at.clone()),
                ]);
                PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map(|p| WriteRequest::builder().put_request(p).build())
                    .map_err(|e| MessageStoreError::built("BatchWriteItem", e))
            })
            .collect::<Result<_, _>>()?;
        let count = requests.len();
        for batch in requests.chunks(PARTS_PER_BATCH) {
            let mut pending = batch.to_vec();
            for attempt in 0..5u32 {
                let out = self
                    .table
                    .client()
                    .batch_write_item()
                    .request_items(self.table.name(), pending)
                    .send()
                    .await
                    .map_err(|e| MessageStoreError::sdk("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(self.table.name()))
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
            if !pending.is_empty() {
                // DynamoDB leaves items unprocessed when the table's throughput is exceeded.
                return Err(MessageStoreError::Unavailable {
                    operation: "BatchWriteItem",
                    kind: mailgate_core::StoreErrorKind::Throttled,
                    detail: "content parts stayed unprocessed after 5 attempts".to_owned(),
                });
            }
        }
        Ok(count)
    }
}
