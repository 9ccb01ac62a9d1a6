//! What a hostile function can make its worker spend, through a real sandbox: a `provided`
//! function whose bootstrap (Python) holds hundreds of connections to its Runtime API and posts
//! large bodies to request ids that are not in flight. The worker's descriptors and memory
//! (`/proc/<worker pid>/fd`, `VmRSS`) stay bounded and the function, and a cold start, still work.
//! Also: two workers on one host never share a uid range.
use lamina_e2e::*;
use serde_json::{json, Value};

/// Events: `{"mode": "hold", "n": N}` opens N connections to the Runtime API and keeps them;
/// `{"mode": "flood", "threads": T}` closes them, then T threads each post a 6 MB body (less one
/// byte of what they announce) to an unknown request id and keep their connection; `{"mode":
/// "release"}` closes everything. The runtime's own calls go over one keep-alive connection
/// opened first.
const BOOTSTRAP: &str = r#"#!/usr/bin/python3.11
import http.client, json, os, socket, threading
API = os.environ["AWS_LAMBDA_RUNTIME_API"]
HOST, PORT = API.rsplit(":", 1)
PORT = int(PORT)
BASE = "/2018-06-01/runtime"
api = http.client.HTTPConnection(API)
held = []
BIG = b"x" * 6_000_000

def release():
    while held:
        try:
            held.pop().close()
        except OSError:
            pass

def hold(n):
    opened = 0
    for _ in range(n):
        try:
            held.append(socket.create_connection((HOST, PORT), timeout=2))
            opened += 1
        except OSError:
            break
    return opened

def post_unknown(i, out):
    try:
        s = socket.create_connection((HOST, PORT), timeout=20)
        held.append(s)
        head = "POST %s/invocation/not-in-flight-%d/response HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (BASE, i, len(BIG) + 1)
        s.sendall(head.encode())
        s.sendall(BIG)
        out[i] = "sent"
    except OSError as e:
        out[i] = type(e).__name__

count = 0
while True:
    api.request("GET", BASE + "/invocation/next")
    r = api.getresponse()
    ev = json.loads(r.read())
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    count += 1
    mode = ev.get("mode")
    answer = {"count": count}
    if mode == "hold":
        answer["opened"] = hold(ev["n"])
    elif mode == "flood":
        release()
        out = {}
        threads = [threading.Thread(target=post_unknown, args=(i, out)) for i in range(ev["threads"])]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        answer["results"] = sorted(out.values())
    elif mode == "release":
        release()
    api.request("POST", BASE + "/invocation/%s/response" % rid, body=json.dumps(answer).encode())
    api.getresponse().read()
"#;

fn worker_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the worker's fd directory")
        .count()
}

fn worker_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

async fn call(c: &Client, cluster: &Cluster, name: &str, event: Value) -> anyhow::Result<Value> {
    let resp = invoke(c, name, &event.to_string()).await?;
    assert_eq!(
        resp.function_error,
        "",
        "{}\n{}\n{}",
        String::from_utf8_lossy(&resp.payload),
        resp.log_tail,
        cluster.logs()
    );
    Ok(json(&resp))
}

#[test]
fn a_function_cannot_take_the_workers_descriptors_or_memory() {
    run(async {
        let cluster = Cluster::start(1)?;
        let pid = cluster.workers[0].child.id();
        let c = cluster.client().await?;
        let name = unique("hog");
        let mut s = spec(&name, "provided", "hog.handler");
        s.memory_size_mb = 512;
        s.timeout_seconds = 60;
        c.create_function(s, zip_of(&[("bootstrap", BOOTSTRAP, 0o755)]))
            .await?;
        assert_eq!(call(&c, &cluster, &name, json!({})).await?["count"], 1);
        let fds_before = worker_fds(pid);

        // Hundreds of connections held open by the sandbox: the worker keeps a handful.
        let held = call(&c, &cluster, &name, json!({"mode": "hold", "n": 900})).await?;
        let opened = held["opened"].as_u64().unwrap_or(0);
        assert!(opened >= 500, "the sandbox opened {opened} connections");
        let fds_held = worker_fds(pid);
        eprintln!("worker fds: {fds_before} before, {fds_held} with {opened} connections held");
        assert!(
            fds_held < fds_before + 64,
            "the worker went from {fds_before} to {fds_held} descriptors for {opened} connections"
        );

        // 64 threads each post 6 MB to request ids not in flight: nothing is buffered.
        let rss_before = worker_rss_kb(pid);
        let flood = call(&c, &cluster, &name, json!({"mode": "flood", "threads": 64})).await?;
        let rss_after = worker_rss_kb(pid);
        eprintln!("worker VmRSS: {rss_before} kB before the flood, {rss_after} kB after");
        assert_eq!(
            flood["results"].as_array().map(Vec::len),
            Some(64),
            "{flood}"
        );
        assert!(
            rss_after < rss_before + 100 * 1024,
            "the worker's RSS went from {rss_before} kB to {rss_after} kB: {flood}"
        );

        // The function still works, and so does a cold start.
        call(&c, &cluster, &name, json!({"mode": "release"})).await?;
        let again = call(&c, &cluster, &name, json!({})).await?;
        assert_eq!(again["count"], 5);
        let other = unique("after");
        create_python(
            &c,
            &other,
            "def handler(event, context):\n    return {'ok': True}\n",
        )
        .await?;
        let r = invoke(&c, &other, "{}").await?;
        assert_eq!(json(&r), json!({"ok": true}), "{}", cluster.logs());
        Ok(())
    });
}

/// The uid range a worker locked (`STATE_DIR/uid-range`).
fn uid_base_of(cluster: &Cluster, worker: usize) -> u32 {
    let path = cluster
        .dir
        .path()
        .join(&cluster.worker_ids[worker])
        .join("uid-range");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .expect("a uid")
}

#[test]
fn two_workers_on_one_host_never_share_uids() {
    run(async {
        let mut cluster = Cluster::start(1)?;
        let first = uid_base_of(&cluster, 0);
        // Without --uid-base, a second worker takes another (free) range.
        cluster.add_worker(&[])?;
        let second = uid_base_of(&cluster, 1);
        assert!(
            first.abs_diff(second) >= 65_536,
            "default ranges {first} and {second} overlap"
        );

        // An explicit range overlapping the first worker's is refused, naming it.
        let dir = cluster.dir.path().join("overlapping");
        let out = std::process::Command::new(bin("lamina-worker"))
            .args(["--controller", &cluster.endpoint, "--listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(&dir)
            .args(["--worker-id", "w-overlap"])
            .args([
                "--uid-base",
                &(first + 100).to_string(),
                "--uid-count",
                "10",
            ])
            .arg("--cluster-token-file")
            .arg(&cluster.cluster_token_file)
            .args(cluster.worker_transport_args("w-overlap", &[], &[])?)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        let want = format!(
            "uid range {}..{} overlaps range {first}..{} of worker `{}`",
            first + 100,
            first + 110,
            u64::from(first) + 65_536,
            cluster.worker_ids[0]
        );
        assert!(stderr.contains(&want), "{stderr}");

        // A disjoint explicit range starts, and its functions run.
        let free = 4_000_000_000 - (std::process::id() % 1000) * 10_000;
        cluster.add_worker(&["--uid-base", &free.to_string(), "--uid-count", "10000"])?;
        assert_eq!(uid_base_of(&cluster, 2), free);
        let c = cluster.client().await?;
        let name = unique("uids");
        create_python(
            &c,
            &name,
            "import os\ndef handler(event, context):\n    return os.getuid()\n",
        )
        .await?;
        let r = invoke(&c, &name, "{}").await?;
        assert_eq!(r.function_error, "", "{}", cluster.logs());
        Ok(())
    });
}
