//! Worker side of a launcher: a process started once that forks the init of each new sandbox, of
//! one of two kinds ([`LauncherKind`]):
//! - the spawner: this executable as a single-threaded `__sandbox-init` (`spawner.rs`), whose
//!   children are sandbox inits for any runtime;
//! - the Python zygote: a `python3.11` process, started once by the worker as host root with an
//!   empty environment, that has imported what Lamina's bootstrap imports and loaded the sandbox
//!   init code (`liblamina_worker.so`, see `zygote_ffi.rs`). For each new Python sandbox it forks a
//!   child that builds the sandbox exactly like an exec'd init, then runs the bootstrap in the
//!   already initialised interpreter instead of starting one (`runtimes/zygote.py`).
//!
//! Both speak one conversation on a SOCK_SEQPACKET socketpair (fd 3 in the launcher), one datagram
//! per message:
//! - launcher -> worker: `READY` once, after its imports;
//! - worker -> launcher: `SPAWN` with two fds (SCM_RIGHTS): the sandbox's socketpair end and the
//!   write end of its output pipe; the launcher answers `PID <pid>` (in request order);
//! - launcher -> worker: `EXIT <pid> <code|-> <signal|->` when a child it forked ended.
//!
//! What a forked child shares with its zygote: the interpreter's memory (copy-on-write), its address
//! space layout (ASLR is per zygote, not per sandbox) and Python's string hash seed.
use std::collections::{HashMap, VecDeque};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::time::TimeVal;
use tokio::sync::{oneshot, watch};

use super::protocol::INIT_SOCKET_FD;
use super::ExitInfo;

/// The embedded zygote script's name in the runtime directory.
pub const ZYGOTE_SCRIPT: &str = "zygote.py";
/// The shared library with the init code, next to the lamina-worker executable.
pub const ZYGOTE_LIBRARY: &str = "liblamina_worker.so";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The build id (`worker/build_id.rs`) as it appears in the binary and in the cdylib: the library
/// the zygote loads must carry this exact marker, i.e. come from the same build as this binary.
pub const BUILD_MARKER: &str = concat!(
    "lamina-worker-build-id:",
    env!("LAMINA_WORKER_BUILD_ID"),
    ";"
);

/// Exported, so that the cdylib keeps the marker in its read-only data.
#[no_mangle]
#[used]
pub static LAMINA_WORKER_BUILD_MARKER: &str = BUILD_MARKER;

#[derive(Debug, thiserror::Error)]
pub enum LauncherError {
    #[error("python zygote: {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("python zygote: {0}")]
    Protocol(String),
    #[error("python zygote is gone: restart the worker to get a new one")]
    Gone,
}

type Spawned = (i32, watch::Receiver<Option<ExitInfo>>);

#[derive(Default)]
struct Shared {
    /// Waiting for `PID` answers, in request order.
    pending: VecDeque<oneshot::Sender<Result<Spawned, LauncherError>>>,
    /// Children alive, by pid.
    children: HashMap<i32, watch::Sender<Option<ExitInfo>>>,
    gone: bool,
}

/// What a launcher is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LauncherKind {
    /// A pre-started `lamina-worker __sandbox-init` (any runtime).
    Spawner,
    /// A pre-imported `python3.11` (Python zip functions only).
    PythonZygote,
}

impl std::fmt::Display for LauncherKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LauncherKind::Spawner => "spawner",
            LauncherKind::PythonZygote => "python zygote",
        })
    }
}

/// A running launcher. Dropping it kills it (its children are sandboxes: they are torn down by
/// their cgroups, not by the launcher's death).
pub struct Launcher {
    kind: LauncherKind,
    sock: OwnedFd,
    shared: Arc<Mutex<Shared>>,
    process: Mutex<std::process::Child>,
}

impl Launcher {
    /// Starts `python` on `runtime_dir/zygote.py` with `library` and waits for `READY`. Blocking.
    pub fn start_python_zygote(
        python: &Path,
        runtime_dir: &Path,
        library: &Path,
    ) -> Result<Arc<Launcher>, LauncherError> {
        if !library.is_file() {
            return Err(LauncherError::Protocol(format!(
                "{} is missing: build the workspace (it is the lamina-worker crate's cdylib)",
                library.display()
            )));
        }
        let script_path = runtime_dir.join(ZYGOTE_SCRIPT);
        let script = std::fs::read(&script_path).map_err(|source| LauncherError::Io {
            what: format!("read {}", script_path.display()),
            source,
        })?;
        let mut cmd = std::process::Command::new(python);
        // The script comes on stdin and is compiled under its in-sandbox name: no host path shows
        // in a sandbox's /proc/1/cmdline or in a traceback.
        // -S: no `site` in the zygote (host root, host mounts), so no host package directory is
        // on its path and no host `.pth` file runs in it (zygote.py adds site's builtins).
        cmd.arg("-S")
            .arg("-c")
            .arg("import sys; __file__ = '/var/runtime/zygote.py'; exec(compile(sys.stdin.buffer.read(), __file__, 'exec'))")
            .stdin(std::process::Stdio::piped());
        // The library goes in as a memfd copy: the sandboxes' /proc/self/maps then name
        // `/memfd:liblamina_worker.so`, not a host path.
        let memfd = library_memfd(library)?;
        let config = serde_json::json!({ "runtime_dir": runtime_dir });
        launch(
            LauncherKind::PythonZygote,
            cmd,
            Some(script),
            format!("CONFIG {config}").into_bytes(),
            Some(memfd),
        )
    }

    /// Starts the spawner: this executable as `__sandbox-init`, told to serve spawn requests
    /// (`spawner.rs`). Its children are sandbox inits for any runtime. Blocking.
    pub fn start_spawner() -> Result<Arc<Launcher>, LauncherError> {
        let exe = std::env::current_exe().map_err(|source| LauncherError::Io {
            what: "find the lamina-worker executable".into(),
            source,
        })?;
        let mut cmd = std::process::Command::new(exe);
        // Its children are the sandboxes' pid 1: no host path in their /proc/1/cmdline.
        std::os::unix::process::CommandExt::arg0(&mut cmd, super::INIT_ARG0);
        cmd.arg("__sandbox-init")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        launch(
            LauncherKind::Spawner,
            cmd,
            None,
            super::spawner::MSG_SPAWNER.to_vec(),
            None,
        )
    }

    /// The default paths: `/usr/bin/python3.11`, the runtime dir, the library next to our executable.
    pub fn start_python_zygote_default(runtime_dir: &Path) -> Result<Arc<Launcher>, LauncherError> {
        let exe = std::env::current_exe().map_err(|source| LauncherError::Io {
            what: "find the lamina-worker executable".into(),
            source,
        })?;
        let library: PathBuf = exe.with_file_name(ZYGOTE_LIBRARY);
        Launcher::start_python_zygote(Path::new("/usr/bin/python3.11"), runtime_dir, &library)
    }

    pub fn kind(&self) -> LauncherKind {
        self.kind
    }

    pub fn is_alive(&self) -> bool {
        !self.lock().gone
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forks a child with `sock` on its fd 3 and `output` on fds 1 and 2; returns its pid and a
    /// watch that gets its exit.
    pub async fn spawn(&self, sock: &OwnedFd, output: &OwnedFd) -> Result<Spawned, LauncherError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.lock();
            if st.gone {
                return Err(LauncherError::Gone);
            }
            st.pending.push_back(tx);
            let fds = [sock.as_raw_fd(), output.as_raw_fd()];
            let sent = sendmsg::<()>(
                self.sock.as_raw_fd(),
                &[IoSlice::new(b"SPAWN")],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            );
            if let Err(e) = sent {
                st.pending.pop_back();
                return Err(LauncherError::Io {
                    what: "send SPAWN".into(),
                    source: e.into(),
                });
            }
        }
        rx.await.map_err(|_| LauncherError::Gone)?
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        let mut p = self.process.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = p.kill() {
            tracing::debug!(error = %e, launcher = %self.kind, "killing the launcher");
        }
        p.wait().ok();
    }
}

/// Spawns `cmd` (environment cleared, cwd `/`, our socketpair end on its fd 3, killed when the
/// worker dies), writes `stdin` to it, sends `first` and waits for `READY`.
fn launch(
    kind: LauncherKind,
    mut cmd: std::process::Command,
    stdin: Option<Vec<u8>>,
    first: Vec<u8>,
    first_fd: Option<OwnedFd>,
) -> Result<Arc<Launcher>, LauncherError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |source: std::io::Error| LauncherError::Io { what, source }
    };
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| io("socketpair")(e.into()))?;
    cmd.env_clear().current_dir("/");
    let their_fd: RawFd = theirs.as_raw_fd();
    // SAFETY: the closure runs between fork and exec and only calls dup2/fcntl/prctl, which are
    // async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if their_fd == INIT_SOCKET_FD {
                if libc::fcntl(their_fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(their_fd, INIT_SOCKET_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The zygote does not outlive the worker.
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    let process = cmd.spawn().map_err(io(&format!("spawn {program}")))?;
    drop(theirs);
    // Killed and reaped if anything below fails.
    let mut guard = KillOnDrop(Some(process));
    let process = guard.0.as_mut().expect("just spawned");
    if let Some(data) = stdin {
        use std::io::Write;
        let mut pipe = process.stdin.take().expect("piped stdin");
        pipe.write_all(&data)
            .map_err(io("write the zygote script"))?;
    }
    let fds: Vec<RawFd> = first_fd.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs: Vec<ControlMessage> = if fds.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&fds)]
    };
    sendmsg::<()>(
        ours.as_raw_fd(),
        &[IoSlice::new(&first)],
        &cmsgs,
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| io("send the first message")(e.into()))?;
    drop(first_fd);
    setsockopt(
        &ours,
        sockopt::ReceiveTimeout,
        &TimeVal::new(READY_TIMEOUT.as_secs() as i64, 0),
    )
    .map_err(|e| io("set receive timeout")(e.into()))?;
    let mut buf = [0u8; 64];
    let n = nix::sys::socket::recv(ours.as_raw_fd(), &mut buf, MsgFlags::empty())
        .map_err(|e| io("wait for READY")(e.into()))?;
    if &buf[..n] != b"READY" {
        return Err(LauncherError::Protocol(format!(
            "{program}: expected READY, got {:?}",
            String::from_utf8_lossy(&buf[..n])
        )));
    }
    setsockopt(&ours, sockopt::ReceiveTimeout, &TimeVal::new(0, 0))
        .map_err(|e| io("clear receive timeout")(e.into()))?;
    let reader = ours.try_clone().map_err(io("dup the zygote socket"))?;
    let shared = Arc::new(Mutex::new(Shared::default()));
    let s = shared.clone();
    std::thread::Builder::new()
        .name("zygote-reader".into())
        .spawn(move || read_loop(kind, reader, s))
        .map_err(io("spawn the zygote reader thread"))?;
    let process = guard.0.take().expect("still owned");
    Ok(Arc::new(Launcher {
        kind,
        sock: ours,
        shared,
        process: Mutex::new(process),
    }))
}

/// A sealed anonymous copy of `library` (memfd), for the zygote to load: every sandbox's pid 1 and
/// runtime map it, so once written it is sealed against writes, growing and shrinking (and further
/// seal changes). Nothing in a sandbox holds an fd to it, and this keeps it so if one ever did.
fn library_memfd(library: &Path) -> Result<OwnedFd, LauncherError> {
    let io = |what: String| move |source: std::io::Error| LauncherError::Io { what, source };
    let bytes = std::fs::read(library).map_err(io(format!("read {}", library.display())))?;
    check_library_build(library, &bytes)?;
    let name = std::ffi::CString::new(ZYGOTE_LIBRARY).expect("no NUL in the library name");
    // SAFETY: memfd_create reads a valid NUL-terminated name; the returned fd is ours alone.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if fd < 0 {
        return Err(io("memfd_create".into())(std::io::Error::last_os_error()));
    }
    // SAFETY: memfd_create just returned this fd and nothing else owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut file = std::fs::File::from(owned);
    std::io::Write::write_all(&mut file, &bytes).map_err(io("write the library memfd".into()))?;
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
    // SAFETY: F_ADD_SEALS takes an int argument and no pointer.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(io("seal the library memfd".into())(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(OwnedFd::from(file))
}

/// Refuses a library that is not from this binary's build (a stale `liblamina_worker.so` left in
/// the target directory by an older commit, or one built from other sources).
fn check_library_build(library: &Path, bytes: &[u8]) -> Result<(), LauncherError> {
    let marker = BUILD_MARKER.as_bytes();
    if bytes.windows(marker.len()).any(|w| w == marker) {
        return Ok(());
    }
    Err(LauncherError::Protocol(format!(
        "{} is not from this lamina-worker's build (build id {}): rebuild both with \
         `cargo build --workspace --bins --lib`",
        library.display(),
        env!("LAMINA_WORKER_BUILD_ID")
    )))
}

struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut p) = self.0.take() {
            p.kill().ok();
            p.wait().ok();
        }
    }
}

fn parse_opt(s: Option<&str>) -> Option<i32> {
    s.and_then(|v| v.parse().ok())
}

fn read_loop(kind: LauncherKind, sock: OwnedFd, shared: Arc<Mutex<Shared>>) {
    let mut buf = [0u8; 256];
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let n = match recvmsg::<()>(sock.as_raw_fd(), &mut iov, None, MsgFlags::empty()) {
            Ok(m) => m.bytes,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "python zygote: receive failed");
                0
            }
        };
        let mut st = shared.lock().unwrap_or_else(|e| e.into_inner());
        if n == 0 {
            tracing::warn!(launcher = %kind, "launcher exited: sandboxes start without it");
            st.gone = true;
            for tx in st.pending.drain(..) {
                tx.send(Err(LauncherError::Gone)).ok();
            }
            // The children are sandboxes in their own cgroups; without the zygote their exit can no
            // longer be reported: tell their watchers it is unknown.
            for (_, tx) in st.children.drain() {
                tx.send_replace(Some(ExitInfo {
                    code: None,
                    signal: None,
                }));
            }
            return;
        }
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let mut words = text.split_whitespace();
        match words.next() {
            Some("PID") => {
                let Some(tx) = st.pending.pop_front() else {
                    tracing::warn!("python zygote: PID without a request");
                    continue;
                };
                match parse_opt(words.next()) {
                    Some(pid) => {
                        let (etx, erx) = watch::channel(None);
                        st.children.insert(pid, etx);
                        tx.send(Ok((pid, erx))).ok();
                    }
                    None => {
                        tx.send(Err(LauncherError::Protocol(format!("bad answer {text:?}"))))
                            .ok();
                    }
                }
            }
            Some("FAILED") => {
                if let Some(tx) = st.pending.pop_front() {
                    tx.send(Err(LauncherError::Protocol(text.clone()))).ok();
                }
            }
            Some("EXIT") => {
                let Some(pid) = parse_opt(words.next()) else {
                    continue;
                };
                let code = parse_opt(words.next());
                let signal = parse_opt(words.next());
                if let Some(tx) = st.children.remove(&pid) {
                    tx.send_replace(Some(ExitInfo { code, signal }));
                }
            }
            _ => tracing::warn!(message = %text, "python zygote: unexpected message"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A library whose marker names another build (what a stale target directory holds) is refused
    /// before any zygote starts, with the command that fixes it; one with this build's marker loads.
    #[test]
    fn a_library_from_another_build_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ZYGOTE_SCRIPT), "raise SystemExit(1)\n").unwrap();
        let stale = dir.path().join(ZYGOTE_LIBRARY);
        std::fs::write(
            &stale,
            b"\x7fELF...lamina-worker-build-id:0123456789abcdef00000001;...",
        )
        .unwrap();
        let err = match Launcher::start_python_zygote(Path::new("/bin/false"), dir.path(), &stale) {
            Ok(_) => panic!("a stale library was loaded"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("is not from this lamina-worker's build"),
            "{err}"
        );
        assert!(
            err.contains("cargo build --workspace --bins --lib"),
            "{err}"
        );

        let mut current = b"\x7fELF...".to_vec();
        current.extend_from_slice(BUILD_MARKER.as_bytes());
        assert!(check_library_build(&stale, &current).is_ok());
        assert!(check_library_build(&stale, b"\x7fELF no marker at all").is_err());
    }

    /// The library the README's build command produces next to the binary carries this build's
    /// marker (run after `cargo build --workspace --bins --lib`, as deploy/test.sh does).
    #[test]
    fn the_built_library_matches_this_build() {
        let exe = std::env::current_exe().unwrap();
        // target/debug/deps/lamina_worker-HASH -> target/debug/liblamina_worker.so
        let library = exe
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join(ZYGOTE_LIBRARY))
            .unwrap();
        let bytes = std::fs::read(&library).unwrap_or_else(|e| {
            panic!(
                "{}: {e}: build it with `cargo build --workspace --bins --lib`",
                library.display()
            )
        });
        check_library_build(&library, &bytes).unwrap();
    }

    #[test]
    fn the_library_copy_is_sealed_against_writes() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib.so");
        // A library of this build carries its marker (`check_library_build`).
        let content = format!("not really a library {BUILD_MARKER}");
        std::fs::write(&lib, &content).unwrap();
        let fd = library_memfd(&lib).unwrap();
        // SAFETY: F_GET_SEALS takes no argument.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        let want = libc::F_SEAL_WRITE | libc::F_SEAL_GROW | libc::F_SEAL_SHRINK | libc::F_SEAL_SEAL;
        assert_eq!(seals & want, want, "seals {seals:#x}");
        let mut file = std::fs::File::from(fd);
        let err = std::io::Write::write_all(&mut file, b"x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
        assert_eq!(
            std::fs::read(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap(),
            content.as_bytes()
        );
    }
}
