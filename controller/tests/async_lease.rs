//! An async delivery's lease is sized from the timeout of the version it runs, not `$LATEST`'s:
//! the real controller, a fake worker that takes longer than `$LATEST`'s timeout but less than the
//! version's, and no lease headroom, so a lease sized from `$LATEST` runs out mid-delivery and the
//! event is delivered a second time.
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use lamina_proto::v1;

#[derive(Clone, Default)]
struct SlowWorker {
    calls: Arc<Mutex<HashMap<String, u32>>>,
}

#[tonic::async_trait]
impl FakeInvoke for SlowWorker {
    async fn invoke(
        &self,
        request: tonic::Request<v1::WorkerInvokeRequest>,
    ) -> Result<tonic::Response<v1::WorkerInvokeResponse>, tonic::Status> {
        let r = request.into_inner();
        *self.calls.lock().unwrap().entry(r.request_id).or_default() += 1;
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(tonic::Response::new(v1::WorkerInvokeResponse {
            payload: b"{}".to_vec(),
            ..Default::default()
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_lease_covers_the_timeout_of_the_version_it_runs() {
    let run = start_with(|c| c.queue.lease_headroom = Duration::ZERO).await;
    let worker = SlowWorker::default();
    let stop = serve_fake_worker(run.addr, worker.clone(), 4096).await;
    let mut c = user_api(run.addr).await;
    let mut s = spec("f");
    s.timeout_seconds = 20;
    create(
        &mut c,
        create_msgs(Some(s), &zip_of(&[("app.py", b"x")]), 1024),
    )
    .await
    .unwrap();
    let v1 = c
        .versions
        .publish_version(v1::PublishVersionRequest {
            function_name: "f".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    c.update_function_configuration(v1::UpdateFunctionConfigurationRequest {
        function_name: "f".into(),
        timeout_seconds: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();

    let accepted = c
        .invoke(v1::InvokeRequest {
            function_name: "f".into(),
            qualifier: v1.version.clone(),
            invocation_type: v1::InvocationType::Event as i32,
            payload: b"{}".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        let inv = c
            .events
            .get_invocation(v1::GetInvocationRequest {
                request_id: accepted.request_id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        if inv.state == "Succeeded" {
            break inv;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not delivered within 30 s: {inv:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Let a second delivery, had the lease run out, reach the worker.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = worker
        .calls
        .lock()
        .unwrap()
        .get(&accepted.request_id)
        .copied();
    assert_eq!(calls, Some(1), "delivered more than once: {done:?}");
    assert_eq!(done.attempts, 1, "{done:?}");
    stop.cancel();
    run.shutdown.cancel();
}
