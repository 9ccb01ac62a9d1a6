//! Lambda's REST routes for layers: PublishLayerVersion, ListLayers, ListLayerVersions,
//! GetLayerVersion, GetLayerVersionByArn (`GET /layers?find=LayerVersion&Arn=`) and
//! DeleteLayerVersion. The handlers call `api::layers`, as the gRPC service does.
use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use lamina_proto::domain::{layer_arn, LayerVersion, ACCOUNT_ID, REGION};
use serde::Deserialize;
use serde_json::{json, Value};

use super::shapes::{last_modified, truncated, RestError};
use super::{decode_zip, parse_json, St};
use crate::api::layers::{self as api, LayerError};
use crate::api::ApiError;

/// Lambda's `MaxItems` of ListLayers and ListLayerVersions: 1..50, default 50.
const LIST_MAX: usize = 50;

/// The layer name of a path parameter: `NAME` or the layer's ARN (`…:layer:NAME`).
fn layer_name(param: &str) -> Result<String, RestError> {
    let prefix = format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:");
    let name = param.strip_prefix(&prefix).unwrap_or(param);
    lamina_proto::validate::layer_name(name).map_err(ApiError::from)?;
    Ok(name.to_string())
}

/// A layer version number of a path parameter (1 or more).
fn version_number(param: &str) -> Result<u32, RestError> {
    match param.parse::<u32>() {
        Ok(n) if n >= 1 && !param.starts_with('0') => Ok(n),
        _ => Err(RestError::invalid(format!(
            "VersionNumber must be a layer version number (1 or more), got {:?}",
            truncated(param, 40)
        ))),
    }
}

/// Lambda's `CodeSha256` of a layer: the base64 of the digest.
fn sha256_b64(hex_digest: &str) -> String {
    hex::decode(hex_digest)
        .map(|d| base64::engine::general_purpose::STANDARD.encode(d))
        .unwrap_or_default()
}

/// The fields every layer version shape has (`LayerVersionsListItem`).
fn list_item(l: &LayerVersion) -> Value {
    let runtimes: Vec<&str> = l.compatible_runtimes.iter().map(|r| r.as_str()).collect();
    let mut out = json!({
        "LayerVersionArn": l.arn(),
        "Version": l.version,
        "Description": l.description,
        "CreatedDate": last_modified(l.created_ms),
        "CompatibleRuntimes": runtimes,
    });
    if !l.compatible_architectures.is_empty() {
        out["CompatibleArchitectures"] = json!(l.compatible_architectures);
    }
    if !l.license_info.is_empty() {
        out["LicenseInfo"] = json!(l.license_info);
    }
    out
}

/// `GetLayerVersionResponse` / `PublishLayerVersionResponse`.
fn version_json(l: &LayerVersion) -> Value {
    let mut out = list_item(l);
    out["LayerArn"] = json!(layer_arn(&l.name));
    out["Content"] = json!({
        "Location": "",
        "CodeSha256": sha256_b64(&l.code_sha256),
        "CodeSize": l.code_size,
    });
    out
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContentIn {
    zip_file: Option<String>,
    s3_bucket: Option<String>,
    s3_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublishIn {
    description: Option<String>,
    content: Option<ContentIn>,
    compatible_runtimes: Option<Vec<String>>,
    compatible_architectures: Option<Vec<String>>,
    license_info: Option<String>,
}

pub(super) async fn publish(
    State(st): St,
    ext: Extensions,
    Path(layer): Path<String>,
    body: Bytes,
) -> Result<Response, RestError> {
    let name = layer_name(&layer)?;
    st.shared.authorize(
        &ext,
        "lambda:PublishLayerVersion",
        &crate::iam::arn::layer(&name, None),
    )?;
    let r: PublishIn = parse_json(&body)?;
    let content = r
        .content
        .ok_or_else(|| RestError::invalid("Content is required: give Content.ZipFile"))?;
    let zip = decode_zip(
        content.zip_file,
        content.s3_bucket.is_some() || content.s3_key.is_some(),
    )?;
    let spec = api::LayerSpec {
        layer_name: name,
        description: r.description.unwrap_or_default(),
        compatible_runtimes: r.compatible_runtimes.unwrap_or_default(),
        license_info: r.license_info.unwrap_or_default(),
        compatible_architectures: r.compatible_architectures.unwrap_or_default(),
    };
    let l = api::publish_zip(&st.shared, spec, zip).await?;
    Ok((StatusCode::CREATED, Json(version_json(&l))).into_response())
}

/// `MaxItems` (1..50, default 50) and `Marker` of a list: the index to start at and the page size.
fn page_of<T>(
    all: &[T],
    query: &HashMap<String, String>,
    key: impl Fn(&T) -> String,
) -> Result<(usize, usize), RestError> {
    let max = match query.get("MaxItems") {
        None => LIST_MAX,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=LIST_MAX).contains(&n) => n,
            _ => {
                return Err(RestError::invalid(format!(
                    "MaxItems must be 1..{LIST_MAX}, got {:?}",
                    truncated(s, 40)
                )))
            }
        },
    };
    // The marker is the key of the last item of the previous page.
    let start = match query.get("Marker") {
        None => 0,
        Some(m) => all
            .iter()
            .position(|x| &key(x) == m)
            .map(|i| i + 1)
            .ok_or_else(|| {
                RestError::invalid(format!(
                    "Marker {:?} is not from this list",
                    truncated(m, 80)
                ))
            })?,
    };
    Ok((start, max))
}

/// A page of `items` (their keys give the next marker) as `{field: [...], NextMarker}`.
fn paged<T>(
    field: &str,
    all: &[T],
    query: &HashMap<String, String>,
    key: impl Fn(&T) -> String,
    shape: impl Fn(&T) -> Value,
) -> Result<Value, RestError> {
    let (start, max) = page_of(all, query, &key)?;
    let page: Vec<&T> = all.iter().skip(start).take(max).collect();
    let mut out = json!({ field: page.iter().map(|x| shape(x)).collect::<Vec<_>>() });
    if start + page.len() < all.len() {
        if let Some(last) = page.last() {
            out["NextMarker"] = json!(key(last));
        }
    }
    Ok(out)
}

/// `?CompatibleRuntime=` (and `?CompatibleArchitecture=`) of the lists: whether `l` matches.
fn matches(l: &LayerVersion, query: &HashMap<String, String>) -> bool {
    let runtime_ok = query
        .get("CompatibleRuntime")
        .is_none_or(|r| l.compatible_runtimes.iter().any(|c| c.as_str() == r));
    let arch_ok = query
        .get("CompatibleArchitecture")
        .is_none_or(|a| l.compatible_architectures.contains(a));
    runtime_ok && arch_ok
}

/// GET /layers: ListLayers, or GetLayerVersionByArn with `?find=LayerVersion&Arn=`.
pub(super) async fn list_layers(
    State(st): St,
    ext: Extensions,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, RestError> {
    if let Some(find) = query.get("find") {
        if find != "LayerVersion" {
            return Err(RestError::invalid(format!(
                "find must be LayerVersion, got {:?}",
                truncated(find, 40)
            )));
        }
        let arn = query
            .get("Arn")
            .ok_or_else(|| RestError::invalid("Arn is required: the layer version ARN"))?;
        st.shared.authorize(
            &ext,
            "lambda:GetLayerVersion",
            &crate::iam::arn::layer(arn, None),
        )?;
        return Ok(Json(version_json(&api::get(&st.shared, arn, 0).await?)));
    }
    st.shared.authorize(&ext, "lambda:ListLayers", "*")?;
    let filtered =
        query.contains_key("CompatibleRuntime") || query.contains_key("CompatibleArchitecture");
    let mut latest = Vec::new();
    for newest in api::list_layers(&st.shared).await? {
        // With a filter, the newest version that matches (Lambda's LatestMatchingVersion).
        let found = if filtered {
            let versions = api::list_versions(&st.shared, newest.name.clone()).await?;
            versions.into_iter().find(|l| matches(l, &query))
        } else {
            Some(newest)
        };
        latest.extend(found);
    }
    let out = paged(
        "Layers",
        &latest,
        &query,
        |l: &LayerVersion| l.name.clone(),
        |l: &LayerVersion| {
            json!({
                "LayerName": l.name,
                "LayerArn": layer_arn(&l.name),
                "LatestMatchingVersion": list_item(l),
            })
        },
    )?;
    Ok(Json(out))
}

/// ListLayerVersions, newest first.
pub(super) async fn list_versions(
    State(st): St,
    ext: Extensions,
    Path(layer): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, RestError> {
    st.shared.authorize(
        &ext,
        "lambda:ListLayerVersions",
        &crate::iam::arn::layer(&layer_name(&layer)?, None),
    )?;
    let versions: Vec<LayerVersion> = api::list_versions(&st.shared, layer_name(&layer)?)
        .await?
        .into_iter()
        .filter(|l| matches(l, &query))
        .collect();
    let out = paged(
        "LayerVersions",
        &versions,
        &query,
        |l: &LayerVersion| l.version.to_string(),
        list_item,
    )?;
    Ok(Json(out))
}

pub(super) async fn get_version(
    State(st): St,
    ext: Extensions,
    Path((layer, version)): Path<(String, String)>,
) -> Result<Json<Value>, RestError> {
    st.shared.authorize(
        &ext,
        "lambda:GetLayerVersion",
        &crate::iam::arn::layer(
            &layer_name(&layer)?,
            Some(u64::from(version_number(&version)?)),
        ),
    )?;
    let l = api::get(&st.shared, &layer_name(&layer)?, version_number(&version)?).await?;
    Ok(Json(version_json(&l)))
}

/// DeleteLayerVersion: 204, also when the version does not exist (Lambda's is idempotent).
pub(super) async fn delete_version(
    State(st): St,
    ext: Extensions,
    Path((layer, version)): Path<(String, String)>,
) -> Result<Response, RestError> {
    st.shared.authorize(
        &ext,
        "lambda:DeleteLayerVersion",
        &crate::iam::arn::layer(
            &layer_name(&layer)?,
            Some(u64::from(version_number(&version)?)),
        ),
    )?;
    match api::delete(&st.shared, &layer_name(&layer)?, version_number(&version)?).await {
        Ok(_) | Err(ApiError::Layer(LayerError::NotFound(_))) => {
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Err(e) => Err(e.into()),
    }
}
