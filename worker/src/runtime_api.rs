//! The Lambda Runtime API (`/2018-06-01/runtime/...`), served by the worker on the listening socket each
//! sandbox passes back (bound to 127.0.0.1:9001 inside the sandbox's network namespace).
//!
//! One [`RuntimeApi`] per sandbox. [`RuntimeApi::invoke`] queues one invocation for the runtime's
//! `GET /runtime/invocation/next` (a long poll) and resolves with what the runtime posts back:
//! `POST /runtime/invocation/{id}/response`, `POST /runtime/invocation/{id}/error` or
//! `POST /runtime/init/error`. The wire behaviour follows AWS (status codes, headers, error bodies),
//! so unmodified runtime clients (awslambdaric, aws-lambda-ric, `lambda_runtime`, aws-lambda-go) work.
//!
//! A response posted with `Lambda-Runtime-Function-Response-Mode: streaming` resolves at once with
//! [`InvocationOutcome::Streaming`]: its chunks arrive on the [`ResponseStream`] as the runtime sends
//! them, and the error trailers (`Lambda-Runtime-Function-Error-Type`, `-Error-Body` base64) end it
//! with [`StreamEvent::Error`].
//!
//! - `state` — the per-sandbox state machine (queued -> fetched -> answered, abandoned, init error),
//!   the claim of an answer before its body is read, the body budget.
//! - `conn` — connections: the cap per sandbox, hyper's header limits, the read deadline.
//! - `http` — routing, bodies with the 6 MB limit read as they arrive, the Lambda error JSON.
//! - `stream` — streamed responses: chunks passed on as read, error trailers, the 20 MB limit.
//!
//! What a sandbox can make the worker spend is bounded ([`Limits`]): at most
//! [`MAX_CONNECTIONS`] connections (fds and tasks) per sandbox, the rest are answered 429 and
//! closed; headers of at most [`MAX_HEADERS`] fields and [`MAX_HEADER_BYTES`]; a body is only read
//! once its path and request id were checked (the invocation in flight, fetched, not being
//! answered on another connection), with the 6 MB limit enforced as it streams in, and the bodies
//! buffered at once across the sandbox's connections within [`BUFFER_BUDGET`]; a request whose
//! bytes started arriving must complete its headers, and a body must make progress, within
//! [`READ_TIMEOUT`].

mod conn;
mod http;
mod state;
mod stream;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_limits;
#[cfg(test)]
mod tests_stream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use state::{Enqueue, Shared};

/// Largest response (or error) body a runtime may post, in bytes, as in Lambda (6 MB).
pub const MAX_RESPONSE_BYTES: usize = 6_291_556;
/// Largest streamed response, in bytes, as in Lambda (20 MB).
pub const MAX_STREAM_BYTES: usize = 20 * 1024 * 1024;
/// Connections served at once per sandbox. A runtime needs one (Lamina's bootstraps, awslambdaric's
/// curl handle, aws-lambda-ric's agent with `maxSockets: 1`) or two (`lambda_runtime`'s and Go's
/// pooled clients: `next` on one while a streamed response goes out on another); 8 leaves room for
/// a helper process in the sandbox and for connections a client has not closed yet, while a
/// sandbox can hold at most 8 of the worker's fds and tasks.
pub const MAX_CONNECTIONS: usize = 8;
/// Bytes of request bodies one sandbox can make the worker buffer at once, across its connections:
/// one response at the 6 MB limit plus room for a small `init/error` beside it.
pub const BUFFER_BUDGET: usize = MAX_RESPONSE_BYTES + (256 << 10);
/// Header fields per request (hyper answers 431 past it). Runtime clients send fewer than 10.
pub const MAX_HEADERS: usize = 64;
/// Bytes of a request line and headers (and of a streamed response's trailers); 431 past it.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// A request whose first bytes arrived must have all its headers within this, and a body being
/// read must deliver its next piece within this; else the connection is closed. An idle
/// connection (no request started, e.g. of a frozen sandbox) and a `GET next` waiting for an event
/// are not timed.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The bounds of one sandbox's Runtime API (see the module docs); [`Limits::default`] is the
/// constants above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub buffer_budget: usize,
    pub read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            buffer_budget: BUFFER_BUDGET,
            read_timeout: READ_TIMEOUT,
        }
    }
}

/// One event handed to the runtime by `GET /runtime/invocation/next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    /// Epoch milliseconds -> `Lambda-Runtime-Deadline-Ms`, counted from `dispatched_at`. The clock
    /// starts when the runtime's init is done, as in Lambda: an event queued before the runtime's
    /// first `GET next` gets a deadline later by as much as the init took after `dispatched_at`.
    pub deadline_ms: u64,
    /// When the invocation was handed to this sandbox.
    pub dispatched_at: Instant,
    pub invoked_function_arn: String,
    /// -> `Lambda-Runtime-Trace-Id`.
    pub trace_id: String,
    /// -> `Lambda-Runtime-Client-Context` (omitted when `None`).
    pub client_context: Option<String>,
}

/// How an invocation ended, as far as the Runtime API can tell.
#[derive(Debug, PartialEq, Eq)]
pub enum InvocationOutcome {
    /// `POST /runtime/invocation/{id}/response`.
    Response(Bytes),
    /// `POST /runtime/invocation/{id}/response` in streaming mode: the body is still arriving.
    Streaming(ResponseStream),
    /// `POST /runtime/invocation/{id}/error`; `body` is what the runtime posted.
    Error { error_type: String, body: Bytes },
    /// The response (or error) body was over [`MAX_RESPONSE_BYTES`]; the runtime got 413.
    ResponseTooLarge { size: usize },
    /// `POST /runtime/init/error`, now or before this invocation was queued.
    InitError { error_type: String, body: Bytes },
}

/// One event of a streamed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// A piece of the body, as the runtime sent it.
    Chunk(Bytes),
    /// The runtime's error trailers: the stream ends with this error.
    Error { error_type: String, body: Bytes },
    /// The body went over [`MAX_STREAM_BYTES`]; the runtime got 413.
    TooLarge { size: usize },
    /// The body could not be read to its end (the runtime went away mid-stream).
    Broken(String),
}

/// The body of a streamed response, read as the runtime sends it. Ends (`None`) after the last
/// chunk, or after an error event.
#[derive(Debug)]
pub struct ResponseStream {
    /// The `Content-Type` the runtime posted, if any.
    pub content_type: Option<String>,
    rx: mpsc::Receiver<StreamEvent>,
    /// Tells streams apart (for `PartialEq`): every stream is a distinct channel.
    id: u64,
}

impl ResponseStream {
    pub(crate) fn new(content_type: Option<String>, rx: mpsc::Receiver<StreamEvent>) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        ResponseStream {
            content_type,
            rx,
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The next event; `None` once the body ended.
    pub async fn next(&mut self) -> Option<StreamEvent> {
        self.rx.recv().await
    }
}

impl PartialEq for ResponseStream {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for ResponseStream {}

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
    /// is cancelled, within the default [`Limits`]. Must be called from within a tokio runtime (the
    /// server runs on it).
    pub fn serve(
        listener: std::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<RuntimeApi> {
        Self::serve_with(listener, shutdown, Limits::default())
    }

    /// [`RuntimeApi::serve`] within `limits`.
    pub fn serve_with(
        listener: std::net::TcpListener,
        shutdown: CancellationToken,
        limits: Limits,
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
        let shared = Arc::new(Shared::new(limits));
        handle.spawn(conn::accept_loop(listener, shared.clone(), shutdown));
        Ok(RuntimeApi { shared })
    }

    /// When the runtime first called `GET /runtime/invocation/next` (its init finished); `None` before.
    pub fn init_done_at(&self) -> Option<Instant> {
        self.shared.init_done_at()
    }

    /// Whether an invocation is queued that the runtime has not taken with `GET next` yet.
    pub fn event_pending(&self) -> bool {
        self.shared.event_pending()
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
