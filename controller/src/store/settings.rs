//! Per-function settings beside the function record: aliases, reserved concurrency, provisioned
//! concurrency configurations, tags and resource-based policies (one per qualifier). One column family, `function_settings`, keyed `name \0 kind \0 id`,
//! so all settings of a function form one range, deleted with the function in its batch.
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use lamina_proto::domain::{Alias, ProvisionedConfig};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::db::Batch;
use super::error::StorageError;
use super::keys;
use super::rocks::RocksStore;
use super::schema;
use super::table::{Json, Start, Table};
use super::writers::lock;
use super::{Store, StoreError};

const KIND_ALIAS: &str = "alias";
const KIND_CONCURRENCY: &str = "concurrency";
const KIND_PROVISIONED: &str = "provisioned";
const KIND_TAGS: &str = "tags";
const KIND_POLICY: &str = "policy";

/// A function's resource-based policy (for one qualifier, or the unqualified function): the
/// document as `GetPolicy` returns it and its own revision id (`AddPermission`'s and
/// `RemovePermission`'s `RevisionId`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionPolicy {
    pub policy: String,
    pub revision_id: String,
}

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

    /// Sets (`Some`) or removes (`None`) the resource policy of `function` for `qualifier` (`""`:
    /// the unqualified function). Synced.
    fn put_function_policy(
        &self,
        function: &str,
        qualifier: &str,
        policy: Option<&FunctionPolicy>,
    ) -> Result<(), StoreError>;
    fn get_function_policy(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<FunctionPolicy>, StoreError>;
}

fn key(name: &str, kind: &str, id: &str) -> Vec<u8> {
    let mut k = keys::prefix(name);
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
    /// The settings family, values decoded as `T` (each kind has its own type).
    fn settings<T: Serialize + DeserializeOwned>(&self) -> Table<'_, Json<T>> {
        self.db.table(schema::SETTINGS)
    }

    /// Adds the deletion of every setting of `name` to `batch` (the function goes).
    pub(super) fn delete_settings_in(&self, name: &str, batch: &mut Batch<'_>) {
        self.settings::<serde_json::Value>().delete_range(
            batch,
            keys::prefix(name),
            keys::prefix_end(name),
        );
    }

    fn put_setting<T: Serialize + DeserializeOwned>(
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
        let mut batch = Batch::new();
        let k = key(name, kind, id);
        match value {
            Some(v) => self.settings::<T>().put(&mut batch, k, v)?,
            None => self.settings::<T>().delete(&mut batch, k),
        }
        self.write_function_batch(name, &batch, "write function setting")
    }

    fn get_setting<T: Serialize + DeserializeOwned>(
        &self,
        name: &str,
        kind: &str,
        id: &str,
    ) -> Result<Option<T>, StoreError> {
        Ok(self.settings::<T>().get(&key(name, kind, id))?)
    }

    /// Settings of `kind`, of one function or of all, in key order.
    fn scan_settings<T: Serialize + DeserializeOwned>(
        &self,
        name: Option<&str>,
        kind: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let prefix = name.map(keys::prefix);
        let start = match &prefix {
            Some(p) => Start::At(p),
            None => Start::First,
        };
        let mut out = Vec::new();
        self.settings::<T>().walk(start, |e| {
            if prefix.as_deref().is_some_and(|p| !e.key().starts_with(p)) {
                return Ok::<_, StorageError>(ControlFlow::Break(()));
            }
            if let Some((function, k_kind, _)) = parse_key(e.key()) {
                if k_kind == kind {
                    out.push((function.to_string(), e.value()?));
                }
            }
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    fn delete_setting(&self, name: &str, kind: &str, id: &str) -> Result<bool, StoreError> {
        let _writers = lock(&self.blob_refs);
        let k = key(name, kind, id);
        let settings = self.settings::<serde_json::Value>();
        let present = settings.contains(&k)?;
        if present {
            let mut batch = Batch::new();
            settings.delete(&mut batch, k);
            // An alias's function URL goes with the alias, in the same batch.
            let url = match kind {
                KIND_ALIAS => self.delete_alias_url_in(name, id, &mut batch)?,
                _ => None,
            };
            self.write_function_batch(name, &batch, "delete function setting")?;
            self.gateway.forget_urls(url.as_slice());
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

    fn put_function_policy(
        &self,
        function: &str,
        qualifier: &str,
        policy: Option<&FunctionPolicy>,
    ) -> Result<(), StoreError> {
        self.put_setting(function, KIND_POLICY, qualifier, policy)
    }

    fn get_function_policy(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<FunctionPolicy>, StoreError> {
        self.get_setting(function, KIND_POLICY, qualifier)
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
    fn resource_policies_are_per_qualifier_and_go_with_the_function() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), 100).unwrap();
        let p = |text: &str| FunctionPolicy {
            policy: text.to_string(),
            revision_id: format!("rev-{text}"),
        };
        assert!(matches!(
            store.put_function_policy("f", "", Some(&p("a"))),
            Err(StoreError::FunctionNotFound(_))
        ));
        store.create_function(&function("f"), b"zip").unwrap();
        store.put_function_policy("f", "", Some(&p("a"))).unwrap();
        store
            .put_function_policy("f", "live", Some(&p("b")))
            .unwrap();
        assert_eq!(store.get_function_policy("f", "").unwrap(), Some(p("a")));
        assert_eq!(
            store.get_function_policy("f", "live").unwrap(),
            Some(p("b"))
        );
        assert_eq!(store.get_function_policy("f", "2").unwrap(), None);
        store.put_function_policy("f", "live", None).unwrap();
        assert_eq!(store.get_function_policy("f", "live").unwrap(), None);
        store.delete_function("f").unwrap();
        store.create_function(&function("f"), b"zip").unwrap();
        assert_eq!(store.get_function_policy("f", "").unwrap(), None);
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
