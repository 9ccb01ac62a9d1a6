//! VPC networking, worker side: one bridge per VPC (carrying the gateway address of each of its
//! subnets), a VXLAN port on it per VPC (VNI per VPC, head-end replication to the other workers),
//! an ENI-like interface per sandbox of a VPC function (a veth: `eth0` inside the sandbox's network
//! namespace with its address, an on-link route for the VPC and a default route via the subnet
//! gateway; the host end on the bridge), netns attachments plugged the same way, and the security
//! groups as nftables rules (`nft.rs`), replaced atomically on every change.
//!
//! Addresses come from the controller (leased per subnet and security-group set, never colliding
//! across workers) and are pooled here: a sandbox takes a free leased address, gives it back when it
//! goes; only when none is free does a cold start ask the controller (`Cluster.AllocateAddresses`,
//! a batch at a time).
/// Appends to an `nft -f` script being built in a `String` (`format!` then `push_str`: appending
/// to a `String` cannot fail, so there is no result to drop).
macro_rules! script {
    ($s:expr, $($arg:tt)*) => {
        $s.push_str(&format!($($arg)*))
    };
}

/// [`script!`] and a newline.
macro_rules! scriptln {
    ($s:expr, $($arg:tt)*) => {{
        $s.push_str(&format!($($arg)*));
        $s.push('\n');
    }};
}

pub mod egress;
pub mod links;
pub mod nft;
mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use lamina_proto::auth::SignedChannel;
use lamina_proto::network::{Ipv4Cidr, SecurityGroup, VpcConfig};
use lamina_proto::v1;
use lamina_proto::v1::cluster_client::ClusterClient;

use links::{ip_batch, ip_batch_in, links_with_prefix, vpc_suffix, SANDBOX_MTU};
use plan::{inside_config, parse_state, AttachPlan, BridgePlan, Plan, Reserved};

/// Addresses asked for at a time when the pool of a (subnet, groups) pair is empty.
const LEASE_BATCH: u32 = 4;
const VXLAN_PORT: u16 = 4789;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("`{what}` failed: {detail}")]
    Command { what: String, detail: String },
    #[error("the network state from the controller is invalid: {0}")]
    BadState(String),
    #[error("VPC attachment needs the controller, which this worker has no connection to")]
    NoController,
    #[error("cannot lease an address in {subnets}: {status}")]
    Lease { subnets: String, status: String },
    #[error("sandbox {0} has no process to attach an interface to")]
    NoProcess(String),
}

#[derive(Debug, Clone)]
struct SubnetInfo {
    vpc_id: String,
    cidr: Ipv4Cidr,
}

#[derive(Debug, Clone)]
struct VpcInfo {
    cidr: Ipv4Cidr,
    vni: u32,
}

/// What the controller last sent (parsed).
#[derive(Debug, Default)]
struct State {
    vpcs: BTreeMap<String, VpcInfo>,
    subnets: BTreeMap<String, SubnetInfo>,
    groups: BTreeMap<String, SecurityGroup>,
    members: BTreeMap<String, Vec<Ipv4Addr>>,
    peers: Vec<Ipv4Addr>,
    attachments: Vec<v1::NetnsAttachment>,
    /// Pool leases: (subnet, sorted groups) -> addresses.
    pool: BTreeMap<(String, Vec<String>), BTreeSet<Ipv4Addr>>,
}

/// A sandbox's interface.
#[derive(Debug, Clone)]
struct SandboxPort {
    port: nft::Port,
    subnet_id: String,
}

#[derive(Default)]
struct Inner {
    state: State,
    /// Sandbox id -> its interface.
    sandboxes: BTreeMap<String, SandboxPort>,
    /// Attachment id -> host interface, for the ones plumbed.
    attached: BTreeMap<String, nft::Port>,
    /// The last state applied in full (a repeat of it changes nothing).
    applied: Option<v1::NetworkState>,
    /// The last ruleset applied.
    rules: Option<String>,
    /// Bridges (with their tunnel) made by the last reconcile.
    bridges: BTreeSet<String>,
    /// The tables exist (a full render applied): ports can be added in place.
    tables: bool,
    /// Default egress of sandboxes without a VPC (`None`: no egress at all).
    nat_config: Option<egress::NatConfig>,
    nat: egress::Nat,
}

/// The worker's VPC agent. Cheap to share (`Arc`).
pub struct NetworkAgent {
    worker_id: String,
    tag: String,
    /// This worker's underlay address (the VXLAN tunnel end), when it has a routable one.
    local: Mutex<Option<Ipv4Addr>>,
    controller: OnceLock<ClusterClient<SignedChannel>>,
    inner: Mutex<Inner>,
    /// Serialises the plumbing (state changes and nft transactions in order).
    plumbing: tokio::sync::Mutex<()>,
    seq: AtomicU64,
}

impl NetworkAgent {
    /// An agent for `worker_id` whose tunnel end is `local`. Removes what a previous run of this
    /// worker left behind (interfaces with its tag, its nftables tables).
    pub fn new(worker_id: &str, local: Option<Ipv4Addr>) -> Arc<NetworkAgent> {
        let agent = Arc::new(NetworkAgent {
            worker_id: worker_id.to_string(),
            tag: links::worker_tag(worker_id),
            local: Mutex::new(local.filter(|a| !a.is_loopback() && !a.is_unspecified())),
            controller: OnceLock::new(),
            inner: Mutex::default(),
            plumbing: tokio::sync::Mutex::new(()),
            seq: AtomicU64::new(0),
        });
        if let Err(e) = agent.remove_everything() {
            tracing::warn!(error = %e, "cannot remove the VPC interfaces a previous run left");
        }
        agent
    }

    /// Sets the tunnel end (the address the worker advertises; loopback or unspecified: none).
    pub fn set_local(&self, local: Option<Ipv4Addr>) {
        *self.local.lock().unwrap_or_else(|e| e.into_inner()) =
            local.filter(|a| !a.is_loopback() && !a.is_unspecified());
    }

    /// Sandboxes without a VPC get NAT'd egress (`Some`) or none (`None`, the default).
    pub fn set_default_egress(&self, nat: Option<egress::NatConfig>) {
        self.inner().nat_config = nat;
    }

    /// Gives a sandbox without a VPC its default egress: nothing (loopback only) or an interface
    /// on the NAT bridge.
    pub async fn attach_default(&self, sandbox_id: &str, pids: &[i32]) -> Result<(), NetworkError> {
        let Some(cfg) = self.inner().nat_config.clone() else {
            return Ok(());
        };
        let pid = *pids
            .first()
            .ok_or_else(|| NetworkError::NoProcess(sandbox_id.to_string()))?;
        let _p = self.plumbing.lock().await;
        let (host, peer) = self.next_port();
        let host = host.replacen("le", "ln", 1);
        let (ready, address) = {
            let mut inner = self.inner();
            let ready = inner.nat.is_ready();
            (ready, inner.nat.reserve(&cfg, sandbox_id, host.clone()))
        };
        let Some(address) = address else {
            return Err(NetworkError::BadState(format!(
                "no free address left in --nat-cidr {}",
                cfg.cidr
            )));
        };
        let tag = self.tag.clone();
        let done = tokio::task::spawn_blocking(move || {
            if !ready {
                egress::Nat::setup(&tag, &cfg)?;
            }
            egress::plumb(&tag, &cfg, &host, &peer, pid, address)
        })
        .await
        .map_err(|e| NetworkError::BadState(format!("plumbing task failed: {e}")))?;
        let mut inner = self.inner();
        match done {
            Ok(()) => {
                inner.nat.set_ready();
                Ok(())
            }
            Err(e) => {
                inner.nat.release(sandbox_id);
                Err(e)
            }
        }
    }

    /// Sets the client that leases addresses from the controller; `false` when one was set
    /// already (the first stays: leases must all come from one place).
    #[must_use]
    pub fn set_controller(&self, client: ClusterClient<SignedChannel>) -> bool {
        self.controller.set(client).is_ok()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bridge(&self, vpc_id: &str) -> String {
        format!("lb{}{}", self.tag, vpc_suffix(vpc_id))
    }
    fn vxlan(&self, vpc_id: &str) -> String {
        format!("lx{}{}", self.tag, vpc_suffix(vpc_id))
    }
    fn next_port(&self) -> (String, String) {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        (
            format!("le{}s{n:x}", self.tag),
            format!("lp{}{n:x}", self.tag),
        )
    }

    /// Takes the controller's complete state and makes the host match it.
    pub async fn apply(&self, state: v1::NetworkState) -> Result<(), NetworkError> {
        let parsed = parse_state(&state)?;
        let _p = self.plumbing.lock().await;
        if self.inner().applied.as_ref() == Some(&state) {
            return Ok(());
        }
        {
            let mut inner = self.inner();
            inner.state = parsed;
            inner.applied = None;
        }
        self.reconcile().await?;
        self.inner().applied = Some(state);
        Ok(())
    }

    async fn reconcile(&self) -> Result<(), NetworkError> {
        let plan = self.plan();
        let bridges: BTreeSet<String> = plan.bridges.iter().map(|b| b.name.clone()).collect();
        let tag = self.tag.clone();
        let local = *self.local.lock().unwrap_or_else(|e| e.into_inner());
        let result = tokio::task::spawn_blocking(move || plan.execute(&tag, local))
            .await
            .map_err(|e| NetworkError::BadState(format!("plumbing task failed: {e}")))?;
        let attached = result?;
        {
            let mut inner = self.inner();
            inner.attached = attached;
            inner.bridges = bridges;
        }
        self.apply_rules().await
    }

    /// What the host should have, from the state and the sandboxes' interfaces.
    fn plan(&self) -> Plan {
        let inner = self.inner();
        let st = &inner.state;
        // VPCs in use here: a lease (pool or attachment) or a sandbox in one of its subnets.
        let mut used: BTreeSet<String> = BTreeSet::new();
        for (subnet, _) in st.pool.keys() {
            if let Some(s) = st.subnets.get(subnet) {
                used.insert(s.vpc_id.clone());
            }
        }
        for a in &st.attachments {
            used.insert(a.vpc_id.clone());
        }
        for p in inner.sandboxes.values() {
            if let Some(s) = st.subnets.get(&p.subnet_id) {
                used.insert(s.vpc_id.clone());
            }
        }
        let bridges = used
            .iter()
            .filter_map(|v| {
                let vpc = st.vpcs.get(v)?;
                Some(BridgePlan {
                    name: self.bridge(v),
                    vxlan: self.vxlan(v),
                    vni: vpc.vni,
                    gateways: st
                        .subnets
                        .values()
                        .filter(|s| &s.vpc_id == v)
                        .map(|s| s.cidr)
                        .collect(),
                })
            })
            .collect();
        let attachments = st
            .attachments
            .iter()
            .filter_map(|a| {
                let subnet = st.subnets.get(&a.subnet_id)?;
                let vpc = st.vpcs.get(&subnet.vpc_id)?;
                Some(AttachPlan {
                    id: a.id.clone(),
                    netns: a.netns.clone(),
                    port: nft::Port {
                        ifname: format!("le{}a{}", self.tag, a.id.trim_start_matches("eni-")),
                        bridge: self.bridge(&subnet.vpc_id),
                        address: a.address.parse().ok()?,
                        groups: a.security_group_ids.clone(),
                    },
                    subnet: subnet.cidr,
                    vpc: vpc.cidr,
                })
            })
            .collect();
        Plan {
            bridges,
            peers: st.peers.clone(),
            attachments,
            previous: inner.attached.clone(),
        }
    }

    /// Renders and applies the security-group rules for every local port.
    async fn apply_rules(&self) -> Result<(), NetworkError> {
        let rs = self.ruleset();
        self.apply_ruleset(rs).await
    }

    fn ruleset(&self) -> nft::Ruleset {
        {
            let inner = self.inner();
            let mut ports: Vec<nft::Port> =
                inner.sandboxes.values().map(|p| p.port.clone()).collect();
            ports.extend(inner.attached.values().cloned());
            nft::Ruleset {
                tag: self.tag.clone(),
                bridge_prefix: format!("lb{}", self.tag),
                port_prefix: format!("le{}", self.tag),
                vxlan_prefix: format!("lx{}", self.tag),
                ports,
                groups: inner.state.groups.clone(),
                members: inner.state.members.clone(),
            }
        }
    }

    async fn apply_ruleset(&self, rs: nft::Ruleset) -> Result<(), NetworkError> {
        // Nothing of a VPC on this worker: no tables at all.
        let idle = {
            let inner = self.inner();
            rs.ports.is_empty() && inner.state.pool.is_empty() && inner.state.attachments.is_empty()
        };
        let script = if idle {
            nft::render_delete(&self.tag)
        } else {
            nft::render(&rs)
        };
        if self.inner().rules.as_ref() == Some(&script) {
            return Ok(());
        }
        let applied = script.clone();
        self.inner().tables = false;
        tokio::task::spawn_blocking(move || links::nft(&script))
            .await
            .map_err(|e| NetworkError::BadState(format!("nft task failed: {e}")))??;
        let mut inner = self.inner();
        inner.rules = Some(applied);
        inner.tables = !idle;
        Ok(())
    }

    /// Gives sandbox `sandbox_id` (whose processes are `pids`) an interface in one of the
    /// configuration's subnets. Its security groups are in force before this returns.
    pub async fn attach(
        &self,
        sandbox_id: &str,
        pids: &[i32],
        config: &VpcConfig,
    ) -> Result<(), NetworkError> {
        let pid = *pids
            .first()
            .ok_or_else(|| NetworkError::NoProcess(sandbox_id.to_string()))?;
        let mut leased = false;
        let reserved = match self.reserve(sandbox_id, config) {
            Some(r) => r,
            None => {
                self.lease(config).await?;
                leased = true;
                self.reserve(sandbox_id, config)
                    .ok_or_else(|| NetworkError::Lease {
                        subnets: config.subnet_ids.join(","),
                        status: "the controller leased no address".into(),
                    })?
            }
        };
        let _p = self.plumbing.lock().await;
        let (known, rendered) = {
            let inner = self.inner();
            (inner.bridges.contains(&reserved.bridge.name), inner.tables)
        };
        let port = reserved.port.clone();
        if let Err(e) = self.plumb_sandbox(reserved, pid, known).await {
            self.inner().sandboxes.remove(sandbox_id);
            return Err(e);
        }
        // A new VPC on this worker needs its tunnel too; then the rules with this port: added
        // to the tables in place when nothing else changed, else rendered in full.
        let done = if !known {
            self.reconcile().await
        } else if leased || !rendered {
            self.apply_rules().await
        } else {
            self.add_port_rules(&port).await
        };
        if done.is_err() {
            self.inner().sandboxes.remove(sandbox_id);
        }
        done
    }

    async fn add_port_rules(&self, port: &nft::Port) -> Result<(), NetworkError> {
        let script = nft::render_add_port(&self.ruleset(), port);
        // The tables now differ from the last full render: the next change renders in full.
        self.inner().rules = None;
        tokio::task::spawn_blocking(move || links::nft(&script))
            .await
            .map_err(|e| NetworkError::BadState(format!("nft task failed: {e}")))?
    }

    /// Takes a free pooled address of one of the configuration's subnets for the sandbox (recorded
    /// at once, so two starts never take the same one).
    fn reserve(&self, sandbox_id: &str, config: &VpcConfig) -> Option<Reserved> {
        let mut inner = self.inner();
        let in_use: BTreeSet<Ipv4Addr> = inner.sandboxes.values().map(|p| p.port.address).collect();
        let (subnet_id, address) = config.subnet_ids.iter().find_map(|s| {
            let key = (s.clone(), config.security_group_ids.clone());
            let free = inner
                .state
                .pool
                .get(&key)?
                .iter()
                .find(|a| !in_use.contains(a))?;
            Some((s.clone(), *free))
        })?;
        let subnet = inner.state.subnets.get(&subnet_id)?.clone();
        let vpc = inner.state.vpcs.get(&subnet.vpc_id)?.clone();
        let (host, peer) = self.next_port();
        let port = nft::Port {
            ifname: host,
            bridge: self.bridge(&subnet.vpc_id),
            address,
            groups: config.security_group_ids.clone(),
        };
        inner.sandboxes.insert(
            sandbox_id.to_string(),
            SandboxPort {
                port: port.clone(),
                subnet_id,
            },
        );
        Some(Reserved {
            port,
            peer,
            bridge: BridgePlan {
                name: self.bridge(&subnet.vpc_id),
                vxlan: self.vxlan(&subnet.vpc_id),
                vni: vpc.vni,
                gateways: vec![subnet.cidr],
            },
            subnet: subnet.cidr,
            vpc: vpc.cidr,
        })
    }

    /// The veth: host end on the bridge, the other end `eth0` in the sandbox's namespace.
    /// Creating the pair with its peer directly in the sandbox's namespace costs ~1 ms over the
    /// `ip` process; moving a pre-made one in costs ~20 ms (`docs/ARCHITECTURE.md`).
    async fn plumb_sandbox(&self, r: Reserved, pid: i32, known: bool) -> Result<(), NetworkError> {
        let netns = format!("/proc/{pid}/ns/net");
        tokio::task::spawn_blocking(move || {
            if !known {
                r.bridge.ensure_bridge()?;
            }
            let (host, peer, bridge) = (&r.port.ifname, &r.peer, &r.bridge.name);
            ip_batch(&format!(
                "link add {host} mtu {SANDBOX_MTU} type veth peer name {peer} mtu {SANDBOX_MTU} netns {pid}\n\
                 link set {host} master {bridge} up\n"
            ))?;
            ip_batch_in(&netns, &inside_config(peer, r.port.address, r.subnet, r.vpc))
        })
        .await
        .map_err(|e| NetworkError::BadState(format!("plumbing task failed: {e}")))?
    }

    /// Leases addresses from the controller (first subnet with room) and takes its state.
    async fn lease(&self, config: &VpcConfig) -> Result<(), NetworkError> {
        let client = self.controller.get().ok_or(NetworkError::NoController)?;
        let mut last = String::new();
        for s in &config.subnet_ids {
            let req = v1::AllocateAddressesRequest {
                worker_id: self.worker_id.clone(),
                subnet_id: s.clone(),
                security_group_ids: config.security_group_ids.clone(),
                count: LEASE_BATCH,
            };
            match client.clone().allocate_addresses(req).await {
                Ok(resp) => {
                    if let Some(state) = resp.into_inner().state {
                        let parsed = parse_state(&state)?;
                        let _p = self.plumbing.lock().await;
                        let mut inner = self.inner();
                        inner.state = parsed;
                        inner.applied = None;
                    }
                    return Ok(());
                }
                Err(status) => last = status.message().to_string(),
            }
        }
        Err(NetworkError::Lease {
            subnets: config.subnet_ids.join(","),
            status: last,
        })
    }

    /// The sandbox is gone (its namespace, and the veth with it): its address goes back to the
    /// pool and its rules go.
    pub async fn release(&self, sandbox_id: &str) {
        let gone = {
            let mut inner = self.inner();
            inner.nat.release(sandbox_id);
            inner.sandboxes.remove(sandbox_id)
        };
        let Some(gone) = gone else {
            return;
        };
        let _p = self.plumbing.lock().await;
        // Its VPC may be used no more here (its bridge goes), or nothing at all (the tables go).
        let wanted: BTreeSet<String> = self.plan().bridges.into_iter().map(|b| b.name).collect();
        let (bridges_change, idle) = {
            let inner = self.inner();
            (
                wanted != inner.bridges,
                inner.sandboxes.is_empty()
                    && inner.state.pool.is_empty()
                    && inner.state.attachments.is_empty(),
            )
        };
        if bridges_change {
            if let Err(e) = self.reconcile().await {
                tracing::warn!(sandbox = sandbox_id, error = %e, "cannot update the VPC interfaces");
            }
            return;
        }
        if self.inner().tables && !idle {
            // In place: the port's entries and chains go in one small transaction.
            let script = nft::render_remove_port(&self.tag, &gone.port);
            self.inner().rules = None;
            let removed = tokio::task::spawn_blocking(move || links::nft(&script)).await;
            if matches!(removed, Ok(Ok(()))) {
                return;
            }
            tracing::debug!(
                sandbox = sandbox_id,
                "removing the port in place failed: rendering in full"
            );
        }
        if let Err(e) = self.apply_rules().await {
            tracing::warn!(sandbox = sandbox_id, error = %e, "cannot update the security-group rules");
        }
    }

    /// Removes every interface and rule of this worker, and gives its pool addresses back.
    pub async fn shutdown(&self) {
        if let Some(client) = self.controller.get() {
            let req = v1::ReleaseAddressesRequest {
                worker_id: self.worker_id.clone(),
                addresses: Vec::new(),
            };
            let released = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                client.clone().release_addresses(req),
            )
            .await;
            if !matches!(released, Ok(Ok(_))) {
                tracing::warn!("cannot give the VPC addresses back to the controller");
            }
        }
        let _p = self.plumbing.lock().await;
        {
            let mut inner = self.inner();
            let nat_config = inner.nat_config.take();
            *inner = Inner::default();
            inner.nat_config = nat_config;
        }
        if let Err(e) = self.remove_everything() {
            tracing::warn!(error = %e, "cannot remove the VPC interfaces");
        }
    }

    /// Gives back every pool lease (a fresh worker process has no sandboxes).
    pub async fn release_all_leases(&self) {
        let Some(client) = self.controller.get() else {
            return;
        };
        let req = v1::ReleaseAddressesRequest {
            worker_id: self.worker_id.clone(),
            addresses: Vec::new(),
        };
        if let Err(s) = client.clone().release_addresses(req).await {
            tracing::warn!(error = %s.message(), "cannot release stale VPC leases");
        }
    }

    fn remove_everything(&self) -> Result<(), NetworkError> {
        egress::Nat::teardown(&self.tag)?;
        for p in ["le", "lp", "lx", "lb", "ln"] {
            // One by one: a sandbox port may vanish with its namespace meanwhile (that is fine).
            for l in links_with_prefix(&format!("{p}{}", self.tag))? {
                links::delete_link(&l)?;
            }
        }
        links::nft(&nft::render_delete(&self.tag))
    }
}
