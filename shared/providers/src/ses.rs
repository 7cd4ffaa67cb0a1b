//! Amazon SES (API v2; events via SNS or EventBridge).
//!
//! SES feedback reaches us as SNS HTTPS deliveries; [`sns`] verifies them (RSA signature, signing
//! certificate URL, topic allowlist, timestamp) and confirms subscriptions.

pub mod events;
pub mod send;
pub mod sns;

use mailgate_core::ProviderId;

/// The provider this module covers.
pub const PROVIDER: ProviderId = ProviderId::Ses;

use mailgate_core::DeliveryKind;

use crate::webhook::{Intake, Payload, PayloadError};

/// What a verified SNS delivery becomes: a notification is one event (the whole envelope, since
/// the processor needs `MessageId`, `Timestamp` and the SES JSON inside `Message`); the two
/// confirmations carry no event. The dedupe key is SNS's `MessageId`, stable across retries.
pub fn intake(verified: &sns::VerifiedSns, body: &[u8]) -> Intake {
    let kind = match verified.message_type() {
        sns::SnsMessageType::Notification => DeliveryKind::Events,
        sns::SnsMessageType::SubscriptionConfirmation => DeliveryKind::SubscriptionConfirmation,
        sns::SnsMessageType::UnsubscribeConfirmation => DeliveryKind::UnsubscribeConfirmation,
    };
    let events = match kind {
        DeliveryKind::Events => notification_events(body),
        _ => Ok(Vec::new()),
    };
    Intake {
        kind,
        verification: match verified.signature_version() {
            sns::SnsSignatureVersion::V1 => "sns-v1-sha1-rsa",
            sns::SnsSignatureVersion::V2 => "sns-v2-sha256-rsa",
        },
        payload: Payload {
            dedupe_key: format!("message:{}", verified.message_id()),
            events,
        },
        replay_token: None,
    }
}

/// The events of a stored SNS notification: its envelope, as received.
pub fn notification_events(body: &[u8]) -> Result<Vec<String>, PayloadError> {
    crate::webhook::single_object(body)?;
    let text = std::str::from_utf8(body).map_err(|_| PayloadError::new("the body is not UTF-8"))?;
    Ok(vec![text.to_owned()])
}
