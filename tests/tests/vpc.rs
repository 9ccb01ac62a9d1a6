//! VPC networking end to end: two workers in network namespaces of their own (separate hosts), a
//! "database" — a TCP server in a network namespace this test creates — plugged into a subnet with
//! `attach-netns`, and functions probing it. The reachability matrix: same security group ->
//! allowed (also from the other worker, through VXLAN); other group -> blocked; a rule added ->
//! allowed, removed -> blocked (each within bounded polling); a function without VPC -> blocked.
//! Then everything is deleted and no interface or nftables rule of it is left in any namespace.
//! Attaching is for admin keys and for the namespaces the operator allows (`--attachable-netns`)
//! only, and the attached namespace gets the VPC's routes but never a default route.
//!
//! Addresses: 10.231.0.0/16, only inside the namespaces this test creates.
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use lamina_client::network::RuleSpec;
use lamina_e2e::*;

const VPC_CIDR: &str = "10.231.0.0/16";
const SUBNET_CIDR: &str = "10.231.1.0/24";
const DB_PORT: u16 = 8000;
/// Generous bound for a change to reach the workers (the reconciler pushes at once; heartbeats
/// repeat it every second).
const CONVERGE: Duration = Duration::from_secs(20);

/// Connects to `event["addr"]:event["port"]` (1 s timeout) and reports what happened and whether
/// the sandbox has a default route; holds `event["hold"]` seconds afterwards so that concurrent
/// invocations overlap.
const PROBE: &str = r#"import socket, time

def handler(event, context):
    try:
        s = socket.create_connection((event["addr"], event["port"]), timeout=1.0)
        data = s.recv(16).decode()
        s.close()
        result = "ok:" + data
    except Exception as e:
        result = "blocked:" + type(e).__name__
    time.sleep(event.get("hold", 0))
    with open("/proc/net/route") as f:
        default_route = any(l.split()[1] == "00000000" for l in f.readlines()[1:])
    return {"result": result, "default_route": default_route}
"#;

/// The database: a network namespace with a TCP server answering "pong", removed on drop.
struct Database {
    netns: String,
    server: std::process::Child,
}

impl Database {
    fn start() -> Result<Database> {
        let netns = unique("lamdb");
        ip(&["netns", "add", &netns])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        let server = Command::new("ip")
            .args(["netns", "exec", &netns, "python3", "-c"])
            .arg(format!(
                "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
                 s.bind(('0.0.0.0',{DB_PORT}))\ns.listen(64)\nwhile True:\n    c,_=s.accept()\n    c.sendall(b'pong')\n    c.close()\n"
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start the database server")?;
        Ok(Database { netns, server })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // The namespace must go whatever became of the server (a leftover is reported).
        if let Err(e) = self
            .server
            .kill()
            .and_then(|()| self.server.wait().map(drop))
        {
            eprintln!("stopping the test server in {}: {e}", self.netns);
        }
        if let Err(e) = ip(&["netns", "del", &self.netns]) {
            eprintln!("leftover network namespace {}: {e:#}", self.netns);
        }
    }
}

fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip").args(args).output()?;
    ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `program args` inside the network namespace at `path`.
fn in_netns(path: &str, program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={path}"))
        .arg(program)
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "{program} in {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `f` until it returns true, at most `bound`.
async fn eventually<F, Fut>(what: &str, bound: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let start = Instant::now();
    loop {
        if f().await? {
            return Ok(());
        }
        if start.elapsed() > bound {
            bail!("{what}: not within {bound:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn probe(c: &Client, name: &str, addr: &str, hold: u32) -> Result<(String, String)> {
    let (result, worker, _) = probe_port(c, name, addr, DB_PORT, hold).await?;
    Ok((result, worker))
}

/// What the probe saw: the outcome, the worker it ran on, whether it had a default route.
async fn probe_port(
    c: &Client,
    name: &str,
    addr: &str,
    port: u16,
    hold: u32,
) -> Result<(String, String, bool)> {
    let payload = format!("{{\"addr\": \"{addr}\", \"port\": {port}, \"hold\": {hold}}}");
    let r = invoke(c, name, &payload).await?;
    ensure!(
        r.function_error.is_empty(),
        "{name} failed: {}",
        String::from_utf8_lossy(&r.payload)
    );
    let v = json(&r);
    let result = v["result"].as_str().unwrap_or_default().to_string();
    let default_route = v["default_route"].as_bool().unwrap_or(false);
    Ok((result, r.worker_id, default_route))
}

async fn create_probe(c: &Client, name: &str, vpc: Option<(&str, &str)>) -> Result<()> {
    let mut s = spec(name, "python3.11", "app.handler");
    s.timeout_seconds = 30;
    s.vpc_config = vpc.map(|(subnet, sg)| v1::VpcConfig {
        subnet_ids: vec![subnet.to_string()],
        security_group_ids: vec![sg.to_string()],
        vpc_id: String::new(),
    });
    c.create_function(s, zip_of(&[("app.py", PROBE, 0o644)]))
        .await?;
    Ok(())
}

/// Interfaces and nftables tables of the VPC agent in a namespace (`None`: the host's).
fn leftovers(netns: Option<&str>) -> Result<Vec<String>> {
    let (links, tables) = match netns {
        Some(p) => (
            in_netns(p, "ip", &["-o", "link", "show"])?,
            in_netns(p, "nft", &["list", "tables"])?,
        ),
        None => (ip(&["-o", "link", "show"])?, {
            let out = Command::new("nft").args(["list", "tables"]).output()?;
            String::from_utf8_lossy(&out.stdout).into_owned()
        }),
    };
    let mut found: Vec<String> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        // The agent's names: l[bxep] + a 4-hex-digit worker tag + more.
        .filter(|n| {
            let b = n.as_bytes();
            b.len() > 6
                && b[0] == b'l'
                && b"bxep".contains(&b[1])
                && b[2..6].iter().all(u8::is_ascii_hexdigit)
        })
        .collect();
    found.extend(
        tables
            .lines()
            .filter(|l| l.contains("lamina_vpc"))
            .map(str::to_string),
    );
    Ok(found)
}

#[test]
fn vpc_reachability_matrix_across_workers_and_cleanup() {
    require_root();
    run(async {
        let mut cluster = Cluster::start_netns(
            2,
            &["--attachable-netns", "lamdb-*"],
            &["--keep-alive-s", "2"],
        )?;
        let c = cluster.client().await?;
        let db = Database::start()?;

        let vpc = c.create_vpc(VPC_CIDR, "e2e").await?;
        let subnet = c.create_subnet(&vpc.id, SUBNET_CIDR).await?;
        let sg_db = c.create_security_group(&vpc.id, "db", "").await?;
        let sg_other = c.create_security_group(&vpc.id, "other", "").await?;

        // The database on the first worker's host.
        let db_worker = cluster.worker_ids[0].clone();
        // A key that is not an admin key may not attach anything; an admin may not attach a
        // namespace the operator did not allow.
        let user = c.create_access_key("not an admin", false).await?;
        let uc = cluster
            .client_with(Some(lamina_proto::auth::Credentials {
                access_key_id: user.access_key_id.clone(),
                secret_access_key: user.secret_access_key.clone(),
            }))
            .await?;
        let denied = |e: lamina_client::Error| match e {
            lamina_client::Error::Api(s) if s.code() == tonic::Code::PermissionDenied => Ok(()),
            other => Err(anyhow::anyhow!("expected PermissionDenied, got {other:?}")),
        };
        denied(
            uc.attach_netns(
                &db.netns,
                &subnet.id,
                std::slice::from_ref(&sg_db.id),
                &db_worker,
            )
            .await
            .expect_err("a non-admin key attached a namespace"),
        )?;
        let host_ns = unique("lamhost");
        ip(&["netns", "add", &host_ns])?;
        let refused = c
            .attach_netns(
                &host_ns,
                &subnet.id,
                std::slice::from_ref(&sg_db.id),
                &db_worker,
            )
            .await;
        ip(&["netns", "del", &host_ns])?;
        let e = refused.expect_err("a namespace off the allowlist was attached");
        ensure!(e.to_string().contains("--attachable-netns"), "{e}");
        denied(e)?;
        // Attached with fnctl, which returns once the worker has configured the address in the
        // namespace (it is on this host): no waiting here.
        let out = Command::new(bin("fnctl"))
            .envs(cluster.fnctl_env())
            .args(["vpc", "attach-netns", &db.netns, "--subnet", &subnet.id])
            .args([
                "--security-groups",
                &sg_db.id,
                "--worker",
                &db_worker,
                "-o",
                "json",
            ])
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.success(), "fnctl vpc attach-netns: {stderr}");
        ensure!(!stderr.contains("note:"), "the wait ran out: {stderr}");
        let eni: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let addr = eni["Address"].as_str().context("Address")?.to_string();
        ensure!(addr.starts_with("10.231.1."), "{eni}");
        ensure!(
            eni["Netns"] == db.netns.as_str() && eni["WorkerId"] == db_worker.as_str(),
            "{eni}"
        );
        let configured = ip(&["-n", &db.netns, "-o", "addr", "show"])?;
        ensure!(
            configured.contains(&format!("{addr}/24")),
            "fnctl returned before {addr} was configured in {}: {configured}",
            db.netns
        );
        let routes = ip(&["-n", &db.netns, "route", "show"])?;
        ensure!(
            !routes.contains("default") && routes.contains(VPC_CIDR),
            "the attached namespace has the VPC's route and no default route: {routes}"
        );

        create_probe(&c, "same", Some((&subnet.id, &sg_db.id))).await?;
        create_probe(&c, "other", Some((&subnet.id, &sg_other.id))).await?;
        create_probe(&c, "plain", None).await?;

        // Same group: allowed, from both workers (one of them reaches the database by VXLAN).
        let calls: Vec<_> = (0..2)
            .map(|_| {
                let (c, addr) = (c.clone(), addr.clone());
                tokio::spawn(async move { probe(&c, "same", &addr, 3).await })
            })
            .collect();
        let mut workers = std::collections::BTreeSet::new();
        for call in calls {
            let (result, worker) = call.await??;
            if result != "ok:pong" {
                // What the workers had, for the failure below.
                let network = cluster.network().context("netns cluster")?;
                for w in &cluster.worker_ids {
                    let p = network.netns_path(w)?;
                    eprintln!(
                        "=== {w}\n{}\n{}",
                        in_netns(&p, "bridge", &["fdb", "show"])?,
                        in_netns(&p, "nft", &["list", "ruleset"])?
                    );
                }
            }
            ensure!(result == "ok:pong", "same group from {worker}: {result}");
            workers.insert(worker);
        }
        ensure!(
            workers.len() == 2,
            "the two overlapping invocations ran on {workers:?}, expected both workers"
        );

        // Other group: blocked. Without VPC: blocked.
        let (r, _) = probe(&c, "other", &addr, 0).await?;
        ensure!(r.starts_with("blocked:"), "other group: {r}");
        let (r, _, route) = probe_port(&c, "plain", &addr, DB_PORT, 0).await?;
        ensure!(r.starts_with("blocked:"), "no VPC: {r}");
        ensure!(
            !route,
            "default egress none: a sandbox without VPC has no route"
        );

        // A rule letting the other group in: allowed soon; revoked: blocked again.
        let rule = || RuleSpec {
            protocol: "tcp".into(),
            from_port: u32::from(DB_PORT),
            to_port: u32::from(DB_PORT),
            source_group: sg_other.id.clone(),
            ..Default::default()
        };
        c.change_security_group_rule(&sg_db.id, "ingress", rule(), true)
            .await?;
        eventually("the added rule allows the other group", CONVERGE, || {
            let (c, addr) = (c.clone(), addr.clone());
            async move { Ok(probe(&c, "other", &addr, 0).await?.0 == "ok:pong") }
        })
        .await?;
        c.change_security_group_rule(&sg_db.id, "ingress", rule(), false)
            .await?;
        eventually("the revoked rule blocks the other group", CONVERGE, || {
            let (c, addr) = (c.clone(), addr.clone());
            async move {
                Ok(probe(&c, "other", &addr, 0)
                    .await?
                    .0
                    .starts_with("blocked:"))
            }
        })
        .await?;

        // Deleting what is in use is refused, naming the user.
        let err = c.delete_subnet(&subnet.id).await.unwrap_err().to_string();
        ensure!(err.contains("function `"), "{err}");

        // Everything goes; nothing is left behind.
        for f in ["same", "other", "plain"] {
            c.delete_function(f).await?;
        }
        c.detach_netns(eni["Id"].as_str().context("Id")?).await?;
        let cleaned = || async {
            match c.delete_subnet(&subnet.id).await {
                Ok(()) => Ok(true),
                Err(_) => Ok(false),
            }
        };
        eventually("the subnet can be deleted", CONVERGE, cleaned).await?;
        c.delete_security_group(&sg_db.id).await?;
        c.delete_security_group(&sg_other.id).await?;
        c.delete_vpc(&vpc.id).await?;
        let network = cluster.network().context("netns cluster")?;
        let paths: Vec<String> = cluster
            .worker_ids
            .iter()
            .map(|w| network.netns_path(w))
            .collect::<Result<_>>()?;
        eventually("no VPC interface or rule is left", CONVERGE, || {
            let paths = paths.clone();
            let db_ns = db.netns.clone();
            async move {
                let mut left = Vec::new();
                for p in &paths {
                    left.extend(leftovers(Some(p))?);
                }
                left.extend(leftovers(None)?);
                if ip(&["-n", &db_ns, "-o", "link", "show"])?.contains("vpc0") {
                    left.push("vpc0 in the database namespace".into());
                }
                if !left.is_empty() && std::env::var_os("VPC_DEBUG").is_some() {
                    eprintln!("left: {left:?}");
                }
                Ok(left.is_empty())
            }
        })
        .await?;
        drop(c);
        cluster.workers.iter_mut().for_each(|w| w.stop());
        Ok(())
    });
}

/// A VPC, subnet and group with function `probe` in them, invoked once so that its sandbox (and
/// so its interface) exists on the cluster's only worker; with that worker's namespace path.
async fn vpc_sandbox(
    cluster: &Cluster,
    c: &Client,
) -> Result<(v1::Vpc, v1::Subnet, v1::SecurityGroup, String)> {
    let vpc = c.create_vpc(VPC_CIDR, "").await?;
    let subnet = c.create_subnet(&vpc.id, SUBNET_CIDR).await?;
    let sg = c.create_security_group(&vpc.id, "app", "").await?;
    create_probe(c, "probe", Some((&subnet.id, &sg.id))).await?;
    // Nothing listens there: the probe only needs its sandbox (and so the interface) to exist.
    let (r, _) = probe(c, "probe", "10.231.1.250", 0).await?;
    ensure!(r.starts_with("blocked:"), "{r}");
    let path = cluster
        .network()
        .context("netns cluster")?
        .netns_path(&cluster.worker_ids[0])?;
    let before = leftovers(Some(&path))?;
    ensure!(
        before.iter().any(|l| l.contains("table inet lamina_vpc")) && before.len() >= 4,
        "a VPC sandbox should have a bridge, its port and both tables: {before:?}"
    );
    Ok((vpc, subnet, sg, path))
}

#[test]
fn worker_shutdown_removes_its_vpc_interfaces_and_rules() {
    require_root();
    run(async {
        let mut cluster = Cluster::start_netns(1, &[], &[])?;
        let c = cluster.client().await?;
        let (_, _, _, path) = vpc_sandbox(&cluster, &c).await?;
        cluster.workers[0].stop();
        let after = leftovers(Some(&path))?;
        ensure!(after.is_empty(), "left after the worker stopped: {after:?}");
        Ok(())
    });
}

#[test]
fn default_egress_nat_sets_up_masquerade_and_keeps_the_host_and_controller_out() {
    require_root();
    run(async {
        let cluster = Cluster::start_netns(1, &[], &["--default-egress", "nat"])?;
        let c = cluster.client().await?;
        create_probe(&c, "plain", None).await?;
        // Both targets live in namespaces this test created: the worker's own address (its
        // gRPC port) and the controller's (the bridge address in the test's namespace).
        let worker = cluster.workers[0].address.clone();
        let controller = cluster.controller.address.clone();
        for target in [&worker, &controller] {
            let (host, port) = target.rsplit_once(':').context("host:port")?;
            let (r, _, route) = probe_port(&c, "plain", host, port.parse()?, 0).await?;
            ensure!(
                route,
                "NAT mode gives a sandbox without VPC a default route"
            );
            ensure!(
                r.starts_with("blocked:"),
                "{target} must be unreachable: {r}"
            );
        }
        let path = cluster
            .network()
            .context("netns cluster")?
            .netns_path(&cluster.worker_ids[0])?;
        let rules = in_netns(&path, "nft", &["list", "ruleset"])?;
        for needle in ["table inet lamina_nat_", "masquerade", "169.254.0.0/16"] {
            ensure!(rules.contains(needle), "{needle} missing from\n{rules}");
        }
        Ok(())
    });
}

/// With the default 10 min keep-alive: deleting a VPC function destroys its sandbox at once (the
/// controller tells the worker), so its subnet, group and VPC can be deleted right after and no
/// interface or nftables table of them is left on the worker.
#[test]
fn deleting_a_vpc_function_then_its_vpc_leaves_no_interface_or_table() {
    require_root();
    run(async {
        let cluster = Cluster::start_netns(1, &[], &[])?;
        let c = cluster.client().await?;
        let (vpc, subnet, sg, path) = vpc_sandbox(&cluster, &c).await?;
        c.delete_function("probe").await?;
        eventually("the subnet can be deleted", CONVERGE, || async {
            Ok(c.delete_subnet(&subnet.id).await.is_ok())
        })
        .await?;
        c.delete_security_group(&sg.id).await?;
        c.delete_vpc(&vpc.id).await?;
        eventually("no VPC interface or rule is left", CONVERGE, || {
            let path = path.clone();
            async move {
                let left = leftovers(Some(&path))?;
                if !left.is_empty() && std::env::var_os("VPC_DEBUG").is_some() {
                    eprintln!("left: {left:?}");
                }
                Ok(left.is_empty())
            }
        })
        .await?;
        Ok(())
    });
}
