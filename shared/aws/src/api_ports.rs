//! The send API's administration ports (`mailgate_core::ports::api`) on DynamoDB: the
//! suppression list's own methods behind [`SuppressionAdmin`], errors classified into
//! [`StoreError`] (see `send_ports` for the classification).

use mailgate_core::ports::{BoxFuture, SuppressionAdmin, SuppressionListError, SuppressionPage};
use mailgate_core::{EmailAddress, StoreError, Suppression, SuppressionReason};
use time::OffsetDateTime;

use crate::{DynamoDbSuppressionList, SuppressionStoreError};

impl SuppressionAdmin for DynamoDbSuppressionList {
    fn get<'a>(
        &'a self,
        address: &'a EmailAddress,
    ) -> BoxFuture<'a, Result<Option<Suppression>, StoreError>> {
        Box::pin(async move { Ok(DynamoDbSuppressionList::get(self, address).await?) })
    }

    fn put<'a>(&'a self, entry: &'a Suppression) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { Ok(DynamoDbSuppressionList::put(self, entry).await?) })
    }

    fn delete<'a>(
        &'a self,
        address: &'a EmailAddress,
    ) -> BoxFuture<'a, Result<Option<Suppression>, StoreError>> {
        Box::pin(async move { Ok(DynamoDbSuppressionList::delete(self, address).await?) })
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
