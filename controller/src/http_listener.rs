//! The connection loop of the controller's HTTP listeners (the REST API of `rest/` and the public
//! gateway of `gateway/`): accept, bound, serve HTTP/1.1 and HTTP/2 with an axum router, stop
//! gracefully. What a connection may hold is bounded by [`Limits`]: how many at once (more are
//! closed as they arrive), how long a request head may take (an idle keep-alive connection is
//! closed after the same time: hyper restarts the timer for every head it waits for), how large
//! a head may be, and HTTP/2 streams per connection.
//!
//! With TLS ([`HttpListener::tls`]), each connection's handshake runs in its connection's task (never
//! on the accept loop), within the head timeout counted from the accept; requests served over it
//! carry the [`SecureTransport`] extension.
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How long a stop waits for the connections in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The bounds of one listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are closed as they arrive.
    pub max_connections: usize,
    /// A request's head must arrive within this (and an idle connection waits no longer).
    pub header_timeout: Duration,
    /// The largest request head (HTTP/1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    /// HTTP/2 streams one connection may have open at once.
    pub max_streams: u32,
}

/// A listening socket and, when it serves HTTPS, its TLS configuration.
pub struct HttpListener {
    pub tcp: TcpListener,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl HttpListener {
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.tcp.local_addr()
    }
}

impl From<TcpListener> for HttpListener {
    /// Plain HTTP.
    fn from(tcp: TcpListener) -> HttpListener {
        HttpListener { tcp, tls: None }
    }
}

/// A request extension: the request came over TLS (IAM's `aws:SecureTransport`).
#[derive(Debug, Clone, Copy)]
pub struct SecureTransport;

/// Serves `router` on `listener` until `shutdown`; `name` names the listener in logs.
pub async fn serve(
    listener: impl Into<HttpListener>,
    router: Router,
    limits: Limits,
    name: &'static str,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let HttpListener { tcp: listener, tls } = listener.into();
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_pending_accept_reset_streams(Some(64));
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, or the peer gave up: keep serving the others.
                    tracing::warn!(listener = name, error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::warn!(listener = name, %peer, limit = limits.max_connections, "too many connections: closing a new one");
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let router = router.clone();
        let header_timeout = limits.header_timeout;
        let secure = acceptor.is_some();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                // Handlers that want the peer's address (the gateway's `sourceIp`) find it here.
                req.extensions_mut().insert(Peer(peer));
                if secure {
                    req.extensions_mut().insert(SecureTransport);
                }
                tower_service::Service::call(&mut router.clone(), req.map(Body::new))
            });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + header_timeout;
            let served = match acceptor {
                None => {
                    // hyper's header timeout starts once it knows the HTTP version: a client that
                    // sends nothing (or a piece of the HTTP/2 preface) would be held forever
                    // before that.
                    if !version_known(&stream, header_timeout).await {
                        tracing::debug!(listener = name, %peer, "closed a connection that sent no request in time");
                        return;
                    }
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    watcher.watch(conn).await
                }
                Some(acceptor) => {
                    let Some(stream) = tls_start(&acceptor, stream, deadline).await else {
                        tracing::debug!(listener = name, %peer, "closed a TLS connection that sent no request in time");
                        return;
                    };
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    watcher.watch(conn).await
                }
            };
            if let Err(e) = served {
                tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(listener = name, grace = ?SHUTDOWN_GRACE, "connections still open after the grace period");
    }
    Ok(())
}

/// Waits (at most `timeout`) until the first bytes tell HTTP/1 from HTTP/2; `false`: they did not
/// come in time, or the client closed.
async fn version_known(stream: &tokio::net::TcpStream, timeout: Duration) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 24];
    loop {
        let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await;
        match peeked {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return false,
            Ok(Ok(n)) if n >= PREFACE.len() || buf[..n] != PREFACE[..n] => return true,
            // A piece of the HTTP/2 preface: wait for the rest (peek returns at once now).
            Ok(Ok(_)) => {
                if tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(10)))
                    .await
                    .is_err()
                {
                    return false;
                }
            }
        }
    }
}

/// The TLS handshake, then the first bytes of the request (enough to tell HTTP/1 from HTTP/2, as
/// [`version_known`] does for plain connections), all before `deadline`; `None`: the handshake
/// failed, or the client was too slow or closed.
async fn tls_start(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    deadline: tokio::time::Instant,
) -> Option<Prefixed<tokio_rustls::server::TlsStream<Lingering>>> {
    use tokio::io::AsyncReadExt;
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let stream = Lingering(Some(stream));
    let mut tls = tokio::time::timeout_at(deadline, acceptor.accept(stream))
        .await
        .ok()?
        .ok()?;
    let mut head = Vec::with_capacity(PREFACE.len());
    let mut buf = [0u8; 24];
    while head.len() < PREFACE.len() && head[..] == PREFACE[..head.len()] {
        let want = PREFACE.len() - head.len();
        match tokio::time::timeout_at(deadline, tls.read(&mut buf[..want])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(Prefixed {
        head,
        read: 0,
        inner: tls,
    })
}

/// How long, and how many bytes, a closed TLS connection's unread request is drained for.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 16 << 20;

/// The TCP stream under a TLS connection, closed gracefully when dropped: its write side is shut
/// and what the client still sends is read and discarded (at most [`LINGER_MAX_BYTES`], for
/// [`LINGER`]) in a task of its own. An answer sent before the request's body was read (413, 401)
/// then reaches the client: closing a socket with unread data resets it, and a TLS client (Python's
/// `ssl`, so boto3) reports that reset while still writing its body instead of reading the answer.
struct Lingering(Option<TcpStream>);

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(mut stream) = self.0.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = stream.shutdown().await;
            let deadline = tokio::time::Instant::now() + LINGER;
            let mut buf = vec![0u8; 16 * 1024];
            let mut left = LINGER_MAX_BYTES;
            while left > 0 {
                match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
                    _ => break,
                }
            }
        });
    }
}

fn closed() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "the connection is closed")
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(s) => Pin::new(s).poll_read(cx, buf),
            None => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.0.as_mut() {
            Some(s) => Pin::new(s).poll_write(cx, buf),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(s) => Pin::new(s).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.0.as_mut() {
            Some(s) => Pin::new(s).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// A stream whose first bytes were read already: they are read again first.
struct Prefixed<S> {
    head: Vec<u8>,
    read: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.read < this.head.len() {
            let n = (this.head.len() - this.read).min(buf.remaining());
            buf.put_slice(&this.head[this.read..this.read + n]);
            this.read += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The address of the client a request came from (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);
