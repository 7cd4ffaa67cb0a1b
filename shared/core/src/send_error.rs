//! Classification of failed send attempts, from evidence only.
//!
//! A failed provider call is described by a [`SendFailure`]: the HTTP status if one came back, the
//! provider's error code, the transport fault (did the request leave or not?) and any
//! `Retry-After`. [`SendFailure::classify`] turns that evidence into a [`Classification`]: an
//! [`ErrorCategory`] (what went wrong, with its operational [`CategoryPolicy`]) and an
//! [`OutcomeClass`] (what the send path may do next).
//!
//! The rule here is the generic one, from HTTP status and transport. Provider modules know their
//! own error codes and state the category directly with [`SendFailure::with_category`]; nothing
//! in this module inspects error text.
//!
//! The one rule that matters most: a failure after the request may have reached the provider is
//! [`OutcomeClass::Ambiguous`], not failed. The message may have been accepted, so it is recorded
//! as `unknown` and is not sent through a second provider unless configuration says so.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What went wrong with a send attempt, in the terms the operator and the API speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCategory {
    /// The provider rejected our credentials or their permissions.
    Authentication,
    /// The provider asked us to slow down.
    RateLimit,
    /// A sending quota (daily, monthly, plan) is used up.
    QuotaExceeded,
    /// The provider refused a recipient address.
    InvalidRecipient,
    /// The provider refused the message itself (shape, size, content, sender).
    ContentRejected,
    /// The request could not reach the provider (connect failure, timeout before sending).
    NetworkError,
    /// The provider failed on its side (5xx).
    ServiceUnavailable,
    /// Our configuration for the provider is wrong (endpoint, domain, sender identity).
    ConfigurationError,
    /// Nothing more specific is known — including "the message may or may not have been sent".
    Unknown,
}

/// How loudly a category should be reported to the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Expected in normal operation (a bad recipient address).
    Info,
    /// Worth watching; usually self-healing.
    Warning,
    /// Something is failing that should not.
    Error,
    /// Needs a human: credentials, configuration or quota.
    Critical,
}

/// The operational policy attached to an [`ErrorCategory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CategoryPolicy {
    /// How loudly to report it.
    pub severity: Severity,
    /// Whether sending the same message through the same provider again can succeed later.
    pub retryable: bool,
    /// The first retry delay; later retries back off exponentially from it.
    pub base_retry_delay: Duration,
    /// How many retries on the same provider are worth making.
    pub max_retries: u32,
    /// Occurrences (within the alerting window) before the operator is alerted; 1 = the first.
    pub escalation_threshold: u32,
}

impl ErrorCategory {
    /// Every category, in a stable order.
    pub const ALL: [ErrorCategory; 9] = [
        ErrorCategory::Authentication,
        ErrorCategory::RateLimit,
        ErrorCategory::QuotaExceeded,
        ErrorCategory::InvalidRecipient,
        ErrorCategory::ContentRejected,
        ErrorCategory::NetworkError,
        ErrorCategory::ServiceUnavailable,
        ErrorCategory::ConfigurationError,
        ErrorCategory::Unknown,
    ];

    /// The snake_case name used in the API and in stored attempts.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Authentication => "authentication",
            ErrorCategory::RateLimit => "rate_limit",
            ErrorCategory::QuotaExceeded => "quota_exceeded",
            ErrorCategory::InvalidRecipient => "invalid_recipient",
            ErrorCategory::ContentRejected => "content_rejected",
            ErrorCategory::NetworkError => "network_error",
            ErrorCategory::ServiceUnavailable => "service_unavailable",
            ErrorCategory::ConfigurationError => "configuration_error",
            ErrorCategory::Unknown => "unknown",
        }
    }

    /// The category's operational policy (severity, retries, escalation).
    pub fn policy(self) -> CategoryPolicy {
        const fn policy(
            severity: Severity,
            retryable: bool,
            base_retry_millis: u64,
            max_retries: u32,
            escalation_threshold: u32,
        ) -> CategoryPolicy {
            CategoryPolicy {
                severity,
                retryable,
                base_retry_delay: Duration::from_millis(base_retry_millis),
                max_retries,
                escalation_threshold,
            }
        }
        match self {
            // Credentials do not heal by waiting; alert on the first one.
            ErrorCategory::Authentication => policy(Severity::Critical, false, 0, 0, 1),
            ErrorCategory::RateLimit => policy(Severity::Warning, true, 1_000, 3, 20),
            // Quotas reset on the provider's schedule: retry from the async path, slowly
            // (15 minutes is also the longest SQS delay).
            ErrorCategory::QuotaExceeded => policy(Severity::Critical, true, 900_000, 4, 1),
            // A bad address is the sender's data, not our failure; alert only on a surge.
            ErrorCategory::InvalidRecipient => policy(Severity::Info, false, 0, 0, 25),
            ErrorCategory::ContentRejected => policy(Severity::Warning, false, 0, 0, 10),
            ErrorCategory::NetworkError => policy(Severity::Warning, true, 250, 3, 5),
            ErrorCategory::ServiceUnavailable => policy(Severity::Error, true, 500, 3, 5),
            ErrorCategory::ConfigurationError => policy(Severity::Critical, false, 0, 0, 1),
            // Unknown may mean "possibly sent": never retried blindly.
            ErrorCategory::Unknown => policy(Severity::Error, false, 0, 0, 3),
        }
    }

    /// The outcome class a category implies when a provider module states it directly.
    pub fn default_outcome(self) -> OutcomeClass {
        match self {
            ErrorCategory::Authentication
            | ErrorCategory::QuotaExceeded
            | ErrorCategory::NetworkError
            | ErrorCategory::ServiceUnavailable
            | ErrorCategory::ConfigurationError => OutcomeClass::Failover,
            ErrorCategory::RateLimit => OutcomeClass::Throttled,
            ErrorCategory::InvalidRecipient | ErrorCategory::ContentRejected => {
                OutcomeClass::Permanent
            }
            ErrorCategory::Unknown => OutcomeClass::Ambiguous,
        }
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A category name that mailgate does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error category {0:?}")]
pub struct UnknownErrorCategory(pub String);

impl FromStr for ErrorCategory {
    type Err = UnknownErrorCategory;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorCategory::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownErrorCategory(s.to_owned()))
    }
}

/// What the send path may do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeClass {
    /// The message itself was refused: no retry, no failover.
    Permanent,
    /// This provider cannot take it now (credentials, configuration, 5xx, unreachable): try the
    /// next provider.
    Failover,
    /// The provider asked us to slow down: honour `Retry-After`, or try the next provider.
    Throttled,
    /// The request may have been accepted (timeout after it left): record the attempt as
    /// `unknown`; no second provider unless configuration explicitly allows it.
    Ambiguous,
}

impl OutcomeClass {
    /// Whether the attempt may have delivered the message, so it must be recorded as `unknown`.
    pub fn may_have_been_sent(self) -> bool {
        self == OutcomeClass::Ambiguous
    }

    /// Whether the failure says something about the provider's health and so counts towards
    /// opening its circuit breaker. Refusals of the message do not; neither do throttles, which
    /// the rate limiter handles.
    pub fn counts_against_provider(self) -> bool {
        matches!(self, OutcomeClass::Failover | OutcomeClass::Ambiguous)
    }
}

/// How far a request got before the transport failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportFault {
    /// The connection was never established (DNS, refused, TLS handshake): nothing left.
    Connect,
    /// Timed out before the request was written (connect or pool timeout): nothing left.
    TimeoutBeforeSend,
    /// Timed out after the request was written, waiting for the answer: it may have been accepted.
    TimeoutAfterSend,
    /// Any other transport failure; where it happened is not known, so it may have been sent.
    Other,
}

/// The evidence about one failed provider call. Facts only: what came back and how far the
/// request got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendFailure {
    /// The HTTP status of the provider's answer, if there was one.
    pub status: Option<u16>,
    /// The provider's own error code (`ErrorCode`, SES error type, …), kept for the record.
    pub provider_code: Option<String>,
    /// The transport failure, if the call failed below HTTP.
    pub transport: Option<TransportFault>,
    /// The provider's `Retry-After` (or equivalent), if it gave one.
    pub retry_after: Option<Duration>,
    /// The category a provider module read from its own error code; overrides the generic rule.
    pub stated_category: Option<ErrorCategory>,
}

impl SendFailure {
    /// The provider answered with an HTTP error status.
    pub fn http(status: u16) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    /// The call failed in transport, without an HTTP answer.
    pub fn transport(fault: TransportFault) -> Self {
        Self {
            transport: Some(fault),
            ..Self::default()
        }
    }

    /// A provider module's reading of its own error code: the category is stated, not inferred.
    pub fn stated(category: ErrorCategory) -> Self {
        Self::default().with_category(category)
    }

    /// Adds the provider's error code.
    pub fn with_provider_code(mut self, code: impl Into<String>) -> Self {
        self.provider_code = Some(code.into());
        self
    }

    /// Adds the provider's `Retry-After`.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// States the category (a provider module mapping its error code); the outcome follows
    /// [`ErrorCategory::default_outcome`].
    pub fn with_category(mut self, category: ErrorCategory) -> Self {
        self.stated_category = Some(category);
        self
    }

    /// Classifies the failure.
    ///
    /// A stated category wins. Otherwise the HTTP status decides, and without one the transport
    /// fault does:
    ///
    /// | evidence | category | outcome |
    /// |---|---|---|
    /// | 401, 403 | authentication | failover |
    /// | 402 | quota_exceeded | failover |
    /// | 3xx, 404, 405, 415 | configuration_error | failover |
    /// | 408 | network_error | failover |
    /// | 400, 422 | content_rejected | permanent |
    /// | 413 | content_rejected | failover (size limits differ between providers) |
    /// | 429 | rate_limit | throttled |
    /// | other 4xx | unknown | permanent |
    /// | 504 | service_unavailable | ambiguous (the upstream may have processed it) |
    /// | other 5xx | service_unavailable | failover |
    /// | 1xx, 2xx (a success we could not read) and anything else | unknown | ambiguous |
    /// | connect failure, timeout before sending | network_error | failover |
    /// | timeout after sending, other transport fault, no evidence | unknown | ambiguous |
    pub fn classify(&self) -> Classification {
        let (category, outcome) = match (self.stated_category, self.status, self.transport) {
            (Some(category), _, _) => (category, category.default_outcome()),
            (None, Some(status), _) => classify_status(status),
            (None, None, Some(TransportFault::Connect | TransportFault::TimeoutBeforeSend)) => {
                (ErrorCategory::NetworkError, OutcomeClass::Failover)
            }
            (None, None, Some(TransportFault::TimeoutAfterSend | TransportFault::Other) | None) => {
                (ErrorCategory::Unknown, OutcomeClass::Ambiguous)
            }
        };
        Classification {
            category,
            outcome,
            retry_after: self.retry_after,
        }
    }
}

fn classify_status(status: u16) -> (ErrorCategory, OutcomeClass) {
    use ErrorCategory as C;
    use OutcomeClass as O;
    match status {
        401 | 403 => (C::Authentication, O::Failover),
        402 => (C::QuotaExceeded, O::Failover),
        300..=399 | 404 | 405 | 415 => (C::ConfigurationError, O::Failover),
        408 => (C::NetworkError, O::Failover),
        400 | 422 => (C::ContentRejected, O::Permanent),
        413 => (C::ContentRejected, O::Failover),
        429 => (C::RateLimit, O::Throttled),
        400..=499 => (C::Unknown, O::Permanent),
        504 => (C::ServiceUnavailable, O::Ambiguous),
        500..=599 => (C::ServiceUnavailable, O::Failover),
        _ => (C::Unknown, O::Ambiguous),
    }
}

/// The verdict on a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classification {
    /// What went wrong.
    pub category: ErrorCategory,
    /// What the send path may do next.
    pub outcome: OutcomeClass,
    /// How long the provider asked us to wait, if it said.
    pub retry_after: Option<Duration>,
}

impl Classification {
    /// A classification with an explicit outcome, for provider modules that know better than the
    /// category's default.
    pub fn new(category: ErrorCategory, outcome: OutcomeClass) -> Self {
        Self {
            category,
            outcome,
            retry_after: None,
        }
    }

    /// The category with its default outcome.
    pub fn of_category(category: ErrorCategory) -> Self {
        Self::new(category, category.default_outcome())
    }

    /// Adds the provider's `Retry-After`.
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// The category's operational policy.
    pub fn policy(&self) -> CategoryPolicy {
        self.category.policy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of_status(status: u16) -> (ErrorCategory, OutcomeClass) {
        let c = SendFailure::http(status).classify();
        (c.category, c.outcome)
    }

    #[test]
    fn category_names_round_trip_through_text_and_serde() {
        for category in ErrorCategory::ALL {
            assert_eq!(
                category.as_str().parse::<ErrorCategory>().unwrap(),
                category
            );
            assert_eq!(
                serde_json::to_string(&category).unwrap(),
                format!("\"{category}\"")
            );
            assert_eq!(
                serde_json::from_str::<ErrorCategory>(&format!("\"{category}\"")).unwrap(),
                category
            );
        }
        assert!("RateLimit".parse::<ErrorCategory>().is_err());
    }

    #[test]
    fn seed_categories_have_the_documented_names() {
        let names: Vec<_> = ErrorCategory::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "authentication",
                "rate_limit",
                "quota_exceeded",
                "invalid_recipient",
                "content_rejected",
                "network_error",
                "service_unavailable",
                "configuration_error",
                "unknown"
            ]
        );
    }

    #[test]
    fn every_policy_is_coherent() {
        for category in ErrorCategory::ALL {
            let p = category.policy();
            assert!(p.escalation_threshold >= 1, "{category}");
            if p.retryable {
                assert!(p.max_retries > 0, "{category}");
                assert!(p.base_retry_delay > Duration::ZERO, "{category}");
            } else {
                assert_eq!(p.max_retries, 0, "{category}");
            }
            // Nothing that refuses the message itself is retried.
            if category.default_outcome() == OutcomeClass::Permanent {
                assert!(!p.retryable, "{category}");
            }
        }
    }

    #[test]
    fn operator_problems_are_critical_and_alert_on_the_first_occurrence() {
        for category in [
            ErrorCategory::Authentication,
            ErrorCategory::ConfigurationError,
            ErrorCategory::QuotaExceeded,
        ] {
            assert_eq!(category.policy().severity, Severity::Critical);
            assert_eq!(category.policy().escalation_threshold, 1);
        }
        assert_eq!(
            ErrorCategory::InvalidRecipient.policy().severity,
            Severity::Info
        );
        assert!(Severity::Critical > Severity::Warning);
    }

    #[test]
    fn unknown_is_never_retried_blindly() {
        assert!(!ErrorCategory::Unknown.policy().retryable);
        assert_eq!(
            ErrorCategory::Unknown.default_outcome(),
            OutcomeClass::Ambiguous
        );
    }

    #[test]
    fn authentication_failures_fail_over() {
        assert_eq!(
            of_status(401),
            (ErrorCategory::Authentication, OutcomeClass::Failover)
        );
        assert_eq!(
            of_status(403),
            (ErrorCategory::Authentication, OutcomeClass::Failover)
        );
    }

    #[test]
    fn too_many_requests_is_throttled_and_keeps_retry_after() {
        let c = SendFailure::http(429)
            .with_retry_after(Duration::from_secs(7))
            .classify();
        assert_eq!(c.category, ErrorCategory::RateLimit);
        assert_eq!(c.outcome, OutcomeClass::Throttled);
        assert_eq!(c.retry_after, Some(Duration::from_secs(7)));
    }

    #[test]
    fn bad_requests_are_permanent_content_rejections() {
        assert_eq!(
            of_status(400),
            (ErrorCategory::ContentRejected, OutcomeClass::Permanent)
        );
        assert_eq!(
            of_status(422),
            (ErrorCategory::ContentRejected, OutcomeClass::Permanent)
        );
        assert_eq!(
            of_status(409),
            (ErrorCategory::Unknown, OutcomeClass::Permanent)
        );
    }

    #[test]
    fn an_oversize_message_may_fit_another_provider() {
        assert_eq!(
            of_status(413),
            (ErrorCategory::ContentRejected, OutcomeClass::Failover)
        );
    }

    #[test]
    fn wrong_endpoints_are_configuration_errors() {
        for status in [301, 302, 404, 405, 415] {
            assert_eq!(
                of_status(status),
                (ErrorCategory::ConfigurationError, OutcomeClass::Failover),
                "{status}"
            );
        }
        assert_eq!(
            of_status(402),
            (ErrorCategory::QuotaExceeded, OutcomeClass::Failover)
        );
        assert_eq!(
            of_status(408),
            (ErrorCategory::NetworkError, OutcomeClass::Failover)
        );
    }

    #[test]
    fn server_errors_fail_over_except_gateway_timeouts() {
        for status in [500, 502, 503, 599] {
            assert_eq!(
                of_status(status),
                (ErrorCategory::ServiceUnavailable, OutcomeClass::Failover),
                "{status}"
            );
        }
        assert_eq!(
            of_status(504),
            (ErrorCategory::ServiceUnavailable, OutcomeClass::Ambiguous)
        );
    }

    #[test]
    fn an_unreadable_success_may_have_been_sent() {
        for status in [100, 200, 202, 600] {
            assert_eq!(
                of_status(status),
                (ErrorCategory::Unknown, OutcomeClass::Ambiguous),
                "{status}"
            );
        }
    }

    #[test]
    fn failures_before_the_request_left_fail_over() {
        for fault in [TransportFault::Connect, TransportFault::TimeoutBeforeSend] {
            let c = SendFailure::transport(fault).classify();
            assert_eq!(c.category, ErrorCategory::NetworkError);
            assert_eq!(c.outcome, OutcomeClass::Failover);
        }
    }

    #[test]
    fn a_timeout_after_the_request_left_is_ambiguous() {
        let c = SendFailure::transport(TransportFault::TimeoutAfterSend).classify();
        assert_eq!(c.category, ErrorCategory::Unknown);
        assert_eq!(c.outcome, OutcomeClass::Ambiguous);
        assert!(c.outcome.may_have_been_sent());
    }

    #[test]
    fn unplaceable_faults_and_missing_evidence_are_ambiguous() {
        assert_eq!(
            SendFailure::transport(TransportFault::Other)
                .classify()
                .outcome,
            OutcomeClass::Ambiguous
        );
        assert_eq!(
            SendFailure::default().classify(),
            Classification::new(ErrorCategory::Unknown, OutcomeClass::Ambiguous)
        );
    }

    #[test]
    fn the_status_wins_over_a_later_transport_fault() {
        let failure = SendFailure {
            status: Some(503),
            transport: Some(TransportFault::TimeoutAfterSend),
            ..SendFailure::default()
        };
        assert_eq!(failure.classify().outcome, OutcomeClass::Failover);
    }

    #[test]
    fn a_stated_category_overrides_the_generic_rule() {
        // Postmark answers 422 for an inactive recipient; its module states the category.
        let c = SendFailure::http(422)
            .with_provider_code("406")
            .with_category(ErrorCategory::InvalidRecipient)
            .classify();
        assert_eq!(c.category, ErrorCategory::InvalidRecipient);
        assert_eq!(c.outcome, OutcomeClass::Permanent);

        // An SES SDK error without an HTTP status.
        let c = SendFailure::stated(ErrorCategory::RateLimit)
            .with_retry_after(Duration::from_secs(1))
            .classify();
        assert_eq!(
            c,
            Classification::of_category(ErrorCategory::RateLimit)
                .with_retry_after(Duration::from_secs(1))
        );
        assert_eq!(c.outcome, OutcomeClass::Throttled);
    }

    #[test]
    fn only_provider_health_failures_count_against_the_breaker() {
        assert!(OutcomeClass::Failover.counts_against_provider());
        assert!(OutcomeClass::Ambiguous.counts_against_provider());
        assert!(!OutcomeClass::Permanent.counts_against_provider());
        assert!(!OutcomeClass::Throttled.counts_against_provider());
    }

    #[test]
    fn default_outcomes_match_the_issue() {
        use ErrorCategory as C;
        use OutcomeClass as O;
        let expected = [
            (C::Authentication, O::Failover),
            (C::RateLimit, O::Throttled),
            (C::QuotaExceeded, O::Failover),
            (C::InvalidRecipient, O::Permanent),
            (C::ContentRejected, O::Permanent),
            (C::NetworkError, O::Failover),
            (C::ServiceUnavailable, O::Failover),
            (C::ConfigurationError, O::Failover),
            (C::Unknown, O::Ambiguous),
        ];
        for (category, outcome) in expected {
            assert_eq!(category.default_outcome(), outcome, "{category}");
            assert_eq!(Classification::of_category(category).outcome, outcome);
        }
    }
}
