//! Synchronous invocation (`Functions.Invoke`): validates the request and runs it through the
//! invocation pipeline (`crate::invocation`); EVENT invocations go to the async queue.
use lamina_proto::domain::LATEST;
use lamina_proto::v1;
use lamina_proto::validate;

use super::{ApiError, Shared};
use crate::invocation::{self, log_tail, Call, LOG_TAIL_BYTES};
use crate::queue::Enqueued;

/// How the caller wants the function run (Lambda's `InvocationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InvocationType {
    /// Run it now and answer with its response.
    RequestResponse,
    /// Queue it durably (the async queue) and answer 202.
    Event,
    /// Check that it could run (function, qualifier, payload) and answer 204.
    DryRun,
}

impl InvocationType {
    /// The name the gRPC API gives it.
    pub(crate) fn proto_name(self) -> &'static str {
        match self {
            InvocationType::RequestResponse => "REQUEST_RESPONSE",
            InvocationType::Event => "EVENT",
            InvocationType::DryRun => "DRY_RUN",
        }
    }
}

/// An invocation as the core takes it, whichever transport it came by (gRPC `InvokeRequest`,
/// the REST API's path, headers and body).
#[derive(Debug, Clone)]
pub(crate) struct InvokeInput {
    pub function_name: String,
    /// `$LATEST`, a version or an alias; empty is `$LATEST`.
    pub qualifier: String,
    pub invocation_type: InvocationType,
    pub payload: Vec<u8>,
    /// Answer with the last 4 KB of the invocation's log.
    pub log_tail: bool,
    /// JSON text passed to the runtime as `Lambda-Runtime-Client-Context`.
    pub client_context: String,
    /// EVENT only: a repeat with the same key within the queue's window enqueues nothing.
    pub idempotency_key: String,
}

/// An invocation's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct InvokeOutput {
    /// 200 (ran), 202 (queued) or 204 (dry run).
    pub status_code: u16,
    /// "", `Handled` or `Unhandled`.
    pub function_error: String,
    pub executed_version: String,
    pub payload: Vec<u8>,
    pub log_tail: String,
    pub request_id: String,
    /// The worker that ran it (beyond Lambda).
    pub worker_id: String,
    /// EVENT with an idempotency key seen before: `request_id` is the first one's.
    pub duplicate: bool,
}

impl TryFrom<v1::InvokeRequest> for InvokeInput {
    type Error = ApiError;

    fn try_from(r: v1::InvokeRequest) -> Result<InvokeInput, ApiError> {
        let invocation_type = match v1::InvocationType::try_from(r.invocation_type) {
            Ok(v1::InvocationType::RequestResponse) => InvocationType::RequestResponse,
            Ok(v1::InvocationType::Event) => InvocationType::Event,
            Ok(v1::InvocationType::DryRun) => InvocationType::DryRun,
            Err(_) => {
                return Err(ApiError::BadRequest(format!(
                    "invocation_type must be REQUEST_RESPONSE, EVENT or DRY_RUN, got {}",
                    r.invocation_type
                )))
            }
        };
        Ok(InvokeInput {
            function_name: r.function_name,
            qualifier: r.qualifier,
            invocation_type,
            payload: r.payload,
            log_tail: r.log_type == v1::LogType::Tail as i32,
            client_context: r.client_context,
            idempotency_key: r.idempotency_key,
        })
    }
}

impl From<InvokeOutput> for v1::InvokeResponse {
    fn from(o: InvokeOutput) -> v1::InvokeResponse {
        v1::InvokeResponse {
            status_code: u32::from(o.status_code),
            function_error: o.function_error,
            executed_version: o.executed_version,
            payload: o.payload,
            log_tail: o.log_tail,
            request_id: o.request_id,
            worker_id: o.worker_id,
            duplicate: o.duplicate,
        }
    }
}

/// Runs (or queues, or dry-runs) one invocation.
pub(crate) async fn invoke(shared: &Shared, r: InvokeInput) -> Result<InvokeOutput, ApiError> {
    // The qualifier names $LATEST, a version or an alias (checked for every invocation type).
    let resolved = crate::resolve::resolve(shared, &r.function_name, &r.qualifier).await?;
    validate::sync_payload(r.payload.len())?;
    let request_id = uuid::Uuid::new_v4().to_string();
    match r.invocation_type {
        InvocationType::Event => {
            let enqueued = super::events::enqueue(
                shared,
                r.function_name,
                r.qualifier,
                r.payload,
                r.idempotency_key,
            )
            .await?;
            return Ok(InvokeOutput {
                status_code: 202,
                executed_version: LATEST.to_string(),
                request_id: enqueued.request_id().to_string(),
                duplicate: matches!(enqueued, Enqueued::Duplicate(_)),
                ..Default::default()
            });
        }
        InvocationType::DryRun => {
            return Ok(InvokeOutput {
                status_code: 204,
                executed_version: resolved.executed_version,
                request_id,
                ..Default::default()
            })
        }
        InvocationType::RequestResponse => {}
    }
    let payload = if r.payload.is_empty() {
        b"{}".to_vec()
    } else {
        r.payload
    };
    let executed_version = resolved.executed_version.clone();
    let mut prepared = invocation::prepare(shared, resolved).await?;
    let call = Call {
        request_id: request_id.clone(),
        payload,
        client_context: r.client_context,
    };
    let response = prepared.call(shared, call).await?;
    let tail = if r.log_tail {
        log_tail(&response.logs, LOG_TAIL_BYTES)
    } else {
        String::new()
    };
    Ok(InvokeOutput {
        status_code: 200,
        function_error: response.function_error,
        executed_version,
        payload: response.payload,
        log_tail: tail,
        request_id,
        worker_id: prepared.placement().worker_id.clone(),
        duplicate: false,
    })
}
