//! `dispatcher`: wiring only; the handler is `dispatcher::Function`.

use aws_lambda_events::event::sqs::SqsEvent;
use dispatcher::{Config, Function};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailgate_aws::AwsClients;

#[tokio::main]
async fn main() -> Result<(), Error> {
    mailgate_lambda::init_tracing();
    let function = Function::new(Config::from_env()?, AwsClients::from_env().await)?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(function.handle(event.payload).await)
    }))
    .await
}
