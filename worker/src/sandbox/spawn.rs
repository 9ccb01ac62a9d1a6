//! Worker side of a sandbox, in two steps so that the first can happen before a request arrives:
//!
//! - [`PreparedSandbox::prepare`]: creates the cgroup, spawns `lamina-worker __sandbox-init`, attaches
//!   it to the cgroup, sends the `PrepareConfig` and receives the Runtime API listener (namespaces,
//!   loopback and the socket now exist; no code is bound, nothing untrusted runs);
//! - [`PreparedSandbox::bind`]: writes the function's limits into the cgroup, sends the `InitConfig`
//!   (code, runtime, uid, environment) and learns whether exec succeeded.
//!
//! [`Sandbox::start`] does both at once. See `protocol.rs` for the conversation and `init.rs` for what
//! happens inside.
use std::io::IoSliceMut;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lamina_proto::domain::Runtime;
use nix::sys::socket::{
    recvmsg, send, setsockopt, socketpair, sockopt, AddressFamily, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::time::TimeVal;
use tokio::sync::watch;

use super::launcher::Launcher;
use super::protocol::{InitConfig, PrepareConfig, INIT_SOCKET_FD, MSG_ERROR_PREFIX, MSG_LISTENER};
use crate::cgroup::{self, Cgroup, CgroupError, Limits};

/// How long the init process may take for each step (spawn to prepared, bind to exec).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `destroy` lets the init outside the pid namespace exit by itself after its pid 1 was
/// killed, before it is killed too.
const INIT_EXIT_GRACE: Duration = Duration::from_secs(1);
/// Memory limit of a prepared sandbox until a function is bound (nothing but the init runs in it).
const PREPARED_MEMORY_MB: u32 = 128;

/// Everything needed to start one sandbox. The caller (manager) builds `argv` and `env`.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// e.g. `sb-<uuid>`; used in cgroup and directory names.
    pub sandbox_id: String,
    pub runtime: Runtime,
    /// Host directory with the unzipped code, bound read-only at /var/task.
    pub code_dir: PathBuf,
    /// Host directories of the unzipped layers, mounted read-only at /opt in this order (a later
    /// layer's files replace an earlier one's).
    pub layer_dirs: Vec<PathBuf>,
    /// Host directory with Lamina's bootstraps, bound read-only at /var/runtime.
    pub runtime_dir: PathBuf,
    /// Per-sandbox scratch directory owned by the worker (created by start, removed by destroy).
    pub work_dir: PathBuf,
    /// Relative cgroup path of the parent, e.g. `lamina/<worker-id>`.
    pub cgroup_parent: String,
    pub memory_mb: u32,
    /// Size of the /tmp tmpfs.
    pub ephemeral_storage_mb: u32,
    /// Program and arguments of the runtime process, as seen inside the sandbox.
    pub argv: Vec<String>,
    /// Complete environment of the runtime process (nothing else is inherited).
    pub env: Vec<(String, String)>,
    /// Unprivileged host uid (and gid) the function runs as.
    pub host_uid: u32,
    /// Maximum number of processes and threads in the sandbox.
    pub pids_max: u32,
}

impl SandboxSpec {
    /// The part known before any function is (cgroup, ids), and the function's part.
    pub fn split(self) -> (PrepareSpec, BindSpec) {
        (
            PrepareSpec {
                sandbox_id: self.sandbox_id,
                work_dir: self.work_dir,
                cgroup_parent: self.cgroup_parent,
                runtime_dir: self.runtime_dir,
                pids_max: self.pids_max,
            },
            BindSpec {
                runtime: self.runtime,
                code_dir: self.code_dir,
                layer_dirs: self.layer_dirs,
                memory_mb: self.memory_mb,
                ephemeral_storage_mb: self.ephemeral_storage_mb,
                argv: self.argv,
                env: self.env,
                host_uid: self.host_uid,
                pids_max: self.pids_max,
                image: None,
            },
        )
    }
}

/// What a sandbox needs before its function is known.
#[derive(Debug, Clone)]
pub struct PrepareSpec {
    /// e.g. `sb-<uuid>`; used in cgroup and directory names.
    pub sandbox_id: String,
    /// Per-sandbox scratch directory owned by the worker (created by prepare, removed by destroy).
    pub work_dir: PathBuf,
    /// Relative cgroup path of the parent, e.g. `lamina/<worker-id>`.
    pub cgroup_parent: String,
    /// Host directory with Lamina's bootstraps, bound read-only at /var/runtime.
    pub runtime_dir: PathBuf,
    pub pids_max: u32,
}

/// The function a prepared sandbox is bound to (see [`SandboxSpec`] for the fields).
#[derive(Debug, Clone)]
pub struct BindSpec {
    pub runtime: Runtime,
    pub code_dir: PathBuf,
    pub layer_dirs: Vec<PathBuf>,
    pub memory_mb: u32,
    pub ephemeral_storage_mb: u32,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub host_uid: u32,
    pub pids_max: u32,
    /// Image functions: the unpacked image as the root (set by the manager after `split`).
    pub image: Option<super::protocol::ImageRoot>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox {id}: {source}")]
    Cgroup { id: String, source: CgroupError },
    #[error("sandbox {id}: {what}: {source}")]
    Io {
        id: String,
        what: String,
        source: std::io::Error,
    },
    #[error("sandbox {id} failed to start: {message}")]
    Start { id: String, message: String },
}

/// How the sandbox's runtime process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl std::fmt::Display for ExitInfo {
    /// Lambda's wording: `exit status 1` or `signal: killed`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (_, Some(sig)) => {
                let name = match nix::sys::signal::Signal::try_from(sig) {
                    Ok(nix::sys::signal::Signal::SIGKILL) => "killed".to_string(),
                    Ok(s) => s.as_str().trim_start_matches("SIG").to_ascii_lowercase(),
                    Err(_) => sig.to_string(),
                };
                write!(f, "signal: {name}")
            }
            (Some(code), None) => write!(f, "exit status {code}"),
            (None, None) => write!(f, "exit status unknown"),
        }
    }
}

pub struct Sandbox {
    id: String,
    cgroup: Arc<dyn Cgroup>,
    /// Host pid of the init process outside the sandbox's pid namespace (the parent of its pid 1),
    /// valid until `exit` says it ended: only its parent (the worker or its launcher) reaps it.
    init_pid: i32,
    work_dir: PathBuf,
    listener: Option<TcpListener>,
    /// The execution role's endpoints: the AWS API (127.0.0.1:9002) and the Parameters and
    /// Secrets extension (127.0.0.1:2773), inside the sandbox's network namespace.
    role_listeners: Option<(TcpListener, TcpListener)>,
    output: Option<OwnedFd>,
    exit: watch::Receiver<Option<ExitInfo>>,
    destroyed: bool,
}

impl Sandbox {
    /// Prepares a sandbox and binds it to its function at once: returns when the runtime has been
    /// exec'd inside.
    pub async fn start(spec: SandboxSpec) -> Result<Sandbox, SandboxError> {
        let (prepare, bind) = spec.split();
        PreparedSandbox::prepare(prepare).await?.bind(bind).await
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The Runtime API socket, bound at 127.0.0.1:9001 inside the sandbox's network namespace,
    /// listening and non-blocking. Some once.
    pub fn take_runtime_api_listener(&mut self) -> Option<TcpListener> {
        self.listener.take()
    }

    /// The AWS API endpoint's and the Parameters and Secrets extension's sockets (bound at
    /// 127.0.0.1:9002 and 127.0.0.1:2773 inside the sandbox's network namespace, listening,
    /// non-blocking). Some once; dropping them closes the ports.
    pub fn take_role_listeners(&mut self) -> Option<(TcpListener, TcpListener)> {
        self.role_listeners.take()
    }

    /// Read end of the pipe that is the runtime's stdout and stderr. Some once; needs a tokio runtime.
    pub fn take_output(&mut self) -> Option<tokio::net::unix::pipe::Receiver> {
        let fd = self.output.take()?;
        tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok()
    }

    /// Resolves when the sandbox's runtime process has exited. Cancel-safe.
    pub async fn wait_exit(&self) -> ExitInfo {
        let mut rx = self.exit.clone();
        loop {
            if let Some(info) = *rx.borrow_and_update() {
                return info;
            }
            if rx.changed().await.is_err() {
                return ExitInfo {
                    code: None,
                    signal: None,
                };
            }
        }
    }

    pub fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    pub fn freeze(&self) -> Result<(), SandboxError> {
        self.cgroup.freeze().map_err(|source| self.cg_err(source))
    }

    pub fn thaw(&self) -> Result<(), SandboxError> {
        self.cgroup.thaw().map_err(|source| self.cg_err(source))
    }

    /// True when the kernel OOM-killed a process of this sandbox.
    pub fn oom_killed(&self) -> bool {
        self.cgroup.oom_kills() > 0
    }

    /// Peak memory use of the sandbox's cgroup in bytes (0 if unknown).
    pub fn memory_peak_bytes(&self) -> u64 {
        self.cgroup.memory_peak_bytes()
    }

    /// SIGKILLs every process of the sandbox now, without waiting: the processes inside its pid
    /// namespace (pid 1's death takes every other one with it), after which the init outside reaps
    /// pid 1 and exits by itself; the init too when nothing else is left.
    pub fn kill(&self) {
        if !self.kill_inside() {
            cgroup::kill_pids(&self.cgroup.pids());
        }
        // A frozen task only dies once it runs again.
        if let Err(e) = self.cgroup.thaw() {
            tracing::warn!(sandbox = %self.id, error = %e, "thaw after kill failed");
        }
    }

    /// SIGKILLs the sandbox's processes but its init outside the pid namespace; true when the init
    /// is alive and something else was signalled (the init then exits once it reaped pid 1, so
    /// that no zombie of the sandbox is left to the host's init, which may reap it seconds later
    /// and keeps the cgroup from being reused until then).
    fn kill_inside(&self) -> bool {
        if self.has_exited() {
            return false;
        }
        let inside: Vec<i32> = self
            .cgroup
            .pids()
            .into_iter()
            .filter(|&pid| pid != self.init_pid)
            .collect();
        cgroup::kill_pids(&inside);
        !inside.is_empty()
    }

    /// Kills everything, waits for it, removes the work directory and the cgroup (or keeps the
    /// emptied cgroup for the next sandbox, see `cgroup::retire`).
    pub async fn destroy(mut self) {
        self.destroyed = true;
        // Pid 1 first, so that the init outside reaps it and exits by itself; then everything.
        if self.kill_inside() {
            if let Err(e) = self.cgroup.thaw() {
                tracing::warn!(sandbox = %self.id, error = %e, "thaw after kill failed");
            }
            // Bounded: whatever is left is killed below.
            if tokio::time::timeout(INIT_EXIT_GRACE, self.wait_exit())
                .await
                .is_err()
            {
                tracing::debug!(sandbox = %self.id, "init still running after its pid 1 was killed: killing everything");
            }
        }
        let cgroup = self.cgroup.clone();
        let work_dir = self.work_dir.clone();
        let kill = tokio::task::spawn_blocking(move || cgroup.kill_all());
        if let Ok(Err(e)) = kill.await {
            tracing::warn!(sandbox = %self.id, error = %e, "killing the sandbox failed");
        }
        if tokio::time::timeout(Duration::from_secs(5), self.wait_exit())
            .await
            .is_err()
        {
            tracing::warn!(sandbox = %self.id, "init process did not exit within 5 s of SIGKILL");
        }
        let cgroup = self.cgroup.clone();
        // `destroyed` is set, so dropping does nothing more; it leaves `cgroup` the only reference,
        // which lets `remove_everything` hand the cgroup on.
        drop(self);
        tokio::task::spawn_blocking(move || remove_everything(cgroup, &work_dir))
            .await
            .ok();
    }

    fn cg_err(&self, source: CgroupError) -> SandboxError {
        SandboxError::Cgroup {
            id: self.id.clone(),
            source,
        }
    }
}

impl Drop for Sandbox {
    /// A sandbox dropped without `destroy` is still torn down, on a plain thread.
    fn drop(&mut self) {
        if self.destroyed {
            return;
        }
        let cgroup = self.cgroup.clone();
        let work_dir = self.work_dir.clone();
        std::thread::spawn(move || remove_everything(cgroup, &work_dir));
    }
}

/// Kills every process of the cgroup, removes the work directory, then retires the cgroup: kept
/// for the next sandbox when it is provably empty and `cgroup` is its only reference, else removed.
fn remove_everything(cgroup: Arc<dyn Cgroup>, work_dir: &std::path::Path) {
    let relative = cgroup.relative_path().to_string();
    if let Err(e) = cgroup.kill_all() {
        tracing::warn!(cgroup = %relative, error = %e, "kill failed");
    }
    if let Err(e) = std::fs::remove_dir_all(work_dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %work_dir.display(), error = %e, "remove work dir failed");
        }
    }
    if let Err(e) = cgroup::retire(cgroup) {
        tracing::warn!(cgroup = %relative, error = %e, "remove failed");
    }
}

/// A sandbox whose cgroup, namespaces, loopback and Runtime API socket exist, waiting for a function.
/// Nothing untrusted runs in it; its init process (pid 1 of its namespaces, still host root) blocks
/// on the init socket. Dropping it tears it down like a [`Sandbox`].
pub struct PreparedSandbox {
    sandbox: Sandbox,
    sock: OwnedFd,
}

impl PreparedSandbox {
    /// Creates the cgroup (with a small memory limit until bind), spawns and attaches the init
    /// process, and waits until its namespaces and Runtime API socket are ready.
    pub async fn prepare(spec: PrepareSpec) -> Result<PreparedSandbox, SandboxError> {
        Self::prepare_with(spec, None).await
    }

    /// Like [`prepare`](Self::prepare); with a launcher the init process is a child forked from it
    /// instead of a fresh `lamina-worker __sandbox-init` (from the Python zygote, a pre-imported
    /// Python interpreter, the sandbox can only be bound to a Python function).
    pub async fn prepare_with(
        spec: PrepareSpec,
        launcher: Option<Arc<Launcher>>,
    ) -> Result<PreparedSandbox, SandboxError> {
        let id = spec.sandbox_id.clone();
        let exe = std::env::current_exe().map_err(|source| SandboxError::Io {
            id: id.clone(),
            what: "find the lamina-worker executable".into(),
            source,
        })?;
        let limits = Limits::for_function(PREPARED_MEMORY_MB, spec.pids_max);
        let (parent, cg_id) = (spec.cgroup_parent.clone(), id.clone());
        // A free cgroup emptied by an earlier sandbox when there is one (`cgroup::take_or_create`).
        let cgroup: Arc<dyn Cgroup> = tokio::task::spawn_blocking(move || {
            cgroup::take_or_create(&parent, &cg_id, &limits).map(Arc::from)
        })
        .await
        .expect("cgroup creation task panicked")
        .map_err(|source| SandboxError::Cgroup {
            id: id.clone(),
            source,
        })?;
        match prepare_in(&spec, &exe, cgroup.clone(), launcher).await {
            Ok(p) => Ok(p),
            Err(e) => {
                let work_dir = spec.work_dir.clone();
                tokio::task::spawn_blocking(move || remove_everything(cgroup, &work_dir))
                    .await
                    .ok();
                Err(e)
            }
        }
    }

    pub fn id(&self) -> &str {
        self.sandbox.id()
    }

    /// True when the init process is gone (killed from outside, or the worker's end failed).
    pub fn has_exited(&self) -> bool {
        self.sandbox.has_exited()
    }

    /// The processes of the sandbox (its init): each one lives in the sandbox's network namespace
    /// (used to plug a VPC interface in before bind).
    pub fn pids(&self) -> Vec<i32> {
        self.sandbox.cgroup.pids()
    }

    /// Binds the function: its limits into the cgroup, then the config to the init process, which
    /// builds the root, drops every privilege and execs the runtime. On failure everything is removed.
    pub async fn bind(self, spec: BindSpec) -> Result<Sandbox, SandboxError> {
        let PreparedSandbox { sandbox, sock } = self;
        let id = sandbox.id.clone();
        let cfg = InitConfig {
            code_dir: spec.code_dir,
            layer_dirs: spec.layer_dirs,
            ephemeral_storage_mb: spec.ephemeral_storage_mb,
            argv: spec.argv,
            env: spec.env,
            host_uid: spec.host_uid,
            image: spec.image,
        };
        let limits = Limits::for_function(spec.memory_mb, spec.pids_max);
        let cgroup = sandbox.cgroup.clone();
        let bound = tokio::task::spawn_blocking(move || {
            cgroup
                .set_limits(&limits)
                .map_err(|source| SandboxError::Cgroup {
                    id: id.clone(),
                    source,
                })?;
            send_json(&id, &sock, &cfg)?;
            match receive(&id, &sock)? {
                Received::Eof => Ok(()),
                Received::Listener(..) => Err(start_err(&id, "a second runtime api socket".into())),
            }
        })
        .await
        .expect("sandbox bind task panicked");
        match bound {
            Ok(()) => Ok(sandbox),
            Err(e) => {
                sandbox.destroy().await;
                Err(e)
            }
        }
    }

    /// Kills the init process and removes the cgroup and the work directory.
    pub async fn destroy(self) {
        self.sandbox.destroy().await;
    }
}

async fn prepare_in(
    spec: &PrepareSpec,
    exe: &std::path::Path,
    cgroup: Arc<dyn Cgroup>,
    launcher: Option<Arc<Launcher>>,
) -> Result<PreparedSandbox, SandboxError> {
    let id = spec.sandbox_id.clone();
    let io_err = |what: &str| {
        let id = id.clone();
        let what = what.to_string();
        move |source: std::io::Error| SandboxError::Io { id, what, source }
    };
    let root_dir = spec.work_dir.join("root");
    std::fs::create_dir_all(&root_dir)
        .map_err(io_err(&format!("create {}", root_dir.display())))?;

    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| io_err("socketpair")(e.into()))?;
    let (out_read, out_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| io_err("pipe")(e.into()))?;

    let (pid, exit_rx) = match launcher {
        Some(l) => {
            let spawned = l.spawn(&theirs, &out_write).await;
            drop(theirs);
            drop(out_write);
            spawned.map_err(|e| start_err(&id, e.to_string()))?
        }
        None => {
            spawn_init(exe, theirs, out_write).map_err(io_err("spawn the sandbox init process"))?
        }
    };
    // From here on a failure tears the process down with the sandbox.
    let mut sandbox = Sandbox {
        id: id.clone(),
        cgroup: cgroup.clone(),
        work_dir: spec.work_dir.clone(),
        listener: None,
        role_listeners: None,
        output: Some(out_read),
        init_pid: pid,
        exit: exit_rx,
        destroyed: false,
    };

    // The init process waits for its config before doing anything: attach it to the cgroup first.
    let cg = cgroup.clone();
    let attach = tokio::task::spawn_blocking(move || cg.add_process(pid))
        .await
        .expect("cgroup attach task panicked");
    if let Err(source) = attach {
        sandbox.destroy().await;
        return Err(SandboxError::Cgroup { id, source });
    }

    let cfg = PrepareConfig {
        sandbox_id: spec.sandbox_id.clone(),
        hostname: hostname_for(&spec.sandbox_id),
        root_dir,
        runtime_dir: spec.runtime_dir.clone(),
    };
    let hs_id = id.clone();
    let handshake = tokio::task::spawn_blocking(move || {
        set_timeout(&hs_id, &ours)?;
        send_json(&hs_id, &ours, &cfg)?;
        match receive(&hs_id, &ours)? {
            Received::Listener(l, role) => Ok((l, role, ours)),
            Received::Eof => Err(start_err(
                &hs_id,
                "init exited without a runtime api socket".into(),
            )),
        }
    })
    .await
    .expect("sandbox handshake task panicked");
    match handshake {
        Ok((listener, role, sock)) => {
            sandbox.listener = Some(listener);
            sandbox.role_listeners = Some(role);
            Ok(PreparedSandbox { sandbox, sock })
        }
        Err(e) => {
            sandbox.destroy().await;
            Err(e)
        }
    }
}

/// `lamina-` plus the start of the sandbox id: never the host's name.
fn hostname_for(sandbox_id: &str) -> String {
    let short: String = sandbox_id
        .trim_start_matches("sb-")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("lamina-{short}")
}

/// `lamina-worker __sandbox-init` with `theirs` on fd 3 and `out` as stdout and stderr; its pid and
/// a watch that gets its exit.
fn spawn_init(
    exe: &std::path::Path,
    theirs: OwnedFd,
    out_write: OwnedFd,
) -> std::io::Result<(i32, watch::Receiver<Option<ExitInfo>>)> {
    let mut cmd = tokio::process::Command::new(exe);
    // Pid 1 of the sandbox is this process (forked): its /proc/1/cmdline, readable by the function,
    // names no host path.
    cmd.arg0(super::INIT_ARG0)
        .arg("__sandbox-init")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(out_write.try_clone()?)
        .stderr(out_write)
        .kill_on_drop(false);
    let their_fd: RawFd = theirs.as_raw_fd();
    // SAFETY: the closure runs between fork and exec and only calls dup2/fcntl, which are
    // async-signal-safe; it touches no memory shared with other threads.
    unsafe {
        cmd.pre_exec(move || {
            if their_fd == INIT_SOCKET_FD {
                // dup2 onto itself would keep close-on-exec: clear the flag instead.
                if libc::fcntl(their_fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(their_fd, INIT_SOCKET_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(cmd); // closes our copies of the pipe's write end
    drop(theirs);
    let pid = child.id().expect("a just-spawned child has a pid") as i32;

    let (exit_tx, exit_rx) = watch::channel(None);
    tokio::spawn(async move {
        let info = match child.wait().await {
            Ok(status) => ExitInfo {
                code: status.code(),
                signal: status.signal(),
            },
            Err(_) => ExitInfo {
                code: None,
                signal: None,
            },
        };
        // Nobody listening any more means the sandbox was already dropped.
        exit_tx.send_replace(Some(info));
    });
    Ok((pid, exit_rx))
}

fn start_err(id: &str, message: String) -> SandboxError {
    SandboxError::Start {
        id: id.to_string(),
        message,
    }
}

fn set_timeout(id: &str, sock: &OwnedFd) -> Result<(), SandboxError> {
    setsockopt(
        sock,
        sockopt::ReceiveTimeout,
        &TimeVal::new(START_TIMEOUT.as_secs() as i64, 0),
    )
    .map_err(|e| start_err(id, format!("set receive timeout: {e}")))
}

fn send_json<T: serde::Serialize>(id: &str, sock: &OwnedFd, msg: &T) -> Result<(), SandboxError> {
    let bytes =
        serde_json::to_vec(msg).map_err(|e| start_err(id, format!("encode config: {e}")))?;
    loop {
        match send(sock.as_raw_fd(), &bytes, MsgFlags::empty()) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(start_err(id, format!("send config: {e}"))),
        }
    }
}

/// What the init process said: the Runtime API socket, or end-of-file (exec done). An `ERROR`
/// message or anything unexpected is an error.
enum Received {
    /// The Runtime API's socket, then the role endpoints' (AWS API, extension).
    Listener(TcpListener, (TcpListener, TcpListener)),
    Eof,
}

fn receive(id: &str, sock: &OwnedFd) -> Result<Received, SandboxError> {
    let fail = |message: String| start_err(id, message);
    let fd = sock.as_raw_fd();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut cmsg = nix::cmsg_space!([RawFd; 3]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(msg) => msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => {
                return Err(fail(format!(
                    "init did not finish within {} s",
                    START_TIMEOUT.as_secs()
                )))
            }
            Err(e) => return Err(fail(format!("receive from init: {e}"))),
        };
        let mut received_fds = Vec::new();
        for c in msg
            .cmsgs()
            .map_err(|e| fail(format!("read control message: {e}")))?
        {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for f in fds {
                    // SAFETY: SCM_RIGHTS just installed this fd in our table; we are its only owner.
                    let owned = unsafe { OwnedFd::from_raw_fd(f) };
                    received_fds.push(owned);
                }
            }
        }
        let n = msg.bytes;
        let data = &buf[..n];
        if n == 0 {
            // EOF: the init socket was closed by a successful exec (or the init died).
            return Ok(Received::Eof);
        }
        if data == MSG_LISTENER {
            if received_fds.len() != 3 {
                return Err(fail(format!(
                    "the runtime api message carries {} sockets, not 3",
                    received_fds.len()
                )));
            }
            let mut listeners = Vec::with_capacity(3);
            for owned in received_fds {
                let l = TcpListener::from(owned);
                l.set_nonblocking(true)
                    .map_err(|e| fail(format!("sandbox listening socket: {e}")))?;
                listeners.push(l);
            }
            let Ok([runtime, aws, extension]) = <[TcpListener; 3]>::try_from(listeners) else {
                return Err(fail("the runtime api message lost a socket".into()));
            };
            return Ok(Received::Listener(runtime, (aws, extension)));
        } else if let Some(err) = data.strip_prefix(MSG_ERROR_PREFIX) {
            return Err(fail(String::from_utf8_lossy(err).into_owned()));
        } else {
            return Err(fail(format!(
                "unexpected message from init: {:?}",
                String::from_utf8_lossy(data)
            )));
        }
    }
}

/// Kills and removes what a previous worker run left below `cgroup_parent`.
pub fn cleanup_stale(cgroup_parent: &str) {
    match cgroup::cleanup_stale(cgroup_parent) {
        Ok(0) => {}
        Ok(n) => tracing::info!(n, parent = cgroup_parent, "removed stale sandbox cgroups"),
        Err(e) => tracing::warn!(parent = cgroup_parent, error = %e, "stale cgroup cleanup failed"),
    }
}

/// Removes the worker's free cgroups and its own (then empty) parent cgroup at shutdown, once
/// every sandbox is gone.
pub fn remove_cgroup_parent(cgroup_parent: &str) {
    cgroup::drain_free(cgroup_parent);
    if let Err(e) = cgroup::remove_group(cgroup_parent) {
        tracing::warn!(parent = cgroup_parent, error = %e, "removing the worker's cgroup failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_info_uses_lambda_wording() {
        let e = ExitInfo {
            code: Some(1),
            signal: None,
        };
        assert_eq!(e.to_string(), "exit status 1");
        let e = ExitInfo {
            code: None,
            signal: Some(9),
        };
        assert_eq!(e.to_string(), "signal: killed");
        let e = ExitInfo {
            code: None,
            signal: Some(11),
        };
        assert_eq!(e.to_string(), "signal: segv");
    }

    #[test]
    fn hostname_is_not_the_hosts() {
        assert_eq!(hostname_for("sb-0123456789abcdef"), "lamina-0123456789ab");
    }
}
