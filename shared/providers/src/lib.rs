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

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::ProviderId;

    #[test]
    fn every_provider_has_a_module() {
        assert_eq!(ses::PROVIDER, ProviderId::Ses);
        assert_eq!(sendgrid::PROVIDER, ProviderId::Sendgrid);
        assert_eq!(mailgun::PROVIDER, ProviderId::Mailgun);
        assert_eq!(postmark::PROVIDER, ProviderId::Postmark);
        assert_eq!(smtp2go::PROVIDER, ProviderId::Smtp2go);
    }
}
