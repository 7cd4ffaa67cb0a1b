//! The ports of the send API's administration routes: the suppression list as an operator
//! manages it (list, read, replace, remove).

use time::OffsetDateTime;

use super::{BoxFuture, StoreError};
use crate::{EmailAddress, Suppression, SuppressionReason};

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
    /// The stored entry for `address`, lapsed or not (a consistent read).
    fn get<'a>(
        &'a self,
        address: &'a EmailAddress,
    ) -> BoxFuture<'a, Result<Option<Suppression>, StoreError>>;

    /// Stores `entry`, replacing any entry for its address.
    fn put<'a>(&'a self, entry: &'a Suppression) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Deletes the entry for `address`; what was stored (lapsed or not), if anything.
    fn delete<'a>(
        &'a self,
        address: &'a EmailAddress,
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
