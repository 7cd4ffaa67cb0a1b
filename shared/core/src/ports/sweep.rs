//! The ports of the sweeper's release jobs: messages held as `scheduled` or `paused` (found by
//! when they are due, released or moved to the pause queue one by one) and the send queue taking
//! pointers with a delay each. The pause switch is [`super::SendControls`].

use std::time::Duration;

use super::{BoxFuture, StoreError};
use crate::{MessageId, MessageRecord, ReleaseQueue, UnixMillis};

/// Messages held for later, as the release jobs see them.
pub trait HeldMessages: Send + Sync {
    /// Ids of messages in `queue` due at `at` (`release_at ≤ at`), oldest first, at most
    /// `limit`. The index behind it may lag: the record says whether each is still held.
    fn due(
        &self,
        queue: ReleaseQueue,
        at: UnixMillis,
        limit: i32,
    ) -> BoxFuture<'_, Result<Vec<MessageId>, StoreError>>;

    /// The message's summary; `None` when there is no such message.
    fn record<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<MessageRecord>, StoreError>>;

    /// Releases a held message: `scheduled`/`paused` → `queued`. `false` when it is no longer
    /// held (cancelled, or released by another sweep), so the caller must not count it.
    fn mark_released<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Holds a scheduled message by the pause switch: `scheduled` → `paused`. `false` when it is
    /// no longer scheduled.
    fn mark_paused<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Leaves a message in `queue` that must stay held (a guardrail on its domain) out of
    /// [`due`](Self::due) until `until`, so the messages behind it are reached; `false` when it
    /// is no longer in `queue`.
    fn hold_until<'a>(
        &'a self,
        id: &'a MessageId,
        queue: ReleaseQueue,
        until: UnixMillis,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// Messages on the watch queue ([`ReleaseQueue::Watch`]) that did not move on in time, as the
/// sweeper's stalled job changes them. Every change is conditional: of two sweeps (or a sweep
/// and a worker) racing for one message, one wins and the other changes nothing.
pub trait StalledMessages: Send + Sync {
    /// A `queued` message still due at `now` gets its next check at `next_check`, and one
    /// more re-enqueue counted: the new count, or `None` when it is no longer queued and due
    /// (a worker took it, or another sweep got there first). The caller enqueues it then.
    fn renew_queued<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
        next_check: UnixMillis,
    ) -> BoxFuture<'a, Result<Option<u32>, StoreError>>;

    /// A `queued` message the sweeper gave up on → `failed` with `reason`; `false` when it is
    /// no longer queued.
    fn fail_queued<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// A `sending` message whose lease lapsed by `now` → `unknown` with `reason` (its sender
    /// died, perhaps after the provider took it: it must not be sent blindly); `false` when it
    /// is no longer sending under a lapsed lease.
    fn abandon_lapsed<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Takes a message that moved on (neither `queued` nor `sending`) off the watch queue;
    /// `false` when it is queued or sending again, or already off it.
    fn unwatch<'a>(&'a self, id: &'a MessageId) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// The send queue taking released messages, each with its own delay.
pub trait ReleaseSendQueue: Send + Sync {
    /// Puts every `(id, delay)` on the send queue in one call (at most ten); fails unless every
    /// entry was accepted (then the caller marks none released, and a later sweep sends them
    /// all again).
    fn enqueue_delayed<'a>(
        &'a self,
        batch: &'a [(MessageId, Duration)],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}
