//! Checks that the tables and queues a function is configured with exist and answer.

use serde::Serialize;

use crate::config::ResourceNames;

/// What a check found for one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceState {
    /// The resource exists and answered.
    Ok,
    /// AWS says the resource does not exist.
    Missing,
    /// AWS could not be asked (network, credentials, throttling…).
    Unreachable,
}

/// The result for one table or queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceCheck {
    /// The role of the resource, e.g. `messages`.
    pub role: &'static str,
    /// The table name or queue URL that was checked.
    pub name: String,
    /// What was found.
    pub state: ResourceState,
    /// Why it is not ok, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The health of every configured table and queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// True only when every resource is ok.
    pub healthy: bool,
    /// One entry per table.
    pub tables: Vec<ResourceCheck>,
    /// One entry per queue.
    pub queues: Vec<ResourceCheck>,
}

impl HealthReport {
    /// The resources that are not ok, as `role (name): state`.
    pub fn problems(&self) -> Vec<String> {
        self.tables
            .iter()
            .chain(&self.queues)
            .filter(|c| c.state != ResourceState::Ok)
            .map(|c| format!("{} ({}): {:?}", c.role, c.name, c.state))
            .collect()
    }
}

/// Describes every configured table and queue concurrently.
pub async fn check_resources(
    dynamodb: &aws_sdk_dynamodb::Client,
    sqs: &aws_sdk_sqs::Client,
    names: &ResourceNames,
) -> HealthReport {
    let table_checks = names.tables().map(|(table, name)| async move {
        let result = dynamodb.describe_table().table_name(name).send().await;
        let (state, detail) = match result {
            Ok(_) => (ResourceState::Ok, None),
            Err(err) => match err.as_service_error() {
                Some(e) if e.is_resource_not_found_exception() => (
                    ResourceState::Missing,
                    Some("table does not exist".to_owned()),
                ),
                _ => (
                    ResourceState::Unreachable,
                    Some(aws_sdk_dynamodb::error::DisplayErrorContext(&err).to_string()),
                ),
            },
        };
        ResourceCheck {
            role: table.role(),
            name: name.to_owned(),
            state,
            detail,
        }
    });
    let queue_checks = names.queues().map(|(queue, url)| async move {
        let result = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await;
        let (state, detail) = match result {
            Ok(_) => (ResourceState::Ok, None),
            Err(err) => match err.as_service_error() {
                Some(e) if e.is_queue_does_not_exist() => (
                    ResourceState::Missing,
                    Some("queue does not exist".to_owned()),
                ),
                _ => (
                    ResourceState::Unreachable,
                    Some(aws_sdk_sqs::error::DisplayErrorContext(&err).to_string()),
                ),
            },
        };
        ResourceCheck {
            role: queue.role(),
            name: url.to_owned(),
            state,
            detail,
        }
    });
    let (tables, queues) = futures::future::join(
        futures::future::join_all(table_checks),
        futures::future::join_all(queue_checks),
    )
    .await;
    let healthy = tables
        .iter()
        .chain(&queues)
        .all(|c| c.state == ResourceState::Ok);
    HealthReport {
        healthy,
        tables,
        queues,
    }
}
