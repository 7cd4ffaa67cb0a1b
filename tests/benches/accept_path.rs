//! Figure G of `make bench`: the synchronous accept path (`POST /v1/messages`) against moto,
//! before and after the one-round-trip change, in one run on the same stack.
//!
//! Both paths run the real services on clients whose DynamoDB calls are counted on the wire
//! (`mailgate_tests::calls`), with a local SendGrid that answers 202 at once, so the time is
//! the DynamoDB round trips (moto's) and our own CPU:
//!
//! - `reads`: the path as it was: the API key read on every request (`GetItem`), the
//!   suppression check (`BatchGetItem`), then the create-and-claim transaction;
//! - `one_round_trip`: the key cached by the container and confirmed inside the one
//!   transaction that claims the `Idempotency-Key`, records the message and checks each
//!   recipient's suppression items (what `send-api` ships).
//!
//! Each request has its own `Idempotency-Key` and two recipients, nothing suppressed; the two
//! paths take turns. Lines: `bench accept_path_p50_<path> <ms> ms` (median of the measured
//! requests, after warm-ups that fill the key cache and the breaker cache) and `bench accept_path_dynamodb_calls_<path>
//! <n> calls` (per request, the breaker's cache refreshes included, as they happen).
//!
//! The wall time is moto's, one Python process on this machine: it compares the two paths
//! with each other, not with DynamoDB's latency.

// Shared with the other benches; only `figure` is used here.
#[allow(dead_code)]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::http::StatusCode as AxumStatus;
use axum::response::IntoResponse;
use mailgate_aws::{
    AwsClients, DynamoDbApiKeys, DynamoDbIdempotencyStore, DynamoDbSendControls,
    DynamoDbSuppressionList, Queue, SqsSendQueue, Table,
};
use mailgate_core::idempotency::RequestFingerprint;
use mailgate_core::{
    ApiKeyLabel, ApiKeyRecord, ApiKeySecret, KeyEnvironment, Requirement, Scope, Scopes,
    SystemClock,
};
use mailgate_lambda::wiring::{message_delivery, message_intake, message_store};
use mailgate_services::accept::{AcceptOutcome, AcceptPorts, AcceptSettings, KeyedRequest};
use mailgate_services::auth::Authentication;
use mailgate_services::send::{ThreadRandom, TokioSleeper};
use mailgate_tests::calls::{CallLog, counted_clients};
use mailgate_tests::{ENDPOINT_VAR, TestStack};
use send_api::SendApiConfig;
use support::figure;
use time::OffsetDateTime;

/// Requests measured per path (after the warm-ups).
const RUNS: usize = 40;
/// Requests per path that are not measured (key cache, breaker cache, connections).
const WARM_UPS: usize = 3;

/// A local SendGrid answering every send with 202 and an `X-Message-Id`.
async fn sendgrid() -> anyhow::Result<String> {
    let app = axum::Router::new().fallback(|| async {
        let mut response = AxumStatus::ACCEPTED.into_response();
        response.headers_mut().insert(
            "x-message-id",
            axum::http::HeaderValue::from_static("sg-bench"),
        );
        response
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://{addr}"))
}

/// One way of accepting a message: authenticate, then accept.
enum Path {
    Reads {
        auth: Authentication,
        intake: mailgate_services::accept::MessageIntake,
    },
    OneRoundTrip {
        auth: Authentication,
        intake: mailgate_services::accept::MessageIntake,
    },
}

impl Path {
    async fn accept(&self, authorization: &str, body: &[u8], n: usize) -> anyhow::Result<()> {
        let header = Some(authorization.as_bytes());
        let keyed = |id: &str| KeyedRequest {
            scoped_key: format!("{id}#bench-{n}"),
            fingerprint: RequestFingerprint::of_body(body).unwrap_or_else(|_| unreachable!()),
        };
        let outcome = match self {
            Path::Reads { auth, intake } => {
                let key = auth
                    .authenticate(header, Requirement::Scope(Scope::Send))
                    .await?;
                let k = keyed(key.id.as_str());
                intake.accept(&key, body, Some(k)).await
            }
            Path::OneRoundTrip { auth, intake } => {
                let (key, guard) = auth.authenticate_cached(header, Scope::Send).await?;
                let k = keyed(key.id.as_str());
                let accepting = intake
                    .accept_with_cached_key(&key, guard.as_ref(), body, Some(k))
                    .await;
                if guard.is_some() && !accepting.key_confirmed {
                    bail!("the cached key was not confirmed");
                }
                accepting.outcome
            }
        };
        match outcome {
            AcceptOutcome::Accepted(a) if a.status.as_str() == "sent" => Ok(()),
            other => bail!("request {n} was not sent: {other:?}"),
        }
    }
}

/// The median of `times`, in ms.
fn median_ms(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1_000.0
}

/// Measures both paths, their requests interleaved so that both meet tables of the same size
/// (moto copies every table a transaction touches, so its time grows with the tables): the
/// median wall time in ms and the DynamoDB calls per request of each.
async fn measure(
    paths: [(&Path, &CallLog); 2],
    authorization: &str,
    body: &[u8],
) -> anyhow::Result<[(f64, f64); 2]> {
    let mut n = 0;
    for _ in 0..WARM_UPS {
        for (path, _) in paths {
            path.accept(authorization, body, n).await?;
            n += 1;
        }
    }
    for (_, log) in paths {
        log.take();
    }
    let mut times = [Vec::with_capacity(RUNS), Vec::with_capacity(RUNS)];
    for _ in 0..RUNS {
        for (i, (path, _)) in paths.iter().enumerate() {
            let started = Instant::now();
            path.accept(authorization, body, n).await?;
            times[i].push(started.elapsed());
            n += 1;
        }
    }
    let [a, b] = times;
    let calls = |log: &CallLog| log.take().total("dynamodb") as f64 / RUNS as f64;
    Ok([
        (median_ms(a), calls(paths[0].1)),
        (median_ms(b), calls(paths[1].1)),
    ])
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var(ENDPOINT_VAR).is_err() {
        bail!("{ENDPOINT_VAR} is not set: run this through `make bench`, which starts moto");
    }
    let t = TestStack::new().await;
    let base_url = sendgrid().await?;
    let base = t.function_env("send-api");
    let lookup = move |k: &str| match k {
        "MAILGATE_PROVIDERS" => Some("sendgrid".to_owned()),
        "SENDGRID_API_KEY" => Some("SG.bench-key".to_owned()),
        "SENDGRID_BASE_URL" => Some(base_url.clone()),
        other => base(other),
    };
    let config = SendApiConfig::from_lookup(lookup)
        .map_err(|e| anyhow::anyhow!("send-api configuration: {e}"))?;
    let names = &config.names;

    let secret = ApiKeySecret::generate(KeyEnvironment::Test);
    let record = ApiKeyRecord::new(
        &secret,
        ApiKeyLabel::parse("bench")?,
        KeyEnvironment::Test,
        Scopes::parse_list("send")?,
        OffsetDateTime::now_utc(),
    );
    DynamoDbApiKeys::new(t.clients.dynamodb.clone(), names.table(Table::ApiKeys))
        .create(&record)
        .await
        .context("storing the bench key")?;
    let authorization = format!("Bearer {}", secret.expose());
    let body = serde_json::json!({
        "from": {"email": "hello@example.com", "name": "Example"},
        "to": ["jane@example.org"],
        "cc": ["joe@example.org"],
        "subject": "Your receipt",
        "text": "Thanks for your order.",
    })
    .to_string()
    .into_bytes();

    let settings = AcceptSettings {
        send_budget: config.providers.send_budget,
        idempotency_retention: config.idempotency_retention,
        limits: mailgate_core::SendLimits::default(),
        unsubscribe: None,
        replies: None,
    };
    let wire = |clients: &AwsClients| -> anyhow::Result<_> {
        let delivery = Arc::new(message_delivery(clients, names, &config.providers)?);
        let auth = Authentication::new(Arc::new(DynamoDbApiKeys::new(
            clients.dynamodb.clone(),
            names.table(Table::ApiKeys),
        )));
        Ok((delivery, auth))
    };

    // Before: today's reads, with the message store of the send path wired without guards.
    let (reads_clients, reads_log) = counted_clients(&t.sdk);
    let (delivery, auth) = wire(&reads_clients)?;
    let dynamodb = &reads_clients.dynamodb;
    let ports = AcceptPorts {
        messages: Arc::new(message_store(&reads_clients, names)),
        idempotency: Arc::new(DynamoDbIdempotencyStore::new(
            dynamodb.clone(),
            names.table(Table::Idempotency),
        )),
        suppressions: Arc::new(DynamoDbSuppressionList::new(
            dynamodb.clone(),
            names.table(Table::Suppressions),
        )),
        controls: Arc::new(DynamoDbSendControls::new(
            dynamodb.clone(),
            names.table(Table::Control),
        )),
        queue: Arc::new(SqsSendQueue::new(
            reads_clients.sqs.clone(),
            names.queue_url(Queue::Send),
        )),
        templates: Arc::new(mailgate_aws::DynamoDbTemplates::new(
            dynamodb.clone(),
            names.table(Table::Templates),
        )),
        clock: Arc::new(SystemClock),
        sleeper: Arc::new(TokioSleeper),
        random: Arc::new(ThreadRandom),
    };
    let reads = Path::Reads {
        auth,
        intake: mailgate_services::accept::MessageIntake::new(ports, delivery, settings.clone()),
    };

    // After: the wiring `send-api` ships.
    let (guarded_clients, guarded_log) = counted_clients(&t.sdk);
    let (delivery, auth) = wire(&guarded_clients)?;
    let one = Path::OneRoundTrip {
        auth,
        intake: message_intake(&guarded_clients, names, delivery, settings),
    };

    let [(reads_ms, reads_calls), (one_ms, one_calls)] = measure(
        [(&reads, &reads_log), (&one, &guarded_log)],
        &authorization,
        &body,
    )
    .await?;
    figure("accept_path_p50_reads", format!("{reads_ms:.2}"), "ms");
    figure(
        "accept_path_p50_one_round_trip",
        format!("{one_ms:.2}"),
        "ms",
    );
    figure(
        "accept_path_dynamodb_calls_reads",
        format!("{reads_calls:.2}"),
        "calls",
    );
    figure(
        "accept_path_dynamodb_calls_one_round_trip",
        format!("{one_calls:.2}"),
        "calls",
    );
    Ok(())
}
