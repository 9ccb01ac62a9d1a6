//! `fnctl vpc|subnet|sg`: VPCs, subnets, security groups and netns attachments.
use anyhow::anyhow;
use clap::{Args, Subcommand};
use lamina_client::network::RuleSpec;
use lamina_client::{v1, Client};
use serde_json::{json, Value};

use crate::args::Output;
use crate::attach_wait;
use crate::output::{lambda_timestamp, serialize, table};

#[derive(Debug, Subcommand)]
pub enum VpcCommand {
    /// Create a VPC: an address block (/16../28) of its own
    Create {
        #[arg(long)]
        cidr: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    #[command(alias = "ls")]
    List,
    Get {
        id: String,
    },
    /// Delete a VPC (refused while it has subnets or security groups)
    #[command(alias = "rm")]
    Delete {
        id: String,
    },
    /// Plug an existing network namespace (/run/netns/NS on a worker's host) into a subnet; when NS
    /// is on this host, waits (up to 15 s) until the worker has configured its address
    AttachNetns(AttachArgs),
    /// Unplug an attached namespace (by its attachment id, eni-…)
    DetachNetns {
        id: String,
    },
    /// List netns attachments
    Attachments {
        #[arg(long, default_value = "")]
        vpc: String,
    },
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    pub netns: String,
    #[arg(long)]
    pub subnet: String,
    #[arg(long, value_delimiter = ',', value_name = "SG,...", required = true)]
    pub security_groups: Vec<String>,
    /// The worker on the namespace's host (default: the only worker)
    #[arg(long, default_value = "")]
    pub worker: String,
}

#[derive(Debug, Subcommand)]
pub enum SubnetCommand {
    /// Create a subnet: a block inside its VPC's, overlapping no other subnet
    Create {
        #[arg(long)]
        vpc: String,
        #[arg(long)]
        cidr: String,
    },
    #[command(alias = "ls")]
    List {
        #[arg(long, default_value = "")]
        vpc: String,
    },
    Get {
        id: String,
    },
    /// Delete a subnet (refused while a function or an attachment uses it)
    #[command(alias = "rm")]
    Delete {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SgCommand {
    /// Create a security group (all egress allowed, ingress from its own members)
    Create {
        #[arg(long)]
        vpc: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    #[command(alias = "ls")]
    List {
        #[arg(long, default_value = "")]
        vpc: String,
    },
    Get {
        id: String,
    },
    /// Delete a security group (refused while in use or referenced by a rule)
    #[command(alias = "rm")]
    Delete {
        id: String,
    },
    AuthorizeIngress(RuleArgs),
    RevokeIngress(RuleArgs),
    AuthorizeEgress(RuleArgs),
    RevokeEgress(RuleArgs),
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    pub group: String,
    /// tcp | udp | icmp | all
    #[arg(long)]
    pub protocol: String,
    /// N or N-M (tcp and udp)
    #[arg(long)]
    pub port: Option<String>,
    #[arg(
        long,
        conflicts_with = "source_group",
        required_unless_present = "source_group"
    )]
    pub cidr: Option<String>,
    /// A security group of the same VPC (for egress rules: the destination group)
    #[arg(long)]
    pub source_group: Option<String>,
}

/// `N` or `N-M`.
pub fn parse_ports(s: &str) -> anyhow::Result<(u32, u32)> {
    let bad = || anyhow!("--port must be N or N-M with 1 <= N <= M <= 65535, got {s:?}");
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let from: u32 = a.trim().parse().map_err(|_| bad())?;
    let to: u32 = b.trim().parse().map_err(|_| bad())?;
    if from == 0 || to < from || to > 65535 {
        return Err(bad());
    }
    Ok((from, to))
}

impl RuleArgs {
    fn spec(&self) -> anyhow::Result<RuleSpec> {
        let (from_port, to_port) = match &self.port {
            Some(p) => parse_ports(p)?,
            None => (0, 0),
        };
        Ok(RuleSpec {
            protocol: self.protocol.clone(),
            from_port,
            to_port,
            cidr: self.cidr.clone().unwrap_or_default(),
            source_group: self.source_group.clone().unwrap_or_default(),
        })
    }
}

// JSON/YAML views: PascalCase like every fnctl view (`json_casing` checks them).
pub(crate) fn vpc_json(v: &v1::Vpc) -> Value {
    json!({"Id": v.id, "Cidr": v.cidr, "Vni": v.vni, "Description": v.description,
           "Created": lambda_timestamp(v.created_ms)})
}
pub(crate) fn subnet_json(s: &v1::Subnet) -> Value {
    json!({"Id": s.id, "VpcId": s.vpc_id, "Cidr": s.cidr, "Gateway": s.gateway,
           "Created": lambda_timestamp(s.created_ms)})
}
fn rule_json(r: &v1::SecurityGroupRule) -> Value {
    json!({"Protocol": r.protocol, "FromPort": r.from_port, "ToPort": r.to_port,
           "Cidr": r.cidr, "SourceGroup": r.source_group})
}
pub(crate) fn sg_json(g: &v1::SecurityGroup) -> Value {
    json!({"Id": g.id, "VpcId": g.vpc_id, "Name": g.name, "Description": g.description,
           "Ingress": g.ingress.iter().map(rule_json).collect::<Vec<_>>(),
           "Egress": g.egress.iter().map(rule_json).collect::<Vec<_>>(),
           "Created": lambda_timestamp(g.created_ms)})
}
pub(crate) fn eni_json(a: &v1::NetnsAttachment) -> Value {
    json!({"Id": a.id, "Netns": a.netns, "SubnetId": a.subnet_id, "VpcId": a.vpc_id,
           "SecurityGroupIds": a.security_group_ids, "Address": a.address,
           "WorkerId": a.worker_id, "Created": lambda_timestamp(a.created_ms)})
}

/// A table header for a PascalCase key: `SecurityGroupIds` -> `SECURITY-GROUP-IDS`.
fn header(key: &str) -> String {
    let mut h = String::new();
    for (i, c) in key.chars().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            h.push('-');
        }
        h.push(c.to_ascii_uppercase());
    }
    h
}

fn rule_text(r: &v1::SecurityGroupRule) -> String {
    let ports = match r.protocol.as_str() {
        "tcp" | "udp" if r.from_port == r.to_port => format!(":{}", r.from_port),
        "tcp" | "udp" => format!(":{}-{}", r.from_port, r.to_port),
        _ => String::new(),
    };
    let peer = if r.cidr.is_empty() {
        &r.source_group
    } else {
        &r.cidr
    };
    format!("{}{ports} {peer}", r.protocol)
}

/// One object (`one`) or a list, as JSON/YAML, or a table of `columns` picked from the JSON.
fn render(
    values: Vec<Value>,
    output: Output,
    one: bool,
    columns: &[&str],
) -> anyhow::Result<String> {
    match output {
        Output::Table => {
            let rows: Vec<Vec<String>> = values
                .iter()
                .map(|v| {
                    columns
                        .iter()
                        .map(|c| match &v[*c] {
                            Value::String(s) => s.clone(),
                            Value::Array(a) => a
                                .iter()
                                .map(|x| x.as_str().map_or_else(|| x.to_string(), String::from))
                                .collect::<Vec<_>>()
                                .join(","),
                            Value::Null => String::new(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .collect();
            let headers: Vec<String> = columns.iter().map(|c| header(c)).collect();
            let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
            Ok(table(&headers, &rows))
        }
        _ if one && values.len() == 1 => serialize(&values[0], output),
        _ => serialize(&values, output),
    }
}

const VPC_COLS: &[&str] = &["Id", "Cidr", "Vni", "Description"];
const SUBNET_COLS: &[&str] = &["Id", "VpcId", "Cidr", "Gateway"];
const SG_COLS: &[&str] = &["Id", "VpcId", "Name", "Ingress", "Egress"];
const ENI_COLS: &[&str] = &[
    "Id",
    "Netns",
    "SubnetId",
    "Address",
    "SecurityGroupIds",
    "WorkerId",
];

fn sg_view(g: &v1::SecurityGroup, output: Output) -> Value {
    let mut v = sg_json(g);
    if output == Output::Table {
        v["Ingress"] = json!(g.ingress.iter().map(rule_text).collect::<Vec<_>>());
        v["Egress"] = json!(g.egress.iter().map(rule_text).collect::<Vec<_>>());
    }
    v
}

pub async fn run_vpc(client: &Client, cmd: VpcCommand, output: Output) -> anyhow::Result<String> {
    match cmd {
        VpcCommand::Create { cidr, description } => {
            let v = client.create_vpc(&cidr, &description).await?;
            render(vec![vpc_json(&v)], output, true, VPC_COLS)
        }
        VpcCommand::List => {
            let vs = client.list_vpcs().await?;
            render(vs.iter().map(vpc_json).collect(), output, false, VPC_COLS)
        }
        VpcCommand::Get { id } => render(
            vec![vpc_json(&client.get_vpc(&id).await?)],
            output,
            true,
            VPC_COLS,
        ),
        VpcCommand::Delete { id } => {
            client.delete_vpc(&id).await?;
            Ok(format!("deleted {id}\n"))
        }
        VpcCommand::AttachNetns(a) => {
            let e = client
                .attach_netns(&a.netns, &a.subnet, &a.security_groups, &a.worker)
                .await?;
            // The worker plumbs the attachment on its next sync: return once it has.
            let applied =
                attach_wait::wait_for_address(&e.netns, &e.address, attach_wait::WAIT).await;
            if let Some(note) = attach_wait::note(&e, &applied) {
                eprintln!("{note}");
            }
            render(vec![eni_json(&e)], output, true, ENI_COLS)
        }
        VpcCommand::DetachNetns { id } => {
            client.detach_netns(&id).await?;
            Ok(format!("detached {id}\n"))
        }
        VpcCommand::Attachments { vpc } => {
            let es = client.list_netns_attachments(&vpc).await?;
            render(es.iter().map(eni_json).collect(), output, false, ENI_COLS)
        }
    }
}

pub async fn run_subnet(
    client: &Client,
    cmd: SubnetCommand,
    output: Output,
) -> anyhow::Result<String> {
    match cmd {
        SubnetCommand::Create { vpc, cidr } => {
            let s = client.create_subnet(&vpc, &cidr).await?;
            render(vec![subnet_json(&s)], output, true, SUBNET_COLS)
        }
        SubnetCommand::List { vpc } => {
            let ss = client.list_subnets(&vpc).await?;
            render(
                ss.iter().map(subnet_json).collect(),
                output,
                false,
                SUBNET_COLS,
            )
        }
        SubnetCommand::Get { id } => render(
            vec![subnet_json(&client.get_subnet(&id).await?)],
            output,
            true,
            SUBNET_COLS,
        ),
        SubnetCommand::Delete { id } => {
            client.delete_subnet(&id).await?;
            Ok(format!("deleted {id}\n"))
        }
    }
}

pub async fn run_sg(client: &Client, cmd: SgCommand, output: Output) -> anyhow::Result<String> {
    let (args, direction, authorize) = match cmd {
        SgCommand::Create {
            vpc,
            name,
            description,
        } => {
            let g = client
                .create_security_group(&vpc, &name, &description)
                .await?;
            return render(vec![sg_view(&g, output)], output, true, SG_COLS);
        }
        SgCommand::List { vpc } => {
            let gs = client.list_security_groups(&vpc).await?;
            let vs = gs.iter().map(|g| sg_view(g, output)).collect();
            return render(vs, output, false, SG_COLS);
        }
        SgCommand::Get { id } => {
            let g = client.get_security_group(&id).await?;
            return render(vec![sg_view(&g, output)], output, true, SG_COLS);
        }
        SgCommand::Delete { id } => {
            client.delete_security_group(&id).await?;
            return Ok(format!("deleted {id}\n"));
        }
        SgCommand::AuthorizeIngress(a) => (a, "ingress", true),
        SgCommand::RevokeIngress(a) => (a, "ingress", false),
        SgCommand::AuthorizeEgress(a) => (a, "egress", true),
        SgCommand::RevokeEgress(a) => (a, "egress", false),
    };
    let rule = args.spec()?;
    let g = client
        .change_security_group_rule(&args.group, direction, rule, authorize)
        .await?;
    render(vec![sg_view(&g, output)], output, true, SG_COLS)
}

/// `--subnets` / `--security-groups` of create and update-config as a `VpcConfig` (`None`: not
/// given). An empty `--subnets ''` detaches.
pub fn vpc_config(
    subnets: &Option<Vec<String>>,
    groups: &Option<Vec<String>>,
) -> Option<v1::VpcConfig> {
    if subnets.is_none() && groups.is_none() {
        return None;
    }
    let clean = |v: &Option<Vec<String>>| -> Vec<String> {
        v.clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect()
    };
    Some(v1::VpcConfig {
        subnet_ids: clean(subnets),
        security_group_ids: clean(groups),
        vpc_id: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse() {
        assert_eq!(parse_ports("80").unwrap(), (80, 80));
        assert_eq!(parse_ports("1000-2000").unwrap(), (1000, 2000));
        assert!(parse_ports("0").is_err());
        assert!(parse_ports("90-80").is_err());
        assert!(parse_ports("x").is_err());
        assert!(parse_ports("1-70000").is_err());
    }

    #[test]
    fn table_headers_from_keys() {
        assert_eq!(header("Id"), "ID");
        assert_eq!(header("SecurityGroupIds"), "SECURITY-GROUP-IDS");
        let t = render(
            vec![eni_json(&v1::NetnsAttachment {
                id: "eni-1".into(),
                worker_id: "w1".into(),
                ..Default::default()
            })],
            Output::Table,
            true,
            ENI_COLS,
        )
        .unwrap();
        let mut lines = t.lines();
        let head: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            head,
            [
                "ID",
                "NETNS",
                "SUBNET-ID",
                "ADDRESS",
                "SECURITY-GROUP-IDS",
                "WORKER-ID"
            ]
        );
        let row = lines.next().unwrap();
        assert!(row.starts_with("eni-1") && row.ends_with("w1"), "{t}");
    }

    #[test]
    fn vpc_config_from_flags() {
        assert!(vpc_config(&None, &None).is_none());
        let c = vpc_config(&Some(vec!["subnet-1".into()]), &Some(vec!["sg-1".into()])).unwrap();
        assert_eq!(c.subnet_ids, ["subnet-1"]);
        let detach = vpc_config(&Some(vec![String::new()]), &None).unwrap();
        assert!(detach.subnet_ids.is_empty() && detach.security_group_ids.is_empty());
    }
}
