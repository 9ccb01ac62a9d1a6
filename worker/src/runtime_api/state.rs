//! The per-sandbox Runtime API state machine.
//!
//! At most one invocation is current. It is *queued* until the runtime's `GET next` takes it
//! (*fetched*), then *answered* by a response, an error or an init error, or *abandoned* when the
//! caller drops its `invoke` future. Ids of the last few answered invocations are remembered so that a
//! second answer gets 403 `InvalidStateTransition` rather than 400 `InvalidRequestID`.
//!
//! A buffered answer is *claimed* ([`Shared::claim`]) before its body is read: only the fetched
//! invocation's id can be claimed, once at a time, so a runtime posting to unknown ids or posting
//! the same answer on many connections makes the worker read (and buffer) nothing. What bodies are
//! buffered at once is bounded per sandbox by [`Shared::reserve`] (the budget).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use hyper::header::HeaderValue;
use tokio::sync::{oneshot, Notify};

use super::{InitFailure, Invocation, InvocationOutcome, Limits};

/// How many answered request ids are remembered for 403 on a repeated answer.
const ANSWERED_MEMORY: usize = 16;

/// Why an answer (response, error) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reject {
    /// 400 `InvalidRequestID`: no such invocation (never existed, or abandoned).
    UnknownId,
    /// 403 `InvalidStateTransition`: not fetched yet, or already answered.
    InvalidState,
}

/// The event of a fetched invocation, moved out of the state for the `GET next` response.
pub(crate) struct NextEvent {
    pub(crate) payload: Bytes,
    pub(crate) request_id: HeaderValue,
    /// Epoch ms, counted from `dispatched_at` (moved when taken: see [`Shared::take_next`]).
    pub(crate) deadline_ms: u64,
    pub(crate) dispatched_at: Instant,
    pub(crate) function_arn: HeaderValue,
    pub(crate) trace_id: HeaderValue,
    pub(crate) client_context: Option<HeaderValue>,
}

pub(crate) enum Enqueue {
    Queued {
        seq: u64,
        rx: oneshot::Receiver<InvocationOutcome>,
    },
    /// Another invocation is current; the invocation is handed back.
    Busy(Invocation),
    InitFailed(InitFailure),
}

struct Current {
    seq: u64,
    request_id: String,
    /// `Some` while queued, taken by `GET next`.
    event: Option<NextEvent>,
    /// A response or error body for it is being read ([`Shared::claim`]).
    claimed: bool,
    tx: oneshot::Sender<InvocationOutcome>,
}

#[derive(Default)]
struct State {
    next_seq: u64,
    current: Option<Current>,
    answered: VecDeque<String>,
    init_error: Option<InitFailure>,
}

impl State {
    fn remember_answered(&mut self, id: String) {
        if self.answered.len() == ANSWERED_MEMORY {
            self.answered.pop_front();
        }
        self.answered.push_back(id);
    }

    fn reject_for(&self, id: &str) -> Reject {
        if self.answered.iter().any(|a| a == id) {
            Reject::InvalidState
        } else {
            Reject::UnknownId
        }
    }
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Woken when an invocation is queued (for `GET next`).
    pub(crate) next_ready: Notify,
    /// Woken when the current slot becomes free (for a waiting `invoke`).
    pub(crate) slot_free: Notify,
    init_done: OnceLock<Instant>,
    pub(crate) limits: Limits,
    /// Bytes of request bodies buffered now, across every connection of the sandbox.
    buffered: AtomicUsize,
}

/// The right to answer the fetched invocation: taken before its body is read. Dropped without
/// [`Claim::answer`] (the body could not be read), the invocation can be answered again.
pub(crate) struct Claim<'a> {
    shared: &'a Shared,
    seq: u64,
}

impl Claim<'_> {
    /// Answers the claimed invocation (`UnknownId` if it was abandoned meanwhile).
    pub(crate) fn answer(self, outcome: InvocationOutcome) -> Result<(), Reject> {
        let this = std::mem::ManuallyDrop::new(self);
        this.shared.complete(this.seq, outcome)
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if let Some(c) = st.current.as_mut().filter(|c| c.seq == self.seq) {
            c.claimed = false;
        }
    }
}

/// Bytes of the sandbox's body budget held by one request; given back on drop.
pub(crate) struct Reservation<'a> {
    shared: &'a Shared,
    bytes: usize,
}

impl Reservation<'_> {
    /// Takes `more` bytes of the budget too; `Err(budget)` (and nothing taken) when over it.
    pub(crate) fn grow(&mut self, more: usize) -> Result<(), usize> {
        self.shared.take_budget(more)?;
        self.bytes += more;
        Ok(())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.shared.buffered.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Shared {
    pub(crate) fn new(limits: Limits) -> Shared {
        Shared {
            limits,
            buffered: AtomicUsize::new(0),
            state: Mutex::new(State {
                answered: VecDeque::with_capacity(ANSWERED_MEMORY),
                ..State::default()
            }),
            next_ready: Notify::new(),
            slot_free: Notify::new(),
            init_done: OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; recover the state rather than propagate a poison.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn init_done_at(&self) -> Option<Instant> {
        self.init_done.get().copied()
    }

    pub(crate) fn event_pending(&self) -> bool {
        self.lock()
            .current
            .as_ref()
            .is_some_and(|c| c.event.is_some())
    }

    pub(crate) fn init_failure(&self) -> Option<InitFailure> {
        self.lock().init_error.clone()
    }

    pub(crate) fn mark_init_done(&self) {
        if self.init_done.get().is_none() {
            // A concurrent first `GET next` may win; either instant is right.
            let _ = self.init_done.set(Instant::now());
        }
    }

    pub(crate) fn enqueue(&self, inv: Invocation) -> Enqueue {
        let mut st = self.lock();
        if let Some(f) = &st.init_error {
            return Enqueue::InitFailed(f.clone());
        }
        if st.current.is_some() {
            return Enqueue::Busy(inv);
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let (tx, rx) = oneshot::channel();
        let event = NextEvent {
            request_id: header_value(&inv.request_id),
            deadline_ms: inv.deadline_ms,
            dispatched_at: inv.dispatched_at,
            function_arn: header_value(&inv.invoked_function_arn),
            trace_id: header_value(&inv.trace_id),
            client_context: inv.client_context.as_deref().map(header_value),
            payload: inv.payload,
        };
        st.current = Some(Current {
            seq,
            request_id: inv.request_id,
            event: Some(event),
            claimed: false,
            tx,
        });
        drop(st);
        self.next_ready.notify_waiters();
        Enqueue::Queued { seq, rx }
    }

    /// Takes the queued invocation's event for `GET next`, if one is queued. The function's clock
    /// starts when the runtime's init is done (its first `GET next`): an event dispatched before
    /// that gets its deadline moved by the rest of the init.
    pub(crate) fn take_next(&self) -> Option<NextEvent> {
        let mut st = self.lock();
        let mut ev = st.current.as_mut().and_then(|c| c.event.take())?;
        drop(st);
        if let Some(init_done) = self.init_done_at() {
            let late = init_done.saturating_duration_since(ev.dispatched_at);
            ev.deadline_ms += late.as_millis() as u64;
        }
        Some(ev)
    }

    /// Answers the fetched invocation `id` with `outcome` at once (a streamed response, whose
    /// body is passed on rather than buffered).
    pub(crate) fn answer(&self, id: &str, outcome: InvocationOutcome) -> Result<(), Reject> {
        let claim = self.claim(id)?;
        claim.answer(outcome)
    }

    /// Claims the answer of the fetched invocation `id` before its body is read: `UnknownId` when
    /// `id` is not the invocation in flight, `InvalidState` when it was not fetched yet, was
    /// answered, or another connection is reading an answer for it.
    pub(crate) fn claim(&self, id: &str) -> Result<Claim<'_>, Reject> {
        let mut st = self.lock();
        match st.current.as_mut() {
            Some(c) if c.request_id == id => {
                if c.event.is_some() || c.claimed {
                    return Err(Reject::InvalidState);
                }
                c.claimed = true;
                Ok(Claim {
                    shared: self,
                    seq: c.seq,
                })
            }
            _ => Err(st.reject_for(id)),
        }
    }

    fn complete(&self, seq: u64, outcome: InvocationOutcome) -> Result<(), Reject> {
        let mut st = self.lock();
        let Some(c) = st.current.take_if(|c| c.seq == seq) else {
            return Err(Reject::UnknownId);
        };
        st.remember_answered(c.request_id);
        drop(st);
        // The receiver is gone only if the caller abandoned the invocation at this very moment.
        let _ = c.tx.send(outcome);
        self.slot_free.notify_waiters();
        Ok(())
    }

    /// Reserves `bytes` of the sandbox's body budget ([`Limits::buffer_budget`]) for one request
    /// body; `Err(budget)` when the bodies being read on its other connections leave too little.
    pub(crate) fn reserve(&self, bytes: usize) -> Result<Reservation<'_>, usize> {
        self.take_budget(bytes)?;
        Ok(Reservation {
            shared: self,
            bytes,
        })
    }

    fn take_budget(&self, bytes: usize) -> Result<(), usize> {
        let budget = self.limits.buffer_budget;
        self.buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                now.checked_add(bytes).filter(|total| *total <= budget)
            })
            .map(|_| ())
            .map_err(|_| budget)
    }

    /// Bytes of bodies buffered now (for tests).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Acquire)
    }

    /// Records the runtime's init failure; the current invocation (if any) and every later one
    /// resolve with it. The first failure posted is kept.
    pub(crate) fn init_failed(&self, failure: InitFailure) {
        let mut st = self.lock();
        let failure = st.init_error.get_or_insert(failure).clone();
        let current = st.current.take();
        drop(st);
        if let Some(c) = current {
            // As in `answer`: a dropped receiver means the caller is no longer interested.
            let _ = c.tx.send(InvocationOutcome::InitError {
                error_type: failure.error_type,
                body: failure.body,
            });
            self.slot_free.notify_waiters();
        }
    }

    /// Forgets the invocation `seq` if it is still current (its caller dropped the `invoke` future).
    pub(crate) fn abandon(&self, seq: u64) {
        let mut st = self.lock();
        if st.current.as_ref().is_some_and(|c| c.seq == seq) {
            st.current = None;
            drop(st);
            self.slot_free.notify_waiters();
        }
    }
}

/// A header value from caller-provided text. Control characters (not allowed in HTTP header values,
/// e.g. the newlines of pretty-printed client-context JSON) become spaces.
fn header_value(s: &str) -> HeaderValue {
    match HeaderValue::from_str(s) {
        Ok(v) => v,
        Err(_) => {
            let cleaned: Vec<u8> = s
                .bytes()
                .map(|b| if b < 0x20 || b == 0x7f { b' ' } else { b })
                .collect();
            HeaderValue::from_bytes(&cleaned).unwrap_or_else(|_| HeaderValue::from_static(""))
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn header_value_replaces_control_characters() {
        assert_eq!(
            header_value("{\n \"a\": 1\r\n}"),
            HeaderValue::from_static("{  \"a\": 1  }")
        );
        assert_eq!(header_value("Root=1-abc"), "Root=1-abc");
        // UTF-8 (obs-text) is allowed as is.
        assert_eq!(header_value("é").as_bytes(), "é".as_bytes());
    }
}
