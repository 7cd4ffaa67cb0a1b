//! `mailgate-admin`: the operator's commands, as a library so tests run them against the
//! emulator exactly as the binary does.
//!
//! ```text
//! mailgate-admin keys create --label L --scopes send,read [--environment test|live]
//! mailgate-admin keys list
//! mailgate-admin keys revoke key_…
//! mailgate-admin keys seed --key K --label L --scopes all
//! mailgate-admin sends pause|resume|status
//! mailgate-admin endpoints add --url URL [--events email.delivered,email.bounced]
//! mailgate-admin endpoints list | remove ep_… | rotate-secret ep_…
//! mailgate-admin dlq replay send|events|outbound
//! mailgate-admin classify < bounces.jsonl
//! mailgate-admin messages find --recipient A | --correlation-id C | --tag T | --state S … [--json]
//! mailgate-admin normalise --provider P < body.json
//! mailgate-admin domains add D [--mail-from-subdomain bounce] | check D [--dns-resolver IP[:port]] | list
//! mailgate-admin templates list [--environment live|test] | render tpl_… [--version N] [--data JSON]
//! ```
//!
//! Every command works against the AWS endpoint of the standard SDK chain (`AWS_ENDPOINT_URL`
//! for the local emulator). Tables and queues come from flags or the functions' variables:
//! `keys` use `--table` or `API_KEYS_TABLE`; `sends` use `--table` or `CONTROL_TABLE` (and, for
//! `status`'s counts, `--messages-table` or `MESSAGES_TABLE`); `endpoints` use `--table` or
//! `ENDPOINTS_TABLE`; `dlq replay` uses `--queue-url` or the queue's `*_QUEUE_URL`; `templates`
//! use `--table` or `TEMPLATES_TABLE`; `domains` use SES (and `DNS_RESOLVER` for `check`). Exit codes: 0
//! success, 1 AWS failed, 2 usage (unknown scope or environment, malformed id or key, no table
//! given), 3 no such key or endpoint, 4 the table does not exist.

use std::io::Write;

pub mod search;
pub use search::{FindArgs, MessagesCommand, NormaliseArgs};
pub mod content;

use aws_sdk_dynamodb::Client;
use clap::{Args, Parser, Subcommand};
use mailgate_aws::{
    ApiKeyStoreError, ControlsError, DynamoDbApiKeys, DynamoDbMessages, DynamoDbSendControls,
    MessageStoreError, Revocation, Seeded,
};
use mailgate_aws::{AwsClients, DynamoDbEndpoints, EndpointStoreError, Queue};
use mailgate_core::{
    ApiKeyId, ApiKeyLabel, ApiKeyRecord, ApiKeySecret, BounceEvidence, EndpointFilter, EndpointId,
    EnhancedStatus, InvalidEndpointUrl, KeyEnvironment, ProviderId, ReleaseQueue, Scopes,
    ScopesError, UnixMillis, UnknownEventType, classify_bounce,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// DynamoDB could not be reached or refused the call.
pub const EXIT_FAILURE: u8 = 1;
/// The command line is wrong (clap uses the same code).
pub const EXIT_USAGE: u8 = 2;
/// No key has the given id.
pub const EXIT_UNKNOWN_KEY: u8 = 3;
/// The API keys table does not exist.
pub const EXIT_TABLE_NOT_FOUND: u8 = 4;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "mailgate-admin",
    version,
    about = "Operator commands for mailgate"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the send API's keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The pause switch of bulk sends.
    #[command(subcommand)]
    Sends(SendsCommand),
    /// Manage the team's webhook endpoints (Standard Webhooks, signed with `whsec_` secrets).
    #[command(subcommand)]
    Endpoints(EndpointsCommand),
    /// Dead-letter queues.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Delivery statistics of one environment, as `GET /v1/stats` answers (a table for people,
    /// `--json` for scripts).
    Stats(StatsArgs),
    /// Classifies bounces: JSON lines `{"diagnostic","status","reply_code"}` on stdin, one
    /// `{"kind","cause","suppress"}` line per input on stdout.
    Classify,
    /// Messages (`messages find`: the search of `GET /v1/messages`).
    #[command(subcommand)]
    Messages(MessagesCommand),
    /// Normalises one webhook body, exactly as the provider posts it (for SES: the SNS envelope
    /// or the EventBridge event), from stdin: one JSON event per line, through the event
    /// processor's own code. Needs no AWS.
    Normalise(NormaliseArgs),
    /// Sender domains: SES identities and their DNS records.
    #[command(subcommand)]
    Domains(content::DomainsCommand),
    /// Message templates.
    #[command(subcommand)]
    Templates(content::TemplatesCommand),
}

/// `mailgate-admin sends …`.
#[derive(Debug, Subcommand)]
pub enum SendsCommand {
    /// Holds new bulk messages as `paused` (transactional mail is never paused).
    Pause {
        #[command(flatten)]
        table: ControlTableArg,
    },
    /// Lets bulk messages go again: the switch off and every reputation-guardrail pause lifted
    /// (with `--domain`, only that domain's guardrail pauses, of `--provider` when given); the
    /// sweeper releases the paused messages on its next tick.
    Resume {
        #[command(flatten)]
        table: ControlTableArg,
        /// Only lift the guardrail pauses of this sending domain.
        #[arg(long)]
        domain: Option<String>,
        /// With `--domain`: only this provider's.
        #[arg(long, requires = "domain")]
        provider: Option<ProviderId>,
    },
    /// Shows the switch and, given the messages table, how many messages are held.
    Status {
        #[command(flatten)]
        table: ControlTableArg,
        /// The messages table, to count paused and scheduled messages.
        #[arg(long, value_name = "TABLE", env = "MESSAGES_TABLE")]
        messages_table: Option<String>,
    },
}

/// `mailgate-admin stats`: the same parameters as `GET /v1/stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Start of the range (RFC 3339; default `--before` minus 1 day by hour, 7 days by day).
    #[arg(long)]
    pub after: Option<String>,
    /// End of the range (RFC 3339; default now).
    #[arg(long)]
    pub before: Option<String>,
    /// `hour` (default) or `day`.
    #[arg(long)]
    pub granularity: Option<String>,
    /// `provider`, `category` or `tag`.
    #[arg(long)]
    pub group_by: Option<String>,
    /// The environment whose counters to read.
    #[arg(long, default_value = "live")]
    pub environment: KeyEnvironment,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The messages table (which holds the counters).
    #[arg(long, value_name = "TABLE", env = "MESSAGES_TABLE")]
    pub messages_table: String,
}

/// `mailgate-admin endpoints …`.
#[derive(Debug, Subcommand)]
pub enum EndpointsCommand {
    /// Adds an endpoint and prints its id and its `whsec_` secret, once.
    Add {
        /// Where to POST: https, or http to a loopback host for local use.
        #[arg(long)]
        url: String,
        /// Comma-separated event types (`email.delivered,email.bounced`); all message events
        /// when left out.
        #[arg(long, value_parser = parse_events, default_value = "")]
        events: EndpointFilter,
        #[command(flatten)]
        table: EndpointsTableArg,
    },
    /// Lists every endpoint: id, URL, events, enabled, secrets in use (never a secret).
    List {
        #[command(flatten)]
        table: EndpointsTableArg,
    },
    /// Removes an endpoint; deliveries already queued for it are dropped.
    Remove {
        /// The endpoint's id (`ep_…`).
        id: EndpointId,
        #[command(flatten)]
        table: EndpointsTableArg,
    },
    /// Gives an endpoint a new secret and prints it once; the previous one keeps signing for
    /// 24 hours, so both signatures are sent meanwhile.
    RotateSecret {
        /// The endpoint's id (`ep_…`).
        id: EndpointId,
        #[command(flatten)]
        table: EndpointsTableArg,
    },
}

/// The table the endpoints live in.
#[derive(Debug, Args)]
pub struct EndpointsTableArg {
    /// The endpoints table (the stack's `mailgate-<env>-endpoints`).
    #[arg(long = "table", value_name = "TABLE", env = "ENDPOINTS_TABLE")]
    pub name: String,
}

/// `mailgate-admin dlq …`.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Moves every message of a queue's dead-letter queue back onto the queue.
    Replay {
        /// The queue: `send`, `events` or `outbound`.
        queue: QueueRole,
        /// The queue's URL; defaults to `SEND_QUEUE_URL`, `EVENTS_QUEUE_URL` or
        /// `OUTBOUND_QUEUE_URL`. Its dead-letter queue is found from its redrive policy.
        #[arg(long, value_name = "URL")]
        queue_url: Option<String>,
    },
}

/// A queue of mailgate, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueRole {
    /// The send queue.
    Send,
    /// The events queue.
    Events,
    /// The outbound (app webhook) queue.
    Outbound,
}

impl QueueRole {
    /// The queue it names.
    pub fn queue(self) -> Queue {
        match self {
            QueueRole::Send => Queue::Send,
            QueueRole::Events => Queue::Events,
            QueueRole::Outbound => Queue::Outbound,
        }
    }
}

/// Parses `--events`: comma-separated `email.<kind>` names; blank means all.
pub fn parse_events(input: &str) -> Result<EndpointFilter, UnknownEventType> {
    EndpointFilter::parse_list(input)
}

/// The control table the switches live in.
#[derive(Debug, Args)]
pub struct ControlTableArg {
    /// The control table (the stack's `mailgate-<env>-control`).
    #[arg(long = "table", value_name = "TABLE", env = "CONTROL_TABLE")]
    pub name: String,
}

/// `mailgate-admin keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Creates a key and prints it, once, with its id.
    Create {
        /// A name for the key, e.g. "billing service".
        #[arg(long, value_parser = parse_label)]
        label: ApiKeyLabel,
        /// Comma-separated scopes: send, read, suppressions:write, templates:write, domains:write,
        /// inbound:read (or `all`).
        #[arg(long, value_parser = parse_scopes)]
        scopes: Scopes,
        /// `test` or `live`; it is also the key's prefix (`mg_live_…`).
        #[arg(long, default_value = "live")]
        environment: KeyEnvironment,
        #[command(flatten)]
        table: TableArg,
    },
    /// Lists every key: id, label, environment, scopes, created, revoked (never the key).
    List {
        #[command(flatten)]
        table: TableArg,
    },
    /// Revokes a key by id; it stops authenticating at once.
    Revoke {
        /// The key's id (`key_…`).
        id: ApiKeyId,
        #[command(flatten)]
        table: TableArg,
    },
    /// Stores a given key (idempotent): creates it, or updates its label, environment and
    /// scopes and lifts a revocation. Used by `make dev` for the local key.
    Seed {
        /// The key itself (any 1-256 visible ASCII characters).
        #[arg(long, value_parser = parse_secret)]
        key: ApiKeySecret,
        /// A name for the key.
        #[arg(long, value_parser = parse_label)]
        label: ApiKeyLabel,
        /// Comma-separated scopes: send, read, suppressions:write, templates:write, domains:write,
        /// inbound:read (or `all`).
        #[arg(long, value_parser = parse_scopes)]
        scopes: Scopes,
        /// `test` or `live`.
        #[arg(long, default_value = "live")]
        environment: KeyEnvironment,
        #[command(flatten)]
        table: TableArg,
    },
}

/// The table the keys live in.
#[derive(Debug, Args)]
pub struct TableArg {
    /// The API keys table (the stack's `mailgate-<env>-api-keys`).
    #[arg(long = "table", value_name = "TABLE", env = "API_KEYS_TABLE")]
    pub name: String,
}

/// Parses `--scopes`: a comma-separated list, or `all`.
pub fn parse_scopes(input: &str) -> Result<Scopes, ScopesError> {
    if input.trim() == "all" {
        Ok(Scopes::all())
    } else {
        Scopes::parse_list(input)
    }
}

fn parse_label(input: &str) -> Result<ApiKeyLabel, mailgate_core::InvalidLabel> {
    ApiKeyLabel::parse(input)
}

fn parse_secret(input: &str) -> Result<ApiKeySecret, mailgate_core::MalformedKey> {
    ApiKeySecret::parse(input)
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The table does not exist.
    #[error(
        "the API keys table {0:?} does not exist: check --table / API_KEYS_TABLE, and that \
         AWS_ENDPOINT_URL and AWS_REGION point at the stack that holds it"
    )]
    TableNotFound(String),
    /// No key has this id.
    #[error("no API key has the id {0} (see `mailgate-admin keys list`)")]
    UnknownKey(ApiKeyId),
    /// Any other storage failure.
    #[error(transparent)]
    Store(ApiKeyStoreError),
    /// A control table that does not exist.
    #[error(
        "the control table {0:?} does not exist: check --table / CONTROL_TABLE, and that \
         AWS_ENDPOINT_URL and AWS_REGION point at the stack that holds it"
    )]
    ControlTableNotFound(String),
    /// Any other failure of the control table.
    #[error(transparent)]
    Controls(ControlsError),
    /// The messages table could not be read.
    #[error(transparent)]
    Messages(#[from] MessageStoreError),
    /// An endpoints table that does not exist.
    #[error(
        "the endpoints table {0:?} does not exist: check --table / ENDPOINTS_TABLE, and that \
         AWS_ENDPOINT_URL and AWS_REGION point at the stack that holds it"
    )]
    EndpointsTableNotFound(String),
    /// No endpoint has this id.
    #[error("no webhook endpoint has the id {0} (see `mailgate-admin endpoints list`)")]
    UnknownEndpoint(EndpointId),
    /// The endpoint URL is not accepted.
    #[error("invalid --url: {0}")]
    InvalidUrl(InvalidEndpointUrl),
    /// Any other failure of the endpoints table.
    #[error(transparent)]
    Endpoints(EndpointStoreError),
    /// No URL for the queue to replay into.
    #[error("no queue URL: pass --queue-url or set {0}")]
    QueueNotConfigured(&'static str),
    /// This command needs SQS and was run without an SQS client.
    #[error("this command needs an SQS client (run it through `run_with_sqs`)")]
    NoQueueClient,
    /// Replaying a dead-letter queue failed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// A `messages find` filter is not acceptable (the API would answer 400).
    #[error("invalid --{}: {}", .0.field.replace('_', "-"), .0.message)]
    InvalidFilter(mailgate_core::search::QueryError),
    /// The message search failed.
    #[error(transparent)]
    Search(mailgate_core::ports::SearchError),
    /// The body on stdin is not one the provider posts.
    #[error("the body could not be normalised: {0}")]
    Normalise(String),
    /// A stats parameter is not acceptable.
    #[error("invalid --{}: {}", .0.field.replace('_', "-"), .0.message)]
    InvalidStatsQuery(mailgate_core::StatsQueryError),
    /// The counters could not be read.
    #[error(transparent)]
    Stats(mailgate_core::StoreError),
    /// Standard output could not be written.
    #[error("could not write the output: {0}")]
    Output(#[from] std::io::Error),
    /// This command needs every AWS client and was run with DynamoDB (and SQS) only.
    #[error("this command needs SES and DynamoDB (run it through `run_with_clients`)")]
    NoClients,
    /// The service refused the request (as the API would: status and code).
    #[error("{message} ({code})")]
    Refused {
        /// The HTTP status the API would answer.
        status: u16,
        /// The error code.
        code: &'static str,
        /// What went wrong.
        message: String,
    },
}

impl From<ApiKeyStoreError> for AdminError {
    fn from(err: ApiKeyStoreError) -> Self {
        match err {
            ApiKeyStoreError::TableNotFound(table) => AdminError::TableNotFound(table),
            ApiKeyStoreError::UnknownId(id) => AdminError::UnknownKey(id),
            other => AdminError::Store(other),
        }
    }
}

impl From<EndpointStoreError> for AdminError {
    fn from(err: EndpointStoreError) -> Self {
        match err {
            EndpointStoreError::TableNotFound(table) => AdminError::EndpointsTableNotFound(table),
            EndpointStoreError::UnknownId(id) => AdminError::UnknownEndpoint(id),
            EndpointStoreError::InvalidUrl(e) => AdminError::InvalidUrl(e),
            other => AdminError::Endpoints(other),
        }
    }
}

impl From<ControlsError> for AdminError {
    fn from(err: ControlsError) -> Self {
        match err {
            ControlsError::TableNotFound(table) => AdminError::ControlTableNotFound(table),
            other => AdminError::Controls(other),
        }
    }
}

impl AdminError {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminError::TableNotFound(_)
            | AdminError::ControlTableNotFound(_)
            | AdminError::EndpointsTableNotFound(_) => EXIT_TABLE_NOT_FOUND,
            AdminError::UnknownKey(_) | AdminError::UnknownEndpoint(_) => EXIT_UNKNOWN_KEY,
            AdminError::InvalidUrl(_)
            | AdminError::QueueNotConfigured(_)
            | AdminError::InvalidFilter(_)
            | AdminError::Normalise(_) => EXIT_USAGE,
            AdminError::InvalidStatsQuery(_) => EXIT_USAGE,
            AdminError::Refused { status: 404, .. } => EXIT_UNKNOWN_KEY,
            AdminError::Refused { status, .. } if *status < 500 => EXIT_USAGE,
            AdminError::Refused { .. } | AdminError::NoClients => EXIT_FAILURE,
            AdminError::Store(_)
            | AdminError::Controls(_)
            | AdminError::Messages(_)
            | AdminError::Endpoints(_)
            | AdminError::NoQueueClient
            | AdminError::Replay(_)
            | AdminError::Search(_)
            | AdminError::Stats(_)
            | AdminError::Output(_) => EXIT_FAILURE,
        }
    }
}

/// The current time, to the second (stored timestamps stay short and readable).
fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

fn timestamp(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

fn describe(record: &ApiKeyRecord) -> String {
    format!(
        "{} ({:?}, {}, scopes {})",
        record.id,
        record.label.as_str(),
        record.environment,
        record.scopes
    )
}

/// Runs one command against DynamoDB, writing its report to `out` (`dlq` commands need SQS:
/// see [`run_with_sqs`]).
pub async fn run(cli: Cli, dynamodb: &Client, out: &mut impl Write) -> Result<(), AdminError> {
    run_with_sqs(cli, dynamodb, None, out).await
}

/// Runs one command against DynamoDB and, for `dlq` commands, SQS.
pub async fn run_with_sqs(
    cli: Cli,
    dynamodb: &Client,
    sqs: Option<&aws_sdk_sqs::Client>,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    match cli.command {
        Command::Keys(command) => run_keys(command, dynamodb, out).await,
        Command::Sends(command) => run_sends(command, dynamodb, out).await,
        Command::Endpoints(command) => run_endpoints(command, dynamodb, out).await,
        Command::Dlq(command) => {
            let sqs = sqs.ok_or(AdminError::NoQueueClient)?;
            run_dlq(command, sqs, |var| std::env::var(var).ok(), out).await
        }
        Command::Stats(args) => run_stats(args, dynamodb, out).await,
        Command::Classify => classify_lines(std::io::stdin().lock(), out),
        Command::Messages(command) => search::run_messages(command, dynamodb, out).await,
        Command::Normalise(args) => search::run_normalise(&args, std::io::stdin().lock(), out),
        Command::Domains(_) | Command::Templates(_) => Err(AdminError::NoClients),
    }
}

/// Runs any command with every client (`domains` needs SES, `templates` DynamoDB).
pub async fn run_with_clients(
    cli: Cli,
    clients: &AwsClients,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    match cli.command {
        Command::Domains(command) => content::run_domains(command, clients, out).await,
        Command::Templates(command) => content::run_templates(command, clients, out).await,
        command => run_with_sqs(Cli { command }, &clients.dynamodb, Some(&clients.sqs), out).await,
    }
}

/// `mailgate-admin stats`: the same query, service and JSON as `GET /v1/stats`.
async fn run_stats(
    args: StatsArgs,
    dynamodb: &Client,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let params = [
        ("after", args.after.as_deref()),
        ("before", args.before.as_deref()),
        ("granularity", args.granularity.as_deref()),
        ("group_by", args.group_by.as_deref()),
    ];
    let query = mailgate_core::StatsQuery::parse(
        params.iter().filter_map(|(k, v)| v.map(|v| (*k, v))),
        now_ms(),
    )
    .map_err(AdminError::InvalidStatsQuery)?;
    let service = mailgate_services::stats::DeliveryStatistics::new(std::sync::Arc::new(
        mailgate_aws::DynamoDbDeliveryStats::new(dynamodb.clone(), args.messages_table),
    ));
    let series = service
        .report(args.environment, &query)
        .await
        .map_err(AdminError::Stats)?;
    if args.json {
        let body = mailgate_services::stats::report_json(&query, &series);
        writeln!(out, "{body}")?;
        return Ok(());
    }
    let columns = mailgate_core::stats::Counter::ALL;
    let mut header = vec!["group", "start"];
    header.extend(columns.iter().map(|c| c.as_str()));
    header.extend(["bounce_rate", "complaint_rate"]);
    let rate = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{:.4}%", r * 100.0));
    let mut rows = Vec::new();
    for s in &series {
        let group = s.group.clone().unwrap_or_else(|| "all".to_owned());
        let buckets = s
            .buckets
            .iter()
            .map(|b| (timestamp(b.start.to_datetime()), &b.counts))
            .chain([("total".to_owned(), &s.totals)]);
        for (start, counts) in buckets {
            let mut row = vec![group.clone(), start];
            row.extend(columns.iter().map(|c| counts.get(*c).to_string()));
            row.push(rate(counts.bounce_rate()));
            row.push(rate(counts.complaint_rate()));
            rows.push(row);
        }
    }
    writeln!(
        out,
        "{} buckets by {} from {} to {}",
        args.environment,
        query.granularity.as_str(),
        timestamp(query.after.to_datetime()),
        timestamp(query.before.to_datetime())
    )?;
    print_table(out, &header, &rows)?;
    Ok(())
}

/// The current time as stored instants.
fn now_ms() -> UnixMillis {
    UnixMillis::from(OffsetDateTime::now_utc())
}

/// Prints rows as left-aligned columns under `header`.
pub(crate) fn print_table(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

async fn run_endpoints(
    command: EndpointsCommand,
    dynamodb: &Client,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let store = |table: EndpointsTableArg| DynamoDbEndpoints::new(dynamodb.clone(), table.name);
    match command {
        EndpointsCommand::Add { url, events, table } => {
            let (endpoint, secret) = store(table).add(&url, events, now_ms()).await?;
            writeln!(out, "id:      {}", endpoint.id)?;
            writeln!(out, "url:     {}", endpoint.url)?;
            writeln!(out, "events:  {}", endpoint.filter)?;
            writeln!(out, "secret:  {}", secret.expose())?;
            writeln!(out)?;
            writeln!(
                out,
                "Store the secret now: it is shown only this once. Verify deliveries with any \
                 Standard Webhooks library (webhook-id, webhook-timestamp, webhook-signature)."
            )?;
        }
        EndpointsCommand::List { table } => {
            let store = store(table);
            let now = now_ms();
            let endpoints = store.list(now).await?;
            if endpoints.is_empty() {
                writeln!(out, "no webhook endpoints in {}", store.table())?;
                return Ok(());
            }
            let rows: Vec<Vec<String>> = endpoints
                .iter()
                .map(|e| {
                    vec![
                        e.id.to_string(),
                        e.url.to_string(),
                        e.filter.to_string(),
                        match (&e.enabled, &e.disabled_reason) {
                            (true, _) => "yes".to_owned(),
                            (false, Some(why)) => format!("no ({why})"),
                            (false, None) => "no".to_owned(),
                        },
                        e.signing_secrets(now).len().to_string(),
                        timestamp(e.created_at.to_datetime()),
                    ]
                })
                .collect();
            print_table(
                out,
                &["ID", "URL", "EVENTS", "ENABLED", "SECRETS", "CREATED"],
                &rows,
            )?;
        }
        EndpointsCommand::Remove { id, table } => {
            store(table).remove(&id).await?;
            writeln!(out, "removed {id}")?;
        }
        EndpointsCommand::RotateSecret { id, table } => {
            let secret = store(table).rotate_secret(&id, now_ms()).await?;
            writeln!(out, "id:      {id}")?;
            writeln!(out, "secret:  {}", secret.expose())?;
            writeln!(out)?;
            writeln!(
                out,
                "Deliveries are signed with the new and the previous secret for 24 hours; \
                 switch the app to the new one within that time."
            )?;
        }
    }
    Ok(())
}

/// Runs a `dlq` command; `lookup` reads the queue URL variables.
pub async fn run_dlq(
    command: DlqCommand,
    sqs: &aws_sdk_sqs::Client,
    lookup: impl Fn(&str) -> Option<String>,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    match command {
        DlqCommand::Replay { queue, queue_url } => {
            let var = queue.queue().env_var();
            let url = queue_url
                .or_else(|| lookup(var))
                .filter(|u| !u.trim().is_empty())
                .ok_or(AdminError::QueueNotConfigured(var))?;
            let mut lines = Vec::new();
            let moved = replay_dead_letters_with(sqs, &url, &mut |replayed| {
                lines.push(replayed_line(replayed));
            })
            .await;
            // Every message moved is named (with its poison reason), even when a later call failed.
            for line in &lines {
                writeln!(out, "{line}")?;
            }
            let moved = moved?;
            writeln!(
                out,
                "replayed {moved} message(s) from the {} dead-letter queue",
                queue.queue().role()
            )?;
        }
    }
    Ok(())
}

/// Replaying a dead-letter queue failed part-way; messages moved before the failure stay moved.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplayError {
    /// The queue has no redrive policy naming a dead-letter queue.
    #[error("the queue {0} has no dead-letter queue in its redrive policy")]
    NoDeadLetterQueue(String),
    /// An SQS call failed.
    #[error("SQS {operation} failed after {moved} message(s) were replayed: {detail}")]
    Sqs {
        /// The API operation.
        operation: &'static str,
        /// How many messages had been moved.
        moved: usize,
        /// The SDK error with its context.
        detail: String,
    },
}

/// One message moved back from a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Its SQS message id in the dead-letter queue.
    pub message_id: String,
    /// Why a consumer parked it there at once (the `mailgate_poison_reason` attribute); `None`
    /// when SQS moved it after the redrive count.
    pub poison_reason: Option<String>,
}

/// The line `dlq replay` prints for a replayed message.
pub fn replayed_line(replayed: &Replayed) -> String {
    match &replayed.poison_reason {
        Some(reason) => format!(
            "replayed {}: parked as poison: {reason}",
            replayed.message_id
        ),
        None => format!(
            "replayed {}: moved after the redrive count (no poison reason)",
            replayed.message_id
        ),
    }
}

/// Moves every message of the dead-letter queue of `queue_url` back onto it: receive up to ten,
/// send them, then delete them from the dead-letter queue, until a receive comes back empty.
/// Returns how many moved. A failure between send and delete leaves a copy in both queues,
/// which consumers tolerate (every message is processed at least once, idempotently).
pub async fn replay_dead_letters(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<usize, ReplayError> {
    replay_dead_letters_with(sqs, queue_url, &mut |_| {}).await
}

/// [`replay_dead_letters`], telling `replayed` about each message moved (with its poison reason).
pub async fn replay_dead_letters_with(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    replayed: &mut dyn FnMut(&Replayed),
) -> Result<usize, ReplayError> {
    use aws_sdk_sqs::error::DisplayErrorContext;
    use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};
    use mailgate_aws::sqs_batch::{BatchEntry, send_batches};
    let mut moved = 0usize;
    let fail =
        |operation: &'static str, moved: usize, err: &dyn std::error::Error| ReplayError::Sqs {
            operation,
            moved,
            detail: DisplayErrorContext(err).to_string(),
        };
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .map_err(|e| fail("GetQueueAttributes", 0, &e))?;
    let dlq_arn = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .and_then(|p| p["deadLetterTargetArn"].as_str().map(str::to_owned))
        .ok_or_else(|| ReplayError::NoDeadLetterQueue(queue_url.to_owned()))?;
    // An SQS ARN ends in the queue name.
    let dlq_name = dlq_arn.rsplit(':').next().unwrap_or_default();
    let dlq_url = sqs
        .get_queue_url()
        .queue_name(dlq_name)
        .send()
        .await
        .map_err(|e| fail("GetQueueUrl", 0, &e))?
        .queue_url
        .ok_or_else(|| ReplayError::NoDeadLetterQueue(queue_url.to_owned()))?;
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&dlq_url)
            .max_number_of_messages(10)
            // Long polling asks every SQS server, so an empty answer means an empty queue.
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| fail("ReceiveMessage", moved, &e))?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(moved);
        }
        let sends: Vec<BatchEntry> = messages
            .iter()
            .map(|m| {
                BatchEntry::new(m.body().unwrap_or_default())
                    .with_attributes(m.message_attributes.clone())
            })
            .collect();
        let sent = send_batches(sqs, queue_url, &sends)
            .await
            .map_err(|e| fail("SendMessageBatch", moved, &e))?;
        // Delete only what was sent, so a refused entry stays in the dead-letter queue.
        let refused: Vec<usize> = sent.failed.iter().map(|f| f.index).collect();
        let mut deletes = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            if refused.contains(&i) {
                continue;
            }
            replayed(&Replayed {
                message_id: m.message_id().unwrap_or("-").to_owned(),
                poison_reason: m
                    .message_attributes()
                    .and_then(|a| a.get(mailgate_aws::POISON_REASON_ATTRIBUTE))
                    .and_then(|v| v.string_value())
                    .map(str::to_owned),
            });
            let entry = DeleteMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .build()
                .map_err(|e| fail("DeleteMessageBatch", moved, &e))?;
            deletes.push(entry);
        }
        let delivered = deletes.len();
        if !deletes.is_empty() {
            sqs.delete_message_batch()
                .queue_url(&dlq_url)
                .set_entries(Some(deletes))
                .send()
                .await
                .map_err(|e| fail("DeleteMessageBatch", moved, &e))?;
        }
        moved += delivered;
        if let Err(e) = sent.all_sent(messages.len()) {
            return Err(fail("SendMessageBatch", moved, &e));
        }
    }
}

/// One input line of `mailgate-admin classify`; every field may be missing, null or empty.
#[derive(Debug, serde::Deserialize)]
struct BounceLine {
    #[serde(default)]
    diagnostic: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    reply_code: Option<serde_json::Value>,
}

/// Classifies one JSON line into the JSON line to print: the verdict, or `{"error": …}` when the
/// line is not a bounce description (the caller goes on with the next line).
pub fn classify_line(line: &str) -> String {
    match parse_bounce_line(line) {
        Ok(verdict) => serde_json::json!({
            "kind": verdict.kind,
            "cause": verdict.cause,
            "suppress": verdict.suppress,
        })
        .to_string(),
        Err(message) => serde_json::json!({ "error": message }).to_string(),
    }
}

fn parse_bounce_line(line: &str) -> Result<mailgate_core::BounceClassification, String> {
    let input: BounceLine = serde_json::from_str(line).map_err(|e| e.to_string())?;
    let status = match input.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(EnhancedStatus::parse(text).map_err(|e| e.to_string())?),
    };
    let reply_code = match input.reply_code {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => Some(
            n.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| format!("reply_code {n} is not an SMTP reply code"))?,
        ),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(
            s.trim()
                .parse::<u16>()
                .map_err(|_| format!("reply_code {s:?} is not an SMTP reply code"))?,
        ),
        Some(other) => return Err(format!("reply_code {other} is not an SMTP reply code")),
    };
    let evidence = BounceEvidence {
        diagnostic: input.diagnostic.as_deref().filter(|d| !d.is_empty()),
        status,
        reply_code,
    };
    Ok(classify_bounce(&evidence))
}

/// Runs `classify` over every line of `input` (blank lines are skipped).
pub fn classify_lines(
    input: impl std::io::BufRead,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        writeln!(out, "{}", classify_line(&line))?;
    }
    Ok(())
}

async fn run_sends(
    command: SendsCommand,
    dynamodb: &Client,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let controls = |table: ControlTableArg| DynamoDbSendControls::new(dynamodb.clone(), table.name);
    match command {
        SendsCommand::Pause { table } => {
            controls(table).set_bulk_paused(true, now()).await?;
            writeln!(
                out,
                "bulk sends: paused (new bulk messages are held; transactional mail is not)"
            )?;
        }
        SendsCommand::Resume {
            table,
            domain,
            provider,
        } => {
            let controls = controls(table);
            if domain.is_none() {
                controls.set_bulk_paused(false, now()).await?;
            }
            let mut lifted = 0;
            for pause in controls.guardrail_pauses().await? {
                let wanted = domain
                    .as_deref()
                    .is_none_or(|d| d.eq_ignore_ascii_case(&pause.sending_domain))
                    && provider.is_none_or(|p| p == pause.provider);
                if wanted
                    && controls
                        .resume_guardrail(pause.provider, &pause.sending_domain, now_ms())
                        .await?
                {
                    writeln!(
                        out,
                        "guardrail lifted: bulk via {} from {} (its window starts afresh)",
                        pause.provider, pause.sending_domain
                    )?;
                    lifted += 1;
                }
            }
            if domain.is_some() {
                writeln!(
                    out,
                    "{lifted} guardrail pause(s) lifted; the sweeper releases their paused messages on its next tick"
                )?;
            } else {
                writeln!(
                    out,
                    "bulk sends: running (the sweeper releases paused messages on its next tick)"
                )?;
            }
        }
        SendsCommand::Status {
            table,
            messages_table,
        } => {
            let controls = controls(table);
            let pause = controls.bulk_pause().await?;
            let state = if pause.paused { "paused" } else { "running" };
            match pause.updated_at {
                Some(at) => writeln!(
                    out,
                    "bulk sends: {state} (since {})",
                    timestamp(at.to_datetime())
                )?,
                None => writeln!(out, "bulk sends: {state}")?,
            }
            for g in controls.guardrail_pauses().await? {
                let r = &g.reason;
                let percent = |v: &serde_json::Value| {
                    v.as_f64()
                        .map_or_else(|| "?".to_owned(), |v| format!("{:.3}%", v * 100.0))
                };
                let hour = |v: &serde_json::Value| {
                    v.as_i64()
                        .and_then(|h| {
                            OffsetDateTime::from_unix_timestamp(h.saturating_mul(3600)).ok()
                        })
                        .map_or_else(|| "?".to_owned(), timestamp)
                };
                let since = r["tripped_at_ms"].as_i64().map_or_else(
                    || "?".to_owned(),
                    |ms| timestamp(UnixMillis(ms).to_datetime()),
                );
                writeln!(
                    out,
                    "guardrail: bulk via {} from {} paused since {since}: {} rate {} >= {} ({} of {} recipients sent, window of the last {} sends from {} to {})",
                    g.provider,
                    g.sending_domain,
                    r["rate"].as_str().unwrap_or("?"),
                    percent(&r["value"]),
                    percent(&r["threshold"]),
                    r["events"],
                    r["volume"],
                    r["window_sends"],
                    hour(&r["window_from_hour"]),
                    hour(&r["window_to_hour"]),
                )?;
            }
            if let Some(table) = messages_table {
                let messages = DynamoDbMessages::new(dynamodb.clone(), table);
                let paused = messages.count_held(ReleaseQueue::PausedBulk).await?;
                let scheduled = messages.count_held(ReleaseQueue::Scheduled).await?;
                writeln!(out, "paused messages:    {paused}")?;
                writeln!(out, "scheduled messages: {scheduled}")?;
            }
        }
    }
    Ok(())
}

async fn run_keys(
    command: KeysCommand,
    dynamodb: &Client,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let store = |table: TableArg| DynamoDbApiKeys::new(dynamodb.clone(), table.name);
    match command {
        KeysCommand::Create {
            label,
            scopes,
            environment,
            table,
        } => {
            let secret = ApiKeySecret::generate(environment);
            let record = ApiKeyRecord::new(&secret, label, environment, scopes, now());
            store(table).create(&record).await?;
            writeln!(out, "id:          {}", record.id)?;
            writeln!(out, "label:       {}", record.label)?;
            writeln!(out, "environment: {}", record.environment)?;
            writeln!(out, "scopes:      {}", record.scopes)?;
            writeln!(out, "key:         {}", secret.expose())?;
            writeln!(out)?;
            writeln!(
                out,
                "Store the key now: it is shown only this once (mailgate keeps only its SHA-256 hash)."
            )?;
        }
        KeysCommand::List { table } => {
            let store = store(table);
            let records = store.list().await?;
            if records.is_empty() {
                writeln!(out, "no API keys in {}", store.table())?;
                return Ok(());
            }
            let rows: Vec<[String; 6]> = records
                .iter()
                .map(|r| {
                    [
                        r.id.to_string(),
                        r.label.to_string(),
                        r.environment.to_string(),
                        r.scopes.to_string(),
                        timestamp(r.created_at),
                        r.revoked_at.map_or_else(|| "-".to_owned(), timestamp),
                    ]
                })
                .collect();
            let header = ["ID", "LABEL", "ENV", "SCOPES", "CREATED", "REVOKED"].map(String::from);
            let mut widths = header.clone().map(|h| h.chars().count());
            for row in &rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            for row in std::iter::once(&header).chain(&rows) {
                let line: Vec<String> = row
                    .iter()
                    .zip(widths)
                    .map(|(cell, w)| format!("{cell:<w$}"))
                    .collect();
                writeln!(out, "{}", line.join("  ").trim_end())?;
            }
        }
        KeysCommand::Revoke { id, table } => match store(table).revoke(&id, now()).await? {
            Revocation::Revoked(r) => writeln!(
                out,
                "revoked {} at {}",
                describe(&r),
                r.revoked_at.map_or_else(String::new, timestamp)
            )?,
            Revocation::AlreadyRevoked(r) => writeln!(
                out,
                "{} was already revoked at {}",
                describe(&r),
                r.revoked_at.map_or_else(String::new, timestamp)
            )?,
        },
        KeysCommand::Seed {
            key,
            label,
            scopes,
            environment,
            table,
        } => {
            let seeded = store(table)
                .seed(&key, label, environment, scopes, now())
                .await?;
            let what = match seeded {
                Seeded::Created(_) => "created",
                Seeded::Updated(_) => "updated",
                Seeded::Unchanged(_) => "unchanged",
            };
            writeln!(out, "{what} {}", describe(seeded.record()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("mailgate-admin").chain(args.iter().copied()))
    }

    #[test]
    fn create_reads_label_scopes_and_environment() {
        let cli = parse(&[
            "keys",
            "create",
            "--label",
            "ci",
            "--scopes",
            "send,read",
            "--environment",
            "test",
            "--table",
            "t",
        ])
        .unwrap();
        match cli.command {
            Command::Keys(KeysCommand::Create {
                label,
                scopes,
                environment,
                table,
            }) => {
                assert_eq!(label.as_str(), "ci");
                assert_eq!(scopes.to_string(), "send,read");
                assert_eq!(environment, KeyEnvironment::Test);
                assert_eq!(table.name, "t");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn sends_commands_read_the_control_and_messages_tables() {
        match parse(&["sends", "pause", "--table", "c"]).unwrap().command {
            Command::Sends(SendsCommand::Pause { table }) => assert_eq!(table.name, "c"),
            other => panic!("unexpected {other:?}"),
        }
        match parse(&["sends", "status", "--table", "c", "--messages-table", "m"])
            .unwrap()
            .command
        {
            Command::Sends(SendsCommand::Status {
                table,
                messages_table,
            }) => {
                assert_eq!(table.name, "c");
                assert_eq!(messages_table.as_deref(), Some("m"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn classify_writes_one_line_per_input_and_an_error_for_a_malformed_one() {
        let input = concat!(
            r#"{"diagnostic":"550 5.1.1 <a@example.com>... User unknown","status":"5.1.1","reply_code":550}"#,
            "\n",
            "not json\n",
            "\n",
            r#"{"diagnostic":"","status":"","reply_code":""}"#,
            "\n",
            r#"{"status":"4.2.2","reply_code":"452"}"#,
            "\n",
            r#"{"status":"5.x"}"#,
            "\n",
        );
        let mut out = Vec::new();
        classify_lines(input.as_bytes(), &mut out).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 5);
        assert_eq!(
            lines[0],
            serde_json::json!({"kind": "hard", "cause": "user_unknown", "suppress": true})
        );
        assert!(lines[1]["error"].is_string());
        assert_eq!(
            lines[2],
            serde_json::json!({"kind": "undetermined", "cause": "unknown", "suppress": false})
        );
        assert_eq!(
            lines[3],
            serde_json::json!({"kind": "soft", "cause": "mailbox_full", "suppress": false})
        );
        assert!(lines[4]["error"].as_str().unwrap().contains("5.x"));
    }

    #[test]
    fn all_means_every_scope() {
        assert_eq!(parse_scopes("all").unwrap(), Scopes::all());
    }

    #[test]
    fn bad_scopes_environments_and_ids_are_usage_errors() {
        for args in [
            &[
                "keys",
                "create",
                "--label",
                "x",
                "--scopes",
                "send,admin",
                "--table",
                "t",
            ][..],
            &[
                "keys",
                "create",
                "--label",
                "x",
                "--scopes",
                "send",
                "--environment",
                "prod",
                "--table",
                "t",
            ],
            &["keys", "revoke", "msg_123", "--table", "t"],
            &[
                "keys",
                "seed",
                "--key",
                "two words",
                "--label",
                "x",
                "--scopes",
                "all",
                "--table",
                "t",
            ],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), i32::from(EXIT_USAGE), "{args:?}");
        }
        let err = parse(&[
            "keys",
            "create",
            "--label",
            "x",
            "--scopes",
            "send,admin",
            "--table",
            "t",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown scope \"admin\""), "{err}");
    }

    #[test]
    fn store_failures_map_to_their_exit_codes() {
        let id = ApiKeyId::generate();
        assert_eq!(
            AdminError::from(ApiKeyStoreError::UnknownId(id)).exit_code(),
            EXIT_UNKNOWN_KEY
        );
        assert_eq!(
            AdminError::from(ApiKeyStoreError::TableNotFound("t".into())).exit_code(),
            EXIT_TABLE_NOT_FOUND
        );
        assert_eq!(
            AdminError::from(ApiKeyStoreError::AlreadyExists).exit_code(),
            EXIT_FAILURE
        );
    }

    #[test]
    fn endpoints_add_reads_url_and_events_and_refuses_unknown_types() {
        match parse(&[
            "endpoints",
            "add",
            "--url",
            "https://app.example.com/h",
            "--events",
            "email.delivered,email.bounced",
            "--table",
            "e",
        ])
        .unwrap()
        .command
        {
            Command::Endpoints(EndpointsCommand::Add { url, events, table }) => {
                assert_eq!(url, "https://app.example.com/h");
                assert_eq!(events.to_string(), "email.delivered,email.bounced");
                assert_eq!(table.name, "e");
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = parse(&[
            "endpoints",
            "add",
            "--url",
            "https://a.example/",
            "--events",
            "delivered",
            "--table",
            "e",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("email.delivered"), "{err}");
        assert!(parse(&["endpoints", "remove", "key_x", "--table", "e"]).is_err());
    }

    #[test]
    fn a_replayed_message_is_named_with_its_poison_reason() {
        let poison = Replayed {
            message_id: "m-1".into(),
            poison_reason: Some("unreadable queue message: expected value".into()),
        };
        assert_eq!(
            replayed_line(&poison),
            "replayed m-1: parked as poison: unreadable queue message: expected value"
        );
        let redriven = Replayed {
            message_id: "m-2".into(),
            poison_reason: None,
        };
        assert_eq!(
            replayed_line(&redriven),
            "replayed m-2: moved after the redrive count (no poison reason)"
        );
    }

    #[test]
    fn dlq_replay_names_one_of_the_three_queues() {
        match parse(&["dlq", "replay", "outbound"]).unwrap().command {
            Command::Dlq(DlqCommand::Replay { queue, queue_url }) => {
                assert_eq!(queue, QueueRole::Outbound);
                assert_eq!(queue_url, None);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse(&["dlq", "replay", "nope"]).is_err());
    }
}
