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
pub mod auth;
pub mod code;
pub mod concurrency;
mod context;
pub mod crypto;
pub mod gateway;
mod http_listener;
pub mod iam;
pub mod image;
mod invocation;
mod netns_allowlist;
pub mod network;
pub mod placement;
pub mod provisioned;
pub mod queue;
mod reconcile;
pub mod registry;
mod resolve;
pub mod rest;
pub mod retire;
mod secrets;
pub mod store;
#[cfg(test)]
mod test_support;
mod worker_clients;

use api::{AuthService, ClusterService, FunctionsService};
use auth::{AuthError, Bootstrap, KeyStore};
use concurrency::{ConcurrencyConfig, Limiter};
use context::Context;
use invocation::WorkerInvoker;
use lamina_proto::auth::{Authenticated, KeyLookup, ServerGuard, StaticKey};
use lamina_proto::guard::GRPC_SMALL_BODY_BYTES;
use lamina_proto::tls::{ClientCerts, RequireClientCert, TlsMaterial, ALPN_H2, ALPN_HTTP11};
use lamina_proto::v1::auth_server::AuthServer;
use queue::{Dispatcher, QueueConfig, QueueError, QueueStore};
use registry::Registry;
use store::{RocksStore, SettingsStore, Store, StoreError};

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
    /// Authenticate every request (access keys in `DATA_DIR/auth`, the cluster credential for
    /// workers). The binary always sets it; only in-process tests of the services turn it off.
    pub auth: bool,
    /// Concurrency limits and the bounds of placement.
    pub concurrency: ConcurrencyConfig,
    /// The largest container-image upload in bytes (`--max-image-bytes`).
    pub max_image_bytes: u64,
    /// Request-body bytes not yet authenticated held at once, REST and gRPC together.
    pub unverified_body_budget_bytes: usize,
    /// Network namespaces (`/run/netns/NAME`) an admin may attach to a VPC: names or globs
    /// with `*` (`--attachable-netns`); empty: none.
    pub attachable_netns: Vec<String>,
    /// How long the session credentials of execution roles last (`--session-ttl-secs`).
    pub session_ttl: Duration,
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
            auth: true,
            concurrency: ConcurrencyConfig::default(),
            max_image_bytes: image::DEFAULT_MAX_IMAGE_BYTES,
            unverified_body_budget_bytes: lamina_proto::guard::DEFAULT_UNVERIFIED_BUDGET_BYTES,
            attachable_netns: Vec::new(),
            session_ttl: auth::sessions::DEFAULT_SESSION_TTL,
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
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Roles(#[from] store::RoleStoreError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    #[error("REST server failed: {0}")]
    Rest(std::io::Error),
    #[error("HTTP gateway failed: {0}")]
    Http(std::io::Error),
    #[error(transparent)]
    Tls(#[from] lamina_proto::tls::TlsError),
    #[error(
        "cannot make the data directory {path} private (mode 0700): {source}; check its owner"
    )]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Creates `dir` mode 0700 if missing, and takes the group and other bits off it and everything
/// under it (a data directory written by an older version, or with a looser umask, was 0755 with
/// 0644 files: environment variables, code and logs readable by every local user).
pub fn make_private(dir: &std::path::Path) -> Result<(), ControllerError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| ControllerError::DataDir { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err(dir))?;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        // Never through a symlink: only what is in the data directory itself.
        let meta = std::fs::symlink_metadata(&path).map_err(err(&path))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7700))
                .map_err(err(&path))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(err(&path))? {
                todo.push(entry.map_err(err(&path))?.path());
            }
        }
    }
    Ok(())
}

/// A controller ready to serve: its store is open.
pub struct Controller {
    shared: Arc<Context>,
    keys: Option<Arc<KeyStore>>,
    bootstrap: Bootstrap,
    /// The HTTP gateway's listener and settings, when it is served.
    http: Option<(TcpListener, gateway::GatewayConfig)>,
    /// TLS on every listener and to the workers ([`Controller::with_tls`]); none: plaintext
    /// (the binary allows it on loopback addresses only, with `--plaintext`).
    tls: Option<TlsMaterial>,
}

impl Controller {
    /// Opens the RocksDB store in `config.data_dir`, with the async queue in the same database.
    pub fn open(config: ControllerConfig) -> Result<Controller, ControllerError> {
        make_private(&config.data_dir)?;
        let store = RocksStore::open(&config.data_dir, config.log_retention)?;
        let reservations = store.list_reserved_concurrency()?;
        let queue = QueueStore::open(store.db(), config.queue.clone())?;
        let store_db = store.db();
        // Loaded whether or not auth is on: stored secrets are sealed under it either way.
        let master_key = Arc::new(crypto::MasterKey::load_or_create(
            &config.data_dir.join("auth").join("master.key"),
        )?);
        let (keys, bootstrap) = if config.auth {
            let (keys, bootstrap) =
                KeyStore::open(&config.data_dir.join("auth"), Arc::clone(&master_key))?;
            (Some(Arc::new(keys)), bootstrap)
        } else {
            (None, Bootstrap::default())
        };
        let cluster = keys.as_ref().map(|k| k.cluster_credentials().clone());
        let mut controller = Controller::with_store(&config, Arc::new(store));
        controller.shared.limiter.load(reservations);
        Arc::get_mut(&mut controller.shared)
            .expect("a new controller's state is not shared yet")
            .keys = keys.clone();
        controller.keys = keys;
        controller.bootstrap = bootstrap;
        Arc::get_mut(&mut controller.shared)
            .expect("a new controller's state is not shared yet")
            .workers = worker_clients::WorkerClients::new(cluster);
        Arc::get_mut(&mut controller.shared)
            .expect("a new controller's state is not shared yet")
            .queue = Some(Arc::new(queue));
        Arc::get_mut(&mut controller.shared)
            .expect("a new controller's state is not shared yet")
            .master_key = master_key;
        let roles = Arc::new(store::RocksRoleStore::open(store_db));
        api::roles::load(&controller.shared.sessions, roles.as_ref())?;
        Arc::get_mut(&mut controller.shared)
            .expect("a new controller's state is not shared yet")
            .roles = Some(roles);
        Ok(controller)
    }

    /// A controller on any [`Store`] (`config.data_dir` and `log_retention` are the store's
    /// business), without the async queue: EVENT invocations are refused. Reserved concurrency
    /// is read from the store (a store that cannot be read starts with none, logged).
    pub fn with_store(config: &ControllerConfig, store: Arc<dyn Store>) -> Controller {
        let c = &config.concurrency;
        let limiter = Limiter::new(c.limit, c.unreserved_min);
        match store.list_reserved_concurrency() {
            Ok(r) => limiter.load(r),
            Err(e) => tracing::error!(error = %e, "cannot read reserved concurrency"),
        }
        Controller {
            shared: Arc::new(Context {
                store,
                registry: Arc::new(Registry::with_cold_start_limit(
                    config.worker_timeout,
                    c.cold_starts_per_worker,
                )),
                workers: worker_clients::WorkerClients::default(),
                heartbeat_interval: config.heartbeat_interval,
                queue: None,
                limiter,
                placement_wait: c.placement_wait,
                provisioning: Arc::default(),
                retiring: Arc::default(),
                network: Arc::default(),
                max_image_bytes: config.max_image_bytes,
                guard: ServerGuard {
                    budget: lamina_proto::guard::BodyBudget::new(
                        config.unverified_body_budget_bytes,
                    ),
                    replay: Arc::default(),
                },
                attachable_netns: network::NetnsAllowlist::new(&config.attachable_netns),
                http_endpoint: std::sync::OnceLock::new(),
                master_key: Arc::new(crypto::MasterKey::ephemeral()),
                sessions: Arc::new(auth::sessions::SessionStore::new(config.session_ttl)),
                roles: None,
                keys: None,
            }),
            keys: None,
            bootstrap: Bootstrap::default(),
            http: None,
            tls: None,
        }
    }

    /// Serves the HTTP gateway (function URLs, HTTP APIs) on `listener` too, beside the APIs.
    pub fn with_http(
        mut self,
        listener: TcpListener,
        config: gateway::GatewayConfig,
    ) -> Controller {
        self.http = Some((listener, config));
        self
    }

    /// Serves every listener over TLS with `tls`: the gRPC port asks clients for a certificate and
    /// `Cluster` requires one signed by `tls`'s CA (workers: mTLS on top of the cluster
    /// credential); calls to workers verify their certificates and present this one.
    pub fn with_tls(mut self, tls: TlsMaterial) -> Result<Controller, ControllerError> {
        self.shared.workers.set_tls(tls.client_config()?);
        self.tls = Some(tls);
        Ok(self)
    }

    /// What the first start created (the first admin key's file), for the operator.
    pub fn bootstrap(&self) -> &Bootstrap {
        &self.bootstrap
    }

    /// The access keys, when authentication is on.
    pub fn keys(&self) -> Option<&Arc<KeyStore>> {
        self.keys.as_ref()
    }

    /// The async queue, when the store has one.
    pub fn queue(&self) -> Option<&Arc<QueueStore>> {
        self.shared.queue.as_ref()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.shared.registry
    }

    /// The concurrency limiter (reserved concurrency, the cluster-wide limit).
    pub fn limiter(&self) -> &Limiter {
        &self.shared.limiter
    }

    /// Serves the users' services (`Functions`, `Versions`, `Concurrency`, `Events`, `Layers`,
    /// `Network`, `Auth`), `Cluster` and gRPC reflection (v1 and v1alpha) on `listener` until
    /// `shutdown` is cancelled and the requests in flight are answered.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), ControllerError> {
        self.serve_with_rest(listener, None, shutdown).await
    }

    /// Like [`Controller::serve`], plus the Lambda REST API on `rest` when given. With
    /// authentication on, the users' services and `Auth` need an access key (`Auth`: an admin key),
    /// `Cluster` the cluster credential, and REST requests a SigV4 signature; gRPC reflection
    /// (the public schema) is open.
    pub async fn serve_with_rest(
        self,
        listener: TcpListener,
        rest: Option<TcpListener>,
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
        let versions = api::VersionsServer::new(api::VersionsService {
            shared: Arc::clone(&self.shared),
        })
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        let concurrency_api = api::ConcurrencyServer::new(api::ConcurrencyService {
            shared: Arc::clone(&self.shared),
        })
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        let events = api::EventsServer::new(api::EventsService {
            shared: Arc::clone(&self.shared),
        })
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        let layers = api::LayersServer::new(api::LayersService {
            shared: Arc::clone(&self.shared),
        })
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        let gateway_api = api::GatewayServer::new(api::GatewayService {
            shared: Arc::clone(&self.shared),
        })
        .max_decoding_message_size(GRPC_SMALL_BODY_BYTES);
        let cluster = ClusterServer::new(ClusterService {
            shared: Arc::clone(&self.shared),
        })
        .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        let dispatcher = self.shared.queue.as_ref().map(|q| {
            let invoker = Arc::new(WorkerInvoker {
                ctx: Arc::clone(&self.shared),
            });
            tokio::spawn(Dispatcher::new(Arc::clone(q), invoker).run(shutdown.clone()))
        });
        let reconciler = tokio::spawn(provisioned::run(Arc::clone(&self.shared), shutdown.clone()));
        let network_sync = tokio::spawn(network::run(Arc::clone(&self.shared), shutdown.clone()));
        let retirer = tokio::spawn(retire::run(Arc::clone(&self.shared), shutdown.clone()));
        let network_api =
            lamina_proto::v1::network_server::NetworkServer::new(api::NetworkService {
                shared: Arc::clone(&self.shared),
            })
            .max_decoding_message_size(GRPC_SMALL_BODY_BYTES);
        let roles_api = lamina_proto::v1::roles_server::RolesServer::new(api::RolesService::new(
            Arc::clone(&self.shared),
        ))
        .max_decoding_message_size(GRPC_SMALL_BODY_BYTES);
        let (grpc_tls, http_tls) = match &self.tls {
            Some(m) => (
                Some(m.server_config(ClientCerts::Optional, &[ALPN_H2])?),
                Some(m.server_config(ClientCerts::NotAsked, &[ALPN_H2, ALPN_HTTP11])?),
            ),
            None => (None, None),
        };
        let tls_on = grpc_tls.is_some();
        let mut builder =
            lamina_proto::net::server_builder(lamina_proto::net::MAX_CONCURRENT_STREAMS);
        // One budget of unverified bytes and one replay cache for every service of the process
        // (the REST front uses the same).
        let guard = self.shared.guard.clone();
        let router = match &self.keys {
            Some(keys) => {
                let users: Arc<dyn KeyLookup> = Arc::clone(keys) as Arc<dyn KeyLookup>;
                let cluster_key: Arc<dyn KeyLookup> =
                    Arc::new(StaticKey(keys.cluster_credentials().clone()));
                let auth = AuthServer::new(AuthService {
                    keys: Arc::clone(keys),
                    shared: Arc::clone(&self.shared),
                })
                .max_decoding_message_size(GRPC_SMALL_BODY_BYTES);
                let g = || guard.clone();
                builder
                    .add_service(Authenticated::with_guard(
                        functions,
                        Arc::clone(&users),
                        g(),
                    ))
                    .add_service(Authenticated::with_guard(versions, Arc::clone(&users), g()))
                    .add_service(Authenticated::with_guard(
                        concurrency_api,
                        Arc::clone(&users),
                        g(),
                    ))
                    .add_service(Authenticated::with_guard(events, Arc::clone(&users), g()))
                    .add_service(Authenticated::with_guard(layers, Arc::clone(&users), g()))
                    .add_service(Authenticated::with_guard(
                        gateway_api,
                        Arc::clone(&users),
                        g(),
                    ))
                    .add_service(Authenticated::with_guard(
                        network_api,
                        Arc::clone(&users),
                        g(),
                    ))
                    .add_service(Authenticated::with_guard(
                        roles_api,
                        Arc::clone(&users),
                        g(),
                    ))
                    .add_service(Authenticated::with_guard(auth, users, g()))
                    .add_service(RequireClientCert::when(
                        tls_on,
                        Authenticated::with_guard(cluster, cluster_key, g()),
                    ))
            }
            None => builder
                .add_service(functions)
                .add_service(versions)
                .add_service(concurrency_api)
                .add_service(events)
                .add_service(layers)
                .add_service(gateway_api)
                .add_service(network_api)
                .add_service(roles_api)
                .add_service(RequireClientCert::when(tls_on, cluster)),
        };
        let http_server = self.http.map(|(listener, config)| {
            tokio::spawn(gateway::serve(
                Arc::clone(&self.shared),
                self.keys.clone(),
                config,
                http_listener::HttpListener {
                    tcp: listener,
                    tls: http_tls.clone(),
                },
                shutdown.clone(),
            ))
        });
        let rest_server = rest.map(|l| {
            let router = rest::router(Arc::clone(&self.shared), self.keys.clone());
            let l = http_listener::HttpListener {
                tcp: l,
                tls: http_tls.clone(),
            };
            tokio::spawn(rest::serve(l, router, shutdown.clone()))
        });
        let router = router
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let served = match grpc_tls {
            None => {
                let incoming = lamina_proto::net::nodelay_incoming(listener);
                router
                    .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
                    .await
            }
            Some(config) => {
                let incoming = lamina_proto::tls::tls_incoming(
                    listener,
                    config,
                    lamina_proto::tls::MAX_HANDSHAKES,
                );
                router
                    .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
                    .await
            }
        };
        // The server stopped (shutdown, or it failed): stop dispatching too.
        shutdown.cancel();
        if let Some(d) = dispatcher {
            if let Err(e) = d.await {
                tracing::error!(error = %e, "the async dispatcher task failed");
            }
        }
        if let Err(e) = network_sync.await {
            tracing::error!(error = %e, "the network reconciler task failed");
        }
        if let Err(e) = reconciler.await {
            tracing::error!(error = %e, "the provisioned concurrency task failed");
        }
        if let Err(e) = retirer.await {
            tracing::error!(error = %e, "the stale sandbox retirer task failed");
        }
        // Invocation logs still queued for the background writer are written before we return.
        let store = Arc::clone(&self.shared.store);
        if let Err(e) = tokio::task::spawn_blocking(move || store.flush_logs()).await {
            tracing::error!(error = %e, "flushing the invocation logs failed");
        }
        let rest_result = match rest_server {
            Some(h) => match h.await {
                Ok(r) => r.map_err(ControllerError::Rest),
                Err(e) => Err(ControllerError::Rest(std::io::Error::other(e.to_string()))),
            },
            None => Ok(()),
        };
        let http_result = match http_server {
            Some(h) => match h.await {
                Ok(r) => r.map_err(ControllerError::Http),
                Err(e) => Err(ControllerError::Http(std::io::Error::other(e.to_string()))),
            },
            None => Ok(()),
        };
        served?;
        rest_result?;
        http_result
    }
}
