//! Provisioned concurrency end to end: real controller, workers and sandboxes. Sandboxes of a
//! version are initialised ahead of invocations, counted from the workers' heartbeats, used
//! without an init, released on delete, spread over workers and rebuilt when a worker is lost.
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use lamina_e2e::*;
use tonic::Code;

const PROVISIONED: &str = r#"
import os, time
INIT_AT = time.time()
INIT_TYPE = os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"init_at": INIT_AT, "init_type": INIT_TYPE, "version": context.function_version}
"#;

const WAIT: Duration = Duration::from_secs(90);

async fn create(c: &Client, name: &str) -> anyhow::Result<()> {
    let mut s = spec(name, "python3.11", "app.handler");
    s.memory_size_mb = 128;
    c.create_function(s, zip_of(&[("app.py", PROVISIONED, 0o644)]))
        .await?;
    Ok(())
}

/// Polls `GetProvisionedConcurrency` until `done` holds.
async fn wait_provisioned(
    c: &Client,
    name: &str,
    qualifier: &str,
    cluster: &Cluster,
    done: impl Fn(&v1::ProvisionedConcurrencyConfig, &[v1::WorkerInfo]) -> bool,
) -> anyhow::Result<v1::ProvisionedConcurrencyConfig> {
    let deadline = Instant::now() + WAIT;
    loop {
        let p = c.get_provisioned_concurrency(name, qualifier).await?;
        let workers = c.list_workers().await?;
        if done(&p, &workers) {
            return Ok(p);
        }
        ensure!(
            Instant::now() < deadline,
            "provisioned concurrency of {name}:{qualifier} did not get there within {WAIT:?}: \
             {p:?}\nworkers: {workers:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn fnctl(cluster: &Cluster, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(bin("fnctl"))
        .args(args)
        .envs(cluster.fnctl_env())
        .output()
        .context("run fnctl")?;
    ensure!(
        out.status.success(),
        "fnctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn provisioned_sandboxes_are_ready_ahead_and_invoked_without_init() {
    run(async {
        let cluster = Cluster::start_with(1, &["--keep-alive-s", "2"])?;
        let c = cluster.client().await?;
        let f = unique("prov");
        create(&c, &f).await?;
        let v = c.publish_version(&f, "").await?;
        assert_eq!(v.version, "1");

        // Refusals name the problem and change nothing.
        for (qualifier, count, code) in [
            ("$LATEST", 1, Code::InvalidArgument),
            ("", 1, Code::InvalidArgument),
            ("9", 1, Code::NotFound),
            ("nosuchalias", 1, Code::NotFound),
            ("1", 0, Code::InvalidArgument),
        ] {
            let err = c
                .put_provisioned_concurrency(&f, qualifier, count)
                .await
                .unwrap_err();
            let status = err.status().expect("an API error");
            assert_eq!(status.code(), code, "{qualifier:?} x{count}: {status:?}");
        }
        assert!(c.list_provisioned_concurrency(&f).await?.is_empty());

        // Provisioned concurrency runs inside a reservation: it must fit, both ways round.
        c.put_function_concurrency(&f, 2).await?;
        let err = c.put_provisioned_concurrency(&f, "1", 3).await.unwrap_err();
        let status = err.status().expect("an API error");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("reserved concurrency 2"),
            "{status:?}"
        );
        assert!(c.list_provisioned_concurrency(&f).await?.is_empty());
        c.delete_function_concurrency(&f).await?;

        let put = c.put_provisioned_concurrency(&f, "1", 3).await?;
        let err = c.put_function_concurrency(&f, 2).await.unwrap_err();
        let status = err.status().expect("an API error");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("provisioned concurrency (3"),
            "{status:?}"
        );
        assert_eq!(
            c.get_function_concurrency(&f)
                .await?
                .reserved_concurrent_executions,
            None
        );
        c.put_function_concurrency(&f, 3).await?;
        c.delete_function_concurrency(&f).await?;
        assert_eq!((put.requested, put.function_version.as_str()), (3, "1"));
        let ready = wait_provisioned(&c, &f, "1", &cluster, |p, _| {
            p.status == "READY" && p.allocated == 3
        })
        .await?;
        assert_eq!(ready.available, 3);
        // Past the keep-alive (2 s): still held.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let p = c.get_provisioned_concurrency(&f, "1").await?;
        assert_eq!((p.status.as_str(), p.allocated), ("READY", 3), "{p:?}");
        let described = c.get_function(&f).await?;
        assert_eq!(described.provisioned_concurrency.len(), 1);
        assert_eq!(described.provisioned_concurrency[0].allocated, 3);
        let shown: serde_json::Value =
            serde_json::from_str(&fnctl(&cluster, &["get", &f, "-o", "json"])?)?;
        let pc = &shown["ProvisionedConcurrency"][0];
        assert_eq!(pc["RequestedProvisionedConcurrentExecutions"], 3, "{shown}");
        assert_eq!(pc["AllocatedProvisionedConcurrentExecutions"], 3, "{shown}");
        assert_eq!(pc["Status"], "READY", "{shown}");
        let table = fnctl(&cluster, &["provisioned", "list", &f])?;
        assert!(table.contains("READY"), "{table}");

        // Three at once: each lands on a provisioned sandbox, initialised before it was sent.
        let sent = now_s();
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let (c, f) = (c.clone(), f.clone());
                tokio::spawn(async move {
                    c.invoke(v1::InvokeRequest {
                        function_name: f,
                        qualifier: "1".into(),
                        payload: br#"{"sleep": 1}"#.to_vec(),
                        log_type: v1::LogType::Tail as i32,
                        ..Default::default()
                    })
                    .await
                })
            })
            .collect();
        for call in calls {
            let r = call.await??;
            let v = json(&r);
            assert_eq!(r.executed_version, "1");
            assert_eq!(v["init_type"], "provisioned-concurrency", "{v}");
            assert!(
                v["init_at"].as_f64().unwrap() < sent,
                "init ran before the invocation: {v} (sent at {sent})"
            );
            let report = r
                .log_tail
                .lines()
                .find(|l| l.starts_with("REPORT"))
                .unwrap_or_else(|| panic!("no REPORT line in {:?}", r.log_tail));
            assert!(!report.contains("Init Duration"), "{report}");
        }

        // Deleted: the sandboxes become ordinary warm ones, reaped after the keep-alive.
        c.delete_provisioned_concurrency(&f, "1").await?;
        let err = c.get_provisioned_concurrency(&f, "1").await.unwrap_err();
        assert_eq!(err.status().unwrap().code(), Code::NotFound);
        let deadline = Instant::now() + WAIT;
        loop {
            let workers = c.list_workers().await?;
            if workers[0].sandboxes == 0 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the released sandboxes were never reaped: {workers:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    });
}

#[test]
fn provisioned_sandboxes_spread_over_workers_and_come_back_after_a_worker_loss() {
    run(async {
        let mut cluster = Cluster::start(2)?;
        let c = cluster.client().await?;
        let f = unique("prov-spread");
        create(&c, &f).await?;
        c.publish_version(&f, "").await?;
        c.create_alias(&f, "live", "1", Default::default(), "")
            .await?;
        c.put_provisioned_concurrency(&f, "live", 4).await?;
        let ids = cluster.worker_ids.clone();
        wait_provisioned(&c, &f, "live", &cluster, |p, workers| {
            p.status == "READY" && p.allocated == 4 && workers.iter().all(|w| w.sandboxes == 2)
        })
        .await?;

        cluster.kill_worker(0);
        let p = wait_provisioned(&c, &f, "live", &cluster, |p, workers| {
            let state = |id: &str| workers.iter().find(|w| w.worker_id == id).cloned();
            let (lost, left) = (state(&ids[0]), state(&ids[1]));
            p.status == "READY"
                && p.allocated == 4
                && lost.is_some_and(|w| w.state == "Down")
                && left.is_some_and(|w| w.state == "Up" && w.sandboxes == 4)
        })
        .await?;
        assert_eq!(p.function_version, "1");
        // Invocations through the alias use them.
        let r = c
            .invoke(v1::InvokeRequest {
                function_name: f.clone(),
                qualifier: "live".into(),
                log_type: v1::LogType::Tail as i32,
                ..Default::default()
            })
            .await?;
        assert_eq!(r.worker_id, ids[1]);
        assert_eq!(json(&r)["init_type"], "provisioned-concurrency");
        assert!(!r.log_tail.contains("Init Duration"), "{}", r.log_tail);
        Ok(())
    });
}
