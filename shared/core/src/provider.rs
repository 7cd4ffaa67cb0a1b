//! The email providers mailgate can send through and receive events from.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of the supported delivery providers; its text form is the lower-case name used in
/// configuration, API fields and stored records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderId {
    /// Amazon SES (API v2).
    Ses,
    /// Twilio SendGrid (v3 API).
    Sendgrid,
    /// Mailgun (v3 API, US or EU region).
    Mailgun,
    /// Postmark.
    Postmark,
    /// SMTP2GO (v3 API).
    Smtp2go,
    /// The built-in event simulator that stands in for every provider for messages sent with a
    /// `test` API key (`mailgate_providers::simulator`). Never in [`ProviderId::ALL`]: it is not
    /// configured, ordered, failed over to, rate-limited or health-checked, and a caller cannot
    /// name it in a send request.
    Simulator,
}

impl ProviderId {
    /// Every provider, in a stable order.
    pub const ALL: [ProviderId; 5] = [
        ProviderId::Ses,
        ProviderId::Sendgrid,
        ProviderId::Mailgun,
        ProviderId::Postmark,
        ProviderId::Smtp2go,
    ];

    /// The lower-case name (`ses`, `sendgrid`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderId::Ses => "ses",
            ProviderId::Sendgrid => "sendgrid",
            ProviderId::Mailgun => "mailgun",
            ProviderId::Postmark => "postmark",
            ProviderId::Smtp2go => "smtp2go",
            ProviderId::Simulator => "simulator",
        }
    }

    /// Parses the name of a real provider (one of [`ProviderId::ALL`]): what configuration may
    /// name. `simulator` is refused here.
    pub fn parse_real(name: &str) -> Result<ProviderId, UnknownProvider> {
        match name.parse::<ProviderId>() {
            Ok(ProviderId::Simulator) | Err(_) => Err(UnknownProvider(name.to_owned())),
            Ok(provider) => Ok(provider),
        }
    }

    /// Whether this is the built-in simulator rather than a real provider.
    pub fn is_simulator(self) -> bool {
        self == ProviderId::Simulator
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider name that mailgate does not know. `simulator` parses (stored records and queued
/// events name it), but is not a provider one can configure or choose.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider {0:?}; expected one of ses, sendgrid, mailgun, postmark, smtp2go")]
pub struct UnknownProvider(pub String);

impl FromStr for ProviderId {
    type Err = UnknownProvider;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderId::ALL
            .into_iter()
            .chain([ProviderId::Simulator])
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownProvider(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_name_it_prints() {
        for p in ProviderId::ALL {
            assert_eq!(p.as_str().parse::<ProviderId>().unwrap(), p);
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.as_str())
            );
        }
        assert_eq!(
            " SendGrid ".parse::<ProviderId>().unwrap(),
            ProviderId::Sendgrid
        );
    }

    #[test]
    fn the_simulator_parses_but_is_not_among_the_providers() {
        assert_eq!(
            "simulator".parse::<ProviderId>().unwrap(),
            ProviderId::Simulator
        );
        assert!(ProviderId::Simulator.is_simulator());
        assert!(!ProviderId::ALL.contains(&ProviderId::Simulator));
        assert!(ProviderId::ALL.iter().all(|p| !p.is_simulator()));
        assert!(ProviderId::parse_real("simulator").is_err());
        assert_eq!(ProviderId::parse_real("ses"), Ok(ProviderId::Ses));
    }

    #[test]
    fn rejects_unknown_providers() {
        assert_eq!(
            "sparkpost".parse::<ProviderId>(),
            Err(UnknownProvider("sparkpost".into()))
        );
        assert!(serde_json::from_str::<ProviderId>("\"mandrill\"").is_err());
    }
}
