//! A cluster's own certificate authority (rcgen, ECDSA P-256 with `ring`): `fnctl up` and the
//! end-to-end tests create one, then issue the controller's and the workers' certificates with it.
//! Each certificate is good for server and client authentication (controller <-> worker mTLS).
//!
//! Files (under a directory of their own): `ca.pem`, `ca-key.pem`, and `NAME.pem` + `NAME-key.pem`
//! per issued certificate; keys are written mode 0600, every file atomically (a temporary file in
//! the same directory, synced, then renamed).
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};

/// The CA certificate's common name.
pub const CA_NAME: &str = "Lamina cluster CA";
/// The names every issued certificate holds beside the caller's.
pub const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}; check the directory's owner and free space")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable CA key: {source}; remove the tls directory to start a new CA")]
    CaKey { path: PathBuf, source: rcgen::Error },
}

/// The files of one issued certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate authority whose certificate and key live in `dir`.
pub struct Authority {
    dir: PathBuf,
    cert: Certificate,
    key: KeyPair,
}

/// The year now (UTC), for validity periods that start before now whatever the time of day.
fn this_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Good to a day; validity starts a year earlier anyway.
    1970 + (secs / 31_556_952) as i32
}

fn ca_params() -> Result<CertificateParams, CertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    dn.push(DnType::OrganizationName, "Lamina");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let year = this_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    Ok(params)
}

impl Authority {
    /// The CA of `dir` (`ca.pem`, `ca-key.pem`), created with the directory (mode 0700) when it
    /// has none yet.
    pub fn load_or_create(dir: &Path) -> Result<Authority, CertError> {
        create_private_dir(dir)?;
        let key_path = dir.join("ca-key.pem");
        let cert_path = dir.join("ca.pem");
        if key_path.exists() && cert_path.exists() {
            let pem = std::fs::read_to_string(&key_path).map_err(|source| CertError::Read {
                path: key_path.clone(),
                source,
            })?;
            let key = KeyPair::from_pem(&pem).map_err(|source| CertError::CaKey {
                path: key_path.clone(),
                source,
            })?;
            // The same subject and key give the same issuer name and key identifier as the
            // `ca.pem` on disk: what it issues chains to that file.
            let cert = ca_params()?.self_signed(&key)?;
            return Ok(Authority {
                dir: dir.to_path_buf(),
                cert,
                key,
            });
        }
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
        Ok(Authority {
            dir: dir.to_path_buf(),
            cert,
            key,
        })
    }

    /// `DIR/ca.pem`: what clients trust (`--tls-ca`, `FNCTL_CA`, boto3's `verify=`).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Issues (or re-issues: a fresh key every time) `NAME.pem` + `NAME-key.pem` for `names`
    /// (host names or IP addresses) and [`LOCAL_NAMES`], good for two years, for server and
    /// client authentication.
    pub fn issue(&self, name: &str, names: &[String]) -> Result<Issued, CertError> {
        let mut sans: Vec<String> = LOCAL_NAMES.iter().map(|s| s.to_string()).collect();
        for n in names {
            let n = n.trim_start_matches('[').trim_end_matches(']').to_string();
            if !n.is_empty() && !sans.contains(&n) {
                sans.push(n);
            }
        }
        let mut params = CertificateParams::new(sans)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("lamina {name}"));
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
        let year = this_year();
        params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + 2, 1, 1);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        let issued = Issued {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}-key.pem")),
        };
        write_atomic(&issued.key, key.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(&issued.cert, cert.pem().as_bytes(), 0o644)?;
        Ok(issued)
    }
}

fn create_private_dir(dir: &Path) -> Result<(), CertError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CertError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes `bytes` to `path` atomically with `mode`: a temporary file beside it, created with that
/// mode (never readable by others in between), synced, renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{:016x}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        rand::random::<u64>()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(err)
}
