//! The DynamoDB tables and SQS queues of mailgate, and the environment variables that name them.
//!
//! The SAM template sets these variables on every function; locally the stack provisioner resolves
//! the same template, so both sides agree on names without a second list.

use std::collections::BTreeMap;
use std::fmt;

/// A DynamoDB table of mailgate, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Messages, their recipients, send attempts and event history.
    Messages,
    /// Raw webhook receipts and their ingestion status.
    Receipts,
    /// Keys already seen (provider event ids, webhook replay tokens), with expiry.
    Dedupe,
    /// Send idempotency records per API key.
    Idempotency,
    /// Suppressed addresses and soft-bounce tallies.
    Suppressions,
    /// API keys, stored as SHA-256 hashes.
    ApiKeys,
    /// Shared control state: circuit breakers, rate buckets, operator switches.
    Control,
    /// The team's own webhook endpoints.
    Endpoints,
    /// Message templates and their versions.
    Templates,
    /// Received (inbound) email records and their dedupe keys.
    Inbound,
}

impl Table {
    /// Every table.
    pub const ALL: [Table; 10] = [
        Table::Messages,
        Table::Receipts,
        Table::Dedupe,
        Table::Idempotency,
        Table::Suppressions,
        Table::ApiKeys,
        Table::Control,
        Table::Endpoints,
        Table::Templates,
        Table::Inbound,
    ];

    /// The environment variable holding this table's name.
    pub fn env_var(self) -> &'static str {
        match self {
            Table::Messages => "MESSAGES_TABLE",
            Table::Receipts => "RECEIPTS_TABLE",
            Table::Dedupe => "DEDUPE_TABLE",
            Table::Idempotency => "IDEMPOTENCY_TABLE",
            Table::Suppressions => "SUPPRESSIONS_TABLE",
            Table::ApiKeys => "API_KEYS_TABLE",
            Table::Control => "CONTROL_TABLE",
            Table::Endpoints => "ENDPOINTS_TABLE",
            Table::Templates => "TEMPLATES_TABLE",
            Table::Inbound => "INBOUND_TABLE",
        }
    }

    /// A short name for reports, e.g. `messages`.
    pub fn role(self) -> &'static str {
        match self {
            Table::Messages => "messages",
            Table::Receipts => "receipts",
            Table::Dedupe => "dedupe",
            Table::Idempotency => "idempotency",
            Table::Suppressions => "suppressions",
            Table::ApiKeys => "api_keys",
            Table::Control => "control",
            Table::Endpoints => "endpoints",
            Table::Templates => "templates",
            Table::Inbound => "inbound",
        }
    }
}

/// An SQS queue of mailgate, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Queue {
    /// Messages accepted onto the asynchronous send path (`send-worker`).
    Send,
    /// Webhook receipts and SES events waiting for the `event-processor`.
    Events,
    /// Deliveries to the team's own webhook endpoints (`dispatcher`).
    Outbound,
}

impl Queue {
    /// Every queue.
    pub const ALL: [Queue; 3] = [Queue::Send, Queue::Events, Queue::Outbound];

    /// The environment variable holding this queue's URL.
    pub fn env_var(self) -> &'static str {
        match self {
            Queue::Send => "SEND_QUEUE_URL",
            Queue::Events => "EVENTS_QUEUE_URL",
            Queue::Outbound => "OUTBOUND_QUEUE_URL",
        }
    }

    /// A short name for reports, e.g. `send`.
    pub fn role(self) -> &'static str {
        match self {
            Queue::Send => "send",
            Queue::Events => "events",
            Queue::Outbound => "outbound",
        }
    }
}

/// Configuration that is missing or unusable; lists every problem at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// One line per problem, naming the variable.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.problems.join("; "))
    }
}

/// How long a message and everything recorded under it is kept (`MESSAGE_RETENTION_DAYS`).
pub const DEFAULT_MESSAGE_RETENTION_DAYS: u64 = 90;
/// The variable setting it.
pub const MESSAGE_RETENTION_VAR: &str = "MESSAGE_RETENTION_DAYS";

/// The names of the tables and URLs of the queues one function uses (and, with the messages
/// table, how long its items are kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceNames {
    tables: BTreeMap<Table, String>,
    queues: BTreeMap<Queue, String>,
    message_retention: std::time::Duration,
}

impl ResourceNames {
    /// Reads the named tables and queues from the process environment.
    pub fn from_env(tables: &[Table], queues: &[Queue]) -> Result<Self, ConfigError> {
        Self::from_lookup(tables, queues, |name| std::env::var(name).ok())
    }

    /// Reads the named tables and queues through `lookup` (an environment in tests).
    pub fn from_lookup(
        tables: &[Table],
        queues: &[Queue],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut read = |var: &str| match lookup(var).map(|v| v.trim().to_owned()) {
            Some(v) if !v.is_empty() => Some(v),
            _ => {
                problems.push(format!("{var} is not set"));
                None
            }
        };
        let tables: BTreeMap<_, _> = tables
            .iter()
            .filter_map(|&t| read(t.env_var()).map(|v| (t, v)))
            .collect();
        let queues: BTreeMap<_, _> = queues
            .iter()
            .filter_map(|&q| read(q.env_var()).map(|v| (q, v)))
            .collect();
        for (q, url) in &queues {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                problems.push(format!("{} must be a queue URL, got {url:?}", q.env_var()));
            }
        }
        let days = match lookup(MESSAGE_RETENTION_VAR).map(|v| v.trim().to_owned()) {
            Some(v) if !v.is_empty() => match v.parse::<u64>() {
                Ok(d @ 1..=3650) => d,
                _ => {
                    problems.push(format!(
                        "{MESSAGE_RETENTION_VAR} must be a whole number of days from 1 to 3650, got {v:?}"
                    ));
                    DEFAULT_MESSAGE_RETENTION_DAYS
                }
            },
            _ => DEFAULT_MESSAGE_RETENTION_DAYS,
        };
        if problems.is_empty() {
            Ok(Self {
                tables,
                queues,
                message_retention: std::time::Duration::from_secs(days * 86_400),
            })
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The name of `table`.
    ///
    /// # Panics
    /// If the function did not ask for `table` when loading its configuration: that is a wiring
    /// bug caught by the function's own tests, not a runtime condition.
    pub fn table(&self, table: Table) -> &str {
        match self.tables.get(&table) {
            Some(name) => name,
            None => panic!("table {table:?} was not loaded into this function's configuration"),
        }
    }

    /// The URL of `queue`; panics like [`ResourceNames::table`] when it was not loaded.
    pub fn queue_url(&self, queue: Queue) -> &str {
        match self.queues.get(&queue) {
            Some(url) => url,
            None => panic!("queue {queue:?} was not loaded into this function's configuration"),
        }
    }

    /// How long a message and everything recorded under it is kept (DynamoDB TTL).
    pub fn message_retention(&self) -> std::time::Duration {
        self.message_retention
    }

    /// Every loaded table with its name.
    pub fn tables(&self) -> impl Iterator<Item = (Table, &str)> {
        self.tables.iter().map(|(t, n)| (*t, n.as_str()))
    }

    /// Every loaded queue with its URL.
    pub fn queues(&self) -> impl Iterator<Item = (Queue, &str)> {
        self.queues.iter().map(|(q, u)| (*q, u.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn message_retention_defaults_to_ninety_days_and_refuses_nonsense() {
        let names = ResourceNames::from_lookup(
            &[Table::Messages],
            &[],
            env(&[("MESSAGE_TABLE", "x"), ("MESSAGES_TABLE", "m")]),
        )
        .unwrap();
        assert_eq!(names.message_retention().as_secs(), 90 * 86_400);
        let names = ResourceNames::from_lookup(
            &[Table::Messages],
            &[],
            env(&[("MESSAGES_TABLE", "m"), ("MESSAGE_RETENTION_DAYS", "7")]),
        )
        .unwrap();
        assert_eq!(names.message_retention().as_secs(), 7 * 86_400);
        for bad in ["0", "3651", "ninety", "-1"] {
            let err = ResourceNames::from_lookup(
                &[Table::Messages],
                &[],
                env(&[("MESSAGES_TABLE", "m"), ("MESSAGE_RETENTION_DAYS", bad)]),
            )
            .unwrap_err();
            assert!(err.problems[0].contains("MESSAGE_RETENTION_DAYS"), "{bad}");
        }
    }

    #[test]
    fn reads_the_requested_names() {
        let names = ResourceNames::from_lookup(
            &[Table::Messages],
            &[Queue::Send],
            env(&[
                ("MESSAGES_TABLE", "mailgate-dev-messages"),
                (
                    "SEND_QUEUE_URL",
                    "http://127.0.0.1:4566/123456789012/mailgate-dev-send",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(names.table(Table::Messages), "mailgate-dev-messages");
        assert!(names.queue_url(Queue::Send).ends_with("mailgate-dev-send"));
    }

    #[test]
    fn reports_every_missing_or_bad_variable_at_once() {
        let err = ResourceNames::from_lookup(
            &[Table::Messages, Table::Receipts],
            &[Queue::Events],
            env(&[("RECEIPTS_TABLE", "  "), ("EVENTS_QUEUE_URL", "events")]),
        )
        .unwrap_err();
        assert_eq!(
            err.problems,
            vec![
                "MESSAGES_TABLE is not set".to_string(),
                "RECEIPTS_TABLE is not set".to_string(),
                "EVENTS_QUEUE_URL must be a queue URL, got \"events\"".to_string(),
            ]
        );
    }

    #[test]
    fn env_var_names_are_distinct() {
        let mut names: Vec<_> = Table::ALL.iter().map(|t| t.env_var()).collect();
        names.extend(Queue::ALL.iter().map(|q| q.env_var()));
        let before = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), before);
    }
}
