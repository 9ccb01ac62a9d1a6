//! Provisioned concurrency, worker side. The controller sends the complete desired set
//! (`Worker.SetProvisioned`: function configuration + count per revision); the manager
//! reconciles towards it:
//! - missing sandboxes are started in the background, at most [`PARALLELISM`] at a time, with
//!   `AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency`; one counts as ready only once its
//!   runtime finished its init (its first `GET next`), then it is frozen and idle like any other;
//! - provisioned sandboxes are handed out first, never reaped after the keep-alive and never
//!   evicted for memory while their target holds; one lost (crashed, timed out) is replaced;
//! - extras beyond a lowered (or removed) target become ordinary warm sandboxes (idle ones
//!   first), reaped after the keep-alive;
//! - a failed init is reported in the heartbeat (`provision_failures`) and retried with backoff.
//!
//! An invocation that takes an idle provisioned sandbox is warm: no cold start, no Init Duration.
//! The init output stays with the sandbox and opens the first invocation's log.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use lamina_proto::domain::FunctionConfig;
use lamina_proto::v1::ProvisionedTarget;

use super::{InitType, Key, Manager, ManagerError, PoolState, Pooled};
use crate::role_endpoints::SandboxCredentials;

/// Provisioned sandboxes started at once at most, per worker.
pub const PARALLELISM: usize = 4;
/// Lambda gives an init up to 10 s on top of the function timeout (as for on-demand starts).
const INIT_LIMIT: Duration = Duration::from_secs(10);
const INIT_POLL: Duration = Duration::from_millis(20);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// A provisioned target whose latest sandbox init failed, for the heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionFailure {
    pub function_name: String,
    pub revision_id: String,
    pub error: String,
}

#[derive(Debug)]
struct Target {
    config: FunctionConfig,
    /// The execution role's credentials for the sandboxes it starts (the newest sent).
    credentials: Option<SandboxCredentials>,
    count: u32,
    /// Starts spawned whose sandbox is not in the pool's `all` yet.
    pending: u32,
    failures: u32,
    last_error: Option<String>,
    retry_at: Option<Instant>,
}

/// The desired set and the starts in flight; part of the pool state (one lock).
#[derive(Debug, Default)]
pub(super) struct Targets {
    targets: HashMap<Key, Target>,
    /// Start tasks running (bounded by [`PARALLELISM`]).
    running: usize,
}

impl Targets {
    /// Drops the targets of `function` whose revision is not in `keep`.
    pub(super) fn forget(&mut self, function: &str, keep: &std::collections::HashSet<String>) {
        self.targets
            .retain(|k, _| k.0 != function || keep.contains(&k.1));
    }

    /// A start of `key` reached the pool: from now on its sandbox is counted in `all`.
    pub(super) fn started(&mut self, key: &Key) {
        if let Some(t) = self.targets.get_mut(key) {
            t.pending = t.pending.saturating_sub(1);
        }
    }
}

fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    (BACKOFF_START * (1u32 << shift)).min(BACKOFF_MAX)
}

impl PoolState {
    /// Provisioned sandboxes of `key` (starting, busy or idle) plus starts not counted yet.
    fn provisioned_of(&self, key: &Key) -> u32 {
        let live = self
            .all
            .values()
            .filter(|s| s.provisioned && s.function_name == key.0 && s.revision_id == key.1)
            .count() as u32;
        live + self.provisioned.targets.get(key).map_or(0, |t| t.pending)
    }

    pub(super) fn provision_failures(&self) -> Vec<ProvisionFailure> {
        let mut out: Vec<ProvisionFailure> = self
            .provisioned
            .targets
            .iter()
            .filter(|(key, t)| t.last_error.is_some() && self.provisioned_of(key) < t.count)
            .map(|(key, t)| ProvisionFailure {
                function_name: key.0.clone(),
                revision_id: key.1.clone(),
                error: t.last_error.clone().unwrap_or_default(),
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.function_name, &a.revision_id).cmp(&(&b.function_name, &b.revision_id))
        });
        out
    }

    /// Turns provisioned sandboxes beyond their target into ordinary ones: idle ones first (their
    /// keep-alive starts now), then busy ones (ordinary once their invocation is over).
    fn release_extras(&mut self) {
        let mut have: HashMap<Key, u32> = HashMap::new();
        for s in self.all.values().filter(|s| s.provisioned) {
            *have
                .entry((s.function_name.clone(), s.revision_id.clone()))
                .or_insert(0) += 1;
        }
        let now = Instant::now();
        for (key, n) in have {
            let wanted = self.provisioned.targets.get(&key).map_or(0, |t| t.count);
            let pending = self.provisioned.targets.get(&key).map_or(0, |t| t.pending);
            let mut extra = (n + pending).saturating_sub(wanted).min(n);
            if extra == 0 {
                continue;
            }
            let PoolState { all, idle, .. } = self;
            for w in idle.get_mut(&key).into_iter().flatten() {
                if extra == 0 {
                    break;
                }
                if let Some(info) = all.get_mut(w.sandbox.id()).filter(|s| s.provisioned) {
                    info.provisioned = false;
                    w.idle_since = now;
                    extra -= 1;
                }
            }
            for info in all.values_mut() {
                if extra == 0 {
                    break;
                }
                if info.provisioned && info.function_name == key.0 && info.revision_id == key.1 {
                    info.provisioned = false;
                    extra -= 1;
                }
            }
            tracing::info!(function = %key.0, revision = %key.1, wanted, "provisioned sandboxes released to the warm pool");
        }
    }
}

impl Manager {
    /// Replaces the desired set of provisioned sandboxes (targets of the same revision add up;
    /// a count of 0 holds none) and reconciles towards it.
    pub fn set_provisioned(&self, targets: Vec<ProvisionedTarget>) -> Result<(), ManagerError> {
        let mut wanted: HashMap<Key, (FunctionConfig, Option<SandboxCredentials>, u32)> =
            HashMap::new();
        for t in targets {
            let function = t.function.ok_or_else(|| {
                ManagerError::InvalidRequest("a provisioned target has no function".to_string())
            })?;
            let config = FunctionConfig::try_from(function)?;
            let key = (config.spec.name.clone(), config.revision_id.clone());
            let credentials = t
                .credentials
                .map(SandboxCredentials::from)
                .filter(|c| c.is_usable());
            let entry = wanted.entry(key).or_insert((config, None, 0));
            entry.2 += t.count;
            if credentials.is_some() {
                entry.1 = credentials;
            }
        }
        {
            let mut st = self.state();
            if st.closed {
                return Err(ManagerError::ShuttingDown);
            }
            let previous = std::mem::take(&mut st.provisioned.targets);
            let mut previous = previous;
            for (key, (config, credentials, count)) in wanted {
                let target = match previous.remove(&key) {
                    Some(mut t) => {
                        t.config = config;
                        t.credentials = credentials;
                        t.count = count;
                        t
                    }
                    None => Target {
                        config,
                        credentials,
                        count,
                        pending: 0,
                        failures: 0,
                        last_error: None,
                        retry_at: None,
                    },
                };
                st.provisioned.targets.insert(key, target);
            }
            // Dropped targets whose starts are still pending keep a zero-count entry until those
            // starts reach the pool (so they are counted and released, not lost).
            for (key, mut t) in previous {
                if t.pending > 0 {
                    t.count = 0;
                    st.provisioned.targets.insert(key, t);
                }
            }
        }
        self.reconcile_provisioned();
        Ok(())
    }

    /// Releases extras and starts what is missing (bounded, respecting retry backoff).
    pub(super) fn reconcile_provisioned(&self) {
        let to_start: Vec<(FunctionConfig, Option<SandboxCredentials>)> = {
            let mut st = self.state();
            if st.closed {
                return;
            }
            st.release_extras();
            let now = Instant::now();
            let mut keys: Vec<Key> = st.provisioned.targets.keys().cloned().collect();
            keys.sort();
            let mut out = Vec::new();
            for key in keys {
                let have = st.provisioned_of(&key);
                let Some(t) = st.provisioned.targets.get(&key) else {
                    continue;
                };
                if t.retry_at.is_some_and(|at| now < at) {
                    continue;
                }
                let missing = t.count.saturating_sub(have);
                let config = (t.config.clone(), t.credentials.clone());
                for _ in 0..missing {
                    if st.provisioned.running >= PARALLELISM {
                        break;
                    }
                    st.provisioned.running += 1;
                    if let Some(t) = st.provisioned.targets.get_mut(&key) {
                        t.pending += 1;
                    }
                    out.push(config.clone());
                }
            }
            st.provisioned
                .targets
                .retain(|_, t| t.count > 0 || t.pending > 0);
            out
        };
        for (config, credentials) in to_start {
            let me = self.clone();
            self.inner
                .tasks
                .spawn(async move { me.provision_one(config, credentials).await });
        }
    }

    /// Starts one provisioned sandbox and waits for its init; records the outcome.
    async fn provision_one(&self, config: FunctionConfig, credentials: Option<SandboxCredentials>) {
        let key: Key = (config.spec.name.clone(), config.revision_id.clone());
        let start = self.start(
            &config,
            InitType::ProvisionedConcurrency,
            credentials.as_ref(),
        );
        let result = match start.await {
            Ok(pooled) => {
                let ready = self.await_init(pooled, &config).await;
                self.refill_prepared();
                ready
            }
            Err(e) => Err(e.to_string()),
        };
        let ready = {
            let mut st = self.state();
            st.provisioned.running = st.provisioned.running.saturating_sub(1);
            if let Some(t) = st.provisioned.targets.get_mut(&key) {
                match &result {
                    Ok(_) => {
                        t.failures = 0;
                        t.last_error = None;
                        t.retry_at = None;
                    }
                    Err(e) => {
                        t.failures += 1;
                        let delay = backoff(t.failures);
                        t.last_error = Some(e.clone());
                        t.retry_at = Some(Instant::now() + delay);
                        tracing::warn!(function = %key.0, revision = %key.1, error = %e, retry_in = ?delay, "provisioned sandbox failed to initialise");
                    }
                }
            }
            result.ok()
        };
        if let Some(pooled) = ready {
            tracing::info!(sandbox = pooled.sandbox.id(), function = %key.0, revision = %key.1, "provisioned sandbox ready");
            self.release(pooled);
        }
        self.reconcile_provisioned();
    }

    /// Waits until the runtime has finished its init (its first `GET next`); destroys the sandbox
    /// and describes why when it fails, exits, overruns or the worker stops.
    async fn await_init(&self, pooled: Pooled, config: &FunctionConfig) -> Result<Pooled, String> {
        let limit = INIT_LIMIT + Duration::from_secs(u64::from(config.spec.timeout_s));
        let deadline = Instant::now() + limit;
        let failure = loop {
            if pooled.api.init_done_at().is_some() {
                self.started(pooled.sandbox.id());
                return Ok(pooled);
            }
            if let Some(f) = pooled.api.init_failure() {
                break describe_init_error(&f.error_type, &f.body);
            }
            if pooled.sandbox.has_exited() {
                let exit = pooled.sandbox.wait_exit().await;
                let output = pooled
                    .output
                    .as_ref()
                    .map(|o| o.drain(false).0.bytes)
                    .unwrap_or_default();
                break format!(
                    "the runtime exited during init ({exit}): {}",
                    tail(&String::from_utf8_lossy(&output), 500)
                );
            }
            if Instant::now() >= deadline {
                break format!("init did not finish within {limit:?}");
            }
            tokio::select! {
                () = self.inner.shutdown.cancelled() => break "the worker is shutting down".to_string(),
                () = tokio::time::sleep(INIT_POLL) => {}
            }
        };
        self.retire(pooled);
        Err(failure)
    }
}

/// `Runtime.ImportModuleError: Unable to import module 'app': ...` from the runtime's init error.
fn describe_init_error(error_type: &str, body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["errorMessage"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    format!("init failed: {error_type}: {}", tail(&message, 500))
}

/// The last `max` bytes of `s`, cut at a character boundary.
fn tail(s: &str, max: usize) -> &str {
    let s = s.trim_end();
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(6), Duration::from_secs(32));
        assert_eq!(backoff(7), Duration::from_secs(60));
        assert_eq!(backoff(1000), Duration::from_secs(60));
    }

    #[test]
    fn init_errors_name_type_and_message() {
        let body = br#"{"errorMessage": "Unable to import module 'app': No module named 'x'", "errorType": "Runtime.ImportModuleError"}"#;
        assert_eq!(
            describe_init_error("Runtime.ImportModuleError", body),
            "init failed: Runtime.ImportModuleError: Unable to import module 'app': No module named 'x'"
        );
        assert_eq!(
            describe_init_error("Runtime.Unknown", b"not json"),
            "init failed: Runtime.Unknown: not json"
        );
        assert_eq!(tail("aé", 1), "");
        assert_eq!(tail("abc\n", 2), "bc");
    }
}
