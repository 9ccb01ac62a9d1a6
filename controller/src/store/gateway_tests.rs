use std::collections::BTreeMap;

use lamina_proto::domain::{Alias, LATEST};

use super::*;
use crate::test_support::function;
use lamina_proto::gateway::{AuthType, Cors, HttpRoute, InvokeMode, PayloadFormat, Throttle};

fn alias(function: &str, name: &str) -> Alias {
    Alias {
        function_name: function.to_string(),
        name: name.to_string(),
        function_version: LATEST.to_string(),
        additional_version_weights: BTreeMap::new(),
        description: String::new(),
        revision_id: "a1".to_string(),
        last_modified_ms: 2,
    }
}

fn url(id: &str, function: &str, qualifier: &str) -> FunctionUrlConfig {
    FunctionUrlConfig {
        url_id: id.to_string(),
        function_name: function.to_string(),
        qualifier: qualifier.to_string(),
        auth_type: AuthType::None,
        invoke_mode: InvokeMode::Buffered,
        cors: None,
        created_ms: 10,
        last_modified_ms: 10,
    }
}

fn api(id: &str, routes: &[&str]) -> HttpApi {
    HttpApi {
        api_id: id.to_string(),
        name: format!("api {id}"),
        payload_format: PayloadFormat::V1,
        routes: routes
            .iter()
            .enumerate()
            .map(|(i, key)| HttpRoute {
                route_id: format!("r{i}"),
                route_key: key.to_string(),
                function_name: "f".to_string(),
                qualifier: String::new(),
                throttle: Some(Throttle {
                    rate_limit: 1.5,
                    burst_limit: 3,
                }),
                created_ms: 5,
            })
            .collect(),
        created_ms: 4,
    }
}

fn ids(urls: &[FunctionUrlConfig]) -> Vec<&str> {
    urls.iter().map(|u| u.url_id.as_str()).collect()
}

#[test]
fn function_urls_need_their_function_and_alias_and_are_unique_per_qualifier() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), 100).unwrap();
    assert!(matches!(
        store.create_function_url(&url("u1", "f", "")),
        Err(StoreError::FunctionNotFound(n)) if n == "f"
    ));
    store.create_function(&function("f"), b"zip").unwrap();
    assert!(matches!(
        store.create_function_url(&url("u1", "f", "live")),
        Err(StoreError::AliasNotFound { alias, .. }) if alias == "live"
    ));
    store.put_alias(&alias("f", "live")).unwrap();
    store.create_function_url(&url("u1", "f", "")).unwrap();
    store.create_function_url(&url("u2", "f", "live")).unwrap();
    let again = store.create_function_url(&url("u3", "f", "live"));
    assert!(matches!(
        &again,
        Err(StoreError::FunctionUrlExists { function, qualifier })
            if function == "f" && qualifier == "live"
    ));
    assert_eq!(
        again.unwrap_err().to_string(),
        "alias `live` of function `f` has a function URL already: update it \
         (UpdateFunctionUrlConfig, `fnctl url update`) or delete it first"
    );
    assert!(store.function_url_in_memory("u3").is_none());
    assert_eq!(ids(&store.list_function_urls("f").unwrap()), ["u1", "u2"]);

    let mut changed = url("u1", "f", "");
    changed.auth_type = AuthType::AwsIam;
    changed.cors = Some(Cors {
        allow_origins: vec!["https://example.com".into()],
        max_age: Some(60),
        ..Default::default()
    });
    store.update_function_url(&changed).unwrap();
    assert_eq!(
        store.get_function_url("f", "").unwrap().as_ref(),
        Some(&changed)
    );
    assert_eq!(
        store.function_url_in_memory("u1").as_deref(),
        Some(&changed)
    );
    assert!(matches!(
        store.update_function_url(&url("u9", "f", "beta")),
        Err(StoreError::FunctionUrlNotFound { .. })
    ));
    // The id of a URL never changes.
    assert!(store.update_function_url(&url("other", "f", "")).is_err());

    assert_eq!(
        store
            .delete_function_url("f", "")
            .unwrap()
            .map(|u| u.url_id),
        Some("u1".to_string())
    );
    assert_eq!(store.delete_function_url("f", "").unwrap(), None);
    assert!(store.function_url_in_memory("u1").is_none());
    assert_eq!(store.get_function_url("f", "").unwrap(), None);
}

#[test]
fn urls_go_with_their_function_or_alias() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), 100).unwrap();
    for f in ["f", "f-2"] {
        store.create_function(&function(f), b"zip").unwrap();
        store.put_alias(&alias(f, "live")).unwrap();
        store.put_alias(&alias(f, "beta")).unwrap();
    }
    store.create_function_url(&url("a", "f", "")).unwrap();
    store.create_function_url(&url("b", "f", "live")).unwrap();
    store.create_function_url(&url("c", "f", "beta")).unwrap();
    store.create_function_url(&url("d", "f-2", "")).unwrap();
    store.create_function_url(&url("e", "f-2", "live")).unwrap();

    // Deleting an alias deletes its URL, nothing else.
    assert!(store.delete_alias("f", "live").unwrap());
    assert!(store.function_url_in_memory("b").is_none());
    assert_eq!(store.get_function_url("f", "live").unwrap(), None);
    assert_eq!(ids(&store.list_function_urls("f").unwrap()), ["a", "c"]);
    // A new alias of the same name has no URL.
    store.put_alias(&alias("f", "live")).unwrap();
    assert_eq!(store.get_function_url("f", "live").unwrap(), None);

    // Deleting the function deletes its URLs; `f-2` keeps its own.
    store.delete_function("f").unwrap();
    for gone in ["a", "c"] {
        assert!(store.function_url_in_memory(gone).is_none(), "{gone}");
    }
    assert_eq!(store.list_function_urls("f").unwrap(), []);
    assert_eq!(ids(&store.list_function_urls("f-2").unwrap()), ["d", "e"]);
    assert!(store.function_url_in_memory("d").is_some());

    // A function created again under the name starts without URLs, also after a reopen.
    store.create_function(&function("f"), b"zip").unwrap();
    drop(store);
    let store = RocksStore::open(dir.path(), 100).unwrap();
    assert_eq!(store.list_function_urls("f").unwrap(), []);
    assert!(store.function_url_in_memory("a").is_none());
    assert_eq!(
        store
            .function_url_in_memory("e")
            .map(|u| u.qualifier.clone()),
        Some("live".to_string())
    );
}

#[test]
fn http_apis_are_stored_listed_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), 100).unwrap();
    assert_eq!(store.list_http_apis().unwrap(), []);
    store
        .put_http_api(&api("b1", &["GET /items/{id}"]))
        .unwrap();
    store.put_http_api(&api("a1", &[])).unwrap();
    let ids: Vec<String> = store
        .list_http_apis()
        .unwrap()
        .into_iter()
        .map(|a| a.api_id)
        .collect();
    assert_eq!(ids, ["a1", "b1"]);

    // Replacing an API (a route added) is seen at once in memory.
    let two = api("b1", &["GET /items/{id}", "$default"]);
    store.put_http_api(&two).unwrap();
    assert_eq!(store.http_api_in_memory("b1").as_deref(), Some(&two));
    assert_eq!(store.get_http_api("b1").unwrap(), Some(two.clone()));
    assert_eq!(store.get_http_api("zz").unwrap(), None);
    assert!(store.http_api_in_memory("zz").is_none());

    assert_eq!(
        store.delete_http_api("a1").unwrap().map(|a| a.api_id),
        Some("a1".into())
    );
    assert_eq!(store.delete_http_api("a1").unwrap(), None);
    assert!(store.http_api_in_memory("a1").is_none());
    assert_eq!(store.list_http_apis().unwrap(), [two]);
}

#[test]
fn urls_and_apis_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut with_cors = url("u1", "f", "");
    with_cors.invoke_mode = InvokeMode::ResponseStream;
    with_cors.cors = Some(Cors {
        allow_credentials: true,
        allow_headers: vec!["x-a".into()],
        allow_methods: vec!["GET".into(), "POST".into()],
        allow_origins: vec!["*".into()],
        expose_headers: vec!["x-b".into()],
        max_age: Some(0),
    });
    let apis = api("q1", &["ANY /{proxy+}", "POST /items"]);
    {
        let store = RocksStore::open(dir.path(), 100).unwrap();
        store.create_function(&function("f"), b"zip").unwrap();
        store.put_alias(&alias("f", "live")).unwrap();
        store.create_function_url(&with_cors).unwrap();
        store.create_function_url(&url("u2", "f", "live")).unwrap();
        store.put_http_api(&apis).unwrap();
    }
    let store = RocksStore::open(dir.path(), 100).unwrap();
    assert_eq!(
        store.function_url_in_memory("u1").as_deref(),
        Some(&with_cors)
    );
    assert_eq!(
        store.function_url_in_memory("u2").as_deref(),
        Some(&url("u2", "f", "live"))
    );
    assert_eq!(store.http_api_in_memory("q1").as_deref(), Some(&apis));
    assert_eq!(store.get_function_url("f", "").unwrap(), Some(with_cors));
    assert_eq!(store.list_http_apis().unwrap(), [apis]);
}
