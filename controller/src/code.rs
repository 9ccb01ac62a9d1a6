//! Checks on uploaded code: a zip of at most 50 MB whose entries declare at most 250 MB unzipped,
//! with relative, NUL-free names that stay inside the code directory. The worker unzips it again
//! with its own checks; these give the user a clear answer at upload time.
use std::io::{Cursor, Read};

use lamina_proto::validate::{MAX_UNZIPPED_BYTES, MAX_ZIP_BYTES};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("code is required: send the zip as code_chunk messages")]
    Empty,
    #[error("code zip must be at most {MAX_ZIP_BYTES} bytes (50 MB), got more than that; make the package smaller")]
    TooBig,
    #[error("code is not a valid zip archive: {0}")]
    NotAZip(String),
    #[error(
        "code unzips to more than {MAX_UNZIPPED_BYTES} bytes (250 MB): {total} bytes declared"
    )]
    UnzippedTooBig { total: u64 },
    #[error("zip entry {name:?} has an absolute path; use paths relative to the package root")]
    AbsolutePath { name: String },
    #[error("zip entry {name:?} contains `..`; entries must stay inside the package")]
    ParentDir { name: String },
    #[error("zip entry {name:?} contains a NUL byte")]
    NulInName { name: String },
    #[error("zip entry {name:?} uses compression method {method}; only stored and deflate are supported")]
    Compression { name: String, method: String },
    #[error("zip entry {name:?} appears more than once; each path may appear only once")]
    Duplicate { name: String },
    #[error(
        "zip entry {name:?} is a {kind}; only regular files, directories and symlinks are allowed"
    )]
    SpecialFile { name: String, kind: &'static str },
    #[error("zip entry {name:?} is a symlink to {target:?}, outside the package; symlinks must be relative and stay inside")]
    SymlinkOutside { name: String, target: String },
}

const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;

/// What a zip entry's unix mode says it is, when it is not a file, directory or symlink.
fn special_kind(mode: u32) -> Option<&'static str> {
    match mode & S_IFMT {
        0o020_000 => Some("character device"),
        0o060_000 => Some("block device"),
        0o010_000 => Some("fifo"),
        0o140_000 => Some("socket"),
        _ => None,
    }
}

fn le16(b: &[u8], at: usize) -> Option<u64> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?) as u64)
}

fn le32(b: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as u64)
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Walks the central directory (zip or zip64) and returns the first entry name listed twice.
/// `None` also when the directory cannot be walked: the zip crate then reports the damage.
fn first_duplicate_name(zip: &[u8]) -> Option<String> {
    const EOCD: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
    const ZIP64_LOCATOR: [u8; 4] = [0x50, 0x4b, 0x06, 0x07];
    const CENTRAL: [u8; 4] = [0x50, 0x4b, 0x01, 0x02];
    let search_from = zip.len().saturating_sub(22 + 65_535);
    let eocd = search_from + zip[search_from..].windows(4).rposition(|w| w == EOCD)?;
    let (mut count, mut offset) = (le16(zip, eocd + 10)?, le32(zip, eocd + 16)?);
    if count == 0xffff || offset == 0xffff_ffff {
        let locator = eocd.checked_sub(20)?;
        if zip.get(locator..locator + 4)? != ZIP64_LOCATOR {
            return None;
        }
        let record = le64(zip, locator + 8)? as usize;
        count = le64(zip, record + 32)?;
        offset = le64(zip, record + 48)?;
    }
    let mut at = offset as usize;
    let mut names = std::collections::HashSet::new();
    for _ in 0..count {
        if zip.get(at..at + 4)? != CENTRAL {
            return None;
        }
        let (n, e, c) = (
            le16(zip, at + 28)? as usize,
            le16(zip, at + 30)? as usize,
            le16(zip, at + 32)? as usize,
        );
        let name = String::from_utf8_lossy(zip.get(at + 46..at + 46 + n)?).into_owned();
        let key = name
            .trim_end_matches('/')
            .trim_start_matches("./")
            .to_string();
        if !names.insert(key) {
            return Some(name);
        }
        at += 46 + n + e + c;
    }
    None
}

/// True when `target`, read relative to the directory of `name`, stays inside the package root.
fn symlink_stays_inside(name: &str, target: &str) -> bool {
    if target.starts_with('/') || target.contains('\0') {
        return false;
    }
    let mut depth: i64 = name.trim_end_matches('/').matches('/').count() as i64;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => depth += 1,
        }
    }
    true
}

/// Collects code chunks, refusing as soon as the total passes `MAX_ZIP_BYTES`.
#[derive(Debug, Default)]
pub struct CodeBuffer {
    bytes: Vec<u8>,
}

impl CodeBuffer {
    pub fn new() -> CodeBuffer {
        CodeBuffer::default()
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), CodeError> {
        if self.bytes.len() as u64 + chunk.len() as u64 > MAX_ZIP_BYTES {
            return Err(CodeError::TooBig);
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// Checks the collected zip; returns it with its digest.
    pub fn finish(self) -> Result<CheckedCode, CodeError> {
        check_zip(self.bytes)
    }
}

/// A zip that passed [`check_zip`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedCode {
    pub bytes: Vec<u8>,
    /// Lower-case hex sha256 of `bytes`.
    pub sha256: String,
    /// Sum of the entries' declared uncompressed sizes.
    pub unzipped_size: u64,
}

/// Checks size, format and entry names of a code zip.
pub fn check_zip(bytes: Vec<u8>) -> Result<CheckedCode, CodeError> {
    if bytes.is_empty() {
        return Err(CodeError::Empty);
    }
    if bytes.len() as u64 > MAX_ZIP_BYTES {
        return Err(CodeError::TooBig);
    }
    let mut archive = zip::ZipArchive::new(Cursor::new(&bytes[..]))
        .map_err(|e| CodeError::NotAZip(e.to_string()))?;
    // The zip crate keeps one entry per name, so duplicates are found in the raw central directory.
    if let Some(name) = first_duplicate_name(&bytes) {
        return Err(CodeError::Duplicate { name });
    }
    let mut total: u64 = 0;
    let mut seen = std::collections::HashSet::new();
    for i in 0..archive.len() {
        let (name, mode, compression, size) = {
            let entry = archive
                .by_index_raw(i)
                .map_err(|e| CodeError::NotAZip(e.to_string()))?;
            let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
            check_entry_name(&name, entry.name_raw())?;
            (
                name,
                entry.unix_mode().unwrap_or(0),
                entry.compression(),
                entry.size(),
            )
        };
        if !seen.insert(name.trim_end_matches('/').to_string()) {
            return Err(CodeError::Duplicate { name });
        }
        match compression {
            zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated => {}
            other => {
                return Err(CodeError::Compression {
                    name,
                    method: format!("{other:?}"),
                })
            }
        }
        if let Some(kind) = special_kind(mode) {
            return Err(CodeError::SpecialFile { name, kind });
        }
        if mode & S_IFMT == S_IFLNK {
            let mut target = String::new();
            archive
                .by_index(i)
                .map_err(|e| CodeError::NotAZip(e.to_string()))?
                .take(4096)
                .read_to_string(&mut target)
                .map_err(|e| CodeError::NotAZip(format!("symlink {name:?}: {e}")))?;
            if !symlink_stays_inside(&name, &target) {
                return Err(CodeError::SymlinkOutside { name, target });
            }
        }
        total = total.saturating_add(size);
        if total > MAX_UNZIPPED_BYTES {
            return Err(CodeError::UnzippedTooBig { total });
        }
    }
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(CheckedCode {
        bytes,
        sha256,
        unzipped_size: total,
    })
}

fn check_entry_name(name: &str, raw: &[u8]) -> Result<(), CodeError> {
    if raw.contains(&0) || name.contains('\0') {
        return Err(CodeError::NulInName {
            name: name.to_string(),
        });
    }
    let bytes = name.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if name.starts_with('/') || name.starts_with('\\') || drive {
        return Err(CodeError::AbsolutePath {
            name: name.to_string(),
        });
    }
    if name.split(['/', '\\']).any(|part| part == "..") {
        return Err(CodeError::ParentDir {
            name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn accepts_a_normal_zip_and_hashes_it() {
        let bytes = zip_of(&[
            ("app.py", b"def handler(e, c): return e\n"),
            ("lib/x.py", b""),
        ]);
        let checked = check_zip(bytes.clone()).unwrap();
        assert_eq!(checked.sha256, hex::encode(Sha256::digest(&bytes)));
        assert_eq!(checked.unzipped_size, 28);
        assert_eq!(checked.bytes, bytes);
    }

    #[test]
    fn refuses_zip_slip_and_absolute_paths() {
        let err = check_zip(zip_of(&[("../../etc/passwd", b"x")])).unwrap_err();
        assert_eq!(
            err,
            CodeError::ParentDir {
                name: "../../etc/passwd".into()
            }
        );
        assert!(err.to_string().contains("../../etc/passwd"));
        let err = check_zip(zip_of(&[("a/../../b", b"x")])).unwrap_err();
        assert!(matches!(err, CodeError::ParentDir { .. }));
        let err = check_zip(zip_of(&[("ok.py", b""), ("/etc/cron.d/x", b"x")])).unwrap_err();
        assert_eq!(
            err,
            CodeError::AbsolutePath {
                name: "/etc/cron.d/x".into()
            }
        );
        let err = check_zip(zip_of(&[("C:\\windows\\x", b"x")])).unwrap_err();
        assert!(matches!(err, CodeError::AbsolutePath { .. }));
        // `..` inside a name is fine.
        assert!(check_zip(zip_of(&[("a..b/c..", b"x")])).is_ok());
    }

    fn zip_with_modes(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
        let mut buf = Cursor::new(Vec::new());
        {
            let mut zw = zip::ZipWriter::new(&mut buf);
            for (name, data, mode) in entries {
                if mode & S_IFMT == S_IFLNK {
                    zw.add_symlink(
                        *name,
                        std::str::from_utf8(data).unwrap(),
                        SimpleFileOptions::default(),
                    )
                    .unwrap();
                } else {
                    zw.start_file(*name, SimpleFileOptions::default().unix_permissions(*mode))
                        .unwrap();
                    zw.write_all(data).unwrap();
                }
            }
            zw.finish().unwrap();
        }
        buf.into_inner()
    }

    #[test]
    fn refuses_symlinks_out_duplicates_and_special_files() {
        let ok = zip_with_modes(&[
            ("a/b.py", b"x", 0o644),
            ("a/link", b"b.py", S_IFLNK | 0o777),
        ]);
        assert!(check_zip(ok).is_ok());
        let inside = zip_with_modes(&[("a/link", b"../a/b.py", S_IFLNK | 0o777)]);
        assert!(check_zip(inside).is_ok());
        for target in ["/etc/passwd", "../../etc", "../x"] {
            let out = zip_with_modes(&[("link", target.as_bytes(), S_IFLNK | 0o777)]);
            let err = check_zip(out).unwrap_err();
            assert!(
                matches!(err, CodeError::SymlinkOutside { .. }),
                "{target}: {err}"
            );
            assert!(err.to_string().contains("outside the package"));
        }
        let dup = zip_of(&[("app.py", b"1"), ("./x", b"2")]);
        assert!(check_zip(dup).is_ok());
        let mut buf = Cursor::new(Vec::new());
        {
            let mut zw = zip::ZipWriter::new(&mut buf);
            zw.start_file("app.py", SimpleFileOptions::default())
                .unwrap();
            zw.write_all(b"1").unwrap();
            // The zip crate refuses duplicates itself; write the raw entry twice via a copy.
            zw.finish().unwrap();
        }
        let single = buf.into_inner();
        let doubled = duplicate_entry(&single);
        let err = check_zip(doubled).unwrap_err();
        assert!(matches!(err, CodeError::Duplicate { .. }), "{err}");
        let mut fifo = zip_with_modes(&[("pipe", b"", 0o644)]);
        // The zip crate writes permission bits only: set the file type in the central directory.
        let cd = fifo
            .windows(4)
            .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
            .unwrap();
        fifo[cd + 38..cd + 42].copy_from_slice(&(0o010_644u32 << 16).to_le_bytes());
        let err = check_zip(fifo).unwrap_err();
        assert!(err.to_string().contains("fifo"), "{err}");
    }

    /// Builds a zip whose central directory lists the same local entry twice.
    fn duplicate_entry(zip: &[u8]) -> Vec<u8> {
        let cd_sig = [0x50, 0x4b, 0x01, 0x02];
        let eocd_sig = [0x50, 0x4b, 0x05, 0x06];
        let cd = zip.windows(4).position(|w| w == cd_sig).unwrap();
        let eocd = zip.windows(4).rposition(|w| w == eocd_sig).unwrap();
        let entry = &zip[cd..eocd];
        let mut out = zip[..cd].to_vec();
        out.extend_from_slice(entry);
        out.extend_from_slice(entry);
        let mut end = zip[eocd..].to_vec();
        // entries on this disk, total entries, central directory size, its offset
        end[8..10].copy_from_slice(&2u16.to_le_bytes());
        end[10..12].copy_from_slice(&2u16.to_le_bytes());
        end[12..16].copy_from_slice(&((entry.len() * 2) as u32).to_le_bytes());
        end[16..20].copy_from_slice(&(cd as u32).to_le_bytes());
        out.extend_from_slice(&end);
        out
    }

    #[test]
    fn refuses_what_is_not_a_zip() {
        assert!(matches!(
            check_zip(b"hello, not a zip".to_vec()),
            Err(CodeError::NotAZip(_))
        ));
        assert_eq!(check_zip(Vec::new()), Err(CodeError::Empty));
    }

    #[test]
    fn refuses_too_big_zips_while_reading() {
        let mut buf = CodeBuffer::new();
        let mb = vec![0u8; 1024 * 1024];
        for _ in 0..50 {
            buf.push(&mb).unwrap();
        }
        assert_eq!(buf.push(&[0]), Err(CodeError::TooBig));
        assert!(check_zip(vec![0u8; MAX_ZIP_BYTES as usize + 1]) == Err(CodeError::TooBig));
    }

    #[test]
    fn refuses_declared_unzipped_size_over_the_limit() {
        // Highly compressible entries: 3 x 100 MB of zeros declares 300 MB unzipped.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1));
        let chunk = vec![0u8; 1024 * 1024];
        for i in 0..3 {
            w.start_file(format!("zeros{i}"), opts).unwrap();
            for _ in 0..100 {
                w.write_all(&chunk).unwrap();
            }
        }
        let bytes = w.finish().unwrap().into_inner();
        assert!(bytes.len() < 2 * 1024 * 1024);
        let err = check_zip(bytes).unwrap_err();
        assert!(matches!(err, CodeError::UnzippedTooBig { total } if total > MAX_UNZIPPED_BYTES));
    }
}
