//! SES receiving: a receipt rule stores the raw message in the stack's inbound bucket (S3
//! action, prefix `ses/`) and notifies an SNS topic that `webhook-ses` is subscribed to. The
//! notification (`notificationType: "Received"`) is verified like every SNS delivery; it carries
//! no content, only where the message is and what SES found.
//!
//! What it gives: `mail.messageId` (SES's id: the dedupe key), `mail.commonHeaders.messageId`,
//! `receipt.recipients` (envelope), and the verdicts `spfVerdict`, `dkimVerdict`,
//! `dmarcVerdict`, `spamVerdict`, `virusVerdict` (`PASS`, `FAIL`, `GRAY`, `PROCESSING_FAILED`,
//! `DISABLED`). What it lacks: nothing of the message (the raw MIME is whole in S3, up to
//! 40 MB); one notification covers every recipient the rule matched, and the record keeps the
//! first as its recipient.

use mailgate_core::{AuthVerdicts, InboundSource};
use serde_json::Value;

use super::PROVIDER;

/// A received message as an SES notification describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SesReceived {
    /// The bucket SES wrote the raw message to.
    pub bucket: String,
    /// Its object key.
    pub object_key: String,
    /// What SES says about it.
    pub source: InboundSource,
}

/// The received message a verified SNS envelope announces, if it is an SES `Received`
/// notification with an S3 action; `None` for anything else (sending events).
pub fn received(envelope: &str) -> Option<SesReceived> {
    let envelope: Value = serde_json::from_str(envelope).ok()?;
    let message: Value = serde_json::from_str(envelope.get("Message")?.as_str()?).ok()?;
    if message.get("notificationType")?.as_str()? != "Received" {
        return None;
    }
    let receipt = message.get("receipt")?;
    let action = receipt.get("action")?;
    if action.get("type")?.as_str()? != "S3" {
        return None;
    }
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let verdict = |name: &str| text(receipt.get(name).and_then(|v| v.get("status")));
    let mail = message.get("mail")?;
    Some(SesReceived {
        bucket: text(action.get("bucketName"))?,
        object_key: text(action.get("objectKey"))?,
        source: InboundSource {
            provider: PROVIDER,
            source_id: text(mail.get("messageId"))?,
            recipient: receipt
                .get("recipients")
                .and_then(Value::as_array)
                .and_then(|r| r.first())
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            message_id: text(mail.get("commonHeaders").and_then(|h| h.get("messageId"))),
            auth: AuthVerdicts {
                spf: verdict("spfVerdict"),
                dkim: verdict("dkimVerdict"),
                dmarc: verdict("dmarcVerdict"),
                spam: verdict("spamVerdict"),
                virus: verdict("virusVerdict"),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SNS envelope around `message`, as SNS posts it.
    pub(crate) fn envelope(message: &Value) -> String {
        serde_json::json!({
            "Type": "Notification",
            "MessageId": "b5a8f4c2-0d35-4d6f-9a3e-2f1c0b9e8d71",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:mailgate-dev-ses-inbound",
            "Message": message.to_string(),
        })
        .to_string()
    }

    fn notification() -> Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/webhook-ses/inbound-received-message.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn a_received_notification_points_at_the_s3_object_with_every_verdict() {
        let got = received(&envelope(&notification())).unwrap();
        assert_eq!(got.bucket, "mailgate-dev-inbound-123456789012-us-east-1");
        assert_eq!(
            got.object_key,
            "ses/o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1"
        );
        assert_eq!(got.source.provider, mailgate_core::ProviderId::Ses);
        assert_eq!(
            got.source.source_id,
            "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1"
        );
        assert_eq!(got.source.recipient, "support@inbound.example.com");
        assert_eq!(
            got.source.message_id.as_deref(),
            Some("<CAF=reply-7@mail.example.org>")
        );
        let auth = got.source.auth;
        assert_eq!(auth.spf.as_deref(), Some("PASS"));
        assert_eq!(auth.dkim.as_deref(), Some("PASS"));
        assert_eq!(auth.dmarc.as_deref(), Some("GRAY"));
        assert_eq!(auth.spam.as_deref(), Some("PASS"));
        assert_eq!(auth.virus.as_deref(), Some("PASS"));
    }

    #[test]
    fn sending_events_and_other_actions_are_not_received_mail() {
        let mut other = notification();
        other["notificationType"] = "Bounce".into();
        assert_eq!(received(&envelope(&other)), None);
        let mut sns_action = notification();
        sns_action["receipt"]["action"] = serde_json::json!({"type": "SNS", "encoding": "UTF8"});
        assert_eq!(received(&envelope(&sns_action)), None);
        assert_eq!(received("not json"), None);
    }
}
