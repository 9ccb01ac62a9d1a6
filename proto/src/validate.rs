//! Validation of user input. Every error names the field, the allowed range and what was given.
use std::collections::BTreeMap;

use crate::domain::{FunctionSpec, Runtime};

pub const MIN_MEMORY_MB: u32 = 128;
pub const MAX_MEMORY_MB: u32 = 10240;
pub const MIN_TIMEOUT_S: u32 = 1;
pub const MAX_TIMEOUT_S: u32 = 900;
pub const MIN_EPHEMERAL_MB: u32 = 512;
pub const MAX_EPHEMERAL_MB: u32 = 10240;
pub const MAX_ENVIRONMENT_BYTES: usize = 4096;
pub const MAX_NAME_LEN: usize = 64;
/// Synchronous request and response payload limit.
pub const MAX_SYNC_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;
/// Zipped code limit.
pub const MAX_ZIP_BYTES: u64 = 50 * 1024 * 1024;
/// Unzipped code limit.
pub const MAX_UNZIPPED_BYTES: u64 = 250 * 1024 * 1024;

/// Variables Lamina sets itself; a function may not override them.
pub const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

mod lambda_config;
pub use lambda_config::{architectures, logging, role, tracing_mode, MAX_ROLE_LEN};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

pub fn name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(ValidationError::new(
            "name",
            format!(
                "function name must be 1..{MAX_NAME_LEN} characters, got {}",
                name.len()
            ),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(ValidationError::new(
            "name",
            format!("function name may only contain letters, digits, '-' and '_', got {c:?} in {name:?}"),
        ));
    }
    Ok(())
}

pub fn runtime(runtime: &str) -> Result<Runtime, ValidationError> {
    Runtime::parse(runtime).ok_or_else(|| {
        let all: Vec<&str> = Runtime::ALL.iter().map(|r| r.as_str()).collect();
        ValidationError::new(
            "runtime",
            format!("runtime must be one of {}, got {runtime:?}", all.join(", ")),
        )
    })
}

pub fn handler(runtime: Runtime, handler: &str) -> Result<(), ValidationError> {
    if handler.len() > 128 {
        return Err(ValidationError::new(
            "handler",
            format!(
                "handler must be at most 128 characters, got {}",
                handler.len()
            ),
        ));
    }
    if handler.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ValidationError::new(
            "handler",
            format!("handler must not contain whitespace, got {handler:?}"),
        ));
    }
    if runtime.is_provided() {
        return Ok(());
    }
    match handler.rsplit_once('.') {
        Some((file, func)) if !file.is_empty() && !func.is_empty() && !file.starts_with('/') => {
            Ok(())
        }
        _ => Err(ValidationError::new(
            "handler",
            format!("handler must look like file.function (e.g. app.handler), got {handler:?}"),
        )),
    }
}

pub fn memory(mb: u32) -> Result<(), ValidationError> {
    if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&mb) {
        return Err(ValidationError::new(
            "memory",
            format!("memory must be {MIN_MEMORY_MB}..{MAX_MEMORY_MB} MB, got {mb}"),
        ));
    }
    Ok(())
}

pub fn timeout(s: u32) -> Result<(), ValidationError> {
    if !(MIN_TIMEOUT_S..=MAX_TIMEOUT_S).contains(&s) {
        return Err(ValidationError::new(
            "timeout",
            format!("timeout must be {MIN_TIMEOUT_S}..{MAX_TIMEOUT_S} seconds, got {s}"),
        ));
    }
    Ok(())
}

pub fn ephemeral_storage(mb: u32) -> Result<(), ValidationError> {
    if !(MIN_EPHEMERAL_MB..=MAX_EPHEMERAL_MB).contains(&mb) {
        return Err(ValidationError::new(
            "ephemeral_storage",
            format!(
                "ephemeral storage must be {MIN_EPHEMERAL_MB}..{MAX_EPHEMERAL_MB} MB, got {mb}"
            ),
        ));
    }
    Ok(())
}

pub fn environment(env: &BTreeMap<String, String>) -> Result<(), ValidationError> {
    let mut total = 0usize;
    for (k, v) in env {
        let valid_key = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(ValidationError::new(
                "environment",
                format!("environment variable name must match [a-zA-Z][a-zA-Z0-9_]*, got {k:?}"),
            ));
        }
        if RESERVED_ENV.contains(&k.as_str()) {
            return Err(ValidationError::new(
                "environment",
                format!("environment variable {k} is reserved by the runtime and cannot be set"),
            ));
        }
        if v.contains('\0') {
            return Err(ValidationError::new(
                "environment",
                format!("environment variable {k} contains a NUL byte"),
            ));
        }
        total += k.len() + v.len();
    }
    if total > MAX_ENVIRONMENT_BYTES {
        return Err(ValidationError::new(
            "environment",
            format!("environment variables must total at most {MAX_ENVIRONMENT_BYTES} bytes, got {total}"),
        ));
    }
    Ok(())
}

pub fn sync_payload(len: usize) -> Result<(), ValidationError> {
    if len > MAX_SYNC_PAYLOAD_BYTES {
        return Err(ValidationError::new(
            "payload",
            format!("payload must be at most {MAX_SYNC_PAYLOAD_BYTES} bytes, got {len}"),
        ));
    }
    Ok(())
}

/// Checks every field of a spec.
pub fn spec(spec: &FunctionSpec) -> Result<(), ValidationError> {
    name(&spec.name)?;
    handler(spec.runtime, &spec.handler)?;
    memory(spec.memory_mb)?;
    timeout(spec.timeout_s)?;
    ephemeral_storage(spec.ephemeral_storage_mb)?;
    environment(&spec.environment)?;
    layers(&spec.layers)?;
    if spec.package_type == crate::domain::PackageType::Image && !spec.layers.is_empty() {
        return Err(ValidationError::new(
            "layers",
            "layers cannot be attached to an Image function: put their files in the image",
        ));
    }
    image_config(spec.package_type, &spec.image_config)?;
    role(&spec.role)?;
    logging(&spec.logging)?;
    if spec.description.len() > 256 {
        return Err(ValidationError::new(
            "description",
            format!(
                "description must be at most 256 characters, got {}",
                spec.description.len()
            ),
        ));
    }
    Ok(())
}

/// Most layers a function may attach (Lambda's limit).
pub const MAX_LAYERS: usize = 5;

/// A function's layer list: at most [`MAX_LAYERS`] distinct layer version ARNs.
pub fn layers(arns: &[String]) -> Result<(), ValidationError> {
    if arns.len() > MAX_LAYERS {
        return Err(ValidationError::new(
            "layers",
            format!(
                "a function may attach at most {MAX_LAYERS} layers, got {}",
                arns.len()
            ),
        ));
    }
    for (i, arn) in arns.iter().enumerate() {
        if crate::domain::parse_layer_version_arn(arn).is_none() {
            return Err(ValidationError::new(
                "layers",
                format!(
                    "layer {arn:?} is not a layer version ARN like {}",
                    crate::domain::layer_version_arn("NAME", 1)
                ),
            ));
        }
        if arns[..i].contains(arn) {
            return Err(ValidationError::new(
                "layers",
                format!("layer {arn} is attached twice; list each layer version once"),
            ));
        }
    }
    Ok(())
}

/// A layer name: like a function name.
pub fn layer_name(name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(ValidationError::new(
            "layer_name",
            format!(
                "layer name must be 1..{MAX_NAME_LEN} letters, digits, '-' or '_', got {name:?}"
            ),
        ));
    }
    Ok(())
}

/// Image overrides: only for Image functions; no NUL, bounded, an absolute working directory.
pub fn image_config(
    package_type: crate::domain::PackageType,
    c: &crate::domain::ImageConfig,
) -> Result<(), ValidationError> {
    if package_type == crate::domain::PackageType::Zip && !c.is_empty() {
        return Err(ValidationError::new(
            "image_config",
            "image_config (entrypoint, command, working directory) applies to Image functions only",
        ));
    }
    let total: usize = c.entrypoint.iter().chain(&c.command).map(String::len).sum();
    if total + c.working_directory.len() > 4096 {
        return Err(ValidationError::new(
            "image_config",
            format!("image_config must total at most 4096 bytes, got {total}"),
        ));
    }
    if c.entrypoint
        .iter()
        .chain(&c.command)
        .chain(std::iter::once(&c.working_directory))
        .any(|s| s.contains('\0'))
    {
        return Err(ValidationError::new(
            "image_config",
            "image_config entries must not contain NUL bytes",
        ));
    }
    if !c.working_directory.is_empty() && !c.working_directory.starts_with('/') {
        return Err(ValidationError::new(
            "image_config",
            format!(
                "working directory must be an absolute path, got {:?}",
                c.working_directory
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_and_range() {
        assert_eq!(
            memory(64).unwrap_err().to_string(),
            "memory must be 128..10240 MB, got 64"
        );
        assert_eq!(timeout(0).unwrap_err().field, "timeout");
        assert!(timeout(901).is_err() && timeout(900).is_ok());
        assert!(name("ok-name_1").is_ok());
        assert!(name("bad/name").is_err());
        assert!(name(&"a".repeat(65)).is_err());
        assert!(runtime("python2.7")
            .unwrap_err()
            .to_string()
            .contains("python3.11"));
        assert!(handler(Runtime::Python311, "app").is_err());
        assert!(handler(Runtime::Python311, "app.handler").is_ok());
        assert!(handler(Runtime::Provided, "anything").is_ok());
    }

    #[test]
    fn environment_limits() {
        let mut env = BTreeMap::new();
        env.insert("AWS_REGION".to_string(), "x".to_string());
        assert!(environment(&env)
            .unwrap_err()
            .to_string()
            .contains("reserved"));
        env.clear();
        env.insert("BIG".to_string(), "x".repeat(5000));
        assert!(environment(&env).unwrap_err().to_string().contains("4096"));
        env.clear();
        env.insert("1BAD".to_string(), "x".to_string());
        assert!(environment(&env).is_err());
        env.clear();
        env.insert("GOOD_1".to_string(), "a=b".to_string());
        assert!(environment(&env).is_ok());
    }

    #[test]
    fn payload_limit() {
        assert!(sync_payload(MAX_SYNC_PAYLOAD_BYTES).is_ok());
        assert!(sync_payload(MAX_SYNC_PAYLOAD_BYTES + 1).is_err());
    }
}

/// Asynchronous payload limit (Lambda: 1 MB; the controller may lower or raise it).
pub const MAX_ASYNC_PAYLOAD_BYTES: usize = 1024 * 1024;
pub const MAX_RETRY_ATTEMPTS: u32 = 2;
pub const MIN_EVENT_AGE_S: u32 = 60;
pub const MAX_EVENT_AGE_S: u32 = 21_600;
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

pub fn async_payload(len: usize, max: usize) -> Result<(), ValidationError> {
    if len > max {
        return Err(ValidationError::new(
            "payload",
            format!("asynchronous payload must be at most {max} bytes, got {len}"),
        ));
    }
    Ok(())
}

pub fn max_retry_attempts(n: u32) -> Result<(), ValidationError> {
    if n > MAX_RETRY_ATTEMPTS {
        return Err(ValidationError::new(
            "maximum_retry_attempts",
            format!("maximum retry attempts must be 0..{MAX_RETRY_ATTEMPTS}, got {n}"),
        ));
    }
    Ok(())
}

pub fn max_event_age(s: u32) -> Result<(), ValidationError> {
    if !(MIN_EVENT_AGE_S..=MAX_EVENT_AGE_S).contains(&s) {
        return Err(ValidationError::new(
            "maximum_event_age_seconds",
            format!(
                "maximum event age must be {MIN_EVENT_AGE_S}..{MAX_EVENT_AGE_S} seconds, got {s}"
            ),
        ));
    }
    Ok(())
}

pub fn idempotency_key(key: &str) -> Result<(), ValidationError> {
    if key.len() > MAX_IDEMPOTENCY_KEY_LEN || key.chars().any(|c| c.is_control()) {
        return Err(ValidationError::new(
            "idempotency_key",
            format!(
                "idempotency key must be at most {MAX_IDEMPOTENCY_KEY_LEN} bytes without control characters, got {} bytes",
                key.len()
            ),
        ));
    }
    Ok(())
}

/// A dead-letter queue name: like a function name.
pub fn queue_name(name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !ok {
        return Err(ValidationError::new(
            "queue",
            format!("dead-letter queue name must be 1..{MAX_NAME_LEN} letters, digits, '-' or '_', got {name:?}"),
        ));
    }
    Ok(())
}

/// Parses `function:NAME` or `dlq:NAME` (`""` = none).
pub fn destination(
    field: &'static str,
    s: &str,
) -> Result<Option<crate::domain::Destination>, ValidationError> {
    use crate::domain::Destination;
    let bad = || {
        ValidationError::new(
            field,
            format!("{field} must be `function:NAME` or `dlq:NAME` (NAME: 1..{MAX_NAME_LEN} letters, digits, '-' or '_'), got {s:?}"),
        )
    };
    if s.is_empty() {
        return Ok(None);
    }
    match s.split_once(':') {
        Some(("function", n)) => {
            name(n).map_err(|_| bad())?;
            Ok(Some(Destination::Function(n.to_string())))
        }
        Some(("dlq", n)) => {
            queue_name(n).map_err(|_| bad())?;
            Ok(Some(Destination::Dlq(n.to_string())))
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod async_tests {
    use super::*;
    use crate::domain::Destination;

    #[test]
    fn async_limits() {
        assert!(max_retry_attempts(2).is_ok() && max_retry_attempts(3).is_err());
        assert!(max_event_age(60).is_ok() && max_event_age(59).is_err());
        assert!(max_event_age(21_600).is_ok() && max_event_age(21_601).is_err());
        assert!(async_payload(10, 10).is_ok() && async_payload(11, 10).is_err());
        assert!(idempotency_key("k-1").is_ok() && idempotency_key(&"k".repeat(257)).is_err());
    }

    #[test]
    fn destinations() {
        assert_eq!(destination("on_success", "").unwrap(), None);
        assert_eq!(
            destination("on_success", "function:f-1").unwrap(),
            Some(Destination::Function("f-1".into()))
        );
        assert_eq!(
            destination("on_failure", "dlq:errors").unwrap(),
            Some(Destination::Dlq("errors".into()))
        );
        let e = destination("on_failure", "sqs:x").unwrap_err();
        assert!(
            e.to_string().contains("`function:NAME` or `dlq:NAME`"),
            "{e}"
        );
        assert!(destination("on_failure", "dlq:").is_err());
        assert!(destination("on_failure", "function:a/b").is_err());
        assert_eq!(Destination::Dlq("q".into()).to_string(), "dlq:q");
    }
}

#[cfg(test)]
mod layer_tests {
    use super::*;
    use crate::domain::{layer_version_arn, parse_layer_version_arn, ImageConfig, PackageType};

    #[test]
    fn layer_arns_and_limits() {
        let arn = layer_version_arn("my-lib", 3);
        assert_eq!(arn, "arn:aws:lambda:us-east-1:000000000000:layer:my-lib:3");
        assert_eq!(parse_layer_version_arn(&arn), Some(("my-lib".into(), 3)));
        for bad in [
            "arn:aws:lambda:us-east-1:000000000000:layer:my-lib",
            "arn:aws:lambda:us-east-1:000000000000:layer:my-lib:0",
            "arn:aws:lambda:us-east-1:000000000000:layer:my-lib:03",
            "arn:aws:lambda:eu-west-1:000000000000:layer:my-lib:1",
            "arn:aws:lambda:us-east-1:000000000000:layer:a/b:1",
            "my-lib:1",
        ] {
            assert_eq!(parse_layer_version_arn(bad), None, "{bad}");
        }
        let five: Vec<String> = (1..=5).map(|v| layer_version_arn("l", v)).collect();
        assert!(layers(&five).is_ok());
        let mut six = five.clone();
        six.push(layer_version_arn("m", 1));
        assert!(layers(&six)
            .unwrap_err()
            .to_string()
            .contains("at most 5 layers, got 6"));
        let twice = vec![five[0].clone(), five[0].clone()];
        assert!(layers(&twice).unwrap_err().to_string().contains("twice"));
        assert!(layers(&["nope".to_string()])
            .unwrap_err()
            .to_string()
            .contains("not a layer version ARN"));
    }

    #[test]
    fn image_config_only_for_images() {
        let c = ImageConfig {
            entrypoint: vec!["/bin/app".into()],
            ..Default::default()
        };
        assert!(image_config(PackageType::Zip, &c).is_err());
        assert!(image_config(PackageType::Image, &c).is_ok());
        let rel = ImageConfig {
            working_directory: "srv".into(),
            ..Default::default()
        };
        assert!(image_config(PackageType::Image, &rel)
            .unwrap_err()
            .to_string()
            .contains("absolute"));
    }
}
