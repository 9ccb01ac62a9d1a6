//! The root of an image function's sandbox: the unpacked image (`STATE_DIR/images/<sha256>`, built
//! by `image_cache`) bound read-only as `/`, instead of the host `/usr` of the built-in runtimes.
//! Onto it, inside the sandbox's private mount namespace only: the prepared `/proc` and `/dev`
//! (moved from the prepared root), a `/tmp` tmpfs of the ephemeral size, and the sandbox's own
//! `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` bound over the image's. Every path mounted
//! at is checked to be a real directory or file of the image first (the image cache replaced any
//! symlink there): a mount never follows a link of the image out to the host.
use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use super::init::{bind_read_only, mount_fs, InitError, Step};
use super::protocol::ImageRoot;

/// The `/etc` files the sandbox provides (the image cache makes them regular files).
const ETC_FILES: [&str; 3] = ["hosts", "resolv.conf", "hostname"];
/// `PATH` searched for a bare program name when the environment has none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn require(path: &Path, dir: bool) -> Result<(), InitError> {
    let m = std::fs::symlink_metadata(path).step(|| format!("inspect {}", path.display()))?;
    let ok = if dir {
        m.file_type().is_dir()
    } else {
        m.file_type().is_file()
    };
    if !ok {
        return Err(InitError::Protocol(format!(
            "{} in the image is not a real {}: refusing to mount there",
            path.display(),
            if dir { "directory" } else { "file" }
        )));
    }
    Ok(())
}

fn move_mount(from: &Path, to: &Path) -> Result<(), InitError> {
    mount(Some(from), to, None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .step(|| format!("move {} to {}", from.display(), to.display()))
}

/// Builds the image root under the prepared root `root_dir` and returns it (to pivot into).
pub(super) fn build(
    root_dir: &Path,
    image: &ImageRoot,
    ephemeral_storage_mb: u32,
) -> Result<PathBuf, InitError> {
    let root = root_dir.join("image-root");
    std::fs::create_dir(&root).step(|| format!("create {}", root.display()))?;
    bind_read_only(&image.dir, &root)?;
    for d in ["proc", "dev", "tmp", "etc"] {
        require(&root.join(d), true)?;
    }
    for f in ETC_FILES {
        require(&root.join("etc").join(f), false)?;
    }
    move_mount(&root_dir.join("proc"), &root.join("proc"))?;
    move_mount(&root_dir.join("dev"), &root.join("dev"))?;
    mount_fs(
        "tmpfs",
        &root.join("tmp"),
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(&format!("size={ephemeral_storage_mb}m,mode=1777")),
    )?;
    for f in ETC_FILES {
        bind_read_only(&root_dir.join("etc").join(f), &root.join("etc").join(f))?;
    }
    Ok(root)
}

/// After the privileges are dropped: the working directory, and a bare program name looked up in
/// the `PATH` of the process's environment (as Docker does), checked executable by the function's
/// own uid.
pub(super) fn enter(
    image: &ImageRoot,
    argv: &mut [String],
    env: &[(String, String)],
) -> Result<(), InitError> {
    let wd = if image.working_dir.is_empty() {
        "/"
    } else {
        image.working_dir.as_str()
    };
    nix::unistd::chdir(wd).map_err(|e| {
        InitError::Protocol(format!(
            "working directory {wd:?} of the image: {}",
            e.desc()
        ))
    })?;
    let Some(program) = argv.first_mut() else {
        return Err(InitError::Protocol(
            "the image has neither Entrypoint nor Cmd and the function sets none: set \
             --entrypoint or --cmd"
                .into(),
        ));
    };
    if program.contains('/') {
        return Ok(());
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{dir}/{program}");
        let Ok(c) = CString::new(candidate.as_str()) else {
            continue;
        };
        let is_file = std::fs::metadata(&candidate).is_ok_and(|m| m.is_file());
        if is_file && nix::unistd::access(c.as_c_str(), nix::unistd::AccessFlags::X_OK).is_ok() {
            *program = candidate;
            return Ok(());
        }
    }
    Err(InitError::Protocol(format!(
        "executable file {program:?} not found in $PATH ({path})"
    )))
}
