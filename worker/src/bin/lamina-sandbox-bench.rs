//! `lamina-sandbox-bench`: the sandbox layer of the worker measured without the gRPC hops, run by
//! `lamina-bench` (which prints and records the figures). As root:
//!
//!     lamina-sandbox-bench --dir DIR [--runs N] [--seconds S]
//!
//! Prints one JSON object: sandbox creations per second (start + destroy, sustained, 4 at a time),
//! each init spawned and exec'd, and forked by the spawner; preparations per second (what refills
//! the pool), and the cold start of the same Python and Node
//! handlers from a fresh sandbox and from a prepared one (to the handler's answer on the Runtime API),
//! in milliseconds per run. Like the worker, it re-executes itself as the sandbox init
//! (`__sandbox-init`).
//!
//! Every key is measured with cgroup reuse off (a cgroup created and removed per sandbox); the keys
//! ending in `_reuse` are the same measurement right after, with emptied cgroups reused
//! (`cgroup::take_or_create`, the worker's default), and `cgroup_reuse` counts how often a
//! sandbox got a reused cgroup in those phases. `cgroup_cycle_us` times the cgroup's part alone
//! (get one, kill its processes, retire it) without and with reuse, in microseconds per cycle.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use lamina_proto::domain::Runtime;
use lamina_worker::cgroup;
use lamina_worker::runtime_api::{Invocation, InvocationOutcome, RuntimeApi};
use lamina_worker::runtimes;
use lamina_worker::sandbox::{Launcher, PrepareSpec, PreparedSandbox, SandboxSpec};
use tokio_util::sync::CancellationToken;

const PY: &str = "def handler(event, context):\n    return {'ok': True}\n";
const JS: &str = "exports.handler = async (event) => ({ ok: true });\n";
const CGROUP_PARENT: &str = "lamina-bench/sandbox";
/// Sandboxes started (or prepared) at a time in the sustained phases.
const CONCURRENCY: usize = 4;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__sandbox-init") {
        lamina_worker::sandbox::init::main();
    }
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dir = PathBuf::from(arg("--dir").context("--dir DIR is required")?);
    let runs: usize = arg("--runs").map_or(Ok(20), |v| v.parse())?;
    let seconds: f64 = arg("--seconds").map_or(Ok(3.0), |v| v.parse())?;
    let rt = tokio::runtime::Runtime::new()?;
    let out = rt.block_on(bench(&dir, runs, Duration::from_secs_f64(seconds)));
    lamina_worker::sandbox::remove_cgroup_parent(CGROUP_PARENT);
    println!("{}", out?);
    Ok(())
}

struct Fixture {
    dir: PathBuf,
    code: PathBuf,
    runtime: PathBuf,
    next: std::sync::atomic::AtomicUsize,
}

impl Fixture {
    fn new(dir: &Path) -> Result<Fixture> {
        let code = dir.join("code");
        let runtime = dir.join("runtime");
        std::fs::create_dir_all(&code)?;
        std::fs::write(code.join("app.py"), PY)?;
        std::fs::write(code.join("app.js"), JS)?;
        runtimes::install(&runtime)?;
        for d in [dir, code.as_path()] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(Fixture {
            dir: dir.to_path_buf(),
            code,
            runtime,
            next: Default::default(),
        })
    }

    fn spec(&self, runtime: Runtime, argv: Vec<String>) -> SandboxSpec {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("sb-bench-{}-{n}", std::process::id());
        let mut env = vec![
            ("PATH".to_string(), "/usr/bin:/bin".to_string()),
            ("_HANDLER".to_string(), "app.handler".to_string()),
            ("LAMBDA_TASK_ROOT".to_string(), "/var/task".to_string()),
            (
                "AWS_LAMBDA_RUNTIME_API".to_string(),
                "127.0.0.1:9001".to_string(),
            ),
        ];
        env.extend(runtimes::runtime_env(runtime));
        SandboxSpec {
            layer_dirs: Vec::new(),
            work_dir: self.dir.join("work").join(&id),
            sandbox_id: id,
            runtime,
            code_dir: self.code.clone(),
            runtime_dir: self.runtime.clone(),
            cgroup_parent: CGROUP_PARENT.to_string(),
            memory_mb: 1769,
            ephemeral_storage_mb: 64,
            argv,
            env,
            host_uid: 231_072,
            pids_max: 256,
        }
    }
}

fn prepare_spec(s: &SandboxSpec) -> PrepareSpec {
    s.clone().split().0
}

/// Start + destroy of a sandbox running `/usr/bin/true`, `workers` at a time, for `dur`.
async fn creations(
    fx: &Arc<Fixture>,
    dur: Duration,
    prepare_only: bool,
    spawner: Option<Arc<Launcher>>,
) -> Result<(usize, f64)> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let fx = fx.clone();
        let spawner = spawner.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while start.elapsed() < dur {
                let spec = fx.spec(Runtime::Provided, vec!["/usr/bin/true".into()]);
                if prepare_only {
                    PreparedSandbox::prepare_with(prepare_spec(&spec), spawner.clone())
                        .await?
                        .destroy()
                        .await;
                } else {
                    let (prep, bind) = spec.split();
                    let sb = PreparedSandbox::prepare_with(prep, spawner.clone())
                        .await?
                        .bind(bind)
                        .await?;
                    sb.wait_exit().await;
                    sb.destroy().await;
                }
                n += 1;
            }
            Ok::<_, anyhow::Error>(n)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok((total, total as f64 / start.elapsed().as_secs_f64()))
}

/// Cold start to the handler's answer: from a fresh sandbox, or binding an already prepared one.
async fn cold(
    fx: &Fixture,
    runtime: Runtime,
    pooled: bool,
    zygote: Option<Arc<Launcher>>,
) -> Result<f64> {
    let spec = fx.spec(runtime, runtimes::command(runtime));
    let (prep, bind) = spec.split();
    let prepared = if pooled {
        Some(PreparedSandbox::prepare_with(prep.clone(), zygote.clone()).await?)
    } else {
        None
    };
    let t = Instant::now();
    let prepared = match prepared {
        Some(p) => p,
        None => PreparedSandbox::prepare_with(prep, zygote).await?,
    };
    let tb = Instant::now();
    let mut sb = prepared.bind(bind).await?;
    let bind_ms = tb.elapsed().as_secs_f64() * 1000.0;
    let stop = CancellationToken::new();
    let api = RuntimeApi::serve(
        sb.take_runtime_api_listener().context("no listener")?,
        stop.clone(),
    )?;
    let inv = Invocation {
        request_id: "bench".into(),
        payload: Bytes::from_static(b"{}"),
        deadline_ms: u64::MAX / 2,
        dispatched_at: std::time::Instant::now(),
        invoked_function_arn: "arn:aws:lambda:local:0:function:bench".into(),
        trace_id: "Root=1-0-0".into(),
        client_context: None,
    };
    let outcome = tokio::time::timeout(Duration::from_secs(20), api.invoke(inv)).await;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    if std::env::var_os("LAMINA_BENCH_DEBUG").is_some() {
        let init = api.init_done_at().map(|i| (i - tb).as_secs_f64() * 1000.0);
        eprintln!("{runtime:?} pooled={pooled} bind {bind_ms:.2} ms, init done {init:?} ms, answered {ms:.2} ms");
    }
    stop.cancel();
    sb.destroy().await;
    match outcome {
        Ok(InvocationOutcome::Response(body))
            if body.as_ref() == br#"{"ok": true}"# || body.as_ref() == br#"{"ok":true}"# =>
        {
            Ok(ms)
        }
        other => bail!("{runtime:?} cold start did not answer ok: {other:?}"),
    }
}

async fn bench(dir: &Path, runs: usize, dur: Duration) -> Result<String> {
    let fx = Arc::new(Fixture::new(dir)?);
    let mut out = serde_json::Map::new();
    let spawner = Launcher::start_spawner()?;
    let reuse = cgroup::reuse_capacity().max(cgroup::REUSE_DEFAULT_CAPACITY);
    let before = cgroup::reuse_stats();
    let mut reused = cgroup::ReuseStats::default();
    for (key, prepare_only, launcher) in [
        ("creations", false, None),
        ("creations_spawner", false, Some(spawner.clone())),
        ("preparations", true, None),
        ("preparations_spawner", true, Some(spawner.clone())),
    ] {
        // Without reuse, then with it, back to back.
        for (suffix, capacity) in [("", 0), ("_reuse", reuse)] {
            cgroup::set_reuse_capacity(capacity);
            let start = cgroup::reuse_stats();
            let (n, rate) = creations(&fx, dur, prepare_only, launcher.clone()).await?;
            if capacity > 0 {
                reused = add(reused, diff(cgroup::reuse_stats(), start));
            }
            out.insert(
                format!("{key}{suffix}"),
                serde_json::json!({"count": n, "per_s": rate}),
            );
        }
    }
    let zygote = Launcher::start_python_zygote_default(&fx.runtime)?;
    let series = [
        ("python_fresh", Runtime::Python311, false, None),
        ("python_prepared", Runtime::Python311, true, None),
        (
            "python_zygote_fresh",
            Runtime::Python311,
            false,
            Some(zygote.clone()),
        ),
        (
            "python_zygote_prepared",
            Runtime::Python311,
            true,
            Some(zygote.clone()),
        ),
        ("node_fresh", Runtime::Nodejs20, false, None),
        ("node_prepared", Runtime::Nodejs20, true, None),
    ];
    for (name, runtime, pooled, zygote) in series {
        // A prepared sandbox's cgroup is made before the clock starts: only fresh ones differ.
        let modes: &[(&str, usize)] = if pooled {
            &[("", 0)]
        } else {
            &[("", 0), ("_reuse", reuse)]
        };
        for &(suffix, capacity) in modes {
            cgroup::set_reuse_capacity(capacity);
            let start = cgroup::reuse_stats();
            cold(&fx, runtime, pooled, zygote.clone()).await?; // warm the page cache
            let mut v = Vec::with_capacity(runs);
            for _ in 0..runs {
                v.push(cold(&fx, runtime, pooled, zygote.clone()).await?);
            }
            if capacity > 0 {
                reused = add(reused, diff(cgroup::reuse_stats(), start));
            }
            out.insert(format!("cold_{name}{suffix}"), serde_json::json!(v));
        }
    }
    let cycles = 200;
    let mut cycle_us = serde_json::Map::new();
    for (key, capacity) in [("fresh", 0), ("reuse", reuse)] {
        cgroup::set_reuse_capacity(capacity);
        let v = tokio::task::spawn_blocking(move || cgroup_cycles(cycles)).await??;
        cycle_us.insert(key.into(), serde_json::json!(v));
    }
    out.insert("cgroup_cycle_us".into(), cycle_us.into());
    cgroup::set_reuse_capacity(reuse);
    let total = diff(cgroup::reuse_stats(), before);
    out.insert(
        "cgroup_reuse".into(),
        serde_json::json!({"capacity": reuse, "reuse_phases": reused, "all_phases": total}),
    );
    Ok(serde_json::Value::Object(out).to_string())
}

/// The cgroup's share of a sandbox's life, alone: get one (created, or taken from the free list)
/// with a prepared sandbox's limits, kill its (no) processes, retire it (removed, or kept); in
/// microseconds per cycle.
fn cgroup_cycles(n: usize) -> Result<Vec<f64>> {
    let limits = cgroup::Limits::for_function(128, 256);
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let cg = cgroup::take_or_create(CGROUP_PARENT, &format!("cycle-{i}"), &limits)?;
        cg.kill_all()?;
        cgroup::retire(Arc::from(cg))?;
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(v)
}

fn diff(a: cgroup::ReuseStats, b: cgroup::ReuseStats) -> cgroup::ReuseStats {
    cgroup::ReuseStats {
        taken: a.taken - b.taken,
        created: a.created - b.created,
        kept: a.kept - b.kept,
        removed: a.removed - b.removed,
    }
}

fn add(a: cgroup::ReuseStats, b: cgroup::ReuseStats) -> cgroup::ReuseStats {
    cgroup::ReuseStats {
        taken: a.taken + b.taken,
        created: a.created + b.created,
        kept: a.kept + b.kept,
        removed: a.removed + b.removed,
    }
}
