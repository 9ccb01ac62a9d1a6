//! What a sandbox can make the worker spend through its Runtime API: connections, unread bodies,
//! the body budget, header limits, stalled requests (over a real loopback listener, raw HTTP/1.1).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::tests::{self, inv, outcome, spawn_invoke, Conn};
use super::*;

const T: Duration = Duration::from_secs(10);

fn start_with(limits: Limits) -> (RuntimeApi, SocketAddr, CancellationToken) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    let token = CancellationToken::new();
    let api = RuntimeApi::serve_with(listener, token.clone(), limits).expect("serve");
    (api, addr, token)
}

fn limits() -> Limits {
    Limits::default()
}

/// Reads what the server sends until it closes (within `T`).
async fn read_to_close(c: &mut Conn) -> String {
    let mut out = Vec::new();
    timeout(T, c.io.read_to_end(&mut out))
        .await
        .expect("closed in time")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_with_429() {
    let (api, addr, _t) = start_with(Limits {
        max_connections: 3,
        ..limits()
    });
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Conn::connect(addr).await);
    }
    // One request on each: all three are served (accepted in order, before the fourth).
    for c in &mut held {
        let r = c.post("/invocation/none/response", &[], b"1").await;
        assert_eq!(r.status, 400);
    }
    let mut over = Conn::connect(addr).await;
    let text = read_to_close(&mut over).await;
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    assert!(text.contains("at most 3 connections per sandbox"), "{text}");

    // Closing one frees its slot for a new connection.
    drop(held.pop());
    let h = spawn_invoke(&api, inv("after"));
    let mut served = None;
    for _ in 0..200 {
        let mut c = Conn::connect(addr).await;
        c.send(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let r = timeout(T, c.read_reply()).await.expect("a reply");
        if r.status == 200 {
            served = Some(c);
            break;
        }
        assert_eq!(r.status, 429);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut c = served.expect("a slot freed by the closed connection");
    c.post("/invocation/after/response", &[], b"2").await;
    assert_eq!(
        outcome(h).await,
        InvocationOutcome::Response(Bytes::from_static(b"2"))
    );
}

#[tokio::test]
async fn a_body_is_not_read_before_its_request_id_is_checked() {
    let (api, addr, _t) = start_with(limits());
    // Headers announcing a gigabyte, no body sent: the answer comes at once.
    for (path, status, error_type) in [
        ("/invocation/nope/response", 400, "InvalidRequestID"),
        ("/invocation/nope/error", 400, "InvalidRequestID"),
        ("/invocation/queued/response", 403, "InvalidStateTransition"),
    ] {
        if path.contains("queued") {
            let _h = spawn_invoke(&api, inv("queued"));
            // Queued, not fetched: an answer now is an invalid transition.
            while !api.event_pending() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let mut c = Conn::connect(addr).await;
        c.send(
            format!(
                "POST /2018-06-01/runtime{path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        let r = timeout(T, c.read_reply())
            .await
            .expect("answered without the body");
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.json()["errorType"], error_type, "{path}");
        // And the connection is closed rather than the body read.
        assert_eq!(read_to_close(&mut c).await, "");
    }
}

/// Sends `head` + `part` on two connections; the first reply must come from one of them (the one
/// handled second, refused without its body being read): returns (refused, reply, other).
async fn race(addr: SocketAddr, head: &str, part: &[u8]) -> (Conn, tests::Reply, Conn) {
    let mut a = Conn::connect(addr).await;
    let mut b = Conn::connect(addr).await;
    for c in [&mut a, &mut b] {
        let mut raw = head.as_bytes().to_vec();
        raw.extend_from_slice(part);
        c.send(&raw).await;
    }
    let first = timeout(T, async {
        tokio::select! {
            r = a.read_reply() => (true, r),
            r = b.read_reply() => (false, r),
        }
    })
    .await
    .expect("one of them answered without its body");
    match first {
        (true, r) => (a, r, b),
        (false, r) => (b, r, a),
    }
}

#[tokio::test]
async fn a_second_answer_while_one_is_read_is_refused_without_reading() {
    let (api, addr, _t) = start_with(limits());
    let h = spawn_invoke(&api, inv("one"));
    let mut runtime = Conn::connect(addr).await;
    runtime.next().await;
    // The same answer on two connections, each with part of its body (more than a refused
    // request's body that is read away): the second handled is refused at once (its body unread),
    // the first waits for the rest of its body.
    let len = 2 * http::REFUSED_DRAIN_CAP;
    let head = format!(
        "POST /2018-06-01/runtime/invocation/one/response HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n"
    );
    let (_refused, r, mut claimer) = race(addr, &head, b"01234").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["errorType"], "InvalidStateTransition");
    claimer.send(&vec![b'5'; len - 5]).await;
    let r = timeout(T, claimer.read_reply()).await.expect("reply");
    assert_eq!(r.status, 202);
    match outcome(h).await {
        InvocationOutcome::Response(b) => {
            assert_eq!(b.len(), len);
            assert!(b.starts_with(b"012345"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn bodies_in_flight_are_bounded_by_the_sandbox_budget() {
    let (api, addr, _t) = start_with(Limits {
        buffer_budget: 1000,
        ..limits()
    });
    // Two bodies of 600 announced, each partly sent: only one fits in the budget; the other is
    // refused at once, naming it.
    let head =
        "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: x\r\nContent-Length: 600\r\n\r\n";
    let (_refused, r, mut reading) = race(addr, head, &[b'x'; 100]).await;
    assert_eq!(r.status, 413);
    let msg = r.json()["errorMessage"].as_str().unwrap().to_owned();
    assert!(msg.contains("at most 1000 bytes"), "{msg}");
    reading.send(&[b'x'; 500]).await;
    assert_eq!(timeout(T, reading.read_reply()).await.unwrap().status, 202);
    // Given back once read.
    let mut c = Conn::connect(addr).await;
    let r = c.post("/init/error", &[], &[b'y'; 900]).await;
    assert_eq!(r.status, 202);

    // A chunked body takes budget as it arrives.
    let mut d = Conn::connect(addr).await;
    let mut raw = b"POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        raw.extend_from_slice(b"190\r\n");
        raw.extend_from_slice(&[b'z'; 400]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let r = d.request(&raw).await;
    assert_eq!(r.status, 413);
    assert!(r.json()["errorMessage"]
        .as_str()
        .unwrap()
        .contains("at most 1000 bytes"));
    // Every reservation was given back.
    assert_eq!(api.shared.buffered(), 0);
}

#[tokio::test]
async fn header_count_and_size_are_limited() {
    let (_api, addr, _t) = start_with(limits());
    let status_of = |raw: String| async move {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 64];
        let n = timeout(T, s.read(&mut buf)).await.unwrap().unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let many: String = (0..MAX_HEADERS).map(|i| format!("X-H{i}: v\r\n")).collect();
    let reply = status_of(format!(
        "GET /2018-06-01/runtime/nope HTTP/1.1\r\nHost: x\r\n{many}\r\n"
    ))
    .await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    let big = "v".repeat(MAX_HEADER_BYTES);
    let reply = status_of(format!(
        "GET /2018-06-01/runtime/nope HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"
    ))
    .await;
    assert!(reply.starts_with("HTTP/1.1 431"), "{reply}");
    // Within the limits: routed (404 for this path).
    let few: String = (0..MAX_HEADERS - 2)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect();
    let reply = status_of(format!(
        "GET /2018-06-01/runtime/nope HTTP/1.1\r\nHost: x\r\n{few}\r\n"
    ))
    .await;
    assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
}

#[tokio::test]
async fn stalled_requests_are_closed_idle_ones_are_not() {
    let read_timeout = Duration::from_millis(300);
    let (api, addr, _t) = start_with(Limits {
        read_timeout,
        ..limits()
    });
    // An idle connection and a runtime waiting in `next`: never timed.
    let mut idle = Conn::connect(addr).await;
    let mut runtime = Conn::connect(addr).await;
    runtime
        .send(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;

    // Headers that never complete (slowloris): closed.
    let mut slow = Conn::connect(addr).await;
    slow.send(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHo")
        .await;
    read_to_close(&mut slow).await;

    // Well past the timeout, the waiting `next` gets its event.
    tokio::time::sleep(read_timeout * 3).await;
    let h = spawn_invoke(&api, inv("late"));
    let r = timeout(T, runtime.read_reply())
        .await
        .expect("next answered");
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("late"));

    // A body that stops half way: 408 and closed; the invocation can still be answered.
    let mut stalled = Conn::connect(addr).await;
    stalled
        .send(b"POST /2018-06-01/runtime/invocation/late/response HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123")
        .await;
    let r = timeout(T, stalled.read_reply()).await.expect("408 in time");
    assert_eq!(r.status, 408);
    assert_eq!(r.json()["errorType"], "RequestTimeout");
    // The idle connection is still served.
    let r = idle.post("/invocation/late/response", &[], b"ok").await;
    assert_eq!(r.status, 202);
    assert_eq!(
        outcome(h).await,
        InvocationOutcome::Response(Bytes::from_static(b"ok"))
    );
}
