#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Provider health shared by every Lambda instance: `DynamoDbProviderHealth` against the
//! emulator's control table (built from the template). Each `DynamoDbProviderHealth` value
//! stands for one instance with its own cache; time is injected.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use mailgate_aws::{DynamoDbProviderHealth, ProviderHealthConfig};
use mailgate_core::{
    Admission, BreakerConfig, CircuitStatus, Clock, FixedClock, ProviderId, RateLimit, TakeDenied,
};
use mailgate_tests::TestStack;
use time::OffsetDateTime;

const T0: i64 = 1_790_000_000;

fn config() -> ProviderHealthConfig {
    ProviderHealthConfig {
        breaker: BreakerConfig {
            failure_threshold: 3,
            window: Duration::from_secs(60),
            recovery_timeout: Duration::from_secs(30),
            half_open_probes: 1,
            probe_lease: Duration::from_secs(30),
        },
        rate_limits: HashMap::from([(ProviderId::Postmark, RateLimit::new(1.0, 4).unwrap())]),
        cache_ttl: Duration::from_secs(2),
        conflict_retries: 5,
    }
}

/// A new instance: its own cache over the shared table.
fn instance(t: &TestStack) -> DynamoDbProviderHealth {
    DynamoDbProviderHealth::new(
        t.clients.dynamodb.clone(),
        t.table("ControlTable"),
        config(),
    )
}

fn at(clock: &FixedClock, seconds: i64) -> OffsetDateTime {
    clock.now() + time::Duration::seconds(seconds)
}

async fn open_breaker(
    instance: &DynamoDbProviderHealth,
    provider: ProviderId,
    now: OffsetDateTime,
) {
    for _ in 0..3 {
        instance.record_failure(provider, now).await.unwrap();
    }
    assert_eq!(
        instance.breaker(provider, now).await.unwrap().status,
        CircuitStatus::Open
    );
}

#[tokio::test]
async fn a_breaker_opened_by_one_instance_is_seen_by_another_with_its_own_cache() {
    let t = TestStack::new().await;
    let clock = FixedClock::at_unix(T0);
    let a = instance(&t);
    let b = instance(&t);

    // B has looked at the closed breaker: its cache holds that for 2 s.
    assert_eq!(
        b.admit(ProviderId::Sendgrid, clock.now()).await.unwrap(),
        Admission::Allowed
    );
    open_breaker(&a, ProviderId::Sendgrid, clock.now()).await;

    // A third instance with a cold cache sees the open circuit at once.
    let c = instance(&t);
    assert_eq!(
        c.admit(ProviderId::Sendgrid, clock.now()).await.unwrap(),
        Admission::Rejected {
            retry_at: at(&clock, 30)
        }
    );
    // B still answers from its cache within the TTL, and sees the open circuit after it.
    let cached = clock.now() + time::Duration::milliseconds(1_999);
    assert_eq!(
        b.admit(ProviderId::Sendgrid, cached).await.unwrap(),
        Admission::Allowed
    );
    assert_eq!(
        b.admit(ProviderId::Sendgrid, at(&clock, 2)).await.unwrap(),
        Admission::Rejected {
            retry_at: at(&clock, 30)
        }
    );
    // Other providers are unaffected.
    assert_eq!(
        b.admit(ProviderId::Mailgun, at(&clock, 2)).await.unwrap(),
        Admission::Allowed
    );

    // The stored item has the documented layout.
    let item = t
        .clients
        .dynamodb
        .get_item()
        .table_name(t.table("ControlTable"))
        .key("pk", AttributeValue::S("breaker#sendgrid".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["status"].as_s().unwrap(), "open");
    assert_eq!(item["failures"].as_n().unwrap(), "3");
    assert_eq!(item["version"].as_n().unwrap(), "3");
    assert_eq!(
        item["opened_at_ms"].as_n().unwrap(),
        &(T0 * 1000).to_string()
    );
}

#[tokio::test]
async fn failures_from_two_instances_add_up_to_open_the_circuit() {
    let t = TestStack::new().await;
    let clock = FixedClock::at_unix(T0);
    let a = instance(&t);
    let b = instance(&t);
    // Both warm their caches, then fail alternately: every failure is counted once.
    a.admit(ProviderId::Ses, clock.now()).await.unwrap();
    b.admit(ProviderId::Ses, clock.now()).await.unwrap();
    assert_eq!(
        a.record_failure(ProviderId::Ses, clock.now())
            .await
            .unwrap()
            .failures,
        1
    );
    assert_eq!(
        b.record_failure(ProviderId::Ses, clock.now())
            .await
            .unwrap()
            .failures,
        2
    );
    let state = a
        .record_failure(ProviderId::Ses, clock.now())
        .await
        .unwrap();
    assert_eq!(state.status, CircuitStatus::Open);
    assert_eq!(state.version, 3);
}

#[tokio::test]
async fn the_half_open_probe_after_the_recovery_timeout_closes_the_circuit_on_success() {
    let t = TestStack::new().await;
    let clock = FixedClock::at_unix(T0);
    let a = instance(&t);
    let b = instance(&t);
    open_breaker(&a, ProviderId::Postmark, clock.now()).await;
    assert!(
        !b.admit(ProviderId::Postmark, at(&clock, 29))
            .await
            .unwrap()
            .is_admitted()
    );

    let probe = b.admit(ProviderId::Postmark, at(&clock, 31)).await.unwrap();
    assert!(matches!(probe, Admission::Probe(ref s) if s.status == CircuitStatus::HalfOpen));
    // While the probe is out, the other instance is turned away.
    assert!(
        !a.admit(ProviderId::Postmark, at(&clock, 31))
            .await
            .unwrap()
            .is_admitted()
    );

    let closed = b
        .record_success(ProviderId::Postmark, at(&clock, 32))
        .await
        .unwrap();
    assert_eq!(closed.status, CircuitStatus::Closed);
    assert_eq!(
        b.admit(ProviderId::Postmark, at(&clock, 32)).await.unwrap(),
        Admission::Allowed
    );
    // A sees the closed circuit once its cache (read at 31 s) has aged.
    assert_eq!(
        a.admit(ProviderId::Postmark, at(&clock, 33)).await.unwrap(),
        Admission::Allowed
    );
}

#[tokio::test]
async fn a_failed_probe_reopens_the_circuit_for_everyone() {
    let t = TestStack::new().await;
    let clock = FixedClock::at_unix(T0);
    let a = instance(&t);
    let b = instance(&t);
    open_breaker(&a, ProviderId::Smtp2go, clock.now()).await;
    assert!(matches!(
        b.admit(ProviderId::Smtp2go, at(&clock, 30)).await.unwrap(),
        Admission::Probe(_)
    ));
    let reopened = b
        .record_failure(ProviderId::Smtp2go, at(&clock, 31))
        .await
        .unwrap();
    assert_eq!(reopened.status, CircuitStatus::Open);
    let cold = instance(&t);
    assert_eq!(
        cold.admit(ProviderId::Smtp2go, at(&clock, 31))
            .await
            .unwrap(),
        Admission::Rejected {
            retry_at: at(&clock, 61)
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_of_two_instances_gets_the_single_probe_slot() {
    let t = TestStack::new().await;
    let clock = FixedClock::at_unix(T0);
    let a = instance(&t);
    let b = instance(&t);
    open_breaker(&a, ProviderId::Mailgun, clock.now()).await;
    // Both hold the open state in their caches when the recovery timeout passes.
    for instance in [&a, &b] {
        assert!(
            !instance
                .admit(ProviderId::Mailgun, at(&clock, 29))
                .await
                .unwrap()
                .is_admitted()
        );
    }
    let now = at(&clock, 30);
    let (first, second) = tokio::join!(
        a.admit(ProviderId::Mailgun, now),
        b.admit(ProviderId::Mailgun, now)
    );
    let outcomes = [first.unwrap(), second.unwrap()];
    let probes = outcomes
        .iter()
        .filter(|o| matches!(o, Admission::Probe(_)))
        .count();
    assert_eq!(probes, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Admission::Rejected { .. }))
    );
}

#[tokio::test]
async fn a_token_bucket_shared_by_two_instances_spends_one_budget() {
    let t = TestStack::new().await;
    let clock = FixedClock::at_unix(T0);
    let a = instance(&t);
    let b = instance(&t);
    // Postmark: 1 per second, burst 4. Alternate instances, each with a warm (and soon stale)
    // cache: four tokens in all, not four each.
    let mut granted = 0;
    let mut refused = Vec::new();
    for i in 0..10 {
        let instance = if i % 2 == 0 { &a } else { &b };
        match instance
            .take_token(ProviderId::Postmark, clock.now())
            .await
            .unwrap()
        {
            Ok(()) => granted += 1,
            Err(denied) => refused.push(denied),
        }
    }
    assert_eq!(granted, 4);
    assert_eq!(refused.len(), 6);
    assert!(
        refused
            .iter()
            .all(|d| *d == TakeDenied::RetryAt(at(&clock, 1)))
    );

    // One second later exactly one more token has accrued, for whichever instance asks first.
    let later = at(&clock, 1);
    let (first, second) = tokio::join!(
        a.take_token(ProviderId::Postmark, later),
        b.take_token(ProviderId::Postmark, later)
    );
    let results = [first.unwrap(), second.unwrap()];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );

    let item = t
        .clients
        .dynamodb
        .get_item()
        .table_name(t.table("ControlTable"))
        .key("pk", AttributeValue::S("bucket#postmark".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["milli_tokens"].as_n().unwrap(), "0");
    assert_eq!(item["version"].as_n().unwrap(), "5");
}

#[tokio::test]
async fn a_provider_without_a_rate_limit_is_never_limited() {
    let t = TestStack::new().await;
    let clock = FixedClock::at_unix(T0);
    let a = instance(&t);
    for _ in 0..20 {
        assert_eq!(
            a.take_token(ProviderId::Ses, clock.now()).await.unwrap(),
            Ok(())
        );
    }
    let items = t
        .clients
        .dynamodb
        .scan()
        .table_name(t.table("ControlTable"))
        .send()
        .await
        .unwrap();
    assert_eq!(items.count, 0);
}
