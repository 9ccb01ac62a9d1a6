//! The `Network` service and VPC configurations of functions, through gRPC on a real controller
//! (RocksDB in a temp dir): validation, in-use refusals, address leases.
mod common;

use common::*;
use lamina_proto::v1::{self, cluster_client::ClusterClient, network_client::NetworkClient};
use tonic::transport::Channel;
use tonic::Code;

async fn network(addr: std::net::SocketAddr) -> NetworkClient<Channel> {
    NetworkClient::new(channel(addr).await)
}

fn rid(id: &str) -> v1::NetworkResourceId {
    v1::NetworkResourceId { id: id.into() }
}

async fn vpc(n: &mut NetworkClient<Channel>, cidr: &str) -> Result<v1::Vpc, tonic::Status> {
    n.create_vpc(v1::CreateVpcRequest {
        cidr: cidr.into(),
        description: String::new(),
    })
    .await
    .map(|r| r.into_inner())
}

async fn subnet(
    n: &mut NetworkClient<Channel>,
    vpc: &str,
    cidr: &str,
) -> Result<v1::Subnet, tonic::Status> {
    n.create_subnet(v1::CreateSubnetRequest {
        vpc_id: vpc.into(),
        cidr: cidr.into(),
    })
    .await
    .map(|r| r.into_inner())
}

async fn sg(n: &mut NetworkClient<Channel>, vpc: &str, name: &str) -> v1::SecurityGroup {
    n.create_security_group(v1::CreateSecurityGroupRequest {
        vpc_id: vpc.into(),
        name: name.into(),
        description: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
}

fn rule(p: &str, from: u32, to: u32, cidr: &str, group: &str) -> v1::SecurityGroupRule {
    v1::SecurityGroupRule {
        protocol: p.into(),
        from_port: from,
        to_port: to,
        cidr: cidr.into(),
        source_group: group.into(),
    }
}

async fn change(
    n: &mut NetworkClient<Channel>,
    group: &str,
    direction: &str,
    r: v1::SecurityGroupRule,
    authorize: bool,
) -> Result<v1::SecurityGroup, tonic::Status> {
    let req = v1::SecurityGroupRuleRequest {
        group_id: group.into(),
        direction: direction.into(),
        rule: Some(r),
    };
    if authorize {
        n.authorize_security_group_rule(req).await
    } else {
        n.revoke_security_group_rule(req).await
    }
    .map(|r| r.into_inner())
}

fn vpc_spec(name: &str, subnets: &[&str], groups: &[&str]) -> v1::FunctionSpec {
    let mut s = spec(name);
    s.vpc_config = Some(v1::VpcConfig {
        subnet_ids: subnets.iter().map(|x| x.to_string()).collect(),
        security_group_ids: groups.iter().map(|x| x.to_string()).collect(),
        vpc_id: String::new(),
    });
    s
}

fn app_zip() -> Vec<u8> {
    zip_of(&[("app.py", b"def handler(e, c):\n    return e\n")])
}

#[tokio::test]
async fn vpcs_and_subnets_are_validated() {
    let c = start().await;
    let mut n = network(c.addr).await;
    let v = vpc(&mut n, "10.77.0.0/16").await.unwrap();
    assert!(v.id.starts_with("vpc-") && v.id.len() == 12, "{}", v.id);
    let v2 = vpc(&mut n, "10.78.0.0/16").await.unwrap();
    assert_ne!(v.vni, v2.vni);
    assert_status(
        vpc(&mut n, "10.77.0.0").await,
        Code::InvalidArgument,
        "10.0.0.0/16",
    );
    assert_status(
        vpc(&mut n, "10.77.0.1/16").await,
        Code::InvalidArgument,
        "host bits",
    );
    assert_status(
        vpc(&mut n, "10.0.0.0/8").await,
        Code::InvalidArgument,
        "/16../28",
    );

    let s = subnet(&mut n, &v.id, "10.77.1.0/24").await.unwrap();
    assert_eq!(
        (s.vpc_id.as_str(), s.gateway.as_str()),
        (v.id.as_str(), "10.77.1.1")
    );
    assert_status(
        subnet(&mut n, &v.id, "10.79.0.0/24").await,
        Code::InvalidArgument,
        "not inside VPC",
    );
    assert_status(
        subnet(&mut n, &v.id, "10.77.1.128/25").await,
        Code::InvalidArgument,
        "overlaps subnet",
    );
    assert_status(
        subnet(&mut n, "vpc-00000000", "10.77.2.0/24").await,
        Code::NotFound,
        "vpc `vpc-00000000` not found",
    );
    assert_status(
        subnet(&mut n, "nope", "10.77.2.0/24").await,
        Code::InvalidArgument,
        "vpc-1a2b3c4d",
    );
    let listed = n
        .list_subnets(v1::ListNetworkResourcesRequest {
            vpc_id: v.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .subnets;
    assert_eq!(listed.len(), 1);
    assert_status(
        n.delete_vpc(rid(&v.id)).await,
        Code::FailedPrecondition,
        &s.id,
    );
    n.delete_subnet(rid(&s.id)).await.unwrap();
    n.delete_vpc(rid(&v.id)).await.unwrap();
    assert_status(n.get_vpc(rid(&v.id)).await, Code::NotFound, "not found");
    c.shutdown.cancel();
}

#[tokio::test]
async fn security_group_rules_are_validated_and_change() {
    let c = start().await;
    let mut n = network(c.addr).await;
    let v = vpc(&mut n, "10.80.0.0/16").await.unwrap();
    let other = vpc(&mut n, "10.81.0.0/16").await.unwrap();
    let g = sg(&mut n, &v.id, "db").await;
    // Defaults: all egress, ingress from the group itself.
    assert_eq!(g.egress, [rule("all", 0, 0, "0.0.0.0/0", "")]);
    assert_eq!(g.ingress, [rule("all", 0, 0, "", &g.id)]);
    let app = sg(&mut n, &v.id, "app").await;
    let foreign = sg(&mut n, &other.id, "x").await;

    let after = change(
        &mut n,
        &g.id,
        "ingress",
        rule("tcp", 5432, 5432, "", &app.id),
        true,
    )
    .await
    .unwrap();
    assert_eq!(after.ingress.len(), 2);
    let bad = [
        (rule("sctp", 1, 1, "10.0.0.0/8", ""), "protocol"),
        (rule("tcp", 90, 80, "10.0.0.0/8", ""), "port range"),
        (
            rule("tcp", 80, 80, "", ""),
            "exactly one of cidr and source_group",
        ),
        (rule("tcp", 80, 80, "10.0.0.0/8", &app.id), "exactly one"),
        (rule("tcp", 80, 80, "10.0.0.1/8", ""), "host bits"),
    ];
    for (r, needle) in bad {
        assert_status(
            change(&mut n, &g.id, "ingress", r, true).await,
            Code::InvalidArgument,
            needle,
        );
    }
    assert_status(
        change(
            &mut n,
            &g.id,
            "sideways",
            rule("all", 0, 0, "0.0.0.0/0", ""),
            true,
        )
        .await,
        Code::InvalidArgument,
        "ingress or egress",
    );
    assert_status(
        change(
            &mut n,
            &g.id,
            "ingress",
            rule("tcp", 1, 1, "", &foreign.id),
            true,
        )
        .await,
        Code::InvalidArgument,
        "is in VPC",
    );
    assert_status(
        change(
            &mut n,
            &g.id,
            "ingress",
            rule("tcp", 1, 1, "", "sg-00000000"),
            true,
        )
        .await,
        Code::NotFound,
        "sg-00000000",
    );
    // The app group is referenced by a rule of db: not deletable until revoked.
    assert_status(
        n.delete_security_group(rid(&app.id)).await,
        Code::FailedPrecondition,
        &g.id,
    );
    let after = change(
        &mut n,
        &g.id,
        "ingress",
        rule("tcp", 5432, 5432, "", &app.id),
        false,
    )
    .await
    .unwrap();
    assert_eq!(after.ingress.len(), 1);
    assert_status(
        change(
            &mut n,
            &g.id,
            "ingress",
            rule("tcp", 5432, 5432, "", &app.id),
            false,
        )
        .await,
        Code::InvalidArgument,
        "no such ingress rule",
    );
    n.delete_security_group(rid(&app.id)).await.unwrap();
    assert_status(
        n.create_security_group(v1::CreateSecurityGroupRequest {
            vpc_id: v.id.clone(),
            name: "db".into(),
            description: String::new(),
        })
        .await,
        Code::InvalidArgument,
        "already has a security group named `db`",
    );
    c.shutdown.cancel();
}

#[tokio::test]
async fn functions_take_a_vpc_config_and_keep_what_they_use() {
    let c = start().await;
    let mut n = network(c.addr).await;
    let mut f = functions(c.addr).await;
    let v = vpc(&mut n, "10.82.0.0/16").await.unwrap();
    let other = vpc(&mut n, "10.83.0.0/16").await.unwrap();
    let s = subnet(&mut n, &v.id, "10.82.1.0/24").await.unwrap();
    let s_other = subnet(&mut n, &other.id, "10.83.1.0/24").await.unwrap();
    let g = sg(&mut n, &v.id, "app").await;

    // Unknown ids, two VPCs, missing groups: refused, nothing created.
    let refused = [
        (
            vpc_spec("f1", &["subnet-00000000"], &[&g.id]),
            Code::NotFound,
            "subnet-00000000",
        ),
        (
            vpc_spec("f1", &[&s.id, &s_other.id], &[&g.id]),
            Code::InvalidArgument,
            "one VPC",
        ),
        (
            vpc_spec("f1", &[&s.id], &[]),
            Code::InvalidArgument,
            "security group",
        ),
        (
            vpc_spec("f1", &[&s.id], &["sg-x"]),
            Code::InvalidArgument,
            "sg-1a2b3c4d",
        ),
    ];
    for (sp, code, needle) in refused {
        assert_status(
            create(&mut f, create_msgs(Some(sp), &app_zip(), 1 << 20)).await,
            code,
            needle,
        );
    }
    let made = create(
        &mut f,
        create_msgs(
            Some(vpc_spec("f1", &[&s.id], &[&g.id])),
            &app_zip(),
            1 << 20,
        ),
    )
    .await
    .unwrap();
    let vc = made.vpc_config.clone().unwrap();
    assert_eq!(
        (vc.subnet_ids, vc.security_group_ids),
        (vec![s.id.clone()], vec![g.id.clone()])
    );

    // In use: refused with a message naming the function.
    assert_status(
        n.delete_subnet(rid(&s.id)).await,
        Code::FailedPrecondition,
        "function `f1`",
    );
    assert_status(
        n.delete_security_group(rid(&g.id)).await,
        Code::FailedPrecondition,
        "function `f1`",
    );

    // Detach (no subnets), then they go.
    let updated = f
        .update_function_configuration(v1::UpdateFunctionConfigurationRequest {
            function_name: "f1".into(),
            vpc_config: Some(v1::VpcConfig::default()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(updated.vpc_config.is_none_or(|c| c.subnet_ids.is_empty()));
    assert_ne!(updated.revision_id, made.revision_id);
    n.delete_subnet(rid(&s.id)).await.unwrap();
    n.delete_security_group(rid(&g.id)).await.unwrap();
    c.shutdown.cancel();
}

#[tokio::test]
async fn leases_never_collide_and_attachments_need_a_worker() {
    // The operator allows namespace `db` to be attached (`--attachable-netns db`).
    let c = start_with(|c| c.attachable_netns = vec!["db".into()]).await;
    let mut n = network(c.addr).await;
    let mut cluster = ClusterClient::new(channel(c.addr).await);
    let v = vpc(&mut n, "10.84.0.0/16").await.unwrap();
    let s = subnet(&mut n, &v.id, "10.84.1.0/28").await.unwrap();
    let g = sg(&mut n, &v.id, "app").await;
    let mut seen = std::collections::BTreeSet::new();
    for w in ["w1", "w2", "w1", "w2"] {
        let r = cluster
            .allocate_addresses(v1::AllocateAddressesRequest {
                worker_id: w.into(),
                subnet_id: s.id.clone(),
                security_group_ids: vec![g.id.clone()],
                count: 3,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.addresses.len(), 3);
        for a in r.addresses {
            assert_ne!(a, "10.84.1.1", "the gateway is never leased");
            assert!(seen.insert(a.clone()), "{a} leased twice");
        }
        let state = r.state.unwrap();
        assert!(state.leases.iter().all(|l| l.subnet_id == s.id));
        let members = &state
            .members
            .iter()
            .find(|m| m.group_id == g.id)
            .unwrap()
            .addresses;
        assert_eq!(members.len(), seen.len());
    }
    // A /28 has 13 addresses after the gateway: one left, then none.
    let req = |count| v1::AllocateAddressesRequest {
        worker_id: "w3".into(),
        subnet_id: s.id.clone(),
        security_group_ids: vec![g.id.clone()],
        count,
    };
    assert_eq!(
        cluster
            .allocate_addresses(req(5))
            .await
            .unwrap()
            .into_inner()
            .addresses
            .len(),
        1
    );
    assert_status(
        cluster.allocate_addresses(req(1)).await,
        Code::FailedPrecondition,
        "no free address",
    );
    // Released addresses are leased again.
    cluster
        .release_addresses(v1::ReleaseAddressesRequest {
            worker_id: "w1".into(),
            addresses: vec![],
        })
        .await
        .unwrap();
    assert_eq!(
        cluster
            .allocate_addresses(req(16))
            .await
            .unwrap()
            .into_inner()
            .addresses
            .len(),
        6
    );

    // No worker: an attachment has nobody to plumb it.
    assert_status(
        n.attach_netns(v1::AttachNetnsRequest {
            netns: "db".into(),
            subnet_id: s.id.clone(),
            security_group_ids: vec![g.id.clone()],
            worker_id: String::new(),
        })
        .await,
        Code::Unavailable,
        "no worker",
    );
    c.shutdown.cancel();
}
