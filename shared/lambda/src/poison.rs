//! One policy for poison records on every queue consumer: a record that can never succeed (a
//! malformed envelope, an unknown version) is moved to the queue's dead-letter queue at once,
//! with the reason as the `mailgate_poison_reason` message attribute, and acknowledged; a
//! transient failure is reported in `batchItemFailures` (retried, then moved by the redrive
//! policy). Waiting for the redrive count would only delay the operator and hold the batch.

use std::future::Future;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use mailgate_core::ports::DeadLetterQueue;

use crate::sqs::{RecordOutcome, drive_batch};

/// What a consumer decided about one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Done: delete it from the queue.
    Done,
    /// A transient failure: leave it on the queue for a retry.
    Retry(String),
    /// It can never succeed: park it on the dead-letter queue with this reason.
    Poison(String),
}

impl From<RecordOutcome> for Verdict {
    fn from(outcome: RecordOutcome) -> Self {
        match outcome {
            RecordOutcome::Done => Self::Done,
            RecordOutcome::Retry(reason) => Self::Retry(reason),
        }
    }
}

/// Parks a poison record on `dlq` and acknowledges it; when the dead-letter queue cannot take
/// it, the record is left on its queue instead (nothing is lost; the redrive policy moves it).
pub async fn park(dlq: &dyn DeadLetterQueue, record: &SqsMessage, reason: &str) -> RecordOutcome {
    let sqs_message_id = record.message_id.as_deref().unwrap_or("-");
    match dlq
        .park(record.body.as_deref().unwrap_or_default(), reason)
        .await
    {
        Ok(()) => {
            tracing::error!(
                sqs_message_id,
                reason,
                "poison record moved to the dead-letter queue"
            );
            RecordOutcome::Done
        }
        Err(err) => RecordOutcome::Retry(format!(
            "poison record ({reason}) could not be moved to the dead-letter queue: {err}"
        )),
    }
}

/// Runs `handle` on every record of `event` concurrently, parking poison records on `dlq`, and
/// lists the records to be retried.
pub async fn drive_batch_with_dlq<F, Fut>(
    event: SqsEvent,
    dlq: &dyn DeadLetterQueue,
    handle: F,
) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Verdict>,
{
    drive_batch(event, |record| {
        let verdict = handle(record.clone());
        async move {
            match verdict.await {
                Verdict::Done => RecordOutcome::Done,
                Verdict::Retry(reason) => RecordOutcome::Retry(reason),
                Verdict::Poison(reason) => park(dlq, &record, &reason).await,
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::ports::BoxFuture;
    use mailgate_core::{StoreError, StoreErrorKind};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Parked {
        bodies: Mutex<Vec<(String, String)>>,
        down: bool,
    }

    impl DeadLetterQueue for Parked {
        fn park<'a>(
            &'a self,
            body: &'a str,
            reason: &'a str,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            Box::pin(async move {
                if self.down {
                    return Err(StoreError::new(
                        StoreErrorKind::Transient,
                        "SendMessage",
                        "down",
                    ));
                }
                self.bodies
                    .lock()
                    .unwrap()
                    .push((body.to_owned(), reason.to_owned()));
                Ok(())
            })
        }
    }

    fn event(ids: &[&str]) -> SqsEvent {
        let records: Vec<_> = ids
            .iter()
            .map(|id| serde_json::json!({"messageId": id, "body": format!("body-{id}")}))
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    async fn verdict(m: SqsMessage) -> Verdict {
        match m.body.as_deref() {
            Some("body-p") => Verdict::Poison("bad envelope".into()),
            Some("body-r") => Verdict::Retry("store down".into()),
            _ => Verdict::Done,
        }
    }

    fn failed(r: &SqsBatchResponse) -> Vec<String> {
        r.batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect()
    }

    #[tokio::test]
    async fn poison_is_parked_with_its_reason_and_acknowledged_transient_is_retried() {
        let dlq = Parked::default();
        let response = drive_batch_with_dlq(event(&["a", "p", "r"]), &dlq, verdict).await;
        assert_eq!(failed(&response), vec!["r".to_owned()]);
        assert_eq!(
            *dlq.bodies.lock().unwrap(),
            vec![("body-p".to_owned(), "bad envelope".to_owned())]
        );
    }

    #[tokio::test]
    async fn poison_stays_on_its_queue_when_the_dead_letter_queue_is_down() {
        let dlq = Parked {
            down: true,
            ..Parked::default()
        };
        let response = drive_batch_with_dlq(event(&["p"]), &dlq, verdict).await;
        assert_eq!(failed(&response), vec!["p".to_owned()]);
    }
}
