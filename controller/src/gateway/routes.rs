//! The selection of an HTTP API's route, as API Gateway HTTP APIs do it. A route key
//! (`lamina_proto::gateway::RouteKey`, the one grammar the API checks keys with) is `$default` or
//! `METHOD /path` (`ANY` matches every method; a segment is a literal, a `{name}` variable or,
//! last, a greedy `{name+}` matching one or more segments). Of the routes matching
//! a request the most specific wins: compared segment by segment a literal beats a variable, a
//! variable beats a greedy one; then the longer path; then a named method beats `ANY`; `$default`
//! only when nothing else matches.
use std::cmp::Ordering;
use std::collections::HashMap;

use super::model::{HttpRoute, RouteKey, Segment};

/// How specific a segment is: higher wins.
fn rank(s: &Segment) -> u8 {
    match s {
        Segment::Literal(_) => 2,
        Segment::Var(_) => 1,
        Segment::Greedy(_) => 0,
    }
}

/// The path variables when `key` matches `method` and `path` (`/a/b`, not decoded).
fn matches(key: &RouteKey, method: &str, path: &[&str]) -> Option<HashMap<String, String>> {
    let RouteKey::Path {
        method: want,
        segments,
    } = key
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
fn specificity(a: &RouteKey, b: &RouteKey) -> Ordering {
    match (a, b) {
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
                match rank(x).cmp(&rank(y)) {
                    Ordering::Equal => {}
                    other => return other,
                }
            }
            a.len().cmp(&b.len()).then(ma.is_some().cmp(&mb.is_some()))
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
        let Ok(key) = RouteKey::parse(&route.route_key) else {
            continue;
        };
        let Some(params) = matches(&key, method, &parts) else {
            continue;
        };
        let better = match &best {
            None => true,
            Some((_, b, _)) => specificity(&key, b) == Ordering::Greater,
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
