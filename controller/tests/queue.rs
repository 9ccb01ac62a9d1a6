//! The async queue end to end inside the controller crate: real RocksDB, real dispatcher, a scripted
//! invoker standing in for the workers.
mod queue_common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use lamina_controller::queue::{Enqueued, NewEvent, Outcome, State};
use lamina_proto::domain::{Destination, EventInvokeConfig, LATEST};
use queue_common::*;

fn event(payload: &str, key: &str) -> NewEvent {
    NewEvent {
        function_name: "f".into(),
        qualifier: String::new(),
        payload: payload.as_bytes().to_vec(),
        idempotency_key: key.into(),
    }
}

fn state(q: &lamina_controller::queue::QueueStore, rid: &str) -> State {
    q.get(rid).unwrap().expect("record").state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_run_once_and_succeed_with_destination() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), config());
    q.put_config(
        "f",
        &EventInvokeConfig {
            on_success: Some(Destination::Dlq("ok".into())),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // The version that ran (an alias or version qualifier resolved at delivery) reaches the record.
    let inv = ScriptedInvoker::new(|_, _| Outcome::Success {
        payload: br#"{"done":true}"#.to_vec(),
        executed_version: "7".into(),
    });
    let mut ids = Vec::new();
    for i in 0..200 {
        match q
            .enqueue(event(&format!(r#"{{"i":{i}}}"#), ""))
            .await
            .unwrap()
        {
            Enqueued::New(id) => ids.push(id),
            d => panic!("{d:?}"),
        }
    }
    let r = start(q.clone(), inv.clone());
    eventually("all succeeded", || {
        ids.iter().all(|id| state(&q, id) == State::Succeeded)
    })
    .await;
    assert!(ids.iter().all(|id| inv.runs_of(id) == 1));
    let rec = q.get(&ids[0]).unwrap().unwrap();
    assert_eq!(
        (rec.attempts, rec.destination),
        (1, Some(Destination::Dlq("ok".into())))
    );
    assert!(
        q.payload(&ids[0]).unwrap().is_none(),
        "payload dropped when finished"
    );
    assert_eq!(q.pending().unwrap(), 0);
    let letters = q.dead_letters("ok", 0, 1000).unwrap();
    assert_eq!(letters.len(), 200);
    let record: serde_json::Value = serde_json::from_str(&letters[0].record).unwrap();
    assert_eq!(record["requestContext"]["condition"], "Success");
    assert_eq!(record["responsePayload"]["done"], true);
    assert_eq!(record["responseContext"]["executedVersion"], "7");
    assert_eq!(rec.executed_version, "7");
    assert_eq!(q.list_invocations("f", 1000).unwrap().len(), 200);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_errors_retry_then_dead_letter_with_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), config());
    let inv = ScriptedInvoker::new(|_, _| Outcome::FunctionError {
        kind: "Unhandled".into(),
        payload: br#"{"errorType":"ValueError","errorMessage":"boom"}"#.to_vec(),
        executed_version: LATEST.into(),
    });
    // Sent to an alias: the redrive below sends it to the alias again.
    let mut to_alias = event(r#"{"k":1}"#, "");
    to_alias.qualifier = "live".into();
    let id = q.enqueue(to_alias).await.unwrap();
    let id = id.request_id().to_string();
    let r = start(q.clone(), inv.clone());
    eventually("dead-lettered", || state(&q, &id) == State::DeadLettered).await;
    let rec = q.get(&id).unwrap().unwrap();
    assert_eq!(
        (rec.attempts, rec.function_errors, inv.runs_of(&id)),
        (3, 3, 3)
    );
    assert_eq!(rec.last_error, "Unhandled: ValueError: boom");
    let letters = q.dead_letters("default", 0, 10).unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].payload, br#"{"k":1}"#);
    let record: serde_json::Value = serde_json::from_str(&letters[0].record).unwrap();
    assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(record["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(record["responseContext"]["functionError"], "Unhandled");
    assert_eq!(record["requestPayload"]["k"], 1);

    // Redrive: a new event of the same function and qualifier, the message leaves the queue.
    let ids = q.redrive("default", &[]).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(q.get(&ids[0]).unwrap().unwrap().qualifier, "live");
    assert!(q.dead_letters("default", 0, 10).unwrap().is_empty());
    eventually("redriven event dead-lettered again", || {
        state(&q, &ids[0]) == State::DeadLettered
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_back_off_and_expired_events_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.time_scale = 0.005; // maximum age 60 s -> 300 ms
    let q = open(dir.path(), cfg);
    q.put_config(
        "f",
        &EventInvokeConfig {
            max_event_age_s: 60,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let inv = ScriptedInvoker::new(|_, n| {
        if n == 1 {
            Outcome::Throttled("no capacity".into())
        } else {
            Outcome::Success {
                payload: vec![],
                executed_version: LATEST.into(),
            }
        }
    });
    inv.ready.store(false, Ordering::Relaxed);
    let expired = q
        .enqueue(event("{}", ""))
        .await
        .unwrap()
        .request_id()
        .to_string();
    let r = start(q.clone(), inv.clone());
    eventually("expired", || state(&q, &expired) == State::DeadLettered).await;
    let rec = q.get(&expired).unwrap().unwrap();
    assert_eq!(inv.runs_of(&expired), 0, "an expired event never runs");
    assert!(rec.throttles >= 1);
    let record: serde_json::Value =
        serde_json::from_str(&q.dead_letters("default", 0, 10).unwrap()[0].record).unwrap();
    assert_eq!(record["requestContext"]["condition"], "EventAgeExceeded");

    inv.ready.store(true, Ordering::Relaxed);
    let id = q
        .enqueue(event("{}", ""))
        .await
        .unwrap()
        .request_id()
        .to_string();
    eventually("delivered after a throttle", || {
        state(&q, &id) == State::Succeeded
    })
    .await;
    let rec = q.get(&id).unwrap().unwrap();
    assert_eq!((inv.runs_of(&id), rec.attempts, rec.throttles), (2, 1, 1));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_return_the_first_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), config());
    let a = q.enqueue(event("{}", "key-1")).await.unwrap();
    let b = q.enqueue(event("{}", "key-1")).await.unwrap();
    let c = q.enqueue(event("{}", "key-2")).await.unwrap();
    assert!(matches!(a, Enqueued::New(_)));
    assert_eq!(b, Enqueued::Duplicate(a.request_id().to_string()));
    assert_ne!(c.request_id(), a.request_id());
    assert_eq!(q.pending().unwrap(), 2);
    // Outside the window the key is new again (and housekeeping forgets old keys).
    drop(q);
    let mut cfg = config();
    cfg.idempotency_window = Duration::from_millis(50);
    let q = open(dir.path(), cfg);
    tokio::time::sleep(Duration::from_millis(80)).await;
    let d = q.enqueue(event("{}", "key-1")).await.unwrap();
    assert!(matches!(d, Enqueued::New(_)));
    assert_ne!(d.request_id(), a.request_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_destination_gets_the_record_as_an_event() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), config());
    q.put_config(
        "f",
        &EventInvokeConfig {
            max_retry_attempts: 0,
            on_failure: Some(Destination::Function("dest".into())),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let inv = ScriptedInvoker::new(|f, _| {
        if f == "f" {
            Outcome::FunctionError {
                kind: "Handled".into(),
                payload: b"{}".to_vec(),
                executed_version: LATEST.into(),
            }
        } else {
            Outcome::Success {
                payload: vec![],
                executed_version: LATEST.into(),
            }
        }
    });
    let id = q
        .enqueue(event("{}", ""))
        .await
        .unwrap()
        .request_id()
        .to_string();
    let r = start(q.clone(), inv.clone());
    eventually("failed to the destination", || {
        state(&q, &id) == State::Failed
    })
    .await;
    assert_eq!(inv.runs_of(&id), 1);
    eventually("destination ran", || {
        q.list_invocations("dest", 10)
            .unwrap()
            .first()
            .is_some_and(|i| i.state == State::Succeeded)
    })
    .await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_bounds_finished_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.retention_records = 10;
    let q = open(dir.path(), cfg);
    let inv = ScriptedInvoker::new(|_, _| Outcome::Success {
        payload: vec![],
        executed_version: LATEST.into(),
    });
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(
            q.enqueue(event("{}", ""))
                .await
                .unwrap()
                .request_id()
                .to_string(),
        );
    }
    let r = start(q.clone(), inv);
    eventually("finished", || q.finished_records() == 30).await;
    q.housekeeping(lamina_controller::queue::now_ms())
        .await
        .unwrap();
    assert_eq!(q.finished_records(), 10);
    assert_eq!(q.list_invocations("f", 100).unwrap().len(), 10);
    assert!(q.get(&ids[0]).unwrap().is_none());
    r.stop().await;
}
