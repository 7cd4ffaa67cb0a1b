//! `mailgate-local`: provisions the local AWS stack from the SAM template and runs the local
//! triggers. Used by `make dev` and `make test`; see the README.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use mailgate_local::{Invoker, StackSpec, Template, TriggerRunner, provision};

#[derive(Parser)]
#[command(version, about = "The local AWS stack of mailgate")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct StackArgs {
    /// The SAM template to read.
    #[arg(long, default_value = "infra/template.yaml")]
    template: PathBuf,
    /// The Environment parameter (prefixes every resource name).
    #[arg(long, env = "MAILGATE_ENVIRONMENT", default_value = "local")]
    environment: String,
    /// Other template parameters, as NAME=VALUE.
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// The SES domain identity to verify so any sender at it works.
    #[arg(long, env = "MAILGATE_SES_IDENTITY", default_value = "example.com")]
    ses_identity: String,
}

#[derive(Subcommand)]
enum Command {
    /// Creates every table, queue and the SES identity (idempotent) and prints the functions.
    Provision {
        #[command(flatten)]
        stack: StackArgs,
        /// Writes the functions' environment here (for `cargo lambda watch --env-file`).
        #[arg(long)]
        env_file: Option<PathBuf>,
    },
    /// Delivers SQS batches and schedules to the functions until interrupted.
    Triggers {
        #[command(flatten)]
        stack: StackArgs,
        /// The Lambda invoke API (`cargo lambda watch`).
        #[arg(long, default_value = "http://127.0.0.1:9000")]
        invoke_url: String,
        /// Long-poll wait in seconds (0-20).
        #[arg(long, default_value_t = 20)]
        wait_seconds: i32,
    },
}

/// Puts the value of every function variable that the template points at an SSM parameter
/// (`ssm:<name>`) into the emulator's Parameter Store, taken from this process's environment
/// (`make dev` loads `local.env`), so the functions resolve their secrets locally exactly as they
/// do when deployed.
async fn seed_secret_references(
    sdk: &aws_config::SdkConfig,
    env: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let ssm = aws_sdk_ssm::Client::new(sdk);
    for (variable, value) in env {
        let Some(name) = value.strip_prefix("ssm:") else {
            continue;
        };
        match std::env::var(variable) {
            Ok(secret) if !secret.trim().is_empty() => {
                ssm.put_parameter()
                    .name(name)
                    .value(secret)
                    .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                    .overwrite(true)
                    .send()
                    .await
                    .with_context(|| format!("storing {variable} in SSM parameter {name}"))?;
                println!("secret {variable} stored in SSM parameter {name}");
            }
            _ => eprintln!(
                "warning: {variable} is not set, so the function reading SSM parameter {name} will not start (see local.env)"
            ),
        }
    }
    Ok(())
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {s:?}"))
}

async fn provision_stack(
    args: &StackArgs,
) -> anyhow::Result<(aws_config::SdkConfig, mailgate_local::LocalStack)> {
    let template = Template::load(&args.template)?;
    let mut parameters: BTreeMap<_, _> = args.params.iter().cloned().collect();
    parameters.insert("Environment".into(), args.environment.clone());
    parameters.insert("SesIdentity".into(), args.ses_identity.clone());
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        bail!(
            "AWS_ENDPOINT_URL is not set: refusing to provision against real AWS (use `sam deploy` there)"
        );
    }
    let spec = StackSpec {
        parameters,
        ses_identity: Some(args.ses_identity.clone()),
    };
    let stack = provision(&sdk, &template, &spec)
        .await
        .context("provisioning the local stack")?;
    Ok((sdk, stack))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    match Cli::parse().command {
        Command::Provision { stack, env_file } => {
            let (sdk, stack) = provision_stack(&stack).await?;
            println!(
                "local stack '{}': {} tables, {} queues, {} functions",
                stack.environment,
                stack.tables.len(),
                stack.queues.len(),
                stack.functions.len()
            );
            let (env, conflicts) = stack.merged_environment();
            for c in conflicts {
                eprintln!("warning: {c}");
            }
            seed_secret_references(&sdk, &env).await?;
            if let Some(path) = env_file {
                let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::Triggers {
            stack,
            invoke_url,
            wait_seconds,
        } => {
            let (sdk, stack) = provision_stack(&stack).await?;
            let runner = TriggerRunner::new(
                aws_sdk_sqs::Client::new(&sdk),
                Invoker::new(invoke_url),
                &stack,
            )
            .with_wait_seconds(wait_seconds);
            for s in runner.subscriptions() {
                println!("trigger: SQS {} -> {}", s.queue_url, s.function);
            }
            for (f, s) in runner.schedules() {
                println!("trigger: schedule {} -> {f}", s.expression);
            }
            runner
                .run(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await;
        }
    }
    Ok(())
}
