//! Administering the suppression list (the send API's `/v1/suppressions` routes): list the
//! active entries, read one, store one, remove one, with the rule that protects live mail: a
//! test key may not change an active suppression that delivery events wrote.

use std::sync::Arc;

use mailgate_core::ports::{SuppressionAdmin, SuppressionListError, SuppressionPage};
use mailgate_core::{
    EmailAddress, KeyEnvironment, StoreError, Suppression, SuppressionOrigin, SuppressionReason,
};
use time::OffsetDateTime;

/// Why a suppression-list operation was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SuppressionAdminError {
    /// A test key tried to change an active suppression that delivery events wrote (its
    /// reason given): only a live key may.
    #[error("this suppression ({0}) was written by delivery events; only a live key may change it")]
    LiveKeyRequired(SuppressionReason),
    /// The listing cursor was not made by this listing.
    #[error("the cursor is not one this listing returned")]
    InvalidCursor,
    /// The suppression list failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SuppressionListError> for SuppressionAdminError {
    fn from(e: SuppressionListError) -> Self {
        match e {
            SuppressionListError::InvalidCursor => Self::InvalidCursor,
            SuppressionListError::Store(e) => Self::Store(e),
        }
    }
}

/// The suppression list's administration.
#[derive(Clone)]
pub struct SuppressionAdministration {
    list: Arc<dyn SuppressionAdmin>,
}

impl std::fmt::Debug for SuppressionAdministration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SuppressionAdministration")
            .finish_non_exhaustive()
    }
}

impl SuppressionAdministration {
    /// Administers `list`.
    pub fn new(list: Arc<dyn SuppressionAdmin>) -> Self {
        Self { list }
    }

    /// One page of the entries active at `now` (of `reason` only, when given).
    pub async fn list(
        &self,
        reason: Option<SuppressionReason>,
        cursor: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Result<SuppressionPage, SuppressionAdminError> {
        Ok(self.list.list(reason, cursor, limit, now).await?)
    }

    /// The entry for `address` scoped to `topic` (`None`: the unscoped one) if it is active at
    /// `now`; `None` when the address is not suppressed there (absent, or past its expiry).
    pub async fn get(
        &self,
        address: &EmailAddress,
        topic: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Option<Suppression>, SuppressionAdminError> {
        Ok(self
            .list
            .get(address, topic)
            .await?
            .filter(|entry| entry.is_active_at(now)))
    }

    /// Stores (replaces) the suppression of `address` scoped to `topic` (`None`: the unscoped
    /// one) for a key of `environment`: the entry `decode` makes (the request's body, read only
    /// once the key may change the address, so a refused key learns nothing about its body),
    /// put on `topic`, or `decode`'s own error.
    pub async fn put<E>(
        &self,
        address: &EmailAddress,
        topic: Option<&str>,
        environment: KeyEnvironment,
        now: OffsetDateTime,
        decode: impl FnOnce() -> Result<Suppression, E>,
    ) -> Result<Result<Suppression, E>, SuppressionAdminError> {
        self.guard(address, topic, environment, now).await?;
        let entry = match decode() {
            Ok(entry) => entry.on_topic(topic.map(str::to_owned)),
            Err(invalid) => return Ok(Err(invalid)),
        };
        self.list.put(&entry).await?;
        tracing::info!(address = %entry.address.masked(), reason = %entry.reason, "address suppressed");
        Ok(Ok(entry))
    }

    /// Removes the suppression of `address` scoped to `topic` (`None`: the unscoped one) for a
    /// key of `environment`; the removed entry, or `None` when the address was not suppressed
    /// there at `now`.
    pub async fn delete(
        &self,
        address: &EmailAddress,
        topic: Option<&str>,
        environment: KeyEnvironment,
        now: OffsetDateTime,
    ) -> Result<Option<Suppression>, SuppressionAdminError> {
        self.guard(address, topic, environment, now).await?;
        let removed = self
            .list
            .delete(address, topic)
            .await?
            .filter(|entry| entry.is_active_at(now));
        if removed.is_some() {
            tracing::info!(address = %address.masked(), "suppression removed");
        }
        Ok(removed)
    }

    /// Refuses a test key's change to an active suppression that delivery events wrote (a
    /// bounce, complaint, unsubscribe or the soft-bounce threshold): live mail relies on it,
    /// and a test environment must not lift it, directly or by replacing it with an entry that
    /// lapses. Entries written through the API stay any writer's to manage. (Read, then write:
    /// a test key racing an event's write to the same address in the same millisecond is not
    /// worth a transaction.)
    async fn guard(
        &self,
        address: &EmailAddress,
        topic: Option<&str>,
        environment: KeyEnvironment,
        now: OffsetDateTime,
    ) -> Result<(), SuppressionAdminError> {
        if environment != KeyEnvironment::Test {
            return Ok(());
        }
        match self.list.get(address, topic).await? {
            Some(entry) if entry.is_active_at(now) && entry.origin == SuppressionOrigin::Event => {
                Err(SuppressionAdminError::LiveKeyRequired(entry.reason))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemorySuppressions;
    use mailgate_core::StoreErrorKind;
    use time::Duration;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    fn entry(address: &str, reason: SuppressionReason, origin: SuppressionOrigin) -> Suppression {
        let mut entry = Suppression::new(&addr(address), reason, NOW - Duration::days(1));
        entry.origin = origin;
        entry
    }

    fn lapsed(mut entry: Suppression) -> Suppression {
        entry.expires_at = Some(NOW - Duration::hours(1));
        entry
    }

    fn admin(entries: &[Suppression]) -> (Arc<MemorySuppressions>, SuppressionAdministration) {
        let list = Arc::new(MemorySuppressions::default());
        for e in entries {
            list.put(e.clone());
        }
        (list.clone(), SuppressionAdministration::new(list))
    }

    fn stored(list: &MemorySuppressions, address: &str) -> Option<Suppression> {
        list.entry(&addr(address))
    }

    fn store_kind(err: SuppressionAdminError) -> StoreErrorKind {
        match err {
            SuppressionAdminError::Store(e) => e.kind(),
            other => panic!("expected a store failure, got {other:?}"),
        }
    }

    const EVENT: SuppressionOrigin = SuppressionOrigin::Event;
    const API: SuppressionOrigin = SuppressionOrigin::Api;

    #[tokio::test]
    async fn get_answers_only_active_entries() {
        let bounce = entry("a@example.com", SuppressionReason::HardBounce, EVENT);
        let gone = lapsed(entry("b@example.com", SuppressionReason::Manual, API));
        let (list, admin) = admin(&[bounce.clone(), gone]);
        assert_eq!(
            admin.get(&addr("a@example.com"), None, NOW).await.unwrap(),
            Some(bounce)
        );
        assert_eq!(
            admin.get(&addr("b@example.com"), None, NOW).await.unwrap(),
            None
        );
        assert_eq!(
            admin.get(&addr("c@example.com"), None, NOW).await.unwrap(),
            None
        );

        list.faults.fail_next("get", StoreErrorKind::Throttled);
        let err = admin
            .get(&addr("a@example.com"), None, NOW)
            .await
            .unwrap_err();
        assert_eq!(store_kind(err), StoreErrorKind::Throttled);
    }

    #[tokio::test]
    async fn put_follows_the_table_of_keys_and_origins() {
        let manual = |address: &str| {
            let address = addr(address);
            move || Ok::<_, ()>(Suppression::new(&address, SuppressionReason::Manual, NOW))
        };
        // (existing entry, key environment, whether the new entry is stored)
        let cases = [
            (None, KeyEnvironment::Test, true),
            (
                Some(entry("x@example.com", SuppressionReason::HardBounce, EVENT)),
                KeyEnvironment::Live,
                true,
            ),
            (
                Some(entry("x@example.com", SuppressionReason::Complaint, EVENT)),
                KeyEnvironment::Test,
                false,
            ),
            (
                Some(lapsed(entry(
                    "x@example.com",
                    SuppressionReason::HardBounce,
                    EVENT,
                ))),
                KeyEnvironment::Test,
                true,
            ),
            (
                Some(entry("x@example.com", SuppressionReason::Manual, API)),
                KeyEnvironment::Test,
                true,
            ),
        ];
        for (existing, environment, allowed) in cases {
            let (list, admin) = admin(existing.as_slice());
            let result = admin
                .put(
                    &addr("x@example.com"),
                    None,
                    environment,
                    NOW,
                    manual("x@example.com"),
                )
                .await;
            let now_stored = stored(&list, "x@example.com");
            if allowed {
                let put = result.unwrap().unwrap();
                assert_eq!(put.reason, SuppressionReason::Manual);
                assert_eq!(now_stored, Some(put), "{existing:?} {environment:?}");
            } else {
                let refused = result.unwrap_err();
                assert!(
                    matches!(
                        refused,
                        SuppressionAdminError::LiveKeyRequired(SuppressionReason::Complaint)
                    ),
                    "{refused:?}"
                );
                assert_eq!(now_stored, existing, "the event's entry stays");
            }
        }
    }

    #[tokio::test]
    async fn put_decodes_only_after_the_key_may_change_the_address_and_stores_nothing_invalid() {
        let bounce = entry("x@example.com", SuppressionReason::HardBounce, EVENT);
        let (list, admin) = admin(std::slice::from_ref(&bounce));
        let refused = admin
            .put(
                &addr("x@example.com"),
                None,
                KeyEnvironment::Test,
                NOW,
                || -> Result<Suppression, ()> { panic!("a refused key's body is not read") },
            )
            .await
            .unwrap_err();
        assert!(matches!(refused, SuppressionAdminError::LiveKeyRequired(_)));

        let invalid = admin
            .put(
                &addr("y@example.com"),
                None,
                KeyEnvironment::Live,
                NOW,
                || Err("bad body"),
            )
            .await
            .unwrap();
        assert_eq!(invalid, Err("bad body"));
        assert_eq!(stored(&list, "y@example.com"), None);
        assert_eq!(stored(&list, "x@example.com"), Some(bounce));
    }

    #[tokio::test]
    async fn put_reports_a_failure_of_either_step_and_stores_nothing() {
        let new = || {
            Ok::<_, ()>(Suppression::new(
                &addr("x@example.com"),
                SuppressionReason::Manual,
                NOW,
            ))
        };
        for (operation, environment) in
            [("get", KeyEnvironment::Test), ("put", KeyEnvironment::Live)]
        {
            let (list, admin) = admin(&[]);
            list.faults.fail_next(operation, StoreErrorKind::Transient);
            let err = admin
                .put(&addr("x@example.com"), None, environment, NOW, new)
                .await
                .unwrap_err();
            assert_eq!(store_kind(err), StoreErrorKind::Transient, "{operation}");
            assert_eq!(stored(&list, "x@example.com"), None, "{operation}");
        }
    }

    #[tokio::test]
    async fn delete_answers_the_active_entry_it_removed() {
        let manual = entry("a@example.com", SuppressionReason::Manual, API);
        let gone = lapsed(entry("b@example.com", SuppressionReason::Manual, API));
        let (list, admin) = admin(&[manual.clone(), gone]);
        let live = KeyEnvironment::Live;
        assert_eq!(
            admin
                .delete(&addr("a@example.com"), None, live, NOW)
                .await
                .unwrap(),
            Some(manual)
        );
        assert_eq!(stored(&list, "a@example.com"), None);
        // A lapsed entry is removed too, but the address was not suppressed.
        assert_eq!(
            admin
                .delete(&addr("b@example.com"), None, live, NOW)
                .await
                .unwrap(),
            None
        );
        assert_eq!(stored(&list, "b@example.com"), None);
        assert_eq!(
            admin
                .delete(&addr("c@example.com"), None, live, NOW)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_test_key_may_not_lift_an_event_suppression_but_a_live_key_may() {
        let bounce = entry("a@example.com", SuppressionReason::HardBounce, EVENT);
        let (list, admin) = admin(std::slice::from_ref(&bounce));
        let refused = admin
            .delete(&addr("a@example.com"), None, KeyEnvironment::Test, NOW)
            .await
            .unwrap_err();
        assert!(matches!(
            refused,
            SuppressionAdminError::LiveKeyRequired(SuppressionReason::HardBounce)
        ));
        assert_eq!(stored(&list, "a@example.com"), Some(bounce.clone()));
        let removed = admin
            .delete(&addr("a@example.com"), None, KeyEnvironment::Live, NOW)
            .await;
        assert_eq!(removed.unwrap(), Some(bounce));
    }

    #[tokio::test]
    async fn delete_reports_a_failure_of_either_step_and_keeps_the_entry() {
        let manual = entry("a@example.com", SuppressionReason::Manual, API);
        for (operation, environment) in [
            ("get", KeyEnvironment::Test),
            ("delete", KeyEnvironment::Live),
        ] {
            let (list, admin) = admin(std::slice::from_ref(&manual));
            list.faults
                .fail_next(operation, StoreErrorKind::MissingResource);
            let err = admin
                .delete(&addr("a@example.com"), None, environment, NOW)
                .await
                .unwrap_err();
            assert_eq!(
                store_kind(err),
                StoreErrorKind::MissingResource,
                "{operation}"
            );
            assert_eq!(
                stored(&list, "a@example.com"),
                Some(manual.clone()),
                "{operation}"
            );
        }
    }

    #[tokio::test]
    async fn list_pages_through_active_entries_of_a_reason() {
        let (list, admin) = admin(&[
            entry("a@example.com", SuppressionReason::HardBounce, EVENT),
            entry("b@example.com", SuppressionReason::Manual, API),
            entry("c@example.com", SuppressionReason::HardBounce, EVENT),
            lapsed(entry("d@example.com", SuppressionReason::HardBounce, EVENT)),
            entry("e@example.com", SuppressionReason::HardBounce, EVENT),
        ]);
        let bounces = Some(SuppressionReason::HardBounce);
        let first = admin.list(bounces, None, 2, NOW).await.unwrap();
        let addresses = |page: &SuppressionPage| {
            page.items
                .iter()
                .map(|s| s.address.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(addresses(&first), ["a@example.com", "c@example.com"]);
        let cursor = first.next_cursor.expect("a second page");
        let second = admin.list(bounces, Some(&cursor), 2, NOW).await.unwrap();
        assert_eq!(addresses(&second), ["e@example.com"]);
        assert_eq!(second.next_cursor, None);

        let err = admin.list(None, Some("forged"), 2, NOW).await.unwrap_err();
        assert!(
            matches!(err, SuppressionAdminError::InvalidCursor),
            "{err:?}"
        );
        list.faults.fail_next("list", StoreErrorKind::Corrupt);
        let err = admin.list(None, None, 2, NOW).await.unwrap_err();
        assert_eq!(store_kind(err), StoreErrorKind::Corrupt);
    }

    #[tokio::test]
    async fn each_topic_is_its_own_entry_and_the_guard_reads_the_one_addressed() {
        let news = entry("a@example.com", SuppressionReason::Unsubscribe, EVENT)
            .on_topic(Some("news".to_owned()));
        let (list, admin) = admin(std::slice::from_ref(&news));
        let a = addr("a@example.com");
        let manual = |address: &str| {
            let address = addr(address);
            move || Ok::<_, ()>(Suppression::new(&address, SuppressionReason::Manual, NOW))
        };

        assert_eq!(
            admin.get(&a, Some("news"), NOW).await.unwrap(),
            Some(news.clone())
        );
        assert_eq!(admin.get(&a, None, NOW).await.unwrap(), None);
        assert_eq!(admin.get(&a, Some("offers"), NOW).await.unwrap(), None);

        let refused = admin
            .delete(&a, Some("news"), KeyEnvironment::Test, NOW)
            .await
            .unwrap_err();
        assert!(matches!(
            refused,
            SuppressionAdminError::LiveKeyRequired(SuppressionReason::Unsubscribe)
        ));
        assert_eq!(list.entry_in(&a, Some("news")), Some(news.clone()));

        // The unscoped entry is a test key's to write: the event's entry is on another topic.
        let put = admin
            .put(&a, None, KeyEnvironment::Test, NOW, manual("a@example.com"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(put.topic, None);
        assert_eq!(stored(&list, "a@example.com"), Some(put));

        // A write through a topic lands on that topic, whatever the body decoded to.
        let offers = admin
            .put(
                &a,
                Some("offers"),
                KeyEnvironment::Live,
                NOW,
                manual("a@example.com"),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(offers.topic.as_deref(), Some("offers"));
        assert_eq!(list.entry_in(&a, Some("offers")), Some(offers));

        let removed = admin
            .delete(&a, Some("news"), KeyEnvironment::Live, NOW)
            .await
            .unwrap();
        assert_eq!(removed, Some(news));
        assert_eq!(list.entry_in(&a, Some("news")), None);
        assert!(
            stored(&list, "a@example.com").is_some(),
            "other entries stay"
        );
    }
}
