//! `lamina-bench`: Lamina beside its peers, in one run, as root after `cargo build --workspace --bins --lib`:
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
//!   over the workers;
//! - the HTTP gateway (`bench/gateway.rs`): `wrk` against a warm no-op function's URL, beside a bare
//!   HTTP server answering the same bytes and direct Invokes at the same concurrency;
//! - policy evaluation (`bench/iam.rs`): `iam::authorize` per request with 1, 10 and 100 statements;
//! - TLS (`bench/tls.rs`): a new connection's handshake beside a bare TCP connect, and warm
//!   invocations over TLS (client and worker hops) beside plaintext, in the same run.
//!
//! Quick mode takes about 1.5 minutes on 2 cores; `--full` runs 5x as many samples (bursts: 16 at
//! once, 10 rounds).
#[path = "bench/api.rs"]
mod api;
#[path = "bench/concurrency.rs"]
mod concurrency;
#[path = "bench/gateway.rs"]
mod gateway;
#[path = "bench/iam.rs"]
mod iam;
#[path = "bench/peers.rs"]
mod peers;
#[path = "bench/pools.rs"]
mod pools;
#[path = "bench/report.rs"]
mod report;
#[path = "bench/tls.rs"]
mod tls;
#[path = "bench/vpc.rs"]
mod vpc;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use api::ok;
use lamina_e2e::*;
use report::{ms, pct, Report};

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

/// One phase alone, for profiling and iterating (peers are not measured: ratios print as NaN;
/// `LAMINA_BENCH_TRACE=1` prints each cold start's REPORT line).
fn only_phase(
    phase: &str,
    rep: &mut Report,
    targets: &mut Vec<String>,
    full: bool,
    warm_n: usize,
    cold_n: usize,
    secs: f64,
) -> Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    match phase {
        "api" => {
            std::env::set_var("LAMINA_PREWARM_SANDBOXES", "0");
            let cluster = Cluster::start_with(1, &["--memory-mb", "32768"])?;
            let work = tempfile::Builder::new().prefix("lamina-bench-").tempdir()?;
            std::fs::write(work.path().join("app.py"), peers::HANDLER)?;
            let handler_call = ms(peers::handler_call(work.path())?);
            rt.block_on(api::run(
                &cluster,
                rep,
                targets,
                warm_n,
                cold_n,
                secs,
                handler_call,
                f64::NAN,
            ))?;
        }
        "zygote" => {
            pools::zygote(&rt, rep, cold_n, f64::NAN)?;
        }
        "vpc" => vpc::run(&rt, rep, targets, full)?,
        "gateway" => gateway::run(&rt, rep, targets, secs)?,
        "iam" => iam::run(rep, targets, full)?,
        "tls" => tls::run(&rt, rep, targets, full)?,
        other => bail!("--only takes api, zygote, vpc, gateway, iam or tls, not {other:?}"),
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let known = |a: &str| matches!(a, "--full" | "--out" | "--only");
    let mut rest = args.iter().skip(1);
    while let Some(a) = rest.next() {
        if a == "--out" || a == "--only" {
            rest.next();
        } else if !known(a) {
            eprintln!(
                "usage: lamina-bench [--full] [--out FILE | --only api|zygote|vpc|gateway|iam|tls]   (as root; writes docs/BENCHMARKS.md by default; --only prints one phase and writes nothing)"
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
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1));
    if let Some(phase) = only {
        only_phase(phase, &mut rep, &mut targets, full, warm_n, cold_n, secs)?;
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
    let per_s = rate("creations_spawner_reuse");
    for (key, what, note) in [
        (
            "creations_spawner_reuse",
            "sandbox creations/s, sustained, spawner + cgroup reuse",
            "start+exec /usr/bin/true+destroy, 4 at a time (worker defaults)",
        ),
        (
            "creations_spawner",
            "sandbox creations/s, sustained, spawner, fresh cgroups",
            "LAMINA_CGROUP_REUSE=0",
        ),
        (
            "creations",
            "sandbox creations/s, sustained, each init spawned + exec'd",
            "LAMINA_SPAWNER=0 LAMINA_CGROUP_REUSE=0",
        ),
        (
            "preparations_spawner_reuse",
            "sandbox preparations/s (pool refill), spawner + cgroup reuse",
            "cgroup+namespaces+root+socket, no code",
        ),
        (
            "preparations_spawner",
            "sandbox preparations/s (pool refill), spawner, fresh cgroups",
            "LAMINA_CGROUP_REUSE=0",
        ),
    ] {
        rep.add(
            what,
            sb[key]["count"].clone(),
            format!("{:.0}/s", rate(key)),
            "-".into(),
            note.into(),
        );
    }
    targets.push(format!(
        "sandbox creations >= 300/s: {per_s:.0}/s (spawner, cgroup reuse), {:.0}/s with fresh cgroups, {:.0}/s exec'ing each init — {}",
        rate("creations_spawner"),
        rate("creations"),
        if per_s >= 300.0 { "met" } else { "MISSED" }
    ));
    let cycle = |k: &str| samples(&sb["cgroup_cycle_us"][k]);
    let (fresh, reuse) = (cycle("fresh"), cycle("reuse"));
    rep.add(
        "sandbox cgroup: get + kill + retire, fresh vs reused",
        fresh.len() + reuse.len(),
        format!("{:.0} / {:.0} us", pct(&fresh, 0.5), pct(&reuse, 0.5)),
        format!("{:.0} / {:.0} us", pct(&fresh, 0.99), pct(&reuse, 0.99)),
        "mkdir+rmdir of 6 v1 hierarchies vs a free cgroup reset".into(),
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

    let settled = api::wait_quiet(Duration::from_secs(60));
    println!("(waited {settled:.1?} for the kernel to finish tearing down the sandbox layer's namespaces)");
    let rt = tokio::runtime::Runtime::new()?;
    // Cluster 1: no pool (every cold start builds its sandbox).
    std::env::set_var("LAMINA_PREWARM_SANDBOXES", "0");
    let cluster = Cluster::start_with(1, &["--memory-mb", "32768"])?;
    let handler_call = ms(peers::handler_call(&code)?);
    let mut e2e_py_fresh = f64::NAN;
    rt.block_on(async {
        e2e_py_fresh = api::run(
            &cluster,
            &mut rep,
            &mut targets,
            warm_n,
            cold_n,
            secs,
            handler_call,
            bw_p50,
        )
        .await?;
        // 100 concurrent cold starts; the same measurement over three workers in `concurrency`.
        concurrency::stampede(&cluster, &mut rep, "one worker").await?;
        Ok::<_, anyhow::Error>(())
    })?;
    drop(cluster);

    // Cluster 2: a pool of prepared sandboxes; cluster 3: the Python zygote with a pool.
    // Each cluster starts once the previous one's sandboxes are gone (see `wait_quiet`).
    api::wait_quiet(Duration::from_secs(30));
    let e2e_py_pool = pools::prepared(&rt, &mut rep, cold_n, bw_p50)?;
    api::wait_quiet(Duration::from_secs(30));
    let (e2e_py_zygote, zygote_mem) = pools::zygote(&rt, &mut rep, cold_n, bw_p50)?;

    // Cluster 4: three workers in network namespaces — cold vs provisioned vs warm bursts, and 100
    // concurrent cold starts spread over them (issue 4).
    api::wait_quiet(Duration::from_secs(30));
    concurrency::run(&rt, &mut rep, &mut targets, full)?;
    // Cluster 5: the cost of a VPC attachment on a cold start (issue 5).
    api::wait_quiet(Duration::from_secs(30));
    vpc::run(&rt, &mut rep, &mut targets, full)?;
    // Cluster 6: the HTTP gateway against a bare server and direct invokes (issue 16).
    api::wait_quiet(Duration::from_secs(30));
    gateway::run(&rt, &mut rep, &mut targets, secs)?;
    // In-process: the cost of policy evaluation per request (issue 17).
    iam::run(&mut rep, &mut targets, full)?;
    // Cluster 7 and 8: TLS beside plaintext (issue 17).
    api::wait_quiet(Duration::from_secs(30));
    tls::run(&rt, &mut rep, &mut targets, full)?;

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
