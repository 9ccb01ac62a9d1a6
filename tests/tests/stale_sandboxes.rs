//! Sandboxes of functions that were deleted or updated go at once (not after the 10 min
//! keep-alive), and the worker's disk caches stay within their budget while a function in use
//! keeps its code. Real controller, worker and sandboxes; the sandboxes are found on the host by
//! their `AWS_LAMBDA_FUNCTION_NAME` in `/proc/PID/environ`, their cgroups by `/proc/PID/cgroup`.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use lamina_e2e::*;
use sha2::{Digest, Sha256};

/// Bound of every wait below: far below the 600 s keep-alive the workers run with.
const BOUND: Duration = Duration::from_secs(20);

/// Answers which code and configuration ran; with `hold`, marks `/tmp/holding` while it sleeps.
const APP: &str = "import os, time\n\ndef handler(event, context):\n    if event.get('hold'):\n        open('/tmp/holding', 'w').close()\n        time.sleep(event['hold'])\n        os.remove('/tmp/holding')\n    return {'v': os.environ.get('V', 'code1')}\n";

/// Host pids of the processes of function `name`'s sandboxes, with their cgroup directories.
fn sandboxes_of(name: &str) -> Vec<(i32, Vec<PathBuf>)> {
    let needle = format!("AWS_LAMBDA_FUNCTION_NAME={name}");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            continue;
        }
        let cgroups = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        let dirs = cgroups
            .lines()
            .filter_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                let controller = controllers.split(',').next()?.trim_start_matches("name=");
                path.contains("/lamina/").then(|| {
                    Path::new("/sys/fs/cgroup")
                        .join(controller)
                        .join(path.trim_start_matches('/'))
                })
            })
            .collect();
        out.push((pid, dirs));
    }
    out
}

/// Waits until no process of `name`'s sandboxes is left and none of `cgroups` exists.
async fn gone(what: &str, name: &str, cgroups: &[PathBuf]) -> Result<()> {
    let start = Instant::now();
    loop {
        let left = sandboxes_of(name);
        let dirs: Vec<&PathBuf> = cgroups.iter().filter(|d| d.exists()).collect();
        if left.is_empty() && dirs.is_empty() {
            return Ok(());
        }
        if start.elapsed() > BOUND {
            bail!("{what}: still there after {BOUND:?}: processes {left:?}, cgroups {dirs:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sandboxes of `name` now (at least one), with every cgroup directory they are in.
fn live(name: &str) -> Result<(Vec<i32>, Vec<PathBuf>)> {
    let found = sandboxes_of(name);
    ensure!(!found.is_empty(), "no sandbox process of {name} found");
    let pids = found.iter().map(|(p, _)| *p).collect();
    let dirs: Vec<PathBuf> = found.into_iter().flat_map(|(_, d)| d).collect();
    ensure!(
        dirs.iter().all(|d| d.is_dir()),
        "cgroups of {name}: {dirs:?}"
    );
    Ok((pids, dirs))
}

fn ok(r: &v1::InvokeResponse) -> Result<serde_json::Value> {
    ensure!(
        r.function_error.is_empty(),
        "invocation failed: {}",
        String::from_utf8_lossy(&r.payload)
    );
    Ok(json(r))
}

/// A one-worker cluster with a function (`prefix-…`) created and invoked once: its name and the
/// cgroups of its sandbox. Emptied cgroups are removed, not kept for reuse, so that "gone" shows.
async fn one_sandbox(prefix: &str) -> Result<(Cluster, Client, String, Vec<PathBuf>)> {
    let cluster = Cluster::start_with(1, &["--cgroup-reuse", "0"])?;
    let c = cluster.client().await?;
    let name = unique(prefix);
    create_python(&c, &name, APP).await?;
    ok(&invoke(&c, &name, "{}").await?)?;
    let (_, cgroups) = live(&name)?;
    ensure!(!cgroups.is_empty(), "the sandbox's cgroups were not found");
    Ok((cluster, c, name, cgroups))
}

#[test]
fn deleting_a_function_destroys_its_sandboxes_at_once() {
    require_root();
    run(async {
        let (_cluster, c, name, cgroups) = one_sandbox("del").await?;
        c.delete_function(&name).await?;
        gone("the deleted function's sandbox", &name, &cgroups).await?;
        Ok(())
    });
}

#[test]
fn updating_code_or_configuration_destroys_the_old_revisions_sandboxes() {
    require_root();
    run(async {
        let (_cluster, c, name, cgroups) = one_sandbox("upd").await?;

        // New code: the idle sandbox of the old revision goes; the next invocation runs the new code.
        let code2 = APP.replace("'code1'", "'code2'");
        c.update_function_code(&name, zip_of(&[("app.py", &code2, 0o644)]))
            .await?;
        gone("the old code's sandbox", &name, &cgroups).await?;
        ensure!(ok(&invoke(&c, &name, "{}").await?)?["v"] == "code2");
        let (_, cgroups) = live(&name)?;

        // New configuration while an invocation runs in the (only) sandbox: the invocation
        // finishes on its revision, then the sandbox goes.
        let (busy_pids, _) = live(&name)?;
        let busy = {
            let (c, name) = (c.clone(), name.clone());
            tokio::spawn(async move { invoke(&c, &name, r#"{"hold": 3}"#).await })
        };
        let start = Instant::now();
        while !busy_pids
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}/root/tmp/holding")).exists())
        {
            ensure!(start.elapsed() < BOUND, "the held invocation did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c.update_function_configuration(v1::UpdateFunctionConfigurationRequest {
            function_name: name.clone(),
            environment: [("V".to_string(), "config2".to_string())].into(),
            ..Default::default()
        })
        .await?;
        let r = busy.await??;
        ensure!(
            ok(&r)?["v"] == "code2",
            "the busy invocation finishes on its revision"
        );
        gone("the old configuration's sandbox", &name, &cgroups).await?;
        let v = ok(&invoke(&c, &name, "{}").await?)?;
        ensure!(v["v"] == "config2", "{v}");
        let (now, _) = live(&name)?;
        ensure!(
            now.iter().all(|p| !busy_pids.contains(p)),
            "a new sandbox serves the new configuration"
        );
        Ok(())
    });
}

/// 1 MiB of text that differs per `seed` (so each function has its own code digest).
fn big_app(seed: &str) -> Vec<u8> {
    let mut filler = String::with_capacity(1 << 20);
    let mut h = Sha256::digest(seed.as_bytes());
    while filler.len() < 1 << 20 {
        filler.push_str(&hex::encode(h));
        h = Sha256::digest(h);
    }
    zip_of(&[("app.py", APP, 0o644), ("filler.txt", &filler, 0o644)])
}

/// Waits until the cache directory `dir` is gone.
async fn evicted(dir: &Path, what: &str) -> Result<()> {
    let start = Instant::now();
    while dir.exists() {
        ensure!(start.elapsed() < BOUND, "{what} was not evicted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[test]
fn code_cache_evicts_least_recently_used_unused_code_within_its_budget() {
    require_root();
    run(async {
        // Packages of a little over 1 MiB unzipped: three fit in 4 MiB, the fourth evicts.
        let cluster = Cluster::start_with(1, &["--cache-budget-mb", "4"])?;
        let c = cluster.client().await?;
        let code_root = cluster.dir.path().join(&cluster.worker_ids[0]).join("code");
        let cached = |zip: &[u8]| code_root.join(hex::encode(Sha256::digest(zip)));
        // Small sandboxes: none is evicted for memory (that would release keep's code).
        let spec_of = |n: &str| v1::FunctionSpec {
            memory_size_mb: 128,
            ..spec(n, "python3.11", "app.handler")
        };

        // `keep` stays in use: its warm sandbox holds its code.
        let keep_zip = big_app("keep");
        c.create_function(spec_of("keep"), keep_zip.clone()).await?;
        ok(&invoke(&c, "keep", "{}").await?)?;
        // Two more, used then deleted (their sandboxes go, their code stays cached while it fits).
        let (b, cz) = (big_app("b"), big_app("c"));
        for (n, zip) in [("b", &b), ("c", &cz)] {
            c.create_function(spec_of(n), zip.clone()).await?;
            ok(&invoke(&c, n, "{}").await?)?;
            c.delete_function(n).await?;
        }
        ensure!(cached(&keep_zip).is_dir() && cached(&cz).is_dir());
        // A fourth package: over the budget, the least recently used unused code (b's) goes.
        let d = big_app("d");
        c.create_function(spec_of("d"), d.clone()).await?;
        ok(&invoke(&c, "d", "{}").await?)?;
        evicted(&cached(&b), "b's code").await?;
        ensure!(
            cached(&cz).is_dir(),
            "c's code was used more recently than b's: kept"
        );
        ensure!(cached(&d).is_dir(), "d's code is in use");
        ensure!(
            cached(&keep_zip).is_dir(),
            "keep's code is in use by its sandbox"
        );
        // One more: c's code goes now; keep's stays and keep still invokes from it.
        c.delete_function("d").await?;
        let e = big_app("e");
        c.create_function(spec_of("e"), e.clone()).await?;
        ok(&invoke(&c, "e", "{}").await?)?;
        evicted(&cached(&cz), "c's code").await?;
        ensure!(
            cached(&keep_zip).is_dir(),
            "keep's code is in use by its sandbox"
        );
        ensure!(
            cached(&d).is_dir(),
            "d's code was used more recently than c's: kept"
        );
        ok(&invoke(&c, "keep", "{}").await?)?;
        let leftovers: Vec<_> = std::fs::read_dir(&code_root)?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            .map(|e| e.file_name())
            .collect();
        ensure!(leftovers.is_empty(), "{leftovers:?}");
        Ok(())
    });
}
