//! Versions and aliases end to end: real controller, real worker, real Python sandboxes.
use std::collections::BTreeMap;
use std::time::Duration;

use lamina_e2e::*;

/// Says which code runs and what the function sees of its version and ARN.
fn source(code: &str) -> String {
    format!(
        r#"
import os
def handler(event, context):
    return {{
        "code": "{code}",
        "version": context.function_version,
        "env_version": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION"),
        "arn": context.invoked_function_arn,
    }}
"#
    )
}

async fn update_code(c: &lamina_client::Client, name: &str, code: &str) -> anyhow::Result<()> {
    c.update_function_code(name, zip_of(&[("app.py", &source(code), 0o644)]))
        .await?;
    Ok(())
}

/// Invokes `name:qualifier`; checks that the reported version, the version the function saw and
/// its environment agree; returns (executed version, code, invoked ARN).
async fn run_qualified(
    c: &lamina_client::Client,
    name: &str,
    qualifier: &str,
) -> anyhow::Result<(String, String, String)> {
    let r = c.invoke_qualified(name, qualifier, b"{}".to_vec()).await?;
    anyhow::ensure!(
        r.status_code == 200 && r.function_error.is_empty(),
        "{qualifier}: {r:?}"
    );
    let v = json(&r);
    assert_eq!(
        v["version"],
        r.executed_version.as_str(),
        "{qualifier}: {v}"
    );
    assert_eq!(
        v["env_version"],
        r.executed_version.as_str(),
        "{qualifier}: {v}"
    );
    Ok((
        r.executed_version,
        v["code"].as_str().unwrap().to_string(),
        v["arn"].as_str().unwrap().to_string(),
    ))
}

#[test]
fn versions_and_weighted_aliases_run_the_right_code() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("ver");
        create_python(&c, &name, &source("one")).await?;
        let arn = format!("arn:aws:lambda:us-east-1:000000000000:function:{name}");

        let v1 = c.publish_version(&name, "first").await?;
        assert_eq!(v1.version, "1");
        update_code(&c, &name, "two").await?;
        let v2 = c.publish_version(&name, "").await?;
        assert_eq!(v2.version, "2");
        // Nothing changed since version 2: publishing again returns it.
        assert_eq!(c.publish_version(&name, "").await?.version, "2");
        update_code(&c, &name, "three").await?;

        for (qualifier, version, code, invoked) in [
            ("1", "1", "one", format!("{arn}:1")),
            ("2", "2", "two", format!("{arn}:2")),
            ("$LATEST", "$LATEST", "three", format!("{arn}:$LATEST")),
            ("", "$LATEST", "three", arn.clone()),
        ] {
            let got = run_qualified(&c, &name, qualifier).await?;
            assert_eq!(
                got,
                (version.to_string(), code.to_string(), invoked),
                "{qualifier}\n{}",
                cluster.logs()
            );
        }

        // An alias: the function sees the alias in its ARN and the version in its context.
        c.create_alias(&name, "live", "1", Default::default(), "")
            .await?;
        assert_eq!(
            run_qualified(&c, &name, "live").await?,
            ("1".to_string(), "one".to_string(), format!("{arn}:live"))
        );

        // Weighted: 30% to version 2, over 200 invocations within +-10 points.
        c.update_alias(lamina_client::v1::UpdateAliasRequest {
            function_name: name.clone(),
            name: "live".into(),
            routing_config: Some(lamina_client::v1::RoutingConfig {
                additional_version_weights: [("2".to_string(), 0.3)].into(),
            }),
            ..Default::default()
        })
        .await?;
        let mut by_version: BTreeMap<String, u32> = BTreeMap::new();
        let mut by_code: BTreeMap<String, u32> = BTreeMap::new();
        for _ in 0..200 {
            let (version, code, invoked) = run_qualified(&c, &name, "live").await?;
            assert_eq!(invoked, format!("{arn}:live"));
            *by_version.entry(version).or_default() += 1;
            *by_code.entry(code).or_default() += 1;
        }
        let (ones, twos) = (by_version["1"], by_version["2"]);
        assert_eq!(ones + twos, 200, "{by_version:?}");
        assert_eq!(by_code["one"], ones, "{by_code:?} vs {by_version:?}");
        assert_eq!(by_code["two"], twos, "{by_code:?} vs {by_version:?}");
        assert!(
            (40..=80).contains(&twos),
            "version 2 ran {twos} of 200 times, expected 60 +- 20: {by_version:?}"
        );

        // Moving the alias takes effect on the next invocation.
        c.update_alias(lamina_client::v1::UpdateAliasRequest {
            function_name: name.clone(),
            name: "live".into(),
            function_version: Some("2".into()),
            routing_config: Some(Default::default()),
            ..Default::default()
        })
        .await?;
        for _ in 0..5 {
            assert_eq!(run_qualified(&c, &name, "live").await?.1, "two");
        }

        // An async event through the alias runs its version too.
        let rid = c
            .invoke_async_qualified(&name, "live", b"{}".to_vec())
            .await?
            .request_id;
        let inv =
            wait_invocation(&c, &rid, Duration::from_secs(60), |i| is_terminal(&i.state)).await?;
        assert_eq!(inv.state, "Succeeded", "{inv:?}\n{}", cluster.logs());

        // Deleting the function removes its versions and aliases.
        c.delete_function(&name).await?;
        create_python(&c, &name, &source("fresh")).await?;
        let versions = c.list_versions(&name).await?;
        assert_eq!(versions.len(), 1, "{versions:?}");
        assert!(c.list_aliases(&name).await?.is_empty());
        let err = c
            .invoke_qualified(&name, "1", b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no version 1"), "{err}");
        let err = c.get_alias(&name, "live").await.unwrap_err();
        assert!(err.to_string().contains("no alias `live`"), "{err}");
        assert_eq!(run_qualified(&c, &name, "").await?.1, "fresh");
        Ok(())
    })
}
