//! The JSON shapes of botocore's Lambda service model, and Lambda's error responses.
use std::collections::HashMap;

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use lamina_proto::domain::{function_arn, ACCOUNT_ID, REGION};
use lamina_proto::v1;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

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
            | ApiError::Version(VersionError::AliasExists { .. }) => {
                RestError::new(StatusCode::CONFLICT, "ResourceConflictException", message)
            }
            ApiError::Store(StoreError::PublishPrecondition { .. })
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
            | ApiError::QueueNotFound(_) => RestError::not_found(message),
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

/// `NAME`, `NAME:QUALIFIER` or a full function ARN -> (name, qualifier).
pub fn parse_function_name(s: &str) -> Result<(String, Option<String>), RestError> {
    if let Some(rest) = s.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.split(':').collect();
        // aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
        if parts.len() >= 6 && parts[1] == "lambda" && parts[4] == "function" && parts.len() <= 7 {
            return Ok((parts[5].to_string(), parts.get(6).map(|q| q.to_string())));
        }
        return Err(RestError::invalid(format!(
            "{s:?} is not a function ARN: use arn:aws:lambda:REGION:ACCOUNT:function:NAME or the name"
        )));
    }
    Ok(match s.split_once(':') {
        Some((n, q)) => (n.to_string(), Some(q.to_string())),
        None => (s.to_string(), None),
    })
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
        "Role": format!("arn:aws:iam::{ACCOUNT_ID}:role/lamina"),
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
        "Architectures": ["x86_64"],
        "EphemeralStorage": {"Size": c.ephemeral_storage_mb},
        "Layers": c.layers.iter().map(|l| json!({"Arn": l.arn, "CodeSize": l.code_size})).collect::<Vec<_>>(),
    })
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
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateCodeIn {
    pub zip_file: Option<String>,
    pub s3_bucket: Option<String>,
    pub image_uri: Option<String>,
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

pub fn event_invoke_config(c: &v1::FunctionEventInvokeConfig) -> Value {
    let dest = |d: &str| match destination_out(d) {
        Some(arn) => json!({"Destination": arn}),
        None => json!({}),
    };
    json!({
        "LastModified": c.last_modified_ms as f64 / 1000.0,
        "FunctionArn": function_arn(&c.function_name),
        "MaximumRetryAttempts": c.maximum_retry_attempts,
        "MaximumEventAgeInSeconds": c.maximum_event_age_seconds,
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
            parse_function_name("arn:aws:lambda:us-east-1:1:function:f:7").unwrap(),
            ("f".into(), Some("7".into()))
        );
        assert!(parse_function_name("arn:aws:s3:::bucket").is_err());
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
