use std::collections::BTreeMap;

use lamina_proto::domain::{FunctionConfig, FunctionSpec, Runtime, LATEST};

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
            environment: BTreeMap::from([("K".to_string(), "v".to_string())]),
            description: String::new(),
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

fn line(i: usize) -> NewLogEvent {
    NewLogEvent {
        timestamp_ms: i as u64,
        request_id: format!("req-{i}"),
        message: format!("line {i}"),
    }
}

#[test]
fn functions_and_blobs_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let a = config("alpha", b"code-a", "r1");
    let b = config("beta", b"code-a", "r1");
    {
        let store = RocksStore::open(dir.path(), 100).unwrap();
        store.create_function(&a, b"code-a").unwrap();
        store.create_function(&b, b"code-a").unwrap();
        assert!(matches!(
            store.create_function(&a, b"code-a"),
            Err(StoreError::FunctionExists(n)) if n == "alpha"
        ));
    }
    let store = RocksStore::open(dir.path(), 100).unwrap();
    assert_eq!(store.get_function("alpha").unwrap(), Some(a.clone()));
    assert_eq!(store.get_function("nope").unwrap(), None);
    assert_eq!(
        store.get_blob(&a.code_sha256).unwrap().as_deref(),
        Some(&b"code-a"[..])
    );
    let names = |v: Vec<FunctionConfig>| v.into_iter().map(|f| f.spec.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_functions("", 10).unwrap()),
        ["alpha", "beta"]
    );
    assert_eq!(names(store.list_functions("", 1).unwrap()), ["alpha"]);
    assert_eq!(names(store.list_functions("alpha", 10).unwrap()), ["beta"]);
    assert!(store.list_functions("beta", 10).unwrap().is_empty());

    // The shared blob stays while one user is left, and goes with the last one.
    assert_eq!(store.delete_function("alpha").unwrap(), Some(a.clone()));
    assert_eq!(store.delete_function("alpha").unwrap(), None);
    assert!(store.get_blob(&a.code_sha256).unwrap().is_some());
    store.delete_function("beta").unwrap();
    assert!(store.get_blob(&a.code_sha256).unwrap().is_none());
}

#[test]
fn update_checks_revision_and_collects_the_old_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), 100).unwrap();
    let v1 = config("f", b"one", "r1");
    store.create_function(&v1, b"one").unwrap();
    let mut v2 = config("f", b"two", "r2");
    v2.spec.memory_mb = 256;
    assert!(matches!(
        store.update_function(&v2, "stale", Some(b"two")),
        Err(StoreError::RevisionConflict { .. })
    ));
    store.update_function(&v2, "r1", Some(b"two")).unwrap();
    assert_eq!(store.get_function("f").unwrap(), Some(v2.clone()));
    assert!(store.get_blob(&v1.code_sha256).unwrap().is_none());
    assert_eq!(
        store.get_blob(&v2.code_sha256).unwrap().as_deref(),
        Some(&b"two"[..])
    );
    let ghost = config("ghost", b"x", "r1");
    assert!(matches!(
        store.update_function(&ghost, "r1", None),
        Err(StoreError::FunctionNotFound(_))
    ));
    // Blob reference counts are rebuilt on open: deleting after a reopen still collects the blob.
    drop(store);
    let store = RocksStore::open(dir.path(), 100).unwrap();
    store.delete_function("f").unwrap();
    assert!(store.get_blob(&v2.code_sha256).unwrap().is_none());
}

#[test]
fn log_seq_continues_after_reopen_and_logs_go_with_the_function() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RocksStore::open(dir.path(), 100).unwrap();
        store
            .create_function(&config("f", b"c", "r1"), b"c")
            .unwrap();
        store
            .create_function(&config("f-2", b"c", "r1"), b"c")
            .unwrap();
        let stored = store.append_logs("f", (1..=3).map(line).collect()).unwrap();
        assert_eq!(stored.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        store.append_logs("f-2", vec![line(9)]).unwrap();
        // No log for a function that does not exist.
        assert!(store
            .append_logs("ghost", vec![line(1)])
            .unwrap()
            .is_empty());
    }
    let store = RocksStore::open(dir.path(), 100).unwrap();
    let stored = store.append_logs("f", vec![line(4), line(5)]).unwrap();
    assert_eq!(stored.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
    let all = store.get_logs("f", 0, 1000).unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(all[3].message, "line 4");
    assert_eq!(all[3].request_id, "req-4");
    let page = store.get_logs("f", 2, 2).unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(store.get_logs("f", 5, 10).unwrap().is_empty());
    // "f-2" sorts after "f" but its events never leak into f's.
    assert_eq!(store.get_logs("f-2", 0, 10).unwrap().len(), 1);
    assert_eq!(store.append_logs("f-2", vec![line(10)]).unwrap()[0].seq, 2);

    store.delete_function("f").unwrap();
    assert!(store.get_logs("f", 0, 1000).unwrap().is_empty());
    store
        .create_function(&config("f", b"c", "r9"), b"c")
        .unwrap();
    assert_eq!(store.append_logs("f", vec![line(1)]).unwrap()[0].seq, 1);
    assert_eq!(store.get_logs("f-2", 0, 10).unwrap().len(), 2);
}

#[test]
fn log_retention_is_bounded_per_function() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = RocksStore::open(dir.path(), 5).unwrap();
        store
            .create_function(&config("f", b"c", "r1"), b"c")
            .unwrap();
        for i in 1..=4 {
            store
                .append_logs("f", vec![line(i * 2 - 1), line(i * 2)])
                .unwrap();
        }
        let seqs: Vec<u64> = store
            .get_logs("f", 0, 100)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [4, 5, 6, 7, 8]);
    }
    // A smaller retention after a restart trims on the next append; seqs keep growing.
    let store = RocksStore::open(dir.path(), 2).unwrap();
    store.append_logs("f", vec![line(9)]).unwrap();
    let seqs: Vec<u64> = store
        .get_logs("f", 0, 100)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [8, 9]);
    // A big batch beyond the retention keeps only its tail.
    let store2_dir = tempfile::tempdir().unwrap();
    let store2 = RocksStore::open(store2_dir.path(), 3).unwrap();
    store2
        .create_function(&config("g", b"c", "r1"), b"c")
        .unwrap();
    store2
        .append_logs("g", (1..=3000).map(line).collect())
        .unwrap();
    let seqs: Vec<u64> = store2
        .get_logs("g", 0, 100)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [2998, 2999, 3000]);
}

/// The read cache never keeps a record older than the last write: readers that raced with a
/// writer (read RocksDB before the write, offered after it) are refused.
#[test]
fn reads_after_a_write_see_it_while_other_readers_race() {
    use crate::store::{PublishRequest, VersionStore};
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(RocksStore::open(dir.path(), 100).unwrap());
    store
        .create_function(&config("f", b"c", "r0"), b"c")
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    store.get_function("f").unwrap().unwrap();
                    store.get_version("f", 1).unwrap();
                }
            })
        })
        .collect();
    let mut revision = "r0".to_string();
    for i in 1..=300 {
        let next = format!("r{i}");
        let mut c = config("f", b"c", &next);
        c.spec.memory_mb = 128 + i;
        store.update_function(&c, &revision, None).unwrap();
        revision = next;
        let read = store.get_function("f").unwrap().unwrap();
        assert_eq!(
            (read.revision_id.as_str(), read.spec.memory_mb),
            (revision.as_str(), 128 + i)
        );
        assert_eq!(
            store.function_in_memory("f").map(|f| f.revision_id.clone()),
            Some(revision.clone())
        );
        if i == 150 {
            store
                .publish_version(
                    "f",
                    &PublishRequest {
                        description: String::new(),
                        expected_code_sha256: None,
                        expected_revision_id: None,
                        new_revision_id: "v1".to_string(),
                        now_ms: 1,
                    },
                )
                .unwrap();
            assert_eq!(
                store.get_version("f", 1).unwrap().unwrap().spec.memory_mb,
                278
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    store.delete_function("f").unwrap();
    assert!(store.get_function("f").unwrap().is_none());
    assert!(store.function_in_memory("f").is_none());
    assert!(store.version_in_memory("f", 1).is_none());
}

/// A function write and a subnet delete cannot interleave into a function attached to a subnet
/// that no longer exists: the store itself checks the subnets and groups a function names, under
/// the lock the subnet delete checks its users under (the API's own check runs before it).
#[test]
fn a_function_never_ends_up_on_a_deleted_subnet() {
    use lamina_proto::network::VpcConfig;

    use crate::store::network::NetworkStore;

    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(RocksStore::open(dir.path(), 100).unwrap());
    let vpc = s.create_vpc("10.9.0.0/16".parse().unwrap(), "", 1).unwrap();
    let group = s.create_group(&vpc.id, "g", "", 1).unwrap();
    let attached = |name: &str, subnet: &str| {
        let mut c = config(name, b"code", "r1");
        c.spec.vpc_config = Some(VpcConfig {
            subnet_ids: vec![subnet.to_string()],
            security_group_ids: vec![group.id.clone()],
        });
        c
    };
    let err = s
        .create_function(&attached("gone", "subnet-deadbeef"), b"code")
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::VpcTargetGone { kind: "subnet", id, .. } if id == "subnet-deadbeef"),
        "{err}"
    );
    for round in 0..40 {
        let subnet = s
            .create_subnet(&vpc.id, "10.9.1.0/24".parse().unwrap(), 1)
            .unwrap();
        let name = format!("f{round}");
        let (writer, deleter) = (std::sync::Arc::clone(&s), std::sync::Arc::clone(&s));
        let (fname, fsubnet, dsubnet) = (name.clone(), subnet.id.clone(), subnet.id.clone());
        let config = attached(&fname, &fsubnet);
        let write = std::thread::spawn(move || writer.create_function(&config, b"code"));
        let delete = std::thread::spawn(move || deleter.delete_subnet(&dsubnet));
        let (written, deleted) = (write.join().unwrap(), delete.join().unwrap());
        assert!(
            written.is_err() || deleted.is_err(),
            "round {round}: both the write and the delete went through"
        );
        let function = s.get_function(&name).unwrap();
        let subnet_left = s.get_subnet(&subnet.id).is_ok();
        assert!(
            function.is_none() || subnet_left,
            "round {round}: function `{name}` names deleted subnet {}",
            subnet.id
        );
        if function.is_some() {
            s.delete_function(&name).unwrap();
        }
        if subnet_left {
            s.delete_subnet(&subnet.id).unwrap();
        }
    }
}
