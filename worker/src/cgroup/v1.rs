//! cgroup v1: one directory per controller hierarchy (memory, cpu, pids, freezer), driven through
//! `cgroups-rs` (directories, limits, tasks, freezer, counters) — besides what the crate cannot
//! do: renaming a cgroup (reuse, `reuse.rs`), and what it does more slowly (see `Cgroup::remove`
//! and `memory_peak_bytes` below, and the figures in `docs/ARCHITECTURE.md`).
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::freezer::{FreezerController, FreezerState};
use cgroups_rs::hierarchies::V1;
use cgroups_rs::memory::MemController;
use cgroups_rs::pid::PidController;
use cgroups_rs::{CgroupPid, Controller, Controllers, MaxValue};

use super::{io_err, kill_pids, rmdir_retry, Cgroup, CgroupError, Limits};

/// The controllers Lamina uses, by their v1 names.
const CONTROLLERS: [Controllers; 4] = [
    Controllers::Mem,
    Controllers::Cpu,
    Controllers::Pids,
    Controllers::Freezer,
];

/// Mount points of the v1 controllers Lamina uses (found by `cgroups-rs` in `/proc/self/mountinfo`).
#[derive(Debug, Clone)]
pub struct Mounts {
    hierarchy: V1,
    memory: PathBuf,
    cpu: PathBuf,
    pids: PathBuf,
    freezer: PathBuf,
}

impl Mounts {
    /// Err names the controllers that are not mounted.
    pub fn detect() -> Result<Mounts, String> {
        let hierarchy = V1::new();
        let found: Vec<Option<PathBuf>> = CONTROLLERS
            .iter()
            .map(|c| hierarchy.get_mount_point(c.clone()))
            .collect();
        let missing: Vec<String> = CONTROLLERS
            .iter()
            .zip(&found)
            .filter(|(_, p)| p.is_none())
            .map(|(c, _)| c.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(missing.join(", "));
        }
        let mut it = found.into_iter().flatten();
        let mut next = || it.next().expect("every controller was found");
        Ok(Mounts {
            memory: next(),
            cpu: next(),
            pids: next(),
            freezer: next(),
            hierarchy,
        })
    }

    fn all(&self) -> [&Path; 4] {
        [&self.memory, &self.cpu, &self.pids, &self.freezer]
    }

    /// Names of the child cgroups of `parent` in any hierarchy.
    pub fn children(&self, parent: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .all()
            .iter()
            .filter_map(|root| std::fs::read_dir(root.join(parent)).ok())
            .flatten()
            .flatten()
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

pub struct CgroupV1 {
    relative: String,
    /// The crate's handle on the four controllers' directories.
    cg: cgroups_rs::Cgroup,
    memory: PathBuf,
    cpu: PathBuf,
    pids: PathBuf,
    freezer: PathBuf,
    /// OOM kills counted before this sandbox got the cgroup (it was reused; the counter cannot be
    /// reset).
    oom_baseline: u64,
    /// Memory still charged (page cache of the previous user) when this sandbox got the cgroup;
    /// not part of this sandbox's peak.
    usage_baseline: u64,
}

impl CgroupV1 {
    /// A handle on the cgroup `relative`, which may not exist (yet).
    pub fn open(m: &Mounts, relative: &str) -> CgroupV1 {
        let names = CONTROLLERS.iter().map(|c| c.to_string()).collect();
        let cg = cgroups_rs::Cgroup::load_with_specified_controllers(
            Box::new(m.hierarchy.clone()),
            relative,
            names,
        );
        CgroupV1 {
            relative: relative.to_string(),
            cg,
            memory: m.memory.join(relative),
            cpu: m.cpu.join(relative),
            pids: m.pids.join(relative),
            freezer: m.freezer.join(relative),
            oom_baseline: 0,
            usage_baseline: 0,
        }
    }

    pub fn create(m: &Mounts, relative: &str, limits: &Limits) -> Result<CgroupV1, CgroupError> {
        let cg = CgroupV1::open(m, relative);
        cg.cg.create().map_err(|e| cg.crate_err(&cg.memory, e))?;
        // The crate logs a failed mkdir and goes on: a missing directory is found here.
        for dir in cg.dirs() {
            if !dir.is_dir() {
                return Err(CgroupError::Io {
                    path: dir.to_path_buf(),
                    source: std::io::Error::other("the cgroup directory was not created"),
                });
            }
        }
        cg.write_limits(limits)?;
        Ok(cg)
    }

    /// Makes the free cgroup `old` (emptied by its last sandbox, see `reuse.rs`) the cgroup
    /// `new` of the next one: checked empty again, renamed in every hierarchy, thawed, peak memory
    /// reset (`memory.max_usage_in_bytes`), the counters that cannot be reset (OOM kills, memory
    /// left charged) taken as baselines, and `limits` written.
    pub fn adopt(
        m: &Mounts,
        old: &str,
        new: &str,
        limits: &Limits,
    ) -> Result<CgroupV1, CgroupError> {
        let from = CgroupV1::open(m, old);
        if let Err(reason) = from.vacant() {
            return Err(CgroupError::NotReusable {
                path: from.freezer.clone(),
                reason,
            });
        }
        rename(m, old, new)?;
        let mut cg = CgroupV1::open(m, new);
        let state = cg
            .freezer()
            .state()
            .map_err(|e| cg.crate_err(&cg.freezer, e))?;
        if !matches!(state, FreezerState::Thawed) {
            cg.set_freezer(false)?;
        }
        cg.oom_baseline = cg.oom_kill_count();
        cg.memory()
            .reset_max_usage()
            .map_err(|e| cg.crate_err(&cg.memory, e))?;
        let usage = cg.memory.join("memory.usage_in_bytes");
        cg.usage_baseline = read_u64(&usage).ok_or_else(|| CgroupError::NotReusable {
            path: usage.clone(),
            reason: "memory usage unreadable",
        })?;
        cg.write_limits(limits)?;
        Ok(cg)
    }

    fn memory(&self) -> &MemController {
        self.cg
            .controller_of()
            .expect("the memory controller was asked for")
    }

    fn freezer(&self) -> &FreezerController {
        self.cg
            .controller_of()
            .expect("the freezer controller was asked for")
    }

    fn pid_controller(&self) -> &PidController {
        self.cg
            .controller_of()
            .expect("the pids controller was asked for")
    }

    fn crate_err(&self, path: &Path, source: cgroups_rs::error::Error) -> CgroupError {
        CgroupError::Crate {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Ok when no task is left in any hierarchy (`pids.current` counts tasks until they are
    /// reaped, so not even a zombie) and at most `MAX_LEFTOVER_BYTES` are still charged; else why
    /// not. A file that cannot be read counts as not empty.
    fn vacant(&self) -> Result<(), &'static str> {
        if !matches!(self.pid_controller().get_pid_current(), Ok(0)) {
            return Err("tasks left (pids.current is not 0)");
        }
        for dir in self.dirs() {
            match std::fs::read_to_string(dir.join("cgroup.procs")) {
                Ok(s) if s.trim().is_empty() => {}
                _ => return Err("processes left in cgroup.procs"),
            }
        }
        match read_u64(&self.memory.join("memory.usage_in_bytes")) {
            Some(bytes) if bytes <= super::MAX_LEFTOVER_BYTES => Ok(()),
            _ => Err("too much memory still charged"),
        }
    }

    /// `oom_kill` of `memory.oom_control` (one file; the crate's `memory_stat` reads a dozen).
    fn oom_kill_count(&self) -> u64 {
        std::fs::read_to_string(self.memory.join("memory.oom_control"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Memory (no swap), CPU quota and pids.max. With swap accounting the memory+swap limit must stay
    /// at or above the memory limit, so it is written first when the limit grows, last when it shrinks.
    fn write_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        let memory = self.memory();
        let bytes = limits.memory_bytes as i64;
        let mem_err = |e| self.crate_err(&self.memory, e);
        let has_memsw = self.memory.join("memory.memsw.limit_in_bytes").exists();
        let current = read_u64(&self.memory.join("memory.limit_in_bytes"));
        let growing = !matches!(current, Some(cur) if limits.memory_bytes < cur);
        if has_memsw && growing {
            memory.set_memswap_limit(bytes).map_err(mem_err)?;
        }
        memory.set_limit(bytes).map_err(mem_err)?;
        if has_memsw && !growing {
            memory.set_memswap_limit(bytes).map_err(mem_err)?;
        }
        let cpu: &cgroups_rs::cpu::CpuController = self
            .cg
            .controller_of()
            .expect("the cpu controller was asked for");
        cpu.set_cfs_quota_and_period(Some(limits.cpu_quota_us as i64), Some(limits.cpu_period_us))
            .map_err(|e| self.crate_err(&self.cpu, e))?;
        self.pid_controller()
            .set_pid_max(MaxValue::Value(i64::from(limits.pids_max)))
            .map_err(|e| self.crate_err(&self.pids, e))
    }

    fn dirs(&self) -> [&Path; 4] {
        [&self.memory, &self.cpu, &self.pids, &self.freezer]
    }

    /// Freezes or thaws and waits until the kernel is done (`FREEZING` -> `FROZEN`).
    fn set_freezer(&self, frozen: bool) -> Result<(), CgroupError> {
        let freezer = self.freezer();
        let err = |e| self.crate_err(&self.freezer, e);
        if frozen {
            freezer.freeze().map_err(err)?;
        } else {
            freezer.thaw().map_err(err)?;
        }
        let start = Instant::now();
        loop {
            let reached = match freezer.state().map_err(err)? {
                FreezerState::Frozen => frozen,
                FreezerState::Thawed => !frozen,
                FreezerState::Freezing => false,
            };
            if reached {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(5) {
                return Err(CgroupError::Timeout {
                    path: self.freezer.join("freezer.state"),
                    what: "freezer state change",
                    ms: 5000,
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Renames the cgroup `old` to `new` (same parent) in every hierarchy. On failure some hierarchies
/// may have either name: the caller removes both. (Not in `cgroups-rs`: its handles name a path.)
pub fn rename(m: &Mounts, old: &str, new: &str) -> Result<(), CgroupError> {
    let olds = m.all().map(|root| root.join(old));
    let news = m.all().map(|root| root.join(new));
    for (src, dst) in olds.iter().zip(&news) {
        std::fs::rename(src, dst).map_err(io_err(src))?;
    }
    Ok(())
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

impl Cgroup for CgroupV1 {
    fn relative_path(&self) -> &str {
        &self.relative
    }

    fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        self.write_limits(limits)
    }

    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        self.cg
            .add_task_by_tgid(CgroupPid::from(pid as u64))
            .map_err(|e| self.crate_err(&self.freezer, e))
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.set_freezer(true)
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.set_freezer(false)
    }

    fn oom_kills(&self) -> u64 {
        self.oom_kill_count().saturating_sub(self.oom_baseline)
    }

    /// `memory.max_usage_in_bytes` (one file; the crate's `memory_stat` reads a dozen).
    fn memory_peak_bytes(&self) -> u64 {
        read_u64(&self.memory.join("memory.max_usage_in_bytes"))
            .unwrap_or(0)
            .saturating_sub(self.usage_baseline)
    }

    /// The freezer hierarchy's `cgroup.procs` (every process is attached to all four).
    fn pids(&self) -> Vec<i32> {
        self.freezer()
            .procs()
            .into_iter()
            .map(|p| p.pid as i32)
            .collect()
    }

    fn kill_all(&self) -> Result<(), CgroupError> {
        if !self.freezer.exists() {
            return Ok(());
        }
        // Freeze first so nothing can fork between reading the list and killing it (v1 has no
        // `cgroup.kill`, and the crate's `kill` is v2 only).
        self.freeze()?;
        for _ in 0..100 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            kill_pids(&pids);
            // Killed tasks only die once they run: thaw, then check again.
            self.thaw()?;
            std::thread::sleep(Duration::from_micros(500));
            if self.pids().is_empty() {
                return Ok(());
            }
            self.freeze()?;
        }
        self.thaw()?;
        let start = Instant::now();
        while !self.pids().is_empty() {
            if start.elapsed() > Duration::from_secs(5) {
                return Err(CgroupError::Timeout {
                    path: self.freezer.clone(),
                    what: "killing every process",
                    ms: 5000,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// rmdir in every hierarchy, polled (`rmdir_retry`): the crate's `delete` sleeps 10 ms before
    /// its first retry, where a just-emptied cgroup is usually free within a few hundred µs.
    fn remove(&self) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            rmdir_retry(dir)?;
        }
        Ok(())
    }

    fn reusable(&self) -> bool {
        self.vacant().is_ok()
    }
}
