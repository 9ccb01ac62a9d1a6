//! `lamina-async-bench`: how many asynchronous events one controller accepts per second when each
//! 202 waits for a synced RocksDB write (group commit), and the acknowledgement latency. Runs a real
//! controller on a temporary data directory; run after `cargo build --workspace --bins --lib`:
//!
//!     /var/tmp/lamina-target/debug/lamina-async-bench [--events N] [--clients N] [--connections N]
//!
//! The dispatcher is slowed to 1 event/s and no worker runs, so what is measured is acceptance
//! alone (the synced enqueue), not delivery.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use lamina_e2e::*;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str, default: usize| -> usize {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (events, clients, connections) = (
        arg("--events", 50_000),
        arg("--clients", 256),
        arg("--connections", 8),
    );
    let rt = tokio::runtime::Runtime::new()?;
    let cluster = Cluster::start_full(0, &["--async-dispatch-rate", "1"], &[])?;
    rt.block_on(async {
        let c = cluster.client().await?;
        let name = unique("bench");
        create_python(&c, &name, "def handler(e, c):\n    return 1\n").await?;
        let mut conns = Vec::new();
        for _ in 0..connections.max(1) {
            conns.push(cluster.client().await?);
        }
        // Warm up (connections, RocksDB files).
        for _ in 0..200 {
            c.invoke_async(&name, b"{}".to_vec(), None).await?;
        }
        let next = Arc::new(AtomicUsize::new(0));
        let payload = br#"{"order":12345,"item":"widget","quantity":3,"note":"benchmark event"}"#;
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|k| {
                let client = conns[k % conns.len()].clone();
                let (next, name) = (Arc::clone(&next), name.clone());
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < events {
                        let t = Instant::now();
                        let r = client.invoke_async(&name, payload.to_vec(), None).await?;
                        anyhow::ensure!(r.status_code == 202, "{r:?}");
                        lat.push(t.elapsed());
                    }
                    Ok::<Vec<Duration>, anyhow::Error>(lat)
                })
            })
            .collect();
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await??);
        }
        let elapsed = started.elapsed();
        lat.sort();
        let pct =
            |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        println!("machine: {cores} cores; one controller, synced writes (group commit), no worker");
        println!(
            "{} events, {clients} concurrent clients over {connections} connections, {} B payload",
            lat.len(),
            payload.len()
        );
        println!(
            "accepted: {:.0} events/s; ack latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            lat.len() as f64 / elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            pct(1.0)
        );
        Ok(())
    })
}
