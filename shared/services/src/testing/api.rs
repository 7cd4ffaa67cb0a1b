//! The suppression list's administration port on the in-memory suppressions.

use std::sync::{Mutex, PoisonError};

use mailgate_core::ports::{BoxFuture, SuppressionAdmin, SuppressionListError, SuppressionPage};
use mailgate_core::{EmailAddress, StoreError, Suppression, SuppressionReason};
use time::OffsetDateTime;

use super::MemorySuppressions;

/// The prefix of the fake's cursors: the last address of the previous page follows it.
const CURSOR_PREFIX: &str = "after:";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SuppressionAdmin for MemorySuppressions {
    fn get<'a>(
        &'a self,
        address: &'a EmailAddress,
    ) -> BoxFuture<'a, Result<Option<Suppression>, StoreError>> {
        let result = self
            .faults
            .take("get")
            .map(|()| lock(&self.entries).get(address).cloned());
        Box::pin(async move { result })
    }

    fn put<'a>(&'a self, entry: &'a Suppression) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.faults.take("put").map(|()| {
            lock(&self.entries).insert(entry.address.clone(), entry.clone());
        });
        Box::pin(async move { result })
    }

    fn delete<'a>(
        &'a self,
        address: &'a EmailAddress,
    ) -> BoxFuture<'a, Result<Option<Suppression>, StoreError>> {
        let result = self
            .faults
            .take("delete")
            .map(|()| lock(&self.entries).remove(address));
        Box::pin(async move { result })
    }

    /// Entries in address order; the cursor names the last address of the previous page.
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
                .filter(|s| after.is_none_or(|a| s.address.as_str() > a))
                .cloned()
                .collect();
            items.sort_by(|a, b| a.address.as_str().cmp(b.address.as_str()));
            let more = items.len() > limit;
            items.truncate(limit);
            let next_cursor = more
                .then(|| items.last())
                .flatten()
                .map(|s| format!("{CURSOR_PREFIX}{}", s.address.as_str()));
            Ok(SuppressionPage { items, next_cursor })
        })();
        Box::pin(async move { result })
    }
}
