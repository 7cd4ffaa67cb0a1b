//! What every inbound email source hands on once its delivery is verified: the raw MIME to
//! store and what the source says about the message (its id, envelope recipient, `Message-ID`
//! and authentication verdicts). Each provider's module reads its own format.

use mailgate_core::{InboundSource, ProviderId};

use crate::webhook::PayloadError;

/// A verified inbound delivery: raw MIME and its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundDelivery {
    /// The message as MIME (as received, or rebuilt where the source sends parsed fields only).
    pub raw: Vec<u8>,
    /// What the source says about it.
    pub source: InboundSource,
}

/// Reads `provider`'s verified inbound body, or says the provider has no inbound webhook here.
pub fn inbound_delivery(
    provider: ProviderId,
    body: &[u8],
) -> Option<Result<InboundDelivery, PayloadError>> {
    match provider {
        ProviderId::Postmark => Some(crate::postmark::inbound::inbound_delivery(body)),
        ProviderId::Ses
        | ProviderId::Sendgrid
        | ProviderId::Mailgun
        | ProviderId::Smtp2go
        | ProviderId::Simulator => None,
    }
}

/// Whether `provider`'s webhook function receives inbound email: under `/inbound` for a
/// webhook source, or as SES `Received` notifications on any path of `webhook-ses` (whose SNS
/// subscription handshakes go through the same path as its other notifications).
pub fn has_inbound(provider: ProviderId) -> bool {
    provider == ProviderId::Ses || inbound_delivery(provider, b"").is_some()
}
