//! `POST /2021-11-15/functions/{name}/response-streaming-invocations` (InvokeWithResponseStream, what
//! boto3's `invoke_with_response_stream` sends): the streamed invocation of
//! `api::stream::invoke_with_response_stream`, framed as AWS event-stream messages — a
//! `PayloadChunk` per chunk as it arrives, then one `InvokeComplete` (`ErrorCode`, `ErrorDetails`,
//! `LogResult`).
use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::StreamExt;
use lamina_proto::v1::{self, invoke_with_response_stream_response::Event};
use tonic::Status;

use super::shapes::RestError;
use super::{header, St};
use crate::api::invoke::{self, InvocationType, InvokeInput};
use crate::api::{stream, ApiError};

pub(super) async fn invoke_with_response_stream(
    State(st): St,
    ext: Extensions,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, RestError> {
    let (name, qualifier) = super::invocation_target(&name, &query)?;
    // Lambda authorises InvokeWithResponseStream as lambda:InvokeFunction.
    st.shared
        .authorize_function(&ext, "lambda:InvokeFunction", &name, &qualifier)?;
    let dry_run = match header(&headers, "x-amz-invocation-type").unwrap_or("RequestResponse") {
        "RequestResponse" => false,
        "DryRun" => true,
        other => {
            return Err(RestError::invalid(format!(
                "X-Amz-Invocation-Type of a streamed invocation must be RequestResponse or DryRun, got {other:?}"
            )))
        }
    };
    let tail = super::log_tail_requested(&headers)?;
    let client_context = super::client_context_header(&headers)?;
    if !body.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
        lamina_proto::validate::sync_payload(body.len()).map_err(ApiError::from)?;
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "could not parse the request body into json: send a JSON payload",
        ));
    }
    let mut req = InvokeInput {
        function_name: name,
        qualifier,
        invocation_type: InvocationType::RequestResponse,
        payload: body.to_vec(),
        log_tail: tail,
        client_context,
        idempotency_key: String::new(),
    };
    if dry_run {
        req.invocation_type = InvocationType::DryRun;
        let resp = invoke::invoke(&st.shared, req).await?;
        let mut out = StatusCode::NO_CONTENT.into_response();
        set_headers(out.headers_mut(), &resp.request_id, &resp.executed_version);
        return Ok(out);
    }
    let started = stream::invoke_with_response_stream(st.shared.clone(), req).await?;
    let frames = started
        .events
        .map(|ev| Ok::<Bytes, Infallible>(encode_event(ev)));
    let mut out = Response::new(Body::from_stream(frames));
    let h = out.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    set_headers(h, &started.request_id, &started.executed_version);
    Ok(out)
}

fn set_headers(h: &mut HeaderMap, request_id: &str, executed_version: &str) {
    for (name, value) in [
        ("x-amzn-requestid", request_id),
        ("x-amz-executed-version", executed_version),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    }
}

/// One event of the stream as an event-stream message; a failure after the start (worker lost)
/// becomes an `InvokeComplete` with `ErrorCode` `ServiceException`.
fn encode_event(ev: Result<v1::InvokeWithResponseStreamResponse, Status>) -> Bytes {
    match ev.map(|e| e.event) {
        Ok(Some(Event::PayloadChunk(data))) => {
            event_message("PayloadChunk", "application/octet-stream", &data)
        }
        Ok(Some(Event::InvokeComplete(c))) => {
            let mut v = serde_json::Map::new();
            if !c.error_code.is_empty() {
                v.insert("ErrorCode".into(), c.error_code.into());
            }
            if !c.error_details.is_empty() {
                v.insert("ErrorDetails".into(), c.error_details.into());
            }
            if !c.log_tail.is_empty() {
                let log = base64::engine::general_purpose::STANDARD.encode(c.log_tail);
                v.insert("LogResult".into(), log.into());
            }
            let json = serde_json::Value::Object(v).to_string();
            event_message("InvokeComplete", "application/json", json.as_bytes())
        }
        Ok(None) => Bytes::new(),
        Err(status) => {
            let json = serde_json::json!({
                "ErrorCode": "ServiceException",
                "ErrorDetails": status.message(),
            })
            .to_string();
            event_message("InvokeComplete", "application/json", json.as_bytes())
        }
    }
}

/// An AWS event-stream message: prelude (total length, headers length, CRC32 of both), string
/// headers (`:event-type`, `:content-type`, `:message-type` = `event`), payload, CRC32 of all before.
pub(crate) fn event_message(event_type: &str, content_type: &str, payload: &[u8]) -> Bytes {
    let mut headers = Vec::new();
    for (name, value) in [
        (":event-type", event_type),
        (":content-type", content_type),
        (":message-type", "event"),
    ] {
        headers.push(name.len() as u8);
        headers.extend_from_slice(name.as_bytes());
        headers.push(7); // string
        headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        headers.extend_from_slice(value.as_bytes());
    }
    let total = 12 + headers.len() + payload.len() + 4;
    let mut msg = Vec::with_capacity(total);
    msg.extend_from_slice(&(total as u32).to_be_bytes());
    msg.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&msg);
    msg.extend_from_slice(&prelude_crc.to_be_bytes());
    msg.extend_from_slice(&headers);
    msg.extend_from_slice(payload);
    let crc = crc32fast::hash(&msg);
    msg.extend_from_slice(&crc.to_be_bytes());
    Bytes::from(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_messages_have_aws_framing() {
        let m = event_message("PayloadChunk", "application/octet-stream", b"hello");
        let total = u32::from_be_bytes(m[0..4].try_into().unwrap()) as usize;
        let hlen = u32::from_be_bytes(m[4..8].try_into().unwrap()) as usize;
        assert_eq!(total, m.len());
        assert_eq!(
            u32::from_be_bytes(m[8..12].try_into().unwrap()),
            crc32fast::hash(&m[0..8])
        );
        assert_eq!(&m[12 + hlen..total - 4], b"hello");
        assert_eq!(
            u32::from_be_bytes(m[total - 4..].try_into().unwrap()),
            crc32fast::hash(&m[..total - 4])
        );
        // The first header: `:event-type` = PayloadChunk.
        assert_eq!(m[12] as usize, ":event-type".len());
        assert_eq!(&m[13..24], b":event-type");
        assert_eq!(m[24], 7);
        assert_eq!(u16::from_be_bytes([m[25], m[26]]), 12);
        assert_eq!(&m[27..39], b"PayloadChunk");
    }

    #[test]
    fn completion_carries_error_and_log_fields() {
        let c = v1::InvokeWithResponseStreamResponse {
            event: Some(Event::InvokeComplete(v1::InvokeComplete {
                error_code: "Stream.Failed".into(),
                error_details: "{}".into(),
                log_tail: "log".into(),
                ..Default::default()
            })),
        };
        let m = encode_event(Ok(c));
        let hlen = u32::from_be_bytes(m[4..8].try_into().unwrap()) as usize;
        let v: serde_json::Value = serde_json::from_slice(&m[12 + hlen..m.len() - 4]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ErrorCode": "Stream.Failed", "ErrorDetails": "{}", "LogResult": "bG9n"})
        );
    }
}
