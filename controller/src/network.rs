//! VPC networking, controller side: builds each worker's [`v1::NetworkState`] (VPCs, subnets,
//! security groups with their members cluster-wide, VXLAN peers, its attachments and leases) and
//! pushes it with `Worker.SetNetwork` every heartbeat interval and at once after a change
//! (complete and idempotent, like the provisioned-concurrency reconciler).
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use lamina_proto::v1;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
pub use crate::netns_allowlist::NetnsAllowlist;
pub use crate::reconcile::NetworkSync;
use crate::registry::UpWorker;
use crate::store::{NetworkError, Store};

/// How long a round waits for one worker to take its state.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a worker's network state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NetworkSyncError {
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The host part of a worker's `host:port` address, when it is an IPv4 address other than
/// loopback (a worker on loopback has no peers to tunnel to).
pub fn tunnel_address(address: &str) -> Option<Ipv4Addr> {
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.parse::<Ipv4Addr>()
        .ok()
        .filter(|a| !a.is_loopback() && !a.is_unspecified())
}

/// Everything `worker_id` needs; `peers` are the other workers' tunnel addresses.
pub fn state_for(
    store: &dyn Store,
    worker_id: &str,
    peers: Vec<String>,
) -> Result<v1::NetworkState, NetworkError> {
    let leases = store.list_leases()?;
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in &leases {
        for g in &l.security_group_ids {
            members
                .entry(g.clone())
                .or_default()
                .push(l.address.to_string());
        }
    }
    Ok(v1::NetworkState {
        vpcs: store.list_vpcs()?.iter().map(Into::into).collect(),
        subnets: store.list_subnets(None)?.iter().map(Into::into).collect(),
        groups: store.list_groups(None)?.iter().map(Into::into).collect(),
        members: members
            .into_iter()
            .map(|(group_id, addresses)| v1::GroupMembers {
                group_id,
                addresses,
            })
            .collect(),
        peers,
        attachments: store
            .list_attachments()?
            .iter()
            .filter(|a| a.worker_id == worker_id)
            .map(Into::into)
            .collect(),
        leases: leases
            .iter()
            .filter(|l| l.worker_id == worker_id)
            .map(|l| v1::AddressLease {
                subnet_id: l.subnet_id.clone(),
                address: l.address.to_string(),
                security_group_ids: l.security_group_ids.clone(),
                owner: l.owner.clone(),
            })
            .collect(),
    })
}

/// The tunnel addresses of the `Up` workers other than `worker_id`.
pub fn peers_of(workers: &[UpWorker], worker_id: &str) -> Vec<String> {
    workers
        .iter()
        .filter(|w| w.worker_id != worker_id)
        .filter_map(|w| tunnel_address(&w.address))
        .map(|a| a.to_string())
        .collect()
}

/// The state of one worker, read off the async threads.
pub(crate) async fn worker_state(
    shared: &Context,
    worker_id: &str,
) -> Result<v1::NetworkState, NetworkSyncError> {
    let peers = peers_of(&shared.registry.up_workers(), worker_id);
    let store = Arc::clone(&shared.store);
    let id = worker_id.to_string();
    let mut state = tokio::task::spawn_blocking(move || state_for(store.as_ref(), &id, peers))
        .await
        .map_err(|e| NetworkSyncError::Internal(format!("network task failed: {e}")))??;
    // An attachment made before the operator's allowlist (or before a namespace left it) is not
    // plumbed: the worker unplugs it.
    state.attachments.retain(|a| {
        let allowed = shared.attachable_netns.allows(&a.netns);
        if !allowed {
            tracing::debug!(netns = %a.netns, attachment = %a.id, "not plumbing an attachment of a namespace --attachable-netns does not allow");
        }
        allowed
    });
    Ok(state)
}

/// Sends every `Up` worker its state now (each bounded by `SEND_TIMEOUT`).
pub(crate) async fn round(shared: &Context) {
    let workers = shared.registry.up_workers();
    let sends = workers.iter().map(|w| async move {
        let state = match worker_state(shared, &w.worker_id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot build the network state");
                return;
            }
        };
        let sent = tokio::time::timeout(
            SEND_TIMEOUT,
            shared.workers.set_network(&w.worker_id, &w.address, state),
        )
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(worker_id = %w.worker_id, error = %e, "cannot send the network state")
            }
            Err(_) => {
                tracing::warn!(worker_id = %w.worker_id, "the worker did not take its network state in time")
            }
        }
    });
    futures::future::join_all(sends).await;
}

/// Runs rounds every `shared.heartbeat_interval` and after every change until `shutdown`.
pub(crate) async fn run(shared: Arc<Context>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(shared.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            () = shared.network.changed.notified() => {}
        }
        round(&shared).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_addresses_skip_loopback() {
        assert_eq!(
            tunnel_address("10.214.3.11:9671"),
            Some(Ipv4Addr::new(10, 214, 3, 11))
        );
        assert_eq!(tunnel_address("127.0.0.1:9671"), None);
        assert_eq!(tunnel_address("0.0.0.0:1"), None);
        assert_eq!(tunnel_address("host:1"), None);
        let w = |id: &str, a: &str| UpWorker {
            worker_id: id.into(),
            address: a.into(),
            memory_total_mb: 1,
        };
        let ws = [
            w("a", "10.0.0.1:1"),
            w("b", "10.0.0.2:1"),
            w("c", "127.0.0.1:2"),
        ];
        assert_eq!(peers_of(&ws, "a"), ["10.0.0.2"]);
    }
}
