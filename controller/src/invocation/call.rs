//! Calling the worker: `Worker.Invoke` with the whole response at once (a buffered sink), or
//! `Worker.InvokeStream` with each chunk passed on as the runtime streams it. Either way a lost
//! worker ends the call early, a failed call's status is classified by `WorkerError::classify`,
//! the placement is finished as soon as the worker is done and the log is stored.
use std::time::Duration;

use lamina_proto::v1::{self, worker_invoke_stream_message::Event as WorkerEvent};

use super::logs::new_trace_id;
use super::{store_log, Call, InvocationError, Prepared};
use crate::context::{now_ms, Context};
use crate::worker_clients::{worker_down, WorkerError};

/// Where a streamed invocation's chunks go, in order, as they arrive.
#[tonic::async_trait]
pub(crate) trait ChunkSink: Send {
    /// One chunk of the response. A sink whose reader went away drops it: the invocation reads
    /// on, so that its log is stored.
    async fn chunk(&mut self, chunk: Vec<u8>);
}

impl Prepared {
    /// The worker's request, and how long the call waits for it.
    fn request(
        &self,
        ctx: &Context,
        call: Call,
    ) -> (tonic::Request<v1::WorkerInvokeRequest>, Duration) {
        let (_, call_timeout) = self.timeouts();
        let mut request = tonic::Request::new(v1::WorkerInvokeRequest {
            request_id: call.request_id,
            function: Some((&self.resolved.config).into()),
            payload: call.payload,
            // When this call stops waiting: the worker refuses or stops the work past it.
            deadline_ms: now_ms() + call_timeout.as_millis() as u64,
            client_context: call.client_context,
            trace_id: new_trace_id(),
            invoked_function_arn: self.resolved.invoked_arn.clone(),
            // The execution role's credentials for a sandbox this call starts (none without one).
            credentials: ctx.sessions.credentials_for(&self.resolved.config),
        });
        request.set_timeout(call_timeout);
        (request, call_timeout)
    }

    /// Runs the invocation and returns the worker's whole response (a function error is in it),
    /// after storing its log.
    pub(crate) async fn call(
        &mut self,
        ctx: &Context,
        call: Call,
    ) -> Result<v1::WorkerInvokeResponse, InvocationError> {
        let request_id = call.request_id.clone();
        let result = self.call_worker(ctx, call).await;
        self.finish(result.is_ok());
        let response = result?;
        store_log(ctx, &self.resolved.config.spec.name, &request_id, &response).await;
        Ok(response)
    }

    async fn call_worker(
        &self,
        ctx: &Context,
        call: Call,
    ) -> Result<v1::WorkerInvokeResponse, WorkerError> {
        let (worker_id, address) = (&self.placement.worker_id, &self.placement.address);
        let mut client = ctx.workers.client(worker_id, address)?;
        let (request, call_timeout) = self.request(ctx, call);
        tokio::select! {
            result = client.invoke(request) => result
                .map(tonic::Response::into_inner)
                .map_err(|status| {
                    WorkerError::classify(&ctx.registry, worker_id, address, status, call_timeout)
                }),
            () = worker_down(&ctx.registry, worker_id, ctx.lost_worker_check()) => {
                Err(WorkerError::lost(worker_id, address))
            }
        }
    }

    /// Starts a streamed invocation: the worker accepted it when this returns; [`Streaming::run`]
    /// passes its chunks on. Errors before that (the worker refused or is unreachable) are
    /// returned here, with the placement given back.
    pub(crate) async fn start_stream(
        self,
        ctx: &Context,
        call: Call,
    ) -> Result<Streaming, InvocationError> {
        let (worker_id, address) = (&self.placement.worker_id, &self.placement.address);
        let mut client = ctx.workers.client(worker_id, address)?;
        let request_id = call.request_id.clone();
        let (request, call_timeout) = self.request(ctx, call);
        let upstream = match client.invoke_stream(request).await {
            Ok(s) => s.into_inner(),
            Err(status) => {
                let e =
                    WorkerError::classify(&ctx.registry, worker_id, address, status, call_timeout);
                return Err(e.into());
            }
        };
        Ok(Streaming {
            prepared: self,
            upstream,
            request_id,
            call_timeout,
        })
    }
}

/// A streamed invocation the worker accepted.
pub(crate) struct Streaming {
    prepared: Prepared,
    upstream: tonic::Streaming<v1::WorkerInvokeStreamMessage>,
    request_id: String,
    call_timeout: Duration,
}

impl Streaming {
    /// Passes every chunk to `sink` until the worker's end of the invocation (returned, with the
    /// function error if any, after its log is stored), a failed stream or a lost worker.
    pub(crate) async fn run(
        mut self,
        ctx: &Context,
        sink: &mut impl ChunkSink,
    ) -> Result<v1::WorkerInvokeResponse, InvocationError> {
        let placement = self.prepared.placement.clone();
        let (worker_id, address) = (&placement.worker_id, &placement.address);
        let down = worker_down(&ctx.registry, worker_id, ctx.lost_worker_check());
        tokio::pin!(down);
        let ended: Result<v1::WorkerInvokeResponse, WorkerError> = loop {
            let msg = tokio::select! {
                m = self.upstream.message() => m,
                () = &mut down => break Err(WorkerError::lost(worker_id, address)),
            };
            match msg {
                Ok(Some(v1::WorkerInvokeStreamMessage {
                    event: Some(WorkerEvent::Chunk(chunk)),
                })) => sink.chunk(chunk).await,
                Ok(Some(v1::WorkerInvokeStreamMessage {
                    event: Some(WorkerEvent::Done(done)),
                })) => break Ok(done),
                Ok(Some(v1::WorkerInvokeStreamMessage { event: None })) => {}
                Ok(None) => {
                    break Err(WorkerError::Unavailable {
                        worker_id: worker_id.clone(),
                        address: address.clone(),
                        detail: "its stream ended without the end of the invocation".to_string(),
                    })
                }
                Err(status) => {
                    break Err(WorkerError::classify(
                        &ctx.registry,
                        worker_id,
                        address,
                        status,
                        self.call_timeout,
                    ))
                }
            }
        };
        self.prepared.finish(ended.is_ok());
        let done = ended?;
        let name = &self.prepared.resolved.config.spec.name;
        store_log(ctx, name, &self.request_id, &done).await;
        Ok(done)
    }
}
