//! The JSON shapes of botocore's Lambda service model, and Lambda's error responses.
use std::collections::HashMap;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use lamina_proto::domain::{
    function_arn, host_architecture, Destination, EventInvokeConfig, ACCOUNT_ID, DEFAULT_ROLE,
    REGION,
};
use lamina_proto::v1;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::api::layers::LayerError;
use crate::api::versions::VersionError;
use crate::api::ApiError;
use crate::concurrency::{ConcurrencyError, ThrottleReason};
use crate::store::StoreError;

/// A Lambda error: status, `x-amzn-ErrorType` and `{"Type","Message"}`.
#[derive(Debug)]
pub struct RestError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    /// A 429's `Reason` (default `ConcurrentInvocationLimitExceeded`).
    pub reason: Option<&'static str>,
}

impl RestError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> RestError {
        RestError {
            status,
            kind,
            message: message.into(),
            reason: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> RestError {
        RestError::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            message,
        )
    }

    pub fn not_found(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let kind_of_fault = if self.status.is_server_error() {
            "Service"
        } else {
            "User"
        };
        let mut body =
            json!({"Type": kind_of_fault, "Message": self.message, "message": self.message});
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            body["Reason"] = json!(self
                .reason
                .unwrap_or(ThrottleReason::ConcurrentInvocationLimitExceeded.as_str()));
            body["retryAfterSeconds"] = json!("1");
        }
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.headers_mut()
            .insert("x-amzn-ErrorType", HeaderValue::from_static(self.kind));
        resp
    }
}

impl From<ApiError> for RestError {
    fn from(e: ApiError) -> RestError {
        let message = e.to_string();
        match &e {
            ApiError::Store(StoreError::FunctionExists(_)) => {
                RestError::new(StatusCode::CONFLICT, "ResourceConflictException", message)
            }
            ApiError::Store(StoreError::RevisionConflict { .. }) => {
                RestError::new(StatusCode::CONFLICT, "ResourceConflictException", message)
            }
            ApiError::Store(StoreError::VersionInUse { .. })
            | ApiError::Version(VersionError::AliasExists { .. })
            | ApiError::Store(StoreError::FunctionUrlExists { .. })
            | ApiError::HttpRouteExists { .. }
            | ApiError::GatewayLimit(_) => {
                RestError::new(StatusCode::CONFLICT, "ResourceConflictException", message)
            }
            ApiError::Store(StoreError::PublishPrecondition { .. })
            | ApiError::RevisionPrecondition { .. }
            | ApiError::Version(VersionError::AliasRevision { .. }) => RestError::new(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailedException",
                message,
            ),
            ApiError::Version(
                VersionError::VersionNotFound { .. } | VersionError::AliasNotFound { .. },
            ) => RestError::not_found(message),
            ApiError::Version(_) => RestError::invalid(message),
            ApiError::Store(StoreError::FunctionNotFound(_))
            | ApiError::FunctionNotFound(_)
            | ApiError::QualifierNotFound { .. }
            | ApiError::BlobNotFound(_)
            | ApiError::InvocationNotFound(_)
            | ApiError::EventInvokeConfigNotFound(_)
            | ApiError::Layer(LayerError::NotFound(_))
            | ApiError::QueueNotFound(_)
            | ApiError::Store(
                StoreError::FunctionUrlNotFound { .. } | StoreError::AliasNotFound { .. },
            )
            | ApiError::HttpApiNotFound(_)
            | ApiError::HttpRouteNotFound { .. } => RestError::not_found(message),
            // A function naming a missing layer version, or too much code with its layers: a bad
            // parameter (4xx, which SDKs do not retry).
            ApiError::Layer(LayerError::AttachMissing(_) | LayerError::TooLarge { .. })
            | ApiError::Store(StoreError::LayerVersionNotFound(_)) => RestError::invalid(message),
            ApiError::Store(StoreError::BlobMissing(_)) => {
                RestError::new(StatusCode::CONFLICT, "ResourceConflictException", message)
            }
            ApiError::Validation(v) if v.field == "payload" => RestError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                message,
            ),
            ApiError::Code(_)
            | ApiError::Validation(_)
            | ApiError::BadRequest(_)
            | ApiError::Store(StoreError::VpcTargetGone { .. }) => RestError::invalid(message),
            ApiError::Concurrency(ConcurrencyError::Throttled { reason, .. }) => RestError {
                reason: Some(reason.as_str()),
                ..RestError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    message,
                )
            },
            ApiError::Concurrency(ConcurrencyError::ReservationTooLarge { .. }) => {
                RestError::invalid(message)
            }
            ApiError::ProvisionedNotFound { .. } => RestError::new(
                StatusCode::NOT_FOUND,
                "ProvisionedConcurrencyConfigNotFoundException",
                message,
            ),
            ApiError::NoWorker => RestError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequestsException",
                message,
            ),
            ApiError::PermissionDenied(_) => {
                RestError::new(StatusCode::FORBIDDEN, "AccessDeniedException", message)
            }
            ApiError::Permission(e) => {
                use crate::api::permissions::PermissionError as P;
                match e {
                    P::StatementExists { .. } => {
                        RestError::new(StatusCode::CONFLICT, "ResourceConflictException", message)
                    }
                    P::StatementNotFound { .. } | P::NoPolicy(_) => RestError::not_found(message),
                    P::Revision { .. } => RestError::new(
                        StatusCode::PRECONDITION_FAILED,
                        "PreconditionFailedException",
                        message,
                    ),
                    P::Invalid(_) => RestError::invalid(message),
                    P::TooLong { .. } => RestError::new(
                        StatusCode::BAD_REQUEST,
                        "PolicyLengthExceededException",
                        message,
                    ),
                }
            }
            ApiError::Worker { status, .. } if status.code() == tonic::Code::ResourceExhausted => {
                RestError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    message,
                )
            }
            _ => {
                tracing::error!(error = %message, "rest api: service error");
                RestError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServiceException",
                    message,
                )
            }
        }
    }
}

/// A function name in any form Lambda's model accepts -> (name, qualifier): `NAME`,
/// `NAME:QUALIFIER`, the partial ARN `ACCOUNT:function:NAME[:QUALIFIER]` (also with the region,
/// `REGION:ACCOUNT:function:NAME`) and the full ARN `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`
/// (the `FunctionName` pattern of botocore's service model). Lamina has one account and region:
/// the ones in an ARN are not compared.
pub fn parse_function_name(s: &str) -> Result<(String, Option<String>), RestError> {
    let bad = || {
        RestError::invalid(format!(
            "{:?} is not a function name or ARN: use NAME, NAME:QUALIFIER, \
             ACCOUNT:function:NAME or arn:aws:lambda:REGION:ACCOUNT:function:NAME",
            truncated(s, 160)
        ))
    };
    if s.is_empty() || s.len() > 256 {
        return Err(bad());
    }
    let mut parts: &[&str] = &s.split(':').collect::<Vec<_>>();
    if parts[0] == "arn" {
        // arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
        match parts {
            ["arn", partition, "lambda", region, account, "function", rest @ ..]
                if partition.starts_with("aws") && is_region(region) && is_account(account) =>
            {
                parts = rest;
            }
            _ => return Err(bad()),
        }
    } else {
        if parts.len() > 2 && is_region(parts[0]) {
            parts = &parts[1..];
        }
        if parts.len() > 2 && is_account(parts[0]) {
            parts = &parts[1..];
        }
        if parts.len() > 1 && parts[0] == "function" {
            parts = &parts[1..];
        }
    }
    match parts {
        [name] if !name.is_empty() => Ok((name.to_string(), None)),
        [name, q] if !name.is_empty() && !q.is_empty() => {
            Ok((name.to_string(), Some(q.to_string())))
        }
        _ => Err(bad()),
    }
}

/// The function name of a path parameter that takes no qualifier (`NAME` or its ARN).
pub fn unqualified_name(param: &str) -> Result<String, RestError> {
    match parse_function_name(param)? {
        (name, None) => Ok(name),
        (_, Some(q)) => Err(RestError::invalid(format!(
            "{param:?} has a qualifier ({q:?}); this operation takes the unqualified function name"
        ))),
    }
}

/// The name and qualifier of a path parameter plus `?Qualifier=` (which must agree with a
/// qualifier in the name, as in Lambda).
pub fn qualified_name(
    param: &str,
    query: &HashMap<String, String>,
) -> Result<(String, String), RestError> {
    let (name, in_path) = parse_function_name(param)?;
    let in_query = query.get("Qualifier").cloned();
    match (in_path, in_query) {
        (Some(p), Some(q)) if p != q => Err(RestError::invalid(format!(
            "the qualifier in the function name ({p:?}) and Qualifier ({q:?}) differ"
        ))),
        (p, q) => Ok((name, p.or(q).unwrap_or_default())),
    }
}

/// `us-east-1`, `us-gov-west-1`, `eu-central-2`: letters and dashes, then one digit.
fn is_region(s: &str) -> bool {
    let Some((head, digit)) = s.rsplit_once('-') else {
        return false;
    };
    digit.len() == 1
        && digit.bytes().all(|b| b.is_ascii_digit())
        && head.contains('-')
        && head.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// At most `max` characters of `s` (what an error quotes of a long input).
pub fn truncated(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

pub use lamina_proto::time::lambda_timestamp as last_modified;

/// A `FunctionConfiguration` as botocore reads it.
pub fn configuration(c: &v1::FunctionConfiguration) -> Value {
    let sha = hex::decode(&c.code_sha256)
        .map(|d| base64::engine::general_purpose::STANDARD.encode(d))
        .unwrap_or_default();
    json!({
        "FunctionName": c.name,
        "FunctionArn": c.arn,
        "Runtime": c.runtime,
        "Role": if c.role.is_empty() { DEFAULT_ROLE } else { c.role.as_str() },
        "Handler": c.handler,
        "CodeSize": c.code_size,
        "Description": c.description,
        "Timeout": c.timeout_seconds,
        "MemorySize": c.memory_size_mb,
        "LastModified": last_modified(c.last_modified_ms),
        "CodeSha256": sha,
        "Version": c.version,
        "Environment": {"Variables": c.environment},
        "RevisionId": c.revision_id,
        "State": c.state,
        "LastUpdateStatus": c.last_update_status,
        "PackageType": if c.package_type.is_empty() { "Zip" } else { c.package_type.as_str() },
        "Architectures": if c.architectures.is_empty() { vec![host_architecture().to_string()] } else { c.architectures.clone() },
        "EphemeralStorage": {"Size": c.ephemeral_storage_mb},
        "Layers": c.layers.iter().map(|l| json!({"Arn": l.arn, "CodeSize": l.code_size})).collect::<Vec<_>>(),
        "TracingConfig": {"Mode": if c.tracing_mode.is_empty() { "PassThrough" } else { c.tracing_mode.as_str() }},
        "LoggingConfig": logging_config(&c.name, c.logging_config.as_ref()),
    })
}

/// Lambda's `LoggingConfig` of a function: what was sent, with Lambda's defaults for the rest
/// (Text; with JSON, INFO levels; the group `/aws/lambda/NAME`).
fn logging_config(name: &str, c: Option<&v1::LoggingConfig>) -> Value {
    let c: lamina_proto::domain::LoggingConfig = c.cloned().map(Into::into).unwrap_or_default();
    let mut out = json!({
        "LogFormat": if c.is_json() { "JSON" } else { "Text" },
        "LogGroup": c.log_group_of(name),
    });
    if c.is_json() {
        let or_info = |l: &str| {
            if l.is_empty() {
                "INFO".to_string()
            } else {
                l.to_string()
            }
        };
        out["ApplicationLogLevel"] = json!(or_info(&c.application_log_level));
        out["SystemLogLevel"] = json!(or_info(&c.system_log_level));
    }
    out
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TracingIn {
    pub mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoggingIn {
    pub log_format: Option<String>,
    pub application_log_level: Option<String>,
    pub system_log_level: Option<String>,
    pub log_group: Option<String>,
}

impl LoggingIn {
    pub fn into_domain(self) -> lamina_proto::domain::LoggingConfig {
        lamina_proto::domain::LoggingConfig {
            log_format: self.log_format.unwrap_or_default(),
            application_log_level: self.application_log_level.unwrap_or_default(),
            system_log_level: self.system_log_level.unwrap_or_default(),
            log_group: self.log_group.unwrap_or_default(),
        }
    }

    pub fn into_proto(self) -> v1::LoggingConfig {
        v1::LoggingConfig {
            log_format: self.log_format.unwrap_or_default(),
            application_log_level: self.application_log_level.unwrap_or_default(),
            system_log_level: self.system_log_level.unwrap_or_default(),
            log_group: self.log_group.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentIn {
    pub variables: Option<HashMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StorageIn {
    pub size: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CodeIn {
    pub zip_file: Option<String>,
    pub s3_bucket: Option<String>,
    pub image_uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateFunctionIn {
    pub function_name: String,
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub code: CodeIn,
    pub memory_size: Option<u32>,
    pub timeout: Option<u32>,
    pub description: Option<String>,
    pub environment: Option<EnvironmentIn>,
    pub ephemeral_storage: Option<StorageIn>,
    pub package_type: Option<String>,
    pub layers: Option<Vec<String>>,
    pub role: Option<String>,
    pub architectures: Option<Vec<String>>,
    pub tracing_config: Option<TracingIn>,
    pub logging_config: Option<LoggingIn>,
    pub tags: Option<HashMap<String, String>>,
    pub publish: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateCodeIn {
    pub zip_file: Option<String>,
    pub s3_bucket: Option<String>,
    pub image_uri: Option<String>,
    pub publish: Option<bool>,
    pub revision_id: Option<String>,
    pub architectures: Option<Vec<String>>,
    pub dry_run: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateConfigurationIn {
    pub runtime: Option<String>,
    pub handler: Option<String>,
    pub memory_size: Option<u32>,
    pub timeout: Option<u32>,
    pub description: Option<String>,
    pub environment: Option<EnvironmentIn>,
    pub ephemeral_storage: Option<StorageIn>,
    pub revision_id: Option<String>,
    pub layers: Option<Vec<String>>,
    pub role: Option<String>,
    pub tracing_config: Option<TracingIn>,
    pub logging_config: Option<LoggingIn>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationIn {
    pub destination: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DestinationConfigIn {
    pub on_success: Option<DestinationIn>,
    pub on_failure: Option<DestinationIn>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EventInvokeConfigIn {
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_in_seconds: Option<u32>,
    pub destination_config: Option<DestinationConfigIn>,
}

/// A Lambda destination ARN -> Lamina's `function:NAME` / `dlq:NAME` (others pass unchanged).
pub fn destination_in(arn: &str) -> String {
    if let Ok((name, None)) = parse_function_name(arn) {
        if arn.starts_with("arn:") {
            return format!("function:{name}");
        }
    }
    if let Some(rest) = arn.strip_prefix("arn:aws:sqs:") {
        if let Some(queue) = rest.split(':').nth(2) {
            return format!("dlq:{queue}");
        }
    }
    arn.to_string()
}

/// Lamina's destination -> the ARN Lambda would show.
pub fn destination_out(d: &str) -> Option<String> {
    if d.is_empty() || d == "none" {
        return None;
    }
    Some(if let Some(name) = d.strip_prefix("function:") {
        function_arn(name)
    } else if let Some(queue) = d.strip_prefix("dlq:") {
        format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue}")
    } else {
        d.to_string()
    })
}

/// Lambda's `FunctionEventInvokeConfig` of function `name`.
pub fn event_invoke_config(name: &str, c: &EventInvokeConfig) -> Value {
    let dest = |d: &Option<Destination>| match d.as_ref().map(ToString::to_string) {
        Some(d) => match destination_out(&d) {
            Some(arn) => json!({"Destination": arn}),
            None => json!({}),
        },
        None => json!({}),
    };
    json!({
        "LastModified": c.last_modified_ms as f64 / 1000.0,
        "FunctionArn": function_arn(name),
        "MaximumRetryAttempts": c.max_retry_attempts,
        "MaximumEventAgeInSeconds": c.max_event_age_s,
        "DestinationConfig": {"OnSuccess": dest(&c.on_success), "OnFailure": dest(&c.on_failure)},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_throttle_is_a_429_with_its_reason() {
        let e = ApiError::Concurrency(ConcurrencyError::Throttled {
            reason: ThrottleReason::ReservedFunctionConcurrentInvocationLimitExceeded,
            detail: "function `f` is at its reserved concurrency".into(),
        });
        let resp = RestError::from(e).into_response();
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            resp.headers()["x-amzn-ErrorType"],
            "TooManyRequestsException"
        );
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["Reason"],
            "ReservedFunctionConcurrentInvocationLimitExceeded"
        );
        assert!(v["Message"]
            .as_str()
            .unwrap()
            .starts_with("ReservedFunctionConcurrentInvocationLimitExceeded: "));
        let resp = RestError::from(ApiError::NoWorker).into_response();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["Reason"], "ConcurrentInvocationLimitExceeded");
    }

    #[test]
    fn names_and_arns() {
        assert_eq!(parse_function_name("f").unwrap(), ("f".into(), None));
        assert_eq!(
            parse_function_name("f:$LATEST").unwrap(),
            ("f".into(), Some("$LATEST".into()))
        );
        assert_eq!(
            parse_function_name("arn:aws:lambda:us-east-1:000000000000:function:f").unwrap(),
            ("f".into(), None)
        );
        assert_eq!(
            parse_function_name("arn:aws:lambda:us-east-1:123456789012:function:f:7").unwrap(),
            ("f".into(), Some("7".into()))
        );
        assert!(parse_function_name("arn:aws:s3:::bucket").is_err());
        // The partial ARN, with and without a qualifier or the region.
        assert_eq!(
            parse_function_name("000000000000:function:f").unwrap(),
            ("f".into(), None)
        );
        assert_eq!(
            parse_function_name("123456789012:function:f:live").unwrap(),
            ("f".into(), Some("live".into()))
        );
        assert_eq!(
            parse_function_name("us-east-1:123456789012:function:f").unwrap(),
            ("f".into(), None)
        );
        assert_eq!(
            parse_function_name("function:f:$LATEST").unwrap(),
            ("f".into(), Some("$LATEST".into()))
        );
        for bad in [
            "",
            "f:",
            ":1",
            "f:1:2",
            "123456789012:function:",
            "arn:aws:lambda:us-east-1:000000000000:layer:l:1",
            "arn:aws:lambda:us-east-1:000000000000:function:f:1:2",
            "arn:aws:lambda:us-east-1:12:function:f",
        ] {
            assert!(parse_function_name(bad).is_err(), "{bad}");
        }
        assert!(parse_function_name(&"a".repeat(300)).is_err());
    }

    #[test]
    fn destinations_round_trip() {
        assert_eq!(
            destination_in("arn:aws:lambda:us-east-1:000000000000:function:g"),
            "function:g"
        );
        assert_eq!(
            destination_in("arn:aws:sqs:us-east-1:1:failed"),
            "dlq:failed"
        );
        assert_eq!(destination_in("dlq:x"), "dlq:x");
        assert_eq!(
            destination_out("dlq:failed").unwrap(),
            "arn:aws:sqs:us-east-1:000000000000:failed"
        );
        assert_eq!(destination_out("none"), None);
    }

    #[test]
    fn last_modified_is_lambda_shaped() {
        assert_eq!(last_modified(0), "1970-01-01T00:00:00.000+0000");
        assert_eq!(
            last_modified(1_440_938_160_123),
            "2015-08-30T12:36:00.123+0000"
        );
    }
}
