//! Message search in memory: the records, their latest events and suppression entries, found
//! by the core's own filter ([`MessageFilter::matches`](mailgate_core::search::MessageFilter)),
//! newest first, with an offset for a cursor.

use std::collections::HashMap;
use std::sync::Mutex;

use mailgate_core::ports::{BoxFuture, FoundMessages, MessageSearch, SearchError};
use mailgate_core::search::{LastEvent, MessageQuery};
use mailgate_core::{
    EmailAddress, MessageId, MessageRecord, StoreError, Suppression, suppression_key,
};

use super::Faults;

/// Messages, last events and suppression entries in memory.
#[derive(Debug, Default)]
pub struct MemoryMessageSearch {
    records: Mutex<Vec<MessageRecord>>,
    last_events: Mutex<HashMap<MessageId, LastEvent>>,
    suppressions: Mutex<Vec<Suppression>>,
    /// Pages end `truncated` after this many records were looked at (none: never).
    pub budget: Mutex<Option<usize>>,
    /// Failures to inject (`find`, `last_event`, `suppressions_of`).
    pub faults: Faults,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryMessageSearch {
    /// Stores `record`.
    pub fn insert(&self, record: MessageRecord) {
        lock(&self.records).push(record);
    }

    /// Records the latest event of message `id`.
    pub fn set_last_event(&self, id: &MessageId, event: LastEvent) {
        lock(&self.last_events).insert(id.clone(), event);
    }

    /// Stores a suppression entry.
    pub fn suppress(&self, entry: Suppression) {
        lock(&self.suppressions).push(entry);
    }
}

impl MessageSearch for MemoryMessageSearch {
    fn find<'a>(
        &'a self,
        query: &'a MessageQuery,
    ) -> BoxFuture<'a, Result<FoundMessages, SearchError>> {
        let result = self
            .faults
            .take("find")
            .map_err(SearchError::from)
            .and_then(|()| {
                let offset = match &query.cursor {
                    None => 0,
                    Some(c) => c.parse::<usize>().map_err(|_| SearchError::InvalidCursor)?,
                };
                let mut all: Vec<MessageRecord> = lock(&self.records)
                    .iter()
                    .filter(|r| r.visible_to(query.environment))
                    .cloned()
                    .collect();
                all.sort_by(|a, b| {
                    (b.created_at, b.id.as_str()).cmp(&(a.created_at, a.id.as_str()))
                });
                let budget = lock(&self.budget).unwrap_or(usize::MAX);
                let mut records = Vec::new();
                let mut looked = 0;
                let mut at = offset;
                while at < all.len() && records.len() < query.limit {
                    if looked == budget {
                        return Ok(FoundMessages {
                            records,
                            next_cursor: Some(at.to_string()),
                            truncated: true,
                        });
                    }
                    looked += 1;
                    if query.filter.matches(&all[at]) {
                        records.push(all[at].clone());
                    }
                    at += 1;
                }
                Ok(FoundMessages {
                    records,
                    next_cursor: (at < all.len()).then(|| at.to_string()),
                    truncated: false,
                })
            });
        Box::pin(async move { result })
    }

    fn last_event<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<LastEvent>, StoreError>> {
        let result = self
            .faults
            .take("last_event")
            .map(|()| lock(&self.last_events).get(id).copied());
        Box::pin(async move { result })
    }

    fn suppressions_of<'a>(
        &'a self,
        address: &'a EmailAddress,
    ) -> BoxFuture<'a, Result<Vec<Suppression>, StoreError>> {
        let key = suppression_key(address);
        let result = self.faults.take("suppressions_of").map(|()| {
            lock(&self.suppressions)
                .iter()
                .filter(|s| suppression_key(&s.address) == key)
                .cloned()
                .collect()
        });
        Box::pin(async move { result })
    }
}
