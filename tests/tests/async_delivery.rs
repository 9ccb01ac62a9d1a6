//! Asynchronous invocation end to end: real controller (scaled clock), real workers and sandboxes.
use std::time::Duration;

use lamina_e2e::*;

const OK: &str = "def handler(event, context):\n    return {'got': event}\n";
const FAIL: &str =
    "def handler(event, context):\n    raise ValueError('boom ' + str(event.get('k')))\n";

fn put(
    name: &str,
    retries: u32,
    on_success: &str,
    on_failure: &str,
) -> v1::PutFunctionEventInvokeConfigRequest {
    v1::PutFunctionEventInvokeConfigRequest {
        function_name: name.to_string(),
        maximum_retry_attempts: Some(retries),
        maximum_event_age_seconds: None,
        on_success: (!on_success.is_empty()).then(|| on_success.to_string()),
        on_failure: (!on_failure.is_empty()).then(|| on_failure.to_string()),
    }
}

const LONG: Duration = Duration::from_secs(90);

#[test]
fn retries_destinations_dead_letters_and_redrive() {
    run(async {
        let cluster = Cluster::start_full(1, ASYNC_FAST, &[])?;
        let c = cluster.client().await?;
        let (ok, fail, sink) = (unique("aok"), unique("afail"), unique("asink"));
        create_python(&c, &ok, OK).await?;
        create_python(&c, &fail, FAIL).await?;
        create_python(&c, &sink, OK).await?;
        let dlq = unique("errs");
        c.put_event_invoke_config(put(&ok, 2, &format!("function:{sink}"), ""))
            .await?;
        let cfg = c
            .put_event_invoke_config(put(&fail, 1, "", &format!("dlq:{dlq}")))
            .await?;
        assert_eq!(cfg.maximum_retry_attempts, 1);
        assert_eq!(cfg.maximum_event_age_seconds, 21_600);
        let got = c.get_event_invoke_config(&fail).await?;
        assert_eq!(got.on_failure, format!("dlq:{dlq}"));

        // Success: one attempt, the record goes to the destination function.
        let id = invoke_async(&c, &ok, r#"{"n":1}"#, None).await?;
        let inv = wait_invocation(&c, &id, LONG, |i| is_terminal(&i.state)).await?;
        assert_eq!(inv.state, "Succeeded", "{inv:?}\n{}", cluster.logs());
        assert_eq!((inv.attempts, inv.function_errors), (1, 0));
        assert_eq!(inv.destination, format!("function:{sink}"));
        let deadline = std::time::Instant::now() + LONG;
        let sink_inv = loop {
            let list = c.list_invocations(&sink, 10).await?;
            if let Some(i) = list.iter().find(|i| i.state == "Succeeded") {
                break i.clone();
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "sink never ran: {list:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // The destination ran with the record as its event: its log shows the record's fields.
        let logs = c.get_logs(&sink, 0, 1000).await?;
        assert!(
            logs.events
                .iter()
                .any(|e| e.request_id == sink_inv.request_id),
            "{logs:?}"
        );

        // Failure: 1 + 1 retries about 0.6 s apart (1 min scaled), then the dead-letter queue.
        let started = std::time::Instant::now();
        let id = invoke_async(&c, &fail, r#"{"k":7}"#, None).await?;
        let inv = wait_invocation(&c, &id, LONG, |i| is_terminal(&i.state)).await?;
        assert_eq!(inv.state, "DeadLettered", "{inv:?}");
        assert_eq!((inv.attempts, inv.function_errors), (2, 2));
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "the retry waited"
        );
        assert_eq!(inv.condition, "RetriesExhausted");
        assert!(
            inv.last_error.contains("ValueError: boom 7"),
            "{}",
            inv.last_error
        );
        let queues = c.list_dead_letter_queues().await?;
        assert!(
            queues.iter().any(|q| q.name == dlq && q.messages == 1),
            "{queues:?}"
        );
        let letters = c.list_dead_letters(&dlq, 0, 0).await?;
        assert_eq!(letters.len(), 1);
        let d = &letters[0];
        assert_eq!((d.request_id.as_str(), d.attempts), (id.as_str(), 2));
        assert_eq!(d.payload, br#"{"k":7}"#);
        let record: serde_json::Value = serde_json::from_slice(&d.record)?;
        assert_eq!(record["version"], "1.0");
        assert_eq!(record["requestContext"]["requestId"], id.as_str());
        assert_eq!(record["requestContext"]["condition"], "RetriesExhausted");
        assert_eq!(record["requestContext"]["approximateInvokeCount"], 2);
        assert!(record["requestContext"]["functionArn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":function:{fail}:$LATEST")));
        assert_eq!(record["requestPayload"]["k"], 7);
        assert_eq!(record["responseContext"]["functionError"], "Unhandled");
        assert_eq!(record["responsePayload"]["errorType"], "ValueError");

        // Fix the function, redrive: a new event that succeeds; the queue is empty.
        c.update_function_code(&fail, zip_of(&[("app.py", OK, 0o644)]))
            .await?;
        let ids = c.redrive_dead_letters(&dlq, vec![]).await?;
        assert_eq!(ids.len(), 1);
        assert!(c.list_dead_letters(&dlq, 0, 0).await?.is_empty());
        let inv = wait_invocation(&c, &ids[0], LONG, |i| is_terminal(&i.state)).await?;
        assert_eq!(inv.state, "Succeeded", "{inv:?}");
        Ok(())
    })
}

#[test]
fn throttled_events_wait_for_a_worker_and_expired_ones_are_dead_lettered() {
    run(async {
        // No worker at first.
        let mut cluster = Cluster::start_full(0, ASYNC_FAST, &[])?;
        let c = cluster.client().await?;
        let (waits, expires) = (unique("await"), unique("aexp"));
        create_python(&c, &waits, OK).await?;
        create_python(&c, &expires, OK).await?;
        let mut short = put(&expires, 2, "", "");
        short.maximum_event_age_seconds = Some(60); // 0.6 s on the scaled clock
        c.put_event_invoke_config(short).await?;

        let expired = invoke_async(&c, &expires, r#"{"late":true}"#, None).await?;
        let mut waiting = Vec::new();
        for i in 0..5 {
            waiting.push(invoke_async(&c, &waits, &format!(r#"{{"i":{i}}}"#), None).await?);
        }
        let inv = wait_invocation(&c, &expired, LONG, |i| is_terminal(&i.state)).await?;
        assert_eq!(inv.state, "DeadLettered", "{inv:?}");
        assert_eq!(
            (inv.condition.as_str(), inv.attempts),
            ("EventAgeExceeded", 0)
        );
        assert_eq!(inv.destination, "dlq:default");
        let letters = c.list_dead_letters("default", 0, 10_000).await?;
        let d = letters
            .iter()
            .find(|d| d.request_id == expired)
            .expect("the expired event is in dlq:default");
        let record: serde_json::Value = serde_json::from_slice(&d.record)?;
        assert_eq!(record["requestContext"]["condition"], "EventAgeExceeded");
        assert_eq!(record["requestPayload"]["late"], true);

        tokio::time::sleep(Duration::from_secs(1)).await;
        for id in &waiting {
            let inv = c.get_invocation(id).await?;
            assert!(!is_terminal(&inv.state), "{inv:?}");
            assert!(inv.throttles >= 1, "no worker: backing off: {inv:?}");
            assert_eq!(inv.attempts, 0);
        }
        cluster.add_worker(&[])?;
        for id in &waiting {
            let inv = wait_invocation(&c, id, LONG, |i| is_terminal(&i.state)).await?;
            assert_eq!(inv.state, "Succeeded", "{inv:?}\n{}", cluster.logs());
            assert_eq!(inv.attempts, 1);
        }
        Ok(())
    })
}

#[test]
fn fnctl_async_idempotency_and_records() {
    run(async {
        let cluster = Cluster::start_full(1, ASYNC_FAST, &[])?;
        let c = cluster.client().await?;
        let name = unique("aidem");
        create_python(&c, &name, OK).await?;
        let fnctl = |args: &[&str]| -> anyhow::Result<String> {
            let out = std::process::Command::new(bin("fnctl"))
                .envs(cluster.fnctl_env())
                .args(args)
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "fnctl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(String::from_utf8(out.stdout)?)
        };
        let first: serde_json::Value = serde_json::from_str(&fnctl(&[
            "invoke",
            &name,
            "--async",
            "--idempotency-key",
            "order-42",
            "-o",
            "json",
        ])?)?;
        assert_eq!(first["StatusCode"], 202);
        assert_eq!(first["Duplicate"], false);
        let id = first["RequestId"].as_str().unwrap().to_string();
        let again: serde_json::Value = serde_json::from_str(&fnctl(&[
            "invoke",
            &name,
            "--async",
            "--idempotency-key",
            "order-42",
            "-o",
            "json",
        ])?)?;
        assert_eq!(again["RequestId"], id.as_str());
        assert_eq!(again["Duplicate"], true);
        // Plain output is the request id alone.
        let other = fnctl(&["invoke", &name, "--async", "--payload", r#"{"x":1}"#])?;
        assert_eq!(other.trim().len(), 36, "{other:?}");

        wait_invocation(&c, &id, LONG, |i| i.state == "Succeeded").await?;
        let rec: serde_json::Value =
            serde_json::from_str(&fnctl(&["invocation", "get", &id, "-o", "json"])?)?;
        assert_eq!(rec["State"], "Succeeded");
        assert_eq!(rec["IdempotencyKey"], "order-42");
        assert_eq!(rec["Attempts"], 1);
        // One event only for the key: two invocations of the function in all.
        wait_invocation(&c, other.trim(), LONG, |i| i.state == "Succeeded").await?;
        let list: serde_json::Value =
            serde_json::from_str(&fnctl(&["invocations", &name, "-o", "json"])?)?;
        assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
        let table = fnctl(&["invocations", &name])?;
        assert!(
            table.starts_with("REQUEST-ID") && table.contains("Succeeded"),
            "{table}"
        );

        let cfg: serde_json::Value = serde_json::from_str(&fnctl(&[
            "event-config",
            "put",
            &name,
            "--max-retries",
            "0",
            "--max-age",
            "120",
            "--on-failure",
            "dlq:mine",
            "-o",
            "json",
        ])?)?;
        assert_eq!(cfg["MaximumRetryAttempts"], 0);
        assert_eq!(cfg["MaximumEventAgeInSeconds"], 120);
        assert_eq!(cfg["OnFailure"], "dlq:mine");
        let got = fnctl(&["event-config", "get", &name])?;
        assert!(got.contains("dlq:mine") && got.contains("120"), "{got}");
        let missing = std::process::Command::new(bin("fnctl"))
            .envs(cluster.fnctl_env())
            .args(["invocation", "get", "nope"])
            .output()?;
        assert_eq!(missing.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&missing.stderr).contains("invocation `nope` not found"));
        // Oversized async payloads are refused before anything is queued.
        let big = format!(r#"{{"b":"{}"}}"#, "x".repeat(1024 * 1024));
        let err = c
            .invoke_async(&name, big.into_bytes(), None)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("asynchronous payload must be at most"),
            "{err}"
        );
        Ok(())
    })
}
