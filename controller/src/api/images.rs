//! Image functions (package type Image): the upload spooled and checked (`crate::image`), its layer
//! blobs stored by digest, then the function created or its code replaced in one store write that
//! refers to them. A refused image stores nothing; blobs stored for an upload whose create then
//! fails are unreferenced and removed when the store next opens.
use std::sync::Arc;

use lamina_proto::domain::{FunctionConfig, FunctionSpec, PackageType, LATEST};
use tonic::{Code, Streaming};

use super::{functions, now_ms, ApiError, Shared};
use crate::code::CheckedCode;
use crate::image::{CheckedImage, ImageError, ImageUpload};

/// The status code of an image error: the user's image is at fault, except for local i/o.
pub(crate) fn status_code(e: &ImageError) -> Code {
    match e {
        ImageError::Spool(_) | ImageError::Io(_) => Code::Internal,
        _ => Code::InvalidArgument,
    }
}

/// Reads the image from the code stream into a temporary file (refusing past the limit), then
/// checks it off the async threads.
pub(crate) async fn read_image<T: Send + 'static>(
    shared: &Shared,
    stream: &mut Streaming<T>,
    chunk_of: impl Fn(T) -> Result<Vec<u8>, ApiError>,
) -> Result<CheckedImage, ApiError> {
    let mut upload = ImageUpload::new(shared.max_image_bytes)?;
    while let Some(msg) = stream
        .message()
        .await
        .map_err(|s| ApiError::Stream(Box::new(s)))?
    {
        upload.push(&chunk_of(msg)?)?;
    }
    tokio::task::spawn_blocking(move || upload.finish())
        .await
        .map_err(|e| ApiError::Internal(format!("image check task failed: {e}")))?
        .map_err(ApiError::from)
}

/// Stores every layer blob of `image` not stored yet (one write per layer).
async fn store_layers(shared: &Shared, image: &Arc<CheckedImage>) -> Result<(), ApiError> {
    for i in 0..image.layers.len() {
        let image = Arc::clone(image);
        let store = Arc::clone(&shared.store);
        tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
            let bytes = image.read_layer(i)?;
            store.put_blobs(&[(image.layers[i].sha256.clone(), bytes)])?;
            Ok(())
        })
        .await
        .map_err(|e| ApiError::Internal(format!("image store task failed: {e}")))??;
    }
    Ok(())
}

/// The manifest as the function's code blob (`code_sha256` is the manifest's digest).
fn manifest_code(image: &CheckedImage) -> CheckedCode {
    CheckedCode {
        bytes: image.manifest.clone(),
        sha256: image.manifest_sha256.clone(),
        unzipped_size: image.unpacked_size,
    }
}

fn code_size(image: &CheckedImage) -> u64 {
    image.layers.iter().map(|l| l.size).sum::<u64>() + image.manifest.len() as u64
}

/// Creates an Image function from a checked image.
pub(crate) async fn create(
    shared: &Shared,
    spec: FunctionSpec,
    image: CheckedImage,
) -> Result<FunctionConfig, ApiError> {
    super::network::check_vpc_config(shared, spec.vpc_config.as_ref()).await?;
    let image = Arc::new(image);
    store_layers(shared, &image).await?;
    let code = manifest_code(&image);
    let config = FunctionConfig {
        code_sha256: code.sha256.clone(),
        code_size: code_size(&image),
        revision_id: uuid::Uuid::new_v4().to_string(),
        version: LATEST.to_string(),
        last_modified_ms: now_ms(),
        layers: Vec::new(),
        image: Some(image.resolve(&spec.image_config)),
        spec,
    };
    let stored = config.clone();
    shared
        .store(move |s| s.create_function(&stored, &code.bytes))
        .await?;
    tracing::info!(function = %config.spec.name, digest = %config.code_sha256, "image function created");
    Ok(config)
}

/// Replaces the image of Image function `name`.
pub(crate) async fn update_code(
    shared: &Shared,
    name: &str,
    image: CheckedImage,
) -> Result<FunctionConfig, ApiError> {
    let image = Arc::new(image);
    store_layers(shared, &image).await?;
    let code = Arc::new(manifest_code(&image));
    functions::read_modify_write(shared, name, move |mut config| {
        ensure_image_function(&config)?;
        config.code_sha256 = code.sha256.clone();
        config.code_size = code_size(&image);
        config.image = Some(image.resolve(&config.spec.image_config));
        Ok((config, Some(Arc::clone(&code))))
    })
    .await
}

/// Refuses a zip for an Image function and an image for a Zip one (the package type is fixed at
/// creation, as in Lambda).
pub(crate) fn ensure_image_function(config: &FunctionConfig) -> Result<(), ApiError> {
    if config.spec.package_type != PackageType::Image {
        return Err(lamina_proto::validate::ValidationError::new(
            "package_type",
            format!(
                "function `{}` has package type Zip: upload a zip, not an image",
                config.spec.name
            ),
        )
        .into());
    }
    Ok(())
}
