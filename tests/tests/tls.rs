//! TLS on every listener (issue 17): the controller's gRPC, REST and gateway ports and the workers'
//! ports speak TLS 1.3 with the cluster CA's chain (`openssl s_client`), boto3 verifies the REST
//! API against the CA and refuses it without, a worker without a certificate from the cluster CA
//! cannot register, plaintext is refused off loopback, and invocations run over mTLS.
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use lamina_e2e::{bin, create_python, invoke, json, require_root, run, unique, Cluster};
use lamina_proto::auth::{Signed, CLUSTER_KEY_ID};
use lamina_proto::certs::Authority;
use lamina_proto::tls::{client_config, load_roots, TlsConnect};
use lamina_proto::v1::cluster_client::ClusterClient;

/// `openssl s_client` against `addr`; returns its output.
fn s_client(addr: &str, ca: &std::path::Path, extra: &[&str]) -> Result<String> {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-showcerts", "-CAfile"])
        .arg(ca)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .context("run openssl s_client")?;
    Ok(format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

#[test]
fn every_listener_speaks_tls_1_3_with_the_cluster_chain() {
    require_root();
    let cluster = Cluster::start_tls(1, &[], &[]).unwrap();
    let tls = cluster.tls.as_ref().unwrap();
    let controller_cert = tls.controller.cert.display().to_string();
    let controller_key = tls.controller.key.display().to_string();
    let listeners = [
        (
            "grpc",
            cluster.controller.address.clone(),
            vec!["-alpn", "h2"],
        ),
        (
            "rest",
            cluster.controller.rest_address.clone().unwrap(),
            vec![],
        ),
        ("http", cluster.http_address().unwrap(), vec![]),
        (
            // The worker asks for a client certificate: the controller's.
            "worker",
            cluster.workers[0].address.clone(),
            vec![
                "-alpn",
                "h2",
                "-cert",
                &controller_cert,
                "-key",
                &controller_key,
            ],
        ),
    ];
    for (name, addr, extra) in listeners {
        let out = s_client(&addr, &tls.ca, &extra).unwrap();
        assert!(
            out.contains("TLSv1.3"),
            "{name} {addr}: not TLS 1.3:\n{out}"
        );
        assert!(
            out.contains("Verify return code: 0 (ok)"),
            "{name} {addr}: the chain does not verify against the CA:\n{out}"
        );
        assert!(
            out.contains("Lamina cluster CA"),
            "{name} {addr}: not issued by the cluster CA:\n{out}"
        );
    }
    // The gateway answers HTTP/1.1 and HTTP/2 (ALPN) over TLS: an unknown URL id is a 404.
    let http = cluster.http_address().unwrap();
    for version in ["--http1.1", "--http2"] {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-m",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ])
            .arg("--cacert")
            .arg(&tls.ca)
            .arg(version)
            .arg(format!("https://{http}/nosuchurlid/"))
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        let want = if version == "--http2" {
            "2 404"
        } else {
            "1.1 404"
        };
        assert_eq!(got, want, "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Plain HTTP on the REST port is not answered as HTTP.
    let rest = cluster.controller.rest_address.clone().unwrap();
    let plain = Command::new("curl")
        .args([
            "-sS",
            "-m",
            "5",
            &format!("http://{rest}/2015-03-31/functions"),
        ])
        .output()
        .unwrap();
    assert!(!plain.status.success(), "plain http was answered");
}

#[test]
fn invocations_and_fnctl_run_over_tls() {
    require_root();
    let cluster = Cluster::start_tls(1, &[], &[]).unwrap();
    assert!(cluster.endpoint.starts_with("https://"));
    let name = unique("tls");
    run(async {
        let c = cluster.client().await?;
        create_python(
            &c,
            &name,
            "def handler(e, c):\n    return {'n': e['n'] + 1}\n",
        )
        .await?;
        // Controller -> worker over mTLS, twice (cold, then warm).
        for n in [1, 2] {
            let r = invoke(&c, &name, &format!(r#"{{"n": {n}}}"#)).await?;
            ensure!(json(&r)["n"] == n + 1, "{r:?}\n{}", cluster.logs());
        }
        // A client that does not trust the CA is refused.
        let stranger = tempfile::tempdir()?;
        let other = Authority::load_or_create(stranger.path())?;
        let refused = lamina_client::Client::connect_tls(
            &cluster.endpoint,
            Some(cluster.credentials.clone()),
            Some(&other.ca_path()),
        )
        .await;
        ensure!(refused.is_err(), "a client trusting another CA connected");
        Ok(())
    });
    // fnctl with FNCTL_CA (against fnctl up's own cluster, which finds the CA beside the
    // credentials: tests/tests/cli.rs).
    let out = Command::new(bin("fnctl"))
        .args(["invoke", &name, "--payload", r#"{"n": 41}"#])
        .envs(cluster.fnctl_env())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("42"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin("fnctl"))
        .args(["get", &name])
        .envs(cluster.fnctl_env())
        .env("FNCTL_CA", "/nonexistent/ca.pem")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("/nonexistent/ca.pem"),
        "{stderr}"
    );
}

const BOTO3: &str = r#"
import json, sys
import boto3, botocore.config, botocore.exceptions
endpoint, creds_file, ca, other_ca = sys.argv[1:5]
creds = json.load(open(creds_file))
def client(verify):
    return boto3.client('lambda', endpoint_url=endpoint, region_name='us-east-1',
                        aws_access_key_id=creds['accessKeyId'],
                        aws_secret_access_key=creds['secretAccessKey'], verify=verify,
                        config=botocore.config.Config(retries={'max_attempts': 1}))
print('functions', len(client(ca).list_functions()['Functions']))
# Refused before its body is read: the answer still reaches the client over TLS.
try:
    client(ca).invoke(FunctionName='nosuch', Payload=b'x' * (7 * 1024 * 1024))
except botocore.exceptions.ClientError as e:
    print('too large', e.response['Error']['Code'])
for name, verify in [('default-bundle', True), ('other-ca', other_ca)]:
    try:
        client(verify).list_functions()
        print('accepted', name)
    except botocore.exceptions.SSLError as e:
        print('refused', name)
"#;

#[test]
fn boto3_verifies_the_rest_api_against_the_cluster_ca() {
    require_root();
    let cluster = Cluster::start_tls(0, &[], &[]).unwrap();
    assert!(cluster.rest_endpoint.starts_with("https://"));
    let stranger = tempfile::tempdir().unwrap();
    let other = Authority::load_or_create(stranger.path()).unwrap();
    let python = lamina_e2e::venv().join("bin/python");
    let out = Command::new(&python)
        .args(["-c", BOTO3, &cluster.rest_endpoint])
        .arg(&cluster.credentials_file)
        .arg(cluster.ca().unwrap())
        .arg(other.ca_path())
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("functions 0"), "{stdout}");
    assert!(
        stdout.contains("too large RequestTooLargeException"),
        "{stdout}"
    );
    assert!(stdout.contains("refused default-bundle"), "{stdout}");
    assert!(stdout.contains("refused other-ca"), "{stdout}");
}

#[test]
fn a_worker_without_a_certificate_from_the_cluster_ca_cannot_register() {
    require_root();
    let cluster = Cluster::start_tls(0, &[], &[]).unwrap();
    let tls = cluster.tls.as_ref().unwrap();

    // No client certificate at all: the TLS handshake succeeds (users have none), but the
    // Cluster service refuses, even with the cluster credential.
    run(async {
        let roots = load_roots(&tls.ca)?;
        let channel = tonic::transport::Endpoint::from_shared(lamina_proto::tls::tonic_uri(
            &cluster.endpoint,
        ))?
        .connect_with_connector(TlsConnect::new(client_config(roots, None)?))
        .await?;
        let creds = cluster.cluster_credentials()?;
        assert_eq!(creds.access_key_id, CLUSTER_KEY_ID);
        let mut client = ClusterClient::new(Signed::new(channel, Some(creds)));
        let refused = client
            .register_worker(lamina_proto::v1::RegisterWorkerRequest {
                worker_id: "intruder".into(),
                address: "127.0.0.1:1".into(),
                memory_total_mb: 1024,
            })
            .await
            .expect_err("registered without a client certificate");
        ensure!(
            refused.code() == tonic::Code::Unauthenticated
                && refused.message().contains("client certificate"),
            "{refused:?}"
        );
        Ok(())
    });

    // A real worker whose certificate another CA signed: its handshake is refused, it never
    // registers.
    let stranger = tempfile::tempdir().unwrap();
    let other = Authority::load_or_create(stranger.path()).unwrap();
    let forged = other.issue("worker", &[]).unwrap();
    let id = unique("w-forged");
    let log = cluster.dir.path().join(format!("{id}.log"));
    let mut worker = Command::new(bin("lamina-worker"))
        .args(["--controller", &cluster.endpoint, "--listen", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(cluster.dir.path().join(&id))
        .args(["--worker-id", &id])
        .arg("--cluster-token-file")
        .arg(&cluster.cluster_token_file)
        .args(lamina_e2e::tls::tls_args(&forged, &tls.ca))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let workers = run_get(async {
        let c = cluster.client().await?;
        Ok(c.list_workers().await?)
    });
    let _ = worker.kill();
    let _ = worker.wait();
    lamina_e2e::reap_worker_sandboxes(&id);
    assert!(
        workers.iter().all(|w| w.worker_id != id),
        "the forged worker registered: {workers:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.to_lowercase().contains("regist"), "{text}");
}

fn run_get<T>(f: impl std::future::Future<Output = Result<T>>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
        .unwrap()
}

#[test]
fn plaintext_is_refused_off_loopback_and_tls_material_is_required() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let controller = |extra: &[&str]| {
        let out = Command::new(bin("lamina-controller"))
            .args([
                "--rest-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(&data)
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = controller(&["--listen", "127.0.0.1:0"]);
    assert!(
        !ok && err.contains("--tls-cert") && err.contains("--plaintext"),
        "{err}"
    );
    let (ok, err) = controller(&["--listen", "0.0.0.0:0", "--plaintext"]);
    assert!(
        !ok && err.contains("loopback") && err.contains("--listen is 0.0.0.0:0"),
        "{err}"
    );
    // Refused before anything was created.
    assert!(!data.exists(), "the data directory was created");

    let worker = |extra: &[&str]| {
        let out = Command::new(bin("lamina-worker"))
            .arg("--state-dir")
            .arg(dir.path().join("worker"))
            .args(["--cluster-token-file", "/nonexistent"])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = worker(&["--listen", "127.0.0.1:0"]);
    assert!(
        !ok && err.contains("--tls-cert") && err.contains("--plaintext"),
        "{err}"
    );
    let (ok, err) = worker(&["--listen", "0.0.0.0:0", "--plaintext"]);
    assert!(!ok && err.contains("--listen is 0.0.0.0:0"), "{err}");
    let (ok, err) = worker(&[
        "--listen",
        "127.0.0.1:0",
        "--plaintext",
        "--controller",
        "http://192.0.2.1:9670",
    ]);
    assert!(
        !ok && err.contains("--controller is http://192.0.2.1:9670"),
        "{err}"
    );
}
