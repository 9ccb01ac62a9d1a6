//! Function code by digest: fetched from the controller (`Cluster.FetchCode`), sha256-verified, unzipped
//! safely into `STATE_DIR/code/<sha256>/` (world-readable, nothing escapes the root), cached for later
//! sandboxes. One fetch per digest at a time (single flight); a failed fetch is not cached. Each
//! directory is leased to the sandboxes that use it and evicted under the worker's disk budget
//! (`disk_cache.rs`) once unused.
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lamina_proto::archive::{self, ArchiveError, ZipKind};
use lamina_proto::auth::SignedChannel;
use lamina_proto::v1::cluster_client::ClusterClient;
use lamina_proto::v1::FetchCodeRequest;

use crate::disk_cache::{self, CacheLease, DiskBudget, Flights};
use lamina_proto::validate::{MAX_UNZIPPED_BYTES, MAX_ZIP_BYTES};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CodeCacheError {
    #[error("invalid code digest {0:?}: expected 64 lower-case hex digits")]
    Digest(String),
    #[error("cannot fetch code {sha256} from the controller: {status}")]
    Fetch {
        sha256: String,
        status: Box<tonic::Status>,
    },
    #[error("code {sha256} from the controller is over {max} bytes: check the controller's upload limit")]
    TooLargeZip { sha256: String, max: u64 },
    #[error(
        "code from the controller has sha256 {got}, expected {expected}: the blob store is corrupt"
    )]
    Mismatch { expected: String, got: String },
    #[error("invalid zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("zip entry {name:?} refused: {reason}")]
    Entry { name: String, reason: String },
    #[error("code unzips to more than {max} bytes: shrink the deployment package")]
    TooLarge { max: u64 },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("unzip task failed: {0}")]
    Join(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CodeCacheError + '_ {
    move |source| CodeCacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn entry_err(name: &str, reason: impl Into<String>) -> CodeCacheError {
    CodeCacheError::Entry {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// The code cache. Cheap to clone.
#[derive(Clone)]
pub struct CodeCache {
    root: PathBuf,
    client: ClusterClient<SignedChannel>,
    flights: Flights,
    budget: DiskBudget,
}

/// True for a lower-case hex sha256.
fn is_digest(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl CodeCache {
    /// A cache under `root` (`STATE_DIR/code`), created if missing, counted against `budget`;
    /// unfinished unzips are removed, finished ones adopted as unused.
    pub fn new(
        root: PathBuf,
        client: ClusterClient<SignedChannel>,
        budget: DiskBudget,
    ) -> Result<CodeCache, CodeCacheError> {
        fs::create_dir_all(&root).map_err(io_err(&root))?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).map_err(io_err(&root))?;
        for entry in fs::read_dir(&root).map_err(io_err(&root))? {
            let entry = entry.map_err(io_err(&root))?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let p = entry.path();
                fs::remove_dir_all(&p).map_err(io_err(&p))?;
            }
        }
        disk_cache::adopt_existing(&budget, &root, is_digest);
        Ok(CodeCache {
            root,
            client,
            flights: Flights::default(),
            budget,
        })
    }

    /// The disk budget this cache counts against (shared with the image cache).
    pub fn budget(&self) -> DiskBudget {
        self.budget.clone()
    }

    /// The cache's directory (`STATE_DIR/code`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The controller client it fetches with (shared by the image cache).
    pub fn client(&self) -> ClusterClient<SignedChannel> {
        self.client.clone()
    }

    /// A lease on the directory holding the unzipped code of `sha256`, fetching and unzipping it
    /// first if needed. The directory is not evicted while the lease lives.
    pub async fn ensure(&self, sha256: &str) -> Result<CacheLease, CodeCacheError> {
        if !is_digest(sha256) {
            return Err(CodeCacheError::Digest(sha256.to_string()));
        }
        let dest = self.root.join(sha256);
        let fetch = async {
            match self.budget.lease_cached(&dest) {
                Some(lease) => Ok(lease),
                None => self.fetch_and_unpack(sha256, dest.clone()).await,
            }
        };
        self.flights.run(sha256, fetch).await
    }

    async fn fetch_and_unpack(
        &self,
        sha256: &str,
        dest: PathBuf,
    ) -> Result<CacheLease, CodeCacheError> {
        let zip = self.fetch(sha256).await?;
        let tmp = self
            .root
            .join(format!(".tmp-{sha256}-{}", uuid::Uuid::new_v4().simple()));
        let (tmp2, dest2, budget) = (tmp.clone(), dest.clone(), self.budget.clone());
        let res = tokio::task::spawn_blocking(move || -> Result<CacheLease, CodeCacheError> {
            let size = unzip_safely(&zip, &tmp2, MAX_UNZIPPED_BYTES)?;
            // A directory left without an index entry (never expected) is replaced.
            if dest2.exists() {
                fs::remove_dir_all(&dest2).map_err(io_err(&dest2))?;
            }
            fs::rename(&tmp2, &dest2).map_err(io_err(&dest2))?;
            let lease = budget.insert(dest2, size);
            budget.evict();
            Ok(lease)
        })
        .await
        .map_err(|e| CodeCacheError::Join(e.to_string()))
        .and_then(|r| r);
        match res {
            Ok(lease) => {
                tracing::info!(sha256, path = %dest.display(), "code unpacked");
                Ok(lease)
            }
            Err(e) => {
                if tmp.exists() {
                    if let Err(rm) = fs::remove_dir_all(&tmp) {
                        tracing::warn!(path = %tmp.display(), error = %rm, "cannot remove unfinished unzip");
                    }
                }
                Err(e)
            }
        }
    }

    async fn fetch(&self, sha256: &str) -> Result<Vec<u8>, CodeCacheError> {
        let fetch_err = |status| CodeCacheError::Fetch {
            sha256: sha256.to_string(),
            status: Box::new(status),
        };
        let mut client = self.client.clone();
        let mut stream = client
            .fetch_code(FetchCodeRequest {
                sha256: sha256.to_string(),
            })
            .await
            .map_err(fetch_err)?
            .into_inner();
        let mut hasher = Sha256::new();
        let mut zip = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(fetch_err)? {
            if (zip.len() + chunk.data.len()) as u64 > MAX_ZIP_BYTES {
                return Err(CodeCacheError::TooLargeZip {
                    sha256: sha256.to_string(),
                    max: MAX_ZIP_BYTES,
                });
            }
            hasher.update(&chunk.data);
            zip.extend_from_slice(&chunk.data);
        }
        let got = hex::encode(hasher.finalize());
        if got != sha256 {
            return Err(CodeCacheError::Mismatch {
                expected: sha256.to_string(),
                got,
            });
        }
        Ok(zip)
    }
}

/// Makes sure `rel` (components below `root`) exists as a chain of real directories (never symlinks).
fn ensure_dirs(root: &Path, rel: &[String], display: &str) -> Result<PathBuf, CodeCacheError> {
    let mut path = root.to_path_buf();
    for part in rel {
        path.push(part);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(entry_err(
                    display,
                    format!("{part:?} is already a file or symlink"),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(io_err(&path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(io_err(&path))?;
            }
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Ok(path)
}

/// Unzips `zip` into `dest` (created, must not exist). The entries are first checked with the
/// shared archive checks (`lamina_proto::archive::check_zip`, the ones the controller ran at upload);
/// writing then still never follows a symlink (`create_new`, real parent directories) and stops once
/// more than `max_bytes` have been written. Directories get 0755, files 0644 (0755 with an exec bit).
/// Returns the bytes written.
pub fn unzip_safely(zip: &[u8], dest: &Path, max_bytes: u64) -> Result<u64, CodeCacheError> {
    let listing = archive::check_zip(zip, max_bytes)?;
    let mut archive = zip::ZipArchive::new(io::Cursor::new(zip))?;
    fs::create_dir(dest).map_err(io_err(dest))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755)).map_err(io_err(dest))?;
    let mut written: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    for e in &listing.entries {
        let Some((last, parent)) = e.parts.split_last() else {
            continue; // the root itself
        };
        if e.kind == ZipKind::Dir {
            ensure_dirs(dest, &e.parts, &e.name)?;
            continue;
        }
        let path = ensure_dirs(dest, parent, &e.name)?.join(last);
        let exists = |err: io::Error| {
            if err.kind() == io::ErrorKind::AlreadyExists {
                entry_err(&e.name, "duplicate entry")
            } else {
                io_err(&path)(err)
            }
        };
        match &e.kind {
            ZipKind::Dir => unreachable!("handled above"),
            ZipKind::Symlink { target } => {
                std::os::unix::fs::symlink(target, &path).map_err(exists)?;
            }
            ZipKind::File { exec, .. } => {
                // create_new: never follows a symlink planted at this name, refuses duplicates.
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(exists)?;
                let mut entry = archive.by_index(e.index)?;
                loop {
                    let n = entry.read(&mut buf).map_err(io_err(&path))?;
                    if n == 0 {
                        break;
                    }
                    written += n as u64;
                    if written > max_bytes {
                        return Err(CodeCacheError::TooLarge { max: max_bytes });
                    }
                    out.write_all(&buf[..n]).map_err(io_err(&path))?;
                }
                out.flush().map_err(io_err(&path))?;
                let mode = if *exec { 0o755 } else { 0o644 };
                out.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(io_err(&path))?;
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use zip::write::SimpleFileOptions;

    enum E<'a> {
        File(&'a str, &'a [u8], u32),
        Dir(&'a str),
        Link(&'a str, &'a str),
    }

    fn make_zip(entries: &[E]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for e in entries {
            match e {
                E::File(name, data, mode) => {
                    w.start_file(*name, SimpleFileOptions::default().unix_permissions(*mode))
                        .unwrap();
                    w.write_all(data).unwrap();
                }
                E::Dir(name) => w
                    .add_directory(*name, SimpleFileOptions::default())
                    .unwrap(),
                E::Link(name, target) => w
                    .add_symlink(*name, *target, SimpleFileOptions::default())
                    .unwrap(),
            }
        }
        w.finish().unwrap().into_inner()
    }

    /// A zip whose single entry has the raw name and unix mode given (the writer refuses such names).
    fn raw_zip(name: &[u8], mode: u32, data: &[u8]) -> Vec<u8> {
        let placeholder = vec![b'x'; name.len()];
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let opts = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .unix_permissions(0o644);
        w.start_file(String::from_utf8(placeholder.clone()).unwrap(), opts)
            .unwrap();
        w.write_all(data).unwrap();
        let mut bytes = w.finish().unwrap().into_inner();
        // Patch every occurrence of the placeholder name (local header and central directory).
        let mut i = 0;
        while i + placeholder.len() <= bytes.len() {
            if bytes[i..i + placeholder.len()] == placeholder[..] {
                bytes[i..i + placeholder.len()].copy_from_slice(name);
                i += placeholder.len();
            } else {
                i += 1;
            }
        }
        // Central directory header: external attributes at offset 38 hold the unix mode in the top 16 bits.
        let cd = bytes
            .windows(4)
            .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
            .unwrap();
        let attrs = (mode << 16).to_le_bytes();
        bytes[cd + 38..cd + 42].copy_from_slice(&attrs);
        bytes
    }

    fn unzip(zip: &[u8]) -> (tempfile::TempDir, Result<u64, CodeCacheError>) {
        let dir = tempfile::tempdir().unwrap();
        let res = unzip_safely(zip, &dir.path().join("root"), 1 << 20);
        (dir, res)
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn good_zip_unpacks_world_readable() {
        let zip = make_zip(&[
            E::File("app.py", b"def handler(e, c): return e\n", 0o600),
            E::File("bin/bootstrap", b"#!/bin/sh\n", 0o700),
            E::Dir("empty/"),
            E::File("lib/deep/mod.py", b"x = 1\n", 0o640),
            E::Link("lib/current", "deep"),
            E::Link("lib/deep/up", "../../app.py"),
        ]);
        let (dir, res) = unzip(&zip);
        assert_eq!(res.unwrap(), 28 + 10 + 6);
        let root = dir.path().join("root");
        assert_eq!(mode(&root), 0o755);
        assert_eq!(mode(&root.join("app.py")), 0o644);
        assert_eq!(mode(&root.join("bin/bootstrap")), 0o755);
        assert_eq!(mode(&root.join("bin")), 0o755);
        assert_eq!(mode(&root.join("empty")), 0o755);
        assert_eq!(mode(&root.join("lib/deep/mod.py")), 0o644);
        assert_eq!(
            fs::read_to_string(root.join("lib/current/mod.py")).unwrap(),
            "x = 1\n"
        );
        assert!(fs::read_to_string(root.join("lib/deep/up"))
            .unwrap()
            .starts_with("def handler"));
    }

    #[test]
    fn refuses_parent_and_absolute_paths() {
        for name in [
            &b"../evil"[..],
            b"a/../../evil",
            b"/etc/evil",
            b"ok/..\\..\\evil",
        ] {
            let (dir, res) = unzip(&raw_zip(name, 0o100644, b"x"));
            let err = res.unwrap_err().to_string();
            assert!(err.contains("refused"), "{name:?}: {err}");
            assert!(!dir.path().join("evil").exists());
        }
    }

    #[test]
    fn refuses_nul_in_names() {
        let (_dir, res) = unzip(&raw_zip(b"a\0b", 0o100644, b"x"));
        assert!(res.unwrap_err().to_string().contains("NUL"));
    }

    #[test]
    fn refuses_device_fifo_and_socket_entries() {
        for mode in [0o020644, 0o060644, 0o010644, 0o140644] {
            let (dir, res) = unzip(&raw_zip(b"dev0", mode, b""));
            let err = res.unwrap_err().to_string();
            assert!(err.contains("refused: it is a"), "{mode:o}: {err}");
            assert!(!dir.path().join("root/dev0").exists());
        }
        // The same builder with a regular mode is accepted: the refusal is about the type bits.
        let (_dir, res) = unzip(&raw_zip(b"dev0", 0o100644, b"x"));
        assert_eq!(res.unwrap(), 1);
    }

    #[test]
    fn refuses_escaping_symlinks() {
        for (name, target) in [
            ("abs", "/etc/passwd"),
            ("up", ".."),
            ("sub/up2", "../.."),
            ("sub/sneaky", "x/../../.."),
            ("sub/mid", "a/../b"),
        ] {
            let (_dir, res) = unzip(&make_zip(&[E::Link(name, target)]));
            let err = res.unwrap_err().to_string();
            assert!(err.contains("symlink target"), "{name} -> {target}: {err}");
        }
        let (_dir, res) = unzip(&make_zip(&[E::Link("sub/ok", "../top")]));
        assert!(res.is_ok());
    }

    #[test]
    fn refuses_writing_through_a_symlink() {
        // A link to a directory inside the root, then a file "through" it: never follow.
        let zip = make_zip(&[
            E::Dir("real/"),
            E::Link("l", "real"),
            E::File("l/f", b"x", 0o644),
        ]);
        let (dir, res) = unzip(&zip);
        assert!(res
            .unwrap_err()
            .to_string()
            .contains("its parent \"l\" is a symlink"));
        assert!(!dir.path().join("root/real/f").exists());
        // A file entry at a symlink's name must not write to the link's target. The writer refuses
        // duplicate names, so the third entry is renamed in the bytes (stored, so the name is unique).
        let stored =
            SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        w.start_file("target", stored).unwrap();
        w.write_all(b"orig").unwrap();
        w.add_symlink("linkxx", "target", stored).unwrap();
        w.start_file("LINKXX", stored).unwrap();
        w.write_all(b"new").unwrap();
        let mut bytes = w.finish().unwrap().into_inner();
        let mut i = 0;
        while let Some(pos) = bytes[i..].windows(6).position(|w| w == b"LINKXX") {
            bytes[i + pos..i + pos + 6].copy_from_slice(b"linkxx");
            i += pos + 6;
        }
        assert!(i > 0, "the name was patched");
        let (dir, res) = unzip(&bytes);
        // The shared checks see the name twice in the raw central directory: nothing is written.
        let err = res.unwrap_err().to_string();
        assert!(err.contains("more than once"), "{err}");
        assert!(!dir.path().join("root").exists());
    }

    #[test]
    fn stops_past_the_unzipped_limit() {
        let big = vec![0u8; 600 * 1024];
        let zip = make_zip(&[E::File("a", &big, 0o644), E::File("b", &big, 0o644)]);
        let (_dir, res) = unzip(&zip);
        assert!(matches!(
            res,
            Err(CodeCacheError::Archive(ArchiveError::UnzippedTooBig { max, .. })) if max == 1 << 20
        ));
        let (_dir, res) = unzip(&make_zip(&[E::File("a", &big, 0o644)]));
        assert_eq!(res.unwrap(), 600 * 1024);
    }

    #[test]
    fn refuses_garbage() {
        let (_dir, res) = unzip(b"not a zip at all");
        assert!(matches!(
            res,
            Err(CodeCacheError::Archive(ArchiveError::NotAZip(_)))
        ));
    }

    /// A loopback `Cluster` server standing in for the controller (the code cache is under test).
    mod fetch {
        use super::*;
        use lamina_proto::v1::cluster_server::{Cluster, ClusterServer};
        use lamina_proto::v1::{
            CodeChunk, HeartbeatRequest, HeartbeatResponse, RegisterWorkerRequest,
            RegisterWorkerResponse,
        };
        use std::collections::HashMap;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use tonic::{Request, Response, Status};

        struct Blobs {
            blobs: HashMap<String, Vec<u8>>,
            fetches: Arc<AtomicUsize>,
        }

        #[tonic::async_trait]
        impl Cluster for Blobs {
            async fn register_worker(
                &self,
                _: Request<RegisterWorkerRequest>,
            ) -> Result<Response<RegisterWorkerResponse>, Status> {
                Err(Status::unimplemented("not in this test"))
            }
            async fn heartbeat(
                &self,
                _: Request<HeartbeatRequest>,
            ) -> Result<Response<HeartbeatResponse>, Status> {
                Err(Status::unimplemented("not in this test"))
            }
            async fn allocate_addresses(
                &self,
                _: Request<lamina_proto::v1::AllocateAddressesRequest>,
            ) -> Result<Response<lamina_proto::v1::AllocateAddressesResponse>, Status> {
                Err(Status::unimplemented("not in this test"))
            }
            async fn release_addresses(
                &self,
                _: Request<lamina_proto::v1::ReleaseAddressesRequest>,
            ) -> Result<Response<lamina_proto::v1::ReleaseAddressesResponse>, Status> {
                Err(Status::unimplemented("not in this test"))
            }
            type FetchCodeStream =
                futures::stream::Iter<std::vec::IntoIter<Result<CodeChunk, Status>>>;
            async fn fetch_code(
                &self,
                req: Request<FetchCodeRequest>,
            ) -> Result<Response<Self::FetchCodeStream>, Status> {
                self.fetches.fetch_add(1, Ordering::SeqCst);
                // Slow enough that concurrent callers overlap.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let blob = self
                    .blobs
                    .get(&req.get_ref().sha256)
                    .ok_or_else(|| Status::not_found("no such blob"))?;
                let mut chunks: Vec<Result<CodeChunk, Status>> = Vec::new();
                for c in blob.chunks(7) {
                    chunks.push(Ok(CodeChunk { data: c.to_vec() }));
                }
                Ok(Response::new(futures::stream::iter(chunks)))
            }
        }

        fn sha(b: &[u8]) -> String {
            hex::encode(Sha256::digest(b))
        }

        #[tokio::test]
        async fn ensure_fetches_once_verifies_and_unpacks() {
            let good = make_zip(&[E::File("app.py", b"print(1)\n", 0o644)]);
            let good_sha = sha(&good);
            let lying_sha = sha(b"something else");
            let mut blobs = HashMap::new();
            blobs.insert(good_sha.clone(), good.clone());
            blobs.insert(lying_sha.clone(), good.clone());
            let fetches = Arc::new(AtomicUsize::new(0));
            let server = Blobs {
                blobs,
                fetches: fetches.clone(),
            };
            let creds = lamina_proto::auth::Credentials {
                access_key_id: lamina_proto::auth::CLUSTER_KEY_ID.to_string(),
                secret_access_key: "cluster-secret".to_string(),
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(lamina_proto::auth::Authenticated::new(
                        ClusterServer::new(server),
                        Arc::new(lamina_proto::auth::StaticKey(creds.clone())),
                    ))
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
            );
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_lazy();
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("code/.tmp-leftover")).unwrap();
            // The fetch is signed with the cluster credential, as in a real cluster.
            let client = ClusterClient::new(lamina_proto::auth::Signed::new(channel, Some(creds)));
            let budget = DiskBudget::new(1 << 30);
            let cache = CodeCache::new(dir.path().join("code"), client, budget).unwrap();
            assert!(
                !dir.path().join("code/.tmp-leftover").exists(),
                "unfinished unzips are removed"
            );

            let (a, b) = tokio::join!(cache.ensure(&good_sha), cache.ensure(&good_sha));
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(a.path(), b.path());
            let a = a.path().to_path_buf();
            assert_eq!(a, dir.path().join("code").join(&good_sha));
            assert_eq!(fs::read(a.join("app.py")).unwrap(), b"print(1)\n");
            assert_eq!(fetches.load(Ordering::SeqCst), 1, "single flight");
            cache.ensure(&good_sha).await.unwrap();
            assert_eq!(fetches.load(Ordering::SeqCst), 1, "cached");

            let err = cache.ensure(&lying_sha).await.unwrap_err();
            assert!(matches!(err, CodeCacheError::Mismatch { .. }), "{err}");
            assert!(!dir.path().join("code").join(&lying_sha).exists());

            let err = cache.ensure(&"a".repeat(64)).await.unwrap_err();
            assert!(matches!(err, CodeCacheError::Fetch { .. }), "{err}");
            let err = cache.ensure("../../etc").await.unwrap_err();
            assert!(matches!(err, CodeCacheError::Digest(_)), "{err}");
            let leftovers: Vec<_> = fs::read_dir(dir.path().join("code"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".tmp-"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    }
}
