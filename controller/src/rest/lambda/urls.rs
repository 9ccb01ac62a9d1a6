//! Lambda's REST routes for function URLs: Create/Get/Update/DeleteFunctionUrlConfig
//! (`/2021-10-31/functions/{FunctionName}/url?Qualifier=`) and ListFunctionUrlConfigs
//! (`/2021-10-31/functions/{FunctionName}/urls`), with botocore's shapes. The handlers call
//! `api::gateway`, as the gRPC `Gateway` service does; `FunctionUrl` is where the gateway's
//! listener is reached (`Context::public_endpoint`).
use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::shapes::{self, parse_function_name, qualified_name, unqualified_name, RestError};
use super::{parse_json, St};
use crate::api::gateway::{self, FunctionUrlUpdate, NewFunctionUrl};
use lamina_proto::gateway::{Cors, FunctionUrlConfig, PublicEndpoint};

/// The largest and default page of ListFunctionUrlConfigs (botocore's `MaxItems`: 1..50).
const MAX_ITEMS: usize = 50;

/// botocore's `Cors`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CorsIn {
    pub allow_credentials: Option<bool>,
    pub allow_headers: Option<Vec<String>>,
    pub allow_methods: Option<Vec<String>>,
    pub allow_origins: Option<Vec<String>>,
    pub expose_headers: Option<Vec<String>>,
    pub max_age: Option<u32>,
}

impl CorsIn {
    fn into_domain(self) -> Cors {
        Cors {
            allow_credentials: self.allow_credentials.unwrap_or(false),
            allow_headers: self.allow_headers.unwrap_or_default(),
            allow_methods: self.allow_methods.unwrap_or_default(),
            allow_origins: self.allow_origins.unwrap_or_default(),
            expose_headers: self.expose_headers.unwrap_or_default(),
            max_age: self.max_age,
        }
    }
}

/// The body of CreateFunctionUrlConfig and UpdateFunctionUrlConfig.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UrlConfigIn {
    pub auth_type: Option<String>,
    pub cors: Option<CorsIn>,
    pub invoke_mode: Option<String>,
}

fn cors_out(c: &Cors) -> Value {
    let mut out = json!({
        "AllowCredentials": c.allow_credentials,
        "AllowHeaders": c.allow_headers,
        "AllowMethods": c.allow_methods,
        "AllowOrigins": c.allow_origins,
        "ExposeHeaders": c.expose_headers,
    });
    if let Some(age) = c.max_age {
        out["MaxAge"] = json!(age);
    }
    out
}

/// A `FunctionUrlConfig` as botocore reads it (CreateFunctionUrlConfig's answer has no
/// `LastModifiedTime`).
pub fn url_config(c: &FunctionUrlConfig, endpoint: &PublicEndpoint, last_modified: bool) -> Value {
    let mut out = json!({
        "FunctionUrl": endpoint.function_url(&c.url_id),
        "FunctionArn": c.function_arn(),
        "AuthType": c.auth_type.as_str(),
        "CreationTime": shapes::last_modified(c.created_ms),
        "InvokeMode": c.invoke_mode.as_str(),
    });
    if last_modified {
        out["LastModifiedTime"] = json!(shapes::last_modified(c.last_modified_ms));
    }
    if let Some(cors) = &c.cors {
        out["Cors"] = cors_out(cors);
    }
    out
}

/// `AuthType`/`InvokeMode` of a body: absent is `None`, anything but the model's values is 400.
fn enums(
    r: &UrlConfigIn,
) -> Result<
    (
        Option<lamina_proto::gateway::AuthType>,
        Option<lamina_proto::gateway::InvokeMode>,
    ),
    RestError,
> {
    // "" is not a value of either enum (the core reads "" as "not given").
    let non_empty = |field: &str, v: &Option<String>| match v.as_deref() {
        Some("") => Err(RestError::invalid(format!("{field} must not be empty"))),
        _ => Ok(()),
    };
    non_empty("AuthType", &r.auth_type)?;
    non_empty("InvokeMode", &r.invoke_mode)?;
    Ok((
        gateway::parse_auth_type(r.auth_type.as_deref().unwrap_or_default())?,
        gateway::parse_invoke_mode(r.invoke_mode.as_deref().unwrap_or_default())?,
    ))
}

/// CreateFunctionUrlConfig: 201 with the new URL.
pub(super) async fn create_url(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, RestError> {
    let (function_name, qualifier) = qualified_name(&name, &query)?;
    st.shared.authorize_function(
        &ext,
        "lambda:CreateFunctionUrlConfig",
        &function_name,
        &qualifier,
    )?;
    let r: UrlConfigIn = parse_json(&body)?;
    let (auth_type, invoke_mode) = enums(&r)?;
    let c = gateway::create_function_url(
        &st.shared,
        NewFunctionUrl {
            function_name,
            qualifier,
            auth_type,
            invoke_mode,
            cors: r.cors.map(CorsIn::into_domain),
        },
    )
    .await?;
    let out = url_config(&c, &st.shared.public_endpoint(), false);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// GetFunctionUrlConfig.
pub(super) async fn get_url(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, RestError> {
    let (function_name, qualifier) = qualified_name(&name, &query)?;
    st.shared.authorize_function(
        &ext,
        "lambda:GetFunctionUrlConfig",
        &function_name,
        &qualifier,
    )?;
    let c = gateway::get_function_url(&st.shared, &function_name, &qualifier).await?;
    Ok(Json(url_config(&c, &st.shared.public_endpoint(), true)))
}

/// UpdateFunctionUrlConfig: the fields given change; `Cors` replaces the whole configuration.
pub(super) async fn update_url(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, RestError> {
    let (function_name, qualifier) = qualified_name(&name, &query)?;
    st.shared.authorize_function(
        &ext,
        "lambda:UpdateFunctionUrlConfig",
        &function_name,
        &qualifier,
    )?;
    let r: UrlConfigIn = if body.is_empty() {
        UrlConfigIn::default()
    } else {
        parse_json(&body)?
    };
    let (auth_type, invoke_mode) = enums(&r)?;
    let c = gateway::update_function_url(
        &st.shared,
        FunctionUrlUpdate {
            function_name,
            qualifier,
            auth_type,
            invoke_mode,
            cors: r.cors.map(|c| Some(c.into_domain())),
        },
    )
    .await?;
    Ok(Json(url_config(&c, &st.shared.public_endpoint(), true)))
}

/// DeleteFunctionUrlConfig: 204; 404 when there is none.
pub(super) async fn delete_url(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, RestError> {
    let (function_name, qualifier) = qualified_name(&name, &query)?;
    st.shared.authorize_function(
        &ext,
        "lambda:DeleteFunctionUrlConfig",
        &function_name,
        &qualifier,
    )?;
    gateway::delete_function_url(&st.shared, &function_name, &qualifier).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListQuery {
    marker: Option<String>,
    max_items: Option<String>,
}

/// ListFunctionUrlConfigs: the unqualified URL first, then by alias. `NextMarker` is the
/// `FunctionArn` of the page's last URL; the next page starts after its qualifier.
pub(super) async fn list_urls(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, RestError> {
    let max = match q.max_items.as_deref() {
        None => MAX_ITEMS,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_ITEMS).contains(&n) => n,
            _ => {
                return Err(RestError::invalid(format!(
                    "MaxItems must be 1..{MAX_ITEMS}, got {:?}",
                    shapes::truncated(s, 40)
                )))
            }
        },
    };
    let function_name = unqualified_name(&name)?;
    st.shared
        .authorize_function(&ext, "lambda:ListFunctionUrlConfigs", &function_name, "")?;
    let after = match q.marker.as_deref().filter(|m| !m.is_empty()) {
        None => None,
        Some(m) => Some(marker_qualifier(m, &function_name)?),
    };
    let urls = gateway::list_function_urls(&st.shared, &function_name).await?;
    let (page, more) = page(&urls, after.as_deref(), max);
    let endpoint = st.shared.public_endpoint();
    let mut out = json!({
        "FunctionUrlConfigs": page.iter().map(|c| url_config(c, &endpoint, true)).collect::<Vec<_>>(),
    });
    if let (true, Some(last)) = (more, page.last()) {
        out["NextMarker"] = json!(last.function_arn());
    }
    Ok(Json(out))
}

/// The qualifier a `Marker` (a `FunctionArn` of the function) ends after ("" = unqualified).
fn marker_qualifier(marker: &str, function_name: &str) -> Result<String, RestError> {
    match parse_function_name(marker) {
        Ok((name, qualifier)) if name == function_name => Ok(qualifier.unwrap_or_default()),
        _ => Err(RestError::invalid(format!(
            "Marker {:?} is not a NextMarker of function `{function_name}`'s URLs",
            shapes::truncated(marker, 80)
        ))),
    }
}

/// Up to `max` URLs whose qualifier sorts after `after` (all when `None`), and whether more
/// follow. `urls` are sorted by qualifier.
fn page<'a>(
    urls: &'a [FunctionUrlConfig],
    after: Option<&str>,
    max: usize,
) -> (&'a [FunctionUrlConfig], bool) {
    let start = match after {
        None => 0,
        Some(a) => urls.partition_point(|c| c.qualifier.as_str() <= a),
    };
    let rest = &urls[start..];
    let n = rest.len().min(max);
    (&rest[..n], rest.len() > n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ApiError;
    use crate::store::StoreError;
    use lamina_proto::gateway::{AuthType, InvokeMode};

    fn config(qualifier: &str) -> FunctionUrlConfig {
        FunctionUrlConfig {
            url_id: format!("id{qualifier}"),
            function_name: "f".into(),
            qualifier: qualifier.into(),
            auth_type: AuthType::None,
            invoke_mode: InvokeMode::Buffered,
            cors: None,
            created_ms: 1_440_938_160_123,
            last_modified_ms: 1_440_938_161_000,
        }
    }

    #[test]
    fn a_url_config_is_botocore_shaped() {
        let mut c = config("live");
        c.auth_type = AuthType::AwsIam;
        c.cors = Some(Cors {
            allow_origins: vec!["https://a.example".into()],
            max_age: Some(60),
            ..Default::default()
        });
        let endpoint = PublicEndpoint::default();
        let v = url_config(&c, &endpoint, true);
        assert_eq!(
            v["FunctionUrl"],
            "http://idlive.lambda-url.us-east-1.localhost:9690/"
        );
        assert_eq!(
            v["FunctionArn"],
            "arn:aws:lambda:us-east-1:000000000000:function:f:live"
        );
        assert_eq!(v["AuthType"], "AWS_IAM");
        assert_eq!(v["InvokeMode"], "BUFFERED");
        assert_eq!(v["CreationTime"], "2015-08-30T12:36:00.123+0000");
        assert_eq!(v["LastModifiedTime"], "2015-08-30T12:36:01.000+0000");
        assert_eq!(v["Cors"]["AllowOrigins"], json!(["https://a.example"]));
        assert_eq!(v["Cors"]["MaxAge"], 60);
        assert_eq!(v["Cors"]["AllowCredentials"], false);
        let created = url_config(&config(""), &endpoint, false);
        assert!(created.get("LastModifiedTime").is_none());
        assert!(created.get("Cors").is_none());
        assert_eq!(
            created["FunctionArn"],
            "arn:aws:lambda:us-east-1:000000000000:function:f"
        );
    }

    #[test]
    fn bodies_parse_into_the_core_types() {
        let r: UrlConfigIn = serde_json::from_str(
            r#"{"AuthType":"NONE","InvokeMode":"RESPONSE_STREAM",
                "Cors":{"AllowOrigins":["*"],"AllowCredentials":true,"MaxAge":0}}"#,
        )
        .unwrap();
        let (a, m) = enums(&r).unwrap();
        assert_eq!(
            (a, m),
            (Some(AuthType::None), Some(InvokeMode::ResponseStream))
        );
        let cors = r.cors.unwrap().into_domain();
        assert!(cors.allow_credentials);
        assert_eq!(cors.max_age, Some(0));
        assert_eq!(cors.allow_origins, ["*"]);
        let bad: UrlConfigIn = serde_json::from_str(r#"{"AuthType":"OPEN"}"#).unwrap();
        assert!(enums(&bad).is_err());
        let empty: UrlConfigIn = serde_json::from_str(r#"{"InvokeMode":""}"#).unwrap();
        assert!(enums(&empty).is_err());
    }

    #[test]
    fn pages_follow_the_marker() {
        let urls = [config(""), config("a"), config("b")];
        let (p, more) = page(&urls, None, 2);
        assert_eq!((p.len(), more), (2, true));
        let q = marker_qualifier(&p[1].function_arn(), "f").unwrap();
        assert_eq!(q, "a");
        let (p, more) = page(&urls, Some(&q), 2);
        assert_eq!((p[0].qualifier.as_str(), p.len(), more), ("b", 1, false));
        assert_eq!(
            marker_qualifier("arn:aws:lambda:us-east-1:000000000000:function:f", "f").unwrap(),
            ""
        );
        let (p, _) = page(&urls, Some(""), 50);
        assert_eq!(p.len(), 2, "after the unqualified URL");
        assert!(marker_qualifier("arn:aws:lambda:us-east-1:000000000000:function:g", "f").is_err());
        assert!(marker_qualifier("not a marker", "f").is_err());
    }

    #[tokio::test]
    async fn errors_are_lambdas() {
        use axum::response::IntoResponse;
        let cases = [
            (
                ApiError::Store(StoreError::FunctionUrlExists {
                    function: "f".into(),
                    qualifier: String::new(),
                }),
                StatusCode::CONFLICT,
                "ResourceConflictException",
            ),
            (
                ApiError::Store(StoreError::FunctionUrlNotFound {
                    function: "f".into(),
                    qualifier: "live".into(),
                }),
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
            ),
            (
                ApiError::Store(StoreError::AliasNotFound {
                    function: "f".into(),
                    alias: "live".into(),
                }),
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
            ),
            (
                gateway::parse_auth_type("OPEN").unwrap_err(),
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
            ),
            (
                ApiError::HttpApiNotFound("a".into()),
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
            ),
            (
                ApiError::HttpRouteExists {
                    api_id: "a".into(),
                    route_key: "GET /x".into(),
                    existing: "GET /x".into(),
                },
                StatusCode::CONFLICT,
                "ResourceConflictException",
            ),
        ];
        for (e, status, kind) in cases {
            let message = e.to_string();
            let resp = RestError::from(e).into_response();
            assert_eq!(resp.status(), status, "{message}");
            assert_eq!(resp.headers()["x-amzn-ErrorType"], kind, "{message}");
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["Message"], message.as_str());
        }
    }
}
