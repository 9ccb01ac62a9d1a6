//! Concurrency: `fnctl concurrency put|get|delete`, `fnctl account`, `fnctl provisioned
//! put|get|delete|list`, and the concurrency part of `fnctl get`. JSON/YAML use Lambda's names.
use clap::Subcommand;
use lamina_client::{v1, Client};
use serde::Serialize;

use crate::args::Output;
use crate::output::{functions_table, lambda_timestamp, serialize, table, FunctionView};

#[derive(Debug, Subcommand)]
pub enum ConcurrencyCommand {
    /// Reserve concurrent executions for a function (0 throttles every invocation)
    Put {
        name: String,
        /// Concurrent executions reserved for the function (taken from the cluster-wide limit)
        #[arg(long)]
        reserved: u32,
    },
    /// Show a function's reserved concurrency
    Get { name: String },
    /// Remove a function's reservation (it shares the unreserved pool again)
    #[command(alias = "rm")]
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ProvisionedCommand {
    /// Keep COUNT sandboxes of a version or alias initialised ahead of invocations
    Put {
        name: String,
        /// A published version number or an alias name ($LATEST cannot be provisioned)
        #[arg(long)]
        qualifier: String,
        /// Sandboxes to keep initialised (at least 1)
        #[arg(long)]
        count: u32,
    },
    /// Show one configuration with its status
    Get {
        name: String,
        #[arg(long)]
        qualifier: String,
    },
    /// Remove a configuration (its sandboxes become ordinary warm ones)
    #[command(alias = "rm")]
    Delete {
        name: String,
        #[arg(long)]
        qualifier: String,
    },
    /// List a function's configurations
    #[command(alias = "ls")]
    List { name: String },
}

/// Lambda's `GetFunctionConcurrency` / `PutFunctionConcurrency` output.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ConcurrencyView {
    pub function_name: String,
    pub reserved_concurrent_executions: Option<u32>,
}

/// Lambda's `GetAccountSettings` (the concurrency part), plus what runs now.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AccountView {
    pub account_limit: AccountLimitView,
    pub account_usage: AccountUsageView,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AccountLimitView {
    pub concurrent_executions: u32,
    pub unreserved_concurrent_executions: u32,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AccountUsageView {
    /// Invocations in flight cluster-wide.
    pub concurrent_executions: u32,
}

/// Lambda's `ProvisionedConcurrencyConfigListItem`, with the function and qualifier.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ProvisionedView {
    pub function_name: String,
    pub qualifier: String,
    pub function_version: String,
    pub requested_provisioned_concurrent_executions: u32,
    pub allocated_provisioned_concurrent_executions: u32,
    pub available_provisioned_concurrent_executions: u32,
    pub status: String,
    pub status_reason: String,
    pub last_modified: String,
}

impl From<&v1::ProvisionedConcurrencyConfig> for ProvisionedView {
    fn from(c: &v1::ProvisionedConcurrencyConfig) -> Self {
        ProvisionedView {
            function_name: c.function_name.clone(),
            qualifier: c.qualifier.clone(),
            function_version: c.function_version.clone(),
            requested_provisioned_concurrent_executions: c.requested,
            allocated_provisioned_concurrent_executions: c.allocated,
            available_provisioned_concurrent_executions: c.available,
            status: c.status.clone(),
            status_reason: c.status_reason.clone(),
            last_modified: lambda_timestamp(c.last_modified_ms),
        }
    }
}

/// `fnctl get -o json`: the configuration, plus its reserved and provisioned concurrency when
/// it has any.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct FunctionWithConcurrencyView {
    #[serde(flatten)]
    pub function: FunctionView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserved_concurrent_executions: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub provisioned_concurrency: Vec<ProvisionedView>,
}

pub fn provisioned_table(configs: &[v1::ProvisionedConcurrencyConfig]) -> String {
    let rows: Vec<Vec<String>> = configs
        .iter()
        .map(|c| {
            vec![
                c.qualifier.clone(),
                if c.function_version.is_empty() {
                    "-".into()
                } else {
                    c.function_version.clone()
                },
                c.requested.to_string(),
                c.allocated.to_string(),
                c.available.to_string(),
                c.status.clone(),
                if c.status_reason.is_empty() {
                    "-".into()
                } else {
                    c.status_reason.clone()
                },
            ]
        })
        .collect();
    table(
        &[
            "QUALIFIER",
            "VERSION",
            "REQUESTED",
            "ALLOCATED",
            "AVAILABLE",
            "STATUS",
            "REASON",
        ],
        &rows,
    )
}

pub(crate) fn render_provisioned(
    c: &v1::ProvisionedConcurrencyConfig,
    format: Output,
) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(provisioned_table(std::slice::from_ref(c))),
        _ => serialize(&ProvisionedView::from(c), format),
    }
}

pub(crate) fn render_concurrency(
    c: &v1::FunctionConcurrency,
    format: Output,
) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(table(
            &["NAME", "RESERVED"],
            &[vec![
                c.function_name.clone(),
                c.reserved_concurrent_executions
                    .map_or_else(|| "-".to_string(), |r| r.to_string()),
            ]],
        )),
        _ => serialize(
            &ConcurrencyView {
                function_name: c.function_name.clone(),
                reserved_concurrent_executions: c.reserved_concurrent_executions,
            },
            format,
        ),
    }
}

pub(crate) fn render_account(a: &v1::AccountSettings, format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(table(
            &["CONCURRENCY-LIMIT", "UNRESERVED", "IN-FLIGHT"],
            &[vec![
                a.concurrent_executions.to_string(),
                a.unreserved_concurrent_executions.to_string(),
                a.in_flight.to_string(),
            ]],
        )),
        _ => serialize(
            &AccountView {
                account_limit: AccountLimitView {
                    concurrent_executions: a.concurrent_executions,
                    unreserved_concurrent_executions: a.unreserved_concurrent_executions,
                },
                account_usage: AccountUsageView {
                    concurrent_executions: a.in_flight,
                },
            },
            format,
        ),
    }
}

/// `fnctl get`: the function, then (table) its reserved concurrency and provisioned
/// configurations when it has any.
pub fn render_function(f: &v1::FunctionConfiguration, format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => {
            let mut out = functions_table(std::slice::from_ref(f));
            if let Some(r) = f.reserved_concurrent_executions {
                out.push_str(&format!("\nRESERVED-CONCURRENCY   {r}\n"));
            }
            if !f.provisioned_concurrency.is_empty() {
                out.push_str("\nPROVISIONED CONCURRENCY\n");
                out.push_str(&provisioned_table(&f.provisioned_concurrency));
            }
            Ok(out)
        }
        _ => serialize(
            &FunctionWithConcurrencyView {
                function: FunctionView::from(f),
                reserved_concurrent_executions: f.reserved_concurrent_executions,
                provisioned_concurrency: f
                    .provisioned_concurrency
                    .iter()
                    .map(ProvisionedView::from)
                    .collect(),
            },
            format,
        ),
    }
}

pub async fn concurrency(
    client: &Client,
    cmd: ConcurrencyCommand,
    format: Output,
) -> anyhow::Result<String> {
    let c = match cmd {
        ConcurrencyCommand::Put { name, reserved } => {
            client.put_function_concurrency(&name, reserved).await?
        }
        ConcurrencyCommand::Get { name } => client.get_function_concurrency(&name).await?,
        ConcurrencyCommand::Delete { name } => client.delete_function_concurrency(&name).await?,
    };
    render_concurrency(&c, format)
}

pub async fn account(client: &Client, format: Output) -> anyhow::Result<String> {
    render_account(&client.get_account_settings().await?, format)
}

pub async fn provisioned(
    client: &Client,
    cmd: ProvisionedCommand,
    format: Output,
) -> anyhow::Result<String> {
    match cmd {
        ProvisionedCommand::Put {
            name,
            qualifier,
            count,
        } => render_provisioned(
            &client
                .put_provisioned_concurrency(&name, &qualifier, count)
                .await?,
            format,
        ),
        ProvisionedCommand::Get { name, qualifier } => render_provisioned(
            &client
                .get_provisioned_concurrency(&name, &qualifier)
                .await?,
            format,
        ),
        ProvisionedCommand::Delete { name, qualifier } => {
            client
                .delete_provisioned_concurrency(&name, &qualifier)
                .await?;
            Ok(format!(
                "provisioned concurrency of {name}:{qualifier} deleted\n"
            ))
        }
        ProvisionedCommand::List { name } => {
            let configs = client.list_provisioned_concurrency(&name).await?;
            match format {
                Output::Table => Ok(provisioned_table(&configs)),
                _ => serialize(
                    &configs
                        .iter()
                        .map(ProvisionedView::from)
                        .collect::<Vec<_>>(),
                    format,
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> v1::ProvisionedConcurrencyConfig {
        v1::ProvisionedConcurrencyConfig {
            function_name: "f".into(),
            qualifier: "live".into(),
            function_version: "3".into(),
            requested: 4,
            allocated: 2,
            available: 1,
            status: "IN_PROGRESS".into(),
            status_reason: String::new(),
            last_modified_ms: 1_714_564_800_123,
        }
    }

    #[test]
    fn get_shows_reserved_and_provisioned_with_lambdas_names() {
        let f = v1::FunctionConfiguration {
            name: "f".into(),
            runtime: "python3.11".into(),
            reserved_concurrent_executions: Some(7),
            provisioned_concurrency: vec![config()],
            ..Default::default()
        };
        let v: serde_json::Value =
            serde_json::from_str(&render_function(&f, Output::Json).unwrap()).unwrap();
        assert_eq!(v["FunctionName"], "f");
        assert_eq!(v["ReservedConcurrentExecutions"], 7);
        let p = &v["ProvisionedConcurrency"][0];
        assert_eq!(p["RequestedProvisionedConcurrentExecutions"], 4);
        assert_eq!(p["AllocatedProvisionedConcurrentExecutions"], 2);
        assert_eq!(p["AvailableProvisionedConcurrentExecutions"], 1);
        assert_eq!(p["Status"], "IN_PROGRESS");
        assert_eq!(p["StatusReason"], "");
        assert_eq!(p["FunctionVersion"], "3");
        let t = render_function(&f, Output::Table).unwrap();
        assert!(t.contains("RESERVED-CONCURRENCY   7"), "{t}");
        assert!(
            t.contains("live        3         4           2           1           IN_PROGRESS"),
            "{t}"
        );

        // Without any, `get` prints what it always did.
        let plain = v1::FunctionConfiguration {
            name: "g".into(),
            ..Default::default()
        };
        let v: serde_json::Value =
            serde_json::from_str(&render_function(&plain, Output::Json).unwrap()).unwrap();
        assert!(v.get("ReservedConcurrentExecutions").is_none());
        assert!(v.get("ProvisionedConcurrency").is_none());
    }

    #[test]
    fn account_and_concurrency_views() {
        let a = v1::AccountSettings {
            concurrent_executions: 1000,
            unreserved_concurrent_executions: 900,
            in_flight: 3,
        };
        let v: serde_json::Value =
            serde_json::from_str(&render_account(&a, Output::Json).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "AccountLimit": {"ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": 900},
                "AccountUsage": {"ConcurrentExecutions": 3},
            })
        );
        let c = v1::FunctionConcurrency {
            function_name: "f".into(),
            reserved_concurrent_executions: None,
        };
        assert_eq!(
            render_concurrency(&c, Output::Table).unwrap(),
            "NAME   RESERVED\nf      -\n"
        );
    }
}
