//! A request as the gateway saw it, in the shapes both payload formats are built from: the
//! method, the path (with a path-form id prefix already taken off) and query as received, the
//! headers in order with lower-cased names, the body, the client's address.
use axum::body::Bytes;

/// One received request.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    /// As received (percent-encoded), starting with `/`.
    pub path: String,
    /// As received, without `?`; "" when none.
    pub raw_query: String,
    /// Lower-cased names, in the order received (repeats kept).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub source_ip: String,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub protocol: String,
    /// The host the client addressed (without a port).
    pub domain_name: String,
    pub request_id: String,
    pub time_ms: u64,
}

impl HttpRequest {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query's pairs, percent-decoded, in order (a key without `=` has value "").
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.raw_query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect()
    }

    /// The cookies of every `Cookie` header, split at `;`.
    pub fn cookies(&self) -> Vec<String> {
        self.header_values("cookie")
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The body as the event carries it: text as is, anything else base64 (`isBase64Encoded`).
    /// Text is a UTF-8 body whose content type is textual (or absent).
    pub fn event_body(&self) -> Option<(String, bool)> {
        use base64::Engine;
        if self.body.is_empty() {
            return None;
        }
        let textual = self.header("content-type").is_none_or(is_text_type);
        match std::str::from_utf8(&self.body) {
            Ok(s) if textual => Some((s.to_string(), false)),
            _ => Some((
                base64::engine::general_purpose::STANDARD.encode(&self.body),
                true,
            )),
        }
    }

    /// The `User-Agent` header, or "".
    pub fn user_agent(&self) -> &str {
        self.header("user-agent").unwrap_or("")
    }
}

/// Whether a content type is text the event can carry unencoded.
fn is_text_type(content_type: &str) -> bool {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    t.starts_with("text/")
        || t.ends_with("+json")
        || t.ends_with("+xml")
        || matches!(
            t.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-www-form-urlencoded"
                | "application/graphql"
                | "application/yaml"
                | "application/x-yaml"
        )
}

/// Percent-decodes (invalid UTF-8 is replaced).
pub fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
pub(crate) fn sample() -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path: "/items/a%20b".into(),
        raw_query: "x=1&y=a%20b&x=2&flag".into(),
        headers: vec![
            ("host".into(), "abc.lambda-url.us-east-1.localhost".into()),
            ("user-agent".into(), "curl/8".into()),
            ("x-multi".into(), "one".into()),
            ("x-multi".into(), "two".into()),
            ("cookie".into(), "a=1; b=2".into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: Bytes::from_static(b"{\"k\":1}"),
        source_ip: "127.0.0.1".into(),
        protocol: "HTTP/1.1".into(),
        domain_name: "abc.lambda-url.us-east-1.localhost".into(),
        request_id: "req-1".into(),
        time_ms: 1_584_039_838_123,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_cookies_and_body() {
        let r = sample();
        assert_eq!(
            r.query_pairs(),
            vec![
                ("x".into(), "1".into()),
                ("y".into(), "a b".into()),
                ("x".into(), "2".into()),
                ("flag".into(), String::new())
            ]
        );
        assert_eq!(r.cookies(), vec!["a=1", "b=2"]);
        assert_eq!(r.event_body(), Some(("{\"k\":1}".into(), false)));
        let mut bin = sample();
        bin.headers.retain(|(n, _)| n != "content-type");
        bin.headers
            .push(("content-type".into(), "application/octet-stream".into()));
        bin.body = Bytes::from_static(&[0, 159, 146, 150]);
        assert_eq!(bin.event_body(), Some(("AJ+Slg==".into(), true)));
        // Text content, but not UTF-8: base64.
        let mut latin = sample();
        latin.headers.retain(|(n, _)| n != "content-type");
        latin.body = Bytes::from_static(&[0xe9]);
        assert_eq!(latin.event_body().map(|(_, b)| b), Some(true));
        let mut empty = sample();
        empty.body = Bytes::new();
        assert_eq!(empty.event_body(), None);
    }
}
