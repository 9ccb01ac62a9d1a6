//! Versions and aliases: `fnctl publish`, `fnctl versions`, `fnctl alias ...`.
use std::collections::{BTreeMap, HashMap};

use clap::{Args, Subcommand};
use lamina_client::{v1, Client};
use serde::Serialize;

use crate::args::Output;
use crate::output::{self, lambda_timestamp, serialize, table, FunctionView};

#[derive(Debug, Args)]
pub struct PublishArgs {
    pub name: String,
    /// Description of the version (default: the function's)
    #[arg(long, default_value = "")]
    pub description: String,
    /// Publish only if $LATEST's code has this sha256
    #[arg(long)]
    pub code_sha256: Option<String>,
    /// Publish only if $LATEST has this revision id
    #[arg(long)]
    pub revision_id: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Create an alias for a version
    Create(AliasCreateArgs),
    /// Change an alias (options not given keep their value)
    Update(AliasUpdateArgs),
    /// Show one alias
    Get { name: String, alias: String },
    /// List a function's aliases
    #[command(alias = "ls")]
    List { name: String },
    /// Delete an alias (the versions stay)
    #[command(alias = "rm")]
    Delete { name: String, alias: String },
}

#[derive(Debug, Args)]
pub struct AliasCreateArgs {
    pub name: String,
    pub alias: String,
    /// The version the alias names (a number, or $LATEST)
    #[arg(long)]
    pub version: String,
    /// Send this share of the invocations to another version: VERSION=WEIGHT, weight in (0, 1)
    #[arg(long = "weight", value_name = "VERSION=WEIGHT", value_parser = parse_weight)]
    pub weights: Vec<(String, f64)>,
    #[arg(long, default_value = "")]
    pub description: String,
}

#[derive(Debug, Args)]
pub struct AliasUpdateArgs {
    pub name: String,
    pub alias: String,
    #[arg(long)]
    pub version: Option<String>,
    /// Replaces the routing: VERSION=WEIGHT, weight in (0, 1)
    #[arg(long = "weight", value_name = "VERSION=WEIGHT", value_parser = parse_weight)]
    pub weights: Vec<(String, f64)>,
    /// Remove the routing: every invocation runs --version
    #[arg(long, conflicts_with = "weights")]
    pub no_weights: bool,
    #[arg(long)]
    pub description: Option<String>,
    /// Update only if the alias has this revision id
    #[arg(long)]
    pub revision_id: Option<String>,
}

/// `2=0.1` -> ("2", 0.1).
pub fn parse_weight(s: &str) -> Result<(String, f64), String> {
    let (version, weight) = s
        .split_once('=')
        .ok_or_else(|| format!("expected VERSION=WEIGHT (e.g. 2=0.1), got {s:?}"))?;
    if version.is_empty() {
        return Err(format!("the version is empty in {s:?}"));
    }
    let weight: f64 = weight
        .parse()
        .map_err(|_| format!("the weight {weight:?} is not a number (e.g. 2=0.1)"))?;
    Ok((version.to_string(), weight))
}

/// Lambda's `AliasConfiguration`.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct AliasView {
    pub alias_arn: String,
    pub name: String,
    pub function_version: String,
    pub description: String,
    pub routing_config: RoutingConfigView,
    pub revision_id: String,
    pub last_modified: String,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RoutingConfigView {
    pub additional_version_weights: BTreeMap<String, f64>,
}

impl From<&v1::Alias> for AliasView {
    fn from(a: &v1::Alias) -> Self {
        AliasView {
            alias_arn: a.arn.clone(),
            name: a.name.clone(),
            function_version: a.function_version.clone(),
            description: a.description.clone(),
            routing_config: RoutingConfigView {
                additional_version_weights: a
                    .routing_config
                    .as_ref()
                    .map(|r| r.additional_version_weights.clone().into_iter().collect())
                    .unwrap_or_default(),
            },
            revision_id: a.revision_id.clone(),
            last_modified: lambda_timestamp(a.last_modified_ms),
        }
    }
}

fn weights_text(a: &v1::Alias) -> String {
    let w: BTreeMap<_, _> = a
        .routing_config
        .as_ref()
        .map(|r| r.additional_version_weights.clone().into_iter().collect())
        .unwrap_or_default();
    if w.is_empty() {
        return "-".to_string();
    }
    w.iter()
        .map(|(v, w)| format!("{v}={w}"))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn aliases_table(aliases: &[v1::Alias]) -> String {
    let rows: Vec<Vec<String>> = aliases
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.function_version.clone(),
                weights_text(a),
                if a.description.is_empty() {
                    "-".into()
                } else {
                    a.description.clone()
                },
                lambda_timestamp(a.last_modified_ms),
            ]
        })
        .collect();
    table(
        &["NAME", "VERSION", "WEIGHTS", "DESCRIPTION", "LAST-MODIFIED"],
        &rows,
    )
}

pub fn versions_table(versions: &[v1::FunctionConfiguration]) -> String {
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|f| {
            vec![
                f.version.clone(),
                f.code_sha256.chars().take(12).collect(),
                format!("{}MB", f.memory_size_mb),
                if f.description.is_empty() {
                    "-".into()
                } else {
                    f.description.clone()
                },
                lambda_timestamp(f.last_modified_ms),
            ]
        })
        .collect();
    table(
        &[
            "VERSION",
            "CODE-SHA",
            "MEMORY",
            "DESCRIPTION",
            "LAST-MODIFIED",
        ],
        &rows,
    )
}

pub fn render_alias(a: &v1::Alias, format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(aliases_table(std::slice::from_ref(a))),
        _ => serialize(&AliasView::from(a), format),
    }
}

pub fn render_aliases(aliases: &[v1::Alias], format: Output) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(aliases_table(aliases)),
        _ => serialize(
            &aliases.iter().map(AliasView::from).collect::<Vec<_>>(),
            format,
        ),
    }
}

pub fn render_versions(
    versions: &[v1::FunctionConfiguration],
    format: Output,
) -> anyhow::Result<String> {
    match format {
        Output::Table => Ok(versions_table(versions)),
        _ => serialize(
            &versions.iter().map(FunctionView::from).collect::<Vec<_>>(),
            format,
        ),
    }
}

fn routing(weights: Vec<(String, f64)>) -> v1::RoutingConfig {
    v1::RoutingConfig {
        additional_version_weights: weights.into_iter().collect::<HashMap<_, _>>(),
    }
}

/// `fnctl publish`: the published version (or the newest one when $LATEST is unchanged).
pub async fn publish(client: &Client, args: PublishArgs, format: Output) -> anyhow::Result<String> {
    let f = client
        .publish_version_with(v1::PublishVersionRequest {
            function_name: args.name,
            description: args.description,
            code_sha256: args.code_sha256.unwrap_or_default(),
            revision_id: args.revision_id.unwrap_or_default(),
        })
        .await?;
    match format {
        Output::Table => Ok(versions_table(std::slice::from_ref(&f))),
        _ => output::render_function(&f, format),
    }
}

/// `fnctl versions NAME`: $LATEST first, then the published versions.
pub async fn versions(client: &Client, name: &str, format: Output) -> anyhow::Result<String> {
    render_versions(&client.list_versions(name).await?, format)
}

pub async fn alias(client: &Client, cmd: AliasCommand, format: Output) -> anyhow::Result<String> {
    match cmd {
        AliasCommand::Create(a) => {
            let created = client
                .create_alias(
                    &a.name,
                    &a.alias,
                    &a.version,
                    a.weights.into_iter().collect(),
                    &a.description,
                )
                .await?;
            render_alias(&created, format)
        }
        AliasCommand::Update(a) => {
            let routing_config = if a.no_weights {
                Some(v1::RoutingConfig::default())
            } else if a.weights.is_empty() {
                None
            } else {
                Some(routing(a.weights))
            };
            let updated = client
                .update_alias(v1::UpdateAliasRequest {
                    function_name: a.name,
                    name: a.alias,
                    function_version: a.version,
                    routing_config,
                    description: a.description,
                    revision_id: a.revision_id.unwrap_or_default(),
                })
                .await?;
            render_alias(&updated, format)
        }
        AliasCommand::Get { name, alias } => {
            render_alias(&client.get_alias(&name, &alias).await?, format)
        }
        AliasCommand::List { name } => render_aliases(&client.list_aliases(&name).await?, format),
        AliasCommand::Delete { name, alias } => {
            client.delete_alias(&name, &alias).await?;
            Ok(format!("alias {alias} of function {name} deleted\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse_or_say_what_is_wrong() {
        assert_eq!(parse_weight("2=0.1").unwrap(), ("2".to_string(), 0.1));
        assert!(parse_weight("2").unwrap_err().contains("VERSION=WEIGHT"));
        assert!(parse_weight("=0.1")
            .unwrap_err()
            .contains("version is empty"));
        assert!(parse_weight("2=x").unwrap_err().contains("not a number"));
    }

    #[test]
    fn alias_json_uses_lambdas_names() {
        let a = v1::Alias {
            function_name: "f".into(),
            name: "live".into(),
            arn: "arn:aws:lambda:us-east-1:000000000000:function:f:live".into(),
            function_version: "1".into(),
            routing_config: Some(v1::RoutingConfig {
                additional_version_weights: [("2".to_string(), 0.25)].into(),
            }),
            description: "d".into(),
            revision_id: "r".into(),
            last_modified_ms: 0,
        };
        let v: serde_json::Value =
            serde_json::from_str(&render_alias(&a, Output::Json).unwrap()).unwrap();
        assert_eq!(v["AliasArn"], a.arn);
        assert_eq!(v["FunctionVersion"], "1");
        assert_eq!(v["RoutingConfig"]["AdditionalVersionWeights"]["2"], 0.25);
        let table = render_alias(&a, Output::Table).unwrap();
        assert!(table.contains("live   1         2=0.25"), "{table}");
    }
}
