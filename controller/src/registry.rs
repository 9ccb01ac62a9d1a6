//! The workers the controller knows, from registrations and heartbeats. In memory only: after a
//! controller restart, workers learn `known = false` from their next heartbeat and register again.
//!
//! Between two heartbeats of a worker the registry corrects the worker's figures with what it has
//! handed out itself: idle sandboxes it has claimed (so two concurrent invocations do not both
//! count on one idle sandbox), invocations that finished (their sandbox is idle again) and the
//! memory of sandboxes it has placed there. A heartbeat resets the corrections.
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::placement::{self, Candidate, Choice};

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub memory_free_mb: u64,
    pub sandboxes: Vec<SandboxReport>,
    pub invocations_total: u64,
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

/// Where an invocation goes. Hand it back to [`Registry::finish`] when the invocation is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub worker_id: String,
    pub address: String,
    /// The worker reported an idle sandbox of this revision, claimed for this invocation.
    pub warm: bool,
    function_name: String,
    revision_id: String,
}

type RevisionKey = (String, String);

#[derive(Debug, Default)]
struct SinceHeartbeat {
    placed_memory_mb: u64,
    claimed_idle: HashMap<RevisionKey, u32>,
    returned_idle: HashMap<RevisionKey, u32>,
}

#[derive(Debug)]
struct WorkerEntry {
    address: String,
    memory_total_mb: u64,
    last_heartbeat: Instant,
    memory_free_mb: u64,
    sandboxes: Vec<SandboxReport>,
    invocations_total: u64,
    since: SinceHeartbeat,
}

impl WorkerEntry {
    fn idle_warm(&self, key: &RevisionKey) -> u32 {
        let reported = self
            .sandboxes
            .iter()
            .filter(|s| {
                s.state == SandboxState::Idle && s.function_name == key.0 && s.revision_id == key.1
            })
            .count() as u32;
        let returned = self.since.returned_idle.get(key).copied().unwrap_or(0);
        let claimed = self.since.claimed_idle.get(key).copied().unwrap_or(0);
        (reported + returned).saturating_sub(claimed)
    }
}

#[derive(Debug)]
pub struct Registry {
    worker_timeout: Duration,
    workers: Mutex<HashMap<String, WorkerEntry>>,
}

impl Registry {
    /// A worker whose last heartbeat (or registration) is older than `worker_timeout` is `Down`.
    pub fn new(worker_timeout: Duration) -> Registry {
        Registry {
            worker_timeout,
            workers: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, WorkerEntry>> {
        self.workers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn state(&self, e: &WorkerEntry, now: Instant) -> WorkerState {
        if now.saturating_duration_since(e.last_heartbeat) < self.worker_timeout {
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
            memory_free_mb: memory_total_mb,
            sandboxes: Vec::new(),
            invocations_total: 0,
            since: SinceHeartbeat::default(),
        };
        let previous = self.lock().insert(worker_id.to_string(), entry);
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
        if now.saturating_duration_since(e.last_heartbeat) >= self.worker_timeout {
            tracing::info!(worker_id, "worker is heartbeating again: Up");
        }
        e.last_heartbeat = now;
        e.memory_free_mb = hb.memory_free_mb;
        e.sandboxes = hb.sandboxes;
        e.invocations_total = hb.invocations_total;
        e.since = SinceHeartbeat::default();
        true
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

    /// Chooses a worker for one invocation of `function_name` at `revision_id` (see `placement`)
    /// and records the claim. `None` when no worker is `Up`.
    pub fn place(
        &self,
        function_name: &str,
        revision_id: &str,
        memory_mb: u32,
    ) -> Option<Placement> {
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
                    free_memory_mb: e.memory_free_mb as i64 - e.since.placed_memory_mb as i64,
                }
            })
            .collect();
        let choice = placement::choose(&candidates)?;
        let worker_id = ids[choice.index()].clone();
        drop(candidates);
        let e = workers.get_mut(&worker_id)?;
        let warm = matches!(choice, Choice::Warm(_));
        if warm {
            *e.since.claimed_idle.entry(key).or_insert(0) += 1;
        } else {
            e.since.placed_memory_mb += u64::from(memory_mb);
        }
        Some(Placement {
            address: e.address.clone(),
            worker_id,
            warm,
            function_name: function_name.to_string(),
            revision_id: revision_id.to_string(),
        })
    }

    /// The invocation placed with `placement` is over. When it succeeded the worker keeps its
    /// sandbox warm and idle, which the next placement may use before the next heartbeat says so.
    pub fn finish(&self, placement: &Placement, succeeded: bool) {
        if !succeeded {
            return;
        }
        if let Some(e) = self.lock().get_mut(&placement.worker_id) {
            let key = (
                placement.function_name.clone(),
                placement.revision_id.clone(),
            );
            *e.since.returned_idle.entry(key).or_insert(0) += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle(function: &str, revision: &str) -> SandboxReport {
        SandboxReport {
            function_name: function.to_string(),
            revision_id: revision.to_string(),
            state: SandboxState::Idle,
            memory_mb: 128,
        }
    }

    fn hb(free: u64, sandboxes: Vec<SandboxReport>) -> Heartbeat {
        Heartbeat {
            memory_free_mb: free,
            sandboxes,
            invocations_total: 7,
        }
    }

    #[test]
    fn unknown_worker_heartbeat_is_refused() {
        let r = Registry::new(Duration::from_secs(5));
        assert!(!r.heartbeat("w1", hb(100, vec![])));
        r.register("w1", "127.0.0.1:1", 4096);
        assert!(r.heartbeat("w1", hb(100, vec![idle("f", "r1")])));
        let list = r.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].state, WorkerState::Up);
        assert_eq!(
            (
                list[0].memory_free_mb,
                list[0].sandboxes,
                list[0].idle_sandboxes
            ),
            (100, 1, 1)
        );
        assert_eq!(list[0].invocations_total, 7);
    }

    #[test]
    fn prefers_the_idle_warm_revision_and_claims_it_once() {
        let r = Registry::new(Duration::from_secs(5));
        r.register("big", "127.0.0.1:1", 16000);
        r.register("warm", "127.0.0.1:2", 4000);
        r.heartbeat("big", hb(15000, vec![idle("f", "old-revision")]));
        r.heartbeat("warm", hb(1000, vec![idle("f", "r1")]));
        let first = r.place("f", "r1", 512).unwrap();
        assert_eq!((first.worker_id.as_str(), first.warm), ("warm", true));
        // The one idle sandbox is taken: the next concurrent invocation goes by free memory.
        let second = r.place("f", "r1", 512).unwrap();
        assert_eq!((second.worker_id.as_str(), second.warm), ("big", false));
        // The first invocation finished: its sandbox is idle again before any heartbeat says so.
        r.finish(&first, true);
        let third = r.place("f", "r1", 512).unwrap();
        assert_eq!((third.worker_id.as_str(), third.warm), ("warm", true));
    }

    #[test]
    fn counts_memory_placed_since_the_heartbeat() {
        let r = Registry::new(Duration::from_secs(5));
        r.register("a", "127.0.0.1:1", 4000);
        r.register("b", "127.0.0.1:2", 4000);
        r.heartbeat("a", hb(3000, vec![]));
        r.heartbeat("b", hb(2500, vec![]));
        assert_eq!(r.place("f", "r1", 1024).unwrap().worker_id, "a"); // a: 1976 left
        assert_eq!(r.place("f", "r1", 1024).unwrap().worker_id, "b"); // b: 1476 left
        assert_eq!(r.place("f", "r1", 128).unwrap().worker_id, "a");
        // A heartbeat replaces the estimate with the worker's own figure.
        r.heartbeat("b", hb(3500, vec![]));
        assert_eq!(r.place("f", "r1", 128).unwrap().worker_id, "b");
    }

    #[test]
    fn skips_down_workers_until_they_heartbeat() {
        let r = Registry::new(Duration::from_millis(100));
        r.register("old", "127.0.0.1:1", 64000);
        std::thread::sleep(Duration::from_millis(150));
        assert!(!r.is_up("old"));
        assert_eq!(r.list()[0].state, WorkerState::Down);
        assert_eq!(r.place("f", "r1", 128), None);
        r.register("new", "127.0.0.1:2", 1000);
        assert_eq!(r.place("f", "r1", 128).unwrap().worker_id, "new");
        assert!(r.heartbeat("old", hb(64000, vec![])));
        assert!(r.is_up("old"));
        assert_eq!(r.place("f", "r1", 128).unwrap().worker_id, "old");
    }
}
