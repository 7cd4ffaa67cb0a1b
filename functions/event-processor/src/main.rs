//! `event-processor`: wiring only; the handler is `event_processor::EventProcessor`.

use event_processor::{Config, EventProcessor};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailgate_aws::AwsClients;
use mailgate_core::unsubscribe::SIGNING_KEYS_VAR;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    mailgate_lambda::init_tracing();
    let sdk = mailgate_aws::function_sdk_config();
    // The keys that verify reply addresses are a secret reference when deployed.
    let secrets =
        mailgate_aws::resolve_from_env(&mailgate_aws::SsmClient::new(&sdk), &[SIGNING_KEYS_VAR])
            .await?;
    let config = Config::from_lookup(secrets.lookup_or_env())?;
    let processor = EventProcessor::new(config, AwsClients::new(&sdk));
    let processor = &processor;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        processor.handle(event.payload).await.map_err(Error::from)
    }))
    .await
}
