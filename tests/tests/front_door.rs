//! The controller against clients that have not proven who they are, and what it leaves on disk:
//! - unsigned and wrongly signed uploads are refused before their body is read (REST: the 403
//!   arrives while the client is still sending; a dozen concurrent 60 MB uploads on REST and on
//!   gRPC leave the controller's peak RSS far below what buffering them would take), and a signed
//!   upload at the limit still works;
//! - a captured request is not a ticket: an exact replay of a mutating call is refused on REST
//!   and gRPC, so is a REST request with an `x-amz-*` header added that it did not sign, while
//!   boto3 (which re-signs its retries) and repeated reads are fine;
//! - the data directory and RocksDB's files are private to the controller's user (0700/0600),
//!   also after an upgrade from a 0755 directory with 0644 files, and the worker's state
//!   directory is 0700 while functions still run.
use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context as _, Result};
use http_body_util::{BodyExt, Full};
use lamina_e2e::*;
use lamina_proto::auth::{sign_with_nonce, DATE_HEADER};
use tonic::body::BoxBody;
use tonic::transport::Channel;
use tonic::Code;

const UPLOAD_BYTES: usize = 60 << 20;
const UPLOADS: usize = 12;
/// Generous: the controller idles well under 100 MB; buffering the uploads would take > 700 MB.
const PEAK_RSS_BOUND_KB: u64 = 400 * 1024;

/// `YYYYMMDDTHHMMSSZ` of `secs` since the epoch (UTC).
fn amz_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Headers of a REST upload that cannot verify, and why.
fn forgeries(admin_key: &str) -> Vec<(&'static str, String)> {
    let now = amz_date(now_s());
    let old = amz_date(now_s() - 600);
    let auth = |key: &str, date: &str, signed: &str| {
        format!(
            "Authorization: AWS4-HMAC-SHA256 Credential={key}/{}/us-east-1/lambda/aws4_request, \
             SignedHeaders={signed}, Signature={}\r\nX-Amz-Date: {date}\r\n",
            &date[..8],
            "0".repeat(64)
        )
    };
    vec![
        ("unsigned", String::new()),
        ("unknown key", auth("LAMNOSUCHKEY", &now, "host;x-amz-date")),
        ("expired date", auth(admin_key, &old, "host;x-amz-date")),
        (
            "unsigned x-amz header",
            auth(admin_key, &now, "host;x-amz-date") + "X-Amz-Log-Type: Tail\r\n",
        ),
    ]
}

/// Sends the head of a `len`-byte upload with `extra` headers and `first` body bytes; returns the
/// status line the server answered with (the rest of the body is never sent).
fn upload_head(rest: &str, extra: &str, len: usize, first: usize) -> Result<String> {
    let mut s = TcpStream::connect(rest)?;
    // Only a guard against a server that never answers (the failure this test looks for).
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!(
        "POST /2015-03-31/functions HTTP/1.1\r\nHost: {rest}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n{extra}\r\n"
    )
    .into_bytes();
    head.extend_from_slice(&vec![b'a'; first]);
    // A server that answers and closes at once may make this write fail: its answer is what counts.
    if let Err(e) = s.write_all(&head) {
        eprintln!("writing the upload head: {e}");
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        let n = s
            .read(&mut buf)
            .context("no answer while the body was still being sent")?;
        ensure!(n > 0, "connection closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    Ok(text.lines().next().unwrap_or_default().to_string())
}

/// Sends a whole `len`-byte upload (as much of it as the server takes).
fn upload_all(rest: &str, extra: &str, len: usize) -> Result<()> {
    let mut s = TcpStream::connect(rest)?;
    s.set_write_timeout(Some(Duration::from_secs(120)))?;
    write!(
        s,
        "POST /2015-03-31/functions HTTP/1.1\r\nHost: {rest}\r\nContent-Length: {len}\r\n{extra}\r\n"
    )?;
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..len / chunk.len() {
        if s.write_all(&chunk).is_err() {
            // Refused and closed: what should happen.
            break;
        }
    }
    Ok(())
}

/// `VmHWM` (peak resident set) of `pid` in kB.
fn peak_rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")
}

/// `n` bytes that do not compress (xorshift).
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn unauthenticated_uploads_are_refused_before_their_body_is_read() {
    run(async {
        let cluster = Cluster::start(1)?;
        let rest = cluster
            .rest_endpoint
            .trim_start_matches("http://")
            .to_string();
        let admin = cluster.credentials.access_key_id.clone();
        // Each refused while the client is still sending (1 MB of 60 MB sent).
        for (why, extra) in forgeries(&admin) {
            let status = upload_head(&rest, &extra, UPLOAD_BYTES, 1 << 20)
                .with_context(|| format!("{why}:\n{}", cluster.logs()))?;
            ensure!(status.starts_with("HTTP/1.1 403"), "{why}: {status}");
        }
        // Too large for the operation, signed or not: refused from its Content-Length.
        let status = upload_head(&rest, "", 100 << 20, 0)?;
        ensure!(status.starts_with("HTTP/1.1 4"), "100 MB: {status}");

        // A dozen concurrent 60 MB uploads of each kind on REST, and unsigned and unknown-key
        // ones on gRPC: the controller's peak RSS stays far below their sum.
        let mut threads = Vec::new();
        for i in 0..UPLOADS {
            let (rest, extra) = (rest.clone(), forgeries(&admin)[i % 4].1.clone());
            threads.push(std::thread::spawn(move || {
                upload_all(&rest, &extra, UPLOAD_BYTES)
            }));
        }
        let stranger = Credentials {
            access_key_id: "LAMNOSUCHKEY".into(),
            secret_access_key: "x".repeat(40),
        };
        let mut calls = Vec::new();
        for i in 0..UPLOADS {
            let creds = (i % 2 == 1).then(|| stranger.clone());
            let c = cluster.client_with(creds).await?;
            calls.push(tokio::spawn(async move {
                let zip = vec![7u8; UPLOAD_BYTES];
                c.create_function(spec(&format!("big{i}"), "python3.11", "app.handler"), zip)
                    .await
            }));
        }
        for call in calls {
            match call.await? {
                Err(lamina_client::Error::Api(s)) if s.code() == Code::Unauthenticated => {}
                other => anyhow::bail!("an unauthenticated grpc upload: {other:?}"),
            }
        }
        for t in threads {
            t.join().expect("upload thread")?;
        }
        // The worker's gRPC server the same way: a dozen unsigned 60 MB invocations.
        let worker = format!("http://{}", cluster.workers[0].address);
        let mut calls = Vec::new();
        for _ in 0..UPLOADS {
            let channel = Channel::from_shared(worker.clone())?.connect().await?;
            let mut w = v1::worker_client::WorkerClient::new(lamina_proto::auth::Signed::new(
                channel, None,
            ))
            .max_encoding_message_size(UPLOAD_BYTES + 1024);
            calls.push(tokio::spawn(async move {
                w.invoke(v1::WorkerInvokeRequest {
                    payload: vec![7u8; UPLOAD_BYTES],
                    ..Default::default()
                })
                .await
            }));
        }
        for call in calls {
            match call.await? {
                Err(s) if s.code() == Code::Unauthenticated => {}
                other => anyhow::bail!("an unsigned worker invoke: {other:?}"),
            }
        }
        for (who, pid) in [
            ("controller", cluster.controller.child.id()),
            ("worker", cluster.workers[0].child.id()),
        ] {
            let peak = peak_rss_kb(pid)?;
            eprintln!("{who} peak RSS after the unauthenticated uploads: {peak} kB");
            ensure!(
                peak < PEAK_RSS_BOUND_KB,
                "the {who}'s peak RSS reached {peak} kB (bound {PEAK_RSS_BOUND_KB} kB)"
            );
        }

        // A signed upload at the limit (a 50 MB zip less a little) still works.
        let c = cluster.client().await?;
        let big = noise(49 << 20);
        let zip = {
            let mut buf = std::io::Cursor::new(Vec::new());
            let mut zw = zip::ZipWriter::new(&mut buf);
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .unix_permissions(0o644);
            zw.start_file("app.py", opts)?;
            zw.write_all(b"def handler(e, c):\n    return e\n")?;
            zw.start_file("blob.bin", opts)?;
            zw.write_all(&big)?;
            zw.finish()?;
            buf.into_inner()
        };
        ensure!(
            zip.len() > 49 << 20 && zip.len() < 50 << 20,
            "{}",
            zip.len()
        );
        c.create_function(spec("atlimit", "python3.11", "app.handler"), zip)
            .await
            .context("a signed 49 MB upload")?;
        // And on REST, by boto3 (65 MB of JSON).
        let out = lambda_rest_py(&cluster, &["big-upload", "atlimit-rest"])?;
        ensure!(out.contains("big upload passed"), "{out}");
        Ok(())
    });
}

/// A channel that signs every request with one date and one nonce: the same call twice is an
/// exact replay of the first.
#[derive(Clone)]
struct FixedNonce {
    inner: Channel,
    creds: Credentials,
    date_ms: u64,
}

impl tower_service::Service<http::Request<BoxBody>> for FixedNonce {
    type Response = http::Response<BoxBody>;
    type Error = tonic::transport::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (creds, date_ms) = (self.creds.clone(), self.date_ms);
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let bytes = body.collect().await.expect("request body").to_bytes();
            let (auth, date) = sign_with_nonce(
                &creds,
                date_ms,
                "00112233445566778899aabbccddeeff",
                parts.uri.path(),
                &bytes,
            );
            parts.headers.insert("authorization", auth.parse().unwrap());
            parts.headers.insert(DATE_HEADER, date.parse().unwrap());
            let body = tonic::body::boxed(Full::new(bytes));
            tower_service::Service::call(&mut inner, http::Request::from_parts(parts, body)).await
        })
    }
}

#[test]
fn replays_and_unsigned_amz_headers_are_refused() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("replay");
        create_python(&c, &name, "def handler(e, c):\n    return e\n").await?;

        // REST: an exact replay, and unsigned X-Amz-Log-Type / Invocation-Type / Client-Context
        // added to a signed invoke, are refused; boto3 and repeated reads are fine.
        let out = lambda_rest_py(&cluster, &["replays", &name])?;
        ensure!(out.contains("replays passed"), "{out}");

        // gRPC: the same signed mutating call twice is refused; another call with the same
        // nonce (another body) passes, and reads may repeat.
        let channel = Channel::from_shared(cluster.endpoint.clone())?
            .connect()
            .await?;
        let fixed = FixedNonce {
            inner: channel,
            creds: cluster.credentials.clone(),
            date_ms: lamina_proto::auth::now_ms(),
        };
        let mut net = v1::network_client::NetworkClient::new(fixed);
        let create = |cidr: &str| v1::CreateVpcRequest {
            cidr: cidr.to_string(),
            description: String::new(),
        };
        net.create_vpc(create("10.77.0.0/16")).await?;
        let replay = net.create_vpc(create("10.77.0.0/16")).await.unwrap_err();
        ensure!(
            replay.code() == Code::Unauthenticated && replay.message().contains("replay"),
            "{replay:?}"
        );
        net.create_vpc(create("10.78.0.0/16")).await?;
        for _ in 0..2 {
            net.list_vpcs(v1::ListNetworkResourcesRequest::default())
                .await?;
        }
        // Honest clients sign every call anew: the same call twice is two calls.
        c.create_vpc("10.79.0.0/16", "").await?;
        c.create_vpc("10.80.0.0/16", "").await?;
        let vpcs = c.list_vpcs().await?;
        ensure!(vpcs.len() == 4, "{vpcs:?}");
        Ok(())
    });
}

/// Every file and directory under `dir` (itself included) has no group or other bits.
fn assert_private(dir: &Path) -> Result<usize> {
    let mut todo = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p)?;
        let mode = meta.permissions().mode() & 0o777;
        ensure!(mode & 0o077 == 0, "{} is mode {mode:o}", p.display());
        seen += 1;
        if meta.is_dir() {
            for e in std::fs::read_dir(&p)? {
                todo.push(e?.path());
            }
        }
    }
    Ok(seen)
}

#[test]
fn the_data_directory_is_private_also_after_an_upgrade() {
    run(async {
        let mut cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        create_python(
            &c,
            "private",
            "def handler(e, c):\n    return {'ok': True}\n",
        )
        .await?;
        let r = invoke(&c, "private", "{}").await?;
        ensure!(
            r.function_error.is_empty() && json(&r)["ok"] == true,
            "a function still runs under the worker's umask: {}",
            String::from_utf8_lossy(&r.payload)
        );
        let data = cluster.dir.path().join("controller");
        ensure!(
            data.join("CURRENT").exists(),
            "RocksDB files in {}",
            data.display()
        );
        let n = assert_private(&data)?;
        ensure!(n > 5, "only {n} entries under {}", data.display());
        let state = cluster.dir.path().join(&cluster.worker_ids[0]);
        let mode = std::fs::metadata(&state)?.permissions().mode() & 0o777;
        ensure!(
            mode == 0o700,
            "worker state dir {}: {mode:o}",
            state.display()
        );
        drop(c);

        // An install from before: a 0755 directory of 0644 files. Fixed at start.
        cluster.controller.stop();
        let mut todo = vec![data.clone()];
        while let Some(p) = todo.pop() {
            let meta = std::fs::symlink_metadata(&p)?;
            let mode = if meta.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
            if meta.is_dir() {
                for e in std::fs::read_dir(&p)? {
                    todo.push(e?.path());
                }
            }
        }
        cluster.restart_controller(false, &[], 1)?;
        assert_private(&data)?;
        let c = cluster.client().await?;
        ensure!(c.get_function("private").await?.name == "private");
        Ok(())
    });
}
