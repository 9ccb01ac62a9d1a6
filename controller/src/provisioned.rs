//! Provisioned concurrency, controller side: the reconciler that turns the stored
//! `ProvisionedConfig`s into per-worker sets of provisioned sandboxes (`Worker.SetProvisioned`),
//! and the status of each configuration as the workers' heartbeats show it.
//!
//! A configuration names a version or an alias; an alias provisions its primary
//! `function_version`. Sandboxes are keyed by revision on the workers, so a provisioned sandbox
//! serves every invocation of that version, whether it came through the alias, another alias or
//! the version number. Configurations that resolve to the same version add up.
//!
//! Each round (every heartbeat interval, and at once after a change):
//! 1. resolve every configuration to its version (one whose function, version or alias is gone
//!    drops out: its sandboxes are released);
//! 2. assign each version's count to the `Up` workers ([`assign`]): the previous assignment is
//!    kept where its worker is still `Up` (stable), a lowered count is taken from the workers with
//!    the most, and what is missing (new, raised, or lost with a `Down` worker) goes one sandbox at
//!    a time to the worker with the fewest of that version where its memory fits;
//! 3. send every `Up` worker its complete set (idempotent; the worker starts what it lacks and
//!    turns extras into ordinary warm sandboxes).
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use lamina_proto::domain::{FunctionConfig, ProvisionedConfig};
use lamina_proto::v1;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
pub use crate::reconcile::{Assignment, Provisioning, RevisionKey};
use crate::registry::UpWorker;
use crate::resolve::{lookup_in, ResolveError, Target};
use crate::store::StoreError;

/// How long a round waits for one worker to take its set.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a configuration does not resolve, or a round failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionedError {
    /// The qualifier names `$LATEST` (or nothing): only a published version or an alias can be
    /// provisioned.
    #[error("{0}")]
    NotProvisionable(String),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// What one version needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub key: RevisionKey,
    pub memory_mb: u32,
    pub count: u32,
}

/// The outcome of [`assign`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assigned {
    pub assignment: Assignment,
    /// Sandboxes of a version that fit on no `Up` worker.
    pub unplaced: BTreeMap<RevisionKey, u32>,
}

/// Spreads each demand over `workers` (see the module documentation). Pure.
pub fn assign(demands: &[Demand], workers: &[UpWorker], previous: &Assignment) -> Assigned {
    let up: BTreeMap<&str, u64> = workers
        .iter()
        .map(|w| (w.worker_id.as_str(), w.memory_total_mb))
        .collect();
    let mut sorted: Vec<&Demand> = demands.iter().collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    let mut used: BTreeMap<&str, u64> = BTreeMap::new();
    let mut out = Assigned::default();
    // Keep what is still valid: trim a lowered count from the workers with the most.
    for d in &sorted {
        let mut kept: BTreeMap<String, u32> = previous
            .get(&d.key)
            .map(|m| {
                m.iter()
                    .filter(|(w, n)| up.contains_key(w.as_str()) && **n > 0)
                    .map(|(w, n)| (w.clone(), *n))
                    .collect()
            })
            .unwrap_or_default();
        let mut total: u32 = kept.values().sum();
        while total > d.count {
            let Some((w, _)) = kept
                .iter()
                .max_by(|(wa, a), (wb, b)| a.cmp(b).then_with(|| wb.cmp(wa)))
                .map(|(w, n)| (w.clone(), *n))
            else {
                break;
            };
            let n = kept.get_mut(&w).expect("a key just found");
            *n -= 1;
            if *n == 0 {
                kept.remove(&w);
            }
            total -= 1;
        }
        for (w, n) in &kept {
            if let Some((id, _)) = up.get_key_value(w.as_str()) {
                *used.entry(id).or_insert(0) += u64::from(*n) * u64::from(d.memory_mb);
            }
        }
        out.assignment.insert(d.key.clone(), kept);
    }
    // Add what is missing, one at a time, where the fewest of this version are.
    for d in &sorted {
        let per_worker = out.assignment.entry(d.key.clone()).or_default();
        let mut total: u32 = per_worker.values().sum();
        let need = u64::from(d.memory_mb);
        while total < d.count {
            let best = up
                .iter()
                .filter(|(id, cap)| used.get(*id).copied().unwrap_or(0) + need <= **cap)
                .min_by(|(a, cap_a), (b, cap_b)| {
                    let have = |id: &str| per_worker.get(id).copied().unwrap_or(0);
                    let room = |id: &str, cap: u64| cap - used.get(id).copied().unwrap_or(0);
                    have(a)
                        .cmp(&have(b))
                        .then_with(|| room(b, **cap_b).cmp(&room(a, **cap_a)))
                        .then_with(|| a.cmp(b))
                })
                .map(|(id, _)| *id);
            let Some(id) = best else {
                out.unplaced.insert(d.key.clone(), d.count - total);
                break;
            };
            *per_worker.entry(id.to_string()).or_insert(0) += 1;
            *used.entry(id).or_insert(0) += need;
            total += 1;
        }
    }
    out.assignment.retain(|_, m| !m.is_empty());
    out
}

/// The version a configuration provisions: a version's own, an alias's primary. `$LATEST` (and
/// anything else) is refused. Blocking: call it off the async threads.
pub(crate) fn resolve_in(
    store: &dyn crate::store::Store,
    function: &str,
    qualifier: &str,
) -> Result<FunctionConfig, ProvisionedError> {
    if qualifier.is_empty() || qualifier == lamina_proto::domain::LATEST {
        return Err(ProvisionedError::NotProvisionable(format!(
            "qualifier must name a published version or an alias of function `{function}`, got \
             {qualifier:?}: $LATEST cannot have provisioned concurrency (publish a version)"
        )));
    }
    match lookup_in(store, function, qualifier)? {
        Target::Version(c) => Ok(c),
        Target::Alias { primary, .. } => Ok(primary),
        Target::Latest(_) => Err(ProvisionedError::NotProvisionable(format!(
            "qualifier {qualifier:?} of function `{function}` names $LATEST, which cannot have \
             provisioned concurrency"
        ))),
    }
}

/// Every stored configuration with the version it provisions now (`None`: it resolves no more).
async fn resolved_configs(
    shared: &Context,
) -> Result<Vec<(ProvisionedConfig, Option<FunctionConfig>)>, ProvisionedError> {
    let store = Arc::clone(&shared.store);
    tokio::task::spawn_blocking(move || {
        let configs = store.list_provisioned(None)?;
        let mut out = Vec::with_capacity(configs.len());
        for c in configs {
            let version =
                still_resolves(resolve_in(store.as_ref(), &c.function_name, &c.qualifier))?;
            out.push((c, version));
        }
        Ok(out)
    })
    .await
    .map_err(|e| ProvisionedError::Internal(format!("store task failed: {e}")))?
}

/// `None` when a configuration's target is gone (function, version or alias deleted: its sandboxes
/// are released); any other failure (a store read that failed) ends the round with an error, so
/// that the workers keep the sandboxes they have instead of being told to release them.
fn still_resolves(
    resolved: Result<FunctionConfig, ProvisionedError>,
) -> Result<Option<FunctionConfig>, ProvisionedError> {
    match resolved {
        Ok(v) => Ok(Some(v)),
        Err(
            ProvisionedError::NotProvisionable(_)
            | ProvisionedError::Store(StoreError::FunctionNotFound(_)),
        ) => Ok(None),
        Err(ProvisionedError::Resolve(e)) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// One round: resolve, assign, send.
pub(crate) async fn round(shared: &Context) -> Result<(), ProvisionedError> {
    let configs = resolved_configs(shared).await?;
    let mut demands: BTreeMap<RevisionKey, Demand> = BTreeMap::new();
    let mut versions: HashMap<RevisionKey, FunctionConfig> = HashMap::new();
    for (c, version) in configs {
        let Some(v) = version else { continue };
        let key = (v.spec.name.clone(), v.revision_id.clone());
        let d = demands.entry(key.clone()).or_insert(Demand {
            key: key.clone(),
            memory_mb: v.spec.memory_mb,
            count: 0,
        });
        d.count += c.requested;
        versions.insert(key, v);
    }
    let demands: Vec<Demand> = demands.into_values().collect();
    let workers = shared.registry.up_workers();
    let assigned = {
        let mut st = shared.provisioning.lock();
        let assigned = assign(&demands, &workers, &st.assignment);
        st.assignment = assigned.assignment.clone();
        st.unplaced = assigned.unplaced.clone();
        assigned
    };
    let sends = workers.iter().map(|w| {
        let targets: Vec<v1::ProvisionedTarget> = assigned
            .assignment
            .iter()
            .filter_map(|(key, per_worker)| {
                let count = per_worker.get(&w.worker_id).copied()?;
                let version = versions.get(key)?;
                Some(v1::ProvisionedTarget {
                    function: Some(version.into()),
                    count,
                    credentials: shared.sessions.credentials_for(version),
                })
            })
            .collect();
        send(shared, w, targets)
    });
    futures::future::join_all(sends).await;
    Ok(())
}

async fn send(shared: &Context, w: &UpWorker, targets: Vec<v1::ProvisionedTarget>) {
    let count = targets.len();
    let result = tokio::time::timeout(
        SEND_TIMEOUT,
        shared
            .workers
            .set_provisioned(&w.worker_id, &w.address, targets),
    )
    .await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(worker_id = %w.worker_id, targets = count, error = %e, "cannot send the provisioned set")
        }
        Err(_) => {
            tracing::warn!(worker_id = %w.worker_id, after = ?SEND_TIMEOUT, "the worker did not take its provisioned set in time")
        }
    }
}

/// Runs rounds every `shared.heartbeat_interval` and after every change until `shutdown`.
pub(crate) async fn run(shared: Arc<Context>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(shared.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            () = shared.provisioning.next_change() => {}
        }
        if let Err(e) = round(&shared).await {
            tracing::warn!(error = %e, "provisioned concurrency round failed");
        }
    }
}

/// A configuration with its status from the workers' heartbeats: allocated = provisioned
/// sandboxes of its version initialised on `Up` workers (at most the requested count), available
/// = of those idle; `READY` when allocated reaches the request, `FAILED` when a worker reports
/// that their init fails or they fit on no worker (the reconciler keeps trying), else
/// `IN_PROGRESS`.
pub(crate) fn status(
    shared: &Context,
    config: &ProvisionedConfig,
    version: Option<&FunctionConfig>,
) -> v1::ProvisionedConcurrencyConfig {
    let mut out = v1::ProvisionedConcurrencyConfig {
        function_name: config.function_name.clone(),
        qualifier: config.qualifier.clone(),
        requested: config.requested,
        last_modified_ms: config.last_modified_ms,
        ..Default::default()
    };
    let Some(v) = version else {
        out.status = "FAILED".to_string();
        out.status_reason = format!(
            "`{}` of function `{}` no longer names a published version",
            config.qualifier, config.function_name
        );
        return out;
    };
    out.function_version = v.version.clone();
    let key = (v.spec.name.clone(), v.revision_id.clone());
    let count = shared.registry.provisioned(&key.0, &key.1);
    out.allocated = count.allocated.min(config.requested);
    out.available = count.available.min(out.allocated);
    let unplaced = shared.provisioning.unplaced(&key);
    (out.status, out.status_reason) = if out.allocated >= config.requested {
        ("READY".to_string(), String::new())
    } else if let Some(failure) = count.failure {
        ("FAILED".to_string(), failure)
    } else if unplaced > 0 {
        (
            "FAILED".to_string(),
            format!(
                "{unplaced} sandboxes of {} MB fit on no Up worker: add workers or memory",
                v.spec.memory_mb
            ),
        )
    } else {
        ("IN_PROGRESS".to_string(), String::new())
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: &str, mb: u64) -> UpWorker {
        UpWorker {
            worker_id: id.to_string(),
            address: format!("{id}:1"),
            memory_total_mb: mb,
        }
    }

    fn d(function: &str, count: u32, memory_mb: u32) -> Demand {
        Demand {
            key: (function.to_string(), "r1".to_string()),
            memory_mb,
            count,
        }
    }

    fn on(a: &Assigned, function: &str) -> Vec<(String, u32)> {
        a.assignment
            .get(&(function.to_string(), "r1".to_string()))
            .map(|m| m.iter().map(|(w, n)| (w.clone(), *n)).collect())
            .unwrap_or_default()
    }

    fn pairs(p: &[(&str, u32)]) -> Vec<(String, u32)> {
        p.iter().map(|(w, n)| (w.to_string(), *n)).collect()
    }

    #[test]
    fn spreads_evenly_over_workers() {
        let workers = [w("a", 4096), w("b", 4096)];
        let a = assign(&[d("f", 4, 128)], &workers, &Assignment::new());
        assert_eq!(on(&a, "f"), pairs(&[("a", 2), ("b", 2)]));
        let a = assign(
            &[d("f", 3, 128), d("g", 1, 128)],
            &workers,
            &Assignment::new(),
        );
        assert_eq!(on(&a, "f"), pairs(&[("a", 2), ("b", 1)]));
        // g goes where there is more room left.
        assert_eq!(on(&a, "g"), pairs(&[("b", 1)]));
        assert!(a.unplaced.is_empty());
    }

    #[test]
    fn keeps_existing_assignments_stable() {
        let workers = [w("a", 4096), w("b", 4096), w("c", 4096)];
        let first = assign(&[d("f", 2, 128)], &workers[..2], &Assignment::new());
        assert_eq!(on(&first, "f"), pairs(&[("a", 1), ("b", 1)]));
        // A third worker joins: nothing moves; raising the count fills it first.
        let again = assign(&[d("f", 2, 128)], &workers, &first.assignment);
        assert_eq!(on(&again, "f"), pairs(&[("a", 1), ("b", 1)]));
        let raised = assign(&[d("f", 4, 128)], &workers, &again.assignment);
        assert_eq!(on(&raised, "f"), pairs(&[("a", 2), ("b", 1), ("c", 1)]));
        // Lowering takes from the worker with the most.
        let lowered = assign(&[d("f", 3, 128)], &workers, &raised.assignment);
        assert_eq!(on(&lowered, "f"), pairs(&[("a", 1), ("b", 1), ("c", 1)]));
    }

    #[test]
    fn a_down_workers_share_moves_to_the_others() {
        let workers = [w("a", 4096), w("b", 4096)];
        let first = assign(&[d("f", 4, 128)], &workers, &Assignment::new());
        let after = assign(&[d("f", 4, 128)], &workers[..1], &first.assignment);
        assert_eq!(on(&after, "f"), pairs(&[("a", 4)]));
        // b comes back: a keeps its four.
        let back = assign(&[d("f", 4, 128)], &workers, &after.assignment);
        assert_eq!(on(&back, "f"), pairs(&[("a", 4)]));
    }

    #[test]
    fn respects_memory_and_reports_what_fits_nowhere() {
        let workers = [w("a", 1000), w("b", 300)];
        let a = assign(&[d("f", 4, 256)], &workers, &Assignment::new());
        assert_eq!(on(&a, "f"), pairs(&[("a", 3), ("b", 1)]));
        assert!(a.unplaced.is_empty());
        let a = assign(&[d("f", 6, 256)], &workers, &Assignment::new());
        assert_eq!(on(&a, "f").iter().map(|(_, n)| n).sum::<u32>(), 4);
        assert_eq!(a.unplaced.values().copied().collect::<Vec<_>>(), [2]);
        assert!(assign(&[d("f", 1, 128)], &[], &Assignment::new())
            .unplaced
            .contains_key(&("f".to_string(), "r1".to_string())));
    }

    #[test]
    fn dropped_demands_leave_the_assignment() {
        let workers = [w("a", 4096)];
        let first = assign(
            &[d("f", 2, 128), d("g", 1, 128)],
            &workers,
            &Assignment::new(),
        );
        let after = assign(&[d("g", 1, 128)], &workers, &first.assignment);
        assert!(on(&after, "f").is_empty());
        assert_eq!(on(&after, "g"), pairs(&[("a", 1)]));
    }

    /// A store read that fails is not "the configuration is gone": the round stops with the error
    /// and nothing is sent, so the workers keep their provisioned sandboxes; a deleted function,
    /// version or alias does release them.
    #[test]
    fn a_failed_store_read_keeps_the_sandboxes_a_deleted_target_releases_them() {
        use crate::resolve::VersionError;
        use crate::store::StorageError;
        let corrupt = || {
            StoreError::Storage(StorageError::Corrupt {
                what: "version".into(),
                path: "/data".into(),
                detail: "checksum mismatch".into(),
            })
        };
        assert!(still_resolves(Err(ProvisionedError::Store(corrupt()))).is_err());
        assert!(still_resolves(Err(ResolveError::Store(corrupt()).into())).is_err());
        assert!(
            still_resolves(Err(ProvisionedError::Internal("store task failed".into()))).is_err()
        );
        for gone in [
            ResolveError::FunctionNotFound("f".into()),
            ResolveError::Version(VersionError::VersionNotFound {
                name: "f".into(),
                version: "3".into(),
            }),
            ResolveError::Version(VersionError::AliasNotFound {
                name: "f".into(),
                alias: "live".into(),
            }),
        ] {
            assert!(matches!(still_resolves(Err(gone.into())), Ok(None)));
        }
        let latest = ProvisionedError::NotProvisionable("$LATEST".into());
        assert!(matches!(still_resolves(Err(latest)), Ok(None)));
    }
}
