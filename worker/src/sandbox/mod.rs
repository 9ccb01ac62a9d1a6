//! One sandbox = one cgroup + one init process tree in fresh namespaces. `spawn` is the worker side,
//! `init` runs inside the fresh `lamina-worker __sandbox-init` process.
pub mod init;
pub mod protocol;
pub mod spawn;
