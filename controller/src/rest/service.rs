//! The services the REST front serves, and the dispatch of a request to one of them.
//!
//! Boto3 speaks one wire protocol per service: rest-json (Lambda, Scheduler) and rest-xml (S3)
//! name the operation by method and path; AWS JSON 1.0/1.1 (SQS, Step Functions, EventBridge,
//! Secrets Manager, SSM) by the `X-Amz-Target: Prefix.Operation` header; the query protocol (SNS,
//! older SQS) by the `Action` parameter of a form-encoded body. [`Services::route`] tells from the
//! request head which service and protocol a request is for, so that the front can apply the
//! service's body limit and answer every refusal in the shape the client parses; after the
//! signature is verified, [`Services::dispatch`] hands the request to the service's handler.
//! A request for a service Lamina does not serve gets that protocol's "unknown operation" error.
//!
//! Adding a service: a module with a function that returns its [`Service`] (its protocol, its
//! signing name and its handler), registered in `rest::services`; see "Adding a service" in
//! `docs/ARCHITECTURE.md`.
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::future::BoxFuture;
use serde::Serialize;

use super::shapes::RestError;

/// Operations that are neither uploads nor invocations: Lambda's limit for control-plane calls.
pub const SMALL_BODY_BYTES: usize = 256 * 1024;

/// A wire protocol of the AWS SDKs (botocore's `metadata.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    RestJson,
    RestXml,
    /// `X-Amz-Target`, `application/x-amz-json-1.0`.
    AwsJson1_0,
    /// `X-Amz-Target`, `application/x-amz-json-1.1`.
    AwsJson1_1,
    /// `Action=...` in a form-encoded body (or the query string), XML answers.
    Query,
}

impl Protocol {
    /// An error response in the shape botocore parses for this protocol: `code` becomes the
    /// `ClientError`'s `Error.Code` (and so its exception class), `message` its message.
    pub fn error(self, status: StatusCode, code: &'static str, message: String) -> Response {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut response = match self {
            Protocol::RestJson => RestError::new(status, code, message).into_response(),
            Protocol::AwsJson1_0 | Protocol::AwsJson1_1 => {
                let body = serde_json::json!({ "__type": code, "message": message });
                let mut r = (status, body.to_string()).into_response();
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(if self == Protocol::AwsJson1_0 {
                        "application/x-amz-json-1.0"
                    } else {
                        "application/x-amz-json-1.1"
                    }),
                );
                r.headers_mut()
                    .insert("x-amzn-ErrorType", HeaderValue::from_static(code));
                r
            }
            Protocol::Query => xml_error(
                status,
                "ErrorResponse",
                &QueryErrorResponse {
                    error: QueryError {
                        kind: if status.is_server_error() {
                            "Receiver"
                        } else {
                            "Sender"
                        },
                        code,
                        message: &message,
                    },
                    request_id: &request_id,
                },
            ),
            Protocol::RestXml => xml_error(
                status,
                "Error",
                &RestXmlError {
                    code,
                    message: &message,
                    request_id: &request_id,
                },
            ),
        };
        // Lambda's errors have carried no request id so far; the others name theirs as AWS does.
        if self != Protocol::RestJson {
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert("x-amzn-RequestId", v);
            }
        }
        response
    }

    /// The code of an operation this service does not have (botocore's model names it so for
    /// the JSON protocols; the query protocol's is `InvalidAction`).
    pub fn unknown_operation_code(self) -> &'static str {
        match self {
            Protocol::Query => "InvalidAction",
            Protocol::RestXml => "NotImplemented",
            _ => "UnknownOperationException",
        }
    }
}

#[derive(Serialize)]
struct QueryErrorResponse<'a> {
    #[serde(rename = "Error")]
    error: QueryError<'a>,
    #[serde(rename = "RequestId")]
    request_id: &'a str,
}

#[derive(Serialize)]
struct QueryError<'a> {
    #[serde(rename = "Type")]
    kind: &'a str,
    #[serde(rename = "Code")]
    code: &'a str,
    #[serde(rename = "Message")]
    message: &'a str,
}

#[derive(Serialize)]
struct RestXmlError<'a> {
    #[serde(rename = "Code")]
    code: &'a str,
    #[serde(rename = "Message")]
    message: &'a str,
    #[serde(rename = "RequestId")]
    request_id: &'a str,
}

fn xml_error<T: Serialize>(status: StatusCode, root: &str, value: &T) -> Response {
    let body = match quick_xml::se::to_string_with_root(root, value) {
        Ok(xml) => xml,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise an xml error");
            return status.into_response();
        }
    };
    let mut r = (status, body).into_response();
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/xml"));
    r
}

/// What an operation of an AWS JSON or query service receives: the headers, the body (JSON for
/// AWS JSON) and, for the query protocol, the form parameters (`Action` included).
pub struct OperationRequest {
    pub headers: HeaderMap,
    /// The request's extensions: the authenticated caller (`lamina_proto::auth::Caller`) and
    /// the peer, for `Shared::authorize`.
    pub extensions: http::Extensions,
    pub body: Bytes,
    pub params: Vec<(String, String)>,
}

/// The operations of an AWS JSON or query service.
pub trait Operations: Send + Sync {
    /// Whether the service has `operation` (others are answered "unknown operation").
    fn serves(&self, operation: &str) -> bool;

    /// The largest body of `operation` (`None`: a query request, whose `Action` is in the body).
    fn body_limit(&self, _operation: Option<&str>) -> usize {
        SMALL_BODY_BYTES
    }

    /// Runs `operation` (one it [`serves`](Operations::serves)).
    fn call(&self, operation: String, request: OperationRequest) -> BoxFuture<'static, Response>;
}

/// The largest body of a rest route, by method and path.
pub type BodyLimit = Arc<dyn Fn(&Method, &str) -> usize + Send + Sync>;

/// How a service's requests reach it.
pub enum Handler {
    /// rest-json and rest-xml: routes by method and path, with each route's body limit.
    Routes {
        router: Router,
        body_limit: BodyLimit,
    },
    /// AWS JSON (by `X-Amz-Target`) and query (by `Action`).
    Operations(Arc<dyn Operations>),
}

/// One AWS-compatible service of the REST front.
pub struct Service {
    /// The SigV4 signing name (the service part of the credential scope): `lambda`, `sqs`, ...
    pub signing_name: &'static str,
    pub protocol: Protocol,
    /// AWS JSON: the `X-Amz-Target` prefix (`AmazonSQS`, `secretsmanager`). rest-json and
    /// rest-xml: the path prefixes that are the service's (empty: the default service, which
    /// gets every request that names no other). Query: unused (the signing name tells).
    pub prefixes: &'static [&'static str],
    pub handler: Handler,
}

/// Where the front sends one request.
pub enum Route<'a> {
    /// A rest-json or rest-xml service: its router takes the request.
    Rest(&'a Service),
    /// An AWS JSON operation (known from `X-Amz-Target`).
    Json {
        service: &'a Service,
        operation: String,
    },
    /// A query service (the `Action` is read from the body).
    Query(&'a Service),
    /// Nothing Lamina serves: answered with `code` in the protocol's error shape.
    Unknown {
        protocol: Protocol,
        code: &'static str,
        message: String,
    },
}

impl Route<'_> {
    /// The protocol the client speaks (the shape of every answer, refusals included).
    pub fn protocol(&self) -> Protocol {
        match self {
            Route::Rest(s) | Route::Json { service: s, .. } | Route::Query(s) => s.protocol,
            Route::Unknown { protocol, .. } => *protocol,
        }
    }

    /// The largest body this request may have.
    pub fn body_limit(&self, method: &Method, path: &str) -> usize {
        match self {
            Route::Rest(Service {
                handler: Handler::Routes { body_limit, .. },
                ..
            }) => body_limit(method, path),
            Route::Json {
                service:
                    Service {
                        handler: Handler::Operations(ops),
                        ..
                    },
                operation,
            } => ops.body_limit(Some(operation)),
            Route::Query(Service {
                handler: Handler::Operations(ops),
                ..
            }) => ops.body_limit(None),
            _ => SMALL_BODY_BYTES,
        }
    }
}

/// The registry: every service of the REST front.
pub struct Services {
    services: Vec<Service>,
}

/// The service name of a SigV4 `Authorization` header's credential scope
/// (`Credential=KEY/DATE/REGION/SERVICE/aws4_request`).
pub fn signing_name(headers: &HeaderMap) -> Option<&str> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth
        .split([' ', ','])
        .find_map(|part| part.trim().strip_prefix("Credential="))?;
    credential.split('/').nth(3)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_form(headers: &HeaderMap) -> bool {
    header(headers, CONTENT_TYPE.as_str())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
}

fn json_protocol(headers: &HeaderMap) -> Protocol {
    match header(headers, CONTENT_TYPE.as_str()) {
        Some(c) if c.starts_with("application/x-amz-json-1.1") => Protocol::AwsJson1_1,
        _ => Protocol::AwsJson1_0,
    }
}

impl Services {
    /// The registry of `services`; requests that name none of them go to the rest service
    /// without path prefixes (Lamina's: Lambda).
    pub fn new(services: Vec<Service>) -> Services {
        Services { services }
    }

    /// Where the request with this head goes.
    pub fn route(&self, method: &Method, uri: &http::Uri, headers: &HeaderMap) -> Route<'_> {
        if let Some(target) = header(headers, "x-amz-target") {
            let protocol = json_protocol(headers);
            let Some((prefix, operation)) = target.rsplit_once('.') else {
                return Route::Unknown {
                    protocol,
                    code: protocol.unknown_operation_code(),
                    message: format!("X-Amz-Target must be PREFIX.OPERATION, got {target:?}"),
                };
            };
            let service = self.services.iter().find(|s| {
                matches!(s.protocol, Protocol::AwsJson1_0 | Protocol::AwsJson1_1)
                    && s.prefixes.contains(&prefix)
            });
            return match service {
                Some(service) => Route::Json {
                    service,
                    operation: operation.to_string(),
                },
                None => Route::Unknown {
                    protocol,
                    code: protocol.unknown_operation_code(),
                    message: format!(
                        "X-Amz-Target {target:?}: Lamina serves no service with the prefix \
                         {prefix:?}"
                    ),
                },
            };
        }
        let query = uri.path() == "/"
            && ((method == Method::POST && is_form(headers))
                || (method == Method::GET
                    && form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                        .any(|(k, _)| k == "Action")));
        if query {
            let name = signing_name(headers);
            let service = self
                .services
                .iter()
                .find(|s| s.protocol == Protocol::Query && Some(s.signing_name) == name);
            return match service {
                Some(service) => Route::Query(service),
                None => Route::Unknown {
                    protocol: Protocol::Query,
                    code: Protocol::Query.unknown_operation_code(),
                    message: format!(
                        "Lamina serves no query-protocol service {:?}",
                        name.unwrap_or("(unsigned)")
                    ),
                },
            };
        }
        let rest = |s: &&Service| matches!(s.handler, Handler::Routes { .. });
        let path = uri.path();
        let by_prefix = self
            .services
            .iter()
            .filter(rest)
            .find(|s| s.prefixes.iter().any(|p| path.starts_with(p)));
        match by_prefix.or_else(|| {
            self.services
                .iter()
                .filter(rest)
                .find(|s| s.prefixes.is_empty())
        }) {
            Some(service) => Route::Rest(service),
            None => Route::Unknown {
                protocol: Protocol::RestJson,
                code: Protocol::RestJson.unknown_operation_code(),
                message: format!("{method} {path} is not an operation Lamina serves"),
            },
        }
    }

    /// Hands a request whose signature and body were checked to its service.
    pub async fn dispatch(route: Route<'_>, parts: http::request::Parts, body: Bytes) -> Response {
        let protocol = route.protocol();
        match route {
            Route::Rest(Service {
                handler: Handler::Routes { router, .. },
                ..
            }) => {
                let request = http::Request::from_parts(parts, Body::from(body));
                match tower_service::Service::call(&mut router.clone(), request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
            Route::Json {
                service:
                    Service {
                        handler: Handler::Operations(ops),
                        signing_name,
                        ..
                    },
                operation,
            } => {
                if !ops.serves(&operation) {
                    return unknown_operation(protocol, signing_name, &operation);
                }
                let request = OperationRequest {
                    headers: parts.headers,
                    extensions: parts.extensions,
                    body,
                    params: Vec::new(),
                };
                ops.call(operation, request).await
            }
            Route::Query(Service {
                handler: Handler::Operations(ops),
                signing_name,
                ..
            }) => {
                let mut params: Vec<(String, String)> =
                    form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                        .into_owned()
                        .collect();
                params.extend(form_urlencoded::parse(&body).into_owned());
                let Some(action) = params
                    .iter()
                    .find(|(k, _)| k == "Action")
                    .map(|(_, v)| v.clone())
                else {
                    return protocol.error(
                        StatusCode::BAD_REQUEST,
                        "MissingAction",
                        "the request has no Action parameter".to_string(),
                    );
                };
                if !ops.serves(&action) {
                    return unknown_operation(protocol, signing_name, &action);
                }
                let request = OperationRequest {
                    headers: parts.headers,
                    extensions: parts.extensions,
                    body,
                    params,
                };
                ops.call(action, request).await
            }
            Route::Unknown { code, message, .. } => {
                protocol.error(StatusCode::BAD_REQUEST, code, message)
            }
            // A service whose handler does not fit its protocol (a registry mistake).
            Route::Rest(s) | Route::Json { service: s, .. } | Route::Query(s) => {
                tracing::error!(
                    service = s.signing_name,
                    "service registered with the wrong handler"
                );
                protocol.error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServiceException",
                    format!("service `{}` is misconfigured", s.signing_name),
                )
            }
        }
    }
}

fn unknown_operation(protocol: Protocol, service: &str, operation: &str) -> Response {
    protocol.error(
        StatusCode::BAD_REQUEST,
        protocol.unknown_operation_code(),
        format!("service `{service}` has no operation {operation:?} in Lamina"),
    )
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
