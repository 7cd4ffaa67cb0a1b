//! Fakes of the release jobs' ports: held messages (found by their release queue and time, as
//! the `by-release` index does) and the send queue taking delayed pointers.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use mailgate_core::ports::{BoxFuture, HeldMessages, ReleaseSendQueue, StalledMessages};
use mailgate_core::{
    MessageId, MessageRecord, MessageState, ReleaseQueue, StoreError, StoreErrorKind, UnixMillis,
};

use super::Faults;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Message records in memory, with the release index derived from their state.
#[derive(Debug, Default)]
pub struct MemoryHeldMessages {
    records: Mutex<HashMap<MessageId, MessageRecord>>,
    /// Ids the index still lists after their record went (the index lags the table).
    pub ghosts: Mutex<Vec<(ReleaseQueue, MessageId)>>,
    /// The watch queue's next check and re-enqueue count of messages the stalled job renewed
    /// (the others are due as [`MessageRecord::release_at`] says).
    watch: Mutex<HashMap<MessageId, (UnixMillis, u32)>>,
    /// When messages the release job held back are next due (instead of their `release_at`).
    held_until: Mutex<HashMap<MessageId, UnixMillis>>,
    /// Why the stalled job gave up on a message.
    pub reasons: Mutex<HashMap<MessageId, String>>,
    /// Failures to inject, by operation (`due`, `record`, `mark_released`, `mark_paused`,
    /// `renew_queued`, `fail_queued`, `abandon_lapsed`, `unwatch`).
    pub faults: Faults,
}

impl MemoryHeldMessages {
    /// Stores `record`.
    pub fn put(&self, record: MessageRecord) {
        lock(&self.records).insert(record.id.clone(), record);
    }

    /// The record of `id`, if any.
    pub fn get(&self, id: &MessageId) -> Option<MessageRecord> {
        lock(&self.records).get(id).cloned()
    }

    /// How many times the stalled job re-enqueued `id`.
    pub fn requeues(&self, id: &MessageId) -> u32 {
        lock(&self.watch).get(id).map_or(0, |w| w.1)
    }

    fn due_at(&self, r: &MessageRecord) -> UnixMillis {
        match lock(&self.watch).get(&r.id) {
            Some((at, _)) if r.state == MessageState::Queued => *at,
            _ => lock(&self.held_until)
                .get(&r.id)
                .copied()
                .unwrap_or_else(|| r.release_at()),
        }
    }

    fn transition(
        &self,
        id: &MessageId,
        from: &[MessageState],
        to: MessageState,
        now: UnixMillis,
    ) -> bool {
        match lock(&self.records).get_mut(id) {
            Some(r) if from.contains(&r.state) => {
                r.state = to;
                r.updated_at = now;
                true
            }
            _ => false,
        }
    }
}

impl HeldMessages for MemoryHeldMessages {
    fn due(
        &self,
        queue: ReleaseQueue,
        at: UnixMillis,
        limit: i32,
    ) -> BoxFuture<'_, Result<Vec<MessageId>, StoreError>> {
        let result = self.faults.take("due").map(|()| {
            let mut due: Vec<(UnixMillis, MessageId)> = lock(&self.records)
                .values()
                .filter(|r| r.release_queue() == Some(queue) && self.due_at(r) <= at)
                .map(|r| (self.due_at(r), r.id.clone()))
                .collect();
            due.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.as_str().cmp(b.1.as_str())));
            let ghosts = lock(&self.ghosts);
            ghosts
                .iter()
                .filter(|(q, _)| *q == queue)
                .map(|(_, id)| id.clone())
                .chain(due.into_iter().map(|(_, id)| id))
                .take(usize::try_from(limit).unwrap_or(0))
                .collect()
        });
        Box::pin(async move { result })
    }

    fn record<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<MessageRecord>, StoreError>> {
        let result = self.faults.take("record").map(|()| self.get(id));
        Box::pin(async move { result })
    }

    fn mark_released<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let result = self.faults.take("mark_released").map(|()| {
            self.transition(
                id,
                &[MessageState::Scheduled, MessageState::Paused],
                MessageState::Queued,
                now,
            )
        });
        Box::pin(async move { result })
    }

    fn mark_paused<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let result = self
            .faults
            .take("mark_paused")
            .map(|()| self.transition(id, &[MessageState::Scheduled], MessageState::Paused, now));
        Box::pin(async move { result })
    }

    fn hold_until<'a>(
        &'a self,
        id: &'a MessageId,
        queue: ReleaseQueue,
        until: UnixMillis,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let result = self.faults.take("hold_until").map(|()| {
            let held = self
                .get(id)
                .is_some_and(|r| r.release_queue() == Some(queue));
            if held {
                lock(&self.held_until).insert(id.clone(), until);
            }
            held
        });
        Box::pin(async move { result })
    }
}

/// The send queue in memory, taking delayed pointers in calls of at most ten.
#[derive(Debug, Default)]
pub struct MemoryReleaseQueue {
    entries: Mutex<Vec<(MessageId, Duration)>>,
    calls: Mutex<usize>,
    /// Failures to inject (`enqueue_delayed`).
    pub faults: Faults,
}

impl MemoryReleaseQueue {
    /// Every pointer enqueued so far, in order, with its delay.
    pub fn entries(&self) -> Vec<(MessageId, Duration)> {
        lock(&self.entries).clone()
    }

    /// Calls made that succeeded.
    pub fn calls(&self) -> usize {
        *lock(&self.calls)
    }
}

impl StalledMessages for MemoryHeldMessages {
    fn renew_queued<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
        next_check: UnixMillis,
    ) -> BoxFuture<'a, Result<Option<u32>, StoreError>> {
        let result = self.faults.take("renew_queued").map(|()| {
            let record = self.get(id)?;
            if record.state != MessageState::Queued || self.due_at(&record) > now {
                return None;
            }
            let mut watch = lock(&self.watch);
            let entry = watch.entry(id.clone()).or_insert((next_check, 0));
            entry.0 = next_check;
            entry.1 += 1;
            Some(entry.1)
        });
        Box::pin(async move { result })
    }

    fn fail_queued<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let result = self.faults.take("fail_queued").map(|()| {
            let moved = self.transition(id, &[MessageState::Queued], MessageState::Failed, now);
            if moved {
                lock(&self.reasons).insert(id.clone(), reason.to_owned());
            }
            moved
        });
        Box::pin(async move { result })
    }

    fn abandon_lapsed<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let result = self.faults.take("abandon_lapsed").map(|()| {
            let lapsed = self
                .get(id)
                .is_some_and(|r| r.sending_until.is_none_or(|u| u <= now));
            let moved =
                lapsed && self.transition(id, &[MessageState::Sending], MessageState::Unknown, now);
            if moved {
                lock(&self.reasons).insert(id.clone(), reason.to_owned());
            }
            moved
        });
        Box::pin(async move { result })
    }

    fn unwatch<'a>(&'a self, id: &'a MessageId) -> BoxFuture<'a, Result<bool, StoreError>> {
        // The fake's watch queue follows the state; a moved-on message is off it already.
        let result = self
            .faults
            .take("unwatch")
            .map(|()| lock(&self.watch).remove(id).is_some());
        Box::pin(async move { result })
    }
}

impl ReleaseSendQueue for MemoryReleaseQueue {
    fn enqueue_delayed<'a>(
        &'a self,
        batch: &'a [(MessageId, Duration)],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.faults.take("enqueue_delayed").and_then(|()| {
            if batch.len() > 10 {
                return Err(StoreError::new(
                    StoreErrorKind::Other,
                    "enqueue_delayed",
                    "more than ten entries in one call",
                ));
            }
            lock(&self.entries).extend(batch.iter().cloned());
            *lock(&self.calls) += 1;
            Ok(())
        });
        Box::pin(async move { result })
    }
}
