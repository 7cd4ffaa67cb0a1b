//! Test-side providers: keys that sign deliveries the way each provider does, function URL
//! requests built from the `events/` fixtures, and readers for what ingestion stored.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use lambda_http::Request;
use mailgate_core::{Clock, ProviderId};
use mailgate_lambda::webhook::{WebhookConfig, WebhookFunction};
use mailgate_providers::ses::sns::SnsHttp;
use mailgate_providers::ses::sns::testing::{SnsTestSigner, StaticSnsHttp};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::Value;
use sha2::Sha256;

use crate::{TestStack, fixture};

/// The SNS topic the test configuration allows.
pub const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:mailgate-test-ses-events";
/// The Mailgun signing key of the test configuration.
pub const MAILGUN_KEY: &str = "test-mailgun-signing-key";
/// Basic credentials of the test configuration (Postmark and SMTP2GO).
pub const BASIC_PAIR: &str = "hooks:test-password";

/// A SendGrid signing key, derived from `seed` so every run signs alike.
pub fn sendgrid_key(seed: u8) -> SigningKey {
    let mut bytes = [seed; 32];
    bytes[0] = 1; // keeps the scalar well inside the curve order
    SigningKey::from_slice(&bytes).expect("a valid P-256 scalar")
}

/// The base64 DER public key SendGrid shows for `key`.
pub fn sendgrid_public_key(key: &SigningKey) -> String {
    let der = key
        .verifying_key()
        .to_public_key_der()
        .expect("P-256 keys encode");
    STANDARD.encode(der.as_bytes())
}

/// SendGrid's two headers for `body` signed at `timestamp` by `key`.
pub fn sendgrid_headers(key: &SigningKey, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    let mut message = timestamp.to_string().into_bytes();
    message.extend_from_slice(body);
    let signature: Signature = key.sign(&message);
    vec![
        (
            "x-twilio-email-event-webhook-signature".to_owned(),
            STANDARD.encode(signature.to_der().as_bytes()),
        ),
        (
            "x-twilio-email-event-webhook-timestamp".to_owned(),
            timestamp.to_string(),
        ),
    ]
}

/// A SendGrid batch of `n` events with distinct `sg_event_id`s.
pub fn sendgrid_batch(n: usize, tag: &str) -> Vec<u8> {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "email": format!("rcpt{i}@example.com"),
                "timestamp": 1_700_000_000 + i as i64,
                "smtp-id": format!("<{tag}.{i}@example.org>"),
                "event": if i % 3 == 0 { "delivered" } else { "open" },
                "category": ["welcome"],
                "sg_event_id": format!("{tag}-evt-{i:05}"),
                "sg_message_id": format!("{tag}msg{i}.filterdrecv-5645d9c87f-x8xdd-1-5F1A2C4C-1.0"),
                "mailgate_message_id": format!("msg_{i:026}"),
                "ip": "203.0.113.42",
                "useragent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                "sg_machine_open": false,
            })
        })
        .collect();
    serde_json::to_vec(&events).expect("events serialise")
}

/// A Mailgun webhook body for event `event_id`, signed with `key` at `timestamp` with `token`.
pub fn mailgun_body(key: &str, timestamp: i64, token: &str, event_id: &str) -> Vec<u8> {
    let [_, _, (_, signature)] = mailgun_signature(key, timestamp, token);
    serde_json::to_vec(&serde_json::json!({
        "signature": {"timestamp": timestamp.to_string(), "token": token, "signature": signature},
        "event-data": {
            "id": event_id,
            "event": "delivered",
            "timestamp": timestamp as f64 + 0.25,
            "recipient": "alice@example.com",
            "message": {"headers": {"message-id": "20240101.abc@mg.example.org"}},
            "user-variables": {"mailgate_message_id": "msg_00000000000000000000000000"}
        }
    }))
    .expect("serialises")
}

/// `Authorization: Basic …` for `pair`.
pub fn basic_header(pair: &str) -> (String, String) {
    (
        "authorization".to_owned(),
        format!("Basic {}", STANDARD.encode(pair)),
    )
}

/// The SNS signer the test configuration trusts, and a fetcher serving its certificate.
pub fn sns_signer() -> (SnsTestSigner, Arc<StaticSnsHttp>) {
    let signer = SnsTestSigner::new();
    let http = Arc::new(StaticSnsHttp::serving(&signer));
    (signer, http)
}

/// The function's configuration: the template's environment plus test secrets, with `extra`
/// settings overriding.
pub fn webhook_config(
    t: &TestStack,
    provider: ProviderId,
    sns_http: Option<Arc<StaticSnsHttp>>,
    extra: &[(&str, &str)],
) -> WebhookConfig {
    let env = t.function_env(&format!("webhook-{provider}"));
    let sendgrid = sendgrid_public_key(&sendgrid_key(7));
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let lookup = move |k: &str| -> Option<String> {
        if let Some((_, v)) = extra.iter().find(|(name, _)| name == k) {
            return Some(v.clone());
        }
        match k {
            "SENDGRID_WEBHOOK_PUBLIC_KEYS" => Some(sendgrid.clone()),
            "MAILGUN_WEBHOOK_SIGNING_KEYS" => Some(MAILGUN_KEY.to_owned()),
            "POSTMARK_WEBHOOK_CREDENTIALS"
            | "SMTP2GO_WEBHOOK_CREDENTIALS"
            | "SENDGRID_INBOUND_CREDENTIALS" => Some(BASIC_PAIR.to_owned()),
            "SNS_ALLOWED_TOPIC_ARNS" => Some(TOPIC.to_owned()),
            _ => env(k),
        }
    };
    let http: Arc<dyn SnsHttp> = match sns_http {
        Some(h) => h,
        None => Arc::new(StaticSnsHttp::new()),
    };
    WebhookConfig::with_sns_http(provider, lookup, move || Ok(http)).expect("valid test config")
}

/// `provider`'s webhook function on `clock` with the template's environment and the test-only
/// secrets of the committed `local.env` (the ones `make dev` uses and the fixtures carry).
pub fn local_webhook_function(
    t: &TestStack,
    provider: ProviderId,
    clock: Arc<dyn Clock>,
) -> WebhookFunction {
    let local: Vec<(String, String)> =
        std::fs::read_to_string(crate::workspace_root().join("local.env"))
            .expect("local.env is committed")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let env = t.function_env(&format!("webhook-{provider}"));
    let config = WebhookConfig::from_lookup(provider, move |k| {
        local
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .or_else(|| env(k))
    })
    .expect("the local configuration is valid");
    WebhookFunction::with_clock(config, t.clients.clone(), clock)
}

/// A webhook function on `clock` with the test configuration.
pub fn webhook_function(
    t: &TestStack,
    provider: ProviderId,
    sns_http: Option<Arc<StaticSnsHttp>>,
    clock: Arc<dyn Clock>,
) -> WebhookFunction {
    WebhookFunction::with_clock(
        webhook_config(t, provider, sns_http, &[]),
        t.clients.clone(),
        clock,
    )
}

/// A function URL POST to `provider`'s webhook (from its fixture) with `body` and `headers`.
pub fn post(provider: ProviderId, body: &[u8], headers: &[(String, String)]) -> Request {
    let mut event: Value = serde_json::from_str(&fixture(&format!(
        "webhook-{provider}/function-url-post.json"
    )))
    .expect("fixture parses");
    let h = event["headers"].as_object_mut().expect("headers");
    h.retain(|k, _| !k.starts_with("x-twilio") && k != "authorization" && k != "content-length");
    for (k, v) in headers {
        h.insert(k.clone(), Value::String(v.clone()));
    }
    h.entry("content-type")
        .or_insert(Value::String("application/json".to_owned()));
    event["isBase64Encoded"] = Value::Bool(true);
    event["body"] = Value::String(STANDARD.encode(body));
    lambda_http::request::from_str(&event.to_string()).expect("a function URL request")
}

/// A function URL POST of an inbound delivery to `provider`'s webhook under `/inbound`: `body`
/// of `content_type`, with `headers`.
pub fn post_inbound(
    provider: ProviderId,
    body: &[u8],
    content_type: &str,
    headers: &[(String, String)],
) -> Request {
    let mut all = vec![("content-type".to_owned(), content_type.to_owned())];
    all.extend_from_slice(headers);
    let request = post(provider, body, &all);
    let (mut parts, body) = request.into_parts();
    parts.uri = format!("https://{provider}.lambda-url.example/inbound")
        .parse()
        .expect("a URI");
    Request::from_parts(parts, body)
}

/// A `multipart/form-data` body of text `fields` and `files` (field, file name, content type,
/// bytes), and its content type (boundary included).
pub fn multipart_form(
    fields: &[(&str, &str)],
    files: &[(&str, &str, &str, &[u8])],
) -> (Vec<u8>, String) {
    let boundary = format!("mailgate-test-{}", uuid::Uuid::new_v4().simple());
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    for (name, filename, content_type, content) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (body, format!("multipart/form-data; boundary={boundary}"))
}

/// The Mailgun signature fields (`timestamp`, `token`, `signature`) for `key` at `timestamp`.
pub fn mailgun_signature(key: &str, timestamp: i64, token: &str) -> [(String, String); 3] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}{token}").as_bytes());
    [
        ("timestamp".to_owned(), timestamp.to_string()),
        ("token".to_owned(), token.to_owned()),
        (
            "signature".to_owned(),
            hex::encode(mac.finalize().into_bytes()),
        ),
    ]
}

/// Every receipt item of the stack (body parts excluded).
pub async fn receipts(t: &TestStack) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    let out = t
        .clients
        .dynamodb
        .scan()
        .table_name(t.table("ReceiptsTable"))
        .consistent_read(true)
        .send()
        .await
        .expect("scan receipts");
    out.items()
        .iter()
        .filter(|i| {
            i.get("pk")
                .and_then(|v| v.as_s().ok())
                .is_some_and(|pk| !pk.contains("#part#"))
        })
        .cloned()
        .collect()
}

/// A string attribute of an item.
pub fn attr<'a>(
    item: &'a std::collections::HashMap<String, AttributeValue>,
    name: &str,
) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or("")
}

/// Receives (and deletes) every message on the events queue.
pub async fn drain_events(t: &TestStack) -> Vec<Value> {
    let url = t.queue_url("EventsQueue");
    let mut got = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let out = t
            .clients
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .visibility_timeout(120)
            .send()
            .await
            .expect("receive");
        let messages = out.messages();
        if messages.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        let mut entries = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            got.push(serde_json::from_str(m.body().unwrap_or("null")).expect("JSON message"));
            entries.push(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .expect("entry"),
            );
        }
        t.clients
            .sqs
            .delete_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("delete");
    }
    got
}
