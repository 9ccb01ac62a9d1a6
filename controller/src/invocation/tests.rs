//! The pipeline against a fake worker: an in-process tonic `Worker` service on 127.0.0.1:0 whose
//! answer the payload picks (`"ok"`, `"fail"`, `"full"`, `"hang"`), and the real context (store,
//! registry, limiter) of a controller on a temporary RocksDB.
use std::sync::Arc;
use std::time::{Duration, Instant};

use lamina_proto::v1::{self, worker_invoke_stream_message::Event as WorkerEvent};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::delivery::outcome;
use super::*;
use crate::queue::{Invoker, Outcome};
use crate::store::{RocksStore, Store};
use crate::test_support::{function, CODE};
use crate::{Controller, ControllerConfig};

struct FakeWorker;

type Answer = Result<Response<v1::WorkerInvokeResponse>, Status>;

fn answer(payload: &[u8]) -> impl std::future::Future<Output = Answer> + Send {
    let payload = payload.to_vec();
    async move {
        let response = |function_error: &str, payload: &[u8]| v1::WorkerInvokeResponse {
            payload: payload.to_vec(),
            function_error: function_error.to_string(),
            logs: "START\nhello\nEND\n".to_string(),
            ..Default::default()
        };
        let response = match payload.as_slice() {
            b"\"ok\"" => response("", b"\"done\""),
            b"\"fail\"" => response("Unhandled", br#"{"errorType":"Boom","errorMessage":"x"}"#),
            b"\"full\"" => return Err(Status::resource_exhausted("no memory left")),
            b"\"hang\"" => {
                tokio::time::sleep(Duration::from_secs(60)).await;
                response("", b"late")
            }
            other => {
                return Err(Status::invalid_argument(format!(
                    "unexpected payload {}",
                    String::from_utf8_lossy(other)
                )))
            }
        };
        Ok(Response::new(response))
    }
}

#[tonic::async_trait]
impl v1::worker_server::Worker for FakeWorker {
    type InvokeStreamStream = ReceiverStream<Result<v1::WorkerInvokeStreamMessage, Status>>;

    async fn invoke(&self, request: Request<v1::WorkerInvokeRequest>) -> Answer {
        answer(&request.into_inner().payload).await
    }

    async fn invoke_stream(
        &self,
        request: Request<v1::WorkerInvokeRequest>,
    ) -> Result<Response<Self::InvokeStreamStream>, Status> {
        let r = request.into_inner();
        if r.payload == b"\"full\"" {
            return Err(Status::resource_exhausted("no memory left"));
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            for chunk in [&b"one "[..], b"two"] {
                let event = Some(WorkerEvent::Chunk(chunk.to_vec()));
                let _ = tx.send(Ok(v1::WorkerInvokeStreamMessage { event })).await;
            }
            if r.payload == b"\"cut\"" {
                return; // the worker's stream ends without the end of the invocation
            }
            let done = v1::WorkerInvokeResponse {
                logs: "START\nstreamed\nEND\n".to_string(),
                ..Default::default()
            };
            let event = Some(WorkerEvent::Done(done));
            let _ = tx.send(Ok(v1::WorkerInvokeStreamMessage { event })).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn retire_sandboxes(
        &self,
        _request: Request<v1::RetireSandboxesRequest>,
    ) -> Result<Response<v1::RetireSandboxesResponse>, Status> {
        Ok(Response::new(v1::RetireSandboxesResponse::default()))
    }

    async fn set_provisioned(
        &self,
        _request: Request<v1::SetProvisionedRequest>,
    ) -> Result<Response<v1::SetProvisionedResponse>, Status> {
        Ok(Response::new(v1::SetProvisionedResponse {}))
    }

    async fn set_network(
        &self,
        _request: Request<v1::NetworkState>,
    ) -> Result<Response<v1::SetNetworkResponse>, Status> {
        Ok(Response::new(v1::SetNetworkResponse {}))
    }
}

/// A controller's context with function `f`, and worker `w1` (the fake, or an address nothing
/// listens on when `serve` is false) registered and never heartbeating: it stays `Up` for
/// `worker_timeout`.
struct Fixture {
    ctx: Arc<Context>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn fixture(worker_timeout: Duration, limit: u32, serve: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), 100).unwrap();
    store.create_function(&function("f"), CODE).unwrap();
    let mut config = ControllerConfig::new(dir.path().to_path_buf());
    config.worker_timeout = worker_timeout;
    config.heartbeat_interval = Duration::from_millis(100);
    config.concurrency.limit = limit;
    config.concurrency.unreserved_min = 0;
    config.concurrency.placement_wait = Duration::from_millis(10);
    let controller = Controller::with_store(&config, Arc::new(store));
    let ctx = Arc::clone(&controller.shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let stop = CancellationToken::new();
    if serve {
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(v1::worker_server::WorkerServer::new(FakeWorker))
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    stop.clone().cancelled_owned(),
                ),
        );
    } else {
        drop(listener);
    }
    ctx.registry.register("w1", &address, 4096);
    Fixture {
        ctx,
        stop,
        _dir: dir,
    }
}

async fn prepared(ctx: &Context) -> Result<Prepared, InvocationError> {
    let resolved = crate::resolve::resolve(ctx, "f", "").await?;
    prepare(ctx, resolved).await
}

fn call(payload: &str) -> Call {
    Call {
        request_id: format!("req-{payload}"),
        payload: format!("\"{payload}\"").into_bytes(),
        client_context: String::new(),
    }
}

const LONG: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_buffered_call_returns_the_response_stores_the_log_and_gives_everything_back() {
    let f = fixture(LONG, 10, true).await;
    let mut p = prepared(&f.ctx).await.unwrap();
    assert_eq!(p.placement().worker_id, "w1");
    assert_eq!(f.ctx.limiter.in_flight("f"), 1);
    let response = p.call(&f.ctx, call("ok")).await.unwrap();
    assert_eq!(response.payload, b"\"done\"");
    drop(p);
    assert_eq!(f.ctx.limiter.in_flight("f"), 0);
    let logs = f.ctx.store.get_logs("f", 0, 10).unwrap();
    let lines: Vec<(&str, &str)> = logs
        .iter()
        .map(|e| (e.request_id.as_str(), e.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        [("req-ok", "START"), ("req-ok", "hello"), ("req-ok", "END")]
    );
}

#[tokio::test]
async fn a_function_error_is_a_response_and_a_function_error_outcome() {
    let f = fixture(LONG, 10, true).await;
    let mut p = prepared(&f.ctx).await.unwrap();
    let result = p.call(&f.ctx, call("fail")).await;
    assert_eq!(result.as_ref().unwrap().function_error, "Unhandled");
    match outcome(result, "$LATEST".into()) {
        Outcome::FunctionError {
            kind,
            executed_version,
            ..
        } => assert_eq!(
            (kind.as_str(), executed_version.as_str()),
            ("Unhandled", "$LATEST")
        ),
        other => panic!("not a function error: {other:?}"),
    }
}

#[tokio::test]
async fn a_worker_without_room_and_the_concurrency_limit_throttle() {
    let f = fixture(LONG, 10, true).await;
    let invoker = WorkerInvoker {
        ctx: Arc::clone(&f.ctx),
    };
    match invoker.invoke("f", "", "req-1", b"\"full\"".to_vec()).await {
        Outcome::Throttled(msg) => assert_eq!(msg, "worker `w1`: no memory left"),
        other => panic!("not throttled: {other:?}"),
    }
    assert_eq!(f.ctx.limiter.in_flight("f"), 0);
    let mut p = prepared(&f.ctx).await.unwrap();
    let e = p.call(&f.ctx, call("full")).await.unwrap_err();
    assert!(
        matches!(&e, InvocationError::Worker(w) if w.is_worker_full()),
        "{e}"
    );
    // Over the concurrency limit it is throttled before a worker is chosen.
    let f = fixture(LONG, 1, true).await;
    let held = prepared(&f.ctx).await.unwrap();
    let e = prepared(&f.ctx).await.err().expect("over the limit");
    assert!(matches!(e, InvocationError::Throttled(_)), "{e}");
    drop(held);
    prepared(&f.ctx)
        .await
        .expect("the dropped invocation gave its permit back");
}

#[tokio::test]
async fn a_worker_lost_during_the_call_ends_it_early() {
    // No heartbeats: `w1` is Down 400 ms after it registered, in the middle of the call.
    let f = fixture(Duration::from_millis(400), 10, true).await;
    let mut p = prepared(&f.ctx).await.unwrap();
    let started = Instant::now();
    let e = p.call(&f.ctx, call("hang")).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        e.to_string().contains("was lost during the invocation"),
        "{e}"
    );
    assert!(matches!(
        outcome(Err(e), String::new()),
        Outcome::SystemError(_)
    ));
    assert_eq!(f.ctx.limiter.in_flight("f"), 1);
    drop(p);
    assert_eq!(f.ctx.limiter.in_flight("f"), 0);
}

#[tokio::test]
async fn an_unreachable_worker_is_marked_and_a_missing_one_throttles_a_delivery() {
    let f = fixture(LONG, 10, false).await;
    let mut p = prepared(&f.ctx).await.unwrap();
    let e = p.call(&f.ctx, call("ok")).await.unwrap_err();
    assert!(
        matches!(e, InvocationError::Worker(WorkerError::Unavailable { .. })),
        "{e}"
    );
    // A refused connection is the transport's: no new work for the worker until it heartbeats.
    assert!(!f.ctx.registry.is_up("w1"));
    let invoker = WorkerInvoker {
        ctx: Arc::clone(&f.ctx),
    };
    assert!(!invoker.ready());
    match invoker.invoke("f", "", "req-2", b"{}".to_vec()).await {
        Outcome::Throttled(msg) => assert!(msg.starts_with("no worker is available"), "{msg}"),
        other => panic!("not throttled: {other:?}"),
    }
    // An unknown function is a system error of the delivery, and has no timeout to lease for.
    assert!(matches!(
        invoker.invoke("g", "", "req-3", b"{}".to_vec()).await,
        Outcome::SystemError(_)
    ));
    assert_eq!(invoker.function_timeout("g", "").await, Ok(None));
    assert_eq!(
        invoker.function_timeout("f", "").await,
        Ok(Some(Duration::from_secs(3)))
    );
}

/// Collects the chunks of a streamed invocation.
#[derive(Default)]
struct Chunks(Vec<Vec<u8>>);

#[tonic::async_trait]
impl ChunkSink for Chunks {
    async fn chunk(&mut self, chunk: Vec<u8>) {
        self.0.push(chunk);
    }
}

#[tokio::test]
async fn a_streamed_call_passes_the_chunks_in_order_then_ends() {
    let f = fixture(LONG, 10, true).await;
    let streaming = prepared(&f.ctx)
        .await
        .unwrap()
        .start_stream(&f.ctx, call("ok"))
        .await
        .unwrap();
    let mut sink = Chunks::default();
    let done = streaming.run(&f.ctx, &mut sink).await.unwrap();
    assert_eq!(sink.0, [b"one ".to_vec(), b"two".to_vec()]);
    assert_eq!(done.function_error, "");
    assert_eq!(f.ctx.limiter.in_flight("f"), 0);
    let logs = f.ctx.store.get_logs("f", 0, 10).unwrap();
    assert_eq!(logs.len(), 3);
    // A stream that ends without the end of the invocation: what came, then an error.
    let streaming = prepared(&f.ctx)
        .await
        .unwrap()
        .start_stream(&f.ctx, call("cut"))
        .await
        .unwrap();
    let mut sink = Chunks::default();
    let e = streaming.run(&f.ctx, &mut sink).await.unwrap_err();
    assert_eq!(sink.0.len(), 2);
    assert!(e.to_string().contains("its stream ended"), "{e}");
    // A worker that refuses at once: the error comes back before any stream.
    let e = prepared(&f.ctx)
        .await
        .unwrap()
        .start_stream(&f.ctx, call("full"))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&e, InvocationError::Worker(w) if w.is_worker_full()),
        "{e}"
    );
    assert_eq!(f.ctx.limiter.in_flight("f"), 0);
}
