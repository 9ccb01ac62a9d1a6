//! The official AWS runtime interface clients run unchanged as `provided` functions: `awslambdaric`
//! (PyPI), `aws-lambda-ric@3.3.0` (npm) and the `lambda_runtime` crate. Each is checked through what
//! its own context object reports: request id, remaining time (fresh and near the deadline), invoked
//! function ARN (custom function name, and through an alias), client context, function name, version
//! and memory; handled errors with stack traces, unhandled errors, init errors.
//!
//! The clients come from their registries through `tests/clients/install.sh` (deploy/test.sh runs it).
use std::collections::HashMap;

use lamina_e2e::clients::{node_client_zip, python_client_zip, rust_client_zip};
use lamina_e2e::*;

/// Lambda's mobile-SDK client context shape (what all three clients parse).
const CLIENT_CONTEXT: &str = r#"{"client":{"installation_id":"inst-42","app_title":"lamina-tests","app_version_name":"1.0","app_version_code":"1","app_package_name":"dev.lamina"},"custom":{"team":"runtime"},"env":{"platform":"linux"}}"#;

const TIMEOUT_S: u32 = 6;

const PYTHON_APP: &str = r#"
import os, time
if os.environ.get("LAMINA_TEST_INIT_FAIL") == "1":
    raise RuntimeError("python init failed on purpose")

def handler(event, context):
    mode = event.get("mode", "ok")
    if mode == "error":
        raise ValueError("python says no")
    if mode == "exit":
        os._exit(7)
    if mode == "sleep":
        time.sleep(event["ms"] / 1000.0)
    print("python handler ran", context.aws_request_id)
    cc = context.client_context
    return {
        "client": "awslambdaric",
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "invoked_function_arn": context.invoked_function_arn,
        "client_context": None if cc is None else {
            "installation_id": cc.client.installation_id, "custom": cc.custom, "env": cc.env},
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_mb": int(context.memory_limit_in_mb),
        "event": event,
    }
"#;

const NODE_INDEX: &str = r#"
if (process.env.LAMINA_TEST_INIT_FAIL === "1") {
  throw new Error("node init failed on purpose");
}
exports.handler = async (event, context) => {
  const mode = event.mode || "ok";
  if (mode === "error") throw new TypeError("node says no");
  if (mode === "exit") {
    setTimeout(() => { throw new Error("node uncaught on purpose"); }, 0);
    await new Promise((r) => setTimeout(r, 5000));
  }
  if (mode === "sleep") await new Promise((r) => setTimeout(r, event.ms));
  console.log("node handler ran", context.awsRequestId);
  const cc = context.clientContext;
  return {
    client: "aws-lambda-ric",
    request_id: context.awsRequestId,
    remaining_ms: context.getRemainingTimeInMillis(),
    invoked_function_arn: context.invokedFunctionArn,
    client_context: cc ? { installation_id: cc.client.installation_id, custom: cc.custom, env: cc.env } : null,
    function_name: context.functionName,
    function_version: context.functionVersion,
    memory_mb: Number(context.memoryLimitInMB),
    event,
  };
};
"#;

#[derive(Clone, Copy, Debug)]
enum Ric {
    Python,
    Node,
    Rust,
}

impl Ric {
    fn zip(self) -> anyhow::Result<Vec<u8>> {
        match self {
            Ric::Python => python_client_zip(PYTHON_APP),
            Ric::Node => node_client_zip(NODE_INDEX),
            Ric::Rust => rust_client_zip(),
        }
    }
    fn client_name(self) -> &'static str {
        match self {
            Ric::Python => "awslambdaric",
            Ric::Node => "aws-lambda-ric",
            Ric::Rust => "lambda_runtime",
        }
    }
    fn handler(self) -> &'static str {
        match self {
            Ric::Python => "app.handler",
            Ric::Node => "index.handler",
            // The binary is the handler; `_HANDLER` is still set.
            Ric::Rust => "bootstrap",
        }
    }
    /// The error type the client reports for `{"mode":"error"}`.
    fn handled_error_type(self) -> &'static str {
        match self {
            Ric::Python => "ValueError",
            Ric::Node => "TypeError",
            Ric::Rust => "CustomerError",
        }
    }
    /// The client's key of the client context's `env` map (`lambda_runtime` calls it `environment`
    /// and does not read `env`).
    fn reports_env(self) -> bool {
        !matches!(self, Ric::Rust)
    }
}

async fn invoke_with(
    c: &Client,
    name: &str,
    qualifier: &str,
    payload: &str,
    client_context: &str,
) -> anyhow::Result<v1::InvokeResponse> {
    Ok(c.invoke(v1::InvokeRequest {
        function_name: name.to_string(),
        qualifier: qualifier.to_string(),
        payload: payload.as_bytes().to_vec(),
        log_type: v1::LogType::Tail as i32,
        client_context: client_context.to_string(),
        ..Default::default()
    })
    .await?)
}

fn ok_json(cluster: &Cluster, resp: &v1::InvokeResponse) -> serde_json::Value {
    assert_eq!(
        resp.function_error,
        "",
        "{}\n{}\n{}",
        String::from_utf8_lossy(&resp.payload),
        resp.log_tail,
        cluster.logs()
    );
    json(resp)
}

fn check_client(ric: Ric) {
    run(async move {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        // A custom name: the ARN the client sees must carry it.
        let name = unique(&format!("ric-{ric:?}").to_lowercase());
        let mut s = spec(&name, "provided", ric.handler());
        s.timeout_seconds = TIMEOUT_S;
        s.memory_size_mb = 256;
        let cfg = c.create_function(s, ric.zip()?).await?;

        // What the client's context says, on a cold start.
        let resp = invoke_with(&c, &name, "", r#"{"mode":"ok","n":1}"#, CLIENT_CONTEXT).await?;
        let v = ok_json(&cluster, &resp);
        assert_eq!(v["client"], ric.client_name(), "{v}");
        assert_eq!(v["request_id"], resp.request_id.as_str(), "{v}");
        assert_eq!(v["invoked_function_arn"], cfg.arn.as_str(), "{v}");
        assert!(
            cfg.arn.ends_with(&format!(":function:{name}")),
            "{}",
            cfg.arn
        );
        assert_eq!(v["function_name"], name.as_str(), "{v}");
        assert_eq!(v["function_version"], "$LATEST", "{v}");
        assert_eq!(v["memory_mb"], 256, "{v}");
        assert_eq!(v["event"]["n"], 1, "{v}");
        assert_eq!(v["client_context"]["installation_id"], "inst-42", "{v}");
        assert_eq!(v["client_context"]["custom"]["team"], "runtime", "{v}");
        if ric.reports_env() {
            assert_eq!(v["client_context"]["env"]["platform"], "linux", "{v}");
        }
        // The clock starts when the event is handed out (after init): almost all of it is left.
        let remaining = v["remaining_ms"].as_i64().expect("remaining_ms");
        let full = i64::from(TIMEOUT_S) * 1000;
        assert!(remaining > full - 3000 && remaining <= full, "{v}");
        assert!(
            resp.log_tail
                .contains(&format!("START RequestId: {}", resp.request_id))
                && resp.log_tail.contains("REPORT RequestId:"),
            "{}",
            resp.log_tail
        );

        // A second invocation in a row: warm, a new request id, no client context.
        let resp2 = invoke_with(&c, &name, "", r#"{"mode":"ok","n":2}"#, "").await?;
        let v2 = ok_json(&cluster, &resp2);
        assert_eq!(v2["request_id"], resp2.request_id.as_str());
        assert_ne!(resp2.request_id, resp.request_id);
        assert_eq!(v2["event"]["n"], 2);
        assert!(
            v2["client_context"].is_null()
                || v2["client_context"]["custom"].is_null()
                || v2["client_context"]["custom"] == serde_json::json!({}),
            "{v2}"
        );
        assert!(
            !resp2.log_tail.contains("Init Duration"),
            "warm: {}",
            resp2.log_tail
        );

        // Near the deadline: after sleeping 4 s of 6 s, at most 2 s is left, and some is.
        let resp3 = invoke_with(&c, &name, "", r#"{"mode":"sleep","ms":4000}"#, "").await?;
        let v3 = ok_json(&cluster, &resp3);
        let remaining = v3["remaining_ms"].as_i64().expect("remaining_ms");
        assert!(remaining > 0 && remaining <= full - 4000, "{v3}");

        // A handled error: the client posts /error with its type, message and stack trace.
        let err = invoke_with(&c, &name, "", r#"{"mode":"error"}"#, "").await?;
        assert_eq!(err.function_error, "Unhandled", "{err:?}");
        let e = json(&err);
        assert_eq!(e["errorType"], ric.handled_error_type(), "{e}");
        let msg = e["errorMessage"].as_str().unwrap_or_default();
        assert!(msg.contains("says no"), "{e}");
        match ric {
            Ric::Python | Ric::Node => {
                // As in Lambda: Python's key is `stackTrace`, Node's `trace`.
                let key = if matches!(ric, Ric::Python) {
                    "stackTrace"
                } else {
                    "trace"
                };
                let trace = e[key]
                    .as_array()
                    .unwrap_or_else(|| panic!("{key} array: {e}"));
                assert!(!trace.is_empty(), "{e}");
                let file = if matches!(ric, Ric::Python) {
                    "app.py"
                } else {
                    "index.js"
                };
                assert!(
                    trace
                        .iter()
                        .any(|l| l.as_str().unwrap_or("").contains(file)),
                    "{e}"
                );
            }
            // lambda_runtime's Diagnostic has no stack trace.
            Ric::Rust => {}
        }
        // The sandbox survived a handled error.
        let again = invoke_with(&c, &name, "", r#"{"mode":"ok","n":3}"#, "").await?;
        assert_eq!(ok_json(&cluster, &again)["event"]["n"], 3);
        assert!(
            !again.log_tail.contains("Init Duration"),
            "{}",
            again.log_tail
        );

        // An unhandled error: the runtime dies (Python: os._exit; Node: an uncaught exception;
        // Rust: a panic, which lambda_runtime turns into an error for this invocation).
        let payload = if matches!(ric, Ric::Rust) {
            r#"{"mode":"panic"}"#
        } else {
            r#"{"mode":"exit"}"#
        };
        let crash = invoke_with(&c, &name, "", payload, "").await?;
        assert_eq!(crash.function_error, "Unhandled", "{crash:?}");
        let e = json(&crash);
        match ric {
            Ric::Python => {
                assert_eq!(e["errorType"], "Runtime.ExitError", "{e}");
                assert!(
                    e["errorMessage"]
                        .as_str()
                        .unwrap()
                        .contains("exit status 7"),
                    "{e}"
                );
            }
            Ric::Node => {
                let ty = e["errorType"].as_str().unwrap_or_default();
                assert!(ty == "Error" || ty.starts_with("Runtime."), "{e}");
                let text = format!("{e}{}", crash.log_tail);
                assert!(
                    text.contains("node uncaught on purpose"),
                    "{e}\n{}",
                    crash.log_tail
                );
            }
            Ric::Rust => {
                let text = format!("{e}{}", crash.log_tail);
                assert!(
                    text.contains("rust handler panicked on purpose"),
                    "{e}\n{}",
                    crash.log_tail
                );
            }
        }
        let after = invoke_with(&c, &name, "", r#"{"mode":"ok","n":4}"#, "").await?;
        assert_eq!(ok_json(&cluster, &after)["event"]["n"], 4);

        // Through a version and an alias: the ARN names the alias, the version is the number.
        let published = c.publish_version(&name, "v1").await?;
        assert_eq!(published.version, "1");
        c.create_alias(&name, "live", "1", HashMap::new(), "")
            .await?;
        let viaalias = invoke_with(&c, &name, "live", r#"{"mode":"ok"}"#, "").await?;
        let va = ok_json(&cluster, &viaalias);
        assert_eq!(
            va["invoked_function_arn"],
            format!("{}:live", cfg.arn),
            "{va}"
        );
        assert_eq!(va["function_version"], "1", "{va}");
        assert_eq!(viaalias.executed_version, "1");
        let viaversion = invoke_with(&c, &name, "1", r#"{"mode":"ok"}"#, "").await?;
        let vv = ok_json(&cluster, &viaversion);
        assert_eq!(vv["invoked_function_arn"], format!("{}:1", cfg.arn), "{vv}");

        // An init error ($LATEST only; version 1 keeps its configuration).
        c.update_function_configuration(v1::UpdateFunctionConfigurationRequest {
            function_name: name.clone(),
            replace_environment: true,
            environment: [("LAMINA_TEST_INIT_FAIL".to_string(), "1".to_string())].into(),
            ..Default::default()
        })
        .await?;
        let init = invoke_with(&c, &name, "", "{}", "").await?;
        assert_eq!(init.function_error, "Unhandled", "{init:?}");
        let e = json(&init);
        let text = format!("{e}\n{}", init.log_tail);
        match ric {
            Ric::Python => {
                assert_eq!(e["errorType"], "RuntimeError", "{text}");
                assert!(text.contains("python init failed on purpose"), "{text}");
            }
            Ric::Node => {
                assert!(text.contains("node init failed on purpose"), "{text}");
            }
            Ric::Rust => {
                assert_eq!(e["errorType"], "Runtime.ExitError", "{text}");
                assert!(text.contains("rust init failed on purpose"), "{text}");
            }
        }
        // The version still runs.
        let still = invoke_with(&c, &name, "1", r#"{"mode":"ok"}"#, "").await?;
        assert_eq!(ok_json(&cluster, &still)["function_version"], "1");
        Ok(())
    })
}

#[test]
fn awslambdaric_runs_unchanged() {
    check_client(Ric::Python);
}

#[test]
fn aws_lambda_ric_node_runs_unchanged() {
    check_client(Ric::Node);
}

#[test]
fn lambda_runtime_crate_runs_unchanged() {
    check_client(Ric::Rust);
}
