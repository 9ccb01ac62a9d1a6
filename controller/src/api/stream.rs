//! Response streaming (`Functions.InvokeWithResponseStream`, Lambda's InvokeWithResponseStream): the
//! same checks, concurrency permit and placement as a synchronous invocation, then
//! `Worker.InvokeStream`; each chunk the runtime streams is passed to the caller as it arrives, and
//! one `InvokeComplete` ends the stream (error type and body when the function failed, the log tail).
use std::sync::Arc;

use lamina_proto::v1::{self, invoke_with_response_stream_response::Event as OutEvent};
use lamina_proto::validate;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::invoke::{InvocationType, InvokeInput};
use super::{ApiError, Shared};
use crate::invocation::{self, log_tail, Call, ChunkSink, InvocationError, LOG_TAIL_BYTES};
use crate::worker_clients::WorkerError;

/// Events buffered towards the caller before the worker's stream waits.
const OUT_BUFFER: usize = 16;

pub(crate) type InvokeStream = ReceiverStream<Result<v1::InvokeWithResponseStreamResponse, Status>>;

/// A streamed invocation that started: its request id and version (known before the first chunk,
/// for the REST API's response headers) and its events.
pub(crate) struct Started {
    pub request_id: String,
    pub executed_version: String,
    pub events: InvokeStream,
}

/// The caller's side of the stream: each chunk as a `PayloadChunk` event.
struct ToCaller(mpsc::Sender<Result<v1::InvokeWithResponseStreamResponse, Status>>);

#[tonic::async_trait]
impl ChunkSink for ToCaller {
    async fn chunk(&mut self, chunk: Vec<u8>) {
        // A caller that went away: the pipeline reads on, so the log is stored.
        let _ = self
            .0
            .send(Ok(v1::InvokeWithResponseStreamResponse {
                event: Some(OutEvent::PayloadChunk(chunk)),
            }))
            .await;
    }
}

/// Checks, places and starts the invocation; the returned stream carries its chunks and its end.
/// Errors before the function runs (not found, throttled, no worker) are returned here, as for
/// `Invoke`; a worker lost on the way ends the stream with an error status.
pub(crate) async fn invoke_with_response_stream(
    shared: Arc<Shared>,
    r: InvokeInput,
) -> Result<Started, ApiError> {
    let resolved = crate::resolve::resolve(&shared, &r.function_name, &r.qualifier).await?;
    validate::sync_payload(r.payload.len())?;
    if r.invocation_type != InvocationType::RequestResponse {
        return Err(ApiError::BadRequest(format!(
            "invocation_type of a streamed invocation must be REQUEST_RESPONSE, got {}",
            r.invocation_type.proto_name()
        )));
    }
    let executed_version = resolved.executed_version.clone();
    let prepared = invocation::prepare(&shared, resolved).await?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let worker_id = prepared.placement().worker_id.clone();
    let call = Call {
        request_id: request_id.clone(),
        payload: if r.payload.is_empty() {
            b"{}".to_vec()
        } else {
            r.payload
        },
        client_context: r.client_context,
    };
    let streaming = prepared.start_stream(&shared, call).await?;
    let (tx, rx) = mpsc::channel(OUT_BUFFER);
    let tail = r.log_tail;
    let started = Started {
        request_id: request_id.clone(),
        executed_version: executed_version.clone(),
        events: ReceiverStream::new(rx),
    };
    tokio::spawn(async move {
        let mut sink = ToCaller(tx);
        let last = match streaming.run(&shared, &mut sink).await {
            Ok(done) => Ok(complete(
                done,
                request_id,
                executed_version,
                worker_id,
                tail,
            )),
            // A status the worker sent mid-stream ends the caller's stream as it was sent.
            Err(InvocationError::Worker(WorkerError::Status { status, .. })) => Err(*status),
            Err(e) => Err(Status::from(ApiError::from(e))),
        };
        let _ = sink.0.send(last).await;
    });
    Ok(started)
}

/// The `InvokeComplete` event of a finished invocation.
fn complete(
    done: v1::WorkerInvokeResponse,
    request_id: String,
    executed_version: String,
    worker_id: String,
    tail: bool,
) -> v1::InvokeWithResponseStreamResponse {
    let (error_code, error_details) = if done.function_error.is_empty() {
        (String::new(), String::new())
    } else {
        let details = String::from_utf8_lossy(&done.payload).into_owned();
        let code = serde_json::from_slice::<serde_json::Value>(&done.payload)
            .ok()
            .and_then(|v| v.get("errorType")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| done.function_error.clone());
        (code, details)
    };
    v1::InvokeWithResponseStreamResponse {
        event: Some(OutEvent::InvokeComplete(v1::InvokeComplete {
            request_id,
            executed_version,
            function_error: done.function_error,
            error_code,
            error_details,
            log_tail: if tail {
                log_tail(&done.logs, LOG_TAIL_BYTES)
            } else {
                String::new()
            },
            worker_id,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(function_error: &str, payload: &[u8]) -> v1::WorkerInvokeResponse {
        v1::WorkerInvokeResponse {
            function_error: function_error.to_string(),
            payload: payload.to_vec(),
            logs: "START\nline\nEND\n".to_string(),
            ..Default::default()
        }
    }

    fn inner(e: v1::InvokeWithResponseStreamResponse) -> v1::InvokeComplete {
        match e.event {
            Some(OutEvent::InvokeComplete(c)) => c,
            other => panic!("not a completion: {other:?}"),
        }
    }

    #[test]
    fn completion_carries_the_error_type_and_body() {
        let body = br#"{"errorType":"Stream.Broken","errorMessage":"x"}"#;
        let c = inner(complete(
            done("Unhandled", body),
            "r".into(),
            "1".into(),
            "w".into(),
            true,
        ));
        assert_eq!(c.function_error, "Unhandled");
        assert_eq!(c.error_code, "Stream.Broken");
        assert_eq!(c.error_details.as_bytes(), body);
        assert_eq!(c.log_tail, "START\nline\nEND\n");
        assert_eq!(
            (c.request_id.as_str(), c.executed_version.as_str()),
            ("r", "1")
        );
        // Success: no error fields; no tail unless asked.
        let c = inner(complete(
            done("", b""),
            "r".into(),
            "$LATEST".into(),
            "w".into(),
            false,
        ));
        assert_eq!((c.error_code.as_str(), c.error_details.as_str()), ("", ""));
        assert_eq!(c.log_tail, "");
        // An error body that is not JSON: the function error is the code.
        let c = inner(complete(
            done("Unhandled", b"oops"),
            "r".into(),
            "1".into(),
            "w".into(),
            false,
        ));
        assert_eq!(c.error_code, "Unhandled");
    }
}
