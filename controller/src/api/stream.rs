//! Response streaming (`Functions.InvokeWithResponseStream`, Lambda's InvokeWithResponseStream): the
//! same checks, concurrency permit and placement as a synchronous invocation, then
//! `Worker.InvokeStream`; each chunk the runtime streams is passed to the caller as it arrives, and
//! one `InvokeComplete` ends the stream (error type and body when the function failed, the log tail).
use std::sync::Arc;
use std::time::Duration;

use lamina_proto::v1::{
    self, invoke_with_response_stream_response::Event as OutEvent,
    worker_invoke_stream_message::Event as WorkerEvent,
};
use lamina_proto::validate;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use super::invoke::{
    log_tail, new_trace_id, place, store_log, worker_down, COLD_START_HEADROOM, LOG_TAIL_BYTES,
};
use super::{now_ms, ApiError, Shared};

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

/// Checks, places and starts the invocation; the returned stream carries its chunks and its end.
/// Errors before the function runs (not found, throttled, no worker) are returned here, as for
/// `Invoke`; a worker lost on the way ends the stream with an error status.
pub(crate) async fn invoke_with_response_stream(
    shared: Arc<Shared>,
    r: v1::InvokeRequest,
) -> Result<Started, ApiError> {
    let resolved = super::versions::resolve(&shared, &r.function_name, &r.qualifier).await?;
    validate::sync_payload(r.payload.len())?;
    if r.invocation_type != v1::InvocationType::RequestResponse as i32 {
        return Err(ApiError::BadRequest(format!(
            "invocation_type of a streamed invocation must be REQUEST_RESPONSE, got {}",
            r.invocation_type
        )));
    }
    let config = resolved.config;
    let spec = &config.spec;
    let permit = shared.limiter.acquire(&spec.name)?;
    let placement = place(&shared, &config).await?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let worker_id = placement.worker_id.clone();
    let timeout = Duration::from_secs(u64::from(spec.timeout_s));
    let mut client = match shared.workers.client(&worker_id, &placement.address) {
        Ok(c) => c,
        Err(e) => {
            shared.registry.finish(&placement, false);
            return Err(e);
        }
    };
    let mut request = tonic::Request::new(v1::WorkerInvokeRequest {
        request_id: request_id.clone(),
        function: Some((&config).into()),
        payload: if r.payload.is_empty() {
            b"{}".to_vec()
        } else {
            r.payload
        },
        // When this call stops waiting: the worker refuses or stops the work past it.
        deadline_ms: now_ms() + (timeout + COLD_START_HEADROOM).as_millis() as u64,
        client_context: r.client_context,
        trace_id: new_trace_id(),
        invoked_function_arn: resolved.invoked_arn.clone(),
    });
    request.set_timeout(timeout + COLD_START_HEADROOM);
    let address = placement.address.clone();
    let unavailable = move |worker_id: &str, detail: &str| ApiError::WorkerUnavailable {
        worker_id: worker_id.to_string(),
        address: address.clone(),
        detail: detail.to_string(),
    };
    let mut upstream = match client.invoke_stream(request).await {
        Ok(s) => s.into_inner(),
        Err(status) => {
            shared.registry.finish(&placement, false);
            return Err(match status.code() {
                Code::Unavailable | Code::Unknown | Code::Cancelled => {
                    if std::error::Error::source(&status).is_some() {
                        shared
                            .registry
                            .mark_unreachable(&worker_id, status.message());
                    }
                    unavailable(&worker_id, status.message())
                }
                _ => ApiError::Worker {
                    worker_id: worker_id.clone(),
                    status: Box::new(status),
                },
            });
        }
    };
    let (tx, rx) = mpsc::channel(OUT_BUFFER);
    let tail = r.log_type == v1::LogType::Tail as i32;
    let executed_version = resolved.executed_version;
    let started_id = request_id.clone();
    let started_version = executed_version.clone();
    tokio::spawn(async move {
        // Held until the stream is over, like a synchronous invocation's.
        let _permit = permit;
        let check_every = shared
            .heartbeat_interval
            .clamp(Duration::from_millis(100), Duration::from_secs(1));
        let down = worker_down(&shared.registry, &worker_id, check_every);
        tokio::pin!(down);
        let ended: Result<v1::WorkerInvokeResponse, Status> = loop {
            let msg = tokio::select! {
                m = upstream.message() => m,
                () = &mut down => break Err(Status::from(unavailable(
                    &worker_id,
                    "it was lost during the invocation (missed heartbeats or a broken connection)",
                ))),
            };
            match msg {
                Ok(Some(v1::WorkerInvokeStreamMessage {
                    event: Some(WorkerEvent::Chunk(chunk)),
                })) => {
                    // A caller that went away: read on, so the log is stored.
                    let _ = tx
                        .send(Ok(v1::InvokeWithResponseStreamResponse {
                            event: Some(OutEvent::PayloadChunk(chunk)),
                        }))
                        .await;
                }
                Ok(Some(v1::WorkerInvokeStreamMessage {
                    event: Some(WorkerEvent::Done(done)),
                })) => break Ok(done),
                Ok(Some(v1::WorkerInvokeStreamMessage { event: None })) => {}
                Ok(None) => {
                    break Err(Status::from(unavailable(
                        &worker_id,
                        "its stream ended without the end of the invocation",
                    )))
                }
                Err(status) => {
                    if std::error::Error::source(&status).is_some() {
                        shared
                            .registry
                            .mark_unreachable(&worker_id, status.message());
                    }
                    break Err(status);
                }
            }
        };
        shared.registry.finish(&placement, ended.is_ok());
        let last = match ended {
            Ok(done) => {
                store_log(&shared, &config.spec.name, &request_id, &done).await;
                Ok(complete(
                    done,
                    request_id,
                    executed_version,
                    worker_id.clone(),
                    tail,
                ))
            }
            Err(status) => Err(status),
        };
        let _ = tx.send(last).await;
    });
    Ok(Started {
        request_id: started_id,
        executed_version: started_version,
        events: ReceiverStream::new(rx),
    })
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
