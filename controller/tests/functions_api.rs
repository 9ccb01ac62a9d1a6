//! Function lifecycle, invalid inputs, workers without sandboxes and reflection, through a real
//! controller on 127.0.0.1:0.
mod common;

use std::time::Duration;

use common::*;
use lamina_proto::v1::{self, cluster_client::ClusterClient, update_function_code_request};
use tonic::Code;

#[tokio::test]
async fn function_lifecycle_and_invalid_inputs() {
    let run = start().await;
    let mut c = functions(run.addr).await;
    let code = zip_of(&[(
        "app.py",
        b"def handler(event, context):\n    return event\n",
    )]);

    // Create with the code in small chunks; defaults are applied.
    let created = create(&mut c, create_msgs(Some(spec("echo")), &code, 7))
        .await
        .unwrap();
    assert_eq!(created.name, "echo");
    assert_eq!(
        (
            created.memory_size_mb,
            created.timeout_seconds,
            created.ephemeral_storage_mb
        ),
        (128, 3, 512)
    );
    assert_eq!(created.code_sha256, sha256_hex(&code));
    assert_eq!(created.code_size, code.len() as u64);
    assert_eq!(
        (created.version.as_str(), created.state.as_str()),
        ("$LATEST", "Active")
    );
    assert!(created.arn.ends_with(":function:echo"));
    assert!(!created.revision_id.is_empty() && created.last_modified_ms > 0);
    let got = c
        .get_function(v1::GetFunctionRequest {
            function_name: "echo".into(),
            qualifier: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got, created);
    assert_eq!(
        fetch_code(run.addr, &created.code_sha256).await.unwrap(),
        code
    );

    // Invalid creates.
    assert_status(
        create(&mut c, create_msgs(Some(spec("echo")), &code, 1024)).await,
        Code::AlreadyExists,
        "function `echo` already exists",
    );
    let mut bad = spec("small");
    bad.memory_size_mb = 64;
    assert_status(
        create(&mut c, create_msgs(Some(bad), &code, 1024)).await,
        Code::InvalidArgument,
        "memory must be 128..10240 MB, got 64",
    );
    assert_status(
        create(&mut c, create_msgs(Some(spec("bad/name")), &code, 1024)).await,
        Code::InvalidArgument,
        "function name",
    );
    assert_status(
        create(&mut c, create_msgs(None, &code, 1024)).await,
        Code::InvalidArgument,
        "first message must carry `spec`",
    );
    let mut twice = create_msgs(Some(spec("twice")), &code, 1024);
    twice.push(create_msgs(Some(spec("twice")), &[], 1).remove(0));
    assert_status(
        create(&mut c, twice).await,
        Code::InvalidArgument,
        "only be sent once",
    );
    assert_status(
        create(&mut c, create_msgs(Some(spec("nocode")), &[], 1)).await,
        Code::InvalidArgument,
        "code is required",
    );
    assert_status(
        create(
            &mut c,
            create_msgs(Some(spec("notzip")), b"plain text", 1024),
        )
        .await,
        Code::InvalidArgument,
        "not a valid zip",
    );
    let slip = zip_of(&[("../evil.py", b"x")]);
    assert_status(
        create(&mut c, create_msgs(Some(spec("slip")), &slip, 1024)).await,
        Code::InvalidArgument,
        "../evil.py",
    );
    let abs = zip_of(&[("/etc/passwd", b"x")]);
    assert_status(
        create(&mut c, create_msgs(Some(spec("abs")), &abs, 1024)).await,
        Code::InvalidArgument,
        "absolute path",
    );
    let big = vec![0u8; 51 * 1024 * 1024];
    assert_status(
        create(&mut c, create_msgs(Some(spec("big")), &big, 1024 * 1024)).await,
        Code::InvalidArgument,
        "at most 52428800 bytes",
    );
    for name in ["small", "twice", "nocode", "notzip", "slip", "abs", "big"] {
        assert_status(
            c.get_function(v1::GetFunctionRequest {
                function_name: name.into(),
                qualifier: String::new(),
            })
            .await,
            Code::NotFound,
            &format!("function `{name}` not found"),
        );
    }

    // List with pagination, sorted by name.
    for name in ["b-fn", "a-fn"] {
        create(&mut c, create_msgs(Some(spec(name)), &code, 1024))
            .await
            .unwrap();
    }
    let page = c
        .list_functions(v1::ListFunctionsRequest {
            marker: String::new(),
            max_items: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.functions
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["a-fn", "b-fn"]
    );
    assert_eq!(page.next_marker, "b-fn");
    let page = c
        .list_functions(v1::ListFunctionsRequest {
            marker: page.next_marker,
            max_items: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.functions
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>(),
        ["echo"]
    );
    assert_eq!(page.next_marker, "");

    // Configuration updates: only the fields set; environment merged or replaced.
    let updated = c
        .update_function_configuration(v1::UpdateFunctionConfigurationRequest {
            function_name: "echo".into(),
            memory_size_mb: Some(256),
            environment: [("MORE".to_string(), "1".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((updated.memory_size_mb, updated.timeout_seconds), (256, 3));
    assert_eq!(updated.environment.len(), 2);
    assert_ne!(updated.revision_id, created.revision_id);
    assert_eq!(updated.code_sha256, created.code_sha256);
    let replaced = c
        .update_function_configuration(v1::UpdateFunctionConfigurationRequest {
            function_name: "echo".into(),
            replace_environment: true,
            environment: [("ONLY".to_string(), "x".to_string())].into(),
            timeout_seconds: Some(30),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replaced.environment.keys().collect::<Vec<_>>(), ["ONLY"]);
    assert_eq!(
        (replaced.memory_size_mb, replaced.timeout_seconds),
        (256, 30)
    );
    assert_status(
        c.update_function_configuration(v1::UpdateFunctionConfigurationRequest {
            function_name: "echo".into(),
            timeout_seconds: Some(901),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "timeout must be 1..900 seconds, got 901",
    );
    assert_status(
        c.update_function_configuration(v1::UpdateFunctionConfigurationRequest {
            function_name: "ghost".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "function `ghost` not found",
    );

    // Code update: new digest and revision; the old blob is still used by a-fn and b-fn.
    use update_function_code_request::Part;
    let code2 = zip_of(&[("app.py", b"def handler(event, context):\n    return 2\n")]);
    let msgs = vec![
        v1::UpdateFunctionCodeRequest {
            part: Some(Part::FunctionName("echo".into())),
        },
        v1::UpdateFunctionCodeRequest {
            part: Some(Part::CodeChunk(code2.clone())),
        },
    ];
    let recoded = c
        .update_function_code(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recoded.code_sha256, sha256_hex(&code2));
    assert_ne!(recoded.revision_id, replaced.revision_id);
    assert_eq!(recoded.environment.keys().collect::<Vec<_>>(), ["ONLY"]);
    assert_eq!(
        fetch_code(run.addr, &recoded.code_sha256).await.unwrap(),
        code2
    );
    assert_eq!(
        fetch_code(run.addr, &created.code_sha256).await.unwrap(),
        code
    );
    let chunk_first = vec![v1::UpdateFunctionCodeRequest {
        part: Some(Part::CodeChunk(code2.clone())),
    }];
    assert_status(
        c.update_function_code(tokio_stream::iter(chunk_first))
            .await,
        Code::InvalidArgument,
        "function_name",
    );
    let ghost = vec![v1::UpdateFunctionCodeRequest {
        part: Some(Part::FunctionName("ghost".into())),
    }];
    assert_status(
        c.update_function_code(tokio_stream::iter(ghost)).await,
        Code::NotFound,
        "function `ghost` not found",
    );

    // Delete: the blob goes with its last user.
    for name in ["a-fn", "b-fn"] {
        c.delete_function(v1::DeleteFunctionRequest {
            function_name: name.into(),
            qualifier: String::new(),
        })
        .await
        .unwrap();
    }
    assert_status(
        fetch_code(run.addr, &created.code_sha256).await,
        Code::NotFound,
        "not found",
    );
    assert_status(
        fetch_code(run.addr, "nothex").await,
        Code::InvalidArgument,
        "64 hex digits",
    );
    assert_status(
        c.delete_function(v1::DeleteFunctionRequest {
            function_name: "a-fn".into(),
            qualifier: String::new(),
        })
        .await,
        Code::NotFound,
        "function `a-fn` not found",
    );

    // Logs of an existing function without invocations; unknown function.
    let logs = c
        .get_logs(v1::GetLogsRequest {
            function_name: "echo".into(),
            after_seq: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(logs.events.is_empty());
    assert_eq!(logs.last_seq, 0);
    assert_status(
        c.get_logs(v1::GetLogsRequest {
            function_name: "ghost".into(),
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "function `ghost` not found",
    );

    // Invoke without any worker, and invalid invocations.
    let invoke = |function_name: &str,
                  qualifier: &str,
                  invocation_type: v1::InvocationType,
                  payload: Vec<u8>| v1::InvokeRequest {
        function_name: function_name.into(),
        qualifier: qualifier.into(),
        invocation_type: invocation_type as i32,
        payload,
        ..Default::default()
    };
    use v1::InvocationType::{DryRun, Event, RequestResponse};
    assert_status(
        c.invoke(invoke("echo", "", RequestResponse, b"{}".to_vec()))
            .await,
        Code::Unavailable,
        "no worker is available",
    );
    assert_status(
        c.invoke(invoke("ghost", "", RequestResponse, vec![])).await,
        Code::NotFound,
        "function `ghost` not found",
    );
    assert_status(
        c.invoke(invoke("echo", "prod", RequestResponse, vec![]))
            .await,
        Code::NotFound,
        "has no alias `prod`",
    );
    assert_status(
        c.invoke(invoke(
            "echo",
            "",
            RequestResponse,
            vec![b'x'; 6 * 1024 * 1024 + 1],
        ))
        .await,
        Code::InvalidArgument,
        "payload must be at most 6291456 bytes",
    );
    let queued = c
        .invoke(invoke("echo", "$LATEST", Event, vec![]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((queued.status_code, queued.request_id.len()), (202, 36));
    assert_status(
        c.invoke(invoke(
            "echo",
            "$LATEST",
            Event,
            vec![b'x'; 1024 * 1024 + 1],
        ))
        .await,
        Code::InvalidArgument,
        "asynchronous payload must be at most 1048576 bytes",
    );
    let dry = c
        .invoke(invoke("echo", "$LATEST", DryRun, vec![]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (dry.status_code, dry.executed_version.as_str()),
        (204, "$LATEST")
    );

    // A registered worker that is not listening: Unavailable naming the worker, without hanging.
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cluster = ClusterClient::new(channel(run.addr).await);
    let hb = |id: &str| v1::HeartbeatRequest {
        worker_id: id.into(),
        memory_free_mb: 1000,
        ..Default::default()
    };
    assert!(
        !cluster
            .heartbeat(hb("dead"))
            .await
            .unwrap()
            .into_inner()
            .known
    );
    let reg = cluster
        .register_worker(v1::RegisterWorkerRequest {
            worker_id: "dead".into(),
            address: format!("127.0.0.1:{dead_port}"),
            memory_total_mb: 2048,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reg.heartbeat_interval_ms, 200);
    assert!(
        cluster
            .heartbeat(hb("dead"))
            .await
            .unwrap()
            .into_inner()
            .known
    );
    let started = std::time::Instant::now();
    assert_status(
        c.invoke(invoke("echo", "", RequestResponse, vec![])).await,
        Code::Unavailable,
        "worker `dead`",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let workers = c
        .list_workers(v1::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    assert_eq!(workers.len(), 1);
    assert_eq!(
        (
            workers[0].worker_id.as_str(),
            workers[0].state.as_str(),
            workers[0].memory_total_mb,
            workers[0].memory_free_mb
        ),
        // The failed connection marked it unreachable: Down until it heartbeats again.
        ("dead", "Down", 2048, 1000)
    );
    // Without heartbeats it goes Down and gets no work.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let workers = c
        .list_workers(v1::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers;
    assert_eq!(workers[0].state, "Down");
    assert_status(
        c.invoke(invoke("echo", "", RequestResponse, vec![])).await,
        Code::Unavailable,
        "no worker is available",
    );
    assert_status(
        cluster
            .register_worker(v1::RegisterWorkerRequest::default())
            .await,
        Code::InvalidArgument,
        "worker_id and address are required",
    );

    c.delete_function(v1::DeleteFunctionRequest {
        function_name: "echo".into(),
        qualifier: String::new(),
    })
    .await
    .unwrap();
    assert_status(
        c.get_function(v1::GetFunctionRequest {
            function_name: "echo".into(),
            qualifier: String::new(),
        })
        .await,
        Code::NotFound,
        "function `echo` not found",
    );
    assert_status(
        fetch_code(run.addr, &recoded.code_sha256).await,
        Code::NotFound,
        "not found",
    );

    run.shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), run.server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn serves_grpc_reflection() {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let run = start().await;
    let mut client = ServerReflectionClient::new(channel(run.addr).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "lamina.v1.Functions",
        "lamina.v1.Versions",
        "lamina.v1.Concurrency",
        "lamina.v1.Events",
        "lamina.v1.Layers",
        "lamina.v1.Cluster",
    ] {
        assert!(names.iter().any(|n| n == service), "{names:?}");
    }
    run.shutdown.cancel();
}
