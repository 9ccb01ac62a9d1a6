//! Secrets Manager and SSM Parameter Store (issue 17, item 5) through the real boto3
//! `secretsmanager` and `ssm` clients (tests/python/secrets_api.py): versions and staging labels,
//! deletion with a recovery window, restore, listings, error codes through botocore's exception
//! classes; parameters with versions, paths and SecureStrings; rotation through a real Python
//! rotation function run by a worker; and values sealed at rest.
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use lamina_e2e::*;

/// TEMPORARY until the harness passes TLS or --plaintext itself (as tests/tests/policies.rs).
const PLAINTEXT: &str = "--plaintext";

fn start(workers: usize) -> Result<Cluster> {
    Cluster::start_full(workers, &[PLAINTEXT], &[PLAINTEXT])
}

fn secrets_py(cluster: &Cluster, args: &[&str]) -> Result<String> {
    secrets_py_with(cluster, args, &[])
}

/// `env`: more environment (the limited key of `limited`).
fn secrets_py_with(cluster: &Cluster, args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let python = Path::new("/var/tmp/lamina-venv/bin/python");
    anyhow::ensure!(
        python.exists(),
        "{} is missing: run deploy/test.sh, which installs boto3 there",
        python.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/secrets_api.py");
    let out = Command::new(python)
        .arg(&script)
        .args(args)
        .env("LAMINA_REST", &cluster.rest_endpoint)
        .env("LAMINA_CREDENTIALS", &cluster.credentials_file)
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .envs(env.iter().copied())
        .output()
        .with_context(|| format!("run {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "secrets_api.py {args:?} failed ({}):\n{stdout}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
    }
    Ok(stdout)
}

#[test]
fn boto3_secretsmanager_drives_secrets_versions_and_deletion() {
    run(async {
        let cluster = start(0)?;
        let out = secrets_py(&cluster, &["secrets", &unique("sec")])?;
        assert!(out.contains("secrets passed"), "{out}");
        Ok(())
    });
}

#[test]
fn boto3_ssm_drives_parameters_versions_and_paths() {
    run(async {
        let cluster = start(0)?;
        let out = secrets_py(&cluster, &["parameters", &unique("par")])?;
        assert!(out.contains("parameters passed"), "{out}");
        Ok(())
    });
}

/// A rotation function as Secrets Manager's templates are shaped: one handler, dispatching on
/// `Step`, logging each step it runs (the test reads them back in order).
const ROTATOR: &str = r#"
import json

FAIL_AT = "__FAIL_AT__"

def handler(event, context):
    for key in ("SecretId", "ClientRequestToken", "Step"):
        if key not in event:
            raise ValueError(f"missing {key}")
    step = event["Step"]
    if step not in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        raise ValueError(f"unknown step {step}")
    print("STEP " + json.dumps(event, sort_keys=True))
    if step == FAIL_AT:
        raise RuntimeError("refusing to finish")
    return {}
"#;

#[test]
fn rotate_secret_runs_the_four_steps_through_the_rotation_function() {
    run(async {
        let cluster = start(1)?;
        let c = cluster.client().await?;
        let prefix = unique("rot");
        let (ok_fn, fail_fn) = (format!("{prefix}-ok"), format!("{prefix}-fail"));
        create_python(&c, &ok_fn, &ROTATOR.replace("__FAIL_AT__", "none")).await?;
        create_python(
            &c,
            &fail_fn,
            &ROTATOR.replace("__FAIL_AT__", "finishSecret"),
        )
        .await?;
        let out = secrets_py(&cluster, &["rotation", &prefix, &ok_fn, &fail_fn])?;
        assert!(out.contains("rotation passed"), "{out}");
        let field = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(str::to_string)
                .unwrap_or_else(|| panic!("the script prints {key}: {out}"))
        };
        let (token, arn) = (field("ROTATION_TOKEN="), field("SECRET_ARN="));

        // The completed rotation invoked the function once per step, in order, with the event
        // Secrets Manager sends (after the refused attempt's createSecret and the incomplete
        // attempt's four steps).
        let steps = |events: Vec<lamina_proto::v1::LogEvent>| -> Vec<serde_json::Value> {
            events
                .iter()
                .filter_map(|e| e.message.trim().strip_prefix("STEP "))
                .map(|j| serde_json::from_str(j).expect("a step line is JSON"))
                .collect()
        };
        let ok_steps = steps(c.get_logs(&ok_fn, 0, 0).await?.events);
        let last_four: Vec<&serde_json::Value> = ok_steps.iter().rev().take(4).rev().collect();
        let names: Vec<&str> = last_four
            .iter()
            .map(|e| e["Step"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["createSecret", "setSecret", "testSecret", "finishSecret"],
            "{ok_steps:?}"
        );
        for e in &last_four {
            assert_eq!(e["ClientRequestToken"], token.as_str(), "{e}");
            assert_eq!(e["SecretId"], arn.as_str(), "{e}");
        }
        assert_eq!(
            ok_steps.len(),
            9,
            "the refused attempt ran createSecret only, the incomplete one all four: {ok_steps:?}"
        );
        // The failing function ran every step up to finishSecret, which failed.
        let fail_steps = steps(c.get_logs(&fail_fn, 0, 0).await?.events);
        let names: Vec<&str> = fail_steps
            .iter()
            .map(|e| e["Step"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["createSecret", "setSecret", "testSecret", "finishSecret"]
        );
        Ok(())
    });
}

/// Every file under `dir` (RocksDB's SST, WAL and MANIFEST files included) that contains
/// `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                todo.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() {
            if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(p.display().to_string());
                }
            }
        }
    }
    found
}

#[test]
fn stored_secrets_are_not_found_in_plaintext_under_the_data_directory() {
    run(async {
        let mut cluster = start(0)?;
        let prefix = unique("rest");
        let secret = unique("Zq7-secret-value");
        let param = unique("Zq7-param-value");
        let plain = unique("Zq7-plain-value");
        let out = secrets_py(&cluster, &["store", &prefix, &secret, &param, &plain])?;
        assert!(out.contains("store passed"), "{out}");
        // Stop the controller: its memtables are flushed and every file is closed.
        cluster.controller.stop();
        let data = cluster.dir.path().join("controller");
        // The check sees what is stored: a plain String parameter is there as it was sent.
        let plain_files = files_containing(&data, plain.as_bytes());
        assert!(
            !plain_files.is_empty(),
            "the plain parameter is stored somewhere under {}",
            data.display()
        );
        // Nor in the processes' logs: the whole test directory is searched.
        for needle in [secret.as_str(), param.as_str()] {
            let found = files_containing(cluster.dir.path(), needle.as_bytes());
            assert!(found.is_empty(), "{needle} in plaintext in {found:?}");
        }
        let binary = format!("{secret}-binary");
        assert!(files_containing(cluster.dir.path(), binary.as_bytes()).is_empty());
        Ok(())
    });
}

/// Every operation is authorised through the controller's policies with Secrets Manager's and
/// SSM's action names on the secret's and parameter's ARNs: a key allowed to read one secret and
/// one parameter reads them and is refused everything else (AccessDeniedException).
#[test]
fn a_key_reads_only_the_secret_and_parameter_its_policy_allows() {
    run(async {
        let cluster = start(0)?;
        let admin = cluster.client().await?;
        let prefix = unique("lim");
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[
                {{"Effect":"Allow","Action":["secretsmanager:GetSecretValue","secretsmanager:DescribeSecret"],
                  "Resource":"arn:aws:secretsmanager:us-east-1:000000000000:secret:{prefix}/allowed-*"}},
                {{"Effect":"Allow","Action":"ssm:GetParameter*",
                  "Resource":"arn:aws:ssm:us-east-1:000000000000:parameter/{prefix}/allowed"}}]}}"#
        );
        let key = admin
            .create_access_key_with_policy("secrets test", false, Some(&policy))
            .await?;
        let out = secrets_py_with(
            &cluster,
            &["limited", &prefix],
            &[
                ("LIMITED_KEY_ID", &key.access_key_id),
                ("LIMITED_SECRET", &key.secret_access_key),
            ],
        )?;
        assert!(out.contains("limited passed"), "{out}");
        Ok(())
    });
}
