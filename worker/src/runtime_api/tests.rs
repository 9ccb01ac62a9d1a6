//! Runtime API state machine and wire tests over a real loopback listener, with a raw HTTP/1.1
//! client on a `TcpStream` (so framing, header spelling and keep-alive are what is tested).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::*;

const T: Duration = Duration::from_secs(10);

pub(crate) fn start() -> (RuntimeApi, SocketAddr, CancellationToken) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.set_nonblocking(true).expect("set_nonblocking");
    let addr = listener.local_addr().expect("local_addr");
    let token = CancellationToken::new();
    let api = RuntimeApi::serve(listener, token.clone()).expect("serve");
    (api, addr, token)
}

pub(super) fn inv(id: &str) -> Invocation {
    Invocation {
        request_id: id.to_owned(),
        payload: Bytes::from(format!(r#"{{"id":"{id}"}}"#)),
        deadline_ms: 1_700_000_000_123,
        // Later than any init in these tests, like a warm sandbox's event: the deadline stays as is.
        dispatched_at: std::time::Instant::now() + Duration::from_secs(3600),
        invoked_function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".to_owned(),
        trace_id: "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
            .to_owned(),
        client_context: None,
    }
}

#[derive(Debug)]
pub(super) struct Reply {
    pub(super) status: u16,
    /// Header names as sent on the wire (not lower-cased).
    headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Reply {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub(super) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

/// A minimal HTTP/1.1 client on one keep-alive connection.
pub(super) struct Conn {
    pub(super) io: BufReader<TcpStream>,
}

impl Conn {
    pub(super) async fn connect(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).await.expect("connect");
        Conn {
            io: BufReader::new(s),
        }
    }

    pub(super) async fn send(&mut self, raw: &[u8]) {
        self.io.get_mut().write_all(raw).await.expect("write");
    }

    pub(super) async fn read_reply(&mut self) -> Reply {
        let mut line = String::new();
        self.io.read_line(&mut line).await.expect("status line");
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.io.read_line(&mut line).await.expect("header line");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').expect("header colon");
            headers.push((k.to_owned(), v.trim().to_owned()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().expect("content-length"))
            .expect("the runtime api always sends content-length");
        let mut body = vec![0; len];
        self.io.read_exact(&mut body).await.expect("body");
        Reply {
            status,
            headers,
            body,
        }
    }

    pub(super) async fn request(&mut self, raw: &[u8]) -> Reply {
        self.send(raw).await;
        timeout(T, self.read_reply()).await.expect("reply in time")
    }

    pub(super) async fn next(&mut self) -> Reply {
        self.request(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
    }

    pub(super) async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        let mut raw = format!(
            "POST /2018-06-01/runtime{path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(body);
        self.request(&raw).await
    }

    async fn post_chunked(&mut self, path: &str, chunks: &[&[u8]]) -> Reply {
        let mut raw = format!(
            "POST /2018-06-01/runtime{path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .into_bytes();
        for c in chunks {
            raw.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            raw.extend_from_slice(c);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        self.request(&raw).await
    }
}

pub(super) fn spawn_invoke(
    api: &RuntimeApi,
    inv: Invocation,
) -> tokio::task::JoinHandle<InvocationOutcome> {
    let api = api.clone();
    tokio::spawn(async move { api.invoke(inv).await })
}

pub(super) async fn outcome(h: tokio::task::JoinHandle<InvocationOutcome>) -> InvocationOutcome {
    timeout(T, h).await.expect("outcome in time").expect("join")
}

#[tokio::test]
async fn next_then_response_with_lambda_headers() {
    let (api, addr, _t) = start();
    assert!(api.init_done_at().is_none());
    let h = spawn_invoke(&api, inv("req-1"));
    let mut c = Conn::connect(addr).await;
    let r = c.next().await;
    assert!(api.init_done_at().is_some());
    assert_eq!(r.status, 200);
    assert_eq!(r.body, br#"{"id":"req-1"}"#);
    // Header names as AWS spells them, on the wire.
    let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
    for name in [
        "Lambda-Runtime-Aws-Request-Id",
        "Lambda-Runtime-Deadline-Ms",
        "Lambda-Runtime-Invoked-Function-Arn",
        "Lambda-Runtime-Trace-Id",
        "Content-Type",
    ] {
        assert!(names.contains(&name), "{name} missing in {names:?}");
    }
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("req-1"));
    assert_eq!(
        r.header("lambda-runtime-deadline-ms"),
        Some("1700000000123")
    );
    assert_eq!(
        r.header("lambda-runtime-invoked-function-arn"),
        Some("arn:aws:lambda:us-east-1:000000000000:function:f")
    );
    assert_eq!(
        r.header("lambda-runtime-trace-id"),
        Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
    );
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("lambda-runtime-client-context"), None);

    // No Content-Type, like the lambda_runtime crate.
    let r = c.post("/invocation/req-1/response", &[], b"\"hi\"").await;
    assert_eq!(r.status, 202);
    assert_eq!(r.json(), serde_json::json!({"status": "OK"}));
    assert_eq!(
        outcome(h).await,
        InvocationOutcome::Response(Bytes::from_static(b"\"hi\""))
    );
}

#[tokio::test]
async fn client_context_header_only_when_given() {
    let (api, addr, _t) = start();
    let mut i = inv("cc");
    i.client_context = Some("{\"custom\":{\"k\":\"v\"}}".to_owned());
    let h = spawn_invoke(&api, i);
    let mut c = Conn::connect(addr).await;
    let r = c.next().await;
    assert_eq!(
        r.header("lambda-runtime-client-context"),
        Some("{\"custom\":{\"k\":\"v\"}}")
    );
    c.post("/invocation/cc/response", &[], b"null").await;
    outcome(h).await;
}

#[tokio::test]
async fn long_poll_waits_for_an_invocation() {
    let (api, addr, _t) = start();
    let mut c = Conn::connect(addr).await;
    c.send(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    // Nothing queued: no answer yet.
    assert!(timeout(Duration::from_millis(300), c.read_reply())
        .await
        .is_err());
    assert!(api.init_done_at().is_some());
    let h = spawn_invoke(&api, inv("late"));
    let r = timeout(T, c.read_reply()).await.expect("next answered");
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("late"));
    let r = c.post("/invocation/late/response", &[], b"1").await;
    assert_eq!(r.status, 202);
    assert_eq!(
        outcome(h).await,
        InvocationOutcome::Response(Bytes::from_static(b"1"))
    );
}

#[tokio::test]
async fn two_invocations_in_a_row_on_one_connection() {
    let (api, addr, _t) = start();
    let mut c = Conn::connect(addr).await;
    for n in 0..2 {
        let id = format!("seq-{n}");
        let h = spawn_invoke(&api, inv(&id));
        let r = c.next().await;
        assert_eq!(r.header("lambda-runtime-aws-request-id"), Some(id.as_str()));
        let r = c
            .post(&format!("/invocation/{id}/response"), &[], id.as_bytes())
            .await;
        assert_eq!(r.status, 202);
        assert_eq!(
            outcome(h).await,
            InvocationOutcome::Response(Bytes::from(id.clone()))
        );
    }
}

#[tokio::test]
async fn error_type_from_header_then_body_then_unhandled() {
    let (api, addr, _t) = start();
    let mut c = Conn::connect(addr).await;
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [u8], &'a str);
    let cases: [Case<'_>; 3] = [
        (
            &[("Lambda-Runtime-Function-Error-Type", "Custom.Header")],
            br#"{"errorType":"FromBody"}"#,
            "Custom.Header",
        ),
        (
            &[],
            br#"{"errorMessage":"x","errorType":"ValueError","stackTrace":[]}"#,
            "ValueError",
        ),
        (&[], b"not json", "Unhandled"),
    ];
    for (n, (headers, body, want)) in cases.into_iter().enumerate() {
        let id = format!("e{n}");
        let h = spawn_invoke(&api, inv(&id));
        c.next().await;
        let r = c
            .post(&format!("/invocation/{id}/error"), headers, body)
            .await;
        assert_eq!(r.status, 202);
        assert_eq!(r.json(), serde_json::json!({"status": "OK"}));
        assert_eq!(
            outcome(h).await,
            InvocationOutcome::Error {
                error_type: want.to_owned(),
                body: Bytes::copy_from_slice(body)
            }
        );
    }
}

#[tokio::test]
async fn unknown_id_early_answer_and_second_answer_are_refused() {
    let (api, addr, _t) = start();
    let mut c = Conn::connect(addr).await;

    let r = c.post("/invocation/nope/response", &[], b"1").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errorType"], "InvalidRequestID");

    let h = spawn_invoke(&api, inv("a"));
    // Wait until it is queued: an answer before GET next is an invalid state transition.
    let mut refused = false;
    for _ in 0..100 {
        let r = c.post("/invocation/a/response", &[], b"1").await;
        if r.status == 403 {
            assert_eq!(r.json()["errorType"], "InvalidStateTransition");
            refused = true;
            break;
        }
        assert_eq!(r.status, 400);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "an answer before next must get 403");

    c.next().await;
    let r = c.post("/invocation/a/error", &[], b"{}").await;
    assert_eq!(r.status, 202);
    let r = c.post("/invocation/a/response", &[], b"1").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["errorType"], "InvalidStateTransition");
    assert!(matches!(outcome(h).await, InvocationOutcome::Error { .. }));
}

#[tokio::test]
async fn oversized_response_gets_413_and_resolves_too_large() {
    let (api, addr, _t) = start();
    let mut c = Conn::connect(addr).await;

    // Exactly the limit is accepted.
    let h = spawn_invoke(&api, inv("max"));
    c.next().await;
    let body = vec![b'a'; MAX_RESPONSE_BYTES];
    let r = c.post("/invocation/max/response", &[], &body).await;
    assert_eq!(r.status, 202);
    match outcome(h).await {
        InvocationOutcome::Response(b) => assert_eq!(b.len(), MAX_RESPONSE_BYTES),
        other => panic!("unexpected {other:?}"),
    }

    // One byte more, with content-length.
    let h = spawn_invoke(&api, inv("big"));
    c.next().await;
    let body = vec![b'a'; MAX_RESPONSE_BYTES + 1];
    let r = c.post("/invocation/big/response", &[], &body).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["errorType"], "RequestEntityTooLarge");
    assert_eq!(
        outcome(h).await,
        InvocationOutcome::ResponseTooLarge {
            size: MAX_RESPONSE_BYTES + 1
        }
    );
    // The id is answered now.
    let r = c.post("/invocation/big/response", &[], b"1").await;
    assert_eq!(r.status, 403);

    // Chunked, over the limit: the connection stays usable for the next invocation.
    let h = spawn_invoke(&api, inv("chunked"));
    c.next().await;
    let chunk = vec![b'b'; 1 << 20];
    let chunks: Vec<&[u8]> = (0..7).map(|_| chunk.as_slice()).collect();
    let r = c
        .post_chunked("/invocation/chunked/response", &chunks)
        .await;
    assert_eq!(r.status, 413);
    assert_eq!(
        outcome(h).await,
        InvocationOutcome::ResponseTooLarge { size: 7 << 20 }
    );
    let h = spawn_invoke(&api, inv("after"));
    let r = c.next().await;
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("after"));
    c.post("/invocation/after/response", &[], b"2").await;
    outcome(h).await;
}

#[tokio::test]
async fn chunked_response_without_content_type() {
    let (api, addr, _t) = start();
    let mut c = Conn::connect(addr).await;
    let h = spawn_invoke(&api, inv("ch"));
    c.next().await;
    let r = c
        .post_chunked("/invocation/ch/response", &[b"{\"a\":", b"1", b"}"])
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        outcome(h).await,
        InvocationOutcome::Response(Bytes::from_static(b"{\"a\":1}"))
    );
}

#[tokio::test]
async fn abandoned_invocation_gets_400_and_frees_the_sandbox() {
    let (api, addr, _t) = start();
    let mut c = Conn::connect(addr).await;
    let h = spawn_invoke(&api, inv("gone"));
    let r = c.next().await;
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("gone"));
    h.abort();
    assert!(h.await.unwrap_err().is_cancelled());
    let r = c.post("/invocation/gone/response", &[], b"1").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errorType"], "InvalidRequestID");

    // Abandoned while still queued: the runtime never sees it.
    let fut = api.invoke(inv("never"));
    assert!(timeout(Duration::from_millis(50), fut).await.is_err());
    let h = spawn_invoke(&api, inv("next"));
    let r = c.next().await;
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("next"));
    c.post("/invocation/next/response", &[], b"3").await;
    assert_eq!(
        outcome(h).await,
        InvocationOutcome::Response(Bytes::from_static(b"3"))
    );
}

#[tokio::test]
async fn second_invoke_waits_for_the_first() {
    let (api, addr, _t) = start();
    let mut c = Conn::connect(addr).await;
    let h1 = spawn_invoke(&api, inv("one"));
    let r = c.next().await;
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("one"));
    let h2 = spawn_invoke(&api, inv("two"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!h2.is_finished());
    c.post("/invocation/one/response", &[], b"1").await;
    outcome(h1).await;
    let r = c.next().await;
    assert_eq!(r.header("lambda-runtime-aws-request-id"), Some("two"));
    c.post("/invocation/two/response", &[], b"2").await;
    assert_eq!(
        outcome(h2).await,
        InvocationOutcome::Response(Bytes::from_static(b"2"))
    );
}

#[tokio::test]
async fn init_error_before_and_while_waiting() {
    // While waiting.
    let (api, addr, _t) = start();
    let h = spawn_invoke(&api, inv("w"));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut c = Conn::connect(addr).await;
    let body = br#"{"errorMessage":"Unable to import module 'app'","errorType":"Runtime.ImportModuleError","stackTrace":[]}"#;
    let r = c.post("/init/error", &[], body).await;
    assert_eq!(r.status, 202);
    let want = InvocationOutcome::InitError {
        error_type: "Runtime.ImportModuleError".to_owned(),
        body: Bytes::from_static(body),
    };
    assert_eq!(outcome(h).await, want);
    // And every later invocation.
    assert_eq!(timeout(T, api.invoke(inv("later"))).await.unwrap(), want);
    assert!(api.init_done_at().is_none());

    // Before: the header wins over the body.
    let (api, addr, _t) = start();
    let mut c = Conn::connect(addr).await;
    let r = c
        .post(
            "/init/error",
            &[(
                "Lambda-Runtime-Function-Error-Type",
                "Runtime.HandlerNotFound",
            )],
            b"{}",
        )
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        timeout(T, api.invoke(inv("x"))).await.unwrap(),
        InvocationOutcome::InitError {
            error_type: "Runtime.HandlerNotFound".to_owned(),
            body: Bytes::from_static(b"{}"),
        }
    );
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let (_api, addr, _t) = start();
    let mut c = Conn::connect(addr).await;
    for raw in [
        &b"GET /2018-06-01/runtime/invocation/x/response HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /2018-06-01/runtime/invocation/x/other HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"POST /2020-01-01/extension/register HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    ] {
        let r = c.request(raw).await;
        assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(raw));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.json()["errorMessage"].is_string());
    }
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let (_api, addr, token) = start();
    let mut c = Conn::connect(addr).await;
    c.send(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    token.cancel();
    // The long-polling connection is closed.
    let mut buf = [0u8; 16];
    let n = timeout(T, c.io.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // And new connections are refused once the listener is dropped.
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused);
}

#[test]
fn serve_outside_a_runtime_is_an_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let err = RuntimeApi::serve(listener, CancellationToken::new()).unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
