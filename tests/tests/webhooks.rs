//! Webhook ingestion end to end: real signatures made here, the real handlers, receipts in
//! DynamoDB and events on SQS in the local emulator.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::Arc;

use lambda_http::Body;
use lambda_http::http::StatusCode;
use mailgate_core::{Clock, FixedClock, ProviderId, SystemClock};
use mailgate_lambda::webhook::{WebhookConfig, WebhookFunction};
use mailgate_providers::ses::sns::SnsHttpError;
use mailgate_providers::ses::sns::testing::{SnsTestMessage, SnsTestSigner, StaticSnsHttp};
use mailgate_tests::webhooks::*;
use mailgate_tests::{TestStack, fixture};
use serde_json::Value;

fn json(r: &lambda_http::Response<Body>) -> Value {
    match r.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

fn now() -> i64 {
    SystemClock.unix_seconds()
}

fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Asserts a 401 with no detail, counted, and nothing stored or enqueued.
async fn assert_rejected(
    t: &TestStack,
    f: &WebhookFunction,
    response: lambda_http::Response<Body>,
    failures_before: u64,
    what: &str,
) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
    let body = json(&response);
    assert_eq!(body["error"]["code"], "unauthorized", "{what}");
    assert_eq!(
        body["error"]["message"], "the delivery could not be verified",
        "{what}: no detail leaks"
    );
    assert_eq!(
        f.stats().verification_failures(),
        failures_before + 1,
        "{what}: counted"
    );
    assert!(receipts(t).await.is_empty(), "{what}: nothing persisted");
    assert!(drain_events(t).await.is_empty(), "{what}: nothing enqueued");
}

#[tokio::test]
async fn a_signed_sendgrid_batch_is_persisted_enqueued_and_acknowledged() {
    let t = TestStack::new().await;
    let f = webhook_function(&t, ProviderId::Sendgrid, None, system());
    let body = sendgrid_batch(3, "ok");
    let headers = sendgrid_headers(&sendgrid_key(7), now(), &body);

    let response = f.handle(post(ProviderId::Sendgrid, &body, &headers)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let ack = json(&response);
    assert_eq!(ack["status"], "queued");
    assert_eq!(ack["events"], 3);

    let stored = receipts(&t).await;
    assert_eq!(stored.len(), 1);
    let r = &stored[0];
    assert_eq!(attr(r, "status"), "queued");
    assert_eq!(attr(r, "provider"), "sendgrid");
    assert_eq!(attr(r, "verification"), "ecdsa-p256-sha256");
    assert!(attr(r, "dedupe_key").starts_with("sha256:"));
    assert!(!r.contains_key("pending"), "out of the sweeper's index");
    assert_eq!(r["body"].as_b().unwrap().as_ref(), body.as_slice());

    let events = drain_events(&t).await;
    assert_eq!(events.len(), 3);
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["event"]["sg_event_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["ok-evt-00000", "ok-evt-00001", "ok-evt-00002"]);
    assert!(
        events.iter().all(|e| e["provider"] == "sendgrid"
            && e["receipt"] == ack["receipt"]
            && e["count"] == 3)
    );
}

#[tokio::test]
async fn forged_stale_future_and_unsigned_sendgrid_deliveries_are_rejected() {
    let t = TestStack::new().await;
    let f = webhook_function(&t, ProviderId::Sendgrid, None, system());
    let body = sendgrid_batch(2, "bad");
    let key = sendgrid_key(7);
    let ts = now();

    let mut tampered = body.clone();
    tampered[10] ^= 1;
    type Headers = Vec<(String, String)>;
    let cases: Vec<(&str, Vec<u8>, Headers)> = vec![
        ("tampered body", tampered, sendgrid_headers(&key, ts, &body)),
        (
            "wrong key",
            body.clone(),
            sendgrid_headers(&sendgrid_key(9), ts, &body),
        ),
        (
            "stale timestamp",
            body.clone(),
            sendgrid_headers(&key, ts - 86_400 - 60, &body),
        ),
        (
            "future timestamp",
            body.clone(),
            sendgrid_headers(&key, ts + 86_400 + 60, &body),
        ),
        ("missing headers", body.clone(), Vec::new()),
        (
            "timestamp changed after signing",
            body.clone(),
            sendgrid_headers(&key, ts, &body)
                .into_iter()
                .map(|(k, v)| {
                    if k.ends_with("timestamp") {
                        (k, (ts + 1).to_string())
                    } else {
                        (k, v)
                    }
                })
                .collect(),
        ),
    ];
    for (i, (what, body, headers)) in cases.into_iter().enumerate() {
        let response = f.handle(post(ProviderId::Sendgrid, &body, &headers)).await;
        assert_rejected(&t, &f, response, i as u64, what).await;
    }
}

#[tokio::test]
async fn the_same_sendgrid_batch_delivered_46_times_makes_one_receipt_and_one_enqueue() {
    let t = TestStack::new().await;
    let f = webhook_function(&t, ProviderId::Sendgrid, None, system());
    let body = sendgrid_batch(5, "dup");
    let headers = sendgrid_headers(&sendgrid_key(7), now(), &body);

    // The first copies race each other; the rest arrive after.
    let racing = (0..23).map(|_| f.handle(post(ProviderId::Sendgrid, &body, &headers)));
    let mut statuses: Vec<StatusCode> = futures::future::join_all(racing)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    for _ in 0..23 {
        statuses.push(
            f.handle(post(ProviderId::Sendgrid, &body, &headers))
                .await
                .status(),
        );
    }
    assert_eq!(statuses.len(), 46);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(f.stats().accepted(), 1);
    assert_eq!(f.stats().duplicates(), 45);

    let stored = receipts(&t).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(attr(&stored[0], "status"), "queued");
    assert_eq!(
        drain_events(&t).await.len(),
        5,
        "one enqueue of five events"
    );
}

#[tokio::test]
async fn a_1000_event_sendgrid_batch_is_accepted_and_fully_enqueued() {
    let t = TestStack::new().await;
    let f = webhook_function(&t, ProviderId::Sendgrid, None, system());
    let body = sendgrid_batch(1000, "big");
    assert!(
        body.len() > 350 * 1024,
        "large enough to be stored in parts"
    );
    let headers = sendgrid_headers(&sendgrid_key(7), now(), &body);

    let response = f.handle(post(ProviderId::Sendgrid, &body, &headers)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(&response)["events"], 1000);

    let stored = receipts(&t).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(attr(&stored[0], "status"), "queued");
    assert!(stored[0].contains_key("body_parts"), "body kept in parts");

    // Counted on the queue rather than received one by one: the emulator takes about a minute
    // to hand out a thousand messages.
    let attrs = t
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(t.queue_url("EventsQueue"))
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    let queued = attrs.attributes().unwrap()
        [&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages]
        .clone();
    assert_eq!(queued, "1000");
}

#[tokio::test]
async fn when_sqs_is_down_the_delivery_gets_503_stays_received_and_the_sweeper_enqueues_it_once() {
    let t = TestStack::new().await;
    // The same tables, but a queue endpoint nothing listens on.
    let mut broken = t.clients.clone();
    let dead = mailgate_tests::sdk_config("http://127.0.0.1:9").await;
    broken.sqs = aws_sdk_sqs::Client::new(&dead);
    let config = webhook_config(&t, ProviderId::Sendgrid, None, &[]);
    let f = WebhookFunction::new(config, broken);
    let body = sendgrid_batch(12, "outage");
    let headers = sendgrid_headers(&sendgrid_key(7), now(), &body);

    let response = f.handle(post(ProviderId::Sendgrid, &body, &headers)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(&response)["error"]["code"], "ingestion_unavailable");
    let stored = receipts(&t).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(attr(&stored[0], "status"), "received");
    assert_eq!(attr(&stored[0], "pending"), "sendgrid");

    // Later: the sweeper, past the lease and the re-enqueue age, with SQS back.
    let later = Arc::new(FixedClock::at_unix(now() + 600));
    let env = t.function_env("sweeper");
    let sweeper = sweeper::Sweeper::with_clock(
        sweeper::Config::from_lookup(env).unwrap(),
        t.clients.clone(),
        later.clone(),
    );
    let tick = || sweeper::ScheduledTick {
        detail_type: "Scheduled Event".to_owned(),
        time: "2026-11-23T12:00:00Z".to_owned(),
    };
    let report = sweeper.handle(tick()).await.unwrap();
    assert!(
        report
            .jobs
            .contains(&("requeue_receipts:sendgrid".to_owned(), 1))
    );
    let report = sweeper.handle(tick()).await.unwrap();
    assert!(
        report
            .jobs
            .contains(&("requeue_receipts:sendgrid".to_owned(), 0))
    );

    let stored = receipts(&t).await;
    assert_eq!(attr(&stored[0], "status"), "queued");
    assert_eq!(drain_events(&t).await.len(), 12, "enqueued exactly once");

    // The provider's retry now finds it queued and enqueues nothing.
    let healthy = webhook_function(&t, ProviderId::Sendgrid, None, system());
    let retry = healthy
        .handle(post(ProviderId::Sendgrid, &body, &headers))
        .await;
    assert_eq!(retry.status(), StatusCode::OK);
    assert_eq!(json(&retry)["status"], "duplicate");
    assert!(drain_events(&t).await.is_empty());
}

#[tokio::test]
async fn a_receipt_that_never_reaches_the_queue_is_given_up_with_its_reason_after_the_attempts() {
    use mailgate_fault_proxy::{Fault, FaultProxy, Op, When};
    let t = TestStack::new().await;
    // SQS refuses every enqueue of this stack, on the real wire.
    let proxy = FaultProxy::start(&t.endpoint).await.unwrap();
    proxy.fail(Op::sqs("SendMessageBatch"), Fault::Status503, When::Always);
    let clients = mailgate_aws::AwsClients::new(&mailgate_tests::sdk_config(&proxy.url()).await);
    let f = WebhookFunction::new(
        webhook_config(&t, ProviderId::Sendgrid, None, &[]),
        clients.clone(),
    );
    let body = sendgrid_batch(3, "poison");
    let headers = sendgrid_headers(&sendgrid_key(7), now(), &body);
    let response = f.handle(post(ProviderId::Sendgrid, &body, &headers)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    // The sweeper (2 attempts allowed: the delivery's own and one re-enqueue) gives up on it
    // once its backoff has passed, marks it failed with the reason and stops looking at it.
    let env = t.function_env("sweeper");
    let config = sweeper::Config::from_lookup(move |k| {
        if k == "RECEIPT_MAX_ATTEMPTS" {
            Some("2".to_owned())
        } else {
            env(k)
        }
    })
    .unwrap();
    let tick = || sweeper::ScheduledTick {
        detail_type: "Scheduled Event".to_owned(),
        time: "2026-12-04T12:00:00Z".to_owned(),
    };
    let mut gave_up = 0;
    for minutes in [10, 20, 40, 80] {
        let at = Arc::new(FixedClock::at_unix(now() + minutes * 60));
        let sweeper = sweeper::Sweeper::with_clock(config.clone(), clients.clone(), at);
        let report = sweeper.handle(tick()).await.unwrap();
        gave_up += report
            .jobs
            .iter()
            .find(|(job, _)| job == "fail_receipts:sendgrid")
            .map_or(0, |(_, n)| *n);
    }
    assert_eq!(gave_up, 1, "given up once");
    let stored = receipts(&t).await;
    assert_eq!(attr(&stored[0], "status"), "failed");
    assert!(
        !stored[0].contains_key("pending"),
        "out of the sweeper's index"
    );
    assert!(attr(&stored[0], "error").contains("not enqueued after 2 attempts"));
    assert_eq!(stored[0]["attempts"].as_n().unwrap(), "2");
}

#[tokio::test]
async fn a_redelivery_of_a_stuck_receipt_enqueues_it_once_its_lease_has_lapsed() {
    let t = TestStack::new().await;
    let mut broken = t.clients.clone();
    broken.sqs = aws_sdk_sqs::Client::new(&mailgate_tests::sdk_config("http://127.0.0.1:9").await);
    let f = WebhookFunction::new(webhook_config(&t, ProviderId::Sendgrid, None, &[]), broken);
    let body = sendgrid_batch(2, "stuck");
    let headers = sendgrid_headers(&sendgrid_key(7), now(), &body);
    assert_eq!(
        f.handle(post(ProviderId::Sendgrid, &body, &headers))
            .await
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Within the lease the first request may still be running: no second enqueue.
    let soon = webhook_function(&t, ProviderId::Sendgrid, None, system());
    let r = soon
        .handle(post(ProviderId::Sendgrid, &body, &headers))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json(&r)["status"], "duplicate");
    assert!(drain_events(&t).await.is_empty());

    // After the lease the provider's retry enqueues it.
    let later = webhook_function(
        &t,
        ProviderId::Sendgrid,
        None,
        Arc::new(FixedClock::at_unix(now() + 120)),
    );
    let headers = sendgrid_headers(&sendgrid_key(7), now() + 120, &body);
    let r = later
        .handle(post(ProviderId::Sendgrid, &body, &headers))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json(&r)["status"], "queued");
    assert_eq!(drain_events(&t).await.len(), 2);
    assert_eq!(attr(&receipts(&t).await[0], "status"), "queued");
}

#[tokio::test]
async fn an_authentic_but_unreadable_body_is_kept_as_failed_and_acknowledged() {
    let t = TestStack::new().await;
    let f = webhook_function(&t, ProviderId::Sendgrid, None, system());
    let body = br#"{"not":"an array"}"#;
    let headers = sendgrid_headers(&sendgrid_key(7), now(), body);
    let response = f.handle(post(ProviderId::Sendgrid, body, &headers)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(&response)["status"], "failed");
    let stored = receipts(&t).await;
    assert_eq!(attr(&stored[0], "status"), "failed");
    assert!(attr(&stored[0], "error").contains("not a JSON array"));
    assert!(!stored[0].contains_key("pending"));
    assert!(drain_events(&t).await.is_empty());
}

#[tokio::test]
async fn mailgun_deliveries_are_verified_and_a_replayed_token_is_refused() {
    let t = TestStack::new().await;
    // A stopped clock: the ±301 s cases sit one second outside the 300 s window, and a clock
    // that moves on during the test would pull the future one back inside.
    let ts = now();
    let f = webhook_function(
        &t,
        ProviderId::Mailgun,
        None,
        Arc::new(FixedClock::at_unix(ts)),
    );
    let body = mailgun_body(
        MAILGUN_KEY,
        ts,
        "token-one-0123456789abcdef0123456789abcdef01",
        "evt-1",
    );
    let ok = f.handle(post(ProviderId::Mailgun, &body, &[])).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(json(&ok)["status"], "queued");
    let events = drain_events(&t).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"]["id"], "evt-1");
    assert_eq!(attr(&receipts(&t).await[0], "dedupe_key"), "event:evt-1");

    // The same signed delivery again is a duplicate, not a replay.
    let again = f.handle(post(ProviderId::Mailgun, &body, &[])).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(json(&again)["status"], "duplicate");

    // The captured signature carrying other event data is a replay: refused, nothing stored.
    let forged = mailgun_body(
        MAILGUN_KEY,
        ts,
        "token-one-0123456789abcdef0123456789abcdef01",
        "evt-2",
    );
    let replay = f.handle(post(ProviderId::Mailgun, &forged, &[])).await;
    assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(f.stats().verification_failures(), 1);
    assert_eq!(receipts(&t).await.len(), 1);
    assert!(drain_events(&t).await.is_empty());

    let token = |i: u8| format!("token-{i}-0123456789abcdef0123456789abcdef0123456789");
    let cases = [
        (
            "wrong key",
            mailgun_body("another-key", ts, &token(3), "evt-3"),
        ),
        (
            "stale timestamp",
            mailgun_body(MAILGUN_KEY, ts - 301, &token(4), "evt-4"),
        ),
        (
            "future timestamp",
            mailgun_body(MAILGUN_KEY, ts + 301, &token(5), "evt-5"),
        ),
        (
            "missing signature",
            br#"{"event-data":{"id":"evt-6"}}"#.to_vec(),
        ),
    ];
    for (i, (what, body)) in cases.into_iter().enumerate() {
        let r = f.handle(post(ProviderId::Mailgun, &body, &[])).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(f.stats().verification_failures(), 2 + i as u64, "{what}");
        assert_eq!(receipts(&t).await.len(), 1, "{what}: nothing persisted");
        assert!(
            drain_events(&t).await.is_empty(),
            "{what}: nothing enqueued"
        );
    }
}

#[tokio::test]
async fn postmark_and_smtp2go_need_their_basic_credentials_and_allowed_sources() {
    for provider in [ProviderId::Postmark, ProviderId::Smtp2go] {
        let t = TestStack::new().await;
        let f = webhook_function(&t, provider, None, system());
        let body = br#"{"RecordType":"Delivery","MessageID":"m-1","Recipient":"alice@example.com","DeliveredAt":"2026-11-23T10:00:00Z","event":"delivered","email_id":"1er8bV-6Tw0Mi-7h","rcpt":"alice@example.com","time":"2026-11-23T10:00:00Z"}"#;

        let cases = [
            ("no credentials", Vec::new()),
            ("wrong password", vec![basic_header("hooks:guess")]),
            (
                "another scheme",
                vec![("authorization".to_owned(), "Bearer x".to_owned())],
            ),
        ];
        for (i, (what, headers)) in cases.into_iter().enumerate() {
            let r = f.handle(post(provider, body, &headers)).await;
            assert_rejected(&t, &f, r, i as u64, &format!("{provider}: {what}")).await;
        }
        let ok = f
            .handle(post(provider, body, &[basic_header(BASIC_PAIR)]))
            .await;
        assert_eq!(ok.status(), StatusCode::OK, "{provider}");
        let stored = receipts(&t).await;
        assert_eq!(attr(&stored[0], "verification"), "basic");
        assert!(!attr(&stored[0], "dedupe_key").contains("example.com"));
        assert_eq!(drain_events(&t).await.len(), 1);

        // With an allowlist, the fixture's source address (198.51.100.7) must be on it.
        let var = format!("{}_WEBHOOK_ALLOWED_IPS", provider.as_str().to_uppercase());
        let closed = WebhookFunction::new(
            webhook_config(&t, provider, None, &[(var.as_str(), "203.0.113.0/24")]),
            t.clients.clone(),
        );
        let other = br#"{"RecordType":"Open","MessageID":"m-2","event":"open","email_id":"x"}"#;
        let r = closed
            .handle(post(provider, other, &[basic_header(BASIC_PAIR)]))
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{provider}: source");
        let open = WebhookFunction::new(
            webhook_config(&t, provider, None, &[(var.as_str(), "198.51.100.0/24")]),
            t.clients.clone(),
        );
        let r = open
            .handle(post(provider, other, &[basic_header(BASIC_PAIR)]))
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{provider}: allowed source");
    }
}

#[tokio::test]
async fn smtp2go_form_encoded_events_are_stored_as_json() {
    let t = TestStack::new().await;
    let f = webhook_function(&t, ProviderId::Smtp2go, None, system());
    let body = b"event=bounce&time=2026-11-23T10%3A00%3A05Z&email_id=1er8bV-6Tw0Mi-7h&rcpt=bob%40example.com&bounce=hard";
    let headers = [
        basic_header(BASIC_PAIR),
        (
            "content-type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        ),
    ];
    let r = f.handle(post(ProviderId::Smtp2go, body, &headers)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let events = drain_events(&t).await;
    assert_eq!(events[0]["event"]["bounce"], "hard");
    assert_eq!(events[0]["event"]["rcpt"], "bob@example.com");
}

#[tokio::test]
async fn sns_notifications_are_verified_against_the_signing_certificate_and_topic() {
    let t = TestStack::new().await;
    let (signer, http) = sns_signer();
    let f = webhook_function(&t, ProviderId::Ses, Some(http.clone()), system());
    let at = time::OffsetDateTime::now_utc();
    let ses_event = r#"{"notificationType":"Bounce","mail":{"messageId":"0100abc"}}"#;
    let message = SnsTestMessage::notification(TOPIC, ses_event, at)
        .with_message_id("m-0001")
        .with_signature_version("1");
    let body = signer.sign(&message);

    let r = f.handle(post(ProviderId::Ses, &body, &[])).await;
    assert_eq!(r.status(), StatusCode::OK);
    let events = drain_events(&t).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"]["Message"], ses_event);
    let stored = receipts(&t).await;
    assert_eq!(attr(&stored[0], "dedupe_key"), "message:m-0001");
    assert_eq!(attr(&stored[0], "verification"), "sns-v1-sha1-rsa");

    // SNS retries with the same MessageId: a duplicate.
    let r = f.handle(post(ProviderId::Ses, &body, &[])).await;
    assert_eq!(json(&r)["status"], "duplicate");
    assert_eq!(http.fetch_count(signer.cert_url()), 1, "certificate cached");
}

#[tokio::test]
async fn sns_deliveries_from_untrusted_urls_other_topics_or_other_keys_are_rejected() {
    let t = TestStack::new().await;
    let (signer, http) = sns_signer();
    let f = webhook_function(&t, ProviderId::Ses, Some(http.clone()), system());
    let at = time::OffsetDateTime::now_utc();
    let base = || SnsTestMessage::notification(TOPIC, "{}", at);

    let mut cases: Vec<(String, Vec<u8>)> = [
        "https://sns.amazonaws.com.evil.com/cert.pem",
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://s3.amazonaws.com/cert.pem",
        "https://sns.us-east-1.amazonaws.com/cert.txt",
    ]
    .into_iter()
    .map(|url| {
        (
            format!("cert URL {url}"),
            signer.sign(&base().with_signing_cert_url(url)),
        )
    })
    .collect();
    cases.push((
        "topic not allowed".to_owned(),
        signer.sign(&SnsTestMessage::notification(
            "arn:aws:sns:us-east-1:999999999999:someone-else",
            "{}",
            at,
        )),
    ));
    let stranger = SnsTestSigner::new().with_fresh_key();
    cases.push(("another key".to_owned(), stranger.sign(&base())));
    let mut tampered = signer.sign(&base());
    let pos = tampered.windows(2).position(|w| w == b"{}").unwrap();
    tampered[pos + 1] = b' ';
    tampered.insert(pos + 2, b'}');
    cases.push(("tampered message".to_owned(), tampered));
    let old = at - time::Duration::hours(3);
    cases.push((
        "stale timestamp".to_owned(),
        signer.sign(&SnsTestMessage::notification(TOPIC, "{}", old)),
    ));
    let ahead = at + time::Duration::hours(3);
    cases.push((
        "future timestamp".to_owned(),
        signer.sign(&SnsTestMessage::notification(TOPIC, "{}", ahead)),
    ));

    for (i, (what, body)) in cases.into_iter().enumerate() {
        let r = f.handle(post(ProviderId::Ses, &body, &[])).await;
        assert_rejected(&t, &f, r, i as u64, &what).await;
    }
    for url in http.fetched() {
        assert_eq!(
            url,
            signer.cert_url(),
            "only the trusted certificate was fetched"
        );
    }
}

#[tokio::test]
async fn an_sns_subscription_is_confirmed_only_after_verification() {
    let t = TestStack::new().await;
    let (signer, http) = sns_signer();
    let at = time::OffsetDateTime::now_utc();
    let confirm = SnsTestMessage::subscription_confirmation(TOPIC, at);
    let subscribe_url = confirm.subscribe_url.clone();
    http.set(
        &subscribe_url,
        Ok(b"<ConfirmSubscriptionResponse/>".to_vec()),
    );
    let f = webhook_function(&t, ProviderId::Ses, Some(http.clone()), system());

    let r = f
        .handle(post(ProviderId::Ses, &signer.sign(&confirm), &[]))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(http.fetch_count(&subscribe_url), 1, "confirmed once");
    let stored = receipts(&t).await;
    assert_eq!(attr(&stored[0], "kind"), "subscription_confirmation");
    assert_eq!(attr(&stored[0], "status"), "processed");
    assert!(drain_events(&t).await.is_empty());

    // A forged confirmation is never fetched.
    let forged = SnsTestMessage::subscription_confirmation(TOPIC, at).with_message_id("forged");
    let forged_url = forged.subscribe_url.clone();
    let r = f
        .handle(post(
            ProviderId::Ses,
            &SnsTestSigner::new().with_fresh_key().sign(&forged),
            &[],
        ))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        http.fetch_count(&forged_url),
        usize::from(forged_url == subscribe_url)
    );

    // An unsubscribe confirmation is recorded, not enqueued.
    let gone = SnsTestMessage::unsubscribe_confirmation(TOPIC, at).with_message_id("gone-1");
    let r = f
        .handle(post(ProviderId::Ses, &signer.sign(&gone), &[]))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        receipts(&t)
            .await
            .iter()
            .any(|r| attr(r, "kind") == "unsubscribe_confirmation")
    );
    assert!(drain_events(&t).await.is_empty());
}

#[tokio::test]
async fn an_unreachable_signing_certificate_is_a_503_so_sns_retries() {
    let t = TestStack::new().await;
    let signer = SnsTestSigner::new();
    for failure in [SnsHttpError::Timeout, SnsHttpError::Status(503)] {
        let http = Arc::new(StaticSnsHttp::new().with_failure(signer.cert_url(), failure));
        let f = webhook_function(&t, ProviderId::Ses, Some(http.clone()), system());
        let body = signer.sign(&SnsTestMessage::notification(
            TOPIC,
            "{}",
            time::OffsetDateTime::now_utc(),
        ));
        for _ in 0..2 {
            let r = f.handle(post(ProviderId::Ses, &body, &[])).await;
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        // Not a verification failure, and not remembered: each delivery asks again.
        assert_eq!(f.stats().verification_failures(), 0);
        assert_eq!(http.fetch_count(signer.cert_url()), 2);
    }
    assert!(receipts(&t).await.is_empty());
}

#[tokio::test]
async fn a_made_up_signing_certificate_is_a_401_and_is_not_fetched_again() {
    let t = TestStack::new().await;
    let signer = SnsTestSigner::new();
    let http = Arc::new(StaticSnsHttp::new()); // every URL answers 404
    let f = webhook_function(&t, ProviderId::Ses, Some(http.clone()), system());
    let forged_url = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-madeup.pem";
    let body = signer.sign(
        &SnsTestMessage::notification(TOPIC, "{}", time::OffsetDateTime::now_utc())
            .with_signing_cert_url(forged_url),
    );
    for _ in 0..3 {
        let r = f.handle(post(ProviderId::Ses, &body, &[])).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(json(&r)["error"]["code"], "unauthorized");
    }
    assert_eq!(f.stats().verification_failures(), 3);
    assert_eq!(http.fetch_count(forged_url), 1);
    assert!(receipts(&t).await.is_empty());
}

#[tokio::test]
async fn oversized_bodies_are_413_before_verification() {
    let t = TestStack::new().await;
    for provider in ProviderId::ALL {
        let config = webhook_config(&t, provider, None, &[("WEBHOOK_MAX_BODY_BYTES", "64")]);
        let f = WebhookFunction::new(config, t.clients.clone());
        let body = vec![b' '; 65];
        let r = f.handle(post(provider, &body, &[])).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE, "{provider}");
        assert_eq!(json(&r)["error"]["code"], "payload_too_large");
        assert_eq!(f.stats().verification_failures(), 0);
    }
    assert!(receipts(&t).await.is_empty());
}

#[tokio::test]
async fn a_webhook_function_without_its_secret_does_not_start() {
    let t = TestStack::new().await;
    for provider in ProviderId::ALL {
        let env = t.function_env(&format!("webhook-{provider}"));
        let secrets = mailgate_lambda::webhook::secret_variables(provider);
        let unset = move |k: &str| if secrets.contains(&k) { None } else { env(k) };
        let err = WebhookConfig::from_lookup(provider, unset).unwrap_err();
        assert!(
            err.problems.iter().any(|p| p.contains("never turns off")),
            "{provider}: {:?}",
            err.problems
        );
    }
    let env = t.function_env("webhook-sendgrid");
    let err = WebhookConfig::from_lookup(ProviderId::Sendgrid, move |k| {
        if k == "SENDGRID_WEBHOOK_PUBLIC_KEYS" {
            Some("not-a-key".to_owned())
        } else {
            env(k)
        }
    })
    .unwrap_err();
    assert!(err.problems[0].starts_with("SENDGRID_WEBHOOK_PUBLIC_KEYS"));
}

#[tokio::test]
async fn the_committed_postmark_and_smtp2go_fixtures_are_accepted_with_the_local_credentials() {
    let t = TestStack::new().await;
    for provider in [ProviderId::Postmark, ProviderId::Smtp2go] {
        let name = format!("webhook-{provider}");
        let f = mailgate_tests::webhooks::local_webhook_function(
            &t,
            provider,
            Arc::new(mailgate_core::SystemClock),
        );
        let request =
            lambda_http::request::from_str(&fixture(&format!("{name}/function-url-post.json")))
                .unwrap();
        let r = f.handle(request).await;
        assert_eq!(r.status(), StatusCode::OK, "{name}");
    }
    assert_eq!(drain_events(&t).await.len(), 2);
}

#[tokio::test]
async fn an_event_with_a_character_sqs_refuses_is_queued_escaped_and_normalised_intact() {
    use mailgate_core::UnixMillis;
    use mailgate_core::ports::{EventDecoder, QueuedEvents};
    use mailgate_fault_proxy::{FaultProxy, Op};
    use mailgate_lambda::events::ProviderEventDecoder;

    let t = TestStack::new().await;
    // SQS's character check on the real wire: the proxy refuses what SQS refuses, moto does not.
    let proxy = FaultProxy::start(&t.endpoint).await.unwrap();
    let clients = mailgate_aws::AwsClients::new(&mailgate_tests::sdk_config(&proxy.url()).await);
    let f = WebhookFunction::new(webhook_config(&t, ProviderId::Postmark, None, &[]), clients);
    // JSON allows a raw U+FFFF in a string; SQS does not. Postmark echoes what it was given.
    let reason = "HardBounce\u{FFFF}";
    let body = serde_json::to_vec(&serde_json::json!({
        "RecordType": "SubscriptionChange",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "ChangedAt": "2026-11-23T10:00:00Z",
        "Recipient": "alice@example.com",
        "SuppressSending": true,
        "SuppressionReason": reason,
        "Metadata": {"note": "subject \u{FFFF} line"},
    }))
    .unwrap();
    assert!(
        body.windows(3).any(|w| w == [0xEF, 0xBF, 0xBF]),
        "the delivery carries a raw U+FFFF"
    );

    let response = f
        .handle(post(
            ProviderId::Postmark,
            &body,
            &[basic_header(BASIC_PAIR)],
        ))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    assert_eq!(json(&response)["status"], "queued");
    let batch = proxy.op_stats(&Op::sqs("SendMessageBatch"));
    assert!(batch.calls >= 1, "the enqueue went through the proxy");
    assert_eq!(batch.rejected, 0, "SQS accepted every body");

    // The message as SQS holds it, normalised by the event processor's own decoder.
    let out = t
        .clients
        .sqs
        .receive_message()
        .queue_url(t.queue_url("EventsQueue"))
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let [message] = out.messages() else {
        panic!("one message, got {:?}", out.messages());
    };
    let queued = message.body().unwrap();
    assert!(
        !queued.contains('\u{FFFF}'),
        "escaped on the wire: {queued}"
    );
    let QueuedEvents::Events(events) = ProviderEventDecoder
        .decode(queued, UnixMillis(now() * 1000))
        .unwrap()
    else {
        panic!("inline events expected");
    };
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].detail.as_deref(),
        Some(reason),
        "the value is intact"
    );
    let raw: Value = serde_json::from_str(queued).unwrap();
    assert_eq!(raw["event"]["Metadata"]["note"], "subject \u{FFFF} line");
}
