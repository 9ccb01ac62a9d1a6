//! Host uids for functions: each function gets its own unprivileged uid from the configured range
//! (`--uid-base`, `--uid-count`), never shared with another function and never root. Assignments are
//! kept in `STATE_DIR/uids.json` so a function keeps its uid across worker restarts (files it wrote in
//! a still-cached code directory or elsewhere stay its own).
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Uids below this are system users on every distribution; functions never get one.
pub const MIN_UID_BASE: u32 = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum UidError {
    #[error("uid range {base}..{end} is exhausted by {count} functions: raise --uid-count")]
    Exhausted { base: u32, end: u64, count: usize },
    #[error("cannot save uid assignments to {path}: {source}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
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
