//! How the worker reaches the controller's REST API for the role endpoints: an [`Upstream`]
//! sends one request and returns the answer's head with its body still streaming. [`PlainHttp`]
//! is HTTP/1.1 over TCP; a TLS connector (trusting the cluster CA) implements the same trait.
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the controller's rest api at {authority} cannot be reached: {detail}")]
    Unreachable { authority: String, detail: String },
    #[error("the controller's rest api did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("invalid controller rest address {0:?}: give http://HOST:PORT")]
    Address(String),
}

pub type UpstreamFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Incoming>, UpstreamError>> + Send>>;

/// Sends requests to the controller's REST API.
pub trait Upstream: Send + Sync + 'static {
    /// The controller's `host:port` (what a request signed by the worker names as `Host`).
    fn authority(&self) -> &str;
    /// Sends `req` (its URI: path and query only; its headers as they are, `Host` included).
    fn send(&self, req: http::Request<Full<Bytes>>) -> UpstreamFuture;
}

/// HTTP/1.1 to the controller's REST listener, connections kept alive and shared by the
/// sandboxes of the worker.
pub struct PlainHttp {
    authority: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl PlainHttp {
    /// `address`: `http://HOST:PORT` or `HOST:PORT`.
    pub fn new(address: &str) -> Result<PlainHttp, UpstreamError> {
        let authority = address
            .strip_prefix("http://")
            .unwrap_or(address)
            .trim_end_matches('/');
        if authority.is_empty()
            || authority.contains(['/', '@', ' '])
            || address.contains("https://")
        {
            return Err(UpstreamError::Address(address.to_string()));
        }
        authority
            .parse::<http::uri::Authority>()
            .map_err(|_| UpstreamError::Address(address.to_string()))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Ok(PlainHttp {
            authority: authority.to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }
}

impl Upstream for PlainHttp {
    fn authority(&self) -> &str {
        &self.authority
    }

    fn send(&self, req: http::Request<Full<Bytes>>) -> UpstreamFuture {
        send_with(&self.client, &self.authority, req)
    }
}

/// HTTPS to the controller's REST listener (TLS with the cluster's client configuration: the
/// cluster CA as the only root), HTTP/1.1 inside.
pub struct TlsHttp {
    authority: String,
    client: Client<TlsConnector, Full<Bytes>>,
}

impl TlsHttp {
    /// `address`: `https://HOST:PORT`; `config` trusts the cluster CA (its ALPN is set to
    /// `http/1.1` here).
    pub fn new(
        address: &str,
        config: std::sync::Arc<rustls::ClientConfig>,
    ) -> Result<TlsHttp, UpstreamError> {
        let authority = address
            .strip_prefix("https://")
            .ok_or_else(|| UpstreamError::Address(address.to_string()))?
            .trim_end_matches('/');
        authority
            .parse::<http::uri::Authority>()
            .map_err(|_| UpstreamError::Address(address.to_string()))?;
        let mut config = (*config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsHttp {
            authority: authority.to_string(),
            client: Client::builder(TokioExecutor::new()).build(TlsConnector {
                tls: tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
            }),
        })
    }
}

impl Upstream for TlsHttp {
    fn authority(&self) -> &str {
        &self.authority
    }

    fn send(&self, req: http::Request<Full<Bytes>>) -> UpstreamFuture {
        send_with(&self.client, &self.authority, req)
    }
}

/// The upstream for `address`: `http://` over TCP, `https://` with `tls` (required then).
pub fn upstream_for(
    address: &str,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<std::sync::Arc<dyn Upstream>, UpstreamError> {
    if address.starts_with("https://") {
        let tls = tls.ok_or_else(|| {
            UpstreamError::Address(format!(
                "{address} is https: the worker needs the cluster CA (--tls-ca) to reach it"
            ))
        })?;
        Ok(std::sync::Arc::new(TlsHttp::new(address, tls)?))
    } else {
        Ok(std::sync::Arc::new(PlainHttp::new(address)?))
    }
}

fn send_with<C>(
    client: &Client<C, Full<Bytes>>,
    authority: &str,
    mut req: http::Request<Full<Bytes>>,
) -> UpstreamFuture
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let authority = authority.to_string();
    let uri = format!("http://{authority}{path}").parse::<http::Uri>();
    let client = client.clone();
    Box::pin(async move {
        *req.uri_mut() = uri.map_err(|e| UpstreamError::Unreachable {
            authority: authority.clone(),
            detail: e.to_string(),
        })?;
        match tokio::time::timeout(super::UPSTREAM_TIMEOUT, client.request(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(UpstreamError::Unreachable {
                authority,
                detail: e.to_string(),
            }),
            Err(_) => Err(UpstreamError::Timeout(super::UPSTREAM_TIMEOUT)),
        }
    })
}

/// TCP then TLS to the URI's host (a DNS name or an IP address) and port.
#[derive(Clone)]
pub struct TlsConnector {
    tls: tokio_rustls::TlsConnector,
}

/// A TLS connection as hyper's client takes it.
pub struct TlsIo(hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>);

impl hyper_util::client::legacy::connect::Connection for TlsIo {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        hyper_util::client::legacy::connect::Connected::new()
    }
}

impl hyper::rt::Read for TlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TlsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for TlsConnector {
    type Response = TlsIo;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsIo, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or("the controller's rest address has no host")?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let name = rustls_pki_types::ServerName::try_from(host.clone())?;
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = tls.connect(name, tcp).await?;
            Ok(TlsIo(hyper_util::rt::TokioIo::new(stream)))
        })
    }
}
