//! `mailgate-admin`: wiring only; the commands live in the library (`mailgate_admin::run`).

use std::process::ExitCode;

use clap::Parser;
use mailgate_admin::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let sdk = mailgate_aws::load_sdk_config().await;
    let clients = mailgate_aws::AwsClients::new(&sdk);
    match mailgate_admin::run_with_clients(cli, &clients, &mut std::io::stdout()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
