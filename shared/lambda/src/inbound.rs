//! Inbound email wiring shared by the functions that receive or parse it (`webhook-<provider>`
//! under `/inbound`, `event-processor`): its settings and the service on the AWS adapters.

use std::sync::Arc;

use mailgate_aws::{
    AwsClients, DynamoDbInboundRecords, S3DownloadLinks, S3InboundObjects, SqsEventQueue,
};
use mailgate_services::inbound::{Inbound, InboundPorts, InboundReads};

/// Days received mail is kept when `INBOUND_RETENTION_DAYS` is not set (the template default).
pub const DEFAULT_INBOUND_RETENTION_DAYS: i64 = 30;

/// Where received mail is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSettings {
    /// The inbound table (`INBOUND_TABLE`).
    pub table: String,
    /// The inbound bucket (`INBOUND_BUCKET`).
    pub bucket: String,
    /// How long records are kept (`INBOUND_RETENTION_DAYS`), in seconds; the bucket's
    /// lifecycle expires the raw messages after the same number of days.
    pub retention_secs: i64,
}

impl InboundSettings {
    /// Reads the settings through `lookup`, adding every problem to `problems`.
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
        problems: &mut Vec<String>,
    ) -> Option<Self> {
        let mut required = |name: &str| {
            let value = lookup(name).filter(|v| !v.trim().is_empty());
            if value.is_none() {
                problems.push(format!("{name} is not set"));
            }
            value
        };
        let table = required("INBOUND_TABLE");
        let bucket = required("INBOUND_BUCKET");
        let days = crate::webhook::positive_setting(
            lookup,
            "INBOUND_RETENTION_DAYS",
            DEFAULT_INBOUND_RETENTION_DAYS,
        )
        .map_err(|e| problems.push(e))
        .ok()?;
        Some(Self {
            table: table?,
            bucket: bucket?,
            retention_secs: days * 86_400,
        })
    }
}

/// The inbound service on S3, the inbound table and the events queue at `events_queue_url`.
pub fn inbound_service(
    clients: &AwsClients,
    settings: &InboundSettings,
    events_queue_url: &str,
) -> Inbound {
    Inbound::new(InboundPorts {
        objects: Arc::new(S3InboundObjects::new(
            S3InboundObjects::client(&clients.sdk),
            settings.bucket.clone(),
        )),
        records: Arc::new(DynamoDbInboundRecords::new(
            clients.dynamodb.clone(),
            settings.table.clone(),
            settings.retention_secs,
        )),
        queue: Arc::new(SqsEventQueue::new(
            clients.sqs.clone(),
            events_queue_url.to_owned(),
        )),
    })
}

/// The read side of received mail (send-api's `/v1/inbound…`): links signed for the inbound
/// bucket (no S3 client) and the inbound table.
pub fn inbound_reads(clients: &AwsClients, settings: &InboundSettings) -> InboundReads {
    InboundReads::new(
        Arc::new(S3DownloadLinks::new(&clients.sdk, settings.bucket.clone())),
        Arc::new(DynamoDbInboundRecords::new(
            clients.dynamodb.clone(),
            settings.table.clone(),
            settings.retention_secs,
        )),
        Arc::new(mailgate_core::SystemClock),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_need_the_table_and_bucket_and_a_positive_retention() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let mut problems = Vec::new();
        let settings = InboundSettings::from_lookup(
            &env(&[("INBOUND_TABLE", "t"), ("INBOUND_BUCKET", "b")]),
            &mut problems,
        )
        .unwrap();
        assert!(problems.is_empty());
        assert_eq!(settings.retention_secs, 30 * 86_400);
        let settings = InboundSettings::from_lookup(
            &env(&[
                ("INBOUND_TABLE", "t"),
                ("INBOUND_BUCKET", "b"),
                ("INBOUND_RETENTION_DAYS", "7"),
            ]),
            &mut problems,
        )
        .unwrap();
        assert_eq!(settings.retention_secs, 7 * 86_400);
        assert!(
            InboundSettings::from_lookup(
                &env(&[("INBOUND_TABLE", "t"), ("INBOUND_RETENTION_DAYS", "0")]),
                &mut problems,
            )
            .is_none()
        );
        assert_eq!(
            problems,
            [
                "INBOUND_BUCKET is not set".to_owned(),
                "INBOUND_RETENTION_DAYS must be a positive integer, got \"0\"".to_owned()
            ]
        );
    }
}
