//! The port of message templates: a record per template (its name, environment and which
//! version is published) and its immutable numbered versions.

use super::{BoxFuture, StoreError};
use crate::template::{TemplateContent, TemplateId};
use crate::{KeyEnvironment, UnixMillis};

/// A template as listed: everything but its versions' content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    /// Its id.
    pub id: TemplateId,
    /// The environment of the key that created it (only keys of that environment see it).
    pub environment: KeyEnvironment,
    /// Its name.
    pub name: String,
    /// The newest version's number (versions count from 1).
    pub latest_version: u32,
    /// The version a send without `version` uses.
    pub published_version: u32,
    /// When it was created.
    pub created_at: UnixMillis,
    /// When its last version was added.
    pub updated_at: UnixMillis,
}

/// One immutable version of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateVersion {
    /// Its number.
    pub number: u32,
    /// Its source.
    pub content: TemplateContent,
    /// When it was added.
    pub created_at: UnixMillis,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplatePage {
    /// The templates, oldest first.
    pub templates: Vec<TemplateRecord>,
    /// Where the next page starts, if there is one.
    pub next_cursor: Option<String>,
}

/// Templates and their versions.
pub trait TemplateStore: Send + Sync {
    /// Records a new template with its first version, in one write.
    fn create<'a>(
        &'a self,
        record: &'a TemplateRecord,
        first: &'a TemplateVersion,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The template's record; `None` when there is no such template (or it was deleted).
    fn get<'a>(
        &'a self,
        id: &'a TemplateId,
    ) -> BoxFuture<'a, Result<Option<TemplateRecord>, StoreError>>;

    /// One version; `None` when there is no such version.
    fn version<'a>(
        &'a self,
        id: &'a TemplateId,
        number: u32,
    ) -> BoxFuture<'a, Result<Option<TemplateVersion>, StoreError>>;

    /// Adds `version` (numbered after `record.latest_version`) and moves the record to
    /// `record` (its new latest, published version and name), in one write conditioned on the
    /// stored latest version still being `version.number - 1`: `false` when another update
    /// got there first.
    fn add_version<'a>(
        &'a self,
        record: &'a TemplateRecord,
        version: &'a TemplateVersion,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Deletes the template (its record; its versions stop being reachable); whether it
    /// existed.
    fn delete<'a>(&'a self, id: &'a TemplateId) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// The templates of `environment`, `limit` per page, from `cursor`.
    fn list<'a>(
        &'a self,
        environment: KeyEnvironment,
        limit: u32,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<TemplatePage, StoreError>>;
}
