//! Everything mailgate knows about each provider, one module per provider, so a provider's send
//! mapping, error mapping and webhook verification, splitting and normalisation sit side by side.
//! Each module's send side implements the core's `EmailProvider` port and its webhook side
//! [`webhook::WebhookProvider`]; [`webhook::webhook_provider`] is the one place a provider id
//! picks the webhook side, [`config`] the send side.

pub mod config;
pub mod events;
pub mod form;
pub mod http_client;
pub mod inbound;
pub mod mailgun;
pub mod postmark;
pub mod send;
pub mod sendgrid;
pub mod ses;
pub mod simulator;
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
        assert_eq!(simulator::PROVIDER, ProviderId::Simulator);
    }
}
