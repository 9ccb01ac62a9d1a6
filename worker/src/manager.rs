//! The sandbox pool: warm sandboxes keyed by (function name, revision), one invocation per sandbox at a
//! time. Takes an idle sandbox (thawing it) or starts one, runs the invocation with its deadline
//! (`run`), freezes the sandbox afterwards and keeps it idle until the keep-alive reaper destroys it.
//! A sandbox that timed out, crashed or failed its init is destroyed: the next invocation starts afresh.
//!
//! Fast path (`pool`): up to `prewarm` sandboxes are prepared ahead of any request (cgroup,
//! namespaces, loopback, Runtime API socket); a cold start binds one to its function instead of
//! building one, and the pool is refilled in the background.
//!
//! Provisioned concurrency (`provisioned`): the controller sets how many initialised sandboxes of
//! which revisions this worker holds; they are started ahead of any invocation, idle frozen like
//! the others, handed out first, and never reaped or evicted while their target holds.
mod env;
mod freeze;
mod image;
mod invoke;
mod logs;
mod pool;
mod provisioned;
mod retire;
mod run;
mod start;
mod state;
mod uids;
mod vpc;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lamina_proto::domain::FunctionConfig;
use lamina_proto::validate::ValidationError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::code_cache::{CodeCache, CodeCacheError};
use crate::config::WorkerConfig;
use crate::runtime_api::RuntimeApi;
use crate::sandbox::{Launcher, PrepareSpec, PreparedSandbox, Sandbox, SandboxError};

pub use env::{build_env, log_stream_name, InitType};
pub use logs::{format_log, Report, MAX_OUTPUT_BYTES};
pub use provisioned::ProvisionFailure;
pub use uids::{
    RangeHolder, UidAllocator, UidError, UidRangeLock, DEFAULT_UID_BASE, LAST_RANGE_FILE, LOCK_DIR,
    MIN_UID_BASE,
};

use logs::SandboxOutput;

/// How often the reaper looks for idle sandboxes past their keep-alive.
const REAP_INTERVAL: Duration = Duration::from_millis(500);
/// How often a cold start's runtime is checked for the end of its init.
const INIT_WATCH: Duration = Duration::from_millis(10);
/// How long `shutdown` waits for sandboxes to be destroyed.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("invalid function configuration: {0}")]
    InvalidFunction(#[from] ValidationError),
    #[error("invalid invocation request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Code(#[from] CodeCacheError),
    #[error(transparent)]
    Image(#[from] crate::image_cache::ImageCacheError),
    #[error("cannot start a sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    #[error("cannot serve the runtime api of sandbox {id}: {source}")]
    RuntimeApi { id: String, source: std::io::Error },
    #[error(
        "worker {worker} has {free} MB of {total} MB free, not enough for a {needed} MB sandbox: \
         add workers or give this one more --memory-mb"
    )]
    NoCapacity {
        worker: String,
        needed: u64,
        free: u64,
        total: u64,
    },
    #[error("invalid entrypoint: {0}")]
    InvalidEntrypoint(String),
    #[error("worker is shutting down: retry on another worker")]
    ShuttingDown,
    #[error("invocation `{request_id}`: the caller stopped waiting: {detail}")]
    CallerDeadline { request_id: String, detail: String },
    #[error("invocation task failed: {0}")]
    Task(String),
    #[error(transparent)]
    Uid(#[from] UidError),
    #[error("cannot attach the sandbox to its VPC: {0}")]
    Network(#[from] crate::network::NetworkError),
}

/// What the manager needs from the worker's configuration.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub worker_id: String,
    /// Relative cgroup path of every sandbox: `lamina/<worker-id>`.
    pub cgroup_parent: String,
    /// `STATE_DIR/sandboxes`: parent of each sandbox's work dir.
    pub sandboxes_dir: PathBuf,
    /// `STATE_DIR/runtime`: Lamina's bootstraps.
    pub runtime_dir: PathBuf,
    pub memory_mb: u64,
    pub keep_alive: Duration,
    /// How long an idle sandbox keeps running before it is frozen (0: frozen before the answer).
    pub freeze_after: Duration,
    pub uid_base: u32,
    pub uid_count: u32,
    /// `STATE_DIR/uids.json`: which function has which host uid.
    pub uids_file: PathBuf,
    pub pids_max: u32,
    /// How many sandboxes to keep prepared ahead of requests (0 = every cold start builds one).
    pub prewarm: usize,
    /// Start Python sandboxes from a zygote (a pre-imported interpreter, forked); the prepared
    /// sandboxes are then Python ones.
    pub python_zygote: bool,
    /// Fork sandbox inits from the spawner (one pre-started `__sandbox-init`) instead of spawning
    /// and exec'ing each one.
    pub spawner: bool,
}

impl ManagerConfig {
    pub fn from_worker(cfg: &WorkerConfig) -> ManagerConfig {
        ManagerConfig {
            worker_id: cfg.worker_id.clone(),
            cgroup_parent: cfg.cgroup_parent(),
            sandboxes_dir: cfg.sandboxes_dir(),
            runtime_dir: cfg.runtime_dir(),
            memory_mb: cfg.memory_mb,
            keep_alive: cfg.keep_alive,
            freeze_after: cfg.freeze_after,
            uid_base: cfg.uid_base,
            uid_count: cfg.uid_count,
            uids_file: cfg.state_dir.join("uids.json"),
            pids_max: cfg.pids_max,
            prewarm: cfg.prewarm,
            python_zygote: cfg.python_zygote,
            spawner: cfg.spawner,
        }
    }
}

/// What a sandbox is doing, as reported in heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxPhase {
    Starting,
    Busy,
    Idle,
}

/// One live sandbox, as reported in heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    pub sandbox_id: String,
    pub function_name: String,
    pub revision_id: String,
    pub phase: SandboxPhase,
    pub memory_mb: u32,
    /// Held for provisioned concurrency (not reaped, not evicted while its target holds).
    pub provisioned: bool,
}

/// The pool as reported in heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    pub memory_total_mb: u64,
    /// Capacity minus the memory of every live sandbox.
    pub memory_free_mb: u64,
    pub sandboxes: Vec<SandboxInfo>,
    pub invocations_total: u64,
    /// Provisioned targets whose latest sandbox init failed (retried with backoff).
    pub provision_failures: Vec<ProvisionFailure>,
}

type Key = (String, String);

/// A sandbox of the pool — started for an invocation (cold) or taken idle (warm), busy or idle —
/// with its Runtime API and output.
struct Pooled {
    sandbox: Sandbox,
    api: RuntimeApi,
    output: Option<Arc<SandboxOutput>>,
    /// Stops the Runtime API server and the output reader.
    stop: CancellationToken,
    started_at: Instant,
    idle_since: Instant,
    /// Frozen while idle (see `freeze.rs`: idle sandboxes are frozen after a grace period).
    frozen: bool,
    /// The cached code, layers or image the sandbox binds: dropped with it, after its destroy.
    _leases: Vec<crate::disk_cache::CacheLease>,
    /// The execution role's session credentials in its environment (`None`: the function has no
    /// role). Not reused once they would expire during an invocation (`role_endpoints`).
    credentials: Option<crate::role_endpoints::SandboxCredentials>,
}

#[derive(Default)]
struct PoolState {
    closed: bool,
    /// Every live sandbox (starting, busy, idle, being destroyed) by id: what memory is spoken for.
    all: HashMap<String, SandboxInfo>,
    /// Idle sandboxes (frozen once their grace ran out) by (function, revision), most recently used last.
    idle: HashMap<Key, Vec<Pooled>>,
    /// Provisioned-concurrency targets and their starts in flight.
    provisioned: provisioned::Targets,
    /// Busy or starting sandboxes of revisions that no longer exist: destroyed once their
    /// invocation is over instead of kept idle (see `retire.rs`).
    doomed: std::collections::HashSet<String>,
}

struct Inner {
    uids: UidAllocator,
    cfg: ManagerConfig,
    code: CodeCache,
    /// Unpacked container images of Image functions.
    images: crate::image_cache::ImageCache,
    state: Mutex<PoolState>,
    /// Sandboxes prepared ahead of requests (see `pool.rs`).
    prepared: pool::Prepared,
    /// The Python zygote, when enabled and running.
    python_zygote: Option<Arc<Launcher>>,
    /// The spawner of sandbox inits, when enabled and running.
    spawner: Option<Arc<Launcher>>,
    invocations_total: AtomicU64,
    /// A sandbox finished starting (see [`Manager::sandbox_started`]).
    started: tokio::sync::Notify,
    /// A sandbox went idle unfrozen (wakes the freezer).
    freezer: tokio::sync::Notify,
    /// The VPC agent (set once the worker knows its controller).
    network: std::sync::OnceLock<Arc<crate::network::NetworkAgent>>,
    /// Where the role endpoints of sandboxes forward to: the controller's REST API (unset: the
    /// endpoints are not served).
    role_upstream: std::sync::OnceLock<Arc<dyn crate::role_endpoints::Upstream>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// The sandbox pool. Cheap to clone.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

/// How a sandbox was obtained for an invocation.
struct Acquired {
    pooled: Pooled,
    cold: bool,
}

impl Manager {
    /// A manager with an empty pool; spawns the keep-alive reaper (stopped by [`Manager::shutdown`]).
    pub fn new(cfg: ManagerConfig, code: CodeCache) -> Manager {
        let python_zygote = if cfg.python_zygote {
            match Launcher::start_python_zygote_default(&cfg.runtime_dir) {
                Ok(z) => Some(z),
                Err(e) => {
                    tracing::warn!(error = %e, "python sandboxes start without a zygote");
                    None
                }
            }
        } else {
            None
        };
        let spawner = if cfg.spawner {
            match Launcher::start_spawner() {
                Ok(z) => Some(z),
                Err(e) => {
                    tracing::warn!(error = %e, "sandbox inits are spawned without the spawner");
                    None
                }
            }
        } else {
            None
        };
        let images = crate::image_cache::ImageCache::new(
            code.root().with_file_name("images"),
            code.client(),
            code.budget(),
        );
        let manager = Manager {
            inner: Arc::new(Inner {
                uids: UidAllocator::load(cfg.uid_base, cfg.uid_count, cfg.uids_file.clone()),
                cfg,
                code,
                images,
                state: Mutex::default(),
                prepared: pool::Prepared::default(),
                python_zygote,
                spawner,
                invocations_total: AtomicU64::new(0),
                started: tokio::sync::Notify::new(),
                freezer: tokio::sync::Notify::new(),
                network: std::sync::OnceLock::new(),
                role_upstream: std::sync::OnceLock::new(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        };
        let reaper = manager.clone();
        manager
            .inner
            .tasks
            .spawn(async move { reaper.reap_loop().await });
        let freezer = manager.clone();
        manager
            .inner
            .tasks
            .spawn(async move { freezer.freeze_loop().await });
        manager.refill_prepared();
        manager
    }

    fn state(&self) -> MutexGuard<'_, PoolState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle sandbox of this revision (thawed), or a new one.
    async fn acquire(
        &self,
        config: &FunctionConfig,
        credentials: Option<&crate::role_endpoints::SandboxCredentials>,
    ) -> Result<Acquired, ManagerError> {
        let key: Key = (config.spec.name.clone(), config.revision_id.clone());
        loop {
            let candidate = {
                let mut st = self.state();
                if st.closed {
                    return Err(ManagerError::ShuttingDown);
                }
                let pooled = st.take_idle(&key);
                if let Some(w) = &pooled {
                    st.set_phase(w.sandbox.id(), SandboxPhase::Busy);
                }
                pooled
            };
            let Some(pooled) = candidate else { break };
            if !credentials_fit(&pooled, config, credentials) {
                tracing::info!(
                    sandbox = pooled.sandbox.id(),
                    "idle sandbox's role credentials expire soon (or it has none): starting another"
                );
                self.retire(pooled);
                continue;
            }
            if pooled.sandbox.has_exited() {
                tracing::info!(
                    sandbox = pooled.sandbox.id(),
                    "idle sandbox exited: starting another"
                );
                self.retire(pooled);
                continue;
            }
            if !pooled.frozen {
                return Ok(Acquired {
                    pooled,
                    cold: false,
                });
            }
            if let Err(e) = pooled.sandbox.thaw() {
                tracing::warn!(sandbox = pooled.sandbox.id(), error = %e, "thaw failed: starting another");
                self.retire(pooled);
                continue;
            }
            return Ok(Acquired {
                pooled,
                cold: false,
            });
        }
        let pooled = self.start(config, InitType::OnDemand, credentials).await?;
        Ok(Acquired { pooled, cold: true })
    }

    /// Serves the role endpoints of sandboxes (AWS API, secrets extension) towards `upstream`,
    /// the controller's REST API. Once; `false` when already set.
    pub fn set_role_upstream(&self, upstream: Arc<dyn crate::role_endpoints::Upstream>) -> bool {
        self.inner.role_upstream.set(upstream).is_ok()
    }

    /// The runtime of sandbox `id` finished its init: it is no longer a start in flight. Wakes
    /// the heartbeat early, so that the controller's count of cold starts in flight follows.
    fn started(&self, id: &str) {
        let mut st = self.state();
        if st
            .all
            .get(id)
            .is_some_and(|s| s.phase == SandboxPhase::Starting)
        {
            st.set_phase(id, SandboxPhase::Busy);
        }
        drop(st);
        self.inner.started.notify_one();
    }

    /// Resolves when a sandbox has finished starting since the last call (at most one wake-up is
    /// kept while nobody waits): the heartbeat loop sends its report early then.
    pub async fn sandbox_started(&self) {
        self.inner.started.notified().await
    }

    /// Runs `run` and, for a cold start, marks the sandbox started once its runtime's init is done
    /// and refills the pool of prepared sandboxes once the invocation is over (preparing one takes
    /// CPU the cold start would otherwise have).
    async fn run_marking_start<F>(&self, run: F, id: String, api: Option<RuntimeApi>) -> F::Output
    where
        F: std::future::Future,
    {
        let Some(api) = api else { return run.await };
        tokio::pin!(run);
        let init_done = async {
            while api.init_done_at().is_none() {
                tokio::time::sleep(INIT_WATCH).await;
            }
        };
        let out = tokio::select! {
            out = &mut run => out,
            () = init_done => {
                self.started(&id);
                run.await
            }
        };
        self.refill_prepared();
        out
    }

    /// After an invocation that kept its sandbox: put it back as idle (frozen now or after the grace).
    fn release(&self, mut pooled: Pooled) {
        if let Err(e) = self.freeze_on_release(&mut pooled) {
            tracing::warn!(sandbox = pooled.sandbox.id(), error = %e, "freeze failed: destroying the sandbox");
            self.retire(pooled);
            return;
        }
        pooled.idle_since = Instant::now();
        let mut st = self.state();
        if st.closed {
            drop(st);
            self.retire(pooled);
            return;
        }
        let id = pooled.sandbox.id().to_string();
        if st.take_doomed(&id) {
            drop(st);
            tracing::info!(sandbox = %id, "its revision no longer exists: destroying the sandbox");
            self.retire(pooled);
            return;
        }
        let Some(info) = st.all.get_mut(&id) else {
            drop(st);
            self.retire(pooled);
            return;
        };
        info.phase = SandboxPhase::Idle;
        let key = (info.function_name.clone(), info.revision_id.clone());
        let unfrozen = !pooled.frozen;
        st.idle.entry(key).or_default().push(pooled);
        drop(st);
        if unfrozen {
            self.idle_unfrozen();
        }
    }

    /// Destroys a sandbox in the background; its memory stays accounted until it is gone.
    fn retire(&self, pooled: Pooled) {
        self.spawn_destroy(pooled, true);
    }

    fn spawn_destroy(&self, pooled: Pooled, unaccount: bool) {
        let me = self.clone();
        self.inner.tasks.spawn(async move {
            let id = pooled.sandbox.id().to_string();
            pooled.stop.cancel();
            pooled.sandbox.kill();
            pooled.sandbox.destroy().await;
            me.release_vpc(&id).await;
            tracing::debug!(sandbox = %id, "sandbox destroyed");
            if unaccount {
                let mut st = me.state();
                st.all.remove(&id);
                st.doomed.remove(&id);
            }
        });
    }

    async fn reap_loop(&self) {
        let mut tick = tokio::time::interval(REAP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let keep_alive = self.inner.cfg.keep_alive;
            let expired: Vec<Pooled> = {
                let mut st = self.state();
                let PoolState { all, idle, .. } = &mut *st;
                let mut out = Vec::new();
                for list in idle.values_mut() {
                    // Provisioned sandboxes stay while their target holds.
                    let (old, young): (Vec<Pooled>, Vec<Pooled>) = list.drain(..).partition(|w| {
                        w.idle_since.elapsed() >= keep_alive
                            && !all.get(w.sandbox.id()).is_some_and(|s| s.provisioned)
                    });
                    *list = young;
                    out.extend(old);
                }
                idle.retain(|_, v| !v.is_empty());
                out
            };
            for pooled in expired {
                tracing::info!(
                    sandbox = pooled.sandbox.id(),
                    "idle past the keep-alive: destroying"
                );
                self.retire(pooled);
            }
            // Lost provisioned sandboxes are replaced and failed starts retried from here.
            self.reconcile_provisioned();
            // Cached code and images released by the sandboxes destroyed meanwhile.
            let budget = self.inner.code.budget();
            if budget.over_budget() {
                self.inner.tasks.spawn_blocking(move || budget.evict());
            }
        }
    }

    /// Memory, sandboxes and invocation count for the heartbeat.
    pub fn status(&self) -> PoolStatus {
        let st = self.state();
        let mut sandboxes: Vec<SandboxInfo> = st.all.values().cloned().collect();
        sandboxes.sort_by(|a, b| a.sandbox_id.cmp(&b.sandbox_id));
        PoolStatus {
            memory_total_mb: self.inner.cfg.memory_mb,
            memory_free_mb: self.inner.cfg.memory_mb.saturating_sub(st.used_mb()),
            sandboxes,
            invocations_total: self.inner.invocations_total.load(Ordering::Relaxed),
            provision_failures: st.provision_failures(),
        }
    }

    /// Refuses new invocations, kills running ones, destroys every sandbox and waits for that.
    pub async fn shutdown(&self) {
        let idle: Vec<Pooled> = {
            let mut st = self.state();
            st.closed = true;
            st.idle.drain().flat_map(|(_, v)| v).collect()
        };
        self.inner.shutdown.cancel();
        for p in self.inner.prepared.drain() {
            self.spawn_destroy_prepared(p);
        }
        for pooled in idle {
            self.retire(pooled);
        }
        self.inner.tasks.close();
        if tokio::time::timeout(SHUTDOWN_WAIT, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some sandboxes were not destroyed within {SHUTDOWN_WAIT:?}");
        }
    }
}

fn new_sandbox_id() -> String {
    format!("sb-{}", uuid::Uuid::new_v4().simple())
}

/// Whether a warm sandbox may take an invocation that came with `credentials`: its own are valid
/// for the function's timeout plus a margin (else it is retired and a new sandbox gets the fresh
/// ones), and a function that has a role now never runs in a sandbox started without one.
fn credentials_fit(
    pooled: &Pooled,
    config: &FunctionConfig,
    credentials: Option<&crate::role_endpoints::SandboxCredentials>,
) -> bool {
    match (&pooled.credentials, credentials) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(own), _) => own.valid_for(
            lamina_proto::auth::now_ms(),
            crate::role_endpoints::reuse_margin(config.spec.timeout_s),
        ),
    }
}
