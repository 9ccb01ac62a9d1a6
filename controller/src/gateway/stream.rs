//! `RESPONSE_STREAM` function URLs: the function's chunks go to the client as they arrive
//! (chunked), under the status and headers of the prelude that `awslambda.HttpResponseStream.from`
//! writes first: a JSON object (`statusCode`, `headers`, `cookies`), then 8 NUL bytes. A stream
//! that does not start with such a prelude is the body of a 200 `application/octet-stream`
//! response. A function error before the first body byte is a 502; after it the response is cut
//! short (the client sees an incomplete chunked body, as with Lambda).
use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use lamina_proto::v1::invoke_with_response_stream_response::Event;
use serde_json::Value;

use super::response::Mapped;
use crate::api::stream::InvokeStream;

/// The prelude's end.
const DELIMITER: [u8; 8] = [0; 8];
/// Bytes looked at for a prelude at most (a prelude is headers: small).
const MAX_PRELUDE: usize = 64 * 1024;

/// Where the first bytes of the stream put us.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// More bytes are needed to tell.
    Undecided,
    /// A prelude: the response head, and the body bytes that followed it.
    Prelude(Mapped, Vec<u8>),
    /// No prelude: everything so far is body.
    Body(Vec<u8>),
}

/// Looks for the prelude in the first `buf` bytes (`ended`: no more will come).
pub fn parse_head(buf: &[u8], ended: bool) -> Head {
    let start = buf.iter().position(|b| !b.is_ascii_whitespace());
    match start {
        None if !ended => return Head::Undecided,
        None => return Head::Body(buf.to_vec()),
        Some(i) if buf[i] != b'{' => return Head::Body(buf.to_vec()),
        Some(_) => {}
    }
    let Some(at) = buf.windows(DELIMITER.len()).position(|w| w == DELIMITER) else {
        if ended || buf.len() > MAX_PRELUDE {
            return Head::Body(buf.to_vec());
        }
        return Head::Undecided;
    };
    let Ok(Value::Object(p)) = serde_json::from_slice::<Value>(&buf[..at]) else {
        return Head::Body(buf.to_vec());
    };
    let status = p
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| (100..=599).contains(n))
        .unwrap_or(200);
    let mut headers = Vec::new();
    if let Some(Value::Object(h)) = p.get("headers") {
        for (k, v) in h {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            headers.push((k.to_ascii_lowercase(), v));
        }
    }
    if let Some(Value::Array(cookies)) = p.get("cookies") {
        for c in cookies.iter().filter_map(Value::as_str) {
            headers.push(("set-cookie".into(), c.to_string()));
        }
    }
    if !headers.iter().any(|(n, _)| n == "content-type") {
        headers.push(("content-type".into(), "application/octet-stream".into()));
    }
    Head::Prelude(
        Mapped {
            status,
            headers,
            body: Vec::new(),
        },
        buf[at + DELIMITER.len()..].to_vec(),
    )
}

/// How a streamed invocation went before its response could start.
pub enum Outcome {
    /// The response: head known, body streaming.
    Response(Response),
    /// The function failed (or the worker was lost) before the first body byte.
    FunctionError,
}

/// Reads the stream until the head is known, then streams the rest as the body.
pub async fn respond(mut events: InvokeStream) -> Outcome {
    let mut buf = Vec::new();
    let head = loop {
        match events.next().await {
            Some(Ok(e)) => match e.event {
                Some(Event::PayloadChunk(chunk)) => {
                    buf.extend_from_slice(&chunk);
                    match parse_head(&buf, false) {
                        Head::Undecided => continue,
                        decided => break decided,
                    }
                }
                Some(Event::InvokeComplete(c)) => {
                    if !c.function_error.is_empty() {
                        return Outcome::FunctionError;
                    }
                    // The whole response fitted in what was read.
                    let head = parse_head(&buf, true);
                    return Outcome::Response(finish(head, None));
                }
                None => continue,
            },
            Some(Err(_)) => return Outcome::FunctionError,
            None => {
                let head = parse_head(&buf, true);
                return Outcome::Response(finish(head, None));
            }
        }
    };
    Outcome::Response(finish(head, Some(events)))
}

/// The response of a decided head, with the rest of the stream (if any) as the body's tail.
fn finish(head: Head, rest: Option<InvokeStream>) -> Response {
    let (mapped, first) = match head {
        Head::Prelude(m, first) => (m, first),
        Head::Body(b) => (plain_head(), b),
        Head::Undecided => (plain_head(), Vec::new()),
    };
    let first =
        futures::stream::once(async move { Ok::<Bytes, std::io::Error>(Bytes::from(first)) });
    let body = match rest {
        None => Body::from_stream(first),
        Some(rest) => Body::from_stream(first.chain(rest.filter_map(|e| async move {
            match e {
                Ok(ev) => match ev.event {
                    Some(Event::PayloadChunk(c)) => Some(Ok(Bytes::from(c))),
                    Some(Event::InvokeComplete(c)) if c.function_error.is_empty() => None,
                    // A function error mid-stream: cut the response short.
                    Some(Event::InvokeComplete(_)) => Some(Err(std::io::Error::other(
                        "the function failed while streaming",
                    ))),
                    None => None,
                },
                Err(status) => Some(Err(std::io::Error::other(status.message().to_string()))),
            }
        }))),
    };
    let mut out = Response::new(body);
    *out.status_mut() = StatusCode::from_u16(mapped.status).unwrap_or(StatusCode::OK);
    let h = out.headers_mut();
    for (name, value) in mapped.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.append(n, v);
        }
    }
    out
}

/// The head of a stream without a prelude.
fn plain_head() -> Mapped {
    Mapped {
        status: 200,
        headers: vec![("content-type".into(), "application/octet-stream".into())],
        body: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prelude_gives_status_headers_and_the_body_after_it() {
        let mut s = br#"{"statusCode":201,"headers":{"Content-Type":"text/plain","X-A":"1"},"cookies":["c=1"]}"#.to_vec();
        assert_eq!(parse_head(&s, false), Head::Undecided);
        s.extend_from_slice(&[0; 8]);
        s.extend_from_slice(b"first");
        let Head::Prelude(m, rest) = parse_head(&s, false) else {
            panic!("no prelude")
        };
        assert_eq!(m.status, 201);
        assert!(m
            .headers
            .contains(&("content-type".into(), "text/plain".into())));
        assert!(m.headers.contains(&("x-a".into(), "1".into())));
        assert!(m.headers.contains(&("set-cookie".into(), "c=1".into())));
        assert_eq!(rest, b"first");
    }

    #[test]
    fn streams_without_a_prelude_are_the_body() {
        assert_eq!(parse_head(b"hello", false), Head::Body(b"hello".to_vec()));
        assert_eq!(parse_head(b"{\"a\":1}", false), Head::Undecided);
        assert_eq!(
            parse_head(b"{\"a\":1}", true),
            Head::Body(b"{\"a\":1}".to_vec())
        );
        assert_eq!(parse_head(b"  ", false), Head::Undecided);
        let big = [b"{".as_slice(), &vec![b'a'; MAX_PRELUDE + 1]].concat();
        assert_eq!(parse_head(&big, false), Head::Body(big.clone()));
        // NULs after something that is not JSON: body.
        let odd = [b"{nope".as_slice(), &[0; 8], b"x"].concat();
        assert_eq!(parse_head(&odd, false), Head::Body(odd.clone()));
    }
}
