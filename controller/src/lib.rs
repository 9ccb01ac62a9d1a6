//! Lamina's control plane: the function store, the worker registry, placement and the gRPC API.
//!
//! ```no_run
//! # async fn run() -> Result<(), lamina_controller::ControllerError> {
//! use lamina_controller::{Controller, ControllerConfig};
//! let controller = Controller::open(ControllerConfig::new("/var/lib/lamina".into()))?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9670").await.expect("bind");
//! controller.serve(listener, tokio_util::sync::CancellationToken::new()).await
//! # }
//! ```
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lamina_proto::v1::{cluster_server::ClusterServer, functions_server::FunctionsServer};
use lamina_proto::{FILE_DESCRIPTOR_SET, MAX_GRPC_MESSAGE_BYTES};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod api;
pub mod code;
pub mod placement;
pub mod queue;
pub mod registry;
pub mod store;

use api::{ClusterService, FunctionsService, Shared, WorkerClients, WorkerInvoker};
use queue::{Dispatcher, QueueConfig, QueueError, QueueStore};
use registry::Registry;
use store::{RocksStore, Store, StoreError};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9670";

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Where the RocksDB store lives.
    pub data_dir: PathBuf,
    /// A worker without a heartbeat for this long is `Down`.
    pub worker_timeout: Duration,
    /// What workers are told to use between heartbeats.
    pub heartbeat_interval: Duration,
    /// Log events kept per function.
    pub log_retention: u64,
    /// Asynchronous invocation: payload limit, concurrency, rate, time scale, retention.
    pub queue: QueueConfig,
}

impl ControllerConfig {
    /// The defaults of the `lamina-controller` binary: 5 s worker timeout, 1 s heartbeats, 10000
    /// log events per function.
    pub fn new(data_dir: PathBuf) -> ControllerConfig {
        ControllerConfig {
            data_dir,
            worker_timeout: Duration::from_millis(5000),
            heartbeat_interval: Duration::from_millis(1000),
            log_retention: 10_000,
            queue: QueueConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("cannot build the gRPC reflection service: {0}")]
    Reflection(String),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A controller ready to serve: its store is open.
pub struct Controller {
    shared: Arc<Shared>,
}

impl Controller {
    /// Opens the RocksDB store in `config.data_dir`, with the async queue in the same database.
    pub fn open(config: ControllerConfig) -> Result<Controller, ControllerError> {
        let store = RocksStore::open(&config.data_dir, config.log_retention)?;
        let queue = QueueStore::open(store.db(), &config.data_dir, config.queue.clone())?;
        let mut controller = Controller::with_store(&config, Arc::new(store));
        Arc::get_mut(&mut controller.shared)
            .expect("a new controller's state is not shared yet")
            .queue = Some(Arc::new(queue));
        Ok(controller)
    }

    /// A controller on any [`Store`] (`config.data_dir` and `log_retention` are the store's
    /// business), without the async queue: EVENT invocations are refused.
    pub fn with_store(config: &ControllerConfig, store: Arc<dyn Store>) -> Controller {
        Controller {
            shared: Arc::new(Shared {
                store,
                registry: Arc::new(Registry::new(config.worker_timeout)),
                workers: WorkerClients::default(),
                heartbeat_interval: config.heartbeat_interval,
                queue: None,
            }),
        }
    }

    /// The async queue, when the store has one.
    pub fn queue(&self) -> Option<&Arc<QueueStore>> {
        self.shared.queue.as_ref()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.shared.registry
    }

    /// Serves `Functions`, `Cluster` and gRPC reflection (v1 and v1alpha) on `listener` until
    /// `shutdown` is cancelled and the requests in flight are answered.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), ControllerError> {
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection()
            .build_v1()
            .map_err(|e| ControllerError::Reflection(e.to_string()))?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(|e| ControllerError::Reflection(e.to_string()))?;
        let functions = FunctionsServer::new(FunctionsService {
            shared: Arc::clone(&self.shared),
        })
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        let cluster = ClusterServer::new(ClusterService {
            shared: Arc::clone(&self.shared),
        })
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        let incoming = lamina_proto::net::nodelay_incoming(listener);
        let dispatcher = self.shared.queue.as_ref().map(|q| {
            let invoker = Arc::new(WorkerInvoker {
                shared: Arc::clone(&self.shared),
            });
            tokio::spawn(Dispatcher::new(Arc::clone(q), invoker).run(shutdown.clone()))
        });
        let served = tonic::transport::Server::builder()
            .add_service(functions)
            .add_service(cluster)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
            .await;
        // The server stopped (shutdown, or it failed): stop dispatching too.
        shutdown.cancel();
        if let Some(d) = dispatcher {
            if let Err(e) = d.await {
                tracing::error!(error = %e, "the async dispatcher task failed");
            }
        }
        served?;
        Ok(())
    }
}
