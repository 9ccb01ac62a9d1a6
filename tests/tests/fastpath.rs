//! The fast path: sandboxes prepared ahead of requests (worker env `LAMINA_PREWARM_SANDBOXES`). A
//! prepared sandbox holds no code and runs nothing untrusted; binding it to a function gives the same
//! sandbox as a fresh start: the function's limits, its own uid, every privilege dropped, seccomp.
use std::path::{Path, PathBuf};
use std::time::Duration;

use lamina_e2e::*;

const POOL: usize = 2;

/// A cluster whose worker keeps `POOL` sandboxes prepared. Every test here wants the same value, so
/// setting the (inherited) variable from parallel tests is harmless.
fn pooled_cluster() -> anyhow::Result<Cluster> {
    std::env::set_var("LAMINA_PREWARM_SANDBOXES", POOL.to_string());
    Cluster::start(1)
}

/// The worker's sandbox cgroups in the pids hierarchy (v1) or the unified one (v2).
fn sandbox_cgroups(worker_id: &str) -> Vec<PathBuf> {
    let v1 = Path::new("/sys/fs/cgroup/pids/lamina").join(worker_id);
    let parent = if v1.exists() {
        v1
    } else {
        Path::new("/sys/fs/cgroup/lamina").join(worker_id)
    };
    let mut v: Vec<PathBuf> = std::fs::read_dir(parent)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn procs(cgroup: &Path) -> Vec<i32> {
    std::fs::read_to_string(cgroup.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Waits until the worker has `n` sandbox cgroups whose processes are all prepared inits.
async fn wait_prepared(worker_id: &str, n: usize) -> Vec<PathBuf> {
    let mut prepared = Vec::new();
    for _ in 0..100 {
        prepared = sandbox_cgroups(worker_id)
            .into_iter()
            .filter(|cg| {
                let p = procs(cg);
                !p.is_empty()
                    && p.iter().all(|pid| {
                        std::fs::read_link(format!("/proc/{pid}/exe"))
                            .is_ok_and(|e| e.to_string_lossy().contains("lamina-worker"))
                    })
            })
            .collect();
        if prepared.len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    prepared
}

const FACTS: &str = r#"
import os, socket
def handler(event, context):
    if event.get("write"):
        open("/tmp/secret", "w").write(event["write"])
    status = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
    return {
        "uid": os.getuid(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "ifaces": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]),
        "tmp": sorted(os.listdir("/tmp")),
        "task": sorted(os.listdir("/var/task")),
        "CapEff": status["CapEff"].strip(),
        "CapBnd": status["CapBnd"].strip(),
        "NoNewPrivs": status["NoNewPrivs"].strip(),
        "Seccomp": status["Seccomp"].strip(),
        "pid1_cmdline": open("/proc/1/cmdline").read().split("\0")[0],
        "env_keys": sorted(k for k in os.environ if k.startswith("LAMINA")),
        "mem": os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
    }
"#;

#[test]
fn prepared_sandboxes_wait_ahead_and_bind_to_a_correct_isolated_invocation() {
    run(async {
        let cluster = pooled_cluster()?;
        let worker = cluster.worker_ids[0].clone();
        // Before any request: POOL prepared sandboxes, each a cgroup holding only Lamina's init
        // (host root, no runtime exec'd, no code bound).
        let before = wait_prepared(&worker, POOL).await;
        assert_eq!(
            before.len(),
            POOL,
            "prepared ahead: {before:?}\n{}",
            cluster.logs()
        );
        for cg in &before {
            for pid in procs(cg) {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
                assert!(
                    status.contains("Uid:\t0\t0\t0\t0"),
                    "a prepared init is root: {status}"
                );
            }
        }

        let c = cluster.client().await?;
        let (a, b) = (unique("poolA"), unique("poolB"));
        let mut sa = spec(&a, "python3.11", "app.handler");
        sa.memory_size_mb = 256;
        c.create_function(sa, zip_of(&[("app.py", FACTS, 0o644)]))
            .await?;
        create_python(&c, &b, FACTS).await?;

        let ra = invoke(&c, &a, r#"{"write":"a-secret"}"#).await?;
        assert!(
            ra.function_error.is_empty(),
            "{}",
            String::from_utf8_lossy(&ra.payload)
        );
        assert!(
            ra.log_tail.contains("Init Duration:"),
            "a cold start: {}",
            ra.log_tail
        );
        let va = json(&ra);
        let rb = invoke(&c, &b, "{}").await?;
        let vb = json(&rb);

        // The sandbox that ran `a` is one of the prepared ones, now bound: its cgroup has the
        // function's memory limit, not the prepared one's.
        let bound: Vec<&PathBuf> = before
            .iter()
            .filter(|cg| {
                procs(cg).iter().any(|pid| {
                    std::fs::read_link(format!("/proc/{pid}/exe"))
                        .is_ok_and(|e| e.ends_with("python3.11"))
                })
            })
            .collect();
        assert_eq!(
            bound.len(),
            POOL,
            "both invocations used prepared sandboxes: {before:?}"
        );
        if let Some(mem) = memory_cgroup_root() {
            let mut limits: Vec<u64> = bound
                .iter()
                .map(|cg| {
                    let name = cg.file_name().unwrap();
                    std::fs::read_to_string(
                        mem.join("lamina")
                            .join(&worker)
                            .join(name)
                            .join("memory.limit_in_bytes"),
                    )
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap()
                })
                .collect();
            limits.sort();
            assert_eq!(limits, vec![256 << 20, 1024 << 20]);
        }

        // Correct and isolated, as from a fresh sandbox.
        for v in [&va, &vb] {
            // Pid 1 is Lamina's minimal init, the runtime its only child.
            assert_eq!(v["pid"], 2, "{v}");
            assert_eq!(v["procs"], serde_json::json!([1, 2]), "{v}");
            assert_eq!(v["ifaces"], serde_json::json!(["lo"]), "{v}");
            assert_eq!(v["uid"], 993, "{v}");
            assert_eq!(v["CapEff"], "0000000000000000", "{v}");
            assert_eq!(v["CapBnd"], "0000000000000000", "{v}");
            assert_eq!(v["NoNewPrivs"], "1", "{v}");
            assert_eq!(v["Seccomp"], "2", "{v}");
            assert_eq!(v["pid1_cmdline"], "lamina-init", "{v}");
            assert_eq!(v["task"], serde_json::json!(["app.py"]), "{v}");
            assert_eq!(v["env_keys"], serde_json::json!([]), "{v}");
        }
        assert_eq!(va["mem"], "256");
        assert_eq!(va["tmp"], serde_json::json!(["secret"]));
        assert_eq!(
            vb["tmp"],
            serde_json::json!([]),
            "b sees nothing of a's /tmp: {vb}"
        );
        assert_ne!(va["hostname"], vb["hostname"]);

        // The pool refills in the background: POOL prepared sandboxes wait again.
        let after = wait_prepared(&worker, POOL).await;
        assert_eq!(
            after.len(),
            POOL,
            "pool refilled: {after:?}\n{}",
            cluster.logs()
        );
        assert!(
            after.iter().all(|cg| !before.contains(cg)),
            "new ones: {after:?}"
        );
        // Warm invocations reuse the bound sandbox, as without a pool.
        let again = json(&invoke(&c, &a, "{}").await?);
        assert_eq!(again["tmp"], serde_json::json!(["secret"]));
        Ok(())
    })
}

#[test]
fn a_failing_function_in_a_prepared_sandbox_is_reported_and_the_pool_survives() {
    run(async {
        let cluster = pooled_cluster()?;
        let c = cluster.client().await?;
        let bad = unique("poolbad");
        create_python(&c, &bad, "import sys\nsys.exit(3)\n").await?;
        let r = invoke(&c, &bad, "{}").await?;
        assert_eq!(r.function_error, "Unhandled");
        assert!(
            String::from_utf8_lossy(&r.payload).contains("Runtime.ExitError"),
            "{}",
            String::from_utf8_lossy(&r.payload)
        );
        let good = unique("poolgood");
        create_python(&c, &good, "def handler(e, c):\n    return 'fine'\n").await?;
        assert_eq!(json(&invoke(&c, &good, "{}").await?), "fine");
        let prepared = wait_prepared(&cluster.worker_ids[0], POOL).await;
        assert_eq!(prepared.len(), POOL, "{}", cluster.logs());
        Ok(())
    })
}
