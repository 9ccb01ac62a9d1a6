//! What the host should have (bridges, tunnels, attachments) and making it so; the controller's
//! state parsed. Blocking: run from `spawn_blocking`.
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use lamina_proto::network::{self as net, Ipv4Cidr, SecurityGroup, POOL_OWNER};
use lamina_proto::v1;

use super::links::{self, ip_batch, ip_batch_in, links_with_prefix, SANDBOX_MTU};
use super::{nft, NetworkError, State, SubnetInfo, VpcInfo, VXLAN_PORT};

/// The commands that configure a sandbox's or namespace's side of its interface.
pub(super) fn inside_config(
    name: &str,
    address: Ipv4Addr,
    subnet: Ipv4Cidr,
    vpc: Ipv4Cidr,
) -> String {
    format!(
        "link set {name} name eth0\n\
         addr add {address}/{} dev eth0\n\
         link set eth0 up\n\
         route add {vpc} dev eth0 scope link\n\
         route add default via {} dev eth0 onlink\n",
        subnet.prefix,
        subnet.gateway()
    )
}

/// The commands that configure an attached namespace's side of its interface (`vpc0`): its
/// address (and with it the subnet's route) and the VPC's route, never a default route — the
/// namespace is the operator's, and its other traffic keeps going where it went.
pub(super) fn attachment_config(
    name: &str,
    address: Ipv4Addr,
    subnet: Ipv4Cidr,
    vpc: Ipv4Cidr,
) -> String {
    format!(
        "link set {name} name vpc0\n\
         addr add {address}/{} dev vpc0\n\
         link set vpc0 up\n\
         route replace {vpc} dev vpc0 scope link\n",
        subnet.prefix,
    )
}

/// An address taken for a sandbox, with what its interface needs.
pub(super) struct Reserved {
    pub(super) port: nft::Port,
    pub(super) peer: String,
    pub(super) bridge: BridgePlan,
    pub(super) subnet: Ipv4Cidr,
    pub(super) vpc: Ipv4Cidr,
}

pub(super) struct BridgePlan {
    pub(super) name: String,
    pub(super) vxlan: String,
    pub(super) vni: u32,
    pub(super) gateways: Vec<Ipv4Cidr>,
}

impl BridgePlan {
    /// Creates the bridge with its gateway addresses (idempotent).
    pub(super) fn ensure_bridge(&self) -> Result<(), NetworkError> {
        let exists = !links_with_prefix(&self.name)?.is_empty();
        let mut b = String::new();
        if !exists {
            b.push_str(&format!(
                "link add {} type bridge\nlink set {} up\n",
                self.name, self.name
            ));
        }
        for g in &self.gateways {
            b.push_str(&format!(
                "addr replace {}/{} dev {}\n",
                g.gateway(),
                g.prefix,
                self.name
            ));
        }
        ip_batch(&b)
    }
}

pub(super) struct AttachPlan {
    pub(super) id: String,
    pub(super) netns: String,
    pub(super) port: nft::Port,
    pub(super) subnet: Ipv4Cidr,
    pub(super) vpc: Ipv4Cidr,
}

/// The host as it should be: bridges (+ VXLAN), attachments.
pub(super) struct Plan {
    pub(super) bridges: Vec<BridgePlan>,
    pub(super) peers: Vec<Ipv4Addr>,
    pub(super) attachments: Vec<AttachPlan>,
    pub(super) previous: BTreeMap<String, nft::Port>,
}

impl Plan {
    /// Makes it so; returns the attachments plumbed.
    pub(super) fn execute(
        self,
        tag: &str,
        local: Option<Ipv4Addr>,
    ) -> Result<BTreeMap<String, nft::Port>, NetworkError> {
        let wanted: BTreeSet<&str> = self.bridges.iter().map(|b| b.name.as_str()).collect();
        // Attachments no longer wanted (or whose bridge goes): their veth (both ends) goes.
        let mut attached = BTreeMap::new();
        let keep: BTreeSet<&str> = self.attachments.iter().map(|a| a.id.as_str()).collect();
        for (id, port) in &self.previous {
            if !keep.contains(id.as_str()) {
                links::delete_link(&port.ifname)?;
            }
        }
        for name in links_with_prefix(&format!("lb{tag}"))? {
            if !wanted.contains(name.as_str()) {
                links::delete_link(&name.replacen("lb", "lx", 1))?;
                links::delete_link(&name)?;
            }
        }
        for b in &self.bridges {
            b.ensure_bridge()?;
            if let Some(local) = local.filter(|_| !self.peers.is_empty()) {
                let exists = !links_with_prefix(&b.vxlan)?.is_empty();
                let mut batch = String::new();
                if !exists {
                    batch.push_str(&format!(
                        "link add {} mtu {SANDBOX_MTU} type vxlan id {} local {local} dstport {VXLAN_PORT}\n\
                         link set {} master {} up\n",
                        b.vxlan, b.vni, b.vxlan, b.name
                    ));
                }
                ip_batch(&batch)?;
                for p in &self.peers {
                    let dst = p.to_string();
                    let args = [
                        "fdb",
                        "append",
                        "00:00:00:00:00:00",
                        "dev",
                        &b.vxlan,
                        "dst",
                        &dst,
                    ];
                    // `append` of an entry that is there already fails: that one is fine, any
                    // other failure (a peer this worker cannot reach) is returned.
                    if let Err(e) = links::run("bridge", &args, "") {
                        let fdb = links::run("bridge", &["fdb", "show", "dev", &b.vxlan], "")?;
                        if !fdb.lines().any(|l| {
                            l.starts_with("00:00:00:00:00:00")
                                && l.split_whitespace().skip_while(|w| *w != "dst").nth(1)
                                    == Some(dst.as_str())
                        }) {
                            return Err(e);
                        }
                    }
                }
            }
        }
        for a in &self.attachments {
            let exists = !links_with_prefix(&a.port.ifname)?.is_empty();
            if !exists {
                let peer = format!("lq{}", &a.port.ifname[2..]);
                let path = format!("/run/netns/{}", a.netns);
                if !std::path::Path::new(&path).exists() {
                    tracing::warn!(netns = %a.netns, attachment = %a.id, "attached netns does not exist on this host");
                    continue;
                }
                ip_batch(&format!(
                    "link add {} mtu {SANDBOX_MTU} type veth peer name {peer} mtu {SANDBOX_MTU} netns {}\n\
                     link set {} master {} up\n",
                    a.port.ifname, a.netns, a.port.ifname, a.port.bridge
                ))?;
                let inside = attachment_config(&peer, a.port.address, a.subnet, a.vpc);
                ip_batch_in(&path, &inside)?;
            }
            attached.insert(a.id.clone(), a.port.clone());
        }
        Ok(attached)
    }
}

pub(super) fn parse_state(s: &v1::NetworkState) -> Result<State, NetworkError> {
    let bad = |m: String| NetworkError::BadState(m);
    let mut st = State::default();
    for v in &s.vpcs {
        let cidr = v.cidr.parse().map_err(bad)?;
        st.vpcs.insert(v.id.clone(), VpcInfo { cidr, vni: v.vni });
    }
    for x in &s.subnets {
        let cidr = x.cidr.parse().map_err(bad)?;
        st.subnets.insert(
            x.id.clone(),
            SubnetInfo {
                vpc_id: x.vpc_id.clone(),
                cidr,
            },
        );
    }
    for g in &s.groups {
        let rules = |rs: &[v1::SecurityGroupRule]| {
            rs.iter()
                .map(net::rule)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| NetworkError::BadState(e.message))
        };
        st.groups.insert(
            g.id.clone(),
            SecurityGroup {
                id: g.id.clone(),
                vpc_id: g.vpc_id.clone(),
                name: g.name.clone(),
                description: String::new(),
                ingress: rules(&g.ingress)?,
                egress: rules(&g.egress)?,
                created_ms: g.created_ms,
            },
        );
    }
    let addr = |a: &str| {
        a.parse::<Ipv4Addr>()
            .map_err(|_| NetworkError::BadState(format!("{a:?} is not an IPv4 address")))
    };
    for m in &s.members {
        let list = m
            .addresses
            .iter()
            .map(|a| addr(a))
            .collect::<Result<_, _>>()?;
        st.members.insert(m.group_id.clone(), list);
    }
    st.peers = s.peers.iter().map(|a| addr(a)).collect::<Result<_, _>>()?;
    st.attachments = s.attachments.clone();
    for l in s.leases.iter().filter(|l| l.owner == POOL_OWNER) {
        let mut groups = l.security_group_ids.clone();
        groups.sort();
        st.pool
            .entry((l.subnet_id.clone(), groups))
            .or_default()
            .insert(addr(&l.address)?);
    }
    Ok(st)
}
