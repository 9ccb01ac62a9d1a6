//! The queue's durable state on the controller's database: its tables, opening (counters rebuilt,
//! leases of the previous process expired), reads, accepting events and event invoke configs.
//! State transitions of a delivery: `transitions.rs`; listings, dead letters and retention:
//! `records.rs`. Column families and keys: `store/README.md`. Invariant: an invocation that is
//! not finished has exactly one `queue_due` key, `due_ms_be | request_id`, matching its record's
//! `due_ms`, and its payload in `queue_payloads`; a finished one has neither, and one
//! `invocations_done` key.
use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use lamina_proto::domain::EventInvokeConfig;
use serde::{Deserialize, Serialize};

use super::commit::Committer;
use super::keys::{name_key, split_time_key};
use super::{now_ms, Invocation, QueueConfig, QueueError, State};
use crate::store::schema;
use crate::store::table::{BeU64, Codec, Empty, Json, Raw, Start, Table};
use crate::store::writers::{lock, KeyedLocks};
use crate::store::{Batch, Database};

/// Stripes of the idempotency lock: keys that hash to the same stripe are checked one at a time.
const IDEMPOTENCY_STRIPES: usize = 64;
/// Stripes of the redrive lock (by dead-letter queue name).
const REDRIVE_STRIPES: usize = 16;

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

/// A dead letter as stored: `[u32 LE header length][JSON header][payload]`, so the payload
/// (up to 1 MB, any bytes) is not escaped into the JSON.
pub(super) struct Framed;

impl Codec for Framed {
    type Value = DeadLetter;

    fn encode(letter: &DeadLetter) -> Result<Vec<u8>, String> {
        let header = serde_json::to_vec(letter).map_err(|e| e.to_string())?;
        let mut v = Vec::with_capacity(4 + header.len() + letter.payload.len());
        v.extend_from_slice(&(header.len() as u32).to_le_bytes());
        v.extend_from_slice(&header);
        v.extend_from_slice(&letter.payload);
        Ok(v)
    }

    fn decode(v: &[u8]) -> Result<DeadLetter, String> {
        let bad = || "bad framing".to_string();
        let len =
            u32::from_le_bytes(v.get(..4).ok_or_else(bad)?.try_into().map_err(|_| bad())?) as usize;
        let header = v.get(4..4 + len).ok_or_else(bad)?;
        let mut letter: DeadLetter = serde_json::from_slice(header).map_err(|e| e.to_string())?;
        letter.payload = v[4 + len..].to_vec();
        Ok(letter)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct IdempotencyEntry {
    pub request_id: String,
    pub created_ms: u64,
}

pub struct QueueStore {
    pub(super) db: Database,
    pub(super) config: QueueConfig,
    pub(super) committer: Committer,
    /// Serialises accepts with the same idempotency key (check, then write in one batch).
    idempotency_locks: KeyedLocks,
    /// Per dead-letter queue: (next seq, messages).
    pub(super) dlq: Mutex<HashMap<String, (u64, u64)>>,
    /// Serialises redrives of one dead-letter queue (two redrives of one message must not both
    /// enqueue it).
    pub(super) redrive_locks: KeyedLocks,
    /// Finished invocation records (rebuilt on open).
    pub(super) finished: AtomicU64,
    /// Wakes the dispatcher: new events, finished deliveries.
    pub(super) wake: tokio::sync::Notify,
}

impl QueueStore {
    /// The queue on `db`; rebuilds the in-memory counters and expires the leases of the previous
    /// controller process: their deliveries are due again now.
    pub fn open(db: Database, config: QueueConfig) -> Result<QueueStore, QueueError> {
        let committer = Committer::start(db.clone());
        let store = QueueStore {
            db,
            config,
            committer,
            idempotency_locks: KeyedLocks::new(IDEMPOTENCY_STRIPES),
            dlq: Mutex::new(HashMap::new()),
            redrive_locks: KeyedLocks::new(REDRIVE_STRIPES),
            finished: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
        };
        store
            .finished
            .store(store.done().count()?, Ordering::Relaxed);
        *lock(&store.dlq) = store.recover_dlq()?;
        store.expire_leases(now_ms())?;
        Ok(store)
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    pub(super) fn invocations(&self) -> Table<'_, Json<Invocation>> {
        self.db.table(schema::INVOCATIONS)
    }

    pub(super) fn payloads(&self) -> Table<'_, Raw> {
        self.db.table(schema::QUEUE_PAYLOADS)
    }

    pub(super) fn due(&self) -> Table<'_, Empty> {
        self.db.table(schema::QUEUE_DUE)
    }

    /// Request id -> lease end.
    pub(super) fn leases(&self) -> Table<'_, BeU64> {
        self.db.table(schema::QUEUE_LEASES)
    }

    pub(super) fn by_function(&self) -> Table<'_, Empty> {
        self.db.table(schema::INVOCATIONS_BY_FUNCTION)
    }

    pub(super) fn done(&self) -> Table<'_, Empty> {
        self.db.table(schema::INVOCATIONS_DONE)
    }

    pub(super) fn idempotency(&self) -> Table<'_, Json<IdempotencyEntry>> {
        self.db.table(schema::IDEMPOTENCY)
    }

    pub(super) fn idempotency_by_time(&self) -> Table<'_, Empty> {
        self.db.table(schema::IDEMPOTENCY_BY_TIME)
    }

    fn configs(&self) -> Table<'_, Json<EventInvokeConfig>> {
        self.db.table(schema::EVENT_INVOKE_CONFIGS)
    }

    pub(super) fn dead_letter_table(&self) -> Table<'_, Framed> {
        self.db.table(schema::DEAD_LETTERS)
    }

    pub(super) fn corrupt(&self, what: impl Into<String>, detail: impl ToString) -> QueueError {
        self.db.corrupt(what, detail).into()
    }

    /// The record of `request_id`, if any.
    pub fn get(&self, request_id: &str) -> Result<Option<Invocation>, QueueError> {
        Ok(self.invocations().get(request_id.as_bytes())?)
    }

    pub fn payload(&self, request_id: &str) -> Result<Option<Vec<u8>>, QueueError> {
        Ok(self.payloads().get(request_id.as_bytes())?)
    }

    /// Accepts an event: returns once it is on disk (synced), or the first request id of its
    /// idempotency key.
    pub async fn enqueue(&self, event: NewEvent) -> Result<Enqueued, QueueError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let target = (event.function_name.as_str(), event.qualifier.as_str());
        if event.idempotency_key.is_empty() {
            let mut batch = Batch::new();
            self.enqueue_in(
                &mut batch,
                now_ms(),
                &request_id,
                target,
                &event.payload,
                "",
            )?;
            self.committer.commit(batch).await?;
            self.wake.notify_one();
            return Ok(Enqueued::New(request_id));
        }
        let key = name_key(&event.function_name, &event.idempotency_key);
        let _guard = self.idempotency_locks.lock(&key).await;
        let now = now_ms();
        if let Some(entry) = self.idempotency().get(&key)? {
            let window = self.config.idempotency_window.as_millis() as u64;
            if now < entry.created_ms.saturating_add(window) {
                return Ok(Enqueued::Duplicate(entry.request_id));
            }
        }
        let mut batch = Batch::new();
        let idempotency_key = event.idempotency_key.as_str();
        self.enqueue_in(
            &mut batch,
            now,
            &request_id,
            target,
            &event.payload,
            idempotency_key,
        )?;
        self.committer.commit(batch).await?;
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
        let mut out = Vec::new();
        let mut next = None;
        self.due().walk(Start::First, |e| {
            let (due, rid) =
                split_time_key(e.key()).ok_or_else(|| self.corrupt("queue_due key", "short"))?;
            if due > now {
                next = Some(due);
                return Ok::<_, QueueError>(ControlFlow::Break(()));
            }
            let rid = String::from_utf8_lossy(rid).into_owned();
            if !skip.contains(&rid) {
                if out.len() >= limit {
                    next = Some(due);
                    return Ok(ControlFlow::Break(()));
                }
                out.push(rid);
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok((out, next))
    }

    /// Events waiting (not finished).
    pub fn pending(&self) -> Result<u64, QueueError> {
        Ok(self.due().count()?)
    }

    /// Deliveries of the previous controller process are over (nothing will answer them): make them
    /// due now. Their attempt was counted when the lease was written.
    fn expire_leases(&self, now: u64) -> Result<(), QueueError> {
        let mut batch = Batch::new();
        let mut n = 0;
        let leases = self.leases();
        leases.walk(Start::First, |e| {
            let rid = String::from_utf8_lossy(e.key()).into_owned();
            leases.delete(&mut batch, e.key());
            if let Some(mut inv) = self.get(&rid)? {
                if !inv.state.is_terminal() {
                    inv.last_error =
                        "delivery interrupted: the controller stopped during it".to_string();
                    self.move_due_in(&mut batch, &mut inv, State::Retrying, now, now)?;
                    n += 1;
                }
            }
            Ok::<_, QueueError>(ControlFlow::Continue(()))
        })?;
        if n > 0 {
            tracing::info!(
                deliveries = n,
                "expiring the leases of the previous controller process: redelivering"
            );
        }
        self.committer.commit_blocking(batch)
    }

    pub fn get_config(&self, name: &str) -> Result<Option<EventInvokeConfig>, QueueError> {
        Ok(self.configs().get(name.as_bytes())?)
    }

    pub async fn put_config(
        &self,
        name: &str,
        config: &EventInvokeConfig,
    ) -> Result<(), QueueError> {
        let mut batch = Batch::new();
        self.configs().put(&mut batch, name.as_bytes(), config)?;
        self.committer.commit(batch).await
    }

    pub async fn delete_config(&self, name: &str) -> Result<(), QueueError> {
        let mut batch = Batch::new();
        self.configs().delete(&mut batch, name.as_bytes());
        self.committer.commit(batch).await
    }
}
