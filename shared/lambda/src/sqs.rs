//! Driving an SQS batch record by record and reporting partial batch failures, so one bad
//! message never makes its batch-mates run again (the event source must enable
//! `ReportBatchItemFailures`, which the template does for every queue).

use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Done: the record may be deleted from the queue.
    Done,
    /// Not done: leave it on the queue so SQS redelivers it after its visibility timeout (and
    /// moves it to the dead-letter queue after the redrive count). The reason is logged.
    Retry(String),
}

/// Runs `handle` on every record concurrently and lists the records to be retried.
///
/// Records without a message id cannot be reported individually; if one of those needs a retry
/// the whole batch is failed, which is the only safe answer SQS accepts.
pub async fn drive_batch<F, Fut>(event: SqsEvent, handle: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = RecordOutcome>,
{
    let ids: Vec<Option<String>> = event.records.iter().map(|r| r.message_id.clone()).collect();
    let outcomes = futures::future::join_all(event.records.into_iter().map(&handle)).await;
    let mut response = SqsBatchResponse::default();
    for (id, outcome) in ids.iter().zip(outcomes) {
        if let RecordOutcome::Retry(reason) = outcome {
            tracing::warn!(message_id = id.as_deref().unwrap_or("-"), %reason, "record left on the queue");
            match id {
                Some(id) => {
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = id.clone();
                    response.batch_item_failures.push(failure);
                }
                None => {
                    response.batch_item_failures = ids
                        .iter()
                        .flatten()
                        .map(|id| {
                            let mut f = BatchItemFailure::default();
                            f.item_identifier = id.clone();
                            f
                        })
                        .collect();
                    return response;
                }
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ids: &[&str]) -> SqsEvent {
        let records: Vec<_> = ids
            .iter()
            .map(|id| serde_json::json!({"messageId": id, "body": format!("body-{id}")}))
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    fn failed(r: &SqsBatchResponse) -> Vec<String> {
        r.batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect()
    }

    #[tokio::test]
    async fn reports_only_the_records_that_need_a_retry() {
        let response = drive_batch(event(&["a", "b", "c"]), |m| async move {
            if m.body.as_deref() == Some("body-b") {
                RecordOutcome::Retry("poison".into())
            } else {
                RecordOutcome::Done
            }
        })
        .await;
        assert_eq!(failed(&response), vec!["b".to_string()]);
    }

    #[tokio::test]
    async fn an_all_good_batch_reports_nothing() {
        let response = drive_batch(event(&["a", "b"]), |_| async { RecordOutcome::Done }).await;
        assert!(response.batch_item_failures.is_empty());
    }
}
