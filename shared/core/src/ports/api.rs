//! The ports of the send API's own routes: API keys as authentication looks them up, messages
//! as callers read and cancel them, and the suppression list as an operator manages it (list,
//! read, replace, remove).

use time::OffsetDateTime;

use super::StoredMessage;
use super::{BoxFuture, StoreError};
use crate::{
    ApiKeyRecord, EmailAddress, KeyEnvironment, KeyHash, MessageId, MessageRecord, MessageState,
    Suppression, SuppressionReason, UnixMillis,
};

/// One page of a suppression listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressionPage {
    /// The active suppressions of this page.
    pub items: Vec<Suppression>,
    /// The opaque cursor of the next page, if there may be one.
    pub next_cursor: Option<String>,
}

/// Why a suppression listing failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SuppressionListError {
    /// The cursor was not made by this listing.
    #[error("the cursor is not one this listing returned")]
    InvalidCursor,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The suppression list, as the administration routes read and change it.
pub trait SuppressionAdmin: Send + Sync {
    /// The stored entry for `address` scoped to `topic` (`None`: the unscoped one), lapsed or
    /// not (a consistent read).
    fn get<'a>(
        &'a self,
        address: &'a EmailAddress,
        topic: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Suppression>, StoreError>>;

    /// Stores `entry`, replacing any entry for its address and topic.
    fn put<'a>(&'a self, entry: &'a Suppression) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Deletes the entry for `address` scoped to `topic` (`None`: the unscoped one); what was
    /// stored (lapsed or not), if anything.
    fn delete<'a>(
        &'a self,
        address: &'a EmailAddress,
        topic: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Suppression>, StoreError>>;

    /// One page of the entries active at `now` (of `reason` only, when given), after `cursor`.
    fn list<'a>(
        &'a self,
        reason: Option<SuppressionReason>,
        cursor: Option<&'a str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<SuppressionPage, SuppressionListError>>;
}

/// The API keys, as authentication looks them up.
pub trait ApiKeys: Send + Sync {
    /// The key stored under `hash`, if any (whatever its state: the core's `authorize` decides).
    fn find<'a>(
        &'a self,
        hash: &'a KeyHash,
    ) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, StoreError>>;
}

/// What cancelling a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancellation {
    /// The message is now `cancelled`; its record as stored.
    Cancelled(Box<MessageRecord>),
    /// The message is past cancelling; its current state.
    NotCancellable(MessageState),
    /// No such message visible to the caller's environment.
    NotFound,
}

/// Messages, as the API's callers read and cancel them.
pub trait MessageDesk: Send + Sync {
    /// The message with its attempts and history; `None` when there is no such message.
    fn get<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<StoredMessage>, StoreError>>;

    /// Cancels the message if it is `scheduled` or `paused` and visible to `environment`.
    fn cancel<'a>(
        &'a self,
        id: &'a MessageId,
        environment: KeyEnvironment,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Cancellation, StoreError>>;
}
