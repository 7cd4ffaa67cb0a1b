//! The send API as the integration tests drive it: the real `send-api` handler wired from the
//! template's environment, API keys seeded in the stack's api-keys table, API Gateway v2
//! requests built from the committed fixtures, and the answers read back.

use lambda_http::http::{HeaderValue, header};
use lambda_http::{Body, Request, Response};
use mailgate_aws::{AwsClients, DynamoDbApiKeys};
use mailgate_core::{ApiKeyLabel, ApiKeyRecord, ApiKeySecret, KeyEnvironment, Scopes};
use send_api::{SendApi, SendApiConfig};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::{TestStack, fixture};

/// `send-api` as the template configures it, on the stack's own clients.
pub fn send_api(t: &TestStack) -> SendApi {
    send_api_on(t, &t.clients, |_| None)
}

/// `send-api` as the template configures it with `overrides` taking precedence (e.g. provider
/// base URLs of local fakes), on `clients` (e.g. through a fault proxy).
pub fn send_api_on(
    t: &TestStack,
    clients: &AwsClients,
    overrides: impl Fn(&str) -> Option<String>,
) -> SendApi {
    let base = t.function_env("send-api");
    let config = SendApiConfig::from_lookup(|k| overrides(k).or_else(|| base(k)))
        .expect("the template configures send-api");
    SendApi::new(config, clients.clone()).expect("send-api wires")
}

/// The stack's API keys.
pub fn api_keys(t: &TestStack) -> DynamoDbApiKeys {
    DynamoDbApiKeys::new(t.clients.dynamodb.clone(), t.table("ApiKeysTable"))
}

/// Stores a new key of `environment` with `scopes` (e.g. `"send,read"`) labelled `label`;
/// the key and its stored record.
pub async fn seed_key(
    t: &TestStack,
    environment: KeyEnvironment,
    scopes: &str,
    label: &str,
) -> (ApiKeySecret, ApiKeyRecord) {
    let secret = ApiKeySecret::generate(environment);
    let record = ApiKeyRecord::new(
        &secret,
        ApiKeyLabel::parse(label).expect("a valid label"),
        environment,
        Scopes::parse_list(scopes).expect("valid scopes"),
        OffsetDateTime::now_utc(),
    );
    api_keys(t)
        .create(&record)
        .await
        .expect("the key is stored");
    (secret, record)
}

/// The `Authorization` header value for `secret`.
pub fn bearer_of(secret: &ApiKeySecret) -> String {
    format!("Bearer {}", secret.expose())
}

/// Stores a new live key with `scopes`; its `Authorization` header value. (A test key's mail
/// goes to the sandbox simulator, never to a provider: see `bearer_in`.)
pub async fn bearer(t: &TestStack, scopes: &str) -> String {
    bearer_in(t, KeyEnvironment::Live, scopes).await
}

/// Stores a new key of `environment` with `scopes`; its `Authorization` header value.
pub async fn bearer_in(t: &TestStack, environment: KeyEnvironment, scopes: &str) -> String {
    let (secret, _) = seed_key(t, environment, scopes, "integration test").await;
    bearer_of(&secret)
}

/// An API Gateway v2 (HTTP API / function URL) request built from a fixture under `events/`.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    event: Value,
    authorization: Option<String>,
    idempotency_key: Option<String>,
}

impl ApiRequest {
    /// The fixture `name` (e.g. `send-api/get-health.json`) as recorded, except that it carries
    /// no `Authorization` header unless [`ApiRequest::authorization`] sets one.
    pub fn fixture(name: &str) -> Self {
        Self {
            event: serde_json::from_str(&fixture(name)).expect("the fixture is JSON"),
            authorization: None,
            idempotency_key: None,
        }
    }

    /// `method path` (the path may carry a `?query`; none without one) on the
    /// `send-api/post-message.json` fixture, without its body, `Idempotency-Key` and
    /// `Content-Length`.
    pub fn new(method: &str, path: &str) -> Self {
        let mut request = Self::fixture("send-api/post-message.json");
        if let Some(headers) = request.event["headers"].as_object_mut() {
            headers.remove("idempotency-key");
            headers.remove("content-length");
        }
        request.event["body"] = Value::Null;
        request.method(method).query("").path(path)
    }

    /// The HTTP method.
    pub fn method(mut self, method: &str) -> Self {
        self.event["requestContext"]["http"]["method"] = json!(method);
        self
    }

    /// The path; a `?query` after it replaces the query string.
    pub fn path(mut self, path: &str) -> Self {
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        self.event["rawPath"] = json!(path);
        self.event["requestContext"]["http"]["path"] = json!(path);
        match query {
            Some(query) => self.query(query),
            None => self,
        }
    }

    /// The raw query string (`""` for none); the handler parses it as API Gateway would.
    pub fn query(mut self, query: &str) -> Self {
        self.event["rawQueryString"] = json!(query);
        if let Some(event) = self.event.as_object_mut() {
            event.remove("queryStringParameters");
        }
        self
    }

    /// The body, as text.
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.event["body"] = Value::String(body.into());
        self
    }

    /// The body, as JSON text.
    pub fn json(self, body: &Value) -> Self {
        self.body(body.to_string())
    }

    /// The `Authorization` header.
    pub fn authorization(mut self, value: &str) -> Self {
        self.authorization = Some(value.to_owned());
        self
    }

    /// The `Idempotency-Key` header.
    pub fn idempotency_key(mut self, key: &str) -> Self {
        self.idempotency_key = Some(key.to_owned());
        self
    }

    /// The request as `lambda_http` hands it to a handler.
    pub fn build(self) -> Request {
        let mut request = lambda_http::request::from_str(&self.event.to_string())
            .expect("the fixture is an API Gateway v2 request");
        let headers = request.headers_mut();
        headers.remove(header::AUTHORIZATION);
        if let Some(value) = self.authorization {
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&value).expect("a valid header value"),
            );
        }
        if let Some(key) = self.idempotency_key {
            headers.insert(
                "idempotency-key",
                HeaderValue::from_str(&key).expect("a valid header value"),
            );
        }
        request
    }
}

/// The answer's body as JSON; panics when it is not a text body of JSON.
pub fn json_body(response: &Response<Body>) -> Value {
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("the body is JSON"),
        other => panic!("expected a text body, got {other:?}"),
    }
}

/// The answer's body as JSON, or `null` when it is not JSON text (for callers that read
/// answers of every kind, e.g. under injected faults).
pub fn json_or_null(response: &Response<Body>) -> Value {
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The answer's body as text (lossy for binary bodies; empty when there is none).
pub fn text_body(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(text) => text.clone(),
        Body::Binary(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        _ => String::new(),
    }
}
