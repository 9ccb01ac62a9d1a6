//! The REST API's front door: what happens to a request before any handler sees it.
//!
//! 1. The connection: at most [`MAX_CONNECTIONS`] at once, request headers within
//!    [`HEADER_READ_TIMEOUT`] and [`MAX_HEADER_BYTES`], HTTP/2 streams capped.
//! 2. The route (`service.rs`): which service and wire protocol the request is for, from its
//!    head; every answer below is in that protocol's error shape.
//! 3. The headers: the SigV4 `Authorization` header's form, the date, that every `x-amz-*`
//!    header is signed and that the access key exists (`sigv4::precheck`), and a
//!    `Content-Length` within the operation's limit (the service's; Lambda's is [`body_limit`]):
//!    an unsigned 60 MB upload is answered 403 before a byte of its body is read.
//! 4. The body, read within the operation's limit and a deadline, charged to the process-wide
//!    budget of unverified bytes (`lamina_proto::guard::BodyBudget`, shared with gRPC).
//! 5. The signature over the body (`Pending::finish`), then, for a mutating call, the replay
//!    cache: the same signed request twice is refused. The signer goes into the request's
//!    extensions (`lamina_proto::auth::Caller`): handlers authorise with `Shared::authorize`.
//! 6. The dispatch to the service's handler (`Services::dispatch`).
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::Router;
use lamina_proto::auth::{now_ms, AuthFailure};
use lamina_proto::guard::BodyError;
use tokio_util::sync::CancellationToken;

use super::service::{Protocol, Services, SMALL_BODY_BYTES};
use super::{auth_error, Front, MAX_REST_BODY_BYTES};
use crate::auth::sigv4;
use crate::http_listener::{self, Limits};

/// Connections served at once; more are closed as they arrive.
pub const MAX_CONNECTIONS: usize = 1024;
/// A request's headers must arrive within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head (HTTP/1 buffer, HTTP/2 header list).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// HTTP/2 streams one connection may have open at once.
pub const MAX_STREAMS: u32 = 128;

/// The largest body of the operation at `method path`: code and layer uploads (a 50 MB zip in
/// base64 in JSON), invocations (the payload limit, `invoke`), everything else 256 KB.
pub fn body_limit(method: &Method, path: &str, invoke: usize) -> usize {
    let p = path.trim_end_matches('/');
    let upload = (method == Method::POST
        && (p == "/2015-03-31/functions"
            || (p.starts_with("/2018-10-31/layers/") && p.ends_with("/versions"))))
        || (method == Method::PUT
            && p.starts_with("/2015-03-31/functions/")
            && p.ends_with("/code"));
    let invocation = method == Method::POST
        && (p.ends_with("/invocations")
            || p.ends_with("/response-streaming-invocations")
            || p.ends_with("/invoke-async"));
    if upload {
        MAX_REST_BODY_BYTES
    } else if invocation {
        invoke
    } else {
        SMALL_BODY_BYTES
    }
}

fn too_large(protocol: Protocol, limit: usize) -> Response {
    protocol.error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestTooLargeException",
        format!("request body is over the {limit} bytes this operation accepts: send less"),
    )
}

fn body_error(protocol: Protocol, e: &BodyError) -> Response {
    let (status, kind) = match e {
        BodyError::TooLarge { limit } => return too_large(protocol, *limit),
        BodyError::Busy => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException"),
        BodyError::Timeout(_) => (StatusCode::REQUEST_TIMEOUT, "RequestTimeoutException"),
        BodyError::Read(_) => (StatusCode::BAD_REQUEST, "InvalidRequestContentException"),
    };
    protocol.error(status, kind, e.to_string())
}

fn refuse(protocol: Protocol, method: &Method, path: &str, f: AuthFailure) -> Response {
    tracing::warn!(%method, %path, reason = %f, "refused an unauthenticated rest request");
    let e = auth_error(f);
    protocol.error(e.status, e.kind, e.message)
}

/// What identifies one request for the replay cache: its signature, and botocore's per-call
/// `amz-sdk-invocation-id` and per-attempt `amz-sdk-request`. botocore signs only `host`,
/// `x-amz-date` and `content-type`, so two identical calls (or a call and its retry) within one
/// second carry the same signature: only these unsigned headers tell them apart. An exact
/// re-send of a captured request is refused; one re-sent with those headers changed is not
/// (SigV4 as botocore signs it leaves nothing else to tell it from an honest call; the gRPC
/// scheme signs a nonce and has no such gap).
fn replay_key(signature: &[u8], headers: &http::HeaderMap) -> Vec<u8> {
    let mut key = signature.to_vec();
    for name in ["amz-sdk-invocation-id", "amz-sdk-request"] {
        key.push(0);
        if let Some(v) = headers.get(name) {
            key.extend_from_slice(v.as_bytes());
        }
    }
    key
}

/// Every request: steps 2 to 6 of the module docs, then the dispatch to its service
/// (`service.rs`). Refusals take the shape of the protocol the client speaks.
pub(super) async fn handle(State(front): State<Arc<Front>>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let (method, path) = (parts.method.clone(), parts.uri.path().to_string());
    let route = front.services.route(&method, &parts.uri, &parts.headers);
    let protocol = route.protocol();
    let pending = match &front.keys {
        Some(keys) => match sigv4::precheck_with_sessions(
            keys.as_ref(),
            Some(&front.sessions),
            &parts.headers,
            now_ms(),
        ) {
            Ok(p) => Some(p),
            Err(f) => return refuse(protocol, &method, &path, f),
        },
        None => None,
    };
    let limit = route.body_limit(&method, &path);
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(protocol, limit);
    }
    let (bytes, held) = match front.guard.budget.read(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(%method, %path, error = %e, "refused a rest request body");
            return body_error(protocol, &e);
        }
    };
    if let Some(p) = pending {
        let (date_ms, signature) = (p.date_ms(), p.signature().to_vec());
        let access_key_id = match p.finish(method.as_str(), &parts.uri, &parts.headers, &bytes) {
            Ok(id) => id,
            Err(f) => return refuse(protocol, &method, &path, f),
        };
        let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        if mutating {
            let key = replay_key(&signature, &parts.headers);
            if let Err(r) = front.guard.replay.check(&key, date_ms, now_ms()) {
                return refuse(protocol, &method, &path, r.into());
            }
        }
        // Who signed, for the services' `Shared::authorize`.
        parts
            .extensions
            .insert(lamina_proto::auth::Caller { access_key_id });
    }
    drop(held);
    Services::dispatch(route, parts, bytes).await
}

/// Serves `router` on `listener` until `shutdown` (step 1 of the module docs).
pub(super) async fn serve(
    listener: impl Into<http_listener::HttpListener>,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limits = Limits {
        max_connections: MAX_CONNECTIONS,
        header_timeout: HEADER_READ_TIMEOUT,
        max_header_bytes: MAX_HEADER_BYTES,
        max_streams: MAX_STREAMS,
    };
    http_listener::serve(listener, router, limits, "rest", shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_invocations_and_the_rest_get_their_limits() {
        let inv = 7 << 20;
        let l = |m: Method, p: &str| body_limit(&m, p, inv);
        assert_eq!(
            l(Method::POST, "/2015-03-31/functions"),
            MAX_REST_BODY_BYTES
        );
        assert_eq!(
            l(Method::POST, "/2015-03-31/functions/"),
            MAX_REST_BODY_BYTES
        );
        assert_eq!(
            l(Method::PUT, "/2015-03-31/functions/f/code"),
            MAX_REST_BODY_BYTES
        );
        assert_eq!(
            l(Method::POST, "/2018-10-31/layers/l/versions"),
            MAX_REST_BODY_BYTES
        );
        assert_eq!(l(Method::POST, "/2015-03-31/functions/f/invocations"), inv);
        assert_eq!(
            l(
                Method::POST,
                "/2021-11-15/functions/f/response-streaming-invocations"
            ),
            inv
        );
        assert_eq!(
            l(Method::PUT, "/2015-03-31/functions/f/configuration"),
            SMALL_BODY_BYTES
        );
        assert_eq!(
            l(Method::POST, "/2015-03-31/functions/f/versions"),
            SMALL_BODY_BYTES
        );
        assert_eq!(
            l(Method::PUT, "/2015-03-31/functions/f/invocations"),
            SMALL_BODY_BYTES
        );
    }
}
