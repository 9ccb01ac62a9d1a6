//! The HTTP gateway's test kit: the functions of `tests/functions/http/` (their Python dependencies
//! vendored from `LAMINA_HTTP_DEPS`, installed by `tests/functions/http/install.sh`), `fnctl` with
//! JSON output, and the Python driver `tests/python/http_gateway.py`.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::clients::{tree_entries, zip_entries, Entry};
use crate::{bin, spec, v1, venv, Client, Cluster};

/// Where `tests/functions/http/install.sh` put Powertools, mangum and FastAPI (`python/`).
pub fn deps_dir() -> PathBuf {
    std::env::var_os("LAMINA_HTTP_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/lamina-http-deps"))
}

/// `tests/functions/http/`: the functions' sources.
pub fn functions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("functions/http")
}

fn source(file: &str) -> Result<Entry> {
    let path = functions_dir().join(file);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    Ok(Entry::text(file, &text, 0o644))
}

/// A zip of `files` from `tests/functions/http/` alone.
pub fn source_zip(files: &[&str]) -> Result<Vec<u8>> {
    let entries = files
        .iter()
        .map(|f| source(f))
        .collect::<Result<Vec<_>>>()?;
    Ok(zip_entries(&entries))
}

/// A zip of the installed Python dependencies at its root (as `pip install --target` leaves them,
/// which is where Lambda looks: `/var/task`) and `files` from `tests/functions/http/`.
pub fn python_app_zip(files: &[&str]) -> Result<Vec<u8>> {
    let deps = deps_dir().join("python");
    for package in [
        "aws_lambda_powertools",
        "mangum",
        "fastapi",
        "pydantic_core",
    ] {
        ensure!(
            deps.join(package).is_dir(),
            "{} is missing: run tests/functions/http/install.sh (deploy/test.sh does) to install \
             Powertools, mangum and FastAPI from PyPI",
            deps.join(package).display()
        );
    }
    let mut entries = tree_entries(&deps, "")?;
    for f in files {
        entries.push(source(f)?);
    }
    Ok(zip_entries(&entries))
}

/// Creates function `name` from `zip` (runtime, handler; 1024 MB, 15 s).
pub async fn create(
    client: &Client,
    name: &str,
    runtime: &str,
    handler: &str,
    zip: Vec<u8>,
) -> Result<v1::FunctionConfiguration> {
    let mut s = spec(name, runtime, handler);
    s.timeout_seconds = 15;
    client
        .create_function(s, zip)
        .await
        .with_context(|| format!("create function {name}"))
}

/// Runs `fnctl ARGS` against the cluster; its stdout, or an error with both outputs.
pub fn fnctl(cluster: &Cluster, args: &[&str]) -> Result<String> {
    let out = Command::new(bin("fnctl"))
        .args(args)
        .envs(cluster.fnctl_env())
        .output()
        .context("run fnctl")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "fnctl {args:?} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// `fnctl ARGS -o json`, parsed.
pub fn fnctl_json(cluster: &Cluster, args: &[&str]) -> Result<serde_json::Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = fnctl(cluster, &all)?;
    serde_json::from_str(out.trim())
        .with_context(|| format!("fnctl {all:?} printed no JSON: {out}"))
}

/// A route to add: route key, `function[:qualifier]`, throttle (rate per second, burst).
pub type Route<'a> = (&'a str, &'a str, Option<(f64, u32)>);

/// `fnctl api create NAME --payload-format F` then one `fnctl api route add` per route; the API's
/// id.
pub fn create_api(
    cluster: &Cluster,
    name: &str,
    payload_format: &str,
    routes: &[Route<'_>],
) -> Result<String> {
    let api = fnctl_json(
        cluster,
        &["api", "create", name, "--payload-format", payload_format],
    )?;
    let id = api["ApiId"]
        .as_str()
        .with_context(|| format!("no ApiId in {api}"))?
        .to_string();
    for (key, function, throttle) in routes {
        let (rate, burst) = throttle
            .map(|(r, b)| (r.to_string(), b.to_string()))
            .unzip();
        let mut args = vec!["api", "route", "add", &id, key, "--function", function];
        if let (Some(rate), Some(burst)) = (&rate, &burst) {
            args.extend(["--throttle-rate", rate, "--throttle-burst", burst]);
        }
        let route = fnctl_json(cluster, &args)?;
        ensure!(
            route["RouteKey"] == *key && route["RouteId"].is_string(),
            "fnctl {args:?} answered {route}"
        );
    }
    Ok(id)
}

/// `fnctl url create FUNCTION EXTRA...`: the URL's id (checked against its `FunctionUrl`).
pub fn create_url(cluster: &Cluster, function: &str, extra: &[&str]) -> Result<String> {
    let mut args = vec!["url", "create", function];
    args.extend_from_slice(extra);
    // fnctl requires an auth type, as Lambda does: the tests' URLs are public unless they say.
    if !extra.contains(&"--auth-type") {
        args.extend_from_slice(&["--auth-type", "NONE"]);
    }
    let url = fnctl_json(cluster, &args)?;
    url_id(&url)
}

/// The id of a function URL view (`FunctionUrl` = `http://<id>.lambda-url.us-east-1.localhost:PORT/`).
pub fn url_id(view: &serde_json::Value) -> Result<String> {
    let url = view["FunctionUrl"]
        .as_str()
        .with_context(|| format!("no FunctionUrl in {view}"))?;
    let id = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once(".lambda-url.us-east-1.localhost:"))
        .map(|(id, _)| id)
        .with_context(|| {
            format!("FunctionUrl {url:?} is not http://<id>.lambda-url.us-east-1.localhost:PORT/")
        })?;
    ensure!(
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "a URL id is 32 lowercase letters and digits: {url}"
    );
    Ok(id.to_string())
}

/// Runs `tests/python/http_gateway.py SCENARIO` with `setup` (JSON) against the cluster; its
/// stdout, or an error with its output and the cluster's logs.
pub fn http_gateway_py(
    cluster: &Cluster,
    scenario: &str,
    setup: &serde_json::Value,
) -> Result<String> {
    let python = venv().join("bin/python");
    let ok = Command::new(&python)
        .args([
            "-c",
            "import boto3, requests, aws_lambda_powertools.utilities.parser.models",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ensure!(
        ok,
        "{} cannot import boto3, requests and Powertools' parser models: run deploy/test.sh, or \
         tests/functions/http/install.sh after it created the virtualenv",
        python.display()
    );
    let curl = Command::new("curl").arg("--version").output();
    ensure!(
        curl.map(|o| o.status.success()).unwrap_or(false),
        "curl is missing: run deploy/install-deps.sh"
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/http_gateway.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(scenario)
        .env("LAMINA_HTTP", cluster.http_address()?)
        .env("LAMINA_REST", &cluster.rest_endpoint)
        .env("LAMINA_CREDENTIALS", &cluster.credentials_file)
        .env("LAMINA_HTTP_SETUP", setup.to_string())
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .with_context(|| format!("run {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "http_gateway.py {scenario} failed ({}):\n{stdout}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
    }
    Ok(stdout)
}

/// The value of the script's `KEY=VALUE` line.
pub fn printed(out: &str, key: &str) -> Result<String> {
    out.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("the script printed no {key}=: {out}"))
}

/// The script's `EVENT <kind> <json>` lines.
pub fn printed_events<'a>(out: &'a str, kind: &str) -> Vec<&'a str> {
    out.lines()
        .filter_map(|l| {
            l.strip_prefix("EVENT ")?
                .strip_prefix(kind)?
                .strip_prefix(' ')
        })
        .collect()
}

/// `curl -sS -o /dev/null -w %{http_code} ARGS`: the status code.
pub fn curl_status(args: &[&str]) -> Result<u16> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(args)
        .output()
        .context("run curl (deploy/install-deps.sh installs it)")?;
    let code = String::from_utf8_lossy(&out.stdout);
    code.trim().parse().with_context(|| {
        format!(
            "curl {args:?}: {code} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
