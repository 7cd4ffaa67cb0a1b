//! The local stack is built from `infra/template.yaml`: keys, GSIs, TTL and redrive as declared,
//! and a second provisioning changes nothing.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::TimeToLiveStatus;
use aws_sdk_sqs::types::QueueAttributeName;
use mailgate_local::{StackSpec, Template, provision};
use mailgate_tests::{TestStack, workspace_root};
use serde_json::Value;

fn template() -> Template {
    Template::load(&workspace_root().join("infra/template.yaml")).unwrap()
}

#[tokio::test]
async fn every_table_and_queue_of_the_template_exists_with_its_keys_indexes_ttl_and_redrive() {
    let t = TestStack::new().await;
    let tpl = template();
    let tables: Vec<_> = tpl.resources_of("AWS::DynamoDB::Table").collect();
    assert_eq!(t.stack.tables.len(), tables.len());
    assert!(tables.len() >= 8);
    for r in tables {
        let name = t.table(r.logical_id);
        assert!(
            name.starts_with(&format!("mailgate-{}-", t.stack.environment)),
            "{name}"
        );
        let desc = t
            .clients
            .dynamodb
            .describe_table()
            .table_name(&name)
            .send()
            .await
            .unwrap()
            .table
            .unwrap();
        let keys: Vec<_> = desc
            .key_schema()
            .iter()
            .map(|k| {
                (
                    k.attribute_name().to_owned(),
                    k.key_type().as_str().to_owned(),
                )
            })
            .collect();
        let want: Vec<_> = r.properties["KeySchema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["AttributeName"].as_str().unwrap().to_owned(),
                    k["KeyType"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(keys, want, "{}", r.logical_id);
        let mut gsis: Vec<_> = desc
            .global_secondary_indexes()
            .iter()
            .filter_map(|g| g.index_name().map(str::to_owned))
            .collect();
        let mut want_gsis: Vec<_> = r
            .properties
            .get("GlobalSecondaryIndexes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|g| g["IndexName"].as_str().unwrap().to_owned())
            .collect();
        gsis.sort();
        want_gsis.sort();
        assert_eq!(gsis, want_gsis, "{}", r.logical_id);
        let ttl = t
            .clients
            .dynamodb
            .describe_time_to_live()
            .table_name(&name)
            .send()
            .await
            .unwrap()
            .time_to_live_description
            .unwrap();
        match r.properties.get("TimeToLiveSpecification") {
            Some(spec) => {
                assert_eq!(
                    ttl.time_to_live_status,
                    Some(TimeToLiveStatus::Enabled),
                    "{}",
                    r.logical_id
                );
                assert_eq!(
                    ttl.attribute_name.as_deref(),
                    spec["AttributeName"].as_str()
                );
            }
            None => assert_ne!(
                ttl.time_to_live_status,
                Some(TimeToLiveStatus::Enabled),
                "{}",
                r.logical_id
            ),
        }
    }
    for main in ["SendQueue", "EventsQueue", "OutboundQueue"] {
        let attrs = t
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(t.queue_url(main))
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        let redrive: Value =
            serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).unwrap();
        let dlq = main.replace("Queue", "DeadLetterQueue");
        assert_eq!(
            redrive["deadLetterTargetArn"],
            t.stack.queues[&dlq].arn.as_str(),
            "{main}"
        );
        // App-webhook deliveries retry with backoff for hours; the others five times.
        let expected = if main == "OutboundQueue" { "10" } else { "5" };
        assert_eq!(
            redrive["maxReceiveCount"].to_string().trim_matches('"'),
            expected,
            "{main}"
        );
        assert_eq!(attrs[&QueueAttributeName::VisibilityTimeout], "180");
    }
}

#[tokio::test]
async fn provisioning_twice_changes_nothing_and_does_not_fail() {
    let t = TestStack::new().await;
    let spec = StackSpec {
        parameters: BTreeMap::from([("Environment".to_owned(), t.stack.environment.clone())]),
        ses_identity: Some("example.com".to_owned()),
    };
    let again = provision(&t.sdk, &template(), &spec)
        .await
        .expect("a second provisioning succeeds");
    assert_eq!(again.tables, t.stack.tables);
    assert_eq!(again.queues, t.stack.queues);
    assert_eq!(again.functions, t.stack.functions);
}

#[tokio::test]
async fn a_table_whose_keys_drifted_from_the_template_is_reported() {
    let t = TestStack::new().await;
    let name = t.table("DedupeTable");
    t.clients
        .dynamodb
        .delete_table()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    use aws_sdk_dynamodb::types::*;
    t.clients
        .dynamodb
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let spec = StackSpec {
        parameters: BTreeMap::from([("Environment".to_owned(), t.stack.environment.clone())]),
        ses_identity: None,
    };
    let err = provision(&t.sdk, &template(), &spec)
        .await
        .expect_err("drift must be reported");
    assert!(err.to_string().contains(&name), "{err}");
}

#[tokio::test]
async fn functions_get_their_environment_from_the_template() {
    let t = TestStack::new().await;
    let mut names: Vec<_> = t
        .stack
        .functions
        .iter()
        .map(|f| f.binary.as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "dispatcher",
            "event-processor",
            "send-api",
            "send-worker",
            "sweeper",
            "unsubscribe",
            "webhook-mailgun",
            "webhook-postmark",
            "webhook-sendgrid",
            "webhook-ses",
            "webhook-smtp2go",
        ]
    );
    let env = &t.stack.function("send-api").unwrap().environment;
    assert_eq!(env["MESSAGES_TABLE"], t.table("MessagesTable"));
    assert_eq!(env["SEND_QUEUE_URL"], t.queue_url("SendQueue"));
    assert_eq!(env["RUST_LOG"], "info");
    for f in &t.stack.functions {
        for table in mailgate_aws::Table::ALL {
            assert!(
                f.environment.contains_key(table.env_var()),
                "{} lacks {}",
                f.binary,
                table.env_var()
            );
        }
    }
}
