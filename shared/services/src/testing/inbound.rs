//! Fakes of inbound email's ports: objects and records in memory, with the same dedupe rule as
//! the inbound table (a record and its keys written together, or not at all).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use mailgate_core::inbound::{InboundCursor, InboundListing, InboundPage, InboundQuery};
use mailgate_core::ports::{
    BoxFuture, InboundDownloads, InboundObjects, InboundRecorded, InboundRecords,
};
use mailgate_core::{InboundId, InboundMessage, StoreError, StoreErrorKind};

use super::Faults;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Objects in memory: key → (content type, bytes).
#[derive(Debug, Default)]
pub struct MemoryInboundObjects {
    objects: Mutex<HashMap<String, (String, Vec<u8>)>>,
    /// Failures to inject, by operation (`put`, `get`, `download_link`).
    pub faults: Faults,
}

impl MemoryInboundObjects {
    /// The object under `key`: its content type and bytes.
    pub fn object(&self, key: &str) -> Option<(String, Vec<u8>)> {
        lock(&self.objects).get(key).cloned()
    }

    /// How many objects are stored.
    pub fn len(&self) -> usize {
        lock(&self.objects).len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl InboundObjects for MemoryInboundObjects {
    fn put<'a>(
        &'a self,
        key: &'a str,
        content_type: &'a str,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.faults.take("put").map(|()| {
            lock(&self.objects).insert(key.to_owned(), (content_type.to_owned(), bytes.to_vec()));
        });
        Box::pin(async move { result })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>> {
        let result = self
            .faults
            .take("get")
            .map(|()| lock(&self.objects).get(key).map(|(_, b)| b.clone()));
        Box::pin(async move { result })
    }
}

impl InboundDownloads for MemoryInboundObjects {
    fn download_link<'a>(
        &'a self,
        key: &'a str,
        valid_for: Duration,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        let result = self.faults.take("download_link").map(|()| {
            format!(
                "http://127.0.0.1/objects/{key}?expires={}",
                valid_for.as_secs()
            )
        });
        Box::pin(async move { result })
    }
}

/// Records and dedupe keys in memory.
#[derive(Debug, Default)]
pub struct MemoryInboundRecords {
    records: Mutex<HashMap<InboundId, InboundMessage>>,
    keys: Mutex<HashMap<String, InboundId>>,
    /// Failures to inject, by operation (`record`, `update`, `get`).
    pub faults: Faults,
}

impl MemoryInboundRecords {
    /// Every record, in no order.
    pub fn all(&self) -> Vec<InboundMessage> {
        lock(&self.records).values().cloned().collect()
    }
}

impl InboundRecords for MemoryInboundRecords {
    fn record<'a>(
        &'a self,
        message: &'a InboundMessage,
        dedupe_keys: &'a [String],
    ) -> BoxFuture<'a, Result<InboundRecorded, StoreError>> {
        let result = self.faults.take("record").map(|()| {
            let mut keys = lock(&self.keys);
            if let Some(holder) = dedupe_keys.iter().find_map(|k| keys.get(k)) {
                return InboundRecorded::Duplicate(holder.clone());
            }
            for k in dedupe_keys {
                keys.insert(k.clone(), message.id.clone());
            }
            lock(&self.records).insert(message.id.clone(), message.clone());
            InboundRecorded::New
        });
        Box::pin(async move { result })
    }

    fn update<'a>(&'a self, message: &'a InboundMessage) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.faults.take("update").and_then(|()| {
            let mut records = lock(&self.records);
            match records.get_mut(&message.id) {
                Some(stored) => {
                    *stored = message.clone();
                    Ok(())
                }
                None => Err(StoreError::new(
                    StoreErrorKind::ConditionFailed,
                    "update",
                    "no such inbound record",
                )),
            }
        });
        Box::pin(async move { result })
    }

    fn get<'a>(
        &'a self,
        id: &'a InboundId,
    ) -> BoxFuture<'a, Result<Option<InboundMessage>, StoreError>> {
        let result = self
            .faults
            .take("get")
            .map(|()| lock(&self.records).get(id).cloned());
        Box::pin(async move { result })
    }

    fn list<'a>(
        &'a self,
        query: &'a InboundQuery,
    ) -> BoxFuture<'a, Result<InboundPage, StoreError>> {
        let result = self.faults.take("list").map(|()| {
            let lower = |s: &str| s.trim().to_ascii_lowercase();
            let mut matching: Vec<InboundMessage> = lock(&self.records)
                .values()
                .filter(|r| match &query.listing {
                    InboundListing::All => true,
                    InboundListing::Recipient(to) => lower(&r.recipient) == *to,
                    InboundListing::Thread { thread, recipient } => {
                        r.thread.as_ref() == Some(thread)
                            && recipient
                                .as_ref()
                                .is_none_or(|to| lower(&r.recipient) == *to)
                    }
                })
                .filter(|r| query.after.is_none_or(|a| r.received_at > a))
                .filter(|r| query.before.is_none_or(|b| r.received_at < b))
                .cloned()
                .collect();
            // Newest first, ties by id, as the indexes order them.
            matching.sort_by(|a, b| {
                (b.received_at, b.id.as_str()).cmp(&(a.received_at, a.id.as_str()))
            });
            if let Some(c) = &query.cursor {
                matching
                    .retain(|r| (r.received_at, r.id.as_str()) < (c.received_at, c.id.as_str()));
            }
            let more = matching.len() > query.limit;
            matching.truncate(query.limit);
            let next_cursor = more.then(|| {
                let last = &matching[matching.len() - 1];
                InboundCursor {
                    received_at: last.received_at,
                    id: last.id.clone(),
                }
            });
            InboundPage {
                items: matching,
                next_cursor,
            }
        });
        Box::pin(async move { result })
    }
}
