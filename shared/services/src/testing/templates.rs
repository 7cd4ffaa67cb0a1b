//! A fake of the template store: records and versions in memory.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use mailgate_core::ports::{
    BoxFuture, TemplatePage, TemplateRecord, TemplateStore, TemplateVersion,
};
use mailgate_core::template::TemplateId;
use mailgate_core::{KeyEnvironment, StoreError, StoreErrorKind};

use super::Faults;

/// Templates in memory.
#[derive(Debug, Default)]
pub struct MemoryTemplates {
    records: Mutex<BTreeMap<TemplateId, TemplateRecord>>,
    versions: Mutex<BTreeMap<(TemplateId, u32), TemplateVersion>>,
    /// Failures to inject, by operation (`create`, `get`, `version`, `add_version`, `delete`,
    /// `list`).
    pub faults: Faults,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TemplateStore for MemoryTemplates {
    fn create<'a>(
        &'a self,
        record: &'a TemplateRecord,
        first: &'a TemplateVersion,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let result = self.faults.take("create").and_then(|()| {
            let mut records = lock(&self.records);
            if records.contains_key(&record.id) {
                return Err(StoreError::new(
                    StoreErrorKind::ConditionFailed,
                    "create",
                    "exists",
                ));
            }
            records.insert(record.id.clone(), record.clone());
            lock(&self.versions).insert((record.id.clone(), first.number), first.clone());
            Ok(())
        });
        Box::pin(async move { result })
    }

    fn get<'a>(
        &'a self,
        id: &'a TemplateId,
    ) -> BoxFuture<'a, Result<Option<TemplateRecord>, StoreError>> {
        let result = self
            .faults
            .take("get")
            .map(|()| lock(&self.records).get(id).cloned());
        Box::pin(async move { result })
    }

    fn version<'a>(
        &'a self,
        id: &'a TemplateId,
        number: u32,
    ) -> BoxFuture<'a, Result<Option<TemplateVersion>, StoreError>> {
        let result = self
            .faults
            .take("version")
            .map(|()| lock(&self.versions).get(&(id.clone(), number)).cloned());
        Box::pin(async move { result })
    }

    fn add_version<'a>(
        &'a self,
        record: &'a TemplateRecord,
        version: &'a TemplateVersion,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let result = self.faults.take("add_version").map(|()| {
            let mut records = lock(&self.records);
            match records.get(&record.id) {
                Some(r) if r.latest_version + 1 == version.number => {
                    records.insert(record.id.clone(), record.clone());
                    lock(&self.versions)
                        .insert((record.id.clone(), version.number), version.clone());
                    true
                }
                _ => false,
            }
        });
        Box::pin(async move { result })
    }

    fn delete<'a>(&'a self, id: &'a TemplateId) -> BoxFuture<'a, Result<bool, StoreError>> {
        let result = self
            .faults
            .take("delete")
            .map(|()| lock(&self.records).remove(id).is_some());
        Box::pin(async move { result })
    }

    fn list<'a>(
        &'a self,
        environment: KeyEnvironment,
        limit: u32,
        cursor: Option<&'a str>,
    ) -> BoxFuture<'a, Result<TemplatePage, StoreError>> {
        let result = self.faults.take("list").map(|()| {
            let records = lock(&self.records);
            let mut all: Vec<TemplateRecord> = records
                .values()
                .filter(|r| r.environment == environment)
                .filter(|r| cursor.is_none_or(|c| r.id.as_str() > c))
                .cloned()
                .collect();
            let more = all.len() > limit as usize;
            all.truncate(limit as usize);
            let next_cursor = more
                .then(|| all.last().map(|r| r.id.as_str().to_owned()))
                .flatten();
            TemplatePage {
                templates: all,
                next_cursor,
            }
        });
        Box::pin(async move { result })
    }
}
