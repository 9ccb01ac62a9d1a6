//! The database handle every table and writer shares, and the write batch: the one way state is
//! written. A [`Batch`] collects puts and deletes over any number of column families; writing it
//! is atomic, with an explicit [`Durability`]. Batches can also be merged into one write (the
//! queue's group committer does).
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rocksdb::{ColumnFamily, WriteBatch, WriteOptions, DB};

use super::error::StorageError;
use super::schema;

/// Whether a write returns before or after it is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before returning: an answered write survives a power cut.
    Synced,
    /// In the write-ahead log, not synced: may be lost on a power cut (not on a process crash).
    Buffered,
}

/// The controller's database (cheap to clone: one `Arc`).
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

struct Inner {
    db: DB,
    path: PathBuf,
}

impl Database {
    /// Opens (creating if needed) the database in `dir` with every column family of
    /// [`schema`].
    pub fn open(dir: &Path) -> Result<Database, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let db = DB::open_cf_descriptors(&schema::db_options(), dir, schema::descriptors())
            .map_err(|source| StorageError::Open {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(Database {
            inner: Arc::new(Inner {
                db,
                path: dir.to_path_buf(),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub(super) fn rocks(&self) -> &DB {
        &self.inner.db
    }

    pub(super) fn cf(&self, name: &'static str) -> Result<&ColumnFamily, StorageError> {
        self.inner
            .db
            .cf_handle(name)
            .ok_or_else(|| StorageError::MissingColumnFamily {
                name,
                path: self.inner.path.clone(),
            })
    }

    /// Maps an engine error of `op` to a [`StorageError`] naming this database.
    pub(super) fn failed(
        &self,
        op: impl Into<String>,
    ) -> impl FnOnce(rocksdb::Error) -> StorageError {
        let (op, path) = (op.into(), self.inner.path.clone());
        move |source| StorageError::Rocks { op, path, source }
    }

    /// A [`StorageError::Corrupt`] naming this database.
    pub fn corrupt(&self, what: impl Into<String>, detail: impl ToString) -> StorageError {
        StorageError::Corrupt {
            what: what.into(),
            path: self.inner.path.clone(),
            detail: detail.to_string(),
        }
    }

    /// Writes `batch` atomically; `op` names it in an error.
    pub fn write(
        &self,
        batch: &Batch<'_>,
        durability: Durability,
        op: &str,
    ) -> Result<(), StorageError> {
        self.write_all(std::slice::from_ref(batch), durability, op)
    }

    /// Writes several batches as one atomic write (group commit: one fsync for all).
    pub fn write_all(
        &self,
        batches: &[Batch<'_>],
        durability: Durability,
        op: &str,
    ) -> Result<(), StorageError> {
        let mut wb = WriteBatch::default();
        for batch in batches {
            for o in &batch.ops {
                match o {
                    Op::Put { cf, key, value } => wb.put_cf(self.cf(cf)?, key, value),
                    Op::Delete { cf, key } => wb.delete_cf(self.cf(cf)?, key),
                    Op::DeleteRange { cf, from, to } => wb.delete_range_cf(self.cf(cf)?, from, to),
                }
            }
        }
        if wb.is_empty() {
            return Ok(());
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(durability == Durability::Synced);
        self.inner.db.write_opt(wb, &opts).map_err(self.failed(op))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op<'v> {
    Put {
        cf: &'static str,
        key: Vec<u8>,
        value: Cow<'v, [u8]>,
    },
    Delete {
        cf: &'static str,
        key: Vec<u8>,
    },
    DeleteRange {
        cf: &'static str,
        from: Vec<u8>,
        to: Vec<u8>,
    },
}

/// Changes to write atomically. Values may borrow (`'v`) so that a large blob is not copied
/// before the write; a batch handed to another thread owns its values (`Batch<'static>`).
/// Tables add to it (`Table::put`, `Table::delete`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch<'v> {
    ops: Vec<Op<'v>>,
}

impl<'v> Batch<'v> {
    pub fn new() -> Batch<'v> {
        Batch::default()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Key and value bytes in the batch (to bound a group of batches).
    pub fn size(&self) -> usize {
        self.ops
            .iter()
            .map(|o| match o {
                Op::Put { key, value, .. } => key.len() + value.len(),
                Op::Delete { key, .. } => key.len(),
                Op::DeleteRange { from, to, .. } => from.len() + to.len(),
            })
            .sum()
    }

    /// Appends every change of `other`.
    pub fn append(&mut self, other: Batch<'v>) {
        self.ops.extend(other.ops);
    }

    pub(super) fn put(&mut self, cf: &'static str, key: Vec<u8>, value: Cow<'v, [u8]>) {
        self.ops.push(Op::Put { cf, key, value });
    }

    pub(super) fn delete(&mut self, cf: &'static str, key: Vec<u8>) {
        self.ops.push(Op::Delete { cf, key });
    }

    pub(super) fn delete_range(&mut self, cf: &'static str, from: Vec<u8>, to: Vec<u8>) {
        self.ops.push(Op::DeleteRange { cf, from, to });
    }

    /// Deletions of `cf` in the batch.
    pub fn deletes_in(&self, cf: &str) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o, Op::Delete { cf: c, .. } if *c == cf))
            .count()
    }
}
