//! Cold starts from the fast path: a pool of prepared sandboxes (cgroup, namespaces, root,
//! Runtime API socket ready), and the Python zygote forking into prepared sandboxes.
use anyhow::Result;
use lamina_e2e::*;

use super::api::{call, cold_series, create, idle_python_memory, mb_row};
use super::report::{pct, Report};

/// Pool size of these clusters (worker env `LAMINA_PREWARM_SANDBOXES`).
pub const PREWARM: usize = 4;

/// A Python function (1769 MB), warmed once, then `cold_n` cold starts: the row and its p50.
async fn python_cold_row(
    c: &Client,
    rep: &mut Report,
    what: &str,
    cold_n: usize,
    bw_p50: f64,
) -> Result<f64> {
    let py = unique("bench-py");
    create(c, &py, "python3.11", 1769).await?;
    call(c, &py, "{}").await?;
    let cold = cold_series(c, &py, cold_n).await?;
    let (p50, _) = rep.latency(
        what,
        &cold,
        format!("{:.2}x bwrap", pct(&cold, 0.5) / bw_p50),
    );
    Ok(p50)
}

/// Python and Node cold starts end to end with a pool of prepared sandboxes: the Python p50.
pub fn prepared(
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
    cold_n: usize,
    bw_p50: f64,
) -> Result<f64> {
    std::env::set_var("LAMINA_PREWARM_SANDBOXES", PREWARM.to_string());
    let cluster = Cluster::start_with(1, &["--memory-mb", "32768"])?;
    let mut e2e_py_pool = f64::NAN;
    rt.block_on(async {
        let c = cluster.client().await?;
        e2e_py_pool = python_cold_row(
            &c,
            rep,
            &format!("python cold start end to end, pool of {PREWARM} prepared"),
            cold_n,
            bw_p50,
        )
        .await?;
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

    Ok(e2e_py_pool)
}

/// Python cold starts from the zygote with a pool, and the idle memory of zygote-forked sandboxes:
/// (cold start p50, idle private memory p50 in MB).
pub fn zygote(
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
    cold_n: usize,
    bw_p50: f64,
) -> Result<(f64, f64)> {
    std::env::set_var("LAMINA_PREWARM_SANDBOXES", PREWARM.to_string());
    std::env::set_var("LAMINA_PYTHON_ZYGOTE", "1");
    let cluster = Cluster::start_with(1, &["--memory-mb", "32768"])?;
    let mut e2e_py_zygote = f64::NAN;
    let mut zygote_mem = f64::NAN;
    rt.block_on(async {
        let c = cluster.client().await?;
        e2e_py_zygote = python_cold_row(
            &c,
            rep,
            &format!("python cold start end to end, zygote + pool of {PREWARM}"),
            cold_n,
            bw_p50,
        )
        .await?;
        let (priv_mb, kern_mb) = idle_python_memory(&c, &cluster.worker_ids[0]).await?;
        zygote_mem = pct(&priv_mb, 0.5);
        mb_row(
            rep,
            "idle warm zygote-forked python sandbox: private memory",
            &priv_mb,
            "shared with the zygote: not counted",
        );
        mb_row(
            rep,
            "idle warm zygote-forked python sandbox: kernel memory",
            &kern_mb,
            "",
        );
        Ok::<_, anyhow::Error>(())
    })?;
    drop(cluster);
    std::env::remove_var("LAMINA_PYTHON_ZYGOTE");
    Ok((e2e_py_zygote, zygote_mem))
}
