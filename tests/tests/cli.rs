//! fnctl driven as a user would: real processes, real sandboxes.
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use lamina_e2e::*;

/// Runs fnctl against `(endpoint, credentials file)`.
fn fnctl(target: &(String, std::path::PathBuf), args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("fnctl"))
        .args(args)
        .env("FNCTL_ENDPOINT", &target.0)
        .env("FNCTL_CREDENTIALS", &target.1)
        .output()
        .expect("run fnctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn code_dir(parent: &std::path::Path, source: &str) -> std::path::PathBuf {
    let dir = parent.join(unique("code"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.py"), source).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// `fnctl create NAME --runtime python3.11 --handler app.handler --code DIR EXTRA...`, which must succeed.
fn fnctl_create_python(
    target: &(String, std::path::PathBuf),
    name: &str,
    dir: &std::path::Path,
    extra: &[&str],
) {
    let dir = dir.to_str().unwrap();
    let mut args = vec![
        "create",
        name,
        "--runtime",
        "python3.11",
        "--handler",
        "app.handler",
        "--code",
        dir,
    ];
    args.extend_from_slice(extra);
    let (code, out, err) = fnctl(target, &args);
    assert_eq!(code, 0, "fnctl {args:?}: {out}{err}");
}

#[test]
fn fnctl_create_invoke_get_list_logs_delete() {
    require_root();
    let cluster = Cluster::start(1).unwrap();
    let ep = (cluster.endpoint.clone(), cluster.credentials_file.clone());
    let name = unique("cli");
    let dir = code_dir(
        cluster.dir.path(),
        "def handler(e, c):\n    print('hello from', c.function_name)\n    if e.get('fail'):\n        raise RuntimeError('asked to fail')\n    return {'echo': e}\n",
    );
    fnctl_create_python(
        &ep,
        &name,
        &dir,
        &["--memory", "512", "--timeout", "10", "--env", "K=a=b"],
    );

    let (code, out, err) = fnctl(&ep, &["invoke", &name, "--payload", r#"{"x":1}"#]);
    assert_eq!(code, 0, "{out}{err}\n{}", cluster.logs());
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["echo"]["x"], 1);

    let (code, out, _) = fnctl(
        &ep,
        &[
            "invoke",
            &name,
            "--payload",
            r#"{"x":2}"#,
            "--log-type",
            "tail",
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["StatusCode"], 200);
    assert_eq!(v["ExecutedVersion"], "$LATEST");
    assert_eq!(v["Payload"]["echo"]["x"], 2);
    assert!(v["LogTail"].as_str().unwrap().contains("hello from"), "{v}");

    // A function error exits 2 and still prints the error payload.
    let (code, out, _) = fnctl(&ep, &["invoke", &name, "--payload", r#"{"fail":true}"#]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("asked to fail"), "{out}");

    // Bad local input and API errors exit 1 with a message.
    let (code, _, err) = fnctl(&ep, &["invoke", &name, "--payload", "{not json"]);
    assert_eq!(code, 1);
    assert!(err.contains("--payload"), "{err}");
    let (code, _, err) = fnctl(&ep, &["invoke", "nope-not-here"]);
    assert_eq!(code, 1);
    assert!(err.contains("nope-not-here"), "{err}");
    let (code, _, err) = fnctl(&ep, &["update-config", &name, "--memory", "64"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("memory must be 128..10240 MB, got 64"),
        "{err}"
    );

    let (code, out, _) = fnctl(&ep, &["get", &name, "-o", "json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["FunctionName"], name.as_str());
    assert_eq!(v["MemorySize"], 512);
    assert_eq!(v["Environment"]["Variables"]["K"], "a=b");
    let (code, out, _) = fnctl(&ep, &["get", &name, "-o", "yaml"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("FunctionName: {name}")), "{out}");

    let (code, out, _) = fnctl(&ep, &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&name), "{out}");
    let (code, out, _) = fnctl(&ep, &["workers", "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&cluster.worker_ids[0]), "{out}");

    let (code, out, _) = fnctl(&ep, &["logs", &name]);
    assert_eq!(code, 0);
    assert!(
        out.contains("hello from") && out.contains("REPORT RequestId:"),
        "{out}"
    );

    std::fs::write(dir.join("app.py"), "def handler(e, c):\n    return 'v2'\n").unwrap();
    let (code, _, err) = fnctl(
        &ep,
        &["update-code", &name, "--code", dir.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = fnctl(&ep, &["invoke", &name]);
    assert_eq!(out.trim(), "\"v2\"");

    let (code, _, err) = fnctl(&ep, &["delete", &name]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = fnctl(&ep, &["get", &name]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn fnctl_up_runs_a_single_node_cluster() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut up = Command::new(bin("fnctl"))
        .args(["up", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--rest-listen", "127.0.0.1:0"])
        .args(["--http-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = up.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(ep) = line.strip_prefix("lamina is up: endpoint ") {
                let _ = tx.send(ep.trim().to_string());
            }
        }
    });
    let ep = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("fnctl up never became ready");
    // The admin key the controller created at its first start.
    let ep = (
        ep,
        dir.path().join("controller/auth/admin-credentials.json"),
    );
    let name = unique("up");
    let code = code_dir(
        dir.path(),
        "def handler(e, c):\n    return 'up and running'\n",
    );
    let (rc, out, err) = fnctl(
        &ep,
        &[
            "create",
            &name,
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--code",
            code.to_str().unwrap(),
        ],
    );
    assert_eq!(rc, 0, "{out}{err}");
    let (rc, out, err) = fnctl(&ep, &["invoke", &name]);
    assert_eq!(rc, 0, "{err}");
    assert_eq!(out.trim(), "\"up and running\"");
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(up.id() as i32, libc::SIGTERM);
    }
    let status = up.wait().unwrap();
    assert_eq!(status.code(), Some(0), "fnctl up exits cleanly on SIGTERM");
}

#[test]
fn fnctl_logs_follow_streams_new_invocations() {
    require_root();
    let cluster = Cluster::start(1).unwrap();
    let name = unique("follow");
    run(async {
        let c = cluster.client().await?;
        create_python(
            &c,
            &name,
            "def handler(e, c):\n    print('line', e.get('n'))\n    return 1\n",
        )
        .await?;
        invoke(&c, &name, r#"{"n": 1}"#).await?;
        Ok(())
    });
    let mut follow = Command::new(bin("fnctl"))
        .args(["logs", &name, "--follow"])
        .envs(cluster.fnctl_env())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    };
    // What was logged before --follow started is printed first, then new invocations as they come.
    assert!(wait_for("line 1"), "existing log not printed");
    run(async {
        let c = cluster.client().await?;
        invoke(&c, &name, r#"{"n": 2}"#).await?;
        Ok(())
    });
    assert!(wait_for("line 2"), "new invocation's log not followed");
    let _ = follow.kill();
    let _ = follow.wait();
}

/// Runs fnctl on a pseudo-terminal (util-linux `script`), as an operator would: what it prints to
/// stdout and stderr, as the terminal got it.
fn fnctl_on_terminal(target: &(String, std::path::PathBuf), args: &[&str]) -> (i32, String) {
    let mut line = bin("fnctl").display().to_string();
    for a in args {
        line.push_str(&format!(" '{a}'"));
    }
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("FNCTL_ENDPOINT", &target.0)
        .env("FNCTL_CREDENTIALS", &target.1)
        .stdin(Stdio::null())
        .output()
        .expect("run fnctl under script(1)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A function's log lines, log tail and response reach the operator's terminal with their control
/// characters shown, not obeyed (OSC 52 clipboard writes, title changes, a `\r` that hides a fake
/// REPORT line over the real one); piped output stays byte-exact, and every answer ends its line.
#[test]
fn fnctl_shows_a_functions_terminal_controls_escaped() {
    require_root();
    let cluster = Cluster::start(1).unwrap();
    let ep = (cluster.endpoint.clone(), cluster.credentials_file.clone());
    let name = unique("tty");
    let dir = code_dir(
        cluster.dir.path(),
        "def handler(e, c):\n    print('clip \\x1b]52;c;cHduZWQ=\\x07 title \\x1b]0;owned\\x07')\n    print('\\rREPORT RequestId: fake')\n    return 'answer \\x1b[2J'\n",
    );
    fnctl_create_python(&ep, &name, &dir, &[]);

    // Piped: byte-exact payload (JSON escapes the ESC itself), one line.
    let (code, out, err) = fnctl(&ep, &["invoke", &name]);
    assert_eq!(code, 0, "{out}{err}\n{}", cluster.logs());
    assert_eq!(out, "\"answer \\u001b[2J\"\n");
    let (code, out, _) = fnctl(&ep, &["logs", &name]);
    assert_eq!(code, 0);
    assert!(
        out.contains("\x1b]52;c;cHduZWQ=\x07"),
        "piped logs are exact: {out:?}"
    );

    for args in [
        vec!["logs", name.as_str()],
        vec!["invoke", name.as_str(), "--log-type", "tail"],
    ] {
        let (code, shown) = fnctl_on_terminal(&ep, &args);
        assert_eq!(code, 0, "{args:?}: {shown:?}");
        assert!(
            !shown.contains('\x1b') && !shown.contains('\x07'),
            "{args:?}: {shown:?}"
        );
        assert!(
            !shown.contains("\rREPORT RequestId: fake"),
            "{args:?}: {shown:?}"
        );
        assert!(
            shown.contains("\\x1b]52;c;cHduZWQ=\\x07"),
            "{args:?}: {shown:?}"
        );
        assert!(
            shown.contains("\\rREPORT RequestId: fake"),
            "{args:?}: {shown:?}"
        );
    }
}
