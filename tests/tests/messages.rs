#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Message records end to end: `DynamoDbMessages` against the emulator's messages table (built
//! from the template, with its `by-provider-message-id` and `by-release` indexes), and
//! `GET|DELETE /v1/messages/{id}` through the real send-api handler from the fixture.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_aws::{
    Cancellation, DynamoDbApiKeys, DynamoDbMessages, INLINE_CONTENT_LIMIT, MessageStoreError,
};
use mailgate_core::{
    ApiKeyId, ApiKeyLabel, ApiKeyRecord, ApiKeySecret, Attachment, AttemptOutcome, EmailAddress,
    ErrorCategory, KeyEnvironment, Mailbox, MessageCategory, MessageId, MessageRecord,
    MessageState, OutboundEmail, ProviderId, RecipientStatus, ReleaseQueue, Scopes, SendAttempt,
    StoredResponse, UnixMillis,
};
use mailgate_tests::{TestStack, fixture};
use send_api::{SendApi, SendApiConfig};
use serde_json::{Value, json};
use time::OffsetDateTime;

fn api(t: &TestStack) -> SendApi {
    let config = SendApiConfig::from_lookup(t.function_env("send-api"))
        .expect("the template configures send-api");
    SendApi::new(config, t.clients.clone()).unwrap()
}

fn store(t: &TestStack) -> DynamoDbMessages {
    DynamoDbMessages::new(t.clients.dynamodb.clone(), t.table("MessagesTable"))
}

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

fn now() -> UnixMillis {
    UnixMillis::from(OffsetDateTime::now_utc())
}

fn json_body(r: &Response<Body>) -> Value {
    match r.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

/// A stored key of `environment` with `scopes`: its id and `Authorization` header value.
async fn key(t: &TestStack, environment: KeyEnvironment, scopes: &str) -> (ApiKeyId, String) {
    let secret = ApiKeySecret::generate(environment);
    let record = ApiKeyRecord::new(
        &secret,
        ApiKeyLabel::parse("messages test").unwrap(),
        environment,
        Scopes::parse_list(scopes).unwrap(),
        OffsetDateTime::now_utc(),
    );
    DynamoDbApiKeys::new(t.clients.dynamodb.clone(), t.table("ApiKeysTable"))
        .create(&record)
        .await
        .unwrap();
    (record.id, format!("Bearer {}", secret.expose()))
}

fn email() -> OutboundEmail {
    let mut e = OutboundEmail::new(
        MessageId::generate(),
        Mailbox::named(addr("sender@example.com"), "Sender"),
        addr("jane@example.com"),
        "Hello",
    );
    e.cc.push(addr("cc@example.com"));
    e.text = Some("Hi Jane".to_owned());
    e
}

/// A message of `environment` in `state`, created in the store.
async fn created(
    t: &TestStack,
    key_id: &ApiKeyId,
    environment: KeyEnvironment,
    state: MessageState,
    send_at: Option<UnixMillis>,
) -> (MessageRecord, OutboundEmail) {
    let email = email();
    let record = MessageRecord::new(
        &email,
        key_id.clone(),
        environment,
        state,
        now(),
        send_at,
        &[],
    );
    store(t).create(&record, &email).await.unwrap();
    (record, email)
}

/// A request from the fixture, for `method` on `/v1/messages/{id}`.
fn request(authorization: &str, method: &str, id: &str) -> Request {
    let mut event: Value = serde_json::from_str(&fixture("send-api/get-message.json")).unwrap();
    let path = format!("/v1/messages/{id}");
    event["requestContext"]["http"]["method"] = json!(method);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    let mut request = lambda_http::request::from_str(&event.to_string())
        .expect("the fixture is an API Gateway v2 request");
    request.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(authorization).unwrap(),
    );
    request
}

fn attempt(number: u32, at: i64, outcome: AttemptOutcome) -> SendAttempt {
    SendAttempt {
        number,
        provider: ProviderId::Sendgrid,
        at: UnixMillis(at),
        outcome,
        provider_message_id: None,
        error_category: None,
        error_code: None,
    }
}

fn assert_error(r: &Response<Body>, status: StatusCode, code: &str) {
    assert_eq!(r.status(), status, "{:?}", r.body());
    assert_eq!(json_body(r)["error"]["code"], code, "{:?}", r.body());
}

#[tokio::test]
async fn a_recorded_message_is_shown_with_its_attempts_in_order() {
    let t = TestStack::new().await;
    let (key_id, auth) = key(&t, KeyEnvironment::Test, "read").await;
    let (record, email) = created(
        &t,
        &key_id,
        KeyEnvironment::Test,
        MessageState::Queued,
        None,
    )
    .await;
    let messages = store(&t);

    let base = now().as_i64();
    let mut failed = attempt(1, base, AttemptOutcome::Failed);
    failed.error_category = Some(ErrorCategory::ServiceUnavailable);
    failed.error_code = Some("http_503".to_owned());
    messages
        .record_attempt(&record.id, &failed, MessageState::Sending)
        .await
        .unwrap();
    let mut accepted = attempt(2, base, AttemptOutcome::Accepted);
    accepted.provider = ProviderId::Ses;
    accepted.provider_message_id = Some("0100-ses-id".to_owned());
    messages
        .record_attempt(&record.id, &accepted, MessageState::Sent)
        .await
        .unwrap();

    let stored = messages.get(&record.id).await.unwrap().unwrap();
    assert_eq!(stored.attempts, vec![failed, accepted]);
    assert_eq!(stored.record.state, MessageState::Sent);
    assert_eq!(stored.record.attempt_count, 2);
    assert_eq!(stored.record.from, email.from);
    assert_eq!(
        messages.load_content(&record.id).await.unwrap(),
        Some(email)
    );

    let r = api(&t)
        .handle(request(&auth, "GET", record.id.as_str()))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    let body = json_body(&r);
    assert_eq!(body["id"], record.id.as_str());
    assert_eq!(body["state"], "sent");
    assert_eq!(body["category"], "transactional");
    assert_eq!(body["provider"], "ses");
    assert_eq!(body["provider_message_id"], "0100-ses-id");
    assert_eq!(body["send_at"], Value::Null);
    assert_eq!(
        body["recipients"],
        json!([
            {"address": "jane@example.com", "type": "to", "status": "sent"},
            {"address": "cc@example.com", "type": "cc", "status": "sent"},
        ])
    );
    let attempts = body["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["provider"], "sendgrid");
    assert_eq!(attempts[0]["outcome"], "failed");
    assert_eq!(attempts[0]["error_category"], "service_unavailable");
    assert_eq!(attempts[0]["error_code"], "http_503");
    assert_eq!(attempts[1]["outcome"], "accepted");
    assert_eq!(attempts[1]["provider_message_id"], "0100-ses-id");
    assert_eq!(body["events"], json!([]));
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        !body.to_string().contains("Hi Jane"),
        "no bodies in the status"
    );
}

#[tokio::test]
async fn creating_a_message_twice_is_refused_and_attempts_need_a_message() {
    let t = TestStack::new().await;
    let key_id = ApiKeyId::generate();
    let (record, email) = created(
        &t,
        &key_id,
        KeyEnvironment::Test,
        MessageState::Queued,
        None,
    )
    .await;
    let messages = store(&t);
    assert!(matches!(
        messages.create(&record, &email).await,
        Err(MessageStoreError::AlreadyExists(id)) if id == record.id
    ));
    let unknown = MessageId::generate();
    assert!(matches!(
        messages
            .record_attempt(
                &unknown,
                &attempt(1, 1, AttemptOutcome::Unknown),
                MessageState::Unknown
            )
            .await,
        Err(MessageStoreError::NotFound(_))
    ));
    assert_eq!(messages.get(&unknown).await.unwrap(), None);
    assert_eq!(messages.load_content(&unknown).await.unwrap(), None);
}

#[tokio::test]
async fn content_larger_than_an_item_round_trips_through_parts() {
    let t = TestStack::new().await;
    let mut email = email();
    let big: Vec<u8> = (0..900 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    email.attachments.push(Attachment {
        filename: "big.bin".to_owned(),
        content_type: "application/octet-stream".to_owned(),
        content: big,
    });
    assert!(serde_json::to_vec(&email).unwrap().len() > 3 * INLINE_CONTENT_LIMIT);
    let record = MessageRecord::new(
        &email,
        ApiKeyId::generate(),
        KeyEnvironment::Live,
        MessageState::Queued,
        now(),
        None,
        &[],
    );
    let messages = store(&t);
    messages.create(&record, &email).await.unwrap();
    assert_eq!(
        messages.load_content(&record.id).await.unwrap(),
        Some(email)
    );
    // The status read does not carry the content.
    let stored = messages.get(&record.id).await.unwrap().unwrap();
    assert_eq!(stored.record, record);
}

#[tokio::test]
async fn only_held_messages_can_be_cancelled() {
    let t = TestStack::new().await;
    let (key_id, auth) = key(&t, KeyEnvironment::Test, "send").await;
    let later = UnixMillis(now().as_i64() + 3_600_000);
    let (scheduled, _) = created(
        &t,
        &key_id,
        KeyEnvironment::Test,
        MessageState::Scheduled,
        Some(later),
    )
    .await;
    let (sent, _) = created(&t, &key_id, KeyEnvironment::Test, MessageState::Sent, None).await;
    let app = api(&t);

    let r = app
        .handle(request(&auth, "DELETE", scheduled.id.as_str()))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    let body = json_body(&r);
    assert_eq!(body["state"], "cancelled");
    assert_eq!(body["recipients"][0]["status"], "cancelled");
    let stored = store(&t).get(&scheduled.id).await.unwrap().unwrap();
    assert_eq!(stored.record.state, MessageState::Cancelled);
    // Out of the release index: it is never due.
    assert!(
        store(&t)
            .due(ReleaseQueue::Scheduled, UnixMillis(later.as_i64() + 1), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let r = app
        .handle(request(&auth, "DELETE", scheduled.id.as_str()))
        .await;
    assert_error(&r, StatusCode::CONFLICT, "not_cancellable");
    assert_eq!(json_body(&r)["error"]["state"], "cancelled");

    let r = app.handle(request(&auth, "DELETE", sent.id.as_str())).await;
    assert_error(&r, StatusCode::CONFLICT, "not_cancellable");
    assert_eq!(json_body(&r)["error"]["state"], "sent");

    let r = app
        .handle(request(&auth, "DELETE", MessageId::generate().as_str()))
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let r = app.handle(request(&auth, "DELETE", "msg_not-an-id")).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let r = app.handle(request(&auth, "PATCH", sent.id.as_str())).await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn due_returns_only_held_messages_whose_time_has_come() {
    let t = TestStack::new().await;
    let key_id = ApiKeyId::generate();
    let at = now().as_i64();
    let env = KeyEnvironment::Live;
    let (due_soon, _) = created(
        &t,
        &key_id,
        env,
        MessageState::Scheduled,
        Some(UnixMillis(at + 1_000)),
    )
    .await;
    let (due_first, _) = created(
        &t,
        &key_id,
        env,
        MessageState::Scheduled,
        Some(UnixMillis(at + 500)),
    )
    .await;
    let (not_yet, _) = created(
        &t,
        &key_id,
        env,
        MessageState::Scheduled,
        Some(UnixMillis(at + 60_000)),
    )
    .await;
    let (_queued, _) = created(&t, &key_id, env, MessageState::Queued, None).await;
    let (paused, _) = created(&t, &key_id, env, MessageState::Paused, None).await;
    let messages = store(&t);

    let check = UnixMillis(at + 2_000);
    assert_eq!(
        messages
            .due(ReleaseQueue::Scheduled, check, 10)
            .await
            .unwrap(),
        vec![due_first.id.clone(), due_soon.id.clone()]
    );
    assert_eq!(
        messages
            .due(ReleaseQueue::PausedBulk, check, 10)
            .await
            .unwrap(),
        vec![paused.id.clone()]
    );

    assert!(messages.mark_released(&due_first.id, check).await.unwrap());
    assert!(!messages.mark_released(&due_first.id, check).await.unwrap());
    assert_eq!(
        messages
            .due(ReleaseQueue::Scheduled, check, 10)
            .await
            .unwrap(),
        vec![due_soon.id.clone()]
    );
    let released = messages.get(&due_first.id).await.unwrap().unwrap();
    assert_eq!(released.record.state, MessageState::Queued);
    // A released message can no longer be cancelled; a cancelled one is never released.
    assert_eq!(
        messages.cancel(&due_first.id, env, check).await.unwrap(),
        Cancellation::NotCancellable(MessageState::Queued)
    );
    assert!(matches!(
        messages.cancel(&not_yet.id, env, check).await.unwrap(),
        Cancellation::Cancelled(r) if r.state == MessageState::Cancelled
    ));
    assert!(!messages.mark_released(&not_yet.id, check).await.unwrap());
}

#[tokio::test]
async fn a_provider_message_id_finds_its_message() {
    let t = TestStack::new().await;
    let (record, _) = created(
        &t,
        &ApiKeyId::generate(),
        KeyEnvironment::Test,
        MessageState::Sending,
        None,
    )
    .await;
    let messages = store(&t);
    assert_eq!(
        messages
            .find_by_provider_message_id(ProviderId::Mailgun, "<abc@mg.example.com>")
            .await
            .unwrap(),
        None
    );
    let mut accepted = attempt(1, now().as_i64(), AttemptOutcome::Accepted);
    accepted.provider = ProviderId::Mailgun;
    accepted.provider_message_id = Some("<abc@mg.example.com>".to_owned());
    messages
        .record_attempt(&record.id, &accepted, MessageState::Sent)
        .await
        .unwrap();
    assert_eq!(
        messages
            .find_by_provider_message_id(ProviderId::Mailgun, "<abc@mg.example.com>")
            .await
            .unwrap(),
        Some(record.id.clone())
    );
    // The key includes the provider: the same id from another provider is another message.
    assert_eq!(
        messages
            .find_by_provider_message_id(ProviderId::Sendgrid, "<abc@mg.example.com>")
            .await
            .unwrap(),
        None
    );
    let shown = messages.get(&record.id).await.unwrap().unwrap().record;
    assert_eq!(
        shown.recipient_status(&shown.recipients[0]),
        RecipientStatus::Sent
    );
}

#[tokio::test]
async fn reading_needs_the_read_scope_and_the_same_environment() {
    let t = TestStack::new().await;
    let (live_key, live_auth) = key(&t, KeyEnvironment::Live, "send,read").await;
    let (_, test_auth) = key(&t, KeyEnvironment::Test, "send,read").await;
    let (_, send_only) = key(&t, KeyEnvironment::Live, "send").await;
    let later = UnixMillis(now().as_i64() + 3_600_000);
    let (live, _) = created(
        &t,
        &live_key,
        KeyEnvironment::Live,
        MessageState::Scheduled,
        Some(later),
    )
    .await;
    let app = api(&t);
    let id = live.id.as_str();

    let r = app.handle(request(&send_only, "GET", id)).await;
    assert_error(&r, StatusCode::FORBIDDEN, "insufficient_scope");
    let r = app
        .handle(request("Bearer mg_nobody_has_this_key", "GET", id))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A test key learns nothing of a live message, and cannot cancel it.
    let r = app.handle(request(&test_auth, "GET", id)).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let r = app.handle(request(&test_auth, "DELETE", id)).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");

    let r = app.handle(request(&live_auth, "GET", id)).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    let body = json_body(&r);
    assert_eq!(body["state"], "scheduled");
    assert_eq!(body["recipients"][0]["status"], "pending");
    assert!(body["send_at"].as_str().is_some());
    assert_eq!(body["attempts"], json!([]));
    let r = app
        .handle(request(&live_auth, "GET", MessageId::generate().as_str()))
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        store(&t)
            .get(&live.id)
            .await
            .unwrap()
            .unwrap()
            .record
            .category,
        MessageCategory::Transactional
    );
}

#[tokio::test]
async fn a_claim_linked_to_the_create_decides_between_duplicates_and_a_lapsed_one_keeps_the_outcome()
 {
    let t = TestStack::new().await;
    let messages = store(&t);
    let keys = mailgate_aws::DynamoDbIdempotencyStore::new(
        t.clients.dynamodb.clone(),
        t.table("IdempotencyTable"),
    );
    let scoped = mailgate_core::IdempotencyKey::parse("linked-1")
        .unwrap()
        .scoped("key_test");
    let fingerprint = mailgate_core::RequestFingerprint::of_body(b"{}").unwrap();
    let lease = std::time::Duration::from_secs(30);
    let at = OffsetDateTime::now_utc();
    let key_id = ApiKeyId::generate();
    let new_record = || {
        let email = email();
        let record = MessageRecord::new(
            &email,
            key_id.clone(),
            KeyEnvironment::Test,
            MessageState::Queued,
            now(),
            None,
            &[],
        );
        (record, email)
    };

    // The first create claims the key with the message.
    let (record, content) = new_record();
    let (write, claim) = keys
        .claim_write(&scoped, &fingerprint, at, lease, None)
        .unwrap();
    messages
        .create_linked(&record, &content, None, Some(write))
        .await
        .unwrap();

    // A duplicate is refused as a whole: no message, and the record says in flight.
    let (duplicate, content) = new_record();
    let (write, _) = keys
        .claim_write(&scoped, &fingerprint, at, lease, None)
        .unwrap();
    assert!(matches!(
        messages
            .create_linked(&duplicate, &content, None, Some(write))
            .await,
        Err(MessageStoreError::LinkedRefused)
    ));
    assert_eq!(messages.get(&duplicate.id).await.unwrap(), None);
    assert!(matches!(
        keys.refused(&scoped, &fingerprint, at).await.unwrap(),
        Some(mailgate_aws::ClaimOutcome::InFlight { .. })
    ));

    // The outcome and the completion land together; the response is then replayed.
    let response = StoredResponse {
        status: 202,
        body: format!(r#"{{"id":"{}","status":"sent"}}"#, record.id),
        headers: vec![],
    };
    let mut sent = attempt(1, now().as_i64(), AttemptOutcome::Accepted);
    sent.provider_message_id = Some("sg-1".to_owned());
    let complete = keys
        .complete_write(&claim, &response, at, std::time::Duration::from_secs(3600))
        .unwrap();
    assert!(
        messages
            .record_outcome(
                &record.id,
                std::slice::from_ref(&sent),
                MessageState::Sent,
                now(),
                Some(complete.clone()),
            )
            .await
            .unwrap()
    );
    assert_eq!(
        keys.refused(&scoped, &fingerprint, at).await.unwrap(),
        Some(mailgate_aws::ClaimOutcome::Replay(response.clone()))
    );

    // A completion whose claim is no longer held is dropped, never the outcome with it.
    let (other, content) = new_record();
    messages.create(&other, &content).await.unwrap();
    assert!(
        !messages
            .record_outcome(
                &other.id,
                std::slice::from_ref(&sent),
                MessageState::Sent,
                now(),
                Some(complete),
            )
            .await
            .unwrap()
    );
    let stored = messages.get(&other.id).await.unwrap().unwrap();
    assert_eq!(stored.record.state, MessageState::Sent);
    assert_eq!(stored.attempts.len(), 1);
}

#[tokio::test]
async fn a_send_outcome_recorded_after_a_fast_event_never_overwrites_its_state() {
    let t = TestStack::new().await;
    let messages = store(&t);
    // A webhook event moved each message on before the send path recorded its outcome.
    for (current, outcome) in [
        (MessageState::Delivered, MessageState::Sent),
        (MessageState::Bounced, MessageState::Sent),
        (MessageState::Complained, MessageState::Unknown),
        (MessageState::Sent, MessageState::Queued),
    ] {
        let (record, _) = created(
            &t,
            &ApiKeyId::generate(),
            KeyEnvironment::Test,
            current,
            None,
        )
        .await;
        let mut accepted = attempt(1, now().as_i64(), AttemptOutcome::Accepted);
        accepted.provider_message_id = Some(format!("sg-{}", record.id));
        messages
            .record_outcome(&record.id, &[accepted], outcome, now(), None)
            .await
            .unwrap();
        let stored = messages.get(&record.id).await.unwrap().unwrap();
        assert_eq!(stored.record.state, current, "{current:?} then {outcome:?}");
        // The provider call itself is still recorded, with the provider's id for correlation.
        assert_eq!(stored.attempts.len(), 1);
        assert_eq!(
            messages
                .find_by_provider_message_id(ProviderId::Sendgrid, &format!("sg-{}", record.id))
                .await
                .unwrap(),
            Some(record.id.clone())
        );
    }
    // From a state before the send, the outcome applies.
    let (record, _) = created(
        &t,
        &ApiKeyId::generate(),
        KeyEnvironment::Test,
        MessageState::Sending,
        None,
    )
    .await;
    messages
        .record_outcome(&record.id, &[], MessageState::Sent, now(), None)
        .await
        .unwrap();
    assert_eq!(
        messages
            .get(&record.id)
            .await
            .unwrap()
            .unwrap()
            .record
            .state,
        MessageState::Sent
    );
}
