//! Real sandboxes, as root: isolation seen from inside, the Runtime API socket inside the sandbox's
//! network namespace, the memory limit, cleanup. This binary has its own `main` (harness = false)
//! because a sandbox's init process is a re-exec of the current executable with `__sandbox-init`.
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use lamina_proto::domain::Runtime;
use lamina_worker::sandbox::{Sandbox, SandboxSpec};
use tokio::io::AsyncReadExt;

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
        "pid 1\n",
        "uid 993 993\n",
        "procs [1]\n",
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

type TestFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("__sandbox-init") {
        lamina_worker::sandbox::init::main();
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "sandbox tests must run as root"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tests: Vec<(&str, TestFuture)> = vec![
        (
            "isolation_seen_from_inside",
            Box::pin(isolation_seen_from_inside()),
        ),
        (
            "memory_hog_is_oom_killed",
            Box::pin(memory_hog_is_oom_killed()),
        ),
        ("bad_exec_is_reported", Box::pin(bad_exec_is_reported())),
        (
            "freeze_thaw_and_destroy_cleans_up",
            Box::pin(freeze_thaw_and_destroy_cleans_up()),
        ),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, fut) in tests {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(fut)));
        match result {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
        std::io::stdout().flush().unwrap();
    }
    lamina_worker::sandbox::remove_cgroup_parent("lamina-test/sandbox");
    lamina_worker::sandbox::remove_cgroup_parent("lamina-test");
    println!("{passed} passed, {failed} failed");
    std::process::exit(i32::from(failed > 0));
}
