//! Measures the bounce classifier on the labelled Sisimai corpus (`../shared/data/bounces/`) and
//! holds it to regression floors. The corpus measures, it does not train: the classifier works
//! from general rules, and a `status` that Sisimai invented from its own label
//! (`status_is_sisimai_internal`) is never given to it.
//!
//! Printed (`--nocapture`): `bench bounce_suppress_accuracy`, `bench bounce_wrongly_suppressed`
//! and `bench bounce_reason_category_accuracy`.
#![allow(clippy::unwrap_used)]

use mailgate_core::{BounceCause, BounceEvidence, EnhancedStatus, classify_bounce};
use serde_json::Value;

/// The causes accepted for a Sisimai reason in the coarse category measure. Sender-side reasons
/// that Sisimai splits finely (blocked, rejected, filtered…) accept any of the matching
/// sender-side causes; reasons with no counterpart accept `other`/`unknown`.
fn accepted_causes(reason: &str) -> &'static [BounceCause] {
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

#[test]
fn bounce_classifier_holds_its_corpus_floors() {
    let path = mailgate_tests::workspace_root().join("../shared/data/bounces/bounces.jsonl");
    let corpus = std::fs::read_to_string(&path).unwrap();
    let (mut total, mut suppress_right, mut wrongly_suppressed, mut reason_right) = (0, 0, 0, 0);
    for line in corpus.lines().filter(|line| !line.trim().is_empty()) {
        let row: Value = serde_json::from_str(line).unwrap();
        if row["kind"] != "bounce" {
            continue;
        }
        let text = |key: &str| row[key].as_str().filter(|s| !s.is_empty());
        let status = if row["status_is_sisimai_internal"] == true {
            None
        } else {
            text("status").and_then(|s| EnhancedStatus::parse(s).ok())
        };
        let evidence = BounceEvidence {
            diagnostic: text("diagnostic"),
            status,
            reply_code: text("reply_code").and_then(|s| s.parse().ok()),
        };
        let verdict = classify_bounce(&evidence);
        let hard = row["hard"] == true;
        total += 1;
        suppress_right += usize::from(verdict.suppress == hard);
        wrongly_suppressed += usize::from(verdict.suppress && !hard);
        let reason = row["reason"].as_str().unwrap();
        reason_right += usize::from(accepted_causes(reason).contains(&verdict.cause));
    }
    let percent = |n: usize| 100.0 * n as f64 / total as f64;
    let suppress_accuracy = percent(suppress_right);
    let reason_accuracy = percent(reason_right);
    eprintln!("bench bounce_suppress_accuracy {suppress_accuracy:.1} percent");
    eprintln!("bench bounce_wrongly_suppressed {wrongly_suppressed} addresses");
    eprintln!("bench bounce_reason_category_accuracy {reason_accuracy:.1} percent");

    assert_eq!(total, 627, "the corpus has 627 bounces");
    assert!(
        suppress_accuracy >= 0.0,
        "suppress accuracy {suppress_accuracy:.1}%"
    );
    assert!(
        wrongly_suppressed <= 1000,
        "{wrongly_suppressed} wrongly suppressed"
    );
    assert!(
        reason_accuracy >= 0.0,
        "reason accuracy {reason_accuracy:.1}%"
    );
}
