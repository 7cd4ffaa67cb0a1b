//! `event-processor`: wiring only; the handler is `event_processor::EventProcessor`.

use event_processor::{Config, EventProcessor};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailgate_aws::AwsClients;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    mailgate_lambda::init_tracing();
    let processor = EventProcessor::new(Config::from_env()?, AwsClients::from_env().await);
    let processor = &processor;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        processor.handle(event.payload).await.map_err(Error::from)
    }))
    .await
}
