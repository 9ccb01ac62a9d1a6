//! `fnctl permission add|remove|get`: a function's resource-based policy (Lambda's
//! AddPermission, RemovePermission, GetPolicy), e.g. to let one access key invoke one function.
use clap::{Args, Subcommand};
use lamina_client::{v1, Client};
use serde_json::Value;

use crate::args::Output;
use crate::output::serialize;

#[derive(Debug, Subcommand)]
pub enum PermissionCommand {
    /// Add a statement to a function's resource-based policy (Lambda's AddPermission); prints it
    Add(PermissionAddArgs),
    /// Remove a statement from a function's resource-based policy (the policy goes with its last)
    #[command(alias = "rm")]
    Remove(PermissionRemoveArgs),
    /// Show a function's resource-based policy (Lambda's GetPolicy)
    Get(PermissionTarget),
}

/// Which policy: the unqualified function's, or a version's or alias's.
#[derive(Debug, Args)]
pub struct PermissionTarget {
    pub name: String,
    /// A version or alias: its own policy (default: the unqualified function's)
    #[arg(long, default_value = "")]
    pub qualifier: String,
}

#[derive(Debug, Args)]
pub struct PermissionAddArgs {
    pub name: String,
    /// The statement's id (unique in the policy)
    #[arg(long)]
    pub statement_id: String,
    /// What it allows, e.g. lambda:InvokeFunction
    #[arg(long, default_value = "lambda:InvokeFunction")]
    pub action: String,
    /// Who: an access key id, an IAM ARN (arn:aws:iam::000000000000:user/KEY), an account id,
    /// a service (s3.amazonaws.com) or *
    #[arg(long)]
    pub principal: String,
    #[arg(long, default_value = "")]
    pub qualifier: String,
    #[arg(long)]
    pub source_arn: Option<String>,
    #[arg(long)]
    pub source_account: Option<String>,
    /// NONE or AWS_IAM (for lambda:InvokeFunctionUrl)
    #[arg(long)]
    pub function_url_auth_type: Option<String>,
    /// Only if the policy's revision id is this one
    #[arg(long)]
    pub revision_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct PermissionRemoveArgs {
    pub name: String,
    #[arg(long)]
    pub statement_id: String,
    #[arg(long, default_value = "")]
    pub qualifier: String,
    /// Only if the policy's revision id is this one
    #[arg(long)]
    pub revision_id: Option<String>,
}

/// A JSON document kept in a string, shown as JSON.
fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

pub async fn run(
    client: &Client,
    cmd: PermissionCommand,
    output: Output,
) -> anyhow::Result<String> {
    match cmd {
        PermissionCommand::Add(a) => {
            let r = client
                .add_permission(v1::AddPermissionRequest {
                    function_name: a.name,
                    qualifier: a.qualifier,
                    statement_id: a.statement_id,
                    action: a.action,
                    principal: a.principal,
                    source_arn: a.source_arn.unwrap_or_default(),
                    source_account: a.source_account.unwrap_or_default(),
                    function_url_auth_type: a.function_url_auth_type.unwrap_or_default(),
                    revision_id: a.revision_id.unwrap_or_default(),
                    ..Default::default()
                })
                .await?;
            serialize(
                &serde_json::json!({ "Statement": parsed(&r.statement) }),
                output,
            )
        }
        PermissionCommand::Remove(a) => {
            client
                .remove_permission(v1::RemovePermissionRequest {
                    function_name: a.name.clone(),
                    qualifier: a.qualifier,
                    statement_id: a.statement_id.clone(),
                    revision_id: a.revision_id.unwrap_or_default(),
                })
                .await?;
            Ok(format!(
                "statement {} removed from the policy of {}\n",
                a.statement_id, a.name
            ))
        }
        PermissionCommand::Get(t) => {
            let p = client.get_policy(&t.name, &t.qualifier).await?;
            serialize(
                &serde_json::json!({ "Policy": parsed(&p.policy), "RevisionId": p.revision_id }),
                output,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::args::{Cli, Command};
    use clap::Parser;

    #[test]
    fn permission_commands_parse() {
        let cli = Cli::try_parse_from([
            "fnctl",
            "permission",
            "add",
            "f",
            "--statement-id",
            "s1",
            "--principal",
            "AKID",
        ])
        .unwrap();
        let Command::Permission(super::PermissionCommand::Add(a)) = cli.command else {
            panic!("not permission add");
        };
        assert_eq!(
            (a.action.as_str(), a.qualifier.as_str()),
            ("lambda:InvokeFunction", "")
        );
        assert!(Cli::try_parse_from(["fnctl", "permission", "add", "f"]).is_err());
        assert!(
            Cli::try_parse_from(["fnctl", "permission", "get", "f", "--qualifier", "live"]).is_ok()
        );
        assert!(
            Cli::try_parse_from(["fnctl", "permission", "rm", "f", "--statement-id", "s1"]).is_ok()
        );
    }
}
