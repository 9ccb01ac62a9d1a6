//! The HTTP/1.1 side of the Runtime API: accept loop, routing, bodies, Lambda's error JSON.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::state::{NextEvent, Reject, Shared};
use super::{InitFailure, InvocationOutcome, MAX_RESPONSE_BYTES};

const BASE: &str = "/2018-06-01/runtime/";
/// An oversized body is read and thrown away up to this many bytes, so that the runtime can read the
/// 413 on a still-open connection; past it the connection is closed.
const DRAIN_CAP: usize = 64 << 20;

static REQUEST_ID: HeaderName = HeaderName::from_static("lambda-runtime-aws-request-id");
static DEADLINE_MS: HeaderName = HeaderName::from_static("lambda-runtime-deadline-ms");
static FUNCTION_ARN: HeaderName = HeaderName::from_static("lambda-runtime-invoked-function-arn");
static TRACE_ID: HeaderName = HeaderName::from_static("lambda-runtime-trace-id");
static CLIENT_CONTEXT: HeaderName = HeaderName::from_static("lambda-runtime-client-context");
pub(super) const ERROR_TYPE: &str = "lambda-runtime-function-error-type";
const RESPONSE_MODE: &str = "lambda-runtime-function-response-mode";

pub(super) type Resp = Response<Full<Bytes>>;

pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "runtime api: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "runtime api: cannot set TCP_NODELAY");
        }
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), req));
            let conn = http1::Builder::new()
                .keep_alive(true)
                .title_case_headers(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(error = %e, "runtime api: connection ended with an error");
                },
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let (parts, body) = req.into_parts();
    let Some(rest) = parts.uri.path().strip_prefix(BASE) else {
        return Ok(not_found(&parts));
    };
    let resp = match (&parts.method, rest) {
        (&Method::GET, "invocation/next") => next(&shared).await,
        (&Method::POST, "init/error") => init_error(&shared, &parts, body).await,
        (&Method::POST, _) => match rest
            .strip_prefix("invocation/")
            .and_then(|r| r.rsplit_once('/'))
        {
            Some((id, "response")) if valid_id(id) => {
                if is_streaming(&parts) {
                    super::stream::post_streaming_response(&shared, id, &parts, body).await
                } else {
                    post_response(&shared, id, body).await
                }
            }
            Some((id, "error")) if valid_id(id) => post_error(&shared, id, &parts, body).await,
            _ => not_found(&parts),
        },
        _ => not_found(&parts),
    };
    Ok(resp)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && !id.contains('/')
}

/// `Lambda-Runtime-Function-Response-Mode: streaming` (any case).
fn is_streaming(parts: &Parts) -> bool {
    parts
        .headers
        .get(RESPONSE_MODE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("streaming"))
}

async fn next(shared: &Shared) -> Resp {
    shared.mark_init_done();
    loop {
        let ready = shared.next_ready.notified();
        tokio::pin!(ready);
        ready.as_mut().enable();
        if let Some(ev) = shared.take_next() {
            return next_response(ev);
        }
        ready.await;
    }
}

fn next_response(ev: NextEvent) -> Resp {
    let mut resp = Response::new(Full::new(ev.payload));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(REQUEST_ID.clone(), ev.request_id);
    h.insert(DEADLINE_MS.clone(), HeaderValue::from(ev.deadline_ms));
    h.insert(FUNCTION_ARN.clone(), ev.function_arn);
    h.insert(TRACE_ID.clone(), ev.trace_id);
    if let Some(cc) = ev.client_context {
        h.insert(CLIENT_CONTEXT.clone(), cc);
    }
    resp
}

async fn post_response(shared: &Shared, id: &str, body: Incoming) -> Resp {
    let outcome = match read_body(body).await {
        Ok(body) => InvocationOutcome::Response(body),
        Err(BodyError::TooLarge(size)) => InvocationOutcome::ResponseTooLarge { size },
        Err(BodyError::Read(e)) => return bad_body(&e),
    };
    answer(shared, id, outcome)
}

async fn post_error(shared: &Shared, id: &str, parts: &Parts, body: Incoming) -> Resp {
    let header_type = error_type_header(parts);
    let outcome = match read_body(body).await {
        Ok(body) => InvocationOutcome::Error {
            error_type: header_type.unwrap_or_else(|| error_type_of(&body)),
            body,
        },
        Err(BodyError::TooLarge(size)) => InvocationOutcome::ResponseTooLarge { size },
        Err(BodyError::Read(e)) => return bad_body(&e),
    };
    answer(shared, id, outcome)
}

fn answer(shared: &Shared, id: &str, outcome: InvocationOutcome) -> Resp {
    let too_large = matches!(outcome, InvocationOutcome::ResponseTooLarge { .. });
    match shared.answer(id, outcome) {
        Ok(()) if too_large => payload_too_large(),
        Ok(()) => accepted(),
        Err(reject) => rejected(id, reject),
    }
}

/// The answer to a response or error the state machine refused.
pub(super) fn rejected(id: &str, reject: Reject) -> Resp {
    match reject {
        Reject::UnknownId => error_json(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            &format!("invalid request id `{id}`: no such invocation is in progress"),
        ),
        Reject::InvalidState => error_json(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            &format!(
                "invocation `{id}` cannot be answered now: it was not fetched with next or was already answered"
            ),
        ),
    }
}

async fn init_error(shared: &Shared, parts: &Parts, body: Incoming) -> Resp {
    let header_type = error_type_header(parts);
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(BodyError::TooLarge(_)) => return payload_too_large(),
        Err(BodyError::Read(e)) => return bad_body(&e),
    };
    let error_type = header_type.unwrap_or_else(|| error_type_of(&body));
    shared.init_failed(InitFailure { error_type, body });
    accepted()
}

pub(super) fn error_type_header(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(ERROR_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The `errorType` of an error body, else `Unhandled`.
fn error_type_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody<'a> {
        #[serde(rename = "errorType", borrow)]
        error_type: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<ErrorBody<'_>>(body)
        .ok()
        .and_then(|b| b.error_type)
        .filter(|t| !t.is_empty())
        .map_or_else(|| "Unhandled".to_owned(), Cow::into_owned)
}

enum BodyError {
    /// Over [`MAX_RESPONSE_BYTES`]; the size is the declared length or what was read.
    TooLarge(usize),
    Read(hyper::Error),
}

/// Reads a request body (any framing: content-length or chunked) up to [`MAX_RESPONSE_BYTES`].
async fn read_body(mut body: Incoming) -> Result<Bytes, BodyError> {
    if let Some(len) = body.size_hint().exact() {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_RESPONSE_BYTES {
            drain(body).await;
            return Err(BodyError::TooLarge(len));
        }
    }
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
            continue; // trailers
        };
        total += data.len();
        if total > MAX_RESPONSE_BYTES {
            return Err(BodyError::TooLarge(total + drain(body).await));
        }
        // One chunk (the common case) is kept as is, without a copy.
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            prev => {
                if let Some(prev) = prev {
                    buf.reserve(prev.len() + data.len());
                    buf.extend_from_slice(&prev);
                }
                buf.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// Reads and discards the rest of a body, up to [`DRAIN_CAP`]; returns the bytes read.
pub(super) async fn drain(mut body: Incoming) -> usize {
    let mut n = 0usize;
    while n <= DRAIN_CAP {
        match body.frame().await {
            Some(Ok(frame)) => n += frame.data_ref().map_or(0, Bytes::len),
            _ => break,
        }
    }
    n
}

fn json(status: StatusCode, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub(super) fn accepted() -> Resp {
    json(
        StatusCode::ACCEPTED,
        Bytes::from_static(br#"{"status":"OK"}"#),
    )
}

fn payload_too_large() -> Resp {
    json(
        StatusCode::PAYLOAD_TOO_LARGE,
        Bytes::from_static(
            br#"{"errorMessage":"Exceeded maximum allowed payload size (6291556 bytes).","errorType":"RequestEntityTooLarge"}"#,
        ),
    )
}

/// 413 for a streamed response over [`super::MAX_STREAM_BYTES`].
pub(super) fn stream_too_large() -> Resp {
    json(
        StatusCode::PAYLOAD_TOO_LARGE,
        Bytes::from_static(
            br#"{"errorMessage":"Exceeded maximum allowed streamed payload size (20971520 bytes).","errorType":"RequestEntityTooLarge"}"#,
        ),
    )
}

fn error_json(status: StatusCode, error_type: &str, message: &str) -> Resp {
    let body = serde_json::json!({ "errorMessage": message, "errorType": error_type });
    json(status, Bytes::from(body.to_string()))
}

pub(super) fn bad_body(e: &hyper::Error) -> Resp {
    error_json(
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
        &format!("cannot read the request body: {e}"),
    )
}

fn not_found(req: &Parts) -> Resp {
    error_json(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!(
            "no runtime api route for {} {}: use /2018-06-01/runtime/invocation/next, \
             /2018-06-01/runtime/invocation/{{id}}/response or /error, /2018-06-01/runtime/init/error",
            req.method,
            req.uri.path()
        ),
    )
}
