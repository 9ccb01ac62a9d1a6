//! Zip packages (function code and layers): every entry checked and the tree simulated in order,
//! without writing anything. The worker unzips from the returned listing only.
use std::collections::HashSet;
use std::io::{Cursor, Read};

use super::{entry_path, zip_link_target, ArchiveError, Put, Tree, MAX_LINK_TARGET};

/// Most entries accepted in one zip.
pub const MAX_ZIP_ENTRIES: usize = 100_000;

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// What a checked zip entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZipKind {
    Dir,
    File { exec: bool, size: u64 },
    Symlink { target: String },
}

/// One checked entry, in archive order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipListingEntry {
    /// Its index in the zip (for `ZipArchive::by_index`).
    pub index: usize,
    /// Its name as written in the zip (for messages).
    pub name: String,
    /// Its normal path components below the package root (empty: the root itself).
    pub parts: Vec<String>,
    pub kind: ZipKind,
}

/// A zip that passed [`check_zip`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipListing {
    pub entries: Vec<ZipListingEntry>,
    /// Sum of the entries' declared uncompressed sizes.
    pub unzipped_size: u64,
}

fn refused(name: &str, reason: impl Into<String>) -> ArchiveError {
    ArchiveError::ZipEntry {
        name: name.to_string(),
        reason: reason.into(),
    }
}

fn not_a_zip(e: impl ToString) -> ArchiveError {
    ArchiveError::NotAZip(e.to_string())
}

fn kind_of(name: &str, unix_mode: Option<u32>, is_dir: bool) -> Result<Option<bool>, ArchiveError> {
    // Some(true): directory, Some(false): file, None: symlink (its target is read by the caller).
    let Some(mode) = unix_mode else {
        return Ok(Some(is_dir));
    };
    let special = match mode & S_IFMT {
        0 => return Ok(Some(is_dir)),
        S_IFREG => return Ok(Some(false)),
        S_IFDIR => return Ok(Some(true)),
        S_IFLNK => return Ok(None),
        0o020_000 => "character device",
        0o060_000 => "block device",
        0o010_000 => "fifo",
        0o140_000 => "socket",
        _ => "file of unknown type",
    };
    Err(refused(
        name,
        format!("it is a {special}; only regular files, directories and symlinks are allowed"),
    ))
}

fn le(b: &[u8], at: usize, n: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(n)?)?;
    Some(s.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
}

/// Walks the raw central directory (zip or zip64): the zip reader keeps one entry per name, so an
/// entry listed twice is only seen here. `Ok` also when it cannot be walked: the reader reports that.
fn raw_duplicates(zip: &[u8]) -> Result<(), ArchiveError> {
    const EOCD: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
    const ZIP64_LOCATOR: [u8; 4] = [0x50, 0x4b, 0x06, 0x07];
    const CENTRAL: [u8; 4] = [0x50, 0x4b, 0x01, 0x02];
    let walk = || -> Option<Result<(), ArchiveError>> {
        let from = zip.len().saturating_sub(22 + 65_535);
        let eocd = from + zip[from..].windows(4).rposition(|w| w == EOCD)?;
        let (mut count, mut offset) = (le(zip, eocd + 10, 2)?, le(zip, eocd + 16, 4)?);
        if count == 0xffff || offset == 0xffff_ffff {
            let locator = eocd.checked_sub(20)?;
            if zip.get(locator..locator + 4)? != ZIP64_LOCATOR {
                return None;
            }
            let record = le(zip, locator + 8, 8)? as usize;
            count = le(zip, record + 32, 8)?;
            offset = le(zip, record + 48, 8)?;
        }
        if count > MAX_ZIP_ENTRIES as u64 {
            return Some(Err(ArchiveError::TooManyZipEntries {
                count: count as usize,
            }));
        }
        let mut at = offset as usize;
        let mut names = HashSet::new();
        for _ in 0..count {
            if zip.get(at..at + 4)? != CENTRAL {
                return None;
            }
            let n = le(zip, at + 28, 2)? as usize;
            let extra = le(zip, at + 30, 2)? as usize + le(zip, at + 32, 2)? as usize;
            let raw = zip.get(at + 46..at + 46 + n)?;
            let key = entry_path(raw).map(|p| p.join("/")).unwrap_or_default();
            if !key.is_empty() && !names.insert(key) {
                let name = String::from_utf8_lossy(raw).into_owned();
                return Some(Err(refused(
                    &name,
                    "it appears more than once; each path may appear only once",
                )));
            }
            at += 46 + n + extra;
        }
        None
    };
    walk().unwrap_or(Ok(()))
}

/// Checks every entry of a zip (names, types, compression, symlink targets, duplicates, writes
/// through links, entry count, declared size at most `max_unzipped`) and lists them in order.
pub fn check_zip(bytes: &[u8], max_unzipped: u64) -> Result<ZipListing, ArchiveError> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(not_a_zip)?;
    if archive.len() > MAX_ZIP_ENTRIES {
        return Err(ArchiveError::TooManyZipEntries {
            count: archive.len(),
        });
    }
    raw_duplicates(bytes)?;
    let mut tree = Tree::default();
    let mut entries = Vec::with_capacity(archive.len());
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let (name, parts, kind, size) = {
            let entry = archive.by_index_raw(index).map_err(not_a_zip)?;
            let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
            let parts = entry_path(entry.name_raw()).map_err(|r| refused(&name, r))?;
            match entry.compression() {
                zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated => {}
                other => {
                    return Err(refused(
                        &name,
                        format!("it uses compression method {other:?}; only stored and deflate are supported"),
                    ))
                }
            }
            if entry.encrypted() {
                return Err(refused(&name, "it is encrypted; packages must not be"));
            }
            let kind = kind_of(&name, entry.unix_mode(), entry.is_dir())?;
            let exec = entry.unix_mode().is_some_and(|m| m & 0o111 != 0);
            (name, parts, kind.map(|dir| (dir, exec)), entry.size())
        };
        let Some((_, parent)) = parts.split_last() else {
            if matches!(kind, Some((true, _))) {
                continue; // "./" or "/" alone: the root itself
            }
            return Err(refused(&name, "empty file name"));
        };
        tree.check_parents(&parts).map_err(|r| refused(&name, r))?;
        let path = parts.join("/");
        let kind = match kind {
            Some((true, _)) => {
                if tree.exists(&path) && !tree.is_dir(&path) {
                    return Err(refused(
                        &name,
                        "a file or symlink of that name comes before it",
                    ));
                }
                tree.put(path, Put::Dir);
                ZipKind::Dir
            }
            other => {
                if tree.exists(&path) {
                    return Err(refused(
                        &name,
                        "it appears more than once; each path may appear only once",
                    ));
                }
                if other.is_none() {
                    let mut target = Vec::new();
                    archive
                        .by_index(index)
                        .map_err(not_a_zip)?
                        .take(MAX_LINK_TARGET as u64 + 1)
                        .read_to_end(&mut target)
                        .map_err(|e| refused(&name, format!("cannot read its target: {e}")))?;
                    let target = zip_link_target(parent, &target).map_err(|r| refused(&name, r))?;
                    tree.put(path, Put::Symlink);
                    ZipKind::Symlink { target }
                } else {
                    tree.put(path, Put::File(size));
                    total = total.saturating_add(size);
                    if total > max_unzipped {
                        return Err(ArchiveError::UnzippedTooBig {
                            total,
                            max: max_unzipped,
                        });
                    }
                    ZipKind::File {
                        exec: other.is_some_and(|(_, exec)| exec),
                        size,
                    }
                }
            }
        };
        entries.push(ZipListingEntry {
            index,
            name,
            parts,
            kind,
        });
    }
    Ok(ZipListing {
        entries,
        unzipped_size: total,
    })
}
