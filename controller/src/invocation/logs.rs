//! An invocation's log (stored one event per line for the log APIs, its tail returned to a caller
//! that asks) and its X-Ray style trace id.
use std::sync::Arc;

use lamina_proto::v1;
use rand::Rng;

use crate::context::{now_ms, Context};
use crate::store::NewLogEvent;

/// The last bytes of an invocation's log returned with `log_type = TAIL`, as in Lambda.
pub(crate) const LOG_TAIL_BYTES: usize = 4096;

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

/// Appends one log event per line. A failure here is logged, not returned: the invocation itself
/// succeeded and its result must reach the caller.
pub(crate) async fn store_log(
    ctx: &Context,
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
    let Err(events) = ctx.store.try_queue_logs(name, events) else {
        return;
    };
    let (store, owned) = (Arc::clone(&ctx.store), name.to_string());
    let error = match tokio::task::spawn_blocking(move || store.queue_logs(&owned, events)).await {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(e) => format!("store task failed: {e}"),
    };
    tracing::warn!(function = %name, %request_id, %error, "cannot store the invocation log");
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
