//! The context below the services: what the API layer, the invocation pipeline, the async queue's
//! deliveries and the background reconcilers share (the store, the worker registry and clients,
//! the concurrency limiter, the queue, the reconcilers' handles and the operator's settings).
//!
//! It depends on nothing above it: the services (`api`, `rest`) and the reconcilers
//! (`provisioned`, `network`, `retire`) take it; it takes none of them.
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::concurrency::Limiter;
use crate::netns_allowlist::NetnsAllowlist;
use crate::queue::QueueStore;
use crate::reconcile::{NetworkSync, Provisioning, Retiring};
use crate::registry::Registry;
use crate::store::Store;
use crate::worker_clients::WorkerClients;
use lamina_proto::gateway::PublicEndpoint;

/// What the services share (the API layer calls it `Shared`).
pub(crate) struct Context {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub workers: WorkerClients,
    pub heartbeat_interval: Duration,
    /// The async queue (`None` on a store without one: EVENT invocations are refused).
    pub queue: Option<Arc<QueueStore>>,
    /// Reserved concurrency and the cluster-wide limit.
    pub limiter: Limiter,
    /// How long an invocation waits for a cold-start slot before it is throttled.
    pub placement_wait: Duration,
    /// The provisioned-concurrency reconciler's state.
    pub provisioning: Arc<Provisioning>,
    /// Functions whose revisions ended: their stale sandboxes go (see `retire.rs`).
    pub retiring: Arc<Retiring>,
    /// Wakes the VPC network reconciler.
    pub network: Arc<NetworkSync>,
    /// The largest container-image upload (`--max-image-bytes`).
    pub max_image_bytes: u64,
    /// The budget of request bytes not yet authenticated and the replay cache, shared by the
    /// gRPC services and the REST front.
    pub guard: lamina_proto::auth::ServerGuard,
    /// Network namespaces an admin may attach to a VPC (`--attachable-netns`; empty: none).
    pub attachable_netns: NetnsAllowlist,
    /// Where clients reach the HTTP gateway (function URLs, HTTP APIs): set once the gateway's
    /// listener is bound; [`Context::public_endpoint`] reads it.
    pub http_endpoint: std::sync::OnceLock<PublicEndpoint>,
    /// The key-encryption key of the secrets kept at rest (`DATA_DIR/auth/master.key`; an
    /// in-memory key on a controller without a data directory). See `crypto.rs`.
    pub master_key: Arc<crate::crypto::MasterKey>,
    /// Execution roles in memory and their session credentials (`auth/sessions.rs`).
    pub sessions: Arc<crate::auth::sessions::SessionStore>,
    /// The durable execution roles (`None` on a store without them: roles cannot be managed).
    pub roles: Option<Arc<dyn crate::store::RoleStore>>,
    /// The access keys when authentication is on (`None`: off, every call is allowed); what
    /// `Shared::authorize` reads the callers' policies from.
    pub keys: Option<Arc<crate::auth::KeyStore>>,
}

impl Context {
    /// How often an invocation checks that its worker is still `Up` (the heartbeat interval,
    /// within 100 ms..1 s).
    pub fn lost_worker_check(&self) -> Duration {
        self.heartbeat_interval
            .clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    /// Where clients reach the HTTP gateway (the default `http://*.localhost:9690` before its
    /// listener is bound, or on a controller without one).
    pub fn public_endpoint(&self) -> PublicEndpoint {
        self.http_endpoint.get().cloned().unwrap_or_default()
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
