//! Helpers for the end-to-end tests: a real cluster (controller + workers as child processes, real
//! sandboxes, real RocksDB) in a temporary directory, and small builders for functions.
//!
//! The binaries come from the same target directory as the test executable; the test script builds
//! them first (`cargo build --workspace --bins --lib`).
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
pub use lamina_client::{v1, Client, Credentials};

pub mod clients;
pub mod gateway;
pub mod images;
pub mod netns;
pub mod orphans;
pub mod tls;

/// Path of a workspace binary next to the running test executable (`target/<profile>/NAME`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // Tests live in target/<profile>/deps, binaries (the benchmark) in target/<profile>.
    let mut profile_dir = exe.parent().expect("executable has a directory");
    if profile_dir.ends_with("deps") {
        profile_dir = profile_dir.parent().expect("deps has a parent");
    }
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins --lib` (deploy/test.sh does)",
        path.display()
    );
    path
}

/// Panics unless we are root: sandboxes need it, and a sandbox test must never skip silently.
pub fn require_root() {
    assert!(
        nix_is_root(),
        "end-to-end tests create real sandboxes and must run as root"
    );
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// A unique short name for this test process (worker ids, function names).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub address: String,
    pub log: PathBuf,
    /// The controller's REST address (`lamina-controller rest listening on HOST:PORT`), if printed
    /// before the ready line.
    pub rest_address: Option<String>,
    /// The controller's public HTTP address (`lamina-controller http listening on HOST:PORT`: function
    /// URLs and HTTP APIs), if printed before the ready line.
    pub http_address: Option<String>,
}

const REST_READY: &str = "lamina-controller rest listening on ";
const HTTP_READY: &str = "lamina-controller http listening on ";

impl Proc {
    /// Spawns `cmd`, waits for a stdout line starting with `ready_prefix` and returns the last word
    /// of that line (the address). Stderr goes to `log`.
    fn spawn(name: &str, mut cmd: Command, ready_prefix: &str, log: PathBuf) -> Result<Proc> {
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        cmd.stdout(Stdio::piped())
            .stderr(log_file)
            .stdin(Stdio::null());
        let mut child = cmd.spawn().with_context(|| format!("spawn {name}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let prefix = ready_prefix.to_string();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let (mut rest, mut http) = (None, None);
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix(REST_READY) {
                    rest = Some(addr.trim().to_string());
                } else if let Some(addr) = line.strip_prefix(HTTP_READY) {
                    http = Some(addr.trim().to_string());
                } else if line.starts_with(&prefix) {
                    let _ = tx.send((line, rest, http));
                    break;
                }
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let (line, rest_address, http_address) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(got) => got,
            Err(_) => {
                let _ = child.kill();
                let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("{name} did not become ready within 60 s; its log:\n{log_text}");
            }
        };
        let address = line
            .split_whitespace()
            .last()
            .ok_or_else(|| anyhow!("no address in {line:?}"))?
            .to_string();
        Ok(Proc {
            name: name.to_string(),
            child,
            address,
            log,
            rest_address,
            http_address,
        })
    }

    /// Sends SIGTERM and waits up to 15 s, then SIGKILL.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SAFETY: kill(2) on a pid we spawned and have not reaped yet; failure only means it is gone.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        for _ in 0..150 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL, no grace.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A controller and N workers on loopback, in a temporary directory.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub controller: Proc,
    pub workers: Vec<Proc>,
    pub worker_ids: Vec<String>,
    pub endpoint: String,
    /// `http://HOST:PORT` of the controller's Lambda REST API.
    pub rest_endpoint: String,
    /// The admin key the controller created at bootstrap, and its file.
    pub credentials: Credentials,
    pub credentials_file: PathBuf,
    /// The cluster credential's file (what workers get with `--cluster-token-file`).
    pub cluster_token_file: PathBuf,
    /// The cluster's CA and controller certificate when it runs with TLS ([`Cluster::start_tls`],
    /// [`Cluster::start_netns`]); `None`: `--plaintext` on loopback.
    pub tls: Option<tls::TestTls>,
    /// Workers in network namespaces of their own ([`Cluster::start_netns`]). Last field: dropped
    /// after the processes are stopped.
    netns: Option<netns::Network>,
}

impl Cluster {
    pub fn start(workers: usize) -> Result<Cluster> {
        Self::start_with(workers, &[])
    }

    /// `worker_args` are added to every worker's command line.
    pub fn start_with(workers: usize, worker_args: &[&str]) -> Result<Cluster> {
        require_root();
        let dir = tempfile::Builder::new().prefix("lamina-e2e-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let tls = tls::from_env(dir.path())?;
        let controller = spawn_controller(dir.path(), "127.0.0.1:0", &[], 0, tls.as_ref())?;
        let mut cluster = Cluster::new(dir, controller, tls)?;
        for _ in 0..workers {
            cluster.add_worker(worker_args)?;
        }
        Ok(cluster)
    }

    /// A cluster around a controller that just became ready: reads the credentials it created.
    fn new(dir: tempfile::TempDir, controller: Proc, tls: Option<tls::TestTls>) -> Result<Cluster> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let auth = dir.path().join("controller").join("auth");
        let credentials_file = auth.join("admin-credentials.json");
        let credentials = lamina_client::credentials::load_file(&credentials_file)?;
        let rest = controller
            .rest_address
            .clone()
            .ok_or_else(|| anyhow!("the controller printed no REST ready line"))?;
        Ok(Cluster {
            endpoint: format!("{scheme}://{}", controller.address),
            rest_endpoint: format!("{scheme}://{rest}"),
            controller,
            workers: Vec::new(),
            worker_ids: Vec::new(),
            credentials,
            credentials_file,
            cluster_token_file: auth.join("cluster-token"),
            dir,
            netns: None,
            tls,
        })
    }

    /// `HOST:PORT` of the controller's public HTTP listener (function URLs and HTTP APIs; the
    /// harness starts every controller with `--http-listen 127.0.0.1:0`). Changes when the
    /// controller restarts.
    pub fn http_address(&self) -> Result<String> {
        self.controller
            .http_address
            .clone()
            .ok_or_else(|| anyhow!("the controller printed no `{HTTP_READY}HOST:PORT` line"))
    }

    /// The environment `fnctl` needs to reach this cluster: endpoint, credentials file and (with
    /// TLS) the CA.
    pub fn fnctl_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("FNCTL_ENDPOINT", self.endpoint.clone()),
            (
                "FNCTL_CREDENTIALS",
                self.credentials_file.display().to_string(),
            ),
        ];
        if let Some(tls) = &self.tls {
            env.push(("FNCTL_CA", tls.ca.display().to_string()));
        }
        env
    }

    /// The CA certificate clients must trust, when the cluster runs with TLS.
    pub fn ca(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca.as_path())
    }

    /// What boto3 and the AWS CLI need to verify the REST API's certificate: `AWS_CA_BUNDLE`.
    pub fn aws_ca_env(&self) -> Vec<(&'static str, PathBuf)> {
        self.tls
            .iter()
            .map(|t| ("AWS_CA_BUNDLE", t.ca.clone()))
            .collect()
    }

    /// The transport flags of a worker: its certificate (for loopback and `hosts`) and the CA with
    /// TLS, `--plaintext` without; none when `extra` chooses already.
    pub fn worker_transport_args(
        &self,
        id: &str,
        hosts: &[String],
        extra: &[&str],
    ) -> Result<Vec<String>> {
        if tls::chooses_transport(extra) {
            return Ok(Vec::new());
        }
        match &self.tls {
            Some(t) => t.worker_args(id, hosts),
            None => Ok(vec!["--plaintext".to_string()]),
        }
    }

    /// A controller and `workers` workers on loopback with TLS on every listener (a CA of the
    /// cluster's own in `DIR/tls`) and mTLS between controller and workers.
    pub fn start_tls(
        workers: usize,
        controller_args: &[&str],
        worker_args: &[&str],
    ) -> Result<Cluster> {
        require_root();
        let dir = tempfile::Builder::new().prefix("lamina-e2e-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let tls = tls::TestTls::create(dir.path(), &[])?;
        let controller =
            spawn_controller(dir.path(), "127.0.0.1:0", controller_args, 0, Some(&tls))?;
        let mut cluster = Cluster::new(dir, controller, Some(tls))?;
        for _ in 0..workers {
            cluster.add_worker(worker_args)?;
        }
        Ok(cluster)
    }

    /// The cluster credential: what signs controller <-> worker calls. A direct `Worker` client
    /// needs it: `WorkerClient::new(lamina_proto::auth::Signed::new(channel, Some(creds)))`.
    pub fn cluster_credentials(&self) -> Result<Credentials> {
        let token = std::fs::read_to_string(&self.cluster_token_file)
            .with_context(|| format!("read {}", self.cluster_token_file.display()))?;
        Ok(Credentials {
            access_key_id: lamina_proto::auth::CLUSTER_KEY_ID.to_string(),
            secret_access_key: token.trim().to_string(),
        })
    }

    /// A client signing with `creds` instead of the admin key (`None`: unsigned).
    pub async fn client_with(&self, creds: Option<Credentials>) -> Result<Client> {
        Ok(Client::connect_tls(&self.endpoint, creds, self.ca()).await?)
    }

    pub fn add_worker(&mut self, extra: &[&str]) -> Result<()> {
        if self.netns.is_some() {
            return self.add_netns_worker(extra);
        }
        let id = unique("w");
        let mut cmd = Command::new(bin("lamina-worker"));
        cmd.args(["--controller", &self.endpoint, "--listen", "127.0.0.1:0"])
            // Where the role endpoints of sandboxes forward to (execution roles).
            .args(["--controller-rest", &self.rest_endpoint])
            .arg("--state-dir")
            .arg(self.dir.path().join(&id))
            .args(["--worker-id", &id])
            .arg("--cluster-token-file")
            .arg(&self.cluster_token_file)
            .args(self.worker_transport_args(&id, &[], extra)?)
            .args(extra);
        let log = self.dir.path().join(format!("{id}.log"));
        let p = Proc::spawn(&id, cmd, "lamina-worker ", log)?;
        self.workers.push(p);
        self.worker_ids.push(id);
        Ok(())
    }

    /// A client signing with the bootstrap admin key.
    pub async fn client(&self) -> Result<Client> {
        Ok(Client::connect_tls(&self.endpoint, Some(self.credentials.clone()), self.ca()).await?)
    }

    /// Every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = format!("--- controller log\n{}", self.controller.log_text());
        for w in &self.workers {
            s.push_str(&format!("--- {} log\n{}", w.name, w.log_text()));
        }
        s
    }
}

/// A zip made of `(path, content, mode)` entries.
pub fn zip_of(files: &[(&str, &str, u32)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zw = zip::ZipWriter::new(&mut buf);
        for (name, content, mode) in files {
            let opts = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
            zw.start_file(*name, opts).expect("zip entry");
            zw.write_all(content.as_bytes()).expect("zip write");
        }
        zw.finish().expect("zip finish");
    }
    buf.into_inner()
}

/// A function spec with the given runtime and handler, 1024 MB (so CPU is not the bottleneck of a
/// test) and a 10 s timeout unless changed.
pub fn spec(name: &str, runtime: &str, handler: &str) -> v1::FunctionSpec {
    v1::FunctionSpec {
        name: name.to_string(),
        runtime: runtime.to_string(),
        handler: handler.to_string(),
        memory_size_mb: 1024,
        timeout_seconds: 10,
        ephemeral_storage_mb: 0,
        environment: Default::default(),
        description: String::new(),
        ..Default::default()
    }
}

pub fn with_env(mut s: v1::FunctionSpec, env: &[(&str, &str)]) -> v1::FunctionSpec {
    let map: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s.environment = map.into_iter().collect();
    s
}

/// Creates a Python function from one file `app.py` with handler `app.handler`.
pub async fn create_python(
    client: &Client,
    name: &str,
    source: &str,
) -> Result<v1::FunctionConfiguration> {
    let zip = zip_of(&[("app.py", source, 0o644)]);
    Ok(client
        .create_function(spec(name, "python3.11", "app.handler"), zip)
        .await?)
}

/// Invokes synchronously with a JSON payload.
pub async fn invoke(client: &Client, name: &str, payload: &str) -> Result<v1::InvokeResponse> {
    Ok(client
        .invoke(v1::InvokeRequest {
            function_name: name.to_string(),
            payload: payload.as_bytes().to_vec(),
            log_type: v1::LogType::Tail as i32,
            ..Default::default()
        })
        .await?)
}

/// The response payload parsed as JSON.
pub fn json(resp: &v1::InvokeResponse) -> serde_json::Value {
    serde_json::from_slice(&resp.payload).unwrap_or_else(|e| {
        panic!(
            "payload is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&resp.payload)
        )
    })
}

/// Runs an async test body on a fresh runtime.
pub fn run<F: std::future::Future<Output = Result<()>>>(f: F) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(f).unwrap_or_else(|e| panic!("{e:#}"));
}

/// The directory of a host path's cgroup v1 memory controller, if this machine has one.
pub fn memory_cgroup_root() -> Option<&'static Path> {
    let p = Path::new("/sys/fs/cgroup/memory");
    p.exists().then_some(p)
}

/// Kills what a SIGKILLed worker left running (its sandboxes' processes) and removes their cgroups,
/// as a restarted worker would.
pub fn reap_worker_sandboxes(worker_id: &str) {
    let roots: Vec<PathBuf> = ["freezer", "memory", "cpu", "pids", ""]
        .iter()
        .map(|c| {
            Path::new("/sys/fs/cgroup")
                .join(c)
                .join("lamina")
                .join(worker_id)
        })
        .filter(|p| p.is_dir())
        .collect();
    for _ in 0..50 {
        let mut alive = false;
        for root in &roots {
            for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
                let procs =
                    std::fs::read_to_string(entry.path().join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    alive = true;
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                    }
                }
            }
        }
        // Frozen tasks die only once thawed.
        for entry in roots
            .iter()
            .flat_map(|r| std::fs::read_dir(r).into_iter().flatten().flatten())
        {
            let _ = std::fs::write(entry.path().join("freezer.state"), "THAWED");
            let _ = std::fs::write(entry.path().join("cgroup.freeze"), "0");
        }
        if !alive {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for root in &roots {
        for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let _ = std::fs::remove_dir(entry.path());
        }
        let _ = std::fs::remove_dir(root);
    }
}

// ---------------------------------------------------------------- asynchronous invocation helpers

/// Controller flags of the async tests: the retry/backoff/max-age clock runs 100 times faster
/// (1 min retry -> 0.6 s, 6 h maximum age -> 216 s, minimum age 60 s -> 0.6 s).
pub const ASYNC_FAST: &[&str] = &["--async-time-scale", "0.01"];

impl Cluster {
    /// Like [`Cluster::start_with`], with extra controller arguments.
    pub fn start_full(
        workers: usize,
        controller_args: &[&str],
        worker_args: &[&str],
    ) -> Result<Cluster> {
        require_root();
        let dir = tempfile::Builder::new().prefix("lamina-e2e-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let tls = tls::from_env(dir.path())?;
        let controller =
            spawn_controller(dir.path(), "127.0.0.1:0", controller_args, 0, tls.as_ref())?;
        let mut cluster = Cluster::new(dir, controller, tls)?;
        for _ in 0..workers {
            cluster.add_worker(worker_args)?;
        }
        Ok(cluster)
    }

    /// Stops the controller (SIGKILL when `kill`, else SIGTERM) and starts it again on the same data
    /// directory and address. `generation` names its log file.
    pub fn restart_controller(
        &mut self,
        kill: bool,
        controller_args: &[&str],
        generation: usize,
    ) -> Result<()> {
        if kill {
            self.controller.kill();
        } else {
            self.controller.stop();
        }
        let address = self.controller.address.clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let tls = self.tls.as_ref();
            match spawn_controller(self.dir.path(), &address, controller_args, generation, tls) {
                Ok(p) => {
                    if let Some(rest) = &p.rest_address {
                        let scheme = if tls.is_some() { "https" } else { "http" };
                        self.rest_endpoint = format!("{scheme}://{rest}");
                    }
                    self.controller = p;
                    return Ok(());
                }
                // The port or the RocksDB lock may take a moment to be released.
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// SIGKILLs worker `index` and cleans up what its sandboxes left.
    pub fn kill_worker(&mut self, index: usize) {
        self.workers[index].kill();
        reap_worker_sandboxes(&self.worker_ids[index]);
    }
}

fn spawn_controller(
    dir: &Path,
    listen: &str,
    extra: &[&str],
    generation: usize,
    tls: Option<&tls::TestTls>,
) -> Result<Proc> {
    let mut cmd = Command::new(bin("lamina-controller"));
    if !tls::chooses_transport(extra) {
        match tls {
            Some(t) => cmd.args(t.controller_args()),
            None => cmd.arg("--plaintext"),
        };
    }
    cmd.args([
        "--listen",
        listen,
        "--rest-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(dir.join("controller"))
    .args([
        "--worker-timeout-ms",
        "3000",
        "--heartbeat-interval-ms",
        "500",
    ])
    .args(extra);
    let log = if generation == 0 {
        dir.join("controller.log")
    } else {
        dir.join(format!("controller.{generation}.log"))
    };
    Proc::spawn("controller", cmd, "lamina-controller listening on", log)
}

/// Queues an event (invocation type Event); returns the request id.
pub async fn invoke_async(
    client: &Client,
    name: &str,
    payload: &str,
    idempotency_key: Option<&str>,
) -> Result<String> {
    let r = client
        .invoke_async(name, payload.as_bytes().to_vec(), idempotency_key)
        .await?;
    anyhow::ensure!(r.status_code == 202, "expected 202, got {r:?}");
    Ok(r.request_id)
}

/// Polls the invocation record until `done` holds (or `timeout` passes); returns the record.
pub async fn wait_invocation(
    client: &Client,
    request_id: &str,
    timeout: Duration,
    done: impl Fn(&v1::Invocation) -> bool,
) -> Result<v1::Invocation> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let inv = client.get_invocation(request_id).await?;
        if done(&inv) {
            return Ok(inv);
        }
        if std::time::Instant::now() > deadline {
            bail!("invocation {request_id} did not reach the expected state within {timeout:?}: {inv:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether an invocation state is terminal.
pub fn is_terminal(state: &str) -> bool {
    matches!(state, "Succeeded" | "Failed" | "DeadLettered")
}

// ---------------------------------------------------------------- the Lambda REST API from Python

/// The virtualenv with boto3 and the AWS CLI v1 (`deploy/test.sh` installs it; `LAMINA_VENV`
/// overrides the default `/var/tmp/lamina-venv`).
pub fn venv() -> PathBuf {
    std::env::var_os("LAMINA_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/lamina-venv"))
}

/// Runs `tests/python/lambda_rest.py ARGS` against the cluster's REST endpoint with its admin
/// credentials; fails with the script's output and the cluster's logs unless it succeeds.
pub fn lambda_rest_py(cluster: &Cluster, args: &[&str]) -> Result<String> {
    let python = venv().join("bin/python");
    anyhow::ensure!(
        python.exists(),
        "{} is missing: run deploy/test.sh, which installs boto3 and the AWS CLI v1 there",
        python.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/lambda_rest.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(args)
        .env("LAMINA_REST", &cluster.rest_endpoint)
        .env("LAMINA_CREDENTIALS", &cluster.credentials_file)
        .env_remove("AWS_CA_BUNDLE")
        .envs(cluster.aws_ca_env())
        .env("AWS_CLI", venv().join("bin/aws"))
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .with_context(|| format!("run {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "lambda_rest.py {args:?} failed ({}):\n{stdout}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
    }
    Ok(stdout)
}

/// What the hardening probe (`tests/python/hardening_probe.py`) must report from inside any sandbox,
/// however it was started (exec'd, prepared, zygote-forked).
pub fn assert_probe_confined(v: &serde_json::Value) {
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(v[cap], "0000000000000000", "{cap}: {v}");
    }
    assert_eq!(v["NoNewPrivs"], "1", "{v}");
    assert_eq!(v["Seccomp"], "2", "{v}");
    assert_eq!(v["uid"], 993, "{v}");
    for call in [
        "mount",
        "umount",
        "unshare_user",
        "unshare_net",
        "setns",
        "keyctl",
        "add_key",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "pivot_root",
        "chroot",
        "settimeofday",
        "reboot",
        "io_uring_setup",
        "mknod_dev",
        "ptrace_child",
        "process_vm_readv",
    ] {
        assert_eq!(v[call], "EPERM", "{call} must be refused: {v}");
    }
    // ENOENT on kernels built without magic SysRq (like this machine kind's).
    assert!(
        matches!(v["sysrq"].as_str(), Some("EROFS" | "EACCES" | "ENOENT")),
        "{v}"
    );
    assert!(
        matches!(v["proc_sys"].as_str(), Some("EROFS" | "EACCES")),
        "{v}"
    );
    assert_eq!(v["kcore_bytes"], 0, "masked /proc/kcore");
    assert_eq!(v["keys_bytes"], 0, "masked /proc/keys");
    assert_eq!(v["timer_list_bytes"], 0, "masked /proc/timer_list");
    assert_eq!(v["sys_exists"], false, "{v}");
    assert_eq!(
        v["dev"],
        serde_json::json!([
            "fd", "full", "null", "random", "stderr", "stdin", "stdout", "tty", "urandom", "zero"
        ])
    );
    for w in ["write_root", "write_usr", "write_task", "write_runtime"] {
        assert!(
            matches!(v[w].as_str(), Some("EROFS" | "EACCES")),
            "{w}: {v}"
        );
    }
    assert_ne!(
        v["exe_write"], "ok",
        "the runtime binary is not writable: {v}"
    );
    // Pid 1 is Lamina's minimal init, the runtime its child (pid 2). CVE-2019-5736 class: pid 1
    // runs with the function's credentials and filter, and is not dumpable: the function can open
    // none of /proc/1/{exe,mem,environ,root}; its command line names no host path; no Lamina
    // binary the sandbox can see is writable.
    assert_eq!(v["pid"], 2, "{v}");
    let pid1 = &v["pid1_status"];
    assert_eq!(
        pid1["Uid"]
            .as_str()
            .and_then(|u| u.split_whitespace().next()),
        Some("993"),
        "{v}"
    );
    for cap in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(pid1[cap], "0000000000000000", "pid 1 {cap}: {v}");
    }
    assert_eq!(pid1["NoNewPrivs"], "1", "{v}");
    assert_eq!(pid1["Seccomp"], "2", "{v}");
    for what in [
        "pid1_exe",
        "pid1_exe_write",
        "pid1_exe_read",
        "pid1_mem",
        "pid1_environ",
        "pid1_root",
        "pid1_cwd",
        "pid1_fd",
    ] {
        assert_eq!(v[what], "EACCES", "{what}: {v}");
    }
    let cmdline = v["pid1_cmdline"][0].as_str().unwrap_or_default();
    assert!(
        cmdline == "lamina-init" || cmdline == "/usr/bin/python3.11",
        "pid 1's command line: {v}"
    );
    assert_eq!(v["worker_binaries_writable"], serde_json::json!([]), "{v}");
    // Sockets of the families a function needs work; the others, and Linux AIO, are refused.
    for ok in [
        "socket_unix",
        "socket_inet",
        "socket_inet6",
        "socket_netlink_route",
        "socketpair_unix",
    ] {
        assert_eq!(v[ok], "ok", "{ok}: {v}");
    }
    for refused in [
        "socket_netlink_uevent",
        "socket_vsock",
        "socket_packet",
        "socketpair_vsock",
    ] {
        assert_eq!(v[refused], "EAFNOSUPPORT", "{refused}: {v}");
    }
    assert_eq!(v["io_setup"], "EPERM", "{v}");
    // Python: Lambda's sys.path order; the host's packages are neither on it nor importable.
    assert_eq!(
        v["sys_path"],
        serde_json::json!([
            "/var/task",
            "/opt/python/lib/python3.11/site-packages",
            "/opt/python",
            "/var/runtime",
            "/usr/lib/python311.zip",
            "/usr/lib/python3.11",
            "/usr/lib/python3.11/lib-dynload"
        ]),
        "{v}"
    );
    assert_eq!(v["host_dist_packages"], serde_json::json!([]), "{v}");
    // What `site` gives an interpreter, also in a zygote-forked sandbox (the zygote runs -S).
    assert_eq!(
        v["site_builtins"],
        serde_json::json!(["exit", "quit", "help", "copyright", "credits", "license"]),
        "{v}"
    );
    assert_eq!(v["import_host_yaml"], "ModuleNotFoundError", "{v}");
    assert_eq!(
        v["modules_from_host_packages"],
        serde_json::json!([]),
        "{v}"
    );
    // And from the host's side: nothing appeared where the function tried to write.
    for host_path in ["/evil", "/usr/bin/evil"] {
        assert!(!Path::new(host_path).exists(), "{host_path} was written");
    }
    // Only stdio, the runtime's own socket to the Runtime API and the fd listing itself.
    for (fd, target) in v["fds"].as_object().expect("fds") {
        let fd: i32 = fd.parse().unwrap();
        let target = target.as_str().unwrap();
        let ok = fd <= 2 || target.starts_with("socket:") || target.starts_with("/proc/");
        assert!(ok, "unexpected fd {fd} -> {target}");
    }
    assert_eq!(
        v["routes"],
        serde_json::json!([]),
        "no routes out of the sandbox"
    );
    assert_eq!(v["connect_controller"], "ECONNREFUSED", "{v}");
    assert_eq!(v["connect_worker"], "ECONNREFUSED", "{v}");
    assert_eq!(v["connect_metadata"], "ENETUNREACH", "{v}");
    let env: Vec<String> = serde_json::from_value(v["env_keys"].clone()).expect("env_keys");
    assert!(
        env.iter().any(|k| k == "AWS_LAMBDA_FUNCTION_NAME"),
        "{env:?}"
    );
    assert!(
        env.iter().all(|k| !k.starts_with("CARGO")
            && !k.starts_with("LAMINA")
            && k != "HOME"
            && k != "RUST_BACKTRACE"),
        "the worker's environment leaked: {env:?}"
    );
}
