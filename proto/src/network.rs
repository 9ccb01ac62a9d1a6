//! VPC networking: domain types (VPCs, subnets, security groups and their rules, a function's
//! `VpcConfig`, network-namespace attachments), their validation and their proto conversions.
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::v1;
use crate::validate::ValidationError;

/// Prefix lengths a VPC or subnet may have (as AWS: /16 to /28).
pub const MIN_PREFIX: u8 = 16;
pub const MAX_PREFIX: u8 = 28;
/// Subnets and security groups per function (as Lambda).
pub const MAX_SUBNETS: usize = 16;
pub const MAX_GROUPS: usize = 5;

/// An IPv4 network: its first address and prefix length (the address has no host bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }
    pub fn first(self) -> u32 {
        u32::from(self.addr)
    }
    pub fn last(self) -> u32 {
        self.first() | !self.mask()
    }
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.first()
    }
    pub fn contains_cidr(self, other: Ipv4Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }
    pub fn overlaps(self, other: Ipv4Cidr) -> bool {
        self.contains_cidr(other) || other.contains_cidr(self)
    }
    /// The subnet gateway: the first host address.
    pub fn gateway(self) -> Ipv4Addr {
        Ipv4Addr::from(self.first() + 1)
    }
    /// Addresses for interfaces: after the gateway, before the broadcast address.
    pub fn hosts(self) -> impl Iterator<Item = Ipv4Addr> {
        (self.first() + 2..self.last()).map(Ipv4Addr::from)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;
    /// `A.B.C.D/N` with no host bits set.
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("CIDR must look like 10.0.0.0/16, got {s:?}"))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("CIDR {s:?} has an invalid IPv4 address {a:?}"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("CIDR {s:?} has an invalid prefix length {p:?} (0..32)"))?;
        let c = Ipv4Cidr { addr, prefix };
        if u32::from(addr) & !c.mask() != 0 {
            let net = Ipv4Cidr {
                addr: Ipv4Addr::from(u32::from(addr) & c.mask()),
                prefix,
            };
            return Err(format!("CIDR {s:?} has host bits set: did you mean {net}?"));
        }
        Ok(c)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A VPC or subnet CIDR: valid and /16../28.
pub fn block(field: &'static str, s: &str) -> Result<Ipv4Cidr, ValidationError> {
    let c: Ipv4Cidr = s
        .parse()
        .map_err(|m: String| ValidationError::new(field, m))?;
    if !(MIN_PREFIX..=MAX_PREFIX).contains(&c.prefix) {
        return Err(ValidationError::new(
            field,
            format!("{field} prefix must be /{MIN_PREFIX}../{MAX_PREFIX}, got {c}"),
        ));
    }
    Ok(c)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    pub id: String,
    pub cidr: Ipv4Cidr,
    pub vni: u32,
    pub description: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub id: String,
    pub vpc_id: String,
    pub cidr: Ipv4Cidr,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    All,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::All => "all",
        }
    }
}

/// Whom a rule allows: addresses, or the members of a security group of the same VPC.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleTarget {
    Cidr(Ipv4Cidr),
    Group(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SgRule {
    pub protocol: Protocol,
    /// Inclusive port range (tcp/udp); (0, 0) for icmp and all.
    pub ports: (u16, u16),
    pub target: RuleTarget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn parse(s: &str) -> Result<Direction, ValidationError> {
        match s {
            "ingress" => Ok(Direction::Ingress),
            "egress" => Ok(Direction::Egress),
            _ => Err(ValidationError::new(
                "direction",
                format!("direction must be ingress or egress, got {s:?}"),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub vpc_id: String,
    pub name: String,
    pub description: String,
    pub ingress: Vec<SgRule>,
    pub egress: Vec<SgRule>,
    pub created_ms: u64,
}

impl SecurityGroup {
    /// A new group's rules: all egress, ingress from its own members.
    pub fn default_rules(&mut self) {
        self.ingress = vec![SgRule {
            protocol: Protocol::All,
            ports: (0, 0),
            target: RuleTarget::Group(self.id.clone()),
        }];
        self.egress = vec![SgRule {
            protocol: Protocol::All,
            ports: (0, 0),
            target: RuleTarget::Cidr(Ipv4Cidr {
                addr: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
            }),
        }];
    }
    pub fn rules_mut(&mut self, d: Direction) -> &mut Vec<SgRule> {
        match d {
            Direction::Ingress => &mut self.ingress,
            Direction::Egress => &mut self.egress,
        }
    }
}

/// A function's VPC attachment: its sandboxes get an address in one of `subnet_ids`, filtered by
/// `security_group_ids`. Valid when non-empty, all in one VPC (checked against the store).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VpcConfig {
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetnsAttachment {
    pub id: String,
    pub netns: String,
    pub subnet_id: String,
    pub security_group_ids: Vec<String>,
    pub address: Ipv4Addr,
    pub worker_id: String,
    pub vpc_id: String,
    pub created_ms: u64,
}

/// An address leased to a worker. `owner` is `pool` (sandbox interfaces) or an attachment id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub subnet_id: String,
    pub address: Ipv4Addr,
    pub worker_id: String,
    pub security_group_ids: Vec<String>,
    pub owner: String,
}

pub const POOL_OWNER: &str = "pool";

/// `prefix-` followed by 8 lower-case hex digits.
pub fn check_id(field: &'static str, prefix: &str, id: &str) -> Result<(), ValidationError> {
    let ok = id
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!("{field} must look like {prefix}-1a2b3c4d, got {id:?}"),
        ))
    }
}

/// A security-group or netns name: 1..64 of `[A-Za-z0-9_.-]`.
pub fn check_name(field: &'static str, name: &str) -> Result<(), ValidationError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(ValidationError::new(
            field,
            format!("{field} must be 1..64 of letters, digits, '_', '.', '-', got {name:?}"),
        ));
    }
    Ok(())
}

/// Parses and checks a rule (syntax only; the source group's VPC is the store's business).
pub fn rule(p: &v1::SecurityGroupRule) -> Result<SgRule, ValidationError> {
    let protocol = match p.protocol.to_ascii_lowercase().as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" => Protocol::Icmp,
        "all" | "-1" => Protocol::All,
        other => {
            return Err(ValidationError::new(
                "protocol",
                format!("protocol must be tcp, udp, icmp or all, got {other:?}"),
            ))
        }
    };
    let ports = match protocol {
        Protocol::Tcp | Protocol::Udp => {
            let (from, to) = (p.from_port, p.to_port);
            if from == 0 || from > 65535 || to < from || to > 65535 {
                return Err(ValidationError::new(
                    "port",
                    format!(
                        "port range must be N or N-M with 1 <= N <= M <= 65535, got {from}-{to}"
                    ),
                ));
            }
            (from as u16, to as u16)
        }
        _ => {
            if p.from_port != 0 || p.to_port != 0 {
                return Err(ValidationError::new(
                    "port",
                    format!("protocol {} takes no ports", protocol.as_str()),
                ));
            }
            (0, 0)
        }
    };
    let target = match (p.cidr.is_empty(), p.source_group.is_empty()) {
        (false, true) => RuleTarget::Cidr(
            p.cidr
                .parse()
                .map_err(|m: String| ValidationError::new("cidr", m))?,
        ),
        (true, false) => {
            check_id("source_group", "sg", &p.source_group)?;
            RuleTarget::Group(p.source_group.clone())
        }
        _ => {
            return Err(ValidationError::new(
                "cidr",
                "a rule needs exactly one of cidr and source_group",
            ))
        }
    };
    Ok(SgRule {
        protocol,
        ports,
        target,
    })
}

/// Parses a `VpcConfig` (syntax, counts, duplicates); `None` when it has no subnets (detached).
pub fn vpc_config(p: &v1::VpcConfig) -> Result<Option<VpcConfig>, ValidationError> {
    if p.subnet_ids.is_empty() {
        if !p.security_group_ids.is_empty() {
            return Err(ValidationError::new(
                "vpc_config",
                "security groups need subnets: give --subnets too",
            ));
        }
        return Ok(None);
    }
    if p.security_group_ids.is_empty() {
        return Err(ValidationError::new(
            "vpc_config",
            "a VPC configuration needs at least one security group",
        ));
    }
    if p.subnet_ids.len() > MAX_SUBNETS || p.security_group_ids.len() > MAX_GROUPS {
        return Err(ValidationError::new(
            "vpc_config",
            format!("at most {MAX_SUBNETS} subnets and {MAX_GROUPS} security groups"),
        ));
    }
    let mut c = VpcConfig::default();
    for s in &p.subnet_ids {
        check_id("subnet_ids", "subnet", s)?;
        if !c.subnet_ids.contains(s) {
            c.subnet_ids.push(s.clone());
        }
    }
    for g in &p.security_group_ids {
        check_id("security_group_ids", "sg", g)?;
        if !c.security_group_ids.contains(g) {
            c.security_group_ids.push(g.clone());
        }
    }
    c.security_group_ids.sort();
    Ok(Some(c))
}

// ---------------------------------------------------------------- proto conversions

impl From<&Vpc> for v1::Vpc {
    fn from(v: &Vpc) -> Self {
        v1::Vpc {
            id: v.id.clone(),
            cidr: v.cidr.to_string(),
            vni: v.vni,
            description: v.description.clone(),
            created_ms: v.created_ms,
        }
    }
}

impl From<&Subnet> for v1::Subnet {
    fn from(s: &Subnet) -> Self {
        v1::Subnet {
            id: s.id.clone(),
            vpc_id: s.vpc_id.clone(),
            cidr: s.cidr.to_string(),
            gateway: s.cidr.gateway().to_string(),
            created_ms: s.created_ms,
        }
    }
}

impl From<&SgRule> for v1::SecurityGroupRule {
    fn from(r: &SgRule) -> Self {
        let (cidr, source_group) = match &r.target {
            RuleTarget::Cidr(c) => (c.to_string(), String::new()),
            RuleTarget::Group(g) => (String::new(), g.clone()),
        };
        v1::SecurityGroupRule {
            protocol: r.protocol.as_str().to_string(),
            from_port: u32::from(r.ports.0),
            to_port: u32::from(r.ports.1),
            cidr,
            source_group,
        }
    }
}

impl From<&SecurityGroup> for v1::SecurityGroup {
    fn from(g: &SecurityGroup) -> Self {
        v1::SecurityGroup {
            id: g.id.clone(),
            vpc_id: g.vpc_id.clone(),
            name: g.name.clone(),
            description: g.description.clone(),
            ingress: g.ingress.iter().map(Into::into).collect(),
            egress: g.egress.iter().map(Into::into).collect(),
            created_ms: g.created_ms,
        }
    }
}

impl From<&NetnsAttachment> for v1::NetnsAttachment {
    fn from(a: &NetnsAttachment) -> Self {
        v1::NetnsAttachment {
            id: a.id.clone(),
            netns: a.netns.clone(),
            subnet_id: a.subnet_id.clone(),
            security_group_ids: a.security_group_ids.clone(),
            address: a.address.to_string(),
            worker_id: a.worker_id.clone(),
            vpc_id: a.vpc_id.clone(),
            created_ms: a.created_ms,
        }
    }
}

impl From<&VpcConfig> for v1::VpcConfig {
    fn from(c: &VpcConfig) -> Self {
        v1::VpcConfig {
            subnet_ids: c.subnet_ids.clone(),
            security_group_ids: c.security_group_ids.clone(),
            vpc_id: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_compare() {
        let v: Ipv4Cidr = "10.77.0.0/16".parse().unwrap();
        let s: Ipv4Cidr = "10.77.1.0/24".parse().unwrap();
        assert!(v.contains_cidr(s) && !s.contains_cidr(v) && v.overlaps(s));
        assert!(!s.overlaps("10.77.2.0/24".parse().unwrap()));
        assert_eq!(s.gateway().to_string(), "10.77.1.1");
        assert_eq!(s.hosts().next().unwrap().to_string(), "10.77.1.2");
        assert_eq!(s.hosts().last().unwrap().to_string(), "10.77.1.254");
        let e = "10.77.1.5/24".parse::<Ipv4Cidr>().unwrap_err();
        assert!(e.contains("did you mean 10.77.1.0/24"), "{e}");
        assert!("10.0.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("10.0.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!(block("cidr", "10.0.0.0/8")
            .unwrap_err()
            .message
            .contains("/16../28"));
    }

    #[test]
    fn rules_are_checked() {
        let r = |p: &str, from, to, cidr: &str, sg: &str| {
            rule(&v1::SecurityGroupRule {
                protocol: p.into(),
                from_port: from,
                to_port: to,
                cidr: cidr.into(),
                source_group: sg.into(),
            })
        };
        assert!(r("tcp", 80, 80, "10.0.0.0/8", "").is_ok());
        assert!(r("udp", 1000, 2000, "", "sg-0123abcd").is_ok());
        assert!(r("all", 0, 0, "0.0.0.0/0", "").is_ok());
        assert_eq!(
            r("sctp", 1, 1, "10.0.0.0/8", "").unwrap_err().field,
            "protocol"
        );
        assert_eq!(
            r("tcp", 90, 80, "10.0.0.0/8", "").unwrap_err().field,
            "port"
        );
        assert_eq!(r("tcp", 0, 0, "10.0.0.0/8", "").unwrap_err().field, "port");
        assert_eq!(r("icmp", 8, 8, "10.0.0.0/8", "").unwrap_err().field, "port");
        assert_eq!(r("tcp", 80, 80, "", "").unwrap_err().field, "cidr");
        assert_eq!(
            r("tcp", 80, 80, "10.0.0.0/8", "sg-0123abcd")
                .unwrap_err()
                .field,
            "cidr"
        );
        assert_eq!(
            r("tcp", 80, 80, "", "sg-x").unwrap_err().field,
            "source_group"
        );
    }

    #[test]
    fn vpc_configs_are_checked() {
        let c = |s: &[&str], g: &[&str]| {
            vpc_config(&v1::VpcConfig {
                subnet_ids: s.iter().map(|x| x.to_string()).collect(),
                security_group_ids: g.iter().map(|x| x.to_string()).collect(),
                vpc_id: String::new(),
            })
        };
        assert_eq!(c(&[], &[]).unwrap(), None);
        assert!(c(&[], &["sg-0123abcd"]).is_err());
        assert!(c(&["subnet-0123abcd"], &[]).is_err());
        assert!(c(&["subnet-01"], &["sg-0123abcd"]).is_err());
        let ok = c(&["subnet-0123abcd", "subnet-0123abcd"], &["sg-0123abcd"])
            .unwrap()
            .unwrap();
        assert_eq!(ok.subnet_ids.len(), 1);
    }
}
