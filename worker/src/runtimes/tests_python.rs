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
