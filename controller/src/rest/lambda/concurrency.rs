//! Lambda's REST routes for concurrency: Put/Get/DeleteFunctionConcurrency, GetAccountSettings,
//! Put/Get/Delete/ListProvisionedConcurrencyConfig(s). The handlers call `api::concurrency` and
//! `api::provisioned`, as the gRPC service does: the rules live there, not here.
use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lamina_proto::domain::qualified_function_arn;
use lamina_proto::v1;
use lamina_proto::validate::{MAX_UNZIPPED_BYTES, MAX_ZIP_BYTES};
use serde::Deserialize;
use serde_json::{json, Value};

use super::shapes::{last_modified, qualified_name, unqualified_name, RestError};
use super::St;
use crate::api::concurrency::{
    delete_function_concurrency, get_account_settings, get_function_concurrency,
    put_function_concurrency,
};
use crate::api::provisioned::{
    delete_provisioned_concurrency, get_provisioned_concurrency, list_for,
    put_provisioned_concurrency,
};
use crate::api::{ApiError, Shared};
use crate::store::StoreError;

/// Lambda's `MaxItems` of ListProvisionedConcurrencyConfigs: 1..50, default 50.
const LIST_PROVISIONED_MAX: usize = 50;

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, RestError> {
    serde_json::from_slice(body)
        .map_err(|e| RestError::invalid(format!("request body is not valid: {e}")))
}

/// Lambda's `Concurrency`: `{}` without a reservation.
pub(super) fn concurrency_json(reserved: Option<u32>) -> Value {
    match reserved {
        Some(n) => json!({ "ReservedConcurrentExecutions": n }),
        None => json!({}),
    }
}

/// The reservation of function `name` (`None`: it uses the unreserved pool), for GetFunction.
pub(super) async fn reserved_of(shared: &Shared, name: &str) -> Result<Option<u32>, RestError> {
    Ok(get_function_concurrency(shared, name).await?)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutConcurrencyIn {
    reserved_concurrent_executions: Option<u32>,
}

pub(super) async fn put_concurrency(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, RestError> {
    st.shared.authorize_function(
        &ext,
        "lambda:PutFunctionConcurrency",
        &unqualified_name(&name)?,
        "",
    )?;
    let r: PutConcurrencyIn = parse_body(&body)?;
    let reserved = r.reserved_concurrent_executions.ok_or_else(|| {
        RestError::invalid("ReservedConcurrentExecutions is required (0 disables the function)")
    })?;
    put_function_concurrency(&st.shared, unqualified_name(&name)?, reserved).await?;
    Ok(Json(concurrency_json(Some(reserved))))
}

pub(super) async fn get_concurrency(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
) -> Result<Json<Value>, RestError> {
    st.shared.authorize_function(
        &ext,
        "lambda:GetFunctionConcurrency",
        &unqualified_name(&name)?,
        "",
    )?;
    let reserved = reserved_of(&st.shared, &unqualified_name(&name)?).await?;
    Ok(Json(concurrency_json(reserved)))
}

pub(super) async fn delete_concurrency(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
) -> Result<Response, RestError> {
    st.shared.authorize_function(
        &ext,
        "lambda:DeleteFunctionConcurrency",
        &unqualified_name(&name)?,
        "",
    )?;
    delete_function_concurrency(&st.shared, unqualified_name(&name)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Functions and the bytes of their code (`$LATEST` and every published version), as Lambda's
/// `AccountUsage` counts them.
async fn usage(shared: &Shared) -> Result<(u64, u64), ApiError> {
    const PAGE: usize = 1000;
    shared
        .store(|s| {
            let (mut count, mut bytes, mut after) = (0u64, 0u64, String::new());
            loop {
                let page = s.list_functions(&after, PAGE)?;
                for f in &page {
                    count += 1;
                    bytes += f.code_size;
                    bytes += s
                        .list_versions(&f.spec.name)?
                        .iter()
                        .map(|v| v.code_size)
                        .sum::<u64>();
                }
                match page.last() {
                    Some(last) if page.len() == PAGE => after = last.spec.name.clone(),
                    _ => return Ok::<_, StoreError>((count, bytes)),
                }
            }
        })
        .await
}

pub(super) async fn account_settings(
    State(st): St,
    ext: Extensions,
) -> Result<Json<Value>, RestError> {
    st.shared
        .authorize(&ext, "lambda:GetAccountSettings", "*")?;
    let figures = get_account_settings(&st.shared);
    let (function_count, total_code_size) = usage(&st.shared).await?;
    // No TotalCodeSize limit: Lamina stores code without an account-wide bound.
    Ok(Json(json!({
        "AccountLimit": {
            "CodeSizeZipped": MAX_ZIP_BYTES,
            "CodeSizeUnzipped": MAX_UNZIPPED_BYTES,
            "ConcurrentExecutions": figures.limit,
            "UnreservedConcurrentExecutions": figures.unreserved,
        },
        "AccountUsage": {
            "TotalCodeSize": total_code_size,
            "FunctionCount": function_count,
        },
    })))
}

/// Function name and the qualifier a provisioned-concurrency configuration is keyed by (required,
/// in `?Qualifier=` or as `NAME:QUALIFIER`).
fn provisioned_target(
    param: &str,
    query: &HashMap<String, String>,
) -> Result<(String, String), RestError> {
    let (name, qualifier) = qualified_name(param, query)?;
    if qualifier.is_empty() {
        return Err(RestError::invalid(
            "Qualifier is required: the version number or alias name of the configuration",
        ));
    }
    Ok((name, qualifier))
}

/// The fields Get and Put answer with (List adds `FunctionArn`).
fn provisioned_json(c: &v1::ProvisionedConcurrencyConfig) -> Value {
    let mut out = json!({
        "RequestedProvisionedConcurrentExecutions": c.requested,
        "AvailableProvisionedConcurrentExecutions": c.available,
        "AllocatedProvisionedConcurrentExecutions": c.allocated,
        "Status": c.status,
        "LastModified": last_modified(c.last_modified_ms),
    });
    if !c.status_reason.is_empty() {
        out["StatusReason"] = json!(c.status_reason);
    }
    out
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutProvisionedIn {
    provisioned_concurrent_executions: Option<u32>,
}

pub(super) async fn put_provisioned(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, RestError> {
    let (function_name, qualifier) = provisioned_target(&name, &query)?;
    st.shared.authorize_function(
        &ext,
        "lambda:PutProvisionedConcurrencyConfig",
        &function_name,
        &qualifier,
    )?;
    let r: PutProvisionedIn = parse_body(&body)?;
    let count = r
        .provisioned_concurrent_executions
        .ok_or_else(|| RestError::invalid("ProvisionedConcurrentExecutions is required (>= 1)"))?;
    let c = put_provisioned_concurrency(&st.shared, function_name, qualifier, count).await?;
    Ok((StatusCode::ACCEPTED, Json(provisioned_json(&c))).into_response())
}

/// GET on the route: ListProvisionedConcurrencyConfigs with `?List=ALL`, else
/// GetProvisionedConcurrencyConfig of `?Qualifier=`.
pub(super) async fn get_provisioned(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, RestError> {
    if query.contains_key("List") {
        st.shared.authorize_function(
            &ext,
            "lambda:ListProvisionedConcurrencyConfigs",
            &unqualified_name(&name)?,
            "",
        )?;
    }
    if let Some(list) = query.get("List") {
        if list != "ALL" {
            return Err(RestError::invalid(format!(
                "List must be ALL, got {list:?}"
            )));
        }
        return list_provisioned(&st.shared, &name, &query).await.map(Json);
    }
    let (function_name, qualifier) = provisioned_target(&name, &query)?;
    st.shared.authorize_function(
        &ext,
        "lambda:GetProvisionedConcurrencyConfig",
        &function_name,
        &qualifier,
    )?;
    let c = get_provisioned_concurrency(&st.shared, &function_name, &qualifier).await?;
    Ok(Json(provisioned_json(&c)))
}

async fn list_provisioned(
    shared: &Shared,
    param: &str,
    query: &HashMap<String, String>,
) -> Result<Value, RestError> {
    let name = unqualified_name(param)?;
    let max = match query.get("MaxItems") {
        None => LIST_PROVISIONED_MAX,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=LIST_PROVISIONED_MAX).contains(&n) => n,
            _ => {
                return Err(RestError::invalid(format!(
                    "MaxItems must be 1..{LIST_PROVISIONED_MAX}, got {s:?}"
                )))
            }
        },
    };
    let all = list_for(shared, &name).await?;
    // The marker is the qualifier of the last configuration of the previous page.
    let start = match query.get("Marker") {
        None => 0,
        Some(m) => all
            .iter()
            .position(|c| &c.qualifier == m)
            .map(|i| i + 1)
            .ok_or_else(|| {
                RestError::invalid(format!(
                    "Marker {m:?} is not a provisioned-concurrency qualifier of `{name}`"
                ))
            })?,
    };
    let page: Vec<&v1::ProvisionedConcurrencyConfig> = all.iter().skip(start).take(max).collect();
    let items: Vec<Value> = page
        .iter()
        .map(|c| {
            let mut item = provisioned_json(c);
            item["FunctionArn"] = json!(qualified_function_arn(&c.function_name, &c.qualifier));
            item
        })
        .collect();
    let mut out = json!({ "ProvisionedConcurrencyConfigs": items });
    if start + page.len() < all.len() {
        if let Some(last) = page.last() {
            out["NextMarker"] = json!(last.qualifier);
        }
    }
    Ok(out)
}

pub(super) async fn delete_provisioned(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, RestError> {
    let (function_name, qualifier) = provisioned_target(&name, &query)?;
    st.shared.authorize_function(
        &ext,
        "lambda:DeleteProvisionedConcurrencyConfig",
        &function_name,
        &qualifier,
    )?;
    delete_provisioned_concurrency(&st.shared, function_name, qualifier).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_needs_a_qualifier() {
        let q = |v: &str| HashMap::from([("Qualifier".to_string(), v.to_string())]);
        assert_eq!(
            provisioned_target("f", &q("live")).unwrap(),
            ("f".into(), "live".into())
        );
        assert_eq!(
            provisioned_target("f:3", &HashMap::new()).unwrap(),
            ("f".into(), "3".into())
        );
        let e = provisioned_target("f", &HashMap::new()).unwrap_err();
        assert_eq!(e.kind, "InvalidParameterValueException");
        assert!(e.message.contains("Qualifier"), "{}", e.message);
        assert!(provisioned_target("f:1", &q("2")).is_err());
    }

    #[test]
    fn provisioned_shapes_use_lambdas_names() {
        let c = v1::ProvisionedConcurrencyConfig {
            function_name: "f".into(),
            qualifier: "live".into(),
            function_version: "2".into(),
            requested: 3,
            allocated: 2,
            available: 1,
            status: "IN_PROGRESS".into(),
            status_reason: String::new(),
            last_modified_ms: 0,
        };
        let v = provisioned_json(&c);
        assert_eq!(v["RequestedProvisionedConcurrentExecutions"], 3);
        assert_eq!(v["AllocatedProvisionedConcurrentExecutions"], 2);
        assert_eq!(v["AvailableProvisionedConcurrentExecutions"], 1);
        assert_eq!(v["Status"], "IN_PROGRESS");
        assert_eq!(v["LastModified"], "1970-01-01T00:00:00.000+0000");
        assert!(v.get("StatusReason").is_none());
        let failed = v1::ProvisionedConcurrencyConfig {
            status: "FAILED".into(),
            status_reason: "init failed".into(),
            ..c
        };
        assert_eq!(provisioned_json(&failed)["StatusReason"], "init failed");
        assert_eq!(concurrency_json(None), json!({}));
        assert_eq!(
            concurrency_json(Some(0)),
            json!({"ReservedConcurrentExecutions": 0})
        );
    }
}
