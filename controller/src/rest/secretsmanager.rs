//! Secrets Manager on the REST front (AWS JSON 1.1, `X-Amz-Target: secretsmanager.Operation`):
//! the JSON shapes of botocore's model (`secretsmanager/2017-10-17/service-2.json`) over the core
//! in `crate::secrets`, errors with the service's codes.
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use super::service::{Handler, OperationRequest, Operations, Protocol, Service};
use super::shapes::RestError;
use crate::api::{ApiError, Shared};
use crate::secrets::manager::{self, Filter, ListInput, NewSecret};
use crate::secrets::rotation::{self, RotateInput};
use crate::secrets::{Plain, SecretsError};
use crate::store::secrets::{SecretRecord, Tag};

const PROTOCOL: Protocol = Protocol::AwsJson1_1;

pub(super) fn service(shared: Arc<Shared>) -> Service {
    Service {
        signing_name: "secretsmanager",
        protocol: PROTOCOL,
        prefixes: &["secretsmanager"],
        handler: Handler::Operations(Arc::new(SecretsManager { shared })),
    }
}

struct SecretsManager {
    shared: Arc<Shared>,
}

const OPERATIONS: &[&str] = &[
    "CreateSecret",
    "GetSecretValue",
    "PutSecretValue",
    "UpdateSecret",
    "UpdateSecretVersionStage",
    "DescribeSecret",
    "ListSecrets",
    "ListSecretVersionIds",
    "DeleteSecret",
    "RestoreSecret",
    "RotateSecret",
];

impl Operations for SecretsManager {
    fn serves(&self, operation: &str) -> bool {
        OPERATIONS.contains(&operation)
    }

    fn call(&self, operation: String, request: OperationRequest) -> BoxFuture<'static, Response> {
        let shared = Arc::clone(&self.shared);
        async move {
            match run(&shared, &operation, request).await {
                Ok(v) => json_answer(PROTOCOL, &v),
                Err(e) => secrets_error(e),
            }
        }
        .boxed()
    }
}

/// A 200 answer in an AWS JSON protocol.
pub(super) fn json_answer(protocol: Protocol, value: &Value) -> Response {
    let mut r = (StatusCode::OK, value.to_string()).into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if protocol == Protocol::AwsJson1_0 {
            "application/x-amz-json-1.0"
        } else {
            "application/x-amz-json-1.1"
        }),
    );
    r
}

/// An error of the API layer (a refused authorisation, a failed store) in an AWS JSON protocol.
pub(super) fn api_error(protocol: Protocol, e: ApiError) -> Response {
    let rest = RestError::from(e);
    let code = match rest.kind {
        "AccessDeniedException" => "AccessDeniedException",
        _ if rest.status.is_server_error() => "InternalServiceError",
        kind => kind,
    };
    protocol.error(rest.status, code, rest.message)
}

fn secrets_error(e: SecretsError) -> Response {
    match e {
        SecretsError::Api(a) => api_error(PROTOCOL, a),
        e => {
            let (code, server) = e.code();
            let status = if server {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::BAD_REQUEST
            };
            PROTOCOL.error(status, code, e.to_string())
        }
    }
}

/// The request body as `T` (`{}` when empty).
pub(super) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, String> {
    let body: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(body).map_err(|e| format!("the request body is not valid: {e}"))
}

/// Seconds since the epoch, as the JSON protocols send timestamps.
pub(super) fn seconds(ms: u64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn invalid(message: String) -> SecretsError {
    SecretsError::InvalidParameter(message)
}

fn value_of(string: Option<String>, binary: Option<String>) -> Result<Option<Plain>, SecretsError> {
    match (string, binary) {
        (Some(_), Some(_)) => Err(invalid(
            "give SecretString or SecretBinary, not both".to_string(),
        )),
        (Some(s), None) => Ok(Some(Plain {
            binary: false,
            bytes: Zeroizing::new(s.into_bytes()),
        })),
        (None, Some(b)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b.as_bytes())
                .map_err(|_| invalid("SecretBinary is not base64".to_string()))?;
            Ok(Some(Plain {
                binary: true,
                bytes: Zeroizing::new(bytes),
            }))
        }
        (None, None) => Ok(None),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagIn {
    key: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Input {
    name: Option<String>,
    secret_id: Option<String>,
    client_request_token: Option<String>,
    description: Option<String>,
    kms_key_id: Option<String>,
    secret_string: Option<String>,
    secret_binary: Option<String>,
    tags: Vec<TagIn>,
    version_id: Option<String>,
    version_stage: Option<String>,
    version_stages: Option<Vec<String>>,
    move_to_version_id: Option<String>,
    remove_from_version_id: Option<String>,
    recovery_window_in_days: Option<i64>,
    force_delete_without_recovery: bool,
    include_planned_deletion: bool,
    include_deprecated: bool,
    max_results: Option<i64>,
    next_token: Option<String>,
    filters: Vec<FilterIn>,
    sort_order: Option<String>,
    sort_by: Option<String>,
    #[serde(rename = "RotationLambdaARN")]
    rotation_lambda_arn: Option<String>,
    rotation_rules: Option<RulesIn>,
    rotate_immediately: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FilterIn {
    key: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RulesIn {
    automatically_after_days: Option<i64>,
    schedule_expression: Option<String>,
    duration: Option<String>,
}

fn required(v: Option<String>, field: &str) -> Result<String, SecretsError> {
    v.ok_or_else(|| invalid(format!("{field} is required")))
}

async fn run(
    shared: &Shared,
    operation: &str,
    request: OperationRequest,
) -> Result<Value, SecretsError> {
    let input: Input = parse(&request.body).map_err(invalid)?;
    let ext = &request.extensions;
    let written = |w: manager::Written| {
        let mut o = json!({"ARN": w.arn, "Name": w.name});
        if let Some(v) = w.version_id {
            o["VersionId"] = json!(v);
        }
        o
    };
    Ok(match operation {
        "CreateSecret" => {
            let value = value_of(input.secret_string, input.secret_binary)?;
            let w = manager::create(
                shared,
                ext,
                NewSecret {
                    name: required(input.name, "Name")?,
                    client_request_token: input.client_request_token,
                    description: input.description,
                    kms_key_id: input.kms_key_id,
                    value,
                    tags: input
                        .tags
                        .into_iter()
                        .map(|t| Tag {
                            key: t.key,
                            value: t.value,
                        })
                        .collect(),
                },
            )
            .await?;
            written(w)
        }
        "GetSecretValue" => {
            let id = required(input.secret_id, "SecretId")?;
            let v = manager::get_value(
                shared,
                ext,
                &id,
                input.version_id.as_deref(),
                input.version_stage.as_deref(),
            )
            .await?;
            let mut o = json!({
                "ARN": v.arn,
                "Name": v.name,
                "VersionId": v.version_id,
                "VersionStages": v.stages,
                "CreatedDate": seconds(v.created_ms),
            });
            if v.value.binary {
                o["SecretBinary"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(&*v.value.bytes));
            } else {
                o["SecretString"] = json!(String::from_utf8_lossy(&v.value.bytes));
            }
            o
        }
        "PutSecretValue" => {
            let id = required(input.secret_id, "SecretId")?;
            let value = value_of(input.secret_string, input.secret_binary)?.ok_or_else(|| {
                invalid("PutSecretValue needs SecretString or SecretBinary".to_string())
            })?;
            let w = manager::put_value(
                shared,
                ext,
                &id,
                input.client_request_token,
                value,
                input.version_stages,
                "secretsmanager:PutSecretValue",
            )
            .await?;
            let stages = w.stages.clone();
            let mut o = written(w);
            o["VersionStages"] = json!(stages);
            o
        }
        "UpdateSecret" => {
            let id = required(input.secret_id, "SecretId")?;
            let value = value_of(input.secret_string, input.secret_binary)?;
            written(
                manager::update(
                    shared,
                    ext,
                    &id,
                    input.client_request_token,
                    input.description,
                    input.kms_key_id,
                    value,
                )
                .await?,
            )
        }
        "UpdateSecretVersionStage" => {
            let id = required(input.secret_id, "SecretId")?;
            let stage = required(input.version_stage, "VersionStage")?;
            written(
                manager::update_version_stage(
                    shared,
                    ext,
                    &id,
                    &stage,
                    input.move_to_version_id.as_deref(),
                    input.remove_from_version_id.as_deref(),
                )
                .await?,
            )
        }
        "DescribeSecret" => {
            let id = required(input.secret_id, "SecretId")?;
            describe(
                &manager::describe(shared, ext, &id).await?,
                "VersionIdsToStages",
            )
        }
        "ListSecrets" => {
            let (list, next) = manager::list(
                shared,
                ext,
                ListInput {
                    include_planned_deletion: input.include_planned_deletion,
                    max_results: input.max_results,
                    next_token: input.next_token,
                    filters: input
                        .filters
                        .into_iter()
                        .map(|f| Filter {
                            key: f.key,
                            values: f.values,
                        })
                        .collect(),
                    sort_order: input.sort_order,
                    sort_by: input.sort_by,
                },
            )
            .await?;
            let mut o = json!({
                "SecretList": list
                    .iter()
                    .map(|r| describe(r, "SecretVersionsToStages"))
                    .collect::<Vec<_>>()
            });
            if let Some(n) = next {
                o["NextToken"] = json!(n);
            }
            o
        }
        "ListSecretVersionIds" => {
            let id = required(input.secret_id, "SecretId")?;
            let r = manager::list_versions(shared, ext, &id, input.include_deprecated).await?;
            let versions: Vec<Value> = r
                .versions
                .iter()
                .map(|(id, v)| {
                    json!({
                        "VersionId": id,
                        "VersionStages": v.stages,
                        "CreatedDate": seconds(v.created_ms),
                    })
                })
                .collect();
            json!({"ARN": r.arn, "Name": r.name, "Versions": versions})
        }
        "DeleteSecret" => {
            let id = required(input.secret_id, "SecretId")?;
            let d = manager::delete(
                shared,
                ext,
                &id,
                input.recovery_window_in_days,
                input.force_delete_without_recovery,
            )
            .await?;
            json!({
                "ARN": d.arn,
                "Name": d.name,
                "DeletionDate": seconds(d.deletion_date_ms),
            })
        }
        "RestoreSecret" => {
            let id = required(input.secret_id, "SecretId")?;
            written(manager::restore(shared, ext, &id).await?)
        }
        "RotateSecret" => {
            let rules = input.rotation_rules.unwrap_or_default();
            written(
                rotation::rotate(
                    shared,
                    ext,
                    RotateInput {
                        secret_id: required(input.secret_id, "SecretId")?,
                        client_request_token: input.client_request_token,
                        lambda_arn: input.rotation_lambda_arn,
                        automatically_after_days: rules.automatically_after_days,
                        schedule_expression: rules.schedule_expression,
                        duration: rules.duration,
                        rotate_immediately: input.rotate_immediately,
                    },
                )
                .await?,
            )
        }
        other => {
            return Err(SecretsError::InvalidRequest(format!(
                "operation {other} is not served"
            )))
        }
    })
}

/// `DescribeSecret`'s answer (and a `ListSecrets` entry, whose version map has another name).
fn describe(r: &SecretRecord, versions_field: &str) -> Value {
    let mut o = Map::new();
    o.insert("ARN".into(), json!(r.arn));
    o.insert("Name".into(), json!(r.name));
    if let Some(d) = &r.description {
        o.insert("Description".into(), json!(d));
    }
    if let Some(k) = &r.kms_key_id {
        o.insert("KmsKeyId".into(), json!(k));
    }
    let rotation = r.rotation.as_ref().filter(|x| x.enabled);
    o.insert("RotationEnabled".into(), json!(rotation.is_some()));
    if let Some(rot) = &r.rotation {
        o.insert("RotationLambdaARN".into(), json!(rot.lambda_arn));
        let mut rules = Map::new();
        if let Some(d) = rot.automatically_after_days {
            rules.insert("AutomaticallyAfterDays".into(), json!(d));
        }
        if let Some(s) = &rot.schedule_expression {
            rules.insert("ScheduleExpression".into(), json!(s));
        }
        if let Some(d) = &rot.duration {
            rules.insert("Duration".into(), json!(d));
        }
        o.insert("RotationRules".into(), Value::Object(rules));
    }
    if let Some(t) = r.last_rotated_ms {
        o.insert("LastRotatedDate".into(), seconds(t));
    }
    o.insert("LastChangedDate".into(), seconds(r.last_changed_ms));
    if let Some(t) = r.last_accessed_ms {
        o.insert("LastAccessedDate".into(), seconds(t));
    }
    if let Some(t) = r.deleted_ms {
        o.insert("DeletedDate".into(), seconds(t));
    }
    if !r.tags.is_empty() {
        let tags: Vec<Value> = r
            .tags
            .iter()
            .map(|t| json!({"Key": t.key, "Value": t.value}))
            .collect();
        o.insert("Tags".into(), json!(tags));
    }
    let versions: Map<String, Value> = r
        .versions
        .iter()
        .filter(|(_, v)| !v.stages.is_empty())
        .map(|(id, v)| (id.clone(), json!(v.stages)))
        .collect();
    o.insert(versions_field.into(), Value::Object(versions));
    o.insert("CreatedDate".into(), seconds(r.created_ms));
    o.insert("PrimaryRegion".into(), json!(crate::iam::REGION));
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_a_string_or_base64_bytes_not_both() {
        let v = value_of(Some("s".into()), None).unwrap().unwrap();
        assert!(!v.binary);
        assert_eq!(&*v.bytes, b"s");
        let v = value_of(None, Some("AAE=".into())).unwrap().unwrap();
        assert!(v.binary);
        assert_eq!(&*v.bytes, &[0, 1]);
        assert!(value_of(Some("s".into()), Some("AAE=".into())).is_err());
        assert!(value_of(None, Some("not base64!".into())).is_err());
        assert!(value_of(None, None).unwrap().is_none());
        // Debug never shows a value.
        let v = value_of(Some("hunter2".into()), None).unwrap().unwrap();
        assert!(!format!("{v:?}").contains("hunter2"));
    }

    #[test]
    fn errors_carry_secrets_managers_codes() {
        let r = secrets_error(SecretsError::NotFound("x".into()));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()["x-amzn-ErrorType"], "ResourceNotFoundException");
        let r = secrets_error(SecretsError::MarkedForDeletion("x".into()));
        assert_eq!(r.headers()["x-amzn-ErrorType"], "InvalidRequestException");
        let r = secrets_error(SecretsError::Exists("x".into()));
        assert_eq!(r.headers()["x-amzn-ErrorType"], "ResourceExistsException");
        let r = secrets_error(SecretsError::Api(ApiError::Internal("boom".into())));
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()["x-amzn-ErrorType"], "InternalServiceError");
    }

    #[test]
    fn the_input_takes_the_models_member_names() {
        let i: Input = parse(&Bytes::from_static(
            br#"{"SecretId":"s","RotationLambdaARN":"arn:aws:lambda:us-east-1:000000000000:function:f",
                 "RotationRules":{"AutomaticallyAfterDays":3},"VersionStages":["A"],
                 "ForceDeleteWithoutRecovery":true,"Filters":[{"Key":"name","Values":["x"]}]}"#,
        ))
        .unwrap();
        assert_eq!(i.secret_id.as_deref(), Some("s"));
        assert!(i.rotation_lambda_arn.unwrap().ends_with(":function:f"));
        assert_eq!(i.rotation_rules.unwrap().automatically_after_days, Some(3));
        assert_eq!(i.version_stages.unwrap(), ["A"]);
        assert!(i.force_delete_without_recovery);
        assert_eq!(i.filters[0].values, ["x"]);
        let e: Input = parse(&Bytes::new()).unwrap();
        assert!(e.secret_id.is_none());
    }
}
