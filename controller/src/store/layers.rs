//! Layer versions: versioned zips that functions attach (unpacked under `/opt`). One column
//! family, `layers`: `name \0 version_u32_be` holds the version's JSON `LayerVersion`, and
//! `name \0` (the bare prefix) the highest number ever published, so numbers are never reused
//! (also after every version was deleted). A layer version uses its zip blob like a function does;
//! a function that attaches it counts as another user of the same blob (`FunctionConfig::layers`),
//! so deleting the layer version never takes the zip from a function that runs it (as in Lambda).
use std::ops::ControlFlow;

use lamina_proto::domain::{LayerVersion, Runtime};

use super::db::{Batch, Durability};
use super::error::StorageError;
use super::keys;
use super::rocks::{apply_counts, RocksStore};
use super::schema;
use super::table::{BeU32, Json, Start, Table};
use super::writers::lock;
use super::StoreError;

/// What `publish_layer_version` stores (the store assigns the number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLayerVersion {
    pub name: String,
    pub description: String,
    pub compatible_runtimes: Vec<Runtime>,
    pub code_sha256: String,
    pub unzipped_size: u64,
    pub created_ms: u64,
    pub license_info: String,
    pub compatible_architectures: Vec<String>,
}

pub trait LayerStore {
    /// Stores `zip` (deduplicated by digest) and the next version of layer `layer.name`,
    /// atomically. Synced.
    fn publish_layer_version(
        &self,
        layer: &NewLayerVersion,
        zip: &[u8],
    ) -> Result<LayerVersion, StoreError>;
    fn get_layer_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<LayerVersion>, StoreError>;
    /// The versions of one layer, ascending.
    fn list_layer_versions(&self, name: &str) -> Result<Vec<LayerVersion>, StoreError>;
    /// The newest version of every layer that has one, by name.
    fn list_layers(&self) -> Result<Vec<LayerVersion>, StoreError>;
    /// Deletes one version (its zip when nothing else uses it). `None` when there was none.
    /// Synced.
    fn delete_layer_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<LayerVersion>, StoreError>;
}

impl RocksStore {
    fn layers(&self) -> Table<'_, Json<LayerVersion>> {
        self.db.table(schema::LAYERS)
    }

    /// The same family's counters (`name \0`: the highest number ever published).
    fn layer_counters(&self) -> Table<'_, BeU32> {
        self.db.table(schema::LAYERS)
    }

    /// The zip digest of every layer version (for the blob reference counts at open).
    pub(super) fn all_layer_code_digests(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .layers()
            .values_with_prefix(b"", |k| keys::split_u32(k).is_some())?
            .into_iter()
            .map(|l| l.code_sha256)
            .collect())
    }
}

impl LayerStore for RocksStore {
    fn publish_layer_version(
        &self,
        layer: &NewLayerVersion,
        zip: &[u8],
    ) -> Result<LayerVersion, StoreError> {
        let mut refs = lock(&self.blob_refs);
        let number = self
            .layer_counters()
            .get(&keys::prefix(&layer.name))?
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| {
                self.db.corrupt(
                    format!("layer counter of `{}`", layer.name),
                    "no version number left",
                )
            })?;
        let version = LayerVersion {
            name: layer.name.clone(),
            version: number,
            description: layer.description.clone(),
            compatible_runtimes: layer.compatible_runtimes.clone(),
            code_sha256: layer.code_sha256.clone(),
            code_size: zip.len() as u64,
            unzipped_size: layer.unzipped_size,
            created_ms: layer.created_ms,
            license_info: layer.license_info.clone(),
            compatible_architectures: layer.compatible_architectures.clone(),
        };
        let mut batch = Batch::new();
        let stored_now = self.store_blob_in(&mut batch, &layer.code_sha256, zip)?;
        let counts = self.plan_refs(
            &refs,
            std::slice::from_ref(&layer.code_sha256),
            &[],
            stored_now,
            &mut batch,
        )?;
        self.layers()
            .put(&mut batch, keys::with_u32(&layer.name, number), &version)?;
        self.layer_counters()
            .put(&mut batch, keys::prefix(&layer.name), &number)?;
        self.db
            .write(&batch, Durability::Synced, "publish layer version")?;
        apply_counts(&mut refs, counts);
        Ok(version)
    }

    fn get_layer_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<LayerVersion>, StoreError> {
        Ok(self.layers().get(&keys::with_u32(name, version))?)
    }

    fn list_layer_versions(&self, name: &str) -> Result<Vec<LayerVersion>, StoreError> {
        Ok(self.layers().values_with_prefix(
            &keys::prefix(name),
            |k| matches!(keys::split_u32(k), Some((n, _)) if n == name),
        )?)
    }

    fn list_layers(&self) -> Result<Vec<LayerVersion>, StoreError> {
        let mut out: Vec<LayerVersion> = Vec::new();
        self.layers().walk(Start::First, |e| {
            if keys::split_u32(e.key()).is_some() {
                let layer = e.value()?;
                // Keys sort by name, then version: the last one of a name is its newest.
                match out.last_mut() {
                    Some(last) if last.name == layer.name => *last = layer,
                    _ => out.push(layer),
                }
            }
            Ok::<_, StorageError>(ControlFlow::Continue(()))
        })?;
        Ok(out)
    }

    fn delete_layer_version(
        &self,
        name: &str,
        version: u32,
    ) -> Result<Option<LayerVersion>, StoreError> {
        let mut refs = lock(&self.blob_refs);
        let Some(current) = self.get_layer_version(name, version)? else {
            return Ok(None);
        };
        let mut batch = Batch::new();
        self.layers()
            .delete(&mut batch, keys::with_u32(name, version));
        let counts = self.plan_refs(
            &refs,
            &[],
            std::slice::from_ref(&current.code_sha256),
            None,
            &mut batch,
        )?;
        self.db
            .write(&batch, Durability::Synced, "delete layer version")?;
        apply_counts(&mut refs, counts);
        Ok(Some(current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn new_layer(name: &str, zip: &[u8]) -> NewLayerVersion {
        use sha2::Digest;
        NewLayerVersion {
            name: name.to_string(),
            description: "d".to_string(),
            compatible_runtimes: vec![Runtime::Python311],
            code_sha256: hex::encode(sha2::Sha256::digest(zip)),
            unzipped_size: 10,
            created_ms: 1,
            license_info: String::new(),
            compatible_architectures: Vec::new(),
        }
    }

    /// A function of `name` with code `code` that attached `layers` (built from JSON: the fields
    /// this test does not care about take their defaults).
    fn function(
        name: &str,
        code: &[u8],
        layers: &[&LayerVersion],
    ) -> lamina_proto::domain::FunctionConfig {
        use sha2::Digest;
        serde_json::from_value(serde_json::json!({
            "spec": {
                "name": name, "runtime": "python3.11", "handler": "app.handler",
                "memory_mb": 128, "timeout_s": 3, "ephemeral_storage_mb": 512,
                "environment": {}, "description": "",
                "layers": layers.iter().map(|l| l.arn()).collect::<Vec<_>>(),
            },
            "code_sha256": hex::encode(sha2::Sha256::digest(code)),
            "code_size": code.len(), "revision_id": "r1", "version": "$LATEST",
            "last_modified_ms": 1,
            "layers": layers.iter().map(|l| serde_json::json!({
                "arn": l.arn(), "code_sha256": l.code_sha256,
                "code_size": l.code_size, "unzipped_size": l.unzipped_size,
            })).collect::<Vec<_>>(),
        }))
        .unwrap()
    }

    #[test]
    fn a_function_keeps_its_layer_zip_after_the_layer_version_goes() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), 10).unwrap();
        let layer = store
            .publish_layer_version(&new_layer("shared", b"layer-zip"), b"layer-zip")
            .unwrap();
        let f = function("f", b"code", &[&layer]);
        store.create_function(&f, b"code").unwrap();
        store.delete_layer_version("shared", 1).unwrap();
        assert!(
            store.get_blob(&layer.code_sha256).unwrap().is_some(),
            "the function still uses the zip"
        );
        drop(store);
        let store = RocksStore::open(dir.path(), 10).unwrap();
        assert!(
            store.get_blob(&layer.code_sha256).unwrap().is_some(),
            "counted again at open"
        );
        // Dropping the layer from the function releases the last use.
        let mut g = function("f", b"code", &[]);
        g.revision_id = "r2".into();
        store.update_function(&g, "r1", None).unwrap();
        assert!(store.get_blob(&layer.code_sha256).unwrap().is_none());
        // A deleted zip cannot be attached anew: nothing is written.
        let h = function("h", b"code", &[&layer]);
        let err = store.create_function(&h, b"code").unwrap_err();
        assert!(matches!(err, StoreError::BlobMissing(_)), "{err}");
        assert!(store.get_function("h").unwrap().is_none());
    }

    #[test]
    fn versions_count_up_and_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), 10).unwrap();
        let a = store
            .publish_layer_version(&new_layer("libs", b"zip-a"), b"zip-a")
            .unwrap();
        let b = store
            .publish_layer_version(&new_layer("libs", b"zip-b"), b"zip-b")
            .unwrap();
        store
            .publish_layer_version(&new_layer("libs-2", b"zip-a"), b"zip-a")
            .unwrap();
        assert_eq!((a.version, b.version), (1, 2));
        assert_eq!(
            b.arn(),
            "arn:aws:lambda:us-east-1:000000000000:layer:libs:2"
        );
        assert_eq!(store.list_layer_versions("libs").unwrap().len(), 2);
        let newest: Vec<(String, u32)> = store
            .list_layers()
            .unwrap()
            .into_iter()
            .map(|l| (l.name, l.version))
            .collect();
        assert_eq!(newest, [("libs".to_string(), 2), ("libs-2".to_string(), 1)]);
        assert!(store.delete_layer_version("libs", 2).unwrap().is_some());
        assert!(store.delete_layer_version("libs", 2).unwrap().is_none());
        assert!(
            store.get_blob(&b.code_sha256).unwrap().is_none(),
            "unused zip goes"
        );
        // zip-a is still used by libs-2:1 after libs:1 goes.
        store.delete_layer_version("libs", 1).unwrap();
        assert!(store.get_blob(&a.code_sha256).unwrap().is_some());
        let c = store
            .publish_layer_version(&new_layer("libs", b"zip-c"), b"zip-c")
            .unwrap();
        assert_eq!(c.version, 3, "numbers are never reused");
        drop(store);
        // Reference counts are rebuilt at open: the shared zip survives, nothing is orphaned.
        let store = RocksStore::open(dir.path(), 10).unwrap();
        assert!(store.get_blob(&a.code_sha256).unwrap().is_some());
        assert!(store.get_blob(&c.code_sha256).unwrap().is_some());
        store.delete_layer_version("libs-2", 1).unwrap();
        assert!(store.get_blob(&a.code_sha256).unwrap().is_none());
    }
}
