//! Response streaming end to end: a runtime answering with `Lambda-Runtime-Function-Response-Mode:
//! streaming`, a chunked body and error trailers, through `Worker.InvokeStream`, the controller's
//! `InvokeWithResponseStream`, the SDK and `fnctl invoke --stream`. Incremental delivery is
//! checked by order, not by timing: the first chunk reaches the caller before the function even
//! stamps the time it sends its last one.
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use lamina_client::StreamEvent;
use lamina_e2e::*;
use serde_json::{json, Value};

/// Streams each event's `chunks` (pausing `pause` s between them; `@now` becomes
/// `END-AT <epoch ms>` stamped just before it is sent), then the error trailers of `error` if
/// given. Prints the status the Runtime API answered.
const STREAMING_BOOTSTRAP: &str = r#"#!/usr/bin/python3.11
import base64, http.client, json, os, socket, time
API = os.environ["AWS_LAMBDA_RUNTIME_API"]
HOST, PORT = API.split(":")

def next_event():
    c = http.client.HTTPConnection(API)
    c.request("GET", "/2018-06-01/runtime/invocation/next")
    r = c.getresponse()
    body = r.read()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    c.close()
    return rid, json.loads(body)

def stream(rid, chunks, pause, error):
    s = socket.create_connection((HOST, int(PORT)))
    head = ("POST /2018-06-01/runtime/invocation/%s/response HTTP/1.1\r\nHost: %s\r\n"
            "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: text/plain\r\n"
            "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n"
            % (rid, API))
    s.sendall(head.encode())
    for i, text in enumerate(chunks):
        if text == "@now":
            text = "END-AT %d\n" % int(time.time() * 1000)
        data = text.encode()
        s.sendall(b"%x\r\n" % len(data) + data + b"\r\n")
        if i < len(chunks) - 1:
            time.sleep(pause)
    trailer = b""
    if error:
        body = base64.b64encode(json.dumps(error).encode()).decode()
        trailer = ("Lambda-Runtime-Function-Error-Type: %s\r\n"
                   "Lambda-Runtime-Function-Error-Body: %s\r\n" % (error["errorType"], body)).encode()
    s.sendall(b"0\r\n" + trailer + b"\r\n")
    status = s.recv(65536).split(b" ")[1].decode()
    s.close()
    print("STREAM_STATUS", status, flush=True)

while True:
    rid, ev = next_event()
    stream(rid, ev.get("chunks", []), ev.get("pause", 0), ev.get("error"))
"#;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn create_streaming(c: &Client, timeout_s: u32) -> anyhow::Result<String> {
    let name = unique("stream");
    let mut s = spec(&name, "provided", "stream.handler");
    s.timeout_seconds = timeout_s;
    c.create_function(s, zip_of(&[("bootstrap", STREAMING_BOOTSTRAP, 0o755)]))
        .await?;
    Ok(name)
}

fn stream_request(name: &str, event: &Value) -> v1::InvokeRequest {
    v1::InvokeRequest {
        function_name: name.to_string(),
        payload: event.to_string().into_bytes(),
        log_type: v1::LogType::Tail as i32,
        ..Default::default()
    }
}

/// The chunks (each with the epoch ms it arrived at) and the completion.
async fn collect(
    c: &Client,
    name: &str,
    event: Value,
) -> anyhow::Result<(Vec<(u64, Vec<u8>)>, v1::InvokeComplete)> {
    let mut stream = c
        .invoke_with_response_stream(stream_request(name, &event))
        .await?;
    let mut chunks = Vec::new();
    while let Some(ev) = stream.next().await? {
        match ev {
            StreamEvent::Chunk(data) => chunks.push((now_ms(), data)),
            StreamEvent::Complete(done) => {
                assert!(
                    stream.next().await?.is_none(),
                    "nothing after the completion"
                );
                return Ok((chunks, done));
            }
        }
    }
    anyhow::bail!("the stream ended without its completion")
}

fn text(chunks: &[(u64, Vec<u8>)]) -> String {
    chunks
        .iter()
        .map(|(_, d)| String::from_utf8_lossy(d).into_owned())
        .collect()
}

/// `END-AT <ms>` in `text`.
fn end_at(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("END-AT "))
        .unwrap_or_else(|| panic!("no END-AT in {text:?}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn chunks_reach_the_caller_as_the_function_streams_them() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = create_streaming(&c, 20).await?;
        let event = json!({"chunks": ["first\n", "second\n", "@now"], "pause": 1.5});
        let (chunks, done) = collect(&c, &name, event.clone()).await?;
        assert_eq!(done.function_error, "", "{done:?}\n{}", cluster.logs());
        assert!(!done.request_id.is_empty());
        assert_eq!(done.executed_version, "$LATEST");
        assert!(
            done.log_tail.contains("REPORT RequestId:"),
            "{}",
            done.log_tail
        );
        let all = text(&chunks);
        assert!(all.starts_with("first\nsecond\nEND-AT "), "{all:?}");
        // The first chunk arrived before the function stamped its last one (3 s of pauses later).
        let first_at = chunks[0].0;
        assert!(String::from_utf8_lossy(&chunks[0].1).starts_with("first"));
        assert!(
            first_at < end_at(&all),
            "first chunk at {first_at}, function's last chunk stamped at {}",
            end_at(&all)
        );
        assert!(chunks.len() >= 3, "one chunk per write: {chunks:?}");

        // The same function through plain Invoke: the stream is buffered into one payload.
        let resp = c
            .invoke(v1::InvokeRequest {
                function_name: name.clone(),
                payload: json!({"chunks": ["a", "b", "c"]}).to_string().into_bytes(),
                ..Default::default()
            })
            .await?;
        assert_eq!(resp.function_error, "");
        assert_eq!(resp.payload, b"abc");
        Ok(())
    })
}

#[test]
fn error_trailers_and_timeouts_end_the_stream_with_an_error() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = create_streaming(&c, 2).await?;
        let error = json!({"errorType": "Stream.Failed", "errorMessage": "gave up half way"});
        let (chunks, done) =
            collect(&c, &name, json!({"chunks": ["partial"], "error": error})).await?;
        assert_eq!(text(&chunks), "partial");
        assert_eq!(done.function_error, "Unhandled", "{done:?}");
        assert_eq!(done.error_code, "Stream.Failed");
        let details: Value = serde_json::from_str(&done.error_details)?;
        assert_eq!(details, error);

        // Through plain Invoke: the error, as for a runtime's /error.
        let resp = c
            .invoke(stream_request(
                &name,
                &json!({"chunks": ["x"], "error": error}),
            ))
            .await?;
        assert_eq!(resp.function_error, "Unhandled");
        assert_eq!(json(&resp), error);

        // A stream cut off by the timeout: what was sent, then Sandbox.Timedout.
        let (chunks, done) = collect(
            &c,
            &name,
            json!({"chunks": ["before ", "never"], "pause": 30}),
        )
        .await?;
        assert_eq!(text(&chunks), "before ");
        assert_eq!(done.error_code, "Sandbox.Timedout", "{done:?}");
        assert!(
            done.error_details
                .contains("Task timed out after 2.00 seconds"),
            "{}",
            done.error_details
        );
        Ok(())
    })
}

#[test]
fn a_function_that_does_not_stream_arrives_as_one_chunk() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("whole");
        create_python(
            &c,
            &name,
            "def handler(e, c):\n    if e.get('fail'):\n        raise KeyError('nope')\n    return {'whole': 'response', 'n': e.get('n')}\n",
        )
        .await?;
        let (chunks, done) = collect(&c, &name, json!({"n": 7})).await?;
        assert_eq!(chunks.len(), 1, "{chunks:?}");
        let v: Value = serde_json::from_slice(&chunks[0].1)?;
        assert_eq!(v, json!({"whole": "response", "n": 7}));
        assert_eq!(done.function_error, "");
        // A handled error: no chunk, the error in the completion.
        let (chunks, done) = collect(&c, &name, json!({"fail": true})).await?;
        assert!(chunks.is_empty(), "{chunks:?}");
        assert_eq!(done.function_error, "Unhandled");
        assert_eq!(done.error_code, "KeyError");
        // Unknown function: an error before any stream.
        let err = c
            .invoke_with_response_stream(stream_request("no-such-function", &json!({})))
            .await
            .err()
            .expect("not found");
        assert!(err.to_string().contains("not found"), "{err}");
        Ok(())
    })
}

#[test]
fn fnctl_invoke_stream_prints_chunks_as_they_arrive() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = create_streaming(&c, 20).await?;
        let payload = json!({"chunks": ["first line\n", "@now"], "pause": 2}).to_string();
        let mut child = Command::new(bin("fnctl"))
            .args(["invoke", &name, "--stream", "--payload", &payload])
            .envs(cluster.fnctl_env())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut first = String::new();
        out.read_line(&mut first)?;
        let first_at = now_ms();
        assert_eq!(first, "first line\n");
        let mut rest = String::new();
        out.read_to_string(&mut rest)?;
        let status = child.wait()?;
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr)?;
        assert!(status.success(), "{status}: {stderr}");
        assert!(first_at < end_at(&rest), "{first_at} vs {rest:?}");

        // A streamed error: exit status 2, the error type on stderr.
        let payload =
            json!({"chunks": ["p"], "error": {"errorType": "Stream.Failed", "errorMessage": "m"}})
                .to_string();
        let out = Command::new(bin("fnctl"))
            .args(["invoke", &name, "--stream", "--payload", &payload])
            .envs(cluster.fnctl_env())
            .output()?;
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert_eq!(out.stdout, b"p");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("Stream.Failed"), "{stderr}");

        // JSON lines with -o json.
        let out = Command::new(bin("fnctl"))
            .args(["-o", "json", "invoke", &name, "--stream", "--payload"])
            .arg(json!({"chunks": ["a", "b"]}).to_string())
            .envs(cluster.fnctl_env())
            .output()?;
        assert!(out.status.success(), "{out:?}");
        let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0], json!({"PayloadChunk": {"Payload": "a"}}));
        assert_eq!(lines[1], json!({"PayloadChunk": {"Payload": "b"}}));
        assert_eq!(lines[2]["InvokeComplete"]["FunctionError"], "");
        Ok(())
    })
}

/// Runs `tests/python/response_stream.py NAME PAYLOAD` (boto3) against the cluster's REST API;
/// returns its JSON lines.
fn boto3_stream(cluster: &Cluster, name: &str, payload: &Value) -> anyhow::Result<Vec<Value>> {
    let python = venv().join("bin/python");
    anyhow::ensure!(
        python.exists(),
        "{} is missing: run deploy/test.sh, which installs boto3 there",
        python.display()
    );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/response_stream.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(name)
        .arg(payload.to_string())
        .env("LAMINA_REST", &cluster.rest_endpoint)
        .env("LAMINA_CREDENTIALS", &cluster.credentials_file)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "response_stream.py failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect())
}

#[test]
fn boto3_invoke_with_response_stream_reads_the_event_stream() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = create_streaming(&c, 20).await?;
        let lines = boto3_stream(
            &cluster,
            &name,
            &json!({"chunks": ["first\n", "@now"], "pause": 1.5}),
        )?;
        assert_eq!(lines[0]["start"]["status"], 200, "{lines:?}");
        assert_eq!(lines[0]["start"]["executed_version"], "$LATEST");
        assert_eq!(lines[1]["chunk"], "first\n", "{lines:?}");
        let end = end_at(lines[2]["chunk"].as_str().expect("second chunk"));
        // boto3 read the first chunk before the function stamped its last one.
        assert!(lines[1]["at_ms"].as_u64().unwrap() < end, "{lines:?}");
        let done = &lines[3]["complete"];
        assert!(done.get("ErrorCode").is_none(), "{done}");
        let log = done["LogResult"].as_str().expect("LogResult");
        assert!(!log.is_empty());

        // Error trailers -> InvokeComplete's ErrorCode and ErrorDetails.
        let error = json!({"errorType": "Stream.Failed", "errorMessage": "half way"});
        let lines = boto3_stream(&cluster, &name, &json!({"chunks": ["p"], "error": error}))?;
        assert_eq!(lines[1]["chunk"], "p");
        let done = &lines[2]["complete"];
        assert_eq!(done["ErrorCode"], "Stream.Failed", "{done}");
        let details: Value = serde_json::from_str(done["ErrorDetails"].as_str().unwrap())?;
        assert_eq!(details, error);
        Ok(())
    })
}

#[test]
fn node_streamify_response_streams_through_the_cluster() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("nodestream");
        let app =
            "exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {\n\
                   \x20 responseStream.setContentType('text/plain');\n\
                   \x20 responseStream.write('one ');\n\
                   \x20 await new Promise((r) => setTimeout(r, 50));\n\
                   \x20 responseStream.write('two');\n\
                   \x20 if (event.fail) throw new RangeError('out of range');\n\
                   \x20 responseStream.end();\n\
                   });\n";
        c.create_function(
            spec(&name, "nodejs20.x", "app.handler"),
            zip_of(&[("app.js", app, 0o644)]),
        )
        .await?;
        let (chunks, done) = collect(&c, &name, json!({})).await?;
        assert_eq!(text(&chunks), "one two", "{}", cluster.logs());
        assert_eq!(done.function_error, "");
        let (chunks, done) = collect(&c, &name, json!({"fail": true})).await?;
        assert_eq!(text(&chunks), "one two");
        assert_eq!(done.error_code, "RangeError", "{done:?}");
        Ok(())
    })
}
