//! `SqsDeadLetterQueue`: a queue's dead-letter queue, where a consumer parks a record that can
//! never succeed (a malformed envelope, an unknown version) at once instead of letting it
//! fail until the redrive count, with the reason as a message attribute so an operator (and
//! `mailgate-admin dlq replay`) sees why it is there.

use aws_sdk_sqs::types::MessageAttributeValue;
use mailgate_core::ports::{BoxFuture, DeadLetterQueue};
use mailgate_core::queue::sqs_safe;
use mailgate_core::{StoreError, StoreErrorKind};

/// The message attribute that carries why a record was parked.
pub const POISON_REASON_ATTRIBUTE: &str = "mailgate_poison_reason";

/// SQS limits a message attribute value; a reason longer than this is cut (on a char boundary).
const MAX_REASON_BYTES: usize = 1024;

/// A dead-letter queue on SQS.
#[derive(Debug, Clone)]
pub struct SqsDeadLetterQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDeadLetterQueue {
    /// The dead-letter queue at `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

/// `reason` cut to at most [`MAX_REASON_BYTES`] bytes, never empty (SQS refuses empty values).
fn attribute_value(reason: &str) -> String {
    // Attribute values take the characters bodies take; the reason may quote a provider's.
    let reason = sqs_safe(reason);
    let mut end = reason.len().min(MAX_REASON_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    match &reason[..end] {
        "" => "unspecified".to_owned(),
        cut => cut.to_owned(),
    }
}

impl DeadLetterQueue for SqsDeadLetterQueue {
    fn park<'a>(&'a self, body: &'a str, reason: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(attribute_value(reason))
                .build()
                // An attribute we cannot build is a bug: retrying cannot fix it.
                .map_err(|e| StoreError::new(StoreErrorKind::Other, "SendMessage", e))?;
            self.client
                .send_message()
                .queue_url(&self.queue_url)
                // SQS refuses an empty body; a record without one is parked as a single space.
                .message_body(if body.is_empty() {
                    " ".into()
                } else {
                    sqs_safe(body)
                })
                .message_attributes(POISON_REASON_ATTRIBUTE, attribute)
                .send()
                .await
                .map_err(|e| crate::sdk::store_error("SendMessage", e))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_cut_on_a_char_boundary_and_never_empty() {
        assert_eq!(attribute_value(""), "unspecified");
        assert_eq!(attribute_value("bad json"), "bad json");
        let long = "é".repeat(600);
        let cut = attribute_value(&long);
        assert!(cut.len() <= MAX_REASON_BYTES);
        assert_eq!(attribute_value("bad \u{FFFF}"), "bad \\uffff");
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
