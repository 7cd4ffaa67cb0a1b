//! Finding messages without their id: `GET /v1/messages` (a page of messages matching the
//! filters, each with its latest event) and `GET /v1/recipients/{address}` (the one call that
//! answers "did this person get this email?": the address's suppression entries, its outcomes
//! over the last 30 days and its last 20 messages). The same service answers
//! `mailgate-admin messages find`.
//!
//! | outcome | answer |
//! |---|---|
//! | a page (maybe `truncated` by the read budget, `next_cursor` continuing it) | [`MessagePage`] |
//! | a cursor not made by this listing for these filters | [`SearchError::InvalidCursor`] |
//! | the store failed | [`SearchError::Store`] |
//!
//! Outcome counts are computed from the recipient's index entries: up to
//! [`COUNT_PAGES`] pages of [`MAX_LIMIT`] messages created in the last [`COUNT_WINDOW_DAYS`]
//! days, each message counted once by this address's own status in it; past that budget the
//! view says `counts_complete: false`.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::try_join_all;
use mailgate_core::ports::{FoundMessages, MessageSearch, SearchError};
use mailgate_core::search::{MAX_LIMIT, MessageFilter, MessageListing, MessagePage, MessageQuery};
use mailgate_core::{
    EmailAddress, KeyEnvironment, MessageRecord, RecipientStatus, Suppression, UnixMillis,
    normalise_address, suppression_key,
};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

/// An instant as the API shows it (RFC 3339).
pub fn time_json(at: UnixMillis) -> Value {
    at.to_datetime()
        .format(&Rfc3339)
        .map_or(Value::Null, Value::String)
}

/// A message as a listing shows it, in the API (`GET /v1/messages`) and in
/// `mailgate-admin messages find --json` alike.
pub fn listing_json(listing: &MessageListing) -> Value {
    let record = &listing.record;
    json!({
        "id": record.id.as_str(),
        "state": record.state.as_str(),
        "category": record.category.as_str(),
        "created_at": time_json(record.created_at),
        "from": record.from.address.as_str(),
        "recipients": record.recipients.iter().map(|r| json!({
            "address": r.address.as_str(),
            "type": r.kind.as_str(),
            "status": record.recipient_status(r).as_str(),
        })).collect::<Vec<_>>(),
        "tags": record.tags,
        "correlation_id": record.correlation_id,
        "provider": record.provider.map(|p| p.as_str()),
        "last_event": listing.last_event.map(|e| json!({
            "type": e.kind.as_str(),
            "at": time_json(e.at),
        })),
    })
}

/// A page as `GET /v1/messages` answers it.
pub fn page_json(page: &MessagePage) -> Value {
    json!({
        "data": page.messages.iter().map(listing_json).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
        "truncated": page.truncated,
    })
}

/// The window of a recipient's outcome counts, in days.
pub const COUNT_WINDOW_DAYS: i64 = 30;
/// Pages of [`MAX_LIMIT`] messages read to count a recipient's outcomes.
pub const COUNT_PAGES: usize = 5;
/// Messages a recipient view lists.
pub const RECIPIENT_MESSAGES: usize = 20;

/// What `GET /v1/recipients/{address}` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientView {
    /// The address, normalised.
    pub address: EmailAddress,
    /// Its suppression entries active now (unscoped and per topic).
    pub suppressions: Vec<Suppression>,
    /// Its messages of the last [`COUNT_WINDOW_DAYS`] days by its own status in each (every
    /// status present, zero included).
    pub counts: BTreeMap<&'static str, u64>,
    /// Whether every message of the window was counted (else the read budget ran out).
    pub counts_complete: bool,
    /// Its last messages, newest first, each with its latest event.
    pub messages: Vec<MessageListing>,
}

impl RecipientView {
    /// The address's own status in `record` (`pending` if it is not a recipient of it).
    pub fn status_in(&self, record: &MessageRecord) -> RecipientStatus {
        status_of(&self.address, record)
    }
}

fn status_of(address: &EmailAddress, record: &MessageRecord) -> RecipientStatus {
    let key = suppression_key(address);
    record
        .recipients
        .iter()
        .find(|r| r.key() == key)
        .map_or(RecipientStatus::Pending, |r| record.recipient_status(r))
}

/// Message search for the API and the admin tool.
#[derive(Clone)]
pub struct MessageFinder {
    search: Arc<dyn MessageSearch>,
}

impl std::fmt::Debug for MessageFinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageFinder").finish_non_exhaustive()
    }
}

impl MessageFinder {
    /// Searches through `search`.
    pub fn new(search: Arc<dyn MessageSearch>) -> Self {
        Self { search }
    }

    /// One page of messages matching `query`, each with its latest event (read concurrently).
    pub async fn find(&self, query: &MessageQuery) -> Result<MessagePage, SearchError> {
        let FoundMessages {
            records,
            next_cursor,
            truncated,
        } = self.search.find(query).await?;
        let messages = self.with_last_events(records).await?;
        Ok(MessagePage {
            messages,
            next_cursor,
            truncated,
        })
    }

    async fn with_last_events(
        &self,
        records: Vec<MessageRecord>,
    ) -> Result<Vec<MessageListing>, SearchError> {
        let events = try_join_all(records.iter().map(|r| self.search.last_event(&r.id))).await?;
        Ok(records
            .into_iter()
            .zip(events)
            .map(|(record, last_event)| MessageListing { record, last_event })
            .collect())
    }

    /// The recipient view of `address` for a key of `environment` at `now`.
    pub async fn recipient(
        &self,
        environment: KeyEnvironment,
        address: &EmailAddress,
        now: UnixMillis,
    ) -> Result<RecipientView, SearchError> {
        let address = normalise_address(address);
        let suppressions = self
            .search
            .suppressions_of(&address)
            .await?
            .into_iter()
            .filter(|s| s.is_active_at(now.to_datetime()))
            .collect();

        let latest = MessageQuery::new(
            environment,
            MessageFilter {
                recipient: Some(address.clone()),
                ..MessageFilter::default()
            },
            RECIPIENT_MESSAGES,
        );
        let messages = self.find(&latest).await?.messages;

        let mut counts: BTreeMap<&'static str, u64> = RecipientStatus::ALL
            .iter()
            .map(|s| (s.as_str(), 0))
            .collect();
        let mut window = MessageQuery::new(
            environment,
            MessageFilter {
                recipient: Some(address.clone()),
                after: Some(now.saturating_add_ms(-COUNT_WINDOW_DAYS * 24 * 60 * 60 * 1000)),
                ..MessageFilter::default()
            },
            MAX_LIMIT,
        );
        let mut counts_complete = false;
        for _ in 0..COUNT_PAGES {
            let page = self.search.find(&window).await?;
            for record in &page.records {
                *counts
                    .entry(status_of(&address, record).as_str())
                    .or_default() += 1;
            }
            match page.next_cursor {
                None => {
                    counts_complete = true;
                    break;
                }
                Some(cursor) => window.cursor = Some(cursor),
            }
        }
        Ok(RecipientView {
            address,
            suppressions,
            counts,
            counts_complete,
            messages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryMessageSearch;
    use mailgate_core::search::LastEvent;
    use mailgate_core::{
        ApiKeyId, EventKind, Mailbox, MessageId, MessageState, OutboundEmail, StoreErrorKind,
        SuppressionOrigin, SuppressionReason,
    };

    const DAY: i64 = 24 * 60 * 60 * 1000;
    const NOW: UnixMillis = UnixMillis(100 * DAY);

    fn addr(a: &str) -> EmailAddress {
        EmailAddress::parse(a).unwrap()
    }

    fn record(
        to: &str,
        at: UnixMillis,
        environment: KeyEnvironment,
        correlation_id: Option<&str>,
    ) -> MessageRecord {
        let mut email = OutboundEmail::new(
            MessageId::generate(),
            Mailbox::new(addr("news@example.com")),
            addr(to),
            "Hello",
        );
        email.correlation_id = correlation_id.map(str::to_owned);
        MessageRecord::new(
            &email,
            ApiKeyId::generate(),
            environment,
            MessageState::Sent,
            at,
            None,
            &[],
        )
    }

    fn set_status(record: &mut MessageRecord, status: RecipientStatus) {
        record.recipients[0].status = status;
    }

    fn finder(search: &Arc<MemoryMessageSearch>) -> MessageFinder {
        MessageFinder::new(search.clone())
    }

    fn by(environment: KeyEnvironment, filter: MessageFilter, limit: usize) -> MessageQuery {
        MessageQuery::new(environment, filter, limit)
    }

    #[tokio::test]
    async fn a_page_lists_newest_first_with_each_last_event() {
        let search = Arc::new(MemoryMessageSearch::default());
        let old = record(
            "jane@example.com",
            UnixMillis(DAY),
            KeyEnvironment::Live,
            None,
        );
        let new = record(
            "jane@example.com",
            UnixMillis(2 * DAY),
            KeyEnvironment::Live,
            None,
        );
        search.insert(old.clone());
        search.insert(new.clone());
        let bounce = LastEvent {
            kind: EventKind::Bounced,
            at: UnixMillis(2 * DAY + 5),
        };
        search.set_last_event(&new.id, bounce);
        let page = finder(&search)
            .find(&by(KeyEnvironment::Live, MessageFilter::default(), 20))
            .await
            .unwrap();
        let ids: Vec<_> = page.messages.iter().map(|m| m.record.id.clone()).collect();
        assert_eq!(ids, vec![new.id, old.id]);
        assert_eq!(page.messages[0].last_event, Some(bounce));
        assert_eq!(page.messages[1].last_event, None);
        assert_eq!((page.next_cursor, page.truncated), (None, false));
    }

    #[tokio::test]
    async fn a_short_page_from_the_read_budget_says_so_and_its_cursor_continues() {
        let search = Arc::new(MemoryMessageSearch::default());
        for day in 1..=4 {
            let to = if day % 2 == 0 {
                "jane@example.com"
            } else {
                "john@example.com"
            };
            search.insert(record(
                to,
                UnixMillis(day * DAY),
                KeyEnvironment::Live,
                None,
            ));
        }
        *search.budget.lock().unwrap() = Some(2);
        let mut query = by(
            KeyEnvironment::Live,
            MessageFilter {
                recipient: Some(addr("john@example.com")),
                ..MessageFilter::default()
            },
            2,
        );
        let first = finder(&search).find(&query).await.unwrap();
        assert_eq!(first.messages.len(), 1);
        assert!(first.truncated);
        query.cursor = first.next_cursor;
        let second = finder(&search).find(&query).await.unwrap();
        assert_eq!(second.messages.len(), 1);
        assert_ne!(second.messages[0].record.id, first.messages[0].record.id);
    }

    #[tokio::test]
    async fn the_recipient_view_counts_the_window_and_shows_active_suppressions() {
        let search = Arc::new(MemoryMessageSearch::default());
        let mut bounced = record(
            "Jane@example.com",
            NOW.saturating_add_ms(-DAY),
            KeyEnvironment::Live,
            None,
        );
        set_status(&mut bounced, RecipientStatus::Bounced);
        let mut delivered = record(
            "jane@example.com",
            NOW.saturating_add_ms(-2 * DAY),
            KeyEnvironment::Live,
            Some("order-1"),
        );
        set_status(&mut delivered, RecipientStatus::Delivered);
        let mut too_old = record(
            "jane@example.com",
            NOW.saturating_add_ms(-40 * DAY),
            KeyEnvironment::Live,
            None,
        );
        set_status(&mut too_old, RecipientStatus::Delivered);
        let other_env = record(
            "jane@example.com",
            NOW.saturating_add_ms(-DAY),
            KeyEnvironment::Test,
            None,
        );
        let stranger = record(
            "john@example.com",
            NOW.saturating_add_ms(-DAY),
            KeyEnvironment::Live,
            None,
        );
        for r in [&bounced, &delivered, &too_old, &other_env, &stranger] {
            search.insert(r.clone());
        }
        let entry = |topic: Option<&str>, expires: Option<i64>| Suppression {
            address: addr("jane@example.com"),
            reason: SuppressionReason::HardBounce,
            created_at: NOW.saturating_add_ms(-DAY).to_datetime(),
            expires_at: expires.map(|e| NOW.saturating_add_ms(e).to_datetime()),
            note: None,
            origin: SuppressionOrigin::Event,
            topic: topic.map(str::to_owned),
        };
        search.suppress(entry(None, None));
        search.suppress(entry(Some("news"), Some(-1000)));

        let view = finder(&search)
            .recipient(KeyEnvironment::Live, &addr("JANE@example.com"), NOW)
            .await
            .unwrap();
        assert_eq!(view.suppressions, vec![entry(None, None)]);
        assert_eq!(view.counts["bounced"], 1);
        assert_eq!(view.counts["delivered"], 1);
        assert_eq!(view.counts.values().sum::<u64>(), 2);
        assert!(view.counts_complete);
        let ids: Vec<_> = view.messages.iter().map(|m| m.record.id.clone()).collect();
        assert_eq!(
            ids,
            vec![bounced.id.clone(), delivered.id.clone(), too_old.id.clone()]
        );
        assert_eq!(
            view.status_in(&view.messages[0].record),
            RecipientStatus::Bounced
        );
    }

    #[tokio::test]
    async fn a_store_failure_and_a_foreign_cursor_are_errors() {
        let search = Arc::new(MemoryMessageSearch::default());
        search.faults.fail_next("find", StoreErrorKind::Throttled);
        let query = by(KeyEnvironment::Live, MessageFilter::default(), 20);
        assert!(matches!(
            finder(&search).find(&query).await,
            Err(SearchError::Store(e)) if e.kind() == StoreErrorKind::Throttled
        ));
        let mut query = query;
        query.cursor = Some("not-ours".into());
        assert!(matches!(
            finder(&search).find(&query).await,
            Err(SearchError::InvalidCursor)
        ));
    }
}
