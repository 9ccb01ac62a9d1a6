//! The workers the controller knows, from registrations and heartbeats. In memory only: after a
//! controller restart, workers learn `known = false` from their next heartbeat and register again.
//!
//! Between two heartbeats of a worker the registry corrects the worker's figures with what it has
//! handed out itself: idle sandboxes it has claimed (so two concurrent invocations do not both
//! count on one idle sandbox), invocations that finished (their sandbox is idle again), the memory
//! of sandboxes it has placed there and the cold starts it has sent. A heartbeat resets the
//! corrections.
//!
//! Cold starts in flight on a worker (bounded per worker, see `placement`): the sandboxes its last
//! heartbeat reported `Starting` (a worker reports a sandbox starting until its runtime finished
//! its init, and heartbeats early when one finishes), plus the cold placements it cannot have
//! seen yet: those whose invocation has not answered and that were made after the heartbeat was
//! sent (taken as less than [`IN_TRANSIT`] before it arrived). The bound is a rate limit, not an
//! exact count.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::placement::{self, Candidate, Choice};

/// Default bound of cold starts in flight per worker (`--cold-starts-per-worker`).
pub const DEFAULT_COLD_STARTS_PER_WORKER: u32 = 8;
/// A cold placement made less than this before a heartbeat arrived may not have reached the
/// worker when it sent the heartbeat: it stays counted until the next one.
pub const IN_TRANSIT: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    Up,
    Down,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Up => "Up",
            WorkerState::Down => "Down",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxState {
    Idle,
    Busy,
    Starting,
}

/// One sandbox as a worker's heartbeat reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxReport {
    pub function_name: String,
    pub revision_id: String,
    pub state: SandboxState,
    pub memory_mb: u32,
    /// Started for provisioned concurrency (kept while the target holds).
    pub provisioned: bool,
}

/// A provisioned sandbox the worker cannot initialise (its latest attempt failed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionFailureReport {
    pub function_name: String,
    pub revision_id: String,
    pub error: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub memory_free_mb: u64,
    pub sandboxes: Vec<SandboxReport>,
    pub invocations_total: u64,
    pub provision_failures: Vec<ProvisionFailureReport>,
}

/// A worker as `ListWorkers` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSnapshot {
    pub worker_id: String,
    pub address: String,
    pub state: WorkerState,
    pub memory_total_mb: u64,
    pub memory_free_mb: u64,
    pub sandboxes: u32,
    pub idle_sandboxes: u32,
    pub last_heartbeat_ago: Duration,
    pub invocations_total: u64,
}

/// An `Up` worker, for the provisioned-concurrency reconciler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpWorker {
    pub worker_id: String,
    pub address: String,
    pub memory_total_mb: u64,
}

/// Provisioned sandboxes of one function revision on the `Up` workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProvisionedCount {
    /// Initialised (idle or busy).
    pub allocated: u32,
    /// Of those, idle now.
    pub available: u32,
    /// The latest init failure a worker reports for it, if any (`worker: error`).
    pub failure: Option<String>,
}

/// Why no worker was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("no worker is available")]
    NoWorker,
    #[error(
        "every worker has {limit} sandboxes starting (the bound of cold starts in flight per \
         worker) and none freed up within {waited:?}"
    )]
    AtColdStartBound { limit: u32, waited: Duration },
}

/// Where an invocation goes. Hand it back to [`Registry::finish`] when the invocation is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub worker_id: String,
    pub address: String,
    /// The worker reported an idle sandbox of this revision, claimed for this invocation.
    pub warm: bool,
    /// ... and that sandbox is (as far as the controller can tell) a provisioned one.
    pub provisioned: bool,
    function_name: String,
    revision_id: String,
    /// Identifies a cold placement among the worker's pending cold starts (0: warm).
    ticket: u64,
}

type RevisionKey = (String, String);

#[derive(Debug, Default)]
struct SinceHeartbeat {
    placed_memory_mb: u64,
    claimed_idle: HashMap<RevisionKey, u32>,
    returned_idle: HashMap<RevisionKey, u32>,
    /// Cold placements per function.
    placed_cold: HashMap<String, u32>,
}

#[derive(Debug)]
struct WorkerEntry {
    address: String,
    memory_total_mb: u64,
    last_heartbeat: Instant,
    /// A call to it failed at the connection (its process died, its host refused): `Down` until it
    /// heartbeats or registers again, without waiting for the heartbeat timeout.
    unreachable: bool,
    memory_free_mb: u64,
    sandboxes: Vec<SandboxReport>,
    provision_failures: Vec<ProvisionFailureReport>,
    invocations_total: u64,
    /// Cold placements the worker may not have reported yet: (ticket, when placed).
    cold_pending: Vec<(u64, Instant)>,
    since: SinceHeartbeat,
}

impl WorkerEntry {
    fn reported(&self, key: &RevisionKey, provisioned_only: bool) -> u32 {
        self.sandboxes
            .iter()
            .filter(|s| {
                s.state == SandboxState::Idle
                    && s.function_name == key.0
                    && s.revision_id == key.1
                    && (s.provisioned || !provisioned_only)
            })
            .count() as u32
    }

    fn idle_warm(&self, key: &RevisionKey) -> u32 {
        let returned = self.since.returned_idle.get(key).copied().unwrap_or(0);
        let claimed = self.since.claimed_idle.get(key).copied().unwrap_or(0);
        (self.reported(key, false) + returned).saturating_sub(claimed)
    }

    /// Workers hand out idle provisioned sandboxes first: claims consume them first.
    fn idle_provisioned(&self, key: &RevisionKey) -> u32 {
        let claimed = self.since.claimed_idle.get(key).copied().unwrap_or(0);
        self.reported(key, true)
            .saturating_sub(claimed)
            .min(self.idle_warm(key))
    }

    fn function_sandboxes(&self, function: &str) -> u32 {
        let reported = self
            .sandboxes
            .iter()
            .filter(|s| s.function_name == function)
            .count() as u32;
        reported + self.since.placed_cold.get(function).copied().unwrap_or(0)
    }

    fn cold_starts(&self) -> u32 {
        let starting = self
            .sandboxes
            .iter()
            .filter(|s| s.state == SandboxState::Starting)
            .count() as u32;
        starting + self.cold_pending.len() as u32
    }
}

#[derive(Debug)]
pub struct Registry {
    worker_timeout: Duration,
    cold_start_limit: u32,
    workers: Mutex<HashMap<String, WorkerEntry>>,
    /// Numbers cold placements (from 1).
    next_ticket: AtomicU64,
    /// Woken on every registration, heartbeat and finished invocation: what placements waiting
    /// for a cold-start slot wait for.
    changed: Notify,
}

impl Registry {
    /// A worker whose last heartbeat (or registration) is older than `worker_timeout` is `Down`.
    /// At most [`DEFAULT_COLD_STARTS_PER_WORKER`] cold starts in flight per worker.
    pub fn new(worker_timeout: Duration) -> Registry {
        Registry::with_cold_start_limit(worker_timeout, DEFAULT_COLD_STARTS_PER_WORKER)
    }

    /// Like [`Registry::new`], with at most `cold_start_limit` (at least 1) cold starts in flight
    /// per worker.
    pub fn with_cold_start_limit(worker_timeout: Duration, cold_start_limit: u32) -> Registry {
        Registry {
            worker_timeout,
            cold_start_limit: cold_start_limit.max(1),
            workers: Mutex::new(HashMap::new()),
            next_ticket: AtomicU64::new(1),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, WorkerEntry>> {
        self.workers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn state(&self, e: &WorkerEntry, now: Instant) -> WorkerState {
        if !e.unreachable && now.saturating_duration_since(e.last_heartbeat) < self.worker_timeout {
            WorkerState::Up
        } else {
            WorkerState::Down
        }
    }

    /// Adds or replaces a worker; it counts as having just sent an empty heartbeat with all its
    /// memory free.
    pub fn register(&self, worker_id: &str, address: &str, memory_total_mb: u64) {
        let entry = WorkerEntry {
            address: address.to_string(),
            memory_total_mb,
            last_heartbeat: Instant::now(),
            unreachable: false,
            memory_free_mb: memory_total_mb,
            sandboxes: Vec::new(),
            provision_failures: Vec::new(),
            invocations_total: 0,
            cold_pending: Vec::new(),
            since: SinceHeartbeat::default(),
        };
        let previous = self.lock().insert(worker_id.to_string(), entry);
        self.changed.notify_waiters();
        match previous {
            Some(p) => {
                tracing::info!(worker_id, address, previous_address = %p.address, "worker registered again")
            }
            None => tracing::info!(worker_id, address, memory_total_mb, "worker registered"),
        }
    }

    /// Records a heartbeat. `false` when the worker is unknown (it must register again).
    pub fn heartbeat(&self, worker_id: &str, hb: Heartbeat) -> bool {
        let mut workers = self.lock();
        let Some(e) = workers.get_mut(worker_id) else {
            return false;
        };
        let now = Instant::now();
        if e.unreachable || now.saturating_duration_since(e.last_heartbeat) >= self.worker_timeout {
            tracing::info!(worker_id, "worker is heartbeating again: Up");
        }
        e.last_heartbeat = now;
        e.unreachable = false;
        e.memory_free_mb = hb.memory_free_mb;
        e.sandboxes = hb.sandboxes;
        e.provision_failures = hb.provision_failures;
        e.invocations_total = hb.invocations_total;
        // What was placed before the heartbeat left the worker is in its report.
        e.cold_pending
            .retain(|(_, at)| now.saturating_duration_since(*at) < IN_TRANSIT);
        e.since = SinceHeartbeat::default();
        drop(workers);
        self.changed.notify_waiters();
        true
    }

    /// A call to the worker failed at the connection: it is `Down` (no new work, calls in flight on
    /// it fail) until its next heartbeat or registration.
    pub fn mark_unreachable(&self, worker_id: &str, detail: &str) {
        let mut workers = self.lock();
        let Some(e) = workers.get_mut(worker_id) else {
            return;
        };
        if !e.unreachable {
            tracing::warn!(
                worker_id,
                detail,
                "worker unreachable: Down until it heartbeats again"
            );
        }
        e.unreachable = true;
        drop(workers);
        self.changed.notify_waiters();
    }

    pub fn is_up(&self, worker_id: &str) -> bool {
        let now = Instant::now();
        self.lock()
            .get(worker_id)
            .is_some_and(|e| self.state(e, now) == WorkerState::Up)
    }

    /// Whether any worker is `Up`.
    pub fn any_up(&self) -> bool {
        let now = Instant::now();
        self.lock()
            .values()
            .any(|e| self.state(e, now) == WorkerState::Up)
    }

    /// Every known worker, sorted by id.
    pub fn list(&self) -> Vec<WorkerSnapshot> {
        let now = Instant::now();
        let workers = self.lock();
        let mut out: Vec<WorkerSnapshot> = workers
            .iter()
            .map(|(id, e)| WorkerSnapshot {
                worker_id: id.clone(),
                address: e.address.clone(),
                state: self.state(e, now),
                memory_total_mb: e.memory_total_mb,
                memory_free_mb: e.memory_free_mb,
                sandboxes: e.sandboxes.len() as u32,
                idle_sandboxes: e
                    .sandboxes
                    .iter()
                    .filter(|s| s.state == SandboxState::Idle)
                    .count() as u32,
                last_heartbeat_ago: now.saturating_duration_since(e.last_heartbeat),
                invocations_total: e.invocations_total,
            })
            .collect();
        out.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        out
    }

    /// The `Up` workers, sorted by id.
    pub fn up_workers(&self) -> Vec<UpWorker> {
        let now = Instant::now();
        let workers = self.lock();
        let mut out: Vec<UpWorker> = workers
            .iter()
            .filter(|(_, e)| self.state(e, now) == WorkerState::Up)
            .map(|(id, e)| UpWorker {
                worker_id: id.clone(),
                address: e.address.clone(),
                memory_total_mb: e.memory_total_mb,
            })
            .collect();
        out.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        out
    }

    /// Provisioned sandboxes of `function_name` at `revision_id` the `Up` workers report.
    pub fn provisioned(&self, function_name: &str, revision_id: &str) -> ProvisionedCount {
        let now = Instant::now();
        let workers = self.lock();
        let mut ids: Vec<&String> = workers.keys().collect();
        ids.sort();
        let mut count = ProvisionedCount::default();
        for id in ids {
            let e = &workers[id];
            if self.state(e, now) != WorkerState::Up {
                continue;
            }
            for s in &e.sandboxes {
                if s.provisioned
                    && s.function_name == function_name
                    && s.revision_id == revision_id
                    && s.state != SandboxState::Starting
                {
                    count.allocated += 1;
                    if s.state == SandboxState::Idle {
                        count.available += 1;
                    }
                }
            }
            if count.failure.is_none() {
                count.failure = e
                    .provision_failures
                    .iter()
                    .find(|f| f.function_name == function_name && f.revision_id == revision_id)
                    .map(|f| format!("worker `{id}`: {}", f.error));
            }
        }
        count
    }

    /// Chooses a worker for one invocation of `function_name` at `revision_id` (see `placement`)
    /// and records the claim.
    pub fn place(
        &self,
        function_name: &str,
        revision_id: &str,
        memory_mb: u32,
    ) -> Result<Placement, PlaceError> {
        self.try_place(function_name, revision_id, memory_mb)?
            .ok_or(PlaceError::AtColdStartBound {
                limit: self.cold_start_limit,
                waited: Duration::ZERO,
            })
    }

    /// Like [`Registry::place`]; while every `Up` worker is at its bound of cold starts in
    /// flight, waits (up to `wait`) for one to free up.
    pub async fn place_waiting(
        &self,
        function_name: &str,
        revision_id: &str,
        memory_mb: u32,
        wait: Duration,
    ) -> Result<Placement, PlaceError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(p) = self.try_place(function_name, revision_id, memory_mb)? {
                return Ok(p);
            }
            // Woken by a heartbeat or a finished invocation; a short tick covers a worker that
            // turns Down (no event) while others are saturated.
            let tick = tokio::time::Instant::now() + Duration::from_millis(250);
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep_until(tick.min(deadline)) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return self
                    .try_place(function_name, revision_id, memory_mb)?
                    .ok_or(PlaceError::AtColdStartBound {
                        limit: self.cold_start_limit,
                        waited: wait,
                    });
            }
        }
    }

    /// `Ok(None)`: every `Up` worker is at its cold-start bound.
    fn try_place(
        &self,
        function_name: &str,
        revision_id: &str,
        memory_mb: u32,
    ) -> Result<Option<Placement>, PlaceError> {
        let now = Instant::now();
        let key = (function_name.to_string(), revision_id.to_string());
        let mut workers = self.lock();
        let mut ids: Vec<&String> = workers.keys().collect();
        ids.sort();
        let candidates: Vec<Candidate<'_>> = ids
            .iter()
            .map(|id| {
                let e = &workers[*id];
                Candidate {
                    worker_id: id.as_str(),
                    up: self.state(e, now) == WorkerState::Up,
                    idle_warm: e.idle_warm(&key),
                    idle_provisioned: e.idle_provisioned(&key),
                    free_memory_mb: e.memory_free_mb as i64 - e.since.placed_memory_mb as i64,
                    function_sandboxes: e.function_sandboxes(function_name),
                    cold_starts: e.cold_starts(),
                }
            })
            .collect();
        let choice = placement::choose(&candidates, memory_mb, self.cold_start_limit)
            .ok_or(PlaceError::NoWorker)?;
        let index = match choice {
            Choice::Warm(i) | Choice::Cold(i) => i,
            Choice::AtColdStartBound => return Ok(None),
        };
        let provisioned = candidates[index].idle_provisioned > 0;
        let worker_id = ids[index].clone();
        drop(candidates);
        let Some(e) = workers.get_mut(&worker_id) else {
            return Err(PlaceError::NoWorker);
        };
        let warm = matches!(choice, Choice::Warm(_));
        let mut ticket = 0;
        if warm {
            *e.since.claimed_idle.entry(key).or_insert(0) += 1;
        } else {
            e.since.placed_memory_mb += u64::from(memory_mb);
            *e.since
                .placed_cold
                .entry(function_name.to_string())
                .or_insert(0) += 1;
            ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
            e.cold_pending.push((ticket, now));
        }
        Ok(Some(Placement {
            address: e.address.clone(),
            worker_id,
            warm,
            provisioned: warm && provisioned,
            function_name: function_name.to_string(),
            revision_id: revision_id.to_string(),
            ticket,
        }))
    }

    /// The invocation placed with `placement` is over. When it succeeded the worker keeps its
    /// sandbox warm and idle, which the next placement may use before the next heartbeat says so.
    /// A cold start still counted as in flight stops counting.
    pub fn finish(&self, placement: &Placement, succeeded: bool) {
        if let Some(e) = self.lock().get_mut(&placement.worker_id) {
            if !placement.warm {
                e.cold_pending.retain(|(t, _)| *t != placement.ticket);
            }
            if succeeded {
                let key = (
                    placement.function_name.clone(),
                    placement.revision_id.clone(),
                );
                *e.since.returned_idle.entry(key).or_insert(0) += 1;
            }
        }
        self.changed.notify_waiters();
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
