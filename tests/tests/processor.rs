#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! The event processor end to end against the emulator: real send-api, real webhook-ses with
//! SNS signatures from a test certificate, real processor over SQS records, real tables.

use std::sync::Arc;

use event_processor::{Config, EventOutcome, EventProcessor, ProcessorResponse};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_aws::{DynamoDbApiKeys, DynamoDbEventHistory, DynamoDbSuppressionList};
use mailgate_core::{
    ApiKeyLabel, ApiKeyRecord, ApiKeySecret, Clock, EmailAddress, KeyEnvironment, ProviderId,
    Scopes, SuppressionReason, SystemClock,
};
use mailgate_providers::ses::sns::testing::{SnsTestMessage, SnsTestSigner, StaticSnsHttp};
use mailgate_tests::webhooks::{TOPIC, drain_events, post, sns_signer, webhook_function};
use mailgate_tests::{TestStack, fixture};
use send_api::{SendApi, SendApiConfig};
use serde_json::{Value, json};
use time::OffsetDateTime;

fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn processor(t: &TestStack, extra: &[(&'static str, &'static str)]) -> EventProcessor {
    let base = t.function_env("event-processor");
    let extra = extra.to_vec();
    let config = Config::from_lookup(move |k| {
        extra
            .iter()
            .find(|(name, _)| *name == k)
            .map(|(_, v)| (*v).to_owned())
            .or_else(|| base(k))
    })
    .unwrap();
    EventProcessor::new(config, t.clients.clone())
}

fn api(t: &TestStack) -> SendApi {
    let config = SendApiConfig::from_lookup(t.function_env("send-api")).unwrap();
    SendApi::new(config, t.clients.clone()).unwrap()
}

async fn key(t: &TestStack) -> String {
    let secret = ApiKeySecret::generate(KeyEnvironment::Live);
    let record = ApiKeyRecord::new(
        &secret,
        ApiKeyLabel::parse("processor test").unwrap(),
        KeyEnvironment::Live,
        Scopes::parse_list("send,read").unwrap(),
        OffsetDateTime::now_utc(),
    );
    DynamoDbApiKeys::new(t.clients.dynamodb.clone(), t.table("ApiKeysTable"))
        .create(&record)
        .await
        .unwrap();
    format!("Bearer {}", secret.expose())
}

fn request(authorization: &str, method: &str, path: &str, body: Option<String>) -> Request {
    let mut event: Value = serde_json::from_str(&fixture("send-api/post-message.json")).unwrap();
    event["requestContext"]["http"]["method"] = json!(method);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["body"] = body.map_or(Value::Null, Value::String);
    let headers = event["headers"].as_object_mut().unwrap();
    headers.remove("idempotency-key");
    headers.remove("content-length");
    let mut request = lambda_http::request::from_str(&event.to_string()).unwrap();
    request.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(authorization).unwrap(),
    );
    request
}

fn json_body(r: &Response<Body>) -> Value {
    match r.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

/// Sends one message to `to` through SES-in-moto; its id and SES message id.
async fn send(t: &TestStack, api: &SendApi, auth: &str, to: &str) -> Response<Body> {
    let body = json!({
        "from": {"email": "hello@example.com", "name": "Example"},
        "to": [to],
        "subject": "Your receipt",
        "text": "Thanks for your order.",
    });
    let _ = t;
    api.handle(request(
        auth,
        "POST",
        "/v1/messages",
        Some(body.to_string()),
    ))
    .await
}

async fn sent(t: &TestStack, api: &SendApi, auth: &str, to: &str) -> (String, String) {
    let r = send(t, api, auth, to).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.body());
    let body = json_body(&r);
    assert_eq!(body["status"], "sent", "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["provider_message_id"].as_str().unwrap().to_owned(),
    )
}

async fn get(api: &SendApi, auth: &str, id: &str) -> Value {
    let r = api
        .handle(request(auth, "GET", &format!("/v1/messages/{id}"), None))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    json_body(&r)
}

/// An SQS batch event holding `bodies`, with message ids `m-0`, `m-1`, ….
fn batch(bodies: &[String]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "messageId": format!("m-{i}"),
                "receiptHandle": format!("h-{i}"),
                "body": b,
                "eventSource": "aws:sqs",
                "attributes": {"ApproximateReceiveCount": "1"},
            })
        })
        .collect();
    json!({ "Records": records })
}

fn failures(response: &ProcessorResponse) -> Vec<String> {
    match response {
        ProcessorResponse::Batch(b) => b
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect(),
        other => panic!("expected a batch response, got {other:?}"),
    }
}

/// An SES identity notification (the SNS `Message`) for `ses_id`.
fn ses_bounce(ses_id: &str, to: &str, bounce_type: &str, status: &str, diagnostic: &str) -> String {
    json!({
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [{
                "emailAddress": to, "action": "failed", "status": status,
                "diagnosticCode": diagnostic,
            }],
            "timestamp": "2026-11-23T10:00:05.000Z",
            "feedbackId": "0100-feedback",
            "reportingMTA": "dsn; a1-1.smtp-out.amazonses.com",
        },
        "mail": {
            "timestamp": "2026-11-23T10:00:00.000Z",
            "source": "hello@example.com",
            "messageId": ses_id,
            "destination": [to],
        },
    })
    .to_string()
}

fn ses_delivery(ses_id: &str, to: &str, at: &str) -> String {
    json!({
        "notificationType": "Delivery",
        "delivery": {
            "timestamp": at, "processingTimeMillis": 500, "recipients": [to],
            "smtpResponse": "250 2.6.0 Message received", "reportingMTA": "a1-1.smtp-out.amazonses.com",
        },
        "mail": {
            "timestamp": "2026-11-23T10:00:00.000Z", "source": "hello@example.com",
            "messageId": ses_id, "destination": [to],
        },
    })
    .to_string()
}

/// Posts `message` as a signed SNS notification to webhook-ses and returns the queued bodies.
async fn through_webhook(
    t: &TestStack,
    signer: &SnsTestSigner,
    http: &Arc<StaticSnsHttp>,
    sns_id: &str,
    message: &str,
) -> Vec<String> {
    let f = webhook_function(t, ProviderId::Ses, Some(http.clone()), system());
    let signed = SnsTestMessage::notification(TOPIC, message, OffsetDateTime::now_utc())
        .with_message_id(sns_id);
    let r = f
        .handle(post(ProviderId::Ses, &signer.sign(&signed), &[]))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    drain_events(t)
        .await
        .into_iter()
        .map(|v| v.to_string())
        .collect()
}

/// The queue body of an SES notification, as webhook-ses would enqueue it (no HTTP layer).
fn queued_sns(sns_id: &str, message: &str) -> String {
    let envelope = json!({
        "Type": "Notification", "MessageId": sns_id, "TopicArn": TOPIC,
        "Message": message, "Timestamp": "2026-11-23T10:00:06.000Z",
        "SignatureVersion": "1", "Signature": "x", "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem",
    });
    json!({
        "v": 1, "provider": "ses", "receipt": format!("ses#message:{sns_id}"),
        "index": 0, "count": 1, "received_at": 1_795_000_000_000i64, "event": envelope,
    })
    .to_string()
}

fn suppressions(t: &TestStack) -> DynamoDbSuppressionList {
    DynamoDbSuppressionList::new(t.clients.dynamodb.clone(), t.table("SuppressionsTable"))
}

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

#[tokio::test]
async fn an_ses_bounce_through_the_webhook_bounces_the_message_suppresses_and_refuses_the_next_send()
 {
    let t = TestStack::new().await;
    let (api, auth) = (api(&t), key(&t).await);
    let (id, ses_id) = sent(&t, &api, &auth, "gone@example.org").await;

    let (signer, http) = sns_signer();
    let bounce = ses_bounce(
        &ses_id,
        "gone@example.org",
        "Permanent",
        "5.1.1",
        "smtp; 550 5.1.1 <gone@example.org>: Recipient address rejected: User unknown",
    );
    let queued = through_webhook(&t, &signer, &http, "sns-bounce-1", &bounce).await;
    assert_eq!(queued.len(), 1);
    let p = processor(&t, &[]);
    let response = p.handle(batch(&queued)).await.unwrap();
    assert!(failures(&response).is_empty());

    let got = get(&api, &auth, &id).await;
    assert_eq!(got["state"], "bounced", "{got}");
    assert_eq!(got["recipients"][0]["status"], "bounced");
    let events = got["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{got}");
    assert_eq!(events[0]["type"], "bounced");
    assert_eq!(events[0]["provider"], "ses");
    assert_eq!(events[0]["recipient"], "gone@example.org");
    assert_eq!(events[0]["bounce"]["status"], "5.1.1");
    assert_eq!(events[0]["bounce"]["kind"], "hard");
    assert_eq!(events[0]["bounce"]["cause"], "user_unknown");
    assert!(
        events[0]["occurred_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-23T10:00:05")
    );

    let entry = suppressions(&t)
        .get(&addr("gone@example.org"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.reason, SuppressionReason::HardBounce);

    let r = send(&t, &api, &auth, "gone@example.org").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        json_body(&r)
            .to_string()
            .contains("all_recipients_suppressed")
    );

    let tally = p.tally().snapshot();
    assert_eq!(
        tally[&("HardBounces", "ses".into(), "transactional".into())],
        1
    );
    assert_eq!(tally[&("Bounces", "ses".into(), "transactional".into())], 1);
}

#[tokio::test]
async fn ses_events_from_eventbridge_are_forwarded_and_applied() {
    let t = TestStack::new().await;
    let (api, auth) = (api(&t), key(&t).await);
    let (id, ses_id) = sent(&t, &api, &auth, "jane@example.org").await;
    let envelope = json!({
        "version": "0", "id": "c3d4e5f6-a7b8-9012-cdef-123456789012",
        "detail-type": "Email Delivered", "source": "aws.ses", "account": "123456789012",
        "time": "2026-11-23T10:00:02Z", "region": "us-east-1", "resources": [],
        "detail": {
            "eventType": "Delivery",
            "mail": {"timestamp": "2026-11-23T10:00:00.000Z", "source": "hello@example.com",
                     "messageId": ses_id, "destination": ["jane@example.org"],
                     "tags": {"mailgate_message_id": [id]}},
            "delivery": {"timestamp": "2026-11-23T10:00:02.000Z", "recipients": ["jane@example.org"],
                         "smtpResponse": "250 ok", "processingTimeMillis": 100},
        },
    });
    let p = processor(&t, &[]);
    // A rule targeting the function: forwarded onto the events queue.
    let response = p.handle(envelope.clone()).await.unwrap();
    assert!(matches!(response, ProcessorResponse::Forwarded { .. }));
    let queued: Vec<String> = drain_events(&t)
        .await
        .iter()
        .map(Value::to_string)
        .collect();
    assert_eq!(queued.len(), 1);
    let response = p.handle(batch(&queued)).await.unwrap();
    assert!(failures(&response).is_empty());
    let got = get(&api, &auth, &id).await;
    assert_eq!(got["state"], "delivered", "{got}");
    assert_eq!(got["events"][0]["type"], "delivered");

    // The rule's default target is the events queue itself: the same body again is a duplicate.
    let outcomes = p.process_body(&envelope.to_string()).await.unwrap();
    assert_eq!(outcomes, vec![EventOutcome::Duplicate]);
    assert_eq!(
        get(&api, &auth, &id).await["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn a_late_delivery_never_overwrites_a_bounce_and_opens_imply_delivery() {
    let t = TestStack::new().await;
    let (api, auth) = (api(&t), key(&t).await);
    let p = processor(&t, &[]);

    let (id, ses_id) = sent(&t, &api, &auth, "late@example.org").await;
    let bounce = ses_bounce(
        &ses_id,
        "late@example.org",
        "Permanent",
        "5.1.1",
        "550 5.1.1 user unknown",
    );
    p.process_body(&queued_sns("b-1", &bounce)).await.unwrap();
    let delivery = ses_delivery(&ses_id, "late@example.org", "2026-11-23T10:00:01.000Z");
    p.process_body(&queued_sns("d-1", &delivery)).await.unwrap();
    let got = get(&api, &auth, &id).await;
    assert_eq!(got["state"], "bounced", "{got}");
    assert_eq!(got["recipients"][0]["status"], "bounced");
    let events = got["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    // History is in provider-time order: the delivery happened (per SES) before the bounce.
    assert_eq!(events[0]["type"], "delivered");
    assert_eq!(events[1]["type"], "bounced");

    let (id, ses_id) = sent(&t, &api, &auth, "reader@example.org").await;
    let open = json!({
        "eventType": "Open",
        "mail": {"timestamp": "2026-11-23T10:00:00.000Z", "source": "hello@example.com",
                 "messageId": ses_id, "destination": ["reader@example.org"]},
        "open": {"ipAddress": "192.0.2.1", "timestamp": "2026-11-23T10:05:00.000Z", "userAgent": "Mail"},
    })
    .to_string();
    p.process_body(&queued_sns("o-1", &open)).await.unwrap();
    let got = get(&api, &auth, &id).await;
    assert_eq!(got["state"], "delivered", "{got}");
    assert_eq!(got["events"][0]["type"], "opened");
}

#[tokio::test]
async fn duplicates_change_nothing_twice_and_soft_bounces_count_per_distinct_event() {
    let t = TestStack::new().await;
    let (api, auth) = (api(&t), key(&t).await);
    let p = processor(&t, &[("SOFT_BOUNCE_THRESHOLD", "3")]);
    let (id, ses_id) = sent(&t, &api, &auth, "full@example.org").await;
    let soft = ses_bounce(
        &ses_id,
        "full@example.org",
        "Transient",
        "4.2.2",
        "smtp; 452 4.2.2 The email account that you tried to reach is over quota",
    );
    let body = queued_sns("soft-1", &soft);
    let mut outcomes = Vec::new();
    for _ in 0..46 {
        outcomes.extend(p.process_body(&body).await.unwrap());
    }
    assert_eq!(outcomes[0], EventOutcome::Applied);
    assert!(outcomes[1..].iter().all(|o| *o == EventOutcome::Duplicate));
    let got = get(&api, &auth, &id).await;
    assert_eq!(got["events"].as_array().unwrap().len(), 1, "{got}");
    assert_eq!(got["events"][0]["bounce"]["kind"], "soft");
    let list = suppressions(&t);
    assert!(list.get(&addr("full@example.org")).await.unwrap().is_none());
    let tally = p.tally().snapshot();
    assert_eq!(tally[&("DedupeHits", "ses".into(), "none".into())], 45);
    assert_eq!(
        tally[&("SoftBounces", "ses".into(), "transactional".into())],
        1
    );

    // Two more distinct soft bounces reach the threshold of 3.
    p.process_body(&queued_sns("soft-2", &soft)).await.unwrap();
    assert!(list.get(&addr("full@example.org")).await.unwrap().is_none());
    p.process_body(&queued_sns("soft-3", &soft)).await.unwrap();
    let entry = list.get(&addr("full@example.org")).await.unwrap().unwrap();
    assert_eq!(entry.reason, SuppressionReason::SoftBounceThreshold);
}

#[tokio::test]
async fn a_sender_side_block_bounces_the_message_but_never_suppresses() {
    let t = TestStack::new().await;
    let (api, auth) = (api(&t), key(&t).await);
    let p = processor(&t, &[]);
    let (id, ses_id) = sent(&t, &api, &auth, "blocked@example.org").await;
    let block = ses_bounce(
        &ses_id,
        "blocked@example.org",
        "Permanent",
        "5.7.1",
        "smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org",
    );
    p.process_body(&queued_sns("blk-1", &block)).await.unwrap();
    let got = get(&api, &auth, &id).await;
    assert_eq!(got["state"], "bounced");
    assert_eq!(got["events"][0]["bounce"]["suppress"], false);
    assert!(
        suppressions(&t)
            .get(&addr("blocked@example.org"))
            .await
            .unwrap()
            .is_none()
    );
    let tally = p.tally().snapshot();
    assert_eq!(
        tally[&("SenderSideBounces", "ses".into(), "transactional".into())],
        1
    );
    assert!(!tally.contains_key(&("HardBounces", "ses".into(), "transactional".into())));
}

#[tokio::test]
async fn events_for_unknown_messages_are_kept_as_orphans_and_unknown_types_are_kept() {
    let t = TestStack::new().await;
    let p = processor(&t, &[]);
    let delivery = ses_delivery(
        "ses-nobody-knows",
        "who@example.org",
        "2026-11-23T10:00:01.000Z",
    );
    let outcomes = p
        .process_body(&queued_sns("orph-1", &delivery))
        .await
        .unwrap();
    assert_eq!(outcomes, vec![EventOutcome::Orphaned]);
    let history = DynamoDbEventHistory::new(
        t.clients.dynamodb.clone(),
        t.table("MessagesTable"),
        t.table("DedupeTable"),
    );
    let orphans = history
        .orphans(ProviderId::Ses, "ses-nobody-knows")
        .await
        .unwrap();
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].event.kind.as_str(), "delivered");
    assert_eq!(
        p.tally().snapshot()[&("OrphanEvents", "ses".into(), "unknown".into())],
        1
    );

    // A SendGrid event type nobody documented yet: stored with its raw name, state untouched.
    let (api, auth) = (api(&t), key(&t).await);
    let (id, ses_id) = sent(&t, &api, &auth, "new@example.org").await;
    let future = json!({"eventType": "Teleported", "mail": {"messageId": ses_id,
        "timestamp": "2026-11-23T10:00:00.000Z", "destination": ["new@example.org"]}})
    .to_string();
    p.process_body(&queued_sns("unk-1", &future)).await.unwrap();
    let got = get(&api, &auth, &id).await;
    assert_eq!(got["state"], "sent");
    assert_eq!(got["events"][0]["type"], "unknown");
    assert_eq!(got["events"][0]["provider_type"], "Teleported");
}

#[tokio::test]
async fn an_orphan_hard_bounce_or_one_naming_someone_else_suppresses_nobody_unless_opted_in() {
    let t = TestStack::new().await;
    let p = processor(&t, &[]);
    // Nobody's message: recorded as an orphan, counted, and the address stays sendable.
    let orphan = ses_bounce(
        "ses-forged-1",
        "victim@example.org",
        "Permanent",
        "5.1.1",
        "smtp; 550 5.1.1 user unknown",
    );
    let outcomes = p
        .process_body(&queued_sns("forged-1", &orphan))
        .await
        .unwrap();
    assert_eq!(outcomes, vec![EventOutcome::Orphaned]);
    assert!(
        suppressions(&t)
            .get(&addr("victim@example.org"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        p.tally().snapshot()[&("UnmatchedEffects", "ses".into(), "unknown".into())],
        1
    );
    // Our message, but the bounce names an address it was never sent to.
    let (api, auth) = (api(&t), key(&t).await);
    let (id, ses_id) = sent(&t, &api, &auth, "real@example.org").await;
    let other = ses_bounce(
        &ses_id,
        "victim2@example.org",
        "Permanent",
        "5.1.1",
        "smtp; 550 5.1.1 user unknown",
    );
    p.process_body(&queued_sns("forged-2", &other))
        .await
        .unwrap();
    assert!(
        suppressions(&t)
            .get(&addr("victim2@example.org"))
            .await
            .unwrap()
            .is_none()
    );
    // Nor does it move our message: its recipient was never told anything.
    let message = get(&api, &auth, &id).await;
    assert_eq!(message["state"], "sent", "{message}");
    assert_eq!(message["recipients"][0]["status"], "sent", "{message}");
    // A provider account shared with other senders may opt in.
    let shared = processor(&t, &[("SUPPRESS_UNMATCHED_EVENTS", "true")]);
    let orphan = ses_bounce(
        "ses-elsewhere-1",
        "gone@example.org",
        "Permanent",
        "5.1.1",
        "smtp; 550 5.1.1 user unknown",
    );
    shared
        .process_body(&queued_sns("elsewhere-1", &orphan))
        .await
        .unwrap();
    assert!(
        suppressions(&t)
            .get(&addr("gone@example.org"))
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_poison_message_fails_alone_and_reaches_the_dlq_after_the_redrive_count() {
    let t = TestStack::new().await;
    let p = processor(&t, &[]);
    let poison = json!({"v": 1, "provider": "sendgrid", "receipt": "sendgrid#sha256:gone",
        "index": 0, "count": 1, "received_at": 1_795_000_000_000i64, "event": null, "oversize": true})
    .to_string();
    let good = queued_sns(
        "good-1",
        &ses_delivery("ses-x", "a@example.org", "2026-11-23T10:00:01.000Z"),
    );
    let response = p.handle(batch(&[good, poison.clone()])).await.unwrap();
    assert_eq!(failures(&response), vec!["m-1".to_owned()]);

    // Through the real queue: received and failed five times, then moved by the redrive policy.
    let sqs = &t.clients.sqs;
    let url = t.queue_url("EventsQueue");
    sqs.send_message()
        .queue_url(&url)
        .message_body(&poison)
        .send()
        .await
        .unwrap();
    let mut deliveries = 0;
    for _ in 0..10 {
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .visibility_timeout(0)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let Some(m) = out.messages().first() else {
            break;
        };
        deliveries += 1;
        let records = batch(&[m.body().unwrap().to_owned()]);
        let response = p.handle(records).await.unwrap();
        assert_eq!(
            failures(&response).len(),
            1,
            "the poison message fails every time"
        );
    }
    assert_eq!(deliveries, 5);
    let dlq = sqs
        .receive_message()
        .queue_url(t.queue_url("EventsDeadLetterQueue"))
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    assert_eq!(dlq.messages().len(), 1);
    assert_eq!(dlq.messages()[0].body(), Some(poison.as_str()));
}

#[tokio::test]
async fn an_aws_outage_leaves_every_record_for_retry() {
    let t = TestStack::new().await;
    let sdk = mailgate_tests::sdk_config("http://127.0.0.1:9").await;
    let config = Config::from_lookup(t.function_env("event-processor")).unwrap();
    let p = EventProcessor::new(config, mailgate_aws::AwsClients::new(&sdk));
    let body = queued_sns(
        "down-1",
        &ses_delivery("ses-y", "a@example.org", "2026-11-23T10:00:01.000Z"),
    );
    let response = p.handle(batch(std::slice::from_ref(&body))).await.unwrap();
    assert_eq!(failures(&response), vec!["m-0".to_owned()]);

    // Back up: the same record is applied (as an orphan here) exactly once.
    let p = processor(&t, &[]);
    assert_eq!(
        p.process_body(&body).await.unwrap(),
        vec![EventOutcome::Orphaned]
    );
    assert_eq!(
        p.process_body(&body).await.unwrap(),
        vec![EventOutcome::Duplicate]
    );
}

#[tokio::test]
async fn matching_events_become_one_signed_delivery_per_endpoint_on_the_outbound_queue() {
    let t = TestStack::new().await;
    let (api, auth) = (api(&t), key(&t).await);
    let endpoints =
        mailgate_aws::DynamoDbEndpoints::new(t.clients.dynamodb.clone(), t.table("EndpointsTable"));
    let now = mailgate_core::UnixMillis::from(OffsetDateTime::now_utc());
    let (bounces, _) = endpoints
        .add(
            "http://127.0.0.1:9/hooks",
            mailgate_core::EndpointFilter::parse_list("email.bounced").unwrap(),
            now,
        )
        .await
        .unwrap();
    endpoints
        .add(
            "http://127.0.0.1:9/opens",
            mailgate_core::EndpointFilter::parse_list("email.opened").unwrap(),
            now,
        )
        .await
        .unwrap();
    let p = processor(&t, &[]);
    let (id, ses_id) = sent(&t, &api, &auth, "gone@example.org").await;
    let bounce = ses_bounce(
        &ses_id,
        "gone@example.org",
        "Permanent",
        "5.1.1",
        "550 5.1.1 user unknown",
    );
    let body = queued_sns("fan-1", &bounce);
    p.process_body(&body).await.unwrap();
    // A redelivery is a duplicate: no second delivery.
    p.process_body(&body).await.unwrap();

    let out = t
        .clients
        .sqs
        .receive_message()
        .queue_url(t.queue_url("OutboundQueue"))
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let messages = out.messages();
    assert_eq!(messages.len(), 1, "one matching endpoint, one delivery");
    let delivery: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(delivery["endpoint_id"], bounces.id.as_str());
    assert!(delivery["webhook_id"].as_str().unwrap().starts_with("msg_"));
    let payload: Value = serde_json::from_str(delivery["body"].as_str().unwrap()).unwrap();
    assert_eq!(payload["type"], "email.bounced");
    assert_eq!(payload["data"]["message_id"], id.as_str());
    assert_eq!(payload["data"]["recipient"], "gone@example.org");
    assert_eq!(payload["data"]["bounce"]["suppress"], true);
}
