//! `SqsSendQueue`: the send queue on SQS, which carries messages accepted onto the asynchronous
//! send path to `send-worker`.
//!
//! A queue message is only a pointer, exactly `{"v":1,"message_id":"msg_…"}`: the worker loads
//! the record and the content from the messages table, so content of any size fits and a
//! redelivered pointer to a message already sent is recognised by the message's state.

use std::time::Duration;

use aws_sdk_sqs::Client;
use mailgate_core::queue::sqs_safe;
pub use mailgate_core::queue::{MAX_DELAY, delay_seconds};
use mailgate_core::{MessageId, StoreError, StoreErrorKind};
use serde::{Deserialize, Serialize};

use crate::sqs_batch::{BatchEntry, send_batches};

/// The version of the queue message format.
pub const SEND_MESSAGE_VERSION: u8 = 1;

/// One send-queue message: `{"v":1,"message_id":"msg_…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendQueueMessage {
    /// The format version, always [`SEND_MESSAGE_VERSION`].
    pub v: u8,
    /// The message to send.
    pub message_id: MessageId,
}

/// A body that is not a send-queue message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not a send-queue message: {0}")]
pub struct MalformedSendMessage(pub String);

impl SendQueueMessage {
    /// The message pointing at `message_id`.
    pub fn new(message_id: MessageId) -> Self {
        Self {
            v: SEND_MESSAGE_VERSION,
            message_id,
        }
    }

    /// Reads a queue message body; any other version or shape is malformed.
    pub fn parse(body: &str) -> Result<Self, MalformedSendMessage> {
        let message: Self =
            serde_json::from_str(body).map_err(|e| MalformedSendMessage(e.to_string()))?;
        if message.v != SEND_MESSAGE_VERSION {
            return Err(MalformedSendMessage(format!(
                "unsupported version {}",
                message.v
            )));
        }
        Ok(message)
    }

    /// The body as sent.
    pub fn to_body(&self) -> String {
        format!(
            r#"{{"v":{},"message_id":"{}"}}"#,
            self.v,
            self.message_id.as_str()
        )
    }
}

/// The send queue on SQS.
#[derive(Debug, Clone)]
pub struct SqsSendQueue {
    client: Client,
    queue_url: String,
}

impl SqsSendQueue {
    /// The queue at `queue_url` (the `SEND_QUEUE_URL`).
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// Puts `message_id` on the queue, invisible for `delay` (capped at [`MAX_DELAY`], whole
    /// seconds rounded up). One `SendMessage`.
    pub async fn enqueue(&self, message_id: &MessageId, delay: Duration) -> Result<(), StoreError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(sqs_safe(
                &SendQueueMessage::new(message_id.clone()).to_body(),
            ))
            .delay_seconds(delay_seconds(delay))
            .send()
            .await
            .map_err(|e| crate::sdk::store_error("SendMessage", e))?;
        Ok(())
    }

    /// Puts every one of `message_ids` on the queue without delay (batches of ten). Fails if
    /// any entry is not on it; callers treat the whole set as not enqueued (the worker ignores
    /// a message it already sent).
    pub async fn enqueue_all(&self, message_ids: &[MessageId]) -> Result<(), StoreError> {
        let entries: Vec<BatchEntry> = message_ids
            .iter()
            .map(|id| BatchEntry::new(SendQueueMessage::new(id.clone()).to_body()))
            .collect();
        self.send(&entries).await
    }

    /// Puts every `(message_id, delay)` on the queue, each invisible for its delay (capped at
    /// [`MAX_DELAY`], whole seconds rounded up). Fails if any entry is not on it.
    pub async fn enqueue_delayed(&self, batch: &[(MessageId, Duration)]) -> Result<(), StoreError> {
        let entries: Vec<BatchEntry> = batch
            .iter()
            .map(|(id, delay)| {
                BatchEntry::new(SendQueueMessage::new(id.clone()).to_body())
                    .delayed(delay_seconds(*delay))
            })
            .collect();
        self.send(&entries).await
    }

    async fn send(&self, entries: &[BatchEntry]) -> Result<(), StoreError> {
        let sent = send_batches(&self.client, &self.queue_url, entries)
            .await
            .map_err(|e| StoreError::new(StoreErrorKind::Other, "SendMessageBatch", e))?;
        sent.all_sent(entries.len()).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_exactly_the_documented_pointer() {
        let id = MessageId::parse("msg_01jd5x3q7r8s9t0v1w2x3y4z5a").unwrap();
        let body = SendQueueMessage::new(id.clone()).to_body();
        assert_eq!(
            body,
            r#"{"v":1,"message_id":"msg_01jd5x3q7r8s9t0v1w2x3y4z5a"}"#
        );
        assert_eq!(SendQueueMessage::parse(&body).unwrap().message_id, id);
    }

    #[test]
    fn other_shapes_and_versions_are_malformed() {
        assert!(
            SendQueueMessage::parse(r#"{"message_id":"msg_01jd5x3q7r8s9t0v1w2x3y4z5a"}"#).is_err()
        );
        assert!(
            SendQueueMessage::parse(r#"{"v":2,"message_id":"msg_01jd5x3q7r8s9t0v1w2x3y4z5a"}"#)
                .is_err()
        );
        assert!(SendQueueMessage::parse("not json").is_err());
    }
}
