//! Crash test of the async queue: 10,000 events are accepted while the controller is SIGKILLed
//! several times (and restarted on the same data directory and port) and a worker once. Every
//! accepted event must reach exactly one terminal state: lost = 0; duplicate deliveries are counted
//! and printed.
//!
//! Clients send each event with its own idempotency key and retry until they get a 202, as a
//! careful client would: an event whose 202 was lost with the controller is not enqueued twice.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lamina_e2e::*;

const EVENTS: usize = 10_000;
const SUBMITTERS: usize = 64;
const HANDLER: &str = "def handler(event, context):\n    return 1\n";

fn controller_args() -> Vec<&'static str> {
    let mut a = ASYNC_FAST.to_vec();
    a.extend([
        "--async-concurrency",
        "48",
        "--async-dispatch-rate",
        "20000",
    ]);
    a
}

async fn submit(
    endpoint: String,
    creds: Credentials,
    name: String,
    next: Arc<Mutex<usize>>,
    accepted: Arc<Mutex<HashMap<usize, String>>>,
) {
    let mut client: Option<Client> = None;
    loop {
        let i = {
            let mut n = next.lock().unwrap();
            if *n >= EVENTS {
                return;
            }
            *n += 1;
            *n - 1
        };
        let key = format!("ev-{i}");
        loop {
            if client.is_none() {
                client = Client::connect_with(&endpoint, Some(creds.clone()))
                    .await
                    .ok();
            }
            let Some(c) = &client else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            match c
                .invoke_async(&name, format!(r#"{{"i":{i}}}"#).into_bytes(), Some(&key))
                .await
            {
                Ok(r) if r.status_code == 202 => {
                    accepted.lock().unwrap().insert(i, r.request_id);
                    break;
                }
                _ => {
                    client = None;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

#[test]
fn accepted_events_survive_controller_and_worker_kills() {
    run(async {
        let args = controller_args();
        let mut cluster = Cluster::start_full(1, &args, &[])?;
        let c = cluster.client().await?;
        let name = unique("crash");
        let mut s = spec(&name, "python3.11", "app.handler");
        s.memory_size_mb = 128;
        c.create_function(s, zip_of(&[("app.py", HANDLER, 0o644)]))
            .await?;
        drop(c);

        let started = Instant::now();
        let next = Arc::new(Mutex::new(0usize));
        let accepted: Arc<Mutex<HashMap<usize, String>>> = Arc::default();
        let submitters: Vec<_> = (0..SUBMITTERS)
            .map(|_| {
                tokio::spawn(submit(
                    cluster.endpoint.clone(),
                    cluster.credentials.clone(),
                    name.clone(),
                    Arc::clone(&next),
                    Arc::clone(&accepted),
                ))
            })
            .collect();

        // Kill the controller three times while events are being accepted and delivered, and a
        // worker once.
        let mut kills = 0;
        for round in 1..=3 {
            let target = EVENTS * round / 4;
            while accepted.lock().unwrap().len() < target {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            cluster.restart_controller(true, &args, round)?;
            kills += 1;
            if round == 2 {
                cluster.kill_worker(0);
                cluster.add_worker(&[])?;
            }
        }
        for s in submitters {
            s.await?;
        }
        let accepted_in = started.elapsed();
        let accepted = accepted.lock().unwrap().clone();
        assert_eq!(accepted.len(), EVENTS);

        // Every accepted event reaches a terminal state.
        let c = cluster.client().await?;
        let deadline = Instant::now() + Duration::from_secs(240);
        let records = loop {
            let list = c.list_invocations(&name, (EVENTS * 2) as u32).await?;
            let done = list.iter().filter(|i| is_terminal(&i.state)).count();
            if done == list.len() && list.len() >= EVENTS {
                break list;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {done} of {} events finished\n{}",
                list.len(),
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let by_id: HashMap<&str, &v1::Invocation> =
            records.iter().map(|i| (i.request_id.as_str(), i)).collect();
        let lost: Vec<&String> = accepted
            .values()
            .filter(|id| !matches!(by_id.get(id.as_str()), Some(i) if is_terminal(&i.state)))
            .collect();
        let succeeded = records.iter().filter(|i| i.state == "Succeeded").count();
        let attempts: u64 = records.iter().map(|i| u64::from(i.attempts)).sum();
        let duplicates = attempts.saturating_sub(records.len() as u64);
        println!(
            "crash test: {EVENTS} events accepted in {:.1} s with {kills} controller SIGKILLs and 1 worker SIGKILL; \
             all finished after {:.1} s; records {}, succeeded {succeeded}, lost {}, duplicate deliveries {duplicates} \
             (deliveries started {attempts})",
            accepted_in.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            records.len(),
            lost.len()
        );
        assert!(lost.is_empty(), "lost events: {lost:?}");
        // Idempotency keys held across the crashes: one event per key, no stray ones.
        assert_eq!(records.len(), EVENTS, "one record per accepted event");
        assert_eq!(
            succeeded, EVENTS,
            "the handler cannot fail: every event succeeds"
        );
        Ok(())
    })
}
