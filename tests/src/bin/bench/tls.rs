//! Issue 17's phase: what TLS costs. Two single-worker clusters in the same run, one with
//! `--plaintext` on loopback, one with TLS on every listener and mTLS to its worker
//! (`Cluster::start_tls`):
//! - a new connection to the controller's gRPC port: TCP connect alone (plaintext) against TCP
//!   connect + TLS 1.3 handshake (ECDSA P-256, rustls/ring on both ends);
//! - a warm no-op Python invocation through the SDK on an established connection, alternating
//!   between the clusters (over TLS the request crosses two TLS hops: client -> controller and
//!   controller -> worker).
//!
//! `lamina-bench --only tls` runs this phase alone.
use std::time::Instant;

use anyhow::{ensure, Result};
use lamina_e2e::*;
use lamina_proto::tls::{client_config, load_roots, TlsConnect};
use tower_service::Service;

use super::report::{pct, Report};

const NOOP: &str = "def handler(event, context):\n    return {'ok': True}\n";

async fn warm(c: &Client) -> Result<f64> {
    let t = Instant::now();
    let r = invoke(c, "bench-tls", "{}").await?;
    let elapsed = t.elapsed().as_secs_f64() * 1000.0;
    ensure!(
        r.function_error.is_empty(),
        "{}",
        String::from_utf8_lossy(&r.payload)
    );
    Ok(elapsed)
}

pub fn run(
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
    targets: &mut Vec<String>,
    full: bool,
) -> Result<()> {
    let (connects, invokes) = if full { (1000, 2000) } else { (200, 400) };
    let plain = Cluster::start(1)?;
    let tls = Cluster::start_tls(1, &[], &[])?;
    rt.block_on(async {
        // Handshakes: a fresh connection each time, closed right after.
        let addr = tls.controller.address.clone();
        let config = client_config(load_roots(tls.ca().expect("a TLS cluster"))?, None)?;
        let mut connector = TlsConnect::new(config);
        let uri: http::Uri = format!("http://{addr}").parse()?;
        let plain_addr = plain.controller.address.clone();
        let (mut tcp_ms, mut tls_ms) = (Vec::new(), Vec::new());
        for _ in 0..connects {
            let t = Instant::now();
            let s = tokio::net::TcpStream::connect(&plain_addr).await?;
            tcp_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            drop(s);
            let t = Instant::now();
            let s = connector.call(uri.clone()).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            tls_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            drop(s);
        }
        let (t50, t99) = rep.latency(
            "new gRPC connection, plaintext (TCP connect)",
            &tcp_ms,
            String::new(),
        );
        let (h50, h99) = (pct(&tls_ms, 0.5), pct(&tls_ms, 0.99));
        rep.latency(
            "new gRPC connection, TLS 1.3 (TCP connect + handshake)",
            &tls_ms,
            format!("+{:.2} ms p50, +{:.2} ms p99 over TCP alone", h50 - t50, h99 - t99),
        );

        // Warm invocations on an established connection, alternating between the clusters.
        let (pc, tc) = (plain.client().await?, tls.client().await?);
        for c in [&pc, &tc] {
            c.create_function(
                spec("bench-tls", "python3.11", "app.handler"),
                zip_of(&[("app.py", NOOP, 0o644)]),
            )
            .await?;
            for _ in 0..5 {
                warm(c).await?;
            }
        }
        let (mut p_ms, mut s_ms) = (Vec::new(), Vec::new());
        for i in 0..invokes {
            if i % 2 == 0 {
                p_ms.push(warm(&pc).await?);
                s_ms.push(warm(&tc).await?);
            } else {
                s_ms.push(warm(&tc).await?);
                p_ms.push(warm(&pc).await?);
            }
        }
        let (p50, p99) = rep.latency("warm no-op invoke, plaintext", &p_ms, String::new());
        let (s50, s99) = (pct(&s_ms, 0.5), pct(&s_ms, 0.99));
        rep.latency(
            "warm no-op invoke, TLS (client and worker hops)",
            &s_ms,
            format!("+{:.2} ms p50, +{:.2} ms p99 over plaintext", s50 - p50, s99 - p99),
        );
        targets.push(format!(
            "TLS: handshake +{:.2} ms p50 over a TCP connect ({h50:.2} vs {t50:.2} ms); warm invoke +{:.2} ms p50 ({s50:.2} vs {p50:.2} ms), +{:.2} ms p99",
            h50 - t50,
            s50 - p50,
            s99 - p99
        ));
        for c in [&pc, &tc] {
            c.delete_function("bench-tls").await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    drop((plain, tls));
    Ok(())
}
