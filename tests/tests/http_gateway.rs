//! The HTTP gateway (issue 16) over real TCP with real clients (Python's urllib, http.client and
//! requests, curl; boto3 for the management API; `tests/python/http_gateway.py`): function URLs and
//! API Gateway–style HTTP APIs of both payload formats serve apps written for AWS unchanged
//! (Powertools' three resolvers, FastAPI behind mangum, a Node `streamifyResponse` function through
//! a RESPONSE_STREAM URL); every event the gateway sends parses with Powertools' typed models (in
//! the script) and with the `aws_lambda_events` crate (here); responses, CORS, AWS_IAM, limits,
//! route precedence, throttles and errors; management through boto3 and fnctl, durable across a
//! controller restart, gone with the function; slow clients cut off after the timeouts.
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayV2httpRequest};
use aws_lambda_events::http::Method;
use aws_lambda_events::lambda_function_urls::LambdaFunctionUrlRequest;
use lamina_e2e::gateway::*;
use lamina_e2e::*;
use serde_json::json;

#[test]
fn frameworks_serve_real_http_through_urls_and_apis() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let p = unique("web");
        let app = python_app_zip(&["powertools_app.py", "fastapi_app.py"])?;
        let name = |s: &str| format!("{p}-{s}");
        for (f, handler) in [
            ("pt-rest", "powertools_app.rest_handler"),
            ("pt-http", "powertools_app.http_handler"),
            ("pt-url", "powertools_app.url_handler"),
            ("fastapi", "fastapi_app.handler"),
        ] {
            create(&c, &name(f), "python3.11", handler, app.clone()).await?;
        }
        let stream_zip = source_zip(&["stream.mjs"])?;
        create(
            &c,
            &name("stream"),
            "nodejs20.x",
            "stream.handler",
            stream_zip,
        )
        .await?;

        let pt_url = create_url(&cluster, &name("pt-url"), &["--auth-type", "NONE"])?;
        let fa_url = create_url(&cluster, &name("fastapi"), &[])?;
        let stream_url = create_url(
            &cluster,
            &name("stream"),
            &["--invoke-mode", "RESPONSE_STREAM"],
        )?;
        // One route per API, to one function.
        let api = |api: &str, format: &str, key: &str, f: &str| {
            create_api(
                &cluster,
                &format!("{p}-{api}"),
                format,
                &[(key, &name(f), None)],
            )
        };
        let setup = json!({
            "pt_url": pt_url,
            "fa_url": fa_url,
            "stream_url": stream_url,
            "pt_v1": api("pt-v1", "1.0", "ANY /{proxy+}", "pt-rest")?,
            "pt_v2": api("pt-v2", "2.0", "ANY /{proxy+}", "pt-http")?,
            "fa_v1": api("fa-v1", "1.0", "ANY /{proxy+}", "fastapi")?,
            "fa_v2": api("fa-v2", "2.0", "$default", "fastapi")?,
        });
        let started = Instant::now();
        let out = http_gateway_py(&cluster, "frameworks", &setup)?;
        println!("{out}");
        assert!(out.contains("frameworks passed"), "{out}");
        println!(
            "frameworks scenario: {:?}; the stream's first chunk came {} ms before its last was written",
            started.elapsed(),
            printed(&out, "STREAM_FIRST_CHUNK_LEAD_MS")?
        );
        Ok(())
    });
}

#[test]
fn events_parse_and_responses_auth_cors_limits_routes_map() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let p = unique("ev");
        let echo = format!("{p}-echo");
        let (iam, throttled) = (format!("{p}-iam"), format!("{p}-throttled"));
        for f in [&echo, &iam, &throttled] {
            create(
                &c,
                f,
                "python3.11",
                "echo.handler",
                source_zip(&["echo.py"])?,
            )
            .await?;
        }
        let e = echo.as_str();
        let api_v2 = create_api(
            &cluster,
            &format!("{p}-v2"),
            "2.0",
            &[
                ("GET /items/{id}", e, None),
                ("ANY /items/{id}", e, None),
                ("GET /items/special", e, None),
                ("ANY /items/{proxy+}", e, None),
                ("$default", e, None),
                ("GET /limited", e, Some((1.0, 1))),
            ],
        )?;
        let api_bare = create_api(
            &cluster,
            &format!("{p}-bare"),
            "2.0",
            &[("GET /only", e, None)],
        )?;
        let api_v1 = create_api(
            &cluster,
            &format!("{p}-v1"),
            "1.0",
            &[("GET /v1/{id}", e, None), ("ANY /{proxy+}", e, None)],
        )?;
        let setup = json!({
            "echo": echo, "echo_iam": iam, "echo_throttled": throttled,
            "api_v2": api_v2, "api_bare": api_bare, "api_v1": api_v1,
        });
        let out = http_gateway_py(&cluster, "events", &setup)?;
        println!("{out}");
        assert!(out.contains("events passed"), "{out}");

        // The same events through the typed models of the `aws_lambda_events` crate.
        let url_id = printed(&out, "ECHO_URL_ID")?;
        let url_events = printed_events(&out, "url");
        assert!(url_events.len() >= 3, "{out}");
        for raw in &url_events {
            let ev: LambdaFunctionUrlRequest = serde_json::from_str(raw)
                .unwrap_or_else(|e| panic!("aws_lambda_events rejects a URL event ({e}): {raw}"));
            assert_eq!(ev.version.as_deref(), Some("2.0"), "{raw}");
            let ctx = &ev.request_context;
            // Anonymous for a NONE URL, the account for a signed request to an AWS_IAM one.
            let account = ctx.account_id.as_deref();
            let signed = ctx.authorizer.is_some();
            assert_eq!(
                account,
                Some(if signed { "000000000000" } else { "anonymous" }),
                "{raw}"
            );
            assert!(
                ctx.request_id.as_deref().is_some_and(|r| !r.is_empty()),
                "{raw}"
            );
            assert!(ctx.time_epoch > 1_700_000_000_000, "timeEpoch in ms: {raw}");
            assert_eq!(ctx.http.source_ip.as_deref(), Some("127.0.0.1"), "{raw}");
            assert_eq!(ctx.http.protocol.as_deref(), Some("HTTP/1.1"), "{raw}");
        }
        let first: LambdaFunctionUrlRequest = serde_json::from_str(url_events[0])?;
        assert_eq!(first.raw_path.as_deref(), Some("/some/path"));
        assert_eq!(first.raw_query_string.as_deref(), Some("a=1&a=2&b=x%20y"));
        assert_eq!(
            first.headers.get("x-rep").map(|v| v.as_bytes()),
            Some(&b"1,2"[..])
        );
        assert_eq!(
            first.query_string_parameters.get("a").map(String::as_str),
            Some("1,2")
        );
        assert_eq!(first.cookies, Some(vec!["c1=v1".into(), "c2=v2".into()]));
        assert_eq!(
            first.request_context.apiid.as_deref(),
            Some(url_id.as_str())
        );
        assert_eq!(first.request_context.http.method.as_deref(), Some("GET"));
        let signed = url_events
            .iter()
            .map(|raw| serde_json::from_str::<LambdaFunctionUrlRequest>(raw).unwrap())
            .find(|ev| ev.request_context.authorizer.is_some())
            .expect("the AWS_IAM URL's event has an authorizer");
        let iam_desc = signed
            .request_context
            .authorizer
            .unwrap()
            .iam
            .expect("authorizer.iam");
        assert_eq!(
            iam_desc.access_key.as_deref(),
            Some(cluster.credentials.access_key_id.as_str())
        );

        let v2 = printed_events(&out, "v2");
        assert!(!v2.is_empty(), "{out}");
        for raw in &v2 {
            let ev: ApiGatewayV2httpRequest = serde_json::from_str(raw).unwrap_or_else(|e| {
                panic!("aws_lambda_events rejects a 2.0 API event ({e}): {raw}")
            });
            assert_eq!(ev.route_key.as_deref(), Some("GET /items/{id}"), "{raw}");
            assert_eq!(ev.path_parameters.get("id").map(String::as_str), Some("42"));
            assert_eq!(ev.request_context.http.method, Method::GET);
            assert_eq!(ev.request_context.apiid.as_deref(), Some(api_v2.as_str()));
            assert_eq!(ev.request_context.stage.as_deref(), Some("$default"));
            assert_eq!(
                ev.request_context.account_id.as_deref(),
                Some("000000000000")
            );
        }
        let v1 = printed_events(&out, "v1");
        assert_eq!(v1.len(), 2, "{out}");
        let ev: ApiGatewayProxyRequest = serde_json::from_str(v1[0]).unwrap_or_else(|e| {
            panic!("aws_lambda_events rejects a 1.0 API event ({e}): {}", v1[0])
        });
        assert_eq!(ev.resource.as_deref(), Some("/v1/{id}"));
        assert_eq!(ev.http_method, Method::GET);
        assert_eq!(ev.path_parameters.get("id").map(String::as_str), Some("7"));
        let reps: Vec<_> = ev
            .multi_value_headers
            .get_all("x-rep")
            .iter()
            .map(|v| v.to_str().unwrap_or_default())
            .collect();
        assert_eq!(reps, ["1", "2"], "{}", v1[0]);
        assert_eq!(
            ev.multi_value_query_string_parameters.all("q"),
            Some(vec!["a", "b"])
        );
        assert_eq!(
            ev.request_context.resource_path.as_deref(),
            Some("/v1/{id}")
        );
        assert_eq!(ev.request_context.apiid.as_deref(), Some(api_v1.as_str()));
        assert_eq!(
            ev.request_context.account_id.as_deref(),
            Some("000000000000")
        );
        assert_eq!(
            ev.request_context.identity.source_ip.as_deref(),
            Some("127.0.0.1")
        );
        let ev: ApiGatewayProxyRequest = serde_json::from_str(v1[1])?;
        assert_eq!(ev.http_method, Method::POST);
        assert_eq!(ev.body.as_deref(), Some("plain text"));

        // The CORS preflight was answered by the gateway: the function never saw it (its log has
        // a line for every request it served, and none for the preflight's path).
        let marker = printed(&out, "PREFLIGHT_MARKER")?;
        let logs = c.get_logs(&echo, 0, 0).await?;
        let messages: Vec<&str> = logs.events.iter().map(|e| e.message.as_str()).collect();
        assert!(
            messages.iter().any(|m| m.contains("ECHO /cors-get")),
            "the function logs what it serves: {messages:?}"
        );
        assert!(
            !messages.iter().any(|m| m.contains(&marker)),
            "the preflight {marker} reached the function: {messages:?}"
        );
        Ok(())
    });
}

#[test]
fn boto3_and_fnctl_manage_urls_and_apis_durably() {
    run(async {
        let mut cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let p = unique("mg");
        let (managed, no_url, cli_fn) = (
            format!("{p}-managed"),
            format!("{p}-nourl"),
            format!("{p}-cli"),
        );
        for f in [&managed, &no_url, &cli_fn] {
            create(
                &c,
                f,
                "python3.11",
                "echo.handler",
                source_zip(&["echo.py"])?,
            )
            .await?;
        }
        let setup = json!({"managed": managed, "no_url": no_url});
        let out = http_gateway_py(&cluster, "manage", &setup)?;
        println!("{out}");
        assert!(out.contains("manage passed"), "{out}");
        let managed_url = printed(&out, "MANAGED_URL_ID")?;

        // The gRPC Gateway service through the SDK sees what boto3 made, and manages URLs too.
        let http = cluster.http_address()?;
        let configs = c.list_function_url_configs(&managed).await?;
        assert_eq!(configs.len(), 1, "{configs:?}");
        assert_eq!(configs[0].url_id, managed_url);
        assert_eq!(configs[0].auth_type, "NONE");
        let made = c
            .create_function_url_config(v1::FunctionUrlConfigRequest {
                function_name: no_url.clone(),
                auth_type: "AWS_IAM".into(),
                cors: Some(v1::Cors {
                    allow_origins: vec!["https://grpc.example".into()],
                    max_age: 30,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?;
        assert_eq!(made.url_id.len(), 32, "{made:?}");
        assert!(made.function_url.contains(&made.url_id), "{made:?}");
        assert_eq!(made.invoke_mode, "BUFFERED", "{made:?}");
        let grpc_url = format!("http://{http}/{}/g", made.url_id);
        assert_eq!(curl_status(&[&grpc_url])?, 403, "AWS_IAM, unsigned");
        let updated = c
            .update_function_url_config(v1::FunctionUrlConfigRequest {
                function_name: no_url.clone(),
                auth_type: "NONE".into(),
                ..Default::default()
            })
            .await?;
        assert_eq!(updated.auth_type, "NONE");
        assert_eq!(
            updated.cors.as_ref().map(|c| c.allow_origins.clone()),
            Some(vec!["https://grpc.example".to_string()]),
            "an update without set_cors keeps the CORS configuration"
        );
        assert_eq!(curl_status(&[&grpc_url])?, 200);
        c.delete_function_url_config(&no_url, "").await?;
        let gone = c.get_function_url_config(&no_url, "").await.unwrap_err();
        assert_eq!(
            gone.status().map(|s| s.code()),
            Some(tonic::Code::NotFound),
            "{gone}"
        );
        assert_eq!(curl_status(&[&grpc_url])?, 403);

        // fnctl url ...
        let view = fnctl_json(
            &cluster,
            &[
                "url",
                "create",
                &cli_fn,
                "--auth-type",
                "NONE",
                "--cors-allow-origins",
                "https://a.example",
                "--cors-allow-methods",
                "GET",
                "--cors-max-age",
                "60",
            ],
        )?;
        let cli_url = url_id(&view)?;
        assert_eq!(view["AuthType"], "NONE", "{view}");
        assert_eq!(view["InvokeMode"], "BUFFERED", "{view}");
        assert_eq!(
            view["Cors"]["AllowOrigins"],
            json!(["https://a.example"]),
            "{view}"
        );
        assert_eq!(view["Cors"]["MaxAge"], 60, "{view}");
        assert!(
            view["FunctionArn"]
                .as_str()
                .is_some_and(|a| a.ends_with(&format!(":function:{cli_fn}"))),
            "{view}"
        );
        for field in ["CreationTime", "LastModifiedTime"] {
            assert!(view[field].is_string(), "{field}: {view}");
        }
        assert_eq!(curl_status(&[&format!("http://{http}/{cli_url}/x")])?, 200);
        let got = fnctl_json(&cluster, &["url", "get", &cli_fn])?;
        assert_eq!(got["FunctionUrl"], view["FunctionUrl"], "{got}");
        let updated = fnctl_json(
            &cluster,
            &["url", "update", &cli_fn, "--auth-type", "AWS_IAM"],
        )?;
        assert_eq!(updated["AuthType"], "AWS_IAM", "{updated}");
        assert_eq!(curl_status(&[&format!("http://{http}/{cli_url}/x")])?, 403);
        let listed = fnctl(&cluster, &["url", "list", &cli_fn, "-o", "json"])?;
        assert!(listed.contains(&cli_url), "{listed}");
        fnctl(&cluster, &["url", "delete", &cli_fn])?;
        assert!(
            fnctl(&cluster, &["url", "get", &cli_fn]).is_err(),
            "get after delete"
        );
        assert_eq!(curl_status(&[&format!("http://{http}/{cli_url}/x")])?, 403);

        // fnctl api ...
        let api = fnctl_json(&cluster, &["api", "create", &format!("{p}-cli-api")])?;
        let api_id = api["ApiId"].as_str().expect("ApiId").to_string();
        assert_eq!(api_id.len(), 10, "{api}");
        assert_eq!(api["PayloadFormatVersion"], "2.0", "{api}");
        assert!(
            api["ApiEndpoint"]
                .as_str()
                .is_some_and(|e| e.contains(&format!("{api_id}.execute-api."))),
            "{api}"
        );
        let route = fnctl_json(
            &cluster,
            &[
                "api",
                "route",
                "add",
                &api_id,
                "GET /items/{id}",
                "--function",
                &cli_fn,
            ],
        )?;
        assert_eq!(route["RouteKey"], "GET /items/{id}", "{route}");
        let got = fnctl_json(&cluster, &["api", "get", &api_id])?;
        assert_eq!(got["Routes"][0]["RouteKey"], "GET /items/{id}", "{got}");
        let routes = fnctl(&cluster, &["api", "route", "list", &api_id, "-o", "json"])?;
        assert!(routes.contains("GET /items/{id}"), "{routes}");
        let apis = fnctl(&cluster, &["api", "list", "-o", "json"])?;
        assert!(apis.contains(&api_id), "{apis}");
        let item = format!("http://{http}/{api_id}/items/1");
        assert_eq!(curl_status(&[&item])?, 200);
        fnctl(
            &cluster,
            &["api", "route", "delete", &api_id, "GET /items/{id}"],
        )?;
        assert_eq!(curl_status(&[&item])?, 404);
        fnctl(&cluster, &["api", "delete", &api_id])?;
        assert!(
            fnctl(&cluster, &["api", "get", &api_id]).is_err(),
            "get after delete"
        );
        assert_eq!(curl_status(&[&item])?, 404);

        // A route to an alias (F:QUALIFIER); the alias `live` was made by the script.
        let aliased = create_api(
            &cluster,
            &format!("{p}-alias"),
            "2.0",
            &[("GET /q", &format!("{managed}:live"), None)],
        )?;
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "30",
                &format!("http://{http}/{aliased}/q"),
            ])
            .output()?;
        let body: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        assert!(
            body["arn"]
                .as_str()
                .is_some_and(|a| a.ends_with(&format!(":function:{managed}:live"))),
            "{body}"
        );

        // An API that must outlive the controller, beside the URL boto3 left.
        let durable = create_api(
            &cluster,
            &format!("{p}-durable"),
            "1.0",
            &[("GET /d", &managed, None)],
        )?;

        // Durable: after a controller restart (new listener port) both still serve.
        cluster.restart_controller(false, &[], 1)?;
        let http = cluster.http_address()?;
        let url = format!(
            "http://{managed_url}.lambda-url.us-east-1.localhost:{}/after",
            http.rsplit_once(':').unwrap().1
        );
        let api_url = format!("http://{http}/{durable}/d");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // The worker re-registers with its next heartbeat.
            let (a, b) = (curl_status(&[&url])?, curl_status(&[&api_url])?);
            if (a, b) == (200, 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after the restart: URL {a}, API {b}\n{}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // Deleting the function removes its URL.
        let c = cluster.client().await?;
        c.delete_function(&managed).await?;
        assert_eq!(curl_status(&[&url])?, 403, "the deleted function's URL");
        assert!(fnctl(&cluster, &["url", "get", &managed]).is_err());
        Ok(())
    });
}

/// Slow clients: a request whose headers or body stop arriving is cut off after the gateway's
/// header and body timeouts (30 s each), and serving others goes on meanwhile.
#[test]
fn slow_clients_are_cut_off() {
    use std::io::{Read, Write};
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let f = unique("slow");
        create(
            &c,
            &f,
            "python3.11",
            "echo.handler",
            source_zip(&["echo.py"])?,
        )
        .await?;
        let id = create_url(&cluster, &f, &[])?;
        let http = cluster.http_address()?;
        let host = format!("{id}.lambda-url.us-east-1.localhost");
        let stalls = [
            (
                "headers",
                format!("GET /slow HTTP/1.1\r\nHost: {host}\r\nX-Partial: "),
            ),
            (
                "body",
                format!(
                    "POST /slow HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100\r\n\r\n0123456789"
                ),
            ),
        ];
        let started = Instant::now();
        let mut waits = Vec::new();
        for (what, request) in stalls {
            let mut s = std::net::TcpStream::connect(&http)?;
            s.write_all(request.as_bytes())?;
            s.set_read_timeout(Some(Duration::from_secs(45)))?;
            waits.push(std::thread::spawn(move || {
                let mut answer = Vec::new();
                let got = s.read_to_end(&mut answer);
                (what, got.is_ok(), started.elapsed(), answer)
            }));
        }
        // Others are served meanwhile.
        assert_eq!(
            curl_status(&[&format!("http://{http}/{id}/meanwhile")])?,
            200
        );
        for w in waits {
            let (what, closed, after, answer) = w.join().expect("reader thread");
            let text = String::from_utf8_lossy(&answer);
            assert!(
                closed && after >= Duration::from_secs(25) && after < Duration::from_secs(44),
                "a stalled {what} is cut off after the timeout: closed {closed} after {after:?}: {text:?}"
            );
            assert!(
                text.is_empty()
                    || text.starts_with("HTTP/1.1 408")
                    || text.starts_with("HTTP/1.1 400"),
                "a stalled {what} gets no answer or a 408/400: {text:?}"
            );
            println!("stalled {what}: closed after {after:?} with {text:?}");
        }
        Ok(())
    });
}
