#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! The send service over real HTTP and the shared provider health: two local servers answer as
//! SendGrid (`POST /v3/mail/send`) and Postmark (`POST /email`) do per PROVIDERS.md, the real
//! senders are built from environment-style configuration, and `DynamoDbProviderHealth` keeps
//! the breakers in the emulator's control table. Each `SendService` with its own
//! `DynamoDbProviderHealth` stands for one Lambda instance with its own cache; time is injected.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mailgate_aws::{DynamoDbProviderHealth, ProviderHealthConfig};
use mailgate_core::AttemptOutcome;
use mailgate_core::{
    BreakerConfig, CircuitStatus, Clock, EmailAddress, FixedClock, Mailbox, MessageId,
    OutboundEmail, ProviderId,
};
use mailgate_lambda::wiring::provider_health_config;
use mailgate_providers::config::ProvidersConfig;
use mailgate_services::send::{SendOutcome, SendService};
use mailgate_tests::TestStack;

const T0: i64 = 1_790_000_000;
const SENDGRID_KEY: &str = "SG.test-key";
const POSTMARK_TOKEN: &str = "pm-server-token";

/// A local provider: the status it answers with can be switched; it counts the requests it got.
#[derive(Clone)]
struct FakeProvider {
    base_url: String,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicU32>,
}

impl FakeProvider {
    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn hits(&self) -> u32 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// SendGrid: Bearer auth; 202 with an empty body and `X-Message-Id`, or an `errors` body.
fn sendgrid_answer(request: &Request, status: u16, n: u32) -> Response {
    let authorised = request.headers().get("authorization")
        == Some(&HeaderValue::from_static("Bearer SG.test-key"));
    if request.uri().path() != "/v3/mail/send" {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !authorised {
        let body = r#"{"errors":[{"field":null,"message":"The provided authorization grant is invalid, expired, or revoked","help":null}]}"#;
        return (StatusCode::UNAUTHORIZED, body).into_response();
    }
    if status == 202 {
        let mut response = StatusCode::ACCEPTED.into_response();
        response.headers_mut().insert(
            "x-message-id",
            HeaderValue::from_str(&format!("sg-{n}")).unwrap(),
        );
        return response;
    }
    let body = r#"{"errors":[{"field":null,"message":"Internal server error","help":null}]}"#;
    (StatusCode::from_u16(status).unwrap(), body).into_response()
}

/// Postmark: server-token auth; 200 with `ErrorCode` 0 and a `MessageID`, or an error body.
fn postmark_answer(request: &Request, status: u16, n: u32) -> Response {
    if request.uri().path() != "/email" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let authorised = request.headers().get("x-postmark-server-token")
        == Some(&HeaderValue::from_static(POSTMARK_TOKEN));
    let (status, body) = if !authorised {
        (
            401,
            r#"{"ErrorCode":10,"Message":"The Server Token you provided in the X-Postmark-Server-Token request header was invalid."}"#.to_owned(),
        )
    } else if status == 200 {
        (
            200,
            format!(
                r#"{{"To":"jane@example.org","SubmittedAt":"2026-11-23T10:00:00.0000000-05:00","MessageID":"pm-{n}","ErrorCode":0,"Message":"OK"}}"#
            ),
        )
    } else {
        (
            status,
            r#"{"ErrorCode":0,"Message":"Server error"}"#.to_owned(),
        )
    };
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

async fn serve(answer: fn(&Request, u16, u32) -> Response, status: u16) -> FakeProvider {
    let status = Arc::new(AtomicU16::new(status));
    let hits = Arc::new(AtomicU32::new(0));
    let (s, h) = (status.clone(), hits.clone());
    let app = axum::Router::new().fallback(move |request: Request| {
        let n = h.fetch_add(1, Ordering::SeqCst) + 1;
        let response = answer(&request, s.load(Ordering::SeqCst), n);
        async move { response }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    FakeProvider {
        base_url: format!("http://{addr}"),
        status,
        hits,
    }
}

/// The world of one test: the stack, both providers and the shared (injected) time.
struct World {
    stack: TestStack,
    sendgrid: FakeProvider,
    postmark: FakeProvider,
    clock: Arc<FixedClock>,
    config: ProvidersConfig,
}

impl World {
    async fn new() -> Self {
        let stack = TestStack::new().await;
        let sendgrid = serve(sendgrid_answer, 202).await;
        let postmark = serve(postmark_answer, 200).await;
        let vars: HashMap<&str, String> = HashMap::from([
            ("MAILGATE_PROVIDERS", "sendgrid,postmark".to_owned()),
            ("SENDGRID_API_KEY", SENDGRID_KEY.to_owned()),
            ("SENDGRID_BASE_URL", sendgrid.base_url.clone()),
            ("POSTMARK_SERVER_TOKEN", POSTMARK_TOKEN.to_owned()),
            ("POSTMARK_BASE_URL", postmark.base_url.clone()),
            ("SEND_TIMEOUT_MS", "3000".to_owned()),
        ]);
        let config = ProvidersConfig::from_lookup(|name| vars.get(name).cloned()).unwrap();
        Self {
            stack,
            sendgrid,
            postmark,
            clock: Arc::new(FixedClock::at_unix(T0)),
            config,
        }
    }

    /// A Lambda instance's health: its own cache over the shared control table.
    fn health(&self) -> DynamoDbProviderHealth {
        DynamoDbProviderHealth::new(
            self.stack.clients.dynamodb.clone(),
            self.stack.table("ControlTable"),
            ProviderHealthConfig {
                breaker: BreakerConfig {
                    failure_threshold: 2,
                    ..BreakerConfig::default()
                },
                ..provider_health_config(&self.config)
            },
        )
    }

    /// A Lambda instance: its own senders and its own health cache.
    fn instance(&self) -> SendService {
        let senders = self
            .config
            .senders(|| unreachable!("SES is not listed"))
            .unwrap();
        SendService::new(
            senders,
            self.config.order.clone(),
            self.config.failover_policy(),
            Arc::new(self.health()),
        )
        .unwrap()
        .with_clock(self.clock.clone())
    }

    async fn breaker(&self, provider: ProviderId) -> mailgate_core::BreakerState {
        // A fresh instance reads the stored state, not anyone's cache.
        self.health()
            .breaker(provider, self.clock.now())
            .await
            .unwrap()
    }

    fn advance(&self, seconds: i64) {
        self.clock.advance(time::Duration::seconds(seconds));
    }
}

fn email() -> OutboundEmail {
    let mut e = OutboundEmail::new(
        MessageId::generate(),
        Mailbox::named(
            EmailAddress::parse("news@example.com").unwrap(),
            "Example News",
        ),
        EmailAddress::parse("jane@example.org").unwrap(),
        "Hello",
    );
    e.text = Some("Hi Jane".into());
    e
}

async fn send(service: &SendService) -> SendOutcome {
    service
        .send(&email(), None, Duration::from_secs(10))
        .await
        .outcome
}

fn sent_by(outcome: &SendOutcome) -> ProviderId {
    match outcome {
        SendOutcome::Sent { provider, .. } => *provider,
        other => panic!("expected a sent message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_primary_answering_500_fails_over_to_the_secondary_and_counts_against_the_primary() {
    let w = World::new().await;
    w.sendgrid.answer(500);
    let service = w.instance();

    let report = service.send(&email(), None, Duration::from_secs(10)).await;
    assert_eq!(
        report.outcome,
        SendOutcome::Sent {
            provider: ProviderId::Postmark,
            provider_message_id: "pm-1".into()
        }
    );
    assert_eq!(report.attempts.len(), 2);
    assert_eq!(report.attempts[0].provider, ProviderId::Sendgrid);
    assert_eq!(report.attempts[0].outcome, AttemptOutcome::Failed);
    assert_eq!(report.attempts[0].status, Some(500));
    assert_eq!(
        report.attempts[0].category,
        Some(mailgate_core::ErrorCategory::ServiceUnavailable)
    );
    assert_eq!(report.attempts[1].outcome, AttemptOutcome::Accepted);
    assert_eq!((w.sendgrid.hits(), w.postmark.hits()), (1, 1));
    assert_eq!(w.breaker(ProviderId::Sendgrid).await.failures, 1);

    // A second failure grows the stored count (and, at the threshold of 2, opens the circuit).
    assert_eq!(sent_by(&send(&service).await), ProviderId::Postmark);
    let breaker = w.breaker(ProviderId::Sendgrid).await;
    assert_eq!(breaker.failures, 2);
    assert_eq!(breaker.status, CircuitStatus::Open);
    assert_eq!(w.breaker(ProviderId::Postmark).await.failures, 0);
}

#[tokio::test]
async fn a_breaker_opened_by_one_instance_is_skipped_by_a_second_instance_with_its_own_cache() {
    let w = World::new().await;
    let a = w.instance();
    let b = w.instance();

    // B sends through SendGrid and caches its closed breaker.
    assert_eq!(sent_by(&send(&b).await), ProviderId::Sendgrid);
    assert_eq!(w.sendgrid.hits(), 1);

    // SendGrid starts failing; A's two failures open the shared breaker.
    w.sendgrid.answer(500);
    for _ in 0..2 {
        assert_eq!(sent_by(&send(&a).await), ProviderId::Postmark);
    }
    assert_eq!(w.sendgrid.hits(), 3);
    assert_eq!(
        w.breaker(ProviderId::Sendgrid).await.status,
        CircuitStatus::Open
    );

    // Once B's cache has aged out, B skips SendGrid without calling it.
    w.advance(3);
    let report = b.send(&email(), None, Duration::from_secs(10)).await;
    assert_eq!(sent_by(&report.outcome), ProviderId::Postmark);
    assert_eq!(report.attempts.len(), 1);
    assert_eq!(report.attempts[0].provider, ProviderId::Postmark);
    assert_eq!(w.sendgrid.hits(), 3);
}

#[tokio::test]
async fn after_the_recovery_timeout_a_successful_half_open_probe_closes_the_breaker() {
    let w = World::new().await;
    let a = w.instance();
    let b = w.instance();
    w.sendgrid.answer(500);
    for _ in 0..2 {
        assert_eq!(sent_by(&send(&a).await), ProviderId::Postmark);
    }
    assert_eq!(
        w.breaker(ProviderId::Sendgrid).await.status,
        CircuitStatus::Open
    );

    // SendGrid has recovered; 31 s later (recovery timeout 30 s) B's send is the probe.
    w.sendgrid.answer(202);
    w.advance(31);
    assert_eq!(sent_by(&send(&b).await), ProviderId::Sendgrid);
    let breaker = w.breaker(ProviderId::Sendgrid).await;
    assert_eq!(breaker.status, CircuitStatus::Closed);
    assert_eq!(breaker.failures, 0);

    // And A, whose cache is stale too, sends through SendGrid again.
    w.advance(3);
    assert_eq!(sent_by(&send(&a).await), ProviderId::Sendgrid);
    assert_eq!(w.sendgrid.hits(), 4);
}
