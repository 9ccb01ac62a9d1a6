//! cgroup v2: one unified hierarchy; controllers enabled top-down through `cgroup.subtree_control`.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{io_err, read_pids, rmdir_retry, write, Cgroup, CgroupError, Limits};

pub struct CgroupV2 {
    relative: String,
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
    pub fn open(root: &Path, relative: &str) -> CgroupV2 {
        CgroupV2 {
            relative: relative.to_string(),
            dir: root.join(relative),
        }
    }

    pub fn create(root: &Path, relative: &str, limits: &Limits) -> Result<CgroupV2, CgroupError> {
        // Enable the controllers on every ancestor so the leaf gets its interface files.
        let mut dir = root.to_path_buf();
        for part in relative.split('/').filter(|p| !p.is_empty()) {
            let control = dir.join("cgroup.subtree_control");
            write(&control, "+memory +cpu +pids")?;
            dir = dir.join(part);
            if !dir.exists() {
                std::fs::create_dir(&dir).map_err(io_err(&dir))?;
            }
        }
        let cg = CgroupV2::open(root, relative);
        cg.write_limits(limits)?;
        Ok(cg)
    }

    fn write_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        write(
            &self.dir.join("memory.max"),
            &limits.memory_bytes.to_string(),
        )?;
        let swap = self.dir.join("memory.swap.max");
        if swap.exists() {
            write(&swap, "0")?;
        }
        write(
            &self.dir.join("cpu.max"),
            &format!("{} {}", limits.cpu_quota_us, limits.cpu_period_us),
        )?;
        write(&self.dir.join("pids.max"), &limits.pids_max.to_string())
    }

    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        write(
            &self.dir.join("cgroup.freeze"),
            if frozen { "1" } else { "0" },
        )?;
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
        write(&self.dir.join("cgroup.procs"), &pid.to_string())
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
        read_pids(&self.dir.join("cgroup.procs"))
    }

    fn kill_all(&self) -> Result<(), CgroupError> {
        if !self.dir.exists() {
            return Ok(());
        }
        let kill = self.dir.join("cgroup.kill");
        if kill.exists() {
            write(&kill, "1")?;
        } else {
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
            if !kill.exists() {
                super::kill_pids(&self.pids());
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        Ok(())
    }

    fn remove(&self) -> Result<(), CgroupError> {
        rmdir_retry(&self.dir)
    }
}
