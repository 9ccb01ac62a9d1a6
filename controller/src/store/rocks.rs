//! The RocksDB implementation of [`Store`]. Key layout and rationale: `README.md` next to this file.
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, Mutex};

use lamina_proto::domain::{Alias, FunctionConfig};

use super::cache::ConfigCache;
use super::db::{Batch, Database, Durability};
use super::error::StorageError;
use super::gateway::GatewayMemory;
use super::keys;
use super::log_writer::LogWriter;
use super::logs::LogTable;
use super::schema;
use super::table::{Codec, Json, Raw, Start, Table};
use super::writers::lock;
use super::{LogEvent, NewLogEvent, Store, StoreError};

pub struct RocksStore {
    pub(super) db: Database,
    /// Serialises function and blob writers; holds how many functions use each blob (by sha256).
    pub(super) blob_refs: Mutex<HashMap<String, usize>>,
    /// Serialises network writers (and keeps their in-use checks true until the write lands);
    /// taken before `blob_refs` when both are held.
    pub(super) network_writers: Mutex<()>,
    /// Decoded function records, versions and aliases (`cache.rs`): every writer of those
    /// invalidates the function it wrote, under `blob_refs`.
    pub(super) cache: ConfigCache,
    pub(super) logs: Arc<LogTable>,
    /// Writes queued invocation logs in batches (`log_writer.rs`).
    pub(super) log_writer: LogWriter,
    /// Serialises HTTP API writers (`gateway.rs`; function URLs take `blob_refs`).
    pub(super) gateway_writers: Mutex<()>,
    /// Function URLs and HTTP APIs by id, for the gateway's request path (`gateway.rs`).
    pub(super) gateway: GatewayMemory,
}

impl RocksStore {
    /// Opens (creating if needed) the store in `dir`, keeping at most `log_retention` log events per
    /// function (at least 1). Rebuilds the in-memory indexes and deletes unreferenced blobs.
    pub fn open(dir: &Path, log_retention: u64) -> Result<RocksStore, StoreError> {
        // Every column family, the async queue's too (`schema.rs`).
        let db = Database::open(dir)?;
        let logs = Arc::new(LogTable::open(db.clone(), log_retention)?);
        let store = RocksStore {
            db,
            blob_refs: Mutex::new(HashMap::new()),
            network_writers: Mutex::new(()),
            cache: ConfigCache::default(),
            log_writer: LogWriter::start(Arc::clone(&logs))?,
            logs,
            gateway_writers: Mutex::new(()),
            gateway: GatewayMemory::default(),
        };
        let refs = store.count_blob_refs()?;
        store.delete_orphan_blobs(&refs)?;
        *lock(&store.blob_refs) = refs;
        store.load_gateway()?;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// The database, shared with the async queue (`queue::QueueStore`).
    pub fn db(&self) -> Database {
        self.db.clone()
    }

    pub(super) fn functions(&self) -> Table<'_, Json<FunctionConfig>> {
        self.db.table(schema::FUNCTIONS)
    }

    pub(super) fn blobs(&self) -> Table<'_, Raw> {
        self.db.table(schema::BLOBS)
    }

    fn count_blob_refs(&self) -> Result<HashMap<String, usize>, StoreError> {
        let mut refs = HashMap::new();
        self.functions().walk(Start::First, |e| {
            for sha256 in e.value()?.blob_digests() {
                *refs.entry(sha256).or_insert(0) += 1;
            }
            Ok::<_, StorageError>(ControlFlow::Continue(()))
        })?;
        // Published versions use their blobs like functions do, and layer versions their zip.
        for sha256 in self
            .all_version_code_digests()?
            .into_iter()
            .chain(self.all_layer_code_digests()?)
        {
            *refs.entry(sha256).or_insert(0) += 1;
        }
        Ok(refs)
    }

    fn delete_orphan_blobs(&self, refs: &HashMap<String, usize>) -> Result<(), StoreError> {
        let blobs = self.blobs();
        let mut batch = Batch::new();
        // Keys only: the zips themselves are not read.
        blobs.walk(Start::First, |e| {
            let sha = String::from_utf8_lossy(e.key());
            if !refs.contains_key(sha.as_ref()) {
                tracing::info!(sha256 = %sha, "deleting a code blob no function uses");
                blobs.delete(&mut batch, e.key());
            }
            Ok::<_, StorageError>(ControlFlow::Continue(()))
        })?;
        self.db
            .write(&batch, Durability::Synced, "delete orphan blobs")?;
        Ok(())
    }

    /// Plans a change of blob users under the writers' lock: `added` gain a use and `released`
    /// lose one (one entry per use). Adds the deletion of every blob left without users to `batch`
    /// and refuses an added blob that is not stored (`BlobMissing`: its last user went meanwhile)
    /// unless `batch` stores it (`stored_now`). Returns the counts to apply with [`apply_counts`]
    /// once the batch is written.
    pub(super) fn plan_refs(
        &self,
        refs: &HashMap<String, usize>,
        added: &[String],
        released: &[String],
        stored_now: Option<&str>,
        batch: &mut Batch<'_>,
    ) -> Result<Vec<(String, usize)>, StoreError> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for d in added.iter().chain(released) {
            counts
                .entry(d.as_str())
                .or_insert_with(|| refs.get(d).copied().unwrap_or(0));
        }
        for d in added {
            if counts[d.as_str()] == 0 && stored_now != Some(d.as_str()) && !self.blob_exists(d)? {
                return Err(StoreError::BlobMissing(d.clone()));
            }
            *counts.get_mut(d.as_str()).expect("inserted above") += 1;
        }
        for d in released {
            let n = counts.get_mut(d.as_str()).expect("inserted above");
            *n = n.saturating_sub(1);
        }
        for (d, n) in &counts {
            if *n == 0 {
                self.blobs().delete(batch, d.as_bytes());
            }
        }
        Ok(counts
            .into_iter()
            .map(|(d, n)| (d.to_string(), n))
            .collect())
    }

    /// Adds `code` under `sha256` to `batch` unless it is stored already; returns the digest
    /// when it did (the `stored_now` of [`Self::plan_refs`]).
    pub(super) fn store_blob_in<'v>(
        &self,
        batch: &mut Batch<'v>,
        sha256: &'v str,
        code: &'v [u8],
    ) -> Result<Option<&'v str>, StoreError> {
        if self.blob_exists(sha256)? {
            return Ok(None);
        }
        self.blobs().put_bytes(batch, sha256.as_bytes(), code);
        Ok(Some(sha256))
    }

    /// Stores blobs that are not stored yet, without users: the next create or update refers to
    /// them (an image's layers and manifest). Until then they count as orphans (removed at open).
    fn put_unused_blobs(&self, blobs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let _refs = lock(&self.blob_refs);
        let mut batch = Batch::new();
        for (sha256, bytes) in blobs {
            self.store_blob_in(&mut batch, sha256, bytes)?;
        }
        Ok(self.db.write(&batch, Durability::Synced, "store blobs")?)
    }

    /// Adds `$LATEST`'s record to `batch`; returns its encoding (for [`Self::cache_written`]).
    fn put_function_in(
        &self,
        batch: &mut Batch<'_>,
        config: &FunctionConfig,
    ) -> Result<Vec<u8>, StoreError> {
        let name = &config.spec.name;
        let encoded = Json::<FunctionConfig>::encode(config).map_err(|e| {
            self.db
                .corrupt(format!("function record `{name}` (encoding)"), e)
        })?;
        self.functions()
            .put_bytes(batch, name.as_bytes(), encoded.clone());
        Ok(encoded)
    }

    /// Caches `$LATEST`'s record just written (`encoded`), under the writers' lock: the first
    /// invocation after a deploy finds it without a read. A record that does not decode is left
    /// to the next read, which reports it.
    fn cache_written(&self, name: &str, encoded: &[u8]) {
        if let Ok(f) = Json::<FunctionConfig>::decode(encoded) {
            self.cache
                .offer_latest(self.cache.generation(), name, Arc::new(f));
        }
    }

    /// `$LATEST`'s record, from the cache or read (and offered to the cache).
    fn function_arc(&self, name: &str) -> Result<Option<Arc<FunctionConfig>>, StoreError> {
        if let Some(f) = self.cache.latest(name) {
            return Ok(Some(f));
        }
        let seen = self.cache.generation();
        let Some(f) = self.functions().get(name.as_bytes())? else {
            return Ok(None);
        };
        let f = Arc::new(f);
        self.cache.offer_latest(seen, name, Arc::clone(&f));
        Ok(Some(f))
    }

    pub(super) fn blob_exists(&self, sha256: &str) -> Result<bool, StoreError> {
        Ok(self.blobs().contains(sha256.as_bytes())?)
    }

    /// Writes a function writer's batch (synced) and invalidates the function's cached records
    /// whether or not the write landed.
    pub(super) fn write_function_batch(
        &self,
        name: &str,
        batch: &Batch<'_>,
        op: &str,
    ) -> Result<(), StoreError> {
        let written = self.db.write(batch, Durability::Synced, op);
        self.cache.invalidate(name);
        Ok(written?)
    }
}

impl Store for RocksStore {
    fn get_function(&self, name: &str) -> Result<Option<FunctionConfig>, StoreError> {
        Ok(self.function_arc(name)?.map(|f| f.as_ref().clone()))
    }

    fn function_in_memory(&self, name: &str) -> Option<Arc<FunctionConfig>> {
        self.cache.latest(name)
    }

    fn version_in_memory(&self, name: &str, version: u32) -> Option<Arc<FunctionConfig>> {
        self.cache.version(name, version)
    }

    fn alias_in_memory(&self, function: &str, alias: &str) -> Option<Arc<Alias>> {
        self.cache.alias(function, alias)
    }

    fn try_queue_logs(&self, name: &str, events: Vec<NewLogEvent>) -> Result<(), Vec<NewLogEvent>> {
        self.log_writer.try_queue(name, events)
    }

    fn queue_logs(&self, name: &str, events: Vec<NewLogEvent>) -> Result<(), StoreError> {
        self.log_writer.queue(name, events)
    }

    fn flush_logs(&self) {
        self.log_writer.flush();
    }

    fn list_functions(&self, after: &str, limit: usize) -> Result<Vec<FunctionConfig>, StoreError> {
        // The smallest key after `after` is `after \0`.
        let mut from = after.as_bytes().to_vec();
        from.push(0);
        Ok(self.functions().page(Start::At(&from), limit, |_| true)?)
    }

    fn create_function(&self, config: &FunctionConfig, code: &[u8]) -> Result<(), StoreError> {
        let mut refs = lock(&self.blob_refs);
        let name = &config.spec.name;
        self.check_vpc_targets(config)?;
        if self.get_function(name)?.is_some() {
            return Err(StoreError::FunctionExists(name.clone()));
        }
        let mut batch = Batch::new();
        let stored_now = self.store_blob_in(&mut batch, &config.code_sha256, code)?;
        // Layer and image blobs must be stored already (by their layer version, or `put_blobs`).
        let counts = self.plan_refs(&refs, &config.blob_digests(), &[], stored_now, &mut batch)?;
        let encoded = self.put_function_in(&mut batch, config)?;
        self.write_function_batch(name, &batch, "create function")?;
        self.cache_written(name, &encoded);
        apply_counts(&mut refs, counts);
        Ok(())
    }

    fn update_function(
        &self,
        config: &FunctionConfig,
        expected_revision: &str,
        code: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let mut refs = lock(&self.blob_refs);
        let name = &config.spec.name;
        self.check_vpc_targets(config)?;
        let current = self
            .get_function(name)?
            .ok_or_else(|| StoreError::FunctionNotFound(name.clone()))?;
        if current.revision_id != expected_revision {
            return Err(StoreError::RevisionConflict {
                name: name.clone(),
                expected: expected_revision.to_string(),
            });
        }
        let (old, new) = (&current.code_sha256, &config.code_sha256);
        let mut batch = Batch::new();
        let mut stored_now = None;
        if old != new {
            let code = code.ok_or_else(|| {
                self.db.corrupt(
                    format!("update of function `{name}`"),
                    "the code digest changed but no code was given",
                )
            })?;
            stored_now = self.store_blob_in(&mut batch, new, code)?;
        }
        let counts = self.plan_refs(
            &refs,
            &config.blob_digests(),
            &current.blob_digests(),
            stored_now,
            &mut batch,
        )?;
        let encoded = self.put_function_in(&mut batch, config)?;
        self.write_function_batch(name, &batch, "update function")?;
        self.cache_written(name, &encoded);
        apply_counts(&mut refs, counts);
        Ok(())
    }

    fn delete_function(&self, name: &str) -> Result<Option<FunctionConfig>, StoreError> {
        // Logs queued before the delete are written first, so they go with the function instead
        // of landing in the log of a function created later under the same name.
        self.log_writer.flush();
        let mut refs = lock(&self.blob_refs);
        let Some(current) = self.get_function(name)? else {
            return Ok(None);
        };
        let mut logs = self.logs.lock_ranges();
        let mut batch = Batch::new();
        self.functions().delete(&mut batch, name.as_bytes());
        self.logs
            .table()
            .delete_range(&mut batch, keys::prefix(name), keys::prefix_end(name));
        self.delete_settings_in(name, &mut batch);
        let urls = self.delete_function_urls_in(name, &mut batch)?;
        // The blobs of $LATEST and of every version, released together: a blob goes when these
        // were its last users.
        let mut users = self.delete_versions_in(name, &mut batch)?;
        users.extend(current.blob_digests());
        let counts = self.plan_refs(&refs, &[], &users, None, &mut batch)?;
        self.write_function_batch(name, &batch, "delete function")?;
        apply_counts(&mut refs, counts);
        self.gateway.forget_urls(&urls);
        logs.remove(name);
        Ok(Some(current))
    }

    fn put_blobs(&self, blobs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        self.put_unused_blobs(blobs)
    }

    fn get_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blobs().get(sha256.as_bytes())?)
    }

    fn append_logs(
        &self,
        name: &str,
        events: Vec<NewLogEvent>,
    ) -> Result<Vec<LogEvent>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut stored = self.logs.append(vec![(name.to_string(), events)])?;
        Ok(stored.pop().unwrap_or_default())
    }

    fn get_logs(
        &self,
        name: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<LogEvent>, StoreError> {
        // Read-your-writes: what was queued before this read is written first.
        self.log_writer.flush();
        self.logs.get(name, after_seq, limit)
    }
}

/// Stores the counts [`RocksStore::plan_refs`] computed (0: the blob is gone).
pub(super) fn apply_counts(refs: &mut HashMap<String, usize>, counts: Vec<(String, usize)>) {
    for (sha256, n) in counts {
        if n == 0 {
            refs.remove(&sha256);
        } else {
            refs.insert(sha256, n);
        }
    }
}

#[cfg(test)]
#[path = "rocks_tests.rs"]
mod tests;
