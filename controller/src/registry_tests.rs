//! Unit tests of `registry.rs`.
use super::*;

fn idle(function: &str, revision: &str) -> SandboxReport {
    SandboxReport {
        function_name: function.to_string(),
        revision_id: revision.to_string(),
        state: SandboxState::Idle,
        memory_mb: 128,
        provisioned: false,
    }
}

fn provisioned(function: &str, revision: &str, state: SandboxState) -> SandboxReport {
    SandboxReport {
        state,
        provisioned: true,
        ..idle(function, revision)
    }
}

fn starting(function: &str) -> SandboxReport {
    SandboxReport {
        state: SandboxState::Starting,
        ..idle(function, "r1")
    }
}

fn hb(free: u64, sandboxes: Vec<SandboxReport>) -> Heartbeat {
    Heartbeat {
        memory_free_mb: free,
        sandboxes,
        invocations_total: 7,
        provision_failures: Vec::new(),
    }
}

#[test]
fn unknown_worker_heartbeat_is_refused() {
    let r = Registry::new(Duration::from_secs(5));
    assert!(!r.heartbeat("w1", hb(100, vec![])));
    r.register("w1", "127.0.0.1:1", 4096);
    assert!(r.heartbeat("w1", hb(100, vec![idle("f", "r1")])));
    let list = r.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].state, WorkerState::Up);
    assert_eq!(
        (
            list[0].memory_free_mb,
            list[0].sandboxes,
            list[0].idle_sandboxes
        ),
        (100, 1, 1)
    );
    assert_eq!(list[0].invocations_total, 7);
}

#[test]
fn prefers_the_idle_warm_revision_and_claims_it_once() {
    let r = Registry::new(Duration::from_secs(5));
    r.register("big", "127.0.0.1:1", 16000);
    r.register("warm", "127.0.0.1:2", 4000);
    r.heartbeat("big", hb(15000, vec![idle("f", "old-revision")]));
    r.heartbeat("warm", hb(1000, vec![idle("f", "r1")]));
    let first = r.place("f", "r1", 512).unwrap();
    assert_eq!((first.worker_id.as_str(), first.warm), ("warm", true));
    // The one idle sandbox is taken: the next concurrent invocation goes by free memory.
    let second = r.place("f", "r1", 512).unwrap();
    assert_eq!((second.worker_id.as_str(), second.warm), ("big", false));
    // The first invocation finished: its sandbox is idle again before any heartbeat says so.
    r.finish(&first, true);
    let third = r.place("f", "r1", 512).unwrap();
    assert_eq!((third.worker_id.as_str(), third.warm), ("warm", true));
}

#[test]
fn counts_memory_placed_since_the_heartbeat() {
    let r = Registry::new(Duration::from_secs(5));
    r.register("a", "127.0.0.1:1", 4000);
    r.register("b", "127.0.0.1:2", 4000);
    r.heartbeat("a", hb(3000, vec![]));
    r.heartbeat("b", hb(2500, vec![]));
    assert_eq!(r.place("f", "r1", 1024).unwrap().worker_id, "a"); // a: 1976 left
    assert_eq!(r.place("f", "r1", 1024).unwrap().worker_id, "b"); // b: 1476 left
    assert_eq!(r.place("f", "r1", 128).unwrap().worker_id, "a");
    // A heartbeat replaces the estimate with the worker's own figure.
    r.heartbeat("b", hb(3500, vec![]));
    assert_eq!(r.place("f", "r1", 128).unwrap().worker_id, "b");
}

#[test]
fn skips_down_workers_until_they_heartbeat() {
    let r = Registry::new(Duration::from_millis(100));
    r.register("old", "127.0.0.1:1", 64000);
    std::thread::sleep(Duration::from_millis(150));
    assert!(!r.is_up("old"));
    assert_eq!(r.list()[0].state, WorkerState::Down);
    assert_eq!(r.place("f", "r1", 128), Err(PlaceError::NoWorker));
    r.register("new", "127.0.0.1:2", 1000);
    assert_eq!(r.place("f", "r1", 128).unwrap().worker_id, "new");
    assert!(r.heartbeat("old", hb(64000, vec![])));
    assert!(r.is_up("old"));
    assert_eq!(r.place("f", "r1", 128).unwrap().worker_id, "old");
}

#[test]
fn an_unreachable_worker_is_down_until_it_heartbeats() {
    let r = Registry::new(Duration::from_secs(60));
    r.register("big", "127.0.0.1:1", 64000);
    r.register("small", "127.0.0.1:2", 1000);
    r.mark_unreachable("big", "connection reset");
    r.mark_unreachable("unknown", "ignored");
    assert!(!r.is_up("big"));
    assert_eq!(r.list()[0].state, WorkerState::Down);
    assert_eq!(r.place("f", "r1", 128).unwrap().worker_id, "small");
    assert!(r.heartbeat("big", hb(64000, vec![])));
    assert!(r.is_up("big"));
    assert_eq!(r.place("f", "r1", 128).unwrap().worker_id, "big");
    // A registration (a restarted worker) is reachable too.
    r.mark_unreachable("big", "connection refused");
    r.register("big", "127.0.0.1:3", 64000);
    assert!(r.is_up("big"));
}

#[test]
fn prefers_an_idle_provisioned_sandbox() {
    let r = Registry::new(Duration::from_secs(5));
    r.register("a", "127.0.0.1:1", 16000);
    r.register("b", "127.0.0.1:2", 4000);
    r.heartbeat("a", hb(15000, vec![idle("f", "r1")]));
    r.heartbeat(
        "b",
        hb(
            1000,
            vec![provisioned("f", "r1", SandboxState::Idle), idle("f", "r1")],
        ),
    );
    let first = r.place("f", "r1", 128).unwrap();
    assert_eq!(
        (first.worker_id.as_str(), first.warm, first.provisioned),
        ("b", true, true)
    );
    // b's provisioned one is claimed: the next warm choice goes by free memory.
    let second = r.place("f", "r1", 128).unwrap();
    assert_eq!(
        (second.worker_id.as_str(), second.warm, second.provisioned),
        ("a", true, false)
    );
}

#[test]
fn cold_starts_spread_and_are_bounded_per_worker() {
    let r = Registry::with_cold_start_limit(Duration::from_secs(5), 2);
    r.register("a", "127.0.0.1:1", 8000);
    r.register("b", "127.0.0.1:2", 4000);
    let placed: Vec<Placement> = (0..4).map(|_| r.place("f", "r1", 128).unwrap()).collect();
    let on = |w: &str| placed.iter().filter(|p| p.worker_id == w).count();
    assert_eq!((on("a"), on("b")), (2, 2), "spread: {placed:?}");
    assert!(matches!(
        r.place("f", "r1", 128),
        Err(PlaceError::AtColdStartBound { limit: 2, .. })
    ));
    // An answered cold invocation frees its slot (failed: no warm sandbox comes back).
    r.finish(&placed[0], false);
    let next = r.place("g", "r1", 128).unwrap();
    assert_eq!(next.worker_id, placed[0].worker_id);
    // A heartbeat right after the placements keeps them counted (they may not have reached
    // the worker when it sent it) ...
    r.heartbeat("b", hb(3000, vec![]));
    assert!(r.place("f", "r1", 128).is_err(), "b's two are in transit");
    // ... a later one replaces them with the sandboxes the worker reports starting.
    std::thread::sleep(IN_TRANSIT + Duration::from_millis(50));
    r.heartbeat("b", hb(3000, vec![starting("f"), starting("f")]));
    assert!(
        r.place("f", "r1", 128).is_err(),
        "b reports two starting, a has two in flight"
    );
    r.heartbeat("a", hb(7000, vec![starting("f")]));
    assert_eq!(r.place("f", "r1", 128).unwrap().worker_id, "a");
    assert!(r.place("f", "r1", 128).is_err());
}

#[tokio::test]
async fn a_placement_at_the_bound_waits_for_a_free_slot() {
    let r = std::sync::Arc::new(Registry::with_cold_start_limit(Duration::from_secs(5), 1));
    r.register("a", "127.0.0.1:1", 8000);
    let first = r.place("f", "r1", 128).unwrap();
    let waited = r
        .place_waiting("f", "r1", 128, Duration::from_millis(300))
        .await;
    assert!(
        matches!(waited, Err(PlaceError::AtColdStartBound { .. })),
        "{waited:?}"
    );
    let r2 = std::sync::Arc::clone(&r);
    let waiter = tokio::spawn(async move {
        r2.place_waiting("f", "r1", 128, Duration::from_secs(30))
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    r.finish(&first, false);
    let second = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter is woken")
        .unwrap()
        .unwrap();
    assert_eq!(second.worker_id, "a");
}

#[test]
fn provisioned_counts_come_from_up_workers() {
    let r = Registry::new(Duration::from_millis(300));
    r.register("a", "127.0.0.1:1", 8000);
    r.register("b", "127.0.0.1:2", 8000);
    r.heartbeat(
        "a",
        hb(
            7000,
            vec![
                provisioned("f", "r1", SandboxState::Idle),
                provisioned("f", "r1", SandboxState::Busy),
                provisioned("f", "r1", SandboxState::Starting),
                provisioned("f", "r2", SandboxState::Idle),
                idle("f", "r1"),
            ],
        ),
    );
    let mut with_failure = hb(7000, vec![provisioned("f", "r1", SandboxState::Idle)]);
    with_failure.provision_failures = vec![ProvisionFailureReport {
        function_name: "f".into(),
        revision_id: "r1".into(),
        error: "init failed".into(),
    }];
    r.heartbeat("b", with_failure);
    assert_eq!(
        r.provisioned("f", "r1"),
        ProvisionedCount {
            allocated: 3,
            available: 2,
            failure: Some("worker `b`: init failed".into()),
        }
    );
    assert_eq!(r.up_workers().len(), 2);
    std::thread::sleep(Duration::from_millis(400));
    r.heartbeat(
        "a",
        hb(7000, vec![provisioned("f", "r1", SandboxState::Idle)]),
    );
    // b is Down: neither its sandboxes nor its failures count.
    assert_eq!(
        r.provisioned("f", "r1"),
        ProvisionedCount {
            allocated: 1,
            available: 1,
            failure: None,
        }
    );
    let up: Vec<String> = r.up_workers().into_iter().map(|w| w.worker_id).collect();
    assert_eq!(up, ["a"]);
}
