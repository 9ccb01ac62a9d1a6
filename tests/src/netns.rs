//! Clusters whose workers each run in their own network namespace, acting as separate hosts: the
//! topology of `deploy/cluster.sh`, built per test process with `ip` and `nsenter`.
//!
//! - A bridge `lamt<X>` in the root namespace holds `10.214.X.1/24` (`LAMINA_TEST_SUBNET_BASE`
//!   changes `10.214`). `X` is allocated by creating the bridge: `ip link add` fails when another
//!   test process owns that name, so parallel test binaries never share a subnet. The bridge's
//!   alias records the owning pid; a bridge whose owner died (a test killed mid-run) is reclaimed.
//! - Worker `i` runs in netns `lamt<X>w<i>` with `eth0 = 10.214.X.(10+i)/24` (veth peer of
//!   `lamt<X>v<i>` on the bridge), loopback up, default route via the bridge address only (nothing
//!   forwards beyond it). It is started with `nsenter --net=/run/netns/...` (`ip netns exec` would
//!   remount /sys and hide the cgroup hierarchies) and listens on its eth0 address.
//! - The controller listens on the bridge address (tests reach it there from the root namespace).
//!
//! Dropping the [`Network`] (the last field of [`Cluster`], so after the processes are stopped)
//! reaps what the workers' sandboxes left, kills anything still running in the namespaces and
//! deletes the veths, the namespaces and the bridge.
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::tls::TestTls;
use crate::{bin, require_root, spawn_controller, unique, Cluster, Proc};

/// Prefix of every interface and namespace name of the test networks.
const NAME_PREFIX: &str = "lamt";
/// The bridge alias: `lamina-e2e pid <pid>`.
const ALIAS_PREFIX: &str = "lamina-e2e pid ";
/// Workers per network at most: addresses .11 ..= .254.
const MAX_HOSTS: usize = 240;

/// Runs `ip ARGS` (or `nsenter --net=NS ip ARGS`); the error carries the command and its stderr.
fn ip(netns: Option<&str>, args: &[&str]) -> Result<String> {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).args(["--", "ip"]);
            c
        }
        None => Command::new("ip"),
    };
    cmd.args(args);
    let out = cmd
        .output()
        .with_context(|| format!("run ip {args:?}: are iproute2 and util-linux (nsenter) installed? deploy/install-deps.sh installs them"))?;
    if !out.status.success() {
        bail!(
            "ip {}{args:?} failed ({}): {}",
            netns.map(|n| format!("(netns {n}) ")).unwrap_or_default(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The pids running in network namespace `ns` (empty when it is gone).
fn netns_pids(ns: &str) -> Vec<i32> {
    ip(None, &["netns", "pids", ns])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn pid_alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The first two octets of the test subnets.
fn subnet_base() -> Result<(u8, u8)> {
    let base = std::env::var("LAMINA_TEST_SUBNET_BASE").unwrap_or_else(|_| "10.214".to_string());
    let mut parts = base.split('.').map(str::parse::<u8>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), None) => Ok((a, b)),
        _ => bail!("LAMINA_TEST_SUBNET_BASE must be two octets like 10.214, got {base:?}"),
    }
}

/// One worker's host: its namespace and link.
#[derive(Debug)]
struct Host {
    netns: String,
    veth: String,
    address: Ipv4Addr,
    worker_id: String,
}

/// A bridge and the namespaces attached to it, removed on drop.
#[derive(Debug)]
pub struct Network {
    x: u8,
    base: (u8, u8),
    bridge: String,
    hosts: Vec<Host>,
}

impl Network {
    /// Allocates a free /24 and creates its bridge.
    pub fn create() -> Result<Network> {
        require_root();
        let base = subnet_base()?;
        let in_use = ip(None, &["-o", "-4", "addr", "show"])?;
        // Start where this pid points so parallel processes rarely race for the same X.
        let start = (std::process::id() % 256) as usize;
        for step in 0..256 {
            let x = ((start + step) % 256) as u8;
            let bridge = format!("{NAME_PREFIX}{x}");
            let prefix = format!(" inet {}.{}.{x}.", base.0, base.1);
            // The address is taken: by a bridge of a test process that died (reclaimed), else by
            // something that is not ours.
            if in_use.contains(&prefix) && !(bridge_exists(&bridge) && reclaim_stale(&bridge, x)) {
                continue;
            }
            if ip(None, &["link", "add", &bridge, "type", "bridge"]).is_err() {
                // Another process owns it (or it is left over from one that died).
                if !reclaim_stale(&bridge, x)
                    || ip(None, &["link", "add", &bridge, "type", "bridge"]).is_err()
                {
                    continue;
                }
            }
            let net = Network {
                x,
                base,
                bridge: bridge.clone(),
                hosts: Vec::new(),
            };
            let alias = format!("{ALIAS_PREFIX}{}", std::process::id());
            ip(None, &["link", "set", "dev", &bridge, "alias", &alias])?;
            ip(
                None,
                &[
                    "addr",
                    "add",
                    &format!("{}/24", net.gateway()),
                    "dev",
                    &bridge,
                ],
            )?;
            ip(None, &["link", "set", &bridge, "up"])?;
            return Ok(net);
        }
        bail!(
            "no free test subnet {}.{}.X.0/24: 256 bridges {NAME_PREFIX}X exist (leftovers? `ip link show type bridge`)",
            base.0,
            base.1
        )
    }

    /// The bridge's address: the controller's host.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.base.0, self.base.1, self.x, 1)
    }

    /// Creates the namespace of the next host for `worker_id` and returns its index.
    fn add_host(&mut self, worker_id: &str) -> Result<usize> {
        let i = self.hosts.len() + 1;
        if i > MAX_HOSTS {
            bail!("at most {MAX_HOSTS} workers per test network");
        }
        let host = Host {
            netns: format!("{NAME_PREFIX}{}w{i}", self.x),
            veth: format!("{NAME_PREFIX}{}v{i}", self.x),
            address: Ipv4Addr::new(self.base.0, self.base.1, self.x, 10 + i as u8),
            worker_id: worker_id.to_string(),
        };
        // Recorded first: a failure below still gets cleaned up on drop.
        let (ns, veth) = (host.netns.clone(), host.veth.clone());
        let address = format!("{}/24", host.address);
        self.hosts.push(host);
        ip(None, &["netns", "add", &ns])?;
        ip(
            None,
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        ip(None, &["link", "set", &veth, "master", &self.bridge])?;
        ip(None, &["link", "set", &veth, "up"])?;
        ip(Some(&ns), &["link", "set", "lo", "up"])?;
        ip(Some(&ns), &["addr", "add", &address, "dev", "eth0"])?;
        ip(Some(&ns), &["link", "set", "eth0", "up"])?;
        let gateway = self.gateway().to_string();
        ip(Some(&ns), &["route", "add", "default", "via", &gateway])?;
        Ok(i - 1)
    }

    fn host_of(&self, worker_id: &str) -> Result<&Host> {
        self.hosts
            .iter()
            .find(|h| h.worker_id == worker_id)
            .with_context(|| format!("worker {worker_id} has no namespace in this network"))
    }

    /// Takes the worker's link down on the bridge side: its packets vanish, no TCP reset is ever
    /// sent, and the process keeps running.
    pub fn cut(&self, worker_id: &str) -> Result<()> {
        let host = self.host_of(worker_id)?;
        ip(None, &["link", "set", &host.veth, "down"])?;
        Ok(())
    }

    /// The network namespace of a worker, `/run/netns/NAME`.
    pub fn netns_path(&self, worker_id: &str) -> Result<String> {
        Ok(format!("/run/netns/{}", self.host_of(worker_id)?.netns))
    }

    /// The worker's address on the bridge.
    pub fn address(&self, worker_id: &str) -> Result<Ipv4Addr> {
        Ok(self.host_of(worker_id)?.address)
    }
}

fn bridge_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Deletes bridge `lamt<x>` and its namespaces when the test process that made it is gone; `true`
/// when it was reclaimed (or did not exist).
fn reclaim_stale(bridge: &str, x: u8) -> bool {
    let Ok(show) = ip(None, &["-d", "link", "show", "dev", bridge]) else {
        return true;
    };
    let owner = show
        .lines()
        .find_map(|l| l.trim().strip_prefix("alias "))
        .and_then(|a| a.trim().strip_prefix(ALIAS_PREFIX))
        .and_then(|p| p.trim().parse::<i32>().ok());
    match owner {
        Some(pid) if !pid_alive(pid) => {}
        // Alive, or not made by this harness: leave it alone.
        _ => return false,
    }
    let namespaces = ip(None, &["netns", "list"]).unwrap_or_default();
    let ours = format!("{NAME_PREFIX}{x}w");
    for ns in namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| {
            n.strip_prefix(&ours)
                .is_some_and(|i| i.parse::<u32>().is_ok())
        })
    {
        kill_all(&netns_pids(ns));
        let _ = ip(None, &["netns", "del", ns]);
    }
    ip(None, &["link", "del", bridge]).is_ok()
}

fn kill_all(pids: &[i32]) {
    for &pid in pids {
        // SAFETY: kill(2) has no memory-safety preconditions; a pid that is gone is fine.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    for _ in 0..50 {
        if !pids.iter().any(|&p| pid_alive(p)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in &self.hosts {
            // The worker is stopped by now (its `Proc` dropped first); a killed or cut-off one
            // may have left sandboxes and helper processes.
            crate::reap_worker_sandboxes(&host.worker_id);
            kill_all(&netns_pids(&host.netns));
            // Deleting one end removes the pair at once (a namespace's own go asynchronously).
            let _ = ip(None, &["link", "del", &host.veth]);
            let _ = ip(None, &["netns", "del", &host.netns]);
        }
        let _ = ip(None, &["link", "del", &self.bridge]);
    }
}

impl Cluster {
    /// A controller and `workers` workers, each worker in its own network namespace (see the
    /// module docs). `add_worker` on the result adds more, each in a new namespace.
    pub fn start_netns(
        workers: usize,
        controller_args: &[&str],
        worker_args: &[&str],
    ) -> Result<Cluster> {
        require_root();
        let network = Network::create()?;
        let dir = tempfile::Builder::new().prefix("lamina-e2e-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let listen = format!("{}:0", network.gateway());
        // Not loopback: TLS on every listener, the controller's certificate naming the bridge.
        let tls = TestTls::create(dir.path(), &[network.gateway().to_string()])?;
        let controller = spawn_controller(dir.path(), &listen, controller_args, 0, Some(&tls))?;
        let mut cluster = Cluster::new(dir, controller, Some(tls))?;
        cluster.netns = Some(network);
        for _ in 0..workers {
            cluster.add_worker(worker_args)?;
        }
        Ok(cluster)
    }

    /// Starts one more worker in a namespace of its own (what `add_worker` does on a cluster from
    /// [`Cluster::start_netns`]).
    pub(crate) fn add_netns_worker(&mut self, extra: &[&str]) -> Result<()> {
        let id = unique("w");
        let network = self
            .netns
            .as_mut()
            .context("not a network-namespace cluster")?;
        // No --uid-base: each worker takes a free uid range, locked host-wide, distinct from every
        // other worker on this host (other clusters of tests running at the same time included).
        network.add_host(&id)?;
        let (netns, address) = (network.netns_path(&id)?, network.address(&id)?.to_string());
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={netns}"))
            .arg("--")
            .arg(bin("lamina-worker"))
            .args(["--controller", &self.endpoint])
            .args(["--listen", &format!("{address}:0")])
            .arg("--state-dir")
            .arg(self.dir.path().join(&id))
            .args(["--worker-id", &id])
            .arg("--cluster-token-file")
            .arg(&self.cluster_token_file)
            .args(self.worker_transport_args(&id, std::slice::from_ref(&address), extra)?)
            .args(extra);
        let log = self.dir.path().join(format!("{id}.log"));
        let p = Proc::spawn(&id, cmd, "lamina-worker ", log)?;
        self.workers.push(p);
        self.worker_ids.push(id);
        Ok(())
    }

    /// Cuts worker `index` off the network (its veth goes down): it keeps running but vanishes
    /// without a TCP reset; the controller notices only by missed heartbeats.
    pub fn cut_worker_network(&self, index: usize) -> Result<()> {
        self.netns
            .as_ref()
            .context("cut_worker_network needs a cluster from Cluster::start_netns")?
            .cut(&self.worker_ids[index])
    }

    /// The network namespaces, for a cluster from [`Cluster::start_netns`].
    pub fn network(&self) -> Option<&Network> {
        self.netns.as_ref()
    }
}
