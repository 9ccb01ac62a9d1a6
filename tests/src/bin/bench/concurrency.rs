//! Issue 4's phase, on three workers each in its own network namespace (separate hosts reached over
//! veth, `Cluster::start_netns`), worker defaults otherwise (no pool of prepared sandboxes, no
//! zygote), `--keep-alive-s 1` so that every round starts with no sandbox at all:
//!
//! - **Bursts of B concurrent invocations** (B = 8 quick, 16 full) of a Python function's versions,
//!   the handler sleeping 200 ms so the burst really overlaps (latency reported minus the sleep).
//!   Each round publishes two fresh versions: one gets B provisioned sandboxes (put, polled until
//!   `READY` with B available), the other none. Then, in this order: the *provisioned* burst (first
//!   use of the B provisioned sandboxes), the *warm* burst (the same burst again right after, the
//!   sandboxes idle warm) and the *cold* burst (the version without sandboxes). The provisioned
//!   configuration is deleted and the round ends once every worker reports no sandbox left.
//!   Every invocation asks for its log tail: an `Init Duration` in its `REPORT` line means it
//!   started a sandbox (counted per series), and the handler answers the sandbox's
//!   `AWS_LAMBDA_INITIALIZATION_TYPE` (a provisioned invocation on anything else is a violation).
//! - **100 concurrent cold starts** over the three workers (and, called from the first cluster, on
//!   one): p50, p99, failures, wall time, how many were cold (each holds its sandbox 10 s, so none
//!   should reuse one) and how they spread over the workers (`InvokeResponse.worker_id`).
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lamina_e2e::*;

use super::report::{ms, pct, Report};

/// Sleeps `event["sleep"]` seconds and answers how its sandbox was initialised.
const HANDLER: &str = r#"import os, time
INIT_TYPE = os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE", "")

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"init_type": INIT_TYPE}
"#;
/// The handler's sleep in the bursts, subtracted from every latency.
const BURST_SLEEP_MS: f64 = 200.0;
/// The handler's sleep in the 100 concurrent cold starts: longer than starting all of them takes.
const STAMPEDE_SLEEP_MS: f64 = 10_000.0;
const STAMPEDE: usize = 100;
const WORKERS: usize = 3;
/// One full vCPU (1769 MB buys one), as the other Python cold-start rows.
const BURST_MEMORY_MB: u32 = 1769;
/// Bound of every wait on the cluster (provisioned READY, sandboxes reaped).
const WAIT: Duration = Duration::from_secs(120);
const PROVISIONED_INIT: &str = "provisioned-concurrency";

/// One invocation of a burst, measured.
struct Sample {
    /// End to end, minus the handler's sleep.
    latency_ms: f64,
    /// `Init Duration` in its `REPORT` line: it started the sandbox it ran in.
    init: bool,
    /// The sandbox's `AWS_LAMBDA_INITIALIZATION_TYPE`.
    init_type: String,
    worker_id: String,
}

/// `n` invocations of `name:qualifier` sent at once, each with its log tail.
async fn burst(
    c: &Client,
    name: &str,
    qualifier: &str,
    n: usize,
    sleep_ms: f64,
) -> Vec<Result<Sample>> {
    let payload = format!("{{\"sleep\": {}}}", sleep_ms / 1000.0).into_bytes();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (c, name, qualifier, payload) = (
                c.clone(),
                name.to_string(),
                qualifier.to_string(),
                payload.clone(),
            );
            tokio::spawn(async move {
                let t = Instant::now();
                let r = c
                    .invoke(v1::InvokeRequest {
                        function_name: name,
                        qualifier,
                        payload,
                        log_type: v1::LogType::Tail as i32,
                        ..Default::default()
                    })
                    .await;
                let latency_ms = ms(t.elapsed()) - sleep_ms;
                let r = r.context("invocation")?;
                super::ok(&r, "burst invocation")?;
                let answer: serde_json::Value =
                    serde_json::from_slice(&r.payload).context("the handler's answer")?;
                let report = r
                    .log_tail
                    .lines()
                    .find(|l| l.starts_with("REPORT"))
                    .with_context(|| format!("no REPORT line in {:?}", r.log_tail))?;
                Ok(Sample {
                    latency_ms,
                    init: report.contains("Init Duration"),
                    init_type: answer["init_type"].as_str().unwrap_or_default().to_string(),
                    worker_id: r.worker_id,
                })
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(
            t.await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("task: {e}"))),
        );
    }
    out
}

/// A burst in which every invocation must succeed.
async fn burst_ok(
    cluster: &Cluster,
    c: &Client,
    name: &str,
    qualifier: &str,
    n: usize,
) -> Result<Vec<Sample>> {
    burst(c, name, qualifier, n, BURST_SLEEP_MS)
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()
        .with_context(|| {
            format!(
                "a burst on {name}:{qualifier} failed; logs:\n{}",
                cluster.logs()
            )
        })
}

/// Changes `$LATEST` (so that the publish makes a new version, with a new revision and hence no
/// sandbox) and publishes it; returns the version number.
async fn fresh_version(c: &Client, name: &str, tag: &str) -> Result<String> {
    c.update_function_configuration(v1::UpdateFunctionConfigurationRequest {
        function_name: name.to_string(),
        replace_environment: true,
        environment: [("ROUND".to_string(), tag.to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    })
    .await?;
    Ok(c.publish_version(name, tag).await?.version)
}

/// Polls until `name:version` is `READY` with `count` sandboxes allocated and available.
async fn wait_ready(c: &Client, name: &str, version: &str, count: u32) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let p = c.get_provisioned_concurrency(name, version).await?;
        if p.status == "READY" && p.allocated == count && p.available == count {
            return Ok(());
        }
        ensure!(
            p.status != "FAILED" && Instant::now() < deadline,
            "provisioned concurrency of {name}:{version} not READY with {count} available within {WAIT:?}: {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until no worker reports a sandbox (the keep-alive of 1 s reaps the idle ones).
async fn wait_no_sandboxes(c: &Client) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let workers = c.list_workers().await?;
        if workers.iter().all(|w| w.sandboxes == 0) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "sandboxes still there after {WAIT:?}: {workers:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn latencies(samples: &[Sample]) -> Vec<f64> {
    samples.iter().map(|s| s.latency_ms).collect()
}

fn with_init(samples: &[Sample]) -> usize {
    samples.iter().filter(|s| s.init).count()
}

/// Per worker in cluster order, `w1 N` (N invocations answered there).
fn spread(cluster: &Cluster, workers: &[&str]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for w in workers {
        *counts.entry(w).or_default() += 1;
    }
    cluster
        .worker_ids
        .iter()
        .enumerate()
        .map(|(i, id)| format!("w{} {}", i + 1, counts.get(id.as_str()).unwrap_or(&0)))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The cold / provisioned / warm bursts; rows and the no-init target go to `rep` and `targets`.
async fn bursts(
    cluster: &Cluster,
    rep: &mut Report,
    targets: &mut Vec<String>,
    b: usize,
    rounds: usize,
) -> Result<()> {
    let c = cluster.client().await?;
    let name = unique("bench-pc");
    let mut s = spec(&name, "python3.11", "app.handler");
    s.memory_size_mb = BURST_MEMORY_MB;
    c.create_function(s, zip_of(&[("app.py", HANDLER, 0o644)]))
        .await?;
    // Unmeasured: every worker fetches the code and gives the function its uid once.
    burst_ok(cluster, &c, &name, "", b).await?;
    wait_no_sandboxes(&c).await?;

    let (mut cold, mut prov, mut warm) = (Vec::new(), Vec::new(), Vec::new());
    let mut ready_ms = Vec::new();
    for round in 0..rounds {
        let provisioned = fresh_version(&c, &name, &format!("{round}-provisioned")).await?;
        let on_demand = fresh_version(&c, &name, &format!("{round}-cold")).await?;
        let t = Instant::now();
        c.put_provisioned_concurrency(&name, &provisioned, b as u32)
            .await?;
        wait_ready(&c, &name, &provisioned, b as u32)
            .await
            .with_context(|| format!("logs:\n{}", cluster.logs()))?;
        ready_ms.push(ms(t.elapsed()));
        prov.extend(burst_ok(cluster, &c, &name, &provisioned, b).await?);
        warm.extend(burst_ok(cluster, &c, &name, &provisioned, b).await?);
        cold.extend(burst_ok(cluster, &c, &name, &on_demand, b).await?);
        c.delete_provisioned_concurrency(&name, &provisioned)
            .await?;
        wait_no_sandboxes(&c).await?;
    }

    let n = cold.len();
    let (cold_p50, cold_p99) = rep.latency(
        &format!("burst of {b}, cold: fresh version, no sandbox (- 0.2 s sleep)"),
        &latencies(&cold),
        format!(
            "{rounds} rounds, {WORKERS} netns workers; {}/{n} started a sandbox",
            with_init(&cold)
        ),
    );
    let wrong_sandbox = prov
        .iter()
        .filter(|s| s.init_type != PROVISIONED_INIT)
        .count();
    let prov_init = with_init(&prov);
    let prov_p50 = pct(&latencies(&prov), 0.5);
    rep.latency(
        &format!("burst of {b}, provisioned: {b} READY, first use (- 0.2 s)"),
        &latencies(&prov),
        format!(
            "{:.2}x cold p50, {:.2}x cold p99; {prov_init}/{n} with Init Duration, {wrong_sandbox}/{n} not on a provisioned sandbox",
            prov_p50 / cold_p50,
            pct(&latencies(&prov), 0.99) / cold_p99
        ),
    );
    let warm_p50 = pct(&latencies(&warm), 0.5);
    rep.latency(
        &format!("burst of {b}, warm: the same burst again right after (- 0.2 s)"),
        &latencies(&warm),
        format!(
            "{:.2}x cold p50, {:.2}x provisioned p50; {}/{n} started a sandbox",
            warm_p50 / cold_p50,
            warm_p50 / prov_p50,
            with_init(&warm)
        ),
    );
    let spread_prov = spread(
        cluster,
        &prov
            .iter()
            .map(|s| s.worker_id.as_str())
            .collect::<Vec<_>>(),
    );
    rep.latency(
        &format!("provisioned concurrency {b}: put -> READY, all available"),
        &ready_ms,
        format!("{b} inits over {WORKERS} workers ({spread_prov} provisioned invocations)"),
    );
    let violations = prov
        .iter()
        .filter(|s| s.init || s.init_type != PROVISIONED_INIT)
        .count();
    targets.push(format!(
        "provisioned invocations run with no init (issue 4): {}/{n} without Init Duration on a provisioned sandbox, {violations} violations — {}",
        n - violations,
        if violations == 0 { "met" } else { "MISSED" }
    ));
    Ok(())
}

/// 100 concurrent cold starts of a fresh function over the cluster's workers (`label` names them
/// in the row). Each holds its sandbox for `STAMPEDE_SLEEP_MS`, longer than placing and starting
/// all of them takes, so none can reuse a sandbox another one freed: the row counts the cold ones.
pub async fn stampede(cluster: &Cluster, rep: &mut Report, label: &str) -> Result<()> {
    let c = cluster.client().await?;
    let name = unique("bench-burst");
    let mut s = spec(&name, "python3.11", "app.handler");
    s.memory_size_mb = 128;
    s.timeout_seconds = 60;
    c.create_function(s, zip_of(&[("app.py", HANDLER, 0o644)]))
        .await?;
    let start = Instant::now();
    let res = burst(&c, &name, "", STAMPEDE, STAMPEDE_SLEEP_MS).await;
    let wall = ms(start.elapsed()) - STAMPEDE_SLEEP_MS;
    let done: Vec<&Sample> = res.iter().filter_map(|r| r.as_ref().ok()).collect();
    let failures = STAMPEDE - done.len();
    if let Some(Err(e)) = res.iter().find(|r| r.is_err()) {
        eprintln!("100 concurrent cold starts, {label}: first failure: {e:#}");
    }
    let lat: Vec<f64> = done.iter().map(|s| s.latency_ms).collect();
    let cold = done.iter().filter(|s| s.init).count();
    let workers: Vec<&str> = done.iter().map(|s| s.worker_id.as_str()).collect();
    let per_worker = if cluster.worker_ids.len() > 1 {
        format!("; per worker: {}", spread(cluster, &workers))
    } else {
        String::new()
    };
    rep.latency(
        &format!(
            "100 concurrent cold starts, {label} (- {} s sleep)",
            STAMPEDE_SLEEP_MS / 1000.0
        ),
        &lat,
        format!("{failures} failures, {cold} cold, {wall:.0} ms wall minus the sleep{per_worker}"),
    );
    Ok(())
}

/// The phase: its own cluster of three workers in network namespaces, dropped at the end.
pub fn run(
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
    targets: &mut Vec<String>,
    full: bool,
) -> Result<()> {
    let (b, rounds) = if full { (16, 10) } else { (8, 5) };
    // Worker defaults: every cold start builds its sandbox.
    std::env::set_var("LAMINA_PREWARM_SANDBOXES", "0");
    std::env::remove_var("LAMINA_PYTHON_ZYGOTE");
    let cluster = Cluster::start_netns(
        WORKERS,
        &[],
        &["--memory-mb", "32768", "--keep-alive-s", "1"],
    )?;
    if cluster.worker_ids.len() != WORKERS {
        bail!("expected {WORKERS} workers, got {:?}", cluster.worker_ids);
    }
    rt.block_on(async {
        bursts(&cluster, rep, targets, b, rounds).await?;
        stampede(&cluster, rep, "3 netns workers").await
    })
}
