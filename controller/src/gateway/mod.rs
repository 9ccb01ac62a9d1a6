//! The HTTP gateway: the controller's public HTTP listener (`--http-listen`, default
//! `127.0.0.1:9690`), separate from the management APIs — nothing on it reaches a management
//! route. It serves function URLs and API Gateway–style HTTP APIs with Lambda's event and
//! response formats, so code written for API Gateway and function URLs runs unchanged.
//!
//! - `model` (`lamina_proto::gateway`): what it serves (stored by `store::GatewayStore`, managed
//!   by `api::gateway`);
//! - `handler.rs`: one request — target by host or path, size/CORS/SigV4 checks, body, event,
//!   invocation through the controller's pipeline, response;
//! - `request.rs` the received request, `events.rs` payload formats 1.0 and 2.0,
//!   `response.rs` the mapping of results, `stream.rs` `RESPONSE_STREAM` URLs, `cors.rs`,
//!   `routes.rs` route keys and precedence, `throttle.rs` per-route token buckets, `errors.rs`
//!   the gateway's own answers.
//!
//! Bounds (everything a client without credentials controls): connections ([`GatewayConfig`]),
//! request heads (size, and [`HEADER_TIMEOUT`], which also closes idle keep-alive connections),
//! bodies ([`MAX_BODY_BYTES`], [`BODY_TIMEOUT`], and a process-wide budget of body bytes held at
//! once, `--http-body-budget-bytes`).
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use lamina_proto::guard::BodyBudget;
use tokio_util::sync::CancellationToken;

use crate::auth::KeyStore;
use crate::context::Context;
use crate::http_listener::{self, Limits};

mod cors;
mod errors;
mod events;
mod handler;
/// The domain types the gateway serves (in `lamina_proto`, below the store and the API).
pub use lamina_proto::gateway as model;
mod request;
mod response;
pub mod routes;
mod stream;
mod throttle;

pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9690";
/// The largest request body: Lambda's 6 MB synchronous payload.
pub const MAX_BODY_BYTES: usize = lamina_proto::validate::MAX_SYNC_PAYLOAD_BYTES;
/// A request's head must arrive within this; an idle keep-alive connection is closed after it.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// A request's body must arrive within this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The operator's settings of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Host names are `<id>.lambda-url.<region>.<domain>` and `<id>.execute-api.<region>.<domain>`.
    pub domain: String,
    /// The scheme clients use (`https` behind a TLS reverse proxy).
    pub public_scheme: String,
    /// The port clients use; `None`: the listener's.
    pub public_port: Option<u16>,
    /// Connections at once.
    pub max_connections: usize,
    /// Request-body bytes held at once, all requests together.
    pub body_budget_bytes: usize,
    /// A request head must arrive within this (and an idle keep-alive connection waits no longer).
    pub header_timeout: Duration,
    /// A request body must arrive within this.
    pub body_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            domain: "localhost".into(),
            public_scheme: "http".into(),
            public_port: None,
            max_connections: 10_000,
            body_budget_bytes: 256 << 20,
            header_timeout: HEADER_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
        }
    }
}

/// What every request of the gateway shares.
pub(crate) struct Gateway {
    ctx: Arc<Context>,
    /// The access keys `AWS_IAM` URLs verify against (`None`: authentication off).
    keys: Option<Arc<KeyStore>>,
    budget: BodyBudget,
    body_timeout: Duration,
    buckets: throttle::Buckets,
    /// `.lambda-url.<region>.<domain>` and `.execute-api.<region>.<domain>`.
    url_suffix: String,
    api_suffix: String,
}

/// Serves the gateway on `listener` until `shutdown`; sets the context's public endpoint from the
/// bound port.
pub(crate) async fn serve(
    ctx: Arc<Context>,
    keys: Option<Arc<KeyStore>>,
    config: GatewayConfig,
    listener: impl Into<http_listener::HttpListener>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = listener.into();
    let port = listener.local_addr()?.port();
    let domain = config.domain.to_ascii_lowercase();
    // Set once per process: a second `serve` keeps the first endpoint.
    let _ = ctx.http_endpoint.set(model::PublicEndpoint {
        scheme: config.public_scheme.clone(),
        domain: domain.clone(),
        port: config.public_port.or(Some(port)),
    });
    let gateway = Arc::new(Gateway {
        ctx,
        keys,
        budget: BodyBudget::new(config.body_budget_bytes),
        body_timeout: config.body_timeout,
        buckets: throttle::Buckets::default(),
        url_suffix: format!(".lambda-url.{}.{domain}", model::REGION),
        api_suffix: format!(".execute-api.{}.{domain}", model::REGION),
    });
    let router = Router::new()
        .fallback(handler::handle)
        .layer(DefaultBodyLimit::disable())
        .with_state(gateway);
    let limits = Limits {
        max_connections: config.max_connections,
        header_timeout: config.header_timeout,
        max_header_bytes: MAX_HEADER_BYTES,
        max_streams: 128,
    };
    http_listener::serve(listener, router, limits, "http", shutdown).await
}
#[cfg(test)]
mod tests;
