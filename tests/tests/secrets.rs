//! Configuration references resolved over the wire: SSM parameters and Secrets Manager secrets in
//! the emulator, plus a small fake SSM endpoint for what moto cannot show (access denied, and how
//! many reads were made).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use mailgate_aws::secrets::{FailureReason, SsmClient, resolve_references};
use mailgate_tests::{endpoint, sdk_config};

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}/t{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

async fn emulator_ssm() -> SsmClient {
    SsmClient::new(&sdk_config(&endpoint()).await)
}

async fn put_secure_string(ssm: &SsmClient, name: &str, value: &str) {
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type("SecureString".into())
        .send()
        .await
        .unwrap();
}

/// Creates a Secrets Manager secret in the emulator. The test crate has no Secrets Manager SDK (the
/// code under test reads secrets through SSM), so this speaks the JSON protocol directly; moto
/// routes by the credential scope and does not check the signature.
async fn create_secret(name: &str, value: &str) {
    let response = reqwest::Client::new()
        .post(endpoint())
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("X-Amz-Target", "secretsmanager.CreateSecret")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/secretsmanager/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .json(&serde_json::json!({ "Name": name, "SecretString": value }))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "CreateSecret: {}",
        response.text().await.unwrap()
    );
}

#[tokio::test]
async fn a_secure_string_parameter_resolves_to_its_decrypted_value() {
    let ssm = emulator_ssm().await;
    let name = unique("/mailgate/test/sendgrid-webhook-public-keys");
    put_secure_string(&ssm, &name, "key-one,key-two").await;

    let resolved = resolve_references(
        &ssm,
        &["SENDGRID_WEBHOOK_PUBLIC_KEYS"],
        env(&[("SENDGRID_WEBHOOK_PUBLIC_KEYS", &format!("ssm:{name}"))]),
    )
    .await
    .unwrap();

    assert_eq!(
        resolved.get("SENDGRID_WEBHOOK_PUBLIC_KEYS"),
        Some("key-one,key-two")
    );
}

#[tokio::test]
async fn a_string_list_parameter_resolves_to_its_comma_separated_items() {
    let ssm = emulator_ssm().await;
    let name = unique("/mailgate/test/sns-allowed-topic-arns");
    ssm.put_parameter()
        .name(&name)
        .value("arn:aws:sns:us-east-1:123456789012:a,arn:aws:sns:us-east-1:123456789012:b")
        .r#type("StringList".into())
        .send()
        .await
        .unwrap();

    let resolved = resolve_references(
        &ssm,
        &["SNS_ALLOWED_TOPIC_ARNS"],
        env(&[("SNS_ALLOWED_TOPIC_ARNS", &format!("ssm:{name}"))]),
    )
    .await
    .unwrap();

    assert_eq!(
        resolved.get("SNS_ALLOWED_TOPIC_ARNS"),
        Some("arn:aws:sns:us-east-1:123456789012:a,arn:aws:sns:us-east-1:123456789012:b")
    );
}

#[tokio::test]
async fn a_secrets_manager_secret_resolves_through_the_ssm_reference_path() {
    let secret = unique("mailgate/test/mailgun-webhook-signing-keys");
    create_secret(&secret, "mailgun-key-1,mailgun-key-2").await;

    let resolved = resolve_references(
        &emulator_ssm().await,
        &["MAILGUN_WEBHOOK_SIGNING_KEYS"],
        env(&[(
            "MAILGUN_WEBHOOK_SIGNING_KEYS",
            &format!("secretsmanager:{secret}"),
        )]),
    )
    .await
    .unwrap();

    assert_eq!(
        resolved.get("MAILGUN_WEBHOOK_SIGNING_KEYS"),
        Some("mailgun-key-1,mailgun-key-2")
    );
}

#[tokio::test]
async fn literals_pass_through_unchanged_beside_references() {
    let ssm = emulator_ssm().await;
    let name = unique("/mailgate/test/postmark-webhook-credentials");
    put_secure_string(&ssm, &name, "postmark:from-ssm").await;

    let resolved = resolve_references(
        &ssm,
        &[
            "POSTMARK_WEBHOOK_CREDENTIALS",
            "SMTP2GO_WEBHOOK_CREDENTIALS",
            "SNS_ALLOWED_TOPIC_ARNS",
        ],
        env(&[
            ("POSTMARK_WEBHOOK_CREDENTIALS", &format!("ssm:{name}")),
            ("SMTP2GO_WEBHOOK_CREDENTIALS", " smtp2go:literal "),
        ]),
    )
    .await
    .unwrap();

    assert_eq!(
        resolved.get("POSTMARK_WEBHOOK_CREDENTIALS"),
        Some("postmark:from-ssm")
    );
    assert_eq!(
        resolved.get("SMTP2GO_WEBHOOK_CREDENTIALS"),
        Some(" smtp2go:literal ")
    );
    assert_eq!(
        resolved.get("SNS_ALLOWED_TOPIC_ARNS"),
        None,
        "unset stays unset"
    );
    assert_eq!(resolved.len(), 2);
}

#[tokio::test]
async fn a_missing_parameter_or_secret_is_an_error_naming_each_variable() {
    let ssm = emulator_ssm().await;
    let missing_parameter = unique("/mailgate/test/missing");
    let missing_secret = unique("mailgate/test/missing");
    let present = unique("/mailgate/test/present");
    put_secure_string(&ssm, &present, "do-not-print-me").await;

    let err = resolve_references(
        &ssm,
        &[
            "SENDGRID_WEBHOOK_PUBLIC_KEYS",
            "MAILGUN_WEBHOOK_SIGNING_KEYS",
            "POSTMARK_WEBHOOK_CREDENTIALS",
        ],
        env(&[
            (
                "SENDGRID_WEBHOOK_PUBLIC_KEYS",
                &format!("ssm:{missing_parameter}"),
            ),
            ("MAILGUN_WEBHOOK_SIGNING_KEYS", &format!("ssm:{present}")),
            (
                "POSTMARK_WEBHOOK_CREDENTIALS",
                &format!("secretsmanager:{missing_secret}"),
            ),
        ]),
    )
    .await
    .unwrap_err();

    let failures = err.failures();
    assert_eq!(failures.len(), 2, "{err}");
    assert_eq!(failures[0].variable, "SENDGRID_WEBHOOK_PUBLIC_KEYS");
    assert_eq!(failures[0].reference, format!("ssm:{missing_parameter}"));
    assert_eq!(
        failures[0].reason,
        FailureReason::NotFound { what: "parameter" }
    );
    assert_eq!(failures[1].variable, "POSTMARK_WEBHOOK_CREDENTIALS");
    assert_eq!(
        failures[1].reason,
        FailureReason::NotFound { what: "secret" }
    );
    assert!(!err.is_transient());

    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "SENDGRID_WEBHOOK_PUBLIC_KEYS (ssm:{missing_parameter}): parameter not found"
        )),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "POSTMARK_WEBHOOK_CREDENTIALS (secretsmanager:{missing_secret}): secret not found"
        )),
        "{message}"
    );
    assert!(!message.contains("do-not-print-me"), "{message}");
    assert!(!format!("{err:?}").contains("do-not-print-me"));
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transient_error_naming_each_variable() {
    let ssm = SsmClient::new(&sdk_config("http://127.0.0.1:1").await);

    let err = resolve_references(
        &ssm,
        &["SENDGRID_WEBHOOK_PUBLIC_KEYS", "SNS_ALLOWED_TOPIC_ARNS"],
        env(&[
            ("SENDGRID_WEBHOOK_PUBLIC_KEYS", "ssm:/mailgate/test/keys"),
            (
                "SNS_ALLOWED_TOPIC_ARNS",
                "secretsmanager:mailgate/test/topics",
            ),
        ]),
    )
    .await
    .unwrap_err();

    let variables: Vec<_> = err.failures().iter().map(|f| f.variable.as_str()).collect();
    assert_eq!(
        variables,
        ["SENDGRID_WEBHOOK_PUBLIC_KEYS", "SNS_ALLOWED_TOPIC_ARNS"]
    );
    assert!(
        err.failures()
            .iter()
            .all(|f| matches!(f.reason, FailureReason::Unreachable { .. })),
        "{err}"
    );
    assert!(err.is_transient());
    let message = err.to_string();
    assert!(
        message.contains("SSM endpoint unreachable: dispatch failure"),
        "{message}"
    );
    assert!(
        !message.contains("ConnectorError {"),
        "no Debug dump: {message}"
    );
}

/// What the fake SSM endpoint saw and how it answers.
#[derive(Default)]
struct FakeSsm {
    requests: Mutex<Vec<serde_json::Value>>,
    deny: bool,
}

async fn fake_get_parameter(State(fake): State<Arc<FakeSsm>>, body: String) -> Response {
    let request: serde_json::Value = serde_json::from_str(&body).unwrap();
    fake.requests.lock().unwrap().push(request.clone());
    let (status, body) = if fake.deny {
        (
            StatusCode::BAD_REQUEST,
            serde_json::json!({
                "__type": "AccessDeniedException",
                "message": "User: arn:aws:sts::123456789012:assumed-role/webhook/fn is not authorized to perform: ssm:GetParameter"
            }),
        )
    } else {
        let name = request["Name"].as_str().unwrap();
        (
            StatusCode::OK,
            serde_json::json!({
                "Parameter": { "Name": name, "Type": "SecureString", "Value": format!("value of {name}") }
            }),
        )
    };
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}

async fn fake_ssm(deny: bool) -> (SsmClient, Arc<FakeSsm>) {
    let fake = Arc::new(FakeSsm {
        deny,
        ..FakeSsm::default()
    });
    let app = Router::new()
        .route("/", post(fake_get_parameter))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (SsmClient::new(&sdk_config(&url).await), fake)
}

#[tokio::test]
async fn each_distinct_reference_is_read_once_with_decryption() {
    let (ssm, fake) = fake_ssm(false).await;

    let resolved = resolve_references(
        &ssm,
        &[
            "POSTMARK_WEBHOOK_CREDENTIALS",
            "SMTP2GO_WEBHOOK_CREDENTIALS",
            "MAILGUN_WEBHOOK_SIGNING_KEYS",
        ],
        env(&[
            ("POSTMARK_WEBHOOK_CREDENTIALS", "ssm:/mailgate/shared/basic"),
            ("SMTP2GO_WEBHOOK_CREDENTIALS", "ssm:/mailgate/shared/basic"),
            (
                "MAILGUN_WEBHOOK_SIGNING_KEYS",
                "secretsmanager:mailgate/mailgun",
            ),
        ]),
    )
    .await
    .unwrap();

    assert_eq!(
        resolved.get("POSTMARK_WEBHOOK_CREDENTIALS"),
        Some("value of /mailgate/shared/basic")
    );
    assert_eq!(
        resolved.get("SMTP2GO_WEBHOOK_CREDENTIALS"),
        Some("value of /mailgate/shared/basic")
    );
    assert_eq!(
        resolved.get("MAILGUN_WEBHOOK_SIGNING_KEYS"),
        Some("value of /aws/reference/secretsmanager/mailgate/mailgun")
    );
    let requests = fake.requests.lock().unwrap();
    let mut names: Vec<_> = requests
        .iter()
        .map(|r| r["Name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "/aws/reference/secretsmanager/mailgate/mailgun",
            "/mailgate/shared/basic"
        ]
    );
    assert!(requests.iter().all(|r| r["WithDecryption"] == true));
}

#[tokio::test]
async fn access_denied_is_reported_as_such_with_the_missing_permission() {
    let (ssm, _fake) = fake_ssm(true).await;

    let err = resolve_references(
        &ssm,
        &["SENDGRID_WEBHOOK_PUBLIC_KEYS"],
        env(&[("SENDGRID_WEBHOOK_PUBLIC_KEYS", "ssm:/mailgate/prod/keys")]),
    )
    .await
    .unwrap_err();

    assert!(
        matches!(
            &err.failures()[0].reason,
            FailureReason::AccessDenied { code, .. } if code == "AccessDeniedException"
        ),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let message = err.to_string();
    assert!(
        message.contains("SENDGRID_WEBHOOK_PUBLIC_KEYS (ssm:/mailgate/prod/keys): access denied"),
        "{message}"
    );
    assert!(message.contains("ssm:GetParameter"), "{message}");
}
