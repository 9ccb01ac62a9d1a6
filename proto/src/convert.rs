//! Conversions between proto messages and domain types: the only place the two meet.
use crate::domain::{
    FunctionConfig, FunctionSpec, DEFAULT_EPHEMERAL_MB, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S,
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
        let spec = FunctionSpec {
            runtime: validate::runtime(&p.runtime)?,
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
        }
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
        })?;
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
        })
    }
}
