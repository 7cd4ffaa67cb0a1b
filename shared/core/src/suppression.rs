//! The suppression list: addresses mailgate must not send to, why, and until when.
//!
//! An address is suppressed for a [`SuppressionReason`] (a hard bounce, a complaint, an
//! unsubscribe, too many soft bounces, or an operator's decision), optionally until an expiry.
//! An entry whose expiry has passed is not a suppression any more ([`Suppression::is_active_at`]),
//! whether or not storage has deleted it yet (DynamoDB TTL deletes lazily).
//!
//! Addresses are suppressed by their [`suppression_key`]: the address's
//! [canonical form](EmailAddress::canonical) — needless quotes removed from the local part, the
//! whole address lower-cased as Unicode, the domain in its IDNA ASCII (punycode) form. RFC 5321
//! lets a mailbox treat `Jane@` and `jane@` as different, but practically no receiving system
//! does, and a complaint from `Jane@example.com` must stop mail to `"jane"@example.com`,
//! `JANE@example.com` and, for an internationalised domain, both its Unicode and punycode
//! spellings: sending to someone who complained costs more than missing a mailbox that differs
//! only in spelling. A plain ASCII address keys exactly as it did before canonical forms (ASCII
//! lower case), so entries stored earlier still match.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use time::OffsetDateTime;

use crate::address::EmailAddress;

/// The longest operator note kept with a suppression, in characters.
pub const MAX_NOTE_CHARS: usize = 1_000;

/// Why an address is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SuppressionReason {
    /// The receiving system said the address does not exist (address-level permanent failure).
    HardBounce,
    /// The recipient marked a message as spam.
    Complaint,
    /// The recipient unsubscribed.
    Unsubscribe,
    /// Too many distinct soft bounces within the counting window.
    SoftBounceThreshold,
    /// An operator suppressed the address through the API.
    Manual,
}

impl SuppressionReason {
    /// Every reason, in a stable order.
    pub const ALL: [SuppressionReason; 5] = [
        SuppressionReason::HardBounce,
        SuppressionReason::Complaint,
        SuppressionReason::Unsubscribe,
        SuppressionReason::SoftBounceThreshold,
        SuppressionReason::Manual,
    ];

    /// The snake_case name used in the API and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionReason::HardBounce => "hard_bounce",
            SuppressionReason::Complaint => "complaint",
            SuppressionReason::Unsubscribe => "unsubscribe",
            SuppressionReason::SoftBounceThreshold => "soft_bounce_threshold",
            SuppressionReason::Manual => "manual",
        }
    }
}

impl fmt::Display for SuppressionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A suppression reason mailgate does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown suppression reason {0:?}; expected one of hard_bounce, complaint, unsubscribe, \
     soft_bounce_threshold, manual"
)]
pub struct UnknownSuppressionReason(pub String);

impl FromStr for SuppressionReason {
    type Err = UnknownSuppressionReason;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SuppressionReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownSuppressionReason(s.to_owned()))
    }
}

/// Why a suppression cannot be made as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuppressionError {
    /// The expiry is not after the time the suppression is made.
    #[error("the expiry must be in the future")]
    ExpiryNotInFuture,
    /// The note is longer than [`MAX_NOTE_CHARS`].
    #[error("the note is {0} characters long; the limit is {MAX_NOTE_CHARS}")]
    NoteTooLong(usize),
}

/// The key an address is suppressed under: its [canonical form](EmailAddress::canonical). Every
/// suppression write, check, read and delete goes through this one function.
pub fn suppression_key(address: &EmailAddress) -> String {
    address.canonical()
}

/// The address in the form suppressions are stored and reported in (see [`suppression_key`]).
pub fn normalise_address(address: &EmailAddress) -> EmailAddress {
    // The canonical form of a valid address is valid, except that IDNA can lengthen a domain past
    // the SMTP limit; keep the input then (its key is the same canonical form either way).
    EmailAddress::parse(&suppression_key(address)).unwrap_or_else(|_| address.clone())
}

/// One suppressed address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// The address, normalised by [`normalise_address`].
    pub address: EmailAddress,
    /// Why it is suppressed.
    pub reason: SuppressionReason,
    /// When it was suppressed (whole milliseconds).
    pub created_at: OffsetDateTime,
    /// When it stops being a suppression (whole seconds), if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// An operator's note.
    pub note: Option<String>,
    /// Who wrote it: the API (an operator or the app), or a delivery event.
    pub origin: SuppressionOrigin,
    /// The subscription topic it is scoped to (an unsubscribe from mail on that topic): it stops
    /// bulk mail on that topic only. `None`: every message it applies to.
    pub topic: Option<String>,
}

/// Who wrote a suppression. Entries that delivery events wrote (bounces, complaints,
/// unsubscribes, the soft-bounce threshold) protect live mail: a `test` key may not lift them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SuppressionOrigin {
    /// Written through the API (`PUT /v1/suppressions/{address}`) or by an operator.
    Api,
    /// Written by the event processor from a provider's event.
    Event,
}

impl SuppressionOrigin {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionOrigin::Api => "api",
            SuppressionOrigin::Event => "event",
        }
    }
}

impl Suppression {
    /// A suppression of `address` for `reason` made at `now`, with no expiry and no note.
    pub fn new(address: &EmailAddress, reason: SuppressionReason, now: OffsetDateTime) -> Self {
        Self {
            address: normalise_address(address),
            reason,
            created_at: truncate_to_millis(now),
            expires_at: None,
            note: None,
            origin: SuppressionOrigin::Api,
            topic: None,
        }
    }

    /// The same suppression scoped to `topic` (see [`Suppression::topic`]).
    pub fn on_topic(mut self, topic: Option<String>) -> Self {
        self.topic = topic;
        self
    }

    /// The same suppression lapsing at `expires_at`, which must be after its creation time. The
    /// expiry is rounded up to the whole second (the resolution of the storage TTL), so it never
    /// lapses early.
    pub fn expiring_at(mut self, expires_at: OffsetDateTime) -> Result<Self, SuppressionError> {
        if expires_at <= self.created_at {
            return Err(SuppressionError::ExpiryNotInFuture);
        }
        self.expires_at = Some(ceil_to_second(expires_at));
        Ok(self)
    }

    /// The same suppression lapsing `after` its creation.
    pub fn expiring_after(self, after: Duration) -> Result<Self, SuppressionError> {
        let at = self.created_at + after;
        self.expiring_at(at)
    }

    /// The same suppression with an operator's note (at most [`MAX_NOTE_CHARS`] characters).
    pub fn with_note(mut self, note: impl Into<String>) -> Result<Self, SuppressionError> {
        let note = note.into();
        let chars = note.chars().count();
        if chars > MAX_NOTE_CHARS {
            return Err(SuppressionError::NoteTooLong(chars));
        }
        self.note = Some(note);
        Ok(self)
    }

    /// Whether the entry suppresses its address at `now`: it does until its expiry, if any.
    pub fn is_active_at(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_none_or(|expires_at| now < expires_at)
    }

    /// The key the entry is stored under ([`suppression_key`]).
    pub fn key(&self) -> String {
        suppression_key(&self.address)
    }
}

fn truncate_to_millis(at: OffsetDateTime) -> OffsetDateTime {
    let extra = at.nanosecond() % 1_000_000;
    at - time::Duration::nanoseconds(i64::from(extra))
}

fn ceil_to_second(at: OffsetDateTime) -> OffsetDateTime {
    let nanos = at.nanosecond();
    if nanos == 0 {
        at
    } else {
        at + time::Duration::nanoseconds(i64::from(1_000_000_000 - nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    #[test]
    fn reasons_round_trip_through_their_names() {
        for reason in SuppressionReason::ALL {
            assert_eq!(reason.as_str().parse::<SuppressionReason>(), Ok(reason));
        }
        assert_eq!(
            "soft_bounce_threshold".parse(),
            Ok(SuppressionReason::SoftBounceThreshold)
        );
        assert!("Hard_Bounce".parse::<SuppressionReason>().is_err());
        assert!("bounce".parse::<SuppressionReason>().is_err());
    }

    #[test]
    fn addresses_are_suppressed_whatever_the_case_of_their_local_part() {
        let a = addr("Jane.Doe@Example.COM");
        assert_eq!(suppression_key(&a), "jane.doe@example.com");
        assert_eq!(
            suppression_key(&a),
            suppression_key(&addr("jane.doe@example.com"))
        );
        let s = Suppression::new(
            &a,
            SuppressionReason::Complaint,
            datetime!(2026-01-01 0:00 UTC),
        );
        assert_eq!(s.address.as_str(), "jane.doe@example.com");
        assert_eq!(s.key(), "jane.doe@example.com");
    }

    #[test]
    fn non_ascii_local_parts_are_lower_cased_as_unicode() {
        let a = addr("Ünïcode.X@example.com");
        assert_eq!(suppression_key(&a), "ünïcode.x@example.com");
        assert_eq!(
            suppression_key(&addr("JÄNE@example.com")),
            suppression_key(&addr("jäne@example.com"))
        );
    }

    #[test]
    fn a_needlessly_quoted_local_part_is_the_same_mailbox() {
        for variant in [
            "\"jane\"@example.com",
            "\"JANE\"@Example.com",
            "\"j\\ane\"@example.com",
        ] {
            assert_eq!(
                suppression_key(&addr(variant)),
                "jane@example.com",
                "{variant}"
            );
        }
        // A quoted local part that needs its quotes keeps them (escapes made minimal).
        assert_eq!(
            suppression_key(&addr("\"Jane Doe\"@example.com")),
            "\"jane doe\"@example.com"
        );
        assert_eq!(
            suppression_key(&addr("\"a..b\"@example.com")),
            "\"a..b\"@example.com"
        );
    }

    #[test]
    fn an_internationalised_domain_is_keyed_by_its_ascii_form() {
        let ascii = suppression_key(&addr("jane@xn--bcher-kva.example"));
        assert_eq!(ascii, "jane@xn--bcher-kva.example");
        for variant in [
            "jane@bücher.example",
            "JANE@BÜCHER.example",
            "jane@XN--BCHER-KVA.example",
        ] {
            assert_eq!(suppression_key(&addr(variant)), ascii, "{variant}");
        }
        assert_eq!(
            suppression_key(&addr("JÄNE@bücher.example")),
            "jäne@xn--bcher-kva.example"
        );
    }

    #[test]
    fn plain_ascii_keys_are_unchanged_so_stored_entries_still_match() {
        // The key before canonical forms: the whole address with ASCII letters lower-cased.
        for plain in [
            "jane@example.com",
            "Jane.Doe+news@Example.COM",
            "o'brien_x-y@sub.example.co.uk",
            "UPPER@EXAMPLE.ORG",
        ] {
            let a = addr(plain);
            assert_eq!(
                suppression_key(&a),
                a.as_str().to_ascii_lowercase(),
                "{plain}"
            );
        }
    }

    #[test]
    fn the_canonical_form_is_a_fixed_point() {
        for input in [
            "\"JANE\"@bücher.example",
            "\"Jane Doe\"@example.com",
            "Ünïcode.X@EXAMPLE.com",
        ] {
            let once = normalise_address(&addr(input));
            assert_eq!(once.as_str(), suppression_key(&addr(input)), "{input}");
            assert_eq!(suppression_key(&once), once.as_str(), "{input}");
        }
    }

    #[test]
    fn an_entry_without_expiry_is_always_active() {
        let now = datetime!(2026-01-01 0:00 UTC);
        let s = Suppression::new(&addr("a@example.com"), SuppressionReason::HardBounce, now);
        assert!(s.is_active_at(now));
        assert!(s.is_active_at(now + time::Duration::days(10_000)));
    }

    #[test]
    fn an_expired_entry_is_not_a_suppression() {
        let now = datetime!(2026-01-01 0:00 UTC);
        let s = Suppression::new(&addr("a@example.com"), SuppressionReason::Manual, now)
            .expiring_after(Duration::from_secs(60))
            .unwrap();
        assert!(s.is_active_at(now + time::Duration::seconds(59)));
        assert!(!s.is_active_at(now + time::Duration::seconds(60)));
        assert!(!s.is_active_at(now + time::Duration::days(1)));
    }

    #[test]
    fn an_expiry_must_be_in_the_future_and_is_rounded_up_to_the_second() {
        let now = datetime!(2026-01-01 0:00:00.250 UTC);
        let s = Suppression::new(&addr("a@example.com"), SuppressionReason::Manual, now);
        assert_eq!(
            s.clone().expiring_at(now),
            Err(SuppressionError::ExpiryNotInFuture)
        );
        assert_eq!(
            s.clone().expiring_at(now - time::Duration::hours(1)),
            Err(SuppressionError::ExpiryNotInFuture)
        );
        let later = s
            .expiring_at(datetime!(2026-01-01 0:00:00.500 UTC))
            .unwrap();
        assert_eq!(later.expires_at, Some(datetime!(2026-01-01 0:00:01 UTC)));
    }

    #[test]
    fn creation_time_is_kept_to_the_millisecond() {
        let s = Suppression::new(
            &addr("a@example.com"),
            SuppressionReason::Manual,
            datetime!(2026-01-01 0:00:00.123_456_789 UTC),
        );
        assert_eq!(s.created_at, datetime!(2026-01-01 0:00:00.123 UTC));
    }

    #[test]
    fn notes_are_capped() {
        let s = Suppression::new(
            &addr("a@example.com"),
            SuppressionReason::Manual,
            datetime!(2026-01-01 0:00 UTC),
        );
        assert_eq!(
            s.clone().with_note("é".repeat(1_001)),
            Err(SuppressionError::NoteTooLong(1_001))
        );
        let noted = s.with_note("é".repeat(1_000)).unwrap();
        assert_eq!(noted.note.map(|n| n.chars().count()), Some(1_000));
    }
}
