//! Python and Node functions end to end: hello, context, warm reuse, environment, code and
//! configuration updates, logs, DryRun.
use lamina_e2e::*;

const PY_HELLO: &str = r#"
import os
def handler(event, context):
    return {
        "hello": event.get("name"),
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "remaining": context.get_remaining_time_in_millis(),
        "arn": context.invoked_function_arn,
        "env_name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
    }
"#;

#[test]
fn python_hello_with_context() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("pyhello");
        create_python(&c, &name, PY_HELLO).await?;
        let resp = invoke(&c, &name, r#"{"name":"lamina"}"#).await?;
        assert_eq!(resp.status_code, 200);
        assert_eq!(resp.function_error, "", "{:?}\n{}", resp, cluster.logs());
        assert_eq!(resp.executed_version, "$LATEST");
        let v = json(&resp);
        assert_eq!(v["hello"], "lamina");
        assert_eq!(v["request_id"], resp.request_id.as_str());
        assert_eq!(v["function_name"], name.as_str());
        assert_eq!(v["env_name"], name.as_str());
        assert_eq!(v["memory"], 1024);
        assert_eq!(v["task_root"], "/var/task");
        assert!(v["arn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":function:{name}")));
        let remaining = v["remaining"].as_i64().unwrap();
        assert!(
            remaining > 0 && remaining <= 10_000,
            "remaining {remaining}"
        );
        assert!(
            resp.log_tail.contains("START RequestId:"),
            "{}",
            resp.log_tail
        );
        assert!(
            resp.log_tail.contains("REPORT RequestId:"),
            "{}",
            resp.log_tail
        );
        Ok(())
    })
}

const NODE_HELLO: &str = r#"
let count = 0;
exports.handler = async (event, context) => {
  count += 1;
  console.log("node says hi");
  return { hello: event.name, requestId: context.awsRequestId, count, fn: context.functionName };
};
exports.cb = (event, context, callback) => { callback(null, { viaCallback: true, n: event.n + 1 }); };
"#;

#[test]
fn node_hello_async_and_callback() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("nodehello");
        let zip = zip_of(&[("index.js", NODE_HELLO, 0o644)]);
        c.create_function(spec(&name, "nodejs20.x", "index.handler"), zip.clone())
            .await?;
        let resp = invoke(&c, &name, r#"{"name":"lamina"}"#).await?;
        assert_eq!(resp.function_error, "", "{:?}\n{}", resp, cluster.logs());
        let v = json(&resp);
        assert_eq!(v["hello"], "lamina");
        assert_eq!(v["requestId"], resp.request_id.as_str());
        assert_eq!(v["fn"], name.as_str());
        assert!(resp.log_tail.contains("node says hi"), "{}", resp.log_tail);
        // Warm: same sandbox, module state kept.
        let v2 = json(&invoke(&c, &name, r#"{"name":"again"}"#).await?);
        assert_eq!(v2["count"], 2);

        let cb = unique("nodecb");
        c.create_function(spec(&cb, "nodejs20.x", "index.cb"), zip)
            .await?;
        let v = json(&invoke(&c, &cb, r#"{"n":41}"#).await?);
        assert_eq!(v["viaCallback"], true);
        assert_eq!(v["n"], 42);
        Ok(())
    })
}

const PY_COUNTER: &str = r#"
import os
count = 0
print("init ran")
def handler(event, context):
    global count
    count += 1
    return {"count": count, "pid": os.getpid()}
"#;

#[test]
fn warm_reuse_runs_init_once() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("counter");
        create_python(&c, &name, PY_COUNTER).await?;
        let first = invoke(&c, &name, "{}").await?;
        assert_eq!(json(&first)["count"], 1, "{}", cluster.logs());
        assert!(
            first.log_tail.contains("Init Duration:"),
            "{}",
            first.log_tail
        );
        for n in 2..=4 {
            let r = invoke(&c, &name, "{}").await?;
            assert_eq!(json(&r)["count"], n);
            assert!(!r.log_tail.contains("Init Duration:"), "{}", r.log_tail);
        }
        let logs = c.get_logs(&name, 0, 0).await?;
        let text: Vec<&str> = logs.events.iter().map(|e| e.message.as_str()).collect();
        let joined = text.join("\n");
        assert_eq!(joined.matches("init ran").count(), 1, "{joined}");
        assert_eq!(joined.matches("START RequestId:").count(), 4, "{joined}");
        assert_eq!(joined.matches("END RequestId:").count(), 4, "{joined}");
        Ok(())
    })
}

#[test]
fn environment_variables_and_config_update() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("env");
        let src = "import os\ndef handler(e, c):\n    return {k: os.environ.get(k) for k in ['GREETING', 'WITH_EQ', 'AWS_REGION', 'TZ', 'AWS_EXECUTION_ENV', 'AWS_LAMBDA_FUNCTION_MEMORY_SIZE']}\n";
        let s = with_env(
            spec(&name, "python3.11", "app.handler"),
            &[("GREETING", "hi"), ("WITH_EQ", "a=b=c")],
        );
        c.create_function(s, zip_of(&[("app.py", src, 0o644)]))
            .await?;
        let v = json(&invoke(&c, &name, "{}").await?);
        assert_eq!(v["GREETING"], "hi");
        assert_eq!(v["WITH_EQ"], "a=b=c");
        assert_eq!(v["AWS_REGION"], "us-east-1");
        assert_eq!(v["TZ"], ":UTC");
        assert_eq!(v["AWS_EXECUTION_ENV"], "AWS_Lambda_python3.11");
        assert_eq!(v["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "1024");

        let before = c.get_function(&name).await?;
        let after = c
            .update_function_configuration(v1::UpdateFunctionConfigurationRequest {
                function_name: name.clone(),
                memory_size_mb: Some(512),
                replace_environment: true,
                environment: [("GREETING".to_string(), "hello".to_string())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            })
            .await?;
        assert_ne!(before.revision_id, after.revision_id);
        let v = json(&invoke(&c, &name, "{}").await?);
        assert_eq!(v["GREETING"], "hello");
        assert_eq!(v["WITH_EQ"], serde_json::Value::Null);
        assert_eq!(v["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "512");
        Ok(())
    })
}

#[test]
fn update_code_takes_effect_on_next_invocation() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("upd");
        create_python(&c, &name, "def handler(e, c):\n    return 'one'\n").await?;
        assert_eq!(json(&invoke(&c, &name, "{}").await?), "one");
        let zip = zip_of(&[("app.py", "def handler(e, c):\n    return 'two'\n", 0o644)]);
        let updated = c.update_function_code(&name, zip).await?;
        assert!(updated.code_size > 0);
        assert_eq!(json(&invoke(&c, &name, "{}").await?), "two");
        Ok(())
    })
}

#[test]
fn provided_runtime_runs_an_executable_bootstrap() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("provided");
        // A bootstrap in Python speaking the Runtime API by hand.
        let bootstrap = r#"#!/usr/bin/python3.11
import json, os, http.client
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
conn = http.client.HTTPConnection(api)
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    r = conn.getresponse(); body = r.read()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    out = json.dumps({"echo": json.loads(body), "handler": os.environ.get("_HANDLER")})
    conn.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", out)
    r = conn.getresponse(); r.read()
    assert r.status == 202, r.status
"#;
        let zip = zip_of(&[("bootstrap", bootstrap, 0o755)]);
        c.create_function(spec(&name, "provided", "my.handler"), zip)
            .await?;
        let v = json(&invoke(&c, &name, r#"{"x":1}"#).await?);
        assert_eq!(v["echo"]["x"], 1, "{}", cluster.logs());
        assert_eq!(v["handler"], "my.handler");
        Ok(())
    })
}

#[test]
fn dry_run_validates_without_running() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("dry");
        create_python(
            &c,
            &name,
            "def handler(e, c):\n    raise Exception('must not run')\n",
        )
        .await?;
        let resp = c
            .invoke(v1::InvokeRequest {
                function_name: name.clone(),
                invocation_type: v1::InvocationType::DryRun as i32,
                payload: b"{}".to_vec(),
                ..Default::default()
            })
            .await?;
        assert_eq!(resp.status_code, 204);
        assert!(resp.payload.is_empty());
        assert!(c.get_logs(&name, 0, 0).await?.events.is_empty());
        Ok(())
    })
}

/// The sandbox directories of one worker's cgroup (freezer hierarchy on v1, unified on v2).
fn sandbox_cgroups(worker_id: &str) -> Vec<std::path::PathBuf> {
    let v1 = std::path::Path::new("/sys/fs/cgroup/freezer/lamina").join(worker_id);
    let parent = if v1.exists() {
        v1
    } else {
        std::path::Path::new("/sys/fs/cgroup/lamina").join(worker_id)
    };
    std::fs::read_dir(parent)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

fn is_frozen(cgroup: &std::path::Path) -> bool {
    match std::fs::read_to_string(cgroup.join("freezer.state")) {
        Ok(s) => s.trim() == "FROZEN",
        Err(_) => {
            std::fs::read_to_string(cgroup.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        }
    }
}

/// Whether the cgroup is frozen within 10 s (idle sandboxes are frozen after a grace period).
async fn becomes_frozen(cgroup: &std::path::Path) -> bool {
    for _ in 0..200 {
        if is_frozen(cgroup) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[test]
fn the_freeze_grace_is_configurable_from_frozen_before_the_answer_to_long() {
    run(async {
        // 0: frozen before the answer is returned, as Lambda.
        let cluster = Cluster::start_with(1, &["--freeze-after-ms", "0"])?;
        let c = cluster.client().await?;
        let name = unique("freeze0");
        create_python(&c, &name, PY_COUNTER).await?;
        assert_eq!(json(&invoke(&c, &name, "{}").await?)["count"], 1);
        let cgroups = sandbox_cgroups(&cluster.worker_ids[0]);
        assert_eq!(cgroups.len(), 1, "one sandbox: {cgroups:?}");
        assert!(is_frozen(&cgroups[0]), "frozen when the answer arrives");
        assert_eq!(json(&invoke(&c, &name, "{}").await?)["count"], 2);
        assert!(is_frozen(&cgroups[0]));
        drop(cluster);

        // A minute: still running right after the answer, and reused without a thaw.
        let cluster = Cluster::start_with(1, &["--freeze-after-ms", "60000"])?;
        let c = cluster.client().await?;
        let name = unique("freeze60");
        create_python(&c, &name, PY_COUNTER).await?;
        assert_eq!(json(&invoke(&c, &name, "{}").await?)["count"], 1);
        let cgroups = sandbox_cgroups(&cluster.worker_ids[0]);
        assert_eq!(cgroups.len(), 1, "one sandbox: {cgroups:?}");
        assert!(!is_frozen(&cgroups[0]), "not frozen within the grace");
        assert_eq!(json(&invoke(&c, &name, "{}").await?)["count"], 2);
        assert!(!is_frozen(&cgroups[0]));
        Ok(())
    })
}

#[test]
fn idle_sandboxes_are_frozen_and_reaped_after_the_keep_alive() {
    run(async {
        let cluster = Cluster::start_with(1, &["--keep-alive-s", "2"])?;
        let c = cluster.client().await?;
        let name = unique("keepalive");
        create_python(&c, &name, PY_COUNTER).await?;
        assert_eq!(json(&invoke(&c, &name, "{}").await?)["count"], 1);
        let cgroups = sandbox_cgroups(&cluster.worker_ids[0]);
        assert_eq!(cgroups.len(), 1, "one sandbox: {cgroups:?}");
        assert!(
            becomes_frozen(&cgroups[0]).await,
            "an idle sandbox is frozen after the grace (--freeze-after-ms, 50 ms)"
        );
        // Thawed for the next invocation, which reuses it.
        assert_eq!(json(&invoke(&c, &name, "{}").await?)["count"], 2);
        assert!(becomes_frozen(&cgroups[0]).await);
        // Past the keep-alive the sandbox is destroyed; the next invocation starts a new one.
        let mut gone = false;
        for _ in 0..100 {
            if sandbox_cgroups(&cluster.worker_ids[0]).is_empty() {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(
            gone,
            "idle sandbox not reaped after the keep-alive\n{}",
            cluster.logs()
        );
        let r = invoke(&c, &name, "{}").await?;
        assert_eq!(json(&r)["count"], 1);
        assert!(r.log_tail.contains("Init Duration:"), "{}", r.log_tail);
        Ok(())
    })
}

/// Each log line is stamped with when the function wrote it (read off the sandbox's output as it
/// is written), not with when the controller received the whole log: two lines two seconds apart
/// keep their distance.
#[test]
fn log_lines_carry_the_time_they_were_written() {
    require_root();
    let cluster = Cluster::start(1).unwrap();
    run(async {
        let c = cluster.client().await?;
        let name = unique("stamps");
        let code = "import time\ndef handler(e, c):\n    print('early line', flush=True)\n    time.sleep(2)\n    print('late line', flush=True)\n    return 1\n";
        let mut s = spec(&name, "python3.11", "app.handler");
        s.timeout_seconds = 10;
        c.create_function(s, zip_of(&[("app.py", code, 0o644)]))
            .await?;
        invoke(&c, &name, "{}").await?;
        let events = c.get_logs(&name, 0, 100).await?.events;
        let at = |text: &str| {
            events
                .iter()
                .find(|e| e.message.contains(text))
                .map(|e| e.timestamp_ms)
                .unwrap_or_else(|| panic!("no `{text}` line in {events:?}"))
        };
        let (start, early, late, end) = (at("START"), at("early line"), at("late line"), at("END"));
        assert!(late >= early + 1_000, "{events:?}");
        assert!(start <= early && late <= end, "{events:?}");
        Ok(())
    });
}
