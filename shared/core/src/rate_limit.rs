//! A per-provider token bucket, as a pure value over an injected time.
//!
//! [`TokenBucket`] holds only what changes — the level (in milli-tokens, so arithmetic is exact
//! integer arithmetic), when it was last refilled, and a `version` for conditional writes — while
//! the rate and burst come from configuration as a [`RateLimit`]. A configuration change
//! therefore applies to the stored bucket at once, with no migration.
//!
//! The bucket refills continuously at [`RateLimit::per_second`] up to [`RateLimit::burst`].
//! [`TokenBucket::try_take`] either returns the new bucket to store (version incremented) or says
//! when enough tokens will have accrued. A refill is credited in whole milli-tokens; the
//! sub-milli-token remainder of each refill is dropped, which is at most a thousandth of a token
//! per stored take. If the stored refill time is ahead of our clock (another instance's clock
//! runs ahead), no time has passed — the bucket never credits time twice.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::unix_time::UnixMillis;

const MILLI: u64 = 1_000;

/// Why a rate limit configuration is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitError {
    /// The rate is not a positive number of at least 0.001 per second.
    #[error("the rate must be at least 0.001 per second, got {0}")]
    Rate(f64),
    /// The burst is zero.
    #[error("the burst must be at least 1")]
    Burst,
}

/// A provider's configured rate: tokens per second and the largest burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    milli_per_second: u64,
    burst: u32,
}

impl RateLimit {
    /// `per_second` tokens per second (fractions allowed, down to 0.001), at most `burst` at once.
    pub fn new(per_second: f64, burst: u32) -> Result<Self, RateLimitError> {
        let milli = per_second * MILLI as f64;
        if !milli.is_finite() || milli < 1.0 || milli > u64::MAX as f64 {
            return Err(RateLimitError::Rate(per_second));
        }
        if burst == 0 {
            return Err(RateLimitError::Burst);
        }
        Ok(Self {
            milli_per_second: milli.round() as u64,
            burst,
        })
    }

    /// Tokens added per second.
    pub fn per_second(&self) -> f64 {
        self.milli_per_second as f64 / MILLI as f64
    }

    /// The most tokens the bucket holds.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    fn capacity(&self) -> u64 {
        u64::from(self.burst) * MILLI
    }

    /// Milli-tokens accrued over `elapsed`.
    fn accrued(&self, elapsed: Duration) -> u64 {
        let milli = elapsed.as_millis() * u128::from(self.milli_per_second) / 1_000;
        u64::try_from(milli).unwrap_or(u64::MAX)
    }

    /// The time it takes to accrue `milli` milli-tokens, rounded up to the millisecond.
    fn time_to_accrue(&self, milli: u64) -> Duration {
        let millis = (u128::from(milli) * 1_000).div_ceil(u128::from(self.milli_per_second));
        Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
    }
}

/// Why tokens could not be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeDenied {
    /// Not enough tokens now; enough will have accrued at `retry_at`.
    RetryAt(OffsetDateTime),
    /// More tokens were asked for than the bucket can ever hold.
    ExceedsBurst {
        /// Tokens asked for.
        requested: u32,
        /// The bucket's capacity.
        burst: u32,
    },
}

/// The stored state of one provider's bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBucket {
    /// The level at `refilled_at`, in thousandths of a token.
    pub milli_tokens: u64,
    /// When the level was last brought up to date.
    pub refilled_at: UnixMillis,
    /// Incremented by every stored change; the adapter's optimistic-concurrency token.
    pub version: u64,
}

impl TokenBucket {
    /// A full bucket as of `now`, version 0 (what an adapter uses when no state is stored yet).
    pub fn full(limit: &RateLimit, now: OffsetDateTime) -> Self {
        Self {
            milli_tokens: limit.capacity(),
            refilled_at: UnixMillis::from(now),
            version: 0,
        }
    }

    /// The level in milli-tokens at `now`.
    fn level_at(&self, limit: &RateLimit, now: UnixMillis) -> u64 {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        self.milli_tokens
            .min(limit.capacity())
            .saturating_add(limit.accrued(elapsed))
            .min(limit.capacity())
    }

    /// Tokens available at `now` (a look; nothing is taken).
    pub fn available(&self, limit: &RateLimit, now: OffsetDateTime) -> f64 {
        self.level_at(limit, UnixMillis::from(now)) as f64 / MILLI as f64
    }

    /// Takes `n` tokens at `now`: the bucket to store, or why not. Taking 0 tokens returns the
    /// bucket unchanged.
    pub fn try_take(
        &self,
        limit: &RateLimit,
        now: OffsetDateTime,
        n: u32,
    ) -> Result<TokenBucket, TakeDenied> {
        if n > limit.burst {
            return Err(TakeDenied::ExceedsBurst {
                requested: n,
                burst: limit.burst,
            });
        }
        if n == 0 {
            return Ok(self.clone());
        }
        let now_ms = UnixMillis::from(now);
        let wanted = u64::from(n) * MILLI;
        let level = self.level_at(limit, now_ms);
        if level >= wanted {
            return Ok(TokenBucket {
                milli_tokens: level - wanted,
                refilled_at: self.refilled_at.max(now_ms),
                version: self.version.wrapping_add(1),
            });
        }
        // Computed from the stored refill time (not from `now`) so that taking at `retry_at`
        // succeeds exactly, without rounding drift.
        let missing = wanted - self.milli_tokens.min(limit.capacity());
        let ready_at = self
            .refilled_at
            .saturating_add(limit.time_to_accrue(missing))
            .max(now_ms);
        Err(TakeDenied::RetryAt(ready_at.to_datetime()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, FixedClock};
    use time::Duration as TimeDuration;

    const T0: i64 = 1_750_000_000;

    fn limit(per_second: f64, burst: u32) -> RateLimit {
        RateLimit::new(per_second, burst).unwrap()
    }

    fn retry_at(result: Result<TokenBucket, TakeDenied>) -> OffsetDateTime {
        match result {
            Err(TakeDenied::RetryAt(at)) => at,
            other => panic!("expected a retry time, got {other:?}"),
        }
    }

    #[test]
    fn rejects_unusable_configuration() {
        assert_eq!(RateLimit::new(0.0, 1), Err(RateLimitError::Rate(0.0)));
        assert_eq!(RateLimit::new(-1.0, 1), Err(RateLimitError::Rate(-1.0)));
        assert!(matches!(
            RateLimit::new(f64::NAN, 1),
            Err(RateLimitError::Rate(_))
        ));
        assert!(RateLimit::new(f64::INFINITY, 1).is_err());
        assert_eq!(RateLimit::new(10.0, 0), Err(RateLimitError::Burst));
        assert_eq!(limit(0.5, 1).per_second(), 0.5);
        assert_eq!(limit(14.0, 28).burst(), 28);
    }

    #[test]
    fn a_full_bucket_allows_a_burst_then_refuses() {
        let limit = limit(2.0, 3);
        let clock = FixedClock::at_unix(T0);
        let mut bucket = TokenBucket::full(&limit, clock.now());
        for version in 1..=3 {
            bucket = bucket.try_take(&limit, clock.now(), 1).unwrap();
            assert_eq!(bucket.version, version);
        }
        assert_eq!(bucket.milli_tokens, 0);
        // 2 per second: the next token accrues in 500 ms.
        assert_eq!(
            retry_at(bucket.try_take(&limit, clock.now(), 1)),
            clock.now() + TimeDuration::milliseconds(500)
        );
    }

    #[test]
    fn taking_succeeds_exactly_at_the_retry_time_and_not_a_millisecond_before() {
        let limit = limit(3.0, 5);
        let clock = FixedClock::at_unix(T0);
        let bucket = TokenBucket::full(&limit, clock.now())
            .try_take(&limit, clock.now(), 5)
            .unwrap();
        clock.advance(TimeDuration::milliseconds(100));
        let at = retry_at(bucket.try_take(&limit, clock.now(), 2));
        // 2 tokens at 3 per second: 666.67 ms, rounded up.
        assert_eq!(
            at,
            FixedClock::at_unix(T0).now() + TimeDuration::milliseconds(667)
        );
        assert!(
            bucket
                .try_take(&limit, at - TimeDuration::milliseconds(1), 2)
                .is_err()
        );
        let taken = bucket.try_take(&limit, at, 2).unwrap();
        assert_eq!(taken.milli_tokens, 1);
    }

    #[test]
    fn refills_continuously_but_never_beyond_the_burst() {
        let limit = limit(10.0, 4);
        let clock = FixedClock::at_unix(T0);
        let empty = TokenBucket::full(&limit, clock.now())
            .try_take(&limit, clock.now(), 4)
            .unwrap();
        clock.advance(TimeDuration::milliseconds(250));
        assert_eq!(empty.available(&limit, clock.now()), 2.5);
        clock.advance(TimeDuration::hours(1));
        assert_eq!(empty.available(&limit, clock.now()), 4.0);
        let after = empty.try_take(&limit, clock.now(), 4).unwrap();
        assert_eq!(after.milli_tokens, 0);
        assert_eq!(after.refilled_at, UnixMillis::from(clock.now()));
    }

    #[test]
    fn fractional_rates_accrue_slowly() {
        let limit = limit(0.5, 1);
        let clock = FixedClock::at_unix(T0);
        let empty = TokenBucket::full(&limit, clock.now())
            .try_take(&limit, clock.now(), 1)
            .unwrap();
        assert_eq!(
            retry_at(empty.try_take(&limit, clock.now(), 1)),
            clock.now() + TimeDuration::seconds(2)
        );
    }

    #[test]
    fn asking_for_more_than_the_burst_can_never_succeed() {
        let limit = limit(100.0, 10);
        let clock = FixedClock::at_unix(T0);
        let bucket = TokenBucket::full(&limit, clock.now());
        assert_eq!(
            bucket.try_take(&limit, clock.now(), 11),
            Err(TakeDenied::ExceedsBurst {
                requested: 11,
                burst: 10
            })
        );
    }

    #[test]
    fn taking_nothing_changes_nothing() {
        let limit = limit(1.0, 1);
        let clock = FixedClock::at_unix(T0);
        let bucket = TokenBucket::full(&limit, clock.now());
        assert_eq!(bucket.try_take(&limit, clock.now(), 0).unwrap(), bucket);
    }

    #[test]
    fn a_refill_time_ahead_of_our_clock_credits_no_time() {
        let limit = limit(1.0, 2);
        let ahead = FixedClock::at_unix(T0 + 10);
        let bucket = TokenBucket::full(&limit, ahead.now())
            .try_take(&limit, ahead.now(), 2)
            .unwrap();
        let behind = FixedClock::at_unix(T0);
        assert_eq!(bucket.available(&limit, behind.now()), 0.0);
        assert_eq!(
            retry_at(bucket.try_take(&limit, behind.now(), 1)),
            ahead.now() + TimeDuration::seconds(1)
        );
        // A take from the lagging instance does not move the refill time backwards.
        let full = TokenBucket::full(&limit, ahead.now());
        let taken = full.try_take(&limit, behind.now(), 1).unwrap();
        assert_eq!(taken.refilled_at, UnixMillis::from(ahead.now()));
        assert_eq!(taken.milli_tokens, 1_000);
    }

    #[test]
    fn a_smaller_burst_in_configuration_caps_a_stored_bucket() {
        let big = limit(1.0, 100);
        let small = limit(1.0, 2);
        let clock = FixedClock::at_unix(T0);
        let bucket = TokenBucket::full(&big, clock.now());
        assert_eq!(bucket.available(&small, clock.now()), 2.0);
        let taken = bucket.try_take(&small, clock.now(), 2).unwrap();
        assert_eq!(taken.milli_tokens, 0);
    }

    #[test]
    fn the_bucket_round_trips_through_json() {
        let limit = limit(1.0, 5);
        let clock = FixedClock::at_unix(T0);
        let bucket = TokenBucket::full(&limit, clock.now())
            .try_take(&limit, clock.now(), 2)
            .unwrap();
        let json = serde_json::to_value(&bucket).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"milli_tokens": 3000, "refilled_at": T0 * 1000, "version": 1})
        );
        assert_eq!(serde_json::from_value::<TokenBucket>(json).unwrap(), bucket);
    }
}
