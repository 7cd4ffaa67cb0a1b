#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Webhooks to the team's own app, end to end against the emulator's stack from the template:
//! endpoints managed through the store and `mailgate-admin`, the fan-out of delivery events onto
//! the outbound queue, and the `dispatcher` POSTing to a local axum server that verifies every
//! delivery with the independent `standardwebhooks` crate (never with our own signing code);
//! retries after `503` + `Retry-After` and after a redirect, `410` disabling the endpoint, and
//! `mailgate-admin dlq replay`.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use clap::Parser;
use mailgate_aws::{DynamoDbEndpoints, EndpointStoreError, OutboundDelivery, SqsOutboundQueue};
use mailgate_core::{
    BounceReport, DeliveryEvent, EmailAddress, EndpointFilter, EnhancedStatus, EventKind,
    EventSource, MessageId, ProviderId, UnixMillis, app_event_key, webhook_message_id,
};
use mailgate_services::fan_out::AppWebhookFanOut;
use mailgate_tests::TestStack;
use mailgate_tests::app_endpoint::AppEndpoint;
use serde_json::{Value, json};
use time::OffsetDateTime;

fn now() -> UnixMillis {
    UnixMillis::from(OffsetDateTime::now_utc())
}

fn endpoints(t: &TestStack) -> DynamoDbEndpoints {
    DynamoDbEndpoints::new(t.clients.dynamodb.clone(), t.table("EndpointsTable"))
}

fn outbound(t: &TestStack) -> SqsOutboundQueue {
    SqsOutboundQueue::new(t.clients.sqs.clone(), t.queue_url("OutboundQueue"))
}

fn fan_out(t: &TestStack) -> AppWebhookFanOut {
    AppWebhookFanOut::new(Arc::new(endpoints(t)), Arc::new(outbound(t)))
}

/// The dispatcher as the template configures it, with the retry base set to `base_secs`.
fn dispatcher(t: &TestStack, base_secs: &'static str) -> dispatcher::Function {
    let env = t.function_env("dispatcher");
    let config = dispatcher::Config::from_lookup(move |k| {
        if k == dispatcher::RETRY_BASE_VAR {
            Some(base_secs.to_owned())
        } else {
            env(k)
        }
    })
    .unwrap();
    dispatcher::Function::new(config, t.clients.clone()).unwrap()
}

fn event(key: &str, kind: EventKind) -> DeliveryEvent {
    DeliveryEvent {
        key: key.into(),
        kind,
        provider_type: kind.as_str().into(),
        provider: ProviderId::Ses,
        recipient: Some(EmailAddress::parse("jane@example.com").unwrap()),
        provider_message_id: Some("0100018c-example".into()),
        message_id: None,
        occurred_at: Some(now()),
        received_at: now(),
        bounce: (kind == EventKind::Bounced).then(|| BounceReport {
            status: Some(EnhancedStatus::parse("5.1.1").unwrap()),
            diagnostic: Some("550 5.1.1 user unknown".into()),
            ..Default::default()
        }),
        url: None,
        detail: None,
        provider_suppressed: false,
        complaint_feedback: None,
        source: EventSource {
            receipt: "ses#r".into(),
            index: 0,
            recipient_index: 0,
        },
    }
}

/// Receives what is visible on the outbound queue now (without deleting it).
async fn receive(t: &TestStack, wait_secs: i32) -> Vec<aws_sdk_sqs::types::Message> {
    t.clients
        .sqs
        .receive_message()
        .queue_url(t.queue_url("OutboundQueue"))
        .max_number_of_messages(10)
        .wait_time_seconds(wait_secs)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
}

/// The SQS event Lambda's event source mapping would send for `messages`.
fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> aws_lambda_events::event::sqs::SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes
                .iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                .collect();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "eventSource": "aws:sqs",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// Deletes a handled record, as the event source mapping does for records not reported failed.
async fn delete(t: &TestStack, m: &aws_sdk_sqs::types::Message) {
    t.clients
        .sqs
        .delete_message()
        .queue_url(t.queue_url("OutboundQueue"))
        .receipt_handle(m.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
}

async fn queue_depth(t: &TestStack, logical_id: &str) -> (i64, i64) {
    let out = t
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(t.queue_url(logical_id))
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attrs = out.attributes().unwrap();
    let n = |name: QueueAttributeName| {
        attrs
            .get(&name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_default()
    };
    (
        n(QueueAttributeName::ApproximateNumberOfMessages),
        n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Runs `mailgate-admin` with `args` against the stack, returning its output.
async fn admin(t: &TestStack, args: &[&str]) -> Result<String, mailgate_admin::AdminError> {
    let cli = mailgate_admin::Cli::try_parse_from(
        std::iter::once("mailgate-admin").chain(args.iter().copied()),
    )
    .unwrap();
    let mut out = Vec::new();
    mailgate_admin::run_with_sqs(cli, &t.clients.dynamodb, Some(&t.clients.sqs), &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

fn field<'a>(output: &'a str, name: &str) -> &'a str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {output}"))
        .trim()
}

#[tokio::test]
async fn endpoints_are_added_listed_rotated_disabled_and_removed_through_the_store() {
    let t = TestStack::new().await;
    let store = endpoints(&t);
    let (ep, first) = store
        .add(
            "https://app.example.com/hooks",
            EndpointFilter::parse_list("email.delivered,email.bounced").unwrap(),
            now(),
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .add("http://app.example.com/hooks", EndpointFilter::all(), now())
            .await,
        Err(EndpointStoreError::InvalidUrl(_))
    ));
    let listed = store.list(now()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0], ep);

    let second = store.rotate_secret(&ep.id, now()).await.unwrap();
    let got = store.get(&ep.id, now()).await.unwrap().unwrap();
    assert_eq!(got.signing_secrets(now()), vec![&second, &first]);
    // A day later only the new secret signs, and reading drops the expired one.
    let tomorrow = now().saturating_add(Duration::from_secs(24 * 3600 + 1));
    let later = store.get(&ep.id, tomorrow).await.unwrap().unwrap();
    assert_eq!(later.signing_secrets(tomorrow), vec![&second]);
    assert_eq!(later.secrets.len(), 1);

    store.disable(&ep.id, "410 Gone", now()).await.unwrap();
    assert!(store.list_enabled(now()).await.unwrap().is_empty());
    let disabled = store.get(&ep.id, now()).await.unwrap().unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.disabled_reason.as_deref(), Some("410 Gone"));

    store.remove(&ep.id).await.unwrap();
    assert!(store.get(&ep.id, now()).await.unwrap().is_none());
    assert!(matches!(
        store.remove(&ep.id).await,
        Err(EndpointStoreError::UnknownId(_))
    ));
    assert!(matches!(
        store.rotate_secret(&ep.id, now()).await,
        Err(EndpointStoreError::UnknownId(_))
    ));
}

#[tokio::test]
async fn the_admin_commands_add_list_rotate_and_remove_endpoints() {
    let t = TestStack::new().await;
    let table = t.table("EndpointsTable");
    let added = admin(
        &t,
        &[
            "endpoints",
            "add",
            "--url",
            "https://app.example.com/hooks",
            "--events",
            "email.delivered,email.bounced",
            "--table",
            &table,
        ],
    )
    .await
    .unwrap();
    let id = field(&added, "id").to_owned();
    let secret = field(&added, "secret").to_owned();
    assert!(id.starts_with("ep_"));
    assert!(secret.starts_with("whsec_"));
    assert!(standardwebhooks::Webhook::new(&secret).is_ok());

    let listed = admin(&t, &["endpoints", "list", "--table", &table])
        .await
        .unwrap();
    assert!(listed.contains(&id));
    assert!(listed.contains("email.delivered,email.bounced"));
    assert!(!listed.contains("whsec_"), "list never prints a secret");

    let rotated = admin(&t, &["endpoints", "rotate-secret", &id, "--table", &table])
        .await
        .unwrap();
    let new_secret = field(&rotated, "secret");
    assert!(new_secret.starts_with("whsec_"));
    assert_ne!(new_secret, secret);
    let listed = admin(&t, &["endpoints", "list", "--table", &table])
        .await
        .unwrap();
    let row = listed.lines().find(|l| l.contains(&id)).unwrap();
    assert!(row.contains(" yes "), "{row}");
    assert!(
        row.contains(" 2 "),
        "two secrets sign during the rotation: {row}"
    );

    let removed = admin(&t, &["endpoints", "remove", &id, "--table", &table])
        .await
        .unwrap();
    assert!(removed.contains(&id));
    let err = admin(&t, &["endpoints", "remove", &id, "--table", &table])
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), mailgate_admin::EXIT_UNKNOWN_KEY);
    let err = admin(
        &t,
        &[
            "endpoints",
            "add",
            "--url",
            "http://app.example.com/",
            "--table",
            &table,
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), mailgate_admin::EXIT_USAGE);
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[tokio::test]
async fn an_event_fans_out_to_the_matching_enabled_endpoints_only() {
    let t = TestStack::new().await;
    let store = endpoints(&t);
    let (all, _) = store
        .add("https://all.example.com/h", EndpointFilter::all(), now())
        .await
        .unwrap();
    let (bounces, _) = store
        .add(
            "https://bounces.example.com/h",
            EndpointFilter::parse_list("email.bounced").unwrap(),
            now(),
        )
        .await
        .unwrap();
    let (off, _) = store
        .add("https://off.example.com/h", EndpointFilter::all(), now())
        .await
        .unwrap();
    store.disable(&off.id, "410 Gone", now()).await.unwrap();

    let message_id = MessageId::generate();
    let delivered = event("e-1", EventKind::Delivered);
    let bounced = event("e-2", EventKind::Bounced);
    let notice = event("e-3", EventKind::AccountNotice);
    let n = fan_out(&t)
        .fan_out(&[
            (delivered.clone(), Some(message_id.clone().into())),
            (bounced.clone(), Some(message_id.clone().into())),
            (notice, None),
        ])
        .await
        .unwrap();
    assert_eq!(n, 3);

    let mut got: Vec<(String, String, Value)> = Vec::new();
    while got.len() < 3 {
        let batch = receive(&t, 1).await;
        assert!(
            !batch.is_empty(),
            "only {} deliveries on the queue",
            got.len()
        );
        for m in batch {
            let d = OutboundDelivery::parse(m.body().unwrap()).unwrap();
            got.push((
                d.endpoint_id.to_string(),
                d.webhook_id,
                serde_json::from_str(&d.body).unwrap(),
            ));
        }
    }
    got.sort_by(|a, b| (a.2["type"].as_str(), &a.0).cmp(&(b.2["type"].as_str(), &b.0)));
    let mut want_bounced = vec![all.id.to_string(), bounces.id.to_string()];
    want_bounced.sort();
    assert_eq!(
        got.iter().map(|g| g.0.clone()).collect::<Vec<_>>(),
        [want_bounced, vec![all.id.to_string()]].concat()
    );
    assert!(got.iter().all(|g| g.0 != off.id.to_string()));
    let delivered_body = &got[2].2;
    assert_eq!(delivered_body["type"], "email.delivered");
    assert_eq!(delivered_body["data"]["message_id"], message_id.as_str());
    assert_eq!(got[0].2["data"]["bounce"]["cause"], "user_unknown");
    assert_eq!(
        got[2].1,
        webhook_message_id(&all.id, &app_event_key(&delivered))
    );
}

/// Adds an endpoint for `url`, fans one `delivered` event out to it and returns the endpoint
/// id, its secret and the webhook id the delivery must carry.
async fn one_delivery(t: &TestStack, url: &str) -> (mailgate_core::EndpointId, String, String) {
    let (ep, secret) = endpoints(t)
        .add(url, EndpointFilter::all(), now())
        .await
        .unwrap();
    let e = event(&format!("e-{}", uuid::Uuid::new_v4()), EventKind::Delivered);
    assert_eq!(
        fan_out(t)
            .fan_out(&[(e.clone(), Some(MessageId::generate().into()))])
            .await
            .unwrap(),
        1
    );
    let webhook_id = webhook_message_id(&ep.id, &app_event_key(&e));
    (ep.id, secret.expose(), webhook_id)
}

#[tokio::test]
async fn the_dispatcher_delivers_a_webhook_that_the_standard_webhooks_library_verifies() {
    let t = TestStack::new().await;
    let (app, url) = AppEndpoint::start().await;
    let (_, secret, webhook_id) = one_delivery(&t, &url).await;
    app.verify_with(std::slice::from_ref(&secret));

    let records = receive(&t, 1).await;
    assert_eq!(records.len(), 1);
    let response = dispatcher(&t, "0").handle(sqs_event(&records)).await;
    assert!(response.batch_item_failures.is_empty());

    let got = app.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].verified, vec![true], "standardwebhooks verifies it");
    assert_eq!(got[0].header("webhook-id"), webhook_id);
    assert_eq!(got[0].header("content-type"), "application/json");
    let sent_at: i64 = got[0].header("webhook-timestamp").parse().unwrap();
    assert!((sent_at - OffsetDateTime::now_utc().unix_timestamp()).abs() < 60);
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["type"], "email.delivered");
    assert_eq!(body["data"]["recipient"], "jane@example.com");
    // A tampered body does not verify: the check above is a real one.
    assert!(
        standardwebhooks::Webhook::new(&secret)
            .unwrap()
            .verify(b"{}", &got[0].headers)
            .is_err()
    );
}

#[tokio::test]
async fn during_a_rotation_the_old_and_the_new_secret_both_verify() {
    let t = TestStack::new().await;
    let (app, url) = AppEndpoint::start().await;
    let (id, old, _) = one_delivery(&t, &url).await;
    let new = endpoints(&t)
        .rotate_secret(&id, now())
        .await
        .unwrap()
        .expose();
    let stranger = mailgate_core::WebhookSecret::generate().expose();
    app.verify_with(&[old, new, stranger]);

    let records = receive(&t, 1).await;
    let response = dispatcher(&t, "0").handle(sqs_event(&records)).await;
    assert!(response.batch_item_failures.is_empty());
    let got = app.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].verified,
        vec![true, true, false],
        "verifies with the old and the new secret, not with another"
    );
    assert_eq!(got[0].header("webhook-signature").split(' ').count(), 2);
}

#[tokio::test]
async fn a_503_with_retry_after_is_retried_after_that_delay_with_the_same_webhook_id() {
    let t = TestStack::new().await;
    let (app, url) = AppEndpoint::start().await;
    let (_, secret, webhook_id) = one_delivery(&t, &url).await;
    app.verify_with(&[secret]);
    app.answer(503, &[("retry-after", "2")]);
    let function = dispatcher(&t, "0");

    let first = receive(&t, 1).await;
    let response = function.handle(sqs_event(&first)).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(
        response.batch_item_failures[0].item_identifier,
        first[0].message_id().unwrap()
    );
    // Hidden for the Retry-After delay, not the queue's 180 s visibility timeout.
    assert!(receive(&t, 0).await.is_empty());
    assert_eq!(queue_depth(&t, "OutboundQueue").await, (0, 1));
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let second = receive(&t, 2).await;
    assert_eq!(second.len(), 1, "visible again after Retry-After");
    assert_eq!(
        second[0]
            .attributes()
            .unwrap()
            .get(&MessageSystemAttributeName::ApproximateReceiveCount)
            .map(String::as_str),
        Some("2")
    );
    let response = function.handle(sqs_event(&second)).await;
    assert!(response.batch_item_failures.is_empty());
    delete(&t, &second[0]).await;

    let got = app.received();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|r| r.verified == vec![true]));
    assert!(got.iter().all(|r| r.header("webhook-id") == webhook_id));
    assert_eq!(got[0].body, got[1].body);
}

#[tokio::test]
async fn a_redirect_is_a_failure_retried_with_backoff() {
    let t = TestStack::new().await;
    let (app, url) = AppEndpoint::start().await;
    let (_, secret, _) = one_delivery(&t, &url).await;
    app.verify_with(&[secret]);
    app.answer(302, &[("location", "http://127.0.0.1:9/elsewhere")]);
    // A zero retry base makes the backoff zero, so the retry is visible at once.
    let function = dispatcher(&t, "0");

    let first = receive(&t, 1).await;
    let response = function.handle(sqs_event(&first)).await;
    assert_eq!(response.batch_item_failures.len(), 1, "3xx is a failure");
    let again = receive(&t, 2).await;
    assert_eq!(
        again.len(),
        1,
        "the backoff (0 s here) replaced the 180 s timeout"
    );
    let response = function.handle(sqs_event(&again)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(app.received().len(), 2, "the redirect was not followed");
}

#[tokio::test]
async fn a_410_disables_the_endpoint_and_later_deliveries_are_dropped() {
    let t = TestStack::new().await;
    let (app, url) = AppEndpoint::start().await;
    let (id, secret, _) = one_delivery(&t, &url).await;
    app.verify_with(&[secret]);
    app.answer(410, &[]);
    let function = dispatcher(&t, "0");

    let records = receive(&t, 1).await;
    let response = function.handle(sqs_event(&records)).await;
    assert!(response.batch_item_failures.is_empty(), "410 is final");
    delete(&t, &records[0]).await;
    let ep = endpoints(&t).get(&id, now()).await.unwrap().unwrap();
    assert!(!ep.enabled);
    assert!(ep.disabled_reason.unwrap().contains("410"));

    // A delivery queued before the disable is dropped without a request.
    outbound(&t)
        .enqueue(&[OutboundDelivery {
            endpoint_id: id.clone(),
            webhook_id: webhook_message_id(&id, "ses#late"),
            body: "{}".to_owned(),
        }])
        .await
        .unwrap();
    let late = receive(&t, 1).await;
    let response = function.handle(sqs_event(&late)).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(app.received().len(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_retried_with_backoff() {
    let t = TestStack::new().await;
    // Port 9 (discard) on loopback: nothing listens there.
    one_delivery(&t, "http://127.0.0.1:9/hooks").await;
    let function = dispatcher(&t, "0");
    let records = receive(&t, 1).await;
    let response = function.handle(sqs_event(&records)).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(receive(&t, 2).await.len(), 1);
}

#[tokio::test]
async fn dlq_replay_moves_every_dead_letter_back_onto_its_queue() {
    let t = TestStack::new().await;
    let dlq = t.queue_url("OutboundDeadLetterQueue");
    for i in 0..12 {
        t.clients
            .sqs
            .send_message()
            .queue_url(&dlq)
            .message_body(format!("dead-{i}"))
            .send()
            .await
            .unwrap();
    }
    let out = admin(
        &t,
        &[
            "dlq",
            "replay",
            "outbound",
            "--queue-url",
            &t.queue_url("OutboundQueue"),
        ],
    )
    .await
    .unwrap();
    assert!(out.contains("replayed 12 message(s)"), "{out}");
    assert_eq!(queue_depth(&t, "OutboundDeadLetterQueue").await, (0, 0));
    let mut bodies = Vec::new();
    loop {
        let batch = receive(&t, 1).await;
        if batch.is_empty() {
            break;
        }
        for m in &batch {
            bodies.push(m.body().unwrap().to_owned());
            delete(&t, m).await;
        }
    }
    bodies.sort();
    let mut want: Vec<String> = (0..12).map(|i| format!("dead-{i}")).collect();
    want.sort();
    assert_eq!(bodies, want);

    let err = mailgate_admin::run_dlq(
        mailgate_admin::DlqCommand::Replay {
            queue: mailgate_admin::QueueRole::Send,
            queue_url: None,
        },
        &t.clients.sqs,
        |_| None,
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), mailgate_admin::EXIT_USAGE);
    assert!(err.to_string().contains("SEND_QUEUE_URL"));
}
