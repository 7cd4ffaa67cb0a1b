//! The delivery-statistics port: reading the hour-bucket counters (they are written by the
//! adapters inside the transactions that change state, never through a port of their own).

use std::ops::Range;

use super::{BoxFuture, StoreError};
use crate::guardrail::GuardrailTrip;
use crate::stats::{HourCounts, StatsDimension};
use crate::{KeyEnvironment, ProviderId, UnixMillis};

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

/// A route's guardrail switch as stored: whether bulk through it is paused, and since when it
/// runs again (a resume starts a fresh window).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteGuard {
    /// Paused by a guardrail that tripped.
    pub paused: bool,
    /// When an operator last resumed it.
    pub resumed_at: Option<UnixMillis>,
}

/// What the reputation guardrails read and write: a route's counters and its pause switch.
pub trait ReputationGuard: Send + Sync {
    /// The hour buckets (shards apart) of bulk and transactional mail from `sending_domain`
    /// through `provider` in `environment` whose hour is in `hours`.
    fn route_hours<'a>(
        &'a self,
        environment: KeyEnvironment,
        provider: ProviderId,
        sending_domain: &'a str,
        hours: Range<i64>,
    ) -> BoxFuture<'a, Result<Vec<HourCounts>, StoreError>>;

    /// The route's switch (a consistent read).
    fn route_guard<'a>(
        &'a self,
        provider: ProviderId,
        sending_domain: &'a str,
    ) -> BoxFuture<'a, Result<RouteGuard, StoreError>>;

    /// Pauses bulk through the trip's route, keeping the trip as the reason; `false` when it
    /// was paused already (someone else tripped it first).
    fn trip<'a>(
        &'a self,
        trip: &'a GuardrailTrip,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}
