//! `send-api`: wiring only; the handler is `send_api::SendApi`.

use lambda_http::{Error, Request, service_fn};
use mailgate_aws::AwsClients;
use send_api::{SendApi, SendApiConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    mailgate_lambda::init_tracing();
    let api = SendApi::new(SendApiConfig::from_env()?, AwsClients::from_env().await);
    let api = &api;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(api.handle(request).await)
    }))
    .await
}
