//! One-click unsubscribe (RFC 8058): signed per-message, per-recipient tokens, the
//! `List-Unsubscribe` / `List-Unsubscribe-Post` headers that carry them, and topics.
//!
//! ## The token
//!
//! `base64url_nopad(version ‖ key id ‖ recipient index ‖ message id ‖ mac)`:
//!
//! | bytes | what |
//! |---|---|
//! | 1 | version, `1` |
//! | 4 | key id: the first 4 bytes of SHA-256 of the signing key (names the key, reveals nothing of it) |
//! | 1 | the recipient's index in the message (to, cc, bcc order; a message carrying our link has one recipient, index 0) |
//! | 30 | our message id (`msg_` + 26 base32 characters, as ASCII) |
//! | 16 | HMAC-SHA256 over `"mailgate-unsubscribe-v1" ‖ everything before`, truncated to 128 bits |
//!
//! 52 bytes, 70 characters. The token holds no address and no topic: the unsubscribe endpoint
//! reads both from the stored message, so a token cannot be edited into another address or
//! topic, and a leaked URL says nothing about who received it.
//!
//! ## Rotation
//!
//! `UNSUBSCRIBE_SIGNING_KEYS` is a comma-separated list, like the webhook secrets: the first key
//! signs, every key verifies (chosen by key id, then compared in constant time). To rotate, put
//! the new key first and keep the old one listed for as long as mail signed with it can still be
//! clicked (mailbox providers honour links in old mail; keep it months, not days).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::MessageId;

/// The value of `List-Unsubscribe-Post` that RFC 8058 prescribes.
pub const ONE_CLICK_POST_VALUE: &str = "List-Unsubscribe=One-Click";
/// The `List-Unsubscribe` header name.
pub const LIST_UNSUBSCRIBE: &str = "List-Unsubscribe";
/// The `List-Unsubscribe-Post` header name.
pub const LIST_UNSUBSCRIBE_POST: &str = "List-Unsubscribe-Post";
/// The longest topic name.
pub const MAX_TOPIC_CHARS: usize = 64;

const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 4;
const MAC_LEN: usize = 16;
const MESSAGE_ID_LEN: usize = 30;
const TOKEN_LEN: usize = 1 + KEY_ID_LEN + 1 + MESSAGE_ID_LEN + MAC_LEN;
const DOMAIN: &[u8] = b"mailgate-unsubscribe-v1";

/// Whether `topic` is a valid topic name: `[a-z0-9_-]{1,64}`.
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_CHARS
        && topic
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// What a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeToken {
    /// The message the link was sent in.
    pub message_id: MessageId,
    /// The recipient's index in that message (to, cc, bcc order).
    pub recipient_index: u8,
}

/// Why a token is refused. Deliberately coarse: the endpoint answers every case alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not base64url, the wrong length or version, or not a message id.
    #[error("the unsubscribe token is malformed")]
    Malformed,
    /// No configured key has this key id, or the MAC does not match.
    #[error("the unsubscribe token's signature does not verify")]
    BadSignature,
}

/// Why `UNSUBSCRIBE_SIGNING_KEYS` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeysError {
    /// No key is listed.
    #[error("UNSUBSCRIBE_SIGNING_KEYS lists no key")]
    Empty,
    /// A key is shorter than 32 bytes.
    #[error(
        "every UNSUBSCRIBE_SIGNING_KEYS key must be at least 32 characters (key {0} is shorter)"
    )]
    TooShort(usize),
}

struct SigningKey {
    id: [u8; KEY_ID_LEN],
    secret: Vec<u8>,
}

/// The unsubscribe signing keys: the first signs, all verify. `Debug` shows only how many.
#[derive(Clone)]
pub struct UnsubscribeKeys {
    keys: std::sync::Arc<Vec<SigningKey>>,
}

impl fmt::Debug for UnsubscribeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnsubscribeKeys")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl UnsubscribeKeys {
    /// The keys of a comma-separated list (surrounding whitespace ignored), each at least 32
    /// bytes (HMAC-SHA256's output size: a shorter key weakens the MAC).
    pub fn parse(list: &str) -> Result<Self, SigningKeysError> {
        let mut keys = Vec::new();
        for (i, raw) in list
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .enumerate()
        {
            if raw.len() < 32 {
                return Err(SigningKeysError::TooShort(i + 1));
            }
            let digest = Sha256::digest(raw.as_bytes());
            let mut id = [0u8; KEY_ID_LEN];
            id.copy_from_slice(&digest[..KEY_ID_LEN]);
            keys.push(SigningKey {
                id,
                secret: raw.as_bytes().to_vec(),
            });
        }
        if keys.is_empty() {
            return Err(SigningKeysError::Empty);
        }
        Ok(Self {
            keys: std::sync::Arc::new(keys),
        })
    }

    fn mac(secret: &[u8], signed: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).expect("HMAC-SHA256 takes keys of any length");
        mac.update(DOMAIN);
        mac.update(signed);
        mac
    }

    /// The token for recipient `recipient_index` of `message_id`, signed with the first key.
    pub fn sign(&self, message_id: &MessageId, recipient_index: u8) -> String {
        let key = &self.keys[0];
        let mut bytes = Vec::with_capacity(TOKEN_LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(&key.id);
        bytes.push(recipient_index);
        bytes.extend_from_slice(message_id.as_str().as_bytes());
        let tag = Self::mac(&key.secret, &bytes).finalize().into_bytes();
        bytes.extend_from_slice(&tag[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// What `token` names, if one of the keys signed it.
    pub fn verify(&self, token: &str) -> Result<UnsubscribeToken, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token.trim())
            .map_err(|_| TokenError::Malformed)?;
        if bytes.len() != TOKEN_LEN || bytes[0] != VERSION {
            return Err(TokenError::Malformed);
        }
        let (signed, tag) = bytes.split_at(TOKEN_LEN - MAC_LEN);
        let key_id = &signed[1..1 + KEY_ID_LEN];
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or(TokenError::BadSignature)?;
        Self::mac(&key.secret, signed)
            .verify_truncated_left(tag)
            .map_err(|_| TokenError::BadSignature)?;
        let recipient_index = signed[1 + KEY_ID_LEN];
        let id =
            std::str::from_utf8(&signed[2 + KEY_ID_LEN..]).map_err(|_| TokenError::Malformed)?;
        let message_id = MessageId::parse(id).map_err(|_| TokenError::Malformed)?;
        Ok(UnsubscribeToken {
            message_id,
            recipient_index,
        })
    }
}

/// How mailgate builds one-click unsubscribe links: the endpoint's base URL, an optional mailto
/// address, and the signing keys.
#[derive(Debug, Clone)]
pub struct UnsubscribeLinks {
    base_url: String,
    mailto: Option<String>,
    keys: UnsubscribeKeys,
}

impl UnsubscribeLinks {
    /// Links to `base_url` (an `https://` URL, or `http://` on loopback for local runs; a
    /// trailing `/` is dropped), with `mailto` as the second option when set.
    pub fn new(
        base_url: &str,
        mailto: Option<String>,
        keys: UnsubscribeKeys,
    ) -> Result<Self, String> {
        let base_url = base_url.trim().trim_end_matches('/').to_owned();
        let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| base_url.starts_with(p));
        if !(base_url.starts_with("https://") || local) {
            return Err(format!(
                "UNSUBSCRIBE_BASE_URL must be an https:// URL (http:// only on loopback), got {base_url:?}"
            ));
        }
        if base_url.contains(['<', '>', ',', ' ', '?', '#']) {
            return Err("UNSUBSCRIBE_BASE_URL may not contain <, >, comma, space, ? or #".into());
        }
        let mailto = mailto
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty());
        if let Some(m) = &mailto
            && crate::EmailAddress::parse(m).is_err()
        {
            return Err("UNSUBSCRIBE_MAILTO must be an email address".into());
        }
        Ok(Self {
            base_url,
            mailto,
            keys,
        })
    }

    /// The keys.
    pub fn keys(&self) -> &UnsubscribeKeys {
        &self.keys
    }

    /// The one-click URL for recipient `recipient_index` of `message_id`.
    pub fn url(&self, message_id: &MessageId, recipient_index: u8) -> String {
        format!(
            "{}/{}",
            self.base_url,
            self.keys.sign(message_id, recipient_index)
        )
    }

    /// The two headers, in order: `List-Unsubscribe: <https://…>[, <mailto:…>]` and
    /// `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
    pub fn headers(&self, message_id: &MessageId, recipient_index: u8) -> [(String, String); 2] {
        let mut value = format!("<{}>", self.url(message_id, recipient_index));
        if let Some(mailto) = &self.mailto {
            // The subject names the message so a mailbox that only sends mail can still be
            // matched to it by whoever reads that mailbox.
            value.push_str(&format!(
                ", <mailto:{mailto}?subject=unsubscribe%20{}>",
                message_id.as_str()
            ));
        }
        [
            (LIST_UNSUBSCRIBE.to_owned(), value),
            (
                LIST_UNSUBSCRIBE_POST.to_owned(),
                ONE_CLICK_POST_VALUE.to_owned(),
            ),
        ]
    }
}

// ------------------------------------------------------------------------------ reply addresses

/// The local-part prefix of a reply address: `reply+<token>@<INBOUND_DOMAIN>`.
pub const REPLY_PREFIX: &str = "reply+";
/// The HMAC domain of reply tokens: the same keys sign unsubscribe and reply tokens, and the
/// different domain keeps a token of one kind from ever verifying as the other.
const REPLY_DOMAIN: &[u8] = b"mailgate-reply-v1";
/// Characters of a reply token: our id's 26-character body, then 32 base32 characters of key
/// id and MAC (20 bytes). With `reply+` the local part is 64 characters, RFC 5321's limit.
const REPLY_TOKEN_CHARS: usize = 26 + 32;

impl UnsubscribeKeys {
    fn reply_tag(key: &SigningKey, message_id: &MessageId) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key.secret)
            .expect("HMAC-SHA256 takes keys of any length");
        mac.update(REPLY_DOMAIN);
        mac.update(message_id.as_str().as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut bytes = Vec::with_capacity(KEY_ID_LEN + MAC_LEN);
        bytes.extend_from_slice(&key.id);
        bytes.extend_from_slice(&tag[..MAC_LEN]);
        crate::api_key::base32(&bytes)
    }

    /// The reply token of `message_id`, signed with the first key: lower-case base32 only (it
    /// survives MTAs that fold the case of local parts), no address, nothing but our id.
    pub fn sign_reply(&self, message_id: &MessageId) -> String {
        let body = &message_id.as_str()[MessageId::PREFIX.len()..];
        format!("{body}{}", Self::reply_tag(&self.keys[0], message_id))
    }

    /// The message a reply token names, if one of the keys signed it (compared in constant time).
    pub fn verify_reply(&self, token: &str) -> Result<MessageId, TokenError> {
        let token = token.to_ascii_lowercase();
        if token.len() != REPLY_TOKEN_CHARS || !token.is_ascii() {
            return Err(TokenError::Malformed);
        }
        let (body, tag) = token.split_at(26);
        let message_id = MessageId::parse(&format!("{}{body}", MessageId::PREFIX))
            .map_err(|_| TokenError::Malformed)?;
        let matched = self.keys.iter().fold(subtle::Choice::from(0), |acc, key| {
            let expected = Self::reply_tag(key, &message_id);
            acc | subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), tag.as_bytes())
        });
        if bool::from(matched) {
            Ok(message_id)
        } else {
            Err(TokenError::BadSignature)
        }
    }
}

/// How reply addresses are made and read: `reply+<token>@<INBOUND_DOMAIN>`, signed with the
/// unsubscribe keys (`UNSUBSCRIBE_SIGNING_KEYS`) under their own HMAC domain.
#[derive(Debug, Clone)]
pub struct ReplyAddresses {
    domain: String,
    keys: UnsubscribeKeys,
}

/// The variable naming the domain whose mail mailgate receives for reply addresses.
pub const INBOUND_DOMAIN_VAR: &str = "INBOUND_DOMAIN";

impl ReplyAddresses {
    /// Reply addresses at `domain` (lower-cased) signed with `keys`.
    pub fn new(domain: &str, keys: UnsubscribeKeys) -> Self {
        Self {
            domain: domain.trim().trim_start_matches('@').to_ascii_lowercase(),
            keys,
        }
    }

    /// The reply address of `message_id`.
    pub fn address(&self, message_id: &MessageId) -> String {
        format!(
            "{REPLY_PREFIX}{}@{}",
            self.keys.sign_reply(message_id),
            self.domain
        )
    }

    /// The message `address` is the reply address of, when it is one of ours at our domain and
    /// its token verifies.
    pub fn message_of(&self, address: &str) -> Option<MessageId> {
        let (local, domain) = address.trim().rsplit_once('@')?;
        if !domain.eq_ignore_ascii_case(&self.domain) {
            return None;
        }
        let token = local
            .get(..REPLY_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(REPLY_PREFIX))
            .and_then(|_| local.get(REPLY_PREFIX.len()..))?;
        self.keys.verify_reply(token).ok()
    }
}

/// Reads `INBOUND_DOMAIN` and `UNSUBSCRIBE_SIGNING_KEYS` through `lookup`: `Ok(None)` unless
/// both are set (then `"track_replies": true` is refused).
pub fn reply_addresses_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<ReplyAddresses>, String> {
    let domain = lookup(INBOUND_DOMAIN_VAR).filter(|v| !v.trim().is_empty());
    let keys = keys_from_lookup(&lookup)?;
    Ok(match (domain, keys) {
        (Some(domain), Some(keys)) => Some(ReplyAddresses::new(&domain, keys)),
        _ => None,
    })
}

/// The base URL of the unsubscribe endpoint (the `unsubscribe` function's URL).
pub const BASE_URL_VAR: &str = "UNSUBSCRIBE_BASE_URL";
/// The signing keys, comma-separated; the first signs (a secret: `ssm:`/`secretsmanager:`
/// references are resolved at cold start).
pub const SIGNING_KEYS_VAR: &str = "UNSUBSCRIBE_SIGNING_KEYS";
/// An optional address for `mailto:` unsubscribes.
pub const MAILTO_VAR: &str = "UNSUBSCRIBE_MAILTO";

/// Reads `UNSUBSCRIBE_SIGNING_KEYS` through `lookup`: `Ok(None)` when unset.
pub fn keys_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<UnsubscribeKeys>, String> {
    match lookup(SIGNING_KEYS_VAR).filter(|v| !v.trim().is_empty()) {
        None => Ok(None),
        Some(list) => UnsubscribeKeys::parse(&list)
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

/// Reads the link settings through `lookup`: `Ok(None)` when `UNSUBSCRIBE_SIGNING_KEYS` is not
/// set (the template always wires `UNSUBSCRIBE_BASE_URL`; without keys no link can be signed, and
/// messages that need one are refused); keys without a base URL are a problem.
pub fn links_from_lookup(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<UnsubscribeLinks>, String> {
    let base = lookup(BASE_URL_VAR).filter(|v| !v.trim().is_empty());
    let keys = keys_from_lookup(&lookup)?;
    match (base, keys) {
        (_, None) => Ok(None),
        (Some(base), Some(keys)) => {
            UnsubscribeLinks::new(&base, lookup(MAILTO_VAR), keys).map(Some)
        }
        (None, Some(_)) => Err(format!(
            "{SIGNING_KEYS_VAR} is set but {BASE_URL_VAR} is not"
        )),
    }
}

/// The token at the end of a request path (`/<token>` or `/…/<token>`), if any.
pub fn token_from_path(path: &str) -> Option<&str> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|t| !t.is_empty())
}

/// Whether a form body is RFC 8058's `List-Unsubscribe=One-Click` (among other fields, in
/// any order; the value is case-sensitive as the RFC writes it).
pub fn is_one_click_form(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_ok_and(|text| {
        text.trim()
            .split('&')
            .any(|pair| pair == ONE_CLICK_POST_VALUE)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_one_click_form_counts() {
        assert!(is_one_click_form(b"List-Unsubscribe=One-Click"));
        assert!(is_one_click_form(b"a=b&List-Unsubscribe=One-Click\r\n"));
        assert!(!is_one_click_form(b"List-Unsubscribe=one-click"));
        assert!(!is_one_click_form(b"List-Unsubscribe=One-Click-ish"));
        assert!(!is_one_click_form(b"\xffList-Unsubscribe=One-Click"));
        assert!(!is_one_click_form(b""));
    }

    const KEY_A: &str = "test-only-unsubscribe-key-aaaaaaaaaaaaaaaa";
    const KEY_B: &str = "test-only-unsubscribe-key-bbbbbbbbbbbbbbbb";

    #[test]
    fn a_token_verifies_and_names_the_message_and_recipient_only() {
        let keys = UnsubscribeKeys::parse(KEY_A).unwrap();
        let id = MessageId::generate();
        let token = keys.sign(&id, 0);
        assert_eq!(token.len(), 70);
        assert_eq!(
            keys.verify(&token).unwrap(),
            UnsubscribeToken {
                message_id: id,
                recipient_index: 0
            }
        );
        assert!(!token.contains('@'));
    }

    #[test]
    fn every_listed_key_verifies_and_only_the_first_signs() {
        let old = UnsubscribeKeys::parse(KEY_A).unwrap();
        let rotated = UnsubscribeKeys::parse(&format!("{KEY_B}, {KEY_A}")).unwrap();
        let id = MessageId::generate();
        let from_old = old.sign(&id, 3);
        assert_eq!(rotated.verify(&from_old).unwrap().recipient_index, 3);
        let from_new = rotated.sign(&id, 3);
        assert_ne!(from_new, from_old);
        assert_eq!(old.verify(&from_new), Err(TokenError::BadSignature));
        let retired = UnsubscribeKeys::parse(KEY_B).unwrap();
        assert_eq!(retired.verify(&from_old), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let keys = UnsubscribeKeys::parse(KEY_A).unwrap();
        let id = MessageId::generate();
        let token = keys.sign(&id, 0);
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        for i in [5usize, 8, bytes.len() - 1] {
            let mut forged = bytes.clone();
            forged[i] ^= 1;
            let result = keys.verify(&URL_SAFE_NO_PAD.encode(&forged));
            assert!(result.is_err(), "byte {i} flipped still verified");
        }
        bytes.pop();
        assert_eq!(
            keys.verify(&URL_SAFE_NO_PAD.encode(&bytes)),
            Err(TokenError::Malformed)
        );
        assert_eq!(keys.verify("not a token!"), Err(TokenError::Malformed));
        assert_eq!(keys.verify(""), Err(TokenError::Malformed));
    }

    #[test]
    fn keys_must_be_listed_and_long_enough_and_debug_hides_them() {
        assert_eq!(
            UnsubscribeKeys::parse(" , ").unwrap_err(),
            SigningKeysError::Empty
        );
        assert_eq!(
            UnsubscribeKeys::parse(&format!("{KEY_A},short")).unwrap_err(),
            SigningKeysError::TooShort(2)
        );
        let shown = format!("{:?}", UnsubscribeKeys::parse(KEY_A).unwrap());
        assert!(!shown.contains("test-only"), "{shown}");
    }

    #[test]
    fn headers_carry_the_https_link_the_mailto_and_the_one_click_post() {
        let keys = UnsubscribeKeys::parse(KEY_A).unwrap();
        let links = UnsubscribeLinks::new(
            "https://u.example.com/",
            Some("unsub@example.com".into()),
            keys.clone(),
        )
        .unwrap();
        let id = MessageId::generate();
        let [(name, value), post] = links.headers(&id, 0);
        assert_eq!(name, "List-Unsubscribe");
        let url = value
            .strip_prefix("<https://u.example.com/")
            .and_then(|v| v.split_once('>'))
            .unwrap();
        assert_eq!(keys.verify(url.0).unwrap().message_id, id);
        assert!(url.1.starts_with(", <mailto:unsub@example.com?subject="));
        assert_eq!(
            post,
            (
                "List-Unsubscribe-Post".to_owned(),
                "List-Unsubscribe=One-Click".to_owned()
            )
        );
        let plain = UnsubscribeLinks::new("https://u.example.com", None, keys).unwrap();
        assert!(!plain.headers(&id, 0)[0].1.contains("mailto"));
    }

    #[test]
    fn the_base_url_is_https_or_loopback() {
        let keys = UnsubscribeKeys::parse(KEY_A).unwrap();
        assert!(UnsubscribeLinks::new("http://example.com", None, keys.clone()).is_err());
        assert!(
            UnsubscribeLinks::new(
                "http://127.0.0.1:9000/lambda-url/unsubscribe",
                None,
                keys.clone()
            )
            .is_ok()
        );
        assert!(UnsubscribeLinks::new("https://a.example/x", Some("nope".into()), keys).is_err());
    }

    #[test]
    fn topics_are_lower_case_names_up_to_64() {
        for ok in ["news", "product-updates", "a_1", &"x".repeat(64)] {
            assert!(is_valid_topic(ok), "{ok}");
        }
        for bad in ["", "News", "a b", "a.b", "ü", &"x".repeat(65)] {
            assert!(!is_valid_topic(bad), "{bad}");
        }
    }

    #[test]
    fn links_need_keys_and_keys_need_a_base_url() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert!(
            links_from_lookup(env(&[("UNSUBSCRIBE_BASE_URL", "https://u.example")]))
                .unwrap()
                .is_none()
        );
        assert!(links_from_lookup(env(&[("UNSUBSCRIBE_SIGNING_KEYS", KEY_A)])).is_err());
        assert!(
            links_from_lookup(env(&[
                ("UNSUBSCRIBE_BASE_URL", "https://u.example"),
                ("UNSUBSCRIBE_SIGNING_KEYS", KEY_A)
            ]))
            .unwrap()
            .is_some()
        );
    }

    #[test]
    fn the_token_is_the_last_path_segment() {
        assert_eq!(token_from_path("/abc"), Some("abc"));
        assert_eq!(token_from_path("/lambda-url/unsubscribe/abc/"), Some("abc"));
        assert_eq!(token_from_path("/"), None);
    }

    #[test]
    fn reply_addresses_round_trip_fit_a_local_part_and_refuse_forgeries() {
        let keys = UnsubscribeKeys::parse("reply-test-key-0123456789abcdefghijklmnop").unwrap();
        let replies = ReplyAddresses::new("Inbound.Example.com", keys.clone());
        let id = MessageId::parse("msg_0123456789abcdefghjkmnpqrs").unwrap();
        let address = replies.address(&id);
        let local = address.split('@').next().unwrap();
        assert_eq!(local.len(), 64, "RFC 5321 caps a local part at 64");
        assert!(address.ends_with("@inbound.example.com"));
        assert!(!address.contains(|c: char| c.is_ascii_uppercase()));
        assert_eq!(replies.message_of(&address), Some(id.clone()));
        // Case folded by a relay, still ours.
        assert_eq!(
            replies.message_of(&address.to_ascii_uppercase()),
            Some(id.clone())
        );
        // Another message's body with this tag, a changed tag, another domain: refused.
        let other = MessageId::parse("msg_zzzzzzzzzzzzzzzzzzzzzzzzzz").unwrap();
        let forged = address.replace(&id.as_str()[4..], &other.as_str()[4..]);
        assert_eq!(replies.message_of(&forged), None);
        let mut tampered = address.clone();
        tampered.replace_range(40..41, if &address[40..41] == "a" { "b" } else { "a" });
        assert_eq!(replies.message_of(&tampered), None);
        assert_eq!(
            replies.message_of(&address.replace("inbound.example.com", "example.org")),
            None
        );
        // A token signed with a retired key verifies while that key is listed.
        let rotated = ReplyAddresses::new(
            "inbound.example.com",
            UnsubscribeKeys::parse(
                "a-newer-reply-test-key-0123456789abcdefghij,reply-test-key-0123456789abcdefghijklmnop",
            )
            .unwrap(),
        );
        assert_eq!(rotated.message_of(&address), Some(id.clone()));
        // An unsubscribe token never passes as a reply token.
        assert!(keys.verify_reply(&keys.sign(&id, 0)).is_err());
    }
}
