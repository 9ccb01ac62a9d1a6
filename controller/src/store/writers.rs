//! How writers are serialised: a read-modify-write (read what the write depends on, check it,
//! write one batch) runs under a lock that every writer of that state takes. Two shapes:
//!
//! - [`lock`]: one process-wide writer lock of a kind of state (a `std::sync::Mutex`, held on a
//!   blocking thread for the read, the check and the write);
//! - [`KeyedLocks`]: writers of the same key run one at a time, writers of other keys in parallel
//!   (an async lock, held across the awaited group commit).
//!
//! Which state uses which lock: `store/README.md` ("Writers").
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

/// Locks `m`. A panic while holding a writer lock cannot leave the database inconsistent (a
/// batch is written whole or not at all), and the in-memory state it guards is re-read or
/// rebuilt: keep serving rather than poison every later writer.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fixed set of async locks, one taken per key (keys hashing to one stripe share it).
pub struct KeyedLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl KeyedLocks {
    pub fn new(stripes: usize) -> KeyedLocks {
        KeyedLocks {
            stripes: (0..stripes.max(1))
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// Waits until no other writer of `key` (or of a key of the same stripe) holds its lock.
    pub async fn lock(&self, key: &[u8]) -> tokio::sync::MutexGuard<'_, ()> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let stripe = (h.finish() as usize) % self.stripes.len();
        self.stripes[stripe].lock().await
    }
}
