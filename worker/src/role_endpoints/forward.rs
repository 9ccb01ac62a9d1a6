//! The AWS API endpoint of a sandbox (`AWS_ENDPOINT_URL=http://127.0.0.1:9002`): each request is
//! forwarded unchanged to the controller's REST API — method, path and query, headers (`Host` and
//! the SigV4 `Authorization` included: the signature the SDK made over them must still verify),
//! body — and the answer streamed back. Only requests signed with the sandbox's own session key
//! go through; the body is read whole first, within [`MAX_BODY_BYTES`] and [`BODY_TIMEOUT`].
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::serve::Body;
use super::{SandboxCredentials, Upstream, BODY_TIMEOUT, MAX_BODY_BYTES};

/// Headers of one hop, not forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

pub struct Forwarder {
    creds: SandboxCredentials,
    upstream: Arc<dyn Upstream>,
}

/// An error answer in the shape botocore reads for JSON and rest-json services
/// (`x-amzn-ErrorType` and `{"__type", "message"}`).
pub(crate) fn error(status: http::StatusCode, kind: &str, message: &str) -> http::Response<Body> {
    let body = serde_json::json!({ "__type": kind, "message": message }).to_string();
    let mut resp = http::Response::new(full(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = http::HeaderValue::from_str(kind) {
        h.insert("x-amzn-errortype", v);
    }
    resp
}

/// A refusal, turned into its answer by [`Refusal::response`].
pub(crate) struct Refusal {
    pub status: http::StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(
        status: http::StatusCode,
        kind: &'static str,
        message: impl Into<String>,
    ) -> Refusal {
        Refusal {
            status,
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn response(self) -> http::Response<Body> {
        error(self.status, self.kind, &self.message)
    }
}

pub(crate) fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// The access key id of a SigV4 `Authorization` header (`… Credential=KEY/DATE/…`).
pub fn signing_key(headers: &http::HeaderMap) -> Option<&str> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?;
    credential.split('/').next()
}

/// Reads a request body within the endpoints' limits.
pub(crate) async fn read_body(headers: &http::HeaderMap, body: Incoming) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        Refusal::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            format!("the sandbox's aws endpoint forwards bodies of at most {MAX_BODY_BYTES} bytes"),
        )
    };
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(Refusal::new(
            http::StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            format!("cannot read the request body: {e}"),
        )),
        Err(_) => Err(Refusal::new(
            http::StatusCode::REQUEST_TIMEOUT,
            "RequestTimeoutException",
            format!("the request body did not arrive within {BODY_TIMEOUT:?}"),
        )),
    }
}

impl Forwarder {
    pub fn new(creds: SandboxCredentials, upstream: Arc<dyn Upstream>) -> Forwarder {
        Forwarder { creds, upstream }
    }

    pub async fn handle(&self, req: http::Request<Incoming>) -> http::Response<Body> {
        if signing_key(req.headers()) != Some(self.creds.access_key_id.as_str()) {
            return error(
                http::StatusCode::FORBIDDEN,
                "AccessDeniedException",
                "the sandbox's aws endpoint forwards only requests signed with the sandbox's own \
                 session credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)",
            );
        }
        let (mut parts, body) = req.into_parts();
        let bytes = match read_body(&parts.headers, body).await {
            Ok(b) => b,
            Err(refusal) => return refusal.response(),
        };
        for h in HOP_BY_HOP {
            parts.headers.remove(*h);
        }
        let out = http::Request::from_parts(parts, Full::new(bytes));
        match self.upstream.send(out).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                for h in HOP_BY_HOP {
                    parts.headers.remove(*h);
                }
                http::Response::from_parts(parts, body.map_err(Into::into).boxed())
            }
            Err(e) => {
                tracing::warn!(error = %e, "role endpoint: the controller cannot be reached");
                error(
                    http::StatusCode::BAD_GATEWAY,
                    "ServiceUnavailableException",
                    &e.to_string(),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_key_is_read_from_the_credential() {
        let mut h = http::HeaderMap::new();
        assert_eq!(signing_key(&h), None);
        h.insert(
            http::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=ASIAXYZ/20240101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=ab"
                .parse()
                .unwrap(),
        );
        assert_eq!(signing_key(&h), Some("ASIAXYZ"));
    }
}
