//! Rendering of API objects as JSON, YAML or a table. JSON and YAML use Lambda's field names, in
//! PascalCase for every command (`json_casing` checks every view).
use std::collections::BTreeMap;

use lamina_client::v1;
use serde::Serialize;

use crate::args::Output;

/// A function configuration as Lambda's `GetFunctionConfiguration` shows it.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionView {
    pub function_name: String,
    pub function_arn: String,
    pub runtime: String,
    pub handler: String,
    pub memory_size: u32,
    pub timeout: u32,
    pub ephemeral_storage: EphemeralStorage,
    pub environment: Environment,
    pub description: String,
    pub code_sha256: String,
    pub code_size: u64,
    pub revision_id: String,
    pub version: String,
    pub last_modified: String,
    pub state: String,
    pub last_update_status: String,
    pub package_type: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerView>,
    /// Image functions: the image digest and its configuration after the function's overrides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfigView>,
}

/// A function's VPC attachment (Lambda's `VpcConfig`).
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct VpcConfigView {
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct LayerView {
    pub arn: String,
    pub code_size: u64,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ImageView {
    pub image_digest: String,
    pub entry_point: Vec<String>,
    pub command: Vec<String>,
    pub working_directory: String,
    pub env: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct EphemeralStorage {
    pub size: u32,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Environment {
    pub variables: BTreeMap<String, String>,
}

impl From<&v1::FunctionConfiguration> for FunctionView {
    fn from(f: &v1::FunctionConfiguration) -> Self {
        FunctionView {
            function_name: f.name.clone(),
            function_arn: f.arn.clone(),
            runtime: f.runtime.clone(),
            handler: f.handler.clone(),
            memory_size: f.memory_size_mb,
            timeout: f.timeout_seconds,
            ephemeral_storage: EphemeralStorage {
                size: f.ephemeral_storage_mb,
            },
            environment: Environment {
                variables: f.environment.clone().into_iter().collect(),
            },
            description: f.description.clone(),
            code_sha256: f.code_sha256.clone(),
            code_size: f.code_size,
            revision_id: f.revision_id.clone(),
            version: f.version.clone(),
            last_modified: lambda_timestamp(f.last_modified_ms),
            state: f.state.clone(),
            last_update_status: f.last_update_status.clone(),
            package_type: if f.package_type.is_empty() {
                "Zip".to_string()
            } else {
                f.package_type.clone()
            },
            vpc_config: f
                .vpc_config
                .as_ref()
                .filter(|c| !c.subnet_ids.is_empty())
                .map(|c| VpcConfigView {
                    subnet_ids: c.subnet_ids.clone(),
                    security_group_ids: c.security_group_ids.clone(),
                }),
            layers: f
                .layers
                .iter()
                .map(|l| LayerView {
                    arn: l.arn.clone(),
                    code_size: l.code_size,
                })
                .collect(),
            image: f.image.as_ref().map(|i| ImageView {
                image_digest: i.digest.clone(),
                entry_point: i.entrypoint.clone(),
                command: i.command.clone(),
                working_directory: i.working_directory.clone(),
                env: i.env.clone(),
            }),
        }
    }
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct WorkerView {
    pub worker_id: String,
    pub address: String,
    pub state: String,
    pub memory_total_mb: u64,
    pub memory_free_mb: u64,
    pub sandboxes: u32,
    pub idle_sandboxes: u32,
    pub last_heartbeat_ms_ago: u64,
    pub invocations_total: u64,
}

impl From<&v1::WorkerInfo> for WorkerView {
    fn from(w: &v1::WorkerInfo) -> Self {
        WorkerView {
            worker_id: w.worker_id.clone(),
            address: w.address.clone(),
            state: w.state.clone(),
            memory_total_mb: w.memory_total_mb,
            memory_free_mb: w.memory_free_mb,
            sandboxes: w.sandboxes,
            idle_sandboxes: w.idle_sandboxes,
            last_heartbeat_ms_ago: w.last_heartbeat_ms_ago,
            invocations_total: w.invocations_total,
        }
    }
}

/// `fnctl invoke -o json`: the response with the payload parsed when it is JSON (`aws lambda
/// invoke`'s names: `StatusCode`, `ExecutedVersion`, ...; the log tail is plain text, not base64,
/// hence `LogTail` rather than `LogResult`).
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct InvokeView {
    pub status_code: u32,
    pub function_error: Option<String>,
    pub executed_version: Option<String>,
    pub payload: Option<serde_json::Value>,
    pub log_tail: Option<String>,
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl From<&v1::InvokeResponse> for InvokeView {
    fn from(r: &v1::InvokeResponse) -> Self {
        let payload = if r.payload.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&r.payload).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&r.payload).into_owned())
            }))
        };
        InvokeView {
            status_code: r.status_code,
            function_error: non_empty(&r.function_error),
            executed_version: non_empty(&r.executed_version),
            payload,
            log_tail: non_empty(&r.log_tail),
        }
    }
}

pub use lamina_proto::time::lambda_timestamp;

/// Left-aligned columns separated by three spaces, kubectl style; no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("   ");
            }
            line.push_str(&format!("{cell:<w$}"));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn short_sha(sha: &str) -> String {
    sha.chars().take(12).collect()
}

pub fn functions_table(functions: &[v1::FunctionConfiguration]) -> String {
    let rows: Vec<Vec<String>> = functions
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.runtime.clone(),
                if f.handler.is_empty() {
                    "-".into()
                } else {
                    f.handler.clone()
                },
                format!("{}MB", f.memory_size_mb),
                format!("{}s", f.timeout_seconds),
                short_sha(&f.code_sha256),
                lambda_timestamp(f.last_modified_ms),
                f.state.clone(),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "RUNTIME",
            "HANDLER",
            "MEMORY",
            "TIMEOUT",
            "CODE-SHA",
            "LAST-MODIFIED",
            "STATE",
        ],
        &rows,
    )
}

pub fn workers_table(workers: &[v1::WorkerInfo]) -> String {
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            vec![
                w.worker_id.clone(),
                w.address.clone(),
                w.state.clone(),
                format!("{}/{}MB", w.memory_free_mb, w.memory_total_mb),
                w.sandboxes.to_string(),
                w.idle_sandboxes.to_string(),
                w.invocations_total.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "ADDRESS",
            "STATE",
            "MEM-FREE/TOTAL",
            "SANDBOXES",
            "IDLE",
            "INVOCATIONS",
        ],
        &rows,
    )
}

/// Serializes `value` as pretty JSON or YAML, always ending with a newline.
pub fn serialize<T: Serialize + ?Sized>(value: &T, format: Output) -> anyhow::Result<String> {
    let mut s = match format {
        Output::Yaml => serde_yaml::to_string(value)?,
        Output::Json | Output::Table => serde_json::to_string_pretty(value)?,
    };
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

/// One function in `format`.
pub fn render_function(f: &v1::FunctionConfiguration, format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(functions_table(std::slice::from_ref(f))),
        _ => serialize(&FunctionView::from(f), format),
    }
}

/// A list of functions in `format` (JSON/YAML: an array).
pub fn render_functions(
    fs: &[v1::FunctionConfiguration],
    format: Output,
) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(functions_table(fs)),
        _ => serialize(
            &fs.iter().map(FunctionView::from).collect::<Vec<_>>(),
            format,
        ),
    }
}

/// A list of workers in `format` (JSON/YAML: an array).
pub fn render_workers(ws: &[v1::WorkerInfo], format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(workers_table(ws)),
        _ => serialize(&ws.iter().map(WorkerView::from).collect::<Vec<_>>(), format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> v1::FunctionConfiguration {
        v1::FunctionConfiguration {
            name: "hello".into(),
            arn: "arn:aws:lambda:local:000000000000:function:hello".into(),
            runtime: "python3.11".into(),
            handler: "app.handler".into(),
            memory_size_mb: 256,
            timeout_seconds: 10,
            ephemeral_storage_mb: 512,
            environment: [
                ("B".to_string(), "2".to_string()),
                ("A".to_string(), "x=1".to_string()),
            ]
            .into_iter()
            .collect(),
            description: "says hello".into(),
            code_sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
            code_size: 321,
            revision_id: "rev-1".into(),
            version: "$LATEST".into(),
            last_modified_ms: 1_714_564_800_123,
            state: "Active".into(),
            last_update_status: "Successful".into(),
            ..Default::default()
        }
    }

    #[test]
    fn timestamps_like_lambda() {
        assert_eq!(lambda_timestamp(0), "1970-01-01T00:00:00.000+0000");
        assert_eq!(
            lambda_timestamp(1_714_564_800_123),
            "2024-05-01T12:00:00.123+0000"
        );
        assert_eq!(
            lambda_timestamp(951_782_400_000),
            "2000-02-29T00:00:00.000+0000"
        );
        assert_eq!(
            lambda_timestamp(1_735_689_599_999),
            "2024-12-31T23:59:59.999+0000"
        );
    }

    #[test]
    fn function_as_json_uses_lambda_names() {
        let json = render_function(&sample(), Output::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "FunctionName": "hello",
                "FunctionArn": "arn:aws:lambda:local:000000000000:function:hello",
                "Runtime": "python3.11",
                "Handler": "app.handler",
                "MemorySize": 256,
                "Timeout": 10,
                "EphemeralStorage": {"Size": 512},
                "Environment": {"Variables": {"A": "x=1", "B": "2"}},
                "Description": "says hello",
                "CodeSha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "CodeSize": 321,
                "RevisionId": "rev-1",
                "Version": "$LATEST",
                "LastModified": "2024-05-01T12:00:00.123+0000",
                "State": "Active",
                "LastUpdateStatus": "Successful",
                "PackageType": "Zip",
            })
        );
    }

    #[test]
    fn function_list_as_json_is_an_array() {
        let json = render_functions(&[sample(), sample()], Output::Json).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[1]["FunctionName"], "hello");
        let empty = render_functions(&[], Output::Json).unwrap();
        assert_eq!(empty.trim(), "[]");
    }

    #[test]
    fn function_as_yaml_has_the_same_fields() {
        let yaml = render_function(&sample(), Output::Yaml).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(v["FunctionName"].as_str(), Some("hello"));
        assert_eq!(v["MemorySize"].as_u64(), Some(256));
        assert_eq!(v["Environment"]["Variables"]["A"].as_str(), Some("x=1"));
        assert_eq!(v["Version"].as_str(), Some("$LATEST"));
    }

    #[test]
    fn function_as_table() {
        let t = render_function(&sample(), Output::Table).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAME",
                "RUNTIME",
                "HANDLER",
                "MEMORY",
                "TIMEOUT",
                "CODE-SHA",
                "LAST-MODIFIED",
                "STATE"
            ]
        );
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            row,
            [
                "hello",
                "python3.11",
                "app.handler",
                "256MB",
                "10s",
                "0123456789ab",
                "2024-05-01T12:00:00.123+0000",
                "Active"
            ]
        );
        // columns line up: every row's RUNTIME starts where the header's does
        assert_eq!(lines[0].find("RUNTIME"), lines[1].find("python3.11"));
    }

    #[test]
    fn empty_table_is_just_the_header() {
        let t = render_functions(&[], Output::Table).unwrap();
        assert_eq!(t.lines().count(), 1);
        assert!(t.starts_with("NAME"));
    }

    #[test]
    fn workers_table_and_json() {
        let w = v1::WorkerInfo {
            worker_id: "w1".into(),
            address: "127.0.0.1:9671".into(),
            state: "Up".into(),
            memory_total_mb: 4096,
            memory_free_mb: 3000,
            sandboxes: 2,
            idle_sandboxes: 1,
            last_heartbeat_ms_ago: 120,
            invocations_total: 7,
        };
        let t = render_workers(std::slice::from_ref(&w), Output::Table).unwrap();
        let row: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            row,
            ["w1", "127.0.0.1:9671", "Up", "3000/4096MB", "2", "1", "7"]
        );
        let v: serde_json::Value =
            serde_json::from_str(&render_workers(&[w], Output::Json).unwrap()).unwrap();
        assert_eq!(v[0]["WorkerId"], "w1");
        assert_eq!(v[0]["InvocationsTotal"], 7);
    }

    #[test]
    fn invoke_view_parses_json_payloads_and_nulls_absent_fields() {
        let mut r = v1::InvokeResponse {
            status_code: 200,
            executed_version: "$LATEST".into(),
            payload: br#"{"ok":true}"#.to_vec(),
            ..Default::default()
        };
        let v = serde_json::to_value(InvokeView::from(&r)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"StatusCode": 200, "FunctionError": null,
                "ExecutedVersion": "$LATEST", "Payload": {"ok": true}, "LogTail": null})
        );
        r.payload = b"not json".to_vec();
        r.function_error = "Unhandled".into();
        r.log_tail = "START\n".into();
        let v = serde_json::to_value(InvokeView::from(&r)).unwrap();
        assert_eq!(v["Payload"], "not json");
        assert_eq!(v["FunctionError"], "Unhandled");
        assert_eq!(v["LogTail"], "START\n");
        r.payload.clear();
        assert_eq!(
            serde_json::to_value(InvokeView::from(&r)).unwrap()["Payload"],
            serde_json::Value::Null
        );
    }
}
