//! Fakes of the webhook ingestion's ports: receipts (with the replay-token cache and enqueue
//! leases, as the receipts table keeps them), the events queue (able to fail partway through a
//! set) and a body reader (a JSON array of events).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use mailgate_core::ports::{BoxFuture, Enqueued, EventsQueue, ReceiptEvents, WebhookReceipts};
use mailgate_core::{
    ExistingReceipt, NewReceipt, ProviderId, ReceiptStatus, RecordError, Recorded, StoreError,
    StoreErrorKind, StoredReceipt, receipt_key,
};

use super::Faults;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One receipt as the in-memory store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryReceipt {
    /// Whose webhook it is.
    pub provider: ProviderId,
    /// Its status.
    pub status: ReceiptStatus,
    /// The raw body.
    pub body: Vec<u8>,
    /// The request's `Content-Type`.
    pub content_type: Option<String>,
    /// How many events it holds.
    pub event_count: usize,
    /// Why its body could not be read (`failed`).
    pub error: Option<String>,
    /// Receipt time, Unix ms.
    pub received_at_ms: i64,
    /// The enqueue lease, while `received`.
    pub lease_until_ms: Option<i64>,
    /// When it was marked `queued`, Unix ms.
    pub queued_at_ms: Option<i64>,
    /// How many times its enqueue lease was taken.
    pub attempts: u32,
}

/// Receipts and Mailgun tokens in memory.
#[derive(Debug, Default)]
pub struct MemoryReceipts {
    receipts: Mutex<HashMap<String, MemoryReceipt>>,
    tokens: Mutex<HashMap<String, String>>,
    /// Failures to inject, by operation (`record`, `claim`, `mark_queued`, `stale`, `load`).
    pub faults: Faults,
}

impl MemoryReceipts {
    /// The receipt stored under `key`, if any.
    pub fn receipt(&self, key: &str) -> Option<MemoryReceipt> {
        lock(&self.receipts).get(key).cloned()
    }

    /// Stores `receipt` under `key` as it is (e.g. one left `received` by a failed request).
    pub fn put(&self, key: &str, receipt: MemoryReceipt) {
        lock(&self.receipts).insert(key.to_owned(), receipt);
    }
}

impl WebhookReceipts for MemoryReceipts {
    fn record<'a>(
        &'a self,
        receipt: &'a NewReceipt<'a>,
    ) -> BoxFuture<'a, Result<Recorded, RecordError>> {
        let result = self.faults.take("record").map_err(RecordError::from);
        let result = result.and_then(|()| {
            let key = receipt_key(receipt.provider, receipt.dedupe_key);
            let mut receipts = lock(&self.receipts);
            if let Some(guard) = receipt.replay_guard {
                let tokens = lock(&self.tokens);
                if tokens.get(guard.token).is_some_and(|k| *k != key) {
                    return Err(RecordError::Replayed);
                }
            }
            if let Some(existing) = receipts.get(&key) {
                return Ok(Recorded::Duplicate(ExistingReceipt {
                    status: existing.status,
                    lease_until_ms: existing.lease_until_ms,
                }));
            }
            if let Some(guard) = receipt.replay_guard {
                lock(&self.tokens).insert(guard.token.to_owned(), key.clone());
            }
            let received = receipt.status == ReceiptStatus::Received;
            receipts.insert(
                key,
                MemoryReceipt {
                    provider: receipt.provider,
                    status: receipt.status,
                    body: receipt.body.to_vec(),
                    content_type: receipt.content_type.map(str::to_owned),
                    event_count: receipt.event_count,
                    error: receipt.error.map(str::to_owned),
                    received_at_ms: receipt.received_at_ms,
                    lease_until_ms: received.then_some(receipt.lease_until_ms),
                    queued_at_ms: None,
                    attempts: u32::from(received),
                },
            );
            Ok(Recorded::New)
        });
        Box::pin(async move { result })
    }

    fn claim<'a>(
        &'a self,
        key: &'a str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let result = self.faults.take("claim").map(|()| {
            let mut receipts = lock(&self.receipts);
            match receipts.get_mut(key) {
                Some(r)
                    if r.status == ReceiptStatus::Received
                        && r.lease_until_ms.is_none_or(|until| until < now_ms) =>
                {
                    r.lease_until_ms = Some(lease_until_ms);
                    r.attempts += 1;
                    true
                }
                _ => false,
            }
        });
        Box::pin(async move { result })
    }

    fn mark_queued<'a>(
        &'a self,
        key: &'a str,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.faults.take("mark_queued").map(|()| {
            if let Some(r) = lock(&self.receipts)
                .get_mut(key)
                .filter(|r| r.status == ReceiptStatus::Received)
            {
                r.status = ReceiptStatus::Queued;
                r.queued_at_ms = Some(now_ms);
                r.lease_until_ms = None;
            }
        });
        Box::pin(async move { result })
    }

    fn retry_later<'a>(
        &'a self,
        key: &'a str,
        retry_at_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.faults.take("retry_later").map(|()| {
            if let Some(r) = lock(&self.receipts)
                .get_mut(key)
                .filter(|r| r.status == ReceiptStatus::Received)
            {
                r.lease_until_ms = Some(retry_at_ms);
            }
        });
        Box::pin(async move { result })
    }

    fn mark_failed<'a>(
        &'a self,
        key: &'a str,
        _now_ms: i64,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let result = self.faults.take("mark_failed").map(|()| {
            match lock(&self.receipts)
                .get_mut(key)
                .filter(|r| r.status == ReceiptStatus::Received)
            {
                Some(r) => {
                    r.status = ReceiptStatus::Failed;
                    r.error = Some(reason.to_owned());
                    r.lease_until_ms = None;
                    true
                }
                None => false,
            }
        });
        Box::pin(async move { result })
    }

    fn stale(
        &self,
        provider: ProviderId,
        before_ms: i64,
        limit: i32,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        let result = self.faults.take("stale").map(|()| {
            let receipts = lock(&self.receipts);
            let mut stale: Vec<(i64, String)> = receipts
                .iter()
                .filter(|(_, r)| {
                    r.provider == provider
                        && r.status == ReceiptStatus::Received
                        && r.received_at_ms < before_ms
                })
                .map(|(k, r)| (r.received_at_ms, k.clone()))
                .collect();
            stale.sort();
            stale
                .into_iter()
                .take(usize::try_from(limit).unwrap_or(0))
                .map(|(_, k)| k)
                .collect()
        });
        Box::pin(async move { result })
    }

    fn load<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredReceipt>, StoreError>> {
        let result = self.faults.take("load").map(|()| {
            lock(&self.receipts).get(key).map(|r| StoredReceipt {
                key: key.to_owned(),
                provider: r.provider,
                status: r.status,
                body: r.body.clone(),
                content_type: r.content_type.clone(),
                received_at_ms: r.received_at_ms,
                attempts: r.attempts,
            })
        });
        Box::pin(async move { result })
    }
}

/// The events queue in memory: every message enqueued, in order, one call per ten.
#[derive(Debug, Default)]
pub struct MemoryEventsQueue {
    messages: Mutex<Vec<String>>,
    /// When set, the next `enqueue` takes this many messages, then fails (`Transient`), as a
    /// batch sender does when a later call of a set fails.
    pub fail_after: Mutex<Option<usize>>,
    /// Failures to inject before anything is enqueued (`enqueue`).
    pub faults: Faults,
    /// Every `enqueue` of a set with a message containing this text fails (`Transient`), as
    /// SQS refuses one poisoned entry over and over.
    pub refuse_containing: Mutex<Option<String>>,
}

impl MemoryEventsQueue {
    /// Every message enqueued so far.
    pub fn messages(&self) -> Vec<String> {
        lock(&self.messages).clone()
    }

    /// Makes the next `enqueue` fail after taking `n` messages.
    pub fn fail_next_after(&self, n: usize) {
        *lock(&self.fail_after) = Some(n);
    }
}

impl EventsQueue for MemoryEventsQueue {
    fn enqueue<'a>(
        &'a self,
        messages: &'a [String],
    ) -> BoxFuture<'a, Result<Enqueued, StoreError>> {
        let refused = lock(&self.refuse_containing)
            .as_ref()
            .is_some_and(|needle| messages.iter().any(|m| m.contains(needle.as_str())));
        let result = self.faults.take("enqueue").and_then(|()| {
            if refused {
                return Err(StoreError::new(
                    StoreErrorKind::Transient,
                    "enqueue",
                    "a message the queue refuses",
                ));
            }
            let mut queue = lock(&self.messages);
            match lock(&self.fail_after).take() {
                Some(n) if n < messages.len() => {
                    queue.extend(messages[..n].iter().cloned());
                    Err(StoreError::new(
                        StoreErrorKind::Transient,
                        "enqueue",
                        "injected by the test after some messages",
                    ))
                }
                _ => {
                    queue.extend(messages.iter().cloned());
                    Ok(Enqueued {
                        messages: messages.len(),
                        calls: messages.len().div_ceil(10),
                    })
                }
            }
        });
        Box::pin(async move { result })
    }
}

/// Reads a stored body as a JSON array of events (each element's raw JSON), as SendGrid's
/// webhook body is; anything else no longer parses.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonArrayEvents;

impl ReceiptEvents for JsonArrayEvents {
    fn events_of(
        &self,
        _provider: ProviderId,
        body: &[u8],
        _content_type: Option<&str>,
    ) -> Result<Vec<String>, String> {
        let events: Vec<Box<serde_json::value::RawValue>> =
            serde_json::from_slice(body).map_err(|e| e.to_string())?;
        Ok(events.into_iter().map(|e| e.get().to_owned()).collect())
    }
}
