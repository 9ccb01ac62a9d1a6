//! `lamina-bench`: Lamina beside its peers, in one run, as root after `cargo build --workspace --bins`:
//!
//!     /var/tmp/lamina-target/debug/lamina-bench [--full] [--out docs/BENCHMARKS.md]
//!
//! Prints a table and writes it (with the machine and the run counts) to `docs/BENCHMARKS.md`:
//! - the same Python handler started by bare `python3.11`, `bwrap` and `runc` (`bench/peers.rs`);
//! - the sandbox layer alone (`lamina-sandbox-bench`): creations/s, preparations/s, cold start to the
//!   handler's answer from a fresh and from a prepared sandbox, Python and Node;
//! - the real API path (SDK -> controller -> worker -> sandbox -> Runtime API): warm overhead over the
//!   bare handler call, cold starts (fresh, and from the pool of prepared sandboxes), sustained no-op
//!   invocations/s with the CPU they cost, idle memory per warm sandbox, 100 concurrent cold starts;
//! - on three workers in network namespaces (`bench/concurrency.rs`): bursts of concurrent
//!   invocations cold, on provisioned sandboxes and warm, and 100 concurrent cold starts spread
//!   over the workers.
//!
//! Quick mode takes about 1.5 minutes on 2 cores; `--full` runs 5x as many samples (bursts: 16 at
//! once, 10 rounds).
#[path = "bench/concurrency.rs"]
mod concurrency;
#[path = "bench/peers.rs"]
mod peers;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/vpc.rs"]
mod vpc;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lamina_e2e::*;
use report::{ms, pct, Report};

const NOOP_JS: &str = "exports.handler = async (event) => ({ ok: true });\n";
const SLEEPY: &str =
    "import time\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return {'ok': True}\n";
/// Pool size of the second cluster (worker env `LAMINA_PREWARM_SANDBOXES`).
const PREWARM: usize = 4;

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cgroup = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2 (unified)"
    } else {
        "v1 (hybrid)"
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), kernel {}, cgroup {cgroup}",
        kernel.trim()
    )
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

fn ok(r: &v1::InvokeResponse, what: &str) -> Result<()> {
    if !r.function_error.is_empty() {
        bail!("{what} failed: {:?}", String::from_utf8_lossy(&r.payload));
    }
    Ok(())
}

async fn call(c: &Client, name: &str, payload: &str) -> Result<v1::InvokeResponse> {
    Ok(c.invoke(v1::InvokeRequest {
        function_name: name.to_string(),
        payload: payload.as_bytes().to_vec(),
        ..Default::default()
    })
    .await?)
}

async fn create(c: &Client, name: &str, runtime: &str, memory_mb: u32) -> Result<()> {
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
async fn cold_series(c: &Client, name: &str, n: usize) -> Result<Vec<f64>> {
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
        let r = call(c, name, "{}").await?;
        v.push(ms(t.elapsed()));
        ok(&r, "cold invocation")?;
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

async fn futures_join(
    calls: Vec<impl std::future::Future<Output = Result<v1::InvokeResponse>>>,
) -> Result<Vec<v1::InvokeResponse>> {
    let mut out = Vec::new();
    for r in join_all(calls).await {
        out.push(r?);
    }
    Ok(out)
}

/// Minimal join_all on tokio (the e2e crate has no `futures`): each future in a local task set.
async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
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

/// Eight warm, idle (frozen) sandboxes of one Python function: private and kernel memory each.
async fn idle_python_memory(c: &Client, worker_id: &str) -> Result<(Vec<f64>, Vec<f64>)> {
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

fn sandbox_bench(dir: &Path, runs: usize, seconds: f64) -> Result<serde_json::Value> {
    let out = Command::new(bin("lamina-sandbox-bench"))
        .arg("--dir")
        .arg(dir)
        .args([
            "--runs",
            &runs.to_string(),
            "--seconds",
            &seconds.to_string(),
        ])
        .output()
        .context("run lamina-sandbox-bench")?;
    if !out.status.success() {
        bail!(
            "lamina-sandbox-bench failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn samples(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let known = |a: &str| matches!(a, "--full" | "--out");
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        if a == "--out" {
            rest.next();
        } else if !known(a) {
            eprintln!(
                "usage: lamina-bench [--full] [--out FILE]   (as root; writes docs/BENCHMARKS.md by default)"
            );
            std::process::exit(if a == "-h" || a == "--help" { 0 } else { 2 });
        }
    }
    let full = args.iter().any(|a| a == "--full");
    let out_path = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/BENCHMARKS.md"));
    let k = if full { 5 } else { 1 };
    let (warm_n, cold_n, peer_n, secs) = (500 * k, 20 * k, 20 * k, 3.0 * k as f64);
    require_root();
    let machine = machine();
    let mode = format!(
        "{} (warm {warm_n}, cold {cold_n} per series, peers {peer_n}, sustained phases {secs} s)",
        if full { "--full" } else { "quick" }
    );
    println!("machine: {machine}\nmode: {mode}");
    Report::header();
    let mut rep = Report::default();
    let mut targets = Vec::new();
    if std::env::var_os("LAMINA_BENCH_VPC_ONLY").is_some() {
        let rt = tokio::runtime::Runtime::new()?;
        vpc::run(&rt, &mut rep, &mut targets, full)?;
        for t in &targets {
            println!("- {t}");
        }
        return Ok(());
    }
    let work = tempfile::Builder::new().prefix("lamina-bench-").tempdir()?;
    let code = work.path().join("code");
    std::fs::create_dir_all(&code)?;
    std::fs::write(code.join("app.py"), peers::HANDLER)?;

    // Peers, same handler, same run.
    let bare: Vec<f64> = peers::bare(&code, peer_n)?.into_iter().map(ms).collect();
    let (bare_p50, _) = rep.latency(
        "peer: bare python3.11 (process + import + call)",
        &bare,
        "1.00x".into(),
    );
    let bw: Vec<f64> = peers::bwrap(&code, peer_n)?.into_iter().map(ms).collect();
    let (bw_p50, _) = rep.latency(
        "peer: bwrap --unshare-all, same handler",
        &bw,
        format!("{:.2}x bare", pct(&bw, 0.5) / bare_p50),
    );
    match peers::runc(&code, work.path(), peer_n) {
        Ok(v) => {
            let v: Vec<f64> = v.into_iter().map(ms).collect();
            rep.latency(
                "peer: runc run (bind-mounted /usr rootfs), same handler",
                &v,
                format!("{:.2}x bare", pct(&v, 0.5) / bare_p50),
            );
        }
        Err(e) => rep.add(
            "peer: runc run",
            0,
            "-".into(),
            "-".into(),
            format!("failed: {e:#}"),
        ),
    }

    // The sandbox layer alone.
    let sb = sandbox_bench(&work.path().join("sandbox"), cold_n, secs)?;
    let rate = |k: &str| sb[k]["per_s"].as_f64().unwrap_or(0.0);
    let per_s = rate("creations_spawner");
    rep.add(
        "sandbox creations/s, sustained, inits forked by the spawner",
        sb["creations_spawner"]["count"].clone(),
        format!("{per_s:.0}/s"),
        "-".into(),
        "start+exec /usr/bin/true+destroy, 4 at a time (worker default)".into(),
    );
    rep.add(
        "sandbox creations/s, sustained, each init spawned + exec'd",
        sb["creations"]["count"].clone(),
        format!("{:.0}/s", rate("creations")),
        "-".into(),
        "LAMINA_SPAWNER=0".into(),
    );
    targets.push(format!(
        "sandbox creations >= 300/s: {per_s:.0}/s with the spawner, {:.0}/s without — {}",
        rate("creations"),
        if per_s >= 300.0 { "met" } else { "MISSED" }
    ));
    rep.add(
        "sandbox preparations/s (pool refill), spawner",
        sb["preparations_spawner"]["count"].clone(),
        format!("{:.0}/s", rate("preparations_spawner")),
        "-".into(),
        "cgroup+namespaces+root+socket, no code".into(),
    );
    let mut sb_py_fresh = f64::NAN;
    let mut sb_py_zygote = f64::NAN;
    let mut sb_py_zygote_fresh = f64::NAN;
    for (key, label) in [
        (
            "cold_python_fresh",
            "sandbox layer: python cold start, fresh sandbox",
        ),
        (
            "cold_python_prepared",
            "sandbox layer: python cold start, prepared sandbox",
        ),
        (
            "cold_python_zygote_fresh",
            "sandbox layer: python cold start, zygote fork, fresh",
        ),
        (
            "cold_python_zygote_prepared",
            "sandbox layer: python cold start, zygote fork, prepared",
        ),
        (
            "cold_node_fresh",
            "sandbox layer: node cold start, fresh sandbox",
        ),
        (
            "cold_node_prepared",
            "sandbox layer: node cold start, prepared sandbox",
        ),
    ] {
        let v = samples(&sb[key]);
        let note = if key.starts_with("cold_python") {
            format!("{:.2}x bwrap", pct(&v, 0.5) / bw_p50)
        } else {
            String::new()
        };
        let (p50, _) = rep.latency(label, &v, note);
        match key {
            "cold_python_fresh" => sb_py_fresh = p50,
            "cold_python_zygote_prepared" => sb_py_zygote = p50,
            "cold_python_zygote_fresh" => sb_py_zygote_fresh = p50,
            _ => {}
        }
    }

    let rt = tokio::runtime::Runtime::new()?;
    // Cluster 1: no pool (every cold start builds its sandbox).
    std::env::set_var("LAMINA_PREWARM_SANDBOXES", "0");
    let cluster = Cluster::start_with(1, &["--memory-mb", "32768"])?;
    let handler_call = ms(peers::handler_call(&code)?);
    let mut e2e_py_fresh = f64::NAN;
    rt.block_on(async {
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
        let direct = worker_warm_series(&cluster, function, warm_n).await?;
        let over: Vec<f64> = direct.iter().map(|w| w - handler_call).collect();
        rep.latency(
            "warm invoke: worker share (Worker.Invoke direct - handler)",
            &over,
            "gRPC to the worker, sandbox, Runtime API, back".into(),
        );
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

        let noop = unique("bench-noop");
        create(&c, &noop, "python3.11", 512).await?;
        let (n, rate, busy) = throughput(&c, &noop, 4, Duration::from_secs_f64(secs)).await?;
        rep.add(
            "no-op invocations/s, sustained, one node (4 clients)",
            n,
            format!("{rate:.0}/s"),
            "-".into(),
            format!("{busy:.2} cores busy (whole machine, client included)"),
        );
        targets.push(format!(
            "no-op invocations >= 5000/s: {rate:.0}/s — {}",
            if rate >= 5000.0 { "met" } else { "MISSED" }
        ));

        let (priv_mb, kern_mb) = idle_python_memory(&c, &cluster.worker_ids[0]).await?;
        rep.add(
            "idle warm python sandbox: private memory (all its processes)",
            priv_mb.len(),
            format!("{:.2} MB", pct(&priv_mb, 0.5)),
            format!("{:.2} MB", pct(&priv_mb, 0.99)),
            "smaps_rollup Private_*".into(),
        );
        rep.add(
            "idle warm python sandbox: kernel memory (cgroup kmem)",
            kern_mb.len(),
            format!("{:.2} MB", pct(&kern_mb, 0.5)),
            format!("{:.2} MB", pct(&kern_mb, 0.99)),
            "+ ~0.2 MB per netns (not charged)".into(),
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

        // 100 concurrent cold starts; the same measurement over three workers in `concurrency`.
        concurrency::stampede(&cluster, &mut rep, "one worker").await?;
        Ok::<_, anyhow::Error>(())
    })?;
    drop(cluster);

    // Cluster 2: a pool of prepared sandboxes.
    std::env::set_var("LAMINA_PREWARM_SANDBOXES", PREWARM.to_string());
    let cluster = Cluster::start_with(1, &["--memory-mb", "32768"])?;
    let mut e2e_py_pool = f64::NAN;
    rt.block_on(async {
        let c = cluster.client().await?;
        let py = unique("bench-py");
        create(&c, &py, "python3.11", 1769).await?;
        call(&c, &py, "{}").await?;
        let cold = cold_series(&c, &py, cold_n).await?;
        (e2e_py_pool, _) = rep.latency(
            &format!("python cold start end to end, pool of {PREWARM} prepared"),
            &cold,
            format!("{:.2}x bwrap", pct(&cold, 0.5) / bw_p50),
        );
        let node = unique("bench-node");
        create(&c, &node, "nodejs20.x", 1769).await?;
        let cold = cold_series(&c, &node, cold_n).await?;
        rep.latency(
            &format!("node cold start end to end, pool of {PREWARM} prepared"),
            &cold,
            String::new(),
        );
        Ok::<_, anyhow::Error>(())
    })?;
    drop(cluster);

    // Cluster 3: the Python zygote, and a pool of zygote-forked prepared sandboxes.
    std::env::set_var("LAMINA_PYTHON_ZYGOTE", "1");
    let cluster = Cluster::start_with(1, &["--memory-mb", "32768"])?;
    let mut e2e_py_zygote = f64::NAN;
    let mut zygote_mem = f64::NAN;
    rt.block_on(async {
        let c = cluster.client().await?;
        let py = unique("bench-py");
        create(&c, &py, "python3.11", 1769).await?;
        call(&c, &py, "{}").await?;
        let cold = cold_series(&c, &py, cold_n).await?;
        (e2e_py_zygote, _) = rep.latency(
            &format!("python cold start end to end, zygote + pool of {PREWARM}"),
            &cold,
            format!("{:.2}x bwrap", pct(&cold, 0.5) / bw_p50),
        );
        let (priv_mb, kern_mb) = idle_python_memory(&c, &cluster.worker_ids[0]).await?;
        zygote_mem = pct(&priv_mb, 0.5);
        rep.add(
            "idle warm zygote-forked python sandbox: private memory",
            priv_mb.len(),
            format!("{:.2} MB", pct(&priv_mb, 0.5)),
            format!("{:.2} MB", pct(&priv_mb, 0.99)),
            "shared with the zygote: not counted".into(),
        );
        rep.add(
            "idle warm zygote-forked python sandbox: kernel memory",
            kern_mb.len(),
            format!("{:.2} MB", pct(&kern_mb, 0.5)),
            format!("{:.2} MB", pct(&kern_mb, 0.99)),
            String::new(),
        );
        Ok::<_, anyhow::Error>(())
    })?;
    drop(cluster);
    std::env::remove_var("LAMINA_PYTHON_ZYGOTE");

    // Cluster 4: three workers in network namespaces — cold vs provisioned vs warm bursts, and 100
    // concurrent cold starts spread over them (issue 4).
    concurrency::run(&rt, &mut rep, &mut targets, full)?;
    // Cluster 5: the cost of a VPC attachment on a cold start (issue 5).
    vpc::run(&rt, &mut rep, &mut targets, full)?;

    let best_pool = e2e_py_pool.min(e2e_py_zygote);
    targets.push(format!(
        "python cold start from the pool/zygote <= 5 ms p50: {best_pool:.1} ms end to end, {sb_py_zygote:.1} ms at the sandbox layer (zygote, prepared) — {}",
        if best_pool <= 5.0 { "met end to end" } else if sb_py_zygote <= 5.0 { "met at the sandbox layer, MISSED end to end" } else { "MISSED" }
    ));
    targets.push(format!(
        "fresh python sandbox no slower than bwrap ({bw_p50:.1} ms): zygote-forked {sb_py_zygote_fresh:.1} ms — {}; exec'd interpreter {sb_py_fresh:.1} ms ({e2e_py_fresh:.1} ms end to end) — {}",
        if sb_py_zygote_fresh <= bw_p50 { "met" } else { "MISSED" },
        if sb_py_fresh <= bw_p50 { "met" } else { "MISSED" }
    ));
    targets.push(format!(
        "idle zygote-forked python sandbox <= 1 MB private: {zygote_mem:.2} MB — {}",
        if zygote_mem <= 1.0 { "met" } else { "MISSED" }
    ));
    println!("\ntargets:");
    for t in &targets {
        println!("- {t}");
    }
    std::fs::write(&out_path, rep.markdown(&machine, &mode, &targets))
        .with_context(|| format!("write {}", out_path.display()))?;
    println!("written to {}", out_path.display());
    Ok(())
}
