//! Published versions of functions: immutable snapshots of `$LATEST` (code and configuration).
//! One column family, `versions`: `name \0 version_u32_be` holds the version's JSON
//! `FunctionConfig` (`version = "N"`), and `name \0` (the bare prefix) the function's publish
//! counter, so numbers are never reused while the function exists. All of a function's keys form
//! one range, deleted with the function in its batch. A version refers to its code blob like a
//! function does: the blob reference counts include versions.
use std::sync::Arc;

use lamina_proto::domain::FunctionConfig;
use serde::{Deserialize, Serialize};

use super::db::Batch;
use super::keys;
use super::rocks::{apply_counts, RocksStore};
use super::schema;
use super::table::{Json, Table};
use super::writers::lock;
use super::{SettingsStore, Store, StoreError};

/// What `publish_version` needs besides the function's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// The version's description; empty: `$LATEST`'s.
    pub description: String,
    /// When set, `$LATEST`'s code digest must be this (else `PublishPrecondition`).
    pub expected_code_sha256: Option<String>,
    /// When set, `$LATEST`'s revision must be this (else `PublishPrecondition`).
    pub expected_revision_id: Option<String>,
    /// The revision of the new version (never `$LATEST`'s: sandboxes are keyed by revision).
    pub new_revision_id: String,
    pub now_ms: u64,
}

/// The outcome of a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub config: FunctionConfig,
    /// `false`: `$LATEST` had not changed since this version was published; nothing was written.
    pub created: bool,
}

pub trait VersionStore {
    /// Publishes `$LATEST` of `name` as the next version, atomically under the writers' lock.
    /// When `$LATEST`'s code and configuration are unchanged since the newest publish (and that
    /// version still exists), returns it instead. `FunctionNotFound` when there is no function.
    /// Synced.
    fn publish_version(&self, name: &str, req: &PublishRequest) -> Result<Published, StoreError>;
    fn get_version(&self, name: &str, version: u32) -> Result<Option<FunctionConfig>, StoreError>;
    /// The published versions of `name`, ascending (without `$LATEST`).
    fn list_versions(&self, name: &str) -> Result<Vec<FunctionConfig>, StoreError>;
    /// Deletes one version (its blob when nothing else uses it). Refused with `VersionInUse` while
    /// an alias routes to it. Returns the removed version, `None` when there was none. Synced.
    fn delete_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<FunctionConfig>, StoreError>;
}

/// The function's publish bookkeeping, at key `name \0`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PublishCounter {
    /// The highest version number ever published (0: none).
    last: u32,
    /// `$LATEST`'s code and spec when `last` was published (to detect an unchanged `$LATEST`).
    source_code_sha256: String,
    source_spec: Option<lamina_proto::domain::FunctionSpec>,
}

/// A version number as a qualifier names it: decimal, 1 or more, no sign or leading zero.
pub fn parse_version_number(s: &str) -> Option<u32> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|n| *n >= 1)
}

impl RocksStore {
    fn versions(&self) -> Table<'_, Json<FunctionConfig>> {
        self.db.table(schema::VERSIONS)
    }

    /// The same family's counters (`name \0`).
    fn version_counters(&self) -> Table<'_, Json<PublishCounter>> {
        self.db.table(schema::VERSIONS)
    }

    fn read_counter(&self, name: &str) -> Result<PublishCounter, StoreError> {
        Ok(self
            .version_counters()
            .get(&keys::prefix(name))?
            .unwrap_or_default())
    }

    /// Every stored version of every function (for the blob reference counts at open).
    pub(super) fn all_version_code_digests(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .versions()
            .values_with_prefix(b"", |k| keys::split_u32(k).is_some())?
            .into_iter()
            .flat_map(|v| v.blob_digests())
            .collect())
    }

    /// Adds the deletion of every version (and the counter) of `name` to `batch`; returns the
    /// blob digests those versions used, one entry per use. The caller holds the writers' lock.
    pub(super) fn delete_versions_in(
        &self,
        name: &str,
        batch: &mut Batch<'_>,
    ) -> Result<Vec<String>, StoreError> {
        let digests = self
            .list_versions(name)?
            .into_iter()
            .flat_map(|v| v.blob_digests())
            .collect();
        self.versions()
            .delete_range(batch, keys::prefix(name), keys::prefix_end(name));
        Ok(digests)
    }
}

impl VersionStore for RocksStore {
    fn publish_version(&self, name: &str, req: &PublishRequest) -> Result<Published, StoreError> {
        let mut refs = lock(&self.blob_refs);
        let latest = self
            .get_function(name)?
            .ok_or_else(|| StoreError::FunctionNotFound(name.to_string()))?;
        let mismatch =
            |field: &'static str, expected: &str, actual: &str| StoreError::PublishPrecondition {
                name: name.to_string(),
                field,
                expected: expected.to_string(),
                actual: actual.to_string(),
            };
        if let Some(want) = &req.expected_code_sha256 {
            if *want != latest.code_sha256 {
                return Err(mismatch("code_sha256", want, &latest.code_sha256));
            }
        }
        if let Some(want) = &req.expected_revision_id {
            if *want != latest.revision_id {
                return Err(mismatch("revision_id", want, &latest.revision_id));
            }
        }
        let counter = self.read_counter(name)?;
        if counter.last > 0
            && counter.source_code_sha256 == latest.code_sha256
            && counter.source_spec.as_ref() == Some(&latest.spec)
        {
            if let Some(existing) = self.get_version(name, counter.last)? {
                return Ok(Published {
                    config: existing,
                    created: false,
                });
            }
        }
        let number = counter.last.checked_add(1).ok_or_else(|| {
            self.db.corrupt(
                format!("version counter of `{name}`"),
                "no version number left",
            )
        })?;
        let mut version = latest.clone();
        version.version = number.to_string();
        version.revision_id = req.new_revision_id.clone();
        version.last_modified_ms = req.now_ms;
        if !req.description.is_empty() {
            version.spec.description = req.description.clone();
        }
        let new_counter = PublishCounter {
            last: number,
            source_code_sha256: latest.code_sha256.clone(),
            source_spec: Some(latest.spec.clone()),
        };
        let mut batch = Batch::new();
        let counts = self.plan_refs(&refs, &version.blob_digests(), &[], None, &mut batch)?;
        self.versions()
            .put(&mut batch, keys::with_u32(name, number), &version)?;
        self.version_counters()
            .put(&mut batch, keys::prefix(name), &new_counter)?;
        self.write_function_batch(name, &batch, "publish version")?;
        apply_counts(&mut refs, counts);
        Ok(Published {
            config: version,
            created: true,
        })
    }

    fn get_version(&self, name: &str, version: u32) -> Result<Option<FunctionConfig>, StoreError> {
        if let Some(c) = self.cache.version(name, version) {
            return Ok(Some(c.as_ref().clone()));
        }
        let seen = self.cache.generation();
        match self.versions().get(&keys::with_u32(name, version))? {
            Some(config) => {
                self.cache
                    .offer_version(seen, name, version, Arc::new(config.clone()));
                Ok(Some(config))
            }
            None => Ok(None),
        }
    }

    fn list_versions(&self, name: &str) -> Result<Vec<FunctionConfig>, StoreError> {
        Ok(self.versions().values_with_prefix(
            &keys::prefix(name),
            |k| matches!(keys::split_u32(k), Some((n, _)) if n == name),
        )?)
    }

    fn delete_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<FunctionConfig>, StoreError> {
        let mut refs = lock(&self.blob_refs);
        let Some(current) = self.get_version(name, version)? else {
            return Ok(None);
        };
        let number = version.to_string();
        if let Some(alias) = self.list_aliases(name)?.into_iter().find(|a| {
            a.function_version == number || a.additional_version_weights.contains_key(&number)
        }) {
            return Err(StoreError::VersionInUse {
                name: name.to_string(),
                version: number,
                alias: alias.name,
            });
        }
        let mut batch = Batch::new();
        self.versions()
            .delete(&mut batch, keys::with_u32(name, version));
        let counts = self.plan_refs(&refs, &[], &current.blob_digests(), None, &mut batch)?;
        self.write_function_batch(name, &batch, "delete version")?;
        apply_counts(&mut refs, counts);
        Ok(Some(current))
    }
}

#[cfg(test)]
#[path = "versions_tests.rs"]
mod tests;
