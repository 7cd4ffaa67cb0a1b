//! The ports of sender domains: the provider's identity registry (SES identities) and a DNS
//! resolver to check what a domain publishes.

use super::{BoxFuture, StoreError};
use crate::sender_domain::{Observed, RecordType, SenderDomain};

/// An identity as the registry describes it (SES `GetEmailIdentity`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentityStatus {
    /// The identity (a domain or an address).
    pub name: String,
    /// `DOMAIN`, `EMAIL_ADDRESS` or `MANAGED_DOMAIN`.
    pub identity_type: String,
    /// Whether the registry lets mail be sent from it now.
    pub verified_for_sending: bool,
    /// The verification status (`PENDING`, `SUCCESS`, `FAILED`, `TEMPORARY_FAILURE`,
    /// `NOT_STARTED`), when reported.
    pub verification_status: Option<String>,
    /// The DKIM status, when reported.
    pub dkim_status: Option<String>,
    /// Whether DKIM signing is on.
    pub dkim_signing_enabled: bool,
    /// The Easy DKIM tokens (one CNAME each); empty when the registry gave none.
    pub dkim_tokens: Vec<String>,
    /// The custom MAIL FROM domain, when one is set.
    pub mail_from_domain: Option<String>,
    /// Its status (`PENDING`, `SUCCESS`, `FAILED`, `TEMPORARY_FAILURE`), when reported.
    pub mail_from_status: Option<String>,
}

impl IdentityStatus {
    /// Whether mail can be sent from it: verified for sending, or its verification succeeded.
    pub fn can_send(&self) -> bool {
        self.verified_for_sending || self.verification_status.as_deref() == Some("SUCCESS")
    }
}

/// An identity as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySummary {
    /// The identity.
    pub name: String,
    /// `DOMAIN`, `EMAIL_ADDRESS` or `MANAGED_DOMAIN`.
    pub identity_type: String,
    /// Whether sending from it is enabled.
    pub sending_enabled: bool,
    /// The verification status, when reported.
    pub verification_status: Option<String>,
}

/// Setting the custom MAIL FROM domain failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MailFromError {
    /// The registry does not offer the operation (an emulator without it).
    #[error("the identity registry does not support setting a MAIL FROM domain: {0}")]
    Unsupported(String),
    /// Any other failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The registry of sending identities (SES).
pub trait SenderIdentities: Send + Sync {
    /// Creates the domain identity with Easy DKIM (an existing one is kept): its status,
    /// with the DKIM tokens.
    fn create_domain<'a>(
        &'a self,
        domain: &'a SenderDomain,
    ) -> BoxFuture<'a, Result<IdentityStatus, StoreError>>;

    /// Sets the identity's custom MAIL FROM domain.
    fn set_mail_from<'a>(
        &'a self,
        domain: &'a SenderDomain,
        mail_from: &'a str,
    ) -> BoxFuture<'a, Result<(), MailFromError>>;

    /// The identity (a domain or an address); `None` when there is no such identity.
    fn get<'a>(
        &'a self,
        identity: &'a str,
    ) -> BoxFuture<'a, Result<Option<IdentityStatus>, StoreError>>;

    /// Every identity.
    fn list(&self) -> BoxFuture<'_, Result<Vec<IdentitySummary>, StoreError>>;

    /// Deletes the identity.
    fn delete<'a>(&'a self, domain: &'a SenderDomain) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A DNS resolver.
pub trait DnsLookup: Send + Sync {
    /// The records of `kind` at `name`, normalised as [`Observed`] describes.
    fn lookup<'a>(&'a self, name: &'a str, kind: RecordType) -> BoxFuture<'a, Observed>;
}
