#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! One-click unsubscribe end to end (issue 17): a bulk message sent through SES-in-moto carries
//! `List-Unsubscribe` (the local function URL of `unsubscribe`) and `List-Unsubscribe-Post`; a
//! tampered token is refused and changes nothing; the real token's POST answers 200, records an
//! `unsubscribe` suppression through the event path, and a repeat is 200 again. Real HMAC keys,
//! the real handlers, the emulator's tables.

use lambda_http::Request;
use lambda_http::http::{StatusCode, header};
use mailgate_aws::DynamoDbSuppressionList;
use mailgate_core::{EmailAddress, KeyEnvironment, SuppressionReason};
use mailgate_tests::TestStack;
use mailgate_tests::api::{ApiRequest, bearer, bearer_in, send_api_on, text_body};
use serde_json::{Value, json};
use time::OffsetDateTime;
use unsubscribe::{Config, UnsubscribeFunction};

/// A test-only signing key (never a real secret).
const KEYS: &str = "test-only-unsubscribe-signing-key-0123456789";

/// The function's environment from the template, with the signing keys set as `make dev` does
/// after resolving the SSM reference.
fn with_keys(
    env: impl Fn(&str) -> Option<String> + 'static,
) -> impl Fn(&str) -> Option<String> + 'static {
    move |k| match k {
        "UNSUBSCRIBE_SIGNING_KEYS" => Some(KEYS.to_owned()),
        other => env(other),
    }
}

/// A function-URL style request (the HTTP API v2 payload both functions take).
fn request(method: &str, path: &str, body: Option<String>, authorization: Option<&str>) -> Request {
    let mut request = ApiRequest::new(method, path);
    if let Some(body) = body {
        request = request.body(body);
    }
    if let Some(authorization) = authorization {
        request = request.authorization(authorization);
    }
    request.build()
}

/// The raw MIME moto's SES stored for the message whose id header is `message_id`.
async fn raw_message(endpoint: &str, message_id: &str) -> String {
    let data: Value = reqwest::get(format!("{endpoint}/moto-api/data.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut stack = vec![&data["ses"]];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.contains(message_id) && s.contains("List-Unsubscribe") => {
                return s.clone();
            }
            Value::Object(m) => stack.extend(m.values()),
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    panic!(
        "no raw message for {message_id} in moto's SES: {:#}",
        data["ses"]
    );
}

/// The value of header `name` in `mime` (unfolded).
fn mime_header(mime: &str, name: &str) -> Option<String> {
    let unfolded = mime.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded
        .split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
}

#[tokio::test]
async fn a_bulk_message_carries_one_click_headers_and_its_link_unsubscribes_once() {
    let t = TestStack::new().await;
    let send_env = t.function_env("send-api");
    // The template wires the local function URL of `unsubscribe` as the base of the links.
    assert_eq!(
        send_env("UNSUBSCRIBE_BASE_URL").as_deref(),
        Some("http://127.0.0.1:9000/lambda-url/unsubscribe/")
    );
    let api = send_api_on(&t, &t.clients, with_keys(|_| None));
    let unsubscribe = UnsubscribeFunction::new(
        Config::from_lookup(with_keys(t.function_env("unsubscribe"))).unwrap(),
        t.clients.clone(),
    );
    let auth = bearer(&t, "send,read").await;

    let bulk = json!({
        "from": "news@example.com",
        "to": ["jane@example.org"],
        "subject": "This week",
        "text": "News.",
        "category": "bulk",
        "topic": "weekly",
    });
    let sent = api
        .handle(request(
            "POST",
            "/v1/messages",
            Some(bulk.to_string()),
            Some(&auth),
        ))
        .await;
    assert_eq!(sent.status(), StatusCode::ACCEPTED, "{}", text_body(&sent));
    let body: Value = serde_json::from_str(&text_body(&sent)).unwrap();
    assert_eq!(body["status"], "sent", "{body}");
    let id = body["id"].as_str().unwrap().to_owned();

    // Both headers in the raw message SES (moto) recorded.
    let mime = raw_message(&t.endpoint, &id).await;
    assert_eq!(
        mime_header(&mime, "List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click"),
        "{mime}"
    );
    let link = mime_header(&mime, "List-Unsubscribe").unwrap();
    let token = link
        .strip_prefix("<http://127.0.0.1:9000/lambda-url/unsubscribe/")
        .and_then(|rest| rest.strip_suffix('>'))
        .unwrap_or_else(|| panic!("unexpected List-Unsubscribe {link:?}"))
        .to_owned();
    assert!(!token.contains("jane"), "the token names no address");

    // GET shows the page and changes nothing; a tampered token is refused and changes nothing.
    let page = unsubscribe
        .handle(request("GET", &format!("/{token}"), None, None))
        .await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(text_body(&page).contains("method=\"post\""));
    let mut tampered = token.clone().into_bytes();
    let i = tampered.len() - 3;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let refused = unsubscribe
        .handle(request(
            "POST",
            &format!("/{tampered}"),
            Some("List-Unsubscribe=One-Click".into()),
            None,
        ))
        .await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let suppressions =
        DynamoDbSuppressionList::new(t.clients.dynamodb.clone(), t.table("SuppressionsTable"));
    let jane = EmailAddress::parse("jane@example.org").unwrap();
    let check = || async {
        let now = OffsetDateTime::now_utc();
        let mut found = suppressions
            .check(std::slice::from_ref(&jane), now)
            .await
            .unwrap();
        found.extend(
            suppressions
                .check_in(std::slice::from_ref(&jane), Some("weekly"), now)
                .await
                .unwrap(),
        );
        found
    };
    assert!(
        check().await.is_empty(),
        "GET and a tampered token change nothing"
    );

    // The one-click POST: 200, no cookie, no redirect; recorded once.
    for _ in 0..2 {
        let done = unsubscribe
            .handle(request(
                "POST",
                &format!("/{token}"),
                Some("List-Unsubscribe=One-Click".into()),
                None,
            ))
            .await;
        assert_eq!(done.status(), StatusCode::OK, "{}", text_body(&done));
        assert!(done.headers().get(header::SET_COOKIE).is_none());
        assert!(done.headers().get(header::LOCATION).is_none());
    }
    // An unsubscribe scoped to the message's topic.
    let found = check().await;
    assert_eq!(found[&jane].reason, SuppressionReason::Unsubscribe);
    assert_eq!(found[&jane].topic.as_deref(), Some("weekly"));
    // The next bulk message to her on that topic is not sent; one on another topic is, and a
    // transactional one still goes.
    let mut offers = bulk.clone();
    offers["topic"] = json!("offers");
    let other_topic = api
        .handle(request(
            "POST",
            "/v1/messages",
            Some(offers.to_string()),
            Some(&auth),
        ))
        .await;
    assert_eq!(
        other_topic.status(),
        StatusCode::ACCEPTED,
        "{}",
        text_body(&other_topic)
    );
    assert!(
        text_body(&other_topic).contains("\"sent\""),
        "{}",
        text_body(&other_topic)
    );
    let again = api
        .handle(request(
            "POST",
            "/v1/messages",
            Some(bulk.to_string()),
            Some(&auth),
        ))
        .await;
    assert_eq!(
        again.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        text_body(&again)
    );
    assert!(text_body(&again).contains("all_recipients_suppressed"));
    let receipt = json!({
        "from": "shop@example.com",
        "to": ["jane@example.org"],
        "subject": "Your receipt",
        "text": "Paid.",
    });
    let receipt = api
        .handle(request(
            "POST",
            "/v1/messages",
            Some(receipt.to_string()),
            Some(&auth),
        ))
        .await;
    assert_eq!(
        receipt.status(),
        StatusCode::ACCEPTED,
        "{}",
        text_body(&receipt)
    );
    assert!(
        text_body(&receipt).contains("\"sent\""),
        "{}",
        text_body(&receipt)
    );

    // The unsubscribe is in the message's history, from the one-click source.
    let read = api
        .handle(request(
            "GET",
            &format!("/v1/messages/{id}"),
            None,
            Some(&auth),
        ))
        .await;
    let message: Value = serde_json::from_str(&text_body(&read)).unwrap();
    assert_eq!(message["topic"], "weekly", "{message}");
    let events = message["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "unsubscribed" && e["provider_type"] == "one_click"),
        "{message}"
    );

    // The API shows the scoped entry, and DELETE ?topic= lifts it (a live key: event-written).
    let shown = api
        .handle(request(
            "GET",
            "/v1/suppressions/jane@example.org?topic=weekly",
            None,
            Some(&auth),
        ))
        .await;
    assert_eq!(shown.status(), StatusCode::OK, "{}", text_body(&shown));
    assert!(
        text_body(&shown).contains("\"topic\":\"weekly\""),
        "{}",
        text_body(&shown)
    );
    let unscoped = api
        .handle(request(
            "GET",
            "/v1/suppressions/jane@example.org",
            None,
            Some(&auth),
        ))
        .await;
    assert_eq!(unscoped.status(), StatusCode::NOT_FOUND);
    let live = bearer_in(&t, KeyEnvironment::Live, "suppressions:write").await;
    let lifted = api
        .handle(request(
            "DELETE",
            "/v1/suppressions/jane@example.org?topic=weekly",
            None,
            Some(&live),
        ))
        .await;
    assert_eq!(
        lifted.status(),
        StatusCode::NO_CONTENT,
        "{}",
        text_body(&lifted)
    );
    assert!(check().await.is_empty());

    // Counted once (the repeat is a duplicate), with the event path's metrics.
    let counts = unsubscribe.tally().snapshot();
    assert_eq!(
        counts.get(&("OneClickUnsubscribes", "ses".to_owned(), "bulk".to_owned())),
        Some(&1),
        "{counts:?}"
    );
}

#[tokio::test]
async fn a_resubscribe_lifts_only_an_event_written_unsubscribe_in_dynamodb() {
    let t = TestStack::new().await;
    let list =
        DynamoDbSuppressionList::new(t.clients.dynamodb.clone(), t.table("SuppressionsTable"));
    let now = OffsetDateTime::now_utc();
    let jane = EmailAddress::parse("jane@example.org").unwrap();
    let joe = EmailAddress::parse("joe@example.org").unwrap();
    let unsubscribed = mailgate_core::Suppression::new(&jane, SuppressionReason::Unsubscribe, now);
    assert!(list.put_unless_active(&unsubscribed, now).await.unwrap());
    // An entry the API wrote, and an event-written complaint.
    list.put(&mailgate_core::Suppression::new(
        &joe,
        SuppressionReason::Unsubscribe,
        now,
    ))
    .await
    .unwrap();
    assert!(
        !list
            .lift(&joe, SuppressionReason::Unsubscribe, None)
            .await
            .unwrap()
    );
    assert!(
        list.lift(&jane, SuppressionReason::Unsubscribe, None)
            .await
            .unwrap()
    );
    assert!(
        !list
            .lift(&jane, SuppressionReason::Unsubscribe, None)
            .await
            .unwrap()
    );
    let complaint = mailgate_core::Suppression::new(&jane, SuppressionReason::Complaint, now);
    assert!(list.put_unless_active(&complaint, now).await.unwrap());
    assert!(
        !list
            .lift(&jane, SuppressionReason::Unsubscribe, None)
            .await
            .unwrap()
    );
    let left = list.check(&[jane.clone(), joe.clone()], now).await.unwrap();
    assert_eq!(left[&jane].reason, SuppressionReason::Complaint);
    assert_eq!(left[&joe].reason, SuppressionReason::Unsubscribe);
}
