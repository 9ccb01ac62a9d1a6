//! The accept loops of a sandbox's role endpoints: at most [`MAX_CONNECTIONS`] connections each
//! (more are closed at once), HTTP/1.1 with hyper's head limits and timer, stopped with the
//! sandbox.
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::extension::Extension;
use super::forward::Forwarder;
use super::{SandboxCredentials, Upstream, HEADER_TIMEOUT, MAX_CONNECTIONS, MAX_HEADER_BYTES};

/// What an endpoint answers with.
pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// The role endpoints of one sandbox (served until its stop token is cancelled).
pub struct RoleEndpoints {
    pub extension: Arc<Extension>,
}

/// Serves the AWS API endpoint on `aws` and the extension on `extension` (the listeners the
/// sandbox passed back) for a sandbox with `creds`, until `stop`. `env` is the function's
/// environment (the extension's settings).
pub fn serve(
    aws: std::net::TcpListener,
    extension: std::net::TcpListener,
    creds: SandboxCredentials,
    upstream: Arc<dyn Upstream>,
    env: &std::collections::BTreeMap<String, String>,
    stop: CancellationToken,
) -> std::io::Result<RoleEndpoints> {
    let aws = TcpListener::from_std(aws)?;
    let ext_listener = TcpListener::from_std(extension)?;
    let forwarder = Arc::new(Forwarder::new(creds.clone(), Arc::clone(&upstream)));
    let ext = Arc::new(Extension::new(creds, upstream, env));
    tokio::spawn(accept_loop(aws, stop.clone(), "aws endpoint", {
        let f = Arc::clone(&forwarder);
        move |req| {
            let f = Arc::clone(&f);
            async move { f.handle(req).await }
        }
    }));
    tokio::spawn(accept_loop(ext_listener, stop, "secrets extension", {
        let e = Arc::clone(&ext);
        move |req| {
            let e = Arc::clone(&e);
            async move { e.handle(req).await }
        }
    }));
    Ok(RoleEndpoints { extension: ext })
}

async fn accept_loop<H, F>(
    listener: TcpListener,
    stop: CancellationToken,
    what: &'static str,
    handler: H,
) where
    H: Fn(http::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = http::Response<Body>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                crate::health::FDS.note_io_error(&e);
                tracing::warn!(error = %e, endpoint = what, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue; // over the cap: closed
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let h = handler.clone();
                async move { Ok::<_, std::convert::Infallible>(h(req).await) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {}
            }
            drop(permit);
        });
    }
}
