//! Policy evaluation cost (issue 17): `lamina_controller::iam::authorize`, in-process, for a key
//! whose policy has 1, 10 and 100 statements. Each statement has an action list with a wildcard,
//! a resource pattern and an `IpAddress` condition, and only the last one applies, so every
//! statement is looked at: the worst case of a request that is allowed. 100 such statements are
//! about 19 KB, near the 20 KB bound on a document (`iam::MAX_POLICY_CHARS`). `lamina-bench --only
//! iam` runs this phase alone.
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use lamina_controller::iam::{authorize, Policy, Principal, RequestContext};

use super::report::{pct, Report};

/// Calls per timed batch: one batch is one sample (the clock's resolution is far above 1 call).
const BATCH: usize = 1000;
const TARGET_US: f64 = 5.0;

fn document(statements: usize) -> String {
    let all: Vec<String> = (0..statements)
        .map(|i| {
            let name = if i + 1 == statements {
                "f".to_string()
            } else {
                format!("app-{i}-*")
            };
            format!(
                r#"{{"Effect":"Allow","Action":["lambda:Get*","lambda:InvokeFunction"],"Resource":"arn:aws:lambda:us-east-1:000000000000:function:{name}","Condition":{{"IpAddress":{{"aws:SourceIp":"203.0.113.0/24"}}}}}}"#
            )
        })
        .collect();
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
        all.join(",")
    )
}

pub fn run(rep: &mut Report, targets: &mut Vec<String>, full: bool) -> Result<()> {
    let batches = if full { 2000 } else { 400 };
    let resource = "arn:aws:lambda:us-east-1:000000000000:function:f";
    let ctx = RequestContext {
        source_ip: Some("203.0.113.7".parse()?),
        ..RequestContext::default()
    };
    let mut p50_at_100 = f64::NAN;
    for statements in [1, 10, 100] {
        let principal = Principal {
            access_key_id: "AKIDBENCH".into(),
            admin: false,
            policies: vec![Arc::new(Policy::parse(&document(statements))?)],
        };
        anyhow::ensure!(
            authorize(&principal, "lambda:InvokeFunction", resource, &ctx, None).is_ok(),
            "the benchmark's policy must allow its request"
        );
        let mut samples = Vec::with_capacity(batches);
        for _ in 0..batches {
            let start = Instant::now();
            for _ in 0..BATCH {
                let r = authorize(
                    std::hint::black_box(&principal),
                    std::hint::black_box("lambda:InvokeFunction"),
                    std::hint::black_box(resource),
                    &ctx,
                    None,
                );
                std::hint::black_box(r.is_ok());
            }
            samples.push(start.elapsed().as_secs_f64() * 1e6 / BATCH as f64);
        }
        let (p50, p99) = (pct(&samples, 0.5), pct(&samples, 0.99));
        if statements == 100 {
            p50_at_100 = p50;
        }
        rep.add(
            &format!("policy evaluation: authorize, {statements} statement(s)"),
            batches * BATCH,
            format!("{p50:.2} µs"),
            format!("{p99:.2} µs"),
            format!(
                "in-process, per request ({BATCH}-call batches); the matching statement last, IpAddress condition on each"
            ),
        );
    }
    targets.push(format!(
        "policy evaluation <= {TARGET_US} µs per request with 100 statements: {p50_at_100:.2} µs p50 — {}",
        if p50_at_100 <= TARGET_US { "met" } else { "MISSED" }
    ));
    Ok(())
}
