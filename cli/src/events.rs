//! The asynchronous-invocation commands: `invoke --async`, `event-config`, `invocation(s)`, `dlq`.
use lamina_client::{v1, Client};
use serde::Serialize;

use crate::args::{DlqCommand, EventConfigCommand, EventConfigPutArgs, InvocationCommand, Output};
use crate::output::{lambda_timestamp, serialize, table};

/// `fnctl invoke --async -o json`.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AsyncInvokeView {
    pub status_code: u32,
    pub request_id: String,
    pub duplicate: bool,
}

/// Lambda's `FunctionEventInvokeConfig` names.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct EventConfigView {
    pub function_name: String,
    pub maximum_retry_attempts: u32,
    pub maximum_event_age_in_seconds: u32,
    pub on_success: Option<String>,
    pub on_failure: Option<String>,
    pub last_modified: String,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationView {
    pub request_id: String,
    pub function_name: String,
    pub state: String,
    pub attempts: u32,
    pub function_errors: u32,
    pub throttles: u32,
    pub enqueued: String,
    pub updated: String,
    pub finished: Option<String>,
    pub next_attempt: Option<String>,
    pub last_error: Option<String>,
    pub condition: Option<String>,
    pub destination: Option<String>,
    pub idempotency_key: Option<String>,
    pub payload_size: u32,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct DeadLetterView {
    pub seq: u64,
    pub request_id: String,
    pub function_name: String,
    pub condition: String,
    pub error: String,
    pub attempts: u32,
    pub timestamp: String,
    pub payload: serde_json::Value,
    pub record: serde_json::Value,
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn json_or_string(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(b).into_owned()))
}

impl From<&v1::FunctionEventInvokeConfig> for EventConfigView {
    fn from(c: &v1::FunctionEventInvokeConfig) -> Self {
        EventConfigView {
            function_name: c.function_name.clone(),
            maximum_retry_attempts: c.maximum_retry_attempts,
            maximum_event_age_in_seconds: c.maximum_event_age_seconds,
            on_success: opt(&c.on_success),
            on_failure: opt(&c.on_failure),
            last_modified: if c.last_modified_ms == 0 {
                String::new()
            } else {
                lambda_timestamp(c.last_modified_ms)
            },
        }
    }
}

impl From<&v1::Invocation> for InvocationView {
    fn from(i: &v1::Invocation) -> Self {
        let ts = |ms: u64| (ms != 0).then(|| lambda_timestamp(ms));
        let finished = ts(i.finished_ms);
        InvocationView {
            request_id: i.request_id.clone(),
            function_name: i.function_name.clone(),
            state: i.state.clone(),
            attempts: i.attempts,
            function_errors: i.function_errors,
            throttles: i.throttles,
            enqueued: lambda_timestamp(i.enqueued_ms),
            updated: lambda_timestamp(i.updated_ms),
            next_attempt: if finished.is_some() {
                None
            } else {
                ts(i.next_attempt_ms)
            },
            finished,
            last_error: opt(&i.last_error),
            condition: opt(&i.condition),
            destination: opt(&i.destination),
            idempotency_key: opt(&i.idempotency_key),
            payload_size: i.payload_size,
        }
    }
}

impl From<&v1::DeadLetter> for DeadLetterView {
    fn from(d: &v1::DeadLetter) -> Self {
        DeadLetterView {
            seq: d.seq,
            request_id: d.request_id.clone(),
            function_name: d.function_name.clone(),
            condition: d.condition.clone(),
            error: d.error.clone(),
            attempts: d.attempts,
            timestamp: lambda_timestamp(d.timestamp_ms),
            payload: json_or_string(&d.payload),
            record: json_or_string(&d.record),
        }
    }
}

pub fn render_async_invoke(r: &v1::InvokeResponse, format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(format!("{}\n", r.request_id)),
        _ => serialize(
            &AsyncInvokeView {
                status_code: r.status_code,
                request_id: r.request_id.clone(),
                duplicate: r.duplicate,
            },
            format,
        ),
    }
}

pub fn render_event_config(
    c: &v1::FunctionEventInvokeConfig,
    format: Output,
) -> anyhow::Result<String> {
    let v = EventConfigView::from(c);
    match format {
        Output::Table => Ok(table(
            &[
                "FUNCTION",
                "MAX-RETRIES",
                "MAX-AGE-S",
                "ON-SUCCESS",
                "ON-FAILURE",
            ],
            &[vec![
                v.function_name,
                v.maximum_retry_attempts.to_string(),
                v.maximum_event_age_in_seconds.to_string(),
                v.on_success.unwrap_or_else(|| "-".into()),
                v.on_failure.unwrap_or_else(|| "-".into()),
            ]],
        )),
        _ => serialize(&v, format),
    }
}

pub fn render_invocations(list: &[v1::Invocation], format: Output) -> anyhow::Result<String> {
    let views: Vec<InvocationView> = list.iter().map(Into::into).collect();
    match format {
        Output::Table => Ok(table(
            &[
                "REQUEST-ID",
                "FUNCTION",
                "STATE",
                "ATTEMPTS",
                "ENQUEUED",
                "LAST-ERROR",
            ],
            &views
                .into_iter()
                .map(|v| {
                    vec![
                        v.request_id,
                        v.function_name,
                        v.state,
                        v.attempts.to_string(),
                        v.enqueued,
                        v.last_error.unwrap_or_default(),
                    ]
                })
                .collect::<Vec<_>>(),
        )),
        _ => serialize(&views, format),
    }
}

pub fn render_invocation(i: &v1::Invocation, format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => render_invocations(std::slice::from_ref(i), format),
        _ => serialize(&InvocationView::from(i), format),
    }
}

/// A dead-letter queue and how many messages it holds.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct QueueView<'a> {
    pub name: &'a str,
    pub messages: u64,
}

/// `fnctl dlq redrive -o json`: the request ids of the re-queued events.
pub fn redrive_json(ids: &[String]) -> serde_json::Value {
    serde_json::json!({ "RequestIds": ids })
}

pub fn render_queues(qs: &[v1::DeadLetterQueue], format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(table(
            &["QUEUE", "MESSAGES"],
            &qs.iter()
                .map(|q| vec![q.name.clone(), q.messages.to_string()])
                .collect::<Vec<_>>(),
        )),
        _ => serialize(
            &qs.iter()
                .map(|q| QueueView {
                    name: &q.name,
                    messages: q.messages,
                })
                .collect::<Vec<_>>(),
            format,
        ),
    }
}

pub fn render_dead_letters(ds: &[v1::DeadLetter], format: Output) -> anyhow::Result<String> {
    let views: Vec<DeadLetterView> = ds.iter().map(Into::into).collect();
    match format {
        Output::Table => Ok(table(
            &[
                "SEQ",
                "REQUEST-ID",
                "FUNCTION",
                "CONDITION",
                "ATTEMPTS",
                "ERROR",
            ],
            &views
                .into_iter()
                .map(|v| {
                    vec![
                        v.seq.to_string(),
                        v.request_id,
                        v.function_name,
                        v.condition,
                        v.attempts.to_string(),
                        v.error,
                    ]
                })
                .collect::<Vec<_>>(),
        )),
        _ => serialize(&views, format),
    }
}

pub fn put_request(a: EventConfigPutArgs) -> v1::PutFunctionEventInvokeConfigRequest {
    v1::PutFunctionEventInvokeConfigRequest {
        function_name: a.name,
        maximum_retry_attempts: a.max_retries,
        maximum_event_age_seconds: a.max_age,
        on_success: a.on_success,
        on_failure: a.on_failure,
    }
}

pub async fn event_config(
    client: &Client,
    cmd: EventConfigCommand,
    output: Output,
) -> anyhow::Result<String> {
    let c = match cmd {
        EventConfigCommand::Put(a) => client.put_event_invoke_config(put_request(a)).await?,
        EventConfigCommand::Get { name } => client.get_event_invoke_config(&name).await?,
    };
    render_event_config(&c, output)
}

pub async fn invocation(
    client: &Client,
    cmd: InvocationCommand,
    output: Output,
) -> anyhow::Result<String> {
    match cmd {
        InvocationCommand::Get { request_id } => {
            render_invocation(&client.get_invocation(&request_id).await?, output)
        }
    }
}

pub async fn dlq(client: &Client, cmd: DlqCommand, output: Output) -> anyhow::Result<String> {
    match cmd {
        DlqCommand::List => render_queues(&client.list_dead_letter_queues().await?, output),
        DlqCommand::Show {
            queue,
            after_seq,
            limit,
        } => render_dead_letters(
            &client.list_dead_letters(&queue, after_seq, limit).await?,
            output,
        ),
        DlqCommand::Redrive { queue, seqs } => {
            let ids = client.redrive_dead_letters(&queue, seqs).await?;
            match output {
                Output::Table => Ok(ids.iter().map(|i| format!("{i}\n")).collect()),
                _ => serialize(&redrive_json(&ids), output),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocation_view_and_table() {
        let i = v1::Invocation {
            request_id: "r1".into(),
            function_name: "f".into(),
            state: "DeadLettered".into(),
            attempts: 3,
            enqueued_ms: 1_714_564_800_000,
            updated_ms: 1_714_564_800_000,
            finished_ms: 1_714_564_801_000,
            next_attempt_ms: 5,
            last_error: "Unhandled: ValueError: boom".into(),
            condition: "RetriesExhausted".into(),
            destination: "dlq:default".into(),
            ..Default::default()
        };
        let v = InvocationView::from(&i);
        assert_eq!(v.next_attempt, None, "finished: no next attempt");
        assert_eq!(v.enqueued, "2024-05-01T12:00:00.000+0000");
        let json = render_invocation(&i, Output::Json).unwrap();
        let j: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(j["State"], "DeadLettered");
        assert_eq!(j["Destination"], "dlq:default");
        let t = render_invocation(&i, Output::Table).unwrap();
        assert!(t.starts_with("REQUEST-ID"), "{t}");
        assert!(t.contains("DeadLettered") && t.contains("boom"), "{t}");
    }

    #[test]
    fn async_invoke_prints_the_request_id() {
        let r = v1::InvokeResponse {
            status_code: 202,
            request_id: "abc".into(),
            ..Default::default()
        };
        assert_eq!(render_async_invoke(&r, Output::Table).unwrap(), "abc\n");
        let j: serde_json::Value =
            serde_json::from_str(&render_async_invoke(&r, Output::Json).unwrap()).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"StatusCode":202,"RequestId":"abc","Duplicate":false})
        );
    }

    #[test]
    fn dead_letters_parse_json_payloads() {
        let d = v1::DeadLetter {
            seq: 1,
            payload: br#"{"k":1}"#.to_vec(),
            record: br#"{"version":"1.0"}"#.to_vec(),
            ..Default::default()
        };
        let j: serde_json::Value =
            serde_json::from_str(&render_dead_letters(&[d], Output::Json).unwrap()).unwrap();
        assert_eq!(j[0]["Payload"]["k"], 1);
        assert_eq!(j[0]["Record"]["version"], "1.0");
    }
}
