//! The dispatcher against an in-memory [`QueueStorage`]: the seam a second backend implements.
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lamina_proto::domain::{Destination, EventInvokeConfig, DEFAULT_FAILURE_DLQ};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::queue::{Due, QueueConfig, State};

/// Events in a map; every transition recorded.
#[derive(Default)]
struct MemoryQueue {
    config: QueueConfig,
    events: Mutex<HashMap<String, Invocation>>,
    transitions: Mutex<Vec<String>>,
    ends: Mutex<Vec<Ending>>,
    notify: tokio::sync::Notify,
}

impl MemoryQueue {
    fn note(&self, inv: &Invocation, what: &str) {
        lock(&self.events).insert(inv.request_id.clone(), inv.clone());
        lock(&self.transitions).push(what.to_string());
    }
}

#[tonic::async_trait]
impl QueueStorage for MemoryQueue {
    fn config(&self) -> &QueueConfig {
        &self.config
    }
    fn get(&self, request_id: &str) -> Result<Option<Invocation>, QueueError> {
        Ok(lock(&self.events).get(request_id).cloned())
    }
    fn get_config(&self, _: &str) -> Result<Option<EventInvokeConfig>, QueueError> {
        Ok(None)
    }
    fn payload(&self, _: &str) -> Result<Option<Vec<u8>>, QueueError> {
        Ok(Some(b"{}".to_vec()))
    }
    fn scan_due(&self, now: u64, limit: usize, skip: &HashSet<String>) -> Result<Due, QueueError> {
        let events = lock(&self.events);
        let mut due: Vec<(u64, String)> = events
            .values()
            .filter(|i| !i.state.is_terminal() && !skip.contains(&i.request_id))
            .map(|i| (i.due_ms, i.request_id.clone()))
            .collect();
        due.sort();
        let next = due.iter().find(|(t, _)| *t > now).map(|(t, _)| *t);
        let ready = due.into_iter().filter(|(t, _)| *t <= now).take(limit);
        Ok((ready.map(|(_, id)| id).collect(), next))
    }
    async fn lease(&self, inv: &mut Invocation, now: u64, until: u64) -> Result<(), QueueError> {
        inv.attempts += 1;
        (inv.state, inv.due_ms, inv.updated_ms) = (State::Running, until, now);
        self.note(inv, "lease");
        Ok(())
    }
    async fn reschedule(&self, mut inv: Invocation, at: u64) -> Result<(), QueueError> {
        (inv.state, inv.due_ms) = (State::Retrying, at);
        self.note(&inv, "reschedule");
        Ok(())
    }
    async fn finish(&self, mut inv: Invocation, ending: Ending) -> Result<(), QueueError> {
        inv.state = State::Failed;
        inv.condition = Some(ending.condition);
        self.note(&inv, "finish");
        lock(&self.ends).push(ending);
        Ok(())
    }
    async fn housekeeping(&self, _: u64) -> Result<usize, QueueError> {
        Ok(0)
    }
    async fn woken(&self) {
        self.notify.notified().await;
    }
    fn wake(&self) {
        self.notify.notify_one();
    }
}

/// A function that always fails.
struct Failing;

#[tonic::async_trait]
impl Invoker for Failing {
    async fn function_timeout(&self, _: &str, _: &str) -> Result<Option<Duration>, String> {
        Ok(Some(Duration::from_secs(1)))
    }
    async fn invoke(&self, _: &str, _: &str, _: &str, _: Vec<u8>) -> Outcome {
        Outcome::FunctionError {
            kind: "Unhandled".to_string(),
            payload: br#"{"errorType":"E","errorMessage":"boom"}"#.to_vec(),
            executed_version: "$LATEST".to_string(),
        }
    }
}

#[tokio::test]
async fn retries_then_ends_through_the_storage_transitions() {
    let queue = Arc::new(MemoryQueue {
        config: QueueConfig {
            time_scale: 0.0001,
            ..QueueConfig::default()
        },
        ..MemoryQueue::default()
    });
    let inv = Invocation::queued("r1", ("f", ""), now_ms(), 2, "");
    lock(&queue.events).insert("r1".into(), inv);
    let stop = CancellationToken::new();
    let task =
        tokio::spawn(Dispatcher::new(Arc::clone(&queue), Arc::new(Failing)).run(stop.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while lock(&queue.ends).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no end");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.cancel();
    task.await.unwrap();
    // The default: two retries, then the default dead-letter queue.
    assert_eq!(
        *lock(&queue.transitions),
        [
            "lease",
            "reschedule",
            "lease",
            "reschedule",
            "lease",
            "finish"
        ]
    );
    let ending = lock(&queue.ends)[0].clone();
    assert_eq!(ending.condition, Condition::RetriesExhausted);
    assert_eq!(ending.function_error, "Unhandled");
    assert_eq!(
        ending.destination,
        Some(Destination::Dlq(DEFAULT_FAILURE_DLQ.to_string()))
    );
    assert_eq!(queue.get("r1").unwrap().unwrap().attempts, 3);
}
