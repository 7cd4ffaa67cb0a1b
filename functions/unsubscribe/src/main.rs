//! `unsubscribe`: wiring only; the cold start and the handler are in the library
//! (`unsubscribe::run`, `unsubscribe::UnsubscribeFunction`).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    unsubscribe::run().await
}
