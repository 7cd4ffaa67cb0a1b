#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! The `Idempotency-Key` claim protocol of `DynamoDbIdempotencyStore` against the emulator's
//! idempotency table (built from the template): one claim among concurrent duplicates, replay,
//! mismatch, release, and reclaim after a lapsed lease on an injected clock.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use mailgate_aws::{ClaimOutcome, DynamoDbIdempotencyStore, IdempotencyStoreError};
use mailgate_core::{
    Clock, FixedClock, IdempotencyKey, IdempotencyState, RequestFingerprint, StoredResponse,
};
use mailgate_tests::TestStack;

const T0: i64 = 1_790_000_000;
const LEASE: Duration = Duration::from_secs(30);
const RETENTION: Duration = Duration::from_secs(24 * 3600);

fn store(t: &TestStack) -> DynamoDbIdempotencyStore {
    DynamoDbIdempotencyStore::new(t.clients.dynamodb.clone(), t.table("IdempotencyTable"))
}

fn key(name: &str) -> String {
    IdempotencyKey::parse(name).unwrap().scoped("key_test")
}

fn fp(body: &str) -> RequestFingerprint {
    RequestFingerprint::of_body(body.as_bytes()).unwrap()
}

fn accepted() -> StoredResponse {
    StoredResponse {
        status: 202,
        body: r#"{"id":"msg_1","status":"sent"}"#.to_owned(),
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
    }
}

fn claimed(outcome: ClaimOutcome) -> mailgate_aws::Claim {
    match outcome {
        ClaimOutcome::Claimed(claim) => claim,
        other => panic!("expected a claim, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_claims_of_one_key_make_exactly_one_claim() {
    let t = TestStack::new().await;
    let store = store(&t);
    let clock = FixedClock::at_unix(T0);
    let now = clock.now();
    let body = fp(r#"{"to":["a@example.com"],"subject":"Hi"}"#);
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            let body = body.clone();
            tokio::spawn(async move { store.claim(&key("order-42"), &body, now, LEASE).await })
        })
        .collect();
    let mut claims = 0;
    let mut in_flight = 0;
    for handle in handles {
        match handle.await.unwrap().unwrap() {
            ClaimOutcome::Claimed(claim) => {
                assert!(!claim.reclaimed);
                claims += 1;
            }
            ClaimOutcome::InFlight { retry_after_secs } => {
                assert_eq!(retry_after_secs, 30);
                in_flight += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((claims, in_flight), (1, 19));
}

#[tokio::test]
async fn a_completed_key_replays_its_response_and_refuses_another_body() {
    let t = TestStack::new().await;
    let store = store(&t);
    let clock = FixedClock::at_unix(T0);
    let body = fp(r#"{"subject":"Hi","to":["a@example.com"]}"#);
    let claim = claimed(
        store
            .claim(&key("k1"), &body, clock.now(), LEASE)
            .await
            .unwrap(),
    );

    // While in flight: the same body waits, another body is a mismatch.
    clock.advance(time::Duration::seconds(10));
    assert_eq!(
        store
            .claim(&key("k1"), &body, clock.now(), LEASE)
            .await
            .unwrap(),
        ClaimOutcome::InFlight {
            retry_after_secs: 20
        }
    );
    assert_eq!(
        store
            .claim(
                &key("k1"),
                &fp(r#"{"subject":"Other"}"#),
                clock.now(),
                LEASE
            )
            .await
            .unwrap(),
        ClaimOutcome::Mismatch
    );

    store
        .complete(&claim, &accepted(), clock.now(), RETENTION)
        .await
        .unwrap();
    // The same body with its keys reordered replays, for a day.
    clock.advance(time::Duration::hours(23));
    let reordered = fp(r#"{"to":["a@example.com"],"subject":"Hi"}"#);
    assert_eq!(
        store
            .claim(&key("k1"), &reordered, clock.now(), LEASE)
            .await
            .unwrap(),
        ClaimOutcome::Replay(accepted())
    );
    assert_eq!(
        store
            .claim(
                &key("k1"),
                &fp(r#"{"subject":"Other"}"#),
                clock.now(),
                LEASE
            )
            .await
            .unwrap(),
        ClaimOutcome::Mismatch
    );
    // The same key of another API key is another record.
    let other = IdempotencyKey::parse("k1").unwrap().scoped("key_other");
    assert!(matches!(
        store
            .claim(&other, &body, clock.now(), LEASE)
            .await
            .unwrap(),
        ClaimOutcome::Claimed(_)
    ));

    // After the retention the key is free again.
    clock.advance(time::Duration::hours(2));
    let again = claimed(
        store
            .claim(&key("k1"), &body, clock.now(), LEASE)
            .await
            .unwrap(),
    );
    assert!(again.reclaimed);
}

#[tokio::test]
async fn a_lapsed_claim_is_reclaimed_and_its_old_holder_can_no_longer_complete() {
    let t = TestStack::new().await;
    let store = store(&t);
    let clock = FixedClock::at_unix(T0);
    let body = fp(r#"{"a":1}"#);
    let first = claimed(
        store
            .claim(&key("k2"), &body, clock.now(), LEASE)
            .await
            .unwrap(),
    );
    clock.advance(time::Duration::seconds(29));
    assert!(matches!(
        store
            .claim(&key("k2"), &body, clock.now(), LEASE)
            .await
            .unwrap(),
        ClaimOutcome::InFlight {
            retry_after_secs: 1
        }
    ));

    // The first request's function timed out: its lease lapses and a retry takes over.
    clock.advance(time::Duration::seconds(1));
    let second = claimed(
        store
            .claim(&key("k2"), &body, clock.now(), LEASE)
            .await
            .unwrap(),
    );
    assert!(second.reclaimed);
    assert_ne!(second.claim_id, first.claim_id);

    assert!(matches!(
        store
            .complete(&first, &accepted(), clock.now(), RETENTION)
            .await,
        Err(IdempotencyStoreError::ClaimLost(_))
    ));
    assert!(!store.release(&first).await.unwrap());
    store
        .complete(&second, &accepted(), clock.now(), RETENTION)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim(&key("k2"), &body, clock.now(), LEASE)
            .await
            .unwrap(),
        ClaimOutcome::Replay(accepted())
    );
    // A completed claim cannot be completed or released twice.
    assert!(matches!(
        store
            .complete(&second, &accepted(), clock.now(), RETENTION)
            .await,
        Err(IdempotencyStoreError::ClaimLost(_))
    ));
    assert!(!store.release(&second).await.unwrap());
}

#[tokio::test]
async fn a_released_claim_lets_a_retry_proceed_at_once() {
    let t = TestStack::new().await;
    let store = store(&t);
    let clock = FixedClock::at_unix(T0);
    let body = fp(r#"{"a":1}"#);
    let claim = claimed(
        store
            .claim(&key("k3"), &body, clock.now(), LEASE)
            .await
            .unwrap(),
    );
    assert!(store.release(&claim).await.unwrap());
    assert_eq!(store.get(&key("k3")).await.unwrap(), None);
    let retry = claimed(
        store
            .claim(&key("k3"), &fp(r#"{"a":2}"#), clock.now(), LEASE)
            .await
            .unwrap(),
    );
    assert!(!retry.reclaimed);
}

#[tokio::test]
async fn records_carry_the_ttl_in_seconds_and_the_lease_in_milliseconds() {
    let t = TestStack::new().await;
    let store = store(&t);
    let clock = FixedClock::new(
        time::OffsetDateTime::from_unix_timestamp(T0).unwrap() + time::Duration::milliseconds(250),
    );
    let body = fp("{}");
    let claim = claimed(
        store
            .claim(&key("k4"), &body, clock.now(), LEASE)
            .await
            .unwrap(),
    );
    let item = |t: &TestStack| {
        let client = t.clients.dynamodb.clone();
        let table = t.table("IdempotencyTable");
        async move {
            client
                .get_item()
                .table_name(table)
                .key("pk", AttributeValue::S(key("k4")))
                .send()
                .await
                .unwrap()
                .item
                .unwrap()
        }
    };
    let claimed_item = item(&t).await;
    assert_eq!(claimed_item["pk"].as_s().unwrap(), "key_test#k4");
    assert_eq!(claimed_item["state"].as_s().unwrap(), "in_progress");
    assert_eq!(
        claimed_item["expires_at_ms"].as_n().unwrap(),
        &((T0 + 30) * 1000 + 250).to_string()
    );
    assert_eq!(
        claimed_item["expires_at"].as_n().unwrap(),
        &(T0 + 31).to_string()
    );

    store
        .complete(&claim, &accepted(), clock.now(), RETENTION)
        .await
        .unwrap();
    let completed = item(&t).await;
    assert_eq!(completed["state"].as_s().unwrap(), "completed");
    assert_eq!(
        completed["expires_at"].as_n().unwrap(),
        &(T0 + 86_401).to_string()
    );
    let record = store.get(&key("k4")).await.unwrap().unwrap();
    assert!(matches!(
        record.state,
        IdempotencyState::Completed { ref response, .. } if *response == accepted()
    ));
}
