use std::collections::BTreeMap;
use std::sync::Arc;

use lamina_proto::domain::{Alias, LATEST};
use tonic::Code;

use super::*;
use crate::store::{RocksStore, SettingsStore};
use crate::test_support::function;
use crate::{Controller, ControllerConfig};

struct Fixture {
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
}

/// A context on a fresh store with function `f` and its alias `live` (on $LATEST).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), 100).unwrap();
    store.create_function(&function("f"), b"zip").unwrap();
    store
        .put_alias(&Alias {
            function_name: "f".into(),
            name: "live".into(),
            function_version: LATEST.into(),
            additional_version_weights: BTreeMap::new(),
            description: String::new(),
            revision_id: "a1".into(),
            last_modified_ms: 1,
        })
        .unwrap();
    let config = ControllerConfig::new(dir.path().to_path_buf());
    let controller = Controller::with_store(&config, Arc::new(store));
    Fixture {
        shared: Arc::clone(&controller.shared),
        _dir: dir,
    }
}

fn code(e: ApiError) -> (Code, String) {
    let s = tonic::Status::from(e);
    (s.code(), s.message().to_string())
}

fn new_url(qualifier: &str) -> NewFunctionUrl {
    NewFunctionUrl {
        function_name: "f".into(),
        qualifier: qualifier.into(),
        auth_type: Some(AuthType::None),
        ..Default::default()
    }
}

#[tokio::test]
async fn function_urls_are_created_updated_listed_and_deleted() {
    let fx = fixture();
    let s = &fx.shared;
    let url = create_function_url(s, new_url("")).await.unwrap();
    assert_eq!(url.url_id.len(), 32);
    assert!(url
        .url_id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    assert_eq!(url.invoke_mode, InvokeMode::Buffered);
    assert_eq!(
        s.store.function_url_in_memory(&url.url_id).as_deref(),
        Some(&url)
    );
    let (c, m) = code(create_function_url(s, new_url("")).await.unwrap_err());
    assert_eq!(c, Code::AlreadyExists, "{m}");
    let live = create_function_url(
        s,
        NewFunctionUrl {
            invoke_mode: Some(InvokeMode::ResponseStream),
            ..new_url("live")
        },
    )
    .await
    .unwrap();
    assert_ne!(live.url_id, url.url_id);

    let got = get_function_url(s, "f", "live").await.unwrap();
    assert_eq!(got, live);
    let updated = update_function_url(
        s,
        FunctionUrlUpdate {
            function_name: "f".into(),
            qualifier: String::new(),
            auth_type: Some(AuthType::AwsIam),
            cors: Some(Some(Cors {
                allow_origins: vec!["https://a.example".into()],
                allow_methods: vec!["GET".into(), "*".into()],
                max_age: Some(300),
                ..Default::default()
            })),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(updated.url_id, url.url_id, "the URL stays");
    assert_eq!(updated.auth_type, AuthType::AwsIam);
    assert_eq!(updated.invoke_mode, InvokeMode::Buffered, "kept");
    assert_eq!(updated.created_ms, url.created_ms);
    let removed = update_function_url(
        s,
        FunctionUrlUpdate {
            function_name: "f".into(),
            cors: Some(None),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(removed.cors, None);
    assert_eq!(removed.auth_type, AuthType::AwsIam, "kept");

    let listed = list_function_urls(s, "f").await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|u| u.qualifier.as_str())
            .collect::<Vec<_>>(),
        ["", "live"]
    );
    delete_function_url(s, "f", "live").await.unwrap();
    let (c, m) = code(delete_function_url(s, "f", "live").await.unwrap_err());
    assert_eq!(
        (c, m.as_str()),
        (
            Code::NotFound,
            "alias `live` of function `f` has no function URL: create one with \
             CreateFunctionUrlConfig (`fnctl url create`)"
        )
    );
    assert!(s.store.function_url_in_memory(&live.url_id).is_none());
    let (c, _) = code(get_function_url(s, "f", "live").await.unwrap_err());
    assert_eq!(c, Code::NotFound);
}

#[tokio::test]
async fn function_url_requests_are_checked() {
    let fx = fixture();
    let s = &fx.shared;
    let cases: Vec<(NewFunctionUrl, Code, &str)> = vec![
        (
            NewFunctionUrl {
                auth_type: None,
                ..new_url("")
            },
            Code::InvalidArgument,
            "AuthType is required",
        ),
        (
            new_url("$LATEST"),
            Code::InvalidArgument,
            "takes no qualifier",
        ),
        (new_url("3"), Code::InvalidArgument, "create an alias"),
        (
            new_url("bad alias"),
            Code::InvalidArgument,
            "invalid alias name",
        ),
        (new_url("beta"), Code::NotFound, "has no alias `beta`"),
        (
            NewFunctionUrl {
                function_name: "nope".into(),
                ..new_url("")
            },
            Code::NotFound,
            "function `nope` not found",
        ),
        (
            NewFunctionUrl {
                cors: Some(Cors {
                    max_age: Some(86_401),
                    ..Default::default()
                }),
                ..new_url("")
            },
            Code::InvalidArgument,
            "Cors.MaxAge must be 0..86400",
        ),
        (
            NewFunctionUrl {
                cors: Some(Cors {
                    allow_origins: vec!["o".into(); 101],
                    ..Default::default()
                }),
                ..new_url("")
            },
            Code::InvalidArgument,
            "at most 100 items",
        ),
        (
            NewFunctionUrl {
                cors: Some(Cors {
                    allow_origins: vec!["o".repeat(254)],
                    ..Default::default()
                }),
                ..new_url("")
            },
            Code::InvalidArgument,
            "1..253 characters",
        ),
        (
            NewFunctionUrl {
                cors: Some(Cors {
                    allow_methods: vec!["FETCH".into()],
                    ..Default::default()
                }),
                ..new_url("")
            },
            Code::InvalidArgument,
            "HTTP methods",
        ),
    ];
    for (req, want, text) in cases {
        let (c, m) = code(create_function_url(s, req.clone()).await.unwrap_err());
        assert_eq!(c, want, "{req:?}: {m}");
        assert!(m.contains(text), "{req:?}: {m}");
    }
    assert!(parse_auth_type("PUBLIC").is_err());
    assert_eq!(parse_auth_type("").unwrap(), None);
    assert_eq!(
        parse_invoke_mode("RESPONSE_STREAM").unwrap(),
        Some(InvokeMode::ResponseStream)
    );
    assert!(parse_invoke_mode("STREAM").is_err());
    assert_eq!(parse_payload_format("").unwrap(), PayloadFormat::V2);
    assert!(parse_payload_format("3.0").is_err());
}

#[test]
fn route_keys() {
    for good in [
        "$default",
        "GET /",
        "ANY /{proxy+}",
        "GET /items/{id}",
        "POST /items/{id}/parts/{part.no}",
        "DELETE /a-b_c.d~e",
        "OPTIONS /x/{rest+}",
    ] {
        assert!(check_route_key(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "$DEFAULT",
        "GET",
        "get /x",
        "FETCH /x",
        "GET x",
        "GET  /x",
        "GET /x/",
        "GET //x",
        "GET /{proxy+}/x",
        "GET /{}",
        "GET /{a b}",
        "GET /{id",
        "GET /{id}/{id}",
        "GET /a{id}",
        "GET /x?y",
    ] {
        assert!(check_route_key(bad).is_err(), "{bad}");
    }
    assert_eq!(
        check_route_key("GET /a/{id}").unwrap(),
        check_route_key("GET /a/{x}").unwrap()
    );
    assert_ne!(
        check_route_key("GET /a/{id}").unwrap(),
        check_route_key("GET /a/{id+}").unwrap()
    );
}

#[tokio::test]
async fn http_apis_and_routes() {
    let fx = fixture();
    let s = &fx.shared;
    let api = create_http_api(s, "shop".into(), PayloadFormat::V1)
        .await
        .unwrap();
    assert_eq!(api.api_id.len(), 10);
    assert!(api.routes.is_empty());
    let (c, _) = code(
        create_http_api(s, String::new(), PayloadFormat::V2)
            .await
            .unwrap_err(),
    );
    assert_eq!(c, Code::InvalidArgument);
    let (c, _) = code(
        create_http_api(s, "x".repeat(129), PayloadFormat::V2)
            .await
            .unwrap_err(),
    );
    assert_eq!(c, Code::InvalidArgument);

    let route = |key: &str, qualifier: &str| NewHttpRoute {
        api_id: api.api_id.clone(),
        route_key: key.into(),
        function_name: "f".into(),
        qualifier: qualifier.into(),
        throttle: None,
    };
    let items = create_http_route(s, route("GET /items/{id}", "live"))
        .await
        .unwrap();
    assert_eq!(items.route_id.len(), 7);
    let latest = create_http_route(
        s,
        NewHttpRoute {
            throttle: Some(Throttle {
                rate_limit: 10.0,
                burst_limit: 0,
            }),
            ..route("$default", "$LATEST")
        },
    )
    .await
    .unwrap();
    assert_eq!(latest.qualifier, "", "$LATEST is stored as unqualified");
    let (c, m) = code(
        create_http_route(s, route("GET /items/{other}", ""))
            .await
            .unwrap_err(),
    );
    assert_eq!(c, Code::AlreadyExists, "{m}");
    assert!(m.contains("GET /items/{id}"), "{m}");
    for (req, want) in [
        (route("GET /x", "7"), Code::NotFound),
        (route("GET /x", "beta"), Code::NotFound),
        (
            NewHttpRoute {
                function_name: "nope".into(),
                ..route("GET /x", "")
            },
            Code::NotFound,
        ),
        (
            NewHttpRoute {
                api_id: "zzzzzzzzzz".into(),
                ..route("GET /x", "")
            },
            Code::NotFound,
        ),
        (route("GET /x/{a+}/b", ""), Code::InvalidArgument),
        (
            NewHttpRoute {
                throttle: Some(Throttle {
                    rate_limit: -1.0,
                    burst_limit: 1,
                }),
                ..route("GET /x", "")
            },
            Code::InvalidArgument,
        ),
    ] {
        let (c, m) = code(create_http_route(s, req.clone()).await.unwrap_err());
        assert_eq!(c, want, "{req:?}: {m}");
    }

    let in_memory = s.store.http_api_in_memory(&api.api_id).unwrap();
    assert_eq!(in_memory.routes, [items.clone(), latest.clone()]);
    assert_eq!(in_memory.payload_format, PayloadFormat::V1);
    assert_eq!(list_http_routes(s, &api.api_id).await.unwrap().len(), 2);

    // By id and by key.
    assert_eq!(
        delete_http_route(s, &api.api_id, &items.route_id)
            .await
            .unwrap(),
        items
    );
    assert_eq!(
        delete_http_route(s, &api.api_id, "$default").await.unwrap(),
        latest
    );
    let (c, _) = code(
        delete_http_route(s, &api.api_id, "$default")
            .await
            .unwrap_err(),
    );
    assert_eq!(c, Code::NotFound);
    assert!(get_http_api(s, &api.api_id)
        .await
        .unwrap()
        .routes
        .is_empty());

    assert_eq!(list_http_apis(s).await.unwrap().len(), 1);
    delete_http_api(s, &api.api_id).await.unwrap();
    let (c, _) = code(delete_http_api(s, &api.api_id).await.unwrap_err());
    assert_eq!(c, Code::NotFound);
    let (c, _) = code(get_http_api(s, "../x").await.unwrap_err());
    assert_eq!(c, Code::NotFound);
    assert!(s.store.http_api_in_memory(&api.api_id).is_none());
}
