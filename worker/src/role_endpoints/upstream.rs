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

    fn send(&self, mut req: http::Request<Full<Bytes>>) -> UpstreamFuture {
        let path = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let authority = self.authority.clone();
        let uri = format!("http://{authority}{path}").parse::<http::Uri>();
        let client = self.client.clone();
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
}
