//! Which providers to try for a send, in what order, and what to do after a failed attempt.
//!
//! **Selection.** A [`ProviderOrder`] is the configured order of providers, each with an optional
//! weight. [`ProviderOrder::select`] asks the caller how each provider is doing right now
//! ([`Availability`]: breaker admission and rate budget, both computed by the caller from the
//! stored state) and returns the [`Selection`]: the candidates to try, in order, and the providers
//! skipped with the reason. Weights only pick the *first* candidate: among the ready providers
//! with a weight above zero, one is drawn in proportion to its weight using an injected random
//! number; the other ready providers follow in configured order. Without weights the order is the
//! configured one. An explicitly requested provider yields exactly that provider, or nothing —
//! never another one.
//!
//! **After a failure.** [`FailoverPolicy::next_step`] turns the classification of a failed
//! attempt, the attempts made so far and the remaining request budget into a [`NextStep`]: try the
//! next candidate, retry the same provider after a backoff, defer to the async path, or stop.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use time::OffsetDateTime;

use crate::backoff::Backoff;
use crate::breaker::Admission;
use crate::provider::{ProviderId, UnknownProvider};
use crate::send_error::{Classification, OutcomeClass};

/// Why a provider order from configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderOrderError {
    /// No provider at all.
    #[error("the provider order is empty")]
    Empty,
    /// A provider listed twice.
    #[error("provider {0} is listed more than once")]
    Duplicate(ProviderId),
    /// A name that is not a provider.
    #[error(transparent)]
    UnknownProvider(#[from] UnknownProvider),
    /// A weight that is not a whole number.
    #[error("invalid weight {0:?}; expected a whole number such as ses:3")]
    InvalidWeight(String),
}

/// The configured providers in priority order, each with a weight (0 = never drawn as the first
/// candidate, only a fallback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderOrder {
    entries: Vec<(ProviderId, u32)>,
}

impl ProviderOrder {
    /// An unweighted order: providers are tried as listed.
    pub fn new(
        providers: impl IntoIterator<Item = ProviderId>,
    ) -> Result<Self, ProviderOrderError> {
        Self::weighted(providers.into_iter().map(|p| (p, 0)))
    }

    /// A weighted order; providers with weight 0 are only fallbacks.
    pub fn weighted(
        entries: impl IntoIterator<Item = (ProviderId, u32)>,
    ) -> Result<Self, ProviderOrderError> {
        let mut seen: Vec<(ProviderId, u32)> = Vec::new();
        for (provider, weight) in entries {
            if seen.iter().any(|(p, _)| *p == provider) {
                return Err(ProviderOrderError::Duplicate(provider));
            }
            seen.push((provider, weight));
        }
        if seen.is_empty() {
            return Err(ProviderOrderError::Empty);
        }
        Ok(Self { entries: seen })
    }

    /// The providers in configured order.
    pub fn providers(&self) -> impl Iterator<Item = ProviderId> + '_ {
        self.entries.iter().map(|(p, _)| *p)
    }

    /// The provider's weight, or `None` if it is not configured.
    pub fn weight(&self, provider: ProviderId) -> Option<u32> {
        self.entries
            .iter()
            .find(|(p, _)| *p == provider)
            .map(|(_, w)| *w)
    }

    /// Whether the provider is configured.
    pub fn contains(&self, provider: ProviderId) -> bool {
        self.weight(provider).is_some()
    }

    /// The candidates to try for one send.
    ///
    /// `requested` is the request's explicit `provider`, if any. `availability` is asked once per
    /// provider considered. `random` is a number in `[0, 1)` (clamped) that draws the first
    /// candidate when weights are configured.
    pub fn select(
        &self,
        requested: Option<ProviderId>,
        mut availability: impl FnMut(ProviderId) -> Availability,
        random: f64,
    ) -> Selection {
        let mut selection = Selection::default();
        if let Some(provider) = requested {
            if !self.contains(provider) {
                selection.skip(provider, SkipReason::NotConfigured);
            } else if let Some(reason) = availability(provider).skip_reason() {
                selection.skip(provider, reason);
            } else {
                selection.candidates.push(provider);
            }
            return selection;
        }

        let mut ready: Vec<(ProviderId, u32)> = Vec::with_capacity(self.entries.len());
        for &(provider, weight) in &self.entries {
            match availability(provider).skip_reason() {
                None => ready.push((provider, weight)),
                Some(reason) => selection.skip(provider, reason),
            }
        }
        if let Some(first) = draw_weighted(&ready, random) {
            let chosen = ready.remove(first);
            ready.insert(0, chosen);
        }
        selection.candidates = ready.into_iter().map(|(p, _)| p).collect();
        selection
    }
}

/// The index of the entry drawn in proportion to its weight, or `None` without weights.
fn draw_weighted(entries: &[(ProviderId, u32)], random: f64) -> Option<usize> {
    let total: u64 = entries.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let unit = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let target = ((unit * total as f64) as u64).min(total - 1);
    let mut cumulative = 0u64;
    entries.iter().position(|(_, w)| {
        cumulative += u64::from(*w);
        target < cumulative
    })
}

impl FromStr for ProviderOrder {
    type Err = ProviderOrderError;

    /// Parses the configuration form: comma-separated providers, each optionally followed by
    /// `:weight`, e.g. `ses:3, sendgrid:1, mailgun`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let entries = s
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                let (name, weight) = match item.split_once(':') {
                    Some((name, weight)) => {
                        let weight = weight.trim();
                        let weight = weight
                            .parse::<u32>()
                            .map_err(|_| ProviderOrderError::InvalidWeight(weight.to_owned()))?;
                        (name, weight)
                    }
                    None => (item, 0),
                };
                Ok((ProviderId::parse_real(name)?, weight))
            })
            .collect::<Result<Vec<_>, ProviderOrderError>>()?;
        Self::weighted(entries)
    }
}

impl fmt::Display for ProviderOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (provider, weight)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if *weight > 0 {
                write!(f, "{provider}:{weight}")?;
            } else {
                write!(f, "{provider}")?;
            }
        }
        Ok(())
    }
}

/// How a provider is doing right now, as far as sending is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Its breaker admits a call (allowed or as a probe) and its rate budget has a token.
    Ready,
    /// Its breaker rejects calls until `retry_at`.
    CircuitOpen {
        /// When the breaker will admit a call again.
        retry_at: OffsetDateTime,
    },
    /// Its rate budget is spent until `retry_at`.
    RateLimited {
        /// When a token will be available again.
        retry_at: OffsetDateTime,
    },
}

impl Availability {
    /// Combines the breaker's admission with the rate budget (`None` when a token is available,
    /// otherwise when one will be). An open circuit is reported before a spent budget.
    pub fn of(admission: &Admission, rate_spent_until: Option<OffsetDateTime>) -> Self {
        match (admission, rate_spent_until) {
            (Admission::Rejected { retry_at }, _) => Availability::CircuitOpen {
                retry_at: *retry_at,
            },
            (_, Some(retry_at)) => Availability::RateLimited { retry_at },
            (_, None) => Availability::Ready,
        }
    }

    fn skip_reason(self) -> Option<SkipReason> {
        match self {
            Availability::Ready => None,
            Availability::CircuitOpen { retry_at } => Some(SkipReason::CircuitOpen { retry_at }),
            Availability::RateLimited { retry_at } => Some(SkipReason::RateLimited { retry_at }),
        }
    }
}

/// Why a provider is not among the candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Its circuit is open.
    CircuitOpen {
        /// When the breaker will admit a call again.
        retry_at: OffsetDateTime,
    },
    /// Its rate budget is spent.
    RateLimited {
        /// When a token will be available again.
        retry_at: OffsetDateTime,
    },
    /// The request named a provider that is not configured.
    NotConfigured,
}

impl SkipReason {
    /// When the provider may become a candidate again, if that is a matter of time.
    pub fn retry_at(self) -> Option<OffsetDateTime> {
        match self {
            SkipReason::CircuitOpen { retry_at } | SkipReason::RateLimited { retry_at } => {
                Some(retry_at)
            }
            SkipReason::NotConfigured => None,
        }
    }
}

/// A provider left out of the candidates, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// The provider.
    pub provider: ProviderId,
    /// Why it was left out.
    pub reason: SkipReason,
}

/// The outcome of [`ProviderOrder::select`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The providers to try, in order.
    pub candidates: Vec<ProviderId>,
    /// The providers left out, in configured order.
    pub skipped: Vec<Skipped>,
}

impl Selection {
    fn skip(&mut self, provider: ProviderId, reason: SkipReason) {
        self.skipped.push(Skipped { provider, reason });
    }

    /// Whether there is nothing to try now.
    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// The earliest time a skipped provider may become a candidate again: when a deferred send is
    /// worth attempting. `None` if no skipped provider recovers with time.
    pub fn earliest_retry_at(&self) -> Option<OffsetDateTime> {
        self.skipped
            .iter()
            .filter_map(|s| s.reason.retry_at())
            .min()
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Try the next candidate now.
    TryNext,
    /// Retry the same provider after waiting `after` (it fits the request budget).
    RetrySame {
        /// How long to wait first.
        after: Duration,
    },
    /// Stop trying in this request; hand the message to the async path, not before `after`.
    Defer {
        /// The suggested delay before the async attempt.
        after: Duration,
    },
    /// Stop: the message failed (permanent or not retryable), or — for an ambiguous outcome — it
    /// is recorded as `unknown` and left for a webhook to settle.
    Stop,
}

/// The facts about a failed attempt that decide the next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedAttempt {
    /// How the failure was classified.
    pub classification: Classification,
    /// Provider calls made in this request so far, this one included.
    pub attempts: u32,
    /// Retries already made on this provider in this request (0 after its first call).
    pub retries_on_provider: u32,
    /// What is left of the request's time budget.
    pub remaining_budget: Duration,
    /// Whether the selection has another candidate after this provider (never, for an explicit
    /// provider).
    pub has_next_candidate: bool,
}

/// The rules for failing over and retrying within one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverPolicy {
    /// Whether an ambiguous outcome (may have been sent) may be followed by a second provider,
    /// risking a duplicate. Off by default.
    pub allow_failover_on_ambiguous: bool,
    /// The most provider calls in one request (at least 1).
    pub max_attempts: u32,
    /// The backoff for retries on the same provider; its base is replaced by the error
    /// category's base retry delay.
    pub backoff: Backoff,
}

impl Default for FailoverPolicy {
    /// No failover on ambiguous outcomes, at most 4 calls, the default backoff.
    fn default() -> Self {
        Self {
            allow_failover_on_ambiguous: false,
            max_attempts: 4,
            backoff: Backoff::default(),
        }
    }
}

impl FailoverPolicy {
    /// Decides what follows a failed attempt. `random` is a number in `[0, 1)` for the backoff
    /// jitter.
    ///
    /// - permanent → stop;
    /// - ambiguous → the next candidate only if allowed by configuration, otherwise stop;
    /// - failover-worthy or throttled → the next candidate if there is one; otherwise, if the
    ///   category is retryable, the same provider after a backoff (never shorter than
    ///   `Retry-After`) when the category's retry limit and the budget allow, else defer to the
    ///   async path; if the category is not retryable, stop.
    pub fn next_step(&self, attempt: &FailedAttempt, random: f64) -> NextStep {
        let class = attempt.classification;
        let calls_left = attempt.attempts < self.max_attempts.max(1);
        let can_move_on = calls_left && attempt.has_next_candidate;
        match class.outcome {
            OutcomeClass::Permanent => NextStep::Stop,
            OutcomeClass::Ambiguous if self.allow_failover_on_ambiguous && can_move_on => {
                NextStep::TryNext
            }
            OutcomeClass::Ambiguous => NextStep::Stop,
            OutcomeClass::Failover | OutcomeClass::Throttled if can_move_on => NextStep::TryNext,
            OutcomeClass::Failover | OutcomeClass::Throttled => {
                let policy = class.policy();
                if !policy.retryable {
                    return NextStep::Stop;
                }
                let floor = class.retry_after.unwrap_or(Duration::ZERO);
                if calls_left && attempt.retries_on_provider < policy.max_retries {
                    let wait = self
                        .backoff
                        .with_base(policy.base_retry_delay)
                        .delay_at_least(
                            attempt.retries_on_provider,
                            floor,
                            attempt.remaining_budget,
                            random,
                        );
                    if let Some(after) = wait {
                        return NextStep::RetrySame { after };
                    }
                }
                NextStep::Defer {
                    after: class.retry_after.unwrap_or(policy.base_retry_delay),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::breaker::BreakerState;
    use crate::clock::{Clock, FixedClock};
    use crate::send_error::{ErrorCategory, SendFailure, TransportFault};
    use ProviderId::{Mailgun, Postmark, Sendgrid, Ses, Smtp2go};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn at(seconds: i64) -> OffsetDateTime {
        FixedClock::at_unix(seconds).now()
    }

    fn all_ready(_: ProviderId) -> Availability {
        Availability::Ready
    }

    fn order(s: &str) -> ProviderOrder {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_the_configuration_form() {
        let o = order(" ses:3, sendgrid ,mailgun:1,");
        assert_eq!(o.providers().collect::<Vec<_>>(), [Ses, Sendgrid, Mailgun]);
        assert_eq!(o.weight(Ses), Some(3));
        assert_eq!(o.weight(Sendgrid), Some(0));
        assert_eq!(o.weight(Postmark), None);
        assert_eq!(o.to_string(), "ses:3,sendgrid,mailgun:1");
        assert_eq!(order(&o.to_string()), o);
    }

    #[test]
    fn rejects_unusable_orders() {
        assert_eq!("".parse::<ProviderOrder>(), Err(ProviderOrderError::Empty));
        assert_eq!(
            "ses,postmark,ses".parse::<ProviderOrder>(),
            Err(ProviderOrderError::Duplicate(Ses))
        );
        assert!(matches!(
            "ses,sparkpost".parse::<ProviderOrder>(),
            Err(ProviderOrderError::UnknownProvider(_))
        ));
        // The simulator is never a configured provider: only test keys reach it.
        assert!(matches!(
            "ses,simulator".parse::<ProviderOrder>(),
            Err(ProviderOrderError::UnknownProvider(_))
        ));
        assert_eq!(
            "ses:-1".parse::<ProviderOrder>(),
            Err(ProviderOrderError::InvalidWeight("-1".into()))
        );
        assert_eq!(ProviderOrder::new([]), Err(ProviderOrderError::Empty));
    }

    #[test]
    fn without_weights_candidates_follow_the_configured_order() {
        let o = ProviderOrder::new([Postmark, Ses, Smtp2go]).unwrap();
        for random in [0.0, 0.5, 0.99] {
            let s = o.select(None, all_ready, random);
            assert_eq!(s.candidates, [Postmark, Ses, Smtp2go]);
            assert!(s.skipped.is_empty());
        }
    }

    #[test]
    fn skips_providers_whose_circuit_is_open_or_budget_spent() {
        let o = order("ses,sendgrid,mailgun,postmark");
        let s = o.select(
            None,
            |p| match p {
                Ses => Availability::CircuitOpen { retry_at: at(130) },
                Mailgun => Availability::RateLimited { retry_at: at(101) },
                _ => Availability::Ready,
            },
            0.0,
        );
        assert_eq!(s.candidates, [Sendgrid, Postmark]);
        assert_eq!(
            s.skipped,
            [
                Skipped {
                    provider: Ses,
                    reason: SkipReason::CircuitOpen { retry_at: at(130) }
                },
                Skipped {
                    provider: Mailgun,
                    reason: SkipReason::RateLimited { retry_at: at(101) }
                },
            ]
        );
        assert_eq!(s.earliest_retry_at(), Some(at(101)));
    }

    #[test]
    fn nothing_ready_gives_an_empty_selection_with_the_time_to_come_back() {
        let o = order("ses,sendgrid");
        let s = o.select(
            None,
            |p| Availability::CircuitOpen {
                retry_at: if p == Ses { at(50) } else { at(40) },
            },
            0.3,
        );
        assert!(s.is_empty());
        assert_eq!(s.earliest_retry_at(), Some(at(40)));
    }

    #[test]
    fn an_explicit_provider_yields_exactly_that_provider() {
        let o = order("ses,sendgrid,postmark");
        let s = o.select(Some(Postmark), all_ready, 0.0);
        assert_eq!(s.candidates, [Postmark]);
        assert!(s.skipped.is_empty());
    }

    #[test]
    fn an_unavailable_explicit_provider_never_falls_back() {
        let o = order("ses,sendgrid");
        let mut asked = Vec::new();
        let s = o.select(
            Some(Ses),
            |p| {
                asked.push(p);
                Availability::CircuitOpen { retry_at: at(9) }
            },
            0.0,
        );
        assert!(s.is_empty());
        assert_eq!(asked, [Ses]);
        assert_eq!(s.earliest_retry_at(), Some(at(9)));
    }

    #[test]
    fn an_explicit_provider_that_is_not_configured_is_not_a_candidate() {
        let o = order("ses,sendgrid");
        let s = o.select(Some(Mailgun), all_ready, 0.0);
        assert!(s.is_empty());
        assert_eq!(
            s.skipped,
            [Skipped {
                provider: Mailgun,
                reason: SkipReason::NotConfigured
            }]
        );
        assert_eq!(s.earliest_retry_at(), None);
    }

    #[test]
    fn weights_pick_the_first_candidate_and_the_rest_follow_configured_order() {
        let o = order("ses:3,sendgrid,postmark:1");
        // Total weight 4: [0, 0.75) draws SES, [0.75, 1) draws Postmark.
        assert_eq!(
            o.select(None, all_ready, 0.0).candidates,
            [Ses, Sendgrid, Postmark]
        );
        assert_eq!(
            o.select(None, all_ready, 0.749).candidates,
            [Ses, Sendgrid, Postmark]
        );
        assert_eq!(
            o.select(None, all_ready, 0.75).candidates,
            [Postmark, Ses, Sendgrid]
        );
        assert_eq!(
            o.select(None, all_ready, 0.999).candidates,
            [Postmark, Ses, Sendgrid]
        );
        assert_eq!(
            o.select(None, all_ready, 1.5).candidates,
            [Postmark, Ses, Sendgrid]
        );
        assert_eq!(
            o.select(None, all_ready, f64::NAN).candidates,
            [Ses, Sendgrid, Postmark]
        );
    }

    #[test]
    fn weights_are_drawn_among_ready_providers_only() {
        let o = order("ses:3,sendgrid,postmark:1");
        let s = o.select(
            None,
            |p| {
                if p == Ses {
                    Availability::CircuitOpen { retry_at: at(1) }
                } else {
                    Availability::Ready
                }
            },
            0.1,
        );
        assert_eq!(s.candidates, [Postmark, Sendgrid]);
        // With no weighted provider ready, the configured order applies.
        let s = o.select(
            None,
            |p| {
                if p == Sendgrid {
                    Availability::Ready
                } else {
                    Availability::RateLimited { retry_at: at(1) }
                }
            },
            0.9,
        );
        assert_eq!(s.candidates, [Sendgrid]);
    }

    #[test]
    fn weighted_draws_follow_the_weights() {
        let o = order("ses:3,sendgrid:1");
        let mut rng = StdRng::seed_from_u64(42);
        let draws = 10_000;
        let ses_first = (0..draws)
            .filter(|_| o.select(None, all_ready, rng.random::<f64>()).candidates[0] == Ses)
            .count();
        let share = ses_first as f64 / draws as f64;
        assert!((0.72..0.78).contains(&share), "{share}");
    }

    #[test]
    fn availability_combines_breaker_and_rate_budget() {
        let rejected = Admission::Rejected { retry_at: at(30) };
        assert_eq!(
            Availability::of(&rejected, Some(at(5))),
            Availability::CircuitOpen { retry_at: at(30) }
        );
        assert_eq!(
            Availability::of(&Admission::Allowed, Some(at(5))),
            Availability::RateLimited { retry_at: at(5) }
        );
        let probe = Admission::Probe(BreakerState::new());
        assert_eq!(Availability::of(&probe, None), Availability::Ready);
        assert_eq!(
            Availability::of(&Admission::Allowed, None),
            Availability::Ready
        );
    }

    fn failed(failure: SendFailure, has_next: bool) -> FailedAttempt {
        FailedAttempt {
            classification: failure.classify(),
            attempts: 1,
            retries_on_provider: 0,
            remaining_budget: Duration::from_secs(9),
            has_next_candidate: has_next,
        }
    }

    #[test]
    fn fails_over_on_a_server_error() {
        let policy = FailoverPolicy::default();
        let step = policy.next_step(&failed(SendFailure::http(500), true), 0.5);
        assert_eq!(step, NextStep::TryNext);
    }

    #[test]
    fn fails_over_when_the_provider_rejects_our_credentials() {
        let policy = FailoverPolicy::default();
        assert_eq!(
            policy.next_step(&failed(SendFailure::http(401), true), 0.5),
            NextStep::TryNext
        );
        // The last provider with bad credentials: waiting will not help.
        assert_eq!(
            policy.next_step(&failed(SendFailure::http(401), false), 0.5),
            NextStep::Stop
        );
    }

    #[test]
    fn fails_over_when_primary_is_throttled() {
        let policy = FailoverPolicy::default();
        let failure = SendFailure::http(429).with_retry_after(Duration::from_secs(2));
        assert_eq!(
            policy.next_step(&failed(failure, true), 0.5),
            NextStep::TryNext
        );
    }

    #[test]
    fn a_throttled_last_provider_is_retried_after_retry_after_when_the_budget_allows() {
        let policy = FailoverPolicy::default();
        let failure = SendFailure::http(429).with_retry_after(Duration::from_secs(3));
        assert_eq!(
            policy.next_step(&failed(failure, false), 0.0),
            NextStep::RetrySame {
                after: Duration::from_secs(3)
            }
        );
    }

    #[test]
    fn a_throttled_last_provider_is_deferred_when_retry_after_exceeds_the_budget() {
        let policy = FailoverPolicy::default();
        let failure = SendFailure::http(429).with_retry_after(Duration::from_secs(60));
        assert_eq!(
            policy.next_step(&failed(failure, false), 0.0),
            NextStep::Defer {
                after: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn the_last_provider_failing_transiently_is_retried_with_backoff() {
        let policy = FailoverPolicy::default();
        let mut attempt = failed(SendFailure::http(503), false);
        // service_unavailable: base 500 ms, doubling.
        assert_eq!(
            policy.next_step(&attempt, 0.5),
            NextStep::RetrySame {
                after: Duration::from_millis(250)
            }
        );
        attempt.retries_on_provider = 2;
        attempt.attempts = 3;
        assert_eq!(
            policy.next_step(&attempt, 0.5),
            NextStep::RetrySame {
                after: Duration::from_millis(1_000)
            }
        );
    }

    #[test]
    fn defers_to_the_async_path_when_retries_are_used_up() {
        let policy = FailoverPolicy::default();
        let mut attempt = failed(SendFailure::transport(TransportFault::Connect), false);
        attempt.retries_on_provider = ErrorCategory::NetworkError.policy().max_retries;
        attempt.attempts = 3;
        assert_eq!(
            policy.next_step(&attempt, 0.5),
            NextStep::Defer {
                after: ErrorCategory::NetworkError.policy().base_retry_delay
            }
        );
    }

    #[test]
    fn defers_to_the_async_path_when_the_budget_is_spent() {
        let policy = FailoverPolicy::default();
        let mut attempt = failed(SendFailure::http(502), false);
        attempt.remaining_budget = Duration::from_millis(1_500);
        assert!(matches!(
            policy.next_step(&attempt, 0.5),
            NextStep::Defer { .. }
        ));
    }

    #[test]
    fn stops_at_the_attempt_limit_even_with_candidates_left() {
        let policy = FailoverPolicy {
            max_attempts: 2,
            ..FailoverPolicy::default()
        };
        let mut attempt = failed(SendFailure::http(500), true);
        attempt.attempts = 2;
        assert!(matches!(
            policy.next_step(&attempt, 0.5),
            NextStep::Defer { .. }
        ));
        let mut auth = failed(SendFailure::http(403), true);
        auth.attempts = 2;
        assert_eq!(policy.next_step(&auth, 0.5), NextStep::Stop);
    }

    #[test]
    fn a_permanent_rejection_stops_without_failover() {
        let policy = FailoverPolicy::default();
        assert_eq!(
            policy.next_step(&failed(SendFailure::http(422), true), 0.5),
            NextStep::Stop
        );
        let invalid = SendFailure::stated(ErrorCategory::InvalidRecipient);
        assert_eq!(
            policy.next_step(&failed(invalid, true), 0.5),
            NextStep::Stop
        );
    }

    #[test]
    fn a_timeout_after_the_request_left_never_reaches_a_second_provider_by_default() {
        let policy = FailoverPolicy::default();
        let timeout = SendFailure::transport(TransportFault::TimeoutAfterSend);
        assert_eq!(
            policy.next_step(&failed(timeout.clone(), true), 0.5),
            NextStep::Stop
        );
        assert_eq!(
            policy.next_step(&failed(timeout, false), 0.5),
            NextStep::Stop
        );
    }

    #[test]
    fn configuration_may_allow_failover_on_an_ambiguous_outcome() {
        let policy = FailoverPolicy {
            allow_failover_on_ambiguous: true,
            ..FailoverPolicy::default()
        };
        let timeout = SendFailure::transport(TransportFault::TimeoutAfterSend);
        assert_eq!(
            policy.next_step(&failed(timeout.clone(), true), 0.5),
            NextStep::TryNext
        );
        // Still never the same provider again, and never past an explicit provider.
        assert_eq!(
            policy.next_step(&failed(timeout, false), 0.5),
            NextStep::Stop
        );
    }
}
