//! The Lambda Runtime API (`/2018-06-01/runtime/...`), served by the worker on the listening socket each
//! sandbox passes back (bound to 127.0.0.1:9001 inside the sandbox's network namespace).
//!
//! One [`RuntimeApi`] per sandbox. [`RuntimeApi::invoke`] queues one invocation for the runtime's
//! `GET /runtime/invocation/next` (a long poll) and resolves with what the runtime posts back:
//! `POST /runtime/invocation/{id}/response`, `POST /runtime/invocation/{id}/error` or
//! `POST /runtime/init/error`. The wire behaviour follows AWS (status codes, headers, error bodies),
//! so unmodified runtime clients (awslambdaric, aws-lambda-ric, `lambda_runtime`, aws-lambda-go) work.
//!
//! - `state` — the per-sandbox state machine (queued -> fetched -> answered, abandoned, init error).
//! - `http` — the hyper HTTP/1.1 server: routing, bodies with the 6 MB limit, the Lambda error JSON.

mod http;
mod state;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use state::{Enqueue, Shared};

/// Largest response (or error) body a runtime may post, in bytes, as in Lambda (6 MB).
pub const MAX_RESPONSE_BYTES: usize = 6_291_556;

/// One event handed to the runtime by `GET /runtime/invocation/next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    /// Epoch milliseconds -> `Lambda-Runtime-Deadline-Ms`.
    pub deadline_ms: u64,
    pub invoked_function_arn: String,
    /// -> `Lambda-Runtime-Trace-Id`.
    pub trace_id: String,
    /// -> `Lambda-Runtime-Client-Context` (omitted when `None`).
    pub client_context: Option<String>,
}

/// How an invocation ended, as far as the Runtime API can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvocationOutcome {
    /// `POST /runtime/invocation/{id}/response`.
    Response(Bytes),
    /// `POST /runtime/invocation/{id}/error`; `body` is what the runtime posted.
    Error { error_type: String, body: Bytes },
    /// The response (or error) body was over [`MAX_RESPONSE_BYTES`]; the runtime got 413.
    ResponseTooLarge { size: usize },
    /// `POST /runtime/init/error`, now or before this invocation was queued.
    InitError { error_type: String, body: Bytes },
}

/// What the runtime posted to `/runtime/init/error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitFailure {
    pub error_type: String,
    pub body: Bytes,
}

/// The Runtime API of one sandbox. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct RuntimeApi {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RuntimeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeApi")
            .field("init_done_at", &self.init_done_at())
            .finish_non_exhaustive()
    }
}

impl RuntimeApi {
    /// Serves the Runtime API on `listener` (std, non-blocking, already listening) until `shutdown`
    /// is cancelled. Must be called from within a tokio runtime (the server runs on it).
    pub fn serve(
        listener: std::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<RuntimeApi> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            std::io::Error::other(
                "the runtime api must be served from within a tokio runtime: call serve from async code",
            )
        })?;
        listener.set_nonblocking(true)?;
        let listener = {
            let _guard = handle.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let shared = Arc::new(Shared::new());
        handle.spawn(http::accept_loop(listener, shared.clone(), shutdown));
        Ok(RuntimeApi { shared })
    }

    /// When the runtime first called `GET /runtime/invocation/next` (its init finished); `None` before.
    pub fn init_done_at(&self) -> Option<Instant> {
        self.shared.init_done_at()
    }

    /// What the runtime posted to `/runtime/init/error`, if it did.
    pub fn init_failure(&self) -> Option<InitFailure> {
        self.shared.init_failure()
    }

    /// Queues `inv` for the runtime's `GET next` and resolves with its outcome. One at a time per
    /// sandbox: a second concurrent call waits until the first one is answered or abandoned.
    /// Dropping the future abandons the invocation (later posts for its id get 400 `InvalidRequestID`).
    /// If the runtime posted `init/error` (before or while waiting) resolves
    /// [`InvocationOutcome::InitError`].
    pub async fn invoke(&self, inv: Invocation) -> InvocationOutcome {
        let mut inv = inv;
        let (seq, rx) = loop {
            let slot_free = self.shared.slot_free.notified();
            tokio::pin!(slot_free);
            slot_free.as_mut().enable();
            match self.shared.enqueue(inv) {
                Enqueue::Queued { seq, rx } => break (seq, rx),
                Enqueue::InitFailed(f) => {
                    return InvocationOutcome::InitError {
                        error_type: f.error_type,
                        body: f.body,
                    }
                }
                Enqueue::Busy(back) => {
                    inv = back;
                    slot_free.await;
                }
            }
        };
        let _abandon = AbandonGuard {
            shared: &self.shared,
            seq,
        };
        match rx.await {
            Ok(outcome) => outcome,
            // The sender is only dropped unanswered when this invocation is abandoned, which only
            // this future does (on drop); kept total rather than panicking.
            Err(_) => InvocationOutcome::InitError {
                error_type: "Runtime.Unknown".to_owned(),
                body: Bytes::from_static(
                    br#"{"errorMessage":"the runtime api dropped the invocation","errorType":"Runtime.Unknown"}"#,
                ),
            },
        }
    }
}

/// Abandons the invocation `seq` when the `invoke` future is dropped before its outcome arrived.
struct AbandonGuard<'a> {
    shared: &'a Shared,
    seq: u64,
}

impl Drop for AbandonGuard<'_> {
    fn drop(&mut self) {
        self.shared.abandon(self.seq);
    }
}
