//! Default egress of sandboxes without a VPC (`--default-egress`): `none` (the default: loopback
//! only, nothing to do) or `nat`: each such sandbox gets `eth0` on a worker-local bridge with an
//! address of `--nat-cidr` and a default route through it, masqueraded out of the host. In NAT
//! mode the host itself (its addresses, so the worker's port), the controller's address,
//! 169.254.0.0/16, loopback ranges, the VPC bridges and the other NAT sandboxes stay unreachable
//! (`table inet lamina_nat_TAG`).
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::str::FromStr;

use lamina_proto::network::Ipv4Cidr;

use super::links::{self, ip_batch, ip_batch_in, SANDBOX_MTU};
use super::NetworkError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EgressMode {
    #[default]
    None,
    Nat,
}

impl FromStr for EgressMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(EgressMode::None),
            "nat" => Ok(EgressMode::Nat),
            _ => Err(format!("--default-egress must be none or nat, got {s:?}")),
        }
    }
}

/// NAT mode settings.
#[derive(Debug, Clone)]
pub struct NatConfig {
    pub cidr: Ipv4Cidr,
    /// Addresses sandboxes must never reach besides the host's own (e.g. the controller's).
    pub blocked: Vec<Ipv4Cidr>,
}

/// The NAT bridge and its addresses.
#[derive(Debug, Default)]
pub struct Nat {
    ready: bool,
    /// Sandbox id -> (address, host interface).
    used: BTreeMap<String, (Ipv4Addr, String)>,
}

impl Nat {
    pub fn bridge(tag: &str) -> String {
        format!("ln{tag}")
    }

    /// A free address for `sandbox_id` (recorded at once).
    pub fn reserve(
        &mut self,
        cfg: &NatConfig,
        sandbox_id: &str,
        ifname: String,
    ) -> Option<Ipv4Addr> {
        let taken: BTreeSet<Ipv4Addr> = self.used.values().map(|(a, _)| *a).collect();
        let a = cfg.cidr.hosts().find(|a| !taken.contains(a))?;
        self.used.insert(sandbox_id.to_string(), (a, ifname));
        Some(a)
    }

    pub fn release(&mut self, sandbox_id: &str) -> bool {
        self.used.remove(sandbox_id).is_some()
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    pub fn set_ready(&mut self) {
        self.ready = true;
    }

    /// Creates the bridge, turns forwarding on and installs the rules (idempotent). Blocking.
    pub fn setup(tag: &str, cfg: &NatConfig) -> Result<(), NetworkError> {
        let br = Nat::bridge(tag);
        if links::links_with_prefix(&br)?.iter().all(|l| l != &br) {
            ip_batch(&format!("link add {br} type bridge\nlink set {br} up\n"))?;
        }
        ip_batch(&format!(
            "addr replace {}/{} dev {br}\n",
            cfg.cidr.gateway(),
            cfg.cidr.prefix
        ))?;
        // Replies come back on the uplink: forwarding in this namespace, bounded by the rules.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| {
            NetworkError::Command {
                what: "write /proc/sys/net/ipv4/ip_forward".into(),
                detail: e.to_string(),
            }
        })?;
        links::nft(&render(tag, cfg, &host_addresses()?))
    }

    /// Removes the bridge and the table (idempotent: both may be absent). Blocking. A failure is
    /// returned: a NAT table left behind would keep the egress open.
    pub fn teardown(tag: &str) -> Result<(), NetworkError> {
        links::delete_link(&Nat::bridge(tag))?;
        // Declaring the table first makes the delete succeed whether or not it existed.
        links::nft(&format!(
            "table inet {0}\ndelete table inet {0}\n",
            table_name(tag)
        ))
    }
}

/// The host's own IPv4 addresses in this namespace.
fn host_addresses() -> Result<Vec<Ipv4Addr>, NetworkError> {
    let out = links::run("ip", &["-o", "-4", "addr", "show"], "")?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            it.position(|w| w == "inet")?;
            it.next()?.split('/').next()?.parse().ok()
        })
        .collect())
}

pub fn table_name(tag: &str) -> String {
    format!("lamina_nat_{tag}")
}

/// The NAT table: one transaction replacing it.
pub fn render(tag: &str, cfg: &NatConfig, host: &[Ipv4Addr]) -> String {
    let t = table_name(tag);
    let br = Nat::bridge(tag);
    let mut blocked: Vec<String> = vec![
        "169.254.0.0/16".into(),
        "127.0.0.0/8".into(),
        "0.0.0.0/8".into(),
    ];
    blocked.extend(host.iter().map(|a| format!("{a}/32")));
    blocked.extend(cfg.blocked.iter().map(|c| c.to_string()));
    let mut s = String::new();
    scriptln!(
        s,
        "table inet {t}\ndelete table inet {t}\ntable inet {t} {{"
    );
    scriptln!(
        s,
        "  set blocked {{ type ipv4_addr; flags interval; auto-merge; elements = {{ {} }}; }}",
        blocked.join(", ")
    );
    scriptln!(
        s,
        "  chain input {{\n    type filter hook input priority 0; policy accept;\n    iifname \"{br}\" drop\n  }}"
    );
    scriptln!(
        s,
        "  chain forward {{\n    type filter hook forward priority 0; policy accept;\n\
         \x20   iifname \"{br}\" oifname \"{br}\" drop\n\
         \x20   oifname \"{br}\" ct state established,related accept\n\
         \x20   oifname \"{br}\" drop\n\
         \x20   iifname \"{br}\" meta nfproto != ipv4 drop\n\
         \x20   iifname \"{br}\" ip daddr @blocked drop\n\
         \x20   iifname \"{br}\" oifname \"lb{tag}*\" drop\n\
         \x20   iifname \"{br}\" accept\n  }}"
    );
    scriptln!(
        s,
        "  chain postrouting {{\n    type nat hook postrouting priority 100; policy accept;\n    ip saddr {} oifname != \"{br}\" masquerade\n  }}\n}}",
        cfg.cidr
    );
    s
}

/// The veth of a NAT sandbox: `eth0` inside with `address`, default route via the bridge.
pub fn plumb(
    tag: &str,
    cfg: &NatConfig,
    host_if: &str,
    peer: &str,
    pid: i32,
    address: Ipv4Addr,
) -> Result<(), NetworkError> {
    let br = Nat::bridge(tag);
    ip_batch(&format!(
        "link add {host_if} mtu {SANDBOX_MTU} type veth peer name {peer} mtu {SANDBOX_MTU} netns {pid}\n\
         link set {host_if} master {br} up\n"
    ))?;
    ip_batch_in(
        &format!("/proc/{pid}/ns/net"),
        &format!(
            "link set {peer} name eth0\naddr add {address}/{} dev eth0\nlink set eth0 up\n\
             route add default via {} dev eth0\n",
            cfg.cidr.prefix,
            cfg.cidr.gateway()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_rules_block_the_host_metadata_and_the_controller() {
        let cfg = NatConfig {
            cidr: "10.239.0.0/16".parse().unwrap(),
            blocked: vec!["10.214.3.1/32".parse().unwrap()],
        };
        let s = render("ab12", &cfg, &[Ipv4Addr::new(10, 214, 3, 11)]);
        assert!(s.contains("169.254.0.0/16"), "{s}");
        assert!(
            s.contains("10.214.3.11/32") && s.contains("10.214.3.1/32"),
            "{s}"
        );
        assert!(s.contains("iifname \"lnab12\" drop"), "{s}");
        assert!(
            s.contains("ip saddr 10.239.0.0/16 oifname != \"lnab12\" masquerade"),
            "{s}"
        );
        assert_eq!("nat".parse::<EgressMode>().unwrap(), EgressMode::Nat);
        assert!("open".parse::<EgressMode>().is_err());
    }
}
