//! SSM Parameter Store's durable state, in one column family, `parameters`:
//!
//! - `p \0 name` -> JSON [`ParameterVersion`]: the newest version (what `GetParameter` answers
//!   without a selector and `GetParametersByPath` lists: names sort by path, so a path is one
//!   range);
//! - `h \0 name \0 version_be` -> JSON [`ParameterVersion`]: every kept version (history and
//!   `name:version` selectors), numerically ordered.
//!
//! A `SecureString`'s value is sealed by the caller (envelope encryption under the master key):
//! the store never sees its plaintext. A put writes both keys and drops the versions beyond the
//! kept ones in one synced batch; a delete range-deletes the history with the record. The
//! callers serialise the read-modify-writes of one parameter (`crate::secrets`, a lock per name).
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use super::db::{Batch, Durability};
use super::keys;
use super::rocks::RocksStore;
use super::schema;
use super::table::{Json, Start, Table};
use super::StoreError;
use crate::crypto::Sealed;

/// A parameter's value as stored: `String`/`StringList` as they are, `SecureString` sealed.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub enum StoredValue {
    Plain(String),
    Sealed(Sealed),
}

impl std::fmt::Debug for StoredValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredValue::Plain(_) => f.write_str("Plain(..)"),
            StoredValue::Sealed(_) => f.write_str("Sealed(..)"),
        }
    }
}

/// One version of a parameter, with the metadata SSM reports for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterVersion {
    pub name: String,
    pub version: u64,
    /// `String`, `StringList` or `SecureString`.
    pub kind: String,
    pub value: StoredValue,
    pub description: Option<String>,
    /// `SecureString` only: the key named by the client (default `alias/aws/ssm`).
    pub key_id: Option<String>,
    pub allowed_pattern: Option<String>,
    pub tier: String,
    pub data_type: String,
    pub modified_ms: u64,
    /// The ARN of the caller that wrote it.
    pub modified_user: String,
    pub labels: Vec<String>,
}

/// Parameters and their versions. Every write is one synced batch.
pub trait ParameterStore {
    /// The newest version of `name`.
    fn get_parameter(&self, name: &str) -> Result<Option<ParameterVersion>, StoreError>;

    fn get_parameter_version(
        &self,
        name: &str,
        version: u64,
    ) -> Result<Option<ParameterVersion>, StoreError>;

    /// Versions of `name` after `after_version`, oldest first, up to `limit`.
    fn parameter_history(
        &self,
        name: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<ParameterVersion>, StoreError>;

    /// Writes `version` as the newest version of its parameter and drops every version below
    /// `keep_from` (the oldest kept), atomically.
    fn put_parameter_version(
        &self,
        version: &ParameterVersion,
        keep_from: u64,
    ) -> Result<(), StoreError>;

    /// Deletes the parameter with its history (`false` when there was none).
    fn delete_parameter(&self, name: &str) -> Result<bool, StoreError>;

    /// The newest versions of the parameters whose names start with `prefix`, in name order,
    /// after `after` ("" = from the first), that `keep` accepts, up to `limit`.
    fn list_parameters(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
        keep: &mut dyn FnMut(&ParameterVersion) -> bool,
    ) -> Result<Vec<ParameterVersion>, StoreError>;
}

const RECORD_TAG: u8 = b'p';
const HISTORY_TAG: u8 = b'h';

/// `p \0 name`: a parameter's newest version.
fn record_key(name: &str) -> Vec<u8> {
    keys::tagged(RECORD_TAG, name.as_bytes())
}

/// `h \0 name \0`: the start of a parameter's history.
fn history_prefix(name: &str) -> Vec<u8> {
    keys::tagged(HISTORY_TAG, &keys::prefix(name))
}

/// The first key after the whole history of `name`.
fn history_end(name: &str) -> Vec<u8> {
    keys::tagged(HISTORY_TAG, &keys::prefix_end(name))
}

/// `h \0 name \0 version_be`: one version.
fn history_key(name: &str, version: u64) -> Vec<u8> {
    keys::tagged(HISTORY_TAG, &keys::with_u64(name, version))
}

impl RocksStore {
    fn parameters(&self) -> Table<'_, Json<ParameterVersion>> {
        self.db.table(schema::PARAMETERS)
    }
}

impl ParameterStore for RocksStore {
    fn get_parameter(&self, name: &str) -> Result<Option<ParameterVersion>, StoreError> {
        Ok(self.parameters().get(&record_key(name))?)
    }

    fn get_parameter_version(
        &self,
        name: &str,
        version: u64,
    ) -> Result<Option<ParameterVersion>, StoreError> {
        Ok(self.parameters().get(&history_key(name, version))?)
    }

    fn parameter_history(
        &self,
        name: &str,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<ParameterVersion>, StoreError> {
        let prefix = history_prefix(name);
        let from = history_key(name, after_version.saturating_add(1));
        Ok(self
            .parameters()
            .page(Start::At(&from), limit, |k| k.starts_with(&prefix))?)
    }

    fn put_parameter_version(
        &self,
        version: &ParameterVersion,
        keep_from: u64,
    ) -> Result<(), StoreError> {
        let name = &version.name;
        let mut batch = Batch::new();
        self.parameters()
            .put(&mut batch, record_key(name), version)?;
        self.parameters()
            .put(&mut batch, history_key(name, version.version), version)?;
        if keep_from > 0 {
            self.parameters().delete_range(
                &mut batch,
                history_prefix(name),
                history_key(name, keep_from),
            );
        }
        self.db
            .write(&batch, Durability::Synced, "write parameter")?;
        Ok(())
    }

    fn delete_parameter(&self, name: &str) -> Result<bool, StoreError> {
        let key = record_key(name);
        if !self.parameters().contains(&key)? {
            return Ok(false);
        }
        let mut batch = Batch::new();
        self.parameters().delete(&mut batch, key);
        self.parameters()
            .delete_range(&mut batch, history_prefix(name), history_end(name));
        self.db
            .write(&batch, Durability::Synced, "delete parameter")?;
        Ok(true)
    }

    fn list_parameters(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
        keep: &mut dyn FnMut(&ParameterVersion) -> bool,
    ) -> Result<Vec<ParameterVersion>, StoreError> {
        let within = record_key(prefix);
        let mut from = record_key(after.max(prefix));
        if after >= prefix && !after.is_empty() {
            // The first key after `after` (names hold no NUL).
            from.push(0);
        }
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.parameters().walk(Start::At(&from), |e| {
            if !e.key().starts_with(&within) {
                return Ok::<_, StoreError>(ControlFlow::Break(()));
            }
            let p = e.value()?;
            if keep(&p) {
                out.push(p);
            }
            Ok(if out.len() < limit {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            })
        })?;
        Ok(out)
    }
}
