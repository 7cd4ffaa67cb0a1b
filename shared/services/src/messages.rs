//! Reading and cancelling one message for the API's caller (`GET` and `DELETE
//! /v1/messages/{id}`): a caller sees only messages of its key's environment, and may cancel
//! one only while it waits to be released (`scheduled` or `paused`).

use std::sync::Arc;

use mailgate_core::ports::{Cancellation, MessageDesk, StoredMessage};
use mailgate_core::{KeyEnvironment, MessageId, StoreError, UnixMillis};

/// One message's reads and cancellation.
#[derive(Clone)]
pub struct MessageReads {
    messages: Arc<dyn MessageDesk>,
}

impl std::fmt::Debug for MessageReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageReads").finish_non_exhaustive()
    }
}

impl MessageReads {
    /// Reads and cancels `messages`.
    pub fn new(messages: Arc<dyn MessageDesk>) -> Self {
        Self { messages }
    }

    /// The message with its attempts and history, if it exists and belongs to `environment`.
    pub async fn get(
        &self,
        id: &MessageId,
        environment: KeyEnvironment,
    ) -> Result<Option<StoredMessage>, StoreError> {
        Ok(self
            .messages
            .get(id)
            .await?
            .filter(|m| m.record.visible_to(environment)))
    }

    /// Cancels the message if it belongs to `environment` and is still cancellable.
    pub async fn cancel(
        &self,
        id: &MessageId,
        environment: KeyEnvironment,
        now: UnixMillis,
    ) -> Result<Cancellation, StoreError> {
        let cancellation = self.messages.cancel(id, environment, now).await?;
        if matches!(cancellation, Cancellation::Cancelled(_)) {
            tracing::info!(message_id = %id, "message cancelled");
        }
        Ok(cancellation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryMessageDesk;
    use mailgate_core::{
        ApiKeyId, EmailAddress, Mailbox, MessageRecord, MessageState, OutboundEmail, StoreErrorKind,
    };

    const NOW: UnixMillis = UnixMillis::EPOCH;

    fn stored(state: MessageState, environment: KeyEnvironment) -> StoredMessage {
        let email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(EmailAddress::parse("news@example.com").unwrap()),
            EmailAddress::parse("jane@example.org").unwrap(),
            "Hello",
        );
        StoredMessage {
            record: MessageRecord::new(
                &email,
                ApiKeyId::generate(),
                environment,
                state,
                NOW,
                None,
                &[],
            ),
            attempts: Vec::new(),
            requested_provider: None,
            events: Vec::new(),
        }
    }

    fn desk(messages: &[StoredMessage]) -> (Arc<MemoryMessageDesk>, MessageReads) {
        let desk = Arc::new(MemoryMessageDesk::default());
        for m in messages {
            desk.insert(m.clone());
        }
        (desk.clone(), MessageReads::new(desk))
    }

    #[tokio::test]
    async fn a_caller_reads_only_its_environments_messages() {
        let live = stored(MessageState::Sent, KeyEnvironment::Live);
        let (desk, reads) = desk(std::slice::from_ref(&live));
        let id = &live.record.id;
        assert_eq!(
            reads.get(id, KeyEnvironment::Live).await.unwrap(),
            Some(live.clone())
        );
        assert_eq!(reads.get(id, KeyEnvironment::Test).await.unwrap(), None);
        let unknown = MessageId::generate();
        assert_eq!(
            reads.get(&unknown, KeyEnvironment::Live).await.unwrap(),
            None
        );

        desk.faults.fail_next("get", StoreErrorKind::Transient);
        let err = reads.get(id, KeyEnvironment::Live).await.unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Transient);
    }

    #[tokio::test]
    async fn only_a_waiting_message_of_the_callers_environment_is_cancelled() {
        // (state, the caller's environment, the expected answer)
        let cases = [
            (
                MessageState::Scheduled,
                KeyEnvironment::Test,
                Some(MessageState::Cancelled),
            ),
            (
                MessageState::Paused,
                KeyEnvironment::Test,
                Some(MessageState::Cancelled),
            ),
            (
                MessageState::Sent,
                KeyEnvironment::Test,
                Some(MessageState::Sent),
            ),
            (
                MessageState::Queued,
                KeyEnvironment::Test,
                Some(MessageState::Queued),
            ),
            (MessageState::Scheduled, KeyEnvironment::Live, None),
        ];
        for (state, environment, expected) in cases {
            let message = stored(state, KeyEnvironment::Test);
            let id = message.record.id.clone();
            let (desk, reads) = desk(&[message]);
            let answer = reads.cancel(&id, environment, NOW).await.unwrap();
            let after = desk.message(&id).unwrap().record.state;
            match (answer, expected) {
                (Cancellation::Cancelled(record), Some(MessageState::Cancelled)) => {
                    assert_eq!(record.state, MessageState::Cancelled);
                    assert_eq!(after, MessageState::Cancelled);
                }
                (Cancellation::NotCancellable(now_state), Some(expected)) => {
                    assert_eq!(now_state, expected);
                    assert_eq!(after, state, "{state:?} is left alone");
                }
                (Cancellation::NotFound, None) => assert_eq!(after, state),
                (answer, expected) => {
                    panic!("{state:?}/{environment:?}: {answer:?}, expected {expected:?}")
                }
            }
        }
        let (_, reads) = desk(&[]);
        let unknown = MessageId::generate();
        let answer = reads
            .cancel(&unknown, KeyEnvironment::Test, NOW)
            .await
            .unwrap();
        assert_eq!(answer, Cancellation::NotFound);
    }

    #[tokio::test]
    async fn a_failed_cancel_is_reported_and_changes_nothing() {
        let message = stored(MessageState::Scheduled, KeyEnvironment::Live);
        let id = message.record.id.clone();
        let (desk, reads) = desk(&[message]);
        desk.faults.fail_next("cancel", StoreErrorKind::Throttled);
        let err = reads
            .cancel(&id, KeyEnvironment::Live, NOW)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), StoreErrorKind::Throttled);
        assert_eq!(
            desk.message(&id).unwrap().record.state,
            MessageState::Scheduled
        );
    }
}
