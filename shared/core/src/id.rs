//! Prefixed, type-safe identifiers (`msg_…`, `evt_…`, `ep_…`).
//!
//! An id is its prefix, an underscore and 26 characters of Crockford base32 (128 random bits), so
//! ids are URL-safe, case-insensitive to read aloud, and cannot be confused across kinds.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const BODY_LEN: usize = 26;

/// Why a string is not a valid id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The prefix does not match the kind of id.
    #[error("expected an id starting with {expected:?}")]
    WrongPrefix {
        /// The prefix that was expected, e.g. `msg_`.
        expected: &'static str,
    },
    /// The part after the prefix is not 26 base32 characters.
    #[error("the id body must be {BODY_LEN} lower-case base32 characters")]
    MalformedBody,
}

fn random_body() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let mut n = u128::from_be_bytes(bytes);
    let mut out = [0u8; BODY_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n & 31) as usize];
        n >>= 5;
    }
    out.iter().map(|&b| b as char).collect()
}

/// A body made from the first 128 bits of SHA-256 of `seed`: the same seed, the same id.
fn derived_body(seed: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(seed);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let mut n = u128::from_be_bytes(bytes);
    let mut out = [0u8; BODY_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n & 31) as usize];
        n >>= 5;
    }
    out.iter().map(|&b| b as char).collect()
}

fn check(input: &str, prefix: &'static str) -> Result<(), IdError> {
    let body = input
        .strip_prefix(prefix)
        .ok_or(IdError::WrongPrefix { expected: prefix })?;
    if body.len() == BODY_LEN && body.bytes().all(|b| ALPHABET.contains(&b)) {
        Ok(())
    } else {
        Err(IdError::MalformedBody)
    }
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new random id.
            pub fn generate() -> Self {
                Self(format!("{}{}", Self::PREFIX, random_body()))
            }

            /// The id derived from `seed`: the same seed always gives the same id (an
            /// `Idempotency-Key` request's messages keep their ids when it is retried).
            pub fn derived(seed: &[u8]) -> Self {
                Self(format!("{}{}", Self::PREFIX, derived_body(seed)))
            }

            /// Parses an id, checking its prefix and body.
            pub fn parse(input: &str) -> Result<Self, IdError> {
                check(input, Self::PREFIX)?;
                Ok(Self(input.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// Identifies one message accepted by the send API (`msg_…`).
    MessageId,
    "msg_"
);
prefixed_id!(
    /// Identifies one normalised delivery event (`evt_…`).
    EventId,
    "evt_"
);
prefixed_id!(
    /// Identifies one of the team's own webhook endpoints (`ep_…`).
    EndpointId,
    "ep_"
);
prefixed_id!(
    /// Identifies one message template (`tpl_…`).
    TemplateId,
    "tpl_"
);
prefixed_id!(
    /// Identifies one received (inbound) email (`inb_…`).
    InboundId,
    "inb_"
);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_ids_have_their_prefix_and_parse_back() {
        let m = MessageId::generate();
        assert!(m.as_str().starts_with("msg_"));
        assert_eq!(m.as_str().len(), 4 + BODY_LEN);
        assert_eq!(MessageId::parse(m.as_str()).unwrap(), m);
        let e = EventId::generate();
        assert!(e.as_str().starts_with("evt_"));
        assert_eq!(e.to_string().parse::<EventId>().unwrap(), e);
    }

    #[test]
    fn derived_ids_parse_back_and_depend_only_on_their_seed() {
        let a = MessageId::derived(b"key#1");
        assert_eq!(MessageId::parse(a.as_str()).unwrap(), a);
        assert_eq!(a, MessageId::derived(b"key#1"));
        assert_ne!(a, MessageId::derived(b"key#2"));
    }

    #[test]
    fn generated_ids_do_not_repeat() {
        let ids: HashSet<_> = (0..10_000).map(|_| MessageId::generate()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn rejects_ids_of_another_kind_or_shape() {
        let e = EventId::generate();
        assert_eq!(
            MessageId::parse(e.as_str()),
            Err(IdError::WrongPrefix { expected: "msg_" })
        );
        assert_eq!(MessageId::parse("msg_short"), Err(IdError::MalformedBody));
        assert_eq!(
            MessageId::parse("msg_ILOU0000000000000000000000"),
            Err(IdError::MalformedBody)
        );
        assert!(serde_json::from_str::<MessageId>("\"evt_0000\"").is_err());
    }
}
