//! The heartbeat names the functions of reported sandboxes whose revision no longer exists, so a
//! worker that missed `Worker.RetireSandboxes` (here: one nobody listens for, every call to it
//! fails) still converges. Real controller over gRPC.
mod common;

use lamina_proto::v1::{self, cluster_client::ClusterClient};

fn beat(revisions: &[&str]) -> v1::HeartbeatRequest {
    v1::HeartbeatRequest {
        worker_id: "w-missed".into(),
        memory_free_mb: 1024,
        sandboxes: revisions
            .iter()
            .map(|r| v1::SandboxStatus {
                sandbox_id: format!("sb-{r}"),
                function_name: "fr".into(),
                revision_id: r.to_string(),
                state: v1::SandboxState::SandboxIdle as i32,
                memory_size_mb: 128,
                provisioned: false,
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn heartbeat_names_functions_whose_reported_revisions_are_gone() {
    let running = common::start().await;
    let mut functions = common::functions(running.addr).await;
    let code = common::zip_of(&[("app.py", b"def handler(e, c): return e\n")]);
    let first = common::create(
        &mut functions,
        common::create_msgs(Some(common::spec("fr")), &code, 1 << 20),
    )
    .await
    .unwrap();
    let mut cluster = ClusterClient::new(common::channel(running.addr).await);
    cluster
        .register_worker(v1::RegisterWorkerRequest {
            worker_id: "w-missed".into(),
            address: "127.0.0.1:9".into(),
            memory_total_mb: 1024,
        })
        .await
        .unwrap();
    let heartbeat = |revisions: Vec<String>| {
        let mut cluster = cluster.clone();
        async move {
            let refs: Vec<&str> = revisions.iter().map(String::as_str).collect();
            cluster.heartbeat(beat(&refs)).await.unwrap().into_inner()
        }
    };

    // The current revision: nothing to retire.
    let r = heartbeat(vec![first.revision_id.clone()]).await;
    assert!(r.known);
    assert!(r.retire.is_empty(), "{:?}", r.retire);

    // Updated: the old revision is stale; the answer lists what still exists.
    let second = functions
        .update_function_configuration(v1::UpdateFunctionConfigurationRequest {
            function_name: "fr".into(),
            description: Some("changed".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(first.revision_id, second.revision_id);
    let r = heartbeat(vec![first.revision_id.clone(), second.revision_id.clone()]).await;
    assert_eq!(
        r.retire,
        vec![v1::RetireSandboxesRequest {
            function_name: "fr".into(),
            keep_revision_ids: vec![second.revision_id.clone()],
        }]
    );

    // Deleted: every revision goes.
    functions
        .delete_function(v1::DeleteFunctionRequest {
            function_name: "fr".into(),
            qualifier: String::new(),
        })
        .await
        .unwrap();
    let r = heartbeat(vec![second.revision_id.clone()]).await;
    assert_eq!(
        r.retire,
        vec![v1::RetireSandboxesRequest {
            function_name: "fr".into(),
            keep_revision_ids: Vec::new(),
        }]
    );
    running.shutdown.cancel();
}
