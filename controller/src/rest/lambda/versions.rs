//! Lambda's REST routes for versions and aliases: PublishVersion, ListVersionsByFunction,
//! Create/Get/List/Update/DeleteAlias, and the `Qualifier` of GetFunction(Configuration) and
//! DeleteFunction. The handlers call `api::versions`, as the gRPC service does.
use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use lamina_proto::domain::Alias;
use lamina_proto::v1;
use serde::Deserialize;
use serde_json::{json, Value};

use super::shapes::{self, qualified_name, unqualified_name, RestError};
use super::St;
use crate::api::{functions, versions};

fn parse_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, RestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| RestError::invalid(format!("request body is not valid: {e}")))
}

/// Lambda's `AliasConfiguration`.
fn alias_json(a: &Alias) -> Value {
    let weights = &a.additional_version_weights;
    json!({
        "AliasArn": a.arn(),
        "Name": a.name,
        "FunctionVersion": a.function_version,
        "Description": a.description,
        "RoutingConfig": {"AdditionalVersionWeights": weights},
        "RevisionId": a.revision_id,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoutingIn {
    additional_version_weights: Option<HashMap<String, f64>>,
}

impl RoutingIn {
    fn into_weights(self) -> BTreeMap<String, f64> {
        self.additional_version_weights
            .unwrap_or_default()
            .into_iter()
            .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PublishIn {
    code_sha256: Option<String>,
    description: Option<String>,
    revision_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateAliasIn {
    name: String,
    function_version: String,
    description: Option<String>,
    routing_config: Option<RoutingIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateAliasIn {
    function_version: Option<String>,
    description: Option<String>,
    routing_config: Option<RoutingIn>,
    revision_id: Option<String>,
}

/// Lambda's `CodeSha256` is the base64 of the digest; Lamina's own API uses hex. Either is taken.
fn code_sha256_hex(s: &str) -> Result<String, RestError> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(s.to_ascii_lowercase());
    }
    match base64::engine::general_purpose::STANDARD.decode(s) {
        Ok(d) if d.len() == 32 => Ok(hex::encode(d)),
        _ => Err(RestError::invalid(format!(
            "CodeSha256 must be the base64 (or hex) of a sha256 digest, got {s:?}"
        ))),
    }
}

pub(super) async fn publish_version(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, RestError> {
    st.shared
        .authorize_function(&ext, "lambda:PublishVersion", &unqualified_name(&name)?, "")?;
    let r: PublishIn = parse_body(&body)?;
    let req = versions::PublishVersion {
        function_name: unqualified_name(&name)?,
        description: r.description.unwrap_or_default(),
        expected_code_sha256: r
            .code_sha256
            .as_deref()
            .map(code_sha256_hex)
            .transpose()?
            .filter(|s| !s.is_empty()),
        expected_revision_id: r.revision_id.filter(|s| !s.is_empty()),
    };
    let published = versions::publish_version(&st.shared, req).await?;
    let c = versions::configuration(&published, &published.version);
    Ok((StatusCode::CREATED, Json(shapes::configuration(&c))).into_response())
}

pub(super) async fn list_versions(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, RestError> {
    st.shared.authorize_function(
        &ext,
        "lambda:ListVersionsByFunction",
        &unqualified_name(&name)?,
        "",
    )?;
    let all: Vec<v1::FunctionConfiguration> =
        versions::list_versions(&st.shared, unqualified_name(&name)?)
            .await?
            .iter()
            .map(|c| versions::configuration(c, &c.version))
            .collect();
    let max = match query.get("MaxItems") {
        None => usize::MAX,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => n,
            _ => {
                return Err(RestError::invalid(format!(
                    "MaxItems must be 1..10000, got {s:?}"
                )))
            }
        },
    };
    // The marker is the last version of the previous page.
    let start = match query.get("Marker") {
        None => 0,
        Some(m) => all
            .iter()
            .position(|v| &v.version == m)
            .map(|i| i + 1)
            .ok_or_else(|| {
                RestError::invalid(format!("Marker {m:?} is not a version of this function"))
            })?,
    };
    let page: Vec<&v1::FunctionConfiguration> = all.iter().skip(start).take(max).collect();
    let mut out =
        json!({"Versions": page.iter().map(|c| shapes::configuration(c)).collect::<Vec<_>>()});
    if start + page.len() < all.len() {
        if let Some(last) = page.last() {
            out["NextMarker"] = json!(last.version);
        }
    }
    Ok(Json(out))
}

pub(super) async fn create_alias(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, RestError> {
    let r: CreateAliasIn = parse_body(&body)?;
    st.shared.authorize_function(
        &ext,
        "lambda:CreateAlias",
        &unqualified_name(&name)?,
        &r.name,
    )?;
    let req = versions::NewAlias {
        function_name: unqualified_name(&name)?,
        name: r.name,
        function_version: r.function_version,
        additional_version_weights: r
            .routing_config
            .map(RoutingIn::into_weights)
            .unwrap_or_default(),
        description: r.description.unwrap_or_default(),
    };
    let a = versions::create_alias(&st.shared, req).await?;
    Ok((StatusCode::CREATED, Json(alias_json(&a))).into_response())
}

pub(super) async fn list_aliases(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, RestError> {
    st.shared
        .authorize_function(&ext, "lambda:ListAliases", &unqualified_name(&name)?, "")?;
    let aliases = versions::list_aliases(&st.shared, unqualified_name(&name)?).await?;
    let wanted = query.get("FunctionVersion");
    let shown: Vec<Value> = aliases
        .iter()
        .filter(|a| wanted.is_none_or(|v| &a.function_version == v))
        .map(alias_json)
        .collect();
    Ok(Json(json!({ "Aliases": shown })))
}

pub(super) async fn get_alias(
    State(st): St,
    ext: Extensions,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Json<Value>, RestError> {
    st.shared
        .authorize_function(&ext, "lambda:GetAlias", &unqualified_name(&name)?, &alias)?;
    let a = versions::get_alias(&st.shared, unqualified_name(&name)?, alias).await?;
    Ok(Json(alias_json(&a)))
}

pub(super) async fn update_alias(
    State(st): St,
    ext: Extensions,
    Path((name, alias)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, RestError> {
    st.shared.authorize_function(
        &ext,
        "lambda:UpdateAlias",
        &unqualified_name(&name)?,
        &alias,
    )?;
    let r: UpdateAliasIn = parse_body(&body)?;
    let req = versions::AliasUpdate {
        function_name: unqualified_name(&name)?,
        name: alias,
        function_version: r.function_version,
        additional_version_weights: r.routing_config.map(RoutingIn::into_weights),
        description: r.description,
        expected_revision_id: r.revision_id.filter(|s| !s.is_empty()),
    };
    Ok(Json(alias_json(
        &versions::update_alias(&st.shared, req).await?,
    )))
}

pub(super) async fn delete_alias(
    State(st): St,
    ext: Extensions,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Response, RestError> {
    st.shared.authorize_function(
        &ext,
        "lambda:DeleteAlias",
        &unqualified_name(&name)?,
        &alias,
    )?;
    versions::delete_alias(&st.shared, unqualified_name(&name)?, alias).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The configuration GetFunction and GetFunctionConfiguration show for `NAME[:QUALIFIER]`.
async fn configuration_of(
    st: &super::RestState,
    ext: &Extensions,
    action: &str,
    param: &str,
    query: &HashMap<String, String>,
) -> Result<Value, RestError> {
    let (name, qualifier) = qualified_name(param, query)?;
    st.shared
        .authorize_function(ext, action, &name, &qualifier)?;
    let c = if qualifier.is_empty() {
        (&functions::get(&st.shared, &name).await?).into()
    } else {
        versions::get_qualified(&st.shared, &name, &qualifier).await?
    };
    Ok(shapes::configuration(&c))
}

pub(super) async fn get_function(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, RestError> {
    let configuration = configuration_of(&st, &ext, "lambda:GetFunction", &name, &query).await?;
    let mut out = json!({
        "Configuration": configuration,
        "Code": {"RepositoryType": "Lamina", "Location": ""},
    });
    // The function's reservation, whichever version was asked for (as in Lambda).
    let function = configuration["FunctionName"].as_str().unwrap_or_default();
    if let Some(n) = super::concurrency::reserved_of(&st.shared, function).await? {
        out["Concurrency"] = super::concurrency::concurrency_json(Some(n));
    }
    // The function's tags, whichever version was asked for (as in Lambda).
    let tags = super::tags::tags_of(&st.shared, function).await?;
    if !tags.is_empty() {
        out["Tags"] = json!(tags);
    }
    Ok(Json(out))
}

pub(super) async fn get_configuration(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, RestError> {
    Ok(Json(
        configuration_of(&st, &ext, "lambda:GetFunctionConfiguration", &name, &query).await?,
    ))
}

/// DeleteFunction: with a version number as qualifier only that version, else the function.
pub(super) async fn delete_function(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, RestError> {
    let (name, qualifier) = qualified_name(&name, &query)?;
    st.shared
        .authorize_function(&ext, "lambda:DeleteFunction", &name, &qualifier)?;
    if !versions::delete_qualified(&st.shared, &name, &qualifier).await? {
        functions::delete(&st.shared, &name).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_digests_are_taken_in_base64_or_hex() {
        let hex = "ab".repeat(32);
        let b64 = base64::engine::general_purpose::STANDARD.encode([0xab; 32]);
        assert_eq!(code_sha256_hex(&b64).unwrap(), hex);
        assert_eq!(code_sha256_hex(&hex.to_uppercase()).unwrap(), hex);
        assert!(code_sha256_hex("abc").is_err());
    }

    #[test]
    fn a_qualifier_in_the_name_and_the_query_must_agree() {
        let q = |v: &str| HashMap::from([("Qualifier".to_string(), v.to_string())]);
        assert_eq!(
            qualified_name("f:1", &HashMap::new()).unwrap(),
            ("f".into(), "1".into())
        );
        assert_eq!(
            qualified_name("f", &q("live")).unwrap(),
            ("f".into(), "live".into())
        );
        assert_eq!(
            qualified_name("f:1", &q("1")).unwrap(),
            ("f".into(), "1".into())
        );
        assert!(qualified_name("f:1", &q("2")).is_err());
        assert!(unqualified_name("f:1").is_err());
        assert_eq!(unqualified_name("f").unwrap(), "f");
    }
}
