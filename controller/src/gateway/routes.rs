//! HTTP API route keys and their selection, as API Gateway HTTP APIs do it: a route key is
//! `$default` or `METHOD /path` (`ANY` matches every method; a segment is a literal, a `{name}`
//! variable or, last, a greedy `{name+}` matching one or more segments). Of the routes matching
//! a request the most specific wins: compared segment by segment a literal beats a variable, a
//! variable beats a greedy one; then the longer path; then a named method beats `ANY`; `$default`
//! only when nothing else matches.
use std::cmp::Ordering;
use std::collections::HashMap;

use super::model::HttpRoute;

/// Methods a route key may name.
pub const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Var(String),
    Greedy(String),
}

impl Segment {
    /// How specific the segment is: higher wins.
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 2,
            Segment::Var(_) => 1,
            Segment::Greedy(_) => 0,
        }
    }
}

/// A parsed route key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteKey {
    Default,
    Path {
        /// `None`: `ANY`.
        method: Option<String>,
        segments: Vec<Segment>,
    },
}

/// Why a route key is refused (the message names the key and the rule).
pub fn parse(key: &str) -> Result<RouteKey, String> {
    if key == "$default" {
        return Ok(RouteKey::Default);
    }
    let bad = |why: &str| {
        format!("route key `{key}` {why}: write `$default` or `METHOD /path` (METHOD one of {}; segments literal, {{name}} or a last {{name+}})", METHODS.join(" "))
    };
    let (method, path) = key
        .split_once(' ')
        .ok_or_else(|| bad("has no method and path"))?;
    if !METHODS.contains(&method) {
        return Err(bad("has an unknown method"));
    }
    if !path.starts_with('/') {
        return Err(bad("has a path that does not start with /"));
    }
    if path.len() > 1024 {
        return Err(bad("is longer than 1024 characters"));
    }
    let parts: Vec<&str> = path[1..].split('/').filter(|s| !s.is_empty()).collect();
    let mut segments = Vec::with_capacity(parts.len());
    let mut names = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let segment = if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'))
        {
            let (name, greedy) = match inner.strip_suffix('+') {
                Some(n) => (n, true),
                None => (inner, false),
            };
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !valid {
                return Err(bad("has a malformed path variable"));
            }
            if names.contains(&name) {
                return Err(bad("names a path variable twice"));
            }
            names.push(name);
            if greedy {
                if i + 1 != parts.len() {
                    return Err(bad("has a greedy variable that is not the last segment"));
                }
                Segment::Greedy(name.to_string())
            } else {
                Segment::Var(name.to_string())
            }
        } else {
            if part.contains(['{', '}']) {
                return Err(bad("has a malformed path variable"));
            }
            Segment::Literal((*part).to_string())
        };
        segments.push(segment);
    }
    Ok(RouteKey::Path {
        method: (method != "ANY").then(|| method.to_string()),
        segments,
    })
}

impl RouteKey {
    /// The path variables when this key matches `method` and `path` (`/a/b`, not decoded).
    fn matches(&self, method: &str, path: &[&str]) -> Option<HashMap<String, String>> {
        let RouteKey::Path {
            method: want,
            segments,
        } = self
        else {
            return Some(HashMap::new());
        };
        if want.as_deref().is_some_and(|m| m != method) {
            return None;
        }
        let mut params = HashMap::new();
        for (i, segment) in segments.iter().enumerate() {
            match segment {
                Segment::Greedy(name) => {
                    if i >= path.len() {
                        return None;
                    }
                    params.insert(name.clone(), decode(&path[i..].join("/")));
                    return Some(params);
                }
                Segment::Literal(l) => {
                    if path.get(i) != Some(&l.as_str()) {
                        return None;
                    }
                }
                Segment::Var(name) => {
                    params.insert(name.clone(), decode(path.get(i)?));
                }
            }
        }
        (segments.len() == path.len()).then_some(params)
    }

    /// Orders two matching keys: `Greater` is more specific.
    fn specificity(&self, other: &RouteKey) -> Ordering {
        match (self, other) {
            (RouteKey::Default, RouteKey::Default) => Ordering::Equal,
            (RouteKey::Default, _) => Ordering::Less,
            (_, RouteKey::Default) => Ordering::Greater,
            (
                RouteKey::Path {
                    method: ma,
                    segments: a,
                },
                RouteKey::Path {
                    method: mb,
                    segments: b,
                },
            ) => {
                for (x, y) in a.iter().zip(b) {
                    match x.rank().cmp(&y.rank()) {
                        Ordering::Equal => {}
                        other => return other,
                    }
                }
                a.len().cmp(&b.len()).then(ma.is_some().cmp(&mb.is_some()))
            }
        }
    }
}

/// Percent-decodes a path segment (invalid escapes and non-UTF-8 kept as received).
fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| s.to_string())
}

/// The route serving `method path` and its path variables, if any.
pub fn select<'a>(
    routes: &'a [HttpRoute],
    method: &str,
    path: &str,
) -> Option<(&'a HttpRoute, HashMap<String, String>)> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut best: Option<(&HttpRoute, RouteKey, HashMap<String, String>)> = None;
    for route in routes {
        // Keys are checked when routes are added; one that no longer parses matches nothing.
        let Ok(key) = parse(&route.route_key) else {
            continue;
        };
        let Some(params) = key.matches(method, &parts) else {
            continue;
        };
        let better = match &best {
            None => true,
            Some((_, b, _)) => key.specificity(b) == Ordering::Greater,
        };
        if better {
            best = Some((route, key, params));
        }
    }
    best.map(|(r, _, p)| (r, p))
}

/// The path of a route key (`/items/{id}`), or the key itself for `$default`: payload 1.0's
/// `resource`.
pub fn resource(route_key: &str) -> &str {
    route_key
        .split_once(' ')
        .map(|(_, p)| p)
        .unwrap_or(route_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(key: &str) -> HttpRoute {
        HttpRoute {
            route_id: key.to_string(),
            route_key: key.to_string(),
            function_name: "f".into(),
            qualifier: String::new(),
            throttle: None,
            created_ms: 0,
        }
    }

    fn pick(keys: &[&str], method: &str, path: &str) -> Option<(String, HashMap<String, String>)> {
        let routes: Vec<HttpRoute> = keys.iter().map(|k| route(k)).collect();
        select(&routes, method, path).map(|(r, p)| (r.route_key.clone(), p))
    }

    #[test]
    fn keys_parse_and_refuse_with_reasons() {
        assert_eq!(parse("$default").unwrap(), RouteKey::Default);
        assert!(parse("GET /items/{id}").is_ok());
        assert!(parse("ANY /{proxy+}").is_ok());
        assert!(parse("GET /").is_ok());
        for (bad, why) in [
            ("GET", "no method and path"),
            ("FETCH /x", "unknown method"),
            ("GET x", "does not start with /"),
            ("GET /{a+}/b", "not the last segment"),
            ("GET /{}", "malformed"),
            ("GET /{a}/{a}", "twice"),
            ("GET /a{b}", "malformed"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn the_most_specific_route_wins() {
        let keys = [
            "$default",
            "ANY /{proxy+}",
            "GET /items/{id}",
            "GET /items/special",
            "ANY /items/{id}",
            "GET /items/{id}/{rest+}",
        ];
        let k = |m, p| pick(&keys, m, p).map(|(k, _)| k);
        assert_eq!(
            k("GET", "/items/special").as_deref(),
            Some("GET /items/special")
        );
        assert_eq!(k("GET", "/items/42").as_deref(), Some("GET /items/{id}"));
        assert_eq!(k("POST", "/items/42").as_deref(), Some("ANY /items/{id}"));
        assert_eq!(
            k("GET", "/items/42/a/b").as_deref(),
            Some("GET /items/{id}/{rest+}")
        );
        assert_eq!(k("DELETE", "/other/x").as_deref(), Some("ANY /{proxy+}"));
        // The greedy variable needs a segment: the root falls to $default.
        assert_eq!(k("GET", "/").as_deref(), Some("$default"));
        assert_eq!(pick(&["GET /a"], "GET", "/b"), None);
    }

    #[test]
    fn path_variables_are_decoded() {
        let (_, p) = pick(&["GET /items/{id}"], "GET", "/items/a%20b").unwrap();
        assert_eq!(p["id"], "a b");
        let (_, p) = pick(&["ANY /{proxy+}"], "PUT", "/x/y/z").unwrap();
        assert_eq!(p["proxy"], "x/y/z");
        assert_eq!(resource("GET /items/{id}"), "/items/{id}");
        assert_eq!(resource("$default"), "$default");
    }
}
