#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! SendGrid Inbound Parse and Mailgun routes through the real webhook functions under
//! `/inbound`, against the emulator: each form is authenticated as its provider does it (Basic
//! credentials in the Parse URL; Mailgun's HMAC signature fields), its raw MIME stored in S3 and
//! recorded before the 200, and the event processor parses it from the events queue.

use std::sync::Arc;

use lambda_http::http::StatusCode;
use mailgate_core::inbound::attachment_key;
use mailgate_core::ports::{InboundObjects, InboundRecords};
use mailgate_core::{InboundId, InboundKind, InboundStatus, MessageId, ProviderId, SystemClock};
use mailgate_lambda::webhook::WebhookFunction;
use mailgate_tests::api::json_body;
use mailgate_tests::inbound::{objects, process_queue, records};
use mailgate_tests::webhooks::{
    BASIC_PAIR, MAILGUN_KEY, basic_header, drain_events, local_webhook_function, mailgun_signature,
    multipart_form, post_inbound, webhook_config, webhook_function,
};
use mailgate_tests::{TestStack, fixture};

/// Our message a reply answers.
const OURS: &str = "msg_0123456789abcdefghjkmnpqrs";

fn function(t: &TestStack, provider: ProviderId) -> WebhookFunction {
    webhook_function(t, provider, None, Arc::new(SystemClock))
}

/// A reply to [`OURS`] with a PDF attachment, in ISO-8859-1 quoted-printable, as received.
fn reply_mime(message_id: &str) -> String {
    format!(
        "From: =?ISO-8859-1?Q?Ana_Mar=EDa?= <ana@example.org>\r\n\
         To: support@parse.example.com\r\n\
         Subject: Re: Your order\r\n\
         Message-ID: <{message_id}>\r\n\
         In-Reply-To: <{OURS}@example.com>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\n\
         Content-Type: text/plain; charset=ISO-8859-1\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n\
         Gr=E1cias, it arrived.\r\n\
         --b1\r\n\
         Content-Type: application/pdf; name=\"receipt.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"receipt.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n\
         JVBERi0xLjQK\r\n\
         --b1--\r\n"
    )
}

/// The id the function answered with.
fn inbound_id(response: &lambda_http::Response<lambda_http::Body>) -> InboundId {
    InboundId::parse(json_body(response)["inbound"].as_str().unwrap()).unwrap()
}

/// How many objects the inbound bucket holds.
async fn stored_objects(t: &TestStack) -> usize {
    mailgate_aws::S3InboundObjects::client(&t.sdk)
        .list_objects_v2()
        .bucket(t.bucket("InboundBucket"))
        .send()
        .await
        .unwrap()
        .contents()
        .len()
}

#[tokio::test]
async fn a_sendgrid_parse_post_in_raw_mode_is_stored_before_the_ack_then_parsed_and_threaded() {
    let t = TestStack::new().await;
    let f = function(&t, ProviderId::Sendgrid);
    let email = reply_mime("sg-reply-1@example.org");
    let fields = [
        ("email", email.as_str()),
        ("to", "support@parse.example.com"),
        ("from", "Ana <ana@example.org>"),
        ("subject", "Re: Your order"),
        (
            "envelope",
            r#"{"to":["support@parse.example.com"],"from":"ana@example.org"}"#,
        ),
        ("SPF", "pass"),
        ("dkim", "{@example.org : pass}"),
        ("spam_score", "0.2"),
        (
            "charsets",
            r#"{"to":"UTF-8","subject":"UTF-8","from":"UTF-8"}"#,
        ),
    ];
    let (body, content_type) = multipart_form(&fields, &[]);
    let response = f
        .handle(post_inbound(
            ProviderId::Sendgrid,
            &body,
            &content_type,
            &[basic_header(BASIC_PAIR)],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    assert_eq!(json_body(&response)["status"], "received");
    let id = inbound_id(&response);

    // Before anything is parsed: the message as received in S3, the record with SendGrid's word.
    let record = records(&t).get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InboundStatus::Received);
    assert_eq!(record.provider, ProviderId::Sendgrid);
    assert_eq!(record.recipient, "support@parse.example.com");
    assert_eq!(record.auth.spf.as_deref(), Some("pass"));
    assert_eq!(record.auth.dkim.as_deref(), Some("{@example.org : pass}"));
    assert_eq!(
        objects(&t).get(&record.raw_key).await.unwrap().unwrap(),
        email.as_bytes()
    );

    assert_eq!(process_queue(&t).await, std::slice::from_ref(&id));
    let record = records(&t).get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InboundStatus::Parsed);
    assert_eq!(record.thread, Some(MessageId::parse(OURS).unwrap()));
    let summary = record.summary.unwrap();
    assert_eq!(summary.kind, InboundKind::Message);
    assert_eq!(summary.from.unwrap().name.as_deref(), Some("Ana María"));
    assert_eq!(
        summary.text.as_deref().map(str::trim),
        Some("Grácias, it arrived.")
    );
    assert_eq!(summary.attachments.len(), 1);
    assert_eq!(
        objects(&t)
            .get(&attachment_key(&id, 0))
            .await
            .unwrap()
            .unwrap(),
        b"%PDF-1.4\n"
    );

    // SendGrid retries the message (a new form boundary): recorded once.
    let (again, content_type) = multipart_form(&fields, &[]);
    let response = f
        .handle(post_inbound(
            ProviderId::Sendgrid,
            &again,
            &content_type,
            &[basic_header(BASIC_PAIR)],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_body(&response)["status"], "duplicate");
    assert_eq!(inbound_id(&response), id);
}

#[tokio::test]
async fn a_sendgrid_parse_post_with_wrong_or_no_credentials_or_too_large_stores_nothing() {
    let t = TestStack::new().await;
    let f = function(&t, ProviderId::Sendgrid);
    let email = reply_mime("sg-reply-2@example.org");
    let (body, content_type) = multipart_form(&[("email", email.as_str())], &[]);
    for headers in [vec![basic_header("hooks:wrong-password")], vec![]] {
        let response = f
            .handle(post_inbound(
                ProviderId::Sendgrid,
                &body,
                &content_type,
                &headers,
            ))
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(json_body(&response)["error"]["code"], "unauthorized");
    }
    let small = WebhookFunction::new(
        webhook_config(
            &t,
            ProviderId::Sendgrid,
            None,
            &[("WEBHOOK_MAX_BODY_BYTES", "256")],
        ),
        t.clients.clone(),
    );
    let response = small
        .handle(post_inbound(
            ProviderId::Sendgrid,
            &body,
            &content_type,
            &[basic_header(BASIC_PAIR)],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json_body(&response)["error"]["code"], "payload_too_large");
    assert!(drain_events(&t).await.is_empty());
    assert_eq!(stored_objects(&t).await, 0);
}

#[tokio::test]
async fn a_sendgrid_parse_post_without_raw_mode_is_rebuilt_with_its_inline_and_attached_files() {
    let t = TestStack::new().await;
    let f = function(&t, ProviderId::Sendgrid);
    let headers = format!(
        "Received: by mx0.sendgrid.net\nFrom: Ana <ana@example.org>\nTo: support@parse.example.com\nSubject: Re: Your order\nMessage-ID: <sg-reply-3@example.org>\nIn-Reply-To: <{OURS}@example.com>\nContent-Type: multipart/mixed; boundary=x\n"
    );
    let (body, content_type) = multipart_form(
        &[
            ("headers", headers.as_str()),
            ("text", "Thanks, it arrived."),
            ("html", "<p>Thanks <img src=\"cid:logo\"></p>"),
            (
                "envelope",
                r#"{"to":["support@parse.example.com"],"from":"ana@example.org"}"#,
            ),
            ("attachments", "2"),
            (
                "attachment-info",
                r#"{"attachment1":{"filename":"receipt.pdf","type":"application/pdf"},"attachment2":{"filename":"logo.png","type":"image/png","content-id":"logo"}}"#,
            ),
            ("content-ids", r#"{"logo":"attachment2"}"#),
        ],
        &[
            (
                "attachment1",
                "receipt.pdf",
                "application/pdf",
                b"%PDF-1.4\n",
            ),
            ("attachment2", "logo.png", "image/png", b"\x89PNG\r\n"),
        ],
    );
    let response = f
        .handle(post_inbound(
            ProviderId::Sendgrid,
            &body,
            &content_type,
            &[basic_header(BASIC_PAIR)],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    let id = inbound_id(&response);
    process_queue(&t).await;
    let record = records(&t).get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InboundStatus::Parsed);
    assert_eq!(record.thread, Some(MessageId::parse(OURS).unwrap()));
    let summary = record.summary.unwrap();
    assert_eq!(
        summary.message_id.as_deref(),
        Some("sg-reply-3@example.org")
    );
    assert_eq!(summary.attachments.len(), 2);
    assert!(!summary.attachments[0].inline);
    assert!(summary.attachments[1].inline);
    assert_eq!(
        objects(&t)
            .get(&attachment_key(&id, 1))
            .await
            .unwrap()
            .unwrap(),
        b"\x89PNG\r\n"
    );
}

/// A Mailgun route POST (URL-encoded, as Mailgun sends a message without attachments) of
/// `fields`, signed with `key` at `timestamp`.
fn route_post(key: &str, timestamp: i64, fields: &[(&str, &str)]) -> lambda_http::Request {
    let mut all: Vec<(String, String)> = mailgun_signature(key, timestamp, "route-token-1").into();
    all.extend(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let body = serde_urlencoded::to_string(&all).unwrap();
    post_inbound(
        ProviderId::Mailgun,
        body.as_bytes(),
        "application/x-www-form-urlencoded",
        &[],
    )
}

#[tokio::test]
async fn a_mailgun_route_post_with_body_mime_is_verified_by_its_signature_then_parsed() {
    let t = TestStack::new().await;
    let f = function(&t, ProviderId::Mailgun);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mime = format!(
        "X-Mailgun-Spf: Pass\r\nX-Mailgun-Dkim-Check-Result: Pass\r\nX-Mailgun-Sflag: No\r\n{}",
        reply_mime("mg-reply-1@example.org")
    );
    let fields = [
        ("recipient", "support@mg.example.com"),
        ("sender", "ana@example.org"),
        ("subject", "Re: Your order"),
        ("body-mime", mime.as_str()),
    ];

    // Forged with another key, or signed ten hours ago (past Mailgun's 8 hours of retries).
    for (key, at) in [("not-the-key", now), (MAILGUN_KEY, now - 10 * 3600)] {
        let refused = f.handle(route_post(key, at, &fields)).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(drain_events(&t).await.is_empty());
    assert_eq!(stored_objects(&t).await, 0);

    // Signed seven hours ago (a retry): accepted.
    let response = f
        .handle(route_post(MAILGUN_KEY, now - 7 * 3600, &fields))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    let id = inbound_id(&response);
    let record = records(&t).get(&id).await.unwrap().unwrap();
    assert_eq!(record.provider, ProviderId::Mailgun);
    assert_eq!(record.recipient, "support@mg.example.com");
    assert_eq!(record.auth.spf.as_deref(), Some("Pass"));
    assert_eq!(record.auth.dkim.as_deref(), Some("Pass"));
    assert_eq!(record.auth.spam.as_deref(), Some("No"));
    assert_eq!(
        objects(&t).get(&record.raw_key).await.unwrap().unwrap(),
        mime.as_bytes()
    );
    process_queue(&t).await;
    let record = records(&t).get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InboundStatus::Parsed);
    assert_eq!(record.thread, Some(MessageId::parse(OURS).unwrap()));
    assert_eq!(record.summary.unwrap().attachments.len(), 1);
}

#[tokio::test]
async fn a_mailgun_route_post_of_parsed_fields_is_rebuilt_and_an_auto_reply_is_marked() {
    let t = TestStack::new().await;
    let f = function(&t, ProviderId::Mailgun);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let headers = format!(
        r#"[["From","Ana <ana@example.org>"],["To","support@mg.example.com"],["Subject","Out of office"],["Message-Id","<mg-auto-1@example.org>"],["In-Reply-To","<{OURS}@example.com>"],["Auto-Submitted","auto-replied"],["X-Mailgun-Spf","Pass"]]"#
    );
    let mut fields: Vec<(String, String)> =
        mailgun_signature(MAILGUN_KEY, now, "route-token-2").into();
    fields.extend(
        [
            ("recipient", "support@mg.example.com"),
            ("message-headers", headers.as_str()),
            ("body-plain", "I am away until Monday."),
            ("attachment-count", "1"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let refs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (body, content_type) = multipart_form(
        &refs,
        &[("attachment-1", "agenda.txt", "text/plain", b"monday: back")],
    );
    let response = f
        .handle(post_inbound(ProviderId::Mailgun, &body, &content_type, &[]))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    let id = inbound_id(&response);
    assert_eq!(
        records(&t)
            .get(&id)
            .await
            .unwrap()
            .unwrap()
            .auth
            .spf
            .as_deref(),
        Some("Pass")
    );
    process_queue(&t).await;
    let record = records(&t).get(&id).await.unwrap().unwrap();
    assert_eq!(record.status, InboundStatus::Parsed);
    let summary = record.summary.unwrap();
    // An auto-reply is marked and threaded, never taken for a human reply.
    assert_eq!(summary.kind, InboundKind::AutoReply);
    assert_eq!(record.thread, Some(MessageId::parse(OURS).unwrap()));
    assert_eq!(summary.attachments.len(), 1);
    assert_eq!(
        objects(&t)
            .get(&attachment_key(&id, 0))
            .await
            .unwrap()
            .unwrap(),
        b"monday: back"
    );
}

#[tokio::test]
async fn the_committed_inbound_fixtures_are_accepted_with_the_local_secrets() {
    let t = TestStack::new().await;
    // The SendGrid fixture carries the local Parse URL credentials; the Mailgun one is signed
    // with the local key at 2026-12-05 09:00 UTC, so it verifies on a clock near then (re-sign
    // it to post it later: docs/fixtures.md).
    let sendgrid = local_webhook_function(&t, ProviderId::Sendgrid, Arc::new(SystemClock));
    let signed_at = time::macros::datetime!(2026-12-05 09:05 UTC);
    let mailgun = local_webhook_function(
        &t,
        ProviderId::Mailgun,
        Arc::new(mailgate_core::FixedClock::new(signed_at)),
    );
    let mut ids = Vec::new();
    for (f, fixture_path) in [
        (&sendgrid, "webhook-sendgrid/inbound-parse.json"),
        (&mailgun, "webhook-mailgun/inbound-route.json"),
    ] {
        let request = lambda_http::request::from_str(&fixture(fixture_path)).unwrap();
        let response = f.handle(request).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "{fixture_path}: {:?}",
            response.body()
        );
        ids.push(inbound_id(&response));
    }
    process_queue(&t).await;
    for id in &ids {
        let record = records(&t).get(id).await.unwrap().unwrap();
        assert_eq!(record.status, InboundStatus::Parsed, "{id}");
        assert_eq!(record.thread, Some(MessageId::parse(OURS).unwrap()));
        assert_eq!(
            record.summary.unwrap().html.as_deref().map(str::trim),
            Some("<p>Thanks, it arrived.</p>")
        );
    }
}
