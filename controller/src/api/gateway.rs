//! Function URLs and HTTP APIs: the transport-neutral core of the `Gateway` gRPC service
//! (`gateway_service.rs`) and the Lambda REST API's function URL operations
//! (`rest/lambda/urls.rs`). Takes and returns the domain types of `lamina_proto::gateway`;
//! stored by `store::GatewayStore`.
//!
//! Limits: one URL per function and qualifier ("" = `$LATEST`, or an alias: Lambda refuses
//! versions and `$LATEST` as URL qualifiers); CORS as botocore's `Cors` shape (at most 100
//! origins of 1..253 characters, 6 methods of 1..6, 100 allowed and 100 exposed headers of at most
//! 1024, `MaxAge` 0..86400). At most [`MAX_HTTP_APIS`] HTTP APIs, names 1..128 characters, and
//! [`MAX_ROUTES_PER_API`] routes per API (API Gateway's default quotas).
use std::collections::HashSet;

use lamina_proto::domain::LATEST;
use lamina_proto::gateway::{
    AuthType, Cors, FunctionUrlConfig, HttpApi, HttpRoute, InvokeMode, PayloadFormat, RouteKey,
    RouteShape, Throttle,
};
use lamina_proto::validate::{self, ValidationError};
use rand::Rng;

use super::{now_ms, ApiError, Shared};
use crate::resolve::{alias_name, lookup_in, Qualifier, VersionError};
use crate::store::{Store, StoreError};

/// The most HTTP APIs a controller keeps (API Gateway's regional quota).
pub const MAX_HTTP_APIS: usize = 600;
/// The most routes of one HTTP API (API Gateway's quota).
pub const MAX_ROUTES_PER_API: usize = 300;
const MAX_API_NAME_LEN: usize = 128;
const MAX_CORS_ITEMS: usize = 100;
const MAX_CORS_METHODS: usize = 6;
const MAX_ORIGIN_LEN: usize = 253;
const MAX_HEADER_LEN: usize = 1024;
const MAX_CORS_MAX_AGE: u32 = 86_400;
/// The methods a CORS configuration may allow (`*`: every method).
const CORS_METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "*",
];

/// HTTP API writers (create, delete, route add and delete) take this lock, so "fewer than the
/// limit", "no route with this key" and the API read before its update stay true until the write.
static API_WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `n` random lowercase letters and digits (URL, API and route ids).
fn random_id(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
    ValidationError::new(field, message).into()
}

/// `AuthType`: `NONE` or `AWS_IAM`; "" is `None` (not given).
pub(crate) fn parse_auth_type(s: &str) -> Result<Option<AuthType>, ApiError> {
    if s.is_empty() {
        return Ok(None);
    }
    AuthType::parse(s).map(Some).ok_or_else(|| {
        invalid(
            "auth_type",
            format!("AuthType must be NONE or AWS_IAM, got {:?}", short(s)),
        )
    })
}

/// `InvokeMode`: `BUFFERED` or `RESPONSE_STREAM`; "" is `None` (not given).
pub(crate) fn parse_invoke_mode(s: &str) -> Result<Option<InvokeMode>, ApiError> {
    if s.is_empty() {
        return Ok(None);
    }
    InvokeMode::parse(s).map(Some).ok_or_else(|| {
        invalid(
            "invoke_mode",
            format!(
                "InvokeMode must be BUFFERED or RESPONSE_STREAM, got {:?}",
                short(s)
            ),
        )
    })
}

/// A payload format: `1.0` or `2.0` ("" = 2.0).
pub(crate) fn parse_payload_format(s: &str) -> Result<PayloadFormat, ApiError> {
    PayloadFormat::parse(s).ok_or_else(|| {
        invalid(
            "payload_format",
            format!("the payload format must be 1.0 or 2.0, got {:?}", short(s)),
        )
    })
}

/// At most 64 characters of `s`, for error messages quoting input.
fn short(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// A function URL's qualifier: "" (`$LATEST`) or an alias name (not a version, not `$LATEST`).
fn check_url_qualifier(function: &str, qualifier: &str) -> Result<(), ApiError> {
    if qualifier.is_empty() {
        return Ok(());
    }
    if qualifier == LATEST {
        return Err(invalid(
            "qualifier",
            format!(
                "a function URL of `{function}`'s $LATEST takes no qualifier: leave it out \
                 (URLs take an alias name or none)"
            ),
        ));
    }
    if qualifier.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "qualifier",
            format!(
                "function URLs cannot point at version {qualifier} of `{function}`: create an \
                 alias of the version and use its name"
            ),
        ));
    }
    alias_name(qualifier)?;
    Ok(())
}

/// A CORS configuration within botocore's `Cors` limits.
pub(crate) fn check_cors(cors: &Cors) -> Result<(), ApiError> {
    let list = |field: &'static str,
                name: &str,
                items: &[String],
                max_items: usize,
                max_len: usize,
                min_len: usize| {
        if items.len() > max_items {
            return Err(invalid(
                field,
                format!(
                    "Cors.{name} takes at most {max_items} items, got {}",
                    items.len()
                ),
            ));
        }
        for item in items {
            if item.len() > max_len || item.len() < min_len {
                return Err(invalid(
                    field,
                    format!(
                        "each item of Cors.{name} must be {min_len}..{max_len} characters, got {} ({:?})",
                        item.len(),
                        short(item)
                    ),
                ));
            }
            if item.chars().any(|c| c.is_control()) {
                return Err(invalid(
                    field,
                    format!("Cors.{name} items may not contain control characters: {item:?}"),
                ));
            }
        }
        Ok(())
    };
    list(
        "cors.allow_origins",
        "AllowOrigins",
        &cors.allow_origins,
        MAX_CORS_ITEMS,
        MAX_ORIGIN_LEN,
        1,
    )?;
    list(
        "cors.allow_methods",
        "AllowMethods",
        &cors.allow_methods,
        MAX_CORS_METHODS,
        6,
        1,
    )?;
    list(
        "cors.allow_headers",
        "AllowHeaders",
        &cors.allow_headers,
        MAX_CORS_ITEMS,
        MAX_HEADER_LEN,
        0,
    )?;
    list(
        "cors.expose_headers",
        "ExposeHeaders",
        &cors.expose_headers,
        MAX_CORS_ITEMS,
        MAX_HEADER_LEN,
        0,
    )?;
    if let Some(m) = cors
        .allow_methods
        .iter()
        .find(|m| !CORS_METHODS.contains(&m.to_ascii_uppercase().as_str()))
    {
        return Err(invalid(
            "cors.allow_methods",
            format!(
                "Cors.AllowMethods items must be HTTP methods ({}) or *, got {m:?}",
                CORS_METHODS[..7].join(", ")
            ),
        ));
    }
    if let Some(age) = cors.max_age {
        if age > MAX_CORS_MAX_AGE {
            return Err(invalid(
                "cors.max_age",
                format!("Cors.MaxAge must be 0..{MAX_CORS_MAX_AGE} seconds, got {age}"),
            ));
        }
    }
    Ok(())
}

/// A CreateFunctionUrlConfig.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewFunctionUrl {
    pub function_name: String,
    /// "" (`$LATEST`) or an alias name.
    pub qualifier: String,
    /// Required.
    pub auth_type: Option<AuthType>,
    /// `None`: `BUFFERED`.
    pub invoke_mode: Option<InvokeMode>,
    pub cors: Option<Cors>,
}

/// An UpdateFunctionUrlConfig: fields left `None` keep their value; `cors: Some(None)` removes
/// the CORS configuration.
#[derive(Debug, Clone, Default)]
pub(crate) struct FunctionUrlUpdate {
    pub function_name: String,
    pub qualifier: String,
    pub auth_type: Option<AuthType>,
    pub invoke_mode: Option<InvokeMode>,
    pub cors: Option<Option<Cors>>,
}

/// The store's "function gone" as the API's (the message is the same; `FunctionNotFound` reads
/// better in both transports).
fn store_not_found(e: ApiError) -> ApiError {
    match e {
        ApiError::Store(StoreError::FunctionNotFound(n)) => ApiError::FunctionNotFound(n),
        ApiError::Store(StoreError::AliasNotFound { function, alias }) => {
            VersionError::AliasNotFound {
                name: function,
                alias,
            }
            .into()
        }
        e => e,
    }
}

/// Checks that the function and the alias a URL names exist (blocking).
fn require_url_target(store: &dyn Store, function: &str, qualifier: &str) -> Result<(), ApiError> {
    if store.get_function(function)?.is_none() {
        return Err(ApiError::FunctionNotFound(function.to_string()));
    }
    if !qualifier.is_empty() && store.get_alias(function, qualifier)?.is_none() {
        return Err(VersionError::AliasNotFound {
            name: function.to_string(),
            alias: qualifier.to_string(),
        }
        .into());
    }
    Ok(())
}

/// CreateFunctionUrlConfig: a new URL (a fresh 32-character id) of the function or one of its
/// aliases. `FunctionUrlExists` when it has one.
pub(crate) async fn create_function_url(
    shared: &Shared,
    r: NewFunctionUrl,
) -> Result<FunctionUrlConfig, ApiError> {
    validate::name(&r.function_name)?;
    check_url_qualifier(&r.function_name, &r.qualifier)?;
    let auth_type = r.auth_type.ok_or_else(|| {
        invalid(
            "auth_type",
            "AuthType is required: NONE (public) or AWS_IAM (SigV4-signed requests)",
        )
    })?;
    if let Some(cors) = &r.cors {
        check_cors(cors)?;
    }
    let now = now_ms();
    let config = FunctionUrlConfig {
        url_id: random_id(32),
        function_name: r.function_name,
        qualifier: r.qualifier,
        auth_type,
        invoke_mode: r.invoke_mode.unwrap_or_default(),
        cors: r.cors,
        created_ms: now,
        last_modified_ms: now,
    };
    let stored = config.clone();
    shared
        .blocking(move |s| {
            require_url_target(s, &stored.function_name, &stored.qualifier)?;
            s.create_function_url(&stored).map_err(ApiError::from)
        })
        .await
        .map_err(store_not_found)?;
    tracing::info!(function = %config.function_name, qualifier = %config.qualifier, url_id = %config.url_id, "function URL created");
    Ok(config)
}

/// GetFunctionUrlConfig. `FunctionNotFound`, or `FunctionUrlNotFound` when it has none.
pub(crate) async fn get_function_url(
    shared: &Shared,
    function_name: &str,
    qualifier: &str,
) -> Result<FunctionUrlConfig, ApiError> {
    validate::name(function_name)?;
    check_url_qualifier(function_name, qualifier)?;
    let (function, qualifier) = (function_name.to_string(), qualifier.to_string());
    shared
        .blocking(move |s| {
            if s.get_function(&function)?.is_none() {
                return Err(ApiError::FunctionNotFound(function));
            }
            s.get_function_url(&function, &qualifier)?.ok_or_else(|| {
                StoreError::FunctionUrlNotFound {
                    function,
                    qualifier,
                }
                .into()
            })
        })
        .await
}

/// UpdateFunctionUrlConfig: changes the fields given; the id, and so the URL, stay.
pub(crate) async fn update_function_url(
    shared: &Shared,
    r: FunctionUrlUpdate,
) -> Result<FunctionUrlConfig, ApiError> {
    validate::name(&r.function_name)?;
    check_url_qualifier(&r.function_name, &r.qualifier)?;
    if let Some(Some(cors)) = &r.cors {
        check_cors(cors)?;
    }
    let updated = shared
        .blocking(move |s| {
            if s.get_function(&r.function_name)?.is_none() {
                return Err(ApiError::FunctionNotFound(r.function_name));
            }
            let mut config = s
                .get_function_url(&r.function_name, &r.qualifier)?
                .ok_or_else(|| StoreError::FunctionUrlNotFound {
                    function: r.function_name.clone(),
                    qualifier: r.qualifier.clone(),
                })?;
            if let Some(a) = r.auth_type {
                config.auth_type = a;
            }
            if let Some(m) = r.invoke_mode {
                config.invoke_mode = m;
            }
            if let Some(c) = r.cors {
                config.cors = c;
            }
            config.last_modified_ms = now_ms().max(config.created_ms);
            s.update_function_url(&config)?;
            Ok(config)
        })
        .await
        .map_err(store_not_found)?;
    tracing::info!(function = %updated.function_name, qualifier = %updated.qualifier, "function URL updated");
    Ok(updated)
}

/// DeleteFunctionUrlConfig. `FunctionUrlNotFound` when there is none (as Lambda).
pub(crate) async fn delete_function_url(
    shared: &Shared,
    function_name: &str,
    qualifier: &str,
) -> Result<(), ApiError> {
    validate::name(function_name)?;
    check_url_qualifier(function_name, qualifier)?;
    let (function, q) = (function_name.to_string(), qualifier.to_string());
    shared
        .blocking(move |s| {
            if s.get_function(&function)?.is_none() {
                return Err(ApiError::FunctionNotFound(function));
            }
            match s.delete_function_url(&function, &q)? {
                Some(_) => Ok(()),
                None => Err(StoreError::FunctionUrlNotFound {
                    function,
                    qualifier: q,
                }
                .into()),
            }
        })
        .await?;
    tracing::info!(function = %function_name, qualifier = %qualifier, "function URL deleted");
    Ok(())
}

/// ListFunctionUrlConfigs: the function's URLs, the unqualified one first, then by alias.
pub(crate) async fn list_function_urls(
    shared: &Shared,
    function_name: &str,
) -> Result<Vec<FunctionUrlConfig>, ApiError> {
    validate::name(function_name)?;
    let function = function_name.to_string();
    shared
        .blocking(move |s| {
            if s.get_function(&function)?.is_none() {
                return Err(ApiError::FunctionNotFound(function));
            }
            Ok(s.list_function_urls(&function)?)
        })
        .await
}

/// An HTTP API's name: 1..128 characters, no control characters.
fn check_api_name(name: &str) -> Result<(), ApiError> {
    let n = name.chars().count();
    if n == 0 || n > MAX_API_NAME_LEN {
        return Err(invalid(
            "name",
            format!("an HTTP API's name must be 1..{MAX_API_NAME_LEN} characters, got {n}"),
        ));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(invalid(
            "name",
            format!("an HTTP API's name may not contain control characters: {name:?}"),
        ));
    }
    Ok(())
}

/// CreateHttpApi: a new API without routes (a fresh 10-character id).
pub(crate) async fn create_http_api(
    shared: &Shared,
    name: String,
    payload_format: PayloadFormat,
) -> Result<HttpApi, ApiError> {
    check_api_name(&name)?;
    let _writes = API_WRITES.lock().await;
    let api = shared
        .blocking(move |s| {
            let existing = s.list_http_apis()?;
            if existing.len() >= MAX_HTTP_APIS {
                return Err(ApiError::GatewayLimit(format!(
                    "there are {} HTTP APIs, the most this controller keeps: delete one first",
                    existing.len()
                )));
            }
            let taken: HashSet<String> = existing.into_iter().map(|a| a.api_id).collect();
            let api_id = loop {
                let id = random_id(10);
                if !taken.contains(&id) {
                    break id;
                }
            };
            let api = HttpApi {
                api_id,
                name,
                payload_format,
                routes: Vec::new(),
                created_ms: now_ms(),
            };
            s.put_http_api(&api)?;
            Ok(api)
        })
        .await?;
    tracing::info!(api_id = %api.api_id, name = %api.name, "HTTP API created");
    Ok(api)
}

fn check_api_id(api_id: &str) -> Result<(), ApiError> {
    // Ids are 10 lowercase letters and digits; anything else cannot name an API (and would be
    // quoted in the error: bound it).
    if api_id.is_empty()
        || api_id.len() > 64
        || !api_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(ApiError::HttpApiNotFound(short(api_id)));
    }
    Ok(())
}

/// GetHttpApi, routes included.
pub(crate) async fn get_http_api(shared: &Shared, api_id: &str) -> Result<HttpApi, ApiError> {
    check_api_id(api_id)?;
    let id = api_id.to_string();
    shared
        .blocking(move |s| s.get_http_api(&id)?.ok_or(ApiError::HttpApiNotFound(id)))
        .await
}

/// ListHttpApis: every API by id, routes included.
pub(crate) async fn list_http_apis(shared: &Shared) -> Result<Vec<HttpApi>, ApiError> {
    shared.blocking(|s| Ok(s.list_http_apis()?)).await
}

/// DeleteHttpApi: the API and its routes.
pub(crate) async fn delete_http_api(shared: &Shared, api_id: &str) -> Result<(), ApiError> {
    check_api_id(api_id)?;
    let _writes = API_WRITES.lock().await;
    let id = api_id.to_string();
    shared
        .blocking(move |s| match s.delete_http_api(&id)? {
            Some(_) => Ok(()),
            None => Err(ApiError::HttpApiNotFound(id)),
        })
        .await?;
    tracing::info!(api_id = %api_id, "HTTP API deleted");
    Ok(())
}

/// A CreateHttpRoute.
#[derive(Debug, Clone, Default)]
pub(crate) struct NewHttpRoute {
    pub api_id: String,
    /// `METHOD /path` or `$default`.
    pub route_key: String,
    pub function_name: String,
    /// "" / `$LATEST`, a version or an alias.
    pub qualifier: String,
    pub throttle: Option<Throttle>,
}

/// Checks a route key (`lamina_proto::gateway::RouteKey::parse`: `$default`, or `METHOD /path`
/// with literal, `{name}` and a last `{name+}` segments) and returns its shape: two keys of one
/// shape are the same route.
pub(crate) fn check_route_key(key: &str) -> Result<RouteShape, ApiError> {
    RouteKey::parse(key).map(|k| k.shape()).map_err(|why| {
        invalid(
            "route_key",
            format!(
                "invalid route key {:?}: {why} (route keys look like `GET /items/{{id}}`, \
                 `ANY /{{proxy+}}` or `$default`)",
                short(key)
            ),
        )
    })
}

fn check_throttle(t: &Throttle) -> Result<(), ApiError> {
    if !t.rate_limit.is_finite() || t.rate_limit < 0.0 {
        return Err(invalid(
            "throttle.rate_limit",
            format!(
                "the throttle's rate limit must be a number of requests per second >= 0, got {}",
                t.rate_limit
            ),
        ));
    }
    Ok(())
}

/// CreateHttpRoute: adds a route to an API. The function and its qualifier must resolve now; a
/// route of the same method and path (variable names aside) is `HttpRouteExists`.
pub(crate) async fn create_http_route(
    shared: &Shared,
    r: NewHttpRoute,
) -> Result<HttpRoute, ApiError> {
    check_api_id(&r.api_id)?;
    let shape = check_route_key(&r.route_key)?;
    validate::name(&r.function_name)?;
    if let Some(t) = &r.throttle {
        check_throttle(t)?;
    }
    // "" and $LATEST are the same target: stored as "".
    let qualifier = match Qualifier::parse(&r.qualifier)? {
        Qualifier::Latest => String::new(),
        _ => r.qualifier.clone(),
    };
    let _writes = API_WRITES.lock().await;
    let route = shared
        .blocking(move |s| {
            let mut api = s
                .get_http_api(&r.api_id)?
                .ok_or_else(|| ApiError::HttpApiNotFound(r.api_id.clone()))?;
            lookup_in(s, &r.function_name, &qualifier)?;
            if let Some(existing) = api
                .routes
                .iter()
                .find(|x| check_route_key(&x.route_key).is_ok_and(|s| s == shape))
            {
                return Err(ApiError::HttpRouteExists {
                    api_id: r.api_id.clone(),
                    route_key: r.route_key.clone(),
                    existing: existing.route_key.clone(),
                });
            }
            if api.routes.len() >= MAX_ROUTES_PER_API {
                return Err(ApiError::GatewayLimit(format!(
                    "HTTP API `{}` has {} routes, the most an API takes: delete one first",
                    api.api_id,
                    api.routes.len()
                )));
            }
            let route_id = loop {
                let id = random_id(7);
                if !api.routes.iter().any(|x| x.route_id == id) {
                    break id;
                }
            };
            let route = HttpRoute {
                route_id,
                route_key: r.route_key,
                function_name: r.function_name,
                qualifier,
                throttle: r.throttle,
                created_ms: now_ms(),
            };
            api.routes.push(route.clone());
            s.put_http_api(&api)?;
            Ok(route)
        })
        .await?;
    tracing::info!(route_key = %route.route_key, route_id = %route.route_id, function = %route.function_name, "HTTP route created");
    Ok(route)
}

/// ListHttpRoutes: the API's routes in the order they were added.
pub(crate) async fn list_http_routes(
    shared: &Shared,
    api_id: &str,
) -> Result<Vec<HttpRoute>, ApiError> {
    Ok(get_http_api(shared, api_id).await?.routes)
}

/// DeleteHttpRoute: by route id or by route key. Returns the deleted route.
pub(crate) async fn delete_http_route(
    shared: &Shared,
    api_id: &str,
    route: &str,
) -> Result<HttpRoute, ApiError> {
    check_api_id(api_id)?;
    let _writes = API_WRITES.lock().await;
    let (id, wanted) = (api_id.to_string(), route.to_string());
    let deleted = shared
        .blocking(move |s| {
            let mut api = s
                .get_http_api(&id)?
                .ok_or_else(|| ApiError::HttpApiNotFound(id.clone()))?;
            let Some(i) = api
                .routes
                .iter()
                .position(|x| x.route_id == wanted || x.route_key == wanted)
            else {
                return Err(ApiError::HttpRouteNotFound {
                    api_id: id,
                    route: short(&wanted),
                });
            };
            let route = api.routes.remove(i);
            s.put_http_api(&api)?;
            Ok(route)
        })
        .await?;
    tracing::info!(api_id = %api_id, route_key = %deleted.route_key, "HTTP route deleted");
    Ok(deleted)
}

#[cfg(test)]
#[path = "gateway_tests.rs"]
mod tests;
