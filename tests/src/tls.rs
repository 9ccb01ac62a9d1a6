//! TLS of the end-to-end clusters: a CA of their own per cluster (`DIR/tls`, made by
//! `lamina_proto::certs` as `fnctl up` makes its own), a controller certificate for loopback and
//! the controller's listen host, and a certificate per worker for its address.
//!
//! Clusters on loopback ([`crate::Cluster::start`]...) run with `--plaintext`; clusters whose
//! addresses are not loopback (network namespaces: [`crate::Cluster::start_netns`]) and those from
//! [`crate::Cluster::start_tls`] run with TLS on every listener and mTLS between controller and
//! workers. A test that passes its own `--plaintext` or `--tls-*` flags gets none from the harness.
//! `LAMINA_E2E_TLS=1` runs the loopback clusters with TLS too (tests that speak plain HTTP to the
//! REST or gateway ports themselves fail then).
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use lamina_proto::certs::{Authority, Issued};

/// A cluster's CA and the controller's certificate.
pub struct TestTls {
    authority: Authority,
    /// `DIR/tls/ca.pem`: what clients trust (`FNCTL_CA`, `AWS_CA_BUNDLE`, boto3's `verify=`).
    pub ca: PathBuf,
    pub controller: Issued,
}

impl TestTls {
    /// A new CA in `dir/tls` and a controller certificate for loopback and `hosts`.
    pub fn create(dir: &Path, hosts: &[String]) -> Result<TestTls> {
        let tls_dir = dir.join("tls");
        let authority = Authority::load_or_create(&tls_dir)
            .with_context(|| format!("create a CA in {}", tls_dir.display()))?;
        let controller = authority.issue("controller", hosts)?;
        Ok(TestTls {
            ca: authority.ca_path(),
            controller,
            authority,
        })
    }

    /// The controller's `--tls-cert/--tls-key/--tls-ca`.
    pub fn controller_args(&self) -> Vec<String> {
        tls_args(&self.controller, &self.ca)
    }

    /// Issues worker `id`'s certificate (loopback and `hosts`) and returns its flags.
    pub fn worker_args(&self, id: &str, hosts: &[String]) -> Result<Vec<String>> {
        Ok(tls_args(&self.issue(id, hosts)?, &self.ca))
    }

    /// Issues `DIR/tls/NAME.pem` + `NAME-key.pem` for loopback and `hosts`.
    pub fn issue(&self, name: &str, hosts: &[String]) -> Result<Issued> {
        Ok(self.authority.issue(name, hosts)?)
    }
}

/// A CA for a loopback cluster in `dir` when `LAMINA_E2E_TLS=1`, else `None` (`--plaintext`).
pub fn from_env(dir: &Path) -> Result<Option<TestTls>> {
    match std::env::var("LAMINA_E2E_TLS").as_deref() {
        Ok("1") => Ok(Some(TestTls::create(dir, &[])?)),
        _ => Ok(None),
    }
}

/// `--tls-cert CERT --tls-key KEY --tls-ca CA`.
pub fn tls_args(issued: &Issued, ca: &Path) -> Vec<String> {
    vec![
        "--tls-cert".into(),
        issued.cert.display().to_string(),
        "--tls-key".into(),
        issued.key.display().to_string(),
        "--tls-ca".into(),
        ca.display().to_string(),
    ]
}

/// Whether a test's own arguments already choose the transport (`--plaintext` or `--tls-*`).
pub fn chooses_transport(extra: &[&str]) -> bool {
    extra
        .iter()
        .any(|a| *a == "--plaintext" || a.starts_with("--tls-"))
}
