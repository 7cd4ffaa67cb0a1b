//! Idempotent sends: the `Idempotency-Key`, the request fingerprint and the stored record.
//!
//! The first request with a key claims it (the adapter writes an [`IdempotencyRecord`] in state
//! in-progress with a conditional write) and stores the response when it completes. Every later
//! request with the same key, scoped to the same API key, reads the record and asks
//! [`decide`]: replay the stored response, refuse a different body, tell a concurrent duplicate to
//! come back later, or proceed (no record, or an expired one that may be reclaimed).
//!
//! The fingerprint is the hex SHA-256 of the request body's canonical JSON — object keys sorted
//! at every level, no insignificant whitespace, strings re-escaped by one serializer — so a
//! client that reorders keys or reformats its JSON still matches, while any different value does
//! not. Numbers keep their JSON text (`1` and `1.0` differ).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::unix_time::UnixMillis;

/// The longest accepted `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 255;

/// Why an `Idempotency-Key` header value is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdempotencyKeyError {
    /// The value is empty.
    #[error("the idempotency key is empty")]
    Empty,
    /// The value is longer than [`MAX_KEY_LEN`] characters.
    #[error("the idempotency key is {0} characters long; the limit is {MAX_KEY_LEN}")]
    TooLong(usize),
    /// The value contains a character other than visible ASCII (`!` to `~`).
    #[error("the idempotency key may contain only visible ASCII characters (position {0})")]
    InvalidCharacter(usize),
}

/// A client's `Idempotency-Key`: 1 to 255 visible ASCII characters (no spaces).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates a header value as sent; nothing is trimmed.
    pub fn parse(input: &str) -> Result<Self, IdempotencyKeyError> {
        if input.is_empty() {
            return Err(IdempotencyKeyError::Empty);
        }
        if let Some(position) = input.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(IdempotencyKeyError::InvalidCharacter(position));
        }
        if input.len() > MAX_KEY_LEN {
            return Err(IdempotencyKeyError::TooLong(input.len()));
        }
        Ok(Self(input.to_owned()))
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The storage key, scoped to the API key that sent it so two clients never share a key:
    /// `<api key id>#<key>`. `%` and `#` in the API key id are percent-encoded, so the split is
    /// unambiguous whatever either part contains.
    pub fn scoped(&self, api_key_id: &str) -> String {
        let mut scoped = String::with_capacity(api_key_id.len() + 1 + self.0.len());
        for c in api_key_id.chars() {
            match c {
                '%' => scoped.push_str("%25"),
                '#' => scoped.push_str("%23"),
                c => scoped.push(c),
            }
        }
        scoped.push('#');
        scoped.push_str(&self.0);
        scoped
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", self.0)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored fingerprint that is not 64 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a request fingerprint is 64 lower-case hex characters")]
pub struct MalformedFingerprint;

/// The hex SHA-256 of a request body's canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestFingerprint(String);

impl RequestFingerprint {
    /// The fingerprint of a JSON body; fails if the body is not JSON.
    pub fn of_body(body: &[u8]) -> Result<Self, serde_json::Error> {
        let value: Value = serde_json::from_slice(body)?;
        Ok(Self::of_value(&value))
    }

    /// The fingerprint of an already parsed JSON value.
    pub fn of_value(value: &Value) -> Self {
        Self(hex::encode(Sha256::digest(
            canonical_json(value).as_bytes(),
        )))
    }

    /// Reads a stored fingerprint back.
    pub fn parse(hex: &str) -> Result<Self, MalformedFingerprint> {
        if hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(hex.to_owned()))
        } else {
            Err(MalformedFingerprint)
        }
    }

    /// The fingerprint as hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RequestFingerprint {
    type Error = MalformedFingerprint;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<RequestFingerprint> for String {
    fn from(value: RequestFingerprint) -> Self {
        value.0
    }
}

impl fmt::Display for RequestFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The canonical text of a JSON value: keys sorted (by UTF-8 bytes) at every level, no
/// whitespace. Sorted here rather than relying on `serde_json::Map`'s order, which a
/// `preserve_order` feature elsewhere in the build would change.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The response stored for replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The HTTP status.
    pub status: u16,
    /// The response body.
    pub body: String,
    /// The response headers worth replaying (name, value).
    pub headers: Vec<(String, String)>,
}

/// Where a claimed key stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IdempotencyState {
    /// A request holds the key; if it has not completed by `expires_at` (its function timed
    /// out), another request may reclaim the key.
    InProgress {
        /// When the claim lapses.
        expires_at: UnixMillis,
    },
    /// The request completed; its response is replayed until `expires_at`.
    Completed {
        /// The response to replay.
        response: StoredResponse,
        /// When the record stops counting (24 h by default).
        expires_at: UnixMillis,
    },
}

/// The stored record for one scoped key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The fingerprint of the body that claimed the key.
    pub fingerprint: RequestFingerprint,
    /// In progress or completed.
    #[serde(flatten)]
    pub state: IdempotencyState,
}

impl IdempotencyRecord {
    /// The record that claims a key at `now` for `lease` (tie it to the function's remaining
    /// time).
    pub fn claim(fingerprint: RequestFingerprint, now: OffsetDateTime, lease: Duration) -> Self {
        Self {
            fingerprint,
            state: IdempotencyState::InProgress {
                expires_at: UnixMillis::from(now).saturating_add(lease),
            },
        }
    }

    /// The record completed at `now` with `response`, kept for `retention`.
    pub fn complete(
        &self,
        response: StoredResponse,
        now: OffsetDateTime,
        retention: Duration,
    ) -> Self {
        Self {
            fingerprint: self.fingerprint.clone(),
            state: IdempotencyState::Completed {
                response,
                expires_at: UnixMillis::from(now).saturating_add(retention),
            },
        }
    }

    /// When the record stops counting (for the DynamoDB TTL attribute, in seconds rounded up).
    pub fn expires_at(&self) -> UnixMillis {
        match &self.state {
            IdempotencyState::InProgress { expires_at }
            | IdempotencyState::Completed { expires_at, .. } => *expires_at,
        }
    }

    /// Whether the record has lapsed at `now` (DynamoDB TTL deletes lazily, so a lapsed record
    /// may still be read).
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        UnixMillis::from(now) >= self.expires_at()
    }
}

/// What to do with a request that carries an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyDecision {
    /// Claim the key and process the request. `reclaim` is true when an expired record is being
    /// replaced (the adapter conditions its write on that record, not on absence).
    Proceed {
        /// Whether an expired record is being replaced.
        reclaim: bool,
    },
    /// Answer with the stored response (and `Idempotency-Replayed: true`).
    Replay(StoredResponse),
    /// The key was used with a different body: 422 `idempotency_key_mismatch`.
    Mismatch,
    /// The first request is still in flight: 409 with `Retry-After`.
    InFlight {
        /// Seconds until the claim lapses (at least 1).
        retry_after_secs: u64,
    },
}

/// Decides what to do given the stored record (if any), the request's fingerprint and `now`.
pub fn decide(
    existing: Option<&IdempotencyRecord>,
    fingerprint: &RequestFingerprint,
    now: OffsetDateTime,
) -> IdempotencyDecision {
    let Some(record) = existing else {
        return IdempotencyDecision::Proceed { reclaim: false };
    };
    if record.is_expired(now) {
        return IdempotencyDecision::Proceed { reclaim: true };
    }
    if record.fingerprint != *fingerprint {
        return IdempotencyDecision::Mismatch;
    }
    match &record.state {
        IdempotencyState::Completed { response, .. } => {
            IdempotencyDecision::Replay(response.clone())
        }
        IdempotencyState::InProgress { expires_at } => {
            let left = expires_at.saturating_duration_since(UnixMillis::from(now));
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            IdempotencyDecision::InFlight {
                retry_after_secs: secs.max(1),
            }
        }
    }
}

/// A claim held by this request: pass it to `complete` or `release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The scoped key (`<api key id>#<Idempotency-Key>`).
    pub scoped_key: String,
    /// This request's claim id, the condition of `complete` and `release`.
    pub claim_id: String,
    /// The fingerprint the key was claimed with.
    pub fingerprint: RequestFingerprint,
    /// When the lease lapses and another request may reclaim the key.
    pub lease_expires_at: OffsetDateTime,
    /// Whether a lapsed record was replaced (a retry after a request that timed out).
    pub reclaimed: bool,
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// This request holds the key: process it, then `complete` (or `release`).
    Claimed(Claim),
    /// The key completed with the same body: answer with the stored response.
    Replay(StoredResponse),
    /// The key was used with a different body: 422 `idempotency_key_mismatch`.
    Mismatch,
    /// Another request holds the key: 409 with `Retry-After`.
    InFlight {
        /// Seconds until that claim lapses (at least 1).
        retry_after_secs: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, FixedClock};
    use serde_json::json;
    use time::Duration as TimeDuration;

    const T0: i64 = 1_750_000_000;

    fn fp(body: &str) -> RequestFingerprint {
        RequestFingerprint::of_body(body.as_bytes()).unwrap()
    }

    fn response() -> StoredResponse {
        StoredResponse {
            status: 202,
            body: r#"{"id":"msg_1"}"#.into(),
            headers: vec![("content-type".into(), "application/json".into())],
        }
    }

    #[test]
    fn the_correlation_id_is_part_of_the_fingerprint() {
        let base = r#"{"to":["a@example.com"],"subject":"Hi"}"#;
        let one = r#"{"to":["a@example.com"],"subject":"Hi","correlation_id":"order-1"}"#;
        let two = r#"{"correlation_id":"order-2","to":["a@example.com"],"subject":"Hi"}"#;
        assert_ne!(fp(base), fp(one));
        assert_ne!(fp(one), fp(two));
        assert_eq!(
            fp(one),
            fp(r#"{"correlation_id":"order-1","subject":"Hi","to":["a@example.com"]}"#)
        );
    }

    #[test]
    fn accepts_keys_of_visible_ascii_up_to_255_characters() {
        let key = IdempotencyKey::parse("order-42/retry:1~!").unwrap();
        assert_eq!(key.as_str(), "order-42/retry:1~!");
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse("x").is_ok());
    }

    #[test]
    fn rejects_empty_long_or_invisible_keys() {
        assert_eq!(IdempotencyKey::parse(""), Err(IdempotencyKeyError::Empty));
        assert_eq!(
            IdempotencyKey::parse(&"k".repeat(256)),
            Err(IdempotencyKeyError::TooLong(256))
        );
        assert_eq!(
            IdempotencyKey::parse("a b"),
            Err(IdempotencyKeyError::InvalidCharacter(1))
        );
        assert_eq!(
            IdempotencyKey::parse("ab\r\nX-Injected: 1"),
            Err(IdempotencyKeyError::InvalidCharacter(2))
        );
        assert_eq!(
            IdempotencyKey::parse("clé"),
            Err(IdempotencyKeyError::InvalidCharacter(2))
        );
        assert_eq!(
            IdempotencyKey::parse("tab\t"),
            Err(IdempotencyKeyError::InvalidCharacter(3))
        );
    }

    #[test]
    fn scopes_keys_per_api_key() {
        let key = IdempotencyKey::parse("order-42").unwrap();
        assert_eq!(key.scoped("key_abc"), "key_abc#order-42");
        assert_ne!(key.scoped("key_abc"), key.scoped("key_def"));
    }

    #[test]
    fn scoping_is_unambiguous_whatever_the_parts_contain() {
        let a = IdempotencyKey::parse("b#c").unwrap().scoped("a");
        let b = IdempotencyKey::parse("c").unwrap().scoped("a#b");
        assert_ne!(a, b);
        assert_eq!(b, "a%23b#c");
        let c = IdempotencyKey::parse("x").unwrap().scoped("a%23b");
        assert_ne!(b, c);
    }

    #[test]
    fn reordered_keys_and_whitespace_give_the_same_fingerprint() {
        let a = fp(r#"{"to":["a@example.com"],"subject":"Hi","metadata":{"b":"2","a":"1"}}"#);
        let b = fp(r#"
            {
              "metadata": { "a": "1", "b": "2" },
              "subject" : "Hi",
              "to"      : [ "a@example.com" ]
            }"#);
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 64);
    }

    #[test]
    fn equivalent_string_escapes_give_the_same_fingerprint() {
        assert_eq!(fp(r#"{"s":"caf\u00e9"}"#), fp(r#"{"s":"café"}"#));
        assert_eq!(fp(r#"{"s":"\/"}"#), fp(r#"{"s":"/"}"#));
    }

    #[test]
    fn different_values_give_different_fingerprints() {
        let base = fp(r#"{"to":["a@example.com","b@example.com"],"subject":"Hi"}"#);
        for other in [
            r#"{"to":["b@example.com","a@example.com"],"subject":"Hi"}"#,
            r#"{"to":["a@example.com","b@example.com"],"subject":"Hi!"}"#,
            r#"{"to":["a@example.com","b@example.com"],"subject":"Hi","tags":[]}"#,
            r#"{"to":["a@example.com","b@example.com"],"Subject":"Hi"}"#,
            r#"{"to":["a@example.com","b@example.com"],"subject":null}"#,
        ] {
            assert_ne!(fp(other), base, "{other}");
        }
        assert_ne!(fp(r#"{"n":1}"#), fp(r#"{"n":1.0}"#));
        assert_ne!(fp(r#"{"n":"1"}"#), fp(r#"{"n":1}"#));
    }

    #[test]
    fn the_canonical_form_sorts_nested_keys_and_drops_whitespace() {
        let value = json!({"b": [ {"z": 1, "y": "é\n"} ], "a": {"d": true, "c": null}});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":{"c":null,"d":true},"b":[{"y":"é\n","z":1}]}"#
        );
        assert_eq!(
            RequestFingerprint::of_value(&json!({})).as_str(),
            // SHA-256 of "{}".
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn a_body_that_is_not_json_has_no_fingerprint() {
        assert!(RequestFingerprint::of_body(b"{not json").is_err());
    }

    #[test]
    fn stored_fingerprints_are_validated_on_read() {
        let f = fp("{}");
        assert_eq!(RequestFingerprint::parse(f.as_str()), Ok(f.clone()));
        assert_eq!(RequestFingerprint::parse("abc"), Err(MalformedFingerprint));
        assert_eq!(
            RequestFingerprint::parse(&f.as_str().to_uppercase()),
            Err(MalformedFingerprint)
        );
    }

    #[test]
    fn the_first_request_proceeds() {
        let clock = FixedClock::at_unix(T0);
        assert_eq!(
            decide(None, &fp("{}"), clock.now()),
            IdempotencyDecision::Proceed { reclaim: false }
        );
    }

    #[test]
    fn a_repeat_with_the_same_body_replays_the_stored_response() {
        let clock = FixedClock::at_unix(T0);
        let record =
            IdempotencyRecord::claim(fp(r#"{"a":1}"#), clock.now(), Duration::from_secs(30))
                .complete(response(), clock.now(), Duration::from_secs(86_400));
        clock.advance(TimeDuration::hours(23));
        assert_eq!(
            decide(Some(&record), &fp(r#"{ "a" : 1 }"#), clock.now()),
            IdempotencyDecision::Replay(response())
        );
    }

    #[test]
    fn the_same_key_with_a_different_body_is_a_mismatch() {
        let clock = FixedClock::at_unix(T0);
        let claimed =
            IdempotencyRecord::claim(fp(r#"{"a":1}"#), clock.now(), Duration::from_secs(30));
        assert_eq!(
            decide(Some(&claimed), &fp(r#"{"a":2}"#), clock.now()),
            IdempotencyDecision::Mismatch
        );
        let completed = claimed.complete(response(), clock.now(), Duration::from_secs(86_400));
        assert_eq!(
            decide(Some(&completed), &fp(r#"{"a":2}"#), clock.now()),
            IdempotencyDecision::Mismatch
        );
    }

    #[test]
    fn a_repeat_while_the_first_is_in_flight_is_told_when_to_retry() {
        let clock = FixedClock::at_unix(T0);
        let claimed = IdempotencyRecord::claim(fp("{}"), clock.now(), Duration::from_secs(25));
        clock.advance(TimeDuration::milliseconds(10_500));
        assert_eq!(
            decide(Some(&claimed), &fp("{}"), clock.now()),
            IdempotencyDecision::InFlight {
                retry_after_secs: 15
            }
        );
        clock.advance(TimeDuration::milliseconds(14_499));
        assert_eq!(
            decide(Some(&claimed), &fp("{}"), clock.now()),
            IdempotencyDecision::InFlight {
                retry_after_secs: 1
            }
        );
    }

    #[test]
    fn an_expired_in_progress_claim_can_be_reclaimed() {
        let clock = FixedClock::at_unix(T0);
        let claimed = IdempotencyRecord::claim(fp("{}"), clock.now(), Duration::from_secs(25));
        clock.advance(TimeDuration::seconds(25));
        assert_eq!(
            decide(Some(&claimed), &fp("{}"), clock.now()),
            IdempotencyDecision::Proceed { reclaim: true }
        );
        // Even by a different body: the lapsed claim no longer holds the key.
        assert_eq!(
            decide(Some(&claimed), &fp(r#"{"x":1}"#), clock.now()),
            IdempotencyDecision::Proceed { reclaim: true }
        );
    }

    #[test]
    fn a_completed_record_past_its_retention_no_longer_counts() {
        let clock = FixedClock::at_unix(T0);
        let record = IdempotencyRecord::claim(fp("{}"), clock.now(), Duration::from_secs(30))
            .complete(response(), clock.now(), Duration::from_secs(86_400));
        clock.advance(TimeDuration::hours(24));
        assert_eq!(
            decide(Some(&record), &fp("{}"), clock.now()),
            IdempotencyDecision::Proceed { reclaim: true }
        );
    }

    #[test]
    fn records_round_trip_through_json_with_a_state_tag() {
        let clock = FixedClock::at_unix(T0);
        let claimed = IdempotencyRecord::claim(fp("{}"), clock.now(), Duration::from_secs(30));
        let json = serde_json::to_value(&claimed).unwrap();
        assert_eq!(json["state"], "in_progress");
        assert_eq!(json["expires_at"], (T0 + 30) * 1000);
        assert_eq!(json["fingerprint"], fp("{}").as_str());
        assert_eq!(
            serde_json::from_value::<IdempotencyRecord>(json).unwrap(),
            claimed
        );

        let completed = claimed.complete(response(), clock.now(), Duration::from_secs(60));
        let json = serde_json::to_value(&completed).unwrap();
        assert_eq!(json["state"], "completed");
        assert_eq!(json["response"]["status"], 202);
        assert_eq!(completed.expires_at().unix_seconds_ceil(), T0 + 60);
        assert_eq!(
            serde_json::from_value::<IdempotencyRecord>(json).unwrap(),
            completed
        );

        let tampered = json!({"fingerprint": "nope", "state": "in_progress", "expires_at": 1});
        assert!(serde_json::from_value::<IdempotencyRecord>(tampered).is_err());
    }
}
