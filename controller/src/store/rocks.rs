//! The RocksDB implementation of [`Store`]. Key layout and rationale: `README.md` next to this file.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use lamina_proto::domain::{Alias, FunctionConfig};
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options, WriteBatch, WriteOptions, DB,
};

use super::cache::ConfigCache;
use super::log_writer::LogWriter;
use super::logs::{log_prefix, log_prefix_end, LogTable, CF_LOGS};
use super::{LogEvent, NewLogEvent, Store, StoreError};

const CF_FUNCTIONS: &str = "functions";
pub(super) const CF_BLOBS: &str = "blobs";
pub struct RocksStore {
    pub(super) db: Arc<DB>,
    path: PathBuf,
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
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps inconsistent with the database in a
    // way that matters more than stopping: keep serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RocksStore {
    /// Opens (creating if needed) the store in `dir`, keeping at most `log_retention` log events per
    /// function (at least 1). Rebuilds the in-memory indexes and deletes unreferenced blobs.
    pub fn open(dir: &Path, log_retention: u64) -> Result<RocksStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(DBCompressionType::None);
        let mut blob_opts = Options::default();
        blob_opts.set_compression_type(DBCompressionType::None);
        // Code zips are large and already compressed: keep them out of the LSM tree's compactions.
        blob_opts.set_enable_blob_files(true);
        blob_opts.set_min_blob_size(4096);
        let mut cfs = vec![
            ColumnFamilyDescriptor::new(CF_FUNCTIONS, opts.clone()),
            ColumnFamilyDescriptor::new(CF_BLOBS, blob_opts),
            ColumnFamilyDescriptor::new(CF_LOGS, opts.clone()),
            ColumnFamilyDescriptor::new(super::settings::CF_SETTINGS, opts.clone()),
            ColumnFamilyDescriptor::new(super::versions::CF_VERSIONS, opts.clone()),
            ColumnFamilyDescriptor::new(super::layers::CF_LAYERS, opts.clone()),
            ColumnFamilyDescriptor::new(super::network::CF_NETWORK, opts.clone()),
        ];
        // The async queue lives in the same database (its own column families): see `queue/`.
        cfs.extend(crate::queue::column_family_descriptors());
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|source| StoreError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
        let db = Arc::new(db);
        let logs = Arc::new(LogTable::open(
            Arc::clone(&db),
            dir.to_path_buf(),
            log_retention,
        )?);
        let store = RocksStore {
            db,
            path: dir.to_path_buf(),
            blob_refs: Mutex::new(HashMap::new()),
            network_writers: Mutex::new(()),
            cache: ConfigCache::default(),
            log_writer: LogWriter::start(Arc::clone(&logs))?,
            logs,
        };
        let refs = store.count_blob_refs()?;
        store.delete_orphan_blobs(&refs)?;
        *lock(&store.blob_refs) = refs;
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database, shared with the async queue (`queue::QueueStore`).
    pub fn db(&self) -> Arc<DB> {
        Arc::clone(&self.db)
    }

    pub(super) fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::MissingColumnFamily {
                name,
                path: self.path.clone(),
            })
    }

    pub(super) fn rocks(&self, op: &'static str) -> impl FnOnce(rocksdb::Error) -> StoreError + '_ {
        move |source| StoreError::Rocks {
            op,
            path: self.path.clone(),
            source,
        }
    }

    fn decode_function(&self, key: &[u8], value: &[u8]) -> Result<FunctionConfig, StoreError> {
        serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
            what: format!("function record `{}`", String::from_utf8_lossy(key)),
            path: self.path.clone(),
            detail: e.to_string(),
        })
    }

    fn encode_function(&self, config: &FunctionConfig) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(config).map_err(|e| StoreError::Corrupt {
            what: format!("function record `{}` (encoding)", config.spec.name),
            path: self.path.clone(),
            detail: e.to_string(),
        })
    }

    pub(super) fn synced() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        w
    }

    fn count_blob_refs(&self) -> Result<HashMap<String, usize>, StoreError> {
        let mut refs = HashMap::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_FUNCTIONS)?, rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.map_err(self.rocks("scan functions"))?;
            let f = self.decode_function(&k, &v)?;
            for sha256 in f.blob_digests() {
                *refs.entry(sha256).or_insert(0) += 1;
            }
        }
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
        let cf = self.cf(CF_BLOBS)?;
        let mut it = self.db.raw_iterator_cf(cf);
        it.seek_to_first();
        let mut batch = WriteBatch::default();
        while let Some(key) = it.key() {
            let sha = String::from_utf8_lossy(key);
            if !refs.contains_key(sha.as_ref()) {
                tracing::info!(sha256 = %sha, "deleting a code blob no function uses");
                batch.delete_cf(cf, key);
            }
            it.next();
        }
        it.status().map_err(self.rocks("scan blobs"))?;
        if !batch.is_empty() {
            self.db
                .write_opt(batch, &Self::synced())
                .map_err(self.rocks("delete orphan blobs"))?;
        }
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
        batch: &mut WriteBatch,
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
                batch.delete_cf(self.cf(CF_BLOBS)?, d.as_bytes());
            }
        }
        Ok(counts
            .into_iter()
            .map(|(d, n)| (d.to_string(), n))
            .collect())
    }

    /// Stores blobs that are not stored yet, without users: the next create or update refers to
    /// them (an image's layers and manifest). Until then they count as orphans (removed at open).
    fn put_unused_blobs(&self, blobs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let _refs = lock(&self.blob_refs);
        let mut batch = WriteBatch::default();
        for (sha256, bytes) in blobs {
            if !self.blob_exists(sha256)? {
                batch.put_cf(self.cf(CF_BLOBS)?, sha256.as_bytes(), bytes);
            }
        }
        self.db
            .write_opt(batch, &Self::synced())
            .map_err(self.rocks("store blobs"))
    }

    /// Caches `$LATEST`'s record just written (`encoded`), under the writers' lock: the first
    /// invocation after a deploy finds it without a read. A record that does not decode is left
    /// to the next read, which reports it.
    fn cache_written(&self, name: &str, encoded: &[u8]) {
        if let Ok(f) = self.decode_function(name.as_bytes(), encoded) {
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
        let Some(v) = self
            .db
            .get_pinned_cf(self.cf(CF_FUNCTIONS)?, name.as_bytes())
            .map_err(self.rocks("read function"))?
        else {
            return Ok(None);
        };
        let f = Arc::new(self.decode_function(name.as_bytes(), &v)?);
        self.cache.offer_latest(seen, name, Arc::clone(&f));
        Ok(Some(f))
    }

    pub(super) fn blob_exists(&self, sha256: &str) -> Result<bool, StoreError> {
        Ok(self
            .db
            .get_pinned_cf(self.cf(CF_BLOBS)?, sha256.as_bytes())
            .map_err(self.rocks("read blob"))?
            .is_some())
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
        let mut it = self.db.raw_iterator_cf(self.cf(CF_FUNCTIONS)?);
        it.seek(after.as_bytes());
        let mut out = Vec::new();
        while out.len() < limit {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if k != after.as_bytes() {
                out.push(self.decode_function(k, v)?);
            }
            it.next();
        }
        it.status().map_err(self.rocks("list functions"))?;
        Ok(out)
    }

    fn create_function(&self, config: &FunctionConfig, code: &[u8]) -> Result<(), StoreError> {
        let mut refs = lock(&self.blob_refs);
        let name = &config.spec.name;
        self.check_vpc_targets(config)?;
        if self.get_function(name)?.is_some() {
            return Err(StoreError::FunctionExists(name.clone()));
        }
        let mut batch = WriteBatch::default();
        let mut stored_now = None;
        if !self.blob_exists(&config.code_sha256)? {
            batch.put_cf(self.cf(CF_BLOBS)?, config.code_sha256.as_bytes(), code);
            stored_now = Some(config.code_sha256.as_str());
        }
        // Layer and image blobs must be stored already (by their layer version, or `put_blobs`).
        let counts = self.plan_refs(&refs, &config.blob_digests(), &[], stored_now, &mut batch)?;
        let encoded = self.encode_function(config)?;
        batch.put_cf(self.cf(CF_FUNCTIONS)?, name.as_bytes(), &encoded);
        let written = self.db.write_opt(batch, &Self::synced());
        self.cache.invalidate(name);
        written.map_err(self.rocks("create function"))?;
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
        let mut batch = WriteBatch::default();
        let mut stored_now = None;
        if old != new {
            let code = code.ok_or_else(|| StoreError::Corrupt {
                what: format!("update of function `{name}`"),
                path: self.path.clone(),
                detail: "the code digest changed but no code was given".to_string(),
            })?;
            if !self.blob_exists(new)? {
                batch.put_cf(self.cf(CF_BLOBS)?, new.as_bytes(), code);
                stored_now = Some(new.as_str());
            }
        }
        let counts = self.plan_refs(
            &refs,
            &config.blob_digests(),
            &current.blob_digests(),
            stored_now,
            &mut batch,
        )?;
        let encoded = self.encode_function(config)?;
        batch.put_cf(self.cf(CF_FUNCTIONS)?, name.as_bytes(), &encoded);
        let written = self.db.write_opt(batch, &Self::synced());
        self.cache.invalidate(name);
        written.map_err(self.rocks("update function"))?;
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
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_FUNCTIONS)?, name.as_bytes());
        batch.delete_range_cf(self.cf(CF_LOGS)?, log_prefix(name), log_prefix_end(name));
        batch.delete_range_cf(
            self.cf(super::settings::CF_SETTINGS)?,
            super::settings::function_prefix(name),
            super::settings::function_prefix_end(name),
        );
        // The blobs of $LATEST and of every version, released together: a blob goes when these
        // were its last users.
        let mut users = self.delete_versions_in(name, &mut batch)?;
        users.extend(current.blob_digests());
        let counts = self.plan_refs(&refs, &[], &users, None, &mut batch)?;
        let written = self.db.write_opt(batch, &Self::synced());
        self.cache.invalidate(name);
        written.map_err(self.rocks("delete function"))?;
        apply_counts(&mut refs, counts);
        logs.remove(name);
        Ok(Some(current))
    }

    fn put_blobs(&self, blobs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        self.put_unused_blobs(blobs)
    }

    fn get_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db
            .get_cf(self.cf(CF_BLOBS)?, sha256.as_bytes())
            .map_err(self.rocks("read blob"))
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
