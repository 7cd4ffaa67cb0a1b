//! The sweeper's tick: re-enqueue every provider's webhook receipts left `received` for too
//! long (the enqueue after persisting failed, or the function died between the two), then
//! `release_scheduled` and `release_paused` (see [`crate::release`]). Every job runs even when
//! an earlier one failed; the first failure is returned after the others ran.

use std::sync::Arc;

use mailgate_core::{Clock, ProviderId, StoreError, UnixMillis};

use crate::ingest::Ingestion;
use crate::release::{Release, ReleaseError};

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
                    jobs.push((format!("requeue_receipts:{provider}"), report.requeued));
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
        match first_error {
            Some(e) => Err(e),
            None => Ok(jobs),
        }
    }
}
