//! Hostile functions try each escape of the reliability/security matrix; the outcome is checked from
//! inside (errno, /proc/self/status) and from outside (host untouched, worker healthy, a canary answers).
use std::time::Duration;

use lamina_e2e::*;

const PROBE: &str = include_str!("../python/hardening_probe.py");

#[test]
fn hostile_function_cannot_escape() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("probe");
        create_python(&c, &name, PROBE).await?;
        let port = |addr: &str| addr.rsplit(':').next().unwrap().parse::<u16>().unwrap();
        let event = serde_json::json!({
            "controller_port": port(&cluster.controller.address),
            "worker_port": port(&cluster.workers[0].address),
        });
        let resp = invoke(&c, &name, &event.to_string()).await?;
        assert_eq!(
            resp.function_error,
            "",
            "{}\n{}",
            String::from_utf8_lossy(&resp.payload),
            cluster.logs()
        );
        assert_probe_confined(&json(&resp));
        Ok(())
    })
}

fn host_pids() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .count()
}

const FORK_BOMB: &str = r#"
import os, errno, time
def handler(event, context):
    if event.get("bomb"):
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.01)
    children = 0
    while True:
        try:
            pid = os.fork()
        except OSError as e:
            return {"children": children, "errno": errno.errorcode[e.errno]}
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children += 1
"#;

#[test]
fn fork_bomb_hits_pids_max_and_is_cleaned_up() {
    run(async {
        let cluster = Cluster::start_with(1, &["--pids-max", "64", "--keep-alive-s", "2"])?;
        let c = cluster.client().await?;
        let canary = unique("canary");
        create_python(&c, &canary, "def handler(e, c):\n    return 'alive'\n").await?;
        assert_eq!(json(&invoke(&c, &canary, "{}").await?), "alive");
        let baseline = host_pids();

        let name = unique("forks");
        let mut s = spec(&name, "python3.11", "app.handler");
        s.timeout_seconds = 3;
        c.create_function(s, zip_of(&[("app.py", FORK_BOMB, 0o644)]))
            .await?;
        // A bounded fork loop stops at pids.max with EAGAIN and the function answers.
        let v = json(&invoke(&c, &name, "{}").await?);
        assert_eq!(v["errno"], "EAGAIN", "{v}\n{}", cluster.logs());
        assert!(v["children"].as_u64().unwrap() < 64, "{v}");
        // A real fork bomb: every process forks; the invocation times out and everything is killed.
        let r = invoke(&c, &name, r#"{"bomb":true}"#).await?;
        assert_eq!(json(&r)["errorType"], "Sandbox.Timedout", "{r:?}");
        assert_eq!(
            json(&invoke(&c, &canary, "{}").await?),
            "alive",
            "canary unaffected"
        );
        // Within 5 s of the keep-alive the host's process count is back to its baseline.
        let mut now = host_pids();
        for _ in 0..100 {
            if now <= baseline + 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            now = host_pids();
        }
        assert!(now <= baseline + 2, "host pids {now}, baseline {baseline}");
        Ok(())
    })
}

const EXHAUST: &str = r#"
import errno, os
def handler(event, context):
    r = {}
    try:
        with open("/tmp/fill", "wb") as f:
            chunk = b"x" * (1 << 20)
            while True:
                f.write(chunk)
                f.flush()
    except OSError as e:
        r["fill"] = errno.errorcode[e.errno]
    os.remove("/tmp/fill")
    fds = []
    try:
        while True:
            fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as e:
        r["fds"] = errno.errorcode[e.errno]
        r["fd_count"] = len(fds)
    for fd in fds:
        os.close(fd)
    return r
"#;

#[test]
fn filling_tmp_and_leaking_fds_stop_inside_the_sandbox() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("exhaust");
        let mut s = spec(&name, "python3.11", "app.handler");
        s.ephemeral_storage_mb = 512;
        s.memory_size_mb = 1024;
        c.create_function(s, zip_of(&[("app.py", EXHAUST, 0o644)]))
            .await?;
        let disk_before = nix_free_bytes(cluster.dir.path());
        let v = json(&invoke(&c, &name, "{}").await?);
        assert!(
            matches!(v["fill"].as_str(), Some("ENOSPC") | Some("EFBIG")),
            "{v}\n{}",
            cluster.logs()
        );
        assert_eq!(v["fds"], "EMFILE", "{v}");
        assert!(v["fd_count"].as_u64().unwrap() < 1024);
        let disk_after = nix_free_bytes(cluster.dir.path());
        assert!(
            disk_before.abs_diff(disk_after) < 100 << 20,
            "host disk changed: {disk_before} -> {disk_after}"
        );
        // The worker is healthy and the function answers again.
        assert_eq!(json(&invoke(&c, &name, "{}").await?)["fds"], "EMFILE");
        Ok(())
    })
}

fn nix_free_bytes(path: &std::path::Path) -> u64 {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: statvfs writes into a zeroed, properly sized struct; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0);
        st.f_bavail * st.f_frsize
    }
}

#[test]
fn functions_get_distinct_unprivileged_host_uids() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let src = "import time\ndef handler(e, c):\n    time.sleep(1.5)\n    return 1\n";
        let (a, b) = (unique("uidA"), unique("uidB"));
        create_python(&c, &a, src).await?;
        create_python(&c, &b, src).await?;
        let (ra, rb) = tokio::join!(invoke(&c, &a, "{}"), invoke(&c, &b, "{}"));
        assert_eq!(json(&ra?), 1);
        assert_eq!(json(&rb?), 1);
        // Both sandboxes are idle now: read their processes' host uids through the cgroups.
        let root = std::path::Path::new("/sys/fs/cgroup/pids/lamina").join(&cluster.worker_ids[0]);
        let mut uids = Vec::new();
        for sb in std::fs::read_dir(&root)?
            .flatten()
            .filter(|e| e.path().is_dir())
        {
            let procs = std::fs::read_to_string(sb.path().join("cgroup.procs"))?;
            for pid in procs.lines() {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
                let uid: u32 = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next())
                    .unwrap()
                    .parse()?;
                uids.push(uid);
            }
        }
        // The init process outside the pid namespace stays root; the runtime runs as the function's uid.
        let mut fn_uids: Vec<u32> = uids.into_iter().filter(|u| *u != 0).collect();
        fn_uids.sort();
        fn_uids.dedup();
        assert_eq!(
            fn_uids.len(),
            2,
            "two functions, two host uids: {fn_uids:?}"
        );
        assert!(fn_uids.iter().all(|u| *u >= 65_536));
        Ok(())
    })
}

/// Issue 14 item 2: what a function orphans is reaped by the sandbox's pid 1 (Lamina's minimal
/// init), invocation after invocation in a warm sandbox, so forks keep working under a low
/// `pids.max`; the runtime's own exit status is still what the caller is told.
#[test]
fn orphaned_processes_are_reaped_in_warm_sandboxes() {
    run(async {
        let cluster = Cluster::start_with(1, &["--pids-max", "32"])?;
        let c = cluster.client().await?;
        lamina_e2e::orphans::orphans_are_reaped(&c, &cluster, 6).await
    })
}
