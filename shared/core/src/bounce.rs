//! Bounce classification: what a delivery-failure report says about the recipient address.
//!
//! A bounce is described by [`BounceEvidence`]: the diagnostic text, the enhanced status code
//! (RFC 3463, [`EnhancedStatus`]) and the SMTP reply code. [`classify`] turns it into a
//! [`BounceClassification`]: a [`BounceKind`] (permanent or transient), a [`BounceCause`] that
//! separates recipient problems from sender-side and transient ones, and whether the address
//! should be suppressed.
//!
//! Evidence is weighed from the most to the least specific:
//! 1. well-known phrases of real MTAs ("user unknown", "mailbox full", "dmarc", "spamhaus", …)
//!    name the cause when the codes are generic;
//! 2. the enhanced status code's subject and detail give the base cause, and its class (4 or 5)
//!    decides transient or permanent — a `4.x.x` is never hard;
//! 3. the reply code (RFC 5321) is the weakest evidence, used only when nothing else speaks.
//!
//! When the evidence conflicts (a "user unknown" text with a status that names the sender, a
//! policy or a mailbox state; a recipient rejection that came after the message data, which is a
//! content filter), the classification takes the reading that does not suppress: a wrongly
//! suppressed address is the costliest error. Suppression applies only to address-level permanent
//! failures and never to sender-side causes.
//!
//! "User unknown" needs corroboration. The classic wording ("user unknown", "unknown user", "no
//! such user") is also what content and domain filters answer after the message data, so it
//! condemns the address only when the status is about addressing (`x.1.x`), when the refusal
//! answered `RCPT TO` (where mailboxes are looked up), or, with no specific status, when the
//! wording says the recipient address was looked up and not found ("unknown recipient", "address
//! not found", "not listed in … directory"). Otherwise it is read as a filter's refusal
//! ([`BounceCause::Policy`]), as is a "user unknown" reply that names no address
//! (`550 : User unknown`). A receiving-side catch-all code (`x.7.0`/`x.7.1`, `x.2.1`) gives way to
//! a "user unknown" that answered `RCPT TO`.
//!
//! The verdict keeps one invariant that [`crate::event`] relies on: `suppress` is exactly "hard
//! and the cause is user unknown, host unknown or moved", so a caller that recomputes it from
//! `kind` and `cause` gets the same answer.
//!
//! Phrase matching is hand-written substring matching on the lower-cased text (plus one look
//! behind a `": user unknown"` for the reply code before it): the phrases are plain words, and
//! the core crate stays free of a regex dependency.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An RFC 3463 enhanced status code, `class.subject.detail` (e.g. `5.1.1`). Serialized as that
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedStatus {
    /// 2 success, 4 persistent transient failure, 5 permanent failure.
    pub class: u8,
    /// What the code is about: 1 addressing, 2 mailbox, 3 mail system, 4 network and routing,
    /// 5 protocol, 6 content, 7 security and policy.
    pub subject: u16,
    /// The detail within the subject.
    pub detail: u16,
}

/// The text is not an enhanced status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an enhanced status code (class.subject.detail): {0:?}")]
pub struct MalformedStatus(pub String);

impl EnhancedStatus {
    /// Parses `class.subject.detail`: a class of 2, 4 or 5 and up to three digits each for the
    /// subject and the detail.
    pub fn parse(input: &str) -> Result<Self, MalformedStatus> {
        let malformed = || MalformedStatus(input.to_owned());
        let mut parts = input.trim().split('.');
        let (Some(class), Some(subject), Some(detail), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let number = |part: &str, max_len: usize| {
            if part.is_empty() || part.len() > max_len || !part.bytes().all(|b| b.is_ascii_digit())
            {
                None
            } else {
                part.parse::<u16>().ok()
            }
        };
        let class = number(class, 1).ok_or_else(malformed)?;
        let subject = number(subject, 3).ok_or_else(malformed)?;
        let detail = number(detail, 3).ok_or_else(malformed)?;
        if !matches!(class, 2 | 4 | 5) {
            return Err(malformed());
        }
        Ok(Self {
            class: class as u8,
            subject,
            detail,
        })
    }

    /// The first enhanced status code written in a diagnostic text (`550 5.1.1 <a@b>…`,
    /// `(#5.1.2)`), if any: MTAs quote the code they received.
    pub fn find_in(text: &str) -> Option<Self> {
        text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .map(|token| token.trim_end_matches('.'))
            .find_map(|token| Self::parse(token).ok())
    }

    /// Whether the code reports a permanent failure (class 5).
    pub fn is_permanent(self) -> bool {
        self.class == 5
    }
}

impl FromStr for EnhancedStatus {
    type Err = MalformedStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl Serialize for EnhancedStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EnhancedStatus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The first SMTP reply code (`4xx`/`5xx`, three digits on their own) written in a text.
pub fn find_reply_code(text: &str) -> Option<u16> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .filter(|token| token.len() == 3 && token.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|token| token.parse::<u16>().ok())
        .find(|code| (400..600).contains(code))
}

/// What a provider's bounce report tells us.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BounceEvidence<'a> {
    /// The diagnostic text (`Diagnostic-Code:` or the provider's error message).
    pub diagnostic: Option<&'a str>,
    /// The enhanced status code, when the report carries a real one.
    pub status: Option<EnhancedStatus>,
    /// The SMTP reply code.
    pub reply_code: Option<u16>,
}

/// Whether a bounce is permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceKind {
    /// A permanent failure: sending the same message again will fail again.
    Hard,
    /// A transient failure: a later attempt may succeed.
    Soft,
    /// Nothing says whether it is permanent.
    Undetermined,
}

/// Why a message bounced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BounceCause {
    /// Recipient: the mailbox does not exist.
    UserUnknown,
    /// Recipient: the domain does not exist or accepts no mail.
    HostUnknown,
    /// Recipient: the mailbox is disabled, suspended or inactive.
    MailboxDisabled,
    /// Recipient: the mailbox has moved and no longer receives mail here.
    MailboxMoved,
    /// Recipient: the mailbox is over its quota.
    MailboxFull,
    /// Sender: our IP or domain is blocked (blocklists, reputation, reverse DNS).
    ReputationBlock,
    /// Sender: SPF, DKIM or DMARC failed.
    AuthenticationFailure,
    /// Sender: refused by the receiver's policy (sender address, relaying, size, filters).
    Policy,
    /// Sender: the content was taken for spam or a virus, or is malformed.
    SpamContent,
    /// Sender: we sent too much, too fast.
    RateLimited,
    /// Transient: the receiving host could not be reached.
    Network,
    /// Transient: the message stayed queued too long and was given up.
    Expired,
    /// Transient: deferred for a reason not stated.
    Deferred,
    /// A failure of the receiving system or protocol not covered above.
    Other,
    /// Nothing names a cause.
    Unknown,
}

impl BounceCause {
    /// Whether the cause is about the recipient's address or mailbox.
    pub fn is_recipient(self) -> bool {
        matches!(
            self,
            Self::UserUnknown
                | Self::HostUnknown
                | Self::MailboxDisabled
                | Self::MailboxMoved
                | Self::MailboxFull
        )
    }

    /// Whether the cause is something about us, the sender: never a reason to suppress.
    pub fn is_sender_side(self) -> bool {
        matches!(
            self,
            Self::ReputationBlock
                | Self::AuthenticationFailure
                | Self::Policy
                | Self::SpamContent
                | Self::RateLimited
        )
    }

    /// Whether a permanent failure with this cause means the address itself is bad. A disabled
    /// mailbox is left out: accounts are suspended and come back, and repeated soft bounces
    /// suppress it through the soft-bounce threshold anyway.
    fn condemns_address(self) -> bool {
        matches!(
            self,
            Self::UserUnknown | Self::HostUnknown | Self::MailboxMoved
        )
    }

    /// The `snake_case` name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserUnknown => "user_unknown",
            Self::HostUnknown => "host_unknown",
            Self::MailboxDisabled => "mailbox_disabled",
            Self::MailboxMoved => "mailbox_moved",
            Self::MailboxFull => "mailbox_full",
            Self::ReputationBlock => "reputation_block",
            Self::AuthenticationFailure => "authentication_failure",
            Self::Policy => "policy",
            Self::SpamContent => "spam_content",
            Self::RateLimited => "rate_limited",
            Self::Network => "network",
            Self::Expired => "expired",
            Self::Deferred => "deferred",
            Self::Other => "other",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for BounceCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on one bounce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BounceClassification {
    /// Permanent, transient or unknown.
    pub kind: BounceKind,
    /// Why it bounced.
    pub cause: BounceCause,
    /// Whether the address should be suppressed: only for a permanent, address-level failure.
    pub suppress: bool,
}

/// Classifies a bounce from its evidence. See the module documentation for the order of evidence.
pub fn classify(evidence: &BounceEvidence<'_>) -> BounceClassification {
    let text = evidence.diagnostic.unwrap_or("").to_lowercase();
    let status = evidence.status.or_else(|| EnhancedStatus::find_in(&text));
    let reply_code = evidence.reply_code.or_else(|| find_reply_code(&text));

    let phrase = cause_from_phrases(&text);
    let from_status = status.and_then(cause_from_status);
    let cause = match (phrase, from_status) {
        (Some(phrase), Some(coded)) => reconcile(phrase, coded, status, &text),
        (Some(phrase), None) => phrase_in_context(phrase, &text),
        (None, Some(coded)) => coded,
        (None, None) => phrase_in_context(
            reply_code.map_or(BounceCause::Unknown, cause_from_reply_code),
            &text,
        ),
    };
    let cause = match cause {
        BounceCause::UserUnknown => mailbox_unknown_or_filtered(status, &text),
        // A bounce is a final report: a network failure under a transient status means the
        // retries ran out, not that the next attempt may succeed.
        BounceCause::Network if status.is_some_and(|s| s.class == 4) => BounceCause::Expired,
        // RFC 7504: 521 is a host that never accepts mail (no mailbox there will ever exist),
        // unless the refusal is about the sender.
        cause
            if reply_code == Some(521) && !cause.is_sender_side() && !has(&text, SENDER_STAGE) =>
        {
            BounceCause::HostUnknown
        }
        cause => cause,
    };

    let kind = match (status, reply_code) {
        (Some(status), _) if status.class == 4 => BounceKind::Soft,
        (Some(status), _) if status.class == 5 => BounceKind::Hard,
        (_, Some(code)) if (400..500).contains(&code) => BounceKind::Soft,
        (_, Some(code)) if (500..600).contains(&code) => BounceKind::Hard,
        _ => kind_without_codes(cause, &text),
    };
    let suppress = kind == BounceKind::Hard && cause.condemns_address();
    BounceClassification {
        kind,
        cause,
        suppress,
    }
}

/// Whether any of the phrases occurs in the (lower-cased) text.
fn has(text: &str, phrases: &[&str]) -> bool {
    phrases.iter().any(|phrase| text.contains(phrase))
}

/// Phrases that say the SMTP session was refused before any recipient was named: the
/// receiver refused the sending host or the sender address, not the recipient.
const SENDER_STAGE: &[&str] = &[
    "after mail from",
    "in reply to mail from",
    "after initial connection",
    "after ehlo",
    "after helo",
    "my name was rejected",
    "sender was rejected",
    "sender rejected",
    "sender address rejected",
    "domain of sender",
    "sender domain",
    "unroutable sender",
    "[mail_from]",
    // The sender's address was looked up and not found: about us, never the recipient.
    "sender address does not exist",
    "sender address unknown",
    "invalid sender",
    "sender does not exist",
    "unknown sender",
    "sender unknown",
    "sender verify failed",
    "sender verification failed",
];

/// Phrases that say the recipient was refused after the message data was sent: a per-recipient
/// content filter, not a missing mailbox (which is refused at `RCPT TO`).
const AFTER_DATA: &[&str] = &["after end of data", "in reply to end of data", "after data"];

/// The cause named by well-known MTA phrases, most specific first; sender-side phrases come
/// before recipient ones so that a block is never mistaken for a bad address.
fn cause_from_phrases(text: &str) -> Option<BounceCause> {
    use BounceCause::*;
    if text.is_empty() {
        return None;
    }
    if has(
        text,
        &[
            "dmarc",
            " spf",
            "spf ",
            "dkim",
            "unauthenticated",
            "authentication check",
            "fails to pass authentication",
            "does not have authentication",
        ],
    ) {
        return Some(AuthenticationFailure);
    }
    if has(
        text,
        &[
            "rate limit",
            "rate-limit",
            "ratelimit",
            "too many connections",
            "too many concurrent",
            "too many messages",
            "unexpected volume",
            "throttl",
            "sending rate",
            "connection rate",
            "too many recipients",
        ],
    ) {
        return Some(RateLimited);
    }
    // Disabled-account phrases come before "blocked": "the recipient account is blocked".
    if has(
        text,
        &[
            "account is disabled",
            "account disabled",
            "disabled recipient",
            "account has been disabled",
            "account is blocked",
            "account is locked",
            "mailbox is frozen",
            "is inactive",
            "inactive account",
            "account is inactive",
            "has been suspended",
            "account suspended",
            "mailbox disabled",
            "mailbox is disabled",
            "you tried to reach is disabled",
            "deactivated",
            "discontinued",
        ],
    ) {
        return Some(MailboxDisabled);
    }
    if has(
        text,
        &[
            "spamhaus",
            "spamcop",
            "blacklist",
            "blocklist",
            "black list",
            "block list",
            "dnsbl",
            "banned",
            "reputation",
            "blocked",
            "bloquee",
            "reverse dns",
            "ptr record",
            "client host rejected",
            "refused to talk",
            "open relay",
            "not accepting connections",
            "service refused",
            "invalid ip",
        ],
    ) {
        return Some(ReputationBlock);
    }
    if has(
        text,
        &[
            "spam",
            "virus",
            "malware",
            "content rejected",
            "message filtered",
            "suspicious",
            "security polic",
            "8-bit",
            "8bit",
            "headers too large",
            "header too large",
            "media error",
        ],
    ) {
        return Some(SpamContent);
    }
    if has(
        text,
        &[
            "relaying denied",
            "relay access denied",
            "relay not permitted",
            "not permitted to relay",
            "message too large",
            "message too big",
            "size exceeds",
            "length exceeds",
            "exceeds size",
            "exceeds the maximum",
            "recipient preferences",
        ],
    ) {
        return Some(Policy);
    }
    // The receiving host accepted the message and its local delivery program failed: the
    // mailbox's existence is not in question.
    if has(text, &["mailer error", "procmail"]) {
        return Some(Other);
    }
    if has(
        text,
        &[
            "mailbox full",
            "mailbox is full",
            "mailbox full",
            "quota",
            "insufficient storage",
            "storage space",
            "out of storage",
            "exceeded storage",
            "full mailbox",
            "mailbox size limit",
            "disk space",
        ],
    ) {
        return Some(MailboxFull);
    }
    if has(
        text,
        &[
            "no longer on server",
            "has moved",
            "moved permanently",
            "no longer available at",
            "not our customer",
        ],
    ) {
        return Some(MailboxMoved);
    }
    // A DNS lookup that failed for want of an answer says nothing about the domain: Postfix's
    // "Host not found, try again" (a temporary resolver failure) and a malformed reply.
    if has(
        text,
        &["not found, try again", "unexpected name server reply"],
    ) {
        return Some(Network);
    }
    if (has(
        text,
        &[
            "host unknown",
            "unknown host",
            "host not found",
            "domain not found",
            "no such domain",
            "domain does not exist",
            "unrouteable address",
            "unroutable address",
            "name service error",
            "couldn't find any host",
            "mail exchanger",
            "no mx",
            "mx record",
            "no smtp service",
            "does not accept mail",
            "dns lookup failure",
            "invalid domain",
            "illegal host",
            "bad destination system",
            // Outlook.com's reply for a domain that does not exist.
            "domain is not reachable",
        ],
    ) || (text.contains("domain") && text.contains("couldn't be found")))
        && !has(text, &["user unknown", "unknown user", "no such user"])
    {
        return Some(HostUnknown);
    }
    if has(
        text,
        &[
            "user unknown",
            "unknown user",
            "no such user",
            "user not found",
            "user not exist",
            "user does not exist",
            "user doesn't exist",
            "does not exist",
            "recipient unknown",
            "address unknown",
            "unknown address",
            "no such address",
            "invalid mailbox",
            "recipient not found",
            "recipientnotfound",
            "unknown recipient",
            "invalid recipient",
            "no such recipient",
            "no mailbox",
            "mailbox not found",
            "mailbox does not exist",
            "no such mailbox",
            "bad destination mailbox",
            "address not found",
            "address couldn't be found",
            "invalid address",
            "invalid user",
            "doesn't have a",
            "not a registered",
            "check if address is correct",
            "destinataire invalide",
            "mailbox unavailable",
            "recipient address rejected: access denied",
            "not our user",
            "not listed in",
            "invalid final delivery",
            "no valid recipient",
        ],
    ) || bare_recipient_rejection(text)
    {
        return Some(UserUnknown);
    }
    if has(
        text,
        &[
            "expired",
            "too long",
            "giving up",
            "retry timeout",
            "has been delayed",
            "not delivered within",
            "delivery failed",
            "could not deliver for",
            "unable to deliver this message after",
            "last tried",
            "failing for a long time",
        ],
    ) {
        return Some(Expired);
    }
    if has(
        text,
        &[
            "timed out",
            "connection refused",
            "connection reset",
            "no route to host",
            "network is unreachable",
            "lost connection",
            "connection dropped",
            "unable to connect",
            "not responding",
        ],
    ) {
        return Some(Network);
    }
    if has(
        text,
        &["relay", "access denied", "not permitted", "not allowed"],
    ) {
        return Some(Policy);
    }
    if has(
        text,
        &["try again later", "try later", "temporar", "deferred"],
    ) {
        return Some(Deferred);
    }
    None
}

/// A phrase's cause, corrected by where in the session the refusal happened.
fn phrase_in_context(phrase: BounceCause, text: &str) -> BounceCause {
    if (phrase.is_recipient() || phrase == BounceCause::Unknown) && has(text, SENDER_STAGE) {
        return BounceCause::Policy;
    }
    if phrase == BounceCause::UserUnknown && has(text, AFTER_DATA) {
        return BounceCause::Policy;
    }
    phrase
}

/// Weighs a phrase against the enhanced status code's own cause.
fn reconcile(
    phrase: BounceCause,
    coded: BounceCause,
    status: Option<EnhancedStatus>,
    text: &str,
) -> BounceCause {
    use BounceCause::*;
    let phrase = phrase_in_context(phrase, text);
    let at_rcpt = phrase == UserUnknown && has(text, RCPT_STAGE);
    // A code that names the sender (x.1.7, x.1.8, x.7.x) outweighs a recipient phrase: the
    // text of such a refusal often repeats "address not found" about the sender's address.
    // The exception is the catch-all "not authorized" (x.7.0, x.7.1) that many MTAs put on any
    // refused `RCPT TO`: when the reply to that command says the mailbox is unknown, the phrase
    // is the specific evidence.
    if phrase.is_recipient() && coded.is_sender_side() {
        let catch_all = status.is_some_and(|s| s.subject == 7 && s.detail <= 1);
        if !(at_rcpt && catch_all) {
            return coded;
        }
    }
    // A code about the mailbox's state (x.2.x) with a "user unknown" text: unless the refusal
    // answered `RCPT TO` (where the mailbox lookup happens), the mailbox exists in some form;
    // take the code's reading, which does not condemn the address.
    if phrase == UserUnknown && matches!(coded, MailboxDisabled | MailboxFull) && !at_rcpt {
        return coded;
    }
    phrase
}

/// Phrases that say the refusal answered `RCPT TO`, where a receiver looks the mailbox up
/// (`in reply to RCPT TO command`, `after RCPT TO`, `>>> RCPT To:`, qmail's `does not like
/// recipient`).
const RCPT_STAGE: &[&str] = &[
    "rcpt to",
    "rcpt_to",
    "smtp:rcpt",
    "rcpt command",
    "does not like recipient",
];

/// Wording that states the recipient address itself was looked up and not found: directory
/// lookups (Exchange "unknown recipient", Domino "not listed in … directory", Gmail "address
/// not found") and "invalid recipient". Unlike "user unknown", content filters do not answer
/// with these.
const RECIPIENT_NOT_FOUND: &[&str] = &[
    "unknown recipient",
    "invalid recipient",
    "no valid recipient",
    "no such recipient",
    "destinataire invalide",
    "not listed in",
    "address not found",
    "address couldn't be found",
    "check if address is correct",
    "invalid final delivery",
    "mailbox not found",
    "mailbox does not exist",
    "no such mailbox",
    "bad destination mailbox",
    // Recipient-unknown wording of common MTAs that only a mailbox lookup produces.
    // ("Recipient not found" is left out: Exchange 2003 also gives it for a filtered message.)
    "recipient unknown",
    "recipient does not exist",
    "address does not exist",
    "address unknown",
    "unknown address",
    "no such address",
    "invalid mailbox",
    "user does not exist",
    "user doesn't exist",
    // qmail's "Sorry, no mailbox here by that name".
    "no mailbox here",
    // A local delivery agent naming the user it could not find (sendmail's `mail.local:
    // unknown user: a`, IMail's `Unknown user: a@b`); filters say "unknown user <a@b>".
    "unknown user:",
];

/// Decides whether a "the user is unknown" reading condemns the address or is a filter's
/// refusal ([`BounceCause::Policy`]). "User unknown", "unknown user" and "no such user" are
/// also what content and domain filters answer after the message data, so on their own they
/// prove nothing; the reading stands only when something corroborates it:
/// - the enhanced status code is about addressing (`x.1.x`: bad destination mailbox);
/// - the refusal answered `RCPT TO`, where mailboxes are looked up;
/// - no specific code is given (none, `x.0.0` or the catch-all `x.5.0`) and the wording says the
///   recipient address was not found (directory lookups, not filters).
///
/// A reply that names no address (`550 : User unknown`, the code followed by an empty address)
/// is a filter's reply after the data, whatever else is said: replies to `RCPT TO` quote the
/// recipient.
fn mailbox_unknown_or_filtered(status: Option<EnhancedStatus>, text: &str) -> BounceCause {
    use BounceCause::*;
    if names_no_address(text) {
        return Policy;
    }
    let generic = status.is_none_or(|s| s.subject == 0 || (s.subject == 5 && s.detail == 0));
    let corroborated = status.is_some_and(|s| s.subject == 1)
        || has(text, RCPT_STAGE)
        || (generic && has(text, RECIPIENT_NOT_FOUND));
    if corroborated { UserUnknown } else { Policy }
}

/// Whether the text holds Postfix's bare "Recipient address rejected" with no reason after it
/// (followed by nothing, a full stop or a parenthesis): the receiver refused the recipient itself.
/// With a reason ("Recipient address rejected: Greylisted", "…: Relay access denied") the reason
/// decides, so the phrase alone is not enough.
fn bare_recipient_rejection(text: &str) -> bool {
    const PHRASE: &str = "recipient address rejected";
    text.match_indices(PHRASE).any(|(at, _)| {
        let after = text[at + PHRASE.len()..].trim_start();
        after.is_empty() || after.starts_with(['.', '('])
    })
}

/// Whether a "user unknown" in the text follows a reply code with no address between them
/// (`550 : user unknown`, `550: : user unknown`).
fn names_no_address(text: &str) -> bool {
    text.match_indices(": user unknown").any(|(at, _)| {
        let before = text[..at].trim_end_matches(' ');
        before.ends_with(|c: char| c.is_ascii_digit() || c == ':')
    })
}

/// The cause named by an enhanced status code's subject and detail (RFC 3463, RFC 7372,
/// RFC 7505), or `None` when the code is generic (`x.0.0`).
fn cause_from_status(status: EnhancedStatus) -> Option<BounceCause> {
    use BounceCause::*;
    let cause = match (status.subject, status.detail) {
        (0, _) => return None,
        (1, 1) | (1, 3) => UserUnknown,
        (1, 2) | (1, 10) => HostUnknown,
        (1, 6) => MailboxMoved,
        (1, 7) | (1, 8) => Policy,
        (1, _) => return None,
        (2, 1) => MailboxDisabled,
        (2, 2) => MailboxFull,
        (2, 3) => Policy,
        (2, _) => return None,
        (3, 4) => Policy,
        (3, _) => Other,
        (4, 4) => HostUnknown,
        (4, 7) => Expired,
        (4, 5) => RateLimited,
        (4, _) => Network,
        (5, _) => Other,
        (6, _) => SpamContent,
        (7, 13) => MailboxDisabled,
        (7, 20..=22) | (7, 23) | (7, 26) => AuthenticationFailure,
        (7, 25) => ReputationBlock,
        (7, _) => Policy,
        _ => return None,
    };
    Some(cause)
}

/// The cause suggested by a bare reply code (RFC 5321): the weakest evidence.
fn cause_from_reply_code(code: u16) -> BounceCause {
    use BounceCause::*;
    match code {
        551 => MailboxMoved,
        552 | 452 => MailboxFull,
        421 => Network,
        400..=499 => Deferred,
        _ => Unknown,
    }
}

/// Permanence when neither a status nor a reply code is known: address-level causes are
/// permanent by nature, transient ones are not.
fn kind_without_codes(cause: BounceCause, text: &str) -> BounceKind {
    use BounceCause::*;
    match cause {
        UserUnknown | HostUnknown | MailboxMoved => BounceKind::Hard,
        MailboxFull | RateLimited | Network | Expired | Deferred => BounceKind::Soft,
        _ if has(text, &["permanent"]) => BounceKind::Hard,
        _ if has(text, &["temporar", "try again", "try later"]) => BounceKind::Soft,
        _ => BounceKind::Undetermined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(diagnostic: &str, status: &str, reply_code: Option<u16>) -> BounceClassification {
        classify(&BounceEvidence {
            diagnostic: Some(diagnostic).filter(|d| !d.is_empty()),
            status: EnhancedStatus::parse(status).ok(),
            reply_code,
        })
    }

    #[test]
    fn parses_enhanced_status_codes() {
        let status = EnhancedStatus::parse("5.1.1").unwrap();
        assert_eq!((status.class, status.subject, status.detail), (5, 1, 1));
        assert_eq!(
            EnhancedStatus::parse("4.7.650").unwrap().to_string(),
            "4.7.650"
        );
        for bad in ["", "5.1", "5.1.1.1", "3.1.1", "5.a.1", "5.1.1234"] {
            assert!(EnhancedStatus::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            EnhancedStatus::find_in("said: 550 5.1.2 host unknown"),
            EnhancedStatus::parse("5.1.2").ok()
        );
    }

    #[test]
    fn a_bad_mailbox_status_is_a_suppressed_hard_bounce() {
        let v = verdict("", "5.1.1", Some(550));
        assert_eq!(
            (v.kind, v.cause, v.suppress),
            (BounceKind::Hard, BounceCause::UserUnknown, true)
        );
        assert_eq!(verdict("", "5.1.2", None).cause, BounceCause::HostUnknown);
        assert_eq!(verdict("", "5.1.6", None).cause, BounceCause::MailboxMoved);
    }

    #[test]
    fn a_full_mailbox_is_not_suppressed() {
        let v = verdict("552 5.2.2 Mailbox full", "5.2.2", Some(552));
        assert_eq!((v.cause, v.suppress), (BounceCause::MailboxFull, false));
    }

    #[test]
    fn a_transient_status_is_never_hard() {
        let v = verdict(
            "450 4.1.1 User unknown in virtual alias table",
            "4.1.1",
            Some(450),
        );
        assert_eq!((v.kind, v.suppress), (BounceKind::Soft, false));
        assert_eq!(verdict("", "4.4.7", None).cause, BounceCause::Expired);
        assert_eq!(verdict("", "", Some(421)).kind, BounceKind::Soft);
    }

    #[test]
    fn sender_side_causes_are_never_suppressed() {
        for (text, cause) in [
            (
                "550 5.7.26 Unauthenticated email is not accepted due to domain's DMARC policy",
                BounceCause::AuthenticationFailure,
            ),
            (
                "554 Service unavailable; client [192.0.2.1] blocked using zen.spamhaus.org",
                BounceCause::ReputationBlock,
            ),
            (
                "451 4.7.650 The mail server has been temporarily rate limited",
                BounceCause::RateLimited,
            ),
            (
                "550 5.7.1 Message rejected as spam by content filtering",
                BounceCause::SpamContent,
            ),
        ] {
            let v = verdict(text, "", None);
            assert_eq!(v.cause, cause, "{text}");
            assert!(!v.suppress, "{text}");
        }
    }

    #[test]
    fn a_sender_address_refusal_does_not_condemn_the_recipient() {
        let v = verdict(
            "553 5.1.8 Domain of sender address does not exist",
            "5.1.8",
            Some(553),
        );
        assert_eq!((v.cause, v.suppress), (BounceCause::Policy, false));
    }

    #[test]
    fn a_bare_user_unknown_is_read_as_a_filter() {
        // The wording content filters also use, with nothing to say the mailbox was looked up.
        for text in [
            "550 Unknown user kijitora@example.jp",
            "host mail.example.net said: 550 Unknown user a@example.net (in reply to end of DATA command)",
        ] {
            let v = verdict(text, "", Some(550));
            assert_eq!(
                (v.cause, v.suppress),
                (BounceCause::Policy, false),
                "{text}"
            );
        }
        // A mailbox-state or mail-system code does not corroborate it either.
        let v = verdict("550 Unknown user a@example.jp", "5.2.0", Some(550));
        assert!(!v.suppress);
        // A reply that names no address is a filter's, whatever the status says.
        let v = verdict(
            "550 5.1.351 Remote server returned unknown recipient -> 550 : User unknown",
            "",
            None,
        );
        assert_eq!((v.cause, v.suppress), (BounceCause::Policy, false));
    }

    #[test]
    fn a_user_unknown_is_corroborated_by_an_addressing_status_or_the_rcpt_stage() {
        let v = verdict("550 5.1.1 <a@example.jp>... User Unknown", "", Some(550));
        assert_eq!((v.cause, v.suppress), (BounceCause::UserUnknown, true));
        // At RCPT TO the phrase outweighs a mailbox-state or catch-all security code.
        for (text, status) in [
            (
                "said: 550 5.2.1 <a@example.jp>... User Unknown (in reply to RCPT TO command)",
                "5.2.1",
            ),
            (
                "SMTP error from remote mail server after RCPT TO:<a@example.ch>: 554 5.7.1 <a@example.ch>: Recipient address rejected: Access denied",
                "5.7.1",
            ),
            ("said: 550 User not found (in reply to RCPT TO command)", ""),
        ] {
            let v = verdict(text, status, Some(550));
            assert_eq!(
                (v.cause, v.suppress),
                (BounceCause::UserUnknown, true),
                "{text}"
            );
        }
        // Without the RCPT stage, x.2.1 keeps its own reading.
        let v = verdict(
            "550 5.2.1 <a@example.jp>... User Unknown",
            "5.2.1",
            Some(550),
        );
        assert_eq!((v.cause, v.suppress), (BounceCause::MailboxDisabled, false));
    }

    #[test]
    fn directory_lookup_wording_condemns_without_a_status() {
        for text in [
            "Unknown Recipient",
            "User some.name (a@example.jp) not listed in Domino Directory",
            "** Address not found ** Your message wasn't delivered to a@example.it because the address couldn't be found.",
        ] {
            let v = verdict(text, "", None);
            assert_eq!(
                (v.kind, v.cause, v.suppress),
                (BounceKind::Hard, BounceCause::UserUnknown, true),
                "{text}"
            );
        }
    }

    #[test]
    fn a_failed_dns_lookup_is_not_a_missing_domain() {
        for text in [
            "Name service error for domain example.com: Host not found, try again",
            "Name service error for name=example.org type=MX: Malformed or unexpected name server reply",
        ] {
            let v = verdict(text, "5.4.4", None);
            assert_eq!(
                (v.cause, v.suppress),
                (BounceCause::Network, false),
                "{text}"
            );
        }
        assert_eq!(
            verdict(
                "connect to example.com[192.0.2.1]:25: Connection timed out",
                "4.4.1",
                None
            )
            .cause,
            BounceCause::Expired
        );
    }

    #[test]
    fn the_verdict_keeps_the_suppression_invariant() {
        for (text, status) in [
            ("550 5.1.1 user unknown", ""),
            ("550 user unknown", ""),
            ("Unknown Recipient", ""),
            ("552 5.2.2 mailbox full", ""),
            ("host unknown", "5.1.2"),
            (
                "procmail: Couldn't create \"/var/spool/mail/a\": No such user",
                "5.1.1",
            ),
        ] {
            let v = verdict(text, status, None);
            let expected = v.kind == BounceKind::Hard
                && matches!(
                    v.cause,
                    BounceCause::UserUnknown | BounceCause::HostUnknown | BounceCause::MailboxMoved
                );
            assert_eq!(v.suppress, expected, "{text}");
        }
    }

    #[test]
    fn reply_codes_are_the_weakest_evidence() {
        let v = verdict("", "", Some(550));
        assert_eq!(
            (v.kind, v.cause, v.suppress),
            (BounceKind::Hard, BounceCause::Unknown, false)
        );
        // RFC 5321's stock 550 text does not corroborate itself; an addressing status does.
        let v = verdict(
            "550 Requested action not taken: mailbox unavailable",
            "",
            Some(550),
        );
        assert_eq!((v.cause, v.suppress), (BounceCause::Policy, false));
        let v = verdict("mailbox unavailable", "5.1.1", Some(550));
        assert_eq!((v.cause, v.suppress), (BounceCause::UserUnknown, true));
        assert_eq!(verdict("", "", None).kind, BounceKind::Undetermined);
    }

    #[test]
    fn recipient_lookup_wording_condemns_without_a_specific_status() {
        for text in [
            "550 Recipient unknown",
            "550 5.0.0 <a@example.jp>: Recipient does not exist here",
            "550 Address does not exist",
            "554 delivery error: address unknown",
            "550 Unknown address a@example.jp",
            "550 No such address",
            "550 Invalid mailbox: a@example.jp",
            "550 The user does not exist",
            "550 User doesn't exist: a@example.jp",
            "Sorry, no mailbox here by that name.",
            "mail.local: unknown user: a",
            "Unknown user: a@example.jp",
        ] {
            let v = verdict(text, "", None);
            assert_eq!(
                (v.kind, v.cause, v.suppress),
                (BounceKind::Hard, BounceCause::UserUnknown, true),
                "{text}"
            );
        }
        // The same wording about the sender's address is about us: never suppressed.
        for text in [
            "553 5.1.0 Sender address does not exist",
            "550 Sender unknown (in reply to MAIL FROM command)",
            "550 5.7.1 Sender verify failed: no such address",
            "550 Unknown sender: address unknown",
            "553 Sender address unknown",
            "550 Invalid sender: no such address",
        ] {
            let v = verdict(text, "", None);
            assert!(!v.suppress, "{text}");
            assert!(v.cause.is_sender_side(), "{text}: {}", v.cause);
        }
    }

    #[test]
    fn a_host_that_never_accepts_mail_condemns_its_addresses() {
        let v = verdict(
            "did not like our RCPT TO: 521 5.3.2 <a@example.jp>: System not accepting network messages",
            "5.3.2",
            Some(521),
        );
        assert_eq!(
            (v.kind, v.cause, v.suppress),
            (BounceKind::Hard, BounceCause::HostUnknown, true)
        );
        // A 521 that refuses the sending host is a block of ours, not a dead domain.
        let v = verdict(
            "521 Service unavailable; client [192.0.2.1] blocked using dnsbl.example.net",
            "5.7.1",
            Some(521),
        );
        assert!(!v.suppress, "{v:?}");
        // "Unknown user <a@b>" after the data is a filter's answer, as before.
        let v = verdict(
            "550 Unknown user a@example.jp (in reply to end of DATA command)",
            "",
            Some(550),
        );
        assert!(!v.suppress, "{v:?}");
    }

    #[test]
    fn a_bare_recipient_rejection_at_rcpt_to_condemns() {
        let v = verdict(
            "said: 550 <a@example.jp>: Recipient address rejected. (in reply to RCPT TO command)",
            "5.0.0",
            Some(550),
        );
        assert_eq!((v.cause, v.suppress), (BounceCause::UserUnknown, true));
        // Not at RCPT TO: nothing says a mailbox was looked up.
        let v = verdict("550 Recipient address rejected.", "", Some(550));
        assert!(!v.suppress);
        // A stated reason decides: policy, reputation and greylisting never suppress.
        for (text, status, code) in [
            (
                "said: 550 5.7.1 <a@example.jp>: Recipient address rejected: Policy rejection (in reply to RCPT TO command)",
                "5.7.1",
                550,
            ),
            (
                "said: 554 <a@example.jp>: Recipient address rejected: client on our blocklist (in reply to RCPT TO command)",
                "",
                554,
            ),
            (
                "said: 450 4.2.0 <a@example.jp>: Recipient address rejected: Greylisted (in reply to RCPT TO command)",
                "4.2.0",
                450,
            ),
        ] {
            let v = verdict(text, status, Some(code));
            assert!(!v.suppress, "{text}");
            assert!(
                v.cause.is_sender_side() || v.kind == BounceKind::Soft,
                "{text}"
            );
        }
    }

    #[test]
    fn an_unreachable_domain_wording_is_a_host_unknown() {
        let v = verdict(
            "554 The mail could not be delivered to the recipient because the domain is not reachable. Please check the domain and try again",
            "5.5.0",
            Some(554),
        );
        assert_eq!((v.cause, v.suppress), (BounceCause::HostUnknown, true));
        // About the sender's domain, it is a refusal of us.
        let v = verdict(
            "550 5.7.1 The sender domain is not reachable",
            "",
            Some(550),
        );
        assert_eq!((v.cause, v.suppress), (BounceCause::Policy, false));
    }
}
