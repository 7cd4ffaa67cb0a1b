//! Figure G of `make bench`: message search against the local emulator.
//!
//! `MESSAGES` messages to one address (and as many to others, so the index is not that
//! address's alone) are created through the send path's own create (the search entries in the
//! same transaction), then `GET /v1/messages?recipient=…&limit=20` and
//! `GET /v1/messages?correlation_id=…` run `QUERIES` times each through the real send-api
//! handler with DynamoDB clients that count every call. Printed:
//! `bench messages_find_recipient_p50`, `bench messages_find_correlation_id_p50` (ms, median
//! request), `bench messages_find_dynamodb_calls_per_page` (a full page of 20: one index
//! Query, one BatchGetItem of the summaries, one Query per message for its last event) and
//! `bench messages_create_dynamodb_calls` (one TransactWriteItems per message). Moto's speed, a
//! single Python process: it compares runs of this benchmark, not production.

// Shared with the webhook benches; only `figure` is used here.
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request};
use mailgate_aws::{DynamoDbApiKeys, DynamoDbMessages};
use mailgate_core::{
    ApiKeyLabel, ApiKeyRecord, ApiKeySecret, EmailAddress, KeyEnvironment, Mailbox, MessageId,
    MessageRecord, MessageState, OutboundEmail, Scopes, UnixMillis,
};
use mailgate_tests::calls::counted_clients;
use mailgate_tests::{ENDPOINT_VAR, TestStack, fixture};
use send_api::{SendApi, SendApiConfig};
use serde_json::{Value, json};
use support::figure;
use time::OffsetDateTime;

/// Messages to the searched address.
const MESSAGES: usize = 100;
/// Timed requests per case.
const QUERIES: usize = 30;

fn request(auth: &str, query: &str) -> anyhow::Result<Request> {
    let mut event: Value = serde_json::from_str(&fixture("send-api/get-message.json"))?;
    event["rawPath"] = json!("/v1/messages");
    event["requestContext"]["http"]["path"] = json!("/v1/messages");
    event["rawQueryString"] = json!(query);
    let mut request = lambda_http::request::from_str(&event.to_string())?;
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, HeaderValue::from_str(auth)?);
    Ok(request)
}

fn email(to: &str, i: usize) -> anyhow::Result<OutboundEmail> {
    let mut email = OutboundEmail::new(
        MessageId::generate(),
        Mailbox::new(EmailAddress::parse("hello@example.com")?),
        EmailAddress::parse(to)?,
        "Your receipt",
    );
    email.text = Some("Thanks.".into());
    email.tags = vec!["receipt".into()];
    email.correlation_id = Some(format!("order-{to}-{i}"));
    Ok(email)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os(ENDPOINT_VAR).is_none() {
        bail!("{ENDPOINT_VAR} is not set: run `make bench`, which starts the local AWS stack");
    }
    let stack = TestStack::new().await;
    let secret = ApiKeySecret::generate(KeyEnvironment::Test);
    let key = ApiKeyRecord::new(
        &secret,
        ApiKeyLabel::parse("search bench")?,
        KeyEnvironment::Test,
        Scopes::parse_list("read")?,
        OffsetDateTime::now_utc(),
    );
    DynamoDbApiKeys::new(stack.clients.dynamodb.clone(), stack.table("ApiKeysTable"))
        .create(&key)
        .await?;
    let (clients, calls) = counted_clients(&stack.sdk);
    let api = SendApi::new(
        SendApiConfig::from_lookup(stack.function_env("send-api"))?,
        clients.clone(),
    )?;
    let store = DynamoDbMessages::new(clients.dynamodb.clone(), stack.table("MessagesTable"));
    let auth = format!("Bearer {}", secret.expose());

    let start = UnixMillis::from(OffsetDateTime::now_utc()).as_i64() - 1_000_000;
    calls.take();
    for i in 0..MESSAGES {
        for to in ["searched@example.org", "someone.else@example.org"] {
            let email = email(to, i)?;
            let record = MessageRecord::new(
                &email,
                key.id.clone(),
                KeyEnvironment::Test,
                MessageState::Sent,
                UnixMillis(start + i as i64),
                None,
                &[],
            );
            store.create(&record, &email).await?;
        }
    }
    let created = calls.take();
    figure(
        "messages_create_dynamodb_calls",
        format!(
            "{:.2}",
            created.total("dynamodb") as f64 / (2 * MESSAGES) as f64
        ),
        "calls",
    );

    for (case, query, expected) in [
        ("recipient", "recipient=searched%40example.org&limit=20", 20),
        (
            "correlation_id",
            "correlation_id=order-searched%40example.org-7",
            1,
        ),
    ] {
        let mut times: Vec<Duration> = Vec::new();
        let mut per_page = 0;
        // Round 0 warms up (connections) and is not counted.
        for round in 0..=QUERIES {
            calls.take();
            let started = Instant::now();
            let response = api.handle(request(&auth, query)?).await;
            let elapsed = started.elapsed();
            let counted = calls.take();
            if response.status() != StatusCode::OK {
                bail!("{case}: {:?}", response.body());
            }
            let Body::Text(text) = response.body() else {
                bail!("{case}: not a text body");
            };
            let page: Value = serde_json::from_str(text)?;
            let found = page["data"].as_array().context("data")?.len();
            if found != expected {
                bail!("{case}: {found} messages, expected {expected}");
            }
            if round > 0 {
                times.push(elapsed);
                per_page = counted.total("dynamodb");
            }
        }
        times.sort();
        let p50 = times[times.len() / 2];
        figure(
            &format!("messages_find_{case}_p50"),
            format!("{:.1}", p50.as_secs_f64() * 1000.0),
            "ms",
        );
        if case == "recipient" {
            // The API-key lookup of authentication is one of them.
            figure("messages_find_dynamodb_calls_per_page", per_page, "calls");
        }
    }
    Ok(())
}
