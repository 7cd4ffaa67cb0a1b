#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! API keys end to end: keys stored by `DynamoDbApiKeys` and by `mailgate-admin`'s commands in
//! the emulator's api-keys table (built from the template), and requests authenticated by the
//! real `send-api` handler from the API Gateway fixtures.

use clap::Parser;
use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Request, Response};
use mailgate_admin::{Cli, EXIT_TABLE_NOT_FOUND, EXIT_UNKNOWN_KEY};
use mailgate_aws::{ApiKeyStoreError, Revocation, Seeded};
use mailgate_core::{
    ApiKeyId, ApiKeyLabel, ApiKeyRecord, ApiKeySecret, KeyEnvironment, Requirement, Scope, Scopes,
};
use mailgate_tests::api::{ApiRequest, api_keys, bearer_of, json_body, seed_key, send_api};
use mailgate_tests::{TestStack, fixture};
use serde_json::json;
use time::OffsetDateTime;

/// `GET /v1/keys/self` from the fixture, with `authorization` as the header (none when `None`).
fn keys_self(authorization: Option<&str>) -> Request {
    let request = ApiRequest::fixture("send-api/get-keys-self.json");
    match authorization {
        Some(value) => request.authorization(value),
        None => request,
    }
    .build()
}

/// Stores a new test key with `scopes`; it and its record.
async fn create_key(t: &TestStack, scopes: &str) -> (ApiKeySecret, ApiKeyRecord) {
    seed_key(t, KeyEnvironment::Test, scopes, "integration test").await
}

fn assert_refused(r: &Response<Body>, status: StatusCode, code: &str) {
    assert_eq!(r.status(), status);
    assert_eq!(json_body(r)["error"]["code"], code, "{:?}", json_body(r));
    assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
}

/// Runs one `mailgate-admin` command line through the library the binary calls.
async fn admin(t: &TestStack, args: &[&str]) -> Result<String, mailgate_admin::AdminError> {
    let table = t.table("ApiKeysTable");
    let cli = Cli::try_parse_from(
        std::iter::once("mailgate-admin")
            .chain(args.iter().copied())
            .chain(["--table", table.as_str()]),
    )
    .unwrap();
    let mut out = Vec::new();
    mailgate_admin::run(cli, &t.clients.dynamodb, &mut out).await?;
    Ok(String::from_utf8(out).unwrap())
}

fn field<'a>(output: &'a str, name: &str) -> &'a str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name}: line in {output}"))
        .trim()
}

#[tokio::test]
async fn a_stored_key_authenticates_keys_self_and_learns_its_identity() {
    let t = TestStack::new().await;
    let (secret, record) = create_key(&t, "send,read").await;

    let response = send_api(&t)
        .handle(keys_self(Some(&bearer_of(&secret))))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        json_body(&response),
        json!({
            "id": record.id.as_str(),
            "label": "integration test",
            "environment": "test",
            "scopes": ["send", "read"],
        })
    );
}

#[tokio::test]
async fn only_the_hash_of_a_key_is_stored() {
    let t = TestStack::new().await;
    let (secret, record) = create_key(&t, "read").await;
    let items = t
        .clients
        .dynamodb
        .scan()
        .table_name(t.table("ApiKeysTable"))
        .send()
        .await
        .unwrap()
        .items
        .unwrap();
    assert_eq!(items.len(), 1);
    let item = format!("{:?}", items[0]);
    assert!(!item.contains(secret.expose()));
    assert_eq!(
        items[0]["pk"].as_s().unwrap(),
        &format!("key#{}", secret.hash().to_hex())
    );
    assert_eq!(items[0]["key_id"].as_s().unwrap(), record.id.as_str());
    assert_eq!(
        api_keys(&t).create(&record).await.unwrap_err().to_string(),
        ApiKeyStoreError::AlreadyExists.to_string()
    );
}

#[tokio::test]
async fn a_request_without_a_key_is_401_missing_api_key_and_health_stays_open() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let response = api.handle(keys_self(None)).await;
    assert_refused(&response, StatusCode::UNAUTHORIZED, "missing_api_key");
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");

    let health = lambda_http::request::from_str(&fixture("send-api/get-health.json")).unwrap();
    assert_eq!(api.handle(health).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_header_that_is_not_a_bearer_key_is_401_malformed() {
    let t = TestStack::new().await;
    let response = send_api(&t)
        .handle(keys_self(Some("Basic dXNlcjpwYXNz")))
        .await;
    assert_refused(&response, StatusCode::UNAUTHORIZED, "malformed_api_key");
}

#[tokio::test]
async fn an_unknown_key_is_401_invalid_api_key() {
    let t = TestStack::new().await;
    create_key(&t, "send").await;
    // The fixture's development key is not stored in a fresh stack.
    let fixture_request =
        lambda_http::request::from_str(&fixture("send-api/get-keys-self.json")).unwrap();
    let response = send_api(&t).handle(fixture_request).await;
    assert_refused(&response, StatusCode::UNAUTHORIZED, "invalid_api_key");
}

#[tokio::test]
async fn a_revoked_key_is_401_from_the_next_request() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let (secret, record) = create_key(&t, "send").await;
    assert_eq!(
        api.handle(keys_self(Some(&bearer_of(&secret))))
            .await
            .status(),
        StatusCode::OK
    );

    let revoked = api_keys(&t)
        .revoke(&record.id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(matches!(revoked, Revocation::Revoked(ref r) if r.is_revoked()));

    let response = api.handle(keys_self(Some(&bearer_of(&secret)))).await;
    assert_refused(&response, StatusCode::UNAUTHORIZED, "invalid_api_key");
}

#[tokio::test]
async fn a_key_without_the_needed_scope_is_403_naming_it() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let (secret, record) = create_key(&t, "read").await;
    let request = keys_self(Some(&bearer_of(&secret)));

    let refused = api
        .authenticate(&request, Requirement::Scope(Scope::Send))
        .await
        .unwrap_err();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let body = json_body(&refused);
    assert_eq!(body["error"]["code"], "insufficient_scope");
    assert!(body["error"]["message"].as_str().unwrap().contains("send"));
    assert_eq!(
        refused.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer error="insufficient_scope", scope="send""#
    );

    let allowed = api
        .authenticate(&request, Requirement::Scope(Scope::Read))
        .await
        .unwrap();
    assert_eq!(allowed.id, record.id);
}

#[tokio::test]
async fn admin_create_list_and_revoke_drive_authentication() {
    let t = TestStack::new().await;
    let api = send_api(&t);

    let created = admin(
        &t,
        &[
            "keys",
            "create",
            "--label",
            "billing",
            "--scopes",
            "send,read",
        ],
    )
    .await
    .unwrap();
    let id = ApiKeyId::parse(field(&created, "id")).unwrap();
    let key = field(&created, "key").to_owned();
    assert!(key.starts_with("mg_live_"), "{created}");
    assert!(created.contains("shown only this once"));

    let response = api.handle(keys_self(Some(&format!("Bearer {key}")))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_body(&response)["id"], id.as_str());
    assert_eq!(json_body(&response)["environment"], "live");

    let listed = admin(&t, &["keys", "list"]).await.unwrap();
    let header = listed.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.ends_with("REVOKED"),
        "{listed}"
    );
    let row = listed.lines().find(|l| l.contains(id.as_str())).unwrap();
    assert!(row.contains("billing") && row.contains("live") && row.contains("send,read"));
    assert!(row.trim_end().ends_with('-'), "not revoked yet: {row}");
    let hash = ApiKeySecret::parse(&key).unwrap().hash().to_hex();
    assert!(!listed.contains(&key) && !listed.contains(&hash));

    let revoked = admin(&t, &["keys", "revoke", id.as_str()]).await.unwrap();
    assert!(revoked.starts_with(&format!("revoked {id}")), "{revoked}");
    let response = api.handle(keys_self(Some(&format!("Bearer {key}")))).await;
    assert_refused(&response, StatusCode::UNAUTHORIZED, "invalid_api_key");

    let again = admin(&t, &["keys", "revoke", id.as_str()]).await.unwrap();
    assert!(again.contains("already revoked"), "{again}");
    let listed = admin(&t, &["keys", "list"]).await.unwrap();
    let row = listed.lines().find(|l| l.contains(id.as_str())).unwrap();
    assert!(!row.trim_end().ends_with('-'), "revoked: {row}");
}

#[tokio::test]
async fn admin_reports_an_unknown_id_and_a_missing_table_with_their_exit_codes() {
    let t = TestStack::new().await;
    let unknown = ApiKeyId::generate();
    let err = admin(&t, &["keys", "revoke", unknown.as_str()])
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_UNKNOWN_KEY);
    assert!(err.to_string().contains(unknown.as_str()));

    let cli = Cli::try_parse_from([
        "mailgate-admin",
        "keys",
        "list",
        "--table",
        "mailgate-nowhere-api-keys",
    ])
    .unwrap();
    let err = mailgate_admin::run(cli, &t.clients.dynamodb, &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), EXIT_TABLE_NOT_FOUND);
    assert!(err.to_string().contains("mailgate-nowhere-api-keys"));

    let empty = admin(&t, &["keys", "list"]).await.unwrap();
    assert!(empty.starts_with("no API keys in "), "{empty}");
}

#[tokio::test]
async fn admin_seed_is_idempotent_and_restores_the_requested_key() {
    let t = TestStack::new().await;
    let api = send_api(&t);
    let seed = [
        "keys",
        "seed",
        "--key",
        "mg_dev_local_key",
        "--label",
        "local development",
    ];

    let first = admin(&t, &[&seed[..], &["--scopes", "all"]].concat())
        .await
        .unwrap();
    assert!(first.starts_with("created key_"), "{first}");
    assert!(!first.contains("mg_dev_local_key"));
    let again = admin(&t, &[&seed[..], &["--scopes", "all"]].concat())
        .await
        .unwrap();
    assert!(again.starts_with("unchanged key_"), "{again}");

    // The committed fixture carries the development key.
    let fixture_request =
        lambda_http::request::from_str(&fixture("send-api/get-keys-self.json")).unwrap();
    let response = api.handle(fixture_request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(&response);
    assert_eq!(
        body["scopes"],
        json!([
            "send",
            "read",
            "suppressions:write",
            "templates:write",
            "domains:write",
            "inbound:read"
        ])
    );
    assert_eq!(body["label"], "local development");
    let id = ApiKeyId::parse(body["id"].as_str().unwrap()).unwrap();

    // A revoked or narrowed development key is put back as requested, keeping its id.
    api_keys(&t)
        .revoke(&id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let narrowed = admin(&t, &[&seed[..], &["--scopes", "read"]].concat())
        .await
        .unwrap();
    assert!(narrowed.starts_with(&format!("updated {id}")), "{narrowed}");
    let dev = ApiKeySecret::parse("mg_dev_local_key").unwrap();
    match api_keys(&t)
        .seed(
            &dev,
            ApiKeyLabel::parse("local development").unwrap(),
            KeyEnvironment::Live,
            Scopes::parse_list("read").unwrap(),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap()
    {
        Seeded::Unchanged(r) => {
            assert_eq!(r.id, id);
            assert!(!r.is_revoked());
        }
        other => panic!("expected unchanged, got {other:?}"),
    }
    let request = keys_self(Some("Bearer mg_dev_local_key"));
    assert_eq!(
        api.authenticate(&request, Requirement::Scope(Scope::Send))
            .await
            .unwrap_err()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(api_keys(&t).list().await.unwrap().len(), 1);
}
