//! API keys: scopes, environments, ids, the secret format, the stored hash and the pure
//! authorization decision of the send API.
//!
//! A key is shown to its owner once, as `mg_<environment>_<32 lower-case base32 characters>`
//! (160 random bits), and stored only as its [`KeyHash`], the SHA-256 of the key exactly as
//! presented. Any presented string of visible ASCII hashes the same way, so a fixed development
//! key such as `mg_dev_local_key` can be stored too. Authentication looks the hash up, checks the
//! stored hash against the presented one in constant time, refuses revoked keys and then checks
//! the scope the route needs ([`authorize`]).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Lower-case Crockford base32 of `bytes`, five bits per character (`bytes.len() * 8` must be a
/// multiple of 5 for every bit to be used).
pub(crate) fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn random_base32<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    base32(&bytes)
}

// ------------------------------------------------------------------------------------ scopes

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Send messages (`POST /v1/messages`, batches, cancellation).
    Send,
    /// Read messages and suppressions.
    Read,
    /// Add and remove suppressions.
    SuppressionsWrite,
    /// Create, version and delete message templates.
    TemplatesWrite,
    /// Add and delete sender domains (SES identities).
    DomainsWrite,
    /// Read received (inbound) email: `GET /v1/inbound…`, raw messages and attachments.
    InboundRead,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 6] = [
        Scope::Send,
        Scope::Read,
        Scope::SuppressionsWrite,
        Scope::TemplatesWrite,
        Scope::DomainsWrite,
        Scope::InboundRead,
    ];

    /// The scope's name: `send`, `read`, `suppressions:write`, `templates:write`,
    /// `domains:write`, `inbound:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Read => "read",
            Scope::SuppressionsWrite => "suppressions:write",
            Scope::TemplatesWrite => "templates:write",
            Scope::DomainsWrite => "domains:write",
            Scope::InboundRead => "inbound:read",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not one of [`Scope::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scope {0:?}; the scopes are send, read, suppressions:write, templates:write, domains:write, inbound:read"
)]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| UnknownScope(s.to_owned()))
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a list of scopes is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopesError {
    /// A name is not a scope.
    #[error(transparent)]
    Unknown(#[from] UnknownScope),
    /// No scope was given; a key needs at least one.
    #[error("a key needs at least one scope (send, read, suppressions:write)")]
    Empty,
}

/// The non-empty set of scopes a key holds, in a stable order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    /// Every scope.
    pub fn all() -> Self {
        Self(Scope::ALL.into_iter().collect())
    }

    /// The given scopes; duplicates collapse. Fails when there are none.
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Result<Self, ScopesError> {
        let set: BTreeSet<_> = scopes.into_iter().collect();
        if set.is_empty() {
            Err(ScopesError::Empty)
        } else {
            Ok(Self(set))
        }
    }

    /// Parses a comma-separated list such as `send,read` (spaces around names are ignored).
    pub fn parse_list(input: &str) -> Result<Self, ScopesError> {
        let scopes = input
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Scope::from_str)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(scopes)
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: Scope) -> bool {
        self.0.contains(&scope)
    }

    /// The scopes, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for Scopes {
    /// The comma-separated list, e.g. `send,read`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

// ------------------------------------------------------------------------------ environment

/// Whether a key belongs to a test or a live integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum KeyEnvironment {
    /// For development and automated tests.
    Test,
    /// For production traffic.
    #[default]
    Live,
}

impl KeyEnvironment {
    /// `test` or `live`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyEnvironment::Test => "test",
            KeyEnvironment::Live => "live",
        }
    }
}

impl fmt::Display for KeyEnvironment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key environment other than `test` or `live`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key environment {0:?}; use test or live")]
pub struct UnknownKeyEnvironment(pub String);

impl FromStr for KeyEnvironment {
    type Err = UnknownKeyEnvironment;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "test" => Ok(KeyEnvironment::Test),
            "live" => Ok(KeyEnvironment::Live),
            other => Err(UnknownKeyEnvironment(other.to_owned())),
        }
    }
}

impl Serialize for KeyEnvironment {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

// -------------------------------------------------------------------------------------- id

/// Characters of random base32 in an [`ApiKeyId`] after its prefix (128 bits).
const ID_BODY_LEN: usize = 26;

/// Why a string is not an API key id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an API key id (key_ followed by 26 lower-case base32 characters)")]
pub struct InvalidApiKeyId(pub String);

/// The public identifier of an API key (`key_…`): safe to log, list and show; used to revoke it
/// and to scope idempotency keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiKeyId(String);

impl ApiKeyId {
    /// The prefix every API key id starts with.
    pub const PREFIX: &'static str = "key_";

    /// A new random id.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::rng().fill_bytes(&mut bytes);
        // 128 bits in 26 characters: the first character carries the top three bits.
        let mut n = u128::from_be_bytes(bytes);
        let mut body = [0u8; ID_BODY_LEN];
        for slot in body.iter_mut().rev() {
            *slot = ALPHABET[(n & 31) as usize];
            n >>= 5;
        }
        Self(format!(
            "{}{}",
            Self::PREFIX,
            body.iter().map(|&b| char::from(b)).collect::<String>()
        ))
    }

    /// Parses an id, checking its prefix and body.
    pub fn parse(input: &str) -> Result<Self, InvalidApiKeyId> {
        match input.strip_prefix(Self::PREFIX) {
            Some(body)
                if body.len() == ID_BODY_LEN && body.bytes().all(|b| ALPHABET.contains(&b)) =>
            {
                Ok(Self(input.to_owned()))
            }
            _ => Err(InvalidApiKeyId(input.to_owned())),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyId({})", self.0)
    }
}

impl FromStr for ApiKeyId {
    type Err = InvalidApiKeyId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ApiKeyId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

// --------------------------------------------------------------------------------- label

/// The longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 100;

/// Why a label is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidLabel {
    /// Empty or only whitespace.
    #[error("the label is empty")]
    Empty,
    /// Longer than [`MAX_LABEL_CHARS`].
    #[error("the label is longer than {MAX_LABEL_CHARS} characters")]
    TooLong,
    /// Contains a control character (newlines would break listings and logs).
    #[error("the label contains a control character")]
    ControlCharacter,
}

/// A person's name for a key, e.g. `billing service (prod)`: 1 to 100 characters, trimmed, no
/// control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKeyLabel(String);

impl ApiKeyLabel {
    /// Validates a label; surrounding whitespace is trimmed.
    pub fn parse(input: &str) -> Result<Self, InvalidLabel> {
        let label = input.trim();
        if label.is_empty() {
            Err(InvalidLabel::Empty)
        } else if label.chars().count() > MAX_LABEL_CHARS {
            Err(InvalidLabel::TooLong)
        } else if label.chars().any(char::is_control) {
            Err(InvalidLabel::ControlCharacter)
        } else {
            Ok(Self(label.to_owned()))
        }
    }

    /// The label as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiKeyLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for ApiKeyLabel {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

// -------------------------------------------------------------------------------- secret

/// The longest presented key accepted, in bytes.
pub const MAX_SECRET_LEN: usize = 256;
/// Characters of random base32 in a generated key (160 bits).
const SECRET_BODY_LEN: usize = 32;

/// Why a presented key is not even a candidate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedKey {
    /// Nothing after `Bearer`.
    #[error("the API key is empty")]
    Empty,
    /// Longer than [`MAX_SECRET_LEN`].
    #[error("the API key is longer than {MAX_SECRET_LEN} characters")]
    TooLong,
    /// Something other than visible ASCII (`!` to `~`).
    #[error("the API key may contain only visible ASCII characters")]
    InvalidCharacter,
}

/// An API key in clear, as generated or presented. Its `Debug` is redacted; it is never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// A new random key for `environment`: `mg_<environment>_<32 base32 characters>`.
    pub fn generate(environment: KeyEnvironment) -> Self {
        Self(format!(
            "mg_{environment}_{}",
            random_base32::<{ SECRET_BODY_LEN * 5 / 8 }>()
        ))
    }

    /// Accepts any key of 1 to 256 visible ASCII characters: generated keys, and fixed ones such
    /// as the development key `mg_dev_local_key`.
    pub fn parse(input: &str) -> Result<Self, MalformedKey> {
        if input.is_empty() {
            Err(MalformedKey::Empty)
        } else if input.len() > MAX_SECRET_LEN {
            Err(MalformedKey::TooLong)
        } else if !input.bytes().all(|b| b.is_ascii_graphic()) {
            Err(MalformedKey::InvalidCharacter)
        } else {
            Ok(Self(input.to_owned()))
        }
    }

    /// The key in clear, to show its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash under which the key is stored.
    pub fn hash(&self) -> KeyHash {
        KeyHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

/// The SHA-256 of a key as presented; the only form in which a key is stored.
#[derive(Clone, Copy)]
pub struct KeyHash([u8; 32]);

/// A stored hash that is not 64 hexadecimal characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a key hash must be 64 hexadecimal characters")]
pub struct InvalidKeyHash;

impl KeyHash {
    /// Reads the hex form (as stored).
    pub fn from_hex(input: &str) -> Result<Self, InvalidKeyHash> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(input, &mut bytes).map_err(|_| InvalidKeyHash)?;
        Ok(Self(bytes))
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl PartialEq for KeyHash {
    /// Constant-time, so comparing a presented key with a stored one leaks nothing by timing.
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for KeyHash {}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The first few characters tell hashes apart in a test failure; they reveal nothing.
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

// -------------------------------------------------------------------------------- record

/// A stored API key: everything but the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Its public id.
    pub id: ApiKeyId,
    /// The hash of the key.
    pub hash: KeyHash,
    /// Its owner's name for it.
    pub label: ApiKeyLabel,
    /// Test or live.
    pub environment: KeyEnvironment,
    /// What it may do.
    pub scopes: Scopes,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it was revoked; a revoked key never authenticates again.
    pub revoked_at: Option<OffsetDateTime>,
}

impl ApiKeyRecord {
    /// A new, unrevoked record for `secret`.
    pub fn new(
        secret: &ApiKeySecret,
        label: ApiKeyLabel,
        environment: KeyEnvironment,
        scopes: Scopes,
        created_at: OffsetDateTime,
    ) -> Self {
        Self {
            id: ApiKeyId::generate(),
            hash: secret.hash(),
            label,
            environment,
            scopes,
            created_at,
            revoked_at: None,
        }
    }

    /// Whether the key was revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// A key that authenticated a request: what a handler may know about its caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthenticatedKey {
    /// Its public id.
    pub id: ApiKeyId,
    /// Its label.
    pub label: ApiKeyLabel,
    /// Test or live.
    pub environment: KeyEnvironment,
    /// What it may do.
    pub scopes: Scopes,
}

// ------------------------------------------------------------------------- authorization

/// What a route demands of the caller's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// Any valid, unrevoked key.
    AnyKey,
    /// A valid key holding this scope.
    Scope(Scope),
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No `Authorization` header.
    #[error("send the API key as `Authorization: Bearer <key>`")]
    MissingApiKey,
    /// An `Authorization` header that is not `Bearer <key>` with a plausible key.
    #[error("the Authorization header must be `Bearer <key>`: {0}")]
    MalformedApiKey(String),
    /// No such key, or it was revoked (the caller is not told which).
    #[error("the API key is not valid")]
    InvalidApiKey,
    /// A valid key without the scope the route needs.
    #[error("this API key lacks the {needed} scope")]
    InsufficientScope {
        /// The scope the route needs.
        needed: Scope,
    },
}

impl AuthFailure {
    /// The HTTP status: 401, or 403 for a missing scope.
    pub fn status(&self) -> u16 {
        match self {
            AuthFailure::InsufficientScope { .. } => 403,
            _ => 401,
        }
    }

    /// The stable error code: `missing_api_key`, `malformed_api_key`, `invalid_api_key`,
    /// `insufficient_scope`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthFailure::MissingApiKey => "missing_api_key",
            AuthFailure::MalformedApiKey(_) => "malformed_api_key",
            AuthFailure::InvalidApiKey => "invalid_api_key",
            AuthFailure::InsufficientScope { .. } => "insufficient_scope",
        }
    }
}

/// Reads the key from an `Authorization` header value: `Bearer <key>` (the scheme is
/// case-insensitive, as in RFC 7235; one or more spaces separate it from the key).
pub fn parse_authorization(header: Option<&[u8]>) -> Result<ApiKeySecret, AuthFailure> {
    let header = header.ok_or(AuthFailure::MissingApiKey)?;
    let malformed = |why: &str| AuthFailure::MalformedApiKey(why.to_owned());
    let text = std::str::from_utf8(header).map_err(|_| malformed("it is not text"))?;
    let (scheme, rest) = text
        .split_once(' ')
        .ok_or_else(|| malformed("expected the Bearer scheme"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed("expected the Bearer scheme"));
    }
    ApiKeySecret::parse(rest.trim_matches(' '))
        .map_err(|e| AuthFailure::MalformedApiKey(e.to_string()))
}

/// The authorization decision for a presented key: `found` is the record stored under its hash,
/// if any. The stored hash is compared with the presented one in constant time, revoked keys are
/// refused like unknown ones, and then `requirement` is checked.
pub fn authorize(
    presented: &KeyHash,
    found: Option<&ApiKeyRecord>,
    requirement: Requirement,
) -> Result<AuthenticatedKey, AuthFailure> {
    let record = found
        .filter(|r| r.hash == *presented)
        .filter(|r| !r.is_revoked())
        .ok_or(AuthFailure::InvalidApiKey)?;
    if let Requirement::Scope(needed) = requirement
        && !record.scopes.contains(needed)
    {
        return Err(AuthFailure::InsufficientScope { needed });
    }
    Ok(AuthenticatedKey {
        id: record.id.clone(),
        label: record.label.clone(),
        environment: record.environment,
        scopes: record.scopes.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn record(secret: &str, scopes: &[Scope]) -> ApiKeyRecord {
        ApiKeyRecord::new(
            &ApiKeySecret::parse(secret).unwrap(),
            ApiKeyLabel::parse("billing").unwrap(),
            KeyEnvironment::Live,
            Scopes::new(scopes.iter().copied()).unwrap(),
            datetime!(2026-01-02 03:04:05 UTC),
        )
    }

    #[test]
    fn scopes_have_their_documented_names_and_parse_back() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
        }
        assert_eq!(Scope::SuppressionsWrite.as_str(), "suppressions:write");
        assert_eq!(Scope::TemplatesWrite.as_str(), "templates:write");
        assert_eq!(
            "admin".parse::<Scope>(),
            Err(UnknownScope("admin".to_owned()))
        );
        assert_eq!(
            serde_json::to_string(&Scopes::all()).unwrap(),
            r#"["send","read","suppressions:write","templates:write","domains:write","inbound:read"]"#
        );
    }

    #[test]
    fn scope_lists_parse_dedupe_and_refuse_unknown_or_empty_lists() {
        let scopes = Scopes::parse_list("read, send,read").unwrap();
        assert_eq!(scopes.to_string(), "send,read");
        assert!(scopes.contains(Scope::Send));
        assert!(!scopes.contains(Scope::SuppressionsWrite));
        assert_eq!(
            Scopes::parse_list("send,write"),
            Err(ScopesError::Unknown(UnknownScope("write".to_owned())))
        );
        assert_eq!(Scopes::parse_list(" , "), Err(ScopesError::Empty));
    }

    #[test]
    fn environments_are_test_or_live() {
        assert_eq!("test".parse(), Ok(KeyEnvironment::Test));
        assert_eq!("live".parse(), Ok(KeyEnvironment::Live));
        assert!("prod".parse::<KeyEnvironment>().is_err());
        assert_eq!(KeyEnvironment::default(), KeyEnvironment::Live);
    }

    #[test]
    fn generated_ids_have_their_prefix_parse_back_and_do_not_repeat() {
        let id = ApiKeyId::generate();
        assert!(id.as_str().starts_with("key_"));
        assert_eq!(id.as_str().len(), 4 + ID_BODY_LEN);
        assert_eq!(ApiKeyId::parse(id.as_str()).unwrap(), id);
        let ids: BTreeSet<_> = (0..1000).map(|_| ApiKeyId::generate()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ApiKeyId::parse("msg_0000000000000000000000000a").is_err());
        assert!(ApiKeyId::parse("key_short").is_err());
        assert!(ApiKeyId::parse("key_ILOU0000000000000000000000").is_err());
    }

    #[test]
    fn generated_keys_name_their_environment_and_are_random() {
        let live = ApiKeySecret::generate(KeyEnvironment::Live);
        let body = live.expose().strip_prefix("mg_live_").unwrap();
        assert_eq!(body.len(), SECRET_BODY_LEN);
        assert!(body.bytes().all(|b| ALPHABET.contains(&b)));
        assert!(
            ApiKeySecret::generate(KeyEnvironment::Test)
                .expose()
                .starts_with("mg_test_")
        );
        assert_ne!(live, ApiKeySecret::generate(KeyEnvironment::Live));
        assert_eq!(ApiKeySecret::parse(live.expose()).unwrap(), live);
    }

    #[test]
    fn base32_uses_every_bit() {
        assert_eq!(base32(&[0xff; 5]), "zzzzzzzz");
        assert_eq!(base32(&[0x00, 0x00, 0x00, 0x00, 0x21]), "00000011");
        assert_eq!(base32(&[0x80]), "g0");
    }

    #[test]
    fn any_visible_ascii_key_is_accepted_and_hashed_as_presented() {
        let dev = ApiKeySecret::parse("mg_dev_local_key").unwrap();
        // sha256("mg_dev_local_key")
        assert_eq!(
            dev.hash().to_hex(),
            hex::encode(Sha256::digest(b"mg_dev_local_key"))
        );
        assert_eq!(KeyHash::from_hex(&dev.hash().to_hex()).unwrap(), dev.hash());
        assert_ne!(
            ApiKeySecret::parse("mg_dev_local_kez").unwrap().hash(),
            dev.hash()
        );
        assert_eq!(ApiKeySecret::parse(""), Err(MalformedKey::Empty));
        assert_eq!(
            ApiKeySecret::parse("has space"),
            Err(MalformedKey::InvalidCharacter)
        );
        assert_eq!(
            ApiKeySecret::parse(&"k".repeat(MAX_SECRET_LEN + 1)),
            Err(MalformedKey::TooLong)
        );
        assert!(KeyHash::from_hex("abc").is_err());
    }

    #[test]
    fn secrets_and_hashes_do_not_print_themselves() {
        let secret = ApiKeySecret::parse("mg_live_supersecret").unwrap();
        assert!(!format!("{secret:?}").contains("supersecret"));
        let hash = format!("{:?}", secret.hash());
        assert!(!hash.contains(&secret.hash().to_hex()));
    }

    #[test]
    fn labels_are_trimmed_and_bounded() {
        assert_eq!(ApiKeyLabel::parse("  ci  ").unwrap().as_str(), "ci");
        assert_eq!(ApiKeyLabel::parse("   "), Err(InvalidLabel::Empty));
        assert_eq!(
            ApiKeyLabel::parse("a\nb"),
            Err(InvalidLabel::ControlCharacter)
        );
        assert_eq!(
            ApiKeyLabel::parse(&"é".repeat(MAX_LABEL_CHARS))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            MAX_LABEL_CHARS
        );
        assert_eq!(
            ApiKeyLabel::parse(&"a".repeat(MAX_LABEL_CHARS + 1)),
            Err(InvalidLabel::TooLong)
        );
    }

    #[test]
    fn a_missing_header_is_missing_api_key() {
        let err = parse_authorization(None).unwrap_err();
        assert_eq!(err, AuthFailure::MissingApiKey);
        assert_eq!((err.status(), err.code()), (401, "missing_api_key"));
    }

    #[test]
    fn bearer_keys_are_read_with_a_case_insensitive_scheme() {
        for header in [
            "Bearer mg_dev_local_key",
            "bearer  mg_dev_local_key",
            "BEARER mg_dev_local_key ",
        ] {
            assert_eq!(
                parse_authorization(Some(header.as_bytes()))
                    .unwrap()
                    .expose(),
                "mg_dev_local_key",
                "{header}"
            );
        }
    }

    #[test]
    fn other_schemes_and_implausible_keys_are_malformed() {
        for header in [
            &b"Basic dXNlcjpwYXNz"[..],
            b"Bearer",
            b"Bearer ",
            b"mg_dev_local_key",
            b"Bearer two words",
            b"Bearer \xff\xfe",
        ] {
            let err = parse_authorization(Some(header)).unwrap_err();
            assert!(matches!(err, AuthFailure::MalformedApiKey(_)), "{header:?}");
            assert_eq!((err.status(), err.code()), (401, "malformed_api_key"));
        }
    }

    #[test]
    fn a_stored_unrevoked_key_authenticates_for_any_key_routes() {
        let r = record("mg_live_abc", &[Scope::Read]);
        let presented = ApiKeySecret::parse("mg_live_abc").unwrap().hash();
        let key = authorize(&presented, Some(&r), Requirement::AnyKey).unwrap();
        assert_eq!(key.id, r.id);
        assert_eq!(key.label.as_str(), "billing");
        assert_eq!(key.environment, KeyEnvironment::Live);
        assert_eq!(key.scopes.to_string(), "read");
    }

    #[test]
    fn unknown_revoked_or_mismatched_keys_are_invalid() {
        let presented = ApiKeySecret::parse("mg_live_abc").unwrap().hash();
        let invalid = Err(AuthFailure::InvalidApiKey);
        assert_eq!(authorize(&presented, None, Requirement::AnyKey), invalid);

        let mut revoked = record("mg_live_abc", &[Scope::Send]);
        revoked.revoked_at = Some(datetime!(2026-01-03 00:00:00 UTC));
        assert_eq!(
            authorize(&presented, Some(&revoked), Requirement::AnyKey),
            invalid
        );

        let other = record("mg_live_other", &[Scope::Send]);
        assert_eq!(
            authorize(&presented, Some(&other), Requirement::AnyKey),
            invalid
        );
        assert_eq!(AuthFailure::InvalidApiKey.status(), 401);
        assert_eq!(AuthFailure::InvalidApiKey.code(), "invalid_api_key");
    }

    #[test]
    fn a_key_without_the_needed_scope_is_forbidden_naming_the_scope() {
        let r = record("mg_live_abc", &[Scope::Read]);
        let presented = ApiKeySecret::parse("mg_live_abc").unwrap().hash();
        let err = authorize(&presented, Some(&r), Requirement::Scope(Scope::Send)).unwrap_err();
        assert_eq!(
            err,
            AuthFailure::InsufficientScope {
                needed: Scope::Send
            }
        );
        assert_eq!((err.status(), err.code()), (403, "insufficient_scope"));
        assert!(err.to_string().contains("send"));
        assert!(authorize(&presented, Some(&r), Requirement::Scope(Scope::Read)).is_ok());
    }
}
