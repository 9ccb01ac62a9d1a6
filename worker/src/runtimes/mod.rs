//! Lamina's own runtime bootstraps for the built-in runtimes, embedded in the binary.
//!
//! `bootstrap.py` (python3.11) and `bootstrap.js` (nodejs20.x) are stdlib-only Runtime API clients
//! that implement Lambda's handler conventions. The worker writes them once at start-up (`install`)
//! into a directory that each sandbox mounts read-only at `/var/runtime`. `provided` functions bring
//! their own `/var/task/bootstrap`.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lamina_proto::domain::Runtime;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests_node;
#[cfg(test)]
mod tests_python;

/// The Python 3.11 bootstrap (`/var/runtime/bootstrap.py`): imports and runs `LAMINA_RUNTIME_PY`.
pub const BOOTSTRAP_PY: &str = include_str!("bootstrap.py");
/// The Python 3.11 runtime (`/var/runtime/lamina_runtime.py`), compiled at install.
pub const LAMINA_RUNTIME_PY: &str = include_str!("lamina_runtime.py");
/// The Node.js 20 bootstrap (`/var/runtime/bootstrap.js`).
pub const BOOTSTRAP_JS: &str = include_str!("bootstrap.js");
/// The Python zygote (`sandbox::zygote`): forks pre-imported interpreters into new sandboxes.
pub const ZYGOTE_PY: &str = include_str!("zygote.py");

/// Where the bootstraps are mounted inside a sandbox (`LAMBDA_RUNTIME_DIR`).
pub const RUNTIME_DIR: &str = "/var/runtime";

/// Writes Lamina's bootstraps (bootstrap.py, lamina_runtime.py, bootstrap.js, zygote.py) into `dir`
/// (created, mode 0755; files 0644), then compiles the Python runtime (`compile_python_runtime`).
/// Files are replaced atomically (written aside, then renamed), so a running sandbox never sees a
/// half-written bootstrap. Errors name the path.
pub fn install(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir).map_err(|e| with_path(e, "create", dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(|e| with_path(e, "set mode 0755 on", dir))?;
    for (name, text) in [
        ("bootstrap.py", BOOTSTRAP_PY),
        ("lamina_runtime.py", LAMINA_RUNTIME_PY),
        ("bootstrap.js", BOOTSTRAP_JS),
        ("zygote.py", ZYGOTE_PY),
    ] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        fs::write(&tmp, text).map_err(|e| with_path(e, "write", &tmp))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))
            .map_err(|e| with_path(e, "set mode 0644 on", &tmp))?;
        fs::rename(&tmp, &path).map_err(|e| with_path(e, "rename into place", &path))?;
    }
    compile_python_runtime(dir);
    Ok(())
}

/// Compiles `lamina_runtime.py` into `__pycache__` with the sandboxes' `/usr/bin/python3.11`, so
/// each Python sandbox loads its bytecode instead of compiling ~700 lines: a few ms of every cold
/// start, and ~1.5 MB of heap that the parser leaves fragmented in every idle sandbox. The bytecode
/// names `/var/runtime/lamina_runtime.py` (no host path). Best effort: without it (no python3.11,
/// a failed compile) a sandbox compiles the source, as any Python program does.
fn compile_python_runtime(dir: &Path) {
    const PYTHON: &str = "/usr/bin/python3.11";
    const COMPILE: &str = "import py_compile, sys; \
        py_compile.compile(sys.argv[1], dfile='/var/runtime/lamina_runtime.py', doraise=True)";
    if !Path::new(PYTHON).exists() {
        return;
    }
    let source = dir.join("lamina_runtime.py");
    let out = std::process::Command::new(PYTHON)
        .args(["-I", "-c", COMPILE])
        .arg(&source)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output();
    let failure = match out {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "{}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(e.to_string()),
    };
    if let Some(failure) = failure {
        tracing::warn!(path = %source.display(), %failure, "python runtime not precompiled: each sandbox compiles it");
        return;
    }
    // Readable by every sandbox uid whatever the worker's umask.
    let cache = dir.join("__pycache__");
    let modes = fs::set_permissions(&cache, fs::Permissions::from_mode(0o755)).and_then(|()| {
        for entry in fs::read_dir(&cache)? {
            fs::set_permissions(entry?.path(), fs::Permissions::from_mode(0o644))?;
        }
        Ok(())
    });
    if let Err(e) = modes {
        tracing::warn!(path = %cache.display(), error = %e, "python runtime bytecode may be unreadable in sandboxes");
    }
}

fn with_path(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "cannot {what} runtime bootstrap path {}: {e}",
            path.display()
        ),
    )
}

/// The runtime process command inside the sandbox: python3.11 -> `["/usr/bin/python3.11",
/// "/var/runtime/bootstrap.py"]`, nodejs20.x -> `["/usr/bin/node", "/var/runtime/bootstrap.js"]`,
/// provided -> `["/var/task/bootstrap"]`.
pub fn command(runtime: Runtime) -> Vec<String> {
    let argv: &[&str] = match runtime {
        Runtime::Python311 => &["/usr/bin/python3.11", "/var/runtime/bootstrap.py"],
        Runtime::Nodejs20 => &["/usr/bin/node", "/var/runtime/bootstrap.js"],
        Runtime::Provided | Runtime::ProvidedAl2 | Runtime::ProvidedAl2023 => {
            &["/var/task/bootstrap"]
        }
    };
    argv.iter().map(|s| (*s).to_owned()).collect()
}

/// Runtime-specific environment (as in Lambda: layer paths under `/opt`), added by the manager to the
/// Lambda variables.
pub fn runtime_env(runtime: Runtime) -> Vec<(String, String)> {
    let vars: &[(&str, &str)] = match runtime {
        Runtime::Python311 => &[
            (
                "PYTHONPATH",
                "/opt/python/lib/python3.11/site-packages:/opt/python",
            ),
            // /var/task is read-only: do not try to write __pycache__ there on every cold start.
            ("PYTHONDONTWRITEBYTECODE", "1"),
            // Output reaches the log as it is written, also when the runtime is killed.
            ("PYTHONUNBUFFERED", "1"),
        ],
        Runtime::Nodejs20 => &[(
            "NODE_PATH",
            "/opt/nodejs/node20/node_modules:/opt/nodejs/node_modules:/var/runtime/node_modules:/var/runtime:/var/task",
        )],
        Runtime::Provided | Runtime::ProvidedAl2 | Runtime::ProvidedAl2023 => &[],
    };
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn install_writes_both_bootstraps_with_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("runtime");
        install(&dir).unwrap();
        // Idempotent: a second install replaces the files.
        install(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(
            fs::read_to_string(dir.join("bootstrap.py")).unwrap(),
            BOOTSTRAP_PY
        );
        assert_eq!(
            fs::read_to_string(dir.join("bootstrap.js")).unwrap(),
            BOOTSTRAP_JS
        );
        assert_eq!(mode(&dir.join("bootstrap.py")), 0o644);
        assert_eq!(mode(&dir.join("bootstrap.js")), 0o644);
        assert_eq!(
            fs::read_to_string(dir.join("zygote.py")).unwrap(),
            ZYGOTE_PY
        );
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            fs::read_to_string(dir.join("lamina_runtime.py")).unwrap(),
            LAMINA_RUNTIME_PY
        );
        // The Python runtime's bytecode, readable by sandboxes, named by its in-sandbox path.
        let pyc = dir.join("__pycache__/lamina_runtime.cpython-311.pyc");
        assert_eq!(mode(&pyc), 0o644);
        assert_eq!(mode(&dir.join("__pycache__")), 0o755);
        let code = fs::read(&pyc).unwrap();
        let named = b"/var/runtime/lamina_runtime.py";
        assert!(code.windows(named.len()).any(|w| w == named));
        assert!(!code
            .windows(dir.as_os_str().len())
            .any(|w| w == dir.as_os_str().as_encoded_bytes()));
        assert_eq!(
            names.len(),
            5,
            "four files and __pycache__, no temporary files left: {names:?}"
        );
    }

    #[test]
    fn install_error_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        let err = install(&file.join("sub")).unwrap_err();
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn commands_and_env_per_runtime() {
        assert_eq!(
            command(Runtime::Python311),
            ["/usr/bin/python3.11", "/var/runtime/bootstrap.py"]
        );
        assert_eq!(
            command(Runtime::Nodejs20),
            ["/usr/bin/node", "/var/runtime/bootstrap.js"]
        );
        assert_eq!(command(Runtime::Provided), ["/var/task/bootstrap"]);
        let py = runtime_env(Runtime::Python311);
        assert!(py
            .iter()
            .any(|(k, v)| k == "PYTHONPATH" && v.contains("/opt/python")));
        let node = runtime_env(Runtime::Nodejs20);
        assert!(node
            .iter()
            .any(|(k, v)| k == "NODE_PATH" && v.ends_with("/var/runtime:/var/task")));
        assert!(runtime_env(Runtime::Provided).is_empty());
    }
}
