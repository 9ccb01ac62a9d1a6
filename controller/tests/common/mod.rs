//! Helpers of the gRPC-level tests: start the real controller on 127.0.0.1:0, build tonic clients.
#![allow(dead_code)]
use std::io::{Cursor, Write};
use std::net::SocketAddr;
use std::time::Duration;

use lamina_controller::{Controller, ControllerConfig};
use lamina_proto::v1::{
    self, cluster_client::ClusterClient, concurrency_client::ConcurrencyClient,
    create_function_request, events_client::EventsClient, functions_client::FunctionsClient,
    versions_client::VersionsClient,
};
use lamina_proto::MAX_GRPC_MESSAGE_BYTES;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;

pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub server: tokio::task::JoinHandle<Result<(), lamina_controller::ControllerError>>,
    _dir: tempfile::TempDir,
}

pub async fn start() -> Running {
    start_with(|_| {}).await
}

/// [`start`] with the test's changes to the configuration.
pub async fn start_with(change: impl FnOnce(&mut ControllerConfig)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ControllerConfig::new(dir.path().join("data"));
    config.worker_timeout = Duration::from_millis(1500);
    config.heartbeat_interval = Duration::from_millis(200);
    // These tests drive the services themselves with unsigned clients; authentication is tested
    // end to end (tests/tests/auth_*.rs) and in the auth modules' unit tests.
    config.auth = false;
    change(&mut config);
    let controller = Controller::open(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(controller.serve(listener, shutdown.clone()));
    Running {
        addr,
        shutdown,
        server,
        _dir: dir,
    }
}

pub async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub async fn functions(addr: SocketAddr) -> FunctionsClient<Channel> {
    FunctionsClient::new(channel(addr).await)
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES)
}

/// Every user service of one controller over one channel: `Functions` through `Deref` (as the
/// tests called it when it held every RPC), the others by name.
#[derive(Clone)]
pub struct UserApi {
    pub functions: FunctionsClient<Channel>,
    pub versions: VersionsClient<Channel>,
    pub concurrency: ConcurrencyClient<Channel>,
    pub events: EventsClient<Channel>,
}

impl std::ops::Deref for UserApi {
    type Target = FunctionsClient<Channel>;
    fn deref(&self) -> &Self::Target {
        &self.functions
    }
}

impl std::ops::DerefMut for UserApi {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.functions
    }
}

pub async fn user_api(addr: SocketAddr) -> UserApi {
    let channel = channel(addr).await;
    UserApi {
        functions: FunctionsClient::new(channel.clone())
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES),
        versions: VersionsClient::new(channel.clone()),
        concurrency: ConcurrencyClient::new(channel.clone()),
        events: EventsClient::new(channel).max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES),
    }
}

pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

pub fn spec(name: &str) -> v1::FunctionSpec {
    v1::FunctionSpec {
        name: name.to_string(),
        runtime: "python3.11".to_string(),
        handler: "app.handler".to_string(),
        environment: [("GREETING".to_string(), "hi".to_string())].into(),
        ..Default::default()
    }
}

pub fn create_msgs(
    spec: Option<v1::FunctionSpec>,
    code: &[u8],
    chunk: usize,
) -> Vec<v1::CreateFunctionRequest> {
    use create_function_request::Part;
    let mut msgs: Vec<_> = spec
        .map(|s| v1::CreateFunctionRequest {
            part: Some(Part::Spec(s)),
        })
        .into_iter()
        .collect();
    msgs.extend(code.chunks(chunk).map(|c| v1::CreateFunctionRequest {
        part: Some(Part::CodeChunk(c.to_vec())),
    }));
    msgs
}

pub async fn create(
    client: &mut FunctionsClient<Channel>,
    msgs: Vec<v1::CreateFunctionRequest>,
) -> Result<v1::FunctionConfiguration, tonic::Status> {
    client
        .create_function(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

pub async fn fetch_code(addr: SocketAddr, sha: &str) -> Result<Vec<u8>, tonic::Status> {
    let mut cluster = ClusterClient::new(channel(addr).await);
    let mut stream = cluster
        .fetch_code(v1::FetchCodeRequest {
            sha256: sha.to_string(),
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        assert!(chunk.data.len() <= 1024 * 1024);
        out.extend(chunk.data);
    }
    Ok(out)
}

pub fn assert_status(r: Result<impl std::fmt::Debug, tonic::Status>, code: Code, needle: &str) {
    let status = r.expect_err("expected an error");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{:?} does not contain {needle:?}",
        status.message()
    );
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// What a test's fake worker does with an invocation; [`FakeWorker`] serves it as a `Worker`
/// service that refuses streamed invocations and accepts provisioned and network state.
#[tonic::async_trait]
pub trait FakeInvoke: Send + Sync + 'static {
    async fn invoke(
        &self,
        request: tonic::Request<v1::WorkerInvokeRequest>,
    ) -> Result<tonic::Response<v1::WorkerInvokeResponse>, tonic::Status>;
}

/// A `Worker` service around a [`FakeInvoke`].
pub struct FakeWorker<T>(pub T);

#[tonic::async_trait]
impl<T: FakeInvoke> v1::worker_server::Worker for FakeWorker<T> {
    type InvokeStreamStream = tokio_stream::wrappers::ReceiverStream<
        Result<v1::WorkerInvokeStreamMessage, tonic::Status>,
    >;

    async fn invoke_stream(
        &self,
        _request: tonic::Request<v1::WorkerInvokeRequest>,
    ) -> Result<tonic::Response<Self::InvokeStreamStream>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "this fake worker does not stream",
        ))
    }

    async fn retire_sandboxes(
        &self,
        _request: tonic::Request<v1::RetireSandboxesRequest>,
    ) -> Result<tonic::Response<v1::RetireSandboxesResponse>, tonic::Status> {
        Ok(tonic::Response::new(v1::RetireSandboxesResponse::default()))
    }

    async fn set_provisioned(
        &self,
        _request: tonic::Request<v1::SetProvisionedRequest>,
    ) -> Result<tonic::Response<v1::SetProvisionedResponse>, tonic::Status> {
        Ok(tonic::Response::new(v1::SetProvisionedResponse {}))
    }

    async fn set_network(
        &self,
        _request: tonic::Request<v1::NetworkState>,
    ) -> Result<tonic::Response<v1::SetNetworkResponse>, tonic::Status> {
        Ok(tonic::Response::new(v1::SetNetworkResponse {}))
    }

    async fn invoke(
        &self,
        request: tonic::Request<v1::WorkerInvokeRequest>,
    ) -> Result<tonic::Response<v1::WorkerInvokeResponse>, tonic::Status> {
        self.0.invoke(request).await
    }
}

/// Serves `worker` on loopback as worker `w1` of the controller at `controller` (`memory_mb`
/// capacity): registered, then heartbeating every 200 ms (registering again if the controller
/// forgot it) until the returned token is cancelled, which also stops the service.
pub async fn serve_fake_worker<T: FakeInvoke>(
    controller: SocketAddr,
    worker: T,
    memory_mb: u64,
) -> CancellationToken {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let worker_addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(v1::worker_server::WorkerServer::new(FakeWorker(worker)))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                stop.clone().cancelled_owned(),
            ),
    );
    let mut cluster = ClusterClient::new(channel(controller).await);
    let register = v1::RegisterWorkerRequest {
        worker_id: "w1".into(),
        address: worker_addr.to_string(),
        memory_total_mb: memory_mb,
    };
    cluster.register_worker(register.clone()).await.unwrap();
    let beat_stop = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = beat_stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            let hb = cluster
                .heartbeat(v1::HeartbeatRequest {
                    worker_id: "w1".into(),
                    memory_free_mb: memory_mb,
                    ..Default::default()
                })
                .await;
            if matches!(hb, Ok(ref r) if !r.get_ref().known) {
                // Registered again at the next beat if this fails too.
                let _ = cluster.register_worker(register.clone()).await;
            }
        }
    });
    stop
}
