//! What the HTTP gateway serves, as stored and as the API core takes and returns it: function URL
//! configurations and HTTP APIs with their routes. Transport-neutral (the gRPC `Gateway` service,
//! the Lambda REST API and the data plane all use these); stored as JSON by
//! `store::GatewayStore`.
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
