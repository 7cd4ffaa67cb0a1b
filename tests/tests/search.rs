#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Message search end to end against the emulator: real send-api (`GET /v1/messages`,
//! `GET /v1/recipients/{address}`), real SES-in-moto sends, a bounce applied by the real event
//! processor, and the search indexes built from the template.

use std::collections::HashSet;

use event_processor::{Config, EventProcessor};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_aws::DynamoDbMessages;
use mailgate_core::{
    ApiKeyId, EmailAddress, KeyEnvironment, Mailbox, MessageId, MessageRecord, MessageState,
    OutboundEmail, UnixMillis,
};
use mailgate_tests::api::{bearer_of, seed_key};
use mailgate_tests::webhooks::TOPIC;
use mailgate_tests::{TestStack, fixture};
use send_api::{SendApi, SendApiConfig};
use serde_json::{Value, json};
use time::OffsetDateTime;

fn api(t: &TestStack) -> SendApi {
    let config = SendApiConfig::from_lookup(t.function_env("send-api")).unwrap();
    SendApi::new(config, t.clients.clone()).unwrap()
}

fn processor(t: &TestStack) -> EventProcessor {
    let config = Config::from_lookup(t.function_env("event-processor")).unwrap();
    EventProcessor::new(config, t.clients.clone())
}

async fn key(t: &TestStack, environment: KeyEnvironment) -> (ApiKeyId, String) {
    let (secret, record) = seed_key(t, environment, "send,read", "search test").await;
    (record.id, bearer_of(&secret))
}

/// A request from the fixture: `method` on `path` with `query` (unencoded pairs).
fn request(
    auth: &str,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<String>,
) -> Request {
    let mut event: Value = serde_json::from_str(&fixture("send-api/post-message.json")).unwrap();
    event["requestContext"]["http"]["method"] = json!(method);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["body"] = body.map_or(Value::Null, Value::String);
    let mut params = serde_json::Map::new();
    for (k, v) in query {
        params.insert((*k).to_owned(), json!(v));
    }
    event["queryStringParameters"] = Value::Object(params);
    // lambda_http reads the parameters from the raw query string.
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    event["rawQueryString"] = json!(
        query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    );
    let headers = event["headers"].as_object_mut().unwrap();
    headers.remove("idempotency-key");
    headers.remove("content-length");
    let mut request = lambda_http::request::from_str(&event.to_string()).unwrap();
    request
        .headers_mut()
        .insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
    request
}

fn json_body(r: &Response<Body>) -> Value {
    match r.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

async fn list(api: &SendApi, auth: &str, query: &[(&str, &str)]) -> Value {
    let r = api
        .handle(request(auth, "GET", "/v1/messages", query, None))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    json_body(&r)
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Sends one message through the real send path (SES in moto); its id and SES message id.
async fn sent(api: &SendApi, auth: &str, to: &str, correlation_id: &str) -> (String, String) {
    let body = json!({
        "from": {"email": "hello@example.com", "name": "Example"},
        "to": [to],
        "subject": "Your receipt",
        "text": "Thanks for your order.",
        "tags": ["receipt"],
        "correlation_id": correlation_id,
    });
    let r = api
        .handle(request(
            auth,
            "POST",
            "/v1/messages",
            &[],
            Some(body.to_string()),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{:?}", r.body());
    let body = json_body(&r);
    assert_eq!(body["status"], "sent", "{body}");
    // Distinct creation milliseconds, so "newest first" has one right answer.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    (
        body["id"].as_str().unwrap().to_owned(),
        body["provider_message_id"].as_str().unwrap().to_owned(),
    )
}

/// The events-queue body of an SES hard bounce of `ses_id` for `to`.
fn queued_bounce(sns_id: &str, ses_id: &str, to: &str) -> String {
    let message = json!({
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent", "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": to, "action": "failed", "status": "5.1.1",
                                   "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
            "timestamp": "2026-11-23T10:00:05.000Z", "feedbackId": "0100-feedback",
        },
        "mail": {"timestamp": "2026-11-23T10:00:00.000Z", "source": "hello@example.com",
                 "messageId": ses_id, "destination": [to]},
    })
    .to_string();
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

/// A message of `environment` to `to` created straight in the store (the send path's create).
async fn stored(
    t: &TestStack,
    key_id: &ApiKeyId,
    environment: KeyEnvironment,
    to: &str,
    tags: &[&str],
    at: i64,
) -> MessageRecord {
    let mut email = OutboundEmail::new(
        MessageId::generate(),
        Mailbox::new(EmailAddress::parse("hello@example.com").unwrap()),
        EmailAddress::parse(to).unwrap(),
        "Hello",
    );
    email.text = Some("Hi".into());
    email.tags = tags.iter().map(|t| (*t).to_owned()).collect();
    let now = UnixMillis::from(OffsetDateTime::now_utc());
    let record = MessageRecord::new(
        &email,
        key_id.clone(),
        environment,
        MessageState::Sent,
        UnixMillis(now.as_i64() - at),
        None,
        &[],
    );
    DynamoDbMessages::new(t.clients.dynamodb.clone(), t.table("MessagesTable"))
        .create(&record, &email)
        .await
        .unwrap();
    record
}

#[tokio::test]
async fn three_messages_to_one_address_are_found_by_recipient_and_correlation_id_and_the_recipient_view_shows_the_bounce()
 {
    let t = TestStack::new().await;
    let api = api(&t);
    // Live: a test key's mail goes to the sandbox simulator, not to SES.
    let (_, auth) = key(&t, KeyEnvironment::Live).await;
    let to = "jane.search@example.org";
    let (first, _) = sent(&api, &auth, to, "order-1").await;
    let (second, ses_second) = sent(&api, &auth, to, "order-2").await;
    let (third, _) = sent(&api, &auth, to, "order-3").await;
    processor(&t)
        .process_body(&queued_bounce("b-1", &ses_second, to))
        .await
        .unwrap();

    // Any spelling of the address finds its messages, newest first, with their states.
    let page = list(&api, &auth, &[("recipient", "Jane.Search@EXAMPLE.org")]).await;
    assert_eq!(
        ids(&page),
        vec![third.clone(), second.clone(), first.clone()],
        "{page}"
    );
    let states: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, vec!["sent", "bounced", "sent"]);
    let bounced = &page["data"][1];
    assert_eq!(bounced["recipients"][0]["status"], "bounced");
    assert_eq!(bounced["last_event"]["type"], "bounced");
    assert_eq!(bounced["correlation_id"], "order-2");
    assert_eq!(bounced["tags"], json!(["receipt"]));
    assert_eq!(bounced["from"], "hello@example.com");
    assert_eq!(bounced["provider"], "ses");
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["truncated"], false);

    let page = list(&api, &auth, &[("correlation_id", "order-2")]).await;
    assert_eq!(ids(&page), vec![second.clone()]);
    // Combinations: one index, the rest as a filter expression.
    let page = list(&api, &auth, &[("recipient", to), ("state", "bounced")]).await;
    assert_eq!(ids(&page), vec![second.clone()]);
    let page = list(
        &api,
        &auth,
        &[("tag", "receipt"), ("correlation_id", "order-3")],
    )
    .await;
    assert_eq!(ids(&page), vec![third.clone()]);
    let page = list(
        &api,
        &auth,
        &[("recipient", to), ("provider", "ses"), ("category", "bulk")],
    )
    .await;
    assert_eq!(ids(&page), Vec::<String>::new());
    let page = list(&api, &auth, &[("state", "sent"), ("tag", "receipt")]).await;
    assert_eq!(ids(&page), vec![third.clone(), first.clone()]);

    let path = "/v1/recipients/jane.search%40example.org";
    let r = api.handle(request(&auth, "GET", path, &[], None)).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    let view = json_body(&r);
    assert_eq!(view["address"], to);
    assert_eq!(view["suppressions"].as_array().unwrap().len(), 1, "{view}");
    assert_eq!(view["suppressions"][0]["reason"], "hard_bounce");
    assert_eq!(view["counts"]["bounced"], 1);
    assert_eq!(view["counts"]["sent"], 2);
    assert_eq!(view["counts_complete"], true);
    assert_eq!(
        ids(&json!({"data": view["messages"]})),
        vec![third, second, first]
    );
    assert_eq!(view["messages"][1]["status"], "bounced");
    assert_eq!(view["messages"][1]["last_event"]["type"], "bounced");
}

#[tokio::test]
async fn bad_filters_are_400_naming_the_field() {
    let t = TestStack::new().await;
    let api = api(&t);
    let (_, auth) = key(&t, KeyEnvironment::Test).await;
    for (name, value, code) in [
        ("recipient", "not-an-address", "invalid_address"),
        ("state", "lost", "invalid_state"),
        ("category", "marketing", "invalid_category"),
        ("provider", "sparkpost", "unknown_provider"),
        ("after", "yesterday", "invalid_datetime"),
        ("tag", "a b", "invalid_tag"),
        ("limit", "101", "invalid_limit"),
        ("limit", "0", "invalid_limit"),
        ("cursor", "bm90IG91cnM", "invalid_cursor"),
        ("to", "jane@example.org", "unknown_parameter"),
    ] {
        let r = api
            .handle(request(
                &auth,
                "GET",
                "/v1/messages",
                &[(name, value)],
                None,
            ))
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name}={value}");
        let body = json_body(&r);
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(body["error"]["field"], name, "{body}");
    }
    let r = api
        .handle(request(
            &auth,
            "GET",
            "/v1/recipients/not-an-address",
            &[],
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(&r)["error"]["field"], "address");
}

#[tokio::test]
async fn a_cursor_pages_through_every_message_once_newest_first() {
    let t = TestStack::new().await;
    let api = api(&t);
    let (key_id, auth) = key(&t, KeyEnvironment::Test).await;
    let mut made = Vec::new();
    for i in 0..5 {
        let tags: &[&str] = if i % 2 == 0 { &["even"] } else { &["odd"] };
        made.push(
            stored(
                &t,
                &key_id,
                KeyEnvironment::Test,
                "pages@example.org",
                tags,
                10_000 - i * 100,
            )
            .await,
        );
    }
    let newest_first: Vec<String> = made
        .iter()
        .rev()
        .map(|r| r.id.as_str().to_owned())
        .collect();

    for (filters, expected) in [
        (
            vec![("recipient", "pages@example.org")],
            newest_first.clone(),
        ),
        (vec![], newest_first.clone()),
        (
            // A filter expression: pages are filled from several reads and still continue right.
            vec![("recipient", "pages@example.org"), ("tag", "even")],
            newest_first.iter().step_by(2).cloned().collect(),
        ),
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10 {
            let mut query = filters.clone();
            query.push(("limit", "2"));
            if let Some(c) = &cursor {
                query.push(("cursor", c.as_str()));
            }
            let page = list(&api, &auth, &query).await;
            assert!(ids(&page).len() <= 2);
            seen.extend(ids(&page));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(seen, expected, "{filters:?}");
        // A cursor continues only the listing that made it.
        if let Some(c) = cursor {
            let r = api
                .handle(request(
                    &auth,
                    "GET",
                    "/v1/messages",
                    &[("state", "failed"), ("cursor", &c)],
                    None,
                ))
                .await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        }
    }
    let first = list(&api, &auth, &[("limit", "2")]).await;
    let c = first["next_cursor"].as_str().unwrap().to_owned();
    let r = api
        .handle(request(
            &auth,
            "GET",
            "/v1/messages",
            &[("state", "failed"), ("cursor", &c)],
            None,
        ))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_body(&r)["error"]["code"], "invalid_cursor");
}

#[tokio::test]
async fn a_test_keys_messages_are_never_listed_for_a_live_key() {
    let t = TestStack::new().await;
    let api = api(&t);
    let (test_id, test_auth) = key(&t, KeyEnvironment::Test).await;
    let (live_id, live_auth) = key(&t, KeyEnvironment::Live).await;
    let test_msg = stored(
        &t,
        &test_id,
        KeyEnvironment::Test,
        "both@example.org",
        &["x"],
        2_000,
    )
    .await;
    let live_msg = stored(
        &t,
        &live_id,
        KeyEnvironment::Live,
        "both@example.org",
        &["x"],
        1_000,
    )
    .await;

    for query in [
        vec![],
        vec![("recipient", "both@example.org")],
        vec![("tag", "x")],
        vec![("state", "sent")],
        vec![("category", "transactional")],
    ] {
        let live = list(&api, &live_auth, &query).await;
        assert_eq!(
            ids(&live),
            vec![live_msg.id.as_str().to_owned()],
            "{query:?}"
        );
        let test = list(&api, &test_auth, &query).await;
        assert_eq!(
            ids(&test),
            vec![test_msg.id.as_str().to_owned()],
            "{query:?}"
        );
    }
    let r = api
        .handle(request(
            &live_auth,
            "GET",
            "/v1/recipients/both%40example.org",
            &[],
            None,
        ))
        .await;
    let view = json_body(&r);
    let listed: HashSet<String> = ids(&json!({"data": view["messages"]}))
        .into_iter()
        .collect();
    assert_eq!(listed, HashSet::from([live_msg.id.as_str().to_owned()]));
}

#[tokio::test]
async fn a_page_cut_short_by_the_read_budget_says_so_and_its_cursor_reaches_the_match() {
    let t = TestStack::new().await;
    let api = api(&t);
    let (key_id, auth) = key(&t, KeyEnvironment::Test).await;
    // One old message tagged `rare` under 320 newer ones tagged `common`, all to one address:
    // a recipient+tag query evaluates 10, 20, 40, 80, 160 entries in its 5 reads (310), so the
    // first page ends before the match.
    let rare = stored(
        &t,
        &key_id,
        KeyEnvironment::Test,
        "budget@example.org",
        &["rare"],
        900_000,
    )
    .await;
    for i in 0..320 {
        stored(
            &t,
            &key_id,
            KeyEnvironment::Test,
            "budget@example.org",
            &["common"],
            800_000 - i,
        )
        .await;
    }
    let query = [
        ("recipient", "budget@example.org"),
        ("tag", "rare"),
        ("limit", "1"),
    ];
    let first = list(&api, &auth, &query).await;
    assert_eq!(ids(&first), Vec::<String>::new(), "{first}");
    assert_eq!(first["truncated"], true);
    let mut cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let mut found = Vec::new();
    for _ in 0..5 {
        let mut next = query.to_vec();
        next.push(("cursor", &cursor));
        let page = list(&api, &auth, &next).await;
        found.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(found, vec![rare.id.as_str().to_owned()]);
}

#[tokio::test]
async fn mailgate_admin_messages_find_prints_the_apis_page_and_a_table() {
    use clap::Parser;
    let t = TestStack::new().await;
    let api = api(&t);
    let (key_id, auth) = key(&t, KeyEnvironment::Test).await;
    let made = stored(
        &t,
        &key_id,
        KeyEnvironment::Test,
        "admin@example.org",
        &["x"],
        1_000,
    )
    .await;
    let table = t.table("MessagesTable");
    let run = |args: Vec<&str>| {
        let cli = mailgate_admin::Cli::try_parse_from(args).unwrap();
        let dynamodb = t.clients.dynamodb.clone();
        async move {
            let mut out = Vec::new();
            mailgate_admin::run(cli, &dynamodb, &mut out).await.unwrap();
            String::from_utf8(out).unwrap()
        }
    };
    let json_out = run(vec![
        "mailgate-admin",
        "messages",
        "find",
        "--recipient",
        "ADMIN@example.org",
        "--environment",
        "test",
        "--json",
        "--table",
        &table,
    ])
    .await;
    let printed: Value = serde_json::from_str(json_out.trim()).unwrap();
    let from_api = list(&api, &auth, &[("recipient", "admin@example.org")]).await;
    assert_eq!(printed, from_api);
    assert_eq!(ids(&printed), vec![made.id.as_str().to_owned()]);
    let table_out = run(vec![
        "mailgate-admin",
        "messages",
        "find",
        "--tag",
        "x",
        "--environment",
        "test",
        "--table",
        &table,
    ])
    .await;
    assert!(table_out.contains(made.id.as_str()), "{table_out}");
    assert!(
        table_out.contains("admin@example.org (sent)"),
        "{table_out}"
    );
    // The live environment (the default) has none of them.
    let live = run(vec![
        "mailgate-admin",
        "messages",
        "find",
        "--json",
        "--table",
        &table,
    ])
    .await;
    assert_eq!(
        ids(&serde_json::from_str(live.trim()).unwrap()),
        Vec::<String>::new()
    );
}
