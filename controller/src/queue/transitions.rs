//! Every state change of a queued event, each one atomic batch: accept (`enqueue_in`), lease,
//! reschedule (retry, backoff) and finish (with its destination: a new event or a dead letter).
//! The dispatcher decides *which* transition (`dispatch.rs`, `policy.rs`); this module is the only
//! writer of the queue's due index, leases, records and payloads, and keeps the invariant of
//! `store.rs` in every batch.
use std::sync::atomic::Ordering;

use lamina_proto::domain::Destination;

use super::keys::{by_function_key, dlq_key, due_key, name_key};
use super::records::destination_record;
use super::store::{DeadLetter, IdempotencyEntry, QueueStore};
use super::{now_ms, Condition, Invocation, QueueError, State};
use crate::store::writers::lock;
use crate::store::Batch;

/// How an invocation ends (see [`QueueStore::finish`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    pub condition: Condition,
    /// `Handled`/`Unhandled` when the function failed, else "".
    pub function_error: String,
    pub request_payload: Vec<u8>,
    pub response_payload: Vec<u8>,
    /// The destination configured for this outcome, if any.
    pub destination: Option<Destination>,
    /// For a function destination: whether that function exists (else the default dead-letter
    /// queue takes the record).
    pub destination_exists: bool,
}

impl Invocation {
    /// The record of an event accepted at `now`: queued, due at once.
    pub fn queued(
        request_id: &str,
        (function_name, qualifier): (&str, &str),
        now: u64,
        payload_size: u32,
        idempotency_key: &str,
    ) -> Invocation {
        Invocation {
            request_id: request_id.to_string(),
            function_name: function_name.to_string(),
            state: State::Queued,
            attempts: 0,
            function_errors: 0,
            throttles: 0,
            enqueued_ms: now,
            updated_ms: now,
            finished_ms: 0,
            due_ms: now,
            last_error: String::new(),
            destination: None,
            idempotency_key: idempotency_key.to_string(),
            condition: None,
            payload_size,
            qualifier: qualifier.to_string(),
            executed_version: String::new(),
        }
    }
}

impl QueueStore {
    /// Adds the acceptance of one event to `batch` (shared by invoke, destinations and redrive).
    pub(super) fn enqueue_in(
        &self,
        batch: &mut Batch<'static>,
        now: u64,
        request_id: &str,
        (function_name, qualifier): (&str, &str),
        payload: &[u8],
        idempotency_key: &str,
    ) -> Result<Invocation, QueueError> {
        let inv = Invocation::queued(
            request_id,
            (function_name, qualifier),
            now,
            payload.len() as u32,
            idempotency_key,
        );
        self.payloads()
            .put_bytes(batch, request_id.as_bytes(), payload.to_vec());
        self.due().put(batch, due_key(now, request_id), &())?;
        self.by_function()
            .put(batch, by_function_key(function_name, now, request_id), &())?;
        self.invocations().put(batch, request_id.as_bytes(), &inv)?;
        if !idempotency_key.is_empty() {
            let entry = IdempotencyEntry {
                request_id: request_id.to_string(),
                created_ms: now,
            };
            let key = name_key(function_name, idempotency_key);
            let mut time_key = now.to_be_bytes().to_vec();
            time_key.extend_from_slice(&key);
            self.idempotency().put(batch, key, &entry)?;
            self.idempotency_by_time().put(batch, time_key, &())?;
        }
        Ok(inv)
    }

    /// Adds to `batch`: `inv` moves to `state`, due at `due` (its due key moves along).
    pub(super) fn move_due_in(
        &self,
        batch: &mut Batch<'_>,
        inv: &mut Invocation,
        state: State,
        due: u64,
        now: u64,
    ) -> Result<(), QueueError> {
        let rid = inv.request_id.clone();
        self.due().delete(batch, due_key(inv.due_ms, &rid));
        inv.state = state;
        inv.due_ms = due;
        inv.updated_ms = now;
        self.due().put(batch, due_key(due, &rid), &())?;
        self.invocations().put(batch, rid.as_bytes(), inv)?;
        Ok(())
    }

    /// Leases `inv` until `lease_until` (one synced write: `Running`, attempt counted, due again
    /// at the lease's end). `inv` is updated to what was written.
    pub(super) async fn lease(
        &self,
        inv: &mut Invocation,
        now: u64,
        lease_until: u64,
    ) -> Result<(), QueueError> {
        let mut batch = Batch::new();
        inv.attempts += 1;
        self.move_due_in(&mut batch, inv, State::Running, lease_until, now)?;
        self.leases()
            .put(&mut batch, inv.request_id.as_bytes(), &lease_until)?;
        self.committer.commit(batch).await
    }

    /// Makes `inv` due again at `at` (a retry or a backoff), ending its lease. Synced.
    pub(super) async fn reschedule(&self, mut inv: Invocation, at: u64) -> Result<(), QueueError> {
        let mut batch = Batch::new();
        self.leases().delete(&mut batch, inv.request_id.as_bytes());
        self.move_due_in(&mut batch, &mut inv, State::Retrying, at, now_ms())?;
        self.committer.commit(batch).await
    }

    /// The end of an invocation, with its destination, in one synced write.
    pub(super) async fn finish(
        &self,
        mut inv: Invocation,
        ending: Ending,
    ) -> Result<(), QueueError> {
        let now = now_ms();
        let rid = inv.request_id.clone();
        let mut batch = Batch::new();
        self.due().delete(&mut batch, due_key(inv.due_ms, &rid));
        self.leases().delete(&mut batch, rid.as_bytes());
        self.payloads().delete(&mut batch, rid.as_bytes());
        let condition = ending.condition;
        let success = condition == Condition::Success;
        inv.state = if success {
            State::Succeeded
        } else {
            State::Failed
        };
        inv.condition = Some(condition);
        inv.finished_ms = now;
        inv.updated_ms = now;
        inv.due_ms = 0;
        let mut dead_letter_queue = None;
        let mut wake = false;
        if let Some(dest) = &ending.destination {
            let record = destination_record(
                &inv,
                condition,
                now,
                &ending.request_payload,
                &ending.function_error,
                &ending.response_payload,
            );
            let payload = ending.request_payload.as_slice();
            let (used, queue) = self.destination_in(
                &mut batch,
                now,
                (dest, ending.destination_exists),
                &inv,
                (payload, &record),
            )?;
            if !success && matches!(used, Destination::Dlq(_)) {
                inv.state = State::DeadLettered;
            }
            wake = matches!(used, Destination::Function(_));
            inv.destination = Some(used);
            dead_letter_queue = queue;
        }
        self.invocations().put(&mut batch, rid.as_bytes(), &inv)?;
        self.done().put(&mut batch, due_key(now, &rid), &())?;
        self.committer.commit(batch).await?;
        self.finished.fetch_add(1, Ordering::Relaxed);
        if let Some(q) = dead_letter_queue {
            lock(&self.dlq).entry(q).or_insert((1, 0)).1 += 1;
        }
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Adds the destination of the end of `inv` to `batch`: a new event for a function
    /// destination, or a dead letter. Returns the destination actually used (a missing
    /// destination function falls back to the default dead-letter queue) and the dead-letter
    /// queue written to.
    fn destination_in(
        &self,
        batch: &mut Batch<'static>,
        now: u64,
        (dest, function_exists): (&Destination, bool),
        inv: &Invocation,
        (payload, record): (&[u8], &str),
    ) -> Result<(Destination, Option<String>), QueueError> {
        let queue = match dest {
            Destination::Function(name) if function_exists => {
                let rid = uuid::Uuid::new_v4().to_string();
                self.enqueue_in(batch, now, &rid, (name, ""), record.as_bytes(), "")?;
                return Ok((dest.clone(), None));
            }
            Destination::Function(_) => lamina_proto::domain::DEFAULT_FAILURE_DLQ,
            Destination::Dlq(queue) => queue.as_str(),
        };
        let seq = {
            let mut dlq = lock(&self.dlq);
            let e = dlq.entry(queue.to_string()).or_insert((1, 0));
            let seq = e.0;
            e.0 += 1;
            seq
        };
        let letter = DeadLetter {
            seq,
            request_id: inv.request_id.clone(),
            function_name: inv.function_name.clone(),
            condition: inv
                .condition
                .map(|c| c.as_str().to_string())
                .unwrap_or_default(),
            error: inv.last_error.clone(),
            attempts: inv.attempts,
            timestamp_ms: now,
            record: record.to_string(),
            payload: payload.to_vec(),
            qualifier: inv.qualifier.clone(),
        };
        self.dead_letter_table()
            .put(batch, dlq_key(queue, seq), &letter)?;
        Ok((Destination::Dlq(queue.to_string()), Some(queue.to_string())))
    }
}
