use std::collections::BTreeMap;

use lamina_proto::domain::{Alias, FunctionSpec, Runtime, LATEST};

use super::*;

fn config(name: &str, code: &[u8], revision: &str) -> FunctionConfig {
    use sha2::Digest;
    FunctionConfig {
        spec: FunctionSpec {
            name: name.to_string(),
            runtime: Runtime::Python311,
            handler: "app.handler".to_string(),
            memory_mb: 128,
            timeout_s: 3,
            ephemeral_storage_mb: 512,
            environment: BTreeMap::new(),
            description: "latest".to_string(),
            layers: Vec::new(),
            package_type: Default::default(),
            image_config: Default::default(),
            vpc_config: None,
            role: String::new(),
            logging: Default::default(),
        },
        code_sha256: hex::encode(sha2::Sha256::digest(code)),
        code_size: code.len() as u64,
        revision_id: revision.to_string(),
        version: LATEST.to_string(),
        last_modified_ms: 1,
        layers: Vec::new(),
        image: None,
    }
}

fn publish(revision: &str) -> PublishRequest {
    PublishRequest {
        description: String::new(),
        expected_code_sha256: None,
        expected_revision_id: None,
        new_revision_id: revision.to_string(),
        now_ms: 7,
    }
}

fn alias(function: &str, name: &str, version: &str) -> Alias {
    Alias {
        function_name: function.to_string(),
        name: name.to_string(),
        function_version: version.to_string(),
        additional_version_weights: BTreeMap::new(),
        description: String::new(),
        revision_id: "a1".to_string(),
        last_modified_ms: 2,
    }
}

fn numbers(v: Vec<FunctionConfig>) -> Vec<String> {
    v.into_iter().map(|c| c.version).collect()
}

#[test]
fn publish_snapshots_latest_with_a_new_revision() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), 100).unwrap();
    assert!(matches!(
        store.publish_version("f", &publish("v1")),
        Err(StoreError::FunctionNotFound(n)) if n == "f"
    ));
    let latest = config("f", b"code-1", "r1");
    store.create_function(&latest, b"code-1").unwrap();

    let mut req = publish("v1");
    req.description = "first".to_string();
    let p = store.publish_version("f", &req).unwrap();
    assert!(p.created);
    assert_eq!(p.config.version, "1");
    assert_eq!(p.config.revision_id, "v1");
    assert_eq!(p.config.spec.description, "first");
    assert_eq!(p.config.code_sha256, latest.code_sha256);
    assert_eq!(p.config.last_modified_ms, 7);
    assert_eq!(store.get_version("f", 1).unwrap(), Some(p.config.clone()));
    assert_eq!(store.get_version("f", 2).unwrap(), None);
    // $LATEST is untouched.
    assert_eq!(store.get_function("f").unwrap(), Some(latest));

    // Unchanged $LATEST: the same version, nothing written.
    let again = store.publish_version("f", &publish("other")).unwrap();
    assert!(!again.created);
    assert_eq!(again.config, p.config);
    assert_eq!(numbers(store.list_versions("f").unwrap()), ["1"]);

    // A configuration change publishes the next version.
    let mut changed = config("f", b"code-1", "r2");
    changed.spec.memory_mb = 256;
    store.update_function(&changed, "r1", None).unwrap();
    let p2 = store.publish_version("f", &publish("v2")).unwrap();
    assert!(p2.created);
    assert_eq!(p2.config.version, "2");
    assert_eq!(p2.config.spec.memory_mb, 256);
    assert_eq!(p2.config.spec.description, "latest");
    assert_eq!(numbers(store.list_versions("f").unwrap()), ["1", "2"]);
}

#[test]
fn publish_preconditions_name_the_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), 100).unwrap();
    store
        .create_function(&config("f", b"code", "r1"), b"code")
        .unwrap();
    let mut req = publish("v1");
    req.expected_revision_id = Some("r0".to_string());
    assert!(matches!(
        store.publish_version("f", &req),
        Err(StoreError::PublishPrecondition { field: "revision_id", ref actual, .. }) if actual == "r1"
    ));
    let mut req = publish("v1");
    req.expected_code_sha256 = Some("00".repeat(32));
    assert!(matches!(
        store.publish_version("f", &req),
        Err(StoreError::PublishPrecondition {
            field: "code_sha256",
            ..
        })
    ));
    assert_eq!(store.list_versions("f").unwrap(), []);
    req.expected_code_sha256 = Some(config("f", b"code", "r1").code_sha256);
    req.expected_revision_id = Some("r1".to_string());
    assert!(store.publish_version("f", &req).unwrap().created);
}

#[test]
fn a_version_keeps_its_blob_until_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), 100).unwrap();
    let v1 = config("f", b"code-1", "r1");
    store.create_function(&v1, b"code-1").unwrap();
    store.publish_version("f", &publish("v1")).unwrap();
    let v2 = config("f", b"code-2", "r2");
    store.update_function(&v2, "r1", Some(b"code-2")).unwrap();
    // $LATEST moved on, version 1 still runs code-1.
    assert_eq!(
        store.get_blob(&v1.code_sha256).unwrap().as_deref(),
        Some(&b"code-1"[..])
    );
    // Also after a reopen (reference counts rebuilt from both column families).
    drop(store);
    let store = RocksStore::open(dir.path(), 100).unwrap();
    assert!(store.get_blob(&v1.code_sha256).unwrap().is_some());
    let v3 = config("f", b"code-3", "r3");
    store.update_function(&v3, "r2", Some(b"code-3")).unwrap();
    assert!(store.get_blob(&v1.code_sha256).unwrap().is_some());
    assert!(store.get_blob(&v2.code_sha256).unwrap().is_none());

    // Refused while an alias routes to it, also as the additional version.
    let mut live = alias("f", "live", "$LATEST");
    live.additional_version_weights.insert("1".to_string(), 0.5);
    store.put_alias(&live).unwrap();
    assert!(matches!(
        store.delete_version("f", 1),
        Err(StoreError::VersionInUse { ref alias, .. }) if alias == "live"
    ));
    store.delete_alias("f", "live").unwrap();
    let gone = store.delete_version("f", 1).unwrap().unwrap();
    assert_eq!(gone.version, "1");
    assert_eq!(store.delete_version("f", 1).unwrap(), None);
    assert!(store.get_blob(&v1.code_sha256).unwrap().is_none());
    assert!(store.get_blob(&v3.code_sha256).unwrap().is_some());
}

#[test]
fn deleting_the_latest_version_keeps_its_number_used() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), 100).unwrap();
    store
        .create_function(&config("f", b"code", "r1"), b"code")
        .unwrap();
    store.publish_version("f", &publish("v1")).unwrap();
    store.delete_version("f", 1).unwrap().unwrap();
    // $LATEST is unchanged but its version is gone: a new one, with a new number.
    let p = store.publish_version("f", &publish("v2")).unwrap();
    assert!(p.created);
    assert_eq!(p.config.version, "2");
    // The code is still there ($LATEST and version 2 use it).
    assert!(store
        .get_blob(&config("f", b"code", "r1").code_sha256)
        .unwrap()
        .is_some());
    drop(store);
    let store = RocksStore::open(dir.path(), 100).unwrap();
    assert_eq!(numbers(store.list_versions("f").unwrap()), ["2"]);
    let mut changed = config("f", b"code", "r2");
    changed.spec.timeout_s = 9;
    store.update_function(&changed, "r1", None).unwrap();
    assert_eq!(
        store
            .publish_version("f", &publish("v3"))
            .unwrap()
            .config
            .version,
        "3"
    );
}

#[test]
fn deleting_the_function_deletes_its_versions_and_their_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), 100).unwrap();
    let a1 = config("f", b"code-1", "r1");
    store.create_function(&a1, b"code-1").unwrap();
    store.publish_version("f", &publish("v1")).unwrap();
    let a2 = config("f", b"code-2", "r2");
    store.update_function(&a2, "r1", Some(b"code-2")).unwrap();
    store.publish_version("f", &publish("v2")).unwrap();
    // A neighbour whose name starts the same, sharing code-1.
    let other = config("f-2", b"code-1", "r1");
    store.create_function(&other, b"code-1").unwrap();
    store.publish_version("f-2", &publish("o1")).unwrap();

    store.delete_function("f").unwrap().unwrap();
    assert_eq!(store.list_versions("f").unwrap(), []);
    assert_eq!(store.get_version("f", 1).unwrap(), None);
    assert!(store.get_blob(&a2.code_sha256).unwrap().is_none());
    assert!(store.get_blob(&a1.code_sha256).unwrap().is_some());
    assert_eq!(numbers(store.list_versions("f-2").unwrap()), ["1"]);

    // Numbering starts again for a new function of the same name.
    store.create_function(&a1, b"code-1").unwrap();
    assert_eq!(
        store
            .publish_version("f", &publish("n1"))
            .unwrap()
            .config
            .version,
        "1"
    );

    store.delete_function("f").unwrap();
    store.delete_function("f-2").unwrap();
    assert!(store.get_blob(&a1.code_sha256).unwrap().is_none());
    drop(store);
    let store = RocksStore::open(dir.path(), 100).unwrap();
    assert_eq!(store.list_versions("f-2").unwrap(), []);
}

#[test]
fn version_numbers_parse_strictly() {
    assert_eq!(parse_version_number("1"), Some(1));
    assert_eq!(parse_version_number("42"), Some(42));
    for bad in ["", "0", "01", "-1", "+1", "1a", "$LATEST", "99999999999"] {
        assert_eq!(parse_version_number(bad), None, "{bad}");
    }
}
