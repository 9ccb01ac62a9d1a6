//! The background log writer: invocation logs leave the answer's critical path. Callers queue a
//! function's lines ([`LogWriter::try_queue`] never blocks; [`LogWriter::queue`] waits for room);
//! one thread takes everything queued so far and writes it as one RocksDB write batch.
//!
//! - Read-your-writes: [`LogWriter::flush`] returns once every line queued before it is written;
//!   the store calls it before each log read and before a function is deleted.
//! - Bounded: at most [`QUEUE_CAPACITY`] entries (one per invocation) wait; past that, callers wait
//!   for room (back-pressure), memory never grows without bound.
//! - Nothing lost on shutdown: [`LogWriter::close`] (also on drop) lets the thread write what is
//!   queued and joins it; lines handed over afterwards are written directly.
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::logs::LogTable;
use super::writers::lock;
use super::{NewLogEvent, StoreError};

/// Entries (one invocation's lines each) that may wait for the writer.
pub(super) const QUEUE_CAPACITY: usize = 4096;
/// The most entries written in one batch.
const BATCH_MAX: usize = 512;
/// After the first entry of a batch, how long the writer lets more arrive before it writes:
/// under load one wake-up and one write serve many invocations. A read waits at most this much
/// longer for its flush.
const LINGER: Duration = Duration::from_millis(2);

enum Message {
    Append(String, Vec<NewLogEvent>),
    /// Answered once everything queued before it is written.
    Flush(mpsc::Sender<()>),
}

pub(super) struct LogWriter {
    table: Arc<LogTable>,
    /// `None` once closed. Senders clone it and send outside the lock; the thread ends when the
    /// last clone is gone, so whatever was sent before is written.
    tx: Mutex<Option<SyncSender<Message>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl LogWriter {
    /// Starts the writer thread.
    pub(super) fn start(table: Arc<LogTable>) -> Result<LogWriter, StoreError> {
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let for_thread = Arc::clone(&table);
        let thread = std::thread::Builder::new()
            .name("lamina-log-writer".to_string())
            .spawn(move || run(&for_thread, &rx))
            .map_err(|e| StoreError::LogWriter(format!("cannot start its thread: {e}")))?;
        Ok(LogWriter {
            table,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn sender(&self) -> Option<SyncSender<Message>> {
        lock(&self.tx).clone()
    }

    /// Queues `events` without blocking; gives them back when the queue is full (then call
    /// [`LogWriter::queue`] off the async threads).
    pub(super) fn try_queue(
        &self,
        name: &str,
        events: Vec<NewLogEvent>,
    ) -> Result<(), Vec<NewLogEvent>> {
        let Some(tx) = self.sender() else {
            return Err(events);
        };
        match tx.try_send(Message::Append(name.to_string(), events)) {
            Ok(()) => Ok(()),
            // Full, or the thread is gone (it panicked; `queue` then writes directly).
            Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => match m {
                Message::Append(_, events) => Err(events),
                Message::Flush(_) => unreachable!("an Append message comes back as it was sent"),
            },
        }
    }

    /// Queues `events`, waiting while the queue is full (blocking). After `close`, writes them
    /// directly.
    pub(super) fn queue(&self, name: &str, events: Vec<NewLogEvent>) -> Result<(), StoreError> {
        let message = Message::Append(name.to_string(), events);
        let unsent = match self.sender() {
            Some(tx) => match tx.send(message) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(m)) => m,
            },
            None => message,
        };
        match unsent {
            Message::Append(name, events) => self.table.append(vec![(name, events)]).map(|_| ()),
            Message::Flush(_) => unreachable!("an Append message comes back as it was sent"),
        }
    }

    /// Returns once every entry queued before this call is written (blocking).
    pub(super) fn flush(&self) {
        match self.sender() {
            Some(tx) => {
                let (done_tx, done_rx) = mpsc::channel();
                if tx.send(Message::Flush(done_tx)).is_ok() {
                    drop(tx);
                    // An error means the thread is gone; its queue is gone with it.
                    let _ = done_rx.recv();
                }
            }
            // Closed, or closing: wait until the thread has written what it had.
            None => drop(lock(&self.thread)),
        }
    }

    /// Writes what is queued and stops the thread; later entries are written directly.
    pub(super) fn close(&self) {
        let mut thread = lock(&self.thread);
        drop(lock(&self.tx).take());
        if let Some(t) = thread.take() {
            if t.join().is_err() {
                tracing::error!("the log writer thread panicked");
            }
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.close();
    }
}

/// The writer thread: takes what is queued (up to `BATCH_MAX` entries), writes it in one batch,
/// answers the flushes that were waiting behind it. Ends when every sender is gone.
fn run(table: &LogTable, rx: &Receiver<Message>) {
    while let Ok(first) = rx.recv() {
        if matches!(first, Message::Append(..)) {
            // Senders do not wake a sleeping thread: what arrives meanwhile joins this batch.
            std::thread::sleep(LINGER);
        }
        let mut entries = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Append(name, events) => entries.push((name, events)),
                Message::Flush(done) => flushes.push(done),
            }
            if entries.len() < BATCH_MAX {
                next = rx.try_recv().ok();
            }
        }
        if !entries.is_empty() {
            let count = entries.len();
            if let Err(e) = table.append(entries) {
                tracing::warn!(error = %e, entries = count, "cannot store invocation logs");
            }
        }
        for done in flushes {
            // The flusher may have stopped waiting.
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
#[path = "log_writer_tests.rs"]
mod tests;
