//! Every `-o json|yaml` view of fnctl uses one casing: Lambda's PascalCase. This serialises each
//! view with every optional part present and checks every key, recursively, except inside user
//! data (a function's payload, a dead letter's record, environment variables, alias weights keyed
//! by version). A view added in camelCase or snake_case fails here once it is listed below.
//! The one exception, `auth create-key`, prints the credentials file's camelCase shape on
//! purpose and is not a view of this kind.
use lamina_client::v1;
use serde_json::Value;

use crate::args::Output;

/// Keys whose values are user data, not fnctl's names.
const USER_DATA: &[&str] = &[
    "Payload",
    "Record",
    "Variables",
    "AdditionalVersionWeights",
    "PolicyDocument",
];

/// The keys (as `path.Key`) of `v` that do not start with an uppercase letter.
fn bad_keys(v: &Value, path: &str, bad: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = format!("{path}.{k}");
                if !k.starts_with(|c: char| c.is_ascii_uppercase()) {
                    bad.push(here.clone());
                }
                if !USER_DATA.contains(&k.as_str()) {
                    bad_keys(child, &here, bad);
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                bad_keys(item, &format!("{path}[{i}]"), bad);
            }
        }
        _ => {}
    }
}

fn json(rendered: anyhow::Result<String>) -> Value {
    serde_json::from_str(&rendered.unwrap()).unwrap()
}

fn function() -> v1::FunctionConfiguration {
    v1::FunctionConfiguration {
        name: "f".into(),
        environment: [("lower_case_var".to_string(), "v".to_string())]
            .into_iter()
            .collect(),
        layers: vec![v1::FunctionLayer {
            arn: "arn:layer:1".into(),
            ..Default::default()
        }],
        image: Some(v1::ResolvedImage {
            digest: "sha256:00".into(),
            entrypoint: vec!["/bin/sh".into()],
            ..Default::default()
        }),
        vpc_config: Some(v1::VpcConfig {
            subnet_ids: vec!["subnet-1".into()],
            security_group_ids: vec!["sg-1".into()],
            vpc_id: "vpc-1".into(),
        }),
        reserved_concurrent_executions: Some(3),
        provisioned_concurrency: vec![v1::ProvisionedConcurrencyConfig {
            function_name: "f".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Every view fnctl prints as JSON or YAML, by the command that prints it.
fn views() -> Vec<(&'static str, Value)> {
    let f = function();
    let invoke = v1::InvokeResponse {
        status_code: 200,
        function_error: "Unhandled".into(),
        executed_version: "$LATEST".into(),
        payload: br#"{"camelCase": {"snake_case": 1}}"#.to_vec(),
        log_tail: "START".into(),
        request_id: "r".into(),
        ..Default::default()
    };
    let invocation = v1::Invocation {
        request_id: "r".into(),
        last_error: "e".into(),
        condition: "c".into(),
        destination: "d".into(),
        idempotency_key: "k".into(),
        next_attempt_ms: 1,
        ..Default::default()
    };
    let dead = v1::DeadLetter {
        payload: br#"{"lower": 1}"#.to_vec(),
        record: br#"{"requestContext": {"requestId": "r"}}"#.to_vec(),
        ..Default::default()
    };
    let alias = v1::Alias {
        name: "live".into(),
        routing_config: Some(v1::RoutingConfig {
            additional_version_weights: [("2".to_string(), 0.5)].into_iter().collect(),
        }),
        ..Default::default()
    };
    let rule = v1::SecurityGroupRule {
        protocol: "tcp".into(),
        ..Default::default()
    };
    let sg = v1::SecurityGroup {
        ingress: vec![rule.clone()],
        egress: vec![rule],
        ..Default::default()
    };
    let key = v1::AccessKey::default();
    // A policy document is the user's (IAM's own casing: condition keys like aws:SourceIp).
    let role = v1::Role {
        name: "reader".into(),
        arn: "arn:aws:iam::000000000000:role/reader".into(),
        policy: r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"lambda:GetFunction","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#.into(),
        ..Default::default()
    };
    let complete = v1::InvokeComplete::default();
    let url = v1::FunctionUrlConfig {
        qualifier: "live".into(),
        cors: Some(v1::Cors {
            allow_origins: vec!["*".into()],
            max_age: 60,
            ..Default::default()
        }),
        ..Default::default()
    };
    let route = v1::HttpRoute {
        qualifier: "live".into(),
        throttle: Some(v1::HttpThrottle {
            rate_limit: 1.0,
            burst_limit: 1,
        }),
        ..Default::default()
    };
    let api = v1::HttpApi {
        routes: vec![route.clone()],
        ..Default::default()
    };
    vec![
        (
            "get",
            json(crate::concurrency::render_function(&f, Output::Json)),
        ),
        (
            "list",
            json(crate::output::render_functions(
                std::slice::from_ref(&f),
                Output::Json,
            )),
        ),
        (
            "versions",
            json(crate::versions::render_versions(
                std::slice::from_ref(&f),
                Output::Json,
            )),
        ),
        (
            "workers",
            json(crate::output::render_workers(
                &[v1::WorkerInfo::default()],
                Output::Json,
            )),
        ),
        (
            "invoke",
            serde_json::to_value(crate::output::InvokeView::from(&invoke)).unwrap(),
        ),
        (
            "invoke --async",
            json(crate::events::render_async_invoke(&invoke, Output::Json)),
        ),
        (
            "invoke --stream (chunk)",
            crate::stream::chunk_event(b"{\"lower\": 1}"),
        ),
        (
            "invoke --stream (complete)",
            crate::stream::complete_event(&complete),
        ),
        (
            "event-config",
            json(crate::events::render_event_config(
                &v1::FunctionEventInvokeConfig {
                    on_success: "s".into(),
                    on_failure: "f".into(),
                    ..Default::default()
                },
                Output::Json,
            )),
        ),
        (
            "invocation get",
            json(crate::events::render_invocation(&invocation, Output::Json)),
        ),
        (
            "invocations",
            json(crate::events::render_invocations(
                &[invocation],
                Output::Json,
            )),
        ),
        (
            "dlq list",
            json(crate::events::render_queues(
                &[v1::DeadLetterQueue::default()],
                Output::Json,
            )),
        ),
        (
            "dlq show",
            json(crate::events::render_dead_letters(&[dead], Output::Json)),
        ),
        (
            "dlq redrive",
            crate::events::redrive_json(&["r".to_string()]),
        ),
        (
            "auth list",
            serde_json::to_value(vec![crate::auth::KeyView::from(&key)]).unwrap(),
        ),
        ("role get", json(crate::role::render(&role, Output::Json))),
        (
            "role list",
            json(crate::role::render_list(
                std::slice::from_ref(&role),
                Output::Json,
            )),
        ),
        (
            "alias get",
            json(crate::versions::render_alias(&alias, Output::Json)),
        ),
        (
            "alias list",
            json(crate::versions::render_aliases(&[alias], Output::Json)),
        ),
        (
            "concurrency",
            json(crate::concurrency::render_concurrency(
                &v1::FunctionConcurrency {
                    function_name: "f".into(),
                    reserved_concurrent_executions: Some(1),
                },
                Output::Json,
            )),
        ),
        (
            "account",
            json(crate::concurrency::render_account(
                &v1::AccountSettings::default(),
                Output::Json,
            )),
        ),
        (
            "provisioned",
            json(crate::concurrency::render_provisioned(
                &v1::ProvisionedConcurrencyConfig::default(),
                Output::Json,
            )),
        ),
        (
            "layers",
            json(crate::layers::render(
                &[v1::LayerVersion::default()],
                Output::Json,
                false,
            )),
        ),
        (
            "url get",
            json(crate::gateway::render_url(&url, Output::Json)),
        ),
        (
            "url list",
            json(crate::gateway::render_urls(
                std::slice::from_ref(&url),
                Output::Json,
            )),
        ),
        (
            "api get",
            json(crate::gateway::api::render_api(&api, Output::Json)),
        ),
        (
            "api list",
            json(crate::gateway::api::render_apis(
                std::slice::from_ref(&api),
                Output::Json,
            )),
        ),
        (
            "api route add",
            json(crate::gateway::api::render_route(&route, Output::Json)),
        ),
        (
            "api route list",
            json(crate::gateway::api::render_routes(&[route], Output::Json)),
        ),
        ("vpc", crate::network::vpc_json(&v1::Vpc::default())),
        (
            "subnet",
            crate::network::subnet_json(&v1::Subnet::default()),
        ),
        ("sg", crate::network::sg_json(&sg)),
        (
            "vpc attachments",
            crate::network::eni_json(&v1::NetnsAttachment::default()),
        ),
    ]
}

#[test]
fn every_json_view_is_pascal_case() {
    let mut bad = Vec::new();
    for (command, v) in views() {
        bad_keys(&v, command, &mut bad);
    }
    assert!(bad.is_empty(), "keys not in PascalCase: {bad:?}");
}

#[test]
fn the_check_sees_nested_keys_and_skips_user_data() {
    let mut bad = Vec::new();
    let v = serde_json::json!({"Good": [{"Fine": {"notFine": 1}}], "Payload": {"any": 1},
                               "snake_key": 2});
    bad_keys(&v, "x", &mut bad);
    assert_eq!(bad, ["x.Good[0].Fine.notFine", "x.snake_key"]);
}
