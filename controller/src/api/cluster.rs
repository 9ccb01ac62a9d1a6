//! The `Cluster` service: what workers call (registration, heartbeats, code download).
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use lamina_proto::v1;
use tonic::{Request, Response, Status};

use super::{ApiError, Shared};
use crate::registry::{Heartbeat, ProvisionFailureReport, SandboxReport, SandboxState};

/// Size of the chunks `FetchCode` streams.
pub const CODE_CHUNK_BYTES: usize = 1024 * 1024;

pub struct ClusterService {
    pub(crate) shared: Arc<Shared>,
}

fn sandbox_state(state: i32) -> SandboxState {
    match v1::SandboxState::try_from(state) {
        Ok(v1::SandboxState::SandboxIdle) => SandboxState::Idle,
        Ok(v1::SandboxState::SandboxStarting) => SandboxState::Starting,
        // Unknown states are counted as busy: never placed on.
        Ok(v1::SandboxState::SandboxBusy) | Err(_) => SandboxState::Busy,
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

type CodeStream = Pin<Box<dyn Stream<Item = Result<v1::CodeChunk, Status>> + Send>>;

#[tonic::async_trait]
impl v1::cluster_server::Cluster for ClusterService {
    async fn register_worker(
        &self,
        request: Request<v1::RegisterWorkerRequest>,
    ) -> Result<Response<v1::RegisterWorkerResponse>, Status> {
        let r = request.into_inner();
        if r.worker_id.is_empty() || r.address.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "worker_id and address are required, got worker_id {:?} and address {:?}",
                r.worker_id, r.address
            ))
            .into());
        }
        self.shared
            .registry
            .register(&r.worker_id, &r.address, r.memory_total_mb);
        Ok(Response::new(v1::RegisterWorkerResponse {
            heartbeat_interval_ms: self.shared.heartbeat_interval.as_millis() as u32,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let r = request.into_inner();
        let reported: Vec<(String, String)> = r
            .sandboxes
            .iter()
            .map(|s| (s.function_name.clone(), s.revision_id.clone()))
            .collect();
        let hb = Heartbeat {
            memory_free_mb: r.memory_free_mb,
            sandboxes: r
                .sandboxes
                .into_iter()
                .map(|s| SandboxReport {
                    state: sandbox_state(s.state),
                    function_name: s.function_name,
                    revision_id: s.revision_id,
                    memory_mb: s.memory_size_mb,
                    provisioned: s.provisioned,
                })
                .collect(),
            invocations_total: r.invocations_total,
            provision_failures: r
                .provision_failures
                .into_iter()
                .map(|f| ProvisionFailureReport {
                    function_name: f.function_name,
                    revision_id: f.revision_id,
                    error: f.error,
                })
                .collect(),
        };
        let known = self.shared.registry.heartbeat(&r.worker_id, hb);
        if !known {
            tracing::info!(worker_id = %r.worker_id, "heartbeat from an unknown worker: asking it to register");
        }
        // Sandboxes of revisions that ended while a RetireSandboxes call missed this worker.
        let retire = if known && !reported.is_empty() {
            match self
                .shared
                .store(move |s| crate::retire::stale_in_heartbeat(s, &reported))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(worker_id = %r.worker_id, error = %e, "cannot check the reported sandboxes' revisions");
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        Ok(Response::new(v1::HeartbeatResponse { known, retire }))
    }

    async fn allocate_addresses(
        &self,
        request: Request<v1::AllocateAddressesRequest>,
    ) -> Result<Response<v1::AllocateAddressesResponse>, Status> {
        let r = super::network::allocate(&self.shared, request.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn release_addresses(
        &self,
        request: Request<v1::ReleaseAddressesRequest>,
    ) -> Result<Response<v1::ReleaseAddressesResponse>, Status> {
        super::network::release(&self.shared, request.into_inner()).await?;
        Ok(Response::new(v1::ReleaseAddressesResponse {}))
    }

    type FetchCodeStream = CodeStream;

    async fn fetch_code(
        &self,
        request: Request<v1::FetchCodeRequest>,
    ) -> Result<Response<CodeStream>, Status> {
        let sha = request.into_inner().sha256.to_ascii_lowercase();
        if !is_sha256(&sha) {
            return Err(
                ApiError::BadRequest(format!("sha256 must be 64 hex digits, got {sha:?}")).into(),
            );
        }
        let key = sha.clone();
        let blob = self
            .shared
            .store(move |s| s.get_blob(&key))
            .await?
            .ok_or(ApiError::BlobNotFound(sha))?;
        let blob = Arc::new(blob);
        let chunks = blob.len().div_ceil(CODE_CHUNK_BYTES);
        let stream = futures::stream::iter((0..chunks).map(move |i| {
            let end = ((i + 1) * CODE_CHUNK_BYTES).min(blob.len());
            v1::CodeChunk {
                data: blob[i * CODE_CHUNK_BYTES..end].to_vec(),
            }
        }))
        .map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }
}
