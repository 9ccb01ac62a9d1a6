//! cgroup v1: one directory per controller hierarchy (memory, cpu, pids, freezer).
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{io_err, kill_pids, read_pids, rmdir_retry, write, Cgroup, CgroupError, Limits};

const CONTROLLERS: [&str; 4] = ["memory", "cpu", "pids", "freezer"];

/// Mount points of the v1 controllers Lamina uses.
#[derive(Debug, Clone)]
pub struct Mounts {
    memory: PathBuf,
    cpu: PathBuf,
    pids: PathBuf,
    freezer: PathBuf,
}

impl Mounts {
    /// Reads `/proc/self/mounts`; Err names the controllers that are not mounted.
    pub fn detect() -> Result<Mounts, String> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let find = |controller: &str| -> Option<PathBuf> {
            mounts.lines().find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f.len() >= 4 && f[2] == "cgroup" && f[3].split(',').any(|o| o == controller))
                    .then(|| PathBuf::from(f[1]))
            })
        };
        let found: Vec<Option<PathBuf>> = CONTROLLERS.iter().map(|c| find(c)).collect();
        let missing: Vec<&str> = CONTROLLERS
            .iter()
            .zip(&found)
            .filter(|(_, p)| p.is_none())
            .map(|(c, _)| *c)
            .collect();
        if !missing.is_empty() {
            return Err(missing.join(", "));
        }
        let mut it = found.into_iter().map(Option::unwrap);
        Ok(Mounts {
            memory: it.next().unwrap(),
            cpu: it.next().unwrap(),
            pids: it.next().unwrap(),
            freezer: it.next().unwrap(),
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
    pub fn open(m: &Mounts, relative: &str) -> CgroupV1 {
        CgroupV1 {
            relative: relative.to_string(),
            memory: m.memory.join(relative),
            cpu: m.cpu.join(relative),
            pids: m.pids.join(relative),
            freezer: m.freezer.join(relative),
            oom_baseline: 0,
            usage_baseline: 0,
        }
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
        let state = freezer_state(&cg.freezer)?;
        if state != "THAWED" {
            cg.set_freezer("THAWED")?;
        }
        cg.oom_baseline = cg.oom_kill_count();
        write(&cg.memory.join("memory.max_usage_in_bytes"), "0")?;
        let usage = cg.memory.join("memory.usage_in_bytes");
        cg.usage_baseline = read_u64(&usage).ok_or_else(|| CgroupError::NotReusable {
            path: usage.clone(),
            reason: "memory usage unreadable",
        })?;
        cg.write_limits(limits)?;
        Ok(cg)
    }

    /// Ok when no task is left in any hierarchy (`pids.current` counts tasks until they are
    /// reaped, so not even a zombie) and at most `MAX_LEFTOVER_BYTES` are still charged; else why
    /// not. A file that cannot be read counts as not empty.
    fn vacant(&self) -> Result<(), &'static str> {
        if read_u64(&self.pids.join("pids.current")) != Some(0) {
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

    fn oom_kill_count(&self) -> u64 {
        std::fs::read_to_string(self.memory.join("memory.oom_control"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    pub fn create(m: &Mounts, relative: &str, limits: &Limits) -> Result<CgroupV1, CgroupError> {
        let cg = CgroupV1::open(m, relative);
        for dir in cg.dirs() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        cg.write_limits(limits)?;
        Ok(cg)
    }

    /// Memory (no swap), CPU quota and pids.max. With swap accounting the memory+swap limit must stay
    /// at or above the memory limit, so it is written first when the limit grows, last when it shrinks.
    fn write_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        let bytes = limits.memory_bytes.to_string();
        let mem = self.memory.join("memory.limit_in_bytes");
        let memsw = self.memory.join("memory.memsw.limit_in_bytes");
        let has_memsw = memsw.exists();
        let growing = !matches!(read_u64(&mem), Some(cur) if limits.memory_bytes < cur);
        if has_memsw && growing {
            write(&memsw, &bytes)?;
        }
        write(&mem, &bytes)?;
        if has_memsw && !growing {
            write(&memsw, &bytes)?;
        }
        write(
            &self.cpu.join("cpu.cfs_period_us"),
            &limits.cpu_period_us.to_string(),
        )?;
        write(
            &self.cpu.join("cpu.cfs_quota_us"),
            &limits.cpu_quota_us.to_string(),
        )?;
        write(&self.pids.join("pids.max"), &limits.pids_max.to_string())
    }

    fn dirs(&self) -> [&Path; 4] {
        [&self.memory, &self.cpu, &self.pids, &self.freezer]
    }

    fn set_freezer(&self, state: &str) -> Result<(), CgroupError> {
        let file = self.freezer.join("freezer.state");
        write(&file, state)?;
        let start = Instant::now();
        loop {
            let now = std::fs::read_to_string(&file).map_err(io_err(&file))?;
            if now.trim() == state {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(5) {
                return Err(CgroupError::Timeout {
                    path: file,
                    what: "freezer state change",
                    ms: 5000,
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Renames the cgroup `old` to `new` (same parent) in every hierarchy. On failure some hierarchies
/// may have either name: the caller removes both.
pub fn rename(m: &Mounts, old: &str, new: &str) -> Result<(), CgroupError> {
    let (from, to) = (CgroupV1::open(m, old), CgroupV1::open(m, new));
    for (src, dst) in from.dirs().into_iter().zip(to.dirs()) {
        std::fs::rename(src, dst).map_err(io_err(src))?;
    }
    Ok(())
}

fn freezer_state(freezer: &Path) -> Result<String, CgroupError> {
    let file = freezer.join("freezer.state");
    std::fs::read_to_string(&file)
        .map(|s| s.trim().to_string())
        .map_err(io_err(&file))
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
        for dir in self.dirs() {
            write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.set_freezer("FROZEN")
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.set_freezer("THAWED")
    }

    fn oom_kills(&self) -> u64 {
        self.oom_kill_count().saturating_sub(self.oom_baseline)
    }

    fn memory_peak_bytes(&self) -> u64 {
        read_u64(&self.memory.join("memory.max_usage_in_bytes"))
            .unwrap_or(0)
            .saturating_sub(self.usage_baseline)
    }

    fn pids(&self) -> Vec<i32> {
        read_pids(&self.freezer.join("cgroup.procs"))
    }

    fn kill_all(&self) -> Result<(), CgroupError> {
        if !self.freezer.exists() {
            return Ok(());
        }
        // Freeze first so nothing can fork between reading the list and killing it.
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
