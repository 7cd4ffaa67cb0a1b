//! The ports of inbound email: object storage for raw messages and attachments (with
//! short-lived download links), and the records of received messages with their dedupe keys.

use std::time::Duration;

use super::{BoxFuture, StoreError};
use crate::inbound::{InboundPage, InboundQuery};
use crate::{InboundId, InboundMessage};

/// Object storage for received mail: raw MIME and attachment bytes, encrypted at rest, expiring
/// by the bucket's lifecycle (`INBOUND_RETENTION_DAYS`).
pub trait InboundObjects: InboundDownloads {
    /// Stores `bytes` under `key` with `content_type`, replacing any object there (keys are
    /// derived from our ids, so a retry writes the same bytes again).
    fn put<'a>(
        &'a self,
        key: &'a str,
        content_type: &'a str,
        bytes: &'a [u8],
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The bytes under `key`; `None` when there is no such object (expired or never stored).
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, StoreError>>;
}

/// Links to stored raw messages and attachments: all the read API needs of the objects (so
/// `send-api` signs links without an object store client).
pub trait InboundDownloads: Send + Sync {
    /// A link that downloads `key` without credentials until `valid_for` has passed.
    fn download_link<'a>(
        &'a self,
        key: &'a str,
        valid_for: Duration,
    ) -> BoxFuture<'a, Result<String, StoreError>>;
}

/// How recording a newly received message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundRecorded {
    /// A new record.
    New,
    /// One of its dedupe keys is already recorded, for this message: nothing was written.
    Duplicate(InboundId),
}

/// The records of received messages.
pub trait InboundRecords: Send + Sync {
    /// Records `message` under every one of `dedupe_keys` at once, unless one of them is taken
    /// (then nothing is written and the holder is reported).
    fn record<'a>(
        &'a self,
        message: &'a InboundMessage,
        dedupe_keys: &'a [String],
    ) -> BoxFuture<'a, Result<InboundRecorded, StoreError>>;

    /// Replaces the stored record (after parsing) with `message`.
    fn update<'a>(&'a self, message: &'a InboundMessage) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The record of `id`, if any.
    fn get<'a>(
        &'a self,
        id: &'a InboundId,
    ) -> BoxFuture<'a, Result<Option<InboundMessage>, StoreError>>;

    /// One page of records, newest first, read through the index `query` names (never a scan).
    fn list<'a>(
        &'a self,
        query: &'a InboundQuery,
    ) -> BoxFuture<'a, Result<InboundPage, StoreError>>;
}
