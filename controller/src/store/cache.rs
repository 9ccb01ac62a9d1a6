//! A read-through cache of the records an invocation resolves: `$LATEST`'s record, published
//! versions and aliases, per function, decoded once. Exactly coherent with RocksDB because every
//! write of those records goes through `RocksStore` in this process, under its writers' lock, and
//! ends with [`ConfigCache::invalidate`] of the function it touched.
//!
//! A reader that missed reads RocksDB and offers what it read with the generation it saw before
//! the read; the offer is dropped when a write invalidated anything meanwhile, so a value read
//! before a write can never be cached after it.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lamina_proto::domain::{Alias, FunctionConfig};

use super::writers::lock;

/// Past this many records the cache starts over (a bound on memory; the hot ones come back at
/// their next read).
const MAX_RECORDS: usize = 16_384;

#[derive(Default)]
struct Entry {
    latest: Option<Arc<FunctionConfig>>,
    versions: HashMap<u32, Arc<FunctionConfig>>,
    aliases: HashMap<String, Arc<Alias>>,
}

#[derive(Default)]
struct State {
    /// Grows at every invalidation.
    generation: u64,
    functions: HashMap<String, Entry>,
    records: usize,
}

/// The generation a reader saw before it read RocksDB (see the module comment).
#[derive(Debug, Clone, Copy)]
pub(super) struct Generation(u64);

#[derive(Default)]
pub(super) struct ConfigCache {
    state: Mutex<State>,
}

impl ConfigCache {
    pub(super) fn generation(&self) -> Generation {
        Generation(lock(&self.state).generation)
    }

    pub(super) fn latest(&self, name: &str) -> Option<Arc<FunctionConfig>> {
        lock(&self.state).functions.get(name)?.latest.clone()
    }

    pub(super) fn version(&self, name: &str, version: u32) -> Option<Arc<FunctionConfig>> {
        lock(&self.state)
            .functions
            .get(name)?
            .versions
            .get(&version)
            .cloned()
    }

    pub(super) fn alias(&self, name: &str, alias: &str) -> Option<Arc<Alias>> {
        lock(&self.state)
            .functions
            .get(name)?
            .aliases
            .get(alias)
            .cloned()
    }

    /// Runs `f` on the function's entry unless a write invalidated anything since `seen`; `f`
    /// tells whether it added a record.
    fn offer(&self, seen: Generation, name: &str, f: impl FnOnce(&mut Entry) -> bool) {
        let mut state = lock(&self.state);
        if state.generation != seen.0 {
            return;
        }
        if state.records >= MAX_RECORDS {
            state.functions.clear();
            state.records = 0;
        }
        let added = match state.functions.get_mut(name) {
            Some(e) => f(e),
            None => {
                let mut e = Entry::default();
                let added = f(&mut e);
                state.functions.insert(name.to_string(), e);
                added
            }
        };
        state.records += usize::from(added);
    }

    pub(super) fn offer_latest(&self, seen: Generation, name: &str, config: Arc<FunctionConfig>) {
        self.offer(seen, name, |e| e.latest.replace(config).is_none());
    }

    pub(super) fn offer_version(
        &self,
        seen: Generation,
        name: &str,
        version: u32,
        config: Arc<FunctionConfig>,
    ) {
        self.offer(seen, name, |e| e.versions.insert(version, config).is_none());
    }

    pub(super) fn offer_alias(&self, seen: Generation, alias: Arc<Alias>) {
        let name = alias.function_name.clone();
        self.offer(seen, &name, |e| {
            e.aliases.insert(alias.name.clone(), alias).is_none()
        });
    }

    /// Forgets everything cached of function `name` and refuses the offers of reads that started
    /// before. Call it after every write of the function's record, versions or settings, before
    /// the writer's lock is released.
    pub(super) fn invalidate(&self, name: &str) {
        let mut state = lock(&self.state);
        state.generation += 1;
        if let Some(e) = state.functions.remove(name) {
            let n = usize::from(e.latest.is_some()) + e.versions.len() + e.aliases.len();
            state.records = state.records.saturating_sub(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alias(function: &str, name: &str, version: &str) -> Arc<Alias> {
        Arc::new(Alias {
            function_name: function.to_string(),
            name: name.to_string(),
            function_version: version.to_string(),
            additional_version_weights: Default::default(),
            description: String::new(),
            revision_id: String::new(),
            last_modified_ms: 0,
        })
    }

    #[test]
    fn an_offer_read_before_a_write_is_refused() {
        let cache = ConfigCache::default();
        let seen = cache.generation();
        // A writer commits and invalidates while the reader reads RocksDB.
        cache.invalidate("f");
        cache.offer_alias(seen, alias("f", "live", "1"));
        assert!(cache.alias("f", "live").is_none());
        // A read that started after the write is kept.
        cache.offer_alias(cache.generation(), alias("f", "live", "2"));
        assert_eq!(cache.alias("f", "live").unwrap().function_version, "2");
        // Invalidation drops that function's records only.
        cache.offer_alias(cache.generation(), alias("g", "live", "7"));
        cache.invalidate("f");
        assert!(cache.alias("f", "live").is_none());
        assert_eq!(cache.alias("g", "live").unwrap().function_version, "7");
    }

    #[test]
    fn the_record_count_stays_bounded() {
        let cache = ConfigCache::default();
        for i in 0..MAX_RECORDS + 10 {
            cache.offer_alias(cache.generation(), alias(&format!("f{i}"), "a", "1"));
            // Replacing a record does not count it twice.
            cache.offer_alias(cache.generation(), alias(&format!("f{i}"), "a", "2"));
        }
        let records = lock(&cache.state).records;
        assert!(records <= MAX_RECORDS && records > 0, "{records}");
    }
}
