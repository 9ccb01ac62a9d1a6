//! Image layers (tars, plain or gzip) walked as the worker applies them — each layer's whiteouts
//! first, then its entries — without writing anything: paths, kinds, links, counts, sizes.
use std::io::{self, Read};

use sha2::{Digest, Sha256};

use super::{entry_path, join, whiteout, ArchiveError, Put, Tree, Whiteout};

/// The largest unpacked image (Lambda's limit for container images: 10 GB), counting every byte
/// written, also of files a later layer removes.
pub const MAX_IMAGE_UNPACKED_BYTES: u64 = 10 << 30;
/// Most entries accepted over all layers of one image.
pub const MAX_IMAGE_ENTRIES: usize = 500_000;

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

fn not_a_tar(layer: usize, detail: impl ToString) -> ArchiveError {
    ArchiveError::NotATar {
        layer,
        detail: detail.to_string(),
    }
}

fn refused(layer: usize, name: &str, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::LayerEntry {
        layer,
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// The tar stream of layer blob `blob` (gzip is recognised by its magic bytes; zstd is refused).
pub fn layer_reader<'a>(
    layer: usize,
    mut blob: impl Read + 'a,
) -> Result<Box<dyn Read + 'a>, ArchiveError> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = blob
            .read(&mut magic[got..])
            .map_err(|e| not_a_tar(layer, e))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let head = io::Cursor::new(magic[..got].to_vec());
    if got >= 2 && magic[..2] == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::GzDecoder::new(head.chain(blob))))
    } else if got == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Err(not_a_tar(
            layer,
            "it is zstd-compressed; only uncompressed and gzip layers are supported",
        ))
    } else {
        Ok(Box::new(head.chain(blob)))
    }
}

/// The layers of one image applied in order, simulated.
#[derive(Debug, Default)]
pub struct LayerWalk {
    tree: Tree,
    entries: usize,
    /// Bytes of every regular file written, also those a later layer removes (what unpacking writes).
    written: u64,
}

impl LayerWalk {
    /// Bytes of the regular files once every layer walked so far is applied.
    pub fn unpacked_size(&self) -> u64 {
        self.tree.total_file_bytes()
    }

    /// Walks layer number `i` (its blob, compressed or not): returns the sha256 of the blob and of
    /// its uncompressed tar (the config's diff id).
    pub fn layer(&mut self, i: usize, blob: impl Read) -> Result<(String, String), ArchiveError> {
        let mut outer = Hashing {
            inner: blob,
            hasher: Sha256::new(),
        };
        let diff_id = {
            let tar = layer_reader(i, &mut outer)?;
            self.entries_of(i, tar)?
        };
        io::copy(&mut outer, &mut io::sink()).map_err(|e| not_a_tar(i, e))?;
        Ok((hex::encode(outer.hasher.finalize()), diff_id))
    }

    /// Walks the tar entries (whiteouts first, as the worker applies them); returns the tar's sha256.
    fn entries_of(&mut self, i: usize, tar_bytes: impl Read) -> Result<String, ArchiveError> {
        let mut hashing = Hashing {
            inner: tar_bytes,
            hasher: Sha256::new(),
        };
        let mut adds = Vec::new();
        {
            let mut tar = tar::Archive::new(&mut hashing);
            for entry in tar.entries().map_err(|e| not_a_tar(i, e))? {
                let entry = entry.map_err(|e| not_a_tar(i, e))?;
                self.entries += 1;
                if self.entries > MAX_IMAGE_ENTRIES {
                    return Err(ArchiveError::TooManyImageEntries);
                }
                let raw = entry.path_bytes().into_owned();
                let name = String::from_utf8_lossy(&raw).into_owned();
                let parts = entry_path(&raw).map_err(|r| refused(i, &name, r))?;
                let Some(base) = parts.last() else {
                    continue; // the root itself
                };
                let parent = parts[..parts.len() - 1].join("/");
                match whiteout(base).map_err(|r| refused(i, &name, r))? {
                    Whiteout::No => {}
                    Whiteout::Reserved => continue,
                    Whiteout::Opaque => {
                        self.tree
                            .check_parents(&parts)
                            .map_err(|r| refused(i, &name, r))?;
                        self.tree.remove_under(&parent, false);
                        continue;
                    }
                    Whiteout::Remove(hidden) => {
                        self.tree
                            .check_parents(&parts)
                            .map_err(|r| refused(i, &name, r))?;
                        self.tree.remove_under(&join(&parent, hidden), true);
                        continue;
                    }
                }
                let kind = entry.header().entry_type();
                let link = entry.link_name_bytes().map(|l| l.into_owned());
                adds.push((name, parts, kind, entry.size(), link));
            }
        }
        for (name, parts, kind, size, link) in adds {
            self.tree
                .check_parents(&parts)
                .map_err(|r| refused(i, &name, r))?;
            self.add(i, &name, parts.join("/"), kind, size, link)?;
        }
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| not_a_tar(i, e))?;
        Ok(hex::encode(hashing.hasher.finalize()))
    }

    fn add(
        &mut self,
        i: usize,
        name: &str,
        path: String,
        kind: tar::EntryType,
        size: u64,
        link: Option<Vec<u8>>,
    ) -> Result<(), ArchiveError> {
        use tar::EntryType as T;
        let put = match kind {
            T::Directory => Put::Dir,
            T::Regular | T::Continuous => {
                self.written = self.written.saturating_add(size);
                if self.written > MAX_IMAGE_UNPACKED_BYTES {
                    return Err(ArchiveError::ImageTooBig {
                        max: MAX_IMAGE_UNPACKED_BYTES,
                    });
                }
                Put::File(size)
            }
            T::Symlink => {
                let target = link.unwrap_or_default();
                if target.is_empty() || target.contains(&0) {
                    return Err(refused(i, name, "symlink target is empty or has a NUL"));
                }
                if std::str::from_utf8(&target).is_err() {
                    return Err(refused(i, name, "symlink target is not UTF-8"));
                }
                Put::Symlink
            }
            T::Link => {
                let target = link.unwrap_or_default();
                let t = entry_path(&target)
                    .map_err(|r| refused(i, name, format!("hard link target: {r}")))?;
                let size = self
                    .tree
                    .check_parents(&t)
                    .ok()
                    .and_then(|()| self.tree.file_size(&t.join("/")))
                    .filter(|_| !t.is_empty());
                let Some(size) = size else {
                    return Err(refused(
                        i,
                        name,
                        format!(
                            "hard link to {:?}, which is not a regular file of the image",
                            t.join("/")
                        ),
                    ));
                };
                Put::File(size)
            }
            T::Char | T::Block => {
                return Err(refused(
                    i,
                    name,
                    "device node: images may not contain devices",
                ))
            }
            T::Fifo => return Err(refused(i, name, "fifo: images may not contain fifos")),
            other => {
                return Err(refused(
                    i,
                    name,
                    format!("unsupported tar entry type {other:?}"),
                ))
            }
        };
        if !(matches!(put, Put::Dir) && self.tree.is_dir(&path)) {
            self.tree.remove_under(&path, true);
        }
        self.tree.put(path, put);
        Ok(())
    }
}
