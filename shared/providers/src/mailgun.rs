//! Mailgun (v3 messages; HMAC-signed webhooks).

use mailgate_core::ProviderId;

/// The provider this module covers.
pub const PROVIDER: ProviderId = ProviderId::Mailgun;
