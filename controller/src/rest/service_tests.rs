//! The dispatch by protocol and service, with fake services: which service a request head names,
//! the body limits, and the error shapes botocore parses for each protocol.
use std::sync::Mutex;

use futures::FutureExt;
use http_body_util::BodyExt;

use super::*;

/// What `Echo` was given: the operation, the form parameters and the body.
type Seen = (String, Vec<(String, String)>, Vec<u8>);

/// An AWS JSON or query service that serves `Echo` and records what it was given.
#[derive(Default)]
struct Echo {
    seen: Mutex<Vec<Seen>>,
}

impl Operations for Echo {
    fn serves(&self, operation: &str) -> bool {
        operation == "Echo"
    }

    fn body_limit(&self, operation: Option<&str>) -> usize {
        match operation {
            Some("Echo") => 1234,
            _ => 4321,
        }
    }

    fn call(&self, operation: String, request: OperationRequest) -> BoxFuture<'static, Response> {
        self.seen
            .lock()
            .unwrap()
            .push((operation, request.params, request.body.to_vec()));
        async { (StatusCode::OK, "echoed").into_response() }.boxed()
    }
}

fn rest_service(prefixes: &'static [&'static str], answer: &'static str) -> Service {
    Service {
        signing_name: "rest",
        protocol: Protocol::RestJson,
        prefixes,
        handler: Handler::Routes {
            router: Router::new().fallback(move || async move { answer }),
            body_limit: Arc::new(|_: &Method, path: &str| path.len()),
        },
    }
}

fn registry(json: Arc<Echo>, query: Arc<Echo>) -> Services {
    Services::new(vec![
        rest_service(&[], "default"),
        rest_service(&["/schedules"], "scheduler"),
        Service {
            signing_name: "sqs",
            protocol: Protocol::AwsJson1_0,
            prefixes: &["AmazonSQS"],
            handler: Handler::Operations(json),
        },
        Service {
            signing_name: "sns",
            protocol: Protocol::Query,
            prefixes: &[],
            handler: Handler::Operations(query),
        },
    ])
}

fn signed_for(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature=00"
    )
}

fn request(method: Method, uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

async fn dispatch(services: &Services, parts: http::request::Parts, body: &str) -> Response {
    let route = services.route(&parts.method, &parts.uri, &parts.headers);
    Services::dispatch(route, parts, Bytes::from(body.to_string())).await
}

async fn body_of(r: Response) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn paths_go_to_the_rest_service_of_their_prefix_or_the_default() {
    let s = registry(Arc::default(), Arc::default());
    let r = dispatch(&s, request(Method::GET, "/2015-03-31/functions", &[]), "").await;
    assert_eq!(body_of(r).await, "default");
    let r = dispatch(&s, request(Method::GET, "/schedules/x", &[]), "").await;
    assert_eq!(body_of(r).await, "scheduler");
    // A rest service's limit is its own (here: the path's length).
    let p = request(Method::GET, "/schedules/x", &[]);
    let route = s.route(&p.method, &p.uri, &p.headers);
    assert_eq!(route.protocol(), Protocol::RestJson);
    assert_eq!(route.body_limit(&p.method, "/schedules/x"), 12);
}

#[tokio::test]
async fn an_amz_target_goes_to_its_json_service_and_operation() {
    let json = Arc::new(Echo::default());
    let s = registry(Arc::clone(&json), Arc::default());
    let head = || {
        request(
            Method::POST,
            "/",
            &[
                ("x-amz-target", "AmazonSQS.Echo"),
                ("content-type", "application/x-amz-json-1.0"),
            ],
        )
    };
    let p = head();
    let route = s.route(&p.method, &p.uri, &p.headers);
    assert_eq!(route.protocol(), Protocol::AwsJson1_0);
    assert_eq!(route.body_limit(&p.method, "/"), 1234);
    let r = dispatch(&s, head(), r#"{"QueueName":"q"}"#).await;
    assert_eq!(r.status(), StatusCode::OK);
    let seen = json.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![("Echo".to_string(), vec![], br#"{"QueueName":"q"}"#.to_vec())]
    );
}

#[tokio::test]
async fn unknown_json_services_and_operations_get_unknown_operation_exception() {
    let json = Arc::new(Echo::default());
    let s = registry(Arc::clone(&json), Arc::default());
    for (target, content_type, mentions) in [
        (
            "AmazonSQS.SendMessage",
            "application/x-amz-json-1.0",
            "SendMessage",
        ),
        (
            "secretsmanager.GetSecretValue",
            "application/x-amz-json-1.1",
            "secretsmanager",
        ),
        ("NoDot", "application/x-amz-json-1.1", "NoDot"),
    ] {
        let p = request(
            Method::POST,
            "/",
            &[("x-amz-target", target), ("content-type", content_type)],
        );
        let r = dispatch(&s, p, "{}").await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{target}");
        assert_eq!(r.headers()["content-type"], content_type, "{target}");
        assert_eq!(r.headers()["x-amzn-errortype"], "UnknownOperationException");
        let body: serde_json::Value = serde_json::from_str(&body_of(r).await).unwrap();
        assert_eq!(body["__type"], "UnknownOperationException", "{target}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(mentions), "{target}: {message}");
    }
    assert!(
        json.seen.lock().unwrap().is_empty(),
        "nothing was dispatched"
    );
}

#[tokio::test]
async fn a_query_request_goes_to_the_service_it_is_signed_for() {
    let query = Arc::new(Echo::default());
    let s = registry(Arc::default(), Arc::clone(&query));
    let auth = signed_for("sns");
    let head = |uri: &str| {
        request(
            Method::POST,
            uri,
            &[
                (
                    "content-type",
                    "application/x-www-form-urlencoded; charset=utf-8",
                ),
                ("authorization", auth.as_str()),
            ],
        )
    };
    let p = head("/");
    let route = s.route(&p.method, &p.uri, &p.headers);
    assert_eq!(route.protocol(), Protocol::Query);
    assert_eq!(route.body_limit(&p.method, "/"), 4321);
    let r = dispatch(&s, head("/"), "Action=Echo&Name=a%20b&Version=2010-03-31").await;
    assert_eq!(r.status(), StatusCode::OK);
    let (op, params, _) = query.seen.lock().unwrap()[0].clone();
    assert_eq!(op, "Echo");
    assert!(params.contains(&("Name".to_string(), "a b".to_string())));

    // GET with the parameters in the query string is the query protocol too.
    let p = request(
        Method::GET,
        "/?Action=Echo&Version=2010-03-31",
        &[("authorization", auth.as_str())],
    );
    assert_eq!(dispatch(&s, p, "").await.status(), StatusCode::OK);
    assert_eq!(query.seen.lock().unwrap().len(), 2);
}

/// botocore's query parser reads `ErrorResponse/Error/Code` and `Message`.
fn query_error(xml: &str) -> (String, String) {
    #[derive(serde::Deserialize)]
    struct ErrorResponse {
        #[serde(rename = "Error")]
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        #[serde(rename = "Code")]
        code: String,
        #[serde(rename = "Message")]
        message: String,
    }
    let r: ErrorResponse = quick_xml::de::from_str(xml).unwrap();
    (r.error.code, r.error.message)
}

#[tokio::test]
async fn unknown_query_services_and_actions_get_invalid_action_in_xml() {
    let query = Arc::new(Echo::default());
    let s = registry(Arc::default(), Arc::clone(&query));
    let form = ("content-type", "application/x-www-form-urlencoded");
    // A service Lamina does not serve (signed for `sqs` in the query protocol: no handler).
    let auth = signed_for("sqs");
    let p = request(Method::POST, "/", &[form, ("authorization", auth.as_str())]);
    let r = dispatch(&s, p, "Action=ListQueues&Version=2012-11-05").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["content-type"], "text/xml");
    let (code, message) = query_error(&body_of(r).await);
    assert_eq!(code, "InvalidAction");
    assert!(message.contains("\"sqs\""), "{message}");
    // An action the service does not have; the message is escaped, not injected.
    let auth = signed_for("sns");
    let p = request(Method::POST, "/", &[form, ("authorization", auth.as_str())]);
    let r = dispatch(&s, p, "Action=%3CPublish%3E&Version=2010-03-31").await;
    let (code, message) = query_error(&body_of(r).await);
    assert_eq!(code, "InvalidAction");
    assert!(message.contains("<Publish>"), "{message}");
    // No action at all.
    let p = request(Method::POST, "/", &[form, ("authorization", auth.as_str())]);
    let r = dispatch(&s, p, "Version=2010-03-31").await;
    assert_eq!(query_error(&body_of(r).await).0, "MissingAction");
    assert!(
        query.seen.lock().unwrap().is_empty(),
        "nothing was dispatched"
    );
}

#[tokio::test]
async fn without_a_default_rest_service_a_path_is_an_unknown_operation() {
    let s = Services::new(vec![]);
    let r = dispatch(&s, request(Method::GET, "/anything", &[]), "").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["x-amzn-errortype"], "UnknownOperationException");
}

#[tokio::test]
async fn refusals_take_the_shape_of_each_protocol() {
    let message = "the signature does not match".to_string();
    let r = Protocol::RestJson.error(
        StatusCode::FORBIDDEN,
        "InvalidSignatureException",
        message.clone(),
    );
    assert_eq!(r.headers()["x-amzn-errortype"], "InvalidSignatureException");
    let body: serde_json::Value = serde_json::from_str(&body_of(r).await).unwrap();
    assert_eq!(body["Message"], message);

    let r = Protocol::AwsJson1_1.error(
        StatusCode::FORBIDDEN,
        "InvalidSignatureException",
        message.clone(),
    );
    assert_eq!(r.headers()["content-type"], "application/x-amz-json-1.1");
    let body: serde_json::Value = serde_json::from_str(&body_of(r).await).unwrap();
    assert_eq!(body["__type"], "InvalidSignatureException");

    let r = Protocol::Query.error(
        StatusCode::FORBIDDEN,
        "InvalidSignatureException",
        message.clone(),
    );
    assert!(r.headers().contains_key("x-amzn-requestid"));
    assert_eq!(
        query_error(&body_of(r).await),
        ("InvalidSignatureException".to_string(), message.clone())
    );

    let r = Protocol::RestXml.error(StatusCode::NOT_FOUND, "NoSuchBucket", message.clone());
    let xml = body_of(r).await;
    assert!(
        xml.starts_with("<Error><Code>NoSuchBucket</Code><Message>"),
        "{xml}"
    );
}

#[test]
fn the_signing_name_is_the_service_of_the_credential_scope() {
    let mut h = HeaderMap::new();
    assert_eq!(signing_name(&h), None);
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&signed_for("sns")).unwrap(),
    );
    assert_eq!(signing_name(&h), Some("sns"));
}
