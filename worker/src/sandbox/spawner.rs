//! The spawner: one `lamina-worker __sandbox-init` process, started by the worker at start-up, that
//! forks the init process of each new sandbox instead of the worker spawning and exec'ing a fresh
//! one (an exec of the 12 MB worker binary, its dynamic linking and relocations, per sandbox).
//! It is single-threaded and holds nothing but its socket, so its children are what a fresh exec
//! would be: each one puts the sandbox's socketpair end on fd 3 and its output pipe on fds 1 and 2,
//! closes everything else, and runs the same `init.rs` code. It speaks the zygote protocol
//! (`launcher.rs`): `SPAWNER` (first message, from the worker), `READY`, `SPAWN` + 2 fds -> `PID n`,
//! and `EXIT n code signal` when a child ends.
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::socket::{recv, recvmsg, send, ControlMessageOwned, MsgFlags};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult};

use super::protocol::INIT_SOCKET_FD;

pub const MSG_SPAWNER: &[u8] = b"SPAWNER";

/// Write end of the SIGCHLD self-pipe.
static WAKE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_: libc::c_int) {
    let fd = WAKE.load(Ordering::Relaxed);
    // SAFETY: write(2) is async-signal-safe; the buffer is a valid 1-byte static. A full pipe
    // (EAGAIN) already means a wake-up is pending.
    unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
}

fn die(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("lamina spawner: {what}: {e}");
    std::process::exit(1)
}

/// Serves spawn requests on `sock` until the worker closes it. Never returns.
pub(super) fn serve(sock: OwnedFd) -> ! {
    let fd = sock.as_raw_fd();
    let mut first = [0u8; 16];
    if let Err(e) = recv(fd, &mut first, MsgFlags::empty()) {
        die("receive SPAWNER", e);
    }
    let (wake_r, wake_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .unwrap_or_else(|e| die("pipe", e));
    WAKE.store(wake_w.as_raw_fd(), Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(on_sigchld),
        SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    // SAFETY: the handler only calls write(2) on a pipe, which is async-signal-safe.
    if let Err(e) = unsafe { sigaction(Signal::SIGCHLD, &action) } {
        die("install the SIGCHLD handler", e);
    }
    if let Err(e) = send(fd, b"READY", MsgFlags::empty()) {
        die("send READY", e);
    }
    loop {
        let mut fds = [
            PollFd::new(sock.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake_r.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => die("poll", e),
        }
        let woke = fds[1].revents().is_some_and(|r| !r.is_empty());
        let request = fds[0].revents().is_some_and(|r| !r.is_empty());
        if woke {
            let mut buf = [0u8; 64];
            while matches!(nix::unistd::read(wake_r.as_raw_fd(), &mut buf), Ok(n) if n > 0) {}
        }
        // Reap on every wake-up (a lost signal costs nothing but a later report).
        reap(fd);
        if request {
            handle_request(&sock);
        }
    }
}

fn reap(fd: RawFd) {
    loop {
        let msg = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => format!("EXIT {pid} {code} -"),
            Ok(WaitStatus::Signaled(pid, sig, _)) => format!("EXIT {pid} - {}", sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        };
        if send(fd, msg.as_bytes(), MsgFlags::empty()).is_err() {
            std::process::exit(0); // the worker is gone
        }
    }
}

fn handle_request(sock: &OwnedFd) {
    let fd = sock.as_raw_fd();
    let mut buf = [0u8; 64];
    let mut cmsg = nix::cmsg_space!([RawFd; 2]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = match recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
        Ok(m) => m,
        Err(nix::errno::Errno::EINTR) => return,
        Err(e) => die("receive a request", e),
    };
    let mut received: Vec<OwnedFd> = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: SCM_RIGHTS just installed these fds in our table; we are their only owner.
                received.extend(fds.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
    }
    let n = msg.bytes;
    if n == 0 {
        std::process::exit(0); // the worker is gone
    }
    if &buf[..n] != b"SPAWN" || received.len() != 2 {
        return; // dropping `received` closes them
    }
    // SAFETY: this process is single-threaded, so the child may run any code after fork.
    match unsafe { fork() } {
        Err(e) => {
            if send(
                fd,
                format!("FAILED fork: {e}").as_bytes(),
                MsgFlags::empty(),
            )
            .is_err()
            {
                std::process::exit(0);
            }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(received);
            if send(fd, format!("PID {child}").as_bytes(), MsgFlags::empty()).is_err() {
                std::process::exit(0);
            }
        }
        Ok(ForkResult::Child) => {
            become_init(&received[0], &received[1]);
            // SAFETY: become_init put the sandbox's socketpair end on fd 3; nothing else owns it.
            super::init::init_main(unsafe { OwnedFd::from_raw_fd(INIT_SOCKET_FD) })
        }
    }
}

/// In the child: default SIGCHLD, the sandbox's fds on 0-3, everything else closed.
fn become_init(sock: &OwnedFd, output: &OwnedFd) {
    // SAFETY: restoring the default disposition has no preconditions.
    if let Err(e) = unsafe { nix::sys::signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) } {
        die("reset SIGCHLD", e);
    }
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .unwrap_or_else(|e| die("open /dev/null", e));
    for (from, to) in [
        (null, 0),
        (output.as_raw_fd(), 1),
        (output.as_raw_fd(), 2),
        (sock.as_raw_fd(), INIT_SOCKET_FD),
    ] {
        // SAFETY: dup2 onto a fixed small fd; all fds involved are open.
        if unsafe { libc::dup2(from, to) } < 0 {
            die("dup2", std::io::Error::last_os_error());
        }
    }
    // SAFETY: close_range only closes descriptors; none above fd 3 is used by the child any more
    // (the spawner's socket, its self-pipe, the received originals).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (INIT_SOCKET_FD + 1) as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        )
    };
    if rc < 0 {
        die("close inherited fds", std::io::Error::last_os_error());
    }
}
