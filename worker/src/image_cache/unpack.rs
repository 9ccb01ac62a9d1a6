//! Applies image layers to a directory as a container runtime does, but never trusting the layer.
//! The caller first walks every layer with the shared checks (`lamina_proto::archive::LayerWalk`,
//! the walk the controller ran at upload); applying then checks again on disk. Each layer is read twice — first its whiteouts (`.wh.NAME` removes NAME of the layers below,
//! `.wh..wh..opq` empties its directory), then its entries. Every parent of an entry must be a real
//! directory under the root (a symlink there is refused, so nothing is ever written through a link,
//! whatever it points to); absolute and `..` paths, devices and fifos are refused; set-id bits are
//! dropped; the bytes written are bounded. Symlinks themselves may point anywhere: they are only
//! followed inside the sandbox, after pivot_root, where `/` is the image.
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lamina_proto::archive::{
    entry_path, layer_reader, whiteout, Whiteout, MAX_IMAGE_UNPACKED_BYTES,
};

use super::{io_err, ImageCacheError};

/// Directories the sandbox mounts over (`/proc`, `/dev`, `/tmp`) or writes into (`/etc`).
const MOUNT_DIRS: [&str; 4] = ["proc", "dev", "tmp", "etc"];
/// Files of `/etc` the sandbox binds its own over.
pub const ETC_FILES: [&str; 3] = ["hosts", "resolv.conf", "hostname"];

fn entry_err(layer: usize, name: &str, reason: impl Into<String>) -> ImageCacheError {
    ImageCacheError::Entry {
        layer,
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Opens a layer blob as a tar stream (the shared reader: gzip by its magic bytes, zstd refused).
fn open_layer(layer: usize, blob: &Path) -> Result<Box<dyn Read>, ImageCacheError> {
    let f = File::open(blob).map_err(io_err(blob))?;
    Ok(layer_reader(layer, f)?)
}

/// The directory `root/parts...`, every component a real directory (never a symlink). Missing
/// ones are created (0755) with `create`, else `None` is returned.
fn real_dir(
    root: &Path,
    parts: &[String],
    create: bool,
    layer: usize,
    name: &str,
) -> Result<Option<PathBuf>, ImageCacheError> {
    let mut path = root.to_path_buf();
    for part in parts {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(entry_err(
                    layer,
                    name,
                    format!(
                        "its parent {part:?} is a symlink: layers must not write through links"
                    ),
                ))
            }
            Ok(_) => {
                return Err(entry_err(
                    layer,
                    name,
                    format!("its parent {part:?} is not a directory"),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&path).map_err(io_err(&path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(io_err(&path))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Ok(Some(path))
}

/// Removes whatever is at `path` without following it (a symlink is removed, not its target).
fn remove_any(path: &Path) -> Result<(), ImageCacheError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => fs::remove_dir_all(path).map_err(io_err(path)),
        Ok(_) => fs::remove_file(path).map_err(io_err(path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Applies layer number `layer` (the blob at `blob`) onto `root`; `written` counts the bytes of
/// regular files written so far over all layers.
pub fn apply_layer(
    root: &Path,
    layer: usize,
    blob: &Path,
    written: &mut u64,
) -> Result<(), ImageCacheError> {
    let tar_err = |e: io::Error| ImageCacheError::Layer {
        layer,
        detail: e.to_string(),
    };
    // Pass 1: whiteouts remove what the layers below put there.
    let mut archive = tar::Archive::new(open_layer(layer, blob)?);
    for entry in archive.entries().map_err(tar_err)? {
        let entry = entry.map_err(tar_err)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let parts = entry_path(&raw).map_err(|r| entry_err(layer, &name, r))?;
        let Some((base, parent)) = parts.split_last() else {
            continue;
        };
        let wh = whiteout(base).map_err(|r| entry_err(layer, &name, r))?;
        if matches!(wh, Whiteout::No | Whiteout::Reserved) {
            continue;
        }
        let Some(dir) = real_dir(root, parent, false, layer, &name)? else {
            continue; // nothing below to hide
        };
        match wh {
            Whiteout::Opaque => {
                for child in fs::read_dir(&dir).map_err(io_err(&dir))? {
                    let child = child.map_err(io_err(&dir))?;
                    remove_any(&child.path())?;
                }
            }
            Whiteout::Remove(hidden) => remove_any(&dir.join(hidden))?,
            Whiteout::No | Whiteout::Reserved => {}
        }
    }
    // Pass 2: the entries.
    let mut archive = tar::Archive::new(open_layer(layer, blob)?);
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let parts = entry_path(&raw).map_err(|r| entry_err(layer, &name, r))?;
        let Some((base, parent)) = parts.split_last() else {
            continue; // the root itself keeps 0755
        };
        if whiteout(base).map_err(|r| entry_err(layer, &name, r))? != Whiteout::No {
            continue;
        }
        let dir = real_dir(root, parent, true, layer, &name)?.expect("created");
        let path = dir.join(base);
        let mode = entry.header().mode().map_err(tar_err)?;
        use tar::EntryType as T;
        match entry.header().entry_type() {
            T::Directory => {
                let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_dir());
                if !is_dir {
                    remove_any(&path)?;
                    fs::create_dir(&path).map_err(io_err(&path))?;
                }
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o1777))
                    .map_err(io_err(&path))?;
            }
            T::Regular | T::Continuous => {
                remove_any(&path)?;
                let size = entry.size();
                *written += size;
                if *written > MAX_IMAGE_UNPACKED_BYTES {
                    return Err(ImageCacheError::Unpacked {
                        max: MAX_IMAGE_UNPACKED_BYTES,
                    });
                }
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(io_err(&path))?;
                let copied =
                    io::copy(&mut (&mut entry).take(size), &mut f).map_err(io_err(&path))?;
                if copied != size {
                    return Err(entry_err(layer, &name, "file data is truncated"));
                }
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o777))
                    .map_err(io_err(&path))?;
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if target.is_empty() || target.contains(&0) {
                    return Err(entry_err(
                        layer,
                        &name,
                        "symlink target is empty or has a NUL",
                    ));
                }
                remove_any(&path)?;
                let target = std::ffi::OsStr::new(
                    std::str::from_utf8(&target)
                        .map_err(|_| entry_err(layer, &name, "symlink target is not UTF-8"))?,
                );
                std::os::unix::fs::symlink(target, &path).map_err(io_err(&path))?;
            }
            T::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                let tparts = entry_path(&target)
                    .map_err(|r| entry_err(layer, &name, format!("hard link target: {r}")))?;
                let Some((tbase, tparent)) = tparts.split_last() else {
                    return Err(entry_err(layer, &name, "hard link to the image root"));
                };
                let source = real_dir(root, tparent, false, layer, &name)?
                    .map(|d| d.join(tbase))
                    .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file()))
                    .ok_or_else(|| {
                        entry_err(
                            layer,
                            &name,
                            "hard link target is not a regular file of the image",
                        )
                    })?;
                if source != path {
                    remove_any(&path)?;
                    fs::hard_link(&source, &path).map_err(io_err(&path))?;
                }
            }
            T::Char | T::Block => {
                return Err(entry_err(
                    layer,
                    &name,
                    "device node: images may not contain devices",
                ))
            }
            T::Fifo => {
                return Err(entry_err(
                    layer,
                    &name,
                    "fifo: images may not contain fifos",
                ))
            }
            other => {
                return Err(entry_err(
                    layer,
                    &name,
                    format!("unsupported tar entry type {other:?}"),
                ))
            }
        }
    }
    Ok(())
}

/// Makes the paths the sandbox mounts over real directories and files of the image (a symlink or
/// file in their place is replaced), so that no mount or write at them can leave the image.
pub fn prepare_mount_points(root: &Path) -> Result<(), ImageCacheError> {
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).map_err(io_err(root))?;
    for d in MOUNT_DIRS {
        let p = root.join(d);
        let ok = fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_dir());
        if !ok {
            remove_any(&p)?;
            fs::create_dir(&p).map_err(io_err(&p))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).map_err(io_err(&p))?;
        }
    }
    for f in ETC_FILES {
        let p = root.join("etc").join(f);
        let ok = fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_file());
        if !ok {
            remove_any(&p)?;
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&p)
                .map_err(io_err(&p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
