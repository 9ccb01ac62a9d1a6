//! Execution roles (issue 17, item 4) end to end: a Python function with a role runs the real
//! boto3 (vendored into its zip from the tests' virtualenv) inside its sandbox, signing with the
//! session credentials Lamina put in its environment, through the sandbox's AWS endpoint
//! (`AWS_ENDPOINT_URL`) to the controller: what the role's policy allows works (one secret, one
//! function), everything else is AccessDenied; the Parameters and Secrets extension on
//! localhost:2773 answers GetSecretValue's JSON only with the session token; a function without a
//! role has no credentials and no endpoints; the credentials are refused after their expiry
//! (`--session-ttl-secs`), and appear neither in GetFunction nor in the logs.
//! A rotation function (AWS's template, tests/functions/roles/rotator.py) rotates its secret
//! through its role while RotateSecret waits; one whose role lacks PutSecretValue fails the rotation.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use lamina_e2e::*;

/// Session lifetime of the test's controller: long enough for a cold start with boto3's import,
/// short enough to watch credentials expire.
const TTL_SECS: u64 = 20;

fn roles_py(cluster: &Cluster, args: &[&str]) -> Result<serde_json::Value> {
    let python = venv().join("bin/python");
    anyhow::ensure!(
        python.exists(),
        "{} is missing: run deploy/test.sh, which installs boto3 there",
        python.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/roles.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(args)
        .env("LAMINA_REST", &cluster.rest_endpoint)
        .env("LAMINA_CREDENTIALS", &cluster.credentials_file)
        .env_remove("AWS_CA_BUNDLE")
        .envs(cluster.aws_ca_env())
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .with_context(|| format!("run {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "roles.py {} failed ({}):\n{stdout}\n{}\n{}",
            args[0],
            out.status,
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
    }
    serde_json::from_str(stdout.trim()).with_context(|| format!("roles.py printed {stdout}"))
}

fn copy_tree(from: &Path, to: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        if skip(&path) || entry.file_name() == "__pycache__" {
            continue;
        }
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&path, &dest, skip)?;
        } else if entry.file_type()?.is_file() {
            std::fs::copy(&path, &dest)?;
        }
    }
    Ok(())
}

/// A directory with `source` as `app.py` and boto3 with what it imports, from the tests'
/// virtualenv (the sandbox hides the host's packages). botocore keeps the service models this
/// function uses only.
fn caller_code(dir: &Path, source: &Path) -> Result<PathBuf> {
    let site = venv().join("lib/python3.11/site-packages");
    let code = dir.join("caller-code");
    for package in [
        "boto3",
        "botocore",
        "s3transfer",
        "jmespath",
        "dateutil",
        "urllib3",
    ] {
        let keep = ["lambda", "secretsmanager", "ssm", "sts"];
        let data = site.join("botocore/data");
        copy_tree(&site.join(package), &code.join(package), &|p: &Path| {
            p.parent() == Some(data.as_path())
                && p.is_dir()
                && !keep.iter().any(|k| p.file_name().is_some_and(|n| n == *k))
        })
        .with_context(|| format!("vendor {package} from {}", site.display()))?;
    }
    std::fs::copy(site.join("six.py"), code.join("six.py"))?;
    std::fs::copy(source, code.join("app.py"))?;
    Ok(code)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("functions/roles")
        .join(name)
}

const PONG: &str = "def handler(event, context):\n    return {\"pong\": event}\n";

#[test]
fn a_role_s_session_credentials_reach_what_its_policy_allows_and_nothing_else() {
    run(async {
        let ttl = TTL_SECS.to_string();
        let cluster = Cluster::start_full(1, &["--session-ttl-secs", &ttl], &[])?;
        let client = cluster.client().await?;
        let (allowed_secret, other_secret) = (unique("allowed"), unique("other"));
        let parameter = format!("/{}/db-password", unique("app"));
        let arns = roles_py(
            &cluster,
            &["setup", &allowed_secret, &other_secret, &parameter],
        )?;
        let allowed_arn = arns[&allowed_secret].as_str().context("allowed ARN")?;

        let (target, other_fn) = (unique("target"), unique("other-fn"));
        create_python(&client, &target, PONG).await?;
        create_python(&client, &other_fn, PONG).await?;

        let role = unique("reader");
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"], "Resource": allowed_arn},
                {"Effect": "Allow", "Action": "ssm:GetParameter",
                 "Resource": format!("arn:aws:ssm:us-east-1:000000000000:parameter{parameter}")},
                {"Effect": "Allow", "Action": "lambda:InvokeFunction",
                 "Resource": format!("arn:aws:lambda:us-east-1:000000000000:function:{target}")}
            ]
        });
        let created = client
            .create_role(&role, &policy.to_string(), "reads one secret")
            .await?;
        assert_eq!(
            created.arn,
            format!("arn:aws:iam::000000000000:role/{role}")
        );
        assert_eq!(client.get_role(&role).await?.policy, policy.to_string());
        assert!(client.list_roles().await?.iter().any(|r| r.name == role));

        let dir = tempfile::tempdir()?;
        let code = caller_code(dir.path(), &fixture("caller.py"))?;
        let zip = lamina_client::code::load_code(&code)?;
        let caller = unique("caller");
        let mut s = spec(&caller, "python3.11", "app.handler");
        s.timeout_seconds = 30;
        s.memory_size_mb = 512;
        s.role = created.arn.clone();
        client.create_function(s, zip).await?;

        let event = serde_json::json!({
            "allowed_secret": allowed_secret,
            "other_secret": other_secret,
            "allowed_function": target,
            "other_function": other_fn,
            "parameter": parameter,
            "reveal_credentials": true,
        });
        let resp = invoke(&client, &caller, &event.to_string()).await?;
        anyhow::ensure!(
            resp.function_error.is_empty(),
            "the caller failed: {}\n{}\n{}",
            String::from_utf8_lossy(&resp.payload),
            resp.log_tail,
            cluster.logs()
        );
        let out = json(&resp);
        assert_eq!(out["endpoint"], "http://127.0.0.1:9002", "{out}");
        assert_eq!(out["allowed_secret"], "value-of-allowed", "{out}");
        assert_eq!(out["other_secret"], "AccessDeniedException", "{out}");
        assert_eq!(out["allowed_function"]["pong"]["from"], "caller", "{out}");
        assert_eq!(out["other_function"], "AccessDeniedException", "{out}");
        assert_eq!(out["list_functions"], "AccessDeniedException", "{out}");
        // Refused by the worker's forwarder (the controller would not know the key:
        // UnrecognizedClientException).
        assert_eq!(out["foreign_key"], "AccessDeniedException", "{out}");
        // The extension: GetSecretValue's JSON with the token, cached, refused without it.
        let ext = &out["extension"];
        assert_eq!(ext["status"], 200, "{out}");
        assert_eq!(ext["body"]["SecretString"], "value-of-allowed", "{out}");
        assert_eq!(ext["body"]["Name"], allowed_secret.as_str(), "{out}");
        assert_eq!(ext["body"]["ARN"], allowed_arn, "{out}");
        assert!(ext["body"]["VersionStages"]
            .as_array()
            .is_some_and(|s| s.iter().any(|v| v == "AWSCURRENT")));
        // Cached: the value written since is not seen through the extension for 300 s...
        assert_eq!(out["extension_again"], ext["body"], "{out}");
        // ...while GetSecretValue sees it at once.
        assert_eq!(out["allowed_secret_now"], "value-of-allowed-2", "{out}");
        // SSM through the extension: GetParameter's JSON, decrypted.
        let p = &out["extension_parameter"];
        assert_eq!(p["status"], 200, "{out}");
        assert_eq!(p["body"]["Parameter"]["Value"], "parameter-value", "{out}");
        assert_eq!(p["body"]["Parameter"]["Name"], parameter.as_str(), "{out}");
        assert_eq!(p["body"]["Parameter"]["Type"], "SecureString", "{out}");
        assert_eq!(out["extension_without_token"], 401, "{out}");
        assert_eq!(out["extension_wrong_token"], 403, "{out}");
        // The role does not allow the other secret: refused upstream, passed on as an error.
        assert!(
            out["extension_other_secret"]
                .as_u64()
                .is_some_and(|c| (400..500).contains(&c)),
            "{out}"
        );

        // The same credentials from outside: valid now (they are the role's, nothing more)...
        let creds = &out["credentials"];
        let (akid, secret, token) = (
            creds["AWS_ACCESS_KEY_ID"]
                .as_str()
                .context("key")?
                .to_string(),
            creds["AWS_SECRET_ACCESS_KEY"]
                .as_str()
                .context("secret")?
                .to_string(),
            creds["AWS_SESSION_TOKEN"]
                .as_str()
                .context("token")?
                .to_string(),
        );
        assert!(akid.starts_with("ASIA"), "{akid}");
        let used = roles_py(&cluster, &["use", &akid, &secret, &token, &allowed_secret])?;
        assert_eq!(used["code"], "ok", "{used}");
        let denied = roles_py(&cluster, &["use", &akid, &secret, &token, &other_secret])?;
        assert_eq!(denied["code"], "AccessDeniedException", "{denied}");
        // ...not without their token...
        let forged = roles_py(
            &cluster,
            &["use", &akid, &secret, "forged", &allowed_secret],
        )?;
        assert_ne!(forged["code"], "ok", "{forged}");

        // ...never shown by GetFunction or the logs.
        let f = client.get_function(&caller).await?;
        let shown = format!("{f:?}");
        assert!(
            !shown.contains(&akid) && !shown.contains(&secret),
            "{shown}"
        );
        let logs = format!("{}{}", resp.log_tail, cluster.logs());
        assert!(
            !logs.contains(&secret) && !logs.contains(&token),
            "a credential reached the logs"
        );

        // Deleting the role ends its sessions at once.
        client.delete_role(&role).await?;
        let gone = roles_py(&cluster, &["use", &akid, &secret, &token, &allowed_secret])?;
        assert_ne!(gone["code"], "ok", "{gone}");
        Ok(())
    });
}

#[test]
fn session_credentials_are_refused_after_they_expire() {
    run(async {
        let ttl = TTL_SECS.to_string();
        let cluster = Cluster::start_full(1, &["--session-ttl-secs", &ttl], &[])?;
        let client = cluster.client().await?;
        let (allowed_secret, other_secret) = (unique("allowed"), unique("other"));
        let arns = roles_py(&cluster, &["setup", &allowed_secret, &other_secret])?;
        let allowed_arn = arns[&allowed_secret].as_str().context("allowed ARN")?;
        let role = unique("reader");
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": allowed_arn}]
        });
        client.create_role(&role, &policy.to_string(), "").await?;
        // The role's credentials as a function sees them (its environment, nothing else).
        let name = unique("env");
        let source = "import os\ndef handler(event, context):\n    return {k: os.environ[k] for k in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN')}\n";
        let mut s = spec(&name, "python3.11", "app.handler");
        s.role = format!("arn:aws:iam::000000000000:role/{role}");
        client
            .create_function(s, zip_of(&[("app.py", source, 0o644)]))
            .await?;
        let out = json(&invoke(&client, &name, "{}").await?);
        let arg = |k: &str| out[k].as_str().map(str::to_string).context("credential");
        let (akid, secret, token) = (
            arg("AWS_ACCESS_KEY_ID")?,
            arg("AWS_SECRET_ACCESS_KEY")?,
            arg("AWS_SESSION_TOKEN")?,
        );
        let used = roles_py(&cluster, &["use", &akid, &secret, &token, &allowed_secret])?;
        assert_eq!(used["code"], "ok", "{used}");
        std::thread::sleep(std::time::Duration::from_secs(TTL_SECS + 1));
        let expired = roles_py(&cluster, &["use", &akid, &secret, &token, &allowed_secret])?;
        assert_eq!(expired["code"], "ExpiredTokenException", "{expired}");
        // A new invocation gets a sandbox with fresh credentials that work.
        let out = json(&invoke(&client, &name, "{}").await?);
        let fresh = out["AWS_ACCESS_KEY_ID"].as_str().context("fresh key")?;
        assert_ne!(fresh, akid, "an expired sandbox was reused");
        let used = roles_py(
            &cluster,
            &[
                "use",
                fresh,
                out["AWS_SECRET_ACCESS_KEY"].as_str().context("secret")?,
                out["AWS_SESSION_TOKEN"].as_str().context("token")?,
                &allowed_secret,
            ],
        )?;
        assert_eq!(used["code"], "ok", "{used}");
        Ok(())
    });
}

#[test]
fn a_function_without_a_role_gets_no_credentials_and_no_endpoints() {
    run(async {
        let cluster = Cluster::start(1)?;
        let client = cluster.client().await?;
        let source = std::fs::read_to_string(fixture("plain.py"))?;
        // No role, and a role ARN naming no Lamina role: the same.
        for role in ["", "arn:aws:iam::000000000000:role/no-such-role"] {
            let name = unique("plain");
            let mut s = spec(&name, "python3.11", "app.handler");
            s.role = role.to_string();
            client
                .create_function(s, zip_of(&[("app.py", &source, 0o644)]))
                .await?;
            let out = json(&invoke(&client, &name, "{\"x\":1}").await?);
            assert_eq!(out["present"], serde_json::json!([]), "{role}: {out}");
            assert_eq!(out["aws_endpoint_refused"], true, "{role}: {out}");
            assert_eq!(out["extension_refused"], true, "{role}: {out}");
        }
        Ok(())
    });
}

#[test]
fn giving_a_function_a_role_needs_iam_pass_role() {
    run(async {
        let cluster = Cluster::start(0)?;
        let admin = cluster.client().await?;
        let role = unique("powerful");
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        let arn = admin.create_role(&role, policy, "").await?.arn;
        let functions = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["lambda:CreateFunction","lambda:UpdateFunctionConfiguration"],"Resource":"*"}]}"#;
        let pass = serde_json::json!({"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":["lambda:CreateFunction","lambda:UpdateFunctionConfiguration"],"Resource":"*"},
            {"Effect":"Allow","Action":"iam:PassRole","Resource":arn}]});
        let key = |k: lamina_proto::v1::AccessKey| lamina_client::Credentials {
            access_key_id: k.access_key_id,
            secret_access_key: k.secret_access_key,
        };
        let without = key(admin
            .create_access_key_with_policy("no PassRole", false, Some(functions))
            .await?);
        let with = key(admin
            .create_access_key_with_policy("PassRole", false, Some(&pass.to_string()))
            .await?);
        let without = cluster.client_with(Some(without)).await?;
        let with = cluster.client_with(Some(with)).await?;
        let zip = || zip_of(&[("app.py", PONG, 0o644)]);
        let with_role = |name: &str| {
            let mut s = spec(name, "python3.11", "app.handler");
            s.role = arn.clone();
            s
        };

        let refused = without
            .create_function(with_role(&unique("f")), zip())
            .await
            .expect_err("a role was passed without iam:PassRole");
        assert!(refused.to_string().contains("iam:PassRole"), "{refused}");
        // Without a role, or with a role ARN that is not one of the cluster's: no PassRole needed.
        let plain = unique("f");
        without
            .create_function(spec(&plain, "python3.11", "app.handler"), zip())
            .await?;
        let update = lamina_proto::v1::UpdateFunctionConfigurationRequest {
            function_name: plain.clone(),
            role: Some(arn.clone()),
            ..Default::default()
        };
        let refused = without
            .update_function_configuration(update.clone())
            .await
            .expect_err("a role was set without iam:PassRole");
        assert!(refused.to_string().contains("iam:PassRole"), "{refused}");

        with.create_function(with_role(&unique("f")), zip()).await?;
        with.update_function_configuration(update).await?;
        Ok(())
    });
}

/// With TLS on every listener the worker reaches the REST API over TLS, trusting the cluster's
/// CA: the extension (no SDK needed) reads the role's secret through it.
#[test]
fn the_role_endpoints_reach_a_tls_controller() {
    run(async {
        let cluster = Cluster::start_tls(1, &[], &[])?;
        anyhow::ensure!(
            cluster.rest_endpoint.starts_with("https://"),
            "{}",
            cluster.rest_endpoint
        );
        let client = cluster.client().await?;
        let (allowed_secret, other_secret) = (unique("allowed"), unique("other"));
        let arns = roles_py(&cluster, &["setup", &allowed_secret, &other_secret])?;
        let allowed_arn = arns[&allowed_secret].as_str().context("allowed ARN")?;
        let role = unique("reader");
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": allowed_arn}]
        });
        let arn = client
            .create_role(&role, &policy.to_string(), "")
            .await?
            .arn;
        let source = r#"
import json, os, urllib.parse, urllib.request
def handler(event, context):
    req = urllib.request.Request(
        "http://localhost:2773/secretsmanager/get?secretId=" + urllib.parse.quote(event["id"], safe=""),
        headers={"X-Aws-Parameters-Secrets-Token": os.environ["AWS_SESSION_TOKEN"]})
    return json.loads(urllib.request.urlopen(req, timeout=20).read())
"#;
        let name = unique("tls-reader");
        let mut s = spec(&name, "python3.11", "app.handler");
        s.role = arn;
        client
            .create_function(s, zip_of(&[("app.py", source, 0o644)]))
            .await?;
        let payload = serde_json::json!({ "id": allowed_secret }).to_string();
        let resp = invoke(&client, &name, &payload).await?;
        anyhow::ensure!(
            resp.function_error.is_empty(),
            "{}\n{}\n{}",
            String::from_utf8_lossy(&resp.payload),
            resp.log_tail,
            cluster.logs()
        );
        assert_eq!(json(&resp)["SecretString"], "value-of-allowed");
        Ok(())
    });
}

/// A rotation function deployed with `rotator.py` and a role allowing `actions` on `secret_arn`.
async fn rotation_function(
    cluster: &Cluster,
    dir: &Path,
    secret_arn: &str,
    actions: &[&str],
) -> Result<String> {
    let client = cluster.client().await?;
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": secret_arn}]
    });
    let role = client
        .create_role(
            &unique("rotator-role"),
            &policy.to_string(),
            "rotates one secret",
        )
        .await?;
    let code = caller_code(dir, &fixture("rotator.py"))?;
    let name = unique("rotator");
    let mut s = spec(&name, "python3.11", "app.handler");
    s.timeout_seconds = 60;
    s.memory_size_mb = 512;
    s.role = role.arn;
    client
        .create_function(s, lamina_client::code::load_code(&code)?)
        .await?;
    Ok(name)
}

/// Secret rotation as in AWS: RotateSecret invokes the rotation function (AWS's template: it
/// puts the AWSPENDING version, reads it back, moves AWSCURRENT) for each step, and the function
/// does the work through its role, on the same secret, while RotateSecret waits (no lock of the
/// secret is held across the invocations). A function whose role lacks PutSecretValue fails the
/// rotation at createSecret with AWSCURRENT unchanged.
#[test]
fn a_rotation_function_rotates_its_secret_through_its_role() {
    run(async {
        let cluster = Cluster::start_full(1, &[], &[])?;
        let (ok_secret, denied_secret) = (unique("rotated"), unique("not-rotated"));
        let arns = roles_py(&cluster, &["json-secrets", &ok_secret, &denied_secret])?;
        let ok_arn = arns[&ok_secret].as_str().context("ARN")?;
        let denied_arn = arns[&denied_secret].as_str().context("ARN")?;
        let all = [
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
            "secretsmanager:DescribeSecret",
        ];
        let dir = tempfile::tempdir()?;
        let ok_fn = rotation_function(&cluster, &dir.path().join("ok"), ok_arn, &all).await?;
        let no_put: Vec<&str> = all
            .into_iter()
            .filter(|a| *a != "secretsmanager:PutSecretValue")
            .collect();
        let denied_fn =
            rotation_function(&cluster, &dir.path().join("denied"), denied_arn, &no_put).await?;

        let out = roles_py(
            &cluster,
            &["rotate", &ok_secret, &ok_fn, &denied_secret, &denied_fn],
        )?;
        let answer = &out["answer"];
        let (new, old) = (
            answer["new"].as_str().unwrap(),
            answer["old"].as_str().unwrap(),
        );
        assert_eq!(answer["arn"], ok_arn, "{out}");
        assert_ne!(new, old, "{out}");
        // The function's random password is current, the old one previous, AWSPENDING gone.
        let current = out["current"].as_str().unwrap_or_default();
        assert_eq!(current.len(), 32, "{out}");
        assert_ne!(current, "old-password", "{out}");
        assert_eq!(out["current_version"], new, "{out}");
        assert_eq!(out["previous"], "old-password", "{out}");
        assert_eq!(out["previous_version"], old, "{out}");
        assert_eq!(out["pending"], "ResourceNotFoundException", "{out}");
        assert_eq!(
            out["stages"],
            serde_json::json!({ new: ["AWSCURRENT"], old: ["AWSPREVIOUS"] }),
            "{out}"
        );
        assert_eq!(out["rotation_enabled"], true, "{out}");
        assert_eq!(
            out["rotation_lambda"],
            format!("arn:aws:lambda:us-east-1:000000000000:function:{ok_fn}"),
            "{out}"
        );
        assert_eq!(out["last_rotated"], true, "{out}");
        // Rotating again (the configured function) moves on from the rotated version.
        assert_eq!(out["second"]["current_is_second"], true, "{out}");
        assert_eq!(out["second"]["previous_is_first"], true, "{out}");
        let second = &out["second"]["stages"];
        assert_eq!(second[new], serde_json::json!(["AWSPREVIOUS"]), "{out}");
        assert!(
            second.get(old).is_none_or(|s| s == &serde_json::json!([])),
            "the first version has no label left: {out}"
        );

        // The role without PutSecretValue: createSecret's PutSecretValue is refused, so the
        // rotation fails there and nothing moves.
        let denied = &out["denied"];
        assert_eq!(denied["code"], "InvalidRequestException", "{out}");
        let message = denied["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("createSecret") && message.contains("AccessDenied"),
            "{out}"
        );
        assert_eq!(denied["current_version_unchanged"], true, "{out}");
        assert_eq!(denied["current"], "old-password", "{out}");
        assert_eq!(
            denied["stages"].as_object().map(|m| m.len()),
            Some(1),
            "{out}"
        );
        assert_eq!(denied["last_rotated"], false, "{out}");
        Ok(())
    });
}
