//! Authentication on every route: REST (SigV4), the gRPC API (access keys), the controller's
//! `Cluster` service and the worker's `Invoke` (the cluster credential). Unsigned requests, wrong
//! secrets, unknown keys, tampered bodies and expired dates are refused; revoked keys stop
//! working; secrets stay out of logs, function environments and `fnctl` output.
use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full};
use lamina_e2e::*;
use lamina_proto::auth::{now_ms, sign, Credentials, DATE_HEADER};
use tonic::body::BoxBody;
use tonic::transport::Channel;
use tonic::Code;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Forgery {
    Unsigned,
    Honest,
    WrongSecret,
    UnknownKey,
    TamperedBody,
    Expired,
}

const FORGERIES: [Forgery; 5] = [
    Forgery::Unsigned,
    Forgery::WrongSecret,
    Forgery::UnknownKey,
    Forgery::TamperedBody,
    Forgery::Expired,
];

/// A channel that signs like `lamina_proto::auth::Signed`, then forges as told.
#[derive(Clone)]
struct Forged {
    inner: Channel,
    creds: Credentials,
    how: Forgery,
}

impl tower_service::Service<http::Request<BoxBody>> for Forged {
    type Response = http::Response<BoxBody>;
    type Error = tonic::transport::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
        // The clone that was polled ready is the one to call (tower's buffer insists).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (mut creds, how) = (self.creds.clone(), self.how);
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let mut bytes = body
                .collect()
                .await
                .expect("request body")
                .to_bytes()
                .to_vec();
            let mut date = now_ms();
            match how {
                Forgery::WrongSecret => creds.secret_access_key.push('x'),
                Forgery::UnknownKey => creds.access_key_id = "LAMNOSUCHKEY".into(),
                Forgery::Expired => date -= 10 * 60 * 1000,
                _ => {}
            }
            if how != Forgery::Unsigned {
                let (auth, date) = sign(&creds, date, parts.uri.path(), &bytes);
                parts.headers.insert("authorization", auth.parse().unwrap());
                parts.headers.insert(DATE_HEADER, date.parse().unwrap());
            }
            if how == Forgery::TamperedBody {
                // Signed one message, send another (the last byte of the message changed).
                let last = bytes.len() - 1;
                bytes[last] ^= 1;
            }
            let body = tonic::body::boxed(Full::new(tonic::codegen::Bytes::from(bytes)));
            tower_service::Service::call(&mut inner, http::Request::from_parts(parts, body)).await
        })
    }
}

async fn forged(address: &str, creds: &Credentials, how: Forgery) -> anyhow::Result<Forged> {
    let endpoint = if address.starts_with("http") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    Ok(Forged {
        inner: Channel::from_shared(endpoint)?.connect().await?,
        creds: creds.clone(),
        how,
    })
}

fn fnctl(cluster: &Cluster, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("fnctl"))
        .envs(cluster.fnctl_env())
        .args(args)
        .output()
        .expect("run fnctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn grpc_cluster_and_worker_routes_refuse_forged_requests() {
    run(async {
        let cluster = Cluster::start(1)?;
        let admin = cluster.credentials.clone();
        let cluster_creds = cluster.cluster_credentials()?;
        let c = cluster.client().await?;
        let name = unique("authgrpc");
        create_python(&c, &name, "def handler(e, c):\n    return 1\n").await?;
        let get = || v1::GetFunctionRequest {
            function_name: name.clone(),
            qualifier: String::new(),
        };

        // Functions: the honest admin key works, every forgery is refused.
        let mut f = v1::functions_client::FunctionsClient::new(
            forged(&cluster.endpoint, &admin, Forgery::Honest).await?,
        );
        assert_eq!(f.get_function(get()).await?.into_inner().name, name);
        for how in FORGERIES {
            let mut f = v1::functions_client::FunctionsClient::new(
                forged(&cluster.endpoint, &admin, how).await?,
            );
            let s = f.get_function(get()).await.unwrap_err();
            assert_eq!(s.code(), Code::Unauthenticated, "{how:?}: {s:?}");
            let s = f
                .delete_function(v1::DeleteFunctionRequest {
                    function_name: name.clone(),
                    qualifier: String::new(),
                })
                .await
                .unwrap_err();
            assert_eq!(s.code(), Code::Unauthenticated, "{how:?}: {s:?}");
        }
        // The services split out of Functions are guarded the same way.
        let list = || v1::ListVersionsRequest {
            function_name: name.clone(),
        };
        let mut v = v1::versions_client::VersionsClient::new(
            forged(&cluster.endpoint, &admin, Forgery::Honest).await?,
        );
        assert_eq!(
            v.list_versions(list()).await?.into_inner().versions.len(),
            1
        );
        for how in FORGERIES {
            let mut v = v1::versions_client::VersionsClient::new(
                forged(&cluster.endpoint, &admin, how).await?,
            );
            let s = v.list_versions(list()).await.unwrap_err();
            assert_eq!(s.code(), Code::Unauthenticated, "{how:?}: {s:?}");
        }
        // The cluster credential is no user key.
        let mut f = v1::functions_client::FunctionsClient::new(
            forged(&cluster.endpoint, &cluster_creds, Forgery::Honest).await?,
        );
        assert_eq!(
            f.get_function(get()).await.unwrap_err().code(),
            Code::Unauthenticated
        );
        assert_eq!(
            c.get_function(&name).await?.name,
            name,
            "nothing forged was deleted"
        );

        // Cluster: nobody but the cluster credential registers a worker or fetches code.
        let sha = c.get_function(&name).await?.code_sha256;
        let stranger = |n: usize| v1::RegisterWorkerRequest {
            worker_id: format!("stranger-{n}"),
            address: "127.0.0.1:1".into(),
            memory_total_mb: 1 << 20,
        };
        let mut attempts: Vec<(Credentials, Forgery)> = FORGERIES
            .iter()
            .map(|h| (cluster_creds.clone(), *h))
            .collect();
        attempts.push((admin.clone(), Forgery::Honest));
        for (n, (creds, how)) in attempts.iter().enumerate() {
            let mut k = v1::cluster_client::ClusterClient::new(
                forged(&cluster.endpoint, creds, *how).await?,
            );
            let s = k.register_worker(stranger(n)).await.unwrap_err();
            assert_eq!(s.code(), Code::Unauthenticated, "register {how:?}: {s:?}");
            let s = k
                .fetch_code(v1::FetchCodeRequest {
                    sha256: sha.clone(),
                })
                .await
                .unwrap_err();
            assert_eq!(s.code(), Code::Unauthenticated, "fetch {how:?}: {s:?}");
        }
        let workers = c.list_workers().await?;
        assert!(
            workers.iter().all(|w| !w.worker_id.starts_with("stranger")),
            "{workers:?}"
        );
        // The honest cluster credential does reach the service (positive control).
        let mut k = v1::cluster_client::ClusterClient::new(
            forged(&cluster.endpoint, &cluster_creds, Forgery::Honest).await?,
        );
        let mut stream = k
            .fetch_code(v1::FetchCodeRequest {
                sha256: sha.clone(),
            })
            .await?
            .into_inner();
        assert!(stream.message().await?.is_some());

        // Worker: only the controller (the cluster credential) may call Invoke.
        let config = c.get_function(&name).await?;
        let invoke = || v1::WorkerInvokeRequest {
            request_id: "forged".into(),
            function: Some(config.clone()),
            payload: b"{}".to_vec(),
            deadline_ms: now_ms() + 10_000,
            ..Default::default()
        };
        let worker = cluster.workers[0].address.clone();
        let mut attempts: Vec<(Credentials, Forgery)> = FORGERIES
            .iter()
            .map(|h| (cluster_creds.clone(), *h))
            .collect();
        attempts.push((admin.clone(), Forgery::Honest));
        for (creds, how) in attempts {
            let mut w = v1::worker_client::WorkerClient::new(forged(&worker, &creds, how).await?);
            let s = w.invoke(invoke()).await.unwrap_err();
            assert_eq!(
                s.code(),
                Code::Unauthenticated,
                "worker invoke {how:?}: {s:?}"
            );
        }
        let mut w = v1::worker_client::WorkerClient::new(
            forged(&worker, &cluster_creds, Forgery::Honest).await?,
        );
        let r = w.invoke(invoke()).await?.into_inner();
        assert_eq!(
            r.payload, b"1",
            "the controller's credential runs it: {r:?}"
        );
        Ok(())
    });
}

#[test]
fn rest_refuses_forgeries_keys_are_managed_and_secrets_stay_hidden() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("authrest");
        create_python(
            &c,
            &name,
            "import os\ndef handler(e, c):\n    print(dict(os.environ))\n    return dict(os.environ)\n",
        )
        .await?;
        let out = lambda_rest_py(&cluster, &["refusals", &name])?;
        assert!(out.contains("refusals passed"), "{out}");

        // A new non-admin key may do only what its policy allows (none: nothing).
        let policy_file = cluster.dir.path().join("ci-policy.json");
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["lambda:ListFunctions","lambda:GetFunction"],"Resource":"*"}]}"#;
        std::fs::write(&policy_file, policy)?;
        let policy_arg = policy_file.to_str().unwrap();
        // fnctl auth: create-key -o json prints exactly the credentials shape.
        let (rc, out, err) = fnctl(
            &cluster,
            &[
                "auth",
                "create-key",
                "--description",
                "ci",
                "--policy",
                policy_arg,
                "-o",
                "json",
            ],
        );
        assert_eq!(rc, 0, "{err}");
        let key: serde_json::Value = serde_json::from_str(&out)?;
        let fields: Vec<&String> = key.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["accessKeyId", "secretAccessKey"], "{out}");
        let (id, secret) = (
            key["accessKeyId"].as_str().unwrap().to_string(),
            key["secretAccessKey"].as_str().unwrap().to_string(),
        );
        // The new key works over REST and gRPC, but may not manage keys.
        lambda_rest_py(&cluster, &["expect-ok", &id, &secret])?;
        let user = Credentials {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
        };
        let uc = cluster.client_with(Some(user.clone())).await?;
        assert_eq!(uc.get_function(&name).await?.name, name);
        // Its policy: printed back as stored; outside it, refused.
        let (rc, out, err) = fnctl(&cluster, &["auth", "get-policy", &id]);
        assert_eq!((rc, out.trim()), (0, policy), "{err}");
        let e = uc.delete_function(&name).await.unwrap_err();
        assert!(
            matches!(&e, lamina_client::Error::Api(s) if s.code() == Code::PermissionDenied),
            "{e:?}"
        );
        // Without a policy: nothing; a malformed one is refused naming the problem.
        let (rc, _, err) = fnctl(&cluster, &["auth", "put-policy", &id, "--delete"]);
        assert_eq!(rc, 0, "{err}");
        lambda_rest_py(
            &cluster,
            &["expect-code", "AccessDeniedException", &id, &secret],
        )?;
        let bad = cluster.dir.path().join("bad-policy.json");
        std::fs::write(
            &bad,
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Perhaps","Action":"*","Resource":"*"}]}"#,
        )?;
        let (rc, _, err) = fnctl(
            &cluster,
            &["auth", "put-policy", &id, bad.to_str().unwrap()],
        );
        assert_ne!(rc, 0);
        assert!(err.contains("Effect"), "{err}");
        let (rc, _, err) = fnctl(&cluster, &["auth", "put-policy", &id, policy_arg]);
        assert_eq!(rc, 0, "{err}");
        assert_eq!(uc.get_function(&name).await?.name, name);
        let e = uc.create_access_key("escalate", true).await.unwrap_err();
        assert!(
            matches!(&e, lamina_client::Error::Api(s) if s.code() == Code::PermissionDenied),
            "{e:?}"
        );
        let e = cluster
            .client_with(None)
            .await?
            .list_functions()
            .await
            .unwrap_err();
        assert!(
            matches!(&e, lamina_client::Error::Api(s) if s.code() == Code::Unauthenticated),
            "{e:?}"
        );

        // Listing never shows a secret; revoking stops the key everywhere.
        let (rc, out, _) = fnctl(&cluster, &["auth", "list", "-o", "json"]);
        assert_eq!(rc, 0);
        assert!(out.contains(&id) && !out.contains(&secret), "{out}");
        let (rc, _, err) = fnctl(&cluster, &["auth", "revoke", &id]);
        assert_eq!(rc, 0, "{err}");
        lambda_rest_py(
            &cluster,
            &["expect-code", "AccessDeniedException", &id, &secret],
        )?;
        let e = uc.get_function(&name).await.unwrap_err();
        assert!(
            matches!(&e, lamina_client::Error::Api(s) if s.code() == Code::PermissionDenied),
            "{e:?}"
        );
        let (rc, out, _) = fnctl(&cluster, &["auth", "list", "-o", "json"]);
        assert_eq!(rc, 0);
        let listed: serde_json::Value = serde_json::from_str(&out)?;
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["AccessKeyId"] == id.as_str() && k["Revoked"] == true),
            "{out}"
        );
        // fnctl with env credentials and a wrong secret is refused.
        let out = Command::new(bin("fnctl"))
            .env("FNCTL_ENDPOINT", &cluster.endpoint)
            .env("FNCTL_ACCESS_KEY_ID", &cluster.credentials.access_key_id)
            .env("FNCTL_SECRET_ACCESS_KEY", "wrong")
            .args(["list"])
            .output()?;
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("signature does not match"));

        // No secret in the function's environment, fnctl get, or any log.
        let r = invoke(&c, &name, "{}").await?;
        let env = String::from_utf8_lossy(&r.payload).into_owned();
        let (_, got, _) = fnctl(&cluster, &["get", &name, "-o", "json"]);
        let token = std::fs::read_to_string(&cluster.cluster_token_file)?;
        let logs = cluster.logs();
        for s in [
            cluster.credentials.secret_access_key.as_str(),
            &secret,
            token.trim(),
        ] {
            assert!(!env.contains(s), "a secret in the function environment");
            assert!(!got.contains(s), "a secret in fnctl get");
            assert!(!logs.contains(s), "a secret in the logs");
        }
        Ok(())
    });
}
