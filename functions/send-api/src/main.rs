//! `send-api`: wiring only; the cold start and the handler are in the library
//! (`send_api::run`, `send_api::SendApi`).

use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    send_api::run().await
}
