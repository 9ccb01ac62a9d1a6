//! The HTTP gateway (issue 16): a warm no-op function (`lamina-noop-runtime`, answering `{}`)
//! behind a NONE function URL, loaded with `wrk` (Debian's) at 1 and 16 connections, beside a bare
//! HTTP server in this process answering the same bytes (hyper on 127.0.0.1:0: the floor of the
//! loopback, the HTTP stack and the load generator) and beside direct Invokes through the SDK at
//! the same concurrency, in the same run. Rows: requests/s, p50 and p99; the gateway's p50 over the
//! direct Invoke's is its overhead.
use std::convert::Infallible;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use lamina_e2e::*;

use super::api::{call, ok};
use super::report::{pct, Report};

/// What one load run measured: requests, requests/s, p50 and p99 in ms, non-2xx answers.
struct Load {
    requests: u64,
    rate: f64,
    p50: f64,
    p99: f64,
    errors: u64,
}

/// A duration of wrk's output (`98.00us`, `1.20ms`, `1.00s`, `2.00m`) in ms.
fn wrk_ms(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

/// Parses `wrk --latency` output.
fn parse_wrk(out: &str) -> Result<Load> {
    let field = |prefix: &str| {
        out.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let p50 = field("50%").and_then(wrk_ms);
    let p99 = field("99%").and_then(wrk_ms);
    let rate = field("Requests/sec:").and_then(|v| v.parse().ok());
    let requests = out
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.parse().ok());
    let errors = field("Non-2xx or 3xx responses:")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        + field("Socket errors:")
            .map(|v| {
                // `connect 0, read 0, write 0, timeout 0`
                v.split(',')
                    .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .unwrap_or(0);
    match (p50, p99, rate, requests) {
        (Some(p50), Some(p99), Some(rate), Some(requests)) => Ok(Load {
            requests,
            rate,
            p50,
            p99,
            errors,
        }),
        _ => bail!("cannot read wrk's output:\n{out}"),
    }
}

/// `wrk --latency` with `conns` connections for `secs` against `url` (extra headers `-H`).
async fn wrk(url: &str, headers: &[String], conns: usize, secs: f64) -> Result<Load> {
    let threads = conns.min(2).to_string();
    let conns_s = conns.to_string();
    let duration = format!("{}s", secs.ceil() as u64);
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.args(["--latency", "-t", &threads, "-c", &conns_s, "-d", &duration])
        .args(["--timeout", "10s"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(url)
        .output()
        .await
        .context("run wrk (Debian package `wrk`: deploy/install-deps.sh installs it)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_wrk(&text)
}

/// An HTTP answer: status code, headers (names lower-cased), body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// One `curl -si` answer.
fn fetch(url: &str, host: &str) -> Result<Answer> {
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", "--max-time", "30", "-H", host, url])
        .output()
        .context("run curl")?;
    let raw = out.stdout;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("no HTTP answer from {url}: {raw:?}"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status line: {head}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers, raw[end + 4..].to_vec()))
}

/// A bare HTTP/1.1 server (hyper) on 127.0.0.1:0 answering every request with `headers` and `body`.
async fn floor_server(headers: Vec<(String, String)>, body: Vec<u8>) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let body = Bytes::from(body);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (headers, body) = (headers.clone(), body.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let mut resp = hyper::Response::new(Full::new(body.clone()));
                    for (k, v) in &headers {
                        if let (Ok(k), Ok(v)) = (
                            hyper::header::HeaderName::try_from(k.as_str()),
                            hyper::header::HeaderValue::try_from(v.as_str()),
                        ) {
                            resp.headers_mut().append(k, v);
                        }
                    }
                    async move { Ok::<_, Infallible>(resp) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(address)
}

/// `conns` SDK clients invoking back to back for `secs` (after a warm-up round).
async fn direct(c: &Client, name: &str, conns: usize, secs: f64) -> Result<Load> {
    for _ in 0..3 {
        let calls: Vec<_> = (0..conns).map(|_| call(c, name, "{}")).collect();
        super::api::futures_join(calls).await?;
    }
    let dur = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (c, name) = (c.clone(), name.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while start.elapsed() < dur {
                let t = Instant::now();
                let r = call(&c, &name, "{}").await?;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                ok(&r, "direct invocation")?;
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Load {
        requests: all.len() as u64,
        rate: all.len() as f64 / secs,
        p50: pct(&all, 0.5),
        p99: pct(&all, 0.99),
        errors: 0,
    })
}

fn row(rep: &mut Report, what: &str, l: &Load, note: String) {
    let errors = if l.errors > 0 {
        format!("; {} non-2xx/socket errors", l.errors)
    } else {
        String::new()
    };
    rep.add(
        what,
        l.requests,
        format!("{:.3} ms", l.p50),
        format!("{:.3} ms", l.p99),
        format!("{:.0} req/s{note}{errors}", l.rate),
    );
}

/// The gateway's rows, on a cluster of its own.
pub(crate) fn run(
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
    targets: &mut Vec<String>,
    secs: f64,
) -> Result<()> {
    std::env::set_var("LAMINA_PREWARM_SANDBOXES", "0");
    let cluster = Cluster::start_with(1, &["--memory-mb", "32768"])?;
    let http = cluster.http_address()?;
    let port = http
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .unwrap_or_default();
    rt.block_on(async {
        let c = cluster.client().await?;
        let name = unique("bench-gw");
        let mut s = spec(&name, "provided", "noop.handler");
        // One vCPU's share (1769 MB): a smaller function's CFS quota throttles its sandbox under
        // back-to-back load (stalls of ~10 ms in the p99), which is the function's size, not the
        // gateway.
        s.memory_size_mb = 1769;
        c.create_function(s, super::api::native_noop_zip()?).await?;
        let out = std::process::Command::new(bin("fnctl"))
            .args(["url", "create", &name, "--auth-type", "NONE", "-o", "json"])
            .envs(cluster.fnctl_env())
            .output()?;
        ensure!(
            out.status.success(),
            "fnctl url create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let view: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let id = lamina_e2e::gateway::url_id(&view)?;
        let host = format!("Host: {id}.lambda-url.us-east-1.localhost:{port}");
        let url = format!("http://{http}/");

        // The floor answers exactly what the gateway answers (status 200, its headers but the
        // per-response ones, its body).
        let (status, headers, body) = fetch(&url, &host)?;
        ensure!(
            status == 200,
            "the gateway answered {status} {headers:?} {}",
            String::from_utf8_lossy(&body)
        );
        let kept: Vec<_> = headers
            .into_iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "date" | "content-length" | "connection" | "transfer-encoding" | "keep-alive"
                ) && !k.starts_with("x-amzn-")
            })
            .collect();
        let floor = floor_server(kept, body).await?;
        let floor_url = format!("http://{floor}/");

        let mut best_rate = 0.0f64;
        let mut overhead_p50 = f64::NAN;
        for conns in [1usize, 16] {
            // Warm: the sandboxes this concurrency needs exist before the measured run.
            wrk(&url, std::slice::from_ref(&host), conns, 1.0).await?;
            let bare = wrk(&floor_url, &[], conns, secs).await?;
            let gw = wrk(&url, std::slice::from_ref(&host), conns, secs).await?;
            let inv = direct(&c, &name, conns, secs).await?;
            let label = |what: &str| format!("http gateway: {what}, {conns} conn");
            row(rep, &label("bare hyper server, same bytes (floor)"), &bare, " (wrk)".into());
            row(
                rep,
                &label("function URL, warm native no-op"),
                &gw,
                format!(" (wrk); p50 +{:.3} ms over the floor", gw.p50 - bare.p50),
            );
            row(
                rep,
                &label("direct Invoke (SDK, gRPC), same function"),
                &inv,
                format!("; gateway p50 {:+.3} ms over it", gw.p50 - inv.p50),
            );
            ensure!(gw.errors == 0, "the gateway answered {} errors under load", gw.errors);
            best_rate = best_rate.max(gw.rate);
            if conns == 1 {
                overhead_p50 = gw.p50 - inv.p50;
            }
        }
        targets.push(format!(
            "http gateway overhead over a direct invoke <= 0.3 ms p50 (1 connection): {overhead_p50:+.3} ms — {}",
            if overhead_p50 <= 0.3 { "met" } else { "MISSED" }
        ));
        targets.push(format!(
            "http gateway >= 5000 requests/s (warm no-op): {best_rate:.0}/s — {}",
            if best_rate >= 5000.0 { "met" } else { "MISSED" }
        ));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_latency_output() {
        let out = "Running 3s test @ http://127.0.0.1:1/\n  1 threads and 1 connections\n  Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   102.00us   50.00us   1.00ms   90.00%\n    Req/Sec     9.00k   500.00    10.00k    80.00%\n  Latency Distribution\n     50%   98.00us\n     75%  110.00us\n     90%  130.00us\n     99%    1.30ms\n  27000 requests in 3.00s, 2.00MB read\n  Socket errors: connect 0, read 1, write 0, timeout 2\n  Non-2xx or 3xx responses: 5\nRequests/sec:   9000.50\nTransfer/sec:      1.00MB\n";
        let l = parse_wrk(out).unwrap();
        assert_eq!(l.requests, 27000);
        assert!((l.p50 - 0.098).abs() < 1e-9);
        assert!((l.p99 - 1.3).abs() < 1e-9);
        assert!((l.rate - 9000.5).abs() < 1e-9);
        assert_eq!(l.errors, 8);
        assert!(parse_wrk("garbage").is_err());
    }
}
