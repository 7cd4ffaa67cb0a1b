//! Reputation guardrails: rolling complaint and hard-bounce rates of one route (a provider and
//! a sending domain) over its last N recipients sent, computed from the delivery-statistics
//! hour buckets (`crate::stats`), and the verdict that pauses bulk sending on that route.
//!
//! The arithmetic (also in docs/bulk-sending.md):
//! 1. Take the route's hour buckets newest first, from the current hour back at most
//!    [`GuardrailPolicy::lookback_hours`] (and never before the hour after the route was last
//!    resumed, so a resume starts a fresh window).
//! 2. Add buckets until the recipients sent (`sent_recipients`) reach
//!    [`GuardrailPolicy::window_sends`] (N) or the buckets run out: that is the window. Its
//!    volume V is the recipients sent in it; its complaints C and hard bounces H are the events
//!    counted in the same hours.
//! 3. Below [`GuardrailPolicy::min_sends`] (V < minimum volume) nothing trips: a handful of sends
//!    says nothing about a list.
//! 4. Otherwise the complaint rate C / V is checked first, then the hard-bounce rate H / V; the
//!    first at or over its threshold trips.

use serde::Serialize;

use crate::ProviderId;
use crate::stats::{DeliveryCounts, HourCounts};

/// The thresholds and window of the guardrails.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardrailPolicy {
    /// N: the window is the last N recipients sent (default 10,000).
    pub window_sends: u64,
    /// The least volume a window must have before anything trips (default 1,000).
    pub min_sends: u64,
    /// Complaints per recipient sent at which bulk pauses (default 0.001, 0.1 %).
    pub complaint_rate: f64,
    /// Hard bounces per recipient sent at which bulk pauses (default 0.04, 4 %).
    pub hard_bounce_rate: f64,
    /// How far back the window may reach, in hours (default 7 days).
    pub lookback_hours: i64,
}

impl Default for GuardrailPolicy {
    fn default() -> Self {
        Self {
            window_sends: 10_000,
            min_sends: 1_000,
            complaint_rate: 0.001,
            hard_bounce_rate: 0.04,
            lookback_hours: 7 * 24,
        }
    }
}

/// Which rate tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailRate {
    /// Complaints per recipient sent.
    Complaint,
    /// Hard bounces per recipient sent.
    HardBounce,
}

impl GuardrailRate {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complaint => "complaint",
            Self::HardBounce => "hard_bounce",
        }
    }
}

/// A tripped guardrail: which route, which rate, what window and what volume.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardrailTrip {
    /// The provider.
    pub provider: ProviderId,
    /// The sending domain.
    pub sending_domain: String,
    /// The rate that tripped.
    pub rate: GuardrailRate,
    /// Its value over the window.
    pub value: f64,
    /// The threshold it reached.
    pub threshold: f64,
    /// The recipients sent in the window (V).
    pub volume: u64,
    /// The events counted against it (complaints or hard bounces).
    pub events: u64,
    /// The N the window aims at.
    pub window_sends: u64,
    /// The first hour of the window (hours since the epoch, UTC).
    pub window_from_hour: i64,
    /// The hour after its last (hours since the epoch, UTC).
    pub window_to_hour: i64,
}

/// The window of a route's rows (any order, shards not yet added) ending with `current_hour`:
/// its totals and its first hour. See the module's arithmetic.
pub fn window(
    policy: &GuardrailPolicy,
    rows: &[HourCounts],
    current_hour: i64,
    not_before_hour: i64,
) -> (DeliveryCounts, i64) {
    let earliest = (current_hour - policy.lookback_hours + 1).max(not_before_hour);
    let mut by_hour: std::collections::BTreeMap<i64, DeliveryCounts> = Default::default();
    for row in rows
        .iter()
        .filter(|r| (earliest..=current_hour).contains(&r.hour))
    {
        by_hour.entry(row.hour).or_default().merge(&row.counts);
    }
    let mut totals = DeliveryCounts::default();
    let mut first = current_hour;
    for (hour, counts) in by_hour.iter().rev() {
        if totals.sent_recipients >= policy.window_sends {
            break;
        }
        totals.merge(counts);
        first = *hour;
    }
    (totals, first)
}

/// Whether the route's rows trip a guardrail now (see the module's arithmetic).
pub fn evaluate(
    policy: &GuardrailPolicy,
    provider: ProviderId,
    sending_domain: &str,
    rows: &[HourCounts],
    current_hour: i64,
    not_before_hour: i64,
) -> Option<GuardrailTrip> {
    let (totals, first) = window(policy, rows, current_hour, not_before_hour);
    let volume = totals.sent_recipients;
    if volume == 0 || volume < policy.min_sends {
        return None;
    }
    let checks = [
        (
            GuardrailRate::Complaint,
            totals.complained,
            policy.complaint_rate,
        ),
        (
            GuardrailRate::HardBounce,
            totals.bounced_hard,
            policy.hard_bounce_rate,
        ),
    ];
    checks.into_iter().find_map(|(rate, events, threshold)| {
        // Counts stay far below 2^52, where u64 → f64 is exact.
        let value = events as f64 / volume as f64;
        (events > 0 && value >= threshold).then(|| GuardrailTrip {
            provider,
            sending_domain: sending_domain.to_lowercase(),
            rate,
            value,
            threshold,
            volume,
            events,
            window_sends: policy.window_sends,
            window_from_hour: first,
            window_to_hour: current_hour + 1,
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::stats::Counter;

    fn row(hour: i64, sent: u64, complained: u64, hard: u64) -> HourCounts {
        let mut counts = DeliveryCounts::default();
        counts.add(Counter::SentRecipients, sent);
        counts.add(Counter::Complained, complained);
        counts.add(Counter::BouncedHard, hard);
        HourCounts {
            hour,
            value: "ses#example.com".into(),
            counts,
        }
    }

    fn policy() -> GuardrailPolicy {
        GuardrailPolicy {
            window_sends: 1_000,
            min_sends: 500,
            ..GuardrailPolicy::default()
        }
    }

    #[test]
    fn one_complaint_in_a_thousand_trips_and_fewer_do_not() {
        let rows = [row(100, 600, 1, 0), row(99, 400, 0, 0)];
        let trip = evaluate(&policy(), ProviderId::Ses, "Example.com", &rows, 100, 0).unwrap();
        assert_eq!(trip.rate, GuardrailRate::Complaint);
        assert_eq!((trip.volume, trip.events), (1_000, 1));
        assert_eq!(trip.value, 0.001);
        assert_eq!((trip.window_from_hour, trip.window_to_hour), (99, 101));
        assert_eq!(trip.sending_domain, "example.com");
        // The same complaint over 2,000 sends (an older hour in the window) does not.
        let rows = [
            row(100, 600, 1, 0),
            row(99, 300, 0, 0),
            row(98, 1_100, 0, 0),
        ];
        let wide = GuardrailPolicy {
            window_sends: 2_000,
            ..policy()
        };
        assert_eq!(
            evaluate(&wide, ProviderId::Ses, "example.com", &rows, 100, 0),
            None
        );
    }

    #[test]
    fn the_window_stops_at_n_sends_newest_first_and_needs_the_minimum_volume() {
        // The newest hours reach N; the bad old hour is outside the window.
        let rows = [row(100, 1_000, 0, 0), row(90, 1_000, 50, 300)];
        assert_eq!(
            evaluate(&policy(), ProviderId::Ses, "example.com", &rows, 100, 0),
            None
        );
        // Below the minimum volume nothing trips, however bad.
        let rows = [row(100, 499, 10, 100)];
        assert_eq!(
            evaluate(&policy(), ProviderId::Ses, "example.com", &rows, 100, 0),
            None
        );
        // Hard bounces at 4 % trip.
        let rows = [row(100, 1_000, 0, 40)];
        let trip = evaluate(&policy(), ProviderId::Ses, "example.com", &rows, 100, 0).unwrap();
        assert_eq!(trip.rate, GuardrailRate::HardBounce);
        // A resume starts a fresh window; so does the lookback.
        assert_eq!(
            evaluate(&policy(), ProviderId::Ses, "example.com", &rows, 100, 101),
            None
        );
        assert_eq!(
            evaluate(&policy(), ProviderId::Ses, "example.com", &rows, 300, 0),
            None
        );
    }

    #[test]
    fn shards_of_one_hour_add_up() {
        let rows = [
            row(100, 300, 1, 0),
            row(100, 300, 0, 0),
            row(100, 400, 0, 0),
        ];
        let (totals, first) = window(&policy(), &rows, 100, 0);
        assert_eq!(
            (totals.sent_recipients, totals.complained, first),
            (1_000, 1, 100)
        );
    }
}
