//! A sandbox's output (the runtime's stdout + stderr pipe) and the Lambda-style invocation log:
//! `START`, the output, `END`, `REPORT`.
use std::io;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use tokio::net::unix::pipe::Receiver;
use tokio_util::sync::CancellationToken;

use crate::runtime_api::RuntimeApi;

/// Output kept per invocation (and for the init phase); the rest is dropped with a marker.
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// Appended where output was dropped.
pub const TRUNCATED_MARKER: &str = "... truncated\n";

/// At most this many read times are kept per buffer (one per millisecond that brought output);
/// later lines take the last one.
const MAX_READ_TIMES: usize = 4096;

/// What a sandbox wrote, and when: `times` holds, for each read that added bytes in a new
/// millisecond, the offset of its first byte and the epoch ms it was read (the reader task reads
/// as the runtime writes, so that is when the line was written, to the millisecond).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub times: Vec<(usize, u64)>,
}

impl Captured {
    /// The epoch ms of each line of the text (as `str::lines` splits it), `fallback` for output
    /// read before any time was taken.
    fn line_times(&self, fallback: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut start = 0;
        while start < self.bytes.len() {
            let i = self.times.partition_point(|(offset, _)| *offset <= start);
            out.push(if i == 0 {
                fallback
            } else {
                self.times[i - 1].1
            });
            match self.bytes[start..].iter().position(|b| *b == b'\n') {
                Some(p) => start += p + 1,
                None => break,
            }
        }
        out
    }
}

#[derive(Debug, Default)]
struct Capped {
    data: Vec<u8>,
    times: Vec<(usize, u64)>,
    truncated: bool,
}

impl Capped {
    fn push(&mut self, bytes: &[u8], now_ms: u64) {
        let room = MAX_OUTPUT_BYTES.saturating_sub(self.data.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        let kept = &bytes[..bytes.len().min(room)];
        if !kept.is_empty()
            && self.times.len() < MAX_READ_TIMES
            && self.times.last().is_none_or(|(_, t)| *t != now_ms)
        {
            self.times.push((self.data.len(), now_ms));
        }
        self.data.extend_from_slice(kept);
    }

    fn take(&mut self) -> Captured {
        let mut out = std::mem::take(&mut self.data);
        if std::mem::take(&mut self.truncated) {
            if !out.is_empty() && !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(TRUNCATED_MARKER.as_bytes());
        }
        Captured {
            bytes: out,
            times: std::mem::take(&mut self.times),
        }
    }
}

/// Now, in epoch milliseconds.
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

#[derive(Debug, Default)]
struct Bufs {
    /// Written before the runtime's first `GET next`: goes before the first invocation's `START`.
    init: Capped,
    invocation: Capped,
}

/// The output of one sandbox, split into what the runtime wrote during its init and during the current
/// invocation. Filled by [`spawn_reader`] and by [`SandboxOutput::drain`].
#[derive(Debug)]
pub struct SandboxOutput {
    pipe: Receiver,
    bufs: Mutex<Bufs>,
}

impl SandboxOutput {
    pub fn new(pipe: Receiver) -> Arc<SandboxOutput> {
        Arc::new(SandboxOutput {
            pipe,
            bufs: Mutex::default(),
        })
    }

    /// Reads what the pipe holds right now (until it would block). Returns false at EOF or on error.
    /// `via_reactor`: read with `try_read`, which clears tokio's readiness on WouldBlock (the reader
    /// task needs that, or `readable()` stays ready and it spins); otherwise a plain read(2) on the
    /// non-blocking fd, which sees data even before the reactor has noticed it (what a drain needs).
    fn read_available(&self, bufs: &mut Bufs, init_done: bool, via_reactor: bool) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        let now = epoch_ms();
        loop {
            let res = if via_reactor {
                self.pipe.try_read(&mut chunk)
            } else {
                nix::unistd::read(self.pipe.as_raw_fd(), &mut chunk).map_err(io::Error::from)
            };
            match res {
                Ok(0) => return false,
                Ok(n) if init_done => bufs.invocation.push(&chunk[..n], now),
                Ok(n) => bufs.init.push(&chunk[..n], now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bufs> {
        self.bufs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads what the pipe holds now, then takes the init output (empty after the first call) and the
    /// current invocation's output.
    pub fn drain(&self, init_done: bool) -> (Captured, Captured) {
        let mut bufs = self.lock();
        self.read_available(&mut bufs, init_done, false);
        let init = bufs.init.take();
        let invocation = bufs.invocation.take();
        (init, invocation)
    }
}

/// Reads the sandbox's output as it comes until EOF or `stop`; output is classified as init output
/// until the runtime first calls `GET next`.
pub fn spawn_reader(output: Arc<SandboxOutput>, api: RuntimeApi, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                ready = output.pipe.readable() => {
                    if ready.is_err() {
                        return;
                    }
                }
            }
            let mut bufs = output.lock();
            if !output.read_available(&mut bufs, api.init_done_at().is_some(), true) {
                return;
            }
        }
    });
}

/// The figures of the `REPORT` line.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub request_id: String,
    pub version: String,
    pub duration_ms: f64,
    pub memory_size_mb: u32,
    pub max_memory_used_mb: u64,
    /// Cold starts only: sandbox start to the runtime's first `GET next`.
    pub init_duration_ms: Option<f64>,
}

/// Lambda bills whole milliseconds, rounded up, at least 1.
pub fn billed_ms(duration_ms: f64) -> u64 {
    (duration_ms.ceil() as u64).max(1)
}

/// Bytes -> MB as Lambda reports them (rounded up).
pub fn bytes_to_mb(bytes: u64) -> u64 {
    bytes.div_ceil(1024 * 1024)
}

fn push_output(log: &mut String, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    log.push_str(&String::from_utf8_lossy(bytes));
    if !log.ends_with('\n') {
        log.push('\n');
    }
}

/// `init output` + `START` + `output` + `extra` lines + `END` + `REPORT`.
pub fn format_log(init_output: &[u8], output: &[u8], extra: &[String], r: &Report) -> String {
    let now = epoch_ms();
    let captured = |bytes: &[u8]| Captured {
        bytes: bytes.to_vec(),
        times: Vec::new(),
    };
    let (log, _) = format_log_timed(
        &captured(init_output),
        &captured(output),
        extra,
        r,
        (now, now),
    );
    log
}

/// [`format_log`] with the epoch ms of each of its lines: output lines when they were written,
/// `START` at `start_ms` (when the invocation started), the rest at `end_ms`.
pub fn format_log_timed(
    init_output: &Captured,
    output: &Captured,
    extra: &[String],
    r: &Report,
    (start_ms, end_ms): (u64, u64),
) -> (String, Vec<u64>) {
    let mut times = init_output.line_times(start_ms);
    times.push(start_ms);
    times.extend(output.line_times(start_ms));
    times.extend(std::iter::repeat_n(end_ms, extra.len() + 2));
    let log = format_text(&init_output.bytes, &output.bytes, extra, r);
    (log, times)
}

fn format_text(init_output: &[u8], output: &[u8], extra: &[String], r: &Report) -> String {
    let id = &r.request_id;
    let mut log = String::new();
    push_output(&mut log, init_output);
    log.push_str(&format!("START RequestId: {id} Version: {}\n", r.version));
    push_output(&mut log, output);
    for line in extra {
        log.push_str(line);
        log.push('\n');
    }
    log.push_str(&format!("END RequestId: {id}\n"));
    log.push_str(&format!(
        "REPORT RequestId: {id}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB",
        r.duration_ms,
        billed_ms(r.duration_ms),
        r.memory_size_mb,
        r.max_memory_used_mb
    ));
    if let Some(init) = r.init_duration_ms {
        log.push_str(&format!("\tInit Duration: {init:.2} ms"));
    }
    log.push('\n');
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(init: Option<f64>) -> Report {
        Report {
            request_id: "req-1".to_string(),
            version: "$LATEST".to_string(),
            duration_ms: 12.341,
            memory_size_mb: 128,
            max_memory_used_mb: 20,
            init_duration_ms: init,
        }
    }

    #[test]
    fn warm_log_has_start_output_end_report() {
        let log = format_log(b"", b"hello\nno newline", &[], &report(None));
        assert_eq!(
            log,
            "START RequestId: req-1 Version: $LATEST\nhello\nno newline\nEND RequestId: req-1\n\
             REPORT RequestId: req-1\tDuration: 12.34 ms\tBilled Duration: 13 ms\tMemory Size: 128 MB\t\
             Max Memory Used: 20 MB\n"
        );
    }

    #[test]
    fn cold_log_puts_init_output_first_and_reports_init_duration() {
        let extra = vec!["RequestId: req-1 Error: Task timed out after 3.00 seconds".to_string()];
        let log = format_log(b"loading\n", b"", &extra, &report(Some(56.789)));
        assert!(log.starts_with(
            "loading\nSTART RequestId: req-1 Version: $LATEST\nRequestId: req-1 Error: Task"
        ));
        assert!(log.contains("seconds\nEND RequestId: req-1\nREPORT"));
        assert!(
            log.ends_with("\tMax Memory Used: 20 MB\tInit Duration: 56.79 ms\n"),
            "{log}"
        );
    }

    #[test]
    fn billing_and_megabytes_round_up() {
        assert_eq!(billed_ms(0.2), 1);
        assert_eq!(billed_ms(12.0), 12);
        assert_eq!(billed_ms(12.01), 13);
        assert_eq!(bytes_to_mb(0), 0);
        assert_eq!(bytes_to_mb(1), 1);
        assert_eq!(bytes_to_mb(20 * 1024 * 1024), 20);
    }

    #[test]
    fn capped_buffer_marks_truncation() {
        let mut c = Capped::default();
        c.push(b"abc", 1);
        assert_eq!(c.take().bytes, b"abc");
        c.push(&vec![b'x'; MAX_OUTPUT_BYTES - 1], 2);
        c.push(b"yz", 3);
        let out = c.take().bytes;
        assert_eq!(out.len(), MAX_OUTPUT_BYTES + 1 + TRUNCATED_MARKER.len());
        assert!(out.ends_with(b"y\n... truncated\n"));
        assert!(
            c.take().bytes.is_empty(),
            "the next invocation starts empty"
        );
    }

    #[tokio::test]
    async fn drain_reads_what_the_pipe_holds() {
        use tokio::io::AsyncWriteExt;
        let (mut tx, rx) = tokio::net::unix::pipe::pipe().unwrap();
        let out = SandboxOutput::new(rx);
        tx.write_all(b"during init\n").await.unwrap();
        let (init, inv) = out.drain(false);
        assert_eq!(
            (init.bytes.as_slice(), inv.bytes.as_slice()),
            (&b"during init\n"[..], &b""[..])
        );
        tx.write_all(b"handler says hi\n").await.unwrap();
        let (init, inv) = out.drain(true);
        assert_eq!(
            (init.bytes.as_slice(), inv.bytes.as_slice()),
            (&b""[..], &b"handler says hi\n"[..])
        );
        tx.write_all(b"between invocations\n").await.unwrap();
        assert_eq!(out.drain(true).1.bytes, b"between invocations\n");
        drop(tx);
        assert_eq!(out.drain(true), (Captured::default(), Captured::default()));
    }

    #[tokio::test]
    async fn reader_task_empties_the_pipe_and_caps_the_log() {
        use tokio::io::AsyncWriteExt;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let stop = CancellationToken::new();
        let api = RuntimeApi::serve(listener, stop.clone()).unwrap();
        let (mut tx, rx) = tokio::net::unix::pipe::pipe().unwrap();
        let out = SandboxOutput::new(rx);
        spawn_reader(out.clone(), api, stop.clone());
        // Far more than a pipe holds: only completes if the reader keeps reading (and yields).
        let big = vec![b'x'; 300 * 1024];
        tokio::time::timeout(std::time::Duration::from_secs(10), tx.write_all(&big))
            .await
            .expect("the reader task drains the pipe")
            .unwrap();
        let (init, _) = out.drain(false);
        let init = init.bytes;
        assert_eq!(init.len(), MAX_OUTPUT_BYTES + 1 + TRUNCATED_MARKER.len());
        assert!(init.ends_with(TRUNCATED_MARKER.as_bytes()));
        stop.cancel();
    }

    /// Each log line carries when it was written: output lines the time their bytes were read,
    /// `START` the invocation's start, `END`/`REPORT` and extra lines its end; one time per line
    /// of the text, as the controller splits it.
    #[test]
    fn every_log_line_has_the_time_it_was_written() {
        let mut init = Capped::default();
        init.push(b"loading\n", 1_000);
        let mut inv = Capped::default();
        inv.push(b"first\nsecond ", 2_000);
        inv.push(b"half\n\nthird", 2_000);
        inv.push(b" later\n", 2_500);
        inv.push(b"last", 3_000);
        let extra = vec!["an error".to_string()];
        let (log, times) = format_log_timed(
            &init.take(),
            &inv.take(),
            &extra,
            &report(Some(1.0)),
            (1_500, 4_000),
        );
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), times.len(), "{log}");
        let timed: Vec<(&str, u64)> = lines.iter().copied().zip(times).collect();
        assert_eq!(
            &timed[..7],
            &[
                ("loading", 1_000),
                ("START RequestId: req-1 Version: $LATEST", 1_500),
                ("first", 2_000),
                ("second half", 2_000),
                ("", 2_000),
                ("third later", 2_000),
                ("last", 3_000),
            ]
        );
        assert_eq!(timed[7], ("an error", 4_000));
        assert_eq!(timed[8], ("END RequestId: req-1", 4_000));
        assert!(timed[9].0.starts_with("REPORT") && timed[9].1 == 4_000);
    }
}
