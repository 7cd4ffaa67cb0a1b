#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! `infra/openapi.yaml`, the send API's contract, kept in sync with the code. Each test fails when
//! the two drift apart:
//!
//! - the routes: every (method, path) of the contract reaches its handler (never 405 or "no
//!   route"), every other method on those paths is 405, and every path literal of the router is
//!   a path of the contract;
//! - the error codes: every code send-api can answer (its `ApiError`s, the field-error codes of
//!   `mailgate_core::send_request::code`, the `AuthFailure` codes) is in the contract's
//!   `ErrorCode`, and the contract lists no code the code never answers;
//! - the responses: real answers of the handler (built from the template against the emulator,
//!   as in `send_api.rs`) for every route and most of their statuses have a documented status,
//!   content type and required headers, and bodies valid against the documented schema.
//!
//! `make contract` fuzzes the same contract with schemathesis against `cargo lambda watch`.

use std::collections::BTreeSet;
use std::path::Path;

use lambda_http::http::{HeaderName, HeaderValue, header};
use lambda_http::{Body, Request, Response};
use mailgate_aws::DynamoDbApiKeys;
use mailgate_core::{
    ApiKeyLabel, ApiKeyRecord, ApiKeySecret, AuthFailure, KeyEnvironment, Scope, Scopes,
};
use mailgate_tests::{TestStack, fixture, workspace_root};
use send_api::{SendApi, SendApiConfig};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Every method the router could be asked for.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The contract, parsed.
struct Contract {
    doc: Value,
}

impl Contract {
    fn load() -> Self {
        let text = std::fs::read_to_string(workspace_root().join("infra/openapi.yaml")).unwrap();
        Self {
            doc: serde_yaml_ng::from_str(&text).expect("infra/openapi.yaml is YAML"),
        }
    }

    /// The path templates, e.g. `/v1/messages/{id}`.
    fn paths(&self) -> Vec<String> {
        self.doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    /// The operation `method` on `path`, if the contract has it.
    fn operation(&self, method: &str, path: &str) -> Option<&Value> {
        self.doc["paths"][path].get(method.to_ascii_lowercase())
    }

    /// `value`, or what its `$ref` (`#/components/…`) points at.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.strip_prefix('#').unwrap();
                self.doc
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {reference}"))
            }
            None => value,
        }
    }

    /// The values of the `ErrorCode` enum.
    fn error_codes(&self) -> BTreeSet<String> {
        self.doc["components"]["schemas"]["ErrorCode"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    }

    /// The problems of `instance` against `schema` (a schema node of the contract; its `$ref`s
    /// are resolved against the contract's components, formats such as `date-time` asserted).
    fn violations(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let mut root = match schema {
            Value::Object(_) => schema.clone(),
            other => json!({ "allOf": [other] }),
        };
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the contract's schema does not compile: {e}"));
        validator
            .iter_errors(instance)
            .map(|e| format!("{e} (at {})", e.instance_path()))
            .collect()
    }

    /// Asserts that `response`, the answer to `method` on the path template `path`, is one the
    /// contract describes; returns its JSON body (`Null` when it has none).
    fn check(&self, method: &str, path: &str, response: &Response<Body>) -> Value {
        let operation = self
            .operation(method, path)
            .unwrap_or_else(|| panic!("{method} {path} is not in the contract"));
        let status = response.status().as_u16().to_string();
        let text = body_text(response);
        let documented = operation["responses"].get(&status).unwrap_or_else(|| {
            panic!("{method} {path} answered {status}, which the contract does not list: {text}")
        });
        let documented = self.resolve(documented);
        if let Some(headers) = documented.get("headers").and_then(Value::as_object) {
            for (name, spec) in headers {
                let spec = self.resolve(spec);
                match response.headers().get(name.as_str()) {
                    None => assert!(
                        !spec["required"].as_bool().unwrap_or(false),
                        "{method} {path} {status} lacks the required {name} header"
                    ),
                    Some(value) => {
                        let value = json!(value.to_str().unwrap());
                        let problems = self.violations(&spec["schema"], &value);
                        assert!(
                            problems.is_empty(),
                            "{method} {path} {status}: header {name}: {value} {problems:?}"
                        );
                    }
                }
            }
        }
        let Some(content) = documented.get("content") else {
            assert!(
                text.is_empty() || method == "HEAD",
                "{method} {path} {status} has a body the contract does not describe: {text}"
            );
            return Value::Null;
        };
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{method} {path} {status}"
        );
        let schema = &content["application/json"]["schema"];
        let body: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path} {status}: not JSON ({e}): {text}"));
        let problems = self.violations(schema, &body);
        assert!(
            problems.is_empty(),
            "{method} {path} {status} violates the contract: {problems:#?}\n{body:#}"
        );
        body
    }
}

fn body_text(response: &Response<Body>) -> String {
    match response.body() {
        Body::Empty => String::new(),
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

/// A request as API Gateway delivers it (from the fixture): `method` on `path` with `query`,
/// `authorization` (none when empty), `body` and extra `headers`.
fn request(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    authorization: &str,
    body: Option<String>,
    headers: &[(&str, &str)],
) -> Request {
    let mut event: Value = serde_json::from_str(&fixture("send-api/post-message.json")).unwrap();
    event["requestContext"]["http"]["method"] = json!(method);
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["rawQueryString"] = json!(
        query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    );
    if !query.is_empty() {
        event["queryStringParameters"] = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    event["body"] = body.map_or(Value::Null, Value::String);
    let fixture_headers = event["headers"].as_object_mut().unwrap();
    for name in ["idempotency-key", "content-length", "authorization"] {
        fixture_headers.remove(name);
    }
    let mut request = lambda_http::request::from_str(&event.to_string()).unwrap();
    if !authorization.is_empty() {
        request.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
    }
    for (name, value) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    request
}

/// A stored key with `scopes`: its `Authorization` header value.
async fn key(t: &TestStack, scopes: &str) -> String {
    let secret = ApiKeySecret::generate(KeyEnvironment::Live);
    let record = ApiKeyRecord::new(
        &secret,
        ApiKeyLabel::parse("contract test").unwrap(),
        KeyEnvironment::Live,
        Scopes::parse_list(scopes).unwrap(),
        OffsetDateTime::now_utc(),
    );
    DynamoDbApiKeys::new(t.clients.dynamodb.clone(), t.table("ApiKeysTable"))
        .create(&record)
        .await
        .unwrap();
    format!("Bearer {}", secret.expose())
}

fn api(t: &TestStack) -> SendApi {
    let config = SendApiConfig::from_lookup(t.function_env("send-api")).unwrap();
    SendApi::new(config, t.clients.clone()).unwrap()
}

/// A concrete path for a template: a well-formed message id, a percent-encoded address.
fn concrete(path: &str) -> String {
    path.replace("{id}", "msg_0123456789abcdefghjkmnpqrs")
        .replace("{address}", "jane%40example.org")
        .replace("{domain}", "mail.example.org")
}

// ------------------------------------------------------------------------------------ routes

#[tokio::test]
async fn the_router_serves_exactly_the_contracts_operations() {
    let t = TestStack::new().await;
    let api = api(&t);
    let contract = Contract::load();
    for path in contract.paths() {
        for &method in METHODS {
            let response = api
                .handle(request(method, &concrete(&path), &[], "", None, &[]))
                .await;
            let text = body_text(&response);
            if contract.operation(method, &path).is_some() {
                assert_ne!(response.status(), 405, "{method} {path}: {text}");
                assert!(!text.contains("no route"), "{method} {path}: {text}");
                // Without a key every operation but the health check is refused, as documented.
                contract.check(method, &path, &response);
            } else {
                assert_eq!(
                    response.status(),
                    405,
                    "{method} {path} is not in the contract but answered: {text}"
                );
                assert!(text.contains("method_not_allowed"), "{text}");
            }
        }
    }
}

/// The code of a source file without its `#[cfg(test)]` module and its comment lines.
fn production_source(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("#[cfg(test)]")
        .next()
        .unwrap()
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn send_api_sources() -> Vec<(String, String)> {
    let dir = workspace_root().join("functions/send-api/src");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.display().to_string(), production_source(&p)))
        .collect()
}

/// The string literal `text` starts with (after whitespace), if it does.
fn leading_literal(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_owned())
}

#[test]
fn every_path_the_router_names_is_in_the_contract() {
    let contract = Contract::load();
    let paths = contract.paths();
    let mut named = BTreeSet::new();
    for (file, source) in send_api_sources() {
        for (at, _) in source.match_indices("\"/v1/") {
            let literal = leading_literal(&source[at..]).unwrap();
            named.insert((file.clone(), literal));
        }
    }
    assert!(
        named.len() >= 5,
        "the router's paths were not found: {named:?}"
    );
    for (file, literal) in named {
        // A literal is a path, or the prefix of a templated one (`/v1/messages/` + `{id}`).
        let known = paths
            .iter()
            .any(|p| *p == literal || p.strip_prefix(&literal).is_some_and(|r| r.starts_with('{')));
        assert!(known, "{file} routes {literal}, which the contract lacks");
    }
}

// ------------------------------------------------------------------------------- error codes

/// Every `AuthFailure`; the match makes a new variant a compile error here.
fn auth_failures() -> Vec<AuthFailure> {
    let all = vec![
        AuthFailure::MissingApiKey,
        AuthFailure::MalformedApiKey(String::new()),
        AuthFailure::InvalidApiKey,
        AuthFailure::InsufficientScope {
            needed: Scope::Send,
        },
    ];
    for failure in &all {
        match failure {
            AuthFailure::MissingApiKey
            | AuthFailure::MalformedApiKey(_)
            | AuthFailure::InvalidApiKey
            | AuthFailure::InsufficientScope { .. } => {}
        }
    }
    all
}

/// The error codes the code can answer, read from the sources.
fn codes_in_the_code() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let mut sources = send_api_sources();
    // The services behind the send API's routes build some of its answers.
    for file in [
        "shared/lambda/src/http.rs",
        "shared/services/src/accept.rs",
        "shared/services/src/templates.rs",
        "shared/services/src/domains.rs",
    ] {
        sources.push((
            file.to_owned(),
            production_source(&workspace_root().join(file)),
        ));
    }
    for (_, source) in &sources {
        // `ApiError::new(status, "code", …)` and `TemplateFailure::new(status, "code", …)`: the
        // literal after the first argument.
        for constructor in [
            "ApiError::new(",
            "TemplateFailure::new(",
            "DomainFailure::new(",
        ] {
            for (at, pattern) in source.match_indices(constructor) {
                let args = &source[at + pattern.len()..];
                if let Some(code) = args.find(',').and_then(|c| leading_literal(&args[c + 1..])) {
                    codes.insert(code);
                }
            }
        }
        // `unprocessable("code", field, message)` in the suppression routes.
        for (at, pattern) in source.match_indices("unprocessable(") {
            codes.extend(leading_literal(&source[at + pattern.len()..]));
        }
        // Bodies built with `json!` (and the serialisation fallback's raw JSON).
        for pattern in ["\"code\": ", "\"code\":"] {
            for (at, _) in source.match_indices(pattern) {
                codes.extend(leading_literal(&source[at + pattern.len()..]));
            }
        }
    }
    // The field-error codes of the send request validation.
    let send_request = production_source(&workspace_root().join("shared/core/src/send_request.rs"));
    let module = send_request
        .split("pub mod code {")
        .nth(1)
        .and_then(|m| m.split("\n}").next())
        .expect("send_request.rs has `pub mod code`");
    for (at, pattern) in module.match_indices("&str = ") {
        codes.extend(leading_literal(&module[at + pattern.len()..]));
    }
    // The query codes of message search (`GET /v1/messages`).
    let search = production_source(&workspace_root().join("shared/core/src/search.rs"));
    let module = search
        .split("pub mod code {")
        .nth(1)
        .and_then(|m| m.split("\n}").next())
        .expect("search.rs has `pub mod code`");
    for (at, pattern) in module.match_indices("&str = ") {
        codes.extend(leading_literal(&module[at + pattern.len()..]));
    }
    // The stats query's codes (`mailgate_core::stats::code`).
    let stats = production_source(&workspace_root().join("shared/core/src/stats.rs"));
    let module = stats
        .split("pub mod code {")
        .nth(1)
        .and_then(|m| m.split("\n}").next())
        .expect("stats.rs has `pub mod code`");
    for (at, pattern) in module.match_indices("&str = ") {
        codes.extend(leading_literal(&module[at + pattern.len()..]));
    }
    // The sender-domain codes (mailgate_core::sender_domain::code).
    let sender_domain =
        production_source(&workspace_root().join("shared/core/src/sender_domain.rs"));
    let module = sender_domain
        .split("pub mod code {")
        .nth(1)
        .and_then(|m| m.split("\n}").next())
        .expect("sender_domain.rs has `pub mod code`");
    for (at, pattern) in module.match_indices("&str = ") {
        codes.extend(leading_literal(&module[at + pattern.len()..]));
    }
    codes.extend(auth_failures().iter().map(|f| f.code().to_owned()));
    codes
}

#[test]
fn the_contract_lists_every_error_code_the_code_answers_and_no_other() {
    let in_code = codes_in_the_code();
    let in_contract = Contract::load().error_codes();
    // The scan must see the codes of each source, or it proves nothing.
    for sample in [
        "method_not_allowed",
        "idempotency_key_in_use",
        "not_cancellable",
        "invalid_cursor",
        "too_many_messages",
        "insufficient_scope",
        "internal_error",
        "all_recipients_suppressed",
        "invalid_range",
    ] {
        assert!(in_code.contains(sample), "the scan missed {sample}");
    }
    let missing: Vec<_> = in_code.difference(&in_contract).collect();
    assert!(
        missing.is_empty(),
        "answered by send-api, missing from ErrorCode in infra/openapi.yaml: {missing:?}"
    );
    let stale: Vec<_> = in_contract.difference(&in_code).collect();
    assert!(
        stale.is_empty(),
        "in ErrorCode of infra/openapi.yaml, answered by nothing: {stale:?}"
    );
}

#[test]
fn the_health_error_code_is_the_contracts() {
    let source = production_source(&workspace_root().join("shared/lambda/src/health.rs"));
    let at = source
        .find("code: \"")
        .expect("health.rs answers a literal code");
    let code = leading_literal(&source[at + "code: ".len()..]).unwrap();
    let contract = Contract::load();
    assert_eq!(
        contract.doc["components"]["schemas"]["Health"]["properties"]["error"]["properties"]["code"]
            ["const"],
        json!(code)
    );
}

#[test]
fn the_schema_check_refuses_what_the_contract_does_not_describe() {
    // Guards the checks below: a validator that accepted anything would prove nothing.
    let contract = Contract::load();
    let accepted = json!({"$ref": "#/components/schemas/SendAccepted"});
    let good = json!({"id": "msg_0123456789abcdefghjkmnpqrs", "status": "sent", "provider": "ses",
                      "provider_message_id": "x", "suppressed": []});
    assert_eq!(contract.violations(&accepted, &good), Vec::<String>::new());
    let mut extra = good.clone();
    extra["debug"] = json!(true);
    assert!(!contract.violations(&accepted, &extra).is_empty());
    let mut status = good.clone();
    status["status"] = json!("delivered");
    assert!(!contract.violations(&accepted, &status).is_empty());
    let time = json!({"$ref": "#/components/schemas/DateTime"});
    assert!(!contract.violations(&time, &json!("yesterday")).is_empty());
}

// --------------------------------------------------------------------------------- responses

/// One test's world: the stack, the API, the contract and a key with every scope.
struct World {
    t: TestStack,
    api: SendApi,
    contract: Contract,
    key: String,
}

impl World {
    async fn new() -> Self {
        let t = TestStack::new().await;
        let key = key(&t, "send,read,suppressions:write").await;
        Self {
            api: api(&t),
            contract: Contract::load(),
            key,
            t,
        }
    }

    /// Calls `method` on the concrete `path` (checked against the template `template`) with the
    /// world's key; asserts the status and the contract; returns the response and its body. A
    /// JSON string `body` is sent as it is (raw text), anything else as its JSON.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        method: &str,
        template: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
        headers: &[(&str, &str)],
        status: u16,
    ) -> (Response<Body>, Value) {
        let body = body.map(|b| match b {
            Value::String(raw) => raw,
            json => json.to_string(),
        });
        self.call_as(
            &self.key, method, template, path, query, body, headers, status,
        )
        .await
    }

    /// As [`World::call`], with `authorization` (none when empty) and a raw body.
    #[allow(clippy::too_many_arguments)]
    async fn call_as(
        &self,
        authorization: &str,
        method: &str,
        template: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<String>,
        headers: &[(&str, &str)],
        status: u16,
    ) -> (Response<Body>, Value) {
        let response = self
            .api
            .handle(request(method, path, query, authorization, body, headers))
            .await;
        let json = self.contract.check(method, template, &response);
        assert_eq!(response.status(), status, "{method} {path}: {json}");
        (response, json)
    }
}

fn message(to: &[&str]) -> Value {
    json!({
        "from": {"email": "hello@example.com", "name": "Example"},
        "to": to,
        "subject": "Your receipt",
        "text": "Thanks for your order.",
        "tags": ["receipt"],
        "metadata": {"order_id": "1234"},
    })
}

#[tokio::test]
async fn health_and_key_answers_match_the_contract() {
    let w = World::new().await;
    let read_only = key(&w.t, "read").await;
    let (_, health) = w
        .call_as("", "GET", "/v1/health", "/v1/health", &[], None, &[], 200)
        .await;
    assert_eq!(health["status"], "healthy");
    w.call_as("", "HEAD", "/v1/health", "/v1/health", &[], None, &[], 200)
        .await;
    let (_, me) = w
        .call("GET", "/v1/keys/self", "/v1/keys/self", &[], None, &[], 200)
        .await;
    assert_eq!(me["environment"], "live");
    w.call_as(
        &read_only,
        "GET",
        "/v1/keys/self",
        "/v1/keys/self",
        &[],
        None,
        &[],
        200,
    )
    .await;
    for (authorization, code) in [
        ("", "missing_api_key"),
        ("Basic abc", "malformed_api_key"),
        ("Bearer mg_test_not_a_stored_key", "invalid_api_key"),
    ] {
        let (_, body) = w
            .call_as(
                authorization,
                "GET",
                "/v1/keys/self",
                "/v1/keys/self",
                &[],
                None,
                &[],
                401,
            )
            .await;
        assert_eq!(body["error"]["code"], code);
    }
    let (_, body) = w
        .call_as(
            &read_only,
            "POST",
            "/v1/messages",
            "/v1/messages",
            &[],
            Some(message(&["jane@example.org"]).to_string()),
            &[],
            403,
        )
        .await;
    assert_eq!(body["error"]["code"], "insufficient_scope");
}

#[tokio::test]
async fn send_answers_match_the_contract() {
    let w = World::new().await;
    let send = |body: Value, headers: &'static [(&'static str, &'static str)], status| {
        let w = &w;
        async move {
            w.call(
                "POST",
                "/v1/messages",
                "/v1/messages",
                &[],
                Some(body),
                headers,
                status,
            )
            .await
        }
    };
    // Sent through SES (the template's default provider) into the emulator.
    let (_, sent) = send(message(&["jane@example.org"]), &[], 202).await;
    assert_eq!(sent["status"], "sent", "{sent}");

    // Idempotency: the first answer, its replay, a different body under the same key.
    let keyed: &[(&str, &str)] = &[("idempotency-key", "contract-1")];
    let (_, first) = send(message(&["joe@example.org"]), keyed, 202).await;
    let (replay, again) = send(message(&["joe@example.org"]), keyed, 202).await;
    assert_eq!(replay.headers()["idempotency-replayed"], "true");
    assert_eq!(first, again);
    let (_, mismatch) = send(message(&["ann@example.org"]), keyed, 422).await;
    assert_eq!(mismatch["error"]["code"], "idempotency_key_mismatch");
    let (_, bad_key) = send(
        message(&["joe@example.org"]),
        &[("idempotency-key", "a b")],
        400,
    )
    .await;
    assert_eq!(bad_key["error"]["code"], "invalid_idempotency_key");

    // Shape errors (400) and value errors (422), with every error listed.
    let (_, malformed) = send(json!("{\"from\":"), &[], 400).await;
    assert_eq!(malformed["error"]["code"], "malformed_json");
    let mut unknown = message(&["jane@example.org"]);
    unknown["bc"] = json!(["x@example.org"]);
    unknown["subject"] = json!("");
    let (_, shape) = send(unknown, &[], 400).await;
    assert_eq!(shape["errors"].as_array().unwrap().len(), 2, "{shape}");
    let mut invalid = message(&["not an address", "jane@example.org"]);
    invalid["headers"] = json!({"Subject": "x"});
    invalid["send_at"] = json!("2001-01-01T00:00:00Z");
    let (_, values) = send(invalid, &[], 422).await;
    assert_eq!(values["errors"].as_array().unwrap().len(), 3, "{values}");

    // Scheduled, cancelled, and no longer cancellable.
    let mut scheduled = message(&["jane@example.org"]);
    let at = OffsetDateTime::now_utc() + time::Duration::hours(1);
    scheduled["send_at"] = json!(at.format(&Rfc3339).unwrap());
    let (_, held) = send(scheduled, &[], 202).await;
    assert_eq!(held["status"], "scheduled");
    let id = held["id"].as_str().unwrap();
    let path = format!("/v1/messages/{id}");
    let one = "/v1/messages/{id}";
    let (_, cancelled) = w.call("DELETE", one, &path, &[], None, &[], 200).await;
    assert_eq!(cancelled["state"], "cancelled");
    let (_, conflict) = w.call("DELETE", one, &path, &[], None, &[], 409).await;
    assert_eq!(conflict["error"]["state"], "cancelled");

    // The sent message with its attempt; unknown and malformed ids.
    let path = format!("/v1/messages/{}", sent["id"].as_str().unwrap());
    let (_, shown) = w.call("GET", one, &path, &[], None, &[], 200).await;
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 1, "{shown}");
    let unknown_id = concrete(one);
    w.call("GET", one, &unknown_id, &[], None, &[], 404).await;
    w.call("DELETE", one, &unknown_id, &[], None, &[], 404)
        .await;
    w.call("GET", one, "/v1/messages/msg_x", &[], None, &[], 404)
        .await;

    // Suppressed recipients: dropped, or the whole message refused.
    let entry = Some(json!({"reason": "manual"}));
    let blocked = "/v1/suppressions/blocked%40example.org";
    w.call(
        "PUT",
        "/v1/suppressions/{address}",
        blocked,
        &[],
        entry,
        &[],
        200,
    )
    .await;
    let (_, partly) = send(
        message(&["jane@example.org", "blocked@example.org"]),
        &[],
        202,
    )
    .await;
    assert_eq!(partly["suppressed"][0]["address"], "blocked@example.org");
    let (_, refused) = send(message(&["blocked@example.org"]), &[], 422).await;
    assert_eq!(refused["error"]["code"], "all_recipients_suppressed");

    // Too large, before anything is parsed.
    let huge = "x".repeat(send_api::send::MAX_BODY_BYTES + 1);
    let (_, too_large) = send(Value::String(huge), &[], 413).await;
    assert_eq!(too_large["error"]["code"], "payload_too_large");
}

#[tokio::test]
async fn batch_answers_match_the_contract() {
    let w = World::new().await;
    let batch = "/v1/messages/batch";
    let mut bulk = message(&["joe@example.org"]);
    bulk["category"] = json!("bulk");
    let mixed = json!({"messages": [message(&["jane@example.org"]), {"from": "x"}, bulk]});
    let keyed: &[(&str, &str)] = &[("idempotency-key", "batch-1")];
    let (_, accepted) = w
        .call("POST", batch, batch, &[], Some(mixed.clone()), keyed, 202)
        .await;
    let results = accepted["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "queued", "{accepted}");
    assert_eq!(
        results[1]["error"]["field"], "messages[1].from",
        "{accepted}"
    );
    let (replay, _) = w
        .call("POST", batch, batch, &[], Some(mixed), keyed, 202)
        .await;
    assert_eq!(replay.headers()["idempotency-replayed"], "true");

    let none = json!({"messages": [{"from": "x"}]});
    let (_, rejected) = w
        .call("POST", batch, batch, &[], Some(none), &[], 422)
        .await;
    assert!(rejected["results"].is_array(), "{rejected}");
    let empty = json!({"messages": []});
    let (_, whole) = w
        .call("POST", batch, batch, &[], Some(empty), &[], 422)
        .await;
    assert_eq!(whole["error"]["code"], "required");
    let (_, shape) = w
        .call(
            "POST",
            batch,
            batch,
            &[],
            Some(json!({"messages": 1})),
            &[],
            400,
        )
        .await;
    assert_eq!(shape["error"]["code"], "invalid_type");
}

#[tokio::test]
async fn suppression_answers_match_the_contract() {
    let w = World::new().await;
    let one = "/v1/suppressions/{address}";
    let list = "/v1/suppressions";
    let jane = "/v1/suppressions/Jane%40Example.org";
    let expires = (OffsetDateTime::now_utc() + time::Duration::days(1))
        .format(&Rfc3339)
        .unwrap();
    let entry = json!({"reason": "manual", "expires_at": expires, "note": "asked"});
    let (_, stored) = w.call("PUT", one, jane, &[], Some(entry), &[], 200).await;
    assert_eq!(stored["address"], "jane@example.org");
    let joe = Some(json!({"reason": "complaint"}));
    w.call(
        "PUT",
        one,
        "/v1/suppressions/joe@example.org",
        &[],
        joe,
        &[],
        200,
    )
    .await;
    w.call("GET", one, jane, &[], None, &[], 200).await;

    let (_, page) = w
        .call("GET", list, list, &[("limit", "1")], None, &[], 200)
        .await;
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    w.call(
        "GET",
        list,
        list,
        &[("limit", "1"), ("cursor", &cursor)],
        None,
        &[],
        200,
    )
    .await;
    let (_, by_reason) = w
        .call(
            "GET",
            list,
            list,
            &[("reason", "complaint")],
            None,
            &[],
            200,
        )
        .await;
    assert_eq!(by_reason["data"].as_array().unwrap().len(), 1);
    // Empty parameters are absent ones, as the contract says.
    w.call(
        "GET",
        list,
        list,
        &[("reason", ""), ("limit", "")],
        None,
        &[],
        200,
    )
    .await;
    for (query, code) in [
        (("limit", "0"), "invalid_limit"),
        (("reason", "bounced"), "invalid_reason"),
        (("cursor", "not-a-cursor"), "invalid_cursor"),
    ] {
        let (_, error) = w.call("GET", list, list, &[query], None, &[], 422).await;
        assert_eq!(error["error"]["code"], code);
    }

    let (_, bad) = w
        .call(
            "GET",
            one,
            "/v1/suppressions/not-an-address",
            &[],
            None,
            &[],
            422,
        )
        .await;
    assert_eq!(bad["error"]["field"], "address");
    let not_json = Some(json!("[1]"));
    w.call("PUT", one, jane, &[], not_json, &[], 400).await;
    let unknown = Some(json!({"reason": "manual", "expiry": "x"}));
    w.call("PUT", one, jane, &[], unknown, &[], 422).await;
    w.call("DELETE", one, jane, &[], None, &[], 204).await;
    w.call("DELETE", one, jane, &[], None, &[], 404).await;
    w.call("GET", one, jane, &[], None, &[], 404).await;
}

#[tokio::test]
async fn stats_answers_match_the_contract() {
    let w = World::new().await;
    let path = "/v1/stats";
    w.call(
        "POST",
        "/v1/messages",
        "/v1/messages",
        &[],
        Some(message(&["jane@example.org"])),
        &[],
        202,
    )
    .await;
    let (_, body) = w.call("GET", path, path, &[], None, &[], 200).await;
    assert_eq!(body["series"][0]["totals"]["accepted"], 1, "{body}");
    for query in [
        vec![("granularity", "day"), ("group_by", "tag")],
        vec![("group_by", "provider")],
        vec![
            ("after", "2026-11-01T00:00:00Z"),
            ("before", "2026-11-02T00:00:00Z"),
        ],
    ] {
        w.call("GET", path, path, &query, None, &[], 200).await;
    }
    for query in [
        vec![("granularity", "week")],
        vec![
            ("after", "2026-11-02T00:00:00Z"),
            ("before", "2026-11-01T00:00:00Z"),
        ],
        vec![("cursor", "x")],
    ] {
        w.call("GET", path, path, &query, None, &[], 400).await;
    }
}
