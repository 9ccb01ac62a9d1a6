//! What the worker and a sandbox's init process say to each other over their SOCK_SEQPACKET socketpair
//! (fd 3 in the init process). One datagram per message:
//!
//! 1. worker -> init: `PrepareConfig` as JSON (after the init process was attached to the cgroup).
//! 2. init -> worker: `LISTENER` with the Runtime API socket attached (SCM_RIGHTS), then the AWS
//!    API endpoint's and the Parameters and Secrets extension's sockets (served only for functions
//!    with an execution role, closed otherwise), sent by pid 1 of the new namespaces. The sandbox is now *prepared*: cgroup, namespaces, loopback and the Runtime
//!    API socket exist, no code is bound, nothing untrusted runs. A pool of these waits for requests.
//! 3. worker -> init: `InitConfig` as JSON (the function: code, runtime, uid, environment), after the
//!    worker wrote the function's limits into the cgroup.
//! 4. init -> worker: nothing, then end-of-file: the socket is close-on-exec, so EOF means the runtime
//!    was exec'd. Or `ERROR` + a message when a step failed (at any point); the init process then exits.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The fd number the socketpair end has in the init process.
pub const INIT_SOCKET_FD: i32 = 3;
/// The Runtime API port inside the sandbox's network namespace.
pub const RUNTIME_API_PORT: u16 = 9001;
/// The AWS API endpoint of a function with an execution role (`AWS_ENDPOINT_URL`), forwarded by
/// the worker to the controller's REST API (`crate::role_endpoints`).
pub const AWS_ENDPOINT_PORT: u16 = 9002;
/// The AWS Parameters and Secrets Lambda Extension's port (`crate::role_endpoints::extension`).
pub const EXTENSION_PORT: u16 = 2773;
/// The uid (and gid) the function has inside its user namespace, like Lambda's `sbx_user1051`.
pub const SANDBOX_UID: u32 = 993;

pub const MSG_LISTENER: &[u8] = b"LISTENER";
pub const MSG_ERROR_PREFIX: &[u8] = b"ERROR ";

/// What the init process needs before any function is known (message 1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrepareConfig {
    pub sandbox_id: String,
    pub hostname: String,
    /// Empty host directory that becomes the sandbox root (a tmpfs is mounted on it).
    pub root_dir: PathBuf,
    /// Lamina's bootstraps, bound read-only at /var/runtime.
    pub runtime_dir: PathBuf,
}

/// The function the prepared sandbox is bound to (message 3); built by `spawn` from a `BindSpec`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    pub code_dir: PathBuf,
    /// Unzipped layers, mounted at `/opt` in this order (a later one's files win).
    #[serde(default)]
    pub layer_dirs: Vec<PathBuf>,
    pub ephemeral_storage_mb: u32,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub host_uid: u32,
    /// Image functions: the unpacked image, which becomes the root (`code_dir` and `layer_dirs`
    /// are then unused).
    #[serde(default)]
    pub image: Option<ImageRoot>,
}

/// An unpacked container image as a sandbox's root (see `image_root.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRoot {
    /// Host directory of the unpacked image (`STATE_DIR/images/<sha256>`), bound read-only at `/`.
    pub dir: PathBuf,
    /// Where the process starts (absolute inside the image; empty: `/`).
    pub working_dir: String,
}
