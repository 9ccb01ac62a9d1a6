//! Drives the real `fnctl` binary. `fnctl up` is run from a copy of the binary placed in a temporary
//! directory next to small shell scripts standing in for `lamina-controller` and `lamina-worker`
//! (they print the ready lines the real ones print), so the supervision logic is tested without the
//! real cluster; the e2e tests in `tests/` run it with the real binaries.
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn fnctl() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fnctl"));
    cmd.env_remove("FNCTL_ENDPOINT");
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("fnctl runs")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn transport_error_exits_1_with_error_prefix() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let out = run(fnctl().args(["--endpoint", &endpoint, "get", "f"]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: cannot connect"), "{stderr}");
    assert!(stderr.contains(&endpoint), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn endpoint_comes_from_the_environment() {
    let endpoint = format!("127.0.0.1:{}", free_port());
    let out = run(fnctl().env("FNCTL_ENDPOINT", &endpoint).arg("list"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("http://{endpoint}")), "{stderr}");
}

#[test]
fn invalid_payload_is_refused_locally() {
    // Nothing listens on the endpoint: the message must be about --payload, not the connection.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let out = run(fnctl().args(["--endpoint", &endpoint, "invoke", "f", "--payload", "{oops"]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: --payload is not valid JSON"),
        "{stderr}"
    );
}

#[test]
fn non_zip_code_is_refused_locally() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.py");
    std::fs::write(&file, "x = 1\n").unwrap();
    let out = run(fnctl().args([
        "--endpoint",
        &format!("http://127.0.0.1:{}", free_port()),
        "create",
        "f",
        "--runtime",
        "python3.11",
        "--handler",
        "app.h",
        "--code",
        file.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--code") && stderr.contains("not a zip"),
        "{stderr}"
    );
}

#[test]
fn usage_error_exits_1_and_help_exits_0() {
    let out = run(fnctl().args(["create", "f", "--env", "NOEQUALS"]));
    assert_eq!(out.status.code(), Some(1));
    let out = run(fnctl().arg("--help"));
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("invoke"));
}

#[test]
fn completion_scripts() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run(fnctl().args(["completion", shell]));
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("fnctl") && script.contains("update-config"),
            "{shell}"
        );
    }
}

// ------------------------------------------------------------------------------------- fnctl up

const FAKE_CONTROLLER: &str = r#"#!/bin/sh
here=$(dirname "$0")
echo $$ > "$here/controller.pid"
echo "$@" > "$here/controller.args"
echo "controller noise before ready"
echo "lamina-controller http listening on 127.0.0.1:9690"
echo "lamina-controller rest listening on 127.0.0.1:9680"
echo "lamina-controller listening on 127.0.0.1:$FAKE_PORT"
exec sleep 1000
"#;

const FAKE_WORKER: &str = r#"#!/bin/sh
here=$(dirname "$0")
echo $$ > "$here/worker.pid"
echo "$@" > "$here/worker.args"
echo "lamina-worker w-test listening on 127.0.0.1:45678"
echo "worker says hello after ready"
touch "$here/worker.after-ready"
if [ -n "$FAKE_WORKER_DIES" ]; then sleep 1; exit 3; fi
exec sleep 1000
"#;

/// A directory holding a copy of fnctl and the given stand-in scripts.
fn bin_dir(scripts: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_fnctl"), dir.path().join("fnctl")).unwrap();
    for (name, text) in scripts {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

struct Up {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
}

fn start_up(bin: &Path, data: &Path, port: u16, envs: &[(&str, &str)]) -> Up {
    let mut cmd = Command::new(bin.join("fnctl"));
    cmd.args(["up", "--data-dir", data.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("PATH", "/usr/bin:/bin")
        .env("FAKE_PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    // ETXTBSY: another test thread may be forking while it still holds a script it just wrote open
    // for writing (until its child execs); that clears within moments.
    let mut tries = 0;
    let mut child = loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            r => break r.unwrap(),
        }
    };
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    Up {
        child,
        lines,
        stderr,
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fnctl up did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_pid(path: PathBuf) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Gone or a zombie waiting for a reaper that is not fnctl.
fn process_is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn wait_gone(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if process_is_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn up_starts_both_and_stops_them_on_sigterm() {
    let bin = bin_dir(&[
        ("lamina-controller", FAKE_CONTROLLER),
        ("lamina-worker", FAKE_WORKER),
    ]);
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("cluster");
    let port = free_port();
    let mut up = start_up(bin.path(), &data_dir, port, &[]);
    let line = up
        .lines
        .recv_timeout(Duration::from_secs(20))
        .expect("fnctl up prints its ready line");
    assert_eq!(
        line,
        format!("lamina is up: endpoint https://127.0.0.1:{port}")
    );
    let rest = up.lines.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        rest.starts_with("lambda rest api: https://127.0.0.1:9680 ")
            && rest.contains(&format!(
                "verify=\"{}\"",
                data_dir.join("tls/ca.pem").display()
            )),
        "{rest}"
    );
    let http = up.lines.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        http.starts_with("http gateway: https://127.0.0.1:9690 ")
            && http.contains("curl https://127.0.0.1:9690/<url-id>/"),
        "{http}"
    );
    let tls = up.lines.recv_timeout(Duration::from_secs(5)).unwrap();
    let ca = data_dir.join("tls/ca.pem");
    assert!(
        tls.starts_with("tls: every endpoint is https; CA certificate ")
            && tls.contains(&ca.display().to_string()),
        "{tls}"
    );
    // The CA and the certificates exist, the keys for root only.
    use std::os::unix::fs::PermissionsExt;
    for key in ["ca-key.pem", "controller-key.pem", "worker-key.pem"] {
        let mode = std::fs::metadata(data_dir.join("tls").join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    assert!(std::fs::read_to_string(&ca)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));

    let controller_args = std::fs::read_to_string(bin.path().join("controller.args")).unwrap();
    assert_eq!(
        controller_args.trim(),
        format!(
            "--listen 127.0.0.1:{port} --rest-listen 127.0.0.1:9680 --http-listen 127.0.0.1:9690 \
             --data-dir {} --tls-cert {tls}/controller.pem --tls-key {tls}/controller-key.pem \
             --tls-ca {tls}/ca.pem",
            data_dir.join("controller").display(),
            tls = data_dir.join("tls").display()
        )
    );
    let worker_args = std::fs::read_to_string(bin.path().join("worker.args")).unwrap();
    assert_eq!(
        worker_args.trim(),
        format!(
            "--controller https://127.0.0.1:{port} --listen 127.0.0.1:0 --state-dir {} \
             --cluster-token-file {} --prewarm 2 --controller-rest https://127.0.0.1:9680 \
             --tls-cert {tls}/worker.pem --tls-key {tls}/worker-key.pem --tls-ca {tls}/ca.pem",
            data_dir.join("worker").display(),
            data_dir.join("controller/auth/cluster-token").display(),
            tls = data_dir.join("tls").display()
        )
    );
    assert!(data_dir.join("controller").is_dir() && data_dir.join("worker").is_dir());
    let controller = read_pid(bin.path().join("controller.pid"));
    let worker = read_pid(bin.path().join("worker.pid"));
    assert!(!process_is_gone(controller) && !process_is_gone(worker));
    // The worker's line after its ready line is written (fnctl may not have passed it on yet).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !bin.path().join("worker.after-ready").exists() {
        assert!(
            Instant::now() < deadline,
            "the stand-in worker did not go on"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    kill(Pid::from_raw(up.child.id() as i32), Signal::SIGTERM).unwrap();
    let status = wait_exit(&mut up.child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    assert!(process_is_gone(controller), "controller still running");
    assert!(process_is_gone(worker), "worker still running");
    let stderr = up.stderr.join().unwrap();
    assert!(stderr.contains("controller noise before ready"), "{stderr}");
    assert!(stderr.contains("worker says hello after ready"), "{stderr}");
    assert!(up.lines.try_recv().is_err(), "nothing else on stdout");
}

#[test]
fn up_exits_1_naming_the_child_that_died() {
    let bin = bin_dir(&[
        ("lamina-controller", FAKE_CONTROLLER),
        ("lamina-worker", FAKE_WORKER),
    ]);
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut up = start_up(bin.path(), data.path(), port, &[("FAKE_WORKER_DIES", "1")]);
    let line = up.lines.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(line.starts_with("lamina is up"), "{line}");
    let status = wait_exit(&mut up.child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(1));
    let stderr = up.stderr.join().unwrap();
    assert!(
        stderr.contains("error: lamina-worker exited on its own (exit status: 3)"),
        "{stderr}"
    );
    assert!(process_is_gone(read_pid(bin.path().join("controller.pid"))));
}

#[test]
fn up_children_get_sigterm_when_fnctl_is_killed() {
    let bin = bin_dir(&[
        ("lamina-controller", FAKE_CONTROLLER),
        ("lamina-worker", FAKE_WORKER),
    ]);
    let data = tempfile::tempdir().unwrap();
    let mut up = start_up(bin.path(), data.path(), free_port(), &[]);
    up.lines.recv_timeout(Duration::from_secs(20)).unwrap();
    let controller = read_pid(bin.path().join("controller.pid"));
    let worker = read_pid(bin.path().join("worker.pid"));
    up.child.kill().unwrap(); // SIGKILL: fnctl cannot clean up, PR_SET_PDEATHSIG must
    up.child.wait().unwrap();
    assert!(
        wait_gone(controller, Duration::from_secs(10)),
        "controller survived fnctl"
    );
    assert!(
        wait_gone(worker, Duration::from_secs(10)),
        "worker survived fnctl"
    );
}

#[test]
fn up_names_a_missing_binary_and_where_it_looked() {
    let bin = bin_dir(&[("lamina-controller", FAKE_CONTROLLER)]);
    let data = tempfile::tempdir().unwrap();
    let mut up = start_up(bin.path(), data.path(), free_port(), &[]);
    let status = wait_exit(&mut up.child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(1));
    let stderr = up.stderr.join().unwrap();
    assert!(
        stderr.contains("error: cannot find lamina-worker"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&bin.path().display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("PATH (/usr/bin:/bin)"), "{stderr}");
    assert!(
        !bin.path().join("controller.pid").exists(),
        "nothing is started when a binary is missing"
    );
}

#[test]
fn up_reports_a_data_dir_it_cannot_create() {
    let bin = bin_dir(&[
        ("lamina-controller", FAKE_CONTROLLER),
        ("lamina-worker", FAKE_WORKER),
    ]);
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let mut up = start_up(bin.path(), &file, free_port(), &[]);
    let status = wait_exit(&mut up.child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(1));
    let stderr = up.stderr.join().unwrap();
    assert!(
        stderr.contains("error: cannot create data directory"),
        "{stderr}"
    );
    assert!(stderr.contains("--data-dir"), "{stderr}");
}

#[test]
fn up_reports_a_child_that_exits_before_ready() {
    let bin = bin_dir(&[
        (
            "lamina-controller",
            "#!/bin/sh\necho 'cannot open database' >&2\nexit 7\n",
        ),
        ("lamina-worker", FAKE_WORKER),
    ]);
    let data = tempfile::tempdir().unwrap();
    let mut up = start_up(bin.path(), data.path(), free_port(), &[]);
    let status = wait_exit(&mut up.child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(1));
    let stderr = up.stderr.join().unwrap();
    assert!(stderr.contains("cannot open database"), "{stderr}");
    assert!(
        stderr.contains("error: lamina-controller exited before it was ready (exit status: 7)"),
        "{stderr}"
    );
}

#[test]
fn up_stops_on_sigint_with_exit_0() {
    let bin = bin_dir(&[
        ("lamina-controller", FAKE_CONTROLLER),
        ("lamina-worker", FAKE_WORKER),
    ]);
    let data = tempfile::tempdir().unwrap();
    let mut up = start_up(bin.path(), data.path(), free_port(), &[]);
    up.lines.recv_timeout(Duration::from_secs(20)).unwrap();
    let worker = read_pid(bin.path().join("worker.pid"));
    kill(Pid::from_raw(up.child.id() as i32), Signal::SIGINT).unwrap();
    assert_eq!(
        wait_exit(&mut up.child, Duration::from_secs(15)).code(),
        Some(0)
    );
    assert!(process_is_gone(worker));
    assert!(process_is_gone(read_pid(bin.path().join("controller.pid"))));
}
