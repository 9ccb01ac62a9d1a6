//! The storage layer's own error: what the engine (RocksDB today) and the stored bytes can go wrong
//! with. The domain errors of the store (`StoreError`), the network state (`NetworkError`) and the
//! queue (`QueueError`) wrap it, so a failed read or write reads the same wherever it happened.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the RocksDB store at {path}: {source} (is another lamina-controller using this --data-dir?)")]
    Open {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("RocksDB {op} failed in {path}: {source}")]
    Rocks {
        op: String,
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("stored {what} is corrupt in {path}: {detail}")]
    Corrupt {
        what: String,
        path: PathBuf,
        detail: String,
    },
    #[error("column family `{name}` is missing in {path}")]
    MissingColumnFamily { name: &'static str, path: PathBuf },
}
