//! Delivery statistics for the API's caller (`GET /v1/stats`) and `mailgate-admin stats`: the
//! hour-bucket counters of the caller's environment, summed into the query's buckets.

use std::sync::Arc;

use mailgate_core::ports::DeliveryStats;
use mailgate_core::stats::{StatsDimension, StatsSeries, aggregate};
use mailgate_core::{DeliveryCounts, UnixMillis};
use mailgate_core::{KeyEnvironment, StatsQuery, StoreError};

/// Reads the delivery statistics.
#[derive(Clone)]
pub struct DeliveryStatistics {
    stats: Arc<dyn DeliveryStats>,
}

impl std::fmt::Debug for DeliveryStatistics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryStatistics").finish_non_exhaustive()
    }
}

impl DeliveryStatistics {
    /// Statistics from `stats`.
    pub fn new(stats: Arc<dyn DeliveryStats>) -> Self {
        Self { stats }
    }

    /// The series `query` asks for in `environment`: ungrouped, one series of totals; grouped,
    /// one per value counted in the range, sorted.
    pub async fn report(
        &self,
        environment: KeyEnvironment,
        query: &StatsQuery,
    ) -> Result<Vec<StatsSeries>, StoreError> {
        let dimension = query
            .group_by
            .map_or(StatsDimension::All, |g| g.dimension());
        let rows = self
            .stats
            .hours(environment, dimension, query.hours())
            .await?;
        Ok(aggregate(query, &rows))
    }
}

/// The JSON answer of `GET /v1/stats` (and `mailgate-admin stats --json`): the range, and
/// `totals` + `buckets` (`{start, counts}`) of every series; ungrouped there is one series with `group: null`.
pub fn report_json(query: &StatsQuery, series: &[StatsSeries]) -> serde_json::Value {
    let time = |at: UnixMillis| {
        at.to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .map_or(serde_json::Value::Null, serde_json::Value::String)
    };
    serde_json::json!({
        "after": time(query.after),
        "before": time(query.before),
        "granularity": query.granularity.as_str(),
        "group_by": query.group_by.map(|g| g.as_str()),
        "series": series.iter().map(|s| serde_json::json!({
            "group": s.group,
            "totals": counts_json(&s.totals),
            "buckets": s.buckets.iter().map(|b| serde_json::json!({
                "start": time(b.start),
                "counts": counts_json(&b.counts),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// One set of counters as JSON, with the bounce and complaint rates (`null` before anything
/// was sent).
pub fn counts_json(counts: &DeliveryCounts) -> serde_json::Value {
    let mut body = serde_json::to_value(counts).unwrap_or_default();
    body["bounce_rate"] = serde_json::json!(counts.bounce_rate());
    body["complaint_rate"] = serde_json::json!(counts.complaint_rate());
    body
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::ops::Range;
    use std::sync::Mutex;

    use super::*;
    use mailgate_core::BoxFuture;
    use mailgate_core::stats::{Counter, HourCounts, hour_of};

    /// Rows per (environment, dimension); records what was asked.
    #[derive(Default)]
    struct MemoryStats {
        rows: Vec<(KeyEnvironment, StatsDimension, HourCounts)>,
        asked: Mutex<Vec<(KeyEnvironment, StatsDimension, Range<i64>)>>,
    }

    impl DeliveryStats for MemoryStats {
        fn hours<'a>(
            &'a self,
            environment: KeyEnvironment,
            dimension: StatsDimension,
            hours: Range<i64>,
        ) -> BoxFuture<'a, Result<Vec<HourCounts>, StoreError>> {
            self.asked
                .lock()
                .unwrap()
                .push((environment, dimension, hours.clone()));
            let rows = self
                .rows
                .iter()
                .filter(|(e, d, r)| *e == environment && *d == dimension && hours.contains(&r.hour))
                .map(|(_, _, r)| r.clone())
                .collect();
            Box::pin(async move { Ok(rows) })
        }
    }

    #[tokio::test]
    async fn a_report_reads_only_the_callers_environment_and_adds_shards_up() {
        let now = UnixMillis(1_796_000_000_000);
        let hour = hour_of(now);
        let row = |accepted| {
            let mut counts = DeliveryCounts::default();
            counts.add(Counter::Accepted, accepted);
            HourCounts {
                hour,
                value: "-".into(),
                counts,
            }
        };
        let stats = Arc::new(MemoryStats {
            rows: vec![
                (KeyEnvironment::Test, StatsDimension::All, row(2)),
                (KeyEnvironment::Test, StatsDimension::All, row(3)),
                (KeyEnvironment::Live, StatsDimension::All, row(100)),
            ],
            ..Default::default()
        });
        let service = DeliveryStatistics::new(stats.clone());
        let query = StatsQuery::parse([], now).unwrap();
        let series = service.report(KeyEnvironment::Test, &query).await.unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].group, None);
        assert_eq!(series[0].totals.accepted, 5);
        assert_eq!(series[0].buckets.len(), 24);
        assert_eq!(series[0].buckets[23].counts.accepted, 5);
        let asked = stats.asked.lock().unwrap().clone();
        assert_eq!(
            asked,
            vec![(KeyEnvironment::Test, StatsDimension::All, query.hours())]
        );

        // Nothing counted: still one series of zeros.
        let series = service
            .report(
                KeyEnvironment::Live,
                &StatsQuery::parse([("before", "2026-01-01T00:00:00Z")], now).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].totals, DeliveryCounts::default());
    }
}
