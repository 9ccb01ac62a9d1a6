//! Function code: a directory zipped in memory, or a zip file read as is.
use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use lamina_proto::validate::MAX_ZIP_BYTES;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::Error;

/// The first bytes of a zip with at least one entry (local file header signature).
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads the code given with `--code`: a directory is zipped with [`zip_dir`]; a file must be a zip
/// (checked by its magic bytes) and is returned as is; anything else is an error naming `--code`.
pub fn load_code(path: &Path) -> Result<Vec<u8>, Error> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Code(format!(
                "--code {} does not exist; give a directory or a zip file",
                path.display()
            )))
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    if meta.is_dir() {
        return zip_dir(path);
    }
    if !meta.is_file() {
        return Err(Error::Code(format!(
            "--code {} is neither a directory nor a regular file; give a directory or a zip file",
            path.display()
        )));
    }
    if meta.len() > MAX_ZIP_BYTES {
        return Err(Error::Code(format!(
            "--code {} is {} bytes, more than the {MAX_ZIP_BYTES} bytes a zip may have; make it smaller",
            path.display(),
            meta.len()
        )));
    }
    let bytes = fs::read(path).map_err(io_err(path))?;
    if !bytes.starts_with(ZIP_MAGIC) {
        return Err(Error::Code(format!(
            "--code {} is not a zip file (it does not start with the zip signature PK\\x03\\x04); \
             give a directory or a non-empty zip file",
            path.display()
        )));
    }
    Ok(bytes)
}

/// Zips the contents of `dir` in memory (the directory itself is the zip's root). Regular files and
/// directories are stored with their unix permissions (an executable `bootstrap` stays executable);
/// entries are sorted and timestamps fixed, so the same tree gives the same zip (and code sha256).
/// Symlinks and special files are refused.
pub fn zip_dir(dir: &Path) -> Result<Vec<u8>, Error> {
    let meta = fs::metadata(dir).map_err(io_err(dir))?;
    if !meta.is_dir() {
        return Err(Error::Code(format!(
            "{} is not a directory; give the directory that holds the function's code",
            dir.display()
        )));
    }
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    add_dir(&mut writer, dir, dir)?;
    let cursor = writer
        .finish()
        .map_err(|e| Error::Code(format!("cannot zip {}: {e}", dir.display())))?;
    let bytes = cursor.into_inner();
    if bytes.len() as u64 > MAX_ZIP_BYTES {
        return Err(Error::Code(format!(
            "the zip of {} is {} bytes, more than the {MAX_ZIP_BYTES} bytes allowed; remove files \
             the function does not need",
            dir.display(),
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn options(mode: u32) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::default())
        .unix_permissions(mode & 0o7777)
}

fn add_dir(writer: &mut ZipWriter<Cursor<Vec<u8>>>, root: &Path, dir: &Path) -> Result<(), Error> {
    let mut entries = fs::read_dir(dir)
        .map_err(io_err(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(dir))?;
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(root).expect("entry is under the root");
        let name = rel.to_str().ok_or_else(|| {
            Error::Code(format!(
                "file name {} in the code directory is not UTF-8; rename it",
                path.display()
            ))
        })?;
        let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
        let mode = meta.permissions().mode();
        let zip_err = |e: zip::result::ZipError| {
            Error::Code(format!("cannot add {} to the zip: {e}", path.display()))
        };
        let ft = meta.file_type();
        if ft.is_symlink() {
            return Err(Error::Code(format!(
                "{} is a symlink; symlinks are not supported in function code: replace it with the \
                 file or directory it points to",
                path.display()
            )));
        } else if ft.is_dir() {
            writer
                .add_directory(format!("{name}/"), options(mode))
                .map_err(zip_err)?;
            add_dir(writer, root, &path)?;
        } else if ft.is_file() {
            let data = fs::read(&path).map_err(io_err(&path))?;
            writer
                .start_file(
                    name,
                    options(mode).large_file(data.len() as u64 >= u32::MAX as u64),
                )
                .map_err(zip_err)?;
            writer.write_all(&data).map_err(io_err(&path))?;
        } else {
            return Err(Error::Code(format!(
                "{} is not a regular file or directory (a socket, fifo or device); remove it from \
                 the code directory",
                path.display()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Read;

    fn write(path: &Path, data: &str, mode: u32) {
        fs::write(path, data).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// name -> (mode & 0o7777, is_dir, contents)
    fn unzip(bytes: &[u8]) -> BTreeMap<String, (u32, bool, String)> {
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let mut out = BTreeMap::new();
        for i in 0..archive.len() {
            let mut f = archive.by_index(i).unwrap();
            let mut s = String::new();
            f.read_to_string(&mut s).unwrap();
            let mode = f.unix_mode().unwrap() & 0o7777;
            out.insert(f.name().to_string(), (mode, f.is_dir(), s));
        }
        out
    }

    fn sample_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("bootstrap"), "#!/bin/sh\necho hi\n", 0o755);
        write(&d.join("handler.py"), "def h(e, c): return e\n", 0o644);
        fs::create_dir_all(d.join("lib/pkg")).unwrap();
        write(&d.join("lib/pkg/mod.py"), "X = 1\n", 0o600);
        fs::set_permissions(d.join("lib"), fs::Permissions::from_mode(0o750)).unwrap();
        dir
    }

    #[test]
    fn zip_dir_round_trip_keeps_modes_and_nested_paths() {
        let dir = sample_tree();
        let entries = unzip(&zip_dir(dir.path()).unwrap());
        let names: Vec<&str> = entries.keys().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "bootstrap",
                "handler.py",
                "lib/",
                "lib/pkg/",
                "lib/pkg/mod.py"
            ]
        );
        assert_eq!(
            entries["bootstrap"],
            (0o755, false, "#!/bin/sh\necho hi\n".into())
        );
        assert_eq!(entries["handler.py"].0, 0o644);
        assert_eq!(entries["lib/"].0, 0o750);
        assert!(entries["lib/"].1);
        assert_eq!(entries["lib/pkg/mod.py"], (0o600, false, "X = 1\n".into()));
    }

    #[test]
    fn zip_dir_is_deterministic() {
        let dir = sample_tree();
        assert_eq!(zip_dir(dir.path()).unwrap(), zip_dir(dir.path()).unwrap());
    }

    #[test]
    fn zip_dir_refuses_symlinks() {
        let dir = sample_tree();
        std::os::unix::fs::symlink("handler.py", dir.path().join("link.py")).unwrap();
        let err = zip_dir(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Code(_)), "{err:?}");
        assert!(err.to_string().contains("link.py is a symlink"), "{err}");
    }

    #[test]
    fn load_code_zips_a_directory() {
        let dir = sample_tree();
        assert_eq!(load_code(dir.path()).unwrap(), zip_dir(dir.path()).unwrap());
    }

    #[test]
    fn load_code_reads_a_zip_as_is() {
        let dir = sample_tree();
        let zip = zip_dir(dir.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("code.zip");
        fs::write(&file, &zip).unwrap();
        assert_eq!(load_code(&file).unwrap(), zip);
    }

    #[test]
    fn load_code_refuses_a_non_zip_file() {
        let out = tempfile::tempdir().unwrap();
        let file = out.path().join("handler.py");
        fs::write(&file, "def h(e, c): return e\n").unwrap();
        let err = load_code(&file).unwrap_err();
        assert!(matches!(err, Error::Code(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("--code") && msg.contains("not a zip"), "{msg}");
    }

    #[test]
    fn load_code_refuses_a_missing_path() {
        let out = tempfile::tempdir().unwrap();
        let err = load_code(&out.path().join("nope")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--code") && msg.contains("does not exist"),
            "{msg}"
        );
    }
}
