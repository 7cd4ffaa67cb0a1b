//! What a rule does to a request ([`Fault`]), when it fires ([`When`]), and the error answers in
//! each service's own protocol, shaped as the AWS SDK parses them.

use std::time::Duration;

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::op::Service;

/// What the proxy does instead of (or around) forwarding a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 500 `InternalServerError` (DynamoDB) / `InternalFailure` (SQS, SES, others); not forwarded.
    Status500,
    /// HTTP 503 `ServiceUnavailable`; not forwarded.
    Status503,
    /// The service's throttling error; not forwarded. DynamoDB: 400
    /// `ProvisionedThroughputExceededException`; SQS: 400 `RequestThrottled`; SES v2: 429
    /// `TooManyRequestsException`; query protocol: 400 `Throttling`.
    Throttle,
    /// DynamoDB only: 400 `ThrottlingException` (on-demand / control-plane throttling); not forwarded.
    ThrottlingException,
    /// DynamoDB only: 400 `ConditionalCheckFailedException` (PutItem, UpdateItem, DeleteItem); not forwarded.
    ConditionalCheckFailed,
    /// DynamoDB only: 400 `TransactionCanceledException` whose `CancellationReasons` has `code`
    /// (e.g. `ConditionalCheckFailed`, `TransactionConflict`) at item `index` of the request's
    /// `TransactItems` and `None` at every other item; not forwarded.
    TransactionCanceled {
        /// Position of the failing item in `TransactItems`.
        index: usize,
        /// Cancellation reason code of that item.
        code: String,
    },
    /// Wait this long, then forward and answer normally.
    Delay(Duration),
    /// Forward to the emulator, wait for its answer, then close the connection without answering:
    /// the write happened, the client sees a transport error.
    ForwardThenDrop,
    /// Close the connection without answering and without forwarding.
    Drop,
}

impl Fault {
    /// A transaction cancelled by the condition of item `index`.
    pub fn transaction_condition_failed(index: usize) -> Self {
        Fault::TransactionCanceled {
            index,
            code: "ConditionalCheckFailed".to_owned(),
        }
    }

    /// Whether this fault can be expressed for `service` (the DynamoDB-only errors cannot elsewhere).
    pub fn supported_by(&self, service: &Service) -> bool {
        match self {
            Fault::ThrottlingException
            | Fault::ConditionalCheckFailed
            | Fault::TransactionCanceled { .. } => *service == Service::DynamoDb,
            _ => true,
        }
    }
}

/// When a rule fires, counted over the calls it selects since it was installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// Only the Nth selected call (1-based).
    Nth(u64),
    /// The first N selected calls.
    FirstN(u64),
    /// Every selected call.
    Always,
    /// Each selected call with this probability (percent, 0–100), drawn from an RNG seeded with
    /// `seed`: the same sequence of calls gets the same faults on every run.
    Random {
        /// Probability in percent.
        percent: u8,
        /// RNG seed.
        seed: u64,
    },
}

/// A rule's firing state.
#[derive(Debug)]
pub(crate) struct Trigger {
    when: When,
    seen: u64,
    rng: Option<StdRng>,
}

impl Trigger {
    pub(crate) fn new(when: When) -> Self {
        let rng = match &when {
            When::Random { percent, seed } => {
                assert!(*percent <= 100, "When::Random percent must be 0..=100");
                Some(StdRng::seed_from_u64(*seed))
            }
            _ => None,
        };
        Self { when, seen: 0, rng }
    }

    /// Counts one selected call and says whether the rule fires for it.
    pub(crate) fn fires(&mut self) -> bool {
        self.seen += 1;
        match &self.when {
            When::Nth(n) => self.seen == *n,
            When::FirstN(n) => self.seen <= *n,
            When::Always => true,
            When::Random { percent, .. } => {
                let percent = u32::from(*percent);
                // One draw per call, fired or not, so the pattern depends only on the call order.
                self.rng
                    .as_mut()
                    .is_some_and(|rng| rng.random_range(0..100u32) < percent)
            }
        }
    }
}

/// The error answer for `fault` in `service`'s protocol, or `None` for faults that are not an
/// answer (delay, drop). `request` is the request body (for the transaction's item count).
pub(crate) fn error_response(
    fault: &Fault,
    service: &Service,
    request: &[u8],
) -> Option<Response<Body>> {
    let (status, code, message) = match fault {
        Fault::Status500 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            match service {
                Service::DynamoDb => "InternalServerError",
                _ => "InternalFailure",
            },
            "Injected fault: internal server error",
        ),
        Fault::Status503 => (
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "Injected fault: service unavailable",
        ),
        Fault::Throttle => match service {
            Service::DynamoDb => (
                StatusCode::BAD_REQUEST,
                "ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.",
            ),
            Service::Sqs => (
                StatusCode::BAD_REQUEST,
                "RequestThrottled",
                "Injected fault: request throttled",
            ),
            Service::SesV2 => (
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequestsException",
                "Injected fault: too many requests",
            ),
            Service::Other(_) => (
                StatusCode::BAD_REQUEST,
                "Throttling",
                "Injected fault: rate exceeded",
            ),
        },
        Fault::ThrottlingException => (
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Injected fault: throughput exceeds the current capacity for one or more global secondary indexes",
        ),
        Fault::ConditionalCheckFailed => (
            StatusCode::BAD_REQUEST,
            "ConditionalCheckFailedException",
            "The conditional request failed",
        ),
        Fault::TransactionCanceled { index, code } => {
            return Some(transaction_canceled(request, *index, code));
        }
        Fault::Delay(_) | Fault::ForwardThenDrop | Fault::Drop => return None,
    };
    Some(service_error(service, status, code, message))
}

/// An error answer in the service's protocol.
pub(crate) fn service_error(
    service: &Service,
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<Body> {
    match service {
        Service::DynamoDb => json_error(
            status,
            json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{code}"), "message": message}),
        ),
        Service::Sqs => {
            // SQS speaks awsJson1_0 in query-compatible mode: the SDK takes the error code from
            // `x-amzn-query-error` (`<code>;<Sender|Receiver>`) when present, else from `__type`.
            let fault_side = if status.is_server_error() {
                "Receiver"
            } else {
                "Sender"
            };
            let mut response = json_error(
                status,
                json!({"__type": format!("com.amazonaws.sqs#{code}"), "message": message}),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("{code};{fault_side}")) {
                response.headers_mut().insert("x-amzn-query-error", v);
            }
            response
        }
        Service::SesV2 => {
            let mut response = Response::new(Body::from(json!({"message": message}).to_string()));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(v) = HeaderValue::from_str(code) {
                headers.insert("x-amzn-errortype", v);
            }
            response
        }
        Service::Other(_) => {
            let side = if status.is_server_error() {
                "Receiver"
            } else {
                "Sender"
            };
            let xml = format!(
                "<ErrorResponse><Error><Type>{side}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
            );
            let mut response = Response::new(Body::from(xml));
            *response.status_mut() = status;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/xml"),
            );
            response
        }
    }
}

fn json_error(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.0"),
    );
    response
}

/// DynamoDB's cancellation: one reason per item of the request, in order.
fn transaction_canceled(request: &[u8], index: usize, code: &str) -> Response<Body> {
    let items = serde_json::from_slice::<Value>(request)
        .ok()
        .and_then(|v| {
            v.get("TransactItems")
                .and_then(Value::as_array)
                .map(Vec::len)
        })
        .unwrap_or(0)
        .max(index + 1);
    let reasons: Vec<Value> = (0..items)
        .map(|i| {
            if i == index {
                let message = if code == "ConditionalCheckFailed" {
                    "The conditional request failed".to_owned()
                } else {
                    format!("Injected fault: {code}")
                };
                json!({"Code": code, "Message": message})
            } else {
                json!({"Code": "None"})
            }
        })
        .collect();
    let codes: Vec<&str> = (0..items)
        .map(|i| if i == index { code } else { "None" })
        .collect();
    json_error(
        StatusCode::BAD_REQUEST,
        json!({
            "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
            "Message": format!(
                "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
                codes.join(", ")
            ),
            "CancellationReasons": reasons,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nth_and_first_n_count_selected_calls() {
        let mut nth = Trigger::new(When::Nth(2));
        assert_eq!(
            (0..4).map(|_| nth.fires()).collect::<Vec<_>>(),
            [false, true, false, false]
        );
        let mut first = Trigger::new(When::FirstN(2));
        assert_eq!(
            (0..4).map(|_| first.fires()).collect::<Vec<_>>(),
            [true, true, false, false]
        );
    }

    #[test]
    fn random_is_reproducible_from_its_seed_and_near_its_rate() {
        let pattern = |seed| {
            let mut t = Trigger::new(When::Random { percent: 10, seed });
            (0..1000).map(|_| t.fires()).collect::<Vec<_>>()
        };
        let a = pattern(7);
        assert_eq!(a, pattern(7));
        assert_ne!(a, pattern(8));
        let fired = a.iter().filter(|f| **f).count();
        assert!((50..=150).contains(&fired), "10 % of 1000 fired {fired}");
    }
}
