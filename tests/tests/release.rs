#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Held messages released by the sweeper: scheduled messages onto the send queue (with SQS delay
//! for the last 15 minutes), and bulk messages held by the pause switch once it is off, with the
//! switch turned by `mailgate-admin sends` — all against the emulator's stack from the template.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;
use clap::Parser;
use mailgate_aws::{DynamoDbMessages, DynamoDbSendControls};
use mailgate_core::{
    ApiKeyId, EmailAddress, FixedClock, KeyEnvironment, Mailbox, MessageCategory, MessageId,
    MessageRecord, MessageState, OutboundEmail, UnixMillis, initial_state,
};
use mailgate_tests::TestStack;
use sweeper::{Config, ScheduledTick, SweepReport, Sweeper};
use time::OffsetDateTime;

fn store(t: &TestStack) -> DynamoDbMessages {
    DynamoDbMessages::new(t.clients.dynamodb.clone(), t.table("MessagesTable"))
}

fn controls(t: &TestStack) -> DynamoDbSendControls {
    DynamoDbSendControls::new(t.clients.dynamodb.clone(), t.table("ControlTable"))
}

fn now() -> UnixMillis {
    UnixMillis::from(OffsetDateTime::now_utc())
}

fn sweeper(t: &TestStack, at: UnixMillis) -> Sweeper {
    Sweeper::with_clock(
        Config::from_lookup(t.function_env("sweeper")).unwrap(),
        t.clients.clone(),
        Arc::new(FixedClock::new(at.to_datetime())),
    )
}

async fn sweep(t: &TestStack, at: UnixMillis) -> SweepReport {
    sweeper(t, at)
        .handle(ScheduledTick {
            detail_type: "Scheduled Event".to_owned(),
            time: "2026-11-23T12:00:00Z".to_owned(),
        })
        .await
        .unwrap()
}

fn moved(report: &SweepReport, job: &str) -> u64 {
    report
        .jobs
        .iter()
        .find(|(name, _)| name == job)
        .map(|(_, n)| *n)
        .unwrap_or_else(|| panic!("no job {job} in {report:?}"))
}

/// A message of `category` in `state`, created in the store.
async fn created(
    t: &TestStack,
    category: MessageCategory,
    state: MessageState,
    send_at: Option<UnixMillis>,
) -> MessageRecord {
    let mut email = OutboundEmail::new(
        MessageId::generate(),
        Mailbox::named(EmailAddress::parse("sender@example.com").unwrap(), "Sender"),
        EmailAddress::parse("jane@example.com").unwrap(),
        "Hello",
    );
    email.text = Some("Hi Jane".to_owned());
    email.category = category;
    let record = MessageRecord::new(
        &email,
        ApiKeyId::generate(),
        KeyEnvironment::Test,
        state,
        now(),
        send_at,
        &[],
    );
    store(t).create(&record, &email).await.unwrap();
    record
}

async fn state_of(t: &TestStack, id: &MessageId) -> MessageState {
    store(t).get(id).await.unwrap().unwrap().record.state
}

/// Every visible message on the send queue (deleting them), as parsed bodies.
async fn drain_send_queue(t: &TestStack) -> Vec<serde_json::Value> {
    let url = t.queue_url("SendQueue");
    let mut bodies = Vec::new();
    loop {
        let out = t
            .clients
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return bodies;
        }
        for m in messages {
            bodies.push(serde_json::from_str(m.body().unwrap()).unwrap());
            t.clients
                .sqs
                .delete_message()
                .queue_url(&url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

async fn delayed_on_send_queue(t: &TestStack) -> i64 {
    let out = t
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(t.queue_url("SendQueue"))
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessagesDelayed))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

async fn admin(t: &TestStack, args: &[&str]) -> String {
    let control = t.table("ControlTable");
    let messages = t.table("MessagesTable");
    let mut argv = vec!["mailgate-admin", "sends"];
    argv.extend_from_slice(args);
    argv.extend(["--table", control.as_str()]);
    if args == ["status"] {
        argv.extend(["--messages-table", messages.as_str()]);
    }
    let cli = mailgate_admin::Cli::try_parse_from(argv).unwrap();
    let mut out = Vec::new();
    mailgate_admin::run(cli, &t.clients.dynamodb, &mut out)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn a_due_scheduled_message_is_released_onto_the_send_queue_exactly_once() {
    let t = TestStack::new().await;
    let at = now();
    let record = created(
        &t,
        MessageCategory::Transactional,
        MessageState::Scheduled,
        Some(UnixMillis(at.as_i64() + 60_000)),
    )
    .await;

    // A minute later it is due: released without delay.
    let later = at.saturating_add(Duration::from_secs(61));
    assert_eq!(moved(&sweep(&t, later).await, "release_scheduled"), 1);
    assert_eq!(moved(&sweep(&t, later).await, "release_scheduled"), 0);

    assert_eq!(state_of(&t, &record.id).await, MessageState::Queued);
    let bodies = drain_send_queue(&t).await;
    assert_eq!(
        bodies,
        vec![serde_json::json!({"v": 1, "message_id": record.id.as_str()})],
        "one pointer, exactly the documented format"
    );
}

#[tokio::test]
async fn a_message_due_within_fifteen_minutes_is_released_with_the_delay_left() {
    let t = TestStack::new().await;
    let at = now();
    let soon = created(
        &t,
        MessageCategory::Transactional,
        MessageState::Scheduled,
        Some(at.saturating_add(Duration::from_secs(600))),
    )
    .await;
    let later = created(
        &t,
        MessageCategory::Transactional,
        MessageState::Scheduled,
        Some(at.saturating_add(Duration::from_secs(7_200))),
    )
    .await;

    let report = sweep(&t, at).await;
    assert_eq!(moved(&report, "release_scheduled"), 1);
    assert_eq!(state_of(&t, &soon.id).await, MessageState::Queued);
    assert_eq!(state_of(&t, &later.id).await, MessageState::Scheduled);
    // On the queue, but invisible for its delay (≈ 600 s, see `delay_until`'s unit test).
    assert!(drain_send_queue(&t).await.is_empty());
    assert_eq!(delayed_on_send_queue(&t).await, 1);
    assert_eq!(
        sweeper::release::delay_until(soon.send_at, at),
        600,
        "the delay the sweeper computed for it"
    );
}

#[tokio::test]
async fn a_cancelled_message_is_never_released() {
    let t = TestStack::new().await;
    let at = now();
    let record = created(
        &t,
        MessageCategory::Transactional,
        MessageState::Scheduled,
        Some(at.saturating_add(Duration::from_secs(30))),
    )
    .await;
    store(&t)
        .cancel(&record.id, KeyEnvironment::Test, at)
        .await
        .unwrap();

    let report = sweep(&t, at.saturating_add(Duration::from_secs(60))).await;
    assert_eq!(moved(&report, "release_scheduled"), 0);
    assert_eq!(state_of(&t, &record.id).await, MessageState::Cancelled);
    assert!(drain_send_queue(&t).await.is_empty());
    assert_eq!(delayed_on_send_queue(&t).await, 0);
}

#[tokio::test]
async fn paused_bulk_mail_waits_for_resume_and_transactional_mail_is_never_paused() {
    let t = TestStack::new().await;
    let controls = controls(&t);
    assert!(
        !controls.bulk_paused().await.unwrap(),
        "no item: not paused"
    );
    assert!(admin(&t, &["pause"]).await.contains("paused"));
    assert!(controls.bulk_paused().await.unwrap());

    // What the send API decides for new messages while paused.
    let at = now();
    let paused = controls.bulk_paused().await.unwrap();
    assert_eq!(
        initial_state(MessageCategory::Bulk, None, at, paused),
        MessageState::Paused
    );
    assert_eq!(
        initial_state(MessageCategory::Transactional, None, at, paused),
        MessageState::Queued
    );
    let bulk = created(&t, MessageCategory::Bulk, MessageState::Paused, None).await;
    // A scheduled bulk message that comes due while paused joins the paused ones.
    let scheduled_bulk = created(
        &t,
        MessageCategory::Bulk,
        MessageState::Scheduled,
        Some(at.saturating_add(Duration::from_secs(5))),
    )
    .await;
    let transactional = created(
        &t,
        MessageCategory::Transactional,
        MessageState::Scheduled,
        Some(at.saturating_add(Duration::from_secs(5))),
    )
    .await;

    let tick = at.saturating_add(Duration::from_secs(10));
    let report = sweep(&t, tick).await;
    assert_eq!(moved(&report, "release_paused"), 0);
    assert_eq!(
        moved(&report, "release_scheduled"),
        1,
        "the transactional one"
    );
    assert_eq!(state_of(&t, &bulk.id).await, MessageState::Paused);
    assert_eq!(state_of(&t, &scheduled_bulk.id).await, MessageState::Paused);
    assert_eq!(state_of(&t, &transactional.id).await, MessageState::Queued);
    assert_eq!(drain_send_queue(&t).await.len(), 1);

    let status = admin(&t, &["status"]).await;
    assert!(status.contains("bulk sends: paused"), "{status}");
    assert!(status.contains("paused messages:    2"), "{status}");
    assert!(status.contains("scheduled messages: 0"), "{status}");

    assert!(admin(&t, &["resume"]).await.contains("running"));
    assert!(!controls.bulk_paused().await.unwrap());
    let report = sweep(&t, tick).await;
    assert_eq!(moved(&report, "release_paused"), 2);
    assert_eq!(state_of(&t, &bulk.id).await, MessageState::Queued);
    assert_eq!(state_of(&t, &scheduled_bulk.id).await, MessageState::Queued);
    let mut released: Vec<String> = drain_send_queue(&t)
        .await
        .iter()
        .map(|b| b["message_id"].as_str().unwrap().to_owned())
        .collect();
    released.sort();
    let mut expected = vec![bulk.id.to_string(), scheduled_bulk.id.to_string()];
    expected.sort();
    assert_eq!(released, expected);
    assert_eq!(moved(&sweep(&t, tick).await, "release_paused"), 0);
}

#[tokio::test]
async fn a_switch_change_older_than_the_stored_one_is_refused() {
    let t = TestStack::new().await;
    let controls = controls(&t);
    let at = OffsetDateTime::now_utc();
    controls.set_bulk_paused(true, at).await.unwrap();
    controls.set_bulk_paused(true, at).await.unwrap();
    let stale = controls
        .set_bulk_paused(false, at - time::Duration::seconds(5))
        .await;
    assert!(matches!(
        stale,
        Err(mailgate_aws::ControlsError::Superseded(_))
    ));
    assert!(controls.bulk_paused().await.unwrap());
}
