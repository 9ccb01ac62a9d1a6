//! The sandbox factory: starting a sandbox for a function, step by step — memory reserved in the
//! pool (evicting idle sandboxes if needed), code fetched, a prepared sandbox taken from the pool
//! or prepared now, its network attached (VPC interface or default egress), the function bound,
//! its Runtime API served.
//!
//! Every step that leaves something behind records it in a [`StartGuard`]; a failed step awaits
//! the guard's undo (the sandbox destroyed, its network attachment released, its memory no longer
//! counted, an untouched prepared sandbox put back), and a guard dropped without being finished (a
//! cancelled start) hands the same undo to the manager's task tracker. A start that succeeds
//! disarms the guard: the [`Pooled`] sandbox it returns owns all of it from then on.
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use lamina_proto::domain::FunctionConfig;
use tokio_util::sync::CancellationToken;

use super::{
    build_env, image, log_stream_name, logs, new_sandbox_id, InitType, Manager, ManagerError,
    Pooled, SandboxInfo, SandboxPhase,
};
use crate::role_endpoints::SandboxCredentials;
use crate::runtime_api::RuntimeApi;
use crate::runtimes;
use crate::sandbox::{PreparedSandbox, Sandbox, SandboxSpec};

/// The sandbox a start holds so far.
enum Held {
    Nothing,
    /// Taken from the pool of prepared sandboxes, nothing of the function in it: goes back there.
    Untouched(PreparedSandbox),
    /// Prepared for this start, or touched by it (its network attached): destroyed.
    Prepared(PreparedSandbox),
    /// Bound to its function: destroyed.
    Bound(Sandbox),
}

/// What a start has done that must be undone if it does not finish.
struct Done {
    manager: Manager,
    sandbox_id: String,
    /// The sandbox's memory is counted in the pool (`PoolState::all`): a start in flight.
    accounted: bool,
    /// Its network attachment (VPC addresses, interface, security-group membership or default
    /// egress), complete or partial, is to be released.
    attached: bool,
    held: Held,
}

impl Done {
    /// Undoes it all, in the order a destroyed sandbox goes: processes and cgroup, network,
    /// memory accounting (counted until the sandbox is really gone).
    async fn undo(self) {
        let Done {
            manager,
            sandbox_id,
            accounted,
            attached,
            held,
        } = self;
        match held {
            Held::Nothing => {}
            Held::Untouched(p) => manager.return_prepared(p),
            Held::Prepared(p) => p.destroy().await,
            Held::Bound(s) => s.destroy().await,
        }
        if attached {
            manager.release_vpc(&sandbox_id).await;
        }
        if accounted {
            let mut st = manager.state();
            st.all.remove(&sandbox_id);
            st.doomed.remove(&sandbox_id);
            drop(st);
            manager.refill_prepared();
        }
    }
}

/// The steps of one start done so far; undone on failure ([`StartGuard::fail`]) or on drop.
pub(super) struct StartGuard {
    done: Option<Done>,
}

impl StartGuard {
    fn new(manager: &Manager, sandbox_id: String, prepared: Option<PreparedSandbox>) -> StartGuard {
        StartGuard {
            done: Some(Done {
                manager: manager.clone(),
                sandbox_id,
                accounted: false,
                attached: false,
                held: prepared.map_or(Held::Nothing, Held::Untouched),
            }),
        }
    }

    fn done(&mut self) -> &mut Done {
        self.done
            .as_mut()
            .expect("a start guard is used until it is finished or failed")
    }

    fn sandbox_id(&self) -> &str {
        &self.done.as_ref().expect("live start guard").sandbox_id
    }

    /// The prepared sandbox held (untouched or not), to be used by the next step.
    fn take_prepared(&mut self) -> Option<PreparedSandbox> {
        let done = self.done();
        match std::mem::replace(&mut done.held, Held::Nothing) {
            Held::Untouched(p) | Held::Prepared(p) => Some(p),
            other => {
                done.held = other;
                None
            }
        }
    }

    fn prepared(&self) -> Option<&PreparedSandbox> {
        match &self.done.as_ref()?.held {
            Held::Untouched(p) | Held::Prepared(p) => Some(p),
            _ => None,
        }
    }

    fn bound(&mut self) -> Option<&mut Sandbox> {
        match &mut self.done().held {
            Held::Bound(s) => Some(s),
            _ => None,
        }
    }

    /// Undoes every step done, awaited (the error path of a start).
    async fn fail(mut self, e: ManagerError) -> ManagerError {
        if let Some(done) = self.done.take() {
            if done.accounted {
                crate::health::FDS.note_error(&e);
            }
            done.undo().await;
        }
        e
    }

    /// The start succeeded: the bound sandbox, nothing left to undo.
    fn finish(mut self) -> Sandbox {
        match self.done.take().map(|d| d.held) {
            Some(Held::Bound(s)) => s,
            _ => unreachable!("a start finishes with its sandbox bound"),
        }
    }
}

impl Drop for StartGuard {
    /// A start dropped half-way (its task cancelled): the undo cannot be awaited here, so it runs
    /// on the manager's task tracker (or, outside a runtime, the sandbox is torn down by its own
    /// `Drop` and only the accounting is undone).
    fn drop(&mut self) {
        let Some(done) = self.done.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            let tasks = done.manager.inner.tasks.clone();
            tasks.spawn(done.undo());
            return;
        }
        let Done {
            manager,
            sandbox_id,
            accounted,
            held,
            ..
        } = done;
        drop(held);
        if accounted {
            let mut st = manager.state();
            st.all.remove(&sandbox_id);
            st.doomed.remove(&sandbox_id);
        }
    }
}

impl Manager {
    /// Reserves memory (evicting ordinary idle sandboxes of any function if needed) and starts a
    /// sandbox. A provisioned one is counted as its target's from here on (see `provisioned`).
    pub(super) async fn start(
        &self,
        config: &FunctionConfig,
        init: InitType,
        credentials: Option<&SandboxCredentials>,
    ) -> Result<Pooled, ManagerError> {
        // With a zygote the prepared sandboxes are Python ones (an image brings its own runtime).
        let fits = self.python_zygote().is_none() || image::zygote_fits(config);
        let prepared = if fits { self.take_prepared() } else { None };
        let sandbox_id = match &prepared {
            Some(p) => p.id().to_string(),
            None => new_sandbox_id(),
        };
        let mut guard = StartGuard::new(self, sandbox_id, prepared);
        if let Err(e) = self.reserve(&mut guard, config, init) {
            return Err(guard.fail(e).await);
        }
        match self.build(&mut guard, config, init, credentials).await {
            // A started sandbox stays `Starting` until its runtime finished its init (`started`).
            Ok(parts) => Ok(parts.into_pooled(guard.finish())),
            Err(e) => Err(guard.fail(e).await),
        }
    }

    /// Counts the sandbox's memory in the pool, evicting the oldest ordinary idle sandboxes until
    /// it fits.
    fn reserve(
        &self,
        guard: &mut StartGuard,
        config: &FunctionConfig,
        init: InitType,
    ) -> Result<(), ManagerError> {
        let spec = &config.spec;
        let needed = u64::from(spec.memory_mb);
        let provisioned = init == InitType::ProvisionedConcurrency;
        let mut st = self.state();
        if provisioned {
            st.provisioned
                .started(&(spec.name.clone(), config.revision_id.clone()));
        }
        if st.closed {
            return Err(ManagerError::ShuttingDown);
        }
        let total = self.inner.cfg.memory_mb;
        while st.used_mb() + needed > total {
            let Some(victim) = st.pop_oldest_idle() else {
                return Err(ManagerError::NoCapacity {
                    worker: self.inner.cfg.worker_id.clone(),
                    needed,
                    free: total.saturating_sub(st.used_mb()),
                    total,
                });
            };
            tracing::info!(
                sandbox = victim.sandbox.id(),
                "evicting an idle sandbox to make room"
            );
            // Counted as free right away (it is being killed) so that no more is evicted than needed.
            st.all.remove(victim.sandbox.id());
            self.spawn_destroy(victim, false);
        }
        let sandbox_id = guard.sandbox_id().to_string();
        st.all.insert(
            sandbox_id.clone(),
            SandboxInfo {
                sandbox_id,
                function_name: spec.name.clone(),
                revision_id: config.revision_id.clone(),
                phase: SandboxPhase::Starting,
                memory_mb: spec.memory_mb,
                provisioned,
            },
        );
        guard.done().accounted = true;
        Ok(())
    }

    /// Every step after the reservation; what each leaves behind is in `guard`.
    async fn build(
        &self,
        guard: &mut StartGuard,
        config: &FunctionConfig,
        init: InitType,
        credentials: Option<&SandboxCredentials>,
    ) -> Result<Started, ManagerError> {
        let spec = &config.spec;
        let cfg = &self.inner.cfg;
        let sandbox_id = guard.sandbox_id().to_string();
        let uuid = sandbox_id.trim_start_matches("sb-").to_string();
        // The code and every attached layer, fetched and unzipped once per digest, leased to the
        // sandbox (not evicted from the disk cache while it lives).
        let (code_lease, layer_leases) = if let Some(image) = &config.image {
            (self.inner.images.ensure(image).await?, Vec::new())
        } else {
            let code = self.inner.code.ensure(&config.code_sha256).await?;
            let mut layers = Vec::with_capacity(config.layers.len());
            for layer in &config.layers {
                layers.push(self.inner.code.ensure(&layer.code_sha256).await?);
            }
            (code, layers)
        };
        let code_dir = code_lease.path().to_path_buf();
        let layer_dirs: Vec<PathBuf> = layer_leases
            .iter()
            .map(|l| l.path().to_path_buf())
            .collect();
        let mut leases = layer_leases;
        leases.push(code_lease);
        if spec.runtime.is_provided() && config.image.is_none() {
            check_bootstrap(&code_dir)?;
        }
        let now_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let stream = log_stream_name(now_s, &config.version, &uuid);
        let image_root = image::root(config, &code_dir);
        let sandbox_spec = SandboxSpec {
            sandbox_id: sandbox_id.clone(),
            runtime: spec.runtime,
            code_dir,
            layer_dirs,
            runtime_dir: cfg.runtime_dir.clone(),
            work_dir: cfg.sandboxes_dir.join(&sandbox_id),
            cgroup_parent: cfg.cgroup_parent.clone(),
            memory_mb: spec.memory_mb,
            ephemeral_storage_mb: spec.ephemeral_storage_mb,
            argv: match &config.image {
                Some(i) => image::argv(i),
                None => runtimes::command(spec.runtime),
            },
            env: {
                let mut env = match &config.image {
                    Some(i) => image::env(config, &stream, init, i),
                    None => build_env(config, &stream, init, runtimes::runtime_env(spec.runtime)),
                };
                // The execution role's credentials, as Lambda sets them (reserved names: no
                // user variable has them).
                env.extend(credentials.map(SandboxCredentials::env).unwrap_or_default());
                env
            },
            host_uid: self.inner.uids.uid_for(&spec.name)?,
            pids_max: cfg.pids_max,
        };
        let started_at = Instant::now();
        let (prepare_spec, mut bind_spec) = sandbox_spec.split();
        bind_spec.image = image_root;
        if guard.prepared().is_none() {
            let launcher = self.fresh_launcher(config);
            let prepared = PreparedSandbox::prepare_with(prepare_spec, launcher).await?;
            guard.done().held = Held::Prepared(prepared);
        }
        // From here on the network attachment is released with the sandbox, also when attaching
        // it fails half-way.
        let prepared = guard.take_prepared().expect("a prepared sandbox is held");
        let (id, pids) = (prepared.id().to_string(), prepared.pids());
        guard.done().held = Held::Prepared(prepared);
        guard.done().attached = true;
        match spec.vpc_config.as_ref() {
            Some(vpc) => self.attach_vpc(&id, &pids, vpc).await?,
            None => self.attach_default_egress(&id, &pids).await?,
        }
        let prepared = guard.take_prepared().expect("a prepared sandbox is held");
        // `bind` destroys the sandbox itself when it fails.
        guard.done().held = Held::Bound(prepared.bind(bind_spec).await?);
        // The pool is refilled once this sandbox's first invocation (`run_marking_start`) or its
        // provisioned init (`provision_one`) is over: preparing another now would slow this start.
        let sandbox = guard.bound().expect("the sandbox is bound");
        let stop = CancellationToken::new();
        let api = match sandbox.take_runtime_api_listener() {
            Some(listener) => RuntimeApi::serve(listener, stop.clone()),
            None => Err(std::io::Error::other(
                "the sandbox gave no runtime api listener",
            )),
        }
        .map_err(|source| ManagerError::RuntimeApi {
            id: sandbox_id.clone(),
            source,
        })?;
        // The role endpoints: served for a function with credentials, else closed.
        let role_listeners = sandbox.take_role_listeners();
        if let (Some(creds), Some((aws, extension)), Some(upstream)) =
            (credentials, role_listeners, self.inner.role_upstream.get())
        {
            crate::role_endpoints::serve(
                aws,
                extension,
                creds.clone(),
                Arc::clone(upstream),
                &spec.environment,
                stop.clone(),
            )
            .map_err(|source| ManagerError::RuntimeApi {
                id: sandbox_id.clone(),
                source,
            })?;
        }
        let output = sandbox.take_output().map(logs::SandboxOutput::new);
        if let Some(out) = &output {
            logs::spawn_reader(out.clone(), api.clone(), stop.clone());
        }
        tracing::info!(
            sandbox = %sandbox_id,
            function = %spec.name,
            revision = %config.revision_id,
            ms = started_at.elapsed().as_millis() as u64,
            "sandbox started"
        );
        Ok(Started {
            api,
            output,
            stop,
            started_at,
            leases,
            credentials: credentials.cloned(),
        })
    }
}

/// What a successful start made besides the sandbox itself.
struct Started {
    api: RuntimeApi,
    output: Option<std::sync::Arc<logs::SandboxOutput>>,
    stop: CancellationToken,
    started_at: Instant,
    leases: Vec<crate::disk_cache::CacheLease>,
    credentials: Option<SandboxCredentials>,
}

impl Started {
    fn into_pooled(self, sandbox: Sandbox) -> Pooled {
        Pooled {
            sandbox,
            api: self.api,
            output: self.output,
            stop: self.stop,
            started_at: self.started_at,
            idle_since: self.started_at,
            frozen: false,
            _leases: self.leases,
            credentials: self.credentials,
        }
    }
}

/// `provided` needs an executable `/var/task/bootstrap`.
fn check_bootstrap(code_dir: &std::path::Path) -> Result<(), ManagerError> {
    let path = code_dir.join("bootstrap");
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err(ManagerError::InvalidEntrypoint(
            "/var/task/bootstrap is not an executable file: zip it with mode 0755".to_string(),
        )),
        Err(_) => Err(ManagerError::InvalidEntrypoint(
            "Couldn't find valid bootstrap(s): [/var/task/bootstrap]".to_string(),
        )),
    }
}
