//! The Lambda Runtime API, case by case, through a real sandbox: a `provided` function whose
//! bootstrap (Python, raw `http.client`) makes exactly the calls each event lists, so the test
//! controls every request the runtime sends and sees every status it gets back.
use std::collections::HashMap;

use lamina_e2e::*;
use serde_json::{json, Value};

/// Takes events `{"steps": [{"method", "path", "body" | "size", "headers"}], "sleep": S,
/// "env": [NAMES], "final": "response" | "none"}`: makes each call (`{id}` is this invocation's
/// request id, `{prev}` the previous one's), prints `STEP path status`, then (unless `final` is
/// `none`) answers with what it saw: the `next` headers, the step results, the statuses of the
/// last 8 steps of any invocation (`history`), its count and token.
/// With `exit_after` it exits that many seconds after answering (before its next `next`).
/// `INIT_SLEEP` delays its first `next`; `INIT_ERROR=1` posts `init/error` and then stays alive.
const BOOTSTRAP: &str = r#"#!/usr/bin/python3.11
import http.client, json, os, time
API = os.environ["AWS_LAMBDA_RUNTIME_API"]
BASE = "/2018-06-01/runtime"

def call(method, path, body=b"", headers=None):
    c = http.client.HTTPConnection(API)
    c.request(method, BASE + path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data, r

time.sleep(float(os.environ.get("INIT_SLEEP", "0")))
if os.environ.get("INIT_ERROR") == "1":
    body = json.dumps({"errorMessage": "init went wrong", "errorType": "Custom.InitBroken",
                       "stackTrace": ["bootstrap line 1"]}).encode()
    print("INIT_ERROR_POSTING", flush=True)
    st, _, _ = call("POST", "/init/error", body,
                    {"Lambda-Runtime-Function-Error-Type": "Custom.InitBroken"})
    print("INIT_ERROR_STATUS", st, flush=True)
    time.sleep(3600)

token = os.urandom(8).hex()
history = []
count = 0
prev = "none"
while True:
    _, body, r = call("GET", "/invocation/next")
    now_ms = int(time.time() * 1000)
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    headers = {k.lower(): v for k, v in r.getheaders()}
    count += 1
    ev = json.loads(body)
    results = []
    for step in ev.get("steps", []):
        path = step["path"].replace("{id}", rid).replace("{prev}", prev)
        data = b"x" * step["size"] if "size" in step else step.get("body", "").encode()
        st, out, _ = call(step.get("method", "POST"), path, data, step.get("headers", {}))
        try:
            out = json.loads(out)
        except Exception:
            out = out.decode(errors="replace")
        results.append({"status": st, "body": out})
        history.append(st)
        print("STEP", step["path"], st, flush=True)
    time.sleep(ev.get("sleep", 0))
    prev = rid
    if ev.get("final", "response") == "response":
        answer = {"count": count, "token": token, "request_id": rid, "headers": headers,
                  "now_ms": now_ms, "steps": results, "history": history[-8:],
                  "env": {k: os.environ.get(k) for k in ev.get("env", [])}}
        call("POST", "/invocation/%s/response" % rid, json.dumps(answer).encode())
    if "exit_after" in ev:
        time.sleep(ev["exit_after"])
        os._exit(5)
"#;

async fn create(
    c: &Client,
    timeout_s: u32,
    env: &[(&str, &str)],
) -> anyhow::Result<(String, v1::FunctionConfiguration)> {
    let name = unique("conform");
    let mut s = with_env(spec(&name, "provided", "conformance.handler"), env);
    s.timeout_seconds = timeout_s;
    let cfg = c
        .create_function(s, zip_of(&[("bootstrap", BOOTSTRAP, 0o755)]))
        .await?;
    Ok((name, cfg))
}

async fn call(
    c: &Client,
    name: &str,
    qualifier: &str,
    event: Value,
    client_context: &str,
) -> anyhow::Result<v1::InvokeResponse> {
    Ok(c.invoke(v1::InvokeRequest {
        function_name: name.to_string(),
        qualifier: qualifier.to_string(),
        payload: event.to_string().into_bytes(),
        log_type: v1::LogType::Tail as i32,
        client_context: client_context.to_string(),
        ..Default::default()
    })
    .await?)
}

fn answer(cluster: &Cluster, resp: &v1::InvokeResponse) -> Value {
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

fn step(method: &str, path: &str, body: &str) -> Value {
    json!({"method": method, "path": path, "body": body})
}

#[test]
fn runtime_api_conformance_on_a_warm_sandbox() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let env = [
            ("WITH_EQ", "a=b==c="),
            ("DSN", "postgres://u:p@h/db?x=1&y=2"),
        ];
        let (name, cfg) = create(&c, 10, &env).await?;

        // Two invocations in a row: one sandbox, two request ids, each the caller's.
        let cc = r#"{"custom":{"k":"v=1"},"env":{"a":"b"}}"#;
        let first = call(&c, &name, "", json!({"env": ["WITH_EQ", "DSN"]}), cc).await?;
        let a = answer(&cluster, &first);
        let second = call(&c, &name, "", json!({}), "").await?;
        let b = answer(&cluster, &second);
        assert_eq!(
            (a["count"].as_u64(), b["count"].as_u64()),
            (Some(1), Some(2))
        );
        assert_eq!(a["token"], b["token"], "the same sandbox");
        assert_eq!(a["request_id"], first.request_id.as_str());
        assert_eq!(b["request_id"], second.request_id.as_str());
        assert_ne!(first.request_id, second.request_id);
        let h = &a["headers"];
        assert_eq!(
            h["lambda-runtime-aws-request-id"],
            first.request_id.as_str()
        );
        assert!(
            h["lambda-runtime-trace-id"]
                .as_str()
                .unwrap()
                .starts_with("Root=1-"),
            "{h}"
        );
        assert_eq!(h["content-type"], "application/json");
        // Custom function name in the ARN.
        assert_eq!(h["lambda-runtime-invoked-function-arn"], cfg.arn.as_str());
        assert!(
            cfg.arn.ends_with(&format!(":function:{name}")),
            "{}",
            cfg.arn
        );
        // Client context passed through as given; none when none was given.
        assert_eq!(h["lambda-runtime-client-context"], cc);
        assert!(
            b["headers"].get("lambda-runtime-client-context").is_none(),
            "{b}"
        );
        // Environment values containing `=` arrive whole.
        assert_eq!(a["env"]["WITH_EQ"], "a=b==c=");
        assert_eq!(a["env"]["DSN"], "postgres://u:p@h/db?x=1&y=2");
        // The deadline: the whole timeout is ahead when the event is handed out (warm).
        let remaining = b["headers"]["lambda-runtime-deadline-ms"]
            .as_str()
            .unwrap()
            .parse::<i64>()?
            - b["now_ms"].as_i64().unwrap();
        assert!(
            remaining > 10_000 - 3000 && remaining <= 10_000,
            "{remaining}"
        );

        // Unknown request id -> 400; out of order (answered twice, the previous invocation,
        // an error after the response) -> 403.
        let ev = json!({"final": "none", "steps": [
            step("POST", "/invocation/no-such-request/response", "{}"),
            step("POST", "/invocation/{prev}/response", "\"late\""),
            step("POST", "/invocation/{id}/response", "\"first answer\""),
            step("POST", "/invocation/{id}/response", "\"second answer\""),
            step("POST", "/invocation/{id}/error", r#"{"errorMessage":"x","errorType":"X"}"#),
        ]});
        let r = call(&c, &name, "", ev, "").await?;
        assert_eq!(answer(&cluster, &r), json!("first answer"));
        // The same refusals with their error types, in a response (whose `history` shows the
        // statuses of the previous invocation's steps, made partly after it was answered).
        let ev = json!({"steps": [
            step("POST", "/invocation/no-such-request/response", "{}"),
            step("POST", "/invocation/{prev}/error", "{}"),
        ]});
        let v = answer(&cluster, &call(&c, &name, "", ev, "").await?);
        assert_eq!(
            v["history"],
            json!([400, 403, 202, 403, 403, 400, 403]),
            "{v}"
        );
        assert_eq!(v["steps"][0]["status"], 400);
        assert_eq!(v["steps"][0]["body"]["errorType"], "InvalidRequestID");
        assert_eq!(v["steps"][1]["status"], 403);
        assert_eq!(v["steps"][1]["body"]["errorType"], "InvalidStateTransition");

        // Exception body shape: the caller gets exactly what the runtime posted.
        let error_body = r#"{"errorMessage":"it broke","errorType":"Custom.Failure","stackTrace":["a.py line 1","b.py line 2"]}"#;
        let ev = json!({"final": "none", "steps": [{
            "path": "/invocation/{id}/error", "body": error_body,
            "headers": {"Lambda-Runtime-Function-Error-Type": "Custom.Failure"},
        }]});
        let r = call(&c, &name, "", ev, "").await?;
        assert_eq!(r.function_error, "Unhandled", "{r:?}");
        assert_eq!(String::from_utf8_lossy(&r.payload), error_body);

        // Response too large -> 413 to the runtime, Function.ResponseSizeTooLarge to the caller.
        let ev = json!({"final": "none", "steps": [
            {"path": "/invocation/{id}/response", "size": 6_291_557},
        ]});
        let r = call(&c, &name, "", ev, "").await?;
        assert_eq!(r.function_error, "Unhandled", "{r:?}");
        let e = json(&r);
        assert_eq!(e["errorType"], "Function.ResponseSizeTooLarge", "{e}");
        // Exactly at the limit is fine.
        let ev = json!({"final": "none", "steps": [
            {"path": "/invocation/{id}/response", "size": 6_291_556},
        ]});
        let r = call(&c, &name, "", ev, "").await?;
        assert_eq!(r.function_error, "", "{}", r.log_tail);
        assert_eq!(r.payload.len(), 6_291_556);

        // The sandbox survived all of it; the runtime got 202 for its error, 413 for the
        // oversized response and 202 for the one at the limit.
        let v = answer(&cluster, &call(&c, &name, "", json!({}), "").await?);
        assert_eq!(v["token"], a["token"]);
        let history = v["history"].as_array().unwrap();
        assert_eq!(
            history[history.len() - 3..],
            [json!(202), json!(413), json!(202)],
            "{v}"
        );

        // Through an alias: the ARN names it.
        c.publish_version(&name, "").await?;
        c.create_alias(&name, "live", "1", HashMap::new(), "")
            .await?;
        let v = answer(&cluster, &call(&c, &name, "live", json!({}), "").await?);
        assert_eq!(
            v["headers"]["lambda-runtime-invoked-function-arn"],
            format!("{}:live", cfg.arn)
        );
        Ok(())
    })
}

#[test]
fn timeout_message_is_exact_and_the_sandbox_is_replaced() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let (name, _) = create(&c, 1, &[]).await?;
        let before = answer(&cluster, &call(&c, &name, "", json!({}), "").await?);
        let r = call(&c, &name, "", json!({"sleep": 30}), "").await?;
        assert_eq!(r.function_error, "Unhandled", "{r:?}");
        let e = json(&r);
        assert_eq!(e["errorType"], "Sandbox.Timedout", "{e}");
        assert_eq!(
            e["errorMessage"],
            format!(
                "RequestId: {} Error: Task timed out after 1.00 seconds",
                r.request_id
            )
        );
        let after = answer(&cluster, &call(&c, &name, "", json!({}), "").await?);
        assert_eq!(after["count"], 1, "a fresh sandbox: {after}");
        assert_ne!(after["token"], before["token"]);
        Ok(())
    })
}

#[test]
fn the_deadline_counts_from_the_end_of_a_slow_init() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        // Init takes 2 s of a 4 s timeout: the event still comes with (almost) 4 s ahead, and the
        // function may use them: 2.5 s of work after a 2 s init is no timeout.
        let (name, _) = create(&c, 4, &[("INIT_SLEEP", "2")]).await?;
        let v = answer(
            &cluster,
            &call(&c, &name, "", json!({"sleep": 2.5}), "").await?,
        );
        let remaining = v["headers"]["lambda-runtime-deadline-ms"]
            .as_str()
            .unwrap()
            .parse::<i64>()?
            - v["now_ms"].as_i64().unwrap();
        assert!(
            remaining > 4000 - 1500 && remaining <= 4000,
            "{remaining}: {v}"
        );
        Ok(())
    })
}

#[test]
fn init_error_fails_the_invocation_and_discards_the_sandbox() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let (name, _) = create(&c, 5, &[("INIT_ERROR", "1")]).await?;
        for round in 0..2 {
            let r = call(&c, &name, "", json!({}), "").await?;
            assert_eq!(r.function_error, "Unhandled", "round {round}: {r:?}");
            let e = json(&r);
            assert_eq!(e["errorType"], "Custom.InitBroken", "{e}");
            assert_eq!(e["errorMessage"], "init went wrong", "{e}");
            assert!(r.log_tail.contains("INIT_ERROR_POSTING"), "{}", r.log_tail);
            // Every round is a cold start: the failed sandbox was not kept.
            assert!(
                r.log_tail.contains("Init Duration"),
                "round {round}: {}",
                r.log_tail
            );
        }
        Ok(())
    })
}

#[test]
fn a_runtime_that_exits_after_answering_costs_the_next_caller_nothing() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let (name, _) = create(&c, 5, &[]).await?;
        // Answers, then exits 0.3 s later: the sandbox is frozen idle before it gets there.
        let first = answer(
            &cluster,
            &call(&c, &name, "", json!({"exit_after": 0.3}), "").await?,
        );
        // The next invocation thaws it, sees it exit before it took the event, and runs on a
        // fresh sandbox instead of failing with Runtime.ExitError.
        let r = call(&c, &name, "", json!({}), "").await?;
        let second = answer(&cluster, &r);
        assert_eq!(second["count"], 1, "a fresh sandbox: {second}");
        assert_ne!(second["token"], first["token"]);
        assert!(r.log_tail.contains("Init Duration"), "{}", r.log_tail);
        Ok(())
    })
}
