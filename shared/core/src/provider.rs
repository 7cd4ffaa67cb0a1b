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
        }
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider name that mailgate does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider {0:?}; expected one of ses, sendgrid, mailgun, postmark, smtp2go")]
pub struct UnknownProvider(pub String);

impl FromStr for ProviderId {
    type Err = UnknownProvider;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderId::ALL
            .into_iter()
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
    fn rejects_unknown_providers() {
        assert_eq!(
            "sparkpost".parse::<ProviderId>(),
            Err(UnknownProvider("sparkpost".into()))
        );
        assert!(serde_json::from_str::<ProviderId>("\"mandrill\"").is_err());
    }
}
