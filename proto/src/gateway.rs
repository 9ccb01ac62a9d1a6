//! The HTTP gateway's domain types: function URL configurations and HTTP APIs with their routes,
//! as the controller stores them (JSON, `store::GatewayStore`) and its API core takes and returns
//! them. Transport-neutral: the gRPC `Gateway` service, the Lambda REST API and the gateway's
//! request path all use these.
use serde::{Deserialize, Serialize};

/// The region in every ARN and host name Lamina hands out.
pub const REGION: &str = "us-east-1";
/// The account in every ARN.
pub const ACCOUNT_ID: &str = "000000000000";

/// Who may call a function URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthType {
    /// Anyone.
    #[serde(rename = "NONE")]
    None,
    /// Requests signed with SigV4 (service `lambda`) by one of Lamina's access keys.
    #[serde(rename = "AWS_IAM")]
    AwsIam,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::None => "NONE",
            AuthType::AwsIam => "AWS_IAM",
        }
    }

    pub fn parse(s: &str) -> Option<AuthType> {
        match s {
            "NONE" => Some(AuthType::None),
            "AWS_IAM" => Some(AuthType::AwsIam),
            _ => None,
        }
    }
}

/// How a function URL answers: the whole response at once, or streamed as the function writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum InvokeMode {
    #[default]
    #[serde(rename = "BUFFERED")]
    Buffered,
    #[serde(rename = "RESPONSE_STREAM")]
    ResponseStream,
}

impl InvokeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            InvokeMode::Buffered => "BUFFERED",
            InvokeMode::ResponseStream => "RESPONSE_STREAM",
        }
    }

    pub fn parse(s: &str) -> Option<InvokeMode> {
        match s {
            "BUFFERED" => Some(InvokeMode::Buffered),
            "RESPONSE_STREAM" => Some(InvokeMode::ResponseStream),
            _ => None,
        }
    }
}

/// A function URL's CORS configuration (Lambda's `Cors`), answered by the gateway itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Cors {
    pub allow_credentials: bool,
    pub allow_headers: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_origins: Vec<String>,
    pub expose_headers: Vec<String>,
    /// Seconds; `None`: no `Access-Control-Max-Age`.
    pub max_age: Option<u32>,
}

/// One function URL: a function (unqualified = `$LATEST`, or an alias) reachable over HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionUrlConfig {
    /// 32 lowercase letters and digits.
    pub url_id: String,
    pub function_name: String,
    /// "" (`$LATEST`) or an alias name.
    pub qualifier: String,
    pub auth_type: AuthType,
    pub invoke_mode: InvokeMode,
    pub cors: Option<Cors>,
    pub created_ms: u64,
    pub last_modified_ms: u64,
}

impl FunctionUrlConfig {
    /// `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`.
    pub fn function_arn(&self) -> String {
        let mut arn = format!(
            "arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{}",
            self.function_name
        );
        if !self.qualifier.is_empty() {
            arn.push(':');
            arn.push_str(&self.qualifier);
        }
        arn
    }
}

/// The payload format of the events an HTTP API sends its functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum PayloadFormat {
    #[serde(rename = "1.0")]
    V1,
    #[default]
    #[serde(rename = "2.0")]
    V2,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::V1 => "1.0",
            PayloadFormat::V2 => "2.0",
        }
    }

    pub fn parse(s: &str) -> Option<PayloadFormat> {
        match s {
            "1.0" => Some(PayloadFormat::V1),
            "2.0" | "" => Some(PayloadFormat::V2),
            _ => None,
        }
    }
}

/// A route's throttle: a token bucket of `burst_limit` tokens refilled at `rate_limit` per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Throttle {
    pub rate_limit: f64,
    pub burst_limit: u32,
}

/// One route of an HTTP API: a route key and the function it invokes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRoute {
    /// 7 lowercase letters and digits.
    pub route_id: String,
    /// `METHOD /path` (`ANY` for any method; `{name}` and a last `{name+}` are path variables) or
    /// `$default`.
    pub route_key: String,
    pub function_name: String,
    /// "" (`$LATEST`), a version or an alias.
    pub qualifier: String,
    pub throttle: Option<Throttle>,
    pub created_ms: u64,
}

/// An HTTP API (API Gateway v2, protocol HTTP) with its routes, served at its `$default` stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpApi {
    /// 10 lowercase letters and digits.
    pub api_id: String,
    pub name: String,
    pub payload_format: PayloadFormat,
    pub routes: Vec<HttpRoute>,
    pub created_ms: u64,
}

/// Where clients reach the gateway: what `FunctionUrl` and `ApiEndpoint` say. The operator's
/// `--http-domain` (default `localhost`), and the scheme and port clients use (`http` and the
/// listener's port unless `--http-public-scheme`/`--http-public-port` say otherwise, e.g. behind a
/// TLS reverse proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicEndpoint {
    pub scheme: String,
    pub domain: String,
    /// `None`: the scheme's default port (not written in URLs).
    pub port: Option<u16>,
}

impl Default for PublicEndpoint {
    fn default() -> PublicEndpoint {
        PublicEndpoint {
            scheme: "http".into(),
            domain: "localhost".into(),
            port: Some(9690),
        }
    }
}

impl PublicEndpoint {
    fn origin(&self, host: &str) -> String {
        let default_port = match self.scheme.as_str() {
            "https" => 443,
            _ => 80,
        };
        match self.port {
            Some(p) if p != default_port => format!("{}://{host}:{p}", self.scheme),
            _ => format!("{}://{host}", self.scheme),
        }
    }

    /// The host name of a function URL: `<url_id>.lambda-url.<region>.<domain>`.
    pub fn url_host(&self, url_id: &str) -> String {
        format!("{url_id}.lambda-url.{REGION}.{}", self.domain)
    }

    /// The host name of an HTTP API: `<api_id>.execute-api.<region>.<domain>`.
    pub fn api_host(&self, api_id: &str) -> String {
        format!("{api_id}.execute-api.{REGION}.{}", self.domain)
    }

    /// `FunctionUrl`: `scheme://<url_id>.lambda-url.<region>.<domain>[:port]/`.
    pub fn function_url(&self, url_id: &str) -> String {
        format!("{}/", self.origin(&self.url_host(url_id)))
    }

    /// `ApiEndpoint`: `scheme://<api_id>.execute-api.<region>.<domain>[:port]`.
    pub fn api_endpoint(&self, api_id: &str) -> String {
        self.origin(&self.api_host(api_id))
    }
}

/// The methods a route key may name (`ANY`: every method).
pub const ROUTE_METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY",
];
/// The longest route key.
pub const MAX_ROUTE_KEY_LEN: usize = 512;

/// One segment of a route key's path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Literal(String),
    /// `{name}`: one segment.
    Var(String),
    /// `{name+}`: one or more segments (the last segment only).
    Greedy(String),
}

/// A route key: `$default`, or a method (`None`: `ANY`) and a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKey {
    Default,
    Path {
        method: Option<String>,
        segments: Vec<Segment>,
    },
}

/// What makes two route keys the same route: the method and the path with its variables' names
/// left out (`GET /a/{id}` and `GET /a/{x}` are one route, as in API Gateway).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteShape {
    Default,
    Route(String, Vec<ShapeSegment>),
}

/// A segment of a [`RouteShape`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ShapeSegment {
    Literal(String),
    Var,
    Greedy,
}

impl RouteKey {
    /// Parses `$default` or `METHOD /path` (METHOD one of [`ROUTE_METHODS`]; segments literal or
    /// `{name}` with `name` of letters, digits, `.`, `_`, `-`, the last possibly greedy
    /// `{name+}`; no empty segment). The error says what is wrong (without the key).
    pub fn parse(key: &str) -> Result<RouteKey, String> {
        if key == "$default" {
            return Ok(RouteKey::Default);
        }
        if key.len() > MAX_ROUTE_KEY_LEN {
            return Err(format!("longer than {MAX_ROUTE_KEY_LEN} characters"));
        }
        let Some((method, path)) = key.split_once(' ') else {
            return Err("it must be a method, one space and a path".into());
        };
        if !ROUTE_METHODS.contains(&method) {
            return Err(format!(
                "the method must be one of {}",
                ROUTE_METHODS.join(", ")
            ));
        }
        let Some(rest) = path.strip_prefix('/') else {
            return Err("the path must start with `/`".into());
        };
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        if !rest.is_empty() {
            let parts: Vec<&str> = rest.split('/').collect();
            let last = parts.len() - 1;
            for (i, part) in parts.iter().enumerate() {
                if part.is_empty() {
                    return Err(
                        "empty path segments (`//` or a trailing `/`) are not allowed".into(),
                    );
                }
                if let Some(inner) = part.strip_prefix('{') {
                    let Some(inner) = inner.strip_suffix('}') else {
                        return Err(format!(
                            "segment {part:?} opens a variable it does not close"
                        ));
                    };
                    let (name, greedy) = match inner.strip_suffix('+') {
                        Some(name) => (name, true),
                        None => (inner, false),
                    };
                    let valid = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
                    if !valid {
                        return Err(format!(
                            "variable names are letters, digits, `.`, `_` and `-`, got {part:?}"
                        ));
                    }
                    if greedy && i != last {
                        return Err(format!(
                            "only the last segment may be greedy, {part:?} is not last"
                        ));
                    }
                    if names.contains(&name) {
                        return Err(format!("variable `{name}` appears twice"));
                    }
                    names.push(name);
                    segments.push(if greedy {
                        Segment::Greedy(name.to_string())
                    } else {
                        Segment::Var(name.to_string())
                    });
                } else {
                    if let Some(c) = part.chars().find(|c| {
                        matches!(c, '{' | '}' | '?' | '#' | ' ' | '\\')
                            || c.is_control()
                            || !c.is_ascii()
                    }) {
                        return Err(format!(
                            "character {c:?} is not allowed in a literal segment ({part:?})"
                        ));
                    }
                    segments.push(Segment::Literal((*part).to_string()));
                }
            }
        }
        Ok(RouteKey::Path {
            method: (method != "ANY").then(|| method.to_string()),
            segments,
        })
    }

    /// The key without its variables' names: equal shapes are the same route.
    pub fn shape(&self) -> RouteShape {
        match self {
            RouteKey::Default => RouteShape::Default,
            RouteKey::Path { method, segments } => RouteShape::Route(
                method.clone().unwrap_or_else(|| "ANY".into()),
                segments
                    .iter()
                    .map(|s| match s {
                        Segment::Literal(l) => ShapeSegment::Literal(l.clone()),
                        Segment::Var(_) => ShapeSegment::Var,
                        Segment::Greedy(_) => ShapeSegment::Greedy,
                    })
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_keys_parse_and_refuse_with_reasons() {
        assert_eq!(RouteKey::parse("$default"), Ok(RouteKey::Default));
        assert_eq!(
            RouteKey::parse("GET /items/{id}"),
            Ok(RouteKey::Path {
                method: Some("GET".into()),
                segments: vec![Segment::Literal("items".into()), Segment::Var("id".into())],
            })
        );
        assert_eq!(
            RouteKey::parse("ANY /"),
            Ok(RouteKey::Path {
                method: None,
                segments: vec![],
            })
        );
        for (bad, why) in [
            ("GET", "a method, one space"),
            ("FETCH /x", "the method must be"),
            ("GET x", "start with `/`"),
            ("GET /x/", "empty path segments"),
            ("GET /{a+}/b", "only the last segment"),
            ("GET /{}", "variable names"),
            ("GET /{a}/{a}", "appears twice"),
            ("GET /a{b}", "not allowed in a literal"),
            ("GET /{id", "does not close"),
        ] {
            let e = RouteKey::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let long = format!("GET /{}", "a".repeat(MAX_ROUTE_KEY_LEN));
        assert!(RouteKey::parse(&long).unwrap_err().contains("longer than"));
        let shape = |k: &str| RouteKey::parse(k).unwrap().shape();
        assert_eq!(shape("GET /a/{id}"), shape("GET /a/{x}"));
        assert_ne!(shape("GET /a/{id}"), shape("GET /a/{id+}"));
        assert_ne!(shape("GET /a"), shape("ANY /a"));
    }
}
