//! Checks on uploaded code: a zip of at most 50 MB whose entries declare at most 250 MB unzipped,
//! with relative, NUL-free names that stay inside the code directory. The worker unzips it again
//! with its own checks; these give the user a clear answer at upload time.
use std::io::Cursor;

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
    let mut total: u64 = 0;
    for i in 0..archive.len() {
        let entry = archive
            .by_index_raw(i)
            .map_err(|e| CodeError::NotAZip(e.to_string()))?;
        let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
        check_entry_name(&name, entry.name_raw())?;
        match entry.compression() {
            zip::CompressionMethod::Stored | zip::CompressionMethod::Deflated => {}
            other => {
                return Err(CodeError::Compression {
                    name,
                    method: format!("{other:?}"),
                })
            }
        }
        total = total.saturating_add(entry.size());
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
