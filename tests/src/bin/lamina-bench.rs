//! `lamina-bench`: warm-invoke and cold-start latency through the real API path (fnctl's SDK ->
//! controller -> worker -> sandbox -> Runtime API and back), beside bare `python3.11` running the same
//! handler in the same run. Prints a table; run as root after `cargo build --workspace --bins`:
//!
//!     /var/tmp/lamina-target/debug/lamina-bench [--warm N] [--cold N]
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use lamina_e2e::*;

const HANDLER: &str = "def handler(event, context):\n    return {'ok': True}\n";

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx].as_secs_f64() * 1000.0
}

fn summary(label: &str, mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 0.50), percentile(&samples, 0.99));
    println!(
        "{label:<52} {:>6} {:>10.3} {:>10.3}",
        samples.len(),
        p50,
        p99
    );
    (p50, p99)
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else {
        "v1 (hybrid)"
    };
    format!("{cores} cores, kernel {}, cgroup {cgroup}", kernel.trim())
}

/// Bare python3.11 in a fresh process: start, import the handler, call it once (a cold start
/// without any platform), and the per-call time of the handler in a warm loop.
fn bare_python(dir: &std::path::Path, runs: usize) -> Result<(Vec<Duration>, Duration)> {
    std::fs::write(dir.join("app.py"), HANDLER)?;
    let mut cold = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let st = Command::new("/usr/bin/python3.11")
            .args(["-c", "import json, app; json.dumps(app.handler({}, None))"])
            .current_dir(dir)
            .status()?;
        if !st.success() {
            bail!("bare python3.11 failed: {st}");
        }
        cold.push(t.elapsed());
    }
    let out = Command::new("/usr/bin/python3.11")
        .args(["-c", "import json, time, app\nn=20000\nt=time.perf_counter()\nfor _ in range(n): json.dumps(app.handler(json.loads('{}'), None))\nprint((time.perf_counter()-t)/n)"])
        .current_dir(dir)
        .output()?;
    let per_call: f64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    Ok((cold, Duration::from_secs_f64(per_call)))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (warm_n, cold_n) = (arg("--warm", 500), arg("--cold", 30));
    let rt = tokio::runtime::Runtime::new()?;
    let cluster = Cluster::start(1)?;
    println!("machine: {}", machine());
    println!(
        "{:<52} {:>6} {:>10} {:>10}",
        "measurement", "runs", "p50 ms", "p99 ms"
    );
    let (bare_cold, bare_call) = bare_python(cluster.dir.path(), cold_n)?;
    let (bare_p50, _) = summary("bare python3.11: process + import + call (cold)", bare_cold);
    rt.block_on(async {
        let c = cluster.client().await?;
        let name = unique("bench");
        // 1769 MB = one full vCPU, so the CPU quota does not dominate the figures.
        let mut s = spec(&name, "python3.11", "app.handler");
        s.memory_size_mb = 1769;
        c.create_function(s, zip_of(&[("app.py", HANDLER, 0o644)]))
            .await?;
        invoke(&c, &name, "{}").await?;
        let mut warm = Vec::with_capacity(warm_n);
        for _ in 0..warm_n {
            let t = Instant::now();
            let r = c
                .invoke(v1::InvokeRequest {
                    function_name: name.clone(),
                    payload: b"{}".to_vec(),
                    ..Default::default()
                })
                .await?;
            warm.push(t.elapsed());
            if !r.function_error.is_empty() {
                bail!(
                    "warm invocation failed: {:?}",
                    String::from_utf8_lossy(&r.payload)
                );
            }
        }
        let (warm_p50, warm_p99) = summary("lamina warm invoke, end to end (gRPC, sync)", warm);
        let bare_ms = bare_call.as_secs_f64() * 1000.0;
        println!(
            "{:<52} {:>6} {:>10.3} {:>10}",
            "bare python3.11: handler call in a loop", 20000, bare_ms, "-"
        );
        println!(
            "{:<52} {:>6} {:>10.3} {:>10.3}",
            "=> platform overhead of a warm invoke",
            "",
            warm_p50 - bare_ms,
            warm_p99 - bare_ms
        );

        let mut cold = Vec::with_capacity(cold_n);
        for i in 0..cold_n {
            // A configuration change makes a new revision: the next invocation needs a new sandbox.
            c.update_function_configuration(v1::UpdateFunctionConfigurationRequest {
                function_name: name.clone(),
                replace_environment: true,
                environment: [("RUN".to_string(), i.to_string())].into_iter().collect(),
                ..Default::default()
            })
            .await?;
            let t = Instant::now();
            let r = invoke(&c, &name, "{}").await?;
            cold.push(t.elapsed());
            if !r.function_error.is_empty() {
                bail!(
                    "cold invocation failed: {:?}",
                    String::from_utf8_lossy(&r.payload)
                );
            }
        }
        let (cold_p50, _) = summary("lamina cold start (new sandbox + init + invoke)", cold);
        println!(
            "{:<52} {:>6} {:>10.2}x",
            "=> lamina cold p50 / bare python cold p50",
            "",
            cold_p50 / bare_p50
        );
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(())
}
