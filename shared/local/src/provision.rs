//! Creating the local stack's tables, queues and SES identity from `infra/template.yaml`.
//!
//! Every DynamoDB table (keys, GSIs, TTL) and SQS queue (attributes, redrive) comes from the
//! template, so the local stack and the deployed one cannot drift. Provisioning is idempotent:
//! existing resources are left as they are (a table whose keys differ from the template is an
//! error, since silently using it would hide a schema change).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::Value;

use crate::template::{Physical, Resolver, Template, TemplateError, scalar_text};

/// The account id moto uses for every resource.
pub const LOCAL_ACCOUNT_ID: &str = "123456789012";
/// Where `cargo lambda watch` serves function URLs under `make dev`.
pub const DEFAULT_LOCAL_FUNCTION_URL_BASE: &str = "http://127.0.0.1:9000/lambda-url";
/// The stack parameter that overrides [`DEFAULT_LOCAL_FUNCTION_URL_BASE`] (another watch port).
pub const LOCAL_FUNCTION_URL_BASE_PARAMETER: &str = "LocalFunctionUrlBase";

/// A failure while provisioning.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The template could not be read or resolved.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// An AWS call failed.
    #[error("{action}: {detail}")]
    Aws {
        /// What was being done.
        action: String,
        /// The SDK error with its context.
        detail: String,
    },
    /// An existing resource does not match the template.
    #[error("{0}")]
    Drift(String),
}

fn aws_err<E: std::error::Error>(action: impl Into<String>, err: E) -> ProvisionError {
    ProvisionError::Aws {
        action: action.into(),
        detail: aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string(),
    }
}

/// A provisioned table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// The physical table name.
    pub name: String,
}

/// A provisioned queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// The queue name.
    pub name: String,
    /// The queue URL.
    pub url: String,
    /// The queue ARN.
    pub arn: String,
}

/// An SQS event source of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsSource {
    /// The queue's logical id.
    pub queue: String,
    /// Records per invocation (`BatchSize`, default 10).
    pub batch_size: i32,
    /// Whether the function reports partial batch failures.
    pub report_batch_item_failures: bool,
}

/// A schedule event source of a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleSource {
    /// The event's name in the template.
    pub name: String,
    /// The expression, e.g. `rate(1 minute)`.
    pub expression: String,
}

impl ScheduleSource {
    /// The period of a `rate(...)` expression; `cron(...)` is not supported locally.
    pub fn period(&self) -> Option<Duration> {
        let inner = self.expression.strip_prefix("rate(")?.strip_suffix(')')?;
        let (n, unit) = inner.trim().split_once(' ')?;
        let n: u64 = n.parse().ok()?;
        let secs = match unit.trim() {
            "minute" | "minutes" => 60,
            "hour" | "hours" => 3600,
            "day" | "days" => 86_400,
            _ => return None,
        };
        Some(Duration::from_secs(n * secs))
    }
}

/// A function of the template as the local stack runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    /// The logical id, e.g. `SendApiFunction`.
    pub logical_id: String,
    /// The binary (and local function) name, e.g. `send-api`.
    pub binary: String,
    /// Resolved environment variables (globals merged with the function's own).
    pub environment: BTreeMap<String, String>,
    /// SQS event sources.
    pub sqs_sources: Vec<SqsSource>,
    /// Schedule event sources.
    pub schedules: Vec<ScheduleSource>,
}

/// The local stack as provisioned.
#[derive(Debug, Clone)]
pub struct LocalStack {
    /// The `Environment` parameter, which prefixes every resource name.
    pub environment: String,
    /// The region.
    pub region: String,
    /// Tables by logical id.
    pub tables: BTreeMap<String, TableInfo>,
    /// Queues by logical id.
    pub queues: BTreeMap<String, QueueInfo>,
    /// S3 bucket names by logical id.
    pub buckets: BTreeMap<String, String>,
    /// Functions, ordered by logical id.
    pub functions: Vec<FunctionInfo>,
}

impl LocalStack {
    /// The function built from `binary`.
    pub fn function(&self, binary: &str) -> Option<&FunctionInfo> {
        self.functions.iter().find(|f| f.binary == binary)
    }

    /// The union of every function's environment, for a single `cargo lambda watch`.
    ///
    /// Where two functions set one variable differently, the first function's value wins and
    /// the conflict is returned so the caller can report it.
    pub fn merged_environment(&self) -> (BTreeMap<String, String>, Vec<String>) {
        let mut merged = BTreeMap::new();
        let mut conflicts = Vec::new();
        for f in &self.functions {
            for (k, v) in &f.environment {
                match merged.get(k) {
                    Some(existing) if existing != v => {
                        conflicts.push(format!("{k} differs for {}", f.binary))
                    }
                    Some(_) => {}
                    None => {
                        merged.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (merged, conflicts)
    }
}

/// What to provision.
#[derive(Debug, Clone)]
pub struct StackSpec {
    /// Parameter values overriding the template defaults (e.g. `Environment`).
    pub parameters: BTreeMap<String, String>,
    /// The SES domain identity to create, if any.
    pub ses_identity: Option<String>,
}

/// Provisions (or finds) every table and queue of `template` and resolves its functions.
pub async fn provision(
    sdk: &SdkConfig,
    template: &Template,
    spec: &StackSpec,
) -> Result<LocalStack, ProvisionError> {
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".to_owned());
    let mut resolver = Resolver {
        parameters: template.parameter_defaults(),
        ..Default::default()
    };
    resolver.parameters.extend(spec.parameters.clone());
    let environment = resolver
        .parameters
        .get("Environment")
        .cloned()
        .ok_or_else(|| TemplateError::Shape("the template has no Environment parameter".into()))?;
    for (k, v) in [
        ("AWS::Region", region.as_str()),
        ("AWS::AccountId", LOCAL_ACCOUNT_ID),
        ("AWS::Partition", "aws"),
        ("AWS::URLSuffix", "amazonaws.com"),
    ] {
        resolver.parameters.insert(k.to_owned(), v.to_owned());
    }
    resolver.parameters.insert(
        "AWS::StackName".to_owned(),
        format!("mailgate-{environment}"),
    );

    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);

    // Queues: dead-letter queues first, since redrive policies refer to their ARNs.
    let mut queues = BTreeMap::new();
    let mut pending: Vec<_> = template.resources_of("AWS::SQS::Queue").collect();
    while !pending.is_empty() {
        let before = pending.len();
        let mut next = Vec::new();
        for r in pending {
            match resolver.resolve(r.properties) {
                Ok(props) => {
                    let info = create_queue(&sqs, r.logical_id, &props).await?;
                    let mut physical = Physical {
                        reference: info.url.clone(),
                        ..Default::default()
                    };
                    physical.attributes.insert("Arn".into(), info.arn.clone());
                    physical
                        .attributes
                        .insert("QueueName".into(), info.name.clone());
                    physical
                        .attributes
                        .insert("QueueUrl".into(), info.url.clone());
                    resolver.resources.insert(r.logical_id.to_owned(), physical);
                    queues.insert(r.logical_id.to_owned(), info);
                }
                Err(_) => next.push(r),
            }
        }
        if next.len() == before {
            // No progress: report the first resolution error as it is.
            let r = &next[0];
            resolver.resolve(r.properties)?;
        }
        pending = next;
    }

    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    let mut buckets = BTreeMap::new();
    for r in template.resources_of("AWS::S3::Bucket") {
        let props = resolver.resolve(r.properties)?;
        let name = create_bucket(&s3, r.logical_id, &props).await?;
        let mut physical = Physical {
            reference: name.clone(),
            ..Default::default()
        };
        physical
            .attributes
            .insert("Arn".into(), format!("arn:aws:s3:::{name}"));
        resolver.resources.insert(r.logical_id.to_owned(), physical);
        buckets.insert(r.logical_id.to_owned(), name);
    }

    let mut tables = BTreeMap::new();
    for r in template.resources_of("AWS::DynamoDB::Table") {
        let props = resolver.resolve(r.properties)?;
        let name = create_table(&dynamodb, r.logical_id, &props).await?;
        let mut physical = Physical {
            reference: name.clone(),
            ..Default::default()
        };
        physical.attributes.insert(
            "Arn".into(),
            format!("arn:aws:dynamodb:{region}:{LOCAL_ACCOUNT_ID}:table/{name}"),
        );
        resolver.resources.insert(r.logical_id.to_owned(), physical);
        tables.insert(r.logical_id.to_owned(), TableInfo { name });
    }

    if let Some(identity) = &spec.ses_identity {
        verify_ses_identity(sdk, identity).await?;
    }

    // SAM makes `<Function>Url` for a function with `FunctionUrlConfig`; locally that URL is
    // `cargo lambda watch`'s (`make dev`: http://127.0.0.1:9000/lambda-url/<binary>/), so other
    // functions' `!GetAtt <Function>Url.FunctionUrl` (the unsubscribe base URL) resolve to it.
    let url_base = resolver
        .parameters
        .get(LOCAL_FUNCTION_URL_BASE_PARAMETER)
        .cloned()
        .unwrap_or_else(|| DEFAULT_LOCAL_FUNCTION_URL_BASE.to_owned());
    for r in template.resources_of("AWS::Serverless::Function") {
        if r.properties.get("FunctionUrlConfig").is_none() {
            continue;
        }
        if let Some(binary) = r
            .metadata
            .pointer("/BuildProperties/Binary")
            .and_then(Value::as_str)
        {
            let mut physical = Physical::default();
            physical.attributes.insert(
                "FunctionUrl".into(),
                format!("{}/{binary}/", url_base.trim_end_matches('/')),
            );
            resolver
                .resources
                .insert(format!("{}Url", r.logical_id), physical);
        }
    }

    let functions = template
        .resources_of("AWS::Serverless::Function")
        .map(|r| resolve_function(template, &resolver, &queues, r))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(LocalStack {
        environment,
        region,
        tables,
        queues,
        buckets,
        functions,
    })
}

/// Creates a bucket (or keeps an existing one of ours) with the template's default encryption
/// and expiration lifecycle, so retention behaves locally as deployed.
async fn create_bucket(
    s3: &aws_sdk_s3::Client,
    logical_id: &str,
    props: &Value,
) -> Result<String, ProvisionError> {
    use aws_sdk_s3::types::{
        BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule,
        LifecycleRuleFilter, ServerSideEncryption, ServerSideEncryptionByDefault,
        ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    let name = text(props, "BucketName").unwrap_or_else(|| logical_id.to_lowercase());
    match s3.create_bucket().bucket(&name).send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_bucket_already_owned_by_you()) => {}
        Err(e) => return Err(aws_err(format!("create bucket {name}"), e)),
    }
    let sse_rules = props
        .pointer("/BucketEncryption/ServerSideEncryptionConfiguration")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|rule| {
            let algorithm = rule.pointer("/ServerSideEncryptionByDefault/SSEAlgorithm")?;
            let by_default = ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::from(scalar_text(algorithm)?.as_str()))
                .build()
                .ok()?;
            Some(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(by_default)
                    .build(),
            )
        })
        .collect::<Vec<_>>();
    if !sse_rules.is_empty() {
        let config = ServerSideEncryptionConfiguration::builder()
            .set_rules(Some(sse_rules))
            .build()
            .map_err(|e| aws_err("build bucket encryption", e))?;
        s3.put_bucket_encryption()
            .bucket(&name)
            .server_side_encryption_configuration(config)
            .send()
            .await
            .map_err(|e| aws_err(format!("encrypt bucket {name}"), e))?;
    }
    let mut rules = Vec::new();
    for rule in props
        .pointer("/LifecycleConfiguration/Rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(days) = rule
            .get("ExpirationInDays")
            .and_then(scalar_text)
            .and_then(|d| d.parse::<i32>().ok())
        else {
            continue;
        };
        rules.push(
            LifecycleRule::builder()
                .id(text(rule, "Id").unwrap_or_else(|| "expire".into()))
                .status(ExpirationStatus::Enabled)
                .filter(LifecycleRuleFilter::builder().prefix("").build())
                .expiration(LifecycleExpiration::builder().days(days).build())
                .build()
                .map_err(|e| aws_err("build lifecycle rule", e))?,
        );
    }
    if !rules.is_empty() {
        let config = BucketLifecycleConfiguration::builder()
            .set_rules(Some(rules))
            .build()
            .map_err(|e| aws_err("build lifecycle", e))?;
        s3.put_bucket_lifecycle_configuration()
            .bucket(&name)
            .lifecycle_configuration(config)
            .send()
            .await
            .map_err(|e| aws_err(format!("set the lifecycle of bucket {name}"), e))?;
    }
    Ok(name)
}

fn text(props: &Value, key: &str) -> Option<String> {
    props.get(key).and_then(scalar_text)
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    logical_id: &str,
    props: &Value,
) -> Result<QueueInfo, ProvisionError> {
    let name = text(props, "QueueName").unwrap_or_else(|| logical_id.to_owned());
    let mut attributes = BTreeMap::new();
    for (key, attr) in [
        ("VisibilityTimeout", QueueAttributeName::VisibilityTimeout),
        (
            "MessageRetentionPeriod",
            QueueAttributeName::MessageRetentionPeriod,
        ),
        ("DelaySeconds", QueueAttributeName::DelaySeconds),
        ("MaximumMessageSize", QueueAttributeName::MaximumMessageSize),
        (
            "ReceiveMessageWaitTimeSeconds",
            QueueAttributeName::ReceiveMessageWaitTimeSeconds,
        ),
        ("FifoQueue", QueueAttributeName::FifoQueue),
        (
            "ContentBasedDeduplication",
            QueueAttributeName::ContentBasedDeduplication,
        ),
    ] {
        if let Some(v) = text(props, key) {
            attributes.insert(attr, v);
        }
    }
    if let Some(redrive) = props.get("RedrivePolicy") {
        // CloudFormation takes the policy as an object; the SQS API as a JSON string.
        let policy = match redrive {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        attributes.insert(QueueAttributeName::RedrivePolicy, policy);
    }
    let created = sqs
        .create_queue()
        .queue_name(&name)
        .set_attributes(Some(attributes.clone().into_iter().collect()))
        .send()
        .await;
    let url = match created {
        Ok(out) => out.queue_url.unwrap_or_default(),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_queue_name_exists()) =>
        {
            // Same name, other attributes: bring the queue back to what the template says.
            let url = sqs
                .get_queue_url()
                .queue_name(&name)
                .send()
                .await
                .map_err(|e| aws_err(format!("find queue {name}"), e))?
                .queue_url
                .unwrap_or_default();
            sqs.set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attributes.into_iter().collect()))
                .send()
                .await
                .map_err(|e| aws_err(format!("update queue {name}"), e))?;
            url
        }
        Err(err) => return Err(aws_err(format!("create queue {name}"), err)),
    };
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| aws_err(format!("read queue {name}"), e))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default();
    Ok(QueueInfo { name, url, arn })
}

fn key_schema(v: Option<&Value>) -> Result<Vec<KeySchemaElement>, ProvisionError> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|k| {
            let name = text(k, "AttributeName").unwrap_or_default();
            let kind = KeyType::from(text(k, "KeyType").unwrap_or_default().as_str());
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| aws_err("build key schema", e))
        })
        .collect()
}

async fn create_table(
    dynamodb: &aws_sdk_dynamodb::Client,
    logical_id: &str,
    props: &Value,
) -> Result<String, ProvisionError> {
    let name = text(props, "TableName").unwrap_or_else(|| logical_id.to_owned());
    let keys = key_schema(props.get("KeySchema"))?;
    let definitions = props
        .get("AttributeDefinitions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(text(a, "AttributeName").unwrap_or_default())
                .attribute_type(ScalarAttributeType::from(
                    text(a, "AttributeType").unwrap_or_default().as_str(),
                ))
                .build()
                .map_err(|e| aws_err("build attribute definition", e))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut indexes = Vec::new();
    for gsi in props
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let projection = gsi.get("Projection");
        let mut p = Projection::builder().projection_type(ProjectionType::from(
            projection
                .and_then(|p| text(p, "ProjectionType"))
                .unwrap_or_else(|| "ALL".into())
                .as_str(),
        ));
        for attr in projection
            .and_then(|p| p.get("NonKeyAttributes"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            p = p.non_key_attributes(attr);
        }
        indexes.push(
            GlobalSecondaryIndex::builder()
                .index_name(text(gsi, "IndexName").unwrap_or_default())
                .set_key_schema(Some(key_schema(gsi.get("KeySchema"))?))
                .projection(p.build())
                .build()
                .map_err(|e| aws_err("build index", e))?,
        );
    }
    let created = dynamodb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(keys.clone()))
        .set_attribute_definitions(Some(definitions))
        .set_global_secondary_indexes((!indexes.is_empty()).then(|| indexes.clone()))
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            check_table_matches(dynamodb, &name, &keys, &indexes).await?;
        }
        Err(err) => return Err(aws_err(format!("create table {name}"), err)),
    }
    if let Some(ttl) = props.get("TimeToLiveSpecification")
        && ttl.get("Enabled").and_then(Value::as_bool) == Some(true)
    {
        let attribute = text(ttl, "AttributeName").unwrap_or_default();
        let current = dynamodb
            .describe_time_to_live()
            .table_name(&name)
            .send()
            .await
            .map_err(|e| aws_err(format!("read TTL of {name}"), e))?;
        let enabled = current.time_to_live_description.is_some_and(|d| {
            d.time_to_live_status == Some(TimeToLiveStatus::Enabled)
                && d.attribute_name.as_deref() == Some(attribute.as_str())
        });
        if !enabled {
            dynamodb
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attribute)
                        .enabled(true)
                        .build()
                        .map_err(|e| aws_err("build TTL", e))?,
                )
                .send()
                .await
                .map_err(|e| aws_err(format!("enable TTL on {name}"), e))?;
        }
    }
    Ok(name)
}

async fn check_table_matches(
    dynamodb: &aws_sdk_dynamodb::Client,
    name: &str,
    keys: &[KeySchemaElement],
    indexes: &[GlobalSecondaryIndex],
) -> Result<(), ProvisionError> {
    let table = dynamodb
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(|e| aws_err(format!("describe table {name}"), e))?
        .table
        .ok_or_else(|| ProvisionError::Drift(format!("table {name} has no description")))?;
    let mut want: Vec<String> = indexes.iter().map(|i| i.index_name().to_owned()).collect();
    let mut have: Vec<String> = table
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name().map(str::to_owned))
        .collect();
    want.sort();
    have.sort();
    if table.key_schema() != keys || want != have {
        return Err(ProvisionError::Drift(format!(
            "table {name} exists with keys or indexes that differ from infra/template.yaml; \
             reset the local stack (make dev-reset) to recreate it"
        )));
    }
    Ok(())
}

async fn verify_ses_identity(sdk: &SdkConfig, identity: &str) -> Result<(), ProvisionError> {
    let ses = aws_sdk_sesv2::Client::new(sdk);
    match ses
        .create_email_identity()
        .email_identity(identity)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_already_exists_exception()) =>
        {
            Ok(())
        }
        Err(err) => Err(aws_err(format!("create SES identity {identity}"), err)),
    }
}

fn resolve_function(
    template: &Template,
    resolver: &Resolver,
    queues: &BTreeMap<String, QueueInfo>,
    r: crate::template::Resource<'_>,
) -> Result<FunctionInfo, ProvisionError> {
    let binary = r
        .metadata
        .pointer("/BuildProperties/Binary")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            r.properties
                .get("CodeUri")
                .and_then(Value::as_str)
                .and_then(|c| c.trim_end_matches('/').rsplit('/').next())
                .map(str::to_owned)
        })
        .ok_or_else(|| {
            TemplateError::Shape(format!(
                "{} has no BuildProperties.Binary or CodeUri",
                r.logical_id
            ))
        })?;
    let mut environment = BTreeMap::new();
    let own = r
        .properties
        .pointer("/Environment/Variables")
        .and_then(Value::as_object);
    for vars in template.global_function_variables().into_iter().chain(own) {
        for (k, v) in vars {
            environment.insert(k.clone(), resolver.string(v)?);
        }
    }
    let mut sqs_sources = Vec::new();
    let mut schedules = Vec::new();
    for (name, event) in r
        .properties
        .get("Events")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let props = event.get("Properties").cloned().unwrap_or(Value::Null);
        match event.get("Type").and_then(Value::as_str) {
            Some("SQS") => {
                let arn = resolver.string(props.get("Queue").unwrap_or(&Value::Null))?;
                let queue = queues
                    .iter()
                    .find(|(_, q)| q.arn == arn)
                    .map(|(id, _)| id.clone())
                    .ok_or_else(|| {
                        TemplateError::Shape(format!(
                            "{}: SQS source {arn} is not a template queue",
                            r.logical_id
                        ))
                    })?;
                let batch_size = props
                    .get("BatchSize")
                    .and_then(Value::as_i64)
                    .and_then(|n| i32::try_from(n).ok())
                    .unwrap_or(10);
                let report_batch_item_failures = props
                    .get("FunctionResponseTypes")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|t| t == "ReportBatchItemFailures"));
                sqs_sources.push(SqsSource {
                    queue,
                    batch_size,
                    report_batch_item_failures,
                });
            }
            Some("Schedule") | Some("ScheduleV2") => {
                let expression = resolver.string(
                    props
                        .get("Schedule")
                        .or_else(|| props.get("ScheduleExpression"))
                        .unwrap_or(&Value::Null),
                )?;
                schedules.push(ScheduleSource {
                    name: name.clone(),
                    expression,
                });
            }
            _ => {}
        }
    }
    Ok(FunctionInfo {
        logical_id: r.logical_id.to_owned(),
        binary,
        environment,
        sqs_sources,
        schedules,
    })
}

/// Deletes every table and queue of a provisioned stack (used by tests to clean up).
pub async fn destroy(sdk: &SdkConfig, stack: &LocalStack) -> Result<(), ProvisionError> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    for q in stack.queues.values() {
        sqs.delete_queue()
            .queue_url(&q.url)
            .send()
            .await
            .map_err(|e| aws_err(format!("delete queue {}", q.name), e))?;
    }
    for t in stack.tables.values() {
        dynamodb
            .delete_table()
            .table_name(&t.name)
            .send()
            .await
            .map_err(|e| aws_err(format!("delete table {}", t.name), e))?;
    }
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    for name in stack.buckets.values() {
        // A bucket must be empty to go.
        loop {
            let listed = s3
                .list_objects_v2()
                .bucket(name)
                .send()
                .await
                .map_err(|e| aws_err(format!("list bucket {name}"), e))?;
            if listed.contents().is_empty() {
                break;
            }
            for object in listed.contents() {
                if let Some(key) = object.key() {
                    s3.delete_object()
                        .bucket(name)
                        .key(key)
                        .send()
                        .await
                        .map_err(|e| aws_err(format!("empty bucket {name}"), e))?;
                }
            }
        }
        s3.delete_bucket()
            .bucket(name)
            .send()
            .await
            .map_err(|e| aws_err(format!("delete bucket {name}"), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rate_expressions() {
        let s = |e: &str| ScheduleSource {
            name: "S".into(),
            expression: e.into(),
        };
        assert_eq!(s("rate(1 minute)").period(), Some(Duration::from_secs(60)));
        assert_eq!(
            s("rate(5 minutes)").period(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(s("rate(2 hours)").period(), Some(Duration::from_secs(7200)));
        assert_eq!(s("cron(0 12 * * ? *)").period(), None);
    }
}
