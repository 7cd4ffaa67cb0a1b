#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Message templates end to end: the real send-api handler on the emulator's templates table
//! (from the template), sends rendered from a template through SES in the emulator, and the
//! errors a caller can cause.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_core::KeyEnvironment;
use mailgate_tests::api::bearer_in as bearer;
use mailgate_tests::{TestStack, fixture};
use send_api::{SendApi, SendApiConfig};
use serde_json::{Value, json};

fn api(t: &TestStack) -> SendApi {
    let config = SendApiConfig::from_lookup(t.function_env("send-api")).unwrap();
    SendApi::new(config, t.clients.clone()).unwrap()
}

fn request(auth: &str, method: &str, path: &str, body: Option<Value>) -> Request {
    let mut event: Value = serde_json::from_str(&fixture("send-api/post-message.json")).unwrap();
    event["requestContext"]["http"]["method"] = json!(method);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["body"] = body.map_or(Value::Null, |b| json!(b.to_string()));
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
        Body::Empty => Value::Null,
        other => panic!("expected a text body, got {other:?}"),
    }
}

#[tokio::test]
async fn a_template_is_versioned_previewed_and_sends_its_escaped_rendering() {
    let t = TestStack::new().await;
    let api = api(&t);
    let admin = bearer(&t, KeyEnvironment::Test, "send,read,templates:write").await;
    let created = api
        .handle(request(
            &admin,
            "POST",
            "/v1/templates",
            Some(json!({
                "name": "Receipt",
                "subject": "Order {{ order }}",
                "html": "<p>Hello {{ name }}</p>",
                "text": "Hello {{ name }}",
            })),
        ))
        .await;
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "{:?}",
        created.body()
    );
    let id = json_body(&created)["id"].as_str().unwrap().to_owned();

    // A draft version is not used until published.
    let draft = api
        .handle(request(
            &admin,
            "PUT",
            &format!("/v1/templates/{id}"),
            Some(json!({"subject": "Draft {{ order }}", "text": "x", "publish": false})),
        ))
        .await;
    assert_eq!(draft.status(), StatusCode::OK);
    assert_eq!(json_body(&draft)["published_version"], 1);
    let got = json_body(
        &api.handle(request(&admin, "GET", &format!("/v1/templates/{id}"), None))
            .await,
    );
    assert_eq!(got["latest_version"], 2);
    assert_eq!(got["content"]["subject"], "Order {{ order }}");
    let listed = json_body(
        &api.handle(request(&admin, "GET", "/v1/templates", None))
            .await,
    );
    assert_eq!(listed["data"][0]["id"], id.as_str());

    let preview = api
        .handle(request(
            &admin,
            "POST",
            &format!("/v1/templates/{id}/render"),
            Some(json!({"data": {"order": 7, "name": "<Jane & co>"}})),
        ))
        .await;
    assert_eq!(preview.status(), StatusCode::OK);
    let preview = json_body(&preview);
    assert_eq!(preview["html"], "<p>Hello &lt;Jane &amp; co&gt;</p>");
    assert_eq!(preview["text"], "Hello <Jane & co>");

    // A send with the template is sent through SES in the emulator as rendered.
    let sent = api
        .handle(request(
            &admin,
            "POST",
            "/v1/messages",
            Some(json!({
                "from": "hello@example.com",
                "to": ["jane@example.org"],
                "template": {"id": id, "data": {"order": 7, "name": "<Jane & co>"}},
            })),
        ))
        .await;
    assert_eq!(sent.status(), StatusCode::ACCEPTED, "{:?}", sent.body());
    let message_id = json_body(&sent)["id"].as_str().unwrap().to_owned();
    let message = json_body(
        &api.handle(request(
            &admin,
            "GET",
            &format!("/v1/messages/{message_id}"),
            None,
        ))
        .await,
    );
    assert_eq!(message["state"], "sent", "{message}");
    assert_eq!(message["template"], json!({"id": id, "version": 1}));

    // A missing variable names every one, and nothing is sent.
    let missing = api
        .handle(request(
            &admin,
            "POST",
            "/v1/messages",
            Some(json!({
                "from": "hello@example.com",
                "to": ["jane@example.org"],
                "template": {"id": id, "data": {}},
            })),
        ))
        .await;
    assert_eq!(missing.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error = &json_body(&missing)["error"];
    assert_eq!(error["code"], "template_render_failed");
    let text = error["message"].as_str().unwrap();
    assert!(
        text.contains("`name`") && text.contains("`order`"),
        "{text}"
    );

    // Deleted: gone for reads and sends.
    let deleted = api
        .handle(request(
            &admin,
            "DELETE",
            &format!("/v1/templates/{id}"),
            None,
        ))
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = api
        .handle(request(&admin, "GET", &format!("/v1/templates/{id}"), None))
        .await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn templates_need_their_scope_and_stay_in_their_environment() {
    let t = TestStack::new().await;
    let api = api(&t);
    let reader = bearer(&t, KeyEnvironment::Test, "read").await;
    let body = json!({"name": "x", "subject": "s", "text": "t"});
    let refused = api
        .handle(request(
            &reader,
            "POST",
            "/v1/templates",
            Some(body.clone()),
        ))
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_body(&refused)["error"]["code"], "insufficient_scope");

    let writer = bearer(&t, KeyEnvironment::Test, "templates:write,read").await;
    let created = api
        .handle(request(&writer, "POST", "/v1/templates", Some(body)))
        .await;
    let id = json_body(&created)["id"].as_str().unwrap().to_owned();
    let live = bearer(&t, KeyEnvironment::Live, "templates:write,read").await;
    let other = api
        .handle(request(&live, "GET", &format!("/v1/templates/{id}"), None))
        .await;
    assert_eq!(other.status(), StatusCode::NOT_FOUND);

    let invalid = api
        .handle(request(
            &writer,
            "POST",
            "/v1/templates",
            Some(json!({"name": "y", "subject": "{{ broken", "text": "t"})),
        ))
        .await;
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_body(&invalid)["error"]["field"], "subject");
}
