//! VPC networking: VPCs, subnets, security groups and their rules, netns attachments.
use crate::{v1, Client, Error};

/// A security-group rule as the CLI writes it: protocol, ports `N` or `N-M`, and a CIDR or a
/// source group.
#[derive(Debug, Clone, Default)]
pub struct RuleSpec {
    pub protocol: String,
    pub from_port: u32,
    pub to_port: u32,
    pub cidr: String,
    pub source_group: String,
}

impl From<RuleSpec> for v1::SecurityGroupRule {
    fn from(r: RuleSpec) -> Self {
        v1::SecurityGroupRule {
            protocol: r.protocol,
            from_port: r.from_port,
            to_port: r.to_port,
            cidr: r.cidr,
            source_group: r.source_group,
        }
    }
}

fn id(id: &str) -> v1::NetworkResourceId {
    v1::NetworkResourceId { id: id.to_string() }
}

fn in_vpc(vpc_id: &str) -> v1::ListNetworkResourcesRequest {
    v1::ListNetworkResourcesRequest {
        vpc_id: vpc_id.to_string(),
    }
}

impl Client {
    pub async fn create_vpc(&self, cidr: &str, description: &str) -> Result<v1::Vpc, Error> {
        let req = v1::CreateVpcRequest {
            cidr: cidr.to_string(),
            description: description.to_string(),
        };
        Ok(self.network.clone().create_vpc(req).await?.into_inner())
    }
    pub async fn get_vpc(&self, vpc_id: &str) -> Result<v1::Vpc, Error> {
        Ok(self.network.clone().get_vpc(id(vpc_id)).await?.into_inner())
    }
    pub async fn list_vpcs(&self) -> Result<Vec<v1::Vpc>, Error> {
        Ok(self
            .network
            .clone()
            .list_vpcs(in_vpc(""))
            .await?
            .into_inner()
            .vpcs)
    }
    /// Refused while the VPC has subnets or security groups.
    pub async fn delete_vpc(&self, vpc_id: &str) -> Result<(), Error> {
        self.network.clone().delete_vpc(id(vpc_id)).await?;
        Ok(())
    }

    pub async fn create_subnet(&self, vpc_id: &str, cidr: &str) -> Result<v1::Subnet, Error> {
        let req = v1::CreateSubnetRequest {
            vpc_id: vpc_id.to_string(),
            cidr: cidr.to_string(),
        };
        Ok(self.network.clone().create_subnet(req).await?.into_inner())
    }
    pub async fn get_subnet(&self, subnet_id: &str) -> Result<v1::Subnet, Error> {
        Ok(self
            .network
            .clone()
            .get_subnet(id(subnet_id))
            .await?
            .into_inner())
    }
    /// Subnets of `vpc_id` ("" = of every VPC).
    pub async fn list_subnets(&self, vpc_id: &str) -> Result<Vec<v1::Subnet>, Error> {
        Ok(self
            .network
            .clone()
            .list_subnets(in_vpc(vpc_id))
            .await?
            .into_inner()
            .subnets)
    }
    /// Refused while a function or an attachment uses the subnet.
    pub async fn delete_subnet(&self, subnet_id: &str) -> Result<(), Error> {
        self.network.clone().delete_subnet(id(subnet_id)).await?;
        Ok(())
    }

    pub async fn create_security_group(
        &self,
        vpc_id: &str,
        name: &str,
        description: &str,
    ) -> Result<v1::SecurityGroup, Error> {
        let req = v1::CreateSecurityGroupRequest {
            vpc_id: vpc_id.to_string(),
            name: name.to_string(),
            description: description.to_string(),
        };
        Ok(self
            .network
            .clone()
            .create_security_group(req)
            .await?
            .into_inner())
    }
    pub async fn get_security_group(&self, group_id: &str) -> Result<v1::SecurityGroup, Error> {
        Ok(self
            .network
            .clone()
            .get_security_group(id(group_id))
            .await?
            .into_inner())
    }
    pub async fn list_security_groups(
        &self,
        vpc_id: &str,
    ) -> Result<Vec<v1::SecurityGroup>, Error> {
        Ok(self
            .network
            .clone()
            .list_security_groups(in_vpc(vpc_id))
            .await?
            .into_inner()
            .groups)
    }
    pub async fn delete_security_group(&self, group_id: &str) -> Result<(), Error> {
        self.network
            .clone()
            .delete_security_group(id(group_id))
            .await?;
        Ok(())
    }

    /// Adds (`authorize`) or removes a rule; `direction` is `ingress` or `egress`.
    pub async fn change_security_group_rule(
        &self,
        group_id: &str,
        direction: &str,
        rule: RuleSpec,
        authorize: bool,
    ) -> Result<v1::SecurityGroup, Error> {
        let req = v1::SecurityGroupRuleRequest {
            group_id: group_id.to_string(),
            direction: direction.to_string(),
            rule: Some(rule.into()),
        };
        let mut c = self.network.clone();
        let resp = if authorize {
            c.authorize_security_group_rule(req).await?
        } else {
            c.revoke_security_group_rule(req).await?
        };
        Ok(resp.into_inner())
    }

    /// Plugs network namespace `netns` (on the host of `worker_id`; "" = the only worker) into a
    /// subnet.
    pub async fn attach_netns(
        &self,
        netns: &str,
        subnet_id: &str,
        security_group_ids: &[String],
        worker_id: &str,
    ) -> Result<v1::NetnsAttachment, Error> {
        let req = v1::AttachNetnsRequest {
            netns: netns.to_string(),
            subnet_id: subnet_id.to_string(),
            security_group_ids: security_group_ids.to_vec(),
            worker_id: worker_id.to_string(),
        };
        Ok(self.network.clone().attach_netns(req).await?.into_inner())
    }
    pub async fn list_netns_attachments(
        &self,
        vpc_id: &str,
    ) -> Result<Vec<v1::NetnsAttachment>, Error> {
        Ok(self
            .network
            .clone()
            .list_netns_attachments(in_vpc(vpc_id))
            .await?
            .into_inner()
            .attachments)
    }
    pub async fn detach_netns(&self, attachment_id: &str) -> Result<(), Error> {
        self.network.clone().detach_netns(id(attachment_id)).await?;
        Ok(())
    }
}
