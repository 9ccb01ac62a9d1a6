//! The worker's command line and the settings derived from it (worker id, memory capacity, directories).
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use lamina_proto::auth::{Credentials, CLUSTER_KEY_ID};

/// Largest worker id accepted: it becomes part of cgroup paths.
const MAX_WORKER_ID_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid --nat-cidr: {detail}")]
    NatCidr { detail: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid worker id {id:?} (from {origin}): use 1..64 letters, digits, '-' or '_'")]
    WorkerId { id: String, origin: String },
    #[error("cluster token file {0} is empty: pass the controller's DATA_DIR/auth/cluster-token")]
    EmptyClusterToken(PathBuf),
    #[error(transparent)]
    Tls(#[from] lamina_proto::tls::TlsError),
    #[error(
        "--plaintext calls the controller unencrypted on loopback addresses only, but --controller \
         is {0}: pass --tls-cert PEM --tls-key PEM --tls-ca PEM instead"
    )]
    PlaintextController(String),
    #[error("cannot find MemTotal in /proc/meminfo: pass --memory-mb")]
    MemTotal,
    #[error(
        "--uid-base {base} --uid-count {count} is not a valid range: the base must be at least 65536 \
         (never root or a system user), the count at least 1, and the range must fit in 32 bits"
    )]
    UidRange { base: u32, count: u32 },
}

/// `lamina-worker` command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "lamina-worker",
    version,
    about = "Lamina's node agent: runs function invocations in sandboxes"
)]
pub struct Cli {
    /// Controller gRPC endpoint.
    #[arg(
        long,
        env = "LAMINA_CONTROLLER",
        default_value = "https://127.0.0.1:9670"
    )]
    pub controller: String,
    /// Address the Worker gRPC service listens on (port 0 = any free port).
    #[arg(long, default_value = "127.0.0.1:9671")]
    pub listen: SocketAddr,
    /// Directory for the worker's state: code cache, sandboxes, runtime bootstraps, worker id.
    #[arg(long, default_value = "/var/lib/lamina/worker")]
    pub state_dir: PathBuf,
    /// Worker id (default: persisted in STATE_DIR/worker-id, generated once).
    #[arg(long)]
    pub worker_id: Option<String>,
    /// host:port the controller dials for this worker (default: the bound listen address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Memory the worker may give to sandboxes, in MB (default: MemTotal minus 1 GiB).
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// Seconds an idle sandbox is kept warm before it is destroyed.
    #[arg(long, default_value_t = 600)]
    pub keep_alive_s: u64,
    /// Milliseconds an idle sandbox keeps running before it is frozen (0: frozen before the
    /// invocation's answer is sent, as Lambda; the default lets back-to-back invocations skip the
    /// freeze and thaw, as OpenWhisk's pause grace), 0..=60000.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub freeze_after_ms: u64,
    /// First host uid of the range functions run as (each function gets its own; at least
    /// 65536). The range is locked host-wide: one overlapping another worker's is refused.
    /// Default: the range this state directory had last if it is free, else the first free range
    /// of --uid-count uids from 200000 on this host.
    #[arg(long)]
    pub uid_base: Option<u32>,
    /// Size of that range: how many functions can have a uid on this worker.
    #[arg(long, default_value_t = 65_536)]
    pub uid_count: u32,
    /// pids.max of every sandbox.
    #[arg(long, default_value_t = 1024)]
    pub pids_max: u32,
    /// Sandboxes prepared ahead of any request (cgroup, namespaces, root skeleton; code bound on
    /// first use), 0..64.
    #[arg(long, env = "LAMINA_PREWARM_SANDBOXES", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=64))]
    pub prewarm: u16,
    /// Fork Python sandboxes from a pre-imported interpreter (needs liblamina_worker.so beside the
    /// binary).
    #[arg(long, env = "LAMINA_PYTHON_ZYGOTE",
          value_parser = clap::builder::FalseyValueParser::new())]
    pub python_zygote: bool,
    /// Emptied sandbox cgroups kept for the next sandboxes instead of removed (cgroup v1; 0: off),
    /// 0..=256.
    #[arg(long, env = "LAMINA_CGROUP_REUSE", default_value_t = 16,
          value_parser = clap::value_parser!(u16).range(0..=256))]
    pub cgroup_reuse: u16,
    /// Fork sandbox inits from one pre-started init process instead of exec'ing each (1/0).
    #[arg(long, env = "LAMINA_SPAWNER", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub spawner: bool,
    /// File holding the cluster credential the controller created at bootstrap
    /// (`CONTROLLER_DATA_DIR/auth/cluster-token`): it signs this worker's calls to the controller
    /// and authenticates the controller's calls to this worker.
    #[arg(long, env = "LAMINA_CLUSTER_TOKEN_FILE")]
    pub cluster_token_file: PathBuf,
    /// Disk budget of the caches of unzipped code and layers (STATE_DIR/code) and unpacked images
    /// (STATE_DIR/images), in MB: past it, the least recently used entries no live sandbox uses
    /// are removed (after each fetch and every half second). 0 keeps only what sandboxes use.
    #[arg(long, env = "LAMINA_CACHE_BUDGET_MB", default_value_t = crate::disk_cache::DEFAULT_CACHE_BUDGET_MB)]
    pub cache_budget_mb: u64,
    /// Egress of sandboxes without a VPC: `none` (loopback only) or `nat` (masqueraded through
    /// this host; never to the host itself, the controller or 169.254.0.0/16).
    #[arg(long, env = "LAMINA_DEFAULT_EGRESS", default_value = "none")]
    pub default_egress: crate::network::egress::EgressMode,
    /// Addresses of the NAT'd sandboxes (`--default-egress nat`), local to this worker.
    #[arg(long, env = "LAMINA_NAT_CIDR", default_value = "10.239.0.0/16")]
    pub nat_cidr: String,
    /// PEM certificate chain of this worker, signed by the cluster CA: served on --listen and
    /// presented to the controller (mTLS); with --tls-key and --tls-ca. `fnctl up` generates it.
    #[arg(long, env = "LAMINA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "LAMINA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM certificate of the cluster CA: the controller's certificate (as server, and as the
    /// client of this worker's port) must be signed by it.
    #[arg(long, env = "LAMINA_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Serve and call the controller without TLS: refused unless --listen and the controller's
    /// host are loopback addresses.
    #[arg(long)]
    pub plaintext: bool,
    /// The controller's REST API (`http://HOST:PORT`), where the AWS endpoint and the Parameters
    /// and Secrets extension of sandboxes with an execution role forward to. Not given: those
    /// endpoints are not served.
    #[arg(long, env = "LAMINA_CONTROLLER_REST")]
    pub controller_rest: Option<String>,
}

/// The worker's TLS material (`--tls-cert/--tls-key/--tls-ca`), or `None` with `--plaintext`: then
/// its listen address and the controller's host must be loopback addresses.
fn resolve_tls(cli: &Cli) -> Result<Option<lamina_proto::tls::TlsMaterial>, ConfigError> {
    let flags = lamina_proto::tls::TlsFlags {
        cert: cli.tls_cert.clone(),
        key: cli.tls_key.clone(),
        ca: cli.tls_ca.clone(),
        plaintext: cli.plaintext,
    };
    let tls = flags.resolve(&[("--listen", cli.listen)])?;
    if tls.is_none() {
        let url = cli.controller.trim();
        let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = authority.split('/').next().unwrap_or_default();
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host);
        if url.starts_with("https://") || !lamina_proto::tls::is_loopback_host(host) {
            return Err(ConfigError::PlaintextController(cli.controller.clone()));
        }
    }
    Ok(tls)
}

/// Settings resolved from the command line, shared by the manager and the service.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub controller: String,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    pub state_dir: PathBuf,
    pub worker_id: String,
    pub memory_mb: u64,
    pub keep_alive: Duration,
    pub freeze_after: Duration,
    /// The first uid of the range: `--uid-base`, or (`uid_base_explicit` false) where the search
    /// for a free range starts until the worker took one (`take_uid_range`).
    pub uid_base: u32,
    pub uid_base_explicit: bool,
    pub uid_count: u32,
    pub pids_max: u32,
    pub prewarm: usize,
    pub python_zygote: bool,
    pub spawner: bool,
    pub cgroup_reuse: usize,
    /// Disk budget of the code and image caches, in bytes.
    pub cache_budget_bytes: u64,
    /// The cluster credential (its `Debug` redacts the secret).
    pub cluster_credentials: Credentials,
    pub default_egress: crate::network::egress::EgressMode,
    pub nat_cidr: lamina_proto::network::Ipv4Cidr,
    /// TLS of the worker's port and of its calls to the controller; `None`: `--plaintext`.
    pub tls: Option<lamina_proto::tls::TlsMaterial>,
    /// The controller's REST API for the role endpoints of sandboxes (`--controller-rest`).
    pub controller_rest: Option<String>,
}

impl WorkerConfig {
    /// Resolves the worker id (persisting a generated one) and the memory capacity.
    pub fn resolve(cli: Cli) -> Result<WorkerConfig, ConfigError> {
        let tls = resolve_tls(&cli)?;
        let worker_id = match cli.worker_id {
            Some(id) => {
                check_worker_id(&id, "--worker-id")?;
                id
            }
            None => persisted_worker_id(&cli.state_dir)?,
        };
        let uid_base = cli.uid_base.unwrap_or(crate::manager::DEFAULT_UID_BASE);
        if uid_base < crate::manager::MIN_UID_BASE
            || u64::from(uid_base) + u64::from(cli.uid_count) > u64::from(u32::MAX)
            || cli.uid_count == 0
        {
            return Err(ConfigError::UidRange {
                base: uid_base,
                count: cli.uid_count,
            });
        }
        let memory_mb = match cli.memory_mb {
            Some(mb) => mb,
            None => default_memory_mb(&read_meminfo()?)?,
        };
        Ok(WorkerConfig {
            tls,
            controller: cli.controller,
            listen: cli.listen,
            advertise: cli.advertise,
            state_dir: cli.state_dir,
            worker_id,
            memory_mb,
            keep_alive: Duration::from_secs(cli.keep_alive_s),
            freeze_after: Duration::from_millis(cli.freeze_after_ms),
            uid_base,
            uid_base_explicit: cli.uid_base.is_some(),
            uid_count: cli.uid_count,
            pids_max: cli.pids_max,
            prewarm: usize::from(cli.prewarm),
            python_zygote: cli.python_zygote,
            spawner: cli.spawner,
            cgroup_reuse: usize::from(cli.cgroup_reuse),
            cache_budget_bytes: cli.cache_budget_mb.saturating_mul(1 << 20),
            cluster_credentials: read_cluster_token(&cli.cluster_token_file)?,
            default_egress: cli.default_egress,
            controller_rest: cli.controller_rest,
            nat_cidr: cli
                .nat_cidr
                .parse()
                .map_err(|detail| ConfigError::NatCidr { detail })?,
        })
    }

    /// Locks this worker's uid range host-wide in `lock_dir` (refused when an explicit one
    /// overlaps another live worker's; the default takes a free one) and sets `uid_base` to it.
    /// The lock is held until the returned value is dropped or the process exits.
    pub fn take_uid_range(
        &mut self,
        lock_dir: &Path,
    ) -> Result<crate::manager::UidRangeLock, crate::manager::UidError> {
        let last = self.state_dir.join(crate::manager::LAST_RANGE_FILE);
        let preferred = std::fs::read_to_string(&last)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let lock = crate::manager::UidRangeLock::acquire(
            lock_dir,
            self.uid_base_explicit.then_some(self.uid_base),
            self.uid_count,
            preferred,
            &self.worker_id,
            &self.state_dir,
        )?;
        self.uid_base = lock.base();
        let save = std::fs::create_dir_all(&self.state_dir)
            .and_then(|()| std::fs::write(&last, format!("{}\n", lock.base())));
        if let Err(source) = save {
            return Err(crate::manager::UidError::Save { path: last, source });
        }
        Ok(lock)
    }

    /// `lamina/<worker-id>`: the cgroup every sandbox of this worker lives under.
    pub fn cgroup_parent(&self) -> String {
        format!("lamina/{}", self.worker_id)
    }

    /// `STATE_DIR/code`: unzipped code by sha256.
    pub fn code_dir(&self) -> PathBuf {
        self.state_dir.join("code")
    }

    /// `STATE_DIR/sandboxes`: per-sandbox work dirs, wiped at start.
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.state_dir.join("sandboxes")
    }

    /// `STATE_DIR/runtime`: Lamina's bootstraps, mounted at `/var/runtime`.
    pub fn runtime_dir(&self) -> PathBuf {
        self.state_dir.join("runtime")
    }
}

/// Reads the cluster token file (the whole file, trimmed).
pub fn read_cluster_token(path: &Path) -> Result<Credentials, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::EmptyClusterToken(path.to_path_buf()));
    }
    Ok(Credentials {
        access_key_id: CLUSTER_KEY_ID.to_string(),
        secret_access_key: token.to_string(),
    })
}

fn check_worker_id(id: &str, origin: &str) -> Result<(), ConfigError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_WORKER_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::WorkerId {
            id: id.to_string(),
            origin: origin.to_string(),
        })
    }
}

/// Reads `STATE_DIR/worker-id`, or generates `w-<12 hex>` and writes it there.
pub fn persisted_worker_id(state_dir: &Path) -> Result<String, ConfigError> {
    let path = state_dir.join("worker-id");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim().to_string();
            check_worker_id(&id, &path.display().to_string())?;
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(state_dir).map_err(|source| ConfigError::Write {
                path: state_dir.to_path_buf(),
                source,
            })?;
            let id = format!("w-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
            let tmp = state_dir.join(".worker-id.tmp");
            std::fs::write(&tmp, format!("{id}\n"))
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|source| ConfigError::Write {
                    path: path.clone(),
                    source,
                })?;
            Ok(id)
        }
        Err(source) => Err(ConfigError::Read { path, source }),
    }
}

fn read_meminfo() -> Result<String, ConfigError> {
    let path = Path::new("/proc/meminfo");
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// MemTotal minus 1 GiB (at least half of MemTotal), in MB.
pub fn default_memory_mb(meminfo: &str) -> Result<u64, ConfigError> {
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or(ConfigError::MemTotal)?;
    let total_mb = kb / 1024;
    Ok(total_mb.saturating_sub(1024).max(total_mb / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_default_is_memtotal_minus_one_gib() {
        let info = "MemTotal:        8000000 kB\nMemFree:  100 kB\n";
        assert_eq!(default_memory_mb(info).unwrap(), 8000000 / 1024 - 1024);
        // A small machine keeps at least half of its memory for sandboxes.
        assert_eq!(default_memory_mb("MemTotal: 1048576 kB\n").unwrap(), 512);
        assert!(default_memory_mb("MemFree: 1 kB\n").is_err());
    }

    #[test]
    fn worker_id_is_generated_once_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let a = persisted_worker_id(&state).unwrap();
        let b = persisted_worker_id(&state).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with("w-") && a.len() == 14, "{a}");
        std::fs::write(state.join("worker-id"), "../escape\n").unwrap();
        let err = persisted_worker_id(&state).unwrap_err().to_string();
        assert!(err.contains("invalid worker id"), "{err}");
    }

    #[test]
    fn cluster_token_is_read_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cluster-token");
        std::fs::write(&p, "tok3n\n").unwrap();
        let c = read_cluster_token(&p).unwrap();
        assert_eq!(c.secret_access_key, "tok3n");
        assert_eq!(c.access_key_id, CLUSTER_KEY_ID);
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(
            read_cluster_token(&p),
            Err(ConfigError::EmptyClusterToken(_))
        ));
        let err = read_cluster_token(&dir.path().join("nope")).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn worker_id_flag_is_checked() {
        assert!(check_worker_id("node-1_a", "--worker-id").is_ok());
        assert!(check_worker_id("a/b", "--worker-id").is_err());
        assert!(check_worker_id("", "--worker-id").is_err());
        assert!(check_worker_id(&"x".repeat(65), "--worker-id").is_err());
    }
}
