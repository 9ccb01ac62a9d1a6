//! Connections of the Runtime API: the accept loop with its cap per sandbox, hyper's header limits,
//! and the read deadline of a request whose bytes started to arrive ([`Watched`]).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::state::Shared;
use super::{MAX_HEADERS, MAX_HEADER_BYTES};

/// hyper's read buffer per connection (its minimum is 8 KiB): what one connection can make the
/// worker hold besides the body budget. Headers are bounded by [`MAX_HEADER_BYTES`] within it.
const READ_BUFFER: usize = 64 << 10;
/// How long accept waits after a failure (EMFILE and friends) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);

/// No request in progress: nothing is timed (a keep-alive connection, a frozen sandbox's).
const IDLE: u8 = 0;
/// Bytes of a request arrived, its headers are not complete: the deadline runs.
const HEAD: u8 = 1;
/// The handler runs (it times the body itself; `GET next` waits untimed for an event).
const HANDLING: u8 = 2;

pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                crate::health::FDS.note_io_error(&e);
                tracing::warn!(error = %e, "runtime api: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refuse(&stream, shared.limits.max_connections);
            continue; // dropped: closed
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "runtime api: cannot set TCP_NODELAY");
        }
        tokio::spawn(serve_connection(
            stream,
            shared.clone(),
            shutdown.clone(),
            permit,
        ));
    }
}

/// Tells a connection over the cap why it is closed (best effort: one non-blocking write, no task
/// and no wait, so that refusing costs the worker nothing it has to keep).
fn refuse(stream: &TcpStream, max: usize) {
    let body = format!(
        r#"{{"errorMessage":"the runtime api serves at most {max} connections per sandbox: reuse a keep-alive connection or close idle ones","errorType":"TooManyConnections"}}"#
    );
    let reply = format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = stream.try_write(reply.as_bytes()) {
        tracing::debug!(error = %e, "runtime api: cannot tell a refused connection why");
    }
    tracing::debug!(max, "runtime api: connection over the cap refused");
}

async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let phase = Arc::new(AtomicU8::new(IDLE));
    let io = Watched::new(stream, phase.clone(), shared.limits.read_timeout);
    let service = service_fn(move |req| {
        let shared = shared.clone();
        let phase = phase.clone();
        async move {
            phase.store(HANDLING, Ordering::Release);
            let resp = super::http::handle(shared, req).await;
            phase.store(IDLE, Ordering::Release);
            resp
        }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .title_case_headers(true)
        .max_buf_size(READ_BUFFER)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(io), service);
    tokio::select! {
        r = conn => if let Err(e) = r {
            tracing::debug!(error = %e, "runtime api: connection ended with an error");
        },
        _ = shutdown.cancelled() => {}
    }
}

/// A connection whose reads fail with `TimedOut` when a request's bytes started arriving and its
/// headers did not complete within the timeout (slowloris). Only the head is timed here: the
/// handler times the body's pieces, and nothing is timed while no request is in progress (a
/// runtime's keep-alive connection, or any connection of a frozen sandbox).
pub(crate) struct Watched {
    inner: TcpStream,
    phase: Arc<AtomicU8>,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl Watched {
    fn new(inner: TcpStream, phase: Arc<AtomicU8>, timeout: Duration) -> Watched {
        Watched {
            inner,
            phase,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let started = buf.filled().len() > before
                    && self
                        .phase
                        .compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok();
                if started {
                    let at = Instant::now() + self.timeout;
                    self.deadline.as_mut().reset(at);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if self.phase.load(Ordering::Acquire) == HEAD
                    && self.deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "runtime api: request headers not complete within {:?}: connection closed",
                            self.timeout
                        ),
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
