//! Every provider sample in `../shared/design/providers/samples/` normalised the way the event
//! processor sees it: wrapped into the form the webhook function queues (SES inside an SNS
//! envelope, Mailgun inside its webhook body, SendGrid batches split), split by
//! `webhook::events_of`, then normalised, and held to a table of expected kinds, recipients,
//! provider message ids and bounce evidence. Needs no AWS.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use mailgate_core::{DeliveryEvent, EnhancedStatus, EventKind, ProviderId, UnixMillis};
use mailgate_providers::events::{EventOrigin, NormaliseError, normalise, normalise_eventbridge};
use mailgate_providers::webhook::events_of;
use serde_json::{Value, json};

/// The samples, beside this repository (`../shared`), as `bounce_corpus` finds `../shared/data`.
const SAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/design/providers/samples"
);

/// What one normalised event must be.
struct Expect {
    file: &'static str,
    kind: EventKind,
    provider_type: &'static str,
    recipient: Option<&'static str>,
    provider_message_id: Option<&'static str>,
    status: Option<&'static str>,
    diagnostic: Option<&'static str>,
    url: Option<&'static str>,
    detail: Option<&'static str>,
    provider_suppressed: bool,
}

fn e(
    file: &'static str,
    kind: EventKind,
    provider_type: &'static str,
    recipient: Option<&'static str>,
    provider_message_id: Option<&'static str>,
) -> Expect {
    Expect {
        file,
        kind,
        provider_type,
        recipient,
        provider_message_id,
        status: None,
        diagnostic: None,
        url: None,
        detail: None,
        provider_suppressed: false,
    }
}

impl Expect {
    fn bounce(mut self, status: Option<&'static str>, diagnostic: &'static str) -> Self {
        self.status = status;
        self.diagnostic = Some(diagnostic);
        self
    }
    fn status(mut self, status: &'static str) -> Self {
        self.status = Some(status);
        self
    }
    fn url(mut self, url: &'static str) -> Self {
        self.url = Some(url);
        self
    }
    fn detail(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail);
        self
    }
    fn suppressed(mut self) -> Self {
        self.provider_suppressed = true;
        self
    }
}

const MG_ACCEPTED: &str = "20180622182958.1.48906CB188F1A454@exmple.org";
const PM_ID: &str = "883953f4-6105-42a2-a16a-77a8eac79483";
const PM_ZERO: &str = "00000000-0000-0000-0000-000000000000";
const SG_PREFIX: &str = "14c5d75ce93";
const SG_TEST: &str = "example@test.com";
const SES_EX: &str = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000";

/// Every event every sample gives, in order (a file with several events lists them in order).
fn expectations() -> Vec<Expect> {
    use EventKind::*;
    let sg = |file, kind, name| e(file, kind, name, Some(SG_TEST), Some(SG_PREFIX));
    let batch = |kind, name| {
        e(
            "sendgrid_batch_all_events.json",
            kind,
            name,
            Some(SG_TEST),
            // The doc's placeholder id has no filter suffix.
            Some("sg_message_id"),
        )
    };
    let ses = |file, kind, name, rcpt| e(file, kind, name, Some(rcpt), Some(SES_EX));
    vec![
        // Mailgun (event-data objects).
        e("mailgun_event_accepted.json", Sent, "accepted", Some("team@example.org"), Some(MG_ACCEPTED)),
        e("mailgun_event_accepted_routed.json", Sent, "accepted", Some("john@example.com"), Some(MG_ACCEPTED)),
        e("mailgun_event_clicked.json", Clicked, "clicked", Some("recipient@example.com"), Some("20130821085807.30688.67706@samples.mailgun.org"))
            .url("http://example.com/signup"),
        e("mailgun_event_complained.json", Complained, "complained", Some("foo@example.com"), Some("20130718032413.263EE2E0926@example.com")),
        e("mailgun_event_delivered.json", Delivered, "delivered", Some("john@example.com"), Some(MG_ACCEPTED)),
        // `suppress-bounce` with Mailgun's own code 605: never attempted.
        e("mailgun_event_failed_permanent.json", Dropped, "failed", Some("slava@mailgun.com"), Some("20180622211249.1.2A6098970A380E12@example.org"))
            .bounce(None, "Not delivering to previously bounced address")
            .detail("Not delivering to previously bounced address")
            .suppressed(),
        e("mailgun_event_failed_permanent_delayed_bounce.json", Bounced, "failed", Some("christest123@test.com"), Some("20221019211537.93011d31ea99c5a8@test.com"))
            .bounce(Some("5.1.1"), "smtp; 550-5.1.1 The email account that you tried to reach does not exist.")
            .detail("generic"),
        e("mailgun_event_failed_temporary.json", Deferred, "failed", Some("test@test.com"), Some("20221006142837.1618e01bf42da9fa@test.com"))
            .bounce(Some("4.7.652"), "4.7.652 The mail server [xxx.xxx.xxx.xxx] has exceeded the maximum number of connections.")
            .detail("generic"),
        e("mailgun_event_list_member_upload_error.json", AccountNotice, "list_member_upload_error", None, None)
            .detail("Invalid format"),
        e("mailgun_event_list_member_uploaded.json", AccountNotice, "list_member_uploaded", None, None),
        e("mailgun_event_list_uploaded.json", AccountNotice, "list_uploaded", None, None),
        e("mailgun_event_opened.json", Opened, "opened", Some("recipient@example.com"), Some("20130821005614.19826.35976@samples.mailgun.org")),
        // A rejected message names no recipient.
        e("mailgun_event_rejected.json", Dropped, "rejected", None, Some("20180622220256.1.B31A451A2E5422BB@sandbox55887fac92de874df5ae0023b75fd62f1d.mailgun.org"))
            .detail("Sandbox subdomains are for test purposes only. Please add your own domain or add the address to authorized recipients in Account Settings."),
        e("mailgun_event_stored.json", AccountNotice, "stored", None, Some(MG_ACCEPTED)),
        e("mailgun_event_unsubscribed.json", Unsubscribed, "unsubscribed", Some("recipient@example.com"), Some("20130822232216.13966.79700@samples.mailgun.org")),
        // Postmark.
        e("postmark_bounce.json", Bounced, "HardBounce", Some("john@example.com"), Some(PM_ID))
            .bounce(None, "Test bounce details"),
        e("postmark_click.json", Clicked, "Click", Some("john@example.com"), Some(PM_ZERO)).url("https://example.com"),
        e("postmark_delivery.json", Delivered, "Delivery", Some("john@example.com"), Some(PM_ID)),
        e("postmark_open.json", Opened, "Open", Some("john@example.com"), Some(PM_ID)),
        e("postmark_spam_complaint.json", Complained, "SpamComplaint", Some("john@example.com"), Some(PM_ZERO)),
        e("postmark_subscription_change.json", Unsubscribed, "SubscriptionChange", Some("bounced-address@wildbit.com"), Some(PM_ID))
            .detail("HardBounce"),
        // SendGrid.
        e("sendgrid_account_status_change.json", AccountNotice, "account_status_change", None, None)
            .detail("compliance_suspend"),
        batch(Sent, "processed"),
        batch(Deferred, "deferred").bounce(None, "400 try again later"),
        batch(Delivered, "delivered"),
        batch(Opened, "open"),
        batch(Clicked, "click").url("http://www.sendgrid.com/"),
        batch(Bounced, "bounce").bounce(Some("5.0.0"), "500 unknown recipient"),
        batch(Dropped, "dropped").status("5.0.0")
            .detail("Bounced Address").suppressed(),
        batch(Complained, "spamreport"),
        batch(Unsubscribed, "unsubscribe"),
        batch(Unsubscribed, "group_unsubscribe"),
        batch(Resubscribed, "group_resubscribe"),
        e("sendgrid_batch_all_events.json", AccountNotice, "account_status_change", None, None)
            .detail("compliance_suspend"),
        sg("sendgrid_blocked.json", Bounced, "bounce").bounce(Some("5.0.0"), "500 unknown recipient"),
        sg("sendgrid_bounce.json", Bounced, "bounce").bounce(Some("5.0.0"), "500 unknown recipient"),
        sg("sendgrid_click.json", Clicked, "click").url("http://www.sendgrid.com/"),
        e("sendgrid_click_with_url_offset.json", Clicked, "click", Some("email@example.com"), Some("sendgrid_internal_message_id"))
            .url("http://yourdomain.com/blog/news.html"),
        // The doc's sg_message_id here starts with a space.
        e("sendgrid_deferred.json", Deferred, "deferred", Some("example@example.com"), Some(SG_PREFIX))
            .bounce(None, "400 try again later"),
        sg("sendgrid_delivered.json", Delivered, "delivered"),
        sg("sendgrid_dropped.json", Dropped, "dropped").status("5.0.0")
            .detail("Bounced Address").suppressed(),
        sg("sendgrid_group_resubscribe.json", Resubscribed, "group_resubscribe"),
        sg("sendgrid_group_unsubscribe.json", Unsubscribed, "group_unsubscribe"),
        sg("sendgrid_open.json", Opened, "open"),
        sg("sendgrid_processed.json", Sent, "processed"),
        e("sendgrid_singlesend_open_ms_timestamp.json", Opened, "open", Some("email@example.com"), Some("sendgrid_internal_message_id")),
        sg("sendgrid_spamreport.json", Complained, "spamreport"),
        sg("sendgrid_unsubscribe.json", Unsubscribed, "unsubscribe"),
        // SES event publishing.
        ses("ses_eventpub_00_Bounce_record.json", Bounced, "Bounce", "recipient@example.com")
            .bounce(Some("5.1.1"), "smtp; 550 5.1.1 user unknown"),
        ses("ses_eventpub_01_Complaint_record.json", Complained, "Complaint", "recipient@example.com").detail("abuse"),
        ses("ses_eventpub_02_Delivery_record.json", Delivered, "Delivery", "recipient@example.com"),
        ses("ses_eventpub_03_Send_record.json", Sent, "Send", "recipient@example.com"),
        ses("ses_eventpub_04_Reject_record.json", Dropped, "Reject", "sender@example.com").detail("Bad content"),
        ses("ses_eventpub_05_Open_record.json", Opened, "Open", "recipient@example.com"),
        ses("ses_eventpub_06_Click_record.json", Clicked, "Click", "recipient@example.com")
            .url("http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html"),
        ses("ses_eventpub_07_Rendering_Failure_record.json", RenderingFailed, "Rendering Failure", "recipient@example.com")
            .detail("Attribute 'attributeName' is not present in the rendering data."),
        ses("ses_eventpub_08_DeliveryDelay_record.json", Deferred, "DeliveryDelay", "recipient@example.com")
            .bounce(Some("4.4.1"), "smtp; 421 4.4.1 Unable to connect to remote host")
            .detail("TransientCommunicationFailure"),
        e("ses_eventpub_09_Subscription_record.json", Unsubscribed, "Subscription", Some("recipient@example.com"), Some("EXAMPLEe4bccb684-777bc8de-afa7-4970-92b0-f515137b1497-000000"))
            .detail("ContactListName"),
        // SES identity notifications: one event per bounced/complained/delivered recipient.
        e("ses_notif_00_Bounce_notification_with_a_DSN.json", Bounced, "Bounce", Some("jane@example.com"), Some("00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000"))
            .bounce(Some("5.1.1"), "smtp; 550 5.1.1 <jane@example.com>... User"),
        e("ses_notif_01_Bounce_notification_without_a_DSN.json", Bounced, "Bounce", Some("jane@example.com"), Some("00000137860315fd-34208509-5b74-41f3-95c5-22c1edc3c924-000000")),
        e("ses_notif_01_Bounce_notification_without_a_DSN.json", Bounced, "Bounce", Some("richard@example.com"), Some("00000137860315fd-34208509-5b74-41f3-95c5-22c1edc3c924-000000")),
        e("ses_notif_02_Complaint_notification_with_a_feedback_report.json", Complained, "Complaint", Some("richard@example.com"), Some("000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000"))
            .detail("abuse"),
        e("ses_notif_03_Complaint_notification_without_a_feedback_report.json", Complained, "Complaint", Some("richard@example.com"), Some("0000013786031775-163e3910-53eb-4c8e-a04a-f29debf88a84-000000")),
        e("ses_notif_04_Amazon_SNS_delivery_notification_example.json", Delivered, "Delivery", Some("jane@example.com"), Some("0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000")),
    ]
}

/// The provider a sample belongs to, or `None` for `resend_*`: Resend is not a mailgate
/// provider, so its samples are documentation only.
fn provider_of(file: &str) -> Option<ProviderId> {
    let prefix = file.split('_').next()?;
    match prefix {
        "resend" => None,
        other => Some(
            other
                .parse()
                .unwrap_or_else(|_| panic!("{file}: unknown provider")),
        ),
    }
}

fn sns_envelope(message: &str, message_id: &str) -> String {
    json!({
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:mailgate-ses-events",
        "Message": message,
        "Timestamp": "2024-01-01T00:00:00.000Z",
        "SignatureVersion": "2",
        "Signature": "unused",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/unused.pem",
    })
    .to_string()
}

/// The sample as the webhook function would have received it, split into queued events.
fn queued(provider: ProviderId, file: &str, text: &str) -> Vec<String> {
    let body = match provider {
        ProviderId::Ses => sns_envelope(text, &format!("sns-{file}")),
        ProviderId::Mailgun => {
            let event: Value = serde_json::from_str(text).unwrap();
            json!({
                "signature": {"timestamp": "1529006854", "token": "t", "signature": "s"},
                "event-data": event,
            })
            .to_string()
        }
        _ => text.to_owned(),
    };
    events_of(provider, body.as_bytes(), Some("application/json"))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn origin(receipt: &str, index: usize) -> EventOrigin<'_> {
    EventOrigin {
        receipt,
        index,
        received_at: UnixMillis(1_700_000_000_000),
    }
}

/// Every sample file's normalised events, by file name.
fn normalised_samples() -> BTreeMap<String, Vec<DeliveryEvent>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(SAMPLES).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(provider) = provider_of(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let receipt = format!("{provider}#{file}");
        let events = queued(provider, &file, &text)
            .iter()
            .enumerate()
            .flat_map(|(i, event)| {
                normalise(provider, event, &origin(&receipt, i))
                    .unwrap_or_else(|e| panic!("{file} event {i}: {e}"))
            })
            .collect();
        out.insert(file, events);
    }
    out
}

#[test]
fn every_sample_normalises_to_its_expected_events() {
    let samples = normalised_samples();
    let expected = expectations();
    let mut by_file: BTreeMap<&str, Vec<&Expect>> = BTreeMap::new();
    for x in &expected {
        by_file.entry(x.file).or_default().push(x);
    }
    // Every sample has expectations and every expectation has a sample.
    assert_eq!(
        samples.keys().map(String::as_str).collect::<Vec<_>>(),
        by_file.keys().copied().collect::<Vec<_>>()
    );
    for (file, events) in &samples {
        let wanted = &by_file[file.as_str()];
        assert_eq!(events.len(), wanted.len(), "{file}: number of events");
        for (got, want) in events.iter().zip(wanted) {
            let at = format!("{file} ({})", want.provider_type);
            assert_eq!(got.kind, want.kind, "{at}: kind");
            assert_eq!(got.provider_type, want.provider_type, "{at}: provider type");
            assert_eq!(
                got.recipient.as_ref().map(|r| r.as_str()),
                want.recipient,
                "{at}: recipient"
            );
            assert_eq!(
                got.provider_message_id.as_deref(),
                want.provider_message_id,
                "{at}: provider message id"
            );
            let bounce = got.bounce.as_ref();
            assert_eq!(
                bounce.and_then(|b| b.status),
                want.status.map(|s| EnhancedStatus::parse(s).unwrap()),
                "{at}: status"
            );
            assert_eq!(
                bounce.and_then(|b| b.diagnostic.as_deref()),
                want.diagnostic,
                "{at}: diagnostic"
            );
            assert_eq!(got.url.as_deref(), want.url, "{at}: url");
            if want.detail.is_some() {
                assert_eq!(got.detail.as_deref(), want.detail, "{at}: detail");
            }
            assert_eq!(
                got.provider_suppressed, want.provider_suppressed,
                "{at}: provider_suppressed"
            );
            // Keys never carry an address, and every sample states when it happened.
            assert!(!got.key.contains('@'), "{at}: key {}", got.key);
            assert!(got.occurred_at.is_some(), "{at}: occurred_at");
            assert_eq!(got.source.receipt, format!("{}#{file}", got.provider));
            // No sample carries our id.
            assert_eq!(got.message_id, None, "{at}: message id");
        }
    }
}

#[test]
fn sample_times_are_read_in_each_providers_unit() {
    let samples = normalised_samples();
    let at = |file: &str| samples[file][0].occurred_at.unwrap().as_i64();
    // SendGrid seconds, and the Single Send milliseconds.
    assert_eq!(at("sendgrid_bounce.json"), 1_513_299_569_000);
    assert_eq!(
        at("sendgrid_singlesend_open_ms_timestamp.json"),
        1_591_726_752_372
    );
    // Mailgun fractional seconds.
    assert_eq!(at("mailgun_event_delivered.json"), 1_529_692_199_626);
    // Postmark's seven fractional digits, SES's per-type timestamp.
    assert_eq!(at("postmark_delivery.json"), 1_572_971_634_907);
    assert_eq!(
        at("ses_eventpub_08_DeliveryDelay_record.json"),
        1_592_267_140_095
    );
}

#[test]
fn bounce_evidence_reaches_the_classifier() {
    use mailgate_core::{BounceCause, BounceKind, EventEffect, SuppressionReason};
    let samples = normalised_samples();
    let ses = &samples["ses_eventpub_00_Bounce_record.json"][0];
    assert_eq!(
        ses.effect(),
        EventEffect::Suppress(SuppressionReason::HardBounce)
    );
    let delay = &samples["ses_eventpub_08_DeliveryDelay_record.json"][0];
    let report = delay.bounce.as_ref().unwrap();
    assert_eq!(report.reply_code, Some(421));
    assert_eq!(report.provider_kind, Some(BounceKind::Soft));
    assert_eq!(report.provider_cause, Some(BounceCause::Network));
    let sg = &samples["sendgrid_blocked.json"][0];
    assert_eq!(
        sg.bounce.as_ref().unwrap().provider_type.as_deref(),
        Some("blocked")
    );
    assert_eq!(
        sg.bounce.as_ref().unwrap().provider_kind,
        Some(BounceKind::Soft)
    );
}

#[test]
fn a_two_recipient_ses_notification_gives_two_events_keyed_apart_and_stably() {
    let file = "ses_notif_01_Bounce_notification_without_a_DSN.json";
    let text = std::fs::read_to_string(format!("{SAMPLES}/{file}")).unwrap();
    let run = |message_id: &str| {
        let envelope = sns_envelope(&text, message_id);
        normalise(ProviderId::Ses, &envelope, &origin("ses#r", 0)).unwrap()
    };
    let first = run("b5a8e7e8-0000-4000-8000-000000000001");
    assert_eq!(first.len(), 2);
    assert_ne!(first[0].key, first[1].key);
    assert_eq!(
        (
            first[0].source.recipient_index,
            first[1].source.recipient_index
        ),
        (0, 1)
    );
    // An SNS retry (same MessageId) keys the same; another notification keys apart.
    let retry = run("b5a8e7e8-0000-4000-8000-000000000001");
    assert_eq!(
        first.iter().map(|e| &e.key).collect::<Vec<_>>(),
        retry.iter().map(|e| &e.key).collect::<Vec<_>>()
    );
    let other = run("b5a8e7e8-0000-4000-8000-000000000002");
    assert_ne!(first[0].key, other[0].key);
}

#[test]
fn ses_records_also_arrive_through_eventbridge() {
    let text =
        std::fs::read_to_string(format!("{SAMPLES}/ses_eventpub_00_Bounce_record.json")).unwrap();
    let detail: Value = serde_json::from_str(&text).unwrap();
    let envelope = json!({
        "version": "0", "id": "c3d4e5f6-a7b8-9012-cdef-123456789012",
        "detail-type": "Email Bounced", "source": "aws.ses", "account": "123456789012",
        "time": "2025-01-15T10:30:02Z", "region": "us-east-1", "resources": [],
        "detail": detail,
    })
    .to_string();
    let events = normalise_eventbridge(&envelope, UnixMillis(5)).unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.kind, EventKind::Bounced);
    assert_eq!(e.provider, ProviderId::Ses);
    assert_eq!(
        e.source.receipt,
        "eventbridge#c3d4e5f6-a7b8-9012-cdef-123456789012"
    );
    assert_eq!(e.provider_message_id.as_deref(), Some(SES_EX));
    assert_eq!(
        e.bounce.as_ref().unwrap().diagnostic.as_deref(),
        Some("smtp; 550 5.1.1 user unknown")
    );
    assert_eq!(
        normalise_eventbridge(&envelope, UnixMillis(6)).unwrap()[0].key,
        e.key
    );
}

#[test]
fn an_unknown_event_type_is_kept_with_its_raw_name_for_every_provider() {
    let cases = [
        (
            ProviderId::Ses,
            sns_envelope(
                r#"{"eventType":"Teleported","mail":{"messageId":"m","destination":["a@example.com"]}}"#,
                "u1",
            ),
            "Teleported",
        ),
        (
            ProviderId::Sendgrid,
            r#"{"event":"teleported","email":"a@example.com","sg_event_id":"u2"}"#.to_owned(),
            "teleported",
        ),
        (
            ProviderId::Mailgun,
            r#"{"event":"teleported","id":"u3","recipient":"a@example.com"}"#.to_owned(),
            "teleported",
        ),
        (
            ProviderId::Postmark,
            r#"{"RecordType":"Teleported","MessageID":"m","Recipient":"a@example.com"}"#.to_owned(),
            "Teleported",
        ),
        (
            ProviderId::Smtp2go,
            r#"{"event":"teleported","email_id":"m","rcpt":"a@example.com"}"#.to_owned(),
            "teleported",
        ),
    ];
    for (provider, event, name) in cases {
        let events = normalise(provider, &event, &origin("r", 0)).unwrap();
        assert_eq!(events.len(), 1, "{provider}");
        assert_eq!(events[0].kind, EventKind::Unknown, "{provider}");
        assert_eq!(events[0].provider_type, name, "{provider}");
        assert_eq!(
            events[0].recipient.as_ref().map(|r| r.as_str()),
            Some("a@example.com"),
            "{provider}"
        );
    }
}

#[test]
fn malformed_events_are_errors_not_panics() {
    for provider in ProviderId::ALL {
        for junk in ["", "{", "not json", "[1,2]", "42", "null", r#"{"x":1}"#] {
            let result = normalise(provider, junk, &origin("r", 0));
            assert!(
                matches!(
                    result,
                    Err(NormaliseError::NotJson { .. } | NormaliseError::Shape { .. })
                ),
                "{provider} {junk:?}: {result:?}"
            );
        }
    }
    assert!(normalise_eventbridge("{", UnixMillis(0)).is_err());
}

#[test]
fn provider_message_ids_take_the_send_apis_form() {
    // SendGrid: the X-Message-Id is sg_message_id up to its first dot.
    let sg = r#"{"event":"delivered","email":"a@example.com","sg_event_id":"k","sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0"}"#;
    assert_eq!(
        normalise(ProviderId::Sendgrid, sg, &origin("r", 0)).unwrap()[0]
            .provider_message_id
            .as_deref(),
        Some("LRzXl_NHStOGhQ4kofSm_A")
    );
    // Mailgun: the send API's `<id>` form loses its angle brackets.
    let mg = r#"{"event":"delivered","id":"k","recipient":"a@example.com","message":{"headers":{"message-id":"<20180622182958.1.48906CB188F1A454@exmple.org>"}}}"#;
    assert_eq!(
        normalise(ProviderId::Mailgun, mg, &origin("r", 0)).unwrap()[0]
            .provider_message_id
            .as_deref(),
        Some(MG_ACCEPTED)
    );
}

#[test]
fn smtp2go_json_and_form_posts_normalise_alike() {
    // SMTP2GO publishes no sample; this is PROVIDERS.md §5.2's illustrative shape.
    let json_body = r#"{"event":"bounce","time":"2024-01-01T00:00:05Z","sendtime":"2024-01-01T00:00:00Z","email_id":"1er8bV-6Tw0Mi-7h","rcpt":"user@example.com","sender":"noreply@example.org","bounce":"hard","host":"mx.example.com [192.0.2.1]","message":"550 5.1.1 user unknown","message-id":"<abc@example.org>","subject":"Hello"}"#;
    let form_body = "event=bounce&time=2024-01-01T00%3A00%3A05Z&sendtime=2024-01-01T00%3A00%3A00Z&email_id=1er8bV-6Tw0Mi-7h&rcpt=user%40example.com&sender=noreply%40example.org&bounce=hard&host=mx.example.com+%5B192.0.2.1%5D&message=550+5.1.1+user+unknown&message-id=%3Cabc%40example.org%3E&subject=Hello";
    let run = |body: &str, content_type: &str| {
        let queued = events_of(ProviderId::Smtp2go, body.as_bytes(), Some(content_type)).unwrap();
        assert_eq!(queued.len(), 1);
        normalise(ProviderId::Smtp2go, &queued[0], &origin("r", 0)).unwrap()
    };
    let from_json = run(json_body, "application/json");
    let from_form = run(form_body, "application/x-www-form-urlencoded");
    assert_eq!(from_json, from_form);
    let e = &from_json[0];
    assert_eq!(e.kind, EventKind::Bounced);
    assert_eq!(e.provider_message_id.as_deref(), Some("1er8bV-6Tw0Mi-7h"));
    assert_eq!(e.recipient.as_ref().unwrap().as_str(), "user@example.com");
    let report = e.bounce.as_ref().unwrap();
    assert_eq!(report.status, EnhancedStatus::parse("5.1.1").ok());
    assert_eq!(report.diagnostic.as_deref(), Some("550 5.1.1 user unknown"));
}
