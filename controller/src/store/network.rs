//! VPC networking state: VPCs, subnets, security groups, network-namespace attachments and the
//! addresses leased to workers. One column family, `network`, keyed `kind / id` (leases
//! `lease / subnet / address-hex`, so a subnet's leases form one range). Every writer runs under
//! one lock and checks what it depends on (a subnet's VPC, a rule's source group, what uses a
//! resource before it is deleted) before its synced batch.
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use lamina_proto::network::{
    Direction, Ipv4Cidr, Lease, NetnsAttachment, RuleTarget, SecurityGroup, SgRule, Subnet, Vpc,
    VpcConfig, POOL_OWNER,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::db::{Batch, Durability};
use super::error::StorageError;
use super::rocks::RocksStore;
use super::schema;
use super::table::{Json, Table};
use super::writers::lock;
use super::{Store, StoreError, VersionStore};

/// First VXLAN network identifier handed out (the counter lives at `meta/vni`).
const FIRST_VNI: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{kind} `{id}` is in use by {user}: {fix}")]
    InUse {
        kind: &'static str,
        id: String,
        user: String,
        fix: &'static str,
    },
    #[error("subnet `{subnet}` ({cidr}) has no free address left")]
    Exhausted { subnet: String, cidr: Ipv4Cidr },
}

impl From<StorageError> for NetworkError {
    fn from(e: StorageError) -> NetworkError {
        NetworkError::Store(e.into())
    }
}

/// Creates a fresh id `prefix-xxxxxxxx`.
pub fn new_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

pub trait NetworkStore {
    fn create_vpc(
        &self,
        cidr: Ipv4Cidr,
        description: &str,
        now_ms: u64,
    ) -> Result<Vpc, NetworkError>;
    fn get_vpc(&self, id: &str) -> Result<Vpc, NetworkError>;
    fn list_vpcs(&self) -> Result<Vec<Vpc>, NetworkError>;
    fn delete_vpc(&self, id: &str) -> Result<(), NetworkError>;

    fn create_subnet(
        &self,
        vpc_id: &str,
        cidr: Ipv4Cidr,
        now_ms: u64,
    ) -> Result<Subnet, NetworkError>;
    fn get_subnet(&self, id: &str) -> Result<Subnet, NetworkError>;
    fn list_subnets(&self, vpc_id: Option<&str>) -> Result<Vec<Subnet>, NetworkError>;
    fn delete_subnet(&self, id: &str) -> Result<(), NetworkError>;

    fn create_group(
        &self,
        vpc_id: &str,
        name: &str,
        description: &str,
        now_ms: u64,
    ) -> Result<SecurityGroup, NetworkError>;
    fn get_group(&self, id: &str) -> Result<SecurityGroup, NetworkError>;
    fn list_groups(&self, vpc_id: Option<&str>) -> Result<Vec<SecurityGroup>, NetworkError>;
    fn delete_group(&self, id: &str) -> Result<(), NetworkError>;
    /// Adds (`authorize`) or removes a rule; adding one that exists or removing one that does not
    /// changes nothing (removing an absent one is `Invalid`).
    fn change_rule(
        &self,
        id: &str,
        direction: Direction,
        rule: SgRule,
        authorize: bool,
    ) -> Result<SecurityGroup, NetworkError>;

    /// Checks a function's VPC configuration: subnets and groups exist, all in one VPC. Returns
    /// that VPC's id.
    fn check_vpc_config(&self, config: &VpcConfig) -> Result<String, NetworkError>;

    fn attach_netns(
        &self,
        netns: &str,
        subnet_id: &str,
        groups: &[String],
        worker_id: &str,
        now_ms: u64,
    ) -> Result<NetnsAttachment, NetworkError>;
    fn list_attachments(&self) -> Result<Vec<NetnsAttachment>, NetworkError>;
    fn detach_netns(&self, id: &str) -> Result<(), NetworkError>;

    /// Leases `count` free addresses of `subnet_id` to `worker_id` for sandbox interfaces with
    /// `groups` (sorted).
    fn lease_addresses(
        &self,
        worker_id: &str,
        subnet_id: &str,
        groups: &[String],
        count: usize,
    ) -> Result<Vec<Ipv4Addr>, NetworkError>;
    /// Releases the worker's pool leases (`addresses` empty: all of them).
    fn release_addresses(
        &self,
        worker_id: &str,
        addresses: &[Ipv4Addr],
    ) -> Result<usize, NetworkError>;
    fn list_leases(&self) -> Result<Vec<Lease>, NetworkError>;
}

fn key(kind: &str, id: &str) -> Vec<u8> {
    format!("{kind}/{id}").into_bytes()
}

fn lease_key(subnet: &str, addr: Ipv4Addr) -> Vec<u8> {
    format!("lease/{subnet}/{:08x}", u32::from(addr)).into_bytes()
}

impl RocksStore {
    /// Called by function writers under the function writers' lock: every subnet and security
    /// group `config` attaches to still exists. Subnet and group deletes check their users under
    /// the same lock, so a function write and a delete cannot interleave into a function that names
    /// a deleted subnet (the API's earlier check is not enough on its own).
    pub(super) fn check_vpc_targets(
        &self,
        config: &lamina_proto::domain::FunctionConfig,
    ) -> Result<(), StoreError> {
        let Some(vpc) = &config.spec.vpc_config else {
            return Ok(());
        };
        let named = vpc
            .subnet_ids
            .iter()
            .map(|id| ("subnet", "subnet", id))
            .chain(
                vpc.security_group_ids
                    .iter()
                    .map(|id| ("security group", "sg", id)),
            );
        for (kind, prefix, id) in named {
            if !self.net::<serde_json::Value>().contains(&key(prefix, id))? {
                return Err(StoreError::VpcTargetGone {
                    function: config.spec.name.clone(),
                    kind,
                    id: id.clone(),
                });
            }
        }
        Ok(())
    }

    /// The network family, values decoded as `T` (each kind of record has its own type).
    fn net<T: Serialize + DeserializeOwned>(&self) -> Table<'_, Json<T>> {
        self.db.table(schema::NETWORK)
    }

    fn net_get<T: Serialize + DeserializeOwned>(
        &self,
        k: &[u8],
    ) -> Result<Option<T>, NetworkError> {
        Ok(self.net::<T>().get(k)?)
    }

    fn net_scan<T: Serialize + DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<T>, NetworkError> {
        Ok(self
            .net::<T>()
            .values_with_prefix(prefix.as_bytes(), |_| true)?)
    }

    fn net_put<T: Serialize + DeserializeOwned>(
        &self,
        batch: &mut Batch<'_>,
        k: &[u8],
        v: &T,
    ) -> Result<(), NetworkError> {
        Ok(self.net::<T>().put(batch, k, v)?)
    }

    fn net_delete(&self, batch: &mut Batch<'_>, k: &[u8]) {
        self.net::<serde_json::Value>().delete(batch, k);
    }

    fn net_write(&self, batch: Batch<'_>) -> Result<(), NetworkError> {
        Ok(self
            .db
            .write(&batch, Durability::Synced, "write network state")?)
    }

    fn must<T: Serialize + DeserializeOwned>(
        &self,
        kind: &'static str,
        id: &str,
    ) -> Result<T, NetworkError> {
        let prefix = match kind {
            "vpc" => "vpc",
            "subnet" => "subnet",
            "security group" => "sg",
            _ => "eni",
        };
        self.net_get(&key(prefix, id))?
            .ok_or(NetworkError::NotFound {
                kind,
                id: id.to_string(),
            })
    }

    /// Every VPC configuration stored: `$LATEST` and published versions, with their function.
    fn vpc_users(&self) -> Result<Vec<(String, VpcConfig)>, NetworkError> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.list_functions(&after, 500)?;
            let Some(last) = page.last() else { break };
            after = last.spec.name.clone();
            for f in &page {
                if let Some(c) = &f.spec.vpc_config {
                    out.push((format!("function `{}`", f.spec.name), c.clone()));
                }
                for v in self.list_versions(&f.spec.name)? {
                    if let Some(c) = &v.spec.vpc_config {
                        out.push((
                            format!("version {} of function `{}`", v.version, f.spec.name),
                            c.clone(),
                        ));
                    }
                }
            }
        }
        Ok(out)
    }
}

fn in_use(kind: &'static str, id: &str, user: String, fix: &'static str) -> NetworkError {
    NetworkError::InUse {
        kind,
        id: id.to_string(),
        user,
        fix,
    }
}

impl NetworkStore for RocksStore {
    fn create_vpc(
        &self,
        cidr: Ipv4Cidr,
        description: &str,
        now_ms: u64,
    ) -> Result<Vpc, NetworkError> {
        let _w = lock(&self.network_writers);
        let vni: u32 = self.net_get(b"meta/vni")?.unwrap_or(FIRST_VNI);
        let vpc = Vpc {
            id: new_id("vpc"),
            cidr,
            vni,
            description: description.to_string(),
            created_ms: now_ms,
        };
        let mut batch = Batch::new();
        self.net_put(&mut batch, b"meta/vni", &(vni + 1))?;
        self.net_put(&mut batch, &key("vpc", &vpc.id), &vpc)?;
        self.net_write(batch)?;
        Ok(vpc)
    }

    fn get_vpc(&self, id: &str) -> Result<Vpc, NetworkError> {
        self.must("vpc", id)
    }

    fn list_vpcs(&self) -> Result<Vec<Vpc>, NetworkError> {
        self.net_scan("vpc/")
    }

    fn delete_vpc(&self, id: &str) -> Result<(), NetworkError> {
        let _w = lock(&self.network_writers);
        self.get_vpc(id)?;
        if let Some(s) = self.list_subnets(Some(id))?.first() {
            return Err(in_use(
                "vpc",
                id,
                format!("subnet `{}`", s.id),
                "delete its subnets first",
            ));
        }
        if let Some(g) = self.list_groups(Some(id))?.first() {
            return Err(in_use(
                "vpc",
                id,
                format!("security group `{}` ({})", g.id, g.name),
                "delete its security groups first",
            ));
        }
        let mut batch = Batch::new();
        self.net_delete(&mut batch, &key("vpc", id));
        self.net_write(batch)
    }

    fn create_subnet(
        &self,
        vpc_id: &str,
        cidr: Ipv4Cidr,
        now_ms: u64,
    ) -> Result<Subnet, NetworkError> {
        let _w = lock(&self.network_writers);
        let vpc = self.get_vpc(vpc_id)?;
        if !vpc.cidr.contains_cidr(cidr) {
            return Err(NetworkError::Invalid(format!(
                "subnet {cidr} is not inside VPC `{vpc_id}` ({})",
                vpc.cidr
            )));
        }
        if let Some(o) = self
            .list_subnets(Some(vpc_id))?
            .into_iter()
            .find(|s| s.cidr.overlaps(cidr))
        {
            return Err(NetworkError::Invalid(format!(
                "subnet {cidr} overlaps subnet `{}` ({}) of VPC `{vpc_id}`",
                o.id, o.cidr
            )));
        }
        let subnet = Subnet {
            id: new_id("subnet"),
            vpc_id: vpc_id.to_string(),
            cidr,
            created_ms: now_ms,
        };
        let mut batch = Batch::new();
        self.net_put(&mut batch, &key("subnet", &subnet.id), &subnet)?;
        self.net_write(batch)?;
        Ok(subnet)
    }

    fn get_subnet(&self, id: &str) -> Result<Subnet, NetworkError> {
        self.must("subnet", id)
    }

    fn list_subnets(&self, vpc_id: Option<&str>) -> Result<Vec<Subnet>, NetworkError> {
        let all: Vec<Subnet> = self.net_scan("subnet/")?;
        Ok(all
            .into_iter()
            .filter(|s| vpc_id.is_none_or(|v| s.vpc_id == v))
            .collect())
    }

    fn delete_subnet(&self, id: &str) -> Result<(), NetworkError> {
        let _w = lock(&self.network_writers);
        // Function writers check the subnets and groups they name under this lock
        // (`check_vpc_targets`): no function can start using this one between the check below
        // and the delete.
        let _functions = lock(&self.blob_refs);
        self.get_subnet(id)?;
        let fix =
            "detach it first (fnctl update-config NAME --subnets '' / fnctl vpc detach-netns)";
        if let Some((user, _)) = self
            .vpc_users()?
            .into_iter()
            .find(|(_, c)| c.subnet_ids.iter().any(|s| s == id))
        {
            return Err(in_use("subnet", id, user, fix));
        }
        if let Some(a) = self
            .list_attachments()?
            .into_iter()
            .find(|a| a.subnet_id == id)
        {
            return Err(in_use(
                "subnet",
                id,
                format!("netns attachment `{}` (netns {})", a.id, a.netns),
                fix,
            ));
        }
        // Nothing uses it: the addresses workers keep pooled for it go with it.
        let mut batch = Batch::new();
        for l in self.list_leases()?.iter().filter(|l| l.subnet_id == id) {
            self.net_delete(&mut batch, &lease_key(id, l.address));
        }
        self.net_delete(&mut batch, &key("subnet", id));
        self.net_write(batch)
    }

    fn create_group(
        &self,
        vpc_id: &str,
        name: &str,
        description: &str,
        now_ms: u64,
    ) -> Result<SecurityGroup, NetworkError> {
        let _w = lock(&self.network_writers);
        self.get_vpc(vpc_id)?;
        if let Some(g) = self
            .list_groups(Some(vpc_id))?
            .into_iter()
            .find(|g| g.name == name)
        {
            return Err(NetworkError::Invalid(format!(
                "VPC `{vpc_id}` already has a security group named `{name}` (`{}`)",
                g.id
            )));
        }
        let mut g = SecurityGroup {
            id: new_id("sg"),
            vpc_id: vpc_id.to_string(),
            name: name.to_string(),
            description: description.to_string(),
            ingress: Vec::new(),
            egress: Vec::new(),
            created_ms: now_ms,
        };
        g.default_rules();
        let mut batch = Batch::new();
        self.net_put(&mut batch, &key("sg", &g.id), &g)?;
        self.net_write(batch)?;
        Ok(g)
    }

    fn get_group(&self, id: &str) -> Result<SecurityGroup, NetworkError> {
        self.must("security group", id)
    }

    fn list_groups(&self, vpc_id: Option<&str>) -> Result<Vec<SecurityGroup>, NetworkError> {
        let all: Vec<SecurityGroup> = self.net_scan("sg/")?;
        Ok(all
            .into_iter()
            .filter(|g| vpc_id.is_none_or(|v| g.vpc_id == v))
            .collect())
    }

    fn delete_group(&self, id: &str) -> Result<(), NetworkError> {
        let _w = lock(&self.network_writers);
        // Function writers check the subnets and groups they name under this lock
        // (`check_vpc_targets`): no function can start using this one between the check below
        // and the delete.
        let _functions = lock(&self.blob_refs);
        self.get_group(id)?;
        let fix = "remove it from their configuration first";
        if let Some((user, _)) = self
            .vpc_users()?
            .into_iter()
            .find(|(_, c)| c.security_group_ids.iter().any(|g| g == id))
        {
            return Err(in_use("security group", id, user, fix));
        }
        if let Some(a) = self
            .list_attachments()?
            .into_iter()
            .find(|a| a.security_group_ids.iter().any(|g| g == id))
        {
            return Err(in_use(
                "security group",
                id,
                format!("netns attachment `{}` (netns {})", a.id, a.netns),
                fix,
            ));
        }
        let refers = |r: &SgRule| r.target == RuleTarget::Group(id.to_string());
        if let Some(g) = self
            .list_groups(None)?
            .into_iter()
            .filter(|g| g.id != id)
            .find(|g| g.ingress.iter().chain(&g.egress).any(refers))
        {
            return Err(in_use(
                "security group",
                id,
                format!("a rule of security group `{}` ({})", g.id, g.name),
                "revoke that rule first",
            ));
        }
        let mut batch = Batch::new();
        for l in self
            .list_leases()?
            .iter()
            .filter(|l| l.owner == POOL_OWNER && l.security_group_ids.iter().any(|g| g == id))
        {
            self.net_delete(&mut batch, &lease_key(&l.subnet_id, l.address));
        }
        self.net_delete(&mut batch, &key("sg", id));
        self.net_write(batch)
    }

    fn change_rule(
        &self,
        id: &str,
        direction: Direction,
        rule: SgRule,
        authorize: bool,
    ) -> Result<SecurityGroup, NetworkError> {
        let _w = lock(&self.network_writers);
        let mut g = self.get_group(id)?;
        if let (true, RuleTarget::Group(other)) = (authorize, &rule.target) {
            let o = self.get_group(other)?;
            if o.vpc_id != g.vpc_id {
                return Err(NetworkError::Invalid(format!(
                    "source group `{other}` is in VPC `{}`, not in `{}` with `{id}`",
                    o.vpc_id, g.vpc_id
                )));
            }
        }
        let rules = g.rules_mut(direction);
        match (authorize, rules.iter().position(|r| *r == rule)) {
            (true, Some(_)) => return Ok(g),
            (true, None) => rules.push(rule),
            (false, Some(i)) => {
                rules.remove(i);
            }
            (false, None) => {
                return Err(NetworkError::Invalid(format!(
                    "security group `{id}` has no such {} rule",
                    match direction {
                        Direction::Ingress => "ingress",
                        Direction::Egress => "egress",
                    }
                )))
            }
        }
        let mut batch = Batch::new();
        self.net_put(&mut batch, &key("sg", id), &g)?;
        self.net_write(batch)?;
        Ok(g)
    }

    fn check_vpc_config(&self, config: &VpcConfig) -> Result<String, NetworkError> {
        let mut vpcs = BTreeSet::new();
        for s in &config.subnet_ids {
            vpcs.insert(self.get_subnet(s)?.vpc_id);
        }
        for g in &config.security_group_ids {
            vpcs.insert(self.get_group(g)?.vpc_id);
        }
        if vpcs.len() != 1 {
            return Err(NetworkError::Invalid(format!(
                "subnets and security groups must all be in one VPC, got {}",
                vpcs.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(vpcs.into_iter().next().unwrap_or_default())
    }

    fn attach_netns(
        &self,
        netns: &str,
        subnet_id: &str,
        groups: &[String],
        worker_id: &str,
        now_ms: u64,
    ) -> Result<NetnsAttachment, NetworkError> {
        let vpc_id = self.check_vpc_config(&VpcConfig {
            subnet_ids: vec![subnet_id.to_string()],
            security_group_ids: groups.to_vec(),
        })?;
        let _w = lock(&self.network_writers);
        if let Some(a) = self
            .list_attachments()?
            .into_iter()
            .find(|a| a.netns == netns)
        {
            return Err(NetworkError::Invalid(format!(
                "netns `{netns}` is attached already (`{}`)",
                a.id
            )));
        }
        let id = new_id("eni");
        let address = self.lease_locked(worker_id, subnet_id, groups, 1, &id)?[0];
        let a = NetnsAttachment {
            id,
            netns: netns.to_string(),
            subnet_id: subnet_id.to_string(),
            security_group_ids: groups.to_vec(),
            address,
            worker_id: worker_id.to_string(),
            vpc_id,
            created_ms: now_ms,
        };
        let mut batch = Batch::new();
        self.net_put(&mut batch, &key("eni", &a.id), &a)?;
        self.net_put(
            &mut batch,
            &lease_key(subnet_id, address),
            &Lease {
                subnet_id: subnet_id.to_string(),
                address,
                worker_id: worker_id.to_string(),
                security_group_ids: groups.to_vec(),
                owner: a.id.clone(),
            },
        )?;
        self.net_write(batch)?;
        Ok(a)
    }

    fn list_attachments(&self) -> Result<Vec<NetnsAttachment>, NetworkError> {
        self.net_scan("eni/")
    }

    fn detach_netns(&self, id: &str) -> Result<(), NetworkError> {
        let _w = lock(&self.network_writers);
        let a: NetnsAttachment = self.must("netns attachment", id)?;
        let mut batch = Batch::new();
        self.net_delete(&mut batch, &key("eni", id));
        self.net_delete(&mut batch, &lease_key(&a.subnet_id, a.address));
        self.net_write(batch)
    }

    fn lease_addresses(
        &self,
        worker_id: &str,
        subnet_id: &str,
        groups: &[String],
        count: usize,
    ) -> Result<Vec<Ipv4Addr>, NetworkError> {
        let _w = lock(&self.network_writers);
        let addrs = self.lease_locked(worker_id, subnet_id, groups, count, POOL_OWNER)?;
        let mut batch = Batch::new();
        for a in &addrs {
            self.net_put(
                &mut batch,
                &lease_key(subnet_id, *a),
                &Lease {
                    subnet_id: subnet_id.to_string(),
                    address: *a,
                    worker_id: worker_id.to_string(),
                    security_group_ids: groups.to_vec(),
                    owner: POOL_OWNER.to_string(),
                },
            )?;
        }
        self.net_write(batch)?;
        Ok(addrs)
    }

    fn release_addresses(
        &self,
        worker_id: &str,
        addresses: &[Ipv4Addr],
    ) -> Result<usize, NetworkError> {
        let _w = lock(&self.network_writers);
        let mut batch = Batch::new();
        let mut n = 0;
        for l in self.list_leases()? {
            if l.worker_id == worker_id
                && l.owner == POOL_OWNER
                && (addresses.is_empty() || addresses.contains(&l.address))
            {
                self.net_delete(&mut batch, &lease_key(&l.subnet_id, l.address));
                n += 1;
            }
        }
        self.net_write(batch)?;
        Ok(n)
    }

    fn list_leases(&self) -> Result<Vec<Lease>, NetworkError> {
        self.net_scan("lease/")
    }
}

impl RocksStore {
    /// Free addresses of the subnet (the caller holds `WRITERS` and writes the leases).
    fn lease_locked(
        &self,
        _worker_id: &str,
        subnet_id: &str,
        _groups: &[String],
        count: usize,
        _owner: &str,
    ) -> Result<Vec<Ipv4Addr>, NetworkError> {
        let subnet = self.get_subnet(subnet_id)?;
        let used: BTreeSet<Ipv4Addr> = self
            .net_scan::<Lease>(&format!("lease/{subnet_id}/"))?
            .into_iter()
            .map(|l| l.address)
            .collect();
        let free: Vec<Ipv4Addr> = subnet
            .cidr
            .hosts()
            .filter(|a| !used.contains(a))
            .take(count)
            .collect();
        if free.is_empty() {
            return Err(NetworkError::Exhausted {
                subnet: subnet_id.to_string(),
                cidr: subnet.cidr,
            });
        }
        Ok(free)
    }
}

/// Keeps `Store` usable as a trait object for the network API.
pub fn as_network(store: &dyn Store) -> &dyn NetworkStore {
    store
}
