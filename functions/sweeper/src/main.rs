//! `sweeper`: wiring only; the handler is `sweeper::Sweeper`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailgate_aws::AwsClients;
use sweeper::{Config, ScheduledTick, Sweeper};

#[tokio::main]
async fn main() -> Result<(), Error> {
    mailgate_lambda::init_tracing();
    let sweeper = Sweeper::new(Config::from_env()?, AwsClients::from_env().await);
    let sweeper = &sweeper;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ScheduledTick>| async move {
            sweeper.handle(event.payload).await.map_err(Error::from)
        },
    ))
    .await
}
