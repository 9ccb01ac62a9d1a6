//! Streamed responses (`Lambda-Runtime-Function-Response-Mode: streaming`) and the deadline moved
//! by a slow init, over a real loopback listener with the raw HTTP/1.1 client of `tests`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use tokio::time::timeout;

use super::tests::{inv, outcome, spawn_invoke, start, Conn};
use super::*;

const T: Duration = Duration::from_secs(10);
const STREAM_HEAD: &str = "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\nTrailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n";

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut raw = format!("{:x}\r\n", data.len()).into_bytes();
    raw.extend_from_slice(data);
    raw.extend_from_slice(b"\r\n");
    raw
}

async fn next_event(s: &mut ResponseStream) -> Option<StreamEvent> {
    timeout(T, s.next()).await.expect("stream event in time")
}

/// Starts a streamed response for `id`; returns the stream the invocation resolved with.
async fn begin_stream(c: &mut Conn, api: &RuntimeApi, id: &str) -> ResponseStream {
    let h = spawn_invoke(api, inv(id));
    assert_eq!(c.next().await.status, 200);
    c.send(
        format!("POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nHost: x\r\n{STREAM_HEAD}\r\n")
            .as_bytes(),
    )
    .await;
    match outcome(h).await {
        InvocationOutcome::Streaming(s) => s,
        other => panic!("expected a stream, got {other:?}"),
    }
}

#[tokio::test]
async fn streamed_chunks_arrive_one_by_one_before_the_body_ends() {
    let (api, addr, _t) = start();
    let mut c = Conn::connect(addr).await;
    let mut s = begin_stream(&mut c, &api, "s1").await;
    assert_eq!(s.content_type.as_deref(), Some("text/plain"));
    // Each chunk is read before the next one is even sent.
    for n in 0..3 {
        let data = format!("part-{n};");
        c.send(&chunk(data.as_bytes())).await;
        assert_eq!(
            next_event(&mut s).await,
            Some(StreamEvent::Chunk(Bytes::from(data)))
        );
    }
    c.send(b"0\r\n\r\n").await;
    assert_eq!(next_event(&mut s).await, None);
    let r = timeout(T, c.read_reply()).await.expect("reply");
    assert_eq!(r.status, 202);
    // Answered: a second answer is out of order, the next invocation works.
    let r = c.post("/invocation/s1/response", &[], b"late").await;
    assert_eq!(r.status, 403);
    let h = spawn_invoke(&api, inv("s2"));
    c.next().await;
    assert_eq!(
        c.post("/invocation/s2/response", &[], b"2").await.status,
        202
    );
    assert_eq!(
        outcome(h).await,
        InvocationOutcome::Response(Bytes::from_static(b"2"))
    );
}

#[tokio::test]
async fn error_trailers_end_the_stream_with_an_error() {
    let (api, addr, _t) = start();
    let mut c = Conn::connect(addr).await;
    let mut s = begin_stream(&mut c, &api, "t1").await;
    c.send(&chunk(b"partial")).await;
    assert_eq!(
        next_event(&mut s).await,
        Some(StreamEvent::Chunk(Bytes::from_static(b"partial")))
    );
    let body = br#"{"errorType":"Stream.Broken","errorMessage":"gave up"}"#;
    let b64 = base64::engine::general_purpose::STANDARD.encode(body);
    c.send(
        format!(
            "0\r\nLambda-Runtime-Function-Error-Type: Stream.Broken\r\nLambda-Runtime-Function-Error-Body: {b64}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(
        next_event(&mut s).await,
        Some(StreamEvent::Error {
            error_type: "Stream.Broken".into(),
            body: Bytes::from_static(body),
        })
    );
    assert_eq!(next_event(&mut s).await, None);
    assert_eq!(timeout(T, c.read_reply()).await.unwrap().status, 202);
}

#[tokio::test]
async fn streamed_answers_to_unknown_or_unfetched_ids_are_refused() {
    let (api, addr, _t) = start();
    let mut c = Conn::connect(addr).await;
    let head = |id: &str| {
        let mut raw = format!(
            "POST /2018-06-01/runtime/invocation/{id}/response HTTP/1.1\r\nHost: x\r\n{STREAM_HEAD}\r\n"
        )
        .into_bytes();
        raw.extend_from_slice(&chunk(b"x"));
        raw.extend_from_slice(b"0\r\n\r\n");
        raw
    };
    let r = c.request(&head("nobody")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errorType"], "InvalidRequestID");
    // Queued but not fetched yet.
    let h = spawn_invoke(&api, inv("u1"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let r = c.request(&head("u1")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["errorType"], "InvalidStateTransition");
    c.next().await;
    assert_eq!(
        c.post("/invocation/u1/response", &[], b"1").await.status,
        202
    );
    assert!(matches!(outcome(h).await, InvocationOutcome::Response(_)));
}

#[tokio::test]
async fn a_stream_over_20_mb_gets_413_and_ends_too_large() {
    let (api, addr, _t) = start();
    let mut c = Conn::connect(addr).await;
    let mut s = begin_stream(&mut c, &api, "big").await;
    let reader = tokio::spawn(async move {
        let mut got = 0usize;
        loop {
            match next_event(&mut s).await {
                Some(StreamEvent::Chunk(b)) => got += b.len(),
                Some(StreamEvent::TooLarge { size }) => return (got, size),
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    let piece = vec![b'a'; 1 << 20];
    for _ in 0..21 {
        c.send(&chunk(&piece)).await;
    }
    c.send(b"0\r\n\r\n").await;
    let r = timeout(T, c.read_reply()).await.expect("reply");
    assert_eq!(r.status, 413);
    let (got, size) = timeout(T, reader).await.unwrap().unwrap();
    assert!(got <= MAX_STREAM_BYTES, "{got}");
    assert_eq!(size, 21 << 20);
}

#[tokio::test]
async fn the_deadline_counts_from_the_end_of_init() {
    let (api, addr, _t) = start();
    let mut inv = inv("slow-init");
    // Dispatched 1.5 s before the runtime's first `GET next`: its init took that long.
    inv.dispatched_at = Instant::now()
        .checked_sub(Duration::from_millis(1500))
        .expect("uptime over 1.5 s");
    let deadline = inv.deadline_ms;
    let h = spawn_invoke(&api, inv);
    let mut c = Conn::connect(addr).await;
    let r = c.next().await;
    let got: u64 = r
        .header("lambda-runtime-deadline-ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!(got >= deadline + 1500, "{got} vs {deadline}");
    assert_eq!(
        c.post("/invocation/slow-init/response", &[], b"1")
            .await
            .status,
        202
    );
    outcome(h).await;
}
