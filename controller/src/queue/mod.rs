//! Asynchronous invocation: a durable queue of events in RocksDB, a dispatcher that delivers them with
//! leases, retries, a maximum age and destinations, invocation records, idempotency keys and
//! dead-letter queues. Key layout and rationale: `store/README.md`; the design: `docs/ARCHITECTURE.md`
//! ("Invocation path (async)").
//!
//! - [`QueueStore`] (`store.rs`, `records.rs`): every state change of an event is one `WriteBatch`,
//!   written synced through the group committer (`commit.rs`), which merges the batches of concurrent
//!   callers into one synced write.
//! - [`Dispatcher`] (`dispatch.rs`): takes due events, leases them, runs them through an [`Invoker`]
//!   and writes the outcome; [`policy`] decides retries and backoff.
use std::path::PathBuf;
use std::time::Duration;

use lamina_proto::domain::Destination;
use serde::{Deserialize, Serialize};

mod commit;
mod dispatch;
pub mod policy;
mod records;
mod store;

pub use dispatch::now_ms;
pub use dispatch::{Dispatcher, Invoker, Outcome};
pub use records::destination_record;
pub use store::{
    column_family_descriptors, DeadLetter, Enqueued, NewEvent, QueueStore, COLUMN_FAMILIES,
};

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
    #[error("column family `{name}` is missing in {path}")]
    MissingColumnFamily { name: &'static str, path: PathBuf },
    #[error("RocksDB {op} failed in {path}: {source}")]
    Rocks {
        op: &'static str,
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("stored {what} is corrupt in {path}: {detail}")]
    Corrupt {
        what: String,
        path: PathBuf,
        detail: String,
    },
    #[error("the queue's committer stopped: restart the controller")]
    CommitterGone,
    #[error("queue task failed: {0}")]
    Task(String),
    /// A failpoint simulated a crash at this step (tests only).
    #[error("failpoint `{0}` stopped the delivery")]
    Failpoint(&'static str),
}
