//! Lambda's REST routes for a function's resource-based policy: AddPermission, RemovePermission
//! and GetPolicy (botocore's shapes and error codes). The handlers call `api::permissions`, as
//! the gRPC `Functions` service does.
use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::shapes::{qualified_name, RestError};
use super::{parse_json, St};
use crate::api::permissions::{self, NewPermission};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AddPermissionIn {
    statement_id: Option<String>,
    action: Option<String>,
    principal: Option<String>,
    source_arn: Option<String>,
    source_account: Option<String>,
    function_url_auth_type: Option<String>,
    revision_id: Option<String>,
    #[serde(rename = "PrincipalOrgID")]
    principal_org_id: Option<String>,
    event_source_token: Option<String>,
}

fn required(field: &str, v: Option<String>) -> Result<String, RestError> {
    v.filter(|s| !s.is_empty())
        .ok_or_else(|| RestError::invalid(format!("{field} is required")))
}

/// AddPermission: 201 `{"Statement": "<the statement's JSON>"}`.
pub(super) async fn add_permission(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, RestError> {
    let (function_name, qualifier) = qualified_name(&name, &query)?;
    st.shared
        .authorize_function(&ext, "lambda:AddPermission", &function_name, &qualifier)?;
    let r: AddPermissionIn = parse_json(&body)?;
    let statement = permissions::add_permission(
        &st.shared,
        NewPermission {
            function_name,
            qualifier,
            statement_id: required("StatementId", r.statement_id)?,
            action: required("Action", r.action)?,
            principal: required("Principal", r.principal)?,
            source_arn: r.source_arn,
            source_account: r.source_account,
            principal_org_id: r.principal_org_id,
            event_source_token: r.event_source_token,
            function_url_auth_type: r.function_url_auth_type,
            revision_id: r.revision_id,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "Statement": statement }))).into_response())
}

/// RemovePermission: 204.
pub(super) async fn remove_permission(
    State(st): St,
    ext: Extensions,
    Path((name, sid)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, RestError> {
    let (function_name, qualifier) = qualified_name(&name, &query)?;
    st.shared
        .authorize_function(&ext, "lambda:RemovePermission", &function_name, &qualifier)?;
    permissions::remove_permission(
        &st.shared,
        &function_name,
        &qualifier,
        &sid,
        query.get("RevisionId").map(String::as_str),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// GetPolicy: `{"Policy": "<the document's JSON>", "RevisionId": ...}`.
pub(super) async fn get_policy(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, RestError> {
    let (function_name, qualifier) = qualified_name(&name, &query)?;
    st.shared
        .authorize_function(&ext, "lambda:GetPolicy", &function_name, &qualifier)?;
    let p = permissions::get_policy(&st.shared, &function_name, &qualifier).await?;
    Ok(Json(
        json!({ "Policy": p.policy, "RevisionId": p.revision_id }),
    ))
}
