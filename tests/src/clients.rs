//! The official AWS Lambda runtime interface clients, installed by `tests/clients/install.sh` into
//! `LAMINA_CLIENTS` (default `/var/tmp/lamina-clients`), packaged unchanged into `provided`
//! function zips: `awslambdaric` (PyPI), `aws-lambda-ric@3.3.0` (npm) and a function built on the
//! `lambda_runtime` crate (`tests/clients/rust-fn`).
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};

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
    entries.push(Entry::text("index.js", index_js, 0o644));
    entries.push(Entry::text(
        "bootstrap",
        "#!/bin/sh\ncd \"$LAMBDA_TASK_ROOT\"\nexec /usr/bin/node node_modules/aws-lambda-ric/bin/index.mjs \"$_HANDLER\"\n",
        0o755,
    ));
    Ok(zip_entries(&entries))
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
