//! Issue 5's phase: what a VPC attachment adds to a cold start. One worker in a network namespace
//! of its own (`Cluster::start_netns`), a VPC with one subnet and one security group, two no-op
//! Python functions alike but for their `VpcConfig`. Each round changes both functions'
//! configuration (a new revision: no warm sandbox fits) and invokes each once, alternating which
//! goes first: every invocation is a cold start, one with an ENI-like interface (veth created
//! into the sandbox's namespace, addresses from the worker's pool of leased addresses, the
//! security-group ruleset replaced in one nft transaction), one without.
//!
//! `lamina-bench --only vpc` runs this phase alone; `LAMINA_BENCH_VPC_TRACE=1` also
//! prints the worker's `vpc interface attached ms=…` lines (the attachment alone).
use std::time::Instant;

use anyhow::{ensure, Result};
use lamina_e2e::*;

use super::report::{pct, Report};

const NOOP: &str = "def handler(event, context):\n    return {'ok': True}\n";

async fn cold(c: &Client, name: &str, round: usize) -> Result<f64> {
    c.update_function_configuration(v1::UpdateFunctionConfigurationRequest {
        function_name: name.to_string(),
        replace_environment: true,
        environment: [("ROUND".to_string(), round.to_string())].into(),
        ..Default::default()
    })
    .await?;
    let t = Instant::now();
    let r = invoke(c, name, "{}").await?;
    let elapsed = t.elapsed().as_secs_f64() * 1000.0;
    ensure!(
        r.function_error.is_empty(),
        "{name}: {}",
        String::from_utf8_lossy(&r.payload)
    );
    ensure!(
        r.log_tail.contains("Init Duration"),
        "{name} round {round} was not a cold start"
    );
    Ok(elapsed)
}

pub fn run(
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
    targets: &mut Vec<String>,
    full: bool,
) -> Result<()> {
    let rounds = if full { 100 } else { 20 };
    let cluster = Cluster::start_netns(1, &[], &["--keep-alive-s", "1"])?;
    rt.block_on(async {
        let c = cluster.client().await?;
        let vpc = c.create_vpc("10.232.0.0/16", "bench").await?;
        let subnet = c.create_subnet(&vpc.id, "10.232.0.0/20").await?;
        let sg = c.create_security_group(&vpc.id, "bench", "").await?;
        for (name, vpc_config) in [
            ("bench-plain", None),
            (
                "bench-vpc",
                Some(v1::VpcConfig {
                    subnet_ids: vec![subnet.id.clone()],
                    security_group_ids: vec![sg.id.clone()],
                    vpc_id: String::new(),
                }),
            ),
        ] {
            let mut s = spec(name, "python3.11", "app.handler");
            s.vpc_config = vpc_config;
            c.create_function(s, zip_of(&[("app.py", NOOP, 0o644)]))
                .await?;
        }
        let (mut plain, mut vpc_ms) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            if round % 2 == 0 {
                plain.push(cold(&c, "bench-plain", round).await?);
                vpc_ms.push(cold(&c, "bench-vpc", round).await?);
            } else {
                vpc_ms.push(cold(&c, "bench-vpc", round).await?);
                plain.push(cold(&c, "bench-plain", round).await?);
            }
        }
        let (p50, p99) = rep.latency(
            "python cold start without VPC (one netns worker)",
            &plain,
            String::new(),
        );
        let (v50, v99) = (pct(&vpc_ms, 0.5), pct(&vpc_ms, 0.99));
        rep.latency(
            "python cold start with a VPC interface",
            &vpc_ms,
            format!("+{:.2} ms p50, +{:.2} ms p99 over no VPC", v50 - p50, v99 - p99),
        );
        targets.push(format!(
            "VPC attachment overhead on a cold start: +{:.1} ms p50 ({v50:.1} vs {p50:.1} ms), +{:.1} ms p99 ({v99:.1} vs {p99:.1} ms)",
            v50 - p50,
            v99 - p99
        ));
        for f in ["bench-plain", "bench-vpc"] {
            c.delete_function(f).await?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    if std::env::var_os("LAMINA_BENCH_VPC_TRACE").is_some() {
        for l in cluster
            .logs()
            .lines()
            .filter(|l| l.contains("vpc interface attached"))
        {
            println!("{l}");
        }
    }
    drop(cluster);
    Ok(())
}
