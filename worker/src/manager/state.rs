//! The pool state's own queries: memory spoken for, phases, and which idle sandbox to take or evict.
use super::{Key, PoolState, Pooled, SandboxPhase};

impl PoolState {
    pub(super) fn used_mb(&self) -> u64 {
        self.all.values().map(|s| u64::from(s.memory_mb)).sum()
    }

    pub(super) fn set_phase(&mut self, id: &str, phase: SandboxPhase) {
        if let Some(info) = self.all.get_mut(id) {
            info.phase = phase;
        }
    }

    pub(super) fn is_provisioned(&self, id: &str) -> bool {
        self.all.get(id).is_some_and(|s| s.provisioned)
    }

    /// Removes and returns the ordinary (not provisioned) idle sandbox that has been idle longest.
    pub(super) fn pop_oldest_idle(&mut self) -> Option<Pooled> {
        let (key, index) = self
            .idle
            .iter()
            .flat_map(|(k, v)| v.iter().enumerate().map(move |(i, w)| (k, i, w)))
            .filter(|(_, _, w)| !self.is_provisioned(w.sandbox.id()))
            .min_by_key(|(_, _, w)| w.idle_since)
            .map(|(k, i, _)| (k.clone(), i))?;
        let list = self.idle.get_mut(&key)?;
        let pooled = list.remove(index);
        if list.is_empty() {
            self.idle.remove(&key);
        }
        Some(pooled)
    }

    /// Takes an idle sandbox of `key`: a provisioned one first, else the most recently used.
    pub(super) fn take_idle(&mut self, key: &Key) -> Option<Pooled> {
        let PoolState { all, idle, .. } = self;
        let list = idle.get_mut(key)?;
        let index = list
            .iter()
            .rposition(|w| all.get(w.sandbox.id()).is_some_and(|s| s.provisioned))
            .or_else(|| list.len().checked_sub(1))?;
        let pooled = list.remove(index);
        if list.is_empty() {
            idle.remove(key);
        }
        Some(pooled)
    }
}
