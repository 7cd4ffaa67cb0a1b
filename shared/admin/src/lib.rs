//! `mailgate-admin`: the operator's commands, as a library so tests run them against the
//! emulator exactly as the binary does.
//!
//! ```text
//! mailgate-admin keys create --label L --scopes send,read [--environment test|live]
//! mailgate-admin keys list
//! mailgate-admin keys revoke key_…
//! mailgate-admin keys seed --key K --label L --scopes all
//! mailgate-admin sends pause|resume|status
//! ```
//!
//! Every command works against the AWS endpoint of the standard SDK chain (`AWS_ENDPOINT_URL`
//! for the local emulator) and the table named by `--table` or `API_KEYS_TABLE`. Exit codes:
//! `sends` commands use `--table` or `CONTROL_TABLE` (and, for `status`'s counts, `--messages-table`
//! or `MESSAGES_TABLE`). Exit codes: 0 success, 1 DynamoDB failed, 2 usage (unknown scope or environment, malformed id or key,
//! no table given), 3 no key with that id, 4 the table does not exist.

use std::io::Write;

use aws_sdk_dynamodb::Client;
use clap::{Args, Parser, Subcommand};
use mailgate_aws::{
    ApiKeyStoreError, ControlsError, DynamoDbApiKeys, DynamoDbMessages, DynamoDbSendControls,
    MessageStoreError, Revocation, Seeded,
};
use mailgate_core::{
    ApiKeyId, ApiKeyLabel, ApiKeyRecord, ApiKeySecret, BounceEvidence, EnhancedStatus,
    KeyEnvironment, ReleaseQueue, Scopes, ScopesError, classify_bounce,
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
    /// Classifies bounces: JSON lines `{"diagnostic","status","reply_code"}` on stdin, one
    /// `{"kind","cause","suppress"}` line per input on stdout.
    Classify,
}

/// `mailgate-admin sends …`.
#[derive(Debug, Subcommand)]
pub enum SendsCommand {
    /// Holds new bulk messages as `paused` (transactional mail is never paused).
    Pause {
        #[command(flatten)]
        table: ControlTableArg,
    },
    /// Lets bulk messages go again; the sweeper releases the paused ones on its next tick.
    Resume {
        #[command(flatten)]
        table: ControlTableArg,
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
        /// Comma-separated scopes: send, read, suppressions:write (or `all`).
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
        /// Comma-separated scopes: send, read, suppressions:write (or `all`).
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
    /// Standard output could not be written.
    #[error("could not write the output: {0}")]
    Output(#[from] std::io::Error),
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
            AdminError::TableNotFound(_) | AdminError::ControlTableNotFound(_) => {
                EXIT_TABLE_NOT_FOUND
            }
            AdminError::UnknownKey(_) => EXIT_UNKNOWN_KEY,
            AdminError::Store(_)
            | AdminError::Controls(_)
            | AdminError::Messages(_)
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

/// Runs one command against DynamoDB, writing its report to `out`.
pub async fn run(cli: Cli, dynamodb: &Client, out: &mut impl Write) -> Result<(), AdminError> {
    match cli.command {
        Command::Keys(command) => run_keys(command, dynamodb, out).await,
        Command::Sends(command) => run_sends(command, dynamodb, out).await,
        Command::Classify => classify_lines(std::io::stdin().lock(), out),
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
        SendsCommand::Resume { table } => {
            controls(table).set_bulk_paused(false, now()).await?;
            writeln!(
                out,
                "bulk sends: running (the sweeper releases paused messages on its next tick)"
            )?;
        }
        SendsCommand::Status {
            table,
            messages_table,
        } => {
            let pause = controls(table).bulk_pause().await?;
            let state = if pause.paused { "paused" } else { "running" };
            match pause.updated_at {
                Some(at) => writeln!(
                    out,
                    "bulk sends: {state} (since {})",
                    timestamp(at.to_datetime())
                )?,
                None => writeln!(out, "bulk sends: {state}")?,
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
}
