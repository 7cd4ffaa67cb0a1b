//! SMTP2GO (v3 email/send; Basic-auth webhooks).

use mailgate_core::ProviderId;

/// The provider this module covers.
pub const PROVIDER: ProviderId = ProviderId::Smtp2go;
