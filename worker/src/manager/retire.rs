//! Sandboxes of revisions that no longer exist. When a function is deleted or updated (code or
//! configuration), or one of its versions deleted, the controller tells every worker which
//! revisions of it still exist (`Worker.RetireSandboxes`, and the heartbeat's answer for a worker
//! that missed the call): idle sandboxes of any other revision are destroyed at once (with their
//! VPC interface and leases), busy and starting ones once their invocation is over, and
//! provisioned targets of those revisions are dropped so that none is started again.
use std::collections::HashSet;

use super::{Key, Manager, PoolState, Pooled, SandboxPhase};

impl PoolState {
    /// True when sandbox `id` is to be destroyed once its invocation is over.
    pub(super) fn take_doomed(&mut self, id: &str) -> bool {
        self.doomed.remove(id)
    }
}

impl Manager {
    /// Retires the sandboxes of `function` whose revision is not in `keep` (empty: every one of
    /// them, the function is gone). Returns how many were found.
    pub fn retire_revisions(&self, function: &str, keep: &HashSet<String>) -> usize {
        let stale = |revision: &str| !keep.contains(revision);
        let (idle, busy) = {
            let mut st = self.state();
            st.provisioned.forget(function, keep);
            let PoolState {
                all, idle, doomed, ..
            } = &mut *st;
            let mut busy = 0;
            for info in all.values() {
                if info.function_name == function
                    && stale(&info.revision_id)
                    && info.phase != SandboxPhase::Idle
                    && doomed.insert(info.sandbox_id.clone())
                {
                    busy += 1;
                }
            }
            let keys: Vec<Key> = idle
                .keys()
                .filter(|k| k.0 == function && stale(&k.1))
                .cloned()
                .collect();
            let idle: Vec<Pooled> = keys
                .iter()
                .flat_map(|k| idle.remove(k).unwrap_or_default())
                .collect();
            (idle, busy)
        };
        if idle.is_empty() && busy == 0 {
            return 0;
        }
        tracing::info!(
            function,
            idle = idle.len(),
            busy,
            "retiring the sandboxes of revisions that no longer exist"
        );
        let n = idle.len() + busy;
        for pooled in idle {
            self.retire(pooled);
        }
        n
    }
}
