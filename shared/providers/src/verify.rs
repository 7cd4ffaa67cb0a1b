//! What every webhook verification shares: why a delivery was rejected, and the timestamp window.

use mailgate_core::Clock;

/// Why a webhook delivery failed verification. Callers answer 401 without detail and count the
/// kind; the detail is for logs and metrics only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRejection {
    /// A required signature or timestamp header/field is absent.
    #[error("signature or timestamp missing")]
    Missing,
    /// The signature or timestamp is not in the expected encoding.
    #[error("signature or timestamp malformed")]
    Malformed,
    /// The timestamp is older than the tolerance allows (a replay or a very late retry).
    #[error("timestamp too old")]
    Stale,
    /// The timestamp is further in the future than the tolerance allows.
    #[error("timestamp in the future")]
    Future,
    /// No configured key produced this signature.
    #[error("signature does not verify")]
    BadSignature,
}

impl WebhookRejection {
    /// A stable snake_case name for metrics.
    pub fn code(self) -> &'static str {
        match self {
            WebhookRejection::Missing => "missing",
            WebhookRejection::Malformed => "malformed",
            WebhookRejection::Stale => "stale",
            WebhookRejection::Future => "future",
            WebhookRejection::BadSignature => "bad_signature",
        }
    }
}

/// Checks a decimal Unix-seconds timestamp against `clock` within `tolerance_secs` either way.
pub fn check_timestamp(
    timestamp: &str,
    tolerance_secs: i64,
    clock: &dyn Clock,
) -> Result<i64, WebhookRejection> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookRejection::Malformed)?;
    let now = clock.unix_seconds();
    if now.saturating_sub(ts) > tolerance_secs {
        Err(WebhookRejection::Stale)
    } else if ts.saturating_sub(now) > tolerance_secs {
        Err(WebhookRejection::Future)
    } else {
        Ok(ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::FixedClock;

    #[test]
    fn accepts_inside_the_window_and_names_each_way_out() {
        let clock = FixedClock::at_unix(1_000_000);
        assert_eq!(check_timestamp("1000000", 300, &clock), Ok(1_000_000));
        assert_eq!(check_timestamp("999700", 300, &clock), Ok(999_700));
        assert_eq!(
            check_timestamp("999699", 300, &clock),
            Err(WebhookRejection::Stale)
        );
        assert_eq!(
            check_timestamp("1000301", 300, &clock),
            Err(WebhookRejection::Future)
        );
        assert_eq!(
            check_timestamp("soon", 300, &clock),
            Err(WebhookRejection::Malformed)
        );
    }
}
