//! Fakes of the send API's own ports: API keys and messages in memory, and the suppression list's
//! administration port on the in-memory suppressions.

use std::sync::{Mutex, PoisonError};

use mailgate_core::ports::{
    ApiKeys, BoxFuture, Cancellation, MessageDesk, StoredMessage, SuppressionAdmin,
    SuppressionListError, SuppressionPage,
};
use mailgate_core::{
    ApiKeyRecord, EmailAddress, KeyEnvironment, KeyHash, MessageId, MessageState, StoreError,
    Suppression, SuppressionReason, UnixMillis,
};
use time::OffsetDateTime;

use super::{Faults, MemorySuppressions};

/// The prefix of the fake's cursors: the last address of the previous page follows it (then
/// `#` and its topic, when scoped).
const CURSOR_PREFIX: &str = "after:";

/// Where `entry` sorts in the fake's listing: its address, then `#` and its topic when scoped
/// (`#` sorts before any address or topic character, so an address's entries stay together).
fn list_position(entry: &Suppression) -> String {
    match &entry.topic {
        None => entry.address.as_str().to_owned(),
        Some(topic) => format!("{}#{topic}", entry.address.as_str()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SuppressionAdmin for MemorySuppressions {
    fn get<'a>(
        &'a self,
        address: &'a EmailAddress,
        topic: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Suppression>, StoreError>> {
        let key = (address.clone(), topic.map(str::to_owned));
        let result = self
            .faults
            .take("get")
            .map(|()| lock(&self.entries).get(&key).cloned());
        Box::pin(async move { result })
    }

    fn put<'a>(&'a self, entry: &'a Suppression) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.faults.take("put").map(|()| {
            lock(&self.entries).insert((entry.address.clone(), entry.topic.clone()), entry.clone());
        });
        Box::pin(async move { result })
    }

    fn delete<'a>(
        &'a self,
        address: &'a EmailAddress,
        topic: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Suppression>, StoreError>> {
        let key = (address.clone(), topic.map(str::to_owned));
        let result = self
            .faults
            .take("delete")
            .map(|()| lock(&self.entries).remove(&key));
        Box::pin(async move { result })
    }

    /// Entries in address (then topic) order; the cursor names the last entry of the previous
    /// page.
    fn list<'a>(
        &'a self,
        reason: Option<SuppressionReason>,
        cursor: Option<&'a str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<SuppressionPage, SuppressionListError>> {
        let result = (|| {
            self.faults.take("list")?;
            let after = match cursor {
                None => None,
                Some(c) => Some(
                    c.strip_prefix(CURSOR_PREFIX)
                        .ok_or(SuppressionListError::InvalidCursor)?,
                ),
            };
            let mut items: Vec<Suppression> = lock(&self.entries)
                .values()
                .filter(|s| s.is_active_at(now) && reason.is_none_or(|r| s.reason == r))
                .filter(|s| after.is_none_or(|a| list_position(s).as_str() > a))
                .cloned()
                .collect();
            items.sort_by_key(list_position);
            let more = items.len() > limit;
            items.truncate(limit);
            let next_cursor = more
                .then(|| items.last())
                .flatten()
                .map(|s| format!("{CURSOR_PREFIX}{}", list_position(s)));
            Ok(SuppressionPage { items, next_cursor })
        })();
        Box::pin(async move { result })
    }
}

/// API keys in memory.
#[derive(Debug, Default)]
pub struct MemoryApiKeys {
    records: Mutex<Vec<ApiKeyRecord>>,
    /// Failures to inject (`find`).
    pub faults: Faults,
}

impl MemoryApiKeys {
    /// Stores `record`.
    pub fn insert(&self, record: ApiKeyRecord) {
        lock(&self.records).push(record);
    }

    /// The key stored under `hash`, if any.
    pub fn record(&self, hash: &KeyHash) -> Option<ApiKeyRecord> {
        lock(&self.records)
            .iter()
            .find(|r| r.hash == *hash)
            .cloned()
    }

    /// Revokes the key stored under `hash` at `at`.
    pub fn revoke(&self, hash: &KeyHash, at: OffsetDateTime) {
        for record in lock(&self.records).iter_mut().filter(|r| r.hash == *hash) {
            record.revoked_at = Some(at);
        }
    }
}

impl ApiKeys for MemoryApiKeys {
    fn find<'a>(
        &'a self,
        hash: &'a KeyHash,
    ) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, StoreError>> {
        let result = self.faults.take("find").map(|()| {
            lock(&self.records)
                .iter()
                .find(|r| r.hash == *hash)
                .cloned()
        });
        Box::pin(async move { result })
    }
}

/// Messages in memory, as the API's callers read and cancel them.
#[derive(Debug, Default)]
pub struct MemoryMessageDesk {
    messages: Mutex<std::collections::HashMap<MessageId, StoredMessage>>,
    /// Failures to inject (`get`, `cancel`).
    pub faults: Faults,
}

impl MemoryMessageDesk {
    /// Stores `message`.
    pub fn insert(&self, message: StoredMessage) {
        lock(&self.messages).insert(message.record.id.clone(), message);
    }

    /// The stored message `id`, if any.
    pub fn message(&self, id: &MessageId) -> Option<StoredMessage> {
        lock(&self.messages).get(id).cloned()
    }
}

impl MessageDesk for MemoryMessageDesk {
    fn get<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<StoredMessage>, StoreError>> {
        let result = self.faults.take("get").map(|()| self.message(id));
        Box::pin(async move { result })
    }

    /// Cancels as the adapter's conditional write does: a message of another environment is
    /// not found; only a `scheduled` or `paused` one is cancelled.
    fn cancel<'a>(
        &'a self,
        id: &'a MessageId,
        environment: KeyEnvironment,
        _now: UnixMillis,
    ) -> BoxFuture<'a, Result<Cancellation, StoreError>> {
        let result = self.faults.take("cancel").map(|()| {
            let mut messages = lock(&self.messages);
            match messages.get_mut(id) {
                Some(m) if !m.record.visible_to(environment) => Cancellation::NotFound,
                Some(m) if m.record.state.is_cancellable() => {
                    m.record.state = MessageState::Cancelled;
                    Cancellation::Cancelled(Box::new(m.record.clone()))
                }
                Some(m) => Cancellation::NotCancellable(m.record.state),
                None => Cancellation::NotFound,
            }
        });
        Box::pin(async move { result })
    }
}
