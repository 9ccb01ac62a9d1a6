//! Layers: publish, list, get and delete layer versions, and what a function's `layers` resolve
//! to. A function keeps a copy of each layer version it attaches (ARN, zip digest, sizes), so
//! deleting a layer version never breaks a function that uses it (Lambda does the same); the zip
//! stays stored while any function, version or layer version refers to it.
use std::io::Cursor;

use lamina_proto::domain::{parse_layer_version_arn, FunctionLayer, LayerVersion, Runtime};
use lamina_proto::v1;
use lamina_proto::validate::{self, ValidationError, MAX_UNZIPPED_BYTES};

use super::{now_ms, ApiError, Shared};
use crate::code::CheckedCode;
use crate::store::NewLayerVersion;

/// Most compatible runtimes a layer version may list (Lambda's limit).
const MAX_COMPATIBLE_RUNTIMES: usize = 15;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer version {0} not found: `fnctl layer versions NAME` lists what exists")]
    NotFound(String),
    /// A function names a layer version that does not exist (a bad parameter of the function,
    /// not a missing resource of the call: Lambda's InvalidParameterValueException).
    #[error("layer version {0} does not exist: publish it first or attach another version")]
    AttachMissing(String),
    #[error(
        "function code ({code} bytes unzipped) and its layers ({layers} bytes unzipped) come to \
         {} bytes, more than the {MAX_UNZIPPED_BYTES} bytes (250 MB) limit: use fewer or smaller \
         layers", code + layers
    )]
    TooLarge { code: u64, layers: u64 },
}

/// What a PublishLayerVersion declares besides the zip.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerSpec {
    pub layer_name: String,
    pub description: String,
    pub compatible_runtimes: Vec<String>,
    pub license_info: String,
    pub compatible_architectures: Vec<String>,
}

impl From<v1::PublishLayerVersionSpec> for LayerSpec {
    fn from(s: v1::PublishLayerVersionSpec) -> Self {
        LayerSpec {
            layer_name: s.layer_name,
            description: s.description,
            compatible_runtimes: s.compatible_runtimes,
            license_info: s.license_info,
            compatible_architectures: s.compatible_architectures,
        }
    }
}

/// Checks `spec`; its compatible runtimes, parsed and without repeats.
pub(crate) fn check_spec(spec: &LayerSpec) -> Result<Vec<Runtime>, ApiError> {
    validate::layer_name(&spec.layer_name)?;
    if spec.description.len() > 256 {
        return Err(ValidationError::new(
            "description",
            format!(
                "description must be at most 256 characters, got {}",
                spec.description.len()
            ),
        )
        .into());
    }
    if spec.compatible_runtimes.len() > MAX_COMPATIBLE_RUNTIMES {
        return Err(ValidationError::new(
            "compatible_runtimes",
            format!(
                "at most {MAX_COMPATIBLE_RUNTIMES} compatible runtimes, got {}",
                spec.compatible_runtimes.len()
            ),
        )
        .into());
    }
    if spec.license_info.len() > 512 {
        return Err(ValidationError::new(
            "license_info",
            format!(
                "license info must be at most 512 characters, got {}",
                spec.license_info.len()
            ),
        )
        .into());
    }
    validate::architectures(&spec.compatible_architectures)?;
    let mut runtimes = Vec::new();
    for r in &spec.compatible_runtimes {
        let r = validate::runtime(r).map_err(|e| {
            ValidationError::new("compatible_runtimes", format!("compatible {}", e.message))
        })?;
        if !runtimes.contains(&r) {
            runtimes.push(r);
        }
    }
    Ok(runtimes)
}

/// Publishes the next version of a layer from a whole zip (the REST API's `Content.ZipFile`).
pub(crate) async fn publish_zip(
    shared: &Shared,
    spec: LayerSpec,
    zip: Vec<u8>,
) -> Result<LayerVersion, ApiError> {
    let runtimes = check_spec(&spec)?;
    let zip = super::check_code(zip).await?;
    publish_checked(shared, spec, runtimes, zip).await
}

/// Publishes the next version of a layer from a checked spec (`runtimes`: [`check_spec`]'s) and
/// a checked zip.
pub(crate) async fn publish_checked(
    shared: &Shared,
    spec: LayerSpec,
    runtimes: Vec<Runtime>,
    zip: CheckedCode,
) -> Result<LayerVersion, ApiError> {
    let new = NewLayerVersion {
        name: spec.layer_name,
        description: spec.description,
        compatible_runtimes: runtimes,
        code_sha256: zip.sha256.clone(),
        unzipped_size: zip.unzipped_size,
        created_ms: now_ms(),
        license_info: spec.license_info,
        compatible_architectures: spec.compatible_architectures,
    };
    let stored = shared
        .store(move |s| s.publish_layer_version(&new, &zip.bytes))
        .await?;
    tracing::info!(layer = %stored.arn(), sha256 = %stored.code_sha256, "layer version published");
    Ok(stored)
}

/// `(name, version)` from a name and a version, or from a layer version ARN (version 0).
fn name_and_version(name: &str, version: u32) -> Result<(String, u32), ApiError> {
    if name.starts_with("arn:") && version == 0 {
        return parse_layer_version_arn(name).ok_or_else(|| {
            ValidationError::new(
                "layer_name",
                format!("{name:?} is not a layer version ARN of this cluster"),
            )
            .into()
        });
    }
    validate::layer_name(name)?;
    if version == 0 {
        return Err(ValidationError::new(
            "version",
            "give the layer version number (1 or more), or a layer version ARN as the name",
        )
        .into());
    }
    Ok((name.to_string(), version))
}

async fn lookup(shared: &Shared, name: String, version: u32) -> Result<LayerVersion, ApiError> {
    let arn = lamina_proto::domain::layer_version_arn(&name, version);
    shared
        .store(move |s| s.get_layer_version(&name, version))
        .await?
        .ok_or_else(|| LayerError::NotFound(arn).into())
}

/// Version `version` of layer `name` (or, with version 0, the layer version ARN `name`).
pub(crate) async fn get(
    shared: &Shared,
    name: &str,
    version: u32,
) -> Result<LayerVersion, ApiError> {
    let (name, version) = name_and_version(name, version)?;
    lookup(shared, name, version).await
}

/// The newest version of every layer.
pub(crate) async fn list_layers(shared: &Shared) -> Result<Vec<LayerVersion>, ApiError> {
    shared.store(|s| s.list_layers()).await
}

/// The versions of layer `name`, newest first.
pub(crate) async fn list_versions(
    shared: &Shared,
    name: String,
) -> Result<Vec<LayerVersion>, ApiError> {
    validate::layer_name(&name)?;
    let mut versions = shared.store(move |s| s.list_layer_versions(&name)).await?;
    versions.reverse();
    Ok(versions)
}

/// Deletes version `version` of layer `name` (with version 0, the layer version ARN `name`).
pub(crate) async fn delete(shared: &Shared, name: &str, version: u32) -> Result<(), ApiError> {
    let (name, version) = name_and_version(name, version)?;
    let arn = lamina_proto::domain::layer_version_arn(&name, version);
    match shared
        .store(move |s| s.delete_layer_version(&name, version))
        .await?
    {
        Some(_) => {
            tracing::info!(layer = %arn, "layer version deleted");
            Ok(())
        }
        None => Err(LayerError::NotFound(arn).into()),
    }
}

/// What a function's layer ARNs resolve to, in order (a layer attached before keeps its copy:
/// `attached` is the function's current list).
pub(crate) async fn resolve(
    shared: &Shared,
    arns: &[String],
    attached: &[FunctionLayer],
) -> Result<Vec<FunctionLayer>, ApiError> {
    let mut out = Vec::with_capacity(arns.len());
    for arn in arns {
        if let Some(kept) = attached.iter().find(|l| &l.arn == arn) {
            out.push(kept.clone());
            continue;
        }
        let (name, version) = parse_layer_version_arn(arn).ok_or_else(|| {
            ValidationError::new("layers", format!("{arn:?} is not a layer version ARN"))
        })?;
        let layer = match lookup(shared, name, version).await {
            Err(ApiError::Layer(LayerError::NotFound(arn))) => {
                return Err(LayerError::AttachMissing(arn).into())
            }
            other => other?,
        };
        out.push(FunctionLayer {
            arn: arn.clone(),
            code_sha256: layer.code_sha256,
            code_size: layer.code_size,
            unzipped_size: layer.unzipped_size,
        });
    }
    Ok(out)
}

/// Refuses function code plus layers above the 250 MB unzipped limit.
pub(crate) fn check_total_size(
    code_unzipped: u64,
    layers: &[FunctionLayer],
) -> Result<(), ApiError> {
    let layers: u64 = layers.iter().map(|l| l.unzipped_size).sum();
    if code_unzipped + layers > MAX_UNZIPPED_BYTES {
        return Err(LayerError::TooLarge {
            code: code_unzipped,
            layers,
        }
        .into());
    }
    Ok(())
}

/// The declared unzipped size of a stored code zip (for a configuration change that adds layers).
pub(crate) async fn stored_code_unzipped_size(
    shared: &Shared,
    sha256: &str,
) -> Result<u64, ApiError> {
    let owned = sha256.to_string();
    let zip = shared
        .store(move |s| s.get_blob(&owned))
        .await?
        .ok_or_else(|| ApiError::BlobNotFound(sha256.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let mut archive = zip::ZipArchive::new(Cursor::new(&zip[..]))
            .map_err(|e| ApiError::Internal(format!("stored code zip is unreadable: {e}")))?;
        let mut total = 0u64;
        for i in 0..archive.len() {
            let entry = archive
                .by_index_raw(i)
                .map_err(|e| ApiError::Internal(format!("stored code zip is unreadable: {e}")))?;
            total += entry.size();
        }
        Ok(total)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("zip size task failed: {e}")))?
}
