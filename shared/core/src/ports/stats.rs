//! The delivery-statistics port: reading the hour-bucket counters (they are written by the
//! adapters inside the transactions that change state, never through a port of their own).

use std::ops::Range;

use super::{BoxFuture, StoreError};
use crate::KeyEnvironment;
use crate::stats::{HourCounts, StatsDimension};

/// The stored hour-bucket counters.
pub trait DeliveryStats: Send + Sync {
    /// Every stored hour bucket of `dimension` in `environment` whose hour (hours since the
    /// epoch) is in `hours`, one row per hour, value and shard (the caller adds shards up).
    fn hours<'a>(
        &'a self,
        environment: KeyEnvironment,
        dimension: StatsDimension,
        hours: Range<i64>,
    ) -> BoxFuture<'a, Result<Vec<HourCounts>, StoreError>>;
}
