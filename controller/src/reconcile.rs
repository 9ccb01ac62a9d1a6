//! The handles the services hold on the background reconcilers (provisioned concurrency in
//! `provisioned.rs`, VPC networking in `network.rs`, stale sandboxes in `retire.rs`): a wake-up
//! each, and the latest provisioned round's result. They live below the [`Context`] that carries
//! them, so that the reconcilers can take the context without a cycle.
//!
//! [`Context`]: crate::context::Context
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// One provisioned version: (function name, revision id).
pub type RevisionKey = (String, String);

/// Per version: worker id -> sandboxes.
pub type Assignment = BTreeMap<RevisionKey, BTreeMap<String, u32>>;

/// The latest provisioned round's result.
#[derive(Debug, Default)]
pub(crate) struct RoundState {
    pub assignment: Assignment,
    pub unplaced: BTreeMap<RevisionKey, u32>,
}

/// The provisioned-concurrency reconciler's shared state: a change signal and the latest round's
/// result.
#[derive(Debug, Default)]
pub struct Provisioning {
    changed: Notify,
    state: Mutex<RoundState>,
}

impl Provisioning {
    pub(crate) fn lock(&self) -> MutexGuard<'_, RoundState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A configuration, function, version or alias changed: run a round now.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// Resolves at the next [`Provisioning::changed`].
    pub(crate) async fn next_change(&self) {
        self.changed.notified().await
    }

    /// Sandboxes of `key` the latest round could place nowhere.
    pub fn unplaced(&self, key: &RevisionKey) -> u32 {
        self.lock().unplaced.get(key).copied().unwrap_or(0)
    }

    /// The latest round's assignment of `key` (worker id -> sandboxes).
    pub fn assigned(&self, key: &RevisionKey) -> BTreeMap<String, u32> {
        self.lock().assignment.get(key).cloned().unwrap_or_default()
    }
}

/// Wakes the VPC network reconciler after a change.
#[derive(Default)]
pub struct NetworkSync {
    pub changed: Notify,
}

/// Functions whose revisions changed, waiting for the stale-sandbox retirer.
#[derive(Debug, Default)]
pub struct Retiring {
    pending: Mutex<BTreeSet<String>>,
    changed: Notify,
}

impl Retiring {
    /// A revision of `function` ended (store write done): tell the workers.
    pub fn function_changed(&self, function: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(function.to_string());
        self.changed.notify_one();
    }

    /// Resolves at the next [`Retiring::function_changed`].
    pub(crate) async fn next_change(&self) {
        self.changed.notified().await
    }

    /// The functions changed since the last call.
    pub(crate) fn take(&self) -> BTreeSet<String> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
