//! Reserved concurrency and the cluster-wide limit, end to end: real controller, worker and
//! sandboxes. Sync invocations over a limit fail at once with RESOURCE_EXHAUSTED and Lambda's
//! reason; async ones wait in the queue and are delivered later.
use std::time::{Duration, Instant};

use lamina_e2e::*;
use tonic::Code;

const SLEEPY: &str = r#"
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"slept": event.get("sleep", 0)}
"#;

fn fnctl(cluster: &Cluster, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(bin("fnctl"))
        .args(args)
        .envs(cluster.fnctl_env())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "fnctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A 128 MB Python function from `SLEEPY`.
async fn create_sleepy(c: &Client, name: &str) -> anyhow::Result<()> {
    let mut s = spec(name, "python3.11", "app.handler");
    s.memory_size_mb = 128;
    c.create_function(s, zip_of(&[("app.py", SLEEPY, 0o644)]))
        .await?;
    Ok(())
}

/// Fires `n` concurrent synchronous invocations sleeping `sleep_s`; returns their results.
async fn burst(
    c: &Client,
    names: &[&str],
    sleep_s: u32,
) -> Vec<Result<v1::InvokeResponse, lamina_client::Error>> {
    let calls = names.iter().map(|name| {
        let c = c.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            c.invoke(v1::InvokeRequest {
                function_name: name,
                payload: format!(r#"{{"sleep": {sleep_s}}}"#).into_bytes(),
                ..Default::default()
            })
            .await
        })
    });
    let mut out = Vec::new();
    for h in futures_join(calls.collect()).await {
        out.push(h.expect("invocation task"));
    }
    out
}

async fn futures_join<T>(
    handles: Vec<tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for h in handles {
        out.push(
            tokio::time::timeout(Duration::from_secs(120), h)
                .await
                .expect("an invocation hung"),
        );
    }
    out
}

/// (successes, throttles with `reason`); panics on any other outcome.
fn tally(
    results: &[Result<v1::InvokeResponse, lamina_client::Error>],
    reason: &str,
    logs: &dyn Fn() -> String,
) -> (usize, usize) {
    let (mut ok, mut throttled) = (0, 0);
    for r in results {
        match r {
            Ok(resp) => {
                assert_eq!(resp.function_error, "", "{resp:?}");
                ok += 1;
            }
            Err(e) => {
                let status = e
                    .status()
                    .unwrap_or_else(|| panic!("not an API error: {e}"));
                assert_eq!(
                    status.code(),
                    Code::ResourceExhausted,
                    "{status:?}\n{}",
                    logs()
                );
                assert!(
                    status.message().starts_with(&format!("{reason}: ")),
                    "the message starts with the reason {reason}: {}",
                    status.message()
                );
                assert_eq!(
                    status
                        .metadata()
                        .get("x-lamina-reason")
                        .map(|v| v.to_str().unwrap()),
                    Some(reason)
                );
                throttled += 1;
            }
        }
    }
    (ok, throttled)
}

#[test]
fn reserved_concurrency_throttles_what_is_over_it() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let f = unique("reserved");
        create_sleepy(&c, &f).await?;
        let r = c.put_function_concurrency(&f, 2).await?;
        assert_eq!(r.reserved_concurrent_executions, Some(2));
        assert_eq!(
            c.get_function_concurrency(&f)
                .await?
                .reserved_concurrent_executions,
            Some(2)
        );
        assert_eq!(
            c.get_function(&f).await?.reserved_concurrent_executions,
            Some(2)
        );
        let account = c.get_account_settings().await?;
        assert_eq!(
            (
                account.concurrent_executions,
                account.unreserved_concurrent_executions
            ),
            (1000, 998)
        );

        // Five at once, 3 s each: two run, three are throttled at once.
        let started = Instant::now();
        let results = burst(&c, &[f.as_str(); 5], 3).await;
        let (ok, throttled) = tally(
            &results,
            "ReservedFunctionConcurrentInvocationLimitExceeded",
            &|| cluster.logs(),
        );
        assert_eq!((ok, throttled), (2, 3), "{results:?}");
        assert!(started.elapsed() >= Duration::from_secs(3));

        // The slots are back.
        let r = invoke(&c, &f, r#"{"sleep": 0}"#).await?;
        assert_eq!(r.function_error, "");
        assert_eq!(c.get_account_settings().await?.in_flight, 0);

        // Reserved 0: every invocation is throttled; removing the reservation enables it again.
        c.put_function_concurrency(&f, 0).await?;
        let results = burst(&c, &[f.as_str(); 3], 0).await;
        assert_eq!(
            tally(
                &results,
                "ReservedFunctionConcurrentInvocationLimitExceeded",
                &|| cluster.logs()
            ),
            (0, 3)
        );
        let r = c.delete_function_concurrency(&f).await?;
        assert_eq!(r.reserved_concurrent_executions, None);
        assert_eq!(
            c.get_function(&f).await?.reserved_concurrent_executions,
            None
        );
        assert_eq!(invoke(&c, &f, "{}").await?.function_error, "");
        Ok(())
    });
}

#[test]
fn an_async_invocation_at_the_limit_is_delivered_later() {
    run(async {
        let cluster = Cluster::start_full(1, ASYNC_FAST, &[])?;
        let c = cluster.client().await?;
        let f = unique("reserved-async");
        create_sleepy(&c, &f).await?;
        c.put_function_concurrency(&f, 1).await?;
        // One slow synchronous invocation holds the only slot ...
        let holder = {
            let (c, f) = (c.clone(), f.clone());
            tokio::spawn(async move { invoke(&c, &f, r#"{"sleep": 4}"#).await })
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.get_account_settings().await?.in_flight == 0 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the sync invocation never started"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // ... so the event is throttled, backs off, and is delivered once the slot is free.
        let id = invoke_async(&c, &f, r#"{"sleep": 0}"#, None).await?;
        let inv =
            wait_invocation(&c, &id, Duration::from_secs(120), |i| is_terminal(&i.state)).await?;
        assert_eq!(inv.state, "Succeeded", "{inv:?}\n{}", cluster.logs());
        assert!(inv.throttles >= 1, "the record shows the throttle: {inv:?}");
        assert!(
            inv.last_error
                .contains("ReservedFunctionConcurrentInvocationLimitExceeded"),
            "{inv:?}"
        );
        assert_eq!(inv.attempts, 1, "a throttle is not an attempt: {inv:?}");
        let held = holder.await??;
        assert_eq!(held.function_error, "");
        Ok(())
    });
}

#[test]
fn the_cluster_wide_limit_throttles_unreserved_functions() {
    run(async {
        let cluster = Cluster::start_full(
            1,
            &[
                "--concurrency-limit",
                "3",
                "--unreserved-concurrency-min",
                "1",
            ],
            &[],
        )?;
        let c = cluster.client().await?;
        let (f, g) = (unique("acct-f"), unique("acct-g"));
        create_sleepy(&c, &f).await?;
        create_sleepy(&c, &g).await?;
        let account = c.get_account_settings().await?;
        assert_eq!(
            (
                account.concurrent_executions,
                account.unreserved_concurrent_executions
            ),
            (3, 3)
        );
        let results = burst(&c, &[&f, &g, &f, &g], 3).await;
        assert_eq!(
            tally(&results, "ConcurrentInvocationLimitExceeded", &|| cluster
                .logs()),
            (3, 1),
            "{results:?}"
        );

        // A reservation of 2 leaves 1 unreserved: the minimum. Reserving 1 more is refused.
        c.put_function_concurrency(&f, 2).await?;
        let err = c.put_function_concurrency(&g, 1).await.unwrap_err();
        let status = err.status().expect("an API error");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("reserved concurrency 1")
                && status.message().contains("at least 1 must stay unreserved"),
            "{}",
            status.message()
        );
        assert_eq!(
            c.get_function_concurrency(&g)
                .await?
                .reserved_concurrent_executions,
            None
        );
        // f has its own two; g shares the one unreserved.
        let results = burst(&c, &[&f, &f, &g, &g], 3).await;
        let throttled: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| e.status().unwrap().message().to_string())
            .collect();
        assert_eq!(throttled.len(), 1, "{results:?}");
        assert!(
            throttled[0].starts_with("ConcurrentInvocationLimitExceeded: "),
            "{throttled:?}"
        );
        Ok(())
    });
}

#[test]
fn reservations_must_leave_the_unreserved_minimum() {
    run(async {
        let cluster = Cluster::start(0)?;
        let c = cluster.client().await?;
        let (f, g) = (unique("min-f"), unique("min-g"));
        create_sleepy(&c, &f).await?;
        create_sleepy(&c, &g).await?;
        let err = c.put_function_concurrency(&f, 901).await.unwrap_err();
        let status = err.status().expect("an API error");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().contains("reserved concurrency 901")
                && status.message().contains("limit 1000")
                && status.message().contains("at least 100")
                && status.message().contains("ask for at most 900"),
            "{}",
            status.message()
        );
        assert_eq!(
            c.get_function_concurrency(&f)
                .await?
                .reserved_concurrent_executions,
            None
        );
        // fnctl speaks the same API, with Lambda's names in JSON.
        let put: serde_json::Value = serde_json::from_str(&fnctl(
            &cluster,
            &["concurrency", "put", &f, "--reserved", "900", "-o", "json"],
        )?)?;
        assert_eq!(put["ReservedConcurrentExecutions"], 900, "{put}");
        let account: serde_json::Value =
            serde_json::from_str(&fnctl(&cluster, &["account", "-o", "json"])?)?;
        assert_eq!(
            account["AccountLimit"],
            serde_json::json!({"ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": 100})
        );
        let shown: serde_json::Value =
            serde_json::from_str(&fnctl(&cluster, &["get", &f, "-o", "json"])?)?;
        assert_eq!(shown["ReservedConcurrentExecutions"], 900, "{shown}");
        let err = c.put_function_concurrency(&g, 1).await.unwrap_err();
        assert_eq!(err.status().unwrap().code(), Code::InvalidArgument);
        // Lowering is always allowed; a function's deletion frees its reservation.
        c.put_function_concurrency(&f, 800).await?;
        c.put_function_concurrency(&g, 100).await?;
        c.delete_function(&f).await?;
        assert_eq!(
            c.get_account_settings()
                .await?
                .unreserved_concurrent_executions,
            900
        );
        let err = c.put_function_concurrency(&f, 1).await.unwrap_err();
        assert_eq!(err.status().unwrap().code(), Code::NotFound);

        // Reservations are stored: a restarted controller enforces them.
        let mut cluster = cluster;
        cluster.restart_controller(false, &[], 1)?;
        let c = cluster.client().await?;
        assert_eq!(
            c.get_account_settings()
                .await?
                .unreserved_concurrent_executions,
            900
        );
        let err = c
            .put_function_concurrency(&unique("min-h"), 1)
            .await
            .unwrap_err();
        assert_eq!(err.status().unwrap().code(), Code::NotFound);
        c.put_function_concurrency(&g, 0).await?;
        let results = burst(&c, &[&g], 0).await;
        assert!(results[0].is_err(), "g is disabled: {results:?}");
        Ok(())
    });
}

/// Sleeps 1 s at import: each cold start takes at least that long.
const SLOW_INIT: &str = r#"
import time
time.sleep(1)
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"ok": True}
"#;

async fn create_slow_init(c: &Client, name: &str) -> anyhow::Result<()> {
    let mut s = spec(name, "python3.11", "app.handler");
    s.memory_size_mb = 128;
    c.create_function(s, zip_of(&[("app.py", SLOW_INIT, 0o644)]))
        .await?;
    Ok(())
}

#[test]
fn cold_starts_are_bounded_per_worker_and_spread_over_workers() {
    run(async {
        let cluster = Cluster::start_full(2, &["--cold-starts-per-worker", "2"], &[])?;
        let c = cluster.client().await?;
        let f = unique("burst");
        create_slow_init(&c, &f).await?;
        // Eight at once, two cold starts per worker at a time: the rest wait for a slot (or a
        // warm sandbox) instead of piling up, and all succeed.
        let results = burst(&c, &[f.as_str(); 8], 0).await;
        let mut workers = std::collections::BTreeSet::new();
        for r in &results {
            let r = r
                .as_ref()
                .map_err(|e| anyhow::anyhow!("{e}\n{}", cluster.logs()))?;
            assert_eq!(r.function_error, "");
            workers.insert(r.worker_id.clone());
        }
        assert_eq!(
            workers.len(),
            2,
            "both workers start sandboxes: {results:?}"
        );
        let sandboxes: u32 = c.list_workers().await?.iter().map(|w| w.sandboxes).sum();
        assert!(sandboxes <= 8, "{sandboxes} sandboxes for 8 invocations");
        Ok(())
    });
}

#[test]
fn a_placement_that_waits_too_long_for_a_cold_start_slot_is_throttled() {
    run(async {
        let cluster = Cluster::start_full(
            1,
            &[
                "--cold-starts-per-worker",
                "1",
                "--placement-wait-ms",
                "100",
            ],
            &[],
        )?;
        let c = cluster.client().await?;
        let f = unique("rate");
        create_slow_init(&c, &f).await?;
        // The first cold start takes over a second: the other two find the only slot taken.
        let results = burst(&c, &[f.as_str(); 3], 0).await;
        assert_eq!(
            tally(&results, "FunctionInvocationRateLimitExceeded", &|| cluster
                .logs()),
            (1, 2),
            "{results:?}"
        );
        // Once warm, no cold start is needed.
        assert_eq!(invoke(&c, &f, "{}").await?.function_error, "");
        Ok(())
    });
}
