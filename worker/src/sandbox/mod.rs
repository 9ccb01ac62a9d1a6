//! One sandbox = one cgroup + one init process tree in fresh namespaces. `spawn` is the worker side,
//! `init` runs inside the fresh `lamina-worker __sandbox-init` process, `protocol` is what they say.
mod image_root;
pub mod init;
pub mod launcher;
mod pid1;
pub mod protocol;
pub mod seccomp;
pub mod spawn;
mod spawner;
mod zygote_ffi;

pub use spawn::{
    cleanup_stale, remove_cgroup_parent, BindSpec, ExitInfo, PrepareSpec, PreparedSandbox, Sandbox,
    SandboxError, SandboxSpec,
};
/// `argv[0]` of the sandbox init processes (a sandbox's pid 1 shows it in `/proc/1/cmdline`).
const INIT_ARG0: &str = "lamina-init";

pub use launcher::{Launcher, LauncherError, LauncherKind};
