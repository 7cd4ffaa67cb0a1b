//! `mailgate-admin domains add|check|list` and `mailgate-admin templates list|render`: the
//! operator's side of sender domains (SES identities, DNS check) and templates, through the
//! same services as the send API, so the answers match `/v1/domains` and `/v1/templates`.

use std::io::Write;
use std::sync::Arc;

use clap::{Args, Subcommand};
use mailgate_aws::AwsClients;
use mailgate_core::KeyEnvironment;
use mailgate_services::domains::SenderDomains;
use mailgate_services::templates::Templates;
use serde_json::{Value, json};

use crate::AdminError;

/// `mailgate-admin domains …`.
#[derive(Debug, Subcommand)]
pub enum DomainsCommand {
    /// Creates the SES identity with Easy DKIM (and a custom MAIL FROM domain when given) and
    /// prints the DNS records to publish.
    Add {
        /// The domain, e.g. mail.example.com.
        domain: String,
        /// The custom MAIL FROM subdomain, e.g. `bounce` (giving bounce.<domain>).
        #[arg(long, value_name = "LABEL")]
        mail_from_subdomain: Option<String>,
    },
    /// Prints SES's verification and DKIM status and checks every record in DNS, saying what
    /// is missing or wrong.
    Check {
        /// The domain.
        domain: String,
        #[command(flatten)]
        dns: DnsArg,
    },
    /// Lists the domain identities.
    List,
}

/// The DNS server to check through.
#[derive(Debug, Args)]
pub struct DnsArg {
    /// `IP` or `IP:port` of the DNS server to ask; the system's resolver when not given.
    #[arg(long = "dns-resolver", value_name = "ADDR", env = "DNS_RESOLVER")]
    pub resolver: Option<String>,
}

/// `mailgate-admin templates …`.
#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Lists the templates of an environment: id, name, latest and published version.
    List {
        /// `test` or `live`: the environment of the keys that see them.
        #[arg(long, default_value = "live")]
        environment: KeyEnvironment,
        #[command(flatten)]
        table: TemplatesTableArg,
    },
    /// Renders a template with data and prints the subject, text and HTML.
    Render {
        /// The template's id (`tpl_…`).
        id: String,
        /// The version (default: the published one).
        #[arg(long)]
        version: Option<u32>,
        /// The data, as a JSON object.
        #[arg(long, default_value = "{}")]
        data: String,
        /// `test` or `live`.
        #[arg(long, default_value = "live")]
        environment: KeyEnvironment,
        #[command(flatten)]
        table: TemplatesTableArg,
    },
}

/// The table the templates live in.
#[derive(Debug, Args)]
pub struct TemplatesTableArg {
    /// The templates table (the stack's `mailgate-<env>-templates`).
    #[arg(long = "table", value_name = "TABLE", env = "TEMPLATES_TABLE")]
    pub name: String,
}

fn refused(status: u16, code: &'static str, message: String) -> AdminError {
    AdminError::Refused {
        status,
        code,
        message,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_records(out: &mut impl Write, records: &[Value]) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            let value = match r["priority"].as_u64() {
                Some(p) => format!("{p} {}", text(&r["value"])),
                None => text(&r["value"]),
            };
            vec![
                text(&r["purpose"]),
                text(&r["type"]),
                text(&r["name"]),
                value,
            ]
        })
        .collect();
    crate::print_table(out, &["PURPOSE", "TYPE", "NAME", "VALUE"], &rows)
}

/// Runs a `domains` command.
pub async fn run_domains(
    command: DomainsCommand,
    clients: &AwsClients,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let region = clients
        .ses
        .config()
        .region()
        .map_or_else(|| "us-east-1".to_owned(), |r| r.to_string());
    let resolver = match &command {
        DomainsCommand::Check { dns, .. } => mailgate_aws::parse_resolver(dns.resolver.as_deref())
            .map_err(|e| refused(400, "invalid_dns_resolver", e.to_string()))?,
        _ => None,
    };
    let service = SenderDomains::new(
        Arc::new(mailgate_aws::SesIdentities::new(clients.ses.clone())),
        Arc::new(mailgate_aws::HickoryDns::new(resolver)),
        region,
    );
    let failed =
        |f: mailgate_services::domains::DomainFailure| refused(f.status, f.code, f.message);
    match command {
        DomainsCommand::Add {
            domain,
            mail_from_subdomain,
        } => {
            let mut body = json!({ "domain": domain });
            if let Some(sub) = mail_from_subdomain {
                body["mail_from_subdomain"] = json!(sub);
            }
            let created = service
                .create(body.to_string().as_bytes())
                .await
                .map_err(failed)?;
            writeln!(out, "domain:       {}", text(&created["domain"]))?;
            writeln!(
                out,
                "verification: {}",
                text(&created["verification_status"])
            )?;
            writeln!(out, "publish these DNS records:")?;
            print_records(
                out,
                created["records"].as_array().map_or(&[], Vec::as_slice),
            )?;
            for r in created["records"].as_array().into_iter().flatten() {
                if let Some(advice) = r["advice"].as_str() {
                    writeln!(out, "note ({}): {advice}", text(&r["purpose"]))?;
                }
            }
            for note in created["notes"].as_array().into_iter().flatten() {
                writeln!(out, "note: {}", text(note))?;
            }
        }
        DomainsCommand::Check { domain, .. } => {
            let checked = service.check(&domain).await.map_err(failed)?;
            writeln!(out, "domain:       {}", text(&checked["domain"]))?;
            writeln!(
                out,
                "verification: {}",
                text(&checked["verification_status"])
            )?;
            writeln!(out, "dkim:         {}", text(&checked["dkim"]["status"]))?;
            let rows: Vec<Vec<String>> = checked["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| {
                    vec![
                        text(&c["status"]),
                        text(&c["purpose"]),
                        text(&c["type"]),
                        text(&c["name"]),
                    ]
                })
                .collect();
            crate::print_table(out, &["STATUS", "PURPOSE", "TYPE", "NAME"], &rows)?;
            let problems: Vec<String> = checked["problems"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            if problems.is_empty() {
                writeln!(
                    out,
                    "ready: every record is published and SES has verified the domain"
                )?;
            } else {
                writeln!(out, "not ready:")?;
                for p in problems {
                    writeln!(out, "- {p}")?;
                }
            }
        }
        DomainsCommand::List => {
            let listed = service.list().await.map_err(failed)?;
            let rows: Vec<Vec<String>> = listed["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    vec![
                        text(&d["domain"]),
                        text(&d["verification_status"]),
                        text(&d["sending_enabled"]),
                    ]
                })
                .collect();
            crate::print_table(out, &["DOMAIN", "VERIFICATION", "SENDING"], &rows)?;
        }
    }
    Ok(())
}

/// Runs a `templates` command.
pub async fn run_templates(
    command: TemplatesCommand,
    clients: &AwsClients,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let service = |table: TemplatesTableArg| {
        Templates::new(
            Arc::new(mailgate_aws::DynamoDbTemplates::new(
                clients.dynamodb.clone(),
                table.name,
            )),
            Arc::new(mailgate_core::SystemClock),
        )
    };
    let failed =
        |f: mailgate_services::templates::TemplateFailure| refused(f.status, f.code, f.message);
    match command {
        TemplatesCommand::List { environment, table } => {
            let templates = service(table);
            let mut rows = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = templates
                    .list(environment, 100, cursor.as_deref())
                    .await
                    .map_err(failed)?;
                rows.extend(page["data"].as_array().into_iter().flatten().map(|t| {
                    vec![
                        text(&t["id"]),
                        text(&t["name"]),
                        text(&t["latest_version"]),
                        text(&t["published_version"]),
                        text(&t["updated_at"]),
                    ]
                }));
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
            crate::print_table(
                out,
                &["ID", "NAME", "LATEST", "PUBLISHED", "UPDATED"],
                &rows,
            )?;
        }
        TemplatesCommand::Render {
            id,
            version,
            data,
            environment,
            table,
        } => {
            let data: Value = serde_json::from_str(&data)
                .map_err(|e| refused(400, "invalid_data", format!("--data is not JSON: {e}")))?;
            let mut body = json!({ "data": data });
            if let Some(v) = version {
                body["version"] = json!(v);
            }
            let rendered = service(table)
                .preview(environment, &id, body.to_string().as_bytes())
                .await
                .map_err(failed)?;
            writeln!(
                out,
                "template: {} version {}",
                text(&rendered["id"]),
                text(&rendered["version"])
            )?;
            writeln!(out, "subject:  {}", text(&rendered["subject"]))?;
            writeln!(out, "--- text")?;
            writeln!(out, "{}", text(&rendered["text"]))?;
            writeln!(out, "--- html")?;
            writeln!(out, "{}", text(&rendered["html"]))?;
        }
    }
    Ok(())
}
