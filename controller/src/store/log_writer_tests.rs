//! The background log writer through the store: read-your-writes, back-pressure, shutdown.
use std::collections::BTreeMap;
use std::sync::Arc;

use lamina_proto::domain::{FunctionConfig, FunctionSpec, Runtime, LATEST};

use crate::store::{NewLogEvent, RocksStore, Store};

fn config(name: &str) -> FunctionConfig {
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
        code_sha256: "c".repeat(64),
        code_size: 1,
        revision_id: "r1".to_string(),
        version: LATEST.to_string(),
        last_modified_ms: 1,
        layers: Vec::new(),
        image: None,
    }
}

/// One invocation's lines.
fn invocation(i: usize) -> Vec<NewLogEvent> {
    ["START", "body", "END"]
        .iter()
        .map(|m| NewLogEvent {
            timestamp_ms: i as u64,
            request_id: format!("req-{i}"),
            message: format!("{m} {i}"),
        })
        .collect()
}

/// More entries than the queue holds: `queue` waits for room, and a read right after the last
/// one sees every line, in order, with consecutive seqs.
#[test]
fn a_read_sees_every_line_queued_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RocksStore::open(dir.path(), 1_000_000).unwrap());
    store.create_function(&config("f"), b"c").unwrap();
    let n = super::QUEUE_CAPACITY * 2 + 17;
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for i in (w..n).step_by(2) {
                    if let Err(events) = store.try_queue_logs("f", invocation(i)) {
                        store.queue_logs("f", events).unwrap();
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let events = store.get_logs("f", 0, usize::MAX).unwrap();
    assert_eq!(events.len(), n * 3);
    assert!(events
        .iter()
        .enumerate()
        .all(|(i, e)| e.seq == i as u64 + 1));
    // Each invocation's lines stay together and in order.
    for chunk in events.chunks(3) {
        let id = &chunk[0].request_id;
        assert!(chunk.iter().all(|e| &e.request_id == id), "{chunk:?}");
        assert!(chunk[0].message.starts_with("START") && chunk[2].message.starts_with("END"));
    }
}

#[test]
fn queued_lines_are_written_when_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3000;
    {
        let store = RocksStore::open(dir.path(), 1_000_000).unwrap();
        store.create_function(&config("f"), b"c").unwrap();
        for i in 0..n {
            store.queue_logs("f", invocation(i)).unwrap();
        }
        // Dropped without a read or a flush.
    }
    let store = RocksStore::open(dir.path(), 1_000_000).unwrap();
    assert_eq!(store.get_logs("f", 0, usize::MAX).unwrap().len(), n * 3);
    // After `flush_logs` (graceful shutdown) too, and lines queued after a close are written
    // directly.
    store.queue_logs("f", invocation(n)).unwrap();
    store.flush_logs();
    store.log_writer.close();
    store.queue_logs("f", invocation(n + 1)).unwrap();
    assert_eq!(
        store.get_logs("f", 0, usize::MAX).unwrap().len(),
        (n + 2) * 3
    );
}

/// While the writer is held up (the test holds the log writers' lock), a read waits for the
/// lines queued before it instead of answering without them.
#[test]
fn a_read_waits_for_a_writer_that_is_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RocksStore::open(dir.path(), 1_000_000).unwrap());
    store.create_function(&config("f"), b"c").unwrap();
    let held = store.logs.lock_ranges();
    for i in 0..10 {
        store.try_queue_logs("f", invocation(i)).unwrap();
    }
    let reader = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || store.get_logs("f", 0, usize::MAX).unwrap().len())
    };
    // Give a reader that does not wait every chance to answer early.
    std::thread::sleep(std::time::Duration::from_millis(50));
    drop(held);
    assert_eq!(reader.join().unwrap(), 30);
}

/// Logs queued before a delete go with the function, not into a new one of the same name.
#[test]
fn a_deleted_function_takes_its_queued_lines_along() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RocksStore::open(dir.path(), 1_000_000).unwrap());
    store.create_function(&config("f"), b"c").unwrap();
    let held = store.logs.lock_ranges();
    for i in 0..10 {
        store.try_queue_logs("f", invocation(i)).unwrap();
    }
    let recreate = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || {
            store.delete_function("f").unwrap();
            store.create_function(&config("f"), b"c").unwrap();
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    drop(held);
    recreate.join().unwrap();
    assert!(store.get_logs("f", 0, usize::MAX).unwrap().is_empty());
    store.queue_logs("f", invocation(1)).unwrap();
    assert_eq!(store.get_logs("f", 0, usize::MAX).unwrap()[0].seq, 1);
}
