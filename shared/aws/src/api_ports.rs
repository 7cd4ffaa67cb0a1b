//! The send API's own ports (`mailgate_core::ports::api`) on DynamoDB: the API keys behind
//! [`ApiKeys`] and the suppression list behind [`SuppressionAdmin`], their errors classified
//! into [`StoreError`].

use mailgate_core::ports::{
    ApiKeys, BoxFuture, Cancellation, MessageDesk, StoredMessage, SuppressionAdmin,
    SuppressionListError, SuppressionPage,
};
use mailgate_core::{
    ApiKeyRecord, EmailAddress, KeyEnvironment, KeyHash, MessageId, StoreError, StoreErrorKind,
    Suppression, SuppressionReason, UnixMillis,
};
use time::OffsetDateTime;

use crate::{
    ApiKeyStoreError, DynamoDbApiKeys, DynamoDbMessages, DynamoDbSuppressionList,
    SuppressionStoreError,
};

impl SuppressionAdmin for DynamoDbSuppressionList {
    fn get<'a>(
        &'a self,
        address: &'a EmailAddress,
        topic: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Suppression>, StoreError>> {
        Box::pin(async move { Ok(self.get_in(address, topic).await?) })
    }

    fn put<'a>(&'a self, entry: &'a Suppression) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { Ok(DynamoDbSuppressionList::put(self, entry).await?) })
    }

    fn delete<'a>(
        &'a self,
        address: &'a EmailAddress,
        topic: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Suppression>, StoreError>> {
        Box::pin(async move { Ok(self.delete_in(address, topic).await?) })
    }

    fn list<'a>(
        &'a self,
        reason: Option<SuppressionReason>,
        cursor: Option<&'a str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<SuppressionPage, SuppressionListError>> {
        Box::pin(async move {
            match DynamoDbSuppressionList::list(self, reason, cursor, limit, now).await {
                Ok(page) => Ok(page),
                Err(SuppressionStoreError::InvalidCursor) => {
                    Err(SuppressionListError::InvalidCursor)
                }
                Err(e) => Err(SuppressionListError::Store(e.into())),
            }
        })
    }
}

impl From<ApiKeyStoreError> for StoreError {
    fn from(e: ApiKeyStoreError) -> Self {
        match e {
            // Classified by the adapter when the call failed.
            ApiKeyStoreError::Unavailable(inner) => inner,
            ApiKeyStoreError::TableNotFound(_) => {
                StoreError::new(StoreErrorKind::MissingResource, "api_keys", e)
            }
            ApiKeyStoreError::Corrupt { .. } => {
                StoreError::new(StoreErrorKind::Corrupt, "api_keys", e)
            }
            ApiKeyStoreError::UnknownId(_) | ApiKeyStoreError::AlreadyExists => {
                StoreError::new(StoreErrorKind::ConditionFailed, "api_keys", e)
            }
        }
    }
}

impl ApiKeys for DynamoDbApiKeys {
    fn find<'a>(
        &'a self,
        hash: &'a KeyHash,
    ) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, StoreError>> {
        Box::pin(async move { Ok(DynamoDbApiKeys::find(self, hash).await?) })
    }
}

impl MessageDesk for DynamoDbMessages {
    fn get<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<StoredMessage>, StoreError>> {
        Box::pin(async move { Ok(DynamoDbMessages::get(self, id).await?) })
    }

    fn cancel<'a>(
        &'a self,
        id: &'a MessageId,
        environment: KeyEnvironment,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Cancellation, StoreError>> {
        Box::pin(async move { Ok(DynamoDbMessages::cancel(self, id, environment, now).await?) })
    }
}
