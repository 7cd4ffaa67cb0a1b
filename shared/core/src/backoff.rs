//! Bounded exponential backoff with full jitter, inside a request's time budget.
//!
//! The wait before retry `n` (0 for the first retry) is a uniformly random duration in
//! `[0, min(cap, base · 2ⁿ, room)]`, where `room` is what is left of the request budget after
//! keeping `reserve` for the retry itself ("full jitter": spreads concurrent retries the most).
//! A floor such as a provider's `Retry-After` is honoured even above the cap. When the budget
//! cannot fit the wait plus the reserve there is no retry here: the caller defers the message to
//! the async path instead.
//!
//! Randomness is injected: a number in `[0, 1)`, or any [`rand::Rng`].

use std::time::Duration;

use rand::Rng;

/// The backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait; each retry doubles it.
    pub base: Duration,
    /// The largest ceiling, whatever the retry number.
    pub cap: Duration,
    /// Time kept back from the budget for the retried call itself.
    pub reserve: Duration,
}

impl Default for Backoff {
    /// 200 ms doubling up to 5 s, keeping 2 s of the budget for the call.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(5),
            reserve: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The same settings with another base (e.g. an error category's base retry delay).
    pub fn with_base(self, base: Duration) -> Self {
        Self { base, ..self }
    }

    /// The exponential ceiling for retry `retry` (0-based), before jitter and budget.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.checked_pow(retry).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.cap)
    }

    /// The wait before retry `retry`, given the `remaining` request budget and `unit`, a random
    /// number in `[0, 1)`; `None` when the budget cannot fit a retry.
    pub fn delay(&self, retry: u32, remaining: Duration, unit: f64) -> Option<Duration> {
        self.delay_at_least(retry, Duration::ZERO, remaining, unit)
    }

    /// Like [`Backoff::delay`], but never shorter than `floor` (a provider's `Retry-After`);
    /// `None` when the floor itself does not fit the budget.
    pub fn delay_at_least(
        &self,
        retry: u32,
        floor: Duration,
        remaining: Duration,
        unit: f64,
    ) -> Option<Duration> {
        let room = remaining.checked_sub(self.reserve)?;
        if floor > room {
            return None;
        }
        let ceiling = self.ceiling(retry).min(room);
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Some(ceiling.mul_f64(unit).max(floor))
    }

    /// [`Backoff::delay`] with the random number drawn from `rng`.
    pub fn delay_with_rng<R: Rng + ?Sized>(
        &self,
        retry: u32,
        remaining: Duration,
        rng: &mut R,
    ) -> Option<Duration> {
        self.delay(retry, remaining, rng.random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn backoff() -> Backoff {
        Backoff {
            base: ms(100),
            cap: ms(1_000),
            reserve: ms(500),
        }
    }

    #[test]
    fn ceilings_double_until_the_cap() {
        let b = backoff();
        let ceilings: Vec<_> = (0..6).map(|n| b.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [ms(100), ms(200), ms(400), ms(800), ms(1_000), ms(1_000)]
        );
        assert_eq!(b.ceiling(u32::MAX), ms(1_000));
    }

    #[test]
    fn full_jitter_scales_the_ceiling_by_the_random_number() {
        let b = backoff();
        let budget = Duration::from_secs(10);
        assert_eq!(b.delay(2, budget, 0.0), Some(Duration::ZERO));
        assert_eq!(b.delay(2, budget, 0.5), Some(ms(200)));
        assert_eq!(
            b.delay(2, budget, 0.999_999),
            Some(ms(400).mul_f64(0.999_999))
        );
    }

    #[test]
    fn a_random_number_out_of_range_is_clamped() {
        let b = backoff();
        let budget = Duration::from_secs(10);
        assert_eq!(b.delay(0, budget, 7.0), Some(ms(100)));
        assert_eq!(b.delay(0, budget, -1.0), Some(Duration::ZERO));
        assert_eq!(b.delay(0, budget, f64::NAN), Some(Duration::ZERO));
    }

    #[test]
    fn the_wait_is_capped_by_the_remaining_budget() {
        let b = backoff();
        // 800 ms left, 500 ms kept for the call: at most 300 ms of waiting.
        assert_eq!(b.delay(3, ms(800), 0.5), Some(ms(150)));
        assert_eq!(b.delay(3, ms(800), 0.999), Some(ms(300).mul_f64(0.999)));
    }

    #[test]
    fn no_retry_when_the_budget_cannot_fit_the_call() {
        let b = backoff();
        assert_eq!(b.delay(0, ms(499), 0.5), None);
        assert_eq!(b.delay(0, Duration::ZERO, 0.5), None);
        assert_eq!(b.delay(0, ms(500), 0.5), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_is_honoured_even_above_the_cap() {
        let b = backoff();
        let budget = Duration::from_secs(10);
        assert_eq!(
            b.delay_at_least(0, Duration::from_secs(3), budget, 0.9),
            Some(Duration::from_secs(3))
        );
        // The jitter still applies when it is longer than the floor.
        assert_eq!(b.delay_at_least(3, ms(100), budget, 0.5), Some(ms(400)));
    }

    #[test]
    fn no_retry_when_retry_after_does_not_fit_the_budget() {
        let b = backoff();
        assert_eq!(
            b.delay_at_least(0, Duration::from_secs(3), ms(3_499), 0.0),
            None
        );
        assert_eq!(
            b.delay_at_least(0, Duration::from_secs(3), ms(3_500), 0.0),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn a_seeded_rng_gives_waits_within_the_ceiling() {
        let b = backoff();
        let mut rng = StdRng::seed_from_u64(7);
        for retry in 0..8 {
            let wait = b
                .delay_with_rng(retry, Duration::from_secs(10), &mut rng)
                .unwrap();
            assert!(wait <= b.ceiling(retry), "{retry}: {wait:?}");
        }
    }

    #[test]
    fn the_default_fits_the_request_budget() {
        let b = Backoff::default();
        assert!(b.cap + b.reserve <= Duration::from_secs(10));
        assert_eq!(b.with_base(ms(1)).base, ms(1));
    }
}
