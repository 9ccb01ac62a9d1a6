//! What the worker and a sandbox's init process say to each other over their SOCK_SEQPACKET socketpair
//! (fd 3 in the init process). One datagram per message:
//!
//! 1. worker -> init: `InitConfig` as JSON (after the init process was attached to the cgroup).
//! 2. init -> worker: `LISTENER` with the Runtime API socket attached (SCM_RIGHTS).
//! 3. init -> worker: nothing, then end-of-file: the socket is close-on-exec, so EOF means the runtime
//!    was exec'd. Or `ERROR` + a message when a step failed; the init process then exits.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The fd number the socketpair end has in the init process.
pub const INIT_SOCKET_FD: i32 = 3;
/// The Runtime API port inside the sandbox's network namespace.
pub const RUNTIME_API_PORT: u16 = 9001;
/// The uid (and gid) the function has inside its user namespace, like Lambda's `sbx_user1051`.
pub const SANDBOX_UID: u32 = 993;

pub const MSG_LISTENER: &[u8] = b"LISTENER";
pub const MSG_ERROR_PREFIX: &[u8] = b"ERROR ";

/// Everything the init process needs; built by `spawn` from a `SandboxSpec`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    pub sandbox_id: String,
    pub hostname: String,
    /// Empty host directory that becomes the sandbox root (a tmpfs is mounted on it).
    pub root_dir: PathBuf,
    pub code_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub ephemeral_storage_mb: u32,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub host_uid: u32,
}
