//! Conversions between proto messages and domain types: the only place the two meet.
use crate::domain::{
    host_architecture, FunctionConfig, FunctionLayer, FunctionSpec, ImageConfig, LoggingConfig,
    PackageType, ResolvedImage, Runtime, DEFAULT_EPHEMERAL_MB, DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
};
use crate::v1;
use crate::validate::{self, ValidationError};

fn or_default(v: u32, default: u32) -> u32 {
    if v == 0 {
        default
    } else {
        v
    }
}

impl TryFrom<v1::FunctionSpec> for FunctionSpec {
    type Error = ValidationError;

    /// Applies Lambda's defaults to unset (zero) fields, then validates every field.
    fn try_from(p: v1::FunctionSpec) -> Result<Self, Self::Error> {
        let package_type = package_type(&p.package_type)?;
        // An image brings its own runtime: the runtime may be left out.
        let runtime = if package_type == PackageType::Image && p.runtime.is_empty() {
            Runtime::Provided
        } else {
            validate::runtime(&p.runtime)?
        };
        // Not stored: only the host's architecture and pass-through tracing are accepted.
        validate::architectures(&p.architectures)?;
        validate::tracing_mode(&p.tracing_mode)?;
        let spec = FunctionSpec {
            role: p.role,
            logging: p
                .logging_config
                .map(LoggingConfig::from)
                .unwrap_or_default(),
            runtime,
            layers: p.layers,
            package_type,
            image_config: p.image_config.map(ImageConfig::from).unwrap_or_default(),
            vpc_config: match &p.vpc_config {
                Some(c) => crate::network::vpc_config(c)?,
                None => None,
            },
            name: p.name,
            handler: p.handler,
            memory_mb: or_default(p.memory_size_mb, DEFAULT_MEMORY_MB),
            timeout_s: or_default(p.timeout_seconds, DEFAULT_TIMEOUT_S),
            ephemeral_storage_mb: or_default(p.ephemeral_storage_mb, DEFAULT_EPHEMERAL_MB),
            environment: p.environment.into_iter().collect(),
            description: p.description,
        };
        validate::spec(&spec)?;
        Ok(spec)
    }
}

impl From<&FunctionSpec> for v1::FunctionSpec {
    fn from(s: &FunctionSpec) -> Self {
        v1::FunctionSpec {
            name: s.name.clone(),
            runtime: s.runtime.as_str().to_string(),
            handler: s.handler.clone(),
            memory_size_mb: s.memory_mb,
            timeout_seconds: s.timeout_s,
            ephemeral_storage_mb: s.ephemeral_storage_mb,
            environment: s.environment.clone().into_iter().collect(),
            description: s.description.clone(),
            layers: s.layers.clone(),
            package_type: s.package_type.as_str().to_string(),
            image_config: image_config_proto(&s.image_config),
            vpc_config: s.vpc_config.as_ref().map(Into::into),
            role: s.role.clone(),
            architectures: Vec::new(),
            logging_config: logging_proto(&s.logging),
            tracing_mode: String::new(),
        }
    }
}

impl From<v1::LoggingConfig> for LoggingConfig {
    fn from(c: v1::LoggingConfig) -> Self {
        LoggingConfig {
            log_format: c.log_format,
            application_log_level: c.application_log_level,
            system_log_level: c.system_log_level,
            log_group: c.log_group,
        }
    }
}

/// `None` when nothing was given.
pub fn logging_proto(c: &LoggingConfig) -> Option<v1::LoggingConfig> {
    (c != &LoggingConfig::default()).then(|| v1::LoggingConfig {
        log_format: c.log_format.clone(),
        application_log_level: c.application_log_level.clone(),
        system_log_level: c.system_log_level.clone(),
        log_group: c.log_group.clone(),
    })
}

/// `""`/`Zip` or `Image`.
pub fn package_type(s: &str) -> Result<PackageType, ValidationError> {
    match s {
        "" | "Zip" => Ok(PackageType::Zip),
        "Image" => Ok(PackageType::Image),
        other => Err(ValidationError::new(
            "package_type",
            format!("package type must be Zip or Image, got {other:?}"),
        )),
    }
}

impl From<v1::ImageConfig> for ImageConfig {
    fn from(c: v1::ImageConfig) -> Self {
        ImageConfig {
            entrypoint: c.entrypoint,
            command: c.command,
            working_directory: c.working_directory,
        }
    }
}

fn image_config_proto(c: &ImageConfig) -> Option<v1::ImageConfig> {
    (!c.is_empty()).then(|| v1::ImageConfig {
        entrypoint: c.entrypoint.clone(),
        command: c.command.clone(),
        working_directory: c.working_directory.clone(),
    })
}

impl From<&FunctionLayer> for v1::FunctionLayer {
    fn from(l: &FunctionLayer) -> Self {
        v1::FunctionLayer {
            arn: l.arn.clone(),
            code_size: l.code_size,
            code_sha256: l.code_sha256.clone(),
            unzipped_size: l.unzipped_size,
        }
    }
}

impl From<&ResolvedImage> for v1::ResolvedImage {
    fn from(i: &ResolvedImage) -> Self {
        v1::ResolvedImage {
            digest: i.digest.clone(),
            layer_digests: i.layer_digests.clone(),
            entrypoint: i.entrypoint.clone(),
            command: i.command.clone(),
            working_directory: i.working_directory.clone(),
            env: i.env.clone(),
            unpacked_size: i.unpacked_size,
        }
    }
}

fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl TryFrom<v1::ResolvedImage> for ResolvedImage {
    type Error = ValidationError;

    fn try_from(i: v1::ResolvedImage) -> Result<Self, Self::Error> {
        for d in std::iter::once(&i.digest).chain(&i.layer_digests) {
            if !d.strip_prefix("sha256:").is_some_and(is_hex_digest) {
                return Err(ValidationError::new(
                    "image",
                    format!("image digest must be sha256:<64 hex digits>, got {d:?}"),
                ));
            }
        }
        Ok(ResolvedImage {
            digest: i.digest,
            layer_digests: i.layer_digests,
            entrypoint: i.entrypoint,
            command: i.command,
            working_directory: i.working_directory,
            env: i.env,
            unpacked_size: i.unpacked_size,
            image_defaults: ImageConfig::default(),
        })
    }
}

impl From<&FunctionConfig> for v1::FunctionConfiguration {
    fn from(c: &FunctionConfig) -> Self {
        let s = &c.spec;
        v1::FunctionConfiguration {
            name: s.name.clone(),
            arn: c.arn(),
            runtime: s.runtime.as_str().to_string(),
            handler: s.handler.clone(),
            memory_size_mb: s.memory_mb,
            timeout_seconds: s.timeout_s,
            ephemeral_storage_mb: s.ephemeral_storage_mb,
            environment: s.environment.clone().into_iter().collect(),
            description: s.description.clone(),
            code_sha256: c.code_sha256.clone(),
            code_size: c.code_size,
            revision_id: c.revision_id.clone(),
            version: c.version.clone(),
            last_modified_ms: c.last_modified_ms,
            state: "Active".to_string(),
            last_update_status: "Successful".to_string(),
            reserved_concurrent_executions: None,
            provisioned_concurrency: Vec::new(),
            layers: c.layers.iter().map(Into::into).collect(),
            package_type: s.package_type.as_str().to_string(),
            image_config: image_config_proto(&s.image_config),
            image: c.image.as_ref().map(Into::into),
            vpc_config: s.vpc_config.as_ref().map(Into::into),
            role: s.role.clone(),
            architectures: vec![host_architecture().to_string()],
            logging_config: logging_proto(&s.logging),
            tracing_mode: "PassThrough".to_string(),
        }
    }
}

impl TryFrom<v1::FunctionConfiguration> for FunctionConfig {
    type Error = ValidationError;

    fn try_from(p: v1::FunctionConfiguration) -> Result<Self, Self::Error> {
        let spec = FunctionSpec::try_from(v1::FunctionSpec {
            name: p.name,
            runtime: p.runtime,
            handler: p.handler,
            memory_size_mb: p.memory_size_mb,
            timeout_seconds: p.timeout_seconds,
            ephemeral_storage_mb: p.ephemeral_storage_mb,
            environment: p.environment,
            description: p.description,
            layers: p.layers.iter().map(|l| l.arn.clone()).collect(),
            package_type: p.package_type,
            image_config: p.image_config,
            vpc_config: p.vpc_config,
            role: p.role,
            architectures: p.architectures,
            logging_config: p.logging_config,
            tracing_mode: p.tracing_mode,
        })?;
        let layers = p
            .layers
            .into_iter()
            .map(|l| {
                if !is_hex_digest(&l.code_sha256) {
                    return Err(ValidationError::new(
                        "layers",
                        format!(
                            "layer code_sha256 must be 64 hex digits, got {:?}",
                            l.code_sha256
                        ),
                    ));
                }
                Ok(FunctionLayer {
                    arn: l.arn,
                    code_sha256: l.code_sha256.to_ascii_lowercase(),
                    code_size: l.code_size,
                    unzipped_size: l.unzipped_size,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let image = p.image.map(ResolvedImage::try_from).transpose()?;
        if p.code_sha256.len() != 64 || !p.code_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ValidationError::new(
                "code_sha256",
                format!("code_sha256 must be 64 hex digits, got {:?}", p.code_sha256),
            ));
        }
        if p.revision_id.is_empty() {
            return Err(ValidationError::new(
                "revision_id",
                "revision_id must not be empty",
            ));
        }
        Ok(FunctionConfig {
            spec,
            code_sha256: p.code_sha256.to_ascii_lowercase(),
            code_size: p.code_size,
            revision_id: p.revision_id,
            version: p.version,
            last_modified_ms: p.last_modified_ms,
            layers,
            image,
        })
    }
}

impl From<&crate::domain::LayerVersion> for v1::LayerVersion {
    fn from(l: &crate::domain::LayerVersion) -> Self {
        v1::LayerVersion {
            layer_name: l.name.clone(),
            layer_arn: crate::domain::layer_arn(&l.name),
            layer_version_arn: l.arn(),
            version: l.version,
            description: l.description.clone(),
            compatible_runtimes: l
                .compatible_runtimes
                .iter()
                .map(|r| r.as_str().to_string())
                .collect(),
            code_sha256: l.code_sha256.clone(),
            code_size: l.code_size,
            unzipped_size: l.unzipped_size,
            created_ms: l.created_ms,
            license_info: l.license_info.clone(),
            compatible_architectures: l.compatible_architectures.clone(),
        }
    }
}
