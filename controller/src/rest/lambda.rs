//! Lambda's REST API (rest-json, what boto3's `lambda` client and the AWS CLI send): its routes,
//! the function handlers (create, list, update code and configuration, invoke) and, in
//! `lambda/`, the other resources (versions and aliases, concurrency, event invoke configs,
//! layers, tags, function URLs, streamed invoke) and botocore's shapes.
//!
//! The front (`front.rs`) has checked the signature and read the body within the route's limit
//! ([`body_limit`]) before a handler runs. Handlers call the transport-neutral core the gRPC
//! services use (`crate::api::{functions, invoke, events, versions, concurrency, provisioned}`),
//! so validation and storage are shared.
use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use lamina_proto::domain::{FunctionSpec, LATEST};
use lamina_proto::v1;
use serde::Deserialize;
use serde_json::{json, Value};

use super::front;
use super::service::{Handler, Protocol, Service};
use crate::api::invoke::{self, InvocationType, InvokeInput};
use crate::api::{functions, versions as api_versions, ApiError, Shared};

mod concurrency;
mod events;
mod layers;
mod policy;
pub mod shapes;
mod stream;
mod tags;
mod urls;
mod versions;

use shapes::{parse_function_name, RestError};

/// What Lambda's handlers share.
struct RestState {
    shared: Arc<Shared>,
}

type St = State<Arc<RestState>>;

/// The Lambda service of the REST front: rest-json, signing name `lambda`, the default service
/// (requests that name no other service are Lambda's, as before there were others).
pub(super) fn service(shared: Arc<Shared>) -> Service {
    // Slightly over the payload limit: the invoke handler says precisely what is too large.
    let invoke = shared
        .queue
        .as_ref()
        .map_or(0, |q| q.config().max_payload_bytes)
        .max(lamina_proto::validate::MAX_SYNC_PAYLOAD_BYTES)
        + (1 << 20);
    Service {
        signing_name: "lambda",
        protocol: Protocol::RestJson,
        prefixes: &[],
        handler: Handler::Routes {
            router: routes(Arc::new(RestState { shared })),
            body_limit: Arc::new(move |method: &Method, path: &str| {
                front::body_limit(method, path, invoke)
            }),
        },
    }
}

fn routes(state: Arc<RestState>) -> Router {
    Router::new()
        .route("/2015-03-31/functions", post(create).get(list))
        .route("/2015-03-31/functions/", post(create).get(list))
        .route(
            "/2015-03-31/functions/:name",
            get(versions::get_function).delete(versions::delete_function),
        )
        .route("/2015-03-31/functions/:name/code", put(update_code))
        .route(
            "/2015-03-31/functions/:name/configuration",
            put(update_configuration).get(versions::get_configuration),
        )
        .route(
            "/2015-03-31/functions/:name/versions",
            post(versions::publish_version).get(versions::list_versions),
        )
        .route(
            "/2015-03-31/functions/:name/aliases",
            post(versions::create_alias).get(versions::list_aliases),
        )
        .route(
            "/2015-03-31/functions/:name/aliases/:alias",
            get(versions::get_alias)
                .put(versions::update_alias)
                .delete(versions::delete_alias),
        )
        .route("/2015-03-31/functions/:name/invocations", post(invoke))
        .route(
            "/2021-11-15/functions/:name/response-streaming-invocations",
            post(stream::invoke_with_response_stream),
        )
        .route(
            "/2019-09-25/functions/:name/event-invoke-config",
            put(events::put_config)
                .post(events::update_config)
                .get(events::get_config)
                .delete(events::delete_config),
        )
        .route(
            "/2019-09-25/functions/:name/event-invoke-config/list",
            get(events::list_configs),
        )
        .route(
            "/2017-03-31/tags/:arn",
            post(tags::tag_resource)
                .get(tags::list_tags)
                .delete(tags::untag_resource),
        )
        .route("/2018-10-31/layers", get(layers::list_layers))
        .route(
            "/2018-10-31/layers/:layer/versions",
            post(layers::publish).get(layers::list_versions),
        )
        .route(
            "/2018-10-31/layers/:layer/versions/:version",
            get(layers::get_version).delete(layers::delete_version),
        )
        .route(
            "/2017-10-31/functions/:name/concurrency",
            put(concurrency::put_concurrency).delete(concurrency::delete_concurrency),
        )
        .route(
            "/2019-09-30/functions/:name/concurrency",
            get(concurrency::get_concurrency),
        )
        .route(
            "/2016-08-19/account-settings",
            get(concurrency::account_settings),
        )
        .route(
            "/2019-09-30/functions/:name/provisioned-concurrency",
            put(concurrency::put_provisioned)
                .get(concurrency::get_provisioned)
                .delete(concurrency::delete_provisioned),
        )
        .route(
            "/2021-10-31/functions/:name/url",
            post(urls::create_url)
                .get(urls::get_url)
                .put(urls::update_url)
                .delete(urls::delete_url),
        )
        .route("/2021-10-31/functions/:name/urls", get(urls::list_urls))
        .route(
            "/2015-03-31/functions/:name/policy",
            post(policy::add_permission).get(policy::get_policy),
        )
        .route(
            "/2015-03-31/functions/:name/policy/:sid",
            axum::routing::delete(policy::remove_permission),
        )
        .fallback(unknown_operation)
        // The front read the body within the route's limit already.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn unknown_operation(req: Request) -> RestError {
    RestError::new(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        format!(
            "{} {} is not an operation Lamina serves",
            req.method(),
            req.uri().path()
        ),
    )
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, RestError> {
    serde_json::from_slice(body)
        .map_err(|e| RestError::invalid(format!("request body is not valid: {e}")))
}

/// The function name of a path parameter, refusing qualifiers other than `$LATEST`.
fn latest_name(param: &str) -> Result<String, RestError> {
    let (name, qualifier) = parse_function_name(param)?;
    match qualifier.as_deref() {
        None | Some(LATEST) => Ok(name),
        Some(q) => Err(ApiError::QualifierNotFound {
            name,
            qualifier: q.to_string(),
        }
        .into()),
    }
}

fn decode_zip(zip_file: Option<String>, extra: bool) -> Result<Vec<u8>, RestError> {
    if extra {
        return Err(RestError::invalid(
            "only Code.ZipFile is supported: S3 and image code are not (yet)",
        ));
    }
    let zip = zip_file.ok_or_else(|| RestError::invalid("ZipFile is required"))?;
    base64::engine::general_purpose::STANDARD
        .decode(zip.as_bytes())
        .map_err(|e| RestError::invalid(format!("ZipFile is not valid base64: {e}")))
}

fn config_json(c: &lamina_proto::domain::FunctionConfig) -> Value {
    shapes::configuration(&c.into())
}

async fn create(State(st): St, ext: Extensions, body: Bytes) -> Result<Response, RestError> {
    let r: shapes::CreateFunctionIn = parse_json(&body)?;
    if r.package_type.as_deref().is_some_and(|p| p != "Zip") {
        return Err(RestError::invalid("PackageType must be Zip"));
    }
    let extra = r.code.s3_bucket.is_some() || r.code.image_uri.is_some();
    let zip = decode_zip(r.code.zip_file, extra)?;
    let (name, _) = parse_function_name(&r.function_name)?;
    st.shared
        .authorize_function(&ext, "lambda:CreateFunction", &name, "")?;
    if let Some(role) = &r.role {
        st.shared.authorize_pass_role(&ext, role)?;
    }
    if r.tags.as_ref().is_some_and(|t| !t.is_empty()) {
        st.shared
            .authorize_function(&ext, "lambda:TagResource", &name, "")?;
    }
    if r.publish == Some(true) {
        st.shared
            .authorize_function(&ext, "lambda:PublishVersion", &name, "")?;
    }
    let spec = v1::FunctionSpec {
        name,
        runtime: r.runtime.unwrap_or_default(),
        handler: r.handler.unwrap_or_default(),
        memory_size_mb: r.memory_size.unwrap_or(0),
        timeout_seconds: r.timeout.unwrap_or(0),
        ephemeral_storage_mb: r.ephemeral_storage.and_then(|s| s.size).unwrap_or(0),
        environment: r.environment.and_then(|e| e.variables).unwrap_or_default(),
        description: r.description.unwrap_or_default(),
        layers: r.layers.unwrap_or_default(),
        role: r.role.unwrap_or_default(),
        architectures: r.architectures.unwrap_or_default(),
        logging_config: r.logging_config.map(shapes::LoggingIn::into_proto),
        tracing_mode: r.tracing_config.and_then(|t| t.mode).unwrap_or_default(),
        ..Default::default()
    };
    let spec = FunctionSpec::try_from(spec).map_err(ApiError::from)?;
    let tags = tags::checked(r.tags.unwrap_or_default())?;
    functions::ensure_name_free(&st.shared, &spec.name).await?;
    let code = crate::api::check_code(zip).await?;
    let config = functions::create_function(&st.shared, spec, code).await?;
    if !tags.is_empty() {
        let name = config.spec.name.clone();
        st.shared.store(move |s| s.put_tags(&name, &tags)).await?;
    }
    if r.publish == Some(true) {
        let version = publish(&st.shared, &config).await?;
        return Ok((StatusCode::CREATED, Json(shapes::configuration(&version))).into_response());
    }
    Ok((StatusCode::CREATED, Json(config_json(&config))).into_response())
}

/// `Publish: true` of CreateFunction and UpdateFunctionCode: publishes the `$LATEST` just written
/// (refused with 412 when another change got there in between) and returns the version.
async fn publish(
    shared: &Shared,
    config: &lamina_proto::domain::FunctionConfig,
) -> Result<v1::FunctionConfiguration, RestError> {
    let req = api_versions::PublishVersion {
        function_name: config.spec.name.clone(),
        description: String::new(),
        expected_code_sha256: Some(config.code_sha256.clone()).filter(|s| !s.is_empty()),
        expected_revision_id: Some(config.revision_id.clone()).filter(|s| !s.is_empty()),
    };
    let published = api_versions::publish_version(shared, req).await?;
    Ok(api_versions::configuration(&published, &published.version))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListQuery {
    marker: Option<String>,
    max_items: Option<String>,
    function_version: Option<String>,
}

/// ListFunctions. `FunctionVersion=ALL` adds each function's published versions after its
/// `$LATEST`; pages still count functions (a page holds every version of its functions).
async fn list(
    State(st): St,
    ext: Extensions,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, RestError> {
    st.shared.authorize(&ext, "lambda:ListFunctions", "*")?;
    let max = match q.max_items.as_deref() {
        None => 0,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => n,
            _ => {
                return Err(RestError::invalid(format!(
                    "MaxItems must be 1..10000, got {:?}",
                    shapes::truncated(s, 40)
                )))
            }
        },
    };
    let all_versions = match q.function_version.as_deref() {
        None => false,
        Some("ALL") => true,
        Some(other) => {
            return Err(RestError::invalid(format!(
                "FunctionVersion must be ALL, got {:?}",
                shapes::truncated(other, 40)
            )))
        }
    };
    let (page, next) = functions::list(&st.shared, q.marker.unwrap_or_default(), max).await?;
    let mut items = Vec::new();
    for f in &page {
        items.push(config_json(f));
        if all_versions {
            let name = f.spec.name.clone();
            // A function deleted since the page was read has no versions left to show.
            let published = st.shared.store(move |s| s.list_versions(&name)).await?;
            items.extend(
                published
                    .iter()
                    .map(|v| shapes::configuration(&api_versions::configuration(v, &v.version))),
            );
        }
    }
    let mut out = json!({ "Functions": items });
    if !next.is_empty() {
        out["NextMarker"] = json!(next);
    }
    Ok(Json(out))
}

async fn update_code(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, RestError> {
    let r: shapes::UpdateCodeIn = parse_json(&body)?;
    let name = latest_name(&name)?;
    st.shared
        .authorize_function(&ext, "lambda:UpdateFunctionCode", &name, "")?;
    if r.publish == Some(true) {
        st.shared
            .authorize_function(&ext, "lambda:PublishVersion", &name, "")?;
    }
    lamina_proto::validate::architectures(&r.architectures.unwrap_or_default())
        .map_err(ApiError::from)?;
    let zip = decode_zip(r.zip_file, r.s3_bucket.is_some() || r.image_uri.is_some())?;
    let current = functions::get(&st.shared, &name).await?;
    functions::check_revision(&current, r.revision_id.as_deref())?;
    let code = crate::api::check_code(zip).await?;
    if r.dry_run == Some(true) {
        // Checked, not stored: the configuration the update would give.
        let mut would = current;
        would.code_sha256 = code.sha256.clone();
        would.code_size = code.bytes.len() as u64;
        return Ok(Json(config_json(&would)));
    }
    let config = functions::update_code(&st.shared, &name, code, r.revision_id).await?;
    if r.publish == Some(true) {
        return Ok(Json(shapes::configuration(
            &publish(&st.shared, &config).await?,
        )));
    }
    Ok(Json(config_json(&config)))
}

async fn update_configuration(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, RestError> {
    let r: shapes::UpdateConfigurationIn = parse_json(&body)?;
    let name = latest_name(&name)?;
    st.shared
        .authorize_function(&ext, "lambda:UpdateFunctionConfiguration", &name, "")?;
    if let Some(role) = &r.role {
        st.shared.authorize_pass_role(&ext, role)?;
    }
    let update = functions::ConfigurationUpdate {
        runtime: r.runtime,
        handler: r.handler,
        memory_mb: r.memory_size,
        timeout_s: r.timeout,
        ephemeral_storage_mb: r.ephemeral_storage.and_then(|s| s.size),
        description: r.description,
        role: r.role,
        environment: r
            .environment
            .map(|e| e.variables.unwrap_or_default().into_iter().collect()),
        layers: r.layers,
        logging: r.logging_config.map(shapes::LoggingIn::into_domain),
        tracing_mode: r.tracing_config.map(|t| t.mode.unwrap_or_default()),
        ..Default::default()
    };
    let config = functions::update_configuration(&st.shared, &name, update, r.revision_id).await?;
    Ok(Json(config_json(&config)))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The function and qualifier an invocation's path names (`NAME`, `NAME:QUALIFIER` or an ARN);
/// `?Qualifier=` wins over the path's.
pub(super) fn invocation_target(
    name: &str,
    query: &HashMap<String, String>,
) -> Result<(String, String), RestError> {
    let (name, path_qualifier) = parse_function_name(name)?;
    let qualifier = query
        .get("Qualifier")
        .cloned()
        .or(path_qualifier)
        .unwrap_or_default();
    Ok((name, qualifier))
}

async fn invoke(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, RestError> {
    let (name, qualifier) = invocation_target(&name, &query)?;
    st.shared
        .authorize_function(&ext, "lambda:InvokeFunction", &name, &qualifier)?;
    let invocation_type =
        match header(&headers, "x-amz-invocation-type").unwrap_or("RequestResponse") {
            "RequestResponse" => InvocationType::RequestResponse,
            "Event" => InvocationType::Event,
            "DryRun" => InvocationType::DryRun,
            other => {
                return Err(RestError::invalid(format!(
                    "X-Amz-Invocation-Type must be RequestResponse, Event or DryRun, got {other:?}"
                )))
            }
        };
    let tail = log_tail_requested(&headers)?;
    let client_context = client_context_header(&headers)?;
    if !body.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        // Too large is reported as such before the content.
        if invocation_type == InvocationType::RequestResponse {
            lamina_proto::validate::sync_payload(body.len()).map_err(ApiError::from)?;
        }
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "could not parse the request body into json: send a JSON payload",
        ));
    }
    let req = InvokeInput {
        function_name: name,
        qualifier,
        invocation_type,
        payload: body.to_vec(),
        log_tail: tail,
        client_context,
        idempotency_key: String::new(),
    };
    let resp = invoke::invoke(&st.shared, req).await?;
    let status = StatusCode::from_u16(resp.status_code).unwrap_or(StatusCode::OK);
    let mut out = if status == StatusCode::OK {
        (status, resp.payload).into_response()
    } else {
        status.into_response()
    };
    let h = out.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set("x-amzn-requestid", &resp.request_id);
    set("x-amz-executed-version", &resp.executed_version);
    if status == StatusCode::OK {
        set("content-type", "application/json");
    }
    if !resp.function_error.is_empty() {
        set("x-amz-function-error", &resp.function_error);
    }
    if tail && status == StatusCode::OK {
        set(
            "x-amz-log-result",
            &base64::engine::general_purpose::STANDARD.encode(resp.log_tail.as_bytes()),
        );
    }
    Ok(out)
}

/// `X-Amz-Log-Type`: `Tail` asks for the last 4 KB of the log, `None` (or absent) does not.
pub(super) fn log_tail_requested(headers: &HeaderMap) -> Result<bool, RestError> {
    match header(headers, "x-amz-log-type").unwrap_or("None") {
        "None" => Ok(false),
        "Tail" => Ok(true),
        other => Err(RestError::invalid(format!(
            "X-Amz-Log-Type must be None or Tail, got {other:?}"
        ))),
    }
}

/// `X-Amz-Client-Context`: base64 of the JSON passed to the runtime ("" when absent).
pub(super) fn client_context_header(headers: &HeaderMap) -> Result<String, RestError> {
    match header(headers, "x-amz-client-context") {
        None => Ok(String::new()),
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| RestError::invalid("X-Amz-Client-Context must be base64-encoded JSON")),
    }
}
