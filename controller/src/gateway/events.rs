//! The events the gateway sends functions, exactly as Lambda's HTTP sources do: payload format 2.0
//! (function URLs and HTTP APIs) and 1.0 (HTTP APIs that ask for it). Fields without a value are
//! left out (2.0) or `null` (1.0), as AWS sends them.
use std::collections::{BTreeMap, HashMap};

use lamina_proto::time::apigw_request_time;
use serde_json::{json, Map, Value};

use super::model::ACCOUNT_ID;
use super::request::HttpRequest;

/// Who signed an `AWS_IAM` request (the event's `requestContext.authorizer.iam`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamCaller {
    pub access_key: String,
}

/// What a 2.0 event says beyond the request: the API (or URL) id, the route key, path variables
/// and the caller.
pub struct V2Context<'a> {
    pub api_id: &'a str,
    /// `$default` for function URLs, the matched route key for HTTP APIs.
    pub route_key: &'a str,
    pub path_parameters: Option<&'a HashMap<String, String>>,
    pub caller: Option<&'a IamCaller>,
    /// A `NONE` function URL: `requestContext.accountId` is `anonymous` (HTTP APIs and signed
    /// URL requests name the account).
    pub anonymous: bool,
}

/// Repeated headers joined with commas (2.0; `cookie` is left to `cookies`).
fn joined_headers(r: &HttpRequest, skip_cookie: bool) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in &r.headers {
        if skip_cookie && name == "cookie" {
            continue;
        }
        out.entry(name.clone())
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    out
}

fn domain_prefix(domain: &str) -> &str {
    domain.split('.').next().unwrap_or(domain)
}

/// A payload format 2.0 event.
pub fn v2(r: &HttpRequest, c: &V2Context<'_>) -> Value {
    let mut event = Map::new();
    event.insert("version".into(), json!("2.0"));
    event.insert("routeKey".into(), json!(c.route_key));
    event.insert("rawPath".into(), json!(r.path));
    event.insert("rawQueryString".into(), json!(r.raw_query));
    let cookies = r.cookies();
    if !cookies.is_empty() {
        event.insert("cookies".into(), json!(cookies));
    }
    event.insert("headers".into(), json!(joined_headers(r, true)));
    let pairs = r.query_pairs();
    if !pairs.is_empty() {
        let mut q: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in pairs {
            q.entry(k)
                .and_modify(|old| {
                    old.push(',');
                    old.push_str(&v);
                })
                .or_insert(v);
        }
        event.insert("queryStringParameters".into(), json!(q));
    }
    if let Some(p) = c.path_parameters.filter(|p| !p.is_empty()) {
        event.insert("pathParameters".into(), json!(p));
    }
    let mut context = json!({
        "accountId": if c.anonymous { "anonymous" } else { ACCOUNT_ID },
        "apiId": c.api_id,
        "domainName": r.domain_name,
        "domainPrefix": domain_prefix(&r.domain_name),
        "http": {
            "method": r.method,
            "path": r.path,
            "protocol": r.protocol,
            "sourceIp": r.source_ip,
            "userAgent": r.user_agent(),
        },
        "requestId": r.request_id,
        "routeKey": c.route_key,
        "stage": "$default",
        "time": apigw_request_time(r.time_ms),
        "timeEpoch": r.time_ms,
    });
    if let Some(caller) = c.caller {
        context["authorizer"] = json!({
            "iam": {
                "accessKey": caller.access_key,
                "accountId": ACCOUNT_ID,
                "callerId": caller.access_key,
                "cognitoIdentity": null,
                "principalOrgId": null,
                "userArn": format!("arn:aws:iam::{ACCOUNT_ID}:user/{}", caller.access_key),
                "userId": caller.access_key,
            }
        });
    }
    event.insert("requestContext".into(), context);
    match r.event_body() {
        Some((body, b64)) => {
            event.insert("body".into(), json!(body));
            event.insert("isBase64Encoded".into(), json!(b64));
        }
        None => {
            event.insert("isBase64Encoded".into(), json!(false));
        }
    }
    Value::Object(event)
}

/// A payload format 1.0 event (HTTP APIs).
pub fn v1(
    r: &HttpRequest,
    api_id: &str,
    route_key: &str,
    path_parameters: &HashMap<String, String>,
) -> Value {
    let mut single: BTreeMap<String, String> = BTreeMap::new();
    let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &r.headers {
        // 1.0's single-value map keeps the last value of a repeated header.
        single.insert(name.clone(), value.clone());
        multi.entry(name.clone()).or_default().push(value.clone());
    }
    let pairs = r.query_pairs();
    let (query, multi_query) = if pairs.is_empty() {
        (Value::Null, Value::Null)
    } else {
        let mut q: BTreeMap<String, String> = BTreeMap::new();
        let mut mq: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in pairs {
            q.insert(k.clone(), v.clone());
            mq.entry(k).or_default().push(v);
        }
        (json!(q), json!(mq))
    };
    let resource = super::routes::resource(route_key);
    let resource = if resource == "$default" {
        r.path.as_str()
    } else {
        resource
    };
    let (body, b64) = match r.event_body() {
        Some((b, e)) => (json!(b), e),
        None => (Value::Null, false),
    };
    json!({
        "version": "1.0",
        "resource": resource,
        "path": r.path,
        "httpMethod": r.method,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": api_id,
            "authorizer": null,
            "domainName": r.domain_name,
            "domainPrefix": domain_prefix(&r.domain_name),
            "extendedRequestId": r.request_id,
            "httpMethod": r.method,
            "identity": {
                "accessKey": null,
                "accountId": null,
                "caller": null,
                "cognitoAuthenticationProvider": null,
                "cognitoAuthenticationType": null,
                "cognitoIdentityId": null,
                "cognitoIdentityPoolId": null,
                "principalOrgId": null,
                "sourceIp": r.source_ip,
                "user": null,
                "userAgent": r.user_agent(),
                "userArn": null,
            },
            "path": r.path,
            "protocol": r.protocol,
            "requestId": r.request_id,
            "requestTime": apigw_request_time(r.time_ms),
            "requestTimeEpoch": r.time_ms,
            "resourceId": route_key,
            "resourcePath": resource,
            "stage": "$default",
        },
        "pathParameters": if path_parameters.is_empty() { Value::Null } else { json!(path_parameters) },
        "stageVariables": null,
        "body": body,
        "isBase64Encoded": b64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::request::sample;

    #[test]
    fn v2_event_has_the_function_url_fields() {
        let r = sample();
        let caller = IamCaller {
            access_key: "AKID".into(),
        };
        let e = v2(
            &r,
            &V2Context {
                api_id: "abc",
                route_key: "$default",
                path_parameters: None,
                caller: Some(&caller),
                anonymous: false,
            },
        );
        assert_eq!(e["version"], "2.0");
        assert_eq!(e["routeKey"], "$default");
        assert_eq!(e["rawPath"], "/items/a%20b");
        assert_eq!(e["rawQueryString"], "x=1&y=a%20b&x=2&flag");
        assert_eq!(e["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(e["headers"]["x-multi"], "one,two");
        assert!(e["headers"].get("cookie").is_none());
        assert_eq!(e["queryStringParameters"]["x"], "1,2");
        assert_eq!(e["queryStringParameters"]["y"], "a b");
        assert!(e.get("pathParameters").is_none());
        let c = &e["requestContext"];
        assert_eq!(c["accountId"], ACCOUNT_ID);
        assert_eq!(c["domainPrefix"], "abc");
        assert_eq!(c["http"]["method"], "POST");
        assert_eq!(c["http"]["userAgent"], "curl/8");
        assert_eq!(c["time"], "12/Mar/2020:19:03:58 +0000");
        assert_eq!(c["timeEpoch"], 1_584_039_838_123u64);
        assert_eq!(c["authorizer"]["iam"]["accessKey"], "AKID");
        assert_eq!(e["body"], "{\"k\":1}");
        assert_eq!(e["isBase64Encoded"], false);
        // Anonymous callers: no authorizer.
        let e = v2(
            &r,
            &V2Context {
                api_id: "abc",
                route_key: "$default",
                path_parameters: None,
                caller: None,
                anonymous: true,
            },
        );
        assert_eq!(e["requestContext"]["accountId"], "anonymous");
        assert!(e["requestContext"].get("authorizer").is_none());
    }

    #[test]
    fn v1_event_has_multi_value_maps() {
        let r = sample();
        let params = HashMap::from([("id".to_string(), "a b".to_string())]);
        let e = v1(&r, "api1234567", "POST /items/{id}", &params);
        assert_eq!(e["resource"], "/items/{id}");
        assert_eq!(e["path"], "/items/a%20b");
        assert_eq!(e["httpMethod"], "POST");
        assert_eq!(e["headers"]["x-multi"], "two");
        assert_eq!(e["multiValueHeaders"]["x-multi"], json!(["one", "two"]));
        assert_eq!(e["queryStringParameters"]["x"], "2");
        assert_eq!(e["multiValueQueryStringParameters"]["x"], json!(["1", "2"]));
        assert_eq!(e["pathParameters"]["id"], "a b");
        assert_eq!(e["stageVariables"], Value::Null);
        assert_eq!(e["requestContext"]["identity"]["sourceIp"], "127.0.0.1");
        assert_eq!(e["requestContext"]["resourcePath"], "/items/{id}");
        assert_eq!(e["isBase64Encoded"], false);
    }
}
