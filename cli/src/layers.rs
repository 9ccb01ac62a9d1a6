//! `fnctl layer publish|list|versions|get|delete`.
use std::path::PathBuf;

use clap::{Args, Subcommand};
use lamina_client::{code, v1, Client};
use serde::Serialize;

use crate::args::Output;
use crate::output::{lambda_timestamp, serialize, table};

#[derive(Debug, Subcommand)]
pub enum LayerCommand {
    /// Publish the next version of a layer from a directory or a zip
    Publish(PublishLayerArgs),
    /// List layers with their newest version
    #[command(alias = "ls")]
    List,
    /// List a layer's versions, newest first
    Versions { name: String },
    /// Show one layer version: NAME VERSION, or its ARN
    Get {
        name_or_arn: String,
        version: Option<u32>,
    },
    /// Delete one layer version: NAME VERSION, or its ARN (functions using it keep their copy)
    #[command(alias = "rm")]
    Delete {
        name_or_arn: String,
        version: Option<u32>,
    },
}

#[derive(Debug, Args)]
pub struct PublishLayerArgs {
    pub name: String,
    /// A directory (zipped for you) or a zip file; its files appear under /opt
    #[arg(long)]
    pub code: PathBuf,
    #[arg(long, default_value = "")]
    pub description: String,
    /// Runtimes the layer is meant for, comma-separated (informational)
    #[arg(long, value_delimiter = ',')]
    pub compatible_runtimes: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct LayerVersionView {
    pub layer_name: String,
    pub layer_arn: String,
    pub layer_version_arn: String,
    pub version: u32,
    pub description: String,
    pub compatible_runtimes: Vec<String>,
    pub code_sha256: String,
    pub code_size: u64,
    pub unzipped_size: u64,
    pub created_date: String,
}

impl From<&v1::LayerVersion> for LayerVersionView {
    fn from(l: &v1::LayerVersion) -> Self {
        LayerVersionView {
            layer_name: l.layer_name.clone(),
            layer_arn: l.layer_arn.clone(),
            layer_version_arn: l.layer_version_arn.clone(),
            version: l.version,
            description: l.description.clone(),
            compatible_runtimes: l.compatible_runtimes.clone(),
            code_sha256: l.code_sha256.clone(),
            code_size: l.code_size,
            unzipped_size: l.unzipped_size,
            created_date: lambda_timestamp(l.created_ms),
        }
    }
}

pub(crate) fn render(
    layers: &[v1::LayerVersion],
    output: Output,
    one: bool,
) -> anyhow::Result<String> {
    match output {
        Output::Table => {
            let rows: Vec<Vec<String>> = layers
                .iter()
                .map(|l| {
                    vec![
                        l.layer_name.clone(),
                        l.version.to_string(),
                        l.layer_version_arn.clone(),
                        l.code_size.to_string(),
                        l.compatible_runtimes.join(","),
                        l.description.clone(),
                    ]
                })
                .collect();
            Ok(table(
                &["NAME", "VERSION", "ARN", "SIZE", "RUNTIMES", "DESCRIPTION"],
                &rows,
            ))
        }
        _ if one && layers.len() == 1 => serialize(&LayerVersionView::from(&layers[0]), output),
        _ => serialize(
            &layers
                .iter()
                .map(LayerVersionView::from)
                .collect::<Vec<_>>(),
            output,
        ),
    }
}

pub async fn run(client: &Client, cmd: LayerCommand, output: Output) -> anyhow::Result<String> {
    match cmd {
        LayerCommand::Publish(a) => {
            let zip = code::load_code(&a.code)?;
            let l = client
                .publish_layer_version(&a.name, &a.description, &a.compatible_runtimes, zip)
                .await?;
            render(&[l], output, true)
        }
        LayerCommand::List => render(&client.list_layers().await?, output, false),
        LayerCommand::Versions { name } => {
            render(&client.list_layer_versions(&name).await?, output, false)
        }
        LayerCommand::Get {
            name_or_arn,
            version,
        } => {
            let l = client
                .get_layer_version(&name_or_arn, version.unwrap_or(0))
                .await?;
            render(&[l], output, true)
        }
        LayerCommand::Delete {
            name_or_arn,
            version,
        } => {
            client
                .delete_layer_version(&name_or_arn, version.unwrap_or(0))
                .await?;
            Ok(format!(
                "deleted layer version {name_or_arn}{}\n",
                version.map(|v| format!(":{v}")).unwrap_or_default()
            ))
        }
    }
}
