//! `hello-world`: the smallest `lambda_runtime` function, the yardstick `make bench` measures
//! every function's cold start against (`bench init_hello_world`). It is the hello-world of the
//! published Rust cold-start comparisons: a Tokio main, `lambda_runtime::run` and a handler that
//! answers a constant, nothing built before the runtime asks for the first event.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(hello)).await
}

/// Answers every event with the same greeting.
async fn hello(_event: LambdaEvent<Value>) -> Result<Value, Error> {
    Ok(json!({ "statusCode": 200, "body": "hello world" }))
}
