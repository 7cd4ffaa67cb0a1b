//! Releasing held messages onto the send queue: scheduled messages whose `send_at` is at most
//! [`LOOKAHEAD`] away (the queue's delay covers the rest of the wait), and bulk messages held
//! by the pause switch once it is off.
//!
//! **Order: enqueue first, then mark released.** A message is put on the send queue (a pointer
//! `{"v":1,"message_id":…}`) and only then moved `scheduled`/`paused` → `queued` with the
//! conditional `mark_released`. A crash or failure between the two leaves the message held and
//! due, so the next tick enqueues it again: the worker sees one or two pointers and acts on the
//! message once, ignoring pointers to messages already past `queued`, and leaving a pointer to a
//! message it finds still `scheduled`/`paused` (not yet marked) on the queue to be retried.
//! The other order could lose a message: marked `queued` but never enqueued, and no index finds
//! it again. A message cancelled between the two steps fails the conditional mark, and the
//! worker ignores its pointer because it is `cancelled`.
//!
//! A scheduled bulk message due while the pause switch is on is not released but moved to the
//! `paused#bulk` queue (`mark_paused`), where it waits for the switch to turn off.
//!
//! **Stalled messages** ([`Release::watch_stalled`]). Every `queued` or `sending` message is on
//! the `watch` release queue, due when it should have moved on. Nothing else looks at `queued`
//! or `sending`, so this job is what makes "accepted" mean "sent, or visibly not":
//!
//! | due message | what the job does |
//! |---|---|
//! | `queued` (its pointer was never enqueued, or was lost with a dead function) | next check in [`DEFERRED_CHECK_AFTER_MS`] and back on the send queue, in that order, the first step conditional on it still being queued and due, so two sweeps enqueue it once |
//! | `queued` after [`MAX_REQUEUES`] re-enqueues | `failed`, with the reason: no provider was called |
//! | `sending` with its lease lapsed (the sender died, perhaps after the provider took it) | `unknown`, with the reason: it must not be sent blindly |
//! | anything else (it moved on) | off the watch queue |

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mailgate_core::ports::{HeldMessages, ReleaseSendQueue, SendControls, StalledMessages};
use mailgate_core::queue::delay_seconds;
use mailgate_core::{
    DEFERRED_CHECK_AFTER_MS, MAX_REQUEUES, MessageCategory, MessageId, MessageState, ReleaseQueue,
    StoreError, UnixMillis,
};

/// How far ahead scheduled messages are released: the longest queue delay (15 minutes).
pub const LOOKAHEAD: Duration = Duration::from_secs(900);
/// Messages read from the release index per query.
pub const RELEASE_BATCH: i32 = 100;
/// Queries per job and tick at most, so one tick stays well inside the function's timeout.
pub const MAX_ROUNDS: usize = 10;

/// How long a paused bulk message held by a guardrail stays out of the release queue's due
/// messages before it is looked at again (so it is released at most this long after a resume).
pub const GUARDRAIL_RECHECK: Duration = Duration::from_secs(300);
/// Pointers per enqueue call (the queue's batch limit).
const BATCH_ENTRIES: usize = 10;

/// Why a release job stopped: which port failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReleaseError {
    /// The held messages could not be read or written.
    #[error("messages: {0}")]
    Messages(StoreError),
    /// The pause switch could not be read.
    #[error("controls: {0}")]
    Controls(StoreError),
    /// The send queue refused a call or entries; those messages stay held for the next tick.
    #[error("send queue: {0}")]
    SendQueue(StoreError),
}

/// What one release job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReleaseReport {
    /// Messages put on the send queue and marked `queued`.
    pub released: u64,
    /// Scheduled bulk messages moved to `paused` because the switch is on.
    pub paused: u64,
    /// Due messages that were no longer held (cancelled or released by another tick).
    pub skipped: u64,
    /// Enqueue calls made.
    pub enqueue_calls: u64,
    /// Of the released messages, how many were enqueued with a delay.
    pub delayed: u64,
    /// Paused bulk messages a guardrail on their domain still holds, put back for
    /// [`GUARDRAIL_RECHECK`] so the messages behind them are reached.
    pub held: u64,
}

/// The delay (seconds) for a message to be sent at `send_at`, released at `now`: the whole
/// seconds until then, rounded up, 0 when due, at most 900.
pub fn delay_until(send_at: Option<UnixMillis>, now: UnixMillis) -> i32 {
    send_at.map_or(0, |at| delay_seconds(at.saturating_duration_since(now)))
}

/// What one pass over the watch queue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StalledReport {
    /// `queued` messages put back on the send queue.
    pub requeued: u64,
    /// `queued` messages given up on after [`MAX_REQUEUES`] re-enqueues (now `failed`).
    pub failed: u64,
    /// `sending` messages whose lease lapsed (now `unknown`).
    pub abandoned: u64,
    /// Messages that had moved on, taken off the watch queue.
    pub cleared: u64,
    /// Due messages another sweep or a worker changed first, or whose lease is still live.
    pub skipped: u64,
}

/// The reason a stalled `sending` message is `unknown`.
pub const LAPSED_LEASE_REASON: &str = "the sending lease lapsed without an outcome: the sender stopped, perhaps after the provider took the message";

/// The release jobs on their ports.
#[derive(Clone)]
pub struct Release {
    messages: Arc<dyn HeldMessages>,
    controls: Arc<dyn SendControls>,
    queue: Arc<dyn ReleaseSendQueue>,
    stalled: Arc<dyn StalledMessages>,
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release").finish_non_exhaustive()
    }
}

impl Release {
    /// Releases from `messages` onto `queue`, reading the switch from `controls`, and
    /// changes stalled messages through `stalled`.
    pub fn new(
        messages: Arc<dyn HeldMessages>,
        controls: Arc<dyn SendControls>,
        queue: Arc<dyn ReleaseSendQueue>,
        stalled: Arc<dyn StalledMessages>,
    ) -> Self {
        Self {
            messages,
            controls,
            queue,
            stalled,
        }
    }

    /// Looks at every message on the watch queue due at `now` (see the module's table).
    pub async fn watch_stalled(&self, now: UnixMillis) -> Result<StalledReport, ReleaseError> {
        let messages = self.messages.as_ref();
        let stalled = self.stalled.as_ref();
        let failed = |e| ReleaseError::Messages(e);
        let mut report = StalledReport::default();
        let next_check = now.saturating_add_ms(DEFERRED_CHECK_AFTER_MS);
        for _ in 0..MAX_ROUNDS {
            let before = report;
            let due = messages
                .due(ReleaseQueue::Watch, now, RELEASE_BATCH)
                .await
                .map_err(failed)?;
            let mut to_send: Vec<(MessageId, Duration)> = Vec::new();
            for id in &due {
                let Some(record) = messages.record(id).await.map_err(failed)? else {
                    report.skipped += 1;
                    continue;
                };
                match record.state {
                    MessageState::Queued => {
                        match stalled
                            .renew_queued(id, now, next_check)
                            .await
                            .map_err(failed)?
                        {
                            Some(n) if n > MAX_REQUEUES => {
                                let reason = format!(
                                    "not taken from the send queue after {MAX_REQUEUES} re-enqueues; no provider was called"
                                );
                                if stalled
                                    .fail_queued(id, now, &reason)
                                    .await
                                    .map_err(failed)?
                                {
                                    tracing::error!(message_id = %id, "gave up on a queued message no worker took");
                                    report.failed += 1;
                                } else {
                                    report.skipped += 1;
                                }
                            }
                            Some(_) => to_send.push((id.clone(), Duration::ZERO)),
                            None => report.skipped += 1,
                        }
                    }
                    MessageState::Sending if record.sending_until.is_none_or(|u| u <= now) => {
                        if stalled
                            .abandon_lapsed(id, now, LAPSED_LEASE_REASON)
                            .await
                            .map_err(failed)?
                        {
                            tracing::error!(message_id = %id, "a sending lease lapsed without an outcome; marked unknown");
                            report.abandoned += 1;
                        } else {
                            report.skipped += 1;
                        }
                    }
                    MessageState::Sending => report.skipped += 1,
                    _ => {
                        if stalled.unwatch(id).await.map_err(failed)? {
                            report.cleared += 1;
                        } else {
                            report.skipped += 1;
                        }
                    }
                }
            }
            for batch in to_send.chunks(BATCH_ENTRIES) {
                // Renewed first: a failure here leaves them due again at `next_check`.
                self.queue
                    .enqueue_delayed(batch)
                    .await
                    .map_err(ReleaseError::SendQueue)?;
                report.requeued += u64::try_from(batch.len()).unwrap_or(0);
            }
            let moved = report.requeued + report.failed + report.abandoned + report.cleared
                - (before.requeued + before.failed + before.abandoned + before.cleared);
            if due.len() < usize::try_from(RELEASE_BATCH).unwrap_or(usize::MAX) || moved == 0 {
                break;
            }
        }
        Ok(report)
    }

    /// Releases scheduled messages due by `now + LOOKAHEAD`, each with the delay left until its
    /// `send_at`; scheduled bulk messages meet the pause switch here.
    pub async fn release_scheduled(&self, now: UnixMillis) -> Result<ReleaseReport, ReleaseError> {
        let bulk_paused = self.bulk_paused().await?;
        self.release(ReleaseQueue::Scheduled, now, bulk_paused)
            .await
    }

    /// Releases bulk messages held by the pause switch, when it is off (a paused message with a
    /// `send_at` still waits for it, like a scheduled one). Does nothing while it is on.
    pub async fn release_paused(&self, now: UnixMillis) -> Result<ReleaseReport, ReleaseError> {
        if self.bulk_paused().await? {
            return Ok(ReleaseReport::default());
        }
        self.release(ReleaseQueue::PausedBulk, now, false).await
    }

    async fn bulk_paused(&self) -> Result<bool, ReleaseError> {
        self.controls
            .bulk_paused()
            .await
            .map_err(ReleaseError::Controls)
    }

    async fn release(
        &self,
        queue: ReleaseQueue,
        now: UnixMillis,
        bulk_paused: bool,
    ) -> Result<ReleaseReport, ReleaseError> {
        let messages = self.messages.as_ref();
        let mut report = ReleaseReport::default();
        let horizon = now.saturating_add(LOOKAHEAD);
        // Guardrail switches per sending domain, read once per run.
        let mut guarded: HashMap<String, bool> = HashMap::new();
        for _ in 0..MAX_ROUNDS {
            let before = report.released + report.paused + report.held;
            let due = messages
                .due(queue, horizon, RELEASE_BATCH)
                .await
                .map_err(ReleaseError::Messages)?;
            let mut to_send: Vec<(MessageId, i32)> = Vec::new();
            for id in &due {
                // The index is eventually consistent and holds keys only: the record says
                // whether the message is still held, its category and its `send_at`.
                let Some(record) = messages.record(id).await.map_err(ReleaseError::Messages)?
                else {
                    report.skipped += 1;
                    continue;
                };
                // A reputation guardrail on the sender's domain holds bulk mail like the switch
                // (through any provider: the one it will use is chosen at send time).
                let guardrail = record.category == MessageCategory::Bulk && {
                    let domain = record.from.address.domain().to_lowercase();
                    match guarded.get(&domain) {
                        Some(held) => *held,
                        None => {
                            let held = self
                                .controls
                                .bulk_paused_for(&domain, None)
                                .await
                                .map_err(ReleaseError::Controls)?;
                            guarded.insert(domain, held);
                            held
                        }
                    }
                };
                if record.release_queue() != Some(queue) {
                    // Not held here any more.
                    report.skipped += 1;
                } else if queue == ReleaseQueue::PausedBulk && guardrail {
                    // Held by a guardrail that still stands: out of the due messages until its
                    // next look (past the lookahead), so it never hides the messages behind it
                    // (other domains' paused bulk) from this query.
                    let until = horizon.saturating_add(GUARDRAIL_RECHECK);
                    if messages
                        .hold_until(id, queue, until)
                        .await
                        .map_err(ReleaseError::Messages)?
                    {
                        report.held += 1;
                    } else {
                        report.skipped += 1;
                    }
                } else if (bulk_paused || guardrail)
                    && queue == ReleaseQueue::Scheduled
                    && record.category == MessageCategory::Bulk
                {
                    if messages
                        .mark_paused(id, now)
                        .await
                        .map_err(ReleaseError::Messages)?
                    {
                        report.paused += 1;
                    } else {
                        report.skipped += 1;
                    }
                } else {
                    to_send.push((id.clone(), delay_until(record.send_at, now)));
                }
            }
            for batch in to_send.chunks(BATCH_ENTRIES) {
                let pointers: Vec<(MessageId, Duration)> = batch
                    .iter()
                    .map(|(id, delay)| {
                        (
                            id.clone(),
                            Duration::from_secs(u64::try_from(*delay).unwrap_or(0)),
                        )
                    })
                    .collect();
                self.queue
                    .enqueue_delayed(&pointers)
                    .await
                    .map_err(ReleaseError::SendQueue)?;
                report.enqueue_calls += 1;
                for (id, delay) in batch {
                    if messages
                        .mark_released(id, now)
                        .await
                        .map_err(ReleaseError::Messages)?
                    {
                        report.released += 1;
                        report.delayed += u64::from(*delay > 0);
                    } else {
                        // Cancelled (or released by a concurrent tick) after it was read: the
                        // worker ignores the pointer just enqueued.
                        report.skipped += 1;
                    }
                }
            }
            let moved = report.released + report.paused + report.held - before;
            if due.len() < usize::try_from(RELEASE_BATCH).unwrap_or(usize::MAX) || moved == 0 {
                break;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use mailgate_core::{
        ApiKeyId, EmailAddress, KeyEnvironment, Mailbox, MessageRecord, MessageState,
        OutboundEmail, StoreErrorKind,
    };

    use super::*;
    use crate::testing::{MemoryControls, MemoryHeldMessages, MemoryReleaseQueue};

    const NOW: UnixMillis = UnixMillis(1_750_000_000_000);

    struct Harness {
        release: Release,
        messages: Arc<MemoryHeldMessages>,
        controls: Arc<MemoryControls>,
        queue: Arc<MemoryReleaseQueue>,
    }

    fn harness() -> Harness {
        let messages = Arc::new(MemoryHeldMessages::default());
        let controls = Arc::new(MemoryControls::default());
        let queue = Arc::new(MemoryReleaseQueue::default());
        Harness {
            release: Release::new(
                messages.clone(),
                controls.clone(),
                queue.clone(),
                messages.clone(),
            ),
            messages,
            controls,
            queue,
        }
    }

    /// A held message: `state`, bulk or not, due at `send_at` (or accepted a minute ago).
    fn held(
        h: &Harness,
        state: MessageState,
        category: MessageCategory,
        send_at: Option<UnixMillis>,
    ) -> MessageId {
        let mut email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(EmailAddress::parse("news@example.com").unwrap()),
            EmailAddress::parse("jane@example.org").unwrap(),
            "Hello",
        );
        email.category = category;
        let record = MessageRecord::new(
            &email,
            ApiKeyId::generate(),
            KeyEnvironment::Test,
            state,
            UnixMillis(NOW.as_i64() - 60_000),
            send_at,
            &[],
        );
        let id = record.id.clone();
        h.messages.put(record);
        id
    }

    fn at(offset_secs: i64) -> Option<UnixMillis> {
        Some(UnixMillis(NOW.as_i64() + offset_secs * 1000))
    }

    fn state(h: &Harness, id: &MessageId) -> MessageState {
        h.messages.get(id).unwrap().state
    }

    #[test]
    fn delays_cover_the_time_left_up_to_fifteen_minutes() {
        assert_eq!(delay_until(None, NOW), 0);
        assert_eq!(delay_until(Some(UnixMillis(NOW.as_i64() - 5_000)), NOW), 0);
        assert_eq!(
            delay_until(Some(NOW.saturating_add(Duration::from_secs(600))), NOW),
            600
        );
        assert_eq!(delay_until(Some(UnixMillis(NOW.as_i64() + 1_500)), NOW), 2);
        assert_eq!(
            delay_until(Some(NOW.saturating_add(Duration::from_secs(7_200))), NOW),
            900
        );
    }

    #[tokio::test]
    async fn scheduled_messages_due_within_the_lookahead_go_out_with_the_delay_left() {
        let h = harness();
        let past = held(
            &h,
            MessageState::Scheduled,
            MessageCategory::Transactional,
            at(-30),
        );
        let soon = held(
            &h,
            MessageState::Scheduled,
            MessageCategory::Transactional,
            at(600),
        );
        let later = held(
            &h,
            MessageState::Scheduled,
            MessageCategory::Transactional,
            at(901),
        );
        let report = h.release.release_scheduled(NOW).await.unwrap();
        assert_eq!(
            report,
            ReleaseReport {
                released: 2,
                paused: 0,
                skipped: 0,
                enqueue_calls: 1,
                delayed: 1,
                held: 0
            }
        );
        let entries = h.queue.entries();
        assert!(entries.contains(&(past.clone(), Duration::ZERO)));
        assert!(entries.contains(&(soon.clone(), Duration::from_secs(600))));
        assert_eq!(state(&h, &past), MessageState::Queued);
        assert_eq!(state(&h, &soon), MessageState::Queued);
        assert_eq!(state(&h, &later), MessageState::Scheduled);
    }

    #[tokio::test]
    async fn pointers_go_out_ten_per_call() {
        let h = harness();
        for _ in 0..23 {
            held(
                &h,
                MessageState::Scheduled,
                MessageCategory::Transactional,
                at(0),
            );
        }
        let report = h.release.release_scheduled(NOW).await.unwrap();
        assert_eq!((report.released, report.enqueue_calls), (23, 3));
        assert_eq!(h.queue.calls(), 3);
    }

    #[tokio::test]
    async fn with_the_switch_on_scheduled_bulk_mail_moves_to_paused_and_the_rest_goes_out() {
        let h = harness();
        h.controls.bulk_paused.store(true, Ordering::SeqCst);
        let bulk = held(&h, MessageState::Scheduled, MessageCategory::Bulk, at(10));
        let transactional = held(
            &h,
            MessageState::Scheduled,
            MessageCategory::Transactional,
            at(10),
        );
        let paused = held(&h, MessageState::Paused, MessageCategory::Bulk, None);
        let report = h.release.release_scheduled(NOW).await.unwrap();
        assert_eq!((report.released, report.paused), (1, 1));
        assert_eq!(state(&h, &bulk), MessageState::Paused);
        assert_eq!(state(&h, &transactional), MessageState::Queued);
        assert_eq!(h.queue.entries().len(), 1);

        assert_eq!(
            h.release.release_paused(NOW).await.unwrap(),
            ReleaseReport::default(),
            "nothing leaves the pause queue while the switch is on"
        );
        assert_eq!(state(&h, &paused), MessageState::Paused);

        h.controls.bulk_paused.store(false, Ordering::SeqCst);
        let report = h.release.release_paused(NOW).await.unwrap();
        assert_eq!((report.released, report.delayed), (2, 1));
        assert_eq!(state(&h, &paused), MessageState::Queued);
        assert_eq!(state(&h, &bulk), MessageState::Queued);
        assert!(h.queue.entries().contains(&(bulk, Duration::from_secs(10))));
    }

    #[tokio::test]
    async fn a_guardrail_on_the_senders_domain_holds_its_bulk_mail_until_resumed() {
        let h = harness();
        h.controls
            .guardrail_paused
            .lock()
            .unwrap()
            .push((mailgate_core::ProviderId::Ses, "example.com".into()));
        let scheduled = held(&h, MessageState::Scheduled, MessageCategory::Bulk, at(10));
        let paused = held(&h, MessageState::Paused, MessageCategory::Bulk, None);
        let transactional = held(
            &h,
            MessageState::Scheduled,
            MessageCategory::Transactional,
            at(10),
        );
        let report = h.release.release_scheduled(NOW).await.unwrap();
        assert_eq!((report.released, report.paused), (1, 1));
        assert_eq!(state(&h, &scheduled), MessageState::Paused);
        assert_eq!(state(&h, &transactional), MessageState::Queued);
        let report = h.release.release_paused(NOW).await.unwrap();
        assert_eq!(report.released, 0);
        assert_eq!(state(&h, &paused), MessageState::Paused);

        h.controls.guardrail_paused.lock().unwrap().clear();
        // Put back for the recheck, so released on the first tick after it.
        let report = h.release.release_paused(NOW).await.unwrap();
        assert_eq!(report.released, 0);
        let later = NOW.saturating_add(GUARDRAIL_RECHECK);
        let report = h.release.release_paused(later).await.unwrap();
        assert_eq!(report.released, 2);
        assert_eq!(state(&h, &paused), MessageState::Queued);
    }

    #[tokio::test]
    async fn messages_a_guardrail_holds_never_hide_other_domains_paused_bulk() {
        let h = harness();
        h.controls
            .guardrail_paused
            .lock()
            .unwrap()
            .push((mailgate_core::ProviderId::Ses, "example.com".into()));
        // More held messages than one query returns, all older than the other domain's.
        let held_back: Vec<MessageId> = (0..RELEASE_BATCH + 20)
            .map(|_| held(&h, MessageState::Paused, MessageCategory::Bulk, None))
            .collect();
        let mut email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(EmailAddress::parse("news@other.example").unwrap()),
            EmailAddress::parse("jane@example.org").unwrap(),
            "Hello",
        );
        email.category = MessageCategory::Bulk;
        let other = MessageRecord::new(
            &email,
            ApiKeyId::generate(),
            KeyEnvironment::Test,
            MessageState::Paused,
            UnixMillis(NOW.as_i64() - 1_000),
            None,
            &[],
        );
        let other_id = other.id.clone();
        h.messages.put(other);

        let report = h.release.release_paused(NOW).await.unwrap();
        assert_eq!(report.released, 1, "{report:?}");
        assert_eq!(report.held, held_back.len() as u64);
        assert_eq!(state(&h, &other_id), MessageState::Queued);
        assert!(
            held_back
                .iter()
                .all(|id| state(&h, id) == MessageState::Paused)
        );
    }

    #[tokio::test]
    async fn ids_no_longer_held_are_skipped() {
        let h = harness();
        let cancelled = held(
            &h,
            MessageState::Cancelled,
            MessageCategory::Transactional,
            at(0),
        );
        h.messages.ghosts.lock().unwrap().extend([
            (ReleaseQueue::Scheduled, cancelled.clone()),
            (ReleaseQueue::Scheduled, MessageId::generate()),
        ]);
        let report = h.release.release_scheduled(NOW).await.unwrap();
        assert_eq!((report.released, report.skipped), (0, 2));
        assert!(h.queue.entries().is_empty());
        assert_eq!(state(&h, &cancelled), MessageState::Cancelled);
    }

    #[tokio::test]
    async fn a_port_failing_at_each_step_stops_the_job_and_loses_nothing() {
        type Inject = fn(&Harness);
        let steps: [(&str, Inject); 6] = [
            ("bulk_paused", |h| {
                h.controls
                    .faults
                    .fail_next("bulk_paused", StoreErrorKind::Throttled)
            }),
            ("due", |h| {
                h.messages
                    .faults
                    .fail_next("due", StoreErrorKind::Throttled)
            }),
            ("record", |h| {
                h.messages
                    .faults
                    .fail_next("record", StoreErrorKind::Throttled)
            }),
            ("mark_paused", |h| {
                h.messages
                    .faults
                    .fail_next("mark_paused", StoreErrorKind::Throttled)
            }),
            ("enqueue_delayed", |h| {
                h.queue
                    .faults
                    .fail_next("enqueue_delayed", StoreErrorKind::Throttled)
            }),
            ("mark_released", |h| {
                h.messages
                    .faults
                    .fail_next("mark_released", StoreErrorKind::Throttled)
            }),
        ];
        for (step, inject) in steps {
            let h = harness();
            h.controls.bulk_paused.store(true, Ordering::SeqCst);
            let bulk = held(&h, MessageState::Scheduled, MessageCategory::Bulk, at(0));
            let ready = held(
                &h,
                MessageState::Scheduled,
                MessageCategory::Transactional,
                at(0),
            );
            inject(&h);
            let err = h.release.release_scheduled(NOW).await.unwrap_err();
            let (ReleaseError::Messages(e)
            | ReleaseError::Controls(e)
            | ReleaseError::SendQueue(e)) = &err;
            assert_eq!(e.operation(), step);
            match step {
                "bulk_paused" => assert!(matches!(err, ReleaseError::Controls(_))),
                "enqueue_delayed" => assert!(matches!(err, ReleaseError::SendQueue(_))),
                _ => assert!(matches!(err, ReleaseError::Messages(_)), "{step}"),
            }
            // Nothing was marked released without being enqueued first: every message still
            // held is found again by the next tick.
            for id in [&bulk, &ready] {
                let s = state(&h, id);
                let enqueued = h.queue.entries().iter().any(|(e, _)| e == id);
                assert!(
                    s != MessageState::Queued || enqueued,
                    "{step}: {id:?} queued but never enqueued"
                );
            }
            let next = h.release.release_scheduled(NOW).await.unwrap();
            assert_eq!(state(&h, &ready), MessageState::Queued, "{step}: {next:?}");
            assert_eq!(state(&h, &bulk), MessageState::Paused, "{step}");
        }
    }

    /// A message created `minutes_ago` in `state` (a `sending` one under a lease until `lease`).
    fn watched(
        h: &Harness,
        state: MessageState,
        minutes_ago: i64,
        lease: Option<UnixMillis>,
    ) -> MessageId {
        let id = held(
            h,
            MessageState::Queued,
            MessageCategory::Transactional,
            None,
        );
        let mut record = h.messages.get(&id).unwrap();
        record.state = state;
        record.created_at = UnixMillis(NOW.as_i64() - minutes_ago * 60_000);
        record.updated_at = record.created_at;
        record.sending_until = lease;
        h.messages.put(record);
        id
    }

    #[tokio::test]
    async fn a_queued_message_no_worker_took_goes_back_on_the_queue_once_per_check() {
        let h = harness();
        let stalled = watched(&h, MessageState::Queued, 6, None);
        let fresh = watched(&h, MessageState::Queued, 1, None);
        let report = h.release.watch_stalled(NOW).await.unwrap();
        assert_eq!(report.requeued, 1, "{report:?}");
        assert_eq!(h.queue.entries(), vec![(stalled.clone(), Duration::ZERO)]);
        // A second sweep at the same time finds it renewed: not enqueued twice.
        let again = h.release.watch_stalled(NOW).await.unwrap();
        assert_eq!(again.requeued, 0, "{again:?}");
        assert_eq!(h.queue.entries().len(), 1);
        assert_eq!(state(&h, &stalled), MessageState::Queued);
        assert_eq!(state(&h, &fresh), MessageState::Queued);
    }

    #[tokio::test]
    async fn a_queued_message_requeued_too_often_fails_with_the_reason() {
        let h = harness();
        let id = watched(&h, MessageState::Queued, 6, None);
        let mut now = NOW;
        for _ in 0..MAX_REQUEUES {
            let report = h.release.watch_stalled(now).await.unwrap();
            assert_eq!(report.requeued, 1);
            now = now.saturating_add_ms(DEFERRED_CHECK_AFTER_MS);
        }
        let report = h.release.watch_stalled(now).await.unwrap();
        assert_eq!((report.requeued, report.failed), (0, 1), "{report:?}");
        assert_eq!(state(&h, &id), MessageState::Failed);
        assert!(h.messages.reasons.lock().unwrap()[&id].contains("no provider was called"));
        assert_eq!(h.queue.entries().len(), MAX_REQUEUES as usize);
    }

    #[tokio::test]
    async fn a_lapsed_sending_lease_turns_unknown_and_a_live_one_is_left_alone() {
        let h = harness();
        let lapsed = watched(
            &h,
            MessageState::Sending,
            3,
            Some(UnixMillis(NOW.as_i64() - 1)),
        );
        let live = watched(
            &h,
            MessageState::Sending,
            3,
            Some(UnixMillis(NOW.as_i64() + 60_000)),
        );
        let report = h.release.watch_stalled(NOW).await.unwrap();
        assert_eq!(report.abandoned, 1, "{report:?}");
        assert_eq!(state(&h, &lapsed), MessageState::Unknown);
        assert_eq!(state(&h, &live), MessageState::Sending);
        assert_eq!(
            h.messages.reasons.lock().unwrap()[&lapsed],
            LAPSED_LEASE_REASON
        );
        assert!(h.queue.entries().is_empty(), "never sent again blindly");
    }

    #[tokio::test]
    async fn a_failing_step_of_the_stalled_job_loses_nothing() {
        for step in ["due", "record", "renew_queued", "enqueue_delayed"] {
            let h = harness();
            let id = watched(&h, MessageState::Queued, 6, None);
            match step {
                "enqueue_delayed" => h.queue.faults.fail_next(step, StoreErrorKind::Transient),
                _ => h.messages.faults.fail_next(step, StoreErrorKind::Transient),
            }
            assert!(h.release.watch_stalled(NOW).await.is_err(), "{step}");
            assert_eq!(state(&h, &id), MessageState::Queued, "{step}");
            // Still watched: a later sweep puts it on the queue.
            let later = NOW.saturating_add_ms(DEFERRED_CHECK_AFTER_MS);
            let report = h.release.watch_stalled(later).await.unwrap();
            assert_eq!(report.requeued, 1, "{step}: {report:?}");
        }
    }
}
