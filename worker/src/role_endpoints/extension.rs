//! The AWS Parameters and Secrets Lambda Extension's local HTTP interface, at
//! `http://localhost:2773` inside a sandbox with an execution role:
//!
//! - `GET /secretsmanager/get?secretId=ID[&versionId=V][&versionStage=S]` answers exactly what
//!   Secrets Manager's `GetSecretValue` answers;
//! - `GET /systemsmanager/parameters/get?name=N[&withDecryption=true][&version=V|&label=L]`
//!   answers what SSM's `GetParameter` answers (`name:version` / `name:label`, as the extension).
//!
//! Every request needs the header `X-Aws-Parameters-Secrets-Token` equal to the sandbox's
//! `AWS_SESSION_TOKEN` (missing: 401, another value: 403). The call goes to the controller
//! signed with the sandbox's session credentials, so the role's policy decides. Successful
//! answers are cached per sandbox as the extension does: `PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED`
//! (default true), `PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE` (items, default 1000, at most 1000),
//! `SECRETS_MANAGER_TTL` and `SSM_PARAMETER_STORE_TTL` (seconds, default 300, at most 300; 0: not
//! cached), read from the function's environment.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::forward::{error, full, Refusal};
use super::serve::Body;
use super::sign::sign_request;
use super::{SandboxCredentials, Upstream};

/// The header that carries the sandbox's session token.
pub const TOKEN_HEADER: &str = "x-aws-parameters-secrets-token";
/// The largest answer read from the controller (a secret is at most 64 KB).
const MAX_ANSWER_BYTES: usize = 1 << 20;
const DEFAULT_TTL: Duration = Duration::from_secs(300);
const DEFAULT_CACHE_SIZE: usize = 1000;

/// The extension's settings, from the function's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub cache_enabled: bool,
    pub cache_size: usize,
    pub secrets_ttl: Duration,
    pub parameters_ttl: Duration,
}

impl Settings {
    /// Values that do not parse (or are out of range) take the defaults.
    pub fn from_env(env: &BTreeMap<String, String>) -> Settings {
        let num = |k: &str, max: u64, default: u64| -> u64 {
            env.get(k)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n <= max)
                .unwrap_or(default)
        };
        Settings {
            cache_enabled: !env
                .get("PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("false")),
            cache_size: num(
                "PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE",
                1000,
                DEFAULT_CACHE_SIZE as u64,
            ) as usize,
            secrets_ttl: Duration::from_secs(num(
                "SECRETS_MANAGER_TTL",
                300,
                DEFAULT_TTL.as_secs(),
            )),
            parameters_ttl: Duration::from_secs(num(
                "SSM_PARAMETER_STORE_TTL",
                300,
                DEFAULT_TTL.as_secs(),
            )),
        }
    }
}

/// A bounded cache of answers, oldest out first.
#[derive(Default)]
struct Cache {
    entries: HashMap<String, (Instant, Bytes)>,
    order: VecDeque<String>,
}

impl Cache {
    fn get(&mut self, key: &str, ttl: Duration) -> Option<Bytes> {
        match self.entries.get(key) {
            Some((at, body)) if at.elapsed() < ttl => Some(body.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: String, body: Bytes, size: usize) {
        if size == 0 {
            return;
        }
        if self
            .entries
            .insert(key.clone(), (Instant::now(), body))
            .is_none()
        {
            self.order.push_back(key);
        }
        while self.entries.len() > size {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
        self.order.retain(|k| self.entries.contains_key(k));
    }
}

/// One upstream call the extension makes.
struct Call {
    service: &'static str,
    target: &'static str,
    body: serde_json::Value,
    cache_key: String,
    ttl: Duration,
}

pub struct Extension {
    creds: SandboxCredentials,
    upstream: Arc<dyn Upstream>,
    settings: Settings,
    cache: Mutex<Cache>,
    /// Calls that reached the controller (what the cache saved is visible in tests).
    upstream_calls: std::sync::atomic::AtomicU64,
}

fn query(uri: &http::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8()
                    .ok()
                    .map(|c| c.into_owned())
            };
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

fn bad_request(message: &str) -> Refusal {
    Refusal::new(
        http::StatusCode::BAD_REQUEST,
        "ValidationException",
        message,
    )
}

impl Extension {
    pub fn new(
        creds: SandboxCredentials,
        upstream: Arc<dyn Upstream>,
        env: &BTreeMap<String, String>,
    ) -> Extension {
        Extension {
            creds,
            upstream,
            settings: Settings::from_env(env),
            cache: Mutex::default(),
            upstream_calls: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn upstream_calls(&self) -> u64 {
        self.upstream_calls
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What a request asks for, or the answer refusing it.
    fn call_for(&self, req: &http::Request<Incoming>) -> Result<Call, Refusal> {
        if req.method() != http::Method::GET {
            return Err(Refusal::new(
                http::StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the parameters and secrets extension serves GET only",
            ));
        }
        let q = query(req.uri());
        let get = |k: &str| q.get(k).filter(|v| !v.is_empty()).cloned();
        match req.uri().path().trim_end_matches('/') {
            "/secretsmanager/get" => {
                let id = get("secretId").ok_or_else(|| {
                    bad_request("secretId is required: /secretsmanager/get?secretId=NAME")
                })?;
                let mut body = serde_json::json!({ "SecretId": id });
                if let Some(v) = get("versionId") {
                    body["VersionId"] = v.into();
                }
                if let Some(s) = get("versionStage") {
                    body["VersionStage"] = s.into();
                }
                Ok(Call {
                    service: "secretsmanager",
                    target: "secretsmanager.GetSecretValue",
                    cache_key: format!("secret\0{body}"),
                    body,
                    ttl: self.settings.secrets_ttl,
                })
            }
            "/systemsmanager/parameters/get" => {
                let name = get("name").ok_or_else(|| {
                    bad_request("name is required: /systemsmanager/parameters/get?name=NAME")
                })?;
                let name = match (get("version"), get("label")) {
                    (Some(_), Some(_)) => {
                        return Err(bad_request("give version or label, not both"))
                    }
                    (Some(v), None) | (None, Some(v)) => format!("{name}:{v}"),
                    (None, None) => name,
                };
                let decrypt = get("withDecryption").is_some_and(|v| v.eq_ignore_ascii_case("true"));
                let body = serde_json::json!({ "Name": name, "WithDecryption": decrypt });
                Ok(Call {
                    service: "ssm",
                    target: "AmazonSSM.GetParameter",
                    cache_key: format!("parameter\0{body}"),
                    body,
                    ttl: self.settings.parameters_ttl,
                })
            }
            _ => Err(Refusal::new(
                http::StatusCode::NOT_FOUND,
                "NotFound",
                "the extension serves /secretsmanager/get and /systemsmanager/parameters/get",
            )),
        }
    }

    pub async fn handle(&self, req: http::Request<Incoming>) -> http::Response<Body> {
        match req.headers().get(TOKEN_HEADER) {
            None => return error(
                http::StatusCode::UNAUTHORIZED,
                "UnauthorizedException",
                "X-Aws-Parameters-Secrets-Token is required: send the sandbox's AWS_SESSION_TOKEN",
            ),
            Some(t)
                if !lamina_proto::auth::constant_time_eq(
                    t.as_bytes(),
                    self.creds.session_token().as_bytes(),
                ) =>
            {
                return error(
                    http::StatusCode::FORBIDDEN,
                    "ForbiddenException",
                    "X-Aws-Parameters-Secrets-Token is not this sandbox's AWS_SESSION_TOKEN",
                )
            }
            Some(_) => {}
        }
        let call = match self.call_for(&req) {
            Ok(c) => c,
            Err(refusal) => return refusal.response(),
        };
        let caching = self.settings.cache_enabled && !call.ttl.is_zero();
        if caching {
            let cached = self
                .cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&call.cache_key, call.ttl);
            if let Some(body) = cached {
                return json(http::StatusCode::OK, body);
            }
        }
        let (status, body) = match self.call_upstream(&call).await {
            Ok(answer) => answer,
            Err(refusal) => return refusal.response(),
        };
        if caching && status == http::StatusCode::OK {
            self.cache.lock().unwrap_or_else(|p| p.into_inner()).put(
                call.cache_key,
                body.clone(),
                self.settings.cache_size,
            );
        }
        json(status, body)
    }

    async fn call_upstream(&self, call: &Call) -> Result<(http::StatusCode, Bytes), Refusal> {
        // Both services speak AWS JSON 1.1.
        let content_type = "application/x-amz-json-1.1";
        let mut req = http::Request::post("/")
            .header(http::header::HOST, self.upstream.authority())
            .header(http::header::CONTENT_TYPE, content_type)
            .header("x-amz-target", call.target)
            .body(Bytes::from(call.body.to_string()))
            .map_err(|e| {
                Refusal::new(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    e.to_string(),
                )
            })?;
        sign_request(&mut req, &self.creds, call.service, SystemTime::now()).map_err(|e| {
            Refusal::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                e.to_string(),
            )
        })?;
        // Unsigned and unique per call: two identical calls within one second are not replays.
        if let Ok(id) = http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            req.headers_mut().insert("amz-sdk-invocation-id", id);
        }
        let (parts, body) = req.into_parts();
        self.upstream_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let resp = self
            .upstream
            .send(http::Request::from_parts(parts, Full::new(body)))
            .await
            .map_err(|e| {
                Refusal::new(
                    http::StatusCode::BAD_GATEWAY,
                    "ServiceUnavailableException",
                    e.to_string(),
                )
            })?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| {
                Refusal::new(
                    http::StatusCode::BAD_GATEWAY,
                    "ServiceUnavailableException",
                    format!("cannot read the controller's answer: {e}"),
                )
            })?
            .to_bytes();
        Ok((status, body))
    }
}

fn json(status: http::StatusCode, body: Bytes) -> http::Response<Body> {
    let mut resp = http::Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_the_extensions_variables() {
        let mut env = BTreeMap::new();
        assert_eq!(
            Settings::from_env(&env),
            Settings {
                cache_enabled: true,
                cache_size: 1000,
                secrets_ttl: Duration::from_secs(300),
                parameters_ttl: Duration::from_secs(300),
            }
        );
        env.insert(
            "PARAMETERS_SECRETS_EXTENSION_CACHE_ENABLED".into(),
            "FALSE".into(),
        );
        env.insert("PARAMETERS_SECRETS_EXTENSION_CACHE_SIZE".into(), "5".into());
        env.insert("SECRETS_MANAGER_TTL".into(), "0".into());
        env.insert("SSM_PARAMETER_STORE_TTL".into(), "9999".into());
        let s = Settings::from_env(&env);
        assert!(!s.cache_enabled);
        assert_eq!(s.cache_size, 5);
        assert_eq!(s.secrets_ttl, Duration::ZERO);
        assert_eq!(
            s.parameters_ttl,
            Duration::from_secs(300),
            "out of range: default"
        );
    }

    #[test]
    fn the_cache_expires_and_keeps_its_size() {
        let mut c = Cache::default();
        c.put("a".into(), Bytes::from_static(b"1"), 2);
        c.put("b".into(), Bytes::from_static(b"2"), 2);
        c.put("c".into(), Bytes::from_static(b"3"), 2);
        assert!(c.get("a", Duration::from_secs(60)).is_none(), "oldest out");
        assert_eq!(c.get("c", Duration::from_secs(60)).unwrap(), "3");
        assert!(c.get("b", Duration::ZERO).is_none(), "expired");
        c.put("d".into(), Bytes::from_static(b"4"), 0);
        assert!(
            c.get("d", Duration::from_secs(60)).is_none(),
            "size 0: nothing kept"
        );
    }
}
