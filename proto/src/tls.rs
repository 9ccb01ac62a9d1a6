//! TLS for every Lamina listener and client (rustls with the `ring` provider): loading PEM files,
//! the server and client configurations, the resolution of `--tls-cert/--tls-key/--tls-ca` and
//! `--plaintext`, an acceptor that hands tonic's `serve_with_incoming` finished TLS connections
//! (handshakes run off the accept loop, bounded in number and time), a connector for tonic's
//! `Endpoint::connect_with_connector`, and the layer that makes a gRPC service demand a client
//! certificate (the controller's `Cluster` service: workers authenticate with mTLS on top of the
//! cluster credential).
//!
//! Controller and workers each hold one certificate signed by the cluster CA (both server and client
//! authentication): each verifies the other's with `--tls-ca`, in both directions.
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_stream::Stream;
use tonic::body::BoxBody;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower_service::Service;

/// ALPN of gRPC (HTTP/2 only).
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN of HTTP/1.1 (the REST API and the gateway serve both).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once on one gRPC listener; more connections are closed as they
/// arrive (a handshake costs the server a key exchange and a signature).
pub const MAX_HANDSHAKES: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----): pass the {what} as PEM"
    )]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error(
        "{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): pass the key of --tls-cert"
    )]
    NoKey { path: PathBuf },
    #[error("invalid PEM in {path}: {detail}")]
    Pem { path: PathBuf, detail: String },
    #[error("invalid CA certificate in {path}: {source}")]
    Ca {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error(
        "cannot build the TLS configuration: {0}; check that --tls-key is the key of --tls-cert"
    )]
    Config(rustls::Error),
    #[error("cannot build the client certificate verifier from --tls-ca: {0}")]
    Verifier(String),
    #[error(
        "no TLS material: pass --tls-cert PEM --tls-key PEM --tls-ca PEM (fnctl up generates them \
         under DATA_DIR/tls), or --plaintext to serve unencrypted traffic on loopback addresses only"
    )]
    Missing,
    #[error(
        "{given} needs {missing} too: pass --tls-cert PEM --tls-key PEM --tls-ca PEM together"
    )]
    Incomplete {
        given: &'static str,
        missing: &'static str,
    },
    #[error("--plaintext and --tls-cert/--tls-key/--tls-ca exclude each other: drop one")]
    Both,
    #[error(
        "--plaintext serves unencrypted traffic on loopback addresses only, but {flag} is {addr}: \
         pass --tls-cert PEM --tls-key PEM --tls-ca PEM instead"
    )]
    NotLoopback { flag: String, addr: String },
    #[error("invalid TLS server name {0:?}: use a host name or an IP address")]
    ServerName(String),
}

/// The crypto provider of every TLS configuration: `ring` (aws-lc-rs, rustls' default, needs a C
/// build too slow for our machines; ring has no post-quantum key exchange, hence the deprecation).
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates of a PEM file (a chain: leaf first).
pub fn load_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path, "private key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        e => TlsError::Pem {
            path: path.to_path_buf(),
            detail: e.to_string(),
        },
    })
}

/// The trust anchors of a PEM file of CA certificates.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, "CA certificate")? {
        roots.add(cert).map_err(|source| TlsError::Ca {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(roots)
}

/// Whether a server asks its clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// No client certificate (users' clients: fnctl, boto3, browsers).
    NotAsked,
    /// Asked for and verified against the CA when sent; clients without one are served too (the
    /// controller's gRPC port: users without, workers with; [`RequireClientCert`] guards `Cluster`).
    Optional,
    /// Required and verified against the CA (a worker's port: only the controller calls it).
    Required,
}

/// A node's TLS material: its certificate chain and key, and the CA it trusts for its peers.
#[derive(Clone)]
pub struct TlsMaterial {
    pub chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    pub roots: Arc<RootCertStore>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("chain", &self.chain.len())
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Reads `--tls-cert`, `--tls-key` and `--tls-ca`, and checks the key matches the certificate.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<TlsMaterial, TlsError> {
        let m = TlsMaterial {
            chain: load_certs(cert, "certificate (--tls-cert)")?,
            key: Arc::new(load_key(key)?),
            roots: Arc::new(load_roots(ca)?),
        };
        m.server_config(ClientCerts::NotAsked, &[ALPN_H2])?;
        Ok(m)
    }

    /// A server configuration presenting this node's chain, offering `alpn`, with client
    /// certificates verified against the CA as `clients` says.
    pub fn server_config(
        &self,
        clients: ClientCerts,
        alpn: &[&[u8]],
    ) -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?;
        let builder = match clients {
            ClientCerts::NotAsked => builder.with_no_client_auth(),
            ClientCerts::Optional | ClientCerts::Required => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::clone(&self.roots),
                    provider(),
                );
                let verifier = if clients == ClientCerts::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(TlsError::Config)?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// A gRPC client configuration that verifies servers against the CA and presents this node's
    /// certificate (mTLS).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        client_config(
            (*self.roots).clone(),
            Some((self.chain.clone(), self.key.clone_key())),
        )
    }
}

/// A gRPC client configuration (ALPN h2) that trusts `roots`, presenting `identity` when given.
pub fn client_config(
    roots: RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(TlsError::Config)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The TLS flags of a process, as given.
#[derive(Debug, Clone, Default)]
pub struct TlsFlags {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub plaintext: bool,
}

impl TlsFlags {
    /// `Some(material)`: serve (and call) with TLS; `None`: plaintext, allowed only with
    /// `--plaintext` and when every address in `listens` (flag, address) is a loopback address.
    pub fn resolve(&self, listens: &[(&str, SocketAddr)]) -> Result<Option<TlsMaterial>, TlsError> {
        let any = self.cert.is_some() || self.key.is_some() || self.ca.is_some();
        if self.plaintext {
            if any {
                return Err(TlsError::Both);
            }
            if let Some((flag, addr)) = listens.iter().find(|(_, a)| !a.ip().is_loopback()) {
                return Err(TlsError::NotLoopback {
                    flag: flag.to_string(),
                    addr: addr.to_string(),
                });
            }
            return Ok(None);
        }
        match (&self.cert, &self.key, &self.ca) {
            (Some(cert), Some(key), Some(ca)) => Ok(Some(TlsMaterial::load(cert, key, ca)?)),
            (None, None, None) => Err(TlsError::Missing),
            (cert, key, _) => {
                let given = if cert.is_some() {
                    "--tls-cert"
                } else if key.is_some() {
                    "--tls-key"
                } else {
                    "--tls-ca"
                };
                let missing = if cert.is_none() {
                    "--tls-cert"
                } else if key.is_none() {
                    "--tls-key"
                } else {
                    "--tls-ca"
                };
                Err(TlsError::Incomplete { given, missing })
            }
        }
    }
}

/// Checks that a plaintext URL (`http://HOST:PORT`) only names a loopback host: a client that
/// would send credentials in the clear across a network refuses to (`--plaintext` peers only).
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

// ---------------------------------------------------------------- accepting

/// Runs the TLS handshake of an accepted connection, within `timeout`.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the TLS handshake did not finish in time",
        )),
    }
}

/// The TLS connections of `listener` for tonic's `serve_with_incoming`: each accepted connection
/// (TCP_NODELAY set) is shaken hands with in a task of its own within [`HANDSHAKE_TIMEOUT`], so a
/// slow client never holds up the accepts; at most `max_handshakes` at once (more are closed as
/// they arrive). Failed handshakes are logged and dropped. The accept task ends with the stream.
pub fn tls_incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    max_handshakes: usize,
) -> impl Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<TcpStream>>> + Send + 'static
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let handshakes = Arc::new(Semaphore::new(max_handshakes.max(1)));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors, or the peer gave up: keep serving the others.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
                tracing::warn!(%peer, limit = max_handshakes, "too many TLS handshakes in progress: closing a new connection");
                continue;
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
            }
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match handshake(&acceptor, stream, HANDSHAKE_TIMEOUT).await {
                    Ok(tls) => {
                        drop(permit);
                        // The server stopped when the channel is closed: the connection goes.
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

// ---------------------------------------------------------------- connecting

/// A connector for tonic's `Endpoint::connect_with_connector`: TCP (TCP_NODELAY), then TLS with
/// `config`, the server's name taken from the URI's host (a DNS name or an IP address). Give tonic
/// the endpoint as `http://HOST:PORT` (tonic refuses `https` URIs it does not secure itself).
#[derive(Clone)]
pub struct TlsConnect {
    connector: TlsConnector,
}

impl TlsConnect {
    pub fn new(config: Arc<ClientConfig>) -> TlsConnect {
        TlsConnect {
            connector: TlsConnector::from(config),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<http::Uri> for TlsConnect {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connector = self.connector.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| TlsError::ServerName(uri.to_string()))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let name = ServerName::try_from(host.clone())
                .map_err(|_| TlsError::ServerName(host.clone()))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

/// `https://HOST:PORT` -> `http://HOST:PORT` for tonic's endpoint when [`TlsConnect`] secures it.
pub fn tonic_uri(endpoint: &str) -> String {
    match endpoint.strip_prefix("https://") {
        Some(rest) => format!("http://{rest}"),
        None => endpoint.to_string(),
    }
}

// ---------------------------------------------------------------- requiring a client certificate

/// Whether the request came over TLS with a client certificate (verified against the CA by the
/// server's verifier: one that does not verify ends the handshake).
pub fn has_client_cert(extensions: &http::Extensions) -> bool {
    extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .is_some_and(|certs| !certs.is_empty())
}

/// A gRPC service that only sees requests whose connection presented a client certificate signed
/// by the cluster CA (the controller's `Cluster` service: only workers call it).
#[derive(Clone)]
pub struct RequireClientCert<S> {
    inner: S,
    required: bool,
}

impl<S> RequireClientCert<S> {
    pub fn new(inner: S) -> RequireClientCert<S> {
        RequireClientCert::when(true, inner)
    }

    /// `inner`, guarded only when `required` (a plaintext server has no certificates to ask for).
    pub fn when(required: bool, inner: S) -> RequireClientCert<S> {
        RequireClientCert { inner, required }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for RequireClientCert<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<BoxBody>> for RequireClientCert<S>
where
    S: Service<http::Request<BoxBody>, Response = http::Response<BoxBody>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<BoxBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
        if !self.required || has_client_cert(req.extensions()) {
            return Box::pin(self.inner.call(req));
        }
        tracing::warn!(path = %req.uri().path(), "refused a cluster call without a client certificate");
        let status = tonic::Status::unauthenticated(
            "the Cluster service needs a client certificate signed by the cluster CA: start the \
             worker with --tls-cert PEM --tls-key PEM --tls-ca PEM",
        );
        Box::pin(async move { Ok(status.into_http()) })
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
