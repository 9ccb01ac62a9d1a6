//! The official AWS Lambda runtime interface clients, installed by `tests/clients/install.sh` into
//! `LAMINA_CLIENTS` (default `/var/tmp/lamina-clients`), packaged unchanged into `provided`
//! function zips and into container images (the host's runtime and libraries, then the code under
//! `/var/task`): `awslambdaric` (PyPI), `aws-lambda-ric@3.3.0` (npm) and a function built on the
//! `lambda_runtime` crate (`tests/clients/rust-fn`).
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

use crate::images::{self, Image};

/// Where `tests/clients/install.sh` put the clients.
pub fn clients_dir() -> PathBuf {
    std::env::var_os("LAMINA_CLIENTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/lamina-clients"))
}

/// `clients_dir()/rel`, which must exist (else: run the install script).
fn installed(rel: &str) -> Result<PathBuf> {
    let p = clients_dir().join(rel);
    ensure!(
        p.exists(),
        "{} is missing: run tests/clients/install.sh (deploy/test.sh does) to install the official \
         runtime clients from their registries",
        p.display()
    );
    Ok(p)
}

/// One file of a zip being built: path in the zip, content, unix mode.
pub struct Entry {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: u32,
}

impl Entry {
    pub fn text(path: &str, text: &str, mode: u32) -> Entry {
        Entry {
            path: path.to_string(),
            data: text.as_bytes().to_vec(),
            mode,
        }
    }
}

/// Every regular file under `dir` (recursively, symlinks followed), placed under `prefix` in the zip
/// with its mode.
pub fn tree_entries(dir: &Path, prefix: &str) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), prefix.trim_end_matches('/').to_string())];
    while let Some((d, p)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .with_context(|| format!("read {}", d.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let zpath = if p.is_empty() {
                name.clone()
            } else {
                format!("{p}/{name}")
            };
            let meta = std::fs::metadata(e.path())?;
            if meta.is_dir() {
                if name != "__pycache__" {
                    stack.push((e.path(), zpath));
                }
            } else if meta.is_file() {
                out.push(Entry {
                    path: zpath,
                    data: std::fs::read(e.path())
                        .with_context(|| format!("read {}", e.path().display()))?,
                    mode: meta.permissions().mode() & 0o777,
                });
            }
        }
    }
    Ok(out)
}

/// A zip of `entries`.
pub fn zip_entries(entries: &[Entry]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zw = zip::ZipWriter::new(&mut buf);
        for e in entries {
            let opts = zip::write::SimpleFileOptions::default().unix_permissions(e.mode);
            zw.start_file(e.path.as_str(), opts).expect("zip entry");
            zw.write_all(&e.data).expect("zip write");
        }
        zw.finish().expect("zip finish");
    }
    buf.into_inner()
}

/// A `provided` function zip running `awslambdaric` unchanged: the package vendored at the root (as
/// `pip install --target` leaves it), `app.py` and a `bootstrap` running
/// `python3 -m awslambdaric app.handler` in the code directory.
pub fn python_client_zip(app_py: &str) -> Result<Vec<u8>> {
    let mut entries = tree_entries(&installed("python")?, "")?;
    entries.push(Entry::text("app.py", app_py, 0o644));
    entries.push(Entry::text(
        "bootstrap",
        "#!/bin/sh\ncd \"$LAMBDA_TASK_ROOT\"\nexec /usr/bin/python3.11 -m awslambdaric \"$_HANDLER\"\n",
        0o755,
    ));
    Ok(zip_entries(&entries))
}

/// A `provided` function zip running `aws-lambda-ric` unchanged: the package (its `bin`, `dist` with
/// the native addon, `package.json`) under `node_modules/`, `index.js` and a `bootstrap` running
/// `node node_modules/aws-lambda-ric/bin/index.mjs $_HANDLER` in the code directory.
pub fn node_client_zip(index_js: &str) -> Result<Vec<u8>> {
    let mut entries = node_package_entries()?;
    entries.push(Entry::text("index.js", index_js, 0o644));
    entries.push(Entry::text(
        "bootstrap",
        "#!/bin/sh\ncd \"$LAMBDA_TASK_ROOT\"\nexec /usr/bin/node node_modules/aws-lambda-ric/bin/index.mjs \"$_HANDLER\"\n",
        0o755,
    ));
    Ok(zip_entries(&entries))
}

/// The installed `aws-lambda-ric` package (its `bin`, `dist` with the native addon,
/// `package.json`) under `node_modules/aws-lambda-ric/`.
fn node_package_entries() -> Result<Vec<Entry>> {
    let pkg = installed("node/node_modules/aws-lambda-ric/dist/rapid-client.node")?;
    let pkg = pkg
        .parent()
        .and_then(Path::parent)
        .expect("dist has a package directory");
    let prefix = "node_modules/aws-lambda-ric";
    let mut entries = Vec::new();
    for sub in ["bin", "dist"] {
        entries.extend(tree_entries(&pkg.join(sub), &format!("{prefix}/{sub}"))?);
    }
    entries.push(Entry {
        path: format!("{prefix}/package.json"),
        data: std::fs::read(pkg.join("package.json"))?,
        mode: 0o644,
    });
    Ok(entries)
}

/// A `provided` function zip whose `bootstrap` is the `lambda_runtime` function of
/// `tests/clients/rust-fn` (built by the install script).
pub fn rust_client_zip() -> Result<Vec<u8>> {
    let bin = installed("rust-target/release/bootstrap")?;
    Ok(zip_entries(&[Entry {
        path: "bootstrap".to_string(),
        data: std::fs::read(&bin).with_context(|| format!("read {}", bin.display()))?,
        mode: 0o755,
    }]))
}

/// A layer tar with `entries` under `/var/task` (directories first), where the AWS base images
/// keep the function code.
fn task_layer(entries: &[Entry]) -> Vec<u8> {
    let mut dirs = BTreeSet::from(["var".to_string(), "var/task".to_string()]);
    for e in entries {
        let mut up = Path::new(&e.path).parent();
        while let Some(d) = up.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(format!("var/task/{}", d.display()));
            up = d.parent();
        }
    }
    let mut tar: Vec<images::Entry> = dirs.into_iter().map(images::Entry::Dir).collect();
    tar.extend(
        entries
            .iter()
            .map(|e| images::Entry::File(format!("var/task/{}", e.path), e.data.clone(), e.mode)),
    );
    images::layer_tar(&tar)
}

/// An image of two layers (the runtime from the host, then the code under `/var/task`) started by
/// `entrypoint` + `cmd` in `/var/task`.
fn client_image(
    runtime: Vec<images::Entry>,
    code: &[Entry],
    entrypoint: &[&str],
    cmd: &[&str],
) -> Image {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    Image {
        layers: vec![images::layer_tar(&runtime), task_layer(code)],
        entrypoint: strings(entrypoint),
        cmd: strings(cmd),
        working_dir: "/var/task".into(),
        env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
    }
}

/// A container image running `awslambdaric` unchanged, as the AWS Python base images do:
/// Entrypoint `python3.11 -m awslambdaric`, Cmd `app.handler`. Layer 1 is the host's python3.11
/// with the standard-library modules and shared libraries the client loads; layer 2 the vendored
/// package and `app.py` in `/var/task`.
pub fn python_client_image(app_py: &str) -> Result<Image> {
    let pkg = installed("python")?;
    let runtime = images::python_files_importing(
        &[],
        "import runpy, awslambdaric.bootstrap, awslambdaric.lambda_runtime_client, \
         awslambdaric.lambda_literals, awslambdaric.lambda_runtime_hooks_runner, \
         awslambdaric.lambda_runtime_marshaller, http.client, concurrent.futures, traceback, \
         decimal, logging, time, json",
        Some(&pkg),
    )?;
    let mut code = tree_entries(&pkg, "")?;
    code.push(Entry::text("app.py", app_py, 0o644));
    Ok(client_image(
        runtime,
        &code,
        &["/usr/bin/python3.11", "-m", "awslambdaric"],
        &["app.handler"],
    ))
}

/// A container image running `aws-lambda-ric` unchanged: the host's `/usr/bin/node` with its
/// libraries (and the native addon's), the package under `/var/task/node_modules` and `index.js`;
/// Entrypoint `node .../aws-lambda-ric/bin/index.mjs`, Cmd `index.handler`.
pub fn node_client_image(index_js: &str) -> Result<Image> {
    let addon = installed("node/node_modules/aws-lambda-ric/dist/rapid-client.node")?;
    let mut paths = images::shared_libraries(&BTreeSet::from([addon]))?;
    paths.insert(PathBuf::from("/usr/bin/node"));
    let runtime = images::host_files(paths)?;
    let mut code = node_package_entries()?;
    code.push(Entry::text("index.js", index_js, 0o644));
    Ok(client_image(
        runtime,
        &code,
        &[
            "/usr/bin/node",
            "/var/task/node_modules/aws-lambda-ric/bin/index.mjs",
        ],
        &["index.handler"],
    ))
}

/// A container image whose Entrypoint is the `lambda_runtime` function of `tests/clients/rust-fn`
/// (`/var/task/bootstrap`), with the shared libraries it loads.
pub fn rust_client_image() -> Result<Image> {
    let bin = installed("rust-target/release/bootstrap")?;
    let runtime = images::host_files(images::shared_libraries(&BTreeSet::from([bin.clone()]))?)?;
    let code = [Entry {
        path: "bootstrap".to_string(),
        data: std::fs::read(&bin).with_context(|| format!("read {}", bin.display()))?,
        mode: 0o755,
    }];
    Ok(client_image(runtime, &code, &["/var/task/bootstrap"], &[]))
}
