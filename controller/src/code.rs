//! Checks on uploaded code: a zip of at most 50 MB whose entries pass the shared archive checks
//! (`lamina_proto::archive::check_zip`: names, types, symlink targets, duplicates, writes through
//! links, at most 100k entries and 250 MB declared unzipped). The worker runs the same checks before
//! it unzips, so what is accepted here never fails at first invoke.
use lamina_proto::archive::{self, ArchiveError};
use lamina_proto::validate::{MAX_UNZIPPED_BYTES, MAX_ZIP_BYTES};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("code is required: send the zip as code_chunk messages")]
    Empty,
    #[error("code zip must be at most {MAX_ZIP_BYTES} bytes (50 MB), got more than that; make the package smaller")]
    TooBig,
    #[error(transparent)]
    Archive(#[from] ArchiveError),
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

/// Checks size, format and entries of a code zip.
pub fn check_zip(bytes: Vec<u8>) -> Result<CheckedCode, CodeError> {
    if bytes.is_empty() {
        return Err(CodeError::Empty);
    }
    if bytes.len() as u64 > MAX_ZIP_BYTES {
        return Err(CodeError::TooBig);
    }
    let listing = archive::check_zip(&bytes, MAX_UNZIPPED_BYTES)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    Ok(CheckedCode {
        bytes,
        sha256,
        unzipped_size: listing.unzipped_size,
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Write};

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
    fn refuses_what_the_worker_would_refuse() {
        // The entry checks themselves are tested in `lamina_proto::archive`: here, that upload uses them.
        let err = check_zip(zip_of(&[("../../etc/passwd", b"x")])).unwrap_err();
        assert!(matches!(
            err,
            CodeError::Archive(ArchiveError::ZipEntry { .. })
        ));
        assert!(
            err.to_string().contains("\"../../etc/passwd\" refused"),
            "{err}"
        );
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.add_symlink("link", "d/s/..", SimpleFileOptions::default())
            .unwrap();
        let err = check_zip(w.finish().unwrap().into_inner()).unwrap_err();
        assert!(
            err.to_string().contains("\"link\" refused: symlink target"),
            "{err}"
        );
    }

    #[test]
    fn refuses_what_is_not_a_zip() {
        assert!(matches!(
            check_zip(b"hello, not a zip".to_vec()),
            Err(CodeError::Archive(ArchiveError::NotAZip(_)))
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
        assert!(matches!(
            err,
            CodeError::Archive(ArchiveError::UnzippedTooBig { total, .. }) if total > MAX_UNZIPPED_BYTES
        ));
    }
}
