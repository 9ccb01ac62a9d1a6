//! One disk budget for the worker's caches (unzipped code and layers in `STATE_DIR/code`, unpacked
//! images in `STATE_DIR/images`). Every cached directory has a reference count — a [`CacheLease`]
//! held by each sandbox that binds it, so a directory in use by a live sandbox is never removed —
//! and a last-use stamp. When the cached bytes pass the budget (checked after each unpack and
//! periodically by the manager's reaper), the least recently used directories nobody holds are
//! evicted: renamed under the lock to a `.tmp-evict-*` name beside them (no lease can be taken on
//! them from then on, and a worker restart removes what is left of them), then removed without
//! following links.
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Default of `--cache-budget-mb`: 4 GiB of cached code, layers and images.
pub const DEFAULT_CACHE_BUDGET_MB: u64 = 4096;

#[derive(Debug)]
struct Entry {
    size: u64,
    /// Value of the index's clock at the last lease taken or given back.
    last_used: u64,
    refs: u32,
}

#[derive(Debug)]
struct Index {
    entries: HashMap<PathBuf, Entry>,
    clock: u64,
    budget: u64,
}

impl Index {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// The budget and the index of cached directories. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DiskBudget {
    index: Arc<Mutex<Index>>,
}

/// A reference on a cached directory: while it lives, the directory is not evicted.
#[derive(Debug)]
pub struct CacheLease {
    budget: DiskBudget,
    dir: PathBuf,
}

impl CacheLease {
    /// The cached directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for CacheLease {
    fn drop(&mut self) {
        let mut index = self.budget.lock();
        let now = index.tick();
        if let Some(e) = index.entries.get_mut(&self.dir) {
            e.refs = e.refs.saturating_sub(1);
            e.last_used = now;
        }
    }
}

impl DiskBudget {
    /// A budget of `budget_bytes` (0: keep only what live sandboxes use).
    pub fn new(budget_bytes: u64) -> DiskBudget {
        DiskBudget {
            index: Arc::new(Mutex::new(Index {
                entries: HashMap::new(),
                clock: 0,
                budget: budget_bytes,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A lease on `dir` if it is cached (it counts as used now).
    pub fn acquire(&self, dir: &Path) -> Option<CacheLease> {
        let mut index = self.lock();
        let now = index.tick();
        let e = index.entries.get_mut(dir)?;
        e.refs += 1;
        e.last_used = now;
        Some(CacheLease {
            budget: self.clone(),
            dir: dir.to_path_buf(),
        })
    }

    /// A lease on `dir` if it is cached, or if it is a finished directory on disk (finished
    /// unpacks only ever appear by rename), adopted then; `None`: it must be fetched.
    pub fn lease_cached(&self, dir: &Path) -> Option<CacheLease> {
        if let Some(lease) = self.acquire(dir) {
            return Some(lease);
        }
        dir.is_dir()
            .then(|| self.adopt_leased(dir.to_path_buf(), dir_size(dir)))
    }

    /// Records `dir`, just unpacked (`size` bytes), and leases it to the caller.
    pub fn insert(&self, dir: PathBuf, size: u64) -> CacheLease {
        let mut index = self.lock();
        let now = index.tick();
        index.entries.insert(
            dir.clone(),
            Entry {
                size,
                last_used: now,
                refs: 1,
            },
        );
        CacheLease {
            budget: self.clone(),
            dir,
        }
    }

    /// A lease on `dir`, a finished directory found on disk (`size` bytes), recorded if it was not.
    pub fn adopt_leased(&self, dir: PathBuf, size: u64) -> CacheLease {
        let mut index = self.lock();
        let now = index.tick();
        let e = index.entries.entry(dir.clone()).or_insert(Entry {
            size,
            last_used: now,
            refs: 0,
        });
        e.refs += 1;
        e.last_used = now;
        CacheLease {
            budget: self.clone(),
            dir,
        }
    }

    /// Records `dir`, found on disk at start, as cached and unused (least recent of all).
    pub fn adopt(&self, dir: PathBuf, size: u64) {
        self.lock().entries.entry(dir).or_insert(Entry {
            size,
            last_used: 0,
            refs: 0,
        });
    }

    /// True when the cached bytes pass the budget (an eviction may free some).
    pub fn over_budget(&self) -> bool {
        let index = self.lock();
        index.entries.values().map(|e| e.size).sum::<u64>() > index.budget
    }

    /// Bytes of every cached directory.
    pub fn used_bytes(&self) -> u64 {
        self.lock().entries.values().map(|e| e.size).sum()
    }

    /// Evicts unused directories, least recently used first, until the cached bytes fit the
    /// budget (blocking: it removes files). Returns the directories evicted.
    pub fn evict(&self) -> Vec<PathBuf> {
        let doomed: Vec<(PathBuf, PathBuf)> = {
            let mut index = self.lock();
            let mut used: u64 = index.entries.values().map(|e| e.size).sum();
            let mut unused: Vec<(u64, PathBuf, u64)> = index
                .entries
                .iter()
                .filter(|(_, e)| e.refs == 0)
                .map(|(p, e)| (e.last_used, p.clone(), e.size))
                .collect();
            unused.sort();
            let mut doomed = Vec::new();
            for (_, dir, size) in unused {
                if used <= index.budget {
                    break;
                }
                // Renamed while the lock is held: no lease can be taken on it any more.
                let grave =
                    dir.with_file_name(format!(".tmp-evict-{}", uuid::Uuid::new_v4().simple()));
                match fs::rename(&dir, &grave) {
                    Ok(()) => doomed.push((dir.clone(), grave)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(path = %dir.display(), error = %e, "cannot evict a cache directory");
                        continue;
                    }
                }
                index.entries.remove(&dir);
                used = used.saturating_sub(size);
            }
            doomed
        };
        let mut evicted = Vec::with_capacity(doomed.len());
        for (dir, grave) in doomed {
            // remove_dir_all never follows symlinks: a link inside a package removes only the link.
            if let Err(e) = fs::remove_dir_all(&grave) {
                tracing::warn!(path = %grave.display(), error = %e, "cannot remove an evicted cache directory");
            }
            tracing::info!(path = %dir.display(), "cache directory evicted (over the disk budget, unused)");
            evicted.push(dir);
        }
        evicted
    }
}

/// One fetch per key at a time (single flight): callers of the same key wait for the one running.
#[derive(Debug, Clone, Default)]
pub struct Flights(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl Flights {
    /// Runs `f` for `key` once no other call for `key` runs.
    pub async fn run<T, F: std::future::Future<Output = T>>(&self, key: &str, f: F) -> T {
        let flight = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let result = {
            let _guard = flight.lock().await;
            f.await
        };
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Only the map and the callers in flight hold it: dropped once nobody waits.
        if Arc::strong_count(&flight) == 2 {
            map.remove(key);
        }
        result
    }
}

/// Bytes of the regular files below `path` (links are not followed).
pub fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) if m.is_file() => total += m.len(),
                _ => {}
            }
        }
    }
    total
}

/// Adopts the finished cache directories under `root` whose names `is_key` accepts.
pub fn adopt_existing(budget: &DiskBudget, root: &Path, is_key: impl Fn(&str) -> bool) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_key(&name) && entry.file_type().is_ok_and(|t| t.is_dir()) {
            let p = entry.path();
            budget.adopt(p.clone(), dir_size(&p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(root: &Path, budget: &DiskBudget, name: &str, bytes: usize) -> CacheLease {
        let dir = root.join(name);
        fs::create_dir_all(dir.join("sub")).unwrap();
        fs::write(dir.join("sub/f"), vec![0u8; bytes]).unwrap();
        budget.insert(dir, bytes as u64)
    }

    #[test]
    fn evicts_least_recently_used_unused_directories_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let budget = DiskBudget::new(250);
        let a = cached(root, &budget, "a", 100);
        let b = cached(root, &budget, "b", 100);
        let c = cached(root, &budget, "c", 100);
        // All in use: over budget, nothing goes.
        assert!(budget.evict().is_empty());
        // b released first, then a: b is the least recently used.
        drop(b);
        drop(a);
        assert_eq!(budget.evict(), vec![root.join("b")]);
        assert!(!root.join("b").exists());
        assert!(root.join("a/sub/f").is_file() && root.join("c/sub/f").is_file());
        // A lease taken again makes `a` recent; with budget 250 and 200 used, nothing more goes.
        let a = budget.acquire(&root.join("a")).unwrap();
        assert!(budget.evict().is_empty());
        drop(a);
        drop(c);
        let tight = DiskBudget::new(0);
        let d = cached(root, &tight, "d", 10);
        drop(d);
        assert_eq!(tight.evict(), vec![root.join("d")]);
        assert!(tight.acquire(&root.join("d")).is_none());
        let leftovers: Vec<_> = fs::read_dir(root)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-evict-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn eviction_removes_links_not_their_targets() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"x").unwrap();
        let root = tmp.path().join("cache");
        fs::create_dir(&root).unwrap();
        let budget = DiskBudget::new(0);
        let lease = cached(&root, &budget, "e", 1);
        std::os::unix::fs::symlink(&outside, root.join("e/link")).unwrap();
        drop(lease);
        assert_eq!(budget.evict().len(), 1);
        assert!(outside.join("keep").is_file());
        assert_eq!(dir_size(&outside), 1);
    }
}
