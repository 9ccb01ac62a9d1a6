//! Group commit: one thread owns the synced writes of the queue. Callers send their batch (a list of
//! operations that must be atomic) and wait; the thread takes every batch waiting, applies them all
//! to one RocksDB `WriteBatch`, writes it with `sync = true` (one fsync for the group) and answers
//! each caller. Each caller's operations are atomic because the whole group is.
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;

use rocksdb::{WriteBatch, WriteOptions, DB};
use tokio::sync::oneshot;

use super::QueueError;

/// Batches merged into one write at most.
const MAX_GROUP: usize = 4096;
/// Bytes merged into one write at most (a group of 1 MB payloads stays reasonable).
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// One write operation on a column family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        cf: &'static str,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        cf: &'static str,
        key: Vec<u8>,
    },
}

impl Op {
    pub fn put(cf: &'static str, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            cf,
            key: key.into(),
            value: value.into(),
        }
    }

    pub fn delete(cf: &'static str, key: impl Into<Vec<u8>>) -> Op {
        Op::Delete {
            cf,
            key: key.into(),
        }
    }

    fn size(&self) -> usize {
        match self {
            Op::Put { key, value, .. } => key.len() + value.len(),
            Op::Delete { key, .. } => key.len(),
        }
    }
}

enum Reply {
    Async(oneshot::Sender<Result<(), String>>),
    Blocking(mpsc::Sender<Result<(), String>>),
}

struct Request {
    ops: Vec<Op>,
    reply: Reply,
}

/// Handle to the committer thread. The last handle dropped closes the channel and joins the
/// thread, so the thread's reference to the database is gone when the drop returns: the directory can
/// be opened again at once, and no RocksDB teardown runs on a detached thread while the process exits.
#[derive(Clone)]
pub struct Committer {
    inner: Arc<CommitterThread>,
}

struct CommitterThread {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for CommitterThread {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the queue committer thread panicked");
            }
        }
    }
}

impl Committer {
    pub fn start(db: Arc<DB>, path: PathBuf) -> Committer {
        let (tx, rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("lamina-queue-commit".into())
            .spawn(move || run(&db, &path, &rx))
            .expect("spawn the queue committer thread");
        Committer {
            inner: Arc::new(CommitterThread {
                tx: Some(tx),
                thread: Some(thread),
            }),
        }
    }

    fn send(&self, request: Request) -> Result<(), QueueError> {
        self.inner
            .tx
            .as_ref()
            .ok_or(QueueError::CommitterGone)?
            .send(request)
            .map_err(|_| QueueError::CommitterGone)
    }

    /// Writes `ops` atomically and durably (synced); returns once they are on disk.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<(), QueueError> {
        if ops.is_empty() {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        self.send(Request {
            ops,
            reply: Reply::Async(reply),
        })?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(detail)) => Err(QueueError::Task(format!("synced write failed: {detail}"))),
            Err(_) => Err(QueueError::CommitterGone),
        }
    }

    /// Blocking variant (start-up, blocking threads).
    pub fn commit_blocking(&self, ops: Vec<Op>) -> Result<(), QueueError> {
        if ops.is_empty() {
            return Ok(());
        }
        let (reply, rx) = mpsc::channel();
        self.send(Request {
            ops,
            reply: Reply::Blocking(reply),
        })?;
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(detail)) => Err(QueueError::Task(format!("synced write failed: {detail}"))),
            Err(_) => Err(QueueError::CommitterGone),
        }
    }
}

fn run(db: &DB, path: &std::path::Path, rx: &mpsc::Receiver<Request>) {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        let mut bytes: usize = group[0].ops.iter().map(Op::size).sum();
        while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += r.ops.iter().map(Op::size).sum::<usize>();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        let result = write_group(db, &group, &sync)
            .map_err(|e| format!("{e} (RocksDB store {})", path.display()));
        if let Err(e) = &result {
            tracing::error!(error = %e, requests = group.len(), "queue write failed");
        }
        for r in group {
            // A caller that gave up waiting is fine: its write is done either way.
            match r.reply {
                Reply::Async(tx) => {
                    let _ = tx.send(result.clone());
                }
                Reply::Blocking(tx) => {
                    let _ = tx.send(result.clone());
                }
            }
        }
    }
}

fn write_group(db: &DB, group: &[Request], sync: &WriteOptions) -> Result<(), String> {
    let mut batch = WriteBatch::default();
    for r in group {
        for op in &r.ops {
            match op {
                Op::Put { cf, key, value } => {
                    let h = db
                        .cf_handle(cf)
                        .ok_or_else(|| format!("column family `{cf}` is missing"))?;
                    batch.put_cf(h, key, value);
                }
                Op::Delete { cf, key } => {
                    let h = db
                        .cf_handle(cf)
                        .ok_or_else(|| format!("column family `{cf}` is missing"))?;
                    batch.delete_cf(h, key);
                }
            }
        }
    }
    db.write_opt(batch, sync).map_err(|e| e.to_string())
}
