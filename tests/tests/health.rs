//! `GET /v1/health` through the real `send-api` handler, fed the API Gateway fixture.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};
use mailgate_tests::{TestStack, fixture};
use send_api::{SendApi, SendApiConfig};

fn json(r: &Response<Body>) -> serde_json::Value {
    match r.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

fn request(name: &str) -> lambda_http::Request {
    lambda_http::request::from_str(&fixture(name))
        .expect("the fixture is an API Gateway v2 request")
}

async fn api(t: &TestStack) -> SendApi {
    let config = SendApiConfig::from_lookup(t.function_env("send-api"))
        .expect("the template configures send-api");
    SendApi::new(config, t.clients.clone()).unwrap()
}

#[tokio::test]
async fn health_is_200_when_every_table_and_queue_exists() {
    let t = TestStack::new().await;
    let response = api(&t)
        .await
        .handle(request("send-api/get-health.json"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(&response);
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
            "control"
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
    let api = api(&t).await;
    let missing = t.table("IdempotencyTable");
    t.clients
        .dynamodb
        .delete_table()
        .table_name(&missing)
        .send()
        .await
        .unwrap();

    let response = api.handle(request("send-api/get-health.json")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json(&response);
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
    let api = api(&t).await;
    t.clients
        .sqs
        .delete_queue()
        .queue_url(t.queue_url("SendQueue"))
        .send()
        .await
        .unwrap();

    let response = api.handle(request("send-api/get-health.json")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&response)["queues"][0]["state"], "missing");
}

#[tokio::test]
async fn health_is_503_when_the_emulator_cannot_be_reached() {
    let t = TestStack::new().await;
    // A loopback port nobody listens on: every check is unreachable, none is "missing".
    let dead = mailgate_tests::sdk_config("http://127.0.0.1:9").await;
    let config = SendApiConfig::from_lookup(t.function_env("send-api")).unwrap();
    let api = SendApi::new(config, mailgate_aws::AwsClients::new(&dead)).unwrap();
    let response = api.handle(request("send-api/get-health.json")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json(&response);
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
    let response = api(&t)
        .await
        .handle(request("send-api/get-unknown-route.json"))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json(&response)["error"]["code"], "not_found");
}
