#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Inbound email end to end through the real handlers against the emulator: a Postmark inbound
//! webhook (the committed function URL fixture, with the local Basic credentials) on
//! `webhook-postmark` under `/inbound` stores the raw MIME in S3 and the record in the inbound
//! table before its 200, queues a parse request on the events queue, and the event processor
//! (driven with an SQS trigger built from that queue message) parses it: summary, thread and
//! attachments in S3.

use lambda_http::Body;
use lambda_http::http::StatusCode;
use mailgate_core::inbound::{attachment_key, raw_key};
use mailgate_core::ports::{InboundDownloads, InboundObjects, InboundRecords};
use mailgate_core::{InboundId, InboundKind, InboundStatus, MessageId, ProviderId};
use mailgate_lambda::webhook::{WebhookConfig, WebhookFunction};
use mailgate_tests::api::bearer;
use mailgate_tests::inbound::{objects, process_queue, processor, records};
use mailgate_tests::webhooks::drain_events;
use mailgate_tests::{TestStack, fixture, workspace_root};
use serde_json::Value;

fn body_of(r: &lambda_http::Response<Body>) -> Value {
    match r.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("expected a text body, got {other:?}"),
    }
}

/// `webhook-postmark` with the template's environment and the credentials of `local.env` (the
/// ones the committed fixtures carry).
fn postmark(t: &TestStack) -> WebhookFunction {
    mailgate_tests::webhooks::local_webhook_function(
        t,
        ProviderId::Postmark,
        std::sync::Arc::new(mailgate_core::SystemClock),
    )
}

fn inbound_request(body: Option<&str>, authorization: Option<&str>) -> lambda_http::Request {
    let mut event: Value =
        serde_json::from_str(&fixture("webhook-postmark/inbound-reply.json")).unwrap();
    if let Some(body) = body {
        event["body"] = Value::String(body.to_owned());
    }
    if let Some(authorization) = authorization {
        event["headers"]["authorization"] = Value::String(authorization.to_owned());
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

#[tokio::test]
async fn a_postmark_inbound_reply_is_stored_before_the_ack_then_parsed_threaded_with_attachments() {
    let t = TestStack::new().await;
    let f = postmark(&t);
    let response = f.handle(inbound_request(None, None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = body_of(&response);
    assert_eq!(answer["status"], "received");
    let id = InboundId::parse(answer["inbound"].as_str().unwrap()).unwrap();

    // Before any parsing: the raw MIME is in the bucket and the record says `received`.
    let raw = objects(&t).get(&raw_key(&id)).await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&raw)
            .contains("In-Reply-To: <msg_0123456789abcdefghjkmnpqrs@example.com>")
    );
    let record = records(&t).get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InboundStatus::Received);
    assert_eq!(record.source_id, "22c74902-a0c1-4511-804f-341342852c90");
    assert_eq!(record.recipient, "support@inbound.example.com");
    assert_eq!(record.auth.spf.as_deref(), Some("Pass"));

    assert_eq!(process_queue(&t).await, std::slice::from_ref(&id));
    let record = records(&t).get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InboundStatus::Parsed);
    assert_eq!(
        record.thread,
        Some(MessageId::parse("msg_0123456789abcdefghjkmnpqrs").unwrap())
    );
    let summary = record.summary.unwrap();
    assert_eq!(summary.kind, InboundKind::Message);
    assert_eq!(summary.subject.as_deref(), Some("Re: Your order — shipped"));
    assert_eq!(
        summary.text.as_deref().map(str::trim),
        Some("Thanks, it arrived.")
    );
    assert_eq!(
        summary.html.as_deref().map(str::trim),
        Some("<p>Thanks, it arrived.</p>")
    );
    assert_eq!(summary.attachments.len(), 2);
    let pdf = objects(&t)
        .get(&attachment_key(&id, 0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pdf, b"%PDF-1.4\n");
    assert_eq!(summary.attachments[0].size, 9);
    assert!(summary.attachments[1].inline);
    let link = objects(&t)
        .download_link(&attachment_key(&id, 1), std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let png = reqwest::get(&link).await.unwrap().bytes().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));

    // Postmark retries the same message: recorded once, answered as a duplicate.
    let again = f.handle(inbound_request(None, None)).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(body_of(&again)["status"], "duplicate");
    assert_eq!(body_of(&again)["inbound"], id.as_str());
    // Its parse request is queued again and changes nothing.
    assert_eq!(process_queue(&t).await, std::slice::from_ref(&id));
    assert_eq!(
        records(&t).get(&id).await.unwrap().unwrap().status,
        InboundStatus::Parsed
    );
}

#[tokio::test]
async fn wrong_credentials_store_nothing_and_an_unreadable_authentic_body_is_kept_as_parse_failed()
{
    let t = TestStack::new().await;
    let f = postmark(&t);
    let refused = f
        .handle(inbound_request(
            None,
            Some("Basic d3Jvbmc6Y3JlZGVudGlhbHM="),
        ))
        .await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(drain_events(&t).await.is_empty());

    let kept = f
        .handle(inbound_request(
            Some("not a postmark inbound message"),
            None,
        ))
        .await;
    assert_eq!(kept.status(), StatusCode::OK);
    let id = InboundId::parse(body_of(&kept)["inbound"].as_str().unwrap()).unwrap();
    assert_eq!(process_queue(&t).await, std::slice::from_ref(&id));
    let record = records(&t).get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InboundStatus::ParseFailed);
    assert_eq!(record.parse_error.as_deref(), Some("not_a_message"));
    assert_eq!(
        objects(&t).get(&record.raw_key).await.unwrap().unwrap(),
        b"not a postmark inbound message"
    );
}

#[tokio::test]
async fn a_provider_without_an_inbound_source_answers_not_found_under_inbound() {
    let t = TestStack::new().await;
    let env = t.function_env("webhook-smtp2go");
    let config = WebhookConfig::from_lookup(ProviderId::Smtp2go, move |k| match k {
        "SMTP2GO_WEBHOOK_CREDENTIALS" => Some("user:pass".to_owned()),
        _ => env(k),
    })
    .unwrap();
    let f = WebhookFunction::new(config, t.clients.clone());
    let mut event: Value =
        serde_json::from_str(&fixture("webhook-smtp2go/function-url-post.json")).unwrap();
    event["rawPath"] = Value::String("/inbound".into());
    event["requestContext"]["http"]["path"] = Value::String("/inbound".into());
    let response = f
        .handle(lambda_http::request::from_str(&event.to_string()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(body_of(&response)["error"]["code"], "not_found");
}

#[tokio::test]
async fn an_ses_received_notification_records_the_stored_message_with_its_verdicts_and_parses_it() {
    use mailgate_providers::ses::sns::testing::SnsTestMessage;
    use mailgate_tests::webhooks::{TOPIC, sns_signer, webhook_function};

    let t = TestStack::new().await;
    let (signer, http) = sns_signer();
    let f = webhook_function(
        &t,
        ProviderId::Ses,
        Some(http),
        std::sync::Arc::new(mailgate_core::SystemClock),
    );
    // SES's S3 action wrote the message under ses/ in the stack's inbound bucket.
    let raw = std::fs::read(workspace_root().join("shared/core/tests/mime/alternative_reply.eml"))
        .unwrap();
    let key = "ses/o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1";
    objects(&t).put(key, "message/rfc822", &raw).await.unwrap();
    let mut notification: Value =
        serde_json::from_str(&fixture("webhook-ses/inbound-received-message.json")).unwrap();
    notification["receipt"]["action"]["bucketName"] = Value::String(t.bucket("InboundBucket"));
    let message = SnsTestMessage::notification(
        TOPIC,
        &notification.to_string(),
        time::OffsetDateTime::now_utc(),
    )
    .with_message_id("sns-inbound-1");
    let body = signer.sign(&message);

    let response = f
        .handle(mailgate_tests::webhooks::post(ProviderId::Ses, &body, &[]))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let answer = body_of(&response);
    assert_eq!(answer["status"], "received");
    let id = InboundId::parse(answer["inbound"].as_str().unwrap()).unwrap();
    let record = records(&t).get(&id).await.unwrap().unwrap();
    assert_eq!(record.provider, ProviderId::Ses);
    assert_eq!(record.raw_key, key);
    assert_eq!(record.source_id, "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1");
    assert_eq!(record.recipient, "support@inbound.example.com");
    assert_eq!(record.auth.spf.as_deref(), Some("PASS"));
    assert_eq!(record.auth.dkim.as_deref(), Some("PASS"));
    assert_eq!(record.auth.dmarc.as_deref(), Some("GRAY"));
    assert_eq!(record.auth.spam.as_deref(), Some("PASS"));
    assert_eq!(record.auth.virus.as_deref(), Some("PASS"));

    assert_eq!(process_queue(&t).await, std::slice::from_ref(&id));
    let record = records(&t).get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InboundStatus::Parsed);
    assert_eq!(record.raw_size, raw.len() as u64);
    assert_eq!(
        record.thread,
        Some(MessageId::parse("msg_0123456789abcdefghjkmnpqrs").unwrap())
    );
    let summary = record.summary.unwrap();
    assert_eq!(summary.subject.as_deref(), Some("Re: Your order — shipped"));
    assert!(summary.html.unwrap().contains("Café"));

    // SNS redelivers the notification: recorded once (SES's message id), answered as a
    // duplicate.
    let again = f
        .handle(mailgate_tests::webhooks::post(ProviderId::Ses, &body, &[]))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(body_of(&again)["status"], "duplicate");
    assert_eq!(body_of(&again)["inbound"], id.as_str());
}

/// A send-api request from the committed fixture with `method`, `path` and `body`.
fn api_request(
    authorization: &str,
    method: &str,
    path: &str,
    body: Option<String>,
) -> lambda_http::Request {
    let mut event: Value = serde_json::from_str(&fixture("send-api/post-message.json")).unwrap();
    event["requestContext"]["http"]["method"] = Value::String(method.into());
    event["rawPath"] = Value::String(path.into());
    event["requestContext"]["http"]["path"] = Value::String(path.into());
    event["body"] = body.map_or(Value::Null, Value::String);
    let headers = event["headers"].as_object_mut().unwrap();
    headers.remove("idempotency-key");
    headers.remove("content-length");
    headers.insert("authorization".into(), Value::String(authorization.into()));
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// The message of ours the received message `inbound_id` threads to.
async fn thread_of(t: &TestStack, inbound_id: &str) -> Option<String> {
    let record = records(t)
        .get(&InboundId::parse(inbound_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    record.thread.map(|id| id.as_str().to_owned())
}

/// The send API of `t` and a live key allowed to send and read.
async fn send_api_with_key(t: &TestStack) -> (send_api::SendApi, String) {
    let api = send_api::SendApi::new(
        send_api::SendApiConfig::from_lookup(t.function_env("send-api")).unwrap(),
        t.clients.clone(),
    )
    .unwrap();
    let auth = bearer(t, "send,read").await;
    (api, auth)
}

/// Sends an order notice from `hello@example.com` to `to` (through SES in the emulator); its id.
async fn send_order(api: &send_api::SendApi, auth: &str, to: &str) -> String {
    let sent = api
        .handle(api_request(
            auth,
            "POST",
            "/v1/messages",
            Some(
                serde_json::json!({
                    "from": "hello@example.com",
                    "to": [to],
                    "subject": "Your order",
                    "text": "Thanks for your order."
                })
                .to_string(),
            ),
        ))
        .await;
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    body_of(&sent)["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_dsn_received_for_a_message_we_sent_bounces_it_and_suppresses_the_address() {
    let t = TestStack::new().await;
    let (api, auth) = send_api_with_key(&t).await;
    let id = send_order(&api, &auth, "gone@example.net").await;

    // The receiving server's DSN comes back to an inbound address, here through Postmark with
    // "include raw email content" on.
    let dsn = std::fs::read_to_string(
        workspace_root().join("shared/core/tests/mime/dsn_user_unknown.eml"),
    )
    .unwrap()
    .replace("msg_0123456789abcdefghjkmnpqrs", &id)
    .replace("nobody@example.net", "gone@example.net");
    let mut inbound: Value =
        serde_json::from_str(fixture("webhook-postmark/inbound-reply.json").as_str()).unwrap();
    let mut payload: Value = serde_json::from_str(inbound["body"].as_str().unwrap()).unwrap();
    payload["MessageID"] = Value::String("pm-dsn-1".into());
    payload["RawEmail"] = Value::String(dsn);
    inbound["body"] = Value::String(payload.to_string());
    let f = postmark(&t);
    let response = f
        .handle(lambda_http::request::from_str(&inbound.to_string()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let inbound_id = InboundId::parse(body_of(&response)["inbound"].as_str().unwrap()).unwrap();

    // The send's own events and the parse request go through the processor.
    process_queue(&t).await;
    let record = records(&t).get(&inbound_id).await.unwrap().unwrap();
    assert_eq!(record.summary.unwrap().kind, InboundKind::Dsn);
    assert_eq!(
        record.thread.as_ref().map(MessageId::as_str),
        Some(id.as_str())
    );

    let message = api
        .handle(api_request(
            &auth,
            "GET",
            &format!("/v1/messages/{id}"),
            None,
        ))
        .await;
    let message = body_of(&message);
    assert_eq!(message["state"], "bounced", "{message}");
    let suppressed = mailgate_aws::DynamoDbSuppressionList::new(
        t.clients.dynamodb.clone(),
        t.table("SuppressionsTable"),
    )
    .get(&mailgate_core::EmailAddress::parse("gone@example.net").unwrap())
    .await
    .unwrap();
    assert!(
        suppressed.is_some(),
        "the hard bounce suppresses the address"
    );
}

#[tokio::test]
async fn a_reply_to_a_message_we_sent_adds_replied_to_its_history_without_changing_its_state() {
    let t = TestStack::new().await;
    let (api, auth) = send_api_with_key(&t).await;
    let id = send_order(&api, &auth, "ana@example.org").await;
    let before = body_of(
        &api.handle(api_request(
            &auth,
            "GET",
            &format!("/v1/messages/{id}"),
            None,
        ))
        .await,
    );

    // Ana answers: the fixture's reply, threaded to the message just sent.
    let event = fixture("webhook-postmark/inbound-reply.json")
        .replace("msg_0123456789abcdefghjkmnpqrs", &id);
    let response = postmark(&t)
        .handle(lambda_http::request::from_str(&event).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let inbound_id = body_of(&response)["inbound"].as_str().unwrap().to_owned();
    process_queue(&t).await;

    let after = body_of(
        &api.handle(api_request(
            &auth,
            "GET",
            &format!("/v1/messages/{id}"),
            None,
        ))
        .await,
    );
    assert_eq!(after["state"], before["state"], "{after}");
    let replied: Vec<&Value> = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "replied")
        .collect();
    assert_eq!(replied.len(), 1, "{after}");
    assert_eq!(replied[0]["provider"], "postmark");
    assert_eq!(replied[0]["recipient"], "ana@example.org");
    assert_eq!(
        thread_of(&t, &inbound_id).await.as_deref(),
        Some(id.as_str())
    );

    // Processing the parse request again adds nothing twice.
    processor(&t)
        .process_inbound(&InboundId::parse(&inbound_id).unwrap())
        .await;
    let again = body_of(
        &api.handle(api_request(
            &auth,
            "GET",
            &format!("/v1/messages/{id}"),
            None,
        ))
        .await,
    );
    let count = again["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "replied")
        .count();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn a_reply_naming_the_message_id_ses_gave_our_send_threads_to_it() {
    let t = TestStack::new().await;
    let (api, auth) = send_api_with_key(&t).await;
    let id = send_order(&api, &auth, "ana@example.org").await;
    let (_, message) = api_get(&api, &auth, &format!("/v1/messages/{id}")).await;
    assert_eq!(message["provider"], "ses", "{message}");
    let ses_id = message["provider_message_id"].as_str().unwrap().to_owned();
    assert!(!ses_id.starts_with("msg_"), "{message}");

    // SES replaced our Message-ID with `<its MessageId@email.amazonses.com>`; Ana's client
    // answers that one, and nothing of ours is in the reply.
    let event = fixture("webhook-postmark/inbound-reply.json").replace(
        "msg_0123456789abcdefghjkmnpqrs@example.com",
        &format!("{ses_id}@email.amazonses.com"),
    );
    assert!(!event.contains("msg_"));
    let response = postmark(&t)
        .handle(lambda_http::request::from_str(&event).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let inbound_id = body_of(&response)["inbound"].as_str().unwrap().to_owned();
    process_queue(&t).await;

    assert_eq!(
        thread_of(&t, &inbound_id).await.as_deref(),
        Some(id.as_str())
    );
    let (_, after) = api_get(&api, &auth, &format!("/v1/messages/{id}")).await;
    let replied = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "replied")
        .count();
    assert_eq!(replied, 1, "{after}");
}

/// What the app received: per POST, whether `standardwebhooks` verified it, and its body.
type Hooks = std::sync::Arc<std::sync::Mutex<Vec<(bool, Value)>>>;
/// The endpoint's secret, known once the endpoint (which needs the app's URL) is added.
type Secret = std::sync::Arc<std::sync::Mutex<String>>;

/// The team's app for `email.received`: records each POST with whether the independent
/// `standardwebhooks` crate verifies it with the endpoint's secret.
async fn start_app(secret: Secret) -> (Hooks, String) {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::HeaderMap;
    let hooks: Hooks = Hooks::default();
    let state = (hooks.clone(), secret);
    let router = axum::Router::new()
        .route(
            "/hooks",
            axum::routing::post(
                |State((hooks, secret)): State<(Hooks, Secret)>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let secret = secret.lock().unwrap().clone();
                    let verified = standardwebhooks::Webhook::new(&secret)
                        .unwrap()
                        .verify(&body, &headers)
                        .is_ok();
                    let body: Value = serde_json::from_slice(&body).unwrap();
                    hooks.lock().unwrap().push((verified, body));
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (hooks, url)
}

/// Runs the dispatcher on everything the outbound queue holds, as its SQS trigger would.
async fn dispatch_outbound(t: &TestStack) {
    let config = dispatcher::Config::from_lookup(t.function_env("dispatcher")).unwrap();
    let dispatcher = dispatcher::Function::new(config, t.clients.clone()).unwrap();
    loop {
        let messages = t
            .clients
            .sqs
            .receive_message()
            .queue_url(t.queue_url("OutboundQueue"))
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            return;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                serde_json::json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": {"ApproximateReceiveCount": "1"},
                    "eventSource": "aws:sqs",
                })
            })
            .collect();
        let batch = serde_json::from_value(serde_json::json!({ "Records": records })).unwrap();
        let response = dispatcher.handle(batch).await;
        assert!(response.batch_item_failures.is_empty());
        for m in &messages {
            t.clients
                .sqs
                .delete_message()
                .queue_url(t.queue_url("OutboundQueue"))
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// GETs `path` from the send API with `auth`, returning status and JSON body.
async fn api_get(api: &send_api::SendApi, auth: &str, path: &str) -> (StatusCode, Value) {
    let response = api.handle(api_request(auth, "GET", path, None)).await;
    let status = response.status();
    (status, body_of(&response))
}

/// The path with a query string: the fixture's event carries the query separately.
fn api_query(auth: &str, path: &str, query: &[(&str, &str)]) -> lambda_http::Request {
    let mut event: Value = serde_json::from_str(&fixture("send-api/post-message.json")).unwrap();
    event["requestContext"]["http"]["method"] = Value::String("GET".into());
    event["rawPath"] = Value::String(path.into());
    event["requestContext"]["http"]["path"] = Value::String(path.into());
    event["body"] = Value::Null;
    let encoded: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('+', "%2B").replace(':', "%3A")))
        .collect();
    event["rawQueryString"] = Value::String(encoded.join("&"));
    let mut params = serde_json::Map::new();
    for (k, v) in query {
        params.insert((*k).to_owned(), Value::String((*v).to_owned()));
    }
    event["queryStringParameters"] = Value::Object(params);
    let headers = event["headers"].as_object_mut().unwrap();
    headers.remove("idempotency-key");
    headers.remove("content-length");
    headers.insert("authorization".into(), Value::String(auth.into()));
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

#[tokio::test]
async fn replies_through_postmark_and_ses_are_listed_by_thread_announced_signed_and_linked_for_download()
 {
    let t = TestStack::new().await;
    let api = send_api::SendApi::new(
        send_api::SendApiConfig::from_lookup(t.function_env("send-api")).unwrap(),
        t.clients.clone(),
    )
    .unwrap();
    let auth = bearer(&t, "send,read,inbound:read").await;
    // The team's app takes `email.received` only.
    let secret = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (hooks, url) = start_app(secret.clone()).await;
    let (_, added) =
        mailgate_aws::DynamoDbEndpoints::new(t.clients.dynamodb.clone(), t.table("EndpointsTable"))
            .add(
                &url,
                mailgate_core::EndpointFilter::parse_list("email.received").unwrap(),
                mailgate_core::UnixMillis::from(time::OffsetDateTime::now_utc()),
            )
            .await
            .unwrap();
    *secret.lock().unwrap() = added.expose();

    let sent = api
        .handle(api_request(
            &auth,
            "POST",
            "/v1/messages",
            Some(
                serde_json::json!({
                    "from": "hello@example.com",
                    "to": ["ana@example.org"],
                    "subject": "Your order",
                    "text": "Shipped."
                })
                .to_string(),
            ),
        ))
        .await;
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let id = body_of(&sent)["id"].as_str().unwrap().to_owned();

    // Ana answers through Postmark (text, html, a PDF and an inline image) ...
    let event = fixture("webhook-postmark/inbound-reply.json")
        .replace("msg_0123456789abcdefghjkmnpqrs", &id);
    let response = postmark(&t)
        .handle(lambda_http::request::from_str(&event).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let from_postmark = body_of(&response)["inbound"].as_str().unwrap().to_owned();

    // ... and Billing answers through SES receiving (nested multipart with two attachments).
    {
        use mailgate_providers::ses::sns::testing::SnsTestMessage;
        use mailgate_tests::webhooks::{TOPIC, sns_signer, webhook_function};
        let (signer, http) = sns_signer();
        let ses = webhook_function(
            &t,
            ProviderId::Ses,
            Some(http),
            std::sync::Arc::new(mailgate_core::SystemClock),
        );
        let raw = std::fs::read_to_string(
            workspace_root().join("shared/core/tests/mime/nested_mixed_attachments.eml"),
        )
        .unwrap()
        .replace(
            "Message-ID: <inv-117@vendor.example>",
            &format!("Message-ID: <inv-117@vendor.example>\r\nIn-Reply-To: <{id}@example.com>"),
        );
        let key = "ses/o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1";
        objects(&t)
            .put(key, "message/rfc822", raw.as_bytes())
            .await
            .unwrap();
        let mut notification: Value =
            serde_json::from_str(&fixture("webhook-ses/inbound-received-message.json")).unwrap();
        notification["receipt"]["action"]["bucketName"] = Value::String(t.bucket("InboundBucket"));
        let message = SnsTestMessage::notification(
            TOPIC,
            &notification.to_string(),
            time::OffsetDateTime::now_utc(),
        )
        .with_message_id("sns-inbound-api-1");
        let response = ses
            .handle(mailgate_tests::webhooks::post(
                ProviderId::Ses,
                &signer.sign(&message),
                &[],
            ))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    // And a message no parser can read arrives through Postmark too.
    let unreadable = postmark(&t)
        .handle(inbound_request(
            Some("not a postmark inbound message"),
            None,
        ))
        .await;
    assert_eq!(unreadable.status(), StatusCode::OK);
    let unreadable = body_of(&unreadable)["inbound"].as_str().unwrap().to_owned();
    process_queue(&t).await;

    // Both replies are listed under the thread, newest first, with their bodies' summary.
    let listed = api
        .handle(api_query(&auth, "/v1/inbound", &[("thread", &id)]))
        .await;
    assert_eq!(listed.status(), StatusCode::OK);
    let listed = body_of(&listed);
    let data = listed["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{listed}");
    assert!(data.iter().all(|r| r["thread"] == id.as_str()));
    assert!(data.iter().all(|r| r.get("text").is_none()));
    let providers: Vec<&str> = data
        .iter()
        .map(|r| r["provider"].as_str().unwrap())
        .collect();
    assert!(
        providers.contains(&"postmark") && providers.contains(&"ses"),
        "{listed}"
    );
    assert_eq!(listed["next_cursor"], Value::Null);
    // Paged one at a time, the cursor reaches both.
    let first = body_of(
        &api.handle(api_query(
            &auth,
            "/v1/inbound",
            &[("thread", &id), ("limit", "1")],
        ))
        .await,
    );
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let second = body_of(
        &api.handle(api_query(
            &auth,
            "/v1/inbound",
            &[("thread", &id), ("limit", "1"), ("cursor", &cursor)],
        ))
        .await,
    );
    assert_ne!(first["data"][0]["id"], second["data"][0]["id"]);
    assert_eq!(second["data"].as_array().unwrap().len(), 1);

    // By recipient, and within a time window that excludes everything.
    let by_recipient = body_of(
        &api.handle(api_query(
            &auth,
            "/v1/inbound",
            &[("recipient", "Support@Inbound.Example.com")],
        ))
        .await,
    );
    // (The unreadable body names no recipient: it is listed in the feed only.)
    assert_eq!(
        by_recipient["data"].as_array().unwrap().len(),
        2,
        "{by_recipient}"
    );
    let everything = body_of(&api.handle(api_query(&auth, "/v1/inbound", &[])).await);
    assert_eq!(
        everything["data"].as_array().unwrap().len(),
        3,
        "{everything}"
    );
    let none = body_of(
        &api.handle(api_query(
            &auth,
            "/v1/inbound",
            &[("before", "2020-01-01T00:00:00Z")],
        ))
        .await,
    );
    assert_eq!(none["data"].as_array().unwrap().len(), 0);

    // One record: text, html and attachments; the raw message and each attachment by link.
    let (status, record) = api_get(&api, &auth, &format!("/v1/inbound/{from_postmark}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(record["status"], "parsed");
    assert_eq!(record["thread"], id.as_str());
    assert_eq!(
        record["text"].as_str().map(str::trim),
        Some("Thanks, it arrived.")
    );
    assert_eq!(
        record["html"].as_str().map(str::trim),
        Some("<p>Thanks, it arrived.</p>")
    );
    assert_eq!(record["attachments"].as_array().unwrap().len(), 2);
    let (status, raw) = api_get(&api, &auth, &format!("/v1/inbound/{from_postmark}/raw")).await;
    assert_eq!(status, StatusCode::OK);
    let raw_bytes = reqwest::get(raw["url"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&raw_bytes).contains(&format!("In-Reply-To: <{id}@")));
    let (status, pdf) = api_get(
        &api,
        &auth,
        &format!("/v1/inbound/{from_postmark}/attachments/0"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pdf["content_type"], "application/pdf");
    let pdf_bytes = reqwest::get(pdf["url"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&pdf_bytes[..], b"%PDF-1.4\n");
    assert_eq!(
        api_get(
            &api,
            &auth,
            &format!("/v1/inbound/{from_postmark}/attachments/9")
        )
        .await
        .0,
        StatusCode::NOT_FOUND
    );
    let ses_reply = data.iter().find(|r| r["provider"] == "ses").unwrap();
    let (_, ses_record) = api_get(
        &api,
        &auth,
        &format!("/v1/inbound/{}", ses_reply["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        ses_record["text"].as_str().map(str::trim),
        Some("Invoice attached.")
    );
    assert_eq!(
        ses_record["html"].as_str().map(str::trim),
        Some("<b>Invoice attached.</b>")
    );
    assert_eq!(ses_record["attachments"].as_array().unwrap().len(), 2);
    assert_eq!(ses_record["auth"]["spf"], "PASS");

    // The unreadable one is kept as parse_failed, its raw message still there.
    let (_, failed) = api_get(&api, &auth, &format!("/v1/inbound/{unreadable}")).await;
    assert_eq!(failed["status"], "parse_failed");
    assert_eq!(failed["parse_error"], "not_a_message");

    // The original has one `replied` per human reply.
    let (_, original) = api_get(&api, &auth, &format!("/v1/messages/{id}")).await;
    let replied = original["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "replied")
        .count();
    assert_eq!(replied, 2, "{original}");

    // The app received `email.received` for each of the three, signed.
    dispatch_outbound(&t).await;
    let got = hooks.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|(verified, _)| *verified));
    assert!(got.iter().all(|(_, b)| b["type"] == "email.received"));
    let pm = got
        .iter()
        .find(|(_, b)| b["data"]["id"] == from_postmark.as_str())
        .unwrap();
    assert_eq!(pm.1["data"]["thread"], id.as_str());
    assert_eq!(pm.1["data"]["subject"], "Re: Your order — shipped");
    let linked = reqwest::get(pm.1["data"]["attachments"][0]["url"].as_str().unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&linked[..], b"%PDF-1.4\n");
    let failed_hook = got
        .iter()
        .find(|(_, b)| b["data"]["id"] == unreadable.as_str())
        .unwrap();
    assert_eq!(failed_hook.1["data"]["status"], "parse_failed");
    assert!(failed_hook.1["data"]["raw_url"].as_str().is_some());
}

#[tokio::test]
async fn the_inbound_routes_need_the_inbound_read_scope_and_refuse_bad_queries() {
    let t = TestStack::new().await;
    let api = send_api::SendApi::new(
        send_api::SendApiConfig::from_lookup(t.function_env("send-api")).unwrap(),
        t.clients.clone(),
    )
    .unwrap();
    let reader = bearer(&t, "send,read").await;
    let id = InboundId::generate();
    for path in [
        "/v1/inbound".to_owned(),
        format!("/v1/inbound/{id}"),
        format!("/v1/inbound/{id}/raw"),
        format!("/v1/inbound/{id}/attachments/0"),
    ] {
        let (status, body) = api_get(&api, &reader, &path).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(body["error"]["code"], "insufficient_scope");
    }
    let (status, _) = api_get(&api, "Bearer nope", "/v1/inbound").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let inbound = bearer(&t, "inbound:read").await;
    assert_eq!(
        api_get(&api, &inbound, &format!("/v1/inbound/{id}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api_get(&api, &inbound, "/v1/inbound/not-an-id/raw").await.0,
        StatusCode::NOT_FOUND
    );
    for (query, code) in [
        (("thread", "nope"), "invalid_thread"),
        (("after", "yesterday"), "invalid_after"),
        (("limit", "0"), "invalid_limit"),
        (("cursor", "bm9wZQ"), "invalid_cursor"),
    ] {
        let response = api
            .handle(api_query(&inbound, "/v1/inbound", &[query]))
            .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body_of(&response)["error"]["code"], code);
    }
    let posted = api
        .handle(api_request(
            &inbound,
            "POST",
            "/v1/inbound",
            Some("{}".into()),
        ))
        .await;
    assert_eq!(posted.status(), StatusCode::METHOD_NOT_ALLOWED);
}

/// The reply domain and signing key the track_replies tests configure.
const REPLY_DOMAIN: &str = "in.example.com";
const REPLY_KEY: &str = "test-only-reply-signing-key-0123456789abcdef";

/// `function`'s template environment with reply addresses configured.
fn with_replies(t: &TestStack, function: &str) -> impl Fn(&str) -> Option<String> + use<> {
    let env = t.function_env(function);
    move |k| match k {
        "INBOUND_DOMAIN" => Some(REPLY_DOMAIN.to_owned()),
        "UNSUBSCRIBE_SIGNING_KEYS" => Some(REPLY_KEY.to_owned()),
        _ => env(k),
    }
}

#[tokio::test]
async fn track_replies_sets_a_signed_reply_to_and_a_reply_there_threads_without_in_reply_to() {
    let t = TestStack::new().await;
    let api = send_api::SendApi::new(
        send_api::SendApiConfig::from_lookup(with_replies(&t, "send-api")).unwrap(),
        t.clients.clone(),
    )
    .unwrap();
    let auth = bearer(&t, "send,read,inbound:read").await;
    let sent = api
        .handle(api_request(
            &auth,
            "POST",
            "/v1/messages",
            Some(
                serde_json::json!({
                    "from": "hello@example.com",
                    "to": ["ana@example.org"],
                    "subject": "Your order",
                    "text": "Shipped.",
                    // A custom header makes the SES send raw MIME, which moto keeps whole.
                    "headers": {"X-Order": "117"},
                    "track_replies": true
                })
                .to_string(),
            ),
        ))
        .await;
    assert_eq!(sent.status(), StatusCode::ACCEPTED, "{:?}", sent.body());
    let id = body_of(&sent)["id"].as_str().unwrap().to_owned();
    let address = mailgate_core::ReplyAddresses::new(
        REPLY_DOMAIN,
        mailgate_core::UnsubscribeKeys::parse(REPLY_KEY).unwrap(),
    )
    .address(&MessageId::parse(&id).unwrap());
    // The message SES sent carries the reply address as its Reply-To.
    let ses: Value = reqwest::get(format!("{}/moto-api/data.json", t.endpoint))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ses = ses["ses"].to_string().replace("\\r\\n", "\n");
    assert!(
        ses.contains(&format!("Reply-To: <{address}>"))
            || ses.contains(&format!("Reply-To: {address}")),
        "{address} in {ses}"
    );

    // Ana answers to the reply address from a client that sets no In-Reply-To of ours.
    let event = fixture("webhook-postmark/inbound-reply.json")
        .replace("msg_0123456789abcdefghjkmnpqrs", "older-thread")
        .replace("support@inbound.example.com", &address);
    let response = postmark(&t)
        .handle(lambda_http::request::from_str(&event).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let inbound = body_of(&response)["inbound"].as_str().unwrap().to_owned();
    let processor = event_processor::EventProcessor::new(
        event_processor::Config::from_lookup(with_replies(&t, "event-processor")).unwrap(),
        t.clients.clone(),
    );
    let template: Value =
        serde_json::from_str(&fixture("event-processor/sqs-inbound-parse.json")).unwrap();
    for message in drain_events(&t).await {
        let mut batch = template.clone();
        batch["Records"][0]["body"] = Value::String(message.to_string());
        processor.handle(batch).await.unwrap();
    }
    let (_, record) = api_get(&api, &auth, &format!("/v1/inbound/{inbound}")).await;
    assert_eq!(record["thread"], id.as_str(), "{record}");
    let (_, original) = api_get(&api, &auth, &format!("/v1/messages/{id}")).await;
    assert!(
        original["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "replied"),
        "{original}"
    );
    let listed = body_of(
        &api.handle(api_query(&auth, "/v1/inbound", &[("thread", &id)]))
            .await,
    );
    assert_eq!(listed["data"][0]["id"], inbound.as_str());
}

#[tokio::test]
async fn track_replies_is_refused_without_an_inbound_domain_or_beside_a_reply_to() {
    let t = TestStack::new().await;
    let auth = bearer(&t, "send").await;
    let body = |extra: Value| {
        let mut body = serde_json::json!({
            "from": "hello@example.com",
            "to": ["ana@example.org"],
            "subject": "Your order",
            "text": "Shipped.",
            "track_replies": true
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        api_request(&auth, "POST", "/v1/messages", Some(body.to_string()))
    };
    let unconfigured = send_api::SendApi::new(
        send_api::SendApiConfig::from_lookup(t.function_env("send-api")).unwrap(),
        t.clients.clone(),
    )
    .unwrap();
    let refused = unconfigured.handle(body(serde_json::json!({}))).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body_of(&refused)["error"]["code"],
        "track_replies_not_configured"
    );
    assert_eq!(body_of(&refused)["error"]["field"], "track_replies");

    let configured = send_api::SendApi::new(
        send_api::SendApiConfig::from_lookup(with_replies(&t, "send-api")).unwrap(),
        t.clients.clone(),
    )
    .unwrap();
    let both = configured
        .handle(body(serde_json::json!({"reply_to": "replies@example.com"})))
        .await;
    assert_eq!(both.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body_of(&both)["error"]["code"],
        "track_replies_with_reply_to"
    );
}
