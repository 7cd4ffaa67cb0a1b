//! Everything mailgate knows about each provider, one module per provider, so a provider's send
//! mapping, error mapping and webhook verification/parsing sit side by side. Signature
//! verification for SendGrid and Mailgun is here; sending and payload parsing fill in with the
//! send and webhook issues. Each module's webhook side implements [`webhook::WebhookProvider`];
//! [`webhook::webhook_provider`] is the one place a provider id picks it.

pub mod config;
pub mod events;
pub mod mailgun;
pub mod postmark;
pub mod send;
pub mod sendgrid;
pub mod ses;
pub mod smtp2go;
pub mod verify;
pub mod webhook;

use mailgate_core::ProviderId;

/// The provider each module covers, in `ProviderId::ALL` order.
pub const MODULES: [(ProviderId, &str); 5] = [
    (ProviderId::Ses, "ses"),
    (ProviderId::Sendgrid, "sendgrid"),
    (ProviderId::Mailgun, "mailgun"),
    (ProviderId::Postmark, "postmark"),
    (ProviderId::Smtp2go, "smtp2go"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_a_module() {
        for (i, p) in ProviderId::ALL.into_iter().enumerate() {
            assert_eq!(MODULES[i], (p, p.as_str()));
        }
        assert_eq!(ses::PROVIDER, ProviderId::Ses);
        assert_eq!(sendgrid::PROVIDER, ProviderId::Sendgrid);
        assert_eq!(mailgun::PROVIDER, ProviderId::Mailgun);
        assert_eq!(postmark::PROVIDER, ProviderId::Postmark);
        assert_eq!(smtp2go::PROVIDER, ProviderId::Smtp2go);
    }
}
