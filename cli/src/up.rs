//! `fnctl up`: a single-node cluster (controller + one worker) as child processes, in the foreground.
//!
//! The children are spawned from the main thread of fnctl's single-threaded runtime:
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked exits, so spawning from a pool thread that
//! may retire would kill them early.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::signal::unix::{signal, SignalKind};

use crate::args::UpArgs;
use crate::Outcome;

const CONTROLLER: &str = "lamina-controller";
const WORKER: &str = "lamina-worker";
/// How long a child may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the children get between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long fnctl waits, once the children are gone, for their last output to be passed on.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A started child process.
struct Proc {
    name: &'static str,
    child: Child,
    /// Copies the child's stdout to fnctl's stderr once it is ready.
    forwarder: Option<tokio::task::JoinHandle<()>>,
}

/// The controller's other listeners, from the ready lines it prints before its gRPC one.
#[derive(Debug, Default, PartialEq)]
pub struct Listeners {
    /// `lamina-controller rest listening on HOST:PORT`
    pub rest: Option<String>,
    /// `lamina-controller http listening on HOST:PORT`
    pub http: Option<String>,
}

impl Listeners {
    /// Notes `line` when it is one of the other listeners' ready lines.
    fn note(&mut self, line: &str) {
        if let Some(addr) = rest_address(line) {
            self.rest = Some(addr);
        } else if let Some(addr) = http_address(line) {
            self.http = Some(addr);
        }
    }
}

/// SIGINT or SIGTERM, whichever comes first.
struct Shutdown {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn install() -> anyhow::Result<Self> {
        Ok(Shutdown {
            int: signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

pub async fn up(args: &UpArgs) -> anyhow::Result<Outcome> {
    let mut shutdown = Shutdown::install()?;
    let controller_dir = args.data_dir.join("controller");
    let worker_dir = args.data_dir.join("worker");
    for dir in [&controller_dir, &worker_dir] {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow!(
                "cannot create data directory {}: {e}; choose another --data-dir",
                dir.display()
            )
        })?;
    }
    let controller_bin = find_binary(CONTROLLER)?;
    let worker_bin = find_binary(WORKER)?;
    let tls = generate_tls(args)?;

    let mut controller = spawn(
        CONTROLLER,
        &controller_bin,
        &[
            "--listen".as_ref(),
            args.listen.as_ref(),
            "--rest-listen".as_ref(),
            args.rest_listen.as_ref(),
            "--http-listen".as_ref(),
            args.http_listen.as_ref(),
            "--data-dir".as_ref(),
            controller_dir.as_os_str(),
            "--tls-cert".as_ref(),
            tls.controller.cert.as_os_str(),
            "--tls-key".as_ref(),
            tls.controller.key.as_os_str(),
            "--tls-ca".as_ref(),
            tls.ca.as_os_str(),
        ],
    )?;
    let mut listeners = Listeners::default();
    let ready = tokio::select! {
        r = wait_ready(&mut controller, controller_address, &mut listeners) => r,
        _ = shutdown.recv() => {
            stop(&mut [&mut controller]).await;
            return Ok(Outcome::Success);
        }
    };
    let addr = match ready {
        Ok(addr) => addr,
        Err(e) => {
            stop(&mut [&mut controller]).await;
            return Err(e);
        }
    };
    let endpoint = format!("https://{addr}");
    // The role endpoints of sandboxes (execution roles) forward to the REST API.
    let controller_rest = format!(
        "https://{}",
        listeners.rest.as_deref().unwrap_or(&args.rest_listen)
    );
    // Created by the controller at its first start (`DATA_DIR/auth/`, mode 0600).
    let auth_dir = controller_dir.join("auth");
    let cluster_token = auth_dir.join("cluster-token");
    let credentials = auth_dir.join("admin-credentials.json");

    const PREWARM: &str = "2";
    let mut worker = match spawn(
        WORKER,
        &worker_bin,
        &[
            "--controller".as_ref(),
            endpoint.as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--state-dir".as_ref(),
            worker_dir.as_os_str(),
            "--cluster-token-file".as_ref(),
            cluster_token.as_os_str(),
            // Keep two sandboxes prepared ahead of requests: cold starts skip namespace and cgroup
            // set-up. (The Python zygote stays off: its sandboxes share one address-space layout.)
            "--prewarm".as_ref(),
            PREWARM.as_ref(),
            "--controller-rest".as_ref(),
            controller_rest.as_ref(),
            "--tls-cert".as_ref(),
            tls.worker.cert.as_os_str(),
            "--tls-key".as_ref(),
            tls.worker.key.as_os_str(),
            "--tls-ca".as_ref(),
            tls.ca.as_os_str(),
        ],
    ) {
        Ok(w) => w,
        Err(e) => {
            stop(&mut [&mut controller]).await;
            return Err(e);
        }
    };
    let mut no_listeners = Listeners::default();
    let ready = tokio::select! {
        r = wait_ready(&mut worker, worker_address, &mut no_listeners) => r,
        _ = shutdown.recv() => {
            stop(&mut [&mut worker, &mut controller]).await;
            return Ok(Outcome::Success);
        }
    };
    if let Err(e) = ready {
        stop(&mut [&mut worker, &mut controller]).await;
        return Err(e);
    }

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "lamina is up: endpoint {endpoint}")
            .and_then(|()| match &listeners.rest {
                Some(rest) => writeln!(
                    out,
                    "lambda rest api: https://{rest} (boto3: endpoint_url=\"https://{rest}\", verify=\"{ca}\"; aws cli: --endpoint-url https://{rest} --ca-bundle {ca})",
                    ca = tls.ca.display()
                ),
                None => Ok(()),
            })
            .and_then(|()| match &listeners.http {
                Some(http) => writeln!(out, "{}", http_endpoint_line(http)),
                None => Ok(()),
            })
            .and_then(|()| {
                writeln!(
                    out,
                    "tls: every endpoint is https; CA certificate {} (fnctl finds it beside the credentials; FNCTL_CA or --ca; curl --cacert)",
                    tls.ca.display()
                )
            })
            .and_then(|()| {
                if credentials.exists() {
                    writeln!(
                        out,
                        "credentials: {} (fnctl --credentials FILE or FNCTL_CREDENTIALS; the same key signs boto3 requests)",
                        credentials.display()
                    )
                } else {
                    Ok(())
                }
            })
            .and_then(|()| out.flush())
            .context("cannot write to standard output")?;
    }

    tokio::select! {
        biased;
        _ = shutdown.recv() => {
            stop(&mut [&mut worker, &mut controller]).await;
            Ok(Outcome::Success)
        }
        status = controller.child.wait() => {
            stop(&mut [&mut worker]).await;
            drain_output(&mut [&mut controller]).await;
            Err(died(CONTROLLER, status, WORKER))
        }
        status = worker.child.wait() => {
            stop(&mut [&mut controller]).await;
            drain_output(&mut [&mut worker]).await;
            Err(died(WORKER, status, CONTROLLER))
        }
    }
}

/// The cluster's TLS files under `DATA_DIR/tls`.
struct ClusterTls {
    ca: PathBuf,
    controller: lamina_proto::certs::Issued,
    worker: lamina_proto::certs::Issued,
}

/// The CA of `DATA_DIR/tls` (created on the first start: `ca.pem`, `ca-key.pem` mode 0600), and
/// fresh certificates for the controller (localhost, 127.0.0.1, ::1 and the hosts of its listen
/// addresses) and the worker, issued at every start.
fn generate_tls(args: &UpArgs) -> anyhow::Result<ClusterTls> {
    let dir = args.data_dir.join("tls");
    let ca = lamina_proto::certs::Authority::load_or_create(&dir)
        .with_context(|| format!("cannot set up the cluster CA in {}", dir.display()))?;
    let hosts: Vec<String> = [&args.listen, &args.rest_listen, &args.http_listen]
        .into_iter()
        .filter_map(|a| listen_host(a))
        .collect();
    Ok(ClusterTls {
        controller: ca.issue("controller", &hosts)?,
        worker: ca.issue("worker", &[])?,
        ca: ca.ca_path(),
    })
}

/// The host of a `HOST:PORT` listen address, unless it is unspecified (`0.0.0.0`, `::`): a
/// certificate names the host clients dial.
pub fn listen_host(addr: &str) -> Option<String> {
    let (host, _) = addr.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let unspecified = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    (!host.is_empty() && !unspecified).then(|| host.to_string())
}

fn died(name: &str, status: std::io::Result<ExitStatus>, other: &str) -> anyhow::Error {
    match status {
        Ok(s) => anyhow!("{name} exited on its own ({s}); stopped {other}, see the messages above"),
        Err(e) => anyhow!("cannot wait for {name}: {e}; stopped {other}"),
    }
}

/// `lamina-controller listening on HOST:PORT` -> `HOST:PORT`.
pub fn controller_address(line: &str) -> Option<String> {
    let addr = line
        .trim()
        .strip_prefix("lamina-controller listening on ")?
        .trim();
    (!addr.is_empty() && !addr.contains(' ')).then(|| addr.to_string())
}

/// `lamina-controller rest listening on HOST:PORT` -> `HOST:PORT`.
pub fn rest_address(line: &str) -> Option<String> {
    let addr = line
        .trim_end()
        .strip_prefix("lamina-controller rest listening on ")?;
    (!addr.is_empty() && !addr.contains(' ')).then(|| addr.to_string())
}

/// `lamina-controller http listening on HOST:PORT` -> `HOST:PORT`.
pub fn http_address(line: &str) -> Option<String> {
    let addr = line
        .trim_end()
        .strip_prefix("lamina-controller http listening on ")?;
    (!addr.is_empty() && !addr.contains(' ')).then(|| addr.to_string())
}

/// What `fnctl up` says about the HTTP gateway listening on `addr`.
pub fn http_endpoint_line(addr: &str) -> String {
    format!(
        "http gateway: https://{addr} (function URLs: fnctl url create NAME, then curl https://{addr}/<url-id>/; \
         HTTP APIs: https://{addr}/<api-id>/...)"
    )
}

/// `lamina-worker ID listening on HOST:PORT` -> `HOST:PORT`.
pub fn worker_address(line: &str) -> Option<String> {
    let rest = line.trim().strip_prefix("lamina-worker ")?;
    let (id, addr) = rest.split_once(" listening on ")?;
    let addr = addr.trim();
    (!id.is_empty() && !id.contains(' ') && !addr.is_empty() && !addr.contains(' '))
        .then(|| addr.to_string())
}

/// Where `name` is: next to fnctl's own executable, else on PATH.
pub fn find_binary(name: &str) -> anyhow::Result<PathBuf> {
    let mut looked = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        looked.push(format!("{} (next to fnctl)", dir.display()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    looked.push(format!("PATH ({})", path.to_string_lossy()));
    bail!(
        "cannot find {name}: looked in {}; build it (cargo build --bin {name}) or put it on PATH",
        looked.join(" and ")
    )
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn spawn(name: &'static str, bin: &Path, args: &[&std::ffi::OsStr]) -> anyhow::Result<Proc> {
    let parent = nix::unistd::getpid();
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Own process group: a terminal's Ctrl-C reaches fnctl only, which then stops the children in
        // order (worker first) instead of racing them.
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: the hook runs in the forked child before exec. It only calls prctl(PR_SET_PDEATHSIG) and
    // getppid, both async-signal-safe, and builds io::Errors from raw errno values (no allocation).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Some(Signal::SIGTERM))?;
            // fnctl died between fork and prctl: the death signal will never come, so do not start.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| anyhow!("cannot start {name} ({}): {e}", bin.display()))?;
    Ok(Proc {
        name,
        child,
        forwarder: None,
    })
}

/// Reads the child's stdout until `parse` recognizes its ready line; lines before it and everything
/// after it go to fnctl's stderr.
async fn wait_ready(
    proc: &mut Proc,
    parse: fn(&str) -> Option<String>,
    listeners: &mut Listeners,
) -> anyhow::Result<String> {
    let name = proc.name;
    let stdout = proc
        .child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("{name}'s stdout was not captured"))?;
    let mut reader = BufReader::new(stdout);
    let found = tokio::time::timeout(
        READY_TIMEOUT,
        read_until_ready(&mut reader, parse, listeners),
    )
    .await;
    match found {
        Ok(Ok(Some(addr))) => {
            proc.forwarder = Some(tokio::spawn(forward_to_stderr(reader)));
            Ok(addr)
        }
        Ok(Ok(None)) => {
            let status = proc.child.wait().await;
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            Err(anyhow!(
                "{name} exited before it was ready ({status}); see its messages above"
            ))
        }
        Ok(Err(e)) => Err(anyhow!("cannot read {name}'s output: {e}")),
        Err(_) => Err(anyhow!(
            "{name} did not print its ready line within {} s; see its messages above",
            READY_TIMEOUT.as_secs()
        )),
    }
}

/// `Some(address)` once a line parses, `None` at end of output.
async fn read_until_ready<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    parse: fn(&str) -> Option<String>,
    listeners: &mut Listeners,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut stderr = tokio::io::stderr();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&line);
        if let Some(addr) = parse(&text) {
            return Ok(Some(addr));
        }
        listeners.note(&text);
        let _ = stderr.write_all(&line).await;
        let _ = stderr.flush().await;
    }
}

async fn forward_to_stderr(mut reader: BufReader<ChildStdout>) {
    let mut stderr = tokio::io::stderr();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                // tokio's stderr completes writes on a blocking thread: flush so nothing is lost at exit.
                if stderr.write_all(&line).await.is_err() || stderr.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// SIGTERM each (in order), then wait up to [`STOP_GRACE`] for all, then SIGKILL what is left.
async fn stop(procs: &mut [&mut Proc]) {
    for p in procs.iter_mut() {
        // `id()` is None once the child has been reaped, so a recycled pid is never signalled.
        if let Some(pid) = p.child.id() {
            match kill(Pid::from_raw(pid as i32), Signal::SIGTERM) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => eprintln!("fnctl: cannot send SIGTERM to {} (pid {pid}): {e}", p.name),
            }
        }
    }
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    for p in procs.iter_mut() {
        if tokio::time::timeout_at(deadline, p.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "fnctl: {} did not stop within {} s; killing it",
                p.name,
                STOP_GRACE.as_secs()
            );
            if let Err(e) = p.child.kill().await {
                eprintln!("fnctl: cannot kill {}: {e}", p.name);
            }
        }
    }
    drain_output(procs).await;
}

/// Lets the forwarders pass on what the stopped children wrote last. Bounded: a grandchild that
/// inherited the pipe could keep it open.
async fn drain_output(procs: &mut [&mut Proc]) {
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    for p in procs.iter_mut() {
        if let Some(forwarder) = p.forwarder.take() {
            let _ = tokio::time::timeout_at(deadline, forwarder).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines() {
        assert_eq!(
            rest_address("lamina-controller rest listening on 127.0.0.1:9680\n").as_deref(),
            Some("127.0.0.1:9680")
        );
        assert_eq!(
            controller_address("lamina-controller rest listening on 127.0.0.1:9680"),
            None
        );
        assert_eq!(
            controller_address("lamina-controller listening on 127.0.0.1:9670\n").as_deref(),
            Some("127.0.0.1:9670")
        );
        assert_eq!(controller_address("lamina-controller starting"), None);
        assert_eq!(
            http_address("lamina-controller http listening on 127.0.0.1:9690\n").as_deref(),
            Some("127.0.0.1:9690")
        );
        assert_eq!(
            http_address("lamina-controller rest listening on 127.0.0.1:9680"),
            None
        );
        assert_eq!(
            controller_address("lamina-controller http listening on 127.0.0.1:9690"),
            None
        );
        assert_eq!(
            worker_address("lamina-worker w-1a2b listening on 127.0.0.1:40123").as_deref(),
            Some("127.0.0.1:40123")
        );
        assert_eq!(
            worker_address("lamina-worker listening on 127.0.0.1:1"),
            None
        );
        assert_eq!(
            worker_address("lamina-controller listening on 127.0.0.1:1"),
            None
        );
    }

    #[tokio::test]
    async fn the_controllers_other_listeners_come_before_its_ready_line() {
        let out: &[u8] = b"lamina-controller http listening on 127.0.0.1:9690\n\
            lamina-controller rest listening on 127.0.0.1:9680\n\
            lamina-controller listening on 127.0.0.1:9670\n\
            later\n";
        let mut reader = BufReader::new(out);
        let mut listeners = Listeners::default();
        let addr = read_until_ready(&mut reader, controller_address, &mut listeners)
            .await
            .unwrap();
        assert_eq!(addr.as_deref(), Some("127.0.0.1:9670"));
        assert_eq!(
            listeners,
            Listeners {
                rest: Some("127.0.0.1:9680".into()),
                http: Some("127.0.0.1:9690".into()),
            }
        );
        let line = http_endpoint_line("127.0.0.1:9690");
        assert!(
            line.starts_with("http gateway: https://127.0.0.1:9690 ")
                && line.contains("curl https://127.0.0.1:9690/<url-id>/"),
            "{line}"
        );
    }

    #[test]
    fn listen_hosts_name_what_clients_dial() {
        assert_eq!(listen_host("127.0.0.1:9670").as_deref(), Some("127.0.0.1"));
        assert_eq!(listen_host("[::1]:9670").as_deref(), Some("::1"));
        assert_eq!(
            listen_host("lamina.example:443").as_deref(),
            Some("lamina.example")
        );
        assert_eq!(listen_host("0.0.0.0:9670"), None);
        assert_eq!(listen_host("[::]:9670"), None);
    }

    #[test]
    fn missing_binary_names_where_it_looked() {
        let err = find_binary("lamina-no-such-binary-xyz")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cannot find lamina-no-such-binary-xyz"),
            "{err}"
        );
        assert!(
            err.contains("next to fnctl") && err.contains("PATH ("),
            "{err}"
        );
    }
}
