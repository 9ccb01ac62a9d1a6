//! Sandboxes prepared ahead of requests: cgroup, namespaces, loopback and the Runtime API socket
//! exist, no function is bound and nothing untrusted runs (see `sandbox::spawn`). A cold start takes
//! one and binds it to its function (code, limits, uid, environment), which leaves only the root
//! filesystem, the privilege drop and the runtime's own start on the request's path. The pool is
//! refilled in the background, at most `prewarm` at a time.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lamina_proto::domain::{FunctionConfig, Runtime};

use crate::sandbox::Launcher;

use super::{new_sandbox_id, Manager, PrepareSpec, PreparedSandbox};

#[derive(Default)]
pub(super) struct Prepared {
    ready: Mutex<Vec<PreparedSandbox>>,
    /// Preparations in flight.
    filling: AtomicUsize,
}

impl Prepared {
    fn ready(&self) -> MutexGuard<'_, Vec<PreparedSandbox>> {
        self.ready.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn drain(&self) -> Vec<PreparedSandbox> {
        std::mem::take(&mut *self.ready())
    }

    pub(super) fn len(&self) -> usize {
        self.ready().len()
    }
}

impl Manager {
    /// The oldest prepared sandbox whose init is still alive, if the pool has one.
    pub(super) fn take_prepared(&self) -> Option<PreparedSandbox> {
        loop {
            let p = {
                let mut ready = self.inner.prepared.ready();
                if ready.is_empty() {
                    return None;
                }
                ready.remove(0)
            };
            if !p.has_exited() {
                return Some(p);
            }
            tracing::warn!(sandbox = p.id(), "prepared sandbox exited: discarding it");
            self.spawn_destroy_prepared(p);
        }
    }

    /// Puts back a prepared sandbox that was taken but not bound (nothing ran in it).
    pub(super) fn return_prepared(&self, p: PreparedSandbox) {
        if self.state().closed || p.has_exited() {
            self.spawn_destroy_prepared(p);
            return;
        }
        self.inner.prepared.ready().push(p);
    }

    /// How many prepared sandboxes wait in the pool now.
    pub fn prepared_count(&self) -> usize {
        self.inner.prepared.len()
    }

    /// Starts preparations until ready + in flight reaches `prewarm`.
    pub(super) fn refill_prepared(&self) {
        let target = self.inner.cfg.prewarm;
        loop {
            let ready = self.inner.prepared.len();
            let filling = self.inner.prepared.filling.load(Ordering::Acquire);
            if ready + filling >= target || self.state().closed {
                return;
            }
            if self
                .inner
                .prepared
                .filling
                .compare_exchange(filling, filling + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            let me = self.clone();
            self.inner.tasks.spawn(async move {
                let id = new_sandbox_id();
                let cfg = &me.inner.cfg;
                let spec = PrepareSpec {
                    work_dir: cfg.sandboxes_dir.join(&id),
                    sandbox_id: id,
                    cgroup_parent: cfg.cgroup_parent.clone(),
                    runtime_dir: cfg.runtime_dir.clone(),
                    pids_max: cfg.pids_max,
                };
                let prepared = PreparedSandbox::prepare_with(spec, me.launcher(None)).await;
                me.inner.prepared.filling.fetch_sub(1, Ordering::AcqRel);
                match prepared {
                    Ok(p) => me.return_prepared(p),
                    // Not retried here: the next cold start (which refills) tries again.
                    Err(e) => tracing::warn!(error = %e, "preparing a sandbox ahead failed"),
                }
            });
        }
    }

    /// The Python zygote, if enabled and still running.
    pub(super) fn python_zygote(&self) -> Option<Arc<Launcher>> {
        self.inner.python_zygote.clone().filter(|z| z.is_alive())
    }

    /// What forks the init of a new sandbox for `runtime` (`None`: a prepared one, whose runtime
    /// is not known yet): the Python zygote for Python when enabled (prepared sandboxes are then
    /// Python ones), else the spawner; `None` means spawn and exec it directly.
    pub(super) fn launcher(&self, runtime: Option<Runtime>) -> Option<Arc<Launcher>> {
        let zygote = self.python_zygote();
        match (runtime, zygote) {
            (None | Some(Runtime::Python311), Some(z)) => Some(z),
            _ => self.inner.spawner.clone().filter(|s| s.is_alive()),
        }
    }

    /// What starts a sandbox built for `config` on the spot: the zygote for a Python zip function
    /// when it runs, else the spawner (a fork of the pre-started init; `None`: spawn and exec one).
    pub(super) fn fresh_launcher(&self, config: &FunctionConfig) -> Option<Arc<Launcher>> {
        match self.python_zygote() {
            Some(z) if super::image::zygote_fits(config) => Some(z),
            _ => self.inner.spawner.clone().filter(|s| s.is_alive()),
        }
    }

    pub(super) fn spawn_destroy_prepared(&self, p: PreparedSandbox) {
        self.inner.tasks.spawn(p.destroy());
    }
}
