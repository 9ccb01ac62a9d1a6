//! Pid 1 of a sandbox's pid namespace: a minimal init, as `tini` or Lambda's own init, so that the
//! runtime is not pid 1 and processes it orphans (`sh -c 'cmd &'`, a daemonising library) are
//! reaped instead of staying zombies until `pids.max` (issue 14, item 2).
//!
//! The process that built the sandbox (`init.rs` `setup`: root, rlimits, unprivileged uid in its
//! user namespace, no capabilities, no_new_privs, seccomp) forks once more when everything is
//! locked down: the child becomes the runtime (exec'd, or the zygote's interpreter going on), the
//! parent stays pid 1 and only
//! - reaps every child (the runtime and every orphan re-parented to it),
//! - forwards every signal it receives to the runtime (all but the synchronous ones are blocked and
//!   taken with `sigwaitinfo`; the kernel never drops a blocked signal to a namespace's init),
//! - exits with the runtime's status when the runtime ends (`128 + signal` when it was killed)
//!   after writing the runtime's exact wait status to the status pipe (`STATUS_FD`), from which the
//!   process outside the namespace (`mirror_exit`) takes it, so that the worker sees the very
//!   status of the runtime (`exit status 3`, `signal: killed`) and not pid 1's.
//!
//! It gives a function nothing new: it runs with the function's own credentials (same uid, no
//! capability, no_new_privs, the same seccomp filter) and is not dumpable, so a function cannot
//! open its `/proc/1/{exe,mem,environ,root,fd}` (the CVE-2019-5736 class, see docs/SECURITY.md).
//! The loop allocates nothing and makes only async-signal-safe calls (`sigwaitinfo`, `waitpid`,
//! `kill`, `write`, `_exit`), all of them in the seccomp allowlist.
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use super::init::{InitError, Step};
use super::protocol::INIT_SOCKET_FD;

/// The fd of the status pipe's write end in pid 1 (close-on-exec; closed in the runtime).
pub(super) const STATUS_FD: i32 = 4;

/// Signals pid 1 does not take: those the kernel raises for a fault of pid 1 itself, and terminal
/// job-control stops (as tini).
const SYNCHRONOUS: [Signal; 9] = [
    Signal::SIGFPE,
    Signal::SIGILL,
    Signal::SIGSEGV,
    Signal::SIGBUS,
    Signal::SIGABRT,
    Signal::SIGTRAP,
    Signal::SIGSYS,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
];

/// The status pipe, made by the process that forks pid 1 (before the fork): `(read, write)`. The
/// read end is non-blocking: the process outside reads it once pid 1 is gone.
pub(super) fn status_pipe() -> Result<(OwnedFd, OwnedFd), InitError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .step(|| "create the sandbox status pipe".into())?;
    nix::fcntl::fcntl(
        r.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .step(|| "make the status pipe non-blocking".into())?;
    Ok((r, w))
}

/// In the forked pid 1: drops the read end and puts the write end on `STATUS_FD`, close-on-exec
/// (the fds above it are closed by `setup`).
pub(super) fn keep_status_fd(read: OwnedFd, write: OwnedFd) -> Result<(), InitError> {
    drop(read);
    let fd = write.as_raw_fd();
    if fd != STATUS_FD {
        // SAFETY: dup2 onto a fixed fd number that nothing else of this process uses (the read end,
        // which may have had it, is closed above); `write` is closed right after.
        if unsafe { libc::dup2(fd, STATUS_FD) } < 0 {
            return Err(InitError::Sys {
                step: format!("move the status pipe to fd {STATUS_FD}"),
                source: nix::Error::last(),
            });
        }
        drop(write);
    } else {
        let _kept: i32 = std::os::fd::IntoRawFd::into_raw_fd(write); // already STATUS_FD
    }
    nix::fcntl::fcntl(
        STATUS_FD,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .step(|| "set close-on-exec on the status pipe".into())?;
    Ok(())
}

/// The set pid 1 blocks and waits on: every signal but the synchronous ones.
fn taken() -> SigSet {
    let mut set = SigSet::all();
    for s in SYNCHRONOUS {
        set.remove(s);
    }
    set
}

/// Forks the runtime off the locked-down pid 1. Returns `Ok` in the child only (the runtime, with
/// the signal mask it had, dumpable again and without the status pipe or the init socket in pid
/// 1's hands); pid 1 runs [`serve`] and never returns. `Err` only when the fork itself failed.
pub(super) fn fork_runtime() -> Result<(), InitError> {
    // SAFETY: restoring the default disposition has no preconditions; SIGCHLD must not be ignored
    // (children would be reaped by the kernel and their status lost).
    unsafe { nix::sys::signal::signal(Signal::SIGCHLD, nix::sys::signal::SigHandler::SigDfl) }
        .step(|| "reset SIGCHLD".into())?;
    let taken = taken();
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&taken), Some(&mut old))
        .step(|| "block signals in pid 1".into())?;
    // Not dumpable before the fork: there is no moment in which the runtime could open pid 1's
    // /proc files. The runtime is made dumpable again below (and by its exec).
    nix::sys::prctl::set_dumpable(false).step(|| "make pid 1 not dumpable".into())?;
    // SAFETY: this process is single-threaded (the exec'd or spawner-forked init, or a zygote
    // child, which starts no thread), so the child may run any code after fork.
    match unsafe { nix::unistd::fork() } {
        Err(source) => Err(InitError::Sys {
            step: "fork the runtime".into(),
            source,
        }),
        Ok(nix::unistd::ForkResult::Child) => {
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None)
                .step(|| "restore the runtime's signal mask".into())?;
            nix::sys::prctl::set_dumpable(true).step(|| "make the runtime dumpable".into())?;
            // SAFETY: STATUS_FD is pid 1's alone; the runtime must not hold it.
            if unsafe { libc::close(STATUS_FD) } != 0 {
                return Err(InitError::Sys {
                    step: "close the status pipe in the runtime".into(),
                    source: nix::Error::last(),
                });
            }
            Ok(())
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            // The worker learns that the runtime started from EOF on the init socket: pid 1 keeps
            // no copy of it. A failure changes nothing but that EOF (EBADF cannot happen).
            // SAFETY: fd 3 is the init socket, not used by pid 1 after this point.
            unsafe { libc::close(INIT_SOCKET_FD) };
            serve(child, &taken)
        }
    }
}

/// Pid 1's loop: reap, forward, and exit with the runtime's status once it ended.
fn serve(runtime: Pid, taken: &SigSet) -> ! {
    loop {
        // SAFETY: siginfo_t is a plain C struct for which all-zero bytes are a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: sigwaitinfo reads a valid sigset and writes into a valid siginfo_t.
        let sig = unsafe { libc::sigwaitinfo(taken.as_ref(), &mut info) };
        if sig < 0 {
            continue; // EINTR
        }
        if sig != libc::SIGCHLD {
            // SAFETY: kill has no memory arguments. A failure can only be ESRCH: the runtime has
            // just ended, its SIGCHLD is pending and handled on the next turn.
            unsafe { libc::kill(runtime.as_raw(), sig) };
            continue;
        }
        // Several children may have ended for one SIGCHLD: reap until none is left to reap.
        loop {
            let mut status: libc::c_int = 0;
            // SAFETY: waitpid writes into a valid c_int.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == runtime.as_raw() {
                exit_as(status);
            }
        }
    }
}

/// Writes the runtime's wait status to the status pipe and exits the way the runtime did.
fn exit_as(status: libc::c_int) -> ! {
    let bytes = status.to_ne_bytes();
    // SAFETY: write reads 4 valid bytes. A short or failed write leaves the process outside with
    // pid 1's own exit code, which says the same thing less precisely.
    let _written = unsafe { libc::write(STATUS_FD, bytes.as_ptr().cast(), bytes.len()) };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    // SAFETY: _exit ends the process at once (no atexit handlers: in a zygote child they would be
    // the interpreter's); every other process of the namespace is killed by the kernel.
    unsafe { libc::_exit(code) }
}

/// Outside the pid namespace: waits for pid 1 and exits the way the runtime did (as pid 1 wrote it
/// to the status pipe), or the way pid 1 did when it wrote nothing (killed from outside, or it
/// failed before the runtime was forked).
pub(super) fn mirror_exit(child: Pid, status: Option<OwnedFd>) -> ! {
    let outcome = loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => break Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => break Err(sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => std::process::exit(1),
        }
    };
    let runtime = status.and_then(|fd| {
        let mut buf = [0u8; 4];
        match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
            Ok(4) => Some(libc::c_int::from_ne_bytes(buf)),
            _ => None,
        }
    });
    let outcome = match runtime {
        Some(st) if libc::WIFEXITED(st) => Ok(libc::WEXITSTATUS(st)),
        Some(st) if libc::WIFSIGNALED(st) => Err(libc::WTERMSIG(st)),
        _ => outcome,
    };
    match outcome {
        Ok(code) => std::process::exit(code),
        Err(sig) => die_of(sig),
    }
}

/// Dies of `sig` so the worker sees what killed the runtime.
fn die_of(sig: i32) -> ! {
    if let Ok(sig) = Signal::try_from(sig) {
        // SIGKILL's disposition cannot (and need not) be reset.
        // SAFETY: resetting a disposition to the default has no preconditions.
        let default = sig == Signal::SIGKILL
            || unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) }
                .is_ok();
        let unblocked = {
            let mut one = SigSet::empty();
            one.add(sig);
            one.thread_unblock().is_ok()
        };
        if default && unblocked && nix::sys::signal::raise(sig).is_ok() {
            // The signal is delivered before raise returns; only reached for signals whose
            // default is to ignore.
        }
    }
    std::process::exit(128 + sig)
}
