//! Finding messages without their id (`GET /v1/messages`, `GET /v1/recipients/{address}`,
//! `mailgate-admin messages find`): the filters a caller may give, their validation (every bad
//! filter is a [`QueryError`] naming its field), the choice of the one index that serves a
//! query, and the hash that index keys hold instead of an address.
//!
//! | filter | index (first one that applies) | the other filters |
//! |---|---|---|
//! | `state` | `by-state` (the summary's `state`) | filter expression |
//! | `provider` | `by-provider` (the summary's `provider`) | filter expression |
//! | `recipient` | `by-search-key` (`rcpt#<hash>` entries, one per recipient) | filter expression |
//! | `correlation_id` | `by-correlation-id` (the summary's `correlation_id`) | filter expression |
//! | `tag` | `by-search-key` (`tag#<tag>` entries, one per tag) | filter expression |
//! | `category` | `by-category` (the summary's `category`) | filter expression |
//! | none | `by-environment` (the summary's `environment`) | — |
//!
//! Mutable attributes (`state`, `provider`) come first: they are index keys on the summary
//! itself, so a state change moves the message between index partitions with no extra write,
//! and the entries of the other indexes never carry them. Every index sorts on
//! `<environment>#<created ms>#<id>`, so each query stays inside the key's environment and reads
//! newest first; `after`/`before` bound that sort key.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::send_request::is_tag_char;
use crate::{
    EmailAddress, EventKind, KeyEnvironment, MessageCategory, MessageRecord, MessageState,
    ProviderId, UnixMillis, suppression_key,
};

/// The page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 20;
/// The largest `limit`.
pub const MAX_LIMIT: usize = 100;
/// The longest tag a filter may name (a longer one was never accepted on a send).
const MAX_TAG_CHARS: usize = 64;
/// The longest correlation id (as on the send).
const MAX_CORRELATION_ID_CHARS: usize = 128;
/// The longest cursor accepted.
pub const MAX_CURSOR_CHARS: usize = 2_048;

/// The query parameters `GET /v1/messages` accepts.
pub const PARAMETERS: &[&str] = &[
    "recipient",
    "correlation_id",
    "tag",
    "state",
    "category",
    "provider",
    "after",
    "before",
    "limit",
    "cursor",
];

/// The error codes of a bad query (all answered with 400).
pub mod code {
    /// A parameter the listing does not know.
    pub const UNKNOWN_PARAMETER: &str = "unknown_parameter";
    /// `recipient` is not an email address.
    pub const INVALID_ADDRESS: &str = "invalid_address";
    /// `correlation_id` is not 1–128 printable ASCII characters.
    pub const INVALID_CORRELATION_ID: &str = "invalid_correlation_id";
    /// `tag` is not a tag a send accepts.
    pub const INVALID_TAG: &str = "invalid_tag";
    /// `state` is not a message state.
    pub const INVALID_STATE: &str = "invalid_state";
    /// `category` is neither `transactional` nor `bulk`.
    pub const INVALID_CATEGORY: &str = "invalid_category";
    /// `provider` is not a provider mailgate knows.
    pub const UNKNOWN_PROVIDER: &str = "unknown_provider";
    /// `after` or `before` is not an RFC 3339 date-time.
    pub const INVALID_DATETIME: &str = "invalid_datetime";
    /// `after` is not before `before`.
    pub const INVALID_RANGE: &str = "invalid_range";
    /// `limit` is not a whole number from 1 to 100.
    pub const INVALID_LIMIT: &str = "invalid_limit";
    /// `cursor` is not one this listing returned for the same filters.
    pub const INVALID_CURSOR: &str = "invalid_cursor";
    /// A parameter given twice.
    pub const DUPLICATE_PARAMETER: &str = "duplicate_parameter";
}

/// A bad query: the parameter at fault, a machine-readable code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct QueryError {
    /// The query parameter at fault.
    pub field: String,
    /// One of [`code`].
    pub code: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

impl QueryError {
    fn new(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            code,
            message: message.into(),
        }
    }

    /// The cursor was not made by this listing for these filters.
    pub fn invalid_cursor() -> Self {
        Self::new(
            code::INVALID_CURSOR,
            "cursor",
            "the cursor is not one this listing returned for these filters",
        )
    }
}

/// The hash an index key holds for a recipient: SHA-256 of its canonical address
/// ([`suppression_key`]), hex, first 32 characters (128 bits: collisions are out of reach, and
/// the address itself never appears in a key).
pub fn recipient_hash(address: &EmailAddress) -> String {
    let digest = Sha256::digest(suppression_key(address).as_bytes());
    hex::encode(&digest[..16])
}

/// The filters of a message search, all optional, all combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    /// Any of the message's to/cc/bcc (compared canonically).
    pub recipient: Option<EmailAddress>,
    /// The caller's own id given at send time.
    pub correlation_id: Option<String>,
    /// One of its tags.
    pub tag: Option<String>,
    /// Its current state.
    pub state: Option<MessageState>,
    /// Its category.
    pub category: Option<MessageCategory>,
    /// The provider that took it.
    pub provider: Option<ProviderId>,
    /// Created at or after.
    pub after: Option<UnixMillis>,
    /// Created before.
    pub before: Option<UnixMillis>,
}

/// The index that serves a query (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchIndex {
    /// `by-state`.
    State,
    /// `by-provider`.
    Provider,
    /// `by-search-key`, `rcpt#<hash>` entries.
    Recipient,
    /// `by-correlation-id`.
    CorrelationId,
    /// `by-search-key`, `tag#<tag>` entries.
    Tag,
    /// `by-category`.
    Category,
    /// `by-environment`.
    Environment,
}

impl SearchIndex {
    /// Its stable name (part of every cursor, so a cursor only continues its own listing).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::State => "state",
            Self::Provider => "provider",
            Self::Recipient => "recipient",
            Self::CorrelationId => "correlation_id",
            Self::Tag => "tag",
            Self::Category => "category",
            Self::Environment => "environment",
        }
    }
}

impl MessageFilter {
    /// The one index serving these filters; the others become a filter expression.
    pub fn index(&self) -> SearchIndex {
        if self.state.is_some() {
            SearchIndex::State
        } else if self.provider.is_some() {
            SearchIndex::Provider
        } else if self.recipient.is_some() {
            SearchIndex::Recipient
        } else if self.correlation_id.is_some() {
            SearchIndex::CorrelationId
        } else if self.tag.is_some() {
            SearchIndex::Tag
        } else if self.category.is_some() {
            SearchIndex::Category
        } else {
            SearchIndex::Environment
        }
    }

    /// Whether `record` passes every filter (what the index and its filter expression select;
    /// the in-memory fakes and the adapter's own check use it).
    pub fn matches(&self, record: &MessageRecord) -> bool {
        self.recipient
            .as_ref()
            .is_none_or(|a| record.has_recipient(a))
            && self
                .correlation_id
                .as_ref()
                .is_none_or(|c| record.correlation_id.as_ref() == Some(c))
            && self.tag.as_ref().is_none_or(|t| record.tags.contains(t))
            && self.state.is_none_or(|s| record.state == s)
            && self.category.is_none_or(|c| record.category == c)
            && self.provider.is_none_or(|p| record.provider == Some(p))
            && self.after.is_none_or(|a| record.created_at >= a)
            && self.before.is_none_or(|b| record.created_at < b)
    }
}

/// One search: the caller's environment, the filters, the page size and where to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageQuery {
    /// Only messages of this environment are ever read.
    pub environment: KeyEnvironment,
    /// The filters.
    pub filter: MessageFilter,
    /// At most this many messages (1–[`MAX_LIMIT`]).
    pub limit: usize,
    /// The opaque cursor of a previous page.
    pub cursor: Option<String>,
}

impl MessageQuery {
    /// A first page of `limit` newest messages of `environment` matching `filter`.
    pub fn new(environment: KeyEnvironment, filter: MessageFilter, limit: usize) -> Self {
        Self {
            environment,
            filter,
            limit: limit.clamp(1, MAX_LIMIT),
            cursor: None,
        }
    }

    /// Parses the query parameters of `GET /v1/messages` (empty values count as absent); the
    /// first bad one is the error.
    pub fn parse(
        environment: KeyEnvironment,
        params: &[(String, String)],
    ) -> Result<Self, QueryError> {
        let mut seen: Vec<&str> = Vec::new();
        for (name, _) in params {
            if !PARAMETERS.contains(&name.as_str()) {
                return Err(QueryError::new(
                    code::UNKNOWN_PARAMETER,
                    name,
                    format!(
                        "unknown parameter; the listing takes {}",
                        PARAMETERS.join(", ")
                    ),
                ));
            }
            if seen.contains(&name.as_str()) {
                return Err(QueryError::new(
                    code::DUPLICATE_PARAMETER,
                    name,
                    "give each parameter at most once",
                ));
            }
            seen.push(name);
        }
        let get = |name: &str| {
            params
                .iter()
                .find(|(n, v)| n == name && !v.is_empty())
                .map(|(_, v)| v.as_str())
        };
        let mut filter = MessageFilter::default();
        if let Some(v) = get("recipient") {
            filter.recipient = Some(EmailAddress::parse(v).map_err(|_| {
                QueryError::new(
                    code::INVALID_ADDRESS,
                    "recipient",
                    "recipient is one email address",
                )
            })?);
        }
        if let Some(v) = get("correlation_id") {
            if v.len() > MAX_CORRELATION_ID_CHARS || !v.bytes().all(|b| (0x20..=0x7e).contains(&b))
            {
                return Err(QueryError::new(
                    code::INVALID_CORRELATION_ID,
                    "correlation_id",
                    "correlation_id is 1 to 128 printable ASCII characters",
                ));
            }
            filter.correlation_id = Some(v.to_owned());
        }
        if let Some(v) = get("tag") {
            if v.chars().count() > MAX_TAG_CHARS || !v.chars().all(is_tag_char) {
                return Err(QueryError::new(
                    code::INVALID_TAG,
                    "tag",
                    "a tag is 1 to 64 of the characters A-Z, a-z, 0-9, `_` and `-`",
                ));
            }
            filter.tag = Some(v.to_owned());
        }
        if let Some(v) = get("state") {
            filter.state = Some(v.parse().map_err(|_| {
                QueryError::new(
                    code::INVALID_STATE,
                    "state",
                    format!(
                        "state is one of {}",
                        MessageState::ALL
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?);
        }
        if let Some(v) = get("category") {
            filter.category = Some(match v {
                "transactional" => MessageCategory::Transactional,
                "bulk" => MessageCategory::Bulk,
                _ => {
                    return Err(QueryError::new(
                        code::INVALID_CATEGORY,
                        "category",
                        "category is `transactional` or `bulk`",
                    ));
                }
            });
        }
        if let Some(v) = get("provider") {
            filter.provider = Some(v.parse().map_err(|_| {
                QueryError::new(
                    code::UNKNOWN_PROVIDER,
                    "provider",
                    "provider is one of ses, sendgrid, mailgun, postmark, smtp2go",
                )
            })?);
        }
        filter.after = get("after").map(|v| instant("after", v)).transpose()?;
        filter.before = get("before").map(|v| instant("before", v)).transpose()?;
        if let (Some(after), Some(before)) = (filter.after, filter.before)
            && after >= before
        {
            return Err(QueryError::new(
                code::INVALID_RANGE,
                "after",
                "after must be earlier than before",
            ));
        }
        let limit = match get("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<usize>() {
                Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
                _ => {
                    return Err(QueryError::new(
                        code::INVALID_LIMIT,
                        "limit",
                        format!("limit is a whole number from 1 to {MAX_LIMIT}"),
                    ));
                }
            },
        };
        let cursor = match get("cursor") {
            Some(v) if v.len() > MAX_CURSOR_CHARS => return Err(QueryError::invalid_cursor()),
            other => other.map(str::to_owned),
        };
        Ok(Self {
            environment,
            filter,
            limit,
            cursor,
        })
    }
}

fn instant(field: &str, value: &str) -> Result<UnixMillis, QueryError> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map(UnixMillis::from_datetime)
        .map_err(|_| {
            QueryError::new(
                code::INVALID_DATETIME,
                field,
                format!("{field} is an RFC 3339 date-time, e.g. 2026-12-04T10:00:00Z"),
            )
        })
}

/// The latest event of a message's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastEvent {
    /// Its type.
    pub kind: EventKind,
    /// When it happened (the provider's time, else when mailgate received it).
    pub at: UnixMillis,
}

/// A message as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageListing {
    /// Its summary (recipients with their status, tags, correlation id, provider, state).
    pub record: MessageRecord,
    /// The latest event of its history, if any.
    pub last_event: Option<LastEvent>,
}

/// One page of a message search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessagePage {
    /// The messages, newest first.
    pub messages: Vec<MessageListing>,
    /// The cursor of the next page, when there may be one.
    pub next_cursor: Option<String>,
    /// The page stopped before `limit` because its read budget ran out (not because the
    /// listing ended): `next_cursor` continues it.
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<MessageQuery, QueryError> {
        MessageQuery::parse(KeyEnvironment::Live, &params(pairs))
    }

    fn field_of(pairs: &[(&str, &str)]) -> (&'static str, String) {
        let e = parse(pairs).unwrap_err();
        (e.code, e.field)
    }

    #[test]
    fn no_parameters_list_the_newest_twenty_of_the_environment() {
        let q = parse(&[]).unwrap();
        assert_eq!(q.limit, DEFAULT_LIMIT);
        assert_eq!(q.filter, MessageFilter::default());
        assert_eq!(q.filter.index(), SearchIndex::Environment);
        assert_eq!(q.environment, KeyEnvironment::Live);
    }

    #[test]
    fn every_filter_parses() {
        let q = parse(&[
            ("recipient", "Jane@Example.COM"),
            ("correlation_id", "order 42"),
            ("tag", "welcome"),
            ("state", "bounced"),
            ("category", "bulk"),
            ("provider", "sendgrid"),
            ("after", "2026-12-01T00:00:00Z"),
            ("before", "2026-12-02T00:00:00.5Z"),
            ("limit", "100"),
            ("cursor", "abc"),
        ])
        .unwrap();
        assert_eq!(
            recipient_hash(&q.filter.recipient.unwrap()),
            recipient_hash(&EmailAddress::parse("jane@example.com").unwrap())
        );
        assert_eq!(q.filter.correlation_id.as_deref(), Some("order 42"));
        assert_eq!(q.filter.tag.as_deref(), Some("welcome"));
        assert_eq!(q.filter.state, Some(MessageState::Bounced));
        assert_eq!(q.filter.category, Some(MessageCategory::Bulk));
        assert_eq!(q.filter.provider, Some(ProviderId::Sendgrid));
        assert_eq!(q.filter.after, Some(UnixMillis(1_796_083_200_000)));
        assert_eq!(q.filter.before, Some(UnixMillis(1_796_169_600_500)));
        assert_eq!((q.limit, q.cursor.as_deref()), (100, Some("abc")));
    }

    #[test]
    fn a_bad_filter_names_its_field() {
        assert_eq!(
            field_of(&[("recipient", "not-an-address")]),
            (code::INVALID_ADDRESS, "recipient".into())
        );
        assert_eq!(
            field_of(&[("correlation_id", "caf\u{e9}")]),
            (code::INVALID_CORRELATION_ID, "correlation_id".into())
        );
        assert_eq!(
            field_of(&[("correlation_id", &"x".repeat(129))]),
            (code::INVALID_CORRELATION_ID, "correlation_id".into())
        );
        assert_eq!(
            field_of(&[("tag", "a b")]),
            (code::INVALID_TAG, "tag".into())
        );
        assert_eq!(
            field_of(&[("state", "lost")]),
            (code::INVALID_STATE, "state".into())
        );
        assert_eq!(
            field_of(&[("category", "marketing")]),
            (code::INVALID_CATEGORY, "category".into())
        );
        assert_eq!(
            field_of(&[("provider", "sparkpost")]),
            (code::UNKNOWN_PROVIDER, "provider".into())
        );
        assert_eq!(
            field_of(&[("after", "yesterday")]),
            (code::INVALID_DATETIME, "after".into())
        );
        assert_eq!(
            field_of(&[("before", "2026-12-01")]),
            (code::INVALID_DATETIME, "before".into())
        );
        assert_eq!(
            field_of(&[
                ("after", "2026-12-02T00:00:00Z"),
                ("before", "2026-12-01T00:00:00Z")
            ]),
            (code::INVALID_RANGE, "after".into())
        );
        for limit in ["0", "101", "-1", "ten"] {
            assert_eq!(
                field_of(&[("limit", limit)]),
                (code::INVALID_LIMIT, "limit".into())
            );
        }
        assert_eq!(
            field_of(&[("to", "jane@example.com")]),
            (code::UNKNOWN_PARAMETER, "to".into())
        );
        assert_eq!(
            field_of(&[("tag", "a"), ("tag", "b")]),
            (code::DUPLICATE_PARAMETER, "tag".into())
        );
        assert_eq!(
            field_of(&[("cursor", &"c".repeat(MAX_CURSOR_CHARS + 1))]),
            (code::INVALID_CURSOR, "cursor".into())
        );
    }

    #[test]
    fn mutable_attributes_pick_the_index_before_the_selective_ones() {
        let recipient = Some(EmailAddress::parse("jane@example.com").unwrap());
        let with = |f: MessageFilter| f.index();
        assert_eq!(
            with(MessageFilter {
                recipient: recipient.clone(),
                state: Some(MessageState::Bounced),
                ..Default::default()
            }),
            SearchIndex::State
        );
        assert_eq!(
            with(MessageFilter {
                recipient: recipient.clone(),
                provider: Some(ProviderId::Ses),
                ..Default::default()
            }),
            SearchIndex::Provider
        );
        assert_eq!(
            with(MessageFilter {
                recipient,
                correlation_id: Some("c".into()),
                tag: Some("t".into()),
                ..Default::default()
            }),
            SearchIndex::Recipient
        );
        assert_eq!(
            with(MessageFilter {
                correlation_id: Some("c".into()),
                tag: Some("t".into()),
                ..Default::default()
            }),
            SearchIndex::CorrelationId
        );
        assert_eq!(
            with(MessageFilter {
                tag: Some("t".into()),
                category: Some(MessageCategory::Bulk),
                ..Default::default()
            }),
            SearchIndex::Tag
        );
        assert_eq!(
            with(MessageFilter {
                category: Some(MessageCategory::Bulk),
                ..Default::default()
            }),
            SearchIndex::Category
        );
    }

    #[test]
    fn the_recipient_hash_is_canonical_and_hides_the_address() {
        let a = recipient_hash(&EmailAddress::parse("Jane@EXAMPLE.com").unwrap());
        let b = recipient_hash(&EmailAddress::parse("jane@example.com").unwrap());
        let other = recipient_hash(&EmailAddress::parse("john@example.com").unwrap());
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.len(), 32);
        assert!(!a.contains("jane"));
    }
}
