//! What every webhook verification shares: why a delivery was rejected, the timestamp window,
//! and the Basic-credential and source-address checks of the providers that do not sign
//! (Postmark, SMTP2GO).

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::future::BoxFuture;
use ipnet::IpNet;
use mailgate_core::Clock;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::webhook::{
    Payload, Verified, VerifierSettings, VerifyFailure, WebhookDelivery, WebhookVerifier, header,
    refs,
};

/// Why a webhook delivery failed verification. Callers answer 401 without detail and count the
/// kind; the detail is for logs and metrics only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRejection {
    /// A required signature or timestamp header/field is absent.
    #[error("signature or timestamp missing")]
    Missing,
    /// The signature or timestamp is not in the expected encoding.
    #[error("signature or timestamp malformed")]
    Malformed,
    /// The timestamp is older than the tolerance allows (a replay or a very late retry).
    #[error("timestamp too old")]
    Stale,
    /// The timestamp is further in the future than the tolerance allows.
    #[error("timestamp in the future")]
    Future,
    /// No configured key produced this signature.
    #[error("signature does not verify")]
    BadSignature,
    /// A URL in the delivery (SNS `SigningCertURL`/`SubscribeURL`) is not one we may fetch.
    #[error("untrusted URL")]
    UntrustedUrl,
    /// The SNS topic is not in the configured allowlist.
    #[error("topic not allowed")]
    TopicNotAllowed,
    /// The signature version or scheme is not one we accept.
    #[error("unsupported signature version")]
    UnsupportedVersion,
    /// A signed token was already used (Mailgun replay).
    #[error("token replayed")]
    Replayed,
    /// Basic credentials absent or wrong (Postmark, SMTP2GO).
    #[error("credentials do not match")]
    BadCredentials,
    /// The request came from an address outside the configured allowlist.
    #[error("source address not allowed")]
    SourceNotAllowed,
    /// The SNS signing certificate the delivery names does not exist on the SNS host (404/403):
    /// no key can vouch for the signature, so the delivery is forged or garbled.
    #[error("signing certificate not found")]
    CertificateNotFound,
}

impl WebhookRejection {
    /// A stable snake_case name for metrics.
    pub fn code(self) -> &'static str {
        match self {
            WebhookRejection::Missing => "missing",
            WebhookRejection::Malformed => "malformed",
            WebhookRejection::Stale => "stale",
            WebhookRejection::Future => "future",
            WebhookRejection::BadSignature => "bad_signature",
            WebhookRejection::UntrustedUrl => "untrusted_url",
            WebhookRejection::TopicNotAllowed => "topic_not_allowed",
            WebhookRejection::UnsupportedVersion => "unsupported_version",
            WebhookRejection::Replayed => "replayed",
            WebhookRejection::BadCredentials => "bad_credentials",
            WebhookRejection::SourceNotAllowed => "source_not_allowed",
            WebhookRejection::CertificateNotFound => "certificate_not_found",
        }
    }
}

/// Checks a decimal Unix-seconds timestamp against `clock` within `tolerance_secs` either way.
pub fn check_timestamp(
    timestamp: &str,
    tolerance_secs: i64,
    clock: &dyn Clock,
) -> Result<i64, WebhookRejection> {
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookRejection::Malformed)?;
    let now = clock.unix_seconds();
    if now.saturating_sub(ts) > tolerance_secs {
        Err(WebhookRejection::Stale)
    } else if ts.saturating_sub(now) > tolerance_secs {
        Err(WebhookRejection::Future)
    } else {
        Ok(ts)
    }
}

/// A configured credential list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCredentials {
    /// No `user:password` pair was configured: verification never silently turns off.
    #[error("at least one user:password pair is required")]
    None,
    /// Entry `index` (0-based) is not `user:password` with both parts non-empty.
    #[error("credential #{index} is not user:password")]
    Shape {
        /// The entry's position in the configured list.
        index: usize,
    },
}

/// HTTP Basic credentials a provider that does not sign its webhooks must present. Several pairs
/// are accepted during rotation. Only SHA-256 digests are kept, so `Debug` shows nothing secret and
/// every comparison is over equal-length values in constant time.
#[derive(Clone)]
pub struct BasicCredentials {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BasicCredentials({} pair(s), redacted)",
            self.digests.len()
        )
    }
}

impl BasicCredentials {
    /// Accepts `user:password` pairs, as configured (comma-separated lists are split by callers).
    pub fn new(pairs: &[&str]) -> Result<Self, InvalidCredentials> {
        let pairs: Vec<&str> = pairs
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .collect();
        if pairs.is_empty() {
            return Err(InvalidCredentials::None);
        }
        let digests = pairs
            .iter()
            .enumerate()
            .map(|(index, pair)| match pair.split_once(':') {
                Some((user, pass)) if !user.is_empty() && !pass.is_empty() => {
                    Ok(Sha256::digest(pair.as_bytes()).into())
                }
                _ => Err(InvalidCredentials::Shape { index }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { digests })
    }

    /// Checks an `Authorization` header value (`Basic base64(user:password)`).
    pub fn verify(&self, authorization: Option<&str>) -> Result<(), WebhookRejection> {
        let value = authorization.map(str::trim).filter(|v| !v.is_empty());
        let Some(value) = value else {
            return Err(WebhookRejection::Missing);
        };
        let (scheme, encoded) = value.split_once(' ').ok_or(WebhookRejection::Malformed)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(WebhookRejection::Malformed);
        }
        let presented = STANDARD
            .decode(encoded.trim())
            .map_err(|_| WebhookRejection::Malformed)?;
        let presented: [u8; 32] = Sha256::digest(&presented).into();
        // Fold over every configured pair so timing does not reveal which one matched.
        let matched = self
            .digests
            .iter()
            .fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&presented));
        if bool::from(matched) {
            Ok(())
        } else {
            Err(WebhookRejection::BadCredentials)
        }
    }
}

/// An optional allowlist of source addresses and networks (`198.51.100.7`, `203.0.113.0/24`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceAllowlist {
    networks: Vec<IpNet>,
}

/// An allowlist entry that is neither an IP address nor a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not an IP address or CIDR network")]
pub struct InvalidNetwork {
    /// The entry as configured.
    pub entry: String,
}

impl SourceAllowlist {
    /// Parses entries; an empty list allows every source.
    pub fn new(entries: &[&str]) -> Result<Self, InvalidNetwork> {
        let networks = entries
            .iter()
            .map(|e| e.trim())
            .filter(|e| !e.is_empty())
            .map(|e| {
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| InvalidNetwork {
                        entry: e.to_owned(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { networks })
    }

    /// Whether any network is configured.
    pub fn is_enabled(&self) -> bool {
        !self.networks.is_empty()
    }

    /// Checks the request's source address; an unknown source fails when the list is enabled.
    pub fn check(&self, source: Option<IpAddr>) -> Result<(), WebhookRejection> {
        if !self.is_enabled() {
            return Ok(());
        }
        match source {
            Some(ip) if self.networks.iter().any(|n| n.contains(&ip)) => Ok(()),
            _ => Err(WebhookRejection::SourceNotAllowed),
        }
    }
}

/// The check of a provider that does not sign its webhooks: Basic credentials, and optionally
/// the source address.
#[derive(Debug, Clone)]
pub struct BasicAuthWebhook {
    credentials: BasicCredentials,
    sources: SourceAllowlist,
}

impl BasicAuthWebhook {
    /// Credentials are required; the allowlist may be empty (any source).
    pub fn new(credentials: BasicCredentials, sources: SourceAllowlist) -> Self {
        Self {
            credentials,
            sources,
        }
    }

    /// Checks the delivery, then reads it with the provider's `payload` (one event per POST).
    pub fn verify_delivery(
        &self,
        headers: &http::HeaderMap,
        source: Option<IpAddr>,
        payload: impl FnOnce() -> crate::webhook::Payload,
    ) -> Result<crate::webhook::Intake, WebhookRejection> {
        self.verify(headers, source)?;
        Ok(crate::webhook::Intake {
            kind: mailgate_core::DeliveryKind::Events,
            verification: "basic",
            payload: payload(),
            replay_token: None,
        })
    }

    /// Checks the source address first (cheapest), then the `Authorization` header.
    pub fn verify(
        &self,
        headers: &http::HeaderMap,
        source: Option<IpAddr>,
    ) -> Result<(), WebhookRejection> {
        self.sources.check(source)?;
        self.credentials
            .verify(crate::webhook::header(headers, "authorization"))
    }
}

/// The verification of a provider that does not sign (Postmark, SMTP2GO): its Basic credentials
/// and source allowlist, then its reader of the one event a POST carries.
#[derive(Debug, Clone)]
pub struct BasicAuthVerifier {
    auth: BasicAuthWebhook,
    payload: fn(&[u8], Option<&str>) -> Payload,
}

impl BasicAuthVerifier {
    /// Reads the required `user:password` list `credentials` and the optional source allowlist
    /// `sources` from configuration (each problem names its variable); verified bodies are read
    /// with `payload`, given the body and its content type.
    pub fn from_settings(
        settings: &VerifierSettings<'_>,
        credentials: &str,
        sources: &str,
        payload: fn(&[u8], Option<&str>) -> Payload,
    ) -> Result<Arc<dyn WebhookVerifier>, Vec<String>> {
        let pairs = settings.required(credentials)?;
        let checked = BasicCredentials::new(&refs(&pairs))
            .map_err(|e| vec![format!("{credentials}: {e}")])?;
        let allowed = SourceAllowlist::new(&refs(&settings.list(sources)))
            .map_err(|e| vec![format!("{sources}: {e}")])?;
        Ok(Arc::new(Self {
            auth: BasicAuthWebhook::new(checked, allowed),
            payload,
        }))
    }
}

impl WebhookVerifier for BasicAuthVerifier {
    fn verify<'a>(
        &'a self,
        delivery: WebhookDelivery<'a>,
        _clock: &'a dyn Clock,
    ) -> BoxFuture<'a, Result<Verified, VerifyFailure>> {
        Verified::settled(
            self.auth
                .verify_delivery(delivery.headers, delivery.source, || {
                    (self.payload)(delivery.body, header(delivery.headers, "content-type"))
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailgate_core::FixedClock;

    fn basic(pair: &str) -> String {
        format!("Basic {}", STANDARD.encode(pair))
    }

    #[test]
    fn basic_credentials_accept_any_configured_pair_and_nothing_else() {
        let creds = BasicCredentials::new(&["hooks:old-secret", "hooks:new-secret"]).unwrap();
        assert_eq!(creds.verify(Some(&basic("hooks:old-secret"))), Ok(()));
        assert_eq!(creds.verify(Some(&basic("hooks:new-secret"))), Ok(()));
        assert_eq!(
            creds.verify(Some(&basic("hooks:guess"))),
            Err(WebhookRejection::BadCredentials)
        );
        assert_eq!(
            creds.verify(Some(&basic("other:new-secret"))),
            Err(WebhookRejection::BadCredentials)
        );
        assert_eq!(creds.verify(None), Err(WebhookRejection::Missing));
        assert_eq!(
            creds.verify(Some("Bearer abc")),
            Err(WebhookRejection::Malformed)
        );
        assert_eq!(
            creds.verify(Some("Basic %%%")),
            Err(WebhookRejection::Malformed)
        );
        assert!(!format!("{creds:?}").contains("secret"));
    }

    #[test]
    fn basic_credentials_must_be_configured_as_user_colon_password() {
        assert_eq!(
            BasicCredentials::new(&[]).unwrap_err(),
            InvalidCredentials::None
        );
        assert_eq!(
            BasicCredentials::new(&[" "]).unwrap_err(),
            InvalidCredentials::None
        );
        assert_eq!(
            BasicCredentials::new(&["a:b", "nopassword"]).unwrap_err(),
            InvalidCredentials::Shape { index: 1 }
        );
        assert_eq!(
            BasicCredentials::new(&[":pw"]).unwrap_err(),
            InvalidCredentials::Shape { index: 0 }
        );
    }

    #[test]
    fn the_source_allowlist_matches_addresses_and_networks() {
        let open = SourceAllowlist::new(&[]).unwrap();
        assert_eq!(open.check(None), Ok(()));
        let list = SourceAllowlist::new(&["198.51.100.7", "203.0.113.0/24", "::1"]).unwrap();
        assert_eq!(list.check(Some("198.51.100.7".parse().unwrap())), Ok(()));
        assert_eq!(list.check(Some("203.0.113.200".parse().unwrap())), Ok(()));
        assert_eq!(list.check(Some("::1".parse().unwrap())), Ok(()));
        assert_eq!(
            list.check(Some("198.51.100.8".parse().unwrap())),
            Err(WebhookRejection::SourceNotAllowed)
        );
        assert_eq!(list.check(None), Err(WebhookRejection::SourceNotAllowed));
        assert_eq!(
            SourceAllowlist::new(&["example.com"]).unwrap_err().entry,
            "example.com"
        );
    }

    #[test]
    fn accepts_inside_the_window_and_names_each_way_out() {
        let clock = FixedClock::at_unix(1_000_000);
        assert_eq!(check_timestamp("1000000", 300, &clock), Ok(1_000_000));
        assert_eq!(check_timestamp("999700", 300, &clock), Ok(999_700));
        assert_eq!(
            check_timestamp("999699", 300, &clock),
            Err(WebhookRejection::Stale)
        );
        assert_eq!(
            check_timestamp("1000301", 300, &clock),
            Err(WebhookRejection::Future)
        );
        assert_eq!(
            check_timestamp("soon", 300, &clock),
            Err(WebhookRejection::Malformed)
        );
    }
}
