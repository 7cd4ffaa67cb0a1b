//! Amazon SES (API v2; events via SNS or EventBridge).
//!
//! SES feedback reaches us as SNS HTTPS deliveries; [`sns`] verifies them (RSA signature, signing
//! certificate URL, topic allowlist, timestamp) and confirms subscriptions.

pub mod events;
pub mod inbound;
pub mod send;
pub mod sns;

use mailgate_core::ProviderId;

/// The provider this module covers.
pub const PROVIDER: ProviderId = ProviderId::Ses;

use std::sync::Arc;

use futures::future::BoxFuture;
use mailgate_core::{Clock, DeliveryEvent, DeliveryKind};

use crate::events::{EventOrigin, NormaliseError};
use crate::webhook::{
    Handshake, Intake, Payload, PayloadError, Verified, VerifierSettings, VerifyFailure,
    WebhookDelivery, WebhookProvider, WebhookVerifier, refs,
};

/// SES's webhooks: SNS HTTPS deliveries.
#[derive(Debug, Clone, Copy, Default)]
pub struct SesWebhooks;

impl WebhookProvider for SesWebhooks {
    fn id(&self) -> ProviderId {
        PROVIDER
    }

    fn secret_variables(&self) -> &'static [&'static str] {
        &["SNS_ALLOWED_TOPIC_ARNS"]
    }

    // SNS re-sends with the original `Timestamp` for up to an hour; the rest is clock skew.
    fn default_tolerance_secs(&self) -> i64 {
        3_900
    }

    fn verifier(
        &self,
        settings: VerifierSettings<'_>,
    ) -> Result<Arc<dyn WebhookVerifier>, Vec<String>> {
        let topics = settings.required("SNS_ALLOWED_TOPIC_ARNS")?;
        let http = (settings.sns_http)().map_err(|e| vec![format!("SNS HTTP client: {e}")])?;
        sns::SnsVerifier::new(&refs(&topics), settings.tolerance_secs, http)
            .map(|v| Arc::new(SesWebhookVerifier(Arc::new(v))) as Arc<dyn WebhookVerifier>)
            .map_err(|e| vec![format!("SNS_ALLOWED_TOPIC_ARNS: {e}")])
    }

    fn split(&self, body: &[u8], _content_type: Option<&str>) -> Result<Vec<String>, PayloadError> {
        notification_events(body)
    }

    fn normalise(
        &self,
        event: &str,
        origin: &EventOrigin<'_>,
    ) -> Result<Vec<DeliveryEvent>, NormaliseError> {
        events::normalise(event, origin)
    }
}

/// SNS signatures, the topic allowlist and the certificate cache, shared with the subscription
/// confirmations it hands out.
#[derive(Debug, Clone)]
pub struct SesWebhookVerifier(Arc<sns::SnsVerifier>);

impl WebhookVerifier for SesWebhookVerifier {
    fn verify<'a>(
        &'a self,
        delivery: WebhookDelivery<'a>,
        clock: &'a dyn Clock,
    ) -> BoxFuture<'a, Result<Verified, VerifyFailure>> {
        Box::pin(async move {
            let verified = self
                .0
                .verify(delivery.body, clock)
                .await
                .map_err(|e| match e {
                    sns::SnsVerifyError::Rejected(r) => VerifyFailure::Rejected(r),
                    other => VerifyFailure::Unavailable(other.to_string()),
                })?;
            let intake = intake(&verified, delivery.body);
            let topic = verified.topic_arn().to_owned();
            let handshake = match verified.message_type() {
                sns::SnsMessageType::SubscriptionConfirmation => {
                    let sns = Arc::clone(&self.0);
                    let confirm: BoxFuture<'static, _> = Box::pin(async move {
                        sns.confirm_subscription(&verified).await.map_err(|e| {
                            e.rejection().map_or_else(
                                || VerifyFailure::Unavailable(e.to_string()),
                                VerifyFailure::Rejected,
                            )
                        })
                    });
                    Some(Handshake::Subscribe { topic, confirm })
                }
                sns::SnsMessageType::UnsubscribeConfirmation => {
                    Some(Handshake::Unsubscribed { topic })
                }
                sns::SnsMessageType::Notification => None,
            };
            Ok(Verified { intake, handshake })
        })
    }
}

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
