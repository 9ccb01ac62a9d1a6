//! `fnctl role`: execution roles (admin keys, or by `iam:` policy). A role is a name and an IAM
//! policy document; a function created or updated with `--role NAME` gets, in its sandboxes,
//! short-lived credentials whose requests may do what that policy allows.
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use lamina_client::{v1, Client};
use serde::Serialize;

use crate::args::Output;
use crate::output;

const ROLE_ARN_PREFIX: &str = "arn:aws:iam::000000000000:role/";

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Create a role from a policy document (IAM JSON)
    Create {
        name: String,
        /// The IAM policy document (a file; "-" reads standard input)
        #[arg(long)]
        policy: PathBuf,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Show a role and its policy
    Get { name: String },
    /// Replace a role's policy: its live sessions follow at once
    Update {
        name: String,
        #[arg(long)]
        policy: PathBuf,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a role: functions naming it get no credentials any more
    Delete { name: String },
    /// List the roles
    #[command(alias = "ls")]
    List,
}

/// `--role NAME` is the ARN of this cluster's role NAME; an ARN (or '') is taken as it is.
pub fn parse_role(s: &str) -> Result<String, String> {
    if s.is_empty() || s.starts_with("arn:") {
        Ok(s.to_string())
    } else if s.contains(['/', ':']) {
        Err(format!(
            "--role takes a role name or an IAM role ARN ({ROLE_ARN_PREFIX}NAME), got {s:?}"
        ))
    } else {
        Ok(format!("{ROLE_ARN_PREFIX}{s}"))
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct RoleView {
    role_name: String,
    arn: String,
    description: String,
    create_date: String,
    last_modified: String,
    /// The document as JSON (as IAM's `AssumeRolePolicyDocument`/`PolicyDocument` are shown).
    policy_document: serde_json::Value,
}

impl From<&v1::Role> for RoleView {
    fn from(r: &v1::Role) -> RoleView {
        RoleView {
            role_name: r.name.clone(),
            arn: r.arn.clone(),
            description: r.description.clone(),
            create_date: output::lambda_timestamp(r.created_ms),
            last_modified: output::lambda_timestamp(r.updated_ms),
            policy_document: serde_json::from_str(&r.policy)
                .unwrap_or_else(|_| serde_json::Value::String(r.policy.clone())),
        }
    }
}

fn read_policy(path: &PathBuf) -> anyhow::Result<String> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .context("cannot read the policy from standard input")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --policy {}", path.display()))?
    };
    Ok(text)
}

pub(crate) fn render(r: &v1::Role, format: Output) -> anyhow::Result<String> {
    let view = RoleView::from(r);
    Ok(match format {
        Output::Table => format!(
            "name:        {}\narn:         {}\ndescription: {}\ncreated:     {}\nmodified:    {}\npolicy:\n{}\n",
            view.role_name,
            view.arn,
            view.description,
            view.create_date,
            view.last_modified,
            serde_json::to_string_pretty(&view.policy_document)?
        ),
        f => output::serialize(&view, f)?,
    })
}

pub async fn run(client: &Client, cmd: RoleCommand, format: Output) -> anyhow::Result<String> {
    match cmd {
        RoleCommand::Create {
            name,
            policy,
            description,
        } => {
            let policy = read_policy(&policy)?;
            render(
                &client.create_role(&name, &policy, &description).await?,
                format,
            )
        }
        RoleCommand::Update {
            name,
            policy,
            description,
        } => {
            let policy = read_policy(&policy)?;
            render(
                &client.update_role(&name, &policy, &description).await?,
                format,
            )
        }
        RoleCommand::Get { name } => render(&client.get_role(&name).await?, format),
        RoleCommand::Delete { name } => {
            client.delete_role(&name).await?;
            Ok(match format {
                Output::Table => format!("role {name} deleted\n"),
                f => output::serialize(&serde_json::json!({ "RoleName": name }), f)?,
            })
        }
        RoleCommand::List => render_list(&client.list_roles().await?, format),
    }
}

pub(crate) fn render_list(roles: &[v1::Role], format: Output) -> anyhow::Result<String> {
    let views: Vec<RoleView> = roles.iter().map(RoleView::from).collect();
    Ok(match format {
        Output::Table => {
            let rows: Vec<Vec<String>> = views
                .iter()
                .map(|r| {
                    vec![
                        r.role_name.clone(),
                        r.last_modified.clone(),
                        r.description.clone(),
                    ]
                })
                .collect();
            output::table(&["NAME", "MODIFIED", "DESCRIPTION"], &rows)
        }
        f => output::serialize(&views, f)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_become_arns_of_this_cluster() {
        assert_eq!(
            parse_role("reader").unwrap(),
            "arn:aws:iam::000000000000:role/reader"
        );
        let arn = "arn:aws:iam::123456789012:role/x";
        assert_eq!(parse_role(arn).unwrap(), arn);
        assert_eq!(parse_role("").unwrap(), "");
        assert!(parse_role("a/b").is_err());
    }
}
