//! `SqsSendQueue`: the send queue on SQS, which carries messages accepted onto the asynchronous
//! send path to `send-worker`.
//!
//! A queue message is only a pointer, exactly `{"v":1,"message_id":"msg_…"}`: the worker loads
//! the record and the content from the messages table, so content of any size fits and a
//! redelivered pointer to a message already sent is recognised by the message's state.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use mailgate_core::MessageId;
use serde::{Deserialize, Serialize};

/// The longest delay SQS accepts on one message (15 minutes).
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// Entries per `SendMessageBatch` call (the API's limit).
const BATCH_ENTRIES: usize = 10;

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

/// The send queue could not take a message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("SQS {operation} failed: {detail}")]
pub struct SendQueueError {
    /// The API operation.
    pub operation: &'static str,
    /// What went wrong.
    pub detail: String,
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
    pub async fn enqueue(
        &self,
        message_id: &MessageId,
        delay: Duration,
    ) -> Result<(), SendQueueError> {
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(SendQueueMessage::new(message_id.clone()).to_body())
            .delay_seconds(delay_seconds(delay))
            .send()
            .await
            .map_err(|e| SendQueueError {
                operation: "SendMessage",
                detail: DisplayErrorContext(e).to_string(),
            })?;
        Ok(())
    }

    /// Puts every one of `message_ids` on the queue without delay: one `SendMessageBatch` per
    /// ten. Fails if any entry was refused; callers treat the whole set as not enqueued
    /// (the worker ignores a message it already sent).
    pub async fn enqueue_all(&self, message_ids: &[MessageId]) -> Result<(), SendQueueError> {
        for chunk in message_ids.chunks(BATCH_ENTRIES) {
            let mut request = self.client.send_message_batch().queue_url(&self.queue_url);
            for (i, id) in chunk.iter().enumerate() {
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(SendQueueMessage::new(id.clone()).to_body())
                    .build()
                    .map_err(|e| SendQueueError {
                        operation: "SendMessageBatch",
                        detail: DisplayErrorContext(e).to_string(),
                    })?;
                request = request.entries(entry);
            }
            let out = request.send().await.map_err(|e| SendQueueError {
                operation: "SendMessageBatch",
                detail: DisplayErrorContext(e).to_string(),
            })?;
            if !out.failed().is_empty() {
                return Err(SendQueueError {
                    operation: "SendMessageBatch",
                    detail: format!("{} entries refused", out.failed().len()),
                });
            }
        }
        Ok(())
    }
}

/// A delay as SQS takes it: whole seconds, rounded up, at most 900.
pub fn delay_seconds(delay: Duration) -> i32 {
    let capped = delay.min(MAX_DELAY);
    let secs = capped.as_secs() + u64::from(capped.subsec_nanos() > 0);
    i32::try_from(secs.min(MAX_DELAY.as_secs())).unwrap_or(900)
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

    #[test]
    fn delays_are_whole_seconds_capped_at_fifteen_minutes() {
        assert_eq!(delay_seconds(Duration::ZERO), 0);
        assert_eq!(delay_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(delay_seconds(Duration::from_secs(3600)), 900);
    }
}
