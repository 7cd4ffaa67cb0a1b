//! `DynamoDbTemplates`: message templates in the templates table.
//!
//! Item layout (see `infra/README.md`, the `templates` row):
//! - `pk = tpl#<id>`, `sk = meta`: the [`TemplateRecord`] (`environment`, `name`,
//!   `latest_version`, `published_version`, `created_at`, `updated_at`); `environment` and `id`
//!   key the `by-environment` index that lists an environment's templates;
//! - `pk = tpl#<id>`, `sk = v#<number, 6 digits>`: one immutable version (`subject`, `html`,
//!   `text`, `created_at`).
//!
//! Creating writes the record and version 1 in one transaction; adding a version writes the
//! version and moves the record in one transaction conditioned on the latest version, so two
//! concurrent updates make two versions, never one overwriting the other.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use mailgate_core::ports::{
    BoxFuture, TemplatePage, TemplateRecord, TemplateStore, TemplateVersion,
};
use mailgate_core::template::{TemplateContent, TemplateId};
use mailgate_core::{KeyEnvironment, StoreError, StoreErrorKind, UnixMillis};

use crate::sdk::store_error;

type Item = HashMap<String, AttributeValue>;

const META: &str = "meta";

fn pk(id: &TemplateId) -> String {
    format!("tpl#{id}")
}

fn version_sk(number: u32) -> String {
    format!("v#{number:06}")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)?.as_s().ok().map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn corrupt(what: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        "templates",
        format!("a stored template has no valid {what}"),
    )
}

fn built(e: impl std::fmt::Display) -> StoreError {
    StoreError::new(StoreErrorKind::Other, "TransactWriteItems", e.to_string())
}

fn record_item(r: &TemplateRecord) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(pk(&r.id))),
        ("sk".to_owned(), s(META)),
        ("id".to_owned(), s(r.id.as_str())),
        ("environment".to_owned(), s(r.environment.as_str())),
        ("name".to_owned(), s(&r.name)),
        ("latest_version".to_owned(), n(i64::from(r.latest_version))),
        (
            "published_version".to_owned(),
            n(i64::from(r.published_version)),
        ),
        ("created_at".to_owned(), n(r.created_at.as_i64())),
        ("updated_at".to_owned(), n(r.updated_at.as_i64())),
    ])
}

fn record_from(item: &Item) -> Result<TemplateRecord, StoreError> {
    let number = |name: &str| {
        get_n(item, name)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| corrupt(name))
    };
    Ok(TemplateRecord {
        id: get_s(item, "id")
            .and_then(|v| TemplateId::parse(v).ok())
            .ok_or_else(|| corrupt("id"))?,
        environment: get_s(item, "environment")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| corrupt("environment"))?,
        name: get_s(item, "name")
            .ok_or_else(|| corrupt("name"))?
            .to_owned(),
        latest_version: number("latest_version")?,
        published_version: number("published_version")?,
        created_at: UnixMillis(get_n(item, "created_at").ok_or_else(|| corrupt("created_at"))?),
        updated_at: UnixMillis(get_n(item, "updated_at").unwrap_or_default()),
    })
}

fn version_item(id: &TemplateId, v: &TemplateVersion) -> Item {
    let mut item = HashMap::from([
        ("pk".to_owned(), s(pk(id))),
        ("sk".to_owned(), s(version_sk(v.number))),
        ("number".to_owned(), n(i64::from(v.number))),
        ("subject".to_owned(), s(&v.content.subject)),
        ("created_at".to_owned(), n(v.created_at.as_i64())),
    ]);
    if let Some(html) = &v.content.html {
        item.insert("html".to_owned(), s(html));
    }
    if let Some(text) = &v.content.text {
        item.insert("text".to_owned(), s(text));
    }
    item
}

fn version_from(item: &Item) -> Result<TemplateVersion, StoreError> {
    Ok(TemplateVersion {
        number: get_n(item, "number")
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| corrupt("version number"))?,
        content: TemplateContent {
            subject: get_s(item, "subject")
                .ok_or_else(|| corrupt("subject"))?
                .to_owned(),
            html: get_s(item, "html").map(str::to_owned),
            text: get_s(item, "text").map(str::to_owned),
        },
        created_at: UnixMillis(get_n(item, "created_at").unwrap_or_default()),
    })
}

/// Templates in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoDbTemplates {
    table: crate::dynamodb::TableHandle,
}

impl DynamoDbTemplates {
    /// The templates in `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self::on(crate::TableHandle::new(client, table))
    }

    /// The same adapter on a table handle of the function's DynamoDB foundation.
    pub fn on(table: crate::TableHandle) -> Self {
        Self { table }
    }

    async fn item(&self, pk_value: String, sk: String) -> Result<Option<Item>, StoreError> {
        let out = self
            .table
            .client()
            .get_item()
            .table_name(self.table.name())
            .key("pk", s(pk_value))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item)
    }

    async fn put_both(&self, record: Put, version: Put) -> Result<Result<(), ()>, StoreError> {
        let result = self
            .table
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(record).build())
            .transact_items(TransactWriteItem::builder().put(version).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(err)
                if crate::dynamodb::cancellation_codes(&err)
                    .iter()
                    .any(|c| c == "ConditionalCheckFailed") =>
            {
                Ok(Err(()))
            }
            Err(err) => Err(crate::sdk::transaction_error(err)),
        }
    }
}

impl TemplateStore for DynamoDbTemplates {
    fn create<'a>(
        &'a self,
        record: &'a TemplateRecord,
        first: &'a TemplateVersion,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let meta = Put::builder()
                .table_name(self.table.name())
                .set_item(Some(record_item(record)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(built)?;
            let version = Put::builder()
                .table_name(self.table.name())
                .set_item(Some(version_item(&record.id, first)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(built)?;
            match self.put_both(meta, version).await? {
                Ok(()) => Ok(()),
                Err(()) => Err(StoreError::new(
                    StoreErrorKind::ConditionFailed,
                    "TransactWriteItems",
                    "a template with this id exists",
                )),
            }
        })
    }

    fn get<'a>(
        &'a self,
        id: &'a TemplateId,
    ) -> BoxFuture<'a, Result<Option<TemplateRecord>, StoreError>> {
        Box::pin(async move {
            self.item(pk(id), META.to_owned())
                .await?
                .map(|i| record_from(&i))
                .transpose()
        })
    }

    fn version<'a>(
        &'a self,
        id: &'a TemplateId,
        number: u32,
    ) -> BoxFuture<'a, Result<Option<TemplateVersion>, StoreError>> {
        Box::pin(async move {
            self.item(pk(id), version_sk(number))
                .await?
                .map(|i| version_from(&i))
                .transpose()
        })
    }

    fn add_version<'a>(
        &'a self,
        record: &'a TemplateRecord,
        version: &'a TemplateVersion,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let update = Update::builder()
                .table_name(self.table.name())
                .key("pk", s(pk(&record.id)))
                .key("sk", s(META))
                .update_expression(
                    "SET latest_version = :latest, published_version = :published, \
                     #name = :name, updated_at = :now",
                )
                .condition_expression("attribute_exists(pk) AND latest_version = :previous")
                .expression_attribute_names("#name", "name")
                .expression_attribute_values(":latest", n(i64::from(version.number)))
                .expression_attribute_values(":published", n(i64::from(record.published_version)))
                .expression_attribute_values(":name", s(&record.name))
                .expression_attribute_values(":now", n(record.updated_at.as_i64()))
                .expression_attribute_values(
                    ":previous",
                    n(i64::from(version.number.saturating_sub(1))),
                )
                .build()
                .map_err(built)?;
            let put = Put::builder()
                .table_name(self.table.name())
                .set_item(Some(version_item(&record.id, version)))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(built)?;
            let result = self
                .table
                .client()
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(update).build())
                .transact_items(TransactWriteItem::builder().put(put).build())
                .send()
                .await;
            match result {
                Ok(_) => Ok(true),
                Err(err)
                    if crate::dynamodb::cancellation_codes(&err)
                        .iter()
                        .any(|c| c == "ConditionalCheckFailed") =>
                {
                    Ok(false)
                }
                Err(err) => Err(crate::sdk::transaction_error(err)),
            }
        })
    }

    fn delete<'a>(&'a self, id: &'a TemplateId) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let out = self
                .table
                .client()
                .delete_item()
                .table_name(self.table.name())
                .key("pk", s(pk(id)))
                .key("sk", s(META))
                .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
                .send()
                .await
                .map_err(|e| store_error("DeleteItem", e))?;
            Ok(out.attributes.is_some_and(|a| !a.is_empty()))
        })
    }

    fn list<'a>(
        &'a self,
        environment: KeyEnvironment,
        limit: u32,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<TemplatePage, StoreError>> {
        Box::pin(async move {
            let mut query = self
                .table
                .client()
                .query()
                .table_name(self.table.name())
                .index_name("by-environment")
                .key_condition_expression("environment = :env")
                .expression_attribute_values(":env", s(environment.as_str()))
                .limit(i32::try_from(limit).unwrap_or(100));
            if let Some(after) = cursor {
                let id = TemplateId::parse(after).map_err(|_| {
                    StoreError::new(StoreErrorKind::Other, "Query", "the cursor is not valid")
                })?;
                query = query.set_exclusive_start_key(Some(HashMap::from([
                    ("pk".to_owned(), s(pk(&id))),
                    ("sk".to_owned(), s(META)),
                    ("id".to_owned(), s(id.as_str())),
                    ("environment".to_owned(), s(environment.as_str())),
                ])));
            }
            let out = query.send().await.map_err(|e| store_error("Query", e))?;
            let templates = out
                .items()
                .iter()
                .map(record_from)
                .collect::<Result<Vec<_>, _>>()?;
            let next_cursor = out
                .last_evaluated_key
                .as_ref()
                .and_then(|k| get_s(k, "id"))
                .map(str::to_owned);
            Ok(TemplatePage {
                templates,
                next_cursor,
            })
        })
    }
}
