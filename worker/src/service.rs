//! The `Worker` gRPC service (the controller's `Worker.Invoke` -> the manager), registration with the
//! controller (`Cluster.RegisterWorker`, retried with backoff) and the heartbeat loop.
use std::sync::Arc;
use std::time::Duration;

use lamina_proto::auth::{Authenticated, Credentials, Signed, SignedChannel, StaticKey};
use lamina_proto::tls::TlsConnect;
use lamina_proto::v1::cluster_client::ClusterClient;
use lamina_proto::v1::worker_server::{Worker, WorkerServer};
use lamina_proto::v1::{
    HeartbeatRequest, ProvisionFailure, RegisterWorkerRequest, SandboxState, SandboxStatus,
    SetProvisionedRequest, SetProvisionedResponse, WorkerInvokeRequest, WorkerInvokeResponse,
    WorkerInvokeStreamMessage,
};
use lamina_proto::MAX_GRPC_MESSAGE_BYTES;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status};

use crate::code_cache::CodeCacheError;
use crate::image_cache::ImageCacheError;
use crate::manager::{Manager, ManagerError, PoolStatus, SandboxPhase, UidError};

/// Heartbeat interval used when the controller answers 0.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// After a sandbox finished starting, the early heartbeat waits this long for others.
const EARLY_HEARTBEAT_GATHER: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid controller url {url:?}: {source}: use https://HOST:PORT")]
    ControllerUrl {
        url: String,
        source: tonic::transport::Error,
    },
    #[error("worker grpc server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

impl From<ManagerError> for Status {
    fn from(e: ManagerError) -> Status {
        let msg = e.to_string();
        match e {
            ManagerError::InvalidFunction(_) | ManagerError::InvalidRequest(_) => {
                Status::invalid_argument(msg)
            }
            ManagerError::InvalidEntrypoint(_) => Status::failed_precondition(msg),
            ManagerError::NoCapacity { .. } | ManagerError::Uid(UidError::Exhausted { .. }) => {
                Status::resource_exhausted(msg)
            }
            ManagerError::ShuttingDown | ManagerError::Code(CodeCacheError::Fetch { .. }) => {
                Status::unavailable(msg)
            }
            ManagerError::Image(ImageCacheError::Fetch { .. }) => Status::unavailable(msg),
            ManagerError::Code(CodeCacheError::Archive(_)) => Status::failed_precondition(msg),
            ManagerError::CallerDeadline { .. } => Status::deadline_exceeded(msg),
            ManagerError::Image(
                ImageCacheError::Archive(_)
                | ImageCacheError::Entry { .. }
                | ImageCacheError::Layer { .. }
                | ImageCacheError::Unpacked { .. },
            ) => Status::failed_precondition(msg),
            ManagerError::Code(_)
            | ManagerError::Image(_)
            | ManagerError::Network(_)
            | ManagerError::Sandbox(_)
            | ManagerError::RuntimeApi { .. }
            | ManagerError::Task(_)
            | ManagerError::Uid(_) => Status::internal(msg),
        }
    }
}

/// The `lamina.v1.Worker` service.
pub struct WorkerService {
    manager: Manager,
}

/// Chunks of a streamed response buffered towards the controller before the runtime waits.
const STREAM_CHUNKS: usize = 16;

impl WorkerService {
    /// Runs a streamed invocation, sending its chunks and then its end to `out`.
    async fn stream_invocation(
        manager: Manager,
        req: WorkerInvokeRequest,
        out: tokio::sync::mpsc::Sender<Result<WorkerInvokeStreamMessage, Status>>,
    ) {
        use lamina_proto::v1::worker_invoke_stream_message::Event;
        let request_id = req.request_id.clone();
        let (chunk_tx, mut chunk_rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(STREAM_CHUNKS);
        let forward = async {
            while let Some(chunk) = chunk_rx.recv().await {
                let msg = WorkerInvokeStreamMessage {
                    event: Some(Event::Chunk(chunk.to_vec())),
                };
                // A controller that went away: the invocation still runs to its end.
                let _ = out.send(Ok(msg)).await;
            }
        };
        let (result, ()) = tokio::join!(manager.invoke_streaming(req, chunk_tx), forward);
        let last = match result {
            Ok(done) => Ok(WorkerInvokeStreamMessage {
                event: Some(Event::Done(done)),
            }),
            Err(e) => {
                tracing::warn!(request_id, error = %e, "streamed invocation failed");
                Err(e.into())
            }
        };
        let _ = out.send(last).await;
    }
}

#[tonic::async_trait]
impl Worker for WorkerService {
    type InvokeStreamStream =
        tokio_stream::wrappers::ReceiverStream<Result<WorkerInvokeStreamMessage, Status>>;

    async fn invoke_stream(
        &self,
        request: Request<WorkerInvokeRequest>,
    ) -> Result<Response<Self::InvokeStreamStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_CHUNKS);
        let manager = self.manager.clone();
        tokio::spawn(Self::stream_invocation(manager, request.into_inner(), tx));
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn invoke(
        &self,
        request: Request<WorkerInvokeRequest>,
    ) -> Result<Response<WorkerInvokeResponse>, Status> {
        let req = request.into_inner();
        let request_id = req.request_id.clone();
        match self.manager.invoke(req).await {
            Ok(resp) => Ok(Response::new(resp)),
            Err(e) => {
                tracing::warn!(request_id, error = %e, "invocation failed");
                Err(e.into())
            }
        }
    }
    async fn set_provisioned(
        &self,
        request: Request<SetProvisionedRequest>,
    ) -> Result<Response<SetProvisionedResponse>, Status> {
        match self.manager.set_provisioned(request.into_inner().targets) {
            Ok(()) => Ok(Response::new(SetProvisionedResponse {})),
            Err(e) => {
                tracing::warn!(error = %e, "set provisioned refused");
                Err(e.into())
            }
        }
    }
    async fn retire_sandboxes(
        &self,
        request: Request<lamina_proto::v1::RetireSandboxesRequest>,
    ) -> Result<Response<lamina_proto::v1::RetireSandboxesResponse>, Status> {
        let r = request.into_inner();
        if r.function_name.is_empty() {
            return Err(Status::invalid_argument(
                "function_name is required: name the function whose stale sandboxes go",
            ));
        }
        let keep = r.keep_revision_ids.into_iter().collect();
        let retired = self.manager.retire_revisions(&r.function_name, &keep);
        Ok(Response::new(lamina_proto::v1::RetireSandboxesResponse {
            retired: u32::try_from(retired).unwrap_or(u32::MAX),
        }))
    }
    async fn set_network(
        &self,
        request: Request<lamina_proto::v1::NetworkState>,
    ) -> Result<Response<lamina_proto::v1::SetNetworkResponse>, Status> {
        let Some(agent) = self.manager.network() else {
            return Err(Status::unavailable("this worker has no VPC agent"));
        };
        match agent.apply(request.into_inner()).await {
            Ok(()) => Ok(Response::new(lamina_proto::v1::SetNetworkResponse {})),
            Err(e) => {
                tracing::warn!(error = %e, "cannot apply the network state");
                Err(Status::internal(e.to_string()))
            }
        }
    }
}

/// The tonic service with Lamina's message size limits.
pub fn worker_server(manager: Manager) -> WorkerServer<WorkerService> {
    WorkerServer::new(WorkerService { manager })
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES)
}

/// Serves the Worker service on `listener` until `shutdown` is cancelled. Only requests signed
/// with the cluster credential `cluster` (the controller's) reach the manager.
pub async fn serve(
    listener: tokio::net::TcpListener,
    manager: Manager,
    cluster: Credentials,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    serve_with_tls(listener, manager, cluster, None, shutdown).await
}

/// Like [`serve`], over TLS with `tls` when given (the worker's configuration requires a client
/// certificate signed by the cluster CA: only the controller calls this port).
pub async fn serve_with_tls(
    listener: tokio::net::TcpListener,
    manager: Manager,
    cluster: Credentials,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> Result<(), ServiceError> {
    let keys = Arc::new(StaticKey(cluster));
    let router =
        lamina_proto::net::server_builder(lamina_proto::net::WORKER_MAX_CONCURRENT_STREAMS)
            .add_service(Authenticated::new(worker_server(manager), keys));
    match tls {
        None => {
            let incoming = lamina_proto::net::nodelay_incoming(listener);
            router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await?
        }
        Some(config) => {
            let incoming = lamina_proto::tls::tls_incoming(
                listener,
                config,
                lamina_proto::tls::MAX_HANDSHAKES,
            );
            router
                .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
                .await?
        }
    }
    Ok(())
}

/// A lazily connecting client of the controller's `Cluster` service, signing with the cluster
/// credential.
pub fn cluster_client(
    url: &str,
    cluster: Credentials,
) -> Result<ClusterClient<SignedChannel>, ServiceError> {
    cluster_client_with_tls(url, cluster, None)
}

/// Like [`cluster_client`], over TLS with `tls` when given (the controller's certificate verified
/// against the cluster CA, this worker's presented: the `Cluster` service requires it).
pub fn cluster_client_with_tls(
    url: &str,
    cluster: Credentials,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<ClusterClient<SignedChannel>, ServiceError> {
    let endpoint = Endpoint::from_shared(lamina_proto::tls::tonic_uri(url)).map_err(|source| {
        ServiceError::ControllerUrl {
            url: url.to_string(),
            source,
        }
    })?;
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true);
    let channel = match tls {
        Some(config) => endpoint.connect_with_connector_lazy(TlsConnect::new(config)),
        None => endpoint.connect_lazy(),
    };
    Ok(ClusterClient::new(Signed::new(channel, Some(cluster)))
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES))
}

/// Who this worker is, as told to the controller.
#[derive(Debug, Clone)]
pub struct Registration {
    pub worker_id: String,
    /// host:port the controller dials for `Worker.Invoke`.
    pub address: String,
    pub memory_total_mb: u64,
}

/// Registers until the controller accepts (backing off, logging why) and returns the heartbeat
/// interval; `None` if `shutdown` was cancelled first.
pub async fn register(
    client: &ClusterClient<SignedChannel>,
    reg: &Registration,
    shutdown: &CancellationToken,
) -> Option<Duration> {
    let mut backoff = BACKOFF_START;
    loop {
        let req = RegisterWorkerRequest {
            worker_id: reg.worker_id.clone(),
            address: reg.address.clone(),
            memory_total_mb: reg.memory_total_mb,
        };
        let attempt = async { client.clone().register_worker(req).await };
        let result = tokio::select! {
            () = shutdown.cancelled() => return None,
            r = attempt => r,
        };
        match result {
            Ok(resp) => {
                let ms = resp.into_inner().heartbeat_interval_ms;
                let interval = if ms == 0 {
                    DEFAULT_HEARTBEAT
                } else {
                    Duration::from_millis(u64::from(ms)).max(MIN_HEARTBEAT)
                };
                tracing::info!(worker_id = %reg.worker_id, address = %reg.address, ?interval, "registered with the controller");
                return Some(interval);
            }
            Err(status) => {
                tracing::warn!(
                    error = %status.message(),
                    code = ?status.code(),
                    retry_in = ?backoff,
                    "cannot register with the controller, retrying"
                );
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// The heartbeat the manager's status gives.
pub fn heartbeat_request(worker_id: &str, status: &PoolStatus) -> HeartbeatRequest {
    HeartbeatRequest {
        worker_id: worker_id.to_string(),
        memory_free_mb: status.memory_free_mb,
        sandboxes: status
            .sandboxes
            .iter()
            .map(|s| SandboxStatus {
                sandbox_id: s.sandbox_id.clone(),
                function_name: s.function_name.clone(),
                revision_id: s.revision_id.clone(),
                state: match s.phase {
                    SandboxPhase::Idle => SandboxState::SandboxIdle,
                    SandboxPhase::Busy => SandboxState::SandboxBusy,
                    SandboxPhase::Starting => SandboxState::SandboxStarting,
                } as i32,
                memory_size_mb: s.memory_mb,
                provisioned: s.provisioned,
            })
            .collect(),
        invocations_total: status.invocations_total,
        provision_failures: status
            .provision_failures
            .iter()
            .map(|f| ProvisionFailure {
                function_name: f.function_name.clone(),
                revision_id: f.revision_id.clone(),
                error: f.error.clone(),
            })
            .collect(),
    }
}

/// An unhealthy worker (`unhealthy`: why, e.g. out of file descriptors) reports no free memory:
/// the controller's placement, which starts a sandbox only where the memory fits, sends it no cold
/// start until it is healthy again; its warm sandboxes keep serving.
pub fn report_health(req: &mut HeartbeatRequest, unhealthy: Option<&str>) {
    if let Some(reason) = unhealthy {
        tracing::warn!(
            reason,
            "unhealthy: reporting no free memory, no cold start is placed here"
        );
        req.memory_free_mb = 0;
    }
}

/// Heartbeats every `interval` until `shutdown`; registers again when the controller does not know
/// this worker (it restarted).
pub async fn heartbeat_loop(
    client: ClusterClient<SignedChannel>,
    manager: Manager,
    reg: Registration,
    mut interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
            // A sandbox finished starting: report early (the controller bounds the cold starts
            // in flight per worker by this report), gathering what finishes meanwhile.
            () = manager.sandbox_started() => {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(EARLY_HEARTBEAT_GATHER) => {}
                }
            }
        }
        let mut req = heartbeat_request(&reg.worker_id, &manager.status());
        report_health(
            &mut req,
            crate::health::FDS.check(crate::health::fd_usage).as_deref(),
        );
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            r = async { client.clone().heartbeat(req).await } => r,
        };
        match result {
            Ok(resp) if resp.get_ref().known => {
                // Sandboxes of revisions deleted while a RetireSandboxes call missed this worker.
                for r in resp.into_inner().retire {
                    let keep = r.keep_revision_ids.into_iter().collect();
                    manager.retire_revisions(&r.function_name, &keep);
                }
            }
            Ok(_) => {
                tracing::warn!(
                    "the controller does not know this worker (it restarted?): registering again"
                );
                match register(&client, &reg, &shutdown).await {
                    Some(i) => interval = i,
                    None => return,
                }
            }
            Err(status) => {
                tracing::warn!(error = %status.message(), code = ?status.code(), "heartbeat failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manager::SandboxInfo;

    #[test]
    fn heartbeat_carries_every_sandbox_with_its_state() {
        let info = |id: &str, phase| SandboxInfo {
            sandbox_id: id.to_string(),
            function_name: "f".to_string(),
            revision_id: "r".to_string(),
            phase,
            memory_mb: 128,
            provisioned: id == "a",
        };
        let status = PoolStatus {
            memory_total_mb: 1000,
            memory_free_mb: 616,
            sandboxes: vec![
                info("a", SandboxPhase::Idle),
                info("b", SandboxPhase::Busy),
                info("c", SandboxPhase::Starting),
            ],
            invocations_total: 7,
            provision_failures: vec![crate::manager::ProvisionFailure {
                function_name: "g".to_string(),
                revision_id: "r2".to_string(),
                error: "init failed: Runtime.ImportModuleError: boom".to_string(),
            }],
        };
        let hb = heartbeat_request("w-1", &status);
        assert_eq!(hb.worker_id, "w-1");
        assert_eq!(hb.memory_free_mb, 616);
        assert_eq!(hb.invocations_total, 7);
        let states: Vec<i32> = hb.sandboxes.iter().map(|s| s.state).collect();
        assert_eq!(
            states,
            vec![
                SandboxState::SandboxIdle as i32,
                SandboxState::SandboxBusy as i32,
                SandboxState::SandboxStarting as i32
            ]
        );
        assert_eq!(hb.sandboxes[1].sandbox_id, "b");
        assert_eq!(hb.sandboxes[1].memory_size_mb, 128);
        let provisioned: Vec<bool> = hb.sandboxes.iter().map(|s| s.provisioned).collect();
        assert_eq!(provisioned, [true, false, false]);
        assert_eq!(hb.provision_failures.len(), 1);
        assert_eq!(
            (
                hb.provision_failures[0].function_name.as_str(),
                hb.provision_failures[0].revision_id.as_str()
            ),
            ("g", "r2")
        );
        assert!(hb.provision_failures[0].error.contains("ImportModuleError"));
    }

    #[test]
    fn out_of_fds_reports_no_free_memory_until_recovered() {
        let health = crate::health::FdHealth::new();
        let status = PoolStatus {
            memory_total_mb: 1000,
            memory_free_mb: 616,
            sandboxes: Vec::new(),
            invocations_total: 0,
            provision_failures: Vec::new(),
        };
        let usage = |open| {
            Ok(crate::health::FdUsage {
                open,
                limit: 1024,
                host_open: 1,
                host_max: 1 << 20,
            })
        };
        let beat = |open| {
            let mut hb = heartbeat_request("w", &status);
            report_health(&mut hb, health.check(|| usage(open)).as_deref());
            hb.memory_free_mb
        };
        assert_eq!(beat(1024), 616);
        // An accept failing with EMFILE: no cold start is placed here.
        assert!(health.note_io_error(&std::io::Error::from_raw_os_error(libc::EMFILE)));
        assert_eq!(beat(1024), 0);
        assert_eq!(beat(900), 0);
        // Descriptors are back: the memory is offered again.
        assert_eq!(beat(100), 616);
    }

    #[test]
    fn errors_map_to_grpc_codes() {
        let s: Status = ManagerError::ShuttingDown.into();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        let s: Status = ManagerError::NoCapacity {
            worker: "w".into(),
            needed: 256,
            free: 100,
            total: 1000,
        }
        .into();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert!(
            s.message().contains("100 MB of 1000 MB free"),
            "{}",
            s.message()
        );
        let s: Status = ManagerError::InvalidRequest("x".into()).into();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn controller_url_is_checked() {
        let creds = || Credentials {
            access_key_id: lamina_proto::auth::CLUSTER_KEY_ID.into(),
            secret_access_key: "t".into(),
        };
        let err = cluster_client("not a url\n", creds())
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid controller url"), "{err}");
        assert!(cluster_client("http://127.0.0.1:9670", creds()).is_ok());
    }
}
