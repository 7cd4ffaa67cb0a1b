//! Reading messages: the summary, attempts and history, the content, and the message a
//! provider's id belongs to.

use super::*;

impl DynamoDbMessages {
    /// Every item of a partition, following pages (strongly consistent: a message just
    /// written is read back).
    async fn query_partition(&self, pk: String) -> Result<Vec<Item>, MessageStoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .table
                .client()
                .query()
                .table_name(self.table.name())
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| MessageStoreError::sdk("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    /// The message's summary alone (one consistent GetItem), or `None`.
    pub async fn summary(
        &self,
        id: &MessageId,
    ) -> Result<Option<MessageRecord>, MessageStoreError> {
        let out = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .key("pk", s(message_pk(id)))
            .key("sk", s(SUMMARY))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| MessageStoreError::sdk("GetItem", e))?;
        out.item.as_ref().map(record_from).transpose()
    }

    /// The message's summary and attempts (one Query on its partition), or `None`.
    pub async fn get(&self, id: &MessageId) -> Result<Option<StoredMessage>, MessageStoreError> {
        let items = self.query_partition(message_pk(id)).await?;
        let mut record = None;
        let mut requested_provider = None;
        let mut attempts = Vec::new();
        let mut events = Vec::new();
        let pk = message_pk(id);
        // Items come sorted by `sk`, so attempts and events are each in time order.
        for item in &items {
            match get_s(item, "sk") {
                Some(SUMMARY) => {
                    record = Some(record_from(item)?);
                    requested_provider = get_s(item, "requested_provider")
                        .and_then(|p| p.parse::<ProviderId>().ok());
                }
                Some(sk) if sk.starts_with(ATTEMPT_PREFIX) => {
                    attempts.push(attempt_from(id, item)?)
                }
                Some(sk) if sk.starts_with(crate::history::EVENT_PREFIX) => {
                    events.push(crate::history::history_entry(&pk, item).map_err(|e| {
                        MessageStoreError::Corrupt {
                            id: id.to_string(),
                            what: e.to_string(),
                        }
                    })?)
                }
                _ => {}
            }
        }
        Ok(record.map(|record| StoredMessage {
            record,
            attempts,
            requested_provider,
            events,
        }))
    }

    /// The message's content as accepted, or `None` when there is no such message.
    pub async fn load_content(
        &self,
        id: &MessageId,
    ) -> Result<Option<OutboundEmail>, MessageStoreError> {
        let items = self.query_partition(content_pk(id)).await?;
        let corrupt = |what: &str| MessageStoreError::Corrupt {
            id: id.to_string(),
            what: what.to_owned(),
        };
        let Some(head) = items.iter().find(|i| get_s(i, "sk") == Some(CONTENT)) else {
            return Ok(None);
        };
        let json = match (head.get("body"), get_n(head, "parts")) {
            (Some(AttributeValue::B(body)), _) => body.as_ref().to_vec(),
            (_, Some(parts)) => {
                let mut json = Vec::new();
                for i in 0..parts {
                    let sk = format!("{CONTENT}#{i:04}");
                    let part = items
                        .iter()
                        .find(|item| get_s(item, "sk") == Some(sk.as_str()))
                        .and_then(|item| match item.get("body") {
                            Some(AttributeValue::B(b)) => Some(b.as_ref()),
                            _ => None,
                        })
                        .ok_or_else(|| corrupt("content part"))?;
                    json.extend_from_slice(part);
                }
                json
            }
            _ => return Err(corrupt("content")),
        };
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| MessageStoreError::Content(e.to_string()))
    }

    /// The message a provider's id belongs to (one Query on `by-provider-message-id`).
    pub async fn find_by_provider_message_id(
        &self,
        provider: ProviderId,
        provider_message_id: &str,
    ) -> Result<Option<MessageId>, MessageStoreError> {
        let out = self
            .table
            .client()
            .query()
            .table_name(self.table.name())
            .index_name("by-provider-message-id")
            .key_condition_expression("provider_message_key = :key")
            .expression_attribute_values(
                ":key",
                s(provider_message_key(provider, provider_message_id)),
            )
            .limit(1)
            .send()
            .await
            .map_err(|e| MessageStoreError::sdk("Query", e))?;
        Ok(out
            .items()
            .iter()
            .filter_map(|i| get_s(i, "pk")?.strip_prefix("msg#"))
            .find_map(|id| MessageId::parse(id).ok()))
    }
}
