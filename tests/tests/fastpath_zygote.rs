//! The Python zygote (worker env `LAMINA_PYTHON_ZYGOTE=1`): a pre-imported interpreter forked into
//! each new Python sandbox. A forked sandbox must be exactly as confined as an exec'd one: the
//! hardening probe of `hardening.rs` (tests/python/hardening_probe.py, plus what a zygote could leak) runs in one, from
//! the pool of prepared sandboxes and fresh, and other runtimes keep working beside it.
use lamina_e2e::*;

/// The hardening probe plus what a zygote-forked sandbox could leak.
const PROBE: &str = concat!(
    include_str!("../python/hardening_probe.py"),
    r#"
_hardening_probe = handler


def handler(event, context):
    r = _hardening_probe(event, context)
    r["cmdline"] = open("/proc/1/cmdline", "rb").read().decode().split("\0")
    r["main_file"] = __import__("sys").modules["__main__"].__file__
    r["random"] = __import__("random").random()
    import traceback
    r["frames"] = [f.filename for f in traceback.extract_stack()]
    r["maps"] = sorted({l.split(None, 5)[5].strip() for l in open("/proc/self/maps") if len(l.split(None, 5)) == 6})
    return r
"#
);

fn zygote_cluster() -> anyhow::Result<Cluster> {
    // Every test in this file wants the same values.
    std::env::set_var("LAMINA_PYTHON_ZYGOTE", "1");
    std::env::set_var("LAMINA_PREWARM_SANDBOXES", "1");
    Cluster::start(1)
}

/// The host pids of the worker's Python zygote (a python3.11 child of the worker's process).
fn zygote_pid(worker_pid: u32) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ppid: u32 = stat
            .rsplit(") ")
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        (ppid == worker_pid && exe.ends_with("python3.11")).then_some(pid)
    })
}

/// The hardening probe's checks, plus what a zygote could leak.
fn check_confined(v: &serde_json::Value, cluster: &Cluster) {
    assert_probe_confined(v);
    // Nothing of the host's paths: not the worker's state dir, not the library the zygote loaded.
    let state_dir = cluster.dir.path().to_string_lossy().to_string();
    let text = v.to_string();
    assert!(
        !text.contains(&state_dir),
        "host path {state_dir} visible: {v}"
    );
    // The init library is mapped from a memfd, not from its host path.
    let maps: Vec<String> = serde_json::from_value(v["maps"].clone()).unwrap();
    assert!(
        maps.iter()
            .any(|m| m.starts_with("/memfd:liblamina_worker")),
        "a zygote child maps the init library: {maps:?}"
    );
    for m in maps.iter().filter(|m| m.contains("liblamina_worker")) {
        assert!(m.starts_with("/memfd:"), "mapped from a host path: {m}");
    }
    assert!(!text.contains("lamina-target"), "{v}");
    assert_eq!(v["main_file"], "/var/runtime/bootstrap.py", "{v}");
}

#[test]
fn zygote_forked_python_sandboxes_pass_the_hardening_probe() {
    run(async {
        let cluster = zygote_cluster()?;
        let worker_pid = cluster.workers[0].child.id();
        let zygote = zygote_pid(worker_pid);
        assert!(
            zygote.is_some(),
            "the worker runs a python zygote\n{}",
            cluster.logs()
        );
        let c = cluster.client().await?;
        let port = |addr: &str| addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        let event = serde_json::json!({
            "controller_port": port(&cluster.controller.address),
            "worker_port": port(&cluster.workers[0].address),
        })
        .to_string();
        // Two functions: the first cold start takes the prepared sandbox, the second is forked
        // while the pool refills (or takes the refilled one): both are zygote children.
        let (a, b) = (unique("zygA"), unique("zygB"));
        create_python(&c, &a, PROBE).await?;
        create_python(&c, &b, PROBE).await?;
        let ra = invoke(&c, &a, &event).await?;
        assert_eq!(
            ra.function_error,
            "",
            "{}\n{}",
            String::from_utf8_lossy(&ra.payload),
            cluster.logs()
        );
        let rb = invoke(&c, &b, &event).await?;
        assert_eq!(
            rb.function_error,
            "",
            "{}",
            String::from_utf8_lossy(&rb.payload)
        );
        let (va, vb) = (json(&ra), json(&rb));
        check_confined(&va, &cluster);
        check_confined(&vb, &cluster);
        // random is reseeded in every fork: two sandboxes do not share a sequence.
        assert_ne!(va["random"], vb["random"]);

        // From the host: each sandbox's outer init is a child of the zygote, and the runtime runs
        // as the function's own unprivileged host uid.
        let zygote = zygote.unwrap();
        let root = std::path::Path::new("/sys/fs/cgroup/pids/lamina").join(&cluster.worker_ids[0]);
        let mut runtime_uids = Vec::new();
        let mut forked = 0;
        if root.exists() {
            for sb in std::fs::read_dir(&root)?
                .flatten()
                .filter(|e| e.path().is_dir())
            {
                for pid in std::fs::read_to_string(sb.path().join("cgroup.procs"))?.lines() {
                    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
                    let field = |k: &str| {
                        status
                            .lines()
                            .find_map(|l| l.strip_prefix(k))
                            .map(|v| v.split_whitespace().next().unwrap_or("").to_string())
                    };
                    if field("PPid:").as_deref() == Some(zygote.to_string().as_str()) {
                        forked += 1;
                    }
                    let uid: u32 = field("Uid:").unwrap().parse()?;
                    if uid != 0 {
                        runtime_uids.push(uid);
                    }
                }
            }
            // Two bound sandboxes and one prepared again: three children of the zygote.
            assert!(forked >= 2, "sandboxes forked from the zygote: {forked}");
            runtime_uids.sort();
            runtime_uids.dedup();
            assert_eq!(
                runtime_uids.len(),
                2,
                "one host uid per function: {runtime_uids:?}"
            );
            assert!(runtime_uids.iter().all(|u| *u >= 65536), "{runtime_uids:?}");
        }
        Ok(())
    })
}

#[test]
fn zygote_sandboxes_keep_lambda_behaviour_and_other_runtimes_still_start() {
    run(async {
        let cluster = zygote_cluster()?;
        let c = cluster.client().await?;
        // Module state survives warm invocations, errors are Lambda's, stdout reaches the log.
        let name = unique("zygstate");
        let src = "import logging\nn = 0\ndef handler(e, c):\n    global n\n    n += 1\n    print('count', n)\n    logging.getLogger().warning('warned %d', n)\n    if e.get('fail'):\n        raise ValueError('boom')\n    return {'n': n, 'rid': c.aws_request_id}\n";
        create_python(&c, &name, src).await?;
        let r1 = invoke(&c, &name, "{}").await?;
        assert_eq!(json(&r1)["n"], 1, "{}", cluster.logs());
        assert!(r1.log_tail.contains("count 1"), "{}", r1.log_tail);
        assert!(
            r1.log_tail.contains("[WARNING]") && r1.log_tail.contains("warned 1"),
            "{}",
            r1.log_tail
        );
        assert_eq!(json(&r1)["rid"], r1.request_id);
        let r2 = invoke(&c, &name, r#"{"fail":true}"#).await?;
        assert_eq!(r2.function_error, "Unhandled");
        let err = json(&r2);
        assert_eq!(err["errorType"], "ValueError");
        assert_eq!(err["errorMessage"], "boom");
        let r3 = invoke(&c, &name, "{}").await?;
        assert_eq!(json(&r3)["n"], 3);

        // An import-time exit is the function's exit status, as in an exec'd runtime.
        let bad = unique("zygexit");
        create_python(&c, &bad, "import sys\nsys.exit(3)\n").await?;
        let r = invoke(&c, &bad, "{}").await?;
        assert_eq!(r.function_error, "Unhandled");
        let payload = String::from_utf8_lossy(&r.payload).to_string();
        assert!(
            payload.contains("Runtime.ExitError") && payload.contains("exit status 3"),
            "{payload}"
        );

        // Node does not use the zygote and still starts.
        let node = unique("zygnode");
        c.create_function(
            spec(&node, "nodejs20.x", "app.handler"),
            zip_of(&[(
                "app.js",
                "exports.handler = async () => ({ node: true });\n",
                0o644,
            )]),
        )
        .await?;
        assert_eq!(json(&invoke(&c, &node, "{}").await?)["node"], true);
        Ok(())
    })
}

/// Issue 14 item 2 in zygote-forked sandboxes: pid 1 is the zygote child's Rust init, which reaps
/// what the function orphans and reports the runtime's own exit status.
#[test]
fn zygote_sandboxes_reap_orphans() {
    run(async {
        std::env::set_var("LAMINA_PYTHON_ZYGOTE", "1");
        std::env::set_var("LAMINA_PREWARM_SANDBOXES", "1");
        let cluster = Cluster::start_with(1, &["--pids-max", "32"])?;
        let c = cluster.client().await?;
        lamina_e2e::orphans::orphans_are_reaped(&c, &cluster, 6).await
    })
}
