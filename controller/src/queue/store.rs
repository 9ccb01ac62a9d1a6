//! The queue's durable state on the controller's RocksDB. Column families and keys: see
//! `store/README.md`. Invariant: an invocation that is not finished has exactly one `queue_due` key,
//! `due_ms_be | request_id`, matching its record's `due_ms`, and its payload in `queue_payloads`;
//! a finished one has neither, and one `invocations_done` key.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lamina_proto::domain::{Destination, EventInvokeConfig};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options, DB};
use serde::{Deserialize, Serialize};

use super::commit::{Committer, Op};
use super::{Invocation, QueueConfig, QueueError, State};

pub(super) const CF_INVOCATIONS: &str = "invocations";
pub(super) const CF_PAYLOADS: &str = "queue_payloads";
pub(super) const CF_DUE: &str = "queue_due";
pub(super) const CF_LEASES: &str = "queue_leases";
pub(super) const CF_BY_FUNCTION: &str = "invocations_by_function";
pub(super) const CF_DONE: &str = "invocations_done";
pub(super) const CF_IDEMPOTENCY: &str = "idempotency";
pub(super) const CF_IDEMPOTENCY_TIME: &str = "idempotency_by_time";
pub(super) const CF_CONFIGS: &str = "event_invoke_configs";
pub(super) const CF_DLQ: &str = "dead_letters";

/// The column families the queue needs; `RocksStore::open` opens them with the store's own.
pub const COLUMN_FAMILIES: [&str; 10] = [
    CF_INVOCATIONS,
    CF_PAYLOADS,
    CF_DUE,
    CF_LEASES,
    CF_BY_FUNCTION,
    CF_DONE,
    CF_IDEMPOTENCY,
    CF_IDEMPOTENCY_TIME,
    CF_CONFIGS,
    CF_DLQ,
];

/// Options of the queue's column families: the due index and the leases are FIFO-like (keys are
/// written once and deleted soon), so files with many deletions are compacted early to keep the
/// scans from wading through tombstones.
pub fn column_family_descriptors() -> Vec<ColumnFamilyDescriptor> {
    COLUMN_FAMILIES
        .iter()
        .map(|name| {
            let mut o = Options::default();
            o.set_compression_type(DBCompressionType::None);
            if matches!(*name, CF_DUE | CF_LEASES | CF_PAYLOADS) {
                o.add_compact_on_deletion_collector_factory(1024, 256, 0.5);
            }
            if *name == CF_PAYLOADS {
                o.set_enable_blob_files(true);
                o.set_min_blob_size(4096);
            }
            ColumnFamilyDescriptor::new(*name, o)
        })
        .collect()
}

/// Stripes of the idempotency lock: keys that hash to the same stripe are checked one at a time.
const IDEMPOTENCY_STRIPES: usize = 64;

/// An event to accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub function_name: String,
    /// "" (unqualified), `$LATEST`, a version number or an alias name: resolved at each delivery.
    pub qualifier: String,
    pub payload: Vec<u8>,
    /// "" = none.
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Accepted and durable under this request id.
    New(String),
    /// The idempotency key was seen within the window: the first request id, nothing enqueued.
    Duplicate(String),
}

impl Enqueued {
    pub fn request_id(&self) -> &str {
        match self {
            Enqueued::New(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// One message of a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub seq: u64,
    pub request_id: String,
    pub function_name: String,
    pub condition: String,
    pub error: String,
    pub attempts: u32,
    pub timestamp_ms: u64,
    /// Lambda's destination record (JSON text).
    pub record: String,
    #[serde(skip)]
    pub payload: Vec<u8>,
    /// The version or alias the event was sent to ("" = unqualified): a redrive sends it there
    /// again. Letters stored before this existed decode with "".
    #[serde(default)]
    pub qualifier: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct IdempotencyEntry {
    pub request_id: String,
    pub created_ms: u64,
}

pub struct QueueStore {
    pub(super) db: Arc<DB>,
    pub(super) path: PathBuf,
    pub(super) config: QueueConfig,
    pub(super) committer: Committer,
    idempotency_locks: Vec<tokio::sync::Mutex<()>>,
    /// Per dead-letter queue: (next seq, messages).
    pub(super) dlq: Mutex<HashMap<String, (u64, u64)>>,
    /// Serialises redrives (two redrives of one message must not both enqueue it).
    pub(super) redrive_lock: tokio::sync::Mutex<()>,
    /// Finished invocation records (rebuilt on open).
    pub(super) finished: AtomicU64,
    /// Wakes the dispatcher: new events, finished deliveries.
    pub(super) wake: tokio::sync::Notify,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn due_key(due_ms: u64, request_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + request_id.len());
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(request_id.as_bytes());
    k
}

pub(super) fn split_time_key(key: &[u8]) -> Option<(u64, &[u8])> {
    if key.len() < 8 {
        return None;
    }
    let (t, rest) = key.split_at(8);
    Some((u64::from_be_bytes(t.try_into().ok()?), rest))
}

pub(super) fn by_function_key(name: &str, enqueued_ms: u64, request_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 9 + request_id.len());
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(&enqueued_ms.to_be_bytes());
    k.extend_from_slice(request_id.as_bytes());
    k
}

pub(super) fn name_key(name: &str, rest: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1 + rest.len());
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k.extend_from_slice(rest.as_bytes());
    k
}

pub(super) fn dlq_key(queue: &str, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(queue.len() + 9);
    k.extend_from_slice(queue.as_bytes());
    k.push(0);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `[u32 LE header length][header][body]`.
pub(super) fn frame(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + header.len() + body.len());
    v.extend_from_slice(&(header.len() as u32).to_le_bytes());
    v.extend_from_slice(header);
    v.extend_from_slice(body);
    v
}

pub(super) fn unframe(v: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(v.get(..4)?.try_into().ok()?) as usize;
    let header = v.get(4..4 + len)?;
    Some((header, &v[4 + len..]))
}

impl QueueStore {
    /// The queue on `db` (opened with [`COLUMN_FAMILIES`]); rebuilds the in-memory counters and
    /// expires the leases of the previous controller process: their deliveries are due again now.
    pub fn open(db: Arc<DB>, path: &Path, config: QueueConfig) -> Result<QueueStore, QueueError> {
        let committer = Committer::start(Arc::clone(&db), path.to_path_buf());
        let store = QueueStore {
            db,
            path: path.to_path_buf(),
            config,
            committer,
            idempotency_locks: (0..IDEMPOTENCY_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            dlq: Mutex::new(HashMap::new()),
            redrive_lock: tokio::sync::Mutex::new(()),
            finished: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
        };
        store
            .finished
            .store(store.count_keys(CF_DONE)?, Ordering::Relaxed);
        *lock(&store.dlq) = store.recover_dlq()?;
        store.expire_leases(super::dispatch::now_ms())?;
        Ok(store)
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    pub(super) fn cf(&self, name: &'static str) -> Result<&ColumnFamily, QueueError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| QueueError::MissingColumnFamily {
                name,
                path: self.path.clone(),
            })
    }

    pub(super) fn rocks(&self, op: &'static str) -> impl FnOnce(rocksdb::Error) -> QueueError + '_ {
        move |source| QueueError::Rocks {
            op,
            path: self.path.clone(),
            source,
        }
    }

    pub(super) fn corrupt(&self, what: String, detail: impl ToString) -> QueueError {
        QueueError::Corrupt {
            what,
            path: self.path.clone(),
            detail: detail.to_string(),
        }
    }

    fn count_keys(&self, cf: &'static str) -> Result<u64, QueueError> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf)?);
        it.seek_to_first();
        let mut n = 0;
        while it.valid() {
            n += 1;
            it.next();
        }
        it.status().map_err(self.rocks("count keys"))?;
        Ok(n)
    }

    pub(super) fn encode_invocation(&self, inv: &Invocation) -> Vec<u8> {
        serde_json::to_vec(inv).expect("an invocation record always encodes")
    }

    /// The record of `request_id`, if any.
    pub fn get(&self, request_id: &str) -> Result<Option<Invocation>, QueueError> {
        match self
            .db
            .get_pinned_cf(self.cf(CF_INVOCATIONS)?, request_id.as_bytes())
            .map_err(self.rocks("read invocation"))?
        {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| self.corrupt(format!("invocation record `{request_id}`"), e)),
            None => Ok(None),
        }
    }

    pub fn payload(&self, request_id: &str) -> Result<Option<Vec<u8>>, QueueError> {
        self.db
            .get_cf(self.cf(CF_PAYLOADS)?, request_id.as_bytes())
            .map_err(self.rocks("read payload"))
    }

    /// The operations that accept one event (shared by invoke, destinations and redrive).
    pub(super) fn enqueue_ops(
        &self,
        now: u64,
        request_id: &str,
        (function_name, qualifier): (&str, &str),
        payload: &[u8],
        idempotency_key: &str,
    ) -> (Invocation, Vec<Op>) {
        let inv = Invocation {
            request_id: request_id.to_string(),
            function_name: function_name.to_string(),
            state: State::Queued,
            attempts: 0,
            function_errors: 0,
            throttles: 0,
            enqueued_ms: now,
            updated_ms: now,
            finished_ms: 0,
            due_ms: now,
            last_error: String::new(),
            destination: None,
            idempotency_key: idempotency_key.to_string(),
            condition: None,
            payload_size: payload.len() as u32,
            qualifier: qualifier.to_string(),
            executed_version: String::new(),
        };
        let mut ops = vec![
            Op::put(CF_PAYLOADS, request_id.as_bytes(), payload),
            Op::put(CF_DUE, due_key(now, request_id), Vec::new()),
            Op::put(
                CF_BY_FUNCTION,
                by_function_key(function_name, now, request_id),
                Vec::new(),
            ),
            Op::put(
                CF_INVOCATIONS,
                request_id.as_bytes(),
                self.encode_invocation(&inv),
            ),
        ];
        if !idempotency_key.is_empty() {
            let entry = IdempotencyEntry {
                request_id: request_id.to_string(),
                created_ms: now,
            };
            let key = name_key(function_name, idempotency_key);
            let mut time_key = now.to_be_bytes().to_vec();
            time_key.extend_from_slice(&key);
            ops.push(Op::put(
                CF_IDEMPOTENCY,
                key,
                serde_json::to_vec(&entry).expect("idempotency entry encodes"),
            ));
            ops.push(Op::put(CF_IDEMPOTENCY_TIME, time_key, Vec::new()));
        }
        (inv, ops)
    }

    /// Accepts an event: returns once it is on disk (synced), or the first request id of its
    /// idempotency key.
    pub async fn enqueue(&self, event: NewEvent) -> Result<Enqueued, QueueError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        if event.idempotency_key.is_empty() {
            let (_, ops) = self.enqueue_ops(
                super::dispatch::now_ms(),
                &request_id,
                (&event.function_name, &event.qualifier),
                &event.payload,
                "",
            );
            self.committer.commit(ops).await?;
            self.wake.notify_one();
            return Ok(Enqueued::New(request_id));
        }
        let key = name_key(&event.function_name, &event.idempotency_key);
        let stripe = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            (h.finish() as usize) % IDEMPOTENCY_STRIPES
        };
        let _guard = self.idempotency_locks[stripe].lock().await;
        let now = super::dispatch::now_ms();
        if let Some(v) = self
            .db
            .get_pinned_cf(self.cf(CF_IDEMPOTENCY)?, &key)
            .map_err(self.rocks("read idempotency key"))?
        {
            let entry: IdempotencyEntry = serde_json::from_slice(&v)
                .map_err(|e| self.corrupt("idempotency entry".to_string(), e))?;
            let window = self.config.idempotency_window.as_millis() as u64;
            if now < entry.created_ms.saturating_add(window) {
                return Ok(Enqueued::Duplicate(entry.request_id));
            }
        }
        let (_, ops) = self.enqueue_ops(
            now,
            &request_id,
            (&event.function_name, &event.qualifier),
            &event.payload,
            &event.idempotency_key,
        );
        self.committer.commit(ops).await?;
        self.wake.notify_one();
        Ok(Enqueued::New(request_id))
    }

    /// Up to `limit` due events (`due_ms <= now`) not in `skip`, oldest first, and the due time of
    /// the next event after them (to know how long to sleep).
    pub(super) fn scan_due(
        &self,
        now: u64,
        limit: usize,
        skip: &HashSet<String>,
    ) -> Result<(Vec<String>, Option<u64>), QueueError> {
        let mut it = self.db.raw_iterator_cf(self.cf(CF_DUE)?);
        it.seek_to_first();
        let mut out = Vec::new();
        let mut next = None;
        while let Some(key) = it.key() {
            let (due, rid) =
                split_time_key(key).ok_or_else(|| self.corrupt("queue_due key".into(), "short"))?;
            if due > now {
                next = Some(due);
                break;
            }
            let rid = String::from_utf8_lossy(rid).into_owned();
            if !skip.contains(&rid) {
                if out.len() >= limit {
                    next = Some(due);
                    break;
                }
                out.push(rid);
            }
            it.next();
        }
        it.status().map_err(self.rocks("scan due events"))?;
        Ok((out, next))
    }

    /// Events waiting (not finished).
    pub fn pending(&self) -> Result<u64, QueueError> {
        self.count_keys(CF_DUE)
    }

    /// Deliveries of the previous controller process are over (nothing will answer them): make them
    /// due now. Their attempt was counted when the lease was written.
    fn expire_leases(&self, now: u64) -> Result<(), QueueError> {
        let mut it = self.db.raw_iterator_cf(self.cf(CF_LEASES)?);
        it.seek_to_first();
        let mut ops = Vec::new();
        let mut n = 0;
        while let Some(key) = it.key() {
            let rid = String::from_utf8_lossy(key).into_owned();
            ops.push(Op::delete(CF_LEASES, key));
            if let Some(mut inv) = self.get(&rid)? {
                if !inv.state.is_terminal() {
                    ops.push(Op::delete(CF_DUE, due_key(inv.due_ms, &rid)));
                    inv.state = State::Retrying;
                    inv.due_ms = now;
                    inv.updated_ms = now;
                    inv.last_error =
                        "delivery interrupted: the controller stopped during it".to_string();
                    ops.push(Op::put(CF_DUE, due_key(now, &rid), Vec::new()));
                    ops.push(Op::put(
                        CF_INVOCATIONS,
                        rid.as_bytes(),
                        self.encode_invocation(&inv),
                    ));
                    n += 1;
                }
            }
            it.next();
        }
        it.status().map_err(self.rocks("scan leases"))?;
        if n > 0 {
            tracing::info!(
                deliveries = n,
                "expiring the leases of the previous controller process: redelivering"
            );
        }
        self.committer.commit_blocking(ops)
    }

    pub fn get_config(&self, name: &str) -> Result<Option<EventInvokeConfig>, QueueError> {
        match self
            .db
            .get_pinned_cf(self.cf(CF_CONFIGS)?, name.as_bytes())
            .map_err(self.rocks("read event invoke config"))?
        {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| self.corrupt(format!("event invoke config of `{name}`"), e)),
            None => Ok(None),
        }
    }

    pub async fn put_config(
        &self,
        name: &str,
        config: &EventInvokeConfig,
    ) -> Result<(), QueueError> {
        let v = serde_json::to_vec(config).expect("event invoke config encodes");
        self.committer
            .commit(vec![Op::put(CF_CONFIGS, name.as_bytes(), v)])
            .await
    }

    pub async fn delete_config(&self, name: &str) -> Result<(), QueueError> {
        self.committer
            .commit(vec![Op::delete(CF_CONFIGS, name.as_bytes())])
            .await
    }

    /// Destination operations for the end of `inv`: a new event for a function destination, or a
    /// dead letter. Returns the destination actually used (a missing destination function falls
    /// back to the default dead-letter queue).
    pub(super) fn destination_ops(
        &self,
        now: u64,
        dest: &Destination,
        function_exists: bool,
        inv: &Invocation,
        (payload, record): (&[u8], &str),
        ops: &mut Vec<Op>,
    ) -> (Destination, Option<String>) {
        match dest {
            Destination::Function(name) if function_exists => {
                let rid = uuid::Uuid::new_v4().to_string();
                let (_, more) = self.enqueue_ops(now, &rid, (name, ""), record.as_bytes(), "");
                ops.extend(more);
                (dest.clone(), None)
            }
            Destination::Function(_) => {
                let fallback =
                    Destination::Dlq(lamina_proto::domain::DEFAULT_FAILURE_DLQ.to_string());
                let q = self.dead_letter_ops(now, &fallback, inv, payload, record, ops);
                (fallback, q)
            }
            Destination::Dlq(_) => {
                let q = self.dead_letter_ops(now, dest, inv, payload, record, ops);
                (dest.clone(), q)
            }
        }
    }

    /// Appends a dead letter; returns the queue name (its count is raised by [`Self::committed_dead_letter`]
    /// once the write is durable).
    fn dead_letter_ops(
        &self,
        now: u64,
        dest: &Destination,
        inv: &Invocation,
        payload: &[u8],
        record: &str,
        ops: &mut Vec<Op>,
    ) -> Option<String> {
        let Destination::Dlq(queue) = dest else {
            return None;
        };
        let seq = {
            let mut dlq = lock(&self.dlq);
            let e = dlq.entry(queue.clone()).or_insert((1, 0));
            let seq = e.0;
            e.0 += 1;
            seq
        };
        let letter = DeadLetter {
            seq,
            request_id: inv.request_id.clone(),
            function_name: inv.function_name.clone(),
            condition: inv
                .condition
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
            error: inv.last_error.clone(),
            attempts: inv.attempts,
            timestamp_ms: now,
            record: record.to_string(),
            payload: Vec::new(),
            qualifier: inv.qualifier.clone(),
        };
        let header = serde_json::to_vec(&letter).expect("dead letter encodes");
        ops.push(Op::put(
            CF_DLQ,
            dlq_key(queue, seq),
            frame(&header, payload),
        ));
        Some(queue.clone())
    }

    pub(super) fn committed_dead_letter(&self, queue: &str) {
        lock(&self.dlq).entry(queue.to_string()).or_insert((1, 0)).1 += 1;
    }
}
