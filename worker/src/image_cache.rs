//! Container images by manifest digest: each layer blob fetched from the controller
//! (`Cluster.FetchCode`) into a temporary file and sha256-verified, then the layers applied in order
//! (first walked with the shared checks of `lamina_proto::archive`, the ones the controller ran at
//! upload; then `unpack.rs`: whiteouts, never through a symlink, no devices, bounded size) into
//! `STATE_DIR/images/<sha256>/`, which becomes the read-only root of the image's sandboxes. Unpacked
//! once per digest (single flight); a failed unpack is removed and not cached. Each image is leased
//! to the sandboxes that use it and evicted under the worker's disk budget (`disk_cache.rs`) once
//! unused.
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lamina_proto::archive::{ArchiveError, LayerWalk};
use lamina_proto::auth::SignedChannel;
use lamina_proto::domain::ResolvedImage;
use lamina_proto::v1::cluster_client::ClusterClient;
use lamina_proto::v1::FetchCodeRequest;
use sha2::{Digest, Sha256};

use crate::disk_cache::{self, CacheLease, DiskBudget, Flights};

mod unpack;

pub use unpack::{apply_layer, prepare_mount_points};

/// The largest layer blob fetched.
pub const MAX_LAYER_BYTES: u64 = 10 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ImageCacheError {
    #[error("invalid image digest {0:?}: expected sha256:<64 lower-case hex digits>")]
    Digest(String),
    #[error("cannot fetch image layer {digest} from the controller: {status}")]
    Fetch {
        digest: String,
        status: Box<tonic::Status>,
    },
    #[error("image layer {digest} from the controller is over {max} bytes")]
    TooLarge { digest: String, max: u64 },
    #[error("image layer from the controller has sha256 {got}, expected {expected}: the blob store is corrupt")]
    Mismatch { expected: String, got: String },
    #[error("image layer {layer} entry {name:?} refused: {reason}")]
    Entry {
        layer: usize,
        name: String,
        reason: String,
    },
    #[error("image layer {layer} is not a valid tar: {detail}")]
    Layer { layer: usize, detail: String },
    #[error("image unpacks to more than {max} bytes")]
    Unpacked { max: u64 },
    #[error("i/o error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("image unpack task failed: {0}")]
    Join(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageCacheError + '_ {
    move |source| ImageCacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The hex part of `sha256:<hex>`, checked.
fn hex_digest(d: &str) -> Result<&str, ImageCacheError> {
    match d.strip_prefix("sha256:") {
        Some(h)
            if h.len() == 64
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(h)
        }
        _ => Err(ImageCacheError::Digest(d.to_string())),
    }
}

/// The image cache. Cheap to clone.
#[derive(Clone)]
pub struct ImageCache {
    root: PathBuf,
    client: ClusterClient<SignedChannel>,
    flights: Flights,
    budget: DiskBudget,
}

impl ImageCache {
    /// A cache under `root` (`STATE_DIR/images`); unfinished unpacks left by a previous run are
    /// removed (failures only logged: the directory is created when first used), finished ones
    /// adopted as unused under `budget`.
    pub fn new(
        root: PathBuf,
        client: ClusterClient<SignedChannel>,
        budget: DiskBudget,
    ) -> ImageCache {
        if let Ok(entries) = fs::read_dir(&root) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    if let Err(e) = fs::remove_dir_all(entry.path()) {
                        tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove an unfinished image unpack");
                    }
                }
            }
        }
        disk_cache::adopt_existing(&budget, &root, |n| {
            hex_digest(&format!("sha256:{n}")).is_ok()
        });
        ImageCache {
            root,
            client,
            flights: Flights::default(),
            budget,
        }
    }

    /// A lease on the directory holding the unpacked `image`, fetching and unpacking it first if
    /// needed. The directory is not evicted while the lease lives.
    pub async fn ensure(&self, image: &ResolvedImage) -> Result<CacheLease, ImageCacheError> {
        let hex = hex_digest(&image.digest)?.to_string();
        for d in &image.layer_digests {
            hex_digest(d)?;
        }
        let dest = self.root.join(&hex);
        let fetch = async {
            match self.budget.lease_cached(&dest) {
                Some(lease) => Ok(lease),
                None => self.fetch_and_unpack(image, &hex, dest.clone()).await,
            }
        };
        self.flights.run(&hex, fetch).await
    }

    async fn fetch_and_unpack(
        &self,
        image: &ResolvedImage,
        hex: &str,
        dest: PathBuf,
    ) -> Result<CacheLease, ImageCacheError> {
        fs::create_dir_all(&self.root).map_err(io_err(&self.root))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o755))
            .map_err(io_err(&self.root))?;
        let tmp = self
            .root
            .join(format!(".tmp-{hex}-{}", uuid::Uuid::new_v4().simple()));
        let result = self.fetch_and_unpack_in(image, &tmp, &dest).await;
        if tmp.exists() {
            if let Err(e) = fs::remove_dir_all(&tmp) {
                tracing::warn!(path = %tmp.display(), error = %e, "cannot remove an unfinished image unpack");
            }
        }
        let lease = result?;
        tracing::info!(digest = %image.digest, path = %dest.display(), "image unpacked");
        Ok(lease)
    }

    async fn fetch_and_unpack_in(
        &self,
        image: &ResolvedImage,
        tmp: &Path,
        dest: &Path,
    ) -> Result<CacheLease, ImageCacheError> {
        let rootfs = tmp.join("rootfs");
        fs::create_dir_all(&rootfs).map_err(io_err(&rootfs))?;
        fs::set_permissions(tmp, fs::Permissions::from_mode(0o700)).map_err(io_err(tmp))?;
        fs::set_permissions(&rootfs, fs::Permissions::from_mode(0o755)).map_err(io_err(&rootfs))?;
        let mut blobs = Vec::with_capacity(image.layer_digests.len());
        for (i, d) in image.layer_digests.iter().enumerate() {
            let path = tmp.join(format!("layer-{i}"));
            self.fetch(d, &path).await?;
            blobs.push(path);
        }
        let (rootfs2, dest2, budget) = (rootfs.clone(), dest.to_path_buf(), self.budget.clone());
        tokio::task::spawn_blocking(move || -> Result<CacheLease, ImageCacheError> {
            // The controller's upload checks, run again over every layer before anything is written.
            let mut walk = LayerWalk::default();
            for (i, blob) in blobs.iter().enumerate() {
                walk.layer(i, fs::File::open(blob).map_err(io_err(blob))?)?;
            }
            let mut written = 0u64;
            for (i, blob) in blobs.iter().enumerate() {
                apply_layer(&rootfs2, i, blob, &mut written)?;
                fs::remove_file(blob).map_err(io_err(blob))?;
            }
            prepare_mount_points(&rootfs2)?;
            fs::rename(&rootfs2, &dest2).map_err(io_err(&dest2))?;
            let lease = budget.insert(dest2.clone(), disk_cache::dir_size(&dest2));
            budget.evict();
            Ok(lease)
        })
        .await
        .map_err(|e| ImageCacheError::Join(e.to_string()))?
    }

    /// Streams blob `digest` into `path`, verifying its sha256.
    async fn fetch(&self, digest: &str, path: &Path) -> Result<(), ImageCacheError> {
        let hex = hex_digest(digest)?;
        let fetch_err = |status| ImageCacheError::Fetch {
            digest: digest.to_string(),
            status: Box::new(status),
        };
        let mut client = self.client.clone();
        let mut stream = client
            .fetch_code(FetchCodeRequest {
                sha256: hex.to_string(),
            })
            .await
            .map_err(fetch_err)?
            .into_inner();
        let mut file = fs::File::create(path).map_err(io_err(path))?;
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        while let Some(chunk) = stream.message().await.map_err(fetch_err)? {
            len += chunk.data.len() as u64;
            if len > MAX_LAYER_BYTES {
                return Err(ImageCacheError::TooLarge {
                    digest: digest.to_string(),
                    max: MAX_LAYER_BYTES,
                });
            }
            hasher.update(&chunk.data);
            file.write_all(&chunk.data).map_err(io_err(path))?;
        }
        file.flush().map_err(io_err(path))?;
        let got = hex::encode(hasher.finalize());
        if got != hex {
            return Err(ImageCacheError::Mismatch {
                expected: digest.to_string(),
                got: format!("sha256:{got}"),
            });
        }
        Ok(())
    }
}
