//! Functions, transport-neutral: create, read, update, list and delete functions with domain
//! types. The gRPC `Functions` service (`functions_service.rs`) and the REST API both call these.
use std::sync::Arc;

use std::collections::BTreeMap;

use lamina_proto::domain::{
    FunctionConfig, FunctionSpec, ImageConfig, LoggingConfig, PackageType, LATEST,
};
use lamina_proto::network::VpcConfig;
use lamina_proto::v1;
use lamina_proto::validate;

use super::{layers, now_ms, ApiError, Shared};
use crate::code::CheckedCode;
use crate::store::StoreError;

const LIST_DEFAULT: usize = 50;
const LIST_MAX: usize = 1000;
/// Read-modify-write attempts of an update racing other updates of the same function.
const UPDATE_ATTEMPTS: usize = 5;

fn new_revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The stored configuration of function `name`.
pub(crate) async fn get(shared: &Shared, name: &str) -> Result<FunctionConfig, ApiError> {
    let owned = name.to_string();
    shared
        .store(move |s| s.get_function(&owned))
        .await?
        .ok_or_else(|| ApiError::FunctionNotFound(name.to_string()))
}

/// Refuses a taken name before reading up to 50 MB of code (checked again when storing).
pub(crate) async fn ensure_name_free(shared: &Shared, name: &str) -> Result<(), ApiError> {
    let owned = name.to_string();
    if shared
        .store(move |s| s.get_function(&owned))
        .await?
        .is_some()
    {
        return Err(StoreError::FunctionExists(name.to_string()).into());
    }
    Ok(())
}

/// A zip cannot create an Image function (images arrive through `CreateFunction`'s code stream).
fn refuse_image(spec: &FunctionSpec) -> Result<(), ApiError> {
    if spec.package_type == lamina_proto::domain::PackageType::Image {
        return Err(lamina_proto::validate::ValidationError::new(
            "package_type",
            "package type Image needs an image upload (an OCI layout tar or a docker save \
             archive), not a zip: use `fnctl create NAME --image PATH`",
        )
        .into());
    }
    Ok(())
}

/// Stores a new function from a validated spec and checked code.
pub(crate) async fn create_function(
    shared: &Shared,
    spec: FunctionSpec,
    code: CheckedCode,
) -> Result<FunctionConfig, ApiError> {
    refuse_image(&spec)?;
    super::network::check_vpc_config(shared, spec.vpc_config.as_ref()).await?;
    let attached = layers::resolve(shared, &spec.layers, &[]).await?;
    layers::check_total_size(code.unzipped_size, &attached)?;
    let config = FunctionConfig {
        spec,
        code_sha256: code.sha256.clone(),
        code_size: code.bytes.len() as u64,
        revision_id: new_revision(),
        version: LATEST.to_string(),
        last_modified_ms: now_ms(),
        layers: attached,
        image: None,
    };
    let stored = config.clone();
    shared
        .store(move |s| s.create_function(&stored, &code.bytes))
        .await?;
    tracing::info!(function = %config.spec.name, sha256 = %config.code_sha256, "function created");
    Ok(config)
}

/// Replaces the code of function `name`. With `expected_revision`, only if `$LATEST` still has that
/// revision (checked in the same compare-and-set as the write: Lambda's `RevisionId`).
pub(crate) async fn update_code(
    shared: &Shared,
    name: &str,
    code: CheckedCode,
    expected_revision: Option<String>,
) -> Result<FunctionConfig, ApiError> {
    let code = Arc::new(code);
    read_modify_write(shared, name, move |mut config| {
        check_revision(&config, expected_revision.as_deref())?;
        ensure_zip_function(&config)?;
        layers::check_total_size(code.unzipped_size, &config.layers)?;
        config.code_sha256 = code.sha256.clone();
        config.code_size = code.bytes.len() as u64;
        Ok((config, Some(Arc::clone(&code))))
    })
    .await
}

/// Refuses a change based on another revision of `$LATEST` than the current one.
pub(crate) fn check_revision(
    current: &FunctionConfig,
    expected: Option<&str>,
) -> Result<(), ApiError> {
    match expected {
        Some(expected) if expected != current.revision_id => Err(ApiError::RevisionPrecondition {
            name: current.spec.name.clone(),
            expected: expected.to_string(),
            actual: current.revision_id.clone(),
        }),
        _ => Ok(()),
    }
}

/// The changes of an UpdateFunctionConfiguration: fields left `None` keep their value.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigurationUpdate {
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub memory_mb: Option<u32>,
    pub timeout_s: Option<u32>,
    pub ephemeral_storage_mb: Option<u32>,
    pub description: Option<String>,
    pub role: Option<String>,
    /// `Some`: replaces the whole environment.
    pub environment: Option<BTreeMap<String, String>>,
    /// Added to the environment (after a replacement, if any).
    pub environment_additions: BTreeMap<String, String>,
    /// `Some`: replaces the layers (empty removes them all).
    pub layers: Option<Vec<String>>,
    /// `Some`: replaces the image overrides (Image functions).
    pub image_config: Option<ImageConfig>,
    /// `Some`: replaces the VPC attachment (`Some(None)` detaches the function).
    pub vpc_config: Option<Option<VpcConfig>>,
    pub logging: Option<LoggingConfig>,
    pub tracing_mode: Option<String>,
}

/// Applies `update` to function `name` (with `expected_revision`: only if `$LATEST` still has
/// that revision, checked in the compare-and-set of the write).
pub(crate) async fn update_configuration(
    shared: &Shared,
    name: &str,
    update: ConfigurationUpdate,
    expected_revision: Option<String>,
) -> Result<FunctionConfig, ApiError> {
    if let Some(mode) = &update.tracing_mode {
        validate::tracing_mode(mode)?;
    }
    // Layers are resolved (and the size limit checked) before the read-modify-write: a layer
    // attached already keeps the copy the function holds.
    let new_layers = match &update.layers {
        Some(arns) => {
            validate::layers(arns)?;
            let current = get(shared, name).await?;
            let resolved = layers::resolve(shared, arns, &current.layers).await?;
            if !resolved.is_empty() {
                let code = layers::stored_code_unzipped_size(shared, &current.code_sha256).await?;
                layers::check_total_size(code, &resolved)?;
            }
            Some(resolved)
        }
        None => None,
    };
    if let Some(vpc) = &update.vpc_config {
        super::network::check_vpc_config(shared, vpc.as_ref()).await?;
    }
    let r = update;
    read_modify_write(shared, name, move |mut config| {
        check_revision(&config, expected_revision.as_deref())?;
        if let Some(vpc) = &r.vpc_config {
            config.spec.vpc_config = vpc.clone();
        }
        if let (Some(arns), Some(resolved)) = (&r.layers, &new_layers) {
            config.spec.layers = arns.clone();
            config.layers = resolved.clone();
        }
        if let Some(image_config) = &r.image_config {
            config.spec.image_config = image_config.clone();
            if let Some(image) = &mut config.image {
                crate::image::apply_overrides(image, &config.spec.image_config);
            }
        }
        let spec = &mut config.spec;
        if let Some(runtime) = &r.runtime {
            spec.runtime = validate::runtime(runtime)?;
        }
        if let Some(handler) = &r.handler {
            spec.handler = handler.clone();
        }
        if let Some(mb) = r.memory_mb {
            spec.memory_mb = mb;
        }
        if let Some(s) = r.timeout_s {
            spec.timeout_s = s;
        }
        if let Some(mb) = r.ephemeral_storage_mb {
            spec.ephemeral_storage_mb = mb;
        }
        if let Some(d) = &r.description {
            spec.description = d.clone();
        }
        if let Some(role) = &r.role {
            spec.role = role.clone();
        }
        if let Some(logging) = &r.logging {
            spec.logging = logging.clone();
        }
        if let Some(environment) = &r.environment {
            spec.environment = environment.clone();
        }
        spec.environment.extend(r.environment_additions.clone());
        validate::spec(spec)?;
        Ok((config, None))
    })
    .await
}

/// The domain form of the gRPC UpdateFunctionConfiguration (the VPC configuration checked).
impl TryFrom<v1::UpdateFunctionConfigurationRequest> for ConfigurationUpdate {
    type Error = ApiError;

    fn try_from(r: v1::UpdateFunctionConfigurationRequest) -> Result<Self, ApiError> {
        let environment: BTreeMap<String, String> = r.environment.into_iter().collect();
        let (replaced, additions) = if r.replace_environment {
            (Some(environment), BTreeMap::new())
        } else {
            (None, environment)
        };
        Ok(ConfigurationUpdate {
            runtime: r.runtime,
            handler: r.handler,
            memory_mb: r.memory_size_mb,
            timeout_s: r.timeout_seconds,
            ephemeral_storage_mb: r.ephemeral_storage_mb,
            description: r.description,
            role: r.role,
            environment: replaced,
            environment_additions: additions,
            layers: r.replace_layers.then_some(r.layers),
            image_config: r.image_config.map(Into::into),
            vpc_config: r
                .vpc_config
                .as_ref()
                .map(lamina_proto::network::vpc_config)
                .transpose()?,
            logging: r.logging_config.map(Into::into),
            tracing_mode: r.tracing_mode,
        })
    }
}

/// One page of functions after `marker` (`max_items` 0 = the default) and the next marker.
pub(crate) async fn list(
    shared: &Shared,
    marker: String,
    max_items: usize,
) -> Result<(Vec<FunctionConfig>, String), ApiError> {
    let limit = match max_items {
        0 => LIST_DEFAULT,
        n => n.min(LIST_MAX),
    };
    // One more than asked tells whether there is a next page.
    let mut page = shared
        .store(move |s| s.list_functions(&marker, limit + 1))
        .await?;
    let next_marker = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|f| f.spec.name.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((page, next_marker))
}

/// Deletes function `name` and its async settings.
pub(crate) async fn delete(shared: &Shared, name: &str) -> Result<(), ApiError> {
    let owned = name.to_string();
    match shared.store(move |s| s.delete_function(&owned)).await? {
        Some(_) => {
            if let Some(q) = &shared.queue {
                q.delete_config(name).await.map_err(ApiError::from)?;
            }
            // Its settings went with it: the reservation and provisioned sandboxes too.
            shared.limiter.forget(name);
            shared.provisioning.changed();
            shared.retiring.function_changed(name);
            tracing::info!(function = %name, "function deleted");
            Ok(())
        }
        None => Err(ApiError::FunctionNotFound(name.to_string())),
    }
}

/// Applies `change` to the current record and stores it with a new revision, retrying when a
/// concurrent update got there first.
pub(crate) async fn read_modify_write<F>(
    shared: &Shared,
    name: &str,
    change: F,
) -> Result<FunctionConfig, ApiError>
where
    F: Fn(FunctionConfig) -> Result<(FunctionConfig, Option<Arc<CheckedCode>>), ApiError>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = get(shared, name).await?;
        let expected = current.revision_id.clone();
        let (mut config, code) = change(current)?;
        config.revision_id = new_revision();
        config.last_modified_ms = now_ms();
        let stored = config.clone();
        let result = shared
            .store(move |s| {
                s.update_function(&stored, &expected, code.as_deref().map(|c| &c.bytes[..]))
            })
            .await;
        match result {
            Ok(()) => {
                tracing::info!(function = %name, revision = %config.revision_id, "function updated");
                // The previous revision of $LATEST ended: its sandboxes go.
                shared.retiring.function_changed(name);
                return Ok(config);
            }
            Err(ApiError::Store(StoreError::RevisionConflict { .. }))
                if attempt < UPDATE_ATTEMPTS =>
            {
                continue
            }
            Err(ApiError::Store(StoreError::FunctionNotFound(n))) => {
                return Err(ApiError::FunctionNotFound(n))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Refuses a zip upload for an Image function.
pub(crate) fn ensure_zip_function(config: &FunctionConfig) -> Result<(), ApiError> {
    if config.spec.package_type == PackageType::Image {
        return Err(lamina_proto::validate::ValidationError::new(
            "package_type",
            format!(
                "function `{}` has package type Image: upload an image (fnctl update-code --image), not a zip",
                config.spec.name
            ),
        )
        .into());
    }
    Ok(())
}
