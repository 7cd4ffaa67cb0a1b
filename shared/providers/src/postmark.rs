//! Postmark (/email; Basic-auth webhooks).

use mailgate_core::ProviderId;

/// The provider this module covers.
pub const PROVIDER: ProviderId = ProviderId::Postmark;
