//! The labelled Sisimai bounce corpus (`../shared/data/bounces/bounces.jsonl`) and how the bounce
//! classifier is scored on it, shared by the corpus test and the classifier bench.
//!
//! Only rows of kind `bounce` are kept. A `status` that Sisimai invented from its own label
//! (`status_is_sisimai_internal`) is dropped when the row is loaded: it leaks the answer, so the
//! classifier never sees it.
//!
//! The corpus is split deterministically into two halves ([`Half`], by a stable hash of each
//! row's `source`) so that wording added while looking at one half's misses can be measured on
//! the other (the hold-out procedure in `docs/classifier.md`).

use std::path::PathBuf;

use anyhow::Context;
use mailgate_core::{BounceCause, BounceClassification, BounceEvidence, EnhancedStatus};
use serde_json::Value;

/// One labelled bounce: the evidence a provider would give us, and Sisimai's labels.
#[derive(Debug, Clone)]
pub struct CorpusBounce {
    /// The row's `source` (sample file and recipient number): unique, stable across reloads.
    pub id: String,
    /// The diagnostic text, if any.
    pub diagnostic: Option<String>,
    /// The enhanced status code, only when it is a real one.
    pub status: Option<EnhancedStatus>,
    /// The SMTP reply code, if any.
    pub reply_code: Option<u16>,
    /// Sisimai's reason (`userunknown`, `filtered`, …).
    pub reason: String,
    /// Sisimai's hard-bounce flag: the address is bad and should be suppressed.
    pub hard: bool,
}

impl CorpusBounce {
    /// The half of the corpus the row belongs to.
    pub fn half(&self) -> Half {
        Half::of(&self.id)
    }

    /// What the classifier is given.
    pub fn evidence(&self) -> BounceEvidence<'_> {
        BounceEvidence {
            diagnostic: self.diagnostic.as_deref(),
            status: self.status,
            reply_code: self.reply_code,
        }
    }
}

/// The corpus file.
pub fn path() -> PathBuf {
    crate::workspace_root().join("../shared/data/bounces/bounces.jsonl")
}

/// The corpus' bounces (627 rows), in file order.
pub fn load() -> anyhow::Result<Vec<CorpusBounce>> {
    let path = path();
    let corpus = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the bounce corpus {}", path.display()))?;
    let mut bounces = Vec::new();
    for (number, line) in corpus.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", path.display(), number + 1))?;
        if row["kind"] != "bounce" {
            continue;
        }
        let text = |key: &str| row[key].as_str().filter(|s| !s.is_empty());
        // The answer-leaking pseudo-code is never kept, so nothing downstream can use it.
        let status = if row["status_is_sisimai_internal"] == true {
            None
        } else {
            text("status").and_then(|s| EnhancedStatus::parse(s).ok())
        };
        bounces.push(CorpusBounce {
            id: text("source")
                .with_context(|| format!("{} line {}: no source", path.display(), number + 1))?
                .to_owned(),
            diagnostic: text("diagnostic").map(str::to_owned),
            status,
            reply_code: text("reply_code").and_then(|s| s.parse().ok()),
            reason: text("reason")
                .with_context(|| format!("{} line {}: no reason", path.display(), number + 1))?
                .to_owned(),
            hard: row["hard"] == true,
        });
    }
    Ok(bounces)
}

/// One of the two halves of the corpus (311 and 316 bounces; 103 and 92 of them hard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Half {
    /// Rows whose id hashes to an even number.
    A,
    /// Rows whose id hashes to an odd number.
    B,
}

impl Half {
    /// The half of a row id: the low bit of its 64-bit FNV-1a hash. Hand-written (six lines)
    /// because the split must never change with a dependency's or the standard library's hasher
    /// (std's `DefaultHasher` promises no stable output across releases).
    pub fn of(id: &str) -> Self {
        let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        if hash & 1 == 0 { Self::A } else { Self::B }
    }

    /// The half's letter, lower-case (`a`, `b`), as in the bench line names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
        }
    }

    /// The half named by a letter (`a`/`A`, `b`/`B`).
    pub fn parse(letter: &str) -> Option<Self> {
        match letter.trim() {
            "a" | "A" => Some(Self::A),
            "b" | "B" => Some(Self::B),
            _ => None,
        }
    }
}

/// The bounces of one half, in file order.
pub fn half(bounces: &[CorpusBounce], half: Half) -> Vec<CorpusBounce> {
    bounces
        .iter()
        .filter(|bounce| bounce.half() == half)
        .cloned()
        .collect()
}

/// The causes accepted for a Sisimai reason in the coarse category measure. Sender-side reasons
/// that Sisimai splits finely (blocked, rejected, filtered…) accept any of the matching
/// sender-side causes; reasons with no counterpart accept `other`/`unknown`.
pub fn accepted_causes(reason: &str) -> &'static [BounceCause] {
    use BounceCause::*;
    match reason {
        "userunknown" => &[UserUnknown],
        "hostunknown" | "notaccept" => &[HostUnknown],
        "mailboxfull" => &[MailboxFull],
        "hasmoved" => &[MailboxMoved],
        "suspend" => &[MailboxDisabled],
        "blocked" | "rejected" | "badreputation" | "requireptr" | "norelaying" => {
            &[ReputationBlock, Policy]
        }
        "filtered" => &[Policy, SpamContent],
        "spamdetected" | "contenterror" | "virusdetected" | "notcompliantrfc" => &[SpamContent],
        "securityerror" | "policyviolation" | "authfailure" | "failedstarttls" => {
            &[Policy, AuthenticationFailure]
        }
        "mesgtoobig" | "exceedlimit" => &[Policy],
        "expired" => &[Expired],
        "networkerror" => &[Network],
        "ratelimited" | "toomanyconn" | "speeding" => &[RateLimited],
        "onhold" => &[Deferred, Other, Unknown],
        // systemerror, systemfull, mailererror, syntaxerror, undefined.
        _ => &[Other, Unknown],
    }
}

/// How a classification compares with one row's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    /// The suppression decision matches `hard`.
    pub suppress_right: bool,
    /// Suppressed although `hard` is false: a good address lost.
    pub wrongly_suppressed: bool,
    /// The cause is one accepted for the row's reason.
    pub category_right: bool,
}

/// Judges one classification against its row.
pub fn judge(bounce: &CorpusBounce, verdict: &BounceClassification) -> Judgement {
    Judgement {
        suppress_right: verdict.suppress == bounce.hard,
        wrongly_suppressed: verdict.suppress && !bounce.hard,
        category_right: accepted_causes(&bounce.reason).contains(&verdict.cause),
    }
}

/// The corpus figures of one classifier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Score {
    /// Bounces scored.
    pub total: usize,
    /// Suppression decisions that match `hard`.
    pub suppress_right: usize,
    /// Good addresses that would be suppressed.
    pub wrongly_suppressed: usize,
    /// Causes in the accepted category.
    pub category_right: usize,
}

impl Score {
    /// Scores `classify` on every bounce.
    pub fn of(
        bounces: &[CorpusBounce],
        classify: impl Fn(&BounceEvidence<'_>) -> BounceClassification,
    ) -> Self {
        bounces.iter().fold(Self::default(), |score, bounce| {
            let judgement = judge(bounce, &classify(&bounce.evidence()));
            Self {
                total: score.total + 1,
                suppress_right: score.suppress_right + usize::from(judgement.suppress_right),
                wrongly_suppressed: score.wrongly_suppressed
                    + usize::from(judgement.wrongly_suppressed),
                category_right: score.category_right + usize::from(judgement.category_right),
            }
        })
    }

    /// Accuracy of the suppression decision against `hard`, in percent.
    pub fn suppress_accuracy(&self) -> f64 {
        self.percent(self.suppress_right)
    }

    /// Accuracy of the coarse cause category, in percent.
    pub fn category_accuracy(&self) -> f64 {
        self.percent(self.category_right)
    }

    fn percent(&self, n: usize) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        100.0 * n as f64 / self.total as f64
    }
}
