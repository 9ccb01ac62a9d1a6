//! The API path on one worker (SDK -> controller -> worker -> sandbox -> Runtime API): warm
//! overhead over the bare handler, the worker's share of it, cold starts, sustained no-op
//! invocations (Lamina's Python runtime, and a native runtime that costs next to nothing, so the
//! platform's own cost shows), idle memory per warm sandbox.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use lamina_e2e::*;

use super::report::{ms, pct, Report};

const NOOP_JS: &str = "exports.handler = async (event) => ({ ok: true });\n";
const SLEEPY: &str =
    "import time\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return {'ok': True}\n";

/// Waits (at most `max`) until the machine is quiet: under 15% busy over 300 ms. The sandbox layer
/// leaves thousands of network namespaces that the kernel tears down in the background for
/// seconds; a phase started meanwhile would measure that cleanup too.
pub(crate) fn wait_quiet(max: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < max {
        let (b0, t0) = cpu_jiffies();
        std::thread::sleep(Duration::from_millis(300));
        let (b1, t1) = cpu_jiffies();
        if ((b1 - b0) as f64) < 0.15 * (t1 - t0).max(1) as f64 {
            break;
        }
    }
    start.elapsed()
}

/// Busy and total jiffies of the whole machine (`/proc/stat`).
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

pub(crate) fn ok(r: &v1::InvokeResponse, what: &str) -> Result<()> {
    if !r.function_error.is_empty() {
        bail!("{what} failed: {:?}", String::from_utf8_lossy(&r.payload));
    }
    Ok(())
}

pub(crate) async fn call(c: &Client, name: &str, payload: &str) -> Result<v1::InvokeResponse> {
    Ok(c.invoke(v1::InvokeRequest {
        function_name: name.to_string(),
        payload: payload.as_bytes().to_vec(),
        ..Default::default()
    })
    .await?)
}

pub(crate) async fn create(c: &Client, name: &str, runtime: &str, memory_mb: u32) -> Result<()> {
    let (file, src) = if runtime.starts_with("node") {
        ("app.js", NOOP_JS)
    } else {
        ("app.py", SLEEPY)
    };
    let mut s = spec(name, runtime, "app.handler");
    s.memory_size_mb = memory_mb;
    c.create_function(s, zip_of(&[(file, src, 0o644)])).await?;
    Ok(())
}

async fn warm_series(c: &Client, name: &str, n: usize) -> Result<Vec<f64>> {
    ok(&call(c, name, "{}").await?, "first invocation")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = call(c, name, "{}").await?;
        v.push(ms(t.elapsed()));
        ok(&r, "warm invocation")?;
    }
    Ok(v)
}

/// Warm invocations sent straight to the worker's `Worker.Invoke` (what the controller sends): the
/// worker's share of the overhead, without the SDK -> controller hop and the controller's log write.
async fn worker_warm_series(
    cluster: &Cluster,
    function: v1::FunctionConfiguration,
    n: usize,
) -> Result<Vec<f64>> {
    let address = format!("http://{}", cluster.workers[0].address);
    let channel = tonic::transport::Endpoint::from_shared(address)?
        .connect()
        .await?;
    // Calls to the worker are signed with the cluster credential, as the controller's are.
    let creds = cluster.cluster_credentials()?;
    let mut w =
        v1::worker_client::WorkerClient::new(lamina_proto::auth::Signed::new(channel, Some(creds)));
    let mut v = Vec::with_capacity(n + 1);
    for i in 0..=n {
        let req = v1::WorkerInvokeRequest {
            request_id: format!("bench-{i}"),
            function: Some(function.clone()),
            payload: b"{}".to_vec(),
            deadline_ms: 0,
            client_context: String::new(),
            trace_id: String::new(),
            invoked_function_arn: String::new(),
            credentials: None,
        };
        let t = Instant::now();
        let r = w.invoke(req).await?.into_inner();
        if i > 0 {
            v.push(ms(t.elapsed()));
        }
        if !r.function_error.is_empty() {
            bail!(
                "worker invocation failed: {:?}",
                String::from_utf8_lossy(&r.payload)
            );
        }
    }
    Ok(v)
}

/// Each run changes the configuration (a new revision), so the next invocation needs a new sandbox.
/// A `provided` function whose bootstrap is `lamina-noop-runtime` (built beside this binary).
pub(crate) fn native_noop_zip() -> Result<Vec<u8>> {
    use std::io::Write;
    let binary = std::fs::read(bin("lamina-noop-runtime")).map_err(|e| {
        anyhow::anyhow!("lamina-noop-runtime (cargo build --workspace --bins --lib): {e}")
    })?;
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zw = zip::ZipWriter::new(&mut buf);
    zw.start_file(
        "bootstrap",
        zip::write::SimpleFileOptions::default().unix_permissions(0o755),
    )?;
    zw.write_all(&binary)?;
    zw.finish()?;
    Ok(buf.into_inner())
}

pub(crate) async fn cold_series(c: &Client, name: &str, n: usize) -> Result<Vec<f64>> {
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        c.update_function_configuration(v1::UpdateFunctionConfigurationRequest {
            function_name: name.to_string(),
            replace_environment: true,
            environment: [("RUN".to_string(), i.to_string())].into_iter().collect(),
            ..Default::default()
        })
        .await?;
        // Let the pool refill as it would between real cold starts.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let t = Instant::now();
        let r = c
            .invoke(v1::InvokeRequest {
                function_name: name.to_string(),
                payload: b"{}".to_vec(),
                log_type: v1::LogType::Tail as i32,
                ..Default::default()
            })
            .await?;
        v.push(ms(t.elapsed()));
        ok(&r, "cold invocation")?;
        if std::env::var_os("LAMINA_BENCH_TRACE").is_some() {
            let report = r.log_tail.lines().find(|l| l.starts_with("REPORT"));
            println!(
                "cold {:.2} ms: {}",
                ms(t.elapsed()),
                report.unwrap_or("no REPORT")
            );
        }
    }
    Ok(v)
}

/// `conc` clients invoking back to back for `dur`: (invocations, per second, machine cores busy).
async fn throughput(
    c: &Client,
    name: &str,
    conc: usize,
    dur: Duration,
) -> Result<(usize, f64, f64)> {
    for _ in 0..3 {
        let calls: Vec<_> = (0..conc).map(|_| call(c, name, "{}")).collect();
        futures_join(calls).await?;
    }
    let (b0, t0) = cpu_jiffies();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (c, name) = (c.clone(), name.to_string());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while start.elapsed() < dur {
                ok(&call(&c, &name, "{}").await?, "throughput invocation")?;
                n += 1;
            }
            Ok::<_, anyhow::Error>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    let (b1, t1) = cpu_jiffies();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let busy = (b1 - b0) as f64 / (t1 - t0).max(1) as f64 * cores;
    Ok((total, total as f64 / secs, busy))
}

pub(crate) async fn futures_join(
    calls: Vec<impl std::future::Future<Output = Result<v1::InvokeResponse>>>,
) -> Result<Vec<v1::InvokeResponse>> {
    let mut out = Vec::new();
    for r in join_all(calls).await {
        out.push(r?);
    }
    Ok(out)
}

/// Minimal join_all on tokio (the e2e crate has no `futures`): each future in a local task set.
pub(crate) async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|o| o.expect("every future finished"))
        .collect()
}

fn kb_field(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn sandbox_dirs(worker_id: &str) -> Vec<PathBuf> {
    let v1 = Path::new("/sys/fs/cgroup/memory");
    let parent = if v1.exists() {
        v1.join("lamina").join(worker_id)
    } else {
        Path::new("/sys/fs/cgroup/lamina").join(worker_id)
    };
    std::fs::read_dir(&parent)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

/// Per bound sandbox of the worker not in `skip`: private memory of its processes (smaps_rollup)
/// and its cgroup's kernel memory, in KB. Prepared sandboxes (only root processes) are left out.
fn idle_memory(worker_id: &str, skip: &[PathBuf]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for dir in sandbox_dirs(worker_id) {
        if skip.contains(&dir) {
            continue;
        }
        let mut private = 0;
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let bound = procs.lines().any(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                s.lines()
                    .any(|l| l.starts_with("Uid:") && !l.contains("\t0\t"))
            })
        });
        if !bound {
            continue;
        }
        for pid in procs.lines() {
            let s =
                std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
            private += kb_field(&s, "Private_Clean:") + kb_field(&s, "Private_Dirty:");
        }
        let kernel = std::fs::read_to_string(dir.join("memory.kmem.usage_in_bytes"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .or_else(|| {
                let stat = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
                stat.lines()
                    .find_map(|l| l.strip_prefix("kernel "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
            / 1024;
        out.push((private, kernel));
    }
    out
}

/// A row of memory samples in MB: p50 and p99.
pub(crate) fn mb_row(rep: &mut Report, what: &str, mb: &[f64], note: &str) {
    rep.add(
        what,
        mb.len(),
        format!("{:.2} MB", pct(mb, 0.5)),
        format!("{:.2} MB", pct(mb, 0.99)),
        note.into(),
    );
}

/// Eight warm, idle (frozen) sandboxes of one Python function: private and kernel memory each.
pub(crate) async fn idle_python_memory(
    c: &Client,
    worker_id: &str,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let before = sandbox_dirs(worker_id);
    let mem = unique("bench-mem");
    create(c, &mem, "python3.11", 128).await?;
    let calls: Vec<_> = (0..8).map(|_| call(c, &mem, r#"{"sleep":0.5}"#)).collect();
    for r in futures_join(calls).await? {
        ok(&r, "memory invocation")?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = idle_memory(worker_id, &before);
    Ok((
        m.iter().map(|(p, _)| *p as f64 / 1024.0).collect(),
        m.iter().map(|(_, k)| *k as f64 / 1024.0).collect(),
    ))
}

/// Cluster 1's phases, and `--only api`: warm overhead and the worker's share, cold starts (fresh
/// sandbox) unless `cold_n` is 0, no-op invocations/s, idle memory. Returns the Python cold start p50.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    cluster: &Cluster,
    rep: &mut Report,
    targets: &mut Vec<String>,
    warm_n: usize,
    cold_n: usize,
    secs: f64,
    handler_call: f64,
    bw_p50: f64,
) -> Result<f64> {
    let mut e2e_py_fresh = f64::NAN;
    let c = cluster.client().await?;
    let py = unique("bench-py");
    create(&c, &py, "python3.11", 1769).await?;
    let warm = warm_series(&c, &py, warm_n).await?;
    let over: Vec<f64> = warm.iter().map(|w| w - handler_call).collect();
    let (p50, p99) = rep.latency(
        "warm invoke: platform overhead (end to end - handler)",
        &over,
        format!("handler {handler_call:.3} ms"),
    );
    targets.push(format!(
        "warm overhead p50 <= 1 ms, p99 <= 5 ms: {p50:.2} / {p99:.2} ms end to end — {}",
        if p50 <= 1.0 && p99 <= 5.0 {
            "met"
        } else {
            "MISSED"
        }
    ));
    let function = c.get_function(&py).await?;
    let direct = worker_warm_series(cluster, function, warm_n).await?;
    let over: Vec<f64> = direct.iter().map(|w| w - handler_call).collect();
    rep.latency(
        "warm invoke: worker share (Worker.Invoke direct - handler)",
        &over,
        "gRPC to the worker, sandbox, Runtime API, back".into(),
    );
    if cold_n > 0 {
        let cold = cold_series(&c, &py, cold_n).await?;
        (e2e_py_fresh, _) = rep.latency(
            "python cold start end to end, fresh sandbox",
            &cold,
            format!("{:.2}x bwrap", pct(&cold, 0.5) / bw_p50),
        );
        let node = unique("bench-node");
        create(&c, &node, "nodejs20.x", 1769).await?;
        let cold = cold_series(&c, &node, cold_n).await?;
        rep.latency(
            "node cold start end to end, fresh sandbox",
            &cold,
            String::new(),
        );
    }

    // No-op invocations: Lamina's Python runtime, and a native runtime (`lamina-noop-runtime`).
    let py_noop = unique("bench-noop");
    create(&c, &py_noop, "python3.11", 512).await?;
    let native_noop = unique("bench-native");
    let mut s = spec(&native_noop, "provided", "noop.handler");
    s.memory_size_mb = 512;
    c.create_function(s, native_noop_zip()?).await?;
    let mut best = (0.0, String::new());
    for (name, runtime, clients) in [
        (&py_noop, "python3.11", 4),
        (&py_noop, "python3.11", 16),
        (&native_noop, "native", 4),
        (&native_noop, "native", 16),
        (&native_noop, "native", 32),
    ] {
        let (n, rate, busy) = throughput(&c, name, clients, Duration::from_secs_f64(secs)).await?;
        let what =
            format!("no-op invocations/s, sustained, one node ({runtime}, {clients} clients)");
        rep.add(
            &what,
            n,
            format!("{rate:.0}/s"),
            "-".into(),
            format!(
                "{busy:.2} cores busy (whole machine, client included), {:.0} us CPU each",
                busy / rate * 1e6
            ),
        );
        if rate > best.0 {
            best = (rate, format!("{runtime}, {clients} clients"));
        }
    }
    targets.push(format!(
        "no-op invocations >= 5000/s: {:.0}/s ({}) — {}",
        best.0,
        best.1,
        if best.0 >= 5000.0 { "met" } else { "MISSED" }
    ));

    let (priv_mb, kern_mb) = idle_python_memory(&c, &cluster.worker_ids[0]).await?;
    mb_row(
        rep,
        "idle warm python sandbox: private memory (all its processes)",
        &priv_mb,
        "smaps_rollup Private_*",
    );
    mb_row(
        rep,
        "idle warm python sandbox: kernel memory (cgroup kmem)",
        &kern_mb,
        "+ ~0.2 MB per netns (not charged)",
    );
    targets.push(format!(
        "idle warm python sandbox <= 5 MB private: {:.2} MB — {}",
        pct(&priv_mb, 0.5),
        if pct(&priv_mb, 0.5) <= 5.0 {
            "met"
        } else {
            "MISSED"
        }
    ));
    Ok(e2e_py_fresh)
}
