//! `fnctl invoke --stream`: the response printed chunk by chunk as the function streams it.
use std::io::{IsTerminal, Write};

use anyhow::{bail, Context};
use lamina_client::{v1, Client, StreamEvent};
use serde::Serialize;

use crate::args::{LogType, Output};
use crate::Outcome;

/// Invokes with the response streamed. Table output writes each chunk to stdout as it arrives (the
/// log tail and a function error go to stderr, exit status 2 on a function error); JSON output
/// prints one JSON object per event, named as Lambda's event stream names them
/// (`{"PayloadChunk": {"Payload": TEXT}}`, then `{"InvokeComplete": {...}}`).
pub async fn invoke_streaming(
    client: &Client,
    req: v1::InvokeRequest,
    log_type: LogType,
    output: Output,
) -> anyhow::Result<Outcome> {
    if output == Output::Yaml {
        bail!("--stream prints events as they arrive: use -o table (the default) or -o json");
    }
    let mut stream = client.invoke_with_response_stream(req).await?;
    let mut out = std::io::stdout().lock();
    let write_err = "cannot write to standard output";
    while let Some(event) = stream.next().await? {
        match event {
            StreamEvent::Chunk(data) => {
                if output == Output::Json {
                    let line = chunk_event(&data);
                    writeln!(out, "{line}").context(write_err)?;
                } else if out.is_terminal() {
                    out.write_all(crate::terminal::escape_bytes(&data).as_bytes())
                        .context(write_err)?;
                } else {
                    out.write_all(&data).context(write_err)?;
                }
                out.flush().context(write_err)?;
            }
            StreamEvent::Complete(done) => {
                if output == Output::Json {
                    let line = complete_event(&done);
                    writeln!(out, "{line}").context(write_err)?;
                    out.flush().context(write_err)?;
                } else {
                    let mut err = std::io::stderr().lock();
                    if log_type == LogType::Tail && !done.log_tail.is_empty() {
                        let tail = crate::terminal::for_output(&done.log_tail, err.is_terminal());
                        let _ = err.write_all(tail.as_bytes());
                        if !tail.ends_with('\n') {
                            let _ = err.write_all(b"\n");
                        }
                    }
                    if !done.function_error.is_empty() {
                        let details =
                            crate::terminal::for_output(&done.error_details, err.is_terminal());
                        let _ = writeln!(err, "function error ({}): {details}", done.error_code);
                    }
                }
                return Ok(if done.function_error.is_empty() {
                    Outcome::Success
                } else {
                    Outcome::FunctionError(done.function_error)
                });
            }
        }
    }
    bail!("the stream ended without the end of the invocation")
}

/// `-o json`: one streamed piece of the response (Lambda's `PayloadChunk` event).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PayloadChunk {
    pub payload: String,
}

/// `-o json`: the end of the invocation (Lambda's `InvokeComplete` event, plus what Lamina adds;
/// the log tail is plain text, hence `LogTail` rather than Lambda's base64 `LogResult`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InvokeComplete<'a> {
    pub request_id: &'a str,
    pub executed_version: &'a str,
    pub function_error: &'a str,
    pub error_code: &'a str,
    pub error_details: &'a str,
    pub log_tail: &'a str,
    pub worker_id: &'a str,
}

pub(crate) fn chunk_event(data: &[u8]) -> serde_json::Value {
    let chunk = PayloadChunk {
        payload: String::from_utf8_lossy(data).into_owned(),
    };
    serde_json::json!({ "PayloadChunk": chunk })
}

pub(crate) fn complete_event(done: &v1::InvokeComplete) -> serde_json::Value {
    let complete = InvokeComplete {
        request_id: &done.request_id,
        executed_version: &done.executed_version,
        function_error: &done.function_error,
        error_code: &done.error_code,
        error_details: &done.error_details,
        log_tail: &done.log_tail,
        worker_id: &done.worker_id,
    };
    serde_json::json!({ "InvokeComplete": complete })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::args::{Cli, Command};

    #[test]
    fn stream_is_a_sync_invoke_flag() {
        let cli = Cli::try_parse_from(["fnctl", "invoke", "f", "--stream"]).unwrap();
        let Command::Invoke(args) = cli.command else {
            panic!("not invoke")
        };
        assert!(args.stream && !args.is_async && !args.dry_run);
        for other in ["--async", "--dry-run"] {
            let err = Cli::try_parse_from(["fnctl", "invoke", "f", "--stream", other]).unwrap_err();
            assert!(err.to_string().contains("cannot be used with"), "{err}");
        }
    }
}
