//! What a caller sees when a function fails, and that the next invocation gets a fresh sandbox.
use lamina_e2e::*;

/// A handler that counts invocations per sandbox and misbehaves on demand.
const PY_MISBEHAVE: &str = r#"
import os, time
count = 0
def handler(event, context):
    global count
    count += 1
    what = event.get("do")
    if what == "sleep":
        time.sleep(30)
    elif what == "exit":
        os._exit(3)
    elif what == "raise":
        raise ValueError("boom")
    elif what == "hog":
        hog = []
        while True:
            hog.append(bytearray(8 * 1024 * 1024))
    return {"count": count}
"#;

async fn misbehaving(c: &Client, memory: u32, timeout: u32) -> anyhow::Result<String> {
    let name = unique("bad");
    let mut s = spec(&name, "python3.11", "app.handler");
    s.memory_size_mb = memory;
    s.timeout_seconds = timeout;
    c.create_function(s, zip_of(&[("app.py", PY_MISBEHAVE, 0o644)]))
        .await?;
    Ok(name)
}

fn error_of(resp: &v1::InvokeResponse) -> (String, String) {
    assert_eq!(resp.function_error, "Unhandled", "{resp:?}");
    let v = json(resp);
    (
        v["errorType"].as_str().unwrap_or_default().to_string(),
        v["errorMessage"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn timeout_kills_the_sandbox_and_next_invocation_reinits() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = misbehaving(&c, 1024, 2).await?;
        assert_eq!(
            json(&invoke(&c, &name, "{}").await?)["count"],
            1,
            "{}",
            cluster.logs()
        );
        assert_eq!(json(&invoke(&c, &name, "{}").await?)["count"], 2);
        let started = std::time::Instant::now();
        let resp = invoke(&c, &name, r#"{"do":"sleep"}"#).await?;
        let (ty, msg) = error_of(&resp);
        assert_eq!(ty, "Sandbox.Timedout");
        assert!(msg.contains("Task timed out after 2.00 seconds"), "{msg}");
        assert!(msg.contains(&resp.request_id), "{msg}");
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert!(
            resp.log_tail.contains("Task timed out after 2.00 seconds"),
            "{}",
            resp.log_tail
        );
        // Fresh sandbox: the module-level counter starts again.
        assert_eq!(json(&invoke(&c, &name, "{}").await?)["count"], 1);
        Ok(())
    })
}

#[test]
fn runtime_exit_is_reported_and_sandbox_replaced() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = misbehaving(&c, 1024, 10).await?;
        assert_eq!(
            json(&invoke(&c, &name, "{}").await?)["count"],
            1,
            "{}",
            cluster.logs()
        );
        let (ty, msg) = error_of(&invoke(&c, &name, r#"{"do":"exit"}"#).await?);
        assert_eq!(ty, "Runtime.ExitError");
        assert!(
            msg.contains("Runtime exited with error: exit status 3"),
            "{msg}"
        );
        assert_eq!(json(&invoke(&c, &name, "{}").await?)["count"], 1);
        Ok(())
    })
}

#[test]
fn handler_exception_has_type_message_and_stack() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = misbehaving(&c, 1024, 10).await?;
        let resp = invoke(&c, &name, r#"{"do":"raise"}"#).await?;
        let (ty, msg) = error_of(&resp);
        assert_eq!(ty, "ValueError");
        assert_eq!(msg, "boom");
        let trace = &json(&resp)["stackTrace"];
        assert!(trace.as_array().is_some_and(|t| !t.is_empty()), "{trace}");
        assert!(resp.log_tail.contains("ValueError"), "{}", resp.log_tail);
        // A handled exception keeps the sandbox (Lambda does too).
        assert_eq!(json(&invoke(&c, &name, "{}").await?)["count"], 2);

        let node = unique("nodeerr");
        let src = "exports.handler = async () => { throw new TypeError('bad thing'); };";
        c.create_function(
            spec(&node, "nodejs20.x", "index.handler"),
            zip_of(&[("index.js", src, 0o644)]),
        )
        .await?;
        let (ty, msg) = error_of(&invoke(&c, &node, "{}").await?);
        assert_eq!(ty, "TypeError");
        assert_eq!(msg, "bad thing");
        Ok(())
    })
}

#[test]
fn memory_hog_is_out_of_memory_and_worker_stays_healthy() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = misbehaving(&c, 128, 30).await?;
        let (ty, _) = error_of(&invoke(&c, &name, r#"{"do":"hog"}"#).await?);
        assert_eq!(ty, "Runtime.OutOfMemory", "{}", cluster.logs());
        // The worker is fine and the function works again in a fresh sandbox.
        assert_eq!(json(&invoke(&c, &name, "{}").await?)["count"], 1);
        let workers = c.list_workers().await?;
        assert_eq!(workers.len(), 1);
        assert_eq!(workers[0].state, "Up");
        Ok(())
    })
}

#[test]
fn bad_handlers_name_the_problem() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let missing_module = unique("nomod");
        c.create_function(
            spec(&missing_module, "python3.11", "nothere.handler"),
            zip_of(&[("app.py", "def handler(e, c):\n    return 1\n", 0o644)]),
        )
        .await?;
        let (ty, msg) = error_of(&invoke(&c, &missing_module, "{}").await?);
        assert_eq!(ty, "Runtime.ImportModuleError", "{}", cluster.logs());
        assert!(msg.contains("nothere"), "{msg}");

        let missing_fn = unique("nofn");
        c.create_function(
            spec(&missing_fn, "python3.11", "app.nope"),
            zip_of(&[("app.py", "def handler(e, c):\n    return 1\n", 0o644)]),
        )
        .await?;
        let (ty, msg) = error_of(&invoke(&c, &missing_fn, "{}").await?);
        assert_eq!(ty, "Runtime.HandlerNotFound");
        assert!(msg.contains("nope"), "{msg}");

        let node_missing = unique("nodenomod");
        c.create_function(
            spec(&node_missing, "nodejs20.x", "nothere.handler"),
            zip_of(&[("index.js", "exports.handler = async () => 1;", 0o644)]),
        )
        .await?;
        let (ty, _) = error_of(&invoke(&c, &node_missing, "{}").await?);
        assert_eq!(ty, "Runtime.ImportModuleError");
        Ok(())
    })
}

/// The worker honours its caller's deadline (`WorkerInvokeRequest.deadline_ms`, when the
/// controller's call stops waiting): an invocation that arrives past it is not run, and one still
/// running when it passes is stopped and its sandbox destroyed, instead of finishing for nobody
/// (or running on while an async delivery's lease is handed to another attempt).
#[test]
fn the_worker_stops_work_its_caller_gave_up_on() {
    require_root();
    let cluster = Cluster::start(1).unwrap();
    run(async {
        let c = cluster.client().await?;
        let name = misbehaving(&c, 256, 60).await?;
        let config = c.get_function(&name).await?;
        let channel = tonic::transport::Channel::from_shared(format!(
            "http://{}",
            cluster.workers[0].address
        ))?
        .connect()
        .await?;
        let signed = lamina_proto::auth::Signed::new(channel, Some(cluster.cluster_credentials()?));
        let mut worker = v1::worker_client::WorkerClient::new(signed);
        let request = |id: &str, payload: &str, deadline_ms: u64| v1::WorkerInvokeRequest {
            request_id: id.into(),
            function: Some(config.clone()),
            payload: payload.as_bytes().to_vec(),
            deadline_ms,
            ..Default::default()
        };
        let now = lamina_proto::auth::now_ms();

        let late = worker
            .invoke(request("late", "{}", now - 1_000))
            .await
            .unwrap_err();
        assert_eq!(late.code(), tonic::Code::DeadlineExceeded, "{late:?}");
        assert!(late.message().contains("not run"), "{late:?}");

        // The handler sleeps 30 s under a 60 s timeout; the caller waits 5 s.
        let now = lamina_proto::auth::now_ms();
        let stopped = worker
            .invoke(request("stopped", r#"{"do":"sleep"}"#, now + 5_000))
            .await
            .unwrap_err();
        assert_eq!(stopped.code(), tonic::Code::DeadlineExceeded, "{stopped:?}");
        assert!(stopped.message().contains("stopped"), "{stopped:?}");

        // Its sandbox is gone: the next invocation starts a new one.
        let resp = invoke(&c, &name, "{}").await?;
        assert_eq!(json(&resp)["count"], 1, "{resp:?}");
        Ok(())
    });
}
