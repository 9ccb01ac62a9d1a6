//! A sandbox's network: attaching it to its VPC (veth into the VPC's bridge, security groups)
//! or to the default egress, and releasing that when the sandbox goes.
use std::sync::Arc;
use std::time::Instant;

use super::{Manager, ManagerError};
use crate::sandbox::PreparedSandbox;

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

    /// Plugs a prepared sandbox into its VPC before anything of the function runs in it.
    pub(super) async fn attach_vpc(
        &self,
        prepared: PreparedSandbox,
        vpc: &lamina_proto::network::VpcConfig,
    ) -> Result<PreparedSandbox, ManagerError> {
        let Some(agent) = self.network() else {
            prepared.destroy().await;
            return Err(crate::network::NetworkError::NoController.into());
        };
        let started = Instant::now();
        match agent.attach(prepared.id(), &prepared.pids(), vpc).await {
            Ok(()) => {
                tracing::info!(
                    sandbox = prepared.id(),
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    "vpc interface attached"
                );
                Ok(prepared)
            }
            Err(e) => {
                let id = prepared.id().to_string();
                prepared.destroy().await;
                agent.release(&id).await;
                Err(e.into())
            }
        }
    }

    /// A sandbox without a VPC: NAT'd egress when the worker is configured so, else nothing.
    pub(super) async fn attach_default_egress(
        &self,
        prepared: PreparedSandbox,
    ) -> Result<PreparedSandbox, ManagerError> {
        let Some(agent) = self.network() else {
            return Ok(prepared);
        };
        match agent.attach_default(prepared.id(), &prepared.pids()).await {
            Ok(()) => Ok(prepared),
            Err(e) => {
                let id = prepared.id().to_string();
                prepared.destroy().await;
                agent.release(&id).await;
                Err(e.into())
            }
        }
    }

    pub(super) async fn release_vpc(&self, sandbox_id: &str) {
        if let Some(agent) = self.network() {
            agent.release(sandbox_id).await;
        }
    }
}
