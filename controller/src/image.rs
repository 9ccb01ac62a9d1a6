//! Container images uploaded as function code: an OCI image layout (tarred) or a `docker save`
//! archive. The upload is spooled to a temporary file ([`ImageUpload`]), then [`ImageUpload::finish`]
//! reads it with `oci-spec`: `index.json` -> manifest -> config + layers (or `manifest.json` for the
//! Docker form), verifies every blob's sha256 and size, every layer's uncompressed digest against the
//! config's `rootfs.diff_ids`, and walks every layer's entries as the worker will apply them
//! (`lamina_proto::archive::LayerWalk`, the same walk the worker runs before unpacking), so a hostile
//! image is refused at upload with a clear error and nothing stored.
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use lamina_proto::archive::{ArchiveError, LayerWalk};
use lamina_proto::domain::{ImageConfig, ResolvedImage};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use sha2::{Digest, Sha256};

/// Default of `--max-image-bytes`: the largest image upload (the tar as sent).
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 2 << 30;
/// Most layers accepted in one image.
pub const MAX_LAYERS: usize = 127;
/// The largest JSON document (index, manifest, config) read from an image.
const MAX_JSON_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image is required: send the image (an OCI layout tar or a docker save archive) as code_chunk messages")]
    Empty,
    #[error("image must be at most {max} bytes (--max-image-bytes), got more than that; make the image smaller")]
    TooBig { max: u64 },
    #[error("cannot spool the image upload to a temporary file: {0}")]
    Spool(io::Error),
    #[error("image is not a valid tar archive: {0}")]
    NotATar(String),
    #[error("a zip was sent where an image is expected: the function has package type Image; upload an OCI image layout (tarred) or a docker save archive")]
    ZipNotImage,
    #[error(
        "image archive has neither index.json (OCI image layout) nor manifest.json (docker save)"
    )]
    UnknownFormat,
    #[error("image {what} is missing from the archive (expected {path})")]
    Missing { what: String, path: String },
    #[error("image {what} is invalid: {detail}")]
    Invalid { what: String, detail: String },
    #[error(
        "image {what} has digest {got}, expected {expected}: the archive is corrupt or was altered"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        got: String,
    },
    #[error("image {what} is {got} bytes, its descriptor says {expected}")]
    SizeMismatch {
        what: String,
        expected: u64,
        got: u64,
    },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error("i/o error reading the spooled image: {0}")]
    Io(#[from] io::Error),
}

fn invalid(what: impl Into<String>, detail: impl ToString) -> ImageError {
    ImageError::Invalid {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// Collects an image upload in a temporary file, refusing as soon as it passes `max` bytes.
pub struct ImageUpload {
    file: File,
    len: u64,
    max: u64,
}

impl ImageUpload {
    pub fn new(max: u64) -> Result<ImageUpload, ImageError> {
        Ok(ImageUpload {
            file: tempfile::tempfile().map_err(ImageError::Spool)?,
            len: 0,
            max,
        })
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), ImageError> {
        if self.len + chunk.len() as u64 > self.max {
            return Err(ImageError::TooBig { max: self.max });
        }
        self.file.write_all(chunk).map_err(ImageError::Spool)?;
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Parses and checks the whole image (blocking: it reads and hashes every byte).
    pub fn finish(self) -> Result<CheckedImage, ImageError> {
        if self.len == 0 {
            return Err(ImageError::Empty);
        }
        let mut file = self.file;
        file.flush().map_err(ImageError::Spool)?;
        let mut magic = [0u8; 4];
        file.seek(SeekFrom::Start(0))?;
        if file.read(&mut magic)? == 4 && magic == *b"PK\x03\x04" {
            return Err(ImageError::ZipNotImage);
        }
        let archive = Archive::index(file)?;
        let parsed = if archive.has("index.json") {
            archive.oci_layout()?
        } else if archive.has("manifest.json") {
            archive.docker_save()?
        } else {
            return Err(ImageError::UnknownFormat);
        };
        parsed.check(archive)
    }
}

/// The image's own configuration (what the function's overrides apply to).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    pub entrypoint: Vec<String>,
    pub command: Vec<String>,
    pub working_directory: String,
    pub env: Vec<String>,
}

/// One layer blob inside the spooled archive.
#[derive(Debug, Clone)]
pub struct LayerBlob {
    /// sha256 of the blob (as stored and fetched), lower-case hex.
    pub sha256: String,
    offset: u64,
    pub size: u64,
}

/// An image that passed every check; its layers are read from the spooled archive when stored.
pub struct CheckedImage {
    /// sha256 of the manifest, lower-case hex: the function's `code_sha256`.
    pub manifest_sha256: String,
    pub manifest: Vec<u8>,
    pub defaults: ImageDefaults,
    pub layers: Vec<LayerBlob>,
    /// Bytes of regular files once every layer is applied.
    pub unpacked_size: u64,
    file: File,
}

impl std::fmt::Debug for CheckedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckedImage")
            .field("manifest_sha256", &self.manifest_sha256)
            .field("layers", &self.layers)
            .finish()
    }
}

impl CheckedImage {
    /// The bytes of layer `i` (blocking).
    pub fn read_layer(&self, i: usize) -> Result<Vec<u8>, ImageError> {
        let l = &self.layers[i];
        let mut buf = Vec::with_capacity(l.size as usize);
        let mut f = &self.file;
        f.seek(SeekFrom::Start(l.offset))?;
        f.take(l.size).read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// The image as a function runs it, with the function's overrides applied.
    pub fn resolve(&self, overrides: &ImageConfig) -> ResolvedImage {
        resolve(&self.manifest_sha256, self, overrides)
    }
}

fn resolve(manifest_sha256: &str, image: &CheckedImage, overrides: &ImageConfig) -> ResolvedImage {
    let d = &image.defaults;
    let mut r = ResolvedImage {
        digest: format!("sha256:{manifest_sha256}"),
        layer_digests: image
            .layers
            .iter()
            .map(|l| format!("sha256:{}", l.sha256))
            .collect(),
        env: d.env.clone(),
        unpacked_size: image.unpacked_size,
        image_defaults: ImageConfig {
            entrypoint: d.entrypoint.clone(),
            command: d.command.clone(),
            working_directory: d.working_directory.clone(),
        },
        ..ResolvedImage::default()
    };
    apply_overrides(&mut r, overrides);
    r
}

/// Sets the entrypoint, command and working directory of `r` from the image's own values
/// (`r.image_defaults`) and the function's `overrides`: a non-empty override wins; as in Docker,
/// an entrypoint override also drops the image's `Cmd`.
pub fn apply_overrides(r: &mut ResolvedImage, overrides: &ImageConfig) {
    let d = &r.image_defaults;
    r.entrypoint = if overrides.entrypoint.is_empty() {
        d.entrypoint.clone()
    } else {
        overrides.entrypoint.clone()
    };
    r.command = if !overrides.command.is_empty() {
        overrides.command.clone()
    } else if overrides.entrypoint.is_empty() {
        d.command.clone()
    } else {
        Vec::new()
    };
    r.working_directory = if overrides.working_directory.is_empty() {
        d.working_directory.clone()
    } else {
        overrides.working_directory.clone()
    };
}

/// The regular files (and links to them) of the outer archive by normalized name.
struct Archive {
    file: File,
    files: HashMap<String, (u64, u64)>,
}

fn normalize_outer(name: &str) -> String {
    name.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

impl Archive {
    fn index(mut file: File) -> Result<Archive, ImageError> {
        file.seek(SeekFrom::Start(0))?;
        let mut files = HashMap::new();
        let mut links = Vec::new();
        {
            let mut tar = tar::Archive::new(&file);
            let entries = tar
                .entries()
                .map_err(|e| ImageError::NotATar(e.to_string()))?;
            for entry in entries {
                let entry = entry.map_err(|e| ImageError::NotATar(e.to_string()))?;
                let name = normalize_outer(&String::from_utf8_lossy(&entry.path_bytes()));
                match entry.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        files.insert(name, (entry.raw_file_position(), entry.size()));
                    }
                    tar::EntryType::Symlink | tar::EntryType::Link => {
                        if let Some(target) = entry.link_name_bytes() {
                            links.push((
                                name,
                                entry.header().entry_type(),
                                String::from_utf8_lossy(&target).into_owned(),
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
        // `docker save` links repeated layers to the first copy: one level is followed.
        for (name, kind, target) in links {
            let resolved = if kind == tar::EntryType::Symlink && !target.starts_with('/') {
                let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
                for p in target.split('/') {
                    match p {
                        "" | "." => {}
                        ".." => {
                            parts.pop();
                        }
                        p => parts.push(p),
                    }
                }
                parts.join("/")
            } else {
                normalize_outer(&target)
            };
            if let Some(pos) = files.get(&resolved).copied() {
                files.insert(name, pos);
            }
        }
        Ok(Archive { file, files })
    }

    fn has(&self, name: &str) -> bool {
        self.files.contains_key(name)
    }

    fn reader(&self, what: &str, name: &str) -> Result<(io::Take<&File>, u64), ImageError> {
        let (offset, size) = *self.files.get(name).ok_or_else(|| ImageError::Missing {
            what: what.to_string(),
            path: name.to_string(),
        })?;
        let mut f = &self.file;
        f.seek(SeekFrom::Start(offset))?;
        Ok((f.take(size), size))
    }

    fn read_small(&self, what: &str, name: &str) -> Result<Vec<u8>, ImageError> {
        let (mut r, size) = self.reader(what, name)?;
        if size > MAX_JSON_BYTES {
            return Err(invalid(
                what,
                format!("{size} bytes is too large for a JSON document"),
            ));
        }
        let mut buf = Vec::with_capacity(size as usize);
        r.read_to_end(&mut buf)?;
        Ok(buf)
    }

    /// A blob of an OCI layout, checked against its descriptor.
    fn oci_blob(&self, what: &str, d: &Descriptor) -> Result<Vec<u8>, ImageError> {
        let hex = descriptor_sha256(what, d)?;
        let bytes = self.read_small(what, &format!("blobs/sha256/{hex}"))?;
        check_blob(what, &bytes, &hex, d.size())?;
        Ok(bytes)
    }

    fn oci_layout(&self) -> Result<Parsed, ImageError> {
        let index =
            serde_json::from_slice::<ImageIndex>(&self.read_small("index.json", "index.json")?)
                .map_err(|e| invalid("index.json", e))?;
        let mut descriptor = pick_manifest(index.manifests())?;
        // One nested index (an image index pointing at the manifests) is followed.
        if *descriptor.media_type() == MediaType::ImageIndex {
            let nested = self.oci_blob("nested index", &descriptor)?;
            let nested = serde_json::from_slice::<ImageIndex>(&nested)
                .map_err(|e| invalid("nested index", e))?;
            descriptor = pick_manifest(nested.manifests())?;
        }
        let manifest_bytes = self.oci_blob("manifest", &descriptor)?;
        let manifest = serde_json::from_slice::<ImageManifest>(&manifest_bytes)
            .map_err(|e| invalid("manifest", e))?;
        let config = self.oci_blob("config", manifest.config())?;
        let mut layers = Vec::new();
        for (i, l) in manifest.layers().iter().enumerate() {
            let what = format!("layer {i}");
            let hex = descriptor_sha256(&what, l)?;
            layers.push((format!("blobs/sha256/{hex}"), Some((hex, l.size()))));
        }
        Ok(Parsed {
            manifest: manifest_bytes,
            config,
            layers,
        })
    }

    fn docker_save(&self) -> Result<Parsed, ImageError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            layers: Vec<String>,
        }
        let raw = self.read_small("manifest.json", "manifest.json")?;
        let entries: Vec<Entry> =
            serde_json::from_slice(&raw).map_err(|e| invalid("manifest.json", e))?;
        let [entry] = <[Entry; 1]>::try_from(entries).map_err(|v| {
            invalid(
                "manifest.json",
                format!("holds {} images; save exactly one image", v.len()),
            )
        })?;
        let config_name = normalize_outer(&entry.config);
        let config = self.read_small("config", &config_name)?;
        if let Some(hex) = hex_in_name(&config_name) {
            check_blob("config", &config, &hex, config.len() as u64)?;
        }
        let layers = entry
            .layers
            .iter()
            .map(|l| {
                let name = normalize_outer(l);
                let expected = hex_in_name(&name).map(|h| (h, u64::MAX));
                (name, expected)
            })
            .collect::<Vec<_>>();
        Ok(Parsed {
            manifest: Vec::new(),
            config,
            layers,
        })
    }
}

/// A 64-hex-digit name component (`blobs/sha256/<hex>`, `<hex>.json`): the blob's digest.
fn hex_in_name(name: &str) -> Option<String> {
    let last = name.rsplit('/').next()?;
    let stem = last.strip_suffix(".json").unwrap_or(last);
    let ok = stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit());
    (ok && (name.starts_with("blobs/sha256/") || last.ends_with(".json")))
        .then(|| stem.to_ascii_lowercase())
}

fn pick_manifest(manifests: &[Descriptor]) -> Result<Descriptor, ImageError> {
    match manifests {
        [] => Err(invalid("index", "lists no manifest")),
        [one] => Ok(one.clone()),
        many => many
            .iter()
            .find(|d| {
                d.platform().as_ref().is_some_and(|p| {
                    p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"
                })
            })
            .cloned()
            .ok_or_else(|| {
                invalid(
                    "index",
                    format!(
                        "lists {} manifests and none for linux/amd64; save one image",
                        many.len()
                    ),
                )
            }),
    }
}

fn descriptor_sha256(what: &str, d: &Descriptor) -> Result<String, ImageError> {
    d.as_digest_sha256()
        .map(str::to_string)
        .ok_or_else(|| invalid(what, format!("digest {} is not sha256", d.digest())))
}

fn check_blob(what: &str, bytes: &[u8], hex: &str, size: u64) -> Result<(), ImageError> {
    let got = hex::encode(Sha256::digest(bytes));
    if got != hex {
        return Err(ImageError::DigestMismatch {
            what: what.to_string(),
            expected: format!("sha256:{hex}"),
            got: format!("sha256:{got}"),
        });
    }
    if size != u64::MAX && bytes.len() as u64 != size {
        return Err(ImageError::SizeMismatch {
            what: what.to_string(),
            expected: size,
            got: bytes.len() as u64,
        });
    }
    Ok(())
}

/// What the format-specific parse found, before the layers are read.
struct Parsed {
    /// The manifest as stored (empty for a docker-save archive: one is made from the blobs).
    manifest: Vec<u8>,
    config: Vec<u8>,
    /// Each layer's name in the archive and, when known, its expected sha256 and size.
    layers: Vec<(String, Option<(String, u64)>)>,
}

impl Parsed {
    fn check(self, archive: Archive) -> Result<CheckedImage, ImageError> {
        let config = parse_config(&self.config)?;
        if self.layers.len() > MAX_LAYERS {
            return Err(invalid(
                "manifest",
                format!(
                    "has {} layers, at most {MAX_LAYERS} are supported",
                    self.layers.len()
                ),
            ));
        }
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != self.layers.len() {
            return Err(invalid(
                "config",
                format!(
                    "rootfs.diff_ids lists {} layers, the manifest {}",
                    diff_ids.len(),
                    self.layers.len()
                ),
            ));
        }
        let mut walk = LayerWalk::default();
        let mut layers = Vec::new();
        for (i, (name, expected)) in self.layers.iter().enumerate() {
            let what = format!("layer {i}");
            let (reader, size) = archive.reader(&what, name)?;
            let offset = archive.files[name].0;
            let (sha256, diff_id) = walk.layer(i, reader)?;
            if let Some((hex, want_size)) = expected {
                if &sha256 != hex {
                    return Err(ImageError::DigestMismatch {
                        what,
                        expected: format!("sha256:{hex}"),
                        got: format!("sha256:{sha256}"),
                    });
                }
                if *want_size != u64::MAX && *want_size != size {
                    return Err(ImageError::SizeMismatch {
                        what,
                        expected: *want_size,
                        got: size,
                    });
                }
            }
            let want_diff = diff_ids[i].trim_start_matches("sha256:");
            if diff_id != want_diff {
                return Err(ImageError::DigestMismatch {
                    what: format!("{what} (uncompressed, rootfs.diff_ids)"),
                    expected: diff_ids[i].clone(),
                    got: format!("sha256:{diff_id}"),
                });
            }
            layers.push(LayerBlob {
                sha256,
                offset,
                size,
            });
        }
        let manifest = if self.manifest.is_empty() {
            docker_manifest(&self.config, &layers, &archive)?
        } else {
            self.manifest
        };
        let c = config.config().clone().unwrap_or_default();
        let defaults = ImageDefaults {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            command: c.cmd().clone().unwrap_or_default(),
            working_directory: c.working_dir().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
        };
        if defaults.entrypoint.is_empty() && defaults.command.is_empty() {
            tracing::debug!("image has neither Entrypoint nor Cmd: the function must set one");
        }
        Ok(CheckedImage {
            manifest_sha256: hex::encode(Sha256::digest(&manifest)),
            manifest,
            defaults,
            layers,
            unpacked_size: walk.unpacked_size(),
            file: archive.file,
        })
    }
}

/// The image configuration. oci-spec 0.7 requires `history`, which the image spec makes optional:
/// a config without one gets an empty one.
fn parse_config(bytes: &[u8]) -> Result<ImageConfiguration, ImageError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| invalid("config", e))?;
    if let Some(obj) = value.as_object_mut() {
        obj.entry("history")
            .or_insert_with(|| serde_json::json!([]));
    }
    serde_json::from_value(value).map_err(|e| invalid("config", e))
}

/// The OCI manifest of a docker-save archive's image, built from its blobs (its digest names it).
fn docker_manifest(
    config: &[u8],
    layers: &[LayerBlob],
    archive: &Archive,
) -> Result<Vec<u8>, ImageError> {
    let mut out_layers = Vec::new();
    for l in layers {
        let mut magic = [0u8; 2];
        let mut f = &archive.file;
        f.seek(SeekFrom::Start(l.offset))?;
        let gz = f.take(2).read(&mut magic)? == 2 && magic == [0x1f, 0x8b];
        out_layers.push(serde_json::json!({
            "mediaType": if gz { "application/vnd.oci.image.layer.v1.tar+gzip" } else { "application/vnd.oci.image.layer.v1.tar" },
            "digest": format!("sha256:{}", l.sha256),
            "size": l.size,
        }));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", hex::encode(Sha256::digest(config))),
            "size": config.len(),
        },
        "layers": out_layers,
    });
    serde_json::to_vec(&manifest).map_err(|e| invalid("manifest", e))
}

#[cfg(test)]
#[path = "image_tests.rs"]
mod tests;
