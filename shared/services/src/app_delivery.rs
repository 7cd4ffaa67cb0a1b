//! Delivering one app webhook: the dispatcher's logic, below its Lambda glue.
//!
//! Per delivery: load the endpoint (a removed or disabled one, or one with no valid secret,
//! drops it), sign the body per Standard Webhooks v1 with every currently valid secret, POST it
//! once, and read the answer: 2xx delivered; `410 Gone` disables the endpoint; `429`/`503`
//! with `Retry-After` comes back after that long (capped); anything else comes back after an
//! exponential backoff with full jitter by the record's receive count. A retry is scheduled by
//! hiding the queue message for the wait (the queue redelivers it then).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mailgate_core::ports::{
    AppWebhookSender, EndpointDirectory, OutboundDelivery, OutboundQueue, RandomSource,
    SignedWebhook, WebhookAnswer,
};
use mailgate_core::{Backoff, StoreError, UnixMillis, signature_header};

/// The first retry's ceiling unless configured.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(30);
/// The longest wait before a retry, whatever the backoff or `Retry-After` says.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(12 * 3600);

/// The wait before the next attempt after receive number `receive_count` (1 for the first)
/// failed: uniformly random in `[0, min(12 h, base · 2^(receive_count − 1))]` ("full jitter"),
/// where `unit` is a random number in `[0, 1)`.
pub fn backoff_delay(base: Duration, receive_count: u32, unit: f64) -> Duration {
    let backoff = Backoff {
        base,
        cap: MAX_RETRY_DELAY,
        reserve: Duration::ZERO,
    };
    backoff
        .delay(receive_count.saturating_sub(1), Duration::MAX, unit)
        .unwrap_or(MAX_RETRY_DELAY)
}

/// What became of one delivery attempt.
#[derive(Debug, Clone)]
pub enum DispatchOutcome {
    /// The app answered 2xx.
    Delivered,
    /// The app answered `410 Gone`: the endpoint is now disabled.
    Gone,
    /// The endpoint is removed, disabled or has no valid secret: nothing was sent.
    Dropped(&'static str),
    /// The app asked to come back after `wait` (429/503 with `Retry-After`, capped).
    Throttled {
        /// How long until the next attempt.
        wait: Duration,
    },
    /// The POST failed; the next attempt is after `wait` (backoff with jitter).
    Failed {
        /// The status or transport failure.
        reason: String,
        /// How long until the next attempt.
        wait: Duration,
    },
    /// The endpoint could not be read, or a `410` not recorded: retried with the queue's own
    /// timeout.
    NotAttempted(StoreError),
}

impl DispatchOutcome {
    /// The metrics' `Outcome` dimension.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Gone => "gone",
            Self::Dropped(_) => "dropped",
            Self::Throttled { .. } => "throttled",
            Self::Failed { .. } => "failed",
            Self::NotAttempted(_) => "error",
        }
    }

    /// Whether the record is finished with (acknowledged) rather than left for a retry.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Delivered | Self::Gone | Self::Dropped(_))
    }
}

/// The ports the dispatcher uses.
#[derive(Clone)]
pub struct AppDeliveryPorts {
    /// The team's endpoints.
    pub endpoints: Arc<dyn EndpointDirectory>,
    /// The HTTP POST.
    pub sender: Arc<dyn AppWebhookSender>,
    /// The outbound queue (retry scheduling).
    pub queue: Arc<dyn OutboundQueue>,
    /// The backoff jitter.
    pub random: Arc<dyn RandomSource>,
}

/// Signs and delivers app webhooks, scheduling retries on the outbound queue.
#[derive(Clone)]
pub struct AppWebhookDelivery {
    ports: AppDeliveryPorts,
    retry_base: Duration,
}

impl std::fmt::Debug for AppWebhookDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppWebhookDelivery")
            .field("retry_base", &self.retry_base)
            .finish_non_exhaustive()
    }
}

impl AppWebhookDelivery {
    /// Delivery on `ports`; the first retry waits up to `retry_base`, each further receive
    /// doubles it.
    pub fn new(ports: AppDeliveryPorts, retry_base: Duration) -> Self {
        Self { ports, retry_base }
    }

    /// Attempts `delivery` once at `now`. A retry (throttled or failed) hides the queue message
    /// `receipt_handle` for the wait; without a handle, or when that fails, the message comes
    /// back after the queue's own visibility timeout.
    pub async fn dispatch(
        &self,
        delivery: &OutboundDelivery,
        receipt_handle: Option<&str>,
        receive_count: u32,
        now: SystemTime,
    ) -> DispatchOutcome {
        let outcome = match self.attempt(delivery, now).await {
            Ok(Attempt::Dropped(why)) => DispatchOutcome::Dropped(why),
            Ok(Attempt::Answered(WebhookAnswer::Delivered)) => DispatchOutcome::Delivered,
            Ok(Attempt::Answered(WebhookAnswer::Gone)) => DispatchOutcome::Gone,
            Ok(Attempt::Answered(WebhookAnswer::RetryAfter(wait))) => DispatchOutcome::Throttled {
                wait: wait.min(MAX_RETRY_DELAY),
            },
            Ok(Attempt::Answered(WebhookAnswer::Failed(reason))) => DispatchOutcome::Failed {
                reason,
                wait: backoff_delay(self.retry_base, receive_count, self.ports.random.unit()),
            },
            Err(err) => DispatchOutcome::NotAttempted(err),
        };
        if let (
            DispatchOutcome::Throttled { wait } | DispatchOutcome::Failed { wait, .. },
            Some(handle),
        ) = (&outcome, receipt_handle)
            && let Err(err) = self.ports.queue.retry_after(handle, *wait).await
        {
            // The record still comes back, after the queue's own visibility timeout.
            tracing::warn!(error = %err, "could not set the retry delay");
        }
        outcome
    }

    /// Loads the endpoint, signs the body with every valid secret at `now` and POSTs it; a
    /// `410 Gone` disables the endpoint.
    async fn attempt(
        &self,
        delivery: &OutboundDelivery,
        now: SystemTime,
    ) -> Result<Attempt, StoreError> {
        let now_ms = UnixMillis::from(time::OffsetDateTime::from(now));
        let endpoints = &self.ports.endpoints;
        let Some(endpoint) = endpoints.get(&delivery.endpoint_id, now_ms).await? else {
            return Ok(Attempt::Dropped("endpoint removed"));
        };
        if !endpoint.enabled {
            return Ok(Attempt::Dropped("endpoint disabled"));
        }
        let secrets = endpoint.signing_secrets(now_ms);
        if secrets.is_empty() {
            return Ok(Attempt::Dropped("endpoint has no valid secret"));
        }
        let timestamp = now_ms.as_i64().div_euclid(1000);
        let request = SignedWebhook {
            url: endpoint.url.clone(),
            webhook_id: delivery.webhook_id.clone(),
            timestamp,
            signature: signature_header(
                secrets,
                &delivery.webhook_id,
                timestamp,
                delivery.body.as_bytes(),
            ),
            body: delivery.body.clone(),
        };
        let answer = self.ports.sender.post(&request, now).await;
        if answer == WebhookAnswer::Gone {
            endpoints
                .disable(&endpoint.id, "the endpoint answered 410 Gone", now_ms)
                .await?;
            tracing::warn!(endpoint_id = %endpoint.id, host = %endpoint.url.redacted(), "endpoint answered 410 Gone; disabled");
        }
        Ok(Attempt::Answered(answer))
    }
}

/// One attempt, before retry scheduling.
enum Attempt {
    Dropped(&'static str),
    Answered(WebhookAnswer),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FixedRandom, MemoryEndpoints, MemoryOutbound, ScriptedSender};
    use mailgate_core::{Endpoint, EndpointFilter, EndpointUrl, StoreErrorKind};
    use std::time::UNIX_EPOCH;

    struct Harness {
        endpoints: Arc<MemoryEndpoints>,
        outbound: Arc<MemoryOutbound>,
        sender: Arc<ScriptedSender>,
        delivery: AppWebhookDelivery,
        endpoint: Endpoint,
    }

    const NOW_SECS: u64 = 1_795_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW_SECS)
    }

    fn harness(answers: Vec<WebhookAnswer>) -> Harness {
        let endpoints = Arc::new(MemoryEndpoints::default());
        let outbound = Arc::new(MemoryOutbound::default());
        let sender = Arc::new(ScriptedSender::answering(answers));
        let endpoint = Endpoint::new(
            EndpointUrl::parse("https://app.example.com/hook").unwrap(),
            EndpointFilter::parse_list("").unwrap(),
            UnixMillis(NOW_SECS as i64 * 1000 - 60_000),
        )
        .0;
        endpoints.endpoints.lock().unwrap().push(endpoint.clone());
        let ports = AppDeliveryPorts {
            endpoints: endpoints.clone(),
            sender: sender.clone(),
            queue: outbound.clone(),
            random: Arc::new(FixedRandom(0.5)),
        };
        Harness {
            delivery: AppWebhookDelivery::new(ports, Duration::from_secs(30)),
            endpoints,
            outbound,
            sender,
            endpoint,
        }
    }

    fn delivery(h: &Harness) -> OutboundDelivery {
        OutboundDelivery {
            endpoint_id: h.endpoint.id.clone(),
            webhook_id: "msg_0123456789abcdef0123456789abcdef".into(),
            body: r#"{"type":"email.delivered"}"#.into(),
        }
    }

    #[tokio::test]
    async fn a_2xx_is_delivered_signed_with_the_endpoints_secret() {
        let h = harness(vec![WebhookAnswer::Delivered]);
        let d = delivery(&h);
        let outcome = h.delivery.dispatch(&d, Some("rh"), 1, now()).await;
        assert!(matches!(outcome, DispatchOutcome::Delivered));
        assert!(outcome.is_final());
        let (request, _) = h.sender.requests.lock().unwrap()[0].clone();
        assert_eq!(request.url, h.endpoint.url);
        assert_eq!(request.webhook_id, d.webhook_id);
        assert_eq!(request.timestamp, NOW_SECS as i64);
        assert_eq!(request.body, d.body);
        let secrets = h
            .endpoint
            .signing_secrets(UnixMillis(NOW_SECS as i64 * 1000));
        assert_eq!(
            request.signature,
            signature_header(secrets, &d.webhook_id, NOW_SECS as i64, d.body.as_bytes())
        );
        assert!(h.outbound.retries.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_410_disables_the_endpoint() {
        let h = harness(vec![WebhookAnswer::Gone]);
        let outcome = h
            .delivery
            .dispatch(&delivery(&h), Some("rh"), 1, now())
            .await;
        assert_eq!(outcome.as_str(), "gone");
        let stored = h.endpoints.endpoint(&h.endpoint.id).unwrap();
        assert!(!stored.enabled);
        assert_eq!(
            stored.disabled_reason.as_deref(),
            Some("the endpoint answered 410 Gone")
        );
        // Disabled now: the next delivery is dropped without a POST.
        let outcome = h
            .delivery
            .dispatch(&delivery(&h), Some("rh"), 1, now())
            .await;
        assert!(matches!(
            outcome,
            DispatchOutcome::Dropped("endpoint disabled")
        ));
        assert_eq!(h.sender.requests.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_removed_endpoint_or_one_without_a_valid_secret_is_dropped_unsent() {
        let h = harness(vec![]);
        let mut d = delivery(&h);
        d.endpoint_id = Endpoint::new(
            EndpointUrl::parse("https://app.example.com/other").unwrap(),
            EndpointFilter::parse_list("").unwrap(),
            UnixMillis(0),
        )
        .0
        .id;
        let outcome = h.delivery.dispatch(&d, Some("rh"), 1, now()).await;
        assert!(matches!(
            outcome,
            DispatchOutcome::Dropped("endpoint removed")
        ));
        h.endpoints.endpoints.lock().unwrap()[0].secrets.clear();
        let outcome = h
            .delivery
            .dispatch(&delivery(&h), Some("rh"), 1, now())
            .await;
        assert!(matches!(
            outcome,
            DispatchOutcome::Dropped("endpoint has no valid secret")
        ));
        assert!(h.sender.requests.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn retry_after_is_honoured_capped_at_12_hours() {
        let h = harness(vec![
            WebhookAnswer::RetryAfter(Duration::from_secs(7)),
            WebhookAnswer::RetryAfter(Duration::from_secs(999_999)),
        ]);
        let outcome = h
            .delivery
            .dispatch(&delivery(&h), Some("rh-1"), 1, now())
            .await;
        assert!(
            matches!(outcome, DispatchOutcome::Throttled { wait } if wait == Duration::from_secs(7))
        );
        assert!(!outcome.is_final());
        h.delivery
            .dispatch(&delivery(&h), Some("rh-2"), 1, now())
            .await;
        assert_eq!(
            *h.outbound.retries.lock().unwrap(),
            vec![
                ("rh-1".to_owned(), Duration::from_secs(7)),
                ("rh-2".to_owned(), MAX_RETRY_DELAY)
            ]
        );
    }

    #[tokio::test]
    async fn a_failure_backs_off_by_receive_count_with_jitter() {
        let h = harness(vec![
            WebhookAnswer::Failed("HTTP 500".into()),
            WebhookAnswer::Failed("timed out".into()),
        ]);
        let outcome = h
            .delivery
            .dispatch(&delivery(&h), Some("rh"), 1, now())
            .await;
        match outcome {
            DispatchOutcome::Failed { reason, wait } => {
                assert_eq!(reason, "HTTP 500");
                assert_eq!(wait, Duration::from_secs(15), "half of the 30 s base");
            }
            other => panic!("{other:?}"),
        }
        let outcome = h
            .delivery
            .dispatch(&delivery(&h), Some("rh"), 4, now())
            .await;
        assert!(
            matches!(outcome, DispatchOutcome::Failed { wait, .. } if wait == Duration::from_secs(120))
        );
        assert_eq!(h.outbound.retries.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_retry_delay_that_cannot_be_set_or_has_no_handle_still_retries() {
        let h = harness(vec![
            WebhookAnswer::Failed("HTTP 502".into()),
            WebhookAnswer::Failed("HTTP 502".into()),
        ]);
        h.outbound
            .faults
            .fail_next("retry_after", StoreErrorKind::Transient);
        let outcome = h
            .delivery
            .dispatch(&delivery(&h), Some("rh"), 1, now())
            .await;
        assert_eq!(outcome.as_str(), "failed");
        let outcome = h.delivery.dispatch(&delivery(&h), None, 1, now()).await;
        assert_eq!(outcome.as_str(), "failed");
        assert!(h.outbound.retries.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_store_failure_means_not_attempted() {
        let h = harness(vec![WebhookAnswer::Gone]);
        h.endpoints
            .faults
            .fail_next("get", StoreErrorKind::Transient);
        let outcome = h
            .delivery
            .dispatch(&delivery(&h), Some("rh"), 1, now())
            .await;
        assert_eq!(outcome.as_str(), "error");
        assert!(h.sender.requests.lock().unwrap().is_empty());
        // A 410 that cannot be recorded is not final either: the record comes back.
        h.endpoints
            .faults
            .fail_next("disable", StoreErrorKind::Throttled);
        let outcome = h
            .delivery
            .dispatch(&delivery(&h), Some("rh"), 1, now())
            .await;
        assert!(matches!(outcome, DispatchOutcome::NotAttempted(_)));
        assert!(!outcome.is_final());
        assert!(h.endpoints.endpoint(&h.endpoint.id).unwrap().enabled);
    }

    #[test]
    fn backoff_doubles_per_receive_with_full_jitter_under_a_12_hour_cap() {
        let base = Duration::from_secs(30);
        assert_eq!(
            backoff_delay(base, 1, 0.999_999),
            Duration::from_secs(30).mul_f64(0.999_999)
        );
        assert_eq!(backoff_delay(base, 3, 0.5), Duration::from_secs(60));
        assert_eq!(backoff_delay(base, 4, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(base, 40, 1.0), MAX_RETRY_DELAY);
        assert_eq!(backoff_delay(Duration::ZERO, 3, 0.7), Duration::ZERO);
    }
}
