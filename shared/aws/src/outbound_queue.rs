//! `SqsOutboundQueue`: the outbound queue on SQS, which carries app-webhook deliveries from the
//! event processor's fan-out to the `dispatcher`.
//!
//! A queue message is one delivery of one event to one endpoint, exactly
//! `{"v":1,"endpoint_id":"ep_…","webhook_id":"msg_…","body":"<the JSON body as a string>"}`.
//! The body is serialised once, at fan-out, and the dispatcher signs and sends those exact bytes
//! on every attempt; the `webhook_id` is derived from the endpoint and the event, so it is the
//! same across retries and redeliveries. The endpoint's URL and secrets are not in the message:
//! the dispatcher reads them at send time, so a rotation, disable or removal applies at once.

use aws_sdk_sqs::Client;
use mailgate_core::{StoreError, StoreErrorKind};

use crate::sdk::store_error;
use crate::sqs_batch::{BatchEntry, send_batches};

pub use mailgate_core::ports::{
    MalformedOutboundMessage, OUTBOUND_MESSAGE_VERSION, OutboundDelivery,
};

/// The outbound queue could not take a delivery (classified when it was made).
pub type OutboundQueueError = StoreError;

/// The outbound queue on SQS.
#[derive(Debug, Clone)]
pub struct SqsOutboundQueue {
    client: Client,
    queue_url: String,
}

impl SqsOutboundQueue {
    /// The queue at `queue_url` (the `OUTBOUND_QUEUE_URL`).
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// The queue URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Puts every delivery on the queue: one `SendMessageBatch` per ten. Fails if any entry
    /// was refused; the caller retries the whole set, which is safe because a delivery keeps
    /// its `webhook-id` and the app dedupes on it.
    pub async fn enqueue(&self, deliveries: &[OutboundDelivery]) -> Result<(), OutboundQueueError> {
        let entries: Vec<BatchEntry> = deliveries
            .iter()
            .map(|d| BatchEntry::new(d.to_body()))
            .collect();
        // A delivery over SQS's size limit stays over it: retrying cannot fix it.
        let sent = send_batches(&self.client, &self.queue_url, &entries)
            .await
            .map_err(|e| StoreError::new(StoreErrorKind::Other, "SendMessageBatch", e))?;
        sent.all_sent(entries.len())?;
        Ok(())
    }

    /// Hides a received message for `seconds` (0–43200) from now: the dispatcher's retry
    /// schedule, since SQS redelivers a message when its visibility timeout ends.
    pub async fn retry_after(
        &self,
        receipt_handle: &str,
        seconds: i32,
    ) -> Result<(), OutboundQueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| store_error("ChangeMessageVisibility", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::EndpointId;

    fn delivery() -> OutboundDelivery {
        OutboundDelivery {
            endpoint_id: EndpointId::parse("ep_01jd5x3q7r8s9t0v1w2x3y4z5a").unwrap(),
            webhook_id: "msg_0123456789abcdef0123456789abcdef".to_owned(),
            body: r#"{"type":"email.delivered","timestamp":"2026-11-23T14:00:00Z","data":{}}"#
                .to_owned(),
        }
    }

    #[test]
    fn the_body_is_exactly_the_documented_format() {
        let body = delivery().to_body();
        assert_eq!(
            body,
            r#"{"v":1,"endpoint_id":"ep_01jd5x3q7r8s9t0v1w2x3y4z5a","webhook_id":"msg_0123456789abcdef0123456789abcdef","body":"{\"type\":\"email.delivered\",\"timestamp\":\"2026-11-23T14:00:00Z\",\"data\":{}}"}"#
        );
        assert_eq!(OutboundDelivery::parse(&body).unwrap(), delivery());
    }

    #[test]
    fn other_shapes_and_versions_are_malformed() {
        let good: serde_json::Value = serde_json::from_str(&delivery().to_body()).unwrap();
        let mut v2 = good.clone();
        v2["v"] = 2.into();
        assert!(OutboundDelivery::parse(&v2.to_string()).is_err());
        let mut dotted = good.clone();
        dotted["webhook_id"] = "msg_a.b".into();
        assert!(OutboundDelivery::parse(&dotted.to_string()).is_err());
        let mut bad_id = good;
        bad_id["endpoint_id"] = "evt_01jd5x3q7r8s9t0v1w2x3y4z5a".into();
        assert!(OutboundDelivery::parse(&bad_id.to_string()).is_err());
        assert!(OutboundDelivery::parse("not json").is_err());
    }
}
