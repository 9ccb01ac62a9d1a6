//! The entry checks of every archive Lamina unpacks: code and layer zips (`zip.rs`) and image layer
//! tars (`layer.rs`). The controller runs them at upload and the worker runs the very same checks
//! again before it unpacks, so a package the controller accepts is never refused at first invoke,
//! and a package the worker would refuse never reaches it.
//!
//! What is refused, by both: names with NUL, that are not UTF-8, absolute (`/x`, `\x`, `C:`) or
//! that contain a `..` component; devices, fifos and sockets; duplicate entries; an entry whose
//! parent is a symlink or a file (nothing is ever written through a link); zip symlinks whose target
//! is absolute, empty, not UTF-8, longer than [`MAX_LINK_TARGET`], has `..` after a name or climbs
//! out of the package; whiteouts that name `.`, `..` or nothing; more than [`MAX_ZIP_ENTRIES`]
//! zip entries or [`MAX_IMAGE_ENTRIES`] image entries; more bytes than the limits unpacked.
use std::path::{Component, Path};

mod layer;
mod zip;

pub use layer::{layer_reader, LayerWalk, MAX_IMAGE_ENTRIES, MAX_IMAGE_UNPACKED_BYTES};
pub use zip::{check_zip, ZipKind, ZipListing, ZipListingEntry, MAX_ZIP_ENTRIES};

/// Longest symlink target accepted in a zip.
pub const MAX_LINK_TARGET: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    #[error("code is not a valid zip archive: {0}")]
    NotAZip(String),
    #[error("zip entry {name:?} refused: {reason}")]
    ZipEntry { name: String, reason: String },
    #[error(
        "zip has more than {MAX_ZIP_ENTRIES} entries ({count}): shrink the deployment package"
    )]
    TooManyZipEntries { count: usize },
    #[error("code unzips to more than {max} bytes ({} MB): {total} bytes declared; shrink the deployment package", max >> 20)]
    UnzippedTooBig { total: u64, max: u64 },
    #[error("image layer {layer} is not a valid tar: {detail}")]
    NotATar { layer: usize, detail: String },
    #[error("image layer {layer} entry {name:?} refused: {reason}")]
    LayerEntry {
        layer: usize,
        name: String,
        reason: String,
    },
    #[error(
        "image has more than {MAX_IMAGE_ENTRIES} entries over all layers; make the image smaller"
    )]
    TooManyImageEntries,
    #[error("image unpacks to more than {max} bytes; make the image smaller")]
    ImageTooBig { max: u64 },
}

/// The normal components of an entry's path: refuses NUL, non-UTF-8, absolute paths (`/`, `\`, a
/// drive letter) and any `..` component (also between backslashes). `.` and empty parts are dropped.
pub fn entry_path(raw: &[u8]) -> Result<Vec<String>, String> {
    if raw.contains(&0) {
        return Err("name contains a NUL byte".into());
    }
    let name = std::str::from_utf8(raw).map_err(|_| "name is not UTF-8".to_string())?;
    let b = name.as_bytes();
    let drive = b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':';
    if name.starts_with('/') || name.starts_with('\\') || drive {
        return Err("absolute path: entries must be relative to the package root".into());
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            p if p.split('\\').any(|s| s == "..") => {
                return Err("path contains `..`: entries must stay inside the package".into())
            }
            p => parts.push(p.to_string()),
        }
    }
    Ok(parts)
}

/// What a layer entry's base name says about whiteouts (OCI image spec, "Whiteouts").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// Not a whiteout: an entry to add.
    No,
    /// `.wh..wh..opq`: empties the directory the entry is in.
    Opaque,
    /// `.wh.NAME`: removes NAME of the layers below.
    Remove(&'a str),
    /// `.wh..wh.*` other than the opaque marker: reserved, ignored.
    Reserved,
}

/// Classifies `base` (one path component); a whiteout of `.`, `..` or nothing is refused (it would
/// remove the directory itself or its parent, above the image root).
pub fn whiteout(base: &str) -> Result<Whiteout<'_>, String> {
    if base == ".wh..wh..opq" {
        return Ok(Whiteout::Opaque);
    }
    let Some(hidden) = base.strip_prefix(".wh.") else {
        return Ok(Whiteout::No);
    };
    if hidden.starts_with(".wh.") {
        return Ok(Whiteout::Reserved);
    }
    if hidden.is_empty() || hidden == "." || hidden == ".." {
        return Err(format!(
            "whiteout {base:?} names {hidden:?}: a whiteout must name one entry of its directory"
        ));
    }
    Ok(Whiteout::Remove(hidden))
}

/// Checks a zip symlink's target: not empty, no NUL, UTF-8, at most [`MAX_LINK_TARGET`] bytes,
/// relative, `..` only leading (after a name it may climb out of a symlinked directory), and
/// resolving inside the package from the link's directory `parent` (its components below the root).
pub fn zip_link_target(parent: &[String], target: &[u8]) -> Result<String, String> {
    if target.is_empty() || target.contains(&0) {
        return Err("symlink target is empty or contains a NUL byte".into());
    }
    if target.len() > MAX_LINK_TARGET {
        return Err(format!(
            "symlink target is longer than {MAX_LINK_TARGET} bytes"
        ));
    }
    let target =
        std::str::from_utf8(target).map_err(|_| "symlink target is not UTF-8".to_string())?;
    let mut depth = parent.len();
    let mut seen_normal = false;
    for c in Path::new(target).components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "symlink target {target:?} is absolute, outside the package: symlinks must be relative"
                ))
            }
            Component::CurDir => {}
            Component::ParentDir if seen_normal => {
                return Err(format!(
                    "symlink target {target:?} has `..` after a name: normalize it"
                ))
            }
            Component::ParentDir => {
                depth = depth.checked_sub(1).ok_or_else(|| {
                    format!("symlink target {target:?} points outside the package")
                })?;
            }
            Component::Normal(_) => seen_normal = true,
        }
    }
    Ok(target.to_string())
}

/// The paths an archive (or a stack of layers) has put in place so far, to refuse what would be
/// written through a symlink or below a file, as the unpacker applies them in order.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    /// Regular files (and hard links to them) with their sizes.
    files: std::collections::HashMap<String, u64>,
    symlinks: std::collections::HashSet<String>,
    dirs: std::collections::HashSet<String>,
}

/// Kinds of what an entry puts at its path.
pub(crate) enum Put {
    Dir,
    File(u64),
    Symlink,
}

pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

impl Tree {
    /// Refuses `parts` whose parents are not (missing or real) directories.
    pub(crate) fn check_parents(&self, parts: &[String]) -> Result<(), String> {
        let mut prefix = String::new();
        for p in &parts[..parts.len().saturating_sub(1)] {
            prefix = join(&prefix, p);
            if self.symlinks.contains(&prefix) {
                return Err(format!(
                    "its parent {prefix:?} is a symlink: nothing may be written through a link"
                ));
            }
            if self.files.contains_key(&prefix) {
                return Err(format!("its parent {prefix:?} is a file"));
            }
        }
        Ok(())
    }

    pub(crate) fn exists(&self, path: &str) -> bool {
        self.files.contains_key(path) || self.symlinks.contains(path) || self.dirs.contains(path)
    }

    pub(crate) fn file_size(&self, path: &str) -> Option<u64> {
        self.files.get(path).copied()
    }

    pub(crate) fn is_dir(&self, path: &str) -> bool {
        self.dirs.contains(path)
    }

    /// Removes `path` (with `itself`) or only what is below it (`path` empty: everything).
    pub(crate) fn remove_under(&mut self, path: &str, itself: bool) {
        let below = format!("{path}/");
        let keep = |p: &String| !(p.starts_with(&below) || path.is_empty() || itself && p == path);
        self.files.retain(|p, _| keep(p));
        self.symlinks.retain(keep);
        self.dirs.retain(keep);
    }

    /// Records what an entry puts at `path` (its parents as directories too).
    pub(crate) fn put(&mut self, path: String, what: Put) {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for p in &parts[..parts.len() - 1] {
            prefix = join(&prefix, p);
            self.dirs.insert(prefix.clone());
        }
        match what {
            Put::Dir => {
                self.dirs.insert(path);
            }
            Put::File(size) => {
                self.files.insert(path, size);
            }
            Put::Symlink => {
                self.symlinks.insert(path);
            }
        }
    }

    pub(crate) fn total_file_bytes(&self) -> u64 {
        self.files.values().sum()
    }
}

#[cfg(test)]
mod tests;
