//! Small container images built by the tests themselves (no registry, no docker daemon): layer
//! tars from [`Entry`]s, wrapped as an OCI image layout (a tar or a directory) or a `docker save`
//! archive. [`python_runtime_files`] gives a layer with `/usr/bin/python3.11`, the shared libraries
//! it loads and only the standard-library modules [`RUNTIME_PY`] imports, so an image is ~10 MB.
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};

/// One entry of a layer tar. Names are written raw (the tar crate's builder would refuse `..`).
#[derive(Debug, Clone)]
pub enum Entry {
    File(String, Vec<u8>, u32),
    Dir(String),
    Symlink(String, String),
    Char(String),
}

pub fn file(path: &str, data: &str, mode: u32) -> Entry {
    Entry::File(path.to_string(), data.as_bytes().to_vec(), mode)
}

/// A layer tar (uncompressed) of `entries`, in order.
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let (name, data, link): (&str, &[u8], Option<&str>) = match e {
            Entry::File(n, d, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                (n, d, None)
            }
            Entry::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (n, b"", None)
            }
            Entry::Symlink(n, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                (n, b"", Some(t))
            }
            Entry::Char(n) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                h.set_device_major(8).expect("device major");
                h.set_device_minor(0).expect("device minor");
                (n, b"", None)
            }
        };
        if let Some(t) = link {
            h.set_link_name(t).expect("link name");
        }
        h.set_size(data.len() as u64);
        if name.len() <= 100 {
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, data).expect("append entry");
        } else {
            // Long names go through the GNU long-name extension.
            b.append_data(&mut h, name, data)
                .expect("append long entry");
        }
    }
    b.into_inner().expect("finish layer")
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// An image: its layers (tars, applied in order) and its configuration.
#[derive(Debug, Clone)]
pub struct Image {
    pub layers: Vec<Vec<u8>>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub env: Vec<String>,
}

impl Image {
    /// The image configuration JSON (with `rootfs.diff_ids` of the layers).
    pub fn config(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": self.entrypoint,
                "Cmd": self.cmd,
                "WorkingDir": self.working_dir,
                "Env": self.env,
            },
            "rootfs": {
                "type": "layers",
                "diff_ids": self.layers.iter().map(|l| format!("sha256:{}", sha256_hex(l))).collect::<Vec<_>>(),
            },
            "history": [],
        }))
        .expect("config json")
    }

    /// The files of an OCI image layout: `(path, bytes)`.
    pub fn oci_files(&self) -> Vec<(String, Vec<u8>)> {
        self.oci_files_with(LayerCompression::None)
    }

    /// The files of an OCI image layout whose layer blobs are compressed as `compression` says
    /// (`rootfs.diff_ids` stay the digests of the uncompressed tars).
    pub fn oci_files_with(&self, compression: LayerCompression) -> Vec<(String, Vec<u8>)> {
        let config = self.config();
        let desc = |mt: &str, b: &[u8]| serde_json::json!({"mediaType": mt, "digest": format!("sha256:{}", sha256_hex(b)), "size": b.len()});
        let (layer_type, blobs): (&str, Vec<Vec<u8>>) = match compression {
            LayerCompression::None => (
                "application/vnd.oci.image.layer.v1.tar",
                self.layers.clone(),
            ),
            LayerCompression::Gzip => (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                self.layers.iter().map(|l| gzip(l)).collect(),
            ),
        };
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": desc("application/vnd.oci.image.config.v1+json", &config),
            "layers": blobs.iter().map(|l| desc(layer_type, l)).collect::<Vec<_>>(),
        }))
        .expect("manifest json");
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [desc("application/vnd.oci.image.manifest.v1+json", &manifest)],
        }))
        .expect("index json");
        let mut files = vec![
            (
                "oci-layout".to_string(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".to_string(), index),
            (format!("blobs/sha256/{}", sha256_hex(&manifest)), manifest),
            (format!("blobs/sha256/{}", sha256_hex(&config)), config),
        ];
        for l in blobs {
            files.push((format!("blobs/sha256/{}", sha256_hex(&l)), l));
        }
        files
    }

    /// The OCI image layout as a tar.
    pub fn oci_tar(&self) -> Vec<u8> {
        tar_of(&self.oci_files())
    }

    /// The OCI image layout as a tar, with gzip-compressed layers (for images near the API's
    /// request size limit).
    pub fn oci_tar_gzip(&self) -> Vec<u8> {
        tar_of(&self.oci_files_with(LayerCompression::Gzip))
    }

    /// The OCI image layout written as a directory.
    pub fn write_oci_dir(&self, dir: &Path) -> Result<()> {
        for (name, bytes) in self.oci_files() {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().expect("parent"))?;
            std::fs::write(&p, bytes)?;
        }
        Ok(())
    }

    /// A `docker save` archive (the classic layout: `manifest.json`, `<hex>.json`, `<id>/layer.tar`).
    pub fn docker_archive(&self) -> Vec<u8> {
        let config = self.config();
        let config_name = format!("{}.json", sha256_hex(&config));
        let layer_names: Vec<String> = (0..self.layers.len())
            .map(|i| format!("layer{i}/layer.tar"))
            .collect();
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name,
            "RepoTags": ["lamina-test:latest"],
            "Layers": layer_names,
        }]))
        .expect("manifest json");
        let mut files = vec![
            ("manifest.json".to_string(), manifest),
            (config_name, config),
        ];
        for (name, l) in layer_names.into_iter().zip(&self.layers) {
            files.push((name, l.clone()));
        }
        tar_of(&files)
    }
}

/// How the layer blobs of an OCI layout are stored.
#[derive(Debug, Clone, Copy)]
pub enum LayerCompression {
    None,
    Gzip,
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, b).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}

/// A tar of regular files.
pub fn tar_of(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, &data[..]).expect("append");
    }
    b.into_inner().expect("finish tar")
}

/// A Lambda runtime client in Python (socket + json only): answers every invocation with what
/// the process sees of its sandbox.
pub const RUNTIME_PY: &str = r#"
import json, os, socket, sys

HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")

def call(method, path, body=b""):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect((HOST, int(PORT)))
    s.sendall(("%s %s HTTP/1.1\r\nHost: runtime\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
               % (method, path, len(body))).encode() + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode()] = v.strip().decode()
    if headers.get("transfer-encoding") == "chunked":
        out = b""
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out += rest[:n]
            rest = rest[n + 2:]
        rest = out
    return headers, rest

def writable(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return True
    except OSError:
        return False

while True:
    h, body = call("GET", "/2018-06-01/runtime/invocation/next")
    rid = h["lambda-runtime-aws-request-id"]
    out = {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "image_var": os.environ.get("IMAGE_VAR"),
        "user_var": os.environ.get("USER_VAR"),
        "function_name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "path": os.environ.get("PATH"),
        "only_in_image": os.path.exists("/image-only.txt"),
        "host_ls": os.path.exists("/usr/bin/ls"),
        "removed": os.path.exists("/etc/removed.txt"),
        "changed": open("/data/changed.txt").read(),
        "opaque": sorted(os.listdir("/opaque")),
        "tmp_writable": writable("/tmp/probe"),
        "root_writable": writable("/probe"),
        "hosts": open("/etc/hosts").read(),
        "uid": os.getuid(),
        "event": json.loads(body or b"null"),
    }
    call("POST", "/2018-06-01/runtime/invocation/%s/response" % rid, json.dumps(out).encode())
"#;

/// The host files `/usr/bin/python3.11` needs to run [`RUNTIME_PY`] with `-S`: the binary, its
/// shared libraries (from `ldd`) and the standard-library modules it imports (asked from the
/// interpreter itself), at their real paths, plus the host's merged-usr links (`/lib64` ...).
pub fn python_runtime_files() -> Result<Vec<Entry>> {
    python_files_importing(&["-S"], "import json, socket, os, sys", None)
}

/// `/usr/bin/python3.11` with the modules and shared libraries `python3.11 FLAGS -c IMPORTS` loads
/// (with `pythonpath` on `PYTHONPATH`; modules found there are left out: they ship with the
/// function), as [`host_files`].
pub fn python_files_importing(
    flags: &[&str],
    imports: &str,
    pythonpath: Option<&Path>,
) -> Result<Vec<Entry>> {
    let code = format!(
        "{imports}\nimport os, sys\nfor m in list(sys.modules.values()):\n    f = getattr(m, '__file__', None)\n    if f: print(f)\nprint(os.__file__)"
    );
    let mut probe = Command::new("/usr/bin/python3.11");
    probe.args(flags).args(["-c", &code]);
    if let Some(p) = pythonpath {
        probe.env("PYTHONPATH", p);
    }
    let probe = probe
        .output()
        .context("run /usr/bin/python3.11 (the test images copy it)")?;
    anyhow::ensure!(probe.status.success(), "python probe failed: {probe:?}");
    let (shipped, mut paths): (BTreeSet<PathBuf>, BTreeSet<PathBuf>) =
        String::from_utf8(probe.stdout)?
            .lines()
            .map(PathBuf::from)
            .partition(|p| pythonpath.is_some_and(|pp| p.starts_with(pp)));
    paths.insert(PathBuf::from("/usr/bin/python3.11"));
    // The shipped extension modules' libraries are the image's to provide.
    paths.extend(shared_libraries(&shipped)?);
    let mut out = host_files(paths)?;
    // The prefix landmark directory Python looks for.
    out.push(Entry::Dir("usr/lib/python3.11/lib-dynload".into()));
    Ok(out)
}

fn is_elf(p: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(p)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"\x7fELF"
}

/// The shared libraries (from `ldd`) the ELF files among `paths` load.
pub fn shared_libraries(paths: &BTreeSet<PathBuf>) -> Result<BTreeSet<PathBuf>> {
    let mut libs = BTreeSet::new();
    for bin in paths.iter().filter(|p| is_elf(p)) {
        let ldd = Command::new("ldd").arg(bin).output().context("run ldd")?;
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            if let Some(lib) = line.split_whitespace().find(|w| w.starts_with('/')) {
                libs.insert(PathBuf::from(lib));
            }
        }
    }
    Ok(libs)
}

/// Host files at their real paths, with the shared libraries every ELF file among them loads (from
/// `ldd`), every symlink on the way, their directories and the host's merged-usr links (`/lib64` ...).
pub fn host_files(mut paths: BTreeSet<PathBuf>) -> Result<Vec<Entry>> {
    paths.extend(shared_libraries(&paths)?);
    let mut entries = Vec::new();
    let mut dirs = BTreeSet::new();
    for link in ["bin", "sbin", "lib", "lib64"] {
        let p = Path::new("/").join(link);
        if let Ok(target) = std::fs::read_link(&p) {
            entries.push(Entry::Symlink(
                link.to_string(),
                target.display().to_string(),
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for p in paths {
        // Every symlink on the way (e.g. /usr/lib64/ld-linux-x86-64.so.2 -> ../lib/...) is kept, at
        // its real directory, then the file itself.
        let mut cur = p.clone();
        for _ in 0..16 {
            let parent = std::fs::canonicalize(cur.parent().unwrap_or(Path::new("/")))
                .with_context(|| format!("resolve {}", cur.display()))?;
            let q = parent.join(
                cur.file_name()
                    .ok_or_else(|| anyhow!("{} has no name", cur.display()))?,
            );
            let rel = q
                .strip_prefix("/")
                .map_err(|_| anyhow!("{} is not absolute", q.display()))?
                .to_path_buf();
            let mut up = rel.parent();
            while let Some(d) = up.filter(|d| !d.as_os_str().is_empty()) {
                dirs.insert(d.to_path_buf());
                up = d.parent();
            }
            let first = seen.insert(rel.clone());
            match std::fs::read_link(&q) {
                Ok(target) => {
                    if first {
                        entries.push(Entry::Symlink(
                            rel.display().to_string(),
                            target.display().to_string(),
                        ));
                    }
                    cur = if target.is_absolute() {
                        target
                    } else {
                        parent.join(target)
                    };
                }
                Err(_) => {
                    if first {
                        let data =
                            std::fs::read(&q).with_context(|| format!("read {}", q.display()))?;
                        entries.push(Entry::File(rel.display().to_string(), data, 0o755));
                    }
                    break;
                }
            }
        }
    }
    let mut out: Vec<Entry> = dirs
        .into_iter()
        .map(|d| Entry::Dir(d.display().to_string()))
        .collect();
    out.extend(entries);
    Ok(out)
}
