//! The sandbox side: runs as `lamina-worker __sandbox-init`, a fresh single-threaded process that the
//! worker has already attached to the sandbox's cgroup. In order, no step skipped silently:
//!
//! 1. read the `PrepareConfig` from fd 3;
//! 2. unshare mount, net, uts, ipc, pid and cgroup namespaces, then fork: the child is pid 1 of the
//!    new pid namespace; the parent stays outside, waits for it and mirrors the runtime's exit
//!    status, which pid 1 writes to a status pipe (`pid1.rs`);
//! 3. (child) hostname, loopback up, the function-independent part of the root (below), Runtime API
//!    socket bound at 127.0.0.1:9001 and handed to the worker; the sandbox is now prepared (it may
//!    wait in the worker's pool for a while);
//! 4. (child) read the `InitConfig` (the function) from fd 3; code and `/tmp` mounted. The root: tmpfs root, read-only `/usr` and the merged-usr links, `/var/task` and `/var/runtime`
//!    read-only, `/tmp` tmpfs of the ephemeral size, fresh `/proc`, minimal `/dev` and `/etc`,
//!    pivot_root, old root detached, root remounted read-only;
//!    `/proc` has runc's masked paths (kcore, keys, timer_list, ...) and read-only subtrees (sys, bus,
//!    fs, irq, sysrq-trigger);
//! 5. rlimits (core 0, nofile, fsize), every fd but 0-2 (and the close-on-exec fds 3 and 4: the
//!    init socket and the status pipe) closed;
//! 6. drop to the unprivileged host uid, create the user namespace and map that uid to
//!    `SANDBOX_UID` inside, drop every capability (bounding, ambient, effective, permitted,
//!    inheritable) and check, set no_new_privs and check;
//! 7. chdir /var/task, install the seccomp filter (last);
//! 8. fork the runtime (`pid1.rs`): pid 1 stays, locked down like the function, and only reaps,
//!    forwards signals and exits with the runtime's status; the child execs the runtime with the
//!    environment from the config only.
//!
//! Any failure is sent to the worker as `ERROR <message>` and the process exits 1.
use std::convert::Infallible;
use std::ffi::CString;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::Signal;
use nix::sys::socket::{recv, send, sendmsg, ControlMessage, MsgFlags};
use nix::unistd::{fork, ForkResult, Gid, Uid};

use super::protocol::{
    InitConfig, PrepareConfig, AWS_ENDPOINT_PORT, EXTENSION_PORT, INIT_SOCKET_FD, MSG_ERROR_PREFIX,
    MSG_LISTENER, RUNTIME_API_PORT, SANDBOX_UID,
};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{step}: {source}")]
    Sys { step: String, source: nix::Error },
    #[error("{step}: {source}")]
    Io {
        step: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Protocol(String),
}

pub(super) trait Step<T> {
    fn step(self, step: impl FnOnce() -> String) -> Result<T, InitError>;
}

impl<T> Step<T> for nix::Result<T> {
    fn step(self, step: impl FnOnce() -> String) -> Result<T, InitError> {
        self.map_err(|source| InitError::Sys {
            step: step(),
            source,
        })
    }
}

impl<T> Step<T> for std::io::Result<T> {
    fn step(self, step: impl FnOnce() -> String) -> Result<T, InitError> {
        self.map_err(|source| InitError::Io {
            step: step(),
            source,
        })
    }
}

/// Entry point of `lamina-worker __sandbox-init`. Never returns.
pub fn main() -> ! {
    // SAFETY: the worker dup2'ed its end of the socketpair to fd 3 right before exec; nothing else in
    // this fresh process owns fd 3.
    let sock = unsafe { OwnedFd::from_raw_fd(INIT_SOCKET_FD) };
    // The worker's spawner is the same executable, told so by its first message.
    let mut first = [0u8; 16];
    if let Ok(n) = recv(sock.as_raw_fd(), &mut first, MsgFlags::MSG_PEEK) {
        if &first[..n] == super::spawner::MSG_SPAWNER {
            super::spawner::serve(sock);
        }
    }
    init_main(sock)
}

/// The sandbox init on `sock` (fd 3): an exec'd `__sandbox-init`, or a child of the spawner.
pub(super) fn init_main(sock: OwnedFd) -> ! {
    match run(sock) {
        Ok(never) => match never {},
        Err((sock, e)) => {
            report(&sock, &e);
            std::process::exit(1)
        }
    }
}

pub(super) fn report(sock: &OwnedFd, e: &InitError) {
    let mut msg = MSG_ERROR_PREFIX.to_vec();
    msg.extend_from_slice(e.to_string().as_bytes());
    // If the worker is gone there is nobody left to tell; the exit status still says it failed.
    if send(sock.as_raw_fd(), &msg, MsgFlags::empty()).is_err() {
        std::process::exit(1);
    }
}

type Failed = (OwnedFd, InitError);

fn run(sock: OwnedFd) -> Result<Infallible, Failed> {
    let prep = match enter_namespaces(&sock) {
        Ok(prep) => prep,
        Err(e) => return Err((sock, e)),
    };
    let (status_r, status_w) = match super::pid1::status_pipe() {
        Ok(pipe) => pipe,
        Err(e) => return Err((sock, e)),
    };
    // SAFETY: this process is single-threaded (it is a fresh exec of lamina-worker that started no
    // threads), so the child may run any code after fork.
    match unsafe { fork() } {
        Err(e) => Err((
            sock,
            InitError::Sys {
                step: "fork pid 1".into(),
                source: e,
            },
        )),
        Ok(ForkResult::Parent { child }) => {
            drop(sock);
            drop(status_w);
            super::pid1::mirror_exit(child, Some(status_r))
        }
        Ok(ForkResult::Child) => {
            let started = super::pid1::keep_status_fd(status_r, status_w)
                .and_then(|()| setup(&sock, &prep))
                .and_then(|cfg| super::pid1::fork_runtime().map(|()| cfg))
                .and_then(|cfg| exec(&cfg));
            match started {
                Ok(never) => match never {},
                Err(e) => Err((sock, e)),
            }
        }
    }
}

/// Steps 1-2 up to the fork: the prepare config, then the new namespaces. The caller forks pid 1.
pub(super) fn enter_namespaces(sock: &OwnedFd) -> Result<PrepareConfig, InitError> {
    set_cloexec(sock)?;
    let prep: PrepareConfig = receive(sock, "prepare")?;
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWCGROUP;
    unshare(flags).step(|| "unshare namespaces".into())?;
    Ok(prep)
}

fn set_cloexec(sock: &OwnedFd) -> Result<(), InitError> {
    nix::fcntl::fcntl(
        sock.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .step(|| "set close-on-exec on the init socket".into())?;
    Ok(())
}

/// One JSON message from the worker (`what` names it in errors).
fn receive<T: serde::de::DeserializeOwned>(sock: &OwnedFd, what: &str) -> Result<T, InitError> {
    let mut buf = vec![0u8; 1 << 20];
    let n = loop {
        match recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r.step(|| format!("receive the {what} config"))?,
        }
    };
    if n == 0 {
        return Err(InitError::Protocol(format!(
            "the worker closed the init socket before sending the {what} config"
        )));
    }
    serde_json::from_slice(&buf[..n])
        .map_err(|e| InitError::Protocol(format!("invalid {what} config: {e}")))
}

/// Steps 3-7 in pid 1, everything but the exec: returns the function's config with the seccomp
/// filter installed. Only the exec (or, in a zygote-forked sandbox, the interpreter's own run of the
/// bootstrap) is left.
pub(super) fn setup(sock: &OwnedFd, prep: &PrepareConfig) -> Result<InitConfig, InitError> {
    // The worker runs with umask 077; the sandbox's root and the function get the usual 022.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    // If the process outside dies, pid 1 (and with it the whole namespace) dies too.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).step(|| "set parent-death signal".into())?;
    nix::unistd::sethostname(&prep.hostname).step(|| "set hostname".into())?;
    loopback_up()?;
    prepare_root(prep)?;
    hand_over_runtime_api_socket(sock)?;
    // Prepared: wait (possibly in the worker's pool) for the function this sandbox will run.
    let mut cfg: InitConfig = receive(sock, "function")?;
    // An image function's root is its image (`image_root.rs`); others get the prepared root.
    let root = match &cfg.image {
        Some(image) => super::image_root::build(&prep.root_dir, image, cfg.ephemeral_storage_mb)?,
        None => {
            bind_root(&prep.root_dir, &cfg)?;
            prep.root_dir.clone()
        }
    };
    pivot_into(&root)?;
    limit_process(cfg.ephemeral_storage_mb)?;
    become_unprivileged(cfg.host_uid)?;
    match &cfg.image {
        Some(image) => super::image_root::enter(image, &mut cfg.argv, &cfg.env)?,
        None => nix::unistd::chdir("/var/task").step(|| "chdir /var/task".into())?,
    }
    super::seccomp::install().step(|| "install the seccomp filter".into())?;
    Ok(cfg)
}

fn loopback_up() -> Result<(), InitError> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    let s = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .step(|| "socket for loopback setup".into())?;
    // SAFETY: ifreq is a plain C struct for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags =
        (libc::IFF_UP | libc::IFF_LOOPBACK | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads a valid, initialised ifreq that lives across the call.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    if rc < 0 {
        return Err(InitError::Sys {
            step: "bring loopback up".into(),
            source: nix::Error::last(),
        });
    }
    Ok(())
}

fn hand_over_runtime_api_socket(sock: &OwnedFd) -> Result<(), InitError> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", RUNTIME_API_PORT))
        .step(|| format!("bind the runtime api at 127.0.0.1:{RUNTIME_API_PORT}"))?;
    // The execution role's endpoints, in the same namespace (the worker closes them for a
    // function without a role).
    let aws = std::net::TcpListener::bind(("127.0.0.1", AWS_ENDPOINT_PORT))
        .step(|| format!("bind the aws endpoint at 127.0.0.1:{AWS_ENDPOINT_PORT}"))?;
    let extension = std::net::TcpListener::bind(("127.0.0.1", EXTENSION_PORT))
        .step(|| format!("bind the secrets extension at 127.0.0.1:{EXTENSION_PORT}"))?;
    let fds = [listener.as_raw_fd(), aws.as_raw_fd(), extension.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(MSG_LISTENER)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .step(|| "send the runtime api socket to the worker".into())?;
    Ok(())
}

pub(super) fn mount_fs(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), InitError> {
    mount(Some(source), target, Some(fstype), flags, data)
        .step(|| format!("mount {fstype} on {}", target.display()))
}

pub(super) fn bind_read_only(source: &Path, target: &Path) -> Result<(), InitError> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .step(|| format!("bind {} on {}", source.display(), target.display()))?;
    remount_read_only(target, MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
}

pub(super) fn remount_read_only(target: &Path, extra: MsFlags) -> Result<(), InitError> {
    mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | extra,
        None::<&str>,
    )
    .step(|| format!("remount {} read-only", target.display()))
}

fn mkdirs(root: &Path, dirs: &[&str]) -> Result<(), InitError> {
    for d in dirs {
        let p = root.join(d);
        std::fs::create_dir_all(&p).step(|| format!("create {}", p.display()))?;
    }
    Ok(())
}

const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

const ETC_FILES: [(&str, &str); 5] = [
    (
        "passwd",
        "root:x:0:0:root:/root:/sbin/nologin\nsbx_user1051:x:993:993::/tmp:/sbin/nologin\n",
    ),
    ("group", "root:x:0:\nsbx_user1051:x:993:\n"),
    ("hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
    (
        "resolv.conf",
        "# no name servers: this sandbox has loopback only\n",
    ),
    (
        "nsswitch.conf",
        "passwd: files\ngroup: files\nhosts: files dns\n",
    ),
];

/// Everything of the root that does not depend on the function, built while the sandbox is only
/// prepared: tmpfs root, `/usr`, `/var/runtime`, `/etc`, `/proc`, `/dev`.
fn prepare_root(prep: &PrepareConfig) -> Result<(), InitError> {
    let root = prep.root_dir.as_path();
    let hostname = prep.hostname.as_str();
    // Nothing we mount from here on propagates back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .step(|| "make / private".into())?;
    mount_fs(
        "tmpfs",
        root,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=1m,nr_inodes=4096,mode=0755"),
    )?;
    mkdirs(
        root,
        &[
            "usr",
            "var/task",
            "var/runtime",
            "opt",
            "tmp",
            "proc",
            "dev",
            "etc",
        ],
    )?;
    for (link, target) in [
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        if Path::new("/").join(link).exists() {
            let p = root.join(link);
            std::os::unix::fs::symlink(target, &p).step(|| format!("symlink {}", p.display()))?;
        }
    }
    bind_read_only(Path::new("/usr"), &root.join("usr"))?;
    hide_host_python_packages(root)?;
    bind_read_only(&prep.runtime_dir, &root.join("var/runtime"))?;
    if Path::new("/etc/ssl").is_dir() {
        mkdirs(root, &["etc/ssl"])?;
        bind_read_only(Path::new("/etc/ssl"), &root.join("etc/ssl"))?;
    }
    for (name, content) in ETC_FILES {
        let p = root.join("etc").join(name);
        std::fs::write(&p, content).step(|| format!("write {}", p.display()))?;
    }
    let hostname_file = root.join("etc/hostname");
    std::fs::write(&hostname_file, format!("{hostname}\n"))
        .step(|| format!("write {}", hostname_file.display()))?;
    mount_fs(
        "proc",
        &root.join("proc"),
        "proc",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    mask_proc(&root.join("proc"))?;
    build_dev(&root.join("dev"))?;
    Ok(())
}

/// The host's Python package directories (`/usr/lib/python3/dist-packages`,
/// `/usr/local/lib/python3.11/dist-packages`, any `python*/site-packages`) are covered by an empty
/// read-only tmpfs: a function imports its code, its layers, Lamina's runtime and the standard
/// library, never what the host's administrator installed (other versions on every worker, and a
/// host `.pth` file would run in every sandbox). Symlinked directories are left alone (a mount on
/// one would land on its target); none of the distributions' layouts uses one.
fn hide_host_python_packages(root: &Path) -> Result<(), InitError> {
    for lib in ["usr/lib", "usr/lib64", "usr/local/lib", "usr/local/lib64"] {
        let Ok(entries) = std::fs::read_dir(Path::new("/").join(lib)) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with("python") {
                continue;
            }
            for packages in ["dist-packages", "site-packages"] {
                let host = entry.path().join(packages);
                if !std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir()) {
                    continue;
                }
                mount_fs(
                    "tmpfs",
                    &root.join(lib).join(entry.file_name()).join(packages),
                    "tmpfs",
                    MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    Some("size=4k,nr_inodes=2,mode=0555"),
                )?;
            }
        }
    }
    Ok(())
}

/// The function's part of the root, once it is known: its code read-only at `/var/task` and `/tmp`
/// of its ephemeral size.
fn bind_root(root: &Path, cfg: &InitConfig) -> Result<(), InitError> {
    bind_read_only(&cfg.code_dir, &root.join("var/task"))?;
    mount_layers(&cfg.layer_dirs, &root.join("opt"))?;
    let tmp_opts = format!("size={}m,mode=1777", cfg.ephemeral_storage_mb);
    mount_fs(
        "tmpfs",
        &root.join("tmp"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&tmp_opts),
    )
}

/// The function's layers at `/opt`, read-only: one is bound; several are stacked with a
/// read-only overlay (no upper directory) whose top is the last layer, so a later layer's file
/// replaces an earlier one's, as Lambda extracts them in order.
fn mount_layers(layer_dirs: &[PathBuf], opt: &Path) -> Result<(), InitError> {
    match layer_dirs {
        [] => Ok(()),
        [one] => bind_read_only(one, opt),
        many => {
            let mut lower = String::new();
            for dir in many.iter().rev() {
                let d = dir.to_str().ok_or_else(|| {
                    InitError::Protocol(format!("layer path {} is not UTF-8", dir.display()))
                })?;
                if d.contains([':', ',', '\\']) {
                    return Err(InitError::Protocol(format!(
                        "layer path {d} contains ':', ',' or '\\', which overlayfs cannot take"
                    )));
                }
                if !lower.is_empty() {
                    lower.push(':');
                }
                lower.push_str(d);
            }
            mount_fs(
                "overlay",
                opt,
                "overlay",
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(&format!("lowerdir={lower}")),
            )
        }
    }
}

/// runc's defaults: kernel internals hidden, kernel settings read-only.
const PROC_MASKED: [&str; 8] = [
    "acpi",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
];
const PROC_READ_ONLY: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];

fn mask_proc(proc: &Path) -> Result<(), InitError> {
    for name in PROC_MASKED {
        let p = proc.join(name);
        if p.is_dir() {
            mount_fs(
                "tmpfs",
                &p,
                "tmpfs",
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0,mode=0555"),
            )?;
        } else if p.exists() {
            mount(
                Some("/dev/null"),
                &p,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .step(|| format!("mask {}", p.display()))?;
        }
    }
    for name in PROC_READ_ONLY {
        let p = proc.join(name);
        if p.exists() {
            mount(
                Some(&p),
                &p,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .step(|| format!("bind {}", p.display()))?;
            remount_read_only(
                &p,
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            )?;
        }
    }
    Ok(())
}

fn build_dev(dev: &Path) -> Result<(), InitError> {
    mount_fs(
        "tmpfs",
        dev,
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("size=64k,nr_inodes=64,mode=0755"),
    )?;
    for name in DEVICES {
        let target = dev.join(name);
        std::fs::File::create(&target).step(|| format!("create {}", target.display()))?;
        let source = PathBuf::from("/dev").join(name);
        mount(
            Some(&source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .step(|| format!("bind {}", source.display()))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let p = dev.join(link);
        std::os::unix::fs::symlink(target, &p).step(|| format!("symlink {}", p.display()))?;
    }
    remount_read_only(dev, MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC)
}

fn pivot_into(root: &Path) -> Result<(), InitError> {
    nix::unistd::chdir(root).step(|| format!("chdir {}", root.display()))?;
    // pivot_root(".", "."): the old root ends up stacked on the new one and is detached right away.
    nix::unistd::pivot_root(".", ".").step(|| "pivot_root".into())?;
    umount2(".", MntFlags::MNT_DETACH).step(|| "detach the old root".into())?;
    nix::unistd::chdir("/").step(|| "chdir /".into())?;
    remount_read_only(Path::new("/"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
}

fn limit_process(ephemeral_storage_mb: u32) -> Result<(), InitError> {
    setrlimit(Resource::RLIMIT_CORE, 0, 0).step(|| "set RLIMIT_CORE".into())?;
    setrlimit(Resource::RLIMIT_NOFILE, 1024, 1024).step(|| "set RLIMIT_NOFILE".into())?;
    // No single file can be larger than the sandbox's /tmp.
    let fsize = u64::from(ephemeral_storage_mb) * 1024 * 1024;
    setrlimit(Resource::RLIMIT_FSIZE, fsize, fsize).step(|| "set RLIMIT_FSIZE".into())?;
    // Close every inherited fd above the init socket (fd 3) and pid 1's status pipe (fd 4), both
    // close-on-exec.
    // SAFETY: close_range only closes descriptors; none above fd 4 is used by this process any more.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (super::pid1::STATUS_FD + 1) as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(InitError::Sys {
            step: "close inherited file descriptors".into(),
            source: nix::Error::last(),
        });
    }
    Ok(())
}

/// Host root -> the unprivileged host uid, then a user namespace in which that uid is `SANDBOX_UID`.
/// Mount, network and the other namespaces stay owned by the initial user namespace, so the function
/// holds no capability over them.
fn become_unprivileged(host_uid: u32) -> Result<(), InitError> {
    let uid = Uid::from_raw(host_uid);
    let gid = Gid::from_raw(host_uid);
    nix::unistd::setgroups(&[]).step(|| "clear supplementary groups".into())?;
    nix::unistd::setresgid(gid, gid, gid).step(|| format!("setresgid {host_uid}"))?;
    nix::unistd::setresuid(uid, uid, uid).step(|| format!("setresuid {host_uid}"))?;
    if Uid::effective().is_root() || nix::unistd::getuid().is_root() {
        return Err(InitError::Protocol("still root after setresuid".into()));
    }
    // setresuid cleared "dumpable", which would make /proc/self/*_map owned by root.
    nix::sys::prctl::set_dumpable(true).step(|| "set dumpable".into())?;
    unshare(CloneFlags::CLONE_NEWUSER).step(|| "unshare user namespace".into())?;
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("{SANDBOX_UID} {host_uid} 1"))?;
    write_proc("/proc/self/gid_map", &format!("{SANDBOX_UID} {host_uid} 1"))?;
    drop_capabilities()?;
    nix::sys::prctl::set_no_new_privs().step(|| "set no_new_privs".into())?;
    if !nix::sys::prctl::get_no_new_privs().step(|| "read no_new_privs".into())? {
        return Err(InitError::Protocol(
            "no_new_privs is not set after setting it".into(),
        ));
    }
    Ok(())
}

/// Empties every capability set. The bounding set needs CAP_SETPCAP, which the process holds in its
/// new user namespace until the final capset.
fn drop_capabilities() -> Result<(), InitError> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .step(|| "read /proc/sys/kernel/cap_last_cap".into())?
        .trim()
        .parse()
        .map_err(|e| InitError::Protocol(format!("bad cap_last_cap: {e}")))?;
    for cap in 0..=last {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            return Err(InitError::Sys {
                step: format!("drop capability {cap} from the bounding set"),
                source: nix::Error::last(),
            });
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(InitError::Sys {
            step: "clear ambient capabilities".into(),
            source: nix::Error::last(),
        });
    }
    capset_zero()?;
    let status =
        std::fs::read_to_string("/proc/self/status").step(|| "read /proc/self/status".into())?;
    for field in ["CapInh:", "CapPrm:", "CapEff:", "CapBnd:", "CapAmb:"] {
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .map(str::trim)
            .unwrap_or("missing");
        if !value.trim_start_matches('0').is_empty() {
            return Err(InitError::Protocol(format!(
                "capabilities left after dropping them: {field} {value}"
            )));
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capset_zero() -> Result<(), InitError> {
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [CapData::default(); 2];
    // SAFETY: capset reads a v3 header and two data structs, both valid for the call's duration.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(InitError::Sys {
            step: "clear effective, permitted and inheritable capabilities".into(),
            source: nix::Error::last(),
        });
    }
    Ok(())
}

fn write_proc(path: &str, value: &str) -> Result<(), InitError> {
    std::fs::write(path, value).step(|| format!("write {value:?} to {path}"))
}

fn exec(cfg: &InitConfig) -> Result<Infallible, InitError> {
    let cstr = |s: &str, what: &str| {
        CString::new(s)
            .map_err(|_| InitError::Protocol(format!("{what} contains a NUL byte: {s:?}")))
    };
    let argv = cfg
        .argv
        .iter()
        .map(|a| cstr(a, "argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(program) = argv.first().cloned() else {
        return Err(InitError::Protocol("empty runtime command".into()));
    };
    let env = cfg
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}"), "environment variable"))
        .collect::<Result<Vec<_>, _>>()?;
    nix::unistd::execve(&program, &argv, &env).step(|| format!("exec {}", cfg.argv[0]))
}
