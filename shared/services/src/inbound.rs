//! Inbound email: receive a verified message from a source (raw MIME stored before anything is
//! acknowledged, the record written once per dedupe key, a parse request queued), then parse it
//! asynchronously (attachments stored, the record completed or kept as `parse_failed`).
//!
//! | step     | outcome                                   | the source is answered / the queue message |
//! |----------|-------------------------------------------|--------------------------------------------|
//! | receive  | raw stored, record new, parse queued      | 200 `received`                             |
//! | receive_stored | (raw already in the bucket: SES) record new, parse queued | 200             |
//! | receive  | a dedupe key is taken                     | 200 `duplicate` (nothing queued again)     |
//! | receive  | storing or queueing failed                | 5xx: the source retries (raw rewritten under a new id; the lifecycle expires the orphan) |
//! | process  | parsed, attachments stored                | done                                       |
//! | process  | malformed MIME                            | done, record `parse_failed`, raw kept      |
//! | process  | already past `received`                   | done (a redelivered queue message)         |
//! | process  | no record, or no raw object               | poison: parked, never retried              |
//! | process  | a store failed                            | retried by the queue                       |
//! | process  | parsed or `parse_failed`, hand-off wired  | `email.received` to the app endpoints (again on a redelivery: same `webhook-id`) |
//!
//! [`InboundReads`] serves the read API: listings through the table's indexes, one record, and
//! presigned links to the raw message and attachments ([`DOWNLOAD_LINK_TTL`]).
//!
//! A record left `received` because its parse request was never queued is parsed when the
//! source retries (the retry finds the record as a duplicate and queues the request again).

use std::sync::Arc;
use std::time::Duration;

use mailgate_core::inbound::{
    DownloadLink, InboundPage, InboundQuery, ReceivedLinks, attachment_key, inbound_queue_message,
    received_event_key, received_webhook_body, thread_events,
};
use mailgate_core::ports::{
    EventsQueue, InboundDownloads, InboundObjects, InboundRecorded, InboundRecords, MessageLookup,
};
use mailgate_core::{
    Clock, DeliveryEvent, EventKind, InboundAttachment, InboundId, InboundKind, InboundMessage,
    InboundSource, InboundStatus, MessageId, StoreError, UnixMillis, parse_mime,
};

use crate::fan_out::{AppWebhookFanOut, FanOutError};

/// How long a download link (raw message, attachment) works: long enough for an app to fetch
/// what a webhook announced, short enough that a leaked link soon stops working. A fresh link
/// is one `GET /v1/inbound/{id}/raw` away.
pub const DOWNLOAD_LINK_TTL: Duration = Duration::from_secs(3600);

/// How many provider-assigned ancestor ids one message may cost a lookup each.
const MAX_PROVIDER_ANCESTORS: usize = 5;

/// The ports inbound email is written against.
#[derive(Clone)]
pub struct InboundPorts {
    /// Raw messages and attachments.
    pub objects: Arc<dyn InboundObjects>,
    /// Records and dedupe keys.
    pub records: Arc<dyn InboundRecords>,
    /// The events queue, which carries parse requests to the event processor.
    pub queue: Arc<dyn EventsQueue>,
}

/// How receiving a message went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundReceived {
    /// Stored and queued for parsing.
    Queued(InboundId),
    /// Already recorded under this id: its parse request was queued again, in case the first
    /// attempt stopped before queueing it (parsing a parsed record is a no-op).
    Duplicate(InboundId),
}

/// How processing a parse request went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundProcessed {
    /// Parsed: the record holds the summary.
    Parsed {
        /// The record.
        id: InboundId,
        /// Message, auto-reply or DSN.
        kind: InboundKind,
        /// The message of ours it answers, if threading found one.
        thread: Option<MessageId>,
        /// The events it adds to the history of the message it threads to (`replied`, or a
        /// DSN's events), for the event processor.
        events: Vec<DeliveryEvent>,
    },
    /// Not readable MIME: kept as `parse_failed` with its raw message.
    ParseFailed(InboundId),
    /// Already processed (a redelivered request). The DSN events are given again: applying
    /// them is idempotent, and a retry after they failed to apply must still apply them.
    AlreadyDone {
        /// The record.
        id: InboundId,
        /// As for [`InboundProcessed::Parsed`].
        events: Vec<DeliveryEvent>,
    },
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// A store or the queue failed; retrying may succeed when [`StoreError::is_retryable`].
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The parse request names no record: nothing to retry.
    #[error("no inbound record {0}")]
    UnknownRecord(InboundId),
    /// The record's raw message is gone (expired): nothing to retry.
    #[error("the raw message of {0} is missing")]
    RawMissing(InboundId),
    /// The `email.received` deliveries could not be enqueued.
    #[error(transparent)]
    HandOff(#[from] FanOutError),
}

impl InboundError {
    /// Whether the queue message should be parked rather than retried.
    pub fn is_poison(&self) -> bool {
        match self {
            Self::Store(e) => !e.is_retryable(),
            Self::UnknownRecord(_) | Self::RawMissing(_) => true,
            Self::HandOff(FanOutError::Endpoints(e) | FanOutError::Queue(e)) => !e.is_retryable(),
        }
    }
}

/// Where parsed messages are handed to the team's app (`email.received`).
#[derive(Clone)]
struct HandOff {
    fan_out: Arc<AppWebhookFanOut>,
    clock: Arc<dyn Clock>,
}

/// Receiving and parsing inbound email.
#[derive(Clone)]
pub struct Inbound {
    ports: InboundPorts,
    hand_off: Option<HandOff>,
    replies: Option<mailgate_core::ReplyAddresses>,
    messages: Option<Arc<dyn MessageLookup>>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound").finish_non_exhaustive()
    }
}

impl Inbound {
    /// The service on `ports`.
    pub fn new(ports: InboundPorts) -> Self {
        Self {
            ports,
            hand_off: None,
            replies: None,
            messages: None,
        }
    }

    /// The same service threading a message sent to one of our reply addresses
    /// (`reply+<token>@<INBOUND_DOMAIN>`, `"track_replies": true`) to the message it names.
    pub fn with_reply_addresses(mut self, replies: Option<mailgate_core::ReplyAddresses>) -> Self {
        self.replies = replies;
        self
    }

    /// The same service threading a reply by a provider-assigned `Message-ID` among its
    /// ancestors (SES replaces ours on every send): `messages` finds the message we recorded
    /// under that provider message id.
    pub fn with_message_lookup(mut self, messages: Arc<dyn MessageLookup>) -> Self {
        self.messages = Some(messages);
        self
    }

    /// The message of ours whose provider message id one of `ids` (provider-assigned
    /// `Message-ID`s, nearest first) names; `None` without a lookup or a match.
    async fn provider_id_thread(
        &self,
        ids: &[(mailgate_core::ProviderId, &str)],
    ) -> Result<Option<MessageId>, StoreError> {
        let Some(messages) = &self.messages else {
            return Ok(None);
        };
        // A reply names at most a few ancestors from us; a long References chain is bounded.
        for (provider, provider_message_id) in ids.iter().take(MAX_PROVIDER_ANCESTORS) {
            if let Some(ours) = messages
                .find_by_provider_message_id(*provider, provider_message_id)
                .await?
            {
                return Ok(Some(ours));
            }
        }
        Ok(None)
    }

    /// The message of ours a reply address among the envelope recipient, `To` and `Cc` names:
    /// signed by us, so it wins over the `In-Reply-To`/`References` a sender can write freely.
    fn reply_address_thread(
        &self,
        record: &InboundMessage,
        mail: &mailgate_core::ParsedMail,
    ) -> Option<MessageId> {
        let replies = self.replies.as_ref()?;
        std::iter::once(record.recipient.as_str())
            .chain(mail.to.iter().chain(&mail.cc).map(|a| a.address.as_str()))
            .find_map(|address| replies.message_of(address))
    }

    /// The same service announcing every processed message to the app endpoints through
    /// `fan_out` as `email.received`, its links signed at `clock`'s time.
    pub fn with_hand_off(mut self, fan_out: Arc<AppWebhookFanOut>, clock: Arc<dyn Clock>) -> Self {
        self.hand_off = Some(HandOff { fan_out, clock });
        self
    }

    /// Sends `email.received` for a processed record, when a hand-off is wired.
    async fn announce(&self, record: &InboundMessage) -> Result<(), InboundError> {
        let Some(hand_off) = &self.hand_off else {
            return Ok(());
        };
        let now = UnixMillis::from_datetime(hand_off.clock.now());
        let links = received_links(self.ports.objects.as_ref(), record, now).await?;
        hand_off
            .fan_out
            .fan_out_body(
                EventKind::Received,
                &received_event_key(record),
                &received_webhook_body(record, &links),
            )
            .await?;
        Ok(())
    }

    /// Stores a verified message's raw MIME, records it once and queues its parsing. Only an
    /// `Ok` may be acknowledged to the source.
    pub async fn receive(
        &self,
        raw: &[u8],
        source: &InboundSource,
        clock: &dyn Clock,
    ) -> Result<InboundReceived, InboundError> {
        let id = InboundId::generate();
        let record = InboundMessage::received(
            id.clone(),
            source,
            UnixMillis::from_datetime(clock.now()),
            raw.len() as u64,
        );
        // The raw bytes first: a record never points at a raw message that is not there.
        self.ports
            .objects
            .put(&record.raw_key, "message/rfc822", raw)
            .await?;
        self.record_and_queue(&record, source).await
    }

    /// Records a message whose raw MIME a source already stored under `raw_key` in the inbound
    /// bucket (SES receiving), once, and queues its parsing. Only an `Ok` may be acknowledged.
    pub async fn receive_stored(
        &self,
        raw_key: &str,
        source: &InboundSource,
        clock: &dyn Clock,
    ) -> Result<InboundReceived, InboundError> {
        let id = InboundId::generate();
        let mut record = InboundMessage::received(
            id.clone(),
            source,
            UnixMillis::from_datetime(clock.now()),
            0,
        );
        raw_key.clone_into(&mut record.raw_key);
        self.record_and_queue(&record, source).await
    }

    async fn record_and_queue(
        &self,
        record: &InboundMessage,
        source: &InboundSource,
    ) -> Result<InboundReceived, InboundError> {
        let outcome = match self
            .ports
            .records
            .record(record, &source.dedupe_keys())
            .await?
        {
            InboundRecorded::New => InboundReceived::Queued(record.id.clone()),
            InboundRecorded::Duplicate(holder) => InboundReceived::Duplicate(holder),
        };
        let queued = match &outcome {
            InboundReceived::Queued(id) | InboundReceived::Duplicate(id) => id,
        };
        self.ports
            .queue
            .enqueue(&[inbound_queue_message(queued)])
            .await?;
        Ok(outcome)
    }

    /// Parses a received message: attachments to object storage, the summary and thread onto
    /// the record; malformed MIME is recorded as `parse_failed` and its raw message kept.
    pub async fn process(&self, id: &InboundId) -> Result<InboundProcessed, InboundError> {
        let record = self
            .ports
            .records
            .get(id)
            .await?
            .ok_or_else(|| InboundError::UnknownRecord(id.clone()))?;
        if record.status != InboundStatus::Received {
            // The announcement may not have gone out before the redelivery: again, same id.
            self.announce(&record).await?;
            return Ok(InboundProcessed::AlreadyDone {
                id: id.clone(),
                events: thread_events(&record),
            });
        }
        let raw = self
            .ports
            .objects
            .get(&record.raw_key)
            .await?
            .ok_or_else(|| InboundError::RawMissing(id.clone()))?;
        // A source that stored the raw message itself (SES) did not say how large it is.
        let mut record = record;
        record.raw_size = raw.len() as u64;
        let mut mail = match parse_mime(&raw) {
            Ok(mail) => mail,
            Err(malformed) => {
                tracing::warn!(inbound = %id, reason = malformed.code(), "inbound message is not readable MIME; kept as parse_failed");
                let failed = record.parse_failed(&malformed);
                self.ports.records.update(&failed).await?;
                self.announce(&failed).await?;
                return Ok(InboundProcessed::ParseFailed(id.clone()));
            }
        };
        for attachment in &mail.attachments {
            self.ports
                .objects
                .put(
                    &attachment_key(id, attachment.meta.index),
                    &attachment.meta.content_type,
                    &attachment.content,
                )
                .await?;
        }
        // A DSN is about the message it returns; anything else threads by its ancestors: a
        // signed reply address first, then our own `Message-ID`, then one a provider assigned.
        let thread = match (&mail.kind, &mail.dsn) {
            (InboundKind::Dsn, Some(dsn)) => match &dsn.original {
                Some(ours) => Some(ours.clone()),
                None => {
                    let assigned: Vec<_> = dsn
                        .original_message_id
                        .as_deref()
                        .and_then(mailgate_core::provider_assigned_id)
                        .into_iter()
                        .collect();
                    let found = self.provider_id_thread(&assigned).await?;
                    if let Some(dsn) = mail.dsn.as_mut() {
                        // The report's bounce events name the original by this field.
                        dsn.original.clone_from(&found);
                    }
                    found
                }
            },
            _ => match self
                .reply_address_thread(&record, &mail)
                .or_else(|| mail.our_message_ids().into_iter().next())
            {
                Some(ours) => Some(ours),
                None => self.provider_id_thread(&mail.provider_ancestors()).await?,
            },
        };
        let kind = mail.kind;
        let parsed = record.parsed(&mail, thread.clone());
        self.ports.records.update(&parsed).await?;
        self.announce(&parsed).await?;
        Ok(InboundProcessed::Parsed {
            id: id.clone(),
            kind,
            thread,
            events: thread_events(&parsed),
        })
    }
}

/// A presigned link to `key`, valid for [`DOWNLOAD_LINK_TTL`] from `now`.
async fn link(
    objects: &dyn InboundDownloads,
    key: &str,
    now: UnixMillis,
) -> Result<DownloadLink, StoreError> {
    Ok(DownloadLink {
        url: objects.download_link(key, DOWNLOAD_LINK_TTL).await?,
        expires_at: now.saturating_add(DOWNLOAD_LINK_TTL),
    })
}

/// The links of a record: its raw message and each attachment.
async fn received_links(
    objects: &dyn InboundDownloads,
    record: &InboundMessage,
    now: UnixMillis,
) -> Result<ReceivedLinks, StoreError> {
    let raw = link(objects, &record.raw_key, now).await?;
    let mut attachments = Vec::new();
    for a in record.summary.iter().flat_map(|s| &s.attachments) {
        attachments.push(link(objects, &attachment_key(&record.id, a.index), now).await?);
    }
    Ok(ReceivedLinks { raw, attachments })
}

/// Reading received mail for the API: listings, records and download links.
#[derive(Clone)]
pub struct InboundReads {
    objects: Arc<dyn InboundDownloads>,
    records: Arc<dyn InboundRecords>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for InboundReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundReads").finish_non_exhaustive()
    }
}

impl InboundReads {
    /// Reads over `records`, links to `objects`, expiry times from `clock`.
    pub fn new(
        objects: Arc<dyn InboundDownloads>,
        records: Arc<dyn InboundRecords>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            objects,
            records,
            clock,
        }
    }

    fn now(&self) -> UnixMillis {
        UnixMillis::from_datetime(self.clock.now())
    }

    /// One page of a listing.
    pub async fn list(&self, query: &InboundQuery) -> Result<InboundPage, StoreError> {
        self.records.list(query).await
    }

    /// One record.
    pub async fn get(&self, id: &InboundId) -> Result<Option<InboundMessage>, StoreError> {
        self.records.get(id).await
    }

    /// A link to the raw message of `id`, if there is such a record.
    pub async fn raw_link(&self, id: &InboundId) -> Result<Option<DownloadLink>, StoreError> {
        let Some(record) = self.records.get(id).await? else {
            return Ok(None);
        };
        Ok(Some(
            link(self.objects.as_ref(), &record.raw_key, self.now()).await?,
        ))
    }

    /// Attachment `index` of `id` with a link to its bytes, if both exist.
    pub async fn attachment_link(
        &self,
        id: &InboundId,
        index: u32,
    ) -> Result<Option<(InboundAttachment, DownloadLink)>, StoreError> {
        let Some(record) = self.records.get(id).await? else {
            return Ok(None);
        };
        let Some(attachment) = record
            .summary
            .iter()
            .flat_map(|s| &s.attachments)
            .find(|a| a.index == index)
            .cloned()
        else {
            return Ok(None);
        };
        let link = link(
            self.objects.as_ref(),
            &attachment_key(id, index),
            self.now(),
        )
        .await?;
        Ok(Some((attachment, link)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{MemoryEventsQueue, MemoryInboundObjects, MemoryInboundRecords};
    use mailgate_core::inbound::{inbound_of_queue_message, raw_key};
    use mailgate_core::{AuthVerdicts, FixedClock, ProviderId, StoreErrorKind};
    use time::macros::datetime;

    struct Harness {
        objects: Arc<MemoryInboundObjects>,
        records: Arc<MemoryInboundRecords>,
        queue: Arc<MemoryEventsQueue>,
        inbound: Inbound,
        clock: FixedClock,
    }

    fn harness() -> Harness {
        let objects = Arc::new(MemoryInboundObjects::default());
        let records = Arc::new(MemoryInboundRecords::default());
        let queue = Arc::new(MemoryEventsQueue::default());
        let inbound = Inbound::new(InboundPorts {
            objects: objects.clone(),
            records: records.clone(),
            queue: queue.clone(),
        });
        Harness {
            objects,
            records,
            queue,
            inbound,
            clock: FixedClock::new(datetime!(2026-12-04 10:00 UTC)),
        }
    }

    fn source(source_id: &str) -> InboundSource {
        InboundSource {
            provider: ProviderId::Postmark,
            source_id: source_id.into(),
            recipient: "support@example.com".into(),
            message_id: Some("<reply-1@example.org>".into()),
            auth: AuthVerdicts::default(),
        }
    }

    const REPLY: &[u8] = b"From: Ana <ana@example.org>\r\nTo: support@example.com\r\nSubject: Re: order\r\nMessage-ID: <reply-1@example.org>\r\nIn-Reply-To: <msg_0123456789abcdefghjkmnpqrs@example.com>\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nthanks\r\n--b\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n";

    fn queued_ids(queue: &MemoryEventsQueue) -> Vec<InboundId> {
        queue
            .messages()
            .iter()
            .filter_map(|m| inbound_of_queue_message(m))
            .collect()
    }

    #[tokio::test]
    async fn a_received_message_is_stored_raw_recorded_and_queued_then_parsed() {
        let h = harness();
        let received = h
            .inbound
            .receive(REPLY, &source("pm-1"), &h.clock)
            .await
            .unwrap();
        let InboundReceived::Queued(id) = received else {
            panic!("expected a new message, got {received:?}")
        };
        assert_eq!(h.objects.object(&raw_key(&id)).unwrap().1, REPLY);
        assert_eq!(queued_ids(&h.queue), std::slice::from_ref(&id));
        let record = h.records.get(&id).await.unwrap().unwrap();
        assert_eq!(record.status, InboundStatus::Received);
        assert_eq!(record.raw_size, REPLY.len() as u64);

        let processed = h.inbound.process(&id).await.unwrap();
        let ours = MessageId::parse("msg_0123456789abcdefghjkmnpqrs").unwrap();
        let InboundProcessed::Parsed {
            id: parsed_id,
            kind,
            thread,
            events,
        } = processed
        else {
            panic!("expected a parsed message, got {processed:?}")
        };
        assert_eq!(parsed_id, id);
        assert_eq!(kind, InboundKind::Message);
        assert_eq!(thread, Some(ours.clone()));
        // A human reply adds `replied` to the history of the message it answers.
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, mailgate_core::EventKind::Replied);
        assert_eq!(events[0].message_id, Some(ours.clone()));
        let record = h.records.get(&id).await.unwrap().unwrap();
        assert_eq!(record.status, InboundStatus::Parsed);
        assert_eq!(record.thread, Some(ours));
        let summary = record.summary.unwrap();
        assert_eq!(summary.attachments.len(), 1);
        assert_eq!(summary.attachments[0].size, 9);
        let (content_type, bytes) = h.objects.object(&attachment_key(&id, 0)).unwrap();
        assert_eq!(content_type, "application/pdf");
        assert_eq!(bytes, b"%PDF-1.4\n");

        // A redelivered parse request changes nothing and gives the same events (applied once
        // by their keys).
        assert_eq!(
            h.inbound.process(&id).await.unwrap(),
            InboundProcessed::AlreadyDone { id, events }
        );
    }

    #[tokio::test]
    async fn a_message_stored_by_its_source_is_recorded_at_its_key_and_parsed_from_there() {
        let h = harness();
        h.objects
            .put("ses/abc", "message/rfc822", REPLY)
            .await
            .unwrap();
        let mut src = source("ses-abc");
        src.provider = ProviderId::Ses;
        let InboundReceived::Queued(id) = h
            .inbound
            .receive_stored("ses/abc", &src, &h.clock)
            .await
            .unwrap()
        else {
            panic!("expected a new message")
        };
        // Nothing written beside the source's object.
        assert_eq!(h.objects.len(), 1);
        assert_eq!(
            h.records.get(&id).await.unwrap().unwrap().raw_key,
            "ses/abc"
        );
        assert!(matches!(
            h.inbound.process(&id).await.unwrap(),
            InboundProcessed::Parsed { .. }
        ));
        let record = h.records.get(&id).await.unwrap().unwrap();
        assert_eq!(record.raw_size, REPLY.len() as u64);
        assert_eq!(
            h.inbound
                .receive_stored("ses/abc", &src, &h.clock)
                .await
                .unwrap(),
            InboundReceived::Duplicate(id)
        );
    }

    #[tokio::test]
    async fn a_redelivery_is_recorded_once_and_its_parse_request_queued_again() {
        let h = harness();
        let first = h
            .inbound
            .receive(REPLY, &source("pm-1"), &h.clock)
            .await
            .unwrap();
        let again = h
            .inbound
            .receive(REPLY, &source("pm-1"), &h.clock)
            .await
            .unwrap();
        let InboundReceived::Queued(id) = first else {
            panic!("{first:?}")
        };
        assert_eq!(again, InboundReceived::Duplicate(id.clone()));
        assert_eq!(h.records.all().len(), 1);
        assert_eq!(queued_ids(&h.queue), [id.clone(), id]);
    }

    #[tokio::test]
    async fn a_failed_raw_write_records_nothing_and_is_not_acknowledged() {
        let h = harness();
        h.objects.faults.fail_next("put", StoreErrorKind::Transient);
        let err = h
            .inbound
            .receive(REPLY, &source("pm-1"), &h.clock)
            .await
            .unwrap_err();
        assert!(!err.is_poison());
        assert!(h.records.all().is_empty());
        assert!(h.queue.messages().is_empty());
    }

    #[tokio::test]
    async fn a_failed_enqueue_is_not_acknowledged_and_the_retry_queues_the_same_record() {
        let h = harness();
        h.queue
            .faults
            .fail_next("enqueue", StoreErrorKind::Transient);
        assert!(
            h.inbound
                .receive(REPLY, &source("pm-1"), &h.clock)
                .await
                .is_err()
        );
        let stored = h.records.all();
        assert_eq!(stored.len(), 1);
        let retry = h
            .inbound
            .receive(REPLY, &source("pm-1"), &h.clock)
            .await
            .unwrap();
        assert_eq!(retry, InboundReceived::Duplicate(stored[0].id.clone()));
        assert_eq!(queued_ids(&h.queue), [stored[0].id.clone()]);
    }

    #[tokio::test]
    async fn malformed_mime_is_kept_as_parse_failed_with_its_raw_message() {
        let h = harness();
        let raw = b"\x00\x01 not a message";
        let InboundReceived::Queued(id) = h
            .inbound
            .receive(raw, &source("pm-9"), &h.clock)
            .await
            .unwrap()
        else {
            panic!("expected a new message")
        };
        assert_eq!(
            h.inbound.process(&id).await.unwrap(),
            InboundProcessed::ParseFailed(id.clone())
        );
        let record = h.records.get(&id).await.unwrap().unwrap();
        assert_eq!(record.status, InboundStatus::ParseFailed);
        assert_eq!(record.parse_error.as_deref(), Some("not_a_message"));
        assert_eq!(h.objects.object(&record.raw_key).unwrap().1, raw);
    }

    #[tokio::test]
    async fn a_dsn_threads_to_the_message_it_returns() {
        let h = harness();
        let dsn = b"From: MAILER-DAEMON@mx.example.net\r\nTo: events@example.com\r\nSubject: Undelivered\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n--r\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <msg_0123456789abcdefghjkmnpqrs@example.com>\r\n\r\n--r--\r\n";
        let mut src = source("pm-dsn");
        src.message_id = None;
        let InboundReceived::Queued(id) = h.inbound.receive(dsn, &src, &h.clock).await.unwrap()
        else {
            panic!("expected a new message")
        };
        let InboundProcessed::Parsed {
            kind,
            thread,
            events,
            ..
        } = h.inbound.process(&id).await.unwrap()
        else {
            panic!("expected a parsed DSN")
        };
        assert_eq!(kind, InboundKind::Dsn);
        let ours = MessageId::parse("msg_0123456789abcdefghjkmnpqrs").unwrap();
        assert_eq!(thread, Some(ours.clone()));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].message_id, Some(ours));
        // A redelivered request gives the same events again (applied once by their keys).
        let InboundProcessed::AlreadyDone { events: again, .. } =
            h.inbound.process(&id).await.unwrap()
        else {
            panic!("expected the record to be done")
        };
        assert_eq!(again, events);
    }

    #[tokio::test]
    async fn an_unknown_record_or_a_missing_raw_message_is_poison_and_a_store_fault_retries() {
        let h = harness();
        let err = h.inbound.process(&InboundId::generate()).await.unwrap_err();
        assert!(matches!(err, InboundError::UnknownRecord(_)));
        assert!(err.is_poison());

        let InboundReceived::Queued(id) = h
            .inbound
            .receive(REPLY, &source("pm-1"), &h.clock)
            .await
            .unwrap()
        else {
            panic!("expected a new message")
        };
        h.records
            .faults
            .fail_next("update", StoreErrorKind::Throttled);
        let err = h.inbound.process(&id).await.unwrap_err();
        assert!(!err.is_poison());
        // Nothing half-done: the retry parses it.
        assert!(matches!(
            h.inbound.process(&id).await.unwrap(),
            InboundProcessed::Parsed { .. }
        ));

        let orphan =
            InboundMessage::received(InboundId::generate(), &source("pm-2"), UnixMillis(1), 1);
        h.records.record(&orphan, &[]).await.unwrap();
        let err = h.inbound.process(&orphan.id).await.unwrap_err();
        assert!(matches!(err, InboundError::RawMissing(_)));
        assert!(err.is_poison());
    }

    #[tokio::test]
    async fn a_processed_message_is_announced_as_email_received_once_per_id_even_when_redelivered()
    {
        use crate::testing::{MemoryEndpoints, MemoryOutbound};
        use mailgate_core::{Endpoint, EndpointFilter, EndpointUrl};
        let h = harness();
        let endpoints = Arc::new(MemoryEndpoints::default());
        let (wants_received, _) = Endpoint::new(
            EndpointUrl::parse("https://app.example.com/hook").unwrap(),
            EndpointFilter::parse_list("email.received").unwrap(),
            UnixMillis(0),
        );
        let (bounces_only, _) = Endpoint::new(
            EndpointUrl::parse("https://app.example.com/bounces").unwrap(),
            EndpointFilter::parse_list("email.bounced").unwrap(),
            UnixMillis(0),
        );
        endpoints
            .endpoints
            .lock()
            .unwrap()
            .extend([wants_received.clone(), bounces_only]);
        let outbound = Arc::new(MemoryOutbound::default());
        let inbound = h.inbound.clone().with_hand_off(
            Arc::new(AppWebhookFanOut::new(endpoints, outbound.clone())),
            Arc::new(FixedClock::new(datetime!(2026-12-04 10:00 UTC))),
        );
        let InboundReceived::Queued(id) = inbound
            .receive(REPLY, &source("pm-1"), &h.clock)
            .await
            .unwrap()
        else {
            panic!("expected a new message")
        };
        inbound.process(&id).await.unwrap();
        let deliveries = outbound.deliveries.lock().unwrap().clone();
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0].endpoint_id, wants_received.id);
        let body: serde_json::Value = serde_json::from_str(&deliveries[0].body).unwrap();
        assert_eq!(body["type"], "email.received");
        assert_eq!(body["data"]["id"], id.as_str());
        assert_eq!(body["data"]["thread"], "msg_0123456789abcdefghjkmnpqrs");
        assert_eq!(body["data"]["text"].as_str().map(str::trim), Some("thanks"));
        assert!(
            body["data"]["raw_url"]
                .as_str()
                .unwrap()
                .contains(&raw_key(&id))
        );
        assert!(
            body["data"]["attachments"][0]["url"]
                .as_str()
                .unwrap()
                .contains(&attachment_key(&id, 0))
        );
        assert_eq!(body["data"]["links_expire_at"], "2026-12-04T11:00:00Z");

        // A redelivered parse request announces again under the same webhook-id.
        inbound.process(&id).await.unwrap();
        let deliveries = outbound.deliveries.lock().unwrap().clone();
        assert_eq!(deliveries.len(), 2);
        assert_eq!(deliveries[0].webhook_id, deliveries[1].webhook_id);

        // A failed enqueue leaves the request for a retry (not poison).
        outbound
            .faults
            .fail_next("enqueue", StoreErrorKind::Transient);
        let err = inbound.process(&id).await.unwrap_err();
        assert!(matches!(err, InboundError::HandOff(_)));
        assert!(!err.is_poison());
    }

    #[tokio::test]
    async fn reads_list_by_thread_and_recipient_page_by_cursor_and_link_raw_and_attachments() {
        use mailgate_core::inbound::{InboundListing, InboundQuery};
        let h = harness();
        let mut ids = Vec::new();
        for (n, at) in [(1, 10), (2, 20), (3, 30)] {
            let clock =
                FixedClock::new(datetime!(2026-12-04 10:00 UTC) + time::Duration::minutes(at));
            let InboundReceived::Queued(id) = h
                .inbound
                .receive(
                    REPLY,
                    &{
                        let mut s = source(&format!("pm-{n}"));
                        s.message_id = None;
                        s
                    },
                    &clock,
                )
                .await
                .unwrap()
            else {
                panic!("expected a new message")
            };
            h.inbound.process(&id).await.unwrap();
            ids.push(id);
        }
        let reads = InboundReads::new(
            h.objects.clone(),
            h.records.clone(),
            Arc::new(FixedClock::new(datetime!(2026-12-04 10:00 UTC))),
        );
        let thread = MessageId::parse("msg_0123456789abcdefghjkmnpqrs").unwrap();
        let mut query = InboundQuery {
            listing: InboundListing::Thread {
                thread,
                recipient: Some("support@example.com".into()),
            },
            after: None,
            before: None,
            limit: 2,
            cursor: None,
        };
        let first = reads.list(&query).await.unwrap();
        assert_eq!(
            first.items.iter().map(|r| r.id.clone()).collect::<Vec<_>>(),
            [ids[2].clone(), ids[1].clone()]
        );
        query.cursor = first.next_cursor;
        let second = reads.list(&query).await.unwrap();
        assert_eq!(second.items.len(), 1);
        assert_eq!(second.items[0].id, ids[0]);
        assert_eq!(second.next_cursor, None);

        let raw = reads.raw_link(&ids[0]).await.unwrap().unwrap();
        assert!(raw.url.contains(&raw_key(&ids[0])));
        let (attachment, link) = reads.attachment_link(&ids[0], 0).await.unwrap().unwrap();
        assert_eq!(attachment.content_type, "application/pdf");
        assert!(link.url.contains(&attachment_key(&ids[0], 0)));
        assert_eq!(reads.attachment_link(&ids[0], 7).await.unwrap(), None);
        assert_eq!(reads.raw_link(&InboundId::generate()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_reply_to_a_signed_reply_address_threads_to_its_message_and_a_forged_one_does_not() {
        let keys =
            mailgate_core::UnsubscribeKeys::parse("reply-test-key-0123456789abcdefghijklmnop")
                .unwrap();
        let replies = mailgate_core::ReplyAddresses::new("in.example.com", keys);
        let h = harness();
        let inbound = h
            .inbound
            .clone()
            .with_reply_addresses(Some(replies.clone()));
        let ours = MessageId::parse("msg_zzzzzzzzzzzzzzzzzzzzzzzzzz").unwrap();
        let address = replies.address(&ours);
        // No In-Reply-To at all: the address alone threads it.
        let raw = format!(
            "From: ana@example.org\r\nTo: {address}\r\nSubject: Re: hi\r\nMessage-ID: <r1@example.org>\r\n\r\nthanks\r\n"
        );
        let mut src = source("pm-reply-addr");
        src.recipient = address.clone();
        let InboundReceived::Queued(id) = inbound
            .receive(raw.as_bytes(), &src, &h.clock)
            .await
            .unwrap()
        else {
            panic!("expected a new message")
        };
        let InboundProcessed::Parsed { thread, events, .. } = inbound.process(&id).await.unwrap()
        else {
            panic!("expected a parsed message")
        };
        assert_eq!(thread, Some(ours.clone()));
        assert_eq!(events[0].message_id, Some(ours.clone()));

        // A token edited to name another message threads nowhere.
        let other = MessageId::parse("msg_0123456789abcdefghjkmnpqrs").unwrap();
        let forged = address.replace(&ours.as_str()[4..], &other.as_str()[4..]);
        let raw =
            format!("From: eve@example.org\r\nTo: {forged}\r\nSubject: Re: hi\r\n\r\nhello\r\n");
        let mut src = source("pm-forged");
        src.recipient = forged;
        src.message_id = None;
        let InboundReceived::Queued(id) = inbound
            .receive(raw.as_bytes(), &src, &h.clock)
            .await
            .unwrap()
        else {
            panic!("expected a new message")
        };
        let InboundProcessed::Parsed { thread, .. } = inbound.process(&id).await.unwrap() else {
            panic!("expected a parsed message")
        };
        assert_eq!(thread, None);
    }

    /// The `MessageId` SES returned for a send, and so the local part of the `Message-ID` it
    /// gave the delivered mail.
    const SES_ID: &str = "0100019a7e4c2b1f-3d0c5a8e-1b2c-4d5e-8f90-123456789abc-000000";

    /// A lookup knowing one message of ours, sent through SES as [`SES_ID`].
    fn sent_through_ses() -> (Arc<crate::testing::MemoryMessageLookup>, MessageId) {
        use mailgate_core::{
            ApiKeyId, EmailAddress, KeyEnvironment, Mailbox, MessageRecord, MessageState,
            OutboundEmail,
        };
        let email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(EmailAddress::parse("hello@example.com").unwrap()),
            EmailAddress::parse("ana@example.org").unwrap(),
            "Your order",
        );
        let record = MessageRecord::new(
            &email,
            ApiKeyId::generate(),
            KeyEnvironment::Live,
            MessageState::Sent,
            datetime!(2026-12-04 09:00 UTC).into(),
            None,
            &[],
        );
        let lookup = Arc::new(crate::testing::MemoryMessageLookup::default());
        lookup.insert(record.clone(), ProviderId::Ses, SES_ID);
        (lookup, record.id)
    }

    async fn process_one(
        inbound: &Inbound,
        h: &Harness,
        raw: &str,
        source_id: &str,
    ) -> InboundProcessed {
        let mut src = source(source_id);
        src.message_id = None;
        let InboundReceived::Queued(id) = inbound
            .receive(raw.as_bytes(), &src, &h.clock)
            .await
            .unwrap()
        else {
            panic!("expected a new message")
        };
        inbound.process(&id).await.unwrap()
    }

    #[tokio::test]
    async fn a_reply_naming_the_message_id_ses_assigned_threads_to_the_message_sent_with_it() {
        let h = harness();
        let (lookup, ours) = sent_through_ses();
        let inbound = h.inbound.clone().with_message_lookup(lookup.clone());
        let reply = format!(
            "From: ana@example.org\r\nTo: support@example.com\r\nSubject: Re: Your order\r\n\
             In-Reply-To: <{SES_ID}@email.amazonses.com>\r\n\
             References: <older@example.org> <{SES_ID}@email.amazonses.com>\r\n\r\nthanks\r\n"
        );
        let InboundProcessed::Parsed { thread, events, .. } =
            process_one(&inbound, &h, &reply, "pm-ses-reply").await
        else {
            panic!("expected a parsed message")
        };
        assert_eq!(thread, Some(ours.clone()));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Replied);
        assert_eq!(events[0].message_id, Some(ours));

        // An SES id we never recorded threads nowhere; so does the same reply when no lookup
        // is wired.
        let stranger = reply.replace(
            SES_ID,
            "0100019a7e4c2b1f-ffffffff-0000-0000-0000-000000000000-000000",
        );
        let InboundProcessed::Parsed { thread, events, .. } =
            process_one(&inbound, &h, &stranger, "pm-ses-stranger").await
        else {
            panic!("expected a parsed message")
        };
        assert_eq!((thread, events.len()), (None, 0));
        let InboundProcessed::Parsed { thread, .. } =
            process_one(&h.inbound, &h, &reply, "pm-ses-unwired").await
        else {
            panic!("expected a parsed message")
        };
        assert_eq!(thread, None);
    }

    #[tokio::test]
    async fn a_dsn_returning_an_ses_sent_original_bounces_the_message_sent_with_it() {
        let h = harness();
        let (lookup, ours) = sent_through_ses();
        let inbound = h.inbound.clone().with_message_lookup(lookup);
        // The returned headers carry only SES's Message-ID: SES replaced ours.
        let dsn = format!(
            "From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@example.com\r\nSubject: Undelivered\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\nFinal-Recipient: rfc822; ana@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n--r\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <{SES_ID}@email.amazonses.com>\r\n\r\n--r--\r\n"
        );
        let InboundProcessed::Parsed {
            kind,
            thread,
            events,
            ..
        } = process_one(&inbound, &h, &dsn, "pm-ses-dsn").await
        else {
            panic!("expected a parsed DSN")
        };
        assert_eq!(kind, InboundKind::Dsn);
        assert_eq!(thread, Some(ours.clone()));
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, EventKind::Bounced);
        assert_eq!(events[0].message_id, Some(ours));
    }

    #[tokio::test]
    async fn a_failing_lookup_leaves_the_message_to_be_parsed_again_not_unthreaded() {
        let h = harness();
        let (lookup, ours) = sent_through_ses();
        lookup
            .faults
            .fail_next("find_by_provider_message_id", StoreErrorKind::Transient);
        let inbound = h.inbound.clone().with_message_lookup(lookup);
        let reply = format!(
            "From: ana@example.org\r\nTo: support@example.com\r\nSubject: Re: hi\r\nIn-Reply-To: <{SES_ID}@us-west-2.amazonses.com>\r\n\r\nthanks\r\n"
        );
        let mut src = source("pm-ses-retry");
        src.message_id = None;
        let InboundReceived::Queued(id) = inbound
            .receive(reply.as_bytes(), &src, &h.clock)
            .await
            .unwrap()
        else {
            panic!("expected a new message")
        };
        let error = inbound.process(&id).await.unwrap_err();
        assert!(!error.is_poison(), "{error}");
        assert_eq!(
            h.records.get(&id).await.unwrap().unwrap().status,
            InboundStatus::Received
        );
        let InboundProcessed::Parsed { thread, .. } = inbound.process(&id).await.unwrap() else {
            panic!("expected a parsed message")
        };
        assert_eq!(thread, Some(ours));
    }
}
