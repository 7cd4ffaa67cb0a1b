//! The port of message search (`GET /v1/messages`, `GET /v1/recipients/{address}`): pages of
//! messages found through an index, the latest event of a message, and every suppression
//! entry of one address.

use super::{BoxFuture, StoreError};
use crate::search::{LastEvent, MessageQuery};
use crate::{EmailAddress, MessageId, MessageRecord, Suppression};

/// One page of found messages, before their latest events are read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FoundMessages {
    /// The messages, newest first.
    pub records: Vec<MessageRecord>,
    /// The cursor of the next page, when there may be one.
    pub next_cursor: Option<String>,
    /// The read budget ran out before the page was full; `next_cursor` continues it.
    pub truncated: bool,
}

/// Why a search failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SearchError {
    /// The cursor was not made by this listing for these filters.
    #[error("the cursor is not one this listing returned for these filters")]
    InvalidCursor,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Messages found by their recipients, correlation id, tags, state, category, provider and
/// creation time, through indexes only (never a scan).
pub trait MessageSearch: Send + Sync {
    /// One page of the messages of `query.environment` matching `query.filter`, newest first.
    fn find<'a>(
        &'a self,
        query: &'a MessageQuery,
    ) -> BoxFuture<'a, Result<FoundMessages, SearchError>>;

    /// The latest event of the message's history, if any.
    fn last_event<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<LastEvent>, StoreError>>;

    /// Every stored suppression entry of `address` (unscoped and per topic), lapsed or not.
    fn suppressions_of<'a>(
        &'a self,
        address: &'a EmailAddress,
    ) -> BoxFuture<'a, Result<Vec<Suppression>, StoreError>>;
}
