//! One invocation on the pool: validate the request, take a sandbox (idle or new), run it
//! (`run.rs`), keep or destroy the sandbox; with or without the response streamed.
use std::sync::atomic::Ordering;

use lamina_proto::domain::FunctionConfig;
use lamina_proto::v1::{WorkerInvokeRequest, WorkerInvokeResponse};
use lamina_proto::validate;

use super::{run, Acquired, Manager, ManagerError};
use crate::sandbox::SandboxError;

impl Manager {
    /// Runs one invocation. The work runs in its own task: if the caller goes away the invocation
    /// still finishes and its sandbox is kept or destroyed properly.
    pub async fn invoke(
        &self,
        req: WorkerInvokeRequest,
    ) -> Result<WorkerInvokeResponse, ManagerError> {
        let me = self.clone();
        self.inner
            .tasks
            .spawn(async move { me.invoke_inner(req, None).await })
            .await
            .map_err(|e| ManagerError::Task(e.to_string()))?
    }

    /// Like [`Manager::invoke`], with the response streamed to `chunks` as the runtime sends it (a
    /// response that was not streamed is one chunk); the returned payload is empty unless the
    /// invocation failed. `chunks` is dropped before this returns.
    pub async fn invoke_streaming(
        &self,
        req: WorkerInvokeRequest,
        chunks: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) -> Result<WorkerInvokeResponse, ManagerError> {
        let me = self.clone();
        self.inner
            .tasks
            .spawn(async move { me.invoke_inner(req, Some(chunks)).await })
            .await
            .map_err(|e| ManagerError::Task(e.to_string()))?
    }

    async fn invoke_inner(
        &self,
        mut req: WorkerInvokeRequest,
        chunks: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    ) -> Result<WorkerInvokeResponse, ManagerError> {
        let function = req
            .function
            .take()
            .ok_or_else(|| ManagerError::InvalidRequest("function is missing".to_string()))?;
        let config = FunctionConfig::try_from(function)?;
        let credentials = req
            .credentials
            .take()
            .map(crate::role_endpoints::SandboxCredentials::from)
            .filter(|c| c.is_usable());
        if req.request_id.is_empty()
            || req.request_id.len() > 128
            || req.request_id.chars().any(|c| c.is_control())
        {
            return Err(ManagerError::InvalidRequest(format!(
                "request_id must be 1..128 printable characters, got {:?}",
                req.request_id
            )));
        }
        validate::sync_payload(req.payload.len())?;
        if let Some(late) = run::caller_deadline(req.deadline_ms)
            .and_then(|d| std::time::Instant::now().checked_duration_since(d))
        {
            return Err(ManagerError::CallerDeadline {
                request_id: req.request_id.clone(),
                detail: format!(
                    "its deadline passed {} ms before the worker took it: not run",
                    late.as_millis()
                ),
            });
        }
        // Owned once (no copy), shared by the rounds below.
        let payload = bytes::Bytes::from(std::mem::take(&mut req.payload));
        let mut chunks = chunks;
        // Again on another sandbox when a warm one's runtime turns out to have exited before it
        // took the event (see `Disposition::Stale`); each round uses up one sandbox.
        loop {
            let Acquired { pooled, cold } = match self.acquire(&config, credentials.as_ref()).await
            {
                Ok(a) => a,
                Err(ManagerError::InvalidEntrypoint(msg)) => {
                    self.inner.invocations_total.fetch_add(1, Ordering::Relaxed);
                    return Ok(run::entrypoint_error(&req.request_id, &config, &msg));
                }
                // With an executable bootstrap, a failed start of `provided` is almost always an exec
                // the kernel refused (bad interpreter line, not a binary for this machine): the function's.
                Err(ManagerError::Sandbox(e @ SandboxError::Start { .. }))
                    if config.spec.runtime.is_provided() =>
                {
                    tracing::warn!(function = %config.spec.name, error = %e, "provided runtime failed to start");
                    self.inner.invocations_total.fetch_add(1, Ordering::Relaxed);
                    return Ok(run::entrypoint_error(
                        &req.request_id,
                        &config,
                        &e.to_string(),
                    ));
                }
                Err(e) => return Err(e),
            };
            let id = pooled.sandbox.id().to_string();
            let api = cold.then(|| pooled.api.clone());
            let run = run::run(
                pooled,
                cold,
                &config,
                &req,
                payload.clone(),
                &self.inner.shutdown,
                chunks,
            );
            let (resp, disposition) = self.run_marking_start(run, id, api).await;
            match disposition {
                run::Disposition::Keep(pooled) => self.release(pooled),
                run::Disposition::Destroy(pooled) => self.retire(pooled),
                run::Disposition::Stale(pooled, sink) => {
                    tracing::info!(
                        sandbox = pooled.sandbox.id(),
                        "the idle runtime had exited: running the invocation on another sandbox"
                    );
                    self.retire(pooled);
                    chunks = sink;
                    continue;
                }
            }
            self.inner.invocations_total.fetch_add(1, Ordering::Relaxed);
            return resp;
        }
    }
}
