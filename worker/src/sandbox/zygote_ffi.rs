//! The C ABI the Python zygote (`runtimes/zygote.py`) calls through `ctypes.PyDLL` in each child it
//! forks, so that a zygote-forked sandbox is built by exactly the same code, in the same order, as an
//! exec'd one (`init.rs`): the child has the sandbox's socketpair end on fd 3 and its output pipe on
//! fds 1 and 2, and the worker has attached it to the sandbox's cgroup.
//!
//! 1. `lamina_zygote_enter()`: receives the prepare config, unshares the namespaces and forks pid 1
//!    with a plain fork(2) (this process is single-threaded, and Python's at-fork hooks already ran
//!    in it when the zygote forked it with `os.fork`);
//! 2. the process left outside the pid namespace waits for pid 1 and mirrors the runtime's exit
//!    (`pid1::mirror_exit`), in Rust: it runs no Python again, so it copies as few of the zygote's
//!    pages as it can (a page it wrote and pid 1 writes again counts in both).
//!    `lamina_zygote_enter` returns 0 in pid 1 only, which calls
//! 3. `lamina_zygote_setup(buf, len)`: hostname, loopback, Runtime API socket handed over, waits for
//!    the function, builds the root, drops to the function's uid in a user namespace without any
//!    capability, no_new_privs, seccomp — then forks the runtime (`pid1::fork_runtime`): pid 1 stays
//!    in Rust as the sandbox's minimal init (reaps, forwards signals, exits with the runtime's
//!    status) and never returns to Python; the child, instead of exec, closes fd 3 (the worker sees
//!    EOF as after an exec) and returns the runtime's argv and environment as JSON.
//!
//! Any failure is reported to the worker on fd 3 and the process exits 1, as in `init.rs`.
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;

use super::init::{enter_namespaces, report, setup};
use super::pid1::{fork_runtime, keep_status_fd, mirror_exit, status_pipe};
use super::protocol::{PrepareConfig, INIT_SOCKET_FD};

static PREPARED: Mutex<Option<PrepareConfig>> = Mutex::new(None);

/// fd 3 without taking ownership (it is closed only when the setup finishes).
fn with_sock<T>(f: impl FnOnce(&OwnedFd) -> T) -> T {
    // SAFETY: the zygote child dup2'ed the sandbox's socketpair end to fd 3; ManuallyDrop keeps
    // this borrow from closing it.
    let sock = std::mem::ManuallyDrop::new(unsafe { OwnedFd::from_raw_fd(INIT_SOCKET_FD) });
    f(&sock)
}

fn fail(e: &super::init::InitError) -> ! {
    with_sock(|sock| report(sock, e));
    std::process::exit(1)
}

/// Steps 1 and 2: the namespaces, then pid 1 forked. Returns 0 in pid 1; the parent waits for
/// pid 1 and exits the way the runtime did (never returns); failures are reported and exit.
#[no_mangle]
pub extern "C" fn lamina_zygote_enter() -> libc::c_int {
    let prep = with_sock(enter_namespaces).unwrap_or_else(|e| fail(&e));
    *PREPARED.lock().unwrap_or_else(|e| e.into_inner()) = Some(prep);
    let (status_r, status_w) = status_pipe().unwrap_or_else(|e| fail(&e));
    // SAFETY: the zygote starts no thread, so its forked child is single-threaded (the GIL is held
    // by this very thread, which continues in pid 1) and may run any code after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            keep_status_fd(status_r, status_w).unwrap_or_else(|e| fail(&e));
            0
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            // The parent keeps no copy of the init socket: EOF must mean the runtime started.
            // SAFETY: closing fd 3, which this process no longer uses; errors (EBADF) change nothing.
            unsafe { libc::close(INIT_SOCKET_FD) };
            drop(status_w);
            mirror_exit(child, Some(status_r))
        }
        Err(source) => fail(&super::init::InitError::Sys {
            step: "fork pid 1".into(),
            source,
        }),
    }
}

/// Step 3, in pid 1, which stays there as the sandbox's init; returns in the runtime it forked.
/// Writes `{"argv": [...], "env": [[k, v], ...]}` to `buf` and returns its length; reports and
/// exits on failure (also when `buf` is too small).
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn lamina_zygote_setup(buf: *mut u8, len: usize) -> isize {
    let prep = PREPARED.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(prep) = prep else {
        fail(&super::init::InitError::Protocol(
            "zygote setup called before unshare".into(),
        ))
    };
    let cfg = match with_sock(|sock| setup(sock, &prep)) {
        Ok(cfg) => cfg,
        Err(e) => fail(&e),
    };
    // Pid 1 never comes back from here; the runtime does.
    if let Err(e) = fork_runtime() {
        fail(&e)
    }
    let out = serde_json::json!({ "argv": cfg.argv, "env": cfg.env }).to_string();
    if out.len() > len {
        fail(&super::init::InitError::Protocol(format!(
            "runtime config of {} bytes does not fit the zygote's {len} byte buffer",
            out.len()
        )));
    }
    // SAFETY: the caller guarantees `buf` is writable for `len` bytes, and out.len() <= len.
    unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), buf, out.len()) };
    // The exec'd path closes fd 3 by close-on-exec; here it is closed explicitly: EOF tells the
    // worker the sandbox is ready.
    // SAFETY: fd 3 is the init socket, not used after this point.
    if unsafe { libc::close(INIT_SOCKET_FD) } != 0 {
        std::process::exit(1);
    }
    out.len() as isize
}
