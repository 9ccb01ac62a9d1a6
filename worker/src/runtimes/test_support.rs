//! Runs a bootstrap for real as a host process against a `RuntimeApi` on 127.0.0.1:0, with the
//! handler files in a temporary `LAMBDA_TASK_ROOT`.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use lamina_proto::domain::Runtime;

use crate::runtime_api::{Invocation, InvocationOutcome, RuntimeApi};

const T: Duration = Duration::from_secs(20);

pub(crate) const FUNCTION_NAME: &str = "fn-test";
pub(crate) const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:fn-test";
pub(crate) const TRACE: &str =
    "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";

pub(crate) struct Harness {
    pub(crate) api: RuntimeApi,
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    token: CancellationToken,
    _runtime_dir: tempfile::TempDir,
    _task_dir: tempfile::TempDir,
    seq: u32,
}

fn collect(mut r: impl AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let sink = out.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    out
}

pub(crate) fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

impl Harness {
    /// Starts `runtime`'s bootstrap with `files` (path, content) in the task root and `_HANDLER=handler`.
    pub(crate) async fn start(runtime: Runtime, files: &[(&str, &str)], handler: &str) -> Harness {
        let runtime_dir = tempfile::tempdir().unwrap();
        super::install(runtime_dir.path()).unwrap();
        let task_dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let p = task_dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let api = RuntimeApi::serve(listener, token.clone()).unwrap();

        let (program, script) = match runtime {
            Runtime::Python311 => ("/usr/bin/python3.11", "bootstrap.py"),
            Runtime::Nodejs20 => ("/usr/bin/node", "bootstrap.js"),
            r => panic!("{r} has no Lamina bootstrap"),
        };
        let mut cmd = Command::new(program);
        cmd.arg(runtime_dir.path().join(script))
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("_HANDLER", handler)
            .env("LAMBDA_TASK_ROOT", task_dir.path())
            .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION_NAME)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/fn-test")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2024/01/01/[$LATEST]abc")
            .envs(super::runtime_env(runtime))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Harness {
            api,
            child,
            stdout,
            stderr,
            token,
            _runtime_dir: runtime_dir,
            _task_dir: task_dir,
            seq: 0,
        }
    }

    /// An invocation with a fresh request id, due in `deadline_in_ms`.
    pub(crate) fn invocation(&mut self, payload: &str, deadline_in_ms: u64) -> Invocation {
        self.seq += 1;
        Invocation {
            request_id: format!("0000000{}-aaaa-bbbb-cccc-dddddddddddd", self.seq),
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            deadline_ms: now_ms() + deadline_in_ms,
            dispatched_at: std::time::Instant::now(),
            invoked_function_arn: ARN.to_owned(),
            trace_id: TRACE.to_owned(),
            client_context: None,
        }
    }

    pub(crate) async fn run(&self, inv: Invocation) -> InvocationOutcome {
        match timeout(T, self.api.invoke(inv)).await {
            Ok(o) => o,
            Err(_) => panic!(
                "no outcome in time\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            ),
        }
    }

    pub(crate) async fn invoke(&mut self, payload: &str) -> InvocationOutcome {
        let inv = self.invocation(payload, 30_000);
        self.run(inv).await
    }

    pub(crate) fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stdout (or stderr) contains `needle`; the log was flushed before the POST, the
    /// reader task may just not have read it yet.
    pub(crate) async fn wait_log(&self, needle: &str) -> String {
        for _ in 0..200 {
            let all = format!("{}{}", self.stdout(), self.stderr());
            if all.contains(needle) {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "log never contained {needle:?}\nstdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
    }

    pub(crate) async fn wait_exit(&mut self) -> ExitStatus {
        timeout(T, self.child.wait())
            .await
            .expect("runtime exits in time")
            .unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// The JSON of a response or error body.
pub(crate) fn body_json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|e| panic!("not json ({e}): {}", String::from_utf8_lossy(b)))
}

pub(crate) fn expect_response(o: InvocationOutcome) -> serde_json::Value {
    match o {
        InvocationOutcome::Response(b) => body_json(&b),
        other => panic!("expected a response, got {other:?}"),
    }
}

pub(crate) fn expect_error(o: InvocationOutcome) -> (String, serde_json::Value) {
    match o {
        InvocationOutcome::Error { error_type, body } => (error_type, body_json(&body)),
        other => panic!("expected an error, got {other:?}"),
    }
}

pub(crate) fn expect_init_error(o: InvocationOutcome) -> (String, serde_json::Value) {
    match o {
        InvocationOutcome::InitError { error_type, body } => (error_type, body_json(&body)),
        other => panic!("expected an init error, got {other:?}"),
    }
}

/// A hundred warm invocations in a row on one keep-alive connection all answer. The mean round
/// trip is printed (speed is checked by the benchmark, not by timed assertions here).
pub(crate) async fn assert_warm_latency(h: &mut Harness) {
    expect_response(h.invoke("{}").await);
    let n: u32 = 100;
    let start = std::time::Instant::now();
    for _ in 0..n {
        expect_response(h.invoke(r#"{"k":"v"}"#).await);
    }
    let mean = start.elapsed() / n;
    eprintln!("warm invoke mean round trip: {mean:?}");
}
