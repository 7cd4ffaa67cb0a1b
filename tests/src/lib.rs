//! Helpers for the integration tests: a private, uniquely named stack provisioned from
//! `infra/template.yaml` into the emulator that `make test` starts, plus fixtures, and the setup
//! the test files share: the send API and its keys ([`api`]), the team's app endpoint
//! ([`app_endpoint`]), provider APIs as local servers ([`providers`]), queue consumers' batches
//! and dead-letter queues ([`queues`]), signed provider webhooks ([`webhooks`]).

pub mod api;
pub mod app_endpoint;
pub mod bounce_corpus;
pub mod calls;
pub mod inbound;
pub mod providers;
pub mod queues;
pub mod webhooks;

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use mailgate_aws::AwsClients;
use mailgate_local::{LocalStack, StackSpec, Template, provision};

/// The variable `make test` sets to the emulator's URL.
pub const ENDPOINT_VAR: &str = "MAILGATE_TEST_AWS_ENDPOINT";

/// The emulator endpoint; panics with instructions when the tests run outside `make test`.
pub fn endpoint() -> String {
    std::env::var(ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!("{ENDPOINT_VAR} is not set: run the integration tests with `make test`, which starts the local AWS stack")
    })
}

/// SDK configuration for the emulator, independent of the caller's environment, on the HTTPS
/// client the functions ship with (`mailgate_aws::shared_https_client`).
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(mailgate_aws::shared_https_client())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "mailgate-tests",
        ))
        .load()
        .await
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The text of a fixture under `events/`, e.g. `send-api/get-health.json`.
pub fn fixture(path: &str) -> String {
    let full = workspace_root().join("events").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("fixture {}: {e}", full.display()))
}

/// A stack of its own for one test, named `t<random>` so tests run in parallel and re-run.
pub struct TestStack {
    /// The emulator URL.
    pub endpoint: String,
    /// SDK configuration for the emulator.
    pub sdk: SdkConfig,
    /// Clients built from it.
    pub clients: AwsClients,
    /// What was provisioned.
    pub stack: LocalStack,
}

impl TestStack {
    /// Provisions a new stack from the template.
    pub async fn new() -> Self {
        let endpoint = endpoint();
        let sdk = sdk_config(&endpoint).await;
        let template = Template::load(&workspace_root().join("infra/template.yaml"))
            .expect("infra/template.yaml parses");
        let environment = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let spec = StackSpec {
            parameters: BTreeMap::from([("Environment".to_owned(), environment)]),
            ses_identity: Some("example.com".to_owned()),
        };
        let stack = provision(&sdk, &template, &spec)
            .await
            .expect("the local stack provisions");
        Self {
            clients: AwsClients::new(&sdk),
            endpoint,
            sdk,
            stack,
        }
    }

    /// The environment the template gives the function built from `binary`.
    pub fn function_env(&self, binary: &str) -> impl Fn(&str) -> Option<String> + use<> {
        let env = self
            .stack
            .function(binary)
            .unwrap_or_else(|| panic!("no function {binary} in the template"))
            .environment
            .clone();
        move |k| env.get(k).cloned()
    }

    /// The physical name of the table with logical id `logical_id`.
    pub fn table(&self, logical_id: &str) -> String {
        self.stack.tables[logical_id].name.clone()
    }

    /// The name of the S3 bucket with logical id `logical_id`.
    pub fn bucket(&self, logical_id: &str) -> String {
        self.stack.buckets[logical_id].clone()
    }

    /// The URL of the queue with logical id `logical_id`.
    pub fn queue_url(&self, logical_id: &str) -> String {
        self.stack.queues[logical_id].url.clone()
    }
}
