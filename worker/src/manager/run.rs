//! Running one invocation in a sandbox: the race between the runtime's answer, the runtime's exit, the
//! deadline and shutdown; the classification of how it ended (Lambda's error types) and the log.
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use lamina_proto::domain::{FunctionConfig, LATEST};
use lamina_proto::v1::{WorkerInvokeRequest, WorkerInvokeResponse};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::logs::{billed_ms, bytes_to_mb, format_log, format_log_timed, Captured, Report};
use super::{ManagerError, Pooled};
use crate::runtime_api::{
    Invocation, InvocationOutcome, ResponseStream, StreamEvent, MAX_RESPONSE_BYTES,
    MAX_STREAM_BYTES,
};
use crate::sandbox::ExitInfo;

/// Lambda gives a runtime's init up to 10 s on top of the function timeout.
const INIT_LIMIT: Duration = Duration::from_secs(10);
/// How often the deadline is recomputed while the runtime is still initializing.
const INIT_POLL: Duration = Duration::from_millis(20);

/// What becomes of the sandbox after the invocation.
pub(super) enum Disposition {
    /// Freeze it and keep it idle.
    Keep(Pooled),
    /// Timed out, crashed, failed its init or the worker is stopping: destroy it.
    Destroy(Pooled),
    /// A warm sandbox whose runtime exited before it took the event (it was on its way out when
    /// it was frozen, e.g. a runtime client exiting right after it posted an error): destroy it
    /// and run the invocation elsewhere; the response (and the sink, handed back) are unused.
    Stale(Pooled, Option<mpsc::Sender<Bytes>>),
}

enum Ended {
    Outcome(InvocationOutcome),
    /// A streamed response ended normally.
    StreamDone,
    /// A streamed response went over the limit (of the stream, or of a buffered response).
    StreamTooLarge {
        size: usize,
        limit: usize,
    },
    /// A streamed response's body could not be read to its end.
    StreamBroken(String),
    Exited(ExitInfo),
    /// A warm sandbox's runtime exited before it took the event with `GET next`.
    ExitedBeforeTaking,
    Timeout,
    /// The caller's deadline (`WorkerInvokeRequest.deadline_ms`) passed: nobody waits for the answer.
    CallerGone,
    Shutdown,
}

/// Where the chunks of a response go: to the caller as they come (`sink`), else into one buffer.
struct Collector {
    sink: Option<mpsc::Sender<Bytes>>,
    buffered: BytesMut,
}

impl Collector {
    /// Passes `chunk` on; `Err(size)` when a buffered response went over the sync limit. Waits for
    /// a slow caller at most until `deadline` (then the caller is dropped: the invocation goes on).
    async fn push(&mut self, chunk: Bytes, deadline: Instant) -> Result<(), usize> {
        match &self.sink {
            Some(sink) => {
                let sent = tokio::time::timeout_at(deadline.into(), sink.send(chunk)).await;
                if !matches!(sent, Ok(Ok(()))) {
                    self.sink = None;
                }
                Ok(())
            }
            None => {
                if self.buffered.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(self.buffered.len() + chunk.len());
                }
                self.buffered.extend_from_slice(&chunk);
                Ok(())
            }
        }
    }
}

/// The next event of `stream` (pending forever without one: the select arm is disabled then).
async fn next_event(stream: &mut Option<ResponseStream>) -> Option<StreamEvent> {
    match stream {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// When the caller stops waiting, from `deadline_ms` (epoch ms, 0 = no deadline) on this host's clock.
pub(super) fn caller_deadline(deadline_ms: u64) -> Option<Instant> {
    if deadline_ms == 0 {
        return None;
    }
    let now = epoch_ms();
    let left = Duration::from_millis(deadline_ms.saturating_sub(now));
    Some(Instant::now() + left)
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The request's trace id, or a fresh X-Ray style one (`Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=0`).
fn trace_id(given: &str) -> String {
    if !given.is_empty() {
        return given.to_string();
    }
    let secs = epoch_ms() / 1000;
    let r = uuid::Uuid::new_v4().simple().to_string();
    let p = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=0",
        &r[..24],
        &p[..16]
    )
}

fn error_json(error_type: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string())
}

/// `RequestId: ID Error: Task timed out after 3.00 seconds`.
pub(super) fn timeout_message(request_id: &str, timeout_s: u32) -> String {
    format!(
        "RequestId: {request_id} Error: Task timed out after {:.2} seconds",
        f64::from(timeout_s)
    )
}

/// Error type and message for a runtime that exited during an invocation.
pub(super) fn exit_error(
    request_id: &str,
    exit: ExitInfo,
    oom_killed: bool,
) -> (&'static str, String) {
    let error_type = if oom_killed {
        "Runtime.OutOfMemory"
    } else {
        "Runtime.ExitError"
    };
    (
        error_type,
        format!("RequestId: {request_id} Error: Runtime exited with error: {exit}"),
    )
}

/// The error payload for a response over 6 MB.
pub(super) fn too_large_payload(size: usize) -> Bytes {
    too_large_payload_of(size, MAX_RESPONSE_BYTES)
}

/// The error payload for a response over `limit` bytes (6 MB buffered, 20 MB streamed).
fn too_large_payload_of(size: usize, limit: usize) -> Bytes {
    error_json(
        "Function.ResponseSizeTooLarge",
        &format!(
            "Response payload size ({size} bytes) exceeded maximum allowed payload size ({limit} bytes)."
        ),
    )
}

fn version(config: &FunctionConfig) -> String {
    if config.version.is_empty() {
        LATEST.to_string()
    } else {
        config.version.clone()
    }
}

/// The answer for a function whose entrypoint cannot run (no executable `bootstrap`): no sandbox ran.
pub(super) fn entrypoint_error(
    request_id: &str,
    config: &FunctionConfig,
    message: &str,
) -> WorkerInvokeResponse {
    let message = format!("RequestId: {request_id} Error: {message}");
    let report = Report {
        request_id: request_id.to_string(),
        version: version(config),
        duration_ms: 0.0,
        memory_size_mb: config.spec.memory_mb,
        max_memory_used_mb: 0,
        init_duration_ms: None,
    };
    let extra = [message.clone(), "Runtime.InvalidEntrypoint".to_string()];
    WorkerInvokeResponse {
        function_error: "Unhandled".to_string(),
        payload: error_json("Runtime.InvalidEntrypoint", &message).to_vec(),
        logs: format_log(b"", b"", &extra, &report),
        duration_ms: 0.0,
        billed_duration_ms: 0,
        init_duration_ms: 0.0,
        max_memory_used_mb: 0,
        sandbox_id: String::new(),
        cold_start: true,
        log_line_times_ms: Vec::new(),
    }
}

/// Runs `req` (its event is `payload`: the request's own field is not read) in `warm` until the runtime answers, exits, the deadline passes or the worker stops.
///
/// With a `sink` the response is streamed: each chunk of a streamed response goes to the sink as
/// the runtime sends it, a response that was not streamed goes as one chunk, and the returned
/// payload is empty unless the invocation failed. Without one a streamed response is buffered (up
/// to the 6 MB of a synchronous response) and returned whole.
pub(super) async fn run(
    pooled: Pooled,
    cold: bool,
    config: &FunctionConfig,
    req: &WorkerInvokeRequest,
    payload: Bytes,
    shutdown: &CancellationToken,
    sink: Option<mpsc::Sender<Bytes>>,
) -> (Result<WorkerInvokeResponse, ManagerError>, Disposition) {
    let id = req.request_id.as_str();
    let timeout_s = config.spec.timeout_s;
    let timeout = Duration::from_secs(u64::from(timeout_s));
    let dispatch = Instant::now();
    let dispatch_ms = epoch_ms();
    let caller = caller_deadline(req.deadline_ms);
    let inv = Invocation {
        request_id: id.to_string(),
        payload,
        deadline_ms: epoch_ms() + timeout.as_millis() as u64,
        dispatched_at: dispatch,
        // The ARN the caller named (with its version or alias), else the function's.
        invoked_function_arn: if req.invoked_function_arn.is_empty() {
            config.arn()
        } else {
            req.invoked_function_arn.clone()
        },
        trace_id: trace_id(&req.trace_id),
        client_context: (!req.client_context.is_empty()).then(|| req.client_context.clone()),
    };
    let mut collector = Collector {
        sink,
        buffered: BytesMut::new(),
    };
    let ended = {
        let invoke = pooled.api.invoke(inv);
        tokio::pin!(invoke);
        let mut stream: Option<ResponseStream> = None;
        loop {
            // The timer starts when the runtime is ready (its first `GET next`), as in Lambda.
            let init_done = pooled.api.init_done_at();
            let deadline = match init_done {
                Some(t) => t.max(dispatch) + timeout,
                None => dispatch + INIT_LIMIT + timeout,
            };
            let wake = match init_done {
                Some(_) => deadline,
                None => deadline.min(Instant::now() + INIT_POLL),
            };
            let wake = caller.map_or(wake, |c| wake.min(c));
            tokio::select! {
                biased;
                outcome = &mut invoke, if stream.is_none() => match outcome {
                    InvocationOutcome::Streaming(s) => stream = Some(s),
                    outcome => break Ended::Outcome(outcome),
                },
                ev = next_event(&mut stream) => match ev {
                    Some(StreamEvent::Chunk(chunk)) => {
                        if let Err(size) = collector.push(chunk, deadline).await {
                            break Ended::StreamTooLarge { size, limit: MAX_RESPONSE_BYTES };
                        }
                    }
                    Some(StreamEvent::Error { error_type, body }) => {
                        break Ended::Outcome(InvocationOutcome::Error { error_type, body })
                    }
                    Some(StreamEvent::TooLarge { size }) => {
                        break Ended::StreamTooLarge { size, limit: MAX_STREAM_BYTES }
                    }
                    Some(StreamEvent::Broken(e)) => break Ended::StreamBroken(e),
                    None => break Ended::StreamDone,
                },
                exit = pooled.sandbox.wait_exit() => {
                    // Checked before `invoke` is dropped (which abandons the event).
                    if !cold && pooled.api.event_pending() {
                        break Ended::ExitedBeforeTaking;
                    }
                    break Ended::Exited(exit);
                }
                () = shutdown.cancelled() => break Ended::Shutdown,
                () = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break Ended::Timeout;
                    }
                    if caller.is_some_and(|c| now >= c) {
                        break Ended::CallerGone;
                    }
                }
            }
        }
    };
    let ended_at = Instant::now();
    if matches!(ended, Ended::ExitedBeforeTaking) {
        return (
            Err(ManagerError::ShuttingDown),
            Disposition::Stale(pooled, collector.sink),
        );
    }
    if matches!(ended, Ended::Timeout | Ended::Shutdown | Ended::CallerGone) {
        pooled.sandbox.kill();
    }
    if matches!(ended, Ended::CallerGone) {
        // The caller (the controller's call, or an async delivery's lease) gave up: the work is
        // stopped rather than finished for nobody (or run twice once a lease is handed on).
        let detail = "its deadline passed while the function ran: stopped".to_string();
        return (
            Err(ManagerError::CallerDeadline {
                request_id: id.to_string(),
                detail,
            }),
            Disposition::Destroy(pooled),
        );
    }
    if matches!(ended, Ended::Shutdown) {
        return (
            Err(ManagerError::ShuttingDown),
            Disposition::Destroy(pooled),
        );
    }
    let init_done = pooled.api.init_done_at();
    let (init_output, output) = match &pooled.output {
        Some(out) => out.drain(init_done.is_some()),
        None => (Captured::default(), Captured::default()),
    };
    let peak = pooled.sandbox.memory_peak_bytes();
    let mut extra = Vec::new();
    let (function_error, mut payload, keep) = match ended {
        Ended::Outcome(InvocationOutcome::Response(body)) => ("", body, true),
        Ended::StreamDone => ("", collector.buffered.split().freeze(), true),
        Ended::StreamTooLarge { size, limit } => {
            ("Unhandled", too_large_payload_of(size, limit), true)
        }
        Ended::StreamBroken(e) => {
            let message =
                format!("RequestId: {id} Error: the response stream broke off before its end: {e}");
            extra.push(message.clone());
            (
                "Unhandled",
                error_json("Runtime.TruncatedResponse", &message),
                false,
            )
        }
        // Taken apart in the loop above: never an end.
        Ended::Outcome(InvocationOutcome::Streaming(_)) => ("", Bytes::new(), true),
        Ended::Outcome(InvocationOutcome::Error { body, .. }) => ("Unhandled", body, true),
        Ended::Outcome(InvocationOutcome::ResponseTooLarge { size }) => {
            ("Unhandled", too_large_payload(size), true)
        }
        Ended::Outcome(InvocationOutcome::InitError { body, .. }) => ("Unhandled", body, false),
        Ended::Exited(exit) => {
            let (error_type, message) = exit_error(id, exit, pooled.sandbox.oom_killed());
            let payload = error_json(error_type, &message);
            extra.push(message);
            extra.push(error_type.to_string());
            ("Unhandled", payload, false)
        }
        Ended::Timeout | Ended::Shutdown | Ended::ExitedBeforeTaking | Ended::CallerGone => {
            let message = timeout_message(id, timeout_s);
            let payload = error_json("Sandbox.Timedout", &message);
            extra.push(message);
            ("Unhandled", payload, false)
        }
    };
    // Streamed: a response that was not streamed goes to the caller as one chunk.
    if let Some(sink) = &collector.sink {
        if function_error.is_empty() && !payload.is_empty() {
            let _ = sink.send(std::mem::take(&mut payload)).await;
        }
    }
    let invoke_start = init_done.map_or(dispatch, |t| t.max(dispatch));
    let duration_ms = ended_at
        .saturating_duration_since(invoke_start)
        .as_secs_f64()
        * 1000.0;
    let init_duration_ms = cold.then(|| {
        init_done
            .unwrap_or(ended_at)
            .saturating_duration_since(pooled.started_at)
            .as_secs_f64()
            * 1000.0
    });
    let report = Report {
        request_id: id.to_string(),
        version: version(config),
        duration_ms,
        memory_size_mb: config.spec.memory_mb,
        max_memory_used_mb: bytes_to_mb(peak),
        init_duration_ms,
    };
    let start_ms =
        dispatch_ms + invoke_start.saturating_duration_since(dispatch).as_millis() as u64;
    let (logs, log_line_times_ms) = format_log_timed(
        &init_output,
        &output,
        &extra,
        &report,
        (start_ms, epoch_ms()),
    );
    let resp = WorkerInvokeResponse {
        function_error: function_error.to_string(),
        payload: Vec::from(payload),
        logs,
        log_line_times_ms,
        duration_ms,
        billed_duration_ms: billed_ms(duration_ms),
        init_duration_ms: init_duration_ms.unwrap_or(0.0),
        max_memory_used_mb: report.max_memory_used_mb,
        sandbox_id: pooled.sandbox.id().to_string(),
        cold_start: cold,
    };
    let disposition = if keep {
        Disposition::Keep(pooled)
    } else {
        Disposition::Destroy(pooled)
    };
    (Ok(resp), disposition)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_message_has_two_decimals() {
        assert_eq!(
            timeout_message("abc", 3),
            "RequestId: abc Error: Task timed out after 3.00 seconds"
        );
        assert!(timeout_message("abc", 900).ends_with("after 900.00 seconds"));
    }

    #[test]
    fn exit_errors_name_oom_and_exit_status() {
        let exit1 = ExitInfo {
            code: Some(1),
            signal: None,
        };
        let killed = ExitInfo {
            code: None,
            signal: Some(9),
        };
        assert_eq!(
            exit_error("r1", exit1, false),
            (
                "Runtime.ExitError",
                "RequestId: r1 Error: Runtime exited with error: exit status 1".to_string()
            )
        );
        assert_eq!(
            exit_error("r1", killed, true),
            (
                "Runtime.OutOfMemory",
                "RequestId: r1 Error: Runtime exited with error: signal: killed".to_string()
            )
        );
    }

    #[test]
    fn too_large_payload_is_lambdas_json() {
        let v: serde_json::Value = serde_json::from_slice(&too_large_payload(7_000_000)).unwrap();
        assert_eq!(v["errorType"], "Function.ResponseSizeTooLarge");
        assert_eq!(
            v["errorMessage"],
            "Response payload size (7000000 bytes) exceeded maximum allowed payload size (6291556 bytes)."
        );
    }

    #[test]
    fn trace_id_is_kept_or_generated() {
        assert_eq!(trace_id("Root=1-a-b"), "Root=1-a-b");
        let t = trace_id("");
        let parts: Vec<&str> = t.split(';').collect();
        assert_eq!(parts.len(), 3, "{t}");
        let root = parts[0].strip_prefix("Root=1-").unwrap();
        let (time, rand) = root.split_once('-').unwrap();
        assert_eq!((time.len(), rand.len()), (8, 24));
        assert_eq!(parts[1].strip_prefix("Parent=").unwrap().len(), 16);
    }
}
