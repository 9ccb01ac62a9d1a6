//! The invocation pipeline: the one way the controller runs a function on a worker. Synchronous
//! invocation (`api/invoke.rs`), streamed invocation (`api/stream.rs`) and the async queue's
//! deliveries ([`WorkerInvoker`]) are thin adapters over it, and so is any service that runs a
//! function.
//!
//! 1. **resolve**: `crate::resolve::resolve` turns `NAME[:QUALIFIER]` into the version that runs
//!    (an alias routes by weight);
//! 2. **prepare** ([`prepare`]): a concurrency permit (over a limit: throttled at once) and a
//!    placement on a worker (waiting up to `placement_wait` for a cold-start slot). The
//!    [`Prepared`] invocation gives both back when it is dropped, whatever happens in between;
//! 3. **call**: [`Prepared::call`] waits for the whole response (a buffered sink),
//!    [`Prepared::start_stream`] + `Streaming::run` pass each chunk to a [`ChunkSink`] as it
//!    arrives. Both watch the worker's heartbeats, so a lost worker ends the call early, and
//!    classify a failed call's status in one place (`WorkerError::classify`);
//! 4. **log**: the invocation's log lines are queued for the store's log writer.
//!
//! The async path adds the durable queue in front: `api::events::enqueue` writes the event
//! (synced) before the caller gets 202; the dispatcher leases it for the resolved versions'
//! timeout ([`WorkerInvoker`]'s `function_timeout`) and runs it through the same steps,
//! turning the result into the queue's `Outcome` (`delivery::outcome`).
use std::sync::Arc;
use std::time::Duration;

use lamina_proto::domain::FunctionConfig;

use crate::concurrency::{ConcurrencyError, Permit, ThrottleReason};
use crate::context::Context;
use crate::registry::{PlaceError, Placement, Registry};
use crate::resolve::{ResolveError, Resolved};
use crate::worker_clients::WorkerError;

mod call;
mod delivery;
mod logs;
#[cfg(test)]
mod tests;

pub(crate) use call::ChunkSink;
pub(crate) use delivery::WorkerInvoker;
pub(crate) use logs::{log_tail, store_log, LOG_TAIL_BYTES};

/// Headroom on top of the function timeout for the gRPC call: a cold start (code fetch, unzip,
/// sandbox start) happens before the function's own clock starts.
pub(crate) const COLD_START_HEADROOM: Duration = Duration::from_secs(60);

/// Why an invocation did not complete. A function error is not one: the call succeeded and the
/// worker's response carries it.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    /// The function, version or alias does not exist, or could not be looked up.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Over a concurrency limit, or every worker at its bound of cold starts: it did not run.
    #[error(transparent)]
    Throttled(#[from] ConcurrencyError),
    #[error("no worker is available: start one with `lamina-worker --controller ...`")]
    NoWorker,
    /// The worker refused, failed or was lost: the function may or may not have run.
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// What to send the worker.
#[derive(Debug, Clone, Default)]
pub(crate) struct Call {
    pub request_id: String,
    pub payload: Vec<u8>,
    /// The caller's base64 client context (Lambda's `ClientContext`), "" when none.
    pub client_context: String,
}

/// An invocation with its version resolved, its concurrency permit and its worker: ready to
/// call. Dropping it gives the permit and the placement back (a placement not finished by a
/// call counts as failed).
pub(crate) struct Prepared {
    resolved: Resolved,
    placement: Placement,
    registry: Arc<Registry>,
    _permit: Permit,
    finished: bool,
}

/// Takes a concurrency permit for `resolved` and places it on a worker.
pub(crate) async fn prepare(
    ctx: &Context,
    resolved: Resolved,
) -> Result<Prepared, InvocationError> {
    let spec = &resolved.config.spec;
    // Held until the invocation is over: it counts against the function's reservation or the
    // unreserved pool (over it: throttled at once).
    let permit = ctx.limiter.acquire(&spec.name)?;
    let placement = place(ctx, &resolved.config).await?;
    tracing::debug!(function = %spec.name, worker_id = %placement.worker_id, warm = placement.warm, "invocation placed");
    Ok(Prepared {
        resolved,
        placement,
        registry: Arc::clone(&ctx.registry),
        _permit: permit,
        finished: false,
    })
}

/// Chooses the worker; waits (up to `ctx.placement_wait`) while every worker is at its bound of
/// cold starts in flight, then throttles.
async fn place(ctx: &Context, config: &FunctionConfig) -> Result<Placement, InvocationError> {
    let spec = &config.spec;
    ctx.registry
        .place_waiting(
            &spec.name,
            &config.revision_id,
            spec.memory_mb,
            ctx.placement_wait,
        )
        .await
        .map_err(|e| match e {
            PlaceError::NoWorker => InvocationError::NoWorker,
            e @ PlaceError::AtColdStartBound { .. } => ConcurrencyError::Throttled {
                reason: ThrottleReason::FunctionInvocationRateLimitExceeded,
                detail: e.to_string(),
            }
            .into(),
        })
}

impl Prepared {
    /// The worker it runs on.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The worker's call is over: it keeps the sandbox warm when it succeeded. Once.
    fn finish(&mut self, succeeded: bool) {
        if !std::mem::replace(&mut self.finished, true) {
            self.registry.finish(&self.placement, succeeded);
        }
    }

    /// The function's timeout and the gRPC call's (the timeout plus the cold-start headroom).
    fn timeouts(&self) -> (Duration, Duration) {
        let timeout = Duration::from_secs(u64::from(self.resolved.config.spec.timeout_s));
        (timeout, timeout + COLD_START_HEADROOM)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        self.finish(false);
    }
}
