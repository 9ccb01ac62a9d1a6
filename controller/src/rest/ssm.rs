//! SSM Parameter Store on the REST front (AWS JSON 1.1, `X-Amz-Target: AmazonSSM.Operation`):
//! the parameter operations of botocore's model (`ssm/2014-11-06/service-2.json`) over
//! `crate::secrets::parameters`, errors with SSM's codes.
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::secretsmanager::{api_error, json_answer, parse, seconds};
use super::service::{Handler, OperationRequest, Operations, Protocol, Service};
use crate::api::Shared;
use crate::secrets::parameters::{self, Answer, ParameterError, PutInput};

const PROTOCOL: Protocol = Protocol::AwsJson1_1;

pub(super) fn service(shared: Arc<Shared>) -> Service {
    Service {
        signing_name: "ssm",
        protocol: PROTOCOL,
        prefixes: &["AmazonSSM"],
        handler: Handler::Operations(Arc::new(Ssm { shared })),
    }
}

struct Ssm {
    shared: Arc<Shared>,
}

const OPERATIONS: &[&str] = &[
    "PutParameter",
    "GetParameter",
    "GetParameters",
    "GetParametersByPath",
    "GetParameterHistory",
    "DeleteParameter",
    "DeleteParameters",
];

impl Operations for Ssm {
    fn serves(&self, operation: &str) -> bool {
        OPERATIONS.contains(&operation)
    }

    fn call(&self, operation: String, request: OperationRequest) -> BoxFuture<'static, Response> {
        let shared = Arc::clone(&self.shared);
        async move {
            match run(&shared, &operation, request).await {
                Ok(v) => json_answer(PROTOCOL, &v),
                Err(e) => ssm_error(e),
            }
        }
        .boxed()
    }
}

fn ssm_error(e: ParameterError) -> Response {
    match e {
        ParameterError::Api(a) => api_error(PROTOCOL, a),
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

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Input {
    name: Option<String>,
    names: Vec<String>,
    path: Option<String>,
    value: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    description: Option<String>,
    key_id: Option<String>,
    overwrite: bool,
    allowed_pattern: Option<String>,
    tier: Option<String>,
    data_type: Option<String>,
    with_decryption: bool,
    recursive: bool,
    max_results: Option<i64>,
    next_token: Option<String>,
    parameter_filters: Vec<Value>,
    policies: Option<String>,
    tags: Vec<Value>,
}

fn validation(message: impl Into<String>) -> ParameterError {
    ParameterError::Validation(message.into())
}

fn required(v: Option<String>, field: &str) -> Result<String, ParameterError> {
    v.ok_or_else(|| validation(format!("{field} is required")))
}

/// A `Parameter` of `GetParameter(s)` and `GetParametersByPath`.
fn parameter(a: &Answer) -> Value {
    let p = &a.version;
    let mut o = json!({
        "Name": p.name,
        "Type": p.kind,
        "Value": a.value,
        "Version": p.version,
        "LastModifiedDate": seconds(p.modified_ms),
        "ARN": parameters::arn(&p.name),
        "DataType": p.data_type,
    });
    if let Some(s) = &a.selector {
        o["Selector"] = json!(s);
    }
    o
}

/// A `ParameterHistory` entry.
fn history_entry(a: &Answer) -> Value {
    let p = &a.version;
    let mut o = json!({
        "Name": p.name,
        "Type": p.kind,
        "Value": a.value,
        "Version": p.version,
        "LastModifiedDate": seconds(p.modified_ms),
        "LastModifiedUser": p.modified_user,
        "Labels": p.labels,
        "Tier": p.tier,
        "Policies": [],
        "DataType": p.data_type,
    });
    if let Some(d) = &p.description {
        o["Description"] = json!(d);
    }
    if let Some(k) = &p.key_id {
        o["KeyId"] = json!(k);
    }
    o
}

async fn run(
    shared: &Shared,
    operation: &str,
    request: OperationRequest,
) -> Result<Value, ParameterError> {
    let input: Input = parse(&request.body).map_err(validation)?;
    let ext = &request.extensions;
    Ok(match operation {
        "PutParameter" => {
            if input.policies.is_some() {
                return Err(validation(
                    "parameter policies are not supported by Lamina: put the parameter without Policies",
                ));
            }
            if !input.tags.is_empty() && input.overwrite {
                return Err(validation(
                    "Tags can't be given with Overwrite (as in SSM): tag the parameter on creation",
                ));
            }
            let (version, tier) = parameters::put(
                shared,
                ext,
                PutInput {
                    name: required(input.name, "Name")?,
                    value: required(input.value, "Value")?,
                    kind: input.kind,
                    description: input.description,
                    key_id: input.key_id,
                    overwrite: input.overwrite,
                    allowed_pattern: input.allowed_pattern,
                    tier: input.tier,
                    data_type: input.data_type,
                },
            )
            .await?;
            json!({"Version": version, "Tier": tier})
        }
        "GetParameter" => {
            let name = required(input.name, "Name")?;
            let a = parameters::get(shared, ext, &name, input.with_decryption).await?;
            json!({"Parameter": parameter(&a)})
        }
        "GetParameters" => {
            let (found, invalid) =
                parameters::get_many(shared, ext, &input.names, input.with_decryption).await?;
            json!({
                "Parameters": found.iter().map(parameter).collect::<Vec<_>>(),
                "InvalidParameters": invalid,
            })
        }
        "GetParametersByPath" => {
            if !input.parameter_filters.is_empty() {
                return Err(validation(
                    "ParameterFilters are not supported by Lamina: filter the answer yourself",
                ));
            }
            let path = required(input.path, "Path")?;
            let (list, next) = parameters::by_path(
                shared,
                ext,
                &path,
                input.recursive,
                input.with_decryption,
                input.max_results,
                input.next_token.as_deref(),
            )
            .await?;
            let mut o = json!({"Parameters": list.iter().map(parameter).collect::<Vec<_>>()});
            if let Some(n) = next {
                o["NextToken"] = json!(n);
            }
            o
        }
        "GetParameterHistory" => {
            let name = required(input.name, "Name")?;
            let (list, next) = parameters::history(
                shared,
                ext,
                &name,
                input.with_decryption,
                input.max_results,
                input.next_token.as_deref(),
            )
            .await?;
            let mut o = json!({"Parameters": list.iter().map(history_entry).collect::<Vec<_>>()});
            if let Some(n) = next {
                o["NextToken"] = json!(n);
            }
            o
        }
        "DeleteParameter" => {
            let name = required(input.name, "Name")?;
            parameters::delete(shared, ext, &name).await?;
            json!({})
        }
        "DeleteParameters" => {
            let (deleted, invalid) = parameters::delete_many(shared, ext, &input.names).await?;
            json!({"DeletedParameters": deleted, "InvalidParameters": invalid})
        }
        other => return Err(validation(format!("operation {other} is not served"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_ssms_codes() {
        let r = ssm_error(ParameterError::NotFound("/x".into()));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()["x-amzn-ErrorType"], "ParameterNotFound");
        let r = ssm_error(ParameterError::Exists("/x".into()));
        assert_eq!(r.headers()["x-amzn-ErrorType"], "ParameterAlreadyExists");
        let r = ssm_error(validation("bad"));
        assert_eq!(r.headers()["x-amzn-ErrorType"], "ValidationException");
    }

    #[test]
    fn the_input_takes_the_models_member_names() {
        let i: Input = parse(&axum::body::Bytes::from_static(
            br#"{"Name":"/a","Type":"SecureString","Value":"v","Overwrite":true,
                 "WithDecryption":true,"Names":["/a","/b"],"Recursive":true,"MaxResults":3}"#,
        ))
        .unwrap();
        assert_eq!(i.kind.as_deref(), Some("SecureString"));
        assert!(i.overwrite && i.with_decryption && i.recursive);
        assert_eq!(i.names, ["/a", "/b"]);
        assert_eq!(i.max_results, Some(3));
    }
}
