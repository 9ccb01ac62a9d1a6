//! Asynchronous invocation: a durable queue of events in RocksDB, a dispatcher that delivers them with
//! leases, retries, a maximum age and destinations, invocation records, idempotency keys and
//! dead-letter queues. Key layout and rationale: `store/README.md`; the design: `docs/ARCHITECTURE.md`
//! ("Invocation path (async)").
//!
//! - [`QueueStore`] (`store.rs`, `transitions.rs`, `records.rs`, keys in `keys.rs`): the queue's
//!   tables on the controller's database (`crate::store::table`); every state change of an event is
//!   one [`crate::store::Batch`] in `transitions.rs`, written synced through the group committer
//!   (`commit.rs`), which merges the batches of concurrent callers into one synced write.
//! - [`QueueStorage`] (`storage.rs`): what the dispatcher needs of that state, implemented by
//!   [`QueueStore`]; the dispatcher touches no column family.
//! - [`Dispatcher`] (`dispatch.rs`): takes due events, leases them, runs them through an [`Invoker`]
//!   and writes the outcome through the transitions; [`policy`] decides retries and backoff.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lamina_proto::domain::Destination;
use serde::{Deserialize, Serialize};

use crate::store::StorageError;

mod commit;
mod dispatch;
mod keys;
pub mod policy;
mod records;
mod storage;
mod store;
mod transitions;

pub use dispatch::{Dispatcher, Invoker, Outcome};
pub use records::destination_record;
pub use storage::{Due, QueueStorage};
pub use store::{DeadLetter, Enqueued, NewEvent, QueueStore};
pub use transitions::Ending;

/// Milliseconds since the Unix epoch (the queue's clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The state of an asynchronous invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    Queued,
    Running,
    Retrying,
    Succeeded,
    Failed,
    DeadLettered,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "Queued",
            State::Running => "Running",
            State::Retrying => "Retrying",
            State::Succeeded => "Succeeded",
            State::Failed => "Failed",
            State::DeadLettered => "DeadLettered",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::DeadLettered)
    }
}

/// Why an invocation ended, as Lambda's destination records say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
    FunctionNotFound,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
            Condition::FunctionNotFound => "FunctionNotFound",
        }
    }
}

/// What is known about one asynchronous invocation (its payload is stored beside it while it is
/// pending and dropped once it ends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    pub request_id: String,
    pub function_name: String,
    pub state: State,
    /// Deliveries started, including one lost with a crashed controller or worker.
    pub attempts: u32,
    pub function_errors: u32,
    /// Throttles and system errors since the event was accepted.
    pub throttles: u32,
    pub enqueued_ms: u64,
    pub updated_ms: u64,
    pub finished_ms: u64,
    /// When it is due (queued, retrying) or when its lease ends (running).
    pub due_ms: u64,
    pub last_error: String,
    pub destination: Option<Destination>,
    pub idempotency_key: String,
    pub condition: Option<Condition>,
    pub payload_size: u32,
    /// The version or alias the caller named ("" = unqualified), resolved at each delivery.
    /// Records stored before versions existed decode with "".
    #[serde(default)]
    pub qualifier: String,
    /// The version its last delivery ran ("" until one ran; records stored before this existed
    /// decode with ""): the destination record's `executedVersion`.
    #[serde(default)]
    pub executed_version: String,
}

#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Largest accepted async payload.
    pub max_payload_bytes: usize,
    /// Deliveries running at once.
    pub concurrency: usize,
    /// Events taken off the queue per second at most (deliveries and expiries), so a large backlog
    /// after a restart drains at a bounded rate.
    pub dispatch_rate: u32,
    /// Multiplies retry delays, backoff and the maximum event age (1.0 = real time; tests use 0.01).
    pub time_scale: f64,
    /// A repeat of an idempotency key within this window returns the first request id.
    pub idempotency_window: Duration,
    /// Finished invocation records kept at most...
    pub retention_records: u64,
    /// ...and for at most this long.
    pub retention_age: Duration,
    /// A running delivery's lease is the function timeout plus this.
    pub lease_headroom: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_payload_bytes: lamina_proto::validate::MAX_ASYNC_PAYLOAD_BYTES,
            concurrency: 64,
            dispatch_rate: 2000,
            time_scale: 1.0,
            idempotency_window: Duration::from_secs(3600),
            retention_records: 100_000,
            retention_age: Duration::from_secs(7 * 86_400),
            lease_headroom: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The engine or the stored bytes failed (see [`StorageError`]).
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the queue's committer stopped: restart the controller")]
    CommitterGone,
    #[error("queue task failed: {0}")]
    Task(String),
    /// A failpoint simulated a crash at this step (tests only).
    #[error("failpoint `{0}` stopped the delivery")]
    Failpoint(&'static str),
}
