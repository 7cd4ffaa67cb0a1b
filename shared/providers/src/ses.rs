//! Amazon SES (API v2; events via SNS or EventBridge).

use mailgate_core::ProviderId;

/// The provider this module covers.
pub const PROVIDER: ProviderId = ProviderId::Ses;
