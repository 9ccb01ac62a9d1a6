//! A cluster of three workers, each in its own network namespace acting as a separate host reached
//! over veth (`Cluster::start_netns`, the topology of `deploy/cluster.sh`): work spreads over them,
//! and losing one mid-load — SIGKILLed, or cut off the network without a TCP reset — fails only the
//! invocations it was running, fast, with UNAVAILABLE naming it, while new work goes elsewhere; and
//! provisioned sandboxes lost with a worker are rebuilt on the others.
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use lamina_client::{Code, Error};
use lamina_e2e::*;

/// Sleeps `event["sleep"]` seconds, then answers "ok".
const SLEEPER: &str = "import time\n\ndef handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return 'ok'\n";
/// The function timeout of the loss tests: far above every bound the tests wait.
const FUNCTION_TIMEOUT_S: u32 = 60;
/// How long an invocation in flight on a lost worker may take to fail (the function timeout is 60 s).
const FAIL_FAST_BOUND: Duration = Duration::from_secs(20);
/// How long the slow invocations run: long enough to be in flight when the worker is lost.
const SLOW_S: u32 = 8;
const SLOW_CALLS: usize = 9;

async fn create_sleeper(c: &Client, name: &str) -> Result<()> {
    let mut s = spec(name, "python3.11", "app.handler");
    s.memory_size_mb = 256;
    s.timeout_seconds = FUNCTION_TIMEOUT_S;
    c.create_function(s, zip_of(&[("app.py", SLEEPER, 0o644)]))
        .await?;
    Ok(())
}

/// An invocation running in a task; it yields its outcome, when it ended and, when it failed, the
/// workers as the controller listed them right after.
type Call = tokio::task::JoinHandle<(
    Result<v1::InvokeResponse, Error>,
    Instant,
    Option<Vec<v1::WorkerInfo>>,
)>;

/// Starts `n` concurrent invocations of `name` sleeping `sleep` seconds.
fn invoke_concurrently(c: &Client, name: &str, n: usize, sleep: u32) -> Vec<Call> {
    (0..n)
        .map(|_| {
            let (c, name) = (c.clone(), name.to_string());
            tokio::spawn(async move {
                let r = c
                    .invoke(v1::InvokeRequest {
                        function_name: name,
                        payload: format!("{{\"sleep\": {sleep}}}").into_bytes(),
                        ..Default::default()
                    })
                    .await;
                let ended = Instant::now();
                let workers = match &r {
                    Ok(_) => None,
                    Err(_) => c.list_workers().await.ok(),
                };
                (r, ended, workers)
            })
        })
        .collect()
}

/// Waits for every call; each must succeed with "ok". Returns the workers that ran them.
async fn all_ok(cluster: &Cluster, calls: Vec<Call>) -> Result<Vec<String>> {
    let mut workers = Vec::new();
    for call in calls {
        let r = call
            .await?
            .0
            .with_context(|| format!("invocation failed; logs:\n{}", cluster.logs()))?;
        ensure!(json(&r) == "ok", "unexpected answer {r:?}");
        workers.push(r.worker_id);
    }
    Ok(workers)
}

async fn worker_state(c: &Client, worker_id: &str) -> Result<String> {
    Ok(c.list_workers()
        .await?
        .into_iter()
        .find(|w| w.worker_id == worker_id)
        .with_context(|| format!("worker {worker_id} not listed"))?
        .state)
}

#[test]
fn workers_in_their_own_namespaces_share_the_work() {
    run(async {
        let cluster = Cluster::start_netns(3, &[], &[])?;
        let c = cluster.client().await?;
        let network = cluster.network().expect("a netns cluster");

        // Each worker is a host of its own: its own network namespace, its own address.
        let ours = std::fs::metadata("/proc/self/ns/net")?.ino();
        let listed = c.list_workers().await?;
        assert_eq!(listed.len(), 3, "{listed:?}");
        let mut namespaces = BTreeSet::new();
        for (id, proc) in cluster.worker_ids.iter().zip(&cluster.workers) {
            let w = listed.iter().find(|w| &w.worker_id == id).expect("listed");
            assert_eq!(w.state, "Up", "{w:?}");
            let address = network.address(id)?;
            assert!(
                w.address.starts_with(&format!("{address}:")),
                "worker {id} serves on its namespace's address {address}: {w:?}"
            );
            let theirs = std::fs::metadata(format!("/proc/{}/ns/net", proc.child.id()))?.ino();
            assert_ne!(theirs, ours, "worker {id} runs in the root namespace");
            assert_eq!(
                theirs,
                std::fs::metadata(network.netns_path(id)?)?.ino(),
                "worker {id} runs in its own namespace"
            );
            namespaces.insert(theirs);
        }
        assert_eq!(namespaces.len(), 3, "one namespace per worker");

        // Concurrent cold invocations of one function start sandboxes on more than one worker.
        let name = unique("spread");
        create_sleeper(&c, &name).await?;
        let used: BTreeSet<String> = all_ok(&cluster, invoke_concurrently(&c, &name, 6, 1))
            .await?
            .into_iter()
            .collect();
        assert!(
            used.len() > 1,
            "6 concurrent cold starts all went to {used:?}"
        );
        assert!(used.iter().all(|w| cluster.worker_ids.contains(w)));
        Ok(())
    })
}

#[derive(Debug, Clone, Copy)]
enum Loss {
    /// SIGKILL: the kernel resets its connections.
    Kill,
    /// Its veth goes down: packets vanish, no reset; only missed heartbeats tell.
    Cut,
}

/// Nine slow invocations in flight over three workers; the worker running the most of them is lost.
async fn lose_a_worker_mid_load(loss: Loss) -> Result<()> {
    let mut cluster = Cluster::start_netns(3, &[], &[])?;
    let c = cluster.client().await?;
    let name = unique("slow");
    create_sleeper(&c, &name).await?;
    // Warm sandboxes on the workers first, so the slow calls start at once.
    all_ok(&cluster, invoke_concurrently(&c, &name, SLOW_CALLS, 0)).await?;

    let calls = invoke_concurrently(&c, &name, SLOW_CALLS, SLOW_S);
    // The heartbeats (every 500 ms) say where the calls run: lose the busiest worker.
    let deadline = Instant::now() + Duration::from_secs(SLOW_S as u64 / 2);
    let busy = loop {
        let busy: BTreeMap<String, u32> = c
            .list_workers()
            .await?
            .into_iter()
            .map(|w| (w.worker_id, w.sandboxes - w.idle_sandboxes))
            .collect();
        if busy.values().sum::<u32>() >= SLOW_CALLS as u32 || Instant::now() > deadline {
            break busy;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (victim, victim_busy) = busy
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(id, n)| (id.clone(), *n))
        .expect("three workers");
    ensure!(
        victim_busy > 0,
        "no worker reported a busy sandbox while {SLOW_CALLS} slow calls ran: {busy:?}\n{}",
        cluster.logs()
    );
    let index = cluster
        .worker_ids
        .iter()
        .position(|w| *w == victim)
        .expect("a worker of the cluster");
    let lost_at = Instant::now();
    match loss {
        Loss::Kill => cluster.kill_worker(index),
        Loss::Cut => cluster.cut_worker_network(index)?,
    }

    // No call hangs: each ends within the bound, well before the 60 s function timeout.
    let (mut failed, mut succeeded) = (0, 0);
    let mut slowest_failure = Duration::ZERO;
    for call in calls {
        let left = FAIL_FAST_BOUND.saturating_sub(lost_at.elapsed());
        let outcome = tokio::time::timeout(left, call).await.with_context(|| {
            format!(
                "an invocation was still running {FAIL_FAST_BOUND:?} after worker {victim} was lost ({loss:?}); logs:\n{}",
                cluster.logs()
            )
        })?;
        let (outcome, ended, workers_then) = outcome?;
        match outcome {
            Ok(r) => {
                assert_eq!(json(&r), "ok");
                assert_ne!(r.worker_id, victim, "a call answered from the lost worker");
                succeeded += 1;
            }
            Err(e) => {
                let status = e.status().with_context(|| format!("not a status: {e}"))?;
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(
                    status.message().contains(&victim),
                    "the error names the lost worker {victim}: {status:?}"
                );
                // The controller saw the worker go (a broken connection, or missed heartbeats)
                // before it answered: the worker is Down at once, not a heartbeat timeout later.
                let then = workers_then.context("ListWorkers after the failure")?;
                let state = then
                    .iter()
                    .find(|w| w.worker_id == victim)
                    .map(|w| &w.state);
                assert_eq!(
                    state.map(String::as_str),
                    Some("Down"),
                    "{loss:?}: {then:?}"
                );
                failed += 1;
                slowest_failure = slowest_failure.max(ended.saturating_duration_since(lost_at));
            }
        }
    }
    assert!(
        failed >= 1,
        "the lost worker ran {victim_busy} calls, none failed"
    );
    assert!(
        succeeded >= 1,
        "the calls on the other workers succeed ({failed} failed)"
    );
    assert_eq!(failed + succeeded, SLOW_CALLS);
    eprintln!(
        "{loss:?}: worker {victim} lost while running {victim_busy} calls; {failed} failed, the \
         last {slowest_failure:?} after the loss; {succeeded} succeeded"
    );

    // New invocations all run on the others.
    assert_eq!(worker_state(&c, &victim).await?, "Down");
    let ran_on = all_ok(&cluster, invoke_concurrently(&c, &name, 6, 0)).await?;
    assert!(
        ran_on.iter().all(|w| *w != victim),
        "new work went to the lost worker: {ran_on:?}"
    );
    let listed = c.list_workers().await?;
    assert_eq!(
        listed.iter().filter(|w| w.state == "Up").count(),
        2,
        "{listed:?}"
    );
    Ok(())
}

#[test]
fn a_killed_worker_fails_its_calls_fast_and_work_moves_on() {
    run(lose_a_worker_mid_load(Loss::Kill));
}

#[test]
fn a_worker_cut_off_the_network_fails_its_calls_fast_and_work_moves_on() {
    run(lose_a_worker_mid_load(Loss::Cut));
}

/// Polls the provisioned-concurrency status of `name:qualifier` until `done` holds.
async fn wait_provisioned(
    cluster: &Cluster,
    c: &Client,
    name: &str,
    qualifier: &str,
    what: &str,
    done: impl Fn(&v1::ProvisionedConcurrencyConfig) -> bool,
) -> Result<v1::ProvisionedConcurrencyConfig> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = c.get_provisioned_concurrency(name, qualifier).await?;
        if done(&p) {
            return Ok(p);
        }
        ensure!(
            Instant::now() < deadline,
            "provisioned concurrency of {name}:{qualifier} not {what} within 60 s: {p:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn provisioned_sandboxes_lost_with_a_worker_are_rebuilt_on_the_others() {
    run(async {
        let mut cluster = Cluster::start_netns(3, &[], &[])?;
        let c = cluster.client().await?;
        let name = unique("prov");
        create_sleeper(&c, &name).await?;
        let version = c.publish_version(&name, "").await?.version;
        c.put_provisioned_concurrency(&name, &version, 3).await?;
        let ready = |p: &v1::ProvisionedConcurrencyConfig| p.status == "READY" && p.allocated == 3;
        wait_provisioned(&cluster, &c, &name, &version, "READY with 3", ready).await?;
        // Spread: one sandbox on each worker (nothing else ever ran).
        let listed = c.list_workers().await?;
        assert!(listed.iter().all(|w| w.sandboxes == 1), "{listed:?}");

        cluster.kill_worker(0);
        let victim = cluster.worker_ids[0].clone();
        let deadline = Instant::now() + FAIL_FAST_BOUND;
        while worker_state(&c, &victim).await? != "Down" {
            ensure!(Instant::now() < deadline, "worker {victim} never Down");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Only sandboxes on Up workers count: back to 3 means rebuilt on the two that are left.
        wait_provisioned(&cluster, &c, &name, &version, "back to 3", ready).await?;
        let listed = c.list_workers().await?;
        let on_up: u32 = listed
            .iter()
            .filter(|w| w.state == "Up")
            .map(|w| w.sandboxes)
            .sum();
        assert!(on_up >= 3, "{listed:?}");

        // The version's invocations run on them, on the remaining workers.
        let ran_on = {
            let mut ran_on = Vec::new();
            for _ in 0..3 {
                let r = c
                    .invoke_qualified(&name, &version, b"{}".to_vec())
                    .await
                    .with_context(|| cluster.logs())?;
                assert_eq!(json(&r), "ok");
                ran_on.push(r.worker_id);
            }
            ran_on
        };
        assert!(ran_on.iter().all(|w| *w != victim), "{ran_on:?}");
        Ok(())
    })
}
