use std::os::unix::fs::PermissionsExt;

use rustls::client::danger::ServerCertVerifier;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

use super::*;
use crate::certs::Authority;

struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    node: TlsMaterial,
    /// A certificate for the same names from another CA.
    stranger: TlsMaterial,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::load_or_create(&dir.path().join("tls")).unwrap();
    let node = ca.issue("node", &["node.example".into()]).unwrap();
    let other = Authority::load_or_create(&dir.path().join("other")).unwrap();
    let stranger = other.issue("node", &[]).unwrap();
    Pki {
        ca: ca.ca_path(),
        node: TlsMaterial::load(&node.cert, &node.key, &ca.ca_path()).unwrap(),
        stranger: TlsMaterial::load(&stranger.cert, &stranger.key, &other.ca_path()).unwrap(),
        _dir: dir,
    }
}

#[test]
fn resolve_needs_material_or_plaintext_on_loopback_only() {
    let loopback: SocketAddr = "127.0.0.1:9670".parse().unwrap();
    let v6: SocketAddr = "[::1]:9680".parse().unwrap();
    let public: SocketAddr = "10.1.2.3:9670".parse().unwrap();
    let e = TlsFlags::default()
        .resolve(&[("--listen", loopback)])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--tls-cert") && e.contains("--tls-key") && e.contains("--plaintext"),
        "{e}"
    );
    let plain = TlsFlags {
        plaintext: true,
        ..TlsFlags::default()
    };
    assert!(plain
        .resolve(&[("--listen", loopback), ("--rest-listen", v6)])
        .unwrap()
        .is_none());
    let e = plain
        .resolve(&[("--listen", loopback), ("--http-listen", public)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--http-listen is 10.1.2.3:9670"), "{e}");
    let any: SocketAddr = "0.0.0.0:9670".parse().unwrap();
    assert!(plain.resolve(&[("--listen", any)]).is_err());

    let p = pki();
    let both = TlsFlags {
        cert: Some(p.ca.clone()),
        plaintext: true,
        ..TlsFlags::default()
    };
    assert!(matches!(both.resolve(&[]), Err(TlsError::Both)));
    let partial = TlsFlags {
        cert: Some(p.ca.clone()),
        key: Some(p.ca.clone()),
        ..TlsFlags::default()
    };
    let e = partial.resolve(&[]).unwrap_err().to_string();
    assert!(e.contains("needs --tls-ca"), "{e}");
    // A certificate file given as the key: named in the error.
    let wrong = TlsFlags {
        cert: Some(p.ca.clone()),
        key: Some(p.ca.clone()),
        ca: Some(p.ca.clone()),
        plaintext: false,
    };
    let e = wrong
        .resolve(&[("--listen", public)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("no PEM private key"), "{e}");
}

#[test]
fn authority_persists_and_issues_chains_that_verify() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let ca = Authority::load_or_create(&tls).unwrap();
    let first = std::fs::read(ca.ca_path()).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tls.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&tls), 0o700);
    drop(ca);
    // Reopened: the same CA file, and what it issues now chains to it.
    let ca = Authority::load_or_create(&tls).unwrap();
    assert_eq!(std::fs::read(ca.ca_path()).unwrap(), first);
    let issued = ca.issue("worker", &["10.0.0.7".into()]).unwrap();
    assert_eq!(mode(&issued.key), 0o600);
    let m = TlsMaterial::load(&issued.cert, &issued.key, &ca.ca_path()).unwrap();
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::clone(&m.roots),
        provider(),
    )
    .build()
    .unwrap();
    let now = rustls::pki_types::UnixTime::now();
    for name in ["10.0.0.7", "127.0.0.1", "localhost", "::1"] {
        let server = ServerName::try_from(name.to_string()).unwrap();
        verifier
            .verify_server_cert(&m.chain[0], &[], &server, &[], now)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let other = ServerName::try_from("10.0.0.8".to_string()).unwrap();
    assert!(verifier
        .verify_server_cert(&m.chain[0], &[], &other, &[], now)
        .is_err());
    // No temporary files are left behind.
    for entry in std::fs::read_dir(&tls).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(!name.ends_with(".tmp"), "{name}");
    }
}

#[test]
fn server_configs_offer_alpn_and_ask_for_client_certs_as_told() {
    let p = pki();
    let grpc = p
        .node
        .server_config(ClientCerts::Optional, &[ALPN_H2])
        .unwrap();
    assert_eq!(grpc.alpn_protocols, vec![b"h2".to_vec()]);
    let http = p
        .node
        .server_config(ClientCerts::NotAsked, &[ALPN_H2, ALPN_HTTP11])
        .unwrap();
    assert_eq!(http.alpn_protocols.len(), 2);
    let client = p.node.client_config().unwrap();
    assert_eq!(client.alpn_protocols, vec![b"h2".to_vec()]);
    assert!(client.client_auth_cert_resolver.has_certs());
    let anonymous = client_config((*p.node.roots).clone(), None).unwrap();
    assert!(!anonymous.client_auth_cert_resolver.has_certs());
}

/// Serves `config` with [`tls_incoming`]; each accepted connection answers `pong` and tells
/// whether the client presented a certificate.
async fn echo_server(config: Arc<ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = Box::pin(tls_incoming(listener, config, 4));
    tokio::spawn(async move {
        while let Some(Ok(mut tls)) = incoming.next().await {
            let certs = tls.get_ref().1.peer_certificates().map_or(0, |c| c.len());
            let _ = tls.write_all(format!("pong {certs}").as_bytes()).await;
            let _ = tls.shutdown().await;
        }
    });
    addr
}

async fn call(connector: &mut TlsConnect, addr: SocketAddr) -> Result<String, BoxError> {
    let uri: http::Uri = format!("http://{addr}").parse()?;
    let io = connector.call(uri).await?;
    let mut tls = io.into_inner();
    let mut out = String::new();
    tls.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn mutual_tls_accepts_the_cluster_ca_only() {
    let p = pki();
    let optional = echo_server(
        p.node
            .server_config(ClientCerts::Optional, &[ALPN_H2])
            .unwrap(),
    )
    .await;
    let required = echo_server(
        p.node
            .server_config(ClientCerts::Required, &[ALPN_H2])
            .unwrap(),
    )
    .await;
    let mut member = TlsConnect::new(p.node.client_config().unwrap());
    let mut anonymous = TlsConnect::new(client_config((*p.node.roots).clone(), None).unwrap());
    // Trusts the stranger's CA: the cluster's server certificate does not verify.
    let mut outsider = TlsConnect::new(p.stranger.client_config().unwrap());
    // Trusts the cluster CA but presents the stranger's certificate.
    let impostor_config = client_config(
        (*p.node.roots).clone(),
        Some((p.stranger.chain.clone(), p.stranger.key.clone_key())),
    )
    .unwrap();
    let mut impostor = TlsConnect::new(impostor_config);

    assert_eq!(call(&mut member, optional).await.unwrap(), "pong 1");
    assert_eq!(call(&mut member, required).await.unwrap(), "pong 1");
    assert_eq!(call(&mut anonymous, optional).await.unwrap(), "pong 0");
    assert!(call(&mut anonymous, required).await.is_err());
    let e = call(&mut outsider, optional).await.unwrap_err().to_string();
    assert!(e.contains("certificate"), "{e}");
    assert!(call(&mut impostor, optional).await.is_err());
    assert!(call(&mut impostor, required).await.is_err());
    // The listener still serves after the refusals.
    assert_eq!(call(&mut member, required).await.unwrap(), "pong 1");
}

#[tokio::test]
async fn a_silent_client_does_not_hold_up_the_accepts() {
    let p = pki();
    let addr = echo_server(
        p.node
            .server_config(ClientCerts::NotAsked, &[ALPN_H2])
            .unwrap(),
    )
    .await;
    // Connections that never start a handshake, up to the bound of 4 handshakes.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut member = TlsConnect::new(p.node.client_config().unwrap());
    let answered = tokio::time::timeout(Duration::from_secs(5), call(&mut member, addr)).await;
    // Not asked for a certificate: none was sent.
    assert_eq!(answered.unwrap().unwrap(), "pong 0");
}

#[test]
fn loopback_hosts_and_tonic_uris() {
    assert!(is_loopback_host("127.0.0.1"));
    assert!(is_loopback_host("[::1]"));
    assert!(is_loopback_host("localhost"));
    assert!(!is_loopback_host("10.0.0.1"));
    assert!(!is_loopback_host("example.com"));
    assert_eq!(tonic_uri("https://h:1"), "http://h:1");
    assert_eq!(tonic_uri("http://h:1"), "http://h:1");
}
