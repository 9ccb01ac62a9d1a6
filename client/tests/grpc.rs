//! The client against small in-process `Functions` and `Events` servers over real loopback gRPC:
//! checks what goes over the wire (chunking of code, paging of lists, status mapping), not the controller's logic.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use lamina_client::{v1, Client, Error};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use v1::events_server::{Events, EventsServer};
use v1::functions_server::{Functions, FunctionsServer};

#[derive(Default)]
struct State {
    functions: BTreeMap<String, v1::FunctionConfiguration>,
    chunk_sizes: Vec<usize>,
    code: Vec<u8>,
    list_calls: u32,
}

#[derive(Clone, Default)]
struct Server(Arc<Mutex<State>>);

#[tonic::async_trait]
impl Functions for Server {
    async fn create_function(
        &self,
        req: Request<Streaming<v1::CreateFunctionRequest>>,
    ) -> Result<Response<v1::FunctionConfiguration>, Status> {
        use v1::create_function_request::Part;
        let mut stream = req.into_inner();
        let Some(Part::Spec(spec)) = stream.next().await.transpose()?.and_then(|m| m.part) else {
            return Err(Status::invalid_argument(
                "the first message must carry the spec",
            ));
        };
        let mut code = Vec::new();
        let mut sizes = Vec::new();
        while let Some(msg) = stream.next().await.transpose()? {
            match msg.part {
                Some(Part::CodeChunk(c)) => {
                    sizes.push(c.len());
                    code.extend(c);
                }
                _ => return Err(Status::invalid_argument("spec sent twice")),
            }
        }
        let f = v1::FunctionConfiguration {
            name: spec.name.clone(),
            runtime: spec.runtime,
            code_size: code.len() as u64,
            environment: spec.environment,
            ..Default::default()
        };
        let mut st = self.0.lock().unwrap();
        st.chunk_sizes = sizes;
        st.code = code;
        st.functions.insert(spec.name, f.clone());
        Ok(Response::new(f))
    }

    async fn get_function(
        &self,
        req: Request<v1::GetFunctionRequest>,
    ) -> Result<Response<v1::FunctionConfiguration>, Status> {
        let name = req.into_inner().function_name;
        let st = self.0.lock().unwrap();
        st.functions
            .get(&name)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("function `{name}` not found")))
    }

    async fn list_functions(
        &self,
        req: Request<v1::ListFunctionsRequest>,
    ) -> Result<Response<v1::ListFunctionsResponse>, Status> {
        let req = req.into_inner();
        let mut st = self.0.lock().unwrap();
        st.list_calls += 1;
        // Pages of 2 whatever was asked, to make the client follow markers.
        let page: Vec<_> = st
            .functions
            .values()
            .filter(|f| f.name > req.marker)
            .take(2)
            .cloned()
            .collect();
        let more = st
            .functions
            .keys()
            .any(|k| page.last().is_some_and(|l| k > &l.name));
        let next_marker = if more {
            page.last().unwrap().name.clone()
        } else {
            String::new()
        };
        Ok(Response::new(v1::ListFunctionsResponse {
            functions: page,
            next_marker,
        }))
    }

    async fn update_function_code(
        &self,
        req: Request<Streaming<v1::UpdateFunctionCodeRequest>>,
    ) -> Result<Response<v1::FunctionConfiguration>, Status> {
        use v1::update_function_code_request::Part;
        let mut stream = req.into_inner();
        let Some(Part::FunctionName(name)) = stream.next().await.transpose()?.and_then(|m| m.part)
        else {
            return Err(Status::invalid_argument(
                "the first message must carry the name",
            ));
        };
        let mut code = Vec::new();
        while let Some(msg) = stream.next().await.transpose()? {
            if let Some(Part::CodeChunk(c)) = msg.part {
                code.extend(c);
            }
        }
        let mut st = self.0.lock().unwrap();
        let f = st
            .functions
            .get_mut(&name)
            .ok_or_else(|| Status::not_found(format!("function `{name}` not found")))?;
        f.code_size = code.len() as u64;
        let f = f.clone();
        st.code = code;
        Ok(Response::new(f))
    }

    async fn update_function_configuration(
        &self,
        req: Request<v1::UpdateFunctionConfigurationRequest>,
    ) -> Result<Response<v1::FunctionConfiguration>, Status> {
        let req = req.into_inner();
        let mut st = self.0.lock().unwrap();
        let f = st
            .functions
            .get_mut(&req.function_name)
            .ok_or_else(|| Status::not_found("function not found"))?;
        if let Some(m) = req.memory_size_mb {
            f.memory_size_mb = m;
        }
        if req.replace_environment {
            f.environment = req.environment;
        }
        Ok(Response::new(f.clone()))
    }

    async fn delete_function(
        &self,
        req: Request<v1::DeleteFunctionRequest>,
    ) -> Result<Response<v1::DeleteFunctionResponse>, Status> {
        let name = req.into_inner().function_name;
        match self.0.lock().unwrap().functions.remove(&name) {
            Some(_) => Ok(Response::new(v1::DeleteFunctionResponse {})),
            None => Err(Status::not_found(format!("function `{name}` not found"))),
        }
    }

    type InvokeWithResponseStreamStream = tokio_stream::Iter<
        std::vec::IntoIter<Result<v1::InvokeWithResponseStreamResponse, Status>>,
    >;

    /// Streams the payload split at `|`, then a completion naming the function.
    async fn invoke_with_response_stream(
        &self,
        req: Request<v1::InvokeRequest>,
    ) -> Result<Response<Self::InvokeWithResponseStreamStream>, Status> {
        use v1::invoke_with_response_stream_response::Event;
        let req = req.into_inner();
        if req.function_name == "missing" {
            return Err(Status::not_found("function `missing` not found"));
        }
        let mut events: Vec<Result<v1::InvokeWithResponseStreamResponse, Status>> = Vec::new();
        for chunk in req.payload.split(|b| *b == b'|') {
            events.push(Ok(v1::InvokeWithResponseStreamResponse {
                event: Some(Event::PayloadChunk(chunk.to_vec())),
            }));
        }
        events.push(Ok(v1::InvokeWithResponseStreamResponse {
            event: Some(Event::InvokeComplete(v1::InvokeComplete {
                request_id: format!("streamed-{}", req.function_name),
                ..Default::default()
            })),
        }));
        Ok(Response::new(tokio_stream::iter(events)))
    }

    async fn invoke(
        &self,
        req: Request<v1::InvokeRequest>,
    ) -> Result<Response<v1::InvokeResponse>, Status> {
        let req = req.into_inner();
        if req.invocation_type == v1::InvocationType::Event as i32 {
            return Ok(Response::new(v1::InvokeResponse {
                status_code: 202,
                request_id: format!("id-for-{}", req.idempotency_key),
                duplicate: !req.idempotency_key.is_empty(),
                ..Default::default()
            }));
        }
        Ok(Response::new(v1::InvokeResponse {
            status_code: 200,
            payload: req.payload,
            executed_version: "$LATEST".into(),
            ..Default::default()
        }))
    }

    async fn get_logs(
        &self,
        req: Request<v1::GetLogsRequest>,
    ) -> Result<Response<v1::GetLogsResponse>, Status> {
        let req = req.into_inner();
        let events: Vec<_> = (req.after_seq + 1..=5)
            .map(|seq| v1::LogEvent {
                seq,
                message: format!("line {seq}"),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(v1::GetLogsResponse {
            events,
            last_seq: 5,
        }))
    }

    async fn list_workers(
        &self,
        _: Request<v1::ListWorkersRequest>,
    ) -> Result<Response<v1::ListWorkersResponse>, Status> {
        Ok(Response::new(v1::ListWorkersResponse {
            workers: vec![v1::WorkerInfo {
                worker_id: "w1".into(),
                ..Default::default()
            }],
        }))
    }

    // Resource-based policies are the controller's (tests/tests/policies.rs).
    async fn add_permission(
        &self,
        _: Request<v1::AddPermissionRequest>,
    ) -> Result<Response<v1::AddPermissionResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn remove_permission(
        &self,
        _: Request<v1::RemovePermissionRequest>,
    ) -> Result<Response<v1::RemovePermissionResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }

    async fn get_policy(
        &self,
        _: Request<v1::GetPolicyRequest>,
    ) -> Result<Response<v1::GetPolicyResponse>, Status> {
        Err(Status::unimplemented("not in this fake"))
    }
}

/// The asynchronous-invocation calls, on their own service (`Events`) as in the controller.
#[tonic::async_trait]
impl Events for Server {
    async fn put_function_event_invoke_config(
        &self,
        req: Request<v1::PutFunctionEventInvokeConfigRequest>,
    ) -> Result<Response<v1::FunctionEventInvokeConfig>, Status> {
        let r = req.into_inner();
        Ok(Response::new(v1::FunctionEventInvokeConfig {
            function_name: r.function_name,
            maximum_retry_attempts: r.maximum_retry_attempts.unwrap_or(2),
            maximum_event_age_seconds: r.maximum_event_age_seconds.unwrap_or(21600),
            on_success: r.on_success.unwrap_or_default(),
            on_failure: r.on_failure.unwrap_or_default(),
            last_modified_ms: 1,
        }))
    }

    async fn get_function_event_invoke_config(
        &self,
        req: Request<v1::GetFunctionEventInvokeConfigRequest>,
    ) -> Result<Response<v1::FunctionEventInvokeConfig>, Status> {
        Err(Status::not_found(format!(
            "function `{}` not found",
            req.into_inner().function_name
        )))
    }

    async fn get_invocation(
        &self,
        req: Request<v1::GetInvocationRequest>,
    ) -> Result<Response<v1::Invocation>, Status> {
        Ok(Response::new(v1::Invocation {
            request_id: req.into_inner().request_id,
            state: "Succeeded".into(),
            ..Default::default()
        }))
    }

    async fn list_invocations(
        &self,
        req: Request<v1::ListInvocationsRequest>,
    ) -> Result<Response<v1::ListInvocationsResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(v1::ListInvocationsResponse {
            invocations: (0..r.limit)
                .map(|i| v1::Invocation {
                    request_id: format!("r{i}"),
                    function_name: r.function_name.clone(),
                    ..Default::default()
                })
                .collect(),
        }))
    }

    async fn list_dead_letter_queues(
        &self,
        _: Request<v1::ListDeadLetterQueuesRequest>,
    ) -> Result<Response<v1::ListDeadLetterQueuesResponse>, Status> {
        Ok(Response::new(v1::ListDeadLetterQueuesResponse {
            queues: vec![v1::DeadLetterQueue {
                name: "default".into(),
                messages: 3,
            }],
        }))
    }

    async fn list_dead_letters(
        &self,
        req: Request<v1::ListDeadLettersRequest>,
    ) -> Result<Response<v1::ListDeadLettersResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(v1::ListDeadLettersResponse {
            messages: vec![v1::DeadLetter {
                seq: r.after_seq + 1,
                function_name: r.queue,
                ..Default::default()
            }],
        }))
    }

    async fn redrive_dead_letters(
        &self,
        req: Request<v1::RedriveDeadLettersRequest>,
    ) -> Result<Response<v1::RedriveDeadLettersResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(v1::RedriveDeadLettersResponse {
            request_ids: r.seqs.iter().map(|s| format!("{}-{s}", r.queue)).collect(),
        }))
    }
}

async fn serve() -> (Server, String) {
    let server = Server::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = FunctionsServer::new(server.clone())
        .max_decoding_message_size(lamina_proto::MAX_GRPC_MESSAGE_BYTES)
        .max_encoding_message_size(lamina_proto::MAX_GRPC_MESSAGE_BYTES);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .add_service(EventsServer::new(server.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (server, addr.to_string())
}

fn spec(name: &str) -> v1::FunctionSpec {
    v1::FunctionSpec {
        name: name.into(),
        runtime: "provided".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn create_streams_code_in_1mb_chunks() {
    let (server, addr) = serve().await;
    let client = Client::connect(&addr).await.unwrap();
    let zip: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    let f = client
        .create_function(spec("big"), zip.clone())
        .await
        .unwrap();
    assert_eq!(f.code_size, zip.len() as u64);
    let st = server.0.lock().unwrap();
    assert_eq!(
        st.chunk_sizes,
        [1024 * 1024, 1024 * 1024, 2_500_000 - 2 * 1024 * 1024]
    );
    assert_eq!(st.code, zip);
}

#[tokio::test]
async fn update_code_streams_name_then_code() {
    let (server, addr) = serve().await;
    let client = Client::connect(&format!("http://{addr}")).await.unwrap();
    client
        .create_function(spec("f"), vec![1, 2, 3])
        .await
        .unwrap();
    let f = client
        .update_function_code("f", vec![9; 1_500_000])
        .await
        .unwrap();
    assert_eq!(f.code_size, 1_500_000);
    assert_eq!(server.0.lock().unwrap().code, vec![9; 1_500_000]);
}

#[tokio::test]
async fn list_follows_pages() {
    let (server, addr) = serve().await;
    let client = Client::connect(&addr).await.unwrap();
    for name in ["e", "a", "d", "b", "c"] {
        client.create_function(spec(name), vec![0]).await.unwrap();
    }
    let names: Vec<String> = client
        .list_functions()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["a", "b", "c", "d", "e"]);
    assert_eq!(server.0.lock().unwrap().list_calls, 3);
}

#[tokio::test]
async fn api_errors_carry_the_status() {
    let (_server, addr) = serve().await;
    let client = Client::connect(&addr).await.unwrap();
    let err = client.get_function("nope").await.unwrap_err();
    assert_eq!(err.to_string(), "function `nope` not found");
    assert_eq!(err.status().map(|s| s.code()), Some(tonic::Code::NotFound));
    assert!(matches!(
        client.delete_function("nope").await,
        Err(Error::Api(_))
    ));
}

#[tokio::test]
async fn the_other_calls() {
    let (_server, addr) = serve().await;
    let client = Client::connect(&addr).await.unwrap();
    client.create_function(spec("f"), vec![0]).await.unwrap();
    let f = client
        .update_function_configuration(v1::UpdateFunctionConfigurationRequest {
            function_name: "f".into(),
            memory_size_mb: Some(512),
            replace_environment: true,
            environment: [("K".to_string(), "v".to_string())].into_iter().collect(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(f.memory_size_mb, 512);
    assert_eq!(f.environment["K"], "v");
    assert_eq!(client.get_function("f").await.unwrap().memory_size_mb, 512);
    // A payload above tonic's default 4 MB limit must pass: limits are set to MAX_GRPC_MESSAGE_BYTES.
    let payload = vec![b'7'; 5 * 1024 * 1024];
    let resp = client
        .invoke(v1::InvokeRequest {
            function_name: "f".into(),
            payload: payload.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(resp.payload, payload);
    let logs = client.get_logs("f", 3, 0).await.unwrap();
    let seqs: Vec<u64> = logs.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [4, 5]);
    assert_eq!(client.list_workers().await.unwrap()[0].worker_id, "w1");
    client.delete_function("f").await.unwrap();
    assert!(client.list_functions().await.unwrap().is_empty());
}

#[tokio::test]
async fn async_calls_carry_their_fields() {
    let (_server, addr) = serve().await;
    let client = Client::connect(&addr).await.unwrap();
    let r = client
        .invoke_async("f", b"{}".to_vec(), Some("k1"))
        .await
        .unwrap();
    assert_eq!(
        (r.status_code, r.request_id.as_str(), r.duplicate),
        (202, "id-for-k1", true)
    );
    let c = client
        .put_event_invoke_config(v1::PutFunctionEventInvokeConfigRequest {
            function_name: "f".into(),
            maximum_retry_attempts: Some(0),
            on_failure: Some("dlq:q".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (c.maximum_retry_attempts, c.on_failure.as_str()),
        (0, "dlq:q")
    );
    let err = client.get_event_invoke_config("nope").await.unwrap_err();
    assert_eq!(err.to_string(), "function `nope` not found");
    assert_eq!(client.get_invocation("x").await.unwrap().request_id, "x");
    assert_eq!(client.list_invocations("f", 3).await.unwrap().len(), 3);
    assert_eq!(
        client.list_dead_letter_queues().await.unwrap()[0].messages,
        3
    );
    assert_eq!(client.list_dead_letters("q", 4, 0).await.unwrap()[0].seq, 5);
    assert_eq!(
        client.redrive_dead_letters("q", vec![1, 2]).await.unwrap(),
        ["q-1", "q-2"]
    );
}

#[tokio::test]
async fn streamed_invocations_yield_chunks_then_the_completion() {
    use lamina_client::StreamEvent;
    let (_server, endpoint) = serve().await;
    let c = Client::connect(&endpoint).await.unwrap();
    let mut stream = c
        .invoke_with_response_stream(v1::InvokeRequest {
            function_name: "f".into(),
            payload: b"a|bb|ccc".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    while let Some(ev) = stream.next().await.unwrap() {
        got.push(ev);
    }
    assert_eq!(
        got[..3],
        [
            StreamEvent::Chunk(b"a".to_vec()),
            StreamEvent::Chunk(b"bb".to_vec()),
            StreamEvent::Chunk(b"ccc".to_vec()),
        ]
    );
    match &got[3] {
        StreamEvent::Complete(done) => assert_eq!(done.request_id, "streamed-f"),
        other => panic!("{other:?}"),
    }
    assert_eq!(got.len(), 4);
    let err = c
        .invoke_with_response_stream(v1::InvokeRequest {
            function_name: "missing".into(),
            ..Default::default()
        })
        .await
        .err()
        .expect("an error before any event");
    assert!(err.to_string().contains("not found"), "{err}");
}
