//! Isolation seen from inside a function, and the sandbox's cgroup seen from the host.
use lamina_e2e::*;

const PY_FACTS: &str = r#"
import os, socket
def handler(event, context):
    facts = {}
    facts["pid"] = os.getpid()
    facts["procs"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    facts["ifaces"] = sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:])
    facts["hostname"] = socket.gethostname()
    facts["uid"] = os.getuid()
    def writable(path):
        try:
            with open(path, "w") as f:
                f.write("x")
            return True
        except OSError:
            return False
    facts["task_writable"] = writable("/var/task/probe")
    facts["root_writable"] = writable("/probe")
    facts["usr_writable"] = writable("/usr/probe")
    facts["tmp_writable"] = writable("/tmp/probe")
    st = os.statvfs("/tmp")
    facts["tmp_mb"] = st.f_blocks * st.f_frsize // (1024 * 1024)
    facts["host_root_visible"] = os.path.exists("/root") or os.path.exists("/home")
    facts["cgroup"] = open("/proc/self/cgroup").read()
    return facts
"#;

#[test]
fn isolation_seen_from_inside_and_limits_from_the_host() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("iso");
        let mut s = spec(&name, "python3.11", "app.handler");
        s.memory_size_mb = 256;
        s.ephemeral_storage_mb = 600;
        c.create_function(s, zip_of(&[("app.py", PY_FACTS, 0o644)]))
            .await?;
        let resp = invoke(&c, &name, "{}").await?;
        assert_eq!(resp.function_error, "", "{:?}\n{}", resp, cluster.logs());
        let v = json(&resp);
        // Own pid namespace: pid 1 is Lamina's minimal init, the runtime its child.
        assert_eq!(v["pid"], 2, "own pid namespace: {v}");
        assert_eq!(
            v["procs"],
            serde_json::json!([1, 2]),
            "host processes invisible: {v}"
        );
        assert_eq!(v["ifaces"], serde_json::json!(["lo"]), "loopback only: {v}");
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
        assert_ne!(v["hostname"], host.trim(), "own hostname");
        assert_ne!(v["uid"], 0, "not root inside");
        assert_eq!(v["task_writable"], false);
        assert_eq!(v["root_writable"], false);
        assert_eq!(v["usr_writable"], false);
        assert_eq!(v["tmp_writable"], true);
        assert_eq!(v["tmp_mb"], 600);
        assert_eq!(v["host_root_visible"], false);

        // The memory limit is the function's, in the sandbox's own cgroup on the host.
        if let Some(mem) = memory_cgroup_root() {
            let parent = mem.join("lamina").join(&cluster.worker_ids[0]);
            let limits: Vec<u64> = std::fs::read_dir(&parent)?
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| {
                    std::fs::read_to_string(e.path().join("memory.limit_in_bytes"))
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap()
                })
                .collect();
            assert_eq!(
                limits,
                vec![256 * 1024 * 1024],
                "sandbox cgroups under {}",
                parent.display()
            );
        } else {
            let parent = std::path::Path::new("/sys/fs/cgroup/lamina").join(&cluster.worker_ids[0]);
            let limits: Vec<String> = std::fs::read_dir(&parent)?
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| std::fs::read_to_string(e.path().join("memory.max")).unwrap())
                .collect();
            assert_eq!(limits, vec![format!("{}\n", 256 * 1024 * 1024)]);
        }
        Ok(())
    })
}

#[test]
fn functions_do_not_share_sandboxes() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let src = "import os\ndef handler(e, c):\n    p = '/tmp/mark'\n    seen = os.path.exists(p)\n    open(p, 'w').write('x')\n    return {'seen': seen}\n";
        let a = unique("shareA");
        let b = unique("shareB");
        create_python(&c, &a, src).await?;
        create_python(&c, &b, src).await?;
        assert_eq!(json(&invoke(&c, &a, "{}").await?)["seen"], false);
        assert_eq!(
            json(&invoke(&c, &a, "{}").await?)["seen"],
            true,
            "warm sandbox keeps /tmp"
        );
        assert_eq!(
            json(&invoke(&c, &b, "{}").await?)["seen"],
            false,
            "another function's /tmp"
        );
        Ok(())
    })
}
