//! Message search (`mailgate_core::ports::MessageSearch`) on DynamoDB: the messages table's
//! search indexes and the message history, beside the suppressions table for a recipient's
//! entries.

use mailgate_core::ports::{BoxFuture, FoundMessages, MessageSearch, SearchError};
use mailgate_core::search::{LastEvent, MessageQuery};
use mailgate_core::{EmailAddress, MessageId, StoreError, Suppression};

use crate::{DynamoDbMessages, DynamoDbSuppressionList};

/// Message search over the messages and suppressions tables.
#[derive(Debug, Clone)]
pub struct DynamoDbMessageSearch {
    messages: DynamoDbMessages,
    suppressions: DynamoDbSuppressionList,
}

impl DynamoDbMessageSearch {
    /// Search over `messages`, reading a recipient's entries from `suppressions`.
    pub fn new(messages: DynamoDbMessages, suppressions: DynamoDbSuppressionList) -> Self {
        Self {
            messages,
            suppressions,
        }
    }
}

impl MessageSearch for DynamoDbMessageSearch {
    fn find<'a>(
        &'a self,
        query: &'a MessageQuery,
    ) -> BoxFuture<'a, Result<FoundMessages, SearchError>> {
        Box::pin(self.messages.find(query))
    }

    fn last_event<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<LastEvent>, StoreError>> {
        Box::pin(self.messages.last_event(id))
    }

    fn suppressions_of<'a>(
        &'a self,
        address: &'a EmailAddress,
    ) -> BoxFuture<'a, Result<Vec<Suppression>, StoreError>> {
        Box::pin(async move { Ok(self.suppressions.entries_of(address).await?) })
    }
}
