//! Sandboxes of revisions that no longer exist, controller side. After every store write that
//! ends a revision (a function deleted; its code or configuration updated, which gives `$LATEST` a
//! new revision; a version deleted) the function is marked here and a background task tells every
//! `Up` worker which of its revisions still exist (`Worker.RetireSandboxes`): the workers destroy
//! the sandboxes of the others (idle ones at once, busy ones after their invocation) instead of
//! keeping them until the keep-alive, with their VPC interfaces. A worker that missed the call
//! (down, unreachable, a race with an invocation of the old revision) converges through its
//! heartbeat: the answer names the functions of reported sandboxes whose revision is gone
//! ([`stale_in_heartbeat`]). A store read that fails retires nothing.
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use lamina_proto::v1;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
pub use crate::reconcile::Retiring;
use crate::registry::UpWorker;
use crate::store::{Store, StoreError};

/// How long the call waits for one worker.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The revisions of `function` that exist: `$LATEST`'s and every published version's (none when
/// the function is gone).
pub fn live_revisions(store: &dyn Store, function: &str) -> Result<HashSet<String>, StoreError> {
    let mut live = HashSet::new();
    if let Some(f) = store.get_function(function)? {
        live.insert(f.revision_id);
        for v in store.list_versions(function)? {
            live.insert(v.revision_id);
        }
    }
    Ok(live)
}

fn request(function: String, live: HashSet<String>) -> v1::RetireSandboxesRequest {
    let mut keep: Vec<String> = live.into_iter().collect();
    keep.sort();
    v1::RetireSandboxesRequest {
        function_name: function,
        keep_revision_ids: keep,
    }
}

/// For a heartbeat's sandboxes (function, revision): one request per function with a revision
/// that no longer exists.
pub fn stale_in_heartbeat(
    store: &dyn Store,
    reported: &[(String, String)],
) -> Result<Vec<v1::RetireSandboxesRequest>, StoreError> {
    let mut by_function: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (f, r) in reported {
        by_function.entry(f).or_default().insert(r);
    }
    let mut out = Vec::new();
    for (function, revisions) in by_function {
        let live = live_revisions(store, function)?;
        if revisions.iter().any(|r| !live.contains(*r)) {
            out.push(request(function.to_string(), live));
        }
    }
    Ok(out)
}

async fn send(shared: &Context, w: &UpWorker, req: v1::RetireSandboxesRequest) {
    let function = req.function_name.clone();
    let call = shared
        .workers
        .retire_sandboxes(&w.worker_id, &w.address, req);
    match tokio::time::timeout(SEND_TIMEOUT, call).await {
        Ok(Ok(resp)) => {
            let retired = resp.retired;
            if retired > 0 {
                tracing::info!(worker_id = %w.worker_id, function, retired, "stale sandboxes retired");
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(worker_id = %w.worker_id, function, error = %e, "cannot retire stale sandboxes (the heartbeat will)")
        }
        Err(_) => {
            tracing::warn!(worker_id = %w.worker_id, function, after = ?SEND_TIMEOUT, "the worker did not retire stale sandboxes in time (the heartbeat will)")
        }
    }
}

/// Tells the `Up` workers about every changed function, until `shutdown`.
pub(crate) async fn run(shared: Arc<Context>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = shared.retiring.next_change() => {}
        }
        for function in shared.retiring.take() {
            let f = function.clone();
            let store = Arc::clone(&shared.store);
            let read = tokio::task::spawn_blocking(move || live_revisions(store.as_ref(), &f));
            let read = match read.await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(format!("internal error: store task failed: {e}")),
            };
            let live = match read {
                Ok(live) => live,
                Err(e) => {
                    tracing::warn!(function, error = %e, "cannot read the function's revisions: its stale sandboxes go with the next heartbeats");
                    continue;
                }
            };
            let req = request(function, live);
            let workers = shared.registry.up_workers();
            futures::future::join_all(workers.iter().map(|w| send(&shared, w, req.clone()))).await;
        }
    }
}
