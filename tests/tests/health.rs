//! `GET /v1/health` through the real `send-api` handler, fed the API Gateway fixture: the verdict
//! alone for anyone, the full report for a key with the `read` scope.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use lambda_http::http::StatusCode;
use mailgate_tests::TestStack;
use mailgate_tests::api::{ApiRequest, bearer, json_body, send_api, send_api_on, text_body};
use send_api::SendApiConfig;

/// The health request with `Authorization: Bearer <a new key with scopes>`.
async fn with_key(t: &TestStack, scopes: &str) -> lambda_http::Request {
    ApiRequest::fixture("send-api/get-health.json")
        .authorization(&bearer(t, scopes).await)
        .build()
}

#[tokio::test]
async fn health_is_200_when_every_table_and_queue_exists() {
    let t = TestStack::new().await;
    let response = send_api(&t).handle(with_key(&t, "read").await).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(&response);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["healthy"], true);
    assert_eq!(body["function"], "send-api");
    let tables: Vec<_> = body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        tables,
        [
            "messages",
            "idempotency",
            "suppressions",
            "api_keys",
            "control",
            "templates"
        ]
    );
    assert!(
        body["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "ok")
    );
    assert_eq!(body["queues"][0]["role"], "send");
    assert_eq!(body["queues"][0]["state"], "ok");
}

#[tokio::test]
async fn health_is_503_naming_a_missing_table() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let read = with_key(&t, "read").await;
    let missing = t.table("IdempotencyTable");
    t.clients
        .dynamodb
        .delete_table()
        .table_name(&missing)
        .send()
        .await
        .unwrap();

    let response = api.handle(read).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json_body(&response);
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["error"]["code"], "dependencies_unavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&missing), "{message}");
    let idempotency = body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == "idempotency")
        .unwrap();
    assert_eq!(idempotency["state"], "missing");
    let others_ok = body["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["role"] != "idempotency")
        .all(|c| c["state"] == "ok");
    assert!(others_ok);
}

#[tokio::test]
async fn health_is_503_naming_a_missing_queue() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let read = with_key(&t, "read").await;
    t.clients
        .sqs
        .delete_queue()
        .queue_url(t.queue_url("SendQueue"))
        .send()
        .await
        .unwrap();

    let response = api.handle(read).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json_body(&response)["queues"][0]["state"], "missing");
}

#[tokio::test]
async fn health_is_503_when_the_emulator_cannot_be_reached() {
    let t = TestStack::new().await;
    // A loopback port nobody listens on: every check is unreachable, none is "missing".
    let dead = mailgate_tests::sdk_config("http://127.0.0.1:9").await;
    let api = send_api_on(&t, &mailgate_aws::AwsClients::new(&dead), |_| None);
    // Without a key: the verdict alone (the key cannot be checked with AWS unreachable).
    let response = api
        .handle(ApiRequest::fixture("send-api/get-health.json").build())
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json_body(&response);
    assert_eq!(body["status"], "unhealthy");
    assert!(body.get("tables").is_none(), "{body}");
    // The report behind it: every check unreachable, none missing.
    let dead_clients = mailgate_aws::AwsClients::new(&dead);
    let names = SendApiConfig::from_lookup(t.function_env("send-api"))
        .unwrap()
        .names;
    let report =
        mailgate_aws::check_resources(&dead_clients.dynamodb, &dead_clients.sqs, &names).await;
    let body = serde_json::to_value(&report).unwrap();
    assert!(
        body["tables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "unreachable")
    );
}

#[tokio::test]
async fn unknown_routes_are_404_with_the_error_shape() {
    let t = TestStack::new().await;
    let response = send_api(&t)
        .handle(ApiRequest::fixture("send-api/get-unknown-route.json").build())
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(&response)["error"]["code"], "not_found");
}

#[tokio::test]
async fn an_anonymous_caller_gets_the_verdict_and_nothing_that_names_a_resource() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let response = api
        .handle(ApiRequest::fixture("send-api/get-health.json").build())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json_body(&response),
        serde_json::json!({"status": "healthy"})
    );

    // Unhealthy: still nothing that names a table, a queue URL or the account.
    let missing = t.table("IdempotencyTable");
    t.clients
        .dynamodb
        .delete_table()
        .table_name(&missing)
        .send()
        .await
        .unwrap();
    let api = send_api(&t);
    let response = api
        .handle(ApiRequest::fixture("send-api/get-health.json").build())
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = text_body(&response);
    assert!(!text.contains(&missing), "{text}");
    // No queue URL (they carry the account id), no SDK error text.
    assert!(
        !text.contains("123456789012") && !text.contains("http"),
        "{text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["error"]["code"], "dependencies_unavailable");
}

#[tokio::test]
async fn the_full_report_needs_a_key_with_the_read_scope() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let response = api.handle(with_key(&t, "send").await).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_body(&response)["error"]["code"], "insufficient_scope");
    let forged = ApiRequest::fixture("send-api/get-health.json")
        .authorization("Bearer mg_test_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        .build();
    assert_eq!(api.handle(forged).await.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn anonymous_health_checks_reuse_one_check_of_the_resources_for_a_while() {
    let t = TestStack::new().await;
    let (clients, log) = mailgate_tests::calls::counted_clients(&t.sdk);
    let api = send_api_on(&t, &clients, |_| None);
    for _ in 0..5 {
        let response = api
            .handle(ApiRequest::fixture("send-api/get-health.json").build())
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let calls = log.take();
    // One check: a DescribeTable per table and a GetQueueAttributes per queue (the send queue,
    // and the events queue the simulator posts to), not five of each.
    assert_eq!(calls.total("dynamodb"), 6, "{}", calls.describe());
    assert_eq!(calls.total("sqs"), 2, "{}", calls.describe());
}
