//! `bootstrap.js` run for real (`/usr/bin/node`) against a `RuntimeApi` on loopback.

use lamina_proto::domain::Runtime;
use serde_json::json;

use super::test_support::*;

async fn node(files: &[(&str, &str)], handler: &str) -> Harness {
    Harness::start(Runtime::Nodejs20, files, handler).await
}

#[tokio::test]
async fn node_async_hello_and_module_state_survives() {
    let app = "let count = 0;\n\
               exports.handler = async (event) => {\n\
               \x20 count += 1;\n\
               \x20 console.log('called', count);\n\
               \x20 return { hello: event.name, count };\n\
               };\n";
    let mut h = node(&[("app.js", app)], "app.handler").await;
    let inv = h.invocation(r#"{"name":"world"}"#, 30_000);
    let id = inv.request_id.clone();
    assert_eq!(
        expect_response(h.run(inv).await),
        json!({"hello": "world", "count": 1})
    );
    assert!(h.api.init_done_at().is_some());
    assert_eq!(
        expect_response(h.invoke(r#"{"name":"again"}"#).await),
        json!({"hello": "again", "count": 2})
    );
    // console.log is written synchronously before the POST, formatted like Lambda.
    let out = h.stdout();
    let line = out
        .lines()
        .find(|l| l.ends_with("called 1"))
        .unwrap_or_else(|| panic!("no log line in {out:?}"));
    let fields: Vec<&str> = line.split('\t').collect();
    assert_eq!(fields.len(), 4, "{line}");
    assert!(
        fields[0].ends_with('Z') && fields[0].contains('T'),
        "{line}"
    );
    assert_eq!(fields[1], id);
    assert_eq!(fields[2], "INFO");
    assert_eq!(fields[3], "called 1");
}

#[tokio::test]
async fn node_callback_and_promise_handlers() {
    let app = "exports.cb = (event, context, callback) => {\n\
               \x20 setTimeout(() => callback(null, { cb: event.n }), 5);\n\
               \x20 // callbackWaitsForEmptyEventLoop: the answer waits for this timer.\n\
               \x20 setTimeout(() => console.warn('timer after callback'), 150);\n\
               };\n\
               exports.cbErr = (event, context, callback) => callback(new Error('cb failed'));\n\
               exports.noWait = (event, context, callback) => {\n\
               \x20 context.callbackWaitsForEmptyEventLoop = false;\n\
               \x20 callback(null, 'fast');\n\
               \x20 setTimeout(() => {}, 100000).unref();\n\
               };\n\
               exports.promise = (event) => new Promise((resolve) => setTimeout(() => resolve(42), 5));\n";
    let mut h = node(&[("app.js", app)], "app.cb").await;
    assert_eq!(
        expect_response(h.invoke(r#"{"n":3}"#).await),
        json!({"cb": 3})
    );
    assert!(
        h.stdout().contains("\tWARN\ttimer after callback"),
        "the response must wait for the event loop to empty: {}",
        h.stdout()
    );
    drop(h);

    let mut h = node(&[("app.js", app)], "app.cbErr").await;
    let (ty, body) = expect_error(h.invoke("{}").await);
    assert_eq!(ty, "Error");
    assert_eq!(body["errorMessage"], "cb failed");

    let mut h = node(&[("app.js", app)], "app.noWait").await;
    assert_eq!(expect_response(h.invoke("{}").await), json!("fast"));

    let mut h = node(&[("app.js", app)], "app.promise").await;
    assert_eq!(expect_response(h.invoke("{}").await), json!(42));
    assert_eq!(expect_response(h.invoke("{}").await), json!(42));
}

#[tokio::test]
async fn node_handler_exception_is_posted_and_logged() {
    let app = "function helper() { throw new TypeError('bad thing'); }\n\
               exports.handler = async () => { console.log('before'); helper(); };\n";
    let mut h = node(&[("app.js", app)], "app.handler").await;
    let (ty, body) = expect_error(h.invoke("{}").await);
    assert_eq!(ty, "TypeError");
    assert_eq!(body["errorType"], "TypeError");
    assert_eq!(body["errorMessage"], "bad thing");
    let trace: Vec<&str> = body["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(trace[0], "TypeError: bad thing");
    assert!(
        trace[1].contains("helper") && trace[1].contains("app.js"),
        "{trace:?}"
    );
    let out = h.stdout();
    assert!(out.contains("\tINFO\tbefore"), "{out}");
    assert!(
        out.contains("\tERROR\tInvoke Error \t{\"errorType\":\"TypeError\""),
        "{out}"
    );
    // Still serving.
    let (ty, _) = expect_error(h.invoke("{}").await);
    assert_eq!(ty, "TypeError");
}

#[tokio::test]
async fn node_import_error_missing_handler_and_syntax_error() {
    let mut h = node(&[("app.js", "exports.x = 1;\n")], "missing.handler").await;
    let (ty, body) = expect_init_error(h.invoke("{}").await);
    assert_eq!(ty, "Runtime.ImportModuleError");
    assert_eq!(body["errorType"], "Runtime.ImportModuleError");
    let msg = body["errorMessage"].as_str().unwrap();
    assert!(
        msg.starts_with("Error: Cannot find module 'missing'"),
        "{msg}"
    );
    assert_eq!(
        body["trace"][0].as_str().unwrap().split(':').next(),
        Some("Runtime.ImportModuleError")
    );
    assert_eq!(h.wait_exit().await.code(), Some(1));

    let mut h = node(&[("app.js", "exports.other = () => 1;\n")], "app.handler").await;
    let (ty, body) = expect_init_error(h.invoke("{}").await);
    assert_eq!(ty, "Runtime.HandlerNotFound");
    assert_eq!(
        body["errorMessage"],
        "app.handler is undefined or not exported"
    );
    assert_eq!(h.wait_exit().await.code(), Some(1));

    let mut h = node(
        &[("app.js", "exports.handler = async () => {;\n")],
        "app.handler",
    )
    .await;
    let (ty, body) = expect_init_error(h.invoke("{}").await);
    assert_eq!(ty, "Runtime.UserCodeSyntaxError");
    assert!(body["errorMessage"]
        .as_str()
        .unwrap()
        .starts_with("SyntaxError: "));
    assert_eq!(h.wait_exit().await.code(), Some(1));
}

#[tokio::test]
async fn node_esm_cjs_and_nested_handlers() {
    let files = [
        (
            "esm.mjs",
            "export const handler = async (e) => ({ esm: e.v });\n",
        ),
        (
            "lib/cjs.cjs",
            "module.exports.deep = { fn: async () => 'cjs' };\n",
        ),
    ];
    let mut h = node(&files, "esm.handler").await;
    assert_eq!(
        expect_response(h.invoke(r#"{"v":1}"#).await),
        json!({"esm": 1})
    );
    let mut h = node(&files, "lib/cjs.deep.fn").await;
    assert_eq!(expect_response(h.invoke("{}").await), json!("cjs"));
}

#[tokio::test]
async fn node_context_values() {
    let app = "exports.handler = async (event, context) => ({\n\
               \x20 requestId: context.awsRequestId,\n\
               \x20 functionName: context.functionName,\n\
               \x20 functionVersion: context.functionVersion,\n\
               \x20 arn: context.invokedFunctionArn,\n\
               \x20 memory: context.memoryLimitInMB,\n\
               \x20 group: context.logGroupName,\n\
               \x20 stream: context.logStreamName,\n\
               \x20 remaining: context.getRemainingTimeInMillis(),\n\
               \x20 waits: context.callbackWaitsForEmptyEventLoop,\n\
               \x20 clientContext: context.clientContext,\n\
               \x20 trace: process.env._X_AMZN_TRACE_ID,\n\
               });\n";
    let mut h = node(&[("index.js", app)], "index.handler").await;
    let mut inv = h.invocation("{}", 3_000);
    inv.client_context = Some(r#"{"custom":{"k":"v"}}"#.to_owned());
    let id = inv.request_id.clone();
    let r = expect_response(h.run(inv).await);
    assert_eq!(r["requestId"], id.as_str());
    assert_eq!(r["functionName"], FUNCTION_NAME);
    assert_eq!(r["functionVersion"], "$LATEST");
    assert_eq!(r["arn"], ARN);
    assert_eq!(r["memory"], "256");
    assert_eq!(r["group"], "/aws/lambda/fn-test");
    assert_eq!(r["stream"], "2024/01/01/[$LATEST]abc");
    let remaining = r["remaining"].as_u64().unwrap();
    assert!(
        (1_000..=3_000).contains(&remaining),
        "remaining {remaining}"
    );
    assert_eq!(r["waits"], true);
    assert_eq!(r["clientContext"], json!({"custom": {"k": "v"}}));
    assert_eq!(r["trace"], TRACE);
}

#[tokio::test]
async fn node_uncaught_exception_fails_the_invocation_and_exits() {
    let app = "exports.handler = (event, context, callback) => {\n\
               \x20 setTimeout(() => { throw new RangeError('async boom'); }, 5);\n\
               };\n";
    let mut h = node(&[("app.js", app)], "app.handler").await;
    let (ty, body) = expect_error(h.invoke("{}").await);
    assert_eq!(ty, "RangeError");
    assert_eq!(body["errorMessage"], "async boom");
    assert_eq!(h.wait_exit().await.code(), Some(129));
}

#[tokio::test]
async fn node_warm_invocations_are_fast() {
    let mut h = node(
        &[("app.js", "exports.handler = async (e) => e;\n")],
        "app.handler",
    )
    .await;
    assert_warm_latency(&mut h).await;
}

#[tokio::test]
async fn node_streamify_response_streams_chunks_and_error_trailers() {
    use crate::runtime_api::{InvocationOutcome, StreamEvent};
    let app = "exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {\n\
               \x20 responseStream.setContentType('text/plain');\n\
               \x20 responseStream.write('one ');\n\
               \x20 await new Promise((r) => setTimeout(r, 20));\n\
               \x20 responseStream.write('two');\n\
               \x20 if (event.fail) throw new TypeError('stream broke');\n\
               \x20 responseStream.end();\n\
               });\n";
    let mut h = node(&[("app.js", app)], "app.handler").await;
    for fail in [false, true] {
        let inv = h.invocation(&json!({ "fail": fail }).to_string(), 30_000);
        let mut stream = match h.run(inv).await {
            InvocationOutcome::Streaming(s) => s,
            other => panic!("expected a streamed response, got {other:?}"),
        };
        assert_eq!(stream.content_type.as_deref(), Some("text/plain"));
        let mut text = String::new();
        let mut error = None;
        while let Some(ev) = stream.next().await {
            match ev {
                StreamEvent::Chunk(b) => text.push_str(std::str::from_utf8(&b).unwrap()),
                StreamEvent::Error { error_type, body } => {
                    error = Some((
                        error_type,
                        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
                    ))
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(text, "one two");
        match error {
            None => assert!(!fail),
            Some((ty, body)) => {
                assert!(fail);
                assert_eq!(ty, "TypeError");
                assert_eq!(body["errorMessage"], "stream broke");
            }
        }
    }
    // The runtime goes on with ordinary invocations.
    assert!(h.api.init_done_at().is_some());
}
