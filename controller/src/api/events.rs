//! Asynchronous invocation, transport-neutral (the gRPC `Events` service and the REST API call
//! it): accepting events, event invoke configs, invocation records and dead-letter queues. The
//! queue itself is `crate::queue`.
use lamina_proto::domain::{Destination, EventInvokeConfig, DEFAULT_FAILURE_DLQ};
use lamina_proto::v1;
use lamina_proto::validate;

use super::{now_ms, ApiError, Shared};
use crate::queue::{Enqueued, Invocation, NewEvent};

const INVOCATIONS_DEFAULT: usize = 100;
const INVOCATIONS_MAX: usize = 100_000;
const DEAD_LETTERS_DEFAULT: usize = 100;
const DEAD_LETTERS_MAX: usize = 10_000;

/// Invocation type EVENT: the event once it is durable (synced), or the first one's id when the
/// idempotency key was seen before.
pub(super) async fn enqueue(
    shared: &Shared,
    function_name: String,
    qualifier: String,
    payload: Vec<u8>,
    idempotency_key: String,
) -> Result<Enqueued, ApiError> {
    let queue = shared.queue()?;
    validate::async_payload(payload.len(), queue.config().max_payload_bytes)?;
    validate::idempotency_key(&idempotency_key)?;
    let payload = if payload.is_empty() {
        b"{}".to_vec()
    } else {
        payload
    };
    Ok(queue
        .enqueue(NewEvent {
            function_name,
            qualifier,
            payload,
            idempotency_key,
        })
        .await?)
}

pub(crate) fn config_to_proto(name: &str, c: &EventInvokeConfig) -> v1::FunctionEventInvokeConfig {
    v1::FunctionEventInvokeConfig {
        function_name: name.to_string(),
        maximum_retry_attempts: c.max_retry_attempts,
        maximum_event_age_seconds: c.max_event_age_s,
        on_success: c
            .on_success
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_default(),
        on_failure: c
            .on_failure
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_else(|| "none".to_string()),
        last_modified_ms: c.last_modified_ms,
    }
}

async fn require_function(shared: &Shared, name: &str) -> Result<(), ApiError> {
    let owned = name.to_string();
    shared
        .store(move |s| s.get_function(&owned))
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::FunctionNotFound(name.to_string()))
}

/// A Put or UpdateFunctionEventInvokeConfig of function `function_name`: the fields set change
/// the configuration (Put starts from the defaults, Update from the stored one).
#[derive(Debug, Clone, Default)]
pub(crate) struct EventInvokeConfigChange {
    pub function_name: String,
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_seconds: Option<u32>,
    /// A destination (`function:NAME`, `dlq:NAME`) or "" for none.
    pub on_success: Option<String>,
    /// A destination, "none", or "" for Lamina's default dead-letter queue.
    pub on_failure: Option<String>,
}

impl From<v1::PutFunctionEventInvokeConfigRequest> for EventInvokeConfigChange {
    fn from(r: v1::PutFunctionEventInvokeConfigRequest) -> Self {
        EventInvokeConfigChange {
            function_name: r.function_name,
            maximum_retry_attempts: r.maximum_retry_attempts,
            maximum_event_age_seconds: r.maximum_event_age_seconds,
            on_success: r.on_success,
            on_failure: r.on_failure,
        }
    }
}

pub(crate) async fn put_config(
    shared: &Shared,
    r: EventInvokeConfigChange,
) -> Result<EventInvokeConfig, ApiError> {
    require_function(shared, &r.function_name).await?;
    store_config(shared, r, EventInvokeConfig::default()).await
}

/// Lambda's UpdateFunctionEventInvokeConfig: the fields set in `r` change the stored
/// configuration, the others keep their value; a function without one has nothing to update.
pub(crate) async fn update_config(
    shared: &Shared,
    r: EventInvokeConfigChange,
) -> Result<EventInvokeConfig, ApiError> {
    require_function(shared, &r.function_name).await?;
    let owned = r.function_name.clone();
    let base = shared
        .queue_read(move |q| q.get_config(&owned))
        .await?
        .ok_or_else(|| ApiError::EventInvokeConfigNotFound(r.function_name.clone()))?;
    store_config(shared, r, base).await
}

/// Validates the fields set in `r` onto `c` and stores the result.
async fn store_config(
    shared: &Shared,
    r: EventInvokeConfigChange,
    mut c: EventInvokeConfig,
) -> Result<EventInvokeConfig, ApiError> {
    if let Some(n) = r.maximum_retry_attempts {
        validate::max_retry_attempts(n)?;
        c.max_retry_attempts = n;
    }
    if let Some(s) = r.maximum_event_age_seconds {
        validate::max_event_age(s)?;
        c.max_event_age_s = s;
    }
    if let Some(d) = r.on_success {
        c.on_success = validate::destination("on_success", &d)?;
    }
    if let Some(d) = r.on_failure {
        c.on_failure = if d == "none" {
            None
        } else if d.is_empty() {
            Some(Destination::Dlq(DEFAULT_FAILURE_DLQ.to_string()))
        } else {
            validate::destination("on_failure", &d)?
        };
    }
    c.last_modified_ms = now_ms();
    shared.queue()?.put_config(&r.function_name, &c).await?;
    tracing::info!(function = %r.function_name, ?c, "event invoke config stored");
    Ok(c)
}

/// The configuration in effect: the stored one, else the defaults.
pub(crate) async fn get_config(
    shared: &Shared,
    name: String,
) -> Result<EventInvokeConfig, ApiError> {
    Ok(find_config(shared, name).await?.unwrap_or_default())
}

/// The stored configuration (`None`: none was put, the defaults apply).
pub(crate) async fn find_config(
    shared: &Shared,
    name: String,
) -> Result<Option<EventInvokeConfig>, ApiError> {
    require_function(shared, &name).await?;
    shared.queue_read(move |q| q.get_config(&name)).await
}

/// Deletes the stored configuration (the defaults apply again); refused when there is none.
pub(crate) async fn delete_config(shared: &Shared, name: String) -> Result<(), ApiError> {
    if find_config(shared, name.clone()).await?.is_none() {
        return Err(ApiError::EventInvokeConfigNotFound(name));
    }
    shared.queue()?.delete_config(&name).await?;
    tracing::info!(function = %name, "event invoke config deleted");
    Ok(())
}

pub(super) fn invocation_to_proto(i: Invocation) -> v1::Invocation {
    v1::Invocation {
        request_id: i.request_id,
        function_name: i.function_name,
        state: i.state.as_str().to_string(),
        attempts: i.attempts,
        function_errors: i.function_errors,
        throttles: i.throttles,
        enqueued_ms: i.enqueued_ms,
        updated_ms: i.updated_ms,
        finished_ms: i.finished_ms,
        next_attempt_ms: i.due_ms,
        last_error: i.last_error,
        destination: i.destination.map(|d| d.to_string()).unwrap_or_default(),
        idempotency_key: i.idempotency_key,
        condition: i
            .condition
            .map(|c| c.as_str().to_string())
            .unwrap_or_default(),
        payload_size: i.payload_size,
    }
}

pub(super) async fn get_invocation(
    shared: &Shared,
    request_id: String,
) -> Result<v1::Invocation, ApiError> {
    let id = request_id.clone();
    shared
        .queue_read(move |q| q.get(&id))
        .await?
        .map(invocation_to_proto)
        .ok_or(ApiError::InvocationNotFound(request_id))
}

pub(super) async fn list_invocations(
    shared: &Shared,
    r: v1::ListInvocationsRequest,
) -> Result<v1::ListInvocationsResponse, ApiError> {
    validate::name(&r.function_name)?;
    let limit = match r.limit as usize {
        0 => INVOCATIONS_DEFAULT,
        n => n.min(INVOCATIONS_MAX),
    };
    let name = r.function_name;
    let list = shared
        .queue_read(move |q| q.list_invocations(&name, limit))
        .await?;
    Ok(v1::ListInvocationsResponse {
        invocations: list.into_iter().map(invocation_to_proto).collect(),
    })
}

pub(super) fn list_queues(shared: &Shared) -> Result<v1::ListDeadLetterQueuesResponse, ApiError> {
    Ok(v1::ListDeadLetterQueuesResponse {
        queues: shared
            .queue()?
            .dead_letter_queues()
            .into_iter()
            .map(|(name, messages)| v1::DeadLetterQueue { name, messages })
            .collect(),
    })
}

fn require_queue(shared: &Shared, name: &str) -> Result<(), ApiError> {
    validate::queue_name(name)?;
    if shared
        .queue()?
        .dead_letter_queues()
        .iter()
        .any(|(q, _)| q == name)
    {
        Ok(())
    } else {
        Err(ApiError::QueueNotFound(name.to_string()))
    }
}

pub(super) async fn list_dead_letters(
    shared: &Shared,
    r: v1::ListDeadLettersRequest,
) -> Result<v1::ListDeadLettersResponse, ApiError> {
    require_queue(shared, &r.queue)?;
    let limit = match r.limit as usize {
        0 => DEAD_LETTERS_DEFAULT,
        n => n.min(DEAD_LETTERS_MAX),
    };
    let (queue, after) = (r.queue, r.after_seq);
    let letters = shared
        .queue_read(move |q| q.dead_letters(&queue, after, limit))
        .await?;
    Ok(v1::ListDeadLettersResponse {
        messages: letters
            .into_iter()
            .map(|d| v1::DeadLetter {
                seq: d.seq,
                request_id: d.request_id,
                function_name: d.function_name,
                payload: d.payload,
                condition: d.condition,
                error: d.error,
                attempts: d.attempts,
                timestamp_ms: d.timestamp_ms,
                record: d.record.into_bytes(),
            })
            .collect(),
    })
}

pub(super) async fn redrive(
    shared: &Shared,
    r: v1::RedriveDeadLettersRequest,
) -> Result<v1::RedriveDeadLettersResponse, ApiError> {
    require_queue(shared, &r.queue)?;
    let request_ids = shared.queue()?.redrive(&r.queue, &r.seqs).await?;
    tracing::info!(queue = %r.queue, events = request_ids.len(), "dead letters redriven");
    Ok(v1::RedriveDeadLettersResponse { request_ids })
}
