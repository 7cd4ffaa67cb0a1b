#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Delivery statistics end to end against the emulator: real send-api (SES in moto), real
//! event processor over SQS-shaped records (the same events delivered more than once), the
//! counters in the real messages table, and `GET /v1/stats` reading them back.

use event_processor::{Config, EventProcessor, ProcessorResponse};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_core::KeyEnvironment;
use mailgate_tests::api::bearer_in as key;
use mailgate_tests::{TestStack, fixture};
use send_api::{SendApi, SendApiConfig};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn processor(t: &TestStack) -> EventProcessor {
    let config = Config::from_lookup(t.function_env("event-processor")).unwrap();
    EventProcessor::new(config, t.clients.clone())
}

fn api(t: &TestStack) -> SendApi {
    let config = SendApiConfig::from_lookup(t.function_env("send-api")).unwrap();
    SendApi::new(config, t.clients.clone()).unwrap()
}

fn request(
    authorization: &str,
    method: &str,
    path: &str,
    query: &str,
    body: Option<String>,
    idempotency_key: Option<&str>,
) -> Request {
    let mut event: Value = serde_json::from_str(&fixture("send-api/post-message.json")).unwrap();
    event["requestContext"]["http"]["method"] = json!(method);
    event["rawPath"] = json!(path);
    event["rawQueryString"] = json!(query);
    event["requestContext"]["http"]["path"] = json!(path);
    event["body"] = body.map_or(Value::Null, Value::String);
    let mut parameters = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap();
        parameters.insert(k.to_owned(), json!(v));
    }
    event["queryStringParameters"] = Value::Object(parameters);
    let headers = event["headers"].as_object_mut().unwrap();
    headers.remove("idempotency-key");
    headers.remove("content-length");
    if let Some(k) = idempotency_key {
        headers.insert("idempotency-key".into(), json!(k));
    }
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

/// Sends one message to `to` with `tags`; its id and SES message id.
async fn sent(
    api: &SendApi,
    auth: &str,
    to: &str,
    tags: &[&str],
    idempotency_key: Option<&str>,
) -> (String, String) {
    let body = json!({
        "from": {"email": "hello@example.com", "name": "Example"},
        "to": [to],
        "subject": "Your receipt",
        "text": "Thanks for your order.",
        "tags": tags,
    });
    let r = api
        .handle(request(
            auth,
            "POST",
            "/v1/messages",
            "",
            Some(body.to_string()),
            idempotency_key,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.body());
    let body = json_body(&r);
    assert_eq!(body["status"], "sent", "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["provider_message_id"].as_str().unwrap().to_owned(),
    )
}

fn now_text() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap()
}

/// An SES notification (the SNS `Message`) of `kind` for `ses_id`, happening now.
fn ses_notification(kind: &str, ses_id: &str, to: &str) -> String {
    let at = now_text();
    let mail = json!({
        "timestamp": at, "source": "hello@example.com",
        "messageId": ses_id, "destination": [to],
    });
    match kind {
        "Delivery" => json!({
            "notificationType": "Delivery", "mail": mail,
            "delivery": {"timestamp": at, "recipients": [to], "processingTimeMillis": 100,
                         "smtpResponse": "250 ok", "reportingMTA": "a1.smtp-out.amazonses.com"},
        }),
        "Bounce" => json!({
            "notificationType": "Bounce", "mail": mail,
            "bounce": {
                "bounceType": "Permanent", "bounceSubType": "General", "timestamp": at,
                "bouncedRecipients": [{"emailAddress": to, "action": "failed", "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
                "feedbackId": format!("fb-{ses_id}"),
            },
        }),
        "Complaint" => json!({
            "notificationType": "Complaint", "mail": mail,
            "complaint": {"complainedRecipients": [{"emailAddress": to}], "timestamp": at,
                          "feedbackId": format!("cf-{ses_id}"), "complaintFeedbackType": "abuse"},
        }),
        other => panic!("no notification {other}"),
    }
    .to_string()
}

/// The events-queue body of an SES notification, as webhook-ses enqueues it.
fn queued(sns_id: &str, message: &str) -> String {
    let envelope = json!({
        "Type": "Notification", "MessageId": sns_id,
        "TopicArn": mailgate_tests::webhooks::TOPIC,
        "Message": message, "Timestamp": now_text(),
        "SignatureVersion": "1", "Signature": "x",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem",
    });
    json!({
        "v": 1, "provider": "ses", "receipt": format!("ses#message:{sns_id}"),
        "index": 0, "count": 1,
        "received_at": OffsetDateTime::now_utc().unix_timestamp() * 1000,
        "event": envelope,
    })
    .to_string()
}

/// An SQS batch event of `bodies`.
fn batch(bodies: &[String]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "messageId": format!("m-{i}"), "receiptHandle": format!("h-{i}"), "body": b,
                "eventSource": "aws:sqs", "attributes": {"ApproximateReceiveCount": "1"},
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Processes `bodies` as one batch, and redelivers the records it reports failed as SQS does
/// (a duplicate in the same batch finds its twin's claim in progress and is retried).
async fn process(p: &EventProcessor, bodies: &[String]) {
    let mut pending = bodies.to_vec();
    for _ in 0..5 {
        let failed: Vec<usize> = match p.handle(batch(&pending)).await.unwrap() {
            ProcessorResponse::Batch(b) => b
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.trim_start_matches("m-").parse().unwrap())
                .collect(),
            other => panic!("expected a batch response, got {other:?}"),
        };
        if failed.is_empty() {
            return;
        }
        pending = failed.into_iter().map(|i| pending[i].clone()).collect();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("records still failing after 5 deliveries");
}

async fn stats(api: &SendApi, auth: &str, query: &str) -> Response<Body> {
    api.handle(request(auth, "GET", "/v1/stats", query, None, None))
        .await
}

async fn stats_ok(api: &SendApi, auth: &str, query: &str) -> Value {
    let r = stats(api, auth, query).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    json_body(&r)
}

fn totals_of(body: &Value) -> &Value {
    assert_eq!(body["series"].as_array().unwrap().len(), 1, "{body}");
    &body["series"][0]["totals"]
}

#[tokio::test]
async fn counters_equal_the_applied_events_under_duplicate_deliveries() {
    let t = TestStack::new().await;
    let api = api(&t);
    // Live: a test key's mail goes to the sandbox simulator, whose own events would count too.
    let auth = key(&t, KeyEnvironment::Live, "send,read").await;

    // Three messages; the first one's request is retried with its Idempotency-Key (replayed,
    // not accepted again).
    let (id1, ses1) = sent(&api, &auth, "ann@example.org", &["receipt"], Some("k-1")).await;
    let (replayed, _) = sent(&api, &auth, "ann@example.org", &["receipt"], Some("k-1")).await;
    assert_eq!(replayed, id1);
    let (id2, ses2) = sent(&api, &auth, "gone@example.org", &["receipt", "eu"], None).await;
    let (id3, ses3) = sent(&api, &auth, "angry@example.org", &[], None).await;

    // Each event is delivered more than once through the real processor: twice in one batch,
    // and again in later batches (a provider retry, an SQS redelivery).
    let delivered = queued(
        "sns-d1",
        &ses_notification("Delivery", &ses1, "ann@example.org"),
    );
    let bounced = queued(
        "sns-b2",
        &ses_notification("Bounce", &ses2, "gone@example.org"),
    );
    let complained = queued(
        "sns-c3",
        &ses_notification("Complaint", &ses3, "angry@example.org"),
    );
    let p = processor(&t);
    process(&p, &[delivered.clone(), delivered.clone(), bounced.clone()]).await;
    process(
        &p,
        &[bounced.clone(), complained.clone(), delivered.clone()],
    )
    .await;
    process(&p, &[complained.clone(), bounced]).await;
    process(&processor(&t), &[complained]).await;

    let body = stats_ok(&api, &auth, "").await;
    assert_eq!(body["granularity"], "hour");
    assert_eq!(body["series"][0]["buckets"].as_array().unwrap().len(), 24);
    let totals = totals_of(&body);
    let expect = [
        ("accepted", 3),
        ("sent", 3),
        ("sent_recipients", 3),
        ("delivered", 1),
        ("bounced", 1),
        ("bounced_hard", 1),
        ("bounced_soft", 0),
        ("bounced_sender_side", 0),
        ("complained", 1),
        ("deferred", 0),
        ("unsubscribed", 0),
        ("failed", 0),
        ("unknown", 0),
        ("opened", 0),
        ("clicked", 0),
    ];
    for (name, value) in expect {
        assert_eq!(totals[name], value, "{name}: {totals}");
    }
    let third = 1.0 / 3.0;
    assert_eq!(totals["bounce_rate"].as_f64().unwrap(), third);
    assert_eq!(totals["complaint_rate"].as_f64().unwrap(), third);

    // The counters equal the applied events in the messages' histories.
    let mut applied = 0;
    for id in [&id1, &id2, &id3] {
        let r = api
            .handle(request(
                &auth,
                "GET",
                &format!("/v1/messages/{id}"),
                "",
                None,
                None,
            ))
            .await;
        applied += json_body(&r)["events"].as_array().unwrap().len();
    }
    let counted: u64 = ["delivered", "bounced", "complained"]
        .iter()
        .map(|k| totals[*k].as_u64().unwrap())
        .sum();
    assert_eq!(applied as u64, counted);
    assert_eq!(applied, 3);

    // By tag: a message counts under each of its tags; untagged ones under none.
    let body = stats_ok(&api, &auth, "group_by=tag").await;
    let series = body["series"].as_array().unwrap();
    let groups: Vec<&str> = series
        .iter()
        .map(|s| s["group"].as_str().unwrap())
        .collect();
    assert_eq!(groups, vec!["eu", "receipt"]);
    assert_eq!(series[1]["totals"]["accepted"], 2);
    assert_eq!(series[1]["totals"]["bounced_hard"], 1);
    assert_eq!(series[0]["totals"]["sent"], 1);

    // By provider: sends and events under ses; accepted is counted before a provider is chosen.
    let body = stats_ok(&api, &auth, "group_by=provider").await;
    assert_eq!(body["series"][0]["group"], "ses");
    assert_eq!(body["series"][0]["totals"]["sent"], 3);
    assert_eq!(body["series"][0]["totals"]["complained"], 1);
    assert_eq!(body["series"][0]["totals"]["accepted"], 0);

    let body = stats_ok(&api, &auth, "group_by=category").await;
    assert_eq!(body["series"][0]["group"], "transactional");
    assert_eq!(body["series"][0]["totals"]["delivered"], 1);

    // A day is the sum of its hours.
    let body = stats_ok(&api, &auth, "granularity=day").await;
    assert_eq!(body["series"][0]["buckets"].as_array().unwrap().len(), 7);
    assert_eq!(totals_of(&body)["accepted"], 3);
    assert_eq!(totals_of(&body)["complained"], 1);
    let today = body["series"][0]["buckets"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let yesterday = body["series"][0]["buckets"][5]["counts"]["accepted"]
        .as_u64()
        .unwrap();
    assert_eq!(today["counts"]["accepted"].as_u64().unwrap() + yesterday, 3);

    // `mailgate-admin stats` prints the same as the API.
    let api_body = stats_ok(&api, &auth, "group_by=tag").await;
    let table = t.table("MessagesTable");
    let admin = |extra: &[&str]| {
        let mut args = vec!["mailgate-admin", "stats", "--environment", "live"];
        args.extend_from_slice(extra);
        args.extend(["--messages-table", table.as_str()]);
        <mailgate_admin::Cli as clap::Parser>::try_parse_from(args).unwrap()
    };
    let mut out = Vec::new();
    mailgate_admin::run(
        admin(&["--group-by", "tag", "--json"]),
        &t.clients.dynamodb,
        &mut out,
    )
    .await
    .unwrap();
    let admin_body: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(admin_body["series"], api_body["series"]);
    let mut out = Vec::new();
    mailgate_admin::run(
        admin(&["--granularity", "day"]),
        &t.clients.dynamodb,
        &mut out,
    )
    .await
    .unwrap();
    let text = String::from_utf8(out).unwrap();
    let total = text
        .lines()
        .find(|l| l.starts_with("all") && l.contains("total"))
        .unwrap();
    let cells: Vec<&str> = total.split_whitespace().collect();
    assert_eq!(&cells[2..5], &["3", "3", "3"], "{text}");
    let err = mailgate_admin::run(
        admin(&["--granularity", "week"]),
        &t.clients.dynamodb,
        &mut Vec::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), mailgate_admin::EXIT_USAGE);
    assert!(
        err.to_string().starts_with("invalid --granularity"),
        "{err}"
    );

    // The other environment's key sees none of it.
    let test = key(&t, KeyEnvironment::Test, "read").await;
    assert_eq!(totals_of(&stats_ok(&api, &test, "").await)["accepted"], 0);
}

#[tokio::test]
async fn stats_parameters_are_validated_and_need_the_read_scope() {
    let t = TestStack::new().await;
    let api = api(&t);
    let auth = key(&t, KeyEnvironment::Test, "read").await;
    let cases = [
        ("granularity=week", "granularity", "invalid_granularity"),
        ("group_by=domain", "group_by", "invalid_group_by"),
        ("after=yesterday", "after", "invalid_datetime"),
        ("before=2026-13-40T00:00:00Z", "before", "invalid_datetime"),
        (
            "after=2026-12-04T00:00:00Z&before=2026-12-01T00:00:00Z",
            "after",
            "invalid_range",
        ),
        (
            "after=2026-09-01T00:00:00Z&before=2026-12-01T00:00:00Z",
            "after",
            "range_too_long",
        ),
        ("limit=5", "query", "unknown_parameter"),
    ];
    for (query, field, code) in cases {
        let r = stats(&api, &auth, query).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let error = &json_body(&r)["error"];
        assert_eq!(error["field"], field, "{query}: {error}");
        assert_eq!(error["code"], code, "{query}: {error}");
    }
    // Widened to whole days; exactly 31 days is allowed.
    let body = stats_ok(
        &api,
        &auth,
        "after=2026-10-01T05:30:00Z&before=2026-11-01T00:00:00Z&granularity=day",
    )
    .await;
    assert_eq!(body["after"], "2026-10-01T00:00:00Z");
    assert_eq!(body["series"][0]["buckets"].as_array().unwrap().len(), 31);

    let send_only = key(&t, KeyEnvironment::Test, "send").await;
    assert_eq!(
        stats(&api, &send_only, "").await.status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn a_lapsed_sending_lease_counts_unknown_once_whoever_finds_it() {
    use mailgate_aws::DynamoDbMessages;
    use mailgate_core::{
        ApiKeyId, EmailAddress, Mailbox, MessageId, MessageRecord, MessageState, OutboundEmail,
        UnixMillis,
    };
    let t = TestStack::new().await;
    let api = api(&t);
    let auth = key(&t, KeyEnvironment::Test, "read").await;
    let store = DynamoDbMessages::new(t.clients.dynamodb.clone(), t.table("MessagesTable"));
    let now = UnixMillis::from(OffsetDateTime::now_utc());
    let lapsed = || async {
        let email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(EmailAddress::parse("hello@example.com").unwrap()),
            EmailAddress::parse("jane@example.org").unwrap(),
            "Hello",
        );
        let mut record = MessageRecord::new(
            &email,
            ApiKeyId::generate(),
            KeyEnvironment::Test,
            MessageState::Sending,
            now,
            None,
            &[],
        );
        record.sending_until = Some(UnixMillis(now.as_i64() - 1_000));
        store.create(&record, &email).await.unwrap();
        record.id
    };
    // The sweeper finds one (twice: the second finds it moved on), a worker the other.
    let swept = lapsed().await;
    assert!(store.abandon_lapsed(&swept, now, "lapsed").await.unwrap());
    assert!(!store.abandon_lapsed(&swept, now, "lapsed").await.unwrap());
    let taken = lapsed().await;
    let later = UnixMillis(now.as_i64() + 1);
    assert!(matches!(
        store.start_sending(&taken, later, later).await.unwrap(),
        mailgate_aws::messages::SendingClaim::Abandoned
    ));
    assert!(matches!(
        store.start_sending(&taken, later, later).await.unwrap(),
        mailgate_aws::messages::SendingClaim::Elsewhere(MessageState::Unknown)
    ));
    let totals = stats_ok(&api, &auth, "").await["series"][0]["totals"].clone();
    assert_eq!(totals["unknown"], 2, "{totals}");
    assert_eq!(totals["accepted"], 2, "{totals}");
}
