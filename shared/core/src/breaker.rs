//! The per-provider circuit breaker, as a pure state machine over an injected time.
//!
//! [`BreakerState`] is a plain value that an adapter stores (one DynamoDB item per provider) and
//! updates with a conditional write on [`BreakerState::version`]: read the state, compute the next
//! one here, write it only if the stored version is still the one read. Every transition that
//! changes the state increments the version; a call that changes nothing returns the state as it
//! was, version included, so the adapter can skip the write (a success on a closed circuit costs
//! no write at all).
//!
//! - **Closed**: every call is allowed. Failures are counted in a fixed window that starts at the
//!   first failure; reaching [`BreakerConfig::failure_threshold`] within
//!   [`BreakerConfig::window`] opens the circuit. Successes do not reset the count: this is a
//!   "failures per window" rule, not "consecutive failures", so a provider failing one call in
//!   three is still skipped.
//! - **Open**: calls are rejected until [`BreakerConfig::recovery_timeout`] has passed since it
//!   opened; then the next [`BreakerState::admit`] turns it half-open and takes a probe slot.
//! - **Half-open**: at most [`BreakerConfig::half_open_probes`] calls are let through as probes.
//!   A success closes the circuit, a failure re-opens it. A probe slot whose caller vanished
//!   (Lambda timeout) is released after [`BreakerConfig::probe_lease`], so the circuit cannot stay
//!   stuck half-open.
//!
//! Only failures that say something about the provider should be reported with
//! [`BreakerState::on_failure`]; see
//! [`OutcomeClass::counts_against_provider`](crate::send_error::OutcomeClass::counts_against_provider).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::unix_time::UnixMillis;

/// Thresholds and timeouts of the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures within [`BreakerConfig::window`] that open the circuit (at least 1).
    pub failure_threshold: u32,
    /// How long a failure window lasts from its first failure.
    pub window: Duration,
    /// How long an open circuit rejects calls before probing.
    pub recovery_timeout: Duration,
    /// How many probe calls may be in flight while half-open (at least 1).
    pub half_open_probes: u32,
    /// How long a taken probe slot stays taken without an outcome.
    pub probe_lease: Duration,
}

impl Default for BreakerConfig {
    /// 5 failures in 60 s open it; 30 s recovery; 1 probe, leased for 30 s.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            window: Duration::from_secs(60),
            recovery_timeout: Duration::from_secs(30),
            half_open_probes: 1,
            probe_lease: Duration::from_secs(30),
        }
    }
}

/// The three breaker states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitStatus {
    /// Calls flow; failures are counted.
    #[default]
    Closed,
    /// Calls are rejected until the recovery timeout has passed.
    Open,
    /// A limited number of probe calls decide whether to close or re-open.
    HalfOpen,
}

/// The stored state of one provider's breaker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BreakerState {
    /// Closed, open or half-open.
    pub status: CircuitStatus,
    /// Failures counted in the current window (kept when the circuit opens, for the record).
    pub failures: u32,
    /// When the current failure window started.
    pub window_started_at: Option<UnixMillis>,
    /// When the circuit last opened.
    pub opened_at: Option<UnixMillis>,
    /// Probe slots taken while half-open.
    pub probes_in_flight: u32,
    /// When the latest probe slot was taken.
    pub probe_started_at: Option<UnixMillis>,
    /// Incremented by every change; the adapter's optimistic-concurrency token.
    pub version: u64,
}

/// Whether a call may go to the provider now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The circuit is closed: call, and report the outcome.
    Allowed,
    /// The call is a probe. The state with the probe slot taken is inside: the slot is only taken
    /// once that state is stored (so an unused `Probe` is just a look).
    Probe(BreakerState),
    /// The circuit is open (or every probe slot is taken) until `retry_at`.
    Rejected {
        /// When a call may be admitted again.
        retry_at: OffsetDateTime,
    },
}

impl Admission {
    /// Whether the call may go ahead (allowed or as a probe).
    pub fn is_admitted(&self) -> bool {
        !matches!(self, Admission::Rejected { .. })
    }
}

impl BreakerState {
    /// A closed breaker with no history, version 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a call may go to the provider at `now`; see [`Admission`].
    pub fn admit(&self, config: &BreakerConfig, now: OffsetDateTime) -> Admission {
        let now_ms = UnixMillis::from(now);
        match self.status {
            CircuitStatus::Closed => Admission::Allowed,
            CircuitStatus::Open => {
                let probe_at = self
                    .opened_at
                    .unwrap_or(UnixMillis::EPOCH)
                    .saturating_add(config.recovery_timeout);
                if now_ms < probe_at {
                    Admission::Rejected {
                        retry_at: probe_at.to_datetime(),
                    }
                } else {
                    Admission::Probe(self.changed(|s| {
                        s.status = CircuitStatus::HalfOpen;
                        s.probes_in_flight = 1;
                        s.probe_started_at = Some(now_ms);
                    }))
                }
            }
            CircuitStatus::HalfOpen => {
                let lease_ends = self
                    .probe_started_at
                    .unwrap_or(UnixMillis::EPOCH)
                    .saturating_add(config.probe_lease);
                if now_ms >= lease_ends {
                    // Whoever held the slots never reported: start a fresh round of probes.
                    Admission::Probe(self.changed(|s| {
                        s.probes_in_flight = 1;
                        s.probe_started_at = Some(now_ms);
                    }))
                } else if self.probes_in_flight < config.half_open_probes.max(1) {
                    Admission::Probe(self.changed(|s| {
                        s.probes_in_flight += 1;
                        s.probe_started_at = Some(now_ms);
                    }))
                } else {
                    Admission::Rejected {
                        retry_at: lease_ends.to_datetime(),
                    }
                }
            }
        }
    }

    /// The state after a successful call at `now`. A probe's success closes the circuit; a
    /// success while closed changes nothing, and a late success while open is ignored.
    pub fn on_success(&self, _config: &BreakerConfig, _now: OffsetDateTime) -> BreakerState {
        match self.status {
            CircuitStatus::Closed | CircuitStatus::Open => self.clone(),
            CircuitStatus::HalfOpen => self.changed(|s| *s = BreakerState::default()),
        }
    }

    /// The state after a failed call at `now`: counted while closed (opening at the threshold),
    /// re-opening while half-open, ignored while already open.
    pub fn on_failure(&self, config: &BreakerConfig, now: OffsetDateTime) -> BreakerState {
        let now_ms = UnixMillis::from(now);
        match self.status {
            CircuitStatus::Closed => self.changed(|s| {
                // A window start "in the future" (another instance's clock is ahead) counts as
                // the current window.
                let in_window = s
                    .window_started_at
                    .is_some_and(|start| now_ms < start.saturating_add(config.window));
                if in_window {
                    s.failures = s.failures.saturating_add(1);
                } else {
                    s.failures = 1;
                    s.window_started_at = Some(now_ms);
                }
                if s.failures >= config.failure_threshold.max(1) {
                    s.status = CircuitStatus::Open;
                    s.opened_at = Some(now_ms);
                }
            }),
            CircuitStatus::HalfOpen => self.changed(|s| {
                s.status = CircuitStatus::Open;
                s.opened_at = Some(now_ms);
                s.probes_in_flight = 0;
                s.probe_started_at = None;
            }),
            CircuitStatus::Open => self.clone(),
        }
    }

    /// A copy with `change` applied and the version incremented if anything changed.
    fn changed(&self, change: impl FnOnce(&mut BreakerState)) -> BreakerState {
        let mut next = self.clone();
        change(&mut next);
        next.version = self.version;
        if next != *self {
            next.version = self.version.wrapping_add(1);
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, FixedClock};
    use time::Duration as TimeDuration;

    const T0: i64 = 1_750_000_000;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn fail_times(
        state: BreakerState,
        config: &BreakerConfig,
        clock: &FixedClock,
        n: u32,
    ) -> BreakerState {
        (0..n).fold(state, |s, _| s.on_failure(config, clock.now()))
    }

    fn open_breaker(config: &BreakerConfig, clock: &FixedClock) -> BreakerState {
        let state = fail_times(BreakerState::new(), config, clock, config.failure_threshold);
        assert_eq!(state.status, CircuitStatus::Open);
        state
    }

    fn probe(admission: Admission) -> BreakerState {
        match admission {
            Admission::Probe(state) => state,
            other => panic!("expected a probe, got {other:?}"),
        }
    }

    #[test]
    fn a_new_breaker_is_closed_and_allows_calls() {
        let clock = FixedClock::at_unix(T0);
        let state = BreakerState::new();
        assert_eq!(state.status, CircuitStatus::Closed);
        assert_eq!(state.version, 0);
        assert_eq!(
            state.admit(&BreakerConfig::default(), clock.now()),
            Admission::Allowed
        );
    }

    #[test]
    fn opens_at_the_failure_threshold_within_the_window() {
        let config = BreakerConfig::default();
        let clock = FixedClock::at_unix(T0);
        let mut state = BreakerState::new();
        for n in 1..=4 {
            state = state.on_failure(&config, clock.now());
            assert_eq!(state.status, CircuitStatus::Closed);
            assert_eq!(state.failures, n);
            clock.advance(TimeDuration::seconds(10));
        }
        state = state.on_failure(&config, clock.now());
        assert_eq!(state.status, CircuitStatus::Open);
        assert_eq!(state.opened_at, Some(UnixMillis::from(clock.now())));
        assert_eq!(state.version, 5);
    }

    #[test]
    fn failures_outside_the_window_start_a_new_count() {
        let config = BreakerConfig::default();
        let clock = FixedClock::at_unix(T0);
        let state = fail_times(BreakerState::new(), &config, &clock, 4);
        clock.advance(TimeDuration::seconds(60));
        let state = state.on_failure(&config, clock.now());
        assert_eq!(state.status, CircuitStatus::Closed);
        assert_eq!(state.failures, 1);
        assert_eq!(state.window_started_at, Some(UnixMillis::from(clock.now())));
    }

    #[test]
    fn successes_while_closed_change_nothing_and_need_no_write() {
        let config = BreakerConfig::default();
        let clock = FixedClock::at_unix(T0);
        let state = fail_times(BreakerState::new(), &config, &clock, 3);
        let after = state.on_success(&config, clock.now());
        assert_eq!(after, state);
        assert_eq!(after.version, state.version);
        // The window keeps counting across successes.
        let state = fail_times(after, &config, &clock, 2);
        assert_eq!(state.status, CircuitStatus::Open);
    }

    #[test]
    fn an_open_circuit_rejects_until_the_recovery_timeout() {
        let config = BreakerConfig::default();
        let clock = FixedClock::at_unix(T0);
        let state = open_breaker(&config, &clock);
        clock.advance(TimeDuration::seconds(29));
        assert_eq!(
            state.admit(&config, clock.now()),
            Admission::Rejected {
                retry_at: FixedClock::at_unix(T0 + 30).now()
            }
        );
        assert!(!state.admit(&config, clock.now()).is_admitted());
    }

    #[test]
    fn after_the_recovery_timeout_one_probe_is_admitted() {
        let config = BreakerConfig::default();
        let clock = FixedClock::at_unix(T0);
        let state = open_breaker(&config, &clock);
        clock.advance(TimeDuration::seconds(30));
        let half_open = probe(state.admit(&config, clock.now()));
        assert_eq!(half_open.status, CircuitStatus::HalfOpen);
        assert_eq!(half_open.probes_in_flight, 1);
        assert_eq!(half_open.version, state.version + 1);
        // A second caller (another instance reading the stored state) is turned away.
        assert_eq!(
            half_open.admit(&config, clock.now()),
            Admission::Rejected {
                retry_at: clock.now() + TimeDuration::seconds(30)
            }
        );
    }

    #[test]
    fn a_successful_probe_closes_the_circuit() {
        let config = BreakerConfig::default();
        let clock = FixedClock::at_unix(T0);
        let state = open_breaker(&config, &clock);
        clock.advance(TimeDuration::seconds(31));
        let half_open = probe(state.admit(&config, clock.now()));
        let closed = half_open.on_success(&config, clock.now());
        assert_eq!(closed.status, CircuitStatus::Closed);
        assert_eq!(closed.failures, 0);
        assert_eq!(closed.opened_at, None);
        assert_eq!(closed.probes_in_flight, 0);
        assert_eq!(closed.version, half_open.version + 1);
        assert_eq!(closed.admit(&config, clock.now()), Admission::Allowed);
    }

    #[test]
    fn a_failed_probe_reopens_the_circuit_for_another_recovery_timeout() {
        let config = BreakerConfig::default();
        let clock = FixedClock::at_unix(T0);
        let state = open_breaker(&config, &clock);
        clock.advance(TimeDuration::seconds(30));
        let half_open = probe(state.admit(&config, clock.now()));
        clock.advance(TimeDuration::seconds(2));
        let reopened = half_open.on_failure(&config, clock.now());
        assert_eq!(reopened.status, CircuitStatus::Open);
        assert_eq!(reopened.opened_at, Some(UnixMillis::from(clock.now())));
        assert_eq!(reopened.probes_in_flight, 0);
        assert_eq!(
            reopened.admit(&config, clock.now()),
            Admission::Rejected {
                retry_at: clock.now() + TimeDuration::seconds(30)
            }
        );
    }

    #[test]
    fn a_vanished_probe_releases_its_slot_after_the_lease() {
        let config = BreakerConfig::default();
        let clock = FixedClock::at_unix(T0);
        let state = open_breaker(&config, &clock);
        clock.advance(TimeDuration::seconds(30));
        let half_open = probe(state.admit(&config, clock.now()));
        clock.advance(TimeDuration::seconds(30));
        let again = probe(half_open.admit(&config, clock.now()));
        assert_eq!(again.probes_in_flight, 1);
        assert_eq!(again.probe_started_at, Some(UnixMillis::from(clock.now())));
        assert_eq!(again.version, half_open.version + 1);
    }

    #[test]
    fn several_probe_slots_are_handed_out_up_to_the_limit() {
        let config = BreakerConfig {
            half_open_probes: 2,
            ..BreakerConfig::default()
        };
        let clock = FixedClock::at_unix(T0);
        let state = open_breaker(&config, &clock);
        clock.advance(TimeDuration::seconds(30));
        let one = probe(state.admit(&config, clock.now()));
        let two = probe(one.admit(&config, clock.now()));
        assert_eq!(two.probes_in_flight, 2);
        assert!(!two.admit(&config, clock.now()).is_admitted());
    }

    #[test]
    fn late_outcomes_while_open_are_ignored() {
        let config = BreakerConfig::default();
        let clock = FixedClock::at_unix(T0);
        let state = open_breaker(&config, &clock);
        clock.advance(TimeDuration::seconds(5));
        assert_eq!(state.on_success(&config, clock.now()), state);
        assert_eq!(state.on_failure(&config, clock.now()), state);
    }

    #[test]
    fn a_window_started_by_a_clock_ahead_of_ours_still_counts() {
        let config = BreakerConfig {
            failure_threshold: 2,
            ..BreakerConfig::default()
        };
        let ahead = FixedClock::at_unix(T0 + 5);
        let state = BreakerState::new().on_failure(&config, ahead.now());
        let behind = FixedClock::at_unix(T0);
        let state = state.on_failure(&config, behind.now());
        assert_eq!(state.status, CircuitStatus::Open);
    }

    #[test]
    fn a_zero_threshold_behaves_as_one() {
        let config = BreakerConfig {
            failure_threshold: 0,
            half_open_probes: 0,
            ..BreakerConfig::default()
        };
        let clock = FixedClock::at_unix(T0);
        let state = BreakerState::new().on_failure(&config, clock.now());
        assert_eq!(state.status, CircuitStatus::Open);
        clock.advance(TimeDuration::seconds(30));
        let half_open = probe(state.admit(&config, clock.now()));
        assert!(!half_open.admit(&config, clock.now()).is_admitted());
    }

    #[test]
    fn an_open_state_without_a_timestamp_is_probed_rather_than_stuck() {
        let config = BreakerConfig::default();
        let clock = FixedClock::at_unix(T0);
        let state = BreakerState {
            status: CircuitStatus::Open,
            ..BreakerState::default()
        };
        assert!(matches!(
            state.admit(&config, clock.now()),
            Admission::Probe(_)
        ));
    }

    #[test]
    fn the_state_round_trips_through_json_with_snake_case_names() {
        let config = BreakerConfig::default();
        let clock = FixedClock::at_unix(T0);
        let state = open_breaker(&config, &clock);
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["status"], "open");
        assert_eq!(json["opened_at"], T0 * 1000);
        assert_eq!(json["version"], 5);
        let back: BreakerState = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
        let half_open = probe(back.admit(&config, clock.now() + TimeDuration::minutes(1)));
        assert_eq!(
            serde_json::to_value(&half_open).unwrap()["status"],
            "half_open"
        );
    }

    #[test]
    fn the_default_config_matches_the_documentation() {
        let config = BreakerConfig::default();
        assert_eq!(config.failure_threshold, 5);
        assert_eq!(config.window, secs(60));
        assert_eq!(config.recovery_timeout, secs(30));
        assert_eq!(config.half_open_probes, 1);
    }
}
