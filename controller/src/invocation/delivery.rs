//! The async queue's deliveries through the pipeline: the queue's [`Invoker`] on the workers.
use std::sync::Arc;
use std::time::Duration;

use lamina_proto::v1;

use super::{prepare, Call, InvocationError};
use crate::context::Context;
use crate::queue::{Invoker, Outcome};
use crate::resolve::{lookup, resolve};

/// Runs the deliveries of the async queue on the workers, like a synchronous invocation.
pub(crate) struct WorkerInvoker {
    pub ctx: Arc<Context>,
}

#[tonic::async_trait]
impl Invoker for WorkerInvoker {
    async fn function_timeout(
        &self,
        name: &str,
        qualifier: &str,
    ) -> Result<Option<Duration>, String> {
        // The version (or either version of an alias) that the delivery may run: its lease must
        // outlast that version's timeout, whatever `$LATEST`'s is.
        match lookup(&self.ctx, name, qualifier).await {
            Ok(target) => Ok(Some(target.longest_timeout())),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn ready(&self) -> bool {
        self.ctx.registry.any_up()
    }

    async fn invoke(
        &self,
        function_name: &str,
        qualifier: &str,
        request_id: &str,
        payload: Vec<u8>,
    ) -> Outcome {
        // Resolved at each delivery: an alias routes every attempt by its current configuration.
        let resolved = match resolve(&self.ctx, function_name, qualifier).await {
            Ok(r) => r,
            Err(e) => return Outcome::SystemError(e.to_string()),
        };
        let executed_version = resolved.executed_version.clone();
        // Over a concurrency limit or the cold-start bound, or no worker: the event waits in the
        // queue.
        let mut prepared = match prepare(&self.ctx, resolved).await {
            Ok(p) => p,
            Err(e) => return Outcome::Throttled(e.to_string()),
        };
        let call = Call {
            request_id: request_id.to_string(),
            payload,
            client_context: String::new(),
        };
        outcome(prepared.call(&self.ctx, call).await, executed_version)
    }
}

/// What a delivery's result means to the queue: the function's success or error, a worker
/// without room (it did not run: throttled, no attempt counted) or a system error (it may have
/// run).
pub(crate) fn outcome(
    result: Result<v1::WorkerInvokeResponse, InvocationError>,
    executed_version: String,
) -> Outcome {
    match result {
        Ok(response) if response.function_error.is_empty() => Outcome::Success {
            payload: response.payload,
            executed_version,
        },
        Ok(response) => Outcome::FunctionError {
            kind: response.function_error,
            payload: response.payload,
            executed_version,
        },
        Err(InvocationError::Worker(e)) if e.is_worker_full() => Outcome::Throttled(e.to_string()),
        Err(e) => Outcome::SystemError(e.to_string()),
    }
}
