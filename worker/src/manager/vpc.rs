//! A sandbox's network: attaching it to its VPC (veth into the VPC's bridge, security groups)
//! or to the default egress, and releasing that when the sandbox goes.
use std::sync::Arc;
use std::time::Instant;

use super::{Manager, ManagerError};

impl Manager {
    /// Sets the VPC agent; `false` when one was set already (the first stays: a sandbox must be
    /// released by the agent that plumbed it).
    #[must_use]
    pub fn set_network(&self, agent: Arc<crate::network::NetworkAgent>) -> bool {
        self.inner.network.set(agent).is_ok()
    }

    pub fn network(&self) -> Option<&Arc<crate::network::NetworkAgent>> {
        self.inner.network.get()
    }

    /// Plugs prepared sandbox `id` (its processes `pids`) into its VPC before anything of the
    /// function runs in it. On failure the caller releases what was plumbed (`release_vpc`) with
    /// the sandbox (see `start.rs`).
    pub(super) async fn attach_vpc(
        &self,
        id: &str,
        pids: &[i32],
        vpc: &lamina_proto::network::VpcConfig,
    ) -> Result<(), ManagerError> {
        let Some(agent) = self.network() else {
            return Err(crate::network::NetworkError::NoController.into());
        };
        let started = Instant::now();
        agent.attach(id, pids, vpc).await?;
        tracing::info!(
            sandbox = id,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "vpc interface attached"
        );
        Ok(())
    }

    /// A sandbox without a VPC: NAT'd egress when the worker is configured so, else nothing. On
    /// failure the caller releases it as for a VPC.
    pub(super) async fn attach_default_egress(
        &self,
        id: &str,
        pids: &[i32],
    ) -> Result<(), ManagerError> {
        let Some(agent) = self.network() else {
            return Ok(());
        };
        agent.attach_default(id, pids).await?;
        Ok(())
    }

    pub(super) async fn release_vpc(&self, sandbox_id: &str) {
        if let Some(agent) = self.network() {
            agent.release(sandbox_id).await;
        }
    }
}
