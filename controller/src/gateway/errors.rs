//! The gateway's own answers, in the bodies Lambda's function URLs (`{"Message": ...}`) and API
//! Gateway (`{"message": ...}`) give. None of them says which URLs, APIs or routes exist.
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;

use super::MAX_BODY_BYTES;

/// Which kind of endpoint answers (their error bodies differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Url,
    Api,
}

fn json(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn message(door: Door, status: StatusCode, text: &str) -> Response {
    let key = match door {
        Door::Url => "Message",
        Door::Api => "message",
    };
    let mut body = serde_json::Map::new();
    body.insert(key.to_string(), text.into());
    json(status, serde_json::Value::Object(body).to_string())
}

/// An unknown function URL, or a request an `AWS_IAM` URL refuses.
pub fn forbidden() -> Response {
    message(Door::Url, StatusCode::FORBIDDEN, "Forbidden")
}

/// No API or route serves the request.
pub fn not_found() -> Response {
    message(Door::Api, StatusCode::NOT_FOUND, "Not Found")
}

pub fn too_large(door: Door) -> Response {
    match door {
        Door::Url => message(
            door,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "Request must be smaller than {MAX_BODY_BYTES} bytes for the InvokeFunction operation"
            ),
        ),
        Door::Api => message(door, StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    }
}

pub fn throttled(door: Door) -> Response {
    message(door, StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")
}

/// Too many request bodies are being read at once (the gateway's memory budget).
pub fn busy(door: Door) -> Response {
    message(door, StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
}

pub fn timeout(door: Door) -> Response {
    message(door, StatusCode::REQUEST_TIMEOUT, "Request Timeout")
}

pub fn bad_request(door: Door) -> Response {
    message(door, StatusCode::BAD_REQUEST, "Bad Request")
}

/// The function failed, or answered something that is not a response.
pub fn function_error(door: Door) -> Response {
    message(door, StatusCode::BAD_GATEWAY, "Internal Server Error")
}

/// The invocation could not be made (no worker, the function is gone).
pub fn internal(door: Door) -> Response {
    message(
        door,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal Server Error",
    )
}
