//! Invocation through the real controller and a registered worker service on loopback.
mod common;

use std::time::Duration;

use common::*;
use lamina_proto::v1::{self, cluster_client::ClusterClient, worker_server};
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// A minimal `Worker` service: the real controller calls it over gRPC. It echoes the payload and
/// returns a log, so the test sees what the controller forwards and what it does with the answer.
struct EchoWorker;

#[tonic::async_trait]
impl worker_server::Worker for EchoWorker {
    type InvokeStreamStream = tokio_stream::Iter<
        std::vec::IntoIter<Result<v1::WorkerInvokeStreamMessage, tonic::Status>>,
    >;

    /// Streams the payload split at `|`; a payload ending in `fail` ends with a function error.
    async fn invoke_stream(
        &self,
        request: tonic::Request<v1::WorkerInvokeRequest>,
    ) -> Result<tonic::Response<Self::InvokeStreamStream>, tonic::Status> {
        use v1::worker_invoke_stream_message::Event;
        let r = request.into_inner();
        let mut out = Vec::new();
        for chunk in r.payload.split(|b| *b == b'|') {
            out.push(Ok(v1::WorkerInvokeStreamMessage {
                event: Some(Event::Chunk(chunk.to_vec())),
            }));
        }
        let failed = r.payload.ends_with(b"fail");
        out.push(Ok(v1::WorkerInvokeStreamMessage {
            event: Some(Event::Done(v1::WorkerInvokeResponse {
                function_error: if failed {
                    "Unhandled".into()
                } else {
                    String::new()
                },
                payload: if failed {
                    br#"{"errorType":"Stream.Failed","errorMessage":"m"}"#.to_vec()
                } else {
                    Vec::new()
                },
                logs: format!(
                    "START RequestId: {id}\nstreamed\nEND RequestId: {id}\n",
                    id = r.request_id
                ),
                ..Default::default()
            })),
        }));
        Ok(tonic::Response::new(tokio_stream::iter(out)))
    }

    async fn retire_sandboxes(
        &self,
        _request: tonic::Request<v1::RetireSandboxesRequest>,
    ) -> Result<tonic::Response<v1::RetireSandboxesResponse>, tonic::Status> {
        Ok(tonic::Response::new(v1::RetireSandboxesResponse::default()))
    }

    async fn set_provisioned(
        &self,
        _request: tonic::Request<v1::SetProvisionedRequest>,
    ) -> Result<tonic::Response<v1::SetProvisionedResponse>, tonic::Status> {
        Ok(tonic::Response::new(v1::SetProvisionedResponse {}))
    }

    async fn set_network(
        &self,
        _request: tonic::Request<v1::NetworkState>,
    ) -> Result<tonic::Response<v1::SetNetworkResponse>, tonic::Status> {
        Ok(tonic::Response::new(v1::SetNetworkResponse {}))
    }

    async fn invoke(
        &self,
        request: tonic::Request<v1::WorkerInvokeRequest>,
    ) -> Result<tonic::Response<v1::WorkerInvokeResponse>, tonic::Status> {
        let timeout = request
            .metadata()
            .get("grpc-timeout")
            .map(|v| v.to_str().unwrap().to_string());
        let r = request.into_inner();
        let f = r.function.unwrap();
        let log = format!(
            "START RequestId: {id} Version: {v}\nfunction={name} revision={rev} deadline={d} timeout={t:?} trace={trace}\n{pad}\nEND RequestId: {id}\n",
            id = r.request_id,
            v = f.version,
            name = f.name,
            rev = f.revision_id,
            d = r.deadline_ms,
            t = timeout,
            trace = r.trace_id,
            pad = "p".repeat(5000),
        );
        let function_error = if r.payload == b"fail" {
            "Unhandled"
        } else {
            ""
        };
        Ok(tonic::Response::new(v1::WorkerInvokeResponse {
            function_error: function_error.into(),
            payload: r.payload,
            logs: log,
            ..Default::default()
        }))
    }
}

#[tokio::test]
async fn invoke_goes_through_a_registered_worker_and_keeps_its_log() {
    let run = start().await;
    let worker_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let worker_addr = worker_listener.local_addr().unwrap();
    let worker_stop = CancellationToken::new();
    let worker = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(worker_server::WorkerServer::new(EchoWorker))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(worker_listener),
                worker_stop.clone().cancelled_owned(),
            ),
    );
    let mut cluster = ClusterClient::new(channel(run.addr).await);
    cluster
        .register_worker(v1::RegisterWorkerRequest {
            worker_id: "w1".into(),
            address: worker_addr.to_string(),
            memory_total_mb: 4096,
        })
        .await
        .unwrap();

    let mut c = functions(run.addr).await;
    let code = zip_of(&[("app.py", b"x")]);
    let created = create(&mut c, create_msgs(Some(spec("echo")), &code, 1024))
        .await
        .unwrap();
    let before = now_ms();
    let r = c
        .invoke(v1::InvokeRequest {
            function_name: "echo".into(),
            payload: Vec::new(),
            log_type: v1::LogType::Tail as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            r.status_code,
            r.function_error.as_str(),
            r.executed_version.as_str()
        ),
        (200, "", "$LATEST")
    );
    assert_eq!(r.payload, b"{}", "an empty payload is sent as {{}}");
    assert_eq!(r.worker_id, "w1");
    assert_eq!(r.log_tail.len(), 4096);
    assert!(r
        .log_tail
        .ends_with(&format!("END RequestId: {}\n", r.request_id)));

    let logs = c
        .get_logs(v1::GetLogsRequest {
            function_name: "echo".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(logs.events.len(), 4);
    assert_eq!(logs.last_seq, 4);
    assert!(logs.events.iter().all(|e| e.request_id == r.request_id));
    assert_eq!(
        logs.events[0].message,
        format!("START RequestId: {} Version: $LATEST", r.request_id)
    );
    let details = &logs.events[1].message;
    assert!(
        details.contains(&format!("function=echo revision={}", created.revision_id)),
        "{details}"
    );
    let deadline: u64 = details
        .split("deadline=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The caller's deadline: when the controller stops waiting (the 3 s timeout plus the cold-start
    // headroom); the function's own clock starts at the end of its init, on the worker.
    let headroom = 60_000;
    assert!(
        deadline >= before + 3000 + headroom && deadline <= now_ms() + 3000 + headroom,
        "deadline {deadline}"
    );
    // gRPC timeout = function timeout (3 s) + 60 s of cold start headroom.
    assert!(
        details.contains("timeout=Some(\"63") || details.contains("timeout=Some(\"6299"),
        "{details}"
    );
    assert!(details.contains("trace=Root=1-"), "{details}");

    // A function error still answers 200; the log continues from the last seq.
    let r2 = c
        .invoke(v1::InvokeRequest {
            function_name: "echo".into(),
            payload: b"fail".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            r2.status_code,
            r2.function_error.as_str(),
            r2.log_tail.as_str()
        ),
        (200, "Unhandled", "")
    );
    assert_ne!(r2.request_id, r.request_id);
    let more = c
        .get_logs(v1::GetLogsRequest {
            function_name: "echo".into(),
            after_seq: logs.last_seq,
            limit: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        more.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [5, 6]
    );
    assert!(more.events.iter().all(|e| e.request_id == r2.request_id));

    // Streamed: the worker's chunks in order, then the completion; the log is stored.
    use v1::invoke_with_response_stream_response::Event;
    let mut events = c
        .invoke_with_response_stream(v1::InvokeRequest {
            function_name: "echo".into(),
            payload: b"a|b|c".to_vec(),
            log_type: v1::LogType::Tail as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = events.message().await.unwrap() {
        got.push(m.event.unwrap());
    }
    assert_eq!(got.len(), 4, "{got:?}");
    for (i, want) in [b"a", b"b", b"c"].iter().enumerate() {
        assert_eq!(got[i], Event::PayloadChunk(want.to_vec()));
    }
    let Event::InvokeComplete(done) = &got[3] else {
        panic!("{got:?}")
    };
    assert_eq!(
        (
            done.function_error.as_str(),
            done.executed_version.as_str(),
            done.worker_id.as_str()
        ),
        ("", "$LATEST", "w1")
    );
    assert!(done
        .log_tail
        .ends_with(&format!("END RequestId: {}\n", done.request_id)));
    let streamed_logs = c
        .get_logs(v1::GetLogsRequest {
            function_name: "echo".into(),
            after_seq: more.last_seq,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(streamed_logs
        .events
        .iter()
        .any(|e| e.message == "streamed" && e.request_id == done.request_id));
    // A failed stream: the error type and body in the completion.
    let mut events = c
        .invoke_with_response_stream(v1::InvokeRequest {
            function_name: "echo".into(),
            payload: b"x|fail".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(m) = events.message().await.unwrap() {
        last = m.event;
    }
    let Some(Event::InvokeComplete(done)) = last else {
        panic!("{last:?}")
    };
    assert_eq!(
        (done.function_error.as_str(), done.error_code.as_str()),
        ("Unhandled", "Stream.Failed")
    );
    assert_eq!(done.log_tail, "", "no tail unless asked");
    // Unknown function and a non-sync invocation type: refused before any stream.
    assert_status(
        c.invoke_with_response_stream(v1::InvokeRequest {
            function_name: "nope".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "nope",
    );
    assert_status(
        c.invoke_with_response_stream(v1::InvokeRequest {
            function_name: "echo".into(),
            invocation_type: v1::InvocationType::Event as i32,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "REQUEST_RESPONSE",
    );

    // The worker goes away mid-life: the next invocation fails fast, naming it.
    worker_stop.cancel();
    worker.await.unwrap().unwrap();
    let started = std::time::Instant::now();
    assert_status(
        c.invoke(v1::InvokeRequest {
            function_name: "echo".into(),
            ..Default::default()
        })
        .await,
        Code::Unavailable,
        "worker `w1`",
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    run.shutdown.cancel();
}
