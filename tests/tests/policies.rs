//! Policies (issue 17, part 3) end to end: identity policies on access keys and resource-based
//! policies on functions, evaluated by the controller on every gRPC and REST route.
//!
//! - A key whose policy allows `lambda:InvokeFunction` on one function invokes it, and every
//!   other route refuses it: gRPC (lamina-client and fnctl with that key) answers
//!   PERMISSION_DENIED, REST (boto3, `tests/python/policies.py`) 403 AccessDeniedException.
//! - An explicit Deny beats an Allow; `IpAddress` and `DateLessThan` conditions decide.
//! - AddPermission lets a key without any policy invoke exactly one function; RemovePermission
//!   takes that away (gRPC and boto3).
//! - The admin key keeps full access throughout.
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use lamina_client::{Code, Error};
use lamina_e2e::*;

const ARN: &str = "arn:aws:lambda:us-east-1:000000000000:function:";
const ECHO: &str = "def handler(event, context):\n    return {\"echo\": event}\n";

fn start() -> Result<Cluster> {
    Cluster::start(1)
}

fn policy(statements: &str) -> String {
    format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#)
}

fn allow(action: &str, resource: &str) -> String {
    format!(r#"{{"Effect":"Allow","Action":"{action}","Resource":"{resource}"}}"#)
}

/// A non-admin key with `policy` (`None`: no policy at all), and a client signing with it.
async fn key(
    cluster: &Cluster,
    admin: &Client,
    policy: Option<&str>,
) -> Result<(Credentials, Client)> {
    let k = admin
        .create_access_key_with_policy("policies test", false, policy)
        .await?;
    let creds = Credentials {
        access_key_id: k.access_key_id,
        secret_access_key: k.secret_access_key,
    };
    let client = cluster.client_with(Some(creds.clone())).await?;
    Ok((creds, client))
}

fn is_denied<T>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(e) if e.status().is_some_and(|s| s.code() == Code::PermissionDenied))
}

fn expect_denied<T: std::fmt::Debug>(what: &str, r: Result<T, Error>) -> Result<()> {
    if is_denied(&r) {
        Ok(())
    } else {
        bail!("{what}: expected PERMISSION_DENIED, got {r:?}")
    }
}

fn invoke_request(name: &str, qualifier: &str) -> v1::InvokeRequest {
    v1::InvokeRequest {
        function_name: name.to_string(),
        qualifier: qualifier.to_string(),
        payload: br#"{"n":1}"#.to_vec(),
        ..Default::default()
    }
}

async fn invokes(client: &Client, name: &str) -> Result<()> {
    let r = client.invoke(invoke_request(name, "")).await?;
    anyhow::ensure!(
        r.function_error.is_empty() && json(&r)["echo"]["n"] == 1,
        "invoke {name}: {r:?}"
    );
    Ok(())
}

fn policies_py(cluster: &Cluster, args: &[&str]) -> Result<serde_json::Value> {
    let python = venv().join("bin/python");
    anyhow::ensure!(
        python.exists(),
        "{} is missing: run deploy/test.sh, which installs boto3 there",
        python.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/policies.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(args)
        .env("LAMINA_REST", &cluster.rest_endpoint)
        .env("LAMINA_CREDENTIALS", &cluster.credentials_file)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .with_context(|| format!("run {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "policies.py {} failed ({}):\n{stdout}\n{}\n{}",
            args[0],
            out.status,
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
    }
    serde_json::from_str(stdout.trim()).with_context(|| format!("policies.py printed {stdout}"))
}

/// `fnctl ARGS` signing with `creds` (written to a credentials file as `fnctl` reads them).
fn fnctl(cluster: &Cluster, creds: &Credentials, args: &[&str]) -> Result<std::process::Output> {
    let file = cluster
        .dir
        .path()
        .join(format!("{}.json", creds.access_key_id));
    std::fs::write(
        &file,
        serde_json::json!({
            "accessKeyId": creds.access_key_id,
            "secretAccessKey": creds.secret_access_key,
        })
        .to_string(),
    )?;
    Ok(Command::new(bin("fnctl"))
        .args(args)
        .envs(cluster.fnctl_env())
        .env("FNCTL_CREDENTIALS", &file)
        .output()?)
}

/// Every gRPC user route but InvokeFunction on `allowed`, called by `c`: each must be refused.
async fn every_other_grpc_route_is_refused(c: &Client, allowed: &str, other: &str) -> Result<()> {
    let zip = zip_of(&[("app.py", ECHO, 0o644)]);
    expect_denied("Invoke(other)", c.invoke(invoke_request(other, "")).await)?;
    expect_denied(
        "Invoke(allowed:1)",
        c.invoke(invoke_request(allowed, "1")).await,
    )?;
    expect_denied(
        "InvokeWithResponseStream(other)",
        c.invoke_with_response_stream(invoke_request(other, ""))
            .await
            .map(|_| ()),
    )?;
    expect_denied("GetFunction", c.get_function(allowed).await)?;
    expect_denied("ListFunctions", c.list_functions().await)?;
    expect_denied(
        "CreateFunction",
        c.create_function(
            spec(&format!("{allowed}-new"), "python3.11", "app.handler"),
            zip.clone(),
        )
        .await,
    )?;
    expect_denied(
        "UpdateFunctionCode",
        c.update_function_code(allowed, zip).await,
    )?;
    expect_denied(
        "UpdateFunctionConfiguration",
        c.update_function_configuration(v1::UpdateFunctionConfigurationRequest {
            function_name: allowed.to_string(),
            description: Some("changed".into()),
            ..Default::default()
        })
        .await,
    )?;
    expect_denied("DeleteFunction", c.delete_function(allowed).await)?;
    expect_denied("GetLogs", c.get_logs(allowed, 0, 10).await)?;
    expect_denied("ListWorkers", c.list_workers().await)?;
    expect_denied("PublishVersion", c.publish_version(allowed, "").await)?;
    expect_denied("ListVersions", c.list_versions(allowed).await)?;
    expect_denied(
        "GetFunctionConcurrency",
        c.get_function_concurrency(allowed).await,
    )?;
    expect_denied(
        "PutFunctionConcurrency",
        c.put_function_concurrency(allowed, 1).await,
    )?;
    expect_denied("GetAccountSettings", c.get_account_settings().await)?;
    expect_denied(
        "GetEventInvokeConfig",
        c.get_event_invoke_config(allowed).await,
    )?;
    expect_denied("ListInvocations", c.list_invocations(allowed, 10).await)?;
    expect_denied("ListDeadLetterQueues", c.list_dead_letter_queues().await)?;
    expect_denied("ListLayers", c.list_layers().await)?;
    expect_denied("ListLayerVersions", c.list_layer_versions("l").await)?;
    expect_denied("GetLayerVersion", c.get_layer_version("l", 1).await)?;
    expect_denied("DeleteLayerVersion", c.delete_layer_version("l", 1).await)?;
    expect_denied(
        "GetFunctionUrlConfig",
        c.get_function_url_config(allowed, "").await,
    )?;
    expect_denied(
        "ListFunctionUrlConfigs",
        c.list_function_url_configs(allowed).await,
    )?;
    expect_denied("CreateHttpApi", c.create_http_api("api", "").await)?;
    expect_denied("ListHttpApis", c.list_http_apis().await)?;
    expect_denied("CreateVpc", c.create_vpc("10.0.0.0/16", "").await)?;
    expect_denied("ListVpcs", c.list_vpcs().await)?;
    expect_denied("GetVpc", c.get_vpc("vpc-00000001").await)?;
    expect_denied(
        "AddPermission",
        c.add_permission(v1::AddPermissionRequest {
            function_name: allowed.to_string(),
            statement_id: "s".into(),
            action: "lambda:InvokeFunction".into(),
            principal: "*".into(),
            ..Default::default()
        })
        .await,
    )?;
    expect_denied("GetPolicy", c.get_policy(allowed, "").await)?;
    expect_denied("ListAccessKeys", c.list_access_keys().await)?;
    Ok(())
}

#[test]
fn a_key_limited_to_invoking_one_function_can_do_nothing_else() {
    run(async {
        let cluster = start()?;
        let admin = cluster.client().await?;
        let (allowed, other) = (unique("allowed"), unique("other"));
        create_python(&admin, &allowed, ECHO).await?;
        create_python(&admin, &other, ECHO).await?;
        let doc = policy(&allow("lambda:InvokeFunction", &format!("{ARN}{allowed}")));
        let (creds, limited) = key(&cluster, &admin, Some(&doc)).await?;

        invokes(&limited, &allowed).await?;
        every_other_grpc_route_is_refused(&limited, &allowed, &other).await?;
        // The refusal says who, what and on which resource.
        let e = limited.get_function(&allowed).await.unwrap_err();
        let message = e
            .status()
            .map(|s| s.message().to_string())
            .unwrap_or_default();
        assert!(
            message.contains(&creds.access_key_id)
                && message.contains("lambda:GetFunction")
                && message.contains(&format!("{ARN}{allowed}")),
            "{message}"
        );

        // fnctl with that key: invoke works, the rest is refused.
        let out = fnctl(
            &cluster,
            &creds,
            &["invoke", &allowed, "--payload", r#"{"n":1}"#],
        )?;
        assert!(out.status.success(), "fnctl invoke: {out:?}");
        for args in [
            vec!["get", allowed.as_str()],
            vec!["list"],
            vec!["invoke", other.as_str(), "--payload", "{}"],
            vec!["permission", "get", allowed.as_str()],
        ] {
            let out = fnctl(&cluster, &creds, &args)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && stderr.contains("not authorized"),
                "fnctl {args:?} with the limited key: {out:?}"
            );
        }

        // REST through boto3: the same, route by route.
        let v = policies_py(
            &cluster,
            &[
                "limited",
                &allowed,
                &other,
                &creds.access_key_id,
                &creds.secret_access_key,
            ],
        )?;
        assert_eq!(v["invoked"]["echo"]["n"], 1, "{v}");
        assert!(
            v["refused"].as_array().is_some_and(|a| a.len() >= 45),
            "{v}"
        );

        // The admin key keeps full access.
        admin.get_function(&allowed).await?;
        assert!(admin.list_functions().await?.len() >= 2);
        admin.list_workers().await?;
        invokes(&admin, &other).await?;
        admin.delete_function(&other).await?;
        Ok(())
    });
}

#[test]
fn explicit_deny_beats_allow_and_conditions_decide() {
    run(async {
        let cluster = start()?;
        let admin = cluster.client().await?;
        let (f, g) = (unique("f"), unique("g"));
        create_python(&admin, &f, ECHO).await?;
        create_python(&admin, &g, ECHO).await?;

        // Everything on functions, but never deleting f.
        let doc = policy(&format!(
            "{},{}",
            allow("lambda:*", "*"),
            format_args!(r#"{{"Effect":"Deny","Action":"lambda:Delete*","Resource":"{ARN}{f}"}}"#)
        ));
        let (_, c) = key(&cluster, &admin, Some(&doc)).await?;
        c.get_function(&f).await?;
        invokes(&c, &f).await?;
        let e = c.delete_function(&f).await;
        assert!(is_denied(&e), "{e:?}");
        let message = e.unwrap_err().status().map(|s| s.message().to_string());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.ends_with("an explicit deny in a policy")),
            "{message:?}"
        );
        c.delete_function(&g).await?;
        // lambda:* is not ec2:*.
        expect_denied("ListVpcs under lambda:*", c.list_vpcs().await)?;

        // IpAddress: the test's calls come from 127.0.0.1.
        let from = |cidr: &str| {
            policy(&format!(
                r#"{{"Effect":"Allow","Action":"lambda:InvokeFunction","Resource":"{ARN}{f}","Condition":{{"IpAddress":{{"aws:SourceIp":"{cidr}"}}}}}}"#
            ))
        };
        let (_, loopback) = key(&cluster, &admin, Some(&from("127.0.0.0/8"))).await?;
        invokes(&loopback, &f).await?;
        let (_, elsewhere) = key(&cluster, &admin, Some(&from("192.0.2.0/24"))).await?;
        expect_denied(
            "IpAddress outside",
            elsewhere.invoke(invoke_request(&f, "")).await,
        )?;

        // DateLessThan: allowed until a date; a past date allows nothing.
        let until = |date: &str| {
            policy(&format!(
                r#"{{"Effect":"Allow","Action":"lambda:InvokeFunction","Resource":"*","Condition":{{"DateLessThan":{{"aws:CurrentTime":"{date}"}}}}}}"#
            ))
        };
        let (_, current) = key(&cluster, &admin, Some(&until("2999-01-01T00:00:00Z"))).await?;
        invokes(&current, &f).await?;
        let (_, expired) = key(&cluster, &admin, Some(&until("2001-01-01T00:00:00Z"))).await?;
        expect_denied(
            "DateLessThan past",
            expired.invoke(invoke_request(&f, "")).await,
        )?;

        // A key with no policy at all may do nothing.
        let (_, nothing) = key(&cluster, &admin, None).await?;
        expect_denied("no policy", nothing.invoke(invoke_request(&f, "")).await)?;

        // Changing a key's policy takes effect on its next call.
        let (k, changing) = key(&cluster, &admin, None).await?;
        admin
            .put_key_policy(
                &k.access_key_id,
                Some(&policy(&allow(
                    "lambda:InvokeFunction",
                    &format!("{ARN}{f}"),
                ))),
            )
            .await?;
        invokes(&changing, &f).await?;
        Ok(())
    });
}

#[test]
fn add_permission_lets_a_policyless_key_invoke_exactly_one_function() {
    run(async {
        let cluster = start()?;
        let admin = cluster.client().await?;
        let (f, g) = (unique("f"), unique("g"));
        create_python(&admin, &f, ECHO).await?;
        create_python(&admin, &g, ECHO).await?;
        let (creds, c) = key(&cluster, &admin, None).await?;

        // gRPC (and fnctl): add, use, get, remove.
        expect_denied("before", c.invoke(invoke_request(&f, "")).await)?;
        let out = fnctl(
            &cluster,
            &cluster.credentials,
            &[
                "permission",
                "add",
                &f,
                "--statement-id",
                "key-invokes",
                "--principal",
                &creds.access_key_id,
            ],
        )?;
        assert!(out.status.success(), "fnctl permission add: {out:?}");
        invokes(&c, &f).await?;
        expect_denied("another function", c.invoke(invoke_request(&g, "")).await)?;
        expect_denied("another action", c.get_function(&f).await)?;
        let p = admin.get_policy(&f, "").await?;
        let doc: serde_json::Value = serde_json::from_str(&p.policy)?;
        assert_eq!(doc["Statement"][0]["Sid"], "key-invokes", "{doc}");
        assert_eq!(
            doc["Statement"][0]["Principal"]["AWS"],
            format!("arn:aws:iam::000000000000:user/{}", creds.access_key_id)
        );
        let dup = admin
            .add_permission(v1::AddPermissionRequest {
                function_name: f.clone(),
                statement_id: "key-invokes".into(),
                action: "lambda:InvokeFunction".into(),
                principal: "*".into(),
                ..Default::default()
            })
            .await;
        assert!(
            matches!(&dup, Err(e) if e.status().is_some_and(|s| s.code() == Code::AlreadyExists)),
            "{dup:?}"
        );
        let out = fnctl(&cluster, &cluster.credentials, &["permission", "get", &f])?;
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("key-invokes"),
            "fnctl permission get: {out:?}"
        );
        admin
            .remove_permission(v1::RemovePermissionRequest {
                function_name: f.clone(),
                statement_id: "key-invokes".into(),
                ..Default::default()
            })
            .await?;
        expect_denied(
            "after RemovePermission",
            c.invoke(invoke_request(&f, "")).await,
        )?;

        // The same through boto3, with Lambda's shapes and errors.
        let v = policies_py(
            &cluster,
            &[
                "resource-policy",
                &f,
                &g,
                &creds.access_key_id,
                &creds.secret_access_key,
            ],
        )?;
        assert_eq!(v["invoked"]["echo"]["n"], 1, "{v}");

        // A policy goes with its function.
        admin
            .add_permission(v1::AddPermissionRequest {
                function_name: f.clone(),
                statement_id: "again".into(),
                action: "lambda:InvokeFunction".into(),
                principal: creds.access_key_id.clone(),
                ..Default::default()
            })
            .await?;
        admin.delete_function(&f).await?;
        create_python(&admin, &f, ECHO).await?;
        expect_denied(
            "a new function of the same name",
            c.invoke(invoke_request(&f, "")).await,
        )?;

        // An AWS_IAM function URL: the signer needs lambda:InvokeFunctionUrl on the function
        // (InvokeFunction is another action), from its policy or the function's.
        let url = admin
            .create_function_url_config(v1::FunctionUrlConfigRequest {
                function_name: f.clone(),
                auth_type: "AWS_IAM".into(),
                ..Default::default()
            })
            .await?;
        let http = cluster.http_address()?;
        let status = |creds: &Credentials| -> Result<u64> {
            let v = policies_py(
                &cluster,
                &[
                    "url-status",
                    &http,
                    &url.url_id,
                    &creds.access_key_id,
                    &creds.secret_access_key,
                ],
            )?;
            v["status"].as_u64().context("no status")
        };
        let invoke_only = policy(&allow("lambda:InvokeFunction", &format!("{ARN}{f}")));
        let (k1, _) = key(&cluster, &admin, Some(&invoke_only)).await?;
        assert_eq!(status(&k1)?, 403, "InvokeFunction does not open a URL");
        let url_only = policy(&format!(
            r#"{{"Effect":"Allow","Action":"lambda:InvokeFunctionUrl","Resource":"{ARN}{f}","Condition":{{"StringEquals":{{"lambda:FunctionUrlAuthType":"AWS_IAM"}}}}}}"#
        ));
        let (k2, _) = key(&cluster, &admin, Some(&url_only)).await?;
        assert_eq!(status(&k2)?, 200, "lambda:InvokeFunctionUrl opens it");
        assert_eq!(status(&cluster.credentials)?, 200, "the admin key");
        // Granted by the function's resource policy instead.
        assert_eq!(status(&creds)?, 403);
        admin
            .add_permission(v1::AddPermissionRequest {
                function_name: f.clone(),
                statement_id: "url".into(),
                action: "lambda:InvokeFunctionUrl".into(),
                principal: creds.access_key_id.clone(),
                function_url_auth_type: "AWS_IAM".into(),
                ..Default::default()
            })
            .await?;
        assert_eq!(
            status(&creds)?,
            200,
            "AddPermission lambda:InvokeFunctionUrl"
        );
        Ok(())
    });
}

#[test]
fn secure_transport_is_true_over_tls_only() {
    run(async {
        let doc = policy(
            r#"{"Effect":"Allow","Action":"lambda:ListFunctions","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}}"#,
        );
        let tls = Cluster::start_tls(0, &[], &[])?;
        let (_, c) = key(&tls, &tls.client().await?, Some(&doc)).await?;
        c.list_functions().await?;
        let plain = Cluster::start(0)?;
        let (_, c) = key(&plain, &plain.client().await?, Some(&doc)).await?;
        expect_denied("plaintext", c.list_functions().await)?;
        Ok(())
    });
}

/// Keys and roles are resources like any other: `iam:` actions on the key's user ARN or the
/// role's ARN, granted by policy; only an admin key creates, revokes or changes an admin key.
#[test]
fn keys_and_roles_are_managed_by_policy_and_admin_keys_stay_above_it() {
    run(async {
        let cluster = start()?;
        let admin = cluster.client().await?;
        let admin_id = cluster.credentials.access_key_id.clone();
        let (reader_creds, reader) = key(
            &cluster,
            &admin,
            Some(&policy(&format!(
                "{},{}",
                allow("iam:ListAccessKeys", "*"),
                allow("iam:GetUserPolicy", "arn:aws:iam::000000000000:user/*")
            ))),
        )
        .await?;
        // Reading is what the policy allows; nothing else.
        let listed = reader.list_access_keys().await?;
        assert!(listed
            .iter()
            .any(|k| k.access_key_id == reader_creds.access_key_id));
        assert!(reader
            .get_key_policy(&reader_creds.access_key_id)
            .await?
            .is_some_and(|p| p.contains("iam:ListAccessKeys")));
        expect_denied(
            "create a key",
            reader.create_access_key("not allowed", false).await,
        )?;
        expect_denied(
            "revoke a key",
            reader.revoke_access_key(&reader_creds.access_key_id).await,
        )?;
        expect_denied("list roles", reader.list_roles().await)?;

        // A key allowed every iam: action manages keys and roles, but not admin keys.
        let (_, iam_admin) = key(&cluster, &admin, Some(&policy(&allow("iam:*", "*")))).await?;
        let made = iam_admin.create_access_key("made by policy", false).await?;
        iam_admin.revoke_access_key(&made.access_key_id).await?;
        expect_denied(
            "create an admin key",
            iam_admin.create_access_key("escalate", true).await,
        )?;
        expect_denied(
            "revoke the admin key",
            iam_admin.revoke_access_key(&admin_id).await,
        )?;
        expect_denied(
            "change the admin key's policy",
            iam_admin
                .put_key_policy(&admin_id, Some(&policy(&allow("lambda:*", "*"))))
                .await,
        )?;
        let role = unique("role");
        let role_doc = policy(&allow("lambda:GetFunction", "*"));
        iam_admin.create_role(&role, &role_doc, "").await?;
        assert_eq!(iam_admin.get_role(&role).await?.name, role);
        iam_admin.delete_role(&role).await?;
        // The admin key keeps every right.
        let k = admin.create_access_key("admin made", false).await?;
        admin.revoke_access_key(&k.access_key_id).await?;
        Ok(())
    })
}
