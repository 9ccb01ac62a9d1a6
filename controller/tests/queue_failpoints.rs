//! Crashes at the two dangerous points of a delivery, simulated with `fail` failpoints (compiled in
//! by the `failpoints` feature, which this crate's dev-dependency on `fail` turns on for tests): the
//! delivery stops there without writing anything more, the controller "restarts" (queue reopened on
//! the same RocksDB directory) and the event must still reach exactly one terminal state: duplicates
//! are allowed, loss is not.
mod queue_common;

use lamina_controller::queue::{Outcome, State};
use queue_common::*;

const EVENTS: usize = 50;

async fn crash_at(failpoint: &str) -> (ScriptedInvokerTotals, Vec<State>) {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), config());
    let mut ids = Vec::new();
    for _ in 0..EVENTS {
        let e = lamina_controller::queue::NewEvent {
            function_name: "f".into(),
            qualifier: String::new(),
            payload: b"{}".to_vec(),
            idempotency_key: String::new(),
        };
        ids.push(q.enqueue(e).await.unwrap().request_id().to_string());
    }
    // Every other delivery "crashes" at the failpoint.
    fail::cfg(failpoint, "50%return").unwrap();
    let inv = ScriptedInvoker::new(|_, _| Outcome::Success {
        payload: vec![],
        executed_version: "$LATEST".into(),
    });
    let r = start(q.clone(), inv.clone());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    r.stop().await;
    fail::remove(failpoint);
    drop(q);
    // Restart: leases of the dead process expire at once.
    let q = open(dir.path(), config());
    let r = start(q.clone(), inv.clone());
    eventually("every event finished", || {
        ids.iter()
            .all(|id| q.get(id).unwrap().is_some_and(|i| i.state.is_terminal()))
    })
    .await;
    r.stop().await;
    let states = ids
        .iter()
        .map(|id| q.get(id).unwrap().unwrap().state)
        .collect();
    let totals = ScriptedInvokerTotals {
        runs: inv.total_runs() as usize,
        attempts: ids
            .iter()
            .map(|id| q.get(id).unwrap().unwrap().attempts as usize)
            .sum(),
        never_ran: ids.iter().filter(|id| inv.runs_of(id) == 0).count(),
    };
    scenario.teardown();
    (totals, states)
}

struct ScriptedInvokerTotals {
    runs: usize,
    attempts: usize,
    never_ran: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_invocation_and_ack_duplicates_but_never_loses() {
    let (t, states) = crash_at("queue::before_ack").await;
    assert!(states.iter().all(|s| *s == State::Succeeded), "{states:?}");
    assert_eq!(t.never_ran, 0);
    // Crashed deliveries ran but their ack was never written: they ran again after the restart.
    assert!(t.runs > EVENTS, "expected duplicates, got {} runs", t.runs);
    assert_eq!(t.attempts, t.runs, "every run is counted as an attempt");
    println!(
        "before_ack: {} events, {} runs, {} duplicates",
        EVENTS,
        t.runs,
        t.runs - EVENTS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_dequeue_and_lease_loses_nothing() {
    let (t, states) = crash_at("queue::before_lease").await;
    assert!(states.iter().all(|s| *s == State::Succeeded), "{states:?}");
    assert_eq!(t.never_ran, 0);
    // Nothing ran before the lease: no duplicates at this point.
    assert_eq!(t.runs, EVENTS);
    assert_eq!(t.attempts, EVENTS);
}
