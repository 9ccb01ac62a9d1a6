//! The `logs` column family: per function, log events keyed `name \0 seq_be`, bounded by the
//! retention. [`LogTable`] writes and reads them; `log_writer.rs` batches the writes of the
//! invocation path in the background.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use rocksdb::{WriteBatch, DB};

use super::rocks::lock;
use super::{LogEvent, NewLogEvent, StoreError};

pub(super) const CF_LOGS: &str = "logs";
/// The function records' family: a log is only written while its function exists.
const CF_FUNCTIONS: &str = "functions";

/// Above this many expired log events, one range deletion replaces the point deletions.
const POINT_DELETE_MAX: u64 = 1024;

/// The log events present for one function: seqs `first..next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LogRange {
    first: u64,
    next: u64,
}

impl LogRange {
    const EMPTY: LogRange = LogRange { first: 1, next: 1 };
}

/// The seqs present per function, rebuilt on open; its lock serialises log writers.
pub(super) type LogRanges = HashMap<String, LogRange>;

pub(super) fn log_prefix(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

/// The first key after every log key of `name` (`name \x01`): names never contain control bytes.
pub(super) fn log_prefix_end(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1);
    k.extend_from_slice(name.as_bytes());
    k.push(1);
    k
}

fn log_key(name: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 9);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
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

/// Functions' logs in RocksDB. Shared (`Arc`) by the store and its background log writer.
pub(super) struct LogTable {
    db: Arc<DB>,
    path: PathBuf,
    retention: u64,
    ranges: Mutex<LogRanges>,
}

impl LogTable {
    /// Keeps at most `retention` events per function (at least 1); rebuilds the ranges.
    pub(super) fn open(db: Arc<DB>, path: PathBuf, retention: u64) -> Result<LogTable, StoreError> {
        let table = LogTable {
            db,
            path,
            retention: retention.max(1),
            ranges: Mutex::new(HashMap::new()),
        };
        *lock(&table.ranges) = table.recover_ranges()?;
        Ok(table)
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StoreError::MissingColumnFamily {
                name,
                path: self.path.clone(),
            })
    }

    fn rocks(&self, op: &'static str) -> impl FnOnce(rocksdb::Error) -> StoreError + '_ {
        move |source| StoreError::Rocks {
            op,
            path: self.path.clone(),
            source,
        }
    }

    /// The log writers' lock. `delete_function` holds it while it commits, so the logs of a
    /// deleted function are either removed with it or never written.
    pub(super) fn lock_ranges(&self) -> MutexGuard<'_, LogRanges> {
        lock(&self.ranges)
    }

    /// Finds, per function, the first and last log seq with two seeks per function.
    fn recover_ranges(&self) -> Result<LogRanges, StoreError> {
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

    /// Appends each function's lines in one write batch, trimming the oldest beyond the
    /// retention. Returns the stored events per entry (none for a function that no longer exists).
    /// Not synced: losing the last lines on a power cut is acceptable, an fsync per invocation is
    /// not.
    pub(super) fn append(
        &self,
        entries: Vec<(String, Vec<NewLogEvent>)>,
    ) -> Result<Vec<Vec<LogEvent>>, StoreError> {
        let mut ranges = lock(&self.ranges);
        let (functions, cf) = (self.cf(CF_FUNCTIONS)?, self.cf(CF_LOGS)?);
        let mut batch = WriteBatch::default();
        let mut updated: HashMap<String, LogRange> = HashMap::new();
        let mut out = Vec::with_capacity(entries.len());
        for (name, events) in entries {
            let mut range = match updated.get(&name) {
                Some(r) => *r,
                // Checked under the ranges lock (see `lock_ranges`).
                None => {
                    let exists = self
                        .db
                        .get_pinned_cf(functions, name.as_bytes())
                        .map_err(self.rocks("read function"))?
                        .is_some();
                    if !exists {
                        ranges.remove(&name);
                        out.push(Vec::new());
                        continue;
                    }
                    ranges.get(&name).copied().unwrap_or(LogRange::EMPTY)
                }
            };
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
                batch.put_cf(cf, log_key(&name, event.seq), value);
                range.next += 1;
                stored.push(event);
            }
            updated.insert(name, range);
            out.push(stored);
        }
        // Trim once per function, after all of its entries in this batch.
        for (name, range) in updated.iter_mut() {
            let count = range.next - range.first;
            if count > self.retention {
                let new_first = range.next - self.retention;
                if new_first - range.first <= POINT_DELETE_MAX {
                    for seq in range.first..new_first {
                        batch.delete_cf(cf, log_key(name, seq));
                    }
                } else {
                    batch.delete_range_cf(cf, log_key(name, range.first), log_key(name, new_first));
                }
                range.first = new_first;
            }
        }
        if !batch.is_empty() {
            self.db.write(batch).map_err(self.rocks("append logs"))?;
        }
        ranges.extend(updated);
        Ok(out)
    }

    /// Up to `limit` events with `seq > after_seq`, oldest first.
    pub(super) fn get(
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
