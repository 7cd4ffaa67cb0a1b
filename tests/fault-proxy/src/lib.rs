//! Fault injection on the real wire, for integration and chaos tests.
//!
//! [`FaultProxy`] is an HTTP proxy bound to `127.0.0.1` on a free port that sits between the AWS
//! SDK clients and the local emulator (moto): the SDK's endpoint is [`FaultProxy::url`], the proxy
//! forwards to the emulator's URL (`MAILGATE_TEST_AWS_ENDPOINT` under `make test`). Per AWS
//! operation ([`Op`]: DynamoDB and SQS from `X-Amz-Target`, SES v2 from the REST method and path,
//! query-protocol services from the `Action` form parameter) the test installs rules:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mailgate_fault_proxy::{FaultProxy, Fault, Op, When};
//! let proxy = FaultProxy::start("http://127.0.0.1:5000").await?;
//! // The second TransactWriteItems call answers 503; every other call goes through.
//! proxy.fail(Op::dynamodb("TransactWriteItems"), Fault::Status503, When::Nth(2));
//! // 10 % of every SQS call, reproducibly, is throttled.
//! proxy.fail(mailgate_fault_proxy::Service::Sqs, Fault::Throttle, When::Random { percent: 10, seed: 42 });
//! // ... run the code under test with its SDK endpoint at proxy.url() ...
//! let figures = proxy.op_stats(&Op::dynamodb("TransactWriteItems"));
//! println!("{} calls, {} faults", figures.calls, figures.faults);
//! # Ok(()) }
//! ```
//!
//! Faults ([`Fault`]) answer in the service's own protocol, shaped as the SDK parses them:
//! 500, 503, throttling (DynamoDB `ProvisionedThroughputExceededException` or
//! `ThrottlingException`, SQS `RequestThrottled` with `x-amzn-query-error`, SES v2 429
//! `TooManyRequestsException`, query `Throttling`), DynamoDB `ConditionalCheckFailedException` and
//! `TransactionCanceledException` with one cancellation reason per item; or they act on the
//! connection: a delay before forwarding, forward-then-drop (the emulator applied the write, the
//! client gets a transport error: the ambiguous case), or a drop without forwarding. Rules fire on
//! the Nth selected call, the first N, every call, or at a seeded random rate ([`When`]).
//!
//! Whatever the rules, the proxy does what SQS does and moto does not: it refuses message bodies
//! with characters outside `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`
//! with 400 `InvalidMessageContents` (`SendMessage`), or with a per-entry `BatchResultErrorEntry`
//! (`SendMessageBatch`, the other entries are still sent). This covers the SDK's JSON protocol
//! (`AmazonSQS.*` targets), which the workspace's `aws-sdk-sqs` speaks.
//!
//! Remember the SDK retries: standard mode makes up to 3 attempts on 5xx, throttling and transport
//! errors (each attempt is a call to the proxy), so tests set the retry configuration they mean.
//!
//! [`MisbehavingProvider`] serves the provider HTTP clients' failure paths: a local server that
//! hangs, resets the connection after reading the request, or answers after a delay.

mod fault;
mod op;
mod provider;
mod proxy;
mod serve;
pub mod sqs;

pub use fault::{Fault, When};
pub use op::{Op, OpMatch, Service, identify};
pub use provider::{MisbehavingProvider, Misbehaviour};
pub use proxy::{FaultProxy, OpStats};
