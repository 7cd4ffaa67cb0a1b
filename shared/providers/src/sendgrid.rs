//! Twilio SendGrid (v3 mail/send; signed Event Webhook).

use mailgate_core::ProviderId;

/// The provider this module covers.
pub const PROVIDER: ProviderId = ProviderId::Sendgrid;
