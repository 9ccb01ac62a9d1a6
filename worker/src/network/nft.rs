//! Security groups as nftables rules, rendered as one `nft -f` script that replaces the worker's
//! two tables in one transaction (atomic: a rule change never leaves a moment without filtering).
//!
//! - `table bridge lamina_vpc_TAG`: anti-spoofing on every VPC port (a port may only send IPv4 and
//!   ARP from its own address; no IPv6, nothing else), and nothing from the host goes out through
//!   a VXLAN port nor comes in from one (each worker's gateway addresses stay local).
//! - `table inet lamina_vpc_TAG` (bridged IPv4 passes the inet hooks through br_netfilter, with
//!   conntrack): `forward` — established/related traffic passes; a new flow from a local port
//!   must pass an egress rule of one of its groups, a new flow to a local port an ingress rule of
//!   one of its groups (a flow between two local ports: both); `input` — nothing from a VPC bridge
//!   reaches the host itself.
//!
//! Ports are identified by `address . bridge`: addresses are unique in a VPC and cannot be
//! spoofed (bridge table), so a remote member of a group is matched by its address as a local one.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use lamina_proto::network::{Protocol, RuleTarget, SecurityGroup, SgRule};

/// One interface on a VPC bridge: a sandbox's or an attached namespace's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The host-side interface (on the bridge).
    pub ifname: String,
    pub bridge: String,
    pub address: Ipv4Addr,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Ruleset {
    /// Table name suffix: `lamina_vpc_TAG`.
    pub tag: String,
    /// Interface-name prefixes (without `*`).
    pub bridge_prefix: String,
    pub port_prefix: String,
    pub vxlan_prefix: String,
    pub ports: Vec<Port>,
    pub groups: BTreeMap<String, SecurityGroup>,
    /// Every address leased with a group, cluster-wide.
    pub members: BTreeMap<String, Vec<Ipv4Addr>>,
}

pub fn table_name(tag: &str) -> String {
    format!("lamina_vpc_{tag}")
}

fn set_name(group: &str) -> String {
    format!("m_{}", group.replace('-', "_"))
}

fn rule_match(r: &SgRule, peer: &str) -> String {
    let mut m = String::new();
    match r.protocol {
        Protocol::Tcp | Protocol::Udp => {
            let p = r.protocol.as_str();
            let ports = if r.ports.0 == r.ports.1 {
                r.ports.0.to_string()
            } else {
                format!("{}-{}", r.ports.0, r.ports.1)
            };
            script!(m, "meta l4proto {p} {p} dport {ports} ");
        }
        Protocol::Icmp => m.push_str("meta l4proto icmp "),
        Protocol::All => {}
    }
    match &r.target {
        RuleTarget::Cidr(c) if c.prefix == 0 => {}
        RuleTarget::Cidr(c) => {
            script!(m, "ip {peer} {c} ");
        }
        RuleTarget::Group(g) => {
            script!(m, "ip {peer} @{} ", set_name(g));
        }
    }
    m
}

/// The `nft -f` script replacing both tables.
pub fn render(rs: &Ruleset) -> String {
    let t = table_name(&rs.tag);
    let (br, port, vx) = (&rs.bridge_prefix, &rs.port_prefix, &rs.vxlan_prefix);
    let mut s = String::new();
    // Create-then-delete makes the delete valid when the table does not exist yet.
    scriptln!(s, "table bridge {t}\ndelete table bridge {t}");
    scriptln!(s, "table inet {t}\ndelete table inet {t}");

    // ---- bridge: anti-spoofing, VXLAN kept off the host
    scriptln!(s, "table bridge {t} {{");
    scriptln!(
        s,
        "  chain prerouting {{\n    type filter hook prerouting priority -200; policy accept;"
    );
    scriptln!(s, "    iifname \"{port}*\" jump from_port\n  }}");
    let elems: Vec<String> = rs
        .ports
        .iter()
        .map(|p| format!("\"{}\" . {}", p.ifname, p.address))
        .collect();
    script!(s, "  set ports {{ type ifname . ipv4_addr;");
    if !elems.is_empty() {
        script!(s, " elements = {{ {} }};", elems.join(", "));
    }
    scriptln!(s, " }}");
    scriptln!(s, "  chain from_port {{");
    scriptln!(s, "    ether type ip iifname . ip saddr @ports accept");
    scriptln!(s, "    ether type arp iifname . arp saddr ip @ports accept");
    scriptln!(s, "    drop\n  }}");
    scriptln!(
        s,
        "  chain output {{\n    type filter hook output priority 0; policy accept;\n    oifname \"{vx}*\" drop\n  }}"
    );
    scriptln!(
        s,
        "  chain input {{\n    type filter hook input priority 0; policy accept;\n    iifname \"{vx}*\" drop\n  }}"
    );
    scriptln!(s, "}}");

    // ---- inet: security groups
    scriptln!(s, "table inet {t} {{");
    for (g, addrs) in &rs.members {
        script!(s, "  set {} {{ type ipv4_addr;", set_name(g));
        if !addrs.is_empty() {
            let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            script!(s, " elements = {{ {} }};", list.join(", "));
        }
        scriptln!(s, " }}");
    }
    // Sets for groups without members, so that every rule's reference resolves.
    for g in rs.groups.keys().filter(|g| !rs.members.contains_key(*g)) {
        scriptln!(s, "  set {} {{ type ipv4_addr; }}", set_name(g));
    }
    let referenced = rs
        .groups
        .values()
        .flat_map(|g| g.ingress.iter().chain(&g.egress))
        .filter_map(|r| match &r.target {
            RuleTarget::Group(g) => Some(g.clone()),
            RuleTarget::Cidr(_) => None,
        });
    for g in referenced {
        if !rs.groups.contains_key(&g) && !rs.members.contains_key(&g) {
            scriptln!(s, "  set {} {{ type ipv4_addr; }}", set_name(&g));
        }
    }
    // Chains before the maps that jump to them, maps before the chain that uses them.
    for p in &rs.ports {
        port_chains(&mut s, rs, p, "");
    }
    for (map, dir) in [("egress", "out"), ("ingress", "in")] {
        script!(s, "  map {map} {{ type ipv4_addr . ifname : verdict;");
        if !rs.ports.is_empty() {
            let elems: Vec<String> = rs
                .ports
                .iter()
                .map(|p| format!("{} . \"{}\" : jump {dir}_{}", p.address, p.bridge, p.ifname))
                .collect();
            script!(s, " elements = {{ {} }};", elems.join(", "));
        }
        scriptln!(s, " }}");
    }
    scriptln!(
        s,
        "  chain input {{\n    type filter hook input priority 0; policy accept;\n    iifname \"{br}*\" drop\n  }}"
    );
    scriptln!(
        s,
        "  chain forward {{\n    type filter hook forward priority 0; policy accept;"
    );
    // Bridged only: nothing is routed into or out of a VPC (not to the host's other networks,
    // not between VPCs), whether or not the host forwards.
    let mut bridges: Vec<&str> = rs.ports.iter().map(|p| p.bridge.as_str()).collect();
    bridges.sort();
    bridges.dedup();
    for b in bridges {
        scriptln!(s, "    iifname \"{b}\" oifname != \"{b}\" drop");
        scriptln!(s, "    oifname \"{b}\" iifname != \"{b}\" drop");
    }
    scriptln!(
        s,
        "    iifname \"{br}*\" oifname != \"{br}*\" drop\n    oifname \"{br}*\" iifname != \"{br}*\" drop\n    iifname \"{br}*\" jump vpc\n    oifname \"{br}*\" jump vpc\n  }}"
    );
    scriptln!(s, "  chain vpc {{");
    scriptln!(s, "    ct state established,related accept");
    scriptln!(s, "    ct state invalid drop");
    scriptln!(s, "    meta nfproto != ipv4 drop");
    scriptln!(s, "    ip saddr . iifname vmap @egress");
    scriptln!(s, "    ip daddr . oifname vmap @ingress");
    scriptln!(s, "  }}");
    scriptln!(s, "}}");
    s
}

/// The two chains of a port, in table-block syntax (`prefix` "") or as `add` commands of table
/// `prefix` (e.g. "add chain inet lamina_vpc_TAG").
fn port_chains(s: &mut String, rs: &Ruleset, p: &Port, table: &str) {
    for (dir, peer) in [("out", "daddr"), ("in", "saddr")] {
        let chain = format!("{dir}_{}", p.ifname);
        let mut rules = Vec::new();
        for g in &p.groups {
            let Some(group) = rs.groups.get(g) else {
                continue;
            };
            let list = if dir == "out" {
                &group.egress
            } else {
                &group.ingress
            };
            rules.extend(
                list.iter()
                    .map(|r| format!("{}return", rule_match(r, peer))),
            );
        }
        rules.push("drop".to_string());
        if table.is_empty() {
            scriptln!(s, "  chain {chain} {{");
            for r in rules {
                scriptln!(s, "    {r}");
            }
            scriptln!(s, "  }}");
        } else {
            scriptln!(s, "add chain inet {table} {chain}");
            for r in rules {
                scriptln!(s, "add rule inet {table} {chain} {r}");
            }
        }
    }
}

/// A port added to tables rendered before with the same groups, members and bridges: its
/// anti-spoofing entry, its two chains and its map entries, in one transaction of additions only
/// (a full render costs ~20 ms; this a few).
pub fn render_add_port(rs: &Ruleset, p: &Port) -> String {
    let t = table_name(&rs.tag);
    let mut s = String::new();
    scriptln!(
        s,
        "add element bridge {t} ports {{ \"{}\" . {} }}",
        p.ifname,
        p.address
    );
    port_chains(&mut s, rs, p, &t);
    for (map, dir) in [("egress", "out"), ("ingress", "in")] {
        scriptln!(
            s,
            "add element inet {t} {map} {{ {} . \"{}\" : jump {dir}_{} }}",
            p.address,
            p.bridge,
            p.ifname
        );
    }
    s
}

/// A port removed from tables that hold it (the reverse of [`render_add_port`]).
pub fn render_remove_port(tag: &str, p: &Port) -> String {
    let t = table_name(tag);
    let mut s = String::new();
    scriptln!(
        s,
        "delete element bridge {t} ports {{ \"{}\" . {} }}",
        p.ifname,
        p.address
    );
    for map in ["egress", "ingress"] {
        scriptln!(
            s,
            "delete element inet {t} {map} {{ {} . \"{}\" }}",
            p.address,
            p.bridge
        );
    }
    for dir in ["out", "in"] {
        scriptln!(
            s,
            "flush chain inet {t} {dir}_{0}\ndelete chain inet {t} {dir}_{0}",
            p.ifname
        );
    }
    s
}

/// The script that removes both tables (idempotent).
pub fn render_delete(tag: &str) -> String {
    let t = table_name(tag);
    format!("table bridge {t}\ndelete table bridge {t}\ntable inet {t}\ndelete table inet {t}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_proto::network::Ipv4Cidr;

    #[test]
    fn renders_rules_per_port_and_group() {
        let mut g = SecurityGroup {
            id: "sg-0000000a".into(),
            vpc_id: "vpc-00000001".into(),
            name: "db".into(),
            description: String::new(),
            ingress: vec![],
            egress: vec![],
            created_ms: 0,
        };
        g.default_rules();
        g.ingress.push(SgRule {
            protocol: Protocol::Tcp,
            ports: (8000, 8010),
            target: RuleTarget::Cidr("10.9.0.0/24".parse::<Ipv4Cidr>().unwrap()),
        });
        let rs = Ruleset {
            tag: "ab12".into(),
            bridge_prefix: "lbab12".into(),
            port_prefix: "leab12".into(),
            vxlan_prefix: "lxab12".into(),
            ports: vec![Port {
                ifname: "leab12x1".into(),
                bridge: "lbab1200000001".into(),
                address: Ipv4Addr::new(10, 9, 0, 5),
                groups: vec!["sg-0000000a".into()],
            }],
            groups: [(g.id.clone(), g)].into_iter().collect(),
            members: [("sg-0000000a".to_string(), vec![Ipv4Addr::new(10, 9, 0, 5)])]
                .into_iter()
                .collect(),
        };
        let s = render(&rs);
        assert!(
            s.contains("set m_sg_0000000a { type ipv4_addr; elements = { 10.9.0.5 }; }"),
            "{s}"
        );
        assert!(s.contains("ip saddr @m_sg_0000000a return"), "{s}");
        assert!(
            s.contains("meta l4proto tcp tcp dport 8000-8010 ip saddr 10.9.0.0/24 return"),
            "{s}"
        );
        assert!(
            s.contains("10.9.0.5 . \"lbab1200000001\" : jump out_leab12x1"),
            "{s}"
        );
        assert!(s.contains("\"leab12x1\" . 10.9.0.5"), "{s}");
        // Egress to anywhere: no address match at all.
        assert!(
            s.contains("chain out_leab12x1 {\n    return\n    drop"),
            "{s}"
        );
        // Chains come before the maps that jump to them.
        assert!(s.find("chain out_leab12x1").unwrap() < s.find("map egress").unwrap());
        let add = render_add_port(&rs, &rs.ports[0]);
        assert!(
            add.contains(
                "add rule inet lamina_vpc_ab12 in_leab12x1 ip saddr @m_sg_0000000a return"
            ),
            "{add}"
        );
        assert!(add.contains("add element inet lamina_vpc_ab12 egress { 10.9.0.5 . \"lbab1200000001\" : jump out_leab12x1 }"), "{add}");
        assert!(
            s.starts_with("table bridge lamina_vpc_ab12\ndelete table bridge lamina_vpc_ab12\n")
        );
    }
}
