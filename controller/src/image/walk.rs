//! The layers of an uploaded image walked as the worker will apply them (whiteouts first, then
//! entries), without writing anything: paths, entry kinds, links, sizes.
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::{invalid, ImageError, MAX_ENTRIES, MAX_IMAGE_UNPACKED_BYTES};

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The layers applied in order, simulated: which paths are files (and their sizes) and which are
/// symlinks, so that an entry written through a symlink is refused as the worker would.
#[derive(Default)]
pub(super) struct Walk {
    files: HashMap<String, u64>,
    symlinks: HashSet<String>,
    dirs: HashSet<String>,
    entries: usize,
    /// Bytes of every regular file written, also those a later layer removes (what unpacking writes).
    written: u64,
}

fn entry_err(layer: usize, name: &str, reason: impl Into<String>) -> ImageError {
    ImageError::Entry {
        layer,
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// The normal components of a layer entry's path; absolute paths, `..` and NUL are refused.
pub fn layer_path(raw: &[u8]) -> Result<Vec<String>, String> {
    if raw.contains(&0) {
        return Err("name contains a NUL byte".into());
    }
    let name = std::str::from_utf8(raw).map_err(|_| "name is not UTF-8".to_string())?;
    if name.starts_with('/') {
        return Err("absolute path: layer entries must be relative".into());
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("path contains `..`: entries must stay inside the image".into()),
            p => parts.push(p.to_string()),
        }
    }
    Ok(parts)
}

impl Walk {
    pub(super) fn unpacked_size(&self) -> u64 {
        self.files.values().sum()
    }

    /// Reads one layer blob: returns its sha256 and the sha256 of its uncompressed tar.
    pub(super) fn layer(
        &mut self,
        i: usize,
        blob: impl Read,
    ) -> Result<(String, String), ImageError> {
        let mut outer = Hashing {
            inner: blob,
            hasher: Sha256::new(),
        };
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = outer.read(&mut magic[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let head = io::Cursor::new(magic[..got].to_vec());
        let diff_id = if got >= 2 && magic[..2] == [0x1f, 0x8b] {
            let gz = flate2::read::GzDecoder::new(head.chain(&mut outer));
            self.entries_of(i, gz)?
        } else if got == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
            return Err(invalid(
                format!("layer {i}"),
                "is zstd-compressed; only uncompressed and gzip layers are supported",
            ));
        } else {
            self.entries_of(i, head.chain(&mut outer))?
        };
        io::copy(&mut outer, &mut io::sink())?;
        Ok((hex::encode(outer.hasher.finalize()), diff_id))
    }

    /// Walks the tar entries (whiteouts first, as the worker applies them); returns the tar's sha256.
    fn entries_of(&mut self, i: usize, tar_bytes: impl Read) -> Result<String, ImageError> {
        let mut hashing = Hashing {
            inner: tar_bytes,
            hasher: Sha256::new(),
        };
        let mut adds = Vec::new();
        {
            let mut tar = tar::Archive::new(&mut hashing);
            let entries = tar
                .entries()
                .map_err(|e| invalid(format!("layer {i}"), format!("not a tar: {e}")))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| invalid(format!("layer {i}"), format!("not a tar: {e}")))?;
                self.entries += 1;
                if self.entries > MAX_ENTRIES {
                    return Err(ImageError::TooManyEntries);
                }
                let raw = entry.path_bytes().into_owned();
                let display = String::from_utf8_lossy(&raw).into_owned();
                let parts = layer_path(&raw).map_err(|r| entry_err(i, &display, r))?;
                let Some(base) = parts.last().cloned() else {
                    continue; // the root itself
                };
                let parent = parts[..parts.len() - 1].join("/");
                if base == ".wh..wh..opq" {
                    self.check_parents(i, &display, &parts)?;
                    self.remove_under(&parent, false);
                    continue;
                }
                if let Some(hidden) = base.strip_prefix(".wh.") {
                    self.check_parents(i, &display, &parts)?;
                    if !hidden.starts_with(".wh.") {
                        let path = join(&parent, hidden);
                        self.remove_under(&path, true);
                    }
                    continue;
                }
                let kind = entry.header().entry_type();
                let link = entry.link_name_bytes().map(|l| l.into_owned());
                adds.push((display, parts, kind, entry.size(), link));
            }
        }
        for (display, parts, kind, size, link) in adds {
            self.check_parents(i, &display, &parts)?;
            self.add(i, &display, parts.join("/"), kind, size, link)?;
        }
        io::copy(&mut hashing, &mut io::sink())?;
        Ok(hex::encode(hashing.hasher.finalize()))
    }

    fn check_parents(&self, i: usize, display: &str, parts: &[String]) -> Result<(), ImageError> {
        let mut prefix = String::new();
        for p in &parts[..parts.len().saturating_sub(1)] {
            prefix = join(&prefix, p);
            if self.symlinks.contains(&prefix) {
                return Err(entry_err(
                    i,
                    display,
                    format!(
                        "its parent {prefix:?} is a symlink: layers must not write through links"
                    ),
                ));
            }
            if self.files.contains_key(&prefix) {
                return Err(entry_err(
                    i,
                    display,
                    format!("its parent {prefix:?} is a file"),
                ));
            }
        }
        Ok(())
    }

    /// Removes `path` (with `itself`) or only what is below it.
    fn remove_under(&mut self, path: &str, itself: bool) {
        let below = format!("{path}/");
        let keep = |p: &String| !(p.starts_with(&below) || path.is_empty() || itself && p == path);
        self.files.retain(|p, _| keep(p));
        self.symlinks.retain(keep);
        self.dirs.retain(keep);
    }

    fn add(
        &mut self,
        i: usize,
        display: &str,
        path: String,
        kind: tar::EntryType,
        size: u64,
        link: Option<Vec<u8>>,
    ) -> Result<(), ImageError> {
        use tar::EntryType as T;
        let is_dir = kind == T::Directory;
        if !(is_dir && self.dirs.contains(&path)) {
            self.remove_under(&path, true);
        }
        match kind {
            T::Directory => {
                self.dirs.insert(path);
            }
            T::Regular | T::Continuous => {
                self.files.insert(path, size);
                self.written += size;
                if self.written > MAX_IMAGE_UNPACKED_BYTES {
                    return Err(ImageError::UnpackedTooBig {
                        max: MAX_IMAGE_UNPACKED_BYTES,
                    });
                }
            }
            T::Symlink => {
                let target = link.unwrap_or_default();
                if target.is_empty() || target.contains(&0) {
                    return Err(entry_err(
                        i,
                        display,
                        "symlink target is empty or has a NUL",
                    ));
                }
                self.symlinks.insert(path);
            }
            T::Link => {
                let target = link.unwrap_or_default();
                let t = layer_path(&target)
                    .map_err(|r| entry_err(i, display, format!("hard link target: {r}")))?
                    .join("/");
                let Some(&size) = self.files.get(&t) else {
                    return Err(entry_err(
                        i,
                        display,
                        format!("hard link to {t:?}, which is not a regular file of the image"),
                    ));
                };
                self.files.insert(path, size);
            }
            T::Char | T::Block => {
                return Err(entry_err(
                    i,
                    display,
                    "device node: images may not contain devices",
                ))
            }
            T::Fifo => return Err(entry_err(i, display, "fifo: images may not contain fifos")),
            other => {
                return Err(entry_err(
                    i,
                    display,
                    format!("unsupported tar entry type {other:?}"),
                ))
            }
        }
        Ok(())
    }
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}
