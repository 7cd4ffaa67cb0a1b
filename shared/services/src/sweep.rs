//! The sweeper's tick: re-enqueue every provider's webhook receipts left `received` for too
//! long (the enqueue after persisting failed, or the function died between the two), then
//! `release_scheduled` and `release_paused`, and the stalled messages' jobs
//! ([`crate::release::Release::watch_stalled`]: `requeue_stalled`, `fail_stalled`,
//! `abandon_lapsed`). Every job runs even when
//! an earlier one failed; the first failure is returned after the others ran.

use std::sync::Arc;

use mailgate_core::{Clock, ProviderId, StoreError, UnixMillis};

use crate::ingest::Ingestion;
use crate::release::{Release, ReleaseError};

/// The job putting `queued` messages no worker took back on the send queue.
pub const JOB_REQUEUE_STALLED: &str = "requeue_stalled";
/// The job marking `queued` messages `failed` after too many re-enqueues.
pub const JOB_FAIL_STALLED: &str = "fail_stalled";
/// The job marking `sending` messages whose lease lapsed `unknown`.
pub const JOB_ABANDON_LAPSED: &str = "abandon_lapsed";

/// The job marking receipts that can never be enqueued `failed` (per provider:
/// `fail_receipts:<provider>`).
pub const JOB_FAIL_RECEIPTS: &str = "fail_receipts";

/// Receipts re-enqueued per provider per tick at most.
pub const REQUEUE_BATCH: i32 = 100;

/// Why a tick failed (after every job ran).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SweepError {
    /// Webhook receipts could not be read or re-enqueued.
    #[error(transparent)]
    Receipts(#[from] StoreError),
    /// Held messages could not be released.
    #[error(transparent)]
    Release(#[from] ReleaseError),
}

/// The sweeper's jobs on their ports.
#[derive(Clone)]
pub struct Sweep {
    ingestion: Ingestion,
    release: Release,
    requeue_after_secs: i64,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Sweep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweep")
            .field("requeue_after_secs", &self.requeue_after_secs)
            .finish_non_exhaustive()
    }
}

impl Sweep {
    /// Re-enqueues receipts through `ingestion` once they are `requeue_after_secs` old, and
    /// releases held messages through `release`, on `clock`.
    pub fn new(
        ingestion: Ingestion,
        release: Release,
        requeue_after_secs: i64,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            ingestion,
            release,
            requeue_after_secs,
            clock,
        }
    }

    /// Runs every job once: the jobs that ran, each with how many items it moved
    /// (`requeue_receipts:<provider>`, `release_scheduled`, `release_paused`).
    pub async fn run(&self) -> Result<Vec<(String, u64)>, SweepError> {
        let mut jobs = Vec::new();
        let mut first_error = None;
        for provider in ProviderId::ALL {
            let result = self
                .ingestion
                .requeue_stale(
                    provider,
                    self.requeue_after_secs,
                    REQUEUE_BATCH,
                    self.clock.as_ref(),
                )
                .await;
            match result {
                Ok(report) => {
                    if report.requeued > 0 || report.failed > 0 {
                        tracing::warn!(%provider, requeued = report.requeued, events = report.events, failed = report.failed, "re-enqueued stuck webhook receipts");
                    }
                    if report.gave_up > 0 {
                        tracing::error!(%provider, gave_up = report.gave_up, "gave up on webhook receipts; marked failed");
                    }
                    jobs.push((format!("requeue_receipts:{provider}"), report.requeued));
                    jobs.push((format!("{JOB_FAIL_RECEIPTS}:{provider}"), report.gave_up));
                }
                Err(e) => {
                    tracing::error!(%provider, error = %e, "could not sweep webhook receipts");
                    first_error.get_or_insert(SweepError::from(e));
                }
            }
        }
        let now = UnixMillis::from(self.clock.now());
        for (job, result) in [
            (
                "release_scheduled",
                self.release.release_scheduled(now).await,
            ),
            ("release_paused", self.release.release_paused(now).await),
        ] {
            match result {
                Ok(report) => {
                    if report.released > 0 || report.paused > 0 {
                        tracing::info!(
                            job,
                            released = report.released,
                            delayed = report.delayed,
                            paused = report.paused,
                            skipped = report.skipped,
                            "released held messages"
                        );
                    }
                    jobs.push((job.to_owned(), report.released));
                }
                Err(e) => {
                    tracing::error!(job, error = %e, "could not release held messages");
                    first_error.get_or_insert(SweepError::from(e));
                }
            }
        }
        match self.release.watch_stalled(now).await {
            Ok(report) => {
                if report.requeued + report.failed + report.abandoned > 0 {
                    tracing::warn!(
                        requeued = report.requeued,
                        failed = report.failed,
                        abandoned = report.abandoned,
                        cleared = report.cleared,
                        "moved stalled messages on"
                    );
                }
                jobs.push((JOB_REQUEUE_STALLED.to_owned(), report.requeued));
                jobs.push((JOB_FAIL_STALLED.to_owned(), report.failed));
                jobs.push((JOB_ABANDON_LAPSED.to_owned(), report.abandoned));
            }
            Err(e) => {
                tracing::error!(error = %e, "could not look at stalled messages");
                first_error.get_or_insert(SweepError::from(e));
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(jobs),
        }
    }
}

#[cfg(test)]
mod tests {
    use mailgate_core::{
        ApiKeyId, EmailAddress, FixedClock, KeyEnvironment, Mailbox, MessageId, MessageRecord,
        MessageState, OutboundEmail, ReceiptStatus, StoreErrorKind,
    };

    use super::*;
    use crate::ingest::ENQUEUE_LEASE_MS;
    use crate::testing::{
        JsonArrayEvents, MemoryControls, MemoryEventsQueue, MemoryHeldMessages, MemoryReceipt,
        MemoryReceipts, MemoryReleaseQueue,
    };

    const T0: i64 = 1_750_000_000;

    struct Harness {
        sweep: Sweep,
        receipts: Arc<MemoryReceipts>,
        events: Arc<MemoryEventsQueue>,
        messages: Arc<MemoryHeldMessages>,
        queue: Arc<MemoryReleaseQueue>,
    }

    fn harness() -> Harness {
        let receipts = Arc::new(MemoryReceipts::default());
        let events = Arc::new(MemoryEventsQueue::default());
        let messages = Arc::new(MemoryHeldMessages::default());
        let queue = Arc::new(MemoryReleaseQueue::default());
        let ingestion = Ingestion::new(
            receipts.clone(),
            events.clone(),
            Arc::new(JsonArrayEvents),
            0,
            0,
        );
        let release = Release::new(
            messages.clone(),
            Arc::new(MemoryControls::default()),
            queue.clone(),
            messages.clone(),
        );
        Harness {
            sweep: Sweep::new(ingestion, release, 300, Arc::new(FixedClock::at_unix(T0))),
            receipts,
            events,
            messages,
            queue,
        }
    }

    fn stuck(h: &Harness, provider: ProviderId, key: &str) {
        h.receipts.put(
            key,
            MemoryReceipt {
                provider,
                status: ReceiptStatus::Received,
                body: br#"[{"a":1},{"b":2}]"#.to_vec(),
                content_type: None,
                event_count: 2,
                error: None,
                received_at_ms: (T0 - 900) * 1000,
                lease_until_ms: Some((T0 - 900) * 1000 + ENQUEUE_LEASE_MS),
                queued_at_ms: None,
                attempts: 1,
            },
        );
    }

    fn scheduled(h: &Harness) -> MessageId {
        let email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(EmailAddress::parse("news@example.com").unwrap()),
            EmailAddress::parse("jane@example.org").unwrap(),
            "Hello",
        );
        let record = MessageRecord::new(
            &email,
            ApiKeyId::generate(),
            KeyEnvironment::Test,
            MessageState::Scheduled,
            UnixMillis(T0 * 1000 - 60_000),
            Some(UnixMillis(T0 * 1000 + 5_000)),
            &[],
        );
        let id = record.id.clone();
        h.messages.put(record);
        id
    }

    fn moved(jobs: &[(String, u64)], job: &str) -> Option<u64> {
        jobs.iter().find(|(j, _)| j == job).map(|(_, n)| *n)
    }

    #[tokio::test]
    async fn a_tick_requeues_every_providers_stuck_receipts_and_releases_due_messages() {
        let h = harness();
        stuck(&h, ProviderId::Sendgrid, "sendgrid#a");
        stuck(&h, ProviderId::Postmark, "postmark#b");
        let id = scheduled(&h);
        let jobs = h.sweep.run().await.unwrap();
        assert_eq!(jobs.len(), 2 * ProviderId::ALL.len() + 5);
        assert_eq!(moved(&jobs, "requeue_stalled"), Some(0));
        assert_eq!(moved(&jobs, "abandon_lapsed"), Some(0));
        assert_eq!(moved(&jobs, "requeue_receipts:sendgrid"), Some(1));
        assert_eq!(moved(&jobs, "requeue_receipts:postmark"), Some(1));
        assert_eq!(moved(&jobs, "requeue_receipts:ses"), Some(0));
        assert_eq!(moved(&jobs, "release_scheduled"), Some(1));
        assert_eq!(moved(&jobs, "release_paused"), Some(0));
        assert_eq!(h.events.messages().len(), 4);
        assert_eq!(
            h.queue.entries(),
            vec![(id, std::time::Duration::from_secs(5))]
        );
    }

    #[tokio::test]
    async fn a_failing_job_is_reported_after_every_other_job_ran() {
        let h = harness();
        stuck(&h, ProviderId::Sendgrid, "sendgrid#a");
        stuck(&h, ProviderId::Postmark, "postmark#b");
        let id = scheduled(&h);
        // The first provider's query fails (SES comes first in `ProviderId::ALL`).
        h.receipts
            .faults
            .fail_next("stale", StoreErrorKind::Transient);
        let err = h.sweep.run().await.unwrap_err();
        assert!(matches!(err, SweepError::Receipts(ref e) if e.operation() == "stale"));
        assert_eq!(h.events.messages().len(), 4, "the other providers ran");
        assert_eq!(h.messages.get(&id).unwrap().state, MessageState::Queued);

        let h = harness();
        let id = scheduled(&h);
        stuck(&h, ProviderId::Sendgrid, "sendgrid#a");
        h.messages
            .faults
            .fail_next("due", StoreErrorKind::Throttled);
        let err = h.sweep.run().await.unwrap_err();
        assert!(matches!(
            err,
            SweepError::Release(ReleaseError::Messages(_))
        ));
        assert_eq!(h.events.messages().len(), 2, "receipts were swept");
        assert_eq!(h.messages.get(&id).unwrap().state, MessageState::Scheduled);
    }
}
