//! `bootstrap.py` run for real (`/usr/bin/python3.11`) against a `RuntimeApi` on loopback.

use lamina_proto::domain::Runtime;
use serde_json::json;

use super::test_support::*;

async fn py(app: &str, handler: &str) -> Harness {
    Harness::start(Runtime::Python311, &[("app.py", app)], handler).await
}

#[tokio::test]
async fn python_hello_and_module_state_survives() {
    let app = "count = 0\n\
               def handler(event, context):\n\
               \x20   global count\n\
               \x20   count += 1\n\
               \x20   print('called', count)\n\
               \x20   return {'hello': event['name'], 'count': count}\n";
    let mut h = py(app, "app.handler").await;
    let first = expect_response(h.invoke(r#"{"name":"world"}"#).await);
    assert_eq!(first, json!({"hello": "world", "count": 1}));
    assert!(h.api.init_done_at().is_some());
    let second = expect_response(h.invoke(r#"{"name":"again"}"#).await);
    assert_eq!(second, json!({"hello": "again", "count": 2}));
    h.wait_log("called 2\n").await;
    assert!(h.stdout().contains("called 1\n"));
}

#[tokio::test]
async fn python_handler_exception_is_posted_and_logged() {
    let app = "def helper(x):\n\
               \x20   raise ValueError('bad value ' + str(x))\n\
               def handler(event, context):\n\
               \x20   print('before the error')\n\
               \x20   helper(7)\n";
    let mut h = py(app, "app.handler").await;
    let inv = h.invocation("{}", 30_000);
    let id = inv.request_id.clone();
    let (ty, body) = expect_error(h.run(inv).await);
    assert_eq!(ty, "ValueError");
    assert_eq!(body["errorType"], "ValueError");
    assert_eq!(body["errorMessage"], "bad value 7");
    assert_eq!(body["requestId"], id.as_str());
    let trace: Vec<&str> = body["stackTrace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(trace.len(), 2, "{trace:?}");
    assert!(trace[0].contains("app.py") && trace[0].contains("in handler"));
    assert!(trace[1].contains("in helper") && trace[1].contains("raise ValueError"));
    assert!(trace.iter().all(|f| !f.contains("bootstrap.py")));
    let logs = h.wait_log("[ERROR] ValueError: bad value 7").await;
    assert!(logs.contains("Traceback (most recent call last):"));
    assert!(h.stdout().contains("before the error\n"));
    // The runtime keeps serving after a handler error.
    let (ty, _) = expect_error(h.invoke("{}").await);
    assert_eq!(ty, "ValueError");
}

#[tokio::test]
async fn python_import_error_is_an_init_error() {
    let mut h = py("x = 1\n", "missing.handler").await;
    let (ty, body) = expect_init_error(h.invoke("{}").await);
    assert_eq!(ty, "Runtime.ImportModuleError");
    assert_eq!(
        body,
        json!({
            "errorMessage": "Unable to import module 'missing': No module named 'missing'",
            "errorType": "Runtime.ImportModuleError",
            "stackTrace": []
        })
    );
    assert_eq!(h.wait_exit().await.code(), Some(1));
    h.wait_log("[ERROR] Runtime.ImportModuleError: Unable to import module 'missing'")
        .await;
    assert!(h.api.init_done_at().is_none());
}

#[tokio::test]
async fn python_missing_handler_and_syntax_error() {
    let mut h = py("def other(e, c):\n    return 1\n", "app.handler").await;
    let (ty, body) = expect_init_error(h.invoke("{}").await);
    assert_eq!(ty, "Runtime.HandlerNotFound");
    assert_eq!(
        body["errorMessage"],
        "Handler 'handler' missing on module 'app'"
    );
    assert_eq!(h.wait_exit().await.code(), Some(1));

    let mut h = py("def handler(e, c)\n    return 1\n", "app.handler").await;
    let (ty, body) = expect_init_error(h.invoke("{}").await);
    assert_eq!(ty, "Runtime.UserCodeSyntaxError");
    let msg = body["errorMessage"].as_str().unwrap();
    assert!(msg.starts_with("Syntax error in module 'app': "), "{msg}");
    assert_eq!(h.wait_exit().await.code(), Some(1));
}

#[tokio::test]
async fn python_context_values() {
    let app = "import os\n\
               def handler(event, context):\n\
               \x20   return {\n\
               \x20       'request_id': context.aws_request_id,\n\
               \x20       'function_name': context.function_name,\n\
               \x20       'function_version': context.function_version,\n\
               \x20       'arn': context.invoked_function_arn,\n\
               \x20       'memory': context.memory_limit_in_mb,\n\
               \x20       'group': context.log_group_name,\n\
               \x20       'stream': context.log_stream_name,\n\
               \x20       'remaining': context.get_remaining_time_in_millis(),\n\
               \x20       'trace': os.environ.get('_X_AMZN_TRACE_ID'),\n\
               \x20       'custom': context.client_context.custom if context.client_context else None,\n\
               \x20       'identity': context.identity.cognito_identity_id,\n\
               \x20       'cwd': os.getcwd() == os.environ['LAMBDA_TASK_ROOT'],\n\
               \x20   }\n";
    let mut h = py(app, "app.handler").await;
    let mut inv = h.invocation("{}", 3_000);
    inv.client_context = Some(r#"{"custom":{"k":"v"},"env":{},"client":{}}"#.to_owned());
    let id = inv.request_id.clone();
    let r = expect_response(h.run(inv).await);
    assert_eq!(r["request_id"], id.as_str());
    assert_eq!(r["function_name"], FUNCTION_NAME);
    assert_eq!(r["function_version"], "$LATEST");
    assert_eq!(r["arn"], ARN);
    assert_eq!(r["memory"], 256);
    assert_eq!(r["group"], "/aws/lambda/fn-test");
    assert_eq!(r["stream"], "2024/01/01/[$LATEST]abc");
    let remaining = r["remaining"].as_u64().unwrap();
    assert!(
        (1_000..=3_000).contains(&remaining),
        "remaining {remaining}"
    );
    assert_eq!(r["trace"], TRACE);
    assert_eq!(r["custom"], json!({"k": "v"}));
    assert_eq!(r["identity"], serde_json::Value::Null);
    assert_eq!(r["cwd"], true);
}

#[tokio::test]
async fn python_marshal_error_nested_handler_path_and_logging() {
    let files = [(
        "sub/mod.py",
        "import logging\n\
                        logger = logging.getLogger()\n\
                        logger.setLevel(logging.INFO)\n\
                        def handler(event, context):\n\
                        \x20   logger.info('log line %s', event.get('n'))\n\
                        \x20   if event.get('bad'):\n\
                        \x20       return {1, 2}\n\
                        \x20   return 'plain string'\n",
    )];
    let mut h = Harness::start(Runtime::Python311, &files, "sub/mod.handler").await;
    let inv = h.invocation(r#"{"n": 5}"#, 30_000);
    let id = inv.request_id.clone();
    assert_eq!(expect_response(h.run(inv).await), json!("plain string"));
    let logs = h.wait_log("log line 5").await;
    let line = logs.lines().find(|l| l.contains("log line 5")).unwrap();
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields[0], "[INFO]");
    assert!(
        fields[1].ends_with('Z') && fields[1].contains('T'),
        "{line}"
    );
    assert_eq!(fields[2], id);

    let (ty, body) = expect_error(h.invoke(r#"{"bad": true}"#).await);
    assert_eq!(ty, "Runtime.MarshalError");
    assert!(body["errorMessage"]
        .as_str()
        .unwrap()
        .starts_with("Unable to marshal response: "));
}

#[tokio::test]
async fn python_warm_invocations_are_fast() {
    let mut h = py("def handler(e, c):\n    return e\n", "app.handler").await;
    assert_warm_latency(&mut h).await;
}

#[tokio::test]
async fn python_logging_is_configured_when_first_imported() {
    // The runtime imports neither json nor logging; a handler that imports logging only when it is
    // called still gets Lambda's log format with the request id.
    let app = "import sys\n\
               def handler(event, context):\n\
               \x20   before = sorted(m for m in ('json', 'logging', 're', 'socket') if m in sys.modules)\n\
               \x20   import logging\n\
               \x20   logging.getLogger().setLevel(logging.INFO)\n\
               \x20   logging.info('late log %s', event['n'])\n\
               \x20   root = logging.getLogger()\n\
               \x20   return {'before': before, 'handlers': len(root.handlers),\n\
               \x20           'loader': type(logging.__loader__).__name__,\n\
               \x20           'spec_loader': type(logging.__spec__.loader).__name__}\n";
    let mut h = py(app, "app.handler").await;
    let inv = h.invocation(r#"{"n": 3}"#, 30_000);
    let id = inv.request_id.clone();
    let r = expect_response(h.run(inv).await);
    assert_eq!(r["before"], json!([]), "{r}");
    assert_eq!(r["handlers"], 1, "{r}");
    // The module keeps its real loader once it ran.
    assert_eq!(r["loader"], "SourceFileLoader", "{r}");
    assert_eq!(r["spec_loader"], "SourceFileLoader", "{r}");
    let logs = h.wait_log("late log 3").await;
    let line = logs.lines().find(|l| l.contains("late log 3")).unwrap();
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields[0], "[INFO]", "{line}");
    assert_eq!(fields[2], id, "{line}");
}

#[tokio::test]
async fn python_events_and_results_round_trip_as_json_does() {
    // The runtime decodes and encodes with json's own C scanner and encoder: the same values, the
    // same errors (json's messages), the same output (non-ASCII kept, NaN allowed).
    let app = "import json\n\
               def handler(event, context):\n\
               \x20   if event == 'text':\n\
               \x20       return 'caf\\u00e9 \\u2028'\n\
               \x20   if event == 'nan':\n\
               \x20       return {'v': float('nan'), 'i': float('inf')}\n\
               \x20   if event == 'circular':\n\
               \x20       a = []\n\
               \x20       a.append(a)\n\
               \x20       return a\n\
               \x20   return {'event': event, 'same': event == json.loads(json.dumps(event)),\n\
               \x20           'dumped': json.dumps({'k': event}, ensure_ascii=False)}\n";
    let mut h = py(app, "app.handler").await;
    let event = r#" {"a": [1, 2.5e3, -0.0, true, null], "é": "\u00e9\ud83d\ude00", "big": 123456789012345678901234567890} "#;
    let r = expect_response(h.invoke(event).await);
    let sent: serde_json::Value = serde_json::from_str(event).unwrap();
    assert_eq!(r["event"]["a"], sent["a"], "{r}");
    assert_eq!(r["event"]["é"], sent["é"], "{r}");
    assert_eq!(r["same"], true, "{r}");
    assert!(
        r["dumped"].as_str().unwrap().contains("\"é\": \"é😀\""),
        "{r}"
    );
    match h.invoke(r#""text""#).await {
        crate::runtime_api::InvocationOutcome::Response(body) => {
            assert_eq!(std::str::from_utf8(&body).unwrap(), "\"café \u{2028}\"")
        }
        other => panic!("expected a response, got {other:?}"),
    }
    match h.invoke(r#""nan""#).await {
        crate::runtime_api::InvocationOutcome::Response(body) => {
            assert_eq!(
                std::str::from_utf8(&body).unwrap(),
                r#"{"v": NaN, "i": Infinity}"#
            )
        }
        other => panic!("expected a response, got {other:?}"),
    }
    let (ty, body) = expect_error(h.invoke(r#""circular""#).await);
    assert_eq!(ty, "Runtime.MarshalError");
    assert_eq!(
        body["errorMessage"],
        "Unable to marshal response: Circular reference detected"
    );
    for (bad, message) in [
        ("", "Expecting value: line 1 column 1 (char 0)"),
        ("{\"a\": 1} x", "Extra data: line 1 column 10 (char 9)"),
        ("[1,", "Expecting value: line 1 column 4 (char 3)"),
    ] {
        let (ty, body) = expect_error(h.invoke(bad).await);
        assert_eq!(ty, "Runtime.UnmarshalError", "{bad:?}");
        assert_eq!(
            body["errorMessage"],
            format!("Unable to unmarshal input: {message}"),
            "{bad:?}"
        );
    }
    // Still serving.
    let r = expect_response(h.invoke("[]").await);
    assert_eq!(r["same"], true);
}
