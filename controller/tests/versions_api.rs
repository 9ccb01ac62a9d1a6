//! Versions and aliases through the real controller (gRPC on loopback) and a registered fake worker
//! that records what the controller forwards: which version's configuration, which invoked ARN.
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use lamina_controller::{Controller, ControllerConfig};
use lamina_proto::v1::{self, functions_client::FunctionsClient, update_function_code_request};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;

const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:f";

/// What the worker was asked to run.
#[derive(Debug, Clone)]
struct Seen {
    version: String,
    revision_id: String,
    code_sha256: String,
    invoked_arn: String,
    payload: Vec<u8>,
}

/// Records every invocation and answers with the version that ran. A payload of `"hold"` waits for
/// a permit of `gate` and then fails (Unhandled), so a test can change things between two deliveries.
#[derive(Clone)]
struct RecordingWorker {
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Arc<Semaphore>,
    holds: Arc<Mutex<u32>>,
}

impl RecordingWorker {
    fn new() -> RecordingWorker {
        RecordingWorker {
            seen: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            holds: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[tonic::async_trait]
impl FakeInvoke for RecordingWorker {
    async fn invoke(
        &self,
        request: tonic::Request<v1::WorkerInvokeRequest>,
    ) -> Result<tonic::Response<v1::WorkerInvokeResponse>, tonic::Status> {
        let r = request.into_inner();
        let f = r.function.unwrap();
        self.seen.lock().unwrap().push(Seen {
            version: f.version.clone(),
            revision_id: f.revision_id.clone(),
            code_sha256: f.code_sha256.clone(),
            invoked_arn: r.invoked_function_arn.clone(),
            payload: r.payload.clone(),
        });
        let mut function_error = String::new();
        if r.payload == b"hold" {
            let first = {
                let mut holds = self.holds.lock().unwrap();
                *holds += 1;
                *holds == 1
            };
            if first {
                self.gate.acquire().await.unwrap().forget();
                function_error = "Unhandled".to_string();
            }
        }
        Ok(tonic::Response::new(v1::WorkerInvokeResponse {
            function_error,
            payload: f.version.into_bytes(),
            logs: format!("END RequestId: {}\n", r.request_id),
            ..Default::default()
        }))
    }
}

/// The in-process controller (stopped on drop).
struct Controlled {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
    /// Stops the fake worker and its heartbeats.
    _worker_stop: Option<tokio_util::sync::DropGuard>,
}

impl Controlled {
    fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for Controlled {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

struct Setup {
    run: Controlled,
    worker: RecordingWorker,
    c: UserApi,
}

/// A controller whose async retries are 100x faster than real time, a registered recording
/// worker that keeps heartbeating, and function `f` (code `v1`).
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ControllerConfig::new(dir.path().join("data"));
    config.worker_timeout = Duration::from_millis(3000);
    config.heartbeat_interval = Duration::from_millis(200);
    config.queue.time_scale = 0.01;
    config.auth = false;
    let controller = Controller::open(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(controller.serve(listener, shutdown.clone()));
    let mut run = Controlled {
        addr,
        shutdown,
        _dir: dir,
        _worker_stop: None,
    };

    let worker = RecordingWorker::new();
    let stop = serve_fake_worker(run.addr, worker.clone(), 4096).await;

    let mut c = user_api(run.addr).await;
    create(
        &mut c,
        create_msgs(Some(spec("f")), &zip_of(&[("app.py", b"v1")]), 1024),
    )
    .await
    .unwrap();
    run._worker_stop = Some(stop.drop_guard());
    Setup { run, worker, c }
}

async fn update_code(c: &mut FunctionsClient<Channel>, code: &[u8]) -> v1::FunctionConfiguration {
    use update_function_code_request::Part;
    let msgs = vec![
        v1::UpdateFunctionCodeRequest {
            part: Some(Part::FunctionName("f".into())),
        },
        v1::UpdateFunctionCodeRequest {
            part: Some(Part::CodeChunk(zip_of(&[("app.py", code)]))),
        },
    ];
    c.update_function_code(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner()
}

async fn publish(
    c: &mut UserApi,
    r: v1::PublishVersionRequest,
) -> Result<v1::FunctionConfiguration, tonic::Status> {
    c.versions.publish_version(r).await.map(|r| r.into_inner())
}

fn publish_f() -> v1::PublishVersionRequest {
    v1::PublishVersionRequest {
        function_name: "f".into(),
        ..Default::default()
    }
}

fn alias(name: &str, version: &str, weights: &[(&str, f64)]) -> v1::CreateAliasRequest {
    v1::CreateAliasRequest {
        function_name: "f".into(),
        name: name.into(),
        function_version: version.into(),
        routing_config: Some(v1::RoutingConfig {
            additional_version_weights: weights.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }),
        description: String::new(),
    }
}

async fn get(
    c: &mut FunctionsClient<Channel>,
    qualifier: &str,
) -> Result<v1::FunctionConfiguration, tonic::Status> {
    c.get_function(v1::GetFunctionRequest {
        function_name: "f".into(),
        qualifier: qualifier.into(),
    })
    .await
    .map(|r| r.into_inner())
}

async fn delete(c: &mut FunctionsClient<Channel>, qualifier: &str) -> Result<(), tonic::Status> {
    c.delete_function(v1::DeleteFunctionRequest {
        function_name: "f".into(),
        qualifier: qualifier.into(),
    })
    .await
    .map(|_| ())
}

async fn invoke(
    c: &mut FunctionsClient<Channel>,
    qualifier: &str,
    kind: v1::InvocationType,
    payload: &[u8],
) -> Result<v1::InvokeResponse, tonic::Status> {
    c.invoke(v1::InvokeRequest {
        function_name: "f".into(),
        qualifier: qualifier.into(),
        invocation_type: kind as i32,
        payload: payload.to_vec(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_list_and_get_versions() {
    let Setup { mut c, run, .. } = setup().await;
    let latest = get(&mut c, "").await.unwrap();

    let v1 = publish(&mut c, publish_f()).await.unwrap();
    assert_eq!(v1.version, "1");
    assert_eq!(v1.arn, format!("{ARN}:1"));
    assert_eq!(v1.code_sha256, latest.code_sha256);
    assert_ne!(
        v1.revision_id, latest.revision_id,
        "a version never shares $LATEST's sandboxes"
    );
    // Unchanged $LATEST: the same version comes back.
    let again = publish(&mut c, publish_f()).await.unwrap();
    assert_eq!(
        (again.version.as_str(), &again.revision_id),
        ("1", &v1.revision_id)
    );

    // Preconditions name what did not match, and publish nothing.
    let mut stale = publish_f();
    stale.revision_id = "not-the-revision".into();
    assert_status(
        publish(&mut c, stale).await,
        Code::FailedPrecondition,
        "revision_id",
    );
    let mut stale = publish_f();
    stale.code_sha256 = "00".repeat(32);
    assert_status(
        publish(&mut c, stale).await,
        Code::FailedPrecondition,
        "code_sha256",
    );

    let latest2 = update_code(&mut c, b"v2").await;
    let mut exact = publish_f();
    exact.code_sha256 = latest2.code_sha256.clone();
    exact.revision_id = latest2.revision_id.clone();
    exact.description = "second".into();
    let v2 = publish(&mut c, exact).await.unwrap();
    assert_eq!(v2.version, "2");
    assert_eq!(v2.description, "second");
    assert_eq!(v2.code_sha256, latest2.code_sha256);

    let listed = c
        .versions
        .list_versions(v1::ListVersionsRequest {
            function_name: "f".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    let versions: Vec<(&str, &str)> = listed
        .iter()
        .map(|v| (v.version.as_str(), v.code_sha256.as_str()))
        .collect();
    assert_eq!(
        versions,
        [
            ("$LATEST", latest2.code_sha256.as_str()),
            ("1", latest.code_sha256.as_str()),
            ("2", latest2.code_sha256.as_str()),
        ]
    );

    let got = get(&mut c, "1").await.unwrap();
    assert_eq!(
        (got.version.as_str(), got.arn.as_str()),
        ("1", &*format!("{ARN}:1"))
    );
    assert_eq!(got.code_sha256, latest.code_sha256);
    // Version 1's code is still served to workers although $LATEST moved on.
    assert_eq!(
        fetch_code(run.addr, &latest.code_sha256).await.unwrap(),
        zip_of(&[("app.py", b"v1")])
    );
    assert_eq!(get(&mut c, "$LATEST").await.unwrap().version, "$LATEST");
    assert_status(get(&mut c, "7").await, Code::NotFound, "no version 7");
    assert_status(get(&mut c, "nope").await, Code::NotFound, "no alias `nope`");
    assert_status(
        get(&mut c, "0").await,
        Code::InvalidArgument,
        "invalid qualifier",
    );
    assert_status(
        publish(
            &mut c,
            v1::PublishVersionRequest {
                function_name: "missing".into(),
                ..Default::default()
            },
        )
        .await,
        Code::NotFound,
        "function `missing` not found",
    );
    run.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_are_validated_and_keep_their_versions() {
    let Setup { mut c, run, .. } = setup().await;
    publish(&mut c, publish_f()).await.unwrap();
    update_code(&mut c, b"v2").await;
    publish(&mut c, publish_f()).await.unwrap();

    for (req, code, needle) in [
        (
            alias("1abc", "1", &[]),
            Code::InvalidArgument,
            "start with a letter",
        ),
        (
            alias("123", "1", &[]),
            Code::InvalidArgument,
            "numbers name versions",
        ),
        (
            alias("$LATEST", "1", &[]),
            Code::InvalidArgument,
            "reserved",
        ),
        (
            alias("a.b", "1", &[]),
            Code::InvalidArgument,
            "only letters",
        ),
        (alias("live", "9", &[]), Code::NotFound, "no version 9"),
        (
            alias("live", "", &[]),
            Code::InvalidArgument,
            "function_version",
        ),
        (
            alias("live", "1", &[("2", 0.5), ("3", 0.1)]),
            Code::InvalidArgument,
            "at most one additional version",
        ),
        (
            alias("live", "1", &[("2", 1.0)]),
            Code::InvalidArgument,
            "between 0 and 1",
        ),
        (
            alias("live", "1", &[("2", 0.0)]),
            Code::InvalidArgument,
            "between 0 and 1",
        ),
        (
            alias("live", "1", &[("1", 0.5)]),
            Code::InvalidArgument,
            "another one",
        ),
        (
            alias("live", "1", &[("5", 0.5)]),
            Code::NotFound,
            "no version 5",
        ),
        (
            alias("live", "1", &[("$LATEST", 0.5)]),
            Code::InvalidArgument,
            "$LATEST",
        ),
    ] {
        let name = req.name.clone();
        let r = c.versions.create_alias(req).await.map(|r| r.into_inner());
        assert_status(r, code, needle);
        // Nothing was stored.
        assert_status(
            c.versions
                .get_alias(v1::GetAliasRequest {
                    function_name: "f".into(),
                    name,
                })
                .await,
            Code::NotFound,
            "no alias",
        );
    }
    let mut missing = alias("live", "1", &[]);
    missing.function_name = "missing".into();
    assert_status(
        c.versions.create_alias(missing).await,
        Code::NotFound,
        "function `missing`",
    );

    let live = c
        .versions
        .create_alias(alias("live", "1", &[("2", 0.25)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(live.arn, format!("{ARN}:live"));
    assert_eq!(
        live.routing_config.unwrap().additional_version_weights["2"],
        0.25
    );
    assert_status(
        c.versions.create_alias(alias("live", "2", &[])).await,
        Code::AlreadyExists,
        "already has an alias `live`",
    );
    c.versions
        .create_alias(alias("beta", "$LATEST", &[]))
        .await
        .unwrap();
    let names: Vec<String> = c
        .versions
        .list_aliases(v1::ListAliasesRequest {
            function_name: "f".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .aliases
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["beta", "live"]);
    // GetFunction with an alias shows its primary version.
    let via_alias = get(&mut c, "live").await.unwrap();
    assert_eq!(
        (via_alias.version.as_str(), via_alias.arn.as_str()),
        ("1", &*format!("{ARN}:live"))
    );

    // Versions an alias routes to cannot go; neither can $LATEST or an alias through DeleteFunction.
    assert_status(
        delete(&mut c, "1").await,
        Code::FailedPrecondition,
        "alias `live`",
    );
    assert_status(
        delete(&mut c, "2").await,
        Code::FailedPrecondition,
        "alias `live`",
    );
    assert_status(
        delete(&mut c, "$LATEST").await,
        Code::InvalidArgument,
        "$LATEST",
    );
    assert_status(
        delete(&mut c, "live").await,
        Code::InvalidArgument,
        "DeleteAlias",
    );
    assert_status(delete(&mut c, "8").await, Code::NotFound, "no version 8");

    // Updates: a stale revision is refused; unset fields are kept; routing can be cleared.
    let stale = v1::UpdateAliasRequest {
        function_name: "f".into(),
        name: "live".into(),
        function_version: Some("2".into()),
        revision_id: "stale".into(),
        ..Default::default()
    };
    assert_status(
        c.versions.update_alias(stale).await,
        Code::FailedPrecondition,
        "revision",
    );
    let bad = v1::UpdateAliasRequest {
        function_name: "f".into(),
        name: "live".into(),
        function_version: Some("2".into()),
        ..Default::default()
    };
    // Primary 2 with additional 2 kept from before: refused, nothing changed.
    assert_status(
        c.versions.update_alias(bad).await,
        Code::InvalidArgument,
        "another one",
    );
    let updated = c
        .versions
        .update_alias(v1::UpdateAliasRequest {
            function_name: "f".into(),
            name: "live".into(),
            function_version: Some("2".into()),
            routing_config: Some(v1::RoutingConfig::default()),
            description: Some("moved".into()),
            revision_id: live.revision_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.function_version, "2");
    assert_eq!(updated.description, "moved");
    assert!(updated
        .routing_config
        .unwrap()
        .additional_version_weights
        .is_empty());
    assert_ne!(updated.revision_id, live.revision_id);

    // Version 1 is free now.
    delete(&mut c, "1").await.unwrap();
    assert_status(get(&mut c, "1").await, Code::NotFound, "no version 1");
    assert_status(
        c.versions
            .update_alias(v1::UpdateAliasRequest {
                function_name: "f".into(),
                name: "live".into(),
                function_version: Some("1".into()),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "no version 1",
    );
    c.versions
        .delete_alias(v1::DeleteAliasRequest {
            function_name: "f".into(),
            name: "live".into(),
        })
        .await
        .unwrap();
    assert_status(
        c.versions
            .delete_alias(v1::DeleteAliasRequest {
                function_name: "f".into(),
                name: "live".into(),
            })
            .await,
        Code::NotFound,
        "no alias `live`",
    );

    // Deleting the function takes its versions and aliases; a new one starts from nothing.
    delete(&mut c, "").await.unwrap();
    create(
        &mut c,
        create_msgs(Some(spec("f")), &zip_of(&[("app.py", b"new")]), 1024),
    )
    .await
    .unwrap();
    let fresh = c
        .versions
        .list_aliases(v1::ListAliasesRequest {
            function_name: "f".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(fresh.aliases.is_empty());
    let versions = c
        .versions
        .list_versions(v1::ListVersionsRequest {
            function_name: "f".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(versions.len(), 1, "only $LATEST: {versions:?}");
    assert_eq!(publish(&mut c, publish_f()).await.unwrap().version, "1");
    run.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_run_the_version_the_qualifier_names() {
    let Setup {
        mut c, run, worker, ..
    } = setup().await;
    let v1 = publish(&mut c, publish_f()).await.unwrap();
    let latest = update_code(&mut c, b"v2").await;
    let v2 = publish(&mut c, publish_f()).await.unwrap();
    c.versions
        .create_alias(alias("live", "1", &[]))
        .await
        .unwrap();

    use v1::InvocationType::{DryRun, RequestResponse};
    for (qualifier, version, revision, arn) in [
        ("", "$LATEST", &latest.revision_id, ARN.to_string()),
        (
            "$LATEST",
            "$LATEST",
            &latest.revision_id,
            format!("{ARN}:$LATEST"),
        ),
        ("1", "1", &v1.revision_id, format!("{ARN}:1")),
        ("2", "2", &v2.revision_id, format!("{ARN}:2")),
        ("live", "1", &v1.revision_id, format!("{ARN}:live")),
    ] {
        let r = invoke(&mut c, qualifier, RequestResponse, b"{}")
            .await
            .unwrap();
        assert_eq!(r.executed_version, version, "{qualifier}");
        assert_eq!(r.payload, version.as_bytes(), "{qualifier}");
        let seen = worker.seen().pop().unwrap();
        assert_eq!(
            (&seen.version, &seen.revision_id, &seen.invoked_arn),
            (&version.to_string(), revision, &arn),
            "{qualifier}"
        );
        let code = if version == "1" {
            &v1.code_sha256
        } else {
            &latest.code_sha256
        };
        assert_eq!(&seen.code_sha256, code, "{qualifier}");
    }

    // DRY_RUN checks the qualifier without running anything.
    let before = worker.seen().len();
    let dry = invoke(&mut c, "live", DryRun, b"").await.unwrap();
    assert_eq!((dry.status_code, dry.executed_version.as_str()), (204, "1"));
    assert_status(
        invoke(&mut c, "9", DryRun, b"").await,
        Code::NotFound,
        "no version 9",
    );
    assert_status(
        invoke(&mut c, "gone", DryRun, b"").await,
        Code::NotFound,
        "no alias `gone`",
    );
    assert_status(
        invoke(&mut c, "9", RequestResponse, b"").await,
        Code::NotFound,
        "no version 9",
    );
    assert_status(
        invoke(&mut c, "a b", RequestResponse, b"").await,
        Code::InvalidArgument,
        "invalid qualifier",
    );
    assert_eq!(worker.seen().len(), before);

    // A weighted alias sends both versions invocations (0.5 each: missing one in 60 tries has
    // probability 2^-59).
    c.versions
        .update_alias(v1::UpdateAliasRequest {
            function_name: "f".into(),
            name: "live".into(),
            routing_config: Some(v1::RoutingConfig {
                additional_version_weights: [("2".to_string(), 0.5)].into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut ran = std::collections::BTreeMap::new();
    for _ in 0..60 {
        let r = invoke(&mut c, "live", RequestResponse, b"{}")
            .await
            .unwrap();
        assert_eq!(r.payload, r.executed_version.as_bytes());
        *ran.entry(r.executed_version).or_insert(0) += 1;
    }
    assert_eq!(
        ran.keys().cloned().collect::<Vec<_>>(),
        ["1", "2"],
        "{ran:?}"
    );
    assert!(worker
        .seen()
        .iter()
        .rev()
        .take(60)
        .all(|s| s.invoked_arn == format!("{ARN}:live")));
    run.stop();
}

async fn wait_for_state(c: &mut UserApi, request_id: &str, state: &str) -> v1::Invocation {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let inv = c
            .events
            .get_invocation(v1::GetInvocationRequest {
                request_id: request_id.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        if inv.state == state {
            return inv;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "invocation {request_id} did not reach {state} within 30 s: {inv:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_invocations_resolve_the_qualifier_at_each_delivery() {
    let Setup {
        mut c, run, worker, ..
    } = setup().await;
    publish(&mut c, publish_f()).await.unwrap();
    update_code(&mut c, b"v2").await;
    publish(&mut c, publish_f()).await.unwrap();
    c.versions
        .create_alias(alias("live", "1", &[]))
        .await
        .unwrap();

    use v1::InvocationType::Event;
    assert_status(
        invoke(&mut c, "gone", Event, b"{}").await,
        Code::NotFound,
        "no alias `gone`",
    );

    // The first delivery runs version 1 and is held; meanwhile the alias moves to version 2; the
    // held delivery fails, and the retry runs version 2.
    let accepted = invoke(&mut c, "live", Event, b"hold").await.unwrap();
    assert_eq!(accepted.status_code, 202);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while worker.seen().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no delivery within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.versions
        .update_alias(v1::UpdateAliasRequest {
            function_name: "f".into(),
            name: "live".into(),
            function_version: Some("2".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    worker.gate.add_permits(1);
    let done = wait_for_state(&mut c, &accepted.request_id, "Succeeded").await;
    assert_eq!((done.attempts, done.function_errors), (2, 1));
    let seen: Vec<(String, String)> = worker
        .seen()
        .into_iter()
        .filter(|s| s.payload == b"hold")
        .map(|s| (s.version, s.invoked_arn))
        .collect();
    assert_eq!(
        seen,
        [
            ("1".to_string(), format!("{ARN}:live")),
            ("2".to_string(), format!("{ARN}:live")),
        ]
    );

    // A version number stays that version.
    let accepted = invoke(&mut c, "1", Event, b"{}").await.unwrap();
    wait_for_state(&mut c, &accepted.request_id, "Succeeded").await;
    let last = worker.seen().pop().unwrap();
    assert_eq!(
        (last.version.as_str(), last.invoked_arn.as_str()),
        ("1", &*format!("{ARN}:1"))
    );
    run.stop();
}
