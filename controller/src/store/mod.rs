//! Durable state of the controller behind traits, one per kind of state: [`Store`] (function
//! records, code blobs, function logs), [`VersionStore`], [`SettingsStore`] (aliases, concurrency,
//! tags), [`LayerStore`], [`NetworkStore`], [`GatewayStore`] (function URLs, HTTP APIs),
//! [`SecretStore`] and [`ParameterStore`] (Secrets Manager, SSM parameters), and the async
//! queue's `queue::QueueStorage`.
//! [`RocksStore`] (and `queue::QueueStore`) are the embedded implementations on one RocksDB
//! [`Database`]; a replicated backend implements the same traits.
//!
//! The storage layer under them: [`schema`] (every column family and its options), [`table`]
//! (typed column families: get, put, delete, scans — the one iterator loop), [`Batch`] (atomic
//! writes with an explicit [`Durability`]), [`StorageError`], [`writers`] (how writers are
//! serialised). What is stored, the key layout and what is rebuilt on start: `store/README.md`.
//!
//! Every method may block (disk, fsync): call them from `tokio::task::spawn_blocking`, except the
//! `*_in_memory` reads and `try_queue_logs`, which never block (the invocation path calls them on
//! the async threads).
use std::sync::Arc;

use lamina_proto::domain::{Alias, FunctionConfig};
use serde::{Deserialize, Serialize};

mod cache;
mod db;
mod error;
mod gateway;
pub mod keys;
mod layers;
mod log_writer;
mod logs;
pub mod network;
pub mod parameters;
mod rocks;
pub mod roles;
pub mod schema;
pub mod secrets;
mod settings;
pub mod table;
mod versions;
pub mod writers;

pub use db::{Batch, Database, Durability};
pub use error::StorageError;
pub use gateway::GatewayStore;
pub use layers::{LayerStore, NewLayerVersion};
pub use network::{NetworkError, NetworkStore};
pub use parameters::ParameterStore;
pub use rocks::RocksStore;
pub use roles::{RocksRoleStore, RoleStore, RoleStoreError, StoredRole};
pub use secrets::SecretStore;
pub use settings::FunctionPolicy;
pub use settings::SettingsStore;
pub use versions::{parse_version_number, PublishRequest, Published, VersionStore};

/// One line of a function's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Per function, starts at 1 and only grows (also across restarts).
    pub seq: u64,
    pub timestamp_ms: u64,
    pub request_id: String,
    pub message: String,
}

/// A log line to append; the store assigns its `seq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogEvent {
    pub timestamp_ms: u64,
    pub request_id: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine or the stored bytes failed (see [`StorageError`]).
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("function `{0}` already exists")]
    FunctionExists(String),
    #[error("function `{0}` not found")]
    FunctionNotFound(String),
    #[error("function `{name}` was changed concurrently (expected revision {expected}); retry the update")]
    RevisionConflict { name: String, expected: String },
    #[error("$LATEST of function `{name}` has {field} `{actual}`, not the expected `{expected}`")]
    PublishPrecondition {
        name: String,
        field: &'static str,
        expected: String,
        actual: String,
    },
    #[error("blob {0} is no longer stored (the layer version or image that held it was deleted meanwhile); attach it again")]
    BlobMissing(String),
    #[error("the background log writer failed: {0}")]
    LogWriter(String),
    #[error("{kind} `{id}` named in the VPC configuration of function `{function}` does not exist (deleted meanwhile?)")]
    VpcTargetGone {
        function: String,
        kind: &'static str,
        id: String,
    },
    #[error("layer version {0} not found")]
    LayerVersionNotFound(String),
    #[error("version {version} of function `{name}` is used by alias `{alias}`; update or delete the alias first")]
    VersionInUse {
        name: String,
        version: String,
        alias: String,
    },
    #[error("function `{function}` has no alias `{alias}`: create the alias first")]
    AliasNotFound { function: String, alias: String },
    #[error("{} has a function URL already: update it (UpdateFunctionUrlConfig, `fnctl url update`) or delete it first", url_target(function, qualifier))]
    FunctionUrlExists { function: String, qualifier: String },
    #[error(
        "{} has no function URL: create one with CreateFunctionUrlConfig (`fnctl url create`)",
        url_target(function, qualifier)
    )]
    FunctionUrlNotFound { function: String, qualifier: String },
}

/// "function `f`" or "alias `live` of function `f`" (what a function URL belongs to).
fn url_target(function: &str, qualifier: &str) -> String {
    if qualifier.is_empty() {
        format!("function `{function}`")
    } else {
        format!("alias `{qualifier}` of function `{function}`")
    }
}

/// The controller's durable state. Implementations serialise their writers so that the invariants
/// below hold without help from the caller.
///
/// Invariants:
/// - every blob a stored function, version or layer version uses (`FunctionConfig::blob_digests`,
///   a layer version's zip) is stored;
/// - a blob is deleted as soon as no function, version or layer version refers to it;
/// - a function's logs, versions, settings and function URLs go when the function goes (and an
///   alias's function URL when the alias goes).
pub trait Store:
    SettingsStore
    + VersionStore
    + LayerStore
    + NetworkStore
    + GatewayStore
    + SecretStore
    + ParameterStore
    + Send
    + Sync
    + 'static
{
    fn get_function(&self, name: &str) -> Result<Option<FunctionConfig>, StoreError>;

    /// Functions sorted by name, starting after `after` (exclusive; "" = from the start).
    fn list_functions(&self, after: &str, limit: usize) -> Result<Vec<FunctionConfig>, StoreError>;

    /// Stores `code` under `config.code_sha256` (deduplicated) and the new function record, atomically
    /// and durably (synced). Fails with `FunctionExists` when the name is taken.
    fn create_function(&self, config: &FunctionConfig, code: &[u8]) -> Result<(), StoreError>;

    /// Replaces the record of `config.spec.name` if its current revision is `expected_revision`
    /// (else `RevisionConflict`; `FunctionNotFound` if it is gone). With `code`, stores it under
    /// `config.code_sha256` first. The previous blob is deleted when nothing refers to it any more.
    /// Atomic and synced.
    fn update_function(
        &self,
        config: &FunctionConfig,
        expected_revision: &str,
        code: Option<&[u8]>,
    ) -> Result<(), StoreError>;

    /// Removes the function, its logs, settings and function URLs, and its blob when no other
    /// function uses it. Returns the removed record, `None` when there was none. Synced.
    fn delete_function(&self, name: &str) -> Result<Option<FunctionConfig>, StoreError>;

    fn get_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores blobs that are not stored yet, without users, for the create or update that follows
    /// (an image's manifest and layers). Unused ones are removed at the next open.
    fn put_blobs(&self, blobs: &[(String, Vec<u8>)]) -> Result<(), StoreError>;

    /// Appends log lines to an existing function's log, trimming the oldest beyond the retention.
    /// Returns the stored events with their seqs (none when the function no longer exists).
    fn append_logs(
        &self,
        name: &str,
        events: Vec<NewLogEvent>,
    ) -> Result<Vec<LogEvent>, StoreError>;

    /// Up to `limit` events with `seq > after_seq`, oldest first, including every line queued
    /// (`queue_logs`, `try_queue_logs`) before the call.
    fn get_logs(
        &self,
        name: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<LogEvent>, StoreError>;

    /// `$LATEST`'s record when it is in memory, without blocking; `None` when it is not (then
    /// `get_function` reads it, and keeps it in memory when the store caches).
    fn function_in_memory(&self, _name: &str) -> Option<Arc<FunctionConfig>> {
        None
    }

    /// A published version's record when it is in memory, without blocking (see
    /// `function_in_memory`).
    fn version_in_memory(&self, _name: &str, _version: u32) -> Option<Arc<FunctionConfig>> {
        None
    }

    /// An alias when it is in memory, without blocking (see `function_in_memory`).
    fn alias_in_memory(&self, _function: &str, _alias: &str) -> Option<Arc<Alias>> {
        None
    }

    /// Hands log lines to a background writer without blocking. Gives them back (`Err`) when
    /// that is not possible now (its queue is full, or the store has none): then call
    /// `queue_logs` off the async threads.
    fn try_queue_logs(
        &self,
        _name: &str,
        events: Vec<NewLogEvent>,
    ) -> Result<(), Vec<NewLogEvent>> {
        Err(events)
    }

    /// Like `try_queue_logs`, waiting for room (blocking); a store without a background writer
    /// appends at once.
    fn queue_logs(&self, name: &str, events: Vec<NewLogEvent>) -> Result<(), StoreError> {
        self.append_logs(name, events).map(|_| ())
    }

    /// Returns once every log line queued so far is written (graceful shutdown).
    fn flush_logs(&self) {}
}
