#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

//! Inbound email storage against the emulator: raw MIME and attachments in the template's
//! inbound bucket (encrypted, with the retention lifecycle) through `S3InboundObjects`, links
//! that download without credentials, and records with their dedupe keys in the inbound table
//! through `DynamoDbInboundRecords`.

use std::time::Duration;

use mailgate_aws::{DynamoDbInboundRecords, S3InboundObjects};
use mailgate_core::inbound::{attachment_key, raw_key};
use mailgate_core::ports::{InboundDownloads, InboundObjects, InboundRecorded, InboundRecords};
use mailgate_core::{
    AuthVerdicts, InboundId, InboundMessage, InboundSource, InboundStatus, MalformedMime,
    MessageId, ProviderId, UnixMillis, parse_mime,
};
use mailgate_tests::TestStack;

const RETENTION_SECS: i64 = 30 * 86_400;

fn objects(t: &TestStack) -> S3InboundObjects {
    S3InboundObjects::new(S3InboundObjects::client(&t.sdk), t.bucket("InboundBucket"))
}

fn records(t: &TestStack) -> DynamoDbInboundRecords {
    DynamoDbInboundRecords::new(
        t.clients.dynamodb.clone(),
        t.table("InboundTable"),
        RETENTION_SECS,
    )
}

fn source(source_id: &str, message_id: Option<&str>) -> InboundSource {
    InboundSource {
        provider: ProviderId::Postmark,
        source_id: source_id.into(),
        recipient: "support@example.com".into(),
        message_id: message_id.map(str::to_owned),
        auth: AuthVerdicts {
            spf: Some("pass".into()),
            ..AuthVerdicts::default()
        },
    }
}

#[tokio::test]
async fn the_inbound_bucket_is_encrypted_and_expires_objects_after_the_retention() {
    let t = TestStack::new().await;
    let s3 = S3InboundObjects::client(&t.sdk);
    let bucket = t.bucket("InboundBucket");
    assert!(bucket.starts_with(&format!("mailgate-{}-inbound-", t.stack.environment)));
    let encryption = s3
        .get_bucket_encryption()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let rule = &encryption
        .server_side_encryption_configuration()
        .unwrap()
        .rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let days = lifecycle.rules()[0].expiration().unwrap().days();
    // The template default of InboundRetentionDays.
    assert_eq!(days, Some(30));
    // Every function is told the bucket, the table and the retention.
    let env = t.function_env("webhook-postmark");
    assert_eq!(env("INBOUND_BUCKET"), Some(bucket));
    assert_eq!(env("INBOUND_TABLE"), Some(t.table("InboundTable")));
    assert_eq!(env("INBOUND_RETENTION_DAYS").as_deref(), Some("30"));
}

#[tokio::test]
async fn raw_mime_round_trips_and_a_link_downloads_it_without_credentials() {
    let t = TestStack::new().await;
    let store = objects(&t);
    let id = InboundId::generate();
    let raw = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n";
    store
        .put(&raw_key(&id), "message/rfc822", raw)
        .await
        .unwrap();
    assert_eq!(
        store.get(&raw_key(&id)).await.unwrap().as_deref(),
        Some(&raw[..])
    );
    assert_eq!(store.get(&attachment_key(&id, 0)).await.unwrap(), None);

    let link = store
        .download_link(&raw_key(&id), Duration::from_secs(300))
        .await
        .unwrap();
    assert!(link.contains("X-Amz-Expires=300"), "{link}");
    assert!(link.contains("X-Amz-Signature="), "{link}");
    let response = reqwest::get(&link).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), &raw[..]);
}

#[tokio::test]
async fn a_record_is_written_once_per_source_id_or_message_id_and_recipient() {
    let t = TestStack::new().await;
    let store = records(&t);
    let first_source = source("pm-1", Some("<reply-1@example.org>"));
    let first = InboundMessage::received(
        InboundId::generate(),
        &first_source,
        UnixMillis(1_796_289_300_000),
        120,
    );
    let keys = first_source.dedupe_keys();
    assert_eq!(
        store.record(&first, &keys).await.unwrap(),
        InboundRecorded::New
    );

    // The provider redelivers: same source id.
    let again_source = source("pm-1", None);
    let again = InboundMessage::received(InboundId::generate(), &again_source, UnixMillis(1), 120);
    assert_eq!(
        store
            .record(&again, &again_source.dedupe_keys())
            .await
            .unwrap(),
        InboundRecorded::Duplicate(first.id.clone())
    );
    assert_eq!(store.get(&again.id).await.unwrap(), None);

    // The same message through another source: same Message-ID and recipient.
    let mut other_source = source("ses-77", Some("reply-1@example.org"));
    other_source.provider = ProviderId::Ses;
    let other = InboundMessage::received(InboundId::generate(), &other_source, UnixMillis(2), 120);
    assert_eq!(
        store
            .record(&other, &other_source.dedupe_keys())
            .await
            .unwrap(),
        InboundRecorded::Duplicate(first.id.clone())
    );

    // A different message is new.
    let new_source = source("pm-2", Some("<reply-2@example.org>"));
    let new = InboundMessage::received(InboundId::generate(), &new_source, UnixMillis(3), 50);
    assert_eq!(
        store.record(&new, &new_source.dedupe_keys()).await.unwrap(),
        InboundRecorded::New
    );

    let stored = store.get(&first.id).await.unwrap().unwrap();
    assert_eq!(stored, first);
    assert_eq!(stored.status, InboundStatus::Received);
    assert_eq!(stored.auth.spf.as_deref(), Some("pass"));
}

#[tokio::test]
async fn parsing_updates_the_record_and_a_malformed_one_is_kept_as_parse_failed() {
    let t = TestStack::new().await;
    let store = records(&t);
    let src = source("pm-3", None);
    let record = InboundMessage::received(InboundId::generate(), &src, UnixMillis(10), 90);
    store.record(&record, &src.dedupe_keys()).await.unwrap();
    let mail = parse_mime(
        b"From: a@example.org\r\nTo: support@example.com\r\nSubject: Re: order\r\nIn-Reply-To: <msg_0123456789abcdefghjkmnpqrs@example.com>\r\n\r\nthanks\r\n",
    )
    .unwrap();
    let thread = mail.our_message_ids().into_iter().next();
    assert_eq!(
        thread,
        Some(MessageId::parse("msg_0123456789abcdefghjkmnpqrs").unwrap())
    );
    let parsed = record.clone().parsed(&mail, thread.clone());
    store.update(&parsed).await.unwrap();
    let stored = store.get(&record.id).await.unwrap().unwrap();
    assert_eq!(stored.status, InboundStatus::Parsed);
    assert_eq!(stored.thread, thread);
    let summary = stored.summary.unwrap();
    assert_eq!(summary.subject.as_deref(), Some("Re: order"));
    assert_eq!(summary.text.as_deref().map(str::trim), Some("thanks"));

    let src = source("pm-4", None);
    let broken = InboundMessage::received(InboundId::generate(), &src, UnixMillis(11), 40);
    store.record(&broken, &src.dedupe_keys()).await.unwrap();
    store
        .update(&broken.clone().parse_failed(&MalformedMime::NotAMessage))
        .await
        .unwrap();
    let stored = store.get(&broken.id).await.unwrap().unwrap();
    assert_eq!(stored.status, InboundStatus::ParseFailed);
    assert_eq!(stored.parse_error.as_deref(), Some("not_a_message"));
    assert_eq!(stored.raw_key, raw_key(&broken.id));

    // An update never creates a record that was not received.
    let ghost = InboundMessage::received(
        InboundId::generate(),
        &source("pm-5", None),
        UnixMillis(1),
        1,
    );
    assert!(store.update(&ghost).await.is_err());
}
