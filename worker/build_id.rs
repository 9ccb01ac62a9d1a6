//! The worker's build id: a hash of the sources the `lamina-worker` crate (and the `lamina-proto`
//! crate it speaks) is built from, given to the crate as `LAMINA_WORKER_BUILD_ID`. The binary and
//! the cdylib (`liblamina_worker.so`, loaded by the Python zygote) come out of one compilation of
//! the library, so they carry the same id; a library left by an older build carries another one and
//! is refused at load (`sandbox/launcher.rs`), instead of running sandbox init code of another commit.
use std::collections::hash_map::DefaultHasher;
use std::hash::Hasher;
use std::path::{Path, PathBuf};

/// What the id covers, relative to the crate's directory.
const INPUTS: [&str; 7] = [
    "src",
    "seccomp",
    "build.rs",
    "build_id.rs",
    "Cargo.toml",
    "../proto/src",
    "../Cargo.lock",
];

fn files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .map(|e| e.expect("read a directory entry").path())
            .collect();
        entries.sort();
        for e in entries {
            files(&e, out);
        }
    } else if path.is_file() {
        out.push(path.to_path_buf());
    }
}

/// Prints the `rustc-env` line and the `rerun-if-changed` lines for every input.
pub fn emit() {
    // SipHash with fixed keys: the same sources give the same id on every build.
    let mut hasher = DefaultHasher::new();
    let mut all = Vec::new();
    for input in INPUTS {
        println!("cargo:rerun-if-changed={input}");
        files(Path::new(input), &mut all);
    }
    for file in &all {
        hasher.write(file.to_string_lossy().as_bytes());
        hasher
            .write(&std::fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display())));
    }
    for var in ["PROFILE", "TARGET", "OPT_LEVEL", "DEBUG"] {
        hasher.write(std::env::var(var).unwrap_or_default().as_bytes());
    }
    println!(
        "cargo:rustc-env=LAMINA_WORKER_BUILD_ID={:016x}{:08x}",
        hasher.finish(),
        all.len()
    );
}
