//! The one rule for URLs an SNS delivery may make us fetch (`SigningCertURL`, `SubscribeURL`):
//! `https`, no userinfo, no port but 443, and a host matching
//! `^sns\.[a-zA-Z0-9-]{3,}\.amazonaws\.com(\.cn)?$` (the AWS SDK validators' rule); a signing
//! certificate's path must also end in `.pem`. [`SnsUrl`] can only be built through the rule.

use std::fmt;

use url::{Host, Url};

use crate::verify::WebhookRejection;

/// A URL that passed the SNS fetch rule. The only way to get one is [`SnsUrl::signing_cert`] or
/// [`SnsUrl::subscribe`], so anything that fetches an `SnsUrl` fetches only from SNS.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SnsUrl(Url);

impl SnsUrl {
    /// Validates a `SigningCertURL`: the host rule plus a path ending in `.pem`.
    pub fn signing_cert(raw: &str) -> Result<Self, WebhookRejection> {
        let url = trusted(raw)?;
        if url.path().ends_with(".pem") {
            Ok(Self(url))
        } else {
            Err(WebhookRejection::UntrustedUrl)
        }
    }

    /// Validates a `SubscribeURL` (the confirmation link of a `SubscriptionConfirmation`).
    pub fn subscribe(raw: &str) -> Result<Self, WebhookRejection> {
        trusted(raw).map(Self)
    }

    /// The normalised URL, as it will be requested.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The SNS host, e.g. `sns.us-east-1.amazonaws.com`.
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }
}

impl fmt::Display for SnsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// The URL is parsed with the `url` crate, the same WHATWG parser `reqwest` uses to decide which
// host it connects to. A hand-written splitter would be a second parser that can disagree with
// the client on inputs such as `https://sns.x.amazonaws.com\@evil.com/`, percent-encoded hosts or
// userinfo, and any disagreement is an SSRF. Only the host pattern itself is matched by hand (it
// is small, and a regex crate would be a dependency for one line).
fn trusted(raw: &str) -> Result<Url, WebhookRejection> {
    let url = Url::parse(raw).map_err(|_| WebhookRejection::UntrustedUrl)?;
    let has_userinfo = !url.username().is_empty() || url.password().is_some();
    // `url` drops a port equal to the scheme's default, so any port left here is not 443.
    let ok = url.scheme() == "https"
        && !has_userinfo
        && url.port().is_none()
        && matches!(url.host(), Some(Host::Domain(host)) if is_sns_host(host));
    if ok {
        Ok(url)
    } else {
        Err(WebhookRejection::UntrustedUrl)
    }
}

/// `^sns\.[a-zA-Z0-9-]{3,}\.amazonaws\.com(\.cn)?$` on a host that `url` has already lowercased.
fn is_sns_host(host: &str) -> bool {
    let Some(rest) = host.strip_prefix("sns.") else {
        return false;
    };
    let Some(region) = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))
    else {
        return false;
    };
    region.len() >= 3
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "https://sns.us-east-2.amazonaws.com/SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem";

    #[test]
    fn regional_china_and_explicit_443_hosts_are_trusted() {
        for ok in [
            CERT,
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem",
            "https://sns.us-gov-west-1.amazonaws.com/x.pem",
            "https://SNS.US-EAST-1.AMAZONAWS.COM/x.pem",
            "https://sns.us-east-1.amazonaws.com:443/x.pem",
        ] {
            let url = SnsUrl::signing_cert(ok).unwrap();
            assert!(url.host().starts_with("sns."), "{ok}");
        }
        let sub = SnsUrl::subscribe(
            "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:us-west-2:123456789012:MyTopic&Token=2336412f37",
        )
        .unwrap();
        assert_eq!(sub.host(), "sns.us-west-2.amazonaws.com");
        assert!(sub.as_str().contains("Action=ConfirmSubscription"));
    }

    #[test]
    fn anything_else_is_untrusted() {
        for bad in [
            "https://sns.amazonaws.com.evil.com/x.pem",
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://s3.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.txt",
            "https://sns.us-east-1.amazonaws.com@evil.com/x.pem",
            "https://user:pw@sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://sns.us-east-1.amazonaws.com%2eevil.com/x.pem",
            "https://sns.us-east-1.amazonaws.com./x.pem",
            "https://sns.eu.amazonaws.com/x.pem",
            "https://sns.a.b.amazonaws.com/x.pem",
            "https://sns..amazonaws.com/x.pem",
            "https://sns.amazonaws.com/x.pem",
            "https://52.94.0.1/x.pem",
            "ftp://sns.us-east-1.amazonaws.com/x.pem",
            "sns.us-east-1.amazonaws.com/x.pem",
            "",
        ] {
            assert_eq!(
                SnsUrl::signing_cert(bad),
                Err(WebhookRejection::UntrustedUrl),
                "{bad}"
            );
        }
        assert_eq!(
            SnsUrl::subscribe(
                "https://sns.us-east-1.amazonaws.com.evil.com/?Action=ConfirmSubscription"
            ),
            Err(WebhookRejection::UntrustedUrl)
        );
    }

    #[test]
    fn a_backslash_is_read_as_the_http_client_reads_it() {
        // WHATWG (and so reqwest) reads `\` as `/` in https URLs: the host stays SNS's.
        let url =
            SnsUrl::signing_cert("https://sns.us-east-1.amazonaws.com\\@evil.com/x.pem").unwrap();
        assert_eq!(url.host(), "sns.us-east-1.amazonaws.com");
    }
}
