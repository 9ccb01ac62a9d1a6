//! Freezing idle sandboxes after a grace period (`--freeze-after-ms`, as OpenWhisk's pause grace).
//!
//! A sandbox that answered goes back to the idle list still running; the freezer freezes it once it
//! has stayed idle for the grace period. A sandbox taken again within the grace skips both the freeze
//! and the thaw (two cgroup writes and a trip of every process through the kernel's refrigerator,
//! ~0.3 ms on the critical path of back-to-back invocations). A grace of zero freezes on release,
//! before the invocation's answer is returned, as Lambda does.
use std::time::{Duration, Instant};

use super::{Manager, PoolState, Pooled};
use crate::sandbox::SandboxError;

impl Manager {
    /// Before an answered sandbox goes back to the idle list: frozen at once when there is no
    /// grace; otherwise the freezer gets to it (see [`Manager::idle_unfrozen`]).
    pub(super) fn freeze_on_release(&self, pooled: &mut Pooled) -> Result<(), SandboxError> {
        pooled.frozen = false;
        if self.inner.cfg.freeze_after.is_zero() {
            pooled.sandbox.freeze()?;
            pooled.frozen = true;
        }
        Ok(())
    }

    /// Wakes the freezer once an unfrozen sandbox is in the idle list (after the push, so the
    /// freezer cannot look before it is there and then sleep past it).
    pub(super) fn idle_unfrozen(&self) {
        self.inner.freezer.notify_one();
    }

    /// Until shutdown: freezes every idle sandbox whose grace has run out.
    pub(super) async fn freeze_loop(&self) {
        let grace = self.inner.cfg.freeze_after;
        if grace.is_zero() {
            return;
        }
        loop {
            let next = next_due(&self.state(), grace);
            let due = match next {
                Some(at) => tokio::time::sleep_until(at.into()),
                // Nothing to freeze: wait for a release (a permit is kept if it comes first).
                None => tokio::time::sleep(Duration::from_secs(3600)),
            };
            tokio::select! {
                () = self.inner.shutdown.cancelled() => return,
                () = self.inner.freezer.notified(), if next.is_none() => continue,
                () = due => {}
            }
            let failed = {
                let mut st = self.state();
                freeze_due(&mut st, grace, Instant::now())
            };
            for pooled in failed {
                self.retire(pooled);
            }
        }
    }
}

/// When the earliest unfrozen idle sandbox is due.
fn next_due(st: &PoolState, grace: Duration) -> Option<Instant> {
    st.idle
        .values()
        .flatten()
        .filter(|w| !w.frozen)
        .map(|w| w.idle_since + grace)
        .min()
}

/// Freezes the idle sandboxes due at `now` (under the pool lock, so none is taken half-frozen);
/// returns those whose freeze failed, removed from the idle lists.
fn freeze_due(st: &mut PoolState, grace: Duration, now: Instant) -> Vec<Pooled> {
    let mut failed = Vec::new();
    for list in st.idle.values_mut() {
        let mut i = 0;
        while i < list.len() {
            let w = &mut list[i];
            if w.frozen || w.idle_since + grace > now {
                i += 1;
                continue;
            }
            match w.sandbox.freeze() {
                Ok(()) => {
                    w.frozen = true;
                    i += 1;
                }
                Err(e) => {
                    tracing::warn!(sandbox = w.sandbox.id(), error = %e, "freeze failed: destroying the sandbox");
                    failed.push(list.remove(i));
                }
            }
        }
    }
    st.idle.retain(|_, v| !v.is_empty());
    failed
}
