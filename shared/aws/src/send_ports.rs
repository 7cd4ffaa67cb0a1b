//! The send flow's ports (`mailgate_core::ports::send`) on DynamoDB and SQS: the adapters'
//! own methods behind the port traits, their errors classified into [`StoreError`].

use std::collections::HashMap;
use std::time::Duration;

use mailgate_core::ports::{
    AcceptGuards, BoxFuture, GuardedCreate, IdempotencyStore, KeyClaimRequest, KeyCompletion,
    MessageStore, ProviderHealth, SendControls, SendQueue, SendingClaim, StoredMessage,
    SuppressionCheck,
};
use mailgate_core::{
    Admission, CircuitStatus, Claim, ClaimOutcome, EmailAddress, MessageId, MessageRecord,
    MessageState, OutboundEmail, ProviderId, RequestFingerprint, SendAttempt, StoreError,
    StoreErrorKind, StoredResponse, Suppression, TakeDenied, UnixMillis,
};
use time::OffsetDateTime;

use crate::{
    ControlsError, DynamoDbIdempotencyStore, DynamoDbMessages, DynamoDbProviderHealth,
    DynamoDbSendControls, DynamoDbSuppressionList, IdempotencyStoreError, MessageStoreError,
    ProviderHealthError, SqsSendQueue, SuppressionStoreError,
};

/// A DynamoDB failure as the adapter classified it when the call failed.
fn unavailable(e: &StoreError) -> StoreError {
    e.clone()
}

impl From<MessageStoreError> for StoreError {
    fn from(e: MessageStoreError) -> Self {
        let kind = match &e {
            MessageStoreError::AlreadyExists(_)
            | MessageStoreError::LinkedRefused
            | MessageStoreError::CheckRefused
            | MessageStoreError::NotFound(_) => StoreErrorKind::ConditionFailed,
            MessageStoreError::Corrupt { .. } | MessageStoreError::Content(_) => {
                StoreErrorKind::Corrupt
            }
            MessageStoreError::Unavailable { kind, .. } => *kind,
        };
        let operation = match &e {
            MessageStoreError::Unavailable { operation, .. } => operation,
            _ => "messages",
        };
        StoreError::new(kind, operation, e.to_string())
    }
}

impl From<IdempotencyStoreError> for StoreError {
    fn from(e: IdempotencyStoreError) -> Self {
        match &e {
            IdempotencyStoreError::Unavailable(inner) => unavailable(inner),
            IdempotencyStoreError::TableNotFound(_) => StoreError::new(
                StoreErrorKind::MissingResource,
                "idempotency",
                e.to_string(),
            ),
            IdempotencyStoreError::ClaimLost(_) => StoreError::new(
                StoreErrorKind::ConditionFailed,
                "idempotency",
                e.to_string(),
            ),
            IdempotencyStoreError::Contended(_) => {
                StoreError::new(StoreErrorKind::Transient, "idempotency", e.to_string())
            }
            IdempotencyStoreError::Corrupt { .. } => {
                StoreError::new(StoreErrorKind::Corrupt, "idempotency", e.to_string())
            }
        }
    }
}

impl From<SuppressionStoreError> for StoreError {
    fn from(e: SuppressionStoreError) -> Self {
        match &e {
            SuppressionStoreError::Unavailable(inner) => unavailable(inner),
            SuppressionStoreError::TableNotFound(_) => StoreError::new(
                StoreErrorKind::MissingResource,
                "suppressions",
                e.to_string(),
            ),
            SuppressionStoreError::InvalidCursor => {
                StoreError::new(StoreErrorKind::Other, "suppressions", e.to_string())
            }
            SuppressionStoreError::Corrupt { .. } => {
                StoreError::new(StoreErrorKind::Corrupt, "suppressions", e.to_string())
            }
        }
    }
}

impl From<ControlsError> for StoreError {
    fn from(e: ControlsError) -> Self {
        match &e {
            ControlsError::Unavailable(inner) => unavailable(inner),
            ControlsError::TableNotFound(_) => {
                StoreError::new(StoreErrorKind::MissingResource, "controls", e.to_string())
            }
            ControlsError::Superseded(_) => {
                StoreError::new(StoreErrorKind::ConditionFailed, "controls", e.to_string())
            }
            ControlsError::Corrupt { .. } => {
                StoreError::new(StoreErrorKind::Corrupt, "controls", e.to_string())
            }
        }
    }
}

impl From<ProviderHealthError> for StoreError {
    fn from(e: ProviderHealthError) -> Self {
        match &e {
            ProviderHealthError::Unavailable(inner) => unavailable(inner),
            ProviderHealthError::TableNotFound(_) => {
                StoreError::new(StoreErrorKind::MissingResource, "control", e.to_string())
            }
            ProviderHealthError::Contended(_) => {
                StoreError::new(StoreErrorKind::Transient, "control", e.to_string())
            }
            ProviderHealthError::Corrupt { .. } => {
                StoreError::new(StoreErrorKind::Corrupt, "control", e.to_string())
            }
        }
    }
}

fn no_idempotency_table() -> StoreError {
    StoreError::new(
        StoreErrorKind::MissingResource,
        "idempotency",
        "this message store was wired without an idempotency table",
    )
}

impl MessageStore for DynamoDbMessages {
    fn get<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<StoredMessage>, StoreError>> {
        Box::pin(async move { Ok(DynamoDbMessages::get(self, id).await?) })
    }

    fn load_content<'a>(
        &'a self,
        id: &'a MessageId,
    ) -> BoxFuture<'a, Result<Option<OutboundEmail>, StoreError>> {
        Box::pin(async move { Ok(DynamoDbMessages::load_content(self, id).await?) })
    }

    fn start_sending<'a>(
        &'a self,
        id: &'a MessageId,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> BoxFuture<'a, Result<SendingClaim, StoreError>> {
        Box::pin(async move {
            match DynamoDbMessages::start_sending(self, id, now, lease_until).await {
                Err(MessageStoreError::NotFound(_)) => Ok(SendingClaim::Missing),
                other => Ok(other?),
            }
        })
    }

    fn create<'a>(
        &'a self,
        record: &'a MessageRecord,
        content: &'a OutboundEmail,
        requested_provider: Option<ProviderId>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            Ok(DynamoDbMessages::create_for(self, record, content, requested_provider).await?)
        })
    }

    fn create_and_claim<'a>(
        &'a self,
        record: &'a MessageRecord,
        content: &'a OutboundEmail,
        requested_provider: Option<ProviderId>,
        key: &'a KeyClaimRequest,
    ) -> BoxFuture<'a, Result<Option<Claim>, StoreError>> {
        Box::pin(async move {
            let store = self.idempotency().ok_or_else(no_idempotency_table)?;
            let (write, claim) = store.claim_write(
                &key.scoped_key,
                &key.fingerprint,
                key.now,
                key.lease,
                key.completed.as_ref().map(|(r, d)| (r, *d)),
            )?;
            match self
                .create_linked(record, content, requested_provider, Some(write))
                .await
            {
                Ok(()) => Ok(Some(claim)),
                Err(MessageStoreError::LinkedRefused) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn create_guarded<'a>(
        &'a self,
        record: &'a MessageRecord,
        content: &'a OutboundEmail,
        requested_provider: Option<ProviderId>,
        key: Option<&'a KeyClaimRequest>,
        guards: &'a AcceptGuards,
    ) -> BoxFuture<'a, Result<GuardedCreate, StoreError>> {
        Box::pin(async move {
            let Some(checks) = self.guard_checks(guards) else {
                return Ok(GuardedCreate::Unconfirmed);
            };
            let checks = checks?;
            // A message to many recipients (two checks each on a topic) can need more items
            // than one transaction holds: then the caller reads instead of checking.
            if checks.len() + self.create_items(record, key.is_some())
                > crate::messages::MAX_TRANSACTION_ITEMS
            {
                return Ok(GuardedCreate::Unconfirmed);
            }
            let (linked, claim) = match key {
                Some(key) => {
                    let store = self.idempotency().ok_or_else(no_idempotency_table)?;
                    let (write, claim) = store.claim_write(
                        &key.scoped_key,
                        &key.fingerprint,
                        key.now,
                        key.lease,
                        key.completed.as_ref().map(|(r, d)| (r, *d)),
                    )?;
                    (Some(write), Some(claim))
                }
                None => (None, None),
            };
            match self
                .create_checked(record, content, requested_provider, linked, checks)
                .await
            {
                Ok(()) => Ok(GuardedCreate::Recorded(claim)),
                Err(MessageStoreError::LinkedRefused) => Ok(GuardedCreate::KeyHeld),
                Err(MessageStoreError::CheckRefused) => Ok(GuardedCreate::Unconfirmed),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn record_outcome<'a>(
        &'a self,
        record: &'a MessageRecord,
        attempts: &'a [SendAttempt],
        state: MessageState,
        now: UnixMillis,
        completion: Option<&'a KeyCompletion>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let linked = match completion {
                Some(c) => {
                    let store = self.idempotency().ok_or_else(no_idempotency_table)?;
                    Some(store.complete_write(&c.claim, &c.response, c.now, c.retention)?)
                }
                None => None,
            };
            Ok(
                DynamoDbMessages::record_outcome_of(self, record, attempts, state, now, linked)
                    .await?,
            )
        })
    }
}

impl IdempotencyStore for DynamoDbIdempotencyStore {
    fn claim<'a>(
        &'a self,
        scoped_key: &'a str,
        fingerprint: &'a RequestFingerprint,
        now: OffsetDateTime,
        lease: Duration,
    ) -> BoxFuture<'a, Result<ClaimOutcome, StoreError>> {
        Box::pin(async move {
            Ok(DynamoDbIdempotencyStore::claim(self, scoped_key, fingerprint, now, lease).await?)
        })
    }

    fn refused<'a>(
        &'a self,
        scoped_key: &'a str,
        fingerprint: &'a RequestFingerprint,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Option<ClaimOutcome>, StoreError>> {
        Box::pin(async move {
            Ok(DynamoDbIdempotencyStore::refused(self, scoped_key, fingerprint, now).await?)
        })
    }

    fn complete<'a>(
        &'a self,
        claim: &'a Claim,
        response: &'a StoredResponse,
        now: OffsetDateTime,
        retention: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            Ok(DynamoDbIdempotencyStore::complete(self, claim, response, now, retention).await?)
        })
    }

    fn release<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(DynamoDbIdempotencyStore::release(self, claim).await?) })
    }

    fn discard<'a>(&'a self, claim: &'a Claim) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { Ok(DynamoDbIdempotencyStore::discard(self, claim).await?) })
    }
}

impl SuppressionCheck for DynamoDbSuppressionList {
    fn check<'a>(
        &'a self,
        addresses: &'a [EmailAddress],
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<HashMap<EmailAddress, Suppression>, StoreError>> {
        Box::pin(async move { Ok(DynamoDbSuppressionList::check(self, addresses, now).await?) })
    }

    fn check_topic<'a>(
        &'a self,
        addresses: &'a [EmailAddress],
        topic: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<HashMap<EmailAddress, Suppression>, StoreError>> {
        Box::pin(async move {
            Ok(DynamoDbSuppressionList::check_in(self, addresses, Some(topic), now).await?)
        })
    }
}

impl SendControls for DynamoDbSendControls {
    fn bulk_paused(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move { Ok(DynamoDbSendControls::bulk_paused(self).await?) })
    }

    fn bulk_paused_for<'a>(
        &'a self,
        sending_domain: &'a str,
        provider: Option<ProviderId>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            Ok(DynamoDbSendControls::guardrail_paused(self, sending_domain, provider).await?)
        })
    }
}

impl SendQueue for SqsSendQueue {
    fn enqueue<'a>(
        &'a self,
        id: &'a MessageId,
        delay: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SqsSendQueue::enqueue(self, id, delay))
    }

    fn enqueue_all<'a>(&'a self, ids: &'a [MessageId]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(SqsSendQueue::enqueue_all(self, ids))
    }
}

impl ProviderHealth for DynamoDbProviderHealth {
    fn admit(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Admission, StoreError>> {
        Box::pin(async move { Ok(DynamoDbProviderHealth::admit(self, provider, now).await?) })
    }

    fn record_success(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<CircuitStatus, StoreError>> {
        Box::pin(async move {
            Ok(DynamoDbProviderHealth::record_success(self, provider, now)
                .await?
                .status)
        })
    }

    fn record_failure(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<CircuitStatus, StoreError>> {
        Box::pin(async move {
            Ok(DynamoDbProviderHealth::record_failure(self, provider, now)
                .await?
                .status)
        })
    }

    fn take_token(
        &self,
        provider: ProviderId,
        now: OffsetDateTime,
    ) -> BoxFuture<'_, Result<Result<(), TakeDenied>, StoreError>> {
        Box::pin(async move { Ok(DynamoDbProviderHealth::take_token(self, provider, now).await?) })
    }
}
