//! `webhook-smtp2go`: wiring only; the handler lives in `mailgate_lambda::webhook`.

use lambda_http::{Error, Request, service_fn};
use mailgate_aws::AwsClients;
use mailgate_core::ProviderId;
use mailgate_lambda::webhook::{WebhookConfig, WebhookFunction};

#[tokio::main]
async fn main() -> Result<(), Error> {
    mailgate_lambda::init_tracing();
    let config = WebhookConfig::from_env(ProviderId::Smtp2go)?;
    let function = WebhookFunction::new(config, AwsClients::from_env().await);
    let function = &function;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(function.handle(request).await)
    }))
    .await
}
