//! `send-worker`: wiring only; the cold start and the handler are in the library
//! (`send_worker::run`, `send_worker::Function`).

use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    send_worker::run().await
}
