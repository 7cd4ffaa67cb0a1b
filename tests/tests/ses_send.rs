#![allow(clippy::unwrap_used)]
//! The SES sender against SES-in-moto: simple and raw sends land in the emulator's mailbox, and a
//! sender identity that was never verified is a permanent failure.

use mailgate_core::{
    Attachment, EmailAddress, ErrorCategory, Mailbox, MessageId, OutboundEmail, OutcomeClass,
};
use mailgate_providers::send::EmailProvider;
use mailgate_providers::ses::send::{SesConfig, SesSender};
use mailgate_tests::TestStack;
use serde_json::Value;

fn addr(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

fn email(from: &str) -> OutboundEmail {
    let mut e = OutboundEmail::new(
        MessageId::generate(),
        Mailbox::named(addr(from), "Example"),
        addr("jane@example.org"),
        "Your receipt",
    );
    e.text = Some("Thanks for your order.".into());
    e.html = Some("<p>Thanks for your order.</p>".into());
    e
}

/// The `ses` part of moto's state, as text.
async fn moto_ses(endpoint: &str) -> Value {
    let data: Value = reqwest::get(format!("{endpoint}/moto-api/data.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    data["ses"].clone()
}

/// The stored entries of `kind` (`Message` or `RawMessage`) whose text mentions `needle`.
fn stored<'a>(ses: &'a Value, kind: &str, needle: &str) -> Vec<&'a Value> {
    let mut found = Vec::new();
    let mut stack = vec![ses];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(entries) = map.get(kind) {
                    let items: Vec<&Value> = match entries {
                        Value::Object(m) => m.values().collect(),
                        Value::Array(a) => a.iter().collect(),
                        _ => Vec::new(),
                    };
                    found.extend(items.into_iter().filter(|i| i.to_string().contains(needle)));
                }
                stack.extend(map.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    found
}

#[tokio::test]
async fn a_simple_send_lands_in_moto() {
    let stack = TestStack::new().await;
    let sender = SesSender::new(aws_sdk_sesv2::Client::new(&stack.sdk), SesConfig::default());
    let e = email("receipts@example.com");
    let accepted = sender.send(&e).await.unwrap();
    assert!(!accepted.provider_message_id.is_empty());

    let ses = moto_ses(&stack.endpoint).await;
    let found = stored(&ses, "Message", "Your receipt");
    let ours = found
        .iter()
        .find(|m| m.to_string().contains(&accepted.provider_message_id))
        .unwrap_or_else(|| panic!("message {} not in {ses:#}", accepted.provider_message_id));
    let text = ours.to_string();
    assert!(text.contains("jane@example.org"), "{text}");
    assert!(text.contains("Thanks for your order."), "{text}");
}

#[tokio::test]
async fn a_raw_send_with_an_attachment_lands_in_moto() {
    let stack = TestStack::new().await;
    let sender = SesSender::new(aws_sdk_sesv2::Client::new(&stack.sdk), SesConfig::default());
    let mut e = email("receipts@example.com");
    e.headers.push(("X-Campaign".into(), "spring".into()));
    e.attachments.push(Attachment {
        filename: "receipt.txt".into(),
        content_type: "text/plain".into(),
        content: b"order 42: paid".to_vec(),
    });
    let accepted = sender.send(&e).await.unwrap();

    let ses = moto_ses(&stack.endpoint).await;
    let found = stored(&ses, "RawMessage", e.message_id.as_str());
    let ours = found
        .iter()
        .find(|m| m.to_string().contains(&accepted.provider_message_id))
        .unwrap_or_else(|| {
            panic!(
                "raw message {} not in {ses:#}",
                accepted.provider_message_id
            )
        });
    let text = ours.to_string();
    for needle in [
        "X-Mailgate-Message-Id",
        "X-Campaign: spring",
        "receipt.txt",
        "multipart/mixed",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
}

#[tokio::test]
async fn a_send_from_an_unverified_domain_is_permanent() {
    let stack = TestStack::new().await;
    let sender = SesSender::new(aws_sdk_sesv2::Client::new(&stack.sdk), SesConfig::default());
    let failure = sender
        .send(&email("someone@unverified-domain.test"))
        .await
        .unwrap_err();
    assert_eq!(failure.provider_code.as_deref(), Some("MessageRejected"));
    let c = failure.classify();
    assert_eq!(c.category, ErrorCategory::ContentRejected);
    assert_eq!(c.outcome, OutcomeClass::Permanent);
}
