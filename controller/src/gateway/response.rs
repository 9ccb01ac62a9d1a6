//! A function's result as the HTTP response the client gets, by Lambda's rules.
//!
//! Payload format 2.0 (function URLs, HTTP APIs): a JSON object with `statusCode` is a structured
//! response (`statusCode`, `headers`, `cookies` as `Set-Cookie`s, `body`, `isBase64Encoded`);
//! any other JSON is a 200 `application/json` response whose body is that JSON (a JSON string:
//! its text). Payload format 1.0: the result must be an object with `statusCode`, and
//! `multiValueHeaders` adds repeated headers. What cannot be mapped is a bad gateway.
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde_json::Value;

/// A result that cannot be mapped (the client gets 502).
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub String);

/// What a mapped response is before it becomes a `Response`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Mapped {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Mapped {
    pub fn into_response(self) -> Result<Response, Malformed> {
        let status = StatusCode::from_u16(self.status)
            .map_err(|_| Malformed(format!("statusCode {} is not an HTTP status", self.status)))?;
        let mut out = Response::new(Body::from(self.body));
        *out.status_mut() = status;
        let h = out.headers_mut();
        for (name, value) in self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Malformed(format!("header name {name:?} is not valid")))?;
            let value = HeaderValue::from_str(&value)
                .map_err(|_| Malformed(format!("header {name} has a value that is not valid")))?;
            h.append(name, value);
        }
        Ok(out)
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn status_of(v: &Value) -> Result<u16, Malformed> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    n.and_then(|n| u16::try_from(n).ok())
        .filter(|n| (100..=599).contains(n))
        .ok_or_else(|| Malformed(format!("statusCode {v} is not an HTTP status")))
}

fn body_of(o: &serde_json::Map<String, Value>) -> Result<Vec<u8>, Malformed> {
    let body = match o.get("body") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(b) => text(b),
    };
    if o.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|_| Malformed("isBase64Encoded is true but body is not base64".into()))
    } else {
        Ok(body.into_bytes())
    }
}

fn headers_of(o: &serde_json::Map<String, Value>, out: &mut Vec<(String, String)>) {
    if let Some(Value::Object(h)) = o.get("headers") {
        for (k, v) in h {
            out.push((k.to_ascii_lowercase(), text(v)));
        }
    }
}

/// Maps a 2.0 result (`payload` as the function returned it).
pub fn v2(payload: &[u8]) -> Result<Mapped, Malformed> {
    let v: Value = serde_json::from_slice(payload)
        .map_err(|_| Malformed("the function's result is not JSON".into()))?;
    let structured = v.as_object().filter(|o| o.contains_key("statusCode"));
    let Some(o) = structured else {
        let body = match v {
            Value::String(s) => s.into_bytes(),
            other => other.to_string().into_bytes(),
        };
        return Ok(Mapped {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        });
    };
    let mut headers = Vec::new();
    headers_of(o, &mut headers);
    if let Some(Value::Array(cookies)) = o.get("cookies") {
        for c in cookies {
            headers.push(("set-cookie".into(), text(c)));
        }
    }
    if !headers.iter().any(|(n, _)| n == "content-type") {
        headers.push(("content-type".into(), "application/json".into()));
    }
    Ok(Mapped {
        status: status_of(&o["statusCode"])?,
        headers,
        body: body_of(o)?,
    })
}

/// Maps a 1.0 result.
pub fn v1(payload: &[u8]) -> Result<Mapped, Malformed> {
    let v: Value = serde_json::from_slice(payload)
        .map_err(|_| Malformed("the function's result is not JSON".into()))?;
    let o = v
        .as_object()
        .filter(|o| o.contains_key("statusCode"))
        .ok_or_else(|| Malformed("a 1.0 result must be an object with statusCode".into()))?;
    let mut headers = Vec::new();
    headers_of(o, &mut headers);
    if let Some(Value::Object(m)) = o.get("multiValueHeaders") {
        for (k, vs) in m {
            let name = k.to_ascii_lowercase();
            // `headers` and `multiValueHeaders` merge: a name in both takes the multi values.
            headers.retain(|(n, _)| *n != name);
            match vs {
                Value::Array(vs) => headers.extend(vs.iter().map(|v| (name.clone(), text(v)))),
                other => headers.push((name, text(other))),
            }
        }
    }
    Ok(Mapped {
        status: status_of(&o["statusCode"])?,
        headers,
        body: body_of(o)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_structured_and_plain_results() {
        let m = v2(br#"{"statusCode":201,"headers":{"X-A":"1","Content-Type":"text/plain"},"cookies":["a=1","b=2"],"body":"hi"}"#).unwrap();
        assert_eq!(m.status, 201);
        assert_eq!(m.body, b"hi");
        assert!(m.headers.contains(&("x-a".into(), "1".into())));
        assert!(m
            .headers
            .contains(&("content-type".into(), "text/plain".into())));
        assert_eq!(
            m.headers.iter().filter(|(n, _)| n == "set-cookie").count(),
            2
        );
        let m = v2(br#"{"statusCode":200,"body":"aGk=","isBase64Encoded":true}"#).unwrap();
        assert_eq!(m.body, b"hi");
        // Not structured: the JSON itself, 200 application/json.
        let m = v2(br#"{"message":"hello"}"#).unwrap();
        assert_eq!(
            (m.status, m.body.as_slice()),
            (200, br#"{"message":"hello"}"#.as_slice())
        );
        assert_eq!(
            m.headers,
            vec![("content-type".into(), "application/json".into())]
        );
        // A JSON string: its text.
        assert_eq!(
            v2(br#""Hello from Lambda!""#).unwrap().body,
            b"Hello from Lambda!"
        );
        assert_eq!(v2(b"42").unwrap().body, b"42");
        assert!(v2(b"not json").is_err());
        assert!(v2(br#"{"statusCode":"abc"}"#).is_err());
        assert!(v2(br#"{"statusCode":99}"#).is_err());
    }

    #[test]
    fn v1_needs_a_status_and_merges_multi_value_headers() {
        let m = v1(br#"{"statusCode":200,"headers":{"a":"x","b":"y"},"multiValueHeaders":{"a":["1","2"]},"body":"ok"}"#).unwrap();
        assert_eq!(m.status, 200);
        assert_eq!(
            m.headers,
            vec![
                ("b".into(), "y".into()),
                ("a".into(), "1".into()),
                ("a".into(), "2".into())
            ]
        );
        assert!(v1(br#"{"message":"no status"}"#).is_err());
        assert!(v1(br#""text""#).is_err());
    }

    #[test]
    fn invalid_headers_are_malformed() {
        let m = v2(br#"{"statusCode":200,"headers":{"bad name":"x"}}"#).unwrap();
        assert!(m.into_response().is_err());
        let m = v2(br#"{"statusCode":200,"headers":{"x":"a\nb"}}"#).unwrap();
        assert!(m.into_response().is_err());
    }
}
