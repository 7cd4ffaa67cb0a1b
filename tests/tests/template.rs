//! The rules `infra/template.yaml` must keep, checked on the file itself (no AWS needed): storage
//! that survives mistakes, queues that dead-letter, batch consumers that report partial failures,
//! logs with retention, least-privilege roles, and an alarm wherever work can silently pile up.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::{BTreeMap, BTreeSet};

use mailgate_local::Template;
use mailgate_local::template::Resolver;
use mailgate_tests::workspace_root;
use serde_json::{Value, json};

fn template() -> Template {
    Template::load(&workspace_root().join("infra/template.yaml")).unwrap()
}

/// Resolves `Ref`/`Fn::Sub` of parameters only, as a deployment to `dev` would.
fn dev() -> Resolver {
    let mut r = Resolver::default();
    r.parameters.extend(template().parameter_defaults());
    r.parameters.insert("Environment".into(), "dev".into());
    for (k, v) in [
        ("AWS::Partition", "aws"),
        ("AWS::Region", "us-east-1"),
        ("AWS::AccountId", "123456789012"),
        ("AWS::URLSuffix", "amazonaws.com"),
    ] {
        r.parameters.insert(k.into(), v.into());
    }
    r
}

/// `!GetAtt X.Attr` in long form.
fn get_att(resource: &str, attribute: &str) -> Value {
    json!({"Fn::GetAtt": [resource, attribute]})
}

/// A value or list of values as a list.
fn list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// The logical ids of the queues some queue's redrive policy names as its dead-letter queue.
fn dead_letter_queues(t: &Template) -> BTreeSet<String> {
    t.resources_of("AWS::SQS::Queue")
        .filter_map(|q| q.properties.pointer("/RedrivePolicy/deadLetterTargetArn"))
        .filter_map(|arn| arn.pointer("/Fn::GetAtt/0").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_table_is_on_demand_with_point_in_time_recovery_and_encryption() {
    let t = template();
    let tables: Vec<_> = t.resources_of("AWS::DynamoDB::Table").collect();
    assert!(tables.len() >= 8);
    for table in tables {
        let p = table.properties;
        let id = table.logical_id;
        assert_eq!(p["BillingMode"], "PAY_PER_REQUEST", "{id}");
        assert_eq!(
            p.pointer("/PointInTimeRecoverySpecification/PointInTimeRecoveryEnabled"),
            Some(&json!(true)),
            "{id}"
        );
        assert_eq!(
            p.pointer("/SSESpecification/SSEEnabled"),
            Some(&json!(true)),
            "{id}"
        );
        // Records expire by `expires_at` (infra/README.md); a TTL on any other attribute is a typo.
        if let Some(ttl) = p.get("TimeToLiveSpecification") {
            assert_eq!(ttl["AttributeName"], "expires_at", "{id}");
            assert_eq!(ttl["Enabled"], true, "{id}");
        }
    }
}

#[test]
fn tables_whose_records_expire_have_ttl() {
    let t = template();
    for id in [
        "MessagesTable",
        "ReceiptsTable",
        "DedupeTable",
        "IdempotencyTable",
        "SuppressionsTable",
        "ControlTable",
    ] {
        let table = t.resources().find(|r| r.logical_id == id).unwrap();
        assert!(
            table.properties.get("TimeToLiveSpecification").is_some(),
            "{id} has records that expire"
        );
    }
}

#[test]
fn every_queue_redrives_to_a_dead_letter_queue_of_the_template() {
    let t = template();
    let dlqs = dead_letter_queues(&t);
    let queues: BTreeMap<_, _> = t
        .resources_of("AWS::SQS::Queue")
        .map(|q| (q.logical_id.to_owned(), q.properties))
        .collect();
    assert_eq!(dlqs.len(), 3, "{dlqs:?}");
    for (id, p) in &queues {
        assert_eq!(p["SqsManagedSseEnabled"], true, "{id} is encrypted");
        if dlqs.contains(id) {
            assert!(p.get("RedrivePolicy").is_none(), "{id} is a DLQ");
            assert_eq!(p["MessageRetentionPeriod"], 1_209_600, "{id} keeps 14 days");
            continue;
        }
        let redrive = p
            .get("RedrivePolicy")
            .unwrap_or_else(|| panic!("{id} has no RedrivePolicy"));
        let target = redrive
            .pointer("/deadLetterTargetArn/Fn::GetAtt/0")
            .and_then(Value::as_str)
            .unwrap();
        assert!(queues.contains_key(target), "{id} → {target}");
        assert!(redrive["maxReceiveCount"].as_i64().unwrap() >= 3, "{id}");
    }
}

#[test]
fn every_sqs_event_source_reports_batch_item_failures_with_a_concurrency_cap() {
    let t = template();
    let mut sources = 0;
    for f in t.resources_of("AWS::Serverless::Function") {
        let events = f.properties.get("Events").and_then(Value::as_object);
        for (name, event) in events.into_iter().flatten() {
            if event["Type"] != "SQS" {
                continue;
            }
            sources += 1;
            let p = &event["Properties"];
            let id = format!("{}.{name}", f.logical_id);
            assert!(
                list(&p["FunctionResponseTypes"]).contains(&&json!("ReportBatchItemFailures")),
                "{id}"
            );
            let max = p
                .pointer("/ScalingConfig/MaximumConcurrency")
                .and_then(Value::as_i64);
            assert!(
                max.is_some_and(|m| (2..=1000).contains(&m)),
                "{id}: {max:?}"
            );
        }
    }
    assert_eq!(sources, 3, "event-processor, send-worker and dispatcher");
}

#[test]
fn every_function_has_its_own_log_group_with_retention() {
    let t = template();
    let r = dev();
    let groups: BTreeMap<String, &Value> = t
        .resources_of("AWS::Logs::LogGroup")
        .map(|g| {
            (
                r.string(&g.properties["LogGroupName"]).unwrap(),
                g.properties,
            )
        })
        .collect();
    for f in t.resources_of("AWS::Serverless::Function") {
        let name = r.string(&f.properties["FunctionName"]).unwrap();
        assert!(name.starts_with("mailgate-dev-"), "{name}");
        let group = groups
            .get(&format!("/aws/lambda/{name}"))
            .unwrap_or_else(|| panic!("{} has no log group /aws/lambda/{name}", f.logical_id));
        assert_eq!(group["RetentionInDays"], json!({"Ref": "LogRetentionDays"}));
    }
    assert!(t.parameter_defaults().contains_key("LogRetentionDays"));
}

/// The only actions that may name every resource, and why AWS requires it.
const STAR_ALLOWLIST: &[&str] = &[
    // X-Ray trace upload (Tracing: Active) has no resource-level permissions.
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    // Listing SES identities (GET /v1/domains) has no resource-level permissions either.
    "ses:ListEmailIdentities",
];

#[test]
fn every_function_runs_as_its_own_role_and_only_x_ray_is_granted_on_every_resource() {
    let t = template();
    let roles: BTreeMap<_, _> = t
        .resources_of("AWS::IAM::Role")
        .map(|r| (r.logical_id.to_owned(), r.properties))
        .collect();
    let mut used = BTreeSet::new();
    for f in t.resources_of("AWS::Serverless::Function") {
        let id = f.logical_id;
        // SAM policy templates and the managed policies SAM adds on its own role (basic execution,
        // X-Ray, the SQS poller) all grant on "*": an explicit role keeps them out.
        assert!(
            f.properties.get("Policies").is_none(),
            "{id} uses SAM Policies"
        );
        let role = f.properties["Role"]
            .pointer("/Fn::GetAtt/0")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("{id} has no Role: !GetAtt <Role>.Arn"));
        assert!(roles.contains_key(role), "{id} → {role}");
        assert!(used.insert(role.to_owned()), "{role} is shared");
    }
    for (id, role) in &roles {
        assert!(role.get("ManagedPolicyArns").is_none(), "{id}");
        let statements: Vec<&Value> = list(&role["Policies"])
            .into_iter()
            .flat_map(|p| list(&p["PolicyDocument"]["Statement"]))
            .collect();
        assert!(!statements.is_empty(), "{id}");
        for s in statements {
            let sid = format!("{id}.{}", s["Sid"]);
            assert_eq!(s["Effect"], "Allow", "{sid}");
            let actions: Vec<&str> = list(&s["Action"])
                .into_iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            for a in &actions {
                assert!(!a.contains('*'), "{sid}: wildcard action {a}");
            }
            let everything = list(&s["Resource"]).contains(&&json!("*"));
            if everything {
                for a in &actions {
                    assert!(STAR_ALLOWLIST.contains(a), "{sid}: {a} on \"*\"");
                }
            }
        }
    }
}

/// Every statement of `role` granting `action`, as (resources, condition).
fn grants<'a>(t: &'a Template, role: &str, action: &str) -> Vec<(Vec<&'a Value>, &'a Value)> {
    let r = t.resources().find(|r| r.logical_id == role).unwrap();
    list(&r.properties["Policies"])
        .into_iter()
        .flat_map(|p| list(&p["PolicyDocument"]["Statement"]))
        .filter(|s| list(&s["Action"]).contains(&&json!(action)))
        .map(|s| (list(&s["Resource"]), &s["Condition"]))
        .collect()
}

#[test]
fn each_webhook_reads_only_its_own_secret_from_ssm() {
    let t = template();
    let r = dev();
    for (role, paths) in [
        (
            "WebhookSendgridRole",
            &[
                "sendgrid-webhook-public-keys",
                "sendgrid-inbound-credentials",
            ][..],
        ),
        ("WebhookMailgunRole", &["mailgun-webhook-signing-keys"][..]),
        ("WebhookPostmarkRole", &["postmark-webhook-credentials"][..]),
        ("WebhookSmtp2goRole", &["smtp2go-webhook-credentials"][..]),
    ] {
        let resources: Vec<String> = grants(&t, role, "ssm:GetParameter")
            .into_iter()
            .flat_map(|(res, _)| res)
            .map(|v| r.string(v).unwrap())
            .collect();
        let expected: Vec<String> = paths
            .iter()
            .map(|path| format!("arn:aws:ssm:us-east-1:123456789012:parameter/mailgate/dev/{path}"))
            .collect();
        assert_eq!(resources, expected, "{role}");
        let decrypt = grants(&t, role, "kms:Decrypt");
        assert_eq!(decrypt.len(), 1, "{role}");
        let condition = decrypt[0].1;
        assert!(
            condition.pointer("/StringEquals/kms:ViaService").is_some(),
            "{role}: kms:Decrypt only through SSM"
        );
    }
    assert!(grants(&t, "WebhookSesRole", "ssm:GetParameter").is_empty());
}

/// IAM's wildcard match (`*` any run, `?` one character), as it matches resource ARNs.
fn iam_matches(pattern: &str, arn: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], a) || (!a.is_empty() && go(p, &a[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x == y => go(&p[1..], &a[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), arn.as_bytes())
}

#[test]
fn every_documented_reference_to_a_provider_credential_is_readable_by_the_send_path() {
    let t = template();
    let r = dev();
    let params = t.section("Parameters").unwrap();
    for (param, name) in [
        ("SendgridApiKey", "sendgrid-api-key"),
        ("MailgunApiKey", "mailgun-api-key"),
        ("PostmarkServerToken", "postmark-server-token"),
        ("Smtp2goApiKey", "smtp2go-api-key"),
    ] {
        // The two documented forms, as the parameter's pattern admits them for `dev`.
        let pattern = params[param]["AllowedPattern"].as_str().unwrap();
        assert_eq!(
            pattern,
            format!(
                "^(ssm:/mailgate/[a-z][a-z0-9-]{{0,19}}/{name}|secretsmanager:mailgate/[a-z][a-z0-9-]{{0,19}}/{name})?$"
            ),
            "{param}"
        );
        // What resolving each form calls (shared/aws/src/secrets.rs): GetParameter on the
        // parameter, or on SSM's reference path plus GetSecretValue on the secret, whose ARN
        // carries a six-character suffix.
        let ssm = format!("arn:aws:ssm:us-east-1:123456789012:parameter/mailgate/dev/{name}");
        let via_ssm = format!(
            "arn:aws:ssm:us-east-1:123456789012:parameter/aws/reference/secretsmanager/mailgate/dev/{name}"
        );
        let secret = format!(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:mailgate/dev/{name}-AbC123"
        );
        let other_secret = format!(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:mailgate/dev/{name}-other-AbC123"
        );
        for role in ["SendApiRole", "SendWorkerRole"] {
            let granted = |action: &str, arn: &str| {
                grants(&t, role, action)
                    .into_iter()
                    .flat_map(|(res, _)| res)
                    .map(|v| r.string(v).unwrap())
                    .any(|p| iam_matches(&p, arn))
            };
            assert!(granted("ssm:GetParameter", &ssm), "{role}: {ssm}");
            assert!(granted("ssm:GetParameter", &via_ssm), "{role}: {via_ssm}");
            assert!(
                granted("secretsmanager:GetSecretValue", &secret),
                "{role}: {secret}"
            );
            assert!(
                !granted("secretsmanager:GetSecretValue", &other_secret),
                "{role}: only that secret, not {other_secret}"
            );
        }
    }
}

#[test]
fn provider_credentials_are_references_never_plaintext() {
    let t = template();
    let params = t.section("Parameters").unwrap();
    for name in [
        "SendgridApiKey",
        "MailgunApiKey",
        "PostmarkServerToken",
        "Smtp2goApiKey",
        "UnsubscribeSigningKeys",
    ] {
        let pattern = params[name]["AllowedPattern"].as_str().unwrap();
        assert!(pattern.starts_with("^(ssm:/mailgate/"), "{name}: {pattern}");
        assert!(
            !pattern.contains(".*"),
            "{name}: only fixed names: {pattern}"
        );
        assert_eq!(params[name]["Default"], "", "{name}");
    }
    for f in t.resources_of("AWS::Serverless::Function") {
        let vars = f.properties.pointer("/Environment/Variables");
        for (k, v) in vars.and_then(Value::as_object).into_iter().flatten() {
            // A parameter checked above (ssm:/secretsmanager: references only) is fine too.
            if v["Ref"] == "UnsubscribeSigningKeys" {
                continue;
            }
            if k.ends_with("_KEYS") || k.ends_with("_CREDENTIALS") {
                let sub = v["Fn::Sub"].as_str().unwrap_or_default();
                assert!(sub.starts_with("ssm:/mailgate/${Environment}/"), "{k}: {v}");
            }
        }
    }
}

#[test]
fn every_dead_letter_queue_has_an_alarm_that_notifies_the_alarm_topic() {
    let t = template();
    let alarms: Vec<_> = t.resources_of("AWS::CloudWatch::Alarm").collect();
    for dlq in dead_letter_queues(&t) {
        let watched = alarms.iter().any(|a| {
            a.properties["Namespace"] == "AWS/SQS"
                && a.properties["MetricName"] == "ApproximateNumberOfMessagesVisible"
                && list(&a.properties["Dimensions"])
                    .iter()
                    .any(|d| d["Name"] == "QueueName" && d["Value"] == get_att(&dlq, "QueueName"))
                && a.properties["Threshold"] == 0
                && a.properties["ComparisonOperator"] == "GreaterThanThreshold"
        });
        assert!(watched, "{dlq} has no depth alarm");
    }
    for a in alarms {
        assert_eq!(
            a.properties["AlarmActions"],
            json!([{"Ref": "AlarmTopic"}]),
            "{}",
            a.logical_id
        );
        let name = a.properties["AlarmName"]["Fn::Sub"].as_str().unwrap();
        assert!(name.starts_with("mailgate-${Environment}-"), "{name}");
    }
    let subscription = t
        .resources_of("AWS::SNS::Subscription")
        .next()
        .expect("the optional e-mail subscription");
    assert_eq!(
        subscription.properties["TopicArn"],
        json!({"Ref": "AlarmTopic"})
    );
    assert!(
        t.section("Conditions")
            .unwrap()
            .get("HasAlarmEmail")
            .is_some()
    );
}

#[test]
fn every_function_has_an_error_rate_alarm() {
    let t = template();
    let alarms: Vec<_> = t.resources_of("AWS::CloudWatch::Alarm").collect();
    for f in t.resources_of("AWS::Serverless::Function") {
        let function = json!({"Ref": f.logical_id});
        let on = |metric: &str| {
            alarms.iter().any(|a| {
                list(&a.properties["Metrics"]).iter().any(|m| {
                    m.pointer("/MetricStat/Metric/MetricName") == Some(&json!(metric))
                        && m.pointer("/MetricStat/Metric/Dimensions/0/Value") == Some(&function)
                })
            })
        };
        assert!(on("Errors") && on("Invocations"), "{}", f.logical_id);
    }
}

/// The dimension set each `Mailgate` metric is emitted with (`metrics::count` call sites).
fn emitted_dimensions(metric: &str) -> Option<BTreeSet<&'static str>> {
    let set = |names: &[&'static str]| Some(names.iter().copied().collect());
    match metric {
        // shared/lambda/src/webhook.rs
        "WebhookVerificationFailures" => set(&["Provider", "Reason"]),
        "SnsUnsubscribed"
        | "WebhookIngestFailures"
        | "WebhookEventsQueued"
        | "WebhookDuplicates" => set(&["Provider"]),
        // functions/sweeper/src/lib.rs, count_stalled
        "WebhookReceiptsFailed" => set(&["Provider"]),
        // functions/dispatcher/src/lib.rs
        "AppWebhookDeliveries" => set(&["Outcome"]),
        // functions/event-processor/src/lib.rs, Tally::emit
        "Sent" | "Delivered" | "Deferred" | "Dropped" | "Bounces" | "HardBounces"
        | "SoftBounces" | "SenderSideBounces" | "Complaints" | "Unsubscribes" | "Opens"
        | "Clicks" | "RenderingFailures" | "UnknownEvents" | "OrphanEvents" | "DedupeHits"
        | "ProcessingFailures" | "UnmatchedEffects" | "GuardrailTripped" => {
            set(&["Provider", "Category"])
        }
        // functions/sweeper/src/lib.rs, count_stalled
        "StalledMessagesRequeued" | "StalledMessagesFailed" | "LapsedSendsUnknown" => set(&[]),
        // functions/event-processor/src/lib.rs, process_inbound
        "InboundParseFailures" => set(&[]),
        _ => None,
    }
}

#[test]
fn every_failure_metric_of_the_webhook_path_has_an_alarm_on_the_alarm_topic() {
    let t = template();
    for metric in [
        "WebhookVerificationFailures",
        "WebhookIngestFailures",
        "WebhookReceiptsFailed",
    ] {
        let alarmed = t.resources_of("AWS::CloudWatch::Alarm").any(|a| {
            list(&a.properties["Metrics"]).iter().any(|m| {
                m["Expression"]
                    .as_str()
                    .is_some_and(|e| e.contains(&format!("SUM({metric})")))
            }) && list(&a.properties["AlarmActions"]).contains(&&json!({"Ref": "AlarmTopic"}))
        });
        assert!(alarmed, "no alarm notifies the alarm topic on {metric}");
    }
}

#[test]
fn messages_the_sweeper_gives_up_on_and_unreadable_inbound_mail_raise_an_alarm_on_the_alarm_topic()
{
    let t = template();
    for metric in [
        "StalledMessagesFailed",
        "LapsedSendsUnknown",
        "InboundParseFailures",
    ] {
        let alarmed = t.resources_of("AWS::CloudWatch::Alarm").any(|a| {
            a.properties["MetricName"] == metric
                && list(&a.properties["AlarmActions"]).contains(&&json!({"Ref": "AlarmTopic"}))
        });
        assert!(alarmed, "no alarm notifies the alarm topic on {metric}");
    }
}

#[test]
fn alarms_on_mailgate_metrics_use_the_dimension_sets_the_code_emits() {
    let t = template();
    let mut checked = 0;
    for a in t.resources_of("AWS::CloudWatch::Alarm") {
        let id = a.logical_id;
        let p = a.properties;
        let mut stats: Vec<&Value> = Vec::new();
        if p["Namespace"] == "Mailgate" {
            stats.push(p);
        }
        for m in list(&p["Metrics"]) {
            if let Some(metric) = m.pointer("/MetricStat/Metric")
                && metric["Namespace"] == "Mailgate"
            {
                stats.push(metric);
            }
            // Metrics Insights: SELECT SUM(<metric>) FROM SCHEMA(Mailgate, <dimensions>)
            if let Some(query) = m["Expression"].as_str()
                && let Some(rest) = query.strip_prefix("SELECT SUM(")
            {
                let (metric, rest) = rest.split_once(')').unwrap();
                let schema = rest
                    .trim()
                    .strip_prefix("FROM SCHEMA(Mailgate,")
                    .and_then(|s| s.strip_suffix(')'))
                    .unwrap_or_else(|| panic!("{id}: {query}"));
                let dims: BTreeSet<&str> = schema.split(',').map(str::trim).collect();
                assert_eq!(Some(dims), emitted_dimensions(metric), "{id}: {query}");
                checked += 1;
            }
        }
        for s in stats {
            let metric = s["MetricName"].as_str().unwrap();
            let dims: BTreeSet<&str> = list(&s["Dimensions"])
                .into_iter()
                .map(|d| d["Name"].as_str().unwrap())
                .collect();
            assert_eq!(Some(dims), emitted_dimensions(metric), "{id}: {metric}");
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked}");
}

#[test]
fn bounce_and_complaint_rate_alarms_use_the_ses_review_thresholds_for_every_provider() {
    let t = template();
    for provider in ["Ses", "Sendgrid", "Mailgun", "Postmark", "Smtp2go"] {
        for (kind, threshold) in [("BounceRate", 5.0), ("ComplaintRate", 0.1)] {
            let id = format!("{provider}{kind}Alarm");
            let a = t.resources().find(|r| r.logical_id == id).unwrap();
            assert_eq!(a.properties["Threshold"].as_f64(), Some(threshold), "{id}");
            let metrics = list(&a.properties["Metrics"]);
            assert!(
                metrics.len() <= 10,
                "{id}: an alarm holds at most 10 metrics"
            );
            let returned: Vec<_> = metrics.iter().filter(|m| m["ReturnData"] == true).collect();
            assert_eq!(returned.len(), 1, "{id}");
        }
    }
}

#[test]
fn every_function_url_is_public_behind_its_signature_and_an_output() {
    let t = template();
    let outputs = t.section("Outputs").unwrap().as_object().unwrap();
    let mut urls = 0;
    for f in t.resources_of("AWS::Serverless::Function") {
        let Some(config) = f.properties.get("FunctionUrlConfig") else {
            continue;
        };
        urls += 1;
        assert_eq!(config["AuthType"], "NONE", "{}", f.logical_id);
        let want = get_att(&format!("{}Url", f.logical_id), "FunctionUrl");
        assert!(
            outputs.values().any(|o| o["Value"] == want),
            "{} has no output",
            f.logical_id
        );
    }
    assert_eq!(urls, 6);
}

#[test]
fn the_dashboard_is_json_once_substituted_and_watches_every_dead_letter_queue() {
    let t = template();
    let d = t.resources_of("AWS::CloudWatch::Dashboard").next().unwrap();
    let body = d.properties["DashboardBody"]["Fn::Sub"].as_str().unwrap();
    let mut text = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        text.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap();
        text.push('x');
        rest = &rest[start + end + 1..];
    }
    text.push_str(rest);
    let json: Value = serde_json::from_str(&text).unwrap();
    assert!(json["widgets"].as_array().unwrap().len() >= 10);
    for dlq in dead_letter_queues(&t) {
        assert!(body.contains(&format!("${{{dlq}.QueueName}}")), "{dlq}");
    }
}

#[test]
fn every_named_resource_carries_the_environment() {
    let t = template();
    let name_keys = [
        "TableName",
        "QueueName",
        "FunctionName",
        "LogGroupName",
        "AlarmName",
        "TopicName",
        "DashboardName",
        "Name",
    ];
    for r in t.resources() {
        for key in name_keys {
            if let Some(v) = r.properties.get(key) {
                let sub = v["Fn::Sub"].as_str().unwrap_or_default();
                assert!(
                    sub.contains("${Environment}"),
                    "{}.{key}: {v}",
                    r.logical_id
                );
            }
        }
    }
    let env = &t.section("Parameters").unwrap()["Environment"];
    assert_eq!(env["AllowedPattern"], "^[a-z][a-z0-9-]{0,19}$");
}

#[test]
fn samconfig_has_a_dev_and_a_prod_environment() {
    let text = std::fs::read_to_string(workspace_root().join("infra/samconfig.toml")).unwrap();
    for section in [
        "[dev.deploy.parameters]",
        "[prod.deploy.parameters]",
        "[dev.build.parameters]",
        "[prod.build.parameters]",
    ] {
        assert!(text.contains(section), "{section}");
    }
    let prod = &text[text.find("[prod.deploy.parameters]").unwrap()..];
    assert!(prod.contains("confirm_changeset = true"));
    assert!(prod.contains("\"Environment=prod\""));
    assert!(text.contains("capabilities = \"CAPABILITY_IAM\""));
    assert!(text.contains("resolve_s3 = true"));
}
