//! The `logs` column family: per function, log events keyed `name \0 seq_be`, bounded by the
//! retention. [`LogTable`] writes and reads them; `log_writer.rs` batches the writes of the
//! invocation path in the background.
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::db::{Batch, Database, Durability};
use super::keys;
use super::schema;
use super::table::{Json, Raw, Start, Table};
use super::writers::lock;
use super::{LogEvent, NewLogEvent, StoreError};

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

/// Functions' logs in RocksDB. Shared (`Arc`) by the store and its background log writer.
pub(super) struct LogTable {
    db: Database,
    retention: u64,
    ranges: Mutex<LogRanges>,
}

impl LogTable {
    /// Keeps at most `retention` events per function (at least 1); rebuilds the ranges.
    pub(super) fn open(db: Database, retention: u64) -> Result<LogTable, StoreError> {
        let table = LogTable {
            db,
            retention: retention.max(1),
            ranges: Mutex::new(HashMap::new()),
        };
        *lock(&table.ranges) = table.recover_ranges()?;
        Ok(table)
    }

    pub(super) fn table(&self) -> Table<'_, Json<LogEvent>> {
        self.db.table(schema::LOGS)
    }

    /// The log writers' lock. `delete_function` holds it while it commits, so the logs of a
    /// deleted function are either removed with it or never written.
    pub(super) fn lock_ranges(&self) -> MutexGuard<'_, LogRanges> {
        lock(&self.ranges)
    }

    /// Finds, per function, the first and last log seq with two seeks per function.
    fn recover_ranges(&self) -> Result<LogRanges, StoreError> {
        let table = self.table();
        let corrupt = |key: &[u8]| {
            self.db.corrupt(
                format!("log key {:?}", String::from_utf8_lossy(key)),
                "expected `name \\0 seq(8 bytes, big-endian)`",
            )
        };
        let mut ranges = HashMap::new();
        let mut from = Vec::new();
        while let Some(key) = table.first_key_at(&from)? {
            let (name, first) = keys::split_u64(&key).ok_or_else(|| corrupt(&key))?;
            let last_key = table
                .last_key_at_or_before(&keys::with_u64(name, u64::MAX))?
                .ok_or_else(|| corrupt(&key))?;
            let (_, last) = keys::split_u64(&last_key).ok_or_else(|| corrupt(&last_key))?;
            ranges.insert(
                name.to_string(),
                LogRange {
                    first,
                    next: last + 1,
                },
            );
            from = keys::prefix_end(name);
        }
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
        // A log is only written while its function exists.
        let (functions, logs) = (self.db.table::<Raw>(schema::FUNCTIONS), self.table());
        let mut batch = Batch::new();
        let mut updated: HashMap<String, LogRange> = HashMap::new();
        let mut out = Vec::with_capacity(entries.len());
        for (name, events) in entries {
            let mut range = match updated.get(&name) {
                Some(r) => *r,
                // Checked under the ranges lock (see `lock_ranges`).
                None => {
                    let exists = functions.contains(name.as_bytes())?;
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
                logs.put(&mut batch, keys::with_u64(&name, event.seq), &event)?;
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
                        logs.delete(&mut batch, keys::with_u64(name, seq));
                    }
                } else {
                    logs.delete_range(
                        &mut batch,
                        keys::with_u64(name, range.first),
                        keys::with_u64(name, new_first),
                    );
                }
                range.first = new_first;
            }
        }
        self.db.write(&batch, Durability::Buffered, "append logs")?;
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
        let prefix = keys::prefix(name);
        let from = keys::with_u64(name, after_seq.saturating_add(1));
        Ok(self.table().page(Start::At(&from), limit, |k| {
            k.starts_with(&prefix) && k.len() == prefix.len() + 8
        })?)
    }
}
