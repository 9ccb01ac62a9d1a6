//! The HTTP/1.1 side of the Runtime API: routing, bodies, Lambda's error JSON.
//!
//! A response or error is routed and its request id claimed ([`Shared::claim`]) before a byte of
//! its body is read; a refused one is answered at once (its body, beyond a small remainder that
//! keeps the connection usable, is never read: hyper then closes the connection).

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;

use super::state::{Claim, NextEvent, Reject, Shared};
use super::{InitFailure, InvocationOutcome, MAX_RESPONSE_BYTES};

const BASE: &str = "/2018-06-01/runtime/";
/// A body over the size limit is read and thrown away (never buffered) up to this many bytes, so
/// that a runtime that sends its whole body before reading the answer (`http.client`, curl) gets
/// the 413 on a still-open connection; past it the connection is closed.
pub(super) const DRAIN_CAP: usize = 16 << 20;
/// The body of a refused request (unknown id, answered twice, no route) is thrown away up to this
/// many bytes, to keep a keep-alive connection usable; a larger one is not read at all.
pub(super) const REFUSED_DRAIN_CAP: usize = 64 << 10;

static REQUEST_ID: HeaderName = HeaderName::from_static("lambda-runtime-aws-request-id");
static DEADLINE_MS: HeaderName = HeaderName::from_static("lambda-runtime-deadline-ms");
static FUNCTION_ARN: HeaderName = HeaderName::from_static("lambda-runtime-invoked-function-arn");
static TRACE_ID: HeaderName = HeaderName::from_static("lambda-runtime-trace-id");
static CLIENT_CONTEXT: HeaderName = HeaderName::from_static("lambda-runtime-client-context");
pub(super) const ERROR_TYPE: &str = "lambda-runtime-function-error-type";
const RESPONSE_MODE: &str = "lambda-runtime-function-response-mode";

pub(super) type Resp = Response<Full<Bytes>>;

pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let (parts, body) = req.into_parts();
    let Some(rest) = parts.uri.path().strip_prefix(BASE) else {
        let resp = not_found(&parts);
        return Ok(refused(&shared, body, resp).await);
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
            _ => refused(&shared, body, not_found(&parts)).await,
        },
        _ => refused(&shared, body, not_found(&parts)).await,
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

/// `resp` for a request whose body is not wanted: a small body is read away (the connection stays
/// usable), a larger one is left unread and the connection closes.
pub(super) async fn refused(shared: &Shared, body: Incoming, resp: Resp) -> Resp {
    let small = body
        .size_hint()
        .upper()
        .is_some_and(|n| n <= REFUSED_DRAIN_CAP as u64);
    if small {
        drain(body, REFUSED_DRAIN_CAP, shared.limits.read_timeout).await;
    }
    resp
}

async fn post_response(shared: &Shared, id: &str, body: Incoming) -> Resp {
    let claim = match shared.claim(id) {
        Ok(c) => c,
        Err(reject) => return refused(shared, body, rejected(id, reject)).await,
    };
    let outcome = match read_body(shared, body).await {
        Ok(body) => InvocationOutcome::Response(body),
        Err(e) => return body_failed(id, claim, e),
    };
    answer(id, claim, outcome)
}

async fn post_error(shared: &Shared, id: &str, parts: &Parts, body: Incoming) -> Resp {
    let header_type = error_type_header(parts);
    let claim = match shared.claim(id) {
        Ok(c) => c,
        Err(reject) => return refused(shared, body, rejected(id, reject)).await,
    };
    let outcome = match read_body(shared, body).await {
        Ok(body) => InvocationOutcome::Error {
            error_type: header_type.unwrap_or_else(|| error_type_of(&body)),
            body,
        },
        Err(e) => return body_failed(id, claim, e),
    };
    answer(id, claim, outcome)
}

/// A response or error body that could not be taken: over the limit answers the invocation
/// (`Function.ResponseSizeTooLarge` for the caller, 413 for the runtime); otherwise the claim is
/// given back and the runtime may post again.
fn body_failed(id: &str, claim: Claim<'_>, e: BodyError) -> Resp {
    match e {
        BodyError::TooLarge(size) => {
            answer(id, claim, InvocationOutcome::ResponseTooLarge { size })
        }
        other => other.into_response(),
    }
}

fn answer(id: &str, claim: Claim<'_>, outcome: InvocationOutcome) -> Resp {
    let too_large = matches!(outcome, InvocationOutcome::ResponseTooLarge { .. });
    match claim.answer(outcome) {
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
    let body = match read_body(shared, body).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
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

pub(super) enum BodyError {
    /// Over [`MAX_RESPONSE_BYTES`]; the size is the declared length or what was read (the rest
    /// was read away, up to [`DRAIN_CAP`]).
    TooLarge(usize),
    /// The sandbox's bodies being read on other connections leave too little of its budget.
    OverBudget {
        budget: usize,
    },
    /// No piece of the body arrived within the read timeout.
    Stalled(Duration),
    Read(hyper::Error),
}

impl BodyError {
    /// The answer to the runtime (the invocation stays unanswered).
    pub(super) fn into_response(self) -> Resp {
        match self {
            BodyError::TooLarge(_) => payload_too_large(),
            BodyError::OverBudget { budget } => error_json(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!(
                    "the runtime api buffers at most {budget} bytes of request bodies per sandbox \
                     at once: wait for the other requests in progress"
                ),
            ),
            BodyError::Stalled(after) => error_json(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                &format!("no part of the request body arrived within {after:?}: send it promptly"),
            ),
            BodyError::Read(e) => bad_body(&e),
        }
    }
}

/// The next frame of `body`, or `Stalled` when none arrives within `timeout`.
pub(super) async fn next_frame(
    body: &mut Incoming,
    timeout: Duration,
) -> Result<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>, BodyError> {
    tokio::time::timeout(timeout, body.frame())
        .await
        .map_err(|_| BodyError::Stalled(timeout))
}

/// Reads a request body (any framing: content-length or chunked) up to [`MAX_RESPONSE_BYTES`],
/// checked as it streams in and within the sandbox's body budget. A declared length is reserved
/// (and allocated) at once; a chunked body takes budget as its pieces arrive.
async fn read_body(shared: &Shared, mut body: Incoming) -> Result<Bytes, BodyError> {
    let timeout = shared.limits.read_timeout;
    let declared = body
        .size_hint()
        .exact()
        .map(|len| usize::try_from(len).unwrap_or(usize::MAX));
    if let Some(len) = declared.filter(|len| *len > MAX_RESPONSE_BYTES) {
        drain(body, DRAIN_CAP, timeout).await;
        return Err(BodyError::TooLarge(len));
    }
    let mut reservation = shared
        .reserve(declared.unwrap_or(0))
        .map_err(|budget| BodyError::OverBudget { budget })?;
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = next_frame(&mut body, timeout).await? {
        let Ok(data) = frame.map_err(BodyError::Read)?.into_data() else {
            continue; // trailers
        };
        total += data.len();
        if total > MAX_RESPONSE_BYTES {
            return Err(BodyError::TooLarge(
                total + drain(body, DRAIN_CAP, timeout).await,
            ));
        }
        if declared.is_none() {
            reservation
                .grow(data.len())
                .map_err(|budget| BodyError::OverBudget { budget })?;
        }
        // One chunk (the common case) is kept as is, without a copy.
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            prev => {
                if let Some(prev) = prev {
                    // Sized once for a declared length (no doubling past what was reserved).
                    buf.reserve(declared.unwrap_or(0).max(prev.len() + data.len()));
                    buf.extend_from_slice(&prev);
                }
                buf.extend_from_slice(&data);
            }
        }
    }
    drop(reservation);
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// Reads and discards the rest of a body, up to about `cap` bytes, each piece within `timeout`;
/// returns the bytes read.
pub(super) async fn drain(mut body: Incoming, cap: usize, timeout: Duration) -> usize {
    let mut n = 0usize;
    while n <= cap {
        match next_frame(&mut body, timeout).await {
            Ok(Some(Ok(frame))) => n += frame.data_ref().map_or(0, Bytes::len),
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
