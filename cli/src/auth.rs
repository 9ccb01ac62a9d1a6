//! `fnctl auth`: access keys and their IAM policies.
use lamina_client::{v1, Client};
use serde::Serialize;

use crate::args::{AuthCommand, Output};
use crate::output;

/// What `create-key -o json` prints: exactly the credentials file's shape, which fnctl
/// (`--credentials`) and the SDK read. The one camelCase object of fnctl's output, on purpose:
/// the file format stays as it is; every other view is PascalCase.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NewKey<'a> {
    access_key_id: &'a str,
    secret_access_key: &'a str,
}

/// An access key as listed (never a secret).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct KeyView {
    pub access_key_id: String,
    pub description: String,
    pub admin: bool,
    pub revoked: bool,
    pub created: String,
}

impl From<&v1::AccessKey> for KeyView {
    fn from(k: &v1::AccessKey) -> Self {
        KeyView {
            access_key_id: k.access_key_id.clone(),
            description: k.description.clone(),
            admin: k.admin,
            revoked: k.revoked,
            created: output::lambda_timestamp(k.created_ms),
        }
    }
}

pub async fn run(client: &Client, cmd: AuthCommand, format: Output) -> anyhow::Result<String> {
    match cmd {
        AuthCommand::CreateKey {
            description,
            admin,
            policy,
        } => {
            let policy = policy.as_deref().map(read_policy).transpose()?;
            let k = client
                .create_access_key_with_policy(&description, admin, policy.as_deref())
                .await?;
            let new = NewKey {
                access_key_id: &k.access_key_id,
                secret_access_key: &k.secret_access_key,
            };
            Ok(match format {
                Output::Table => format!(
                    "access key id:     {}\nsecret access key: {}\n(the secret is shown only now: \
                     store it, e.g. as a credentials file for fnctl --credentials)\n",
                    new.access_key_id, new.secret_access_key
                ),
                f => output::serialize(&new, f)?,
            })
        }
        AuthCommand::List => {
            let keys = client.list_access_keys().await?;
            let views: Vec<KeyView> = keys.iter().map(KeyView::from).collect();
            Ok(match format {
                Output::Table => {
                    let rows: Vec<Vec<String>> = views
                        .iter()
                        .map(|k| {
                            vec![
                                k.access_key_id.clone(),
                                k.admin.to_string(),
                                k.revoked.to_string(),
                                k.created.clone(),
                                k.description.clone(),
                            ]
                        })
                        .collect();
                    output::table(
                        &[
                            "ACCESS KEY ID",
                            "ADMIN",
                            "REVOKED",
                            "CREATED",
                            "DESCRIPTION",
                        ],
                        &rows,
                    )
                }
                f => output::serialize(&views, f)?,
            })
        }
        AuthCommand::Revoke { access_key_id } => {
            client.revoke_access_key(&access_key_id).await?;
            Ok(format!("access key {access_key_id} revoked\n"))
        }
        AuthCommand::PutPolicy {
            access_key_id,
            file,
            delete: _,
        } => {
            // clap requires FILE unless --delete, and refuses both.
            let policy = file.as_deref().map(read_policy).transpose()?;
            client
                .put_key_policy(&access_key_id, policy.as_deref())
                .await?;
            Ok(match policy {
                Some(_) => format!("policy of access key {access_key_id} replaced\n"),
                None => format!(
                    "policy of access key {access_key_id} removed (unless it is an admin key, it may do nothing now)\n"
                ),
            })
        }
        AuthCommand::GetPolicy { access_key_id } => {
            match client.get_key_policy(&access_key_id).await? {
                Some(doc) if doc.ends_with('\n') => Ok(doc),
                Some(doc) => Ok(format!("{doc}\n")),
                None => anyhow::bail!(
                    "access key {access_key_id} has no policy: set one with `fnctl auth put-policy {access_key_id} FILE`"
                ),
            }
        }
    }
}

/// A policy document from `path` (`-`: stdin).
fn read_policy(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    if path == std::path::Path::new("-") {
        let mut doc = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut doc)
            .context("cannot read the policy document from stdin")?;
        return Ok(doc);
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the policy document {}", path.display()))
}
