use std::borrow::Cow;
use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use super::*;
use crate::store::db::{Batch, Database, Durability};
use crate::store::schema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Item {
    n: u32,
}

fn open() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path()).unwrap();
    (dir, db)
}

/// Writes `keys` (each with its index as the value) to the `logs` family.
fn fill(db: &Database, keys: &[&[u8]]) {
    let t = db.table::<Json<Item>>(schema::LOGS);
    let mut batch = Batch::new();
    for (i, k) in keys.iter().enumerate() {
        t.put(&mut batch, *k, &Item { n: i as u32 }).unwrap();
    }
    db.write(&batch, Durability::Synced, "fill").unwrap();
}

fn keys_from(t: &Table<'_, Json<Item>>, start: Start<'_>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    t.walk(start, |e| {
        out.push(e.key().to_vec());
        Ok::<_, StorageError>(ControlFlow::Continue(()))
    })
    .unwrap();
    out
}

#[test]
fn put_get_delete_round_trip_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::open(dir.path()).unwrap();
        let t = db.table::<Json<Item>>(schema::FUNCTIONS);
        assert_eq!(t.get(b"a").unwrap(), None);
        let mut batch = Batch::new();
        t.put(&mut batch, b"a".as_slice(), &Item { n: 1 }).unwrap();
        t.put(&mut batch, b"b".as_slice(), &Item { n: 2 }).unwrap();
        assert_eq!(t.get(b"a").unwrap(), None, "nothing before the write");
        db.write(&batch, Durability::Synced, "put").unwrap();
        assert_eq!(t.get(b"a").unwrap(), Some(Item { n: 1 }));
        assert!(t.contains(b"b").unwrap());
        let mut batch = Batch::new();
        t.delete(&mut batch, b"b".as_slice());
        db.write(&batch, Durability::Buffered, "delete").unwrap();
        assert!(!t.contains(b"b").unwrap());
    }
    let db = Database::open(dir.path()).unwrap();
    let t = db.table::<Json<Item>>(schema::FUNCTIONS);
    assert_eq!(t.get(b"a").unwrap(), Some(Item { n: 1 }));
    assert_eq!(t.get(b"b").unwrap(), None);
    assert_eq!(t.count().unwrap(), 1);
}

#[test]
fn prefix_scans_stop_at_the_prefix_and_walks_go_both_ways() {
    let (_dir, db) = open();
    fill(
        &db,
        &[b"f\0\x01", b"f\0\x02", b"f-2\0\x01", b"g\0\x01", b"e\0\x09"],
    );
    let t = db.table::<Json<Item>>(schema::LOGS);
    let values = t.values_with_prefix(b"f\0", |_| true).unwrap();
    assert_eq!(values, [Item { n: 0 }, Item { n: 1 }], "`f-2` is not `f`'s");
    let only_second = t
        .values_with_prefix(b"f\0", |k| k.ends_with(b"\x02"))
        .unwrap();
    assert_eq!(only_second, [Item { n: 1 }]);
    assert_eq!(
        keys_from(&t, Start::At(b"f\0\x02")),
        [
            b"f\0\x02".to_vec(),
            b"f-2\0\x01".to_vec(),
            b"g\0\x01".to_vec()
        ]
    );
    assert_eq!(
        keys_from(&t, Start::Back(b"f\x01")),
        [
            b"f\0\x02".to_vec(),
            b"f\0\x01".to_vec(),
            b"e\0\x09".to_vec()
        ],
        "backwards from the last key <= the bound"
    );
    assert_eq!(keys_from(&t, Start::First).len(), 5);
    assert_eq!(t.first_key_at(b"f-").unwrap(), Some(b"f-2\0\x01".to_vec()));
    assert_eq!(
        t.last_key_at_or_before(b"f\0\xff").unwrap(),
        Some(b"f\0\x02".to_vec())
    );
    assert_eq!(t.first_key_at(b"h").unwrap(), None);
    assert_eq!(t.last_key_at_or_before(b"a").unwrap(), None);
    // A visitor that breaks stops the walk.
    let mut seen = 0;
    t.scan_prefix(b"", |_| {
        seen += 1;
        Ok::<_, StorageError>(if seen == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })
    .unwrap();
    assert_eq!(seen, 2);
}

#[test]
fn a_value_that_does_not_decode_names_the_family_and_the_key() {
    let (_dir, db) = open();
    let raw = db.table::<Raw>(schema::VERSIONS);
    let mut batch = Batch::new();
    raw.put_bytes(&mut batch, b"f\0bad".as_slice(), b"not json".as_slice());
    raw.put_bytes(&mut batch, b"n".as_slice(), vec![1, 2, 3]);
    db.write(&batch, Durability::Synced, "put").unwrap();
    let err = db
        .table::<Json<Item>>(schema::VERSIONS)
        .get(b"f\0bad")
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StorageError::Corrupt { .. }), "{msg}");
    assert!(msg.contains("`versions` entry `f\\0bad`"), "{msg}");
    assert!(msg.contains(&db.path().display().to_string()), "{msg}");
    // Scans report the same, and stop.
    let err = db
        .table::<Json<Item>>(schema::VERSIONS)
        .values_with_prefix(b"f", |_| true)
        .unwrap_err();
    assert!(err.to_string().contains("`versions` entry"), "{err}");
    // Fixed-width numbers check their width.
    let err = db.table::<BeU32>(schema::VERSIONS).get(b"n").unwrap_err();
    assert!(err.to_string().contains("4-byte big-endian"), "{err}");
    let err = db.table::<BeU64>(schema::VERSIONS).get(b"n").unwrap_err();
    assert!(err.to_string().contains("8-byte big-endian"), "{err}");
    assert_eq!(raw.get(b"n").unwrap(), Some(vec![1, 2, 3]));
}

#[test]
fn numbers_and_empty_values_round_trip() {
    let (_dir, db) = open();
    let (u64s, u32s, empty) = (
        db.table::<BeU64>(schema::QUEUE_LEASES),
        db.table::<BeU32>(schema::LAYERS),
        db.table::<Empty>(schema::QUEUE_DUE),
    );
    let mut batch = Batch::new();
    u64s.put(&mut batch, b"a".as_slice(), &u64::MAX).unwrap();
    u32s.put(&mut batch, b"a".as_slice(), &7).unwrap();
    empty.put(&mut batch, b"a".as_slice(), &()).unwrap();
    db.write(&batch, Durability::Synced, "put").unwrap();
    assert_eq!(u64s.get(b"a").unwrap(), Some(u64::MAX));
    assert_eq!(u32s.get(b"a").unwrap(), Some(7));
    assert_eq!(empty.get(b"a").unwrap(), Some(()));
}

#[test]
fn batches_write_atomically_across_families_and_merge() {
    let (_dir, db) = open();
    fill(&db, &[b"f\0\x01", b"f\0\x02", b"f\0\x03", b"g\0\x01"]);
    let logs = db.table::<Json<Item>>(schema::LOGS);
    let functions = db.table::<Json<Item>>(schema::FUNCTIONS);
    let mut first = Batch::new();
    logs.delete_range(&mut first, b"f\0".as_slice(), b"f\x01".as_slice());
    let mut second = Batch::new();
    functions
        .put(&mut second, b"f".as_slice(), &Item { n: 9 })
        .unwrap();
    assert_eq!(first.size() + second.size(), 4 + b"f".len() + 7);
    first.append(second);
    db.write_all(&[first], Durability::Synced, "merged")
        .unwrap();
    assert_eq!(logs.count().unwrap(), 1, "the range went, `g` stayed");
    assert_eq!(functions.get(b"f").unwrap(), Some(Item { n: 9 }));

    // A batch naming a family that does not exist writes nothing at all.
    let mut bad = Batch::new();
    functions
        .put(&mut bad, b"h".as_slice(), &Item { n: 1 })
        .unwrap();
    bad.put(
        "no_such_family",
        b"k".to_vec(),
        Cow::Borrowed(b"v".as_slice()),
    );
    let err = db.write(&bad, Durability::Synced, "bad").unwrap_err();
    assert!(
        matches!(err, StorageError::MissingColumnFamily { name, .. } if name == "no_such_family"),
        "{err}"
    );
    assert_eq!(functions.get(b"h").unwrap(), None);
    assert_eq!(bad.deletes_in(schema::FUNCTIONS), 0);
    let mut deletes = Batch::new();
    functions.delete(&mut deletes, b"a".as_slice());
    functions.delete(&mut deletes, b"b".as_slice());
    logs.delete(&mut deletes, b"c".as_slice());
    assert_eq!(deletes.deletes_in(schema::FUNCTIONS), 2);
}

#[test]
fn every_declared_family_is_opened() {
    let (_dir, db) = open();
    for name in schema::names() {
        assert!(db.cf(name).is_ok(), "{name}");
    }
    assert_eq!(schema::names().count(), 21);
}
