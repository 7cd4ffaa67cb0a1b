//! Fan-out of normalised delivery events to the team's own webhook endpoints: one outbound-queue
//! delivery per (matching endpoint, event), for the `dispatcher` to sign and POST.
//!
//! The enabled endpoints are cached in-process for [`ENDPOINT_CACHE_TTL`], because the event
//! processor calls this for every batch and endpoints change rarely; a removed or disabled
//! endpoint that is still cached costs at most a delivery the dispatcher drops (it re-reads the
//! endpoint before sending).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailgate_core::ports::{EndpointDirectory, OutboundDelivery, OutboundQueue};
use mailgate_core::{
    CorrelatedMessage, DeliveryEvent, Endpoint, EventKind, StoreError, UnixMillis, app_event_key,
    app_webhook_body, webhook_message_id,
};

/// How long the enabled endpoints are reused before the table is read again.
pub const ENDPOINT_CACHE_TTL: Duration = Duration::from_secs(60);

/// Why a fan-out did not enqueue its deliveries (the caller retries the batch; the deliveries
/// keep their `webhook-id`, so the app sees a repeat as a duplicate).
#[derive(Debug, Clone, thiserror::Error)]
pub enum FanOutError {
    /// The endpoints could not be read.
    #[error("could not read the webhook endpoints: {0}")]
    Endpoints(#[source] StoreError),
    /// The deliveries could not be enqueued.
    #[error("could not enqueue app-webhook deliveries: {0}")]
    Queue(#[source] StoreError),
}

/// The deliveries for `events` to `endpoints`: one per (endpoint that accepts the event's kind,
/// event), endpoint by endpoint in the given order.
pub fn plan_deliveries(
    endpoints: &[Endpoint],
    events: &[(DeliveryEvent, Option<CorrelatedMessage>)],
) -> Vec<OutboundDelivery> {
    let mut deliveries = Vec::new();
    for (event, message) in events {
        let matching: Vec<&Endpoint> = endpoints.iter().filter(|e| e.accepts(event.kind)).collect();
        if matching.is_empty() {
            continue;
        }
        // One body per event, shared by every endpoint it goes to.
        let body = app_webhook_body(event, message.as_ref());
        let key = app_event_key(event);
        for endpoint in matching {
            deliveries.push(OutboundDelivery {
                endpoint_id: endpoint.id.clone(),
                webhook_id: webhook_message_id(&endpoint.id, &key),
                body: body.clone(),
            });
        }
    }
    deliveries
}

/// Turns events into outbound-queue deliveries for the endpoints that want them.
pub struct AppWebhookFanOut {
    endpoints: Arc<dyn EndpointDirectory>,
    queue: Arc<dyn OutboundQueue>,
    cache: Mutex<Option<(Instant, Arc<Vec<Endpoint>>)>>,
}

impl std::fmt::Debug for AppWebhookFanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppWebhookFanOut").finish_non_exhaustive()
    }
}

impl AppWebhookFanOut {
    /// A fan-out reading `endpoints` and writing to `queue`.
    pub fn new(endpoints: Arc<dyn EndpointDirectory>, queue: Arc<dyn OutboundQueue>) -> Self {
        Self {
            endpoints,
            queue,
            cache: Mutex::new(None),
        }
    }

    /// The enabled endpoints, from the cache while it is fresh.
    async fn enabled(&self) -> Result<Arc<Vec<Endpoint>>, StoreError> {
        if let Ok(cache) = self.cache.lock()
            && let Some((at, endpoints)) = cache.as_ref()
            && at.elapsed() < ENDPOINT_CACHE_TTL
        {
            return Ok(Arc::clone(endpoints));
        }
        let now = UnixMillis::from(time::OffsetDateTime::now_utc());
        let fresh = Arc::new(self.endpoints.list_enabled(now).await?);
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some((Instant::now(), Arc::clone(&fresh)));
        }
        Ok(fresh)
    }

    /// Forgets the cached endpoints, so the next fan-out reads the table.
    pub fn invalidate(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            *cache = None;
        }
    }

    /// Enqueues `body`, a prepared app-webhook body of `kind` (one not built from a delivery
    /// event, such as `email.received`), to every enabled endpoint that accepts `kind`; the
    /// `webhook-id` derives from `event_key`, so a repeat keeps its id. Returns how many.
    pub async fn fan_out_body(
        &self,
        kind: EventKind,
        event_key: &str,
        body: &str,
    ) -> Result<usize, FanOutError> {
        let endpoints = self.enabled().await.map_err(FanOutError::Endpoints)?;
        let deliveries: Vec<OutboundDelivery> = endpoints
            .iter()
            .filter(|e| e.accepts(kind))
            .map(|e| OutboundDelivery {
                endpoint_id: e.id.clone(),
                webhook_id: webhook_message_id(&e.id, event_key),
                body: body.to_owned(),
            })
            .collect();
        if deliveries.is_empty() {
            return Ok(0);
        }
        self.queue
            .enqueue(&deliveries)
            .await
            .map_err(FanOutError::Queue)?;
        Ok(deliveries.len())
    }

    /// Enqueues one operator notice (not about a message, e.g. `mailgate.guardrail_tripped`)
    /// to every enabled endpoint that takes every event (filter `*`: a filter names only
    /// `email.<kind>` types); `key` is its stable identity, so a repeat keeps its
    /// `webhook-id`. How many deliveries were enqueued.
    pub async fn notify(&self, key: &str, body: &str) -> Result<usize, FanOutError> {
        let endpoints = self.enabled().await.map_err(FanOutError::Endpoints)?;
        let deliveries: Vec<OutboundDelivery> = endpoints
            .iter()
            .filter(|e| e.enabled && e.filter.is_all())
            .map(|e| OutboundDelivery {
                endpoint_id: e.id.clone(),
                webhook_id: webhook_message_id(&e.id, key),
                body: body.to_owned(),
            })
            .collect();
        self.queue
            .enqueue(&deliveries)
            .await
            .map_err(FanOutError::Queue)?;
        Ok(deliveries.len())
    }
    /// Enqueues one delivery per (matching enabled endpoint, event) and returns how many.
    /// `AccountNotice` and `Unknown` events go only to endpoints that name those types.
    /// Each event comes with our message (id and correlation id) when the processor correlated
    /// it.
    pub async fn fan_out(
        &self,
        events: &[(DeliveryEvent, Option<CorrelatedMessage>)],
    ) -> Result<usize, FanOutError> {
        if events.is_empty() {
            return Ok(0);
        }
        let endpoints = self.enabled().await.map_err(FanOutError::Endpoints)?;
        let deliveries = plan_deliveries(&endpoints, events);
        self.queue
            .enqueue(&deliveries)
            .await
            .map_err(FanOutError::Queue)?;
        Ok(deliveries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::{
        EmailAddress, EndpointFilter, EndpointUrl, EventKind, EventSource, MessageId, ProviderId,
    };

    fn endpoint(filter: &str) -> Endpoint {
        Endpoint::new(
            EndpointUrl::parse("https://app.example.com/hook").unwrap(),
            EndpointFilter::parse_list(filter).unwrap(),
            UnixMillis(0),
        )
        .0
    }

    fn event(key: &str, kind: EventKind) -> DeliveryEvent {
        DeliveryEvent {
            key: key.into(),
            kind,
            provider_type: kind.as_str().into(),
            provider: ProviderId::Ses,
            recipient: Some(EmailAddress::parse("a@example.com").unwrap()),
            provider_message_id: None,
            message_id: None,
            occurred_at: None,
            received_at: UnixMillis(5),
            bounce: None,
            url: None,
            detail: None,
            provider_suppressed: false,
            complaint_feedback: None,
            source: EventSource {
                receipt: "r".into(),
                index: 0,
                recipient_index: 0,
            },
        }
    }

    #[test]
    fn each_event_goes_to_the_endpoints_whose_filter_matches() {
        let all = endpoint("");
        let bounces = endpoint("email.bounced");
        let mut off = endpoint("");
        off.enabled = false;
        let endpoints = vec![all.clone(), bounces.clone(), off];
        let events = vec![
            (event("1", EventKind::Delivered), None),
            (
                event("2", EventKind::Bounced),
                Some(MessageId::generate().into()),
            ),
            (event("3", EventKind::AccountNotice), None),
        ];
        let plan = plan_deliveries(&endpoints, &events);
        let pairs: Vec<_> = plan
            .iter()
            .map(|d| (d.endpoint_id.clone(), d.body.contains("email.bounced")))
            .collect();
        assert_eq!(
            pairs,
            vec![
                (all.id.clone(), false),
                (all.id.clone(), true),
                (bounces.id.clone(), true)
            ]
        );
        assert_eq!(plan[1].body, plan[2].body);
        assert_ne!(plan[1].webhook_id, plan[2].webhook_id);
        assert_eq!(
            plan[0].webhook_id,
            webhook_message_id(&all.id, "ses#1"),
            "the id is derived, so a redelivered event keeps it"
        );
    }

    #[test]
    fn notices_go_only_where_they_are_named() {
        let named = endpoint("email.account_notice");
        let plan = plan_deliveries(
            &[endpoint(""), named.clone()],
            &[(event("n", EventKind::AccountNotice), None)],
        );
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].endpoint_id, named.id);
    }

    #[tokio::test]
    async fn endpoints_are_read_once_per_cache_lifetime_and_again_after_invalidation() {
        use crate::testing::{MemoryEndpoints, MemoryOutbound};
        let endpoints = Arc::new(MemoryEndpoints::default());
        let outbound = Arc::new(MemoryOutbound::default());
        let bounces = endpoint("email.bounced");
        endpoints.endpoints.lock().unwrap().push(bounces.clone());
        let fan_out = AppWebhookFanOut::new(endpoints.clone(), outbound.clone());
        assert_eq!(fan_out.fan_out(&[]).await.unwrap(), 0);
        let events = [
            (event("1", EventKind::Delivered), None),
            (event("2", EventKind::Bounced), None),
        ];
        assert_eq!(fan_out.fan_out(&events).await.unwrap(), 1);
        assert_eq!(fan_out.fan_out(&events).await.unwrap(), 1);
        assert_eq!(endpoints.lists.load(std::sync::atomic::Ordering::SeqCst), 1);
        endpoints.endpoints.lock().unwrap().push(endpoint(""));
        fan_out.invalidate();
        assert_eq!(fan_out.fan_out(&events).await.unwrap(), 3);
        assert_eq!(endpoints.lists.load(std::sync::atomic::Ordering::SeqCst), 2);
        let queued = outbound.deliveries.lock().unwrap().clone();
        assert_eq!(queued.len(), 5);
        assert!(queued[..2].iter().all(|d| d.endpoint_id == bounces.id));
    }

    #[tokio::test]
    async fn a_failed_read_or_enqueue_is_reported_and_nothing_is_cached() {
        use crate::testing::{MemoryEndpoints, MemoryOutbound};
        use mailgate_core::StoreErrorKind;
        let endpoints = Arc::new(MemoryEndpoints::default());
        let outbound = Arc::new(MemoryOutbound::default());
        endpoints.endpoints.lock().unwrap().push(endpoint(""));
        let fan_out = AppWebhookFanOut::new(endpoints.clone(), outbound.clone());
        let events = [(event("1", EventKind::Delivered), None)];
        endpoints
            .faults
            .fail_next("list_enabled", StoreErrorKind::Transient);
        assert!(matches!(
            fan_out.fan_out(&events).await,
            Err(FanOutError::Endpoints(_))
        ));
        outbound
            .faults
            .fail_next("enqueue", StoreErrorKind::Throttled);
        assert!(matches!(
            fan_out.fan_out(&events).await,
            Err(FanOutError::Queue(_))
        ));
        assert_eq!(fan_out.fan_out(&events).await.unwrap(), 1);
        assert_eq!(outbound.deliveries.lock().unwrap().len(), 1);
    }
}
