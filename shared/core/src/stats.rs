//! Delivery statistics: what is counted, in which hour bucket and under which dimension, and
//! how hour buckets add up to the `GET /v1/stats` answer.
//!
//! Counters are kept per environment and per hour (UTC) as atomic `ADD`s written in the same
//! transaction as the state change or history entry they count (see `mailgate-aws`'s `stats`
//! module), so a duplicate event never counts twice. This module is the pure half: the
//! counter names, which counters a send outcome or an event adds, the query's validation and
//! the arithmetic (day = sum of its 24 hour buckets; rates over recipients sent).
//!
//! | counter | added by | unit |
//! |---|---|---|
//! | `accepted` | the message's create transaction | message |
//! | `sent`, `sent_recipients` | the send outcome `sent` (once per message) | message, recipient |
//! | `failed`, `unknown` | the send outcome `failed` / `unknown` (once per message) | message |
//! | `delivered`, `deferred`, `complained`, `unsubscribed`, `opened`, `clicked` | an applied event | event (per recipient) |
//! | `bounced` and one of `bounced_hard` / `bounced_soft` / `bounced_sender_side` | an applied bounce | event (per recipient) |

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::bounce::{BounceClassification, BounceKind};
use crate::{EventKind, UnixMillis};

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
/// One day in milliseconds.
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// The longest range one `GET /v1/stats` may ask for: 31 days (744 hour buckets).
pub const MAX_RANGE_MS: i64 = 31 * DAY_MS;

/// Counters of delivery outcomes, summed over any set of hour buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    /// Messages accepted (`POST /v1/messages`, each batch item).
    pub accepted: u64,
    /// Messages a provider accepted.
    pub sent: u64,
    /// Recipients of those messages (not counting suppressed ones): the rates' denominator.
    pub sent_recipients: u64,
    /// Delivered events.
    pub delivered: u64,
    /// Deferred (delayed) events.
    pub deferred: u64,
    /// Bounces of every class.
    pub bounced: u64,
    /// Hard bounces (address-level, permanent).
    pub bounced_hard: u64,
    /// Soft bounces (temporary).
    pub bounced_soft: u64,
    /// Sender-side bounces (reputation, authentication, policy).
    pub bounced_sender_side: u64,
    /// Spam complaints.
    pub complained: u64,
    /// Unsubscribes.
    pub unsubscribed: u64,
    /// Messages every provider refused.
    pub failed: u64,
    /// Messages whose send is ambiguous (a provider may have taken them).
    pub unknown: u64,
    /// Opens.
    pub opened: u64,
    /// Clicks.
    pub clicked: u64,
}

/// One counter: its stored attribute name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// `accepted`.
    Accepted,
    /// `sent`.
    Sent,
    /// `sent_recipients`.
    SentRecipients,
    /// `delivered`.
    Delivered,
    /// `deferred`.
    Deferred,
    /// `bounced`.
    Bounced,
    /// `bounced_hard`.
    BouncedHard,
    /// `bounced_soft`.
    BouncedSoft,
    /// `bounced_sender_side`.
    BouncedSenderSide,
    /// `complained`.
    Complained,
    /// `unsubscribed`.
    Unsubscribed,
    /// `failed`.
    Failed,
    /// `unknown`.
    Unknown,
    /// `opened`.
    Opened,
    /// `clicked`.
    Clicked,
}

impl Counter {
    /// Every counter.
    pub const ALL: [Counter; 15] = [
        Counter::Accepted,
        Counter::Sent,
        Counter::SentRecipients,
        Counter::Delivered,
        Counter::Deferred,
        Counter::Bounced,
        Counter::BouncedHard,
        Counter::BouncedSoft,
        Counter::BouncedSenderSide,
        Counter::Complained,
        Counter::Unsubscribed,
        Counter::Failed,
        Counter::Unknown,
        Counter::Opened,
        Counter::Clicked,
    ];

    /// The stored attribute (and JSON field) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::Accepted => "accepted",
            Counter::Sent => "sent",
            Counter::SentRecipients => "sent_recipients",
            Counter::Delivered => "delivered",
            Counter::Deferred => "deferred",
            Counter::Bounced => "bounced",
            Counter::BouncedHard => "bounced_hard",
            Counter::BouncedSoft => "bounced_soft",
            Counter::BouncedSenderSide => "bounced_sender_side",
            Counter::Complained => "complained",
            Counter::Unsubscribed => "unsubscribed",
            Counter::Failed => "failed",
            Counter::Unknown => "unknown",
            Counter::Opened => "opened",
            Counter::Clicked => "clicked",
        }
    }
}

impl DeliveryCounts {
    /// The counter's value.
    pub fn get(&self, counter: Counter) -> u64 {
        match counter {
            Counter::Accepted => self.accepted,
            Counter::Sent => self.sent,
            Counter::SentRecipients => self.sent_recipients,
            Counter::Delivered => self.delivered,
            Counter::Deferred => self.deferred,
            Counter::Bounced => self.bounced,
            Counter::BouncedHard => self.bounced_hard,
            Counter::BouncedSoft => self.bounced_soft,
            Counter::BouncedSenderSide => self.bounced_sender_side,
            Counter::Complained => self.complained,
            Counter::Unsubscribed => self.unsubscribed,
            Counter::Failed => self.failed,
            Counter::Unknown => self.unknown,
            Counter::Opened => self.opened,
            Counter::Clicked => self.clicked,
        }
    }

    /// Adds `by` to the counter.
    pub fn add(&mut self, counter: Counter, by: u64) {
        let slot = match counter {
            Counter::Accepted => &mut self.accepted,
            Counter::Sent => &mut self.sent,
            Counter::SentRecipients => &mut self.sent_recipients,
            Counter::Delivered => &mut self.delivered,
            Counter::Deferred => &mut self.deferred,
            Counter::Bounced => &mut self.bounced,
            Counter::BouncedHard => &mut self.bounced_hard,
            Counter::BouncedSoft => &mut self.bounced_soft,
            Counter::BouncedSenderSide => &mut self.bounced_sender_side,
            Counter::Complained => &mut self.complained,
            Counter::Unsubscribed => &mut self.unsubscribed,
            Counter::Failed => &mut self.failed,
            Counter::Unknown => &mut self.unknown,
            Counter::Opened => &mut self.opened,
            Counter::Clicked => &mut self.clicked,
        };
        *slot = slot.saturating_add(by);
    }

    /// Adds every counter of `other`.
    pub fn merge(&mut self, other: &DeliveryCounts) {
        for counter in Counter::ALL {
            self.add(counter, other.get(counter));
        }
    }

    /// Hard bounces per recipient sent; `None` before anything was sent. Hard bounces only:
    /// soft and sender-side bounces say nothing about the list's quality (SES's bounce rate
    /// counts hard bounces too).
    pub fn bounce_rate(&self) -> Option<f64> {
        rate(self.bounced_hard, self.sent_recipients)
    }

    /// Complaints per recipient sent; `None` before anything was sent.
    pub fn complaint_rate(&self) -> Option<f64> {
        rate(self.complained, self.sent_recipients)
    }
}

fn rate(part: u64, whole: u64) -> Option<f64> {
    // Counts stay far below 2^52, where u64 → f64 is exact.
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The counters an applied event adds, with its bounce verdict when it is a bounce.
pub fn event_counters(kind: EventKind, bounce: Option<&BounceClassification>) -> Vec<Counter> {
    match kind {
        EventKind::Delivered => vec![Counter::Delivered],
        EventKind::Deferred => vec![Counter::Deferred],
        EventKind::Bounced => {
            let class = match bounce {
                Some(v) if v.cause.is_sender_side() => Counter::BouncedSenderSide,
                Some(v) if v.kind == BounceKind::Hard => Counter::BouncedHard,
                _ => Counter::BouncedSoft,
            };
            vec![Counter::Bounced, class]
        }
        EventKind::Complained => vec![Counter::Complained],
        EventKind::Unsubscribed => vec![Counter::Unsubscribed],
        EventKind::Opened => vec![Counter::Opened],
        EventKind::Clicked => vec![Counter::Clicked],
        // The send path counts `sent` (once per message, not per provider echo); the rest are
        // not delivery outcomes of a recipient.
        _ => Vec::new(),
    }
}

/// The dimension a counter item is kept under: the environment's totals, or one value of a
/// grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatsDimension {
    /// The totals.
    All,
    /// By provider (sends and events; `accepted` is counted before a provider is chosen).
    Provider,
    /// By message category.
    Category,
    /// By tag (a message with several tags counts under each).
    Tag,
    /// By provider and sending domain (`<provider>#<domain>`): the reputation guardrails'.
    Route,
}

impl StatsDimension {
    /// The name in the counter item's key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Provider => "provider",
            Self::Category => "category",
            Self::Tag => "tag",
            Self::Route => "route",
        }
    }
}

/// The bucket size of a stats answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// One bucket per UTC hour.
    Hour,
    /// One bucket per UTC day (the sum of its hour buckets).
    Day,
}

impl Granularity {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    /// A bucket's length.
    pub fn millis(self) -> i64 {
        match self {
            Self::Hour => HOUR_MS,
            Self::Day => DAY_MS,
        }
    }
}

/// What a stats answer is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    /// Provider.
    Provider,
    /// Category.
    Category,
    /// Tag.
    Tag,
}

impl GroupBy {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Category => "category",
            Self::Tag => "tag",
        }
    }

    /// The counter dimension it reads.
    pub fn dimension(self) -> StatsDimension {
        match self {
            Self::Provider => StatsDimension::Provider,
            Self::Category => StatsDimension::Category,
            Self::Tag => StatsDimension::Tag,
        }
    }
}

/// A validated stats query: whole buckets from `after` (inclusive) to `before` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsQuery {
    /// The first bucket's start.
    pub after: UnixMillis,
    /// The end of the last bucket.
    pub before: UnixMillis,
    /// The bucket size.
    pub granularity: Granularity,
    /// The grouping, if any.
    pub group_by: Option<GroupBy>,
}

/// A stats query parameter that is not acceptable: 400 with the field named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct StatsQueryError {
    /// The query parameter at fault.
    pub field: &'static str,
    /// The machine-readable code.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

/// The error codes of a stats query (HTTP 400, `field` names the parameter).
pub mod code {
    /// `after` or `before` is not an RFC 3339 time.
    pub const INVALID_DATETIME: &str = "invalid_datetime";
    /// `granularity` is neither `hour` nor `day`.
    pub const INVALID_GRANULARITY: &str = "invalid_granularity";
    /// `group_by` is not `provider`, `category` or `tag`.
    pub const INVALID_GROUP_BY: &str = "invalid_group_by";
    /// `after` is not earlier than `before`.
    pub const INVALID_RANGE: &str = "invalid_range";
    /// The range is longer than 31 days.
    pub const RANGE_TOO_LONG: &str = "range_too_long";
    /// A query parameter the route does not know.
    pub const UNKNOWN_PARAMETER: &str = "unknown_parameter";
}

/// The parameters `GET /v1/stats` accepts.
pub const STATS_PARAMETERS: &[&str] = &["after", "before", "granularity", "group_by"];

fn invalid(field: &'static str, code: &'static str, message: impl Into<String>) -> StatsQueryError {
    StatsQueryError {
        field,
        code,
        message: message.into(),
    }
}

fn parse_time(field: &'static str, text: &str) -> Result<UnixMillis, StatsQueryError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(UnixMillis::from_datetime)
        .map_err(|_| {
            invalid(
                field,
                code::INVALID_DATETIME,
                format!("{field} must be an RFC 3339 time such as 2026-12-04T10:00:00Z"),
            )
        })
}

impl StatsQuery {
    /// Validates the query parameters `(name, value)` at `now`. `granularity` defaults to
    /// `hour`; `before` to now and `after` to one day (hour) or seven days (day) before it.
    /// Both are widened to whole buckets (UTC). The range is at most [`MAX_RANGE_MS`].
    pub fn parse<'a>(
        params: impl IntoIterator<Item = (&'a str, &'a str)>,
        now: UnixMillis,
    ) -> Result<Self, StatsQueryError> {
        let (mut after, mut before, mut granularity, mut group_by) = (None, None, None, None);
        for (name, value) in params {
            let slot = match name {
                "after" => &mut after,
                "before" => &mut before,
                "granularity" => &mut granularity,
                "group_by" => &mut group_by,
                _ => {
                    return Err(StatsQueryError {
                        field: STATS_PARAMETERS
                            .iter()
                            .copied()
                            .find(|p| *p == name)
                            .unwrap_or("query"),
                        code: code::UNKNOWN_PARAMETER,
                        message: format!(
                            "unknown query parameter {name:?}; accepted: {}",
                            STATS_PARAMETERS.join(", ")
                        ),
                    });
                }
            };
            *slot = Some(value);
        }
        let granularity = match granularity {
            None | Some("hour") => Granularity::Hour,
            Some("day") => Granularity::Day,
            Some(_) => {
                return Err(invalid(
                    "granularity",
                    code::INVALID_GRANULARITY,
                    "granularity is hour or day",
                ));
            }
        };
        let group_by = match group_by {
            None => None,
            Some("provider") => Some(GroupBy::Provider),
            Some("category") => Some(GroupBy::Category),
            Some("tag") => Some(GroupBy::Tag),
            Some(_) => {
                return Err(invalid(
                    "group_by",
                    code::INVALID_GROUP_BY,
                    "group_by is provider, category or tag",
                ));
            }
        };
        let size = granularity.millis();
        let before = match before {
            Some(text) => parse_time("before", text)?,
            None => now,
        };
        let before = UnixMillis(ceil_to(before.as_i64(), size));
        let after = match after {
            Some(text) => UnixMillis(floor_to(parse_time("after", text)?.as_i64(), size)),
            None => UnixMillis(
                before.as_i64()
                    - match granularity {
                        Granularity::Hour => DAY_MS,
                        Granularity::Day => 7 * DAY_MS,
                    },
            ),
        };
        if after >= before {
            return Err(invalid(
                "after",
                code::INVALID_RANGE,
                "after must be earlier than before",
            ));
        }
        if before.as_i64() - after.as_i64() > MAX_RANGE_MS {
            return Err(invalid(
                "after",
                code::RANGE_TOO_LONG,
                format!(
                    "the range from after to before is at most {} days",
                    MAX_RANGE_MS / DAY_MS
                ),
            ));
        }
        Ok(Self {
            after,
            before,
            granularity,
            group_by,
        })
    }

    /// The hour numbers (hours since the epoch) the query covers: `first..end`.
    pub fn hours(&self) -> std::ops::Range<i64> {
        hour_of(self.after)..hour_of(self.before)
    }

    /// The starts of its buckets, in order.
    pub fn bucket_starts(&self) -> Vec<UnixMillis> {
        let size = self.granularity.millis();
        (self.after.as_i64()..self.before.as_i64())
            .step_by(usize::try_from(size).unwrap_or(usize::MAX))
            .map(UnixMillis)
            .collect()
    }
}

fn floor_to(ms: i64, size: i64) -> i64 {
    ms.div_euclid(size) * size
}

fn ceil_to(ms: i64, size: i64) -> i64 {
    let floor = floor_to(ms, size);
    if floor == ms { ms } else { floor + size }
}

/// The hour (hours since the epoch, UTC) an instant falls in: the counter bucket it counts in.
pub fn hour_of(at: UnixMillis) -> i64 {
    at.as_i64().div_euclid(HOUR_MS)
}

/// One stored hour bucket of one dimension value (a shard's part of it; shards add up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCounts {
    /// Hours since the epoch.
    pub hour: i64,
    /// The dimension's value (`-` for the totals).
    pub value: String,
    /// The counters.
    pub counts: DeliveryCounts,
}

/// One bucket of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsBucket {
    /// Its start.
    pub start: UnixMillis,
    /// Its counters.
    pub counts: DeliveryCounts,
}

/// One series of an answer: the totals, or one group's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSeries {
    /// The group's value; `None` for the totals.
    pub group: Option<String>,
    /// The sum of its buckets.
    pub totals: DeliveryCounts,
    /// Every bucket of the range, in order (empty ones too).
    pub buckets: Vec<StatsBucket>,
}

/// Sums hour rows into the query's buckets: one series per distinct value (sorted), each with
/// every bucket of the range; ungrouped, exactly one series (zeros when nothing was counted).
/// Rows outside the range are ignored.
pub fn aggregate(query: &StatsQuery, rows: &[HourCounts]) -> Vec<StatsSeries> {
    let starts = query.bucket_starts();
    let hours = query.hours();
    let mut series: std::collections::BTreeMap<&str, Vec<DeliveryCounts>> = Default::default();
    if query.group_by.is_none() {
        series.insert("-", vec![DeliveryCounts::default(); starts.len()]);
    }
    for row in rows.iter().filter(|r| hours.contains(&r.hour)) {
        let value = if query.group_by.is_none() {
            "-"
        } else {
            row.value.as_str()
        };
        let buckets = series
            .entry(value)
            .or_insert_with(|| vec![DeliveryCounts::default(); starts.len()]);
        let index = (row.hour * HOUR_MS - query.after.as_i64()) / query.granularity.millis();
        if let Some(bucket) = usize::try_from(index).ok().and_then(|i| buckets.get_mut(i)) {
            bucket.merge(&row.counts);
        }
    }
    series
        .into_iter()
        .map(|(value, counts)| {
            let mut totals = DeliveryCounts::default();
            counts.iter().for_each(|c| totals.merge(c));
            StatsSeries {
                group: (query.group_by.is_some()).then(|| value.to_owned()),
                totals,
                buckets: starts
                    .iter()
                    .zip(counts)
                    .map(|(start, counts)| StatsBucket {
                        start: *start,
                        counts,
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const NOW: UnixMillis = UnixMillis(1_796_000_000_000); // 2026-11-29T23:33:20Z

    fn q(params: &[(&'static str, &'static str)]) -> Result<StatsQuery, StatsQueryError> {
        StatsQuery::parse(params.iter().copied(), NOW)
    }

    #[test]
    fn defaults_cover_the_last_day_by_hour_in_whole_buckets() {
        let query = q(&[]).unwrap();
        assert_eq!(query.granularity, Granularity::Hour);
        assert_eq!(query.before.as_i64() % HOUR_MS, 0);
        assert!(query.before >= NOW && query.before.as_i64() - NOW.as_i64() < HOUR_MS);
        assert_eq!(query.bucket_starts().len(), 24);
        let by_day = q(&[("granularity", "day")]).unwrap();
        assert_eq!(by_day.bucket_starts().len(), 7);
        assert_eq!(by_day.after.as_i64() % DAY_MS, 0);
    }

    #[test]
    fn bad_parameters_name_their_field() {
        let field = |p: &[(&'static str, &'static str)]| q(p).unwrap_err().field;
        assert_eq!(field(&[("granularity", "week")]), "granularity");
        assert_eq!(field(&[("group_by", "domain")]), "group_by");
        assert_eq!(field(&[("after", "yesterday")]), "after");
        assert_eq!(field(&[("before", "2026-13-01")]), "before");
        assert_eq!(field(&[("limit", "3")]), "query");
        let err = q(&[
            ("after", "2026-11-01T00:00:00Z"),
            ("before", "2026-10-01T00:00:00Z"),
        ])
        .unwrap_err();
        assert_eq!((err.field, err.code), ("after", "invalid_range"));
        let err = q(&[
            ("after", "2026-09-01T00:00:00Z"),
            ("before", "2026-11-01T00:00:00Z"),
        ])
        .unwrap_err();
        assert_eq!((err.field, err.code), ("after", "range_too_long"));
        // Exactly 31 days is allowed.
        assert!(
            q(&[
                ("after", "2026-10-01T00:00:00Z"),
                ("before", "2026-11-01T00:00:00Z"),
            ])
            .is_ok()
        );
    }

    #[test]
    fn a_day_is_the_sum_of_its_hours_and_groups_are_kept_apart() {
        let query = q(&[
            ("after", "2026-11-28T00:00:00Z"),
            ("before", "2026-11-30T00:00:00Z"),
            ("granularity", "day"),
            ("group_by", "provider"),
        ])
        .unwrap();
        let first = hour_of(query.after);
        let row = |hour: i64, value: &str, sent: u64| {
            let mut counts = DeliveryCounts::default();
            counts.add(Counter::Sent, sent);
            counts.add(Counter::SentRecipients, sent);
            HourCounts {
                hour,
                value: value.into(),
                counts,
            }
        };
        let rows = vec![
            row(first, "ses", 1),
            row(first + 23, "ses", 2),
            row(first + 24, "ses", 4),
            row(first + 3, "sendgrid", 8),
            row(first + 48, "ses", 100), // after the range
        ];
        let series = aggregate(&query, &rows);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].group.as_deref(), Some("sendgrid"));
        assert_eq!(series[1].group.as_deref(), Some("ses"));
        let ses: Vec<u64> = series[1].buckets.iter().map(|b| b.counts.sent).collect();
        assert_eq!(ses, vec![3, 4]);
        assert_eq!(series[1].totals.sent, 7);
        assert_eq!(series[0].buckets[1].counts.sent, 0);
    }

    #[test]
    fn rates_are_per_recipient_sent() {
        let mut counts = DeliveryCounts::default();
        assert_eq!(counts.bounce_rate(), None);
        counts.add(Counter::SentRecipients, 1000);
        counts.add(Counter::BouncedHard, 40);
        counts.add(Counter::BouncedSoft, 100);
        counts.add(Counter::Complained, 1);
        assert_eq!(counts.bounce_rate(), Some(0.04));
        assert_eq!(counts.complaint_rate(), Some(0.001));
    }

    #[test]
    fn a_bounce_counts_once_in_its_class() {
        assert_eq!(
            event_counters(EventKind::Bounced, None),
            vec![Counter::Bounced, Counter::BouncedSoft]
        );
        assert_eq!(
            event_counters(EventKind::Complained, None),
            vec![Counter::Complained]
        );
        assert!(event_counters(EventKind::Sent, None).is_empty());
    }
}
