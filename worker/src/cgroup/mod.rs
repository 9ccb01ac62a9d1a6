//! cgroups behind one interface: v1 (legacy/hybrid hierarchies, what these machines have) and v2
//! (unified), both built on the `cgroups-rs` crate; the mode is detected once per process (by the
//! crate). Lamina's own code does what the crate cannot: the free list of emptied cgroups
//! (`reuse.rs`, renames), waiting for a freeze to take effect, and rmdir polled until the kernel
//! lets go of a just-emptied cgroup.
//!
//! A sandbox's cgroup is created (or taken from the free list of emptied ones, `reuse.rs`) and its
//! limits written before its first process is attached.
#[cfg(test)]
mod bench;
mod reuse;
mod v1;
mod v2;

pub use reuse::{
    capacity as reuse_capacity, drain as drain_free, free_count, retire,
    set_capacity as set_reuse_capacity, stats as reuse_stats, take_or_create, ReuseStats,
    CAPACITY_ENV as REUSE_CAPACITY_ENV, DEFAULT_CAPACITY as REUSE_DEFAULT_CAPACITY, FREE_TTL,
    MAX_LEFTOVER_BYTES,
};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Linux's CPU share model of Lambda: 1769 MB of memory buys one full vCPU.
pub const MB_PER_VCPU: u64 = 1769;
pub const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cgroup {path}: {source}")]
    Crate {
        path: PathBuf,
        source: cgroups_rs::error::Error,
    },
    #[error("no cgroup hierarchy found: neither cgroup v2 at /sys/fs/cgroup nor v1 controllers {0} are mounted")]
    NotMounted(String),
    #[error("cgroup {path} cannot be reused: {reason}")]
    NotReusable { path: PathBuf, reason: &'static str },
    #[error("cgroup {path}: {what} did not finish within {ms} ms")]
    Timeout {
        path: PathBuf,
        what: &'static str,
        ms: u64,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Resource limits of one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpu_quota_us: u64,
    pub cpu_period_us: u64,
    pub pids_max: u32,
}

impl Limits {
    /// Memory = the function's memory size; CPU proportional to memory (1769 MB = 1 vCPU).
    pub fn for_function(memory_mb: u32, pids_max: u32) -> Limits {
        let quota = (CPU_PERIOD_US * memory_mb as u64 / MB_PER_VCPU).max(1000);
        Limits {
            memory_bytes: memory_mb as u64 * 1024 * 1024,
            cpu_quota_us: quota,
            cpu_period_us: CPU_PERIOD_US,
            pids_max,
        }
    }
}

/// One cgroup (in every hierarchy the mode uses).
pub trait Cgroup: Send + Sync {
    /// The relative path below the hierarchy roots, e.g. `lamina/w1/sb-1`.
    fn relative_path(&self) -> &str;
    /// Rewrites memory (no swap), CPU quota and pids.max: a pre-created sandbox gets its function's
    /// limits when its code is bound, before the function's first instruction runs.
    fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError>;
    fn add_process(&self, pid: i32) -> Result<(), CgroupError>;
    fn freeze(&self) -> Result<(), CgroupError>;
    fn thaw(&self) -> Result<(), CgroupError>;
    /// How many processes the kernel OOM killer killed in this cgroup.
    fn oom_kills(&self) -> u64;
    /// Highest memory use seen, in bytes (0 when the kernel does not say).
    fn memory_peak_bytes(&self) -> u64;
    /// Pids of the processes in the cgroup.
    fn pids(&self) -> Vec<i32>;
    /// SIGKILL every process in the cgroup, including ones forked meanwhile; returns when it is empty.
    fn kill_all(&self) -> Result<(), CgroupError>;
    /// Removes the (empty) cgroup.
    fn remove(&self) -> Result<(), CgroupError>;
    /// True when nothing of its last user can remain and it may be handed to the next sandbox:
    /// no task in any hierarchy (not even a zombie) and little memory still charged. Never on v2:
    /// `memory.peak` cannot be reset there (only per open file, from 6.12), so the next sandbox's
    /// peak memory would be its predecessor's.
    fn reusable(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone)]
pub enum Mode {
    /// v1: the mount point of each controller we use.
    V1(v1::Mounts),
    /// v2: the unified hierarchy's root.
    V2(PathBuf),
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::V1(_) => "v1",
            Mode::V2(_) => "v2",
        }
    }
}

/// Detects the cgroup mode once: v2 when `/sys/fs/cgroup` is the unified hierarchy, else v1.
pub fn mode() -> Result<&'static Mode, CgroupError> {
    static MODE: OnceLock<Result<Mode, String>> = OnceLock::new();
    MODE.get_or_init(|| {
        if cgroups_rs::hierarchies::is_cgroup2_unified_mode() {
            Ok(Mode::V2(PathBuf::from(
                cgroups_rs::hierarchies::UNIFIED_MOUNTPOINT,
            )))
        } else {
            v1::Mounts::detect().map(Mode::V1)
        }
    })
    .as_ref()
    .map_err(|missing| CgroupError::NotMounted(missing.clone()))
}

/// Creates the cgroup `relative` (parents included) and writes `limits` into it.
pub fn create(relative: &str, limits: &Limits) -> Result<Box<dyn Cgroup>, CgroupError> {
    match mode()? {
        Mode::V1(mounts) => Ok(Box::new(v1::CgroupV1::create(mounts, relative, limits)?)),
        Mode::V2(root) => Ok(Box::new(v2::CgroupV2::create(root, relative, limits)?)),
    }
}

/// Kills the processes of every cgroup below `parent` and removes them (left by a previous run).
pub fn cleanup_stale(parent: &str) -> Result<usize, CgroupError> {
    let mut removed = 0;
    let children: Vec<String> = match mode()? {
        Mode::V1(mounts) => mounts.children(parent),
        Mode::V2(root) => v2::children(root, parent),
    };
    for child in children {
        let cg = open(&format!("{parent}/{child}"))?;
        cg.kill_all()?;
        cg.remove()?;
        removed += 1;
    }
    Ok(removed)
}

fn open(relative: &str) -> Result<Box<dyn Cgroup>, CgroupError> {
    Ok(match mode()? {
        Mode::V1(mounts) => Box::new(v1::CgroupV1::open(mounts, relative)),
        Mode::V2(root) => Box::new(v2::CgroupV2::open(root, relative)),
    })
}

/// Kills whatever is in the cgroup `relative` and removes it, logging a failure (best effort).
pub(crate) fn remove_stale(relative: &str) {
    let result = open(relative).and_then(|cg| {
        cg.kill_all()?;
        cg.remove()
    });
    if let Err(e) = result {
        tracing::warn!(cgroup = relative, error = %e, "removing a cgroup failed");
    }
}

/// Removes the cgroup `relative` (which must be empty) in every hierarchy; a missing one is fine.
pub fn remove_group(relative: &str) -> Result<(), CgroupError> {
    open(relative)?.remove()
}

/// rmdir with retries: the kernel may take a moment to release a cgroup whose last task just died.
pub(crate) fn rmdir_retry(dir: &Path) -> Result<(), CgroupError> {
    let mut last = None;
    // Usually free right away or within a few hundred microseconds: poll fast first, then back off
    // (about 1 s in all).
    for i in 0..120u64 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_micros(if i < 20 {
            250
        } else {
            10_000
        }));
    }
    Err(CgroupError::Io {
        path: dir.to_path_buf(),
        source: last.unwrap_or_else(|| io::Error::other("rmdir failed")),
    })
}

/// Sends SIGKILL to each pid; a pid that is already gone is fine.
pub(crate) fn kill_pids(pids: &[i32]) {
    for &pid in pids {
        // ESRCH (already exited) is the only expected failure and needs no handling.
        if let Err(e) = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        ) {
            if e != nix::errno::Errno::ESRCH {
                tracing::warn!(pid, error = %e, "kill failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_proportional_to_memory() {
        let l = Limits::for_function(1769, 64);
        assert_eq!(l.cpu_quota_us, CPU_PERIOD_US);
        let l = Limits::for_function(128, 64);
        assert_eq!(l.cpu_quota_us, 7235);
        assert_eq!(l.memory_bytes, 128 << 20);
        let l = Limits::for_function(3538, 64);
        assert_eq!(l.cpu_quota_us, 2 * CPU_PERIOD_US);
    }

    /// Needs root and a cgroup hierarchy: creates a real cgroup, puts a process in it, freezes, kills.
    #[test]
    fn real_cgroup_lifecycle() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root (it creates real cgroups)");
        }
        let parent = format!("lamina-test-unit-{}", std::process::id());
        let rel = format!("{parent}/cg");
        let cg = create(&rel, &Limits::for_function(256, 32)).expect("create cgroup");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        cg.add_process(child.id() as i32).unwrap();
        assert_eq!(cg.pids(), vec![child.id() as i32]);
        cg.freeze().unwrap();
        cg.thaw().unwrap();
        cg.kill_all().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        assert!(cg.pids().is_empty());
        assert_eq!(cg.oom_kills(), 0);
        cg.remove().unwrap();
        assert_eq!(cleanup_stale(&parent).unwrap(), 0);
        // A stale child with a live process is killed and removed.
        let stale = create(&format!("{parent}/stale"), &Limits::for_function(128, 8)).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        stale.add_process(child.id() as i32).unwrap();
        assert_eq!(cleanup_stale(&parent).unwrap(), 1);
        assert!(!child.wait().unwrap().success());
        remove_group(&parent).unwrap();
    }
}
