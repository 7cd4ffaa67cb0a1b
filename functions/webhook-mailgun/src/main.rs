//! `webhook-mailgun`: wiring only; the handler lives in `mailgate_lambda::webhook`.

use mailgate_core::ProviderId;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    mailgate_lambda::webhook::run(ProviderId::Mailgun).await
}
