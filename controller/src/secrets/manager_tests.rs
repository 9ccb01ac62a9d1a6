//! The core of Secrets Manager and Parameter Store on a real store (authentication off, an
//! in-memory master key).
use std::sync::Arc;

use zeroize::Zeroizing;

use super::*;
use crate::secrets::parameters::{self, ParameterError, PutInput};
use crate::secrets::rotation::{self, RotateInput};
use crate::store::parameters::StoredValue;
use crate::store::RocksStore;
use crate::{Controller, ControllerConfig};

struct Fixture {
    shared: Arc<Shared>,
    ext: http::Extensions,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), 100).unwrap();
    let config = ControllerConfig::new(dir.path().to_path_buf());
    let controller = Controller::with_store(&config, Arc::new(store));
    Fixture {
        shared: Arc::clone(&controller.shared),
        ext: http::Extensions::new(),
        _dir: dir,
    }
}

fn text(s: &str) -> Plain {
    Plain {
        binary: false,
        bytes: Zeroizing::new(s.as_bytes().to_vec()),
    }
}

fn new_secret(name: &str, value: Option<&str>) -> NewSecret {
    NewSecret {
        name: name.to_string(),
        value: value.map(text),
        ..Default::default()
    }
}

const TOKEN_A: &str = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
const TOKEN_B: &str = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb";

async fn current(fx: &Fixture, id: &str) -> String {
    let v = get_value(&fx.shared, &fx.ext, id, None, None)
        .await
        .unwrap();
    String::from_utf8(v.value.bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn values_are_versioned_staged_and_sealed() {
    let fx = fixture();
    let s = &fx.shared;
    let w = create(s, &fx.ext, new_secret("app/db", Some("one")))
        .await
        .unwrap();
    let suffix = w.arn.rsplit_once("secret:app/db-").unwrap().1;
    assert_eq!(suffix.len(), 6, "{}", w.arn);
    assert!(suffix.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(w.stages, ["AWSCURRENT"]);
    let first = w.version_id.unwrap();

    let p = put_value(
        s,
        &fx.ext,
        &w.arn,
        Some(TOKEN_A.into()),
        text("two"),
        None,
        "secretsmanager:PutSecretValue",
    )
    .await
    .unwrap();
    assert_eq!(p.stages, ["AWSCURRENT"]);
    assert_eq!(current(&fx, "app/db").await, "two");
    let previous = get_value(s, &fx.ext, "app/db", None, Some("AWSPREVIOUS"))
        .await
        .unwrap();
    assert_eq!(previous.version_id, first);
    assert_eq!(&*previous.value.bytes, b"one");
    // By version id, with a label it has, and one it has not.
    assert!(
        get_value(s, &fx.ext, "app/db", Some(TOKEN_A), Some("AWSCURRENT"))
            .await
            .is_ok()
    );
    let e = get_value(s, &fx.ext, "app/db", Some(TOKEN_A), Some("AWSPREVIOUS"))
        .await
        .unwrap_err();
    assert_eq!(e.code().0, "InvalidRequestException", "{e}");
    // A partial ARN (without the suffix) names it too; a wrong suffix does not.
    let partial = w.arn.trim_end_matches(suffix).trim_end_matches('-');
    assert_eq!(current(&fx, partial).await, "two");
    let wrong = format!("{}-ZZZZZZ", partial);
    let e = get_value(s, &fx.ext, &wrong, None, None).await.unwrap_err();
    assert_eq!(e.code().0, "ResourceNotFoundException");

    // A retry with the same token and value is the same version; another value is refused.
    let again = put_value(
        s,
        &fx.ext,
        "app/db",
        Some(TOKEN_A.into()),
        text("two"),
        None,
        "secretsmanager:PutSecretValue",
    )
    .await
    .unwrap();
    assert_eq!(again.version_id.as_deref(), Some(TOKEN_A));
    let e = put_value(
        s,
        &fx.ext,
        "app/db",
        Some(TOKEN_A.into()),
        text("other"),
        None,
        "secretsmanager:PutSecretValue",
    )
    .await
    .unwrap_err();
    assert_eq!(e.code().0, "ResourceExistsException");

    // A pending version leaves AWSCURRENT where it is.
    put_value(
        s,
        &fx.ext,
        "app/db",
        Some(TOKEN_B.into()),
        text("three"),
        Some(vec!["AWSPENDING".into()]),
        "secretsmanager:PutSecretValue",
    )
    .await
    .unwrap();
    assert_eq!(current(&fx, "app/db").await, "two");
    let d = describe(s, &fx.ext, "app/db").await.unwrap();
    assert_eq!(d.versions[TOKEN_B].stages, ["AWSPENDING"]);

    // Stored sealed: neither the value nor anything that opens under another version.
    let stored = s
        .store
        .get_secret_value("app/db", TOKEN_A)
        .unwrap()
        .unwrap();
    assert!(!serde_json::to_string(&stored).unwrap().contains("two"));
    let other_aad = format!("secretsmanager\0{}\0{}", w.arn, TOKEN_B);
    assert!(s
        .master_key
        .open(other_aad.as_bytes(), &stored.sealed)
        .is_err());
}

#[tokio::test]
async fn create_refuses_a_taken_name_but_answers_a_retry() {
    let fx = fixture();
    let s = &fx.shared;
    let mut n = new_secret("x", Some("v"));
    n.client_request_token = Some(TOKEN_A.into());
    let first = create(s, &fx.ext, n).await.unwrap();
    let mut n = new_secret("x", Some("v"));
    n.client_request_token = Some(TOKEN_A.into());
    assert_eq!(create(s, &fx.ext, n).await.unwrap(), first);
    let e = create(s, &fx.ext, new_secret("x", Some("w")))
        .await
        .unwrap_err();
    assert_eq!(e.code().0, "ResourceExistsException");
    let e = create(s, &fx.ext, new_secret("bad name", None))
        .await
        .unwrap_err();
    assert_eq!(e.code().0, "InvalidParameterException");
    // A secret without a value has no AWSCURRENT.
    create(s, &fx.ext, new_secret("empty", None)).await.unwrap();
    let e = get_value(s, &fx.ext, "empty", None, None)
        .await
        .unwrap_err();
    assert_eq!(e.code().0, "ResourceNotFoundException");
}

#[tokio::test]
async fn deletion_waits_for_the_recovery_window_and_can_be_undone() {
    let fx = fixture();
    let s = &fx.shared;
    create(s, &fx.ext, new_secret("d", Some("v")))
        .await
        .unwrap();
    for bad in [Some(6), Some(31)] {
        let e = delete(s, &fx.ext, "d", bad, false).await.unwrap_err();
        assert_eq!(e.code().0, "InvalidParameterException");
    }
    let e = delete(s, &fx.ext, "d", Some(7), true).await.unwrap_err();
    assert_eq!(e.code().0, "InvalidParameterException");
    let d = delete(s, &fx.ext, "d", None, false).await.unwrap();
    let days = (d.deletion_date_ms - now_ms()) as f64 / DAY_MS as f64;
    assert!((29.9..=30.0).contains(&days), "{days}");
    let e = get_value(s, &fx.ext, "d", None, None).await.unwrap_err();
    assert_eq!(e.code().0, "InvalidRequestException", "{e}");
    assert!(describe(s, &fx.ext, "d")
        .await
        .unwrap()
        .deleted_ms
        .is_some());
    let (listed, _) = list(s, &fx.ext, ListInput::default()).await.unwrap();
    assert!(listed.is_empty());
    let planned = ListInput {
        include_planned_deletion: true,
        ..Default::default()
    };
    assert_eq!(list(s, &fx.ext, planned).await.unwrap().0.len(), 1);
    let e = create(s, &fx.ext, new_secret("d", Some("v")))
        .await
        .unwrap_err();
    assert_eq!(e.code().0, "InvalidRequestException");

    restore(s, &fx.ext, "d").await.unwrap();
    assert_eq!(current(&fx, "d").await, "v");

    // Past its window a secret is purged by the first call that finds it.
    delete(s, &fx.ext, "d", Some(7), false).await.unwrap();
    let mut r = s.store.get_secret("d").unwrap().unwrap();
    r.deletion_date_ms = Some(now_ms() - 1);
    s.store.write_secret(&r, &[], &[]).unwrap();
    let e = describe(s, &fx.ext, "d").await.unwrap_err();
    assert_eq!(e.code().0, "ResourceNotFoundException");
    assert!(s.store.get_secret("d").unwrap().is_none());
    assert!(s
        .store
        .get_secret_value("d", &r.versions.keys().next().unwrap().clone())
        .unwrap()
        .is_none());

    // Force: gone at once, the name free again.
    create(s, &fx.ext, new_secret("d", Some("v2")))
        .await
        .unwrap();
    delete(s, &fx.ext, "d", None, true).await.unwrap();
    assert!(s.store.get_secret("d").unwrap().is_none());
    create(s, &fx.ext, new_secret("d", Some("v3")))
        .await
        .unwrap();
}

#[tokio::test]
async fn listings_page_and_filter() {
    let fx = fixture();
    let s = &fx.shared;
    for name in ["prod/a", "prod/b", "dev/a", "prod/c"] {
        let mut n = new_secret(name, None);
        n.description = Some(format!("The {name} secret"));
        create(s, &fx.ext, n).await.unwrap();
    }
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let (page, next) = list(
            s,
            &fx.ext,
            ListInput {
                max_results: Some(3),
                next_token: token,
                sort_by: Some("name".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(page.len() <= 3);
        names.extend(page.into_iter().map(|r| r.name));
        match next {
            Some(n) => token = Some(n),
            None => break,
        }
    }
    assert_eq!(names, ["dev/a", "prod/a", "prod/b", "prod/c"]);
    let filtered = |key: &str, values: &[&str]| ListInput {
        filters: vec![Filter {
            key: key.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }],
        sort_by: Some("name".into()),
        ..Default::default()
    };
    let (page, _) = list(s, &fx.ext, filtered("name", &["prod/"]))
        .await
        .unwrap();
    assert_eq!(page.len(), 3);
    let (page, _) = list(s, &fx.ext, filtered("name", &["!prod/"]))
        .await
        .unwrap();
    assert_eq!(page[0].name, "dev/a");
    let (page, _) = list(s, &fx.ext, filtered("description", &["the dev"]))
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    let e = list(s, &fx.ext, filtered("colour", &["x"]))
        .await
        .unwrap_err();
    assert_eq!(e.code().0, "InvalidParameterException");
    let bad = ListInput {
        next_token: Some("garbage".into()),
        ..Default::default()
    };
    assert_eq!(
        list(s, &fx.ext, bad).await.unwrap_err().code().0,
        "InvalidNextTokenException"
    );
}

#[tokio::test]
async fn a_rotation_that_cannot_run_leaves_awscurrent_alone() {
    let fx = fixture();
    let s = &fx.shared;
    create(s, &fx.ext, new_secret("r", Some("v")))
        .await
        .unwrap();
    let e = rotation::rotate(
        s,
        &fx.ext,
        RotateInput {
            secret_id: "r".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code().0, "InvalidRequestException", "{e}");
    let e = rotation::rotate(
        s,
        &fx.ext,
        RotateInput {
            secret_id: "r".into(),
            lambda_arn: Some("arn:aws:lambda:us-east-1:000000000000:function:missing".into()),
            client_request_token: Some(TOKEN_A.into()),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            &e,
            SecretsError::Rotation {
                step: "createSecret",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(current(&fx, "r").await, "v");
    let d = describe(s, &fx.ext, "r").await.unwrap();
    assert!(d.rotation.unwrap().enabled);
    assert!(d.last_rotated_ms.is_none());
}

fn put_input(name: &str, value: &str, kind: Option<&str>, overwrite: bool) -> PutInput {
    PutInput {
        name: name.into(),
        value: value.into(),
        kind: kind.map(str::to_string),
        overwrite,
        ..Default::default()
    }
}

#[tokio::test]
async fn parameters_have_versions_paths_and_sealed_secure_strings() {
    let fx = fixture();
    let (s, ext) = (&fx.shared, &fx.ext);
    assert_eq!(
        parameters::put(
            s,
            ext,
            put_input("/app/url", "http://a", Some("String"), false)
        )
        .await
        .unwrap(),
        (1, "Standard".to_string())
    );
    let e = parameters::put(s, ext, put_input("/app/url", "http://b", None, false))
        .await
        .unwrap_err();
    assert!(matches!(e, ParameterError::Exists(_)), "{e}");
    assert_eq!(
        parameters::put(s, ext, put_input("/app/url", "http://b", None, true))
            .await
            .unwrap()
            .0,
        2
    );
    let a = parameters::get(s, ext, "/app/url", false).await.unwrap();
    assert_eq!((a.value.as_str(), a.version.version), ("http://b", 2));
    let a = parameters::get(s, ext, "/app/url:1", false).await.unwrap();
    assert_eq!(a.value, "http://a");
    assert_eq!(a.selector.as_deref(), Some(":1"));
    let e = parameters::get(s, ext, "/app/url:9", false)
        .await
        .unwrap_err();
    assert_eq!(e.code().0, "ParameterVersionNotFound");
    let e = parameters::get(s, ext, "/app/none", false)
        .await
        .unwrap_err();
    assert_eq!(e.code().0, "ParameterNotFound");
    let e = parameters::put(s, ext, put_input("/app/t", "x", Some("Number"), false))
        .await
        .unwrap_err();
    assert_eq!(e.code().0, "UnsupportedParameterType");

    parameters::put(
        s,
        ext,
        put_input("/app/db/pass", "s3cret!", Some("SecureString"), false),
    )
    .await
    .unwrap();
    let hidden = parameters::get(s, ext, "/app/db/pass", false)
        .await
        .unwrap();
    assert_ne!(hidden.value, "s3cret!");
    let shown = parameters::get(s, ext, "/app/db/pass", true).await.unwrap();
    assert_eq!(shown.value, "s3cret!");
    assert_eq!(shown.version.key_id.as_deref(), Some("alias/aws/ssm"));
    let stored = s.store.get_parameter("/app/db/pass").unwrap().unwrap();
    assert!(matches!(stored.value, StoredValue::Sealed(_)));
    assert!(!serde_json::to_string(&stored).unwrap().contains("s3cret"));

    // One level, then every level, a page at a time.
    let (one, next) = parameters::by_path(s, ext, "/app", false, false, None, None)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert!(next.is_none());
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let (page, next) =
            parameters::by_path(s, ext, "/app/", true, true, Some(1), token.as_deref())
                .await
                .unwrap();
        all.extend(page.into_iter().map(|a| (a.version.name, a.value)));
        match next {
            Some(n) => token = Some(n),
            None => break,
        }
    }
    assert_eq!(
        all,
        [
            ("/app/db/pass".to_string(), "s3cret!".to_string()),
            ("/app/url".to_string(), "http://b".to_string())
        ]
    );

    let (history, _) = parameters::history(s, ext, "/app/url", false, None, None)
        .await
        .unwrap();
    let versions: Vec<u64> = history.iter().map(|a| a.version.version).collect();
    assert_eq!(versions, [1, 2]);

    let (found, invalid) =
        parameters::get_many(s, ext, &["/app/url".into(), "/nope".into()], false)
            .await
            .unwrap();
    assert_eq!((found.len(), invalid), (1, vec!["/nope".to_string()]));
    let (deleted, invalid) = parameters::delete_many(s, ext, &["/app/url".into(), "/nope".into()])
        .await
        .unwrap();
    assert_eq!(
        (deleted, invalid),
        (vec!["/app/url".to_string()], vec!["/nope".to_string()])
    );
    let e = parameters::delete(s, ext, "/app/url").await.unwrap_err();
    assert_eq!(e.code().0, "ParameterNotFound");
    assert!(s
        .store
        .get_parameter_version("/app/url", 1)
        .unwrap()
        .is_none());
}
