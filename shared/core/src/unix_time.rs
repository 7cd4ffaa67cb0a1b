//! Stored instants: whole milliseconds since the Unix epoch.
//!
//! Values that adapters persist (breaker state, token buckets, idempotency records) keep their
//! instants as a plain integer, so they map to a DynamoDB number without a date format and compare
//! in condition expressions. Callers hand in and get back `OffsetDateTime`; this type converts at
//! the edge and saturates instead of panicking on out-of-range arithmetic.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, PrimitiveDateTime};

/// An instant as whole milliseconds since 1970-01-01T00:00:00Z (negative before it).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// The Unix epoch.
    pub const EPOCH: UnixMillis = UnixMillis(0);

    /// The instant `at`, truncated to the millisecond.
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        let millis = at.unix_timestamp_nanos().div_euclid(1_000_000);
        // OffsetDateTime spans ±9999 years, far inside i64 milliseconds.
        Self(i64::try_from(millis).unwrap_or(if millis < 0 { i64::MIN } else { i64::MAX }))
    }

    /// The instant as a date-time, clamped to the range `OffsetDateTime` can represent.
    pub fn to_datetime(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).unwrap_or_else(
            |_| {
                if self.0 < 0 {
                    PrimitiveDateTime::MIN.assume_utc()
                } else {
                    PrimitiveDateTime::MAX.assume_utc()
                }
            },
        )
    }

    /// The raw number of milliseconds.
    pub fn as_i64(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch, rounded up: the form DynamoDB TTL attributes take, rounded so
    /// an item never expires before its instant.
    pub fn unix_seconds_ceil(self) -> i64 {
        self.0.div_euclid(1000) + i64::from(self.0.rem_euclid(1000) != 0)
    }

    /// This instant plus `by`, saturating at the ends of the range.
    pub fn saturating_add(self, by: Duration) -> Self {
        let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(by))
    }

    /// This instant plus `ms` milliseconds, saturating at the ends of the range.
    pub fn saturating_add_ms(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// How long after `earlier` this instant is; zero if it is not after it.
    pub fn saturating_duration_since(self, earlier: UnixMillis) -> Duration {
        let millis = i128::from(self.0) - i128::from(earlier.0);
        Duration::from_millis(u64::try_from(millis.max(0)).unwrap_or(u64::MAX))
    }
}

impl From<OffsetDateTime> for UnixMillis {
    fn from(at: OffsetDateTime) -> Self {
        Self::from_datetime(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn round_trips_a_date_time_to_the_millisecond() {
        let at = datetime!(2025-03-01 12:00:00.123_456 UTC);
        let millis = UnixMillis::from(at);
        assert_eq!(millis.as_i64(), 1_740_830_400_123);
        assert_eq!(millis.to_datetime(), datetime!(2025-03-01 12:00:00.123 UTC));
    }

    #[test]
    fn truncates_instants_before_the_epoch_downwards() {
        let at = datetime!(1969-12-31 23:59:59.9995 UTC);
        assert_eq!(UnixMillis::from(at), UnixMillis(-1));
    }

    #[test]
    fn rounds_ttl_seconds_up() {
        assert_eq!(UnixMillis(10_000).unix_seconds_ceil(), 10);
        assert_eq!(UnixMillis(10_001).unix_seconds_ceil(), 11);
        assert_eq!(UnixMillis(-1).unix_seconds_ceil(), 0);
    }

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        assert_eq!(
            UnixMillis(i64::MAX - 1).saturating_add(Duration::from_secs(10)),
            UnixMillis(i64::MAX)
        );
        assert_eq!(
            UnixMillis(5).saturating_duration_since(UnixMillis(9)),
            Duration::ZERO
        );
        assert_eq!(
            UnixMillis(1_500).saturating_duration_since(UnixMillis(-500)),
            Duration::from_secs(2)
        );
        assert_eq!(
            UnixMillis(i64::MAX).to_datetime(),
            PrimitiveDateTime::MAX.assume_utc()
        );
        assert_eq!(
            UnixMillis(i64::MIN).to_datetime(),
            PrimitiveDateTime::MIN.assume_utc()
        );
    }

    #[test]
    fn serializes_as_a_bare_number() {
        assert_eq!(serde_json::to_string(&UnixMillis(42)).unwrap(), "42");
        assert_eq!(
            serde_json::from_str::<UnixMillis>("-7").unwrap(),
            UnixMillis(-7)
        );
    }
}
