//! cgroup v2: one unified hierarchy; controllers enabled top-down through `cgroup.subtree_control`.
//! Driven through `cgroups-rs` (directories and controllers, limits, tasks, freeze, kill) besides
//! waiting for a freeze to take effect (`cgroup.events`), the counters (one file each) and rmdir
//! with retries.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::error::ErrorKind;
use cgroups_rs::freezer::FreezerController;
use cgroups_rs::hierarchies::V2;
use cgroups_rs::memory::{MemController, SetMemory};
use cgroups_rs::pid::PidController;
use cgroups_rs::{CgroupPid, MaxValue};

use super::{rmdir_retry, Cgroup, CgroupError, Limits};

/// The controllers a sandbox cgroup gets (the freezer is part of v2's core).
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

pub struct CgroupV2 {
    relative: String,
    cg: cgroups_rs::Cgroup,
    dir: PathBuf,
}

pub fn children(root: &Path, parent: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join(parent))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn read_key(path: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok().and_then(|s| {
        s.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
    })
}

impl CgroupV2 {
    /// A handle on the cgroup `relative` below `root` (the crate's unified hierarchy,
    /// `/sys/fs/cgroup`), which may not exist (yet).
    pub fn open(root: &Path, relative: &str) -> CgroupV2 {
        let mut names: Vec<String> = CONTROLLERS.iter().map(|c| c.to_string()).collect();
        names.push("freezer".to_string());
        let cg = cgroups_rs::Cgroup::load_with_specified_controllers(
            Box::new(V2::new()),
            relative,
            names,
        );
        CgroupV2 {
            relative: relative.to_string(),
            cg,
            dir: root.join(relative),
        }
    }

    /// Creates the cgroup with the controllers enabled on every ancestor, so that the leaf gets
    /// their interface files, and writes `limits`.
    pub fn create(root: &Path, relative: &str, limits: &Limits) -> Result<CgroupV2, CgroupError> {
        let controllers = CONTROLLERS.iter().map(|c| c.to_string()).collect();
        let cg = cgroups_rs::Cgroup::new_with_specified_controllers(
            Box::new(V2::new()),
            relative,
            Some(controllers),
        )
        .map_err(|source| CgroupError::Crate {
            path: root.join(relative),
            source,
        })?;
        drop(cg);
        let cg = CgroupV2::open(root, relative);
        cg.write_limits(limits)?;
        Ok(cg)
    }

    fn crate_err(&self, source: cgroups_rs::error::Error) -> CgroupError {
        CgroupError::Crate {
            path: self.dir.clone(),
            source,
        }
    }

    fn write_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        let memory: &MemController = self
            .cg
            .controller_of()
            .expect("the memory controller was asked for");
        memory
            .set_mem(SetMemory {
                max: Some(MaxValue::Value(limits.memory_bytes as i64)),
                ..SetMemory::default()
            })
            .map_err(|e| self.crate_err(e))?;
        if self.dir.join("memory.swap.max").exists() {
            memory.set_memswap_limit(0).map_err(|e| self.crate_err(e))?;
        }
        let cpu: &cgroups_rs::cpu::CpuController = self
            .cg
            .controller_of()
            .expect("the cpu controller was asked for");
        cpu.set_cfs_quota_and_period(Some(limits.cpu_quota_us as i64), Some(limits.cpu_period_us))
            .map_err(|e| self.crate_err(e))?;
        let pids: &PidController = self
            .cg
            .controller_of()
            .expect("the pids controller was asked for");
        pids.set_pid_max(MaxValue::Value(i64::from(limits.pids_max)))
            .map_err(|e| self.crate_err(e))
    }

    /// Asks for the state through the crate (`cgroup.freeze`), then waits until `cgroup.events`
    /// says the kernel reached it (the crate's `state` reads back the request, not the effect).
    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let freezer: &FreezerController =
            self.cg.controller_of().expect("the freezer was asked for");
        if frozen {
            freezer.freeze()
        } else {
            freezer.thaw()
        }
        .map_err(|e| self.crate_err(e))?;
        let events = self.dir.join("cgroup.events");
        let want = u64::from(frozen);
        let start = Instant::now();
        while read_key(&events, "frozen") != Some(want) {
            if start.elapsed() > Duration::from_secs(5) {
                return Err(CgroupError::Timeout {
                    path: events,
                    what: "freeze state change",
                    ms: 5000,
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }
}

impl Cgroup for CgroupV2 {
    fn relative_path(&self) -> &str {
        &self.relative
    }

    fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        self.write_limits(limits)
    }

    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        self.cg
            .add_task_by_tgid(CgroupPid::from(pid as u64))
            .map_err(|e| self.crate_err(e))
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true)
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    fn oom_kills(&self) -> u64 {
        read_key(&self.dir.join("memory.events"), "oom_kill").unwrap_or(0)
    }

    fn memory_peak_bytes(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("memory.peak"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn pids(&self) -> Vec<i32> {
        self.cg.procs().into_iter().map(|p| p.pid as i32).collect()
    }

    /// `cgroup.kill` through the crate (5.14+); on older kernels every listed process is
    /// signalled until none is left.
    fn kill_all(&self) -> Result<(), CgroupError> {
        if !self.dir.exists() {
            return Ok(());
        }
        let killed = match self.cg.kill() {
            Ok(()) => true,
            Err(e) if matches!(e.kind(), ErrorKind::InvalidOperation) => false,
            Err(e) => return Err(self.crate_err(e)),
        };
        if !killed {
            super::kill_pids(&self.pids());
        }
        let start = Instant::now();
        while !self.pids().is_empty() {
            if start.elapsed() > Duration::from_secs(5) {
                return Err(CgroupError::Timeout {
                    path: self.dir.clone(),
                    what: "killing every process",
                    ms: 5000,
                });
            }
            if !killed {
                super::kill_pids(&self.pids());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        Ok(())
    }

    /// rmdir polled (`rmdir_retry`): the crate's v2 `delete` tries once.
    fn remove(&self) -> Result<(), CgroupError> {
        rmdir_retry(&self.dir)
    }
}
