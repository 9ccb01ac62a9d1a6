//! The invocation path reads function configurations from memory and writes logs in the
//! background; through the real controller (gRPC on loopback) and a registered worker service
//! that records the configuration each invocation was sent, these tests check that nothing stale
//! is ever served: every write (update-config, update-code, publish, aliases, deletes, reserved
//! concurrency) shows in the very next invocation, and a log is readable as soon as its
//! invocation answered, also under concurrency and after a graceful shutdown.
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use lamina_controller::store::{RocksStore, Store};
use lamina_controller::{Controller, ControllerConfig};
use lamina_proto::v1::{self, update_function_code_request};
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// Answers every invocation and remembers the configuration it was sent, by request id.
#[derive(Clone, Default)]
struct RecordingWorker {
    sent: Arc<Mutex<HashMap<String, v1::FunctionConfiguration>>>,
}

#[tonic::async_trait]
impl FakeInvoke for RecordingWorker {
    async fn invoke(
        &self,
        request: tonic::Request<v1::WorkerInvokeRequest>,
    ) -> Result<tonic::Response<v1::WorkerInvokeResponse>, tonic::Status> {
        let r = request.into_inner();
        let f = r.function.unwrap_or_default();
        self.sent
            .lock()
            .unwrap()
            .insert(r.request_id.clone(), f.clone());
        Ok(tonic::Response::new(v1::WorkerInvokeResponse {
            payload: f.version.into_bytes(),
            logs: format!(
                "START RequestId: {id}\nrevision {rev}\nEND RequestId: {id}\n",
                id = r.request_id,
                rev = f.revision_id
            ),
            ..Default::default()
        }))
    }
}

struct Setup {
    addr: std::net::SocketAddr,
    data_dir: std::path::PathBuf,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), lamina_controller::ControllerError>>,
    worker: RecordingWorker,
    worker_stop: CancellationToken,
    c: UserApi,
    _dir: tempfile::TempDir,
}

/// The controller, a registered recording worker that keeps heartbeating, and function `f`.
async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut config = ControllerConfig::new(data_dir.clone());
    config.worker_timeout = Duration::from_millis(3000);
    config.heartbeat_interval = Duration::from_millis(200);
    config.auth = false;
    let controller = Controller::open(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(controller.serve(listener, shutdown.clone()));

    let worker = RecordingWorker::default();
    let worker_stop = serve_fake_worker(addr, worker.clone(), 1 << 20).await;

    let mut c = user_api(addr).await;
    create(
        &mut c,
        create_msgs(Some(spec("f")), &zip_of(&[("app.py", b"v1")]), 1024),
    )
    .await
    .unwrap();
    Setup {
        addr,
        data_dir,
        shutdown,
        server,
        worker,
        worker_stop,
        c,
        _dir: dir,
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.worker_stop.cancel();
    }
}

impl Setup {
    /// Invokes `f:qualifier` and returns the configuration the worker was sent.
    async fn invoke(
        &mut self,
        qualifier: &str,
    ) -> Result<v1::FunctionConfiguration, tonic::Status> {
        let r = self
            .c
            .invoke(v1::InvokeRequest {
                function_name: "f".into(),
                qualifier: qualifier.into(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let sent = self.worker.sent.lock().unwrap().remove(&r.request_id);
        Ok(sent.expect("the worker saw the invocation"))
    }

    async fn update_config(&mut self, r: v1::UpdateFunctionConfigurationRequest) -> String {
        self.c
            .update_function_configuration(r)
            .await
            .unwrap()
            .into_inner()
            .revision_id
    }

    async fn update_code(&mut self, code: &[u8]) -> v1::FunctionConfiguration {
        use update_function_code_request::Part;
        let msgs = vec![
            v1::UpdateFunctionCodeRequest {
                part: Some(Part::FunctionName("f".into())),
            },
            v1::UpdateFunctionCodeRequest {
                part: Some(Part::CodeChunk(zip_of(&[("app.py", code)]))),
            },
        ];
        self.c
            .update_function_code(tokio_stream::iter(msgs))
            .await
            .unwrap()
            .into_inner()
    }

    async fn publish(&mut self) -> String {
        self.c
            .versions
            .publish_version(v1::PublishVersionRequest {
                function_name: "f".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .version
    }

    async fn update_alias(&mut self, version: &str, weights: &[(&str, f64)]) {
        self.c
            .versions
            .update_alias(v1::UpdateAliasRequest {
                function_name: "f".into(),
                name: "live".into(),
                function_version: Some(version.into()),
                routing_config: Some(v1::RoutingConfig {
                    additional_version_weights: weights
                        .iter()
                        .map(|(k, v)| (k.to_string(), *v))
                        .collect(),
                }),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn logs(&mut self, name: &str, after_seq: u64) -> v1::GetLogsResponse {
        self.c
            .get_logs(v1::GetLogsRequest {
                function_name: name.into(),
                after_seq,
                limit: 1000,
            })
            .await
            .unwrap()
            .into_inner()
    }
}

fn memory(mb: u32) -> v1::UpdateFunctionConfigurationRequest {
    v1::UpdateFunctionConfigurationRequest {
        function_name: "f".into(),
        memory_size_mb: Some(mb),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_shows_in_the_next_invocation() {
    let mut s = setup().await;
    // Read once: from here on $LATEST is served from memory.
    let first = s.invoke("").await.unwrap();
    assert_eq!(first.memory_size_mb, 128);

    // update-config, many times in a row, each followed at once by an invocation.
    for mb in [256, 512, 1024, 300, 128] {
        let revision = s.update_config(memory(mb)).await;
        let sent = s.invoke("").await.unwrap();
        assert_eq!((sent.memory_size_mb, sent.revision_id), (mb, revision));
    }
    let revision = s
        .update_config(v1::UpdateFunctionConfigurationRequest {
            function_name: "f".into(),
            environment: [("MODE".to_string(), "new".to_string())].into(),
            replace_environment: true,
            handler: Some("app.other".into()),
            ..Default::default()
        })
        .await;
    let sent = s.invoke("$LATEST").await.unwrap();
    assert_eq!(sent.revision_id, revision);
    assert_eq!(sent.handler, "app.other");
    assert_eq!(
        sent.environment.get("MODE").map(String::as_str),
        Some("new")
    );
    assert!(!sent.environment.contains_key("GREETING"));

    // update-code.
    for code in [b"v2".as_slice(), b"v3"] {
        let updated = s.update_code(code).await;
        let sent = s.invoke("").await.unwrap();
        assert_eq!(sent.code_sha256, updated.code_sha256);
        assert_eq!(sent.code_sha256, sha256_hex(&zip_of(&[("app.py", code)])));
    }

    // Versions and an alias: create, repoint, route, un-route, delete.
    let one = s.publish().await;
    s.update_config(memory(640)).await;
    let two = s.publish().await;
    assert_eq!((one.as_str(), two.as_str()), ("1", "2"));
    assert_eq!(s.invoke("1").await.unwrap().memory_size_mb, 128);
    assert_eq!(s.invoke("2").await.unwrap().memory_size_mb, 640);
    s.c.versions
        .create_alias(v1::CreateAliasRequest {
            function_name: "f".into(),
            name: "live".into(),
            function_version: "1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(s.invoke("live").await.unwrap().version, "1");
    s.update_alias("2", &[]).await;
    assert_eq!(s.invoke("live").await.unwrap().version, "2");
    // Half of the invocations to version 2, then none: 40 in a row on version 1 would be a
    // 1 in 2^40 chance with the routing still in place.
    s.update_alias("1", &[("2", 0.5)]).await;
    s.invoke("live").await.unwrap();
    s.update_alias("1", &[]).await;
    for _ in 0..40 {
        assert_eq!(s.invoke("live").await.unwrap().version, "1");
    }
    s.c.versions
        .delete_alias(v1::DeleteAliasRequest {
            function_name: "f".into(),
            name: "live".into(),
        })
        .await
        .unwrap();
    assert_status(s.invoke("live").await, Code::NotFound, "alias `live`");
    s.c.delete_function(v1::DeleteFunctionRequest {
        function_name: "f".into(),
        qualifier: "2".into(),
    })
    .await
    .unwrap();
    assert_status(s.invoke("2").await, Code::NotFound, "version 2");
    assert_eq!(s.invoke("1").await.unwrap().memory_size_mb, 128);

    // Reserved concurrency 0 throttles the next invocation; removing it lets it through.
    s.c.concurrency
        .put_function_concurrency(v1::PutFunctionConcurrencyRequest {
            function_name: "f".into(),
            reserved_concurrent_executions: 0,
        })
        .await
        .unwrap();
    assert_status(s.invoke("").await, Code::ResourceExhausted, "Reserved");
    s.c.concurrency
        .delete_function_concurrency(v1::DeleteFunctionConcurrencyRequest {
            function_name: "f".into(),
        })
        .await
        .unwrap();
    s.invoke("").await.unwrap();

    // Deleted: not found at once (also its versions); created again: the new configuration.
    s.c.delete_function(v1::DeleteFunctionRequest {
        function_name: "f".into(),
        qualifier: String::new(),
    })
    .await
    .unwrap();
    assert_status(s.invoke("").await, Code::NotFound, "`f`");
    assert_status(s.invoke("1").await, Code::NotFound, "`f`");
    let mut again = spec("f");
    again.memory_size_mb = 2048;
    let created = create(
        &mut s.c,
        create_msgs(Some(again), &zip_of(&[("app.py", b"v9")]), 1024),
    )
    .await
    .unwrap();
    let sent = s.invoke("").await.unwrap();
    assert_eq!(
        (sent.memory_size_mb, sent.revision_id),
        (2048, created.revision_id)
    );
    assert_status(s.invoke("1").await, Code::NotFound, "version 1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_readable_as_soon_as_the_invocation_answers() {
    let mut s = setup().await;
    let mut last_seq = 0;
    for _ in 0..100 {
        let r =
            s.c.invoke(v1::InvokeRequest {
                function_name: "f".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let logs = s.logs("f", last_seq).await;
        let ids: Vec<&str> = logs.events.iter().map(|e| e.request_id.as_str()).collect();
        assert_eq!(ids, [r.request_id.as_str(); 3], "right after invocation");
        last_seq = logs.last_seq;
    }

    // Concurrent invocations: each caller reads its own log right after its answer.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = user_api(s.addr).await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                let r = c
                    .invoke(v1::InvokeRequest {
                        function_name: "f".into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let logs = c
                    .get_logs(v1::GetLogsRequest {
                        function_name: "f".into(),
                        after_seq: 0,
                        limit: 0,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let mine = logs
                    .events
                    .iter()
                    .filter(|e| e.request_id == r.request_id)
                    .count();
                assert_eq!(mine, 3, "the log of {}", r.request_id);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.logs("f", last_seq).await.events.len(), 8 * 25 * 3);

    // A function deleted and created again under the same name starts with an empty log.
    s.c.delete_function(v1::DeleteFunctionRequest {
        function_name: "f".into(),
        qualifier: String::new(),
    })
    .await
    .unwrap();
    create(
        &mut s.c,
        create_msgs(Some(spec("f")), &zip_of(&[("app.py", b"v1")]), 1024),
    )
    .await
    .unwrap();
    assert!(s.logs("f", 0).await.events.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_queued_at_a_graceful_shutdown_are_written() {
    let mut s = setup().await;
    let mut ids = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut c = user_api(s.addr).await;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..50 {
                let r = c
                    .invoke(v1::InvokeRequest {
                        function_name: "f".into(),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                ids.push(r.request_id);
            }
            ids
        }));
    }
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    drop(std::mem::replace(&mut s.c, user_api(s.addr).await));
    s.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), &mut s.server)
        .await
        .expect("the controller stops within 30 s")
        .unwrap()
        .unwrap();
    // The store is still open in this process (tasks hold it until they end); a second
    // RocksDB handle cannot open it, so read it through a checkpoint-free copy: wait until the
    // lock is released, bounded.
    let store = {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match RocksStore::open(&s.data_dir, 100_000) {
                Ok(store) => break store,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot reopen the store after shutdown: {e}"),
            }
        }
    };
    let events = store.get_logs("f", 0, 100_000).unwrap();
    for id in &ids {
        assert_eq!(
            events.iter().filter(|e| &e.request_id == id).count(),
            3,
            "the log of {id}"
        );
    }
}
