//! Synchronous invocation: validate, place on a worker, call `Worker.Invoke`, store the log.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use lamina_proto::auth::{Credentials, Signed, SignedChannel};
use lamina_proto::v1::{self, worker_client::WorkerClient};
use lamina_proto::{validate, MAX_GRPC_MESSAGE_BYTES};
use rand::Rng;
use tonic::transport::Endpoint;
use tonic::Code;

use super::{now_ms, ApiError, Shared};
use crate::concurrency::{ConcurrencyError, ThrottleReason};
use crate::queue::{Invoker, Outcome};
use crate::registry::{PlaceError, Placement, Registry};
use crate::store::NewLogEvent;

/// Headroom on top of the function timeout for the gRPC call: a cold start (code fetch, unzip,
/// sandbox start) happens before the function's own clock starts.
pub(crate) const COLD_START_HEADROOM: Duration = Duration::from_secs(60);
/// The last bytes of an invocation's log returned with `log_type = TAIL`, as in Lambda.
pub(crate) const LOG_TAIL_BYTES: usize = 4096;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// gRPC clients of workers, one per address (one HTTP/2 connection each), shared by all
/// invocations. Calls are signed with the cluster credential when there is one.
#[derive(Default)]
pub struct WorkerClients {
    clients: Mutex<HashMap<String, WorkerClient<SignedChannel>>>,
    creds: Option<Credentials>,
}

impl WorkerClients {
    pub fn new(creds: Option<Credentials>) -> WorkerClients {
        WorkerClients {
            clients: Mutex::default(),
            creds,
        }
    }

    pub(crate) fn client(
        &self,
        worker_id: &str,
        address: &str,
    ) -> Result<WorkerClient<SignedChannel>, ApiError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(address) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}")).map_err(|e| {
            ApiError::WorkerUnavailable {
                worker_id: worker_id.to_string(),
                address: address.to_string(),
                detail: format!("invalid address: {e}"),
            }
        })?;
        let channel = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy();
        let client = WorkerClient::new(Signed::new(channel, self.creds.clone()))
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        clients.insert(address.to_string(), client.clone());
        Ok(client)
    }
}

impl WorkerClients {
    /// Sends a worker its complete set of provisioned sandboxes (`Worker.SetProvisioned`).
    pub(crate) async fn set_provisioned(
        &self,
        worker_id: &str,
        address: &str,
        targets: Vec<v1::ProvisionedTarget>,
    ) -> Result<(), ApiError> {
        let mut client = self.client(worker_id, address)?;
        client
            .set_provisioned(v1::SetProvisionedRequest { targets })
            .await
            .map(|_| ())
            .map_err(|status| ApiError::Worker {
                worker_id: worker_id.to_string(),
                status: Box::new(status),
            })
    }
}

impl WorkerClients {
    /// Sends a worker its complete VPC network state (`Worker.SetNetwork`).
    pub(crate) async fn set_network(
        &self,
        worker_id: &str,
        address: &str,
        state: v1::NetworkState,
    ) -> Result<(), ApiError> {
        let mut client = self.client(worker_id, address)?;
        client
            .set_network(state)
            .await
            .map(|_| ())
            .map_err(|status| ApiError::Worker {
                worker_id: worker_id.to_string(),
                status: Box::new(status),
            })
    }
}

/// An X-Ray style trace id: `Root=1-<8 hex epoch seconds>-<24 hex>;Parent=<16 hex>;Sampled=0`.
pub(crate) fn new_trace_id() -> String {
    let mut rng = rand::thread_rng();
    let root: [u8; 12] = rng.gen();
    let parent: u64 = rng.gen();
    format!(
        "Root=1-{:08x}-{};Parent={:016x};Sampled=0",
        now_ms() / 1000,
        hex::encode(root),
        parent
    )
}

/// The last `max` bytes of `log`, cut at a character boundary.
pub(crate) fn log_tail(log: &str, max: usize) -> String {
    let mut start = log.len().saturating_sub(max);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    log[start..].to_string()
}

/// Resolves when the worker stops heartbeating (it is `Down`), so an invocation on a dead node fails
/// fast instead of waiting for the whole gRPC timeout.
pub(crate) async fn worker_down(registry: &Registry, worker_id: &str, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if !registry.is_up(worker_id) {
            return;
        }
    }
}

pub(crate) async fn invoke(
    shared: &Shared,
    r: v1::InvokeRequest,
) -> Result<v1::InvokeResponse, ApiError> {
    // The qualifier names $LATEST, a version or an alias (checked for every invocation type).
    let resolved = super::versions::resolve(shared, &r.function_name, &r.qualifier).await?;
    let config = resolved.config;
    validate::sync_payload(r.payload.len())?;
    let invocation_type = v1::InvocationType::try_from(r.invocation_type).map_err(|_| {
        ApiError::BadRequest(format!(
            "invocation_type must be REQUEST_RESPONSE, EVENT or DRY_RUN, got {}",
            r.invocation_type
        ))
    })?;
    let request_id = uuid::Uuid::new_v4().to_string();
    match invocation_type {
        v1::InvocationType::Event => return super::events::enqueue(shared, r).await,
        v1::InvocationType::DryRun => {
            return Ok(v1::InvokeResponse {
                status_code: 204,
                executed_version: resolved.executed_version,
                request_id,
                ..Default::default()
            })
        }
        v1::InvocationType::RequestResponse => {}
    }
    let payload = if r.payload.is_empty() {
        b"{}".to_vec()
    } else {
        r.payload
    };

    let spec = &config.spec;
    // Held until the invocation is over: it counts against the function's reservation or the
    // unreserved pool (over it: RESOURCE_EXHAUSTED at once).
    let _permit = shared.limiter.acquire(&spec.name)?;
    let placement = place(shared, &config).await?;
    tracing::debug!(function = %spec.name, %request_id, worker_id = %placement.worker_id, warm = placement.warm, "invocation placed");
    let result = call_worker(
        shared,
        &placement,
        &config,
        &resolved.invoked_arn,
        &request_id,
        payload,
        r.client_context,
    )
    .await;
    shared.registry.finish(&placement, result.is_ok());
    let response = result?;

    let tail = if r.log_type == v1::LogType::Tail as i32 {
        log_tail(&response.logs, LOG_TAIL_BYTES)
    } else {
        String::new()
    };
    store_log(shared, &spec.name, &request_id, &response).await;
    Ok(v1::InvokeResponse {
        status_code: 200,
        function_error: response.function_error,
        executed_version: resolved.executed_version,
        payload: response.payload,
        log_tail: tail,
        request_id,
        worker_id: placement.worker_id,
        duplicate: false,
    })
}

/// Runs the deliveries of the async queue on the workers, like a synchronous invocation.
pub(crate) struct WorkerInvoker {
    pub shared: std::sync::Arc<Shared>,
}

#[tonic::async_trait]
impl Invoker for WorkerInvoker {
    async fn function_timeout(
        &self,
        name: &str,
        qualifier: &str,
    ) -> Result<Option<Duration>, String> {
        use super::versions::{lookup, Target, VersionError};
        let timeout = |f: &lamina_proto::domain::FunctionConfig| {
            Duration::from_secs(u64::from(f.spec.timeout_s))
        };
        // The version (or either version of an alias) that the delivery may run: its lease must
        // outlast that version's timeout, whatever `$LATEST`'s is.
        match lookup(&self.shared, name, qualifier).await {
            Ok(Target::Latest(c) | Target::Version(c)) => Ok(Some(timeout(&c))),
            Ok(Target::Alias {
                primary,
                additional,
                ..
            }) => Ok(Some(additional.map_or(timeout(&primary), |(extra, _)| {
                timeout(&primary).max(timeout(&extra))
            }))),
            Err(
                ApiError::FunctionNotFound(_)
                | ApiError::Version(
                    VersionError::VersionNotFound { .. }
                    | VersionError::AliasNotFound { .. }
                    | VersionError::BadQualifier { .. },
                ),
            ) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn ready(&self) -> bool {
        self.shared.registry.any_up()
    }

    async fn invoke(
        &self,
        function_name: &str,
        qualifier: &str,
        request_id: &str,
        payload: Vec<u8>,
    ) -> Outcome {
        // Resolved at each delivery: an alias routes every attempt by its current configuration.
        let resolved = match super::versions::resolve(&self.shared, function_name, qualifier).await
        {
            Ok(r) => r,
            Err(e) => return Outcome::SystemError(e.to_string()),
        };
        let config = resolved.config;
        let spec = &config.spec;
        // Over a concurrency limit or the cold-start bound the event waits in the queue.
        let _permit = match self.shared.limiter.acquire(&spec.name) {
            Ok(p) => p,
            Err(e) => return Outcome::Throttled(e.to_string()),
        };
        let placement = match place(&self.shared, &config).await {
            Ok(p) => p,
            Err(e) => return Outcome::Throttled(e.to_string()),
        };
        let result = call_worker(
            &self.shared,
            &placement,
            &config,
            &resolved.invoked_arn,
            request_id,
            payload,
            String::new(),
        )
        .await;
        self.shared.registry.finish(&placement, result.is_ok());
        match result {
            Ok(response) => {
                store_log(&self.shared, &spec.name, request_id, &response).await;
                if response.function_error.is_empty() {
                    Outcome::Success {
                        payload: response.payload,
                        executed_version: resolved.executed_version,
                    }
                } else {
                    Outcome::FunctionError {
                        kind: response.function_error,
                        payload: response.payload,
                        executed_version: resolved.executed_version,
                    }
                }
            }
            Err(ApiError::Worker { status, worker_id })
                if status.code() == Code::ResourceExhausted =>
            {
                Outcome::Throttled(format!("worker `{worker_id}`: {}", status.message()))
            }
            Err(e) => Outcome::SystemError(e.to_string()),
        }
    }
}

/// Chooses the worker; waits (up to `shared.placement_wait`) while every worker is at its bound
/// of cold starts in flight, then throttles.
pub(crate) async fn place(
    shared: &Shared,
    config: &lamina_proto::domain::FunctionConfig,
) -> Result<Placement, ApiError> {
    let spec = &config.spec;
    shared
        .registry
        .place_waiting(
            &spec.name,
            &config.revision_id,
            spec.memory_mb,
            shared.placement_wait,
        )
        .await
        .map_err(|e| match e {
            PlaceError::NoWorker => ApiError::NoWorker,
            e @ PlaceError::AtColdStartBound { .. } => ConcurrencyError::Throttled {
                reason: ThrottleReason::FunctionInvocationRateLimitExceeded,
                detail: e.to_string(),
            }
            .into(),
        })
}

async fn call_worker(
    shared: &Shared,
    placement: &Placement,
    config: &lamina_proto::domain::FunctionConfig,
    invoked_arn: &str,
    request_id: &str,
    payload: Vec<u8>,
    client_context: String,
) -> Result<v1::WorkerInvokeResponse, ApiError> {
    let worker_id = placement.worker_id.clone();
    let mut client = shared.workers.client(&worker_id, &placement.address)?;
    let timeout = Duration::from_secs(u64::from(config.spec.timeout_s));
    let call_timeout = timeout + COLD_START_HEADROOM;
    let mut request = tonic::Request::new(v1::WorkerInvokeRequest {
        request_id: request_id.to_string(),
        function: Some(config.into()),
        payload,
        // When this call stops waiting: the worker refuses or stops the work past it.
        deadline_ms: now_ms() + call_timeout.as_millis() as u64,
        client_context,
        trace_id: new_trace_id(),
        invoked_function_arn: invoked_arn.to_string(),
    });
    request.set_timeout(call_timeout);
    let check_every = shared
        .heartbeat_interval
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    let unavailable = |detail: String| ApiError::WorkerUnavailable {
        worker_id: worker_id.clone(),
        address: placement.address.clone(),
        detail,
    };
    tokio::select! {
        result = client.invoke(request) => match result {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(match status.code() {
                Code::DeadlineExceeded => ApiError::WorkerTimeout { worker_id: worker_id.clone(), after: call_timeout },
                Code::Unavailable | Code::Unknown | Code::Cancelled => {
                    // A status with a source is the transport's (connection refused or reset: the
                    // worker's process or host is gone), not one the worker sent: no new work for
                    // it until it heartbeats again.
                    if std::error::Error::source(&status).is_some() {
                        shared.registry.mark_unreachable(&worker_id, status.message());
                    }
                    unavailable(status.message().to_string())
                }
                _ => ApiError::Worker { worker_id: worker_id.clone(), status: Box::new(status) },
            }),
        },
        _ = worker_down(&shared.registry, &worker_id, check_every) => {
            Err(unavailable("it was lost during the invocation (missed heartbeats or a broken connection)".to_string()))
        }
    }
}

/// Appends one log event per line. A failure here is logged, not returned: the invocation itself
/// succeeded and its result must reach the caller.
/// The invocation's log as log events, each stamped with when the worker says its line was
/// written, or with now when the worker sent no times (or not one per line).
pub(crate) fn log_events(
    request_id: &str,
    log: &str,
    line_times_ms: &[u64],
    now_ms: u64,
) -> Vec<NewLogEvent> {
    let lines: Vec<&str> = log.lines().collect();
    let timed = line_times_ms.len() == lines.len();
    lines
        .into_iter()
        .enumerate()
        .map(|(i, line)| NewLogEvent {
            timestamp_ms: if timed { line_times_ms[i] } else { now_ms },
            request_id: request_id.to_string(),
            message: line.to_string(),
        })
        .collect()
}

pub(crate) async fn store_log(
    shared: &Shared,
    name: &str,
    request_id: &str,
    response: &v1::WorkerInvokeResponse,
) {
    let log = response.logs.as_str();
    let events = log_events(request_id, log, &response.log_line_times_ms, now_ms());
    if events.is_empty() {
        return;
    }
    // Queued for the background log writer (the answer does not wait for the write; a log read
    // sees it). When the queue is full, wait for room off the async threads: back-pressure.
    let Err(events) = shared.store.try_queue_logs(name, events) else {
        return;
    };
    let owned = name.to_string();
    if let Err(e) = shared.store(move |s| s.queue_logs(&owned, events)).await {
        tracing::warn!(function = %name, %request_id, error = %e, "cannot store the invocation log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_end_at_a_char_boundary() {
        assert_eq!(log_tail("short", 4096), "short");
        let log = format!("{}{}", "x".repeat(5000), "end");
        assert_eq!(log_tail(&log, 4096).len(), 4096);
        assert!(log_tail(&log, 4096).ends_with("end"));
        // "é" is two bytes: a cut through it moves forward.
        assert_eq!(log_tail("aé", 1), "");
        assert_eq!(log_tail("aéb", 3), "éb");
    }

    #[test]
    fn log_lines_keep_the_times_the_worker_gives() {
        let events = log_events("r", "START\nhello\nEND\n", &[10, 20, 30], 99);
        let got: Vec<(u64, &str)> = events
            .iter()
            .map(|e| (e.timestamp_ms, e.message.as_str()))
            .collect();
        assert_eq!(got, [(10, "START"), (20, "hello"), (30, "END")]);
        // No times (an older worker) or not one per line: stamped now.
        for times in [&[][..], &[1, 2][..]] {
            let events = log_events("r", "a\nb\nc", times, 99);
            assert!(events.iter().all(|e| e.timestamp_ms == 99), "{times:?}");
        }
    }

    #[test]
    fn trace_ids_look_like_x_ray() {
        let t = new_trace_id();
        let (root, parent) = t.split_once(";Parent=").unwrap();
        assert!(root.starts_with("Root=1-"));
        assert_eq!(root.len(), "Root=1-".len() + 8 + 1 + 24);
        assert!(parent.ends_with(";Sampled=0"));
        assert_ne!(new_trace_id(), t);
    }
}
