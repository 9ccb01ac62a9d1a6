//! Real sandboxes, as root: isolation seen from inside, the Runtime API socket inside the sandbox's
//! network namespace, the memory limit, cleanup. This binary has its own `main` (harness = false)
//! because a sandbox's init process is a re-exec of the current executable with `__sandbox-init`.
mod harness;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use lamina_proto::domain::Runtime;
use lamina_worker::sandbox::{Sandbox, SandboxSpec};
use tokio::io::AsyncReadExt;

use harness::Test;

fn spec(dir: &Path, name: &str, script: &str, memory_mb: u32) -> SandboxSpec {
    let code = dir.join(format!("code-{name}"));
    let rt = dir.join("runtime");
    std::fs::create_dir_all(&code).unwrap();
    std::fs::create_dir_all(&rt).unwrap();
    std::fs::write(code.join("main.py"), script).unwrap();
    for d in [dir, code.as_path(), rt.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    SandboxSpec {
        layer_dirs: Vec::new(),
        sandbox_id: format!("sb-test-{name}-{}", std::process::id()),
        runtime: Runtime::Python311,
        code_dir: code,
        runtime_dir: rt,
        work_dir: dir.join(format!("work-{name}")),
        cgroup_parent: "lamina-test/sandbox".into(),
        memory_mb,
        ephemeral_storage_mb: 64,
        argv: vec!["/usr/bin/python3.11".into(), "/var/task/main.py".into()],
        env: vec![
            ("PATH".into(), "/usr/bin:/bin".into()),
            ("MY_VAR".into(), "a=b".into()),
        ],
        host_uid: 231_072,
        pids_max: 64,
    }
}

async fn run_to_exit(mut sb: Sandbox) -> (String, lamina_worker::sandbox::ExitInfo) {
    let mut out = sb.take_output().unwrap();
    let mut text = String::new();
    let read = tokio::time::timeout(Duration::from_secs(30), out.read_to_string(&mut text));
    read.await.expect("sandbox output did not end").unwrap();
    let exit = sb.wait_exit().await;
    sb.destroy().await;
    (text, exit)
}

const ISOLATION: &str = r#"
import os, socket
print("pid", os.getpid())
print("uid", os.getuid(), os.getgid())
print("hostname", socket.gethostname())
print("procs", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print("ifaces", sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]))
try:
    open("/var/task/x", "w"); print("task writable")
except OSError as e: print("task", e.errno)
try:
    open("/etc/x", "w"); print("root writable")
except OSError as e: print("root", e.errno)
open("/tmp/x", "w").write("ok"); print("tmp ok")
st = os.statvfs("/tmp"); print("tmp_mb", st.f_blocks * st.f_frsize // (1024*1024))
print("env", os.environ.get("MY_VAR"), "HOME" in os.environ)
print("fds", sorted(os.listdir("/proc/self/fd")))
s = socket.create_connection(("127.0.0.1", 9001), timeout=5); print("api connected"); s.close()
print("dev", sorted(os.listdir("/dev")))
"#;

async fn isolation_seen_from_inside() {
    let dir = tempfile::tempdir().unwrap();
    let mut sb = Sandbox::start(spec(dir.path(), "iso", ISOLATION, 256))
        .await
        .unwrap();
    let listener = sb.take_runtime_api_listener().expect("listener");
    // Accept the script's connection from inside the sandbox's network namespace.
    let accept = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        listener.accept().map(|_| ()).is_ok()
    });
    let (out, exit) = run_to_exit(sb).await;
    println!("{out}");
    assert_eq!(exit.code, Some(0), "output: {out}");
    assert!(accept.join().unwrap());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for want in [
        "pid 2\n",
        "uid 993 993\n",
        "procs [1, 2]\n",
        "ifaces ['lo']\n",
        "task 30\n",
        "root 30\n",
        "tmp ok\n",
        "tmp_mb 64\n",
        "env a=b False\n",
        "fds ['0', '1', '2', '3']\n",
        "api connected\n",
        "dev ['fd', 'full', 'null', 'random', 'stderr', 'stdin', 'stdout', 'tty', 'urandom', 'zero']\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains(&format!("hostname {}", host.trim())), "{out}");
}

const HOG: &str = "x = []\nwhile True:\n    x.append(bytearray(16 * 1024 * 1024))\n";

async fn memory_hog_is_oom_killed() {
    let dir = tempfile::tempdir().unwrap();
    let sb = Sandbox::start(spec(dir.path(), "hog", HOG, 128))
        .await
        .unwrap();
    let (out, _) = (String::new(), ());
    let exit = tokio::time::timeout(Duration::from_secs(60), sb.wait_exit())
        .await
        .expect("hog was not killed");
    assert_eq!(exit.signal, Some(9), "{out} {exit:?}");
    assert!(sb.oom_killed());
    assert!(sb.memory_peak_bytes() > 100 << 20);
    sb.destroy().await;
}

async fn bad_exec_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), "noexec", "", 128);
    s.argv = vec!["/var/task/bootstrap".into()];
    let work = s.work_dir.clone();
    let err = Sandbox::start(s).await.err().expect("start must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("exec /var/task/bootstrap") && msg.contains("ENOENT"),
        "{msg}"
    );
    assert!(!work.exists(), "work dir left behind");
}

async fn freeze_thaw_and_destroy_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(dir.path(), "idle", "import time\ntime.sleep(60)\n", 128);
    let work = s.work_dir.clone();
    let cg = format!("/sys/fs/cgroup/pids/{}/{}", s.cgroup_parent, s.sandbox_id);
    let sb = Sandbox::start(s).await.unwrap();
    sb.freeze().unwrap();
    sb.thaw().unwrap();
    sb.freeze().unwrap();
    assert!(!sb.has_exited());
    sb.destroy().await;
    assert!(!work.exists());
    if Path::new("/sys/fs/cgroup/pids").exists() {
        assert!(!Path::new(&cg).exists(), "cgroup {cg} left behind");
    }
}

/// Orphans 20 processes, waits (bounded) for them to end, then waits for SIGTERM.
const ORPHANS_THEN_TERM: &str = r#"
import os, signal, subprocess, time
def procs():
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
for _ in range(20):
    subprocess.run(["/bin/sh", "-c", "/bin/true & exit 0"], check=True)
deadline = time.monotonic() + 10
while len(procs()) > 2 and time.monotonic() < deadline:
    time.sleep(0.01)
signal.signal(signal.SIGTERM, lambda *_: os._exit(42))
print("procs", procs(), flush=True)
time.sleep(60)
os._exit(7)
"#;

/// The host pid of the sandbox's pid 1 (the process whose innermost pid is 1).
fn host_pid_of_pid1(cgroup_procs: &str) -> Option<i32> {
    std::fs::read_to_string(cgroup_procs)
        .ok()?
        .lines()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .is_some_and(|ns| ns.split_whitespace().last() == Some("1"))
            })
        })?
        .parse()
        .ok()
}

/// Pid 1 is Lamina's minimal init: orphans are reaped (only pid 1 and the runtime are left), a
/// signal sent to pid 1 reaches the runtime, and the sandbox exits with the runtime's status.
async fn pid1_reaps_forwards_and_exits_as_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let s = spec(dir.path(), "pid1", ORPHANS_THEN_TERM, 128);
    let procs = format!(
        "/sys/fs/cgroup/pids/{}/{}/cgroup.procs",
        s.cgroup_parent, s.sandbox_id
    );
    let mut sb = Sandbox::start(s).await.unwrap();
    let mut out = sb.take_output().unwrap();
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !text.contains('\n') {
        let n = tokio::time::timeout(Duration::from_secs(30), out.read(&mut buf))
            .await
            .expect("no output from the sandbox")
            .unwrap();
        assert!(n > 0, "output ended: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(text, "procs [1, 2]\n", "orphans left behind");
    let pid1 = host_pid_of_pid1(&procs).expect("pid 1 of the sandbox");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid1),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(30), sb.wait_exit())
        .await
        .expect("the runtime did not end on SIGTERM");
    assert_eq!(exit.code, Some(42), "{exit:?}");
    sb.destroy().await;
}

fn main() {
    harness::enter("sandbox");
    let tests: Vec<Test> = vec![
        ("isolation_seen_from_inside", || {
            Box::pin(isolation_seen_from_inside())
        }),
        ("memory_hog_is_oom_killed", || {
            Box::pin(memory_hog_is_oom_killed())
        }),
        ("bad_exec_is_reported", || Box::pin(bad_exec_is_reported())),
        ("pid1_reaps_forwards_and_exits_as_the_runtime", || {
            Box::pin(pid1_reaps_forwards_and_exits_as_the_runtime())
        }),
        ("freeze_thaw_and_destroy_cleans_up", || {
            Box::pin(freeze_thaw_and_destroy_cleans_up())
        }),
    ];
    harness::run(tests, &["lamina-test/sandbox", "lamina-test"]);
}
