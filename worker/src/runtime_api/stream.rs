//! Streamed responses: `POST /runtime/invocation/{id}/response` with
//! `Lambda-Runtime-Function-Response-Mode: streaming`. The invocation is answered as soon as the
//! request's headers arrive ([`InvocationOutcome::Streaming`]); each body frame is then passed on as
//! it is read, and the error trailers (`Lambda-Runtime-Function-Error-Type`,
//! `Lambda-Runtime-Function-Error-Body`, base64) end the stream with an error. The runtime gets 202
//! once its body ended (413 past [`MAX_STREAM_BYTES`]).
//!
//! Nothing is buffered here beyond [`STREAM_BUFFER`] pieces of hyper's read buffer, and the
//! pieces are not timed: a stream may pause as long as its function runs (its timeout ends the
//! invocation and the sandbox).

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::http::request::Parts;
use hyper::HeaderMap;
use tokio::sync::mpsc;

use super::http::{
    accepted, bad_body, drain, error_type_header, refused, rejected, stream_too_large, Resp,
    DRAIN_CAP, ERROR_TYPE,
};
use super::state::Shared;
use super::{InvocationOutcome, ResponseStream, StreamEvent, MAX_STREAM_BYTES};

/// Chunks buffered between the runtime and the reader before the runtime's upload waits.
const STREAM_BUFFER: usize = 16;
const ERROR_BODY: &str = "lambda-runtime-function-error-body";

pub(super) async fn post_streaming_response(
    shared: &Shared,
    id: &str,
    parts: &Parts,
    mut body: Incoming,
) -> Resp {
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let stream = ResponseStream::new(content_type, rx);
    if let Err(reject) = shared.answer(id, InvocationOutcome::Streaming(stream)) {
        return refused(shared, body, rejected(id, reject)).await;
    }
    // An error type sent as a plain header (not a trailer) counts too.
    let header_error = error_type_header(parts);
    let mut total = 0usize;
    let mut trailer_error = None;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                send(&tx, StreamEvent::Broken(e.to_string())).await;
                return bad_body(&e);
            }
        };
        match frame.into_data() {
            Ok(data) => {
                total += data.len();
                if total > MAX_STREAM_BYTES {
                    let size = total + drain(body, DRAIN_CAP, shared.limits.read_timeout).await;
                    send(&tx, StreamEvent::TooLarge { size }).await;
                    return stream_too_large();
                }
                if !data.is_empty() {
                    send(&tx, StreamEvent::Chunk(data)).await;
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    trailer_error = error_from_trailers(&trailers);
                }
            }
        }
    }
    let error = trailer_error.or_else(|| {
        header_error.map(|error_type| StreamEvent::Error {
            body: error_body(&error_type, ""),
            error_type,
        })
    });
    if let Some(ev) = error {
        send(&tx, ev).await;
    }
    accepted()
}

/// Passes `ev` on; a reader that went away (the caller abandoned the invocation) is not an error:
/// the runtime's upload is still read to its end.
async fn send(tx: &mpsc::Sender<StreamEvent>, ev: StreamEvent) {
    let _ = tx.send(ev).await;
}

/// The error the trailers carry, if any: the type from `Lambda-Runtime-Function-Error-Type` (else the
/// body's `errorType`), the body base64-decoded from `Lambda-Runtime-Function-Error-Body` (taken as
/// is when it is not base64).
pub(super) fn error_from_trailers(trailers: &HeaderMap) -> Option<StreamEvent> {
    let error_type = trailers
        .get(ERROR_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let raw_body = trailers.get(ERROR_BODY).map(|v| v.as_bytes().to_vec());
    if error_type.is_none() && raw_body.is_none() {
        return None;
    }
    let body = raw_body.map(|raw| {
        let trimmed = raw.trim_ascii();
        base64::engine::general_purpose::STANDARD
            .decode(trimmed)
            .unwrap_or_else(|_| trimmed.to_vec())
    });
    let error_type = error_type
        .or_else(|| body.as_deref().and_then(body_error_type))
        .unwrap_or_else(|| "Unhandled".to_owned());
    let body = match body {
        Some(b) if !b.is_empty() => Bytes::from(b),
        _ => error_body(&error_type, ""),
    };
    Some(StreamEvent::Error { error_type, body })
}

fn body_error_type(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get("errorType")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Lambda's error JSON.
fn error_body(error_type: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string())
}

#[cfg(test)]
mod unit {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn trailers_give_the_error_type_and_decoded_body() {
        let mut t = HeaderMap::new();
        assert_eq!(error_from_trailers(&t), None);
        t.insert(ERROR_TYPE, HeaderValue::from_static("Custom.Broken"));
        let body = br#"{"errorType":"Custom.Broken","errorMessage":"half way"}"#;
        let b64 = base64::engine::general_purpose::STANDARD.encode(body);
        t.insert(ERROR_BODY, HeaderValue::from_str(&b64).unwrap());
        assert_eq!(
            error_from_trailers(&t),
            Some(StreamEvent::Error {
                error_type: "Custom.Broken".into(),
                body: Bytes::from_static(body),
            })
        );
        // Type from the body when the type trailer is missing; a body that is not base64 as is.
        let mut t = HeaderMap::new();
        t.insert(
            ERROR_BODY,
            HeaderValue::from_static(r#"{"errorType":"FromBody"}"#),
        );
        assert_eq!(
            error_from_trailers(&t),
            Some(StreamEvent::Error {
                error_type: "FromBody".into(),
                body: Bytes::from_static(br#"{"errorType":"FromBody"}"#),
            })
        );
        // A type alone gets Lambda's error JSON.
        let mut t = HeaderMap::new();
        t.insert(ERROR_TYPE, HeaderValue::from_static("OnlyType"));
        let Some(StreamEvent::Error { error_type, body }) = error_from_trailers(&t) else {
            panic!("an error")
        };
        assert_eq!(error_type, "OnlyType");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["errorType"], "OnlyType");
    }
}
