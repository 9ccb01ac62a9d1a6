//! The REST front for the AWS SDKs (boto3, the AWS CLI), on its own port.
//!
//! One front for every AWS-compatible service: `front.rs` checks the SigV4 signature and reads
//! the body within the service's limit and the process-wide budget of unverified bytes, once;
//! `service.rs` tells from the request which service and wire protocol it is for and dispatches
//! it to the service's handlers. The services are listed in [`services`]: today Lambda
//! (`lambda.rs`, rest-json), Secrets Manager (`secretsmanager.rs`) and SSM Parameter Store
//! (`ssm.rs`), both AWS JSON 1.1.
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use lamina_proto::auth::{AuthFailure, ServerGuard};
use tokio_util::sync::CancellationToken;

use crate::api::Shared;
use crate::auth::KeyStore;

mod front;
mod lambda;
mod secretsmanager;
pub mod service;
mod ssm;

pub use lambda::shapes;
use shapes::RestError;

/// The largest request: a 50 MB zip, base64-encoded (4/3), in JSON.
pub const MAX_REST_BODY_BYTES: usize = 70 * 1024 * 1024;
pub const DEFAULT_REST_LISTEN: &str = "127.0.0.1:9680";

/// What the front holds: the services, the keys that sign requests (`None`: authentication
/// off) and the budget of unverified bytes and replay cache (shared with gRPC).
struct Front {
    services: service::Services,
    keys: Option<Arc<KeyStore>>,
    /// Execution roles' session credentials, accepted beside the keys.
    sessions: Arc<crate::auth::sessions::SessionStore>,
    guard: ServerGuard,
}

/// Every service of the REST front. Adding one is adding its module and a line here.
fn services(shared: &Arc<Shared>) -> service::Services {
    service::Services::new(vec![
        lambda::service(Arc::clone(shared)),
        secretsmanager::service(Arc::clone(shared)),
        ssm::service(Arc::clone(shared)),
    ])
}

pub(crate) fn router(shared: Arc<Shared>, keys: Option<Arc<KeyStore>>) -> Router {
    let front = Arc::new(Front {
        services: services(&shared),
        keys,
        sessions: Arc::clone(&shared.sessions),
        guard: shared.guard.clone(),
    });
    Router::new()
        .fallback(front::handle)
        .layer(DefaultBodyLimit::disable())
        .with_state(front)
}

/// Serves the REST API on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: impl Into<crate::http_listener::HttpListener>,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    front::serve(listener, router, shutdown).await
}

fn auth_error(f: AuthFailure) -> RestError {
    let kind = match f {
        AuthFailure::Missing | AuthFailure::UnknownKey(_) => "UnrecognizedClientException",
        AuthFailure::Denied(..) => "AccessDeniedException",
        AuthFailure::ExpiredToken(_) => "ExpiredTokenException",
        AuthFailure::BadSignature
        | AuthFailure::Expired(_)
        | AuthFailure::Malformed(_)
        | AuthFailure::Replayed => "InvalidSignatureException",
    };
    RestError::new(StatusCode::FORBIDDEN, kind, f.to_string())
}
