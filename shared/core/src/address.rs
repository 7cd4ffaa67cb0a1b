//! Validated email addresses.
//!
//! Parsing is delegated to the `email_address` crate (RFC 5322 addr-spec); on top of it we reject
//! anything that could smuggle a header (CR, LF, NUL), display-name forms, and addresses longer than
//! SMTP allows, and we lower-case the domain (domains are case-insensitive, local parts are not).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// RFC 5321 §4.5.3.1.3: a forward-path is at most 256 octets including the angle brackets.
const MAX_ADDRESS_LEN: usize = 254;

/// Why a string is not an acceptable email address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The input was empty or only whitespace.
    #[error("the address is empty")]
    Empty,
    /// The input contains CR, LF or NUL, which could inject headers.
    #[error("the address contains a line break or NUL character")]
    ControlCharacter,
    /// The input is longer than SMTP allows.
    #[error("the address is longer than {MAX_ADDRESS_LEN} characters")]
    TooLong,
    /// The input is not a bare RFC 5322 addr-spec.
    #[error("the address is not a valid email address: {0}")]
    Invalid(String),
}

/// A syntactically valid email address with a lower-cased domain, e.g. `Jane.Doe@example.com`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress {
    value: String,
    at: usize,
}

impl EmailAddress {
    /// Parses and normalises an address; surrounding whitespace is ignored.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        if input.contains(['\r', '\n', '\0']) {
            return Err(AddressError::ControlCharacter);
        }
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(AddressError::Empty);
        }
        if trimmed.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        let options = email_address::Options::default()
            .without_display_text()
            .without_domain_literal();
        let parsed = email_address::EmailAddress::parse_with_options(trimmed, options)
            .map_err(|e| AddressError::Invalid(e.to_string()))?;
        let local = parsed.local_part();
        let domain = parsed.domain().to_ascii_lowercase();
        let value = format!("{local}@{domain}");
        Ok(Self {
            at: local.len(),
            value,
        })
    }

    /// The whole address as text.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// The part before the `@`, case preserved.
    pub fn local_part(&self) -> &str {
        &self.value[..self.at]
    }

    /// The lower-cased domain.
    pub fn domain(&self) -> &str {
        &self.value[self.at + 1..]
    }

    /// The one canonical form of the mailbox, used wherever two spellings must count as the
    /// same recipient (suppression keys, recipient de-duplication):
    ///
    /// - the local part **unquoted** when its quotes are unnecessary (`"jane"@` → `jane@`; a
    ///   quoted-pair `\x` is just `x`), and otherwise re-quoted with only `"` and `\` escaped;
    /// - the local part **lower-cased as Unicode** (`JÄNE` → `jäne`);
    /// - the domain in its **IDNA ASCII form** (UTS 46, so `BÜCHER.example` and
    ///   `xn--bcher-kva.example` agree); a domain IDNA refuses is only lower-cased.
    ///
    /// A plain ASCII address canonicalises to itself with ASCII letters lower-cased, which is the
    /// suppression key stored before canonical forms existed, so existing entries still match.
    pub fn canonical(&self) -> String {
        let local = canonical_local_part(self.local_part()).to_lowercase();
        let domain = self.domain();
        let domain = if domain.is_ascii() {
            // Already lower-cased by `parse`; keeps plain keys byte-for-byte as they were.
            domain.to_owned()
        } else {
            idna::domain_to_ascii(domain).unwrap_or_else(|_| domain.to_lowercase())
        };
        format!("{local}@{domain}")
    }

    /// The address with the local part hidden (`j***@example.com`), for logs.
    pub fn masked(&self) -> String {
        let first = self.local_part().chars().next().unwrap_or('*');
        format!("{first}***@{}", self.domain())
    }
}

/// RFC 5322 `atext`, extended by RFC 6532 to every non-ASCII character.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// RFC 5322 `dot-atom-text`: atext runs separated by single dots, none at either end.
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|run| !run.is_empty() && run.chars().all(is_atext))
}

/// The local part without needless quotes: a quoted string whose content is a dot-atom is that
/// dot-atom; any other quoted string is re-quoted with the fewest escapes. Hand-written because
/// `email_address` validates quoting but does not say what the quoted content is.
fn canonical_local_part(local: &str) -> String {
    let Some(quoted) = local
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return local.to_owned();
    };
    let mut content = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        // A quoted-pair `\x` stands for `x`.
        content.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    if is_dot_atom(&content) {
        return content;
    }
    let mut requoted = String::with_capacity(content.len() + 2);
    requoted.push('"');
    for c in content.chars() {
        if matches!(c, '"' | '\\') {
            requoted.push('\\');
        }
        requoted.push(c);
    }
    requoted.push('"');
    requoted
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// `Debug` masks the address so it cannot leak into logs by accident.
impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmailAddress({})", self.masked())
    }
}

impl FromStr for EmailAddress {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for EmailAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.value)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_cases_the_domain_but_keeps_the_local_part() {
        let a = EmailAddress::parse("Jane.Doe@Example.COM").unwrap();
        assert_eq!(a.as_str(), "Jane.Doe@example.com");
        assert_eq!(a.local_part(), "Jane.Doe");
        assert_eq!(a.domain(), "example.com");
    }

    #[test]
    fn trims_surrounding_whitespace() {
        assert_eq!(
            EmailAddress::parse("  a@example.com ").unwrap().as_str(),
            "a@example.com"
        );
    }

    #[test]
    fn rejects_header_injection() {
        for bad in [
            "a@example.com\r\nBcc: x@evil.test",
            "a@example.com\n",
            "a\r@example.com",
            "a@exa\0mple.com",
        ] {
            assert_eq!(
                EmailAddress::parse(bad),
                Err(AddressError::ControlCharacter),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "plainaddress",
            "@example.com",
            "a@",
            "a@@example.com",
            "Jane <jane@example.com>",
            "a@[127.0.0.1]",
        ] {
            assert!(
                matches!(EmailAddress::parse(bad), Err(AddressError::Invalid(_))),
                "{bad:?} should be invalid"
            );
        }
        assert_eq!(EmailAddress::parse("   "), Err(AddressError::Empty));
    }

    #[test]
    fn rejects_overlong_addresses() {
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(EmailAddress::parse(&long), Err(AddressError::TooLong));
    }

    #[test]
    fn masks_the_local_part_in_debug_and_masked() {
        let a = EmailAddress::parse("jane@example.com").unwrap();
        assert_eq!(a.masked(), "j***@example.com");
        assert_eq!(format!("{a:?}"), "EmailAddress(j***@example.com)");
        assert!(!format!("{a:?}").contains("jane"));
    }

    #[test]
    fn round_trips_through_serde_with_validation() {
        let a: EmailAddress = serde_json::from_str("\"x@EXAMPLE.com\"").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"x@example.com\"");
        assert!(serde_json::from_str::<EmailAddress>("\"not an address\"").is_err());
    }
}
