//! Finding messages through the search indexes (see `mailgate_core::search` for the choice of
//! index). Layout:
//!
//! - the summary carries `created_key = <environment>#<created ms, 15 digits>#<id>` (the sort
//!   key of every search index) and `recipient_keys` (the recipients' hashes, for filter
//!   expressions); its own `environment`, `state`, `category`, `provider` and `correlation_id`
//!   are the partition keys of `by-environment`, `by-state`, `by-category`, `by-provider` and
//!   `by-correlation-id`, so a state change moves it with no extra write;
//! - `pk = msg#<id>#search`, `sk = rcpt#<hash>` / `tag#<tag>`: one entry per distinct
//!   recipient and per tag, written in the create transaction, expiring with the message, with
//!   `search_key` (= its `sk`, the `by-search-key` partition key), `created_key` and copies of
//!   the message's immutable category and correlation id (as `entry_category` and
//!   `entry_correlation_id`: under their own names they would land in the summary indexes),
//!   `tags` and `recipient_keys`.
//!
//! A page reads the index newest first (one Query per round trip, every filter not in the key
//! condition as a filter expression), then the summaries (one BatchGetItem). A page stops at
//! `limit` messages, or when [`READ_BUDGET_ITEMS`] index entries were evaluated or
//! [`MAX_ROUND_TRIPS`] Queries made: then it says `truncated` and its cursor continues it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailgate_core::ports::{FoundMessages, SearchError};
use mailgate_core::search::{LastEvent, MessageQuery, SearchIndex, recipient_hash};
use serde::{Deserialize, Serialize};

use aws_sdk_dynamodb::types::KeysAndAttributes;
use mailgate_core::StoreError;

use super::*;

/// Index entries one page may evaluate (matched or filtered out) before it stops short.
pub const READ_BUDGET_ITEMS: i32 = 500;
/// Queries one page may make before it stops short.
pub const MAX_ROUND_TRIPS: usize = 5;
/// The sort-key attribute of every search index.
pub const CREATED_KEY: &str = "created_key";
/// The partition-key attribute of the `by-search-key` entries.
pub const SEARCH_KEY: &str = "search_key";
/// A search entry's copy of the message's category.
const ENTRY_CATEGORY: &str = "entry_category";
/// A search entry's copy of the message's correlation id.
const ENTRY_CORRELATION_ID: &str = "entry_correlation_id";
/// The summaries one BatchGetItem may ask for.
const BATCH_GET_LIMIT: usize = 100;
/// How many times a batch get's unprocessed keys are asked for again.
const UNPROCESSED_RETRIES: u32 = 5;

/// `created_key` of a message: its environment, creation time and id, sorting by time.
pub fn created_key(environment: KeyEnvironment, created_at: UnixMillis, id: &MessageId) -> String {
    format!(
        "{}#{:015}#{id}",
        environment.as_str(),
        created_at.as_i64().max(0)
    )
}

/// The partition key of a message's search entries.
fn search_pk(id: &MessageId) -> String {
    format!("msg#{id}#search")
}

/// The recipients' hashes, each once, in the recipients' order.
pub(crate) fn recipient_keys(record: &MessageRecord) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for r in &record.recipients {
        let key = recipient_hash(&r.address);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// The `search_key` of a recipient entry.
fn recipient_search_key(hash: &str) -> String {
    format!("rcpt#{hash}")
}

/// The `search_key` of a tag entry.
fn tag_search_key(tag: &str) -> String {
    format!("tag#{tag}")
}

fn string_list(values: &[String]) -> AttributeValue {
    AttributeValue::L(values.iter().map(s).collect())
}

/// The search attributes of the summary item.
pub(crate) fn add_summary_search_attributes(record: &MessageRecord, item: &mut Item) {
    item.insert(
        CREATED_KEY.to_owned(),
        s(created_key(
            record.environment,
            record.created_at,
            &record.id,
        )),
    );
    item.insert(
        "recipient_keys".to_owned(),
        string_list(&recipient_keys(record)),
    );
}

/// The search entries of a new message (one per distinct recipient, one per tag), each
/// expiring with it.
pub(crate) fn search_entries(record: &MessageRecord, expires_at: &AttributeValue) -> Vec<Item> {
    let keys = recipient_keys(record);
    let mut tags: Vec<&String> = Vec::new();
    for tag in &record.tags {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    let search_keys = keys
        .iter()
        .map(|k| recipient_search_key(k))
        .chain(tags.iter().map(|t| tag_search_key(t)));
    search_keys
        .map(|key| {
            let mut item = HashMap::from([
                ("pk".to_owned(), s(search_pk(&record.id))),
                ("sk".to_owned(), s(&key)),
                (SEARCH_KEY.to_owned(), s(key)),
                (
                    CREATED_KEY.to_owned(),
                    s(created_key(
                        record.environment,
                        record.created_at,
                        &record.id,
                    )),
                ),
                ("id".to_owned(), s(record.id.as_str())),
                // Copies under their own names: `category` and `correlation_id` are partition
                // keys of summary indexes, which must hold summaries only.
                (ENTRY_CATEGORY.to_owned(), s(record.category.as_str())),
                ("recipient_keys".to_owned(), string_list(&keys)),
                ("expires_at".to_owned(), expires_at.clone()),
            ]);
            if !record.tags.is_empty() {
                item.insert("tags".to_owned(), string_list(&record.tags));
            }
            if let Some(c) = &record.correlation_id {
                item.insert(ENTRY_CORRELATION_ID.to_owned(), s(c));
            }
            item
        })
        .collect()
}

/// Where a listing continues: the index, its partition value and the last entry's keys.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Cursor {
    /// The index (`SearchIndex::as_str`).
    i: String,
    /// The partition value queried.
    h: String,
    pk: String,
    sk: String,
    /// `created_key` of the last entry.
    c: String,
}

/// The index name, its partition-key attribute and the value a query reads.
fn index_of(query: &MessageQuery) -> (SearchIndex, &'static str, &'static str, String) {
    let f = &query.filter;
    let index = f.index();
    match index {
        SearchIndex::State => (
            index,
            "by-state",
            "state",
            f.state.map(|v| v.as_str().to_owned()).unwrap_or_default(),
        ),
        SearchIndex::Provider => (
            index,
            "by-provider",
            "provider",
            f.provider
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default(),
        ),
        SearchIndex::Recipient => (
            index,
            "by-search-key",
            SEARCH_KEY,
            f.recipient
                .as_ref()
                .map(|a| recipient_search_key(&recipient_hash(a)))
                .unwrap_or_default(),
        ),
        SearchIndex::CorrelationId => (
            index,
            "by-correlation-id",
            "correlation_id",
            f.correlation_id.clone().unwrap_or_default(),
        ),
        SearchIndex::Tag => (
            index,
            "by-search-key",
            SEARCH_KEY,
            f.tag.as_deref().map(tag_search_key).unwrap_or_default(),
        ),
        SearchIndex::Category => (
            index,
            "by-category",
            "category",
            f.category
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default(),
        ),
        SearchIndex::Environment => (
            index,
            "by-environment",
            "environment",
            query.environment.as_str().to_owned(),
        ),
    }
}

/// The filter expression for the filters the index's key does not serve, with its values.
fn filter_expression(query: &MessageQuery) -> (Option<String>, Vec<(String, AttributeValue)>) {
    let f = &query.filter;
    let index = f.index();
    let mut terms: Vec<String> = Vec::new();
    let mut values = Vec::new();
    let on_entries = matches!(index, SearchIndex::Recipient | SearchIndex::Tag);
    let (category, correlation_id) = if on_entries {
        (ENTRY_CATEGORY, ENTRY_CORRELATION_ID)
    } else {
        ("category", "correlation_id")
    };
    if let Some(a) = &f.recipient
        && index != SearchIndex::Recipient
    {
        terms.push("contains(recipient_keys, :f_rcpt)".to_owned());
        values.push((":f_rcpt".to_owned(), s(recipient_hash(a))));
    }
    if let Some(c) = &f.correlation_id
        && index != SearchIndex::CorrelationId
    {
        terms.push(format!("{correlation_id} = :f_cid"));
        values.push((":f_cid".to_owned(), s(c)));
    }
    if let Some(t) = &f.tag
        && index != SearchIndex::Tag
    {
        terms.push("contains(tags, :f_tag)".to_owned());
        values.push((":f_tag".to_owned(), s(t)));
    }
    if let Some(c) = f.category
        && index != SearchIndex::Category
    {
        terms.push(format!("{category} = :f_cat"));
        values.push((":f_cat".to_owned(), s(c.as_str())));
    }
    if let Some(p) = f.provider
        && index != SearchIndex::Provider
    {
        terms.push("provider = :f_prov".to_owned());
        values.push((":f_prov".to_owned(), s(p.as_str())));
    }
    if terms.is_empty() {
        (None, values)
    } else {
        (Some(terms.join(" AND ")), values)
    }
}

fn encode_cursor(cursor: &Cursor) -> Option<String> {
    serde_json::to_vec(cursor)
        .ok()
        .map(|json| URL_SAFE_NO_PAD.encode(json))
}

fn decode_cursor(text: &str) -> Option<Cursor> {
    let json = URL_SAFE_NO_PAD.decode(text).ok()?;
    serde_json::from_slice(&json).ok()
}

impl DynamoDbMessages {
    /// One page of messages matching `query` (see the module's notes on the read budget).
    pub async fn find(&self, query: &MessageQuery) -> Result<FoundMessages, SearchError> {
        let (index, index_name, hash_attr, hash_value) = index_of(query);
        let env_prefix = format!("{}#", query.environment.as_str());
        let low = match query.filter.after {
            Some(after) => format!("{env_prefix}{:015}", after.as_i64().max(0)),
            None => env_prefix.clone(),
        };
        let high = match query.filter.before {
            Some(before) => format!("{env_prefix}{:015}", before.as_i64().max(0)),
            // `~` sorts after every digit: the environment's whole range.
            None => format!("{env_prefix}~"),
        };
        let mut start: Option<Item> = match &query.cursor {
            None => None,
            Some(text) => {
                let cursor = decode_cursor(text).ok_or(SearchError::InvalidCursor)?;
                if cursor.i != index.as_str()
                    || cursor.h != hash_value
                    || !cursor.c.starts_with(&env_prefix)
                {
                    return Err(SearchError::InvalidCursor);
                }
                Some(HashMap::from([
                    ("pk".to_owned(), s(cursor.pk)),
                    ("sk".to_owned(), s(cursor.sk)),
                    (hash_attr.to_owned(), s(cursor.h)),
                    (CREATED_KEY.to_owned(), s(cursor.c)),
                ]))
            }
        };
        let (filter, filter_values) = filter_expression(query);
        let cursor_of = |item: &Item| {
            encode_cursor(&Cursor {
                i: index.as_str().to_owned(),
                h: hash_value.clone(),
                pk: get_s(item, "pk").unwrap_or_default().to_owned(),
                sk: get_s(item, "sk").unwrap_or_default().to_owned(),
                c: get_s(item, CREATED_KEY).unwrap_or_default().to_owned(),
            })
        };

        let mut ids: Vec<MessageId> = Vec::new();
        let mut evaluated = 0i32;
        let mut round_trips = 0;
        let mut next_cursor = None;
        let mut truncated = false;
        loop {
            let want = query.limit - ids.len();
            // Without a filter every evaluated entry is a match: read exactly what is wanted.
            // With one, read twice as far on each round trip (a filter that matches most
            // entries costs little more than the page; a rare match reaches the budget in a
            // few reads), never past the budget, and keep the first `want` matches.
            let want_i32 = i32::try_from(want).unwrap_or(i32::MAX);
            let read = if filter.is_some() {
                let growing = want_i32.max(10).saturating_mul(1 << round_trips.min(8));
                growing.min(READ_BUDGET_ITEMS - evaluated).max(1)
            } else {
                want_i32
            };
            let mut request = self
                .table
                .client()
                .query()
                .table_name(self.table.name())
                .index_name(index_name)
                .key_condition_expression("#h = :h AND #c BETWEEN :low AND :high")
                .expression_attribute_names("#h", hash_attr)
                .expression_attribute_names("#c", CREATED_KEY)
                .expression_attribute_values(":h", s(&hash_value))
                .expression_attribute_values(":low", s(&low))
                .expression_attribute_values(":high", s(&high))
                .scan_index_forward(false)
                .limit(read)
                .set_filter_expression(filter.clone())
                .set_exclusive_start_key(start.take());
            for (name, value) in &filter_values {
                request = request.expression_attribute_values(name, value.clone());
            }
            let out = request
                .send()
                .await
                .map_err(|e| StoreError::from(MessageStoreError::sdk("Query", e)))?;
            round_trips += 1;
            evaluated += out.scanned_count;
            let items = out.items.unwrap_or_default();
            let mut full_at = None;
            for (i, item) in items.iter().enumerate() {
                let id = get_s(item, "id")
                    .and_then(|v| MessageId::parse(v).ok())
                    .ok_or_else(|| {
                        StoreError::from(MessageStoreError::Corrupt {
                            id: get_s(item, "pk").unwrap_or_default().to_owned(),
                            what: "search entry".into(),
                        })
                    })?;
                ids.push(id);
                if ids.len() == query.limit {
                    full_at = Some(i);
                    break;
                }
            }
            let last_evaluated = out.last_evaluated_key.filter(|k| !k.is_empty());
            if let Some(i) = full_at {
                // Full: continue after the last message returned, unless the index ended there.
                let ended = i + 1 == items.len() && last_evaluated.is_none();
                if !ended {
                    next_cursor = cursor_of(&items[i]);
                }
                break;
            }
            match last_evaluated {
                None => break,
                Some(key) => {
                    if evaluated >= READ_BUDGET_ITEMS || round_trips >= MAX_ROUND_TRIPS {
                        next_cursor = cursor_of(&key);
                        truncated = true;
                        break;
                    }
                    start = Some(key);
                }
            }
        }
        let records = self
            .summaries(&ids)
            .await?
            .into_iter()
            .filter(|r| r.visible_to(query.environment) && query.filter.matches(r))
            .collect();
        Ok(FoundMessages {
            records,
            next_cursor,
            truncated,
        })
    }

    /// The summaries of `ids` in that order (eventually consistent BatchGetItem per 100);
    /// messages gone since (expired) are left out.
    async fn summaries(&self, ids: &[MessageId]) -> Result<Vec<MessageRecord>, StoreError> {
        let mut by_id: HashMap<String, MessageRecord> = HashMap::new();
        for chunk in ids.chunks(BATCH_GET_LIMIT) {
            let keys: Vec<Item> = chunk
                .iter()
                .map(|id| {
                    HashMap::from([
                        ("pk".to_owned(), s(message_pk(id))),
                        ("sk".to_owned(), s(SUMMARY)),
                    ])
                })
                .collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .build()
                    .map_err(|e| StoreError::from(MessageStoreError::built("BatchGetItem", e)))?,
            );
            let mut tries = 0;
            while let Some(request) = pending.take() {
                let out = self
                    .table
                    .client()
                    .batch_get_item()
                    .request_items(self.table.name(), request)
                    .send()
                    .await
                    .map_err(|e| StoreError::from(MessageStoreError::sdk("BatchGetItem", e)))?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(self.table.name())
                    .unwrap_or_default()
                {
                    let record = record_from(&item)?;
                    by_id.insert(record.id.as_str().to_owned(), record);
                }
                pending = out
                    .unprocessed_keys
                    .unwrap_or_default()
                    .remove(self.table.name())
                    .filter(|k| !k.keys().is_empty());
                tries += 1;
                if pending.is_some() && tries > UNPROCESSED_RETRIES {
                    return Err(StoreError::new(
                        mailgate_core::StoreErrorKind::Throttled,
                        "BatchGetItem",
                        "summaries left unprocessed after retries",
                    ));
                }
            }
        }
        Ok(ids
            .iter()
            .filter_map(|id| by_id.remove(id.as_str()))
            .collect())
    }

    /// The latest entry of the message's history (one Query, newest first, one item).
    pub async fn last_event(&self, id: &MessageId) -> Result<Option<LastEvent>, StoreError> {
        let pk = message_pk(id);
        let out = self
            .table
            .client()
            .query()
            .table_name(self.table.name())
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":prefix", s(crate::history::EVENT_PREFIX))
            .scan_index_forward(false)
            .limit(1)
            .send()
            .await
            .map_err(|e| StoreError::from(MessageStoreError::sdk("Query", e)))?;
        match out.items().first() {
            None => Ok(None),
            Some(item) => {
                let entry = crate::history::history_entry(&pk, item).map_err(|e| {
                    StoreError::new(mailgate_core::StoreErrorKind::Corrupt, "Query", e)
                })?;
                Ok(Some(LastEvent {
                    kind: entry.event.kind,
                    at: entry.event.occurred_at.unwrap_or(entry.event.received_at),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_keys_sort_by_time_within_an_environment() {
        let id = MessageId::generate();
        let early = created_key(KeyEnvironment::Live, UnixMillis(999), &id);
        let late = created_key(KeyEnvironment::Live, UnixMillis(1_000), &id);
        assert!(early < late);
        assert!(early.starts_with("live#000000000000999#msg_"));
        assert!(late.as_str() < "live#~");
    }

    #[test]
    fn a_cursor_reads_back_and_garbage_is_refused() {
        let c = Cursor {
            i: "recipient".into(),
            h: "rcpt#ab".into(),
            pk: "msg#x#search".into(),
            sk: "rcpt#ab".into(),
            c: "live#1#x".into(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&c).unwrap()), Some(c));
        assert_eq!(decode_cursor("not a cursor"), None);
    }
}
