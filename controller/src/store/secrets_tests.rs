use std::collections::BTreeMap;

use super::*;
use crate::crypto::MasterKey;
use crate::store::parameters::{ParameterStore, ParameterVersion, StoredValue};

fn record(name: &str, versions: &[(&str, &[&str])]) -> SecretRecord {
    SecretRecord {
        name: name.to_string(),
        arn: format!("arn:aws:secretsmanager:us-east-1:000000000000:secret:{name}-abcdef"),
        description: None,
        kms_key_id: None,
        tags: Vec::new(),
        created_ms: 1,
        last_changed_ms: 1,
        last_accessed_ms: None,
        deleted_ms: None,
        deletion_date_ms: None,
        rotation: None,
        last_rotated_ms: None,
        versions: versions
            .iter()
            .map(|(id, stages)| {
                (
                    id.to_string(),
                    SecretVersionMeta {
                        created_ms: 1,
                        stages: stages.iter().map(|s| s.to_string()).collect(),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>(),
    }
}

fn open() -> (tempfile::TempDir, RocksStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), 100).unwrap();
    (dir, store)
}

#[test]
fn a_secret_and_its_values_are_written_together_and_purged_together() {
    let (_dir, store) = open();
    let key = MasterKey::ephemeral();
    let value = SecretValue {
        binary: false,
        sealed: key.seal(b"aad", b"hunter2"),
    };
    let r = record("db/pass", &[("v1", &["AWSCURRENT"])]);
    store
        .write_secret(&r, &[("v1".to_string(), value.clone())], &[])
        .unwrap();
    // A secret whose name extends this one's is not in its range.
    let other = record("db/pass-2", &[("v1", &["AWSCURRENT"])]);
    store
        .write_secret(&other, &[("v1".to_string(), value.clone())], &[])
        .unwrap();
    assert_eq!(store.get_secret("db/pass").unwrap(), Some(r.clone()));
    assert_eq!(
        store.get_secret_value("db/pass", "v1").unwrap(),
        Some(value.clone())
    );
    assert_eq!(r.version_with_stage("AWSCURRENT"), Some("v1"));

    // A new version, the old one's value dropped in the same write.
    let r2 = record("db/pass", &[("v2", &["AWSCURRENT"])]);
    store
        .write_secret(
            &r2,
            &[("v2".to_string(), value.clone())],
            &["v1".to_string()],
        )
        .unwrap();
    assert_eq!(store.get_secret_value("db/pass", "v1").unwrap(), None);
    assert!(store.get_secret_value("db/pass", "v2").unwrap().is_some());

    assert!(store.purge_secret("db/pass").unwrap());
    assert!(!store.purge_secret("db/pass").unwrap());
    assert_eq!(store.get_secret("db/pass").unwrap(), None);
    assert_eq!(store.get_secret_value("db/pass", "v2").unwrap(), None);
    assert!(store.get_secret_value("db/pass-2", "v1").unwrap().is_some());
}

#[test]
fn secrets_list_in_name_order_from_a_marker_with_a_filter() {
    let (_dir, store) = open();
    for name in ["c", "a", "b", "d"] {
        store.write_secret(&record(name, &[]), &[], &[]).unwrap();
    }
    let names = |after: &str, limit: usize, skip: &str| -> Vec<String> {
        store
            .list_secrets(after, limit, &mut |r| r.name != skip)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect()
    };
    assert_eq!(names("", 10, ""), ["a", "b", "c", "d"]);
    assert_eq!(names("", 2, ""), ["a", "b"]);
    assert_eq!(names("b", 2, ""), ["c", "d"]);
    assert_eq!(names("", 2, "b"), ["a", "c"]);
    assert!(names("d", 2, "").is_empty());
}

fn param(name: &str, version: u64, value: &str) -> ParameterVersion {
    ParameterVersion {
        name: name.to_string(),
        version,
        kind: "String".to_string(),
        value: StoredValue::Plain(value.to_string()),
        description: None,
        key_id: None,
        allowed_pattern: None,
        tier: "Standard".to_string(),
        data_type: "text".to_string(),
        modified_ms: version,
        modified_user: "u".to_string(),
        labels: Vec::new(),
    }
}

#[test]
fn parameters_keep_their_versions_and_list_by_prefix() {
    let (_dir, store) = open();
    for v in 1..=4 {
        store
            .put_parameter_version(&param("/app/x", v, &format!("x{v}")), 0)
            .unwrap();
    }
    // Version 5 keeps versions 3.. only.
    store
        .put_parameter_version(&param("/app/x", 5, "x5"), 3)
        .unwrap();
    assert_eq!(store.get_parameter("/app/x").unwrap().unwrap().version, 5);
    assert_eq!(store.get_parameter_version("/app/x", 2).unwrap(), None);
    assert_eq!(
        store.get_parameter_version("/app/x", 4).unwrap(),
        Some(param("/app/x", 4, "x4"))
    );
    let history: Vec<u64> = store
        .parameter_history("/app/x", 0, 10)
        .unwrap()
        .iter()
        .map(|p| p.version)
        .collect();
    assert_eq!(history, [3, 4, 5]);
    let page: Vec<u64> = store
        .parameter_history("/app/x", 3, 1)
        .unwrap()
        .iter()
        .map(|p| p.version)
        .collect();
    assert_eq!(page, [4]);

    for name in ["/app/y", "/app/sub/z", "/apps", "/other"] {
        store
            .put_parameter_version(&param(name, 1, "v"), 0)
            .unwrap();
    }
    let list = |prefix: &str, after: &str, limit: usize| -> Vec<String> {
        store
            .list_parameters(prefix, after, limit, &mut |_| true)
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect()
    };
    assert_eq!(list("/app/", "", 10), ["/app/sub/z", "/app/x", "/app/y"]);
    assert_eq!(list("/app/", "/app/sub/z", 1), ["/app/x"]);
    assert_eq!(list("/app/", "/a", 10).len(), 3);

    assert!(store.delete_parameter("/app/x").unwrap());
    assert!(!store.delete_parameter("/app/x").unwrap());
    assert_eq!(store.get_parameter_version("/app/x", 4).unwrap(), None);
    assert!(store.parameter_history("/app/x", 0, 10).unwrap().is_empty());
}
