//! Group commit: one thread owns the synced writes of the queue. Callers send their batch (a list of
//! operations that must be atomic) and wait; the thread takes every batch waiting, applies them all
//! to one RocksDB `WriteBatch`, writes it with `sync = true` (one fsync for the group) and answers
//! each caller. Each caller's operations are atomic because the whole group is.
use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::QueueError;
use crate::store::{Batch, Database, Durability};

/// Batches merged into one write at most.
const MAX_GROUP: usize = 4096;
/// Bytes merged into one write at most (a group of 1 MB payloads stays reasonable).
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;

enum Reply {
    Async(oneshot::Sender<Result<(), String>>),
    Blocking(mpsc::Sender<Result<(), String>>),
}

struct Request {
    batch: Batch<'static>,
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
    pub fn start(db: Database) -> Committer {
        let (tx, rx) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("lamina-queue-commit".into())
            .spawn(move || run(&db, &rx))
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

    /// Writes `batch` atomically and durably (synced); returns once it is on disk.
    pub async fn commit(&self, batch: Batch<'static>) -> Result<(), QueueError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        self.send(Request {
            batch,
            reply: Reply::Async(reply),
        })?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(detail)) => Err(QueueError::Task(format!("synced write failed: {detail}"))),
            Err(_) => Err(QueueError::CommitterGone),
        }
    }

    /// Blocking variant (start-up, blocking threads).
    pub fn commit_blocking(&self, batch: Batch<'static>) -> Result<(), QueueError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (reply, rx) = mpsc::channel();
        self.send(Request {
            batch,
            reply: Reply::Blocking(reply),
        })?;
        match rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(detail)) => Err(QueueError::Task(format!("synced write failed: {detail}"))),
            Err(_) => Err(QueueError::CommitterGone),
        }
    }
}

fn run(db: &Database, rx: &mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut bytes = first.batch.size();
        let mut group = vec![first];
        while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += r.batch.size();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        let (batches, replies): (Vec<Batch<'static>>, Vec<Reply>) =
            group.into_iter().map(|r| (r.batch, r.reply)).unzip();
        let result = db
            .write_all(&batches, Durability::Synced, "queue write")
            .map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, requests = replies.len(), "queue write failed");
        }
        for reply in replies {
            // A caller that gave up waiting is fine: its write is done either way.
            match reply {
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
