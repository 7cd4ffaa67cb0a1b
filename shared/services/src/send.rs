//! The send service: takes a validated [`OutboundEmail`] and gets it accepted by a provider, with
//! failover, the shared circuit breaker, the shared rate limit and bounded retries inside a time
//! budget. The same code serves the synchronous API path and the async `send-worker`.
//!
//! The decisions are the core's: [`ProviderOrder::select`] orders the candidates (skipping open
//! circuits and spent rate budgets), [`FailoverPolicy::next_step`] decides what follows a failed
//! attempt, and its [`Backoff`](mailgate_core::Backoff) draws the full-jitter waits. This module
//! only runs the loop:
//!
//! 1. Select the candidates. A candidate's availability is checked lazily, just before it would
//!    be called — the breaker's admission, then one token of its rate budget — so a send costs
//!    health calls only for the providers it actually tries. A provider found unavailable is
//!    marked so and the selection is made again (with the same random draw, so weights are drawn
//!    among the ready providers only).
//! 2. Call the provider, record the attempt, and report the outcome to the breaker: a success
//!    (or a refusal of the message itself: the provider is up and answering) as a success, and
//!    only failures that [count against the provider](OutcomeClass::counts_against_provider) as
//!    failures; throttles are the rate limiter's business.
//! 3. Ask the policy: try the next candidate, retry the same one after a wait (never shorter than
//!    `Retry-After`, inside the budget), defer to the async path, or stop.
//!
//! | situation | outcome |
//! |---|---|
//! | a provider accepts | `Sent` |
//! | permanent refusal (400/422, invalid recipient) | `Failed`, no retry, no failover |
//! | failover-worthy failure (5xx, 401/403, connect) with a candidate left | next provider |
//! | 429 with a candidate left | next provider; on the last one a retry after `Retry-After` if the budget allows, else `Deferred` |
//! | ambiguous (timeout after the request left, 504) | `Unknown`; a second provider only if allowed |
//! | explicit provider | that provider only: never another |
//! | every candidate's circuit open or rate budget spent | `Deferred` until the earliest recovery |
//! | the budget cannot fit another call | `Deferred` |
//! | a non-retryable failure on the last provider, others recovering | `Deferred` until they do |
//!
//! Provider health is best effort: if the shared store cannot be reached the service logs it and
//! sends anyway (an unreachable control table must not stop mail), treating the provider as
//! available.
//!
//! The service counts nothing itself: the [`SendReport`] lists every attempt, every failover
//! and every breaker it opened, and the caller turns them into metrics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mailgate_core::ports::{BoxFuture, EmailProvider, ProviderHealth, RandomSource, Sleeper};
use mailgate_core::{
    Admission, AttemptOutcome, Availability, CircuitStatus, Classification, Clock, ErrorCategory,
    FailedAttempt, FailoverPolicy, NextStep, OutboundEmail, OutcomeClass, ProviderId,
    ProviderOrder, SendFailure, SystemClock, TakeDenied,
};
use serde::Serialize;
use time::OffsetDateTime;

/// Sleeps on the tokio timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// The thread-local generator of `rand`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRandom;

impl RandomSource for ThreadRandom {
    fn unit(&self) -> f64 {
        rand::random::<f64>()
    }
}

/// One provider call, as the message's record keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCall {
    /// The provider called.
    pub provider: ProviderId,
    /// When the call started.
    pub started_at: OffsetDateTime,
    /// What became of it.
    pub outcome: AttemptOutcome,
    /// The provider's message id, when it took the message.
    pub provider_message_id: Option<String>,
    /// The error category, when it did not (or may not have).
    pub category: Option<ErrorCategory>,
    /// The HTTP status of a failed call, if there was one.
    pub status: Option<u16>,
    /// The provider's own error code, if it gave one.
    pub provider_code: Option<String>,
}

/// Why a send was handed to the async path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DeferReason {
    /// The last failure is retryable, but not within this request (retries or budget used up,
    /// or `Retry-After` beyond the budget).
    Retryable {
        /// The category of the last failure.
        category: ErrorCategory,
    },
    /// No provider could be called: circuits open or rate budgets spent.
    NoProviderAvailable,
    /// The budget could not fit another provider call.
    BudgetSpent,
}

/// The result of a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// A provider accepted the message.
    Sent {
        /// Which one.
        provider: ProviderId,
        /// Its id for the message.
        provider_message_id: String,
    },
    /// Still worth sending, later: hand it to the async path, not before `retry_at`.
    Deferred {
        /// The earliest time worth trying again.
        retry_at: OffsetDateTime,
        /// Why it was deferred.
        reason: DeferReason,
    },
    /// The message cannot be sent (refused, or nothing retryable is left).
    Failed {
        /// The failure that decided it.
        classification: Classification,
    },
    /// The last call may have been accepted; no other provider was tried after it.
    Unknown {
        /// The provider that may have the message.
        provider: ProviderId,
    },
}

/// The outcome and every provider call made on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendReport {
    /// How the send ended.
    pub outcome: SendOutcome,
    /// Every provider call, in order.
    pub attempts: Vec<ProviderCall>,
    /// The providers a failure moved the send away from, to a next candidate.
    pub failovers: Vec<ProviderId>,
    /// The providers whose circuit breaker a failure of this send opened.
    pub breakers_opened: Vec<ProviderId>,
}

/// The service cannot be built from what it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendServiceError {
    /// The order lists a provider without a sender.
    #[error("provider {0} is in the provider order but has no sender")]
    NoSender(ProviderId),
}

/// Sends one message through the configured providers.
pub struct SendService {
    providers: HashMap<ProviderId, Arc<dyn EmailProvider>>,
    order: ProviderOrder,
    policy: FailoverPolicy,
    health: Arc<dyn ProviderHealth>,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
    random: Arc<dyn RandomSource>,
}

impl std::fmt::Debug for SendService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendService")
            .field("order", &self.order.to_string())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// A provider's availability as learned during one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    /// Not callable now.
    Unavailable(Availability),
    /// Called, and the policy moved on from it.
    Done,
}

impl SendService {
    /// A service over `providers` (one per provider in `order`), with the real clock, tokio's
    /// timer and the thread-local random generator.
    pub fn new(
        providers: Vec<Arc<dyn EmailProvider>>,
        order: ProviderOrder,
        policy: FailoverPolicy,
        health: Arc<dyn ProviderHealth>,
    ) -> Result<Self, SendServiceError> {
        let providers: HashMap<_, _> = providers.into_iter().map(|p| (p.id(), p)).collect();
        if let Some(missing) = order.providers().find(|p| !providers.contains_key(p)) {
            return Err(SendServiceError::NoSender(missing));
        }
        Ok(Self {
            providers,
            order,
            policy,
            health,
            clock: Arc::new(SystemClock),
            sleeper: Arc::new(TokioSleeper),
            random: Arc::new(ThreadRandom),
        })
    }

    /// The same service reading time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same service waiting through `sleeper`.
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// The same service drawing random numbers from `random`.
    pub fn with_random(mut self, random: Arc<dyn RandomSource>) -> Self {
        self.random = random;
        self
    }

    /// The provider order.
    pub fn order(&self) -> &ProviderOrder {
        &self.order
    }

    /// Sends `email`: through `requested` only, if given (never another provider), otherwise
    /// through the configured order, within `budget`. See the module documentation.
    pub async fn send(
        &self,
        email: &OutboundEmail,
        requested: Option<ProviderId>,
        budget: Duration,
    ) -> SendReport {
        let started = self.clock.now();
        let deadline = started + budget;
        let draw = self.random.unit();
        let mut checked: HashMap<ProviderId, Checked> = HashMap::new();
        let mut attempts: Vec<ProviderCall> = Vec::new();
        let mut failovers: Vec<ProviderId> = Vec::new();
        let mut breakers_opened: Vec<ProviderId> = Vec::new();
        // The provider being retried, with the retries made on it.
        let mut retrying: Option<(ProviderId, u32)> = None;
        let mut last_failure: Option<Classification> = None;

        loop {
            let selection = self.order.select(
                requested,
                |p| match checked.get(&p) {
                    Some(Checked::Unavailable(availability)) => *availability,
                    _ => Availability::Ready,
                },
                draw,
            );
            let remaining: Vec<ProviderId> = selection
                .candidates
                .iter()
                .copied()
                .filter(|p| checked.get(p) != Some(&Checked::Done))
                .collect();
            let (provider, retries) = match retrying.take() {
                Some((provider, retries)) => (provider, retries),
                None => match remaining.first() {
                    Some(&provider) => (provider, 0),
                    None => {
                        let outcome =
                            self.exhausted(last_failure, selection.earliest_retry_at(), requested);
                        return SendReport {
                            outcome,
                            attempts,
                            failovers,
                            breakers_opened,
                        };
                    }
                },
            };

            if !attempts.is_empty() && self.remaining(deadline) < self.policy.backoff.reserve {
                let wait = last_failure.and_then(|c| c.retry_after).unwrap_or_default();
                let outcome = SendOutcome::Deferred {
                    retry_at: self.clock.now() + wait,
                    reason: DeferReason::BudgetSpent,
                };
                return SendReport {
                    outcome,
                    attempts,
                    failovers,
                    breakers_opened,
                };
            }

            // Every call, a retry included, needs the breaker's admission and a token.
            let availability = self.check(provider).await;
            if availability != Availability::Ready {
                checked.insert(provider, Checked::Unavailable(availability));
                continue;
            }

            let Some(sender) = self.providers.get(&provider) else {
                // `new` guarantees a sender per configured provider and selection yields only
                // configured ones; skip defensively rather than panic.
                checked.insert(provider, Checked::Done);
                continue;
            };
            let started_at = self.clock.now();
            let result = sender.send(email).await;
            let finished_at = self.clock.now();
            let failure = match result {
                Ok(accepted) => {
                    self.report(provider, true, finished_at).await;
                    attempts.push(ProviderCall {
                        provider,
                        started_at,
                        outcome: AttemptOutcome::Accepted,
                        provider_message_id: Some(accepted.provider_message_id.clone()),
                        category: None,
                        status: None,
                        provider_code: None,
                    });
                    let outcome = SendOutcome::Sent {
                        provider,
                        provider_message_id: accepted.provider_message_id,
                    };
                    return SendReport {
                        outcome,
                        attempts,
                        failovers,
                        breakers_opened,
                    };
                }
                Err(failure) => failure,
            };
            let classification = failure.classify();
            attempts.push(failed_attempt(
                provider,
                started_at,
                &failure,
                classification,
            ));
            let counts_against = classification.outcome.counts_against_provider();
            if counts_against && self.report(provider, false, finished_at).await {
                breakers_opened.push(provider);
            } else if !counts_against && classification.outcome == OutcomeClass::Permanent {
                // The provider answered properly: it refused the message itself.
                self.report(provider, true, finished_at).await;
            }
            last_failure = Some(classification);

            let has_next_candidate = remaining.iter().any(|p| *p != provider);
            let step = self.policy.next_step(
                &FailedAttempt {
                    classification,
                    attempts: u32::try_from(attempts.len()).unwrap_or(u32::MAX),
                    retries_on_provider: retries,
                    remaining_budget: self.remaining(deadline),
                    has_next_candidate,
                },
                self.random.unit(),
            );
            tracing::info!(
                %provider,
                category = %classification.category,
                outcome = ?classification.outcome,
                ?step,
                "send attempt failed"
            );
            match step {
                NextStep::TryNext => {
                    if has_next_candidate {
                        failovers.push(provider);
                    }
                    checked.insert(provider, Checked::Done);
                }
                NextStep::RetrySame { after } => {
                    self.sleeper.sleep(after).await;
                    retrying = Some((provider, retries.saturating_add(1)));
                }
                NextStep::Defer { after } => {
                    let outcome = SendOutcome::Deferred {
                        retry_at: self.clock.now() + after,
                        reason: DeferReason::Retryable {
                            category: classification.category,
                        },
                    };
                    return SendReport {
                        outcome,
                        attempts,
                        failovers,
                        breakers_opened,
                    };
                }
                NextStep::Stop => {
                    let outcome = match classification.outcome {
                        OutcomeClass::Ambiguous => SendOutcome::Unknown { provider },
                        OutcomeClass::Permanent => SendOutcome::Failed { classification },
                        // Not retryable here, but providers skipped as unavailable may take it
                        // once they recover.
                        OutcomeClass::Failover | OutcomeClass::Throttled => {
                            match selection.earliest_retry_at() {
                                Some(retry_at) if requested.is_none() => SendOutcome::Deferred {
                                    retry_at,
                                    reason: DeferReason::NoProviderAvailable,
                                },
                                _ => SendOutcome::Failed { classification },
                            }
                        }
                    };
                    return SendReport {
                        outcome,
                        attempts,
                        failovers,
                        breakers_opened,
                    };
                }
            }
        }
    }

    /// The outcome when no candidate is left to call.
    fn exhausted(
        &self,
        last_failure: Option<Classification>,
        earliest_retry_at: Option<OffsetDateTime>,
        requested: Option<ProviderId>,
    ) -> SendOutcome {
        if let Some(retry_at) = earliest_retry_at {
            return SendOutcome::Deferred {
                retry_at,
                reason: DeferReason::NoProviderAvailable,
            };
        }
        match last_failure {
            Some(c) if c.policy().retryable => SendOutcome::Deferred {
                retry_at: self.clock.now() + c.retry_after.unwrap_or(c.policy().base_retry_delay),
                reason: DeferReason::Retryable {
                    category: c.category,
                },
            },
            Some(classification) => SendOutcome::Failed { classification },
            // Nothing was tried and nothing recovers with time: the requested provider is not
            // configured.
            None => {
                tracing::warn!(?requested, "no configured provider to send through");
                SendOutcome::Failed {
                    classification: Classification::new(
                        ErrorCategory::ConfigurationError,
                        OutcomeClass::Permanent,
                    ),
                }
            }
        }
    }

    /// What is left of the budget.
    fn remaining(&self, deadline: OffsetDateTime) -> Duration {
        Duration::try_from(deadline - self.clock.now()).unwrap_or(Duration::ZERO)
    }

    /// Asks the breaker, then the rate budget, whether `provider` may be called now. Health that
    /// cannot be read counts as available.
    async fn check(&self, provider: ProviderId) -> Availability {
        let now = self.clock.now();
        let admission = match self.health.admit(provider, now).await {
            Ok(admission) => admission,
            Err(e) => {
                tracing::warn!(%provider, error = %e, "breaker state unavailable; sending anyway");
                Admission::Allowed
            }
        };
        if !admission.is_admitted() {
            return Availability::of(&admission, None);
        }
        let spent_until = match self.health.take_token(provider, now).await {
            Ok(Ok(())) => None,
            Ok(Err(TakeDenied::RetryAt(at))) => Some(at),
            // One token can exceed the burst only with a burst of 0, which configuration rejects.
            Ok(Err(TakeDenied::ExceedsBurst { .. })) => None,
            Err(e) => {
                tracing::warn!(%provider, error = %e, "rate budget unavailable; sending anyway");
                None
            }
        };
        Availability::of(&admission, spent_until)
    }

    /// Reports a call's outcome to the breaker; a store failure is logged, not fatal. Whether
    /// this report opened the circuit.
    async fn report(&self, provider: ProviderId, healthy: bool, now: OffsetDateTime) -> bool {
        let result = if healthy {
            self.health.record_success(provider, now).await
        } else {
            self.health.record_failure(provider, now).await
        };
        match result {
            // Calls are not admitted while the circuit is open, so a failure that leaves it open
            // is the one that opened it (or a failed probe that opened it again).
            Ok(CircuitStatus::Open) if !healthy => {
                tracing::warn!(%provider, "circuit breaker opened");
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(%provider, healthy, error = %e, "breaker update failed");
                false
            }
        }
    }
}

impl SendReport {
    /// The report of one call to `provider`, with no failover, retry or breaker: the simulator's
    /// send (test keys). A refusal is `Failed`, an ambiguous failure `Unknown`.
    pub fn of_one_call(
        provider: ProviderId,
        started_at: OffsetDateTime,
        result: Result<mailgate_core::ports::Accepted, SendFailure>,
    ) -> Self {
        let (outcome, attempt) = match result {
            Ok(accepted) => (
                SendOutcome::Sent {
                    provider,
                    provider_message_id: accepted.provider_message_id.clone(),
                },
                ProviderCall {
                    provider,
                    started_at,
                    outcome: AttemptOutcome::Accepted,
                    provider_message_id: Some(accepted.provider_message_id),
                    category: None,
                    status: None,
                    provider_code: None,
                },
            ),
            Err(failure) => {
                let classification = failure.classify();
                let attempt = failed_attempt(provider, started_at, &failure, classification);
                let outcome = if classification.outcome.may_have_been_sent() {
                    SendOutcome::Unknown { provider }
                } else {
                    SendOutcome::Failed { classification }
                };
                (outcome, attempt)
            }
        };
        Self {
            outcome,
            attempts: vec![attempt],
            failovers: Vec::new(),
            breakers_opened: Vec::new(),
        }
    }
}

fn failed_attempt(
    provider: ProviderId,
    started_at: OffsetDateTime,
    failure: &SendFailure,
    classification: Classification,
) -> ProviderCall {
    ProviderCall {
        provider,
        started_at,
        outcome: if classification.outcome.may_have_been_sent() {
            AttemptOutcome::Unknown
        } else {
            AttemptOutcome::Failed
        },
        provider_message_id: None,
        category: Some(classification.category),
        status: failure.status,
        provider_code: failure.provider_code.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        FixedRandom, MemoryHealth, RecordingSleeper, ScriptedProvider, Step, fails,
    };

    use ProviderId::{Postmark, Sendgrid};
    use mailgate_core::{
        CircuitStatus, EmailAddress, FixedClock, Mailbox, MessageId, RateLimit, TransportFault,
    };

    const T0: i64 = 1_790_000_000;

    fn at(seconds: i64) -> OffsetDateTime {
        FixedClock::at_unix(T0 + seconds).now()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    struct Harness {
        service: SendService,
        health: Arc<MemoryHealth>,
        sleeper: Arc<RecordingSleeper>,
        providers: HashMap<ProviderId, Arc<ScriptedProvider>>,
    }

    impl Harness {
        fn calls(&self, provider: ProviderId) -> u32 {
            self.providers[&provider].calls()
        }

        fn waits(&self) -> Vec<Duration> {
            self.sleeper.waits.lock().unwrap().clone()
        }

        async fn send(&self, requested: Option<ProviderId>) -> SendReport {
            self.service.send(&email(), requested, secs(10)).await
        }
    }

    struct Setup {
        order: &'static str,
        scripts: Vec<(ProviderId, Vec<Step>)>,
        policy: FailoverPolicy,
        limits: HashMap<ProviderId, RateLimit>,
        random: f64,
        failure_threshold: u32,
    }

    impl Setup {
        fn new(order: &'static str) -> Self {
            Self {
                order,
                scripts: Vec::new(),
                policy: FailoverPolicy::default(),
                limits: HashMap::new(),
                random: 0.5,
                failure_threshold: 2,
            }
        }

        fn script(mut self, provider: ProviderId, steps: Vec<Step>) -> Self {
            self.scripts.push((provider, steps));
            self
        }

        fn build(self) -> Harness {
            let clock = Arc::new(FixedClock::at_unix(T0));
            let order: ProviderOrder = self.order.parse().unwrap();
            let mut scripts: HashMap<_, _> = self.scripts.into_iter().collect();
            let providers: HashMap<ProviderId, Arc<ScriptedProvider>> = order
                .providers()
                .map(|id| {
                    let script = scripts.remove(&id).unwrap_or_default();
                    let provider = Arc::new(ScriptedProvider::new(id, clock.clone(), script));
                    (id, provider)
                })
                .collect();
            let health = Arc::new(MemoryHealth::new(self.limits, self.failure_threshold));
            let sleeper = Arc::new(RecordingSleeper::new(clock.clone()));
            let senders = providers
                .values()
                .map(|p| p.clone() as Arc<dyn EmailProvider>)
                .collect();
            let service = SendService::new(senders, order, self.policy, health.clone())
                .unwrap()
                .with_clock(clock)
                .with_sleeper(sleeper.clone())
                .with_random(Arc::new(FixedRandom(self.random)));
            Harness {
                service,
                health,
                sleeper,
                providers,
            }
        }
    }

    fn email() -> OutboundEmail {
        let mut e = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(EmailAddress::parse("news@example.com").unwrap()),
            EmailAddress::parse("jane@example.org").unwrap(),
            "Hello",
        );
        e.text = Some("Hi".into());
        e
    }

    fn sent(provider: ProviderId, id: &str) -> SendOutcome {
        SendOutcome::Sent {
            provider,
            provider_message_id: id.to_owned(),
        }
    }

    fn providers_of(report: &SendReport) -> Vec<ProviderId> {
        report.attempts.iter().map(|a| a.provider).collect()
    }

    #[tokio::test]
    async fn fails_over_to_the_next_provider_when_the_primary_answers_500() {
        let h = Setup::new("sendgrid,postmark")
            .script(Sendgrid, vec![fails(SendFailure::http(500))])
            .build();
        let report = h.send(None).await;
        assert_eq!(report.outcome, sent(Postmark, "postmark-id"));
        assert_eq!(providers_of(&report), [Sendgrid, Postmark]);
        let first = &report.attempts[0];
        assert_eq!(first.outcome, AttemptOutcome::Failed);
        assert_eq!(first.category, Some(ErrorCategory::ServiceUnavailable));
        assert_eq!(first.status, Some(500));
        assert_eq!(first.started_at, at(0));
        let second = &report.attempts[1];
        assert_eq!(second.outcome, AttemptOutcome::Accepted);
        assert_eq!(second.provider_message_id.as_deref(), Some("postmark-id"));
        assert_eq!(h.health.breaker(Sendgrid).failures, 1);
        assert_eq!(h.health.breaker(Postmark).failures, 0);
        assert!(h.waits().is_empty());
    }

    #[tokio::test]
    async fn fails_over_with_an_authentication_category_when_the_primary_rejects_our_credentials() {
        let failure = SendFailure::http(401).with_provider_code("10");
        let h = Setup::new("sendgrid,postmark")
            .script(Sendgrid, vec![fails(failure)])
            .build();
        let report = h.send(None).await;
        assert_eq!(report.outcome, sent(Postmark, "postmark-id"));
        assert_eq!(
            report.attempts[0].category,
            Some(ErrorCategory::Authentication)
        );
        assert_eq!(report.attempts[0].provider_code.as_deref(), Some("10"));
        assert_eq!(h.health.breaker(Sendgrid).failures, 1);
    }

    #[tokio::test]
    async fn fails_over_when_primary_is_throttled_without_counting_it_against_the_breaker() {
        let h = Setup::new("sendgrid,postmark")
            .script(
                Sendgrid,
                vec![fails(SendFailure::http(429).with_retry_after(secs(30)))],
            )
            .build();
        let report = h.send(None).await;
        assert_eq!(report.outcome, sent(Postmark, "postmark-id"));
        assert_eq!(report.attempts[0].category, Some(ErrorCategory::RateLimit));
        assert_eq!(h.health.breaker(Sendgrid).failures, 0);
        assert!(h.waits().is_empty());
    }

    #[tokio::test]
    async fn a_throttled_last_provider_is_deferred_when_retry_after_exceeds_the_budget() {
        let h = Setup::new("sendgrid")
            .script(
                Sendgrid,
                vec![fails(SendFailure::http(429).with_retry_after(secs(30)))],
            )
            .build();
        let report = h.send(None).await;
        assert_eq!(
            report.outcome,
            SendOutcome::Deferred {
                retry_at: at(30),
                reason: DeferReason::Retryable {
                    category: ErrorCategory::RateLimit
                }
            }
        );
        assert_eq!(report.attempts.len(), 1);
        assert!(h.waits().is_empty());
    }

    #[tokio::test]
    async fn a_throttled_last_provider_is_retried_no_sooner_than_retry_after() {
        let h = Setup::new("sendgrid")
            .script(
                Sendgrid,
                vec![fails(SendFailure::http(429).with_retry_after(secs(3)))],
            )
            .build();
        let report = h.send(None).await;
        assert_eq!(report.outcome, sent(Sendgrid, "sendgrid-id"));
        assert_eq!(providers_of(&report), [Sendgrid, Sendgrid]);
        let waits = h.waits();
        assert_eq!(waits.len(), 1);
        assert!(waits[0] >= secs(3), "{waits:?}");
        assert_eq!(report.attempts[1].started_at, at(0) + waits[0]);
    }

    #[tokio::test]
    async fn a_timeout_after_the_request_left_is_unknown_and_never_reaches_a_second_provider() {
        let h = Setup::new("sendgrid,postmark")
            .script(
                Sendgrid,
                vec![(
                    secs(5),
                    Err(SendFailure::transport(TransportFault::TimeoutAfterSend)),
                )],
            )
            .build();
        let report = h.send(None).await;
        assert_eq!(report.outcome, SendOutcome::Unknown { provider: Sendgrid });
        assert_eq!(report.attempts.len(), 1);
        assert_eq!(report.attempts[0].outcome, AttemptOutcome::Unknown);
        assert_eq!(report.attempts[0].category, Some(ErrorCategory::Unknown));
        assert_eq!(h.calls(Postmark), 0);
        // A provider that times out is unhealthy, whatever became of the message.
        assert_eq!(h.health.breaker(Sendgrid).failures, 1);
    }

    #[tokio::test]
    async fn configuration_may_allow_a_second_provider_after_an_ambiguous_timeout() {
        let mut setup = Setup::new("sendgrid,postmark").script(
            Sendgrid,
            vec![fails(SendFailure::transport(
                TransportFault::TimeoutAfterSend,
            ))],
        );
        setup.policy.allow_failover_on_ambiguous = true;
        let h = setup.build();
        let report = h.send(None).await;
        assert_eq!(report.outcome, sent(Postmark, "postmark-id"));
        assert_eq!(report.attempts[0].outcome, AttemptOutcome::Unknown);
    }

    #[tokio::test]
    async fn an_explicit_provider_never_falls_back() {
        let mut setup = Setup::new("sendgrid,postmark")
            .script(Sendgrid, vec![fails(SendFailure::http(503)); 4]);
        setup.failure_threshold = 5;
        let h = setup.build();
        let report = h.send(Some(Sendgrid)).await;
        assert!(matches!(
            report.outcome,
            SendOutcome::Deferred {
                reason: DeferReason::Retryable {
                    category: ErrorCategory::ServiceUnavailable
                },
                ..
            }
        ));
        // Retried with backoff up to the attempt limit, never through Postmark.
        assert_eq!(providers_of(&report), [Sendgrid; 4]);
        assert_eq!(h.waits().len(), 3);
        assert_eq!(h.calls(Postmark), 0);

        // Our own failures open its circuit: the retry waits for it rather than replacing it.
        let h = Setup::new("sendgrid,postmark")
            .script(Sendgrid, vec![fails(SendFailure::http(503)); 4])
            .build();
        let report = h.send(Some(Sendgrid)).await;
        assert!(matches!(
            report.outcome,
            SendOutcome::Deferred {
                reason: DeferReason::NoProviderAvailable,
                ..
            }
        ));
        assert_eq!(providers_of(&report), [Sendgrid; 2]);
        assert_eq!(h.calls(Postmark), 0);

        let h = Setup::new("sendgrid,postmark")
            .script(Sendgrid, vec![fails(SendFailure::http(401))])
            .build();
        let report = h.send(Some(Sendgrid)).await;
        assert!(matches!(
            report.outcome,
            SendOutcome::Failed { classification } if classification.category == ErrorCategory::Authentication
        ));
        assert_eq!(h.calls(Postmark), 0);
    }

    #[tokio::test]
    async fn an_explicit_provider_whose_circuit_is_open_is_deferred_not_replaced() {
        let h = Setup::new("sendgrid,postmark").build();
        for _ in 0..2 {
            h.health.record_failure(Sendgrid, at(0)).await.unwrap();
        }
        let report = h.send(Some(Sendgrid)).await;
        assert_eq!(
            report.outcome,
            SendOutcome::Deferred {
                retry_at: at(30),
                reason: DeferReason::NoProviderAvailable
            }
        );
        assert!(report.attempts.is_empty());
        assert_eq!(h.calls(Sendgrid) + h.calls(Postmark), 0);
    }

    #[tokio::test]
    async fn an_explicit_provider_that_is_not_configured_fails_as_a_configuration_error() {
        let h = Setup::new("sendgrid").build();
        let report = h.send(Some(Postmark)).await;
        assert_eq!(
            report.outcome,
            SendOutcome::Failed {
                classification: Classification::new(
                    ErrorCategory::ConfigurationError,
                    OutcomeClass::Permanent
                )
            }
        );
        assert!(report.attempts.is_empty());
    }

    #[tokio::test]
    async fn a_provider_whose_circuit_is_open_is_skipped() {
        let h = Setup::new("sendgrid,postmark").build();
        for _ in 0..2 {
            h.health.record_failure(Sendgrid, at(0)).await.unwrap();
        }
        assert_eq!(h.health.breaker(Sendgrid).status, CircuitStatus::Open);
        let report = h.send(None).await;
        assert_eq!(report.outcome, sent(Postmark, "postmark-id"));
        assert_eq!(providers_of(&report), [Postmark]);
        assert_eq!(h.calls(Sendgrid), 0);
    }

    #[tokio::test]
    async fn the_breaker_opens_after_repeated_failures_and_a_successful_probe_closes_it() {
        let h = Setup::new("sendgrid,postmark")
            .script(Sendgrid, vec![fails(SendFailure::http(500)); 2])
            .build();
        for _ in 0..2 {
            assert_eq!(h.send(None).await.outcome, sent(Postmark, "postmark-id"));
        }
        assert_eq!(h.health.breaker(Sendgrid).status, CircuitStatus::Open);
        assert_eq!(h.send(None).await.outcome, sent(Postmark, "postmark-id"));
        assert_eq!(h.calls(Sendgrid), 2);

        // After the recovery timeout the next send is the probe; it succeeds and closes it.
        h.providers[&Sendgrid]
            .clock
            .advance(time::Duration::seconds(31));
        assert_eq!(h.send(None).await.outcome, sent(Sendgrid, "sendgrid-id"));
        assert_eq!(h.health.breaker(Sendgrid).status, CircuitStatus::Closed);
    }

    #[tokio::test]
    async fn a_provider_whose_rate_budget_is_spent_is_skipped() {
        let mut setup = Setup::new("sendgrid,postmark");
        setup
            .limits
            .insert(Sendgrid, RateLimit::new(1.0, 1).unwrap());
        let h = setup.build();
        assert_eq!(h.send(None).await.outcome, sent(Sendgrid, "sendgrid-id"));
        let report = h.send(None).await;
        assert_eq!(report.outcome, sent(Postmark, "postmark-id"));
        assert_eq!(providers_of(&report), [Postmark]);
        assert_eq!(h.calls(Sendgrid), 1);
    }

    #[tokio::test]
    async fn nothing_available_defers_until_the_earliest_recovery() {
        let mut setup = Setup::new("sendgrid,postmark");
        setup
            .limits
            .insert(Postmark, RateLimit::new(0.5, 1).unwrap());
        let h = setup.build();
        for _ in 0..2 {
            h.health.record_failure(Sendgrid, at(0)).await.unwrap();
        }
        h.health.take_token(Postmark, at(0)).await.unwrap().unwrap();
        let report = h.send(None).await;
        assert_eq!(
            report.outcome,
            SendOutcome::Deferred {
                retry_at: at(2),
                reason: DeferReason::NoProviderAvailable
            }
        );
        assert!(report.attempts.is_empty());
    }

    #[tokio::test]
    async fn a_spent_budget_defers_instead_of_calling_the_next_provider() {
        let h = Setup::new("sendgrid,postmark")
            .script(Sendgrid, vec![(secs(9), Err(SendFailure::http(500)))])
            .build();
        let report = h.send(None).await;
        assert_eq!(
            report.outcome,
            SendOutcome::Deferred {
                retry_at: at(9),
                reason: DeferReason::BudgetSpent
            }
        );
        assert_eq!(providers_of(&report), [Sendgrid]);
        assert_eq!(h.calls(Postmark), 0);
    }

    #[tokio::test]
    async fn a_permanent_refusal_fails_without_retry_or_failover() {
        let h = Setup::new("sendgrid,postmark")
            .script(Sendgrid, vec![fails(SendFailure::http(400))])
            .build();
        let report = h.send(None).await;
        assert_eq!(
            report.outcome,
            SendOutcome::Failed {
                classification: SendFailure::http(400).classify()
            }
        );
        assert_eq!(providers_of(&report), [Sendgrid]);
        assert_eq!(
            report.attempts[0].category,
            Some(ErrorCategory::ContentRejected)
        );
        assert_eq!(h.calls(Postmark), 0);
        assert!(h.waits().is_empty());
        assert_eq!(h.health.breaker(Sendgrid).failures, 0);
    }

    #[tokio::test]
    async fn a_non_retryable_failure_on_the_last_provider_waits_for_a_recovering_one() {
        let h = Setup::new("sendgrid,postmark")
            .script(Postmark, vec![fails(SendFailure::http(401))])
            .build();
        for _ in 0..2 {
            h.health.record_failure(Sendgrid, at(0)).await.unwrap();
        }
        let report = h.send(None).await;
        assert_eq!(
            report.outcome,
            SendOutcome::Deferred {
                retry_at: at(30),
                reason: DeferReason::NoProviderAvailable
            }
        );
        assert_eq!(providers_of(&report), [Postmark]);
    }

    #[tokio::test]
    async fn weights_draw_the_first_provider() {
        let mut setup = Setup::new("sendgrid:1,postmark:3");
        setup.random = 0.9;
        let h = setup.build();
        assert_eq!(h.send(None).await.outcome, sent(Postmark, "postmark-id"));
        let mut setup = Setup::new("sendgrid:1,postmark:3");
        setup.random = 0.1;
        let h = setup.build();
        assert_eq!(h.send(None).await.outcome, sent(Sendgrid, "sendgrid-id"));
    }

    #[test]
    fn a_provider_in_the_order_without_a_sender_is_refused() {
        let health = Arc::new(MemoryHealth::new(HashMap::new(), 2));
        let err = SendService::new(
            Vec::new(),
            "ses".parse().unwrap(),
            FailoverPolicy::default(),
            health,
        )
        .unwrap_err();
        assert_eq!(err, SendServiceError::NoSender(ProviderId::Ses));
    }
}
