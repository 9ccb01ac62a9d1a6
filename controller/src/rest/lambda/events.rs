//! Lambda's REST routes for asynchronous invocation settings: Put/Update/Get/Delete
//! FunctionEventInvokeConfig and ListFunctionEventInvokeConfigs. The handlers call
//! `api::events`, as the gRPC service does. Lamina keeps one configuration per function (for
//! `$LATEST` and every version and alias): a qualifier other than `$LATEST` is refused.
use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lamina_proto::domain::LATEST;
use serde_json::{json, Value};

use super::shapes::{self, qualified_name, unqualified_name, RestError};
use super::{parse_json, St};
use crate::api::{events, ApiError};

/// The function a configuration route addresses (`NAME`, an ARN, `?Qualifier=$LATEST`).
fn function_of(param: &str, query: &HashMap<String, String>) -> Result<String, RestError> {
    let (name, qualifier) = qualified_name(param, query)?;
    match qualifier.as_str() {
        "" | LATEST => Ok(name),
        q => Err(ApiError::QualifierNotFound {
            name,
            qualifier: q.to_string(),
        }
        .into()),
    }
}

/// The request of Put and Update: fields not given stay `None`.
fn request(name: String, body: &[u8]) -> Result<events::EventInvokeConfigChange, RestError> {
    let r: shapes::EventInvokeConfigIn = parse_json(body)?;
    let dest = r.destination_config.unwrap_or_default();
    let pick = |d: Option<shapes::DestinationIn>| {
        d.and_then(|d| d.destination)
            .map(|arn| shapes::destination_in(&arn))
    };
    Ok(events::EventInvokeConfigChange {
        function_name: name,
        maximum_retry_attempts: r.maximum_retry_attempts,
        maximum_event_age_seconds: r.maximum_event_age_in_seconds,
        on_success: pick(dest.on_success),
        // No OnFailure: Lamina's default (`dlq:default`), so a failed event is never dropped.
        on_failure: pick(dest.on_failure),
    })
}

/// PutFunctionEventInvokeConfig: replaces the whole configuration.
pub(super) async fn put_config(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, RestError> {
    st.shared.authorize_function(
        &ext,
        "lambda:PutFunctionEventInvokeConfig",
        &function_of(&name, &query)?,
        "",
    )?;
    let req = request(function_of(&name, &query)?, &body)?;
    let name = req.function_name.clone();
    let c = events::put_config(&st.shared, req).await?;
    Ok(Json(shapes::event_invoke_config(&name, &c)))
}

/// UpdateFunctionEventInvokeConfig: changes the fields given, keeps the others.
pub(super) async fn update_config(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, RestError> {
    st.shared.authorize_function(
        &ext,
        "lambda:UpdateFunctionEventInvokeConfig",
        &function_of(&name, &query)?,
        "",
    )?;
    let req = request(function_of(&name, &query)?, &body)?;
    let name = req.function_name.clone();
    let c = events::update_config(&st.shared, req).await?;
    Ok(Json(shapes::event_invoke_config(&name, &c)))
}

/// GetFunctionEventInvokeConfig: ResourceNotFoundException when none was put (as Lambda).
pub(super) async fn get_config(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, RestError> {
    st.shared.authorize_function(
        &ext,
        "lambda:GetFunctionEventInvokeConfig",
        &function_of(&name, &query)?,
        "",
    )?;
    let name = function_of(&name, &query)?;
    let c = events::find_config(&st.shared, name.clone())
        .await?
        .ok_or_else(|| ApiError::EventInvokeConfigNotFound(name.clone()))?;
    Ok(Json(shapes::event_invoke_config(&name, &c)))
}

/// DeleteFunctionEventInvokeConfig: 204; the defaults apply again.
pub(super) async fn delete_config(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, RestError> {
    st.shared.authorize_function(
        &ext,
        "lambda:DeleteFunctionEventInvokeConfig",
        &function_of(&name, &query)?,
        "",
    )?;
    events::delete_config(&st.shared, function_of(&name, &query)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// ListFunctionEventInvokeConfigs: the function's configuration, when one was put (one page:
/// Lamina keeps at most one per function).
pub(super) async fn list_configs(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, RestError> {
    st.shared.authorize_function(
        &ext,
        "lambda:ListFunctionEventInvokeConfigs",
        &unqualified_name(&name)?,
        "",
    )?;
    if let Some(s) = query.get("MaxItems") {
        if !matches!(s.parse::<u32>(), Ok(1..=50)) {
            return Err(RestError::invalid(format!(
                "MaxItems must be 1..50, got {:?}",
                shapes::truncated(s, 40)
            )));
        }
    }
    let name = unqualified_name(&name)?;
    let configs: Vec<Value> = events::find_config(&st.shared, name.clone())
        .await?
        .iter()
        .map(|c| shapes::event_invoke_config(&name, c))
        .collect();
    Ok(Json(json!({ "FunctionEventInvokeConfigs": configs })))
}
