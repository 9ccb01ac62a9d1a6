//! Secrets Manager's durable state, in one column family, `secrets`:
//!
//! - `s \0 name` -> JSON [`SecretRecord`]: the secret's metadata (ARN, description, tags,
//!   deletion and rotation state) and every version's id, creation time and staging labels;
//! - `v \0 name \0 version_id` -> JSON [`SecretValue`]: one version's value, sealed (envelope
//!   encryption under the controller's master key, done by the caller: the store never sees a
//!   plaintext).
//!
//! A secret's record and values change together in one synced batch ([`SecretStore::write_secret`]);
//! a purge range-deletes every value of the secret with its record. The callers serialise the
//! read-modify-writes of one secret (`crate::secrets`, a lock per name).
use std::collections::BTreeMap;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use super::db::{Batch, Durability};
use super::keys;
use super::rocks::RocksStore;
use super::schema;
use super::table::{Json, Start, Table};
use super::StoreError;
use crate::crypto::Sealed;

/// A tag of a secret (Secrets Manager's `Tag`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// How a secret is rotated (`RotateSecret`'s `RotationRules` and function).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub enabled: bool,
    /// The rotation function's ARN, as the client gave it.
    pub lambda_arn: String,
    pub automatically_after_days: Option<u64>,
    pub schedule_expression: Option<String>,
    pub duration: Option<String>,
}

/// One version of a secret: when it was made and its staging labels (`AWSCURRENT`,
/// `AWSPREVIOUS`, `AWSPENDING` or the client's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVersionMeta {
    pub created_ms: u64,
    pub stages: Vec<String>,
}

/// A secret without its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRecord {
    pub name: String,
    /// `arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX`.
    pub arn: String,
    pub description: Option<String>,
    pub kms_key_id: Option<String>,
    pub tags: Vec<Tag>,
    pub created_ms: u64,
    pub last_changed_ms: u64,
    /// Midnight (UTC) of the day the value was last read.
    pub last_accessed_ms: Option<u64>,
    /// Set while the secret is scheduled for deletion.
    pub deleted_ms: Option<u64>,
    /// When a scheduled deletion becomes final (then the secret is purged).
    pub deletion_date_ms: Option<u64>,
    pub rotation: Option<Rotation>,
    pub last_rotated_ms: Option<u64>,
    /// Every version by id.
    pub versions: BTreeMap<String, SecretVersionMeta>,
}

impl SecretRecord {
    /// The version that carries staging label `stage`.
    pub fn version_with_stage(&self, stage: &str) -> Option<&str> {
        self.versions
            .iter()
            .find(|(_, v)| v.stages.iter().any(|s| s == stage))
            .map(|(id, _)| id.as_str())
    }
}

/// A version's value: the plaintext (a `SecretString`'s UTF-8 or a `SecretBinary`'s bytes)
/// sealed under the master key.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SecretValue {
    /// `SecretBinary` (else `SecretString`).
    pub binary: bool,
    pub sealed: Sealed,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretValue")
            .field("binary", &self.binary)
            .finish_non_exhaustive()
    }
}

/// Secrets and their sealed values. Every write is one synced batch.
pub trait SecretStore {
    fn get_secret(&self, name: &str) -> Result<Option<SecretRecord>, StoreError>;

    fn get_secret_value(
        &self,
        name: &str,
        version_id: &str,
    ) -> Result<Option<SecretValue>, StoreError>;

    /// Writes `record`, the values of `new_values` (version id, value) and deletes the values
    /// of `dropped_versions`, atomically.
    fn write_secret(
        &self,
        record: &SecretRecord,
        new_values: &[(String, SecretValue)],
        dropped_versions: &[String],
    ) -> Result<(), StoreError>;

    /// Deletes the secret with every value (`false` when there was none).
    fn purge_secret(&self, name: &str) -> Result<bool, StoreError>;

    /// Secrets in name order after `after` ("" = from the first) that `keep` accepts, up to
    /// `limit`.
    fn list_secrets(
        &self,
        after: &str,
        limit: usize,
        keep: &mut dyn FnMut(&SecretRecord) -> bool,
    ) -> Result<Vec<SecretRecord>, StoreError>;
}

const RECORD_TAG: u8 = b's';
const VALUE_TAG: u8 = b'v';

/// `s \0 name`: a secret's record.
fn record_key(name: &str) -> Vec<u8> {
    keys::tagged(RECORD_TAG, name.as_bytes())
}

/// `v \0 name \0`: the start of a secret's values.
fn values_prefix(name: &str) -> Vec<u8> {
    keys::tagged(VALUE_TAG, &keys::prefix(name))
}

/// The first key after every value of `name`.
fn values_end(name: &str) -> Vec<u8> {
    keys::tagged(VALUE_TAG, &keys::prefix_end(name))
}

/// `v \0 name \0 version_id`: one value.
fn value_key(name: &str, version_id: &str) -> Vec<u8> {
    keys::tagged(VALUE_TAG, &keys::with_bytes(name, version_id.as_bytes()))
}

impl RocksStore {
    fn secret_records(&self) -> Table<'_, Json<SecretRecord>> {
        self.db.table(schema::SECRETS)
    }

    fn secret_values(&self) -> Table<'_, Json<SecretValue>> {
        self.db.table(schema::SECRETS)
    }
}

impl SecretStore for RocksStore {
    fn get_secret(&self, name: &str) -> Result<Option<SecretRecord>, StoreError> {
        Ok(self.secret_records().get(&record_key(name))?)
    }

    fn get_secret_value(
        &self,
        name: &str,
        version_id: &str,
    ) -> Result<Option<SecretValue>, StoreError> {
        Ok(self.secret_values().get(&value_key(name, version_id))?)
    }

    fn write_secret(
        &self,
        record: &SecretRecord,
        new_values: &[(String, SecretValue)],
        dropped_versions: &[String],
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        self.secret_records()
            .put(&mut batch, record_key(&record.name), record)?;
        for (version, value) in new_values {
            self.secret_values()
                .put(&mut batch, value_key(&record.name, version), value)?;
        }
        for version in dropped_versions {
            self.secret_values()
                .delete(&mut batch, value_key(&record.name, version));
        }
        self.db.write(&batch, Durability::Synced, "write secret")?;
        Ok(())
    }

    fn purge_secret(&self, name: &str) -> Result<bool, StoreError> {
        let key = record_key(name);
        if !self.secret_records().contains(&key)? {
            return Ok(false);
        }
        let mut batch = Batch::new();
        self.secret_records().delete(&mut batch, key);
        self.secret_values()
            .delete_range(&mut batch, values_prefix(name), values_end(name));
        self.db.write(&batch, Durability::Synced, "delete secret")?;
        Ok(true)
    }

    fn list_secrets(
        &self,
        after: &str,
        limit: usize,
        keep: &mut dyn FnMut(&SecretRecord) -> bool,
    ) -> Result<Vec<SecretRecord>, StoreError> {
        let mut from = record_key(after);
        if !after.is_empty() {
            // The first key after `after` (names hold no NUL).
            from.push(0);
        }
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.secret_records().walk(Start::At(&from), |e| {
            if !e.key().starts_with(&[RECORD_TAG, 0]) {
                return Ok::<_, StoreError>(ControlFlow::Break(()));
            }
            let record = e.value()?;
            if keep(&record) {
                out.push(record);
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

#[cfg(test)]
#[path = "secrets_tests.rs"]
mod tests;
