//! Per-function settings beside the function record: aliases, reserved concurrency, provisioned
//! concurrency configurations and tags. One column family, `function_settings`, keyed `name \0 kind \0 id`,
//! so all settings of a function form one range, deleted with the function in its batch.
use std::collections::BTreeMap;
use std::sync::Arc;

use lamina_proto::domain::{Alias, ProvisionedConfig};
use rocksdb::{WriteBatch, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::rocks::{lock, RocksStore};
use super::{Store, StoreError};

pub(super) const CF_SETTINGS: &str = "function_settings";

const KIND_ALIAS: &str = "alias";
const KIND_CONCURRENCY: &str = "concurrency";
const KIND_PROVISIONED: &str = "provisioned";
const KIND_TAGS: &str = "tags";

/// Settings that belong to a function and go when it goes. Writers fail with `FunctionNotFound`
/// when the function does not exist (checked under the store's writer lock, so a setting never
/// outlives its function).
pub trait SettingsStore {
    /// Creates or replaces the alias `alias.name` of `alias.function_name`. Synced.
    fn put_alias(&self, alias: &Alias) -> Result<(), StoreError>;
    fn get_alias(&self, function: &str, alias: &str) -> Result<Option<Alias>, StoreError>;
    /// The function's aliases sorted by name.
    fn list_aliases(&self, function: &str) -> Result<Vec<Alias>, StoreError>;
    /// `false` when there was no such alias. Synced.
    fn delete_alias(&self, function: &str, alias: &str) -> Result<bool, StoreError>;

    /// Sets (`Some`) or removes (`None`) the function's reserved concurrency. Synced.
    fn put_reserved_concurrency(
        &self,
        function: &str,
        reserved: Option<u32>,
    ) -> Result<(), StoreError>;
    fn get_reserved_concurrency(&self, function: &str) -> Result<Option<u32>, StoreError>;
    /// Every function with a reservation, sorted by name.
    fn list_reserved_concurrency(&self) -> Result<Vec<(String, u32)>, StoreError>;

    /// Creates or replaces the configuration for `config.qualifier`. Synced.
    fn put_provisioned(&self, config: &ProvisionedConfig) -> Result<(), StoreError>;
    fn get_provisioned(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<ProvisionedConfig>, StoreError>;
    /// The configurations of one function (`Some`) or of all (`None`), sorted by function and
    /// qualifier.
    fn list_provisioned(
        &self,
        function: Option<&str>,
    ) -> Result<Vec<ProvisionedConfig>, StoreError>;
    /// `false` when there was none. Synced.
    fn delete_provisioned(&self, function: &str, qualifier: &str) -> Result<bool, StoreError>;

    /// Replaces the function's tags (empty: removes them). Tags are not part of the function's
    /// configuration: setting them changes no revision. Synced.
    fn put_tags(&self, function: &str, tags: &BTreeMap<String, String>) -> Result<(), StoreError>;
    /// The function's tags (empty when none).
    fn get_tags(&self, function: &str) -> Result<BTreeMap<String, String>, StoreError>;
}

/// `name \0`: the start of every setting key of `name` (names never contain control bytes).
pub(super) fn function_prefix(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.push(0);
    k
}

/// `name \x01`: the first key after every setting key of `name`.
pub(super) fn function_prefix_end(name: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.push(1);
    k
}

/// `name \0 version_be`: the key of a numbered record of `name` (a function version, a layer
/// version); `name \0` alone holds the counter.
pub(super) fn version_key(name: &str, version: u32) -> Vec<u8> {
    let mut k = function_prefix(name);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

/// Splits `name \0 version_be`; `None` for a counter key (`name \0`) or anything else.
pub(super) fn parse_version_key(k: &[u8]) -> Option<(&str, u32)> {
    if k.len() < 5 || k[k.len() - 5] != 0 {
        return None;
    }
    let (name, rest) = k.split_at(k.len() - 5);
    let n = u32::from_be_bytes(rest[1..].try_into().ok()?);
    Some((std::str::from_utf8(name).ok()?, n))
}

fn key(name: &str, kind: &str, id: &str) -> Vec<u8> {
    let mut k = function_prefix(name);
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

/// Splits `name \0 kind \0 id`.
fn parse_key(k: &[u8]) -> Option<(&str, &str, &str)> {
    let s = std::str::from_utf8(k).ok()?;
    let mut parts = s.splitn(3, '\0');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

impl RocksStore {
    fn settings_cf(&self) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.cf(CF_SETTINGS)
    }

    fn put_setting<T: Serialize>(
        &self,
        name: &str,
        kind: &str,
        id: &str,
        value: Option<&T>,
    ) -> Result<(), StoreError> {
        // The function writers' lock: the function cannot be deleted between the check and the
        // write, which would leave this setting behind.
        let _writers = lock(&self.blob_refs);
        if self.get_function(name)?.is_none() {
            return Err(StoreError::FunctionNotFound(name.to_string()));
        }
        let mut batch = WriteBatch::default();
        let k = key(name, kind, id);
        match value {
            Some(v) => {
                let bytes = serde_json::to_vec(v).map_err(|e| StoreError::Corrupt {
                    what: format!("{kind} `{id}` of function `{name}`"),
                    path: self.path().to_path_buf(),
                    detail: e.to_string(),
                })?;
                batch.put_cf(self.settings_cf()?, k, bytes);
            }
            None => batch.delete_cf(self.settings_cf()?, k),
        }
        let written = self.db.write_opt(batch, &RocksStore::synced());
        self.cache.invalidate(name);
        written.map_err(self.rocks("write function setting"))
    }

    fn get_setting<T: DeserializeOwned>(
        &self,
        name: &str,
        kind: &str,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        let Some(bytes) = self
            .db
            .get_pinned_cf(self.settings_cf()?, key(name, kind, id))
            .map_err(self.rocks("read function setting"))?
        else {
            return Ok(None);
        };
        self.decode_setting(name, kind, id, &bytes).map(Some)
    }

    fn decode_setting<T: DeserializeOwned>(
        &self,
        name: &str,
        kind: &str,
        id: &str,
        bytes: &[u8],
    ) -> Result<T, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            what: format!("{kind} `{id}` of function `{name}`"),
            path: self.path().to_path_buf(),
            detail: e.to_string(),
        })
    }

    /// Settings of `kind`, of one function or of all, in key order.
    fn scan_settings<T: DeserializeOwned>(
        &self,
        name: Option<&str>,
        kind: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let db: &DB = &self.db;
        let mut it = db.raw_iterator_cf(self.settings_cf()?);
        let end = name.map(function_prefix_end);
        match name {
            Some(n) => it.seek(function_prefix(n)),
            None => it.seek_to_first(),
        }
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if end.as_deref().is_some_and(|e| k >= e) {
                break;
            }
            if let Some((function, k_kind, id)) = parse_key(k) {
                if k_kind == kind {
                    out.push((
                        function.to_string(),
                        self.decode_setting(function, kind, id, v)?,
                    ));
                }
            }
            it.next();
        }
        it.status().map_err(self.rocks("scan function settings"))?;
        Ok(out)
    }

    fn delete_setting(&self, name: &str, kind: &str, id: &str) -> Result<bool, StoreError> {
        let _writers = lock(&self.blob_refs);
        let k = key(name, kind, id);
        let present = self
            .db
            .get_pinned_cf(self.settings_cf()?, &k)
            .map_err(self.rocks("read function setting"))?
            .is_some();
        if present {
            let mut batch = WriteBatch::default();
            batch.delete_cf(self.settings_cf()?, k);
            let written = self.db.write_opt(batch, &RocksStore::synced());
            self.cache.invalidate(name);
            written.map_err(self.rocks("delete function setting"))?;
        }
        Ok(present)
    }
}

impl SettingsStore for RocksStore {
    fn put_alias(&self, alias: &Alias) -> Result<(), StoreError> {
        self.put_setting(&alias.function_name, KIND_ALIAS, &alias.name, Some(alias))
    }

    fn get_alias(&self, function: &str, alias: &str) -> Result<Option<Alias>, StoreError> {
        if let Some(a) = self.cache.alias(function, alias) {
            return Ok(Some(a.as_ref().clone()));
        }
        let seen = self.cache.generation();
        let found: Option<Alias> = self.get_setting(function, KIND_ALIAS, alias)?;
        if let Some(a) = &found {
            self.cache.offer_alias(seen, Arc::new(a.clone()));
        }
        Ok(found)
    }

    fn list_aliases(&self, function: &str) -> Result<Vec<Alias>, StoreError> {
        Ok(self
            .scan_settings(Some(function), KIND_ALIAS)?
            .into_iter()
            .map(|(_, a)| a)
            .collect())
    }

    fn delete_alias(&self, function: &str, alias: &str) -> Result<bool, StoreError> {
        self.delete_setting(function, KIND_ALIAS, alias)
    }

    fn put_reserved_concurrency(
        &self,
        function: &str,
        reserved: Option<u32>,
    ) -> Result<(), StoreError> {
        self.put_setting(function, KIND_CONCURRENCY, "", reserved.as_ref())
    }

    fn get_reserved_concurrency(&self, function: &str) -> Result<Option<u32>, StoreError> {
        self.get_setting(function, KIND_CONCURRENCY, "")
    }

    fn list_reserved_concurrency(&self) -> Result<Vec<(String, u32)>, StoreError> {
        self.scan_settings(None, KIND_CONCURRENCY)
    }

    fn put_provisioned(&self, config: &ProvisionedConfig) -> Result<(), StoreError> {
        self.put_setting(
            &config.function_name,
            KIND_PROVISIONED,
            &config.qualifier,
            Some(config),
        )
    }

    fn get_provisioned(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<ProvisionedConfig>, StoreError> {
        self.get_setting(function, KIND_PROVISIONED, qualifier)
    }

    fn list_provisioned(
        &self,
        function: Option<&str>,
    ) -> Result<Vec<ProvisionedConfig>, StoreError> {
        Ok(self
            .scan_settings(function, KIND_PROVISIONED)?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    fn delete_provisioned(&self, function: &str, qualifier: &str) -> Result<bool, StoreError> {
        self.delete_setting(function, KIND_PROVISIONED, qualifier)
    }

    fn put_tags(&self, function: &str, tags: &BTreeMap<String, String>) -> Result<(), StoreError> {
        self.put_setting(function, KIND_TAGS, "", (!tags.is_empty()).then_some(tags))
    }

    fn get_tags(&self, function: &str) -> Result<BTreeMap<String, String>, StoreError> {
        Ok(self
            .get_setting(function, KIND_TAGS, "")?
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lamina_proto::domain::{FunctionConfig, FunctionSpec, Runtime};

    use super::*;

    fn function(name: &str) -> FunctionConfig {
        FunctionConfig {
            spec: FunctionSpec {
                name: name.to_string(),
                runtime: Runtime::Python311,
                handler: "app.handler".to_string(),
                memory_mb: 128,
                timeout_s: 3,
                ephemeral_storage_mb: 512,
                environment: BTreeMap::new(),
                description: String::new(),
                layers: Vec::new(),
                package_type: Default::default(),
                image_config: Default::default(),
                vpc_config: None,
                role: String::new(),
                logging: Default::default(),
            },
            code_sha256: "ab".repeat(32),
            code_size: 3,
            revision_id: "r1".to_string(),
            version: "$LATEST".to_string(),
            last_modified_ms: 1,
            layers: Vec::new(),
            image: None,
        }
    }

    fn alias(function: &str, name: &str, version: &str) -> Alias {
        Alias {
            function_name: function.to_string(),
            name: name.to_string(),
            function_version: version.to_string(),
            additional_version_weights: BTreeMap::from([("2".to_string(), 0.25)]),
            description: String::new(),
            revision_id: "a1".to_string(),
            last_modified_ms: 2,
        }
    }

    #[test]
    fn settings_need_their_function_and_go_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), 100).unwrap();
        assert!(matches!(
            store.put_alias(&alias("f", "live", "1")),
            Err(StoreError::FunctionNotFound(_))
        ));
        store.create_function(&function("f"), b"zip").unwrap();
        store.create_function(&function("f-2"), b"zip").unwrap();
        store.put_alias(&alias("f", "live", "1")).unwrap();
        store.put_alias(&alias("f", "beta", "2")).unwrap();
        store.put_alias(&alias("f-2", "live", "1")).unwrap();
        store.put_reserved_concurrency("f", Some(5)).unwrap();
        store.put_reserved_concurrency("f-2", Some(0)).unwrap();
        store
            .put_provisioned(&ProvisionedConfig {
                function_name: "f".to_string(),
                qualifier: "live".to_string(),
                requested: 3,
                last_modified_ms: 3,
            })
            .unwrap();

        assert_eq!(
            store.get_alias("f", "live").unwrap(),
            Some(alias("f", "live", "1"))
        );
        let names: Vec<String> = store
            .list_aliases("f")
            .unwrap()
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, ["beta", "live"]);
        assert_eq!(store.get_reserved_concurrency("f").unwrap(), Some(5));
        assert_eq!(
            store.list_reserved_concurrency().unwrap(),
            [("f".to_string(), 5), ("f-2".to_string(), 0)]
        );
        assert_eq!(store.list_provisioned(None).unwrap().len(), 1);
        assert_eq!(
            store
                .get_provisioned("f", "live")
                .unwrap()
                .unwrap()
                .requested,
            3
        );

        store.put_reserved_concurrency("f-2", None).unwrap();
        assert_eq!(store.get_reserved_concurrency("f-2").unwrap(), None);
        assert!(store.delete_alias("f", "beta").unwrap());
        assert!(!store.delete_alias("f", "beta").unwrap());

        let tags = BTreeMap::from([("team".to_string(), "a".to_string())]);
        store.put_tags("f", &tags).unwrap();
        store.put_tags("f-2", &tags).unwrap();
        assert_eq!(store.get_tags("f").unwrap(), tags);
        assert!(matches!(
            store.put_tags("nope", &tags),
            Err(StoreError::FunctionNotFound(_))
        ));

        store.delete_function("f").unwrap();
        assert_eq!(store.get_tags("f").unwrap(), BTreeMap::new());
        assert_eq!(store.get_tags("f-2").unwrap(), tags);
        store.put_tags("f-2", &BTreeMap::new()).unwrap();
        assert_eq!(store.get_tags("f-2").unwrap(), BTreeMap::new());
        assert_eq!(store.list_aliases("f").unwrap(), []);
        assert_eq!(store.get_reserved_concurrency("f").unwrap(), None);
        assert_eq!(store.list_provisioned(None).unwrap(), []);
        // The neighbour whose name starts the same keeps its own.
        assert_eq!(store.list_aliases("f-2").unwrap().len(), 1);

        // Durable across a reopen.
        drop(store);
        let store = RocksStore::open(dir.path(), 100).unwrap();
        assert_eq!(
            store.get_alias("f-2", "live").unwrap(),
            Some(alias("f-2", "live", "1"))
        );
    }
}
