//! CORS of function URLs, answered by the gateway as Lambda does: a preflight (`OPTIONS` with
//! `Origin` and `Access-Control-Request-Method`) never reaches the function; other responses to an
//! allowed origin get the `Access-Control-*` headers of the URL's configuration, replacing any
//! the function set.
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;

use super::model::Cors;

/// Whether a request is a CORS preflight.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key("origin")
        && headers.contains_key("access-control-request-method")
}

/// The value of `Access-Control-Allow-Origin` for `origin`, if it is allowed.
fn allowed_origin(cors: &Cors, origin: &str) -> Option<String> {
    let any = cors.allow_origins.iter().any(|o| o == "*");
    if cors
        .allow_origins
        .iter()
        .any(|o| o.eq_ignore_ascii_case(origin))
    {
        Some(origin.to_string())
    } else if any {
        // With credentials a browser refuses `*`: echo the origin instead.
        Some(if cors.allow_credentials {
            origin.to_string()
        } else {
            "*".to_string()
        })
    } else {
        None
    }
}

fn put(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// The answer to a preflight: 200, with the allow headers when the origin is allowed.
pub fn preflight(cors: &Cors, headers: &HeaderMap) -> Response {
    let mut out = Response::new(axum::body::Body::empty());
    *out.status_mut() = StatusCode::OK;
    let origin = headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let h = out.headers_mut();
    h.insert("vary", HeaderValue::from_static("Origin"));
    let Some(allowed) = allowed_origin(cors, origin) else {
        return out;
    };
    let method_ok = headers
        .get("access-control-request-method")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| {
            cors.allow_methods
                .iter()
                .any(|a| a == "*" || a.eq_ignore_ascii_case(m))
        });
    if !method_ok {
        return out;
    }
    put(h, "access-control-allow-origin", &allowed);
    put(
        h,
        "access-control-allow-methods",
        &cors.allow_methods.join(","),
    );
    if !cors.allow_headers.is_empty() {
        put(
            h,
            "access-control-allow-headers",
            &cors.allow_headers.join(","),
        );
    }
    if let Some(age) = cors.max_age {
        put(h, "access-control-max-age", &age.to_string());
    }
    if cors.allow_credentials {
        put(h, "access-control-allow-credentials", "true");
    }
    out
}

/// Adds the URL's CORS headers to a response to `request_headers`, replacing the function's.
pub fn decorate(cors: &Cors, request_headers: &HeaderMap, response: &mut HeaderMap) {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
        "access-control-max-age",
        "access-control-allow-credentials",
    ] {
        response.remove(name);
    }
    let Some(origin) = request_headers.get("origin").and_then(|v| v.to_str().ok()) else {
        return;
    };
    response.append("vary", HeaderValue::from_static("Origin"));
    let Some(allowed) = allowed_origin(cors, origin) else {
        return;
    };
    put(response, "access-control-allow-origin", &allowed);
    if !cors.expose_headers.is_empty() {
        put(
            response,
            "access-control-expose-headers",
            &cors.expose_headers.join(","),
        );
    }
    if cors.allow_credentials {
        put(response, "access-control-allow-credentials", "true");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors() -> Cors {
        Cors {
            allow_credentials: true,
            allow_headers: vec!["content-type".into(), "x-custom".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_origins: vec!["https://app.example".into()],
            expose_headers: vec!["x-request-id".into()],
            max_age: Some(600),
        }
    }

    fn req(origin: &str, method: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("origin", HeaderValue::from_str(origin).unwrap());
        if let Some(m) = method {
            h.insert(
                "access-control-request-method",
                HeaderValue::from_str(m).unwrap(),
            );
        }
        h
    }

    #[test]
    fn preflight_of_an_allowed_origin_gets_the_configuration() {
        let h = req("https://app.example", Some("POST"));
        assert!(is_preflight(&Method::OPTIONS, &h));
        assert!(!is_preflight(&Method::GET, &h));
        let r = preflight(&cors(), &h);
        let g = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            g("access-control-allow-origin").as_deref(),
            Some("https://app.example")
        );
        assert_eq!(
            g("access-control-allow-methods").as_deref(),
            Some("GET,POST")
        );
        assert_eq!(
            g("access-control-allow-headers").as_deref(),
            Some("content-type,x-custom")
        );
        assert_eq!(g("access-control-max-age").as_deref(), Some("600"));
        assert_eq!(
            g("access-control-allow-credentials").as_deref(),
            Some("true")
        );
        // Another origin, or a method not allowed: no allow headers.
        for h in [
            req("https://evil.example", Some("POST")),
            req("https://app.example", Some("DELETE")),
        ] {
            let r = preflight(&cors(), &h);
            assert!(r.headers().get("access-control-allow-origin").is_none());
        }
    }

    #[test]
    fn responses_get_the_urls_headers_instead_of_the_functions() {
        let mut resp = HeaderMap::new();
        resp.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        decorate(&cors(), &req("https://app.example", None), &mut resp);
        assert_eq!(resp["access-control-allow-origin"], "https://app.example");
        assert_eq!(resp["access-control-expose-headers"], "x-request-id");
        let mut resp = HeaderMap::new();
        resp.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        decorate(&cors(), &req("https://evil.example", None), &mut resp);
        assert!(resp.get("access-control-allow-origin").is_none());
        // A wildcard without credentials answers `*`.
        let open = Cors {
            allow_origins: vec!["*".into()],
            ..Cors::default()
        };
        let mut resp = HeaderMap::new();
        decorate(&open, &req("https://any.example", None), &mut resp);
        assert_eq!(resp["access-control-allow-origin"], "*");
    }
}
