//! The `Network` service: VPCs, subnets, security groups and netns attachments; plus the checks
//! of a function's `VpcConfig` and the address leases workers ask for (`Cluster`).
use std::net::Ipv4Addr;
use std::sync::Arc;

use lamina_proto::network::{self as net, Direction, VpcConfig};
use lamina_proto::v1;
use lamina_proto::validate::ValidationError;
use tonic::{Code, Request, Response, Status};

use super::{now_ms, ApiError, Shared};
use crate::registry::WorkerState;
use crate::store::{NetworkError, Store};

/// Addresses a worker leases at a time for its pool of sandbox interfaces.
pub const LEASE_BATCH_MAX: u32 = 16;

pub(crate) fn status_code(e: &NetworkError) -> Code {
    match e {
        NetworkError::NotFound { .. } => Code::NotFound,
        NetworkError::Invalid(_) => Code::InvalidArgument,
        NetworkError::InUse { .. } | NetworkError::Exhausted { .. } => Code::FailedPrecondition,
        NetworkError::Store(e) => {
            tracing::error!(error = %e, "internal error");
            Code::Internal
        }
    }
}

pub struct NetworkService {
    pub(crate) shared: Arc<Shared>,
}

impl NetworkService {
    /// Runs a store call off the async threads; a successful write wakes the reconciler.
    async fn call<T, F>(&self, write: bool, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, NetworkError> + Send + 'static,
    {
        let out = net_call(&self.shared, f).await.map_err(Status::from)?;
        if write {
            self.shared.network.changed.notify_one();
        }
        Ok(out)
    }
}

pub(crate) async fn net_call<T, F>(shared: &Shared, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, NetworkError> + Send + 'static,
{
    let store = Arc::clone(&shared.store);
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| ApiError::Internal(format!("store task failed: {e}")))?
        .map_err(ApiError::from)
}

fn invalid(e: ValidationError) -> Status {
    ApiError::Validation(e).into()
}

fn id(
    r: &v1::NetworkResourceId,
    field: &'static str,
    prefix: &str,
) -> Result<String, ValidationError> {
    net::check_id(field, prefix, &r.id)?;
    Ok(r.id.clone())
}

fn vpc_filter(r: &v1::ListNetworkResourcesRequest) -> Result<Option<String>, ValidationError> {
    if r.vpc_id.is_empty() {
        return Ok(None);
    }
    net::check_id("vpc_id", "vpc", &r.vpc_id)?;
    Ok(Some(r.vpc_id.clone()))
}

/// Checks a function's VPC configuration against the store (subnets and groups exist, one VPC).
pub(crate) async fn check_vpc_config(
    shared: &Shared,
    config: Option<&VpcConfig>,
) -> Result<(), ApiError> {
    let Some(c) = config.cloned() else {
        return Ok(());
    };
    net_call(shared, move |s| s.check_vpc_config(&c)).await?;
    Ok(())
}

#[tonic::async_trait]
impl v1::network_server::Network for NetworkService {
    async fn create_vpc(
        &self,
        request: Request<v1::CreateVpcRequest>,
    ) -> Result<Response<v1::Vpc>, Status> {
        self.shared.authorize(
            request.extensions(),
            "ec2:CreateVpc",
            &crate::iam::arn::vpc("*"),
        )?;
        let r = request.into_inner();
        let cidr = net::block("cidr", &r.cidr).map_err(invalid)?;
        let v = self
            .call(true, move |s| s.create_vpc(cidr, &r.description, now_ms()))
            .await?;
        Ok(Response::new((&v).into()))
    }

    async fn get_vpc(
        &self,
        request: Request<v1::NetworkResourceId>,
    ) -> Result<Response<v1::Vpc>, Status> {
        self.shared.authorize(
            request.extensions(),
            "ec2:DescribeVpcs",
            &crate::iam::arn::vpc(&request.get_ref().id),
        )?;
        let id = id(request.get_ref(), "vpc_id", "vpc").map_err(invalid)?;
        let v = self.call(false, move |s| s.get_vpc(&id)).await?;
        Ok(Response::new((&v).into()))
    }

    async fn list_vpcs(
        &self,
        request: Request<v1::ListNetworkResourcesRequest>,
    ) -> Result<Response<v1::ListVpcsResponse>, Status> {
        self.shared
            .authorize(request.extensions(), "ec2:DescribeVpcs", "*")?;
        let vpcs = self.call(false, |s| s.list_vpcs()).await?;
        Ok(Response::new(v1::ListVpcsResponse {
            vpcs: vpcs.iter().map(Into::into).collect(),
        }))
    }

    async fn delete_vpc(
        &self,
        request: Request<v1::NetworkResourceId>,
    ) -> Result<Response<v1::DeleteNetworkResourceResponse>, Status> {
        self.shared.authorize(
            request.extensions(),
            "ec2:DeleteVpc",
            &crate::iam::arn::vpc(&request.get_ref().id),
        )?;
        let id = id(request.get_ref(), "vpc_id", "vpc").map_err(invalid)?;
        self.call(true, move |s| s.delete_vpc(&id)).await?;
        Ok(Response::new(v1::DeleteNetworkResourceResponse {}))
    }

    async fn create_subnet(
        &self,
        request: Request<v1::CreateSubnetRequest>,
    ) -> Result<Response<v1::Subnet>, Status> {
        self.shared.authorize(
            request.extensions(),
            "ec2:CreateSubnet",
            &crate::iam::arn::vpc(&request.get_ref().vpc_id),
        )?;
        let r = request.into_inner();
        net::check_id("vpc_id", "vpc", &r.vpc_id).map_err(invalid)?;
        let cidr = net::block("cidr", &r.cidr).map_err(invalid)?;
        let v = self
            .call(true, move |s| s.create_subnet(&r.vpc_id, cidr, now_ms()))
            .await?;
        Ok(Response::new((&v).into()))
    }

    async fn get_subnet(
        &self,
        request: Request<v1::NetworkResourceId>,
    ) -> Result<Response<v1::Subnet>, Status> {
        self.shared.authorize(
            request.extensions(),
            "ec2:DescribeSubnets",
            &crate::iam::arn::subnet(&request.get_ref().id),
        )?;
        let id = id(request.get_ref(), "subnet_id", "subnet").map_err(invalid)?;
        let v = self.call(false, move |s| s.get_subnet(&id)).await?;
        Ok(Response::new((&v).into()))
    }

    async fn list_subnets(
        &self,
        request: Request<v1::ListNetworkResourcesRequest>,
    ) -> Result<Response<v1::ListSubnetsResponse>, Status> {
        self.shared
            .authorize(request.extensions(), "ec2:DescribeSubnets", "*")?;
        let vpc = vpc_filter(request.get_ref()).map_err(invalid)?;
        let v = self
            .call(false, move |s| s.list_subnets(vpc.as_deref()))
            .await?;
        Ok(Response::new(v1::ListSubnetsResponse {
            subnets: v.iter().map(Into::into).collect(),
        }))
    }

    async fn delete_subnet(
        &self,
        request: Request<v1::NetworkResourceId>,
    ) -> Result<Response<v1::DeleteNetworkResourceResponse>, Status> {
        self.shared.authorize(
            request.extensions(),
            "ec2:DeleteSubnet",
            &crate::iam::arn::subnet(&request.get_ref().id),
        )?;
        let id = id(request.get_ref(), "subnet_id", "subnet").map_err(invalid)?;
        self.call(true, move |s| s.delete_subnet(&id)).await?;
        Ok(Response::new(v1::DeleteNetworkResourceResponse {}))
    }

    async fn create_security_group(
        &self,
        request: Request<v1::CreateSecurityGroupRequest>,
    ) -> Result<Response<v1::SecurityGroup>, Status> {
        self.shared.authorize(
            request.extensions(),
            "ec2:CreateSecurityGroup",
            &crate::iam::arn::vpc(&request.get_ref().vpc_id),
        )?;
        let r = request.into_inner();
        net::check_id("vpc_id", "vpc", &r.vpc_id).map_err(invalid)?;
        net::check_name("name", &r.name).map_err(invalid)?;
        let v = self
            .call(true, move |s| {
                s.create_group(&r.vpc_id, &r.name, &r.description, now_ms())
            })
            .await?;
        Ok(Response::new((&v).into()))
    }

    async fn get_security_group(
        &self,
        request: Request<v1::NetworkResourceId>,
    ) -> Result<Response<v1::SecurityGroup>, Status> {
        self.shared.authorize(
            request.extensions(),
            "ec2:DescribeSecurityGroups",
            &crate::iam::arn::security_group(&request.get_ref().id),
        )?;
        let id = id(request.get_ref(), "group_id", "sg").map_err(invalid)?;
        let v = self.call(false, move |s| s.get_group(&id)).await?;
        Ok(Response::new((&v).into()))
    }

    async fn list_security_groups(
        &self,
        request: Request<v1::ListNetworkResourcesRequest>,
    ) -> Result<Response<v1::ListSecurityGroupsResponse>, Status> {
        self.shared
            .authorize(request.extensions(), "ec2:DescribeSecurityGroups", "*")?;
        let vpc = vpc_filter(request.get_ref()).map_err(invalid)?;
        let v = self
            .call(false, move |s| s.list_groups(vpc.as_deref()))
            .await?;
        Ok(Response::new(v1::ListSecurityGroupsResponse {
            groups: v.iter().map(Into::into).collect(),
        }))
    }

    async fn delete_security_group(
        &self,
        request: Request<v1::NetworkResourceId>,
    ) -> Result<Response<v1::DeleteNetworkResourceResponse>, Status> {
        self.shared.authorize(
            request.extensions(),
            "ec2:DeleteSecurityGroup",
            &crate::iam::arn::security_group(&request.get_ref().id),
        )?;
        let id = id(request.get_ref(), "group_id", "sg").map_err(invalid)?;
        self.call(true, move |s| s.delete_group(&id)).await?;
        Ok(Response::new(v1::DeleteNetworkResourceResponse {}))
    }

    async fn authorize_security_group_rule(
        &self,
        request: Request<v1::SecurityGroupRuleRequest>,
    ) -> Result<Response<v1::SecurityGroup>, Status> {
        let action = match request.get_ref().direction.as_str() {
            "egress" => "ec2:AuthorizeSecurityGroupEgress",
            _ => "ec2:AuthorizeSecurityGroupIngress",
        };
        self.shared.authorize(
            request.extensions(),
            action,
            &crate::iam::arn::security_group(&request.get_ref().group_id),
        )?;
        self.change_rule(request.into_inner(), true).await
    }

    async fn revoke_security_group_rule(
        &self,
        request: Request<v1::SecurityGroupRuleRequest>,
    ) -> Result<Response<v1::SecurityGroup>, Status> {
        let action = match request.get_ref().direction.as_str() {
            "egress" => "ec2:RevokeSecurityGroupEgress",
            _ => "ec2:RevokeSecurityGroupIngress",
        };
        self.shared.authorize(
            request.extensions(),
            action,
            &crate::iam::arn::security_group(&request.get_ref().group_id),
        )?;
        self.change_rule(request.into_inner(), false).await
    }

    async fn attach_netns(
        &self,
        request: Request<v1::AttachNetnsRequest>,
    ) -> Result<Response<v1::NetnsAttachment>, Status> {
        self.shared.authorize(
            request.extensions(),
            "lamina:AttachNetns",
            &crate::iam::arn::subnet(&request.get_ref().subnet_id),
        )?;
        let r = request.into_inner();
        net::check_name("netns", &r.netns).map_err(invalid)?;
        // Plugging a host namespace into a VPC is the operator's call: only the namespaces the
        // controller was started with (admin keys only: `auth::ADMIN_METHODS`).
        if !self.shared.attachable_netns.allows(&r.netns) {
            return Err(Status::permission_denied(format!(
                "network namespace `{}` is not attachable: the controller's --attachable-netns allows {}",
                r.netns,
                self.shared.attachable_netns.describe()
            )));
        }
        net::check_id("subnet_id", "subnet", &r.subnet_id).map_err(invalid)?;
        let config = net::vpc_config(&v1::VpcConfig {
            subnet_ids: vec![r.subnet_id.clone()],
            security_group_ids: r.security_group_ids.clone(),
            vpc_id: String::new(),
        })
        .map_err(invalid)?
        .unwrap_or_default();
        let worker_id = self.attachment_worker(&r.worker_id).map_err(Status::from)?;
        let a = self
            .call(true, move |s| {
                s.attach_netns(
                    &r.netns,
                    &r.subnet_id,
                    &config.security_group_ids,
                    &worker_id,
                    now_ms(),
                )
            })
            .await?;
        Ok(Response::new((&a).into()))
    }

    async fn list_netns_attachments(
        &self,
        request: Request<v1::ListNetworkResourcesRequest>,
    ) -> Result<Response<v1::ListNetnsAttachmentsResponse>, Status> {
        self.shared
            .authorize(request.extensions(), "lamina:ListNetnsAttachments", "*")?;
        let vpc = vpc_filter(request.get_ref()).map_err(invalid)?;
        let v = self.call(false, |s| s.list_attachments()).await?;
        Ok(Response::new(v1::ListNetnsAttachmentsResponse {
            attachments: v
                .iter()
                .filter(|a| vpc.as_ref().is_none_or(|id| &a.vpc_id == id))
                .map(Into::into)
                .collect(),
        }))
    }

    async fn detach_netns(
        &self,
        request: Request<v1::NetworkResourceId>,
    ) -> Result<Response<v1::DeleteNetworkResourceResponse>, Status> {
        self.shared.authorize(
            request.extensions(),
            "lamina:DetachNetns",
            &crate::iam::arn::network_interface(&request.get_ref().id),
        )?;
        let id = id(request.get_ref(), "attachment_id", "eni").map_err(invalid)?;
        self.call(true, move |s| s.detach_netns(&id)).await?;
        Ok(Response::new(v1::DeleteNetworkResourceResponse {}))
    }
}

impl NetworkService {
    async fn change_rule(
        &self,
        r: v1::SecurityGroupRuleRequest,
        authorize: bool,
    ) -> Result<Response<v1::SecurityGroup>, Status> {
        net::check_id("group_id", "sg", &r.group_id).map_err(invalid)?;
        let direction = Direction::parse(&r.direction).map_err(invalid)?;
        let rule = r
            .rule
            .as_ref()
            .ok_or_else(|| invalid(ValidationError::new("rule", "rule is required")))?;
        let rule = net::rule(rule).map_err(invalid)?;
        let g = self
            .call(true, move |s| {
                s.change_rule(&r.group_id, direction, rule, authorize)
            })
            .await?;
        Ok(Response::new((&g).into()))
    }

    /// The worker that plumbs an attachment: the one named (known to the registry), or the only
    /// `Up` worker.
    fn attachment_worker(&self, named: &str) -> Result<String, ApiError> {
        let workers = self.shared.registry.list();
        if !named.is_empty() {
            return match workers.iter().find(|w| w.worker_id == named) {
                Some(w) => Ok(w.worker_id.clone()),
                None => Err(ApiError::WorkerNotFound(named.to_string())),
            };
        }
        let up: Vec<_> = workers
            .iter()
            .filter(|w| w.state == WorkerState::Up)
            .collect();
        match up.as_slice() {
            [w] => Ok(w.worker_id.clone()),
            [] => Err(ApiError::NoWorker),
            _ => Err(ApiError::BadRequest(format!(
                "{} workers are up: name the one on the namespace's host with --worker",
                up.len()
            ))),
        }
    }
}

/// `Cluster.AllocateAddresses`: leases addresses to a worker and answers with its state.
pub(crate) async fn allocate(
    shared: &Shared,
    r: v1::AllocateAddressesRequest,
) -> Result<v1::AllocateAddressesResponse, ApiError> {
    if r.worker_id.is_empty() {
        return Err(ApiError::BadRequest("worker_id is required".into()));
    }
    let config = net::vpc_config(&v1::VpcConfig {
        subnet_ids: vec![r.subnet_id.clone()],
        security_group_ids: r.security_group_ids.clone(),
        vpc_id: String::new(),
    })?
    .unwrap_or_default();
    let count = r.count.clamp(1, LEASE_BATCH_MAX) as usize;
    let worker = r.worker_id.clone();
    let addresses = net_call(shared, move |s| {
        s.check_vpc_config(&config)?;
        s.lease_addresses(&worker, &r.subnet_id, &config.security_group_ids, count)
    })
    .await?;
    // The new addresses are members of their groups: every worker learns them before the
    // sandbox that asked runs anything (a peer's ingress rule naming the group must match it).
    crate::network::round(shared).await;
    let state = crate::network::worker_state(shared, &r.worker_id).await?;
    Ok(v1::AllocateAddressesResponse {
        addresses: addresses.iter().map(Ipv4Addr::to_string).collect(),
        state: Some(state),
    })
}

/// `Cluster.ReleaseAddresses`.
pub(crate) async fn release(
    shared: &Shared,
    r: v1::ReleaseAddressesRequest,
) -> Result<(), ApiError> {
    let addresses = r
        .addresses
        .iter()
        .map(|a| {
            a.parse::<Ipv4Addr>().map_err(|_| {
                ApiError::BadRequest(format!("addresses: {a:?} is not an IPv4 address"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let n = net_call(shared, move |s| {
        s.release_addresses(&r.worker_id, &addresses)
    })
    .await?;
    if n > 0 {
        shared.network.changed.notify_one();
    }
    Ok(())
}
