//! Synchronous invocation (`Functions.Invoke`): validates the request and runs it through the
//! invocation pipeline (`crate::invocation`); EVENT invocations go to the async queue.
use lamina_proto::v1;
use lamina_proto::validate;

use super::{ApiError, Shared};
use crate::invocation::{self, log_tail, Call, LOG_TAIL_BYTES};

pub(crate) async fn invoke(
    shared: &Shared,
    r: v1::InvokeRequest,
) -> Result<v1::InvokeResponse, ApiError> {
    // The qualifier names $LATEST, a version or an alias (checked for every invocation type).
    let resolved = crate::resolve::resolve(shared, &r.function_name, &r.qualifier).await?;
    validate::sync_payload(r.payload.len())?;
    let invocation_type = v1::InvocationType::try_from(r.invocation_type).map_err(|_| {
        ApiError::BadRequest(format!(
            "invocation_type must be REQUEST_RESPONSE, EVENT or DRY_RUN, got {}",
            r.invocation_type
        ))
    })?;
    let request_id = uuid::Uuid::new_v4().to_string();
    match invocation_type {
        v1::InvocationType::Event => return super::events::enqueue(shared, r).await,
        v1::InvocationType::DryRun => {
            return Ok(v1::InvokeResponse {
                status_code: 204,
                executed_version: resolved.executed_version,
                request_id,
                ..Default::default()
            })
        }
        v1::InvocationType::RequestResponse => {}
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
    let tail = if r.log_type == v1::LogType::Tail as i32 {
        log_tail(&response.logs, LOG_TAIL_BYTES)
    } else {
        String::new()
    };
    Ok(v1::InvokeResponse {
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
