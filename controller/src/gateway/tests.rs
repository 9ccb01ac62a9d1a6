//! The gateway over real TCP against a fake worker: the real context (RocksDB store, registry,
//! limiter, pipeline) of a controller on a temporary directory, the gateway on 127.0.0.1:0, and a
//! tonic `Worker` on 127.0.0.1:0 that answers from the event it gets (its `rawPath` or `path`
//! picks the answer) and counts the invocations it ran.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lamina_proto::v1::{self, worker_invoke_stream_message::Event as WorkerEvent};
use serde_json::{json, Value};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::model::{
    AuthType, Cors, FunctionUrlConfig, HttpApi, HttpRoute, InvokeMode, PayloadFormat, Throttle,
};
use super::GatewayConfig;
use crate::context::Context;
use crate::store::{GatewayStore, RocksStore, Store};
use crate::test_support::{function, CODE};
use crate::{Controller, ControllerConfig};

const URL_ID: &str = "abcdefghijklmnopqrstuvwxyz012345";
const STREAM_URL_ID: &str = "streamstreamstreamstreamstream01";
const CORS_URL_ID: &str = "corscorscorscorscorscorscorscor1";
const IAM_URL_ID: &str = "iamiamiamiamiamiamiamiamiamiam12";
const API_V2: &str = "apiv2apiv2";
const API_V1: &str = "apiv1apiv1";

struct FakeWorker {
    invocations: Arc<AtomicUsize>,
}

/// What the fake function answers to an event, by its path.
fn function_answer(event: &Value) -> (String, Vec<u8>) {
    let path = event["rawPath"]
        .as_str()
        .or_else(|| event["path"].as_str())
        .unwrap_or("");
    let ok = |v: Value| (String::new(), v.to_string().into_bytes());
    match path {
        "/fail" => (
            "Unhandled".into(),
            br#"{"errorType":"Boom","errorMessage":"x"}"#.to_vec(),
        ),
        "/plain" => ok(json!({"hello": "world"})),
        "/string" => ok(json!("Hello from Lambda!")),
        "/bad-status" => ok(json!({"statusCode": 1000})),
        "/binary" => ok(
            json!({"statusCode": 200, "body": "aGk=", "isBase64Encoded": true,
            "headers": {"content-type": "application/octet-stream"}}),
        ),
        "/multi" => ok(json!({"statusCode": 200, "body": "m",
            "multiValueHeaders": {"x-m": ["1", "2"]}})),
        _ => ok(json!({
            "statusCode": 201,
            "headers": {"content-type": "application/json", "x-fn": "yes"},
            "cookies": ["c1=v1", "c2=v2"],
            "body": event.to_string(),
        })),
    }
}

#[tonic::async_trait]
impl v1::worker_server::Worker for FakeWorker {
    type InvokeStreamStream = ReceiverStream<Result<v1::WorkerInvokeStreamMessage, Status>>;

    async fn invoke(
        &self,
        request: Request<v1::WorkerInvokeRequest>,
    ) -> Result<Response<v1::WorkerInvokeResponse>, Status> {
        self.invocations.fetch_add(1, Ordering::SeqCst);
        let event: Value = serde_json::from_slice(&request.into_inner().payload)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let (function_error, payload) = function_answer(&event);
        Ok(Response::new(v1::WorkerInvokeResponse {
            payload,
            function_error,
            logs: "START\nEND\n".into(),
            ..Default::default()
        }))
    }

    async fn invoke_stream(
        &self,
        request: Request<v1::WorkerInvokeRequest>,
    ) -> Result<Response<Self::InvokeStreamStream>, Status> {
        self.invocations.fetch_add(1, Ordering::SeqCst);
        let event: Value = serde_json::from_slice(&request.into_inner().payload)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let fail = event["rawPath"] == "/fail";
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let prelude = br#"{"statusCode":202,"headers":{"content-type":"text/plain"}}"#;
            let chunks: Vec<Vec<u8>> = vec![
                prelude[..10].to_vec(),
                [&prelude[10..], &[0u8; 8][..], b"first "].concat(),
                b"last".to_vec(),
            ];
            for chunk in chunks {
                let event = Some(WorkerEvent::Chunk(chunk));
                let _ = tx.send(Ok(v1::WorkerInvokeStreamMessage { event })).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let done = v1::WorkerInvokeResponse {
                function_error: if fail {
                    "Unhandled".into()
                } else {
                    String::new()
                },
                logs: "START\nEND\n".into(),
                ..Default::default()
            };
            let event = Some(WorkerEvent::Done(done));
            let _ = tx.send(Ok(v1::WorkerInvokeStreamMessage { event })).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn retire_sandboxes(
        &self,
        _request: Request<v1::RetireSandboxesRequest>,
    ) -> Result<Response<v1::RetireSandboxesResponse>, Status> {
        Ok(Response::new(v1::RetireSandboxesResponse::default()))
    }

    async fn set_provisioned(
        &self,
        _request: Request<v1::SetProvisionedRequest>,
    ) -> Result<Response<v1::SetProvisionedResponse>, Status> {
        Ok(Response::new(v1::SetProvisionedResponse {}))
    }

    async fn set_network(
        &self,
        _request: Request<v1::NetworkState>,
    ) -> Result<Response<v1::SetNetworkResponse>, Status> {
        Ok(Response::new(v1::SetNetworkResponse {}))
    }
}

fn url(id: &str, auth: AuthType, mode: InvokeMode, cors: Option<Cors>) -> FunctionUrlConfig {
    FunctionUrlConfig {
        url_id: id.to_string(),
        function_name: "f".into(),
        qualifier: String::new(),
        auth_type: auth,
        invoke_mode: mode,
        cors,
        created_ms: 1,
        last_modified_ms: 1,
    }
}

fn route(id: &str, key: &str, throttle: Option<Throttle>) -> HttpRoute {
    HttpRoute {
        route_id: id.to_string(),
        route_key: key.to_string(),
        function_name: "f".into(),
        qualifier: String::new(),
        throttle,
        created_ms: 1,
    }
}

struct Fixture {
    ctx: Arc<Context>,
    port: u16,
    invocations: Arc<AtomicUsize>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn fixture() -> Fixture {
    fixture_with(GatewayConfig::default()).await
}

async fn fixture_with(gateway: GatewayConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), 100).unwrap();
    store.create_function(&function("f"), CODE).unwrap();
    store
        .create_function_url(&url(URL_ID, AuthType::None, InvokeMode::Buffered, None))
        .unwrap();
    let cors = Cors {
        allow_origins: vec!["https://app.example".into()],
        allow_methods: vec!["GET".into(), "POST".into()],
        allow_headers: vec!["content-type".into()],
        expose_headers: vec!["x-fn".into()],
        max_age: Some(300),
        allow_credentials: false,
    };
    store.create_function(&function("g"), CODE).unwrap();
    let mut with_cors = url(
        CORS_URL_ID,
        AuthType::None,
        InvokeMode::Buffered,
        Some(cors),
    );
    with_cors.function_name = "g".into();
    store.create_function_url(&with_cors).unwrap();
    store.create_function(&function("s"), CODE).unwrap();
    let mut streamed = url(
        STREAM_URL_ID,
        AuthType::None,
        InvokeMode::ResponseStream,
        None,
    );
    streamed.function_name = "s".into();
    store.create_function_url(&streamed).unwrap();
    store.create_function(&function("i"), CODE).unwrap();
    let mut iam = url(IAM_URL_ID, AuthType::AwsIam, InvokeMode::Buffered, None);
    iam.function_name = "i".into();
    store.create_function_url(&iam).unwrap();
    let throttle = Throttle {
        rate_limit: 0.0,
        burst_limit: 2,
    };
    for (id, format) in [(API_V2, PayloadFormat::V2), (API_V1, PayloadFormat::V1)] {
        store
            .put_http_api(&HttpApi {
                api_id: id.into(),
                name: id.into(),
                payload_format: format,
                routes: vec![
                    route("r1", "GET /items/{id}", None),
                    route("r2", "GET /items/special", None),
                    route("r3", "ANY /{proxy+}", None),
                    route("r4", "POST /limited", Some(throttle)),
                ],
                created_ms: 1,
            })
            .unwrap();
    }
    let mut config = ControllerConfig::new(dir.path().to_path_buf());
    config.worker_timeout = Duration::from_secs(60);
    config.concurrency.placement_wait = Duration::from_millis(10);
    let controller = Controller::with_store(&config, Arc::new(store));
    let ctx = Arc::clone(&controller.shared);
    let stop = CancellationToken::new();
    let invocations = Arc::new(AtomicUsize::new(0));
    let worker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = worker.local_addr().unwrap().to_string();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(v1::worker_server::WorkerServer::new(FakeWorker {
                invocations: Arc::clone(&invocations),
            }))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(worker),
                stop.clone().cancelled_owned(),
            ),
    );
    ctx.registry.register("w1", &address, 4096);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(super::serve(
        Arc::clone(&ctx),
        None,
        gateway,
        listener,
        stop.clone(),
    ));
    Fixture {
        ctx,
        port,
        invocations,
        stop,
        _dir: dir,
    }
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Fixture {
    async fn send(
        &self,
        method: &str,
        host: Option<&str>,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.port));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
        let resp = client.request(req).await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }
}

fn url_host(id: &str) -> String {
    format!("{id}.lambda-url.us-east-1.localhost")
}

#[tokio::test]
async fn function_urls_by_host_and_by_path_send_the_v2_event_and_map_the_answer() {
    let f = fixture().await;
    let host = url_host(URL_ID);
    let by_host = f
        .send(
            "POST",
            Some(&format!("{host}:{}", f.port)),
            "/echo/x?a=1&a=2",
            &[("cookie", "k=v"), ("content-type", "application/json")],
            br#"{"in":1}"#,
        )
        .await;
    assert_eq!(by_host.status, 201);
    assert_eq!(by_host.header("x-fn"), Some("yes"));
    assert!(by_host.header("x-amzn-requestid").is_some());
    let cookies: Vec<_> = by_host.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies.len(), 2);
    let event = by_host.json();
    assert_eq!(event["version"], "2.0");
    assert_eq!(event["rawPath"], "/echo/x");
    assert_eq!(event["rawQueryString"], "a=1&a=2");
    assert_eq!(event["queryStringParameters"]["a"], "1,2");
    assert_eq!(event["cookies"], json!(["k=v"]));
    assert_eq!(event["body"], r#"{"in":1}"#);
    assert_eq!(event["requestContext"]["apiId"], URL_ID);
    assert_eq!(event["requestContext"]["domainName"], host);
    assert_eq!(event["requestContext"]["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(event["requestContext"]["http"]["method"], "POST");
    assert_eq!(event["requestContext"]["accountId"], "anonymous");
    // The path form: the id segment is not part of the function's path.
    let by_path = f
        .send("GET", None, &format!("/{URL_ID}/echo/y"), &[], b"")
        .await;
    assert_eq!(by_path.status, 201);
    assert_eq!(by_path.json()["rawPath"], "/echo/y");
    let root = f.send("GET", None, &format!("/{URL_ID}"), &[], b"").await;
    assert_eq!(root.json()["rawPath"], "/");
    // Results: plain JSON, a JSON string, base64, a function error, a bad status.
    let p = |path: &str| format!("/{URL_ID}{path}");
    let plain = f.send("GET", None, &p("/plain"), &[], b"").await;
    assert_eq!(
        (plain.status, plain.json()),
        (200, json!({"hello": "world"}))
    );
    assert_eq!(plain.header("content-type"), Some("application/json"));
    let s = f.send("GET", None, &p("/string"), &[], b"").await;
    assert_eq!(s.body, b"Hello from Lambda!");
    let b = f.send("GET", None, &p("/binary"), &[], b"").await;
    assert_eq!(b.body, b"hi");
    let e = f.send("GET", None, &p("/fail"), &[], b"").await;
    assert_eq!(
        (e.status, e.json()),
        (502, json!({"Message": "Internal Server Error"}))
    );
    let e = f.send("GET", None, &p("/bad-status"), &[], b"").await;
    assert_eq!(e.status, 502);
    // A binary body travels base64.
    let bin = f
        .send(
            "PUT",
            None,
            &p("/echo"),
            &[("content-type", "application/octet-stream")],
            &[0, 255, 1],
        )
        .await;
    let event = bin.json();
    assert_eq!(event["isBase64Encoded"], true);
    assert_eq!(event["body"], "AP8B");
}

#[tokio::test]
async fn unknown_targets_oversized_bodies_and_unsigned_iam_requests_are_refused_without_invoking() {
    let f = fixture().await;
    let unknown = "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";
    let r = f.send("GET", Some(&url_host(unknown)), "/", &[], b"").await;
    assert_eq!((r.status, r.json()), (403, json!({"Message": "Forbidden"})));
    let r = f
        .send("GET", None, &format!("/{unknown}/x"), &[], b"")
        .await;
    assert_eq!(r.status, 403);
    let r = f.send("GET", None, "/nothing/here", &[], b"").await;
    assert_eq!((r.status, r.json()), (404, json!({"message": "Not Found"})));
    let r = f
        .send(
            "GET",
            Some("other.execute-api.us-east-1.localhost"),
            "/",
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status, 404);
    // The management API is not on this listener.
    let r = f
        .send("GET", None, "/2015-03-31/functions/f", &[], b"")
        .await;
    assert_eq!(r.status, 404);
    // Over 6 MB: 413, declared or not.
    let big = vec![b'a'; super::MAX_BODY_BYTES + 1];
    let r = f
        .send("POST", None, &format!("/{URL_ID}/"), &[], &big)
        .await;
    assert_eq!(r.status, 413);
    assert!(r.json()["Message"].as_str().unwrap().contains("6291456"));
    // AWS_IAM without a signature (and, here, without keys at all): 403.
    let r = f
        .send("GET", None, &format!("/{IAM_URL_ID}/"), &[], b"")
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(f.invocations.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn cors_preflights_are_answered_without_invoking_and_responses_carry_the_headers() {
    let f = fixture().await;
    let path = format!("/{CORS_URL_ID}/echo");
    let pre = f
        .send(
            "OPTIONS",
            None,
            &path,
            &[
                ("origin", "https://app.example"),
                ("access-control-request-method", "POST"),
            ],
            b"",
        )
        .await;
    assert_eq!(pre.status, 200);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(pre.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(pre.header("access-control-max-age"), Some("300"));
    assert_eq!(f.invocations.load(Ordering::SeqCst), 0);
    let r = f
        .send(
            "GET",
            None,
            &path,
            &[("origin", "https://app.example")],
            b"",
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-expose-headers"), Some("x-fn"));
    let r = f
        .send(
            "GET",
            None,
            &path,
            &[("origin", "https://evil.example")],
            b"",
        )
        .await;
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn response_stream_urls_take_the_prelude_and_stream_the_rest() {
    let f = fixture().await;
    let r = f
        .send("GET", None, &format!("/{STREAM_URL_ID}/s"), &[], b"")
        .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.body, b"first last");
}

#[tokio::test]
async fn http_apis_route_by_specificity_in_both_payload_formats_and_throttle() {
    let f = fixture().await;
    for api in [API_V2, API_V1] {
        let r = f
            .send("GET", None, &format!("/{api}/items/42"), &[], b"")
            .await;
        assert_eq!(r.status, 201, "{api}");
        let e = r.json();
        if api == API_V2 {
            assert_eq!(e["routeKey"], "GET /items/{id}");
            assert_eq!(e["pathParameters"]["id"], "42");
            assert_eq!(e["requestContext"]["routeKey"], "GET /items/{id}");
            assert_eq!(e["requestContext"]["accountId"], "000000000000");
        } else {
            assert_eq!(e["resource"], "/items/{id}");
            assert_eq!(e["pathParameters"]["id"], "42");
            assert_eq!(e["httpMethod"], "GET");
        }
        let host = format!("{api}.execute-api.us-east-1.localhost");
        let r = f.send("GET", Some(&host), "/items/special", &[], b"").await;
        let e = r.json();
        let key = e["routeKey"]
            .as_str()
            .or(e["requestContext"]["resourceId"].as_str());
        assert_eq!(key, Some("GET /items/special"), "{api}");
        let r = f.send("DELETE", Some(&host), "/a/b", &[], b"").await;
        let e = r.json();
        let key = e["routeKey"]
            .as_str()
            .or(e["requestContext"]["resourceId"].as_str());
        assert_eq!(key, Some("ANY /{proxy+}"), "{api}");
        // No route for the root: 404.
        let r = f.send("GET", Some(&host), "/", &[], b"").await;
        assert_eq!((r.status, r.json()), (404, json!({"message": "Not Found"})));
        // Throttled route: a burst of 2, no refill.
        let statuses: Vec<u16> = futures::future::join_all(
            (0..3).map(|_| f.send("POST", Some(&host), "/limited", &[], b"")),
        )
        .await
        .iter()
        .map(|r| r.status)
        .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 429).count(),
            1,
            "{statuses:?}"
        );
    }
    // 1.0: multiValueHeaders in the answer; a result without statusCode is 502.
    let r = f
        .send("GET", None, &format!("/{API_V1}/multi"), &[], b"")
        .await;
    let values: Vec<_> = r.headers.get_all("x-m").iter().collect();
    assert_eq!(values.len(), 2);
    let r = f
        .send("GET", None, &format!("/{API_V1}/plain"), &[], b"")
        .await;
    assert_eq!(
        (r.status, r.json()),
        (502, json!({"message": "Internal Server Error"}))
    );
    // 2.0: the same result is a 200 JSON body.
    let r = f
        .send("GET", None, &format!("/{API_V2}/plain"), &[], b"")
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_throttled_function_is_429() {
    let f = fixture().await;
    f.ctx.limiter.load(vec![("f".to_string(), 0)]);
    let r = f.send("GET", None, &format!("/{URL_ID}/x"), &[], b"").await;
    assert_eq!(
        (r.status, r.json()),
        (429, json!({"Message": "Too Many Requests"}))
    );
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off_and_others_still_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = fixture_with(GatewayConfig {
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        max_connections: 400,
        ..GatewayConfig::default()
    })
    .await;
    let addr = format!("127.0.0.1:{}", f.port);
    // Many idle connections: they hold no request, and the gateway still serves.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let r = f
        .send("GET", None, &format!("/{URL_ID}/plain"), &[], b"")
        .await;
    assert_eq!(r.status, 200);
    // Past the header timeout they are closed (read returns EOF or an error).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut buf = [0u8; 64];
    let closed = match tokio::time::timeout(Duration::from_secs(5), idle[0].read(&mut buf)).await {
        Ok(read) => read.map(|n| n == 0).unwrap_or(true),
        Err(_) => false,
    };
    assert!(closed, "an idle connection outlived the header timeout");
    drop(idle);
    // A body that never finishes: 408 after the body timeout, nothing invoked.
    let before = f.invocations.load(Ordering::SeqCst);
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head =
        format!("POST /{URL_ID}/x HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100\r\n\r\nabc");
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(f.invocations.load(Ordering::SeqCst), before);
    // Malformed HTTP: 400, no crash; the gateway serves on.
    let mut bad = tokio::net::TcpStream::connect(&addr).await.unwrap();
    bad.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), bad.read_to_end(&mut answer)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 400"));
    let r = f
        .send("GET", None, &format!("/{URL_ID}/plain"), &[], b"")
        .await;
    assert_eq!(r.status, 200);
}
