#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! The suppression list end to end: `DynamoDbSuppressionList` against the emulator's
//! suppressions table (built from the template, with its `by-reason` index), and the send-api
//! suppression endpoints driven from the API Gateway fixtures.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use mailgate_aws::{DynamoDbSuppressionList, SuppressionStoreError};
use mailgate_core::{EmailAddress, KeyEnvironment, Suppression, SuppressionReason};
use mailgate_tests::api::{ApiRequest, bearer, bearer_in, json_body, send_api};
use mailgate_tests::{TestStack, fixture};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

fn list(t: &TestStack) -> DynamoDbSuppressionList {
    DynamoDbSuppressionList::new(t.clients.dynamodb.clone(), t.table("SuppressionsTable"))
}

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

fn get_one(auth: &str, path: &str) -> Request {
    ApiRequest::fixture("send-api/get-suppressions.json")
        .authorization(auth)
        .path(path)
        .query("")
        .build()
}

fn get_page(auth: &str, query: &str) -> Request {
    ApiRequest::fixture("send-api/get-suppressions.json")
        .authorization(auth)
        .query(query)
        .build()
}

fn put(auth: &str, path: &str, body: Value) -> Request {
    ApiRequest::fixture("send-api/put-suppression.json")
        .authorization(auth)
        .path(path)
        .json(&body)
        .build()
}

fn delete(auth: &str, path: &str) -> Request {
    ApiRequest::fixture("send-api/put-suppression.json")
        .authorization(auth)
        .method("DELETE")
        .path(path)
        .build()
}

fn assert_error(r: &Response<Body>, status: StatusCode, code: &str, field: Option<&str>) {
    assert_eq!(r.status(), status, "{:?}", r.body());
    let error = &json_body(r)["error"];
    assert_eq!(error["code"], code, "{error}");
    assert_eq!(error["field"].as_str(), field, "{error}");
}

/// A suppression made at `created_at`, optionally lapsing at `expires_at`.
fn entry(
    address: &str,
    reason: SuppressionReason,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
) -> Suppression {
    let entry = Suppression::new(&addr(address), reason, created_at);
    match expires_at {
        Some(at) => entry.expiring_at(at).unwrap(),
        None => entry,
    }
}

#[tokio::test]
async fn a_suppression_put_from_the_fixture_is_read_back_case_insensitively() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let auth = bearer(&t, "read,suppressions:write").await;

    let mut fixture_request: Value =
        serde_json::from_str(&fixture("send-api/put-suppression.json")).unwrap();
    fixture_request["headers"]["authorization"] = json!(auth);
    let put = lambda_http::request::from_str(&fixture_request.to_string()).unwrap();
    let stored = api.handle(put).await;
    assert_eq!(stored.status(), StatusCode::OK, "{:?}", stored.body());
    let body = json_body(&stored);
    assert_eq!(body["address"], "jane.doe@example.com");
    assert_eq!(body["reason"], "manual");
    assert_eq!(body["expires_at"], "2099-01-01T00:00:00Z");
    assert_eq!(body["note"], "asked to stop by phone");
    assert!(body["created_at"].as_str().unwrap().starts_with("20"));

    // A literal `@` and a different case find the same entry.
    let read = api
        .handle(get_one(&auth, "/v1/suppressions/Jane.Doe@Example.com"))
        .await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(json_body(&read), body);

    // The item has the documented layout, with the TTL in seconds.
    let item = t
        .clients
        .dynamodb
        .get_item()
        .table_name(t.table("SuppressionsTable"))
        .key("pk", AttributeValue::S("jane.doe@example.com".into()))
        .key("sk", AttributeValue::S("SUPPRESSION".into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["reason"].as_s().unwrap(), "manual");
    assert_eq!(item["expires_at"].as_n().unwrap(), "4070908800");
    assert_eq!(item["created_at"].as_s().unwrap().len(), 24);
}

#[tokio::test]
async fn a_suppression_screens_every_spelling_of_the_same_mailbox() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let store = list(&t);
    let auth = bearer(&t, "read,suppressions:write").await;
    let now = OffsetDateTime::now_utc();

    // Suppressed through the API as plain `jane@example.com`.
    let r = api
        .handle(put(
            &auth,
            "/v1/suppressions/jane%40example.com",
            json!({"reason": "manual"}),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    let variants = [
        "\"jane\"@example.com",
        "\"JANE\"@Example.com",
        "JANE@EXAMPLE.COM",
    ];
    let found = store.check(&variants.map(addr), now).await.unwrap();
    for v in variants {
        assert_eq!(
            found.get(&addr(v)).map(|s| s.reason),
            Some(SuppressionReason::Manual),
            "{v}"
        );
    }
    // Read through the API by a quoted spelling.
    let r = api
        .handle(get_one(&auth, "/v1/suppressions/%22jane%22%40example.com"))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    assert_eq!(json_body(&r)["address"], "jane@example.com");

    // An internationalised address suppressed in Unicode (JÄNE@BÜCHER.example) ...
    let r = api
        .handle(put(
            &auth,
            "/v1/suppressions/J%C3%84NE%40B%C3%9CCHER.example",
            json!({"reason": "complaint"}),
        ))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
    assert_eq!(json_body(&r)["address"], "jäne@xn--bcher-kva.example");
    // ... is stored under its canonical key ...
    let item = t
        .clients
        .dynamodb
        .get_item()
        .table_name(t.table("SuppressionsTable"))
        .key("pk", AttributeValue::S("jäne@xn--bcher-kva.example".into()))
        .key("sk", AttributeValue::S("SUPPRESSION".into()))
        .send()
        .await
        .unwrap()
        .item;
    assert!(item.is_some());
    // ... and screens its Unicode-case and punycode spellings.
    let variants = [
        "jäne@bücher.example",
        "JÄNE@xn--bcher-kva.example",
        "jäne@XN--BCHER-KVA.example",
    ];
    let found = store.check(&variants.map(addr), now).await.unwrap();
    assert_eq!(found.len(), variants.len(), "{found:?}");
    // Deleting by another spelling removes it.
    let r = api
        .handle(delete(
            &auth,
            "/v1/suppressions/j%C3%A4ne%40xn--bcher-kva.example",
        ))
        .await;
    assert!(r.status().is_success(), "{:?}", r.body());
    assert!(
        store
            .check(&variants.map(addr), now)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_put_replaces_the_previous_entry() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let auth = bearer(&t, "read,suppressions:write").await;
    let path = "/v1/suppressions/a%2Btag%40example.com";
    let first = api
        .handle(put(&auth, path, json!({"reason": "manual", "note": "one"})))
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    let second = api
        .handle(put(&auth, path, json!({"reason": "unsubscribe"})))
        .await;
    assert_eq!(second.status(), StatusCode::OK);
    let read = json_body(&api.handle(get_one(&auth, path)).await);
    assert_eq!(read["address"], "a+tag@example.com");
    assert_eq!(read["reason"], "unsubscribe");
    assert_eq!(read["note"], Value::Null);
    assert_eq!(read["expires_at"], Value::Null);
}

#[tokio::test]
async fn an_absent_or_expired_address_is_404_not_found() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let auth = bearer(&t, "read,suppressions:write").await;
    list(&t)
        .put(&entry(
            "old@example.com",
            SuppressionReason::Manual,
            datetime!(2020-01-01 0:00 UTC),
            Some(datetime!(2021-01-01 0:00 UTC)),
        ))
        .await
        .unwrap();

    for path in [
        "/v1/suppressions/old%40example.com",
        "/v1/suppressions/nobody%40example.com",
    ] {
        let r = api.handle(get_one(&auth, path)).await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
        let r = api.handle(delete(&auth, path)).await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    }
}

#[tokio::test]
async fn delete_removes_a_suppression() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let auth = bearer(&t, "read,suppressions:write").await;
    let path = "/v1/suppressions/gone%40example.com";
    let r = api
        .handle(put(&auth, path, json!({"reason": "hard_bounce"})))
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let r = api.handle(delete(&auth, path)).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(r.body().is_empty());
    let r = api.handle(get_one(&auth, path)).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
    let r = api.handle(delete(&auth, path)).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn bad_reasons_past_expiries_and_bad_addresses_are_422_with_the_field() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let auth = bearer(&t, "read,suppressions:write").await;
    let good = "/v1/suppressions/x%40example.com";
    let cases = [
        (
            good,
            json!({"reason": "bounced"}),
            "invalid_reason",
            "reason",
        ),
        (
            good,
            json!({"reason": "manual", "expires_at": "2001-01-01T00:00:00Z"}),
            "invalid_expires_at",
            "expires_at",
        ),
        (
            good,
            json!({"reason": "manual", "expires_at": "next week"}),
            "invalid_expires_at",
            "expires_at",
        ),
        (
            "/v1/suppressions/not-an-address",
            json!({"reason": "manual"}),
            "invalid_address",
            "address",
        ),
        (
            "/v1/suppressions/a%0D%0ABcc%3A%20x%40evil.test",
            json!({"reason": "manual"}),
            "invalid_address",
            "address",
        ),
    ];
    for (path, body, code, field) in cases {
        let r = api.handle(put(&auth, path, body)).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, code, Some(field));
    }
    let r = api.handle(get_one(&auth, good)).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn reading_needs_read_and_writing_needs_suppressions_write() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let reader = bearer(&t, "read").await;
    let sender = bearer(&t, "send").await;
    let path = "/v1/suppressions/x%40example.com";

    let r = api
        .handle(put(&reader, path, json!({"reason": "manual"})))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "insufficient_scope", None);
    let r = api.handle(delete(&reader, path)).await;
    assert_error(&r, StatusCode::FORBIDDEN, "insufficient_scope", None);
    let r = api.handle(get_page(&sender, "")).await;
    assert_error(&r, StatusCode::FORBIDDEN, "insufficient_scope", None);
    let r = api.handle(get_one(&sender, path)).await;
    assert_error(&r, StatusCode::FORBIDDEN, "insufficient_scope", None);

    let anonymous = ApiRequest::fixture("send-api/get-suppressions.json").build();
    let r = api.handle(anonymous).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "missing_api_key", None);

    let r = api.handle(get_one(&reader, path)).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn listing_by_reason_pages_newest_first_with_an_opaque_cursor() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let auth = bearer(&t, "read").await;
    let store = list(&t);
    let base = datetime!(2026-01-01 0:00 UTC);
    for i in 0..5 {
        store
            .put(&entry(
                &format!("c{i}@example.com"),
                SuppressionReason::Complaint,
                base + time::Duration::minutes(i),
                None,
            ))
            .await
            .unwrap();
    }
    for i in 0..2 {
        store
            .put(&entry(
                &format!("m{i}@example.com"),
                SuppressionReason::Manual,
                base,
                None,
            ))
            .await
            .unwrap();
    }
    store
        .put(&entry(
            "lapsed@example.com",
            SuppressionReason::Complaint,
            base - time::Duration::days(400),
            Some(base - time::Duration::days(1)),
        ))
        .await
        .unwrap();
    // A soft-bounce tally in an address's partition is not a suppression.
    t.clients
        .dynamodb
        .put_item()
        .table_name(t.table("SuppressionsTable"))
        .item("pk", AttributeValue::S("c0@example.com".into()))
        .item("sk", AttributeValue::S("SOFT#evt-1".into()))
        .send()
        .await
        .unwrap();

    // The fixture asks for complaints, two per page.
    let mut seen = Vec::new();
    let mut query = "reason=complaint&limit=2".to_owned();
    let mut pages = 0;
    loop {
        let r = api.handle(get_page(&auth, &query)).await;
        assert_eq!(r.status(), StatusCode::OK, "{:?}", r.body());
        let body = json_body(&r);
        let data = body["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        for item in data {
            assert_eq!(item["reason"], "complaint");
            seen.push(item["address"].as_str().unwrap().to_owned());
        }
        pages += 1;
        match body["next_cursor"].as_str() {
            Some(cursor) => query = format!("reason=complaint&limit=2&cursor={cursor}"),
            None => break,
        }
        assert!(pages < 10, "the listing does not end");
    }
    assert_eq!(
        seen,
        [
            "c4@example.com",
            "c3@example.com",
            "c2@example.com",
            "c1@example.com",
            "c0@example.com"
        ]
    );

    // The unfiltered listing scans: every active suppression once, no tallies, no lapsed ones.
    let mut all = Vec::new();
    let mut cursor = None;
    for _ in 0..10 {
        let page = store
            .list(None, cursor.as_deref(), 3, OffsetDateTime::now_utc())
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        all.extend(page.items.into_iter().map(|e| e.address.to_string()));
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    all.sort();
    assert_eq!(
        all,
        [
            "c0@example.com",
            "c1@example.com",
            "c2@example.com",
            "c3@example.com",
            "c4@example.com",
            "m0@example.com",
            "m1@example.com"
        ]
    );

    // The fixture as committed (no cursor) answers the first page.
    let r = api
        .handle(
            ApiRequest::fixture("send-api/get-suppressions.json")
                .authorization(&auth)
                .build(),
        )
        .await;
    assert_eq!(json_body(&r)["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn bad_listing_parameters_are_422_with_the_field() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let auth = bearer(&t, "read").await;
    for (query, code, field) in [
        ("reason=bounced", "invalid_reason", "reason"),
        ("limit=0", "invalid_limit", "limit"),
        ("limit=101", "invalid_limit", "limit"),
        ("limit=ten", "invalid_limit", "limit"),
        ("cursor=bm90LWEtY3Vyc29y", "invalid_cursor", "cursor"),
    ] {
        let r = api.handle(get_page(&auth, query)).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, code, Some(field));
    }
    // A cursor of one listing is refused by another.
    let store = list(&t);
    let now = OffsetDateTime::now_utc();
    for i in 0..3 {
        store
            .put(&entry(
                &format!("u{i}@example.com"),
                SuppressionReason::Unsubscribe,
                now,
                None,
            ))
            .await
            .unwrap();
    }
    let page = store.list(None, None, 1, now).await.unwrap();
    let cursor = page.next_cursor.unwrap();
    assert!(matches!(
        store
            .list(Some(SuppressionReason::Unsubscribe), Some(&cursor), 1, now)
            .await,
        Err(SuppressionStoreError::InvalidCursor)
    ));
}

#[tokio::test]
async fn check_finds_the_suppressed_recipients_among_many_in_batches() {
    let t = TestStack::new().await;
    let store = list(&t);
    let now = OffsetDateTime::now_utc();
    store
        .put(&entry(
            "bounced@example.com",
            SuppressionReason::HardBounce,
            now,
            None,
        ))
        .await
        .unwrap();
    store
        .put(&entry(
            "complained@example.com",
            SuppressionReason::Complaint,
            now,
            Some(now + time::Duration::days(30)),
        ))
        .await
        .unwrap();
    store
        .put(&entry(
            "lapsed@example.com",
            SuppressionReason::Manual,
            now - time::Duration::days(2),
            Some(now - time::Duration::days(1)),
        ))
        .await
        .unwrap();

    // 150 recipients (two batch gets), a case variant and a duplicate among them.
    let mut recipients: Vec<EmailAddress> = (0..146)
        .map(|i| addr(&format!("r{i}@example.com")))
        .collect();
    recipients.push(addr("Bounced@EXAMPLE.com"));
    recipients.push(addr("complained@example.com"));
    recipients.push(addr("complained@example.com"));
    recipients.push(addr("lapsed@example.com"));
    let found = store.check(&recipients, now).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(
        found[&addr("Bounced@example.com")].reason,
        SuppressionReason::HardBounce
    );
    assert_eq!(
        found[&addr("Bounced@example.com")].address.as_str(),
        "bounced@example.com"
    );
    assert_eq!(
        found[&addr("complained@example.com")].reason,
        SuppressionReason::Complaint
    );

    // Once its expiry passes, the complaint no longer suppresses.
    let later = now + time::Duration::days(31);
    let found = store
        .check(&[addr("complained@example.com")], later)
        .await
        .unwrap();
    assert!(found.is_empty());
    assert!(store.check(&[], now).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_entry_expiring_after_a_duration_is_stored_with_its_ttl() {
    let t = TestStack::new().await;
    let store = list(&t);
    let now = datetime!(2026-05-01 10:00:00.250 UTC);
    let stored = Suppression::new(
        &addr("ttl@example.com"),
        SuppressionReason::SoftBounceThreshold,
        now,
    )
    .expiring_after(Duration::from_secs(3600))
    .unwrap()
    .with_note("5 soft bounces in 7 days")
    .unwrap();
    store.put(&stored).await.unwrap();
    let read = store.get(&addr("TTL@example.com")).await.unwrap().unwrap();
    assert_eq!(read, stored);
    assert_eq!(read.expires_at, Some(datetime!(2026-05-01 11:00:01 UTC)));
    assert_eq!(
        store.delete(&addr("ttl@example.com")).await.unwrap(),
        Some(stored)
    );
    assert_eq!(store.get(&addr("ttl@example.com")).await.unwrap(), None);
}

#[tokio::test]
async fn only_a_live_key_may_lift_or_replace_a_suppression_that_delivery_events_wrote() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let test_key = bearer_in(&t, KeyEnvironment::Test, "suppressions:write,read").await;
    let live_key = bearer_in(&t, KeyEnvironment::Live, "suppressions:write,read").await;
    let now = OffsetDateTime::now_utc();
    for (address, reason) in [
        ("complained@example.com", SuppressionReason::Complaint),
        ("bounced@example.com", SuppressionReason::HardBounce),
        ("soft@example.com", SuppressionReason::SoftBounceThreshold),
        ("unsub@example.com", SuppressionReason::Unsubscribe),
    ] {
        // As the event processor writes them.
        assert!(
            list(&t)
                .put_unless_active(&entry(address, reason, now, None), now)
                .await
                .unwrap()
        );
        let path = format!("/v1/suppressions/{}", address.replace('@', "%40"));
        // A test key can neither delete it nor replace it with an entry that lapses.
        let refused = api.handle(delete(&test_key, &path)).await;
        assert_error(
            &refused,
            StatusCode::FORBIDDEN,
            "live_key_required",
            Some("address"),
        );
        let replaced = api
            .handle(put(
                &test_key,
                &path,
                json!({"reason": "manual", "expires_at": "2099-01-01T00:00:00Z"}),
            ))
            .await;
        assert_error(
            &replaced,
            StatusCode::FORBIDDEN,
            "live_key_required",
            Some("address"),
        );
        assert_eq!(
            list(&t).get(&addr(address)).await.unwrap().unwrap().reason,
            reason,
            "{address}"
        );
        // A live key can.
        let lifted = api.handle(delete(&live_key, &path)).await;
        assert_eq!(lifted.status(), StatusCode::NO_CONTENT, "{address}");
    }
    // Entries written through the API, whatever their reason, stay a test key's to manage.
    let put_by_api = api
        .handle(put(
            &test_key,
            "/v1/suppressions/manual%40example.com",
            json!({"reason": "complaint"}),
        ))
        .await;
    assert_eq!(put_by_api.status(), StatusCode::OK);
    let lifted = api
        .handle(delete(&test_key, "/v1/suppressions/manual%40example.com"))
        .await;
    assert_eq!(lifted.status(), StatusCode::NO_CONTENT);
}
