//! Part of figure A of `make bench` (pure: no AWS): the CPU one typical webhook request costs
//! each of the other providers before any AWS call, through the same provider-neutral path the
//! webhook functions take (`WebhookProvider::verifier` built once as at cold start, then per
//! request `WebhookVerifier::verify` → the payload's events → `mailgate_core::queue_messages`):
//!
//! - `ses_sns_request_verify_split`: an SES delivery notification on SNS, signature version 2
//!   (RSA PKCS#1 v1.5 over SHA-256) with the signing certificate already cached (warm container);
//! - `mailgun_request_verify_split`: a Mailgun event, HMAC-SHA256 over `timestamp ‖ token`;
//! - `postmark_request_verify_split` and `smtp2go_request_verify_split`: the committed
//!   function-URL fixtures' bodies under HTTP Basic credentials.
//!
//! Each is printed as criterion's median in `ns_per_request`.

// Shared with the other webhook benches; the SendGrid batch is not used here.
#[allow(dead_code)]
mod support;

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use criterion::Criterion;
use lambda_http::http::{HeaderMap, HeaderName, HeaderValue};
use mailgate_aws::receipt_key;
use mailgate_core::{FixedClock, ProviderId, queue_messages};
use mailgate_providers::ses::sns::SnsHttp;
use mailgate_providers::ses::sns::testing::SnsTestMessage;
use mailgate_providers::webhook::{
    VerifierSettings, WebhookDelivery, WebhookVerifier, webhook_provider,
};
use mailgate_tests::fixture;
use mailgate_tests::webhooks::{
    BASIC_PAIR, MAILGUN_KEY, TOPIC, basic_header, mailgun_body, sns_signer,
};
use support::{figure, median_ns};

/// When every request was signed (and where the verifiers' clock stands).
const SIGNED_AT: i64 = 1_795_442_400;

/// A typical SES event publishing record (a delivery), as SNS carries it in `Message`.
const SES_DELIVERY: &str = r#"{"eventType":"Delivery","mail":{"timestamp":"2026-11-23T14:00:00.000Z","source":"noreply@example.org","sourceArn":"arn:aws:ses:us-east-1:123456789012:identity/example.org","sendingAccountId":"123456789012","messageId":"0100018bd1a2b3c4-11111111-2222-3333-4444-555555555555-000000","destination":["recipient@example.com"],"headersTruncated":false,"tags":{"ses:configuration-set":["mailgate"],"mailgate_message_id":["msg_00000000000000000000000000"]}},"delivery":{"timestamp":"2026-11-23T14:00:02.000Z","processingTimeMillis":2000,"recipients":["recipient@example.com"],"smtpResponse":"250 2.0.0 OK","reportingMTA":"a8-50.smtp-out.amazonses.com"}}"#;

/// One provider's typical request, ready to verify.
struct Request {
    name: &'static str,
    provider: ProviderId,
    verifier: Arc<dyn WebhookVerifier>,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn main() -> anyhow::Result<()> {
    let started = SystemTime::now();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let criterion_dir = tmp
        .parent()
        .context("CARGO_TARGET_TMPDIR has a parent (the target directory)")?
        .join("criterion");
    let clock = FixedClock::at_unix(SIGNED_AT);
    let at = time::OffsetDateTime::from_unix_timestamp(SIGNED_AT)?;

    // SES: the SES event of the committed fixture, published on SNS and signed (version 2).
    let (signer, sns_http) = sns_signer();
    let ses_event = SES_DELIVERY;
    let ses_body = signer.sign(
        &SnsTestMessage::notification(TOPIC, ses_event, at)
            .with_message_id("bench-0001")
            .with_signature_version("2"),
    );

    let basic = basic_header(BASIC_PAIR);
    let fixture_body = |name: &str| -> anyhow::Result<Vec<u8>> {
        let event: serde_json::Value =
            serde_json::from_str(&fixture(&format!("{name}/function-url-post.json")))?;
        Ok(event["body"]
            .as_str()
            .context("the fixture has a text body")?
            .as_bytes()
            .to_vec())
    };
    let json = ("content-type".to_owned(), "application/json".to_owned());
    let cases = [
        (
            "ses_sns_request_verify_split",
            ProviderId::Ses,
            vec![(
                "content-type".to_owned(),
                "text/plain; charset=UTF-8".to_owned(),
            )],
            ses_body,
        ),
        (
            "mailgun_request_verify_split",
            ProviderId::Mailgun,
            vec![json.clone()],
            mailgun_body(
                MAILGUN_KEY,
                SIGNED_AT,
                "9b3c1f0e5d7a4c2b8e6f0a1d3c5b7e9f2a4c6e8b0d1f3a5c7e",
                "bench-event-0001",
            ),
        ),
        (
            "postmark_request_verify_split",
            ProviderId::Postmark,
            vec![json.clone(), basic.clone()],
            fixture_body("webhook-postmark")?,
        ),
        (
            "smtp2go_request_verify_split",
            ProviderId::Smtp2go,
            vec![json, basic],
            fixture_body("webhook-smtp2go")?,
        ),
    ];

    // Verifiers are built once, as at cold start, from the test configuration's secrets.
    let lookup = |name: &str| -> Option<String> {
        match name {
            "MAILGUN_WEBHOOK_SIGNING_KEYS" => Some(MAILGUN_KEY.to_owned()),
            "POSTMARK_WEBHOOK_CREDENTIALS" | "SMTP2GO_WEBHOOK_CREDENTIALS" => {
                Some(BASIC_PAIR.to_owned())
            }
            "SNS_ALLOWED_TOPIC_ARNS" => Some(TOPIC.to_owned()),
            _ => None,
        }
    };
    let mut requests = Vec::new();
    for (name, provider, headers, body) in cases {
        let hooks = webhook_provider(provider);
        let http: Arc<dyn SnsHttp> = sns_http.clone();
        let verifier = hooks
            .verifier(VerifierSettings {
                tolerance_secs: hooks.default_tolerance_secs(),
                lookup: &lookup,
                sns_http: Box::new(move || Ok(http)),
            })
            .map_err(|problems| anyhow::anyhow!("{provider} verifier: {problems:?}"))?;
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                HeaderName::from_bytes(k.as_bytes())?,
                HeaderValue::from_str(&v)?,
            );
        }
        requests.push(Request {
            name,
            provider,
            verifier,
            headers: map,
            body,
        });
    }

    // What is measured must be what a request does: each verifies and yields events; the first
    // verification also warms the SNS certificate cache.
    for r in &requests {
        let messages = handle(r, &clock)?;
        if messages.is_empty() {
            bail!("{}: the typical request yielded no queue message", r.name);
        }
    }
    if sns_http.fetch_count(signer.cert_url()) != 1 {
        bail!("the SNS certificate was not fetched exactly once");
    }

    let mut c = Criterion::default()
        .output_directory(&criterion_dir)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    for r in &requests {
        c.bench_function(r.name, |b| b.iter(|| handle(black_box(r), &clock).ok()));
    }
    c.final_summary();
    if sns_http.fetch_count(signer.cert_url()) != 1 {
        bail!("the SNS certificate was fetched again: the cache was not warm");
    }

    for r in &requests {
        let ns = median_ns(&criterion_dir, r.name, started)?;
        figure(r.name, format!("{ns:.0}"), "ns_per_request");
    }
    Ok(())
}

/// One request's CPU work: verify, read the payload, build the queue messages.
fn handle(r: &Request, clock: &FixedClock) -> anyhow::Result<Vec<String>> {
    let delivery = WebhookDelivery {
        headers: &r.headers,
        body: &r.body,
        source: Some([198, 51, 100, 7].into()),
    };
    let verified = futures::executor::block_on(r.verifier.verify(delivery, clock))
        .map_err(|e| anyhow::anyhow!("{}: not verified: {e:?}", r.name))?;
    let payload = verified.intake.payload;
    let events = payload
        .events
        .map_err(|e| anyhow::anyhow!("{}: events: {e}", r.name))?;
    let receipt = receipt_key(r.provider, &payload.dedupe_key);
    Ok(queue_messages(
        r.provider,
        &receipt,
        SIGNED_AT * 1_000,
        &events,
    ))
}
