//! Message templates: create, read, list, version, delete and preview them, and resolve the
//! `template` of a send request into the content that is stored and sent.
//!
//! A template belongs to the environment of the key that created it; a key of the other
//! environment never sees it (404, as for messages). Every `PUT` adds an immutable version,
//! published unless `"publish": false`; a send without `version` uses the published one.
//!
//! | situation | answer |
//! |---|---|
//! | body not JSON, unknown field, wrong type | 400 `malformed_json` / `unknown_field` / `invalid_type` |
//! | bad name, no body, bad syntax, too large | 422 `invalid_template` with the field |
//! | no such template (or another environment's) | 404 `not_found` |
//! | no such version | 422 `template_version_not_found` |
//! | data misses variables (every one named in `missing`) | 422 `template_render_failed` |
//! | another update added the same version first | 409 `template_version_conflict` |
//! | the store failed | 503 `service_unavailable` |

use std::sync::Arc;

use mailgate_core::ports::{TemplateRecord, TemplateStore, TemplateVersion};
use mailgate_core::template::{
    TemplateContent, TemplateError, TemplateId, TemplateLimits, TemplateUse, check_name,
};
use mailgate_core::{Clock, KeyEnvironment, StoreError, UnixMillis};
use serde::Deserialize;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

/// A refused template request: status, machine-readable code, message and the field at fault.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateFailure {
    /// The HTTP status.
    pub status: u16,
    /// The error code.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// The field at fault, if one is.
    pub field: Option<String>,
    /// The missing variables of a `template_render_failed`.
    pub missing: Vec<String>,
}

impl TemplateFailure {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            missing: Vec::new(),
        }
    }

    fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    fn not_found(id: &str) -> Self {
        Self::new(404, "not_found", format!("no template {id}"))
    }

    fn store(err: &StoreError) -> Self {
        tracing::error!(error = %err, "template store failed");
        Self::new(
            503,
            "service_unavailable",
            "the template store is unavailable; try again",
        )
    }

    /// A rendering or source error, on `field` (`template` for a send, the part otherwise).
    pub fn of_template_error(err: TemplateError, field: &str) -> Self {
        match err {
            TemplateError::MissingVariables { missing } => {
                let mut f = Self::new(
                    422,
                    "template_render_failed",
                    format!(
                        "{}",
                        TemplateError::MissingVariables {
                            missing: missing.clone()
                        }
                    ),
                )
                .field(format!("{field}.data"));
                f.missing = missing;
                f
            }
            TemplateError::Render { .. } => {
                TemplateFailure::new(422, "template_render_failed", err.to_string()).field(field)
            }
            TemplateError::Syntax { part, .. } => {
                let at = if field == "template" {
                    field.to_owned()
                } else {
                    part.to_owned()
                };
                Self::new(422, "invalid_template", err.to_string()).field(at)
            }
            TemplateError::TooLarge(_) => {
                TemplateFailure::new(422, "template_too_large", err.to_string()).field(field)
            }
        }
    }

    /// The error body: `{"error": {"code", "message", "field"?, "missing"?}}`.
    pub fn to_json(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = &self.field {
            error["field"] = json!(field);
        }
        if !self.missing.is_empty() {
            error["missing"] = json!(self.missing);
        }
        json!({ "error": error })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    subject: String,
    #[serde(default)]
    html: Option<String>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default)]
    name: Option<String>,
    subject: String,
    #[serde(default)]
    html: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    publish: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenderBody {
    #[serde(default)]
    version: Option<u32>,
    #[serde(default = "empty_object")]
    data: Value,
}

fn empty_object() -> Value {
    json!({})
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, TemplateFailure> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let text = inner.to_string();
        let code = if inner.is_syntax() || inner.is_eof() {
            "malformed_json"
        } else if text.starts_with("unknown field") {
            "unknown_field"
        } else if text.starts_with("missing field") {
            "required"
        } else {
            "invalid_type"
        };
        let status = if code == "required" { 422 } else { 400 };
        let f = TemplateFailure::new(status, code, text);
        if path.is_empty() || path == "." {
            f
        } else {
            f.field(path)
        }
    })
}

fn rfc3339(at: UnixMillis) -> Value {
    at.to_datetime()
        .format(&Rfc3339)
        .map_or(Value::Null, Value::String)
}

fn record_json(r: &TemplateRecord) -> Value {
    json!({
        "id": r.id.as_str(),
        "name": r.name,
        "latest_version": r.latest_version,
        "published_version": r.published_version,
        "created_at": rfc3339(r.created_at),
        "updated_at": rfc3339(r.updated_at),
    })
}

fn content_json(c: &TemplateContent) -> Value {
    json!({"subject": c.subject, "html": c.html, "text": c.text})
}

/// A template resolved for a send: which version, and the rendered content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedTemplate {
    /// The template.
    pub id: TemplateId,
    /// The version rendered.
    pub version: u32,
    /// Its rendering.
    pub content: TemplateContent,
}

/// The template service over its store.
#[derive(Clone)]
pub struct Templates {
    store: Arc<dyn TemplateStore>,
    clock: Arc<dyn Clock>,
    limits: TemplateLimits,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Templates {
    /// Templates in `store`, on `clock`.
    pub fn new(store: Arc<dyn TemplateStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            limits: TemplateLimits::default(),
        }
    }

    fn now(&self) -> UnixMillis {
        UnixMillis::from(self.clock.now())
    }

    fn checked(
        &self,
        name: Option<&str>,
        content: &TemplateContent,
    ) -> Result<(), TemplateFailure> {
        if let Some(name) = name {
            check_name(name, &self.limits)
                .map_err(|m| TemplateFailure::new(422, "invalid_template", m).field("name"))?;
        }
        content
            .check(&self.limits)
            .map_err(|e| TemplateFailure::of_template_error(e, "body"))
    }

    /// The template `id` as `environment` may see it.
    async fn visible(
        &self,
        environment: KeyEnvironment,
        id: &str,
    ) -> Result<TemplateRecord, TemplateFailure> {
        let parsed = TemplateId::parse(id).map_err(|_| TemplateFailure::not_found(id))?;
        match self.store.get(&parsed).await {
            Ok(Some(r)) if r.environment == environment => Ok(r),
            Ok(_) => Err(TemplateFailure::not_found(id)),
            Err(e) => Err(TemplateFailure::store(&e)),
        }
    }

    async fn version_of(
        &self,
        record: &TemplateRecord,
        number: Option<u32>,
        field: &str,
    ) -> Result<TemplateVersion, TemplateFailure> {
        let number = number.unwrap_or(record.published_version);
        match self.store.version(&record.id, number).await {
            Ok(Some(v)) if number <= record.latest_version => Ok(v),
            Ok(_) => Err(TemplateFailure::new(
                422,
                "template_version_not_found",
                format!(
                    "template {} has versions 1 to {}; there is no version {number}",
                    record.id, record.latest_version
                ),
            )
            .field(field)),
            Err(e) => Err(TemplateFailure::store(&e)),
        }
    }

    /// `POST /v1/templates`: the new template (version 1, published), for 201.
    pub async fn create(
        &self,
        environment: KeyEnvironment,
        body: &[u8],
    ) -> Result<Value, TemplateFailure> {
        let body: CreateBody = parse(body)?;
        let content = TemplateContent {
            subject: body.subject,
            html: body.html,
            text: body.text,
        };
        self.checked(Some(&body.name), &content)?;
        let now = self.now();
        let record = TemplateRecord {
            id: TemplateId::generate(),
            environment,
            name: body.name,
            latest_version: 1,
            published_version: 1,
            created_at: now,
            updated_at: now,
        };
        let version = TemplateVersion {
            number: 1,
            content,
            created_at: now,
        };
        self.store
            .create(&record, &version)
            .await
            .map_err(|e| TemplateFailure::store(&e))?;
        let mut out = record_json(&record);
        out["version"] = json!(1);
        out["content"] = content_json(&version.content);
        Ok(out)
    }

    /// `GET /v1/templates/{id}`: the record with its published version's content.
    pub async fn get(
        &self,
        environment: KeyEnvironment,
        id: &str,
    ) -> Result<Value, TemplateFailure> {
        let record = self.visible(environment, id).await?;
        let version = self.version_of(&record, None, "version").await?;
        let mut out = record_json(&record);
        out["content"] = content_json(&version.content);
        Ok(out)
    }

    /// `GET /v1/templates`: one page of the environment's templates.
    pub async fn list(
        &self,
        environment: KeyEnvironment,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Value, TemplateFailure> {
        let page = self
            .store
            .list(environment, limit, cursor)
            .await
            .map_err(|e| match e.kind() {
                mailgate_core::StoreErrorKind::Other => {
                    TemplateFailure::new(400, "invalid_cursor", "the cursor is not valid")
                        .field("cursor")
                }
                _ => TemplateFailure::store(&e),
            })?;
        Ok(json!({
            "data": page.templates.iter().map(record_json).collect::<Vec<_>>(),
            "next_cursor": page.next_cursor,
        }))
    }

    /// `PUT /v1/templates/{id}`: a new version, published unless `"publish": false`.
    pub async fn update(
        &self,
        environment: KeyEnvironment,
        id: &str,
        body: &[u8],
    ) -> Result<Value, TemplateFailure> {
        let body: UpdateBody = parse(body)?;
        let content = TemplateContent {
            subject: body.subject,
            html: body.html,
            text: body.text,
        };
        self.checked(body.name.as_deref(), &content)?;
        let current = self.visible(environment, id).await?;
        let number = current.latest_version + 1;
        let now = self.now();
        let record = TemplateRecord {
            name: body.name.unwrap_or_else(|| current.name.clone()),
            latest_version: number,
            published_version: if body.publish.unwrap_or(true) {
                number
            } else {
                current.published_version
            },
            updated_at: now,
            ..current
        };
        let version = TemplateVersion {
            number,
            content,
            created_at: now,
        };
        match self.store.add_version(&record, &version).await {
            Ok(true) => {
                let mut out = record_json(&record);
                out["version"] = json!(number);
                out["content"] = content_json(&version.content);
                Ok(out)
            }
            Ok(false) => Err(TemplateFailure::new(
                409,
                "template_version_conflict",
                "another update added this version first; read the template and try again",
            )),
            Err(e) => Err(TemplateFailure::store(&e)),
        }
    }

    /// `DELETE /v1/templates/{id}`.
    pub async fn delete(
        &self,
        environment: KeyEnvironment,
        id: &str,
    ) -> Result<(), TemplateFailure> {
        let record = self.visible(environment, id).await?;
        match self.store.delete(&record.id).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(TemplateFailure::not_found(id)),
            Err(e) => Err(TemplateFailure::store(&e)),
        }
    }

    /// `POST /v1/templates/{id}/render`: the preview of a version with `data`.
    pub async fn preview(
        &self,
        environment: KeyEnvironment,
        id: &str,
        body: &[u8],
    ) -> Result<Value, TemplateFailure> {
        let body: RenderBody = parse(if body.is_empty() { b"{}" } else { body })?;
        let used = TemplateUse {
            id: TemplateId::parse(id).map_err(|_| TemplateFailure::not_found(id))?,
            version: body.version,
            data: body.data,
        };
        let rendered = self.resolve(environment, &used, "").await?;
        Ok(json!({
            "id": rendered.id.as_str(),
            "version": rendered.version,
            "subject": rendered.content.subject,
            "html": rendered.content.html,
            "text": rendered.content.text,
        }))
    }

    /// Renders the template a send names (`field` is where the request holds it, e.g.
    /// `template` or `messages[2].template`; empty for a preview).
    pub async fn resolve(
        &self,
        environment: KeyEnvironment,
        used: &TemplateUse,
        field: &str,
    ) -> Result<RenderedTemplate, TemplateFailure> {
        let at = |leaf: &str| {
            if field.is_empty() {
                leaf.to_owned()
            } else {
                format!("{field}.{leaf}")
            }
        };
        if !used.data.is_object() {
            return Err(
                TemplateFailure::new(422, "invalid_type", "`data` must be a JSON object")
                    .field(at("data")),
            );
        }
        let record = self
            .visible(environment, used.id.as_str())
            .await
            .map_err(|f| {
                if f.status == 404 {
                    TemplateFailure::new(
                        422,
                        "template_not_found",
                        format!("no template {}", used.id),
                    )
                    .field(at("id"))
                } else {
                    f
                }
            })?;
        let version = self
            .version_of(&record, used.version, &at("version"))
            .await?;
        let content = version
            .content
            .render(&used.data, &self.limits)
            .map_err(|e| {
                let mut f = TemplateFailure::of_template_error(
                    e,
                    if field.is_empty() { "template" } else { field },
                );
                if field.is_empty() {
                    f.field = f
                        .field
                        .map(|p| p.trim_start_matches("template.").to_owned());
                }
                f
            })?;
        Ok(RenderedTemplate {
            id: record.id,
            version: version.number,
            content,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use mailgate_core::{FixedClock, StoreErrorKind};

    use super::*;
    use crate::testing::MemoryTemplates;

    fn service() -> (Templates, Arc<MemoryTemplates>) {
        let store = Arc::new(MemoryTemplates::default());
        let clock = Arc::new(FixedClock::at_unix(1_790_000_000));
        (Templates::new(store.clone(), clock), store)
    }

    const WELCOME: &str = r#"{"name":"Welcome","subject":"Hi {{ name }}","html":"<p>{{ name }}</p>","text":"Hello {{ name }}"}"#;

    #[tokio::test]
    async fn a_template_is_created_versioned_published_and_previewed() {
        let (t, _) = service();
        let created = t
            .create(KeyEnvironment::Live, WELCOME.as_bytes())
            .await
            .unwrap();
        let id = created["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("tpl_"));
        assert_eq!(created["published_version"], 1);

        let draft = r#"{"subject":"Draft {{ name }}","text":"x","publish":false}"#;
        let v2 = t
            .update(KeyEnvironment::Live, &id, draft.as_bytes())
            .await
            .unwrap();
        assert_eq!(
            (
                v2["latest_version"].as_u64(),
                v2["published_version"].as_u64()
            ),
            (Some(2), Some(1))
        );

        let preview = t
            .preview(KeyEnvironment::Live, &id, br#"{"data":{"name":"<Ann>"}}"#)
            .await
            .unwrap();
        assert_eq!(preview["version"], 1, "the published version");
        assert_eq!(preview["subject"], "Hi <Ann>");
        assert_eq!(preview["html"], "<p>&lt;Ann&gt;</p>");
        let draft = t
            .preview(
                KeyEnvironment::Live,
                &id,
                br#"{"version":2,"data":{"name":"Ann"}}"#,
            )
            .await
            .unwrap();
        assert_eq!(draft["subject"], "Draft Ann");
        let listed = t.list(KeyEnvironment::Live, 10, None).await.unwrap();
        assert_eq!(listed["data"].as_array().unwrap().len(), 1);
        // Another environment sees nothing of it.
        assert_eq!(
            t.get(KeyEnvironment::Test, &id).await.unwrap_err().status,
            404
        );
        assert!(
            t.list(KeyEnvironment::Test, 10, None).await.unwrap()["data"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        t.delete(KeyEnvironment::Live, &id).await.unwrap();
        assert_eq!(
            t.get(KeyEnvironment::Live, &id).await.unwrap_err().status,
            404
        );
    }

    #[tokio::test]
    async fn bad_templates_and_missing_data_are_refused_with_the_field() {
        let (t, _) = service();
        let e = t
            .create(KeyEnvironment::Live, br#"{"name":"x","subject":"{{ a"}"#)
            .await
            .unwrap_err();
        assert_eq!((e.status, e.code), (422, "invalid_template"));
        let e = t
            .create(
                KeyEnvironment::Live,
                br#"{"name":"x","subject":"s","text":"{{ a"}"#,
            )
            .await
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("text"));
        let e = t
            .create(
                KeyEnvironment::Live,
                br#"{"name":"x","subject":"s","text":"t","bogus":1}"#,
            )
            .await
            .unwrap_err();
        assert_eq!((e.status, e.code), (400, "unknown_field"));
        let e = t.create(KeyEnvironment::Live, b"{").await.unwrap_err();
        assert_eq!((e.status, e.code), (400, "malformed_json"));

        let created = t
            .create(KeyEnvironment::Live, WELCOME.as_bytes())
            .await
            .unwrap();
        let id = TemplateId::parse(created["id"].as_str().unwrap()).unwrap();
        let used = TemplateUse {
            id,
            version: None,
            data: json!({}),
        };
        let e = t
            .resolve(KeyEnvironment::Live, &used, "template")
            .await
            .unwrap_err();
        assert_eq!((e.status, e.code), (422, "template_render_failed"));
        assert_eq!(e.missing, vec!["name".to_owned()]);
        assert_eq!(e.field.as_deref(), Some("template.data"));
        let used = TemplateUse {
            version: Some(9),
            data: json!({"name": "x"}),
            ..used
        };
        let e = t
            .resolve(KeyEnvironment::Live, &used, "template")
            .await
            .unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("template_version_not_found", Some("template.version"))
        );
        let e = t
            .resolve(
                KeyEnvironment::Test,
                &TemplateUse {
                    version: None,
                    ..used
                },
                "template",
            )
            .await
            .unwrap_err();
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("template_not_found", Some("template.id"))
        );
    }

    #[tokio::test]
    async fn a_store_failing_at_each_step_is_unavailable() {
        for op in ["create", "get", "version", "add_version", "delete", "list"] {
            let (t, store) = service();
            let created = t
                .create(KeyEnvironment::Live, WELCOME.as_bytes())
                .await
                .unwrap();
            let id = created["id"].as_str().unwrap().to_owned();
            store.faults.fail_next(op, StoreErrorKind::Transient);
            let e = match op {
                "create" => t
                    .create(KeyEnvironment::Live, WELCOME.as_bytes())
                    .await
                    .map(|_| ()),
                "get" | "version" => t.get(KeyEnvironment::Live, &id).await.map(|_| ()),
                "add_version" => t
                    .update(KeyEnvironment::Live, &id, br#"{"subject":"s","text":"t"}"#)
                    .await
                    .map(|_| ()),
                "delete" => t.delete(KeyEnvironment::Live, &id).await,
                _ => t.list(KeyEnvironment::Live, 10, None).await.map(|_| ()),
            }
            .unwrap_err();
            assert_eq!((e.status, e.code), (503, "service_unavailable"), "{op}");
        }
    }

    #[tokio::test]
    async fn two_updates_from_the_same_version_make_one_and_the_other_conflicts() {
        let (t, store) = service();
        let created = t
            .create(KeyEnvironment::Live, WELCOME.as_bytes())
            .await
            .unwrap();
        let id = TemplateId::parse(created["id"].as_str().unwrap()).unwrap();
        let record = store.get(&id).await.unwrap().unwrap();
        let version = TemplateVersion {
            number: 2,
            content: TemplateContent {
                subject: "a".into(),
                html: None,
                text: Some("b".into()),
            },
            created_at: record.created_at,
        };
        let next = TemplateRecord {
            latest_version: 2,
            ..record
        };
        assert!(store.add_version(&next, &version).await.unwrap());
        assert!(!store.add_version(&next, &version).await.unwrap());
    }
}
