//! Sender domains: the domain a team sends from, the DNS records that authenticate it for SES
//! (Easy DKIM CNAMEs, the custom MAIL FROM's MX and SPF, a starting DMARC policy), and the
//! verdict on what a live DNS lookup found for each record, in words a person can act on.
//!
//! Everything here is pure: the records follow from the domain, the DKIM tokens SES gave and
//! the region; the verdict follows from what the resolver answered ([`Observed`]).
//!
//! | record | where | expected | verdicts |
//! |---|---|---|---|
//! | DKIM (×3) | CNAME `<token>._domainkey.<domain>` | `<token>.dkim.amazonses.com` | ok, missing, wrong (points elsewhere) |
//! | MAIL FROM MX | MX `<mail from domain>` | `10 feedback-smtp.<region>.amazonses.com` | ok, missing, wrong |
//! | SPF | TXT at the MAIL FROM domain (else the domain) | one `v=spf1 … include:amazonses.com …` | ok, missing, wrong (two records, no include) |
//! | DMARC | TXT `_dmarc.<domain>` | one `v=DMARC1; p=…` | ok (with advice while `p=none`), missing, wrong |
//!
//! A lookup that failed (timeout, SERVFAIL) is `unknown`, never `missing`: it says nothing about
//! what is published.

use serde::Serialize;

/// The error codes of sender domains.
pub mod code {
    /// 400: the domain is not a valid DNS domain name.
    pub const INVALID_DOMAIN: &str = "invalid_domain";
    /// 400: the MAIL FROM subdomain is not a valid label chain under the domain.
    pub const INVALID_MAIL_FROM_SUBDOMAIN: &str = "invalid_mail_from_subdomain";
    /// 422: the message's sender domain is not a verified SES identity and SES is the only
    /// provider that could carry it.
    pub const SENDER_DOMAIN_UNVERIFIED: &str = "sender_domain_unverified";
}
pub use code::{INVALID_DOMAIN, INVALID_MAIL_FROM_SUBDOMAIN, SENDER_DOMAIN_UNVERIFIED};

/// The SPF record SES's MAIL FROM domain needs (and a sensible one for the domain itself).
pub const SPF_VALUE: &str = "v=spf1 include:amazonses.com ~all";
/// The DMARC record to start with: monitor only.
pub const DMARC_START: &str = "v=DMARC1; p=none;";
/// The advice that goes with [`DMARC_START`].
pub const DMARC_ADVICE: &str = "p=none only monitors; once your DMARC reports show all your \
     mail passing SPF or DKIM alignment, tighten to p=quarantine and then p=reject (add \
     rua=mailto:<address> to receive the aggregate reports)";
/// The preference of the MAIL FROM MX record SES documents.
pub const MAIL_FROM_MX_PRIORITY: u16 = 10;

/// A domain that is not acceptable, with the code and field of the 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DomainError {
    /// The machine-readable code.
    pub code: &'static str,
    /// The field at fault.
    pub field: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

/// A validated sender domain: lower-case ASCII (IDNA), at least two labels, each label 1-63
/// letters, digits or hyphens (not at either end), 253 characters at most.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SenderDomain(String);

fn valid_labels(name: &str) -> Result<(), String> {
    for label in name.split('.') {
        if label.is_empty() {
            return Err("has an empty label".to_owned());
        }
        if label.len() > 63 {
            return Err(format!("has a label longer than 63 characters ({label:?})"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!(
                "has a label with characters other than letters, digits and hyphens ({label:?})"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "has a label starting or ending with a hyphen ({label:?})"
            ));
        }
    }
    Ok(())
}

impl SenderDomain {
    /// Parses a domain as a user typed it (a trailing dot and upper case are accepted; Unicode
    /// is converted to its IDNA ASCII form).
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        let invalid = |why: String| DomainError {
            code: INVALID_DOMAIN,
            field: "domain",
            message: format!("`domain` {why}; expected a domain name such as mail.example.com"),
        };
        let trimmed = input.trim().trim_end_matches('.');
        if trimmed.is_empty() {
            return Err(invalid("is empty".to_owned()));
        }
        if trimmed.contains('@') {
            return Err(invalid(
                "is an email address; give only the part after the @".to_owned(),
            ));
        }
        let ascii = idna::domain_to_ascii(trimmed)
            .map_err(|_| invalid(format!("{trimmed:?} is not a valid domain name")))?;
        if ascii.len() > 253 {
            return Err(invalid("is longer than 253 characters".to_owned()));
        }
        valid_labels(&ascii).map_err(|why| invalid(format!("{ascii:?} {why}")))?;
        if !ascii.contains('.') {
            return Err(invalid(format!("{ascii:?} has a single label")));
        }
        if ascii.parse::<std::net::Ipv4Addr>().is_ok()
            || ascii
                .rsplit('.')
                .next()
                .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid(format!("{ascii:?} is an IP address, not a domain")));
        }
        Ok(Self(ascii))
    }

    /// The domain.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The custom MAIL FROM domain `<subdomain>.<domain>`, validated (one or more labels; not
    /// `_dmarc` or `_domainkey`, which hold other records).
    pub fn mail_from(&self, subdomain: &str) -> Result<String, DomainError> {
        let invalid = |why: String| DomainError {
            code: INVALID_MAIL_FROM_SUBDOMAIN,
            field: "mail_from_subdomain",
            message: format!(
                "`mail_from_subdomain` {why}; expected a label such as bounce (giving bounce.{})",
                self.0
            ),
        };
        let sub = subdomain.trim().trim_end_matches('.').to_ascii_lowercase();
        if sub.is_empty() {
            return Err(invalid("is empty".to_owned()));
        }
        if sub.ends_with(&format!(".{}", self.0)) || sub == self.0 {
            return Err(invalid(format!(
                "{sub:?} includes the domain; give only the part before .{}",
                self.0
            )));
        }
        valid_labels(&sub).map_err(|why| invalid(format!("{sub:?} {why}")))?;
        let full = format!("{sub}.{}", self.0);
        if full.len() > 253 {
            return Err(invalid(
                "makes a name longer than 253 characters".to_owned(),
            ));
        }
        Ok(full)
    }
}

impl std::fmt::Display for SenderDomain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The domain part of a sender address (lower case), or `None` without an `@`.
pub fn domain_of(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
}

/// Whether SES is the only provider that could carry a message: the message names SES
/// explicitly, or SES is the only configured provider.
pub fn ses_only(
    requested: Option<crate::ProviderId>,
    configured: impl IntoIterator<Item = crate::ProviderId>,
) -> bool {
    match requested {
        Some(p) => p == crate::ProviderId::Ses,
        None => {
            let mut configured = configured.into_iter();
            configured.next() == Some(crate::ProviderId::Ses) && configured.next().is_none()
        }
    }
}

/// Which record a [`DnsRecord`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordPurpose {
    /// One of the Easy DKIM CNAMEs.
    Dkim,
    /// The custom MAIL FROM domain's MX.
    MailFromMx,
    /// The SPF TXT record (at the MAIL FROM domain, or the domain without one).
    Spf,
    /// The DMARC policy.
    Dmarc,
}

/// The DNS record type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RecordType {
    /// An alias.
    #[serde(rename = "CNAME")]
    Cname,
    /// A mail exchanger.
    #[serde(rename = "MX")]
    Mx,
    /// Text.
    #[serde(rename = "TXT")]
    Txt,
}

impl RecordType {
    /// `CNAME`, `MX` or `TXT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cname => "CNAME",
            Self::Mx => "MX",
            Self::Txt => "TXT",
        }
    }
}

/// A record to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRecord {
    /// What it is for.
    pub purpose: RecordPurpose,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// Its name (fully qualified, without the trailing dot).
    pub name: String,
    /// Its value (an MX's exchange without the preference).
    pub value: String,
    /// An MX's preference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u16>,
    /// What to do after publishing it, when there is something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

/// The records a domain needs for SES: one DKIM CNAME per token SES gave, the MAIL FROM MX and
/// SPF at `mail_from` (SPF at the domain itself without a custom MAIL FROM), and the starting
/// DMARC record.
pub fn expected_records(
    domain: &SenderDomain,
    dkim_tokens: &[String],
    mail_from: Option<&str>,
    region: &str,
) -> Vec<DnsRecord> {
    let mut records: Vec<DnsRecord> = dkim_tokens
        .iter()
        .map(|token| DnsRecord {
            purpose: RecordPurpose::Dkim,
            kind: RecordType::Cname,
            name: format!("{token}._domainkey.{domain}"),
            value: format!("{token}.dkim.amazonses.com"),
            priority: None,
            advice: None,
        })
        .collect();
    if let Some(mail_from) = mail_from {
        records.push(DnsRecord {
            purpose: RecordPurpose::MailFromMx,
            kind: RecordType::Mx,
            name: mail_from.to_owned(),
            value: format!("feedback-smtp.{region}.amazonses.com"),
            priority: Some(MAIL_FROM_MX_PRIORITY),
            advice: None,
        });
    }
    records.push(DnsRecord {
        purpose: RecordPurpose::Spf,
        kind: RecordType::Txt,
        name: mail_from.unwrap_or(domain.as_str()).to_owned(),
        value: SPF_VALUE.to_owned(),
        priority: None,
        advice: mail_from.is_none().then(|| {
            "without a custom MAIL FROM domain SES sends with its own (amazonses.com), so SPF \
             does not align with your domain and DMARC relies on DKIM; if the domain already \
             has an SPF record, add include:amazonses.com to it instead of publishing a second"
                .to_owned()
        }),
    });
    records.push(DnsRecord {
        purpose: RecordPurpose::Dmarc,
        kind: RecordType::Txt,
        name: format!("_dmarc.{domain}"),
        value: DMARC_START.to_owned(),
        priority: None,
        advice: Some(DMARC_ADVICE.to_owned()),
    });
    records
}

/// What a DNS lookup of one name and type found. Values are normalised: a CNAME's target and
/// an MX's exchange lower case without the trailing dot, an MX as `<preference> <exchange>`,
/// a TXT record's strings joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// The records of that type at the name.
    Records(Vec<String>),
    /// The name does not exist or holds no record of that type.
    NoRecords,
    /// The lookup failed (timeout, server failure): nothing is known.
    Failed(String),
}

/// The verdict on one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Published as needed.
    Ok,
    /// Not published.
    Missing,
    /// Published, but wrong.
    Wrong,
    /// The lookup failed.
    Unknown,
}

/// One record's check: what was expected, what was found, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordCheck {
    /// The record expected.
    #[serde(flatten)]
    pub record: DnsRecord,
    /// The verdict.
    pub status: CheckStatus,
    /// The records found (of the relevant kind).
    pub found: Vec<String>,
    /// The verdict in words.
    pub message: String,
}

fn normalise(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn is_spf(txt: &str) -> bool {
    let t = txt.trim_start().to_ascii_lowercase();
    t == "v=spf1" || t.starts_with("v=spf1 ")
}

fn is_dmarc(txt: &str) -> bool {
    txt.trim_start()
        .to_ascii_lowercase()
        .replace(' ', "")
        .starts_with("v=dmarc1;")
        || txt.trim().eq_ignore_ascii_case("v=DMARC1")
}

fn dmarc_policy(txt: &str) -> Option<String> {
    txt.split(';').skip(1).find_map(|tag| {
        let (k, v) = tag.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("p")).then(|| v.trim().to_ascii_lowercase())
    })
}

/// Checks what the resolver found for `record` (looked up at its name and type).
pub fn check_record(record: &DnsRecord, observed: &Observed) -> RecordCheck {
    let name = &record.name;
    let kind = record.kind.as_str();
    let verdict = |status, found: Vec<String>, message: String| RecordCheck {
        record: record.clone(),
        status,
        found,
        message,
    };
    let found = match observed {
        Observed::Failed(why) => {
            return verdict(
                CheckStatus::Unknown,
                Vec::new(),
                format!("the {kind} lookup of {name} failed ({why}); nothing is known, try again"),
            );
        }
        Observed::NoRecords => Vec::new(),
        Observed::Records(r) => r.clone(),
    };
    match record.purpose {
        RecordPurpose::Dkim => {
            let expected = normalise(&record.value);
            let targets: Vec<String> = found.iter().map(|t| normalise(t)).collect();
            if targets.is_empty() {
                verdict(
                    CheckStatus::Missing,
                    targets,
                    format!(
                        "the DKIM CNAME {name} is missing: publish {name} CNAME {expected} so \
                         SES can sign with your domain"
                    ),
                )
            } else if targets.contains(&expected) {
                verdict(
                    CheckStatus::Ok,
                    targets,
                    format!("the DKIM CNAME {name} points to {expected}"),
                )
            } else {
                let message = format!(
                    "the DKIM CNAME {name} points to {} instead of {expected}: SES cannot find \
                     its key there; change the record's target",
                    targets.join(", ")
                );
                verdict(CheckStatus::Wrong, targets, message)
            }
        }
        RecordPurpose::MailFromMx => {
            let expected = normalise(&record.value);
            let exchanges: Vec<(Option<u16>, String)> = found
                .iter()
                .map(|mx| match mx.split_once(' ') {
                    Some((p, e)) => (p.parse().ok(), normalise(e)),
                    None => (None, normalise(mx)),
                })
                .collect();
            if exchanges.is_empty() {
                verdict(
                    CheckStatus::Missing,
                    found,
                    format!(
                        "the MAIL FROM MX record at {name} is missing: publish {name} MX {} \
                         {expected}, or SES falls back to its own MAIL FROM (amazonses.com) and \
                         SPF no longer aligns with your domain",
                        record.priority.unwrap_or(MAIL_FROM_MX_PRIORITY)
                    ),
                )
            } else if exchanges.iter().any(|(_, e)| *e == expected) {
                verdict(
                    CheckStatus::Ok,
                    found,
                    format!("the MAIL FROM MX record at {name} points to {expected}"),
                )
            } else {
                let message = format!(
                    "the MX record at {name} points to {} instead of {expected}: bounces to the \
                     MAIL FROM domain will not reach SES; change it",
                    exchanges
                        .iter()
                        .map(|(_, e)| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                verdict(CheckStatus::Wrong, found, message)
            }
        }
        RecordPurpose::Spf => {
            let spf: Vec<String> = found.into_iter().filter(|t| is_spf(t)).collect();
            match spf.as_slice() {
                [] => verdict(
                    CheckStatus::Missing,
                    spf,
                    format!(
                        "there is no SPF record at {name}: publish {name} TXT \"{}\"",
                        record.value
                    ),
                ),
                [one] => {
                    let includes = one
                        .split_whitespace()
                        .any(|term| term.eq_ignore_ascii_case("include:amazonses.com"));
                    if includes {
                        verdict(
                            CheckStatus::Ok,
                            spf.clone(),
                            format!("the SPF record at {name} includes amazonses.com"),
                        )
                    } else {
                        verdict(
                            CheckStatus::Wrong,
                            spf.clone(),
                            format!(
                                "the SPF record at {name} does not include amazonses.com: add \
                                 include:amazonses.com before its all term (keep one record)"
                            ),
                        )
                    }
                }
                many => {
                    let message = format!(
                        "there are {} SPF records at {name}: receivers treat more than one as a \
                         permanent error and SPF fails for all your mail; merge them into one \
                         record that includes amazonses.com",
                        many.len()
                    );
                    verdict(CheckStatus::Wrong, spf, message)
                }
            }
        }
        RecordPurpose::Dmarc => {
            let dmarc: Vec<String> = found.into_iter().filter(|t| is_dmarc(t)).collect();
            match dmarc.as_slice() {
                [] => verdict(
                    CheckStatus::Missing,
                    dmarc,
                    format!(
                        "there is no DMARC record at {name}: publish {name} TXT \"{}\" to start \
                         (monitoring only), then tighten the policy",
                        record.value
                    ),
                ),
                [one] => match dmarc_policy(one).as_deref() {
                    Some("none") => verdict(
                        CheckStatus::Ok,
                        dmarc.clone(),
                        format!("the DMARC record at {name} has p=none: {DMARC_ADVICE}"),
                    ),
                    Some(p @ ("quarantine" | "reject")) => verdict(
                        CheckStatus::Ok,
                        dmarc.clone(),
                        format!("the DMARC record at {name} has p={p}"),
                    ),
                    Some(other) => verdict(
                        CheckStatus::Wrong,
                        dmarc.clone(),
                        format!(
                            "the DMARC record at {name} has an unknown policy p={other}: use \
                             none, quarantine or reject"
                        ),
                    ),
                    None => verdict(
                        CheckStatus::Wrong,
                        dmarc.clone(),
                        format!(
                            "the DMARC record at {name} has no p= policy tag right after \
                             v=DMARC1: receivers ignore it; publish \"{}\"",
                            record.value
                        ),
                    ),
                },
                many => {
                    let message = format!(
                        "there are {} DMARC records at {name}: receivers ignore DMARC when there \
                         is more than one; keep one",
                        many.len()
                    );
                    verdict(CheckStatus::Wrong, dmarc, message)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> SenderDomain {
        SenderDomain::parse("Mail.Example.COM.").unwrap()
    }

    #[test]
    fn domains_are_validated_with_a_code() {
        assert_eq!(domain().as_str(), "mail.example.com");
        assert_eq!(
            SenderDomain::parse("bücher.example").unwrap().as_str(),
            "xn--bcher-kva.example"
        );
        for bad in [
            "",
            "localhost",
            "a@example.com",
            "exa mple.com",
            "-a.example.com",
            "a..example.com",
            "10.0.0.1",
            &format!("{}.com", "a".repeat(64)),
        ] {
            let err = SenderDomain::parse(bad).unwrap_err();
            assert_eq!(err.code, INVALID_DOMAIN, "{bad:?}");
            assert_eq!(err.field, "domain");
        }
        assert_eq!(
            domain().mail_from("Bounce").unwrap(),
            "bounce.mail.example.com"
        );
        for bad in ["", "bounce.mail.example.com", "b_x", "-b"] {
            assert_eq!(
                domain().mail_from(bad).unwrap_err().code,
                INVALID_MAIL_FROM_SUBDOMAIN,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ses_is_the_only_carrier_when_named_or_alone() {
        use crate::ProviderId::{Postmark, Ses};
        assert!(ses_only(Some(Ses), [Ses, Postmark]));
        assert!(!ses_only(Some(Postmark), [Ses]));
        assert!(ses_only(None, [Ses]));
        assert!(!ses_only(None, [Ses, Postmark]));
        assert!(!ses_only(None, [Postmark]));
    }

    #[test]
    fn the_records_to_publish_follow_the_tokens_and_mail_from() {
        let tokens = vec!["t1".to_owned(), "t2".to_owned(), "t3".to_owned()];
        let records = expected_records(
            &domain(),
            &tokens,
            Some("bounce.mail.example.com"),
            "eu-west-1",
        );
        assert_eq!(records.len(), 6);
        assert_eq!(records[0].name, "t1._domainkey.mail.example.com");
        assert_eq!(records[0].value, "t1.dkim.amazonses.com");
        assert_eq!(records[3].kind, RecordType::Mx);
        assert_eq!(records[3].value, "feedback-smtp.eu-west-1.amazonses.com");
        assert_eq!(records[3].priority, Some(10));
        assert_eq!(records[4].name, "bounce.mail.example.com");
        assert_eq!(records[4].value, SPF_VALUE);
        assert_eq!(records[5].name, "_dmarc.mail.example.com");
        assert!(records[5].value.contains("p=none"));
        assert!(records[5].advice.as_deref().unwrap().contains("p=reject"));
        let bare = expected_records(&domain(), &[], None, "us-east-1");
        assert_eq!(bare.len(), 2);
        assert_eq!(bare[0].name, "mail.example.com");
    }

    fn records(v: &[&str]) -> Observed {
        Observed::Records(v.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn the_verdict_names_what_is_missing_or_wrong() {
        let tokens = vec!["t1".to_owned()];
        let all = expected_records(&domain(), &tokens, Some("b.mail.example.com"), "us-east-1");
        let (dkim, mx, spf, dmarc) = (&all[0], &all[1], &all[2], &all[3]);

        let ok = check_record(dkim, &records(&["T1.dkim.amazonses.com."]));
        assert_eq!(ok.status, CheckStatus::Ok);
        let elsewhere = check_record(dkim, &records(&["t1.dkim.example.net"]));
        assert_eq!(elsewhere.status, CheckStatus::Wrong);
        assert!(
            elsewhere
                .message
                .contains("points to t1.dkim.example.net instead of t1.dkim.amazonses.com")
        );
        let missing = check_record(dkim, &Observed::NoRecords);
        assert_eq!(missing.status, CheckStatus::Missing);
        assert!(missing.message.contains("is missing"));
        let failed = check_record(dkim, &Observed::Failed("timed out".into()));
        assert_eq!(failed.status, CheckStatus::Unknown);

        assert_eq!(
            check_record(mx, &records(&["10 feedback-smtp.us-east-1.amazonses.com."])).status,
            CheckStatus::Ok
        );
        let other_mx = check_record(mx, &records(&["10 mx.example.net"]));
        assert_eq!(other_mx.status, CheckStatus::Wrong);
        assert!(
            check_record(mx, &Observed::NoRecords)
                .message
                .contains("MX record at b.mail.example.com is missing")
        );

        let two = check_record(
            spf,
            &records(&[
                "v=spf1 include:amazonses.com ~all",
                "v=spf1 mx -all",
                "google-site-verification=x",
            ]),
        );
        assert_eq!(two.status, CheckStatus::Wrong);
        assert!(two.message.contains("there are 2 SPF records"));
        let no_include = check_record(spf, &records(&["v=spf1 mx -all"]));
        assert_eq!(no_include.status, CheckStatus::Wrong);
        assert!(
            no_include
                .message
                .contains("does not include amazonses.com")
        );
        assert_eq!(
            check_record(spf, &records(&["v=spf1 include:amazonses.com ~all"])).status,
            CheckStatus::Ok
        );
        assert!(
            check_record(spf, &records(&["other"]))
                .message
                .contains("no SPF record")
        );

        let absent = check_record(dmarc, &Observed::NoRecords);
        assert_eq!(absent.status, CheckStatus::Missing);
        assert!(
            absent
                .message
                .contains("there is no DMARC record at _dmarc.mail.example.com")
        );
        let none = check_record(
            dmarc,
            &records(&["v=DMARC1; p=none; rua=mailto:d@example.com"]),
        );
        assert_eq!(none.status, CheckStatus::Ok);
        assert!(none.message.contains("tighten"));
        assert_eq!(
            check_record(dmarc, &records(&["v=DMARC1; p=reject"])).status,
            CheckStatus::Ok
        );
        assert_eq!(
            check_record(dmarc, &records(&["v=DMARC1; rua=mailto:x@example.com"])).status,
            CheckStatus::Wrong
        );
        assert!(
            check_record(dmarc, &records(&["v=DMARC1; p=none", "v=DMARC1; p=reject"]))
                .message
                .contains("2 DMARC records")
        );
    }
}
