//! Counting the AWS calls a function makes, on the wire: an SDK interceptor that records every
//! HTTP request a DynamoDB or SQS client transmits (retries count too: they are calls), by
//! service and operation. Benchmarks and tests build the function's clients with it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use mailgate_aws::AwsClients;

/// `(service, operation)`, e.g. `("dynamodb", "PutItem")`.
pub type Operation = (&'static str, String);

/// The calls counted so far, shared by the interceptors of one set of clients.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<BTreeMap<Operation, u64>>>);

impl CallLog {
    /// Takes the counts so far and starts again from zero.
    pub fn take(&self) -> Calls {
        Calls(std::mem::take(
            &mut *self.0.lock().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

#[derive(Debug, Clone)]
struct CallCounter {
    service: &'static str,
    log: CallLog,
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "MailgateCallCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        // Both services speak the AWS JSON protocol: `X-Amz-Target: <service>.<Operation>`.
        let operation = context
            .request()
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or("unknown")
            .to_owned();
        *self
            .log
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((self.service, operation))
            .or_default() += 1;
        Ok(())
    }
}

/// Clients for `sdk` whose DynamoDB and SQS calls are counted in the returned log.
pub fn counted_clients(sdk: &SdkConfig) -> (AwsClients, CallLog) {
    let log = CallLog::default();
    let counter = |service| CallCounter {
        service,
        log: log.clone(),
    };
    let clients = AwsClients {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .interceptor(counter("dynamodb"))
                .build(),
        ),
        sqs: aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk)
                .interceptor(counter("sqs"))
                .build(),
        ),
        ses: aws_sdk_sesv2::Client::new(sdk),
        sdk: sdk.clone(),
    };
    (clients, log)
}

/// Calls counted over some span, by service and operation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calls(pub BTreeMap<Operation, u64>);

/// DynamoDB operations that write.
const WRITES: &[&str] = &[
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "TransactWriteItems",
    "BatchWriteItem",
];

impl Calls {
    /// Calls to `service`.
    pub fn total(&self, service: &str) -> u64 {
        self.0
            .iter()
            .filter(|((s, _), _)| *s == service)
            .map(|(_, n)| n)
            .sum()
    }

    /// DynamoDB calls that write.
    pub fn dynamodb_writes(&self) -> u64 {
        self.0
            .iter()
            .filter(|((s, op), _)| *s == "dynamodb" && WRITES.contains(&op.as_str()))
            .map(|(_, n)| n)
            .sum()
    }

    /// `dynamodb PutItem x2, sqs SendMessageBatch x1`, or `no calls`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|((service, op), n)| format!("{service} {op} x{n}"))
            .collect();
        if parts.is_empty() {
            "no calls".to_owned()
        } else {
            parts.join(", ")
        }
    }
}
