//! The RocksDB implementation of [`Store`]. Key layout and rationale: `README.md` next to this file.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use lamina_proto::domain::FunctionConfig;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options, WriteBatch, WriteOptions, DB,
};

use super::{LogEvent, NewLogEvent, Store, StoreError};

const CF_FUNCTIONS: &str = "functions";
pub(super) const CF_BLOBS: &str = "blobs";
const CF_LOGS: &str = "logs";

/// Above this many expired log events, one range deletion replaces the point deletions.
const POINT_DELETE_MAX: u64 = 1024;

/// The log events present for one function: seqs `first..next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LogRange {
    first: u64,
    next: u64,
}

impl LogRange {
    const EMPTY: LogRange = LogRange { first: 1, next: 1 };
}

pub struct RocksStore {
    pub(super) db: Arc<DB>,
    path: PathBuf,
    log_retention: u64,
    /// Serialises function and blob writers; holds how many functions use each blob (by sha256).
    pub(super) blob_refs: Mutex<HashMap<String, usize>>,
    /// Serialises log writers; the seqs present per function (rebuilt on open).
    logs: Mutex<HashMap<String, LogRange>>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps inconsistent with the database in a
    // way that matters more than stopping: keep serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn log_prefix(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

/// The first key after every log key of `name` (`name \x01`): names never contain control bytes.
fn log_prefix_end(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1);
    k.extend_from_slice(name.as_bytes());
    k.push(1);
    k
}

fn log_key(name: &str, seq: u64) -> Vec<u8> {
    let mut k = log_prefix(name);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn parse_log_key(key: &[u8]) -> Option<(&str, u64)> {
    if key.len() < 9 || key[key.len() - 9] != 0 {
        return None;
    }
    let (name, rest) = key.split_at(key.len() - 9);
    let seq = u64::from_be_bytes(rest[1..].try_into().ok()?);
    Some((std::str::from_utf8(name).ok()?, seq))
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
        let store = RocksStore {
            db: Arc::new(db),
            path: dir.to_path_buf(),
            log_retention: log_retention.max(1),
            blob_refs: Mutex::new(HashMap::new()),
            logs: Mutex::new(HashMap::new()),
        };
        let refs = store.count_blob_refs()?;
        store.delete_orphan_blobs(&refs)?;
        *lock(&store.blob_refs) = refs;
        *lock(&store.logs) = store.recover_log_ranges()?;
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

    /// Finds, per function, the first and last log seq with two seeks per function.
    fn recover_log_ranges(&self) -> Result<HashMap<String, LogRange>, StoreError> {
        let mut ranges = HashMap::new();
        let mut it = self.db.raw_iterator_cf(self.cf(CF_LOGS)?);
        it.seek_to_first();
        while let Some(key) = it.key().map(<[u8]>::to_vec) {
            let corrupt = |key: &[u8]| StoreError::Corrupt {
                what: format!("log key {:?}", String::from_utf8_lossy(key)),
                path: self.path.clone(),
                detail: "expected `name \\0 seq(8 bytes, big-endian)`".to_string(),
            };
            let (name, first) = parse_log_key(&key).ok_or_else(|| corrupt(&key))?;
            let name = name.to_string();
            it.seek_for_prev(log_key(&name, u64::MAX));
            let last_key = it.key().ok_or_else(|| corrupt(&key))?;
            let (_, last) = parse_log_key(last_key).ok_or_else(|| corrupt(last_key))?;
            ranges.insert(
                name.clone(),
                LogRange {
                    first,
                    next: last + 1,
                },
            );
            it.seek(log_prefix_end(&name));
        }
        it.status().map_err(self.rocks("scan logs"))?;
        Ok(ranges)
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
        match self
            .db
            .get_pinned_cf(self.cf(CF_FUNCTIONS)?, name.as_bytes())
            .map_err(self.rocks("read function"))?
        {
            Some(v) => Ok(Some(self.decode_function(name.as_bytes(), &v)?)),
            None => Ok(None),
        }
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
        batch.put_cf(
            self.cf(CF_FUNCTIONS)?,
            name.as_bytes(),
            self.encode_function(config)?,
        );
        self.db
            .write_opt(batch, &Self::synced())
            .map_err(self.rocks("create function"))?;
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
        batch.put_cf(
            self.cf(CF_FUNCTIONS)?,
            name.as_bytes(),
            self.encode_function(config)?,
        );
        self.db
            .write_opt(batch, &Self::synced())
            .map_err(self.rocks("update function"))?;
        apply_counts(&mut refs, counts);
        Ok(())
    }

    fn delete_function(&self, name: &str) -> Result<Option<FunctionConfig>, StoreError> {
        let mut refs = lock(&self.blob_refs);
        let Some(current) = self.get_function(name)? else {
            return Ok(None);
        };
        let mut logs = lock(&self.logs);
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
        self.db
            .write_opt(batch, &Self::synced())
            .map_err(self.rocks("delete function"))?;
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
        let mut logs = lock(&self.logs);
        // Checked under the logs lock, which `delete_function` holds while it commits: logs of a
        // deleted function are either removed with it or never written.
        if self.get_function(name)?.is_none() {
            logs.remove(name);
            return Ok(Vec::new());
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let cf = self.cf(CF_LOGS)?;
        let mut range = logs.get(name).copied().unwrap_or(LogRange::EMPTY);
        let mut batch = WriteBatch::default();
        let mut stored = Vec::with_capacity(events.len());
        for e in events {
            let event = LogEvent {
                seq: range.next,
                timestamp_ms: e.timestamp_ms,
                request_id: e.request_id,
                message: e.message,
            };
            let value = serde_json::to_vec(&event).map_err(|e| StoreError::Corrupt {
                what: format!("log event of `{name}` (encoding)"),
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
            batch.put_cf(cf, log_key(name, event.seq), value);
            range.next += 1;
            stored.push(event);
        }
        let count = range.next - range.first;
        if count > self.log_retention {
            let new_first = range.next - self.log_retention;
            if new_first - range.first <= POINT_DELETE_MAX {
                for seq in range.first..new_first {
                    batch.delete_cf(cf, log_key(name, seq));
                }
            } else {
                batch.delete_range_cf(cf, log_key(name, range.first), log_key(name, new_first));
            }
            range.first = new_first;
        }
        // Logs are not synced: losing the last lines on a power cut is acceptable, an fsync per
        // invocation is not.
        self.db.write(batch).map_err(self.rocks("append logs"))?;
        logs.insert(name.to_string(), range);
        Ok(stored)
    }

    fn get_logs(
        &self,
        name: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<LogEvent>, StoreError> {
        let prefix = log_prefix(name);
        let mut it = self.db.raw_iterator_cf(self.cf(CF_LOGS)?);
        it.seek(log_key(name, after_seq.saturating_add(1)));
        let mut out = Vec::new();
        while out.len() < limit {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if !k.starts_with(&prefix) || k.len() != prefix.len() + 8 {
                break;
            }
            let event: LogEvent = serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
                what: format!("log event {:?}", String::from_utf8_lossy(k)),
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
            out.push(event);
            it.next();
        }
        it.status().map_err(self.rocks("read logs"))?;
        Ok(out)
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
