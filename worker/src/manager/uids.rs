//! Host uids for functions: each function gets its own unprivileged uid from the configured range
//! (`--uid-base`, `--uid-count`), never shared with another function and never root. Assignments are
//! kept in `STATE_DIR/uids.json` so a function keeps its uid across worker restarts (files it wrote in
//! a still-cached code directory or elsewhere stay its own).
//!
//! Two workers on one host must never hand out the same uid (a function of one could signal or
//! read the files of a function of the other). Each worker holds its range with a [`UidRangeLock`]:
//! an exclusive `flock` on a file per range under [`LOCK_DIR`], taken at start after checking the
//! range against every live one (a file whose lock nobody holds is a dead worker's: removed), and
//! released when the process exits, however it exits. An explicit `--uid-base` that overlaps a
//! live range is refused naming the other worker; without one, the first free range of
//! `--uid-count` uids from [`DEFAULT_UID_BASE`] is taken (the one this state directory had last
//! time when it is free, so that `uids.json` stays valid).
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::{Flock, FlockArg};

/// Uids below this are system users on every distribution; functions never get one.
pub const MIN_UID_BASE: u32 = 65_536;
/// Where the default range search starts.
pub const DEFAULT_UID_BASE: u32 = 200_000;
/// The host-wide directory of uid range locks (shared by every worker on the host).
pub const LOCK_DIR: &str = "/run/lamina/uid-ranges";
/// `STATE_DIR/uid-range`: the base this worker took last (tried first by the default).
pub const LAST_RANGE_FILE: &str = "uid-range";

#[derive(Debug, thiserror::Error)]
pub enum UidError {
    #[error("uid range {base}..{end} is exhausted by {count} functions: raise --uid-count")]
    Exhausted { base: u32, end: u64, count: usize },
    #[error("cannot save uid assignments to {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "uid range {base}..{end} overlaps range {other_base}..{other_end} of worker `{other_worker}` \
         (pid {other_pid}, state dir {other_state_dir}) on this host: pass a --uid-base outside it, \
         or leave --uid-base out to take a free range"
    )]
    Overlap {
        base: u32,
        end: u64,
        other_base: u32,
        other_end: u64,
        other_worker: String,
        other_pid: u32,
        other_state_dir: String,
    },
    #[error(
        "no free range of {count} uids above {DEFAULT_UID_BASE} on this host: lower --uid-count"
    )]
    NoFreeRange { count: u32 },
    #[error("cannot lock uid ranges in {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Who holds a range, as written in its lock file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RangeHolder {
    pub worker_id: String,
    pub pid: u32,
    pub state_dir: String,
    pub base: u32,
    pub count: u32,
}

impl RangeHolder {
    fn end(&self) -> u64 {
        u64::from(self.base) + u64::from(self.count)
    }

    fn overlaps(&self, base: u32, count: u32) -> bool {
        u64::from(base) < self.end() && u64::from(self.base) < u64::from(base) + u64::from(count)
    }
}

/// This worker's hold on its uid range (released when dropped or when the process exits).
#[derive(Debug)]
pub struct UidRangeLock {
    base: u32,
    count: u32,
    path: PathBuf,
    _lock: Flock<File>,
}

impl UidRangeLock {
    /// Takes the range `base` (explicit) or the first free one of `count` uids (tried first:
    /// `preferred`) in the lock directory `dir`, as worker `worker_id` of `state_dir`.
    pub fn acquire(
        dir: &Path,
        base: Option<u32>,
        count: u32,
        preferred: Option<u32>,
        worker_id: &str,
        state_dir: &Path,
    ) -> Result<UidRangeLock, UidError> {
        let io = |source| UidError::Lock {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        // Claims are serialised by the directory's own lock: no two workers check and take at once.
        let guard = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(".lock"))
            .map_err(io)?;
        let _guard = Flock::lock(guard, FlockArg::LockExclusive).map_err(|(_, e)| io(e.into()))?;
        let live = live_ranges(dir).map_err(io)?;
        let base = match base {
            Some(base) => {
                if let Some(h) = live.iter().find(|h| h.overlaps(base, count)) {
                    return Err(UidError::Overlap {
                        base,
                        end: u64::from(base) + u64::from(count),
                        other_base: h.base,
                        other_end: h.end(),
                        other_worker: h.worker_id.clone(),
                        other_pid: h.pid,
                        other_state_dir: h.state_dir.clone(),
                    });
                }
                base
            }
            None => free_base(&live, count, preferred).ok_or(UidError::NoFreeRange { count })?,
        };
        let holder = RangeHolder {
            worker_id: worker_id.to_string(),
            pid: std::process::id(),
            state_dir: state_dir.display().to_string(),
            base,
            count,
        };
        let path = dir.join(format!("{base}-{}.range", holder.end()));
        let file = File::options()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        let mut lock =
            Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| io(e.into()))?;
        let json = serde_json::to_vec(&holder).expect("a struct of strings and numbers");
        lock.write_all(&json).map_err(io)?;
        Ok(UidRangeLock {
            base,
            count,
            path,
            _lock: lock,
        })
    }

    pub fn base(&self) -> u32 {
        self.base
    }

    pub fn count(&self) -> u32 {
        self.count
    }
}

impl Drop for UidRangeLock {
    fn drop(&mut self) {
        // The lock itself goes with the descriptor; the file is removed as a courtesy (a leftover
        // one is recognised as stale by the next worker).
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::debug!(path = %self.path.display(), error = %e, "cannot remove the uid range lock file");
        }
    }
}

/// The ranges whose lock is held (by a live worker); files nobody holds are removed.
fn live_ranges(dir: &Path) -> std::io::Result<Vec<RangeHolder>> {
    let mut live = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "range") {
            continue;
        }
        let file = match File::options().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(stale) => {
                // Its worker is gone: nobody holds it (and nobody takes it: we hold `.lock`).
                tracing::info!(path = %path.display(), "removing a stale uid range lock");
                std::fs::remove_file(&path)?;
                drop(stale);
            }
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                file.read_to_string(&mut text)?;
                match serde_json::from_str::<RangeHolder>(&text) {
                    Ok(h) => live.push(h),
                    Err(e) => {
                        return Err(std::io::Error::other(format!(
                            "{} is held but unreadable ({e}): remove it if no worker runs",
                            path.display()
                        )))
                    }
                }
            }
            Err((_, e)) => return Err(e.into()),
        }
    }
    Ok(live)
}

/// The first base (`preferred`, else `DEFAULT_UID_BASE + k * count`) whose range overlaps no live
/// one and fits in 32 bits.
fn free_base(live: &[RangeHolder], count: u32, preferred: Option<u32>) -> Option<u32> {
    let fits = |b: u32| u64::from(b) + u64::from(count) <= u64::from(u32::MAX);
    let free = |b: u32| b >= MIN_UID_BASE && fits(b) && !live.iter().any(|h| h.overlaps(b, count));
    if let Some(b) = preferred.filter(|b| free(*b)) {
        return Some(b);
    }
    (0u64..)
        .map(|k| u64::from(DEFAULT_UID_BASE) + k * u64::from(count.max(1)))
        .take_while(|b| *b + u64::from(count) <= u64::from(u32::MAX))
        .map(|b| b as u32)
        .find(|b| free(*b))
}

pub struct UidAllocator {
    base: u32,
    count: u32,
    file: PathBuf,
    assigned: Mutex<BTreeMap<String, u32>>,
}

impl UidAllocator {
    /// Loads earlier assignments from `file` (a missing or unreadable file starts empty; entries
    /// outside the range are dropped).
    pub fn load(base: u32, count: u32, file: PathBuf) -> UidAllocator {
        let end = u64::from(base) + u64::from(count);
        let assigned: BTreeMap<String, u32> = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let assigned = assigned
            .into_iter()
            .filter(|(_, uid)| *uid >= base && u64::from(*uid) < end)
            .collect();
        UidAllocator {
            base,
            count,
            file,
            assigned: Mutex::new(assigned),
        }
    }

    /// The function's uid, assigning the lowest free one the first time.
    pub fn uid_for(&self, function: &str) -> Result<u32, UidError> {
        let mut assigned = self.assigned.lock().expect("uid map poisoned");
        if let Some(uid) = assigned.get(function) {
            return Ok(*uid);
        }
        let used: std::collections::BTreeSet<u32> = assigned.values().copied().collect();
        let uid = (self.base..self.base.saturating_add(self.count))
            .find(|u| !used.contains(u))
            .ok_or(UidError::Exhausted {
                base: self.base,
                end: u64::from(self.base) + u64::from(self.count),
                count: assigned.len(),
            })?;
        assigned.insert(function.to_string(), uid);
        let json = serde_json::to_vec_pretty(&*assigned).expect("a map of strings to numbers");
        let tmp = self.file.with_extension("json.tmp");
        let save = std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, &self.file));
        if let Err(source) = save {
            assigned.remove(function);
            return Err(UidError::Save {
                path: self.file.clone(),
                source,
            });
        }
        Ok(uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(dir: &Path, base: Option<u32>, count: u32, id: &str) -> Result<UidRangeLock, UidError> {
        UidRangeLock::acquire(dir, base, count, None, id, Path::new("/state"))
    }

    #[test]
    fn overlapping_ranges_are_refused_naming_the_other_worker() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().join("ranges");
        let a = take(&dir, Some(300_000), 1000, "w-a").unwrap();
        let err = take(&dir, Some(300_999), 10, "w-b")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("300999..301009 overlaps range 300000..301000"),
            "{err}"
        );
        assert!(err.contains("worker `w-a`"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        let err = take(&dir, Some(299_000), 1001, "w-b")
            .unwrap_err()
            .to_string();
        assert!(err.contains("w-a"), "{err}");
        // Disjoint on both sides.
        let b = take(&dir, Some(301_000), 10, "w-b").unwrap();
        let c = take(&dir, Some(299_000), 1000, "w-c").unwrap();
        assert_eq!((b.base(), c.base()), (301_000, 299_000));
        // Released on drop: the range can be taken again.
        drop(a);
        let again = take(&dir, Some(300_500), 10, "w-d").unwrap();
        assert_eq!(again.count(), 10);
    }

    #[test]
    fn the_default_takes_the_first_free_range_and_prefers_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let a = take(dir, None, 65_536, "w-a").unwrap();
        assert_eq!(a.base(), DEFAULT_UID_BASE);
        let b = take(dir, None, 65_536, "w-b").unwrap();
        assert_eq!(b.base(), DEFAULT_UID_BASE + 65_536);
        // An explicit range in the way is skipped.
        let c = take(dir, Some(DEFAULT_UID_BASE + 2 * 65_536 + 5), 10, "w-c").unwrap();
        let d = take(dir, None, 65_536, "w-d").unwrap();
        assert_eq!(d.base(), DEFAULT_UID_BASE + 3 * 65_536);
        drop((a, c));
        let e = UidRangeLock::acquire(
            dir,
            None,
            65_536,
            Some(DEFAULT_UID_BASE + 7 * 65_536),
            "w-e",
            Path::new("/s"),
        )
        .unwrap();
        assert_eq!(e.base(), DEFAULT_UID_BASE + 7 * 65_536);
        // A preferred range that is taken is not used.
        let f = UidRangeLock::acquire(dir, None, 65_536, Some(d.base()), "w-f", Path::new("/s"))
            .unwrap();
        assert_eq!(f.base(), DEFAULT_UID_BASE);
        drop(b);
    }

    #[test]
    fn a_dead_workers_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        // What a killed worker leaves: the file, nobody holding its lock.
        let holder = RangeHolder {
            worker_id: "w-dead".into(),
            pid: 1,
            state_dir: "/gone".into(),
            base: 400_000,
            count: 100,
        };
        let stale = dir.join("400000-400100.range");
        std::fs::write(&stale, serde_json::to_vec(&holder).unwrap()).unwrap();
        let a = take(dir, Some(400_000), 100, "w-a").unwrap();
        assert_eq!(a.base(), 400_000);
        // The held file is a live range now.
        let err = take(dir, Some(400_050), 1, "w-b").unwrap_err().to_string();
        assert!(err.contains("w-a"), "{err}");
    }

    #[test]
    fn distinct_per_function_stable_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("uids.json");
        let a = UidAllocator::load(200_000, 3, file.clone());
        let ua = a.uid_for("a").unwrap();
        let ub = a.uid_for("b").unwrap();
        assert_ne!(ua, ub);
        assert_eq!(a.uid_for("a").unwrap(), ua);
        assert!((200_000..200_003).contains(&ua));
        let again = UidAllocator::load(200_000, 3, file);
        assert_eq!(again.uid_for("b").unwrap(), ub);
        assert_eq!(again.uid_for("c").unwrap(), 200_002);
        let err = again.uid_for("d").unwrap_err();
        assert!(err.to_string().contains("raise --uid-count"), "{err}");
    }
}
