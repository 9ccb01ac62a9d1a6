//! Domain types shared by the controller and the worker. They are valid by construction: build them
//! through `validate` (or the `TryFrom` impls in `convert`), never from raw proto messages.
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub const DEFAULT_MEMORY_MB: u32 = 128;
pub const DEFAULT_TIMEOUT_S: u32 = 3;
pub const DEFAULT_EPHEMERAL_MB: u32 = 512;
pub const LATEST: &str = "$LATEST";

/// The runtimes Lamina ships bootstraps for, plus the OS-only runtimes `provided`,
/// `provided.al2` and `provided.al2023` (an executable `bootstrap` in the code). The three OS-only
/// runtimes run alike on Lamina (the worker's root, not an Amazon Linux image) and each is kept
/// and reported as the user named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Runtime {
    #[serde(rename = "python3.11")]
    Python311,
    #[serde(rename = "nodejs20.x")]
    Nodejs20,
    #[serde(rename = "provided")]
    Provided,
    #[serde(rename = "provided.al2")]
    ProvidedAl2,
    #[serde(rename = "provided.al2023")]
    ProvidedAl2023,
}

impl Runtime {
    pub const ALL: [Runtime; 5] = [
        Runtime::Python311,
        Runtime::Nodejs20,
        Runtime::Provided,
        Runtime::ProvidedAl2,
        Runtime::ProvidedAl2023,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Python311 => "python3.11",
            Runtime::Nodejs20 => "nodejs20.x",
            Runtime::Provided => "provided",
            Runtime::ProvidedAl2 => "provided.al2",
            Runtime::ProvidedAl2023 => "provided.al2023",
        }
    }

    /// An OS-only runtime: the function brings its own `bootstrap`.
    pub fn is_provided(self) -> bool {
        matches!(
            self,
            Runtime::Provided | Runtime::ProvidedAl2 | Runtime::ProvidedAl2023
        )
    }

    /// `AWS_EXECUTION_ENV`, unset for the OS-only runtimes as in Lambda.
    pub fn execution_env(self) -> Option<&'static str> {
        match self {
            Runtime::Python311 => Some("AWS_Lambda_python3.11"),
            Runtime::Nodejs20 => Some("AWS_Lambda_nodejs20.x"),
            Runtime::Provided | Runtime::ProvidedAl2 | Runtime::ProvidedAl2023 => None,
        }
    }

    pub fn parse(s: &str) -> Option<Runtime> {
        Runtime::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a user declares about a function (everything but its code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSpec {
    pub name: String,
    pub runtime: Runtime,
    pub handler: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub ephemeral_storage_mb: u32,
    pub environment: BTreeMap<String, String>,
    pub description: String,
    /// Layer version ARNs, in the order they are unpacked under `/opt` (at most 5; Zip only).
    #[serde(default)]
    pub layers: Vec<String>,
    #[serde(default)]
    pub package_type: PackageType,
    /// Image only: overrides of the image's `Entrypoint`, `Cmd` and `WorkingDir`.
    #[serde(default)]
    pub image_config: ImageConfig,
    /// VPC attachment of its sandboxes (`None`: the function reaches no VPC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<crate::network::VpcConfig>,
    /// The execution role ARN as sent ("" = none given: Lamina's default role is shown). When it
    /// names one of the cluster's roles (`arn:aws:iam::000000000000:role/NAME`, `fnctl role`), the
    /// function's sandboxes get short-lived credentials for it; other ARNs are kept so that tools
    /// see what they set, and give no credentials.
    #[serde(default)]
    pub role: String,
    /// Lambda's logging configuration, as sent.
    #[serde(default)]
    pub logging: LoggingConfig,
}

/// The role shown for a function created without one (Lamina's own API).
pub const DEFAULT_ROLE: &str = "arn:aws:iam::000000000000:role/lamina";

/// Lambda's `LoggingConfig`, kept as sent (empty fields: not given). The worker passes the format
/// and application level to the function as `AWS_LAMBDA_LOG_FORMAT` / `AWS_LAMBDA_LOG_LEVEL` and
/// the group as `AWS_LAMBDA_LOG_GROUP_NAME`, as Lambda does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggingConfig {
    /// "" (Text), `Text` or `JSON`.
    #[serde(default)]
    pub log_format: String,
    /// JSON only: TRACE, DEBUG, INFO, WARN, ERROR or FATAL.
    #[serde(default)]
    pub application_log_level: String,
    /// JSON only: DEBUG, INFO or WARN.
    #[serde(default)]
    pub system_log_level: String,
    /// "" = `/aws/lambda/NAME`.
    #[serde(default)]
    pub log_group: String,
}

impl LoggingConfig {
    pub fn is_json(&self) -> bool {
        self.log_format == "JSON"
    }

    /// The log group of function `name`: the one given, else Lambda's default.
    pub fn log_group_of(&self, name: &str) -> String {
        if self.log_group.is_empty() {
            format!("/aws/lambda/{name}")
        } else {
            self.log_group.clone()
        }
    }
}

/// The architecture of the machine this runs on, as Lambda names it (`x86_64`, `arm64`): the only
/// one Lamina runs functions on (workers run the code natively; there is no emulation).
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "arm64",
        other => other,
    }
}

/// How a function's code is packaged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PackageType {
    /// A zip unpacked at `/var/task`, run by a built-in runtime or its `bootstrap`.
    #[default]
    Zip,
    /// A container image that becomes the sandbox's root.
    Image,
}

impl PackageType {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageType::Zip => "Zip",
            PackageType::Image => "Image",
        }
    }
}

/// Overrides of an image's configuration; empty fields keep the image's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub working_directory: String,
}

impl ImageConfig {
    pub fn is_empty(&self) -> bool {
        self.entrypoint.is_empty() && self.command.is_empty() && self.working_directory.is_empty()
    }
}

/// A layer version as attached to a function: the function keeps this copy (its blob stays while
/// any function or version refers to it, also after the layer version is deleted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionLayer {
    pub arn: String,
    /// sha256 of the layer's zip, lower-case hex.
    pub code_sha256: String,
    pub code_size: u64,
    pub unzipped_size: u64,
}

/// An image function's image after the function's overrides: what the worker unpacks and runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedImage {
    /// The manifest's digest, `sha256:<hex>`.
    pub digest: String,
    /// `sha256:<hex>` of each layer blob (as stored), applied in order.
    pub layer_digests: Vec<String>,
    pub entrypoint: Vec<String>,
    pub command: Vec<String>,
    pub working_directory: String,
    /// The image's `Env`, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Bytes of regular files once every layer is applied.
    pub unpacked_size: u64,
    /// The image's own `Entrypoint`, `Cmd` and `WorkingDir`, before the overrides: the controller
    /// applies changed overrides to these. Stored, not sent on the wire.
    #[serde(default)]
    pub image_defaults: ImageConfig,
}

/// One published version of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerVersion {
    pub name: String,
    pub version: u32,
    pub description: String,
    pub compatible_runtimes: Vec<Runtime>,
    pub code_sha256: String,
    pub code_size: u64,
    pub unzipped_size: u64,
    pub created_ms: u64,
    /// Lambda's `LicenseInfo`, as sent.
    #[serde(default)]
    pub license_info: String,
    /// Lambda's `CompatibleArchitectures`, as sent (at most the host's: see `host_architecture`).
    #[serde(default)]
    pub compatible_architectures: Vec<String>,
}

impl LayerVersion {
    pub fn arn(&self) -> String {
        layer_version_arn(&self.name, self.version)
    }
}

pub fn layer_arn(name: &str) -> String {
    format!("arn:aws:lambda:{}:{}:layer:{}", REGION, ACCOUNT_ID, name)
}

pub fn layer_version_arn(name: &str, version: u32) -> String {
    format!("{}:{}", layer_arn(name), version)
}

/// `(name, version)` of `arn:aws:lambda:REGION:ACCOUNT:layer:NAME:N` (this region and account).
pub fn parse_layer_version_arn(arn: &str) -> Option<(String, u32)> {
    let rest = arn.strip_prefix(&format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:"))?;
    let (name, version) = rest.rsplit_once(':')?;
    let ok_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let version = if version.starts_with('0') {
        None
    } else {
        version.parse::<u32>().ok().filter(|v| *v >= 1)
    };
    match (ok_name, version) {
        (true, Some(v)) => Some((name.to_string(), v)),
        _ => None,
    }
}

/// A stored function: its spec, its code, and the revision that changes on every update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    pub spec: FunctionSpec,
    /// sha256 of the code zip, lower-case hex.
    pub code_sha256: String,
    pub code_size: u64,
    /// New on every code or configuration change: a sandbox only serves the revision it was made for.
    pub revision_id: String,
    pub version: String,
    pub last_modified_ms: u64,
    /// The attached layers as resolved when attached (the spec holds their ARNs).
    #[serde(default)]
    pub layers: Vec<FunctionLayer>,
    /// Image functions: the image (`code_sha256` is then its manifest's hex digest).
    #[serde(default)]
    pub image: Option<ResolvedImage>,
}

impl FunctionConfig {
    pub fn arn(&self) -> String {
        function_arn(&self.spec.name)
    }

    /// Every stored blob this function (or version) uses, one entry per use: its code (zip or
    /// image manifest), its layers' zips and its image's layers. Blob reference counts count these.
    pub fn blob_digests(&self) -> Vec<String> {
        let mut out = vec![self.code_sha256.clone()];
        out.extend(self.layers.iter().map(|l| l.code_sha256.clone()));
        if let Some(image) = &self.image {
            out.extend(
                image
                    .layer_digests
                    .iter()
                    .map(|d| d.strip_prefix("sha256:").unwrap_or(d).to_string()),
            );
        }
        out
    }
}

pub fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:{}:{}:function:{}", REGION, ACCOUNT_ID, name)
}

/// The ARN of a version or alias of a function (`…:function:NAME:QUALIFIER`).
pub fn qualified_function_arn(name: &str, qualifier: &str) -> String {
    format!("{}:{}", function_arn(name), qualifier)
}

/// A name for a published version: routes invocations, all or a weighted share, to versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub function_name: String,
    pub name: String,
    /// A published version number, or `$LATEST`.
    pub function_version: String,
    /// At most one other version with its share of the invocations, in (0, 1).
    pub additional_version_weights: BTreeMap<String, f64>,
    pub description: String,
    /// New on every update.
    pub revision_id: String,
    pub last_modified_ms: u64,
}

impl Alias {
    pub fn arn(&self) -> String {
        qualified_function_arn(&self.function_name, &self.name)
    }
}

/// Provisioned concurrency requested for one version or alias of a function. What is allocated is
/// not stored: the controller counts it from the workers' heartbeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionedConfig {
    pub function_name: String,
    /// A version number or an alias name.
    pub qualifier: String,
    pub requested: u32,
    pub last_modified_ms: u64,
}

/// The region and account Lamina reports in ARNs and `AWS_REGION`.
pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "000000000000";

pub const DEFAULT_MAX_RETRY_ATTEMPTS: u32 = 2;
pub const DEFAULT_MAX_EVENT_AGE_S: u32 = 21_600;
/// Where failed async events go when a function has no on-failure destination configured.
pub const DEFAULT_FAILURE_DLQ: &str = "default";

/// Where an async invocation's record (or event) goes when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Destination {
    /// Invoke this function asynchronously with the record as its event.
    Function(String),
    /// Append to this dead-letter queue kept by Lamina.
    Dlq(String),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Function(n) => write!(f, "function:{n}"),
            Destination::Dlq(n) => write!(f, "dlq:{n}"),
        }
    }
}

/// A function's asynchronous invocation settings (Lambda's `FunctionEventInvokeConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    pub max_retry_attempts: u32,
    pub max_event_age_s: u32,
    pub on_success: Option<Destination>,
    /// `None`: failed events are dropped (the user asked for `none`); the default is
    /// `dlq:default`.
    pub on_failure: Option<Destination>,
    pub last_modified_ms: u64,
}

impl Default for EventInvokeConfig {
    fn default() -> Self {
        EventInvokeConfig {
            max_retry_attempts: DEFAULT_MAX_RETRY_ATTEMPTS,
            max_event_age_s: DEFAULT_MAX_EVENT_AGE_S,
            on_success: None,
            on_failure: Some(Destination::Dlq(DEFAULT_FAILURE_DLQ.to_string())),
            last_modified_ms: 0,
        }
    }
}
