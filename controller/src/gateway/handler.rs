//! One public request, from its head to the function's answer: which URL or HTTP API it is for
//! (by host name, or by a first path segment naming the id), the size and CORS checks before the
//! body, the SigV4 check of `AWS_IAM` URLs (headers before the body, signature after), the body
//! within the gateway's budget, the event, the invocation through the controller's pipeline
//! (`api::invoke`, `api::stream`), and the mapping of the result.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{request::Parts, HeaderValue, Method, Version};
use axum::response::Response;
use lamina_proto::auth::now_ms;
use lamina_proto::guard::BodyError;

use super::errors::{self, Door};
use super::events::{self, IamCaller, V2Context};
use super::model::{AuthType, FunctionUrlConfig, HttpApi, InvokeMode, PayloadFormat};
use super::request::HttpRequest;
use super::{cors, response, stream, Gateway, MAX_BODY_BYTES};
use crate::api::invoke::{self, InvocationType, InvokeInput};
use crate::api::ApiError;
use crate::auth::sigv4;
use crate::http_listener::Peer;

/// What a request is for.
enum Target {
    Url(Arc<FunctionUrlConfig>, String),
    Api(Arc<HttpApi>, String),
    /// A function URL host (or id) that names no URL.
    UnknownUrl,
    Nothing,
}

/// The host a request addressed, lower-cased, without a port.
fn host_of(parts: &Parts) -> String {
    let host = parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.host())
        .unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']') => h,
        _ => host,
    };
    host.to_ascii_lowercase()
}

fn is_id(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn target(gw: &Gateway, host: &str, path: &str) -> Target {
    let store = &gw.ctx.store;
    if let Some(id) = host.strip_suffix(&gw.url_suffix) {
        return match store.function_url_in_memory(id) {
            Some(c) => Target::Url(c, path.to_string()),
            None => Target::UnknownUrl,
        };
    }
    if let Some(id) = host.strip_suffix(&gw.api_suffix) {
        return match store.http_api_in_memory(id) {
            Some(a) => Target::Api(a, path.to_string()),
            None => Target::Nothing,
        };
    }
    // The path form: `/<id>/rest`.
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let (id, rest) = match trimmed.find('/') {
        Some(i) => (&trimmed[..i], trimmed[i..].to_string()),
        None => (trimmed, "/".to_string()),
    };
    if is_id(id, 32) {
        return match store.function_url_in_memory(id) {
            Some(c) => Target::Url(c, rest),
            None => Target::UnknownUrl,
        };
    }
    if is_id(id, 10) {
        if let Some(a) = store.http_api_in_memory(id) {
            return Target::Api(a, rest);
        }
    }
    Target::Nothing
}

/// Every public request.
pub(super) async fn handle(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let host = host_of(&parts);
    match target(&gw, &host, parts.uri.path()) {
        Target::Url(config, path) => url(&gw, &config, path, host, parts, body).await,
        Target::Api(api, path) => http_api(&gw, &api, path, host, parts, body).await,
        Target::UnknownUrl => errors::forbidden(),
        Target::Nothing => errors::not_found(),
    }
}

/// Refuses a body declared over the limit before reading it.
fn declared_too_large(parts: &Parts) -> bool {
    parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
}

fn body_refusal(door: Door, e: &BodyError) -> Response {
    match e {
        BodyError::TooLarge { .. } => errors::too_large(door),
        BodyError::Busy => errors::busy(door),
        BodyError::Timeout(_) => errors::timeout(door),
        BodyError::Read(_) => errors::bad_request(door),
    }
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn http_request(parts: &Parts, path: String, host: String, body: axum::body::Bytes) -> HttpRequest {
    HttpRequest {
        method: parts.method.as_str().to_string(),
        path,
        raw_query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        source_ip: parts
            .extensions
            .get::<Peer>()
            .map(|p| p.0.ip().to_string())
            .unwrap_or_default(),
        protocol: protocol(parts.version).to_string(),
        domain_name: host,
        request_id: uuid::Uuid::new_v4().to_string(),
        time_ms: now_ms(),
    }
}

/// A function URL request.
async fn url(
    gw: &Gateway,
    config: &FunctionUrlConfig,
    path: String,
    host: String,
    mut parts: Parts,
    body: Body,
) -> Response {
    let door = Door::Url;
    if declared_too_large(&parts) {
        return errors::too_large(door);
    }
    if let Some(c) = &config.cors {
        if cors::is_preflight(&parts.method, &parts.headers) {
            return cors::preflight(c, &parts.headers);
        }
    }
    let pending = match config.auth_type {
        AuthType::None => None,
        AuthType::AwsIam => {
            let Some(keys) = &gw.keys else {
                // Authentication off (in-process tests only): nobody can sign.
                return errors::forbidden();
            };
            match sigv4::precheck(keys.as_ref(), &parts.headers, now_ms()) {
                Ok(p) if p.service() == "lambda" => Some(p),
                Ok(p) => {
                    tracing::info!(
                        service = p.service(),
                        "refused a function url request signed for another service"
                    );
                    return errors::forbidden();
                }
                Err(e) => {
                    tracing::info!(reason = %e, "refused an unsigned function url request");
                    return errors::forbidden();
                }
            }
        }
    };
    let (bytes, held) = match gw
        .budget
        .read_within(body, MAX_BODY_BYTES, gw.body_timeout)
        .await
    {
        Ok(b) => b,
        Err(e) => return body_refusal(door, &e),
    };
    let caller = match pending {
        None => None,
        Some(p) => match p.finish(parts.method.as_str(), &parts.uri, &parts.headers, &bytes) {
            Ok(key) => Some(IamCaller { access_key: key }),
            Err(e) => {
                tracing::info!(reason = %e, "refused a badly signed function url request");
                return errors::forbidden();
            }
        },
    };
    if let Some(c) = &caller {
        // The signer needs lambda:InvokeFunctionUrl on the function, from its key's policy or
        // the function's resource policy (`Shared::authorize`), as in Lambda.
        parts.extensions.insert(lamina_proto::auth::Caller {
            access_key_id: c.access_key.clone(),
        });
        let arn = crate::iam::arn::function(&config.function_name, Some(&config.qualifier));
        let auth_type = vec![(
            "lambda:FunctionUrlAuthType".to_string(),
            "AWS_IAM".to_string(),
        )];
        if let Err(e) = gw.ctx.authorize_with(
            &parts.extensions,
            "lambda:InvokeFunctionUrl",
            &arn,
            auth_type,
        ) {
            tracing::info!(error = %e, "refused a function url request by policy");
            return errors::forbidden();
        }
    }
    let request = http_request(&parts, path, host, bytes);
    let event = events::v2(
        &request,
        &V2Context {
            api_id: &config.url_id,
            route_key: "$default",
            path_parameters: None,
            caller: caller.as_ref(),
            anonymous: caller.is_none(),
        },
    );
    let payload = serde_json::to_vec(&event).unwrap_or_default();
    drop(request);
    let input = InvokeInput {
        function_name: config.function_name.clone(),
        qualifier: config.qualifier.clone(),
        invocation_type: InvocationType::RequestResponse,
        payload,
        log_tail: false,
        client_context: String::new(),
        idempotency_key: String::new(),
    };
    let mut out = match config.invoke_mode {
        InvokeMode::Buffered => buffered(gw, input, door, PayloadFormat::V2).await,
        InvokeMode::ResponseStream => {
            match crate::api::stream::invoke_with_response_stream(Arc::clone(&gw.ctx), input).await
            {
                Ok(started) => match stream::respond(started.events).await {
                    stream::Outcome::Response(r) => with_request_id(r, &started.request_id, door),
                    stream::Outcome::FunctionError => errors::function_error(door),
                },
                Err(e) => invocation_refused(door, &e),
            }
        }
    };
    drop(held);
    if let Some(c) = &config.cors {
        cors::decorate(c, &parts.headers, out.headers_mut());
    }
    out
}

/// Runs a buffered invocation and maps its result.
async fn buffered(gw: &Gateway, input: InvokeInput, door: Door, format: PayloadFormat) -> Response {
    let function = input.function_name.clone();
    let out = match invoke::invoke(&gw.ctx, input).await {
        Ok(o) => o,
        Err(e) => return invocation_refused(door, &e),
    };
    if !out.function_error.is_empty() {
        return with_request_id(errors::function_error(door), &out.request_id, door);
    }
    let mapped = match format {
        PayloadFormat::V2 => response::v2(&out.payload),
        PayloadFormat::V1 => response::v1(&out.payload),
    };
    let response = mapped.and_then(|m| m.into_response());
    match response {
        Ok(r) => with_request_id(r, &out.request_id, door),
        Err(response::Malformed(why)) => {
            tracing::info!(%function, %why, "a function's result cannot be mapped to an http response");
            with_request_id(errors::function_error(door), &out.request_id, door)
        }
    }
}

fn with_request_id(mut r: Response, request_id: &str, door: Door) -> Response {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        let name = match door {
            Door::Url => "x-amzn-requestid",
            Door::Api => "apigw-requestid",
        };
        r.headers_mut().insert(name, v);
    }
    r
}

/// The client's answer when the pipeline refused or failed the invocation.
fn invocation_refused(door: Door, e: &ApiError) -> Response {
    match e {
        ApiError::Concurrency(crate::concurrency::ConcurrencyError::Throttled { .. }) => {
            errors::throttled(door)
        }
        ApiError::Validation(_) => errors::too_large(door),
        other => {
            tracing::warn!(error = %other, "a gateway invocation failed");
            errors::internal(door)
        }
    }
}

/// An HTTP API request.
async fn http_api(
    gw: &Gateway,
    api: &HttpApi,
    path: String,
    host: String,
    parts: Parts,
    body: Body,
) -> Response {
    let Some((route, params)) = super::routes::select(&api.routes, parts.method.as_str(), &path)
    else {
        // HEAD falls back to a GET route, as API Gateway does.
        if parts.method == Method::HEAD {
            if let Some((route, params)) = super::routes::select(&api.routes, "GET", &path) {
                let route = route.clone();
                return routed(gw, api, &route, params, path, host, parts, body).await;
            }
        }
        return errors::not_found();
    };
    let route = route.clone();
    routed(gw, api, &route, params, path, host, parts, body).await
}

#[allow(clippy::too_many_arguments)]
async fn routed(
    gw: &Gateway,
    api: &HttpApi,
    route: &super::model::HttpRoute,
    params: HashMap<String, String>,
    path: String,
    host: String,
    parts: Parts,
    body: Body,
) -> Response {
    let door = Door::Api;
    if let Some(t) = &route.throttle {
        let key = format!("{}\0{}", api.api_id, route.route_id);
        if !gw.buckets.admit(&key, t, Instant::now()) {
            return errors::throttled(door);
        }
    }
    if declared_too_large(&parts) {
        return errors::too_large(door);
    }
    let (bytes, held) = match gw
        .budget
        .read_within(body, MAX_BODY_BYTES, gw.body_timeout)
        .await
    {
        Ok(b) => b,
        Err(e) => return body_refusal(door, &e),
    };
    let request = http_request(&parts, path, host, bytes);
    let event = match api.payload_format {
        PayloadFormat::V2 => events::v2(
            &request,
            &V2Context {
                api_id: &api.api_id,
                route_key: &route.route_key,
                path_parameters: Some(&params),
                caller: None,
                anonymous: false,
            },
        ),
        PayloadFormat::V1 => events::v1(&request, &api.api_id, &route.route_key, &params),
    };
    let payload = serde_json::to_vec(&event).unwrap_or_default();
    drop(request);
    let input = InvokeInput {
        function_name: route.function_name.clone(),
        qualifier: route.qualifier.clone(),
        invocation_type: InvocationType::RequestResponse,
        payload,
        log_tail: false,
        client_context: String::new(),
        idempotency_key: String::new(),
    };
    let out = buffered(gw, input, door, api.payload_format).await;
    drop(held);
    out
}
