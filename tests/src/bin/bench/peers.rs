//! The peers, run on the same handler in the same run: bare `python3.11`, `bwrap` and `runc`.
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub const HANDLER: &str = "def handler(event, context):\n    return {'ok': True}\n";
const CALL: &str = "import json, app; json.dumps(app.handler({}, None))";

fn timed(cmd: &mut Command, what: &str) -> Result<Duration> {
    let t = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {what}"))?;
    let d = t.elapsed();
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(d)
}

/// Bare python3.11 in a fresh process: start, import the handler, call it once.
pub fn bare(dir: &Path, runs: usize) -> Result<Vec<Duration>> {
    (0..runs)
        .map(|_| {
            timed(
                Command::new("/usr/bin/python3.11")
                    .args(["-c", CALL])
                    .current_dir(dir),
                "bare python3.11",
            )
        })
        .collect()
}

/// The per-call time of the handler in a warm loop (what a warm invoke costs without a platform).
pub fn handler_call(dir: &Path) -> Result<Duration> {
    let out = Command::new("/usr/bin/python3.11")
        .args(["-c", "import json, time, app\nn=20000\nt=time.perf_counter()\nfor _ in range(n): json.dumps(app.handler(json.loads('{}'), None))\nprint((time.perf_counter()-t)/n)"])
        .current_dir(dir)
        .output()?;
    let per_call: f64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    Ok(Duration::from_secs_f64(per_call))
}

/// bubblewrap with every namespace, /usr read-only and the code at /var/task.
pub fn bwrap(dir: &Path, runs: usize) -> Result<Vec<Duration>> {
    let task = dir.to_str().context("code dir is not UTF-8")?;
    (0..runs)
        .map(|_| {
            timed(
                Command::new("bwrap").args([
                    "--unshare-all",
                    "--die-with-parent",
                    "--ro-bind",
                    "/usr",
                    "/usr",
                    "--symlink",
                    "usr/lib",
                    "/lib",
                    "--symlink",
                    "usr/lib64",
                    "/lib64",
                    "--symlink",
                    "usr/bin",
                    "/bin",
                    "--proc",
                    "/proc",
                    "--dev",
                    "/dev",
                    "--tmpfs",
                    "/tmp",
                    "--ro-bind",
                    task,
                    "/var/task",
                    "--chdir",
                    "/var/task",
                    "/usr/bin/python3.11",
                    "-c",
                    CALL,
                ]),
                "bwrap",
            )
        })
        .collect()
}

/// An OCI bundle whose rootfs holds only mount points: /usr and the code are bind-mounted read-only.
fn runc_bundle(code: &Path, bundle: &Path) -> Result<()> {
    let rootfs = bundle.join("rootfs");
    for d in ["usr", "var/task", "proc", "dev", "tmp"] {
        std::fs::create_dir_all(rootfs.join(d))?;
    }
    for (link, target) in [
        ("bin", "usr/bin"),
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
    ] {
        let p = rootfs.join(link);
        if !p.exists() {
            std::os::unix::fs::symlink(target, &p)?;
        }
    }
    let st = Command::new("runc")
        .arg("spec")
        .current_dir(bundle)
        .status()
        .context("run `runc spec` (install runc: deploy/install-deps.sh)")?;
    if !st.success() {
        bail!("runc spec failed: {st}");
    }
    let path = bundle.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    cfg["process"]["terminal"] = false.into();
    cfg["process"]["args"] = serde_json::json!(["/usr/bin/python3.11", "-c", CALL]);
    cfg["process"]["cwd"] = "/var/task".into();
    cfg["root"]["readonly"] = true.into();
    let mounts = cfg["mounts"]
        .as_array_mut()
        .context("runc spec has mounts")?;
    mounts.push(serde_json::json!({"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro"]}));
    mounts.push(serde_json::json!({"destination": "/var/task", "type": "bind", "source": code, "options": ["rbind", "ro"]}));
    mounts.push(serde_json::json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}));
    std::fs::write(&path, serde_json::to_vec_pretty(&cfg)?)?;
    Ok(())
}

/// `runc run` of the same handler, a new container each time.
pub fn runc(code: &Path, work: &Path, runs: usize) -> Result<Vec<Duration>> {
    let bundle = work.join("runc-bundle");
    std::fs::create_dir_all(&bundle)?;
    runc_bundle(code, &bundle)?;
    let root = work.join("runc-state");
    (0..runs)
        .map(|i| {
            let id = format!("lamina-bench-{}-{i}", std::process::id());
            timed(
                Command::new("runc")
                    .arg("--root")
                    .arg(&root)
                    .args(["run", "--bundle"])
                    .arg(&bundle)
                    .arg(&id),
                "runc run",
            )
        })
        .collect()
}
