//! The Lambda REST API driven by real boto3 and the AWS CLI v1 (tests/python/lambda_rest.py):
//! create from a zip, waiters, sync/async/dry-run invokes with log tails and client context,
//! event invoke configs, code and configuration updates, pagination, deletes and error codes;
//! versions and aliases; reserved and provisioned concurrency and the account settings; and the
//! answer of the REST front to clients of services Lamina does not serve.
use std::time::Duration;

use lamina_e2e::*;

#[test]
fn boto3_and_the_aws_cli_drive_the_rest_api() {
    run(async {
        let cluster = Cluster::start(1)?;
        let prefix = unique("rest");
        let out = lambda_rest_py(&cluster, &["flow", &prefix])?;
        assert!(out.contains("flow passed"), "{out}");

        // The event accepted with 202 over REST ran to success on the worker.
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix("ASYNC_REQUEST_ID="))
            .expect("the script prints the async request id")
            .trim()
            .to_string();
        let c = cluster.client().await?;
        let inv =
            wait_invocation(&c, &id, Duration::from_secs(60), |i| is_terminal(&i.state)).await?;
        assert_eq!(inv.state, "Succeeded", "{inv:?}\n{}", cluster.logs());
        let logs = c.get_logs(&format!("{prefix}-0"), 0, 0).await?;
        assert!(
            logs.events
                .iter()
                .any(|e| e.request_id == id && e.message.contains("async-1")),
            "the async invocation's log line is stored: {:?}",
            logs.events
        );
        Ok(())
    });
}

#[test]
fn boto3_and_the_aws_cli_drive_versions_and_aliases() {
    run(async {
        let cluster = Cluster::start(1)?;
        let out = lambda_rest_py(&cluster, &["versions", &unique("restver")])?;
        assert!(out.contains("versions passed"), "{out}");
        Ok(())
    });
}

#[test]
fn boto3_and_the_aws_cli_drive_reserved_and_provisioned_concurrency() {
    run(async {
        // A limit of its own, so the account settings answer shows the controller's figure.
        let cluster = Cluster::start_full(1, &["--concurrency-limit", "300"], &[])?;
        let out = lambda_rest_py(&cluster, &["concurrency", &unique("restconc"), "300"])?;
        assert!(out.contains("concurrency passed"), "{out}");
        Ok(())
    });
}

/// Issue 14, items 16-18, through real boto3 and the AWS CLI: `Publish` on create and code update
/// (update -> publish -> move alias), `RevisionId` on UpdateFunctionCode; Update/Delete/List of
/// event invoke configs, a missing layer as a 4xx, every FunctionName form of the model,
/// `FunctionVersion=ALL`, tags, the layer routes; Role, Architectures, TracingConfig,
/// LoggingConfig and the `provided.al2`/`provided.al2023` runtimes kept as sent (or refused).
#[test]
fn boto3_and_the_aws_cli_see_what_they_sent() {
    run(async {
        let cluster = Cluster::start(1)?;
        let out = lambda_rest_py(&cluster, &["fidelity", &unique("restfid")])?;
        assert!(out.contains("fidelity passed"), "{out}");
        Ok(())
    });
}

/// The REST front dispatches by protocol and service: boto3 clients of services Lamina does not
/// serve get their protocol's error (AWS JSON 1.0 for sqs, 1.1 for events, query for
/// sns), which botocore parses into a `ClientError` with a code, not a hang or an HTML 404; a
/// forged signature is refused in the same shape.
#[test]
fn boto3_clients_of_unserved_services_get_their_protocols_error() {
    run(async {
        let cluster = Cluster::start(1)?;
        let out = lambda_rest_py(&cluster, &["unserved"])?;
        assert!(out.contains("unserved passed"), "{out}");
        Ok(())
    });
}
